/* The stdout sink (Rivven's Console, `connector: stdout`): writes every record to the server's
 * standard output, one line per record (format json: the SapixDB event object with strand and
 * seq; format text: "strand seq timestamp_ms agent_id payload"), or indented JSON with pretty.
 * For debugging and for measuring the framework's own cost per record (to /dev/null). */
#include "connectors/stdout/stdout.h"
#include "connectors/httpc.h"
#include "core/err.h"
#include "formats/json_mp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const g_formats[] = {"json", "text", NULL};

static const struct sl_field f_stdout[] = {
    {"format", SL_F_ENUM, 0, "\"json\"", 0,
     "json: one event object per line; text: strand seq timestamp_ms agent_id payload.", 0, 0,
     g_formats, NULL},
    {"pretty", SL_F_BOOL, 0, "false", 0, "Indented JSON (format json).", 0, 0, NULL, NULL},
    {"batch_size", SL_F_INT, 0, "1000", 0, "Records per write.", 1, 100000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int payload(struct sl_buf *b, const struct sl_rec *r)
{
    size_t used;
    struct sl_jerr je;
    return sl_mp_to_json(r->payload, r->payload_len, &used, b, 200, &je);
}

static int one(struct sl_buf *b, const char *strand, const struct sl_rec *r, int text, int pretty)
{
    if (text) {
        sl_buf_printf(b, "%s %llu %llu %.*s ", strand, (unsigned long long)r->seq,
                      (unsigned long long)r->timestamp_ms, (int)r->source_len, r->source);
        if (payload(b, r) < 0)
            return -1;
        return sl_buf_putc(b, '\n');
    }
    size_t start = b->len;
    sl_buf_puts(b, "{\"strand\":");
    sl_buf_json_str(b, strand, strlen(strand));
    sl_buf_printf(b, ",\"seq\":%llu,", (unsigned long long)r->seq);
    if (sl_event_json_members(b, r) < 0) /* the webhook's event, after strand and seq */
        return -1;
    sl_buf_putc(b, '}');
    if (pretty && !b->failed) {
        json_t *o = json_loadb((const char *)b->data + start, b->len - start, 0, NULL);
        char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        json_decref(o);
        if (!s)
            return -1;
        b->len = start;
        sl_buf_puts(b, s);
        free(s);
    }
    return sl_buf_putc(b, '\n');
}

int sl_stdout_format(const struct sl_batch *b, int text, int pretty, struct sl_buf *out)
{
    for (size_t i = 0; i < b->n; i++)
        if (one(out, b->strand, &b->recs[i], text, pretty) < 0)
            return -1;
    return out->failed ? -1 : 0;
}

struct console {
    int text, pretty;
    struct sl_buf buf;
    size_t *reject, reject_cap;
};

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int co_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct console *c = calloc(1, sizeof(*c));
    if (!c)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    const char *fmt = json_string_value(json_object_get(ctx->config, "format"));
    c->text = fmt && strcmp(fmt, "text") == 0;
    c->pretty = json_is_true(json_object_get(ctx->config, "pretty"));
    sl_buf_init(&c->buf, 0);
    info->batch_max = (uint64_t)json_integer_value(json_object_get(ctx->config, "batch_size"));
    *self = c;
    return 0;
}

/* One write per batch (whole lines); a record whose payload cannot be rendered is left out and
 * becomes a dead letter; a failed write (a closed pipe, a full disk) is retried. */
static enum sl_result co_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct console *c = self;
    size_t nrej = 0;
    sl_buf_reset(&c->buf);
    for (size_t i = 0; i < b->n; i++) {
        size_t mark = c->buf.len;
        if (one(&c->buf, b->strand, &b->recs[i], c->text, c->pretty) == 0)
            continue;
        c->buf.len = mark;
        c->buf.failed = 0;
        if (nrej == c->reject_cap) {
            size_t nc = c->reject_cap ? c->reject_cap * 2 : 16;
            size_t *r = realloc(c->reject, nc * sizeof(*r));
            if (!r)
                return SL_R_RETRY;
            c->reject = r;
            c->reject_cap = nc;
        }
        c->reject[nrej++] = i;
        snprintf(out->error, sizeof(out->error), "seq %llu: the payload cannot be rendered",
                 (unsigned long long)b->recs[i].seq);
    }
    if (write_all(STDOUT_FILENO, c->buf.data, c->buf.len) < 0) {
        snprintf(out->error, sizeof(out->error), "write to stdout: %s", strerror(errno));
        return SL_R_RETRY;
    }
    if (!nrej)
        return SL_R_OK;
    out->reject = c->reject;
    out->n_reject = nrej;
    return SL_R_REJECT;
}

static int co_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct console *c = self;
    struct sl_buf out;
    sl_buf_init(&out, 0);
    if (sl_stdout_format(b, c->text, c->pretty, &out) < 0) {
        sl_buf_release(&out);
        return -1;
    }
    *bytes = (uint8_t *)sl_buf_steal(&out, len);
    return *bytes ? 0 : -1;
}

static void co_close(void *self)
{
    struct console *c = self;
    if (c) {
        sl_buf_release(&c->buf);
        free(c->reject);
    }
    free(c);
}

static const struct sl_sink_ops co_ops = {
    .open = co_open, .send = co_send, .format = co_format, .close = co_close};

static const char *const co_aliases[] = {"console", NULL};

const struct sl_connector sl_conn_stdout = {
    .abi = SL_CONNECTOR_ABI,
    .name = "stdout",
    .aliases = co_aliases,
    .direction = SL_OUTBOUND,
    .category = "utility",
    .description = "Writes every record to the server's standard output (debugging).",
    .fields = f_stdout,
    .sink = &co_ops,
};
