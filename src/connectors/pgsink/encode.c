/* The PostgreSQL sink's encoder: a batch of records becomes a plan of statements — runs of rows
 * with the same columns as COPY text (escaped straight from the MessagePack payload for plain
 * rows; through a JSON tree and text_of() for everything else: CDC envelopes, deletes, bytea,
 * arrays, floats), a delete as its own DELETE, a lone row as one INSERT. Worker thread. */
#include "connectors/pgsink/pgsink.h"
#include "core/err.h"
#include "formats/json_mp.h"
#include "formats/mp_jansson.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void ps_quote_ident(struct sl_buf *b, const char *s, size_t n)
{
    sl_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            sl_buf_putc(b, '"');
        sl_buf_putc(b, s[i]);
    }
    sl_buf_putc(b, '"');
}

void ps_free_cols(struct pgsink *p)
{
    for (size_t i = 0; i < p->ncols; i++) {
        free(p->cols[i].name);
        free(p->cols[i].type);
    }
    p->ncols = 0;
}

static enum ps_ckind kind_of(const char *type)
{
    return !strncmp(type, "json", 4)        ? CK_JSON
           : strstr(type, "[]")             ? CK_ARRAY
           : !strcmp(type, "bytea")         ? CK_BYTEA
           : !strncmp(type, "timestamp", 9) ? CK_TS
                                            : CK_TEXT;
}

/* Reads the table's columns. 0, 1 if the table does not exist, -1 on a connection error. */
int ps_load_cols(struct pgsink *p, char *why, size_t n)
{
    ps_free_cols(p);
    const char *params[1] = {p->qtable};
    PGresult *r = PQexecParams(p->conn,
                               "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM "
                               "pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 "
                               "AND NOT a.attisdropped ORDER BY a.attnum",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(why, n, "PostgreSQL: %s", PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < PQntuples(r) && p->ncols < PS_MAX_COLS; i++) {
        struct ps_col *c = &p->cols[p->ncols];
        c->name = strdup(PQgetvalue(r, i, 0));
        c->type = strdup(PQgetvalue(r, i, 1));
        if (!c->name || !c->type) {
            free(c->name);
            free(c->type);
            break;
        }
        c->len = strlen(c->name);
        c->kind = kind_of(c->type);
        c->pk = 0;
        for (size_t j = 0; j < p->npk; j++)
            c->pk |= !strcmp(p->pk[j], c->name);
        p->ncols++;
    }
    PQclear(r);
    return p->ncols ? 0 : 1;
}

static int b64v(char c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+' || c == '-' ? 62
           : c == '/' || c == '_' ? 63
                                  : -1;
}

/* bytea's hex input ("\x0a1b") from base64 text; -1 if it is not base64. */
static int bytea_of(const char *s, struct sl_buf *out)
{
    sl_buf_puts(out, "\\x");
    unsigned acc = 0;
    int bits = 0;
    for (; *s && *s != '='; s++) {
        int v = b64v(*s);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            sl_buf_printf(out, "%02x", (acc >> bits) & 0xff);
        }
    }
    return 0;
}

/* A PostgreSQL array literal from a JSON array of scalars; -1 if an element is not a scalar. */
static int array_of(const json_t *a, struct sl_buf *out)
{
    sl_buf_putc(out, '{');
    size_t i;
    json_t *x;
    json_array_foreach(a, i, x)
    {
        if (i)
            sl_buf_putc(out, ',');
        if (json_is_null(x)) {
            sl_buf_puts(out, "NULL");
        } else if (json_is_string(x)) {
            sl_buf_putc(out, '"');
            for (const char *c = json_string_value(x); *c; c++) {
                if (*c == '"' || *c == '\\')
                    sl_buf_putc(out, '\\');
                sl_buf_putc(out, *c);
            }
            sl_buf_putc(out, '"');
        } else if (json_is_number(x) || json_is_boolean(x)) {
            char *t = json_dumps(x, JSON_ENCODE_ANY);
            sl_buf_puts(out, t ? t : "NULL");
            free(t);
        } else {
            return -1;
        }
    }
    sl_buf_putc(out, '}');
    return 0;
}

/* The text PostgreSQL takes for v in a column of type type (NUL-ended, in out), or NULL for SQL
 * NULL; -1 with why if it cannot be converted. */
static int text_of(const json_t *v, const char *type, struct sl_buf *out, const char *col,
                   char *why, size_t n)
{
    sl_buf_reset(out);
    if (!v || json_is_null(v))
        return 1; /* NULL */
    int is_json = !strncmp(type, "json", 4);
    if (is_json) {
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        sl_buf_puts(out, t ? t : "null");
        free(t);
    } else if (strstr(type, "[]") && json_is_array(v)) {
        if (array_of(v, out) < 0) {
            snprintf(why, n, "%s: an array of objects does not fit %s", col, type);
            return -1;
        }
    } else if (!strcmp(type, "bytea") && json_is_string(v)) {
        if (bytea_of(json_string_value(v), out) < 0) {
            snprintf(why, n, "%s: not base64 (bytea takes base64 text)", col);
            return -1;
        }
    } else if (!strncmp(type, "timestamp", 9) && json_is_integer(v)) {
        long long ms = json_integer_value(v);
        time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        sl_buf_printf(out, "%04d-%02d-%02d %02d:%02d:%02d.%03lld+00", tm.tm_year + 1900,
                      tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                      ms - (long long)secs * 1000);
    } else if (json_is_string(v)) {
        sl_buf_append(out, json_string_value(v), json_string_length(v));
    } else if (json_is_object(v) || json_is_array(v)) {
        snprintf(why, n, "%s: an %s does not fit %s", col, json_is_object(v) ? "object" : "array",
                 type);
        return -1;
    } else {
        char *t = json_dumps(v, JSON_ENCODE_ANY);
        sl_buf_puts(out, t ? t : "");
        free(t);
    }
    sl_buf_putc(out, 0);
    return out->failed ? (snprintf(why, n, "out of memory"), -1) : 0;
}

/* What record r asks for: the row (a new reference) and whether it is a delete. 0, or -1 with
 * why (not a JSON object). */
static int row_of(const struct sl_rec *r, json_t **row, int *del, char *why, size_t n)
{
    const uint8_t *mp = r->payload;
    json_t *v = sl_mp_to_jansson(&mp, r->payload + r->payload_len, 128);
    *row = NULL;
    *del = 0;
    if (!json_is_object(v)) {
        json_decref(v);
        snprintf(why, n, "the payload is not a JSON object (a row needs one)");
        return -1;
    }
    const json_t *op = json_object_get(v, "op");
    if (json_is_string(op) && json_object_get(v, "source") &&
        (json_object_get(v, "after") || json_object_get(v, "before"))) { /* a CDC envelope */
        *del = !strcmp(json_string_value(op), "d");
        json_t *img = json_object_get(v, *del ? "before" : "after");
        *row = json_is_object(img) ? json_incref(img) : json_object();
        json_decref(v);
        return 0;
    }
    const json_t *d = json_object_get(v, "__deleted"); /* ExtractNewRecordState rewrite */
    *del = (json_is_string(d) && !strcmp(json_string_value(d), "true")) ||
           (r->flags & SL_REC_TOMBSTONE);
    json_object_del(v, "__deleted");
    *row = v;
    return 0;
}

/* Runs one statement with params; 0, or -1 with why and *sqlstate (class) filled. */
int ps_exec(struct pgsink *p, const char *sql, int n, const char *const *vals, char *why,
            size_t whylen, char *sqlstate)
{
    PGresult *r = PQexecParams(p->conn, sql, n, NULL, vals, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        snprintf(sqlstate, 6, "%s", code ? code : "");
        snprintf(why, whylen, "PostgreSQL %s: %s", code ? code : "(no SQLSTATE)",
                 PQresultErrorMessage(r));
        for (char *c = why; *c; c++)
            if (*c == '\n')
                *c = ' ';
    }
    PQclear(r);
    return ok ? 0 : -1;
}

/* CREATE TABLE from the first row (auto.create). */
static int create_table(struct pgsink *p, const json_t *row, char *why, size_t n, char *state)
{
    struct sl_buf sql;
    sl_buf_init(&sql, 0);
    sl_buf_printf(&sql, "CREATE TABLE IF NOT EXISTS %s (", p->qtable);
    const char *k;
    json_t *v;
    int first = 1;
    json_object_foreach((json_t *)row, k, v)
    {
        sl_buf_puts(&sql, first ? "" : ", ");
        first = 0;
        ps_quote_ident(&sql, k, strlen(k));
        sl_buf_puts(&sql, json_is_integer(v)                      ? " bigint"
                          : json_is_real(v)                       ? " double precision"
                          : json_is_boolean(v)                    ? " boolean"
                          : json_is_object(v) || json_is_array(v) ? " jsonb"
                                                                  : " text");
    }
    if (p->npk) {
        sl_buf_puts(&sql, ", PRIMARY KEY (");
        for (size_t i = 0; i < p->npk; i++) {
            sl_buf_puts(&sql, i ? ", " : "");
            ps_quote_ident(&sql, p->pk[i], strlen(p->pk[i]));
        }
        sl_buf_putc(&sql, ')');
    }
    sl_buf_puts(&sql, ")");
    sl_buf_putc(&sql, 0);
    int rc = ps_exec(p, (const char *)sql.data, 0, NULL, why, n, state);
    sl_buf_release(&sql);
    if (rc == 0)
        rc = ps_load_cols(p, why, n) == 0 ? 0 : -1;
    return rc;
}

/* ---- COPY text ---- */

/* COPY's text format of n bytes: backslash, tab, newline and carriage return escaped. */
static void put_escaped(struct sl_buf *b, const char *s, size_t n)
{
    if (sl_buf_reserve(b, 2 * n) < 0)
        return;
    uint8_t *o = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        default:
            *o++ = (uint8_t)c;
        }
    }
    b->len = (size_t)(o - b->data);
}

static void put_int(struct sl_buf *b, int64_t v)
{
    char t[24], *e = t + sizeof(t), *s = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--s = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--s = '-';
    sl_buf_append(b, s, (size_t)(e - s));
}

static void put2(char *o, unsigned v)
{
    o[0] = (char)('0' + v / 10 % 10);
    o[1] = (char)('0' + v % 10);
}

/* Epoch milliseconds as timestamptz text, as text_of() writes it (years 1..9999; 0 if outside:
 * the JSON path then does it). Days to civil date: H. Hinnant's algorithm. */
static int put_ts(struct sl_buf *b, int64_t ms)
{
    int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000, msr = ms - secs * 1000;
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400, sod = secs - days * 86400;
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y < 1 || y > 9999)
        return 0;
    char t[27]; /* 2023-11-14 22:13:20.123+00 */
    put2(t, (unsigned)(y / 100));
    put2(t + 2, (unsigned)(y % 100));
    t[4] = '-';
    put2(t + 5, (unsigned)m);
    t[7] = '-';
    put2(t + 8, (unsigned)d);
    t[10] = ' ';
    put2(t + 11, (unsigned)(sod / 3600));
    t[13] = ':';
    put2(t + 14, (unsigned)(sod / 60 % 60));
    t[16] = ':';
    put2(t + 17, (unsigned)(sod % 60));
    t[19] = '.';
    t[20] = (char)('0' + msr / 100);
    put2(t + 21, (unsigned)(msr % 100));
    memcpy(t + 23, "+00", 3);
    sl_buf_append(b, t, 26);
    return 1;
}

static int find_col(const struct pgsink *p, const char *k, size_t kl, size_t hint)
{
    if (hint < p->ncols && p->cols[hint].len == kl && !memcmp(p->cols[hint].name, k, kl))
        return (int)hint;
    for (size_t i = 0; i < p->ncols; i++)
        if (p->cols[i].len == kl && !memcmp(p->cols[i].name, k, kl))
            return (int)i;
    return -1;
}

static void new_row(struct pgsink *p)
{
    sl_buf_reset(&p->line);
    sl_buf_reset(&p->key);
    p->nsig = 0;
    if (++p->seen_gen == 0) {
        memset(p->seen, 0, sizeof(p->seen));
        p->seen_gen = 1;
    }
}

/* The row of a plain record (a map of scalars, and objects or arrays for json columns) straight
 * from its MessagePack into p->line, p->sig and p->key: 1, or 0 when the JSON path must do it
 * (anything else, including every error, so that the errors stay text_of()'s). */
static int row_fast(struct pgsink *p, const struct sl_rec *r)
{
    if (r->flags & SL_REC_TOMBSTONE)
        return 0;
    const uint8_t *mp = r->payload, *end = r->payload + r->payload_len;
    uint32_t n;
    if (sl_mp_read_map(&mp, end, &n) < 0)
        return 0;
    new_row(p);
    size_t hint = 0;
    for (uint32_t j = 0; j < n; j++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(&mp, end, &k, &kl) < 0)
            return 0;
        if ((kl == 2 && !memcmp(k, "op", 2)) || (kl == 9 && !memcmp(k, "__deleted", 9)))
            return 0; /* a CDC envelope or a rewritten delete, perhaps */
        int ci = find_col(p, k, kl, hint);
        if (ci < 0) {
            if (p->strict || !p->reloaded) /* a column added since? the JSON path looks */
                return 0;
            long skip = sl_mp_skip(mp, (size_t)(end - mp), 128);
            if (skip < 0)
                return 0;
            mp += skip;
            continue;
        }
        if (p->seen[ci] == p->seen_gen)
            return 0; /* a key twice: the JSON tree keeps the last */
        p->seen[ci] = p->seen_gen;
        hint = (size_t)ci + 1;
        const struct ps_col *c = &p->cols[ci];
        if (p->nsig)
            sl_buf_putc(&p->line, '\t');
        size_t start = p->line.len;
        switch (sl_mp_type(mp, end)) {
        case SL_MP_NIL:
            mp++;
            sl_buf_append(&p->line, "\\N", 2);
            break;
        case SL_MP_BOOL: {
            int v;
            sl_mp_read_bool(&mp, end, &v);
            sl_buf_puts(&p->line, v ? "true" : "false");
            break;
        }
        case SL_MP_INT: {
            int64_t v;
            if (sl_mp_read_int(&mp, end, &v) < 0)
                return 0;
            if (c->kind == CK_TS) {
                if (!put_ts(&p->line, v))
                    return 0;
            } else {
                put_int(&p->line, v);
            }
            break;
        }
        case SL_MP_STR:
            if (c->kind == CK_BYTEA)
                return 0;
            if (c->kind != CK_JSON) {
                const char *s;
                uint32_t sl;
                if (sl_mp_read_str(&mp, end, &s, &sl) < 0)
                    return 0;
                put_escaped(&p->line, s, sl);
                break;
            }
            __attribute__((fallthrough)); /* a JSON string */
        case SL_MP_MAP:
        case SL_MP_ARRAY: {
            if (c->kind != CK_JSON)
                return 0;
            size_t used;
            sl_buf_reset(&p->json);
            if (sl_mp_to_json(mp, (size_t)(end - mp), &used, &p->json, 128, NULL) < 0)
                return 0;
            mp += used;
            put_escaped(&p->line, (const char *)p->json.data, p->json.len);
            break;
        }
        default:
            return 0; /* floats (jansson's text), bin, ext */
        }
        if (c->pk) {
            sl_buf_append(&p->key, p->line.data + start, p->line.len - start);
            sl_buf_putc(&p->key, '\t');
        }
        p->sig[p->nsig++] = (uint16_t)ci;
    }
    return p->nsig && !p->line.failed && !p->key.failed;
}

/* The same through a JSON tree, for every record: 0 (*del says whether it is a delete, whose
 * line then holds its primary key in pk.fields order), 1 when a field names no column and the
 * columns were not read again during this batch yet, or -1 with why. */
static int row_slow(struct pgsink *p, const struct sl_rec *r, int *del, char *why, size_t whylen)
{
    json_t *row;
    if (row_of(r, &row, del, why, whylen) < 0)
        return -1;
    new_row(p);
    int rc = 0;
    if (*del) {
        if (!p->npk) {
            snprintf(why, whylen, "a delete needs pk.fields to find its row");
            rc = -1;
        }
        for (size_t k = 0; rc == 0 && k < p->npk; k++) {
            const struct ps_col *c = NULL;
            for (size_t i = 0; i < p->ncols && !c; i++)
                if (!strcmp(p->cols[i].name, p->pk[k]))
                    c = &p->cols[i];
            if (!c) {
                snprintf(why, whylen, "pk.fields: %s is not a column of %s", p->pk[k], p->table);
                rc = -1;
                break;
            }
            int t =
                text_of(json_object_get(row, p->pk[k]), c->type, &p->text, p->pk[k], why, whylen);
            if (t == 1)
                snprintf(why, whylen, "the delete has no value for %s", p->pk[k]);
            if (t != 0) {
                rc = -1;
                break;
            }
            if (k)
                sl_buf_putc(&p->line, '\t');
            put_escaped(&p->line, (const char *)p->text.data, p->text.len - 1);
        }
        json_decref(row);
        return rc;
    }
    const char *k;
    json_t *v;
    json_object_foreach(row, k, v)
    {
        size_t kl = strlen(k);
        int ci = find_col(p, k, kl, 0);
        if (ci < 0 && !p->reloaded) { /* a column added since? the caller reads them again */
            json_decref(row);
            return 1;
        }
        if (ci < 0) {
            if (p->strict) {
                snprintf(why, whylen, "%s: no such column in %s (fields.unknown error)", k,
                         p->table);
                rc = -1;
                break;
            }
            continue;
        }
        const struct ps_col *c = &p->cols[ci];
        int t = text_of(v, c->type, &p->text, k, why, whylen);
        if (t < 0) {
            rc = -1;
            break;
        }
        if (p->nsig)
            sl_buf_putc(&p->line, '\t');
        size_t start = p->line.len;
        if (t == 1)
            sl_buf_append(&p->line, "\\N", 2);
        else
            put_escaped(&p->line, (const char *)p->text.data, p->text.len - 1);
        if (c->pk) {
            sl_buf_append(&p->key, p->line.data + start, p->line.len - start);
            sl_buf_putc(&p->key, '\t');
        }
        p->sig[p->nsig++] = (uint16_t)ci;
    }
    if (rc == 0 && !p->nsig) {
        snprintf(why, whylen, "no field of the record is a column of %s", p->table);
        rc = -1;
    }
    if (rc == 0 && (p->line.failed || p->key.failed)) {
        snprintf(why, whylen, "out of memory");
        rc = -1;
    }
    json_decref(row);
    return rc;
}

/* ---- the plan ---- */

void ps_plan_release(struct ps_plan *pl)
{
    free(pl->steps);
    free(pl->keys);
    sl_buf_release(&pl->sql);
    sl_buf_release(&pl->data);
    memset(pl, 0, sizeof(*pl));
}

static struct ps_step *add_step(struct ps_plan *pl, enum ps_step_kind kind, size_t first)
{
    if (pl->n == pl->cap) {
        size_t nc = pl->cap ? pl->cap * 2 : 8;
        struct ps_step *s = realloc(pl->steps, nc * sizeof(*s));
        if (!s)
            return NULL;
        pl->steps = s;
        pl->cap = nc;
    }
    struct ps_step *s = &pl->steps[pl->n++];
    memset(s, 0, sizeof(*s));
    s->kind = kind;
    s->first = first;
    s->sql_off = pl->sql.len;
    return s;
}

static uint64_t hash_of(const uint8_t *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 1099511628211ull;
    return h ? h : 1;
}

void ps_hset_clear(struct ps_hset *h)
{
    if (h->n)
        memset(h->t, 0, h->cap * sizeof(*h->t));
    h->n = 0;
}

void ps_hset_release(struct ps_hset *h)
{
    free(h->t);
    memset(h, 0, sizeof(*h));
}

int ps_hset_has(const struct ps_hset *h, uint64_t k)
{
    if (!h->cap)
        return 0;
    for (size_t j = k & (h->cap - 1);; j = (j + 1) & (h->cap - 1)) {
        if (h->t[j] == k)
            return 1;
        if (!h->t[j])
            return 0;
    }
}

int ps_hset_add(struct ps_hset *h, uint64_t k)
{
    if (h->n * 2 + 2 > h->cap) {
        size_t nc = h->cap ? h->cap * 2 : 1024;
        uint64_t *t = calloc(nc, sizeof(*t));
        if (!t)
            return -1;
        for (size_t i = 0; i < h->cap; i++)
            if (h->t[i])
                for (size_t j = h->t[i] & (nc - 1);; j = (j + 1) & (nc - 1))
                    if (!t[j]) {
                        t[j] = h->t[i];
                        break;
                    }
        free(h->t);
        h->t = t;
        h->cap = nc;
    }
    for (size_t j = k & (h->cap - 1);; j = (j + 1) & (h->cap - 1)) {
        if (h->t[j] == k)
            return 1;
        if (!h->t[j]) {
            h->t[j] = k;
            h->n++;
            return 0;
        }
    }
}

/* The group being gathered: rows [first, first + rows) with the columns gsig, their lines from
 * data_off in the plan's data; its primary keys in p->gkeys (upserts). */
struct group {
    size_t first, rows, data_off;
};

static void put_names(const struct pgsink *p, struct sl_buf *b)
{
    for (size_t i = 0; i < p->ngsig; i++) {
        if (i)
            sl_buf_puts(b, ", ");
        const struct ps_col *c = &p->cols[p->gsig[i]];
        ps_quote_ident(b, c->name, c->len);
    }
}

/* The ON CONFLICT clause of an upsert (nothing for insert.mode insert). */
static void on_conflict(const struct pgsink *p, struct sl_buf *sql)
{
    if (!p->upsert || !p->npk)
        return;
    sl_buf_puts(sql, " ON CONFLICT (");
    for (size_t j = 0; j < p->npk; j++) {
        sl_buf_puts(sql, j ? ", " : "");
        ps_quote_ident(sql, p->pk[j], strlen(p->pk[j]));
    }
    sl_buf_puts(sql, ")");
    int sets = 0;
    for (size_t i = 0; i < p->ngsig; i++) {
        const struct ps_col *c = &p->cols[p->gsig[i]];
        if (c->pk)
            continue;
        sl_buf_puts(sql, sets++ ? ", " : " DO UPDATE SET ");
        ps_quote_ident(sql, c->name, c->len);
        sl_buf_puts(sql, " = EXCLUDED.");
        ps_quote_ident(sql, c->name, c->len);
    }
    if (!sets)
        sl_buf_puts(sql, " DO NOTHING");
}

/* Ends the group: a step for its rows. 0 or -1 (out of memory). */
static int close_group(struct pgsink *p, struct ps_plan *pl, struct group *g)
{
    if (!g->rows)
        return 0;
    struct ps_step *s = add_step(pl, g->rows == 1 ? ST_ONE : ST_COPY, g->first);
    if (!s)
        return -1;
    s->rows = g->rows;
    s->data_off = g->data_off;
    s->data_len = pl->data.len - g->data_off;
    struct sl_buf *q = &pl->sql;
    s->names_off = q->len;
    put_names(p, q);
    sl_buf_putc(q, 0);
    s->copy_off = q->len; /* COPY into the table, or into the stage and merged from there */
    sl_buf_printf(q, "COPY %s (", p->upsert ? "sluice_stage" : p->qtable);
    put_names(p, q);
    sl_buf_puts(q, ") FROM STDIN");
    if (p->upsert) {
        sl_buf_printf(q, "; INSERT INTO %s (", p->qtable);
        put_names(p, q);
        sl_buf_puts(q, ") SELECT ");
        put_names(p, q);
        sl_buf_puts(q, " FROM sluice_stage");
        on_conflict(p, q);
    }
    sl_buf_putc(q, 0);
    s->sql_off = s->copy_off;
    if (g->rows == 1) { /* alone (in a plan of several statements, or isolated): an INSERT */
        s->sql_off = q->len;
        s->nparams = p->ngsig;
        sl_buf_printf(q, "INSERT INTO %s (", p->qtable);
        put_names(p, q);
        sl_buf_puts(q, ") VALUES (");
        for (size_t i = 0; i < p->ngsig; i++)
            sl_buf_printf(q, "%s$%zu", i ? "," : "", i + 1);
        sl_buf_putc(q, ')');
        on_conflict(p, q);
        sl_buf_putc(q, 0);
    }
    g->rows = 0;
    return q->failed ? -1 : 0;
}

static int delete_step(struct pgsink *p, struct ps_plan *pl, size_t i)
{
    struct ps_step *s = add_step(pl, ST_DELETE, i);
    if (!s)
        return -1;
    s->rows = 1;
    s->nparams = p->npk;
    s->data_off = pl->data.len;
    sl_buf_append(&pl->data, p->line.data, p->line.len);
    sl_buf_putc(&pl->data, '\n');
    s->data_len = pl->data.len - s->data_off;
    sl_buf_printf(&pl->sql, "DELETE FROM %s WHERE ", p->qtable);
    for (size_t k = 0; k < p->npk; k++) {
        sl_buf_puts(&pl->sql, k ? " AND " : "");
        ps_quote_ident(&pl->sql, p->pk[k], strlen(p->pk[k]));
        sl_buf_printf(&pl->sql, " = $%zu", k + 1);
    }
    sl_buf_putc(&pl->sql, 0);
    return 0;
}

int ps_encode(struct pgsink *p, const struct sl_rec *recs, size_t n, struct ps_plan *pl,
              size_t *bad, char *why, size_t whylen, char *state)
{
    pl->n = pl->nkeys = 0;
    sl_buf_reset(&pl->sql);
    sl_buf_reset(&pl->data);
    p->reloaded = 0;
    state[0] = 0;
    struct group g = {0};
    for (size_t i = 0; i < n; i++) {
        *bad = i;
        if (!p->ncols) {
            ps_idle(p);
            int rc = ps_load_cols(p, why, whylen);
            if (rc == 1 && p->autocreate) {
                json_t *row;
                int del;
                if (row_of(&recs[i], &row, &del, why, whylen) < 0)
                    return -1;
                rc = create_table(p, row, why, whylen, state);
                json_decref(row);
            } else if (rc == 1) {
                snprintf(why, whylen, "the table does not exist (create it, or set auto.create)");
            }
            if (rc != 0)
                return -2;
        }
        int del = 0, rc = 0;
        if (!row_fast(p, &recs[i]) && (rc = row_slow(p, &recs[i], &del, why, whylen)) < 0)
            return -1;
        if (rc == 1) {                      /* a column added since? read them, once per batch */
            if (close_group(p, pl, &g) < 0) /* its names are the old columns' */
                goto oom;
            char w2[200];
            ps_idle(p);
            ps_load_cols(p, w2, sizeof(w2));
            p->reloaded = 1;
            i--;
            continue;
        }
        if (del) {
            if (close_group(p, pl, &g) < 0 || delete_step(p, pl, i) < 0)
                goto oom;
            continue;
        }
        int same =
            g.rows && p->nsig == p->ngsig && !memcmp(p->sig, p->gsig, p->nsig * sizeof(p->sig[0]));
        uint64_t kh = p->upsert && p->key.len ? hash_of(p->key.data, p->key.len) : 0;
        if (pl->nkeys == pl->cap_keys) {
            size_t nc = pl->cap_keys ? pl->cap_keys * 2 : 256;
            uint64_t *k = realloc(pl->keys, nc * sizeof(*k));
            if (!k)
                goto oom;
            pl->keys = k;
            pl->cap_keys = nc;
        }
        pl->keys[pl->nkeys++] = kh;
        /* a 64-bit hash stands for the key: a collision only ends a group early */
        if (!same || (kh && ps_hset_add(&p->gkeys, kh) != 0)) {
            /* another column set, or a key the group holds (an upsert may not touch one row
             * twice in a statement) */
            if (close_group(p, pl, &g) < 0)
                goto oom;
            memcpy(p->gsig, p->sig, p->nsig * sizeof(p->sig[0]));
            p->ngsig = p->nsig;
            g.first = i;
            g.data_off = pl->data.len;
            ps_hset_clear(&p->gkeys);
            if (kh && ps_hset_add(&p->gkeys, kh) < 0)
                goto oom;
        }
        sl_buf_append(&pl->data, p->line.data, p->line.len);
        sl_buf_putc(&pl->data, '\n');
        g.rows++;
    }
    if (close_group(p, pl, &g) < 0 || pl->data.failed)
        goto oom;
    return 0;
oom:
    snprintf(why, whylen, "out of memory");
    return -2;
}

size_t ps_params_of(const char *line, size_t len, struct sl_buf *store, const char **params,
                    size_t max)
{
    size_t offs[PS_MAX_COLS], np = 0;
    int null[PS_MAX_COLS];
    sl_buf_reset(store);
    if (len && line[len - 1] == '\n')
        len--;
    size_t i = 0;
    while (np < max && np < PS_MAX_COLS) {
        offs[np] = store->len;
        null[np] = len - i >= 2 && line[i] == '\\' && line[i + 1] == 'N' &&
                   (len - i == 2 || line[i + 2] == '\t');
        if (null[np])
            i += 2;
        for (; i < len && line[i] != '\t'; i++) {
            char c = line[i];
            if (c == '\\' && i + 1 < len) {
                c = line[++i];
                c = c == 't' ? '\t' : c == 'n' ? '\n' : c == 'r' ? '\r' : c;
            }
            sl_buf_putc(store, (uint8_t)c);
        }
        sl_buf_putc(store, 0);
        np++;
        if (i >= len)
            break;
        i++; /* the tab */
    }
    for (size_t k = 0; k < np; k++)
        params[k] = null[k] || store->failed ? NULL : (const char *)store->data + offs[k];
    return np;
}
