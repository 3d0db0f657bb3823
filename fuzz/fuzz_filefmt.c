/* libFuzzer target: arbitrary bytes as a batch of record payloads for every file encoder (CSV,
 * Avro, Parquet, JSON/JSONL with each whole-file compression). Input: one options byte, then
 * records as [length byte][payload]. Encoders may refuse a payload (malformed MessagePack, binary
 * values, type mismatches) but must never crash, leak or read out of bounds, and a file they
 * accept must be well framed (Parquet: "PAR1" at both ends). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/filefmt.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static const uint8_t hash[32] = {1, 2, 3};
    struct sl_ff_record r[64];
    size_t nr = 0;
    if (n < 1)
        return 0;
    uint8_t opt = d[0];
    for (size_t i = 1; i < n && nr < 64;) {
        size_t len = d[i++];
        if (len > n - i)
            len = n - i;
        r[nr].payload = d + i;
        r[nr].payload_len = len;
        r[nr].seq = nr + 1;
        r[nr].timestamp_ms = 1700000000000ull + nr;
        r[nr].hash = hash;
        nr++;
        i += len;
    }
    static const char *const cfgs[] = {
        "{\"format\":\"csv\"}",
        "{\"format\":\"csv\",\"compression\":\"snappy\",\"csv\":{\"always_quote\":true,"
        "\"columns\":[\"a\",\"value\",\"_seq\"]}}",
        "{\"format\":\"jsonl\",\"compression\":\"lz4\"}",
        "{\"format\":\"json\",\"compression\":\"gzip\",\"include_metadata\":false}",
        "{\"format\":\"avro\"}",
        "{\"format\":\"avro\",\"avro\":{\"compression\":\"deflate\",\"schema\":"
        "\"{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"R\\\",\\\"fields\\\":[{\\\"name\\\":"
        "\\\"a\\\",\\\"type\\\":[\\\"null\\\",\\\"long\\\"]},{\\\"name\\\":\\\"value\\\","
        "\\\"type\\\":[\\\"null\\\",\\\"string\\\"]}]}\"}}",
        "{\"format\":\"parquet\",\"parquet\":{\"row_group_size\":3}}",
        "{\"format\":\"parquet\",\"include_metadata\":false,\"parquet\":{\"compression\":\"zstd\","
        "\"enable_statistics\":false}}",
    };
    for (size_t k = 0; k < sizeof(cfgs) / sizeof(cfgs[0]); k++) {
        if (!(opt & (1u << k)) && opt != 0)
            continue;
        json_error_t je;
        json_t *cfg = json_loads(cfgs[k], 0, &je);
        struct sl_ff_opts o;
        struct sl_err err = {0};
        struct sl_buf out;
        sl_buf_init(&out, 1 << 24);
        if (!cfg || sl_ff_opts_from_config(cfg, &o, &err) != 0)
            abort();
        int rc = sl_ff_encode(&o, "fz", r, nr, &out, &err);
        if (rc == 0 && out.len == 0)
            abort();
        if (rc == 0 && o.format == SL_FF_PARQUET &&
            (out.len < 12 || memcmp(out.data, "PAR1", 4) ||
             memcmp(out.data + out.len - 4, "PAR1", 4)))
            abort();
        if (rc != 0 && !err.msg[0])
            abort();
        sl_ff_opts_free(&o);
        json_decref(cfg);
        sl_buf_release(&out);
    }
    return 0;
}
