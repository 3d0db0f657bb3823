/* What the Kafka source and sink share: the `security` object (Rivven's keys) and the
 * librdkafka config built from `brokers` and `security`, and the metadata probe. */
#include "connectors/kafka/kafka.h"
#include "core/err.h"
#include "core/log.h"
#include "engine/kinds.h"

#include "core/netpolicy.h"
#include "core/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

static const char *const g_protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl", NULL};
static const char *const g_mechanisms[] = {"PLAIN", "SCRAM_SHA_256", "SCRAM_SHA_512", NULL};

const struct sl_field sl_kafka_security_fields[] = {
    {"protocol", SL_F_ENUM, 0, "\"plaintext\"", 0,
     "plaintext, ssl, sasl_plaintext or sasl_ssl (librdkafka's security.protocol).", 0, 0,
     g_protocols, NULL},
    {"mechanism", SL_F_ENUM, 0, NULL, 0,
     "SASL mechanism: PLAIN, SCRAM_SHA_256 or SCRAM_SHA_512 (sasl.mechanism).", 0, 0, g_mechanisms,
     NULL},
    {"username", SL_F_STRING, 0, NULL, 0, "SASL username.", 0, 0, NULL, NULL},
    {"password", SL_F_STRING, 0, NULL, SL_SECRET, "SASL password.", 0, 0, NULL, NULL},
    {"ca_location", SL_F_STRING, 0, NULL, 0, "CA certificate file (ssl.ca.location).", 0, 0, NULL,
     NULL},
    {"certificate_location", SL_F_STRING, 0, NULL, 0,
     "Client certificate file for mutual TLS (ssl.certificate.location).", 0, 0, NULL, NULL},
    {"key_location", SL_F_STRING, 0, NULL, 0, "Client key file (ssl.key.location).", 0, 0, NULL,
     NULL},
    {"key_password", SL_F_STRING, 0, NULL, SL_SECRET, "Client key password (ssl.key.password).", 0,
     0, NULL, NULL},
    {"verify_hostname", SL_F_BOOL, 0, "true", 0,
     "Check the broker's certificate name (ssl.endpoint.identification.algorithm).", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const char *sget(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

int sl_kafka_check_security(const json_t *config, struct sl_err *err)
{
    const json_t *s = json_object_get(config, "security");
    const char *proto = sget(s, "protocol");
    int sasl = proto && strncmp(proto, "sasl_", 5) == 0;
    if (sasl && !sget(s, "mechanism"))
        return sl_config_error(err, "config.security.mechanism",
                               "required with protocol %s (PLAIN, SCRAM_SHA_256 or SCRAM_SHA_512)",
                               proto);
    if (sasl && !sget(s, "username"))
        return sl_config_error(err, "config.security.username", "required with protocol %s", proto);
    if (sasl && !sget(s, "password"))
        return sl_config_error(err, "config.security.password", "required with protocol %s", proto);
    if (!sasl && (sget(s, "mechanism") || sget(s, "username")))
        return sl_config_error(
            err, sget(s, "mechanism") ? "config.security.mechanism" : "config.security.username",
            "only with protocol sasl_plaintext or sasl_ssl");
    const json_t *b = json_object_get(config, "brokers");
    if (json_array_size(b) == 0)
        return sl_config_error(err, "config.brokers", "at least one host:port");
    size_t i;
    json_t *v;
    json_array_foreach(b, i, v)
    {
        const char *h = json_string_value(v);
        const char *colon = strrchr(h, ':');
        if (!*h || strchr(h, ',') || strpbrk(h, " \t\r\n") || !colon || colon == h || !colon[1] ||
            strspn(colon + 1, "0123456789") != strlen(colon + 1) || strlen(colon + 1) > 5) {
            char path[64];
            snprintf(path, sizeof(path), "config.brokers[%zu]", i);
            return sl_config_error(err, path, "must be host:port");
        }
        char host[80], why[200];
        snprintf(host, sizeof(host), "%.*s", (int)(colon - h), h);
        if (sl_netpolicy_denied_host(host, why, sizeof(why))) { /* a literal denied address */
            char path[64];
            snprintf(path, sizeof(path), "config.brokers[%zu]", i);
            return sl_config_error(err, path, "%s", why);
        }
    }
    return 0;
}

int sl_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr, size_t n)
{
    return rd_kafka_conf_set(conf, name, value, errstr, n) == RD_KAFKA_CONF_OK ? 0 : -1;
}

/* librdkafka's own log lines (a broker that refuses connections is logged every second) go to
 * Sluice's debug log: what matters reaches last_error through results and the health check. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    sl_debug("%s: %s: %s", rd_kafka_name(rk), fac, buf);
}

/* The last connections the outbound policy refused, by broker ("host:port", or "host:port/name"
 * as librdkafka names brokers): the callback cannot tell which client it serves, so the probe finds
 * its own bootstrap brokers here. */
#define NDENIED 16
static pthread_mutex_t g_denied_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char id[128], why[200];
    uint64_t ms;
} g_denied[NDENIED];
static unsigned g_denied_next;

/* 2 if every bootstrap broker of rk ("host:port,...") was refused by the policy since since_ms,
 * 1 if some were, else 0; why names one of them. */
static int denied_brokers(rd_kafka_t *rk, uint64_t since_ms, char *why, size_t n)
{
    char list[1024];
    size_t len = sizeof(list);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), "bootstrap.servers", list, &len) != RD_KAFKA_CONF_OK)
        return 0;
    int all = 1, any = 0;
    pthread_mutex_lock(&g_denied_mu);
    for (char *save = NULL, *b = strtok_r(list, ",", &save); b; b = strtok_r(NULL, ",", &save)) {
        size_t bl = strlen(b);
        int hit = 0;
        for (unsigned i = 0; i < NDENIED && !hit; i++)
            if (g_denied[i].ms >= since_ms && strncmp(g_denied[i].id, b, bl) == 0 &&
                (g_denied[i].id[bl] == 0 || g_denied[i].id[bl] == '/')) {
                hit = 1;
                snprintf(why, n, "broker %.60s: %.200s", g_denied[i].id, g_denied[i].why);
            }
        all &= hit;
        any |= hit;
    }
    pthread_mutex_unlock(&g_denied_mu);
    return all && any ? 2 : any;
}

/* Every broker connection goes through here: the resolved address is checked against the
 * outbound policy (core/netpolicy.h) before connect(), so a broker name that resolves to a denied
 * address (or a broker the cluster's metadata points to) is never contacted. */
static int connect_cb(int fd, const struct sockaddr *sa, int len, const char *id, void *opaque)
{
    (void)opaque;
    const unsigned char *a = NULL;
    if (sa->sa_family == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6)
        a = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
    char why[200];
    if (a && sl_netpolicy_denied(sa->sa_family, a, why, sizeof(why))) {
        pthread_mutex_lock(&g_denied_mu);
        unsigned k = g_denied_next++ % NDENIED;
        snprintf(g_denied[k].id, sizeof(g_denied[k].id), "%s", id);
        snprintf(g_denied[k].why, sizeof(g_denied[k].why), "%s", why);
        g_denied[k].ms = sl_now_ms();
        pthread_mutex_unlock(&g_denied_mu);
        sl_warn("kafka: broker %s: connection refused by the outbound policy: %s", id, why);
        return EACCES;
    }
    if (connect(fd, sa, (socklen_t)len) == -1 && errno != EINPROGRESS)
        return errno;
    return 0;
}

rd_kafka_conf_t *sl_kafka_conf_new(const json_t *config, const char *client_id, char *errstr,
                                   size_t n)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    struct sl_buf list;
    sl_buf_init(&list, 1 << 16);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(config, "brokers"), i, v)
    {
        if (i)
            sl_buf_putc(&list, ',');
        sl_buf_puts(&list, json_string_value(v));
    }
    sl_buf_putc(&list, 0);
    const json_t *s = json_object_get(config, "security");
    const char *proto = sget(s, "protocol"), *mech = sget(s, "mechanism");
    char mechanism[32] = "";
    if (mech) { /* SCRAM_SHA_256 -> SCRAM-SHA-256 */
        snprintf(mechanism, sizeof(mechanism), "%s", mech);
        for (char *p = mechanism; *p; p++)
            if (*p == '_')
                *p = '-';
    }
    struct {
        const char *name, *value;
    } props[] = {
        {"bootstrap.servers", list.failed ? NULL : (const char *)list.data},
        {"client.id", client_id},
        {"log_level", "6"},
        /* A broker that went away is tried again at most a second apart (the Java client's
         * default), not librdkafka's 10 s: after a broker restart the sink and the source
         * resumed ~10 s late (test_kafka: 10.0 s -> 1.0 s from the broker's return to the
         * last delivery report) */
        {"reconnect.backoff.max.ms", "1000"},
        {"security.protocol", proto},
        {"sasl.mechanism", mech ? mechanism : NULL},
        {"sasl.username", sget(s, "username")},
        {"sasl.password", sget(s, "password")},
        {"ssl.ca.location", sget(s, "ca_location")},
        {"ssl.certificate.location", sget(s, "certificate_location")},
        {"ssl.key.location", sget(s, "key_location")},
        {"ssl.key.password", sget(s, "key_password")},
        {"ssl.endpoint.identification.algorithm",
         json_is_false(json_object_get(s, "verify_hostname")) ? "none" : NULL},
    };
    for (size_t k = 0; k < sizeof(props) / sizeof(props[0]); k++)
        if (props[k].value && sl_kafka_set(conf, props[k].name, props[k].value, errstr, n) < 0) {
            sl_buf_release(&list);
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    sl_buf_release(&list);
    rd_kafka_conf_set_log_cb(conf, log_cb);
    rd_kafka_conf_set_connect_cb(conf, connect_cb);
    return conf;
}

rd_kafka_t *sl_kafka_new(rd_kafka_type_t type, const json_t *config, const char *client_id,
                         const struct sl_kafka_prop *props, size_t nprops,
                         void (*hook)(rd_kafka_conf_t *), void *opaque, char *errstr, size_t n)
{
    rd_kafka_conf_t *conf = sl_kafka_conf_new(config, client_id, errstr, n);
    for (size_t i = 0; conf && i < nprops; i++)
        if (props[i].value && sl_kafka_set(conf, props[i].name, props[i].value, errstr, n) < 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    if (!conf)
        return NULL;
    hook(conf);
    rd_kafka_conf_set_opaque(conf, opaque);
    rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, n);
    if (!rk)
        rd_kafka_conf_destroy(conf);
    return rk;
}

int sl_kafka_probe(rd_kafka_t *rk, const char *topic, int timeout_ms, int (*stop)(void *),
                   void *arg, char *errstr, size_t n)
{
    rd_kafka_topic_t *t = topic ? rd_kafka_topic_new(rk, topic, NULL) : NULL;
    const struct rd_kafka_metadata *md = NULL;
    /* In slices, so that a connector being stopped (the server shutting down) does not wait
     * out a broker that does not answer. Each slice sends a new request and an answer that comes
     * after its slice is lost, so slices double (250 ms, 500 ms, 1 s, 2 s, the rest): a broker
     * whose round trip is long is still heard, as with one call of timeout_ms. */
    /* denials since a little before the probe: the client connects as soon as it is created */
    uint64_t until = sl_mono_ns() + (uint64_t)timeout_ms * 1000000u, t0_ms = sl_now_ms() - 2000;
    rd_kafka_resp_err_t e;
    char denied[300] = "";
    for (int slice = 250;; slice *= 2) {
        uint64_t now = sl_mono_ns();
        int left = now < until ? (int)((until - now) / 1000000u) : 0;
        e = rd_kafka_metadata(rk, t ? 0 : 1, t, &md, left < slice ? (left > 0 ? left : 1) : slice);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR || sl_mono_ns() >= until ||
            denied_brokers(rk, t0_ms, denied, sizeof(denied)) == 2) /* nothing to wait for */
            break;
        if (stop && stop(arg)) {
            if (t)
                rd_kafka_topic_destroy(t);
            snprintf(errstr, n, "stopped while waiting for a broker");
            return -1;
        }
    }
    int rc = 0;
    int nd =
        e != RD_KAFKA_RESP_ERR_NO_ERROR ? denied_brokers(rk, t0_ms, denied, sizeof(denied)) : 0;
    if (nd == 2) {
        snprintf(errstr, n, "%s (every bootstrap broker refused by the outbound policy)", denied);
        rc = -1;
    } else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(errstr, n, "no broker answered within %d ms (%s)%s%.290s", timeout_ms,
                 rd_kafka_err2str(e), nd ? "; " : "", nd ? denied : "");
        rc = -1;
    } else if (t && md->topic_cnt == 1 && md->topics[0].err &&
               md->topics[0].err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {
        snprintf(errstr, n, "topic %s: %s", topic, rd_kafka_err2str(md->topics[0].err));
        rc = -1;
    }
    if (md)
        rd_kafka_metadata_destroy(md);
    if (t)
        rd_kafka_topic_destroy(t);
    return rc;
}
