/* File formats of the object-storage sink: a batch of strand records in, the bytes of one complete
 * file out (JSON, JSONL, CSV, Avro OCF, Parquet), then an optional whole-file compression for the
 * text formats (gzip, zstd, snappy framed, lz4 frame, brotli).
 *
 * A row is the record's payload (a MessagePack map as stored in the strand; any other payload is
 * one column "value") plus, when include_metadata is set, the columns _record_hash (hex),
 * _seq, _timestamp_ms and _strand. The options come from the connector's validated config
 * (canonical keys below, defaults filled in by the kind's schema):
 *
 *   format            json | jsonl | csv | avro | parquet
 *   compression       none | gzip | zstd | snappy | lz4 | brotli   (text formats only)
 *   include_metadata  bool
 *   parquet           {compression none|snappy|gzip|zstd|lz4|brotli, row_group_size,
 *                      enable_statistics, data_page_size}
 *   avro              {compression none|deflate|snappy, schema (JSON text), namespace,
 *                      record_name, wire_format, schema_id}
 *   csv               {delimiter, include_header, quote_char, always_quote, line_ending lf|crlf,
 *                      null_value, columns [names]}
 *
 * Every function is reentrant; a batch's memory is bounded by its records and the file built.
 * sl_ff_encode may run a second thread of its own (and zstd's worker) for a large batch and joins
 * them before returning. Layouts, type inference and the memory bound: docs/formats.md. */
#ifndef SL_FORMATS_FILEFMT_H
#define SL_FORMATS_FILEFMT_H

#include "core/buf.h"
#include "core/err.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum sl_ff_format { SL_FF_JSON, SL_FF_JSONL, SL_FF_CSV, SL_FF_AVRO, SL_FF_PARQUET };
enum sl_ff_codec {
    SL_FF_NONE,
    SL_FF_GZIP,
    SL_FF_ZSTD,
    SL_FF_SNAPPY,
    SL_FF_LZ4,
    SL_FF_DEFLATE, /* avro */
    SL_FF_BROTLI,
};

struct sl_ff_opts {
    enum sl_ff_format format;
    enum sl_ff_codec compression; /* whole-file, text formats */
    int include_metadata;
    struct {
        enum sl_ff_codec codec;
        uint32_t row_group_size;
        int statistics;
        uint32_t data_page_size;
    } parquet;
    struct {
        enum sl_ff_codec codec;
        char *schema; /* JSON text or NULL (inferred per file) */
        char *namespace_;
        char *record_name;
        int wire_format;
        long long schema_id;
    } avro;
    struct {
        char delimiter, quote;
        int include_header, always_quote, crlf;
        char *null_value;
        char **columns; /* NULL: every column, sorted by name */
        size_t ncolumns;
    } csv;
};

struct sl_ff_record {
    const uint8_t *payload; /* MessagePack as stored in the strand */
    size_t payload_len;
    uint64_t seq, timestamp_ms;
    const uint8_t *hash; /* 32 bytes */
};

/* Reads the options from a validated config; 0, or SL_E_INVAL naming the field. */
int sl_ff_opts_from_config(const json_t *cfg, struct sl_ff_opts *o, struct sl_err *err);
void sl_ff_opts_free(struct sl_ff_opts *o);

/* Appends one complete file holding the n records (of strand `strand`), compressed as the options
 * say, to out. 0, or a negative SL_E_* with err. */
int sl_ff_encode(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                 size_t n, struct sl_buf *out, struct sl_err *err);

/* The file name extension: "jsonl", "jsonl.gz", "csv.zst", "parquet", "avro", ... */
const char *sl_ff_extension(const struct sl_ff_opts *o);
/* Content-Type of the file. */
const char *sl_ff_content_type(const struct sl_ff_opts *o);

/* The per-format encoders and the compressor behind sl_ff_encode (one file each). */
int sl_ff_encode_json(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                      size_t n, int lines, struct sl_buf *out, struct sl_err *err);
int sl_ff_encode_csv(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                     size_t n, struct sl_buf *out, struct sl_err *err);
int sl_ff_encode_avro(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                      size_t n, struct sl_buf *out, struct sl_err *err);
int sl_ff_encode_parquet(const struct sl_ff_opts *o, const char *strand,
                         const struct sl_ff_record *r, size_t n, struct sl_buf *out,
                         struct sl_err *err);
/* Compresses in[0..len) as a complete stream of codec (gzip member, zstd frame, snappy framing
 * format, lz4 frame) appended to out. */
int sl_ff_compress(enum sl_ff_codec codec, const uint8_t *in, size_t len, struct sl_buf *out,
                   struct sl_err *err);

#endif
