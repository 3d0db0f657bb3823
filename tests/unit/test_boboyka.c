/* Boboyka event validation and encodings: the seed's bodies are accepted, every violation names
 * its field, the stored payload is the data plus "_boboyka_type" (MessagePack, exactly what
 * /v1/records would store for the same JSON), and the data read back from it (the mirror body)
 * is the data alone. */
#include "boboyka/schema.h"
#include "formats/json_mp.h"
#include "t.h"

#include <stdlib.h>

static int parse(const char *body, struct sl_bbk_event *ev, struct sl_err *err)
{
    return sl_bbk_parse(body, strlen(body), 1747000000042ull, ev, err);
}

static void expect_bad(const char *body, const char *needle)
{
    struct sl_bbk_event ev;
    struct sl_err err = {0};
    int rc = parse(body, &ev, &err);
    T_CHECK(rc == SL_E_INVAL && strstr(err.msg, needle) && err.ecode[0], "%s -> 400 naming %s (%s)",
            body, needle, err.msg);
    sl_bbk_event_release(&ev);
}

/* The payload's data as JSON (what the mirror sends and the events feed shows). */
static void expect_data_json(const struct sl_bbk_event *ev, const char *want, const char *what)
{
    struct sl_buf dj;
    sl_buf_init(&dj, 0);
    T_CHECK(sl_bbk_payload_data_json(ev->payload.data, ev->payload.len, &dj) == 0 && dj.len &&
                strcmp((char *)dj.data, want) == 0,
            "%s (%s)", what, dj.len ? (char *)dj.data : "");
    sl_buf_release(&dj);
}

static void expect_payload_json(const struct sl_bbk_event *ev, const char *want, const char *what)
{
    struct sl_buf want_mp;
    sl_buf_init(&want_mp, 0);
    T_CHECK(sl_json_to_mp(want, strlen(want), &want_mp, 64, NULL) == 0 &&
                want_mp.len == ev->payload.len &&
                memcmp(want_mp.data, ev->payload.data, want_mp.len) == 0,
            "%s: payload is the MessagePack of %s", what, want);
    sl_buf_release(&want_mp);
}

int main(void)
{
    struct sl_bbk_event ev;
    struct sl_err err = {0};
    T_EQ_INT(
        parse("{\"record_type\":\"project_build\",\"data\":{\"project_id\":\"proj_abc\","
              "\"build_id\":\"bld_001\",\"status\":\"running\",\"agent_id\":\"boboyka_builder\"}}",
              &ev, &err),
        0, "the seed's ingest example is accepted");
    T_EQ_INT(ev.type, SL_BBK_BUILD, "its type is project_build");
    expect_payload_json(&ev,
                        "{\"project_id\":\"proj_abc\",\"build_id\":\"bld_001\",\"status\":"
                        "\"running\",\"agent_id\":\"boboyka_builder\",\"_boboyka_type\":"
                        "\"project_build\"}",
                        "project_build");
    expect_data_json(&ev,
                     "{\"project_id\":\"proj_abc\",\"build_id\":\"bld_001\",\"status\":"
                     "\"running\",\"agent_id\":\"boboyka_builder\"}",
                     "the data read back is the data alone, without the tag");
    T_EQ_INT(sl_bbk_payload_type(ev.payload.data, ev.payload.len), SL_BBK_BUILD,
             "the stored payload names its type");
    uint64_t shape = ev.shape;
    sl_bbk_event_release(&ev);

    T_EQ_INT(parse("{\"data\":{\"project_id\":\"x\",\"build_id\":\"y\",\"status\":\"failed\","
                   "\"agent_id\":\"z\"},\"record_type\":\"project_build\"}",
                   &ev, &err),
             0, "members in any order");
    T_CHECK(ev.shape == shape, "same field names, same shape (they can share a bulk insert)");
    sl_bbk_event_release(&ev);
    T_EQ_INT(parse("{\"record_type\":\"project_build\",\"data\":{\"build_id\":\"y\"}}", &ev, &err),
             0, "fields may be omitted");
    T_CHECK(ev.shape != shape, "other field names, another shape");
    sl_bbk_event_release(&ev);

    T_EQ_INT(parse("{\"record_type\":\"audit_log\",\"data\":{\"event\":\"deploy\"}}", &ev, &err), 0,
             "audit_log without timestamp_ms is accepted");
    expect_payload_json(&ev,
                        "{\"event\":\"deploy\",\"timestamp_ms\":1747000000042,\"_boboyka_type\":"
                        "\"audit_log\"}",
                        "audit_log gets the ingest time");
    sl_bbk_event_release(&ev);
    T_EQ_INT(parse("{\"record_type\":\"build_queue_item\",\"data\":{\"dequeued_at_ms\":null,"
                   "\"priority\":-3,\"x\":{\"y\":[1.5,true]}}}",
                   &ev, &err),
             0, "dequeued_at_ms may be null; unknown fields kept");
    expect_data_json(&ev, "{\"dequeued_at_ms\":null,\"priority\":-3,\"x\":{\"y\":[1.5,true]}}",
                     "numbers and nesting survive");
    sl_bbk_event_release(&ev);
    T_EQ_INT(parse("{\"record_type\":\"agent_health\",\"data\":{\"cpu_pct\":null,\"status\":null,"
                   "\"agent_id\":\"a\",\"x\":null}}",
                   &ev, &err),
             0, "null in a field the seed does not make nullable: accepted");
    expect_data_json(&ev, "{\"agent_id\":\"a\",\"x\":null}",
                     "and treated as absent (an SDK's None default); unknown fields kept as sent");
    sl_bbk_event_release(&ev);
    T_EQ_INT(parse("{\"record_type\":\"audit_log\",\"data\":{\"timestamp_ms\":null}}", &ev, &err),
             0, "audit_log with timestamp_ms null");
    T_CHECK(sl_bbk_payload_type(ev.payload.data, ev.payload.len) == SL_BBK_AUDIT,
            "is an audit_log event");
    {
        struct sl_buf js;
        sl_buf_init(&js, 0);
        sl_bbk_payload_data_json(ev.payload.data, ev.payload.len, &js);
        T_CHECK(js.len > 18 && memcmp(js.data, "{\"timestamp_ms\":1747", 18) == 0,
                "gets the ingest time, as when it is absent (%.*s)", (int)js.len, (char *)js.data);
        sl_buf_release(&js);
    }
    sl_bbk_event_release(&ev);
    T_EQ_INT(parse("{\"record_type\":\"agent_health\",\"data\":{\"cpu_pct\":23.4}}", &ev, &err), 0,
             "cpu_pct a float");
    expect_data_json(&ev, "{\"cpu_pct\":23.4}", "23.4 is written as 23.4, not 23.399999999999999");
    sl_bbk_event_release(&ev);

    expect_bad("{\"data\":{}}", "record_type");
    expect_bad("{\"record_type\":\"nope\",\"data\":{}}", "record_type");
    expect_bad("{\"record_type\":\"audit_log\"}", "data");
    expect_bad("{\"record_type\":\"audit_log\",\"data\":null}", "data");
    expect_bad("{\"record_type\":\"audit_log\",\"data\":{},\"x\":1}", "x");
    expect_bad("[1]", "body");
    expect_bad("{\"record_type\":\"audit_log\",\"data\":{}", "invalid JSON");
    expect_bad("{\"record_type\":\"project_build\",\"data\":{\"status\":\"waiting\"}}",
               "data.status: must be one of queued, running, succeeded, failed");
    expect_bad("{\"record_type\":\"build_queue_item\",\"data\":{\"status\":\"queued\"}}",
               "data.status: must be one of waiting, processing, done");
    expect_bad("{\"record_type\":\"agent_health\",\"data\":{\"status\":\"running\"}}",
               "data.status: must be one of healthy, degraded, unhealthy");
    expect_bad("{\"record_type\":\"agent_health\",\"data\":{\"memory_mb\":1.5}}", "data.memory_mb");
    expect_bad("{\"record_type\":\"agent_health\",\"data\":{\"checked_at_ms\":-5}}",
               "data.checked_at_ms");
    expect_bad("{\"record_type\":\"audit_log\",\"data\":{\"metadata\":[]}}", "data.metadata");
    expect_bad("{\"record_type\":\"audit_log\",\"data\":{\"actor\":false}}", "data.actor");
    expect_bad("{\"record_type\":\"audit_log\",\"data\":{\"_boboyka_type\":\"x\"}}",
               "data._boboyka_type");
    expect_bad("{\"record_type\":\"audit_log\",\"record_type\":\"audit_log\",\"data\":{}}",
               "duplicate");
    return T_DONE();
}
