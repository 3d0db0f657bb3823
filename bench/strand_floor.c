/* The strand's own cost per record, with no source and no HTTP: N synthetic records of L bytes
 * (JSON-like text), appended to a fresh strand in DATA_DIR with the server's defaults (64 MiB
 * segments, fsync, Merkle tree unless NO_TREE=1 in the environment), G records per append, all
 * submitted at once and waited for. Prints wall time, process CPU and records/s; what the batched
 * ingest (bench/ingest.sh) and the CDC drains (bench/mysql_cdc.sh) can reach at most.
 * Usage: strand_floor DATA_DIR [N [L [G]]]. Built from the project's objects
 * (make build/bench/strand_floor). */
#include "floor.h"

#include "core/err.h"
#include "strand/store.h"
#include "strand/strand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: strand_floor DATA_DIR [N [L [G]]]\n");
        return 2;
    }
    size_t n = argc > 2 ? strtoull(argv[2], NULL, 10) : 1000000;
    size_t len = argc > 3 ? strtoull(argv[3], NULL, 10) : 200;
    size_t g = argc > 4 ? strtoull(argv[4], NULL, 10) : 1000;
    if (!n || len < 16 || !g) {
        fprintf(stderr, "strand_floor: N, G must be > 0 and L >= 16\n");
        return 2;
    }
    uint8_t *data = malloc(n * len);
    struct sl_append_rec *recs = calloc(n, sizeof(*recs));
    uint8_t(*hashes)[SL_HASH_LEN] = calloc(n, SL_HASH_LEN);
    size_t ng = (n + g - 1) / g;
    struct sl_append *apps = calloc(ng, sizeof(*apps));
    if (!data || !recs || !hashes || !apps)
        return 1;
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = data + i * len;
        int k = snprintf((char *)p, len, "{\"id\":%zu,\"v\":\"", i);
        memset(p + k, 'a' + (int)(i % 26), len - (size_t)k - 2);
        memcpy(p + len - 2, "\"}", 2);
        recs[i] = (struct sl_append_rec){
            .payload = p, .payload_len = (uint32_t)len, .source = "floor", .source_len = 5};
    }
    struct sl_store *st;
    struct sl_err err = {0};
    const char *nt = getenv("NO_TREE");
    struct sl_store_opts so = {
        .dir = argv[1], .segment_bytes = 64u << 20, .durable = 1, .no_tree = nt && *nt == '1'};
    struct sl_strand *s;
    if (sl_store_open(&st, &so, NULL, &err) < 0 ||
        sl_store_strand(st, "floor", 5, 1, &s, &err) < 0) {
        fprintf(stderr, "store: %s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < ng; i++) {
        size_t first = i * g;
        apps[i] = (struct sl_append){
            .recs = recs + first, .n = first + g <= n ? g : n - first, .hashes = hashes + first};
    }
    uint64_t t0 = floor_now_ns();
    double c0 = floor_cpu_s();
    int failed = floor_submit_all(s, apps, ng);
    double dt = (double)(floor_now_ns() - t0) / 1e9, cpu = floor_cpu_s() - c0;
    printf("strand: %zu records of %zu bytes, %zu per append: %.3f s (CPU %.3f s, %.2f us/record), "
           "%.0f records/s%s\n",
           n, len, g, dt, cpu, cpu * 1e6 / (double)n, (double)n / dt, failed ? " (FAILED)" : "");
    sl_store_close(st);
    free(apps);
    free(hashes);
    free(recs);
    free(data);
    return failed ? 1 : 0;
}
