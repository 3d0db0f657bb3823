/* libFuzzer target for the expression language: the input up to the first newline is an
 * expression, the rest a JSON record value. Properties: a refused expression's error is
 * "column N: ..." with N within the text; an accepted one evaluates on the record without
 * crashing or leaking, and sl_expr_match agrees with sl_expr_eval; and on the record as
 * MessagePack (read lazily, fields in place) it gives the same value as on the JSON tree, when
 * the JSON has no repeated keys (the tree keeps the last, a lazy read finds the first). */
#include "expr/expr.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *nl = memchr(s, '\n', size);
    size_t elen = nl ? (size_t)(nl - s) : size;
    char err[300];
    struct sl_expr *e = sl_expr_compile(s, elen, err, sizeof(err));
    if (!e) {
        unsigned long col = 0;
        if (sscanf(err, "column %lu:", &col) != 1 || col < 1 || col > elen + 1)
            abort();
        return 0;
    }
    json_t *v = nl ? json_loadb(nl + 1, size - elen - 1, JSON_DECODE_ANY, NULL) : NULL;
    struct sl_expr_rec r = {.value = v, .source = "src", .source_len = 3, .seq = 7};
    json_t *out = sl_expr_eval(e, &r);
    if (!out || sl_expr_match(e, &r) != json_is_true(out))
        abort();
    json_t *once =
        nl ? json_loadb(nl + 1, size - elen - 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL)
           : NULL;
    struct sl_buf mp;
    sl_buf_init(&mp, 0);
    if (once && sl_json_to_mp(nl + 1, size - elen - 1, &mp, 64, NULL) == 0) {
        struct sl_expr_rec lazy = r;
        lazy.value = NULL;
        lazy.mp = mp.data;
        lazy.mp_len = mp.len;
        json_t *out2 = sl_expr_eval(e, &lazy);
        if (!out2 || !json_equal(out, out2) || sl_expr_match(e, &lazy) != json_is_true(out))
            abort();
        json_decref(out2);
    }
    sl_buf_release(&mp);
    json_decref(once);
    json_decref(out);
    json_decref(v);
    sl_expr_free(e);
    return 0;
}
