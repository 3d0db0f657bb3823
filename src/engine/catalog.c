/* The catalog: the one list of every connector kind, built in or loaded from a plugin. Adding a
 * kind is its folder under src/connectors/ plus one line here. */
#include "core/log.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct sl_connector sl_conn_rest_bridge, sl_conn_webhook, sl_conn_s3,
    sl_conn_postgres_cdc, sl_conn_kafka, sl_conn_object_storage, sl_conn_stdout, sl_conn_datagen,
    sl_conn_supabase, sl_conn_postgres_sink, sl_conn_kafka_sink;
extern const struct sl_connector sl_conn_clickhouse;
extern const struct sl_connector sl_conn_elasticsearch;
extern const struct sl_connector sl_conn_mqtt, sl_conn_mqtt_sink;
extern const struct sl_connector sl_conn_mysql_cdc;

static const struct builtin {
    const struct sl_connector *c;
    int served; /* served by the HTTP threads, no worker */
} g_builtin[] = {
    {&sl_conn_rest_bridge, 1},   {&sl_conn_webhook, 0},    {&sl_conn_s3, 0},
    {&sl_conn_postgres_cdc, 0},  {&sl_conn_kafka, 0},      {&sl_conn_object_storage, 0},
    {&sl_conn_stdout, 0},        {&sl_conn_datagen, 0},    {&sl_conn_supabase, 0},
    {&sl_conn_postgres_sink, 0}, {&sl_conn_kafka_sink, 0}, {&sl_conn_clickhouse, 0},
    {&sl_conn_elasticsearch, 0}, {&sl_conn_mqtt, 0},       {&sl_conn_mqtt_sink, 0},
    {&sl_conn_mysql_cdc, 0},
};
#define NBUILTIN (sizeof(g_builtin) / sizeof(g_builtin[0]))
#define MAX_PLUGINS 256

static const struct sl_connector *g_plugins[MAX_PLUGINS];
static size_t g_nplugins;

static const struct builtin *builtin_of(const struct sl_connector *k)
{
    for (size_t i = 0; i < NBUILTIN; i++)
        if (g_builtin[i].c == k)
            return &g_builtin[i];
    return NULL;
}

static int named(const struct sl_connector *k, const char *name)
{
    if (strcmp(k->name, name) == 0)
        return 1;
    for (const char *const *a = k->aliases; a && *a; a++)
        if (strcmp(*a, name) == 0)
            return 1;
    return 0;
}

const struct sl_connector *sl_kind_find(const char *name)
{
    for (size_t i = 0; i < NBUILTIN; i++)
        if (named(g_builtin[i].c, name))
            return g_builtin[i].c;
    for (size_t i = 0; i < g_nplugins; i++)
        if (named(g_plugins[i], name))
            return g_plugins[i];
    return NULL;
}

const struct sl_connector *const *sl_kinds_all(void)
{
    static const struct sl_connector *list[NBUILTIN + MAX_PLUGINS + 1];
    size_t n = 0;
    for (size_t i = 0; i < NBUILTIN; i++)
        list[n++] = g_builtin[i].c;
    for (size_t i = 0; i < g_nplugins; i++)
        list[n++] = g_plugins[i];
    list[n] = NULL;
    return list;
}

/* A source's gauge table (connector.h: struct sl_gauge): names become metric names and JSON
 * keys, so they are checked like identifiers and may not take a framework family's name. */
static int check_gauges(const struct sl_connector *c, struct sl_err *err)
{
    static const char *const taken[] = {"records_total", "lag_records", "breaker_open", "state",
                                        NULL};
    const struct sl_gauge *g = c->source ? c->source->gauges : NULL;
    for (int k = 0; g && g[k].name; k++) {
        const char *n = g[k].name;
        int ok = k < SL_GAUGES_MAX && *n >= 'a' && *n <= 'z' && strlen(n) <= 48 && g[k].help &&
                 !strchr(g[k].help, '\n') && !strchr(g[k].help, '\\');
        for (const char *p = n; ok && *p; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_';
        for (const char *const *t = taken; ok && *t; t++)
            ok = strcmp(*t, n) != 0;
        for (int j = 0; ok && j < k; j++)
            ok = strcmp(g[j].name, n) != 0;
        if (!ok)
            return sl_err_set(err, SL_E_INVAL, "bad_plugin",
                              "connector %.64s: gauge %.64s: at most %d, named [a-z][a-z0-9_]* "
                              "(48 bytes at most, not a framework metric's name, once), with a "
                              "one-line help",
                              c->name, n, SL_GAUGES_MAX);
    }
    return 0;
}

int sl_kinds_add(const struct sl_connector *c, struct sl_err *err)
{
    if (!c || !c->name || !c->description || !c->fields)
        return sl_err_set(err, SL_E_INVAL, "bad_plugin",
                          "a connector needs a name, a description and a field table");
    if ((c->direction == SL_OUTBOUND) != (c->sink != NULL) ||
        (c->direction == SL_INBOUND && c->sink) || (c->sink && (!c->sink->open || !c->sink->send)))
        return sl_err_set(err, SL_E_INVAL, "bad_plugin",
                          "connector %.64s: an outbound connector has sink ops (open, send), an "
                          "inbound one none",
                          c->name);
    if (c->source && (!c->source->start || !c->source->poll))
        return sl_err_set(err, SL_E_INVAL, "bad_plugin",
                          "connector %.64s: source ops need start and poll", c->name);
    if (check_gauges(c, err) < 0)
        return SL_E_INVAL;
    if (sl_kind_find(c->name))
        return sl_err_set(err, SL_E_CONFLICT, "bad_plugin", "connector %.64s: the name is taken",
                          c->name);
    for (const char *const *a = c->aliases; a && *a; a++)
        if (sl_kind_find(*a))
            return sl_err_set(err, SL_E_CONFLICT, "bad_plugin",
                              "connector %.64s: alias %.64s is taken", c->name, *a);
    if (g_nplugins == MAX_PLUGINS)
        return sl_err_set(err, SL_E_TOOBIG, "bad_plugin", "more than %d plugin connectors",
                          MAX_PLUGINS);
    g_plugins[g_nplugins++] = c;
    return 0;
}

int sl_kind_runs(const struct sl_connector *k)
{
    const struct builtin *b = builtin_of(k);
    return !k->unavailable && (k->sink || k->source || (b && b->served));
}

int sl_kind_served(const struct sl_connector *k)
{
    const struct builtin *b = builtin_of(k);
    return b && b->served;
}

int sl_kind_builtin(const struct sl_connector *k)
{
    return builtin_of(k) != NULL;
}

int sl_kind_gauge_index(const struct sl_connector *k, const char *name)
{
    const struct sl_gauge *g = k && k->source ? k->source->gauges : NULL;
    for (int i = 0; g && g[i].name && i < SL_GAUGES_MAX; i++)
        if (strcmp(g[i].name, name) == 0)
            return i;
    return -1;
}

/* ---- host services ---- */

static int host_fail(struct sl_err *err, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sl_err_set(err, SL_E_INVAL, "invalid_config", "%s", msg);
}

static void host_log(const char *id, int level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (level <= 0)
        sl_debug("connector %s: %s", id, msg);
    else if (level == 1)
        sl_info("connector %s: %s", id, msg);
    else if (level == 2)
        sl_warn("connector %s: %s", id, msg);
    else
        sl_error("connector %s: %s", id, msg);
}

static int host_payload_json(const uint8_t *mp, size_t mp_len, char **out, size_t *len)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    if (*out && sl_buf_append(&b, *out, *len) < 0)
        goto fail;
    size_t used;
    struct sl_jerr je;
    if (sl_mp_to_json(mp, mp_len, &used, &b, 200, &je) < 0 || used != mp_len || b.failed)
        goto fail;
    free(*out);
    *out = sl_buf_steal(&b, len);
    return *out ? 0 : -1;
fail:
    sl_buf_release(&b);
    return -1;
}

static int host_json_payload(const char *json, size_t len, uint8_t **mp, size_t *mp_len,
                             struct sl_err *err)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    struct sl_jerr je;
    if (sl_json_to_mp(json, len, &b, 200, &je) < 0 || b.failed) {
        sl_buf_release(&b);
        return sl_err_set(err, SL_E_INVAL, "invalid_json", "%s", je.msg);
    }
    *mp = (uint8_t *)sl_buf_steal(&b, mp_len);
    return *mp ? 0 : sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
}

const struct sl_host sl_host_default = {
    .abi = SL_CONNECTOR_ABI,
    .fail = host_fail,
    .log = host_log,
    .payload_json = host_payload_json,
    .json_payload = host_json_payload,
    .now_ms = sl_now_ms,
};
