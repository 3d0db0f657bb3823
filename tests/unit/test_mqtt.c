/* The MQTT connectors' pure parts (src/connectors/mqtt/codec.c, the URL parser of conn.c):
 * golden packet bytes from the MQTT 3.1.1 standard's layouts, framing and parsing of what a broker
 * sends, topic names and filters, the source's record shape and position. No broker. */
#include "t.h"
#include "connectors/mqtt/mqtt.h"
#include "formats/json_mp.h"

#include <stdlib.h>

static const char *as_json(const uint8_t *p, size_t n)
{
    static char out[4096];
    struct sl_buf j;
    sl_buf_init(&j, 0);
    size_t used;
    int rc = sl_mp_to_json(p, n, &used, &j, 64, NULL);
    snprintf(out, sizeof(out), "%.*s", rc == 0 ? (int)j.len : 7,
             rc == 0 ? (char *)j.data : "INVALID");
    sl_buf_release(&j);
    return out;
}

static void test_encode(void)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    struct sl_mqtt_connect c = {.client_id = "ab", .clean_session = 1, .keep_alive = 60};
    sl_mqtt_put_connect(&b, &c);
    T_EQ_STR(t_hex(b.data, b.len), "100e00044d5154540402003c00026162",
             "CONNECT: MQTT level 4, clean session, keep alive 60, client id");
    sl_buf_reset(&b);
    c = (struct sl_mqtt_connect){.client_id = "c",
                                 .keep_alive = 10,
                                 .username = "u",
                                 .password = "p",
                                 .will_topic = "w",
                                 .will_message = "bye",
                                 .will_qos = 1,
                                 .will_retain = 1};
    sl_mqtt_put_connect(&b, &c);
    T_EQ_STR(t_hex(b.data, b.len), "101b00044d51545404ec000a0001630001770003627965000175000170",
             "CONNECT with a retained QoS 1 will, user name and password");
    sl_buf_reset(&b);
    const char *f[] = {"a/+", "b/#"};
    sl_mqtt_put_subscribe(&b, 1, f, 2, 2);
    T_EQ_STR(t_hex(b.data, b.len), "820e00010003612f2b020003622f2302",
             "SUBSCRIBE two filters QoS 2");
    sl_buf_reset(&b);
    sl_mqtt_put_publish(&b, "t", 1, "hi", 2, 1, 1, 0, 7);
    T_EQ_STR(t_hex(b.data, b.len), "330700017400076869", "PUBLISH QoS 1 retained, packet id 7");
    sl_buf_reset(&b);
    sl_mqtt_put_ack(&b, SL_MQTT_PUBREL, 0x1234);
    sl_mqtt_put_ack(&b, SL_MQTT_PUBACK, 1);
    T_EQ_STR(t_hex(b.data, b.len), "6202123440020001", "PUBREL has flags 2, PUBACK 0");
    sl_buf_reset(&b);
    static uint8_t big[200];
    sl_mqtt_put_publish(&b, "t", 1, big, sizeof(big), 0, 0, 1, 0);
    T_EQ_STR(t_hex(b.data, 4), "30cb0100", "remaining length 203 takes two bytes; no DUP at QoS 0");
    sl_buf_release(&b);
}

static void test_parse(void)
{
    struct sl_mqtt_pkt p;
    const uint8_t connack[] = {0x20, 2, 1, 0};
    T_CHECK(sl_mqtt_parse(connack, 4, &p) == 0 && p.type == SL_MQTT_CONNACK &&
                p.session_present == 1 && p.rc == 0,
            "CONNACK with session present");
    const uint8_t pub[] = {0x3c, 8, 0, 3, 'a', '/', 'b', 0, 9, 'x'};
    T_CHECK(sl_mqtt_parse(pub, sizeof(pub), &p) == 0 && p.qos == 2 && p.dup && !p.retain &&
                p.id == 9 && p.topic_len == 3 && p.payload_len == 1 && p.payload[0] == 'x',
            "PUBLISH QoS 2 DUP: topic, packet id, payload");
    const uint8_t pub0[] = {0x31, 4, 0, 1, 't', 'z'};
    T_CHECK(sl_mqtt_parse(pub0, sizeof(pub0), &p) == 0 && p.qos == 0 && p.retain &&
                p.payload_len == 1,
            "PUBLISH QoS 0 retained has no packet id");
    const uint8_t bad_qos[] = {0x36, 5, 0, 1, 't', 0, 1};
    T_CHECK(sl_mqtt_parse(bad_qos, sizeof(bad_qos), &p) < 0, "QoS 3 is refused");
    const uint8_t id0[] = {0x32, 5, 0, 1, 't', 0, 0};
    T_CHECK(sl_mqtt_parse(id0, sizeof(id0), &p) < 0, "packet id 0 is refused");
    const uint8_t wild[] = {0x30, 3, 0, 1, '#'};
    T_CHECK(sl_mqtt_parse(wild, sizeof(wild), &p) < 0,
            "a PUBLISH topic with a wildcard is refused");
    const uint8_t rel_bad[] = {0x60, 2, 0, 1};
    T_CHECK(sl_mqtt_parse(rel_bad, sizeof(rel_bad), &p) < 0, "PUBREL without flags 2 is refused");
    const uint8_t suback[] = {0x90, 4, 0, 1, 1, 0x80};
    T_CHECK(sl_mqtt_parse(suback, sizeof(suback), &p) == 0 && p.ncodes == 2 && p.codes[1] == 0x80,
            "SUBACK with a refused filter");
    const uint8_t suback_bad[] = {0x90, 3, 0, 1, 7};
    T_CHECK(sl_mqtt_parse(suback_bad, sizeof(suback_bad), &p) < 0, "SUBACK code 7 is refused");
    const uint8_t conn[] = {0x10, 0};
    T_CHECK(sl_mqtt_parse(conn, 2, &p) < 0, "a CONNECT (client to server) is refused");
    T_EQ_INT(sl_mqtt_frame(pub, 5, 1 << 20), 0, "a partial packet needs more bytes");
    T_EQ_INT(sl_mqtt_frame(pub, sizeof(pub), 1 << 20), sizeof(pub), "a whole packet is framed");
    const uint8_t five[] = {0x30, 0xff, 0xff, 0xff, 0xff, 0x7f};
    T_EQ_INT(sl_mqtt_frame(five, sizeof(five), SIZE_MAX), -1, "a fifth length byte is malformed");
    const uint8_t huge[] = {0x30, 0xff, 0xff, 0xff, 0x7f};
    T_EQ_INT(sl_mqtt_frame(huge, sizeof(huge), SL_MQTT_MAX_PACKET), -1,
             "a packet over the cap is refused before it is read");
}

static void test_topics(void)
{
    T_CHECK(sl_mqtt_topic_valid("a/+/b", 5, 1) && sl_mqtt_topic_valid("#", 1, 1) &&
                sl_mqtt_topic_valid("a/#", 3, 1) && sl_mqtt_topic_valid("+", 1, 1),
            "valid filters");
    T_CHECK(!sl_mqtt_topic_valid("a/#/b", 5, 1) && !sl_mqtt_topic_valid("a+", 2, 1) &&
                !sl_mqtt_topic_valid("", 0, 1) && !sl_mqtt_topic_valid("a\0b", 3, 1),
            "bad filters: # not last, + not alone, empty, NUL");
    T_CHECK(sl_mqtt_topic_valid("a/b c/", 6, 0) && !sl_mqtt_topic_valid("a/+", 3, 0),
            "a topic name has no wildcards");
    T_CHECK(!sl_mqtt_topic_valid("\xff", 1, 0), "a topic is UTF-8");
}

static void test_url(void)
{
    struct sl_mqtt_url u;
    char why[160];
    T_CHECK(sl_mqtt_parse_url("mqtt://broker", &u, why, sizeof(why)) == 0 && u.port == 1883 &&
                !u.tls && strcmp(u.host, "broker") == 0,
            "mqtt:// defaults to port 1883");
    T_CHECK(sl_mqtt_parse_url("mqtts://[::1]:9", &u, why, sizeof(why)) == 0 && u.port == 9 &&
                u.tls && strcmp(u.host, "::1") == 0,
            "mqtts:// with an IPv6 literal and a port");
    const char *bad[] = {"mqtt://",        "mqtt://:1",    "tcp://h",    "mqtt://h:0",
                         "mqtt://h:70000", "mqtt://u:p@h", "mqtt://h/x", "mqtt://[::1",
                         "mqtt://h:",      "mqtts://h:1a", NULL};
    for (int i = 0; bad[i]; i++)
        T_CHECK(sl_mqtt_parse_url(bad[i], &u, why, sizeof(why)) < 0, "%s is refused (%s)", bad[i],
                why);
}

static void test_record(void)
{
    struct sl_buf mp;
    sl_buf_init(&mp, 0);
    struct sl_mqtt_msg m = {.topic = "s/1",
                            .topic_len = 3,
                            .payload = (const uint8_t *)"{\"t\": 21.5}",
                            .payload_len = 11,
                            .qos = 2,
                            .dup = 1,
                            .id = 5,
                            .received_ms = 1700000000000ULL};
    struct sl_mqtt_pending pend = {.n = 2, .id = {5, 9}};
    sl_mqtt_record(&mp, &m, 1, 1, &pend);
    T_EQ_STR(as_json(mp.data, mp.len),
             "{\"topic\":\"s/1\",\"payload\":{\"t\":21.5},\"qos\":2,\"retain\":false,\"dup\":true,"
             "\"packet_id\":5,\"received_at\":1700000000000,\"sluice_mqtt_pending\":[5,9]}",
             "a JSON payload with metadata and the pending ids");
    struct sl_mqtt_pending back;
    T_CHECK(sl_mqtt_record_pending(mp.data, mp.len, &back) == 0 && back.n == 2 && back.id[1] == 9,
            "the pending ids read back from the record (position_of)");
    sl_buf_reset(&mp);
    m.payload = (const uint8_t *)"{\"t\": 2";
    m.payload_len = 7;
    sl_mqtt_record(&mp, &m, 1, 0, NULL);
    T_EQ_STR(as_json(mp.data, mp.len), "{\"topic\":\"s/1\",\"payload\":\"{\\\"t\\\": 2\"}",
             "text that is not JSON is kept as a string");
    T_CHECK(sl_mqtt_record_pending(mp.data, mp.len, &back) < 0, "a record without pending ids");
    size_t first_len = mp.len;
    sl_mqtt_record(&mp, &m, 1, 0, NULL); /* a second record, then the ids added to it */
    T_CHECK(
        sl_mqtt_record_add_pending(&mp, first_len, &pend) == 0 &&
            strcmp(as_json(mp.data + first_len, mp.len - first_len),
                   "{\"topic\":\"s/1\",\"payload\":\"{\\\"t\\\": 2\",\"sluice_mqtt_pending\":[5,"
                   "9]}") == 0 &&
            strcmp(as_json(mp.data, first_len),
                   "{\"topic\":\"s/1\",\"payload\":\"{\\\"t\\\": 2\"}") == 0,
        "pending ids added to the last record only (%s)",
        as_json(mp.data + first_len, mp.len - first_len));
    sl_buf_reset(&mp);
    m.payload = (const uint8_t *)"\xff\x00";
    m.payload_len = 2;
    sl_mqtt_record(&mp, &m, 1, 0, NULL);
    T_EQ_STR(as_json(mp.data, mp.len), "{\"topic\":\"s/1\",\"payload_base64\":\"/wA=\"}",
             "bytes that are not UTF-8 are kept in base64");
    sl_buf_release(&mp);
}

static void test_position(void)
{
    struct sl_mqtt_pending p = {0}, back;
    int ok = 1;
    for (int i = 1; i <= SL_MQTT_PENDING_MAX; i++)
        ok &= sl_mqtt_pending_add(&p, (uint16_t)i) == 0;
    T_CHECK(ok && sl_mqtt_pending_add(&p, 999) < 0 && sl_mqtt_pending_add(&p, 3) == 0,
            "pending ids: %d fit, one more does not, one already there is fine",
            SL_MQTT_PENDING_MAX);
    uint8_t pos[SL_POSITION_MAX];
    size_t n = sl_mqtt_pos_encode(77, &p, pos);
    uint64_t g;
    T_CHECK(n <= SL_POSITION_MAX && sl_mqtt_pos_decode(pos, n, &g, &back) == 0 && g == 77 &&
                back.n == SL_MQTT_PENDING_MAX && back.id[248] == 249,
            "a full position fits in SL_POSITION_MAX and round-trips (%zu bytes)", n);
    T_CHECK(sl_mqtt_pos_decode(pos, n - 1, &g, &back) < 0, "a truncated position is refused");
    pos[0] = 'X';
    T_CHECK(sl_mqtt_pos_decode(pos, n, &g, &back) < 0, "another source's position is refused");
    sl_mqtt_pending_del(&p, 1);
    T_CHECK(!sl_mqtt_pending_has(&p, 1) && sl_mqtt_pending_has(&p, 249) &&
                p.n == SL_MQTT_PENDING_MAX - 1,
            "a released id leaves the pending set");
}

/* A group cut by a crash: its first records are in the strand without sluice_mqtt_pending; each
 * QoS 2 one is folded into the last whole position so that the broker's redelivery of it (DUP)
 * is skipped, not appended a second time. */
static void test_fold(void)
{
    struct sl_mqtt_pending p = {.n = 2, .id = {5, 9}}, back;
    uint8_t pos[SL_POSITION_MAX], before[SL_POSITION_MAX];
    size_t n = sl_mqtt_pos_encode(3, &p, pos);
    uint64_t g;
    struct sl_buf mp;
    sl_buf_init(&mp, 0);
    struct sl_mqtt_msg m = {.topic = "s/1",
                            .topic_len = 3,
                            .payload = (const uint8_t *)"21.5",
                            .payload_len = 4,
                            .qos = 2,
                            .id = 12,
                            .received_ms = 1700000000000ULL};
    sl_mqtt_record(&mp, &m, 1, 1, NULL);
    T_CHECK(sl_mqtt_pos_fold(pos, &n, mp.data, mp.len) == 0 &&
                sl_mqtt_pos_decode(pos, n, &g, &back) == 0 && g == 3 && back.n == 3 &&
                sl_mqtt_pending_has(&back, 12) && sl_mqtt_pending_has(&back, 5) &&
                sl_mqtt_pending_has(&back, 9),
            "a QoS 2 record's packet id joins the pending ids, the others and the group stay");
    T_CHECK(sl_mqtt_pos_fold(pos, &n, mp.data, mp.len) == 0 &&
                sl_mqtt_pos_decode(pos, n, &g, &back) == 0 && back.n == 3,
            "the same packet id folded twice is pending once (%zu)", back.n);
    sl_buf_reset(&mp);
    m.qos = 1;
    m.id = 40;
    sl_mqtt_record(&mp, &m, 1, 1, NULL);
    size_t was = n;
    memcpy(before, pos, n);
    T_CHECK(sl_mqtt_pos_fold(pos, &n, mp.data, mp.len) == 0 && n == was &&
                memcmp(pos, before, n) == 0,
            "a QoS 1 record leaves the position as it is");
    sl_buf_reset(&mp);
    m.qos = 2;
    m.id = 77;
    sl_mqtt_record(&mp, &m, 1, 1, NULL);
    size_t empty = 0;
    T_CHECK(sl_mqtt_pos_fold(pos, &empty, mp.data, mp.len) == 0 &&
                sl_mqtt_pos_decode(pos, empty, &g, &back) == 0 && g == 0 && back.n == 1 &&
                back.id[0] == 77,
            "no position stored yet: the first QoS 2 record starts one");
    sl_buf_reset(&mp);
    sl_mqtt_record(&mp, &m, 1, 0, NULL); /* include_metadata false: no qos, no packet_id */
    was = empty;
    memcpy(before, pos, empty);
    T_CHECK(sl_mqtt_pos_fold(pos, &empty, mp.data, mp.len) < 0 && empty == was &&
                memcmp(pos, before, was) == 0,
            "a record without its qos and packet_id is not folded, the position unchanged");
    sl_buf_reset(&mp);
    sl_mqtt_record(&mp, &m, 1, 1, NULL);
    T_CHECK(sl_mqtt_pos_fold(pos, &empty, (const uint8_t *)"\xa3qos", 4) < 0 &&
                sl_mqtt_pos_fold(pos, &empty, mp.data, mp.len - 2) < 0 && empty == was &&
                memcmp(pos, before, was) == 0,
            "a payload that is not an MQTT record (not a map; one cut short) is not folded");
    struct sl_mqtt_pending full = {0};
    for (int i = 1; i <= SL_MQTT_PENDING_MAX; i++)
        sl_mqtt_pending_add(&full, (uint16_t)(1000 + i));
    n = sl_mqtt_pos_encode(4, &full, pos);
    was = n;
    memcpy(before, pos, n);
    T_CHECK(sl_mqtt_pos_fold(pos, &n, mp.data, mp.len) < 0 && n == was &&
                memcmp(pos, before, n) == 0,
            "a full pending set cannot take one more: not folded, the position unchanged");
    sl_buf_release(&mp);
}

int main(void)
{
    test_encode();
    test_parse();
    test_topics();
    test_url();
    test_record();
    test_position();
    test_fold();
    return t_failed_ ? 1 : 0;
}
