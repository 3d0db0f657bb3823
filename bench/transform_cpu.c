/* bench/transform_cpu.c: CPU time per record (this thread's, so a loaded machine changes it
 * little) of the two per-record costs bench/pipeline.sh measures end to end:
 *   - the 5-transform chain on datagen orders, on the reference path (MessagePack -> jansson
 *     tree -> MessagePack) and on the path sl_transforms_apply_mp takes;
 *   - the `where=value.n < 0` test on the scan's records ({"n", "status", "amount"}).
 * Build and run: make build/bench/transform_cpu && build/bench/transform_cpu [N=200000] */
#include "connectors/datagen/datagen.h"
#include "expr/expr.h"
#include "formats/json_mp.h"
#include "transform/transform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

#define CHAIN                                                                                      \
    "[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.quantity >= 0 && value.status != "    \
    "\\\"x\\\"\"}},{\"type\":\"MaskField\",\"config\":{\"fields\":[\"customer_id\"]}},"            \
    "{\"type\":\"ReplaceField\",\"config\":{\"rename\":{\"total\":\"amount\"},\"exclude\":["       \
    "\"stream\"]}},{\"type\":\"InsertField\",\"config\":{\"static\":{\"origin\":\"bench\"}}},"     \
    "{\"type\":\"Cast\",\"config\":{\"spec\":{\"quantity\":\"string\"}}}]"

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    json_t *c = json_loads(CHAIN, 0, NULL);
    struct sl_err err = {0};
    struct sl_transforms *t = sl_transforms_compile(c, &err);
    json_decref(c);
    /* 1000 distinct records, used round robin (the sink's batch) */
    enum { K = 1000 };
    struct sl_buf mp[K], scan[K], j, out;
    sl_buf_init(&j, 0);
    sl_buf_init(&out, 0);
    for (int i = 0; i < K; i++) {
        uint32_t flags;
        sl_buf_init(&mp[i], 0);
        sl_buf_init(&scan[i], 0);
        sl_buf_reset(&j);
        sl_datagen_event(&j, 0, 0, "bench", 42, (uint64_t)i, &flags);
        sl_json_to_mp((const char *)j.data, j.len, &mp[i], 64, NULL);
        sl_buf_reset(&j);
        sl_buf_printf(&j, "{\"n\": %d, \"status\": \"paid\", \"amount\": %d}", i, i % 997);
        sl_json_to_mp((const char *)j.data, j.len, &scan[i], 64, NULL);
    }
    struct sl_expr_rec r = {.source = "gen", .source_len = 3, .strand = "bench"};
    char why[256];
    for (int pass = argc > 2; pass < 2; pass++) { /* a 2nd argument: the fast path only */
        double t0 = cpu_ns();
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            const struct sl_buf *m = &mp[i % K];
            enum sl_tr_result res =
                pass ? sl_transforms_apply_mp(t, m->data, m->len, &r, &out, why, sizeof(why))
                     : sl_transforms_apply_mp_tree(t, m->data, m->len, &r, &out, why, sizeof(why));
            kept += res == SL_TR_KEEP;
        }
        double ns = (cpu_ns() - t0) / (double)n;
        printf("chain_%s_ns_per_record=%.0f kept=%zu\n", pass ? "fast" : "tree", ns, kept);
    }
    char msg[200];
    struct sl_expr *e = sl_expr_compile("value.n < 0", 11, msg, sizeof(msg));
    double t0 = cpu_ns();
    size_t hits = 0;
    size_t wn = argc > 2 ? 0 : n * 5; /* fast-only runs skip it (for perf) */
    for (size_t i = 0; i < wn; i++) {
        r.mp = scan[i % K].data;
        r.mp_len = scan[i % K].len;
        r.seq = i;
        hits += (size_t)sl_expr_match(e, &r);
    }
    printf("where_ns_per_record=%.1f hits=%zu\n", (cpu_ns() - t0) / (double)(wn ? wn : 1), hits);
    sl_expr_free(e);
    for (int i = 0; i < K; i++) {
        sl_buf_release(&mp[i]);
        sl_buf_release(&scan[i]);
    }
    sl_buf_release(&j);
    sl_buf_release(&out);
    sl_transforms_free(t);
    return 0;
}
