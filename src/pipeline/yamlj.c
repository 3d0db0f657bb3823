#include "pipeline/yamlj.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_SECRET (64u << 10)

struct ld {
    yaml_parser_t p;
    struct sl_ymarks *marks;
    char *err;
    size_t errlen;
    int failed;
    char soft[2048]; /* unset variables: all of them are listed, one per line */
    size_t nsoft;
};

static void fail(struct ld *l, const yaml_mark_t *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(struct ld *l, const yaml_mark_t *m, const char *fmt, ...)
{
    if (l->failed)
        return;
    l->failed = 1;
    int n = snprintf(l->err, l->errlen, "%zu:%zu: ", m->line + 1, m->column + 1);
    va_list ap;
    va_start(ap, fmt);
    if (n >= 0 && (size_t)n < l->errlen)
        vsnprintf(l->err + n, l->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *c = l->err; *c; c++) /* a key or name from the file stays on one line */
        if ((unsigned char)*c < 0x20)
            *c = '?';
}

/* A mapping's value is marked at its key (marked first); secret is then set on that mark. */
static void mark(struct ld *l, const char *path, const yaml_mark_t *m, int secret)
{
    struct sl_ymarks *ms = l->marks;
    if (ms->n && strcmp(ms->v[ms->n - 1].path, path) == 0) {
        ms->v[ms->n - 1].secret |= secret;
        return;
    }
    if (ms->n == ms->cap) {
        size_t nc = ms->cap ? ms->cap * 2 : 64;
        struct sl_ymark *v = realloc(ms->v, nc * sizeof(*v));
        if (!v)
            return;
        ms->v = v;
        ms->cap = nc;
    }
    char *p = strdup(path);
    if (!p)
        return;
    ms->v[ms->n++] = (struct sl_ymark){p, (int)m->line + 1, (int)m->column + 1, secret};
}

/* ---- ${...} ---- */

/* Appends s[0..n) to *out (grown). 0 or -1. */
static int put(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*len + n + 1) * 2;
        char *o = realloc(*out, nc);
        if (!o)
            return -1;
        *out = o;
        *cap = nc;
    }
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = 0;
    return 0;
}

static int read_secret(struct ld *l, const yaml_mark_t *m, const char *path, char **out,
                       size_t *len, size_t *cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(l, m, "${file:%s}: cannot read: %s", path, strerror(errno));
        return -1;
    }
    char buf[4096];
    size_t got, total = 0, start = *len;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
        total += got;
        if (total > MAX_SECRET || put(out, len, cap, buf, got) < 0) {
            fclose(f);
            fail(l, m, "${file:%s}: larger than %u bytes", path, MAX_SECRET);
            return -1;
        }
    }
    fclose(f);
    while (*len > start && ((*out)[*len - 1] == '\n' || (*out)[*len - 1] == '\r'))
        (*out)[--*len] = 0;
    return 0;
}

/* The scalar with its ${...} replaced (malloc'ed), or NULL (failed, or out of memory).
 * *secret is set when a ${file:} was read. */
static char *expand(struct ld *l, const yaml_mark_t *m, const char *in, int *secret)
{
    size_t len = 0, cap = 0;
    char *out = NULL;
    if (put(&out, &len, &cap, "", 0) < 0)
        return NULL;
    for (const char *s = in; *s;) {
        const char *d = strstr(s, "${");
        if (!d) {
            if (put(&out, &len, &cap, s, strlen(s)) < 0)
                goto oom;
            break;
        }
        if (put(&out, &len, &cap, s, (size_t)(d - s)) < 0)
            goto oom;
        const char *end = strchr(d + 2, '}');
        if (!end) {
            fail(l, m, "unterminated ${ (write ${NAME} or ${NAME:-default})");
            goto bad;
        }
        char name[256];
        size_t nl = (size_t)(end - d - 2);
        if (nl >= sizeof(name)) {
            fail(l, m, "a ${...} of more than %zu characters", sizeof(name) - 1);
            goto bad;
        }
        memcpy(name, d + 2, nl);
        name[nl] = 0;
        if (strncmp(name, "file:", 5) == 0) {
            if (read_secret(l, m, name + 5, &out, &len, &cap) < 0)
                goto bad;
            *secret = 1;
        } else {
            char *def = strstr(name, ":-");
            if (def) {
                *def = 0;
                def += 2;
            }
            size_t k = 0;
            while (name[k] == '_' || (name[k] >= 'A' && name[k] <= 'Z') ||
                   (name[k] >= 'a' && name[k] <= 'z') || (k && name[k] >= '0' && name[k] <= '9'))
                k++;
            if (k == 0 || name[k]) {
                fail(l, m, "${%s}: not a variable name (letters, digits and '_')", name);
                goto bad;
            }
            const char *v = getenv(name);
            if (!v && !def) { /* listed with the others; the load fails at the end */
                size_t n = strlen(l->soft);
                if (n + 2 * sizeof(name) + 100 < sizeof(l->soft)) /* whole lines only */
                    snprintf(l->soft + n, sizeof(l->soft) - n,
                             "%s%zu:%zu: ${%s} is not set (and has no default: ${%s:-default})",
                             n ? "\n" : "", m->line + 1, m->column + 1, name, name);
                l->nsoft++;
            }
            const char *use = v ? v : def ? def : "";
            if (put(&out, &len, &cap, use, strlen(use)) < 0)
                goto oom;
        }
        s = end + 1;
    }
    return out;
oom:
    fail(l, m, "out of memory");
bad:
    free(out);
    return NULL;
}

/* ---- scalars ---- */

static int is_int(const char *s, long long *v)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'o')) {
        if (p != s)
            return 0;
        base = p[1] == 'x' ? 16 : 8;
        p += 2;
    }
    if (!*p)
        return 0;
    for (const char *c = p; *c; c++)
        if (!(base == 16 ? ((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') ||
                            (*c >= 'A' && *c <= 'F'))
                         : (*c >= '0' && *c < '0' + base)))
            return 0;
    errno = 0;
    char *end;
    long long x = strtoll(base == 10 ? s : p, &end, base);
    if (errno || *end)
        return 0;
    *v = x;
    return 1;
}

static int is_float(const char *s, double *v)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int digits = 0, dot = 0;
    for (; *p; p++) {
        if (*p >= '0' && *p <= '9')
            digits++;
        else if (*p == '.' && !dot)
            dot = 1;
        else
            break;
    }
    if (!digits)
        return 0;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p)
        return 0;
    char *end;
    *v = strtod(s, &end);
    return *end == 0 && isfinite(*v);
}

static json_t *typed(const char *s, int plain)
{
    if (!plain)
        return json_string(s);
    if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL"))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return json_false();
    long long i;
    double d;
    if (is_int(s, &i))
        return json_integer(i);
    if (is_float(s, &d))
        return json_real(d);
    return json_string(s);
}

/* ---- the tree ---- */

static int next(struct ld *l, yaml_event_t *ev)
{
    if (yaml_parser_parse(&l->p, ev))
        return 0;
    yaml_mark_t m = l->p.problem_mark;
    if (l->p.problem)
        fail(l, &m, "YAML: %s%s%s", l->p.problem, l->p.context ? " " : "",
             l->p.context ? l->p.context : "");
    else
        fail(l, &m, "YAML: cannot be parsed");
    return -1;
}

/* No tag, or one of the core schema's. */
static int core_tag(const yaml_char_t *tag)
{
    static const char *const core[] = {"str", "int", "float", "bool", "null", "map", "seq", NULL};
    if (!tag)
        return 1;
    if (strncmp((const char *)tag, "tag:yaml.org,2002:", 18) != 0)
        return 0;
    for (const char *const *c = core; *c; c++)
        if (strcmp((const char *)tag + 18, *c) == 0)
            return 1;
    return 0;
}

static json_t *node(struct ld *l, yaml_event_t *ev, const char *path, int depth);

static json_t *collection(struct ld *l, yaml_event_t *start, const char *path, int depth)
{
    int map = start->type == YAML_MAPPING_START_EVENT;
    json_t *out = map ? json_object() : json_array();
    size_t i = 0;
    char sub[1024];
    for (;;) {
        yaml_event_t ev;
        if (next(l, &ev) < 0)
            goto bad;
        if (ev.type == YAML_MAPPING_END_EVENT || ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return out;
        }
        if (map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                fail(l, &ev.start_mark, "a key must be a plain string (%s)",
                     path[0] ? path : "top");
                yaml_event_delete(&ev);
                goto bad;
            }
            const char *k = (const char *)ev.data.scalar.value;
            if (json_object_get(out, k)) {
                fail(l, &ev.start_mark, "duplicate key '%.100s'%s%s", k, path[0] ? " in " : "",
                     path);
                yaml_event_delete(&ev);
                goto bad;
            }
            char key[512];
            yaml_mark_t km = ev.start_mark;
            int n = snprintf(sub, sizeof(sub), "%s%s%s", path, path[0] ? "." : "", k);
            int kn = snprintf(key, sizeof(key), "%s", k);
            yaml_event_delete(&ev);
            if (n < 0 || (size_t)n >= sizeof(sub) || kn < 0 || (size_t)kn >= sizeof(key)) {
                fail(l, &km, "a key or key path too long");
                goto bad;
            }
            mark(l, sub, &km, 0);
            yaml_event_t val;
            if (next(l, &val) < 0)
                goto bad;
            json_t *v = node(l, &val, sub, depth + 1);
            if (!v)
                goto bad;
            json_object_set_new(out, key, v);
        } else {
            snprintf(sub, sizeof(sub), "%s[%zu]", path, i++);
            json_t *v = node(l, &ev, sub, depth + 1);
            if (!v)
                goto bad;
            json_array_append_new(out, v);
        }
    }
bad:
    json_decref(out);
    return NULL;
}

/* Takes ownership of ev. */
static json_t *node(struct ld *l, yaml_event_t *ev, const char *path, int depth)
{
    json_t *out = NULL;
    if (depth > MAX_DEPTH) {
        fail(l, &ev->start_mark, "nested deeper than %d levels", MAX_DEPTH);
        goto done;
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        fail(l, &ev->start_mark, "aliases (*name) are not supported: write the value out");
        goto done;
    case YAML_SCALAR_EVENT: {
        if (ev->data.scalar.anchor) {
            fail(l, &ev->start_mark, "anchors (&name) are not supported: write the value out");
            goto done;
        }
        if (!core_tag(ev->data.scalar.tag)) {
            fail(l, &ev->start_mark, "tag %s is not supported", ev->data.scalar.tag);
            goto done;
        }
        int secret = 0;
        char *text = expand(l, &ev->start_mark, (const char *)ev->data.scalar.value, &secret);
        if (!text)
            goto done;
        const char *tag = (const char *)ev->data.scalar.tag;
        int plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                    !(tag && strcmp(tag, YAML_STR_TAG) == 0);
        out = typed(text, plain);
        free(text);
        mark(l, path, &ev->start_mark, secret);
        break;
    }
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        int map = ev->type == YAML_MAPPING_START_EVENT;
        const yaml_char_t *anchor =
            map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        const yaml_char_t *tag = map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
        if (anchor) {
            fail(l, &ev->start_mark, "anchors (&name) are not supported: write the value out");
            goto done;
        }
        if (!core_tag(tag)) {
            fail(l, &ev->start_mark, "tag %s is not supported", tag);
            goto done;
        }
        mark(l, path, &ev->start_mark, 0);
        out = collection(l, ev, path, depth);
        break;
    }
    default:
        fail(l, &ev->start_mark, "unexpected YAML event");
    }
done:
    yaml_event_delete(ev);
    return out;
}

json_t *sl_yaml_to_json(const char *text, size_t len, struct sl_ymarks *marks, char *err,
                        size_t errlen)
{
    struct ld l = {.marks = marks, .err = err, .errlen = errlen};
    err[0] = 0;
    if (len > SL_YAML_MAX_BYTES) {
        snprintf(err, errlen, "1:1: the file is larger than %u bytes", SL_YAML_MAX_BYTES);
        return NULL;
    }
    if (memchr(text, 0, len)) {
        snprintf(err, errlen, "1:1: the file holds a NUL byte (not a YAML text file)");
        return NULL;
    }
    yaml_parser_initialize(&l.p);
    yaml_parser_set_input_string(&l.p, (const unsigned char *)text, len);
    json_t *root = NULL;
    yaml_event_t ev;
    int docs = 0;
    while (!l.failed && next(&l, &ev) == 0) {
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            fail(&l, &ev.start_mark, "one YAML document per file (found a second '---')");
            yaml_event_delete(&ev);
            break;
        }
        if (t == YAML_MAPPING_START_EVENT || t == YAML_SEQUENCE_START_EVENT ||
            t == YAML_SCALAR_EVENT || t == YAML_ALIAS_EVENT) {
            root = node(&l, &ev, "", 0);
            if (!root)
                break;
            continue;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&l.p);
    if (!l.failed && l.nsoft) {
        l.failed = 1;
        snprintf(err, errlen, "%s", l.soft);
    }
    if (l.failed) {
        json_decref(root);
        return NULL;
    }
    if (!root)
        root = json_null();
    return root;
}

const struct sl_ymark *sl_ymarks_find(const struct sl_ymarks *m, const char *path)
{
    const struct sl_ymark *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < m->n; i++) {
        size_t n = strlen(m->v[i].path);
        if (strncmp(m->v[i].path, path, n) == 0 &&
            (path[n] == 0 || path[n] == '.' || path[n] == '[' || n == 0) &&
            (!best || n > best_len)) {
            best = &m->v[i];
            best_len = n;
        }
    }
    return best;
}

void sl_ymarks_free(struct sl_ymarks *m)
{
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].path);
    free(m->v);
    m->v = NULL;
    m->n = m->cap = 0;
}
