/* The connector engine: one thread reconciles the connectors' worker threads with the registry
 * (poked after every change, and once a second): it starts a worker for every enabled connector
 * that runs (a sink: sink_worker.c; a source), tells the worker of a disabled, deleted or
 * reconfigured connector to stop (a request in flight is aborted), and joins it. It names no
 * connector kind: what a worker runs comes from the catalog (kinds.h). */
#include "engine/engine.h"

#include "core/log.h"
#include "core/util.h"
#include "engine/worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sl_engine {
    struct sl_store *store;
    struct sl_registry *reg;
    struct sl_meta *meta;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int poked, stopping;
    pthread_t th;
    struct worker *live, *retired; /* engine thread only */
    const struct sl_clock *clock;
};

int sl_worker_stopped(struct worker *w)
{
    return __atomic_load_n(&w->stop, __ATOMIC_ACQUIRE);
}

/* Sleeps ms milliseconds unless told to stop; returns 1 if stopped. */
int sl_worker_nap(struct worker *w, uint64_t ms)
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

uint64_t sl_worker_mono_ns(struct worker *w)
{
    return w->clock ? w->clock->mono_ns(w->clock->arg) : sl_mono_ns();
}

int sl_worker_clock_nap(struct worker *w, uint64_t ms)
{
    return w->clock ? w->clock->nap(w->clock->arg, w, ms) : sl_worker_nap(w, ms);
}

void sl_worker_restart_later(struct worker *w, const char *why)
{
    uint64_t delay = sl_registry_set_restarting(w->reg, w->def.id, why);
    sl_error("connector %s: %s; restarting in %llu ms", w->def.id, why, (unsigned long long)delay);
    w->restart_at_ns = sl_mono_ns() + delay * 1000000u;
    __atomic_store_n(&w->stop, 1, __ATOMIC_RELEASE);
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

/* Returns 1 if a worker waits for its predecessor to finish (look again soon). */
static int reconcile(struct sl_engine *e)
{
    int waiting = 0;
    struct sl_outbound_def *defs;
    size_t n = sl_registry_outbound(e->reg, &defs);
    for (struct worker **p = &e->live; *p;) {
        struct worker *w = *p;
        size_t i = 0;
        while (i < n && strcmp(defs[i].id, w->def.id) != 0)
            i++;
        if (i < n && defs[i].gen == w->def.gen &&
            !(__atomic_load_n(&w->finished, __ATOMIC_ACQUIRE) && w->restart_at_ns &&
              sl_mono_ns() >= w->restart_at_ns)) {
            p = &w->next; /* unchanged (a failed one waits here for its restart time) */
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
        /* one worker per connector at a time: a reconfigured one starts once the one it
         * replaces has returned (a source drains its appends, a sink persists its cursor) */
        for (w = e->retired; w && !(strcmp(w->def.id, defs[i].id) == 0 &&
                                    !__atomic_load_n(&w->finished, __ATOMIC_ACQUIRE));)
            w = w->next;
        if (w) {
            waiting = 1;
            continue;
        }
        w = calloc(1, sizeof(*w));
        if (!w)
            break;
        w->store = e->store;
        w->reg = e->reg;
        w->meta = e->meta;
        w->conn = sl_kind_find(defs[i].kind);
        w->clock = e->clock;
        w->def = defs[i];
        defs[i].config = defs[i].strands = NULL; /* owned by the worker now */
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        void *(*run)(void *) = !w->conn          ? NULL
                               : w->conn->sink   ? sl_sink_worker_main
                               : w->conn->source ? sl_source_worker_main
                                                 : NULL;
        if (!run || pthread_create(&w->th, NULL, run, w) != 0) {
            sl_error("connector %s: cannot start its worker", w->def.id);
            worker_free(w);
            continue;
        }
        sl_thread_name(w->th, "c:%s", w->def.id); /* the connector's id */
        w->next = e->live;
        e->live = w;
    }
    sl_registry_outbound_free(defs, n);
    reap(e, 0);
    return waiting;
}

static void *engine_main(void *arg)
{
    struct sl_engine *e = arg;
    int again = 0;
    pthread_mutex_lock(&e->mu);
    while (!e->stopping) {
        if (!e->poked) {
            struct timespec dl;
            clock_gettime(CLOCK_REALTIME, &dl);
            uint64_t ns = (uint64_t)dl.tv_nsec + (again ? 10000000u : 1000000000u);
            dl.tv_sec += (time_t)(ns / 1000000000u);
            dl.tv_nsec = (long)(ns % 1000000000u);
            pthread_cond_timedwait(&e->cv, &e->mu, &dl);
        }
        e->poked = 0;
        if (e->stopping)
            break;
        pthread_mutex_unlock(&e->mu);
        again = reconcile(e);
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
                    const struct sl_clock *clock, struct sl_err *err)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct sl_engine *e = calloc(1, sizeof(*e));
    if (!e)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    e->store = store;
    e->reg = reg;
    e->clock = clock;
    e->meta = sl_registry_meta(reg);
    e->poked = 1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    if (pthread_create(&e->th, NULL, engine_main, e) != 0) {
        free(e);
        return sl_err_sys(err, SL_E_IO, "start the delivery engine");
    }
    sl_thread_name(e->th, "sl-engine");
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
