/* The HTTP API: routes, the error table, metrics. Route files are v1_*.c. */
#ifndef SL_API_API_H
#define SL_API_API_H

#include "api/http.h"
#include "boboyka/service.h"
#include "core/config.h"
#include "engine/registry.h"
#include "strand/note.h"
#include "strand/store.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>

enum sl_route {
    SL_R_HEALTH,
    SL_R_METRICS,
    SL_R_RECORDS_POST,
    SL_R_BATCH_POST,
    SL_R_RECORD_GET,
    SL_R_STRANDS_GET,
    SL_R_STRAND_RECORDS_GET,
    SL_R_CONNECTORS,
    SL_R_CONNECTOR,
    SL_R_CONNECTOR_KINDS,
    SL_R_REST_PUSH,
    SL_R_DEAD_LETTERS,
    SL_R_BOBOYKA_INGEST,
    SL_R_BOBOYKA_STATUS,
    SL_R_BOBOYKA_EVENTS,
    SL_R_API_CONNECTORS,
    SL_R_API_CONNECTOR,
    SL_R_API_METRICS,
    SL_R_PIPELINES_RELOAD,
    SL_R_PROOFS,
    SL_R_OPENAPI,
    SL_R_UI,
    SL_R_UNMATCHED,
    SL_R_COUNT
};

#define SL_HIST_BUCKETS 14
#define SL_STATUS_SLOTS 13

struct sl_route_metrics {
    uint64_t status[SL_STATUS_SLOTS];
    uint64_t bucket[SL_HIST_BUCKETS]; /* cumulative at scrape time, stored per bucket */
    uint64_t count;
    uint64_t sum_ns;
};

struct sl_api {
    pthread_rwlock_t gate; /* handlers hold it for reading; shutdown takes it for writing */
    int stopping;          /* set under the write lock: later requests get 503 */
    struct sl_store *store;
    struct sl_registry *registry;
    struct sl_bbk *boboyka;
    const struct sl_config *cfg;
    struct sl_auth *auth; /* API tokens (auth_tokens), or NULL: no token needed */
    struct sl_store_recovery recovery;
    struct sl_route_metrics routes[SL_R_COUNT];
    struct sl_note_key ckpt_key; /* signs checkpoints (v1_proofs.c) */
    int have_key;
    pthread_t ckpt_thread; /* the checkpointer (sl_checkpointer_start) */
    int ckpt_running, ckpt_stop;
    pthread_mutex_t ckpt_mu;
    pthread_cond_t ckpt_cv;
};

void sl_api_init(struct sl_api *api, struct sl_store *store, const struct sl_config *cfg);
/* Waits for running handlers, then answers every later request 503 without touching the store,
 * so the store can be closed while connections are still open. */
void sl_api_shutdown(struct sl_api *api);

/* The handler given to sl_http_start (ctx is struct sl_api). */
void sl_api_handle(struct sl_http_req *req, void *ctx);
void sl_api_on_complete(struct sl_http_req *req, unsigned status, uint64_t latency_ns, void *ctx);
/* Appends a record of a management request (admin scope) that succeeded, or of a refused token
 * (401/403), to the
 * strand SL_AUDIT_STRAND: {"token" (its name), "method", "path", "status", "from" (address)}. */
#define SL_AUDIT_STRAND "sluice.audit"
void sl_api_audit(struct sl_api *api, struct sl_http_req *req, unsigned status);

/* Appends a write made by req (done() answers it): a small one is group-committed by the HTTP
 * event loop after its pass, a big one (body_len over 16 KiB) by the strand's threads.
 * sl_strand_submit's results. */
int sl_api_submit(struct sl_http_req *req, struct sl_strand *s, struct sl_append *a,
                  size_t body_len, struct sl_err *err);

/* Answers {"error": msg, "code": code}. */
void sl_api_error(struct sl_http_req *req, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Answers an error from an sl_err, its status from the one table of codes. */
void sl_api_error_from(struct sl_http_req *req, const struct sl_err *err);
unsigned sl_api_status_for(int code);
void sl_api_json(struct sl_http_req *req, unsigned status, struct sl_buf *body);
/* GET /v1/openapi.json (v1_openapi.c). */
void sl_v1_openapi(struct sl_api *api, struct sl_http_req *req);
/* GET /ui, /ui/ and its files (v1_ui.c). */
void sl_v1_ui(struct sl_api *api, struct sl_http_req *req, const char *path);

/* 0 if the request's Content-Type is JSON (or absent); else answers 415 and returns -1. */
int sl_api_require_json(struct sl_http_req *req, int allow_ndjson, int *is_ndjson);
/* An optional 0/1 (or false/true) query parameter; answers 400 naming it and returns -1 on error.
 */
int sl_api_query_flag(struct sl_http_req *req, const char *name, int *out);
/* Parses an optional unsigned query parameter; answers 400 naming it and returns -1 on error. */
int sl_api_query_u64(struct sl_http_req *req, const char *name, uint64_t min, uint64_t max,
                     uint64_t *out, int *present);

void sl_v1_records_post(struct sl_api *api, struct sl_http_req *req, int batch);
void sl_v1_record_get(struct sl_api *api, struct sl_http_req *req, const char *hash);
void sl_v1_strands_get(struct sl_api *api, struct sl_http_req *req);
/* GET /v1/strands/{name}/latest?key=PATH[&as_of_ms=T][&where=EXPR]: the latest record per key. */
void sl_v1_strand_latest_get(struct sl_api *api, struct sl_http_req *req, const char *name,
                             size_t name_len);
void sl_v1_strand_records_get(struct sl_api *api, struct sl_http_req *req, const char *name,
                              size_t name_len);
void sl_v1_health(struct sl_api *api, struct sl_http_req *req);
void sl_v1_connectors(struct sl_api *api, struct sl_http_req *req);
void sl_v1_connector(struct sl_api *api, struct sl_http_req *req, const char *id);
void sl_v1_connector_kinds(struct sl_api *api, struct sl_http_req *req);
void sl_v1_connector_restart(struct sl_api *api, struct sl_http_req *req, const char *id);
void sl_v1_dead_letters(struct sl_api *api, struct sl_http_req *req, const char *id, int replay);
void sl_v1_rest_push(struct sl_api *api, struct sl_http_req *req, const char *id, size_t idlen);
void sl_v1_metrics(struct sl_api *api, struct sl_http_req *req);
void sl_v1_boboyka_ingest(struct sl_api *api, struct sl_http_req *req);
void sl_v1_boboyka_status(struct sl_api *api, struct sl_http_req *req);
void sl_v1_boboyka_events(struct sl_api *api, struct sl_http_req *req);
/* POST /v1/pipelines/reload: applies the --pipelines files again (as SIGHUP does). */
void sl_v1_pipelines_reload(struct sl_api *api, struct sl_http_req *req);

/* Answers 405 with an Allow header. */
void sl_api_method_not_allowed(struct sl_http_req *req, const char *allow);
/* Answers o (stolen) as JSON. */
void sl_api_answer(struct sl_http_req *req, unsigned status, json_t *o);
/* The request body as a JSON object (a new reference); answers the error and returns NULL if the
 * Content-Type or the JSON is wrong. */
json_t *sl_api_body_json(struct sl_http_req *req);
/* Stores a new (or patched) outbound connector's start cursors ("start": "head"). */
void sl_api_pin_start(struct sl_api *api, const json_t *c);
/* POST /v1/connectors/{id}/pause|resume and /api/v1/connectors/{name}/pause|resume (sh: answer
 * in StreamHouse's shape). key is an id, or else a name. */
void sl_v1_connector_pause(struct sl_api *api, struct sl_http_req *req, const char *key, int paused,
                           int sh);

/* StreamHouse (streamhouse.c): every /api/v1/ path. */
void sl_sh_route(struct sl_api *api, struct sl_http_req *req, const char *path);
/* 1 if a create body is StreamHouse's (connectorClass, connectorType or topics, and no kind). */
int sl_sh_is_body(const json_t *body);
/* StreamHouse's create body as ours (a new object), or NULL with err naming the field. */
json_t *sl_sh_to_body(const json_t *body, struct sl_err *err);
/* Renames the fields a registry error names to StreamHouse's (strands -> topics, kind ->
 * connectorClass). */
void sl_sh_fix_error(struct sl_err *err);
/* Keeps how a StreamHouse client spelled connector id (connectorClass, config with secrets
 * masked) for later answers; sl_sh_forget_config drops the config (a /v1 PATCH replaced it). */
void sl_sh_remember(struct sl_api *api, const char *id, const json_t *sh_body);
void sl_sh_forget_config(struct sl_api *api, const char *id);

/* checkpoint, proof/inclusion, proof/consistency and tile/... under /v1/strands/; rest is
 * "{name}/..." */
void sl_v1_strand_proofs(struct sl_api *api, struct sl_http_req *req, const char *rest);
void sl_v1_checkpoint_key(struct sl_api *api, struct sl_http_req *req);
/* Appends ,"proof":{...},"checkpoint":"..." (or "proof":null and why) for GET /v1/records. */
int sl_api_record_proof(struct sl_api *api, struct sl_strand *s, uint64_t seq, struct sl_buf *b);
/* Background checkpoints: every checkpoint_interval_ms (at least 100 ms) a checkpoint is signed
 * for each strand whose tree grew; with checkpoint_strand set it is also appended there as
 * {"strand", "tree_size", "checkpoint"}, for a connector to deliver elsewhere. One thread; stop
 * it before closing the store. */
int sl_checkpointer_start(struct sl_api *api);
void sl_checkpointer_stop(struct sl_api *api);
/* The checkpoint origin of a strand (checkpoint_origin, default <hostname>/sluice/<strand>). */
void sl_api_origin(const struct sl_config *cfg, const char *strand, char *out, size_t n);

/* Appends a record as the JSON object the API returns. raw adds payload_msgpack_b64. */
int sl_api_record_json(struct sl_buf *b, const char *strand, const struct sl_record *r, int raw);

#endif
