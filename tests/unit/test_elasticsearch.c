/* The Elasticsearch sink with no network: the exact _bulk body format() gives (index per topic,
 * _id from the record hash or document.id, delete for a tombstone), StreamHouse's string values,
 * bad configs naming the field, and the reading of _bulk answers. */
#include "connectors/elasticsearch/elasticsearch.h"
#include "formats/json_mp.h"
#include "sinktest.h"
#include "t.h"

static struct sl_buf mp[3];
static uint8_t hashes[3][SL_REC_HASH_LEN];
static struct sl_rec recs[3];

static void make_records(void)
{
    static const char *const payloads[] = {"{\"o\":{\"id\":7},\"s\":\"\\u00e9\\\"\"}",
                                           "{\"o\":{\"id\":\"x/y\"}}", "{\"o\":{\"id\":7}}"};
    for (int i = 0; i < 3; i++) {
        sl_buf_init(&mp[i], 0);
        struct sl_jerr je;
        sl_json_to_mp(payloads[i], strlen(payloads[i]), &mp[i], 16, &je);
        memset(hashes[i], 0xb0 + i, SL_REC_HASH_LEN);
        recs[i] = (struct sl_rec){.seq = 1 + (uint64_t)i,
                                  .flags = i == 2 ? SL_REC_TOMBSTONE : 0,
                                  .source = "a",
                                  .source_len = 1,
                                  .payload = mp[i].data,
                                  .payload_len = (uint32_t)mp[i].len,
                                  .hash = hashes[i]};
    }
}

#define H0 "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0"

static void test_format(void)
{
    char *s = sink_format("elasticsearch-sink", "{\"index.name\":\"logs-{topic}\"}", recs, 1,
                          &sl_host_default);
    T_EQ_STR(s,
             "POST "
             "/_bulk?filter_path=errors,items.*.status,items.*.error\n{\"index\":{\"_index\":"
             "\"logs-orders\",\"_id\":\"" H0 "\"}}\n"
             "{\"o\":{\"id\":7},\"s\":\"\xc3\xa9\\\"\"}\n",
             "an index action per record: {topic} replaced, the record hash as _id");
    free(s);
    s = sink_format("elasticsearch",
                    "{\"index.name\":\"o\",\"document.id\":\"o.id\",\"batch.size\":\"10\"}", recs,
                    3, &sl_host_default);
    T_EQ_STR(
        s,
        "POST "
        "/_bulk?filter_path=errors,items.*.status,items.*.error\n{\"index\":{\"_index\":\"o\",\"_"
        "id\":\"7\"}}\n{\"o\":{\"id\":7},\"s\":"
        "\"\xc3\xa9\\\"\"}\n{\"index\":{\"_index\":\"o\",\"_id\":\"x/y\"}}\n{\"o\":{\"id\":\"x/"
        "y\"}}\n{\"delete\":{\"_index\":\"o\",\"_id\":\"7\"}}\n",
        "document.id: a number or a string as _id; a tombstone is a delete with no source");
    free(s);
    s = sink_format("elasticsearch", "{\"index.name\":\"o\",\"document.id\":\"o.nope\"}", recs, 1,
                    &sl_host_default);
    T_CHECK(!s, "a record without the document.id field cannot be a document");
    free(s);
}

static void test_config(void)
{
    struct sl_err err = {0};
    json_t *cfg =
        sink_config("elasticsearch-sink",
                    "{\"connection.url\":\"http://localhost:9200\",\"index.name\":\"logs-{"
                    "topic}\",\"batch.size\":\"1000\",\"batch.interval_ms\":\"5000\"}",
                    &err);
    T_CHECK(cfg && json_integer_value(json_object_get(cfg, "batch.size")) == 1000 &&
                json_integer_value(json_object_get(cfg, "batch.interval_ms")) == 5000,
            "the seed's config, string values read as integers (%s)", err.msg);
    json_decref(cfg);
    cfg = sink_config("elasticsearch", "{\"index.name\":\"x\"}", &err);
    T_EQ_STR(json_string_value(json_object_get(cfg, "connection.url")), "http://localhost:9200",
             "connection.url defaults to the seed's");
    json_decref(cfg);
    struct {
        const char *config, *field;
    } bad[] = {
        {"{}", "config.index.name"},
        {"{\"index.name\":\"A\"}", "config.index.name"},
        {"{\"index.name\":\"-x\"}", "config.index.name"},
        {"{\"index.name\":\"a b\"}", "config.index.name"},
        {"{\"index.name\":\"x\",\"batch.size\":\"ten\"}", "config.batch.size"},
        {"{\"index.name\":\"x\",\"document.id\":\".a\"}", "config.document.id"},
        {"{\"index.name\":\"x\",\"connection.password\":\"p\"}", "config.connection.username"},
        {"{\"index.name\":\"x\",\"connection.username\":\"u:v\",\"connection.password\":\"p\"}",
         "config.connection.username"},
        {"{\"index.name\":\"x\",\"connection.url\":\"localhost:9200\"}", "config.connection.url"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sl_err e = {0};
        json_t *out = sink_config("elasticsearch", bad[i].config, &e);
        size_t n = strlen(bad[i].field);
        T_CHECK(!out && strncmp(e.msg, bad[i].field, n) == 0 && e.msg[n] == ':',
                "%s is refused naming %s (%s)", bad[i].config, bad[i].field, e.msg);
        json_decref(out);
    }
}

static void test_answers(void)
{
    struct sl_es_item it[3];
    char why[200];
    const char *a = "{\"took\":3,\"errors\":true,\"items\":[{\"index\":{\"_index\":\"o\",\"_id\":"
                    "\"1\",\"status\":201}},{\"index\":{\"_id\":\"2\",\"status\":400,\"error\":{"
                    "\"type\":\"mapper_parsing_exception\",\"reason\":\"failed to parse\"}}},{"
                    "\"delete\":{\"_id\":\"3\",\"status\":429,\"error\":{\"type\":\"es_rejected_"
                    "execution_exception\",\"reason\":\"queue full\"}}}]}";
    T_CHECK(sl_es_bulk_parse(a, strlen(a), 3, it, why, sizeof(why)) == 0 && it[0].status == 201 &&
                !it[0].reason[0] && it[1].status == 400 &&
                !strcmp(it[1].reason, "mapper_parsing_exception: failed to parse") &&
                it[2].status == 429 && sl_es_item_retriable(429) && !sl_es_item_retriable(400),
            "per-item statuses and reasons; 429 is retried, 400 is not (%s)", why);
    const char *b = "{\"took\":1,\"errors\":false}";
    T_CHECK(sl_es_bulk_parse(b, strlen(b), 2, it, why, sizeof(why)) == 0 && it[1].status == 200,
            "errors false with no items: every item done");
    T_CHECK(sl_es_bulk_parse(a, strlen(a), 2, it, why, sizeof(why)) < 0 && strstr(why, "3 items"),
            "another number of items than actions is refused (%s)", why);
    const char *c = "{\"errors\":true,\"items\":[{\"index\":{}}]}";
    T_CHECK(sl_es_bulk_parse(c, strlen(c), 1, it, why, sizeof(why)) < 0,
            "an item without a status is refused");
    T_CHECK(sl_es_bulk_parse("<html>", 6, 1, it, why, sizeof(why)) < 0, "not JSON is refused");
}

int main(void)
{
    make_records();
    test_format();
    test_config();
    test_answers();
    for (int i = 0; i < 3; i++)
        sl_buf_release(&mp[i]);
    return T_DONE();
}
