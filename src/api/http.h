/* The HTTP server adapter: the only file that includes microhttpd.h is http.c.
 *
 * Threads: handlers run on our event-loop threads (each drives its own libmicrohttpd daemon). A
 * handler either responds before it returns, or defers its answer to a function the loop runs
 * after its pass (sl_http_defer: the writes of one pass are group-committed on the loop's own
 * thread), or returns without responding; then the connection is suspended (no thread waits)
 * and sl_http_respond() may be called later from any thread (e.g. a strand committer), which
 * resumes it. Every request gets exactly one response. */
#ifndef SL_API_HTTP_H
#define SL_API_HTTP_H

#include "core/buf.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

struct sl_http_server;
struct sl_http_req;

struct sl_http_opts {
    const char *host;          /* IPv4 or IPv6 literal, or "localhost" */
    unsigned port;             /* 0: ephemeral (see sl_http_port) */
    size_t max_body;           /* bytes; larger bodies get 413 */
    unsigned max_conns;        /* concurrent connections */
    unsigned max_conns_per_ip; /* concurrent connections from one client address, 0 = no limit */
    unsigned timeout_s;        /* idle connection timeout */
    unsigned header_timeout_s; /* a new connection's first headers, in total (0: none) */
    unsigned body_timeout_s;   /* a request body, in total from its headers (0: none) */
    unsigned threads;          /* event-loop threads (1 = one epoll thread) */
    /* TLS (PEM text, NULL: plain HTTP): the listener's certificate chain and key, and the CA
     * that client certificates must chain to (mutual TLS; NULL: no client certificate) */
    const char *tls_cert, *tls_key, *tls_client_ca;
    /* called on an HTTP thread when a request is finished (for metrics) */
    void (*on_complete)(struct sl_http_req *req, unsigned status, uint64_t latency_ns, void *ctx);
};

typedef void (*sl_http_handler)(struct sl_http_req *req, void *ctx);

/* Replaces the TLS listener's certificate and key (PEM): handshakes from now on use them. 0, or
 * -1 with why (the old ones stay). */
int sl_http_tls_reload(const char *cert_pem, const char *key_pem, char *why, size_t n);

int sl_http_start(struct sl_http_server **out, const struct sl_http_opts *o, sl_http_handler h,
                  void *ctx, struct sl_err *err);
unsigned sl_http_port(struct sl_http_server *srv);
/* Stops accepting new connections (existing ones finish). */
void sl_http_quiesce(struct sl_http_server *srv);
/* Returns once every event loop has finished a whole pass (and its deferred functions) begun
 * after the call: nothing a handler deferred before the call is still to run. */
void sl_http_drain(struct sl_http_server *srv);
void sl_http_stop(struct sl_http_server *srv);

const char *sl_http_method(const struct sl_http_req *req);
const char *sl_http_path(const struct sl_http_req *req);
/* Query argument (decoded), NULL if absent. */
const char *sl_http_query(struct sl_http_req *req, const char *key);
const char *sl_http_header(struct sl_http_req *req, const char *name);
/* The client's address ("127.0.0.1", "::1"), or "" if unknown. */
void sl_http_client_addr(struct sl_http_req *req, char *out, size_t n);
const uint8_t *sl_http_body(const struct sl_http_req *req, size_t *len);
/* A slot for the route layer (route id for metrics, per-request state). */
void *sl_http_get_user(const struct sl_http_req *req);
void sl_http_set_user(struct sl_http_req *req, void *user, void (*free_user)(void *));
void sl_http_set_route(struct sl_http_req *req, int route);
/* A second slot, for what the request did (the audit record's changes), freed with it. */
void sl_http_set_note(struct sl_http_req *req, void *note, void (*free_note)(void *));
void *sl_http_note(const struct sl_http_req *req);
int sl_http_route(const struct sl_http_req *req);

/* Adds a response header (before sl_http_respond). Copies both strings. */
void sl_http_add_header(struct sl_http_req *req, const char *name, const char *value);
/* In a handler: asks the event loop to run fn(a, b) once after its current pass over the ready
 * connections (the same fn, a, b in one pass run once), before it waits again, and to keep the
 * connection waiting without suspending it; fn (or what it calls) answers the request, on the
 * loop's thread, which sends the answer at once. 0, or -1 when this request cannot be deferred
 * (the caller then arranges an answer from another thread, as without it). */
int sl_http_defer(struct sl_http_req *req, void (*fn)(void *a, void *b), void *a, void *b);
/* Sends the response; takes body's storage (body is left empty). Any thread, exactly once. */
void sl_http_respond(struct sl_http_req *req, unsigned status, const char *content_type,
                     struct sl_buf *body);

#endif
