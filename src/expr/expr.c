#include "expr/expr.h"

#include "formats/json_mp.h"
#include "formats/mp_jansson.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_NODES 4096

enum nk {
    N_LIT,  /* lit */
    N_PATH, /* value path: segs */
    N_META, /* meta */
    N_NOT,
    N_AND,
    N_OR,
    N_CMP, /* op */
    N_IN,
    N_LIST,
    N_CALL, /* fn */
};

enum { M_SOURCE, M_SEQ, M_TS, M_FLAGS, M_STRAND, M_KEY };
enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };
enum { F_EXISTS, F_STARTS, F_ENDS, F_CONTAINS, F_LOWER, F_UPPER, F_LENGTH };

static const struct {
    const char *name;
    int args;
} g_fns[] = {{"exists", 1}, {"starts_with", 2}, {"ends_with", 2}, {"contains", 2},
             {"lower", 1},  {"upper", 1},       {"length", 1}};

struct seg {
    char *key;   /* object member, or NULL */
    size_t kl;   /* strlen(key) */
    long long i; /* array index when key is NULL */
};

struct node {
    enum nk k;
    int op;
    json_t *lit;
    struct seg *segs;
    size_t nsegs;
    struct node **kids;
    size_t nkids;
};

struct sl_expr {
    struct node *root;
};

/* ---- the parser ---- */

struct ps {
    const char *s;
    size_t len, pos;
    char *err;
    size_t errlen;
    int failed, depth;
    size_t nodes;
};

static void fail(struct ps *p, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct ps *p, size_t at, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    int n = snprintf(p->err, p->errlen, "column %zu: ", at + 1);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < p->errlen)
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static void node_free(struct node *n)
{
    if (!n)
        return;
    json_decref(n->lit);
    for (size_t i = 0; i < n->nsegs; i++)
        free(n->segs[i].key);
    free(n->segs);
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    free(n);
}

static struct node *mk(struct ps *p, enum nk k)
{
    if (++p->nodes > MAX_NODES) {
        fail(p, p->pos, "expression too large (more than %d parts)", MAX_NODES);
        return NULL;
    }
    struct node *n = calloc(1, sizeof(*n));
    if (!n)
        fail(p, p->pos, "out of memory");
    else
        n->k = k;
    return n;
}

static int add_kid(struct ps *p, struct node *n, struct node *kid)
{
    struct node **k = realloc(n->kids, (n->nkids + 1) * sizeof(*k));
    if (!k) {
        node_free(kid);
        fail(p, p->pos, "out of memory");
        return -1;
    }
    n->kids = k;
    n->kids[n->nkids++] = kid;
    return 0;
}

static void skip_ws(struct ps *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static int peek(struct ps *p, const char *tok)
{
    skip_ws(p);
    size_t n = strlen(tok);
    return p->len - p->pos >= n && memcmp(p->s + p->pos, tok, n) == 0;
}

static int eat(struct ps *p, const char *tok)
{
    if (!peek(p, tok))
        return 0;
    p->pos += strlen(tok);
    return 1;
}

static int ident_char(char c, int first)
{
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (!first && c >= '0' && c <= '9');
}

/* An identifier at pos (no whitespace skipped), copied into out. Its length, 0 if none. */
static size_t ident(struct ps *p, char *out, size_t cap)
{
    size_t n = 0;
    while (p->pos + n < p->len && ident_char(p->s[p->pos + n], n == 0))
        n++;
    if (n == 0 || n >= cap)
        return n >= cap ? (fail(p, p->pos, "a name longer than %zu characters", cap - 1), 0) : 0;
    memcpy(out, p->s + p->pos, n);
    out[n] = 0;
    p->pos += n;
    return n;
}

/* A quoted string at pos (" or '), with JSON's escapes. */
static char *string_lit(struct ps *p, size_t *outlen)
{
    char q = p->s[p->pos];
    size_t start = p->pos++;
    char *out = malloc(p->len - p->pos + 1);
    size_t n = 0;
    if (!out) {
        fail(p, start, "out of memory");
        return NULL;
    }
    while (p->pos < p->len && p->s[p->pos] != q) {
        char c = p->s[p->pos++];
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        if (p->pos >= p->len)
            break;
        c = p->s[p->pos++];
        switch (c) {
        case 'n':
            out[n++] = '\n';
            break;
        case 't':
            out[n++] = '\t';
            break;
        case 'r':
            out[n++] = '\r';
            break;
        case '\\':
        case '"':
        case '\'':
        case '/':
            out[n++] = c;
            break;
        default:
            fail(p, p->pos - 2, "unknown escape \\%c in a string", c);
            free(out);
            return NULL;
        }
    }
    if (p->pos >= p->len) {
        fail(p, start, "unterminated string (it starts here)");
        free(out);
        return NULL;
    }
    p->pos++;
    out[n] = 0;
    *outlen = n;
    return out;
}

static json_t *number_lit(struct ps *p)
{
    size_t start = p->pos, n = 0;
    int real = 0;
    if (p->s[p->pos + n] == '-')
        n++;
    while (p->pos + n < p->len) {
        char c = p->s[p->pos + n];
        if (c >= '0' && c <= '9')
            n++;
        else if (c == '.' || c == 'e' || c == 'E' ||
                 ((c == '+' || c == '-') &&
                  (p->s[p->pos + n - 1] == 'e' || p->s[p->pos + n - 1] == 'E'))) {
            real = 1;
            n++;
        } else {
            break;
        }
    }
    char buf[64];
    if (n >= sizeof(buf)) {
        fail(p, start, "a number of more than 63 characters");
        return NULL;
    }
    memcpy(buf, p->s + start, n);
    buf[n] = 0;
    char *end;
    errno = 0;
    json_t *v = NULL;
    if (real) {
        double d = strtod(buf, &end);
        if (*end || errno || !isfinite(d))
            fail(p, start, "not a number: %s", buf);
        else
            v = json_real(d);
    } else {
        long long i = strtoll(buf, &end, 10);
        if (*end || errno)
            fail(p, start, "not an integer of 64 bits: %s", buf);
        else
            v = json_integer(i);
    }
    p->pos += n;
    return v;
}

static struct node *parse_or(struct ps *p);

/* value.a.b[2]["x y"] : the segments after `value` */
static struct node *path(struct ps *p)
{
    struct node *n = mk(p, N_PATH);
    if (!n)
        return NULL;
    for (;;) {
        struct seg s = {0};
        size_t at = p->pos;
        if (p->pos < p->len && p->s[p->pos] == '.') {
            p->pos++;
            char name[256];
            if (!ident(p, name, sizeof(name))) {
                fail(p, at + 1, "expected a field name after '.'");
                break;
            }
            s.key = strdup(name);
        } else if (p->pos < p->len && p->s[p->pos] == '[') {
            p->pos++;
            skip_ws(p);
            if (p->pos < p->len && (p->s[p->pos] == '"' || p->s[p->pos] == '\'')) {
                size_t l;
                s.key = string_lit(p, &l);
                if (!s.key)
                    break;
            } else {
                json_t *i = p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9'
                                ? number_lit(p)
                                : NULL;
                if (!json_is_integer(i)) {
                    json_decref(i);
                    fail(p, at + 1, "expected an index or a quoted key inside [ ]");
                    break;
                }
                s.i = json_integer_value(i);
                json_decref(i);
            }
            if (!eat(p, "]")) {
                free(s.key);
                fail(p, p->pos, "expected ']'");
                break;
            }
        } else {
            return n;
        }
        struct seg *v = realloc(n->segs, (n->nsegs + 1) * sizeof(*v));
        if (!v) {
            free(s.key);
            fail(p, at, "out of memory");
            break;
        }
        n->segs = v;
        s.kl = s.key ? strlen(s.key) : 0;
        n->segs[n->nsegs++] = s;
    }
    node_free(n);
    return NULL;
}

static struct node *primary(struct ps *p)
{
    skip_ws(p);
    size_t at = p->pos;
    if (p->pos >= p->len) {
        fail(p, at, "expected a value, a field or '(' (the expression ends here)");
        return NULL;
    }
    char c = p->s[p->pos];
    if (c == '(') {
        p->pos++;
        struct node *n = parse_or(p);
        if (n && !eat(p, ")")) {
            fail(p, p->pos, "expected ')' (to close the '(' at column %zu)", at + 1);
            node_free(n);
            return NULL;
        }
        return n;
    }
    if (c == '[') {
        p->pos++;
        struct node *n = mk(p, N_LIST);
        if (!n)
            return NULL;
        if (eat(p, "]"))
            return n;
        do {
            struct node *k = parse_or(p);
            if (!k || add_kid(p, n, k) < 0) {
                node_free(n);
                return NULL;
            }
        } while (eat(p, ","));
        if (!eat(p, "]")) {
            fail(p, p->pos, "expected ',' or ']' in the list");
            node_free(n);
            return NULL;
        }
        return n;
    }
    if (c == '"' || c == '\'') {
        size_t l;
        char *s = string_lit(p, &l);
        struct node *n = s ? mk(p, N_LIT) : NULL;
        if (n)
            n->lit = json_stringn_nocheck(s, l);
        free(s);
        return n;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        json_t *v = number_lit(p);
        struct node *n = v ? mk(p, N_LIT) : NULL;
        if (n)
            n->lit = v;
        else
            json_decref(v);
        return n;
    }
    char name[256];
    if (!ident(p, name, sizeof(name))) {
        fail(p, at, "unexpected '%c'", c);
        return NULL;
    }
    if (!strcmp(name, "true") || !strcmp(name, "false") || !strcmp(name, "null")) {
        struct node *n = mk(p, N_LIT);
        if (n)
            n->lit = name[0] == 't' ? json_true() : name[0] == 'f' ? json_false() : json_null();
        return n;
    }
    if (!strcmp(name, "value"))
        return path(p);
    static const char *const meta[] = {"source", "seq", "timestamp_ms", "flags", "strand", "key"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(name, meta[i])) {
            if (i == M_KEY && p->pos < p->len && (p->s[p->pos] == '.' || p->s[p->pos] == '[')) {
                struct node *n = path(p); /* key.x: records carry no key: null */
                if (n)
                    n->op = 1;
                return n;
            }
            struct node *n = mk(p, N_META);
            if (n)
                n->op = i;
            return n;
        }
    for (size_t f = 0; f < sizeof(g_fns) / sizeof(g_fns[0]); f++) {
        if (strcmp(name, g_fns[f].name) != 0)
            continue;
        if (!eat(p, "(")) {
            fail(p, p->pos, "expected '(' after %s", name);
            return NULL;
        }
        struct node *n = mk(p, N_CALL);
        if (!n)
            return NULL;
        n->op = (int)f;
        if (!eat(p, ")")) {
            do {
                struct node *k = parse_or(p);
                if (!k || add_kid(p, n, k) < 0) {
                    node_free(n);
                    return NULL;
                }
            } while (eat(p, ","));
            if (!eat(p, ")")) {
                fail(p, p->pos, "expected ',' or ')' in the call of %s", name);
                node_free(n);
                return NULL;
            }
        }
        if ((int)n->nkids != g_fns[f].args) {
            fail(p, at, "%s takes %d argument%s, not %zu", name, g_fns[f].args,
                 g_fns[f].args == 1 ? "" : "s", n->nkids);
            node_free(n);
            return NULL;
        }
        if (f == F_EXISTS && n->kids[0]->k != N_PATH) {
            fail(p, at, "exists() takes a field path (value.x)");
            node_free(n);
            return NULL;
        }
        return n;
    }
    fail(p, at,
         "unknown name '%s' (fields are value.<path>; metadata: source, seq, timestamp_ms, "
         "flags, strand; functions: exists, starts_with, ends_with, contains, lower, upper, "
         "length)",
         name);
    return NULL;
}

static struct node *cmp(struct ps *p)
{
    struct node *l = primary(p);
    if (!l)
        return NULL;
    static const char *const ops[] = {"==", "!=", "<=", ">=", "<", ">"};
    static const int codes[] = {OP_EQ, OP_NE, OP_LE, OP_GE, OP_LT, OP_GT};
    for (int i = 0; i < 6; i++) {
        if (!eat(p, ops[i]))
            continue;
        struct node *r = primary(p), *n = r ? mk(p, N_CMP) : NULL;
        if (!n) {
            node_free(l);
            node_free(r);
            return NULL;
        }
        n->op = codes[i];
        if (add_kid(p, n, l) < 0 || add_kid(p, n, r) < 0) {
            node_free(n);
            return NULL;
        }
        return n;
    }
    skip_ws(p);
    if (p->len - p->pos >= 2 && !memcmp(p->s + p->pos, "in", 2) &&
        !(p->pos + 2 < p->len && ident_char(p->s[p->pos + 2], 0))) {
        p->pos += 2;
        skip_ws(p);
        size_t at = p->pos;
        struct node *r = primary(p), *n = NULL;
        if (r && r->k != N_LIST && !(r->k == N_PATH || r->k == N_META)) {
            fail(p, at, "'in' takes a list [a, b, ...] or a field holding one");
            node_free(r);
            r = NULL;
        }
        if (r)
            n = mk(p, N_IN);
        if (!n) {
            node_free(l);
            node_free(r);
            return NULL;
        }
        if (add_kid(p, n, l) < 0 || add_kid(p, n, r) < 0) {
            node_free(n);
            return NULL;
        }
        return n;
    }
    if (peek(p, "=") && !peek(p, "==")) {
        fail(p, p->pos, "'=' is not an operator: compare with '=='");
        node_free(l);
        return NULL;
    }
    return l;
}

static struct node *parse_not(struct ps *p)
{
    if (peek(p, "!") && !peek(p, "!=")) {
        p->pos++;
        if (++p->depth > MAX_DEPTH) {
            fail(p, p->pos, "nested deeper than %d", MAX_DEPTH);
            return NULL;
        }
        struct node *k = parse_not(p), *n = k ? mk(p, N_NOT) : NULL;
        p->depth--;
        if (!n || add_kid(p, n, k) < 0) {
            node_free(n ? NULL : k);
            node_free(n);
            return NULL;
        }
        return n;
    }
    return cmp(p);
}

static struct node *chain(struct ps *p, const char *tok, enum nk k,
                          struct node *(*sub)(struct ps *))
{
    struct node *l = sub(p);
    if (!l || !peek(p, tok))
        return l;
    struct node *n = mk(p, k);
    if (!n || add_kid(p, n, l) < 0) {
        node_free(n ? NULL : l);
        node_free(n);
        return NULL;
    }
    while (eat(p, tok)) {
        struct node *r = sub(p);
        if (!r || add_kid(p, n, r) < 0) {
            node_free(n);
            return NULL;
        }
    }
    return n;
}

static struct node *parse_and(struct ps *p)
{
    return chain(p, "&&", N_AND, parse_not);
}

static struct node *parse_or(struct ps *p)
{
    if (++p->depth > MAX_DEPTH) {
        fail(p, p->pos, "nested deeper than %d", MAX_DEPTH);
        return NULL;
    }
    struct node *n = chain(p, "||", N_OR, parse_and);
    p->depth--;
    return n;
}

struct sl_expr *sl_expr_compile(const char *text, size_t len, char *err, size_t errlen)
{
    struct ps p = {.s = text, .len = len, .err = err, .errlen = errlen};
    err[0] = 0;
    if (memchr(text, 0, len)) {
        snprintf(err, errlen, "column %zu: a NUL byte",
                 (size_t)((const char *)memchr(text, 0, len) - text) + 1);
        return NULL;
    }
    struct node *root = parse_or(&p);
    skip_ws(&p);
    if (root && p.pos < p.len)
        fail(&p, p.pos, "unexpected '%c' (an operator missing before it?)", p.s[p.pos]);
    if (p.failed) {
        node_free(root);
        return NULL;
    }
    struct sl_expr *e = calloc(1, sizeof(*e));
    if (!e) {
        node_free(root);
        snprintf(err, errlen, "column 1: out of memory");
        return NULL;
    }
    e->root = root;
    return e;
}

void sl_expr_free(struct sl_expr *e)
{
    if (e) {
        node_free(e->root);
        free(e);
    }
}

/* ---- evaluation ---- */

static json_t *eval(const struct node *n, const struct sl_expr_rec *r);

/* The length of the value at p when that is quick to tell (scalars), else sl_mp_skip's. */
static inline long skip_value(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = *p;
    size_t av = (size_t)(end - p), n;
    if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
        n = 1;
    else if (c >= 0xa0 && c <= 0xbf)
        n = 1 + (c & 31u);
    else if (c >= 0xcc && c <= 0xd3)
        n = 1 + (1u << (c & 3));
    else if (c == 0xca || c == 0xcb)
        n = c == 0xca ? 5 : 9;
    else if (c == 0xd9 && av >= 2)
        n = 2 + (size_t)p[1];
    else
        return sl_mp_skip(p, av, 128);
    return n <= av ? (long)n : -1;
}

/* Where the value at path n starts in a MessagePack payload, or NULL if absent (or the
 * payload is malformed on the way). */
static const uint8_t *find_mp(const struct node *n, const uint8_t *p, const uint8_t *end)
{
    for (size_t i = 0; i < n->nsegs; i++) {
        const struct seg *s = &n->segs[i];
        uint32_t cnt, j;
        if (s->key) {
            if (p < end && *p >= 0x80 && *p <= 0x8f) /* a fixmap, the usual */
                cnt = *p++ & 15u;
            else if (sl_mp_read_map(&p, end, &cnt) < 0)
                return NULL;
            for (j = 0; j < cnt; j++) {
                const char *k;
                uint32_t l;
                if (p < end && *p >= 0xa0 && *p <= 0xbf) { /* a fixstr key, the usual */
                    l = *p & 31u;
                    k = (const char *)p + 1;
                    if ((size_t)(end - p) <= l)
                        return NULL;
                    p += 1 + l;
                } else if (sl_mp_read_str(&p, end, &k, &l) < 0) {
                    return NULL;
                }
                if (l == s->kl && memcmp(k, s->key, l) == 0)
                    break;
                long skip = p < end ? skip_value(p, end) : -1;
                if (skip < 0)
                    return NULL;
                p += skip;
            }
        } else {
            if (sl_mp_read_array(&p, end, &cnt) < 0 || s->i < 0 || (uint64_t)s->i >= cnt)
                return NULL;
            for (j = 0; j < (uint32_t)s->i; j++) {
                long skip = sl_mp_skip(p, (size_t)(end - p), 128);
                if (skip < 0)
                    return NULL;
                p += skip;
            }
        }
        if (j == cnt)
            return NULL;
    }
    return p;
}

/* The value at path n in a MessagePack payload (a new reference), or NULL if absent. */
static json_t *walk_mp(const struct node *n, const uint8_t *p, const uint8_t *end)
{
    p = find_mp(n, p, end);
    return p ? sl_mp_to_jansson(&p, end, 128) : NULL;
}

/* The value at path n of the record (a new reference), or NULL if absent. */
static json_t *walk(const struct node *n, const struct sl_expr_rec *r)
{
    if (n->op) /* key.x */
        return NULL;
    if (!r->value && r->mp)
        return walk_mp(n, r->mp, r->mp + r->mp_len);
    const json_t *v = r->value;
    for (size_t i = 0; v && i < n->nsegs; i++) {
        const struct seg *s = &n->segs[i];
        if (s->key)
            v = json_is_object(v) ? json_object_get(v, s->key) : NULL;
        else
            v = json_is_array(v) && s->i >= 0 ? json_array_get(v, (size_t)s->i) : NULL;
    }
    return v ? json_incref((json_t *)v) : NULL; /* shared, never changed */
}

static int truthy(const json_t *v)
{
    return json_is_true(v);
}

/* -2 if unordered (different types, or not comparable), else -1/0/1. */
static int compare(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            json_int_t x = json_integer_value(a), y = json_integer_value(b);
            return x < y ? -1 : x > y;
        }
        long double x =
            json_is_integer(a) ? (long double)json_integer_value(a) : json_real_value(a);
        long double y =
            json_is_integer(b) ? (long double)json_integer_value(b) : json_real_value(b);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        return c ? (c < 0 ? -1 : 1) : la < lb ? -1 : la > lb;
    }
    if (json_is_boolean(a) && json_is_boolean(b))
        return json_is_true(a) == json_is_true(b) ? 0 : -2;
    if ((json_is_null(a) || !a) && (json_is_null(b) || !b))
        return 0;
    if ((json_is_object(a) && json_is_object(b)) || (json_is_array(a) && json_is_array(b)))
        return json_equal(a, b) ? 0 : -2;
    return -2;
}

/* A value as eval() would give it, without jansson for scalars: comparisons of fields with
 * literals (the common filter and query) then allocate nothing per record. Strings point into
 * the payload, the record or the literal. SV_JSON holds a reference (sv_release). */
enum { SV_NULL, SV_BOOL, SV_INT, SV_REAL, SV_STR, SV_JSON };

struct sv {
    int t;
    int64_t i; /* SV_BOOL, SV_INT */
    double d;
    const char *s;
    size_t n;
    json_t *j;
};

static void sv_json(struct sv *v, json_t *j) /* takes j */
{
    v->t = SV_JSON;
    v->j = j;
}

/* The scalar at p of a MessagePack payload as sl_mp_to_jansson would decode it. 0, or -1 if it
 * would not decode (v is then null); containers and the rest are decoded (SV_JSON). */
static int sv_mp(struct sv *v, const uint8_t *p, const uint8_t *end)
{
    v->t = SV_NULL;
    if (p < end && (*p <= 0x7f || *p >= 0xe0)) { /* a fixint, the usual */
        v->t = SV_INT;
        v->i = (int8_t)*p;
        return 0;
    }
    const uint8_t *q = p;
    switch (sl_mp_type(p, end)) {
    case SL_MP_NIL:
        return sl_mp_read_nil(&q, end);
    case SL_MP_BOOL: {
        int b;
        if (sl_mp_read_bool(&q, end, &b) < 0)
            return -1;
        v->t = SV_BOOL;
        v->i = b;
        return 0;
    }
    case SL_MP_INT:
        if (sl_mp_read_int(&q, end, &v->i) == 0) {
            v->t = SV_INT;
            return 0;
        }
        if (sl_mp_read_double(&q, end, &v->d) < 0) /* a uint64 above INT64_MAX */
            return -1;
        v->t = SV_REAL;
        return 0;
    case SL_MP_FLOAT:
        if (sl_mp_read_double(&q, end, &v->d) < 0 || !isfinite(v->d))
            return -1;
        v->t = SV_REAL;
        return 0;
    case SL_MP_STR: {
        const char *str;
        uint32_t n;
        if (sl_mp_read_str(&q, end, &str, &n) < 0 || !sl_utf8_valid((const uint8_t *)str, n))
            return -1;
        v->t = SV_STR;
        v->s = str;
        v->n = n;
        return 0;
    }
    default: {
        json_t *j = sl_mp_to_jansson(&q, end, 128);
        if (!j)
            return -1;
        sv_json(v, j);
        return 0;
    }
    }
}

/* A jansson value as an sv (strings borrowed; containers referenced). */
static void sv_of_json(struct sv *v, const json_t *j)
{
    v->t = SV_NULL;
    switch (json_typeof(j)) {
    case JSON_TRUE:
    case JSON_FALSE:
        v->t = SV_BOOL;
        v->i = json_is_true(j);
        break;
    case JSON_INTEGER:
        v->t = SV_INT;
        v->i = json_integer_value(j);
        break;
    case JSON_REAL:
        v->t = SV_REAL;
        v->d = json_real_value(j);
        break;
    case JSON_STRING:
        v->t = SV_STR;
        v->s = json_string_value(j);
        v->n = json_string_length(j);
        break;
    case JSON_OBJECT:
    case JSON_ARRAY:
        sv_json(v, json_incref((json_t *)j));
        break;
    default:
        break;
    }
}

/* The value of n on r as an sv; for a path, -1 if it is absent (v is then null). */
static int sv_eval(const struct node *n, const struct sl_expr_rec *r, struct sv *v)
{
    v->t = SV_NULL;
    switch (n->k) {
    case N_LIT:
        sv_of_json(v, n->lit);
        return 0;
    case N_PATH:
        if (n->op)
            return -1;
        if (!r->value && r->mp) {
            const uint8_t *p = find_mp(n, r->mp, r->mp + r->mp_len);
            return p ? sv_mp(v, p, r->mp + r->mp_len) : -1;
        } else {
            json_t *j = walk(n, r);
            if (!j)
                return -1;
            sv_of_json(v, j);
            json_decref(j); /* r->value holds it */
            return 0;
        }
    case N_META:
        switch (n->op) {
        case M_SOURCE:
            if (r->source) {
                v->t = SV_STR;
                v->s = r->source;
                v->n = r->source_len;
            }
            return 0;
        case M_SEQ:
        case M_TS:
        case M_FLAGS:
            v->t = SV_INT;
            v->i = n->op == M_SEQ  ? (json_int_t)r->seq
                   : n->op == M_TS ? (json_int_t)r->timestamp_ms
                                   : (json_int_t)r->flags;
            return 0;
        default:
            break;
        }
        break;
    default:
        break;
    }
    json_t *j = eval(n, r);
    if (j)
        sv_json(v, j);
    return 0;
}

static void sv_release(struct sv *v)
{
    if (v->t == SV_JSON)
        json_decref(v->j);
}

/* v as a new jansson reference. */
static json_t *sv_to_json(const struct sv *v)
{
    switch (v->t) {
    case SV_BOOL:
        return json_boolean(v->i);
    case SV_INT:
        return json_integer((json_int_t)v->i);
    case SV_REAL:
        return json_real(v->d);
    case SV_STR:
        return json_stringn_nocheck(v->s, v->n);
    case SV_JSON:
        return json_incref(v->j);
    default:
        return json_null();
    }
}

/* compare() on svs. */
static int sv_compare(const struct sv *a, const struct sv *b)
{
    if (a->t == SV_JSON || b->t == SV_JSON) {
        json_t *x = sv_to_json(a), *y = sv_to_json(b);
        int c = compare(x, y);
        json_decref(x);
        json_decref(y);
        return c;
    }
    int an = a->t == SV_INT || a->t == SV_REAL, bn = b->t == SV_INT || b->t == SV_REAL;
    if (an && bn) {
        if (a->t == SV_INT && b->t == SV_INT)
            return a->i < b->i ? -1 : a->i > b->i;
        long double x = a->t == SV_INT ? (long double)a->i : a->d;
        long double y = b->t == SV_INT ? (long double)b->i : b->d;
        return x < y ? -1 : x > y ? 1 : 0;
    }
    if (a->t != b->t)
        return -2;
    switch (a->t) {
    case SV_STR: {
        int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
        return c ? (c < 0 ? -1 : 1) : a->n < b->n ? -1 : a->n > b->n;
    }
    case SV_BOOL:
        return a->i == b->i ? 0 : -2;
    default: /* both null */
        return 0;
    }
}

static int sv_is_null(const struct sv *v)
{
    return v->t == SV_NULL || (v->t == SV_JSON && json_is_null(v->j));
}

/* An N_CMP node's verdict. */
static int cmp_test(const struct node *n, const struct sl_expr_rec *r)
{
    struct sv a, b;
    sv_eval(n->kids[0], r, &a);
    sv_eval(n->kids[1], r, &b);
    int c = sv_compare(&a, &b), res;
    switch (n->op) {
    case OP_EQ:
        res = c == 0;
        break;
    case OP_NE:
        res = c != 0;
        break;
    case OP_LT:
        res = c == -1;
        break;
    case OP_LE:
        res = c == -1 || c == 0;
        break;
    case OP_GT:
        res = c == 1;
        break;
    default:
        res = c == 1 || c == 0;
    }
    /* null only equals null; nothing is ordered against null */
    if (n->op > OP_NE && (sv_is_null(&a) || sv_is_null(&b)))
        res = 0;
    sv_release(&a);
    sv_release(&b);
    return res;
}

/* truthy(eval(n, r)) without building the boolean, for the nodes that give one. */
static int test(const struct node *n, const struct sl_expr_rec *r)
{
    switch (n->k) {
    case N_CMP:
        return cmp_test(n, r);
    case N_NOT:
        return !test(n->kids[0], r);
    case N_AND:
    case N_OR:
        for (size_t i = 0; i < n->nkids; i++) {
            int t = test(n->kids[i], r);
            if (n->k == N_AND ? !t : t)
                return n->k == N_OR;
        }
        return n->k == N_AND;
    default: {
        json_t *v = eval(n, r);
        int t = truthy(v);
        json_decref(v);
        return t;
    }
    }
}

static json_t *str_fn(int fn, const json_t *a, const json_t *b)
{
    if (fn == F_LENGTH) {
        if (json_is_string(a))
            return json_integer((json_int_t)json_string_length(a));
        if (json_is_array(a))
            return json_integer((json_int_t)json_array_size(a));
        if (json_is_object(a))
            return json_integer((json_int_t)json_object_size(a));
        return json_null();
    }
    if (!json_is_string(a))
        return json_null();
    const char *s = json_string_value(a);
    size_t l = json_string_length(a);
    if (fn == F_LOWER || fn == F_UPPER) {
        char *c = malloc(l + 1);
        if (!c)
            return json_null();
        for (size_t i = 0; i < l; i++)
            c[i] = fn == F_LOWER ? (s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i])
                                 : (s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
        json_t *o = json_stringn_nocheck(c, l);
        free(c);
        return o;
    }
    if (!json_is_string(b))
        return json_null();
    const char *t = json_string_value(b);
    size_t tl = json_string_length(b);
    if (fn == F_STARTS)
        return json_boolean(tl <= l && memcmp(s, t, tl) == 0);
    if (fn == F_ENDS)
        return json_boolean(tl <= l && memcmp(s + l - tl, t, tl) == 0);
    return json_boolean(tl == 0 || (tl <= l && memmem(s, l, t, tl) != NULL));
}

static json_t *eval(const struct node *n, const struct sl_expr_rec *r)
{
    switch (n->k) {
    case N_LIT:
        return json_incref(n->lit);
    case N_PATH: {
        json_t *v = walk(n, r);
        return v ? v : json_null();
    }
    case N_META:
        switch (n->op) {
        case M_SOURCE:
            return r->source ? json_stringn_nocheck(r->source, r->source_len) : json_null();
        case M_SEQ:
            return json_integer((json_int_t)r->seq);
        case M_TS:
            return json_integer((json_int_t)r->timestamp_ms);
        case M_FLAGS:
            return json_integer((json_int_t)r->flags);
        case M_STRAND:
            return r->strand ? json_string(r->strand) : json_null();
        default:
            return json_null();
        }
    case N_NOT: {
        json_t *v = eval(n->kids[0], r);
        int t = truthy(v);
        json_decref(v);
        return json_boolean(!t);
    }
    case N_AND:
    case N_OR:
        for (size_t i = 0; i < n->nkids; i++) {
            json_t *v = eval(n->kids[i], r);
            int t = truthy(v);
            json_decref(v);
            if (n->k == N_AND ? !t : t)
                return json_boolean(n->k == N_OR);
        }
        return json_boolean(n->k == N_AND);
    case N_CMP:
        return json_boolean(cmp_test(n, r));
    case N_IN: {
        struct sv a;
        sv_eval(n->kids[0], r, &a);
        int found = 0;
        if (n->kids[1]->k == N_LIST) {
            for (size_t i = 0; i < n->kids[1]->nkids && !found; i++) {
                struct sv b;
                sv_eval(n->kids[1]->kids[i], r, &b);
                found = sv_compare(&a, &b) == 0;
                sv_release(&b);
            }
        } else {
            json_t *list = eval(n->kids[1], r), *x = sv_to_json(&a);
            for (size_t i = 0; json_is_array(list) && i < json_array_size(list) && !found; i++)
                found = compare(x, json_array_get(list, i)) == 0;
            json_decref(list);
            json_decref(x);
        }
        sv_release(&a);
        return json_boolean(found);
    }
    case N_LIST: {
        json_t *arr = json_array();
        for (size_t i = 0; i < n->nkids; i++)
            json_array_append_new(arr, eval(n->kids[i], r));
        return arr;
    }
    case N_CALL: {
        if (n->op == F_EXISTS) {
            struct sv v;
            int found = sv_eval(n->kids[0], r, &v) == 0;
            sv_release(&v);
            return json_boolean(found);
        }
        json_t *a = eval(n->kids[0], r), *b = n->nkids > 1 ? eval(n->kids[1], r) : NULL;
        json_t *o = str_fn(n->op, a, b);
        json_decref(a);
        json_decref(b);
        return o;
    }
    }
    return json_null();
}

json_t *sl_expr_eval(const struct sl_expr *e, const struct sl_expr_rec *r)
{
    return eval(e->root, r);
}

int sl_expr_match(const struct sl_expr *e, const struct sl_expr_rec *r)
{
    return test(e->root, r);
}
