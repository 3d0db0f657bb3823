/* The MessagePack fast path of the transforms (src/transform/tr_fast.c) against the reference
 * path (jansson tree): for many chains x many payloads, sl_transforms_apply_mp and
 * sl_transforms_apply_mp_tree must give the same result, the same bytes on KEEP and the same
 * reason on FAIL. Payloads: datagen's orders/users/pageviews and CDC events, random JSON
 * (canonical MessagePack), random MessagePack (any encoding: float32, big headers, bin, repeated
 * keys) and bytes flipped at random. Chains: the benchmark's, the integration tests', and random
 * ones. Also checks that the fast path does take the common payloads. */
#include "connectors/datagen/datagen.h"
#include "formats/json_mp.h"
#include "t.h"
#include "transform/tr_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static const char *const g_keys[] = {"a",      "b",           "total",    "amount", "status",
                                     "stream", "customer_id", "quantity", "x",      "origin",
                                     "ts",     "é",           "",         "c.d",    "n"};
#define NKEYS (sizeof(g_keys) / sizeof(g_keys[0]))

static void rand_json(struct sl_buf *b, int depth);

static void rand_scalar(struct sl_buf *b)
{
    static const char *const lits[] = {"null",
                                       "true",
                                       "false",
                                       "0",
                                       "-1",
                                       "127",
                                       "128",
                                       "-33",
                                       "255",
                                       "256",
                                       "65536",
                                       "-129",
                                       "-32769",
                                       "4294967296",
                                       "-2147483649",
                                       "9223372036854775807",
                                       "18446744073709551615",
                                       "1.5",
                                       "-0.0",
                                       "1e300",
                                       "2.0",
                                       "\"\"",
                                       "\"paid\"",
                                       "\"x\"",
                                       "\"12\"",
                                       "\"-7\"",
                                       "\"true\"",
                                       "\"3.25\"",
                                       "\"abc\\u00e9\"",
                                       "\"a\\u0000b\"",
                                       "\"2026-01-01T00:00:00Z\"",
                                       "12345"};
    if (rnd() % 8 == 0) { /* a long string: str8 or str16 */
        sl_buf_putc(b, '"');
        size_t n = rnd() % 300;
        for (size_t i = 0; i < n; i++)
            sl_buf_putc(b, (uint8_t)('a' + i % 26));
        sl_buf_putc(b, '"');
        return;
    }
    sl_buf_puts(b, lits[rnd() % (sizeof(lits) / sizeof(lits[0]))]);
}

static void rand_member_value(struct sl_buf *b, int depth)
{
    if (depth > 0 && rnd() % 5 == 0)
        rand_json(b, depth - 1);
    else
        rand_scalar(b);
}

/* A random JSON object (or, rarely, array) with keys from g_keys, repeats allowed sometimes. */
static void rand_json(struct sl_buf *b, int depth)
{
    int arr = rnd() % 6 == 0;
    sl_buf_putc(b, arr ? '[' : '{');
    size_t n = rnd() % (rnd() % 10 == 0 ? 20 : 7);
    int dups = rnd() % 4 == 0;
    uint32_t used = 0;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        size_t ki = rnd() % NKEYS;
        if (!arr && !dups && (used >> ki & 1))
            continue;
        used |= 1u << ki;
        if (k++)
            sl_buf_putc(b, ',');
        if (!arr) {
            sl_buf_json_str(b, g_keys[ki], strlen(g_keys[ki]));
            sl_buf_putc(b, ':');
        }
        rand_member_value(b, depth);
    }
    sl_buf_putc(b, arr ? ']' : '}');
}

/* Random MessagePack of any encoding (not only sl_json_to_mp's). */
static void rand_mp(struct sl_buf *b, int depth)
{
    uint8_t t[9];
    switch (rnd() % (depth > 0 ? 14 : 11)) {
    case 0:
        sl_buf_putc(b, (uint8_t)(rnd() % 3 == 0 ? 0xc1 : 0xc0 + rnd() % 4));
        break;
    case 1: /* any int encoding, small or big values */
        t[0] = (uint8_t)(0xcc + rnd() % 8);
        for (int i = 1; i < 9; i++)
            t[i] = rnd() % 3 ? 0 : (uint8_t)rnd();
        sl_buf_append(b, t, 1 + (1u << (t[0] & 3)));
        break;
    case 2:
        sl_buf_putc(b, (uint8_t)rnd());
        break;
    case 3: { /* float32 / float64, NaN sometimes */
        double d = rnd() % 5 == 0 ? NAN : (double)(int64_t)rnd() / 1e6;
        if (rnd() % 2) {
            float f = (float)d;
            uint32_t u;
            memcpy(&u, &f, 4);
            t[0] = 0xca;
            for (int i = 0; i < 4; i++)
                t[1 + i] = (uint8_t)(u >> (24 - 8 * i));
            sl_buf_append(b, t, 5);
        } else {
            sl_mp_write_double(b, d);
        }
        break;
    }
    case 4:
    case 5: { /* strings: fixstr or str8 for short ones, invalid UTF-8 sometimes */
        size_t n = rnd() % 40;
        if (rnd() % 3 == 0)
            sl_buf_putc(b, 0xd9), sl_buf_putc(b, (uint8_t)n);
        else if (n < 32)
            sl_buf_putc(b, (uint8_t)(0xa0 | n));
        else
            sl_buf_putc(b, 0xd9), sl_buf_putc(b, (uint8_t)n);
        for (size_t i = 0; i < n; i++)
            sl_buf_putc(b, rnd() % 30 == 0 ? (uint8_t)rnd() : (uint8_t)('a' + rnd() % 26));
        break;
    }
    case 6: /* bin */
        sl_buf_putc(b, 0xc4), sl_buf_putc(b, 2), sl_buf_putc(b, 1), sl_buf_putc(b, 2);
        break;
    case 7:
        sl_mp_write_int(b, (int64_t)rnd() >> (rnd() % 64));
        break;
    case 8:
    case 9:
    case 10:
        sl_mp_write_str(b, g_keys[rnd() % NKEYS], 1);
        break;
    case 11: { /* array, maybe array16 */
        uint32_t n = (uint32_t)(rnd() % 5);
        if (rnd() % 4 == 0)
            sl_buf_putc(b, 0xdc), sl_buf_putc(b, 0), sl_buf_putc(b, (uint8_t)n);
        else
            sl_mp_write_array(b, n);
        for (uint32_t i = 0; i < n; i++)
            rand_mp(b, depth - 1);
        break;
    }
    default: { /* map, maybe map16, keys from the pool (repeats possible) */
        uint32_t n = (uint32_t)(rnd() % 6);
        if (rnd() % 4 == 0)
            sl_buf_putc(b, 0xde), sl_buf_putc(b, 0), sl_buf_putc(b, (uint8_t)n);
        else
            sl_mp_write_map(b, n);
        for (uint32_t i = 0; i < n; i++) {
            const char *k = g_keys[rnd() % NKEYS];
            sl_mp_write_str(b, k, strlen(k));
            rand_mp(b, depth - 1);
        }
    }
    }
}

static const struct sl_expr_rec g_rec = {
    .source = "src", .source_len = 3, .strand = "s", .seq = 5, .timestamp_ms = 1700000000123ull};

static long g_cases, g_fast, g_canon;

/* Both paths on one payload; a check only when they differ (and a few totals at the end). */
static void compare(const struct sl_transforms *t, const char *chain, const uint8_t *mp, size_t len,
                    int canonical)
{
    struct sl_buf a, b;
    sl_buf_init(&a, 0);
    sl_buf_init(&b, 0);
    char wa[256] = "", wb[256] = "";
    enum sl_tr_result ra = sl_transforms_apply_mp(t, mp, len, &g_rec, &a, wa, sizeof(wa));
    enum sl_tr_result rb = sl_transforms_apply_mp_tree(t, mp, len, &g_rec, &b, wb, sizeof(wb));
    int same = ra == rb &&
               (ra != SL_TR_KEEP || (a.len == b.len && !memcmp(a.data, b.data, a.len))) &&
               (ra != SL_TR_FAIL || !strcmp(wa, wb));
    g_cases++;
    if (t->fast) {
        struct sl_buf c;
        sl_buf_init(&c, 0);
        g_fast += sl_tr_fast_apply(t, mp, len, &g_rec, &c) != SL_TRF_OTHER;
        g_canon += canonical;
        sl_buf_release(&c);
    }
    if (!same) {
        T_CHECK(0, "fast == tree for %s on %s: %d/%d %s | %s", chain, t_hex(mp, len), ra, rb, wa,
                wb);
        printf("# fast %s\n", t_hex(a.data, a.len));
        printf("# tree %s\n", t_hex(b.data, b.len));
    }
    sl_buf_release(&a);
    sl_buf_release(&b);
}

static const char *const g_chains[] = {
    /* bench/pipeline.sh */
    "[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.quantity >= 0 && value.status != "
    "\\\"x\\\"\"}},{\"type\":\"MaskField\",\"config\":{\"fields\":[\"customer_id\"]}},"
    "{\"type\":\"ReplaceField\",\"config\":{\"rename\":{\"total\":\"amount\"},\"exclude\":["
    "\"stream\"]}},{\"type\":\"InsertField\",\"config\":{\"static\":{\"origin\":\"bench\"}}},"
    "{\"type\":\"Cast\",\"config\":{\"spec\":{\"quantity\":\"string\"}}}]",
    /* tests/integration/test_pipelines.py */
    "[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.status != 'pending'\"}},"
    "{\"type\":\"InsertField\",\"config\":{\"static\":{\"origin\":\"rivven\"}}}]",
    "[{\"type\":\"Cast\",\"config\":{\"spec\":{\"email\":\"int64\"}}}]",
    "[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.quantity >= 2 && value.status in "
    "['shipped', 'delivered']\"}},{\"type\":\"MaskField\",\"config\":{\"fields\":["
    "\"customer_id\"],\"mask_char\":\"#\"}},{\"type\":\"ReplaceField\",\"config\":{\"rename\":{"
    "\"total\":\"amount\"},\"exclude\":[\"stream\"]}},{\"type\":\"Cast\",\"config\":{\"spec\":{"
    "\"quantity\":\"string\"}}}]",
    "[{\"type\":\"Cast\",\"config\":{\"spec\":{\"status\":\"boolean\"}}}]",
    "[{\"type\":\"Filter\",\"config\":{\"condition\":\"true\"}}]",
    "[{\"type\":\"ExtractNewRecordState\",\"config\":{\"delete.handling.mode\":\"rewrite\","
    "\"add.fields\":[\"op\",\"table\"]}}]",
    /* every step, in odd orders, Filters after edits */
    "[{\"type\":\"ReplaceField\",\"config\":{\"include\":[\"b\",\"a\",\"b\",\"total\","
    "\"zz\"]}},{\"type\":\"Filter\",\"config\":{\"condition\":\"!exists(value.stream)\"}}]",
    "[{\"type\":\"ReplaceField\",\"config\":{\"rename\":{\"a\":\"b\",\"b\":\"a\",\"x\":\"x\"}}},"
    "{\"type\":\"Filter\",\"config\":{\"condition\":\"value.a != 1\",\"action\":\"drop\"}}]",
    "[{\"type\":\"InsertField\",\"config\":{\"static\":{\"a\":{\"k\":[1,2.5,null]},\"new\":"
    "true},\"timestamp\":{\"field\":\"ts\"}}},{\"type\":\"MaskField\",\"config\":{\"fields\":["
    "\"a\",\"ts\",\"b\",\"missing\"]}},{\"type\":\"Filter\",\"config\":{\"condition\":"
    "\"length(value.a) == 8 || value.ts == '********'\"}}]",
    "[{\"type\":\"Cast\",\"config\":{\"spec\":{\"a\":\"int64\",\"b\":\"float64\",\"x\":"
    "\"string\",\"n\":\"boolean\",\"total\":\"string\",\"status\":\"int64\"}}}]",
    "[{\"type\":\"Cast\",\"config\":{\"spec\":{\"a\":\"string\",\"b\":\"string\",\"x\":"
    "\"float64\",\"n\":\"int64\",\"quantity\":\"boolean\"}}},{\"type\":\"Filter\",\"config\":{"
    "\"condition\":\"value.a != '1' && value.b in ['true', '2.0', 'null']\",\"action\":"
    "\"drop\"}}]",
    "[{\"type\":\"MaskField\",\"config\":{\"fields\":[\"c.d\",\"a\"]}}]",
    "[{\"type\":\"InsertField\",\"config\":{\"static\":{\"c.d\":1}}}]",
    "[{\"type\":\"TimestampConverter\",\"config\":{\"field\":\"ts\",\"target.type\":\"string\"}},"
    "{\"type\":\"Cast\",\"config\":{\"spec\":{\"ts\":\"string\"}}}]",
    "[{\"type\":\"MaskField\",\"config\":{\"fields\":[\"status\",\"\"],\"mask_char\":\"x\"}},"
    "{\"type\":\"ReplaceField\",\"config\":{\"exclude\":[\"a\",\"\"],\"rename\":{\"status\":"
    "\"\"}}},{\"type\":\"InsertField\",\"config\":{\"static\":{\"\":\"e\",\"é\":-5}}}]",
};
#define NCHAINS (sizeof(g_chains) / sizeof(g_chains[0]))

/* A random chain of plannable steps over g_keys. */
static char *rand_chain(void)
{
    static const char *const steps[] = {
        "{\"type\":\"Filter\",\"config\":{\"condition\":\"value['%s'] != 'paid' || "
        "exists(value['%s'])\"}}",
        "{\"type\":\"Filter\",\"config\":{\"condition\":\"value['%s'] < 100 && value['%s'] != "
        "null\","
        "\"action\":\"drop\"}}",
        "{\"type\":\"MaskField\",\"config\":{\"fields\":[\"%s\",\"%s\"]}}",
        "{\"type\":\"ReplaceField\",\"config\":{\"rename\":{\"%s\":\"%s\"}}}",
        "{\"type\":\"ReplaceField\",\"config\":{\"exclude\":[\"%s\"],\"include\":[\"%s\",\"a\","
        "\"b\",\"total\",\"status\"]}}",
        "{\"type\":\"InsertField\",\"config\":{\"static\":{\"%s\":\"s\",\"%s\":[1]}}}",
        "{\"type\":\"InsertField\",\"config\":{\"timestamp\":{\"field\":\"%s\"},\"static\":{\"%s\":"
        "null}}}",
        "{\"type\":\"Cast\",\"config\":{\"spec\":{\"%s\":\"string\",\"%s\":\"int64\"}}}",
        "{\"type\":\"Cast\",\"config\":{\"spec\":{\"%s\":\"float64\",\"%s\":\"boolean\"}}}",
    };
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_putc(&b, '[');
    int n = 1 + (int)(rnd() % 5);
    for (int i = 0; i < n; i++) {
        const char *k1 = g_keys[rnd() % (NKEYS - 2)], *k2 = g_keys[rnd() % (NKEYS - 2)];
        if (!strcmp(k1, k2) && strchr(steps[0], 'x'))
            k2 = "zz";
        sl_buf_printf(&b, "%s", i ? "," : "");
        sl_buf_printf(&b, steps[rnd() % (sizeof(steps) / sizeof(steps[0]))], k1, k2);
    }
    sl_buf_puts(&b, "]");
    sl_buf_putc(&b, 0);
    return (char *)b.data;
}

/* The payloads: canonical ones from JSON, then random MessagePack, then flipped bytes. */
static void payloads(const struct sl_transforms *t, const char *chain, int count)
{
    struct sl_buf j, m;
    sl_buf_init(&j, 0);
    sl_buf_init(&m, 0);
    for (int i = 0; i < count; i++) {
        sl_buf_reset(&j);
        sl_buf_reset(&m);
        uint32_t flags;
        int kind = i % 4;
        if (kind == 0)
            sl_datagen_event(&j, (int)(rnd() % 3), rnd() % 4 == 0, "st", 7, (uint64_t)i, &flags);
        else
            rand_json(&j, 3);
        if (sl_json_to_mp((const char *)j.data, j.len, &m, 64, NULL) < 0)
            continue;
        compare(t, chain, m.data, m.len, 1);
        if (i % 3 == 0 && m.len) { /* a flipped byte */
            m.data[rnd() % m.len] ^= (uint8_t)(1u << (rnd() % 8));
            compare(t, chain, m.data, m.len, 0);
        }
        if (i % 3 == 1) {
            sl_buf_reset(&m);
            if (rnd() % 2)
                rand_mp(&m, 3);
            else { /* a map of random values, to reach the steps more often */
                uint32_t n = (uint32_t)(rnd() % 7);
                sl_mp_write_map(&m, n);
                for (uint32_t k = 0; k < n; k++) {
                    const char *key = g_keys[rnd() % NKEYS];
                    sl_mp_write_str(&m, key, strlen(key));
                    rand_mp(&m, 2);
                }
            }
            compare(t, chain, m.data, m.len, 0);
            if (m.len > 1) /* truncated */
                compare(t, chain, m.data, m.len - 1, 0);
        }
    }
    sl_buf_release(&j);
    sl_buf_release(&m);
}

static struct sl_transforms *compile(const char *chain)
{
    json_error_t je;
    json_t *c = json_loads(chain, 0, &je);
    struct sl_err err = {0};
    struct sl_transforms *t = c ? sl_transforms_compile(c, &err) : NULL;
    json_decref(c);
    if (!t)
        T_CHECK(0, "compiles: %s (%s %s)", chain, je.text, err.msg);
    return t;
}

int main(void)
{
    long fails_before = t_failed_;
    for (size_t i = 0; i < NCHAINS; i++) {
        struct sl_transforms *t = compile(g_chains[i]);
        if (!t)
            continue;
        payloads(t, g_chains[i], 6000);
        sl_transforms_free(t);
    }
    int fast_chains = 0;
    for (int i = 0; i < 300; i++) {
        char *chain = rand_chain();
        struct sl_transforms *t = compile(chain);
        if (t) {
            fast_chains += t->fast;
            payloads(t, chain, 300);
            sl_transforms_free(t);
        }
        free(chain);
    }
    T_CHECK(t_failed_ == fails_before, "fast == tree on all %ld payload x chain cases", g_cases);
    T_CHECK(fast_chains == 300, "every random chain of top-level steps runs fast (%d)",
            fast_chains);
    T_CHECK(g_fast * 10 >= g_canon * 8, "the fast path takes most canonical payloads (%ld of %ld)",
            g_fast, g_canon);

    /* the benchmark's chain and a datagen order: fast, and golden */
    struct sl_transforms *t = compile(g_chains[0]);
    struct sl_buf j, m, out;
    sl_buf_init(&j, 0);
    sl_buf_init(&m, 0);
    sl_buf_init(&out, 0);
    uint32_t flags;
    sl_datagen_event(&j, 0, 0, "st", 42, 3, &flags);
    sl_json_to_mp((const char *)j.data, j.len, &m, 64, NULL);
    T_EQ_INT(sl_tr_fast_apply(t, m.data, m.len, &g_rec, &out), SL_TRF_KEEP,
             "the bench chain on an order: fast");
    sl_buf_reset(&j);
    size_t used;
    sl_mp_to_json(out.data, out.len, &used, &j, 64, NULL);
    sl_buf_putc(&j, 0);
    printf("# %s\n", (char *)j.data);
    T_CHECK(strstr((char *)j.data, "\"customer_id\":\"********\"") &&
                strstr((char *)j.data, "\"origin\":\"bench\"}") &&
                strstr((char *)j.data, "\"amount\":") && !strstr((char *)j.data, "\"stream\"") &&
                strstr((char *)j.data, "\"quantity\":\""),
            "the bench chain's result: masked, renamed, excluded, inserted, cast");
    sl_buf_release(&j);
    sl_buf_release(&m);
    sl_buf_release(&out);
    sl_transforms_free(t);
    return T_DONE();
}
