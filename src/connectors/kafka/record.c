/* The record a Kafka message becomes in a strand, and the source's position. Pure functions (no
 * librdkafka calls): unit-tested in tests/unit/test_kafka.c, fuzzed by fuzz/fuzz_kafka_record.c.
 *
 * The record is a map, in this order (the fields of Kafka Connect's SinkRecord, spelled as
 * Debezium spells its source block):
 *   topic, partition, offset, timestamp (ms, or null), timestamp_type ("create_time",
 *   "log_append_time" or null),
 *   key: the key as a string when it is valid UTF-8, null without a key; else key_base64,
 *   headers: [{"key": name, "value": string | null}] in order (duplicates kept); a value that is
 *   not UTF-8 is given as value_base64 instead,
 *   value: the message value as JSON when it is one JSON text; else value_base64 (the bytes, in
 *   base64); null for a tombstone (the record is then flagged TOMBSTONE),
 *   sluice_next_offsets (the last record of each append group only): {"<partition>": next
 *   offset} of every partition the connector has appended; read back after a crash. */
#include "connectors/kafka/kafka.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put_key(struct sl_buf *b, const char *k)
{
    return sl_mp_write_str(b, k, strlen(k));
}

/* "name": string, or "name_base64": base64 when the bytes are not UTF-8; null when p is NULL. */
static int put_bytes(struct sl_buf *b, const char *name, const void *p, size_t n)
{
    char k[64];
    if (!p)
        return put_key(b, name) < 0 || sl_mp_write_nil(b) < 0 ? -1 : 0;
    if (sl_utf8_valid(p, n))
        return put_key(b, name) < 0 || sl_mp_write_str(b, p, n) < 0 ? -1 : 0;
    snprintf(k, sizeof(k), "%s_base64", name);
    return put_key(b, k) < 0 || sl_mp_write_base64(b, p, n) < 0 ? -1 : 0;
}

int sl_kafka_record(struct sl_buf *mp, const struct sl_kafka_msg *m,
                    const struct sl_kafka_offsets *resume)
{
    static const char *const ts_types[] = {NULL, "create_time", "log_append_time"};
    size_t start = mp->len;
    sl_mp_write_map(mp, resume ? 9 : 8);
    put_key(mp, "topic");
    sl_mp_write_str(mp, m->topic, strlen(m->topic));
    put_key(mp, "partition");
    sl_mp_write_int(mp, m->partition);
    put_key(mp, "offset");
    sl_mp_write_int(mp, m->offset);
    put_key(mp, "timestamp");
    if (m->timestamp_ms >= 0)
        sl_mp_write_int(mp, m->timestamp_ms);
    else
        sl_mp_write_nil(mp);
    put_key(mp, "timestamp_type");
    const char *tt = m->timestamp_type > 0 && m->timestamp_type < 3 && m->timestamp_ms >= 0
                         ? ts_types[m->timestamp_type]
                         : NULL;
    if (tt)
        sl_mp_write_str(mp, tt, strlen(tt));
    else
        sl_mp_write_nil(mp);
    put_bytes(mp, "key", m->key, m->key_len);
    put_key(mp, "headers");
    sl_mp_write_array(mp, (uint32_t)m->n_headers);
    for (size_t i = 0; i < m->n_headers; i++) {
        sl_mp_write_map(mp, 2);
        put_key(mp, "key");
        const char *hn = m->header_names[i];
        size_t hl = strlen(hn);
        if (sl_utf8_valid((const uint8_t *)hn, hl))
            sl_mp_write_str(mp, hn, hl);
        else
            sl_mp_write_base64(mp, hn, hl);
        put_bytes(mp, "value", m->header_values[i], m->header_lens[i]);
    }
    /* the value: one JSON text -> itself; anything else -> value_base64 */
    if (!m->value) {
        put_key(mp, "value");
        sl_mp_write_nil(mp);
    } else {
        size_t at = mp->len;
        put_key(mp, "value");
        if (m->value_len == 0 || sl_json_to_mp(m->value, m->value_len, mp, 64, NULL) < 0) {
            mp->len = at;
            mp->failed = 0;
            put_key(mp, "value_base64");
            sl_mp_write_base64(mp, m->value, m->value_len);
        }
    }
    if (resume) {
        put_key(mp, "sluice_next_offsets");
        sl_mp_write_map(mp, (uint32_t)resume->n);
        for (size_t i = 0; i < resume->n; i++) {
            char p[16];
            int pl = snprintf(p, sizeof(p), "%d", (int)resume->part[i]);
            sl_mp_write_str(mp, p, (size_t)pl);
            sl_mp_write_int(mp, resume->next[i]);
        }
    }
    if (mp->failed) {
        mp->len = start;
        return -1;
    }
    return 0;
}

/* ---- offsets and positions ---- */

int sl_kafka_offsets_set(struct sl_kafka_offsets *o, int32_t p, int64_t next)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->part[i] == p) {
            o->next[i] = next;
            return 0;
        }
    if (o->n >= sizeof(o->part) / sizeof(o->part[0]))
        return -1;
    o->part[o->n] = p;
    o->next[o->n++] = next;
    return 0;
}

int64_t sl_kafka_offsets_get(const struct sl_kafka_offsets *o, int32_t p)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->part[i] == p)
            return o->next[i];
    return -1;
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    do {
        p[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80))
            return 0;
    }
    return -1;
}

/* 'K', version 1, FNV-1a of the topic (LE), then (partition, next offset) varint pairs. */
size_t sl_kafka_pos_encode(const struct sl_kafka_offsets *o, const char *topic, uint8_t *out)
{
    out[0] = 'K';
    out[1] = 1;
    uint32_t h = fnv1a(topic);
    memcpy(out + 2, &h, 4);
    size_t n = 6;
    for (size_t i = 0; i < o->n; i++) {
        uint8_t tmp[20];
        size_t k = put_varint(tmp, (uint32_t)o->part[i]);
        k += put_varint(tmp + k, (uint64_t)o->next[i]);
        if (n + k > SL_POSITION_MAX)
            break; /* documented: partitions beyond fall back to the committed offsets */
        memcpy(out + n, tmp, k);
        n += k;
    }
    return n;
}

int sl_kafka_pos_decode(const void *pos, size_t len, const char *topic, struct sl_kafka_offsets *o)
{
    const uint8_t *p = pos, *end = p + len;
    o->n = 0;
    uint32_t h = fnv1a(topic);
    if (len < 6 || p[0] != 'K' || p[1] != 1 || memcmp(p + 2, &h, 4) != 0)
        return -1;
    p += 6;
    while (p < end) {
        uint64_t part, next;
        if (get_varint(&p, end, &part) < 0 || get_varint(&p, end, &next) < 0 || part > INT32_MAX ||
            next > INT64_MAX || sl_kafka_offsets_set(o, (int32_t)part, (int64_t)next) < 0)
            return -1;
    }
    return 0;
}

/* The fields of a record's payload the position needs: its topic, partition and offset, and
 * its sluice_next_offsets into o when it has them (*have_offsets). 0, or -1. */
static int record_fields(const uint8_t *payload, size_t len, struct sl_kafka_offsets *o,
                         int *have_offsets, char *topic, size_t topic_n, int64_t *part,
                         int64_t *offset)
{
    const uint8_t *p = payload, *end = payload + len;
    uint32_t n;
    int have_topic = 0;
    *have_offsets = 0;
    *part = *offset = -1;
    o->n = 0;
    if (sl_mp_read_map(&p, end, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(&p, end, &k, &kl) < 0)
            return -1;
        if (kl == 5 && memcmp(k, "topic", 5) == 0) {
            const char *t;
            uint32_t tl;
            if (sl_mp_read_str(&p, end, &t, &tl) < 0 || tl >= topic_n)
                return -1;
            memcpy(topic, t, tl);
            topic[tl] = 0;
            have_topic = 1;
            continue;
        }
        if ((kl == 9 && memcmp(k, "partition", 9) == 0) ||
            (kl == 6 && memcmp(k, "offset", 6) == 0)) {
            int64_t v;
            if (sl_mp_read_int(&p, end, &v) < 0 || v < 0 || (kl == 9 && v > INT32_MAX))
                return -1;
            *(kl == 9 ? part : offset) = v;
            continue;
        }
        if (kl == 19 && memcmp(k, "sluice_next_offsets", 19) == 0) {
            uint32_t m;
            if (sl_mp_read_map(&p, end, &m) < 0)
                return -1;
            for (uint32_t j = 0; j < m; j++) {
                const char *ps;
                uint32_t pl;
                int64_t next;
                char buf[16];
                if (sl_mp_read_str(&p, end, &ps, &pl) < 0 || pl == 0 || pl >= sizeof(buf) ||
                    sl_mp_read_int(&p, end, &next) < 0 || next < 0)
                    return -1;
                memcpy(buf, ps, pl);
                buf[pl] = 0;
                char *e;
                long pn = strtol(buf, &e, 10);
                if (*e || pn < 0 || pn > INT32_MAX ||
                    sl_kafka_offsets_set(o, (int32_t)pn, next) < 0)
                    return -1;
            }
            *have_offsets = 1;
            continue;
        }
        long skip = sl_mp_skip(p, (size_t)(end - p), 64);
        if (skip < 0)
            return -1;
        p += skip;
    }
    return have_topic ? 0 : -1;
}

int sl_kafka_record_offsets(const uint8_t *payload, size_t len, struct sl_kafka_offsets *o,
                            char *topic, size_t topic_n)
{
    int have;
    int64_t part, offset;
    if (record_fields(payload, len, o, &have, topic, topic_n, &part, &offset) < 0)
        return -1;
    return have ? 0 : -1;
}

int sl_kafka_pos_fold(void *pos, size_t *pos_len, const uint8_t *payload, size_t len)
{
    struct sl_kafka_offsets o, mine;
    char topic[256];
    int have;
    int64_t part, offset;
    if (record_fields(payload, len, &mine, &have, topic, sizeof(topic), &part, &offset) < 0 ||
        part < 0 || offset < 0)
        return -1;
    if (*pos_len == 0)
        o.n = 0; /* nothing stored yet: this record starts the position */
    else if (sl_kafka_pos_decode(pos, *pos_len, topic, &o) < 0)
        return -1;
    if (sl_kafka_offsets_get(&o, (int32_t)part) < offset + 1 &&
        sl_kafka_offsets_set(&o, (int32_t)part, offset + 1) < 0)
        return -1;
    *pos_len = sl_kafka_pos_encode(&o, topic, pos);
    return 0;
}
