/* The source framework: one worker thread per enabled inbound connector with sl_source_ops. It
 * calls poll(), and the emitter appends each group the source hands it to the connector's
 * strand (config.strand) as one commit; once the committer has fsynced the group it calls the
 * source's durable() (the only place a source acknowledges upstream) and the worker stores the
 * group's position in meta. Back-pressure: emit() blocks while more than INFLIGHT_BYTES are
 * waiting for their fsync. A failed poll is retried with backoff (1 s doubling to 60 s, the
 * Rivven seed's restart policy); SL_R_FATAL restarts the source automatically, unless the source
 * gave up (ctx.give_up: its config is wrong, restarting would fail the same way), which puts the
 * connector in "failed"; SL_R_REJECT means the source is finished ("completed"). An append the
 * strand refused makes the worker restart, its position read back from the strand. */
#include "core/log.h"
#include "core/util.h"
#include "engine/meta.h"
#include "engine/worker.h"
#include "formats/json_mp.h"
#include "strand/store.h"
#include "strand/strand.h"
#include "transform/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define INFLIGHT_BYTES (64u << 20)
/* groups kept for reuse: a fresh one (MiBs, mmapped) costs page faults on every poll */
#define POOL_MAX 4
#define SCAN_BACK 1000000 /* records read back at most when looking for our last one */

struct source;

struct group {
    struct sl_append a;
    struct source *src;
    struct sl_append_rec *recs;
    uint8_t (*hashes)[SL_HASH_LEN];
    uint8_t *data;
    size_t bytes;
    size_t cap_n, cap_bytes; /* of recs/hashes and data */
    uint8_t pos[SL_POSITION_MAX];
    size_t pos_len;
    struct group *next_free;
};

struct source {
    struct worker *w;
    const struct sl_source_ops *ops;
    void *self;
    struct sl_source_ctx ctx;
    struct sl_emitter em;
    struct sl_strand *strand;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t inflight, inflight_bytes; /* groups submitted, not yet durable */
    int failed;                      /* an append failed: the strand is unavailable */
    uint8_t pos[SL_POSITION_MAX];    /* of the last durable group */
    size_t pos_len;
    uint64_t next_seq, done_records;
    int dirty;
    /* a position emitted with no records (a source that moved without producing any): durable
     * once every group before it is */
    uint8_t idle_pos[SL_POSITION_MAX];
    size_t idle_len;
    int idle;
    int give_up;              /* poll()'s thread: the source called ctx.give_up during this poll */
    struct sl_transforms *tr; /* config.transforms, applied in emit() */
    struct group *pool;       /* under mu: durable groups kept for reuse, at most POOL_MAX */
    int calling;              /* under mu: durable() calls for idle positions running */
    size_t npool;
};

/* Under s->mu, nothing in flight: an idle position emitted after the last group is durable. */
static void idle_durable(struct source *s)
{
    if (!s->idle || s->inflight)
        return;
    s->idle = 0;
    memcpy(s->pos, s->idle_pos, s->idle_len);
    s->pos_len = s->idle_len;
    s->dirty = 1;
}

static void group_free(struct group *g)
{
    if (!g)
        return;
    free(g->recs);
    free(g->hashes);
    free(g->data);
    free(g);
}

/* A group for n records of `bytes` bytes: one from the pool (grown if it is too small) or a new
 * one; NULL when out of memory. Its sl_append is cleared. */
static struct group *group_get(struct source *s, size_t n, size_t bytes)
{
    pthread_mutex_lock(&s->mu);
    struct group *g = s->pool;
    if (g) {
        s->pool = g->next_free;
        s->npool--;
    }
    pthread_mutex_unlock(&s->mu);
    if (!g && !(g = calloc(1, sizeof(*g))))
        return NULL;
    if (n > g->cap_n) {
        size_t cap = n > 2 * g->cap_n ? n : 2 * g->cap_n;
        void *r = realloc(g->recs, cap * sizeof(*g->recs));
        if (r)
            g->recs = r;
        void *h = r ? realloc(g->hashes, cap * sizeof(*g->hashes)) : NULL;
        if (h)
            g->hashes = h;
        if (!r || !h) {
            group_free(g);
            return NULL;
        }
        g->cap_n = cap;
    }
    if (bytes > g->cap_bytes || !g->data) {
        size_t cap = bytes > 2 * g->cap_bytes ? bytes : 2 * g->cap_bytes;
        void *d = realloc(g->data, cap ? cap : 1);
        if (!d) {
            group_free(g);
            return NULL;
        }
        g->data = d;
        g->cap_bytes = cap;
    }
    memset(&g->a, 0, sizeof(g->a));
    g->next_free = NULL;
    return g;
}

/* Under s->mu: g into the pool (NULL is returned), or g back when the pool is full. */
static struct group *group_pool(struct source *s, struct group *g)
{
    if (s->npool >= POOL_MAX)
        return g;
    g->next_free = s->pool;
    s->pool = g;
    s->npool++;
    return NULL;
}

/* The committer thread: the group is durable (or failed). */
static void on_durable(struct sl_append *a)
{
    struct group *g = (struct group *)a;
    struct source *s = g->src;
    if (a->status == 0)
        s->ops->durable(s->self, g->pos, g->pos_len);
    pthread_mutex_lock(&s->mu);
    if (a->status != 0) {
        s->failed = 1;
    } else {
        memcpy(s->pos, g->pos, g->pos_len);
        s->pos_len = g->pos_len;
        s->next_seq = a->first_seq + a->n;
        s->done_records += a->n;
        s->dirty = 1;
    }
    s->inflight--;
    s->inflight_bytes -= g->bytes;
    int idle = s->idle && !s->inflight && !s->failed;
    uint8_t ipos[SL_POSITION_MAX];
    size_t ilen = s->idle_len;
    memcpy(ipos, s->idle_pos, ilen);
    if (idle) {
        idle_durable(s);
        s->calling++; /* drain() waits for the call below: the source may be stopped after it */
    }
    g = group_pool(s, g); /* before the broadcast: drain() may return right after it */
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    group_free(g);
    if (idle) {
        s->ops->durable(s->self, ipos, ilen);
        pthread_mutex_lock(&s->mu);
        s->calling--;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

static int emit_raw(struct source *s, const struct sl_emit_rec *recs, size_t n,
                    const void *position, size_t position_len)
{
    if (position_len > SL_POSITION_MAX)
        return SL_E_INVAL;
    if (n == 0) { /* only a position: durable after what is in flight */
        pthread_mutex_lock(&s->mu);
        memcpy(s->idle_pos, position, position_len);
        s->idle_len = position_len;
        s->idle = 1;
        int now = !s->inflight && !s->failed;
        if (now)
            idle_durable(s);
        pthread_mutex_unlock(&s->mu);
        if (now)
            s->ops->durable(s->self, position, position_len);
        return 0;
    }
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += recs[i].payload_len;
    struct group *g = group_get(s, n, bytes);
    if (!g)
        return SL_E_NOMEM;
    g->src = s;
    g->bytes = bytes;
    memcpy(g->pos, position, position_len);
    g->pos_len = position_len;
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(g->data + off, recs[i].payload, recs[i].payload_len);
        g->recs[i] = (struct sl_append_rec){.payload = g->data + off,
                                            .payload_len = recs[i].payload_len,
                                            .source = s->w->def.id,
                                            .source_len = (uint16_t)strlen(s->w->def.id),
                                            .flags = recs[i].flags};
        off += recs[i].payload_len;
    }
    g->a.recs = g->recs;
    g->a.n = n;
    g->a.hashes = g->hashes;
    g->a.done = on_durable;
    g->a.arg = g;
    pthread_mutex_lock(&s->mu);
    while (s->inflight_bytes > INFLIGHT_BYTES && !s->failed)
        pthread_cond_wait(&s->cv, &s->mu); /* back-pressure: the committer catches up */
    int failed = s->failed;
    if (!failed) {
        s->inflight++;
        s->inflight_bytes += bytes;
        s->idle = 0; /* a position with no records before this group: this one's covers it */
    }
    pthread_mutex_unlock(&s->mu);
    if (failed) {
        group_free(g);
        return SL_E_UNAVAIL;
    }
    struct sl_err err = {0};
    if (sl_strand_submit(s->strand, &g->a, &err) != 0) {
        pthread_mutex_lock(&s->mu);
        s->inflight--;
        s->inflight_bytes -= bytes;
        s->failed = 1;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        group_free(g);
        return err.code ? err.code : SL_E_UNAVAIL;
    }
    return 0;
}

/* Appends one record to the strand called name, durably, before the group it came with is
 * submitted (so the group's position is never acknowledged before it). 0 or a negative code. */
static int append_to(struct source *s, const char *name, const uint8_t *payload, size_t len,
                     uint32_t flags)
{
    struct sl_err err = {0};
    struct sl_strand *st;
    if (sl_store_strand(s->w->store, name, strlen(name), 1, &st, &err) < 0)
        return err.code ? err.code : SL_E_UNAVAIL;
    struct sl_append_rec ar = {.payload = payload,
                               .payload_len = (uint32_t)len,
                               .source = s->w->def.id,
                               .source_len = (uint16_t)strlen(s->w->def.id),
                               .flags = flags};
    uint8_t hash[1][SL_HASH_LEN];
    struct sl_append a = {.recs = &ar, .n = 1, .hashes = hash};
    return sl_strand_append_wait(st, &a, &err);
}

/* A record the transforms failed on goes, with the reason, to the strand <strand>.dlq, durable
 * before the group it came with: nothing the source hands over is lost. */
static int dead_letter_source(struct source *s, const struct sl_emit_rec *r, const char *why)
{
    struct sl_buf body, mp;
    sl_buf_init(&body, 0);
    sl_buf_init(&mp, 0);
    sl_buf_puts(&body, "{\"error\":");
    sl_buf_json_str(&body, why, strlen(why));
    sl_buf_puts(&body, ",\"connector\":");
    sl_buf_json_str(&body, s->w->def.id, strlen(s->w->def.id));
    sl_buf_puts(&body, ",\"record\":");
    size_t used;
    struct sl_jerr je;
    if (sl_mp_to_json(r->payload, r->payload_len, &used, &body, 128, &je) < 0)
        sl_buf_puts(&body, "null");
    sl_buf_putc(&body, '}');
    int rc = sl_json_to_mp((const char *)body.data, body.len, &mp, 130, &je);
    char name[80];
    snprintf(name, sizeof(name), "%s.dlq", sl_strand_name(s->strand));
    if (rc == 0)
        rc = append_to(s, name, mp.data, mp.len, 0);
    sl_buf_release(&body);
    sl_buf_release(&mp);
    return rc;
}

/* The emitter: the connector's transforms first (a record dropped is not written; one they fail
 * on goes to <strand>.dlq), then the group is appended with its position. */
static int emit(struct sl_emitter *em, const struct sl_emit_rec *recs, size_t n,
                const void *position, size_t position_len)
{
    struct source *s = em->impl;
    if (!s->tr || n == 0)
        return emit_raw(s, recs, n, position, position_len);
    struct sl_emit_rec *kept = calloc(n, sizeof(*kept));
    struct sl_buf *bufs = calloc(n, sizeof(*bufs));
    size_t m = 0;
    int rc = kept && bufs ? 0 : SL_E_NOMEM;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct sl_expr_rec er = {.source = s->w->def.id,
                                 .source_len = strlen(s->w->def.id),
                                 .strand = sl_strand_name(s->strand),
                                 .timestamp_ms = sl_now_ms(),
                                 .flags = recs[i].flags};
        char why[256] = "";
        sl_buf_init(&bufs[m], 0);
        char route[65];
        enum sl_tr_result res = sl_transforms_apply_routed(
            s->tr, recs[i].payload, recs[i].payload_len, &er, &bufs[m], route, why, sizeof(why));
        if (res == SL_TR_KEEP && route[0] && strcmp(route, sl_strand_name(s->strand)) != 0) {
            /* ContentRouter: to its strand, durable before the group's position */
            rc = append_to(s, route, bufs[m].data, bufs[m].len, recs[i].flags);
            sl_buf_release(&bufs[m]);
            continue;
        }
        if (res == SL_TR_KEEP) {
            kept[m] = (struct sl_emit_rec){.payload = bufs[m].data,
                                           .payload_len = (uint32_t)bufs[m].len,
                                           .flags = recs[i].flags};
            m++;
        } else {
            sl_buf_release(&bufs[m]);
            if (res == SL_TR_FAIL && (rc = dead_letter_source(s, &recs[i], why)) == 0)
                sl_warn("connector %s: a record went to %s.dlq: %s", s->w->def.id,
                        sl_strand_name(s->strand), why);
        }
    }
    if (rc == 0)
        rc = emit_raw(s, kept, m, position, position_len);
    for (size_t i = 0; bufs && i < m; i++)
        sl_buf_release(&bufs[i]);
    free(kept);
    free(bufs);
    return rc;
}

/* Waits until every submitted group is durable (or failed) and its durable() calls returned. */
static void drain(struct source *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->inflight > 0 || s->calling > 0)
        pthread_cond_wait(&s->cv, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* Stores the last durable position, and counts the records for the connector's stats. */
static void persist(struct source *s)
{
    pthread_mutex_lock(&s->mu);
    int dirty = s->dirty;
    uint8_t pos[SL_POSITION_MAX];
    size_t len = s->pos_len;
    uint64_t next = s->next_seq, done = s->done_records;
    memcpy(pos, s->pos, len);
    s->dirty = 0;
    s->done_records = 0;
    pthread_mutex_unlock(&s->mu);
    sl_registry_note_events(s->w->reg, s->w->def.id, done, sl_now_ms());
    struct sl_err err = {0};
    if (dirty && sl_meta_set_source_position(s->w->meta, s->w->def.id, pos, len, next, &err) < 0) {
        sl_warn("connector %s: %s", s->w->def.id, err.msg);
        pthread_mutex_lock(&s->mu);
        s->dirty = 1;
        pthread_mutex_unlock(&s->mu);
    }
}

/* The position to resume from: the stored one, superseded by the last record this connector
 * appended after it (found by reading back from the head), when the source can tell its
 * position from a payload. A source that writes it only into a group's last record has the
 * records of a group cut by a crash folded in after the last whole position (position_fold). */
static void resume_position(struct source *s)
{
    struct worker *w = s->w;
    uint64_t stored_next = 0;
    if (sl_meta_get_source_position(w->meta, w->def.id, s->pos, sizeof(s->pos), &s->pos_len,
                                    &stored_next) != 0)
        s->pos_len = 0;
    if (!s->ops->position_of)
        return;
    uint64_t count = sl_strand_count(s->strand);
    uint64_t floor = stored_next <= count ? stored_next : 0;
    if (count - floor > SCAN_BACK)
        floor = count - SCAN_BACK;
    size_t idlen = strlen(w->def.id);
    uint64_t whole = UINT64_MAX; /* the seq of the last record with a whole position */
    int after = 0;               /* records of ours after it */
    for (uint64_t seq = count; seq-- > floor && whole == UINT64_MAX;) {
        struct sl_record r;
        if (sl_strand_read(s->strand, seq, &r) != 0)
            return;
        if (r.source_len != idlen || memcmp(r.source, w->def.id, idlen) != 0)
            continue;
        uint8_t pos[SL_POSITION_MAX];
        size_t len = 0;
        if (s->ops->position_of(r.payload, r.payload_len, pos, &len) == 0 &&
            len <= SL_POSITION_MAX) {
            memcpy(s->pos, pos, len);
            s->pos_len = len;
            whole = seq;
        } else if (!s->ops->position_fold) {
            return; /* the last record of ours carries none: the stored position stands */
        } else {
            after = 1;
        }
    }
    if (!after)
        return;
    /* no whole position after the stored one: the records after that are folded into it */
    for (uint64_t seq = whole == UINT64_MAX ? floor : whole + 1; seq < count; seq++) {
        struct sl_record r;
        if (sl_strand_read(s->strand, seq, &r) != 0)
            return;
        if (r.source_len != idlen || memcmp(r.source, w->def.id, idlen) != 0)
            continue;
        size_t len = s->pos_len;
        if (s->ops->position_fold(s->pos, &len, r.payload, r.payload_len) != 0 ||
            len > SL_POSITION_MAX)
            return;
        s->pos_len = len;
    }
}

static int src_stopped(void *arg)
{
    struct source *s = arg;
    return sl_worker_stopped(s->w);
}

static void src_gauge(void *arg, const char *name, uint64_t value)
{
    struct source *s = arg;
    sl_registry_set_gauge(s->w->reg, s->w->def.id, name, value);
}

static void src_give_up(void *arg)
{
    struct source *s = arg;
    s->give_up = 1;
}

static int append_failed(struct source *s)
{
    pthread_mutex_lock(&s->mu);
    int failed = s->failed;
    pthread_mutex_unlock(&s->mu);
    return failed;
}

void *sl_source_worker_main(void *arg)
{
    struct worker *w = arg;
    struct source s = {.w = w, .ops = w->conn->source};
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    s.em = (struct sl_emitter){.emit = emit, .impl = &s};
    const char *strand = json_string_value(json_object_get(w->def.config, "strand"));
    struct sl_err err = {0};
    if (!strand || sl_store_strand(w->store, strand, strlen(strand), 1, &s.strand, &err) < 0) {
        sl_registry_set_failed(w->reg, w->def.id,
                               strand ? err.msg : "config.strand: required by the framework");
        goto out;
    }
    const json_t *tr = json_object_get(w->def.config, "transforms");
    if (tr && !(s.tr = sl_transforms_compile(tr, &err))) { /* validated at create: unlikely */
        sl_registry_set_failed(w->reg, w->def.id, err.msg);
        goto out;
    }
    resume_position(&s);
    s.ctx = (struct sl_source_ctx){.id = w->def.id,
                                   .config = w->def.config,
                                   .host = &sl_host_default,
                                   .position = s.pos_len ? s.pos : NULL,
                                   .position_len = s.pos_len,
                                   .stopped = src_stopped,
                                   .arg = &s,
                                   .gauge = src_gauge,
                                   .give_up = src_give_up,
                                   .meta = sl_kind_builtin(w->conn) ? w->meta : NULL};
    if (s.ops->start(&s.self, &s.ctx, &err) < 0) {
        sl_worker_restart_later(w, err.msg[0] ? err.msg : "the source could not start");
        goto out;
    }
    sl_registry_set_source_status(w->reg, w->def.id, NULL, NULL);
    sl_info("connector %s (%s): reading into strand %s", w->def.id, w->conn->name, strand);
    uint64_t backoff = 1000, last_persist = 0;
    int erroring = 0;
    while (!sl_worker_stopped(w)) {
        char error[512] = ""; /* libpq messages can be long */
        s.give_up = 0;
        enum sl_result r = s.ops->poll(s.self, &s.em, 100, error, sizeof(error));
        uint64_t now = sl_mono_ns();
        if (now - last_persist >= 5000000u) {
            persist(&s);
            last_persist = now;
        }
        if (append_failed(&s)) { /* the emitter is unusable: a new worker resumes from the strand */
            drain(&s);
            char why[320];
            snprintf(why, sizeof(why), "appending to strand %s failed", strand);
            sl_worker_restart_later(w, why);
            break;
        }
        if (r == SL_R_OK) {
            backoff = 1000;
            if (erroring)
                sl_registry_set_source_status(w->reg, w->def.id, NULL, NULL);
            erroring = 0;
            continue;
        }
        if (r == SL_R_REJECT) { /* finished: what it emitted is made durable, then it stops */
            drain(&s);
            persist(&s);
            sl_info("connector %s: the source is finished", w->def.id);
            sl_registry_set_source_status(w->reg, w->def.id, "completed", NULL);
            break;
        }
        if (r == SL_R_FATAL && s.give_up) { /* the config is wrong: restarting would not help */
            drain(&s);
            const char *why = error[0] ? error : "the source failed";
            sl_error("connector %s: %s; fix the config (PATCH) or POST /v1/connectors/%s/restart",
                     w->def.id, why, w->def.id);
            sl_registry_set_failed(w->reg, w->def.id, why);
            break;
        }
        if (r == SL_R_FATAL) {
            drain(&s);
            persist(&s); /* before: records counted after it would reset the restart backoff */
            sl_worker_restart_later(w, error[0] ? error : "the source failed");
            break;
        }
        /* RETRY, NOT_CONNECTED, QUEUED: back off, shown as last_error while the state stays */
        sl_registry_set_source_status(w->reg, w->def.id, NULL, error[0] ? error : "retrying");
        erroring = 1;
        if (sl_worker_clock_nap(w, sl_backoff_ms(backoff, backoff, 1) / 2 + backoff / 2))
            break;
        backoff = backoff * 2 > 60000 ? 60000 : backoff * 2;
    }
    drain(&s);
    persist(&s);
    if (s.ops->stop)
        s.ops->stop(s.self);
out:
    while (s.pool) {
        struct group *g = s.pool;
        s.pool = g->next_free;
        group_free(g);
    }
    sl_transforms_free(s.tr);
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cv);
    __atomic_store_n(&w->finished, 1, __ATOMIC_RELEASE);
    return NULL;
}
