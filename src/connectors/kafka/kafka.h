/* Kafka connectors (librdkafka): the source (`kafka`, alias Rivven's `kafka-source`) and the
 * sink (`kafka_sink`, alias Rivven's `kafka-sink`). Private to src/connectors/kafka/. */
#ifndef SL_CONNECTORS_KAFKA_H
#define SL_CONNECTORS_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <sluice/connector.h>

#include "core/buf.h"

/* The `security` object of both kinds (Rivven's keys), passed to librdkafka. */
extern const struct sl_field sl_kafka_security_fields[];

/* Checks across the security fields (SASL needs a mechanism, a username and a password). */
int sl_kafka_check_security(const json_t *config, struct sl_err *err);

/* A librdkafka config with bootstrap.servers (from `brokers`), the security settings and
 * client.id; NULL with why in errstr. */
rd_kafka_conf_t *sl_kafka_conf_new(const json_t *config, const char *client_id, char *errstr,
                                   size_t n);

/* Sets one librdkafka property; 0, or -1 with why in errstr. */
int sl_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                 size_t n);

struct sl_kafka_prop {
    const char *name, *value; /* value NULL: not set */
};

/* A producer or consumer: sl_kafka_conf_new's settings, then props, then hook (callbacks), with
 * opaque; NULL with why in errstr. */
rd_kafka_t *sl_kafka_new(rd_kafka_type_t type, const json_t *config, const char *client_id,
                         const struct sl_kafka_prop *props, size_t nprops,
                         void (*hook)(rd_kafka_conf_t *), void *opaque, char *errstr, size_t n);

/* Metadata of `topic` (all topics if NULL) within timeout_ms: 0, or -1 with why in errstr
 * (no broker reachable, or the topic does not exist and cannot be created). stop (may be NULL)
 * is asked between slices of 250 ms, 500 ms, 1 s, 2 s ...: nonzero gives up at once. */
int sl_kafka_probe(rd_kafka_t *rk, const char *topic, int timeout_ms, int (*stop)(void *),
                   void *arg, char *errstr, size_t n);

/* ---- the source's record shape (record.c; pure, unit-tested) ---- */

/* One consumed message, borrowed. */
struct sl_kafka_msg {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp_ms; /* -1: none */
    int timestamp_type;   /* 0 none, 1 create time, 2 log-append time */
    const void *key;
    size_t key_len; /* key == NULL: no key */
    const void *value;
    size_t value_len; /* value == NULL: a tombstone */
    size_t n_headers;
    const char *const *header_names;
    const void *const *header_values; /* NULL: a header without a value */
    const size_t *header_lens;
};

/* Next offset per partition: what a source has appended, and where it resumes. */
struct sl_kafka_offsets {
    size_t n;
    int32_t part[SL_POSITION_MAX / 2];
    int64_t next[SL_POSITION_MAX / 2];
};

/* Appends the record of m to mp as MessagePack (docs/connectors.md, "Kafka"). With resume
 * non-NULL, the record also carries sluice_next_offsets (the last record of an append group).
 * 0, or -1 when the buffer's cap is reached. */
int sl_kafka_record(struct sl_buf *mp, const struct sl_kafka_msg *m,
                    const struct sl_kafka_offsets *resume);

/* The position bytes of o (at most SL_POSITION_MAX; partitions beyond are left out) for topic. */
size_t sl_kafka_pos_encode(const struct sl_kafka_offsets *o, const char *topic, uint8_t *out);
/* Decodes a position of this topic into o: 0, or -1 (another topic, or not a position). */
int sl_kafka_pos_decode(const void *pos, size_t len, const char *topic, struct sl_kafka_offsets *o);
/* Sets partition p's next offset in o (adds it if new): 0, or -1 if o is full. */
int sl_kafka_offsets_set(struct sl_kafka_offsets *o, int32_t p, int64_t next);
/* p's next offset, or -1. */
int64_t sl_kafka_offsets_get(const struct sl_kafka_offsets *o, int32_t p);
/* The sluice_next_offsets of a record's payload into o (topic from its `topic`): 0, or -1. */
int sl_kafka_record_offsets(const uint8_t *payload, size_t len, struct sl_kafka_offsets *o,
                            char *topic, size_t topic_n);
/* Folds a record without sluice_next_offsets (one of a group whose last record a crash cut
 * off) into the position pos of *pos_len bytes (0: none yet; room for SL_POSITION_MAX): its
 * partition's next offset becomes its offset + 1 unless it is already beyond. 0, or -1 (not a
 * record of this position's topic). */
int sl_kafka_pos_fold(void *pos, size_t *pos_len, const uint8_t *payload, size_t len);

#endif
