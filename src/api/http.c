/* libmicrohttpd adapter. See http.h for the threading contract. */
#include "api/http.h"

#include "core/log.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { ST_HANDLING = 0, ST_SUSPENDED = 1, ST_RESPONDED = 2 };

#define MAX_EXTRA_HEADERS 4

struct loop;

struct sl_http_req {
    struct sl_http_server *srv;
    struct loop *loop; /* the event loop serving it */
    struct MHD_Connection *conn;
    const char *method, *path;
    struct sl_buf body;
    int too_big;
    int handled;    /* the handler ran */
    int queued;     /* a response was queued to MHD */
    int state;      /* ST_*, atomic */
    int deferred;   /* answered by a function the loop runs after its pass (sl_http_defer) */
    int in_handler; /* the route handler is running */
    int route;
    uint64_t start_ns;
    unsigned status;
    struct MHD_Response *resp;
    void *user;
    void (*free_user)(void *);
    void *note; /* the audit note of the request (sl_http_set_note) */
    void (*free_note)(void *);
    int nextra;
    char *extra[MAX_EXTRA_HEADERS][2];
};

/* A connection still waiting for its first request's headers (the slowloris watch). */
struct pending {
    struct pending *prev, *next;
    int fd;
    uint64_t deadline_ns;
    int listed;
    int linger; /* answered before its body was read: close lingeringly (linger_start) */
};

/* A function to run after a loop's pass over its ready connections (sl_http_defer). */
struct defer {
    void (*fn)(void *a, void *b);
    void *a, *b;
};

/* One event loop: its own listening socket (SO_REUSEPORT when there are several), its own
 * libmicrohttpd daemon driven from here (no internal thread), its own thread. A pass: wait for
 * events, let the daemon handle every ready connection, then run the deferred functions (the
 * group commit of the writes the pass queued), then the answers go out on the next pass. */
/* A connection answered before its body was read (an early 413), closed the way nginx does: our
 * side half-closed after the answer, the rest of the body read and thrown away for a while, so
 * that a client that sends its whole body before reading (Python's urllib) reads the answer
 * instead of a reset. */
struct lingering {
    int fd;
    uint64_t deadline_ns;
    uint64_t bytes;
};

#define LINGER_MAX 256             /* lingering sockets per loop; more are closed at once */
#define LINGER_NS 5000000000ull    /* the longest a lingering close lasts */
#define LINGER_BYTES (64ull << 20) /* the most body thrown away */

struct loop {
    struct sl_http_server *srv;
    struct MHD_Daemon *d;
    int lfd, ep, efd, mhd_ep;
    struct lingering linger[LINGER_MAX];
    int nlinger;
    unsigned closed;     /* connections closed since the last trim */
    uint64_t trimmed_ns; /* when the heap was last trimmed */
    pthread_t th;
    int started;
    uint64_t passes; /* atomic */
    struct defer *defers;
    size_t ndef, capdef;
    unsigned answered; /* answers queued by the pass's deferred functions (its group commit) */
};

struct sl_http_server {
    struct loop *loops;
    unsigned nloops, port;
    int stopping, quiesce; /* atomic: loops stop / stop accepting */
    pthread_mutex_t bmu;   /* a barrier waits for passes */
    pthread_cond_t bcv;
    int barrier; /* atomic: someone waits on bcv */
    struct sl_http_opts o;
    sl_http_handler handler;
    void *ctx;
    pthread_mutex_t mu; /* guards the pending list */
    struct pending head;
    pthread_t watch;
    int watching, stop;
    pthread_cond_t cv;
};

static struct MHD_Response *make_resp(const char *ctype, struct sl_buf *body,
                                      struct sl_http_req *req)
{
    size_t len = 0;
    char *data = body ? sl_buf_steal(body, &len) : NULL;
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, data ? data : (void *)"", data ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!r) {
        free(data);
        return NULL;
    }
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    for (int i = 0; req && i < req->nextra; i++)
        MHD_add_response_header(r, req->extra[i][0], req->extra[i][1]);
    return r;
}

void sl_http_add_header(struct sl_http_req *req, const char *name, const char *value)
{
    if (req->nextra >= MAX_EXTRA_HEADERS)
        return;
    req->extra[req->nextra][0] = strdup(name);
    req->extra[req->nextra][1] = strdup(value);
    if (req->extra[req->nextra][0] && req->extra[req->nextra][1])
        req->nextra++;
}

static __thread struct loop *tl_loop; /* the loop this thread runs, if any */

static void wake(struct loop *l);

static enum MHD_Result queue(struct sl_http_req *req);

void sl_http_respond(struct sl_http_req *req, unsigned status, const char *content_type,
                     struct sl_buf *body)
{
    req->resp = make_resp(content_type, body, req);
    req->status = status;
    /* Read before the state changes: once it says responded, the loop may send the answer and
     * free req (on its own thread) at any moment. */
    struct loop *l = req->loop;
    struct MHD_Connection *conn = req->conn;
    int direct = req->deferred && !req->in_handler && l == tl_loop;
    int old = __atomic_exchange_n(&req->state, ST_RESPONDED, __ATOMIC_ACQ_REL);
    if (old == ST_SUSPENDED) {
        MHD_resume_connection(conn);
        /* libmicrohttpd's own wake-up can be lost in a loop driven from outside (cleared by a
         * pass that already looked for resumed connections, and its timeout ignores them): ours
         * makes the loop run again (also when the loop itself answered, e.g. a suspended write
         * that its group commit took along) */
        if (l)
            wake(l);
    } else if (direct) {
        queue(req); /* a deferred function on the loop's own thread: straight to the connection */
        l->answered++;
    }
    /* else: answered in the handler (on_request queues it), or a deferred request answered on
     * another thread: the loop finds it on its next pass (the connection waits unsuspended) */
}

int sl_http_defer(struct sl_http_req *req, void (*fn)(void *a, void *b), void *a, void *b)
{
    struct loop *l = req->loop;
    if (!l || l != tl_loop || !req->in_handler)
        return -1;
    for (size_t i = 0; i < l->ndef; i++)
        if (l->defers[i].fn == fn && l->defers[i].a == a && l->defers[i].b == b) {
            req->deferred = 1;
            return 0;
        }
    if (l->ndef == l->capdef) {
        size_t n = l->capdef ? l->capdef * 2 : 16;
        struct defer *d = realloc(l->defers, n * sizeof(*d));
        if (!d)
            return -1;
        l->defers = d;
        l->capdef = n;
    }
    l->defers[l->ndef++] = (struct defer){fn, a, b};
    req->deferred = 1;
    return 0;
}

/* Runs (and forgets) the deferred functions of the pass. Loop thread. */
static void run_defers(struct loop *l)
{
    while (l->ndef) {
        struct defer d = l->defers[--l->ndef];
        d.fn(d.a, d.b);
    }
}

static enum MHD_Result queue(struct sl_http_req *req)
{
    if (req->queued)
        return MHD_YES;
    req->queued = 1;
    struct MHD_Response *resp = req->resp;
    if (!resp) /* out of memory building the answer */
        return MHD_NO;
    /* nothing of req after this call: libmicrohttpd may end the request in it (and on_completed
     * free req) when the answer cannot be started */
    req->resp = NULL;
    enum MHD_Result r = MHD_queue_response(req->conn, req->status, resp);
    MHD_destroy_response(resp);
    return r;
}

static void respond_plain_error(struct sl_http_req *req, unsigned status, const char *code,
                                const char *msg)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"error\":");
    sl_buf_json_str(&b, msg, strlen(msg));
    sl_buf_printf(&b, ",\"code\":\"%s\"}", code);
    sl_http_respond(req, status, "application/json", &b);
}

/* ---- the listener's certificate, swappable (SIGHUP) ---- */

#define MAX_CHAIN 8
struct tls_id {
    gnutls_pcert_st chain[MAX_CHAIN];
    unsigned n;
    gnutls_privkey_t key;
};
static struct tls_id *g_tls; /* the one in use; earlier ones are kept (reloads are rare) */

static struct tls_id *tls_load(const char *cert_pem, const char *key_pem, char *why, size_t n)
{
    struct tls_id *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    gnutls_datum_t c = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t k = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    t->n = MAX_CHAIN;
    int rc = gnutls_pcert_list_import_x509_raw(t->chain, &t->n, &c, GNUTLS_X509_FMT_PEM, 0);
    if (rc >= 0)
        rc = gnutls_privkey_init(&t->key);
    if (rc >= 0)
        rc = gnutls_privkey_import_x509_raw(t->key, &k, GNUTLS_X509_FMT_PEM, NULL, 0);
    if (rc < 0) {
        snprintf(why, n, "TLS: the certificate or key cannot be used: %s", gnutls_strerror(rc));
        free(t); /* a failed load: its parts are not worth freeing one by one */
        return NULL;
    }
    return t;
}

static int tls_cert_cb(gnutls_session_t s, const gnutls_datum_t *req_ca, int nreq,
                       const gnutls_pk_algorithm_t *algos, int nalgos, gnutls_pcert_st **pcert,
                       unsigned int *npcert, gnutls_privkey_t *key)
{
    (void)s, (void)req_ca, (void)nreq, (void)algos, (void)nalgos;
    struct tls_id *t = __atomic_load_n(&g_tls, __ATOMIC_ACQUIRE);
    if (!t)
        return -1;
    *pcert = t->chain;
    *npcert = t->n;
    *key = t->key;
    return 0;
}

int sl_http_tls_reload(const char *cert_pem, const char *key_pem, char *why, size_t n)
{
    struct tls_id *t = tls_load(cert_pem, key_pem, why, n);
    if (!t)
        return -1;
    __atomic_store_n(&g_tls, t, __ATOMIC_RELEASE); /* new handshakes use it */
    return 0;
}

/* Mutual TLS: the client sent a certificate that chains to tls_client_ca, valid now. */
static int client_cert_ok(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (!ci || !ci->tls_session)
        return 0;
    gnutls_session_t s = (gnutls_session_t)ci->tls_session;
    unsigned status = 0, n = 0;
    if (!gnutls_certificate_get_peers(s, &n) || n == 0)
        return 0;
    return gnutls_certificate_verify_peers2(s, &status) == 0 && status == 0;
}

/* ---- deadlines: headers (slowloris) and bodies ---- */

static void unlist(struct pending *p)
{
    if (p->listed) {
        p->prev->next = p->next;
        p->next->prev = p->prev;
        __atomic_store_n(&p->listed, 0, __ATOMIC_RELAXED);
    }
}

static void linger_end(struct loop *l, int i)
{
    epoll_ctl(l->ep, EPOLL_CTL_DEL, l->linger[i].fd, NULL);
    close(l->linger[i].fd);
    l->linger[i] = l->linger[--l->nlinger];
}

/* libmicrohttpd is about to close fd: a duplicate keeps the socket, half-closed after the answer
 * already written, and the loop reads what the client still sends. Loop thread. */
static void linger_start(struct loop *l, int fd)
{
    if (l->nlinger == LINGER_MAX)
        return;
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (d < 0)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = d};
    if (shutdown(d, SHUT_WR) < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, d, &ev) < 0) {
        close(d);
        return;
    }
    l->linger[l->nlinger++] =
        (struct lingering){.fd = d, .deadline_ns = sl_mono_ns() + LINGER_NS, .bytes = 0};
}

/* Reads and throws away what a lingering socket has; ends it at its end of stream, an error,
 * the byte limit or the deadline (fd -1: only the deadlines). Loop thread. */
static void linger_read(struct loop *l, int fd)
{
    static char sink[65536];
    uint64_t now = sl_mono_ns();
    for (int i = l->nlinger - 1; i >= 0; i--) {
        struct lingering *g = &l->linger[i];
        int end = now > g->deadline_ns;
        while (!end && g->fd == fd) {
            ssize_t n = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
            if (n > 0 && (g->bytes += (uint64_t)n) <= LINGER_BYTES)
                continue;
            end = n >= 0 || (errno != EAGAIN && errno != EINTR);
            break;
        }
        if (end)
            linger_end(l, i);
    }
}

/* MHD tells of each connection: a new one waits for its headers on the list, a closed one leaves
 * it (under the mutex, before MHD closes its socket: the watch never touches a reused fd). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct sl_http_server *srv = cls;
    struct pending *p = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        p = ci ? calloc(1, sizeof(*p)) : NULL;
        if (!p)
            return;
        p->fd = ci->connect_fd;
        p->deadline_ns = sl_mono_ns() + (uint64_t)srv->o.header_timeout_s * 1000000000ull;
        pthread_mutex_lock(&srv->mu);
        p->next = srv->head.next;
        p->prev = &srv->head;
        p->next->prev = p;
        srv->head.next = p;
        p->listed = 1;
        pthread_mutex_unlock(&srv->mu);
        *socket_context = p;
    } else if (p) {
        pthread_mutex_lock(&srv->mu);
        unlist(p);
        pthread_mutex_unlock(&srv->mu);
        if (p->linger && tl_loop)
            linger_start(tl_loop, p->fd);
        if (tl_loop)
            tl_loop->closed++;
        free(p);
        *socket_context = NULL;
    }
}

/* The connection is answered before its body is read: when it closes, it lingers (plain TCP;
 * a TLS connection has no way to read after its session ends). */
static void mark_linger(struct sl_http_server *srv, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct pending *p = ci ? ci->socket_context : NULL;
    if (p && !srv->o.tls_cert)
        p->linger = 1;
}

/* The first request's headers are in: the connection leaves the watch. */
static void headers_in(struct sl_http_server *srv, struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct pending *p = ci ? ci->socket_context : NULL;
    if (!p || !__atomic_load_n(&p->listed, __ATOMIC_RELAXED))
        return;
    pthread_mutex_lock(&srv->mu);
    unlist(p);
    pthread_mutex_unlock(&srv->mu);
}

/* Twice a second: a connection past its header deadline is shut down; MHD then sees the end of
 * its stream and closes it. */
static void *watch(void *arg)
{
    struct sl_http_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    while (!srv->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 500000000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&srv->cv, &srv->mu, &ts);
        uint64_t now = sl_mono_ns();
        for (struct pending *p = srv->head.next; p != &srv->head;) {
            struct pending *next = p->next;
            if (now > p->deadline_ns) {
                sl_debug("http: a connection sent no complete request headers within %u s: closed",
                         srv->o.header_timeout_s);
                shutdown(p->fd, SHUT_RDWR);
                unlist(p);
            }
            p = next;
        }
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    struct sl_http_server *srv = cls;
    struct sl_http_req *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof(*req));
        if (!req)
            return MHD_NO;
        req->srv = srv;
        req->loop = tl_loop;
        req->conn = conn;
        req->method = method;
        req->path = url;
        req->route = -1;
        req->start_ns = sl_mono_ns();
        sl_buf_init(&req->body, srv->o.max_body);
        *con_cls = req;
        headers_in(srv, conn);
        if (srv->o.tls_client_ca && !client_cert_ok(conn)) {
            req->handled = 1;
            respond_plain_error(req, 403, "client_certificate_required",
                                "TLS: a client certificate issued by the configured CA "
                                "(tls_client_ca) is required");
            return queue(req);
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        uint64_t n;
        if (cl && sl_parse_u64(cl, &n) == 0 && n > srv->o.max_body) {
            /* Answer at once, without reading the body; MHD closes the connection after. */
            req->too_big = 1;
            req->handled = 1;
            char msg[128];
            snprintf(msg, sizeof(msg), "body: request body is larger than the limit of %zu bytes",
                     srv->o.max_body);
            respond_plain_error(req, 413, "body_too_large", msg);
            mark_linger(srv, conn);
            return queue(req);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (req->queued) { /* answered early (413): discard the rest */
            *upload_size = 0;
            return MHD_YES;
        }
        if (!req->too_big && sl_buf_append(&req->body, upload_data, *upload_size) < 0)
            req->too_big = 1;
        *upload_size = 0;
        if (srv->o.body_timeout_s &&
            sl_mono_ns() - req->start_ns > (uint64_t)srv->o.body_timeout_s * 1000000000ull) {
            /* a body sent too slowly: the connection is closed (libmicrohttpd does not send an
             * answer queued before the body is complete), nothing of it is handled */
            sl_debug("http: a request body was not received within %u s: connection closed",
                     srv->o.body_timeout_s);
            return MHD_NO;
        }
        return MHD_YES;
    }
    if (req->queued)
        return MHD_YES;
    if (!req->handled) {
        req->handled = 1;
        if (req->too_big) {
            char msg[128];
            snprintf(msg, sizeof(msg), "body: request body is larger than the limit of %zu bytes",
                     srv->o.max_body);
            respond_plain_error(req, 413, "body_too_large", msg);
        } else {
            req->in_handler = 1;
            srv->handler(req, srv->ctx);
            req->in_handler = 0;
        }
        if (__atomic_load_n(&req->state, __ATOMIC_ACQUIRE) == ST_RESPONDED)
            return queue(req);
        if (req->deferred) /* answered after this pass: libmicrohttpd calls again until then */
            return MHD_YES;
        MHD_suspend_connection(conn);
        int expect = ST_HANDLING;
        if (!__atomic_compare_exchange_n(&req->state, &expect, ST_SUSPENDED, 0, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE))
            MHD_resume_connection(conn); /* the answer came while we were suspending */
        return MHD_YES;
    }
    /* resumed: the answer is ready */
    if (__atomic_load_n(&req->state, __ATOMIC_ACQUIRE) == ST_RESPONDED)
        return queue(req);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct sl_http_server *srv = cls;
    struct sl_http_req *req = *con_cls;
    if (!req)
        return;
    if (req->deferred && __atomic_load_n(&req->state, __ATOMIC_ACQUIRE) != ST_RESPONDED &&
        req->loop && req->loop == tl_loop)
        run_defers(req->loop); /* its answer is made before it is freed */
    if (srv->o.on_complete && req->handled)
        srv->o.on_complete(req, req->status, sl_mono_ns() - req->start_ns, srv->ctx);
    if (req->resp)
        MHD_destroy_response(req->resp);
    if (req->free_user)
        req->free_user(req->user);
    if (req->free_note)
        req->free_note(req->note);
    for (int i = 0; i < req->nextra; i++) {
        free(req->extra[i][0]);
        free(req->extra[i][1]);
    }
    sl_buf_release(&req->body);
    free(req);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    sl_debug("http: %s", line);
}

/* ---- the event loops ---- */

static void wake(struct loop *l)
{
    uint64_t one = 1;
    ssize_t w = write(l->efd, &one, sizeof(one));
    (void)w; /* a full counter wakes the loop as well */
}

static void *loop_main(void *arg)
{
    struct loop *l = arg;
    struct sl_http_server *srv = l->srv;
    int quiesced = 0;
    tl_loop = l;
    while (!__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE)) {
        MHD_UNSIGNED_LONG_LONG to = 1000;
        if (MHD_get_timeout(l->d, &to) != MHD_YES || to > 1000)
            to = 1000;
        if (l->ndef)
            to = 0; /* requests read after the last group commit wait for the next one */
        if (__atomic_load_n(&srv->barrier, __ATOMIC_ACQUIRE))
            to = 0; /* someone waits for whole passes (quiesce, drain): one wake-up ends only
                     * the pass it lands in; the next must not sleep (a stop took 2 s) */
        struct epoll_event ev[16];
        int n = epoll_wait(l->ep, ev, 16, (int)to);
        for (int i = 0; i < n; i++)
            if (ev[i].data.fd == l->efd) {
                uint64_t v;
                ssize_t r = read(l->efd, &v, sizeof(v));
                (void)r;
            } else if (ev[i].data.fd != l->mhd_ep) {
                linger_read(l, ev[i].data.fd);
            }
        if (l->nlinger)
            linger_read(l, -1);
        MHD_run(l->d);
        l->answered = 0;
        run_defers(l);
        if (l->answered) {
            /* The group commit's answers go out now, not after the next wait: a client answered
             * here sends its next request while the next commit is being written, so it joins
             * that commit (as in the Redis beforeSleep loop) instead of the one after. The
             * requests that have arrived meanwhile are read too: their commit is the next pass,
             * which does not wait (ndef). */
            MHD_run(l->d);
        }
        if (!quiesced && __atomic_load_n(&srv->quiesce, __ATOMIC_ACQUIRE)) {
            MHD_socket fd = MHD_quiesce_daemon(l->d);
            if (fd != MHD_INVALID_SOCKET)
                close(fd);
            quiesced = 1;
        }
        if (l->closed >= 256) {
            /* Many connections went: their 16 KiB pools are free heap that glibc keeps unless
             * asked; at most once a second, give it back, so the RSS follows the connections. */
            uint64_t now = sl_mono_ns();
            if (now - l->trimmed_ns > 1000000000ull) {
                malloc_trim(0);
                l->closed = 0;
                l->trimmed_ns = now;
            }
        }
        __atomic_add_fetch(&l->passes, 1, __ATOMIC_RELEASE);
        if (__atomic_load_n(&srv->barrier, __ATOMIC_ACQUIRE)) {
            pthread_mutex_lock(&srv->bmu);
            pthread_cond_broadcast(&srv->bcv);
            pthread_mutex_unlock(&srv->bmu);
        }
    }
    run_defers(l);
    return NULL;
}

/* Returns once every loop has finished a pass that started after the call. */
static void barrier(struct sl_http_server *srv)
{
    uint64_t seen[64];
    pthread_mutex_lock(&srv->bmu);
    __atomic_add_fetch(&srv->barrier, 1, __ATOMIC_ACQ_REL);
    for (unsigned i = 0; i < srv->nloops; i++) {
        seen[i] = __atomic_load_n(&srv->loops[i].passes, __ATOMIC_ACQUIRE);
        wake(&srv->loops[i]);
    }
    for (unsigned i = 0; i < srv->nloops; i++)
        while (srv->loops[i].started &&
               __atomic_load_n(&srv->loops[i].passes, __ATOMIC_ACQUIRE) < seen[i] + 2)
            pthread_cond_wait(&srv->bcv, &srv->bmu); /* +2: the pass running at the call ends */
    __atomic_sub_fetch(&srv->barrier, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&srv->bmu);
}

/* A listening socket on addr (SO_REUSEPORT: the loops share the port), or -1. */
static int listen_on(const struct sockaddr *sa, socklen_t salen, int reuseport)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (sa->sa_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if ((reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, sa, salen) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void free_server(struct sl_http_server *srv)
{
    for (unsigned i = 0; i < srv->nloops; i++) {
        struct loop *l = &srv->loops[i];
        if (l->d)
            MHD_stop_daemon(l->d); /* closes its listening socket (if not quiesced) */
        else if (l->lfd >= 0)
            close(l->lfd);
        if (l->ep >= 0)
            close(l->ep);
        if (l->efd >= 0)
            close(l->efd);
        while (l->nlinger)
            linger_end(l, 0);
        free(l->defers);
    }
    free(srv->loops);
    pthread_mutex_destroy(&srv->bmu);
    pthread_cond_destroy(&srv->bcv);
    pthread_mutex_destroy(&srv->mu);
    pthread_cond_destroy(&srv->cv);
    free(srv);
}

int sl_http_start(struct sl_http_server **out, const struct sl_http_opts *o, sl_http_handler h,
                  void *ctx, struct sl_err *err)
{
    struct sl_http_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    srv->o = *o;
    srv->handler = h;
    srv->ctx = ctx;
    struct sockaddr_in6 a6;
    struct sockaddr_in a4;
    struct sockaddr *sa;
    socklen_t salen;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
    const char *host = strcmp(o->host, "localhost") == 0 ? "127.0.0.1" : o->host;
    memset(&a4, 0, sizeof(a4));
    memset(&a6, 0, sizeof(a6));
    if (inet_pton(AF_INET, host, &a4.sin_addr) == 1) {
        a4.sin_family = AF_INET;
        a4.sin_port = htons((uint16_t)o->port);
        sa = (struct sockaddr *)&a4;
        salen = sizeof(a4);
    } else if (inet_pton(AF_INET6, host, &a6.sin6_addr) == 1) {
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons((uint16_t)o->port);
        sa = (struct sockaddr *)&a6;
        salen = sizeof(a6);
        flags |= MHD_USE_IPv6;
    } else {
        free(srv);
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "listen: '%s' is not an IPv4 or IPv6 address", o->host);
    }
    /* TLS 1.2 and 1.3 only; with a client CA, a client certificate is asked for and checked
     * before any request is served (on_request) */
    struct MHD_OptionItem tls[6];
    int nt = 0;
    if (o->tls_cert) {
        char why[300];
        if (sl_http_tls_reload(o->tls_cert, o->tls_key, why, sizeof(why)) < 0) {
            free(srv);
            return sl_err_set(err, SL_E_INVAL, "invalid_config", "%s", why);
        }
        flags |= MHD_USE_TLS;
        tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_CERT_CALLBACK, 0, (void *)tls_cert_cb};
        tls[nt++] = (struct MHD_OptionItem){
            MHD_OPTION_HTTPS_PRIORITIES, 0,
            (void *)"NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:%SERVER_PRECEDENCE"};
        if (o->tls_client_ca)
            tls[nt++] =
                (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, (void *)o->tls_client_ca};
    }
    tls[nt] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    pthread_mutex_init(&srv->mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    pthread_mutex_init(&srv->bmu, NULL);
    pthread_cond_init(&srv->bcv, NULL);
    srv->head.next = srv->head.prev = &srv->head;
    unsigned n = o->threads ? o->threads : 1;
    if (n > 64)
        n = 64;
    srv->loops = calloc(n, sizeof(*srv->loops));
    if (!srv->loops) {
        free_server(srv);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    srv->nloops = n;
    for (unsigned i = 0; i < n; i++)
        srv->loops[i] = (struct loop){.srv = srv, .lfd = -1, .ep = -1, .efd = -1};
    for (unsigned i = 0; i < n; i++) {
        struct loop *l = &srv->loops[i];
        if ((l->lfd = listen_on(sa, salen, n > 1)) < 0) {
            free_server(srv);
            return sl_err_sys(err, SL_E_IO, "cannot listen on %s:%u", o->host, o->port);
        }
        if (i == 0) { /* an ephemeral port: the others bind the one it got */
            struct sockaddr_storage ss;
            socklen_t sl = sizeof(ss);
            getsockname(l->lfd, (struct sockaddr *)&ss, &sl);
            srv->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                       : ((struct sockaddr_in *)&ss)->sin_port);
            a4.sin_port = a6.sin6_port = htons((uint16_t)srv->port);
        }
        l->d = MHD_start_daemon(
            flags, (uint16_t)srv->port, NULL, NULL, on_request, srv, MHD_OPTION_ARRAY, tls,
            MHD_OPTION_LISTEN_SOCKET, l->lfd, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            o->max_conns_per_ip, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
            MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_CONNECTION_LIMIT,
            o->max_conns, /* per loop: the kernel spreads connections over them unevenly */
            MHD_OPTION_CONNECTION_TIMEOUT, o->timeout_s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
            /* libmicrohttpd zeroes a connection's whole pool after every keep-alive request: 16
             * KiB instead of the default 32 KiB halves that cost; headers fit, bodies stream. */
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_END);
        const union MHD_DaemonInfo *di =
            l->d ? MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
        struct epoll_event ev = {.events = EPOLLIN};
        if (!di || (l->ep = epoll_create1(EPOLL_CLOEXEC)) < 0 ||
            (l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
            (ev.data.fd = l->mhd_ep = di->epoll_fd,
             epoll_ctl(l->ep, EPOLL_CTL_ADD, di->epoll_fd, &ev)) < 0 ||
            (ev.data.fd = l->efd, epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &ev)) < 0) {
            free_server(srv);
            return sl_err_sys(err, SL_E_IO, "cannot start the HTTP server on %s:%u", o->host,
                              o->port);
        }
    }
    for (unsigned i = 0; i < n; i++) {
        if (pthread_create(&srv->loops[i].th, NULL, loop_main, &srv->loops[i]) != 0) {
            sl_http_stop(srv);
            return sl_err_sys(err, SL_E_IO, "cannot start an HTTP thread");
        }
        srv->loops[i].started = 1;
        sl_thread_name(srv->loops[i].th, "sl-http%u", i);
    }
    if (o->header_timeout_s && pthread_create(&srv->watch, NULL, watch, srv) == 0) {
        srv->watching = 1;
        sl_thread_name(srv->watch, "sl-http-watch");
    }
    *out = srv;
    return 0;
}

unsigned sl_http_port(struct sl_http_server *srv)
{
    return srv->port;
}

void sl_http_quiesce(struct sl_http_server *srv)
{
    __atomic_store_n(&srv->quiesce, 1, __ATOMIC_RELEASE);
    barrier(srv);
}

void sl_http_drain(struct sl_http_server *srv)
{
    barrier(srv);
}

void sl_http_stop(struct sl_http_server *srv)
{
    if (!srv)
        return;
    if (srv->watching) {
        pthread_mutex_lock(&srv->mu);
        srv->stop = 1;
        pthread_cond_signal(&srv->cv);
        pthread_mutex_unlock(&srv->mu);
        pthread_join(srv->watch, NULL);
        srv->watching = 0;
    }
    __atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < srv->nloops; i++)
        if (srv->loops[i].started) {
            wake(&srv->loops[i]);
            pthread_join(srv->loops[i].th, NULL);
            srv->loops[i].started = 0;
        }
    free_server(srv);
}

const char *sl_http_method(const struct sl_http_req *req)
{
    return req->method;
}

const char *sl_http_path(const struct sl_http_req *req)
{
    return req->path;
}

const char *sl_http_query(struct sl_http_req *req, const char *key)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *sl_http_header(struct sl_http_req *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

void sl_http_client_addr(struct sl_http_req *req, char *out, size_t n)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = 0;
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
                  (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, out,
                  (socklen_t)n);
}

const uint8_t *sl_http_body(const struct sl_http_req *req, size_t *len)
{
    *len = req->body.len;
    return req->body.data ? req->body.data : (const uint8_t *)"";
}

void *sl_http_get_user(const struct sl_http_req *req)
{
    return req->user;
}

void sl_http_set_note(struct sl_http_req *req, void *note, void (*free_note)(void *))
{
    if (req->free_note)
        req->free_note(req->note);
    req->note = note;
    req->free_note = free_note;
}

void *sl_http_note(const struct sl_http_req *req)
{
    return req->note;
}

void sl_http_set_user(struct sl_http_req *req, void *user, void (*free_user)(void *))
{
    req->user = user;
    req->free_user = free_user;
}

void sl_http_set_route(struct sl_http_req *req, int route)
{
    req->route = route;
}

int sl_http_route(const struct sl_http_req *req)
{
    return req->route;
}
