#include "engine/registry.h"

#include "core/buf.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "engine/meta.h"
#include "strand/store.h"
#include "strand/strand.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define MAX_NAME 256
#define LAG_UNKNOWN UINT64_MAX /* no worker has measured it yet: null in answers */
#define MAX_STRANDS 64

struct conn {
    char id[16];
    char *name;
    const struct sl_connector *kind;
    int enabled;
    uint64_t created_at_ms;
    json_t *config;  /* validated, defaults filled, secrets in clear */
    json_t *strands; /* outbound: followed strands */
    uint64_t event_count, last_event_ms;
    int dirty; /* counters not yet in the metadata store */
    double tokens;
    uint64_t refill_ns;
    uint64_t gen;
    /* delivery counters since start (outbound) */
    uint64_t delivered, failed, retried, dead_lettered, lag;
    uint64_t files_written, bytes_written; /* object_storage */
    int replay;                            /* dead-letter replay requested */
    int gave_up; /* after max_consecutive_failures; persisted as state "failed" */
    char *fail_msg;
    const char *breaker; /* "closed", "open", "half_open" (static strings) */
    const char *status;  /* inbound worker's state beyond running, e.g. "completed" (static) */
    char *soft_error;    /* inbound worker's last transient error (state stays running) */
    unsigned restarts;   /* automatic restarts in a row (reset once records flow again) */
    uint64_t gauges[SL_GAUGES_MAX]; /* a source's, in the order of its kind's gauge table */
    const char *managed_by;         /* sl_registry_manage (static), or NULL */
    sl_delivery_fn watch;
    void *watch_arg;
    int paused; /* POST .../pause: no worker, cursors kept (persisted as PAUSED_KEY) */
};

/* The connector_state key that remembers a pause across restarts. */
#define PAUSED_KEY "sluice.paused"

struct sl_registry {
    struct sl_meta *meta;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct conn **v;
    size_t n, cap;
    int stop;
    pthread_t flusher;
    int flusher_started;
    uint64_t gen; /* source of conn generations */
    void (*on_change)(void *arg);
    void *on_change_arg;
};

static void conn_free(struct conn *c)
{
    if (!c)
        return;
    free(c->name);
    free(c->fail_msg);
    free(c->soft_error);
    json_decref(c->config);
    json_decref(c->strands);
    free(c);
}

static const char *state_of(const struct conn *c)
{
    if (!c->enabled)
        return "disabled";
    if (c->paused)
        return "paused";
    if (c->gave_up)
        return "failed";
    if (c->status)
        return c->status;
    return sl_kind_runs(c->kind) ? "running" : "paused";
}

static const char *error_of(const struct conn *c)
{
    if (c->gave_up && c->enabled)
        return c->fail_msg;
    if (c->soft_error && c->enabled)
        return c->soft_error;
    /* Config-only kinds are stored and validated; their worker ships with a later issue. */
    return c->enabled && !sl_kind_runs(c->kind) ? "no worker for this kind in this build yet"
                                                : NULL;
}

/* An inbound kind with its own worker thread (the REST bridge is served by the HTTP threads). */
static int inbound_worker(const struct sl_connector *k)
{
    return k->direction == SL_INBOUND && !k->unavailable && k->source;
}

/* ---- audit capture: what the calling thread changed between begin and end ---- */

static __thread int t_capturing;
static __thread json_t *t_changes; /* made at the first change noted while capturing */

/* The part of a connector a change is about: who it is and how it is set up (secrets redacted),
 * not its counters. */
static json_t *audit_view(const struct conn *c)
{
    return json_pack("{s:s, s:s, s:b, s:b, s:o, s:o}", "name", c->name, "kind", c->kind->name,
                     "enabled", c->enabled, "paused", c->paused, "config",
                     sl_kind_redact(c->kind, c->config), "strands", json_deep_copy(c->strands));
}

/* Notes one change; before/after are new references (or NULL: created / deleted). */
static void audit_note(const char *id, json_t *before, json_t *after)
{
    if (!t_capturing || (!t_changes && !(t_changes = json_array()))) {
        json_decref(before);
        json_decref(after);
        return;
    }
    json_array_append_new(t_changes, json_pack("{s:s, s:o, s:o}", "id", id, "before",
                                               before ? before : json_null(), "after",
                                               after ? after : json_null()));
}

void sl_registry_audit_begin(void)
{
    json_decref(t_changes); /* nothing allocated here: every request of the hot path comes by */
    t_changes = NULL;
    t_capturing = 1;
}

json_t *sl_registry_audit_end(void)
{
    json_t *out = t_changes;
    t_changes = NULL;
    t_capturing = 0;
    return out;
}

static json_t *conn_json(const struct conn *c)
{
    json_t *strands = c->kind->direction == SL_OUTBOUND
                          ? json_deep_copy(c->strands)
                          : json_pack("[O]", json_object_get(c->config, "strand"));
    json_t *o =
        json_pack("{s:s, s:s, s:s, s:s, s:b, s:I, s:o, s:o, s:I, s:s, s:o, s:o}", "id", c->id,
                  "name", c->name, "kind", c->kind->name, "direction",
                  c->kind->direction == SL_INBOUND ? "inbound" : "outbound", "enabled", c->enabled,
                  "created_at_ms", (json_int_t)c->created_at_ms, "config",
                  sl_kind_redact(c->kind, c->config), "last_event_ms",
                  c->last_event_ms ? json_integer((json_int_t)c->last_event_ms) : json_null(),
                  "event_count", (json_int_t)c->event_count, "state", state_of(c), "last_error",
                  error_of(c) ? json_string(error_of(c)) : json_null(), "strands", strands);
    if (c->managed_by)
        json_object_set_new(o, "managed_by", json_string(c->managed_by));
    if (c->kind->direction == SL_OUTBOUND)
        json_object_set_new(
            o, "stats",
            json_pack("{s:I, s:I, s:I, s:I, s:o}", "delivered", (json_int_t)c->delivered, "failed",
                      (json_int_t)c->failed, "retried", (json_int_t)c->retried, "dead_lettered",
                      (json_int_t)c->dead_lettered, "lag",
                      c->lag == LAG_UNKNOWN ? json_null() : json_integer((json_int_t)c->lag)));
    if (c->kind->direction == SL_OUTBOUND)
        json_object_set_new(json_object_get(o, "stats"), "breaker",
                            json_string(c->breaker ? c->breaker : "closed"));
    if (c->kind->category && strcmp(c->kind->category, "storage") == 0)
        json_object_update_new(json_object_get(o, "stats"),
                               json_pack("{s:I, s:I}", "files_written",
                                         (json_int_t)c->files_written, "bytes_written",
                                         (json_int_t)c->bytes_written));
    const struct sl_gauge *g = c->kind->source ? c->kind->source->gauges : NULL;
    for (int k = 0; g && g[k].name && k < SL_GAUGES_MAX; k++) { /* a source's own numbers */
        if (!json_object_get(o, "stats"))
            json_object_set_new(o, "stats", json_object());
        json_object_set_new(json_object_get(o, "stats"), g[k].name,
                            json_integer((json_int_t)c->gauges[k]));
    }
    return o;
}

static int persist(struct sl_registry *r, const struct conn *c, struct sl_err *err)
{
    char *cfg = json_dumps(c->config, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *str = json_dumps(c->strands, JSON_COMPACT);
    struct sl_meta_connector m = {
        .id = c->id,
        .name = c->name,
        .kind = c->kind->name,
        .enabled = c->enabled,
        .created_at_ms = c->created_at_ms,
        .config_json = cfg,
        .strands_json = str,
        .event_count = c->event_count,
        .last_event_ms = c->last_event_ms,
        .state = state_of(c),
        .last_error = error_of(c),
    };
    int rc = cfg && str ? sl_meta_put_connector(r->meta, &m, err)
                        : sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    free(cfg);
    free(str);
    return rc;
}

static struct conn *find(struct sl_registry *r, const char *id, size_t *pos)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->v[i]->id, id) == 0) {
            if (pos)
                *pos = i;
            return r->v[i];
        }
    return NULL;
}

/* Connector names are unique, compared byte for byte (StreamHouse addresses connectors by name).
 * Returns the connector other than self that is called name, or NULL. Caller holds r->mu. */
static struct conn *find_name(struct sl_registry *r, const char *name, const struct conn *self)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i] != self && strcmp(r->v[i]->name, name) == 0)
            return r->v[i];
    return NULL;
}

static int managed(const struct conn *c, struct sl_err *err)
{
    return sl_err_set(err, SL_E_CONFLICT, "connector_managed",
                      "connector %s is managed by %s: change it there (only enabled can be "
                      "changed here)",
                      c->id, c->managed_by);
}

static int name_taken(const struct conn *other, struct sl_err *err)
{
    /* a long name is cut (on a UTF-8 boundary) so that the message keeps the other's id */
    size_t len = strlen(other->name);
    if (len > 96) {
        len = 96;
        while (len > 0 && ((unsigned char)other->name[len] & 0xC0) == 0x80)
            len--;
    }
    return sl_err_set(err, SL_E_CONFLICT, "connector_name_taken",
                      "name: a connector named '%.*s%s' already exists (id %s)", (int)len,
                      other->name, other->name[len] ? "..." : "", other->id);
}

static int push(struct sl_registry *r, struct conn *c)
{
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 16;
        struct conn **p = realloc(r->v, nc * sizeof(*p));
        if (!p)
            return -1;
        r->v = p;
        r->cap = nc;
    }
    r->v[r->n++] = c;
    return 0;
}

static int load_one(const struct sl_meta_connector *m, void *arg)
{
    struct sl_registry *r = arg;
    const struct sl_connector *k = sl_kind_find(m->kind);
    if (!k) {
        sl_warn("connector %s has unknown kind %s; skipped", m->id, m->kind);
        return 0;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        return SL_E_NOMEM;
    snprintf(c->id, sizeof(c->id), "%s", m->id);
    c->name = strdup(m->name);
    c->kind = k;
    c->enabled = m->enabled;
    c->created_at_ms = m->created_at_ms;
    c->config = json_loads(m->config_json, 0, NULL);
    c->strands = json_loads(m->strands_json, 0, NULL);
    c->event_count = m->event_count;
    c->last_event_ms = m->last_event_ms;
    c->gen = ++r->gen;
    c->lag = LAG_UNKNOWN;
    if (m->state && strcmp(m->state, "failed") == 0) {
        c->gave_up = 1;
        c->fail_msg = strdup(m->last_error ? m->last_error : "failed");
    }
    if (!c->name || !c->config || !c->strands) {
        conn_free(c);
        return SL_E_NOMEM;
    }
    /* stored by a version that allowed duplicate names: kept, but a rename is due */
    const struct conn *dup = find_name(r, c->name, NULL);
    if (dup)
        sl_warn("connectors %s and %s are both named '%.96s'; names are unique now: rename one "
                "(PATCH /v1/connectors/{id} {\"name\": ...})",
                dup->id, c->id, c->name);
    if (push(r, c) < 0) {
        conn_free(c);
        return SL_E_NOMEM;
    }
    return 0;
}

static void flush_counters(struct sl_registry *r)
{
    for (size_t i = 0; i < r->n; i++) {
        struct conn *c = r->v[i];
        if (!c->dirty)
            continue;
        struct sl_err err = {0};
        if (sl_meta_update_counters(r->meta, c->id, c->event_count, c->last_event_ms, &err) == 0)
            c->dirty = 0;
        else
            sl_warn("connector %s: %s", c->id, err.msg);
    }
}

/* Counters are rebuilt from the strands if lost, so they are written once a second, not per
 * event. */
static void *flusher_main(void *arg)
{
    struct sl_registry *r = arg;
    pthread_mutex_lock(&r->mu);
    while (!r->stop) {
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        dl.tv_sec += 1;
        pthread_cond_timedwait(&r->cv, &r->mu, &dl);
        flush_counters(r);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

int sl_registry_open(struct sl_registry **out, const char *dir, struct sl_err *err)
{
    struct sl_registry *r = calloc(1, sizeof(*r));
    if (!r)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    int rc = sl_meta_open(&r->meta, dir, err);
    if (rc == 0)
        rc = sl_meta_load_connectors(r->meta, load_one, r, err);
    for (size_t i = 0; rc == 0 && i < r->n; i++) {
        uint64_t v = 0;
        r->v[i]->paused = sl_meta_get_state(r->meta, r->v[i]->id, PAUSED_KEY, &v) == 0 && v;
    }
    if (rc == 0 && pthread_create(&r->flusher, NULL, flusher_main, r) != 0)
        rc = sl_err_sys(err, SL_E_IO, "start the counter flusher");
    else if (rc == 0)
        sl_thread_name(r->flusher, "sl-counters");
    if (rc) {
        sl_registry_close(r);
        return rc;
    }
    r->flusher_started = 1;
    *out = r;
    return 0;
}

void sl_registry_close(struct sl_registry *r)
{
    if (!r)
        return;
    if (r->flusher_started) {
        pthread_mutex_lock(&r->mu);
        r->stop = 1;
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->flusher, NULL);
    }
    if (r->meta)
        flush_counters(r);
    for (size_t i = 0; i < r->n; i++)
        conn_free(r->v[i]);
    free(r->v);
    sl_meta_close(r->meta);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r);
}

static void new_id(char *out, size_t n)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    uint8_t rnd[12];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        for (size_t i = 0; i < sizeof(rnd); i++)
            rnd[i] = (uint8_t)(sl_mono_ns() >> (i % 8));
    size_t len = n - 1 < sizeof(rnd) ? n - 1 : sizeof(rnd);
    for (size_t i = 0; i < len; i++)
        out[i] = alphabet[rnd[i] & 63];
    out[len] = 0;
}

static int check_name(const json_t *v, struct sl_err *err)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > MAX_NAME)
        return sl_err_set(err, SL_E_INVAL, "invalid_connector",
                          "name: must be a non-empty string of at most %d bytes", MAX_NAME);
    return 0;
}

static json_t *check_strands(const struct sl_connector *k, const json_t *v, struct sl_err *err)
{
    if (k->direction == SL_INBOUND) {
        sl_err_set(err, SL_E_INVAL, "invalid_connector",
                   "strands: an inbound connector writes to config.strand");
        return NULL;
    }
    /* "*" (or ["*"]): every strand, including strands created later */
    if ((json_is_string(v) && strcmp(json_string_value(v), "*") == 0) ||
        (json_array_size(v) == 1 && json_is_string(json_array_get(v, 0)) &&
         strcmp(json_string_value(json_array_get(v, 0)), "*") == 0))
        return json_pack("[s]", "*");
    size_t i;
    json_t *e;
    int ok = json_is_array(v) && json_array_size(v) > 0 && json_array_size(v) <= MAX_STRANDS;
    json_array_foreach(v, i, e) ok =
        ok && json_is_string(e) &&
        sl_strand_name_valid(json_string_value(e), json_string_length(e));
    if (!ok) {
        sl_err_set(err, SL_E_INVAL, "invalid_connector",
                   "strands: must be \"*\" (every strand) or a non-empty array of at most %d "
                   "strand names",
                   MAX_STRANDS);
        return NULL;
    }
    return json_deep_copy(v);
}

/* Top-level fields of a create (all) or a patch (no kind required). */
static int check_fields(const json_t *body, int patch, struct sl_err *err)
{
    if (!json_is_object(body))
        return sl_err_set(err, SL_E_INVAL, "invalid_connector", "body: must be a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "name") && strcmp(key, "kind") && strcmp(key, "config") &&
            strcmp(key, "enabled") && strcmp(key, "strands"))
            return sl_err_set(err, SL_E_INVAL, "invalid_connector",
                              "%.64s: unknown field (%s has name, kind, config, enabled and "
                              "strands)",
                              key, patch ? "a PATCH" : "a connector");
    }
    v = json_object_get(body, "enabled");
    if (v && !json_is_boolean(v))
        return sl_err_set(err, SL_E_INVAL, "invalid_connector", "enabled: must be a boolean");
    v = json_object_get(body, "config");
    if (v && !json_is_object(v) && !(json_is_null(v) && !patch))
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "config: must be a JSON object");
    return 0;
}

json_t *sl_registry_create(struct sl_registry *r, const json_t *body, struct sl_err *err)
{
    if (check_fields(body, 0, err) || check_name(json_object_get(body, "name"), err))
        return NULL;
    const json_t *kv = json_object_get(body, "kind");
    if (!json_is_string(kv)) {
        sl_err_set(err, SL_E_INVAL, "invalid_connector", "kind: required, a string");
        return NULL;
    }
    const struct sl_connector *k = sl_kind_find(json_string_value(kv));
    if (!k) {
        char known[160] = "";
        for (const struct sl_connector *const *x = sl_kinds_all(); *x; x++)
            snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                     known[0] ? ", " : "", (*x)->name);
        sl_err_set(err, SL_E_INVAL, "unknown_kind",
                   "kind: unknown kind '%.64s' (known: %s; GET /v1/connector-kinds lists them)",
                   json_string_value(kv), known);
        return NULL;
    }
    const json_t *cfg_in = json_object_get(body, "config");
    json_t *empty = json_object();
    json_t *cfg = sl_kind_validate(k, cfg_in && json_is_object(cfg_in) ? cfg_in : empty, err);
    json_decref(empty);
    if (!cfg)
        return NULL;
    json_t *strands = json_object_get(body, "strands")
                          ? check_strands(k, json_object_get(body, "strands"), err)
                          : json_pack("[s]", "*"); /* the seed: after every strand write */
    if (!strands) {
        json_decref(cfg);
        return NULL;
    }
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        json_decref(cfg);
        json_decref(strands);
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        return NULL;
    }
    c->name = strdup(json_string_value(json_object_get(body, "name")));
    c->kind = k;
    c->enabled =
        json_object_get(body, "enabled") ? json_is_true(json_object_get(body, "enabled")) : 1;
    c->created_at_ms = sl_now_ms();
    c->config = cfg;
    c->strands = strands;
    json_t *out = NULL;
    if (!c->name) {
        conn_free(c);
        sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        return NULL;
    }
    pthread_mutex_lock(&r->mu);
    const struct conn *other = find_name(r, c->name, NULL);
    if (other) {
        name_taken(other, err);
    } else {
        do
            new_id(c->id, 13);
        while (find(r, c->id, NULL));
        c->gen = ++r->gen;
        c->lag = LAG_UNKNOWN;
        if (persist(r, c, err) == 0 && push(r, c) == 0) {
            out = conn_json(c);
            audit_note(c->id, NULL, audit_view(c));
            c = NULL;
        }
    }
    pthread_mutex_unlock(&r->mu);
    conn_free(c);
    /* no on_change here: the caller pins a new connector's start cursors first, then calls
     * sl_registry_changed, so that "start: head" means the head when the 201 was sent */
    return out;
}

static json_t *not_found(const char *id, struct sl_err *err)
{
    sl_err_set(err, SL_E_NOTFOUND, "connector_not_found", "id: no connector %.64s", id);
    return NULL;
}

json_t *sl_registry_get(struct sl_registry *r, const char *id, struct sl_err *err)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    json_t *out = c ? conn_json(c) : NULL;
    pthread_mutex_unlock(&r->mu);
    return c ? out : not_found(id, err);
}

json_t *sl_registry_list(struct sl_registry *r)
{
    json_t *arr = json_array();
    int in = 0, outb = 0;
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        json_array_append_new(arr, conn_json(r->v[i]));
        if (r->v[i]->kind->direction == SL_INBOUND)
            in++;
        else
            outb++;
    }
    pthread_mutex_unlock(&r->mu);
    return json_pack("{s:o, s:i, s:i}", "connectors", arr, "inbound_count", in, "outbound_count",
                     outb);
}

json_t *sl_registry_patch(struct sl_registry *r, const char *id, const json_t *body,
                          struct sl_err *err)
{
    if (check_fields(body, 1, err))
        return NULL;
    pthread_mutex_lock(&r->mu);
    json_t *out = NULL, *cfg = NULL, *strands = NULL, *before = NULL;
    struct conn *c = find(r, id, NULL);
    if (!c) {
        not_found(id, err);
        goto done;
    }
    if (c->managed_by && (json_object_size(body) != 1 || !json_object_get(body, "enabled"))) {
        managed(c, err);
        goto done;
    }
    const json_t *v = json_object_get(body, "kind");
    if (v && !(json_is_string(v) && sl_kind_find(json_string_value(v)) == c->kind)) {
        sl_err_set(err, SL_E_INVAL, "kind_immutable",
                   "kind: cannot be changed (create a new connector instead)");
        goto done;
    }
    if ((v = json_object_get(body, "name")) && check_name(v, err))
        goto done;
    before = audit_view(c);
    /* its own name is fine (even one an older version let another connector share) */
    const struct conn *other = v && strcmp(json_string_value(v), c->name) != 0
                                   ? find_name(r, json_string_value(v), c)
                                   : NULL;
    if (other) {
        name_taken(other, err);
        goto done;
    }
    if ((v = json_object_get(body, "config"))) {
        json_t *in = json_deep_copy(v);
        sl_kind_keep_secrets(c->kind, in, c->config); /* "***" sent back keeps the secret */
        cfg = sl_kind_validate(c->kind, in, err);
        json_decref(in);
        if (!cfg)
            goto done;
    }
    if ((v = json_object_get(body, "strands")) && !(strands = check_strands(c->kind, v, err)))
        goto done;
    /* all checked: apply, persist, and roll back if the store refuses */
    struct conn old = *c;
    if ((v = json_object_get(body, "name")))
        c->name = strdup(json_string_value(v));
    if ((v = json_object_get(body, "enabled")))
        c->enabled = json_is_true(v);
    if (cfg)
        c->config = cfg;
    if (cfg)
        c->gave_up = 0; /* a new config gets a fresh worker, even after a failure */
    if (strands)
        c->strands = strands;
    if (persist(r, c, err) != 0) {
        if (c->name != old.name)
            free(c->name);
        *c = old;
        goto done;
    }
    if (c->name != old.name)
        free(old.name);
    if (cfg)
        json_decref(old.config);
    if (strands)
        json_decref(old.strands);
    cfg = strands = NULL;
    c->gen = ++r->gen;
    out = conn_json(c);
    audit_note(c->id, json_incref(before), audit_view(c));
done:
    pthread_mutex_unlock(&r->mu);
    json_decref(before);
    json_decref(cfg);
    json_decref(strands);
    /* no on_change here either: the caller pins the start cursors of strands it adds first */
    return out;
}

int sl_registry_delete(struct sl_registry *r, const char *id, struct sl_err *err)
{
    pthread_mutex_lock(&r->mu);
    size_t pos;
    struct conn *c = find(r, id, &pos);
    int rc = !c              ? SL_E_NOTFOUND
             : c->managed_by ? managed(c, err)
                             : sl_meta_delete_connector(r->meta, id, err);
    if (rc == SL_E_NOTFOUND)
        not_found(id, err);
    void (*deleted)(const char *, const json_t *, struct sl_meta *) =
        rc == 0 ? c->kind->deleted : NULL;
    json_t *cfg = deleted ? json_deep_copy(c->config) : NULL; /* outlives conn_free */
    struct sl_meta *deleted_meta = deleted && sl_kind_builtin(c->kind) ? r->meta : NULL;
    if (rc == 0) {
        audit_note(c->id, audit_view(c), NULL);
        memmove(r->v + pos, r->v + pos + 1, (r->n - pos - 1) * sizeof(*r->v));
        r->n--;
        conn_free(c);
    }
    pthread_mutex_unlock(&r->mu);
    if (rc == 0 && r->on_change)
        r->on_change(r->on_change_arg); /* stops its worker before its cursor goes */
    if (deleted) /* undoes what it created on the target (a replication slot): may block */
        deleted(id, cfg, deleted_meta);
    json_decref(cfg);
    if (rc == 0)
        sl_meta_drop_connector_state(r->meta, id, NULL);
    return rc;
}

json_t *sl_registry_kinds(void)
{
    json_t *arr = json_array();
    for (const struct sl_connector *const *k = sl_kinds_all(); *k; k++)
        json_array_append_new(arr, sl_kind_describe(*k));
    return json_pack("{s:o}", "kinds", arr);
}

int sl_registry_push_token(struct sl_registry *r, const char *id, char *tok, size_t cap)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    int rc = !c || !sl_kind_served(c->kind) ? SL_E_NOTFOUND : 0;
    const char *t = c ? json_string_value(json_object_get(c->config, "push_token")) : NULL;
    if (rc == 0 && t) {
        snprintf(tok, cap, "%s", t);
        rc = 1;
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int sl_registry_push_target(struct sl_registry *r, const char *id, struct sl_push_target *t,
                            struct sl_err *err)
{
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (!c || !sl_kind_served(c->kind)) {
        rc = sl_err_set(err, SL_E_NOTFOUND, "connector_not_found",
                        "id: no rest_bridge connector %.64s", id);
        goto out;
    }
    if (c->paused) {
        rc = sl_err_set(err, SL_E_CONFLICT, "connector_paused",
                        "connector %s is paused (POST /v1/connectors/%s/resume to accept pushes)",
                        c->id, c->id);
        goto out;
    }
    if (!c->enabled) {
        rc = sl_err_set(err, SL_E_CONFLICT, "connector_disabled",
                        "connector %s is disabled (PATCH {\"enabled\": true} to accept pushes)",
                        c->id);
        goto out;
    }
    json_t *rl = json_object_get(c->config, "rate_limit");
    if (rl) {
        double rate = json_number_value(json_object_get(rl, "events_per_second"));
        json_t *b = json_object_get(rl, "burst");
        double burst = b ? (double)json_integer_value(b) : (rate < 1 ? 1 : rate);
        uint64_t now = sl_mono_ns();
        if (c->refill_ns == 0)
            c->tokens = burst;
        else
            c->tokens += (double)(now - c->refill_ns) / 1e9 * rate;
        if (c->tokens > burst)
            c->tokens = burst;
        c->refill_ns = now;
        if (c->tokens < 1.0) {
            t->retry_after = (1.0 - c->tokens) / rate;
            rc = sl_err_set(err, SL_E_RATE, "rate_limited",
                            "connector %s: over its rate limit of %g events per second", c->id,
                            rate);
            goto out;
        }
        c->tokens -= 1.0;
    }
    snprintf(t->id, sizeof(t->id), "%s", c->id);
    snprintf(t->strand, sizeof(t->strand), "%s",
             json_string_value(json_object_get(c->config, "strand")));
    t->flags = (uint32_t)json_integer_value(json_object_get(c->config, "flags"));
out:
    pthread_mutex_unlock(&r->mu);
    return rc;
}

void sl_registry_note_events(struct sl_registry *r, const char *id, uint64_t n, uint64_t ts_ms)
{
    if (!n)
        return;
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c) {
        c->restarts = 0;
        c->event_count += n;
        if (ts_ms > c->last_event_ms)
            c->last_event_ms = ts_ms;
        c->dirty = 1;
    }
    pthread_mutex_unlock(&r->mu);
}

void sl_registry_note_event(struct sl_registry *r, const char *id, uint64_t ts_ms)
{
    sl_registry_note_events(r, id, 1, ts_ms);
}

size_t sl_registry_outbound(struct sl_registry *r, struct sl_outbound_def **out)
{
    pthread_mutex_lock(&r->mu);
    struct sl_outbound_def *v = calloc(r->n ? r->n : 1, sizeof(*v));
    size_t n = 0;
    for (size_t i = 0; v && i < r->n; i++) {
        struct conn *c = r->v[i];
        if (!c->enabled || c->paused || c->gave_up || !sl_kind_runs(c->kind) ||
            (c->kind->direction != SL_OUTBOUND && !inbound_worker(c->kind)))
            continue;
        snprintf(v[n].id, sizeof(v[n].id), "%s", c->id);
        v[n].kind = c->kind->name;
        v[n].config = json_deep_copy(c->config);
        v[n].strands = json_deep_copy(c->strands);
        v[n].gen = c->gen;
        v[n].inbound = c->kind->direction == SL_INBOUND;
        v[n].watch = c->watch;
        v[n].watch_arg = c->watch_arg;
        n++;
    }
    pthread_mutex_unlock(&r->mu);
    *out = v;
    return n;
}

void sl_registry_outbound_free(struct sl_outbound_def *defs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        json_decref(defs[i].config);
        json_decref(defs[i].strands);
    }
    free(defs);
}

int sl_registry_manage(struct sl_registry *r, const char *id, const char *by, sl_delivery_fn fn,
                       void *arg, struct sl_err *err)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c) {
        c->managed_by = by;
        c->watch = fn;
        c->watch_arg = arg;
        c->gen = ++r->gen; /* a running worker is started again with the watcher */
    }
    pthread_mutex_unlock(&r->mu);
    if (!c)
        not_found(id, err);
    return c ? 0 : SL_E_NOTFOUND;
}

/* "start": "head" is the head when the connector is created: its cursors are stored before
 * the 201 (and before its worker starts), so a record written right after is delivered. */
void sl_registry_pin_start(struct sl_registry *r, struct sl_store *store, const json_t *c)
{
    const json_t *cfg = json_object_get(c, "config");
    const char *start = json_string_value(json_object_get(cfg, "start"));
    if (strcmp(json_string_value(json_object_get(c, "direction")), "outbound") != 0 || !start)
        return;
    const char *id = json_string_value(json_object_get(c, "id"));
    const json_t *strands = json_object_get(c, "strands");
    struct sl_meta *meta = r->meta;
    int head = strcmp(start, "head") == 0;
    if (json_array_size(strands) == 1 &&
        strcmp(json_string_value(json_array_get(strands, 0)), "*") == 0) {
        /* every strand that exists now; one created later is followed from its first record */
        struct sl_strand *all[1024];
        size_t n = sl_store_list(store, all, 1024);
        for (size_t i = 0; i < n && i < 1024; i++)
            sl_meta_init_cursor(meta, id, sl_strand_name(all[i]),
                                head ? sl_strand_count(all[i]) : 0, NULL);
        return;
    }
    size_t i;
    json_t *v;
    json_array_foreach(strands, i, v)
    {
        struct sl_strand *s;
        uint64_t at = 0;
        if (head &&
            sl_store_strand(store, json_string_value(v), json_string_length(v), 1, &s, NULL) == 0)
            at = sl_strand_count(s);
        sl_meta_init_cursor(meta, id, json_string_value(v), at, NULL);
    }
}

struct sl_meta *sl_registry_meta(struct sl_registry *r)
{
    return r->meta;
}

void sl_registry_on_change(struct sl_registry *r, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&r->mu);
    r->on_change = fn;
    r->on_change_arg = arg;
    pthread_mutex_unlock(&r->mu);
}

void sl_registry_changed(struct sl_registry *r)
{
    pthread_mutex_lock(&r->mu);
    void (*fn)(void *) = r->on_change;
    void *arg = r->on_change_arg;
    pthread_mutex_unlock(&r->mu);
    if (fn)
        fn(arg);
}

void sl_registry_note_delivery(struct sl_registry *r, const char *id, uint64_t delivered,
                               uint64_t failed, uint64_t retried, uint64_t dead_lettered)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c) {
        c->delivered += delivered;
        if (delivered)
            c->restarts = 0; /* records flow again: the next failure starts the backoff over */
        c->failed += failed;
        c->retried += retried;
        c->dead_lettered += dead_lettered;
    }
    pthread_mutex_unlock(&r->mu);
}

void sl_registry_set_lag(struct sl_registry *r, const char *id, uint64_t lag)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c)
        c->lag = lag;
    pthread_mutex_unlock(&r->mu);
}

void sl_registry_set_gauge(struct sl_registry *r, const char *id, const char *name, uint64_t v)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    int k = c ? sl_kind_gauge_index(c->kind, name) : -1;
    if (k >= 0)
        c->gauges[k] = v;
    pthread_mutex_unlock(&r->mu);
}

/* The sources' gauges (sl_source_ops.gauges): one family per name, in catalog order, with the
 * first declaring kind's help; a sample for every connector whose kind declares it. */
static void gauge_metrics(struct sl_registry *r, struct sl_buf *b)
{
    const struct sl_connector *const *all = sl_kinds_all();
    for (size_t i = 0; all[i]; i++) {
        const struct sl_gauge *g = all[i]->source ? all[i]->source->gauges : NULL;
        for (int k = 0; g && g[k].name && k < SL_GAUGES_MAX; k++) {
            int seen = 0; /* declared by an earlier kind: that family is already out */
            for (size_t j = 0; j < i && !seen; j++)
                seen = sl_kind_gauge_index(all[j], g[k].name) >= 0;
            if (seen)
                continue;
            sl_buf_printf(b, "# HELP sluice_connector_%s %s\n# TYPE sluice_connector_%s gauge\n",
                          g[k].name, g[k].help, g[k].name);
            for (size_t n = 0; n < r->n; n++) {
                int at = sl_kind_gauge_index(r->v[n]->kind, g[k].name);
                if (at >= 0)
                    sl_buf_printf(b, "sluice_connector_%s{connector=\"%s\",kind=\"%s\"} %llu\n",
                                  g[k].name, r->v[n]->id, r->v[n]->kind->name,
                                  (unsigned long long)r->v[n]->gauges[at]);
            }
        }
    }
}

/* Each family is one block: HELP, TYPE, then all its samples. Label values are ids and static
 * strings, never connector names (free text), so they need no escaping. */
void sl_registry_metrics(struct sl_registry *r, struct sl_buf *b)
{
    static const char *const results[] = {"delivered", "failed", "retried", "dead_lettered"};
    sl_buf_puts(b, "# HELP sluice_connector_records_total Records handled by a connector, by "
                   "result (inbound: received).\n# TYPE sluice_connector_records_total counter\n");
    pthread_mutex_lock(&r->mu);
    for (size_t i = 0; i < r->n; i++) {
        struct conn *c = r->v[i];
        if (c->kind->direction == SL_INBOUND) {
            sl_buf_printf(b,
                          "sluice_connector_records_total{connector=\"%s\",kind=\"%s\","
                          "result=\"received\"} %llu\n",
                          c->id, c->kind->name, (unsigned long long)c->event_count);
            continue;
        }
        uint64_t v[] = {c->delivered, c->failed, c->retried, c->dead_lettered};
        for (int k = 0; k < 4; k++)
            sl_buf_printf(b,
                          "sluice_connector_records_total{connector=\"%s\",kind=\"%s\","
                          "result=\"%s\"} %llu\n",
                          c->id, c->kind->name, results[k], (unsigned long long)v[k]);
    }
    sl_buf_puts(b, "# HELP sluice_connector_lag_records Records an outbound connector is behind "
                   "the head of its strands.\n# TYPE sluice_connector_lag_records gauge\n");
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i]->kind->direction == SL_OUTBOUND && r->v[i]->lag != LAG_UNKNOWN)
            sl_buf_printf(b, "sluice_connector_lag_records{connector=\"%s\",kind=\"%s\"} %llu\n",
                          r->v[i]->id, r->v[i]->kind->name, (unsigned long long)r->v[i]->lag);
    sl_buf_puts(b, "# HELP sluice_connector_breaker_open 1 while an outbound connector's circuit "
                   "breaker is open or half open.\n# TYPE sluice_connector_breaker_open gauge\n");
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i]->kind->direction == SL_OUTBOUND)
            sl_buf_printf(b, "sluice_connector_breaker_open{connector=\"%s\",kind=\"%s\"} %d\n",
                          r->v[i]->id, r->v[i]->kind->name,
                          r->v[i]->breaker && strcmp(r->v[i]->breaker, "closed") != 0);
    gauge_metrics(r, b); /* postgres_cdc: slot_lag_bytes (WAL bytes, not records) */
    sl_buf_puts(b, "# HELP sluice_connector_state 1 for the state a connector is in.\n"
                   "# TYPE sluice_connector_state gauge\n");
    for (size_t i = 0; i < r->n; i++)
        sl_buf_printf(b, "sluice_connector_state{connector=\"%s\",kind=\"%s\",state=\"%s\"} 1\n",
                      r->v[i]->id, r->v[i]->kind->name, state_of(r->v[i]));
    pthread_mutex_unlock(&r->mu);
}

int sl_registry_request_replay(struct sl_registry *r, const char *id, struct sl_err *err)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c)
        c->replay = 1;
    pthread_mutex_unlock(&r->mu);
    return c ? 0 : (not_found(id, err), SL_E_NOTFOUND);
}

int sl_registry_take_replay(struct sl_registry *r, const char *id)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    int v = c ? c->replay : 0;
    if (c)
        c->replay = 0;
    pthread_mutex_unlock(&r->mu);
    return v;
}

int sl_registry_exists(struct sl_registry *r, const char *id, int *outbound)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c && outbound)
        *outbound = c->kind->direction == SL_OUTBOUND;
    pthread_mutex_unlock(&r->mu);
    return c ? 0 : SL_E_NOTFOUND;
}

void sl_registry_set_failed(struct sl_registry *r, const char *id, const char *msg)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c) {
        free(c->fail_msg);
        c->fail_msg = strdup(msg);
        c->gave_up = c->fail_msg != NULL;
        struct sl_err err = {0};
        if (persist(r, c, &err) != 0)
            sl_warn("connector %s: %s", id, err.msg);
    }
    pthread_mutex_unlock(&r->mu);
}

void sl_registry_set_breaker(struct sl_registry *r, const char *id, const char *state)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c)
        c->breaker = state;
    pthread_mutex_unlock(&r->mu);
}

json_t *sl_registry_restart(struct sl_registry *r, const char *id, struct sl_err *err)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    json_t *out = NULL;
    if (c) {
        c->gave_up = 0;
        free(c->fail_msg);
        c->fail_msg = NULL;
        c->breaker = NULL;
        c->status = NULL;
        free(c->soft_error);
        c->soft_error = NULL;
        c->restarts = 0;
        c->gen = ++r->gen; /* a new worker, with a closed breaker */
        if (persist(r, c, err) == 0) {
            out = conn_json(c);
            audit_note(c->id, audit_view(c), audit_view(c));
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (!c)
        return not_found(id, err);
    sl_registry_changed(r);
    return out;
}

void sl_registry_note_files(struct sl_registry *r, const char *id, uint64_t files, uint64_t bytes)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c) {
        c->files_written += files;
        c->bytes_written += bytes;
    }
    pthread_mutex_unlock(&r->mu);
}

void sl_registry_set_source_status(struct sl_registry *r, const char *id, const char *state,
                                   const char *error)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c) {
        c->status = state;
        free(c->soft_error);
        c->soft_error = error ? strdup(error) : NULL;
    }
    pthread_mutex_unlock(&r->mu);
}

uint64_t sl_registry_set_restarting(struct sl_registry *r, const char *id, const char *why)
{
    uint64_t delay = 1000;
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    if (c) {
        for (unsigned i = 0; i < c->restarts && delay < 60000; i++)
            delay *= 2;
        if (delay > 60000)
            delay = 60000;
        c->restarts++;
        char msg[600];
        snprintf(msg, sizeof(msg), "%s (restart %u in %llu s)", why, c->restarts,
                 (unsigned long long)(delay / 1000));
        c->status = "restarting";
        free(c->soft_error);
        c->soft_error = strdup(msg);
    }
    pthread_mutex_unlock(&r->mu);
    return delay;
}

json_t *sl_registry_set_paused(struct sl_registry *r, const char *id, int paused,
                               struct sl_err *err)
{
    pthread_mutex_lock(&r->mu);
    struct conn *c = find(r, id, NULL);
    json_t *out = NULL;
    if (c && sl_meta_set_state(r->meta, c->id, PAUSED_KEY, paused ? 1 : 0, err) == 0) {
        json_t *before = audit_view(c);
        c->paused = paused;
        audit_note(c->id, before, audit_view(c));
        c->gen = ++r->gen; /* resume starts a fresh worker from the kept cursors */
        out = conn_json(c);
    }
    pthread_mutex_unlock(&r->mu);
    if (!c)
        return not_found(id, err);
    if (out)
        sl_registry_changed(r); /* stops (or starts) its worker now */
    return out;
}

int sl_registry_lookup(struct sl_registry *r, const char *key, char id[16])
{
    pthread_mutex_lock(&r->mu);
    const struct conn *c = find(r, key, NULL);
    if (!c)
        c = find_name(r, key, NULL);
    if (c)
        snprintf(id, 16, "%s", c->id);
    pthread_mutex_unlock(&r->mu);
    return c ? 0 : SL_E_NOTFOUND;
}
