/* POST /v1/boboyka/ingest, GET /v1/boboyka/status, GET /v1/boboyka/events (SapixDB's Boboyka
 * integration). The ingest is validated on the HTTP thread and answered by the Boboyka service
 * once the event is durable, mirrored (or its mirror failed) and indexed. */
#include "api/api.h"
#include "core/util.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void answer_ingest(const struct sl_bbk_result *r, void *arg)
{
    struct sl_http_req *req = arg;
    if (r->status) {
        sl_api_error(req, sl_api_status_for(r->status), "write_failed",
                     "strand boboyka: the event could not be made durable; nothing was written");
        return;
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_puts(&b, "{\"record_hash\":\"");
    sl_buf_hex(&b, r->hash, SL_HASH_LEN);
    sl_buf_printf(&b,
                  "\",\"record_type\":\"%s\",\"ingested_at_ms\":%" PRIu64
                  ",\"dual_write\":{\"enabled\":%s,\"ok\":%s,\"error\":",
                  sl_bbk_type_name(r->type), r->ingested_at_ms, r->dw_enabled ? "true" : "false",
                  !r->dw_enabled ? "null"
                  : r->dw_ok     ? "true"
                                 : "false");
    if (r->dw_error)
        sl_buf_json_str(&b, r->dw_error, strlen(r->dw_error));
    else
        sl_buf_puts(&b, "null");
    sl_buf_puts(&b, "}}");
    sl_api_json(req, 201, &b);
}

void sl_v1_boboyka_ingest(struct sl_api *api, struct sl_http_req *req)
{
    if (sl_api_require_json(req, 0, NULL) < 0)
        return;
    size_t len;
    const char *body = (const char *)sl_http_body(req, &len);
    struct sl_bbk_event ev;
    struct sl_err err = {0};
    if (sl_bbk_parse(body, len, sl_now_ms(), &ev, &err) < 0) {
        sl_bbk_event_release(&ev);
        return sl_api_error_from(req, &err);
    }
    if (sl_bbk_ingest(api->boboyka, &ev, answer_ingest, req, &err) < 0)
        return sl_api_error_from(req, &err);
}

void sl_v1_boboyka_status(struct sl_api *api, struct sl_http_req *req)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_bbk_status_json(api->boboyka, &b);
    sl_api_json(req, 200, &b);
}

void sl_v1_boboyka_events(struct sl_api *api, struct sl_http_req *req)
{
    uint64_t limit = 50, before = UINT64_MAX;
    int present;
    if (sl_api_query_u64(req, "limit", 1, 1000, &limit, &present) < 0)
        return;
    const char *rt = sl_http_query(req, "record_type");
    int type = -1;
    if (rt && (type = sl_bbk_type_find(rt, strlen(rt))) < 0)
        return sl_api_error(req, 400, "invalid_query",
                            "record_type: must be one of project_build, build_queue_item, "
                            "agent_health, audit_log");
    const char *cur = sl_http_query(req, "cursor");
    if (cur && *cur) {
        if (sl_parse_u64(cur, &before) || before == UINT64_MAX)
            return sl_api_error(req, 400, "invalid_query",
                                "cursor: not a cursor from next_cursor (got '%.40s')", cur);
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    struct sl_err err = {0};
    if (sl_bbk_events_json(api->boboyka, type, before, (uint32_t)limit, &b, &err) < 0) {
        sl_buf_release(&b);
        return sl_api_error_from(req, &err);
    }
    sl_api_json(req, 200, &b);
}
