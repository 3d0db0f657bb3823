/* GET /v1/strands and GET /v1/strands/{name}/records. */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LIMIT 10000
#define DEFAULT_LIMIT 100

void sl_v1_strands_get(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_strand *list[256];
    struct sl_strand **v = list;
    size_t n = sl_store_list(api->store, list, 256);
    if (n > 256) {
        v = malloc(n * sizeof(*v));
        if (!v)
            return sl_api_error(req, 503, "out_of_memory", "out of memory");
        n = sl_store_list(api->store, v, n);
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"strands\":[");
    for (size_t i = 0; i < n; i++) {
        struct sl_strand_info in;
        sl_strand_info(v[i], &in);
        sl_buf_printf(&b, "%s{\"name\":\"%s\",\"count\":%llu,\"head_hash\":", i ? "," : "",
                      sl_strand_name(v[i]), (unsigned long long)in.count);
        if (in.count) {
            sl_buf_putc(&b, '"');
            sl_buf_hex(&b, in.head_hash, SL_HASH_LEN);
            sl_buf_printf(&b, "\",\"first_timestamp_ms\":%llu,\"last_timestamp_ms\":%llu",
                          (unsigned long long)in.first_ts, (unsigned long long)in.last_ts);
        } else {
            sl_buf_puts(&b, "null,\"first_timestamp_ms\":null,\"last_timestamp_ms\":null");
        }
        sl_buf_printf(&b, ",\"bytes\":%llu,\"segments\":%llu}", (unsigned long long)in.bytes,
                      (unsigned long long)in.segments);
    }
    sl_buf_puts(&b, "]}");
    if (v != list)
        free(v);
    sl_api_json(req, 200, &b);
}

void sl_v1_strand_records_get(struct sl_api *api, struct sl_http_req *req, const char *name,
                              size_t name_len)
{
    uint64_t from = 0, limit = DEFAULT_LIMIT, as_of = 0;
    int has_from, has_limit, has_as_of;
    if (sl_api_query_u64(req, "from_seq", 0, UINT64_MAX, &from, &has_from) < 0 ||
        sl_api_query_u64(req, "limit", 1, MAX_LIMIT, &limit, &has_limit) < 0 ||
        sl_api_query_u64(req, "as_of_ms", 0, UINT64_MAX, &as_of, &has_as_of) < 0)
        return;
    int raw;
    if (sl_api_query_flag(req, "raw", &raw) < 0)
        return;
    if (has_from && has_as_of)
        return sl_api_error(req, 400, "invalid_query",
                            "as_of_ms: cannot be combined with from_seq (as_of_ms picks the "
                            "starting record)");
    struct sl_err err = {0};
    struct sl_strand *s;
    if (sl_store_strand(api->store, name, name_len, 0, &s, &err) < 0)
        return sl_api_error_from(req, &err);
    uint64_t head = sl_strand_count(s);
    if (has_as_of) {
        /* start at the record that was current at as_of_ms: the last one at or before it */
        if (sl_strand_find_time(s, as_of, &from) < 0) {
            struct sl_buf b;
            sl_buf_init(&b, 0);
            sl_buf_puts(&b, "{\"records\":[],\"next_seq\":0}");
            return sl_api_json(req, 200, &b);
        }
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"records\":[");
    uint64_t seq = from;
    for (; seq < head && seq - from < limit; seq++) {
        struct sl_record r;
        if (sl_strand_read(s, seq, &r) < 0 || (seq > from && sl_buf_putc(&b, ',') < 0) ||
            sl_api_record_json(&b, sl_strand_name(s), &r, raw) < 0) {
            sl_buf_release(&b);
            return sl_api_error(req, 500, "corrupt_record", "strand %s: record %llu cannot be read",
                                sl_strand_name(s), (unsigned long long)seq);
        }
    }
    sl_buf_printf(&b, "],\"next_seq\":%llu}", (unsigned long long)seq);
    sl_api_json(req, 200, &b);
}
