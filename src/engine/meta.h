/* Metadata store: connectors (and, later, cursors and dead letters) in DATA/meta.db, SQLite in
 * WAL mode. Connector configs exist nowhere else, so commits are synchronous=FULL.
 * Threads: one connection guarded by a mutex; callers from any thread. */
#ifndef SL_ENGINE_META_H
#define SL_ENGINE_META_H

#include "core/err.h"

#include <stddef.h>
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

/* Delivery cursors: the next seq an outbound connector sends from a strand. SL_E_NOTFOUND if
 * none is stored yet. Cursor writes use synchronous=NORMAL: they survive a process crash; after
 * a power loss a cursor can be a few batches behind (re-delivery, never loss). */
int sl_meta_get_cursor(struct sl_meta *m, const char *id, const char *strand, uint64_t *seq);
int sl_meta_set_cursor(struct sl_meta *m, const char *id, const char *strand, uint64_t seq,
                       struct sl_err *err);
/* Stores seq only if no cursor exists yet. */
int sl_meta_init_cursor(struct sl_meta *m, const char *id, const char *strand, uint64_t seq,
                        struct sl_err *err);
/* A connector's own small state (postgres_cdc: "pg.snapshot", "pg.created_slot:<name>"), by key.
 * SL_E_NOTFOUND if the key was never set. Dropped with the connector. */
int sl_meta_get_state(struct sl_meta *m, const char *id, const char *key, uint64_t *value);
int sl_meta_set_state(struct sl_meta *m, const char *id, const char *key, uint64_t value,
                      struct sl_err *err);

/* A sink's planned batch (SL_SINK_STABLE_BATCHES): the end of the batch being sent from strand,
 * stored before its first attempt, so that after a crash the same records are sent together. */
int sl_meta_get_plan(struct sl_meta *m, const char *id, const char *strand, uint64_t *end);
int sl_meta_set_plan(struct sl_meta *m, const char *id, const char *strand, uint64_t end,
                     struct sl_err *err);
/* A source's position (opaque bytes, at most cap) as of its last durable group, and the seq after
 * that group's last record. Written after the group is fsynced, so it never runs ahead of the
 * strand; after a crash it may lag it (the source's records after next_seq tell how far). */
int sl_meta_get_source_position(struct sl_meta *m, const char *id, void *pos, size_t cap,
                                size_t *len, uint64_t *next_seq);
int sl_meta_set_source_position(struct sl_meta *m, const char *id, const void *pos, size_t len,
                                uint64_t next_seq, struct sl_err *err);
/* A connector's small text by key (the API keeps how a StreamHouse client spelled it: class
 * and config). sl_meta_get_text returns a malloc'ed string or NULL; value NULL deletes. Dropped
 * with the connector. */
char *sl_meta_get_text(struct sl_meta *m, const char *id, const char *key);
int sl_meta_set_text(struct sl_meta *m, const char *id, const char *key, const char *value,
                     struct sl_err *err);
int sl_meta_drop_connector_state(struct sl_meta *m, const char *id, struct sl_err *err);

struct sl_meta_dead_letter {
    const char *connector_id, *strand, *record_hash, *last_error, *response_excerpt;
    uint64_t seq, at_ms;
    int attempts, last_status;
};
int sl_meta_add_dead_letter(struct sl_meta *m, const struct sl_meta_dead_letter *d,
                            struct sl_err *err);
/* The connector's dead letters as a JSON array (oldest first, at most limit). */
struct json_t;
struct json_t *sl_meta_dead_letters(struct sl_meta *m, const char *id, int limit);
/* Deletes them all; returns how many, or a negative code. */
long sl_meta_delete_dead_letters(struct sl_meta *m, const char *id);
/* Removes up to max dead letters (oldest first) and returns their strand/seq pairs. */
struct sl_dl_ref {
    char strand[65];
    uint64_t seq;
};
long sl_meta_take_dead_letters(struct sl_meta *m, const char *id, struct sl_dl_ref *out, long max);

#endif
