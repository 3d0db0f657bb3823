#include "api/auth.h"

#include "core/util.h"
#include "pipeline/yamlj.h"

#include <errno.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_TOKENS 256

struct tok {
    char name[64];
    int scope;
    unsigned char hash[SHA256_DIGEST_LENGTH];
    double rate, burst, tokens; /* rate_limit (requests per second; 0 = none), a token bucket */
    uint64_t refill_ns;
};

struct sl_auth {
    struct tok v[MAX_TOKENS];
    size_t n;
    pthread_mutex_t mu; /* the rate-limit buckets */
};

static int scope_of(const char *s)
{
    return !strcmp(s, "read")    ? SL_SCOPE_READ
           : !strcmp(s, "write") ? SL_SCOPE_WRITE
           : !strcmp(s, "admin") ? SL_SCOPE_ADMIN
                                 : -1;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

static void problem(struct sl_buf *msgs, const char *file, const struct sl_ymarks *m,
                    const char *path, const char *msg, int *n)
{
    const struct sl_ymark *k = sl_ymarks_find(m, path);
    sl_buf_printf(msgs, "%s:%d:%d: %s: %s\n", file, k ? k->line : 1, k ? k->col : 1, path, msg);
    (*n)++;
}

int sl_auth_load(const char *path, struct sl_auth **out, struct sl_buf *msgs)
{
    *out = NULL;
    size_t len = 0;
    char *text = sl_read_file(path, SL_YAML_MAX_BYTES, &len);
    if (!text) {
        sl_buf_printf(msgs, "%s: cannot read the tokens file: %s\n", path,
                      errno == EFBIG ? "larger than 4 MiB" : strerror(errno));
        return 1;
    }
    struct sl_ymarks marks = {0};
    char why[2100];
    json_t *doc = sl_yaml_to_json(text, len, &marks, why, sizeof(why));
    free(text);
    int n = 0;
    if (!doc) {
        sl_buf_printf(msgs, "%s:%s\n", path, why);
        sl_ymarks_free(&marks);
        return 1;
    }
    struct sl_auth *a = calloc(1, sizeof(*a));
    const json_t *list = json_object_get(doc, "tokens");
    if (!a || !json_is_array(list) || json_array_size(list) == 0)
        problem(msgs, path, &marks, "tokens",
                "required, a list of {name, scopes, secret_sha256 "
                "or secret}",
                &n);
    size_t i;
    json_t *t;
    json_array_foreach(list, i, t)
    {
        char p[64];
        snprintf(p, sizeof(p), "tokens[%zu]", i);
        if (i >= MAX_TOKENS) {
            problem(msgs, path, &marks, p, "at most 256 tokens", &n);
            break;
        }
        const char *k;
        json_t *v;
        json_object_foreach(t, k, v) if (strcmp(k, "name") && strcmp(k, "scopes") &&
                                         strcmp(k, "scope") && strcmp(k, "secret") &&
                                         strcmp(k, "secret_sha256") && strcmp(k, "rate_limit"))
        {
            char q[128];
            snprintf(q, sizeof(q), "%s.%s", p, k);
            problem(msgs, path, &marks, q, "unknown field (name, scopes, secret_sha256, secret)",
                    &n);
        }
        struct tok *tk = &a->v[a->n];
        const char *name = json_string_value(json_object_get(t, "name"));
        char q[128];
        snprintf(q, sizeof(q), "%s.name", p);
        if (!name || !*name || strlen(name) >= sizeof(tk->name))
            problem(msgs, path, &marks, json_object_get(t, "name") ? q : p,
                    "name: required, 1 to 63 characters", &n);
        else
            snprintf(tk->name, sizeof(tk->name), "%s", name);
        for (size_t j = 0; j < a->n; j++)
            if (name && !strcmp(a->v[j].name, name))
                problem(msgs, path, &marks, q, "another token has this name", &n);
        const json_t *rl = json_object_get(t, "rate_limit");
        if (rl) {
            snprintf(q, sizeof(q), "%s.rate_limit", p);
            const json_t *rps = json_object_get(rl, "requests_per_second"),
                         *b = json_object_get(rl, "burst");
            if (!json_is_number(rps) || json_number_value(rps) <= 0 ||
                (b && (!json_is_integer(b) || json_integer_value(b) < 1)))
                problem(msgs, path, &marks, q,
                        "{requests_per_second: a number > 0, burst: an integer >= 1}", &n);
            else {
                tk->rate = json_number_value(rps);
                tk->burst = b ? (double)json_integer_value(b) : (tk->rate < 1 ? 1 : tk->rate);
                tk->tokens = tk->burst;
            }
        }
        const json_t *sc = json_object_get(t, "scopes");
        if (!sc)
            sc = json_object_get(t, "scope");
        snprintf(q, sizeof(q), "%s.scopes", p);
        json_t *one = json_is_string(sc) ? json_pack("[O]", sc) : json_incref((json_t *)sc);
        if (!json_is_array(one) || !json_array_size(one))
            problem(msgs, path, &marks, sc ? q : p, "scopes: required, [read], [write] or [admin]",
                    &n);
        size_t j;
        json_t *x;
        json_array_foreach(one, j, x)
        {
            int s = json_is_string(x) ? scope_of(json_string_value(x)) : -1;
            if (s < 0)
                problem(msgs, path, &marks, q, "each scope is read, write or admin", &n);
            else if (s > tk->scope)
                tk->scope = s;
        }
        json_decref(one);
        const char *hex = json_string_value(json_object_get(t, "secret_sha256"));
        const char *clear = json_string_value(json_object_get(t, "secret"));
        if (!!hex == !!clear) {
            problem(msgs, path, &marks, p, "give secret_sha256 (hex) or secret, one of them", &n);
        } else if (hex) {
            snprintf(q, sizeof(q), "%s.secret_sha256", p);
            int ok = strlen(hex) == 2 * SHA256_DIGEST_LENGTH;
            for (int b = 0; ok && b < SHA256_DIGEST_LENGTH; b++) {
                int hi = hexval(hex[2 * b]), lo = hexval(hex[2 * b + 1]);
                ok = hi >= 0 && lo >= 0;
                tk->hash[b] = (unsigned char)(hi << 4 | lo);
            }
            if (!ok)
                problem(msgs, path, &marks, q, "64 hex digits (sha256sum of the token)", &n);
        } else {
            snprintf(q, sizeof(q), "%s.secret", p);
            if (strlen(clear) < 16)
                problem(msgs, path, &marks, q, "at least 16 characters", &n);
            SHA256((const unsigned char *)clear, strlen(clear), tk->hash);
        }
        a->n++;
    }
    json_decref(doc);
    sl_ymarks_free(&marks);
    if (n) {
        free(a);
        return n;
    }
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return 0;
}

void sl_auth_free(struct sl_auth *a)
{
    if (a)
        OPENSSL_cleanse(a, sizeof(*a));
    free(a);
}

double sl_auth_take(struct sl_auth *a, const char *name)
{
    double wait = 0;
    pthread_mutex_lock(&a->mu);
    for (size_t i = 0; i < a->n; i++) {
        struct tok *t = &a->v[i];
        if (strcmp(t->name, name) || t->rate <= 0)
            continue;
        uint64_t now = sl_mono_ns();
        if (t->refill_ns)
            t->tokens += (double)(now - t->refill_ns) / 1e9 * t->rate;
        if (t->tokens > t->burst)
            t->tokens = t->burst;
        t->refill_ns = now;
        if (t->tokens >= 1)
            t->tokens -= 1;
        else
            wait = (1 - t->tokens) / t->rate;
    }
    pthread_mutex_unlock(&a->mu);
    return wait;
}

int sl_auth_scope(const struct sl_auth *a, const char *header, const char **name)
{
    *name = NULL;
    if (!header || strncasecmp(header, "Bearer ", 7) != 0)
        return -1;
    const char *tok = header + 7;
    while (*tok == ' ')
        tok++;
    if (!*tok)
        return -1;
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)tok, strlen(tok), h);
    int scope = -1;
    for (size_t i = 0; i < a->n; i++) /* every token compared, in constant time */
        if (CRYPTO_memcmp(h, a->v[i].hash, sizeof(h)) == 0) {
            scope = a->v[i].scope;
            *name = a->v[i].name;
        }
    return scope;
}
