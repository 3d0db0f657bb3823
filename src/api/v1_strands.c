/* GET /v1/strands and GET /v1/strands/{name}/records (?where=EXPR filters, scanning at most
 * max_scan records per request). */
#include "api/api.h"
#include "expr/expr.h"
#include "formats/json_mp.h"

#include <stdlib.h>
#include <string.h>

#define MAX_LIMIT 10000
#define DEFAULT_LIMIT 100
#define DEFAULT_MAX_SCAN 100000
#define MAX_MAX_SCAN 100000000

/* Record r of strand as an expression's record: its payload is read lazily (only the fields
 * the expression names are decoded). */
static void expr_rec(struct sl_expr_rec *er, const char *strand, const struct sl_record *r)
{
    *er = (struct sl_expr_rec){.mp = r->payload,
                               .mp_len = r->payload_len,
                               .source = r->source,
                               .source_len = r->source_len,
                               .strand = strand,
                               .seq = r->seq,
                               .timestamp_ms = r->timestamp_ms,
                               .flags = r->flags};
}

/* Whether record r of strand matches e. */
static int matches(const struct sl_expr *e, const char *strand, const struct sl_record *r)
{
    struct sl_expr_rec er;
    expr_rec(&er, strand, r);
    int m = sl_expr_match(e, &er);
    return m;
}

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
    uint64_t from = 0, limit = DEFAULT_LIMIT, as_of = 0, max_scan = DEFAULT_MAX_SCAN;
    int has_from, has_limit, has_as_of, has_scan;
    if (sl_api_query_u64(req, "from_seq", 0, UINT64_MAX, &from, &has_from) < 0 ||
        sl_api_query_u64(req, "limit", 1, MAX_LIMIT, &limit, &has_limit) < 0 ||
        sl_api_query_u64(req, "as_of_ms", 0, UINT64_MAX, &as_of, &has_as_of) < 0 ||
        sl_api_query_u64(req, "max_scan", 1, MAX_MAX_SCAN, &max_scan, &has_scan) < 0)
        return;
    const char *where = sl_http_query(req, "where");
    struct sl_expr *expr = NULL;
    if (where) {
        char msg[300];
        if (!(expr = sl_expr_compile(where, strlen(where), msg, sizeof(msg))))
            return sl_api_error(req, 400, "invalid_query", "where: %s", msg);
    } else if (has_scan) {
        return sl_api_error(req, 400, "invalid_query", "max_scan: only with where");
    }
    int raw;
    if (sl_api_query_flag(req, "raw", &raw) < 0)
        return;
    if (has_from && has_as_of)
        return sl_api_error(req, 400, "invalid_query",
                            "as_of_ms: cannot be combined with from_seq (as_of_ms picks the "
                            "starting record)");
    struct sl_err err = {0};
    struct sl_strand *s;
    if (sl_store_strand(api->store, name, name_len, 0, &s, &err) < 0) {
        sl_expr_free(expr);
        return sl_api_error_from(req, &err);
    }
    uint64_t head = sl_strand_count(s);
    if (has_as_of) {
        /* start at the record that was current at as_of_ms: the last one at or before it */
        if (sl_strand_find_time(s, as_of, &from) < 0) {
            sl_expr_free(expr);
            struct sl_buf b;
            sl_buf_init(&b, 0);
            sl_buf_puts(&b, "{\"records\":[],\"next_seq\":0}");
            return sl_api_json(req, 200, &b);
        }
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"records\":[");
    uint64_t seq = from, found = 0;
    /* with where: at most max_scan records are read; next_seq is past what was scanned, so a
     * client pages through a large strand with a rare match */
    for (; seq < head && found < limit && (!expr || seq - from < max_scan); seq++) {
        struct sl_record r;
        int bad = sl_strand_read(s, seq, &r) < 0;
        if (!bad && expr && !matches(expr, sl_strand_name(s), &r))
            continue;
        if (bad || (found && sl_buf_putc(&b, ',') < 0) ||
            sl_api_record_json(&b, sl_strand_name(s), &r, raw) < 0) {
            sl_buf_release(&b);
            sl_expr_free(expr);
            return sl_api_error(req, 500, "corrupt_record", "strand %s: record %llu cannot be read",
                                sl_strand_name(s), (unsigned long long)seq);
        }
        found++;
    }
    sl_buf_printf(&b, "],\"next_seq\":%llu", (unsigned long long)seq);
    if (expr)
        sl_buf_printf(&b, ",\"scanned\":%llu,\"truncated\":%s", (unsigned long long)(seq - from),
                      seq < head && found < limit ? "true" : "false");
    sl_buf_putc(&b, '}');
    sl_expr_free(expr);
    sl_api_json(req, 200, &b);
}

/* The latest record per key: the strand is read backwards from its head (or from the last
 * record at or before as_of_ms), so the first record seen of a key is its latest; a tombstone
 * seen first removes the key. At most max_scan records are read (truncated: true if the scan
 * stopped before the first record: keys seen only earlier are missing). where= is applied to
 * each key's latest record. The answer lists them in seq order. */
void sl_v1_strand_latest_get(struct sl_api *api, struct sl_http_req *req, const char *name,
                             size_t name_len)
{
    uint64_t as_of = 0, limit = 1000, max_scan = DEFAULT_MAX_SCAN;
    int has_as_of, has_limit, has_scan;
    if (sl_api_query_u64(req, "as_of_ms", 0, UINT64_MAX, &as_of, &has_as_of) < 0 ||
        sl_api_query_u64(req, "limit", 1, MAX_LIMIT, &limit, &has_limit) < 0 ||
        sl_api_query_u64(req, "max_scan", 1, MAX_MAX_SCAN, &max_scan, &has_scan) < 0)
        return;
    const char *key = sl_http_query(req, "key"), *where = sl_http_query(req, "where");
    if (!key || !*key)
        return sl_api_error(req, 400, "invalid_query",
                            "key: required, the field path of the key (e.g. key=id or "
                            "key=customer.id)");
    char text[600], msg[300];
    snprintf(text, sizeof(text), "%s%s", strncmp(key, "value", 5) == 0 ? "" : "value.", key);
    struct sl_expr *kx = sl_expr_compile(text, strlen(text), msg, sizeof(msg)), *wx = NULL;
    if (!kx)
        return sl_api_error(req, 400, "invalid_query", "key: not a field path (%s)", msg);
    if (where && !(wx = sl_expr_compile(where, strlen(where), msg, sizeof(msg)))) {
        sl_expr_free(kx);
        return sl_api_error(req, 400, "invalid_query", "where: %s", msg);
    }
    struct sl_err err = {0};
    struct sl_strand *s;
    uint64_t end = 0;
    if (sl_store_strand(api->store, name, name_len, 0, &s, &err) < 0) {
        sl_expr_free(kx);
        sl_expr_free(wx);
        return sl_api_error_from(req, &err);
    }
    end = sl_strand_count(s);
    if (has_as_of) {
        uint64_t at;
        end = sl_strand_find_time(s, as_of, &at) == 0 ? at + 1 : 0; /* nothing that old: none */
    }
    json_t *seen = json_object(), *latest = json_array();
    struct sl_buf b;
    sl_buf_init(&b, 0);
    uint64_t seq = end, scanned = 0;
    while (seq > 0 && scanned < max_scan) {
        struct sl_record r;
        seq--;
        scanned++;
        if (sl_strand_read(s, seq, &r) < 0)
            continue;
        struct sl_expr_rec er;
        expr_rec(&er, sl_strand_name(s), &r);
        json_t *k = sl_expr_eval(kx, &er);
        char *ks = json_is_null(k) ? NULL : json_dumps(k, JSON_ENCODE_ANY | JSON_COMPACT);
        json_decref(k);
        if (ks && !json_object_get(seen, ks)) {
            json_object_set_new(seen, ks, json_true());
            if (!(r.flags & SL_FLAG_TOMBSTONE) && (!wx || sl_expr_match(wx, &er)))
                json_array_append_new(latest, json_integer((json_int_t)seq));
        }
        free(ks);
    }
    size_t n = json_array_size(latest), from = n > limit ? n - limit : 0;
    sl_buf_puts(&b, "{\"records\":[");
    int bad = 0;
    for (size_t i = n; i-- > from && !bad;) { /* seq order: latest was filled backwards */
        struct sl_record r;
        bad = sl_strand_read(s, (uint64_t)json_integer_value(json_array_get(latest, i)), &r) < 0 ||
              (i + 1 < n && sl_buf_putc(&b, ',') < 0) ||
              sl_api_record_json(&b, sl_strand_name(s), &r, 0) < 0;
    }
    sl_buf_printf(&b, "],\"keys\":%zu,\"scanned\":%llu,\"truncated\":%s}", n,
                  (unsigned long long)scanned, seq > 0 ? "true" : "false");
    json_decref(seen);
    json_decref(latest);
    sl_expr_free(kx);
    sl_expr_free(wx);
    if (bad) {
        sl_buf_release(&b);
        return sl_api_error(req, 500, "corrupt_record", "strand %s: a record cannot be read",
                            sl_strand_name(s));
    }
    sl_api_json(req, 200, &b);
}
