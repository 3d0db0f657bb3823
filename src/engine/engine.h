/* The connector engine: one worker thread per enabled connector that runs (so a slow or dead
 * target never slows another). A sink's worker is the sink framework (sink_worker.c): durable
 * cursors, batches, retries with backoff and jitter (honouring Retry-After), the circuit
 * breaker, dead letters; at-least-once. docs/connectors.md is the user's contract.
 *
 * Threads: the engine thread reconciles workers with the registry when poked (after every
 * change) and once a second; a disabled or deleted connector's worker is told to stop at once
 * (a request in flight is aborted) and joined by the engine thread. */
#ifndef SL_ENGINE_ENGINE_H
#define SL_ENGINE_ENGINE_H

#include "core/err.h"
#include "engine/registry.h"
#include "strand/store.h"

struct sl_engine;
struct sl_clock; /* worker.h: NULL = the real clock (component tests give a fake one) */

int sl_engine_start(struct sl_engine **out, struct sl_store *store, struct sl_registry *reg,
                    const struct sl_clock *clock, struct sl_err *err);
/* Wakes the engine to reconcile its workers now. Any thread. */
void sl_engine_poke(void *engine);
/* Stops every worker (aborting requests in flight) and the engine. */
void sl_engine_stop(struct sl_engine *e);

#endif
