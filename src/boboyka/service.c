#include "boboyka/service.h"

#include "connectors/httpc.h"
#include "core/log.h"
#include "core/util.h"

#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { ST_DISABLED = 0, ST_OK = 1, ST_PENDING = 2, ST_FAILED = 3 };
static const char *const g_state[] = {"disabled", "ok", "pending", "failed"};

#define MAX_BATCH 500 /* events in one bulk insert */
/* mirror requests in flight: few, so that events gather into bulk inserts */
#define MAX_INFLIGHT 4
#define SCAN_BATCH 200    /* retries taken from the queue at a time */
#define LEASE_MS 600000   /* a retry taken is not taken again for this long (reset on open) */
#define RESP_EXCERPT 4096 /* bytes of a Supabase answer kept for the error text */

struct job {
    struct job *next;
    struct sl_bbk *b;
    struct sl_append a;
    struct sl_append_rec rec;
    uint8_t hashes[1][SL_HASH_LEN];
    struct sl_bbk_event ev; /* the payload (foreground jobs) */
    struct sl_buf mirror;   /* the mirror body: the data as JSON, made only when dual-write is on */
    int background;         /* a retry from the queue: nobody waits for it */
    int answered;           /* answered by the committer already (dual-write off) */
    int nobatch;            /* sent alone */
    int type, attempts;     /* attempts made before this one */
    uint64_t seq, ts, deadline_ns, shape;
    int strand_status;
    int ok, aborted;
    char error[240];
    sl_bbk_done_fn done;
    void *arg;
};

struct batch {
    struct batch *next;
    CURL *c;
    struct job *jobs;
    size_t n;
    struct sl_buf body;
    struct sl_httpc_resp resp;
    struct curl_slist *hdrs;
    char url[1200];
};

struct sl_bbk {
    struct sl_bbk_opts o;
    char *url, *key, *dedup;
    int dual;
    struct sl_store *store;
    struct sl_strand *strand;
    sqlite3 *db;             /* service thread (and open) */
    sqlite3_stmt *ins, *upd; /* prepared once (db) */
    sqlite3 *rd;             /* readers, under rd_mu */
    pthread_mutex_t rd_mu;
    pthread_t th;
    int started;
    CURLM *multi;
    pthread_mutex_t mu; /* guards everything below */
    struct job *in_head, **in_tail;
    int stopping;
    long outstanding; /* ingests accepted and not yet indexed */
    /* Without dual-write an ingest is answered by the committer as soon as it is durable, and
     * indexed a moment later: readers wait until every event answered before they started is
     * in the index (read-your-writes without a thread hop on the write path). */
    uint64_t early_answered, early_indexed;
    pthread_cond_t indexed_cv;
    uint64_t counts[SL_BBK_NTYPES], pending, failed, sent_ok, sent_err;
    /* service thread only */
    struct job *queue, **queue_tail, *finished;
    struct batch *inflight;
    int ninflight;
    uint64_t next_scan_ns;
};

/* ---- index (SQLite) ---- */

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
                     "CREATE INDEX IF NOT EXISTS events_retry ON events(next_ms) WHERE state = 2;"
                     "UPDATE events SET next_ms = 0 WHERE state = 2;",
                     err);
    if (rc == 0 &&
        (sqlite3_prepare_v2(b->db,
                            "INSERT OR REPLACE INTO events (seq, hash, type, ts, state, attempts,"
                            " error, next_ms) VALUES (?,?,?,?,?,?,?,?)",
                            -1, &b->ins, NULL) != SQLITE_OK ||
         sqlite3_prepare_v2(b->db,
                            "UPDATE events SET state=?, attempts=?, error=?, next_ms=? WHERE seq=?",
                            -1, &b->upd, NULL) != SQLITE_OK))
        rc = sl_err_set(err, SL_E_IO, "metadata_error", "boboyka index: %s", sqlite3_errmsg(b->db));
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
        if (db_insert(b, seq, r.hash, t, r.timestamp_ms, b->dual ? ST_PENDING : ST_DISABLED, 0,
                      b->dual ? "not mirrored before a restart" : NULL, 0) < 0) {
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
    sl_buf_release(&j->mirror);
    free(j);
}

static void answer(struct job *j, int dual);

/* Writes the outcome of every finished job to the index in one transaction, then answers the
 * waiting requests. */
static void flush_finished(struct sl_bbk *b)
{
    struct job *list = b->finished;
    b->finished = NULL;
    if (!list)
        return;
    uint64_t now = sl_now_ms();
    int64_t dcount[SL_BBK_NTYPES] = {0}, dpending = 0, dfailed = 0;
    db_exec(b->db, "BEGIN", NULL);
    for (struct job *j = list; j; j = j->next) {
        if (j->strand_status)
            continue;
        int state = ST_DISABLED, attempts = j->attempts;
        uint64_t next = 0;
        if (b->dual || j->background) {
            if (!j->aborted)
                attempts++;
            if (j->ok)
                state = ST_OK;
            else if (!j->aborted && (uint64_t)attempts > b->o.max_retries)
                state = ST_FAILED;
            else {
                state = ST_PENDING;
                next = j->aborted
                           ? 0
                           : now + sl_backoff_ms(b->o.retry_base_ms, b->o.retry_max_ms, attempts);
            }
        }
        if (j->background) {
            sqlite3_stmt *st = b->upd;
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            sqlite3_bind_int(st, 1, state);
            sqlite3_bind_int(st, 2, attempts);
            if (!j->ok)
                sqlite3_bind_text(st, 3, j->error, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, (sqlite3_int64)next);
            sqlite3_bind_int64(st, 5, (sqlite3_int64)j->seq);
            if (sqlite3_step(st) != SQLITE_DONE)
                sl_error("boboyka index: %s", sqlite3_errmsg(b->db));
            dpending -= 1;
        } else {
            if (db_insert(b, j->seq, j->hashes[0], j->type, j->ts, state, attempts,
                          state == ST_OK || state == ST_DISABLED ? NULL : j->error, next) < 0)
                sl_error("boboyka index: %s", sqlite3_errmsg(b->db));
            dcount[j->type]++;
        }
        if (state == ST_PENDING)
            dpending++;
        else if (state == ST_FAILED)
            dfailed++;
        if (state == ST_FAILED)
            sl_warn("boboyka: event %" PRIu64 " not mirrored after %d attempts: %s", j->seq,
                    attempts, j->error);
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
        done += !j->background;
        if (!j->background && !j->answered)
            answer(j, b->dual);
        job_free(j);
    }
    pthread_mutex_lock(&b->mu);
    b->outstanding -= done;
    pthread_mutex_unlock(&b->mu);
}

static void answer(struct job *j, int dual)
{
    struct sl_bbk_result r = {
        .status = j->strand_status,
        .type = j->type,
        .seq = j->seq,
        .ingested_at_ms = j->ts,
        .dw_enabled = dual,
        .dw_ok = j->ok,
        .dw_error = dual && !j->ok ? j->error : NULL,
    };
    memcpy(r.hash, j->hashes[0], SL_HASH_LEN);
    j->done(&r, j->arg);
}

/* Readers call this first: every event answered before now is in the index when it returns
 * (or after 2 s, if the index writer is stuck). */
static void wait_indexed(struct sl_bbk *b)
{
    pthread_mutex_lock(&b->mu);
    uint64_t want = b->early_answered;
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 2;
    while (b->early_indexed < want && !b->stopping)
        if (pthread_cond_timedwait(&b->indexed_cv, &b->mu, &dl) != 0)
            break;
    pthread_mutex_unlock(&b->mu);
}

static void finish(struct sl_bbk *b, struct job *j)
{
    j->next = b->finished;
    b->finished = j;
}

static void fail_job(struct sl_bbk *b, struct job *j, int aborted, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_job(struct sl_bbk *b, struct job *j, int aborted, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->error, sizeof(j->error), fmt, ap);
    va_end(ap);
    j->ok = 0;
    j->aborted = aborted;
    finish(b, j);
}

static void enqueue(struct sl_bbk *b, struct job *j)
{
    j->next = NULL;
    *b->queue_tail = j;
    b->queue_tail = &j->next;
}

/* ---- mirror requests ---- */

static void batch_free(struct batch *bt)
{
    if (bt->c)
        curl_easy_cleanup(bt->c);
    curl_slist_free_all(bt->hdrs);
    sl_buf_release(&bt->body);
    sl_httpc_resp_release(&bt->resp);
    free(bt);
}

/* Appends job j's mirror body, with the dedup column first when configured. */
static void body_append(struct sl_bbk *b, struct sl_buf *out, const struct job *j)
{
    const struct sl_buf *m = &j->mirror;
    if (!b->dedup[0]) {
        sl_buf_append(out, m->data, m->len);
        return;
    }
    sl_buf_putc(out, '{');
    sl_buf_json_str(out, b->dedup, strlen(b->dedup));
    sl_buf_puts(out, ":\"");
    sl_buf_hex(out, j->hashes[0], SL_HASH_LEN);
    sl_buf_putc(out, '"');
    if (m->len > 2)
        sl_buf_putc(out, ',');
    sl_buf_append(out, m->data + 1, m->len - 1);
}

/* Takes the queue's first job and every later one of the same table and shape (up to
 * MAX_BATCH) and starts one request for them. */
static void launch_one(struct sl_bbk *b)
{
    struct job *first = b->queue;
    uint64_t now = sl_mono_ns();
    struct batch *bt = calloc(1, sizeof(*bt));
    if (!bt)
        return;
    sl_buf_init(&bt->body, 0);
    sl_httpc_resp_init(&bt->resp, RESP_EXCERPT);
    struct job **tail = &bt->jobs;
    uint64_t deadline = first->deadline_ns;
    for (struct job **p = &b->queue; *p && bt->n < MAX_BATCH;) {
        struct job *j = *p;
        int take = j == first || (!first->nobatch && !j->nobatch && j->type == first->type &&
                                  j->shape == first->shape);
        if (!take) {
            p = &j->next;
            continue;
        }
        *p = j->next;
        j->next = NULL;
        *tail = j;
        tail = &j->next;
        bt->n++;
        if (j->deadline_ns < deadline)
            deadline = j->deadline_ns;
    }
    b->queue_tail = &b->queue;
    while (*b->queue_tail)
        b->queue_tail = &(*b->queue_tail)->next;
    if (deadline <= now + 1000000) {
        for (struct job *j = bt->jobs, *next; j; j = next) {
            next = j->next;
            fail_job(b, j, 0, "timed out after %" PRIu64 " ms waiting to be sent", b->o.timeout_ms);
        }
        bt->jobs = NULL;
        batch_free(bt);
        return;
    }
    if (bt->n > 1)
        sl_buf_putc(&bt->body, '[');
    for (struct job *j = bt->jobs; j; j = j->next) {
        if (j != bt->jobs)
            sl_buf_putc(&bt->body, ',');
        body_append(b, &bt->body, j);
    }
    if (bt->n > 1)
        sl_buf_putc(&bt->body, ']');
    snprintf(bt->url, sizeof(bt->url), "%s/rest/v1/%s%s%s", b->url, sl_bbk_table(first->type),
             b->dedup[0] ? "?on_conflict=" : "", b->dedup);
    char h[1200];
    snprintf(h, sizeof(h), "apikey: %s", b->key);
    bt->hdrs = curl_slist_append(bt->hdrs, h);
    snprintf(h, sizeof(h), "Authorization: Bearer %s", b->key);
    bt->hdrs = curl_slist_append(bt->hdrs, h);
    bt->hdrs = curl_slist_append(bt->hdrs, "Content-Type: application/json");
    bt->hdrs = curl_slist_append(bt->hdrs, b->dedup[0] ? "Prefer: return=minimal,"
                                                         "resolution=ignore-duplicates"
                                                       : "Prefer: return=minimal");
    bt->hdrs = curl_slist_append(bt->hdrs, "Expect:");
    bt->c = curl_easy_init();
    if (!bt->c || bt->body.failed) {
        for (struct job *j = bt->jobs, *next; j; j = next) {
            next = j->next;
            fail_job(b, j, 0, "out of memory");
        }
        bt->jobs = NULL;
        batch_free(bt);
        return;
    }
    long timeout = (long)((deadline - now) / 1000000);
    sl_httpc_prepare(bt->c, "POST", bt->url, bt->hdrs, bt->body.data, bt->body.len, timeout,
                     &bt->resp);
    curl_easy_setopt(bt->c, CURLOPT_PRIVATE, bt);
    curl_multi_add_handle(b->multi, bt->c);
    bt->next = b->inflight;
    b->inflight = bt;
    b->ninflight++;
}

/* The error text of a failed answer: PostgREST's "message" if there is one. */
static void answer_error(const struct batch *bt, long status, char *out, size_t n)
{
    const char *body = (const char *)bt->resp.body.data;
    size_t len = bt->resp.body.len;
    const char *m = len ? memmem(body, len, "\"message\":\"", 11) : NULL;
    if (m) {
        m += 11;
        size_t k = 0;
        while (m + k < body + len && m[k] != '"' && k < 160)
            k += m[k] == '\\' && m + k + 1 < body + len ? 2 : 1;
        snprintf(out, n, "Supabase answered %ld: %.*s", status, (int)k, m);
    } else {
        size_t k = len < 160 ? len : 160;
        snprintf(out, n, "Supabase answered %ld%s%.*s", status, k ? ": " : "", (int)k,
                 len ? body : "");
    }
}

static void complete(struct sl_bbk *b, struct batch *bt, CURLcode rc)
{
    long status = 0;
    curl_easy_getinfo(bt->c, CURLINFO_RESPONSE_CODE, &status);
    int ok = rc == CURLE_OK && status >= 200 && status < 300;
    char why[240] = "";
    if (rc == CURLE_OPERATION_TIMEDOUT) {
        double t = 0;
        curl_easy_getinfo(bt->c, CURLINFO_TOTAL_TIME, &t);
        snprintf(why, sizeof(why), "Supabase did not answer within %.0f ms (timeout)", t * 1000);
    } else if (rc != CURLE_OK) {
        snprintf(why, sizeof(why), "Supabase unreachable: %s", curl_easy_strerror(rc));
    } else if (!ok) {
        answer_error(bt, status, why, sizeof(why));
    }
    /* A bulk insert refused as a whole (one bad row, differing shapes): send each alone, so
     * that only the events at fault fail. */
    int split = !ok && rc == CURLE_OK && bt->n > 1 && status >= 400 && status < 500 &&
                status != 408 && status != 429;
    pthread_mutex_lock(&b->mu);
    if (ok)
        b->sent_ok++;
    else
        b->sent_err++;
    pthread_mutex_unlock(&b->mu);
    for (struct job *j = bt->jobs, *next; j; j = next) {
        next = j->next;
        if (split) {
            j->nobatch = 1;
            enqueue(b, j);
        } else if (ok) {
            j->ok = 1;
            finish(b, j);
        } else {
            fail_job(b, j, 0, "%s", why);
        }
    }
    bt->jobs = NULL;
}

static void drain_multi(struct sl_bbk *b)
{
    int running, left;
    curl_multi_perform(b->multi, &running);
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(b->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct batch *bt;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&bt);
        CURLcode rc = msg->data.result;
        curl_multi_remove_handle(b->multi, bt->c);
        for (struct batch **p = &b->inflight; *p; p = &(*p)->next)
            if (*p == bt) {
                *p = bt->next;
                break;
            }
        b->ninflight--;
        complete(b, bt, rc);
        batch_free(bt);
    }
}

static void abort_all(struct sl_bbk *b)
{
    for (struct batch *bt = b->inflight, *next; bt; bt = next) {
        next = bt->next;
        curl_multi_remove_handle(b->multi, bt->c);
        for (struct job *j = bt->jobs, *jn; j; j = jn) {
            jn = j->next;
            fail_job(b, j, 1, "server shutting down before Supabase answered");
        }
        bt->jobs = NULL;
        batch_free(bt);
    }
    b->inflight = NULL;
    b->ninflight = 0;
    for (struct job *j = b->queue, *next; j; j = next) {
        next = j->next;
        fail_job(b, j, 1, "server shutting down before the mirror write");
    }
    b->queue = NULL;
    b->queue_tail = &b->queue;
}

/* Takes due retries from the durable queue. */
static void scan_retries(struct sl_bbk *b)
{
    uint64_t now_ns = sl_mono_ns();
    if (!b->dual || now_ns < b->next_scan_ns || b->queue)
        return;
    b->next_scan_ns = now_ns + 100000000; /* 100 ms */
    pthread_mutex_lock(&b->mu);
    uint64_t pending = b->pending;
    pthread_mutex_unlock(&b->mu);
    if (!pending)
        return;
    uint64_t now = sl_now_ms();
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(b->db,
                           "SELECT seq, type, attempts FROM events WHERE state = 2 AND"
                           " next_ms <= ? ORDER BY next_ms LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK)
        return;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)now);
    sqlite3_bind_int(st, 2, SCAN_BATCH);
    struct job *got = NULL;
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct job *j = calloc(1, sizeof(*j));
        if (!j)
            break;
        j->b = b;
        j->background = j->nobatch = 1;
        j->seq = (uint64_t)sqlite3_column_int64(st, 0);
        j->type = sqlite3_column_int(st, 1);
        j->attempts = sqlite3_column_int(st, 2);
        sl_buf_init(&j->ev.payload, 0);
        sl_buf_init(&j->mirror, 0);
        j->next = got;
        got = j;
    }
    sqlite3_finalize(st);
    if (!got)
        return;
    db_exec(b->db, "BEGIN", NULL);
    for (struct job *j = got, *next; j; j = next) {
        next = j->next;
        char sql[96];
        snprintf(sql, sizeof(sql), "UPDATE events SET next_ms = %" PRIu64 " WHERE seq = %" PRIu64,
                 now + LEASE_MS, j->seq);
        db_exec(b->db, sql, NULL);
        struct sl_record r;
        if (sl_strand_read(b->strand, j->seq, &r) < 0 ||
            sl_bbk_payload_data_json(r.payload, r.payload_len, &j->mirror) < 0) {
            fail_job(b, j, 0, "the strand record %" PRIu64 " cannot be read", j->seq);
            continue;
        }
        memcpy(j->hashes[0], r.hash, SL_HASH_LEN);
        j->deadline_ns = sl_mono_ns() + b->o.timeout_ms * 1000000;
        enqueue(b, j);
    }
    db_exec(b->db, "COMMIT", NULL);
}

static void *service_main(void *arg)
{
    struct sl_bbk *b = arg;
    for (;;) {
        pthread_mutex_lock(&b->mu);
        struct job *in = b->in_head;
        b->in_head = NULL;
        b->in_tail = &b->in_head;
        int stopping = b->stopping;
        long outstanding = b->outstanding;
        pthread_mutex_unlock(&b->mu);
        for (struct job *j = in, *next; j; j = next) {
            next = j->next;
            if (j->strand_status || !b->dual)
                finish(b, j);
            else if (sl_bbk_payload_data_json(j->ev.payload.data, j->ev.payload.len, &j->mirror) <
                     0)
                fail_job(b, j, 0, "out of memory making the mirror body");
            else
                enqueue(b, j);
        }
        if (stopping)
            abort_all(b);
        else
            scan_retries(b);
        while (b->queue && b->ninflight < MAX_INFLIGHT)
            launch_one(b);
        drain_multi(b);
        flush_finished(b);
        if (stopping && outstanding == 0 && !b->inflight && !b->finished && !in)
            break;
        int timeout = stopping ? 5 : 100;
        if (!b->in_head)
            curl_multi_poll(b->multi, NULL, 0, timeout, NULL);
    }
    return NULL;
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
        answer(j, 0); /* durable is all it waits for; indexed by the service thread next */
        j->answered = 1;
    }
    pthread_mutex_lock(&b->mu);
    b->early_answered += (uint64_t)j->answered;
    *b->in_tail = j;
    b->in_tail = &j->next;
    pthread_mutex_unlock(&b->mu);
    curl_multi_wakeup(b->multi);
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
    sl_buf_init(&j->mirror, 0);
    j->type = ev->type;
    j->shape = ev->shape;
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
    b->key = strdup(b->dual ? o->supabase_key : "");
    b->dedup = strdup(o->dedup_column ? o->dedup_column : "");
    b->in_tail = &b->in_head;
    b->queue_tail = &b->queue;
    pthread_mutex_init(&b->mu, NULL);
    pthread_mutex_init(&b->rd_mu, NULL);
    pthread_cond_init(&b->indexed_cv, NULL);
    int rc;
    if (!b->url || !b->key || !b->dedup) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    if ((rc = sl_store_strand(store, "boboyka", 7, 1, &b->strand, err)) < 0 ||
        (rc = db_open(b, err)) < 0 || (rc = catch_up(b, err)) < 0)
        goto fail;
    load_counts(b);
    b->multi = curl_multi_init();
    if (!b->multi) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "curl_multi_init failed");
        goto fail;
    }
    curl_multi_setopt(b->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)MAX_INFLIGHT);
    if (pthread_create(&b->th, NULL, service_main, b) != 0) {
        rc = sl_err_sys(err, SL_E_IO, "start the boboyka service");
        goto fail;
    }
    b->started = 1;
    if (b->dual)
        sl_info("boboyka: dual-write to %s (timeout %" PRIu64 " ms, %" PRIu64 " retries)%s%s",
                b->url, o->timeout_ms, o->max_retries, b->dedup[0] ? ", dedup column " : "",
                b->dedup);
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
        pthread_mutex_unlock(&b->mu);
        curl_multi_wakeup(b->multi);
        pthread_join(b->th, NULL);
    }
    if (b->multi)
        curl_multi_cleanup(b->multi);
    sqlite3_finalize(b->ins);
    sqlite3_finalize(b->upd);
    sqlite3_close(b->db);
    sqlite3_close(b->rd);
    pthread_mutex_destroy(&b->mu);
    pthread_mutex_destroy(&b->rd_mu);
    pthread_cond_destroy(&b->indexed_cv);
    free(b->url);
    free(b->key);
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
                  ",\"mirror_failed\":%" PRIu64 "}",
                  total, pending, failed);
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
    sl_buf_printf(out,
                  "# HELP sluice_boboyka_mirror_pending Events waiting for a Supabase retry.\n"
                  "# TYPE sluice_boboyka_mirror_pending gauge\n"
                  "sluice_boboyka_mirror_pending %" PRIu64 "\n"
                  "# HELP sluice_boboyka_mirror_failed Events whose mirror gave up.\n"
                  "# TYPE sluice_boboyka_mirror_failed gauge\n"
                  "sluice_boboyka_mirror_failed %" PRIu64 "\n"
                  "# HELP sluice_boboyka_mirror_requests_total Supabase requests by result.\n"
                  "# TYPE sluice_boboyka_mirror_requests_total counter\n"
                  "sluice_boboyka_mirror_requests_total{result=\"ok\"} %" PRIu64 "\n"
                  "sluice_boboyka_mirror_requests_total{result=\"error\"} %" PRIu64 "\n",
                  pending, failed, ok, bad);
}
