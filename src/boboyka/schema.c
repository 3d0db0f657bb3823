#include "boboyka/schema.h"

#include "formats/json_mp.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#define MAX_DEPTH 64

enum ftype { T_STR, T_INT, T_MS, T_NUM, T_OBJ, T_ENUM };

struct field {
    const char *name;
    enum ftype type;
    int nullable;
    const char *const *choices; /* T_ENUM */
    const char *choice_list;    /* for messages */
};

static const char *const st_build[] = {"queued", "running", "succeeded", "failed", NULL};
static const char *const st_queue[] = {"waiting", "processing", "done", NULL};
static const char *const st_health[] = {"healthy", "degraded", "unhealthy", NULL};

static const struct field f_build[] = {
    {"project_id", T_STR, 0, NULL, NULL},
    {"build_id", T_STR, 0, NULL, NULL},
    {"status", T_ENUM, 0, st_build, "queued, running, succeeded, failed"},
    {"agent_id", T_STR, 0, NULL, NULL},
    {"started_at_ms", T_MS, 0, NULL, NULL},
    {"completed_at_ms", T_MS, 0, NULL, NULL},
    {"output_url", T_STR, 0, NULL, NULL},
    {NULL, 0, 0, NULL, NULL},
};
static const struct field f_queue[] = {
    {"queue_id", T_STR, 0, NULL, NULL},
    {"project_id", T_STR, 0, NULL, NULL},
    {"priority", T_INT, 0, NULL, NULL},
    {"status", T_ENUM, 0, st_queue, "waiting, processing, done"},
    {"enqueued_at_ms", T_MS, 0, NULL, NULL},
    {"dequeued_at_ms", T_MS, 1, NULL, NULL},
    {NULL, 0, 0, NULL, NULL},
};
static const struct field f_health[] = {
    {"agent_id", T_STR, 0, NULL, NULL},
    {"status", T_ENUM, 0, st_health, "healthy, degraded, unhealthy"},
    {"cpu_pct", T_NUM, 0, NULL, NULL},
    {"memory_mb", T_INT, 0, NULL, NULL},
    {"checked_at_ms", T_MS, 0, NULL, NULL},
    {NULL, 0, 0, NULL, NULL},
};
static const struct field f_audit[] = {
    {"agent_id", T_STR, 0, NULL, NULL}, {"event", T_STR, 0, NULL, NULL},
    {"actor", T_STR, 0, NULL, NULL},    {"timestamp_ms", T_MS, 0, NULL, NULL},
    {"metadata", T_OBJ, 0, NULL, NULL}, {NULL, 0, 0, NULL, NULL},
};

static const struct {
    const char *name, *table;
    const struct field *fields;
} g_types[SL_BBK_NTYPES] = {
    {"project_build", "project_builds", f_build},
    {"build_queue_item", "build_queue", f_queue},
    {"agent_health", "agent_health", f_health},
    {"audit_log", "agent_audit_log", f_audit},
};

#define TYPE_LIST "project_build, build_queue_item, agent_health, audit_log"
#define TAG SL_BBK_TAG

const char *sl_bbk_type_name(int type)
{
    return type >= 0 && type < SL_BBK_NTYPES ? g_types[type].name : "";
}

const char *sl_bbk_table(int type)
{
    return type >= 0 && type < SL_BBK_NTYPES ? g_types[type].table : "";
}

int sl_bbk_type_find(const char *name, size_t len)
{
    for (int i = 0; i < SL_BBK_NTYPES; i++)
        if (strlen(g_types[i].name) == len && memcmp(g_types[i].name, name, len) == 0)
            return i;
    return -1;
}

#define bad(err, ...) sl_err_set(err, SL_E_INVAL, "invalid_event", __VA_ARGS__)

static int check_field(const struct field *f, const json_t *v, struct sl_err *err)
{
    if (json_is_null(v)) /* only nullable fields get here */
        return 0;
    switch (f->type) {
    case T_STR:
        return json_is_string(v) ? 0 : bad(err, "data.%s: must be a string", f->name);
    case T_INT:
        return json_is_integer(v) ? 0 : bad(err, "data.%s: must be an integer", f->name);
    case T_MS:
        if (!json_is_integer(v) || json_integer_value(v) < 0)
            return bad(err, "data.%s: must be epoch milliseconds (an integer >= 0)", f->name);
        return 0;
    case T_NUM:
        return json_is_number(v) ? 0 : bad(err, "data.%s: must be a number", f->name);
    case T_OBJ:
        return json_is_object(v) ? 0 : bad(err, "data.%s: must be an object", f->name);
    case T_ENUM:
        if (json_is_string(v))
            for (const char *const *c = f->choices; *c; c++)
                if (strcmp(*c, json_string_value(v)) == 0)
                    return 0;
        return bad(err, "data.%s: must be one of %s", f->name, f->choice_list);
    }
    return 0;
}

/* json_t -> MessagePack with the encodings sl_json_to_mp uses. */
static int mp_value(const json_t *v, struct sl_buf *b, int depth)
{
    if (depth > MAX_DEPTH)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        sl_mp_write_map(b, (uint32_t)json_object_size(v));
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            sl_mp_write_str(b, k, strlen(k));
            if (mp_value(m, b, depth + 1) < 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        sl_mp_write_array(b, (uint32_t)json_array_size(v));
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) if (mp_value(m, b, depth + 1) < 0) return -1;
        return 0;
    }
    case JSON_STRING:
        return sl_mp_write_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return sl_mp_write_int(b, json_integer_value(v));
    case JSON_REAL:
        return isfinite(json_real_value(v)) ? sl_mp_write_double(b, json_real_value(v)) : -1;
    case JSON_TRUE:
        return sl_mp_write_bool(b, 1);
    case JSON_FALSE:
        return sl_mp_write_bool(b, 0);
    default:
        return sl_mp_write_nil(b);
    }
}

void sl_bbk_event_release(struct sl_bbk_event *ev)
{
    sl_buf_release(&ev->payload);
}

int sl_bbk_parse(const char *body, size_t len, uint64_t now_ms, struct sl_bbk_event *ev,
                 struct sl_err *err)
{
    memset(ev, 0, sizeof(*ev));
    ev->type = -1;
    sl_buf_init(&ev->payload, 0);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return sl_err_set(err, SL_E_INVAL, "invalid_json", "invalid JSON at byte %d: %s",
                          je.position, je.text);
    int rc = SL_E_INVAL;
    if (!json_is_object(root)) {
        sl_err_set(err, SL_E_INVAL, "invalid_event",
                   "body: must be an object {\"record_type\", \"data\"}");
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v)
    {
        if (strcmp(k, "record_type") != 0 && strcmp(k, "data") != 0) {
            bad(err, "%s: unknown field (expected record_type and data)", k);
            goto out;
        }
    }
    const json_t *rt = json_object_get(root, "record_type");
    if (!rt) {
        bad(err, "record_type: required, one of %s", TYPE_LIST);
        goto out;
    }
    int t =
        json_is_string(rt) ? sl_bbk_type_find(json_string_value(rt), json_string_length(rt)) : -1;
    if (t < 0) {
        bad(err, "record_type: must be one of %s", TYPE_LIST);
        goto out;
    }
    json_t *data = json_object_get(root, "data");
    if (!json_is_object(data)) {
        bad(err, "data: %s", data ? "must be an object" : "required (an object)");
        goto out;
    }
    if (json_object_get(data, TAG)) {
        bad(err, "data.%s: reserved (Sluice sets it)", TAG);
        goto out;
    }
    for (const struct field *f = g_types[t].fields; f->name; f++) {
        const json_t *fv = json_object_get(data, f->name);
        if (fv && json_is_null(fv) && !f->nullable) { /* an SDK's None default: absent */
            json_object_del(data, f->name);
            continue;
        }
        if (fv && check_field(f, fv, err) < 0)
            goto out;
    }
    if (t == SL_BBK_AUDIT && !json_object_get(data, "timestamp_ms"))
        json_object_set_new(data, "timestamp_ms", json_integer((json_int_t)now_ms));
    /* The stored map: the data's members, then the tag (the mirror body is made from it later,
     * and only when dual-write is on: sl_bbk_payload_data_json). */
    sl_mp_write_map(&ev->payload, (uint32_t)json_object_size(data) + 1);
    ev->shape = 1469598103934665603ull; /* FNV-1a over the names, each with its NUL */
    json_object_foreach(data, k, v)
    {
        for (const char *c = k;; c++) {
            ev->shape = (ev->shape ^ (uint8_t)*c) * 1099511628211ull;
            if (!*c)
                break;
        }
        sl_mp_write_str(&ev->payload, k, strlen(k));
        if (mp_value(v, &ev->payload, 1) < 0) {
            bad(err, "data.%s: nested deeper than 64 levels", k);
            goto out;
        }
    }
    sl_mp_write_str(&ev->payload, TAG, strlen(TAG));
    sl_mp_write_str(&ev->payload, g_types[t].name, strlen(g_types[t].name));
    if (ev->payload.failed) {
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        rc = SL_E_NOMEM;
        goto out;
    }
    ev->type = t;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* Walks the top-level map: calls fn for each member (key, value bytes). */
static int walk(const uint8_t *mp, size_t len,
                int (*fn)(const char *k, uint32_t kl, const uint8_t *v, size_t vl, void *arg),
                void *arg)
{
    const uint8_t *p = mp, *end = mp + len;
    uint32_t n;
    if (sl_mp_read_map(&p, end, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(&p, end, &k, &kl) < 0)
            return -1;
        long vl = sl_mp_skip(p, (size_t)(end - p), MAX_DEPTH + 2);
        if (vl < 0)
            return -1;
        int r = fn(k, kl, p, (size_t)vl, arg);
        if (r != 0)
            return r;
        p += vl;
    }
    return 0;
}

static int is_tag(const char *k, uint32_t kl)
{
    return kl == sizeof(TAG) - 1 && memcmp(k, TAG, kl) == 0;
}

static int find_type(const char *k, uint32_t kl, const uint8_t *v, size_t vl, void *arg)
{
    if (!is_tag(k, kl))
        return 0;
    const char *s;
    uint32_t sn;
    const uint8_t *p = v;
    *(int *)arg = sl_mp_read_str(&p, v + vl, &s, &sn) == 0 ? sl_bbk_type_find(s, sn) : -1;
    return 1;
}

int sl_bbk_payload_type(const uint8_t *mp, size_t len)
{
    int t = -1;
    return walk(mp, len, find_type, &t) < 0 ? -1 : t;
}

struct json_out {
    struct sl_buf *out;
    int first;
};

static int member_json(const char *k, uint32_t kl, const uint8_t *v, size_t vl, void *arg)
{
    struct json_out *o = arg;
    if (is_tag(k, kl))
        return 0;
    if (!o->first)
        sl_buf_putc(o->out, ',');
    o->first = 0;
    sl_buf_json_str(o->out, k, kl);
    sl_buf_putc(o->out, ':');
    size_t used;
    struct sl_jerr je;
    return sl_mp_to_json(v, vl, &used, o->out, MAX_DEPTH + 2, &je) < 0 ? -1 : 0;
}

int sl_bbk_payload_data_json(const uint8_t *mp, size_t len, struct sl_buf *out)
{
    struct json_out o = {out, 1};
    size_t start = out->len;
    sl_buf_putc(out, '{');
    if (walk(mp, len, member_json, &o) != 0) {
        out->len = start;
        return -1;
    }
    sl_buf_putc(out, '}');
    return out->failed ? -1 : 0;
}
