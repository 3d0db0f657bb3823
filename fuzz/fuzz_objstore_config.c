/* libFuzzer target for the object_storage config: any JSON object goes through the kind's
 * normalization and validation (the path of every POST/PATCH body's config). Properties: an
 * error names a config field; an accepted config is a fixed point (validating it again gives the
 * same object), builds a sink, and gives a key that fits. */
#include "connectors/objstore/objstore.h"
#include "engine/kinds.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(in)) {
        json_decref(in);
        return 0;
    }
    const struct sl_connector *k = sl_kind_find("object_storage");
    struct sl_err err = {0};
    json_t *out = sl_kind_validate(k, in, &err);
    if (!out) {
        if (strncmp(err.msg, "config", 6) != 0)
            abort(); /* every error names the field */
    } else {
        json_t *again = sl_kind_validate(k, out, &err);
        if (!again || !json_equal(again, out))
            abort(); /* the canonical config is a fixed point */
        json_decref(again);
        struct sl_os_sink *s = NULL;
        if (sl_os_sink_new(out, &s, &err) != 0)
            abort();
        sl_os_sink_free(s);
        char key[SL_OS_KEY_MAX];
        const char *prefix = json_string_value(json_object_get(out, "prefix"));
        if (strlen(prefix) < 256 &&
            sl_os_key(key, sizeof(key), prefix, "strand", "year=2026/month=02/day=10/hour=14", 0,
                      UINT64_MAX, "jsonl.gz") != 0)
            abort();
    }
    json_decref(out);
    json_decref(in);
    return 0;
}
