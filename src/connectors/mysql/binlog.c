#include "connectors/mysql/binlog.h"

#include "formats/json_mp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

/* Column types (MySQL's enum_field_types). */
enum {
    T_DECIMAL = 0,
    T_TINY = 1,
    T_SHORT = 2,
    T_LONG = 3,
    T_FLOAT = 4,
    T_DOUBLE = 5,
    T_NULL = 6,
    T_TIMESTAMP = 7,
    T_LONGLONG = 8,
    T_INT24 = 9,
    T_DATE = 10,
    T_TIME = 11,
    T_DATETIME = 12,
    T_YEAR = 13,
    T_NEWDATE = 14,
    T_VARCHAR = 15,
    T_BIT = 16,
    T_TIMESTAMP2 = 17,
    T_DATETIME2 = 18,
    T_TIME2 = 19,
    T_JSON = 245,
    T_NEWDECIMAL = 246,
    T_ENUM = 247,
    T_SET = 248,
    T_TINY_BLOB = 249,
    T_MEDIUM_BLOB = 250,
    T_LONG_BLOB = 251,
    T_BLOB = 252,
    T_VAR_STRING = 253,
    T_STRING = 254,
    T_GEOMETRY = 255,
};

#define CS_BINARY 63

/* A bounded reader over the input: every take checks the bytes are there. */
struct rd {
    const uint8_t *p, *end;
};

static int take(struct rd *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return -1;
    *out = r->p;
    r->p += n;
    return 0;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static int rd_le(struct rd *r, int n, uint64_t *v)
{
    const uint8_t *p;
    if (take(r, (size_t)n, &p) < 0)
        return -1;
    *v = le(p, n);
    return 0;
}

/* A length-encoded ("packed") integer. */
static int rd_lenenc(struct rd *r, uint64_t *v)
{
    const uint8_t *p;
    if (take(r, 1, &p) < 0)
        return -1;
    if (*p < 251) {
        *v = *p;
        return 0;
    }
    int n = *p == 252 ? 2 : *p == 253 ? 3 : *p == 254 ? 8 : -1;
    return n < 0 ? -1 : rd_le(r, n, v);
}

#define FAIL(msg)                                                                                  \
    do {                                                                                           \
        *why = msg;                                                                                \
        return -1;                                                                                 \
    } while (0)

/* ---- MessagePack written in place: one capacity check per value, then plain stores (the row
 * path's cost was the per-byte appends). Each returns 0, or -1 when the buffer is full. ---- */

static inline uint8_t *w_room(struct sl_buf *b, size_t n)
{
    if (!b->failed && n < b->cap - b->len && b->len + n <= b->max)
        return b->data + b->len;
    return sl_buf_reserve(b, n) == 0 ? b->data + b->len : NULL;
}

static inline int w_raw(struct sl_buf *b, const void *s, size_t n)
{
    uint8_t *o = w_room(b, n);
    if (!o)
        return -1;
    memcpy(o, s, n);
    b->len += n;
    return 0;
}

static inline int w_byte(struct sl_buf *b, uint8_t v)
{
    uint8_t *o = w_room(b, 1);
    if (!o)
        return -1;
    *o = v;
    b->len++;
    return 0;
}

static inline int w_uint(struct sl_buf *b, uint64_t v)
{
    uint8_t *o = w_room(b, 9);
    if (!o)
        return -1;
    b->len += sl_mp_enc_uint(o, v);
    return 0;
}

static inline int w_int(struct sl_buf *b, int64_t v)
{
    uint8_t *o = w_room(b, 9);
    if (!o)
        return -1;
    b->len += sl_mp_enc_int(o, v);
    return 0;
}

static inline int w_str(struct sl_buf *b, const void *s, size_t n)
{
    uint8_t *o = n <= UINT32_MAX ? w_room(b, n + 5) : NULL;
    if (!o)
        return -1;
    size_t h = sl_mp_enc_str_head(o, n);
    memcpy(o + h, s, n);
    b->len += h + n;
    return 0;
}

static int is_ascii(const uint8_t *p, size_t n)
{
    size_t i = 0;
    for (uint64_t w; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080ull)
            return 0;
    }
    for (; i < n; i++)
        if (p[i] & 0x80)
            return 0;
    return 1;
}

/* Text taken as UTF-8: ASCII (checked 8 bytes at a time) as it is, anything else validated with
 * invalid bytes as U+FFFD. */
static int w_text(struct sl_buf *b, const void *s, size_t n)
{
    return is_ascii(s, n) ? w_str(b, s, n) : sl_mp_write_str_lossy(b, s, n);
}

long sl_my_event(const uint8_t *ev, size_t n, int checksum, struct sl_my_header *h,
                 const char **why)
{
    if (n < SL_MY_HEADER_LEN)
        FAIL("event shorter than its header");
    h->timestamp = (uint32_t)le(ev, 4);
    h->type = ev[4];
    h->server_id = (uint32_t)le(ev + 5, 4);
    h->event_len = (uint32_t)le(ev + 9, 4);
    h->next_pos = (uint32_t)le(ev + 13, 4);
    h->flags = (uint16_t)le(ev + 17, 2);
    if (h->event_len != n)
        FAIL("event length does not match the bytes received");
    size_t body = n - SL_MY_HEADER_LEN;
    /* the format description event says itself whether events carry a checksum */
    if (h->type == SL_MY_FORMAT_DESCRIPTION) {
        int cs = 0;
        if (sl_my_fde_checksum(ev + SL_MY_HEADER_LEN, body, &cs, why) < 0)
            return -1;
        checksum = cs;
    }
    if (checksum) {
        if (body < 4)
            FAIL("event too short for its checksum");
        body -= 4;
        uint32_t want = (uint32_t)le(ev + n - 4, 4);
        uint32_t got = (uint32_t)crc32(0L, ev, (uInt)(n - 4));
        if (want != got)
            FAIL("event checksum mismatch");
    }
    *why = NULL;
    return (long)body;
}

int sl_my_fde_checksum(const uint8_t *body, size_t n, int *checksum, const char **why)
{
    /* binlog version 2, server version 50, create timestamp 4, header length 1, post-header
     * lengths, then (since 5.6.1 / MariaDB 5.3) the checksum algorithm byte and a CRC32 */
    if (n < 2 + 50 + 4 + 1 + 5)
        FAIL("format description event too short");
    uint8_t alg = body[n - 5];
    if (alg != 0 && alg != 1)
        FAIL("unknown binlog checksum algorithm");
    *checksum = alg;
    if (body[2 + 50 + 4] != SL_MY_HEADER_LEN)
        FAIL("unsupported event header length");
    *why = NULL;
    return 0;
}

int sl_my_rotate(const uint8_t *body, size_t n, uint64_t *pos, struct sl_my_str *file,
                 const char **why)
{
    if (n < 9 || n - 8 > 255)
        FAIL("bad rotate event");
    *pos = le(body, 8);
    file->s = (const char *)body + 8;
    file->len = n - 8;
    *why = NULL;
    return 0;
}

int sl_my_gtid(const uint8_t *body, size_t n, struct sl_my_gtid *g, const char **why)
{
    if (n < 13)
        FAIL("GTID event too short");
    g->seq = le(body, 8);
    g->domain = (uint32_t)le(body + 8, 4);
    g->flags = body[12];
    *why = NULL;
    return 0;
}

int sl_my_query(const uint8_t *body, size_t n, struct sl_my_query *q, const char **why)
{
    struct rd r = {body, body + n};
    const uint8_t *p;
    uint64_t thread, dblen, status;
    if (rd_le(&r, 4, &thread) < 0 || take(&r, 4, &p) < 0 || rd_le(&r, 1, &dblen) < 0 ||
        take(&r, 2, &p) < 0 || rd_le(&r, 2, &status) < 0 || take(&r, status, &p) < 0 ||
        take(&r, dblen + 1, &p) < 0 || p[dblen] != 0)
        FAIL("malformed query event");
    q->thread_id = (uint32_t)thread;
    q->db.s = (const char *)p;
    q->db.len = dblen;
    q->sql.s = (const char *)r.p;
    q->sql.len = (size_t)(r.end - r.p);
    *why = NULL;
    return 0;
}

/* ---- TABLE_MAP ---- */

static int meta_len(uint8_t type)
{
    switch (type) {
    case T_FLOAT:
    case T_DOUBLE:
    case T_TINY_BLOB:
    case T_MEDIUM_BLOB:
    case T_LONG_BLOB:
    case T_BLOB:
    case T_GEOMETRY:
    case T_JSON:
    case T_TIMESTAMP2:
    case T_DATETIME2:
    case T_TIME2:
        return 1;
    case T_VARCHAR:
    case T_VAR_STRING:
    case T_BIT:
    case T_NEWDECIMAL:
    case T_STRING:
    case T_ENUM:
    case T_SET:
        return 2;
    default:
        return 0;
    }
}

/* A column with a bit in the SIGNEDNESS metadata. YEAR counts (MariaDB's YEAR is a TINYINT
 * UNSIGNED underneath): leaving it out shifted the bits of every later number. */
static int is_numeric(const struct sl_my_col *c)
{
    switch (c->type) {
    case T_YEAR:
    case T_TINY:
    case T_SHORT:
    case T_INT24:
    case T_LONG:
    case T_LONGLONG:
    case T_FLOAT:
    case T_DOUBLE:
    case T_NEWDECIMAL:
    case T_DECIMAL:
        return 1;
    default:
        return 0;
    }
}

static int is_enum_set(const struct sl_my_col *c)
{
    return c->real_type == T_ENUM || c->real_type == T_SET;
}

/* A column with a charset in the optional metadata's charset lists: MariaDB counts GEOMETRY
 * (binary) among them, so a JSON column after a GEOMETRY gets the right one. */
static int is_char(const struct sl_my_col *c)
{
    switch (c->type) {
    case T_STRING:
        return !is_enum_set(c);
    case T_GEOMETRY:
    case T_VARCHAR:
    case T_VAR_STRING:
    case T_TINY_BLOB:
    case T_MEDIUM_BLOB:
    case T_LONG_BLOB:
    case T_BLOB:
        return 1;
    default:
        return 0;
    }
}

/* The i-th column (0-based) among those pred selects, or NULL. */
static struct sl_my_col *nth(struct sl_my_table *t, int (*pred)(const struct sl_my_col *),
                             uint64_t i)
{
    for (uint32_t k = 0; k < t->ncols; k++)
        if (pred(&t->cols[k]) && i-- == 0)
            return &t->cols[k];
    return NULL;
}

/* DEFAULT_CHARSET-style field: a default collation, then (index, collation) pairs. */
static int charset_default(struct rd *r, struct sl_my_table *t,
                           int (*pred)(const struct sl_my_col *))
{
    uint64_t def, idx, cs;
    if (rd_lenenc(r, &def) < 0)
        return -1;
    for (uint32_t k = 0; k < t->ncols; k++)
        if (pred(&t->cols[k]))
            t->cols[k].charset = (uint16_t)def;
    while (r->p < r->end) {
        if (rd_lenenc(r, &idx) < 0 || rd_lenenc(r, &cs) < 0)
            return -1;
        struct sl_my_col *c = nth(t, pred, idx);
        if (c)
            c->charset = (uint16_t)cs;
    }
    return 0;
}

static int charset_columns(struct rd *r, struct sl_my_table *t,
                           int (*pred)(const struct sl_my_col *))
{
    uint64_t cs;
    for (uint64_t i = 0; r->p < r->end; i++) {
        if (rd_lenenc(r, &cs) < 0)
            return -1;
        struct sl_my_col *c = nth(t, pred, i);
        if (c)
            c->charset = (uint16_t)cs;
    }
    return 0;
}

static int is_enum(const struct sl_my_col *c)
{
    return c->real_type == T_ENUM;
}

static int is_set(const struct sl_my_col *c)
{
    return c->real_type == T_SET;
}

static int str_values(struct rd *r, struct sl_my_table *t, int (*pred)(const struct sl_my_col *))
{
    for (uint64_t i = 0; r->p < r->end; i++) {
        uint64_t count, len;
        if (rd_lenenc(r, &count) < 0 || count > 65535 || count > (uint64_t)(r->end - r->p))
            return -1;
        struct sl_my_col *c = nth(t, pred, i);
        struct sl_my_str *v = calloc(count ? count : 1, sizeof(*v));
        if (!v)
            return -1;
        for (uint64_t k = 0; k < count; k++) {
            const uint8_t *p;
            if (rd_lenenc(r, &len) < 0 || take(r, len, &p) < 0) {
                free(v);
                return -1;
            }
            v[k].s = (const char *)p;
            v[k].len = len;
        }
        if (c && !c->vals) {
            c->vals = v;
            c->nvals = (uint32_t)count;
        } else {
            free(v);
        }
    }
    return 0;
}

static int optional_metadata(struct rd *r, struct sl_my_table *t)
{
    while (r->p < r->end) {
        uint64_t type, len;
        const uint8_t *p;
        if (rd_le(r, 1, &type) < 0 || rd_lenenc(r, &len) < 0 || take(r, len, &p) < 0)
            return -1;
        struct rd f = {p, p + len};
        int rc = 0;
        switch (type) {
        case 1: { /* SIGNEDNESS: one bit per numeric column, most significant first */
            uint64_t k = 0;
            for (uint32_t i = 0; i < t->ncols; i++) {
                if (!is_numeric(&t->cols[i]))
                    continue;
                if (k / 8 < len)
                    t->cols[i].is_unsigned = (p[k / 8] >> (7 - k % 8)) & 1;
                k++;
            }
            break;
        }
        case 2:
            rc = charset_default(&f, t, is_char);
            break;
        case 3:
            rc = charset_columns(&f, t, is_char);
            break;
        case 4: /* COLUMN_NAME */
            for (uint32_t i = 0; i < t->ncols && rc == 0; i++) {
                uint64_t nl;
                const uint8_t *np;
                rc = rd_lenenc(&f, &nl) < 0 || take(&f, nl, &np) < 0 ? -1 : 0;
                if (rc == 0) {
                    t->cols[i].name.s = (const char *)np;
                    t->cols[i].name.len = nl;
                }
            }
            if (rc == 0)
                t->have_names = 1;
            break;
        case 5:
            rc = str_values(&f, t, is_set);
            break;
        case 6:
            rc = str_values(&f, t, is_enum);
            break;
        case 8: /* SIMPLE_PRIMARY_KEY */
            while (f.p < f.end && rc == 0) {
                uint64_t i;
                rc = rd_lenenc(&f, &i);
                if (rc == 0 && i < t->ncols)
                    t->cols[i].key = 1;
            }
            break;
        case 9: /* PRIMARY_KEY_WITH_PREFIX */
            while (f.p < f.end && rc == 0) {
                uint64_t i, prefix;
                rc = rd_lenenc(&f, &i) < 0 || rd_lenenc(&f, &prefix) < 0 ? -1 : 0;
                if (rc == 0 && i < t->ncols)
                    t->cols[i].key = 1;
            }
            break;
        case 10:
            rc = charset_default(&f, t, is_enum_set);
            break;
        case 11:
            rc = charset_columns(&f, t, is_enum_set);
            break;
        default: /* GEOMETRY_TYPE and later additions: not needed */
            break;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

void sl_my_table_release(struct sl_my_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; t->cols && i < t->ncols; i++)
        free(t->cols[i].vals);
    free(t->cols);
    free(t->mem);
    free(t->mp_names);
    memset(t, 0, sizeof(*t));
}

/* The map keys of the row images, encoded once per table instead of once per value. */
static int encode_names(struct sl_my_table *t)
{
    struct sl_buf b;
    sl_buf_init(&b, 0);
    for (uint32_t i = 0; i < t->ncols; i++) {
        struct sl_my_col *c = &t->cols[i];
        c->mp_off = (uint32_t)b.len;
        if (c->name.s) {
            w_text(&b, c->name.s, c->name.len);
        } else { /* no names in the binlog (binlog_row_metadata is not FULL) */
            char nm[16];
            w_str(&b, nm, (size_t)snprintf(nm, sizeof(nm), "col%u", i + 1));
        }
        c->mp_len = (uint32_t)b.len - c->mp_off;
    }
    if (b.failed) {
        sl_buf_release(&b);
        return -1;
    }
    t->mp_names = b.data;
    return 0;
}

int sl_my_table_parse(const uint8_t *body, size_t n, struct sl_my_table *t, const char **why)
{
    memset(t, 0, sizeof(*t));
    if (!(t->mem = malloc(n ? n : 1)))
        FAIL("out of memory");
    memcpy(t->mem, body, n);
    struct rd r = {t->mem, (const uint8_t *)t->mem + n};
    const uint8_t *p, *types, *meta, *nulls;
    uint64_t v, ncols, mlen;
    if (rd_le(&r, 6, &t->id) < 0 || take(&r, 2, &p) < 0)
        goto bad;
    for (int k = 0; k < 2; k++) { /* database, then table: length, name, NUL */
        struct sl_my_str *s = k ? &t->table : &t->db;
        if (rd_le(&r, 1, &v) < 0 || take(&r, v + 1, &p) < 0 || p[v] != 0)
            goto bad;
        s->s = (const char *)p;
        s->len = v;
    }
    if (rd_lenenc(&r, &ncols) < 0 || ncols == 0 || ncols > SL_MY_MAX_COLS ||
        take(&r, ncols, &types) < 0 || rd_lenenc(&r, &mlen) < 0 || take(&r, mlen, &meta) < 0 ||
        take(&r, (ncols + 7) / 8, &nulls) < 0)
        goto bad;
    t->ncols = (uint32_t)ncols;
    if (!(t->cols = calloc(ncols, sizeof(*t->cols)))) {
        sl_my_table_release(t);
        FAIL("out of memory");
    }
    struct rd m = {meta, meta + mlen};
    for (uint32_t i = 0; i < ncols; i++) {
        struct sl_my_col *c = &t->cols[i];
        c->type = c->real_type = types[i];
        c->nullable = (nulls[i / 8] >> (i % 8)) & 1;
        int ml = meta_len(c->type);
        const uint8_t *mp;
        if (ml && take(&m, (size_t)ml, &mp) < 0)
            goto bad;
        if (c->type == T_STRING) {
            /* real type in the first byte; a length over 255 borrows its bits 4-5 */
            if ((mp[0] & 0x30) != 0x30) {
                c->real_type = mp[0] | 0x30;
                c->meta = (uint16_t)(mp[1] | (((mp[0] & 0x30) ^ 0x30) << 4));
            } else {
                c->real_type = mp[0];
                c->meta = mp[1];
            }
        } else if (c->type == T_NEWDECIMAL || c->type == T_ENUM || c->type == T_SET) {
            c->meta = (uint16_t)(mp[0] << 8 | mp[1]); /* precision << 8 | scale; or pack length */
            if (c->type != T_NEWDECIMAL)
                c->real_type = c->type, c->meta = mp[1];
        } else if (ml == 2) {
            c->meta = (uint16_t)le(mp, 2); /* VARCHAR length; BIT: bits | bytes << 8 */
        } else if (ml == 1) {
            c->meta = mp[0];
        }
    }
    if (m.p != m.end || optional_metadata(&r, t) < 0)
        goto bad;
    if (encode_names(t) < 0) {
        sl_my_table_release(t);
        FAIL("out of memory");
    }
    *why = NULL;
    return 0;
bad:
    sl_my_table_release(t);
    FAIL("malformed table map event");
}

/* ---- ROWS ---- */

int sl_my_rows_begin(uint8_t type, const uint8_t *body, size_t n, struct sl_my_rows *r,
                     const char **why)
{
    int v2 = type >= SL_MY_WRITE_ROWS && type <= SL_MY_DELETE_ROWS;
    int kind = v2 ? type - SL_MY_WRITE_ROWS : type - SL_MY_WRITE_ROWS_V1;
    if (kind < 0 || kind > 2)
        FAIL("not a rows event");
    struct rd d = {body, body + n};
    const uint8_t *p;
    uint64_t flags, extra, ncols;
    if (rd_le(&d, 6, &r->table_id) < 0 || rd_le(&d, 2, &flags) < 0)
        FAIL("malformed rows event");
    if (v2 && (rd_le(&d, 2, &extra) < 0 || extra < 2 || take(&d, extra - 2, &p) < 0))
        FAIL("malformed rows event");
    if (rd_lenenc(&d, &ncols) < 0 || ncols == 0 || ncols > SL_MY_MAX_COLS ||
        take(&d, (ncols + 7) / 8, &r->present) < 0)
        FAIL("malformed rows event");
    r->present_after = r->present;
    if (kind == 1 && take(&d, (ncols + 7) / 8, &r->present_after) < 0)
        FAIL("malformed rows event");
    r->op = "cud"[kind];
    r->flags = (uint16_t)flags;
    r->ncols = (uint32_t)ncols;
    r->at = d.p;
    r->end = d.end;
    *why = NULL;
    return 0;
}

static int bit(const uint8_t *map, uint32_t i)
{
    return (map[i / 8] >> (i % 8)) & 1;
}

static int put_cstr(struct sl_buf *b, const char *s)
{
    return w_str(b, s, strlen(s));
}

static int put_base64(struct sl_buf *b, const uint8_t *p, size_t n)
{
    struct sl_buf t;
    sl_buf_init(&t, 0);
    int rc = sl_buf_base64(&t, p, n) < 0 || t.failed
                 ? -1
                 : w_str(b, t.data ? (const char *)t.data : "", t.len);
    sl_buf_release(&t);
    return rc;
}

/* MySQL's latin1 is Windows-1252: 0x80-0x9f map to these code points (0 = undefined). */
static const uint16_t g_cp1252[32] = {
    0x20ac, 0,      0x201a, 0x0192, 0x201e, 0x2026, 0x2020, 0x2021, 0x02c6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017d, 0,      0,      0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x02dc, 0x2122, 0x0161, 0x203a, 0x0153, 0,      0x017e, 0x0178,
};

static int is_latin1(uint16_t cs)
{
    return cs == 5 || cs == 8 || cs == 15 || cs == 31 || cs == 47 || cs == 48 || cs == 49 ||
           cs == 94;
}

static int put_text(struct sl_buf *b, const struct sl_my_col *c, const uint8_t *p, size_t n)
{
    if (c->charset == CS_BINARY)
        return put_base64(b, p, n);
    if (!is_latin1(c->charset) || is_ascii(p, n))
        return w_text(b, (const char *)p, n);
    struct sl_buf t;
    sl_buf_init(&t, 0);
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = p[i] >= 0x80 && p[i] < 0xa0 ? g_cp1252[p[i] - 0x80] : p[i];
        if (!cp && p[i])
            cp = 0xfffd;
        if (cp < 0x80) {
            sl_buf_putc(&t, (uint8_t)cp);
        } else if (cp < 0x800) {
            sl_buf_putc(&t, (uint8_t)(0xc0 | cp >> 6));
            sl_buf_putc(&t, (uint8_t)(0x80 | (cp & 0x3f)));
        } else {
            sl_buf_putc(&t, (uint8_t)(0xe0 | cp >> 12));
            sl_buf_putc(&t, (uint8_t)(0x80 | ((cp >> 6) & 0x3f)));
            sl_buf_putc(&t, (uint8_t)(0x80 | (cp & 0x3f)));
        }
    }
    int rc = t.failed ? -1 : w_str(b, t.data ? (const char *)t.data : "", t.len);
    sl_buf_release(&t);
    return rc;
}

/* v as exactly n decimal digits (the low ones), zero-padded: the hot path avoids snprintf. */
static char *digits(char *out, unsigned v, int n)
{
    for (int i = n - 1; i >= 0; i--, v /= 10)
        out[i] = (char)('0' + v % 10);
    return out + n;
}

/* ".ffffff" cut to fsp digits (nothing when fsp is 0). */
static size_t frac_text(char *out, uint32_t usec, unsigned fsp)
{
    if (fsp == 0 || fsp > 6)
        return 0;
    char d[6];
    digits(d, usec % 1000000u, 6);
    out[0] = '.';
    memcpy(out + 1, d, fsp);
    return fsp + 1;
}

static int put_datetime(struct sl_buf *b, unsigned y, unsigned mo, unsigned d, unsigned h,
                        unsigned mi, unsigned s, uint32_t usec, unsigned fsp)
{
    char out[64], *o = out;
    o = digits(o, y, 4), *o++ = '-';
    o = digits(o, mo, 2), *o++ = '-';
    o = digits(o, d, 2), *o++ = 'T';
    o = digits(o, h, 2), *o++ = ':';
    o = digits(o, mi, 2), *o++ = ':';
    o = digits(o, s, 2);
    int k = (int)(o - out);
    k += (int)frac_text(out + k, usec, fsp);
    out[k++] = 'Z';
    return w_str(b, out, (size_t)k);
}

static int put_time(struct sl_buf *b, int neg, unsigned h, unsigned mi, unsigned s, uint32_t usec,
                    unsigned fsp)
{
    char out[48];
    int k = snprintf(out, sizeof(out), "%s%02u:%02u:%02u", neg ? "-" : "", h % 10000, mi % 100,
                     s % 100);
    k += (int)frac_text(out + k, usec, fsp);
    return w_str(b, out, (size_t)k);
}

/* Fraction bytes of a TIME2/DATETIME2/TIMESTAMP2 of precision fsp. */
static int frac_bytes(unsigned fsp)
{
    return (int)(fsp + 1) / 2;
}

static int put_float(struct sl_buf *b, double v, int single)
{
    if (!isfinite(v)) {
        const char *s = isnan(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity";
        return put_cstr(b, s);
    }
    if (single) { /* the shortest decimal that reads back as the same float */
        char tmp[32];
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
            if ((float)strtod(tmp, NULL) == (float)v)
                break;
        }
        v = strtod(tmp, NULL);
    }
    return sl_mp_write_double(b, v);
}

static const int g_dig2bytes[10] = {0, 1, 1, 2, 2, 3, 3, 4, 4, 4};

static int decimal_size(uint16_t meta)
{
    int prec = meta >> 8, scale = meta & 0xff;
    if (prec < 1 || prec > 65 || scale > 38 || scale > prec)
        return -1;
    int intg = prec - scale;
    return intg / 9 * 4 + g_dig2bytes[intg % 9] + scale / 9 * 4 + g_dig2bytes[scale % 9];
}

/* DECIMAL's binary form (sign bit flipped, negatives one's-complemented, big-endian groups of 9
 * digits in 4 bytes, partial groups in fewer) -> "[-]int[.frac]". */
static int put_decimal(struct sl_buf *b, uint16_t meta, const uint8_t *src)
{
    int prec = meta >> 8, scale = meta & 0xff, intg = prec - scale;
    int size = decimal_size(meta);
    uint8_t d[40];
    memcpy(d, src, (size_t)size);
    int neg = !(d[0] & 0x80);
    d[0] ^= 0x80;
    if (neg)
        for (int i = 0; i < size; i++)
            d[i] ^= 0xff;
    char out[100];
    int k = 0, pos = 0;
    if (neg)
        out[k++] = '-';
    int start = k;
    int lead = g_dig2bytes[intg % 9];
    if (lead) {
        k += snprintf(out + k, sizeof(out) - (size_t)k, "%u", (unsigned)be(d, lead));
        pos += lead;
    }
    for (int i = 0; i < intg / 9; i++, pos += 4) {
        unsigned v = (unsigned)be(d + pos, 4);
        k += snprintf(out + k, sizeof(out) - (size_t)k, k == start ? "%u" : "%09u", v);
    }
    /* strip leading zeros of the integer part */
    int z = start;
    while (z < k - 1 && out[z] == '0')
        z++;
    if (z > start) {
        memmove(out + start, out + z, (size_t)(k - z));
        k -= z - start;
    }
    if (k == start)
        out[k++] = '0';
    if (scale) {
        out[k++] = '.';
        for (int i = 0; i < scale / 9; i++, pos += 4)
            k += snprintf(out + k, sizeof(out) - (size_t)k, "%09u", (unsigned)be(d + pos, 4));
        int tail = g_dig2bytes[scale % 9];
        if (tail)
            k += snprintf(out + k, sizeof(out) - (size_t)k, "%0*u", scale % 9,
                          (unsigned)be(d + pos, tail));
    }
    return w_str(b, out, (size_t)k);
}

/* One value of column c at r->p. 0, -1 malformed (*why), -2 buffer full. */
static int put_value(struct sl_buf *b, const struct sl_my_col *c, struct rd *r, const char **why)
{
    const uint8_t *p;
    uint64_t v, len;
    unsigned fsp = c->meta;
    switch (c->type) {
    case T_TINY:
    case T_SHORT:
    case T_INT24:
    case T_LONG:
    case T_LONGLONG: {
        int n = c->type == T_TINY    ? 1
                : c->type == T_SHORT ? 2
                : c->type == T_INT24 ? 3
                : c->type == T_LONG  ? 4
                                     : 8;
        if (rd_le(r, n, &v) < 0)
            FAIL("row image truncated");
        if (c->is_unsigned)
            return w_uint(b, v);
        if (n < 8 && (v >> (8 * n - 1)) & 1)
            v |= ~0ull << (8 * n); /* sign-extend */
        return w_int(b, (int64_t)v);
    }
    case T_YEAR:
        if (rd_le(r, 1, &v) < 0)
            FAIL("row image truncated");
        return w_int(b, v ? 1900 + (int64_t)v : 0);
    case T_FLOAT: {
        if (take(r, 4, &p) < 0)
            FAIL("row image truncated");
        float f;
        uint32_t u = (uint32_t)le(p, 4);
        memcpy(&f, &u, 4);
        return put_float(b, f, 1);
    }
    case T_DOUBLE: {
        if (take(r, 8, &p) < 0)
            FAIL("row image truncated");
        double f;
        uint64_t u = le(p, 8);
        memcpy(&f, &u, 8);
        return put_float(b, f, 0);
    }
    case T_NEWDECIMAL: {
        int size = decimal_size(c->meta);
        if (size < 0)
            FAIL("bad DECIMAL precision");
        if (take(r, (size_t)size, &p) < 0)
            FAIL("row image truncated");
        return put_decimal(b, c->meta, p);
    }
    case T_DATE:
    case T_NEWDATE: {
        char out[16];
        if (rd_le(r, 3, &v) < 0)
            FAIL("row image truncated");
        int k = snprintf(out, sizeof(out), "%04u-%02u-%02u", (unsigned)(v >> 9) % 10000,
                         (unsigned)(v >> 5) & 15, (unsigned)v & 31);
        return w_str(b, out, (size_t)k);
    }
    case T_TIME: {
        if (rd_le(r, 3, &v) < 0)
            FAIL("row image truncated");
        int32_t t = (int32_t)(v & 0x800000 ? v | 0xff000000u : v);
        int neg = t < 0;
        uint32_t a = (uint32_t)(neg ? -t : t);
        return put_time(b, neg, a / 10000, a / 100 % 100, a % 100, 0, 0);
    }
    case T_DATETIME: {
        if (rd_le(r, 8, &v) < 0)
            FAIL("row image truncated");
        uint64_t d = v / 1000000, t = v % 1000000;
        return put_datetime(b, (unsigned)(d / 10000), (unsigned)(d / 100 % 100),
                            (unsigned)(d % 100), (unsigned)(t / 10000), (unsigned)(t / 100 % 100),
                            (unsigned)(t % 100), 0, 0);
    }
    case T_TIMESTAMP:
    case T_TIMESTAMP2: {
        uint32_t usec = 0;
        if (c->type == T_TIMESTAMP) {
            fsp = 0;
            if (rd_le(r, 4, &v) < 0)
                FAIL("row image truncated");
        } else {
            if (fsp > 6 || take(r, 4 + (size_t)frac_bytes(fsp), &p) < 0)
                FAIL("row image truncated");
            v = be(p, 4);
            int fb = frac_bytes(fsp);
            usec = (uint32_t)(fb == 1   ? p[4] * 10000u
                              : fb == 2 ? be(p + 4, 2) * 100u
                              : fb == 3 ? be(p + 4, 3)
                                        : 0);
        }
        if (v == 0 && usec == 0)
            return put_datetime(b, 0, 0, 0, 0, 0, 0, 0, fsp); /* MySQL's zero timestamp */
        time_t secs = (time_t)v;
        struct tm tm;
        gmtime_r(&secs, &tm);
        return put_datetime(b, (unsigned)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
                            (unsigned)tm.tm_mday, (unsigned)tm.tm_hour, (unsigned)tm.tm_min,
                            (unsigned)tm.tm_sec, usec, fsp);
    }
    case T_DATETIME2: {
        if (fsp > 6 || take(r, 5 + (size_t)frac_bytes(fsp), &p) < 0)
            FAIL("row image truncated");
        int64_t intpart = (int64_t)be(p, 5) - 0x8000000000LL;
        int fb = frac_bytes(fsp);
        int64_t frac = fb == 1   ? (int8_t)p[5] * 10000LL
                       : fb == 2 ? (int16_t)be(p + 5, 2) * 100LL
                       : fb == 3 ? (int64_t)be(p + 5, 3)
                                 : 0;
        /* two's complement in unsigned arithmetic: garbage input must not overflow */
        uint64_t packed = ((uint64_t)intpart << 24) + (uint64_t)frac;
        if ((int64_t)packed < 0)
            packed = 0 - packed;
        uint64_t ymdhms = packed >> 24, ymd = ymdhms >> 17, ym = ymd >> 5, hms = ymdhms % (1 << 17);
        return put_datetime(b, (unsigned)(ym / 13), (unsigned)(ym % 13), (unsigned)(ymd % 32),
                            (unsigned)(hms >> 12), (unsigned)((hms >> 6) % 64),
                            (unsigned)(hms % 64), (uint32_t)(packed % (1 << 24)), fsp);
    }
    case T_TIME2: {
        if (fsp > 6 || take(r, 3 + (size_t)frac_bytes(fsp), &p) < 0)
            FAIL("row image truncated");
        int fb = frac_bytes(fsp);
        int64_t packed;
        if (fb == 3) {
            packed = (int64_t)be(p, 6) - 0x800000000000LL;
        } else {
            int64_t intpart = (int64_t)be(p, 3) - 0x800000LL, frac = 0;
            if (fb == 1) { /* the fraction is read unsigned, then borrowed from intpart */
                frac = p[3];
                if (intpart < 0 && frac) {
                    intpart++;
                    frac -= 0x100;
                }
                frac *= 10000;
            } else if (fb == 2) {
                frac = (int64_t)be(p + 3, 2);
                if (intpart < 0 && frac) {
                    intpart++;
                    frac -= 0x10000;
                }
                frac *= 100;
            }
            packed = (int64_t)(((uint64_t)intpart << 24) + (uint64_t)frac);
        }
        int neg = packed < 0;
        uint64_t a = neg ? 0 - (uint64_t)packed : (uint64_t)packed;
        uint64_t hms = a >> 24;
        return put_time(b, neg, (unsigned)((hms >> 12) % 1024), (unsigned)((hms >> 6) % 64),
                        (unsigned)(hms % 64), (uint32_t)(a % (1 << 24)), fsp);
    }
    case T_VARCHAR:
    case T_VAR_STRING:
        if (rd_le(r, c->meta < 256 ? 1 : 2, &len) < 0 || take(r, len, &p) < 0)
            FAIL("row image truncated");
        return put_text(b, c, p, len);
    case T_STRING:
    case T_ENUM:
    case T_SET:
        if (c->real_type == T_ENUM || c->real_type == T_SET) {
            int n = c->meta;
            if (n < 1 || n > 8 || (c->real_type == T_ENUM && n > 2) || rd_le(r, n, &v) < 0)
                FAIL("row image truncated");
            if (c->real_type == T_ENUM) {
                if (v == 0)
                    return w_str(b, "", 0);
                if (v <= c->nvals)
                    return put_text(b, c, (const uint8_t *)c->vals[v - 1].s, c->vals[v - 1].len);
                return w_uint(b, v); /* no names known (binlog_row_metadata) */
            }
            if (!c->vals && v)
                return w_uint(b, v);
            struct sl_buf t;
            sl_buf_init(&t, 0);
            for (uint32_t i = 0; i < 64 && i < c->nvals; i++)
                if ((v >> i) & 1) {
                    if (t.len)
                        sl_buf_putc(&t, ',');
                    sl_buf_append(&t, c->vals[i].s, c->vals[i].len);
                }
            int rc = t.failed ? -2 : put_text(b, c, t.data ? t.data : (const uint8_t *)"", t.len);
            sl_buf_release(&t);
            return rc;
        }
        if (rd_le(r, c->meta < 256 ? 1 : 2, &len) < 0 || take(r, len, &p) < 0)
            FAIL("row image truncated");
        return put_text(b, c, p, len);
    case T_BIT: {
        unsigned nbits = (c->meta >> 8) * 8u + (c->meta & 0xff);
        unsigned n = (nbits + 7) / 8;
        if (n > 8 || take(r, n, &p) < 0)
            FAIL("row image truncated");
        return w_uint(b, be(p, (int)n));
    }
    case T_TINY_BLOB:
    case T_MEDIUM_BLOB:
    case T_LONG_BLOB:
    case T_BLOB:
    case T_GEOMETRY:
    case T_JSON:
        if (c->meta < 1 || c->meta > 4 || rd_le(r, c->meta, &len) < 0 || take(r, len, &p) < 0)
            FAIL("row image truncated");
        if (c->type == T_GEOMETRY || c->type == T_JSON)
            return put_base64(b, p, len);
        return put_text(b, c, p, len);
    case T_NULL:
        return w_byte(b, 0xc0);
    default:
        FAIL("unsupported column type");
    }
}

/* One row image of the columns in present. */
static int put_image(struct sl_buf *b, struct rd *r, const uint8_t *present,
                     const struct sl_my_table *t, const char **why)
{
    uint32_t npresent = 0;
    for (uint32_t i = 0; i < t->ncols; i++)
        npresent += bit(present, i);
    const uint8_t *nulls;
    if (take(r, (npresent + 7) / 8, &nulls) < 0)
        FAIL("row image truncated");
    if (sl_mp_write_map(b, npresent) < 0)
        return -2;
    uint32_t k = 0;
    for (uint32_t i = 0; i < t->ncols; i++) {
        if (!bit(present, i))
            continue;
        const struct sl_my_col *c = &t->cols[i];
        int rc;
        if (w_raw(b, t->mp_names + c->mp_off, c->mp_len) < 0)
            return -2;
        if (bit(nulls, k++))
            rc = w_byte(b, 0xc0) < 0 ? -2 : 0;
        else
            rc = put_value(b, c, r, why);
        if (rc == -1)
            return -1;
        if (rc < 0 || b->failed)
            return -2;
    }
    return 0;
}

int sl_my_row_next(struct sl_my_rows *r, const struct sl_my_table *t, struct sl_buf *before,
                   struct sl_buf *after, const char **why)
{
    *why = NULL;
    if (r->at >= r->end)
        return 0;
    if (r->ncols != t->ncols)
        FAIL("the rows event and its table map disagree on the column count");
    struct rd d = {r->at, r->end};
    int rc = 0;
    if (r->op != 'c')
        rc = put_image(before, &d, r->present, t, why);
    if (rc == 0 && r->op != 'd')
        rc = put_image(after, &d, r->present_after, t, why);
    if (rc < 0)
        return rc;
    r->at = d.p;
    return 1;
}

int sl_my_datetime_text(struct sl_buf *b, const char *s, size_t n)
{
    char out[64];
    if (n < 19 || n > 40 || s[10] != ' ')
        return w_text(b, s, n);
    memcpy(out, s, n);
    out[10] = 'T';
    out[n] = 'Z';
    return w_str(b, out, n + 1);
}

/* ---- envelope ---- */

#define K_BEFORE                                                                                   \
    "\xa6"                                                                                         \
    "before"
#define K_AFTER                                                                                    \
    "\xa5"                                                                                         \
    "after"
#define K_TS_MS                                                                                    \
    "\xa5"                                                                                         \
    "ts_ms"

static int put_row_map(struct sl_buf *b, const struct sl_buf *m)
{
    if (!m)
        return w_byte(b, 0xc0);
    return w_raw(b, m->data, m->len);
}

/* The "source" key and block up to the value of "row" (part 0), or after it (part 1). */
static void put_source_part(struct sl_buf *b, const struct sl_my_source *src, int part)
{
    if (part == 0) {
        put_cstr(b, "source");
        sl_mp_write_map(b, 11);
        put_cstr(b, "connector");
        put_cstr(b, "sluice");
        put_cstr(b, "db");
        w_text(b, src->db.s, src->db.len);
        put_cstr(b, "table");
        w_text(b, src->table.s, src->table.len);
        put_cstr(b, "server_id");
        w_uint(b, src->server_id);
        put_cstr(b, "gtid");
        if (src->gtid)
            put_cstr(b, src->gtid);
        else
            w_byte(b, 0xc0);
        put_cstr(b, "file");
        w_text(b, src->file, strlen(src->file));
        put_cstr(b, "pos");
        w_uint(b, src->pos);
        put_cstr(b, "row");
        return;
    }
    put_cstr(b, "ts_ms");
    w_int(b, src->ts_ms);
    put_cstr(b, "snapshot");
    w_byte(b, src->snapshot ? 0xc3 : 0xc2);
    put_cstr(b, "query"); /* Debezium's source.query: not captured */
    w_byte(b, 0xc0);
}

static void put_source(struct sl_buf *b, const struct sl_my_source *src)
{
    put_source_part(b, src, 0);
    w_uint(b, src->row);
    put_source_part(b, src, 1);
}

void sl_my_source_encode(struct sl_my_srcenc *e, const struct sl_my_source *src)
{
    sl_buf_reset(&e->b);
    put_source_part(&e->b, src, 0);
    e->head = e->b.len;
    put_source_part(&e->b, src, 1);
}

/* {"op": op, "before": */
static void put_env_head(struct sl_buf *b, char op)
{
    uint8_t h[] = {0x85, 0xa2, 'o', 'p', 0xa1, (uint8_t)op};
    w_raw(b, h, sizeof(h));
    w_raw(b, K_BEFORE, sizeof(K_BEFORE) - 1);
}

int sl_my_envelope_mp(struct sl_buf *b, char op, const struct sl_buf *before,
                      const struct sl_buf *after, const struct sl_my_source *src, uint64_t ts_ms)
{
    put_env_head(b, op);
    put_row_map(b, before);
    w_raw(b, K_AFTER, sizeof(K_AFTER) - 1);
    put_row_map(b, after);
    put_source(b, src);
    w_raw(b, K_TS_MS, sizeof(K_TS_MS) - 1);
    w_uint(b, ts_ms);
    return b->failed ? -1 : 0;
}

int sl_my_change_next(struct sl_buf *b, struct sl_my_rows *r, const struct sl_my_table *t,
                      const struct sl_my_srcenc *src, uint32_t row, uint64_t ts_ms,
                      const char **why)
{
    *why = NULL;
    if (r->at >= r->end)
        return 0;
    if (r->ncols != t->ncols)
        FAIL("the rows event and its table map disagree on the column count");
    size_t start = b->len;
    struct rd d = {r->at, r->end};
    int rc = 0;
    put_env_head(b, r->op);
    if (r->op != 'c')
        rc = put_image(b, &d, r->present, t, why);
    else
        w_byte(b, 0xc0);
    w_raw(b, K_AFTER, sizeof(K_AFTER) - 1);
    if (rc == 0 && r->op != 'd')
        rc = put_image(b, &d, r->present_after, t, why);
    else if (rc == 0)
        w_byte(b, 0xc0);
    if (rc == 0) {
        w_raw(b, src->b.data, src->head);
        w_uint(b, row);
        w_raw(b, src->b.data + src->head, src->b.len - src->head);
        w_raw(b, K_TS_MS, sizeof(K_TS_MS) - 1);
        w_uint(b, ts_ms);
        if (b->failed || src->b.failed)
            rc = -2;
    }
    if (rc < 0) {
        if (!b->failed)
            b->len = start;
        return rc;
    }
    r->at = d.p;
    return 1;
}

int sl_my_ddl_mp(struct sl_buf *b, const struct sl_my_str *sql, const struct sl_my_source *src,
                 uint64_t ts_ms)
{
    sl_mp_write_map(b, 4);
    put_cstr(b, "ddl");
    w_text(b, sql->s, sql->len);
    put_cstr(b, "databaseName");
    w_text(b, src->db.s, src->db.len);
    put_source(b, src);
    w_raw(b, K_TS_MS, sizeof(K_TS_MS) - 1);
    w_uint(b, ts_ms);
    return b->failed ? -1 : 0;
}

int sl_my_envelope_position(const uint8_t *mp, size_t n, char *file, size_t filecap, uint64_t *pos,
                            uint32_t *row, int *snapshot)
{
    const uint8_t *end = mp + n, *src = mp, *p;
    const char *f;
    uint32_t flen;
    int64_t v;
    int snap;
    if (sl_mp_map_find(&src, end, "source") < 0)
        return -1;
    p = src;
    if (sl_mp_map_find(&p, end, "file") < 0 || sl_mp_read_str(&p, end, &f, &flen) < 0 ||
        flen + 1 > filecap)
        return -1;
    memcpy(file, f, flen);
    file[flen] = 0;
    p = src;
    if (sl_mp_map_find(&p, end, "pos") < 0 || sl_mp_read_int(&p, end, &v) < 0 || v < 0)
        return -1;
    *pos = (uint64_t)v;
    p = src;
    if (sl_mp_map_find(&p, end, "row") < 0 || sl_mp_read_int(&p, end, &v) < 0 || v < 0 ||
        v > UINT32_MAX)
        return -1;
    *row = (uint32_t)v;
    p = src;
    if (sl_mp_map_find(&p, end, "snapshot") < 0 || sl_mp_read_bool(&p, end, &snap) < 0)
        return -1;
    *snapshot = snap;
    return 0;
}
