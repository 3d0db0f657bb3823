/* One HTTP request over a reusable libcurl easy handle: the client side shared by the outbound
 * workers (webhook, per-record S3) and the object-storage sink. Keeps the first max_body bytes
 * of the answer, Retry-After (seconds) and ETag; cancel(arg) returning nonzero aborts the
 * transfer at once (a connector being disabled or stopped). */
#ifndef SL_CONNECTORS_HTTPC_H
#define SL_CONNECTORS_HTTPC_H

#include "core/buf.h"

#include <curl/curl.h>
#include <sluice/connector.h>
#include <stddef.h>

struct sl_httpc_resp {
    struct sl_buf body; /* the first max_body bytes of the answer */
    size_t max_body;
    long retry_after_s;  /* -1 if absent */
    char etag[256];      /* "" if absent */
    char location[1024]; /* Location, "" if absent (a resumable upload's session URI) */
    char range[64];      /* Range, "" if absent (how much of a resumable upload arrived) */
};

void sl_httpc_resp_init(struct sl_httpc_resp *r, size_t max_body);
void sl_httpc_resp_reset(struct sl_httpc_resp *r); /* before the next request */
void sl_httpc_resp_release(struct sl_httpc_resp *r);

/* Resets c and sets it up for method url with headers hdrs and body[0..len) (body may be NULL),
 * within timeout_ms (connecting within 5 s), the answer going to r; does not send it (for a
 * curl multi handle). hdrs, body and r must live until the transfer ends. */
void sl_httpc_prepare(CURL *c, const char *method, const char *url, struct curl_slist *hdrs,
                      const void *body, size_t len, long timeout_ms, struct sl_httpc_resp *r);

/* sl_httpc_prepare, then sends the request now, cancel(arg) checked as it runs. Returns CURLE_OK
 * with *status the HTTP status, or the libcurl error (CURLE_ABORTED_BY_CALLBACK when cancelled).
 */
CURLcode sl_httpc_send(CURL *c, const char *method, const char *url, struct curl_slist *hdrs,
                       const void *body, size_t len, long timeout_ms, struct sl_httpc_resp *r,
                       int (*cancel)(void *arg), void *arg, long *status);

/* The health check of an HTTP target: a TCP (and TLS) connection to the host of url, within
 * timeout_ms; nothing is sent. 0, or -1 with err saying why ("connect to h:p: ..."). */
int sl_httpc_probe(CURL *c, const char *url, long timeout_ms, char *err, size_t errlen);

/* The result of one HTTP attempt for the framework: 2xx OK; a network error or timeout
 * NOT_CONNECTED; 408, 429 and 5xx RETRY; any other status REJECT (the target refuses the
 * records for good). Fills out->status, error ("HTTP 503" or curl's message), excerpt and
 * retry_after_ms from the answer. */
enum sl_result sl_httpc_outcome(CURLcode cc, long status, const struct sl_httpc_resp *r,
                                struct sl_outcome *out);

/* Why the last connection this thread tried was refused by the outbound policy
 * (core/netpolicy.h), or NULL. */
const char *sl_httpc_denied(void);

/* The event body of the SapixDB seed, {"event","agent_id","record_hash","payload","timestamp_ms"},
 * of one record. 0, or -1 if its payload is not valid MessagePack. */
int sl_event_json(struct sl_buf *b, const struct sl_rec *r);
/* The same members without the braces, for bodies that add their own (stdout's strand, seq). */
int sl_event_json_members(struct sl_buf *b, const struct sl_rec *r);

#endif
