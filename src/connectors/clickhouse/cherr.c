/* Reading ClickHouse's error answers (clickhouse.h). The codes are ClickHouse's ErrorCodes; those
 * listed as row errors are the ones an INSERT ... FORMAT JSONEachRow gets for a value it cannot
 * parse or convert (checked against clickhouse-server 18.16: 26, 27, 41, 72, 117). */
#include "connectors/clickhouse/clickhouse.h"

#include <stdio.h>
#include <string.h>

/* The first occurrence of needle (NUL-ended) in h[0..len), or NULL. */
static const char *find(const char *h, size_t len, const char *needle)
{
    size_t nl = strlen(needle);
    for (size_t i = 0; nl <= len && i + nl <= len; i++)
        if (memcmp(h + i, needle, nl) == 0)
            return h + i;
    return NULL;
}

/* A decimal number at p (at most 18 digits) before end; -1 if there is none. */
static long number(const char *p, const char *end, const char **after)
{
    long v = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 18) {
        v = v * 10 + (*p++ - '0');
        digits++;
    }
    *after = p;
    return digits ? v : -1;
}

int sl_ch_parse_error(const char *body, size_t len, int *code, long *row)
{
    const char *end = body + len, *p = body, *after;
    *code = 0;
    *row = 0;
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r'))
        p++;
    if ((size_t)(end - p) < 6 || memcmp(p, "Code: ", 6) != 0)
        return -1;
    long c = number(p + 6, end, &after);
    if (c < 0 || c > 100000 || after == end || (*after != ',' && *after != '.'))
        return -1;
    *code = (int)c;
    const char *r = find(after, (size_t)(end - after), "(at row ");
    if (r) {
        long n = number(r + 8, end, &after);
        if (n > 0 && after < end && *after == ')')
            *row = n;
    }
    return 0;
}

enum sl_ch_class sl_ch_classify(int code)
{
    switch (code) {
    case 6:   /* CANNOT_PARSE_TEXT */
    case 26:  /* CANNOT_PARSE_QUOTED_STRING (a JSON string expected) */
    case 27:  /* CANNOT_PARSE_INPUT_ASSERTION_FAILED */
    case 38:  /* CANNOT_PARSE_DATE */
    case 41:  /* CANNOT_PARSE_DATETIME */
    case 53:  /* TYPE_MISMATCH */
    case 69:  /* ARGUMENT_OUT_OF_BOUND */
    case 70:  /* CANNOT_CONVERT_TYPE */
    case 72:  /* CANNOT_PARSE_NUMBER */
    case 117: /* INCORRECT_DATA: an unknown or repeated field */
    case 131: /* TOO_LARGE_STRING_SIZE */
    case 349: /* CANNOT_INSERT_NULL_IN_ORDINARY_COLUMN */
        return SL_CH_ROW;
    case 16:  /* NO_SUCH_COLUMN_IN_TABLE */
    case 60:  /* UNKNOWN_TABLE */
    case 81:  /* UNKNOWN_DATABASE */
    case 164: /* READONLY */
    case 192: /* UNKNOWN_USER */
    case 193: /* WRONG_PASSWORD */
    case 194: /* REQUIRED_PASSWORD */
    case 497: /* ACCESS_DENIED */
    case 516: /* AUTHENTICATION_FAILED */
        return SL_CH_CONFIG;
    default:
        return SL_CH_TRANSIENT;
    }
}

void sl_ch_message(const char *body, size_t len, char *out, size_t n)
{
    static const char boiler[] = " e.displayText() = DB::Exception:";
    const char *cut = find(body, len, ", e.what() = ");
    size_t l = cut ? (size_t)(cut - body) : len;
    while (l && (body[l - 1] == '\n' || body[l - 1] == '\r' || body[l - 1] == ' '))
        l--;
    if (!n)
        return;
    /* "Code: 26, e.displayText() = DB::Exception: Cannot ..." -> "Code: 26, Cannot ..." */
    const char *b = find(body, l, boiler);
    size_t head = b ? (size_t)(b - body) : l, bl = sizeof(boiler) - 1;
    size_t tail = b ? l - head - bl : 0;
    snprintf(out, n, "%.*s%.*s", (int)head, body, (int)tail, b ? b + bl : "");
    for (char *c = out; *c; c++) /* one line */
        if (*c == '\n' || *c == '\r')
            *c = ' ';
}
