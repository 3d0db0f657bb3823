#include "engine/outbound.h"

#include "connectors/httpc.h"
#include "connectors/objstore/objstore.h"
#include "connectors/pg/cdc.h"
#include "connectors/s3/sigv4.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/meta.h"
#include "formats/json_mp.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STRANDS 64
#define EXCERPT 256

struct worker {
    struct worker *next;
    struct sl_engine *e;
    struct sl_outbound_def def; /* owns config and strands */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;     /* under mu; also read by the curl progress callback */
    int finished; /* atomic: the thread has returned */
    /* circuit breaker (worker thread only) */
    enum { BR_CLOSED, BR_OPEN, BR_HALF_OPEN } breaker;
    uint64_t open_until_ns;
    long long consecutive_failures, half_open_successes;
    /* object_storage (worker thread only, but drain is set by the engine thread: atomic) */
    struct sl_os_sink *os; /* NULL for the per-record kinds */
    int drain;             /* the server is stopping: write what is pending first */
    int final;             /* the shutdown flush: one attempt per batch, not aborted by stop */
    uint64_t final_until;  /* ... but aborted at this monotonic time */
};

struct sl_engine {
    struct sl_store *store;
    struct sl_registry *reg;
    struct sl_meta *meta;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int poked, stopping;
    pthread_t th;
    struct worker *live, *retired; /* engine thread only */
};

/* ---- worker ---- */

static void set_breaker(struct worker *w, int state)
{
    static const char *const names[] = {"closed", "open", "half_open"};
    if ((int)w->breaker != state)
        sl_info("connector %s: circuit breaker %s", w->def.id, names[state]);
    w->breaker = state;
    sl_registry_set_breaker(w->e->reg, w->def.id, names[state]);
}

static int stopped(struct worker *w)
{
    return __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE);
}

/* Sleeps ms milliseconds unless told to stop; returns 1 if stopped. */
static int nap(struct worker *w, uint64_t ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += (time_t)(ms / 1000);
    dl.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &dl) != ETIMEDOUT)
        ;
    int s = w->stop;
    pthread_mutex_unlock(&w->mu);
    return s;
}

static long long cfg_int(const json_t *cfg, const char *obj, const char *key)
{
    const json_t *o = obj ? json_object_get(cfg, obj) : cfg;
    return json_integer_value(json_object_get(o, key));
}

static const char *cfg_str(const json_t *cfg, const char *key)
{
    return json_string_value(json_object_get(cfg, key));
}

/* The event body of the seed: {"event","agent_id","record_hash","payload","timestamp_ms"}. */
static int event_json(struct sl_buf *b, const struct sl_record *r)
{
    sl_buf_printf(b, "{\"event\":\"%s\",\"agent_id\":",
                  (r->flags & SL_FLAG_TOMBSTONE) ? "tombstone" : "write");
    sl_buf_json_str(b, r->source, r->source_len);
    sl_buf_puts(b, ",\"record_hash\":\"");
    sl_buf_hex(b, r->hash, SL_HASH_LEN);
    sl_buf_puts(b, "\",\"payload\":");
    size_t used;
    struct sl_jerr je;
    if (sl_mp_to_json(r->payload, r->payload_len, &used, b, 200, &je) < 0)
        return -1;
    sl_buf_printf(b, ",\"timestamp_ms\":%llu}", (unsigned long long)r->timestamp_ms);
    return b->failed ? -1 : 0;
}

static int cancelled(void *w)
{
    return stopped(w); /* a disabled connector's request in flight stops at once */
}

/* One HTTP attempt. Returns the status (>= 100), or 0 for a network error (err filled). */
static long http_send(struct worker *w, CURL *c, const char *method, const char *url,
                      struct curl_slist *hdrs, const struct sl_buf *body, struct sl_httpc_resp *r,
                      char *err, size_t errlen)
{
    long status;
    CURLcode cc =
        sl_httpc_send(c, method, url, hdrs, body->data, body->len,
                      (long)cfg_int(w->def.config, NULL, "timeout_ms"), r, cancelled, w, &status);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_easy_strerror(cc));
        return 0;
    }
    snprintf(err, errlen, "HTTP %ld", status);
    return status;
}

static int transient(long status)
{
    return status == 0 || status == 408 || status == 429 || status >= 500;
}

/* Builds the request for records [from, from+n) of strand s: method, URL, headers, body. */
static int build_request(struct worker *w, struct sl_strand *s, uint64_t from, uint64_t n,
                         char *method, char *url, size_t urllen, struct curl_slist **hdrs,
                         struct sl_buf *body, struct sl_record *first)
{
    const json_t *cfg = w->def.config;
    for (uint64_t i = 0; i < n; i++) {
        struct sl_record r;
        if (sl_strand_read(s, from + i, &r) != 0)
            return -1;
        if (i == 0)
            *first = r;
        if (n > 1)
            sl_buf_putc(body, i ? ',' : '[');
        if (event_json(body, &r) < 0)
            return -1;
    }
    if (n > 1)
        sl_buf_putc(body, ']');
    char hash[SL_HASH_LEN * 2 + 1];
    sl_hex_encode(hash, first->hash, SL_HASH_LEN);
    char h[4200];
    *hdrs = curl_slist_append(*hdrs, "Content-Type: application/json");
    *hdrs = curl_slist_append(*hdrs, "Expect:");
    if (strcmp(w->def.kind, "webhook") == 0) {
        strcpy(method, "POST");
        snprintf(url, urllen, "%s", cfg_str(cfg, "url"));
        snprintf(h, sizeof(h), "Idempotency-Key: %s", hash);
        *hdrs = curl_slist_append(*hdrs, h);
        if (cfg_str(cfg, "secret")) {
            snprintf(h, sizeof(h), "Authorization: Bearer %s", cfg_str(cfg, "secret"));
            *hdrs = curl_slist_append(*hdrs, h);
        }
        return 0;
    }
    /* s3: PUT {endpoint}/{bucket}/{prefix}/{record_hash}.json, path-style */
    strcpy(method, "PUT");
    const char *ep = cfg_str(cfg, "endpoint"), *prefix = cfg_str(cfg, "prefix");
    size_t eplen = strlen(ep);
    while (eplen && ep[eplen - 1] == '/')
        eplen--;
    char path[2048];
    snprintf(path, sizeof(path), "/%s/%s%s%s.json", cfg_str(cfg, "bucket"), prefix ? prefix : "",
             prefix && *prefix && prefix[strlen(prefix) - 1] != '/' ? "/" : "", hash);
    snprintf(url, urllen, "%.*s%s", (int)eplen, ep, path);
    if (cfg_str(cfg, "auth_header")) {
        snprintf(h, sizeof(h), "Authorization: %s", cfg_str(cfg, "auth_header"));
        *hdrs = curl_slist_append(*hdrs, h);
    } else if (cfg_str(cfg, "access_key_id")) {
        const char *hs = strstr(ep, "://") + 3;
        char host[512];
        size_t hl = strcspn(hs, "/");
        snprintf(host, sizeof(host), "%.*s", (int)(hl < sizeof(host) ? hl : sizeof(host) - 1), hs);
        const char *const extra[][2] = {{"Content-Type", "application/json"}};
        struct sl_sigv4_req rq = {.method = "PUT",
                                  .host = host,
                                  .path = path,
                                  .payload = body->data,
                                  .payload_len = body->len,
                                  .region = cfg_str(cfg, "region"),
                                  .service = "s3",
                                  .now = time(NULL),
                                  .extra_headers = extra,
                                  .n_extra = 1};
        struct sl_sigv4_creds cr = {.access_key_id = cfg_str(cfg, "access_key_id"),
                                    .secret_access_key = cfg_str(cfg, "secret_access_key"),
                                    .session_token = cfg_str(cfg, "session_token")};
        struct sl_buf sig;
        sl_buf_init(&sig, 0);
        if (sl_sigv4_sign(&rq, &cr, &sig, NULL) < 0) {
            sl_buf_release(&sig);
            return -1;
        }
        for (char *line = (char *)sig.data, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = 0;
            *hdrs = curl_slist_append(*hdrs, line);
        }
        sl_buf_release(&sig);
    }
    return 0;
}

static void dead_letter(struct worker *w, struct sl_strand *s, uint64_t from, uint64_t n,
                        int attempts, long status, const char *error, const struct sl_httpc_resp *r)
{
    for (uint64_t i = 0; i < n; i++) {
        struct sl_record rec;
        char hash[SL_HASH_LEN * 2 + 1] = "";
        if (sl_strand_read(s, from + i, &rec) == 0)
            sl_hex_encode(hash, rec.hash, SL_HASH_LEN);
        struct sl_meta_dead_letter d = {
            .connector_id = w->def.id,
            .strand = sl_strand_name(s),
            .record_hash = hash,
            .last_error = error,
            .response_excerpt = r->body.data ? (const char *)r->body.data : "",
            .seq = from + i,
            .at_ms = sl_now_ms(),
            .attempts = attempts,
            .last_status = (int)status,
        };
        struct sl_err err = {0};
        if (sl_meta_add_dead_letter(w->e->meta, &d, &err) < 0)
            sl_warn("connector %s: %s", w->def.id, err.msg);
    }
    sl_warn("connector %s: %llu record(s) from %s seq %llu dead-lettered after %d attempt(s): %s",
            w->def.id, (unsigned long long)n, sl_strand_name(s), (unsigned long long)from, attempts,
            error);
}

/* ---- object_storage: the batching sink (src/connectors/objstore) on the same delivery rules ----
 */

static int os_cancel(void *arg)
{
    struct worker *w = arg;
    return w->final ? sl_mono_ns() > w->final_until : stopped(w);
}

/* One attempt at storing a batch's files (those not stored by an earlier attempt). */
static long os_store(struct worker *w, CURL *c, struct sl_os_batch *b, struct sl_httpc_resp *r,
                     char *err, size_t errlen)
{
    struct sl_os_io io = {.curl = c,
                          .cancel = os_cancel,
                          .arg = w,
                          .timeout_ms = (long)cfg_int(w->def.config, NULL, "timeout_ms")};
    struct sl_os_result res;
    long st = sl_os_batch_store(b, &io, &res);
    sl_registry_note_files(w->e->reg, w->def.id, res.files, res.bytes);
    snprintf(err, errlen, "%s", res.error);
    r->retry_after_s = res.retry_after_s;
    sl_buf_puts(&r->body, res.excerpt);
    return st;
}

/* Whether a batch of strand s from cur is due now, and its size *n. A batch is planned before its
 * upload starts: its end is stored beside the cursor (as the cursor of "~end:<strand>", a name no
 * strand can have) and, until the cursor passes it, the same range is stored again after a retry,
 * restart or crash, so its files get the same keys and no record lands in two files. A new plan
 * is made only once the cursor of the last one is durable. Otherwise the flush rule decides
 * (objstore.h); *wait_ms is lowered to when it will be due. */
static int os_due(struct worker *w, struct sl_strand *s, uint64_t cur, uint64_t head,
                  uint64_t *plan, uint64_t *since_ns, int dirty, uint64_t *n, uint64_t *wait_ms)
{
    if (*plan > cur && *plan <= head) {
        *n = *plan - cur;
        return 1;
    }
    if (dirty) /* the cursor of the last batch is not durable yet: no new plan */
        return 0;
    uint64_t now = sl_mono_ns(), wait = 0;
    if (!*since_ns)
        *since_ns = now;
    struct sl_record first;
    uint64_t first_ts = sl_strand_read(s, cur, &first) == 0 ? first.timestamp_ms : sl_now_ms();
    if (!w->final && !sl_os_flush_due(w->os, head - cur, first_ts, sl_now_ms(),
                                      (now - *since_ns) / 1000000, &wait)) {
        if (wait < *wait_ms)
            *wait_ms = wait;
        return 0;
    }
    char key[SL_STRAND_NAME_MAX + 8];
    snprintf(key, sizeof(key), "~end:%s", sl_strand_name(s));
    struct sl_err err = {0};
    if (sl_meta_set_cursor(w->e->meta, w->def.id, key, cur + *n, &err) < 0) {
        sl_warn("connector %s: %s", w->def.id, err.msg);
        return 0;
    }
    *plan = cur + *n;
    *since_ns = 0;
    return 1;
}

static uint64_t os_plan_of(struct worker *w, struct sl_strand *s)
{
    char key[SL_STRAND_NAME_MAX + 8];
    uint64_t end = 0;
    snprintf(key, sizeof(key), "~end:%s", sl_strand_name(s));
    return sl_meta_get_cursor(w->e->meta, w->def.id, key, &end) == 0 ? end : 0;
}

/* Delivers records [from, from+n): 0 when accepted or dead-lettered (the cursor may advance),
 * 1 when told to stop first, 2 when the connector gave up (max_consecutive_failures). */
static int deliver(struct worker *w, CURL *c, struct sl_strand *s, uint64_t from, uint64_t n)
{
    const json_t *cfg = w->def.config;
    long long initial = cfg_int(cfg, "retry", "initial_backoff_ms");
    long long maxb = cfg_int(cfg, "retry", "max_backoff_ms");
    long long max_retries = cfg_int(cfg, "retry", "max_retries");
    char method[8], url[4300], error[256] = "";
    struct curl_slist *hdrs = NULL;
    struct sl_buf body;
    sl_buf_init(&body, 0);
    struct sl_record first;
    struct sl_httpc_resp r;
    sl_httpc_resp_init(&r, EXCERPT);
    int rc = 0, attempts = 0;
    long status = 0;
    struct sl_os_batch *ob = NULL;
    struct sl_err oerr = {0};
    if (w->os ? sl_os_batch_prepare(w->os, s, from, n, &ob, &oerr) < 0
              : build_request(w, s, from, n, method, url, sizeof(url), &hdrs, &body, &first) < 0) {
        dead_letter(w, s, from, n, 0, 0,
                    w->os ? oerr.msg : "the record cannot be turned into a request", &r);
        goto out;
    }
    long long threshold = cfg_int(cfg, "circuit_breaker", "failure_threshold");
    long long reset_s = cfg_int(cfg, "circuit_breaker", "reset_timeout_secs");
    long long close_after = cfg_int(cfg, "circuit_breaker", "success_threshold");
    long long give_up = cfg_int(cfg, NULL, "max_consecutive_failures");
    for (;;) {
        if (stopped(w) && !w->final) {
            rc = 1;
            break;
        }
        if (w->breaker == BR_OPEN) { /* open: nothing is sent until the reset timeout */
            uint64_t now = sl_mono_ns();
            if (now < w->open_until_ns && nap(w, (w->open_until_ns - now) / 1000000 + 1)) {
                rc = 1;
                break;
            }
            w->half_open_successes = 0;
            set_breaker(w, BR_HALF_OPEN);
        }
        sl_httpc_resp_reset(&r);
        attempts++;
        status = ob ? os_store(w, c, ob, &r, error, sizeof(error))
                    : http_send(w, c, method, url, hdrs, &body, &r, error, sizeof(error));
        if (stopped(w) && !w->final) {
            rc = 1; /* aborted: not delivered, the cursor stays */
            break;
        }
        if (status >= 200 && status < 300) {
            w->consecutive_failures = 0;
            if (w->breaker == BR_HALF_OPEN && ++w->half_open_successes >= close_after)
                set_breaker(w, BR_CLOSED);
            uint64_t now = sl_now_ms();
            for (uint64_t i = 0; i < n; i++)
                sl_registry_note_event(w->e->reg, w->def.id, now);
            sl_registry_note_delivery(w->e->reg, w->def.id, n, 0, attempts > 1 ? n : 0, 0);
            break;
        }
        sl_registry_note_delivery(w->e->reg, w->def.id, 0, n, 0, 0);
        if (w->final) {
            rc = 1; /* the shutdown flush makes one attempt; the cursor stays */
            break;
        }
        if (transient(status)) {
            w->consecutive_failures++;
            if (give_up > 0 && w->consecutive_failures >= give_up) {
                char msg[400];
                snprintf(msg, sizeof(msg), "gave up after %lld consecutive failures: %s",
                         w->consecutive_failures, error);
                sl_error("connector %s: %s; POST /v1/connectors/%s/restart to resume", w->def.id,
                         msg, w->def.id);
                sl_registry_set_failed(w->e->reg, w->def.id, msg);
                rc = 2; /* the cursor stays: the batch is retried after a restart */
                break;
            }
            if (w->breaker == BR_HALF_OPEN ||
                (w->breaker == BR_CLOSED && w->consecutive_failures >= threshold)) {
                w->open_until_ns = sl_mono_ns() + (uint64_t)reset_s * 1000000000u;
                set_breaker(w, BR_OPEN);
                continue; /* wait in the open state, then one trial request */
            }
        }
        if (!transient(status) || (max_retries >= 0 && attempts > max_retries)) {
            uint64_t kept = ob ? sl_os_batch_stored(ob) : 0; /* files already stored stay */
            dead_letter(w, s, from + kept, n - kept, attempts, status, error, &r);
            sl_registry_note_delivery(w->e->reg, w->def.id, kept, 0, 0, n - kept);
            break;
        }
        /* exponential backoff with full jitter; Retry-After wins when it asks for longer */
        uint64_t delay = sl_backoff_ms((uint64_t)initial, (uint64_t)maxb, attempts);
        if (r.retry_after_s >= 0 && (uint64_t)r.retry_after_s * 1000 > delay)
            delay = (uint64_t)r.retry_after_s * 1000 > 3600000 ? 3600000
                                                               : (uint64_t)r.retry_after_s * 1000;
        sl_debug("connector %s: %s, retry %d in %llu ms", w->def.id, error, attempts,
                 (unsigned long long)delay);
        if (nap(w, delay)) {
            rc = 1;
            break;
        }
    }
out:
    sl_os_batch_free(ob);
    curl_slist_free_all(hdrs);
    sl_buf_release(&body);
    sl_httpc_resp_release(&r);
    return rc;
}

/* Takes the connector's dead letters and delivers each once more under the normal retry
 * policy; one that fails again is dead-lettered anew. */
static void replay_dead_letters(struct worker *w, CURL *c, struct sl_strand **s, size_t ns)
{
    struct sl_dl_ref refs[256];
    long n;
    while (!stopped(w) && (n = sl_meta_take_dead_letters(w->e->meta, w->def.id, refs, 256)) > 0) {
        for (long k = 0; k < n && !stopped(w); k++) {
            struct sl_strand *st = NULL;
            for (size_t i = 0; i < ns; i++)
                if (strcmp(sl_strand_name(s[i]), refs[k].strand) == 0)
                    st = s[i];
            if (!st && sl_store_strand(w->e->store, refs[k].strand, strlen(refs[k].strand), 0, &st,
                                       NULL) != 0)
                continue; /* its strand is gone: nothing to replay */
            deliver(w, c, st, refs[k].seq, 1);
        }
        if (n < 256)
            break;
    }
}

static void persist_cursors(struct worker *w, struct sl_strand **s, const uint64_t *cur, int *dirty,
                            size_t ns)
{
    for (size_t i = 0; i < ns; i++) {
        if (!dirty[i])
            continue;
        struct sl_err err = {0};
        if (sl_meta_set_cursor(w->e->meta, w->def.id, sl_strand_name(s[i]), cur[i], &err) < 0)
            sl_warn("connector %s: %s", w->def.id, err.msg);
        else
            dirty[i] = 0;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const json_t *cfg = w->def.config;
    CURL *c = curl_easy_init();
    size_t ns = json_array_size(w->def.strands);
    if (ns > MAX_STRANDS)
        ns = MAX_STRANDS;
    struct sl_strand *s[MAX_STRANDS];
    uint64_t cur[MAX_STRANDS];
    int earliest = strcmp(cfg_str(cfg, "start"), "earliest") == 0;
    uint64_t batch =
        strcmp(w->def.kind, "webhook") == 0 ? (uint64_t)cfg_int(cfg, NULL, "batch_size") : 1;
    uint64_t plan[MAX_STRANDS] = {0}, since[MAX_STRANDS] = {0}, wait_ms = 0;
    if (strcmp(w->def.kind, "object_storage") == 0) {
        struct sl_err err = {0};
        if (sl_os_sink_new(cfg, &w->os, &err) < 0) {
            sl_error("connector %s: %s", w->def.id, err.msg);
            goto out;
        }
        batch = sl_os_batch_size(w->os);
    }
    for (size_t i = 0; i < ns; i++) {
        const char *name = json_string_value(json_array_get(w->def.strands, i));
        struct sl_err err = {0};
        if (sl_store_strand(w->e->store, name, strlen(name), 1, &s[i], &err) < 0) {
            sl_error("connector %s: strand %s: %s", w->def.id, name, err.msg);
            goto out;
        }
        if (sl_meta_get_cursor(w->e->meta, w->def.id, name, &cur[i]) != 0) {
            cur[i] = earliest ? 0 : sl_strand_count(s[i]); /* a new connector: start here */
            sl_meta_set_cursor(w->e->meta, w->def.id, name, cur[i], NULL);
        }
        if (w->os)
            plan[i] = os_plan_of(w, s[i]);
    }
    sl_info("connector %s (%s): delivering", w->def.id, w->def.kind);
    int dirty[MAX_STRANDS] = {0};
    uint64_t last_persist = 0;
    while (!stopped(w)) {
        int sent = 0;
        uint64_t head0 = ns ? sl_strand_count(s[0]) : 0;
        wait_ms = UINT64_MAX;
        for (size_t i = 0; i < ns && !stopped(w); i++) {
            uint64_t head = sl_strand_count(s[i]);
            if (cur[i] >= head)
                continue;
            uint64_t n = head - cur[i] < batch ? head - cur[i] : batch;
            if (w->os &&
                !os_due(w, s[i], cur[i], head, &plan[i], &since[i], dirty[i], &n, &wait_ms))
                continue;
            int d = deliver(w, c, s[i], cur[i], n);
            if (d == 2)
                __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE); /* failed: this worker ends */
            if (d != 0)
                break;
            cur[i] += n;
            dirty[i] = 1;
            sent = 1;
            if (w->os) /* durable before the next batch is planned */
                persist_cursors(w, s + i, cur + i, dirty + i, 1);
        }
        /* The cursor is persisted at most every 5 ms while busy, at once when caught up, and
         * when stopping: a crash re-delivers at most ~5 ms of records (at-least-once), and a
         * busy connector does not pay a metadata commit per request. */
        uint64_t now = sl_mono_ns();
        if (!sent || stopped(w) || now - last_persist >= 5000000u) {
            persist_cursors(w, s, cur, dirty, ns);
            last_persist = now;
        }
        if (sl_registry_take_replay(w->e->reg, w->def.id))
            replay_dead_letters(w, c, s, ns);
        uint64_t lag = 0;
        for (size_t i = 0; i < ns; i++)
            lag += sl_strand_count(s[i]) - cur[i];
        sl_registry_set_lag(w->e->reg, w->def.id, lag);
        /* woken by the next commit; a short timeout to see a stop or other strands */
        if (!sent && ns > 0) {
            int t = ns == 1 ? 100 : 20;
            if (w->os && wait_ms < (uint64_t)t)
                t = (int)wait_ms + 1;
            /* object_storage waits for more records than it has seen, not for the cursor */
            sl_strand_wait(s[0], w->os ? head0 : cur[0], t);
        }
    }
    if (w->os && __atomic_load_n(&w->drain, __ATOMIC_ACQUIRE)) {
        /* a clean shutdown writes the pending records first: one attempt per batch, for ten
         * seconds at most; what is not stored stays behind the cursor for the next start */
        w->final = 1;
        uint64_t until = w->final_until = sl_mono_ns() + 10000000000ull;
        for (size_t i = 0; i < ns; i++) {
            uint64_t head;
            while ((head = sl_strand_count(s[i])) > cur[i] && sl_mono_ns() < until) {
                uint64_t n = head - cur[i] < batch ? head - cur[i] : batch;
                persist_cursors(w, s + i, cur + i, dirty + i, 1);
                if (!os_due(w, s[i], cur[i], head, &plan[i], &since[i], dirty[i], &n, &wait_ms) ||
                    deliver(w, c, s[i], cur[i], n) != 0)
                    break;
                cur[i] += n;
                dirty[i] = 1;
                persist_cursors(w, s + i, cur + i, dirty + i, 1);
            }
        }
    }
    persist_cursors(w, s, cur, dirty, ns);
out:
    sl_os_sink_free(w->os);
    w->os = NULL;
    curl_easy_cleanup(c);
    __atomic_store_n(&w->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* ---- inbound sources: the same thread lifecycle, the source's own loop ---- */

static int source_stopped(void *arg)
{
    return stopped(arg);
}

static int source_nap(void *arg, uint64_t ms)
{
    return nap(arg, ms);
}

static void *source_main(void *arg)
{
    struct worker *w = arg;
    struct sl_source_env env = {.id = w->def.id,
                                .config = w->def.config,
                                .store = w->e->store,
                                .reg = w->e->reg,
                                .meta = w->e->meta,
                                .stopped = source_stopped,
                                .nap = source_nap,
                                .arg = w};
    if (strcmp(w->def.kind, "postgres_cdc") == 0)
        sl_pg_cdc_run(&env);
    __atomic_store_n(&w->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* ---- engine ---- */

static void worker_stop(struct worker *w)
{
    pthread_mutex_lock(&w->mu);
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static void worker_free(struct worker *w)
{
    json_decref(w->def.config);
    json_decref(w->def.strands);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

static void reap(struct sl_engine *e, int wait)
{
    for (struct worker **p = &e->retired; *p;) {
        struct worker *w = *p;
        if (wait || __atomic_load_n(&w->finished, __ATOMIC_ACQUIRE)) {
            pthread_join(w->th, NULL);
            *p = w->next;
            worker_free(w);
        } else {
            p = &w->next;
        }
    }
}

static void reconcile(struct sl_engine *e)
{
    struct sl_outbound_def *defs;
    size_t n = sl_registry_outbound(e->reg, &defs);
    for (struct worker **p = &e->live; *p;) {
        struct worker *w = *p;
        size_t i = 0;
        while (i < n && strcmp(defs[i].id, w->def.id) != 0)
            i++;
        if (i < n && defs[i].gen == w->def.gen) {
            p = &w->next;
            continue;
        }
        worker_stop(w); /* deleted, disabled or reconfigured */
        *p = w->next;
        w->next = e->retired;
        e->retired = w;
    }
    for (size_t i = 0; i < n; i++) {
        struct worker *w = e->live;
        while (w && strcmp(w->def.id, defs[i].id) != 0)
            w = w->next;
        if (w)
            continue;
        w = calloc(1, sizeof(*w));
        if (!w)
            break;
        w->e = e;
        w->def = defs[i];
        defs[i].config = defs[i].strands = NULL; /* owned by the worker now */
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        if (pthread_create(&w->th, NULL, w->def.inbound ? source_main : worker_main, w) != 0) {
            sl_error("connector %s: cannot start its worker", w->def.id);
            worker_free(w);
            continue;
        }
        w->next = e->live;
        e->live = w;
    }
    sl_registry_outbound_free(defs, n);
    reap(e, 0);
}

static void *engine_main(void *arg)
{
    struct sl_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        if (!e->poked) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            dl.tv_sec += 1;
            pthread_cond_timedwait(&e->cv, &e->mu, &dl);
        }
        e->poked = 0;
        if (e->stopping)
            break;
        pthread_mutex_unlock(&e->mu);
        reconcile(e);
        pthread_mutex_lock(&e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    for (struct worker *w = e->live, *next; w; w = next) {
        next = w->next;
        __atomic_store_n(&w->drain, 1, __ATOMIC_RELEASE); /* server shutdown, not a disable */
        worker_stop(w);
        w->next = e->retired;
        e->retired = w;
    }
    e->live = NULL;
    reap(e, 1);
    return NULL;
}

int sl_engine_start(struct sl_engine **out, struct sl_store *store, struct sl_registry *reg,
                    struct sl_err *err)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct sl_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    e->store = store;
    e->reg = reg;
    e->meta = sl_registry_meta(reg);
    e->poked = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->th, NULL, engine_main, e) != 0) {
        free(e);
        return sl_err_sys(err, SL_E_IO, "start the delivery engine");
    }
    sl_registry_on_change(reg, sl_engine_poke, e);
    *out = e;
    return 0;
}

void sl_engine_poke(void *arg)
{
    struct sl_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    e->poked = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

void sl_engine_stop(struct sl_engine *e)
{
    if (!e)
        return;
    sl_registry_on_change(e->reg, NULL, NULL);
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    pthread_join(e->th, NULL);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
    curl_global_cleanup();
}
