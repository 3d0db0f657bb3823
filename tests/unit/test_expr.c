/* The expression language: what each form evaluates to on a record (golden cases), exact
 * 64-bit integers, nulls and missing fields, short-circuit, and errors naming the column. */
#include "expr/expr.h"
#include "formats/mp_jansson.h"
#include "t.h"

#include <stdlib.h>
#include <string.h>

static json_t *g_value;
static struct sl_buf g_mp; /* g_value as MessagePack: the lazy form, used when g_lazy */
static int g_lazy;
static const struct sl_expr_rec *rec(void)
{
    static struct sl_expr_rec r;
    r = (struct sl_expr_rec){.value = g_lazy ? NULL : g_value,
                             .mp = g_lazy ? g_mp.data : NULL,
                             .mp_len = g_lazy ? g_mp.len : 0,
                             .source = "agent-7",
                             .source_len = 7,
                             .strand = "orders",
                             .seq = 42,
                             .timestamp_ms = 1700000000000ull,
                             .flags = 2};
    return &r;
}

static void is(const char *text, int want)
{
    char err[200];
    struct sl_expr *e = sl_expr_compile(text, strlen(text), err, sizeof(err));
    T_CHECK(e && sl_expr_match(e, rec()) == want, "%s%s -> %s %s", g_lazy ? "(MessagePack) " : "",
            text, want ? "true" : "false", e ? "" : err);
    sl_expr_free(e);
}

static void value_is(const char *text, const char *json)
{
    char err[200];
    struct sl_expr *e = sl_expr_compile(text, strlen(text), err, sizeof(err));
    json_t *v = e ? sl_expr_eval(e, rec()) : NULL;
    char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    T_CHECK(s && strcmp(s, json) == 0, "%s = %s (got %s)", text, json, s ? s : err);
    free(s);
    json_decref(v);
    sl_expr_free(e);
}

static void bad(const char *text, const char *want)
{
    char err[300];
    struct sl_expr *e = sl_expr_compile(text, strlen(text), err, sizeof(err));
    T_CHECK(!e && strncmp(err, want, strlen(want)) == 0, "refused: %s -> %s (%s)", text, want,
            e ? "compiled" : err);
    sl_expr_free(e);
}

static void cases(void)
{
    is("value.amount > 100 && value.status in [\"paid\", \"shipped\"]", 1);
    is("value.amount > 100 && value.status in ['refunded']", 0);
    is("value.customer.address.zip == \"75001\"", 1);
    is("value.big == 9007199254740993", 1); /* exact: a double would make it ...992 */
    is("value.big == 9007199254740992", 0);
    is("value.big > 9007199254740992", 1);
    is("value.price > 19 && value.price < 20 && value.price == 19.5", 1);
    is("value.amount == 150.0", 1); /* numbers compare by value across int and float */
    is("value.missing == null && !exists(value.missing)", 1);
    is("exists(value.customer.email) && value.customer.email == null", 1);
    is("value.missing > 0 || value.missing < 0 || value.missing == 0", 0);
    is("value.status == 150 || value.status > 1", 0); /* different types: unequal, unordered */
    is("\"vip\" in value.tags && value.tags[1] == 'vip' && value[\"odd key\"] == 1", 1);
    is("starts_with(value.name, \"Ada\") && ends_with(value.name, 'lace') && "
       "contains(lower(value.name), \"love\")",
       1);
    is("length(value.tags) == 2 && length(value.name) == 12 && upper(value.status) == 'PAID'", 1);
    is("source == \"agent-7\" && seq == 42 && timestamp_ms >= 1700000000000 && flags == 2 && "
       "strand == 'orders'",
       1);
    is("value.ok", 1);
    is("value.amount", 0); /* only true is true */
    is("!(value.amount < 100) && !!value.ok", 1);
    is("key == null && key.id == null", 1); /* records carry no key */
    is("value.status != 'paid' || value.amount >= 150", 1);
}

int main(void)
{
    g_value = json_loads("{\"amount\": 150, \"status\": \"paid\", \"big\": 9007199254740993,"
                         " \"price\": 19.5, \"tags\": [\"a\", \"vip\"], \"customer\": {\"address\":"
                         " {\"zip\": \"75001\"}, \"email\": null}, \"name\": \"Ada Lovelace\","
                         " \"ok\": true, \"odd key\": 1}",
                         0, NULL);
    sl_buf_init(&g_mp, 0);
    sl_jansson_to_mp(g_value, &g_mp, 64);
    for (g_lazy = 0; g_lazy < 2; g_lazy++)
        cases();
    g_lazy = 0;
    value_is("lower('ABC')", "\"abc\"");
    value_is("[1, 'x', null]", "[1,\"x\",null]");
    value_is("value.customer.address", "{\"zip\":\"75001\"}");

    /* MessagePack fields a JSON tree cannot hold, read lazily: as sl_mp_to_jansson decodes them
     * (a uint64 above INT64_MAX is a float; float32 widened; NaN, bin and a string that is not
     * UTF-8 do not decode: absent, so null) */
    static const uint8_t odd[] = {0x86, 0xa1, 'u',  0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                  0xff, 0xa1, 'f',  0xca, 0x3f, 0x00, 0x00, 0x00, 0xa1, 'n',  0xcb,
                                  0x7f, 0xf8, 0,    0,    0,    0,    0,    0,    0xa1, 'b',  0xc4,
                                  0x01, 0x00, 0xa1, 's',  0xa2, 0xc3, 0x28, 0xa1, 'i',  0xd0, 0x05};
    struct sl_buf keep = g_mp;
    json_t *keepv = g_value;
    sl_buf_init(&g_mp, 0);
    sl_buf_append(&g_mp, odd, sizeof(odd));
    g_value = NULL;
    g_lazy = 1;
    is("value.u > 1.8e19", 1);
    is("value.u > 9223372036854775807", 1);
    is("value.f == 0.5 && value.f < 1 && value.f >= 0.5", 1);
    is("!exists(value.n) && value.n == null && !(value.n < 1)", 1);
    is("!exists(value.b) && value.b == null", 1);
    is("!exists(value.s) && value.s == null && length(value.s) == null", 1);
    is("value.i == 5 && value.i in [1, 5] && value.i < 5.5 && value.i != '5'", 1);
    is("value.i in [1, 2] || value.i > 5", 0);
    is("seq == 42 && flags == 2 && source == 'agent-7' && timestamp_ms > 1", 1);
    sl_buf_release(&g_mp);
    g_mp = keep;
    g_value = keepv;
    g_lazy = 0;

    bad("value.amount >", "column 15: expected a value");
    bad("value.amount = 3", "column 14: '=' is not an operator");
    bad("(value.a > 1", "column 13: expected ')' (to close the '(' at column 1)");
    bad("value.a > 1 value.b", "column 13: unexpected 'v'");
    bad("valu.a > 1", "column 1: unknown name 'valu'");
    bad("starts_with(value.a)", "column 1: starts_with takes 2 arguments, not 1");
    bad("exists('x')", "column 1: exists() takes a field path");
    bad("value.a == 'abc", "column 12: unterminated string");
    bad("value.a in 3", "column 12: 'in' takes a list");
    bad("value.a > 99999999999999999999", "column 11: not an integer of 64 bits");
    bad("value.", "column 7: expected a field name after '.'");
    bad("", "column 1: expected a value");
    json_decref(g_value);
    sl_buf_release(&g_mp);
    return T_DONE();
}
