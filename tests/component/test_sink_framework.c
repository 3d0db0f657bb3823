/* Component test of the sink framework (src/engine/sink_worker.c): the engine runs in-process
 * (store + registry + engine in a temporary directory) with a scriptable fake sink registered at
 * run time (sl_kinds_add, kind "fake") and a fake clock whose naps advance fake time at once. So
 * the retry schedule, Retry-After, the circuit breaker, dead letters and their replay, partial
 * acceptance, "failed" and restart, cursors across an engine restart and ordering are checked
 * with no network and no sleeping: the test waits on a condition variable (with a deadline) for
 * what the fake sink and the fake clock record.
 *
 * Each check uses its own strand and its own "lane" (the fake's script and log, chosen by the
 * connector's config.lane). Counters, dead letters and the breaker are read while the worker is
 * parked in the held send of a sentinel record (settle()), so that the worker is done with every
 * earlier batch; the connector is then disabled (its close() is the point after which its
 * persisted cursor is final) and deleted. */
#include "core/log.h"
#include "engine/engine.h"
#include "engine/kinds.h"
#include "engine/meta.h"
#include "engine/registry.h"
#include "engine/worker.h"
#include "strand/store.h"
#include "t.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define NLANES 16
#define MAX_STEPS 32
#define MAX_SENDS 256
#define MAX_NAPS 64
#define MAX_BATCH 64
#define WAIT_SECONDS 10

/* ---- the fake sink: a script of results per lane, and a log of what it was sent ---- */

struct step {
    enum sl_result r;
    long retry_after_ms; /* Retry-After, or -1 */
    size_t accepted;     /* records [0, accepted) stored for good */
    size_t reject[4];    /* SL_R_REJECT: indexes of the refused records; none = every one */
    size_t n_reject;
    int status;
    int hold; /* block in send() until the worker is stopped, then return RETRY (see settle()) */
};

struct sent {
    uint64_t first; /* seq of the batch's first record */
    size_t n;       /* records in the batch */
    int contiguous; /* seqs are first, first + 1, ... */
    int payload_ok; /* every payload holds the seq its record was appended at */
    enum sl_result r;
    size_t accepted;
    char breaker[16]; /* stats.breaker in the registry during the call */
};

struct lane {
    char id[16]; /* the connector that opened this lane */
    struct step steps[MAX_STEPS];
    size_t n_steps, next_step; /* past the script every send returns SL_R_OK */
    struct sent sends[MAX_SENDS];
    size_t n_sends;
    uint64_t naps[MAX_NAPS]; /* milliseconds the worker asked the clock to sleep */
    char nap_breaker[MAX_NAPS][16];
    char nap_error[MAX_NAPS][64]; /* last_error while it napped ("(null)" when none) */
    long long nap_lag[MAX_NAPS];  /* stats.lag while it napped */
    size_t n_naps;
    int opens, closes;
    size_t reject[4];            /* outcome.reject points here until the next send */
    int (*cancelled)(void *arg); /* the open sink's ctx: tells a held send to return */
    void *cancel_arg;
    int inflight;                   /* config.inflight > 1: send() queues, flush() answers */
    struct step pending[MAX_STEPS]; /* queued batches' results, oldest first */
    size_t n_pending, max_pending, flushes;
    int gate_closed; /* ready() answers "not yet" until the test opens it */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast on every open, send, nap and close */
    struct lane lanes[NLANES];
    uint64_t mono_ns; /* the fake monotonic clock */
    struct sl_registry *reg;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .mono_ns = 1000000000000};

static const char *result_name(enum sl_result r)
{
    static const char *const names[] = {"ok",     "queued", "retry", "not_connected",
                                        "reject", "fatal"};
    return (unsigned)r < 6 ? names[r] : "?";
}

/* stats.breaker, last_error and stats.lag of connector id (the registry's view at this moment).
 * Not under g.mu. */
static void view_of(struct sl_registry *reg, const char *id, char br[16], char error[64],
                    long long *lag)
{
    json_t *c = reg ? sl_registry_get(reg, id, NULL) : NULL;
    const char *b = json_string_value(json_object_get(json_object_get(c, "stats"), "breaker"));
    const char *e = json_string_value(json_object_get(c, "last_error"));
    snprintf(br, 16, "%s", b ? b : "?");
    snprintf(error, 64, "%s", e ? e : "(null)");
    *lag = json_integer_value(json_object_get(json_object_get(c, "stats"), "lag"));
    json_decref(c);
}

/* The payload of the record appended at seq (see append()): its own seq, MessagePack. */
static void encode_seq(uint8_t p[5], uint64_t seq)
{
    p[0] = 0xce; /* MessagePack uint 32 */
    p[1] = (uint8_t)(seq >> 24);
    p[2] = (uint8_t)(seq >> 16);
    p[3] = (uint8_t)(seq >> 8);
    p[4] = (uint8_t)seq;
}

static int fake_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                     struct sl_err *err)
{
    struct lane *l = &g.lanes[json_integer_value(json_object_get(ctx->config, "lane"))];
    const json_t *bm = json_object_get(ctx->config, "batch_max");
    if (bm)
        info->batch_max = (uint64_t)json_integer_value(bm);
    const json_t *inf = json_object_get(ctx->config, "inflight");
    l->inflight = inf ? (int)json_integer_value(inf) : 0;
    info->max_inflight = (unsigned)l->inflight;
    pthread_mutex_lock(&g.mu);
    snprintf(l->id, sizeof(l->id), "%s", ctx->id);
    l->cancelled = ctx->cancelled;
    l->cancel_arg = ctx->arg;
    l->opens++;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    *self = l;
    return 0;
}

static enum sl_result fake_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct lane *l = self;
    struct sent s = {
        .first = b->n ? b->recs[0].seq : 0, .n = b->n, .contiguous = 1, .payload_ok = 1};
    for (size_t i = 0; i < b->n; i++) {
        uint8_t want[5];
        encode_seq(want, b->recs[i].seq);
        s.contiguous &= b->recs[i].seq == s.first + i;
        s.payload_ok &= b->recs[i].payload_len == 5 && memcmp(b->recs[i].payload, want, 5) == 0;
    }
    pthread_mutex_lock(&g.mu);
    struct sl_registry *reg = g.reg;
    pthread_mutex_unlock(&g.mu);
    char error[64];
    long long lag;
    view_of(reg, l->id, s.breaker, error, &lag);

    pthread_mutex_lock(&g.mu);
    struct step st = {.r = SL_R_OK, .retry_after_ms = -1};
    if (l->next_step < l->n_steps)
        st = l->steps[l->next_step++];
    out->accepted = st.accepted;
    out->retry_after_ms = st.retry_after_ms;
    out->status = st.status;
    if (st.n_reject) {
        memcpy(l->reject, st.reject, sizeof(l->reject));
        out->reject = l->reject;
        out->n_reject = st.n_reject;
    }
    if (st.r != SL_R_OK) {
        snprintf(out->error, sizeof(out->error), "fake: %s (send %zu)", result_name(st.r),
                 l->n_sends);
        snprintf(out->excerpt, sizeof(out->excerpt), "{\"fake\":\"%s\"}", result_name(st.r));
    }
    s.r = st.r;
    s.accepted = st.accepted;
    if (l->n_sends < MAX_SENDS)
        l->sends[l->n_sends++] = s;
    pthread_cond_broadcast(&g.cv);
    if (l->inflight > 1 && !st.hold && l->n_pending < MAX_STEPS) { /* in flight: flush() answers */
        l->pending[l->n_pending++] = st;
        if (l->n_pending > l->max_pending)
            l->max_pending = l->n_pending;
        pthread_mutex_unlock(&g.mu);
        return SL_R_QUEUED;
    }
    /* A held send stands for a request in flight: it ends when the worker is told to stop, which
     * has no notification of its own, so the flag is polled like a transfer would poll it. */
    while (st.hold && !l->cancelled(l->cancel_arg)) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += 2000000;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g.cv, &g.mu, &dl);
    }
    pthread_mutex_unlock(&g.mu);
    return st.r;
}

/* The oldest queued batch's result, with its outcome, as a pipelining sink reports it. */
static enum sl_result fake_flush(void *self, struct sl_outcome *out)
{
    struct lane *l = self;
    pthread_mutex_lock(&g.mu);
    struct step st = {.r = SL_R_NOT_CONNECTED, .retry_after_ms = -1};
    if (l->n_pending) {
        st = l->pending[0];
        memmove(l->pending, l->pending + 1, --l->n_pending * sizeof(l->pending[0]));
    }
    l->flushes++;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    out->accepted = st.accepted;
    out->retry_after_ms = st.retry_after_ms;
    out->status = st.status;
    if (st.r != SL_R_OK)
        snprintf(out->error, sizeof(out->error), "fake: %s (flushed)", result_name(st.r));
    return st.r;
}

/* The oldest batch in flight is answered unless the lane's gate is closed. */
static int fake_ready(void *self, int timeout_ms)
{
    struct lane *l = self;
    pthread_mutex_lock(&g.mu);
    if (l->gate_closed) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_nsec += (long)timeout_ms * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g.cv, &g.mu, &dl);
    }
    int ready = !l->gate_closed;
    pthread_mutex_unlock(&g.mu);
    return ready;
}

static void fake_close(void *self)
{
    struct lane *l = self;
    pthread_mutex_lock(&g.mu);
    l->closes++;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

static const struct sl_sink_ops fake_ops = {.open = fake_open,
                                            .send = fake_send,
                                            .flush = fake_flush,
                                            .close = fake_close,
                                            .ready = fake_ready};

static const struct sl_field fake_fields[] = {
    {"lane", SL_F_INT, 0, "0", 0, "Which script and log of the test this connector uses.", 0,
     NLANES - 1, NULL, NULL},
    {"batch_max", SL_F_INT, 0, NULL, 0, "Records per send (sl_sink_info.batch_max).", 1, MAX_BATCH,
     NULL, NULL},
    {"inflight", SL_F_INT, 0, NULL, 0, "Batches in flight (sl_sink_info.max_inflight).", 0, 16,
     NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_connector fake_kind = {
    .abi = SL_CONNECTOR_ABI,
    .name = "fake",
    .direction = SL_OUTBOUND,
    .category = "utility",
    .description = "A scriptable sink for component tests.",
    .fields = fake_fields,
    .sink = &fake_ops,
};

/* ---- the fake clock ---- */

static uint64_t fake_mono_ns(void *arg)
{
    pthread_mutex_lock(&g.mu);
    uint64_t v = g.mono_ns;
    pthread_mutex_unlock(&g.mu);
    return v;
}

static int fake_nap(void *arg, struct worker *w, uint64_t ms)
{
    char br[16], error[64];
    long long lag;
    view_of(w->reg, w->def.id, br, error, &lag);
    pthread_mutex_lock(&g.mu);
    for (int i = 0; i < NLANES; i++) {
        struct lane *l = &g.lanes[i];
        if (strcmp(l->id, w->def.id) == 0 && l->n_naps < MAX_NAPS) {
            l->naps[l->n_naps] = ms;
            snprintf(l->nap_breaker[l->n_naps], 16, "%s", br);
            snprintf(l->nap_error[l->n_naps], 64, "%s", error);
            l->nap_lag[l->n_naps] = lag;
            l->n_naps++;
        }
    }
    g.mono_ns += ms * 1000000u;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    return sl_worker_stopped(w);
}

static const struct sl_clock fake_clock = {.mono_ns = fake_mono_ns, .nap = fake_nap};

/* ---- the test's side ---- */

struct env {
    char dir[64];
    struct sl_store *store;
    struct sl_registry *reg;
    struct sl_engine *eng;
};

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *o = json_loads(s, 0, &e);
    if (!o) {
        fprintf(stderr, "bad JSON in test: %s: %s\n", e.text, s);
        abort();
    }
    return o;
}

static void script(int lane, const struct step *steps, size_t n)
{
    pthread_mutex_lock(&g.mu);
    struct lane *l = &g.lanes[lane];
    for (size_t i = 0; i < n && l->n_steps < MAX_STEPS; i++)
        l->steps[l->n_steps++] = steps[i];
    pthread_mutex_unlock(&g.mu);
}

/* A copy of what a lane recorded so far. */
static void snapshot(int lane, struct lane *out)
{
    pthread_mutex_lock(&g.mu);
    *out = g.lanes[lane];
    pthread_mutex_unlock(&g.mu);
}

/* Records the lane's sends have taken for good: all of an OK batch, the accepted prefix of
 * others. */
static size_t accepted_total(const struct lane *l)
{
    size_t t = 0;
    for (size_t i = 0; i < l->n_sends; i++)
        t += l->sends[i].r == SL_R_OK ? l->sends[i].n : l->sends[i].accepted;
    return t;
}

enum { SENDS, CLOSES, OPENS, ACCEPTED, FLUSHES };

static size_t counter(const struct lane *l, int what)
{
    return what == SENDS     ? l->n_sends
           : what == CLOSES  ? (size_t)l->closes
           : what == OPENS   ? (size_t)l->opens
           : what == FLUSHES ? l->flushes
                             : accepted_total(l);
}

static size_t lane_count(int lane, int what)
{
    pthread_mutex_lock(&g.mu);
    size_t v = counter(&g.lanes[lane], what);
    pthread_mutex_unlock(&g.mu);
    return v;
}

/* Waits (10 s at most) until the lane's counter `what` reaches want; 1 if it did. */
static int wait_for(int lane, int what, size_t want)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += WAIT_SECONDS;
    pthread_mutex_lock(&g.mu);
    const struct lane *l = &g.lanes[lane];
    int ok, rc = 0;
    for (;;) {
        ok = counter(l, what) >= want;
        if (ok || rc == ETIMEDOUT)
            break;
        rc = pthread_cond_timedwait(&g.cv, &g.mu, &dl);
    }
    pthread_mutex_unlock(&g.mu);
    if (!ok)
        fprintf(stderr, "lane %d: timed out waiting for counter %d to reach %zu\n", lane, what,
                want);
    return ok;
}

static struct sl_strand *strand_of(struct env *e, const char *name)
{
    struct sl_strand *s = NULL;
    struct sl_err err = {0};
    if (sl_store_strand(e->store, name, strlen(name), 1, &s, &err) != 0) {
        fprintf(stderr, "strand %s: %s\n", name, err.msg);
        abort();
    }
    return s;
}

/* Appends n records to strand in one commit (so they become visible together); the payload of
 * each is its own seq. */
static void append(struct env *e, const char *strand, size_t n)
{
    struct sl_strand *s = strand_of(e, strand);
    uint64_t base = sl_strand_count(s); /* the only writer: seqs are base .. base + n - 1 */
    uint8_t pay[MAX_BATCH][5];
    struct sl_append_rec recs[MAX_BATCH];
    uint8_t hashes[MAX_BATCH][SL_HASH_LEN];
    for (size_t i = 0; i < n; i++) {
        encode_seq(pay[i], base + i);
        recs[i] = (struct sl_append_rec){
            .payload = pay[i], .payload_len = 5, .source = "test", .source_len = 4};
    }
    struct sl_append a = {.recs = recs, .n = n, .hashes = hashes};
    struct sl_err err = {0};
    if (n > MAX_BATCH || sl_strand_append_wait(s, &a, &err) != 0 || a.first_seq != base) {
        fprintf(stderr, "append to %s: %s\n", strand, err.msg);
        abort();
    }
}

/* Creates a fake connector on strand (config.lane = lane, plus the JSON members in extra), pins
 * its cursor at the strand's head as the API does (pin_start), and, if enabled, starts its
 * worker. Returns its id (malloc'ed). */
static char *create_as(struct env *e, int lane, const char *strand, const char *extra, int enabled)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"kind\":\"fake\",\"strands\":[\"%s\"],\"enabled\":%s,"
             "\"config\":{\"lane\":%d%s%s}}",
             strand, strand, enabled ? "true" : "false", lane, extra ? "," : "",
             extra ? extra : "");
    json_t *b = J(body);
    struct sl_err err = {0};
    json_t *c = sl_registry_create(e->reg, b, &err);
    json_decref(b);
    if (!c) {
        fprintf(stderr, "create %s: %s\n", body, err.msg);
        abort();
    }
    char *id = strdup(json_string_value(json_object_get(c, "id")));
    json_decref(c);
    struct sl_strand *s = strand_of(e, strand);
    sl_meta_init_cursor(sl_registry_meta(e->reg), id, strand, sl_strand_count(s), NULL);
    sl_registry_changed(e->reg);
    return id;
}

static char *create(struct env *e, int lane, const char *strand, const char *extra)
{
    return create_as(e, lane, strand, extra, 1);
}

static void enable(struct env *e, const char *id)
{
    json_t *b = J("{\"enabled\":true}");
    json_t *c = sl_registry_patch(e->reg, id, b, NULL);
    if (!c)
        abort();
    sl_registry_changed(e->reg); /* as the API does after a PATCH */
    json_decref(b);
    json_decref(c);
}

/* Disables the connector and waits for its worker to close the sink: from then on everything the
 * worker did (counters, dead letters, the persisted cursor) is visible. */
static int quiesce(struct env *e, const char *id, int lane)
{
    size_t closes = lane_count(lane, CLOSES);
    json_t *b = J("{\"enabled\":false}");
    json_t *c = sl_registry_patch(e->reg, id, b, NULL);
    sl_registry_changed(e->reg); /* as the API does after a PATCH */
    json_decref(b);
    json_decref(c);
    return c && wait_for(lane, CLOSES, closes + 1);
}

/* Appends a sentinel record whose send is held (a request in flight) until quiesce(): once the
 * fake sink is in that send, the worker is done with every earlier batch (its counters, dead
 * letters, breaker state and replays), and nothing changes until the connector is disabled. The
 * held send then returns RETRY, so the sentinel stays behind the cursor and counts nowhere.
 * Returns the sentinel's seq, or UINT64_MAX if its send did not come (next). */
static uint64_t settle(struct env *e, int lane, const char *strand)
{
    struct step hold = {SL_R_RETRY, -1, 0, {0}, 0, 0, 1};
    script(lane, &hold, 1);
    size_t n = lane_count(lane, SENDS);
    uint64_t seq = sl_strand_count(strand_of(e, strand));
    append(e, strand, 1);
    if (!wait_for(lane, SENDS, n + 1))
        return UINT64_MAX;
    pthread_mutex_lock(&g.mu);
    const struct sent *s = &g.lanes[lane].sends[n];
    int ok = s->first == seq && s->n == 1;
    pthread_mutex_unlock(&g.mu);
    return ok ? seq : UINT64_MAX;
}

static void drop(struct env *e, char *id)
{
    sl_registry_delete(e->reg, id, NULL);
    free(id);
}

static json_t *conn(struct env *e, const char *id)
{
    json_t *c = sl_registry_get(e->reg, id, NULL);
    return c ? c : json_object();
}

static long long stat_of(const json_t *c, const char *k)
{
    return json_integer_value(json_object_get(json_object_get(c, "stats"), k));
}

static const char *str_of(const json_t *c, const char *k)
{
    const char *v = json_string_value(json_object_get(c, k));
    return v ? v : "(null)";
}

static uint64_t cursor(struct env *e, const char *id, const char *strand)
{
    uint64_t seq = UINT64_MAX;
    sl_meta_get_cursor(sl_registry_meta(e->reg), id, strand, &seq);
    return seq;
}

/* The dead letters' seqs, in order, as "1,2" (empty when none). */
static void dead_seqs(struct env *e, const char *id, char *out, size_t len)
{
    json_t *a = sl_meta_dead_letters(sl_registry_meta(e->reg), id, 100);
    size_t i;
    json_t *d;
    out[0] = 0;
    json_array_foreach(a, i, d)
    {
        size_t at = strlen(out);
        snprintf(out + at, len - at, "%s%lld", i ? "," : "",
                 (long long)json_integer_value(json_object_get(d, "seq")));
    }
    json_decref(a);
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* ---- the checks ---- */

/* "first+n" of every send of a lane, e.g. " 0+2 2+1". */
static void sends_str(const struct lane *l, char *out, size_t len)
{
    out[0] = 0;
    for (size_t i = 0; i < l->n_sends; i++) {
        size_t at = strlen(out);
        snprintf(out + at, len - at, " %llu+%zu", (unsigned long long)l->sends[i].first,
                 l->sends[i].n);
    }
}

static void check_retry_schedule(struct env *e)
{
    const int L = 1;
    const uint64_t initial = 100, max = 250;
    struct step st[] = {{SL_R_RETRY, -1, 0, {0}, 0, 503, 0},
                        {SL_R_RETRY, -1, 0, {0}, 0, 503, 0},
                        {SL_R_RETRY, -1, 0, {0}, 0, 503, 0}};
    script(L, st, 3);
    char *id =
        create(e, L, "c1-retry", "\"retry\":{\"initial_backoff_ms\":100,\"max_backoff_ms\":250}");
    append(e, "c1-retry", 1);
    T_CHECK(wait_for(L, SENDS, 4) && settle(e, L, "c1-retry") == 1,
            "1. retry: the record is sent four times");
    struct lane l;
    snapshot(L, &l);
    T_EQ_INT(l.n_naps, 3, "1. retry: three RETRYs make three naps");
    for (size_t k = 1; k <= l.n_naps && k <= 3; k++) {
        uint64_t cap = min_u64(initial << (k - 1), max);
        T_CHECK(l.naps[k - 1] <= cap,
                "1. retry: nap %zu is %llu ms, within [0, min(100 * 2^%zu, 250)] = [0, %llu] "
                "(full jitter)",
                k, (unsigned long long)l.naps[k - 1], k - 1, (unsigned long long)cap);
    }
    int once = l.n_sends == 5;
    for (size_t i = 0; i < 4 && i < l.n_sends; i++)
        once &= l.sends[i].first == 0 && l.sends[i].n == 1 && (l.sends[i].r == SL_R_OK) == (i == 3);
    T_CHECK(once, "1. retry: the same record each time, delivered once (OK on the 4th, then the "
                  "next record)");
    for (size_t k = 0; k < l.n_naps && k < 3; k++) {
        char want[64];
        snprintf(want, sizeof(want), "fake: retry (send %zu)", k);
        T_EQ_STR(l.nap_error[k], want, "1. retry: while it waits, last_error is the failure");
        T_EQ_INT(l.nap_lag[k], 1, "1. retry: while it waits, stats.lag counts the record");
    }
    json_t *c = conn(e, id);
    T_CHECK(json_is_null(json_object_get(c, "last_error")),
            "1. retry: delivered, last_error is cleared (\"%s\")", str_of(c, "last_error"));
    T_CHECK(stat_of(c, "delivered") == 1 && stat_of(c, "retried") == 1 && stat_of(c, "failed") == 3,
            "1. retry: stats delivered 1, retried 1, failed 3 (got %lld, %lld, %lld)",
            stat_of(c, "delivered"), stat_of(c, "retried"), stat_of(c, "failed"));
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "1. retry: disabled");
    T_EQ_INT(cursor(e, id, "c1-retry"), 1, "1. retry: the cursor passed the record");
    drop(e, id);
}

static void check_retry_after(struct env *e)
{
    const int L = 2;
    struct step st[] = {{SL_R_RETRY, 7000, 0, {0}, 0, 429, 0}};
    script(L, st, 1);
    char *id =
        create(e, L, "c2-after", "\"retry\":{\"initial_backoff_ms\":100,\"max_backoff_ms\":1000}");
    append(e, "c2-after", 1);
    T_CHECK(wait_for(L, SENDS, 2) && settle(e, L, "c2-after") == 1,
            "2. Retry-After: the record is sent again");
    struct lane l;
    snapshot(L, &l);
    T_CHECK(l.n_naps == 1 && l.naps[0] >= 7000,
            "2. Retry-After: 7000 ms (above the 1000 ms backoff cap) makes the nap >= 7000 ms "
            "(%zu nap(s), first %llu ms)",
            l.n_naps, (unsigned long long)(l.n_naps ? l.naps[0] : 0));
    T_CHECK(l.n_sends == 3 && l.sends[1].first == 0 && l.sends[1].r == SL_R_OK,
            "2. Retry-After: then delivered");
    T_CHECK(quiesce(e, id, L), "2. Retry-After: disabled");
    drop(e, id);
}

static void check_breaker(struct env *e)
{
    const int L = 3;
    struct step st[] = {{SL_R_RETRY, -1, 0, {0}, 0, 503, 0},
                        {SL_R_NOT_CONNECTED, -1, 0, {0}, 0, 0, 0}};
    script(L, st, 2);
    char *id = create(e, L, "c3-breaker",
                      "\"retry\":{\"initial_backoff_ms\":100,\"max_backoff_ms\":100},"
                      "\"circuit_breaker\":{\"failure_threshold\":2,\"reset_timeout_secs\":30,"
                      "\"success_threshold\":1}");
    append(e, "c3-breaker", 1);
    T_CHECK(wait_for(L, SENDS, 3) && settle(e, L, "c3-breaker") == 1,
            "3. breaker: two failures, then a trial send");
    struct lane l;
    snapshot(L, &l);
    T_CHECK(l.n_naps == 2 && strcmp(l.nap_breaker[0], "closed") == 0 && l.naps[0] <= 100,
            "3. breaker: after one failure it is still closed (a backoff nap of %llu ms, breaker "
            "%s)",
            (unsigned long long)(l.n_naps ? l.naps[0] : 0), l.n_naps ? l.nap_breaker[0] : "-");
    T_CHECK(l.n_naps == 2 && strcmp(l.nap_breaker[1], "open") == 0,
            "3. breaker: two failures open it (stats.breaker \"%s\" while it waits)",
            l.n_naps == 2 ? l.nap_breaker[1] : "-");
    T_CHECK(l.n_naps == 2 && strcmp(l.nap_error[1], "fake: not_connected (send 1)") == 0,
            "3. breaker: while open, last_error says why (\"%s\")",
            l.n_naps == 2 ? l.nap_error[1] : "-");
    T_CHECK(l.n_naps == 2 && l.naps[1] >= 30000 && l.naps[1] <= 30001,
            "3. breaker: the open state waits reset_timeout_secs (%llu ms), nothing sent meanwhile",
            (unsigned long long)(l.n_naps == 2 ? l.naps[1] : 0));
    T_CHECK(l.n_sends == 4 && strcmp(l.sends[2].breaker, "half_open") == 0 &&
                l.sends[2].r == SL_R_OK,
            "3. breaker: then one trial send, half open (\"%s\")",
            l.n_sends >= 3 ? l.sends[2].breaker : "-");
    json_t *c = conn(e, id);
    T_EQ_STR(json_string_value(json_object_get(json_object_get(c, "stats"), "breaker")), "closed",
             "3. breaker: the successful trial closes it (success_threshold 1)");
    json_decref(c);
    T_CHECK(l.n_sends == 4 && strcmp(l.sends[3].breaker, "closed") == 0,
            "3. breaker: the next record is sent with the breaker closed");
    T_CHECK(quiesce(e, id, L), "3. breaker: disabled");
    drop(e, id);
}

static void check_dead_letters_replay(struct env *e)
{
    const int L = 4;
    struct step st[] = {{SL_R_OK, -1, 0, {0}, 0, 0, 0},
                        {SL_R_REJECT, -1, 0, {0}, 0, 422, 0},
                        {SL_R_REJECT, -1, 0, {0}, 0, 422, 0}};
    script(L, st, 3);
    char *id = create(e, L, "c4-dead", NULL);
    append(e, "c4-dead", 4);
    /* the send of seq 3 comes after the worker has dead-lettered seqs 1 and 2 */
    T_CHECK(wait_for(L, SENDS, 4), "4. dead letters: four records sent");
    struct lane l;
    snapshot(L, &l);
    int order = l.n_sends == 4;
    for (size_t i = 0; i < l.n_sends && i < 4; i++)
        order &= l.sends[i].first == i && l.sends[i].n == 1;
    T_CHECK(order,
            "4. dead letters: each sent once, in order: the cursor passes the rejected ones");
    char seqs[128];
    dead_seqs(e, id, seqs, sizeof(seqs));
    T_EQ_STR(seqs, "1,2", "4. dead letters: the two rejected records are dead letters");
    json_t *a = sl_meta_dead_letters(sl_registry_meta(e->reg), id, 100);
    json_t *d = json_array_get(a, 0);
    T_CHECK(d && strcmp(str_of(d, "strand"), "c4-dead") == 0 &&
                json_integer_value(json_object_get(d, "last_status")) == 422 &&
                strstr(str_of(d, "last_error"), "fake: reject") &&
                strlen(str_of(d, "record_hash")) == 64,
            "4. dead letters: with strand, status 422, the sink's error and the record hash");
    json_decref(a);
    json_t *c = conn(e, id);
    T_EQ_INT(stat_of(c, "dead_lettered"), 2, "4. dead letters: stats.dead_lettered");
    json_decref(c);

    /* the replay runs in the worker's loop; the sentinel's send comes after it */
    T_CHECK(sl_registry_request_replay(e->reg, id, NULL) == 0 && wait_for(L, SENDS, 6) &&
                settle(e, L, "c4-dead") == 4,
            "4. replay: requested, the dead letters are sent again");
    snapshot(L, &l);
    T_CHECK(l.n_sends == 7 && l.sends[4].first == 1 && l.sends[5].first == 2 &&
                l.sends[4].r == SL_R_OK && l.sends[5].r == SL_R_OK,
            "4. replay: seqs 1 and 2 sent again and accepted");
    dead_seqs(e, id, seqs, sizeof(seqs));
    T_EQ_STR(seqs, "", "4. replay: accepted, they leave the dead-letter list");
    c = conn(e, id);
    T_EQ_INT(stat_of(c, "delivered"), 4, "4. replay: stats.delivered counts the replayed ones");
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "4. replay: disabled");
    T_EQ_INT(cursor(e, id, "c4-dead"), 4, "4. replay: the cursor stays past them");
    drop(e, id);
}

static void check_reject_some(struct env *e)
{
    const int L = 5;
    struct step st[] = {{SL_R_REJECT, -1, 0, {1}, 1, 400, 0}};
    script(L, st, 1);
    char *id = create(e, L, "c5-reject-one", "\"batch_max\":3");
    append(e, "c5-reject-one", 3);
    T_CHECK(wait_for(L, SENDS, 1) && settle(e, L, "c5-reject-one") == 3,
            "5. partial reject: a batch sent");
    struct lane l;
    snapshot(L, &l);
    T_CHECK(l.n_sends == 2 && l.sends[0].first == 0 && l.sends[0].n == 3,
            "5. partial reject: one batch of 3 (batch_max from open), not sent again");
    char seqs[128];
    dead_seqs(e, id, seqs, sizeof(seqs));
    T_EQ_STR(seqs, "1", "5. partial reject: only the refused record (index 1) is a dead letter");
    json_t *c = conn(e, id);
    T_CHECK(stat_of(c, "delivered") == 2 && stat_of(c, "dead_lettered") == 1,
            "5. partial reject: the other two count as delivered (delivered %lld, dead_lettered "
            "%lld)",
            stat_of(c, "delivered"), stat_of(c, "dead_lettered"));
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "5. partial reject: disabled");
    T_EQ_INT(cursor(e, id, "c5-reject-one"), 3, "5. partial reject: the cursor passes the batch");
    drop(e, id);
}

static void check_partial_accept(struct env *e)
{
    const int L = 6;
    struct step st[] = {{SL_R_RETRY, -1, 2, {0}, 0, 503, 0}};
    script(L, st, 1);
    char *id =
        create(e, L, "c6-partial",
               "\"batch_max\":4,\"retry\":{\"initial_backoff_ms\":10,\"max_backoff_ms\":10}");
    append(e, "c6-partial", 4);
    T_CHECK(wait_for(L, SENDS, 2) && settle(e, L, "c6-partial") == 4,
            "6. partial accept: sent twice");
    struct lane l;
    snapshot(L, &l);
    char got[256];
    sends_str(&l, got, sizeof(got));
    T_EQ_STR(got, " 0+4 2+2 4+1",
             "6. partial accept: after accepted = 2 and RETRY the next send starts at the third "
             "record (sends as first+n)");
    T_CHECK(l.n_sends == 3 && l.sends[1].contiguous, "6. partial accept: seqs 2, 3");
    json_t *c = conn(e, id);
    T_EQ_INT(stat_of(c, "delivered"), 4, "6. partial accept: stats.delivered");
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "6. partial accept: disabled");
    T_EQ_INT(cursor(e, id, "c6-partial"), 4, "6. partial accept: the cursor passes the batch");
    drop(e, id);
}

/* A RETRY whose `accepted` covers the whole batch: every record is stored for good (the
 * contract: "records [0, accepted) are stored for good, whatever the result"), so nothing is
 * left to send: no empty batch, no backoff. The connector is enabled once its two records and
 * the sentinel are in the strand, so the batches are the same every run. */
static void check_accept_all_then_retry(struct env *e)
{
    const int L = 11;
    struct step st[] = {{SL_R_RETRY, -1, 2, {0}, 0, 503, 0}, {SL_R_RETRY, -1, 0, {0}, 0, 0, 1}};
    script(L, st, 2);
    char *id = create_as(e, L, "c6b-accept-all", "\"batch_max\":2", 0);
    append(e, "c6b-accept-all", 2);
    append(e, "c6b-accept-all", 1); /* the sentinel: its send is held (step 2) */
    enable(e, id);
    T_CHECK(wait_for(L, SENDS, 2), "6b. accepted = n: two sends");
    struct lane l;
    snapshot(L, &l);
    char got[256];
    sends_str(&l, got, sizeof(got));
    T_EQ_STR(got, " 0+2 2+1",
             "6b. accepted = n with RETRY: the batch is done, no empty batch is sent (first+n)");
    T_EQ_INT(l.n_naps, 0, "6b. accepted = n with RETRY: no backoff");
    json_t *c = conn(e, id);
    T_EQ_INT(stat_of(c, "delivered"), 2, "6b. accepted = n with RETRY: stats.delivered");
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "6b. accepted = n: disabled");
    T_EQ_INT(cursor(e, id, "c6b-accept-all"), 2, "6b. accepted = n with RETRY: the cursor");
    drop(e, id);
}

static void check_give_up_restart(struct env *e)
{
    const int L = 7;
    struct step st[] = {{SL_R_RETRY, -1, 0, {0}, 0, 503, 0},
                        {SL_R_RETRY, -1, 0, {0}, 0, 503, 0},
                        {SL_R_RETRY, -1, 0, {0}, 0, 503, 0}};
    script(L, st, 3);
    char *id = create(e, L, "c7-give-up",
                      "\"max_consecutive_failures\":3,"
                      "\"retry\":{\"initial_backoff_ms\":10,\"max_backoff_ms\":10}");
    append(e, "c7-give-up", 1);
    /* the worker of a failed connector ends: its close() follows the state change */
    T_CHECK(wait_for(L, CLOSES, 1), "7. give up: the worker stops by itself");
    json_t *c = conn(e, id);
    T_EQ_STR(str_of(c, "state"), "failed", "7. give up: after three RETRYs the state is failed");
    T_CHECK(strstr(str_of(c, "last_error"), "3 consecutive failures") &&
                strstr(str_of(c, "last_error"), "fake: retry (send 2)"),
            "7. give up: last_error names the failure (\"%s\")", str_of(c, "last_error"));
    json_decref(c);
    struct lane l;
    snapshot(L, &l);
    T_EQ_INT(l.n_sends, 3, "7. give up: no fourth attempt before a restart");
    T_EQ_INT(cursor(e, id, "c7-give-up"), 0, "7. give up: the cursor stays before the record");

    c = sl_registry_restart(e->reg, id, NULL);
    T_EQ_STR(str_of(c, "state"), "running", "7. restart: running again");
    T_CHECK(json_is_null(json_object_get(c, "last_error")), "7. restart: last_error cleared");
    json_decref(c);
    T_CHECK(wait_for(L, SENDS, 4) && settle(e, L, "c7-give-up") == 1,
            "7. restart: a new worker sends again");
    snapshot(L, &l);
    T_CHECK(l.opens == 2 && l.n_sends == 5 && l.sends[3].first == 0 && l.sends[3].r == SL_R_OK,
            "7. restart: the record is delivered by the new worker");
    c = conn(e, id);
    T_EQ_INT(stat_of(c, "delivered"), 1, "7. restart: stats.delivered");
    T_EQ_STR(str_of(c, "state"), "running", "7. restart: still running while it delivers");
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "7. restart: disabled");
    T_EQ_INT(cursor(e, id, "c7-give-up"), 1, "7. restart: the cursor passes the record");
    drop(e, id);
}

static void check_fatal(struct env *e)
{
    const int L = 8;
    struct step st[] = {{SL_R_FATAL, -1, 0, {0}, 0, 401, 0}};
    script(L, st, 1);
    char *id = create(e, L, "c8-fatal", NULL);
    append(e, "c8-fatal", 1);
    T_CHECK(wait_for(L, CLOSES, 1), "8. fatal: the worker stops by itself");
    json_t *c = conn(e, id);
    T_EQ_STR(str_of(c, "state"), "restarting",
             "8. fatal: FATAL makes the state restarting at once");
    T_EQ_STR(str_of(c, "last_error"), "fake: fatal (send 0) (restart 1 in 1 s)",
             "8. fatal: last_error says why and when it restarts");
    json_decref(c);
    struct lane l;
    snapshot(L, &l);
    T_CHECK(l.n_sends == 1 && l.n_naps == 0, "8. fatal: one send, no retry (%zu sends, %zu naps)",
            l.n_sends, l.n_naps);
    /* the engine starts a new worker after the backoff (1 s), which delivers the record */
    T_CHECK(wait_for(L, OPENS, 2), "8. fatal: the engine restarts the worker by itself");
    T_CHECK(wait_for(L, SENDS, 2), "8. fatal: the new worker sends the record again");
    T_CHECK(quiesce(e, id, L), "8. fatal: disabled");
    c = conn(e, id);
    T_EQ_INT(cursor(e, id, "c8-fatal"), 1,
             "8. fatal: after the restart the cursor passes the record");
    T_EQ_INT(stat_of(c, "delivered"), 1, "8. fatal: delivered once");
    json_decref(c);
    drop(e, id);
}

static void check_cursor_restart(struct env *e)
{
    const int L = 9;
    char *id = create(e, L, "c9-restart", NULL);
    append(e, "c9-restart", 3);
    T_CHECK(wait_for(L, SENDS, 3), "9. restart: three records delivered");
    sl_engine_stop(e->eng); /* as the server stops: the worker persists its cursor and closes */
    e->eng = NULL;
    T_EQ_INT(lane_count(L, CLOSES), 1, "9. restart: the engine stop closed the sink");
    T_EQ_INT(cursor(e, id, "c9-restart"), 3, "9. restart: the cursor is persisted");

    /* a new process: the registry and its metadata are reopened from the directory */
    pthread_mutex_lock(&g.mu);
    g.reg = NULL;
    pthread_mutex_unlock(&g.mu);
    sl_registry_close(e->reg);
    struct sl_err err = {0};
    if (sl_registry_open(&e->reg, e->dir, &err) != 0 ||
        sl_engine_start(&e->eng, e->store, e->reg, &fake_clock, &err) != 0) {
        fprintf(stderr, "reopen: %s\n", err.msg);
        abort();
    }
    pthread_mutex_lock(&g.mu);
    g.reg = e->reg;
    pthread_mutex_unlock(&g.mu);
    T_CHECK(wait_for(L, OPENS, 2), "9. restart: a new engine starts the connector again");
    append(e, "c9-restart", 2);
    T_CHECK(wait_for(L, SENDS, 5) && quiesce(e, id, L), "9. restart: the new records are sent");
    struct lane l;
    snapshot(L, &l);
    char got[256];
    sends_str(&l, got, sizeof(got));
    T_EQ_STR(got, " 0+1 1+1 2+1 3+1 4+1",
             "9. restart: only the new records (seqs 3, 4) are sent after the restart");
    drop(e, id);
}

static void check_ordering(struct env *e)
{
    const int L = 10;
    struct step st[] = {
        {SL_R_OK, -1, 0, {0}, 0, 0, 0},
        {SL_R_RETRY, -1, 1, {0}, 0, 503, 0},
        {SL_R_NOT_CONNECTED, -1, 0, {0}, 0, 0, 0},
        {SL_R_OK, -1, 0, {0}, 0, 0, 0},
        {SL_R_RETRY, -1, 2, {0}, 0, 503, 0},
        {SL_R_RETRY, 50, 0, {0}, 0, 429, 0},
        {SL_R_OK, -1, 0, {0}, 0, 0, 0},
        {SL_R_NOT_CONNECTED, -1, 1, {0}, 0, 0, 0},
        {SL_R_RETRY, -1, 1, {0}, 0, 503, 0},
    };
    script(L, st, sizeof(st) / sizeof(st[0]));
    /* created disabled and enabled once all 20 records are in the strand, so that the batches
     * are cut the same way every run: [0,3) [3,6) [6,9) ... with batch_max 3 */
    char *id =
        create_as(e, L, "c10-order",
                  "\"batch_max\":3,\"retry\":{\"initial_backoff_ms\":10,\"max_backoff_ms\":20}", 0);
    for (int i = 0; i < 5; i++)
        append(e, "c10-order", 4);
    enable(e, id);
    T_CHECK(wait_for(L, ACCEPTED, 20) && settle(e, L, "c10-order") == 20,
            "10. ordering: 20 records accepted");
    struct lane l;
    snapshot(L, &l);
    uint64_t next = 0;
    int ok = 1, whole = 1;
    for (size_t i = 0; i + 1 < l.n_sends; i++) { /* all but the sentinel */
        const struct sent *s = &l.sends[i];
        if (s->first != next || !s->contiguous || s->n == 0) {
            ok = 0;
            fprintf(stderr, "send %zu: first %llu, n %zu, expected first %llu\n", i,
                    (unsigned long long)s->first, s->n, (unsigned long long)next);
        }
        whole &= s->payload_ok;
        next += s->r == SL_R_OK ? s->n : s->accepted;
    }
    T_CHECK(ok && next == 20,
            "10. ordering: %zu sends, each starts where the accepted ones end: seq order, no gap, "
            "no duplicate across retries",
            l.n_sends - 1);
    char got[512];
    sends_str(&l, got, sizeof(got));
    T_EQ_STR(got, " 0+3 3+3 4+2 4+2 6+3 8+1 8+1 9+3 10+2 11+1 12+3 15+3 18+2 20+1",
             "10. ordering: the batches sent, as first+n (the last is the sentinel)");
    T_CHECK(whole, "10. ordering: every record reaches the sink with its own payload");
    T_CHECK(l.next_step == l.n_steps, "10. ordering: the whole script was played (%zu of %zu)",
            l.next_step, l.n_steps);
    json_t *c = conn(e, id);
    T_EQ_INT(stat_of(c, "delivered"), 20, "10. ordering: stats.delivered");
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "10. ordering: disabled");
    T_EQ_INT(cursor(e, id, "c10-order"), 20, "10. ordering: the cursor is at the sentinel");
    drop(e, id);
}

static void check_pipelining(struct env *e)
{
    const int L = 12;
    struct step st[] = {
        {SL_R_OK, -1, 0, {0}, 0, 0, 0},
        {SL_R_OK, -1, 0, {0}, 0, 0, 0},
        {SL_R_RETRY, -1, 0, {0}, 0, 503, 0},
    };
    script(L, st, sizeof(st) / sizeof(st[0]));
    char *id = create_as(e, L, "c11-pipe",
                         "\"batch_max\":1,\"inflight\":4,"
                         "\"retry\":{\"initial_backoff_ms\":10,\"max_backoff_ms\":20}",
                         0);
    append(e, "c11-pipe", 12);
    enable(e, id);
    /* 16 sends: 0..5, 2 again, then 3..11 (accepted counts would include the repeats) */
    T_CHECK(wait_for(L, SENDS, 16) && settle(e, L, "c11-pipe") == 12,
            "11. pipelining: every record sent");
    struct lane l;
    snapshot(L, &l);
    T_EQ_INT(l.max_pending, 4, "11. pipelining: four batches in flight at once (max_inflight 4)");
    char got[512];
    sends_str(&l, got, sizeof(got));
    /* 0..3 go out together, 4 and 5 as 0 and 1 are confirmed; 2 fails, so 3..5 (in flight) are
     * collected and, after 2 is sent again on its own, sent again in order */
    T_CHECK(strncmp(got, " 0+1 1+1 2+1 3+1 4+1 5+1 2+1 3+1 4+1", 36) == 0,
            "11. pipelining: after a failure in flight, the failed batch and the ones after it are "
            "sent again, in order (%s)",
            got);
    int seen[13] = {0}, ordered = 1;
    for (size_t i = 7; i + 1 < l.n_sends; i++) /* after the replay of 2, up to the sentinel */
        ordered &= l.sends[i].first == l.sends[i - 1].first + 1;
    for (size_t i = 0; i + 1 < l.n_sends; i++)
        if (l.sends[i].first < 12)
            seen[l.sends[i].first] = 1;
    int all = 1;
    for (int i = 0; i < 12; i++)
        all &= seen[i];
    T_CHECK(all && ordered, "11. pipelining: every record sent, in seq order after the replay");
    T_CHECK(quiesce(e, id, L), "11. pipelining: disabled");
    /* read once the worker has stopped: with batches in flight the sentinel of settle() can be
     * sent before the results of the last ones are collected (they are, at the stop) */
    json_t *c = conn(e, id);
    T_EQ_INT(stat_of(c, "delivered"), 12,
             "11. pipelining: stats.delivered counts each record once");
    json_decref(c);
    T_EQ_INT(cursor(e, id, "c11-pipe"), 12,
             "11. pipelining: the cursor passes the contiguous prefix");
    drop(e, id);
}

static void check_rate_limit(struct env *e)
{
    const int L = 13;
    script(L, NULL, 0);
    char *id = create_as(e, L, "c12-rate",
                         "\"batch_max\":1,\"rate_limit\":{\"events_per_second\":10,"
                         "\"burst_capacity\":2}",
                         0);
    append(e, "c12-rate", 6);
    enable(e, id);
    T_CHECK(wait_for(L, SENDS, 6) && settle(e, L, "c12-rate") == 6,
            "12. rate_limit: every record sent");
    struct lane l;
    snapshot(L, &l);
    /* a burst of 2 goes at once, then one record every 100 ms (10 per second) */
    int spaced = l.n_naps >= 4;
    for (size_t i = 0; i < 4 && i < l.n_naps; i++)
        spaced &= l.naps[i] >= 99 && l.naps[i] <= 102;
    T_CHECK(spaced,
            "12. rate_limit: after the burst of 2, a wait of ~100 ms before each record (%zu "
            "waits, first %llu ms)",
            l.n_naps, l.n_naps ? (unsigned long long)l.naps[0] : 0ull);
    T_CHECK(quiesce(e, id, L), "12. rate_limit: disabled");
    T_EQ_INT(cursor(e, id, "c12-rate"), 6, "12. rate_limit: the cursor passes the 6 records");
    drop(e, id);
}

/* ---- 14. delivery notes to a watcher (what the Boboyka mirror answers its ingests from) ---- */

static struct {
    char log[512];
    int errors_named; /* every failure note carried the sink's error */
} g_notes;

static void watch(void *arg, const struct sl_delivery_note *d)
{
    static const char code[] = {'D', 'X', 'F'};
    pthread_mutex_lock(&g.mu);
    size_t len = strlen(g_notes.log);
    snprintf(g_notes.log + len, sizeof(g_notes.log) - len, "%s%c%llu+%llu@%d", len ? "," : "",
             code[d->what], (unsigned long long)d->seq, (unsigned long long)d->n, d->attempts);
    if (d->what != SL_DELIVERED && !strstr(d->error, "fake: "))
        g_notes.errors_named = 0;
    pthread_mutex_unlock(&g.mu);
    (void)arg;
}

static void check_delivery_notes(struct env *e)
{
    const int L = 14;
    /* seqs 0-2 in one batch: seq 0 accepted and then a 503; the retry of 1-2 refuses 1 */
    struct step st[] = {{SL_R_RETRY, -1, 1, {0}, 0, 503, 0}, {SL_R_REJECT, -1, 0, {0}, 1, 400, 0}};
    script(L, st, 2);
    g_notes.errors_named = 1;
    char *id = create_as(e, L, "c13-notes", "\"batch_max\":3", 0);
    struct sl_err err = {0};
    T_CHECK(sl_registry_manage(e->reg, id, "the test", watch, NULL, &err) == 0,
            "14. notes: the connector is managed and watched");
    append(e, "c13-notes", 3);
    enable(e, id);
    T_CHECK(wait_for(L, SENDS, 2) && settle(e, L, "c13-notes") == 3, "14. notes: batches sent");
    pthread_mutex_lock(&g.mu);
    char log[512];
    snprintf(log, sizeof(log), "%s", g_notes.log);
    pthread_mutex_unlock(&g.mu);
    /* D delivered, F failed attempt (retried), X dead-lettered: seq+n@attempts; the held
     * sentinel (seq 3) is a failed attempt too once the worker is stopped, so it is cut */
    T_EQ_STR(log, "D0+1@1,F1+2@1,X1+1@2,D2+1@2",
             "14. notes: each outcome, in order, with attempts");
    T_CHECK(g_notes.errors_named, "14. notes: failures carry the sink's error");
    json_t *c = conn(e, id);
    T_EQ_STR(str_of(c, "managed_by"), "the test",
             "14. managed: managed_by in the connector's JSON");
    json_decref(c);
    json_t *b = J("{\"config\":{\"lane\":1}}");
    json_t *p = sl_registry_patch(e->reg, id, b, &err);
    T_CHECK(!p && strcmp(err.ecode, "connector_managed") == 0,
            "14. managed: a PATCH of its config is refused (%s)", err.ecode);
    json_decref(b);
    json_decref(p);
    T_CHECK(sl_registry_delete(e->reg, id, &err) < 0 && strcmp(err.ecode, "connector_managed") == 0,
            "14. managed: a DELETE is refused");
    T_CHECK(quiesce(e, id, L), "14. managed: PATCH enabled false is allowed");
    free(id);
}

/* ---- 15. records written while a batch is in flight are sent before it is answered ---- */

static void check_ready(struct env *e)
{
    const int L = 15;
    script(L, NULL, 0);
    pthread_mutex_lock(&g.mu);
    g.lanes[L].gate_closed = 1;
    pthread_mutex_unlock(&g.mu);
    char *id = create_as(e, L, "c15-ready", "\"batch_max\":10,\"inflight\":4", 0);
    append(e, "c15-ready", 1);
    enable(e, id);
    T_CHECK(wait_for(L, SENDS, 1), "15. ready: the first record is sent");
    append(e, "c15-ready", 2);
    T_CHECK(wait_for(L, SENDS, 2),
            "15. ready: records written later are sent while it is in flight");
    struct lane l;
    snapshot(L, &l);
    T_CHECK(l.flushes == 0 && l.sends[1].first == 1 && l.sends[1].n == 2,
            "15. ready: as one batch of the two, before the first was answered (flushes %zu)",
            l.flushes);
    pthread_mutex_lock(&g.mu);
    g.lanes[L].gate_closed = 0;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    T_CHECK(wait_for(L, FLUSHES, 2) && quiesce(e, id, L),
            "15. ready: both answered, then disabled");
    T_EQ_INT(cursor(e, id, "c15-ready"), 3, "15. ready: the cursor passes all three");
    drop(e, id);
}

/* A pipelined batch the target stored in part (RETRY with outcome.accepted, reported by
 * flush()): the stored prefix is not sent again, the rest is. */
static void check_pipelined_partial(struct env *e)
{
    const int L = 0;
    struct step st[] = {
        {SL_R_RETRY, -1, 3, {0}, 0, 503, 0}, /* records 0..2 of the first batch of 5 stored */
        {SL_R_OK, -1, 0, {0}, 0, 0, 0},
    };
    script(L, st, sizeof(st) / sizeof(st[0]));
    char *id = create_as(e, L, "c16-pipe-part",
                         "\"batch_max\":5,\"inflight\":2,"
                         "\"retry\":{\"initial_backoff_ms\":10,\"max_backoff_ms\":20}",
                         0);
    append(e, "c16-pipe-part", 5);
    enable(e, id);
    T_CHECK(wait_for(L, SENDS, 2) && settle(e, L, "c16-pipe-part") == 5,
            "16. pipelined partial: the batch and the rest of it sent");
    struct lane l;
    snapshot(L, &l);
    char got[256];
    sends_str(&l, got, sizeof(got));
    T_CHECK(strncmp(got, " 0+5 3+2 5+1", 12) == 0,
            "16. pipelined partial: after 3 of 5 stored, only records 3 and 4 are sent again (%s)",
            got);
    json_t *c = conn(e, id);
    T_EQ_INT(stat_of(c, "delivered"), 5, "16. pipelined partial: stats.delivered counts 5");
    json_decref(c);
    T_CHECK(quiesce(e, id, L), "16. pipelined partial: disabled");
    T_EQ_INT(cursor(e, id, "c16-pipe-part"), 5, "16. pipelined partial: the cursor passes all 5");
    drop(e, id);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    sl_log_set_level(SL_LOG_WARN);
    struct sl_err err = {0};
    T_CHECK(sl_kinds_add(&fake_kind, &err) == 0, "the fake sink kind is registered (%s)", err.msg);

    struct env e = {0};
    snprintf(e.dir, sizeof(e.dir), "/tmp/sluice-comp-XXXXXX");
    if (!mkdtemp(e.dir)) {
        perror("mkdtemp");
        return 1;
    }
    struct sl_store_opts so = {.dir = e.dir, .segment_bytes = 1 << 20, .durable = 0};
    if (sl_store_open(&e.store, &so, NULL, &err) != 0 ||
        sl_registry_open(&e.reg, e.dir, &err) != 0 ||
        sl_engine_start(&e.eng, e.store, e.reg, &fake_clock, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    g.reg = e.reg;

    check_retry_schedule(&e);
    check_retry_after(&e);
    check_breaker(&e);
    check_dead_letters_replay(&e);
    check_reject_some(&e);
    check_partial_accept(&e);
    check_accept_all_then_retry(&e);
    check_give_up_restart(&e);
    check_fatal(&e);
    check_cursor_restart(&e);
    check_ordering(&e);
    check_pipelining(&e);
    check_rate_limit(&e);
    check_delivery_notes(&e);
    check_ready(&e);
    check_pipelined_partial(&e);

    sl_engine_stop(e.eng);
    pthread_mutex_lock(&g.mu);
    g.reg = NULL;
    pthread_mutex_unlock(&g.mu);
    sl_store_close(e.store);
    sl_registry_close(e.reg);
    nftw(e.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return T_DONE();
}
