/* Is a config's connection_string something libpq takes as a connection string? The worker hands
 * the string to libpq as an expanded "dbname", and libpq reads anything that is neither a URI nor
 * key=value pairs as a plain database name ("hello" would connect to the database "hello" on the
 * default socket), so a typo would only show up later, as a confusing connection failure. Here
 * libpq's own parser decides, so what is accepted is exactly what the worker can use.
 *
 * libpq's parse errors quote the input, sometimes whole (a bad IPv6 address echoes the URI, a
 * bad percent escape echoes the password component): every password candidate found in the
 * input is replaced by "***" in the message before it goes into an API answer. */
#include "connectors/pg/cdc.h"

#include "core/err.h"
#include "core/netpolicy.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_SECRETS 32

struct span {
    const char *p;
    size_t n;
};

struct secrets {
    struct span v[MAX_SECRETS];
    size_t n;
    int overflow; /* more candidates than v holds: libpq's detail is left out */
};

static int is_uri(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static void add(struct secrets *x, const char *p, size_t len)
{
    if (len && x->n < MAX_SECRETS)
        x->v[x->n++] = (struct span){p, len};
    else if (len)
        x->overflow = 1;
}

/* Every text of s that may be a password:
 * - user:password@ before each '@' of a word, after its "scheme://" if any (libpq ends the
 *   password at the first '@', a user may mean the last one; other schemes and a forgotten
 *   scheme too: "mysql://u:pw@h" is refused with the whole string quoted);
 * - the value of every password=... (key=value pairs and URI query parameters, quoted or not). */
static void find_secrets(const char *s, struct secrets *x)
{
    for (const char *at = strchr(s, '@'); at; at = strchr(at + 1, '@')) {
        const char *w = at;
        while (w > s && !blank(w[-1]))
            w--;
        for (const char *sch = strstr(w, "://"); sch && sch < at; sch = strstr(sch + 1, "://"))
            w = sch + 3;
        const char *colon = memchr(w, ':', (size_t)(at - w));
        if (colon)
            add(x, colon + 1, (size_t)(at - colon - 1));
    }
    for (const char *k = strstr(s, "password"); k; k = strstr(k + 1, "password")) {
        const char *p = k + 8;
        while (blank(*p))
            p++;
        if (*p++ != '=')
            continue;
        while (blank(*p))
            p++;
        if (*p == '\'') {
            const char *e = ++p;
            while (*e && *e != '\'')
                e += e[0] == '\\' && e[1] ? 2 : 1;
            add(x, p, (size_t)(e - p));
        } else {
            size_t len = 0;
            while (p[len] && !blank(p[len]) && p[len] != '&')
                len++;
            add(x, p, len);
        }
    }
}

/* Copies msg into out with every occurrence of every secret replaced by "***" (the longest one
 * where several start at the same place). libpq puts what it quotes from the input between
 * double quotes, so only quoted text is searched (a one-letter password would otherwise mask
 * libpq's own words); the whole message is, if the input itself holds a double quote (then the
 * quotes of the message may not pair up). */
static void scrub(const char *msg, const struct secrets *x, int whole, char *out, size_t cap)
{
    size_t k = 0;
    int quoted = 0;
    while (*msg && k + 1 < cap) {
        size_t hit = 0;
        if (*msg == '"')
            quoted = !quoted;
        for (size_t i = 0; i < x->n && (quoted || whole); i++)
            if (x->v[i].n > hit && strncmp(msg, x->v[i].p, x->v[i].n) == 0)
                hit = x->v[i].n;
        if (hit) {
            k += (size_t)snprintf(out + k, cap - k, "%s", "***");
            if (k >= cap)
                k = cap - 1;
            msg += hit;
        } else {
            out[k++] = *msg++;
        }
    }
    while (k && (out[k - 1] == '\n' || out[k - 1] == ' '))
        k--;
    out[k] = 0;
}

int sl_pg_conninfo_check(const char *s, struct sl_err *err)
{
    return sl_pg_conninfo_check_field(s, "config.connection_string", err);
}

int sl_pg_conninfo_check_field(const char *s, const char *field, struct sl_err *err)
{
    char what[200];
    snprintf(what, sizeof(what),
             "%s: must be a PostgreSQL connection string (a postgres:// or postgresql:// URI, "
             "or key=value pairs)",
             field);
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(s, &perr);
    if (!opts) {
        struct secrets x = {.n = 0};
        char detail[200];
        find_secrets(s, &x);
        if (x.overflow)
            snprintf(detail, sizeof(detail), "libpq cannot parse it");
        else
            scrub(perr ? perr : "out of memory", &x, strchr(s, '"') != NULL, detail,
                  sizeof(detail));
        PQfreemem(perr);
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "%s: %s", what, detail);
    }
    /* libpq also takes a string of blanks (no pairs: every setting from the environment) */
    int any = is_uri(s);
    for (PQconninfoOption *o = opts; o->keyword && !any; o++)
        any = o->val != NULL;
    PQconninfoFree(opts);
    return any ? 0 : sl_err_set(err, SL_E_INVAL, "invalid_config", "%s: it is empty", what);
}

/* ---- connecting within the outbound policy ---- */

/* PQconnectdbParams, in steps: libpq's connection sequence driven with poll() 250 ms at a
 * time, so that stop() (asked between steps) ends the wait at once. libpq enforces
 * connect_timeout only in its blocking calls: the effective one (from the keys, a URL's
 * parameters or PGCONNECT_TIMEOUT) bounds the whole sequence here. */
static PGconn *connect_stepwise(const char *const *keys, const char *const *vals,
                                int (*stop)(void *), void *arg, char *why, size_t whylen)
{
    PGconn *conn = PQconnectStartParams(keys, vals, 1);
    if (!conn) {
        snprintf(why, whylen, "out of memory");
        return NULL;
    }
    int timeout_s = 0;
    PQconninfoOption *opts = PQconninfo(conn);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val)
            timeout_s = atoi(o->val);
    PQconninfoFree(opts);
    uint64_t until = timeout_s > 0 ? sl_mono_ns() + (uint64_t)timeout_s * 1000000000ull : 0;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
           st != PGRES_POLLING_FAILED) {
        struct pollfd pfd = {.fd = PQsocket(conn),
                             .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        int r = pfd.fd >= 0 ? poll(&pfd, 1, 250) : (errno = EBADF, -1);
        if (r > 0) {
            st = PQconnectPoll(conn);
            continue;
        }
        if (r < 0 && errno != EINTR) {
            snprintf(why, whylen, "poll: %s", strerror(errno));
            PQfinish(conn);
            return NULL;
        }
        if (stop && stop(arg)) {
            snprintf(why, whylen, "stopped while connecting");
            PQfinish(conn);
            return NULL;
        }
        if (until && sl_mono_ns() >= until) {
            snprintf(why, whylen, "timeout expired (connect_timeout %d s)", timeout_s);
            PQfinish(conn);
            return NULL;
        }
    }
    return conn; /* CONNECTION_OK, or BAD with PQerrorMessage saying why */
}

struct pg_conn *sl_pg_connect(const char *const *keys, const char *const *vals, int (*stop)(void *),
                              void *arg, char *why, size_t whylen)
{
    /* the effective host and hostaddr: the expanded dbname's, then later keywords over them */
    char *host = NULL, *hostaddr = NULL;
    int first_db = 1;
    for (size_t i = 0; keys[i]; i++) {
        const char *k = keys[i], *v = vals[i];
        if (!v)
            continue;
        if (strcmp(k, "dbname") == 0 && first_db) {
            first_db = 0;
            PQconninfoOption *opts =
                strchr(v, '=') || strncmp(v, "postgres", 8) == 0 ? PQconninfoParse(v, NULL) : NULL;
            for (PQconninfoOption *o = opts; o && o->keyword; o++) {
                if (o->val && strcmp(o->keyword, "host") == 0) {
                    free(host);
                    host = strdup(o->val);
                } else if (o->val && strcmp(o->keyword, "hostaddr") == 0) {
                    free(hostaddr);
                    hostaddr = strdup(o->val);
                }
            }
            PQconninfoFree(opts);
        } else if (strcmp(k, "host") == 0) {
            free(host);
            host = strdup(v);
        } else if (strcmp(k, "hostaddr") == 0) {
            free(hostaddr);
            hostaddr = strdup(v);
        }
    }
    if (!host && getenv("PGHOST")) /* libpq's defaults from the environment */
        host = strdup(getenv("PGHOST"));
    if (!hostaddr && getenv("PGHOSTADDR"))
        hostaddr = strdup(getenv("PGHOSTADDR"));
    char pinned[1024] = "";
    size_t used = 0;
    int ok = 1, tcp = 0;
    if (hostaddr && *hostaddr) { /* given: each literal checked as it is */
        for (char *p = hostaddr, *save = NULL, *a; ok && (a = strtok_r(p, ",", &save)); p = NULL)
            if (sl_netpolicy_denied_host(a, why, whylen))
                ok = 0;
    } else if (host && *host) {
        for (char *p = host, *save = NULL, *h; ok && (h = strtok_r(p, ",", &save)); p = NULL) {
            char addr[INET6_ADDRSTRLEN] = "";
            if (h[0] != '/' && h[0] != '@') { /* not a Unix-socket directory */
                tcp = 1;
                ok = sl_netpolicy_pick(h, addr, sizeof(addr), why, whylen) == 0;
            }
            used +=
                (size_t)snprintf(pinned + used, used < sizeof(pinned) ? sizeof(pinned) - used : 0,
                                 "%s%s", used ? "," : "", addr);
            ok = ok && used < sizeof(pinned);
        }
    }
    free(host);
    free(hostaddr);
    if (!ok)
        return NULL;
    size_t n = 0;
    while (keys[n])
        n++;
    const char **k2 = calloc(n + 2, sizeof(char *)), **v2 = calloc(n + 2, sizeof(char *));
    PGconn *conn = NULL;
    if (k2 && v2) {
        memcpy(k2, keys, n * sizeof(char *));
        memcpy(v2, vals, n * sizeof(char *));
        if (tcp) { /* later keywords win over the expanded dbname's */
            k2[n] = "hostaddr";
            v2[n++] = pinned;
        }
        conn = connect_stepwise(k2, v2, stop, arg, why, whylen);
    } else {
        snprintf(why, whylen, "out of memory");
    }
    free(k2);
    free(v2);
    return conn;
}
