#include "connectors/pg/pgoutput.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A bounds-checked reader over one message; every get fails (and stays failed) past the end. */
struct rd {
    const uint8_t *p, *end;
    const char *why;
};

static int fail(struct rd *r, const char *why)
{
    if (!r->why)
        r->why = why;
    return -1;
}

static int need(struct rd *r, size_t n)
{
    if (r->why)
        return -1;
    return (size_t)(r->end - r->p) < n ? fail(r, "truncated message") : 0;
}

static uint8_t get8(struct rd *r)
{
    return need(r, 1) ? 0 : *r->p++;
}

static uint16_t get16(struct rd *r)
{
    if (need(r, 2))
        return 0;
    uint16_t v = (uint16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return v;
}

static uint32_t get32(struct rd *r)
{
    if (need(r, 4))
        return 0;
    uint32_t v =
        ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) | ((uint32_t)r->p[2] << 8) | r->p[3];
    r->p += 4;
    return v;
}

static uint64_t get64(struct rd *r)
{
    uint64_t hi = get32(r);
    return (hi << 32) | get32(r);
}

static struct sl_pgo_str getstr(struct rd *r)
{
    struct sl_pgo_str s = {"", 0};
    if (need(r, 1))
        return s;
    const uint8_t *z = memchr(r->p, 0, (size_t)(r->end - r->p));
    if (!z) {
        fail(r, "unterminated string");
        return s;
    }
    s.s = (const char *)r->p;
    s.len = (size_t)(z - r->p);
    r->p = z + 1;
    return s;
}

static void tuple(struct rd *r, struct sl_pgo_tuple *t, struct sl_pgo_col *storage)
{
    t->cols = storage;
    t->ncols = get16(r);
    if (t->ncols > SL_PGO_MAX_COLS) {
        fail(r, "too many columns");
        t->ncols = 0;
        return;
    }
    for (uint16_t i = 0; i < t->ncols && !r->why; i++) {
        struct sl_pgo_col *c = &storage[i];
        c->kind = (char)get8(r);
        c->len = 0;
        c->val = NULL;
        switch (c->kind) {
        case 'n':
        case 'u':
            break;
        case 't':
        case 'b':
            c->len = get32(r);
            if (need(r, c->len) == 0) {
                c->val = (const char *)r->p;
                r->p += c->len;
            }
            break;
        default:
            fail(r, "unknown tuple column kind");
        }
    }
    if (r->why)
        t->ncols = 0;
}

int sl_pgo_relcol_next(const uint8_t **at, const uint8_t *end, struct sl_pgo_relcol *c)
{
    struct rd r = {*at, end, NULL};
    c->flags = get8(&r);
    c->name = getstr(&r);
    c->type_oid = get32(&r);
    c->typmod = (int32_t)get32(&r);
    if (r.why)
        return -1;
    *at = r.p;
    return 0;
}

uint32_t sl_pgo_truncate_relid(const struct sl_pgo_event *ev, uint32_t i)
{
    const uint8_t *p = ev->u.truncate.relids_at + 4 * (size_t)i;
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int sl_pgo_parse(const uint8_t *p, size_t n, struct sl_pgo_event *ev, const char **why)
{
    struct rd r = {p, p + n, NULL};
    ev->type = (enum sl_pgo_type)get8(&r);
    switch (ev->type) {
    case SL_PGO_BEGIN:
        ev->u.begin.final_lsn = get64(&r);
        ev->u.begin.commit_ts_us = (int64_t)get64(&r);
        ev->u.begin.xid = get32(&r);
        break;
    case SL_PGO_COMMIT:
        ev->u.commit.flags = get8(&r);
        ev->u.commit.commit_lsn = get64(&r);
        ev->u.commit.end_lsn = get64(&r);
        ev->u.commit.commit_ts_us = (int64_t)get64(&r);
        break;
    case SL_PGO_ORIGIN:
        ev->u.origin.lsn = get64(&r);
        ev->u.origin.name = getstr(&r);
        break;
    case SL_PGO_RELATION: {
        ev->u.relation.relid = get32(&r);
        ev->u.relation.nspname = getstr(&r);
        ev->u.relation.relname = getstr(&r);
        ev->u.relation.replident = get8(&r);
        ev->u.relation.ncols = get16(&r);
        if (ev->u.relation.ncols > SL_PGO_MAX_COLS)
            fail(&r, "too many columns");
        ev->u.relation.cols_at = r.p;
        for (uint16_t i = 0; i < ev->u.relation.ncols && !r.why; i++) {
            struct sl_pgo_relcol c;
            if (sl_pgo_relcol_next(&r.p, r.end, &c) < 0)
                fail(&r, "truncated relation column");
        }
        ev->u.relation.cols_end = r.p;
        break;
    }
    case SL_PGO_TYPE:
        ev->u.typ.oid = get32(&r);
        ev->u.typ.nspname = getstr(&r);
        ev->u.typ.typname = getstr(&r);
        break;
    case SL_PGO_INSERT:
        ev->u.change.relid = get32(&r);
        ev->u.change.old_kind = 0;
        ev->u.change.old_tup.ncols = 0;
        if (get8(&r) != 'N')
            fail(&r, "insert without a new tuple");
        tuple(&r, &ev->u.change.new_tup, ev->new_cols);
        break;
    case SL_PGO_UPDATE:
    case SL_PGO_DELETE: {
        ev->u.change.relid = get32(&r);
        ev->u.change.old_kind = 0;
        ev->u.change.old_tup.ncols = 0;
        ev->u.change.new_tup.ncols = 0;
        ev->u.change.new_tup.cols = ev->new_cols;
        ev->u.change.old_tup.cols = ev->old_cols;
        uint8_t k = get8(&r);
        if (k == 'K' || k == 'O') {
            ev->u.change.old_kind = (char)k;
            tuple(&r, &ev->u.change.old_tup, ev->old_cols);
            if (ev->type == SL_PGO_UPDATE)
                k = get8(&r);
        } else if (ev->type == SL_PGO_DELETE) {
            fail(&r, "delete without a key or old tuple");
        }
        if (ev->type == SL_PGO_UPDATE) {
            if (k != 'N')
                fail(&r, "update without a new tuple");
            tuple(&r, &ev->u.change.new_tup, ev->new_cols);
        }
        break;
    }
    case SL_PGO_TRUNCATE:
        ev->u.truncate.nrels = get32(&r);
        ev->u.truncate.options = get8(&r);
        ev->u.truncate.relids_at = r.p;
        if (ev->u.truncate.nrels > (1u << 20) || need(&r, 4 * (size_t)ev->u.truncate.nrels) < 0)
            fail(&r, "truncated relation list");
        else
            r.p += 4 * (size_t)ev->u.truncate.nrels;
        break;
    case SL_PGO_MESSAGE: /* logical decoding message: flags, lsn, prefix, length, content */
        get8(&r);
        get64(&r);
        getstr(&r);
        {
            uint32_t len = get32(&r);
            if (need(&r, len) == 0)
                r.p += len;
        }
        break;
    default:
        fail(&r, n ? "unknown message type" : "empty message");
    }
    if (!r.why && r.p != r.end)
        fail(&r, "trailing bytes after the message");
    if (why)
        *why = r.why;
    return r.why ? -1 : 0;
}

/* ---- relation cache ---- */

void sl_pgo_relcache_init(struct sl_pgo_relcache *rc)
{
    memset(rc, 0, sizeof(*rc));
}

static void rel_free(struct sl_pgo_rel *rel)
{
    if (!rel)
        return;
    for (uint16_t i = 0; rel->cols && i < rel->ncols; i++)
        free(rel->cols[i].name);
    free(rel->cols);
    free(rel->nspname);
    free(rel->relname);
    free(rel);
}

void sl_pgo_relcache_release(struct sl_pgo_relcache *rc)
{
    for (size_t i = 0; i < rc->n; i++)
        rel_free(rc->v[i]);
    free(rc->v);
    sl_pgo_relcache_init(rc);
}

struct sl_pgo_rel *sl_pgo_relcache_get(struct sl_pgo_relcache *rc, uint32_t relid)
{
    for (size_t i = 0; i < rc->n; i++)
        if (rc->v[i]->relid == relid)
            return rc->v[i];
    return NULL;
}

struct sl_pgo_rel *sl_pgo_relcache_put(struct sl_pgo_relcache *rc, const struct sl_pgo_event *ev)
{
    struct sl_pgo_rel *rel = calloc(1, sizeof(*rel));
    if (!rel)
        return NULL;
    rel->relid = ev->u.relation.relid;
    rel->nspname = strndup(ev->u.relation.nspname.s, ev->u.relation.nspname.len);
    rel->relname = strndup(ev->u.relation.relname.s, ev->u.relation.relname.len);
    rel->replident = ev->u.relation.replident;
    rel->cols = calloc(ev->u.relation.ncols ? ev->u.relation.ncols : 1, sizeof(*rel->cols));
    int ok = rel->nspname && rel->relname && rel->cols;
    const uint8_t *at = ev->u.relation.cols_at;
    for (uint16_t i = 0; ok && i < ev->u.relation.ncols; i++) {
        struct sl_pgo_relcol c;
        ok = sl_pgo_relcol_next(&at, ev->u.relation.cols_end, &c) == 0 &&
             (rel->cols[i].name = strndup(c.name.s, c.name.len)) != NULL;
        rel->ncols = (uint16_t)(i + 1);
        if (ok) {
            rel->cols[i].type_oid = c.type_oid;
            rel->cols[i].key = c.flags & 1;
        }
    }
    size_t pos = rc->n;
    for (size_t i = 0; i < rc->n; i++)
        if (rc->v[i]->relid == rel->relid)
            pos = i;
    if (ok && pos == rc->n && rc->n == rc->cap) {
        size_t nc = rc->cap ? rc->cap * 2 : 16;
        struct sl_pgo_rel **v = realloc(rc->v, nc * sizeof(*v));
        ok = v != NULL;
        if (ok) {
            rc->v = v;
            rc->cap = nc;
        }
    }
    if (!ok) {
        rel_free(rel);
        return NULL;
    }
    if (pos == rc->n)
        rc->n++;
    else
        rel_free(rc->v[pos]);
    rc->v[pos] = rel;
    return rel;
}

void sl_pgo_lsn_str(uint64_t lsn, char out[24])
{
    snprintf(out, 24, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

int sl_pgo_lsn_parse(const char *s, uint64_t *lsn)
{
    unsigned int hi, lo;
    int used = 0;
    if (!s || sscanf(s, "%X/%X%n", &hi, &lo, &used) != 2 || s[used] != 0)
        return -1;
    *lsn = ((uint64_t)hi << 32) | lo;
    return 0;
}
