/* `sluice push`, `sluice tail`, `sluice status`: small clients of the HTTP API (docs/cli.md).
 * One libcurl easy handle per command, JSON through jansson. Threads: the main thread only. */
#include "cli/cli.h"

#include "core/buf.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_URL "http://127.0.0.1:7475"
#define MAX_ANSWER ((size_t)64 << 20) /* an answer bigger than this is refused */
#define MAX_WHERE 16

struct cli {
    const char *url, *token, *strand, *agent_id;
    int json, follow, records;
    long timeout_s;
    uint64_t batch, last, from_seq;
    int has_from;
    const char *where[MAX_WHERE];
    int nwhere;
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

int sl_cli_is_command(const char *cmd)
{
    return strcmp(cmd, "push") == 0 || strcmp(cmd, "tail") == 0 || strcmp(cmd, "status") == 0;
}

void sl_cli_usage(FILE *f)
{
    fprintf(f,
            "  sluice push [--strand S] [--agent-id A] [--records] [--batch N] < records.ndjson\n"
            "  sluice tail --strand S [--last N | --from-seq N] [--follow] [--where PATH=VALUE]\n"
            "  sluice status\n"
            "    (client commands: --url URL (default $SLUICE_URL or " DEFAULT_URL "),\n"
            "     --token T (default $SLUICE_TOKEN), --json, --timeout SECONDS;\n"
            "     exit 0 done, 1 refused or invalid input, 2 usage, 3 server unreachable or "
            "failing)\n");
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct sl_buf *b = arg;
    return sl_buf_append(b, p, size * n) == 0 ? size * n : 0;
}

/* One request. Returns the HTTP status with the answer in out (parsed as JSON into *json when
 * json is not NULL), or -1 if the server could not be reached (message printed). */
static long request(struct cli *c, const char *method, const char *path, const char *ctype,
                    const char *body, size_t len, json_t **json)
{
    struct sl_buf out;
    sl_buf_init(&out, MAX_ANSWER);
    char url[2048];
    snprintf(url, sizeof(url), "%s%s", c->url, path);
    struct curl_slist *h = NULL;
    char line[1100];
    if (ctype) {
        snprintf(line, sizeof(line), "Content-Type: %s", ctype);
        h = curl_slist_append(h, line);
    }
    if (c->token && *c->token) {
        snprintf(line, sizeof(line), "Authorization: Bearer %.1000s", c->token);
        h = curl_slist_append(h, line);
    }
    CURL *k = c->curl;
    curl_easy_reset(k);
    curl_easy_setopt(k, CURLOPT_URL, url);
    curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(k, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(k, CURLOPT_TIMEOUT, c->timeout_s);
    curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, c->timeout_s < 10 ? c->timeout_s : 10L);
    curl_easy_setopt(k, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k, CURLOPT_USERAGENT, "sluice-cli");
    if (body) {
        curl_easy_setopt(k, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    c->errbuf[0] = 0;
    CURLcode rc = curl_easy_perform(k);
    curl_slist_free_all(h);
    long status = -1;
    if (rc != CURLE_OK) {
        fprintf(stderr, "sluice: %s %s: %s\n", method, url,
                c->errbuf[0] ? c->errbuf : curl_easy_strerror(rc));
    } else {
        curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &status);
        if (json) {
            *json = json_loadb((const char *)out.data, out.len, 0, NULL);
            if (!*json && status < 300) {
                fprintf(stderr, "sluice: %s %s: the answer is not JSON\n", method, url);
                status = -1;
            }
        }
    }
    sl_buf_release(&out);
    return status;
}

/* The exit code for a failed request, after printing the server's error. */
static int failed(const char *what, long status, const json_t *ans)
{
    if (status < 0)
        return SL_CLI_UNAVAILABLE;
    const char *msg = json_string_value(json_object_get(ans, "error"));
    const char *code = json_string_value(json_object_get(ans, "code"));
    fprintf(stderr, "sluice: %s: %ld %s%s%s\n", what, status, msg ? msg : "(no error message)",
            code ? " " : "", code ? code : "");
    return status >= 500 ? SL_CLI_UNAVAILABLE : SL_CLI_REFUSED;
}

static void print_json(const json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    if (s)
        puts(s);
    free(s);
}

/* ---- push ---- */

struct push_state {
    uint64_t count, first_seq, last_seq, batches, lines;
    int have_first;
    const char *strand; /* the strand answered */
    json_t *last_answer;
};

/* Sends the NDJSON in body (n records, from input lines first_line..); 0 or an exit code. */
static int push_batch(struct cli *c, struct sl_buf *body, uint64_t n, uint64_t first_line,
                      struct push_state *ps)
{
    char path[512];
    if (c->strand) {
        char *esc = curl_easy_escape(c->curl, c->strand, 0);
        snprintf(path, sizeof(path), "/v1/records/batch?strand=%s", esc ? esc : "");
        curl_free(esc);
    } else {
        snprintf(path, sizeof(path), "/v1/records/batch");
    }
    json_t *ans = NULL;
    long st =
        request(c, "POST", path, "application/x-ndjson", (const char *)body->data, body->len, &ans);
    if (st != 201) {
        char what[160];
        snprintf(what, sizeof(what), "push of input lines %llu..%llu (a batch: none of it written)",
                 (unsigned long long)first_line, (unsigned long long)(first_line + n - 1));
        int rc = failed(what, st, ans);
        json_decref(ans);
        return rc;
    }
    ps->count += (uint64_t)json_integer_value(json_object_get(ans, "count"));
    if (!ps->have_first) {
        ps->first_seq = (uint64_t)json_integer_value(json_object_get(ans, "first_seq"));
        ps->have_first = 1;
    }
    ps->last_seq = (uint64_t)json_integer_value(json_object_get(ans, "last_seq"));
    ps->batches++;
    json_decref(ps->last_answer);
    ps->last_answer = ans;
    return 0;
}

static void progress(const struct push_state *ps, int done)
{
    fprintf(stderr, "\rsluice push: %llu records written%s", (unsigned long long)ps->count,
            done ? "\n" : "");
    fflush(stderr);
}

/* Reads NDJSON from stdin: each line is a payload (or, with --records, a record object
 * {"payload", "agent_id"?, "flags"?}); blank lines are skipped. Batches of --batch records are
 * each all or nothing; a bad line stops the push before its batch is sent. */
static int cmd_push(struct cli *c)
{
    struct push_state ps = {0};
    struct sl_buf body;
    sl_buf_init(&body, 0);
    int tty = isatty(STDERR_FILENO) && !c->json, rc = 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    uint64_t n = 0, first_line = 1, no = 0;
    while (!g_stop && (len = getline(&line, &cap, stdin)) >= 0) {
        no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        size_t skip = strspn(line, " \t");
        if (line[skip] == 0)
            continue;
        json_error_t je;
        json_t *v = json_loadb(line, (size_t)len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
        if (!v) {
            fprintf(stderr, "sluice: input line %llu: invalid JSON at column %d: %s\n",
                    (unsigned long long)no, je.column, je.text);
            rc = SL_CLI_REFUSED;
            break;
        }
        if (c->records && !json_is_object(v)) {
            fprintf(stderr,
                    "sluice: input line %llu: --records: must be a record object "
                    "{\"payload\", ...}\n",
                    (unsigned long long)no);
            json_decref(v);
            rc = SL_CLI_REFUSED;
            break;
        }
        json_t *rec = c->records ? v : json_pack("{s:o}", "payload", v);
        if (c->agent_id && !json_object_get(rec, "agent_id"))
            json_object_set_new(rec, "agent_id", json_string(c->agent_id));
        char *s = json_dumps(rec, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(rec);
        if (n == 0)
            first_line = no;
        if (!s || sl_buf_puts(&body, s) < 0 || sl_buf_putc(&body, '\n') < 0) {
            free(s);
            fprintf(stderr, "sluice: out of memory\n");
            rc = SL_CLI_UNAVAILABLE;
            break;
        }
        free(s);
        if (++n >= c->batch) {
            if ((rc = push_batch(c, &body, n, first_line, &ps)) != 0)
                break;
            sl_buf_reset(&body);
            n = 0;
            if (tty)
                progress(&ps, 0);
        }
    }
    if (rc == 0 && g_stop)
        rc = SL_CLI_INTERRUPTED; /* what was acknowledged stays; the pending batch is not sent */
    else if (rc == 0 && n > 0)
        rc = push_batch(c, &body, n, first_line, &ps);
    free(line);
    sl_buf_release(&body);
    if (tty && ps.batches)
        progress(&ps, 1);
    const char *strand = json_string_value(json_object_get(ps.last_answer, "strand"));
    if (c->json) {
        json_t *o = json_pack("{s:I, s:I, s:b}", "count", (json_int_t)ps.count, "batches",
                              (json_int_t)ps.batches, "ok", rc == 0);
        if (strand)
            json_object_set_new(o, "strand", json_string(strand));
        if (ps.have_first) {
            json_object_set_new(o, "first_seq", json_integer((json_int_t)ps.first_seq));
            json_object_set_new(o, "last_seq", json_integer((json_int_t)ps.last_seq));
        }
        print_json(o);
        json_decref(o);
    } else if (ps.count) {
        printf("%llu records written to strand %s (seq %llu..%llu)\n", (unsigned long long)ps.count,
               strand ? strand : "?", (unsigned long long)ps.first_seq,
               (unsigned long long)ps.last_seq);
    } else if (rc == 0) {
        printf("no records on stdin\n");
    }
    json_decref(ps.last_answer);
    return rc;
}

/* ---- tail ---- */

/* The value at a dotted path of o (a.b.c), or NULL. */
static const json_t *at_path(const json_t *o, const char *path, size_t len)
{
    char key[256];
    while (o && len) {
        const char *dot = memchr(path, '.', len);
        size_t k = dot ? (size_t)(dot - path) : len;
        if (k >= sizeof(key))
            return NULL;
        memcpy(key, path, k);
        key[k] = 0;
        o = json_object_get(o, key);
        path += k + (dot != NULL);
        len -= k + (dot != NULL);
    }
    return o;
}

/* --where PATH=VALUE: the payload's value at PATH equals VALUE read as JSON (or, if VALUE is no
 * JSON, as a string). */
static int matches(const struct cli *c, const json_t *payload)
{
    for (int i = 0; i < c->nwhere; i++) {
        const char *eq = strchr(c->where[i], '=');
        const json_t *v = at_path(payload, c->where[i], (size_t)(eq - c->where[i]));
        if (!v)
            return 0;
        json_t *want = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
        if (!want)
            want = json_string(eq + 1);
        int same =
            json_equal(v, want) || (json_is_string(v) && strcmp(json_string_value(v), eq + 1) == 0);
        json_decref(want);
        if (!same)
            return 0;
    }
    return 1;
}

static void print_record(const struct cli *c, const json_t *r)
{
    if (c->json)
        return print_json(r);
    char *payload = json_dumps(json_object_get(r, "payload"), JSON_COMPACT | JSON_ENCODE_ANY);
    const char *source = json_string_value(json_object_get(r, "source"));
    printf("%lld %lld %s %s\n", (long long)json_integer_value(json_object_get(r, "seq")),
           (long long)json_integer_value(json_object_get(r, "timestamp_ms")),
           source && *source ? source : "-", payload ? payload : "null");
    free(payload);
}

static int cmd_tail(struct cli *c)
{
    if (!c->strand) {
        fprintf(stderr, "sluice tail: --strand is required\n");
        return SL_CLI_USAGE;
    }
    char *esc = curl_easy_escape(c->curl, c->strand, 0);
    char path[512];
    uint64_t seq = c->from_seq;
    if (!c->has_from) { /* like tail(1): the last N records */
        json_t *ans = NULL;
        snprintf(path, sizeof(path), "/v1/strands");
        long st = request(c, "GET", path, NULL, NULL, 0, &ans);
        if (st != 200) {
            curl_free(esc);
            int rc = failed("list strands", st, ans);
            json_decref(ans);
            return rc;
        }
        size_t i;
        json_t *s;
        int found = 0;
        json_array_foreach(json_object_get(ans, "strands"), i, s)
        {
            if (strcmp(json_string_value(json_object_get(s, "name")), c->strand) != 0)
                continue;
            uint64_t count = (uint64_t)json_integer_value(json_object_get(s, "count"));
            seq = count > c->last ? count - c->last : 0;
            found = 1;
        }
        json_decref(ans);
        if (!found) {
            curl_free(esc);
            fprintf(stderr, "sluice: tail: no strand named %s\n", c->strand);
            return SL_CLI_REFUSED;
        }
    }
    int rc = SL_CLI_OK;
    while (!g_stop) {
        snprintf(path, sizeof(path), "/v1/strands/%s/records?from_seq=%llu&limit=1000", esc,
                 (unsigned long long)seq);
        json_t *ans = NULL;
        long st = request(c, "GET", path, NULL, NULL, 0, &ans);
        if (st == 404 && c->follow && json_string_value(json_object_get(ans, "code")) &&
            strcmp(json_string_value(json_object_get(ans, "code")), "strand_not_found") == 0) {
            json_decref(ans); /* followed before its first record: wait for it */
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
            continue;
        }
        if (st != 200) {
            rc = failed("read records", st, ans);
            json_decref(ans);
            break;
        }
        size_t i;
        json_t *r;
        json_array_foreach(json_object_get(ans, "records"), i, r)
        {
            if (matches(c, json_object_get(r, "payload")))
                print_record(c, r);
        }
        fflush(stdout);
        uint64_t next = (uint64_t)json_integer_value(json_object_get(ans, "next_seq"));
        size_t got = json_array_size(json_object_get(ans, "records"));
        json_decref(ans);
        if (got && next > seq) {
            seq = next;
            continue; /* more may be there already */
        }
        if (!c->follow)
            break;
        struct timespec ts = {0, 200 * 1000000L}; /* the API has no long poll yet */
        nanosleep(&ts, NULL);
    }
    curl_free(esc);
    return rc;
}

/* ---- status ---- */

static int cmd_status(struct cli *c)
{
    json_t *health = NULL, *strands = NULL, *conns = NULL;
    long st = request(c, "GET", "/v1/health", NULL, NULL, 0, &health);
    int rc = SL_CLI_OK;
    if (st != 200)
        rc = failed("health", st, health);
    if (rc == 0 && (st = request(c, "GET", "/v1/strands", NULL, NULL, 0, &strands)) != 200)
        rc = failed("list strands", st, strands);
    if (rc == 0 && (st = request(c, "GET", "/v1/connectors", NULL, NULL, 0, &conns)) != 200)
        rc = failed("list connectors", st, conns);
    if (rc == 0 && c->json) {
        json_t *o = json_pack("{s:O, s:O, s:O}", "health", health, "strands",
                              json_object_get(strands, "strands"), "connectors",
                              json_object_get(conns, "connectors"));
        print_json(o);
        json_decref(o);
    } else if (rc == 0) {
        printf("sluice %s at %s: %s\n\n",
               json_string_value(json_object_get(health, "version")) ?: "?", c->url,
               json_string_value(json_object_get(health, "status")) ?: "?");
        printf("%-32s %12s  %s\n", "STRAND", "RECORDS", "HEAD");
        size_t i;
        json_t *s;
        json_array_foreach(json_object_get(strands, "strands"), i, s)
        {
            const char *head = json_string_value(json_object_get(s, "head_hash"));
            printf("%-32s %12lld  %.16s\n", json_string_value(json_object_get(s, "name")),
                   (long long)json_integer_value(json_object_get(s, "count")), head ? head : "-");
        }
        printf("\n%-24s %-16s %-10s %8s %10s  %s\n", "CONNECTOR", "KIND", "STATE", "LAG", "EVENTS",
               "LAST ERROR");
        json_array_foreach(json_object_get(conns, "connectors"), i, s)
        {
            const json_t *lag = json_object_get(json_object_get(s, "stats"), "lag");
            char lagbuf[24] = "-";
            if (json_is_integer(lag))
                snprintf(lagbuf, sizeof(lagbuf), "%lld", (long long)json_integer_value(lag));
            const char *err = json_string_value(json_object_get(s, "last_error"));
            printf("%-24.24s %-16s %-10s %8s %10lld  %.60s\n",
                   json_string_value(json_object_get(s, "name")),
                   json_string_value(json_object_get(s, "kind")),
                   json_string_value(json_object_get(s, "state")), lagbuf,
                   (long long)json_integer_value(json_object_get(s, "event_count")),
                   err ? err : "");
        }
    }
    json_decref(health);
    json_decref(strands);
    json_decref(conns);
    return rc;
}

/* ---- arguments ---- */

static int parse_u64(const char *s, uint64_t min, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || *s == '-' || v < min)
        return -1;
    *out = v;
    return 0;
}

static int usage(const char *cmd, const char *why)
{
    fprintf(stderr, "sluice %s: %s\nusage:\n", cmd, why);
    sl_cli_usage(stderr);
    return SL_CLI_USAGE;
}

int sl_cli_main(const char *cmd, int argc, char **argv)
{
    struct cli c = {.url = getenv("SLUICE_URL"),
                    .token = getenv("SLUICE_TOKEN"),
                    .batch = 1000,
                    .last = 10,
                    .timeout_s = 30};
    if (!c.url || !*c.url)
        c.url = DEFAULT_URL;
    int push = strcmp(cmd, "push") == 0, tail = strcmp(cmd, "tail") == 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (strcmp(a, "--json") == 0) {
            c.json = 1;
            continue;
        }
        if (tail && strcmp(a, "--follow") == 0) {
            c.follow = 1;
            continue;
        }
        if (push && strcmp(a, "--records") == 0) {
            c.records = 1;
            continue;
        }
        if (!v)
            return usage(cmd, strncmp(a, "--", 2) == 0 ? "an option is missing its value"
                                                       : "unexpected argument");
        i++;
        if (strcmp(a, "--url") == 0)
            c.url = v;
        else if (strcmp(a, "--token") == 0)
            c.token = v;
        else if (strcmp(a, "--timeout") == 0 && parse_u64(v, 1, &n) == 0 && n <= 3600)
            c.timeout_s = (long)n;
        else if ((push || tail) && strcmp(a, "--strand") == 0)
            c.strand = v;
        else if (push && strcmp(a, "--agent-id") == 0)
            c.agent_id = v;
        else if (push && strcmp(a, "--batch") == 0 && parse_u64(v, 1, &c.batch) == 0 &&
                 c.batch <= 100000)
            ;
        else if (tail && strcmp(a, "--last") == 0 && parse_u64(v, 0, &c.last) == 0)
            ;
        else if (tail && strcmp(a, "--from-seq") == 0 && parse_u64(v, 0, &c.from_seq) == 0)
            c.has_from = 1;
        else if (tail && strcmp(a, "--where") == 0 && strchr(v, '=') && *v != '=' &&
                 c.nwhere < MAX_WHERE)
            c.where[c.nwhere++] = v;
        else
            return usage(cmd, "unknown option or bad value");
    }
    size_t ul = strlen(c.url);
    if (strncmp(c.url, "http://", 7) != 0 && strncmp(c.url, "https://", 8) != 0)
        return usage(cmd, "--url: must be an http:// or https:// URL");
    char url[1024];
    snprintf(url, sizeof(url), "%.*s", (int)(ul && c.url[ul - 1] == '/' ? ul - 1 : ul), c.url);
    c.url = url;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c.curl = curl_easy_init();
    if (!c.curl) {
        fprintf(stderr, "sluice: cannot start libcurl\n");
        return SL_CLI_UNAVAILABLE;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    int rc = push ? cmd_push(&c) : tail ? cmd_tail(&c) : cmd_status(&c);
    curl_easy_cleanup(c.curl);
    curl_global_cleanup();
    return rc;
}
