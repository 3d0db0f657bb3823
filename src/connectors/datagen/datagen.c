/* The datagen source (Rivven's `datagen`): synthetic orders, users or pageviews at a set rate,
 * optionally as CDC envelopes (insert/update/delete, the postgres_cdc shape). Event i is a pure
 * function of (seed, i), so the same seed gives the same records, and a restart continues at
 * the next event: the position is the next event index, and every payload carries its index
 * (event_id, or source.event_index in cdc_mode) so that the framework can find it after a
 * crash (exactly once into the strand). */
#include "connectors/datagen/datagen.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/util.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const g_patterns[] = {"orders", "users", "pageviews", NULL};

static const struct sl_field f_datagen[] = {
    {"pattern", SL_F_ENUM, 1, NULL, 0, "orders, users or pageviews.", 0, 0, g_patterns, NULL},
    {"events_per_second", SL_F_NUMBER, 0, "1", 0, "Generation rate.", 0, 0, NULL, NULL},
    {"max_events", SL_F_INT, 0, "0", 0, "Events to generate in all; 0 = unlimited.", 0,
     1000000000000LL, NULL, NULL},
    {"stream_name", SL_F_STRING, 0, "\"datagen\"", 0, "Stream name in the events.", 0, 0, NULL,
     NULL},
    {"seed", SL_F_INT, 0, NULL, 0, "RNG seed (reproducible); a random one is stored if absent.", 0,
     9007199254740991LL, NULL, NULL},
    {"cdc_mode", SL_F_BOOL, 0, "false", 0, "Insert/update/delete envelopes as postgres_cdc.", 0, 0,
     NULL, NULL},
    {"strand", SL_F_STRAND, 0, "\"default\"", 0, "Strand the events are written to.", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* A random seed is chosen once and stored, so that a restart continues the same sequence. */
static int check_datagen(json_t *c, struct sl_err *err)
{
    if (!json_object_get(c, "seed"))
        json_object_set_new(c, "seed", json_integer((json_int_t)(sl_rand64() >> 12)));
    return 0;
}

static uint64_t mix(uint64_t x) /* splitmix64's finalizer */
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The k-th random number of item i (version v) under seed. */
static uint64_t rnd(uint64_t seed, uint64_t i, uint64_t v, uint64_t k)
{
    return mix(mix(mix(seed ^ mix(i)) ^ v) ^ k);
}

#define BASE_MS 1767225600000ull /* 2026-01-01T00:00:00Z: generated times are seed-stable */

static const char *const products[] = {"laptop", "phone",    "tablet",  "monitor",
                                       "mouse",  "keyboard", "headset", "camera"};
static const char *const statuses[] = {"pending", "paid", "shipped", "delivered"};
static const char *const names[] = {"Ada", "Grace",    "Linus",  "Barbara",
                                    "Ken", "Margaret", "Dennis", "Frances"};
static const char *const pages[] = {"/", "/products", "/cart", "/checkout", "/about", "/blog"};
static const char *const referrers[] = {"https://www.google.com/", "https://news.ycombinator.com/",
                                        "", "https://twitter.com/"};
#define PICK(a, r) a[(r) % (sizeof(a) / sizeof(a[0]))]

/* The row of item `id` at version v of pattern p, as JSON members (no braces). */
static void row(struct sl_buf *b, int p, uint64_t seed, uint64_t id, uint64_t v)
{
    uint64_t r1 = rnd(seed, id, v, 1), r2 = rnd(seed, id, v, 2), r3 = rnd(seed, id, v, 3);
    if (p == 0) {
        unsigned qty = 1 + (unsigned)(r2 % 5);
        unsigned cents = 500 + (unsigned)(r3 % 150000);
        sl_buf_printf(b,
                      "\"order_id\":%llu,\"customer_id\":%llu,\"product\":\"%s\",\"quantity\":%u,"
                      "\"total\":%u.%02u,\"status\":\"%s\"",
                      (unsigned long long)id + 1, 1000ull + r1 % 9000, PICK(products, r1 >> 20),
                      qty, cents * qty / 100, cents * qty % 100, PICK(statuses, v + (r2 >> 30)));
    } else if (p == 1) {
        const char *name = PICK(names, r1);
        sl_buf_printf(b,
                      "\"user_id\":%llu,\"name\":\"%s\",\"email\":\"%s.%llu@example.com\","
                      "\"created_at\":%llu",
                      (unsigned long long)id + 1, name, name, (unsigned long long)(r2 % 100000),
                      (unsigned long long)(BASE_MS + id * 1000 + r3 % 1000));
    } else {
        sl_buf_printf(b,
                      "\"page_url\":\"https://example.com%s\",\"user_id\":%llu,\"timestamp\":%llu,"
                      "\"referrer\":\"%s\"",
                      PICK(pages, r1), 1 + (unsigned long long)(r2 % 10000),
                      (unsigned long long)(BASE_MS + id * 1000 + r3 % 1000), PICK(referrers, r3));
    }
}

int sl_datagen_event(struct sl_buf *json, int pattern, int cdc, const char *stream, uint64_t seed,
                     uint64_t i, uint32_t *flags)
{
    static const char *const tables[] = {"orders", "users", "pageviews"};
    *flags = 0;
    if (!cdc) {
        sl_buf_putc(json, '{');
        row(json, pattern, seed, i, 0);
        sl_buf_puts(json, ",\"stream\":");
        sl_buf_json_str(json, stream, strlen(stream));
        sl_buf_printf(json, ",\"event_id\":%llu}", (unsigned long long)i);
        return json->failed ? -1 : 0;
    }
    /* Event i acts on item i / 3: the first is its insert, the second an update, the third a
     * delete or (one time in two) a second update; so every update and delete follows the
     * insert of its item, and `before` is the item's previous version. */
    uint64_t id = i / 3, step = i % 3;
    char op = step == 0 ? 'c' : step == 1 ? 'u' : (rnd(seed, id, 9, 9) & 1) ? 'd' : 'u';
    sl_buf_printf(json, "{\"op\":\"%c\",\"before\":", op);
    if (op == 'c') {
        sl_buf_puts(json, "null");
    } else {
        sl_buf_putc(json, '{');
        row(json, pattern, seed, id, step - 1);
        sl_buf_putc(json, '}');
    }
    sl_buf_puts(json, ",\"after\":");
    if (op == 'd') {
        sl_buf_puts(json, "null");
        *flags = SL_REC_TOMBSTONE;
    } else {
        sl_buf_putc(json, '{');
        row(json, pattern, seed, id, step);
        sl_buf_putc(json, '}');
    }
    sl_buf_puts(json, ",\"source\":{\"connector\":\"datagen\",\"db\":");
    sl_buf_json_str(json, stream, strlen(stream));
    sl_buf_printf(json,
                  ",\"schema\":\"datagen\",\"table\":\"%s\",\"event_index\":%llu,"
                  "\"snapshot\":false},\"ts_ms\":%llu}",
                  tables[pattern], (unsigned long long)i, (unsigned long long)(BASE_MS + i * 1000));
    return json->failed ? -1 : 0;
}

struct gen {
    int pattern, cdc;
    char stream[256];
    uint64_t seed, next, max;
    double eps;
    uint64_t t0_ns, base; /* the rate counts from (t0, base) */
    struct sl_buf json, mp;
    struct sl_emit_rec *recs;
    uint32_t *offs;
};

#define GROUP 1000

static int dg_start(void **self, const struct sl_source_ctx *ctx, struct sl_err *err)
{
    struct gen *g = calloc(1, sizeof(*g));
    if (!g || !(g->recs = calloc(GROUP, sizeof(*g->recs))) ||
        !(g->offs = calloc(GROUP, sizeof(*g->offs)))) {
        if (g)
            free(g->recs);
        free(g);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    const json_t *c = ctx->config;
    const char *p = json_string_value(json_object_get(c, "pattern"));
    g->pattern = strcmp(p, "orders") == 0 ? 0 : strcmp(p, "users") == 0 ? 1 : 2;
    g->cdc = json_is_true(json_object_get(c, "cdc_mode"));
    snprintf(g->stream, sizeof(g->stream), "%s",
             json_string_value(json_object_get(c, "stream_name")));
    g->seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
    g->max = (uint64_t)json_integer_value(json_object_get(c, "max_events"));
    g->eps = json_number_value(json_object_get(c, "events_per_second"));
    if (ctx->position_len == 8)
        memcpy(&g->next, ctx->position, 8);
    g->t0_ns = sl_mono_ns();
    g->base = g->next;
    sl_buf_init(&g->json, 0);
    sl_buf_init(&g->mp, 0);
    *self = g;
    return 0;
}

/* Emits the events due at the configured rate (one group of at most GROUP), or waits for the
 * next one within timeout_ms. */
static enum sl_result dg_poll(void *self, struct sl_emitter *em, int timeout_ms, char *error,
                              size_t errlen)
{
    struct gen *g = self;
    if (g->max && g->next >= g->max)
        return SL_R_REJECT; /* max_events reached: finished */
    uint64_t now = sl_mono_ns();
    uint64_t due = g->base + (uint64_t)((double)(now - g->t0_ns) / 1e9 * g->eps) + 1;
    if (due <= g->next) {
        double wait_ms =
            ((double)(g->next + 1 - g->base) / g->eps) * 1000.0 - (double)(now - g->t0_ns) / 1e6;
        if (wait_ms > timeout_ms)
            wait_ms = timeout_ms;
        if (wait_ms > 0) {
            struct timespec ts = {(time_t)(wait_ms / 1000),
                                  (long)((uint64_t)wait_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL); /* pacing to the configured rate, not a retry */
        }
        return SL_R_OK;
    }
    uint64_t n = due - g->next;
    if (n > GROUP)
        n = GROUP;
    if (g->max && g->next + n > g->max)
        n = g->max - g->next;
    sl_buf_reset(&g->mp);
    uint32_t flags[GROUP];
    for (uint64_t k = 0; k < n; k++) {
        sl_buf_reset(&g->json);
        struct sl_jerr je;
        g->offs[k] = (uint32_t)g->mp.len;
        if (sl_datagen_event(&g->json, g->pattern, g->cdc, g->stream, g->seed, g->next + k,
                             &flags[k]) < 0 ||
            sl_json_to_mp((const char *)g->json.data, g->json.len, &g->mp, 16, &je) < 0) {
            snprintf(error, errlen, "event %llu cannot be encoded",
                     (unsigned long long)(g->next + k));
            return SL_R_FATAL;
        }
    }
    for (uint64_t k = 0; k < n; k++)
        g->recs[k] = (struct sl_emit_rec){
            .payload = g->mp.data + g->offs[k],
            .payload_len = (uint32_t)((k + 1 < n ? g->offs[k + 1] : g->mp.len) - g->offs[k]),
            .flags = flags[k]};
    uint64_t pos = g->next + n;
    int rc = em->emit(em, g->recs, (size_t)n, &pos, sizeof(pos));
    if (rc < 0) {
        snprintf(error, errlen, "the strand refused the events (%d)", rc);
        return SL_R_RETRY;
    }
    g->next = pos;
    return SL_R_OK;
}

static void dg_durable(void *self, const void *position, size_t len)
{
    (void)self; /* nothing upstream to acknowledge */
}

static void dg_stop(void *self)
{
    struct gen *g = self;
    if (!g)
        return;
    sl_buf_release(&g->json);
    sl_buf_release(&g->mp);
    free(g->recs);
    free(g->offs);
    free(g);
}

/* The next event index after the record: its event_id (or source.event_index) + 1. */
static int dg_position_of(const uint8_t *payload, size_t len, void *pos, size_t *pos_len)
{
    struct sl_buf j;
    sl_buf_init(&j, 0);
    size_t used;
    struct sl_jerr je;
    int rc = -1;
    if (sl_mp_to_json(payload, len, &used, &j, 16, &je) == 0) {
        json_t *o = json_loadb((const char *)j.data, j.len, 0, NULL);
        json_t *v = json_object_get(o, "event_id");
        if (!v)
            v = json_object_get(json_object_get(o, "source"), "event_index");
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            uint64_t next = (uint64_t)json_integer_value(v) + 1;
            memcpy(pos, &next, sizeof(next));
            *pos_len = sizeof(next);
            rc = 0;
        }
        json_decref(o);
    }
    sl_buf_release(&j);
    return rc;
}

static const struct sl_source_ops dg_ops = {.start = dg_start,
                                            .poll = dg_poll,
                                            .durable = dg_durable,
                                            .stop = dg_stop,
                                            .position_of = dg_position_of};

const struct sl_connector sl_conn_datagen = {
    .abi = SL_CONNECTOR_ABI,
    .name = "datagen",
    .direction = SL_INBOUND,
    .category = "utility",
    .description = "Synthetic orders, users or pageviews at a set rate (reproducible by seed).",
    .fields = f_datagen,
    .check_config = check_datagen,
    .source = &dg_ops,
};
