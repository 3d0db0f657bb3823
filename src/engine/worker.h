/* A connector's worker thread as the engine (engine.c) starts, stops and joins it; the sink
 * framework (sink_worker.c) and the source runners run on it. Internal to src/engine. */
#ifndef SL_ENGINE_WORKER_H
#define SL_ENGINE_WORKER_H

#include "engine/kinds.h"
#include "engine/registry.h"

#include <pthread.h>
#include <stdint.h>

struct sl_store;
struct sl_meta;
struct worker;

/* The delivery policy's clock (backoff, breaker timeouts): real unless a component test gives a
 * fake one whose nap advances fake time at once, so that retry schedules are tested without
 * sleeping. Record timestamps and the shutdown flush deadline stay on the wall clock. */
struct sl_clock {
    uint64_t (*mono_ns)(void *arg);
    int (*nap)(void *arg, struct worker *w, uint64_t ms); /* 1 if the worker was stopped */
    void *arg;
};

struct worker {
    struct worker *next;
    struct sl_store *store;
    struct sl_registry *reg;
    struct sl_meta *meta;
    const struct sl_connector *conn;
    const struct sl_clock *clock; /* NULL: the real one */
    struct sl_outbound_def def;   /* owns config and strands */
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;     /* under mu; read atomically by cancel callbacks */
    int finished; /* atomic: the thread has returned */
    int drain;    /* atomic: the server is stopping (not a disable): flush what is pending */
    uint64_t restart_at_ns; /* set before the thread returns: start it again then (monotonic) */
};

/* 1 once the worker must return. Any thread. */
int sl_worker_stopped(struct worker *w);
/* Sleeps ms milliseconds unless told to stop; returns 1 if stopped. Worker thread. */
int sl_worker_nap(struct worker *w, uint64_t ms);

/* The connector failed (a fatal result, a sink that cannot open, a source that cannot start):
 * state "restarting" with last_error, and the engine starts a new worker after a backoff of 1 s
 * doubling to 60 s (the Rivven seed's runner restart; not during shutdown). The caller then
 * makes the thread return. Worker thread. */
void sl_worker_restart_later(struct worker *w, const char *why);

/* The worker's clock (w->clock or the real one). */
uint64_t sl_worker_mono_ns(struct worker *w);
int sl_worker_clock_nap(struct worker *w, uint64_t ms);

/* The thread body of a sink (w->conn->sink). */
void *sl_sink_worker_main(void *worker);

/* The thread body of a source (w->conn->source). */
void *sl_source_worker_main(void *worker);

/* The flush rule of a batching sink: records are due when `pending` reaches batch_max, or when
 * linger_ms has passed since the first pending record was written (first_ts_ms, its
 * timestamp) or since the worker first saw it pending (waited_ms, monotonic: guards against a
 * wall clock that went back). If not due, *wait_ms says how long until it is. Pure. */
int sl_sink_batch_due(uint64_t pending, uint64_t batch_max, uint64_t linger_ms,
                      uint64_t first_ts_ms, uint64_t now_ms, uint64_t waited_ms, uint64_t *wait_ms);

#endif
