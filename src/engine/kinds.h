/* Connector kinds: the catalog (one list of every kind, in catalog.c) and the config-table
 * engine (kinds.c). Each kind is a `struct sl_connector` (include/sluice/connector.h) that
 * declares its config table; the same tables validate configs, fill in defaults, redact secrets
 * in answers, keep secrets a PATCH sends back as "***", document the kind
 * (GET /v1/connector-kinds, docs/connectors.md) and, for sinks, add the framework's common
 * fields (start, retry, circuit_breaker, max_consecutive_failures, timeout_ms). */
#ifndef SL_ENGINE_KINDS_H
#define SL_ENGINE_KINDS_H

#include "core/err.h"

#include <jansson.h>
#include <sluice/connector.h>

/* By name or by an alias (s3-sink and object-storage are object_storage). */
const struct sl_connector *sl_kind_find(const char *name);
/* Every kind, built-in then plugins, NULL-terminated. */
const struct sl_connector *const *sl_kinds_all(void);
/* Adds a kind (a plugin's). 0, or SL_E_CONFLICT when its name or an alias is taken, SL_E_INVAL
 * when it is malformed. Not thread-safe: call before the server starts serving. */
int sl_kinds_add(const struct sl_connector *c, struct sl_err *err);

/* 1 for a kind whose records arrive through the HTTP API rather than a worker (the REST
 * bridge's push route), 0 otherwise. */
int sl_kind_served(const struct sl_connector *k);
/* 1 for a kind built into this binary, 0 for a plugin's. */
int sl_kind_builtin(const struct sl_connector *k);

/* A source's gauges (sl_source_ops.gauges): at most this many per kind. */
#define SL_GAUGES_MAX 8
/* The index of gauge name in k's table, or -1. */
int sl_kind_gauge_index(const struct sl_connector *k, const char *name);

/* The fields the framework adds to every sink (its delivery policy). */
extern const struct sl_field sl_sink_common_fields[];

/* Whether a connector of this kind does something once created: a sink or a source with ops,
 * or the REST bridge (served by the HTTP threads). Others are stored and shown "paused". */
int sl_kind_runs(const struct sl_connector *k);

/* Normalizes (if the kind has a hook), validates config (an object) against kind and returns a new
 * object with defaults filled in, or NULL with err (code SL_E_INVAL, message naming the field as
 * "config.a.b"). */
json_t *sl_kind_validate(const struct sl_connector *k, const json_t *config, struct sl_err *err);
/* Returns a copy of config with every secret replaced by "***" and passwords inside
 * connection strings masked. */
json_t *sl_kind_redact(const struct sl_connector *k, const json_t *config);
/* The same for a config as a client spelled it, before normalization (StreamHouse's dotted keys,
 * "s3.secret_access_key", "connection.url"): a key is secret if its last dotted part names a
 * secret field or it names a password, secret or token; URLs have their password masked. */
json_t *sl_kind_redact_spelled(const struct sl_connector *k, const json_t *config);
/* In a new config, replaces secrets given as "***" by the stored value from old (in place). */
void sl_kind_keep_secrets(const struct sl_connector *k, json_t *cfg, const json_t *old);
/* The catalog entry of a kind: name, aliases, direction, category, description, availability,
 * fields (common ones marked "common": true). */
json_t *sl_kind_describe(const struct sl_connector *k);

/* "string", "integer", ... as the catalog and error messages name a field's type. */
const char *sl_field_type_name(enum sl_ftype t);

/* Fails with "<path>: <message>" (code invalid_config), the path naming the field as the client
 * spelled it (config.retry.max_retries). For connectors' normalize and check hooks too. */
int sl_config_error(struct sl_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The host services given to connectors (include/sluice/connector.h). */
extern const struct sl_host sl_host_default;

#endif
