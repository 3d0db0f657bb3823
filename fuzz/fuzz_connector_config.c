/* libFuzzer target for every connector kind's config: the first byte picks a kind of the
 * catalog, the rest is a JSON object that goes through its normalization, validation, redaction
 * and the PATCH rule that "***" keeps a secret. Properties: an error names a config field; an
 * accepted config is a fixed point; every secret field is shown as "***"; sending the redacted
 * config back validates to the same config. */
#include "engine/kinds.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct sl_connector *const *all = sl_kinds_all();
    size_t n = 0;
    while (all[n])
        n++;
    const struct sl_connector *k = all[data[0] % n];
    json_t *in = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(in)) {
        json_decref(in);
        return 0;
    }
    struct sl_err err = {0};
    json_t *out = sl_kind_validate(k, in, &err);
    if (!out) {
        if (strncmp(err.msg, "config", 6) != 0)
            abort(); /* every error names the field */
        json_decref(in);
        return 0;
    }
    json_t *again = sl_kind_validate(k, out, &err);
    if (!again || !json_equal(again, out))
        abort(); /* the canonical config is a fixed point */
    json_decref(again);
    json_t *red = sl_kind_redact(k, out);
    for (const struct sl_field *f = k->fields; f && f->name; f++) {
        const json_t *v = json_object_get(red, f->name);
        if (f->secret == SL_SECRET && v &&
            !(json_is_string(v) && !strcmp(json_string_value(v), "***")))
            abort(); /* a secret field is always shown as "***" */
    }
    json_t *back = json_deep_copy(red);
    sl_kind_keep_secrets(k, back, out);
    json_t *patched = sl_kind_validate(k, back, &err);
    if (!patched || !json_equal(patched, out))
        abort(); /* the redacted config sent back keeps every secret */
    json_decref(patched);
    json_decref(back);
    json_decref(red);
    json_decref(out);
    json_decref(in);
    return 0;
}
