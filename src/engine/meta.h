/* Metadata store: connectors (and, later, cursors and dead letters) in DATA/meta.db, SQLite in
 * WAL mode. Connector configs exist nowhere else, so commits are synchronous=FULL.
 * Threads: one connection guarded by a mutex; callers from any thread. */
#ifndef SL_ENGINE_META_H
#define SL_ENGINE_META_H

#include "core/err.h"

#include <stdint.h>

struct sl_meta;

struct sl_meta_connector {
    const char *id, *name, *kind, *config_json, *strands_json, *state, *last_error;
    int enabled;
    uint64_t created_at_ms, event_count, last_event_ms;
};

int sl_meta_open(struct sl_meta **out, const char *dir, struct sl_err *err);
void sl_meta_close(struct sl_meta *m);
/* Insert or replace. */
int sl_meta_put_connector(struct sl_meta *m, const struct sl_meta_connector *c, struct sl_err *err);
int sl_meta_delete_connector(struct sl_meta *m, const char *id, struct sl_err *err);
int sl_meta_update_counters(struct sl_meta *m, const char *id, uint64_t event_count,
                            uint64_t last_event_ms, struct sl_err *err);
/* Calls fn for every stored connector, oldest first. */
int sl_meta_load_connectors(struct sl_meta *m,
                            int (*fn)(const struct sl_meta_connector *c, void *arg), void *arg,
                            struct sl_err *err);

#endif
