/* Connector kinds: one table (kinds.c) declares every kind's direction and config schema
 * (field, type, required, default, secret, help). The same table validates configs, fills in
 * defaults, redacts secrets in answers, keeps secrets a PATCH sends back as "***", and is served
 * as the catalog GET /v1/connector-kinds. One list names every kind, built or not. */
#ifndef SL_ENGINE_KINDS_H
#define SL_ENGINE_KINDS_H

#include "core/err.h"

#include <jansson.h>

enum sl_direction { SL_INBOUND, SL_OUTBOUND };

enum sl_ftype {
    SL_F_STRING,
    SL_F_INT,    /* integer within [min, max] */
    SL_F_NUMBER, /* integer or float */
    SL_F_BOOL,
    SL_F_ENUM,        /* string among choices */
    SL_F_STRING_LIST, /* array of strings */
    SL_F_OBJECT,      /* nested schema in sub */
    SL_F_URL,         /* http:// or https:// URL */
    SL_F_STRAND,      /* a valid strand name */
};

struct sl_field {
    const char *name;
    enum sl_ftype type;
    int required;
    const char *def; /* default as JSON text, NULL = none (absent stays absent) */
    int secret;      /* never returned; "***" in answers */
    const char *help;
    long long min, max;         /* SL_F_INT */
    const char *const *choices; /* SL_F_ENUM, NULL-terminated */
    const struct sl_field *sub; /* SL_F_OBJECT, terminated by a NULL name */
};

struct sl_kind {
    const char *name;
    enum sl_direction direction;
    int has_worker; /* 0: stored and validated; its worker ships with a later issue */
    const char *help;
    const struct sl_field *fields; /* terminated by a NULL name */
    /* extra checks across fields (e.g. "one of A or B"); may be NULL */
    int (*check)(const json_t *config, struct sl_err *err);
};

/* A kind may also have a normalization hook (kinds.c, g_normalizers), run before validation: it
 * rewrites other spellings of a config (the seeds' dialects, values sent as strings) into the
 * canonical keys of `fields`, returning a new object, or NULL with err naming the field as the
 * client spelled it. */

/* By name or by an alias (s3-sink and object-storage are object_storage). */
const struct sl_kind *sl_kind_find(const char *name);
const struct sl_kind *const *sl_kinds_all(void); /* NULL-terminated */

/* Normalizes (if the kind has a hook), validates config (an object) against kind and returns a new
 * object with defaults filled in, or NULL with err (code SL_E_INVAL, message naming the field as
 * "config.a.b"). */
json_t *sl_kind_validate(const struct sl_kind *k, const json_t *config, struct sl_err *err);
/* Returns a copy of config with every secret replaced by "***" and passwords inside
 * connection strings masked. */
json_t *sl_kind_redact(const struct sl_kind *k, const json_t *config);
/* In a new config, replaces secrets given as "***" by the stored value from old (in place). */
void sl_kind_keep_secrets(const struct sl_kind *k, json_t *cfg, const json_t *old);
/* The catalog entry of a kind. */
json_t *sl_kind_describe(const struct sl_kind *k);

#endif
