/* libFuzzer target for the expression language: the input up to the first newline is an
 * expression, the rest a JSON record value. Properties: a refused expression's error is
 * "column N: ..." with N within the text; an accepted one evaluates on the record without
 * crashing or leaking, and sl_expr_match agrees with sl_expr_eval. */
#include "expr/expr.h"

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
    json_decref(out);
    json_decref(v);
    sl_expr_free(e);
    return 0;
}
