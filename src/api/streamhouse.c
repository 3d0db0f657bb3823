/* StreamHouse's connector API (shared/seeds/001_*) under /api/v1: connectors addressed by name
 * (or id), answers in StreamHouse's shape ({"name", "connectorType", "connectorClass", "topics",
 * "config"} plus id, state and stats), pause/resume, and GET /api/v1/metrics with the seed's
 * metric names. The same engine and registry as /v1: only the spelling differs.
 *
 * How a StreamHouse client spelled a connector (its class, e.g. "s3-sink", and its config with
 * dotted string values) is kept in the metadata store beside the connector (connector_text
 * "sh.class" and "sh.config", the config with secrets already masked), so answers echo what the
 * client sent rather than Sluice's normalized config. Threads: the HTTP threads. */
#include "api/api.h"
#include "core/log.h"
#include "engine/kinds.h"
#include "engine/meta.h"
#include "engine/registry.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SH_CLASS "sh.class"
#define SH_CONFIG "sh.config"

/* Renames the field an error names ("strands: ..." -> "topics: ...") so that a StreamHouse
 * client is told about the key it sent. */
static void rename_field(struct sl_err *err, const char *from, const char *to)
{
    size_t n = strlen(from);
    if (strncmp(err->msg, from, n) != 0 || err->msg[n] != ':')
        return;
    char msg[sizeof(err->msg)];
    snprintf(msg, sizeof(msg), "%s%s", to, err->msg + n);
    snprintf(err->msg, sizeof(err->msg), "%s", msg);
}

static int sh_error(struct sl_err *err, const char *code, const char *msg)
{
    return sl_err_set(err, SL_E_INVAL, code, "%s", msg);
}

int sl_sh_is_body(const json_t *body)
{
    return json_is_object(body) && !json_object_get(body, "kind") &&
           (json_object_get(body, "connectorClass") || json_object_get(body, "connectorType") ||
            json_object_get(body, "topics"));
}

json_t *sl_sh_to_body(const json_t *body, struct sl_err *err)
{
    if (!json_is_object(body)) {
        sh_error(err, "invalid_connector", "body: must be a JSON object");
        return NULL;
    }
    const json_t *cls = json_object_get(body, "connectorClass");
    if (!cls) {
        sh_error(err, "invalid_connector",
                 json_object_get(body, "kind")
                     ? "connectorClass: required (kind is the /v1 spelling; StreamHouse's API "
                       "names the connector's class: s3-sink, webhook, ...)"
                     : "connectorClass: required, the connector's class (s3-sink, webhook, ...; "
                       "GET /v1/connector-kinds lists them)");
        return NULL;
    }
    if (!json_is_string(cls)) {
        sh_error(err, "invalid_connector", "connectorClass: must be a string");
        return NULL;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        if (strcmp(key, "name") && strcmp(key, "connectorType") && strcmp(key, "connectorClass") &&
            strcmp(key, "topics") && strcmp(key, "config") && strcmp(key, "enabled")) {
            sl_err_set(err, SL_E_INVAL, "invalid_connector",
                       "%.64s: unknown field (a StreamHouse connector has name, connectorType, "
                       "connectorClass, topics, config and enabled)",
                       key);
            return NULL;
        }
    }
    const struct sl_connector *k = sl_kind_find(json_string_value(cls));
    if (!k) {
        char known[200] = "";
        for (const struct sl_connector *const *x = sl_kinds_all(); *x; x++)
            for (const char *const *a = (*x)->aliases; a && *a; a++)
                snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s",
                         known[0] ? ", " : "", *a);
        sl_err_set(err, SL_E_INVAL, "unknown_kind",
                   "connectorClass: unknown class '%.64s' (known: %s, and every kind "
                   "GET /v1/connector-kinds lists)",
                   json_string_value(cls), known);
        return NULL;
    }
    const char *want = k->direction == SL_INBOUND ? "source" : "sink";
    const json_t *type = json_object_get(body, "connectorType");
    if (type && (!json_is_string(type) || (strcmp(json_string_value(type), "sink") != 0 &&
                                           strcmp(json_string_value(type), "source") != 0))) {
        sh_error(err, "invalid_connector", "connectorType: must be sink or source");
        return NULL;
    }
    if (type && strcmp(json_string_value(type), want) != 0) {
        sl_err_set(err, SL_E_INVAL, "invalid_connector", "connectorType: %s is a %s",
                   json_string_value(cls), want);
        return NULL;
    }
    json_t *out = json_deep_copy(body);
    json_object_del(out, "connectorClass");
    json_object_del(out, "connectorType");
    json_object_set_new(out, "kind", json_string(k->name));
    const json_t *topics = json_object_get(body, "topics");
    json_object_del(out, "topics");
    if (topics && k->direction == SL_INBOUND) {
        /* a source writes to one strand: config.strand */
        if (!json_is_array(topics) || json_array_size(topics) != 1 ||
            !json_is_string(json_array_get(topics, 0))) {
            json_decref(out);
            sh_error(err, "invalid_connector", "topics: a source writes to exactly one topic");
            return NULL;
        }
        json_t *cfg = json_object_get(out, "config");
        if (!cfg) {
            cfg = json_object();
            json_object_set_new(out, "config", cfg);
        }
        const json_t *given = json_object_get(cfg, "strand");
        if (json_is_object(cfg) && given && !json_equal(given, json_array_get(topics, 0))) {
            json_decref(out);
            sh_error(err, "invalid_connector", "topics: differs from config.strand");
            return NULL;
        }
        if (json_is_object(cfg))
            json_object_set(cfg, "strand", json_array_get(topics, 0));
    } else if (topics) {
        json_object_set(out, "strands", (json_t *)topics);
    }
    return out;
}

void sl_sh_fix_error(struct sl_err *err)
{
    rename_field(err, "strands", "topics");
    rename_field(err, "kind", "connectorClass");
}

void sl_sh_remember(struct sl_api *api, const char *id, const json_t *sh_body)
{
    struct sl_meta *meta = sl_registry_meta(api->registry);
    const json_t *cls = json_object_get(sh_body, "connectorClass");
    const json_t *cfg = json_object_get(sh_body, "config");
    const struct sl_connector *k = sl_kind_find(json_string_value(cls));
    struct sl_err err = {0};
    if (json_is_string(cls) && sl_meta_set_text(meta, id, SH_CLASS, json_string_value(cls), &err))
        sl_warn("connector %s: %s", id, err.msg);
    if (k && json_is_object(cfg)) {
        json_t *masked = sl_kind_redact_spelled(k, cfg);
        char *s = json_dumps(masked, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(masked);
        if (s && sl_meta_set_text(meta, id, SH_CONFIG, s, &err))
            sl_warn("connector %s: %s", id, err.msg);
        free(s);
    }
}

void sl_sh_forget_config(struct sl_api *api, const char *id)
{
    sl_meta_set_text(sl_registry_meta(api->registry), id, SH_CONFIG, NULL, NULL);
}

/* A ConnectorConfig (stolen) in StreamHouse's shape (a new object). */
static json_t *view(struct sl_api *api, json_t *c)
{
    struct sl_meta *meta = sl_registry_meta(api->registry);
    const char *id = json_string_value(json_object_get(c, "id"));
    int inbound = strcmp(json_string_value(json_object_get(c, "direction")), "inbound") == 0;
    char *cls = sl_meta_get_text(meta, id, SH_CLASS);
    char *cfg_text = sl_meta_get_text(meta, id, SH_CONFIG);
    json_t *cfg = cfg_text ? json_loads(cfg_text, 0, NULL) : NULL;
    if (!cfg)
        cfg = json_incref(json_object_get(c, "config"));
    json_t *stats =
        json_object_get(c, "stats") ? json_deep_copy(json_object_get(c, "stats")) : json_object();
    json_int_t processed = inbound ? json_integer_value(json_object_get(c, "event_count"))
                                   : json_integer_value(json_object_get(stats, "delivered"));
    json_int_t errors = json_integer_value(json_object_get(stats, "failed")) +
                        json_integer_value(json_object_get(stats, "dead_lettered"));
    json_object_set_new(stats, "records_processed", json_integer(processed));
    json_object_set_new(stats, "errors", json_integer(errors));
    json_t *o = json_pack(
        "{s:O, s:s, s:s, s:O, s:o, s:O, s:O, s:O, s:O, s:O, s:O, s:O, s:o}", "name",
        json_object_get(c, "name"), "connectorType", inbound ? "source" : "sink", "connectorClass",
        cls ? cls : json_string_value(json_object_get(c, "kind")), "topics",
        json_object_get(c, "strands"), "config", cfg, "id", json_object_get(c, "id"), "kind",
        json_object_get(c, "kind"), "state", json_object_get(c, "state"), "enabled",
        json_object_get(c, "enabled"), "last_error", json_object_get(c, "last_error"),
        "created_at_ms", json_object_get(c, "created_at_ms"), "last_event_ms",
        json_object_get(c, "last_event_ms"), "stats", stats);
    free(cls);
    free(cfg_text);
    json_decref(c);
    return o;
}

/* Answers o (stolen), in StreamHouse's shape when sh. */
static void answer_conn(struct sl_api *api, struct sl_http_req *req, unsigned status, json_t *c,
                        int sh)
{
    sl_api_answer(req, status, sh ? view(api, c) : c);
}

/* Resolves key (an id, or else a name) into id; answers 404 and returns -1 if none. */
static int resolve(struct sl_api *api, struct sl_http_req *req, const char *key, char id[16])
{
    if (sl_registry_lookup(api->registry, key, id) == 0)
        return 0;
    /* echo the key only as valid UTF-8 (the answer is JSON), cut on a character boundary */
    size_t len = strlen(key);
    if (len > 96) {
        len = 96;
        while (len > 0 && ((unsigned char)key[len] & 0xC0) == 0x80)
            len--;
    }
    json_t *valid = json_stringn(key, len);
    if (valid)
        sl_api_error(req, 404, "connector_not_found",
                     "connector: no connector named (or with id) %.*s%s", (int)len, key,
                     key[len] ? "..." : "");
    else
        sl_api_error(req, 404, "connector_not_found",
                     "connector: no connector by that name (it is not valid UTF-8)");
    json_decref(valid);
    return -1;
}

void sl_v1_connector_pause(struct sl_api *api, struct sl_http_req *req, const char *key, int paused,
                           int sh)
{
    char id[16];
    if (resolve(api, req, key, id) < 0)
        return;
    struct sl_err err = {0};
    json_t *c = sl_registry_set_paused(api->registry, id, paused, &err);
    if (!c)
        return sl_api_error_from(req, &err);
    answer_conn(api, req, 200, c, sh);
}

static void create(struct sl_api *api, struct sl_http_req *req)
{
    json_t *in = sl_api_body_json(req);
    if (!in)
        return;
    struct sl_err err = {0};
    json_t *body = sl_sh_to_body(in, &err);
    json_t *c = body ? sl_registry_create(api->registry, body, &err) : NULL;
    json_decref(body);
    if (!c) {
        json_decref(in);
        sl_sh_fix_error(&err);
        return sl_api_error_from(req, &err);
    }
    sl_sh_remember(api, json_string_value(json_object_get(c, "id")), in);
    json_decref(in);
    sl_api_pin_start(api, c);
    sl_registry_changed(api->registry);
    answer_conn(api, req, 201, c, 1);
}

/* Every connector in StreamHouse's shape (a new array). */
static json_t *all_views(struct sl_api *api)
{
    json_t *all = sl_registry_list(api->registry);
    json_t *arr = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(all, "connectors"), i, c)
        json_array_append_new(arr, view(api, json_incref(c)));
    json_decref(all);
    return arr;
}

/* PATCH /api/v1/connectors/{name}: name, enabled, topics, config (StreamHouse's spelling, kept
 * for later answers). */
static void patch(struct sl_api *api, struct sl_http_req *req, const char *id)
{
    json_t *in = sl_api_body_json(req);
    if (!in)
        return;
    struct sl_err err = {0};
    json_t *body = json_is_object(in) ? json_deep_copy(in) : json_incref(in);
    if (json_is_object(body) && json_object_get(body, "topics")) {
        json_object_set(body, "strands", json_object_get(body, "topics"));
        json_object_del(body, "topics");
    }
    json_t *c = sl_registry_patch(api->registry, id, body, &err);
    json_decref(body);
    if (!c) {
        json_decref(in);
        sl_sh_fix_error(&err);
        return sl_api_error_from(req, &err);
    }
    if (json_object_get(in, "config")) {
        json_t *k = json_pack("{s:O, s:O}", "connectorClass", json_object_get(c, "kind"), "config",
                              json_object_get(in, "config"));
        char *cls = sl_meta_get_text(sl_registry_meta(api->registry), id, SH_CLASS);
        if (cls)
            json_object_set_new(k, "connectorClass", json_string(cls));
        free(cls);
        sl_sh_remember(api, id, k);
        json_decref(k);
    }
    json_decref(in);
    sl_api_pin_start(api, c);
    sl_registry_changed(api->registry);
    answer_conn(api, req, 200, c, 1);
}

static void one(struct sl_api *api, struct sl_http_req *req, const char *key)
{
    const char *m = sl_http_method(req);
    char id[16];
    if (resolve(api, req, key, id) < 0)
        return;
    struct sl_err err = {0};
    if (strcmp(m, "DELETE") == 0) {
        json_t *c = sl_registry_get(api->registry, id, &err);
        if (!c || sl_registry_delete(api->registry, id, &err) < 0) {
            json_decref(c);
            return sl_api_error_from(req, &err);
        }
        json_t *o = json_pack("{s:b, s:s, s:O}", "deleted", 1, "id", id, "name",
                              json_object_get(c, "name"));
        json_decref(c);
        return sl_api_answer(req, 200, o);
    }
    if (strcmp(m, "PATCH") == 0)
        return patch(api, req, id);
    json_t *c = sl_registry_get(api->registry, id, &err);
    if (!c)
        return sl_api_error_from(req, &err);
    answer_conn(api, req, 200, c, 1);
}

/* Prometheus label value: \ " and newline escaped. */
static void label(struct sl_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            sl_buf_putc(b, '\\');
        if (*s == '\n')
            sl_buf_puts(b, "\\n");
        else
            sl_buf_putc(b, *s);
    }
}

/* The seed's state names: running, paused, stopped, failed. */
static const char *seed_state(const char *s)
{
    if (strcmp(s, "disabled") == 0 || strcmp(s, "completed") == 0)
        return "stopped";
    if (strcmp(s, "restarting") == 0 || strcmp(s, "unhealthy") == 0)
        return "failed"; /* its worker failed or its target is unreachable: nothing flows */
    return s;
}

static void sample(struct sl_buf *b, const char *metric, const json_t *c, const char *state,
                   long long v)
{
    sl_buf_printf(b, "%s{connector=\"", metric);
    label(b, json_string_value(json_object_get(c, "name")));
    sl_buf_printf(b, "\",id=\"%s\"", json_string_value(json_object_get(c, "id")));
    if (state)
        sl_buf_printf(b, ",state=\"%s\"", state);
    sl_buf_printf(b, "} %lld\n", v);
}

/* GET /api/v1/metrics: the seed's three connector metrics, labelled by connector name (and id,
 * which never changes). Prometheus text format 0.0.4. */
static void metrics(struct sl_api *api, struct sl_http_req *req)
{
    static const char *const states[] = {"running", "paused", "stopped", "failed"};
    json_t *views = all_views(api);
    size_t i;
    json_t *c;
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "# HELP connector_records_processed Records a connector processed (a sink: "
                    "delivered; a source: written to its strand).\n"
                    "# TYPE connector_records_processed counter\n");
    json_array_foreach(views, i, c)
    {
        const json_t *st = json_object_get(c, "stats");
        sample(&b, "connector_records_processed", c, NULL,
               json_integer_value(json_object_get(st, "records_processed")));
    }
    sl_buf_puts(&b, "# HELP connector_state 1 for the state a connector is in (running, paused, "
                    "stopped, failed), 0 for the others.\n# TYPE connector_state gauge\n");
    json_array_foreach(views, i, c)
    {
        const char *now = seed_state(json_string_value(json_object_get(c, "state")));
        for (size_t s = 0; s < sizeof(states) / sizeof(states[0]); s++)
            sample(&b, "connector_state", c, states[s], strcmp(now, states[s]) == 0);
    }
    sl_buf_puts(&b, "# HELP connector_errors_total Errors of a connector: failed delivery "
                    "attempts (records) and records dead-lettered.\n"
                    "# TYPE connector_errors_total counter\n");
    json_array_foreach(views, i, c)
    {
        sample(&b, "connector_errors_total", c, NULL,
               json_integer_value(json_object_get(json_object_get(c, "stats"), "errors")));
    }
    json_decref(views);
    sl_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", &b);
}

/* Matches "/api/v1/connectors/{key}{suffix}" and copies key (at most 255 bytes) into out. */
static int match_key(const char *p, const char *suffix, char *out, size_t cap)
{
    static const char prefix[] = "/api/v1/connectors/";
    size_t pl = sizeof(prefix) - 1, sl = strlen(suffix), n = strlen(p);
    if (n <= pl + sl || strncmp(p, prefix, pl) != 0 || strcmp(p + n - sl, suffix) != 0)
        return 0;
    size_t kl = n - pl - sl;
    if (memchr(p + pl, '/', kl) || kl >= cap)
        return 0;
    memcpy(out, p + pl, kl);
    out[kl] = 0;
    return 1;
}

void sl_sh_route(struct sl_api *api, struct sl_http_req *req, const char *p)
{
    const char *m = sl_http_method(req);
    int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0, post = strcmp(m, "POST") == 0;
    char key[256];
    if (strcmp(p, "/api/v1/metrics") == 0) {
        sl_http_set_route(req, SL_R_API_METRICS);
        if (!get)
            return sl_api_method_not_allowed(req, "GET");
        return metrics(api, req);
    }
    if (strcmp(p, "/api/v1/connectors") == 0) {
        sl_http_set_route(req, SL_R_API_CONNECTORS);
        if (!get && !post)
            return sl_api_method_not_allowed(req, "GET, POST");
        return post ? create(api, req) : sl_api_answer(req, 200, all_views(api));
    }
    /* the REST bridge's push and dead letters, as under /v1 (dead letters by name too) */
    if (strncmp(p, "/api/v1/connectors/inbound/rest/", 32) == 0) {
        const char *idp = p + 32, *end = strchr(idp, '/');
        sl_http_set_route(req, SL_R_REST_PUSH);
        if (!end || strcmp(end, "/push") != 0)
            return sl_api_error(req, 404, "not_found", "no route for %s %.200s", m, p);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_rest_push(api, req, idp, (size_t)(end - idp));
    }
    int replay = match_key(p, "/dead-letters/replay", key, sizeof(key));
    if (replay || match_key(p, "/dead-letters", key, sizeof(key))) {
        sl_http_set_route(req, SL_R_DEAD_LETTERS);
        if (replay ? !post : (!get && strcmp(m, "DELETE") != 0))
            return sl_api_method_not_allowed(req, replay ? "POST" : "GET, DELETE");
        char id[16];
        if (resolve(api, req, key, id) < 0)
            return;
        return sl_v1_dead_letters(api, req, id, replay);
    }
    int pause = match_key(p, "/pause", key, sizeof(key));
    if (pause || match_key(p, "/resume", key, sizeof(key))) {
        sl_http_set_route(req, SL_R_API_CONNECTOR);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        return sl_v1_connector_pause(api, req, key, pause, 1);
    }
    if (match_key(p, "/restart", key, sizeof(key))) {
        sl_http_set_route(req, SL_R_API_CONNECTOR);
        if (!post)
            return sl_api_method_not_allowed(req, "POST");
        char id[16];
        if (resolve(api, req, key, id) < 0)
            return;
        struct sl_err err = {0};
        json_t *c = sl_registry_restart(api->registry, id, &err);
        if (!c)
            return sl_api_error_from(req, &err);
        return answer_conn(api, req, 200, c, 1);
    }
    if (match_key(p, "", key, sizeof(key))) {
        sl_http_set_route(req, SL_R_API_CONNECTOR);
        if (!get && strcmp(m, "DELETE") != 0 && strcmp(m, "PATCH") != 0)
            return sl_api_method_not_allowed(req, "GET, PATCH, DELETE");
        return one(api, req, key);
    }
    sl_http_set_route(req, SL_R_UNMATCHED);
    sl_api_error(req, 404, "not_found", "no route for %s %.200s", m, p);
}
