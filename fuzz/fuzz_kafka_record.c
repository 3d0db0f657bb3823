/* libFuzzer target: the Kafka source's decoders and encoder. The input is split into a message
 * (key, value, a header) that sl_kafka_record() must turn into canonical MessagePack that reads
 * back as JSON and whose offsets read back exactly; the whole input is also fed, as found in a
 * strand, to sl_kafka_record_offsets() (position_of) and sl_kafka_pos_fold(), and as a stored
 * position to sl_kafka_pos_decode(), which must reject or decode it without reading out of
 * bounds; folding the encoded record must move its partition past its offset. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/kafka/kafka.h"
#include "formats/json_mp.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    struct sl_kafka_offsets o;
    char topic[64];
    sl_kafka_record_offsets(d, n, &o, topic, sizeof(topic));
    sl_kafka_pos_decode(d, n, "t", &o);
    uint8_t fpos[SL_POSITION_MAX];
    size_t flen = 0;
    sl_kafka_pos_fold(fpos, &flen, d, n);
    if (n < 3)
        return 0;
    /* d[0], d[1]: key and header lengths (bounded by n); the rest is the value */
    size_t kl = d[0] % (n - 2 + 1), hl = d[1] % (n - 2 - kl + 1);
    const uint8_t *key = d + 2, *hv = key + kl, *val = hv + hl;
    size_t vl = n - 2 - kl - hl;
    const char *names[] = {"h"};
    const void *vals[] = {hv};
    size_t lens[] = {hl};
    struct sl_kafka_offsets resume = {0};
    sl_kafka_offsets_set(&resume, (int32_t)(d[0] & 0x7f), (int64_t)n);
    sl_kafka_offsets_set(&resume, 1000, 0);
    struct sl_kafka_msg m = {.topic = "t",
                             .partition = d[1],
                             .offset = (int64_t)n,
                             .timestamp_ms = d[0] & 1 ? -1 : 1700000000000LL,
                             .timestamp_type = d[1] % 3,
                             .key = d[0] & 2 ? NULL : key,
                             .key_len = kl,
                             .value = d[1] & 4 ? NULL : val,
                             .value_len = vl,
                             .n_headers = 1,
                             .header_names = names,
                             .header_values = vals,
                             .header_lens = lens};
    struct sl_buf mp, j, back;
    sl_buf_init(&mp, 0);
    sl_buf_init(&j, 0);
    sl_buf_init(&back, 0);
    size_t used;
    if (sl_kafka_record(&mp, &m, &resume) != 0)
        abort();
    if (sl_mp_to_json(mp.data, mp.len, &used, &j, 200, NULL) != 0 || used != mp.len)
        abort(); /* a record that cannot be shown as JSON */
    if (sl_json_to_mp((const char *)j.data, j.len, &back, 200, NULL) != 0 || back.len != mp.len ||
        memcmp(back.data, mp.data, mp.len) != 0)
        abort(); /* not canonical: its hash would change through the API */
    if (sl_kafka_record_offsets(mp.data, mp.len, &o, topic, sizeof(topic)) != 0 || o.n != 2 ||
        sl_kafka_offsets_get(&o, 1000) != 0 ||
        sl_kafka_offsets_get(&o, (int32_t)(d[0] & 0x7f)) != (int64_t)n || strcmp(topic, "t") != 0)
        abort(); /* the position does not read back */
    uint8_t pos[SL_POSITION_MAX];
    size_t pl = sl_kafka_pos_encode(&o, topic, pos);
    struct sl_kafka_offsets p2;
    if (sl_kafka_pos_decode(pos, pl, "t", &p2) != 0 || p2.n != 2)
        abort();
    if (sl_kafka_pos_fold(pos, &pl, mp.data, mp.len) != 0 ||
        sl_kafka_pos_decode(pos, pl, "t", &p2) != 0 ||
        sl_kafka_offsets_get(&p2, d[1]) < (int64_t)n + 1)
        abort(); /* the record's own partition is not past it */
    sl_buf_release(&mp);
    sl_buf_release(&j);
    sl_buf_release(&back);
    return 0;
}
