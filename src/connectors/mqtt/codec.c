/* MQTT 3.1.1 packets (OASIS standard, sections 2 and 3) and the source's record shape and
 * position. Pure functions: unit-tested in tests/unit/test_mqtt.c, fuzzed by
 * fuzz/fuzz_mqtt_packet.c.
 *
 * The record (a map, in this order):
 *   topic,
 *   payload: the message as JSON when parse_json_payload is on and it is one JSON text; else a
 *   string when it is valid UTF-8; else payload_base64 (the bytes in base64),
 *   with include_metadata: qos (0..2), retain, dup, packet_id (null at QoS 0), received_at (ms),
 *   sluice_mqtt_pending (QoS 2 sources, the last record of each append group): the packet ids of
 *   QoS 2 messages already appended and not yet released by the broker; read back after a crash
 *   so that a message the broker sends again (DUP) is not appended twice. */
#include "connectors/mqtt/mqtt.h"
#include "core/util.h"
#include "formats/json_mp.h"

#include <string.h>

/* ---- encoding ---- */

static int put_varlen(struct sl_buf *b, size_t n)
{
    if (n > 268435455u)
        return -1;
    do {
        uint8_t d = n % 128;
        n /= 128;
        if (n)
            d |= 0x80;
        if (sl_buf_putc(b, d) < 0)
            return -1;
    } while (n);
    return 0;
}

static int put_str(struct sl_buf *b, const void *s, size_t n)
{
    if (n > 65535)
        return -1;
    return sl_buf_put_be16(b, (uint16_t)n) < 0 || sl_buf_append(b, s, n) < 0 ? -1 : 0;
}

static int put_header(struct sl_buf *b, int type, unsigned flags, size_t rem)
{
    return sl_buf_putc(b, (uint8_t)(type << 4 | (flags & 15))) < 0 ? -1 : put_varlen(b, rem);
}

int sl_mqtt_put_connect(struct sl_buf *b, const struct sl_mqtt_connect *c)
{
    size_t id = strlen(c->client_id);
    size_t rem = 10 + 2 + id;
    uint8_t fl = c->clean_session ? 0x02 : 0;
    if (c->will_topic) {
        rem += 2 + strlen(c->will_topic) + 2 + strlen(c->will_message ? c->will_message : "");
        fl |= (uint8_t)(0x04 | (c->will_qos & 3) << 3 | (c->will_retain ? 0x20 : 0));
    }
    if (c->username) {
        rem += 2 + strlen(c->username);
        fl |= 0x80;
        if (c->password) {
            rem += 2 + strlen(c->password);
            fl |= 0x40;
        }
    }
    if (put_header(b, SL_MQTT_CONNECT, 0, rem) < 0 || put_str(b, "MQTT", 4) < 0 ||
        sl_buf_putc(b, 4) < 0 || sl_buf_putc(b, fl) < 0 ||
        sl_buf_put_be16(b, (uint16_t)(c->keep_alive > 65535 ? 65535 : c->keep_alive)) < 0 ||
        put_str(b, c->client_id, id) < 0)
        return -1;
    if (c->will_topic) {
        const char *m = c->will_message ? c->will_message : "";
        if (put_str(b, c->will_topic, strlen(c->will_topic)) < 0 || put_str(b, m, strlen(m)) < 0)
            return -1;
    }
    if (c->username && put_str(b, c->username, strlen(c->username)) < 0)
        return -1;
    if (c->username && c->password && put_str(b, c->password, strlen(c->password)) < 0)
        return -1;
    return 0;
}

int sl_mqtt_put_subscribe(struct sl_buf *b, uint16_t id, const char *const *filters, size_t n,
                          int qos)
{
    size_t rem = 2;
    for (size_t i = 0; i < n; i++)
        rem += 2 + strlen(filters[i]) + 1;
    if (put_header(b, SL_MQTT_SUBSCRIBE, 2, rem) < 0 || sl_buf_put_be16(b, id) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (put_str(b, filters[i], strlen(filters[i])) < 0 || sl_buf_putc(b, (uint8_t)qos) < 0)
            return -1;
    return 0;
}

int sl_mqtt_put_publish(struct sl_buf *b, const char *topic, size_t topic_len, const void *payload,
                        size_t len, int qos, int retain, int dup, uint16_t id)
{
    unsigned fl = (unsigned)((dup && qos ? 8 : 0) | (qos & 3) << 1 | (retain ? 1 : 0));
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + len;
    if (put_header(b, SL_MQTT_PUBLISH, fl, rem) < 0 || put_str(b, topic, topic_len) < 0 ||
        (qos && sl_buf_put_be16(b, id) < 0))
        return -1;
    return sl_buf_append(b, payload, len);
}

int sl_mqtt_put_ack(struct sl_buf *b, int type, uint16_t id)
{
    return put_header(b, type, type == SL_MQTT_PUBREL ? 2 : 0, 2) < 0 ? -1 : sl_buf_put_be16(b, id);
}

int sl_mqtt_put_empty(struct sl_buf *b, int type)
{
    return put_header(b, type, 0, 0);
}

/* ---- decoding ---- */

long sl_mqtt_frame(const uint8_t *p, size_t n, size_t max)
{
    size_t rem = 0, mult = 1;
    for (size_t i = 1; i <= 4; i++) {
        if (i >= n)
            return 0;
        rem += (size_t)(p[i] & 0x7f) * mult;
        if (!(p[i] & 0x80)) {
            if (rem + i + 1 > max)
                return -1;
            return rem + i + 1 <= n ? (long)(rem + i + 1) : 0;
        }
        mult *= 128;
    }
    return -1; /* a fifth length byte */
}

static int get16(const uint8_t **p, const uint8_t *end, uint16_t *v)
{
    if (end - *p < 2)
        return -1;
    *v = (uint16_t)((*p)[0] << 8 | (*p)[1]);
    *p += 2;
    return 0;
}

int sl_mqtt_parse(const uint8_t *p, size_t n, struct sl_mqtt_pkt *pkt)
{
    memset(pkt, 0, sizeof(*pkt));
    long len = sl_mqtt_frame(p, n, n);
    if (len <= 0 || (size_t)len != n)
        return -1;
    pkt->type = p[0] >> 4;
    pkt->flags = p[0] & 15;
    const uint8_t *q = p + 1, *end = p + n;
    while (*q & 0x80)
        q++;
    q++;
    size_t rem = (size_t)(end - q);
    switch (pkt->type) {
    case SL_MQTT_CONNACK:
        if (rem != 2 || pkt->flags || (q[0] & 0xfe))
            return -1;
        pkt->session_present = q[0] & 1;
        pkt->rc = q[1];
        return 0;
    case SL_MQTT_PUBLISH: {
        pkt->qos = (int)(pkt->flags >> 1) & 3;
        pkt->retain = pkt->flags & 1;
        pkt->dup = (pkt->flags >> 3) & 1;
        uint16_t tl;
        if (pkt->qos == 3 || (pkt->qos == 0 && pkt->dup) || get16(&q, end, &tl) < 0 ||
            (size_t)(end - q) < tl)
            return -1;
        pkt->topic = (const char *)q;
        pkt->topic_len = tl;
        q += tl;
        if (!sl_mqtt_topic_valid(pkt->topic, tl, 0))
            return -1;
        if (pkt->qos && (get16(&q, end, &pkt->id) < 0 || pkt->id == 0))
            return -1;
        pkt->payload = q;
        pkt->payload_len = (size_t)(end - q);
        return 0;
    }
    case SL_MQTT_PUBACK:
    case SL_MQTT_PUBREC:
    case SL_MQTT_PUBREL:
    case SL_MQTT_PUBCOMP:
    case SL_MQTT_UNSUBACK:
        if (rem != 2 || pkt->flags != (pkt->type == SL_MQTT_PUBREL ? 2u : 0u))
            return -1;
        return get16(&q, end, &pkt->id);
    case SL_MQTT_SUBACK:
        if (rem < 3 || pkt->flags || get16(&q, end, &pkt->id) < 0)
            return -1;
        pkt->codes = q;
        pkt->ncodes = (size_t)(end - q);
        for (size_t i = 0; i < pkt->ncodes; i++)
            if (q[i] > 2 && q[i] != 0x80)
                return -1;
        return 0;
    case SL_MQTT_PINGRESP:
        return rem == 0 && !pkt->flags ? 0 : -1;
    default:
        return -1;
    }
}

int sl_mqtt_topic_valid(const char *t, size_t n, int filter)
{
    if (n == 0 || n > 65535 || memchr(t, 0, n) || !sl_utf8_valid((const uint8_t *)t, n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (t[i] != '+' && t[i] != '#')
            continue;
        if (!filter)
            return 0;
        int alone = (i == 0 || t[i - 1] == '/') && (i + 1 == n || t[i + 1] == '/');
        if (!alone || (t[i] == '#' && i + 1 != n))
            return 0;
    }
    return 1;
}

/* ---- the record ---- */

static int put_key(struct sl_buf *b, const char *k)
{
    return sl_mp_write_str(b, k, strlen(k));
}

static int put_pending(struct sl_buf *mp, const struct sl_mqtt_pending *p)
{
    put_key(mp, "sluice_mqtt_pending");
    sl_mp_write_array(mp, (uint32_t)p->n);
    for (size_t i = 0; i < p->n; i++)
        sl_mp_write_int(mp, p->id[i]);
    return mp->failed ? -1 : 0;
}

int sl_mqtt_record(struct sl_buf *mp, const struct sl_mqtt_msg *m, int parse_json,
                   int include_metadata, const struct sl_mqtt_pending *pending)
{
    size_t start = mp->len;
    sl_mp_write_map(mp, 2 + (include_metadata ? 5 : 0) + (pending ? 1 : 0));
    put_key(mp, "topic");
    sl_mp_write_str(mp, m->topic, m->topic_len);
    size_t at = mp->len;
    put_key(mp, "payload");
    if (!parse_json || sl_json_to_mp((const char *)m->payload, m->payload_len, mp, 64, NULL) < 0) {
        if (sl_utf8_valid(m->payload, m->payload_len)) {
            sl_mp_write_str(mp, (const char *)m->payload, m->payload_len);
        } else {
            mp->len = at;
            put_key(mp, "payload_base64");
            sl_mp_write_base64(mp, m->payload, m->payload_len);
        }
    }
    if (include_metadata) {
        put_key(mp, "qos");
        sl_mp_write_int(mp, m->qos);
        put_key(mp, "retain");
        sl_mp_write_bool(mp, m->retain);
        put_key(mp, "dup");
        sl_mp_write_bool(mp, m->dup);
        put_key(mp, "packet_id");
        if (m->qos)
            sl_mp_write_int(mp, m->id);
        else
            sl_mp_write_nil(mp);
        put_key(mp, "received_at");
        sl_mp_write_uint(mp, m->received_ms);
    }
    if (pending)
        put_pending(mp, pending);
    if (mp->failed) {
        mp->len = start;
        return -1;
    }
    return 0;
}

int sl_mqtt_record_add_pending(struct sl_buf *mp, size_t at, const struct sl_mqtt_pending *p)
{
    if (at >= mp->len)
        return -1;
    struct sl_buf rec;
    sl_buf_init(&rec, 0);
    int rc = -1;
    uint32_t entries;
    const uint8_t *q = mp->data + at, *end = mp->data + mp->len;
    if (sl_mp_read_map(&q, end, &entries) < 0 || sl_mp_write_map(&rec, entries + 1) < 0 ||
        sl_buf_append(&rec, q, (size_t)(end - q)) < 0 || put_pending(&rec, p) < 0)
        goto out;
    mp->len = at;
    rc = sl_buf_append(mp, rec.data, rec.len);
out:
    sl_buf_release(&rec);
    return rc;
}

/* The fields of a record's payload the position needs: its qos and packet_id (-1 when it has
 * none, packet_id 0 when null: QoS 0), and its sluice_mqtt_pending into p when it has them
 * (*have_pending). 0, or -1 (not a map, or one of these of the wrong shape). */
static int record_fields(const uint8_t *payload, size_t len, int *qos, int32_t *id,
                         struct sl_mqtt_pending *p, int *have_pending)
{
    const uint8_t *q = payload, *end = payload + len;
    uint32_t n;
    *qos = *id = -1;
    *have_pending = 0;
    p->n = 0;
    if (sl_mp_read_map(&q, end, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        int64_t v;
        if (sl_mp_read_str(&q, end, &k, &kl) < 0)
            return -1;
        if (kl == 3 && memcmp(k, "qos", 3) == 0) {
            if (sl_mp_read_int(&q, end, &v) < 0 || v < 0 || v > 2)
                return -1;
            *qos = (int)v;
            continue;
        }
        if (kl == 9 && memcmp(k, "packet_id", 9) == 0) {
            if (sl_mp_read_nil(&q, end) == 0)
                v = 0;
            else if (sl_mp_read_int(&q, end, &v) < 0 || v < 1 || v > 65535)
                return -1;
            *id = (int32_t)v;
            continue;
        }
        if (kl == 19 && memcmp(k, "sluice_mqtt_pending", 19) == 0) {
            uint32_t m;
            if (sl_mp_read_array(&q, end, &m) < 0 || m > SL_MQTT_PENDING_MAX)
                return -1;
            p->n = 0;
            for (uint32_t j = 0; j < m; j++) {
                if (sl_mp_read_int(&q, end, &v) < 0 || v < 1 || v > 65535)
                    return -1;
                p->id[p->n++] = (uint16_t)v;
            }
            *have_pending = 1;
            continue;
        }
        long skip = sl_mp_skip(q, (size_t)(end - q), 64);
        if (skip < 0)
            return -1;
        q += skip;
    }
    return 0;
}

int sl_mqtt_record_pending(const uint8_t *payload, size_t len, struct sl_mqtt_pending *p)
{
    int qos, have;
    int32_t id;
    if (record_fields(payload, len, &qos, &id, p, &have) < 0)
        return -1;
    return have ? 0 : -1;
}

/* ---- position: "MQ1", group (8 bytes LE), n (2 bytes LE), ids (2 bytes LE each) ---- */

size_t sl_mqtt_pos_encode(uint64_t group, const struct sl_mqtt_pending *p, uint8_t *out)
{
    memcpy(out, "MQ1", 3);
    sl_put_le64(out + 3, group);
    size_t n = p ? p->n : 0;
    out[11] = (uint8_t)n;
    out[12] = (uint8_t)(n >> 8);
    for (size_t i = 0; i < n; i++) {
        out[13 + 2 * i] = (uint8_t)p->id[i];
        out[14 + 2 * i] = (uint8_t)(p->id[i] >> 8);
    }
    return 13 + 2 * n;
}

int sl_mqtt_pos_decode(const void *pos, size_t len, uint64_t *group, struct sl_mqtt_pending *p)
{
    const uint8_t *b = pos;
    if (len < 13 || memcmp(b, "MQ1", 3) != 0)
        return -1;
    size_t n = sl_get_le16(b + 11);
    if (n > SL_MQTT_PENDING_MAX || len != 13 + 2 * n)
        return -1;
    *group = sl_get_le64(b + 3);
    p->n = n;
    for (size_t i = 0; i < n; i++)
        p->id[i] = sl_get_le16(b + 13 + 2 * i);
    return 0;
}

int sl_mqtt_pos_fold(void *pos, size_t *pos_len, const uint8_t *payload, size_t len)
{
    struct sl_mqtt_pending p, mine;
    uint64_t group = 0;
    int qos, have;
    int32_t id;
    if (record_fields(payload, len, &qos, &id, &mine, &have) < 0 || qos < 0 || id < 0 ||
        (qos == 2 && id == 0))
        return -1;
    if (*pos_len == 0)
        p.n = 0; /* nothing stored yet: this record starts the position */
    else if (sl_mqtt_pos_decode(pos, *pos_len, &group, &p) < 0)
        return -1;
    if (qos < 2)
        return 0; /* QoS 0 and 1 are not kept in the position */
    if (sl_mqtt_pending_add(&p, (uint16_t)id) < 0)
        return -1;
    *pos_len = sl_mqtt_pos_encode(group, &p, pos);
    return 0;
}

int sl_mqtt_pending_has(const struct sl_mqtt_pending *p, uint16_t id)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->id[i] == id)
            return 1;
    return 0;
}

void sl_mqtt_pending_del(struct sl_mqtt_pending *p, uint16_t id)
{
    for (size_t i = 0; i < p->n; i++)
        if (p->id[i] == id) {
            p->id[i] = p->id[--p->n];
            return;
        }
}

int sl_mqtt_pending_add(struct sl_mqtt_pending *p, uint16_t id)
{
    if (sl_mqtt_pending_has(p, id))
        return 0;
    if (p->n == SL_MQTT_PENDING_MAX)
        return -1;
    p->id[p->n++] = id;
    return 0;
}
