/* Component test of the source framework (src/engine/source_worker.c): the engine in-process
 * (store with fsync on, registry, engine, in a temporary directory) and a scriptable fake source
 * registered at run time (kind "fakesrc"). What a source relies on: durable() is called only for
 * groups that are in the strand (published after their fsync), in emission order, with the
 * positions given; a position emitted with no records is reported after what is in flight; the
 * position comes back at the next start; after a crash that lost the stored position, the
 * framework reads the source's last record back (position_of) so nothing is emitted twice;
 * finishing (REJECT) is "completed" and a fatal poll is "restarting"; with the disk stalled (a
 * gated fdatasync) emit() blocks once 64 MiB wait for their sync (back-pressure). No sleeping: the
 * test waits on a condition variable, with a deadline, for what the fake records. */
#include "core/io.h"
#include "core/log.h"
#include "engine/engine.h"
#include "engine/kinds.h"
#include "engine/meta.h"
#include "engine/registry.h"
#include "strand/store.h"
#include "t.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#define MAXD 64

/* One fake source's script and log (one per test, chosen by config.lane). */
struct lane {
    int groups;      /* groups to emit in all (each of `per` records), then... */
    int per;         /* records per group */
    int idle_after;  /* emit a records-less position after this many groups (0: never) */
    int finish;      /* ...return REJECT (finished) once done; else FATAL once done if fatal */
    int fatal;       /* return FATAL once the groups are out */
    int next;        /* next group index (the position is next) */
    int started;     /* start() calls */
    uint64_t resume; /* the position start() got (groups already out), UINT64_MAX if none */
    struct sl_strand *strand;
    uint64_t durable_pos[MAXD];
    uint64_t count_at[MAXD]; /* the strand's published count when durable() ran */
    int n_durable;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct lane lanes[8];
    struct sl_store *store;
    /* back-pressure (lane 6): big records, and a gate that holds every fdatasync */
    int gate_closed;
    uint64_t emitted_bytes, durable_bytes, max_unsynced;
    int in_emit;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

#define BIG (256u << 10) /* bytes of one record of lane 6 */
#define BIG_GROUP 4      /* records per group of lane 6 */

static int (*real_fdatasync)(int fd);

/* The committer's fdatasync, held while the test keeps the gate closed: a disk that stalls. */
static int gated_fdatasync(int fd)
{
    pthread_mutex_lock(&g.mu);
    while (g.gate_closed)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    return real_fdatasync(fd);
}

/* A record's payload: MessagePack uint32 of (group << 16 | index): position_of reads it. */
static void encode(uint8_t p[5], uint32_t v)
{
    p[0] = 0xce;
    p[1] = (uint8_t)(v >> 24);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 8);
    p[4] = (uint8_t)v;
}

struct src {
    struct lane *l;
    int done;
};

static int fs_start(void **self, const struct sl_source_ctx *ctx, struct sl_err *err)
{
    struct src *s = calloc(1, sizeof(*s));
    int lane = (int)json_integer_value(json_object_get(ctx->config, "lane"));
    const char *strand = json_string_value(json_object_get(ctx->config, "strand"));
    s->l = &g.lanes[lane];
    pthread_mutex_lock(&g.mu);
    s->l->started++;
    s->l->resume = UINT64_MAX;
    if (ctx->position_len == 8) {
        memcpy(&s->l->resume, ctx->position, 8);
        s->l->next = (int)s->l->resume;
    }
    sl_store_strand(g.store, strand, strlen(strand), 1, &s->l->strand, NULL);
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    *self = s;
    return 0;
}

static enum sl_result fs_poll(void *self, struct sl_emitter *em, int timeout_ms, char *error,
                              size_t errlen)
{
    struct src *s = self;
    struct lane *l = s->l;
    pthread_mutex_lock(&g.mu);
    int gi = l->next, per = l->per;
    int done = gi >= l->groups;
    pthread_mutex_unlock(&g.mu);
    if (done) {
        if (l->finish)
            return SL_R_REJECT;
        if (l->fatal) {
            snprintf(error, errlen, "fake source: fatal");
            return SL_R_FATAL;
        }
        struct timespec ts = {0, 2000000}; /* nothing to read: a source waits for input */
        nanosleep(&ts, NULL);
        return SL_R_OK;
    }
    if (l == &g.lanes[6]) { /* big records: BIG_GROUP x BIG bytes per group */
        static uint8_t big[BIG];
        struct sl_emit_rec br[BIG_GROUP];
        for (int i = 0; i < BIG_GROUP; i++) {
            big[0] = 0xc6; /* MessagePack bin 32 */
            big[1] = (uint8_t)((BIG - 5) >> 24), big[2] = (uint8_t)((BIG - 5) >> 16);
            big[3] = (uint8_t)((BIG - 5) >> 8), big[4] = (uint8_t)(BIG - 5);
            br[i] = (struct sl_emit_rec){.payload = big, .payload_len = BIG};
        }
        uint64_t pos = (uint64_t)gi + 1;
        pthread_mutex_lock(&g.mu);
        g.in_emit = 1;
        pthread_cond_broadcast(&g.cv);
        pthread_mutex_unlock(&g.mu);
        int rc = em->emit(em, br, BIG_GROUP, &pos, sizeof(pos)); /* may block: back-pressure */
        pthread_mutex_lock(&g.mu);
        g.in_emit = 0;
        if (rc == 0) {
            g.emitted_bytes += (uint64_t)BIG * BIG_GROUP;
            if (g.emitted_bytes - g.durable_bytes > g.max_unsynced)
                g.max_unsynced = g.emitted_bytes - g.durable_bytes;
            l->next = gi + 1;
        }
        pthread_cond_broadcast(&g.cv);
        pthread_mutex_unlock(&g.mu);
        return rc == 0 ? SL_R_OK : SL_R_RETRY;
    }
    uint8_t pay[16][5];
    struct sl_emit_rec recs[16];
    for (int i = 0; i < per; i++) {
        encode(pay[i], (uint32_t)gi << 16 | (uint32_t)i);
        recs[i] = (struct sl_emit_rec){.payload = pay[i], .payload_len = 5};
    }
    uint64_t pos = (uint64_t)gi + 1;
    if (em->emit(em, recs, (size_t)per, &pos, sizeof(pos)) < 0)
        return SL_R_RETRY;
    if (l->idle_after && gi + 1 == l->idle_after) {
        uint64_t idle = 1000 + (uint64_t)gi; /* moved on without records */
        em->emit(em, NULL, 0, &idle, sizeof(idle));
    }
    pthread_mutex_lock(&g.mu);
    l->next = gi + 1;
    pthread_mutex_unlock(&g.mu);
    return SL_R_OK;
}

static void fs_durable(void *self, const void *position, size_t len)
{
    struct src *s = self;
    struct lane *l = s->l;
    uint64_t pos = 0;
    memcpy(&pos, position, len < 8 ? len : 8);
    uint64_t count = sl_strand_count(l->strand); /* published after the fsync */
    pthread_mutex_lock(&g.mu);
    if (l == &g.lanes[6])
        g.durable_bytes = pos * BIG * BIG_GROUP; /* everything up to this group */
    if (l->n_durable < MAXD) {
        l->durable_pos[l->n_durable] = pos;
        l->count_at[l->n_durable++] = count;
    }
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
}

static void fs_stop(void *self)
{
    free(self);
}

/* The position after a record: its group + 1. */
static int fs_position_of(const uint8_t *p, size_t len, void *pos, size_t *pos_len)
{
    if (len != 5 || p[0] != 0xce || (p[3] & 0x80))
        return -1;
    uint64_t v = ((uint64_t)p[1] << 24 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 8 | p[4]);
    uint64_t next = (v >> 16) + 1;
    memcpy(pos, &next, 8);
    *pos_len = 8;
    return 0;
}

/* A record flagged NOPOS (index bit 15: one of a group whose last record a crash cut off)
 * carries no position; folding it gives old * 100 + index + 1, so the test sees which records
 * were folded, in which order, into which position. */
#define NOPOS 0x8000u

static int fs_position_fold(void *pos, size_t *pos_len, const uint8_t *p, size_t len)
{
    if (*pos_len != 8 || len != 5 || p[0] != 0xce || !(p[3] & 0x80))
        return -1;
    uint64_t old;
    memcpy(&old, pos, 8);
    uint64_t v = old * 100 + (p[4] + 1u);
    memcpy(pos, &v, 8);
    return 0;
}

static const struct sl_source_ops fs_ops = {.start = fs_start,
                                            .poll = fs_poll,
                                            .durable = fs_durable,
                                            .stop = fs_stop,
                                            .position_of = fs_position_of,
                                            .position_fold = fs_position_fold};

static const struct sl_field fs_fields[] = {
    {"lane", SL_F_INT, 0, "0", 0, "Which script and log.", 0, 7, NULL, NULL},
    {"strand", SL_F_STRAND, 1, NULL, 0, "Strand written to.", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_connector fs_kind = {.abi = SL_CONNECTOR_ABI,
                                            .name = "fakesrc",
                                            .direction = SL_INBOUND,
                                            .category = "utility",
                                            .description = "A scriptable source for tests.",
                                            .fields = fs_fields,
                                            .source = &fs_ops};

struct env {
    char dir[64];
    struct sl_store *store;
    struct sl_registry *reg;
    struct sl_engine *eng;
};

/* Waits (10 s at most) until pred(lane) holds. */
static int wait_until(int lane, int (*pred)(const struct lane *, long), long arg)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    pthread_mutex_lock(&g.mu);
    int ok, rc = 0;
    while (!(ok = pred(&g.lanes[lane], arg)) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g.cv, &g.mu, &dl);
    pthread_mutex_unlock(&g.mu);
    return ok;
}

static int durable_at_least(const struct lane *l, long n)
{
    return l->n_durable >= n;
}

static int started_at_least(const struct lane *l, long n)
{
    return l->started >= n;
}

static char *create(struct env *e, int lane, const char *strand)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"name\":\"%s\",\"kind\":\"fakesrc\",\"config\":{\"lane\":%d,\"strand\":\"%s\"}}",
             strand, lane, strand);
    json_t *b = json_loads(body, 0, NULL);
    struct sl_err err = {0};
    json_t *c = sl_registry_create(e->reg, b, &err);
    json_decref(b);
    if (!c) {
        fprintf(stderr, "create: %s\n", err.msg);
        abort();
    }
    char *id = strdup(json_string_value(json_object_get(c, "id")));
    json_decref(c);
    sl_registry_changed(e->reg);
    return id;
}

static const char *state_of(struct env *e, const char *id, char *buf, size_t n)
{
    json_t *c = sl_registry_get(e->reg, id, NULL);
    snprintf(buf, n, "%s", json_string_value(json_object_get(c, "state")) ?: "?");
    json_decref(c);
    return buf;
}

static int wait_state(struct env *e, const char *id, const char *want)
{
    char buf[32];
    for (int i = 0; i < 1000; i++) { /* polls the registry: 10 s at most */
        if (strcmp(state_of(e, id, buf, sizeof(buf)), want) == 0)
            return 1;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static void check_durable_after_fsync(struct env *e)
{
    struct lane *l = &g.lanes[1];
    l->groups = 6, l->per = 3, l->idle_after = 6, l->finish = 0;
    char *id = create(e, 1, "s1-durable");
    T_CHECK(wait_until(1, durable_at_least, 7), "1. durable: every group reported (and the idle "
                                                "position)");
    pthread_mutex_lock(&g.mu);
    int after = 1, ordered = 1;
    for (int i = 0; i < 6 && i < l->n_durable; i++) {
        after &= l->count_at[i] >= (uint64_t)(i + 1) * 3;
        ordered &= l->durable_pos[i] == (uint64_t)i + 1;
    }
    uint64_t idle = l->n_durable >= 7 ? l->durable_pos[6] : 0;
    uint64_t idle_count = l->n_durable >= 7 ? l->count_at[6] : 0;
    pthread_mutex_unlock(&g.mu);
    T_CHECK(after, "1. durable: called only once the group's records are published (after fsync)");
    T_CHECK(ordered, "1. durable: in emission order, with the positions given");
    T_CHECK(idle == 1005 && idle_count == 18,
            "1. durable: a position with no records comes after every group before it (%llu at "
            "count %llu)",
            (unsigned long long)idle, (unsigned long long)idle_count);
    struct sl_strand *st;
    sl_store_strand(e->store, "s1-durable", 10, 0, &st, NULL);
    struct sl_record r;
    T_CHECK(sl_strand_count(st) == 18 && sl_strand_read(st, 17, &r) == 0 &&
                r.source_len == strlen(id) && memcmp(r.source, id, r.source_len) == 0,
            "1. durable: 18 records in the strand, source = the connector id");
    free(id);
}

static void check_resume(struct env *e)
{
    struct lane *l = &g.lanes[2];
    l->groups = 4, l->per = 2;
    char *id = create(e, 2, "s2-resume");
    T_CHECK(wait_until(2, durable_at_least, 4), "2. resume: 4 groups durable");
    /* a stop persists the position; a new worker gets it back */
    json_t *b = json_loads("{\"enabled\":false}", 0, NULL);
    json_decref(sl_registry_patch(e->reg, id, b, NULL));
    json_decref(b);
    sl_registry_changed(e->reg);
    uint64_t stored = 0, next = 0;
    size_t len = 0;
    for (int i = 0; i < 1000 && !(len == 8 && stored == 4); i++) {
        sl_meta_get_source_position(sl_registry_meta(e->reg), id, &stored, 8, &len, &next);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    T_CHECK(len == 8 && stored == 4 && next == 8,
            "2. resume: the position (4) and the seq after it (8) are stored (%llu, %llu)",
            (unsigned long long)stored, (unsigned long long)next);
    pthread_mutex_lock(&g.mu);
    l->groups = 6;
    pthread_mutex_unlock(&g.mu);
    b = json_loads("{\"enabled\":true}", 0, NULL);
    json_decref(sl_registry_patch(e->reg, id, b, NULL));
    json_decref(b);
    sl_registry_changed(e->reg);
    T_CHECK(wait_until(2, started_at_least, 2) && wait_until(2, durable_at_least, 6),
            "2. resume: restarted, it goes on");
    pthread_mutex_lock(&g.mu);
    uint64_t resumed = l->resume;
    pthread_mutex_unlock(&g.mu);
    T_EQ_INT(resumed, 4, "2. resume: start() gets the stored position");
    struct sl_strand *st;
    sl_store_strand(e->store, "s2-resume", 9, 0, &st, NULL);
    T_EQ_INT(sl_strand_count(st), 12, "2. resume: 6 groups of 2 in the strand, none twice");
    free(id);
}

static void check_position_of(struct env *e)
{
    struct lane *l = &g.lanes[3];
    l->groups = 5, l->per = 1;
    char *id = create(e, 3, "s3-crash");
    T_CHECK(wait_until(3, durable_at_least, 5), "3. crash: 5 groups durable");
    json_t *b = json_loads("{\"enabled\":false}", 0, NULL);
    json_decref(sl_registry_patch(e->reg, id, b, NULL));
    json_decref(b);
    sl_registry_changed(e->reg);
    T_CHECK(wait_state(e, id, "disabled"), "3. crash: stopped");
    /* the stopped worker's last write of the position (5) is there; then, as if a crash had come
     * between the fsync and that write, the stored position is made to lag */
    uint64_t stored = 0, next = 0, old = 2;
    size_t len = 0;
    for (int i = 0; i < 1000 && !(len == 8 && stored == 5); i++) {
        sl_meta_get_source_position(sl_registry_meta(e->reg), id, &stored, 8, &len, &next);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    T_CHECK(stored == 5, "3. crash: the stopped worker stored position 5");
    sl_meta_set_source_position(sl_registry_meta(e->reg), id, &old, 8, 2, NULL);
    pthread_mutex_lock(&g.mu);
    l->groups = 7;
    pthread_mutex_unlock(&g.mu);
    b = json_loads("{\"enabled\":true}", 0, NULL);
    json_decref(sl_registry_patch(e->reg, id, b, NULL));
    json_decref(b);
    sl_registry_changed(e->reg);
    T_CHECK(wait_until(3, durable_at_least, 7), "3. crash: restarted and goes on");
    pthread_mutex_lock(&g.mu);
    uint64_t resumed = l->resume;
    pthread_mutex_unlock(&g.mu);
    T_EQ_INT(resumed, 5, "3. crash: the position is read back from the last record (not 2)");
    struct sl_strand *st;
    sl_store_strand(e->store, "s3-crash", 8, 0, &st, NULL);
    T_EQ_INT(sl_strand_count(st), 7, "3. crash: 7 records, none written twice");
    free(id);
}

static void set_enabled(struct env *e, const char *id, int on)
{
    json_t *b = json_pack("{s:b}", "enabled", on);
    json_decref(sl_registry_patch(e->reg, id, b, NULL));
    json_decref(b);
    sl_registry_changed(e->reg);
}

/* Stops the connector and waits until the stopped worker stored position `want`. */
static int disable_and_wait(struct env *e, const char *id, uint64_t want)
{
    set_enabled(e, id, 0);
    if (!wait_state(e, id, "disabled"))
        return 0;
    uint64_t stored = 0, next = 0;
    size_t len = 0;
    for (int i = 0; i < 1000 && !(len == 8 && stored == want); i++) {
        sl_meta_get_source_position(sl_registry_meta(e->reg), id, &stored, 8, &len, &next);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return len == 8 && stored == want;
}

static void append_raw(struct sl_strand *st, const char *source, uint32_t v)
{
    uint8_t pay[5];
    encode(pay, v);
    struct sl_append_rec ar = {
        .payload = pay, .payload_len = 5, .source = source, .source_len = (uint16_t)strlen(source)};
    uint8_t hash[1][SL_HASH_LEN];
    struct sl_append a = {.recs = &ar, .n = 1, .hashes = hash};
    sl_strand_append_wait(st, &a, NULL);
}

/* A crash inside a group's write: its first records are in the strand, its last (the one with
 * the position) is not. The framework folds them into the last whole position (position_fold),
 * so the source does not read them again. */
static void check_position_fold(struct env *e)
{
    struct lane *l = &g.lanes[7];
    l->groups = 3, l->per = 2;
    char *id = create(e, 7, "s7-fold");
    T_CHECK(wait_until(7, durable_at_least, 3), "7. fold: 3 groups durable");
    T_CHECK(disable_and_wait(e, id, 3), "7. fold: stopped with position 3 stored");
    struct sl_strand *st;
    sl_store_strand(e->store, "s7-fold", 7, 0, &st, NULL);
    append_raw(st, id, 3u << 16 | NOPOS | 0); /* group 3's first two records ... */
    append_raw(st, "someone-else", 9u << 16); /* ... (another writer between them) ... */
    append_raw(st, id, 3u << 16 | NOPOS | 1); /* ... and not its last */
    uint64_t old = 1; /* the stored position lags, as after a crash before it was written */
    sl_meta_set_source_position(sl_registry_meta(e->reg), id, &old, 8, 2, NULL);
    set_enabled(e, id, 1);
    T_CHECK(wait_until(7, started_at_least, 2), "7. fold: restarted");
    pthread_mutex_lock(&g.mu);
    uint64_t resumed = l->resume;
    pthread_mutex_unlock(&g.mu);
    T_EQ_INT(resumed, 30102,
             "7. fold: the last whole position (3), then its two cut records in order (3 -> 301 -> "
             "30102), the other writer's skipped");
    set_enabled(e, id, 0);
    T_CHECK(wait_state(e, id, "disabled"), "7. fold: stopped again");
    old = 3; /* now the stored position is the last whole one: the scan finds no whole after it */
    sl_meta_set_source_position(sl_registry_meta(e->reg), id, &old, 8, 6, NULL);
    set_enabled(e, id, 1);
    T_CHECK(wait_until(7, started_at_least, 3), "7. fold: restarted again");
    pthread_mutex_lock(&g.mu);
    resumed = l->resume;
    pthread_mutex_unlock(&g.mu);
    T_EQ_INT(resumed, 30102, "7. fold: no whole position after the stored one: folded into it");
    set_enabled(e, id, 0);
    free(id);
}

static void check_finish_and_fatal(struct env *e)
{
    struct lane *l = &g.lanes[4];
    l->groups = 2, l->per = 1, l->finish = 1;
    char *id = create(e, 4, "s4-finish");
    T_CHECK(wait_state(e, id, "completed"), "4. a source that is finished (REJECT) is completed");
    free(id);
    l = &g.lanes[5];
    l->groups = 1, l->per = 1, l->fatal = 1;
    id = create(e, 5, "s5-fatal");
    T_CHECK(wait_state(e, id, "restarting"), "4. a fatal poll: restarting");
    json_t *c = sl_registry_get(e->reg, id, NULL);
    const char *err = json_string_value(json_object_get(c, "last_error"));
    T_CHECK(err && strstr(err, "fake source: fatal") && strstr(err, "restart 1 in 1 s"),
            "4. last_error says why and when (%s)", err ? err : "(null)");
    json_decref(c);
    T_CHECK(wait_until(5, started_at_least, 2), "4. the engine starts it again by itself");
    /* the new worker fails again: the backoff doubles */
    int doubled = 0;
    for (int i = 0; i < 1000 && !doubled; i++) {
        c = sl_registry_get(e->reg, id, NULL);
        err = json_string_value(json_object_get(c, "last_error"));
        doubled = err && strstr(err, "restart 2 in 2 s");
        json_decref(c);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    T_CHECK(doubled, "4. failing again: restarting, the backoff doubled (restart 2 in 2 s)");
    c = NULL;
    json_decref(c);
    free(id);
}

static int emitter_blocked(const struct lane *l, long min_bytes)
{
    return g.in_emit && g.emitted_bytes >= (uint64_t)min_bytes;
}

static int emitted_at_least(const struct lane *l, long groups)
{
    return l->next >= groups;
}

static void check_back_pressure(struct env *e)
{
    struct lane *l = &g.lanes[6];
    struct sl_strand *st; /* created first: creating it syncs too */
    sl_store_strand(e->store, "s6-pressure", 11, 1, &st, NULL);
    pthread_mutex_lock(&g.mu);
    g.gate_closed = 1;                   /* the disk stalls: nothing becomes durable */
    l->groups = 100, l->per = BIG_GROUP; /* 100 MiB in all */
    pthread_mutex_unlock(&g.mu);
    char *id = create(e, 6, "s6-pressure");
    /* the source emits until 64 MiB wait for their fsync, then emit() blocks */
    T_CHECK(wait_until(6, emitter_blocked, 64l << 20),
            "5. back-pressure: with the disk stalled, emit() blocks once 64 MiB wait");
    pthread_mutex_lock(&g.mu);
    uint64_t at_block = g.emitted_bytes;
    pthread_mutex_unlock(&g.mu);
    T_CHECK(at_block <= (64u << 20) + (uint64_t)BIG * BIG_GROUP,
            "5. back-pressure: at most 64 MiB + one group in flight (%llu MiB)",
            (unsigned long long)(at_block >> 20));
    pthread_mutex_lock(&g.mu);
    g.gate_closed = 0; /* the disk recovers */
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    T_CHECK(wait_until(6, emitted_at_least, 100) && wait_until(6, durable_at_least, 1),
            "5. back-pressure: once syncs go on, the rest is emitted");
    pthread_mutex_lock(&g.mu);
    uint64_t worst = g.max_unsynced;
    pthread_mutex_unlock(&g.mu);
    T_CHECK(worst <= (64u << 20) + 2ull * BIG * BIG_GROUP,
            "5. back-pressure: never more than 64 MiB (+ a group) unsynced (%llu MiB)",
            (unsigned long long)(worst >> 20));
    json_t *b = json_loads("{\"enabled\":false}", 0, NULL); /* stop it: 100 MiB is enough */
    json_decref(sl_registry_patch(e->reg, id, b, NULL));
    json_decref(b);
    sl_registry_changed(e->reg);
    free(id);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

int main(void)
{
    sl_log_set_level(SL_LOG_ERROR);
    struct sl_err err = {0};
    T_CHECK(sl_kinds_add(&fs_kind, &err) == 0, "the fake source kind is registered (%s)", err.msg);
    struct env e = {0};
    snprintf(e.dir, sizeof(e.dir), "/tmp/sluice-srccomp-XXXXXX");
    if (!mkdtemp(e.dir))
        return 1;
    struct sl_store_opts so = {.dir = e.dir, .segment_bytes = 16 << 20, .durable = 1};
    real_fdatasync = sl_io.fdatasync;
    sl_io.fdatasync = gated_fdatasync;
    if (sl_store_open(&e.store, &so, NULL, &err) != 0 ||
        sl_registry_open(&e.reg, e.dir, &err) != 0 ||
        sl_engine_start(&e.eng, e.store, e.reg, NULL, &err) != 0) {
        fprintf(stderr, "setup: %s\n", err.msg);
        return 1;
    }
    g.store = e.store;
    check_durable_after_fsync(&e);
    check_resume(&e);
    check_position_of(&e);
    check_position_fold(&e);
    check_finish_and_fatal(&e);
    check_back_pressure(&e);
    sl_engine_stop(e.eng);
    sl_registry_close(e.reg);
    sl_store_close(e.store);
    nftw(e.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return T_DONE();
}
