#include "strand/strand.h"

#include "core/buf.h"
#include "core/io.h"
#include "core/log.h"
#include "core/util.h"
#include "strand/segment.h"
#include "strand/tree.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* An index entry of a written record, published once its batch is synced. */
struct pending {
    uint32_t off, len;
    uint64_t ts;
    uint8_t hash[SL_HASH_LEN];
};

/* A group of frames written by the committer with one pwrite, waiting for the syncer. The
 * appends on its done list end in this batch (an append cut by a segment roll spans two). */
struct wbatch {
    struct wbatch *next;
    struct sl_append *done_head, *done_tail;
    struct sl_segment *seg;
    struct pending *pend;
    size_t n, cap;
    uint64_t bytes;
    int rc;                    /* sync stage: how its appends are answered */
    uint8_t head[SL_HASH_LEN]; /* chain head after this batch */
};

static void ring_bell(void);

struct sl_strand {
    char name[SL_STRAND_NAME_MAX + 1];
    size_t name_len;
    char dir[4096];
    struct sl_strand_opts opts;

    /* published state, guarded by lock (writer-preferring rwlock) */
    pthread_rwlock_t lock;
    struct sl_segment **segs;
    size_t nsegs, segs_cap;
    uint64_t count; /* also read atomically by sl_strand_count */
    uint8_t head[SL_HASH_LEN];
    uint64_t bytes;

    /* The commit stage (hash, write) and the sync stage (fdatasync, publish, answer) each run
     * under their own mutex, on the strand's threads or inline (sl_strand_commit_now): whoever
     * takes work from a stage's queue holds the stage's mutex until that work is handed on, so a
     * caller holding both in turn has seen every earlier append through. Order: cmu, then ymu. */
    pthread_mutex_t cmu, ymu;
    int inline_commit; /* under cmu: the commit stage runs in sl_strand_commit_now */

    /* submission queue */
    pthread_mutex_t qmu;
    pthread_cond_t qcond;
    struct sl_append *qhead, *qtail;
    int stopping;
    int failed; /* an fdatasync failed: the page cache state is unknown, refuse writes */

    /* followers */
    pthread_mutex_t wmu;
    pthread_cond_t wcond;

    pthread_t thread;
    int thread_started;

    /* the spare segment being zero-filled in the background (committer-private) */
    pthread_t spare_thread;
    int spare_running;
    int spare_made; /* a spare was made (or attempted, or skipped) for the active segment */
    uint64_t seg_t0_ns,
        seg_w0; /* when the active segment started taking writes, and its end then */

    /* committer -> syncer: written but not yet synced batches, in order */
    pthread_mutex_t smu;
    pthread_cond_t scond; /* the syncer waits for batches */
    pthread_cond_t sdone; /* the committer waits for the syncer to drain (before a roll) */
    struct wbatch *shead, *stail;
    uint64_t enqueued, synced; /* batches */
    int sstop;
    pthread_t sthread;
    int sthread_started;

    /* committer-private */
    struct sl_buf wbuf;
    struct wbatch *cur; /* the batch being built */
    uint64_t wend;      /* written end of the active segment (ahead of the published end) */
    uint64_t next_seq, last_ts;
    uint8_t next_prev[SL_HASH_LEN];
    uint64_t w_seq; /* chain state after the last batch that was written successfully */
    uint8_t w_prev[SL_HASH_LEN];

    /* sync stage (under ymu): the log before segs[drop_seg] at drop_off is out of the page
     * cache (cache_window); segments are never closed before sl_strand_close */
    size_t drop_seg;
    uint64_t drop_off;

    struct sl_strand_stats stats; /* atomics */
    struct sl_tree *tree; /* sync stage: leaves hashed during the fdatasync, published after the
                           * records; NULL if none */
    /* The sync stage's helper for big groups (started with the first one): it hashes a group's
     * leaves into the tree while the sync stage waits in fdatasync (htree: the job, NULL once it
     * is done), and answers the appends of published groups while the next one syncs (ahead:
     * their batches in order). */
    pthread_mutex_t hmu;
    pthread_cond_t hcond;
    struct wbatch *htree, *ahead, *atail;
    int answering; /* the helper is answering a list taken from ahead */
    int hstop;
    pthread_t hthread;
    int hthread_started;
};

const uint32_t sl_sync_bucket_us[SL_SYNC_BUCKETS - 1] = {50,   100,   200,   500,    1000,   2000,
                                                         5000, 10000, 50000, 100000, 1000000};

static void *committer_main(void *arg);
static void *syncer_main(void *arg);
static int tree_leaves(void *ctx, uint64_t lo, uint64_t n, uint8_t out[][SL_HASH_LEN]);

static void *spare_main(void *arg)
{
    struct sl_strand *s = arg;
    struct sl_err err = {0};
    if (sl_seg_prepare_spare(s->dir, s->opts.segment_bytes, s->opts.durable, &err) < 0)
        sl_warn("strand %s: cannot prepare the next segment (%s); it will be created at roll",
                s->name, err.msg);
    return NULL;
}

/* Reaps the spare thread if it has finished; never waits. */
static void reap_spare(struct sl_strand *s)
{
    if (s->spare_running && pthread_tryjoin_np(s->spare_thread, NULL) == 0)
        s->spare_running = 0;
}

/* The active segment starts taking writes at s->wend, now: maybe_prepare_spare's rate counts
 * from here. */
static void start_rate_window(struct sl_strand *s)
{
    s->seg_w0 = s->wend;
    s->seg_t0_ns = sl_mono_ns();
}

/* Starts zero-filling the next segment once the active one is half full, unless its first half
 * was written faster than opts.spare_max_rate. The zeros spare a small commit's fdatasync the
 * journal work of converting preallocated blocks, but each byte then goes to the disk twice: at
 * batch-load rates every fdatasync covers megabytes, the conversion is amortized, and the disk's
 * bandwidth is what is short (docs/decisions.md). The rate is judged only over at least a
 * quarter of the segment: one reopened past that (a restart) gets its spare, as before. */
static void maybe_prepare_spare(struct sl_strand *s)
{
    struct sl_segment *a = s->segs[s->nsegs - 1];
    if (s->wend < a->size / 2)
        return;
    reap_spare(s);
    if (s->spare_running || s->spare_made)
        return;
    if (s->opts.spare_max_rate && s->wend - s->seg_w0 >= a->size / 4) {
        uint64_t dt = sl_mono_ns() - s->seg_t0_ns, bytes = s->wend - s->seg_w0;
        if ((double)bytes * 1e9 > (double)s->opts.spare_max_rate * (double)dt) {
            s->spare_made = 1;
            __atomic_add_fetch(&s->stats.spares_skipped, 1, __ATOMIC_RELAXED);
            return;
        }
    }
    if (pthread_create(&s->spare_thread, NULL, spare_main, s) == 0) {
        sl_thread_name(s->spare_thread, "spare:%s", s->name);
        s->spare_running = s->spare_made = 1;
        /* counted here, not in the thread: once the append that started it is answered, the
         * count says so (a reader right after the answer raced the thread's start) */
        __atomic_add_fetch(&s->stats.spares, 1, __ATOMIC_RELAXED);
    }
}

static void join_spare(struct sl_strand *s)
{
    if (s->spare_running) {
        pthread_join(s->spare_thread, NULL);
        s->spare_running = 0;
    }
}

const char *sl_strand_name(const struct sl_strand *s)
{
    return s->name;
}

static struct sl_segment *active(struct sl_strand *s)
{
    return s->segs[s->nsegs - 1];
}

static int segs_push(struct sl_strand *s, struct sl_segment *seg)
{
    if (s->nsegs == s->segs_cap) {
        size_t n = s->segs_cap ? s->segs_cap * 2 : 16;
        struct sl_segment **p = realloc(s->segs, n * sizeof(*p));
        if (!p)
            return -1;
        s->segs = p;
        s->segs_cap = n;
    }
    s->segs[s->nsegs++] = seg;
    return 0;
}

static void head_of(struct sl_strand *s, uint8_t out[SL_HASH_LEN])
{
    struct sl_segment *a = active(s);
    if (a->count)
        memcpy(out, sl_seg_hash_at(a, a->count - 1), SL_HASH_LEN);
    else
        memcpy(out, a->prev_hash, SL_HASH_LEN);
}

int sl_strand_open(const char *dir, const char *name, const struct sl_strand_opts *o,
                   struct sl_strand **out, struct sl_strand_recovery *rec, struct sl_err *err)
{
    struct sl_strand_recovery local;
    if (!rec)
        rec = &local;
    memset(rec, 0, sizeof(*rec));
    struct sl_strand *s = calloc(1, sizeof(*s));
    if (!s)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    s->name_len = strlen(name);
    memcpy(s->name, name, s->name_len + 1);
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    s->opts = *o;
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&s->lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&s->cmu, NULL);
    pthread_mutex_init(&s->ymu, NULL);
    pthread_mutex_init(&s->qmu, NULL);
    pthread_cond_init(&s->qcond, NULL);
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->smu, NULL);
    pthread_cond_init(&s->scond, NULL);
    pthread_cond_init(&s->sdone, NULL);
    pthread_mutex_init(&s->hmu, NULL);
    pthread_cond_init(&s->hcond, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wcond, &ca);
    pthread_condattr_destroy(&ca);
    sl_buf_init(&s->wbuf, 0);

    int rc;
    uint64_t *bases = NULL;
    size_t nb = 0;
    if (sl_mkdir_p(dir) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "create %s", dir);
        goto fail;
    }
    if ((rc = sl_seg_list(dir, 1, &bases, &nb, err)))
        goto fail;
    /* A crash during a roll can leave the newest segment without a durable header. It cannot
     * hold acknowledged records (none are written before the header is synced): set it aside
     * (renamed, not deleted) so that the one before it is opened as the active segment. */
    while (nb > 0) {
        char path[4200], aside[4300];
        sl_seg_path(path, sizeof(path), dir, bases[nb - 1]);
        if (sl_seg_header_ok(path))
            break;
        snprintf(aside, sizeof(aside), "%s.unreadable", path);
        sl_warn("strand %s: newest segment %s has no readable header (crash during a roll); "
                "moved to %s",
                name, path, aside);
        if (rename(path, aside) < 0) {
            rc = sl_err_sys(err, SL_E_IO, "rename %s", path);
            goto fail;
        }
        nb--;
    }
    for (size_t i = 0; i < nb; i++) {
        char path[4200];
        sl_seg_path(path, sizeof(path), dir, bases[i]);
        struct sl_segment *seg;
        struct sl_seg_recovery sr;
        int last = i + 1 == nb;
        if ((rc = sl_seg_open(path, last, o->durable, &seg, &sr, err)))
            goto fail;
        if (s->nsegs > 0) {
            struct sl_segment *prev = active(s);
            if (seg->base_seq != prev->base_seq + prev->count) {
                rc = sl_err_set(err, SL_E_CORRUPT, "corrupt_strand",
                                "strand %s: segment %s starts at seq %llu but the previous one "
                                "ends at %llu; run `sluice verify`",
                                name, path, (unsigned long long)seg->base_seq,
                                (unsigned long long)(prev->base_seq + prev->count));
                sl_seg_close(seg);
                goto fail;
            }
        }
        if (segs_push(s, seg) < 0) {
            sl_seg_close(seg);
            rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
            goto fail;
        }
        if (sr.idx_rebuilt) {
            rec->idx_rebuilt++;
            sl_info("strand %s: rebuilt index of %s", name, path);
        }
        if (last && (sr.cut_bytes || (sr.stop != SL_FRAME_END && sr.stop != SL_FRAME_OK))) {
            rec->truncations++;
            rec->cut_bytes += sr.cut_bytes;
            sl_warn("strand %s: cut torn tail of %s at offset %llu (%s, %llu bytes zeroed)", name,
                    path, (unsigned long long)sr.cut_offset, sl_frame_status_str(sr.stop),
                    (unsigned long long)sr.cut_bytes);
        }
    }
    if (s->nsegs == 0) {
        static const uint8_t zero[SL_HASH_LEN];
        struct sl_segment *seg;
        if ((rc = sl_seg_create(dir, 0, zero, o->segment_bytes, o->durable, 0, &seg, err)))
            goto fail;
        if (segs_push(s, seg) < 0) {
            sl_seg_close(seg);
            rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < s->nsegs; i++)
        s->bytes += s->segs[i]->end - SL_SEG_HDR;
    struct sl_segment *a = active(s);
    s->count = a->base_seq + a->count;
    head_of(s, s->head);
    s->next_seq = s->w_seq = s->count;
    memcpy(s->next_prev, s->head, SL_HASH_LEN);
    memcpy(s->w_prev, s->head, SL_HASH_LEN);
    s->wend = a->end;
    start_rate_window(s);
    s->drop_seg = s->nsegs - 1; /* what an earlier run left in the cache is the kernel's */
    s->drop_off = a->end;
    if (!o->no_tree && (rc = sl_tree_open(dir, s->count, tree_leaves, s, o->durable, &s->tree,
                                          &rec->tree_replayed, err)) != 0)
        goto fail;
    if (rec->tree_replayed)
        sl_info("strand %s: tree rebuilt for the last %llu records", name,
                (unsigned long long)rec->tree_replayed);
    if (!(s->cur = calloc(1, sizeof(*s->cur)))) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    if (pthread_create(&s->sthread, NULL, syncer_main, s) != 0) {
        rc = sl_err_sys(err, SL_E_IO, "start syncer for strand %s", name);
        goto fail;
    }
    sl_thread_name(s->sthread, "sync:%s", name);
    s->sthread_started = 1;
    s->last_ts = a->count ? a->last_ts : (s->nsegs > 1 ? s->segs[s->nsegs - 2]->last_ts : 0);
    free(bases);
    bases = NULL;
    if (pthread_create(&s->thread, NULL, committer_main, s) != 0) {
        rc = sl_err_sys(err, SL_E_IO, "start committer for strand %s", name);
        goto fail;
    }
    sl_thread_name(s->thread, "commit:%s", name);
    s->thread_started = 1;
    *out = s;
    return 0;
fail:
    free(bases);
    sl_strand_close(s);
    return rc;
}

/* Sets a thread's stop flag under its mutex, wakes it and waits for it to end. */
static void stop_join(pthread_mutex_t *mu, pthread_cond_t *cv, int *flag, pthread_t th)
{
    pthread_mutex_lock(mu);
    *flag = 1;
    pthread_cond_broadcast(cv);
    pthread_mutex_unlock(mu);
    pthread_join(th, NULL);
}

void sl_strand_close(struct sl_strand *s)
{
    if (!s)
        return;
    if (s->thread_started)
        stop_join(&s->qmu, &s->qcond, &s->stopping, s->thread);
    if (s->sthread_started) /* after the committer: it has enqueued its last batch */
        stop_join(&s->smu, &s->scond, &s->sstop, s->sthread);
    if (s->hthread_started) /* after the syncer: no job is posted any more; answers what is left */
        stop_join(&s->hmu, &s->hcond, &s->hstop, s->hthread);
    join_spare(s);
    if (s->tree && s->thread_started) {
        struct sl_err err = {0};
        if (sl_tree_save(s->tree, &err) < 0)
            sl_warn("strand %s: %s (the tree is rebuilt at the next start)", s->name, err.msg);
    }
    sl_tree_close(s->tree);
    for (size_t i = 0; i < s->nsegs; i++)
        sl_seg_close(s->segs[i]);
    free(s->segs);
    if (s->cur)
        free(s->cur->pend);
    free(s->cur);
    sl_buf_release(&s->wbuf);
    pthread_rwlock_destroy(&s->lock);
    pthread_mutex_destroy(&s->cmu);
    pthread_mutex_destroy(&s->ymu);
    pthread_mutex_destroy(&s->qmu);
    pthread_cond_destroy(&s->qcond);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->smu);
    pthread_cond_destroy(&s->scond);
    pthread_cond_destroy(&s->sdone);
    pthread_mutex_destroy(&s->hmu);
    pthread_cond_destroy(&s->hcond);
    pthread_cond_destroy(&s->wcond);
    free(s);
}

static int enqueue(struct sl_strand *s, struct sl_append *a, int wake, struct sl_err *err)
{
    uint64_t max = s->opts.segment_bytes - SL_SEG_HDR;
    for (size_t i = 0; i < a->n; i++)
        if (sl_frame_len(a->recs[i].source_len, a->recs[i].payload_len) > max)
            return sl_err_set(err, SL_E_TOOBIG, "record_too_large",
                              "record %zu is larger than a segment (%llu bytes)", i,
                              (unsigned long long)max);
    a->next = NULL;
    a->status = 0;
    pthread_mutex_lock(&s->qmu);
    if (s->stopping || s->failed) {
        pthread_mutex_unlock(&s->qmu);
        return sl_err_set(err, SL_E_UNAVAIL, "strand_unavailable",
                          "strand %s is not accepting writes (%s)", s->name,
                          s->failed ? "a disk sync failed; restart the server" : "shutting down");
    }
    if (s->qtail)
        s->qtail->next = a;
    else
        s->qhead = a;
    s->qtail = a;
    if (wake)
        pthread_cond_signal(&s->qcond);
    pthread_mutex_unlock(&s->qmu);
    return 0;
}

int sl_strand_submit(struct sl_strand *s, struct sl_append *a, struct sl_err *err)
{
    return enqueue(s, a, 1, err);
}

int sl_strand_enqueue(struct sl_strand *s, struct sl_append *a, struct sl_err *err)
{
    return enqueue(s, a, 0, err);
}

struct waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void wait_done(struct sl_append *a)
{
    struct waiter *w = a->arg;
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int sl_strand_append_wait(struct sl_strand *s, struct sl_append *a, struct sl_err *err)
{
    struct waiter w = {.done = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    a->done = wait_done;
    a->arg = &w;
    int rc = sl_strand_submit(s, a, err);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done)
            pthread_cond_wait(&w.cv, &w.mu);
        pthread_mutex_unlock(&w.mu);
        rc = a->status;
        if (rc)
            sl_err_set(err, rc, "io_error", "append to strand %s failed", s->name);
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return rc;
}

/* ---- committer and syncer ----
 *
 * Two-stage group commit: the committer takes every queued append, hashes the chain and writes
 * the frames with one pwrite (a batch), hands the batch to the syncer and goes on with the next
 * appends at once. The syncer takes every written batch, fdatasyncs once, publishes the records
 * to readers and answers the appends. So the next group is hashed and written while the previous
 * one syncs. A roll waits for the syncer to drain, so one sync never spans two segments. */

static void fail_appends(struct sl_append *a, int status)
{
    for (struct sl_append *next; a; a = next) {
        next = a->next; /* done() may free a */
        a->status = status;
        a->done(a);
    }
}

static void record_sync_time(struct sl_strand *s, uint64_t dt)
{
    int b = 0;
    while (b < SL_SYNC_BUCKETS - 1 && dt > (uint64_t)sl_sync_bucket_us[b] * 1000u)
        b++;
    __atomic_add_fetch(&s->stats.sync_hist[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->stats.sync_ns, dt, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->stats.fsyncs, 1, __ATOMIC_RELAXED);
}

/* Publishes a synced batch to readers. Syncer thread. */
static int publish(struct sl_strand *s, struct wbatch *b)
{
    int rc = 0;
    pthread_rwlock_wrlock(&s->lock);
    for (size_t i = 0; i < b->n && rc == 0; i++) {
        struct pending *p = &b->pend[i];
        if (i + 8 < b->n)
            sl_seg_index_prefetch(b->seg, b->pend[i + 8].hash);
        if (sl_seg_index_add(b->seg, p->off, p->len, p->hash, p->ts) < 0)
            rc = SL_E_NOMEM;
    }
    __atomic_store_n(&s->count, b->seg->base_seq + b->seg->count, __ATOMIC_RELEASE);
    if (rc == 0) {
        memcpy(s->head, b->head, SL_HASH_LEN);
        s->bytes += b->bytes;
    }
    pthread_rwlock_unlock(&s->lock);
    if (rc) {
        sl_error("strand %s: index of %s cannot grow; the strand stops accepting writes", s->name,
                 b->seg->path);
        return rc;
    }
    __atomic_add_fetch(&s->stats.records, b->n, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->stats.bytes, b->bytes, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->stats.commits, 1, __ATOMIC_RELAXED);
    return 0;
}

static void set_failed(struct sl_strand *s)
{
    pthread_mutex_lock(&s->qmu);
    s->failed = 1;
    pthread_mutex_unlock(&s->qmu);
}

/* The frames of a batch are staged in wbuf and written whenever it holds STAGE_BYTES: a buffer
 * that stays in the cache, reused, instead of one that grows to a whole group (a 1000-record
 * append is ~280 KB; everything queued at once can be a whole segment): the encode and the
 * kernel's copy into the page cache then touch warm memory, and no fresh pages are faulted in. */
#define STAGE_BYTES (256u << 10)
#define BATCH_BYTES (4u << 20)

/* Drops durable log bytes older than the newest opts.cache_window from the page cache, in steps
 * of at least a quarter window (8 MiB at most). Sync stage, after the answers. A log written at
 * batch rates otherwise takes a fresh page for every 4 KiB until memory is full, and on a VM
 * whose free memory goes back to the host, a fresh page costs more than the copy into it:
 * recycled pages make the write 5-7x cheaper in CPU (docs/decisions.md). PostgreSQL drops its
 * WAL segments' pages the same way. Readers of older records read them from the disk. */
static void drop_cache(struct sl_strand *s)
{
    uint64_t win = s->opts.cache_window;
    if (!win || !s->opts.durable)
        return;
    uint64_t step = win / 4 < (8u << 20) ? win / 4 : (8u << 20);
    struct {
        struct sl_segment *g;
        uint64_t from, to, n;
    } r[4];
    int nr = 0;
    pthread_rwlock_rdlock(&s->lock);
    size_t i = s->nsegs - 1;
    uint64_t keep = win, cut = s->segs[i]->end; /* durable: everything published is synced */
    while (cut < keep && i > s->drop_seg) {
        keep -= cut;
        cut = s->segs[--i]->end;
    }
    cut = cut > keep ? cut - keep : 0;
    while (s->drop_seg < i && nr < 4) { /* sealed: to its end */
        struct sl_segment *g = s->segs[s->drop_seg++];
        r[nr].g = g;
        r[nr].from = s->drop_off;
        r[nr].to = g->size; /* with the zeros past its end, also synced */
        r[nr++].n = g->end > s->drop_off ? g->end - s->drop_off : 0;
        s->drop_off = 0;
    }
    if (s->drop_seg == i && nr < 4 && cut >= s->drop_off + step) {
        r[nr].g = s->segs[i];
        r[nr].from = s->drop_off;
        r[nr].to = cut;
        r[nr++].n = cut - s->drop_off;
        s->drop_off = cut;
    }
    pthread_rwlock_unlock(&s->lock);
    for (int k = 0; k < nr; k++) {
        sl_seg_drop_cache(r[k].g, r[k].from, r[k].to);
        __atomic_add_fetch(&s->stats.cache_dropped, r[k].n, __ATOMIC_RELAXED);
    }
}

/* Groups of at least this many records go through the helper: their tree nodes are hashed
 * during the fdatasync and their appends answered during the next group's. Smaller groups do
 * both in the sync stage itself (a hand-off costs two wake-ups, and the single-record loop
 * answers in its own pass). */
#define HELPER_RECORDS 1024

static void tree_absorb_list(struct sl_tree *t, struct wbatch *list)
{
    for (struct wbatch *b = list; b; b = b->next)
        for (size_t i = 0; i < b->n; i++)
            sl_tree_add(t, b->pend[i].hash);
    sl_tree_absorb(t);
}

/* Answers the appends that end in these published (or failed) batches, in order, and frees them. */
static void answer_list(struct wbatch *list)
{
    for (struct wbatch *b = list, *next; b; b = next) {
        next = b->next;
        fail_appends(b->done_head, b->rc);
        free(b->pend);
        free(b);
    }
}

static void *helper_main(void *arg)
{
    struct sl_strand *s = arg;
    pthread_mutex_lock(&s->hmu);
    for (;;) {
        while (!s->htree && !s->ahead && !s->hstop)
            pthread_cond_wait(&s->hcond, &s->hmu);
        if (s->ahead) { /* the older job first */
            struct wbatch *list = s->ahead;
            s->ahead = s->atail = NULL;
            s->answering = 1;
            pthread_mutex_unlock(&s->hmu);
            answer_list(list);
            pthread_mutex_lock(&s->hmu);
            s->answering = 0;
        } else if (s->htree) {
            struct wbatch *list = s->htree;
            pthread_mutex_unlock(&s->hmu);
            tree_absorb_list(s->tree, list);
            pthread_mutex_lock(&s->hmu);
            s->htree = NULL;
            pthread_cond_broadcast(&s->hcond);
        } else {
            break; /* stopping, nothing left */
        }
    }
    pthread_mutex_unlock(&s->hmu);
    return NULL;
}

/* 0 once the helper runs (started on first use), -1 if it cannot be started. */
static int helper_start(struct sl_strand *s)
{
    if (!s->hthread_started) {
        if (pthread_create(&s->hthread, NULL, helper_main, s) != 0)
            return -1;
        sl_thread_name(s->hthread, "sync+:%s", s->name);
        s->hthread_started = 1;
    }
    return 0;
}

static void helper_post_tree(struct sl_strand *s, struct wbatch *list)
{
    pthread_mutex_lock(&s->hmu);
    s->htree = list;
    pthread_cond_broadcast(&s->hcond);
    pthread_mutex_unlock(&s->hmu);
}

static void helper_wait_tree(struct sl_strand *s)
{
    pthread_mutex_lock(&s->hmu);
    while (s->htree)
        pthread_cond_wait(&s->hcond, &s->hmu);
    pthread_mutex_unlock(&s->hmu);
}

/* Whether answers handed to the helper are still to be sent: then later groups' answers go the
 * same way, so that appends are answered in the order they were published (a source's durable()
 * positions must not go back). Only the sync stage posts answers, so the answer stays true until
 * it posts again. */
static int helper_answers_pending(struct sl_strand *s)
{
    if (!s->hthread_started)
        return 0;
    pthread_mutex_lock(&s->hmu);
    int pending = s->ahead || s->answering;
    pthread_mutex_unlock(&s->hmu);
    return pending;
}

static void helper_post_answers(struct sl_strand *s, struct wbatch *list, struct wbatch *last)
{
    pthread_mutex_lock(&s->hmu);
    if (s->atail)
        s->atail->next = list;
    else
        s->ahead = list;
    s->atail = last;
    pthread_cond_broadcast(&s->hcond);
    pthread_mutex_unlock(&s->hmu);
}

/* The sync stage for the batches written so far: one fdatasync, publish, answer. With ymu held
 * (taken here), so batches are published in the order they were written. */
static void sync_stage(struct sl_strand *s)
{
    pthread_mutex_lock(&s->ymu);
    pthread_mutex_lock(&s->smu);
    struct wbatch *list = s->shead;
    s->shead = s->stail = NULL;
    pthread_mutex_unlock(&s->smu);
    if (!list) {
        pthread_mutex_unlock(&s->ymu);
        return;
    }
    pthread_mutex_lock(&s->qmu);
    int rc = s->failed ? SL_E_UNAVAIL : 0;
    pthread_mutex_unlock(&s->qmu);
    uint64_t bytes = 0;
    size_t nrec = 0;
    for (struct wbatch *b = list; b; b = b->next) {
        bytes += b->bytes;
        nrec += b->n;
    }
    int helped = s->opts.durable && nrec >= HELPER_RECORDS && helper_start(s) == 0;
    /* The tree's nodes for these leaves are hashed while the disk writes their records: a big
     * group's by the helper during the fdatasync, a small one's here after the writeback is
     * started. Nothing of the tree is visible before the records are durable and published
     * (sl_tree_publish). */
    int absorbed = 0, posted = 0;
    if (rc == 0 && s->tree) {
        if (helped) {
            helper_post_tree(s, list);
            posted = 1;
        } else {
            if (s->opts.durable && bytes >= STAGE_BYTES) /* small: one syscall more for ~0 */
                (void)sync_file_range(list->seg->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
            tree_absorb_list(s->tree, list);
        }
        absorbed = 1;
    }
    if (rc == 0 && s->opts.durable) {
        uint64_t t0 = sl_mono_ns();
        int src = sl_io.fdatasync(list->seg->fd);
        record_sync_time(s, sl_mono_ns() - t0);
        if (src < 0) {
            /* After a failed fdatasync the kernel may have dropped the dirty pages:
             * retrying could report success for data that is gone. Stop writing (as
             * PostgreSQL does); a restart recovers from what is on disk. */
            sl_error("strand %s: fdatasync of %s failed: %s; the strand stops accepting "
                     "writes",
                     s->name, list->seg->path, strerror(errno));
            set_failed(s);
            rc = SL_E_IO;
        }
    }
    if (posted)
        helper_wait_tree(s);
    /* Published in order, the tree after them (an acknowledged record is in it), then the
     * answers; a batch that cannot be published fails with the ones after it. */
    int prc = rc;
    uint64_t k = 0;
    struct wbatch *last = NULL;
    for (struct wbatch *b = list; b; last = b, b = b->next, k++) {
        if (prc == 0 && (prc = publish(s, b)) != 0)
            set_failed(s);
        b->rc = prc;
    }
    if (absorbed) {
        if (prc == 0)
            sl_tree_publish(s->tree);
        else /* holds leaves of batches that are not published */
            sl_tree_invalidate(s->tree);
    }
    if (helped || helper_answers_pending(s))
        helper_post_answers(s, list, last);
    else
        answer_list(list);
    pthread_mutex_lock(&s->wmu);
    pthread_cond_broadcast(&s->wcond);
    pthread_mutex_unlock(&s->wmu);
    ring_bell();
    pthread_mutex_lock(&s->smu);
    s->synced += k;
    pthread_cond_broadcast(&s->sdone);
    pthread_mutex_unlock(&s->smu);
    if (rc == 0)
        drop_cache(s);
    pthread_mutex_unlock(&s->ymu);
}

static void *syncer_main(void *arg)
{
    struct sl_strand *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->smu);
        while (!s->shead && !s->sstop)
            pthread_cond_wait(&s->scond, &s->smu);
        int stop = !s->shead;
        pthread_mutex_unlock(&s->smu);
        if (stop)
            break; /* stopping and drained */
        sync_stage(s);
    }
    return NULL;
}

/* Writes what is staged at the end of the active segment. Committer thread. The batch's bytes
 * count what was written of it; on failure nothing more is (the caller fails the batch). */
static int flush_stage(struct sl_strand *s)
{
    if (s->wbuf.len == 0)
        return 0;
    struct sl_segment *a = active(s);
    if (s->opts.durable && sl_seg_zero_ahead(a, s->wend, s->wend + s->wbuf.len) < 0)
        sl_warn("strand %s: zero-filling ahead in %s failed: %s (syncs may be slower)", s->name,
                a->path, strerror(errno));
    /* Up to the end of the last page, with zeros: a page not in the cache (a spare's zeros went
     * past it) is then filled by this write instead of read from the disk first; the next
     * write starts in this page, which is cached now. Past the records there are zeros on
     * disk already, or stale frames of a failed write that recovery ignores. */
    size_t len = s->wbuf.len, pad = (SL_SEG_PAGE - (s->wend + len) % SL_SEG_PAGE) % SL_SEG_PAGE;
    if (s->wend + len + pad > a->size || sl_buf_reserve(&s->wbuf, pad) < 0)
        pad = 0;
    memset(s->wbuf.data + len, 0, pad);
    if (sl_pwrite_all(a->fd, s->wbuf.data, len + pad, s->wend) < 0) {
        sl_error("strand %s: write at offset %llu of %s failed: %s", s->name,
                 (unsigned long long)s->wend, a->path, strerror(errno));
        return SL_E_IO;
    }
    s->wend += s->wbuf.len;
    s->cur->bytes += s->wbuf.len;
    sl_buf_reset(&s->wbuf);
    return 0;
}

/* Writes the rest of the current batch and hands it to the syncer. Committer thread.
 * On failure the batch stays current (the caller fails its appends). */
static int write_batch(struct sl_strand *s)
{
    struct wbatch *b = s->cur;
    if (b->n == 0 && !b->done_head)
        return 0;
    int rc = flush_stage(s);
    if (rc)
        return rc;
    /* before the batch goes to the syncer: once its appends are answered, the spare decision
     * for what they wrote is made (and counted) */
    maybe_prepare_spare(s);
    struct wbatch *nb = calloc(1, sizeof(*nb));
    if (!nb)
        return SL_E_NOMEM;
    b->seg = active(s);
    memcpy(b->head, s->next_prev, SL_HASH_LEN);
    s->w_seq = s->next_seq;
    memcpy(s->w_prev, s->next_prev, SL_HASH_LEN);
    s->cur = nb;
    pthread_mutex_lock(&s->smu);
    if (s->stail)
        s->stail->next = b;
    else
        s->shead = b;
    s->stail = b;
    s->enqueued++;
    if (!s->inline_commit) /* inline, the caller runs the sync stage itself */
        pthread_cond_signal(&s->scond);
    pthread_mutex_unlock(&s->smu);
    return 0;
}

/* Waits until every written batch is published. Commit stage. */
static void wait_drained(struct sl_strand *s)
{
    if (s->inline_commit)
        sync_stage(s); /* the syncer thread was not woken for these batches */
    pthread_mutex_lock(&s->smu);
    while (s->synced != s->enqueued)
        pthread_cond_wait(&s->sdone, &s->smu);
    pthread_mutex_unlock(&s->smu);
}

/* Seals the active segment and starts the next. Called with nothing written but unsynced. */
static int roll(struct sl_strand *s)
{
    struct sl_err err = {0};
    struct sl_segment *old = active(s), *seg;
    /* A finished spare (spare.tmp) is used by sl_seg_create; one still being zero-filled is not
     * waited for (the new segment is then only fallocate'd), so a roll never stalls on it. While
     * that thread runs the spare is not touched at all: it renames over spare.tmp when done. */
    reap_spare(s);
    int use_spare = !s->spare_running;
    /* the syncer is drained: the tree covers every record of the segment being sealed */
    if (s->tree && sl_tree_save(s->tree, &err))
        sl_warn("strand %s: %s (the tree is rebuilt at the next start)", s->name, err.msg);
    if (sl_seg_write_idx(old, &err))
        sl_warn("strand %s: %s (the index is rebuilt at the next start)", s->name, err.msg);
    if (sl_seg_create(s->dir, s->next_seq, s->next_prev, s->opts.segment_bytes, s->opts.durable,
                      use_spare, &seg, &err)) {
        sl_error("strand %s: cannot start a new segment: %s", s->name, err.msg);
        return SL_E_IO;
    }
    pthread_rwlock_wrlock(&s->lock);
    int rc = segs_push(s, seg);
    if (rc == 0 && sl_seg_switch_idx(old, &err) != 0)
        sl_warn("strand %s: keeping the in-memory index of %s: %s", s->name, old->path, err.msg);
    pthread_rwlock_unlock(&s->lock);
    if (rc < 0) {
        sl_seg_close(seg);
        return SL_E_NOMEM;
    }
    s->wend = seg->end;
    start_rate_window(s);
    s->spare_made = 0; /* the next segment gets its own */
    return 0;
}

static int pend_push(struct wbatch *b, uint32_t off, const struct sl_record *r)
{
    if (b->n == b->cap) {
        size_t n = b->cap ? b->cap * 2 : 64;
        struct pending *p = realloc(b->pend, n * sizeof(*p));
        if (!p)
            return -1;
        b->pend = p;
        b->cap = n;
    }
    struct pending *p = &b->pend[b->n++];
    p->off = off;
    p->len = (uint32_t)sl_frame_len(r->source_len, r->payload_len);
    p->ts = r->timestamp_ms;
    memcpy(p->hash, r->hash, SL_HASH_LEN);
    return 0;
}

static int add_record(struct sl_strand *s, const struct sl_append_rec *in, uint64_t ts,
                      uint8_t hash_out[SL_HASH_LEN])
{
    uint64_t flen = sl_frame_len(in->source_len, in->payload_len);
    struct sl_segment *a = active(s);
    if (s->wend + s->wbuf.len + flen > a->size) {
        int rc = write_batch(s);
        if (rc)
            return rc;
        wait_drained(s);
        pthread_mutex_lock(&s->qmu);
        int failed = s->failed;
        pthread_mutex_unlock(&s->qmu);
        if (failed)
            return SL_E_UNAVAIL;
        if ((rc = roll(s)))
            return rc;
    }
    struct sl_record r = {
        .seq = s->next_seq,
        .timestamp_ms = ts,
        .flags = in->flags,
        .source_len = in->source_len,
        .source = in->source,
        .payload_len = in->payload_len,
        .payload = in->payload,
    };
    memcpy(r.prev_hash, s->next_prev, SL_HASH_LEN);
    sl_record_hash(s->name, s->name_len, &r, r.hash);
    if (s->wbuf.len && s->wbuf.len + flen > STAGE_BYTES) {
        int rc = flush_stage(s);
        if (rc)
            return rc;
    }
    if (sl_buf_reserve(&s->wbuf, flen) < 0 ||
        pend_push(s->cur, (uint32_t)(s->wend + s->wbuf.len), &r) < 0)
        return SL_E_NOMEM;
    sl_frame_encode(&r, s->wbuf.data + s->wbuf.len);
    s->wbuf.len += flen;
    memcpy(s->next_prev, r.hash, SL_HASH_LEN);
    memcpy(hash_out, r.hash, SL_HASH_LEN);
    s->next_seq++;
    return 0;
}

static void commit_group(struct sl_strand *s, struct sl_append *list)
{
    uint64_t now = sl_now_ms();
    uint64_t ts = now > s->last_ts ? now : s->last_ts; /* timestamps never go back in a strand */
    int rc = 0;
    struct sl_append *a = list, *next = NULL;
    for (; a; a = next) {
        next = a->next;
        a->first_seq = s->next_seq;
        a->timestamp_ms = ts;
        memcpy(a->prev_hash, s->next_prev, SL_HASH_LEN);
        for (size_t i = 0; i < a->n && rc == 0; i++)
            rc = add_record(s, &a->recs[i], ts, a->hashes[i]);
        if (rc)
            break;
        /* complete: the batch holding its last record answers it */
        struct wbatch *b = s->cur;
        a->next = NULL;
        if (b->done_tail)
            b->done_tail->next = a;
        else
            b->done_head = a;
        b->done_tail = a;
        /* Between appends, a batch of BATCH_BYTES goes to the syncer: its fdatasync, tree and
         * index work overlap the encoding of the next appends (an append is only split by a
         * roll, as before). */
        if (b->bytes + s->wbuf.len >= BATCH_BYTES && (rc = write_batch(s)) != 0) {
            a = next; /* the one just completed is in the failed batch's list */
            next = a ? a->next : NULL;
            break;
        }
    }
    if (rc == 0)
        rc = write_batch(s);
    if (rc == 0) {
        s->last_ts = ts;
        return;
    }
    /* Nothing of the current batch was handed to the syncer (what was staged out of it is not
     * synced, and is overwritten): fail its appends, the one being built and the rest of the
     * list, and continue the chain from the last written batch. Appends whose
     * earlier records were written before a roll still fail (a retry may duplicate them:
     * at-least-once). */
    struct wbatch *b = s->cur;
    struct sl_append *done = b->done_head;
    b->done_head = b->done_tail = NULL;
    b->n = 0;
    sl_buf_reset(&s->wbuf);
    s->wend -= b->bytes; /* what was staged out of it is overwritten by the next batch */
    b->bytes = 0;
    s->next_seq = s->w_seq;
    memcpy(s->next_prev, s->w_prev, SL_HASH_LEN);
    fail_appends(done, rc);
    if (a) {
        a->next = next;
        fail_appends(a, rc);
    }
}

/* Takes every queued append and runs the commit stage on them. With cmu held. */
static void commit_stage(struct sl_strand *s)
{
    pthread_mutex_lock(&s->qmu);
    struct sl_append *list = s->qhead;
    s->qhead = s->qtail = NULL;
    int failed = s->failed;
    pthread_mutex_unlock(&s->qmu);
    if (!list)
        return;
    if (failed)
        fail_appends(list, SL_E_UNAVAIL);
    else
        commit_group(s, list);
}

static void *committer_main(void *arg)
{
    struct sl_strand *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->qmu);
        while (!s->qhead && !s->stopping)
            pthread_cond_wait(&s->qcond, &s->qmu);
        int stop = !s->qhead;
        pthread_mutex_unlock(&s->qmu);
        if (stop)
            break; /* stopping and drained */
        pthread_mutex_lock(&s->cmu);
        commit_stage(s);
        pthread_mutex_unlock(&s->cmu);
    }
    return NULL;
}

void sl_strand_commit_now(struct sl_strand *s)
{
    pthread_mutex_lock(&s->cmu);
    s->inline_commit = 1;
    commit_stage(s);
    s->inline_commit = 0;
    pthread_mutex_unlock(&s->cmu);
    sync_stage(s);
}

/* ---- readers ---- */

static struct sl_segment *seg_for(struct sl_strand *s, uint64_t seq)
{
    size_t lo = 0, hi = s->nsegs;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->segs[mid]->base_seq <= seq)
            lo = mid;
        else
            hi = mid;
    }
    return s->segs[lo];
}

static int tree_leaves(void *ctx, uint64_t lo, uint64_t n, uint8_t out[][SL_HASH_LEN])
{
    struct sl_strand *s = ctx;
    int rc = 0;
    pthread_rwlock_rdlock(&s->lock);
    if (lo > s->count || s->count - lo < n)
        rc = SL_E_NOTFOUND;
    for (uint64_t i = 0; i < n && rc == 0;) {
        struct sl_segment *g = seg_for(s, lo + i);
        uint64_t j = lo + i - g->base_seq;
        for (; j < g->count && i < n; j++, i++)
            memcpy(out[i], sl_seg_hash_at(g, j), SL_HASH_LEN);
        if (j == g->count && i < n && g == active(s))
            rc = SL_E_NOTFOUND;
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

struct sl_tree *sl_strand_tree(struct sl_strand *s)
{
    return s->tree;
}

int sl_strand_sync(struct sl_strand *s)
{
    pthread_rwlock_rdlock(&s->lock);
    int fd = active(s)->fd; /* open until sl_strand_close */
    pthread_rwlock_unlock(&s->lock);
    return syncfs(fd) < 0 ? SL_E_IO : 0; /* every segment, sealed ones included */
}

uint64_t sl_strand_count(struct sl_strand *s)
{
    return __atomic_load_n(&s->count, __ATOMIC_ACQUIRE);
}

void sl_strand_info(struct sl_strand *s, struct sl_strand_info *info)
{
    memset(info, 0, sizeof(*info));
    pthread_rwlock_rdlock(&s->lock);
    info->count = s->count;
    memcpy(info->head_hash, s->head, SL_HASH_LEN);
    info->bytes = s->bytes;
    info->segments = s->nsegs;
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i]->count) {
            info->first_ts = s->segs[i]->first_ts;
            break;
        }
    for (size_t i = s->nsegs; i > 0; i--)
        if (s->segs[i - 1]->count) {
            info->last_ts = s->segs[i - 1]->last_ts;
            break;
        }
    pthread_rwlock_unlock(&s->lock);
}

void sl_strand_stats(struct sl_strand *s, struct sl_strand_stats *st)
{
    st->records = __atomic_load_n(&s->stats.records, __ATOMIC_RELAXED);
    st->bytes = __atomic_load_n(&s->stats.bytes, __ATOMIC_RELAXED);
    st->fsyncs = __atomic_load_n(&s->stats.fsyncs, __ATOMIC_RELAXED);
    st->commits = __atomic_load_n(&s->stats.commits, __ATOMIC_RELAXED);
    st->sync_ns = __atomic_load_n(&s->stats.sync_ns, __ATOMIC_RELAXED);
    st->spares = __atomic_load_n(&s->stats.spares, __ATOMIC_RELAXED);
    st->spares_skipped = __atomic_load_n(&s->stats.spares_skipped, __ATOMIC_RELAXED);
    st->cache_dropped = __atomic_load_n(&s->stats.cache_dropped, __ATOMIC_RELAXED);
    for (int i = 0; i < SL_SYNC_BUCKETS; i++)
        st->sync_hist[i] = __atomic_load_n(&s->stats.sync_hist[i], __ATOMIC_RELAXED);
}

int sl_strand_read(struct sl_strand *s, uint64_t seq, struct sl_record *r)
{
    pthread_rwlock_rdlock(&s->lock);
    int rc = seq < s->count ? sl_seg_read(seg_for(s, seq), seq, r) : SL_E_NOTFOUND;
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int sl_strand_find_hash(struct sl_strand *s, const uint8_t hash[SL_HASH_LEN], uint64_t *seq)
{
    int rc = SL_E_NOTFOUND;
    pthread_rwlock_rdlock(&s->lock);
    for (size_t i = s->nsegs; i > 0 && rc == SL_E_NOTFOUND; i--)
        rc = sl_seg_find_hash(s->segs[i - 1], hash, seq);
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

int sl_strand_find_time(struct sl_strand *s, uint64_t as_of, uint64_t *seq)
{
    int rc = SL_E_NOTFOUND;
    pthread_rwlock_rdlock(&s->lock);
    /* the last segment whose first record is not after as_of */
    for (size_t i = s->nsegs; i > 0; i--) {
        struct sl_segment *g = s->segs[i - 1];
        if (!g->count || g->first_ts > as_of)
            continue;
        int64_t k = sl_seg_find_time(g, as_of);
        if (k >= 0) {
            *seq = g->base_seq + (uint64_t)k;
            rc = 0;
        }
        break;
    }
    pthread_rwlock_unlock(&s->lock);
    return rc;
}

/* ---- the bell: one process-wide signal rung after every strand's commits ---- */

static pthread_mutex_t g_bell_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_bell_cv = PTHREAD_COND_INITIALIZER;
static uint64_t g_bell; /* under g_bell_mu */

static void ring_bell(void)
{
    pthread_mutex_lock(&g_bell_mu);
    g_bell++;
    pthread_cond_broadcast(&g_bell_cv);
    pthread_mutex_unlock(&g_bell_mu);
}

uint64_t sl_strand_bell(void)
{
    pthread_mutex_lock(&g_bell_mu);
    uint64_t v = g_bell;
    pthread_mutex_unlock(&g_bell_mu);
    return v;
}

uint64_t sl_strand_bell_wait(uint64_t seen, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&g_bell_mu);
    while (g_bell == seen && pthread_cond_timedwait(&g_bell_cv, &g_bell_mu, &dl) != ETIMEDOUT)
        ;
    uint64_t v = g_bell;
    pthread_mutex_unlock(&g_bell_mu);
    return v;
}

uint64_t sl_strand_wait(struct sl_strand *s, uint64_t after, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->wmu);
    uint64_t c;
    while ((c = sl_strand_count(s)) <= after)
        if (pthread_cond_timedwait(&s->wcond, &s->wmu, &dl) == ETIMEDOUT) {
            c = sl_strand_count(s);
            break;
        }
    pthread_mutex_unlock(&s->wmu);
    return c;
}
