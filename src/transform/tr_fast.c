/* The transform chain straight from MessagePack to MessagePack, with no jansson tree: the
 * payload's top-level map is read once into a list of (key, value bytes) entries, the chain
 * edits that list with jansson's object semantics (a set replaces a member in place or appends
 * it, a delete keeps the others' order), values it computes (masks, casts, inserted fields) are
 * encoded into the output buffer's front as scratch, and the map is then written after them and
 * moved down. Filter evaluates its condition lazily on the MessagePack (only the fields it names
 * are decoded), on the original payload or, after an edit, on the map written so far.
 *
 * It must give exactly the bytes of the reference path (decode into jansson, transform,
 * encode), so it only takes payloads that path would give back unchanged: every value in the
 * canonical encoding (smallest headers and integers, float64, valid UTF-8, no bin/ext, map keys
 * unique and free of NUL), at most MAX_FIELDS top-level fields. Anything else, and any step it
 * does not do, answers SL_TRF_OTHER and the caller runs the reference path from the start
 * (which also writes every failure message). tests/unit/test_transform_mp.c and
 * fuzz/fuzz_transform_mp.c compare the two. Pure; any thread; nothing is allocated per record
 * once out has grown. */
#include "transform/tr_int.h"

#include "formats/json_mp.h"
#include "formats/mp_jansson.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 64 /* top-level fields a payload may have on this path */
#define MAX_NESTED 32 /* members of a nested map (repeated keys are checked pairwise) */
#define MAX_DEPTH 48  /* nesting (the reference path allows 128; deeper goes there) */
#define MAX_NAME 510  /* the reference path's parent_of() truncates longer paths */

/* ---- the canonical check ---- */

static inline uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* A string of n bytes at p (after a header of h bytes): the length of the whole, or -1. */
static long str_ok(const uint8_t *p, const uint8_t *end, size_t h, uint64_t n)
{
    if ((uint64_t)(end - p) < h || (uint64_t)(end - p) - h < n)
        return -1;
    const uint8_t *s = p + h;
    uint64_t hi = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) { /* ASCII, the usual, needs no closer look */
        memcpy(&w, s + i, 8);
        hi |= w;
    }
    for (; i < n; i++)
        hi |= s[i];
    if ((hi & 0x8080808080808080ull) && !sl_utf8_valid(s, (size_t)n))
        return -1;
    return (long)(h + n);
}

static long canon(const uint8_t *p, const uint8_t *end, int depth);

/* A map key at p: canonical string, no NUL. Its length, or -1; *k and *kl get its bytes. */
static long key_ok(const uint8_t *p, const uint8_t *end, const char **k, uint32_t *kl)
{
    const uint8_t *q = p;
    if (sl_mp_type(q, end) != SL_MP_STR || canon(q, end, 0) < 0 ||
        sl_mp_read_str(&q, end, k, kl) < 0 || memchr(*k, 0, *kl))
        return -1;
    return (long)(q - p);
}

static long map_ok(const uint8_t *p, const uint8_t *end, size_t h, uint64_t n, int depth)
{
    const char *keys[MAX_NESTED];
    uint32_t lens[MAX_NESTED];
    if (n > MAX_NESTED || depth <= 0)
        return -1;
    const uint8_t *q = p + h;
    for (uint64_t i = 0; i < n; i++) {
        long l = key_ok(q, end, &keys[i], &lens[i]);
        if (l < 0)
            return -1;
        for (uint64_t j = 0; j < i; j++)
            if (lens[j] == lens[i] && !memcmp(keys[j], keys[i], lens[i]))
                return -1; /* jansson keeps one of them */
        q += l;
        if ((l = canon(q, end, depth - 1)) < 0)
            return -1;
        q += l;
    }
    return (long)(q - p);
}

static long array_ok(const uint8_t *p, const uint8_t *end, size_t h, uint64_t n, int depth)
{
    if (depth <= 0)
        return -1;
    const uint8_t *q = p + h;
    for (uint64_t i = 0; i < n; i++) {
        long l = canon(q, end, depth - 1);
        if (l < 0)
            return -1;
        q += l;
    }
    return (long)(q - p);
}

/* The length of the value at p if decoding it into jansson and encoding it again gives the same
 * bytes, else -1 (malformed, or a form that round trip changes or refuses). */
static long canon(const uint8_t *p, const uint8_t *end, int depth)
{
    if (p >= end)
        return -1;
    uint8_t c = *p;
    size_t av = (size_t)(end - p);
    if (c <= 0x7f || c >= 0xe0)
        return 1;
    if (c <= 0x8f)
        return map_ok(p, end, 1, c & 15, depth);
    if (c <= 0x9f)
        return array_ok(p, end, 1, c & 15, depth);
    if (c <= 0xbf)
        return str_ok(p, end, 1, c & 31);
    static const uint8_t size[] = {
        [0x0b] = 9, [0x0c] = 2, [0x0d] = 3, [0x0e] = 5, [0x0f] = 9, [0x10] = 2,
        [0x11] = 3, [0x12] = 5, [0x13] = 9, [0x19] = 2, [0x1a] = 3, [0x1b] = 5,
        [0x1c] = 3, [0x1d] = 5, [0x1e] = 3, [0x1f] = 5};
    if (c == 0xc0 || c == 0xc2 || c == 0xc3)
        return 1;
    size_t need = size[c - 0xc0];
    if (!need || av < need)
        return -1;
    uint64_t u = be(p + 1, (int)need - 1);
    switch (c) {
    case 0xcb: {
        double d;
        memcpy(&d, &u, 8);
        return isfinite(d) ? 9 : -1;
    }
    case 0xcc:
        return u > 0x7f ? 2 : -1;
    case 0xcd:
        return u > 0xff ? 3 : -1;
    case 0xce:
        return u > 0xffff ? 5 : -1;
    case 0xcf:
        return u > 0xffffffff && u <= INT64_MAX ? 9 : -1;
    case 0xd0:
        return (int8_t)u < -32 ? 2 : -1;
    case 0xd1:
        return (int16_t)u < INT8_MIN ? 3 : -1;
    case 0xd2:
        return (int32_t)u < INT16_MIN ? 5 : -1;
    case 0xd3:
        return (int64_t)u < INT32_MIN ? 9 : -1;
    case 0xd9:
        return u >= 32 ? str_ok(p, end, 2, u) : -1;
    case 0xda:
        return u > 0xff ? str_ok(p, end, 3, u) : -1;
    case 0xdb:
        return u > 0xffff ? str_ok(p, end, 5, u) : -1;
    case 0xdc:
        return u > 15 ? array_ok(p, end, 3, u, depth) : -1;
    case 0xdd:
        return u > 0xffff ? array_ok(p, end, 5, u, depth) : -1;
    case 0xde:
        return u > 15 ? map_ok(p, end, 3, u, depth) : -1;
    default: /* 0xdf */
        return u > 0xffff ? map_ok(p, end, 5, u, depth) : -1;
    }
}

/* ---- the plan ---- */

static int name_ok(const char *s, int dotted)
{
    return s && strlen(s) <= MAX_NAME && !(dotted && strchr(s, '.'));
}

void sl_tr_fast_release(struct tr *tr)
{
    for (size_t i = 0; i < tr->nnames; i++)
        free(tr->names[i].mp);
    free(tr->names);
    tr->names = NULL;
    tr->nnames = 0;
}

/* Appends a name (k, or k -> nk); 0 or -1 out of memory. */
static int add(struct tr *t, size_t cap, const char *k, const char *nk, char ty, int list)
{
    if (!t->names && !(t->names = calloc(cap + 1, sizeof(*t->names))))
        return -1;
    t->names[t->nnames++] = (struct tr_name){
        .k = k, .kl = strlen(k), .nk = nk, .nkl = nk ? strlen(nk) : 0, .ty = ty, .list = list};
    return 0;
}

/* Whether one transform can run here (1 yes, 0 no, -1 out of memory); its names resolved. */
static int plan_one(struct tr *t)
{
    const json_t *cfg = t->cfg;
    const char *key;
    json_t *x;
    size_t i;
    switch (t->k) {
    case T_FILTER:
        return 1;
    case T_REPLACE: { /* ReplaceField's names are member names, never paths */
        const json_t *inc = json_object_get(cfg, "include"), *exc = json_object_get(cfg, "exclude"),
                     *ren = json_object_get(cfg, "rename");
        size_t cap = json_array_size(inc) + json_array_size(exc) + json_object_size(ren);
        t->include = inc != NULL;
        json_array_foreach(inc, i,
                           x) if (add(t, cap, json_string_value(x), NULL, 0, 0) < 0) return -1;
        json_array_foreach(exc, i,
                           x) if (add(t, cap, json_string_value(x), NULL, 0, 1) < 0) return -1;
        json_object_foreach((json_t *)ren, key,
                            x) if (add(t, cap, key, json_string_value(x), 0, 2) < 0) return -1;
        return 1;
    }
    case T_MASK: {
        const json_t *f = json_object_get(cfg, "fields");
        if (!t->mask) /* a NUL mask char makes jansson's string empty */
            return 0;
        json_array_foreach(f, i, x) if (!name_ok(json_string_value(x), 1)) return 0;
        json_array_foreach(f, i, x) if (add(t, json_array_size(f), json_string_value(x), NULL, 0,
                                            0) < 0) return -1;
        return 1;
    }
    case T_CAST: {
        json_t *spec = json_object_get(cfg, "spec");
        json_object_foreach(spec, key, x) if (!name_ok(key, 1)) return 0;
        json_object_foreach(spec, key, x) if (add(t, json_object_size(spec), key, NULL,
                                                  json_string_value(x)[0], 0) < 0) return -1;
        return 1;
    }
    case T_INSERT: {
        json_t *st = json_object_get(cfg, "static");
        const char *tf =
            json_string_value(json_object_get(json_object_get(cfg, "timestamp"), "field"));
        if (json_object_get(cfg, "timestamp") && !name_ok(tf, 1))
            return 0;
        json_object_foreach(st, key, x) if (!name_ok(key, 1)) return 0;
        size_t cap = json_object_size(st) + 1;
        json_object_foreach(st, key, x)
        {
            struct sl_buf b;
            sl_buf_init(&b, 0);
            if (sl_jansson_to_mp(x, &b, 128) < 0 || b.failed || add(t, cap, key, NULL, 0, 0) < 0) {
                sl_buf_release(&b);
                return b.failed ? 0 : -1;
            }
            t->names[t->nnames - 1].mp = b.data;
            t->names[t->nnames - 1].mpl = b.len;
        }
        if (tf && add(t, cap, tf, NULL, 0, 1) < 0)
            return -1;
        return 1;
    }
    default:
        return 0;
    }
}

int sl_tr_fast_plan(struct sl_transforms *t)
{
    t->fast = 0;
    for (size_t i = 0; i < t->n; i++) {
        int ok = plan_one(&t->v[i]);
        if (ok <= 0) {
            for (size_t j = 0; j <= i; j++)
                sl_tr_fast_release(&t->v[j]);
            return ok;
        }
    }
    t->fast = 1;
    return 0;
}

/* ---- applying ---- */

/* One member: its key (in the payload or the config) and its value, in the payload (v) or at
 * offset off of the output buffer's scratch part (v NULL). */
struct ent {
    const char *k;
    size_t kl;
    const uint8_t *v;
    size_t off, vl;
};

struct st {
    struct ent e[MAX_FIELDS + 1];
    size_t n;
    int edited;
    struct sl_buf *out; /* [0, out->len): scratch values */
};

static inline int same(const char *a, size_t al, const char *b, size_t bl)
{
    return al == bl && (!al || (a[0] == b[0] && !memcmp(a, b, al)));
}

static long find(const struct st *s, const char *k, size_t kl)
{
    for (size_t i = 0; i < s->n; i++)
        if (same(s->e[i].k, s->e[i].kl, k, kl))
            return (long)i;
    return -1;
}

static void del(struct st *s, size_t i)
{
    memmove(&s->e[i], &s->e[i + 1], (s->n - i - 1) * sizeof(s->e[0]));
    s->n--;
    s->edited = 1;
}

/* json_object_set: in place if k is there, else appended. -1 if the map would be too large. */
static int set(struct st *s, const char *k, size_t kl, const struct ent *val)
{
    long i = find(s, k, kl);
    if (i < 0) {
        if (s->n == MAX_FIELDS)
            return -1;
        i = (long)s->n++;
    }
    s->e[i] = *val;
    s->e[i].k = k;
    s->e[i].kl = kl;
    s->edited = 1;
    return 0;
}

/* The value of e as bytes (scratch values live in out). */
static const uint8_t *bytes(const struct st *s, const struct ent *e)
{
    return e->v ? e->v : s->out->data + e->off;
}

/* Writes the map at out->len; its length. -1 if out failed. */
static long emit(struct st *s)
{
    struct sl_buf *out = s->out;
    size_t need = 5;
    for (size_t i = 0; i < s->n; i++)
        need += 5 + s->e[i].kl + s->e[i].vl;
    if (sl_buf_reserve(out, need) < 0) /* no reallocation below: scratch values stay put */
        return -1;
    uint8_t *o = out->data + out->len, *start = o;
    if (s->n <= 15) {
        *o++ = (uint8_t)(0x80 | s->n);
    } else {
        *o++ = 0xde;
        *o++ = (uint8_t)(s->n >> 8);
        *o++ = (uint8_t)s->n;
    }
    for (size_t i = 0; i < s->n; i++) {
        const struct ent *e = &s->e[i];
        o += sl_mp_enc_str_head(o, e->kl);
        memcpy(o, e->k, e->kl);
        o += e->kl;
        memcpy(o, bytes(s, e), e->vl);
        o += e->vl;
    }
    out->len += (size_t)(o - start);
    return (long)(o - start);
}

static int mask(struct st *s, const struct tr *t)
{
    for (size_t i = 0; i < t->nnames; i++) {
        long at = find(s, t->names[i].k, t->names[i].kl);
        if (at < 0)
            continue;
        const struct ent *e = &s->e[at];
        const uint8_t *v = bytes(s, e);
        if (*v == 0xc0)
            continue;
        size_t n = 8;
        if (sl_mp_type(v, v + e->vl) == SL_MP_STR) {
            const char *str;
            uint32_t l;
            if (sl_mp_read_str(&v, v + e->vl, &str, &l) < 0)
                return -1;
            n = l;
        }
        if (sl_buf_reserve(s->out, 5 + n) < 0)
            return -1;
        struct ent nv = {.off = s->out->len};
        uint8_t *o = s->out->data + s->out->len;
        size_t h = sl_mp_enc_str_head(o, n);
        memset(o + h, t->mask, n);
        s->out->len += h + n;
        nv.vl = h + n;
        set(s, e->k, e->kl, &nv);
    }
    return 0;
}

static int replace(struct st *s, const struct tr *t)
{
    size_t i = 0;
    if (t->include) { /* a new map of those members, in that order */
        struct ent old[MAX_FIELDS];
        size_t n = s->n;
        memcpy(old, s->e, n * sizeof(old[0]));
        s->n = 0;
        for (; i < t->nnames && t->names[i].list == 0; i++)
            for (size_t j = 0; j < n; j++)
                if (same(old[j].k, old[j].kl, t->names[i].k, t->names[i].kl)) {
                    set(s, old[j].k, old[j].kl, &old[j]);
                    break;
                }
        s->edited = 1;
    }
    for (; i < t->nnames; i++) {
        const struct tr_name *nm = &t->names[i];
        long at = find(s, nm->k, nm->kl);
        if (at < 0)
            continue;
        struct ent e = s->e[at];
        del(s, (size_t)at);
        if (nm->list == 2 && set(s, nm->nk, nm->nkl, &e) < 0) /* rename */
            return -1;
    }
    return 0;
}

static int insert(struct st *s, const struct tr *t, const struct sl_expr_rec *r)
{
    for (size_t i = 0; i < t->nnames; i++) {
        const struct tr_name *nm = &t->names[i];
        struct ent e = {.v = nm->mp, .vl = nm->mpl};
        if (nm->list == 1) { /* timestamp */
            e.off = s->out->len;
            if (sl_mp_write_int(s->out, (int64_t)(json_int_t)r->timestamp_ms) < 0)
                return -1;
            e.vl = s->out->len - e.off;
        }
        if (set(s, nm->k, nm->kl, &e) < 0)
            return -1;
    }
    return 0;
}

/* Cast of member at to ty ('i'nt64, 'f'loat64, 's'tring, 'b'oolean). */
static int cast_one(struct st *s, size_t at, const char *key, char ty)
{
    const struct ent *e = &s->e[at];
    const uint8_t *v = bytes(s, e), *end = v + e->vl;
    int type = sl_mp_type(v, end);
    if (type == SL_MP_NIL || (type == SL_MP_STR && ty == 's') || (type == SL_MP_INT && ty == 'i') ||
        (type == SL_MP_BOOL && ty == 'b') || (type == SL_MP_FLOAT && ty == 'f'))
        return 0; /* stays as it is (a float64 cast to float64 is the same double) */
    struct ent nv = {.off = s->out->len};
    int64_t i;
    if (type == SL_MP_INT && ty == 's' && sl_mp_read_int(&v, end, &i) == 0) {
        char num[24], *d = num + sizeof(num); /* json_dumps() of an integer: %lld */
        uint64_t u = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
        do
            *--d = (char)('0' + u % 10);
        while (u /= 10);
        if (i < 0)
            *--d = '-';
        if (sl_mp_write_str(s->out, d, (size_t)(num + sizeof(num) - d)) < 0)
            return -1;
    } else { /* the rest as the reference path does it, on this one value */
        static const char *const tys[] = {"boolean", "float64", "int64", "string"};
        const char *tyname = tys[ty == 'b' ? 0 : ty == 'f' ? 1 : ty == 'i' ? 2 : 3];
        json_t *x = sl_mp_to_jansson(&v, end, 128), *o = NULL;
        char why[8];
        int rc = x ? sl_tr_cast_value(x, key, tyname, &o, why, sizeof(why)) : -1;
        json_decref(x);
        if (rc < 0) /* the reference path writes the message */
            return -1;
        if (!o)
            return 0;
        rc = sl_jansson_to_mp(o, s->out, 128);
        json_decref(o);
        if (rc < 0)
            return -1;
    }
    nv.vl = s->out->len - nv.off;
    return set(s, s->e[at].k, s->e[at].kl, &nv);
}

static int cast(struct st *s, const struct tr *t)
{
    for (size_t i = 0; i < t->nnames; i++) {
        long at = find(s, t->names[i].k, t->names[i].kl);
        if (at >= 0 && cast_one(s, (size_t)at, t->names[i].k, t->names[i].ty) < 0)
            return -1;
    }
    return 0;
}

/* The Filter's verdict: 1 keep, 0 drop, -1 could not tell. */
static int filter(struct st *s, const struct tr *t, const uint8_t *mp, size_t len,
                  const struct sl_expr_rec *r)
{
    struct sl_expr_rec er = *r;
    er.value = NULL;
    er.mp = mp;
    er.mp_len = len;
    size_t mark = s->out->len;
    if (s->edited) { /* the map as it is now, after the scratch values, then forgotten */
        long l = emit(s);
        if (l < 0)
            return -1;
        er.mp = s->out->data + mark;
        er.mp_len = (size_t)l;
    }
    int m = sl_expr_match(t->cond, &er) == t->keep;
    s->out->len = mark;
    return m;
}

/* A top-level key at *p: a string with no NUL, valid UTF-8. 0 (advanced past it) or -1. */
static int read_key(const uint8_t **p, const uint8_t *end, const char **k, size_t *kl)
{
    const uint8_t *q = *p;
    uint32_t n;
    if (q < end && *q >= 0xa0 && *q <= 0xbf) {
        n = *q & 31u;
        if ((size_t)(end - q) <= n)
            return -1;
        *k = (const char *)q + 1;
        q += 1 + n;
    } else if (sl_mp_read_str(&q, end, k, &n) < 0) {
        return -1;
    }
    int hi = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)(*k)[i];
        if (!c)
            return -1;
        hi |= c & 0x80;
    }
    if (hi && !sl_utf8_valid((const uint8_t *)*k, n))
        return -1;
    *kl = n;
    *p = q;
    return 0;
}

enum sl_tr_fast sl_tr_fast_apply(const struct sl_transforms *t, const uint8_t *mp, size_t len,
                                 const struct sl_expr_rec *r, struct sl_buf *out)
{
    struct st s;
    s.n = 0;
    s.edited = 0;
    s.out = out;
    sl_buf_reset(out);
    const uint8_t *p = mp, *end = mp + len;
    uint32_t n;
    if (!len || sl_mp_read_map(&p, end, &n) < 0 || n > MAX_FIELDS)
        return SL_TRF_OTHER; /* (the map's own header need not be canonical: it is rewritten) */
    for (uint32_t i = 0; i < n; i++) {
        struct ent *e = &s.e[i];
        const char *k;
        size_t kl;
        if (read_key(&p, end, &k, &kl) < 0 ||
            find(&s, k, kl) >= 0) /* repeated: jansson keeps one */
            return SL_TRF_OTHER;
        long vl = canon(p, end, MAX_DEPTH - 1);
        if (vl < 0)
            return SL_TRF_OTHER;
        *e = (struct ent){.k = k, .kl = kl, .v = p, .vl = (size_t)vl};
        s.n++;
        p += vl;
    }
    if (p != end)
        return SL_TRF_OTHER; /* bytes after the map: the reference path ignores them */
    for (size_t i = 0; i < t->n; i++) {
        const struct tr *tr = &t->v[i];
        int rc = 0;
        switch (tr->k) {
        case T_FILTER:
            rc = filter(&s, tr, mp, len, r);
            if (rc == 0)
                return SL_TRF_DROP;
            break;
        case T_MASK:
            rc = mask(&s, tr);
            break;
        case T_REPLACE:
            rc = replace(&s, tr);
            break;
        case T_INSERT:
            rc = insert(&s, tr, r);
            break;
        case T_CAST:
            rc = cast(&s, tr);
            break;
        default:
            return SL_TRF_OTHER;
        }
        if (rc < 0)
            return SL_TRF_OTHER;
    }
    size_t mark = out->len;
    long l = emit(&s);
    if (l < 0)
        return SL_TRF_OTHER;
    memmove(out->data, out->data + mark, (size_t)l);
    out->len = (size_t)l;
    return SL_TRF_KEEP;
}
