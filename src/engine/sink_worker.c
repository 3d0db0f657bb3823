/* The sink framework: one worker thread per enabled outbound connector runs its sink ops
 * (include/sluice/connector.h) under one delivery policy. It follows the connector's strands
 * (a list, or every strand: "*") through durable cursors, woken by every commit; runs the sink's
 * health check before anything is sent (state "unhealthy" until it passes); cuts batches
 * (batch_max, linger; stable batches are planned in meta before their first attempt); calls
 * send(), with several batches in flight for sinks that pipeline (max_inflight); advances the
 * cursor only over records the target accepted or that went to the dead-letter list; retries
 * transient failures with exponential backoff and full jitter, honouring Retry-After; opens a
 * circuit breaker on repeated failure; puts the connector in "failed" after
 * max_consecutive_failures and has it restarted after a FATAL result; applies rate_limit;
 * replays dead letters on request; flushes pending records at server shutdown for sinks that ask.
 * docs/connectors.md is the user's contract. */
#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/meta.h"
#include "engine/worker.h"
#include "strand/store.h"
#include "strand/strand.h"
#include "transform/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STRANDS 256

enum { BR_CLOSED, BR_OPEN, BR_HALF_OPEN };

struct followed;

/* What one sink worker holds (its thread only, but `final` and `final_until` are read by the
 * cancel callback, on the same thread). */
struct sink {
    struct worker *w;
    const struct sl_sink_ops *ops;
    void *self;
    struct sl_sink_ctx ctx;
    struct sl_sink_info info;
    /* delivery policy, from the common fields */
    long long initial_ms, max_ms, max_retries, threshold, reset_s, close_after, give_up;
    /* circuit breaker */
    int breaker;
    uint64_t open_until_ns;
    long long consecutive_failures, half_open_successes;
    /* the shutdown flush: one attempt per batch, not aborted by stop, but at final_until */
    int final;
    uint64_t final_until;
    /* rate_limit: a token bucket on records (rate 0 = none), on the worker's clock */
    double rate, burst, tokens;
    uint64_t refill_ns;
    struct sl_rec *recs; /* the batch being sent */
    uint8_t (*hashes)[SL_HASH_LEN];
    size_t recs_cap;
    /* config.transforms: records [prep_from, prep_from + prep_n) are in recs, transformed (their
     * payloads in tbufs); read_batch() serves them from there */
    struct sl_transforms *tr;
    struct sl_buf *tbufs;
    uint64_t prep_from, prep_n;
    int prepared;
    /* the strands followed and their cursors (the lag shown while a batch is retried); a
     * transient error is shown as last_error while it lasts (soft_error set) */
    const struct followed *f;
    int soft_error;
    uint64_t persisted_ns; /* when a cursor was last written (CURSOR_EVERY_NS apart at most) */
};

/* A cursor is written at most this often while records arrive, also when the worker catches up
 * between them: a batch_size 1 webhook at 5,000 records/s catches up after nearly every record,
 * and wrote ~2,800 metadata commits a second (~11 MB/s of WAL pages) when it did so at once. */
#define CURSOR_EVERY_NS 5000000u

static long long cfg_int(const json_t *cfg, const char *obj, const char *key)
{
    const json_t *o = obj ? json_object_get(cfg, obj) : cfg;
    return json_integer_value(json_object_get(o, key));
}

static uint64_t lag_at(const struct followed *f, const struct sl_strand *s, uint64_t pos);

/* A transient failure is shown as last_error while the batch is retried, with the lag counted
 * as if strand s's cursor were already at pos (the records before pos were accepted);
 * why = NULL clears it after a success. */
static void show_retrying(struct sink *k, const char *why, const struct sl_strand *s, uint64_t pos)
{
    if (!why && !k->soft_error)
        return;
    sl_registry_set_source_status(k->w->reg, k->w->def.id, NULL, why);
    k->soft_error = why != NULL;
    if (why && k->f)
        sl_registry_set_lag(k->w->reg, k->w->def.id, lag_at(k->f, s, pos));
}

static void set_breaker(struct sink *k, int state)
{
    static const char *const names[] = {"closed", "open", "half_open"};
    if (k->breaker != state)
        sl_info("connector %s: circuit breaker %s", k->w->def.id, names[state]);
    k->breaker = state;
    sl_registry_set_breaker(k->w->reg, k->w->def.id, names[state]);
}

/* Waits until n records may be sent under rate_limit (a batch larger than the bucket waits for a
 * full bucket and leaves it in debt). Returns 1 if told to stop first. */
static int throttle(struct sink *k, uint64_t n)
{
    if (k->rate <= 0)
        return 0;
    double need = (double)n < k->burst ? (double)n : k->burst;
    for (;;) {
        uint64_t now = sl_worker_mono_ns(k->w);
        k->tokens += (double)(now - k->refill_ns) / 1e9 * k->rate;
        if (k->tokens > k->burst)
            k->tokens = k->burst;
        k->refill_ns = now;
        if (k->tokens >= need) {
            k->tokens -= (double)n;
            return 0;
        }
        uint64_t ms = (uint64_t)((need - k->tokens) / k->rate * 1000.0) + 1;
        if (sl_worker_clock_nap(k->w, ms))
            return 1;
    }
}

static int sink_cancelled(void *arg)
{
    struct sink *k = arg;
    return k->final ? sl_mono_ns() > k->final_until : sl_worker_stopped(k->w);
}

int sl_sink_batch_due(uint64_t pending, uint64_t batch_max, uint64_t linger_ms,
                      uint64_t first_ts_ms, uint64_t now_ms, uint64_t waited_ms, uint64_t *wait_ms)
{
    *wait_ms = 0;
    if (pending == 0) {
        *wait_ms = UINT64_MAX;
        return 0;
    }
    if (pending >= batch_max || linger_ms == 0)
        return 1;
    uint64_t age = now_ms > first_ts_ms ? now_ms - first_ts_ms : 0;
    if (waited_ms > age)
        age = waited_ms;
    if (age >= linger_ms)
        return 1;
    *wait_ms = linger_ms - age;
    return 0;
}

static int grow_recs(struct sink *k, uint64_t n)
{
    if (n > k->recs_cap) {
        struct sl_rec *r = realloc(k->recs, n * sizeof(*r));
        if (r)
            k->recs = r;
        uint8_t(*h)[SL_HASH_LEN] = realloc(k->hashes, n * sizeof(*h));
        if (h)
            k->hashes = h;
        struct sl_buf *t = k->tr ? realloc(k->tbufs, n * sizeof(*t)) : NULL;
        if (t) {
            for (size_t i = k->recs_cap; i < n; i++)
                sl_buf_init(&t[i], 0);
            k->tbufs = t;
        }
        if (!r || !h || (k->tr && !t))
            return -1;
        k->recs_cap = n;
    }
    return 0;
}

/* Reads records [from, from + n) of s: the records to send, or NULL. With transforms, they
 * come from the prepared ones (prepare()). */
static const struct sl_rec *read_batch(struct sink *k, struct sl_strand *s, uint64_t from,
                                       uint64_t n)
{
    if (k->prepared)
        return from >= k->prep_from && from + n <= k->prep_from + k->prep_n
                   ? k->recs + (from - k->prep_from)
                   : NULL;
    if (grow_recs(k, n) < 0)
        return NULL;
    for (uint64_t i = 0; i < n; i++) {
        struct sl_record r;
        if (sl_strand_read(s, from + i, &r) != 0)
            return NULL;
        k->recs[i] = (struct sl_rec){.seq = r.seq,
                                     .timestamp_ms = r.timestamp_ms,
                                     .flags = r.flags,
                                     .source_len = r.source_len,
                                     .source = r.source,
                                     .payload_len = r.payload_len,
                                     .payload = r.payload,
                                     .hash = k->hashes[i]};
        memcpy(k->hashes[i], r.hash, SL_HASH_LEN);
    }
    return k->recs;
}

/* Tells the connector's watcher (sl_registry_manage), if any, what became of records
 * [seq, seq + n) of s. */
static void note(struct sink *k, enum sl_delivery what, struct sl_strand *s, uint64_t seq,
                 uint64_t n, int attempts, const char *error)
{
    struct worker *w = k->w;
    if (!w->def.watch || (n == 0 && what != SL_ATTEMPT_FAILED))
        return;
    struct sl_delivery_note d = {.what = what,
                                 .strand = s ? sl_strand_name(s) : NULL,
                                 .seq = seq,
                                 .n = n,
                                 .attempts = attempts,
                                 .error = error ? error : ""};
    w->def.watch(w->def.watch_arg, &d);
}

static void dead_letter_one(struct sink *k, struct sl_strand *s, uint64_t seq, int attempts,
                            const struct sl_outcome *o)
{
    struct sl_record rec;
    char hash[SL_HASH_LEN * 2 + 1] = "";
    if (sl_strand_read(s, seq, &rec) == 0)
        sl_hex_encode(hash, rec.hash, SL_HASH_LEN);
    struct sl_meta_dead_letter d = {
        .connector_id = k->w->def.id,
        .strand = sl_strand_name(s),
        .record_hash = hash,
        .last_error = o->error,
        .response_excerpt = o->excerpt,
        .seq = seq,
        .at_ms = sl_now_ms(),
        .attempts = attempts,
        .last_status = o->status,
    };
    struct sl_err err = {0};
    if (sl_meta_add_dead_letter(k->w->meta, &d, &err) < 0)
        sl_warn("connector %s: %s", k->w->def.id, err.msg);
}

/* Dead-letters records of s: those the outcome lists (indexes into the batch sent, which starts
 * at seq first and holds n records), or, when it lists none, all n. Returns how many. */
static uint64_t dead_letter(struct sink *k, struct sl_strand *s, uint64_t first, uint64_t n,
                            int attempts, const struct sl_outcome *o)
{
    uint64_t count = 0, first_dl = first;
    if (o->reject && o->n_reject) {
        uint64_t next = 0; /* the records between two refused ones were accepted */
        for (size_t i = 0; i < o->n_reject; i++)
            if (o->reject[i] < n && o->reject[i] >= next) {
                if (!count)
                    first_dl = first + o->reject[i];
                dead_letter_one(k, s, first + o->reject[i], attempts, o);
                note(k, SL_DELIVERED, s, first + next, o->reject[i] - next, attempts, NULL);
                note(k, SL_DEAD_LETTERED, s, first + o->reject[i], 1, attempts, o->error);
                next = o->reject[i] + 1;
                count++;
            }
        note(k, SL_DELIVERED, s, first + next, n - next, attempts, NULL);
    } else {
        for (uint64_t seq = first; seq < first + n; seq++)
            dead_letter_one(k, s, seq, attempts, o);
        note(k, SL_DEAD_LETTERED, s, first, n, attempts, o->error);
        count = n;
    }
    sl_warn("connector %s: %llu record(s) of %s from seq %llu dead-lettered after %d attempt(s): "
            "%s",
            k->w->def.id, (unsigned long long)count, sl_strand_name(s),
            (unsigned long long)first_dl, attempts, o->error);
    return count;
}

static void note_events(struct worker *w, uint64_t n)
{
    sl_registry_note_events(w->reg, w->def.id, n, sl_now_ms());
}

static enum sl_result call_send(struct sink *k, const struct sl_batch *b, struct sl_outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->retry_after_ms = -1;
    enum sl_result r = k->ops->send(k->self, b, o);
    if (r == SL_R_QUEUED) {
        if (!k->ops->flush)
            return SL_R_OK; /* nothing to confirm: taken means accepted */
        size_t acc = o->accepted;
        memset(o, 0, sizeof(*o));
        o->retry_after_ms = -1;
        r = k->ops->flush(k->self, o);
        if (o->accepted < acc)
            o->accepted = acc;
    }
    if (o->accepted > b->n)
        o->accepted = b->n;
    return r;
}

/* The records [from, from + n) of a batch that did not succeed but whose first `accepted` the
 * target stored for good (not a listed reject): counted as delivered. Returns how many. */
static uint64_t stored_prefix(struct sink *k, struct sl_strand *s, uint64_t from, uint64_t n,
                              enum sl_result r, const struct sl_outcome *o, int attempts)
{
    if (r == SL_R_OK || (r == SL_R_REJECT && o->reject && o->n_reject) || !o->accepted)
        return 0;
    uint64_t m = o->accepted < n ? o->accepted : n;
    note(k, SL_DELIVERED, s, from, m, attempts, NULL);
    note_events(k->w, m);
    sl_registry_note_delivery(k->w->reg, k->w->def.id, m, 0, 0, 0);
    return m;
}

/* Delivers records [from, from + n) of s: 0 when all are accepted or dead-lettered (the cursor
 * may pass them), 1 when told to stop first (*done says how many were accepted before), 2 when
 * the connector gave up (failed). */
static int deliver(struct sink *k, struct sl_strand *s, uint64_t from, uint64_t n, uint64_t *done)
{
    struct worker *w = k->w;
    const char *id = w->def.id;
    uint64_t acc = 0; /* accepted so far: a prefix, never sent again */
    int attempts = 0, rc = 0;
    struct sl_outcome o;
    *done = 0;
    for (;;) {
        if (sl_worker_stopped(w) && !k->final) {
            rc = 1;
            break;
        }
        if (k->breaker == BR_OPEN) { /* open: nothing is sent until the reset timeout */
            uint64_t now = sl_worker_mono_ns(w);
            if (now < k->open_until_ns &&
                sl_worker_clock_nap(w, (k->open_until_ns - now) / 1000000 + 1)) {
                rc = 1;
                break;
            }
            k->half_open_successes = 0;
            set_breaker(k, BR_HALF_OPEN);
        }
        const struct sl_rec *recs = read_batch(k, s, from + acc, n - acc);
        if (!recs) {
            memset(&o, 0, sizeof(o));
            snprintf(o.error, sizeof(o.error), "the record cannot be read from the strand");
            dead_letter(k, s, from + acc, n - acc, attempts, &o);
            sl_registry_note_delivery(w->reg, id, 0, 0, 0, n - acc);
            acc = n;
            break;
        }
        if (throttle(k, n - acc)) {
            rc = 1;
            break;
        }
        uint64_t base = acc; /* the batch sent: records [from + base, from + n) */
        struct sl_batch b = {.strand = sl_strand_name(s), .recs = recs, .n = (size_t)(n - base)};
        attempts++;
        enum sl_result r = call_send(k, &b, &o);
        if (o.files || o.bytes)
            sl_registry_note_files(w->reg, id, o.files, o.bytes);
        int listed = r == SL_R_REJECT && o.reject && o.n_reject;
        acc += stored_prefix(k, s, from + acc, n - acc, r, &o, attempts);
        if (acc == n && r != SL_R_FATAL)
            r = SL_R_OK; /* nothing of the batch is left to send */
        if (r == SL_R_OK) {
            uint64_t m = n - acc;
            note_events(w, m);
            k->consecutive_failures = 0;
            show_retrying(k, NULL, s, 0);
            if (k->breaker == BR_HALF_OPEN && ++k->half_open_successes >= k->close_after)
                set_breaker(k, BR_CLOSED);
            sl_registry_note_delivery(w->reg, id, m, 0, attempts > 1 ? m : 0, 0);
            note(k, SL_DELIVERED, s, from + acc, m, attempts, NULL);
            acc = n;
            break;
        }
        if (listed) { /* those records are refused for good, the others accepted */
            show_retrying(k, NULL, s, 0);
            uint64_t dl = dead_letter(k, s, from + base, n - base, attempts, &o);
            note_events(w, (n - base) - dl);
            sl_registry_note_delivery(w->reg, id, (n - base) - dl, 0, 0, dl);
            acc = n;
            break;
        }
        sl_registry_note_delivery(w->reg, id, 0, n - acc, 0, 0);
        if (r != SL_R_REJECT)
            note(k, SL_ATTEMPT_FAILED, s, from + acc, n - acc, attempts,
                 o.error[0] ? o.error : "the sink failed");
        if (k->final || (sl_worker_stopped(w) && r != SL_R_REJECT)) {
            rc = 1; /* aborted, or the one attempt of the shutdown flush: the rest stays */
            break;
        }
        if (r == SL_R_FATAL) {
            sl_worker_restart_later(w, o.error[0] ? o.error : "the sink failed");
            rc = 2;
            break;
        }
        int transient = r == SL_R_RETRY || r == SL_R_NOT_CONNECTED;
        if (transient) {
            k->consecutive_failures++;
            show_retrying(k, o.error[0] ? o.error : "the sink failed; retrying", s, from + acc);
            if (k->give_up > 0 && k->consecutive_failures >= k->give_up) {
                char msg[400];
                snprintf(msg, sizeof(msg), "gave up after %lld consecutive failures: %s",
                         k->consecutive_failures, o.error);
                sl_error("connector %s: %s; POST /v1/connectors/%s/restart to resume", id, msg, id);
                sl_registry_set_failed(w->reg, id, msg);
                rc = 2; /* the cursor stays: the batch is retried after a restart */
                break;
            }
            if (k->breaker == BR_HALF_OPEN ||
                (k->breaker == BR_CLOSED && k->consecutive_failures >= k->threshold)) {
                k->open_until_ns = sl_worker_mono_ns(w) + (uint64_t)k->reset_s * 1000000000u;
                set_breaker(k, BR_OPEN);
                continue; /* wait in the open state, then one trial request */
            }
        }
        if (!transient || (k->max_retries >= 0 && attempts > k->max_retries)) {
            show_retrying(k, NULL, s, 0); /* the dead letter keeps the error */
            uint64_t dl = dead_letter(k, s, from + acc, n - acc, attempts, &o);
            sl_registry_note_delivery(w->reg, id, 0, 0, 0, dl);
            acc = n;
            break;
        }
        /* exponential backoff with full jitter; Retry-After wins when it asks for longer */
        uint64_t delay = sl_backoff_ms((uint64_t)k->initial_ms, (uint64_t)k->max_ms, attempts);
        if (o.retry_after_ms >= 0 && (uint64_t)o.retry_after_ms > delay)
            delay = (uint64_t)o.retry_after_ms > 3600000 ? 3600000 : (uint64_t)o.retry_after_ms;
        sl_debug("connector %s: %s, retry %d in %llu ms", id, o.error, attempts,
                 (unsigned long long)delay);
        if (sl_worker_clock_nap(w, delay)) {
            rc = 1;
            break;
        }
    }
    *done = acc;
    return rc;
}

/* ---- transforms (config.transforms) ---- */

/* Transforms records [from, from + n) of s into k->recs, stopping before the first record the
 * chain drops or fails on: returns how many were prepared (a contiguous prefix, so the delivery
 * arithmetic stays the same). When it is 0, *first says what became of the first record
 * (SL_TR_DROP, or SL_TR_FAIL with why). */
static uint64_t prepare(struct sink *k, struct sl_strand *s, uint64_t from, uint64_t n,
                        enum sl_tr_result *first, char *why, size_t whylen)
{
    k->prepared = 0;
    if (!read_batch(k, s, from, n)) {
        *first = SL_TR_FAIL;
        snprintf(why, whylen, "the record cannot be read from the strand");
        return 0;
    }
    uint64_t m = 0;
    for (; m < n; m++) {
        struct sl_rec *r = &k->recs[m];
        struct sl_expr_rec er = {.source = r->source,
                                 .source_len = r->source_len,
                                 .strand = sl_strand_name(s),
                                 .seq = r->seq,
                                 .timestamp_ms = r->timestamp_ms,
                                 .flags = r->flags};
        struct sl_buf *out = &k->tbufs[m];
        enum sl_tr_result res =
            sl_transforms_apply_mp(k->tr, r->payload, r->payload_len, &er, out, why, whylen);
        if (res != SL_TR_KEEP) {
            if (m == 0)
                *first = res;
            break;
        }
        r->payload = out->data;
        r->payload_len = (uint32_t)out->len;
    }
    k->prep_from = from;
    k->prep_n = m;
    k->prepared = m > 0;
    return m;
}

/* deliver(), with the connector's transforms applied first: a dropped record is passed (the
 * cursor moves over it), one the chain fails on is a dead letter with the reason. */
static int deliver_tr(struct sink *k, struct sl_strand *s, uint64_t from, uint64_t n,
                      uint64_t *done)
{
    if (!k->tr)
        return deliver(k, s, from, n, done);
    enum sl_tr_result first = SL_TR_KEEP;
    char why[256] = "";
    uint64_t m = prepare(k, s, from, n, &first, why, sizeof(why));
    if (m == 0) {
        *done = 1;
        if (first == SL_TR_DROP) {
            note(k, SL_DELIVERED, s, from, 1, 0, NULL);
            return 0;
        }
        struct sl_outcome o = {0};
        snprintf(o.error, sizeof(o.error), "%s", why);
        dead_letter(k, s, from, 1, 0, &o);
        sl_registry_note_delivery(k->w->reg, k->w->def.id, 0, 0, 0, 1);
        return 0;
    }
    int rc = deliver(k, s, from, m, done);
    k->prepared = 0;
    return rc;
}

/* ---- several batches in flight (sinks with max_inflight > 1) ---- */

#define MAX_INFLIGHT 64

struct flight {
    uint64_t from, n;
    int queued;       /* waiting for flush(); else the result below is final */
    enum sl_result r; /* of a batch send() answered at once */
};

/* The result of the oldest batch in flight. */
static enum sl_result land(struct sink *k, const struct flight *f, struct sl_outcome *o)
{
    if (!f->queued)
        return f->r;
    memset(o, 0, sizeof(*o));
    o->retry_after_ms = -1;
    return k->ops->flush(k->self, o);
}

/* Sends the records of s from `from` to `head` in batches with up to max_inflight of them in
 * flight, collecting results oldest first: the cursor may pass the contiguous prefix the target
 * accepted (*done records). At the first batch that is not accepted, the later ones in flight
 * are collected (their records are sent again after it: at-least-once, and their
 * Idempotency-Keys let a target drop the repeats) and that batch, less the prefix the target
 * reported stored (outcome.accepted), goes through deliver(), with the retry policy, the breaker
 * and dead letters. Returns like deliver(). */
static int pipeline(struct sink *k, struct sl_strand *s, uint64_t from, uint64_t head,
                    uint64_t *done)
{
    /* Records written while batches are in flight are sent too (head is read again), as long as
     * a slot is free; with ready() the worker does not block on the oldest batch meanwhile. */
    struct worker *w = k->w;
    struct flight q[MAX_INFLIGHT];
    size_t qh = 0, qn = 0,
           cap = k->info.max_inflight < MAX_INFLIGHT ? k->info.max_inflight : MAX_INFLIGHT;
    uint64_t next = from, acc = from;
    /* then return (other strands, replays and the lag are looked at between runs); meanwhile
     * the cursor is persisted every 5 ms, as the worker's loop does */
    uint64_t until = sl_mono_ns() + 100000000u;
    struct sl_outcome o;
    int rc = 0;
    *done = 0;
    while (acc < head || qn) {
        uint64_t now_head = sl_strand_count(s);
        if (now_head > head && sl_mono_ns() < until)
            head = now_head;
        while (qn < cap && next < head && !sl_worker_stopped(w) && sl_mono_ns() < until) {
            uint64_t n = head - next < k->info.batch_max ? head - next : k->info.batch_max;
            if (throttle(k, n))
                break; /* stopped: what is in flight is collected below */
            if (!read_batch(k, s, next, n))
                break; /* deliver() below dead-letters what cannot be read */
            struct sl_batch b = {.strand = sl_strand_name(s), .recs = k->recs, .n = (size_t)n};
            memset(&o, 0, sizeof(o));
            o.retry_after_ms = -1;
            enum sl_result r = k->ops->send(k->self, &b, &o);
            q[(qh + qn++) % MAX_INFLIGHT] =
                (struct flight){.from = next, .n = n, .queued = r == SL_R_QUEUED, .r = r};
            next += n;
            if (r != SL_R_QUEUED)
                break; /* answered at once: collect it before sending more */
        }
        if (!qn)
            break;
        if (k->ops->ready && q[qh].queued && qn < cap && !sl_worker_stopped(w) &&
            sl_mono_ns() < until && !k->ops->ready(k->self, 1))
            continue; /* not answered yet: look for new records, then ask again */
        struct flight f = q[qh];
        qh = (qh + 1) % MAX_INFLIGHT;
        qn--;
        enum sl_result r = land(k, &f, &o);
        if (r == SL_R_OK && f.from == acc) {
            note(k, SL_DELIVERED, s, f.from, f.n, 1, NULL);
            note_events(w, f.n);
            sl_registry_note_delivery(w->reg, w->def.id, f.n, 0, 0, 0);
            k->consecutive_failures = 0;
            show_retrying(k, NULL, s, 0);
            acc += f.n;
            if (sl_mono_ns() - k->persisted_ns >= CURSOR_EVERY_NS) {
                struct sl_err err = {0};
                if (sl_meta_set_cursor(w->meta, w->def.id, sl_strand_name(s), acc, &err) < 0)
                    sl_warn("connector %s: %s", w->def.id, err.msg);
                k->persisted_ns = sl_mono_ns();
            }
            continue;
        }
        /* a prefix of the failed batch the target stored for good is not sent again */
        uint64_t part = stored_prefix(k, s, f.from, f.n, r, &o, 1);
        acc += part;
        while (qn) { /* collect the rest: they are sent again after the failed one */
            struct sl_outcome o2;
            land(k, &q[qh], &o2);
            qh = (qh + 1) % MAX_INFLIGHT;
            qn--;
        }
        if (part < f.n && !sl_worker_stopped(w)) { /* the failed batch, under the retry policy */
            uint64_t d = 0;
            rc = deliver(k, s, acc, f.n - part, &d);
            acc += d;
        }
        break;
    }
    if (sl_worker_stopped(w) && acc < head && rc == 0)
        rc = 1;
    *done = acc - from;
    return rc;
}

/* Takes the connector's dead letters and delivers each once more under the normal retry
 * policy; one that fails again is dead-lettered anew. */
static void replay_dead_letters(struct sink *k, struct sl_strand **s, size_t ns)
{
    struct worker *w = k->w;
    struct sl_dl_ref refs[256];
    long n;
    while (!sl_worker_stopped(w) &&
           (n = sl_meta_take_dead_letters(w->meta, w->def.id, refs, 256)) > 0) {
        for (long i = 0; i < n && !sl_worker_stopped(w); i++) {
            struct sl_strand *st = NULL;
            for (size_t j = 0; j < ns; j++)
                if (strcmp(sl_strand_name(s[j]), refs[i].strand) == 0)
                    st = s[j];
            if (!st && sl_store_strand(w->store, refs[i].strand, strlen(refs[i].strand), 0, &st,
                                       NULL) != 0)
                continue; /* its strand is gone: nothing to replay */
            uint64_t done;
            deliver_tr(k, st, refs[i].seq, 1, &done);
        }
        if (n < 256)
            break;
    }
}

/* ---- stable batches: a batch is planned (its end stored) before its first attempt ---- */

static uint64_t plan_of(struct worker *w, struct sl_strand *s)
{
    uint64_t end = 0;
    return sl_meta_get_plan(w->meta, w->def.id, sl_strand_name(s), &end) == 0 ? end : 0;
}

/* Whether records of s from cur are due now, and how many (*n). A planned batch is sent as
 * planned until the cursor passes it; a new plan is made only once the cursor of the last one
 * is durable (dirty == 0). Otherwise the flush rule decides, and *wait_ms is lowered to when it
 * will be due. */
static int due(struct sink *k, struct sl_strand *s, uint64_t cur, uint64_t head, uint64_t *plan,
               uint64_t *since_ns, int dirty, uint64_t *n, uint64_t *wait_ms)
{
    int stable = (k->info.flags & SL_SINK_STABLE_BATCHES) != 0;
    if (stable && *plan > cur && *plan <= head) {
        *n = *plan - cur;
        return 1;
    }
    if (stable && dirty)
        return 0;
    uint64_t now = sl_mono_ns(), wait = 0, pending = head - cur;
    if (!*since_ns)
        *since_ns = now;
    struct sl_record first;
    uint64_t first_ts = sl_strand_read(s, cur, &first) == 0 ? first.timestamp_ms : sl_now_ms();
    if (!k->final && !sl_sink_batch_due(pending, k->info.batch_max, k->info.linger_ms, first_ts,
                                        sl_now_ms(), (now - *since_ns) / 1000000, &wait)) {
        if (wait < *wait_ms)
            *wait_ms = wait;
        return 0;
    }
    *n = pending < k->info.batch_max ? pending : k->info.batch_max;
    *since_ns = 0;
    if (!stable)
        return 1;
    struct sl_err err = {0};
    if (sl_meta_set_plan(k->w->meta, k->w->def.id, sl_strand_name(s), cur + *n, &err) < 0) {
        sl_warn("connector %s: %s", k->w->def.id, err.msg);
        return 0;
    }
    *plan = cur + *n;
    return 1;
}

/* Returns how many cursors it wrote. */
static int persist_cursors(struct worker *w, struct sl_strand **s, const uint64_t *cur, int *dirty,
                           size_t ns)
{
    int n = 0;
    for (size_t i = 0; i < ns; i++) {
        if (!dirty[i])
            continue;
        struct sl_err err = {0};
        if (sl_meta_set_cursor(w->meta, w->def.id, sl_strand_name(s[i]), cur[i], &err) < 0) {
            sl_warn("connector %s: %s", w->def.id, err.msg);
        } else {
            dirty[i] = 0;
            n++;
        }
    }
    return n;
}

static int open_sink(struct sink *k, struct worker *w)
{
    const json_t *cfg = w->def.config;
    k->w = w;
    k->ops = w->conn->sink;
    k->ctx = (struct sl_sink_ctx){.id = w->def.id,
                                  .config = cfg,
                                  .host = &sl_host_default,
                                  .cancelled = sink_cancelled,
                                  .arg = k};
    k->initial_ms = cfg_int(cfg, "retry", "initial_backoff_ms");
    k->max_ms = cfg_int(cfg, "retry", "max_backoff_ms");
    k->max_retries = cfg_int(cfg, "retry", "max_retries");
    k->threshold = cfg_int(cfg, "circuit_breaker", "failure_threshold");
    k->reset_s = cfg_int(cfg, "circuit_breaker", "reset_timeout_secs");
    k->close_after = cfg_int(cfg, "circuit_breaker", "success_threshold");
    k->give_up = cfg_int(cfg, NULL, "max_consecutive_failures");
    const json_t *rl = json_object_get(cfg, "rate_limit");
    if (rl) {
        k->rate = json_number_value(json_object_get(rl, "events_per_second"));
        const json_t *b = json_object_get(rl, "burst_capacity");
        k->burst = b ? (double)json_integer_value(b) : (k->rate < 1 ? 1 : k->rate);
        k->tokens = k->burst;
        k->refill_ns = sl_worker_mono_ns(w);
    }
    struct sl_err err = {0};
    const json_t *tr = json_object_get(cfg, "transforms");
    if (tr && !(k->tr = sl_transforms_compile(tr, &err))) { /* validated at create: unlikely */
        sl_worker_restart_later(w, err.msg);
        return -1;
    }
    if (k->ops->open(&k->self, &k->ctx, &k->info, &err) < 0) {
        k->self = NULL;
        sl_worker_restart_later(w, err.msg[0] ? err.msg : "the sink could not be opened");
        return -1;
    }
    if (k->info.batch_max == 0)
        k->info.batch_max = 1;
    return 0;
}

/* The strands a worker follows: a list, or every strand ("*"), growing as strands are
 * created. */
struct followed {
    size_t n;
    int all;
    struct sl_strand *s[MAX_STRANDS];
    uint64_t cur[MAX_STRANDS], plan[MAX_STRANDS], since[MAX_STRANDS];
    int dirty[MAX_STRANDS];
    size_t seen; /* strands in the store at the last look ("*") */
};

/* Adds strand st: its stored cursor, or where a new one starts. A strand followed through "*"
 * that has no cursor was created after the connector (the API pins every strand that exists
 * when "*" is set), so it is followed from its first record. */
static void follow(struct sink *k, struct followed *f, struct sl_strand *st, int earliest)
{
    struct worker *w = k->w;
    size_t i = f->n;
    if (i == MAX_STRANDS) {
        sl_warn("connector %s: follows %d strands already; %s is not followed", w->def.id,
                MAX_STRANDS, sl_strand_name(st));
        return;
    }
    const char *name = sl_strand_name(st);
    f->s[i] = st;
    f->plan[i] = f->since[i] = 0;
    f->dirty[i] = 0;
    if (sl_meta_get_cursor(w->meta, w->def.id, name, &f->cur[i]) != 0) {
        f->cur[i] = earliest || f->all ? 0 : sl_strand_count(st);
        sl_meta_set_cursor(w->meta, w->def.id, name, f->cur[i], NULL);
    }
    if (k->info.flags & SL_SINK_STABLE_BATCHES)
        f->plan[i] = plan_of(w, st);
    f->n++;
}

/* Records behind the heads of the followed strands, strand s counted from pos instead of its
 * cursor (s = NULL: every strand from its cursor). */
static uint64_t lag_at(const struct followed *f, const struct sl_strand *s, uint64_t pos)
{
    uint64_t lag = 0;
    for (size_t i = 0; i < f->n; i++) {
        uint64_t head = sl_strand_count(f->s[i]), at = f->s[i] == s ? pos : f->cur[i];
        lag += head > at ? head - at : 0;
    }
    return lag;
}

static uint64_t lag_of(const struct followed *f)
{
    return lag_at(f, NULL, 0);
}

/* Follows the strands created since the last look ("*" only). */
static void follow_new(struct sink *k, struct followed *f, int earliest)
{
    if (!f->all || sl_store_list(k->w->store, NULL, 0) == f->seen)
        return;
    struct sl_strand *all[MAX_STRANDS];
    size_t n = sl_store_list(k->w->store, all, MAX_STRANDS);
    f->seen = n;
    for (size_t i = 0; i < n && i < MAX_STRANDS; i++) {
        if (!strncmp(sl_strand_name(all[i]), "sluice.", 7))
            continue; /* Sluice's own strands (the audit trail) are followed only when named */
        size_t j = 0;
        while (j < f->n && f->s[j] != all[i])
            j++;
        if (j == f->n)
            follow(k, f, all[i], earliest);
    }
}

/* The health check before the connector runs (a closed port, a missing bucket): while it fails
 * the state is "unhealthy" with last_error saying why, and it is tried again under the retry
 * policy's backoff. Returns 1 if told to stop first. */
static int health(struct sink *k, struct followed *f)
{
    struct worker *w = k->w;
    if (!k->ops->check)
        return 0;
    for (int attempt = 1;; attempt++) {
        struct sl_err err = {0};
        if (k->ops->check(k->self, &err) == 0) {
            if (attempt > 1) {
                sl_info("connector %s: healthy", w->def.id);
                sl_registry_set_source_status(w->reg, w->def.id, NULL, NULL);
            }
            return 0;
        }
        if (attempt == 1)
            sl_warn("connector %s: health check: %s", w->def.id, err.msg);
        sl_registry_set_source_status(w->reg, w->def.id, "unhealthy",
                                      err.msg[0] ? err.msg : "the health check failed");
        note(k, SL_ATTEMPT_FAILED, NULL, 0, 0, attempt,
             err.msg[0] ? err.msg : "the health check failed");
        follow_new(k, f, 0);
        sl_registry_set_lag(w->reg, w->def.id, lag_of(f)); /* records wait meanwhile */
        if (sl_worker_clock_nap(
                w, sl_backoff_ms((uint64_t)k->initial_ms, (uint64_t)k->max_ms, attempt) + 1))
            return 1;
    }
}

void *sl_sink_worker_main(void *arg)
{
    struct worker *w = arg;
    struct sink k = {0};
    const json_t *cfg = w->def.config;
    struct followed *f = calloc(1, sizeof(*f));
    uint64_t wait_ms = 0;
    int earliest = strcmp(json_string_value(json_object_get(cfg, "start")), "earliest") == 0;
    if (!f || open_sink(&k, w) < 0)
        goto out;
    k.f = f;
    int stable = (k.info.flags & SL_SINK_STABLE_BATCHES) != 0;
    const char *first = json_string_value(json_array_get(w->def.strands, 0));
    f->all = json_array_size(w->def.strands) == 1 && first && strcmp(first, "*") == 0;
    for (size_t i = 0; !f->all && i < json_array_size(w->def.strands) && i < MAX_STRANDS; i++) {
        const char *name = json_string_value(json_array_get(w->def.strands, i));
        struct sl_err err = {0};
        struct sl_strand *st;
        if (sl_store_strand(w->store, name, strlen(name), 1, &st, &err) < 0) {
            sl_error("connector %s: strand %s: %s", w->def.id, name, err.msg);
            goto out;
        }
        follow(&k, f, st, earliest);
    }
    follow_new(&k, f, earliest);
    sl_registry_set_lag(w->reg, w->def.id, lag_of(f)); /* known from here on */
    if (health(&k, f))
        goto out;
    sl_registry_set_source_status(w->reg, w->def.id, NULL, NULL); /* running */
    struct sl_strand **s = f->s;
    uint64_t *cur = f->cur, *plan = f->plan, *since = f->since;
    int *dirty = f->dirty;
    sl_info("connector %s (%s): delivering", w->def.id, w->conn->name);
    while (!sl_worker_stopped(w)) {
        int sent = 0;
        uint64_t bell = sl_strand_bell(); /* read before looking: no commit is missed */
        follow_new(&k, f, earliest);
        size_t ns = f->n;
        uint64_t head0 = ns ? sl_strand_count(s[0]) : 0;
        wait_ms = UINT64_MAX;
        for (size_t i = 0; i < ns && !sl_worker_stopped(w); i++) {
            uint64_t head = sl_strand_count(s[i]), n = 0, done = 0;
            if (cur[i] >= head ||
                !due(&k, s[i], cur[i], head, &plan[i], &since[i], dirty[i], &n, &wait_ms))
                continue;
            int d = k.info.max_inflight > 1 && k.ops->flush && !stable && k.breaker == BR_CLOSED &&
                            !k.tr
                        ? pipeline(&k, s[i], cur[i], head, &done)
                        : deliver_tr(&k, s[i], cur[i], n, &done);
            if (done) {
                cur[i] += done;
                dirty[i] = 1;
                sent = 1;
            }
            if (d == 2)
                __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE); /* failed: this worker ends */
            if (d != 0)
                break;
            if (stable) /* durable before the next batch is planned */
                persist_cursors(w, s + i, cur + i, dirty + i, 1);
        }
        /* The cursor is persisted at most every 5 ms while records come, within 5 ms once
         * caught up (the wait below is cut short for it), and when stopping: a crash re-delivers
         * at most ~5 ms of records (at-least-once), and a connector does not pay a metadata
         * commit per request. */
        uint64_t now = sl_mono_ns();
        if (sl_worker_stopped(w) || now - k.persisted_ns >= CURSOR_EVERY_NS) {
            if (persist_cursors(w, s, cur, dirty, ns))
                k.persisted_ns = now;
        } else if (!sent) {
            for (size_t i = 0; i < ns; i++)
                if (dirty[i]) {
                    uint64_t left = (k.persisted_ns + CURSOR_EVERY_NS - now + 999999) / 1000000;
                    if (left < wait_ms)
                        wait_ms = left;
                    break;
                }
        }
        if (sl_registry_take_replay(w->reg, w->def.id))
            replay_dead_letters(&k, s, ns);
        sl_registry_set_lag(w->reg, w->def.id, lag_of(f));
        /* woken by the next commit (of its one strand, or of any strand: the bell); a timeout
         * to see a stop, a due linger or a replay request */
        if (!sent) {
            int t = 100;
            if (wait_ms < (uint64_t)t)
                t = (int)wait_ms + 1;
            if (ns == 1 && !f->all) /* a lingering batch waits for more records than it saw */
                sl_strand_wait(s[0], k.info.linger_ms ? head0 : cur[0], t);
            else
                sl_strand_bell_wait(bell, t);
        }
    }
    size_t ns = f->n;
    if ((k.info.flags & SL_SINK_FLUSH_ON_SHUTDOWN) &&
        __atomic_load_n(&w->drain, __ATOMIC_ACQUIRE)) {
        /* a clean shutdown sends the pending records first: one attempt per batch, for ten
         * seconds at most; what is not accepted stays behind the cursor for the next start */
        k.final = 1;
        uint64_t until = k.final_until = sl_mono_ns() + 10000000000ull;
        for (size_t i = 0; i < ns; i++) {
            uint64_t head, n = 0, done = 0;
            while ((head = sl_strand_count(s[i])) > cur[i] && sl_mono_ns() < until) {
                persist_cursors(w, s + i, cur + i, dirty + i, 1);
                if (!due(&k, s[i], cur[i], head, &plan[i], &since[i], dirty[i], &n, &wait_ms))
                    break;
                int d = deliver_tr(&k, s[i], cur[i], n, &done);
                cur[i] += done;
                dirty[i] = done > 0;
                persist_cursors(w, s + i, cur + i, dirty + i, 1);
                if (d != 0)
                    break;
            }
        }
    }
    persist_cursors(w, s, cur, dirty, ns);
out:
    free(f);
    if (k.ops && k.self && k.ops->close)
        k.ops->close(k.self);
    free(k.recs);
    free(k.hashes);
    for (size_t i = 0; k.tbufs && i < k.recs_cap; i++)
        sl_buf_release(&k.tbufs[i]);
    free(k.tbufs);
    sl_transforms_free(k.tr);
    __atomic_store_n(&w->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}
