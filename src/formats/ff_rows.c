/* Schema inference and column chunks for the typed file formats (see ff_rows.h). */
#include "formats/ff_rows.h"

#include "formats/json_mp.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define NESTING 64
#define INFER_SPLIT 20000 /* records from which inference runs on two threads */

enum sl_ff_type sl_ff_promote(enum sl_ff_type a, enum sl_ff_type b)
{
    if (a == b || b == SL_FT_NULL)
        return a;
    if (a == SL_FT_NULL)
        return b;
    if ((a == SL_FT_INT && b == SL_FT_DOUBLE) || (a == SL_FT_DOUBLE && b == SL_FT_INT))
        return SL_FT_DOUBLE;
    return SL_FT_STRING;
}

static uint32_t name_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int rehash(struct sl_ff_schema *s, size_t want)
{
    size_t nh = 64;
    while (nh < 2 * want)
        nh *= 2;
    if (nh != s->nheads) {
        int32_t *h = malloc(nh * sizeof(*h));
        if (!h)
            return -1;
        free(s->heads);
        s->heads = h;
        s->nheads = nh;
    }
    memset(s->heads, 0xff, s->nheads * sizeof(*s->heads));
    for (size_t i = 0; i < s->ncols; i++) {
        uint32_t b = s->cols[i].hash & (uint32_t)(s->nheads - 1);
        s->cols[i].next = s->heads[b];
        s->heads[b] = (int32_t)i;
    }
    return 0;
}

long sl_ff_schema_find(const struct sl_ff_schema *s, const char *name, size_t len)
{
    if (!s->nheads)
        return -1;
    uint32_t h = name_hash(name, len);
    for (int32_t i = s->heads[h & (s->nheads - 1)]; i >= 0; i = s->cols[i].next)
        if (s->cols[i].hash == h && s->cols[i].name_len == len &&
            memcmp(s->cols[i].name, name, len) == 0)
            return i;
    return -1;
}

/* Column index of the key (the j-th of its record; the hint remembers where the previous record's
 * j-th key went), or -1. */
static long lookup(const struct sl_ff_schema *s, uint32_t *hint, const char *name, uint32_t len,
                   uint32_t j)
{
    if (j < 32 && hint[j] < s->ncols) {
        const struct sl_ff_col *c = &s->cols[hint[j]];
        if (c->name_len == len) {
            uint32_t k = 0; /* names are short: a loop beats a call to memcmp */
            while (k < len && c->name[k] == name[k])
                k++;
            if (k == len)
                return hint[j];
        }
    }
    long i = sl_ff_schema_find(s, name, len);
    if (i >= 0 && j < 32)
        hint[j] = (uint32_t)i;
    return i;
}

/* lookup(), adding the column when new; -1 when out of memory. */
static long column(struct sl_ff_schema *s, const char *name, uint32_t len, uint32_t j)
{
    long i = lookup(s, s->hint, name, len, j);
    if (i < 0) {
        if (s->ncols == s->cap) {
            size_t nc = s->cap ? 2 * s->cap : 16;
            struct sl_ff_col *c = realloc(s->cols, nc * sizeof(*c));
            if (!c)
                return -1;
            s->cols = c;
            s->cap = nc;
        }
        struct sl_ff_col *c = &s->cols[s->ncols];
        memset(c, 0, sizeof(*c));
        c->name = name;
        c->name_len = len;
        c->hash = name_hash(name, len);
        c->last_row = UINT64_MAX;
        i = (long)s->ncols++;
        if (2 * s->ncols > s->nheads) {
            if (rehash(s, s->ncols))
                return -1;
        } else {
            uint32_t b = c->hash & (uint32_t)(s->nheads - 1);
            c->next = s->heads[b];
            s->heads[b] = (int32_t)i;
        }
        if (j < 32)
            s->hint[j] = (uint32_t)i;
    }
    return i;
}

/* Reads one value: its type, and (when v is given) the value; nested maps/arrays as JSON text
 * appended to text (when given) or only skipped. 0, or -1 with a message. */
static int read_value(const uint8_t **p, const uint8_t *end, struct sl_ff_val *v,
                      struct sl_buf *text, const char **why)
{
    struct sl_jerr je;
    const uint8_t *q = *p;
    v->nested = 0;
    v->arena = 0;
    /* the common encodings first, without the general readers */
    if (q < end) {
        uint8_t b = *q;
        if (b <= 0x7f || b >= 0xe0) { /* positive / negative fixint */
            v->type = SL_FT_INT;
            v->v.i = (int8_t)b;
            *p = q + 1;
            return 0;
        }
        if ((b & 0xe0) == 0xa0 || b == 0xd9) { /* fixstr, str8 */
            size_t hl = b == 0xd9 ? 2 : 1;
            if ((size_t)(end - q) >= hl) {
                size_t n = b == 0xd9 ? q[1] : (size_t)(b & 0x1f);
                if ((size_t)(end - q) - hl >= n) {
                    v->type = SL_FT_STRING;
                    v->v.s = (const char *)q + hl;
                    v->len = (uint32_t)n;
                    *p = q + hl + n;
                    return 0;
                }
            }
            return *why = "truncated value", -1;
        }
        if (b == 0xc0 || b == 0xc2 || b == 0xc3) { /* nil, false, true */
            v->type = b == 0xc0 ? SL_FT_NULL : SL_FT_BOOL;
            v->v.i = b == 0xc3;
            *p = q + 1;
            return 0;
        }
        if ((b >= 0xcc && b <= 0xce) || (b >= 0xd0 && b <= 0xd3)) {
            size_t len = (size_t)1 << (b & 3); /* uint8..32, int8..64: 1, 2, 4 (8) bytes */
            if ((size_t)(end - q) > len) {
                uint64_t u = 0;
                for (size_t i = 1; i <= len; i++)
                    u = u << 8 | q[i];
                v->type = SL_FT_INT;
                v->v.i = b >= 0xd0 ? (int64_t)(u << (64 - 8 * len)) >> (64 - 8 * len) : (int64_t)u;
                *p = q + 1 + len;
                return 0;
            }
        }
        if (b == 0xcb && end - q >= 9) { /* float64 */
            uint64_t u = 0;
            for (int i = 1; i <= 8; i++)
                u = u << 8 | q[i];
            memcpy(&v->v.d, &u, 8);
            v->type = SL_FT_DOUBLE;
            *p = q + 9;
            return 0;
        }
    }
    int t = sl_mp_type(*p, end);
    switch (t) {
    case SL_MP_NIL:
        v->type = SL_FT_NULL;
        return sl_mp_read_nil(p, end) ? (*why = "truncated value", -1) : 0;
    case SL_MP_BOOL: {
        int b;
        if (sl_mp_read_bool(p, end, &b))
            return *why = "truncated value", -1;
        v->type = SL_FT_BOOL;
        v->v.i = b;
        return 0;
    }
    case SL_MP_INT:
        if (sl_mp_read_int(p, end, &v->v.i) == 0) {
            v->type = SL_FT_INT;
            return 0;
        }
        /* an unsigned integer above INT64_MAX: a double, as no column type holds it exactly */
        /* fall through */
    case SL_MP_FLOAT:
        v->type = SL_FT_DOUBLE;
        return sl_mp_read_double(p, end, &v->v.d) ? (*why = "truncated value", -1) : 0;
    case SL_MP_STR: {
        const char *s;
        uint32_t n;
        if (sl_mp_read_str(p, end, &s, &n))
            return *why = "truncated value", -1;
        v->type = SL_FT_STRING;
        v->v.s = s;
        v->len = n;
        return 0;
    }
    case SL_MP_MAP:
    case SL_MP_ARRAY: {
        v->type = SL_FT_STRING;
        v->nested = 1;
        if (!text) {
            long k = sl_mp_skip(*p, (size_t)(end - *p), NESTING);
            if (k < 0)
                return *why = "malformed MessagePack", -1;
            *p += k;
            return 0;
        }
        size_t used, start = text->len;
        if (sl_mp_to_json(*p, (size_t)(end - *p), &used, text, NESTING, &je) < 0)
            return *why = "a nested value cannot be shown as JSON", -1;
        *p += used;
        v->arena = 1;
        v->v.off = start;
        v->len = (uint32_t)(text->len - start);
        return 0;
    }
    case SL_MP_BIN:
    case SL_MP_EXT:
        return *why = "binary values cannot be written", -1;
    default:
        return *why = "malformed MessagePack", -1;
    }
}

static int bad(struct sl_err *err, const struct sl_ff_record *r, const char *why)
{
    return sl_err_set(err, SL_E_CORRUPT, "bad_record", "record %llu: %s",
                      (unsigned long long)r->seq, why);
}

static int nomem(struct sl_err *err)
{
    return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
}

static const char *const g_meta[4] = {"_record_hash", "_seq", "_timestamp_ms", "_strand"};
static const uint8_t g_meta_type[4] = {SL_FT_STRING, SL_FT_INT, SL_FT_INT, SL_FT_STRING};

/* Notes value type t for column c in row i (a later duplicate key replaces an earlier one). */
static void observe(struct sl_ff_col *c, uint64_t i, int t, int nested)
{
    c->type = (uint8_t)sl_ff_promote((enum sl_ff_type)c->type, (enum sl_ff_type)t);
    c->nested |= (uint8_t)nested;
    int isnull = t == SL_FT_NULL;
    if (c->last_row == i) {
        c->nulls += (uint64_t)isnull - c->last_null;
    } else {
        /* rows skipped since the column's last appearance are missing: counted at the end */
        c->nulls += (uint64_t)isnull;
        c->present++;
    }
    c->last_row = i;
    c->last_null = (uint8_t)isnull;
}

static int cmp_col(const void *a, const void *b)
{
    const struct sl_ff_col *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* Infers the columns of r[0..n) into s (columns unsorted, nulls counting the missing rows). */
static int infer_part(struct sl_ff_schema *s, const struct sl_ff_record *r, size_t n,
                      struct sl_err *err)
{
    if (sl_ff_schema_start(s))
        return nomem(err);
    s->nrows = n;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = r[i].payload, *end = p + r[i].payload_len;
        const char *why = NULL;
        struct sl_ff_val v;
        uint32_t m;
        if (sl_mp_type(p, end) != SL_MP_MAP) {
            long c = column(s, "value", 5, 0);
            if (c < 0)
                return nomem(err);
            if (read_value(&p, end, &v, NULL, &why))
                return bad(err, &r[i], why);
            observe(&s->cols[c], i, v.type, v.nested);
            continue;
        }
        if (sl_mp_read_map(&p, end, &m))
            return bad(err, &r[i], "truncated map");
        for (uint32_t j = 0; j < m; j++) {
            const char *k;
            uint32_t kn;
            if (sl_mp_read_str(&p, end, &k, &kn))
                return bad(err, &r[i], "map keys must be strings");
            if (read_value(&p, end, &v, NULL, &why))
                return bad(err, &r[i], why);
            long c = column(s, k, kn, j);
            if (c < 0)
                return nomem(err);
            observe(&s->cols[c], i, v.type, v.nested);
        }
    }
    for (size_t c = 0; c < s->ncols; c++)
        s->cols[c].nulls += n - s->cols[c].present;
    return 0;
}

int sl_ff_schema_start(struct sl_ff_schema *s)
{
    memset(s, 0, sizeof(*s));
    memset(s->hint, 0xff, sizeof(s->hint));
    return rehash(s, 16);
}

/* Adds columns (inferred over rows rows, after s's) to s. */
int sl_ff_schema_add(struct sl_ff_schema *a, const struct sl_ff_col *cols, size_t ncols,
                     size_t rows)
{
    size_t na = a->ncols;
    uint8_t *seen = calloc(na + 1, 1);
    if (!seen)
        return -1;
    for (size_t k = 0; k < ncols; k++) {
        const struct sl_ff_col *cb = &cols[k];
        long i = sl_ff_schema_find(a, cb->name, cb->name_len);
        if (i < 0) {
            i = column(a, cb->name, cb->name_len, 32);
            if (i < 0) {
                free(seen);
                return -1;
            }
            a->cols[i].type = cb->type;
            a->cols[i].nested = cb->nested;
            a->cols[i].nulls = a->nrows + cb->nulls; /* missing in every row of a */
            continue;
        }
        struct sl_ff_col *ca = &a->cols[i];
        ca->type = (uint8_t)sl_ff_promote((enum sl_ff_type)ca->type, (enum sl_ff_type)cb->type);
        ca->nested |= cb->nested;
        ca->nulls += cb->nulls;
        seen[i] = 1;
    }
    for (size_t k = 0; k < na; k++)
        if (!seen[k])
            a->cols[k].nulls += rows; /* missing in every row of b */
    a->nrows += rows;
    free(seen);
    return 0;
}

struct part {
    struct sl_ff_schema s;
    const struct sl_ff_record *r;
    size_t n;
    struct sl_err err;
    int rc;
};

static void *infer_thread(void *arg)
{
    struct part *pt = arg;
    pt->rc = infer_part(&pt->s, pt->r, pt->n, &pt->err);
    return NULL;
}

int sl_ff_schema_infer(struct sl_ff_schema *s, int include_metadata, const char *strand,
                       const struct sl_ff_record *r, size_t n, struct sl_err *err)
{
    /* a large batch is inferred in two halves at once, then merged */
    struct part second;
    pthread_t th;
    int threaded = 0;
    size_t first = n;
    memset(&second, 0, sizeof(second));
    if (n >= INFER_SPLIT) {
        first = n / 2;
        second.r = r + first;
        second.n = n - first;
        threaded = pthread_create(&th, NULL, infer_thread, &second) == 0;
        if (!threaded)
            first = n;
    }
    int rc = infer_part(s, r, first, err);
    if (threaded) {
        pthread_join(th, NULL);
        if (!rc && second.rc) {
            rc = second.rc;
            if (err)
                *err = second.err;
        }
        if (!rc && sl_ff_schema_add(s, second.s.cols, second.s.ncols, second.s.nrows))
            rc = nomem(err);
        sl_ff_schema_release(&second.s);
    }
    return rc ? rc : sl_ff_schema_finish(s, include_metadata, strand) ? nomem(err) : 0;
}

int sl_ff_schema_finish(struct sl_ff_schema *s, int include_metadata, const char *strand)
{
    s->meta = include_metadata;
    s->strand = strand;
    if (include_metadata) {
        for (int k = 0; k < 4; k++) {
            long c = column(s, g_meta[k], (uint32_t)strlen(g_meta[k]), 32);
            if (c < 0)
                return -1;
            struct sl_ff_col *col = &s->cols[c];
            col->type = g_meta_type[k];
            col->nested = 0;
            col->meta = 1;
            col->nulls = 0;
        }
    }
    if (s->ncols)
        qsort(s->cols, s->ncols, sizeof(*s->cols), cmp_col);
    return rehash(s, s->ncols);
}

void sl_ff_schema_release(struct sl_ff_schema *s)
{
    free(s->cols);
    free(s->heads);
    memset(s, 0, sizeof(*s));
}

void sl_ff_put_double(struct sl_buf *b, double d)
{
    uint8_t m[9] = {0xcb};
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        m[1 + i] = (uint8_t)(u >> (56 - 8 * i));
    size_t used;
    struct sl_jerr je;
    if (sl_mp_to_json(m, 9, &used, b, 1, &je) < 0)
        sl_buf_puts(b, d != d ? "NaN" : d > 0 ? "Infinity" : "-Infinity");
}

void sl_ff_put_i64(struct sl_buf *b, int64_t v)
{
    char t[24];
    int n = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        t[sizeof(t) - 1 - n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        t[sizeof(t) - 1 - n++] = '-';
    sl_buf_append(b, t + sizeof(t) - n, (size_t)n);
}

void sl_ff_put_text(struct sl_buf *b, const struct sl_ff_val *v)
{
    switch (v->type) {
    case SL_FT_BOOL:
        sl_buf_puts(b, v->v.i ? "true" : "false");
        break;
    case SL_FT_INT:
        sl_ff_put_i64(b, v->v.i);
        break;
    case SL_FT_DOUBLE:
        sl_ff_put_double(b, v->v.d);
        break;
    case SL_FT_STRING:
        sl_buf_append(b, v->v.s, v->len);
        break;
    default:
        break;
    }
}

/* Turns v into column type t (convert mode). */
static void convert_val(struct sl_ff_val *v, int t, struct sl_buf *text)
{
    if (v->type == t || v->type == SL_FT_NULL)
        return;
    if (t == SL_FT_DOUBLE && v->type == SL_FT_INT) {
        v->v.d = (double)v->v.i;
        v->type = SL_FT_DOUBLE;
        return;
    }
    /* t is STRING: the value's JSON text */
    size_t start = text->len;
    sl_ff_put_text(text, v);
    v->type = SL_FT_STRING;
    v->arena = 1;
    v->v.off = start;
    v->len = (uint32_t)(text->len - start);
}

static void set_str_arena(struct sl_ff_val *v, size_t off, size_t len)
{
    v->type = SL_FT_STRING;
    v->nested = 0;
    v->arena = 1;
    v->v.off = off;
    v->len = (uint32_t)len;
}

/* The members of one record's payload: a map's entries, or one member "value". */
struct walk {
    const uint8_t *p, *end;
    const struct sl_ff_record *r;
    uint32_t j, m; /* next member, members */
    int map;
    const char *k; /* the current member: key, value */
    uint32_t kn;
    struct sl_ff_val v;
};

static void walk_start(struct walk *w, const struct sl_ff_record *r)
{
    w->p = r->payload;
    w->end = w->p + r->payload_len;
    w->r = r;
    w->j = 0;
    w->m = 1;
    if (w->p < w->end && (*w->p & 0xf0) == 0x80) { /* fixmap */
        w->map = 1;
        w->m = *w->p++ & 0x0f;
        return;
    }
    w->map = sl_mp_type(w->p, w->end) == SL_MP_MAP;
    if (w->map && sl_mp_read_map(&w->p, w->end, &w->m))
        w->map = -1;
}

/* The next member (its key, and its value read as read_value does): 1, 0 after the last one, or
 * an error (bad_record). */
static int walk_next(struct walk *w, struct sl_buf *text, struct sl_err *err)
{
    const char *why = NULL;
    if (w->map < 0)
        return bad(err, w->r, "truncated map");
    if (w->j == w->m)
        return 0;
    w->j++;
    w->k = "value";
    w->kn = 5;
    if (w->map && w->p < w->end && (*w->p & 0xe0) == 0xa0 &&
        (size_t)(w->end - w->p) > (size_t)(*w->p & 0x1f)) { /* a fixstr key, the usual one */
        w->kn = *w->p & 0x1f;
        w->k = (const char *)w->p + 1;
        w->p += 1 + w->kn;
    } else if (w->map && sl_mp_read_str(&w->p, w->end, &w->k, &w->kn)) {
        return bad(err, w->r, "map keys must be strings");
    }
    if (read_value(&w->p, w->end, &w->v, text, &why))
        return bad(err, w->r, why);
    return 1;
}

/* The metadata values of record r (row i) into columns mc[0..3]. */
static void put_meta(struct sl_ff_chunk *c, const long mc[4], const struct sl_ff_record *r,
                     size_t i, const char *strand)
{
    struct sl_ff_val *mv;
    size_t off = c->text.len;
    sl_buf_hex(&c->text, r->hash, 32);
    set_str_arena(sl_ff_at(c, (size_t)mc[0], i), off, 64);
    mv = sl_ff_at(c, (size_t)mc[1], i);
    mv->type = SL_FT_INT;
    mv->v.i = (int64_t)r->seq;
    mv = sl_ff_at(c, (size_t)mc[2], i);
    mv->type = SL_FT_INT;
    mv->v.i = (int64_t)r->timestamp_ms;
    mv = sl_ff_at(c, (size_t)mc[3], i);
    mv->type = SL_FT_STRING;
    mv->nested = 0;
    mv->arena = 0;
    mv->v.s = strand;
    mv->len = (uint32_t)strlen(strand);
}

/* Column k's text-arena offsets become pointers (the arena is complete). */
static void arena_pointers(struct sl_ff_chunk *c, size_t k)
{
    struct sl_ff_val *v = sl_ff_at(c, k, 0);
    for (size_t i = 0; i < c->rows; i++)
        if (v[i].arena) {
            v[i].v.s = (const char *)c->text.data + v[i].v.off;
            v[i].arena = 0;
        }
}

int sl_ff_chunk_fill(struct sl_ff_chunk *c, const struct sl_ff_schema *s,
                     const struct sl_ff_record *r, size_t n, int convert, struct sl_err *err)
{
    if (!c->vals || c->cap < n || c->ncols != s->ncols) {
        memset(c->hint, 0xff, sizeof(c->hint));
        free(c->vals);
        c->cap = n > c->cap ? n : c->cap;
        c->ncols = s->ncols;
        c->vals = calloc(c->cap * (s->ncols ? s->ncols : 1), sizeof(*c->vals));
        if (!c->vals)
            return nomem(err);
        if (!c->text.max)
            sl_buf_init(&c->text, 0);
    } else {
        for (size_t k = 0; k < s->ncols; k++)
            memset(sl_ff_at(c, k, 0), 0, n * sizeof(*c->vals));
    }
    sl_buf_reset(&c->text);
    c->rows = n;
    long mc[4] = {-1, -1, -1, -1};
    for (int k = 0; s->meta && k < 4; k++)
        mc[k] = sl_ff_schema_find(s, g_meta[k], strlen(g_meta[k]));
    for (size_t i = 0; i < n; i++) {
        struct walk w;
        int rc;
        walk_start(&w, &r[i]);
        while ((rc = walk_next(&w, &c->text, err)) > 0) {
            long col = lookup(s, c->hint, w.k, w.kn, w.j - 1);
            if (col < 0) /* cannot happen: inference saw every key */
                return bad(err, &r[i], "record changed between passes");
            if (s->cols[col].meta) /* replaced by the metadata value */
                continue;
            if (convert)
                convert_val(&w.v, s->cols[col].type, &c->text);
            *sl_ff_at(c, (size_t)col, i) = w.v;
        }
        if (rc < 0)
            return rc;
        if (s->meta)
            put_meta(c, mc, &r[i], i, s->strand);
    }
    if (c->text.failed)
        return sl_err_set(err, SL_E_TOOBIG, "file_too_large", "nested values too large");
    /* the arena is complete: offsets become pointers */
    for (size_t k = 0; k < s->ncols; k++)
        arena_pointers(c, k);
    return 0;
}

/* Grows c to hold at least want columns (the new ones null). */
static int chunk_cols(struct sl_ff_chunk *c, size_t want)
{
    if (want <= c->colcap)
        return 0;
    size_t nc = c->colcap ? 2 * c->colcap : 16;
    while (nc < want)
        nc *= 2;
    struct sl_ff_val *v = realloc(c->vals, nc * c->cap * sizeof(*v));
    if (!v)
        return -1;
    memset(v + c->colcap * c->cap, 0, (nc - c->colcap) * c->cap * sizeof(*v));
    c->vals = v;
    c->colcap = nc;
    return 0;
}

int sl_ff_chunk_fill_local(struct sl_ff_chunk *c, struct sl_ff_schema *s, int include_metadata,
                           const char *strand, const struct sl_ff_record *r, size_t n,
                           struct sl_err *err)
{
    if (!s->nheads) { /* first use: the metadata columns first, at 0..3 */
        if (sl_ff_schema_start(s))
            return nomem(err);
        s->meta = include_metadata;
        s->strand = strand;
        for (int k = 0; include_metadata && k < 4; k++) {
            long col = column(s, g_meta[k], (uint32_t)strlen(g_meta[k]), 32);
            if (col < 0)
                return nomem(err);
            s->cols[col].type = g_meta_type[k];
            s->cols[col].meta = 1;
        }
    }
    if (!c->vals || c->cap < n) {
        free(c->vals);
        c->vals = NULL;
        c->cap = n ? n : 1;
        c->colcap = 0;
        if (!c->text.max)
            sl_buf_init(&c->text, 0);
    }
    if (chunk_cols(c, s->ncols))
        return nomem(err);
    for (size_t k = 0; k < s->ncols; k++) {
        struct sl_ff_col *col = &s->cols[k];
        memset(sl_ff_at(c, k, 0), 0, n * sizeof(*c->vals));
        col->last_row = UINT64_MAX;
        col->present = 0;
        col->arena = 0;
        if (!col->meta) {
            col->type = SL_FT_NULL;
            col->nested = 0;
            col->nulls = 0;
            col->tmask = 0;
        }
    }
    sl_buf_reset(&c->text);
    c->rows = n;
    static const long mc[4] = {0, 1, 2, 3};
    for (size_t i = 0; i < n; i++) {
        struct walk w;
        int rc;
        walk_start(&w, &r[i]);
        while ((rc = walk_next(&w, &c->text, err)) > 0) {
            long ci = column(s, w.k, w.kn, w.j - 1);
            if (ci < 0 || chunk_cols(c, s->ncols))
                return nomem(err);
            struct sl_ff_col *col = &s->cols[ci];
            if (col->meta) /* replaced by the metadata value */
                continue;
            observe(col, i, w.v.type, w.v.nested);
            col->tmask |= (uint8_t)(1u << w.v.type);
            col->arena |= w.v.arena;
            *sl_ff_at(c, (size_t)ci, i) = w.v;
        }
        if (rc < 0)
            return rc;
        if (include_metadata)
            put_meta(c, mc, &r[i], i, strand);
    }
    if (c->text.failed)
        return sl_err_set(err, SL_E_TOOBIG, "file_too_large", "nested values too large");
    c->ncols = s->ncols;
    for (size_t k = 0; k < s->ncols; k++) {
        struct sl_ff_col *col = &s->cols[k];
        if (col->meta) {
            col->arena = 1;
            continue;
        }
        col->nulls += n - col->present;
        unsigned types = col->tmask & ~1u; /* not null */
        if (types & (types - 1)) {         /* several types: converted to the column's */
            struct sl_ff_val *v = sl_ff_at(c, k, 0);
            for (size_t i = 0; i < n; i++)
                convert_val(&v[i], col->type, &c->text);
            col->arena = 1;
        }
    }
    if (c->text.failed)
        return sl_err_set(err, SL_E_TOOBIG, "file_too_large", "nested values too large");
    for (size_t k = 0; k < s->ncols; k++) /* the arena is complete */
        if (s->cols[k].arena)
            arena_pointers(c, k);
    return 0;
}

void sl_ff_chunk_release(struct sl_ff_chunk *c)
{
    free(c->vals);
    sl_buf_release(&c->text);
    memset(c, 0, sizeof(*c));
}

void sl_ff_csv_field(struct sl_buf *b, const char *s, size_t n, char delim, char quote, int always)
{
    int need = always;
    for (size_t i = 0; i < n && !need; i++)
        need = s[i] == delim || s[i] == quote || s[i] == '\n' || s[i] == '\r';
    if (!need) {
        sl_buf_append(b, s, n);
        return;
    }
    sl_buf_putc(b, (uint8_t)quote);
    size_t from = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == quote) {
            sl_buf_append(b, s + from, i + 1 - from); /* up to and including the quote */
            from = i;                                 /* ... which is written again */
        }
    sl_buf_append(b, s + from, n - from);
    sl_buf_putc(b, (uint8_t)quote);
}
