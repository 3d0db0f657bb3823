/* The Kafka source: SapixDB's `kafka` kind (brokers, topic, group_id, auto_offset_reset) and
 * Rivven's `kafka-source` (consumer_group, start_offset earliest|latest|N, security), one kind.
 *
 * A consumer group member (cooperative-sticky assignment, enable.auto.commit=false) that appends
 * each polled run of messages to config.strand as one group (record shape: record.c). Offsets
 * are committed to Kafka only in durable(), i.e. after the records are fsynced, and when
 * partitions are revoked (the durable offsets of those partitions). The position of a group is
 * the next offset of every partition this connector appended; the last record of every group
 * carries it (sluice_next_offsets), so after a crash the framework reads it back from the strand
 * and messages already appended are skipped by (partition, offset), even when their commit never
 * reached Kafka: nothing is written twice into the strand.
 *
 * With assignment "all" the connector does not join the group: it assigns every partition of
 * the topic itself (looking for added partitions every 30 s), as kcat -C does, so it starts
 * without the broker's initial rebalance delay (3 s for a new group); offsets are committed to
 * the group all the same (a commit from outside the group, which Kafka accepts while the group
 * has no members), at the same moments. */
#include "connectors/kafka/kafka.h"
#include "core/err.h"
#include "core/util.h"
#include "engine/kinds.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_offset_reset[] = {"latest", "earliest", NULL};
static const char *const g_assignment[] = {"group", "all", NULL};

static const struct sl_field f_kafka[] = {
    {"brokers", SL_F_STRING_LIST, 1, NULL, 0, "Bootstrap brokers, host:port.", 0, 0, NULL, NULL},
    {"topic", SL_F_STRING, 1, NULL, 0, "Topic to consume.", 0, 0, NULL, NULL},
    {"group_id", SL_F_STRING, 0, NULL, 0,
     "Consumer group (Rivven: consumer_group); absent: sluice-<connector id>.", 0, 0, NULL, NULL},
    {"auto_offset_reset", SL_F_ENUM, 0, "\"latest\"", 0,
     "latest or earliest: where a partition without a committed offset starts (Rivven: "
     "start_offset).",
     0, 0, g_offset_reset, NULL},
    {"start_offset", SL_F_INT, 0, NULL, 0,
     "Rivven's start_offset N: a partition without a committed offset starts at offset N.", 0,
     INT64_MAX, NULL, NULL},
    {"assignment", SL_F_ENUM, 0, "\"group\"", 0,
     "group: a member of the consumer group (partitions shared among its members; a new group "
     "waits for the broker's group.initial.rebalance.delay.ms, 3 s by default). all: reads every "
     "partition of the topic itself, without joining the group (as kcat -C does): no join "
     "wait, no sharing; offsets are still committed to the group after the fsync.",
     0, 0, g_assignment, NULL},
    {"security", SL_F_OBJECT, 0, "{}", 0, "TLS and SASL (librdkafka's security.* settings).", 0, 0,
     NULL, sl_kafka_security_fields},
    {"strand", SL_F_STRAND, 0, "\"default\"", 0, "Strand the messages are written to.", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* Rivven's spellings: consumer_group -> group_id; start_offset earliest|latest ->
 * auto_offset_reset, a number (or a string of digits) stays start_offset. */
static json_t *kafka_normalize(const json_t *in, struct sl_err *err)
{
    json_t *out = json_deep_copy(in);
    if (!json_is_object(out))
        return out; /* the validator names it */
    json_t *cg = json_object_get(out, "consumer_group");
    if (cg) {
        json_t *gid = json_object_get(out, "group_id");
        if (gid && !json_is_null(gid) && !json_equal(gid, cg)) {
            json_decref(out);
            sl_config_error(err, "config.consumer_group",
                            "give consumer_group (Rivven) or group_id, not both");
            return NULL;
        }
        json_object_set(out, "group_id", cg);
        json_object_del(out, "consumer_group");
    }
    json_t *so = json_object_get(out, "start_offset");
    const char *s = json_string_value(so);
    if (s && (strcmp(s, "earliest") == 0 || strcmp(s, "latest") == 0)) {
        json_t *aor = json_object_get(out, "auto_offset_reset");
        if (aor && !json_is_null(aor) &&
            strcmp(json_string_value(aor) ? json_string_value(aor) : "", s) != 0) {
            json_decref(out);
            sl_config_error(err, "config.start_offset",
                            "give start_offset (Rivven) or auto_offset_reset, not both");
            return NULL;
        }
        json_object_set_new(out, "auto_offset_reset", json_string(s));
        json_object_del(out, "start_offset");
    } else if (s) {
        uint64_t v;
        if (sl_parse_u64(s, &v) < 0 || v > INT64_MAX) {
            json_decref(out);
            sl_config_error(err, "config.start_offset", "earliest, latest or an offset (>= 0)");
            return NULL;
        }
        json_object_set_new(out, "start_offset", json_integer((json_int_t)v));
    }
    return out;
}

static int kafka_check_config(json_t *c, struct sl_err *err)
{
    const char *topic = json_string_value(json_object_get(c, "topic"));
    if (!*topic)
        return sl_config_error(err, "config.topic", "must not be empty");
    const char *g = json_string_value(json_object_get(c, "group_id"));
    if (g && !*g)
        return sl_config_error(err, "config.group_id", "must not be empty");
    return sl_kafka_check_security(c, err);
}

/* ---- the consumer ---- */

#define GROUP_MAX 10000
#define GROUP_BYTES (8u << 20)
#define PEND_MAX 1024
/* assignment all: how often partitions added to the topic are looked for */
#define RESCAN_NS (30ull * 1000000000u)

struct ksrc {
    const struct sl_source_ctx *ctx;
    rd_kafka_t *rk;
    const char *topic;
    int64_t start_offset; /* -1: none */
    int all;              /* assignment all: every partition, no group membership */
    uint64_t scanned_ns;  /* assignment all: when the partitions were last looked up */
    /* poll's thread: the next offset of every partition appended (skip what is below) */
    struct sl_kafka_offsets emitted;
    pthread_mutex_t mu; /* durable() runs on the committer's thread */
    struct sl_kafka_offsets durable, committed, assigned;
    rd_kafka_queue_t *queue;   /* the consumer's */
    rd_kafka_message_t **pend; /* taken from the queue in bulk, not yet looked at */
    size_t npend, ipend;
    struct sl_buf mp;
    struct sl_emit_rec *recs;
    size_t *offs;
    uint64_t consumed, bytes, polls, latency_us;
    int down; /* poll's thread (error_cb runs inside the consumer poll): every broker is down */
    char down_why[256];
};

/* Commits the durable offsets of the assigned partitions (of `only` if given) that moved. */
static void commit(struct ksrc *k, const rd_kafka_topic_partition_list_t *only, int async)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < k->durable.n; i++) {
        int32_t p = k->durable.part[i];
        int64_t next = k->durable.next[i];
        int in = sl_kafka_offsets_get(&k->assigned, p) >= 0;
        if (only) {
            in = 0;
            for (int j = 0; j < only->cnt; j++)
                in |= only->elems[j].partition == p;
        }
        if (!in || sl_kafka_offsets_get(&k->committed, p) >= next)
            continue;
        rd_kafka_topic_partition_list_add(l, k->topic, p)->offset = next;
        sl_kafka_offsets_set(&k->committed, p, next);
    }
    pthread_mutex_unlock(&k->mu);
    if (l->cnt) {
        rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, l, async);
        if (e && !async)
            k->ctx->host->log(k->ctx->id, 2, "kafka: offset commit failed: %s",
                              rd_kafka_err2str(e));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* Where newly assigned partitions start: after what this connector appended when Kafka's
 * committed offset is behind it (a commit lost in a crash) or absent; else the committed
 * offset, or start_offset / auto_offset_reset for a partition without one. */
static void on_assign(struct ksrc *k, rd_kafka_topic_partition_list_t *parts)
{
    rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
    int known = rd_kafka_committed(k->rk, c, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR;
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        int64_t mine = sl_kafka_offsets_get(&k->emitted, tp->partition);
        int64_t theirs = known ? c->elems[i].offset : RD_KAFKA_OFFSET_INVALID;
        if (mine >= 0 && (theirs < 0 || theirs < mine))
            tp->offset = mine;
        else if (theirs < 0 && known && k->start_offset >= 0)
            tp->offset = k->start_offset;
        pthread_mutex_lock(&k->mu);
        sl_kafka_offsets_set(&k->assigned, tp->partition, 1);
        if (theirs >= 0)
            sl_kafka_offsets_set(&k->committed, tp->partition, theirs);
        pthread_mutex_unlock(&k->mu);
    }
    rd_kafka_topic_partition_list_destroy(c);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    struct ksrc *k = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        on_assign(k, parts);
        if (coop) {
            rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
            if (e)
                rd_kafka_error_destroy(e);
        } else {
            rd_kafka_assign(rk, parts);
        }
        return;
    }
    /* revoked (or lost): what is durable of those partitions is committed first */
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && !rd_kafka_assignment_lost(rk))
        commit(k, parts, 0);
    pthread_mutex_lock(&k->mu);
    for (int i = 0; i < parts->cnt; i++)
        sl_kafka_offsets_set(&k->assigned, parts->elems[i].partition, -1);
    pthread_mutex_unlock(&k->mu);
    if (coop) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

/* assignment all: assigns the partitions of the topic not assigned yet (all of them at start, later
 * the ones added to the topic), each where on_assign says. 0, or -1 with why in errstr. */
static int assign_all(struct ksrc *k, int timeout_ms, char *errstr, size_t n)
{
    rd_kafka_topic_t *t = rd_kafka_topic_new(k->rk, k->topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e =
        t ? rd_kafka_metadata(k->rk, 0, t, &md, timeout_ms) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    int rc = 0;
    if (e || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, n, "partitions of %s: %s", k->topic,
                 rd_kafka_err2str(e                    ? e
                                  : md->topic_cnt == 1 ? md->topics[0].err
                                                       : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
        rc = -1;
    } else {
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
        for (int i = 0; i < md->topics[0].partition_cnt; i++) {
            int32_t p = md->topics[0].partitions[i].id;
            pthread_mutex_lock(&k->mu);
            int have = sl_kafka_offsets_get(&k->assigned, p) >= 0;
            pthread_mutex_unlock(&k->mu);
            if (!have)
                rd_kafka_topic_partition_list_add(l, k->topic, p);
        }
        if (l->cnt) {
            on_assign(k, l);
            rd_kafka_error_t *ae = rd_kafka_incremental_assign(k->rk, l);
            if (ae) {
                snprintf(errstr, n, "assign: %s", rd_kafka_error_string(ae));
                rd_kafka_error_destroy(ae);
                rc = -1;
            }
        }
        rd_kafka_topic_partition_list_destroy(l);
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    k->scanned_ns = sl_mono_ns();
    return rc;
}

/* librdkafka reconnects by itself; "all brokers down" is remembered so that poll reports it
 * (last_error) until a broker answers again. Runs on poll's thread (the consumer queue). */
static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    struct ksrc *k = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        k->down = 1;
        snprintf(k->down_why, sizeof(k->down_why), "kafka: %s", reason);
    }
}

static void consumer_hook(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, error_cb);
}

static void ksrc_stop(void *self)
{
    struct ksrc *k = self;
    if (!k)
        return;
    while (k->ipend < k->npend)
        rd_kafka_message_destroy(k->pend[k->ipend++]);
    if (k->queue)
        rd_kafka_queue_destroy(k->queue);
    if (k->rk) {
        commit(k, NULL, 0); /* everything appended is durable by now (the framework drained) */
        rd_kafka_consumer_close(k->rk);
        rd_kafka_destroy(k->rk);
    }
    pthread_mutex_destroy(&k->mu);
    sl_buf_release(&k->mp);
    free(k->recs);
    free(k->offs);
    free(k->pend);
    free(k);
}

static int ksrc_start(void **self, const struct sl_source_ctx *ctx, struct sl_err *err)
{
    struct ksrc *k = calloc(1, sizeof(*k));
    if (!k || !(k->recs = calloc(GROUP_MAX, sizeof(*k->recs))) ||
        !(k->offs = calloc(GROUP_MAX, sizeof(*k->offs))) ||
        !(k->pend = calloc(PEND_MAX, sizeof(*k->pend)))) {
        if (k) {
            free(k->recs);
            free(k->offs);
        }
        free(k);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    pthread_mutex_init(&k->mu, NULL);
    sl_buf_init(&k->mp, 0);
    const json_t *c = ctx->config;
    k->ctx = ctx;
    k->topic = json_string_value(json_object_get(c, "topic"));
    json_t *so = json_object_get(c, "start_offset");
    k->start_offset = so ? (int64_t)json_integer_value(so) : -1;
    const char *asg = json_string_value(json_object_get(c, "assignment"));
    k->all = asg && strcmp(asg, "all") == 0;
    if (ctx->position &&
        sl_kafka_pos_decode(ctx->position, ctx->position_len, k->topic, &k->emitted) == 0)
        k->durable = k->emitted;
    else
        k->emitted.n = 0;
    char errstr[512], group[300], client[160];
    const char *g = json_string_value(json_object_get(c, "group_id"));
    snprintf(group, sizeof(group), "%s%s", g ? "" : "sluice-", g ? g : ctx->id);
    snprintf(client, sizeof(client), "sluice-%s", ctx->id);
    const struct sl_kafka_prop props[] = {
        {"group.id", group},
        /* after a crash the dead member holds its partitions until its session times out */
        {"session.timeout.ms", "6000"},
        {"heartbeat.interval.ms", "2000"},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"auto.offset.reset", json_string_value(json_object_get(c, "auto_offset_reset"))},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"enable.partition.eof", "false"},
    };
    k->rk = sl_kafka_new(RD_KAFKA_CONSUMER, c, client, props, sizeof(props) / sizeof(props[0]),
                         consumer_hook, k, errstr, sizeof(errstr));
    if (!k->rk) {
        ksrc_stop(k);
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "kafka: %s", errstr);
    }
    rd_kafka_poll_set_consumer(k->rk);
    k->queue = rd_kafka_queue_get_consumer(k->rk);
    /* the health check: a broker answers and the topic exists, or the connector is not running */
    if (sl_kafka_probe(k->rk, k->topic, 5000, ctx->stopped, ctx->arg, errstr, sizeof(errstr)) < 0) {
        ksrc_stop(k);
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "kafka: %s", errstr);
    }
    if (k->all) {
        if (assign_all(k, 5000, errstr, sizeof(errstr)) < 0) {
            ksrc_stop(k);
            return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "kafka: %s", errstr);
        }
        *self = k;
        return 0;
    }
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, k->topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (e) {
        ksrc_stop(k);
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "kafka: subscribe: %s",
                          rd_kafka_err2str(e));
    }
    *self = k;
    return 0;
}

/* The record of m (appended to k->mp); with resume, it carries the offsets. */
static int record_of(struct ksrc *k, const rd_kafka_message_t *m, int resume)
{
    const char *names[64];
    const void *vals[64];
    size_t lens[64], nh = 0;
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR)
        while (nh < 64 && rd_kafka_header_get_all(h, nh, &names[nh], &vals[nh], &lens[nh]) ==
                              RD_KAFKA_RESP_ERR_NO_ERROR)
            nh++;
    rd_kafka_timestamp_type_t tt;
    int64_t ts = rd_kafka_message_timestamp(m, &tt);
    struct sl_kafka_msg km = {
        .topic = k->topic,
        .partition = m->partition,
        .offset = m->offset,
        .timestamp_ms = ts,
        .timestamp_type = tt == RD_KAFKA_TIMESTAMP_CREATE_TIME       ? 1
                          : tt == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME ? 2
                                                                     : 0,
        .key = m->key,
        .key_len = m->key_len,
        .value = m->payload,
        .value_len = m->len,
        .n_headers = nh,
        .header_names = names,
        .header_values = vals,
        .header_lens = lens,
    };
    return sl_kafka_record(&k->mp, &km, resume ? &k->emitted : NULL);
}

/* The next message or event: one taken in bulk before, else from the consumer queue (waiting at
 * most wait_ms for the first, then taking what is there without waiting). NULL: none. */
static rd_kafka_message_t *next_message(struct ksrc *k, int wait_ms)
{
    if (k->ipend == k->npend) {
        k->ipend = k->npend = 0;
        if (wait_ms > 0)
            return rd_kafka_consumer_poll(k->rk, wait_ms);
        ssize_t got = rd_kafka_consume_batch_queue(k->queue, 0, k->pend, PEND_MAX);
        if (got <= 0)
            return NULL;
        k->npend = (size_t)got;
    }
    return k->pend[k->ipend++];
}

static enum sl_result ksrc_poll(void *self, struct sl_emitter *em, int timeout_ms, char *error,
                                size_t errlen)
{
    struct ksrc *k = self;
    uint64_t t0 = sl_mono_ns(), until = t0 + (uint64_t)timeout_ms * 1000000u;
    size_t n = 0;
    rd_kafka_message_t *last = NULL;
    rd_kafka_resp_err_t fail = RD_KAFKA_RESP_ERR_NO_ERROR;
    char why[256] = "";
    sl_buf_reset(&k->mp);
    while (n < GROUP_MAX && k->mp.len < GROUP_BYTES && !k->ctx->stopped(k->ctx->arg)) {
        uint64_t now = sl_mono_ns();
        int wait = n || now >= until ? 0 : (int)((until - now) / 1000000u);
        rd_kafka_message_t *m = next_message(k, wait);
        if (!m)
            break;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !fail) {
                fail = m->err;
                snprintf(why, sizeof(why), "%s", rd_kafka_message_errstr(m));
            }
            rd_kafka_message_destroy(m);
            if (fail)
                break;
            continue;
        }
        int64_t next = sl_kafka_offsets_get(&k->emitted, m->partition);
        if (m->offset < next) { /* already in the strand (a commit lost in a crash) */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (last) { /* the one before is not the group's last: no offsets in it */
            k->offs[n] = k->mp.len;
            if (record_of(k, last, 0) < 0) {
                snprintf(error, errlen, "kafka: message %d/%lld cannot be stored",
                         (int)last->partition, (long long)last->offset);
                rd_kafka_message_destroy(last);
                rd_kafka_message_destroy(m);
                return SL_R_FATAL;
            }
            k->recs[n].flags = last->payload ? 0 : SL_REC_TOMBSTONE;
            n++;
            rd_kafka_message_destroy(last);
        }
        if (sl_kafka_offsets_set(&k->emitted, m->partition, m->offset + 1) < 0) {
            snprintf(error, errlen, "kafka: too many partitions");
            rd_kafka_message_destroy(m);
            return SL_R_FATAL;
        }
        k->consumed++;
        k->bytes += m->len + m->key_len;
        last = m;
    }
    if (last) {
        k->offs[n] = k->mp.len;
        int rc = record_of(k, last, 1);
        k->recs[n].flags = last->payload ? 0 : SL_REC_TOMBSTONE;
        rd_kafka_message_destroy(last);
        if (rc < 0) {
            snprintf(error, errlen, "kafka: a message cannot be stored");
            return SL_R_FATAL;
        }
        n++;
    }
    k->polls++;
    k->latency_us += (sl_mono_ns() - t0) / 1000u;
    if (k->all && sl_mono_ns() - k->scanned_ns > RESCAN_NS) { /* partitions added? */
        char why2[256];
        if (assign_all(k, 1000, why2, sizeof(why2)) < 0)
            k->ctx->host->log(k->ctx->id, 2, "kafka: %s", why2);
    }
    if (n) {
        for (size_t i = 0; i < n; i++) {
            k->recs[i].payload = k->mp.data + k->offs[i];
            k->recs[i].payload_len =
                (uint32_t)((i + 1 < n ? k->offs[i + 1] : k->mp.len) - k->offs[i]);
        }
        uint8_t pos[SL_POSITION_MAX];
        size_t plen = sl_kafka_pos_encode(&k->emitted, k->topic, pos);
        if (em->emit(em, k->recs, n, pos, plen) < 0) {
            snprintf(error, errlen, "the strand refused the messages");
            return SL_R_RETRY;
        }
    }
    k->ctx->gauge(k->ctx->arg, "kafka_source_messages_consumed", k->consumed);
    k->ctx->gauge(k->ctx->arg, "kafka_source_bytes_consumed", k->bytes);
    k->ctx->gauge(k->ctx->arg, "kafka_source_polls", k->polls);
    k->ctx->gauge(k->ctx->arg, "kafka_source_poll_latency_avg_ms",
                  k->polls ? k->latency_us / k->polls / 1000u : 0);
    if (!n && k->down) { /* still down unless a broker answers now */
        char probe[256];
        if (sl_kafka_probe(k->rk, NULL, 200, NULL, NULL, probe, sizeof(probe)) == 0) {
            k->down = 0;
        } else {
            snprintf(error, errlen, "%s", k->down_why);
            return SL_R_NOT_CONNECTED;
        }
    }
    if (fail && !n) {
        snprintf(error, errlen, "kafka: %s", why);
        return fail == RD_KAFKA_RESP_ERR__TRANSPORT || fail == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
                   ? SL_R_NOT_CONNECTED
                   : SL_R_RETRY;
    }
    return SL_R_OK;
}

/* Everything up to position is fsynced: commit it (asynchronously; a later commit or the one
 * at revoke/stop carries it if this one fails). */
static void ksrc_durable(void *self, const void *position, size_t len)
{
    struct ksrc *k = self;
    struct sl_kafka_offsets o;
    if (sl_kafka_pos_decode(position, len, k->topic, &o) < 0)
        return;
    pthread_mutex_lock(&k->mu);
    for (size_t i = 0; i < o.n; i++)
        sl_kafka_offsets_set(&k->durable, o.part[i], o.next[i]);
    pthread_mutex_unlock(&k->mu);
    commit(k, NULL, 1);
}

static int ksrc_position_of(const uint8_t *payload, size_t len, void *pos, size_t *pos_len)
{
    struct sl_kafka_offsets o;
    char topic[256];
    if (sl_kafka_record_offsets(payload, len, &o, topic, sizeof(topic)) < 0)
        return -1;
    *pos_len = sl_kafka_pos_encode(&o, topic, pos);
    return 0;
}

static const struct sl_gauge ksrc_gauges[] = {
    {"kafka_source_messages_consumed", "Messages consumed since the connector started."},
    {"kafka_source_bytes_consumed", "Key and value bytes consumed since it started."},
    {"kafka_source_polls", "Poll operations since it started."},
    {"kafka_source_poll_latency_avg_ms", "Average time of one poll, in milliseconds."},
    {NULL, NULL},
};

static const struct sl_source_ops ksrc_ops = {.start = ksrc_start,
                                              .poll = ksrc_poll,
                                              .durable = ksrc_durable,
                                              .stop = ksrc_stop,
                                              .position_of = ksrc_position_of,
                                              .gauges = ksrc_gauges,
                                              .position_fold = sl_kafka_pos_fold};

static const char *const kafka_aliases[] = {"kafka-source", NULL};

const struct sl_connector sl_conn_kafka = {
    .abi = SL_CONNECTOR_ABI,
    .name = "kafka",
    .aliases = kafka_aliases,
    .direction = SL_INBOUND,
    .category = "messaging",
    .description = "Kafka consumer group member into a strand; offsets are committed only after "
                   "the records are fsynced. Rivven's consumer_group and start_offset are "
                   "accepted and stored as group_id and auto_offset_reset (or start_offset N).",
    .fields = f_kafka,
    .normalize = kafka_normalize,
    .check_config = kafka_check_config,
    .source = &ksrc_ops,
};
