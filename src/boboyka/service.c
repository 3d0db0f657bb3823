#include "boboyka/service.h"

#include "core/log.h"
#include "core/util.h"
#include "engine/meta.h"

#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ST_DISABLED = 0, ST_OK = 1, ST_PENDING = 2, ST_FAILED = 3 };
static const char *const g_state[] = {"disabled", "ok", "pending", "failed"};

#define MIRROR_NAME "boboyka-supabase" /* the connector that mirrors */
#define RECENT 256                     /* delivery notes remembered (see resolve) */

struct job {
    struct job *next;
    struct sl_bbk *b;
    struct sl_append a;
    struct sl_append_rec rec;
    uint8_t hashes[1][SL_HASH_LEN];
    struct sl_bbk_event ev;
    int answered; /* answered by the committer already (dual-write off) */
    int type, attempts, state;
    uint64_t seq, ts, deadline_ns;
    int strand_status;
    char error[240];
    sl_bbk_done_fn done;
    void *arg;
};

/* A delivery note of the mirror connector (copied off the sink worker's thread). */
struct note {
    struct note *next;
    enum sl_delivery what;
    uint64_t seq, n;
    int attempts;
    char error[240];
};

struct sl_bbk {
    struct sl_bbk_opts o;
    char *url, *dedup;
    int dual;
    char conn_id[16]; /* the mirror connector's id ("" without dual-write) */
    struct sl_store *store;
    struct sl_strand *strand;
    sqlite3 *db;                /* service thread (and open) */
    sqlite3_stmt *ins, *upd[4]; /* prepared once (db): see g_upd */
    sqlite3 *rd;                /* readers, under rd_mu */
    pthread_mutex_t rd_mu;
    pthread_t th;
    int started;
    pthread_mutex_t mu; /* guards everything below */
    pthread_cond_t cv;  /* the service thread waits on it */
    struct job *in_head, **in_tail;
    struct note *notes_head, **notes_tail;
    int stopping;
    long outstanding; /* ingests accepted and not yet indexed */
    /* Without dual-write an ingest is answered by the committer as soon as it is durable, and
     * indexed a moment later: readers wait until every event answered before they started is
     * in the index (read-your-writes without a thread hop on the write path). */
    uint64_t early_answered, early_indexed;
    pthread_cond_t indexed_cv;
    uint64_t counts[SL_BBK_NTYPES], pending, failed, sent_ok, sent_err;
    /* service thread only */
    struct job *waiting; /* mirrored events not yet answered, by seq */
    struct job *finished;
    uint64_t upto; /* every event below has been delivered or dead-lettered */
    struct note recent[RECENT];
    unsigned nrecent; /* notes seen (the last RECENT are in recent[], by nrecent % RECENT) */
    int blocked;      /* the last note was a failed attempt: nothing after it is sent */
    char block_error[240];
};

/* ---- index (SQLite) ---- */

/* What a delivery note does to the rows of [?2, ?3) that were answered already (attempts ?1,
 * error ?4); the row of an event answered later gets the note's state when it is written. */
enum { UPD_OK_PENDING, UPD_OK_FAILED, UPD_DEAD, UPD_ATTEMPT };
static const char *const g_upd[] = {
    "UPDATE events SET state=1, attempts=?1, error=NULL WHERE seq>=?2 AND seq<?3 AND state=2",
    "UPDATE events SET state=1, attempts=?1, error=NULL WHERE seq>=?2 AND seq<?3 AND state=3",
    "UPDATE events SET state=3, attempts=?1, error=?4 WHERE seq>=?2 AND seq<?3 AND state=2",
    "UPDATE events SET attempts=?1, error=?4 WHERE seq>=?2 AND seq<?3 AND state=2",
};

static int db_exec(sqlite3 *db, const char *sql, struct sl_err *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return SL_E_IO;
    }
    return 0;
}

static int db_open(struct sl_bbk *b, struct sl_err *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/boboyka.db", b->o.data_dir);
    if (sqlite3_open_v2(path, &b->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK ||
        sqlite3_open_v2(path, &b->rd, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
            SQLITE_OK)
        return sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: open %s", path);
    sqlite3_busy_timeout(b->db, 5000);
    sqlite3_busy_timeout(b->rd, 5000);
    /* synchronous=NORMAL: the index survives a process crash; after a power loss its tail is
     * rebuilt from the strand (the source of truth) on open. */
    int rc = db_exec(b->db,
                     "PRAGMA journal_mode=WAL;"
                     "PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY,"
                     " hash BLOB NOT NULL, type INTEGER NOT NULL, ts INTEGER NOT NULL,"
                     " state INTEGER NOT NULL, attempts INTEGER NOT NULL, error TEXT,"
                     " next_ms INTEGER NOT NULL);"
                     "CREATE INDEX IF NOT EXISTS events_type ON events(type, seq);"
                     "CREATE INDEX IF NOT EXISTS events_retry ON events(next_ms) WHERE state = 2;",
                     err);
    if (rc == 0 && sqlite3_prepare_v2(b->db,
                                      "INSERT OR REPLACE INTO events (seq, hash, type, ts, state,"
                                      " attempts, error, next_ms) VALUES (?,?,?,?,?,?,?,?)",
                                      -1, &b->ins, NULL) != SQLITE_OK)
        rc = SL_E_IO;
    for (int i = 0; rc == 0 && i < 4; i++)
        if (sqlite3_prepare_v2(b->db, g_upd[i], -1, &b->upd[i], NULL) != SQLITE_OK)
            rc = SL_E_IO;
    if (rc == SL_E_IO)
        sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: %s", sqlite3_errmsg(b->db));
    return rc;
}

static int db_insert(struct sl_bbk *b, uint64_t seq, const uint8_t *hash, int type, uint64_t ts,
                     int state, int attempts, const char *error, uint64_t next_ms)
{
    sqlite3_stmt *st = b->ins;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_blob(st, 2, hash, SL_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, type);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)ts);
    sqlite3_bind_int(st, 5, state);
    sqlite3_bind_int(st, 6, attempts);
    if (error)
        sqlite3_bind_text(st, 7, error, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)next_ms);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

/* Indexes strand records the index does not have yet (a crash between the two writes). Events
 * are indexed when their first mirror attempt ends, so not in seq order: a crash can leave gaps
 * below the highest indexed seq, but only among events committed at most one mirror timeout
 * before the newest indexed one (each is indexed within timeout_ms of its commit, in the order
 * they finish). So the scan starts timeout_ms + 5 s before that event, and below the highest
 * indexed seq it skips the seqs the index has. */
static int catch_up(struct sl_bbk *b, struct sl_err *err)
{
    sqlite3_stmt *st, *has = NULL;
    int64_t max = -1;
    if (sqlite3_prepare_v2(b->db, "SELECT MAX(seq) FROM events", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        max = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    uint64_t count = sl_strand_count(b->strand), added = 0, from = 0;
    struct sl_record r;
    if (max >= 0 && sl_strand_read(b->strand, (uint64_t)max, &r) == 0) {
        uint64_t margin = b->o.timeout_ms + 5000;
        if (r.timestamp_ms <= margin ||
            sl_strand_find_time(b->strand, r.timestamp_ms - margin, &from) < 0)
            from = 0;
    }
    if (from >= count)
        return 0;
    if (sqlite3_prepare_v2(b->db, "SELECT 1 FROM events WHERE seq = ?", -1, &has, NULL) !=
        SQLITE_OK)
        return sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: %s",
                          sqlite3_errmsg(b->db));
    db_exec(b->db, "BEGIN", NULL);
    for (uint64_t seq = from; seq < count; seq++) {
        if ((int64_t)seq <= max) {
            sqlite3_reset(has);
            sqlite3_bind_int64(has, 1, (sqlite3_int64)seq);
            if (sqlite3_step(has) == SQLITE_ROW)
                continue;
        }
        if (sl_strand_read(b->strand, seq, &r) < 0)
            continue;
        int t = sl_bbk_payload_type(r.payload, r.payload_len);
        if (t < 0)
            continue; /* written to the strand by other means: not a Boboyka event */
        int state = !b->dual ? ST_DISABLED : seq < b->upto ? ST_OK : ST_PENDING;
        if (db_insert(b, seq, r.hash, t, r.timestamp_ms, state, state == ST_OK,
                      state == ST_PENDING ? "not mirrored before a restart" : NULL, 0) < 0) {
            db_exec(b->db, "ROLLBACK", NULL);
            sqlite3_finalize(has);
            return sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: %s",
                              sqlite3_errmsg(b->db));
        }
        added++;
    }
    sqlite3_finalize(has);
    if (db_exec(b->db, "COMMIT", err) < 0)
        return SL_E_IO;
    if (added)
        sl_info("boboyka: indexed %" PRIu64 " events found only in the strand%s", added,
                b->dual ? " (queued for the Supabase mirror)" : "");
    return 0;
}

static void load_counts(struct sl_bbk *b)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(b->db, "SELECT type, state, COUNT(*) FROM events GROUP BY type, state",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int t = sqlite3_column_int(st, 0), s = sqlite3_column_int(st, 1);
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 2);
        if (t >= 0 && t < SL_BBK_NTYPES)
            b->counts[t] += n;
        if (s == ST_PENDING)
            b->pending += n;
        else if (s == ST_FAILED)
            b->failed += n;
    }
    sqlite3_finalize(st);
}

/* ---- jobs ---- */

static void job_free(struct job *j)
{
    sl_bbk_event_release(&j->ev);
    free(j);
}

static void answer(struct job *j, int dual)
{
    struct sl_bbk_result r = {
        .status = j->strand_status,
        .type = j->type,
        .seq = j->seq,
        .ingested_at_ms = j->ts,
        .dw_enabled = dual,
        .dw_ok = j->state == ST_OK,
        .dw_error = dual && j->state != ST_OK ? j->error : NULL,
    };
    memcpy(r.hash, j->hashes[0], SL_HASH_LEN);
    j->done(&r, j->arg);
}

/* Readers call this first: every event answered before now is in the index when it returns
 * (or after 30 s, if the index writer is stuck). */
static void wait_indexed(struct sl_bbk *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t want = b->early_answered;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec +=
        30; /* the indexer is behind by one flush at most; a loaded disk can take seconds */
    while (b->early_indexed < want && !b->stopping)
        if (pthread_cond_timedwait(&b->indexed_cv, &b->mu, &dl) != 0)
            break;
    pthread_mutex_unlock(&b->mu);
}

/* Ends job j with a mirror state: it is indexed and answered by the next flush. */
static void finish(struct sl_bbk *b, struct job *j, int state, int attempts, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void finish(struct sl_bbk *b, struct job *j, int state, int attempts, const char *fmt, ...)
{
    j->state = state;
    j->attempts = attempts;
    j->error[0] = 0;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(j->error, sizeof(j->error), fmt, ap);
        va_end(ap);
    }
    j->next = b->finished;
    b->finished = j;
}

/* Writes the notes' effect on rows already indexed and the finished jobs' rows in one
 * transaction, then answers the waiting requests. */
static void flush(struct sl_bbk *b, struct note *notes)
{
    struct job *list = b->finished;
    b->finished = NULL;
    if (!list && !notes)
        return;
    int64_t dcount[SL_BBK_NTYPES] = {0}, dpending = 0, dfailed = 0;
    db_exec(b->db, "BEGIN", NULL);
    for (struct note *n = notes; n; n = n->next) {
        int first = n->what == SL_DELIVERED       ? UPD_OK_PENDING
                    : n->what == SL_DEAD_LETTERED ? UPD_DEAD
                                                  : UPD_ATTEMPT;
        int last = n->what == SL_DELIVERED ? UPD_OK_FAILED : first;
        for (int u = first; u <= last; u++) {
            sqlite3_stmt *st = b->upd[u];
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            sqlite3_bind_int(st, 1, n->attempts);
            sqlite3_bind_int64(st, 2, (sqlite3_int64)n->seq);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)(n->seq + n->n));
            if (u >= UPD_DEAD)
                sqlite3_bind_text(st, 4, n->error, -1, SQLITE_STATIC);
            if (sqlite3_step(st) != SQLITE_DONE) {
                sl_error("boboyka index: %s", sqlite3_errmsg(b->db));
                continue;
            }
            int64_t ch = sqlite3_changes(b->db);
            if (u == UPD_OK_PENDING)
                dpending -= ch;
            else if (u == UPD_OK_FAILED)
                dfailed -= ch;
            else if (u == UPD_DEAD) {
                dpending -= ch;
                dfailed += ch;
            }
        }
    }
    for (struct job *j = list; j; j = j->next) {
        if (j->strand_status)
            continue;
        if (db_insert(b, j->seq, j->hashes[0], j->type, j->ts, j->state, j->attempts,
                      j->state == ST_OK || j->state == ST_DISABLED ? NULL : j->error, 0) < 0)
            sl_error("boboyka index: %s", sqlite3_errmsg(b->db));
        dcount[j->type]++;
        dpending += j->state == ST_PENDING;
        dfailed += j->state == ST_FAILED;
    }
    if (db_exec(b->db, "COMMIT", NULL) < 0)
        sl_error("boboyka index: commit: %s", sqlite3_errmsg(b->db));
    long done = 0, early = 0;
    for (struct job *j = list; j; j = j->next)
        early += j->answered;
    pthread_mutex_lock(&b->mu);
    for (int t = 0; t < SL_BBK_NTYPES; t++)
        b->counts[t] += (uint64_t)dcount[t];
    b->pending = (uint64_t)((int64_t)b->pending + dpending);
    b->failed = (uint64_t)((int64_t)b->failed + dfailed);
    if (early) {
        b->early_indexed += (uint64_t)early;
        pthread_cond_broadcast(&b->indexed_cv);
    }
    pthread_mutex_unlock(&b->mu);
    for (struct job *j = list, *next; j; j = next) {
        next = j->next;
        done++;
        if (!j->answered)
            answer(j, b->dual);
        job_free(j);
    }
    pthread_mutex_lock(&b->mu);
    b->outstanding -= done;
    pthread_mutex_unlock(&b->mu);
}

/* What the delivery notes say of job j, if they say anything yet: finished then. The newest
 * note that covers its seq wins; below the connector's cursor without a note remembered, it was
 * delivered; not yet sent while the connector retries an earlier batch, it is answered at once
 * (the ingest does not wait for an outage to end). Returns 1 if finished. */
static int resolve(struct sl_bbk *b, struct job *j)
{
    unsigned n = b->nrecent < RECENT ? b->nrecent : RECENT;
    for (unsigned k = 1; k <= n; k++) {
        const struct note *nt = &b->recent[(b->nrecent - k) % RECENT];
        if (j->seq < nt->seq || j->seq >= nt->seq + nt->n)
            continue;
        if (nt->what == SL_DELIVERED)
            finish(b, j, ST_OK, nt->attempts, NULL);
        else
            finish(b, j, nt->what == SL_DEAD_LETTERED ? ST_FAILED : ST_PENDING, nt->attempts, "%s",
                   nt->error);
        return 1;
    }
    if (j->seq < b->upto) {
        finish(b, j, ST_OK, 1, NULL);
        return 1;
    }
    if (b->blocked) {
        finish(b, j, ST_PENDING, 0, "not sent yet, Supabase is failing: %s", b->block_error);
        return 1;
    }
    return 0;
}

/* Takes one note: remembered, and every waiting job it settles is finished. */
static void take_note(struct sl_bbk *b, const struct note *nt)
{
    b->recent[b->nrecent++ % RECENT] = *nt;
    if (nt->what == SL_ATTEMPT_FAILED) {
        b->blocked = 1;
        snprintf(b->block_error, sizeof(b->block_error), "%s", nt->error);
        pthread_mutex_lock(&b->mu);
        b->sent_err++;
        pthread_mutex_unlock(&b->mu);
    } else {
        b->blocked = 0;
        if (nt->seq <= b->upto && nt->seq + nt->n > b->upto)
            b->upto = nt->seq + nt->n;
        pthread_mutex_lock(&b->mu);
        if (nt->what == SL_DELIVERED)
            b->sent_ok++;
        else
            b->sent_err++;
        pthread_mutex_unlock(&b->mu);
    }
    for (struct job **p = &b->waiting; *p;) {
        struct job *j = *p, *next = j->next; /* finish() reuses j->next */
        if (resolve(b, j))
            *p = next;
        else
            p = &j->next;
    }
}

/* Waiting jobs by seq (they come in commit order: almost always at the end). */
static void wait_for_mirror(struct sl_bbk *b, struct job *j)
{
    struct job **p = &b->waiting;
    while (*p && (*p)->seq < j->seq)
        p = &(*p)->next;
    j->next = *p;
    *p = j;
}

static void *service_main(void *arg)
{
    struct sl_bbk *b = arg;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        struct job *in = b->in_head;
        b->in_head = NULL;
        b->in_tail = &b->in_head;
        struct note *notes = b->notes_head;
        b->notes_head = NULL;
        b->notes_tail = &b->notes_head;
        int stopping = b->stopping;
        long outstanding = b->outstanding;
        pthread_mutex_unlock(&b->mu);
        for (struct note *n = notes; n; n = n->next)
            take_note(b, n);
        uint64_t now = sl_mono_ns(), next_deadline = UINT64_MAX;
        for (struct job *j = in, *next; j; j = next) {
            next = j->next;
            if (j->strand_status || !b->dual)
                finish(b, j, ST_DISABLED, 0, NULL);
            else if (!resolve(b, j))
                wait_for_mirror(b, j);
        }
        for (struct job **p = &b->waiting; *p;) {
            struct job *j = *p;
            if (stopping || j->deadline_ns <= now) {
                *p = j->next;
                if (stopping)
                    finish(b, j, ST_PENDING, 0, "server shutting down before Supabase answered");
                else
                    finish(b, j, ST_PENDING, 0,
                           "not mirrored within %" PRIu64 " ms (timeout); retried in the "
                           "background",
                           b->o.timeout_ms);
            } else {
                if (j->deadline_ns < next_deadline)
                    next_deadline = j->deadline_ns;
                p = &j->next;
            }
        }
        flush(b, notes);
        while (notes) {
            struct note *n = notes->next;
            free(notes);
            notes = n;
        }
        if (stopping && outstanding == 0 && !in && !b->waiting)
            break;
        pthread_mutex_lock(&b->mu);
        if (!b->in_head && !b->notes_head && !(b->stopping && !stopping)) {
            uint64_t wait_ns = stopping ? 5000000u : 100000000u;
            if (next_deadline != UINT64_MAX && next_deadline - now < wait_ns)
                wait_ns = next_deadline > now ? next_deadline - now : 0;
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            uint64_t t = (uint64_t)dl.tv_nsec + wait_ns;
            dl.tv_sec += (time_t)(t / 1000000000u);
            dl.tv_nsec = (long)(t % 1000000000u);
            pthread_cond_timedwait(&b->cv, &b->mu, &dl);
        }
        pthread_mutex_unlock(&b->mu);
    }
    return NULL;
}

/* The mirror connector's sink worker reports a delivery outcome (its thread). */
static void on_delivery(void *arg, const struct sl_delivery_note *d)
{
    struct sl_bbk *b = arg;
    struct note *n = calloc(1, sizeof(*n));
    if (!n)
        return; /* the waiting ingest is answered at its deadline; the row stays pending */
    n->what = d->what;
    n->seq = d->seq;
    n->n = d->n;
    n->attempts = d->attempts;
    snprintf(n->error, sizeof(n->error), "%s", d->error);
    pthread_mutex_lock(&b->mu);
    *b->notes_tail = n;
    b->notes_tail = &n->next;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

/* The strand's committer calls this when the event is durable (or failed). */
static void on_committed(struct sl_append *a)
{
    struct job *j = a->arg;
    struct sl_bbk *b = j->b;
    j->strand_status = a->status;
    j->seq = a->first_seq;
    j->ts = a->timestamp_ms;
    j->deadline_ns = sl_mono_ns() + b->o.timeout_ms * 1000000;
    if (!b->dual && j->strand_status == 0) {
        j->state = ST_DISABLED;
        j->answered = 1;
        /* counted before the answer leaves: a client that reads right after its answer finds
         * the event (readers wait for the index to catch up with this count) */
        pthread_mutex_lock(&b->mu);
        b->early_answered++;
        pthread_mutex_unlock(&b->mu);
        answer(j, 0); /* durable is all it waits for; indexed by the service thread next */
    }
    pthread_mutex_lock(&b->mu);
    *b->in_tail = j;
    b->in_tail = &j->next;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
}

int sl_bbk_ingest(struct sl_bbk *b, struct sl_bbk_event *ev, sl_bbk_done_fn done, void *arg,
                  struct sl_err *err)
{
    struct job *j = calloc(1, sizeof(*j));
    if (!j) {
        sl_bbk_event_release(ev);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    j->b = b;
    j->ev = *ev;
    j->type = ev->type;
    j->done = done;
    j->arg = arg;
    j->rec.payload = j->ev.payload.data;
    j->rec.payload_len = (uint32_t)j->ev.payload.len;
    j->rec.source = "boboyka";
    j->rec.source_len = 7;
    j->a.recs = &j->rec;
    j->a.n = 1;
    j->a.hashes = j->hashes;
    j->a.done = on_committed;
    j->a.arg = j;
    pthread_mutex_lock(&b->mu);
    int stopping = b->stopping;
    if (!stopping)
        b->outstanding++;
    pthread_mutex_unlock(&b->mu);
    int rc = stopping ? sl_err_set(err, SL_E_UNAVAIL, "shutting_down", "server shutting down")
                      : sl_strand_submit(b->strand, &j->a, err);
    if (rc < 0) {
        if (!stopping) {
            pthread_mutex_lock(&b->mu);
            b->outstanding--;
            pthread_mutex_unlock(&b->mu);
        }
        job_free(j);
        return rc;
    }
    return 0;
}

/* ---- the mirror connector ---- */

/* The config of the supabase connector that mirrors, from the server's Boboyka options. */
static json_t *mirror_config(const struct sl_bbk *b)
{
    const struct sl_bbk_opts *o = &b->o;
    uint64_t reset_s = (o->retry_max_ms + 999) / 1000;
    json_t *cfg = json_pack(
        "{s:s, s:s, s:s, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:{s:I}}", "url", b->url, "key",
        o->supabase_key, "mapping", "boboyka", "timeout_ms", (json_int_t)o->timeout_ms,
        "batch_size", (json_int_t)500, "max_in_flight", (json_int_t)4, "retry",
        "initial_backoff_ms", (json_int_t)o->retry_base_ms, "max_backoff_ms",
        (json_int_t)o->retry_max_ms, "max_retries", (json_int_t)o->max_retries, "circuit_breaker",
        "reset_timeout_secs", (json_int_t)(reset_s < 86400 ? reset_s : 86400));
    if (cfg && b->dedup[0])
        json_object_set_new(cfg, "dedup_column", json_string(b->dedup));
    return cfg;
}

/* Where a new mirror connector starts: at the oldest event an earlier version left pending in
 * its own retry queue (so that none is lost in the upgrade), else at the strand's head. Events
 * that earlier version gave up on become the connector's dead letters (replayable). */
static uint64_t adopt_old_queue(struct sl_bbk *b, struct sl_meta *meta, const char *id)
{
    uint64_t start = sl_strand_count(b->strand);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(b->db, "SELECT MIN(seq) FROM events WHERE state = 2", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        start = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(
            b->db, "SELECT seq, hash, attempts, error FROM events WHERE state = 3 ORDER BY seq", -1,
            &st, NULL) != SQLITE_OK)
        return start;
    while (sqlite3_step(st) == SQLITE_ROW) {
        char hash[SL_HASH_LEN * 2 + 1] = "";
        if (sqlite3_column_bytes(st, 1) == SL_HASH_LEN)
            sl_hex_encode(hash, sqlite3_column_blob(st, 1), SL_HASH_LEN);
        const char *e = (const char *)sqlite3_column_text(st, 3);
        struct sl_meta_dead_letter d = {
            .connector_id = id,
            .strand = "boboyka",
            .record_hash = hash,
            .last_error = e ? e : "",
            .response_excerpt = "",
            .seq = (uint64_t)sqlite3_column_int64(st, 0),
            .at_ms = sl_now_ms(),
            .attempts = sqlite3_column_int(st, 2),
        };
        sl_meta_add_dead_letter(meta, &d, NULL);
    }
    sqlite3_finalize(st);
    return start;
}

/* With dual-write on: the supabase connector "boboyka-supabase" that follows the strand
 * "boboyka", created (or brought in line with the options) and managed by this service: it
 * reports every delivery here. With dual-write off, one left by an earlier run is removed. */
static int setup_mirror(struct sl_bbk *b, struct sl_err *err)
{
    struct sl_registry *reg = b->o.registry;
    char id[16];
    int exists = sl_registry_lookup(reg, MIRROR_NAME, id) == 0;
    if (!b->dual) {
        if (exists && sl_registry_delete(reg, id, err) < 0)
            return SL_E_IO;
        if (exists)
            sl_info("boboyka: dual-write is off: connector %s (%s) removed", MIRROR_NAME, id);
        return 0;
    }
    json_t *cfg = mirror_config(b), *got;
    if (!cfg)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    struct sl_meta *meta = sl_registry_meta(reg);
    json_t *body = exists ? json_pack("{s:o, s:b}", "config", cfg, "enabled", 1)
                          : json_pack("{s:s, s:s, s:[s], s:o}", "name", MIRROR_NAME, "kind",
                                      "supabase", "strands", "boboyka", "config", cfg);
    got = !body    ? NULL
          : exists ? sl_registry_patch(reg, id, body, err)
                   : sl_registry_create(reg, body, err);
    json_decref(body);
    if (!exists) {
        if (got) {
            snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(got, "id")));
            sl_meta_set_cursor(meta, id, "boboyka", adopt_old_queue(b, meta, id), NULL);
        }
    }
    if (!got)
        return err->code ? SL_E_INVAL
                         : sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    json_decref(got);
    snprintf(b->conn_id, sizeof(b->conn_id), "%s", id);
    if (sl_meta_get_cursor(meta, id, "boboyka", &b->upto) != 0)
        b->upto = sl_strand_count(b->strand);
    return sl_registry_manage(reg, id, "boboyka (BOBOYKA_SUPABASE_URL, BOBOYKA_SUPABASE_KEY)",
                              on_delivery, b, err);
}

/* ---- open / close ---- */

static char *trimmed_url(const char *u)
{
    char *s = strdup(u);
    if (s)
        for (size_t n = strlen(s); n > 0 && s[n - 1] == '/'; n--)
            s[n - 1] = 0;
    return s;
}

int sl_bbk_open(struct sl_bbk **out, struct sl_store *store, const struct sl_bbk_opts *o,
                struct sl_err *err)
{
    struct sl_bbk *b = calloc(1, sizeof(*b));
    if (!b)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    b->o = *o;
    b->store = store;
    b->dual = o->supabase_url && *o->supabase_url && o->supabase_key && *o->supabase_key;
    b->url = trimmed_url(b->dual ? o->supabase_url : "");
    b->dedup = strdup(o->dedup_column ? o->dedup_column : "");
    b->in_tail = &b->in_head;
    b->notes_tail = &b->notes_head;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->cv, NULL);
    pthread_mutex_init(&b->rd_mu, NULL);
    pthread_cond_init(&b->indexed_cv, NULL);
    int rc;
    if (!b->url || !b->dedup) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    if ((rc = sl_store_strand(store, "boboyka", 7, 1, &b->strand, err)) < 0 ||
        (rc = db_open(b, err)) < 0 || (rc = setup_mirror(b, err)) < 0 ||
        (rc = catch_up(b, err)) < 0)
        goto fail;
    load_counts(b);
    if (pthread_create(&b->th, NULL, service_main, b) != 0) {
        rc = sl_err_sys(err, SL_E_IO, "start the boboyka service");
        goto fail;
    }
    sl_thread_name(b->th, "sl-boboyka");
    b->started = 1;
    if (b->dual)
        sl_info("boboyka: dual-write to %s through connector %s (%s; timeout %" PRIu64
                " ms, %" PRIu64 " retries)%s%s",
                b->url, MIRROR_NAME, b->conn_id, o->timeout_ms, o->max_retries,
                b->dedup[0] ? ", dedup column " : "", b->dedup);
    *out = b;
    return 0;
fail:
    sl_bbk_close(b);
    return rc;
}

void sl_bbk_close(struct sl_bbk *b)
{
    if (!b)
        return;
    if (b->started) {
        pthread_mutex_lock(&b->mu);
        b->stopping = 1;
        pthread_cond_signal(&b->cv);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->th, NULL);
    }
    for (struct note *n = b->notes_head, *next; n; n = next) {
        next = n->next;
        free(n);
    }
    sqlite3_finalize(b->ins);
    for (int i = 0; i < 4; i++)
        sqlite3_finalize(b->upd[i]);
    sqlite3_close(b->db);
    sqlite3_close(b->rd);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->rd_mu);
    pthread_cond_destroy(&b->indexed_cv);
    free(b->url);
    free(b->dedup);
    free(b);
}

/* ---- read side ---- */

int sl_bbk_dual_write(const struct sl_bbk *b)
{
    return b->dual;
}

void sl_bbk_status_json(struct sl_bbk *b, struct sl_buf *out)
{
    wait_indexed(b);
    pthread_mutex_lock(&b->mu);
    uint64_t c[SL_BBK_NTYPES], pending = b->pending, failed = b->failed, total = 0;
    memcpy(c, b->counts, sizeof(c));
    pthread_mutex_unlock(&b->mu);
    sl_buf_printf(out, "{\"integration_phase\":\"%s\",\"dual_write_enabled\":%s,\"supabase_url\":",
                  b->dual ? "Phase 1 \xe2\x80\x94 dual-write (Sluice + Supabase)"
                          : "Sluice only \xe2\x80\x94 dual-write off (BOBOYKA_SUPABASE_URL and "
                            "BOBOYKA_SUPABASE_KEY not both set)",
                  b->dual ? "true" : "false");
    if (b->dual)
        sl_buf_json_str(out, b->url, strlen(b->url));
    else
        sl_buf_puts(out, "null");
    sl_buf_puts(out, ",\"event_counts\":{");
    for (int t = 0; t < SL_BBK_NTYPES; t++) {
        sl_buf_printf(out, "%s\"%s\":%" PRIu64, t ? "," : "", sl_bbk_type_name(t), c[t]);
        total += c[t];
    }
    sl_buf_printf(out,
                  "},\"total_events\":%" PRIu64 ",\"mirror_pending\":%" PRIu64
                  ",\"mirror_failed\":%" PRIu64 ",\"mirror_connector\":",
                  total, pending, failed);
    if (b->dual)
        sl_buf_printf(out, "\"%s\"}", b->conn_id);
    else
        sl_buf_puts(out, "null}");
}

int sl_bbk_events_json(struct sl_bbk *b, int type, uint64_t before, uint32_t limit,
                       struct sl_buf *out, struct sl_err *err)
{
    wait_indexed(b);
    pthread_mutex_lock(&b->rd_mu);
    sqlite3_stmt *st;
    const char *sql = type < 0 ? "SELECT seq, hash, type, ts, state, attempts, error FROM events"
                                 " WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"
                               : "SELECT seq, hash, type, ts, state, attempts, error FROM events"
                                 " WHERE type = ?3 AND seq < ?1 ORDER BY seq DESC LIMIT ?2";
    if (sqlite3_prepare_v2(b->rd, sql, -1, &st, NULL) != SQLITE_OK) {
        pthread_mutex_unlock(&b->rd_mu);
        return sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: %s",
                          sqlite3_errmsg(b->rd));
    }
    sqlite3_bind_int64(st, 1, before > INT64_MAX ? INT64_MAX : (sqlite3_int64)before);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit + 1);
    if (type >= 0)
        sqlite3_bind_int(st, 3, type);
    sl_buf_puts(out, "{\"events\":[");
    uint32_t n = 0;
    uint64_t last = 0;
    int more = 0, rc = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == limit) {
            more = 1;
            break;
        }
        uint64_t seq = (uint64_t)sqlite3_column_int64(st, 0);
        int state = sqlite3_column_int(st, 4);
        if (state < 0 || state > ST_FAILED)
            state = ST_FAILED;
        sl_buf_puts(out, n ? ",{\"record_hash\":\"" : "{\"record_hash\":\"");
        if (sqlite3_column_bytes(st, 1) == SL_HASH_LEN)
            sl_buf_hex(out, sqlite3_column_blob(st, 1), SL_HASH_LEN);
        sl_buf_printf(out,
                      "\",\"record_type\":\"%s\",\"ingested_at_ms\":%" PRIu64
                      ",\"dual_write_ok\":%s,\"dual_write_error\":",
                      sl_bbk_type_name(sqlite3_column_int(st, 2)),
                      (uint64_t)sqlite3_column_int64(st, 3),
                      state == ST_DISABLED ? "null"
                      : state == ST_OK     ? "true"
                                           : "false");
        const char *e = (const char *)sqlite3_column_text(st, 6);
        if (e && state != ST_OK)
            sl_buf_json_str(out, e, strlen(e));
        else
            sl_buf_puts(out, "null");
        sl_buf_printf(out, ",\"dual_write_state\":\"%s\",\"dual_write_attempts\":%d,\"data\":",
                      g_state[state], sqlite3_column_int(st, 5));
        struct sl_record r;
        if (sl_strand_read(b->strand, seq, &r) < 0 ||
            sl_bbk_payload_data_json(r.payload, r.payload_len, out) < 0)
            sl_buf_puts(out, "null");
        sl_buf_putc(out, '}');
        last = seq;
        n++;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&b->rd_mu);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: read failed");
    if (more)
        sl_buf_printf(out, "],\"next_cursor\":\"%" PRIu64 "\"}", last);
    else
        sl_buf_puts(out, "],\"next_cursor\":null}");
    return out->failed ? sl_err_set(err, SL_E_NOMEM, "out_of_memory", "answer too large") : 0;
}

void sl_bbk_metrics(struct sl_bbk *b, struct sl_buf *out)
{
    pthread_mutex_lock(&b->mu);
    uint64_t c[SL_BBK_NTYPES], pending = b->pending, failed = b->failed, ok = b->sent_ok,
                               bad = b->sent_err;
    memcpy(c, b->counts, sizeof(c));
    pthread_mutex_unlock(&b->mu);
    sl_buf_puts(out, "# HELP sluice_boboyka_events_total Boboyka events ingested, by type.\n"
                     "# TYPE sluice_boboyka_events_total counter\n");
    for (int t = 0; t < SL_BBK_NTYPES; t++)
        sl_buf_printf(out, "sluice_boboyka_events_total{record_type=\"%s\"} %" PRIu64 "\n",
                      sl_bbk_type_name(t), c[t]);
    sl_buf_printf(
        out,
        "# HELP sluice_boboyka_mirror_pending Events waiting for a Supabase retry.\n"
        "# TYPE sluice_boboyka_mirror_pending gauge\n"
        "sluice_boboyka_mirror_pending %" PRIu64 "\n"
        "# HELP sluice_boboyka_mirror_failed Events whose mirror gave up.\n"
        "# TYPE sluice_boboyka_mirror_failed gauge\n"
        "sluice_boboyka_mirror_failed %" PRIu64 "\n"
        "# HELP sluice_boboyka_mirror_requests_total Mirror attempts (bulk inserts) by result.\n"
        "# TYPE sluice_boboyka_mirror_requests_total counter\n"
        "sluice_boboyka_mirror_requests_total{result=\"ok\"} %" PRIu64 "\n"
        "sluice_boboyka_mirror_requests_total{result=\"error\"} %" PRIu64 "\n",
        pending, failed, ok, bad);
}
