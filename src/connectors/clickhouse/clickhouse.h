/* The ClickHouse sink's private header: how it reads ClickHouse's error answers (pure functions,
 * unit-tested and fuzzed). */
#ifndef SL_CONNECTORS_CLICKHOUSE_H
#define SL_CONNECTORS_CLICKHOUSE_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

/* What an error of ClickHouse is about, from its code. */
enum sl_ch_class {
    SL_CH_TRANSIENT, /* the server, the network, a limit: the same insert may pass later */
    SL_CH_ROW,       /* the data: a row ClickHouse cannot parse or convert */
    SL_CH_CONFIG,    /* the setup: unknown table or database, a refused login, no right */
};

/* Reads an error answer of ClickHouse's HTTP interface ("Code: 27, e.displayText() =
 * DB::Exception: Cannot parse input: ... (at row 3)\n, e.what() = DB::Exception\n", also with
 * the newer "Code: 27. DB::Exception: ..." spelling): *code gets the error code and *row the
 * 1-based row of the insert it names ("(at row N)"), or 0 if none. 0, or -1 if body is not such
 * an answer. body need not be NUL-ended. */
int sl_ch_parse_error(const char *body, size_t len, int *code, long *row);

/* The class of an error code. */
enum sl_ch_class sl_ch_classify(int code);

/* The message of an error answer without ClickHouse's boilerplate (", e.what() = ...", the
 * trailing newline), in out (NUL-ended, truncated to n). */
void sl_ch_message(const char *body, size_t len, char *out, size_t n);

/* CityHash128 of data as CityHash v1.0.2 computes it (ClickHouse's block checksum). */
void sl_ch_cityhash128(const void *data, size_t len, uint64_t *lo, uint64_t *hi);

/* Appends in[0..len) to out as ClickHouse compressed blocks (LZ4, checksummed), what its HTTP
 * interface takes with decompress=1. 0, or -1 (out of memory). */
int sl_ch_lz4_blocks(const void *in, size_t len, struct sl_buf *out);

#endif
