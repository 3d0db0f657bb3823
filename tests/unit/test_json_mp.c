/* Unit tests for src/formats/json_mp.c: golden bytes at every encoding boundary, every rejected
 * input class with its offset, round trips, MessagePack readers on truncated input, and a
 * throughput figure printed as a comment. */
#include "formats/json_mp.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "t.h"

/* JSON text -> hex of its MessagePack, or "ERR" */
static const char *enc_n(const char *json, size_t len)
{
    struct sl_buf b;
    struct sl_jerr e;
    sl_buf_init(&b, 0);
    const char *r = "ERR";
    if (sl_json_to_mp(json, len, &b, 64, &e) == 0)
        r = t_hex(b.data, b.len);
    sl_buf_release(&b);
    return r;
}

static const char *enc(const char *json)
{
    return enc_n(json, strlen(json));
}

static void golden(const char *json, const char *want)
{
    char name[64];
    snprintf(name, sizeof(name), "%s", json);
    for (char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    T_EQ_STR(enc(json), want, name);
}

/* Input must be rejected with this offset; out's earlier content must be left alone. */
static void reject_n(const char *json, size_t len, size_t off, const char *what)
{
    struct sl_buf b;
    struct sl_jerr e = {0, ""};
    sl_buf_init(&b, 0);
    sl_buf_append(&b, "xyz", 3);
    int rc = sl_json_to_mp(json, len, &b, 64, &e);
    T_CHECK(rc == -1 && e.offset == off && b.len == 3 && memcmp(b.data, "xyz", 3) == 0,
            "rejects %s at byte %zu (rc %d, offset %zu, msg \"%s\")", what, off, rc, e.offset,
            e.msg);
    sl_buf_release(&b);
}

static void reject(const char *json, size_t off, const char *what)
{
    reject_n(json, strlen(json), off, what);
}

/* sl_mp_to_json(sl_json_to_mp(in)) == want */
static void rt2(const char *in, const char *want)
{
    struct sl_buf m, j;
    struct sl_jerr e = {0, ""};
    size_t used = 0;
    sl_buf_init(&m, 0);
    sl_buf_init(&j, 0);
    int ok = sl_json_to_mp(in, strlen(in), &m, 64, &e) == 0 &&
             sl_mp_to_json(m.data, m.len, &used, &j, 64, &e) == 0 && used == m.len &&
             sl_mp_skip(m.data, m.len, 64) == (long)m.len;
    T_CHECK(ok && j.len == strlen(want) && memcmp(j.data, want, j.len) == 0,
            "round trip %.60s -> %.60s (got %.60s%s)", in, want, ok ? (char *)j.data : e.msg,
            ok ? "" : " [error]");
    sl_buf_release(&m);
    sl_buf_release(&j);
}

static void rt(const char *json)
{
    rt2(json, json);
}

static void test_integers(void)
{
    golden("0", "00");
    golden("127", "7f");
    golden("128", "cc80");
    golden("255", "ccff");
    golden("256", "cd0100");
    golden("65535", "cdffff");
    golden("65536", "ce00010000");
    golden("4294967295", "ceffffffff");
    golden("4294967296", "cf0000000100000000");
    golden("9223372036854775807", "cf7fffffffffffffff");
    golden("9223372036854775808", "cf8000000000000000");
    golden("18446744073709551615", "cfffffffffffffffff");
    reject("18446744073709551616", 0, "2^64, one past the largest uint64");
    reject("[1, 123456789012345678901234567890]", 4, "a 30-digit integer");
    golden("-1", "ff");
    golden("-32", "e0");
    golden("-33", "d0df");
    golden("-128", "d080");
    golden("-129", "d1ff7f");
    golden("-32768", "d18000");
    golden("-32769", "d2ffff7fff");
    golden("-2147483648", "d280000000");
    golden("-2147483649", "d3ffffffff7fffffff");
    golden("-9223372036854775808", "d38000000000000000");
    reject("-9223372036854775809", 0, "one below INT64_MIN");
    golden("18446744073709551616.0", "cb43f0000000000000");
    golden("-9223372036854775809e0", "cbc3e0000000000000");
    golden("-0", "00");
    golden(" 7 ", "07");

    /* the writers agree with the parser at every boundary */
    static const int64_t sv[] = {
        0,   127, 128,  255,  256,    65535,  65536,     INT32_MAX, INT64_MAX,   -1,
        -32, -33, -128, -129, -32768, -32769, INT32_MIN, INT64_MIN, 4294967296LL};
    int same = 1;
    for (size_t i = 0; i < sizeof(sv) / sizeof(sv[0]); i++) {
        char t[32], want[64];
        struct sl_buf b;
        sl_buf_init(&b, 0);
        snprintf(t, sizeof(t), "%lld", (long long)sv[i]);
        snprintf(want, sizeof(want), "%s", enc(t));
        sl_mp_write_int(&b, sv[i]);
        same &= strcmp(t_hex(b.data, b.len), want) == 0;
        sl_buf_release(&b);
    }
    T_CHECK(same, "sl_mp_write_int matches sl_json_to_mp at every boundary");
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_mp_write_uint(&b, UINT64_MAX);
    T_EQ_STR(t_hex(b.data, b.len), "cfffffffffffffffff", "sl_mp_write_uint(UINT64_MAX)");
    sl_buf_release(&b);
}

static void test_floats(void)
{
    golden("1.0", "cb3ff0000000000000");
    golden("1e2", "cb4059000000000000");
    golden("1E+2", "cb4059000000000000");
    golden("100.0", "cb4059000000000000");
    golden("22.4", "cb4036666666666666");
    golden("0.1", "cb3fb999999999999a");
    golden("1e300", "cb7e37e43c8800759c");
    golden("-0.0", "cb8000000000000000");
    golden("0e0", "cb0000000000000000");
    golden("1e-400", "cb0000000000000000");
    golden("4.9e-324", "cb0000000000000001");
    golden("1.7976931348623157e308", "cb7fefffffffffffff");
    golden("2.2250738585072011e-308", "cb000fffffffffffff");

    /* correct rounding: every number must give exactly strtod's double */
    static const char *const tricky[] = {
        "9007199254740993.0",
        "9007199254740992.5",
        "0.30000000000000004",
        "123456789012345678901234567890.5",
        "2.4703282292062327e-324",
        "2.4703282292062328e-324",
        "1.00000000000000011102230246251565404236316680908203125",
        "1.00000000000000011102230246251565404236316680908203124",
        "7.2057594037927933e16",
        "0.000000000000000000000000000000000000000000001",
        "8.98846567431158e307",
        "3.14159265358979323846264338327950288419716939937510",
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        double d = strtod(tricky[i], NULL);
        uint64_t u;
        char want[32];
        memcpy(&u, &d, 8);
        snprintf(want, sizeof(want), "cb%016llx", (unsigned long long)u);
        if (strcmp(enc(tricky[i]), want) != 0) {
            printf("# %s -> %s, strtod gives %s\n", tricky[i], enc(tricky[i]), want);
            bad++;
        }
    }
    T_EQ_INT(bad, 0, "hard-to-round numbers give strtod's double");

    /* random decimals, mostly on the fast path */
    srand(7);
    bad = 0;
    for (int i = 0; i < 200000; i++) {
        char t[64];
        int k = 0, nd = 1 + rand() % 20, dot = rand() % (nd + 1);
        if (rand() % 2)
            t[k++] = '-';
        t[k++] = (char)('1' + rand() % 9);
        for (int j = 1; j < nd; j++) {
            if (j == dot)
                t[k++] = '.';
            t[k++] = (char)('0' + rand() % 10);
        }
        if (dot == 0 || dot >= nd || rand() % 3 == 0)
            k += snprintf(t + k, sizeof(t) - (size_t)k, "e%d", rand() % 60 - 30);
        t[k] = 0;
        double d = strtod(t, NULL);
        uint64_t u;
        char want[32];
        memcpy(&u, &d, 8);
        snprintf(want, sizeof(want), "cb%016llx", (unsigned long long)u);
        if (strcmp(enc(t), want) != 0 && bad++ < 5)
            printf("# %s -> %s, strtod gives %s\n", t, enc(t), want);
    }
    T_EQ_INT(bad, 0, "200000 random decimals give strtod's double");
}

static void str_case(size_t n, const char *head)
{
    char *j = malloc(n + 3);
    j[0] = '"';
    memset(j + 1, 'x', n);
    j[n + 1] = '"';
    j[n + 2] = 0;
    struct sl_buf b;
    struct sl_jerr e;
    sl_buf_init(&b, 0);
    int rc = sl_json_to_mp(j, n + 2, &b, 64, &e);
    size_t hl = strlen(head) / 2;
    T_CHECK(rc == 0 && b.len == hl + n && strcmp(t_hex(b.data, hl), head) == 0 &&
                (n == 0 || (b.data[hl] == 'x' && b.data[b.len - 1] == 'x')),
            "string of %zu bytes has header %s", n, head);
    sl_buf_release(&b);
    free(j);
}

static void test_strings(void)
{
    str_case(0, "a0");
    str_case(31, "bf");
    str_case(32, "d920");
    str_case(255, "d9ff");
    str_case(256, "da0100");
    str_case(65535, "daffff");
    str_case(65536, "db00010000");
    golden("\"\\u00e9\"", "a2c3a9");
    golden("\"\\u00E9\"", "a2c3a9");
    golden("\"\xc3\xa9\"", "a2c3a9");
    golden("\"\\u20AC\"", "a3e282ac");
    golden("\"\\ud83d\\ude00\"", "a4f09f9880");
    golden("\"\\uD83D\\uDE00x\"", "a5f09f988078");
    golden("\"\xf0\x9f\x98\x80\"", "a4f09f9880");
    golden("\"\\udbff\\udfff\"", "a4f48fbfbf");
    golden("\"\xf4\x8f\xbf\xbf\"", "a4f48fbfbf");
    golden("\"\xef\xbf\xbf\"", "a3efbfbf");
    golden("\"\\u0000\"", "a100");
    golden("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "a8225c2f080c0a0d09");
    golden("\"a\\nb\xc3\xa9\\u0041\"", "a6610a62c3a941");
    golden("\"\x7f\"", "a17f");
    /* escapes shrink: a long escaped string still gets the smallest header */
    char j[200] = "\"";
    for (int i = 0; i < 32; i++)
        strcat(j, "\\u0041");
    strcat(j, "\"");
    T_EQ_STR(enc(j), "d9204141414141414141414141414141414141414141414141414141414141414141",
             "32 \\u escapes -> str8");
}

/* [0,0,...] or {"k0":0,...} with n entries */
static char *big_container(size_t n, int obj, size_t *len)
{
    char *s = malloc(n * 16 + 3), *o = s;
    *o++ = obj ? '{' : '[';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *o++ = ',';
        if (obj)
            o += sprintf(o, "\"k%zu\":", i);
        *o++ = '0';
    }
    *o++ = obj ? '}' : ']';
    *o = 0;
    *len = (size_t)(o - s);
    return s;
}

static void container_case(size_t n, int obj, const char *head)
{
    size_t len;
    char *j = big_container(n, obj, &len);
    struct sl_buf b, back;
    struct sl_jerr e;
    sl_buf_init(&b, 0);
    sl_buf_init(&back, 0);
    int rc = sl_json_to_mp(j, len, &b, 64, &e);
    size_t hl = strlen(head) / 2, used = 0;
    T_CHECK(rc == 0 && strcmp(t_hex(b.data, hl), head) == 0 &&
                sl_mp_skip(b.data, b.len, 64) == (long)b.len,
            "%s of %zu entries has header %s", obj ? "object" : "array", n, head);
    rc = sl_mp_to_json(b.data, b.len, &used, &back, 64, &e);
    T_CHECK(rc == 0 && used == b.len && back.len == len && memcmp(back.data, j, len) == 0,
            "%s of %zu entries round-trips", obj ? "object" : "array", n);
    sl_buf_release(&b);
    sl_buf_release(&back);
    free(j);
}

static void test_containers(void)
{
    golden("[]", "90");
    golden("{}", "80");
    golden(" [ ] ", "90");
    golden("[1,[2,[]],{}]", "9301920290"
                            "80");
    golden("{\"a\":1}", "81a16101");
    golden("{\"b\":1,\"a\":2,\"c\":3}", "83a16201a16102a16303");
    golden("{\"b\":1,\"a\":2,\"b\":3}", "83a16201a16102a16203");
    golden("{\"a\":true,\"b\":false,\"c\":null}", "83a161c3a162c2a163c0");
    golden("\t\r\n{ \"a\" : [ 1 , 2 ] }\n", "81a1619201"
                                            "02");
    container_case(15, 0, "9f");
    container_case(16, 0, "dc0010");
    container_case(65535, 0, "dcffff");
    container_case(65536, 0, "dd00010000");
    container_case(15, 1, "8f");
    container_case(16, 1, "de0010");
    container_case(65536, 1, "df00010000");

    /* nested containers that grow their headers: contents move, outer ones still right */
    rt("[[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15],{\"a\":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,"
       "16]},[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15],3,4,5,6,7,8,9,10,11,12,13,14,15,16]");
}

static void test_rejects(void)
{
    struct sl_buf b;
    struct sl_jerr e;
    sl_buf_init(&b, 0);
    T_CHECK(sl_json_to_mp("", 0, &b, 64, &e) == -1 && e.offset == 0 &&
                strcmp(e.msg, "empty body") == 0,
            "empty input -> \"empty body\" at 0 (%s)", e.msg);
    size_t used;
    T_CHECK(sl_json_to_mp(NULL, 0, &b, 64, &e) == -1 && strcmp(e.msg, "empty body") == 0 &&
                sl_mp_skip(NULL, 0, 64) == -1 && sl_mp_to_json(NULL, 0, &used, &b, 64, &e) == -1,
            "NULL input with length 0 is rejected");
    T_CHECK(sl_json_to_mp(" \n", 2, &b, 64, &e) == -1 && e.offset == 0 &&
                strcmp(e.msg, "empty body") == 0,
            "whitespace only -> \"empty body\"");
    T_CHECK(sl_json_to_mp("{\"a\" 1}", 7, &b, 64, &e) == -1 &&
                strcmp(e.msg, "invalid JSON at byte 5: expected ':' after object key") == 0,
            "message format (%s)", e.msg);
    T_CHECK(sl_json_to_mp("[1,2", 4, &b, 64, &e) == -1 &&
                strcmp(e.msg, "invalid JSON at byte 4: unexpected end of input") == 0,
            "truncated input message (%s)", e.msg);
    T_CHECK(sl_json_to_mp("[1] x", 5, &b, 64, &e) == -1 &&
                strcmp(e.msg, "invalid JSON at byte 4: unexpected data after the JSON value") == 0,
            "trailing garbage message (%s)", e.msg);
    T_CHECK(b.len == 0 && !b.failed, "buffer untouched after errors");
    sl_buf_release(&b);

    /* structure */
    reject("{", 1, "unclosed object");
    reject("[", 1, "unclosed array");
    reject("[1,", 3, "array ending after ','");
    reject("{\"a\":", 5, "object ending after ':'");
    reject("[1,]", 3, "trailing comma in array");
    reject("{\"a\":1,}", 7, "trailing comma in object");
    reject("{\"a\" 1}", 5, "missing ':'");
    reject("{1:2}", 1, "non-string key");
    reject("{'a':1}", 1, "single-quoted key");
    reject("[1 2]", 3, "missing ',' in array");
    reject("{\"a\":1 \"b\":2}", 7, "missing ',' in object");
    reject("[1}", 2, "mismatched bracket");
    reject("{\"a\":1]", 6, "mismatched brace");
    reject("]", 0, "stray ']'");
    reject(",", 0, "stray ','");
    reject("[,1]", 1, "leading comma");
    /* trailing garbage */
    reject("1 2", 2, "two values");
    reject("{} x", 3, "garbage after object");
    reject("[]]", 2, "extra ']'");
    reject("\"a\"\"b\"", 3, "two strings");
    reject("truex", 4, "garbage after literal");
    reject_n("1\0", 2, 1, "NUL after value");
    /* literals */
    reject("tru", 0, "truncated true");
    reject("nul", 0, "truncated null");
    reject("fals", 0, "truncated false");
    reject("True", 0, "capitalised literal");
    reject("[nan]", 1, "nan");
    reject("Infinity", 0, "Infinity");
    reject("\xef\xbb\xbf{}", 0, "byte order mark");
    reject("undefined", 0, "undefined");
    /* numbers */
    reject("01", 1, "leading zero");
    reject("-01", 2, "leading zero after '-'");
    reject("-", 1, "lone '-'");
    reject("-a", 1, "'-' then a letter");
    reject("1.", 2, "'.' without digits");
    reject("1.e5", 2, "'.' followed by exponent");
    reject("1e", 2, "'e' without digits");
    reject("1e+", 3, "'e+' without digits");
    reject("+1", 0, "leading '+'");
    reject(".5", 0, "leading '.'");
    reject("0x10", 1, "hex number");
    reject("1e400", 0, "number overflowing a double");
    reject("[-1e999]", 1, "negative number overflowing a double");
    reject("1.5.3", 3, "second '.'");
    /* strings */
    reject("\"abc", 0, "unterminated string");
    reject("[\"abc\\\"]", 1, "string ending in an escaped quote");
    reject("\"abc\\", 0, "string ending in a backslash");
    reject("\"a\\x\"", 2, "unknown escape");
    reject("\"a\\U0041\"", 2, "\\U escape");
    reject("\"\\u12G4\"", 1, "bad hex in \\u");
    reject("\"\\u12\"", 1, "short \\u");
    reject("\"\\ud800\"", 1, "lone high surrogate");
    reject("\"\\udc00\"", 1, "lone low surrogate");
    reject("\"\\ud800\\u0041\"", 1, "high surrogate followed by non-surrogate");
    reject("\"\\ud800\\ud800\"", 1, "two high surrogates");
    reject("\"ab\\ud83d\"", 3, "high surrogate at end of string");
    reject("\"a\tb\"", 2, "raw tab in string");
    reject("\"a\nb\"", 2, "raw newline in string");
    reject("\"\x01\"", 1, "raw 0x01 in string");
    reject_n("\"\0\"", 3, 1, "raw NUL in string");
    reject("\"\x1f\"", 1, "raw 0x1f in string");
    /* UTF-8 */
    reject("\"\x80\"", 1, "stray continuation byte");
    reject("\"ab\xbf\"", 3, "stray continuation byte later");
    reject("\"\xc0\x80\"", 1, "overlong NUL");
    reject("\"\xc1\xbf\"", 1, "overlong 2-byte");
    reject("\"\xe0\x80\xaf\"", 1, "overlong 3-byte");
    reject("\"\xe0\x9f\xbf\"", 1, "overlong 3-byte (max)");
    reject("\"\xf0\x8f\xbf\xbf\"", 1, "overlong 4-byte");
    reject("\"\xed\xa0\x80\"", 1, "UTF-8-encoded high surrogate");
    reject("\"\xed\xbf\xbf\"", 1, "UTF-8-encoded low surrogate");
    reject("\"\xf4\x90\x80\x80\"", 1, "above U+10FFFF");
    reject("\"\xf5\x80\x80\x80\"", 1, "lead byte 0xf5");
    reject("\"\xff\"", 1, "byte 0xff");
    reject("\"\xe2\x82\"", 1, "truncated 3-byte sequence");
    reject("\"x\xf0\x9f\x98\"", 2, "truncated 4-byte sequence");
    reject("\"\xe2", 1, "sequence cut by end of input");
    reject("\"\xc3\xa9\xc3\"", 3, "valid then truncated");
    reject("\"\xc3\x41\"", 1, "lead byte then ASCII");
    reject("\"0123456789abcdef0123456789\xff\"", 27, "bad byte after a SIMD block");
    reject("[\xc3\xa9]", 1, "UTF-8 outside a string");
}

static void nest(char *s, int n, int obj)
{
    char *o = s;
    for (int i = 0; i < n; i++)
        o += sprintf(o, obj ? "{\"a\":" : "[");
    *o++ = '1';
    for (int i = 0; i < n; i++)
        *o++ = obj ? '}' : ']';
    *o = 0;
}

static void test_depth(void)
{
    static char s[20000];
    struct sl_buf b, j;
    struct sl_jerr e;
    sl_buf_init(&b, 0);
    sl_buf_init(&j, 0);
    nest(s, 64, 0);
    T_CHECK(sl_json_to_mp(s, strlen(s), &b, 64, &e) == 0, "64 nested arrays pass max_depth 64");
    size_t used;
    T_CHECK(sl_mp_skip(b.data, b.len, 64) == (long)b.len && sl_mp_skip(b.data, b.len, 63) == -1,
            "sl_mp_skip depth limit");
    T_CHECK(sl_mp_to_json(b.data, b.len, &used, &j, 64, &e) == 0 &&
                sl_mp_to_json(b.data, b.len, &used, &j, 63, &e) == -1 && e.offset == 63,
            "sl_mp_to_json depth limit (%s)", e.msg);
    sl_buf_reset(&b);
    nest(s, 65, 0);
    T_CHECK(sl_json_to_mp(s, strlen(s), &b, 64, &e) == -1 && e.offset == 64 && b.len == 0,
            "65 nested arrays fail at byte 64 (%s)", e.msg);
    nest(s, 65, 1);
    T_CHECK(sl_json_to_mp(s, strlen(s), &b, 64, &e) == -1 && e.offset == 64 * 5,
            "65 nested objects fail at the 65th '{' (%zu)", e.offset);
    T_CHECK(sl_json_to_mp("1", 1, &b, 0, &e) == 0 && sl_json_to_mp("[]", 2, &b, 0, &e) == -1,
            "max_depth 0 allows scalars only");
    /* empty containers count as a level on both sides */
    sl_buf_reset(&b);
    sl_buf_reset(&j);
    static const uint8_t e2[] = {0x91, 0x80};
    T_CHECK(sl_json_to_mp("[{}]", 4, &b, 1, &e) == -1 && e.offset == 1 &&
                sl_mp_skip(e2, 2, 1) == -1 && sl_mp_to_json(e2, 2, &used, &j, 1, &e) == -1 &&
                e.offset == 1 && sl_mp_skip(e2, 2, 2) == 2 &&
                sl_mp_to_json(e2, 2, &used, &j, 2, &e) == 0,
            "an empty container is a nesting level for JSON, skip and mp_to_json");
    sl_buf_reset(&b);
    /* deeper than the inline stack: the heap path */
    nest(s, 1000, 0);
    T_CHECK(sl_json_to_mp(s, strlen(s), &b, 1000, &e) == 0 &&
                sl_mp_skip(b.data, b.len, 1000) == (long)b.len &&
                sl_mp_skip(b.data, b.len, 999) == -1,
            "1000 nested arrays with max_depth 1000");
    sl_buf_reset(&j);
    T_CHECK(sl_mp_to_json(b.data, b.len, &used, &j, 1000, &e) == 0 &&
                strcmp((char *)j.data, s) == 0,
            "1000 nested arrays round-trip");
    sl_buf_reset(&b);
    nest(s, 1000, 1);
    T_CHECK(sl_json_to_mp(s, strlen(s), &b, 999, &e) == -1 && e.offset == 999 * 5,
            "1000 nested objects fail with max_depth 999");
    sl_buf_release(&b);
    sl_buf_release(&j);
}

static void test_cap(void)
{
    struct sl_buf b;
    struct sl_jerr e;
    sl_buf_init(&b, 8);
    sl_buf_append(&b, "ab", 2);
    T_CHECK(sl_json_to_mp("\"0123456789\"", 12, &b, 64, &e) == -1 && b.len == 2 && !b.failed &&
                strncmp(e.msg, "output too large", 16) == 0,
            "output over the buffer cap is an error, buffer restored (%s)", e.msg);
    T_CHECK(sl_json_to_mp("[1,2,3]", 7, &b, 64, &e) == 0 && b.len == 6,
            "small output fits under the cap");
    sl_buf_reset(&b);
    T_CHECK(sl_json_to_mp("[1,2,3,4,5,6,7,8,9,0,1,2,3,4,5,6]", 33, &b, 64, &e) == -1 && b.len == 0,
            "header growth over the cap is an error");
    sl_buf_release(&b);
    sl_buf_init(&b, 4);
    size_t used;
    static const uint8_t m[] = {0x92, 0xa3, 'a', 'b', 'c', 0x01};
    T_CHECK(sl_mp_to_json(m, sizeof(m), &used, &b, 64, &e) == -1 && b.len == 0 && !b.failed,
            "sl_mp_to_json over the cap is an error, buffer restored");
    sl_buf_release(&b);
}

static void test_round_trips(void)
{
    rt("{\"sensor\":\"temp-7\",\"value\":22.4,\"unit\":\"celsius\",\"ts\":1747003200000,"
       "\"tags\":[\"a\",\"b\"],\"ok\":true,\"site\":\"rack-3\",\"note\":null}");
    rt("[]");
    rt("{}");
    rt("[[],{},[[]],{\"\":{}}]");
    rt("{\"b\":1,\"a\":2,\"b\":3}");
    rt("0");
    rt("-1");
    rt("18446744073709551615");
    rt("-9223372036854775808");
    rt("1.5");
    rt("100.0");
    rt("-0.0");
    rt("0.1");
    rt("22.4");
    rt("1e+300");
    rt("1e-07");
    rt("1.7976931348623157e+308");
    rt2("5e-324", "4.94065645841247e-324"); /* %.15g already reads back */
    rt("0.30000000000000004");
    rt("123456789012345.0");
    rt("1e+15");
    rt("\"\"");
    rt("\"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac\"");
    rt("\"a\\\"b\\\\c\\n\\t\\r\\u0000\\u001f\x7f\"");
    rt("[true,false,null]");
    rt2(" { \"a\" : [ 1 , 2.50 , 1E2 ] } ", "{\"a\":[1,2.5,100.0]}");
    rt2("\"\\u00e9\\ud83d\\ude00\\/\\b\\f\"", "\"\xc3\xa9\xf0\x9f\x98\x80/\\u0008\\u000c\"");
    rt2("-0", "0");
    rt2("1e2", "100.0");
    rt2("18446744073709551616.0", "1.8446744073709552e+19");
    rt2("0.100000000000000005", "0.1");
    reject("1E400000000000000000000000", 0, "huge exponent");
}

static const char *tojson(const uint8_t *m, size_t n, size_t *used, struct sl_jerr *e)
{
    static char res[256];
    struct sl_buf b;
    sl_buf_init(&b, 0);
    if (sl_mp_to_json(m, n, used, &b, 64, e) == 0)
        snprintf(res, sizeof(res), "%s", (char *)b.data);
    else
        snprintf(res, sizeof(res), "ERR@%zu", e->offset);
    sl_buf_release(&b);
    return res;
}

#define MP(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})

static void mpj(const uint8_t *m, size_t n, const char *want, const char *what)
{
    struct sl_jerr e = {0, ""};
    size_t used = 0;
    const char *got = tojson(m, n, &used, &e);
    long sk = sl_mp_skip(m, n, 64);
    int ok = strcmp(got, want) == 0;
    if (strncmp(want, "ERR", 3) != 0)
        ok = ok && sk == (long)used;
    T_CHECK(ok, "mp->json %s: %s (got %s, %s)", what, want, got, e.msg);
}

/* The rule from the header, done the slow way. */
static void ref_float(char *o, size_t cap, double d)
{
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(o, cap, "%.*g", prec, d);
        if (strtod(o, NULL) == d)
            break;
    }
    if (!strpbrk(o, ".e"))
        strcat(o, ".0");
}

static int float_matches(double d)
{
    uint8_t m[9] = {0xcb};
    uint64_t u;
    char want[64];
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        m[1 + i] = (uint8_t)(u >> (56 - 8 * i));
    struct sl_buf b;
    struct sl_jerr e;
    size_t used;
    sl_buf_init(&b, 0);
    ref_float(want, sizeof(want) - 3, d);
    int ok = sl_mp_to_json(m, 9, &used, &b, 64, &e) == 0 && strcmp((char *)b.data, want) == 0;
    if (!ok)
        printf("# %.17g: got %s, want %s\n", d, b.data ? (char *)b.data : "(error)", want);
    sl_buf_release(&b);
    return ok;
}

static void test_float_printing(void)
{
    static const double fixed[] = {0.0,
                                   -0.0,
                                   1.0,
                                   -1.0,
                                   0.1,
                                   22.4,
                                   100.0,
                                   1e-4,
                                   9.9e-5,
                                   1.5e-4,
                                   1e15,
                                   999999999999999.0,
                                   1e14,
                                   123456789012345.6,
                                   0.30000000000000004,
                                   1e-5,
                                   5e-324,
                                   1.7976931348623157e308,
                                   1e22,
                                   1e23,
                                   0.0001234,
                                   1013.25,
                                   -273.15,
                                   3.141592653589793};
    int bad = 0;
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
        bad += !float_matches(fixed[i]);
    srand(11);
    for (int i = 0; i < 100000 && bad < 5; i++) {
        char t[40];
        snprintf(t, sizeof(t), "%d.%0*de%d", rand() % 100000, rand() % 8, rand() % 100000,
                 rand() % 30 - 15);
        bad += !float_matches(strtod(t, NULL));
        uint64_t u = (uint64_t)rand() << 62 ^ (uint64_t)rand() << 31 ^ (uint64_t)rand();
        double d;
        memcpy(&d, &u, 8);
        if (isfinite(d))
            bad += !float_matches(d);
        bad += !float_matches((double)(rand() % 1000000) / (1 + rand() % 1000));
    }
    T_EQ_INT(bad, 0, "float64 printing matches the %.15g/%.16g/%.17g rule for 300000 values");
}

static void test_mp_to_json(void)
{
    mpj(MP(0xca, 0x3d, 0xcc, 0xcc, 0xcd), "0.1", "float32 0.1");
    mpj(MP(0xca, 0x42, 0xc8, 0x00, 0x00), "100.0", "float32 100");
    mpj(MP(0xcb, 0x40, 0x59, 0, 0, 0, 0, 0, 0), "100.0", "float64 100");
    mpj(MP(0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), "ERR@0", "NaN");
    mpj(MP(0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0), "ERR@0", "-Inf");
    mpj(MP(0xca, 0x7f, 0x80, 0, 0), "ERR@0", "float32 Inf");
    mpj(MP(0xd3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "-1", "int64 -1");
    mpj(MP(0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), "18446744073709551615",
        "uint64 max");
    mpj(MP(0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0), "-9223372036854775808", "int64 min");
    mpj(MP(0xd0, 0x05), "5", "non-minimal int8");
    mpj(MP(0xcd, 0x00, 0x01), "1", "non-minimal uint16");
    mpj(MP(0xe0), "-32", "negative fixint");
    mpj(MP(0xd9, 0x01, 'a'), "\"a\"", "str8 with a short string");
    mpj(MP(0x81, 0x01, 0x02), "ERR@1", "integer map key");
    mpj(MP(0x82, 0xa1, 'a', 0x01, 0xc0, 0x02), "ERR@4", "nil as second key");
    mpj(MP(0x81, 0xc4, 0x01, 'a', 0x02), "ERR@1", "bin map key");
    mpj(MP(0xc4, 0x01, 0x00), "ERR@0", "bin");
    mpj(MP(0xd4, 0x01, 0x00), "ERR@0", "fixext1");
    mpj(MP(0xc7, 0x01, 0x05, 0x00), "ERR@0", "ext8");
    mpj(MP(0xc1), "ERR@0", "reserved 0xc1");
    mpj(MP(0x91, 0xc1), "ERR@1", "reserved 0xc1 in an array");
    mpj(MP(0xa1, 0xff), "ERR@1", "invalid UTF-8 string");
    mpj(MP(0xa3, 0xed, 0xa0, 0x80), "ERR@1", "UTF-8-encoded surrogate");
    mpj(MP(0xa2, 'a'), "ERR@0", "truncated string");
    mpj(MP(0x92, 0x01), "ERR@2", "truncated array");
    mpj(MP(0xdc, 0x00), "ERR@0", "truncated array16 header");
    mpj(MP(0x01, 0x02), "1", "trailing bytes are not part of the value");
    mpj(MP(0xa2, 0x0a, 0x22), "\"\\n\\\"\"", "string escaping");
    mpj(MP(0x93, 0xc0, 0xc2, 0xc3), "[null,false,true]", "nil and bools");
    mpj(MP(0x82, 0xa1, 'a', 0x90, 0xa1, 'b', 0x80), "{\"a\":[],\"b\":{}}", "empty containers");
    mpj(MP(0xde, 0x00, 0x01, 0xa1, 'a', 0xdc, 0x00, 0x01, 0x07), "{\"a\":[7]}",
        "non-minimal map16/array16");

    struct sl_jerr e;
    size_t used;
    tojson(MP(0xc4, 0x01, 0x00), &used, &e);
    T_EQ_STR(e.msg, "binary values cannot be shown as JSON", "bin message");
}

static void test_readers(void)
{
    const char *rec =
        "{\"id\":-5,\"name\":\"x\",\"v\":[1,2],\"big\":18446744073709551615,\"f\":1.5,"
        "\"t\":true,\"n\":null}";
    struct sl_buf b;
    struct sl_jerr e;
    sl_buf_init(&b, 0);
    T_CHECK(sl_json_to_mp(rec, strlen(rec), &b, 64, &e) == 0, "reader record encodes");
    const uint8_t *p = b.data, *end = b.data + b.len;
    uint32_t n = 0, sn = 0;
    const char *s = NULL;
    int64_t v = 0;
    double d = 0;
    int bo = 0;
    T_CHECK(sl_mp_type(p, end) == SL_MP_MAP && sl_mp_read_map(&p, end, &n) == 0 && n == 7,
            "read_map");
    T_CHECK(sl_mp_read_str(&p, end, &s, &sn) == 0 && sn == 2 && memcmp(s, "id", 2) == 0,
            "read_str key");
    T_CHECK(sl_mp_type(p, end) == SL_MP_INT && sl_mp_read_int(&p, end, &v) == 0 && v == -5,
            "read_int -5");
    sl_mp_read_str(&p, end, &s, &sn);
    T_CHECK(sl_mp_type(p, end) == SL_MP_STR && sl_mp_read_str(&p, end, &s, &sn) == 0 && sn == 1,
            "read_str value");
    sl_mp_read_str(&p, end, &s, &sn);
    T_CHECK(sl_mp_type(p, end) == SL_MP_ARRAY && sl_mp_read_array(&p, end, &n) == 0 && n == 2 &&
                sl_mp_read_int(&p, end, &v) == 0 && v == 1 && sl_mp_read_int(&p, end, &v) == 0 &&
                v == 2,
            "read_array");
    sl_mp_read_str(&p, end, &s, &sn);
    const uint8_t *q = p;
    T_CHECK(sl_mp_read_int(&p, end, &v) == -1 && p == q, "read_int refuses a uint64 > INT64_MAX");
    T_CHECK(sl_mp_read_double(&p, end, &d) == 0 && d == 18446744073709551615.0,
            "read_double of a uint64");
    sl_mp_read_str(&p, end, &s, &sn);
    T_CHECK(sl_mp_type(p, end) == SL_MP_FLOAT && sl_mp_read_int(&p, end, &v) == -1 &&
                sl_mp_read_double(&p, end, &d) == 0 && d == 1.5,
            "read_double of a float");
    sl_mp_read_str(&p, end, &s, &sn);
    T_CHECK(sl_mp_type(p, end) == SL_MP_BOOL && sl_mp_read_nil(&p, end) == -1 &&
                sl_mp_read_bool(&p, end, &bo) == 0 && bo == 1,
            "read_bool");
    sl_mp_read_str(&p, end, &s, &sn);
    T_CHECK(sl_mp_type(p, end) == SL_MP_NIL && sl_mp_read_nil(&p, end) == 0 && p == end,
            "read_nil, at end");
    T_CHECK(sl_mp_type(p, end) == SL_MP_INVALID, "type at end is INVALID");

    /* every proper prefix of a value is rejected */
    int bad = 0;
    for (size_t i = 0; i < b.len; i++) {
        size_t used;
        struct sl_buf j;
        sl_buf_init(&j, 0);
        if (sl_mp_skip(b.data, i, 64) != -1 || sl_mp_to_json(b.data, i, &used, &j, 64, &e) != -1 ||
            j.len != 0)
            bad++;
        sl_buf_release(&j);
    }
    T_EQ_INT(bad, 0, "every truncation of a record is rejected by skip and mp_to_json");
    T_EQ_INT(sl_mp_skip(b.data, b.len, 64), b.len, "skip of the whole record");

    /* readers on truncated or wrong input leave *p alone */
    struct {
        const uint8_t *m;
        size_t n;
    } tr[] = {
        {MP(0xde, 0x00)},
        {MP(0xdf, 0x00, 0x00, 0x00)},
        {MP(0xdc)},
        {MP(0xdd, 0x01, 0x02)},
        {MP(0xa5, 'a', 'b')},
        {MP(0xd9)},
        {MP(0xd9, 0x03, 'a')},
        {MP(0xda, 0x00, 0x02, 'a')},
        {MP(0xdb, 0x00, 0x00, 0x00, 0x02, 'a')},
        {MP(0xcd, 0x01)},
        {MP(0xcf, 0, 0, 0, 0, 0, 0, 0)},
        {MP(0xd3, 0xff)},
        {MP(0xcb, 0x40)},
        {MP(0xc1)},
    };
    bad = 0;
    for (size_t i = 0; i < sizeof(tr) / sizeof(tr[0]); i++) {
        const uint8_t *p0 = tr[i].m, *e0 = tr[i].m + tr[i].n;
        const uint8_t *pp = p0;
        if (sl_mp_read_map(&pp, e0, &n) == 0 || sl_mp_read_array(&pp, e0, &n) == 0 ||
            sl_mp_read_str(&pp, e0, &s, &sn) == 0 || sl_mp_read_int(&pp, e0, &v) == 0 ||
            sl_mp_read_double(&pp, e0, &d) == 0 || pp != p0 ||
            (sl_mp_skip(p0, tr[i].n, 64) != -1 && tr[i].m[0] != 0xde && tr[i].m[0] != 0xdf &&
             tr[i].m[0] != 0xdc && tr[i].m[0] != 0xdd))
            bad++, printf("# reader case %zu\n", i);
    }
    T_EQ_INT(bad, 0, "readers reject truncated input and do not advance");
    /* container headers are complete even though their entries are missing */
    q = (const uint8_t[]){0xde, 0x00, 0x02};
    p = q;
    T_CHECK(sl_mp_read_map(&p, q + 3, &n) == 0 && n == 2 && p == q + 3 &&
                sl_mp_skip(q, 3, 64) == -1,
            "map16 header reads, skip needs the entries");
    q = (const uint8_t[]){0x00};
    T_CHECK(sl_mp_type(q, q) == SL_MP_INVALID, "type of nothing is INVALID");
    static const struct {
        uint8_t b;
        int t;
    } ty[] = {{0x00, SL_MP_INT}, {0x7f, SL_MP_INT}, {0x80, SL_MP_MAP},     {0x90, SL_MP_ARRAY},
              {0xa0, SL_MP_STR}, {0xc0, SL_MP_NIL}, {0xc1, SL_MP_INVALID}, {0xc2, SL_MP_BOOL},
              {0xc4, SL_MP_BIN}, {0xc7, SL_MP_EXT}, {0xca, SL_MP_FLOAT},   {0xcb, SL_MP_FLOAT},
              {0xcc, SL_MP_INT}, {0xd3, SL_MP_INT}, {0xd4, SL_MP_EXT},     {0xd8, SL_MP_EXT},
              {0xd9, SL_MP_STR}, {0xdb, SL_MP_STR}, {0xdc, SL_MP_ARRAY},   {0xdf, SL_MP_MAP},
              {0xe0, SL_MP_INT}, {0xff, SL_MP_INT}};
    bad = 0;
    for (size_t i = 0; i < sizeof(ty) / sizeof(ty[0]); i++)
        if (sl_mp_type(&ty[i].b, &ty[i].b + 1) != ty[i].t)
            bad++;
    T_EQ_INT(bad, 0, "sl_mp_type of every first-byte class (header alone)");
    sl_buf_release(&b);
}

/* CPU time of this thread, so the figure means "on one core" even on a busy machine. */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void bench(void)
{
    char rec[256];
    int n = snprintf(rec, sizeof(rec),
                     "{\"sensor\":\"temp-7\",\"value\":22.4,\"unit\":\"celsius\","
                     "\"ts\":1747003200000,\"tags\":[\"a\",\"b\"],\"ok\":true,"
                     "\"site\":\"rack-3\",\"note\":\"");
    while (n < 198)
        rec[n++] = '.';
    rec[n++] = '"';
    rec[n++] = '}';
    rec[n] = 0;
    struct sl_buf b, j;
    struct sl_jerr e;
    sl_buf_init(&b, 0);
    sl_buf_init(&j, 0);
    const int iters = 1000000;
    int fails = 0;
    double t0 = now();
    for (int i = 0; i < iters; i++) {
        sl_buf_reset(&b);
        fails += sl_json_to_mp(rec, (size_t)n, &b, 64, &e) != 0;
    }
    double t1 = now();
    size_t used;
    for (int i = 0; i < iters / 4; i++) {
        sl_buf_reset(&j);
        fails += sl_mp_to_json(b.data, b.len, &used, &j, 64, &e) != 0;
    }
    double t2 = now();
    T_EQ_INT(fails, 0, "benchmark records transcode");
    printf("# json_to_mp: %.0f records/s (%d-byte record, %.0f MB/s, CPU time of one thread)\n",
           iters / (t1 - t0), n, iters * (double)n / (t1 - t0) / 1e6);
    printf("# mp_to_json: %.0f records/s\n", iters / 4 / (t2 - t1));
    sl_buf_release(&b);
    sl_buf_release(&j);
}

/* sl_buf_printf formats into the room there is and grows only when it did not fit: the result
 * must be what snprintf gives, across every boundary of the allocation, and the max must hold. */
static void test_buf_printf(void)
{
    static char ref[200000], piece[300];
    struct sl_buf b;
    sl_buf_init(&b, 0);
    size_t rl = 0;
    int ok = 1;
    for (int i = 0; i < 600 && ok; i++) {
        int w = (i * 37) % 250;
        int n = snprintf(piece, sizeof(piece), "%*d|%s", w, i, i % 3 ? "x" : "");
        memcpy(ref + rl, piece, (size_t)n);
        rl += (size_t)n;
        ok = sl_buf_printf(&b, "%*d|%s", w, i, i % 3 ? "x" : "") == 0 && b.len == rl &&
             b.data[b.len] == 0 && memcmp(b.data, ref, rl) == 0;
    }
    T_CHECK(ok,
            "600 formatted appends of 1 to 250 bytes equal snprintf's (%zu bytes, %zu allocated)",
            b.len, b.cap);
    /* exactly at the end of the allocation: room - 1, room, room + 1 bytes */
    int edges = 1;
    for (int d = -1; d <= 1; d++) {
        sl_buf_reset(&b);
        size_t room = b.cap - 1; /* one byte for the NUL */
        int n = (int)room + d;
        edges &= sl_buf_printf(&b, "%0*d", n, 7) == 0 && b.len == (size_t)n &&
                 b.data[n - 1] == '7' && b.data[n] == 0;
    }
    T_CHECK(edges, "a format one byte under, at and over the allocation's room is whole");
    sl_buf_release(&b);

    sl_buf_init(&b, 100);
    sl_buf_puts(&b, "0123456789");
    size_t cap = b.cap;
    int r1 = sl_buf_printf(&b, "%090d", 1); /* to exactly 100: allowed */
    int r2 = sl_buf_printf(&b, "%s", "z");  /* one over the max, inside the allocation */
    T_CHECK(r1 == 0 && r2 < 0 && b.failed && b.len == 100 && b.data[100] == 0 && cap == b.cap,
            "over the max it fails and leaves the buffer as it was (len %zu)", b.len);
    sl_buf_release(&b);
}

int main(void)
{
    test_buf_printf();
    test_integers();
    test_floats();
    test_strings();
    test_containers();
    test_rejects();
    test_depth();
    test_cap();
    test_round_trips();
    test_float_printing();
    test_mp_to_json();
    test_readers();
    bench();
    return T_DONE();
}
