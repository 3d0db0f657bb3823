/* GET /v1/health and GET /metrics (Prometheus text format 0.0.4). */
#include "api/api.h"
#include "core/util.h"
#include "core/version.h"

#include <stdlib.h>
#include <string.h>

static const char *const g_route_names[SL_R_COUNT] = {
    "/v1/health",
    "/metrics",
    "/v1/records",
    "/v1/records/batch",
    "/v1/records/{hash}",
    "/v1/strands",
    "/v1/strands/{name}/records",
    "/v1/connectors",
    "/v1/connectors/{id}",
    "/v1/connector-kinds",
    "/v1/connectors/inbound/rest/{id}/push",
    "/v1/connectors/{id}/dead-letters",
    "/v1/boboyka/ingest",
    "/v1/boboyka/status",
    "/v1/boboyka/events",
    "/api/v1/connectors",
    "/api/v1/connectors/{name}",
    "/api/v1/metrics",
    "/v1/pipelines/reload",
    "/v1/strands/{name}/{checkpoint,proof,tile}",
    "/v1/openapi.json",
    "/ui/",
    "unmatched",
};
/* the last slot counts every other status (code="other") */
static const unsigned g_status_codes[SL_STATUS_SLOTS] = {200, 201, 202, 400, 404, 405, 409,
                                                         413, 415, 429, 500, 503, 0};
/* seconds */
static const double g_bounds[SL_HIST_BUCKETS] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

void sl_api_on_complete(struct sl_http_req *req, unsigned status, uint64_t latency_ns, void *ctx)
{
    struct sl_api *api = ctx;
    int r = sl_http_route(req);
    if (r < 0 || r >= SL_R_COUNT)
        r = SL_R_UNMATCHED;
    struct sl_route_metrics *m = &api->routes[r];
    int slot = SL_STATUS_SLOTS - 1; /* "other" */
    for (int i = 0; i < SL_STATUS_SLOTS - 1; i++)
        if (g_status_codes[i] == status)
            slot = i;
    __atomic_add_fetch(&m->status[slot], 1, __ATOMIC_RELAXED);
    double sec = (double)latency_ns / 1e9;
    int b = 0;
    while (b < SL_HIST_BUCKETS && sec > g_bounds[b])
        b++;
    if (b < SL_HIST_BUCKETS)
        __atomic_add_fetch(&m->bucket[b], 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->count, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&m->sum_ns, latency_ns, __ATOMIC_RELAXED);
    sl_api_audit(api, req, status);
}

void sl_v1_health(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"status\":\"ok\",\"agent\":\"sluice\",\"version\":\"" SL_VERSION "\"}");
    sl_api_json(req, 200, &b);
}

void sl_v1_metrics(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "# HELP sluice_http_requests_total HTTP requests answered, by route and "
                    "status.\n# TYPE sluice_http_requests_total counter\n");
    for (int r = 0; r < SL_R_COUNT; r++)
        for (int i = 0; i < SL_STATUS_SLOTS; i++) {
            uint64_t v = __atomic_load_n(&api->routes[r].status[i], __ATOMIC_RELAXED);
            if (!v)
                continue;
            if (g_status_codes[i])
                sl_buf_printf(&b, "sluice_http_requests_total{route=\"%s\",code=\"%u\"} %llu\n",
                              g_route_names[r], g_status_codes[i], (unsigned long long)v);
            else
                sl_buf_printf(&b, "sluice_http_requests_total{route=\"%s\",code=\"other\"} %llu\n",
                              g_route_names[r], (unsigned long long)v);
        }
    sl_buf_puts(&b, "# HELP sluice_http_request_duration_seconds Time from the request's first "
                    "byte to its completion, by route.\n"
                    "# TYPE sluice_http_request_duration_seconds histogram\n");
    for (int r = 0; r < SL_R_COUNT; r++) {
        struct sl_route_metrics *m = &api->routes[r];
        uint64_t count = __atomic_load_n(&m->count, __ATOMIC_RELAXED);
        if (!count)
            continue;
        uint64_t cum = 0;
        for (int i = 0; i < SL_HIST_BUCKETS; i++) {
            cum += __atomic_load_n(&m->bucket[i], __ATOMIC_RELAXED);
            sl_buf_printf(&b,
                          "sluice_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
                          "%llu\n",
                          g_route_names[r], g_bounds[i], (unsigned long long)cum);
        }
        sl_buf_printf(&b,
                      "sluice_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} "
                      "%llu\n"
                      "sluice_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                      "sluice_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                      g_route_names[r], (unsigned long long)count, g_route_names[r],
                      (double)__atomic_load_n(&m->sum_ns, __ATOMIC_RELAXED) / 1e9, g_route_names[r],
                      (unsigned long long)count);
    }
    struct sl_strand *list[256];
    size_t n = sl_store_list(api->store, list, 256);
    if (n > 256)
        n = 256; /* metrics of the first 256 strands by name */
    static const char *const fam[][3] = {
        {"sluice_strand_records_appended_total", "counter", "Records appended since start."},
        {"sluice_strand_bytes_appended_total", "counter", "Frame bytes appended since start."},
        {"sluice_strand_fsyncs_total", "counter", "fdatasync calls (one per group commit)."},
        {"sluice_strand_commits_total", "counter", "Group commits."},
        {"sluice_strand_records_per_fsync", "gauge",
         "Records appended per fdatasync since start (group-commit batching)."},
        {"sluice_strand_records", "gauge", "Records in the strand."},
        {"sluice_strand_bytes", "gauge", "Frame bytes stored in the strand."},
        {"sluice_strand_spares_total", "counter",
         "Next segments zero-filled in the background since start."},
        {"sluice_strand_spares_skipped_total", "counter",
         "Next segments only preallocated since start: the one before filled faster than "
         "spare_max_rate."},
        {"sluice_strand_cache_dropped_bytes_total", "counter",
         "Durable log bytes dropped from the page cache since start (cache_window)."},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        sl_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", fam[f][0], fam[f][2], fam[f][0],
                      fam[f][1]);
        for (size_t i = 0; i < n; i++) {
            struct sl_strand_stats st;
            struct sl_strand_info in;
            sl_strand_stats(list[i], &st);
            sl_strand_info(list[i], &in);
            double v = f == 0   ? (double)st.records
                       : f == 1 ? (double)st.bytes
                       : f == 2 ? (double)st.fsyncs
                       : f == 3 ? (double)st.commits
                       : f == 4 ? (st.fsyncs ? (double)st.records / (double)st.fsyncs : 0)
                       : f == 5 ? (double)in.count
                       : f == 6 ? (double)in.bytes
                       : f == 7 ? (double)st.spares
                       : f == 8 ? (double)st.spares_skipped
                                : (double)st.cache_dropped;
            sl_buf_printf(&b, "%s{strand=\"%s\"} %.17g\n", fam[f][0], sl_strand_name(list[i]), v);
        }
    }
    sl_buf_puts(&b, "# HELP sluice_strand_fsync_seconds Duration of each group commit's "
                    "fdatasync.\n# TYPE sluice_strand_fsync_seconds histogram\n");
    for (size_t i = 0; i < n; i++) {
        struct sl_strand_stats st;
        sl_strand_stats(list[i], &st);
        if (!st.fsyncs)
            continue;
        uint64_t cum = 0;
        const char *nm = sl_strand_name(list[i]);
        for (int k = 0; k < SL_SYNC_BUCKETS; k++) {
            cum += st.sync_hist[k];
            if (k < SL_SYNC_BUCKETS - 1)
                sl_buf_printf(&b,
                              "sluice_strand_fsync_seconds_bucket{strand=\"%s\",le=\"%g\"} %llu\n",
                              nm, sl_sync_bucket_us[k] / 1e6, (unsigned long long)cum);
            else
                sl_buf_printf(
                    &b, "sluice_strand_fsync_seconds_bucket{strand=\"%s\",le=\"+Inf\"} %llu\n", nm,
                    (unsigned long long)cum);
        }
        sl_buf_printf(&b,
                      "sluice_strand_fsync_seconds_sum{strand=\"%s\"} %.6f\n"
                      "sluice_strand_fsync_seconds_count{strand=\"%s\"} %llu\n",
                      nm, (double)st.sync_ns / 1e9, nm, (unsigned long long)st.fsyncs);
    }
    sl_registry_metrics(api->registry, &b);
    if (api->boboyka)
        sl_bbk_metrics(api->boboyka, &b);
    sl_buf_printf(&b,
                  "# HELP sluice_recovery_truncations_total Torn or corrupt tails cut at start.\n"
                  "# TYPE sluice_recovery_truncations_total counter\n"
                  "sluice_recovery_truncations_total %llu\n"
                  "# HELP sluice_recovery_seconds Time the last start took to open the strands.\n"
                  "# TYPE sluice_recovery_seconds gauge\n"
                  "sluice_recovery_seconds %.3f\n",
                  (unsigned long long)api->recovery.truncations,
                  (double)api->recovery.elapsed_ms / 1000.0);
    sl_http_respond(req, 200, "text/plain; version=0.0.4", &b);
}
