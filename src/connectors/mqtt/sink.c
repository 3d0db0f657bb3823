/* The MQTT sink (`mqtt_sink`): every record of the followed strands is published to `topic` (a
 * fixed topic, or a template whose {dotted.path} parts are filled from the record's payload) with
 * the payload as JSON text (a tombstone publishes an empty payload: with retain, that clears the
 * retained message), at QoS 0, 1 or 2, with `retain`.
 *
 * Delivery: send() publishes a batch (at most max_inflight messages) and waits for the broker:
 * PUBACK (QoS 1) or PUBREC, PUBREL, PUBCOMP (QoS 2); only then does the framework's cursor pass
 * the records. QoS 0 counts as accepted once written to the socket. A lost connection or no
 * answer within timeout_ms reports the acknowledged prefix: the rest is published again after the
 * framework's backoff, so a message whose acknowledgement was lost can reach subscribers twice
 * (MQTT has no idempotent publish across connections). A record whose topic cannot be made (a
 * missing field, a value with '+', '#' or NUL) is a dead letter. */
#include "connectors/mqtt/mqtt.h"
#include "core/err.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct sl_field f_sink[] = {
    {"broker_url", SL_F_STRING, 1, NULL, 0,
     "mqtt://host[:port] (1883) or mqtts://host[:port] (8883).", 0, 0, NULL, NULL},
    {"topic", SL_F_STRING, 1, NULL, 0,
     "Topic to publish to; {a.b} parts are filled from the payload's field a.b (sensors/{id}).", 0,
     0, NULL, NULL},
    {"qos", SL_F_ENUM, 0, "\"at_least_once\"", 0,
     "at_most_once, at_least_once or exactly_once: the cursor passes a record after the "
     "write, the PUBACK or the PUBCOMP.",
     0, 0, sl_mqtt_qos_names, NULL},
    {"retain", SL_F_BOOL, 0, "false", 0, "Publish with the retain flag.", 0, 0, NULL, NULL},
    {"client_id", SL_F_STRING, 0, NULL, 0, "MQTT client id; absent: sluice-<connector id>.", 0, 0,
     NULL, NULL},
    {"auth", SL_F_OBJECT, 0, "{}", 0, "username and password.", 0, 0, NULL, sl_mqtt_auth_fields},
    {"tls", SL_F_OBJECT, 0, "{}", 0, "TLS settings for mqtts://.", 0, 0, NULL, sl_mqtt_tls_fields},
    {"keep_alive_secs", SL_F_INT, 0, "60", 0, "Keep-alive interval in seconds (0: none).", 0, 65535,
     NULL, NULL},
    {"connect_timeout_secs", SL_F_INT, 0, "30", 0, "Time allowed to connect and get CONNACK.", 1,
     3600, NULL, NULL},
    {"max_inflight", SL_F_INT, 0, "100", 0,
     "Messages published before waiting for their acknowledgements (records per batch).", 1, 65535,
     NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* The {path} parts of a template: each closed, non-empty, a dotted path. */
static int check_template(const char *t, char *why, size_t n)
{
    for (const char *p = t; *p; p++) {
        if (*p == '}')
            return snprintf(why, n, "'}' without '{'"), -1;
        if (*p != '{')
            continue;
        const char *e = strchr(p, '}');
        if (!e)
            return snprintf(why, n, "'{' without '}'"), -1;
        if (e == p + 1 || p[1] == '.' || e[-1] == '.' || memchr(p + 1, '{', (size_t)(e - p - 1)))
            return snprintf(why, n, "{...} holds a dotted field path such as device.id"), -1;
        for (const char *q = p + 1; q + 1 < e; q++)
            if (q[0] == '.' && q[1] == '.')
                return snprintf(why, n, "{...} holds a dotted field path such as device.id"), -1;
        p = e;
    }
    return 0;
}

static int ms_check_config(json_t *c, struct sl_err *err)
{
    if (sl_mqtt_check_url(c, err) < 0)
        return SL_E_INVAL;
    const char *t = json_string_value(json_object_get(c, "topic"));
    char why[160];
    if (check_template(t, why, sizeof(why)) < 0)
        return sl_config_error(err, "config.topic", "%s", why);
    if (!strchr(t, '{') && !sl_mqtt_topic_valid(t, strlen(t), 0))
        return sl_config_error(err, "config.topic",
                               "not a topic name (not empty, no + or # wildcards)");
    const char *id = json_string_value(json_object_get(c, "client_id"));
    if (id && !*id)
        return sl_config_error(err, "config.client_id", "must not be empty");
    return 0;
}

/* ---- the publisher ---- */

enum { ST_SKIP, ST_WAIT, ST_REL, ST_OK, ST_REJECT };

struct msink {
    const struct sl_sink_ctx *ctx;
    struct sl_mqtt_conn conn;
    struct sl_mqtt_connect cp;
    char client_id[300];
    const char *topic;
    int qos, retain, timeout_ms, connect_ms;
    size_t max;
    uint8_t *st;
    uint16_t *ids;
    size_t *reject;
    struct sl_buf topic_buf, json;
    char *payload;
    size_t payload_len;
};

static void ms_close(void *self)
{
    struct msink *k = self;
    if (!k)
        return;
    sl_mqtt_conn_close(&k->conn, 1);
    sl_mqtt_conn_release(&k->conn);
    sl_buf_release(&k->topic_buf);
    sl_buf_release(&k->json);
    free(k->payload);
    free(k->st);
    free(k->ids);
    free(k->reject);
    free(k);
}

static int ms_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct msink *k = calloc(1, sizeof(*k));
    if (!k)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    const json_t *c = ctx->config;
    k->ctx = ctx;
    sl_mqtt_conn_init(&k->conn);
    k->conn.cancelled = ctx->cancelled;
    k->conn.cancel_arg = ctx->arg;
    sl_buf_init(&k->topic_buf, 65535);
    sl_buf_init(&k->json, 0);
    k->topic = json_string_value(json_object_get(c, "topic"));
    k->qos = sl_mqtt_qos_of(json_string_value(json_object_get(c, "qos")));
    k->retain = json_is_true(json_object_get(c, "retain"));
    k->max = (size_t)json_integer_value(json_object_get(c, "max_inflight"));
    json_t *to = json_object_get(c, "timeout_ms");
    k->timeout_ms = to && json_integer_value(to) > 0 ? (int)json_integer_value(to) : 30000;
    k->connect_ms = (int)json_integer_value(json_object_get(c, "connect_timeout_secs")) * 1000;
    if (!(k->st = calloc(k->max, 1)) || !(k->ids = calloc(k->max, sizeof(*k->ids))) ||
        !(k->reject = calloc(k->max, sizeof(*k->reject)))) {
        ms_close(k);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    const char *id = json_string_value(json_object_get(c, "client_id"));
    snprintf(k->client_id, sizeof(k->client_id), "%s%s", id ? "" : "sluice-", id ? id : ctx->id);
    const json_t *a = json_object_get(c, "auth");
    k->cp = (struct sl_mqtt_connect){
        .client_id = k->client_id,
        /* always clean: packet ids restart at 1 for each batch on a new connection, and a QoS 2
         * id the broker still held from an old session would make it drop a new message */
        .clean_session = 1,
        .keep_alive = (unsigned)json_integer_value(json_object_get(c, "keep_alive_secs")),
        .username = json_string_value(json_object_get(a, "username")),
        .password = json_string_value(json_object_get(a, "password")),
    };
    info->batch_max = k->max;
    *self = k;
    return 0;
}

static int ensure(struct msink *k, char *why, size_t n)
{
    /* idle longer than the keep alive (the sink only talks while sending): the broker may have
     * dropped the connection, so start a new one rather than find out from a failed batch */
    if (k->conn.fd >= 0 && k->cp.keep_alive &&
        sl_mono_ns() - k->conn.last_sent_ns > (uint64_t)k->cp.keep_alive * 1000000000u)
        sl_mqtt_conn_close(&k->conn, 1);
    if (k->conn.fd >= 0)
        return 0;
    int present, refused;
    return sl_mqtt_conn_open(&k->conn, k->ctx->config, &k->cp, k->connect_ms, &present, &refused,
                             why, n);
}

static int ms_check(void *self, struct sl_err *err)
{
    struct msink *k = self;
    char why[256];
    if (ensure(k, why, sizeof(why)) < 0)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "mqtt: %s", why);
    return 0;
}

/* The topic of r into k->topic_buf: 0, or -1 with why. */
static int make_topic(struct msink *k, const struct sl_rec *r, char *why, size_t n)
{
    sl_buf_reset(&k->topic_buf);
    const uint8_t *end = r->payload + r->payload_len;
    for (const char *p = k->topic; *p; p++) {
        if (*p != '{') {
            sl_buf_putc(&k->topic_buf, (uint8_t)*p);
            continue;
        }
        const char *e = strchr(p, '}');
        char path[256];
        snprintf(path, sizeof(path), "%.*s", (int)(e - p - 1), p + 1);
        const uint8_t *v = sl_mp_at_path(r->payload, end, path);
        const uint8_t *q = v;
        const char *s;
        uint32_t sl;
        size_t used;
        if (v && sl_mp_read_str(&q, end, &s, &sl) == 0)
            sl_buf_append(&k->topic_buf, s, sl);
        else if (!v || (sl_mp_type(v, end) != SL_MP_INT && sl_mp_type(v, end) != SL_MP_BOOL) ||
                 sl_mp_to_json(v, (size_t)(end - v), &used, &k->topic_buf, 1, NULL) < 0)
            return snprintf(why, n, "topic: field %.100s is %s", path,
                            v ? "not a string, an integer or a boolean" : "missing"),
                   -1;
        p = e;
    }
    if (k->topic_buf.failed ||
        !sl_mqtt_topic_valid((const char *)k->topic_buf.data, k->topic_buf.len, 0))
        return snprintf(why, n, "topic: \"%.*s\" is not a topic name",
                        (int)(k->topic_buf.len > 100 ? 100 : k->topic_buf.len),
                        (const char *)k->topic_buf.data),
               -1;
    return 0;
}

/* The PUBLISH of r (packet id) appended to out: 0, or -1 with why (a dead letter). */
static int put_record(struct msink *k, struct sl_buf *out, const struct sl_rec *r, uint16_t id,
                      char *why, size_t n)
{
    if (make_topic(k, r, why, n) < 0)
        return -1;
    size_t len = 0;
    if (!(r->flags & SL_REC_TOMBSTONE)) {
        free(k->payload);
        k->payload = NULL;
        if (k->ctx->host->payload_json(r->payload, r->payload_len, &k->payload, &len) < 0)
            return snprintf(why, n, "the payload cannot be shown as JSON"), -1;
    }
    if (sl_mqtt_put_publish(out, (const char *)k->topic_buf.data, k->topic_buf.len,
                            len ? k->payload : "", len, k->qos, k->retain, 0, id) < 0)
        return snprintf(why, n, "the message is too large for MQTT"), -1;
    return 0;
}

/* The index of packet id in the batch (ids are 1..n), or -1. */
static long index_of(const struct msink *k, size_t n, uint16_t id)
{
    return id >= 1 && id <= n && k->ids[id - 1] == id ? (long)id - 1 : -1;
}

static enum sl_result ms_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct msink *k = self;
    size_t n = b->n < k->max ? b->n : k->max, waiting = 0, nrej = 0;
    if (ensure(k, out->error, sizeof(out->error)) < 0)
        return SL_R_NOT_CONNECTED;
    char why[256];
    for (size_t i = 0; i < n; i++) {
        k->ids[i] = (uint16_t)(i + 1);
        if (put_record(k, &k->conn.out, &b->recs[i], k->ids[i], why, sizeof(why)) < 0) {
            k->st[i] = ST_REJECT;
            k->reject[nrej++] = i;
            snprintf(out->error, sizeof(out->error), "%s", why);
            continue;
        }
        k->st[i] = k->qos ? ST_WAIT : ST_OK;
        waiting += k->qos ? 1 : 0;
        if (k->conn.out.len >= (1u << 20) && sl_mqtt_conn_flush(&k->conn, k->timeout_ms) < 0)
            break;
    }
    if (sl_mqtt_conn_flush(&k->conn, k->timeout_ms) < 0) {
        snprintf(out->error, sizeof(out->error), "mqtt: the connection to the broker failed");
        return SL_R_NOT_CONNECTED;
    }
    uint64_t until = sl_mono_ns() + (uint64_t)k->timeout_ms * 1000000u;
    int failed = 0;
    while (waiting) {
        uint64_t now = sl_mono_ns();
        if (now >= until) {
            failed = 2;
            break;
        }
        struct sl_mqtt_pkt p;
        int r = sl_mqtt_conn_next(&k->conn, &p, (int)((until - now) / 1000000u) + 1, -1, why,
                                  sizeof(why));
        if (r < 0) {
            failed = 1;
            break;
        }
        long i = r > 0 ? index_of(k, n, p.id) : -1;
        if (i < 0)
            continue;
        if (p.type == SL_MQTT_PUBACK && k->qos == 1 && k->st[i] == ST_WAIT) {
            k->st[i] = ST_OK;
            waiting--;
        } else if (p.type == SL_MQTT_PUBREC && k->qos == 2 && k->st[i] == ST_WAIT) {
            k->st[i] = ST_REL;
            if (sl_mqtt_put_ack(&k->conn.out, SL_MQTT_PUBREL, p.id) < 0 ||
                sl_mqtt_conn_flush(&k->conn, k->timeout_ms) < 0) {
                failed = 1;
                break;
            }
        } else if (p.type == SL_MQTT_PUBCOMP && k->qos == 2 && k->st[i] == ST_REL) {
            k->st[i] = ST_OK;
            waiting--;
        }
    }
    if (failed) {
        size_t acc = 0;
        while (acc < n && (k->st[acc] == ST_OK || k->st[acc] == ST_REJECT))
            acc++;
        out->accepted = acc;
        sl_mqtt_conn_close(&k->conn, 0); /* unanswered ids must not meet the next batch */
        snprintf(out->error, sizeof(out->error), "mqtt: %.200s",
                 failed == 2 ? "no acknowledgement from the broker in time" : why);
        return failed == 2 ? SL_R_RETRY : SL_R_NOT_CONNECTED;
    }
    out->accepted = n;
    if (nrej) {
        out->accepted = 0;
        out->reject = k->reject;
        out->n_reject = nrej;
        return SL_R_REJECT;
    }
    return SL_R_OK;
}

static int ms_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct msink *k = self;
    struct sl_buf o;
    sl_buf_init(&o, 0);
    char why[256];
    for (size_t i = 0; i < b->n; i++)
        put_record(k, &o, &b->recs[i], (uint16_t)(i % 65535 + 1), why, sizeof(why));
    if (o.failed) {
        sl_buf_release(&o);
        return -1;
    }
    *bytes = (uint8_t *)sl_buf_steal(&o, len);
    return *bytes ? 0 : -1;
}

static const struct sl_sink_ops ms_ops = {
    .open = ms_open,
    .send = ms_send,
    .check = ms_check,
    .format = ms_format,
    .close = ms_close,
};

static const char *const sink_aliases[] = {"mqtt-sink", NULL};

const struct sl_connector sl_conn_mqtt_sink = {
    .abi = SL_CONNECTOR_ABI,
    .name = "mqtt_sink",
    .aliases = sink_aliases,
    .direction = SL_OUTBOUND,
    .category = "messaging",
    .description = "Publishes each record to an MQTT 3.1.1 topic (fixed or filled from payload "
                   "fields) at QoS 0, 1 or 2, optionally retained; the cursor passes a record "
                   "after its PUBACK / PUBCOMP.",
    .fields = f_sink,
    .check_config = ms_check_config,
    .sink = &ms_ops,
};
