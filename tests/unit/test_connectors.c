/* Connectors seen through the contract with no network: the exact bytes a sink would send
 * (format), datagen's reproducibility and CDC envelopes, and the catalog's entries. */
#include "connectors/datagen/datagen.h"
#include "connectors/webhook/webhook.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"
#include "sinktest.h"
#include "t.h"

#include <stdlib.h>

static struct sl_buf mp[3];
static uint8_t hashes[3][SL_REC_HASH_LEN];
static struct sl_rec recs[3];

static void make_records(void)
{
    static const char *const payloads[] = {"{\"a\":1}", "{\"b\":\"x\\\"y\"}", "[1,2]"};
    for (int i = 0; i < 3; i++) {
        sl_buf_init(&mp[i], 0);
        struct sl_jerr je;
        sl_json_to_mp(payloads[i], strlen(payloads[i]), &mp[i], 16, &je);
        memset(hashes[i], 0x10 * (i + 1), SL_REC_HASH_LEN);
        recs[i] = (struct sl_rec){.seq = 7 + (uint64_t)i,
                                  .timestamp_ms = 1700000000000ull + (uint64_t)i,
                                  .flags = i == 2 ? SL_REC_TOMBSTONE : 0,
                                  .source = "agent-1",
                                  .source_len = 7,
                                  .payload = mp[i].data,
                                  .payload_len = (uint32_t)mp[i].len,
                                  .hash = hashes[i]};
    }
}

/* The bytes of kind's format() for a batch of the first n records under config. */
static char *format(const char *kind, const char *config, size_t n)
{
    return sink_format(kind, config, recs, n, &sl_host_default);
}

static void test_sink_bytes(void)
{
    char *s = format("stdout", "{}", 3);
    T_EQ_STR(s,
             "{\"strand\":\"orders\",\"seq\":7,\"event\":\"write\",\"agent_id\":\"agent-1\","
             "\"record_hash\":\"1010101010101010101010101010101010101010101010101010101010101010\","
             "\"payload\":{\"a\":1},\"timestamp_ms\":1700000000000}\n"
             "{\"strand\":\"orders\",\"seq\":8,\"event\":\"write\",\"agent_id\":\"agent-1\","
             "\"record_hash\":\"2020202020202020202020202020202020202020202020202020202020202020\","
             "\"payload\":{\"b\":\"x\\\"y\"},\"timestamp_ms\":1700000000001}\n"
             "{\"strand\":\"orders\",\"seq\":9,\"event\":\"tombstone\",\"agent_id\":\"agent-1\","
             "\"record_hash\":\"3030303030303030303030303030303030303030303030303030303030303030\","
             "\"payload\":[1,2],\"timestamp_ms\":1700000000002}\n",
             "stdout json: one event object per line, strand and seq first, tombstones named");
    free(s);
    s = format("stdout", "{\"format\":\"text\"}", 2);
    T_EQ_STR(s,
             "orders 7 1700000000000 agent-1 {\"a\":1}\n"
             "orders 8 1700000000001 agent-1 {\"b\":\"x\\\"y\"}\n",
             "stdout text: strand seq timestamp_ms agent_id payload");
    free(s);
    s = format("stdout", "{\"pretty\":true}", 1);
    T_CHECK(s && strncmp(s, "{\n  \"strand\": \"orders\",\n  \"seq\": 7,\n", 36) == 0 &&
                strstr(s, "\n  \"payload\": {\n    \"a\": 1\n  },\n") && s[strlen(s) - 1] == '\n',
            "stdout pretty: indented, fields in order (%s)", s ? s : "(null)");
    free(s);
    s = format("webhook", "{\"url\":\"http://h/x\"}", 1);
    T_EQ_STR(s,
             "{\"event\":\"write\",\"agent_id\":\"agent-1\",\"record_hash\":"
             "\"1010101010101010101010101010101010101010101010101010101010101010\","
             "\"payload\":{\"a\":1},\"timestamp_ms\":1700000000000}",
             "webhook batch_size 1: the seed's event object");
    free(s);
    s = format("webhook", "{\"url\":\"http://h/x\",\"batch_size\":10}", 2);
    T_CHECK(s && s[0] == '[' && s[strlen(s) - 1] == ']' && strstr(s, "},{\"event\":\"write\""),
            "webhook batch: a JSON array of the events (%s)", s ? s : "(null)");
    free(s);
}

static void test_supabase(void)
{
    /* mapping payload: one bulk insert per set of keys; a record that is no object cannot be */
    char *s = format("supabase",
                     "{\"url\":\"https://p.supabase.co/\",\"key\":\"k\",\"table\":\"orders\"}", 2);
    T_EQ_STR(s, "POST /rest/v1/orders\n{\"a\":1}\nPOST /rest/v1/orders\n{\"b\":\"x\\\"y\"}\n",
             "supabase: a row per record, one request per set of columns");
    free(s);
    s = format("supabase",
               "{\"url\":\"https://p.supabase.co\",\"key\":\"k\",\"table\":\"orders\","
               "\"dedup_column\":\"rh\"}",
               1);
    T_EQ_STR(s,
             "POST /rest/v1/orders?on_conflict=rh\n{\"a\":1,\"rh\":"
             "\"1010101010101010101010101010101010101010101010101010101010101010\"}\n",
             "supabase dedup_column: the record hash in that column, on_conflict in the URL");
    free(s);
    s = format("supabase", "{\"url\":\"https://p.supabase.co\",\"key\":\"k\",\"table\":\"t\"}", 3);
    T_CHECK(!s, "supabase: a payload that is not an object cannot be a row");
    free(s);
    const struct sl_connector *k = sl_kind_find("supabase");
    struct {
        const char *config, *field;
    } bad[] = {
        {"{\"url\":\"https://p\",\"key\":\"k\"}", "config.table"},
        {"{\"url\":\"https://p\",\"key\":\"\",\"table\":\"t\"}", "config.key"},
        {"{\"url\":\"https://p\",\"key\":\"k\",\"table\":\"t;drop\"}", "config.table"},
        {"{\"url\":\"https://p\",\"key\":\"k\",\"table\":\"t\",\"dedup_column\":\"a b\"}",
         "config.dedup_column"},
        {"{\"key\":\"k\",\"table\":\"t\"}", "config.url"},
        {"{\"url\":\"https://p\",\"key\":\"k\",\"mapping\":\"rows\"}", "config.mapping"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sl_err err = {0};
        json_t *in = json_loads(bad[i].config, 0, NULL);
        json_t *out = sl_kind_validate(k, in, &err);
        size_t n = strlen(bad[i].field);
        T_CHECK(!out && strncmp(err.msg, bad[i].field, n) == 0 && err.msg[n] == ':',
                "supabase: %s is refused naming %s (%s)", bad[i].config, bad[i].field, err.msg);
        json_decref(in);
        json_decref(out);
    }
}

static char *event(int pattern, int cdc, uint64_t seed, uint64_t i, uint32_t *flags)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_datagen_event(&b, pattern, cdc, "demo", seed, i, flags);
    size_t len;
    return sl_buf_steal(&b, &len);
}

static void test_datagen(void)
{
    uint32_t fl;
    int same = 1, differ = 0, valid = 1;
    for (int p = 0; p < 3; p++)
        for (uint64_t i = 0; i < 50; i++) {
            char *a = event(p, 0, 42, i, &fl), *b = event(p, 0, 42, i, &fl);
            char *c = event(p, 0, 43, i, &fl);
            same &= strcmp(a, b) == 0;
            differ |= strcmp(a, c) != 0;
            json_t *o = json_loads(a, 0, NULL);
            valid &= o && json_integer_value(json_object_get(o, "event_id")) == (json_int_t)i &&
                     strcmp(json_string_value(json_object_get(o, "stream")), "demo") == 0;
            json_decref(o);
            free(a);
            free(b);
            free(c);
        }
    T_CHECK(same, "datagen: the same seed gives the same events");
    T_CHECK(differ, "datagen: another seed gives other events");
    T_CHECK(valid, "datagen: every event is JSON with its event_id and stream_name");
    char *o = event(0, 0, 42, 0, &fl);
    json_t *j = json_loads(o, 0, NULL);
    const char *keys[] = {"order_id", "customer_id", "product", "quantity", "total", "status"};
    int has = j != NULL;
    for (size_t k = 0; k < 6; k++)
        has &= json_object_get(j, keys[k]) != NULL;
    T_CHECK(has, "orders carry the seed's fields (%s)", o);
    json_decref(j);
    free(o);

    /* cdc_mode: per item, c first, then u (before = the previous after), then u or d */
    json_t *last_after[40] = {0};
    int ok = 1, deletes = 0, tomb_ok = 1;
    for (uint64_t i = 0; i < 120; i++) {
        char *s = event(1, 1, 7, i, &fl);
        json_t *e = json_loads(s, 0, NULL);
        const char *op = json_string_value(json_object_get(e, "op"));
        json_t *src = json_object_get(e, "source");
        json_t *after = json_object_get(e, "after"), *before = json_object_get(e, "before");
        uint64_t id = i / 3;
        ok &= op && json_integer_value(json_object_get(src, "event_index")) == (json_int_t)i &&
              strcmp(json_string_value(json_object_get(src, "table")), "users") == 0;
        if (op && op[0] == 'c')
            ok &= json_is_null(before) && json_is_object(after) && !last_after[id];
        else if (op)
            ok &= last_after[id] && json_equal(before, last_after[id]);
        if (op && op[0] == 'd') {
            deletes++;
            ok &= json_is_null(after);
        }
        tomb_ok &= (op && op[0] == 'd') == (fl == SL_REC_TOMBSTONE);
        json_decref(last_after[id]);
        last_after[id] = json_is_object(after) ? json_incref(after) : NULL;
        json_decref(e);
        free(s);
    }
    for (int i = 0; i < 40; i++)
        json_decref(last_after[i]);
    T_CHECK(ok, "cdc_mode: inserts first, updates and deletes carry the previous row as before");
    T_CHECK(deletes > 0 && deletes < 40, "cdc_mode: some items are deleted (%d of 40)", deletes);
    T_CHECK(tomb_ok, "cdc_mode: deletes are TOMBSTONE records, nothing else is");

    const struct sl_connector *k = sl_kind_find("datagen");
    struct sl_buf b;
    sl_buf_init(&b, 0);
    struct sl_jerr je;
    char *s = event(2, 0, 1, 41, &fl);
    sl_json_to_mp(s, strlen(s), &b, 16, &je);
    uint64_t pos = 0;
    size_t len = 0;
    T_CHECK(k && k->source->position_of(b.data, b.len, &pos, &len) == 0 && len == 8 && pos == 42,
            "datagen: the position after event 41 is read back from its payload (%llu)",
            (unsigned long long)pos);
    sl_buf_release(&b);
    free(s);
}

static void test_catalog(void)
{
    const char *want[] = {"rest_bridge", "webhook", "s3",      "postgres_cdc",
                          "kafka",       "stdout",  "datagen", "object_storage"};
    int all = 1;
    for (size_t i = 0; i < 8; i++)
        all &= sl_kind_find(want[i]) != NULL;
    T_CHECK(all, "the catalog names every kind");
    T_CHECK(sl_kind_find("postgres-cdc") == sl_kind_find("postgres_cdc") &&
                sl_kind_find("console") == sl_kind_find("stdout"),
            "Rivven's names are aliases");
    struct sl_err err = {0};
    json_t *in = json_loads("{\"pattern\":\"trades\"}", 0, NULL);
    json_t *out = sl_kind_validate(sl_kind_find("datagen"), in, &err);
    T_CHECK(!out && strstr(err.msg, "config.pattern") && strstr(err.msg, "orders"),
            "datagen: an unknown pattern is refused naming config.pattern (%s)", err.msg);
    json_decref(in);
    in = json_loads("{\"pattern\":\"users\"}", 0, NULL);
    out = sl_kind_validate(sl_kind_find("datagen"), in, &err);
    T_CHECK(out && json_is_integer(json_object_get(out, "seed")) &&
                json_number_value(json_object_get(out, "events_per_second")) == 1 &&
                strcmp(json_string_value(json_object_get(out, "stream_name")), "datagen") == 0,
            "datagen: defaults as in the Rivven seed, a seed chosen and stored when absent");
    json_decref(out);
    json_decref(in);
    static const struct sl_field f[] = {{"x", SL_F_STRING, 0, NULL, 0, "x", 0, 0, NULL, NULL},
                                        {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL}};
    static const struct sl_connector clash = {.abi = SL_CONNECTOR_ABI,
                                              .name = "webhook",
                                              .direction = SL_INBOUND,
                                              .description = "x",
                                              .fields = f};
    static const struct sl_connector nosend = {.abi = SL_CONNECTOR_ABI,
                                               .name = "nosend",
                                               .direction = SL_OUTBOUND,
                                               .description = "x",
                                               .fields = f};
    T_CHECK(sl_kinds_add(&clash, &err) == SL_E_CONFLICT && strstr(err.msg, "taken"),
            "a kind cannot take a built-in name (%s)", err.msg);
    T_CHECK(sl_kinds_add(&nosend, &err) == SL_E_INVAL && strstr(err.msg, "sink ops"),
            "a sink without ops is refused (%s)", err.msg);
}

/* ---- the webhook in Rivven's spelling (http-webhook) ---- */

static json_t *wh_validate(const char *config, struct sl_err *err)
{
    json_t *in = json_loads(config, 0, NULL);
    json_t *out = in ? sl_kind_validate(sl_kind_find("http-webhook"), in, err) : NULL;
    json_decref(in);
    return out;
}

/* config is refused, naming field (the message starts with it). */
static void wh_refused(const char *config, const char *field, const char *what)
{
    struct sl_err err = {0};
    json_t *out = wh_validate(config, &err);
    size_t n = strlen(field);
    T_CHECK(!out && err.code == SL_E_INVAL && strncmp(err.msg, field, n) == 0 && err.msg[n] == ':',
            "http-webhook: %s is refused naming %s (%s)", what, field, err.msg);
    json_decref(out);
}

static int wh_int(const json_t *cfg, const char *group, const char *key)
{
    const json_t *o = group ? json_object_get(cfg, group) : cfg;
    json_t *v = json_object_get(o, key);
    return v ? (int)json_integer_value(v) : -999;
}

static void test_webhook_rivven(void)
{
    const struct sl_connector *k = sl_kind_find("http-webhook");
    T_CHECK(k && k == sl_kind_find("webhook") && strcmp(k->name, "webhook") == 0,
            "http-webhook is an alias of the webhook kind");

    /* format(): the body does not depend on method or headers */
    char *a = format("webhook", "{\"url\":\"http://h/x\"}", 1);
    char *b = format("http-webhook",
                     "{\"url\":\"http://h/x\",\"method\":\"PUT\",\"headers\":{\"X-Team\":\"data\","
                     "\"Content-Type\":\"text/plain\",\"Authorization\":\"Bearer T\"}}",
                     1);
    T_EQ_STR(b,
             "{\"event\":\"write\",\"agent_id\":\"agent-1\",\"record_hash\":"
             "\"1010101010101010101010101010101010101010101010101010101010101010\","
             "\"payload\":{\"a\":1},\"timestamp_ms\":1700000000000}",
             "http-webhook with method PUT and headers: the same event bytes");
    T_CHECK(a && b && strcmp(a, b) == 0, "webhook and http-webhook format the same bytes");
    free(a);
    free(b);

    /* the seed's example, mapped onto the canonical keys */
    struct sl_err err = {0};
    json_t *cfg =
        wh_validate("{\"url\":\"https://api.example.com/webhook\",\"method\":\"POST\",\"headers\":"
                    "{\"Content-Type\":\"application/json\",\"Authorization\":\"Bearer T\"},"
                    "\"batch_size\":100,\"timeout_secs\":30,\"retry\":{\"max_attempts\":3,"
                    "\"initial_backoff_ms\":1000,\"max_backoff_ms\":30000}}",
                    &err);
    T_CHECK(cfg && wh_int(cfg, NULL, "timeout_ms") == 30000 &&
                !json_object_get(cfg, "timeout_secs"),
            "timeout_secs 30 is stored as timeout_ms 30000 (%s)", err.msg);
    T_CHECK(cfg && wh_int(cfg, "retry", "max_retries") == 2 &&
                !json_object_get(json_object_get(cfg, "retry"), "max_attempts") &&
                wh_int(cfg, "retry", "initial_backoff_ms") == 1000 &&
                wh_int(cfg, "retry", "max_backoff_ms") == 30000,
            "retry.max_attempts 3 (attempts in all) is stored as retry.max_retries 2");
    T_CHECK(cfg && wh_int(cfg, NULL, "batch_size") == 100 &&
                strcmp(json_string_value(json_object_get(cfg, "method")), "POST") == 0,
            "method and batch_size as given");
    json_decref(cfg);
    cfg = wh_validate("{\"url\":\"http://h/x\"}", &err);
    T_CHECK(cfg && wh_int(cfg, "retry", "max_retries") == -1 &&
                wh_int(cfg, NULL, "timeout_ms") == 10000 &&
                strcmp(json_string_value(json_object_get(cfg, "method")), "POST") == 0 &&
                !json_object_get(cfg, "headers") && !json_object_get(cfg, "header_secrets"),
            "without max_attempts the default stays: retry forever; method POST; no headers");
    json_decref(cfg);
    cfg = wh_validate("{\"url\":\"http://h/x\",\"retry\":{\"max_attempts\":1}}", &err);
    T_CHECK(cfg && wh_int(cfg, "retry", "max_retries") == 0, "max_attempts 1: no retry");
    json_decref(cfg);

    wh_refused("{\"url\":\"http://h\",\"timeout_secs\":30,\"timeout_ms\":1000}",
               "config.timeout_secs", "timeout_secs with timeout_ms");
    wh_refused("{\"url\":\"http://h\",\"timeout_secs\":\"30\"}", "config.timeout_secs",
               "timeout_secs as a string (types stay strict)");
    wh_refused("{\"url\":\"http://h\",\"timeout_secs\":0}", "config.timeout_secs",
               "timeout_secs 0");
    wh_refused("{\"url\":\"http://h\",\"retry\":{\"max_attempts\":3,\"max_retries\":2}}",
               "config.retry.max_attempts", "max_attempts with max_retries");
    wh_refused("{\"url\":\"http://h\",\"retry\":{\"max_attempts\":0}}", "config.retry.max_attempts",
               "max_attempts 0");
    wh_refused("{\"url\":\"http://h\",\"method\":\"GET\"}", "config.method", "method GET");
    wh_refused("{\"url\":\"http://h\",\"headers\":\"X-A: 1\"}", "config.headers",
               "headers that are not an object");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"X-A\":1}}", "config.headers",
               "a header value that is not a string");

    /* header injection and headers Sluice owns */
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"X-Evil\":\"a\\r\\nX-Injected: 1\"}}",
               "config.headers.X-Evil", "a header value with CR LF");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"X-Evil\":\"a\\nb\"}}", "config.headers.X-Evil",
               "a header value with LF");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"X-A\\r\\nX-B\":\"1\"}}",
               "config.headers.X-A\\r\\nX-B", "a header name with CR LF");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"X A\":\"1\"}}", "config.headers.X A",
               "a header name that is not a token");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"Authorization\":\"Bearer a\\r\\nX: 1\"}}",
               "config.headers.Authorization", "a secret header value with CR LF");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"idempotency-key\":\"k\"}}",
               "config.headers.idempotency-key", "a headers entry for Idempotency-Key");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"Content-Length\":\"5\"}}",
               "config.headers.Content-Length", "a headers entry for Content-Length");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"X-A\":\"1\",\"x-a\":\"2\"}}",
               "config.headers.x-a", "one header given twice in two cases");
    wh_refused("{\"url\":\"http://h\",\"secret\":\"s\",\"headers\":{\"Authorization\":\"B\"}}",
               "config.headers.Authorization", "headers.Authorization with secret");
    wh_refused("{\"url\":\"http://h\",\"headers\":{\"X-Api-Key\":\"***\"}}",
               "config.headers.X-Api-Key", "a secret header sent as *** with nothing stored");

    /* secret headers: masked in answers, kept when "***" comes back */
    const char *full =
        "{\"url\":\"http://h/x\",\"method\":\"PUT\",\"headers\":{\"X-Team\":\"data\","
        "\"authorization\":\"Bearer T\",\"X-Api-Key\":\"k1\"}}";
    cfg = wh_validate(full, &err);
    json_t *red = cfg ? sl_kind_redact(k, cfg) : NULL;
    json_t *rh = json_object_get(red, "headers");
    char *shown = red ? json_dumps(red, JSON_COMPACT) : NULL;
    T_CHECK(red && strcmp(json_string_value(json_object_get(rh, "authorization")), "***") == 0 &&
                strcmp(json_string_value(json_object_get(rh, "X-Api-Key")), "***") == 0 &&
                strcmp(json_string_value(json_object_get(rh, "X-Team")), "data") == 0 &&
                strcmp(json_string_value(json_object_get(red, "header_secrets")), "***") == 0,
            "answers show Authorization and X-Api-Key as ***, other headers as given (%s)",
            shown ? shown : "(null)");
    T_CHECK(shown && !strstr(shown, "Bearer T") && !strstr(shown, "k1"),
            "no secret header value appears anywhere in the answer");
    free(shown);
    char *text = NULL;
    struct sl_rec first = recs[0];
    T_CHECK(cfg && sl_webhook_headers(cfg, &first, &text, &err) == 0 &&
                strcmp(text,
                       "Content-Type: application/json\r\nExpect:\r\nX-Team: data\r\n"
                       "authorization: Bearer T\r\nX-Api-Key: k1\r\nIdempotency-Key: "
                       "1010101010101010101010101010101010101010101010101010101010101010\r\n") == 0,
            "the request carries the secret headers in clear (%s)", text ? text : err.msg);
    free(text);

    json_t *patch = json_deep_copy(red); /* the answer sent back as it is */
    sl_kind_keep_secrets(k, patch, cfg);
    json_t *again = sl_kind_validate(k, patch, &err);
    T_CHECK(again && json_equal(again, cfg), "a PATCH sending the masked config back keeps it (%s)",
            again ? "" : err.msg);
    json_decref(again);
    json_decref(patch);

    patch = json_deep_copy(red); /* without header_secrets, another header changed */
    json_object_del(patch, "header_secrets");
    json_object_set_new(json_object_get(patch, "headers"), "X-Team", json_string("ops"));
    sl_kind_keep_secrets(k, patch, cfg);
    again = sl_kind_validate(k, patch, &err);
    text = NULL;
    T_CHECK(again && sl_webhook_headers(again, &first, &text, &err) == 0 &&
                strstr(text, "authorization: Bearer T\r\n") && strstr(text, "X-Api-Key: k1\r\n") &&
                strstr(text, "X-Team: ops\r\n"),
            "headers sent back with *** and without header_secrets keep the secrets (%s)",
            text ? text : err.msg);
    free(text);
    json_decref(again);
    json_decref(patch);

    patch = json_deep_copy(red); /* a new Authorization, X-Api-Key kept */
    json_object_set_new(json_object_get(patch, "headers"), "authorization",
                        json_string("Bearer NEW"));
    sl_kind_keep_secrets(k, patch, cfg);
    again = sl_kind_validate(k, patch, &err);
    text = NULL;
    T_CHECK(again && sl_webhook_headers(again, &first, &text, &err) == 0 &&
                strstr(text, "authorization: Bearer NEW\r\n") && strstr(text, "X-Api-Key: k1\r\n"),
            "a new value replaces the stored one, the other stays (%s)", text ? text : err.msg);
    free(text);
    json_decref(again);
    json_decref(patch);

    patch = json_deep_copy(red); /* the secret headers removed: their values go too */
    json_object_del(json_object_get(patch, "headers"), "authorization");
    json_object_del(json_object_get(patch, "headers"), "X-Api-Key");
    sl_kind_keep_secrets(k, patch, cfg);
    again = sl_kind_validate(k, patch, &err);
    T_CHECK(again && !json_object_get(again, "header_secrets"),
            "removing the secret headers drops their stored values");
    json_decref(again);
    json_decref(patch);

    patch = json_deep_copy(red); /* a *** for a header that was never stored */
    json_object_set_new(json_object_get(patch, "headers"), "Proxy-Authorization",
                        json_string("***"));
    sl_kind_keep_secrets(k, patch, cfg);
    again = sl_kind_validate(k, patch, &err);
    T_CHECK(!again && strncmp(err.msg, "config.headers.Proxy-Authorization:", 35) == 0,
            "*** for a secret header with no stored value is refused (%s)", err.msg);
    json_decref(again);
    json_decref(patch);
    json_decref(red);
    json_decref(cfg);

    /* Content-Type may be replaced, an empty value is sent as one */
    cfg = wh_validate("{\"url\":\"http://h/x\",\"secret\":\"s\",\"headers\":{\"content-type\":"
                      "\"text/plain\",\"X-Empty\":\"\"}}",
                      &err);
    text = NULL;
    T_CHECK(cfg && sl_webhook_headers(cfg, &first, &text, &err) == 0 &&
                strcmp(text,
                       "Expect:\r\ncontent-type: text/plain\r\nX-Empty;\r\n"
                       "Authorization: Bearer s\r\nIdempotency-Key: "
                       "1010101010101010101010101010101010101010101010101010101010101010\r\n") == 0,
            "a user Content-Type replaces ours; an empty value goes as Name; (%s)",
            text ? text : err.msg);
    free(text);
    json_decref(cfg);
}

int main(void)
{
    make_records();
    test_sink_bytes();
    test_datagen();
    test_catalog();
    test_webhook_rivven();
    test_supabase();
    for (int i = 0; i < 3; i++)
        sl_buf_release(&mp[i]);
    return T_DONE();
}
