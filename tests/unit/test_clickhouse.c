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
        "&max_insert_block_size=1048576&decompress=1\n"
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
             "&max_insert_block_size=1048576&decompress=1\n"
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

/* CityHash v1.0.2's 128-bit hash (the block checksum): values this function gave for bytes
 * i * 7 + 3, across its length classes (0-16, 17-127 CityMurmur, 128+ the long loop and its
 * tail); ClickHouse 18.16 accepted blocks checksummed by it at 15 lengths from 9 bytes to 2.7 MB
 * and refused one with a bit flipped (tests/integration/test_clickhouse.py reads lz4 back). */
static void test_cityhash(void)
{
    static const struct {
        size_t len;
        uint64_t lo, hi;
    } want[] = {
        {0, 0x3df09dfc64c09a2bull, 0x3cb540c392e51e29ull},
        {5, 0x769b42b3bb8e4249ull, 0xcd00ae16776dd6f3ull},
        {8, 0xb6ad7c9a5953432full, 0x9f0e02109921888cull},
        {16, 0x21e79cab7f9c2b79ull, 0xa35615c235313f7aull},
        {17, 0x0cd5bb13faea6e4cull, 0x32bf719178f6bbfeull},
        {127, 0x1f1c2a3c62829942ull, 0x5d5820604b01deeaull},
        {128, 0x11d00b10d6694d31ull, 0x108fb9e5b83fdff4ull},
        {200, 0x6bfc6588f8397554ull, 0xe3706db480814454ull},
        {999, 0xd84cc25c2dc52ed1ull, 0x8dd0db40e3de93bcull},
    };
    static uint8_t buf[1000];
    for (int i = 0; i < 1000; i++)
        buf[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        uint64_t lo, hi;
        sl_ch_cityhash128(buf, want[i].len, &lo, &hi);
        T_CHECK(lo == want[i].lo && hi == want[i].hi, "CityHash128 v1.0.2 of %zu bytes",
                want[i].len);
    }
    /* a block: checksum, 0x82, sizes, then an LZ4 block of the input; 1 MiB at most each */
    struct sl_buf out;
    sl_buf_init(&out, 0);
    static uint8_t big[(1u << 20) + 5];
    memset(big, 'x', sizeof(big));
    T_EQ_INT(sl_ch_lz4_blocks(big, sizeof(big), &out), 0, "lz4 blocks");
    uint32_t c1 =
        out.data[17] | out.data[18] << 8 | out.data[19] << 16 | (uint32_t)out.data[20] << 24;
    uint32_t u1 =
        out.data[21] | out.data[22] << 8 | out.data[23] << 16 | (uint32_t)out.data[24] << 24;
    uint64_t lo, hi, got_lo = 0, got_hi = 0;
    sl_ch_cityhash128(out.data + 16, c1, &lo, &hi);
    for (int i = 7; i >= 0; i--) {
        got_lo = got_lo << 8 | out.data[i];
        got_hi = got_hi << 8 | out.data[8 + i];
    }
    T_CHECK(out.data[16] == 0x82 && u1 == (1u << 20) && lo == got_lo && hi == got_hi &&
                out.len > 16 + c1 && out.data[16 + c1 + 16] == 0x82,
            "two blocks; the first holds 1 MiB, its checksum covers method, sizes and data");
    sl_buf_release(&out);
}

int main(void)
{
    make_records();
    test_format();
    test_config();
    test_errors();
    test_cityhash();
    for (int i = 0; i < 3; i++)
        sl_buf_release(&mp[i]);
    return T_DONE();
}
