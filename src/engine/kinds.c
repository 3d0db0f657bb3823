/* The config-table engine: one generic validator, redactor and describer over the field tables
 * that every connector declares (include/sluice/connector.h). */
#include "engine/kinds.h"
#include "core/netpolicy.h"
#include "transform/transform.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "strand/record.h"

static const char *const g_start[] = {"head", "earliest", NULL};

static const struct sl_field f_retry[] = {
    {"initial_backoff_ms", SL_F_INT, 0, "200", 0, "First retry delay.", 1, 3600000, NULL, NULL},
    {"max_backoff_ms", SL_F_INT, 0, "30000", 0, "Largest retry delay.", 1, 86400000, NULL, NULL},
    {"max_retries", SL_F_INT, 0, "-1", 0, "Retries before dead-lettering; -1 = forever.", -1,
     1000000000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_breaker[] = {
    {"failure_threshold", SL_F_INT, 0, "5", 0, "Consecutive failures that open the breaker.", 1,
     1000000, NULL, NULL},
    {"reset_timeout_secs", SL_F_INT, 0, "30", 0, "Seconds open before a trial request.", 1, 86400,
     NULL, NULL},
    {"success_threshold", SL_F_INT, 0, "2", 0, "Successes in half-open state that close it.", 1,
     1000000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_rate[] = {
    {"events_per_second", SL_F_NUMBER, 1, NULL, 0, "Records sent per second, sustained.", 0, 0,
     NULL, NULL},
    {"burst_capacity", SL_F_INT, 0, NULL, 0,
     "Records that may go at once after a quiet spell (default: events_per_second, at least 1).", 1,
     1000000000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

const struct sl_field sl_sink_common_fields[] = {
    {"start", SL_F_ENUM, 0, "\"head\"", 0,
     "Where a new connector starts: head (new records only) or earliest.", 0, 0, g_start, NULL},
    {"retry", SL_F_OBJECT, 0, "{}", 0, "Retry with exponential backoff and full jitter.", 0, 0,
     NULL, f_retry},
    {"circuit_breaker", SL_F_OBJECT, 0, "{}", 0, "Stops sending while a target keeps failing.", 0,
     0, NULL, f_breaker},
    {"max_consecutive_failures", SL_F_INT, 0, "0", 0,
     "Failures in a row after which the connector goes to failed; 0 = never.", 0, 1000000000, NULL,
     NULL},
    {"timeout_ms", SL_F_INT, 0, "10000", 0, "Request timeout.", 1, 600000, NULL, NULL},
    {"rate_limit", SL_F_OBJECT, 0, NULL, 0,
     "Token bucket on records sent (the Rivven seed's sink rate_limit); absent: no limit.", 0, 0,
     NULL, f_rate},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

const char *sl_field_type_name(enum sl_ftype t)
{
    static const char *const names[] = {"string",      "integer",          "number", "boolean",
                                        "enum",        "array of strings", "object", "url",
                                        "strand name", "object of strings"};
    return names[t];
}

/* The tables a config is checked against: the kind's own fields, then, for a sink, the
 * framework's common ones. */
struct tables {
    const struct sl_field *t[2];
};

static struct tables tables_of(const struct sl_connector *k)
{
    struct tables ts = {{k->fields, k->direction == SL_OUTBOUND ? sl_sink_common_fields : NULL}};
    return ts;
}

static struct tables one_table(const struct sl_field *f)
{
    struct tables ts = {{f, NULL}};
    return ts;
}

#define FOREACH_FIELD(ts, f)                                                                       \
    for (size_t ti_ = 0; ti_ < 2; ti_++)                                                           \
        for (const struct sl_field *f = (ts).t[ti_]; f && f->name; f++)

int sl_config_error(struct sl_err *err, const char *path, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sl_err_set(err, SL_E_INVAL, "invalid_config", "%s: %s", path, msg);
}

/* Validates one object against fields; returns a new object with defaults, or NULL. */
static json_t *validate(struct tables ts, const json_t *in, const char *path, struct sl_err *err)
{
    if (!json_is_object(in)) {
        sl_config_error(err, path, "must be an object");
        return NULL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)in, key, val)
    {
        int known = 0;
        FOREACH_FIELD(ts, f) known |= strcmp(f->name, key) == 0;
        if (!known) {
            char p[256];
            snprintf(p, sizeof(p), "%s.%s", path, key);
            sl_config_error(err, p, "unknown field");
            return NULL;
        }
    }
    json_t *out = json_object();
    FOREACH_FIELD(ts, f)
    {
        char p[256];
        snprintf(p, sizeof(p), "%s.%s", path, f->name);
        json_t *v = json_object_get(in, f->name), *owned = NULL;
        if (!v || json_is_null(v)) {
            if (f->required) {
                sl_config_error(err, p, "required field is missing");
                goto fail;
            }
            if (!f->def)
                continue;
            owned = json_loads(f->def, JSON_DECODE_ANY, NULL);
            v = owned;
        }
        json_t *res = NULL;
        switch (f->type) {
        case SL_F_STRING:
        case SL_F_URL:
        case SL_F_STRAND:
            if (!json_is_string(v)) {
                sl_config_error(err, p, "must be a %s", sl_field_type_name(f->type));
                break;
            }
            if (f->type == SL_F_URL && strncmp(json_string_value(v), "http://", 7) != 0 &&
                strncmp(json_string_value(v), "https://", 8) != 0) {
                sl_config_error(err, p, "must be an http:// or https:// URL");
                break;
            }
            if (f->type == SL_F_URL) { /* a literal address the outbound policy denies */
                const char *u = json_string_value(v), *h = strstr(u, "://");
                char host[80], why[200];
                size_t n = 0;
                for (h = h ? h + 3 : u; h[n] && h[n] != '/' && h[n] != '?' && n + 1 < sizeof(host);
                     n++)
                    host[n] = h[n];
                host[n] = 0;
                char *at = strrchr(host, '@'), *hp = at ? at + 1 : host;
                char *colon = hp[0] == '[' ? strstr(hp, "]:") : strrchr(hp, ':');
                if (colon)
                    colon[hp[0] == '[' ? 1 : 0] = 0;
                if (sl_netpolicy_denied_host(hp, why, sizeof(why))) {
                    sl_config_error(err, p, "%s", why);
                    break;
                }
            }
            if (f->type == SL_F_STRAND &&
                !sl_strand_name_valid(json_string_value(v), json_string_length(v))) {
                sl_config_error(err, p, "must be a strand name ([a-z0-9][a-z0-9._-]{0,63})");
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_INT:
            if (!json_is_integer(v) || json_integer_value(v) < f->min ||
                json_integer_value(v) > f->max) {
                sl_config_error(err, p, "must be an integer between %lld and %lld", f->min, f->max);
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_NUMBER:
            if (!json_is_number(v) || json_number_value(v) <= 0) {
                sl_config_error(err, p, "must be a number greater than 0");
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_BOOL:
            if (!json_is_boolean(v)) {
                sl_config_error(err, p, "must be a boolean");
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_ENUM: {
            int ok = 0;
            char list[160] = "";
            for (const char *const *c = f->choices; *c; c++) {
                ok |= json_is_string(v) && strcmp(json_string_value(v), *c) == 0;
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         c == f->choices ? "" : ", ", *c);
            }
            if (!ok) {
                sl_config_error(err, p, "must be one of: %s", list);
                break;
            }
            res = json_incref(v);
            break;
        }
        case SL_F_STRING_LIST: {
            int ok = json_is_array(v);
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) ok &= json_is_string(e);
            if (!ok) {
                sl_config_error(err, p, "must be an array of strings");
                break;
            }
            res = json_incref(v);
            break;
        }
        case SL_F_STRING_MAP: {
            int ok = json_is_object(v);
            const char *k2;
            json_t *e;
            json_object_foreach(v, k2, e) ok &= json_is_string(e);
            if (!ok) {
                sl_config_error(err, p, "must be an object of string values");
                break;
            }
            res = json_incref(v);
            break;
        }
        case SL_F_OBJECT:
            res = validate(one_table(f->sub), v, p, err);
            break;
        }
        json_decref(owned);
        if (!res)
            goto fail;
        json_object_set_new(out, f->name, res);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

static json_t *validate_once(const struct sl_connector *k, const json_t *config,
                             struct sl_err *err);

/* The first key of config (top level) whose value is "" while leaving that key out is refused
 * too; err names it as config spells it. 0 if none. */
static int empty_required(const struct sl_connector *k, const json_t *config, struct sl_err *err)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)config, key, v)
    {
        if (!json_is_string(v) || json_string_length(v) != 0)
            continue;
        json_t *without = json_copy((json_t *)config);
        json_object_del(without, key);
        json_t *out = validate_once(k, without, NULL);
        json_decref(without);
        if (out) {
            json_decref(out);
            continue;
        }
        char path[256];
        snprintf(path, sizeof(path), "config.%.200s", key);
        return sl_config_error(err, path, "required, must not be empty");
    }
    return 0;
}

/* An empty string given for a field is refused when leaving that field out would be refused too
 * ("s3.bucket": "" would otherwise pass and fail at the first upload). The keys as the client
 * spelled them are checked first, so the error names them ("config.s3.bucket"); then the
 * normalized config, for empties a nested spelling hid ("local": {"root": ""} is config.root).
 * An empty value that leaving out would accept (prefix: "") stays. */
static int check_empty(const struct sl_connector *k, const json_t *config, struct sl_err *err)
{
    int rc = empty_required(k, config, err);
    json_t *norm = rc == 0 && k->normalize ? k->normalize(config, NULL) : NULL;
    if (norm)
        rc = empty_required(k, norm, err);
    json_decref(norm);
    return rc;
}

/* config.transforms (docs/pipelines.md#transforms): checked by the transform module, kept as
 * given; connectors with a worker run them (sinks before sending, sources before writing). */
static int check_transforms(const struct sl_connector *k, const json_t *tr, struct sl_err *err)
{
    if (!k->sink && !k->source)
        return sl_config_error(err, "config.transforms",
                               "%s has no worker to run them (sinks and sources with one do)",
                               k->name);
    struct sl_err te = {0};
    struct sl_transforms *t = sl_transforms_compile(tr, &te);
    if (!t)
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.%s", te.msg);
    int routes = sl_transforms_route(t);
    sl_transforms_free(t);
    if (routes && k->sink)
        return sl_config_error(err, "config.transforms",
                               "ContentRouter routes a source's records to strands; a sink "
                               "reads strands and cannot use it");
    return 0;
}

json_t *sl_kind_validate(const struct sl_connector *k, const json_t *config, struct sl_err *err)
{
    const json_t *tr = json_is_object(config) ? json_object_get(config, "transforms") : NULL;
    json_t *rest = NULL;
    if (tr) {
        if (check_transforms(k, tr, err) != 0)
            return NULL;
        rest = json_copy((json_t *)config);
        json_object_del(rest, "transforms");
        config = rest;
    }
    json_t *out = validate_once(k, config, err);
    if (out && json_is_object(config) && check_empty(k, config, err) != 0) {
        json_decref(out);
        out = NULL;
    }
    if (out && tr && json_array_size(tr))
        json_object_set(out, "transforms", (json_t *)tr);
    json_decref(rest);
    return out;
}

static json_t *validate_once(const struct sl_connector *k, const json_t *config, struct sl_err *err)
{
    if (k->unavailable) {
        sl_err_set(err, SL_E_INVAL, "kind_unavailable", "kind: %s is not available: %s", k->name,
                   k->unavailable);
        return NULL;
    }
    json_t *norm = NULL;
    if (k->normalize && json_is_object(config) && !(norm = k->normalize(config, err)))
        return NULL;
    json_t *out = validate(tables_of(k), norm ? norm : config, "config", err);
    json_decref(norm);
    if (out && k->check_config && k->check_config(out, err) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* "scheme://user:password@host" -> "scheme://user:***@host"; "... password=x ..." -> "password=***"
 */
static json_t *mask_password(const char *s)
{
    char buf[2048];
    const char *scheme = strstr(s, "://"), *at = NULL;
    if (scheme) { /* userinfo ends at the last '@' before the path (a password may hold '@') */
        const char *path = strchr(scheme + 3, '/');
        for (const char *q = scheme + 3; *q && (!path || q < path); q++)
            if (*q == '@')
                at = q;
    }
    if (scheme && at) {
        const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
        if (colon) {
            snprintf(buf, sizeof(buf), "%.*s***%s", (int)(colon + 1 - s), s, at);
            return json_string(buf);
        }
        return json_string(s);
    }
    const char *pw = strstr(s, "password=");
    if (pw) {
        const char *end = pw + 9;
        while (*end && *end != ' ')
            end++;
        snprintf(buf, sizeof(buf), "%.*s***%s", (int)(pw + 9 - s), s, end);
        return json_string(buf);
    }
    return json_string(s);
}

static json_t *redact(struct tables ts, const json_t *in)
{
    json_t *out = json_deep_copy(in);
    FOREACH_FIELD(ts, f)
    {
        json_t *v = json_object_get(out, f->name);
        if (!v)
            continue;
        if (f->secret == SL_SECRET)
            json_object_set_new(out, f->name, json_string("***"));
        else if (f->secret == SL_HAS_PASSWORD && json_is_string(v))
            json_object_set_new(out, f->name, mask_password(json_string_value(v)));
        else if (f->type == SL_F_OBJECT && json_is_object(v))
            json_object_set_new(out, f->name, redact(one_table(f->sub), v));
    }
    return out;
}

json_t *sl_kind_redact(const struct sl_connector *k, const json_t *config)
{
    return redact(tables_of(k), config);
}

json_t *sl_kind_redact_spelled(const struct sl_connector *k, const json_t *config)
{
    json_t *out = sl_kind_redact(k, config); /* keys the table knows as they are */
    const char *key;
    json_t *v;
    json_object_foreach(out, key, v)
    {
        if (!json_is_string(v))
            continue;
        const char *last = strrchr(key, '.') ? strrchr(key, '.') + 1 : key;
        int secret = strstr(key, "password") || strstr(key, "secret") || strstr(key, "token");
        int has_password = 0;
        FOREACH_FIELD(tables_of(k), f)
        {
            if (strcmp(f->name, last) != 0)
                continue;
            secret |= f->secret == SL_SECRET;
            has_password |= f->secret == SL_HAS_PASSWORD;
        }
        /* a dotted URL key (StreamHouse's connection.url) may carry user:password@ */
        has_password |= strstr(last, "url") != NULL || strstr(last, "connection") != NULL;
        if (secret)
            json_object_set_new(out, key, json_string("***"));
        else if (has_password)
            json_object_set_new(out, key, mask_password(json_string_value(v)));
    }
    return out;
}

static void keep(struct tables ts, json_t *cfg, const json_t *old)
{
    FOREACH_FIELD(ts, f)
    {
        json_t *v = json_object_get(cfg, f->name), *o = json_object_get(old, f->name);
        if (!v || !o)
            continue;
        if (f->secret == SL_SECRET && json_is_string(v) &&
            strcmp(json_string_value(v), "***") == 0) {
            json_object_set(cfg, f->name, o);
        } else if (f->secret == SL_HAS_PASSWORD && json_is_string(v) && json_is_string(o)) {
            json_t *m = mask_password(json_string_value(o));
            if (json_equal(m, v))
                json_object_set(cfg, f->name, o);
            json_decref(m);
        } else if (f->type == SL_F_OBJECT && json_is_object(v) && json_is_object(o)) {
            keep(one_table(f->sub), v, o);
        }
    }
}

void sl_kind_keep_secrets(const struct sl_connector *k, json_t *cfg, const json_t *old)
{
    /* a normalized config puts secrets where keep() finds them (s3.secret_access_key -> top) */
    json_t *norm = k->normalize && json_is_object(cfg) ? k->normalize(cfg, NULL) : NULL;
    if (norm) {
        json_object_clear(cfg);
        json_object_update(cfg, norm);
        json_decref(norm);
    }
    keep(tables_of(k), cfg, old);
}

static void describe_fields(json_t *arr, const struct sl_field *fields, int common)
{
    for (const struct sl_field *f = fields; f && f->name; f++) {
        json_t *o = json_pack("{s:s, s:s, s:b, s:b, s:s}", "name", f->name, "type",
                              sl_field_type_name(f->type), "required", f->required, "secret",
                              f->secret != 0, "description", f->help);
        json_object_set_new(o, "default",
                            f->def ? json_loads(f->def, JSON_DECODE_ANY, NULL) : json_null());
        if (f->type == SL_F_INT) {
            json_object_set_new(o, "min", json_integer(f->min));
            json_object_set_new(o, "max", json_integer(f->max));
        }
        if (f->choices) {
            json_t *c = json_array();
            for (const char *const *x = f->choices; *x; x++)
                json_array_append_new(c, json_string(*x));
            json_object_set_new(o, "choices", c);
        }
        if (f->sub) {
            json_t *sub = json_array();
            describe_fields(sub, f->sub, 0);
            json_object_set_new(o, "fields", sub);
        }
        if (common)
            json_object_set_new(o, "common", json_true());
        json_array_append_new(arr, o);
    }
}

json_t *sl_kind_describe(const struct sl_connector *k)
{
    json_t *fields = json_array();
    describe_fields(fields, k->fields, 0);
    if (k->direction == SL_OUTBOUND)
        describe_fields(fields, sl_sink_common_fields, 1);
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:b, s:b, s:s, s:o}", "kind", k->name, "direction",
                  k->direction == SL_INBOUND ? "inbound" : "outbound", "category",
                  k->category ? k->category : "utility", "worker", sl_kind_runs(k), "available",
                  k->unavailable == NULL, "description", k->description, "fields", fields);
    if (k->aliases && k->aliases[0]) {
        json_t *aliases = json_array();
        for (const char *const *a = k->aliases; *a; a++)
            json_array_append_new(aliases, json_string(*a));
        json_object_set_new(o, "aliases", aliases);
    }
    if (k->unavailable)
        json_object_set_new(o, "unavailable", json_string(k->unavailable));
    return o;
}
