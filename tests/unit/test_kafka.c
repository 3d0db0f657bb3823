/* The Kafka source's record shape and position (src/connectors/kafka/record.c), and the config
 * rules of both Kafka kinds (field tables, Rivven's spellings): pure, no broker. */
#include "connectors/kafka/kafka.h"
#include "core/err.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"
#include "t.h"

#include <stdlib.h>

static char *as_json(const struct sl_buf *mp)
{
    static char out[8192];
    struct sl_buf j;
    sl_buf_init(&j, 0);
    size_t used;
    int rc = sl_mp_to_json(mp->data, mp->len, &used, &j, 64, NULL);
    snprintf(out, sizeof(out), "%.*s", rc == 0 ? (int)j.len : 7,
             rc == 0 ? (char *)j.data : "INVALID");
    sl_buf_release(&j);
    return out;
}

static void test_record(void)
{
    struct sl_buf mp;
    sl_buf_init(&mp, 0);
    const char *hn[] = {"trace", "bin"};
    const void *hv[] = {"abc", "\xff\x00"};
    size_t hl[] = {3, 2};
    struct sl_kafka_msg m = {.topic = "orders",
                             .partition = 2,
                             .offset = 41,
                             .timestamp_ms = 1700000000000LL,
                             .timestamp_type = 1,
                             .key = "k1",
                             .key_len = 2,
                             .value = "{\"n\": 1}",
                             .value_len = 8,
                             .n_headers = 2,
                             .header_names = hn,
                             .header_values = hv,
                             .header_lens = hl};
    T_CHECK(sl_kafka_record(&mp, &m, NULL) == 0, "a JSON message is encoded");
    T_EQ_STR(as_json(&mp),
             "{\"topic\":\"orders\",\"partition\":2,\"offset\":41,\"timestamp\":1700000000000,"
             "\"timestamp_type\":\"create_time\",\"key\":\"k1\",\"headers\":[{\"key\":\"trace\","
             "\"value\":\"abc\"},{\"key\":\"bin\",\"value_base64\":\"/wA=\"}],\"value\":{\"n\":1}}",
             "the record: metadata, key, headers in order (binary as base64), the value as JSON");
    sl_buf_reset(&mp);
    m.value = "not json";
    m.value_len = 8;
    m.key = "\xc3\x28";
    m.n_headers = 0;
    m.timestamp_ms = -1;
    struct sl_kafka_offsets o = {0};
    sl_kafka_offsets_set(&o, 2, 42);
    sl_kafka_offsets_set(&o, 0, 7);
    T_CHECK(sl_kafka_record(&mp, &m, &o) == 0, "a binary message is encoded");
    T_EQ_STR(
        as_json(&mp),
        "{\"topic\":\"orders\",\"partition\":2,\"offset\":41,\"timestamp\":null,"
        "\"timestamp_type\":null,\"key_base64\":\"wyg=\",\"headers\":[],\"value_base64\":"
        "\"bm90IGpzb24=\",\"sluice_next_offsets\":{\"2\":42,\"0\":7}}",
        "not JSON -> value_base64; a key that is not UTF-8 -> key_base64; the group's offsets");
    struct sl_kafka_offsets back;
    char topic[64];
    T_CHECK(sl_kafka_record_offsets(mp.data, mp.len, &back, topic, sizeof(topic)) == 0 &&
                back.n == 2 && sl_kafka_offsets_get(&back, 2) == 42 &&
                sl_kafka_offsets_get(&back, 0) == 7 && strcmp(topic, "orders") == 0,
            "the offsets are read back from the record");
    sl_buf_reset(&mp);
    m.value = NULL;
    m.key = NULL;
    T_CHECK(sl_kafka_record(&mp, &m, NULL) == 0 && strstr(as_json(&mp), "\"key\":null") &&
                strstr(as_json(&mp), "\"value\":null}"),
            "no key -> null; a tombstone -> value null");
    T_CHECK(sl_kafka_record_offsets(mp.data, mp.len, &back, topic, sizeof(topic)) < 0,
            "a record without offsets gives no position");
    /* a long binary value: the base64 string header is the smallest, as the transcoder writes */
    sl_buf_reset(&mp);
    static uint8_t big[70000];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(0x80 | i);
    m.value = big;
    m.value_len = sizeof(big);
    T_CHECK(sl_kafka_record(&mp, &m, NULL) == 0 && strcmp(as_json(&mp), "INVALID") != 0,
            "a 70 kB binary value is valid MessagePack");
    for (size_t len = 0; len < 300; len += 7) {
        sl_buf_reset(&mp);
        m.value_len = len ? len : 1;
        struct sl_buf j, back_mp;
        sl_buf_init(&j, 0);
        sl_buf_init(&back_mp, 0);
        size_t used;
        int ok = sl_kafka_record(&mp, &m, NULL) == 0 &&
                 sl_mp_to_json(mp.data, mp.len, &used, &j, 64, NULL) == 0 &&
                 sl_json_to_mp((char *)j.data, j.len, &back_mp, 64, NULL) == 0 &&
                 back_mp.len == mp.len && memcmp(back_mp.data, mp.data, mp.len) == 0;
        sl_buf_release(&j);
        sl_buf_release(&back_mp);
        if (!ok) {
            T_CHECK(0, "record with a %zu-byte binary value is canonical MessagePack", len);
            break;
        }
        if (len + 7 >= 300)
            T_CHECK(1, "records with binary values of 1..300 bytes are canonical MessagePack");
    }
    sl_buf_release(&mp);
}

static void test_position(void)
{
    struct sl_kafka_offsets o = {0}, back;
    for (int p = 0; p < 12; p++)
        sl_kafka_offsets_set(&o, p, (int64_t)p * 1000000007LL);
    uint8_t pos[SL_POSITION_MAX];
    size_t n = sl_kafka_pos_encode(&o, "orders", pos);
    T_CHECK(sl_kafka_pos_decode(pos, n, "orders", &back) == 0 && back.n == 12 &&
                sl_kafka_offsets_get(&back, 11) == 11LL * 1000000007LL,
            "a position round-trips (%zu bytes for 12 partitions)", n);
    T_CHECK(sl_kafka_pos_decode(pos, n, "other", &back) < 0,
            "a position of another topic is not used");
    T_CHECK(sl_kafka_pos_decode(pos, n - 1, "orders", &back) < 0,
            "a truncated position is refused");
    struct sl_kafka_offsets many = {0};
    for (int p = 0; p < 200; p++)
        sl_kafka_offsets_set(&many, p, INT64_MAX);
    n = sl_kafka_pos_encode(&many, "t", pos);
    T_CHECK(n <= SL_POSITION_MAX && sl_kafka_pos_decode(pos, n, "t", &back) == 0 && back.n < 200 &&
                back.n > 20,
            "too many partitions: the position keeps what fits (%zu)", back.n);
}

/* A group cut by a crash: its first records are in the strand without sluice_next_offsets; each
 * is folded into the last whole position so that none of them is consumed twice. */
static void test_fold(void)
{
    struct sl_kafka_offsets o = {0}, back;
    sl_kafka_offsets_set(&o, 0, 100);
    sl_kafka_offsets_set(&o, 1, 50);
    uint8_t pos[SL_POSITION_MAX];
    size_t n = sl_kafka_pos_encode(&o, "orders", pos);
    struct sl_buf mp;
    sl_buf_init(&mp, 0);
    struct sl_kafka_msg m = {.topic = "orders",
                             .partition = 1,
                             .offset = 50,
                             .value = "1",
                             .value_len = 1,
                             .timestamp_ms = -1};
    sl_kafka_record(&mp, &m, NULL);
    T_CHECK(sl_kafka_pos_fold(pos, &n, mp.data, mp.len) == 0 &&
                sl_kafka_pos_decode(pos, n, "orders", &back) == 0 && back.n == 2 &&
                sl_kafka_offsets_get(&back, 1) == 51 && sl_kafka_offsets_get(&back, 0) == 100,
            "a record without offsets moves its partition's next offset past it, the others stay");
    sl_buf_reset(&mp);
    m.partition = 3;
    m.offset = 7;
    sl_kafka_record(&mp, &m, NULL);
    T_CHECK(sl_kafka_pos_fold(pos, &n, mp.data, mp.len) == 0 &&
                sl_kafka_pos_decode(pos, n, "orders", &back) == 0 && back.n == 3 &&
                sl_kafka_offsets_get(&back, 3) == 8,
            "a partition the position did not have is added");
    sl_buf_reset(&mp);
    m.partition = 0;
    m.offset = 20;
    sl_kafka_record(&mp, &m, NULL);
    T_CHECK(sl_kafka_pos_fold(pos, &n, mp.data, mp.len) == 0 &&
                sl_kafka_pos_decode(pos, n, "orders", &back) == 0 &&
                sl_kafka_offsets_get(&back, 0) == 100,
            "a record below its partition's next offset does not move it back");
    size_t empty = 0;
    T_CHECK(sl_kafka_pos_fold(pos, &empty, mp.data, mp.len) == 0 &&
                sl_kafka_pos_decode(pos, empty, "orders", &back) == 0 && back.n == 1 &&
                sl_kafka_offsets_get(&back, 0) == 21,
            "no position stored yet: the first record starts one");
    sl_buf_reset(&mp);
    m.topic = "other";
    sl_kafka_record(&mp, &m, NULL);
    size_t before = empty;
    T_CHECK(sl_kafka_pos_fold(pos, &empty, mp.data, mp.len) < 0 && empty == before,
            "a record of another topic is not folded");
    T_CHECK(sl_kafka_pos_fold(pos, &empty, (const uint8_t *)"\x81\xa1x\x01", 4) < 0,
            "a payload that is not a Kafka record is not folded");
    sl_buf_release(&mp);
}

static void expect(const char *kind, const char *cfg, const char *field)
{
    struct sl_err err = {0};
    json_t *in = json_loads(cfg, 0, NULL);
    json_t *out = sl_kind_validate(sl_kind_find(kind), in, &err);
    if (field)
        T_CHECK(!out && strstr(err.msg, field), "%s %s -> %s (%s)", kind, cfg, field, err.msg);
    else
        T_CHECK(out != NULL, "%s %s is valid (%s)", kind, cfg, err.msg);
    json_decref(in);
    json_decref(out);
}

static void test_config(void)
{
    T_CHECK(sl_kind_find("kafka-source") == sl_kind_find("kafka") &&
                sl_kind_find("kafka-sink") == sl_kind_find("kafka_sink"),
            "Rivven's kafka-source and kafka-sink are aliases");
    expect("kafka", "{\"brokers\":[\"b:9092\"],\"topic\":\"t\",\"start_offset\":\"12\"}", NULL);
    expect("kafka", "{\"brokers\":[\"b:9092\"],\"topic\":\"t\",\"start_offset\":-1}",
           "config.start_offset");
    expect("kafka", "{\"brokers\":[\"b\"],\"topic\":\"t\"}", "config.brokers[0]");
    expect("kafka", "{\"brokers\":[\"b:1\"],\"topic\":\"t\",\"security\":{\"protocol\":\"tls\"}}",
           "config.security.protocol");
    expect("kafka",
           "{\"brokers\":[\"b:1\"],\"topic\":\"t\",\"security\":{\"mechanism\":\"PLAIN\"}}",
           "config.security.mechanism");
    expect("kafka_sink", "{\"brokers\":[\"b:1\"],\"topic\":\"t\",\"key_field\":\"a..b\"}",
           "config.key_field");
    expect("kafka_sink",
           "{\"brokers\":[\"b:1\"],\"topic\":\"t\",\"transactional_id\":\"x\",\"acks\":\"none\"}",
           "config.acks");
    expect("kafka_sink", "{\"brokers\":[\"b:1\"],\"topic\":\"t\",\"compression\":\"zstd\"}", NULL);
}

int main(void)
{
    test_record();
    test_position();
    test_fold();
    test_config();
    return t_failed_ ? 1 : 0;
}
