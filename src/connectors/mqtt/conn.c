/* One MQTT connection: TCP (non-blocking, poll()) or TLS (GnuTLS) to the broker of broker_url,
 * CONNECT/CONNACK, then packets in and out. The resolved address is checked against the outbound
 * policy (core/netpolicy.h) before connecting. Also the config pieces both MQTT kinds share. */
#include "connectors/mqtt/mqtt.h"
#include "core/err.h"
#include "core/netpolicy.h"
#include "core/util.h"
#include "engine/kinds.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/x509.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

const char *const sl_mqtt_qos_names[] = {"at_most_once", "at_least_once", "exactly_once", NULL};

const struct sl_field sl_mqtt_auth_fields[] = {
    {"username", SL_F_STRING, 0, NULL, 0, "User name sent in CONNECT.", 0, 0, NULL, NULL},
    {"password", SL_F_STRING, 0, NULL, SL_SECRET, "Password sent in CONNECT (needs username).", 0,
     0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

const struct sl_field sl_mqtt_tls_fields[] = {
    {"ca_location", SL_F_STRING, 0, NULL, 0,
     "CA certificate file (PEM) for mqtts://; absent: the system's trust store.", 0, 0, NULL, NULL},
    {"certificate_location", SL_F_STRING, 0, NULL, 0,
     "Client certificate file (PEM) for mutual TLS.", 0, 0, NULL, NULL},
    {"key_location", SL_F_STRING, 0, NULL, 0, "Client key file (PEM).", 0, 0, NULL, NULL},
    {"verify_hostname", SL_F_BOOL, 0, "true", 0,
     "Check that the broker's certificate names the host of broker_url.", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

int sl_mqtt_qos_of(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (name && strcmp(name, sl_mqtt_qos_names[i]) == 0)
            return i;
    return 0;
}

int sl_mqtt_parse_url(const char *url, struct sl_mqtt_url *u, char *why, size_t n)
{
    memset(u, 0, sizeof(*u));
    const char *h;
    if (strncmp(url, "mqtt://", 7) == 0)
        h = url + 7, u->port = 1883;
    else if (strncmp(url, "mqtts://", 8) == 0)
        h = url + 8, u->port = 8883, u->tls = 1;
    else
        return snprintf(why, n, "must be an mqtt:// or mqtts:// URL"), -1;
    size_t hl = strcspn(h, "/?#");
    if (h[hl] && strcmp(h + hl, "/") != 0)
        return snprintf(why, n, "no path or query after host:port"), -1;
    if (memchr(h, '@', hl))
        return snprintf(why, n, "no credentials in the URL (use auth)"), -1;
    const char *host = h, *colon;
    size_t nl;
    if (*h == '[') {
        const char *close = memchr(h, ']', hl);
        if (!close)
            return snprintf(why, n, "unclosed [ in the host"), -1;
        host = h + 1;
        nl = (size_t)(close - host);
        colon = close + 1 < h + hl && close[1] == ':' ? close + 1 : NULL;
        if (!colon && close + 1 != h + hl)
            return snprintf(why, n, "bad host"), -1;
    } else {
        colon = memchr(h, ':', hl);
        nl = colon ? (size_t)(colon - h) : hl;
    }
    if (nl == 0)
        return snprintf(why, n, "has no host"), -1;
    if (nl >= sizeof(u->host))
        return snprintf(why, n, "host too long"), -1;
    memcpy(u->host, host, nl);
    if (colon) {
        char port[8] = "";
        size_t pl = (size_t)(h + hl - colon - 1);
        uint64_t v;
        if (pl == 0 || pl >= sizeof(port))
            return snprintf(why, n, "bad port"), -1;
        memcpy(port, colon + 1, pl);
        if (sl_parse_u64(port, &v) < 0 || v == 0 || v > 65535)
            return snprintf(why, n, "bad port"), -1;
        u->port = (unsigned)v;
    }
    return 0;
}

int sl_mqtt_check_url(const json_t *config, struct sl_err *err)
{
    struct sl_mqtt_url u;
    char why[160];
    const char *url = json_string_value(json_object_get(config, "broker_url"));
    if (sl_mqtt_parse_url(url ? url : "", &u, why, sizeof(why)) < 0)
        return sl_config_error(err, "config.broker_url", "%s", why);
    if (sl_netpolicy_denied_host(u.host, why, sizeof(why)))
        return sl_config_error(err, "config.broker_url", "%s", why);
    const json_t *a = json_object_get(config, "auth");
    if (json_object_get(a, "password") && !json_object_get(a, "username"))
        return sl_config_error(err, "config.auth.username", "required with a password");
    return 0;
}

/* ---- the connection ---- */

void sl_mqtt_conn_init(struct sl_mqtt_conn *c)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    sl_buf_init(&c->in, SL_MQTT_MAX_PACKET + 65536);
    sl_buf_init(&c->out, 0);
}

void sl_mqtt_conn_close(struct sl_mqtt_conn *c, int polite)
{
    if (c->fd >= 0 && polite) {
        uint8_t d[2] = {SL_MQTT_DISCONNECT << 4, 0};
        sl_mqtt_conn_send(c, d, 2, 500);
    }
    if (c->tls) {
        gnutls_deinit(c->tls);
        c->tls = NULL;
    }
    if (c->cred) {
        gnutls_certificate_free_credentials(c->cred);
        c->cred = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    sl_buf_reset(&c->in);
    c->in_off = 0;
    sl_buf_reset(&c->out);
}

void sl_mqtt_conn_release(struct sl_mqtt_conn *c)
{
    sl_mqtt_conn_close(c, 0);
    sl_buf_release(&c->in);
    sl_buf_release(&c->out);
}

static int left_ms(uint64_t until)
{
    uint64_t now = sl_mono_ns();
    return now >= until ? 0 : (int)((until - now) / 1000000u) + 1;
}

static int cancelled(const struct sl_mqtt_conn *c)
{
    return c->cancelled && c->cancelled(c->cancel_arg);
}

/* Waits for ev on c's socket until `until`, in slices of 100 ms so that a connector being
 * stopped does not wait for a whole connect timeout. 0, or -1 (timed out, cancelled, failed). */
static int wait_fd(const struct sl_mqtt_conn *c, int fd, short ev, uint64_t until)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = ev};
        int ms = left_ms(until);
        if (ms <= 0 || cancelled(c))
            return -1;
        int r = poll(&p, 1, ms > 100 ? 100 : ms);
        if (r > 0)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int tcp_connect(const struct sl_mqtt_conn *c, const struct sl_mqtt_url *u, uint64_t until,
                       char *why, size_t n)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", u->port);
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc)
        return snprintf(why, n, "cannot resolve %s: %s", u->host, gai_strerror(rc)), -1;
    int fd = -1;
    snprintf(why, n, "cannot connect to %s:%u", u->host, u->port);
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        const unsigned char *ad =
            a->ai_family == AF_INET
                ? (const unsigned char *)&((struct sockaddr_in *)(void *)a->ai_addr)->sin_addr
                : (const unsigned char *)&((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_addr;
        char deny[160];
        if (sl_netpolicy_denied(a->ai_family, ad, deny, sizeof(deny))) {
            snprintf(why, n, "%s", deny);
            continue;
        }
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) < 0 && errno != EINPROGRESS) {
            snprintf(why, n, "cannot connect to %s:%u: %s", u->host, u->port, strerror(errno));
            close(fd);
            fd = -1;
            continue;
        }
        int err = 0;
        socklen_t el = sizeof(err);
        if (wait_fd(c, fd, POLLOUT, until) < 0) {
            snprintf(why, n, "cannot connect to %s:%u: timed out", u->host, u->port);
            err = ETIMEDOUT;
        } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
            snprintf(why, n, "cannot connect to %s:%u: %s", u->host, u->port, strerror(err));
        }
        if (err) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return fd;
}

static int tls_start(struct sl_mqtt_conn *c, const json_t *tls, const char *host, uint64_t until,
                     char *why, size_t n)
{
    const char *ca = json_string_value(json_object_get(tls, "ca_location"));
    const char *cert = json_string_value(json_object_get(tls, "certificate_location"));
    const char *key = json_string_value(json_object_get(tls, "key_location"));
    int rc = gnutls_certificate_allocate_credentials(&c->cred);
    if (rc >= 0)
        rc = ca ? gnutls_certificate_set_x509_trust_file(c->cred, ca, GNUTLS_X509_FMT_PEM)
                : gnutls_certificate_set_x509_system_trust(c->cred);
    if (rc < 0)
        return snprintf(why, n, "tls: CA %s: %s", ca ? ca : "(system)", gnutls_strerror(rc)), -1;
    if (cert && key &&
        (rc = gnutls_certificate_set_x509_key_file(c->cred, cert, key, GNUTLS_X509_FMT_PEM)) < 0)
        return snprintf(why, n, "tls: client certificate: %s", gnutls_strerror(rc)), -1;
    if ((rc = gnutls_init(&c->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK)) < 0 ||
        (rc = gnutls_set_default_priority(c->tls)) < 0 ||
        (rc = gnutls_credentials_set(c->tls, GNUTLS_CRD_CERTIFICATE, c->cred)) < 0)
        return snprintf(why, n, "tls: %s", gnutls_strerror(rc)), -1;
    struct in6_addr a6;
    int literal = inet_pton(AF_INET, host, &a6) == 1 || inet_pton(AF_INET6, host, &a6) == 1;
    if (!literal)
        gnutls_server_name_set(c->tls, GNUTLS_NAME_DNS, host, strlen(host));
    if (json_is_false(json_object_get(tls, "verify_hostname")))
        gnutls_session_set_verify_cert(c->tls, NULL, 0);
    else
        gnutls_session_set_verify_cert(c->tls, host, 0);
    gnutls_transport_set_int(c->tls, c->fd);
    gnutls_handshake_set_timeout(c->tls, GNUTLS_DEFAULT_HANDSHAKE_TIMEOUT);
    do {
        rc = gnutls_handshake(c->tls);
        if (rc == GNUTLS_E_AGAIN || rc == GNUTLS_E_INTERRUPTED) {
            if (wait_fd(c, c->fd, gnutls_record_get_direction(c->tls) ? POLLOUT : POLLIN, until) <
                0)
                return snprintf(why, n, "tls: handshake timed out"), -1;
        }
    } while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc < 0) {
        if (rc == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
            gnutls_datum_t out = {0};
            unsigned st = gnutls_session_get_verify_cert_status(c->tls);
            gnutls_certificate_verification_status_print(st, GNUTLS_CRT_X509, &out, 0);
            snprintf(why, n, "tls: the broker's certificate is not trusted: %s",
                     out.data ? (char *)out.data : "");
            gnutls_free(out.data);
            return -1;
        }
        return snprintf(why, n, "tls: handshake: %s", gnutls_strerror(rc)), -1;
    }
    return 0;
}

static int send_until(struct sl_mqtt_conn *c, const uint8_t *p, size_t len, uint64_t until)
{
    while (len) {
        ssize_t w;
        if (c->tls) {
            w = gnutls_record_send(c->tls, p, len);
            if (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED) {
                if (wait_fd(c, c->fd, POLLOUT, until) < 0)
                    return -1;
                continue; /* GnuTLS wants the same data again */
            }
            if (w < 0)
                return -1;
        } else {
            w = send(c->fd, p, len, MSG_NOSIGNAL);
            if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                if (wait_fd(c, c->fd, POLLOUT, until) < 0)
                    return -1;
                continue;
            }
            if (w <= 0)
                return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int sl_mqtt_conn_send(struct sl_mqtt_conn *c, const void *p, size_t len, int timeout_ms)
{
    if (c->fd < 0)
        return -1;
    if (send_until(c, p, len, sl_mono_ns() + (uint64_t)timeout_ms * 1000000u) < 0) {
        sl_mqtt_conn_close(c, 0);
        return -1;
    }
    c->last_sent_ns = sl_mono_ns();
    return 0;
}

int sl_mqtt_conn_flush(struct sl_mqtt_conn *c, int timeout_ms)
{
    if (c->out.failed) {
        sl_mqtt_conn_close(c, 0);
        return -1;
    }
    int rc = c->out.len ? sl_mqtt_conn_send(c, c->out.data, c->out.len, timeout_ms) : 0;
    sl_buf_reset(&c->out);
    return rc;
}

/* Reads what is available into c->in: > 0 bytes read, 0 nothing yet, -1 closed or failed. */
static int fill(struct sl_mqtt_conn *c)
{
    if (c->in_off && c->in_off == c->in.len) {
        c->in.len = c->in_off = 0;
    } else if (c->in_off > (1u << 20)) {
        memmove(c->in.data, c->in.data + c->in_off, c->in.len - c->in_off);
        c->in.len -= c->in_off;
        c->in_off = 0;
    }
    if (sl_buf_reserve(&c->in, 65536) < 0)
        return -1;
    ssize_t r;
    if (c->tls) {
        r = gnutls_record_recv(c->tls, c->in.data + c->in.len, c->in.cap - c->in.len);
        if (r == GNUTLS_E_AGAIN || r == GNUTLS_E_INTERRUPTED)
            return 0;
    } else {
        r = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return 0;
    }
    if (r <= 0)
        return -1;
    c->in.len += (size_t)r;
    return 1;
}

int sl_mqtt_conn_next(struct sl_mqtt_conn *c, struct sl_mqtt_pkt *pkt, int timeout_ms, int wake_fd,
                      char *why, size_t n)
{
    uint64_t until = sl_mono_ns() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0) * 1000000u;
    if (c->fd < 0)
        return snprintf(why, n, "not connected"), -1;
    for (;;) {
        long len = sl_mqtt_frame(c->in.data + c->in_off, c->in.len - c->in_off, SL_MQTT_MAX_PACKET);
        if (len < 0) {
            snprintf(why, n, "the broker sent a malformed or too large packet");
            sl_mqtt_conn_close(c, 0);
            return -1;
        }
        if (len > 0) {
            const uint8_t *p = c->in.data + c->in_off;
            c->in_off += (size_t)len;
            c->last_recv_ns = sl_mono_ns();
            if (sl_mqtt_parse(p, (size_t)len, pkt) < 0) {
                snprintf(why, n, "the broker sent a malformed packet (type %d)", p[0] >> 4);
                sl_mqtt_conn_close(c, 0);
                return -1;
            }
            return 1;
        }
        int r = fill(c);
        if (r < 0) {
            snprintf(why, n, "the broker closed the connection");
            sl_mqtt_conn_close(c, 0);
            return -1;
        }
        if (r > 0 || (c->tls && gnutls_record_check_pending(c->tls)))
            continue;
        int ms = left_ms(until);
        if (timeout_ms <= 0 || ms <= 0 || cancelled(c))
            return 0;
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = wake_fd, .events = POLLIN}};
        int pr = poll(p, wake_fd >= 0 ? 2 : 1, ms > 100 ? 100 : ms);
        if (pr == 0 || (pr > 0 && wake_fd >= 0 && (p[1].revents & POLLIN) && !p[0].revents))
            return 0;
        if (pr < 0 && errno != EINTR) {
            snprintf(why, n, "poll: %s", strerror(errno));
            sl_mqtt_conn_close(c, 0);
            return -1;
        }
    }
}

int sl_mqtt_conn_keepalive(struct sl_mqtt_conn *c, unsigned keep_alive)
{
    uint64_t now = sl_mono_ns();
    if (!keep_alive || c->fd < 0)
        return 0;
    if (now - c->last_recv_ns > (uint64_t)keep_alive * 1500000000u) {
        sl_mqtt_conn_close(c, 0);
        return -1;
    }
    if (now - c->last_sent_ns < (uint64_t)keep_alive * 500000000u)
        return 0;
    uint8_t d[2] = {SL_MQTT_PINGREQ << 4, 0};
    return sl_mqtt_conn_send(c, d, 2, 5000);
}

static const char *const g_connack[] = {
    "accepted",           "unacceptable protocol version", "client identifier rejected",
    "server unavailable", "bad user name or password",     "not authorized",
};

int sl_mqtt_conn_open(struct sl_mqtt_conn *c, const json_t *config,
                      const struct sl_mqtt_connect *cp, int timeout_ms, int *session_present,
                      int *refused, char *why, size_t n)
{
    struct sl_mqtt_url u;
    *refused = 0;
    sl_mqtt_conn_close(c, 0);
    if (sl_mqtt_parse_url(json_string_value(json_object_get(config, "broker_url")), &u, why, n) < 0)
        return -1;
    uint64_t until = sl_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    if ((c->fd = tcp_connect(c, &u, until, why, n)) < 0)
        return -1;
    if (u.tls && tls_start(c, json_object_get(config, "tls"), u.host, until, why, n) < 0) {
        sl_mqtt_conn_close(c, 0);
        return -1;
    }
    if (sl_mqtt_put_connect(&c->out, cp) < 0 || sl_mqtt_conn_flush(c, left_ms(until)) < 0) {
        snprintf(why, n, "cannot send CONNECT to %s:%u", u.host, u.port);
        sl_mqtt_conn_close(c, 0);
        return -1;
    }
    struct sl_mqtt_pkt pkt;
    int r = sl_mqtt_conn_next(c, &pkt, left_ms(until), -1, why, n);
    if (r == 0)
        snprintf(why, n, "no CONNACK from %s:%u in time", u.host, u.port);
    if (r > 0 && pkt.type != SL_MQTT_CONNACK) {
        snprintf(why, n, "the broker answered CONNECT with packet type %d", pkt.type);
        r = -1;
    }
    if (r > 0 && pkt.rc) {
        snprintf(why, n, "the broker refused the connection: %s",
                 pkt.rc < 6 ? g_connack[pkt.rc] : "unknown reason");
        *refused = pkt.rc >= 2 && pkt.rc != 3;
        r = -1;
    }
    if (r <= 0) {
        sl_mqtt_conn_close(c, 0);
        return -1;
    }
    *session_present = pkt.session_present;
    c->last_recv_ns = sl_mono_ns();
    return 0;
}
