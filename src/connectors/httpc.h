/* One HTTP request over a reusable libcurl easy handle: the client side shared by the outbound
 * workers (webhook, per-record S3) and the object-storage sink. Keeps the first max_body bytes
 * of the answer, Retry-After (seconds) and ETag; cancel(arg) returning nonzero aborts the
 * transfer at once (a connector being disabled or stopped). */
#ifndef SL_CONNECTORS_HTTPC_H
#define SL_CONNECTORS_HTTPC_H

#include "core/buf.h"

#include <curl/curl.h>
#include <stddef.h>

struct sl_httpc_resp {
    struct sl_buf body; /* the first max_body bytes of the answer */
    size_t max_body;
    long retry_after_s; /* -1 if absent */
    char etag[256];     /* "" if absent */
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

#endif
