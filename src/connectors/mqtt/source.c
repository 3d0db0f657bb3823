/* The MQTT source (Rivven's `mqtt`): subscribes to `topics` on broker_url and appends every
 * message to config.strand (record shape: codec.c).
 *
 * Acknowledged only when durable: a QoS 1 message is PUBACKed, a QoS 2 message PUBRECed, only
 * after the group holding its record is fsynced (durable()), and a PUBREL is answered with
 * PUBCOMP only once the position saying "this packet id is released" is durable too. So a kill -9
 * loses nothing the broker handed over: with a persistent session (clean_session false) the
 * broker sends every unacknowledged message again after a restart. At QoS 1 such a message can
 * then be in the strand twice (at least once). At QoS 2 it is not: the packet ids received and not
 * yet released are part of the position (and of the last record of each group, read back after a
 * crash; the records of a group a crash cut short are folded in, sl_mqtt_pos_fold), and a message
 * sent again (DUP set) under such an id is acknowledged, not appended.
 *
 * All socket I/O runs on poll's thread; durable() (the committer's thread) only records how far
 * the groups are durable and wakes poll through an eventfd, which then sends the acks. */
#include "connectors/mqtt/mqtt.h"
#include "core/err.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

static const struct sl_field f_lwt[] = {
    {"topic", SL_F_STRING, 1, NULL, 0, "Topic of the last will.", 0, 0, NULL, NULL},
    {"message", SL_F_STRING, 0, "\"\"", 0, "Payload of the last will.", 0, 0, NULL, NULL},
    {"qos", SL_F_ENUM, 0, "\"at_most_once\"", 0, "QoS of the last will.", 0, 0, sl_mqtt_qos_names,
     NULL},
    {"retain", SL_F_BOOL, 0, "false", 0, "Retain flag of the last will.", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_mqtt[] = {
    {"broker_url", SL_F_STRING, 1, NULL, 0,
     "mqtt://host[:port] (1883) or mqtts://host[:port] (8883).", 0, 0, NULL, NULL},
    {"topics", SL_F_STRING_LIST, 1, NULL, 0, "Topic filters to subscribe to (+ and # wildcards).",
     0, 0, NULL, NULL},
    {"client_id", SL_F_STRING, 0, NULL, 0,
     "MQTT client id; absent: sluice-<connector id> (stable, so a persistent session survives "
     "restarts).",
     0, 0, NULL, NULL},
    {"qos", SL_F_ENUM, 0, "\"at_most_once\"", 0,
     "Subscription QoS: at_most_once, at_least_once or exactly_once.", 0, 0, sl_mqtt_qos_names,
     NULL},
    {"clean_session", SL_F_BOOL, 0, "true", 0,
     "Start with a clean session; false keeps the broker's session (and its unacknowledged "
     "messages) across disconnects and restarts.",
     0, 0, NULL, NULL},
    {"auth", SL_F_OBJECT, 0, "{}", 0, "username and password.", 0, 0, NULL, sl_mqtt_auth_fields},
    {"tls", SL_F_OBJECT, 0, "{}", 0, "TLS settings for mqtts://.", 0, 0, NULL, sl_mqtt_tls_fields},
    {"keep_alive_secs", SL_F_INT, 0, "60", 0, "Keep-alive interval in seconds (0: none).", 0, 65535,
     NULL, NULL},
    {"connect_timeout_secs", SL_F_INT, 0, "30", 0, "Time allowed to connect and get CONNACK.", 1,
     3600, NULL, NULL},
    {"max_inflight", SL_F_INT, 0, "100", 0,
     "At most this many messages per append group; the broker's own in-flight limit (mosquitto: "
     "max_inflight_messages) bounds unacknowledged QoS 1/2 messages.",
     1, 65535, NULL, NULL},
    {"retry_initial_ms", SL_F_INT, 0, "100", 0, "First delay before reconnecting.", 1, 3600000,
     NULL, NULL},
    {"retry_max_ms", SL_F_INT, 0, "10000", 0, "Longest delay between reconnections.", 1, 3600000,
     NULL, NULL},
    {"retry_multiplier", SL_F_NUMBER, 0, "2.0", 0, "Delay multiplier after each failed attempt.", 0,
     0, NULL, NULL},
    {"parse_json_payload", SL_F_BOOL, 0, "true", 0,
     "Store a payload that is JSON as JSON (else as a string, or payload_base64).", 0, 0, NULL,
     NULL},
    {"include_metadata", SL_F_BOOL, 0, "true", 0,
     "Add qos, retain, dup, packet_id and received_at to each record.", 0, 0, NULL, NULL},
    {"last_will", SL_F_OBJECT, 0, NULL, 0, "Last Will and Testament.", 0, 0, NULL, f_lwt},
    {"strand", SL_F_STRAND, 0, "\"default\"", 0, "Strand the messages are written to.", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int mqtt_check_config(json_t *c, struct sl_err *err)
{
    if (sl_mqtt_check_url(c, err) < 0)
        return SL_E_INVAL;
    const json_t *t = json_object_get(c, "topics");
    if (json_array_size(t) == 0)
        return sl_config_error(err, "config.topics", "must list at least one topic filter");
    size_t i;
    json_t *v;
    json_array_foreach(t, i, v)
    {
        const char *s = json_string_value(v);
        if (!sl_mqtt_topic_valid(s, strlen(s), 1)) {
            char p[48];
            snprintf(p, sizeof(p), "config.topics[%zu]", i);
            return sl_config_error(err, p,
                                   "not a topic filter (+ and # fill a whole level, # is last)");
        }
    }
    const char *id = json_string_value(json_object_get(c, "client_id"));
    if (id && (!*id || strlen(id) > 65535))
        return sl_config_error(err, "config.client_id", "must not be empty");
    const json_t *lw = json_object_get(c, "last_will");
    const char *lt = json_string_value(json_object_get(lw, "topic"));
    if (lt && !sl_mqtt_topic_valid(lt, strlen(lt), 0))
        return sl_config_error(err, "config.last_will.topic", "not a topic name");
    if (json_number_value(json_object_get(c, "retry_multiplier")) < 1.0)
        return sl_config_error(err, "config.retry_multiplier", "must be at least 1.0");
    if (json_integer_value(json_object_get(c, "retry_max_ms")) <
        json_integer_value(json_object_get(c, "retry_initial_ms")))
        return sl_config_error(err, "config.retry_max_ms", "must be at least retry_initial_ms");
    return 0;
}

/* ---- the subscriber ---- */

#define GROUP_BYTES (8u << 20)

struct act {
    uint64_t group; /* sent once this group is durable */
    uint32_t gen;   /* the connection it belongs to (dropped after a clean-session reconnect) */
    uint8_t type;   /* SL_MQTT_PUBACK, PUBREC or PUBCOMP */
    uint16_t id;
};

struct msrc {
    const struct sl_source_ctx *ctx;
    const json_t *cfg;
    struct sl_mqtt_conn conn;
    struct sl_mqtt_connect cp;
    char client_id[300];
    int qos, clean, parse_json, metadata;
    size_t group_max;
    unsigned keep_alive;
    int timeout_ms;
    uint32_t gen;
    struct sl_mqtt_pending pending;
    uint64_t group; /* the last group emitted */
    struct act *acts;
    size_t nacts, cap_acts;
    int wake; /* eventfd: durable() moved */
    pthread_mutex_t mu;
    uint64_t durable_group; /* under mu */
    struct sl_buf mp;
    struct sl_emit_rec *recs;
    size_t *offs;
    size_t cap_recs;
    uint64_t next_connect_ns, delay_ms, received, bytes, reconnects, dups;
    char why[256];
};

static int add_act(struct msrc *m, int type, uint16_t id)
{
    if (m->nacts == m->cap_acts) {
        size_t cap = m->cap_acts ? m->cap_acts * 2 : 1024;
        struct act *a = realloc(m->acts, cap * sizeof(*a));
        if (!a)
            return -1;
        m->acts = a;
        m->cap_acts = cap;
    }
    m->acts[m->nacts++] =
        (struct act){.group = UINT64_MAX, .gen = m->gen, .type = (uint8_t)type, .id = id};
    return 0;
}

/* Sends the acks of durable groups (those of an older connection are dropped with a clean
 * session: the broker forgot their packet ids). 0, or -1 if the connection failed. */
static int send_acks(struct msrc *m)
{
    uint64_t v;
    if (read(m->wake, &v, sizeof(v)) < 0) { /* drained; nothing new is fine */
    }
    pthread_mutex_lock(&m->mu);
    uint64_t upto = m->durable_group;
    pthread_mutex_unlock(&m->mu);
    size_t k = 0;
    while (k < m->nacts && m->acts[k].group <= upto)
        k++;
    if (!k || m->conn.fd < 0)
        return m->conn.fd < 0 ? -1 : 0;
    for (size_t i = 0; i < k; i++)
        if (!m->clean || m->acts[i].gen == m->gen)
            sl_mqtt_put_ack(&m->conn.out, m->acts[i].type, m->acts[i].id);
    memmove(m->acts, m->acts + k, (m->nacts - k) * sizeof(*m->acts));
    m->nacts -= k;
    return sl_mqtt_conn_flush(&m->conn, m->timeout_ms);
}

static void msrc_stop(void *self)
{
    struct msrc *m = self;
    if (!m)
        return;
    if (m->conn.fd >= 0)
        send_acks(m); /* the framework drained: every group emitted is durable */
    sl_mqtt_conn_close(&m->conn, 1);
    sl_mqtt_conn_release(&m->conn);
    if (m->wake >= 0)
        close(m->wake);
    pthread_mutex_destroy(&m->mu);
    sl_buf_release(&m->mp);
    free(m->acts);
    free(m->recs);
    free(m->offs);
    free(m);
}

/* Connects and sends SUBSCRIBE (its SUBACK is read by poll). 0, or -1 with m->why. */
static int connect_now(struct msrc *m, int *refused)
{
    int present = 0;
    if (sl_mqtt_conn_open(&m->conn, m->cfg, &m->cp, m->timeout_ms, &present, refused, m->why,
                          sizeof(m->why)) < 0)
        return -1;
    m->gen++;
    if (m->clean || !present)
        m->pending.n = 0; /* the broker has no session: nothing of ours is pending there */
    const json_t *t = json_object_get(m->cfg, "topics");
    const char *filters[256];
    size_t n = 0, i;
    json_t *v;
    json_array_foreach(t, i, v) if (n < 256) filters[n++] = json_string_value(v);
    if (sl_mqtt_put_subscribe(&m->conn.out, 1, filters, n, m->qos) < 0 ||
        sl_mqtt_conn_flush(&m->conn, m->timeout_ms) < 0) {
        snprintf(m->why, sizeof(m->why), "mqtt: cannot send SUBSCRIBE");
        return -1;
    }
    return 0;
}

static int msrc_start(void **self, const struct sl_source_ctx *ctx, struct sl_err *err)
{
    struct msrc *m = calloc(1, sizeof(*m));
    if (!m)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    m->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&m->mu, NULL);
    sl_mqtt_conn_init(&m->conn);
    m->conn.cancelled = ctx->stopped; /* a connector being stopped does not wait to connect */
    m->conn.cancel_arg = ctx->arg;
    sl_buf_init(&m->mp, 0);
    const json_t *c = ctx->config;
    m->ctx = ctx;
    m->cfg = c;
    m->qos = sl_mqtt_qos_of(json_string_value(json_object_get(c, "qos")));
    m->clean = json_is_true(json_object_get(c, "clean_session"));
    m->parse_json = json_is_true(json_object_get(c, "parse_json_payload"));
    m->metadata = json_is_true(json_object_get(c, "include_metadata"));
    m->group_max = (size_t)json_integer_value(json_object_get(c, "max_inflight"));
    m->keep_alive = (unsigned)json_integer_value(json_object_get(c, "keep_alive_secs"));
    m->timeout_ms = (int)json_integer_value(json_object_get(c, "connect_timeout_secs")) * 1000;
    m->delay_ms = (uint64_t)json_integer_value(json_object_get(c, "retry_initial_ms"));
    m->cap_recs = m->group_max + 1;
    if (m->wake < 0 || !(m->recs = calloc(m->cap_recs, sizeof(*m->recs))) ||
        !(m->offs = calloc(m->cap_recs, sizeof(*m->offs)))) {
        msrc_stop(m);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    const char *id = json_string_value(json_object_get(c, "client_id"));
    snprintf(m->client_id, sizeof(m->client_id), "%s%s", id ? "" : "sluice-", id ? id : ctx->id);
    const json_t *a = json_object_get(c, "auth"), *lw = json_object_get(c, "last_will");
    m->cp = (struct sl_mqtt_connect){
        .client_id = m->client_id,
        .clean_session = m->clean,
        .keep_alive = m->keep_alive,
        .username = json_string_value(json_object_get(a, "username")),
        .password = json_string_value(json_object_get(a, "password")),
        .will_topic = json_string_value(json_object_get(lw, "topic")),
        .will_message = json_string_value(json_object_get(lw, "message")),
        .will_qos = sl_mqtt_qos_of(json_string_value(json_object_get(lw, "qos"))),
        .will_retain = json_is_true(json_object_get(lw, "retain")),
    };
    uint64_t g;
    if (!ctx->position || sl_mqtt_pos_decode(ctx->position, ctx->position_len, &g, &m->pending) < 0)
        m->pending.n = 0;
    int refused;
    /* the health check: the broker accepts us, or the connector is not running */
    if (connect_now(m, &refused) < 0) {
        char why[256];
        snprintf(why, sizeof(why), "%s", m->why);
        msrc_stop(m);
        return sl_err_set(err, refused ? SL_E_INVAL : SL_E_UNAVAIL,
                          refused ? "invalid_config" : "unhealthy", "mqtt: %s", why);
    }
    *self = m;
    return 0;
}

/* One PUBLISH into the group being built. 0, or -1 when the record cannot be stored. */
static int on_publish(struct msrc *m, const struct sl_mqtt_pkt *p, size_t *n)
{
    m->received++;
    m->bytes += p->payload_len;
    if (p->qos == 2 && p->dup && sl_mqtt_pending_has(&m->pending, p->id)) {
        m->dups++; /* stored already: acknowledged once that is durable, not appended again */
        return add_act(m, SL_MQTT_PUBREC, p->id);
    }
    if (p->qos == 2 && sl_mqtt_pending_add(&m->pending, p->id) < 0)
        m->ctx->host->log(m->ctx->id, 2,
                          "mqtt: more than %d QoS 2 messages unreleased: a redelivery of packet "
                          "%u after a crash could be stored twice",
                          SL_MQTT_PENDING_MAX, p->id);
    struct sl_mqtt_msg msg = {.topic = p->topic,
                              .topic_len = p->topic_len,
                              .payload = p->payload,
                              .payload_len = p->payload_len,
                              .qos = p->qos,
                              .retain = p->retain,
                              .dup = p->dup,
                              .id = p->id,
                              .received_ms = m->ctx->host->now_ms()};
    m->offs[*n] = m->mp.len;
    if (sl_mqtt_record(&m->mp, &msg, m->parse_json, m->metadata, NULL) < 0)
        return -1;
    m->recs[*n].flags = 0;
    (*n)++;
    if (p->qos)
        return add_act(m, p->qos == 1 ? SL_MQTT_PUBACK : SL_MQTT_PUBREC, p->id);
    return 0;
}

/* Emits the group (records, or only acks to wait for): its acks wait for its durability. */
static int emit_group(struct msrc *m, struct sl_emitter *em, size_t n)
{
    size_t first = m->nacts; /* this poll's acks: at the end, not yet given a group */
    while (first > 0 && m->acts[first - 1].group == UINT64_MAX)
        first--;
    if (!n && first == m->nacts)
        return 0;
    m->group++;
    for (size_t i = first; i < m->nacts; i++)
        m->acts[i].group = m->group;
    for (size_t i = 0; i < n; i++) {
        m->recs[i].payload = m->mp.data + m->offs[i];
        m->recs[i].payload_len = (uint32_t)((i + 1 < n ? m->offs[i + 1] : m->mp.len) - m->offs[i]);
    }
    uint8_t pos[SL_POSITION_MAX];
    size_t plen = sl_mqtt_pos_encode(m->group, &m->pending, pos);
    return em->emit(em, m->recs, n, pos, plen);
}

static enum sl_result msrc_poll(void *self, struct sl_emitter *em, int timeout_ms, char *error,
                                size_t errlen)
{
    struct msrc *m = self;
    if (m->conn.fd < 0) {
        uint64_t now = sl_mono_ns();
        if (now < m->next_connect_ns) {
            snprintf(error, errlen, "mqtt: %s", m->why);
            return SL_R_NOT_CONNECTED;
        }
        int refused;
        if (connect_now(m, &refused) < 0) {
            if (refused) { /* a login or client id the broker refuses: the config's fault */
                snprintf(error, errlen, "mqtt: %s", m->why);
                m->ctx->give_up(m->ctx->arg);
                return SL_R_FATAL;
            }
            double mult = json_number_value(json_object_get(m->cfg, "retry_multiplier"));
            uint64_t max = (uint64_t)json_integer_value(json_object_get(m->cfg, "retry_max_ms"));
            m->next_connect_ns = now + m->delay_ms * 1000000u;
            m->delay_ms = (uint64_t)((double)m->delay_ms * mult);
            if (m->delay_ms > max)
                m->delay_ms = max;
            snprintf(error, errlen, "mqtt: %s", m->why);
            return SL_R_NOT_CONNECTED;
        }
        m->reconnects++;
        m->delay_ms = (uint64_t)json_integer_value(json_object_get(m->cfg, "retry_initial_ms"));
    }
    uint64_t until = sl_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    size_t n = 0;
    int failed = 0;
    enum sl_result res = SL_R_OK;
    sl_buf_reset(&m->mp);
    while (n < m->group_max && m->mp.len < GROUP_BYTES && !m->ctx->stopped(m->ctx->arg)) {
        if (send_acks(m) < 0) {
            snprintf(m->why, sizeof(m->why), "the connection to the broker failed");
            failed = 1;
            break;
        }
        uint64_t now = sl_mono_ns();
        int wait = n || now >= until ? 0 : (int)((until - now) / 1000000u);
        struct sl_mqtt_pkt p;
        int r = sl_mqtt_conn_next(&m->conn, &p, wait, m->wake, m->why, sizeof(m->why));
        if (r < 0) {
            failed = 1;
            break;
        }
        if (r == 0) {
            if (n || sl_mono_ns() >= until)
                break;
            continue; /* woken: acks to send */
        }
        if (p.type == SL_MQTT_PUBLISH) {
            if (on_publish(m, &p, &n) < 0) {
                snprintf(error, errlen, "mqtt: a message of %.*s cannot be stored",
                         (int)(p.topic_len > 100 ? 100 : p.topic_len), p.topic);
                return SL_R_FATAL;
            }
        } else if (p.type == SL_MQTT_PUBREL) { /* released: PUBCOMP once that is durable */
            sl_mqtt_pending_del(&m->pending, p.id);
            add_act(m, SL_MQTT_PUBCOMP, p.id);
        } else if (p.type == SL_MQTT_SUBACK) {
            for (size_t i = 0; i < p.ncodes; i++)
                if (p.codes[i] == 0x80) {
                    snprintf(error, errlen, "mqtt: the broker refused subscription %zu of topics",
                             i);
                    m->ctx->give_up(m->ctx->arg);
                    return SL_R_FATAL;
                }
        }
    }
    /* the last record carries the pending ids, read back after a crash (position_of) */
    if (m->qos == 2 && n && sl_mqtt_record_add_pending(&m->mp, m->offs[n - 1], &m->pending) < 0) {
        snprintf(error, errlen, "mqtt: the group's last record cannot be stored");
        return SL_R_FATAL;
    }
    if (emit_group(m, em, n) < 0) {
        snprintf(error, errlen, "the strand refused the messages");
        return SL_R_RETRY;
    }
    if (!failed && sl_mqtt_conn_keepalive(&m->conn, m->keep_alive) < 0) {
        snprintf(m->why, sizeof(m->why), "the broker stopped answering (keep alive)");
        failed = 1;
    }
    if (failed) {
        sl_mqtt_conn_close(&m->conn, 0);
        snprintf(error, errlen, "mqtt: %s", m->why);
        res = SL_R_NOT_CONNECTED;
    }
    m->ctx->gauge(m->ctx->arg, "mqtt_source_messages_received", m->received);
    m->ctx->gauge(m->ctx->arg, "mqtt_source_bytes_received", m->bytes);
    m->ctx->gauge(m->ctx->arg, "mqtt_source_reconnects", m->reconnects);
    m->ctx->gauge(m->ctx->arg, "mqtt_source_duplicates_skipped", m->dups);
    return res;
}

/* The groups up to position are fsynced: poll's thread sends their acks (woken now). */
static void msrc_durable(void *self, const void *position, size_t len)
{
    struct msrc *m = self;
    uint64_t g;
    struct sl_mqtt_pending p;
    if (sl_mqtt_pos_decode(position, len, &g, &p) < 0)
        return;
    pthread_mutex_lock(&m->mu);
    if (g > m->durable_group)
        m->durable_group = g;
    pthread_mutex_unlock(&m->mu);
    uint64_t one = 1;
    if (write(m->wake, &one, sizeof(one)) < 0) { /* the counter is full: poll is awake anyway */
    }
}

static int msrc_position_of(const uint8_t *payload, size_t len, void *pos, size_t *pos_len)
{
    struct sl_mqtt_pending p;
    if (sl_mqtt_record_pending(payload, len, &p) < 0)
        return -1;
    *pos_len = sl_mqtt_pos_encode(0, &p, pos);
    return 0;
}

static const struct sl_gauge msrc_gauges[] = {
    {"mqtt_source_messages_received", "Messages received since the connector started."},
    {"mqtt_source_bytes_received", "Payload bytes received since it started."},
    {"mqtt_source_reconnects", "Connections made again after a failure since it started."},
    {"mqtt_source_duplicates_skipped",
     "QoS 2 messages the broker sent again that were already stored."},
    {NULL, NULL},
};

static const struct sl_source_ops msrc_ops = {.start = msrc_start,
                                              .poll = msrc_poll,
                                              .durable = msrc_durable,
                                              .stop = msrc_stop,
                                              .position_of = msrc_position_of,
                                              .position_fold = sl_mqtt_pos_fold,
                                              .gauges = msrc_gauges};

static const char *const mqtt_aliases[] = {"mqtt-source", NULL};

const struct sl_connector sl_conn_mqtt = {
    .abi = SL_CONNECTOR_ABI,
    .name = "mqtt",
    .aliases = mqtt_aliases,
    .direction = SL_INBOUND,
    .category = "messaging",
    .description = "MQTT 3.1.1 subscriber into a strand; QoS 1/2 messages are acknowledged only "
                   "after their records are fsynced, and at QoS 2 a message the broker sends "
                   "again is not stored twice.",
    .fields = f_mqtt,
    .check_config = mqtt_check_config,
    .source = &msrc_ops,
};
