/* The expression language of filters, routes and queries (docs/expressions.md):
 *
 *   value.amount > 100 && value.status in ["paid", "shipped"]
 *   exists(value.customer.email) && !starts_with(lower(source), "test")
 *
 * Field paths into `value` (the record's payload), and the record's metadata `source`, `seq`,
 * `timestamp_ms`, `flags`, `strand`; literals (integers exact to 64 bits, floats, strings in
 * double or single quotes, true, false, null, lists); == != < <= > >= (numbers by value,
 * strings by bytes; different types are unequal and unordered), && || ! (short-circuit), `in`
 * a list, parentheses; functions exists(path), starts_with(s, p), ends_with(s, p), contains(s,
 * p), lower(s), upper(s), length(s or list). A missing field is null. Errors name the column
 * (1-based). Compiled once, evaluated per record; pure, any thread. */
#ifndef SL_EXPR_EXPR_H
#define SL_EXPR_EXPR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct sl_expr;

/* The record an expression is evaluated on. value may be NULL (no payload). */
struct sl_expr_rec {
    const json_t *value;
    /* or, when value is NULL: the payload as MessagePack, of which only the fields an
     * expression names are decoded (a query scanning many records decodes little) */
    const uint8_t *mp;
    size_t mp_len;
    const char *source; /* may be NULL */
    size_t source_len;
    const char *strand; /* may be NULL */
    uint64_t seq, timestamp_ms;
    uint32_t flags;
};

/* Compiles text. The expression, or NULL with err = "column N: message". */
struct sl_expr *sl_expr_compile(const char *text, size_t len, char *err, size_t errlen);
/* 1 true, 0 false (anything but true is false: null, a string, a number). */
int sl_expr_match(const struct sl_expr *e, const struct sl_expr_rec *r);
/* The value of the expression as JSON (new reference; null for none). */
json_t *sl_expr_eval(const struct sl_expr *e, const struct sl_expr_rec *r);
void sl_expr_free(struct sl_expr *e);

#endif
