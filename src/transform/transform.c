#include "transform/transform.h"

#include "transform/tr_int.h"

#include "core/buf.h"
#include "core/util.h"
#include "formats/mp_jansson.h"
#include "strand/record.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const g_names[] = {"Filter",
                                      "MaskField",
                                      "ReplaceField",
                                      "InsertField",
                                      "ExtractNewRecordState",
                                      "TimestampConverter",
                                      "Cast",
                                      "ContentRouter",
                                      NULL};

/* The keys each type's config may have. */
static const char *const g_keys[][6] = {
    {"condition", "action", NULL},
    {"fields", "mask_char", NULL},
    {"rename", "include", "exclude", NULL},
    {"static", "timestamp", NULL},
    {"delete.handling.mode", "add.fields", "drop.tombstones", NULL},
    {"field", "target.type", NULL},
    {"spec", NULL},
    {"field", "routes", "default", NULL},
};

enum { DEL_DROP, DEL_NONE, DEL_REWRITE };

/* The route chosen while applying (sl_transforms_apply_routed), per thread. */
static __thread char *g_route;

/* ---- paths ---- */

/* The object holding the last segment of p (created when create), and that segment. */
static json_t *parent_of(json_t *v, const char *p, int create, const char **last)
{
    static __thread char buf[512];
    snprintf(buf, sizeof(buf), "%s", p);
    char *s = buf, *dot;
    while ((dot = strchr(s, '.'))) {
        *dot = 0;
        json_t *next = json_object_get(v, s);
        if (!next && create) {
            next = json_object();
            json_object_set_new(v, s, next);
        }
        if (!json_is_object(next))
            return NULL;
        v = next;
        s = dot + 1;
    }
    *last = s;
    return json_is_object(v) ? v : NULL;
}

/* ---- compile ---- */

static int cfg_err(struct sl_err *err, size_t i, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int cfg_err(struct sl_err *err, size_t i, const char *key, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sl_err_set(err, SL_E_INVAL, "invalid_config", "transforms[%zu]%s%s: %s", i,
                      key ? ".config." : "", key ? key : "", msg);
}

static int string_list(const json_t *v)
{
    if (!json_is_array(v))
        return 0;
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) if (!json_is_string(x)) return 0;
    return 1;
}

static int compile_one(struct tr *t, size_t i, const json_t *cfg, struct sl_err *err)
{
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)cfg, key, val)
    {
        int ok = 0;
        for (const char *const *k = g_keys[t->k]; *k && !ok; k++)
            ok = strcmp(*k, key) == 0;
        if (!ok)
            return cfg_err(err, i, key, "unknown field for %s", g_names[t->k]);
    }
    switch (t->k) {
    case T_FILTER: {
        const json_t *c = json_object_get(cfg, "condition");
        if (!json_is_string(c))
            return cfg_err(err, i, "condition", "required, an expression (docs/expressions.md)");
        char msg[300];
        if (!(t->cond =
                  sl_expr_compile(json_string_value(c), json_string_length(c), msg, sizeof(msg))))
            return cfg_err(err, i, "condition", "%s", msg);
        const char *a = json_string_value(json_object_get(cfg, "action"));
        if (json_object_get(cfg, "action") && !(a && (!strcmp(a, "keep") || !strcmp(a, "drop"))))
            return cfg_err(err, i, "action", "must be keep or drop");
        t->keep = !a || strcmp(a, "keep") == 0;
        return 0;
    }
    case T_MASK: {
        const json_t *f = json_object_get(cfg, "fields");
        if (!string_list(f) || !json_array_size(f))
            return cfg_err(err, i, "fields", "required, a list of field paths");
        const json_t *m = json_object_get(cfg, "mask_char");
        if (m && !(json_is_string(m) && json_string_length(m) == 1))
            return cfg_err(err, i, "mask_char", "must be one character");
        t->mask = m ? json_string_value(m)[0] : '*';
        return 0;
    }
    case T_REPLACE: {
        const json_t *r = json_object_get(cfg, "rename");
        if (r && !json_is_object(r))
            return cfg_err(err, i, "rename", "must be a mapping of old name to new name");
        json_object_foreach((json_t *)r, key, val) if (!json_is_string(val)) return cfg_err(
            err, i, "rename", "%s: the new name must be a string", key);
        for (int k = 0; k < 2; k++) {
            const char *n = k ? "exclude" : "include";
            if (json_object_get(cfg, n) && !string_list(json_object_get(cfg, n)))
                return cfg_err(err, i, n, "must be a list of field names");
        }
        if (!r && !json_object_get(cfg, "include") && !json_object_get(cfg, "exclude"))
            return cfg_err(err, i, NULL, "ReplaceField needs rename, include or exclude");
        return 0;
    }
    case T_INSERT: {
        const json_t *s = json_object_get(cfg, "static"), *ts = json_object_get(cfg, "timestamp");
        if (s && !json_is_object(s))
            return cfg_err(err, i, "static", "must be a mapping of field to value");
        if (ts && !json_is_string(json_object_get(ts, "field")))
            return cfg_err(err, i, "timestamp", "must be {field: <name>}");
        if (!s && !ts)
            return cfg_err(err, i, NULL, "InsertField needs static or timestamp");
        return 0;
    }
    case T_UNWRAP: {
        const char *m = json_string_value(json_object_get(cfg, "delete.handling.mode"));
        if (json_object_get(cfg, "delete.handling.mode") &&
            !(m && (!strcmp(m, "drop") || !strcmp(m, "none") || !strcmp(m, "rewrite"))))
            return cfg_err(err, i, "delete.handling.mode", "must be drop, none or rewrite");
        t->del_mode = !m || !strcmp(m, "drop") ? DEL_DROP
                      : !strcmp(m, "none")     ? DEL_NONE
                                               : DEL_REWRITE;
        const json_t *af = json_object_get(cfg, "add.fields");
        if (af && !string_list(af))
            return cfg_err(err, i, "add.fields",
                           "must be a list (op, table, schema, db, lsn, ts_ms)");
        return 0;
    }
    case T_TSCONV: {
        if (!json_is_string(json_object_get(cfg, "field")))
            return cfg_err(err, i, "field", "required, a field path");
        const char *tt = json_string_value(json_object_get(cfg, "target.type"));
        if (!tt || !(!strcmp(tt, "unix") || !strcmp(tt, "string")))
            return cfg_err(err, i, "target.type", "required, unix or string");
        t->to_string = !strcmp(tt, "string");
        return 0;
    }
    case T_ROUTE: {
        if (!json_is_string(json_object_get(cfg, "field")))
            return cfg_err(err, i, "field", "required, a field path");
        const json_t *r = json_object_get(cfg, "routes");
        if (!json_is_object(r) || !json_object_size(r))
            return cfg_err(err, i, "routes", "required, a mapping of value to strand");
        json_object_foreach((json_t *)r, key, val)
        {
            if (!json_is_string(val) ||
                !sl_strand_name_valid(json_string_value(val), json_string_length(val)))
                return cfg_err(err, i, "routes",
                               "%s: must be a strand name ([a-z0-9][a-z0-9._-]{0,63})", key);
        }
        const json_t *d = json_object_get(cfg, "default");
        if (d && !(json_is_string(d) &&
                   sl_strand_name_valid(json_string_value(d), json_string_length(d))))
            return cfg_err(err, i, "default", "must be a strand name");
        return 0;
    }
    case T_CAST: {
        const json_t *s = json_object_get(cfg, "spec");
        if (!json_is_object(s) || !json_object_size(s))
            return cfg_err(err, i, "spec", "required, a mapping of field to type");
        json_object_foreach((json_t *)s, key, val)
        {
            const char *ty = json_string_value(val);
            if (!ty || (strcmp(ty, "int64") && strcmp(ty, "float64") && strcmp(ty, "string") &&
                        strcmp(ty, "boolean")))
                return cfg_err(err, i, "spec", "%s: must be int64, float64, string or boolean",
                               key);
        }
        return 0;
    }
    }
    return 0;
}

void sl_transforms_free(struct sl_transforms *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        sl_expr_free(t->v[i].cond);
        sl_tr_fast_release(&t->v[i]);
        json_decref(t->v[i].cfg);
    }
    free(t->v);
    free(t);
}

struct sl_transforms *sl_transforms_compile(const json_t *list, struct sl_err *err)
{
    if (!json_is_array(list)) {
        sl_err_set(err, SL_E_INVAL, "invalid_config",
                   "transforms: must be a list of {type, config}");
        return NULL;
    }
    struct sl_transforms *t = calloc(1, sizeof(*t));
    if (!t || !(t->v = calloc(json_array_size(list) + 1, sizeof(*t->v)))) {
        free(t);
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        return NULL;
    }
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x)
    {
        const char *key;
        json_t *val;
        int bad = !json_is_object(x);
        json_object_foreach(x, key, val) if (strcmp(key, "type") && strcmp(key, "config")) bad = 2;
        const char *type = json_string_value(json_object_get(x, "type"));
        const json_t *cfg = json_object_get(x, "config");
        struct tr *tr = &t->v[t->n];
        int k = 0;
        while (g_names[k] && (!type || strcmp(g_names[k], type)))
            k++;
        const char *other = json_string_value(json_object_get(x, "transform"));
        if (other && !type) { /* Rivven's AI transforms: `- transform: llm-chat` */
            sl_err_set(
                err, SL_E_INVAL, "invalid_config",
                "transforms[%zu].transform: transform '%.64s' is not available in this build", i,
                other);
            goto fail;
        }
        if (bad || !type) {
            cfg_err(err, i, NULL, "must be {type, config}%s", bad == 2 ? " (no other fields)" : "");
            goto fail;
        }
        if (!g_names[k]) {
            sl_err_set(
                err, SL_E_INVAL, "invalid_config",
                "transforms[%zu].type: unknown transform '%.64s' (known: Filter, MaskField, "
                "ReplaceField, InsertField, ExtractNewRecordState, TimestampConverter, Cast, "
                "ContentRouter)",
                i, type);
            goto fail;
        }
        if (cfg && !json_is_object(cfg)) {
            cfg_err(err, i, NULL, "config must be a mapping");
            goto fail;
        }
        tr->k = (enum tk)k;
        t->routes |= k == T_ROUTE;
        tr->cfg = cfg ? json_incref((json_t *)cfg) : json_object();
        t->n++;
        if (compile_one(tr, i, tr->cfg, err) < 0)
            goto fail;
    }
    if (sl_tr_fast_plan(t) < 0) {
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    return t;
fail:
    sl_transforms_free(t);
    return NULL;
}

/* ---- apply ---- */

static void mask_value(json_t *obj, const char *key, char m)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return;
    size_t n = json_is_string(v) ? json_string_length(v) : 8;
    char *s = malloc(n + 1);
    if (!s)
        return;
    memset(s, m, n);
    s[n] = 0;
    json_object_set_new(obj, key, json_string(s));
    free(s);
}

/* ISO 8601 UTC with milliseconds, from epoch ms. */
static json_t *iso_of(long long ms)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    long long rem = ms - (long long)secs * 1000;
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return NULL;
    char out[64];
    snprintf(out, sizeof(out), "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, rem);
    return json_string(out);
}

/* Epoch ms from "YYYY-MM-DDTHH:MM:SS[.fff][Z|+HH:MM]"; -1 if it is not that. */
static int ms_of(const char *s, long long *out)
{
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%*[T ]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || !n)
        return -1;
    const char *p = s + n;
    long long frac = 0;
    int digits = 0;
    if (*p == '.')
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                frac = frac * 10 + (*p - '0');
    while (digits > 0 && digits < 3)
        frac *= 10, digits++;
    long off = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (sscanf(p + 1, "%2d:%2d", &oh, &om) != 2)
            return -1;
        off = (*p == '+' ? 1 : -1) * (oh * 3600L + om * 60L);
        p += 6;
    }
    if (*p)
        return -1;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *out = ((long long)t - off) * 1000 + frac;
    return 0;
}

int sl_tr_cast_value(const json_t *v, const char *key, const char *ty, json_t **res, char *why,
                     size_t whylen)
{
    json_t *out = NULL;
    *res = NULL;
    if (!strcmp(ty, "string")) {
        if (json_is_string(v))
            return 0;
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        out = s ? json_string(s) : NULL;
        free(s);
    } else if (!strcmp(ty, "int64")) {
        if (json_is_integer(v))
            return 0;
        if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) &&
            fabs(json_real_value(v)) < 9.2e18)
            out = json_integer((json_int_t)json_real_value(v));
        else if (json_is_boolean(v))
            out = json_integer(json_is_true(v));
        else if (json_is_string(v)) {
            char *end;
            errno = 0;
            long long x = strtoll(json_string_value(v), &end, 10);
            if (!errno && *json_string_value(v) && !*end)
                out = json_integer(x);
        }
    } else if (!strcmp(ty, "float64")) {
        if (json_is_number(v))
            out = json_real(json_number_value(v));
        else if (json_is_string(v)) {
            char *end;
            double x = strtod(json_string_value(v), &end);
            if (*json_string_value(v) && !*end && isfinite(x))
                out = json_real(x);
        }
    } else { /* boolean */
        if (json_is_boolean(v))
            return 0;
        if (json_is_integer(v))
            out = json_boolean(json_integer_value(v) != 0);
        else if (json_is_string(v) &&
                 (!strcmp(json_string_value(v), "true") || !strcmp(json_string_value(v), "false")))
            out = json_boolean(json_string_value(v)[0] == 't');
    }
    if (!out) {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        snprintf(why, whylen, "%s: %.60s is not %s %s", key, s ? s : "the value",
                 ty[0] == 'i' ? "an" : "a", ty);
        free(s);
        return -1;
    }
    *res = out;
    return 0;
}

static int cast(json_t *obj, const char *key, const char *ty, char *why, size_t whylen)
{
    json_t *v = json_object_get(obj, key), *out;
    if (!v || json_is_null(v))
        return 0;
    if (sl_tr_cast_value(v, key, ty, &out, why, whylen) < 0)
        return -1;
    if (out)
        json_object_set_new(obj, key, out);
    return 0;
}

/* One transform on *v. */
static enum sl_tr_result one(const struct tr *t, json_t **v, const struct sl_expr_rec *r, char *why,
                             size_t whylen)
{
    const json_t *cfg = t->cfg;
    const char *last;
    switch (t->k) {
    case T_FILTER: {
        struct sl_expr_rec er = *r;
        er.value = *v;
        return sl_expr_match(t->cond, &er) == t->keep ? SL_TR_KEEP : SL_TR_DROP;
    }
    case T_MASK: {
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(cfg, "fields"), i, f)
        {
            json_t *p = parent_of(*v, json_string_value(f), 0, &last);
            if (p)
                mask_value(p, last, t->mask);
        }
        return SL_TR_KEEP;
    }
    case T_REPLACE: {
        if (!json_is_object(*v))
            return SL_TR_KEEP;
        const json_t *inc = json_object_get(cfg, "include");
        if (inc) {
            json_t *keep = json_object();
            size_t i;
            json_t *f;
            json_array_foreach(inc, i, f)
            {
                json_t *x = json_object_get(*v, json_string_value(f));
                if (x)
                    json_object_set(keep, json_string_value(f), x);
            }
            json_decref(*v);
            *v = keep;
        }
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(cfg, "exclude"), i, f)
            json_object_del(*v, json_string_value(f));
        const char *key;
        json_t *nv;
        json_object_foreach(json_object_get(cfg, "rename"), key, nv)
        {
            json_t *x = json_object_get(*v, key);
            if (!x)
                continue;
            json_incref(x);
            json_object_del(*v, key);
            json_object_set_new(*v, json_string_value(nv), x);
        }
        return SL_TR_KEEP;
    }
    case T_INSERT: {
        if (!json_is_object(*v))
            return SL_TR_KEEP;
        const char *key;
        json_t *x;
        json_object_foreach(json_object_get(cfg, "static"), key, x)
        {
            json_t *p = parent_of(*v, key, 1, &last);
            if (p)
                json_object_set(p, last, x);
        }
        const char *tf =
            json_string_value(json_object_get(json_object_get(cfg, "timestamp"), "field"));
        if (tf) {
            json_t *p = parent_of(*v, tf, 1, &last);
            if (p)
                json_object_set_new(p, last, json_integer((json_int_t)r->timestamp_ms));
        }
        return SL_TR_KEEP;
    }
    case T_UNWRAP: {
        json_t *after = json_object_get(*v, "after"), *op = json_object_get(*v, "op");
        if (!json_is_object(*v) || !op || !json_object_get(*v, "source"))
            return SL_TR_KEEP; /* not a CDC envelope: passed on as it is */
        int del = json_is_string(op) && !strcmp(json_string_value(op), "d");
        json_t *out;
        if (del) {
            if (t->del_mode == DEL_DROP)
                return SL_TR_DROP;
            json_t *before = json_object_get(*v, "before");
            out = t->del_mode == DEL_REWRITE && json_is_object(before) ? json_deep_copy(before)
                                                                       : json_object();
            if (t->del_mode == DEL_REWRITE)
                json_object_set_new(out, "__deleted", json_string("true"));
            else {
                json_decref(out);
                out = json_null(); /* none: the delete stays, as a null value (a tombstone) */
            }
        } else {
            out = json_is_object(after) ? json_deep_copy(after) : json_object();
            if (t->del_mode == DEL_REWRITE)
                json_object_set_new(out, "__deleted", json_string("false"));
        }
        size_t i;
        json_t *f;
        json_array_foreach(json_object_get(cfg, "add.fields"), i, f)
        {
            if (!json_is_object(out))
                break;
            const char *name = json_string_value(f);
            json_t *x = json_object_get(*v, name);
            if (!x)
                x = json_object_get(json_object_get(*v, "source"), name);
            char k[300];
            snprintf(k, sizeof(k), "__%s", name);
            if (x)
                json_object_set(out, k, x);
        }
        json_decref(*v);
        *v = out;
        return SL_TR_KEEP;
    }
    case T_TSCONV: {
        const char *path = json_string_value(json_object_get(cfg, "field"));
        json_t *p = parent_of(*v, path, 0, &last), *x = p ? json_object_get(p, last) : NULL;
        if (!x || json_is_null(x))
            return SL_TR_KEEP;
        long long ms;
        if (json_is_integer(x))
            ms = json_integer_value(x);
        else if (!json_is_string(x) || ms_of(json_string_value(x), &ms) < 0) {
            snprintf(why, whylen, "%s: not epoch milliseconds or an ISO 8601 time", path);
            return SL_TR_FAIL;
        }
        json_t *nv = t->to_string ? iso_of(ms) : json_integer(ms);
        if (!nv) {
            snprintf(why, whylen, "%s: %lld ms is out of range", path, ms);
            return SL_TR_FAIL;
        }
        json_object_set_new(p, last, nv);
        return SL_TR_KEEP;
    }
    case T_ROUTE: {
        const char *path = json_string_value(json_object_get(cfg, "field"));
        json_t *p = parent_of(*v, path, 0, &last), *x = p ? json_object_get(p, last) : NULL;
        char *text = x && !json_is_string(x) ? json_dumps(x, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
        const char *key = json_is_string(x) ? json_string_value(x) : text;
        const json_t *to = key ? json_object_get(json_object_get(cfg, "routes"), key) : NULL;
        if (!to)
            to = json_object_get(cfg, "default");
        if (to && g_route)
            snprintf(g_route, 65, "%s", json_string_value(to));
        free(text);
        return SL_TR_KEEP;
    }
    case T_CAST: {
        const char *key;
        json_t *ty;
        json_object_foreach(json_object_get(cfg, "spec"), key, ty)
        {
            json_t *p = parent_of(*v, key, 0, &last);
            if (p && cast(p, last, json_string_value(ty), why, whylen) < 0)
                return SL_TR_FAIL;
        }
        return SL_TR_KEEP;
    }
    }
    return SL_TR_KEEP;
}

enum sl_tr_result sl_transforms_apply(const struct sl_transforms *t, json_t **value,
                                      const struct sl_expr_rec *r, char *why, size_t whylen)
{
    for (size_t i = 0; t && i < t->n; i++) {
        char msg[256] = "";
        enum sl_tr_result res = one(&t->v[i], value, r, msg, sizeof(msg));
        if (res == SL_TR_FAIL)
            snprintf(why, whylen, "transforms[%zu] %s: %s", i, g_names[t->v[i].k], msg);
        if (res != SL_TR_KEEP)
            return res;
    }
    return SL_TR_KEEP;
}

int sl_transforms_route(const struct sl_transforms *t)
{
    return t && t->routes;
}

enum sl_tr_result sl_transforms_apply_routed(const struct sl_transforms *t, const uint8_t *mp,
                                             size_t len, const struct sl_expr_rec *r,
                                             struct sl_buf *out, char *route, char *why,
                                             size_t whylen)
{
    route[0] = 0;
    g_route = route;
    enum sl_tr_result res = sl_transforms_apply_mp(t, mp, len, r, out, why, whylen);
    g_route = NULL;
    return res;
}

enum sl_tr_result sl_transforms_apply_mp_tree(const struct sl_transforms *t, const uint8_t *mp,
                                              size_t len, const struct sl_expr_rec *r,
                                              struct sl_buf *out, char *why, size_t whylen)
{
    sl_buf_reset(out);
    const uint8_t *p = mp;
    json_t *v = sl_mp_to_jansson(&p, mp + len, 128);
    if (!v) {
        snprintf(why, whylen, "the payload cannot be decoded for the transforms");
        return SL_TR_FAIL;
    }
    enum sl_tr_result res = sl_transforms_apply(t, &v, r, why, whylen);
    if (res == SL_TR_KEEP && (sl_jansson_to_mp(v, out, 128) < 0 || out->failed)) {
        res = SL_TR_FAIL;
        snprintf(why, whylen, "the transformed record cannot be encoded");
    }
    json_decref(v);
    return res;
}

enum sl_tr_result sl_transforms_apply_mp(const struct sl_transforms *t, const uint8_t *mp,
                                         size_t len, const struct sl_expr_rec *r,
                                         struct sl_buf *out, char *why, size_t whylen)
{
    if (t && t->fast) {
        enum sl_tr_fast f = sl_tr_fast_apply(t, mp, len, r, out);
        if (f != SL_TRF_OTHER)
            return f == SL_TRF_KEEP ? SL_TR_KEEP : SL_TR_DROP;
    }
    return sl_transforms_apply_mp_tree(t, mp, len, r, out, why, whylen);
}
