/* bench/mysql_cdc.sh's floors: what the two halves of Sluice's mysql-cdc cost on their own, on the
 * binlog files the bench's `mariadb-binlog --raw` wrote.
 *   decode: every event read as the connector reads it (header, CRC32, table maps once per
 *           transaction, each row decoded straight into its change envelope, one source block per
 *           table and transaction), records gathered in groups of GROUP bytes; no strand, no
 *           threads. The connector's work per row, with the network and the strand taken away.
 *   strand: the same envelopes (decoded beforehand, not timed) appended to a fresh strand in a
 *           temporary directory with the server's defaults (64 MiB segments, fsync, Merkle tree),
 *           one commit per group of GROUP bytes, all submitted and waited for: the strand's cost
 *           for these records with no source at all.
 * Usage: mysql_floor DATA_DIR BINLOG_FILE... ; prints "decode ... rows/s" and "strand ... rows/s".
 * Built from the project's objects (make build/bench/mysql_floor). */
#include "floor.h"

#include "connectors/mysql/binlog.h"
#include "core/err.h"
#include "strand/store.h"
#include "strand/strand.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GROUP (1u << 20)

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
    *n = p && len > 0 && fread(p, 1, (size_t)len, f) == (size_t)len ? (size_t)len : 0;
    fclose(f);
    return p;
}

/* The records: bytes in data, each one's end in ends; groups end where gends say. */
struct out {
    struct sl_buf data;
    size_t *ends, n, cap;
    size_t *gends, ng, gcap, gstart;
    int keep; /* 0: decode only (the buffer is reused once a group is full) */
};

static void add_end(size_t **a, size_t *n, size_t *cap, size_t v)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 4096;
        *a = realloc(*a, *cap * sizeof(**a));
        if (!*a)
            abort();
    }
    (*a)[(*n)++] = v;
}

/* Decodes every binlog file into o; returns the rows. */
static uint64_t decode(char **files, int nfiles, struct out *o)
{
    uint64_t rows = 0, txgen = 0;
    struct sl_my_table t = {0};
    int have = 0;
    struct sl_my_srcenc src;
    sl_buf_init(&src.b, 0);
    uint64_t src_gen = UINT64_MAX;
    for (int fi = 0; fi < nfiles; fi++) {
        size_t n;
        uint8_t *bin = slurp(files[fi], &n);
        if (!bin || n < 4 ||
            memcmp(bin,
                   "\xfe"
                   "bin",
                   4) != 0) {
            fprintf(stderr, "%s: not a binlog file\n", files[fi]);
            exit(1);
        }
        int checksum = 0;
        uint64_t tx_pos = 0;
        uint32_t tx_row = 0;
        char gtid[64] = "";
        for (size_t at = 4; at + SL_MY_HEADER_LEN <= n;) {
            uint32_t len = (uint32_t)bin[at + 9] | (uint32_t)bin[at + 10] << 8 |
                           (uint32_t)bin[at + 11] << 16 | (uint32_t)bin[at + 12] << 24;
            if (len < SL_MY_HEADER_LEN || at + len > n)
                break;
            struct sl_my_header h;
            const char *why;
            long body_len = sl_my_event(bin + at, len, checksum, &h, &why);
            const uint8_t *body = bin + at + SL_MY_HEADER_LEN;
            if (body_len < 0) {
                fprintf(stderr, "%s at %zu: %s\n", files[fi], at, why);
                exit(1);
            }
            if (h.type == SL_MY_FORMAT_DESCRIPTION) {
                sl_my_fde_checksum(body, len - SL_MY_HEADER_LEN, &checksum, &why);
            } else if (h.type == SL_MY_GTID) {
                struct sl_my_gtid g;
                sl_my_gtid(body, (size_t)body_len, &g, &why);
                snprintf(gtid, sizeof(gtid), "%u-%u-%llu", g.domain, h.server_id,
                         (unsigned long long)g.seq);
                tx_pos = at, tx_row = 0, txgen++;
            } else if (h.type == SL_MY_TABLE_MAP) {
                if (have)
                    sl_my_table_release(&t);
                have = sl_my_table_parse(body, (size_t)body_len, &t, &why) == 0;
                src_gen = UINT64_MAX;
            } else if (have && ((h.type >= SL_MY_WRITE_ROWS_V1 && h.type <= SL_MY_DELETE_ROWS_V1) ||
                                (h.type >= SL_MY_WRITE_ROWS && h.type <= SL_MY_DELETE_ROWS))) {
                struct sl_my_rows r;
                if (sl_my_rows_begin(h.type, body, (size_t)body_len, &r, &why) < 0)
                    abort();
                if (src_gen != txgen) {
                    struct sl_my_source s = {.db = t.db,
                                             .table = t.table,
                                             .file = files[fi],
                                             .pos = tx_pos,
                                             .server_id = h.server_id,
                                             .gtid = gtid,
                                             .ts_ms = (int64_t)h.timestamp * 1000};
                    sl_my_source_encode(&src, &s);
                    src_gen = txgen;
                }
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
                int rc;
                while ((rc = sl_my_change_next(&o->data, &r, &t, &src, tx_row, ms, &why)) == 1) {
                    tx_row++, rows++;
                    add_end(&o->ends, &o->n, &o->cap, o->data.len);
                }
                if (rc < 0)
                    abort();
            } else if (h.type == SL_MY_XID) {
                if (have)
                    sl_my_table_release(&t); /* the connector maps tables again per transaction */
                have = 0;
                if (o->data.len - o->gstart >= GROUP) {
                    add_end(&o->gends, &o->ng, &o->gcap, o->n);
                    o->gstart = o->data.len;
                    if (!o->keep) {
                        sl_buf_reset(&o->data);
                        o->n = o->gstart = 0;
                    }
                }
            }
            at += len;
        }
        free(bin);
    }
    if (o->n && (!o->ng || o->gends[o->ng - 1] != o->n))
        add_end(&o->gends, &o->ng, &o->gcap, o->n);
    if (have)
        sl_my_table_release(&t);
    sl_buf_release(&src.b);
    return rows;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: mysql_floor DATA_DIR BINLOG_FILE...\n");
        return 2;
    }
    struct out o = {.keep = 0};
    sl_buf_init(&o.data, 0);
    uint64_t t0 = floor_now_ns();
    double c0 = floor_cpu_s();
    uint64_t rows = decode(argv + 2, argc - 2, &o);
    double dt = (double)(floor_now_ns() - t0) / 1e9;
    printf("decode: %llu rows in %.3f s (CPU %.3f s), %.0f rows/s\n", (unsigned long long)rows, dt,
           floor_cpu_s() - c0, (double)rows / dt);
    sl_buf_release(&o.data);
    free(o.ends);
    free(o.gends);

    struct out k = {.keep = 1};
    sl_buf_init(&k.data, 0);
    decode(argv + 2, argc - 2, &k);
    struct sl_store *st;
    struct sl_err err = {0};
    struct sl_store_opts so = {.dir = argv[1], .segment_bytes = 64u << 20, .durable = 1};
    struct sl_strand *s;
    if (sl_store_open(&st, &so, NULL, &err) < 0 ||
        sl_store_strand(st, "floor", 5, 1, &s, &err) < 0) {
        fprintf(stderr, "store: %s\n", err.msg);
        return 1;
    }
    struct sl_append *apps = calloc(k.ng, sizeof(*apps));
    struct sl_append_rec *recs = calloc(k.n, sizeof(*recs));
    uint8_t(*hashes)[SL_HASH_LEN] = calloc(k.n, SL_HASH_LEN);
    for (size_t i = 0; i < k.n; i++) {
        size_t from = i ? k.ends[i - 1] : 0;
        recs[i] = (struct sl_append_rec){.payload = k.data.data + from,
                                         .payload_len = (uint32_t)(k.ends[i] - from),
                                         .source = "mysql-floor",
                                         .source_len = 11};
    }
    for (size_t g = 0, first = 0; g < k.ng; first = k.gends[g++])
        apps[g] = (struct sl_append){
            .recs = recs + first, .n = k.gends[g] - first, .hashes = hashes + first};
    t0 = floor_now_ns();
    c0 = floor_cpu_s();
    int failed = floor_submit_all(s, apps, k.ng);
    dt = (double)(floor_now_ns() - t0) / 1e9;
    printf("strand: %zu records (%.1f MB of payload, %zu groups) in %.3f s (CPU %.3f s), %.0f "
           "rows/s%s\n",
           k.n, (double)k.data.len / 1e6, k.ng, dt, floor_cpu_s() - c0, (double)k.n / dt,
           failed ? " (FAILED)" : "");
    sl_store_close(st);
    free(apps);
    free(recs);
    free(hashes);
    free(k.ends);
    free(k.gends);
    sl_buf_release(&k.data);
    return failed ? 1 : 0;
}
