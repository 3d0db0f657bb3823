/* Parquet writer (apache/parquet-format: parquet.thrift, Encodings.md), no Parquet library:
 *
 *   "PAR1" | row group 1: column chunk 1 .. n | ... | FileMetaData (Thrift compact) | len | "PAR1"
 *
 * One flat schema per file (ff_rows.c infers it: BOOLEAN, INT64, DOUBLE, BYTE_ARRAY + STRING;
 * nested values as JSON text; a column null in every row is an optional STRING column), OPTIONAL
 * when some row is null or lacks the key, else REQUIRED. Each column chunk of a row group holds
 * v1 data pages of about data_page_size bytes; strings are dictionary encoded (a PLAIN dictionary
 * page, RLE_DICTIONARY indices) unless the chunk's dictionary would pass DICT_MAX bytes, then
 * PLAIN. Definition levels use the RLE/bit-packing hybrid (bit width 1). Pages are compressed with
 * the chosen codec (SNAPPY, GZIP, ZSTD, LZ4_RAW, UNCOMPRESSED); statistics (min_value, max_value,
 * null_count, nan_count for doubles) go into each ColumnMetaData when enabled.
 *
 * One pass over the records: each row group is written with the columns of its own rows, then the
 * file's schema is merged from theirs and the few chunks that differ from it are written again
 * (docs/formats.md, Threads).
 *
 * Memory: per thread one row group of decoded values (ff_rows.h) plus its pages, and the file
 * itself. */
#include "core/version.h"
#include "formats/ff_rows.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the PLAIN encoder copies host integers: little-endian hosts only"
#endif

#define DICT_MAX (1u << 20) /* dictionary page limit (the seed's dictionary_page_size default) */
#define STAT_MAX 64         /* longer string min/max are left out rather than truncated */
#ifndef PQ_THREADS
#define PQ_THREADS 2 /* row groups written at once */
#endif

enum { PQ_BOOLEAN = 0, PQ_INT64 = 2, PQ_DOUBLE = 5, PQ_BYTE_ARRAY = 6 };
enum { ENC_PLAIN = 0, ENC_RLE = 3, ENC_RLE_DICTIONARY = 8 };
enum { PAGE_DATA = 0, PAGE_DICTIONARY = 2 };
enum { WRITE, FIX, COPY };

struct chunk_meta {
    int64_t data_off, dict_off, uncomp, comp;
    int dict;
    int64_t nulls, nans;
    int has_minmax;
    uint32_t min_len, max_len;
    uint8_t min[STAT_MAX], max[STAT_MAX];
};

/* A column chunk as written: where its bytes are, its metadata (offsets relative to its start). */
struct cchunk {
    struct chunk_meta m;
    size_t off, len;
    int fixed; /* in the row group's fix buffer: (re)written for the batch's schema */
};

/* A row group, first written with the columns of its own rows (loc, lc: the types and nullability
 * these rows give), then placed in the batch's column order (fin); a chunk whose type or
 * nullability differs from the batch's is written again into fix. */
struct rgroup {
    struct sl_buf buf, fix;
    size_t from, rows, at; /* at: offset of its first chunk in the file */
    struct sl_ff_col *loc;
    struct cchunk *lc, *fin;
    size_t nloc;
    int stale, refill; /* some chunk is rewritten; one needs the values decoded again */
};

/* One worker: its scratch space, and the row group it is writing. */
struct pqw {
    struct pq *p;
    size_t last;            /* bytes of the previous row group this worker wrote */
    struct sl_ff_schema ls; /* the columns this worker has seen (sl_ff_chunk_fill_local) */
    struct sl_ff_chunk c, fc;
    struct sl_ff_val *zeros; /* a column of nulls */
    struct sl_ff_dict dict;
    struct sl_buf page, cpage, hdr, levels;
    uint32_t *defs, *idx;
    struct sl_buf *out; /* the buffer being written */
    struct sl_err err;
    size_t err_g; /* the row group that failed */
    int rc;
};

struct pq {
    const struct sl_ff_opts *o;
    const struct sl_ff_record *r;
    const char *strand;
    struct sl_ff_schema s;   /* the batch's, once every row group is written */
    struct chunk_meta *meta; /* [row group * ncols + col], file offsets */
    struct rgroup *rg;
    size_t nrg, rg_rows;
    int codec; /* Parquet CompressionCodec */
    int phase; /* WRITE, FIX (the chunks that differ from the batch's schema), COPY (into out) */
    uint8_t *file; /* COPY: where the row groups go */
    size_t next;   /* next row group to take (atomic) */
    int failed;    /* atomic */
};

static int pq_codec(enum sl_ff_codec c)
{
    switch (c) {
    case SL_FF_SNAPPY:
        return 1;
    case SL_FF_GZIP:
        return 2;
    case SL_FF_ZSTD:
        return 6;
    case SL_FF_LZ4:
        return 7; /* LZ4_RAW: a raw LZ4 block (LZ4 = 5 is the deprecated Hadoop framing) */
    case SL_FF_BROTLI:
        return 4;
    default:
        return 0;
    }
}

static int ptype(int t)
{
    return t == SL_FT_BOOL     ? PQ_BOOLEAN
           : t == SL_FT_INT    ? PQ_INT64
           : t == SL_FT_DOUBLE ? PQ_DOUBLE
                               : PQ_BYTE_ARRAY;
}

static void put_le32(struct sl_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    sl_buf_append(b, t, 4);
}

/* Compresses the page in p->page and appends header + body to out; adds sizes to m. */
static int write_page(struct pqw *p, int type, uint32_t num_values, int encoding,
                      struct chunk_meta *m)
{
    const struct sl_buf *body = &p->page;
    if (p->p->codec != 0) {
        sl_buf_reset(&p->cpage);
        int rc = sl_ff_compress_block(p->p->o->parquet.codec, p->page.data, p->page.len, &p->cpage,
                                      &p->err);
        if (rc)
            return rc;
        body = &p->cpage;
    }
    if (p->page.len > INT32_MAX || body->len > INT32_MAX)
        return sl_err_set(&p->err, SL_E_TOOBIG, "file_too_large", "parquet page over 2 GiB");
    struct sl_tc t;
    sl_buf_reset(&p->hdr);
    sl_tc_init(&t, &p->hdr);
    sl_tc_i32(&t, 1, type);
    sl_tc_i32(&t, 2, (int32_t)p->page.len);
    sl_tc_i32(&t, 3, (int32_t)body->len);
    if (type == PAGE_DATA) {
        sl_tc_struct(&t, 5);
        sl_tc_i32(&t, 1, (int32_t)num_values);
        sl_tc_i32(&t, 2, encoding);
        sl_tc_i32(&t, 3, ENC_RLE);
        sl_tc_i32(&t, 4, ENC_RLE);
        sl_tc_end(&t);
    } else {
        sl_tc_struct(&t, 7);
        sl_tc_i32(&t, 1, (int32_t)num_values);
        sl_tc_i32(&t, 2, ENC_PLAIN);
        sl_tc_end(&t);
    }
    sl_tc_end(&t);
    sl_buf_append(p->out, p->hdr.data, p->hdr.len);
    sl_buf_append(p->out, body->data, body->len);
    m->uncomp += (int64_t)(p->hdr.len + p->page.len);
    m->comp += (int64_t)(p->hdr.len + body->len);
    return p->out->failed ? sl_err_set(&p->err, SL_E_TOOBIG, "file_too_large",
                                       "file larger than the buffer cap")
                          : 0;
}

static int str_less(const char *a, uint32_t an, const char *b, uint32_t bn)
{
    uint32_t n = an < bn ? an : bn, i = 0; /* short strings: no call to memcmp */
    while (i < n && a[i] == b[i])
        i++;
    return i < n ? (uint8_t)a[i] < (uint8_t)b[i] : an < bn;
}

/* Min/max of strings: among the dictionary's entries when there is one, else all values. */
static void str_stats(const struct sl_ff_val *v, size_t n, const struct sl_ff_dict *d,
                      struct chunk_meta *m)
{
    const char *lo = NULL, *hi = NULL;
    uint32_t lon = 0, hin = 0;
    size_t count = d ? d->n : n;
    for (size_t i = 0; i < count; i++) {
        const char *s;
        uint32_t len;
        if (d) {
            s = d->s[i];
            len = d->len[i];
        } else if (v[i].type == SL_FT_NULL) {
            continue;
        } else {
            s = v[i].v.s;
            len = v[i].len;
        }
        if (!lo || str_less(s, len, lo, lon)) {
            lo = s;
            lon = len;
        }
        if (!hi || str_less(hi, hin, s, len)) {
            hi = s;
            hin = len;
        }
    }
    if (!lo || lon > STAT_MAX || hin > STAT_MAX)
        return;
    memcpy(m->min, lo, lon);
    memcpy(m->max, hi, hin);
    m->min_len = lon;
    m->max_len = hin;
    m->has_minmax = 1;
}

/* Min/max/null/NaN statistics of the column chunk. */
static void stats(const struct sl_ff_val *v, size_t n, int type, struct chunk_meta *m,
                  const struct sl_ff_dict *d)
{
    for (size_t i = 0; i < n; i++)
        m->nulls += v[i].type == SL_FT_NULL;
    if (type == SL_FT_STRING) {
        str_stats(v, n, d, m);
        return;
    }
    const struct sl_ff_val *lo = NULL, *hi = NULL;
    for (size_t i = 0; i < n; i++) {
        const struct sl_ff_val *x = &v[i];
        if (x->type == SL_FT_NULL)
            continue;
        if (type == SL_FT_DOUBLE) {
            if (isnan(x->v.d)) {
                m->nans++;
                continue;
            }
            if (!lo || x->v.d < lo->v.d)
                lo = x;
            if (!hi || x->v.d > hi->v.d)
                hi = x;
        } else {
            if (!lo || x->v.i < lo->v.i)
                lo = x;
            if (!hi || x->v.i > hi->v.i)
                hi = x;
        }
    }
    if (!lo)
        return;
    if (type == SL_FT_BOOL) {
        m->min[0] = (uint8_t)lo->v.i;
        m->max[0] = (uint8_t)hi->v.i;
        m->min_len = m->max_len = 1;
    } else {
        memcpy(m->min, &lo->v, 8);
        memcpy(m->max, &hi->v, 8);
        if (type == SL_FT_DOUBLE) { /* the spec: a zero min is -0.0, a zero max is +0.0 */
            const double nz = -0.0, pz = 0.0;
            if (lo->v.d == 0)
                memcpy(m->min, &nz, 8);
            if (hi->v.d == 0)
                memcpy(m->max, &pz, 8);
        }
        m->min_len = m->max_len = 8;
    }
    m->has_minmax = 1;
}

static void plain_values(struct sl_buf *b, const struct sl_ff_val *v, size_t from, size_t to,
                         int type)
{
    if (type == SL_FT_BOOL) {
        uint8_t acc = 0;
        int bits = 0;
        for (size_t i = from; i < to; i++) {
            if (v[i].type == SL_FT_NULL)
                continue;
            acc |= (uint8_t)((v[i].v.i & 1) << bits);
            if (++bits == 8) {
                sl_buf_putc(b, acc);
                acc = 0;
                bits = 0;
            }
        }
        if (bits)
            sl_buf_putc(b, acc);
        return;
    }
    if (type == SL_FT_INT || type == SL_FT_DOUBLE) {
        if (sl_buf_reserve(b, 8 * (to - from)))
            return;
        uint8_t *o = b->data + b->len;
        for (size_t i = from; i < to; i++)
            if (v[i].type != SL_FT_NULL) {
                memcpy(o, &v[i].v, 8);
                o += 8;
            }
        b->len = (size_t)(o - b->data);
        return;
    }
    for (size_t i = from; i < to; i++)
        if (v[i].type != SL_FT_NULL) {
            put_le32(b, v[i].len);
            sl_buf_append(b, v[i].v.s, v[i].len);
        }
}

static size_t value_size(const struct sl_ff_val *v, int type, int dict_bits)
{
    if (v->type == SL_FT_NULL)
        return 0;
    if (dict_bits)
        return 1;
    return type == SL_FT_BOOL ? 1 : type == SL_FT_STRING ? 4 + v->len : 8;
}

static int bit_width(size_t n) /* bits to hold 0..n-1, at least 1 */
{
    int w = 1;
    while (w < 32 && ((size_t)1 << w) < n)
        w++;
    return w;
}

/* Writes the column chunk of values v[0..n) as type (not NULL) to p->out. */
static int write_column(struct pqw *p, const struct sl_ff_val *v, size_t n, int type, int optional,
                        struct chunk_meta *m)
{
    const struct pq *f = p->p;
    int rc;
    memset(m, 0, sizeof(*m));
    m->dict_off = -1;

    /* strings: dictionary unless it grows too big */
    int bits = 0;
    if (type == SL_FT_STRING) {
        sl_ff_dict_reset(&p->dict);
        size_t j = 0;
        int ok = 1;
        for (size_t i = 0; i < n && ok; i++) {
            if (v[i].type == SL_FT_NULL)
                continue;
            long e = sl_ff_dict_add(&p->dict, v[i].v.s, v[i].len);
            if (e < 0)
                return sl_err_set(&p->err, SL_E_NOMEM, "out_of_memory", "out of memory");
            p->idx[j++] = (uint32_t)e;
            /* too big, or mostly distinct values (ids, hashes): PLAIN is smaller and faster */
            ok = p->dict.bytes <= DICT_MAX && (j < 1024 || p->dict.n * 4 < j * 3);
        }
        if (ok && p->dict.n > 0) {
            m->dict = 1;
            bits = bit_width(p->dict.n);
            m->dict_off = (int64_t)p->out->len;
            sl_buf_reset(&p->page);
            for (size_t e = 0; e < p->dict.n; e++) {
                put_le32(&p->page, p->dict.len[e]);
                sl_buf_append(&p->page, p->dict.s[e], p->dict.len[e]);
            }
            if ((rc = write_page(p, PAGE_DICTIONARY, (uint32_t)p->dict.n, ENC_PLAIN, m)))
                return rc;
        }
    }
    if (f->o->parquet.statistics)
        stats(v, n, type, m, m->dict ? &p->dict : NULL);
    m->data_off = (int64_t)p->out->len;
    size_t start = 0, vi = 0; /* vi: index of the next non-null value (dictionary indices) */
    do {
        size_t end = start, acc = 0;
        while (end < n && acc < f->o->parquet.data_page_size)
            acc += value_size(&v[end++], type, bits);
        sl_buf_reset(&p->page);
        if (optional) {
            for (size_t i = start; i < end; i++)
                p->defs[i - start] = v[i].type != SL_FT_NULL;
            sl_buf_reset(&p->levels);
            sl_ff_rle_hybrid(&p->levels, p->defs, end - start, 1);
            put_le32(&p->page, (uint32_t)p->levels.len);
            sl_buf_append(&p->page, p->levels.data, p->levels.len);
        }
        if (m->dict) {
            size_t cnt = 0;
            for (size_t i = start; i < end; i++)
                cnt += v[i].type != SL_FT_NULL;
            sl_buf_putc(&p->page, (uint8_t)bits);
            sl_ff_rle_hybrid(&p->page, p->idx + vi, cnt, bits);
            vi += cnt;
        } else {
            plain_values(&p->page, v, start, end, type);
        }
        if ((rc = write_page(p, PAGE_DATA, (uint32_t)(end - start),
                             m->dict ? ENC_RLE_DICTIONARY : ENC_PLAIN, m)))
            return rc;
        start = end;
    } while (start < n);
    return 0;
}

static void footer_schema(struct pq *p, struct sl_tc *t)
{
    sl_tc_list(t, 2, SL_TC_STRUCT, (uint32_t)(p->s.ncols + 1));
    sl_tc_struct(t, 0);
    sl_tc_bin(t, 4, "schema", 6);
    sl_tc_i32(t, 5, (int32_t)p->s.ncols);
    sl_tc_end(t);
    for (size_t k = 0; k < p->s.ncols; k++) {
        const struct sl_ff_col *c = &p->s.cols[k];
        int pt = ptype(c->type);
        sl_tc_struct(t, 0);
        sl_tc_i32(t, 1, pt);
        sl_tc_i32(t, 3, c->nulls > 0 ? 1 : 0); /* OPTIONAL : REQUIRED */
        sl_tc_bin(t, 4, c->name, c->name_len);
        if (pt == PQ_BYTE_ARRAY) {
            sl_tc_i32(t, 6, 0); /* ConvertedType UTF8 */
            sl_tc_struct(t, 10);
            sl_tc_struct(t, 1); /* LogicalType STRING */
            sl_tc_end(t);
            sl_tc_end(t);
        }
        sl_tc_end(t);
    }
}

static void footer_chunk(struct pq *p, struct sl_tc *t, size_t k, const struct chunk_meta *m,
                         size_t rows)
{
    const struct sl_ff_col *c = &p->s.cols[k];
    int pt = ptype(c->type);
    sl_tc_struct(t, 0); /* ColumnChunk */
    sl_tc_i64(t, 2, 0);
    sl_tc_struct(t, 3); /* ColumnMetaData */
    sl_tc_i32(t, 1, pt);
    sl_tc_list(t, 2, SL_TC_I32, m->dict ? 3 : 2);
    sl_tc_elem_i32(t, ENC_PLAIN);
    sl_tc_elem_i32(t, ENC_RLE);
    if (m->dict)
        sl_tc_elem_i32(t, ENC_RLE_DICTIONARY);
    sl_tc_list(t, 3, SL_TC_BINARY, 1);
    sl_tc_elem_bin(t, c->name, c->name_len);
    sl_tc_i32(t, 4, p->codec);
    sl_tc_i64(t, 5, (int64_t)rows);
    sl_tc_i64(t, 6, m->uncomp);
    sl_tc_i64(t, 7, m->comp);
    sl_tc_i64(t, 9, m->data_off);
    if (m->dict)
        sl_tc_i64(t, 11, m->dict_off);
    if (p->o->parquet.statistics) {
        sl_tc_struct(t, 12);
        sl_tc_i64(t, 3, m->nulls);
        if (m->has_minmax) {
            sl_tc_bin(t, 5, m->max, m->max_len);
            sl_tc_bin(t, 6, m->min, m->min_len);
            sl_tc_bool(t, 7, 1);
            sl_tc_bool(t, 8, 1);
        }
        if (pt == PQ_DOUBLE)
            sl_tc_i64(t, 9, m->nans);
        sl_tc_end(t);
    }
    sl_tc_end(t);
    sl_tc_end(t);
}

static void footer(struct pq *p, struct sl_buf *out)
{
    size_t start = out->len;
    struct sl_tc t;
    sl_tc_init(&t, out);
    sl_tc_i32(&t, 1, 2);
    footer_schema(p, &t);
    sl_tc_i64(&t, 3, (int64_t)p->s.nrows);
    sl_tc_list(&t, 4, SL_TC_STRUCT, (uint32_t)p->nrg);
    for (size_t g = 0; g < p->nrg; g++) {
        size_t rows = g + 1 < p->nrg ? p->rg_rows : p->s.nrows - g * p->rg_rows;
        const struct chunk_meta *m = &p->meta[g * p->s.ncols];
        int64_t unc = 0, comp = 0;
        sl_tc_struct(&t, 0);
        sl_tc_list(&t, 1, SL_TC_STRUCT, (uint32_t)p->s.ncols);
        for (size_t k = 0; k < p->s.ncols; k++) {
            footer_chunk(p, &t, k, &m[k], rows);
            unc += m[k].uncomp;
            comp += m[k].comp;
        }
        sl_tc_i64(&t, 2, unc);
        sl_tc_i64(&t, 3, (int64_t)rows);
        sl_tc_i64(&t, 5, m[0].dict_off >= 0 ? m[0].dict_off : m[0].data_off);
        sl_tc_i64(&t, 6, comp);
        if (g <= INT16_MAX)
            sl_tc_i16(&t, 7, (int16_t)g);
        sl_tc_end(&t);
    }
    const char *by = "sluice version " SL_VERSION;
    sl_tc_bin(&t, 6, by, strlen(by));
    sl_tc_list(&t, 7, SL_TC_STRUCT, (uint32_t)p->s.ncols);
    for (size_t k = 0; k < p->s.ncols; k++) {
        sl_tc_struct(&t, 0); /* ColumnOrder */
        sl_tc_struct(&t, 1); /* TYPE_ORDER: TypeDefinedOrder {} */
        sl_tc_end(&t);
        sl_tc_end(&t);
    }
    sl_tc_end(&t);
    put_le32(out, (uint32_t)(out->len - start));
    sl_buf_append(out, "PAR1", 4);
}

/* Writes a column chunk at the end of out: its place and metadata into c. */
static int put_chunk(struct pqw *w, struct sl_buf *out, const struct sl_ff_val *v, size_t n,
                     const struct sl_ff_col *col, struct cchunk *c)
{
    size_t start = out->len;
    w->out = out;
    int rc = write_column(w, v, n, col->type == SL_FT_NULL ? SL_FT_STRING : col->type,
                          col->nulls > 0, &c->m);
    c->off = start;
    c->len = out->len - start;
    c->m.data_off -= (int64_t)start;
    if (c->m.dict_off >= 0)
        c->m.dict_off -= (int64_t)start;
    return rc;
}

/* First pass: decodes row group g once and writes it with the columns of its own rows. */
static int write_group(struct pqw *w, struct rgroup *g)
{
    struct pq *p = w->p;
    int rc = sl_ff_chunk_fill_local(&w->c, &w->ls, p->o->include_metadata, p->strand,
                                    p->r + g->from, g->rows, &w->err);
    if (rc)
        return rc;
    g->nloc = w->ls.ncols;
    g->loc = malloc(g->nloc * sizeof(*g->loc) + 1);
    g->lc = calloc(g->nloc + 1, sizeof(*g->lc));
    if (!g->loc || !g->lc)
        return sl_err_set(&w->err, SL_E_NOMEM, "out_of_memory", "out of memory");
    if (g->nloc) /* no columns: empty maps */
        memcpy(g->loc, w->ls.cols, g->nloc * sizeof(*g->loc));
    sl_buf_reserve(&g->buf, w->last + w->last / 4); /* row groups are alike: one allocation */
    for (size_t k = 0; k < g->nloc && !rc; k++)
        rc = put_chunk(w, &g->buf, sl_ff_at(&w->c, k, 0), g->rows, &g->loc[k], &g->lc[k]);
    w->last = g->buf.len;
    return rc;
}

/* Third pass: copies row group g's chunks to their place in the file, in column order. */
static void copy_group(struct pq *p, struct rgroup *g)
{
    uint8_t *o = p->file + g->at;
    for (size_t k = 0; k < p->s.ncols; k++) {
        const struct cchunk *c = &g->fin[k];
        memcpy(o, (c->fixed ? g->fix.data : g->buf.data) + c->off, c->len);
        o += c->len;
    }
    sl_buf_release(&g->buf);
    sl_buf_release(&g->fix);
}

/* Second pass: writes row group g's chunks that differ from the batch's schema into g->fix. */
static int fix_group(struct pqw *w, struct rgroup *g)
{
    struct pq *p = w->p;
    int rc = 0;
    if (g->refill)
        rc = sl_ff_chunk_fill(&w->fc, &p->s, p->r + g->from, g->rows, 1, &w->err);
    for (size_t k = 0; k < p->s.ncols && !rc; k++)
        if (g->fin[k].fixed)
            rc = put_chunk(w, &g->fix, g->refill ? sl_ff_at(&w->fc, k, 0) : w->zeros, g->rows,
                           &p->s.cols[k], &g->fin[k]);
    return rc;
}

static void *work(void *arg)
{
    struct pqw *w = arg;
    struct pq *p = w->p;
    if (!w->defs) {
        w->defs = malloc(p->rg_rows * sizeof(*w->defs));
        w->idx = malloc(p->rg_rows * sizeof(*w->idx));
        w->zeros = calloc(p->rg_rows, sizeof(*w->zeros));
        if (!w->defs || !w->idx || !w->zeros) {
            w->rc = sl_err_set(&w->err, SL_E_NOMEM, "out_of_memory", "out of memory");
            w->err_g = 0;
            __atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
            return NULL;
        }
    }
    for (;;) {
        size_t g = __atomic_fetch_add(&p->next, 1, __ATOMIC_RELAXED);
        if (g >= p->nrg || __atomic_load_n(&p->failed, __ATOMIC_RELAXED))
            break;
        if (p->phase == COPY) {
            copy_group(p, &p->rg[g]);
            continue;
        }
        if (p->phase == FIX && !p->rg[g].stale)
            continue;
        w->rc = p->phase == FIX ? fix_group(w, &p->rg[g]) : write_group(w, &p->rg[g]);
        if (w->rc) {
            w->err_g = g;
            __atomic_store_n(&p->failed, 1, __ATOMIC_RELAXED);
            break;
        }
    }
    return NULL;
}

/* Runs work on up to PQ_THREADS threads; 0 or the error of the lowest failed row group. */
static int run(struct pq *p, struct pqw *w, size_t groups, struct sl_err *err)
{
    pthread_t th[PQ_THREADS];
    int started[PQ_THREADS] = {0}, rc = 0;
    int nt = groups < PQ_THREADS ? (int)groups : PQ_THREADS;
    p->next = 0;
    for (int t = 1; t < nt; t++)
        started[t] = pthread_create(&th[t], NULL, work, &w[t]) == 0;
    if (nt > 0)
        work(&w[0]);
    for (int t = 1; t < nt; t++)
        if (started[t])
            pthread_join(th[t], NULL);
    size_t at = SIZE_MAX;
    for (int t = 0; t < nt; t++)
        if (w[t].rc && w[t].err_g < at) {
            at = w[t].err_g;
            rc = w[t].rc;
            if (err)
                *err = w[t].err;
        }
    return rc;
}

/* A chunk written with loc's type and nullability is the batch column fin's chunk: the same type
 * and nullability, or null in every row (such a chunk's bytes do not depend on the type). */
static int same_chunk(const struct sl_ff_col *loc, const struct sl_ff_col *fin, size_t rows)
{
    if (loc->nulls == rows)
        return fin->nulls > 0;
    int lt = loc->type == SL_FT_NULL ? SL_FT_STRING : loc->type;
    int ft = fin->type == SL_FT_NULL ? SL_FT_STRING : fin->type;
    return lt == ft && (loc->nulls > 0) == (fin->nulls > 0);
}

/* The batch's schema from the row groups' columns; which chunks must be written again. */
static int plan(struct pq *p)
{
    if (sl_ff_schema_start(&p->s))
        return -1;
    for (size_t g = 0; g < p->nrg; g++)
        if (sl_ff_schema_add(&p->s, p->rg[g].loc, p->rg[g].nloc, p->rg[g].rows))
            return -1;
    if (sl_ff_schema_finish(&p->s, p->o->include_metadata, p->strand))
        return -1;
    size_t stale = 0;
    for (size_t g = 0; g < p->nrg; g++) {
        struct rgroup *rg = &p->rg[g];
        rg->fin = calloc(p->s.ncols + 1, sizeof(*rg->fin));
        if (!rg->fin)
            return -1;
        for (size_t k = 0; k < p->s.ncols; k++)
            rg->fin[k].fixed = 1; /* not in these rows: a chunk of nulls */
        for (size_t j = 0; j < rg->nloc; j++) {
            const struct sl_ff_col *lc = &rg->loc[j];
            long k = sl_ff_schema_find(&p->s, lc->name, lc->name_len);
            if (k < 0)
                return -1; /* cannot happen: every column was added */
            if (same_chunk(lc, &p->s.cols[k], rg->rows))
                rg->fin[k] = rg->lc[j];
            else
                rg->refill = 1;
        }
        for (size_t k = 0; k < p->s.ncols; k++)
            rg->stale |= rg->fin[k].fixed;
        stale += (size_t)rg->stale;
        sl_buf_init(&rg->fix, p->rg[g].buf.max);
    }
    return (int)(stale > 0) + 1;
}

static void worker_release(struct pqw *w)
{
    free(w->defs);
    free(w->idx);
    free(w->zeros);
    sl_buf_release(&w->page);
    sl_buf_release(&w->cpage);
    sl_buf_release(&w->hdr);
    sl_buf_release(&w->levels);
    sl_ff_dict_release(&w->dict);
    sl_ff_chunk_release(&w->c);
    sl_ff_chunk_release(&w->fc);
    sl_ff_schema_release(&w->ls);
}

int sl_ff_encode_parquet(const struct sl_ff_opts *o, const char *strand,
                         const struct sl_ff_record *r, size_t n, struct sl_buf *out,
                         struct sl_err *err)
{
    struct pq p;
    struct pqw w[PQ_THREADS];
    memset(&p, 0, sizeof(p));
    memset(w, 0, sizeof(w));
    p.o = o;
    p.r = r;
    p.strand = strand;
    p.codec = pq_codec(o->parquet.codec);
    size_t base = out->len;
    int rc = 0;
    p.rg_rows = o->parquet.row_group_size ? o->parquet.row_group_size : 10000;
    if (p.rg_rows > n && n > 0)
        p.rg_rows = n;
    p.nrg = n ? (n + p.rg_rows - 1) / p.rg_rows : 0;
    p.rg = calloc(p.nrg + 1, sizeof(*p.rg));
    if (!p.rg) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto done;
    }
    for (size_t g = 0; g < p.nrg; g++) {
        p.rg[g].from = g * p.rg_rows;
        p.rg[g].rows = n - p.rg[g].from < p.rg_rows ? n - p.rg[g].from : p.rg_rows;
        sl_buf_init(&p.rg[g].buf, out->max);
    }
    for (int t = 0; t < PQ_THREADS; t++) {
        w[t].p = &p;
        sl_buf_init(&w[t].page, 0);
        sl_buf_init(&w[t].cpage, 0);
        sl_buf_init(&w[t].hdr, 0);
        sl_buf_init(&w[t].levels, 0);
    }
    /* one pass over the records: each row group is written with the columns of its own rows, up
     * to PQ_THREADS at once; the batch's schema is then known, and the (usually no) chunks whose
     * type or nullability differs from it are written again */
    if ((rc = run(&p, w, p.nrg, err)))
        goto done;
    int pl = plan(&p);
    if (pl < 0) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto done;
    }
    p.phase = FIX;
    if (pl > 1 && (rc = run(&p, w, p.nrg, err)))
        goto done;
    size_t ncols = p.s.ncols, at = 4;
    p.meta = calloc(p.nrg * ncols + 1, sizeof(*p.meta));
    if (!p.meta) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto done;
    }
    for (size_t g = 0; g < p.nrg; g++) { /* chunks in column order; offsets become file offsets */
        p.rg[g].at = at;
        for (size_t k = 0; k < ncols; k++) {
            const struct cchunk *c = &p.rg[g].fin[k];
            struct chunk_meta *m = &p.meta[g * ncols + k];
            *m = c->m;
            m->data_off += (int64_t)at;
            if (m->dict_off >= 0)
                m->dict_off += (int64_t)at;
            at += c->len;
        }
    }
    if (sl_buf_reserve(out, at)) {
        rc = sl_err_set(err, SL_E_TOOBIG, "file_too_large", "file larger than the buffer cap");
        goto done;
    }
    memcpy(out->data + out->len, "PAR1", 4);
    p.file = out->data + base;
    p.phase = COPY; /* the copies on both threads too: the file's pages are touched first here */
    run(&p, w, p.nrg, err);
    out->len += at;
    footer(&p, out);
    if (out->failed)
        rc = sl_err_set(err, SL_E_TOOBIG, "file_too_large", "file larger than the buffer cap");
done:
    for (int t = 0; t < PQ_THREADS; t++)
        worker_release(&w[t]);
    for (size_t g = 0; p.rg && g < p.nrg; g++) {
        sl_buf_release(&p.rg[g].buf);
        sl_buf_release(&p.rg[g].fix);
        free(p.rg[g].loc);
        free(p.rg[g].lc);
        free(p.rg[g].fin);
    }
    free(p.rg);
    free(p.meta);
    sl_ff_schema_release(&p.s);
    return rc;
}
