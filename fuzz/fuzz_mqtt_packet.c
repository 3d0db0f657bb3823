/* libFuzzer target: what an MQTT broker sends the connectors, and what the source reads back
 * after a crash. The input is framed and parsed as a stream of packets (sl_mqtt_frame,
 * sl_mqtt_parse); a PUBLISH that parses becomes a source record (sl_mqtt_record), which must be
 * MessagePack that reads back as JSON with the same pending ids, and the same bytes when the ids
 * are added afterwards (sl_mqtt_record_add_pending); folded into a position
 * (sl_mqtt_pos_fold), a QoS 2 record's packet id must then be pending and a QoS 0/1 record must
 * leave the position as it was. The whole input is also given to sl_mqtt_record_pending
 * (position_of), sl_mqtt_pos_fold (into an empty and into a valid position), sl_mqtt_pos_decode
 * and sl_mqtt_topic_valid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/mqtt/mqtt.h"
#include "formats/json_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sl_mqtt_pending pend;
    uint64_t g;
    sl_mqtt_record_pending(d, n, &pend);
    sl_mqtt_pos_decode(d, n, &g, &pend);
    uint8_t fpos[SL_POSITION_MAX];
    size_t flen = 0;
    sl_mqtt_pos_fold(fpos, &flen, d, n);
    struct sl_mqtt_pending some = {.n = 2, .id = {3, 7}};
    flen = sl_mqtt_pos_encode(5, &some, fpos);
    sl_mqtt_pos_fold(fpos, &flen, d, n);
    sl_mqtt_topic_valid((const char *)d, n, d[0] & 1);
    size_t off = 0;
    while (off < n) {
        long len = sl_mqtt_frame(d + off, n - off, 1u << 20);
        if (len <= 0)
            break;
        struct sl_mqtt_pkt p;
        if (sl_mqtt_parse(d + off, (size_t)len, &p) == 0 && p.type == SL_MQTT_PUBLISH) {
            struct sl_buf mp;
            sl_buf_init(&mp, 0);
            uint16_t first = p.id ? p.id : 1;
            struct sl_mqtt_pending in = {.n = 2, .id = {first, 7}};
            struct sl_mqtt_msg m = {.topic = p.topic,
                                    .topic_len = p.topic_len,
                                    .payload = p.payload,
                                    .payload_len = p.payload_len,
                                    .qos = p.qos,
                                    .retain = p.retain,
                                    .dup = p.dup,
                                    .id = p.id};
            if (sl_mqtt_record(&mp, &m, p.flags & 1, 1, &in) == 0) {
                struct sl_buf j;
                sl_buf_init(&j, 0);
                size_t used;
                if (sl_mp_to_json(mp.data, mp.len, &used, &j, 200, NULL) < 0 || used != mp.len)
                    abort();
                struct sl_mqtt_pending back;
                if (sl_mqtt_record_pending(mp.data, mp.len, &back) < 0 || back.n != 2 ||
                    back.id[0] != first || back.id[1] != 7)
                    abort();
                sl_buf_release(&j);
                /* the same record written without the ids, then given them, is the same bytes */
                struct sl_buf two;
                sl_buf_init(&two, 0);
                if (sl_mqtt_record(&two, &m, p.flags & 1, 1, NULL) < 0 ||
                    sl_mqtt_record_add_pending(&two, 0, &in) < 0 || two.len != mp.len ||
                    memcmp(two.data, mp.data, mp.len) != 0)
                    abort();
                sl_buf_release(&two);
                /* folded (a record of a group a crash cut short): a QoS 2 id becomes pending */
                struct sl_mqtt_pending base = {.n = 1, .id = {7}}, after;
                uint8_t pos[SL_POSITION_MAX], was[SL_POSITION_MAX];
                size_t pl = sl_mqtt_pos_encode(9, &base, pos), wl = pl;
                memcpy(was, pos, pl);
                if (sl_mqtt_pos_fold(pos, &pl, mp.data, mp.len) != 0 ||
                    sl_mqtt_pos_decode(pos, pl, &g, &after) != 0 || g != 9 ||
                    (p.qos == 2 &&
                     (!sl_mqtt_pending_has(&after, p.id) || after.n != (p.id == 7 ? 1u : 2u))) ||
                    (p.qos < 2 && (pl != wl || memcmp(pos, was, pl) != 0)))
                    abort(); /* the record does not fold as its QoS says */
            }
            sl_buf_release(&mp);
        }
        off += (size_t)len;
    }
    return 0;
}
