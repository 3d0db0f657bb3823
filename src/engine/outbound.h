/* The outbound delivery engine: one worker thread per enabled outbound connector (so a slow or
 * dead target never slows another). A worker follows its strands through durable cursors: it is
 * woken by every commit, sends a batch, and advances and persists its cursor only after the
 * target accepted the batch (or the batch went to the dead-letter list). Transient failures
 * (network errors, timeouts, 408, 429, 5xx) are retried with exponential backoff and full
 * jitter, honouring Retry-After; other 4xx are permanent and dead-lettered. At-least-once.
 *
 * Threads: the engine thread reconciles workers with the registry when poked (after every
 * change) and once a second; a disabled or deleted connector's worker is told to stop at once
 * (an HTTP request in flight is aborted) and joined by the engine thread. */
#ifndef SL_ENGINE_OUTBOUND_H
#define SL_ENGINE_OUTBOUND_H

#include "core/err.h"
#include "engine/registry.h"
#include "strand/store.h"

struct sl_engine;

int sl_engine_start(struct sl_engine **out, struct sl_store *store, struct sl_registry *reg,
                    struct sl_err *err);
/* Wakes the engine to reconcile its workers now. Any thread. */
void sl_engine_poke(void *engine);
/* Stops every worker (aborting requests in flight) and the engine. */
void sl_engine_stop(struct sl_engine *e);

#endif
