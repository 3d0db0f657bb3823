/* The connector registry: every connector's definition and counters, in memory, persisted in the
 * metadata store. The management API and the REST bridge call it; later the outbound engine
 * will read it. Threads: any; one mutex. Answers are new jansson objects (caller decrefs). */
#ifndef SL_ENGINE_REGISTRY_H
#define SL_ENGINE_REGISTRY_H

#include "core/err.h"
#include "strand/record.h"

#include <jansson.h>
#include <stdint.h>

struct sl_registry;

int sl_registry_open(struct sl_registry **out, const char *dir, struct sl_err *err);
void sl_registry_close(struct sl_registry *r); /* flushes counters */

json_t *sl_registry_create(struct sl_registry *r, const json_t *body, struct sl_err *err);

/* Audit capture: between begin and end, every connector this thread creates, changes, pauses,
 * resumes, restarts or deletes is noted; end returns them as [{"id", "before", "after"}] (name,
 * kind, enabled, paused, config with secrets redacted, strands; null before a create and after
 * a delete), or NULL if nothing changed. The API wraps each request in them for the audit
 * strand. */
void sl_registry_audit_begin(void);
json_t *sl_registry_audit_end(void);
json_t *sl_registry_get(struct sl_registry *r, const char *id, struct sl_err *err);
json_t *sl_registry_list(struct sl_registry *r);
json_t *sl_registry_patch(struct sl_registry *r, const char *id, const json_t *body,
                          struct sl_err *err);
int sl_registry_delete(struct sl_registry *r, const char *id, struct sl_err *err);
json_t *sl_registry_kinds(void);

/* What a sink worker reports after each attempt to deliver records of a connector that another
 * part of the server watches (the Boboyka mirror answers its ingests from these). In the order
 * they happen, on the worker's thread: keep the callback short. */
enum sl_delivery {
    SL_DELIVERED,      /* the target accepted [seq, seq + n) */
    SL_DEAD_LETTERED,  /* [seq, seq + n) went to the dead letters (error says why) */
    SL_ATTEMPT_FAILED, /* a transient failure: [seq, seq + n) is retried after a backoff, and
                        * nothing after it is sent before; n == 0: nothing could be sent (the
                        * health check failed) */
};
struct sl_delivery_note {
    enum sl_delivery what;
    const char *strand; /* NULL with n == 0 */
    uint64_t seq, n;
    int attempts;      /* attempts at this batch so far */
    const char *error; /* "" when delivered */
};
typedef void (*sl_delivery_fn)(void *arg, const struct sl_delivery_note *note);

/* Marks connector id as owned by another part of the server: `by` (static) is shown as
 * managed_by, a PATCH of anything but `enabled` and a DELETE are refused (409
 * connector_managed), and its sink worker reports every delivery outcome to fn(arg). 0, or
 * SL_E_NOTFOUND. */
int sl_registry_manage(struct sl_registry *r, const char *id, const char *by, sl_delivery_fn fn,
                       void *arg, struct sl_err *err);

/* An enabled outbound connector with a worker, as the delivery engine sees it. */
struct sl_outbound_def {
    char id[16];
    const char *kind;     /* static string */
    json_t *config;       /* a copy: json_decref */
    json_t *strands;      /* a copy: json_decref */
    uint64_t gen;         /* changes whenever the connector is patched */
    int inbound;          /* an inbound source with its own thread (postgres_cdc) */
    sl_delivery_fn watch; /* sl_registry_manage's, or NULL */
    void *watch_arg;
};
/* Fills *out (malloc'ed) with every enabled connector that has a worker thread (outbound ones,
 * and inbound sources such as postgres_cdc); returns n. */
size_t sl_registry_outbound(struct sl_registry *r, struct sl_outbound_def **out);
void sl_registry_outbound_free(struct sl_outbound_def *defs, size_t n);
struct sl_meta *sl_registry_meta(struct sl_registry *r);
/* "start": "head" is the head when the connector c (its JSON, as create answers it) is created:
 * its cursors are stored before its worker starts, so a record written right after is
 * delivered; "earliest" stores 0. Call before sl_registry_changed. */
struct sl_store;
void sl_registry_pin_start(struct sl_registry *r, struct sl_store *store, const json_t *c);
/* Called after any change, so the delivery engine reconciles its workers at once (delete calls
 * it itself; after a create or a patch the caller pins start cursors, then calls
 * sl_registry_changed). */
void sl_registry_on_change(struct sl_registry *r, void (*fn)(void *arg), void *arg);
void sl_registry_changed(struct sl_registry *r);

/* What a REST-bridge push needs. */
struct sl_push_target {
    char id[32];
    char strand[SL_STRAND_NAME_MAX + 1];
    uint32_t flags;     /* config.flags */
    double retry_after; /* seconds, when rate limited */
};
/* The push token of rest_bridge id (config.push_token) copied into tok (cap bytes): 1 if it has
 * one, 0 if not, SL_E_NOTFOUND if id is no rest_bridge. */
int sl_registry_push_token(struct sl_registry *r, const char *id, char *tok, size_t cap);
/* Checks that id is an enabled rest_bridge within its rate limit (taking a token).
 * SL_E_NOTFOUND (unknown or not a rest_bridge), SL_E_CONFLICT (disabled), SL_E_RATE. */
int sl_registry_push_target(struct sl_registry *r, const char *id, struct sl_push_target *t,
                            struct sl_err *err);
/* Delivery counters reported by the outbound engine. */
void sl_registry_note_delivery(struct sl_registry *r, const char *id, uint64_t delivered,
                               uint64_t failed, uint64_t retried, uint64_t dead_lettered);
void sl_registry_set_lag(struct sl_registry *r, const char *id, uint64_t lag);
/* A source's gauge (sl_source_ops.gauges): stats.<name> and sluice_connector_<name>. A name its
 * kind does not declare is ignored. */
void sl_registry_set_gauge(struct sl_registry *r, const char *id, const char *name, uint64_t v);
/* Files an object_storage connector stored (stats.files_written, stats.bytes_written). */
void sl_registry_note_files(struct sl_registry *r, const char *id, uint64_t files, uint64_t bytes);
/* Appends the sluice_connector_* metric families (Prometheus text) to b. */
struct sl_buf;
void sl_registry_metrics(struct sl_registry *r, struct sl_buf *b);

/* The worker gave up (max_consecutive_failures): state "failed" with msg, persisted; its
 * worker is not restarted until sl_registry_restart. */
void sl_registry_set_failed(struct sl_registry *r, const char *id, const char *msg);
void sl_registry_set_breaker(struct sl_registry *r, const char *id, const char *state);
/* Clears a failed state and restarts the connector's worker; returns the connector. */
json_t *sl_registry_restart(struct sl_registry *r, const char *id, struct sl_err *err);

/* Dead-letter replay: the route asks, the connector's worker takes the request. */
int sl_registry_request_replay(struct sl_registry *r, const char *id, struct sl_err *err);
int sl_registry_take_replay(struct sl_registry *r, const char *id);
/* SL_E_NOTFOUND unless id is a connector (any kind). */
int sl_registry_exists(struct sl_registry *r, const char *id, int *outbound);

/* An inbound worker's state: state NULL = running (or a static string such as "completed"),
 * error = a transient problem shown as last_error while it retries (NULL clears). Not persisted:
 * a worker sets it again when it starts. */
void sl_registry_set_source_status(struct sl_registry *r, const char *id, const char *state,
                                   const char *error);

/* The connector's worker failed and is restarted automatically: state "restarting" with
 * last_error why; returns the backoff before the restart (1 s doubling to 60 s per restart in a
 * row, reset once records flow again). */
uint64_t sl_registry_set_restarting(struct sl_registry *r, const char *id, const char *why);

/* Counts a record a connector handled (event_count, last_event_ms). */
void sl_registry_note_event(struct sl_registry *r, const char *id, uint64_t ts_ms);
void sl_registry_note_events(struct sl_registry *r, const char *id, uint64_t n, uint64_t ts_ms);

/* POST .../pause and .../resume: a paused connector has no worker and keeps its cursors (as a
 * disabled one does), shows state "paused", and stays paused across restarts until resumed.
 * Returns the connector. */
json_t *sl_registry_set_paused(struct sl_registry *r, const char *id, int paused,
                               struct sl_err *err);
/* The id of the connector whose id, or else whose name, is key (StreamHouse addresses
 * connectors by name). SL_E_NOTFOUND if none. */
int sl_registry_lookup(struct sl_registry *r, const char *key, char id[16]);

#endif
