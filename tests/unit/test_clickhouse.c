/* The ClickHouse sink with no network: the exact request format() gives (envelope and payload
 * rows, dedup_column), Rivven's keys rewritten onto the framework's, bad configs naming the
 * field, and the reading of ClickHouse's error answers. */
#include "connectors/clickhouse/clickhouse.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"
#include "sinktest.h"
#include "t.h"

#include <stdlib.h>

static struct sl_buf mp[3];
static uint8_t hashes[3][SL_REC_HASH_LEN];
static struct sl_rec recs[3];

static uint64_t fake_now(void)
{
    return 1700000005000ull;
}

static void make_records(void)
{
    static const char *const payloads[] = {"{\"id\":1,\"name\":\"a\\\"b\"}", "{}", "[1,2]"};
    for (int i = 0; i < 3; i++) {
        sl_buf_init(&mp[i], 0);
        struct sl_jerr je;
        sl_json_to_mp(payloads[i], strlen(payloads[i]), &mp[i], 16, &je);
        memset(hashes[i], 0xa0 + i, SL_REC_HASH_LEN);
        recs[i] = (struct sl_rec){.seq = 7 + (uint64_t)i,
                                  .timestamp_ms = 1700000000123ull + (uint64_t)i,
                                  .flags = i == 2 ? SL_REC_TOMBSTONE : 0,
                                  .source = "agent-1",
                                  .source_len = 7,
                                  .payload = mp[i].data,
                                  .payload_len = (uint32_t)mp[i].len,
                                  .hash = hashes[i]};
    }
}

static json_t *validated(const char *config, struct sl_err *err)
{
    return sink_config("clickhouse", config, err);
}

/* format() of the first n records under config (the clock fixed), or NULL. */
static char *format(const char *config, size_t n)
{
    struct sl_host host = sl_host_default;
    host.now_ms = fake_now;
    return sink_format("clickhouse", config, recs, n, &host);
}

#define HASH0 "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0"
#define HASH1 "a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1a1"

static void test_format(void)
{
    char *s = format("{\"url\":\"http://ch:8123/\",\"table\":\"events\"}", 1);
    T_EQ_STR(
        s,
        "POST /?database=default&query=INSERT%20INTO%20default.events%20FORMAT%20JSONEachRow"
        "&max_insert_block_size=1048576\n"
        "{\"event_type\":\"write\",\"stream\":\"orders\",\"namespace\":\"agent-1\","
        "\"timestamp\":\"2023-11-14T22:13:20.123Z\",\"data\":\"{\\\"id\\\":1,\\\"name\\\":"
        "\\\"a\\\\\\\"b\\\"}\",\"metadata\":\"{\\\"seq\\\":7,\\\"record_hash\\\":\\\"" HASH0
        "\\\",\\\"agent_id\\\":\\\"agent-1\\\"}\",\"_ingested_at\":\"2023-11-14T22:13:25.000Z\"}"
        "\n",
        "envelope (the seed's columns): the payload and the metadata as JSON text");
    free(s);
    s = format("{\"url\":\"http://ch\",\"table\":\"t\",\"database\":\"db\",\"mapping\":\"payload\","
               "\"dedup_column\":\"rh\"}",
               2);
    T_EQ_STR(s,
             "POST /?database=db&query=INSERT%20INTO%20db.t%20FORMAT%20JSONEachRow"
             "&max_insert_block_size=1048576\n"
             "{\"rh\":\"" HASH0 "\",\"id\":1,\"name\":\"a\\\"b\"}\n{\"rh\":\"" HASH1 "\"}\n",
             "payload mapping: the fields are the columns, dedup_column first");
    free(s);
    s = format("{\"url\":\"http://ch\",\"table\":\"t\",\"mapping\":\"payload\"}", 3);
    T_CHECK(!s, "payload mapping: a payload that is not an object cannot be a row");
    free(s);
    s = format("{\"url\":\"http://ch\",\"table\":\"t\"}", 3);
    T_CHECK(s && strstr(s, "\"event_type\":\"tombstone\"") && strstr(s, "\"data\":\"[1,2]\""),
            "envelope: any payload, a tombstone's event_type");
    free(s);
}

static void test_config(void)
{
    struct sl_err err = {0};
    json_t *cfg = validated(
        "{\"url\":\"http://localhost:8123\",\"database\":\"default\",\"table\":\"events\","
        "\"username\":\"default\",\"password\":\"pw\",\"batch_size\":10000,"
        "\"flush_interval_secs\":5,\"compression\":\"lz4\",\"validation\":true,"
        "\"skip_invalid_rows\":false,\"max_retries\":3,\"initial_backoff_ms\":200,"
        "\"max_backoff_ms\":5000,\"circuit_breaker\":{\"enabled\":false,\"failure_threshold\":5,"
        "\"reset_timeout_secs\":30,\"success_threshold\":2}}",
        &err);
    json_t *retry = json_object_get(cfg, "retry"), *cb = json_object_get(cfg, "circuit_breaker");
    T_CHECK(cfg && json_integer_value(json_object_get(retry, "max_retries")) == 3 &&
                json_integer_value(json_object_get(retry, "initial_backoff_ms")) == 200 &&
                json_integer_value(json_object_get(retry, "max_backoff_ms")) == 5000 &&
                !json_object_get(cfg, "max_retries") && !json_object_get(cb, "enabled") &&
                json_integer_value(json_object_get(cb, "failure_threshold")) == 1000000,
            "the seed's config: retry keys into retry, a disabled breaker never opens (%s)",
            err.msg);
    json_decref(cfg);
    struct {
        const char *config, *field;
    } bad[] = {
        {"{\"table\":\"t\"}", "config.url"},
        {"{\"url\":\"http://h\"}", "config.table"},
        {"{\"url\":\"http://h\",\"table\":\"1t\"}", "config.table"},
        {"{\"url\":\"http://h\",\"table\":\"t\",\"database\":\"a.b\"}", "config.database"},
        {"{\"url\":\"http://h\",\"table\":\"t\",\"password\":\"p\",\"access_token\":\"x\"}",
         "config.access_token"},
        {"{\"url\":\"http://h\",\"table\":\"t\",\"max_retries\":1,\"retry\":{\"max_retries\":2}}",
         "config.max_retries"},
        {"{\"url\":\"http://h\",\"table\":\"t\",\"circuit_breaker\":{\"success_threshold\":11}}",
         "config.circuit_breaker.success_threshold"},
        {"{\"url\":\"http://h\",\"table\":\"t\",\"username\":\"\"}", "config.username"},
        {"{\"url\":\"http://h\",\"table\":\"t\",\"password\":\"a\\nb\"}", "config.password"},
        {"{\"url\":\"http://h\",\"table\":\"t\",\"flush_interval_secs\":-1}",
         "config.flush_interval_secs"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sl_err e = {0};
        json_t *out = validated(bad[i].config, &e);
        size_t n = strlen(bad[i].field);
        T_CHECK(!out && strncmp(e.msg, bad[i].field, n) == 0 && e.msg[n] == ':',
                "%s is refused naming %s (%s)", bad[i].config, bad[i].field, e.msg);
        json_decref(out);
    }
}

static void test_errors(void)
{
    int code;
    long row;
    const char *a = "Code: 27, e.displayText() = DB::Exception: Cannot parse input: expected { "
                    "before: x: (at row 3)\n, e.what() = DB::Exception\n";
    T_CHECK(sl_ch_parse_error(a, strlen(a), &code, &row) == 0 && code == 27 && row == 3,
            "18.16's answer: code 27, row 3");
    char msg[200];
    sl_ch_message(a, strlen(a), msg, sizeof(msg));
    T_EQ_STR(msg, "Code: 27, Cannot parse input: expected { before: x: (at row 3)",
             "the message without ClickHouse's boilerplate");
    const char *b = "Code: 60. DB::Exception: Table default.x doesn't exist. (UNKNOWN_TABLE)";
    T_CHECK(sl_ch_parse_error(b, strlen(b), &code, &row) == 0 && code == 60 && row == 0,
            "the newer spelling: code 60, no row");
    T_CHECK(sl_ch_parse_error("Code: x", 7, &code, &row) < 0 &&
                sl_ch_parse_error("<html>", 6, &code, &row) < 0 &&
                sl_ch_parse_error("Code: 27", 8, &code, &row) < 0,
            "anything else is not an error answer");
    const char *c = "Code: 26, (at row 99999999999999999999)";
    T_CHECK(sl_ch_parse_error(c, strlen(c), &code, &row) == 0 && row == 0,
            "a row number too long is no row");
    T_CHECK(sl_ch_classify(27) == SL_CH_ROW && sl_ch_classify(117) == SL_CH_ROW &&
                sl_ch_classify(60) == SL_CH_CONFIG && sl_ch_classify(193) == SL_CH_CONFIG &&
                sl_ch_classify(252) == SL_CH_TRANSIENT && sl_ch_classify(0) == SL_CH_TRANSIENT,
            "row errors, setup errors, and the rest transient");
}

int main(void)
{
    make_records();
    test_format();
    test_config();
    test_errors();
    for (int i = 0; i < 3; i++)
        sl_buf_release(&mp[i]);
    return T_DONE();
}
