#include "pipeline/pipeline.h"

#include "core/log.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "engine/meta.h"
#include "pipeline/yamlj.h"
#include "strand/strand.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define HASH_KEY "sluice.pipeline.hash" /* connector_state: the definition it was made from */
#define FILE_KEY "sluice.pipeline:"     /* connector_state: + the file's path = 1 */

struct pconn {
    char *name;
    int inbound;
    json_t *body; /* for sl_registry_create */
    uint64_t hash;
};

struct sl_pipeline {
    char *file;
    const char *by; /* managed_by: "pipeline <file>" (kept for the process's life) */
    struct pconn *v;
    size_t n;
};

/* ---- messages ---- */

struct ctx {
    const char *file;
    struct sl_ymarks marks;
    struct sl_buf *msgs;
    int errors;
};

static void say(struct ctx *c, int warning, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(struct ctx *c, int warning, const char *path, const char *fmt, ...)
{
    const struct sl_ymark *m = sl_ymarks_find(&c->marks, path);
    char text[1200];
    int n = snprintf(text, sizeof(text), "%s%s%s", warning ? "warning: " : "", path,
                     path[0] ? ": " : "");
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < sizeof(text))
        vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *ch = text; *ch; ch++) /* names from the file stay on one line */
        if ((unsigned char)*ch < 0x20)
            *ch = '?';
    sl_buf_printf(c->msgs, "%s:%d:%d: %s\n", c->file, m ? m->line : 1, m ? m->col : 1, text);
    if (!warning)
        c->errors++;
}

/* Levenshtein distance, for "nearest known name". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t d[65], prev;
    for (size_t j = 0; j <= lb; j++)
        d[j] = j;
    for (size_t i = 1; i <= la; i++) {
        prev = d[0];
        d[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = d[j];
            size_t sub = prev + (a[i - 1] != b[j - 1]);
            size_t best = d[j] + 1 < d[j - 1] + 1 ? d[j] + 1 : d[j - 1] + 1;
            d[j] = sub < best ? sub : best;
            prev = cur;
        }
    }
    return d[lb];
}

static const char *nearest_kind(const char *name)
{
    const char *best = NULL;
    size_t bd = strlen(name) / 2 > 2 ? strlen(name) / 2 + 1 : 3; /* further: no suggestion */
    for (const struct sl_connector *const *k = sl_kinds_all(); *k; k++) {
        size_t d = distance(name, (*k)->name);
        if (d < bd) {
            bd = d;
            best = (*k)->name;
        }
        for (const char *const *a = (*k)->aliases; a && *a; a++)
            if ((d = distance(name, *a)) < bd) {
                bd = d;
                best = *a;
            }
    }
    return best;
}

/* ---- one connector ---- */

static int allowed(const char *key, const char *const *keys)
{
    for (; *keys; keys++)
        if (strcmp(key, *keys) == 0)
            return 1;
    return 0;
}

static uint64_t body_hash(const json_t *body)
{
    char *s = json_dumps(body, JSON_SORT_KEYS | JSON_COMPACT);
    uint64_t h = 1469598103934665603ull;
    for (const char *c = s; c && *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    free(s);
    return h;
}

/* Validates the kind's config the way a create would, reporting at the field's line. */
static void check_config(struct ctx *c, const char *path, const struct sl_connector *k,
                         const json_t *cfg)
{
    struct sl_err err = {0};
    json_t *v = sl_kind_validate(k, cfg, &err);
    if (v) {
        json_decref(v);
        return;
    }
    /* "config.a.b: message" -> path.config.a.b */
    const char *colon = strstr(err.msg, ": ");
    char full[512];
    const char *msg = err.msg;
    if (colon && strncmp(err.msg, "config.transforms", 17) == 0) { /* at the entry's level */
        snprintf(full, sizeof(full), "%s.%.*s", path, (int)(colon - err.msg - 7), err.msg + 7);
        msg = colon + 2;
    } else if (colon && strncmp(err.msg, "config", 6) == 0 &&
               !memchr(err.msg, ' ', (size_t)(colon - err.msg))) {
        snprintf(full, sizeof(full), "%s.%.*s", path, (int)(colon - err.msg), err.msg);
        msg = colon + 2;
    } else {
        snprintf(full, sizeof(full), "%s.config", path);
    }
    const struct sl_ymark *m = sl_ymarks_find(&c->marks, full);
    if (m && m->secret)
        say(c, 0, full, "not valid (the value comes from a ${file:} secret and is not shown)");
    else
        say(c, 0, full, "%s", msg);
}

static const char *const g_source_keys[] = {"connector",    "topic",       "config", "transforms",
                                            "topic_config", "description", NULL};
static const char *const g_sink_keys[] = {"connector",  "topics",     "consumer_group", "config",
                                          "rate_limit", "transforms", "description",    NULL};

static void one(struct ctx *c, struct sl_pipeline *p, const char *side, const char *name,
                const json_t *def)
{
    int inbound = strcmp(side, "sources") == 0;
    char path[400];
    snprintf(path, sizeof(path), "%s.%s", side, name);
    if (!json_is_object(def)) {
        say(c, 0, path, "must be a mapping (connector, %s, config, ...)",
            inbound ? "topic" : "topics");
        return;
    }
    const char *key;
    json_t *val;
    char sub[512];
    json_object_foreach((json_t *)def, key, val)
    {
        if (!allowed(key, inbound ? g_source_keys : g_sink_keys)) {
            snprintf(sub, sizeof(sub), "%s.%s", path, key);
            say(c, 0, sub, "unknown field (a %s has %s)", inbound ? "source" : "sink",
                inbound ? "connector, topic, config, transforms, topic_config"
                        : "connector, topics, consumer_group, config, rate_limit, transforms");
        }
    }
    if (strlen(name) == 0 || strlen(name) > 200)
        say(c, 0, path, "a name of 1 to 200 characters");
    const json_t *conn = json_object_get(def, "connector");
    snprintf(sub, sizeof(sub), "%s.connector", path);
    if (!json_is_string(conn)) {
        say(c, 0, conn ? sub : path,
            "connector: required, the kind's name (sluice connectors lists them)");
        return;
    }
    const char *kname = json_string_value(conn);
    const struct sl_connector *k = sl_kind_find(kname);
    if (!k) {
        const char *near = nearest_kind(kname);
        say(c, 0, sub, "connector '%.64s' is not available in this build%s%s%s", kname,
            near ? " (nearest: " : "", near ? near : "", near ? ")" : "");
        return;
    }
    if (k->unavailable) {
        say(c, 0, sub, "connector '%.64s' is not available in this build: %s", kname,
            k->unavailable);
        return;
    }
    if ((k->direction == SL_INBOUND) != inbound) {
        say(c, 0, sub, "connector '%.64s' is a %s: it belongs under %s", kname,
            inbound ? "sink" : "source", inbound ? "sinks" : "sources");
        return;
    }
    if (json_object_get(def, "topic_config")) {
        snprintf(sub, sizeof(sub), "%s.topic_config", path);
        say(c, 1, sub, "ignored (a strand is created on its first write and has no partitions)");
    }
    const json_t *cfg_in = json_object_get(def, "config");
    snprintf(sub, sizeof(sub), "%s.config", path);
    if (cfg_in && !json_is_object(cfg_in)) {
        say(c, 0, sub, "must be a mapping");
        return;
    }
    json_t *cfg = cfg_in ? json_deep_copy(cfg_in) : json_object();
    json_t *strands = NULL;
    const json_t *tr = json_object_get(def, "transforms");
    if (tr && json_object_get(cfg, "transforms")) {
        snprintf(sub, sizeof(sub), "%s.transforms", path);
        say(c, 0, sub, "give them once: transforms, or config.transforms");
    } else if (tr) { /* the framework runs them: config.transforms */
        json_object_set(cfg, "transforms", (json_t *)tr);
    }
    if (inbound) {
        const json_t *topic = json_object_get(def, "topic");
        snprintf(sub, sizeof(sub), "%s.topic", path);
        if (topic && !json_is_string(topic))
            say(c, 0, sub, "must be a strand name");
        else if (topic && json_object_get(cfg, "strand"))
            say(c, 0, sub, "give the strand once: topic, or config.strand");
        else if (topic)
            json_object_set(cfg, "strand", (json_t *)topic);
    } else {
        const json_t *topics = json_object_get(def, "topics");
        snprintf(sub, sizeof(sub), "%s.topics", path);
        if (!topics) /* as a connector created without strands: every strand */
            strands = json_pack("[s]", "*");
        else if (json_is_string(topics))
            strands = json_pack("[O]", topics);
        else if (json_is_array(topics) && json_array_size(topics) > 0)
            strands = json_deep_copy(topics);
        else
            say(c, 0, sub, "must be a strand name or a list of them");
        size_t i;
        json_t *t;
        json_array_foreach(strands, i, t)
        {
            char tp[560];
            snprintf(tp, sizeof(tp), "%s[%zu]", sub, i);
            if (!json_is_string(t) ||
                (strcmp(json_string_value(t), "*") != 0 &&
                 !sl_strand_name_valid(json_string_value(t), json_string_length(t))))
                say(c, 0, json_is_array(topics) ? tp : sub,
                    "must be a strand name ([a-z0-9][a-z0-9._-]{0,63}) or \"*\"");
        }
        const json_t *rl = json_object_get(def, "rate_limit");
        if (rl && json_object_get(cfg, "rate_limit")) {
            snprintf(sub, sizeof(sub), "%s.rate_limit", path);
            say(c, 0, sub, "give it once: rate_limit, or config.rate_limit");
        } else if (rl) {
            json_object_set(cfg, "rate_limit", (json_t *)rl);
        }
        const json_t *cg = json_object_get(def, "consumer_group");
        snprintf(sub, sizeof(sub), "%s.consumer_group", path);
        if (cg && !json_is_string(cg))
            say(c, 0, sub, "must be a string");
    }
    int before = c->errors;
    check_config(c, path, k, cfg);
    if (c->errors == before) {
        json_t *body = json_pack("{s:s, s:s, s:O}", "name", name, "kind", k->name, "config", cfg);
        if (strands)
            json_object_set(body, "strands", strands);
        struct pconn *v = realloc(p->v, (p->n + 1) * sizeof(*v));
        if (body && v) {
            p->v = v;
            p->v[p->n++] = (struct pconn){strdup(name), inbound, body, body_hash(body)};
        } else {
            json_decref(body);
        }
    }
    json_decref(cfg);
    json_decref(strands);
}

/* ---- the file ---- */

void sl_pipeline_free(struct sl_pipeline *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->v[i].name);
        json_decref(p->v[i].body);
    }
    free(p->v);
    free(p->file);
    free(p);
}

int sl_pipeline_load(const char *path, struct sl_pipeline **out, struct sl_buf *msgs)
{
    *out = NULL;
    size_t len = 0;
    char *text = sl_read_file(path, SL_YAML_MAX_BYTES, &len);
    if (!text) {
        sl_buf_printf(msgs, "%s: %s\n", path,
                      errno == EFBIG ? "larger than 4 MiB" : strerror(errno));
        return 1;
    }
    int n = sl_pipeline_parse(path, text, len, out, msgs);
    free(text);
    return n;
}

int sl_pipeline_parse(const char *path, const char *text, size_t len, struct sl_pipeline **out,
                      struct sl_buf *msgs)
{
    *out = NULL;
    struct ctx c = {.file = path, .msgs = msgs};
    char why[2100];
    json_t *doc = sl_yaml_to_json(text, len, &c.marks, why, sizeof(why));
    if (!doc) {
        int n = 0;
        for (char *line = why, *nl; line; line = nl) {
            if ((nl = strchr(line, '\n')))
                *nl++ = 0;
            sl_buf_printf(msgs, "%s:%s\n", path, line);
            n++;
        }
        sl_ymarks_free(&c.marks);
        return n;
    }
    struct sl_pipeline *p = calloc(1, sizeof(*p));
    char abs[PATH_MAX];
    if (!p || !(p->file = strdup(realpath(path, abs) ? abs : path))) {
        free(p);
        json_decref(doc);
        sl_ymarks_free(&c.marks);
        sl_buf_printf(msgs, "%s: out of memory\n", path);
        return 1;
    }
    if (!json_is_object(doc)) {
        say(&c, 0, "", "a pipeline file is a mapping of version, sources, sinks and settings");
    } else {
        static const char *const top[] = {"version",  "sources", "sinks",
                                          "settings", "broker",  NULL};
        const char *key;
        json_t *val;
        json_object_foreach(doc, key, val)
        {
            if (strcmp(key, "secrets") == 0)
                say(&c, 0, key,
                    "secret providers are not available in this build: use ${file:/path} or "
                    "${VAR} in the values");
            else if (!allowed(key, top))
                say(&c, 0, key,
                    "unknown field (a pipeline file has version, sources, sinks, "
                    "settings, broker)");
        }
        const json_t *ver = json_object_get(doc, "version");
        if (ver &&
            !(json_is_string(ver) && (strcmp(json_string_value(ver), "1.0") == 0 ||
                                      strcmp(json_string_value(ver), "1") == 0)) &&
            !(json_is_number(ver) && json_number_value(ver) == 1.0))
            say(&c, 0, "version", "must be \"1.0\"");
        if (json_object_get(doc, "broker"))
            say(&c, 1, "broker",
                "ignored: Sluice keeps its strands itself, there is no broker to connect to");
        const json_t *settings = json_object_get(doc, "settings");
        if (settings && !json_is_object(settings))
            say(&c, 0, "settings", "must be a mapping");
        json_object_foreach((json_t *)settings, key, val)
        {
            char sp[300];
            snprintf(sp, sizeof(sp), "settings.%s", key);
            say(&c, 1, sp, "ignored (strands need no topic settings)");
        }
        for (int side = 0; side < 2; side++) {
            const char *sname = side ? "sinks" : "sources";
            const json_t *m = json_object_get(doc, sname);
            if (m && !json_is_object(m)) {
                say(&c, 0, sname, "must be a mapping of names to %s", sname);
                continue;
            }
            json_object_foreach((json_t *)m, key, val)
            {
                if (side && json_object_get(json_object_get(doc, "sources"), key)) {
                    char sp[300];
                    snprintf(sp, sizeof(sp), "sinks.%s", key);
                    say(&c, 0, sp, "the name '%s' is also a source's (connector names are unique)",
                        key);
                    continue;
                }
                one(&c, p, sname, key, val);
            }
        }
        if (!json_object_get(doc, "sources") && !json_object_get(doc, "sinks"))
            say(&c, 1, "", "no sources and no sinks");
    }
    json_decref(doc);
    sl_ymarks_free(&c.marks);
    if (c.errors) {
        sl_pipeline_free(p);
        return c.errors;
    }
    *out = p;
    return 0;
}

/* ---- applying ---- */

static const char *manager_of(const char *file)
{
    static struct {
        pthread_mutex_t mu;
        char *v[256];
        size_t n;
    } g = {.mu = PTHREAD_MUTEX_INITIALIZER};
    char want[PATH_MAX + 16];
    snprintf(want, sizeof(want), "pipeline %s", file);
    pthread_mutex_lock(&g.mu);
    const char *out = NULL;
    for (size_t i = 0; i < g.n && !out; i++)
        if (strcmp(g.v[i], want) == 0)
            out = g.v[i];
    if (!out && g.n < 256 && (g.v[g.n] = strdup(want)))
        out = g.v[g.n++];
    pthread_mutex_unlock(&g.mu);
    return out ? out : "a pipeline file";
}

static int owned_by(struct sl_meta *meta, const char *id, const char *fkey)
{
    uint64_t v = 0;
    return sl_meta_get_state(meta, id, fkey, &v) == 0 && v == 1;
}

int sl_pipeline_apply(struct sl_pipeline *p, struct sl_registry *reg, struct sl_store *store,
                      struct sl_buf *msgs)
{
    struct sl_meta *meta = sl_registry_meta(reg);
    char fkey[PATH_MAX + 32];
    snprintf(fkey, sizeof(fkey), "%s%s", FILE_KEY, p->file);
    p->by = manager_of(p->file);
    int rc = 0;
    for (size_t i = 0; i < p->n; i++) {
        struct pconn *pc = &p->v[i];
        char id[16];
        struct sl_err err = {0};
        json_t *got = NULL;
        if (sl_registry_lookup(reg, pc->name, id) == 0) {
            if (!owned_by(meta, id, fkey)) {
                sl_buf_printf(msgs,
                              "%s: %s: the name is taken by connector %s, which this file did not "
                              "create: rename one of them\n",
                              p->file, pc->name, id);
                rc = SL_E_CONFLICT;
                continue;
            }
            uint64_t h = 0;
            sl_meta_get_state(meta, id, HASH_KEY, &h);
            if (h == pc->hash) { /* unchanged: left running, positions kept */
                sl_registry_manage(reg, id, p->by, NULL, NULL, NULL);
                continue;
            }
            sl_registry_manage(reg, id, NULL, NULL, NULL, NULL);
            json_t *patch = json_pack("{s:O}", "config", json_object_get(pc->body, "config"));
            if (!pc->inbound)
                json_object_set(patch, "strands", json_object_get(pc->body, "strands"));
            got = sl_registry_patch(reg, id, patch, &err);
            json_decref(patch);
        } else {
            got = sl_registry_create(reg, pc->body, &err);
            if (got)
                snprintf(id, sizeof(id), "%s", json_string_value(json_object_get(got, "id")));
        }
        if (!got) {
            sl_buf_printf(msgs, "%s: %s: %s\n", p->file, pc->name, err.msg);
            rc = err.code ? err.code : SL_E_INVAL;
            continue;
        }
        sl_registry_pin_start(reg, store, got);
        json_decref(got);
        sl_meta_set_state(meta, id, fkey, 1, NULL);
        sl_meta_set_state(meta, id, HASH_KEY, pc->hash, NULL);
        sl_registry_manage(reg, id, p->by, NULL, NULL, NULL);
        sl_info("pipeline %s: connector %s (%s) applied", p->file, pc->name, id);
    }
    /* the file's connectors that it no longer names */
    json_t *all = sl_registry_list(reg);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(all, "connectors"), i, c)
    {
        const char *id = json_string_value(json_object_get(c, "id"));
        const char *name = json_string_value(json_object_get(c, "name"));
        if (!id || !owned_by(meta, id, fkey))
            continue;
        int named = 0;
        for (size_t j = 0; j < p->n && !named; j++)
            named = strcmp(p->v[j].name, name) == 0;
        if (named)
            continue;
        sl_registry_manage(reg, id, NULL, NULL, NULL, NULL);
        struct sl_err err = {0};
        if (sl_registry_delete(reg, id, &err) == 0)
            sl_info("pipeline %s: connector %s (%s) removed (no longer in the file)", p->file, name,
                    id);
        else
            sl_buf_printf(msgs, "%s: %s: cannot be removed: %s\n", p->file, name, err.msg);
    }
    json_decref(all);
    sl_registry_changed(reg);
    return rc;
}

static int yaml_name(const char *n)
{
    size_t l = strlen(n);
    return (l > 5 && strcmp(n + l - 5, ".yaml") == 0) || (l > 4 && strcmp(n + l - 4, ".yml") == 0);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_locked(const char *path, struct sl_registry *reg, struct sl_store *store,
                      struct sl_buf *msgs);

int sl_pipelines_run(const char *path, struct sl_registry *reg, struct sl_store *store,
                     struct sl_buf *msgs)
{
    /* SIGHUP and POST /v1/pipelines/reload may come together: one apply at a time */
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&mu);
    int bad = run_locked(path, reg, store, msgs);
    pthread_mutex_unlock(&mu);
    return bad;
}

static int run_locked(const char *path, struct sl_registry *reg, struct sl_store *store,
                      struct sl_buf *msgs)
{
    char *files[256];
    size_t n = 0;
    struct stat st;
    if (stat(path, &st) != 0) {
        sl_buf_printf(msgs, "%s: %s\n", path, strerror(errno));
        return 1;
    }
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) && n < 256)
            if (e->d_name[0] != '.' && yaml_name(e->d_name)) {
                char full[PATH_MAX];
                snprintf(full, sizeof(full), "%s/%s", path, e->d_name);
                if ((files[n] = strdup(full)))
                    n++;
            }
        if (d)
            closedir(d);
        qsort(files, n, sizeof(files[0]), cmp_str);
    } else if ((files[0] = strdup(path))) {
        n = 1;
    }
    /* every file valid before any is applied: an invalid file starts nothing */
    struct sl_pipeline *p[256] = {0};
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += sl_pipeline_load(files[i], &p[i], msgs) != 0;
    for (size_t i = 0; i < n && !bad; i++)
        bad += sl_pipeline_apply(p[i], reg, store, msgs) != 0;
    for (size_t i = 0; i < n; i++) {
        sl_pipeline_free(p[i]);
        free(files[i]);
    }
    return bad;
}
