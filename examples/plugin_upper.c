/* An example connector plugin: the sink kind "example_file" appends one line per record to a
 * local file, "<strand> <seq> <payload as JSON>\n", the JSON's strings uppercased when the
 * config says uppercase: true. It is built out of tree against <sluice/connector.h> alone
 * (examples/README.md):
 *
 *     cc -shared -fPIC -fvisibility=hidden -Iinclude -o plugin_upper.so examples/plugin_upper.c
 *     sluice serve --plugins DIR    (DIR holds plugin_upper.so)
 *
 * What the framework does for it: worker thread, cursor, batching, retries with backoff, dead
 * letters, metrics. What it does itself: its config table, the file and the line format. */
#include <sluice/connector.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct sl_field g_fields[] = {
    {"path", SL_F_STRING, 1, NULL, 0, "File the records are appended to (created if missing).", 0,
     0, NULL, NULL},
    {"uppercase", SL_F_BOOL, 0, "false", 0, "Uppercase the letters of the payload's strings.", 0, 0,
     NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

struct efile {
    const struct sl_sink_ctx *ctx;
    const char *path; /* borrowed from ctx->config */
    int fd;
    int regular; /* a regular file: a failed write can be cut off again */
    int upper;
    char *buf; /* the lines of the batch being sent */
    size_t len, cap;
    char *json; /* one payload as JSON (host->payload_json) */
    size_t json_len;
    size_t *reject; /* indexes of records whose payload cannot be rendered */
    size_t n_reject, reject_cap;
};

static int put(struct efile *f, const char *s, size_t n)
{
    if (f->len + n > f->cap) {
        size_t nc = f->cap ? f->cap : 4096;
        while (nc < f->len + n)
            nc *= 2;
        char *p = realloc(f->buf, nc);
        if (!p)
            return -1;
        f->buf = p;
        f->cap = nc;
    }
    memcpy(f->buf + f->len, s, n);
    f->len += n;
    return 0;
}

/* Uppercases ASCII letters inside the JSON's strings (keys and values), not the letter after a
 * backslash: the line stays valid JSON ("\n" stays "\n", true stays true). */
static void upper_strings(char *s, size_t n)
{
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) {
            in_str = s[i] == '"';
        } else if (s[i] == '\\') {
            i++;
        } else if (s[i] == '"') {
            in_str = 0;
        } else if (s[i] >= 'a' && s[i] <= 'z') {
            s[i] = (char)(s[i] - 'a' + 'A');
        }
    }
}

/* Puts the lines of b in f->buf, leaving out (and listing in f->reject) the records whose
 * payload the host cannot render. 0, or -1 when out of memory. */
static int render(struct efile *f, const struct sl_batch *b)
{
    f->len = 0;
    f->n_reject = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct sl_rec *r = &b->recs[i];
        char head[32];
        int hn = snprintf(head, sizeof(head), " %llu ", (unsigned long long)r->seq);
        f->json_len = 0;
        if (f->ctx->host->payload_json(r->payload, r->payload_len, &f->json, &f->json_len) < 0) {
            if (f->n_reject == f->reject_cap) {
                size_t nc = f->reject_cap ? f->reject_cap * 2 : 8;
                size_t *p = realloc(f->reject, nc * sizeof(*p));
                if (!p)
                    return -1;
                f->reject = p;
                f->reject_cap = nc;
            }
            f->reject[f->n_reject++] = i;
            continue;
        }
        if (f->upper)
            upper_strings(f->json, f->json_len);
        if (put(f, b->strand, strlen(b->strand)) < 0 || put(f, head, (size_t)hn) < 0 ||
            put(f, f->json, f->json_len) < 0 || put(f, "\n", 1) < 0)
            return -1;
    }
    return 0;
}

static int ef_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    const char *path = json_string_value(json_object_get(ctx->config, "path"));
    struct efile *f = calloc(1, sizeof(*f));
    if (!f)
        return ctx->host->fail(err, "out of memory");
    f->ctx = ctx;
    f->path = path;
    f->upper = json_is_true(json_object_get(ctx->config, "uppercase"));
    f->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd < 0) {
        int e = errno;
        free(f);
        return ctx->host->fail(err, "config.path: cannot open %s: %s", path, strerror(e));
    }
    struct stat st;
    f->regular = fstat(f->fd, &st) == 0 && S_ISREG(st.st_mode);
    info->batch_max = 100; /* one write and one fsync per 100 records at most */
    *self = f;
    return 0;
}

/* errno after a failed write(), fsync() or a write() of 0 bytes (which sets none). */
static int w_errno(int e)
{
    return e ? e : EIO;
}

/* One write + fsync per batch, SL_R_OK only once the batch is on disk (the framework then moves
 * the cursor past it). A failed write or fsync is cut off again (ftruncate to the size before)
 * and the framework's retry writes the whole batch anew: no half batch stays in the file, and
 * no retried fsync can pass for pages a failed one dropped. */
static enum sl_result ef_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct efile *f = self;
    if (render(f, b) < 0) {
        snprintf(out->error, sizeof(out->error), "out of memory");
        return SL_R_RETRY;
    }
    off_t before = lseek(f->fd, 0, SEEK_END);
    size_t done = 0;
    errno = 0;
    while (done < f->len) {
        ssize_t w = write(f->fd, f->buf + done, f->len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail;
        done += (size_t)w;
    }
    if (fsync(f->fd) < 0)
        goto fail;
    if (f->n_reject == 0)
        return SL_R_OK;
    /* Cannot happen with payloads the server accepted; those records become dead letters, every
     * other record of the batch is in the file. */
    snprintf(out->error, sizeof(out->error), "seq %llu: the payload cannot be rendered as JSON",
             (unsigned long long)b->recs[f->reject[0]].seq);
    out->reject = f->reject;
    out->n_reject = f->n_reject;
    return SL_R_REJECT;
fail:;
    int e = w_errno(errno);
    snprintf(out->error, sizeof(out->error), "write to %s: %s", f->path, strerror(e));
    if (f->regular && before >= 0 && ftruncate(f->fd, before) < 0)
        f->ctx->host->log(f->ctx->id, 2, "cannot cut a failed write off: %s", strerror(errno));
    return SL_R_RETRY;
}

/* The exact bytes send() appends for b, with no I/O (for tests and previews). */
static int ef_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct efile *f = self;
    if (render(f, b) < 0)
        return -1;
    if (!(*bytes = malloc(f->len ? f->len : 1)))
        return -1;
    memcpy(*bytes, f->buf, f->len);
    *len = f->len;
    return 0;
}

static void ef_close(void *self)
{
    struct efile *f = self;
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    free(f->buf);
    free(f->json);
    free(f->reject);
    free(f);
}

static const struct sl_sink_ops g_ops = {
    .open = ef_open, .send = ef_send, .format = ef_format, .close = ef_close};

static const struct sl_connector g_example_file = {
    .abi = SL_CONNECTOR_ABI,
    .name = "example_file",
    .direction = SL_OUTBOUND,
    .category = "utility",
    .description = "Example plugin: appends '<strand> <seq> <payload JSON>' lines to a file.",
    .fields = g_fields,
    .sink = &g_ops,
};

static const struct sl_connector *const g_list[] = {&g_example_file, NULL};

/* The one symbol Sluice looks up (SL_PLUGIN_SYMBOL). Everything else is hidden when built with
 * -fvisibility=hidden. */
__attribute__((visibility("default"))) const struct sl_connector *const *
sluice_connectors(const struct sl_host *host)
{
    /* host->abi is the host's SL_CONNECTOR_ABI; the host checks ours (g_example_file.abi). */
    (void)host;
    return g_list;
}
