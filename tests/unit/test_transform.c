/* Each transform on a record (golden cases), chains in order, the CDC unwrap's delete modes,
 * per-record failures naming the transform, and config errors naming transforms[i].config.<key>. */
#include "formats/mp_jansson.h"
#include "t.h"
#include "transform/transform.h"

#include <stdlib.h>
#include <string.h>

static const struct sl_expr_rec g_rec = {
    .source = "src", .source_len = 3, .seq = 5, .timestamp_ms = 1700000000123ull};

/* The chain (JSON text) applied to value (JSON text): the result as compact JSON, "DROP", or
 * "FAIL: why". */
static char *run(const char *chain, const char *value)
{
    struct sl_err err = {0};
    json_t *c = json_loads(chain, 0, NULL);
    struct sl_transforms *t = sl_transforms_compile(c, &err);
    json_decref(c);
    if (!t)
        return strdup(err.msg);
    json_t *v = json_loads(value, JSON_DECODE_ANY, NULL);
    char why[300] = "";
    enum sl_tr_result r = sl_transforms_apply(t, &v, &g_rec, why, sizeof(why));
    char *out = NULL;
    if (r == SL_TR_KEEP)
        out = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    else if (r == SL_TR_DROP)
        out = strdup("DROP");
    else if (asprintf(&out, "FAIL: %s", why) < 0)
        out = NULL;
    json_decref(v);
    sl_transforms_free(t);
    return out;
}

static void is(const char *chain, const char *value, const char *want, const char *what)
{
    char *got = run(chain, value);
    T_CHECK(got && strcmp(got, want) == 0, "%s (%s)", what, got ? got : "(null)");
    free(got);
}

#define ORDER                                                                                      \
    "{\"id\":7,\"amount\":150,\"status\":\"paid\",\"card\":\"4111-1111\",\"c\":{\"zip\":"          \
    "\"75001\",\"email\":\"a@b.c\"},\"internal\":1}"

int main(void)
{
    is("[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.amount > 100 && source == "
       "'src'\"}}]",
       ORDER,
       "{\"amount\":150,\"c\":{\"email\":\"a@b.c\",\"zip\":\"75001\"},\"card\":\"4111-1111\","
       "\"id\":7,\"internal\":1,\"status\":\"paid\"}",
       "Filter keep: a match passes unchanged (metadata usable)");
    is("[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.amount > 1000\"}}]", ORDER, "DROP",
       "Filter keep: no match is dropped");
    is("[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.status == "
       "'paid'\",\"action\":\"drop\"}}]",
       ORDER, "DROP", "Filter drop: a match is dropped");
    is("[{\"type\":\"MaskField\",\"config\":{\"fields\":[\"card\",\"c.email\",\"nope\",\"id\"],"
       "\"mask_char\":\"X\"}}]",
       ORDER,
       "{\"amount\":150,\"c\":{\"email\":\"XXXXX\",\"zip\":\"75001\"},\"card\":\"XXXXXXXXX\","
       "\"id\":\"XXXXXXXX\",\"internal\":1,\"status\":\"paid\"}",
       "MaskField: strings keep their length, other values become 8 mask characters; nested paths; "
       "a missing field is left alone");
    is("[{\"type\":\"ReplaceField\",\"config\":{\"rename\":{\"amount\":\"total\"},\"exclude\":["
       "\"internal\"]}}]",
       ORDER,
       "{\"c\":{\"email\":\"a@b.c\",\"zip\":\"75001\"},\"card\":\"4111-1111\",\"id\":7,"
       "\"status\":\"paid\",\"total\":150}",
       "ReplaceField: rename and exclude");
    is("[{\"type\":\"ReplaceField\",\"config\":{\"include\":[\"id\",\"status\"]}}]", ORDER,
       "{\"id\":7,\"status\":\"paid\"}", "ReplaceField include: only those");
    is("[{\"type\":\"InsertField\",\"config\":{\"static\":{\"origin\":\"rivven\",\"meta.v\":2},"
       "\"timestamp\":{\"field\":\"processed_at\"}}}]",
       "{\"id\":1}",
       "{\"id\":1,\"meta\":{\"v\":2},\"origin\":\"rivven\",\"processed_at\":1700000000123}",
       "InsertField: static values (nested paths created) and the record's timestamp");
    is("[{\"type\":\"Cast\",\"config\":{\"spec\":{\"id\":\"string\",\"amount\":\"float64\",\"c."
       "zip\":\"int64\"}}}]",
       ORDER,
       "{\"amount\":150.0,\"c\":{\"email\":\"a@b.c\",\"zip\":75001},\"card\":\"4111-1111\","
       "\"id\":\"7\",\"internal\":1,\"status\":\"paid\"}",
       "Cast: int to string, int to float, string to int (nested)");
    is("[{\"type\":\"Cast\",\"config\":{\"spec\":{\"status\":\"int64\"}}}]", ORDER,
       "FAIL: transforms[0] Cast: status: \"paid\" is not an int64",
       "Cast of \"paid\" to int64 fails for that record, naming transform and field");
    is("[{\"type\":\"TimestampConverter\",\"config\":{\"field\":\"t\",\"target.type\":\"string\"}}"
       "]",
       "{\"t\":1700000000123}", "{\"t\":\"2023-11-14T22:13:20.123Z\"}",
       "TimestampConverter ms -> ISO");
    is("[{\"type\":\"TimestampConverter\",\"config\":{\"field\":\"t\",\"target.type\":\"unix\"}}]",
       "{\"t\":\"2023-11-14T23:13:20.123+01:00\"}", "{\"t\":1700000000123}",
       "TimestampConverter ISO with an offset -> ms");
    is("[{\"type\":\"TimestampConverter\",\"config\":{\"field\":\"t\",\"target.type\":\"unix\"}}]",
       "{\"t\":\"yesterday\"}",
       "FAIL: transforms[0] TimestampConverter: t: not epoch milliseconds or an ISO 8601 time",
       "TimestampConverter of a non-time fails for that record");
#define ENV(op, before, after)                                                                     \
    "{\"op\":\"" op "\",\"before\":" before ",\"after\":" after                                    \
    ",\"source\":{\"db\":\"shop\",\"schema\":\"public\",\"table\":\"orders\",\"lsn\":99},\"ts_"    \
    "ms\":5}"
    is("[{\"type\":\"ExtractNewRecordState\"}]",
       ENV("u", "{\"id\":1,\"v\":1}", "{\"id\":1,\"v\":2}"), "{\"id\":1,\"v\":2}",
       "ExtractNewRecordState: the after image");
    is("[{\"type\":\"ExtractNewRecordState\"}]", ENV("d", "{\"id\":1}", "null"), "DROP",
       "a delete is dropped by default (delete.handling.mode drop)");
    is("[{\"type\":\"ExtractNewRecordState\",\"config\":{\"delete.handling.mode\":\"rewrite\","
       "\"add.fields\":[\"op\",\"table\",\"lsn\"]}}]",
       ENV("d", "{\"id\":1}", "null"),
       "{\"__deleted\":\"true\",\"__lsn\":99,\"__op\":\"d\",\"__table\":\"orders\",\"id\":1}",
       "rewrite: the before image with __deleted, and add.fields from the envelope and its source");
    is("[{\"type\":\"ExtractNewRecordState\",\"config\":{\"delete.handling.mode\":\"none\"}}]",
       ENV("d", "{\"id\":1}", "null"), "null", "none: a delete becomes a null value (a tombstone)");
    is("[{\"type\":\"ExtractNewRecordState\"}]", "{\"id\":3}", "{\"id\":3}",
       "a record that is no envelope passes unchanged");
    is("[{\"type\":\"ExtractNewRecordState\"},{\"type\":\"Filter\",\"config\":{\"condition\":"
       "\"value.v > 1\"}},"
       "{\"type\":\"ReplaceField\",\"config\":{\"rename\":{\"v\":\"version\"}}}]",
       ENV("u", "{\"id\":1,\"v\":1}", "{\"id\":1,\"v\":2}"), "{\"id\":1,\"version\":2}",
       "a chain runs in order");

    {
        struct sl_err err = {0};
        json_t *c =
            json_loads("[{\"type\":\"ContentRouter\",\"config\":{\"field\":\"r\",\"routes\":"
                       "{\"eu\":\"eu-events\",\"1\":\"ones\"},\"default\":\"other\"}}]",
                       0, NULL);
        struct sl_transforms *t = sl_transforms_compile(c, &err);
        json_decref(c);
        const char *in[] = {"{\"r\":\"eu\"}", "{\"r\":1}", "{\"r\":\"us\"}", "{}"};
        const char *want[] = {"eu-events", "ones", "other", "other"};
        for (int i = 0; t && i < 4; i++) {
            json_t *v = json_loads(in[i], 0, NULL);
            struct sl_buf mp, out;
            sl_buf_init(&mp, 0);
            sl_buf_init(&out, 0);
            sl_jansson_to_mp(v, &mp, 8);
            char route[65], why[200];
            enum sl_tr_result r = sl_transforms_apply_routed(t, mp.data, mp.len, &g_rec, &out,
                                                             route, why, sizeof(why));
            T_CHECK(r == SL_TR_KEEP && strcmp(route, want[i]) == 0,
                    "ContentRouter: %s goes to %s (%s)", in[i], want[i], route);
            json_decref(v);
            sl_buf_release(&mp);
            sl_buf_release(&out);
        }
        T_CHECK(t && sl_transforms_route(t), "a chain with a ContentRouter says so");
        sl_transforms_free(t);
    }
    is("[{\"type\":\"ContentRouter\",\"config\":{\"field\":\"r\",\"routes\":{\"a\":\"Bad "
       "Name\"}}}]",
       "{}", "transforms[0].config.routes: a: must be a strand name ([a-z0-9][a-z0-9._-]{0,63})",
       "a route to a bad strand name is refused");
    is("[{\"type\":\"Filterr\"}]", "{}",
       "transforms[0].type: unknown transform 'Filterr' (known: Filter, MaskField, ReplaceField, "
       "InsertField, ExtractNewRecordState, TimestampConverter, Cast, ContentRouter)",
       "an unknown type is refused, listing the known ones");
    is("[{\"type\":\"Filter\",\"config\":{\"condition\":\"value.a >\"}}]", "{}",
       "transforms[0].config.condition: column 10: expected a value, a field or '(' (the "
       "expression ends here)",
       "a bad condition names its column");
    is("[{\"type\":\"Filter\",\"config\":{\"condition\":\"true\",\"action\":\"maybe\"}}]", "{}",
       "transforms[0].config.action: must be keep or drop", "a bad enum value");
    is("[{\"type\":\"MaskField\",\"config\":{\"fields\":[\"a\"],\"colour\":1}}]", "{}",
       "transforms[0].config.colour: unknown field for MaskField", "an unknown key");
    is("[{\"type\":\"Cast\",\"config\":{\"spec\":{\"a\":\"int32\"}}}]", "{}",
       "transforms[0].config.spec: a: must be int64, float64, string or boolean",
       "a bad Cast type");
    is("[{\"type\":\"Filter\",\"config\":{\"condition\":\"true\"}},{\"config\":{}}]", "{}",
       "transforms[1]: must be {type, config}", "a transform without a type");
    is("{\"type\":\"Filter\"}", "{}", "transforms: must be a list of {type, config}", "not a list");
    return T_DONE();
}
