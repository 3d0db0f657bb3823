/* libFuzzer target for the transforms' MessagePack fast path (src/transform/tr_fast.c), which
 * reads payloads from the strand (any bytes a source or a peer wrote): the first input byte
 * picks a chain, the rest is the payload. Property: sl_transforms_apply_mp (fast path when it
 * can) and sl_transforms_apply_mp_tree (the jansson reference) agree exactly: the same result,
 * the same bytes on KEEP, the same reason on FAIL. No crash, no leak. */
#include "transform/transform.h"

#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

static const char *const g_chains[] = {
    "[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.quantity >= 0 && value.status != "
    "\\\"x\\\"\"}},{\"type\":\"MaskField\",\"config\":{\"fields\":[\"customer_id\"]}},"
    "{\"type\":\"ReplaceField\",\"config\":{\"rename\":{\"total\":\"amount\"},\"exclude\":["
    "\"stream\"]}},{\"type\":\"InsertField\",\"config\":{\"static\":{\"origin\":\"bench\"}}},"
    "{\"type\":\"Cast\",\"config\":{\"spec\":{\"quantity\":\"string\"}}}]",
    "[{\"type\":\"ReplaceField\",\"config\":{\"include\":[\"b\",\"a\",\"b\"],\"rename\":{\"a\":"
    "\"b\",\"b\":\"a\"}}},{\"type\":\"Filter\",\"config\":{\"condition\":\"value.a != 1 || "
    "exists(value.b.c)\"}}]",
    "[{\"type\":\"InsertField\",\"config\":{\"static\":{\"a\":{\"k\":[1,2.5]}},\"timestamp\":{"
    "\"field\":\"t\"}}},{\"type\":\"MaskField\",\"config\":{\"fields\":[\"a\",\"b\",\"t\"]}},"
    "{\"type\":\"Filter\",\"config\":{\"condition\":\"length(value.a) == 8\",\"action\":"
    "\"drop\"}}]",
    "[{\"type\":\"Cast\",\"config\":{\"spec\":{\"a\":\"int64\",\"b\":\"float64\",\"c\":"
    "\"string\",\"d\":\"boolean\"}}},{\"type\":\"Cast\",\"config\":{\"spec\":{\"a\":\"string\","
    "\"b\":\"boolean\",\"c\":\"int64\",\"d\":\"float64\"}}}]",
    "[{\"type\":\"ReplaceField\",\"config\":{\"exclude\":[\"a\"]}},{\"type\":\"Filter\","
    "\"config\":{\"condition\":\"value.b in ['x', 1, true, null] && value.c[0] < 2\"}}]",
};
#define NCHAINS (sizeof(g_chains) / sizeof(g_chains[0]))

static struct sl_transforms *g_t[NCHAINS];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_t[0])
        for (size_t i = 0; i < NCHAINS; i++) {
            json_t *c = json_loads(g_chains[i], 0, NULL);
            struct sl_err err = {0};
            if (!c || !(g_t[i] = sl_transforms_compile(c, &err)))
                abort();
            json_decref(c);
        }
    if (size < 1)
        return 0;
    const struct sl_transforms *t = g_t[data[0] % NCHAINS];
    struct sl_expr_rec r = {.source = "s", .source_len = 1, .strand = "x", .timestamp_ms = 7};
    struct sl_buf a, b;
    sl_buf_init(&a, 0);
    sl_buf_init(&b, 0);
    char wa[256] = "", wb[256] = "";
    enum sl_tr_result ra = sl_transforms_apply_mp(t, data + 1, size - 1, &r, &a, wa, sizeof(wa));
    enum sl_tr_result rb =
        sl_transforms_apply_mp_tree(t, data + 1, size - 1, &r, &b, wb, sizeof(wb));
    if (ra != rb || (ra == SL_TR_KEEP && (a.len != b.len || memcmp(a.data, b.data, a.len))) ||
        (ra == SL_TR_FAIL && strcmp(wa, wb)))
        abort();
    sl_buf_release(&a);
    sl_buf_release(&b);
    return 0;
}
