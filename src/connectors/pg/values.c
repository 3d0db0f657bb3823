#include "connectors/pg/values.h"

#include "core/util.h"
#include "formats/json_mp.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Built-in type OIDs (src/include/catalog/pg_type.dat). */
enum {
    OID_BOOL = 16,
    OID_BYTEA = 17,
    OID_INT8 = 20,
    OID_INT2 = 21,
    OID_INT4 = 23,
    OID_OID = 26,
    OID_XID = 28,
    OID_JSON = 114,
    OID_FLOAT4 = 700,
    OID_FLOAT8 = 701,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_JSONB = 3802,
};

/* array type OID -> element type OID, for the arrays of the types typed above (and text) */
static const uint32_t g_arrays[][2] = {
    {1000, OID_BOOL},
    {1001, OID_BYTEA},
    {1016, OID_INT8},
    {1005, OID_INT2},
    {1007, OID_INT4},
    {1028, OID_OID},
    {199, OID_JSON},
    {1021, OID_FLOAT4},
    {1022, OID_FLOAT8},
    {1115, OID_TIMESTAMP},
    {1185, OID_TIMESTAMPTZ},
    {3807, OID_JSONB},
    {1231, 1700},
    {1009, 25},
    {1015, 1043},
    {1014, 1042},
    {2951, 2950},
    {1182, 1082},
    {1183, 1083},
    {1003, 19},
};

static uint32_t array_elem(uint32_t oid)
{
    for (size_t i = 0; i < sizeof(g_arrays) / sizeof(g_arrays[0]); i++)
        if (g_arrays[i][0] == oid)
            return g_arrays[i][1];
    return 0;
}

static int put_str(struct sl_buf *b, const char *s, size_t n)
{
    return sl_mp_write_str_lossy(b, s, n);
}

/* Copies s[0..n) into tmp as a C string; -1 if empty or too long for a number. */
static int number_text(char *tmp, size_t cap, const char *s, size_t n)
{
    if (n == 0 || n >= cap)
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    return 0;
}

static int put_int(struct sl_buf *b, const char *s, size_t n)
{
    char tmp[32], *end;
    if (number_text(tmp, sizeof(tmp), s, n) < 0)
        return put_str(b, s, n);
    errno = 0;
    long long v = strtoll(tmp, &end, 10);
    if (*end || errno)
        return put_str(b, s, n);
    return sl_mp_write_int(b, v);
}

static int put_float(struct sl_buf *b, const char *s, size_t n)
{
    char tmp[64], *end;
    if (number_text(tmp, sizeof(tmp), s, n) < 0)
        return put_str(b, s, n);
    double v = strtod(tmp, &end);
    if (*end || !isfinite(v))
        return put_str(b, s, n); /* NaN, Infinity, -Infinity */
    return sl_mp_write_double(b, v);
}

/* "2024-01-02 03:04:05.5[+00[:30]]" -> "2024-01-02T03:04:05.5Z" (or the offset as +HH:MM). */
static int put_timestamp(struct sl_buf *b, const char *s, size_t n, int tz)
{
    char out[80];
    if (n < 19 || n > 60 || s[10] != ' ' || s[4] != '-')
        return put_str(b, s, n); /* infinity, BC dates, other DateStyles: as sent */
    size_t body = n;
    const char *off = NULL;
    if (tz) {
        for (size_t i = 19; i < n; i++)
            if (s[i] == '+' || s[i] == '-') {
                body = i;
                off = s + i;
                break;
            }
        if (!off)
            return put_str(b, s, n);
    }
    memcpy(out, s, body);
    out[10] = 'T';
    size_t len = body;
    size_t offlen = off ? n - body : 0;
    if (!off || (offlen == 3 && memcmp(off, "+00", 3) == 0)) {
        out[len++] = 'Z';
    } else {
        memcpy(out + len, off, offlen);
        len += offlen;
        if (offlen == 3) { /* +05 -> +05:00 */
            memcpy(out + len, ":00", 3);
            len += 3;
        }
    }
    return put_str(b, out, len);
}

static int put_bytea(struct sl_buf *b, const char *s, size_t n)
{
    if (n < 2 || s[0] != '\\' || s[1] != 'x' || (n & 1))
        return put_str(b, s, n); /* bytea_output=escape: as sent */
    size_t raw = (n - 2) / 2;
    uint8_t *bytes = malloc(raw ? raw : 1);
    if (!bytes)
        return -1;
    if (sl_hex_decode(s + 2, n - 2, bytes, raw) < 0) {
        free(bytes);
        return put_str(b, s, n);
    }
    struct sl_buf t;
    sl_buf_init(&t, 0);
    int rc = sl_buf_base64(&t, bytes, raw) < 0 || t.failed
                 ? -1
                 : sl_mp_write_str(b, t.data ? (const char *)t.data : "", t.len);
    sl_buf_release(&t);
    free(bytes);
    return rc;
}

/* Array literal: {a,"b c",NULL,{1,2}}; an optional "[lo:hi]=" dimension prefix is skipped.
 * Parses one {...} level at *p into b (elements typed by elem); returns 0 or -1 (malformed). */
static int put_array_level(struct sl_buf *b, const char **p, const char *end, uint32_t elem,
                           int depth)
{
    if (depth > 8 || *p >= end || **p != '{')
        return -1;
    (*p)++;
    struct sl_buf items, tok;
    sl_buf_init(&items, 0);
    sl_buf_init(&tok, 0);
    uint32_t count = 0;
    int rc = 0;
    if (*p < end && **p == '}') {
        (*p)++;
        goto done;
    }
    for (;;) {
        if (*p >= end) {
            rc = -1;
            break;
        }
        if (**p == '{') {
            rc = put_array_level(&items, p, end, elem, depth + 1);
        } else {
            sl_buf_reset(&tok);
            int quoted = **p == '"';
            if (quoted) {
                (*p)++;
                while (*p < end && **p != '"') {
                    if (**p == '\\' && *p + 1 < end)
                        (*p)++;
                    sl_buf_putc(&tok, (uint8_t) * *p);
                    (*p)++;
                }
                if (*p >= end)
                    rc = -1;
                else
                    (*p)++;
            } else {
                while (*p < end && **p != ',' && **p != '}') {
                    sl_buf_putc(&tok, (uint8_t) * *p);
                    (*p)++;
                }
            }
            if (rc == 0 && !quoted && tok.len == 4 && memcmp(tok.data, "NULL", 4) == 0)
                rc = sl_mp_write_nil(&items);
            else if (rc == 0)
                rc = sl_pg_value_mp(&items, elem, tok.data ? (const char *)tok.data : "", tok.len);
        }
        count++;
        if (rc < 0 || *p >= end) {
            rc = -1;
            break;
        }
        if (**p == ',') {
            (*p)++;
            continue;
        }
        if (**p == '}') {
            (*p)++;
            break;
        }
        rc = -1;
        break;
    }
done:
    if (rc == 0 && (items.failed || tok.failed || sl_mp_write_array(b, count) < 0 ||
                    (items.len && sl_buf_append(b, items.data, items.len) < 0)))
        rc = -1;
    sl_buf_release(&items);
    sl_buf_release(&tok);
    return rc;
}

static int put_array(struct sl_buf *b, uint32_t elem, const char *s, size_t n)
{
    const char *p = s, *end = s + n;
    if (p < end && *p == '[') { /* "[0:2]={...}" */
        const char *eq = memchr(p, '=', n);
        if (!eq)
            return put_str(b, s, n);
        p = eq + 1;
    }
    size_t mark = b->len;
    if (put_array_level(b, &p, end, elem, 0) == 0 && p == end)
        return 0;
    if (b->failed)
        return -1;
    b->len = mark; /* not an array literal after all: keep the text */
    return put_str(b, s, n);
}

int sl_pg_value_mp(struct sl_buf *b, uint32_t oid, const char *s, size_t n)
{
    switch (oid) {
    case OID_BOOL:
        if (n == 1 && (s[0] == 't' || s[0] == 'f'))
            return sl_mp_write_bool(b, s[0] == 't');
        return put_str(b, s, n);
    case OID_INT2:
    case OID_INT4:
    case OID_INT8:
    case OID_OID:
    case OID_XID:
        return put_int(b, s, n);
    case OID_FLOAT4:
    case OID_FLOAT8:
        return put_float(b, s, n);
    case OID_JSON:
    case OID_JSONB: {
        if (sl_json_to_mp(s, n, b, 64, NULL) == 0)
            return 0;
        return b->failed ? -1 : put_str(b, s, n); /* deeper than 64 levels: as text */
    }
    case OID_TIMESTAMP:
        return put_timestamp(b, s, n, 0);
    case OID_TIMESTAMPTZ:
        return put_timestamp(b, s, n, 1);
    case OID_BYTEA:
        return put_bytea(b, s, n);
    default: {
        uint32_t elem = array_elem(oid);
        return elem ? put_array(b, elem, s, n) : put_str(b, s, n);
    }
    }
}

static int put_key(struct sl_buf *b, const char *k)
{
    return sl_mp_write_str(b, k, strlen(k));
}

static int put_row(struct sl_buf *b, const struct sl_pgo_rel *rel, const struct sl_pgo_tuple *t,
                   int key_only)
{
    if (!t)
        return sl_mp_write_nil(b);
    uint16_t n = t->ncols < rel->ncols ? t->ncols : rel->ncols;
    uint32_t count = 0;
    for (uint16_t i = 0; i < n; i++)
        count += !key_only || rel->cols[i].key;
    sl_mp_write_map(b, count);
    for (uint16_t i = 0; i < n; i++) {
        if (key_only && !rel->cols[i].key)
            continue;
        const struct sl_pgo_col *c = &t->cols[i];
        put_str(b, rel->cols[i].name, strlen(rel->cols[i].name));
        if (c->kind == 'n')
            sl_mp_write_nil(b);
        else if (c->kind == 'u')
            put_key(b, SL_PG_TOAST_MARKER);
        else if (c->kind == 'b') /* binary format is never requested; keep the bytes visible */
            put_bytea(b, c->val, c->len);
        else
            sl_pg_value_mp(b, rel->cols[i].type_oid, c->val, c->len);
    }
    return b->failed ? -1 : 0;
}

int64_t sl_pg_ts_to_unix_ms(int64_t pg_us)
{
    /* 946684800 s between 1970-01-01 and 2000-01-01 */
    return pg_us / 1000 + 946684800000LL;
}

int sl_pg_envelope_mp(struct sl_buf *b, char op, const struct sl_pgo_rel *rel,
                      const struct sl_pgo_tuple *before, int before_key_only,
                      const struct sl_pgo_tuple *after, const struct sl_pg_source *src,
                      uint64_t ts_ms)
{
    char ops[2] = {op, 0};
    sl_mp_write_map(b, 5);
    put_key(b, "op");
    put_key(b, ops);
    put_key(b, "before");
    put_row(b, rel, before, before_key_only);
    put_key(b, "after");
    put_row(b, rel, after, 0);
    put_key(b, "source");
    sl_mp_write_map(b, 10);
    put_key(b, "connector");
    put_key(b, "sluice");
    put_key(b, "db");
    put_str(b, src->db, strlen(src->db));
    put_key(b, "schema");
    put_str(b, rel->nspname, strlen(rel->nspname));
    put_key(b, "table");
    put_str(b, rel->relname, strlen(rel->relname));
    put_key(b, "lsn");
    sl_mp_write_uint(b, src->lsn);
    put_key(b, "commit_lsn");
    sl_mp_write_uint(b, src->commit_lsn);
    put_key(b, "tx_index");
    sl_mp_write_uint(b, src->tx_index);
    put_key(b, "txid");
    sl_mp_write_uint(b, src->txid);
    put_key(b, "commit_ts_ms");
    sl_mp_write_int(b, src->commit_ts_ms);
    put_key(b, "snapshot");
    sl_mp_write_bool(b, src->snapshot);
    put_key(b, "ts_ms");
    sl_mp_write_uint(b, ts_ms);
    return b->failed ? -1 : 0;
}

int sl_pg_envelope_position(const uint8_t *mp, size_t n, uint64_t *commit_lsn, uint32_t *tx_index)
{
    const uint8_t *end = mp + n, *src = mp, *p;
    int64_t lsn, idx;
    if (sl_mp_map_find(&src, end, "source") < 0)
        return -1;
    p = src;
    if (sl_mp_map_find(&p, end, "commit_lsn") < 0 || sl_mp_read_int(&p, end, &lsn) < 0)
        return -1;
    p = src;
    if (sl_mp_map_find(&p, end, "tx_index") < 0 || sl_mp_read_int(&p, end, &idx) < 0)
        return -1;
    *commit_lsn = (uint64_t)lsn;
    *tx_index = (uint32_t)idx;
    return 0;
}
