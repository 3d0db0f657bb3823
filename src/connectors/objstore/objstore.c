/* The object-storage sink: config spellings, keys, partitions, the flush rule and batches. */
#include "connectors/objstore/objstore_int.h"

#include "core/buf.h"
#include "formats/filefmt.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- config normalization ---- */

enum coerce { C_INT, C_BOOL };

/* Fields whose value may arrive as a string (StreamHouse sends every config value as one), by the
 * path the client spelled: a top-level key, a dotted key, or group.member of a nested object. */
static const struct {
    const char *path;
    enum coerce type;
} g_coerce[] = {
    {"batch_size", C_INT},
    {"batch.size", C_INT},
    {"flush_interval_ms", C_INT},
    {"flush_interval_secs", C_INT},
    {"batch.interval_ms", C_INT},
    {"include_metadata", C_BOOL},
    {"force_path_style", C_BOOL},
    {"s3.force_path_style", C_BOOL},
    {"max_consecutive_failures", C_INT},
    {"timeout_ms", C_INT},
    {"parquet.row_group_size", C_INT},
    {"parquet.data_page_size", C_INT},
    {"parquet.enable_statistics", C_BOOL},
    {"avro.wire_format", C_BOOL},
    {"avro.schema_id", C_INT},
    {"csv.include_header", C_BOOL},
    {"csv.always_quote", C_BOOL},
    {"azure.use_managed_identity", C_BOOL},
    {"gcs.use_adc", C_BOOL},
};

/* Groups that may be spelled as a nested object or as dotted keys ("s3.bucket"). */
static const char *const g_groups[] = {"s3",  "local", "batch", "parquet", "avro",
                                       "csv", "azure", "gcs",   NULL};

/* Members of s3 / local / batch that move to the top level, and under which name. */
static const struct {
    const char *group, *member, *key;
} g_lift[] = {
    {"s3", "bucket", "bucket"},
    {"s3", "prefix", "prefix"},
    {"s3", "region", "region"},
    {"s3", "endpoint", "endpoint"},
    {"s3", "force_path_style", "force_path_style"},
    {"s3", "access_key_id", "access_key_id"},
    {"s3", "secret_access_key", "secret_access_key"},
    {"s3", "session_token", "session_token"},
    {"local", "root", "root"},
    {"batch", "size", "batch_size"},
    {"batch", "interval_ms", "flush_interval_ms"},
};

static int bad(struct sl_err *err, const char *path, const char *msg, const char *got)
{
    return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.%s: %s%s%.60s%s", path, msg,
                      got ? ", got '" : "", got ? got : "", got ? "'" : "");
}

static int parse_ll(const char *s, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end || errno || (*s != '-' && (*s < '0' || *s > '9')))
        return -1;
    *out = v;
    return 0;
}

/* A new reference to v with a string turned into the type the path wants, or NULL (err set). */
static json_t *coerce(const char *path, json_t *v, struct sl_err *err)
{
    if (strcmp(path, "csv.columns") == 0 && json_is_string(v)) { /* "a,b,c" */
        json_t *arr = json_array();
        const char *s = json_string_value(v);
        while (*s) {
            size_t k = strcspn(s, ",");
            json_array_append_new(arr, json_stringn(s, k));
            s += k + (s[k] == ',');
        }
        return arr;
    }
    for (size_t i = 0; i < sizeof(g_coerce) / sizeof(g_coerce[0]); i++) {
        if (strcmp(g_coerce[i].path, path) != 0 || !json_is_string(v))
            continue;
        const char *s = json_string_value(v);
        long long n;
        if (g_coerce[i].type == C_INT) {
            if (parse_ll(s, &n) < 0) {
                bad(err, path, "must be an integer (or a string holding one)", s);
                return NULL;
            }
            return json_integer(n);
        }
        if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)
            return json_true();
        if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0)
            return json_false();
        bad(err, path, "must be a boolean (or the string \"true\" or \"false\")", s);
        return NULL;
    }
    return json_incref(v);
}

static int is_group(const char *name, size_t len)
{
    for (const char *const *g = g_groups; *g; g++)
        if (strlen(*g) == len && strncmp(*g, name, len) == 0)
            return 1;
    return 0;
}

/* Puts v (coerced) at out[group][member], creating the group; a member given twice is an error. */
static int put_member(json_t *out, const char *group, const char *member, json_t *v,
                      struct sl_err *err)
{
    char path[256];
    snprintf(path, sizeof(path), "%s.%s", group, member);
    json_t *g = json_object_get(out, group);
    if (!g) {
        g = json_object();
        json_object_set_new(out, group, g);
    } else if (!json_is_object(g)) {
        return bad(err, group, "must be an object", NULL);
    }
    if (json_object_get(g, member))
        return bad(err, path, "given twice (nested and dotted)", NULL);
    json_t *c = coerce(path, v, err);
    if (!c)
        return SL_E_INVAL;
    json_object_set_new(g, member, c);
    return 0;
}

/* Moves a member of a group to the top level under key. */
static int lift(json_t *out, const char *group, const char *member, const char *key,
                struct sl_err *err)
{
    json_t *g = json_object_get(out, group);
    json_t *v = json_object_get(g, member);
    if (!v)
        return 0;
    json_t *top = json_object_get(out, key);
    if (top && !json_equal(top, v)) {
        char path[256];
        snprintf(path, sizeof(path), "%s.%s", group, member);
        char msg[128];
        snprintf(msg, sizeof(msg), "conflicts with config.%s", key);
        return bad(err, path, msg, NULL);
    }
    json_object_set(out, key, v);
    json_object_del(g, member);
    return 0;
}

json_t *sl_os_normalize(const json_t *in, struct sl_err *err)
{
    if (!json_is_object(in)) {
        sl_err_set(err, SL_E_INVAL, "invalid_config", "config: must be an object");
        return NULL;
    }
    json_t *out = json_object();
    int streamhouse = 0;
    const char *key;
    json_t *v;
    /* plain keys first (nested groups copied member by member, coerced) */
    json_object_foreach((json_t *)in, key, v)
    {
        if (strchr(key, '.'))
            continue;
        if (is_group(key, strlen(key)) && json_is_object(v)) {
            const char *m;
            json_t *mv;
            json_object_foreach(v, m, mv) if (put_member(out, key, m, mv, err) < 0) goto fail;
            if (json_object_size(v) == 0)
                json_object_set_new(out, key, json_object());
            continue;
        }
        json_t *c = coerce(key, v, err);
        if (!c)
            goto fail;
        json_object_set_new(out, key, c);
    }
    /* then the dotted ones: "s3.bucket" is s3: {bucket} */
    json_object_foreach((json_t *)in, key, v)
    {
        const char *dot = strchr(key, '.');
        if (!dot)
            continue;
        if (!is_group(key, (size_t)(dot - key))) { /* left for the schema: "unknown field" */
            json_object_set(out, key, v);
            continue;
        }
        char group[16];
        snprintf(group, sizeof(group), "%.*s", (int)(dot - key), key);
        streamhouse |= strcmp(group, "s3") == 0 || strcmp(group, "batch") == 0;
        if (put_member(out, group, dot + 1, v, err) < 0)
            goto fail;
    }
    /* flush_interval_secs (Rivven) is flush_interval_ms / 1000 */
    json_t *secs = json_object_get(out, "flush_interval_secs");
    if (secs) {
        if (!json_is_integer(secs) || json_integer_value(secs) < 1 ||
            json_integer_value(secs) > 86400) {
            bad(err, "flush_interval_secs", "must be an integer between 1 and 86400", NULL);
            goto fail;
        }
        json_t *ms = json_integer(json_integer_value(secs) * 1000);
        json_t *given = json_object_get(out, "flush_interval_ms");
        int clash = given && !json_equal(given, ms);
        json_decref(ms);
        if (clash) {
            bad(err, "flush_interval_secs", "conflicts with flush_interval_ms", NULL);
            goto fail;
        }
        json_object_set_new(out, "flush_interval_ms",
                            json_integer(json_integer_value(secs) * 1000));
        json_object_del(out, "flush_interval_secs");
    }
    for (size_t i = 0; i < sizeof(g_lift) / sizeof(g_lift[0]); i++)
        if (lift(out, g_lift[i].group, g_lift[i].member, g_lift[i].key, err) < 0)
            goto fail;
    /* what is left in s3 / local / batch is unknown */
    for (const char *const *g = g_groups; g < g_groups + 3; g++) {
        json_t *gv = json_object_get(out, *g);
        if (!gv)
            continue;
        if (json_is_object(gv) && json_object_size(gv) > 0) {
            char path[128];
            void *it = json_object_iter(gv);
            snprintf(path, sizeof(path), "%s.%.60s", *g, json_object_iter_key(it));
            bad(err, path, "unknown field", NULL);
            goto fail;
        }
        if (json_is_object(gv))
            json_object_del(out, *g);
    }
    const char *part = json_string_value(json_object_get(out, "partitioning"));
    if (part && strcmp(part, "hourly") == 0)
        json_object_set_new(out, "partitioning", json_string("hour"));
    else if (part && strcmp(part, "daily") == 0)
        json_object_set_new(out, "partitioning", json_string("day"));
    /* the StreamHouse seed's default batch.size is 10000 (Rivven's and ours: 1000) */
    /* avro.name is another spelling of avro.record_name */
    json_t *avro = json_object_get(out, "avro");
    json_t *aname = json_object_get(avro, "name");
    if (aname) {
        json_t *rn = json_object_get(avro, "record_name");
        if (rn && !json_equal(rn, aname)) {
            bad(err, "avro.name", "conflicts with avro.record_name", NULL);
            goto fail;
        }
        json_object_set(avro, "record_name", aname);
        json_object_del(avro, "name");
    }
    if (streamhouse && !json_object_get(out, "batch_size"))
        json_object_set_new(out, "batch_size", json_integer(10000));
    return out;
fail:
    json_decref(out);
    return NULL;
}

static int has_dotdot(const char *s)
{
    for (const char *p = s; p && *p;) {
        size_t k = strcspn(p, "/");
        if (k == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        p += k + (p[k] == '/');
    }
    return 0;
}

/* Azure's container naming rules (lowercase letters, digits, single hyphens, 3-63). */
static int container_name(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 3 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        int ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
                 (s[i] == '-' && s[i + 1] != '-');
        if (!ok)
            return 0;
    }
    return 1;
}

int sl_os_check(const json_t *c, struct sl_err *err)
{
    const char *provider = json_string_value(json_object_get(c, "provider"));
    int local = provider && strcmp(provider, "local") == 0;
    int azure = provider && strcmp(provider, "azure") == 0;
    if (azure && !json_object_get(c, "bucket"))
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.bucket: required with provider azure (the container's name)");
    if (!local && !json_object_get(c, "bucket"))
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.bucket: required with provider %s (or s3.bucket)",
                          provider ? provider : "s3");
    if (azure && !container_name(json_string_value(json_object_get(c, "bucket"))))
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.bucket: an Azure container name is 3-63 lowercase letters, "
                          "digits and single hyphens, starting with a letter or digit");
    if (json_object_get(c, "azure") && !azure)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.azure: only with provider azure");
    if (azure) {
        struct sl_os_az az;
        if (sl_os_az_init(json_object_get(c, "azure"), &az, err) < 0)
            return SL_E_INVAL;
        sl_os_az_release(&az);
    }
    int gcs = provider && strcmp(provider, "gcs") == 0;
    if (json_object_get(c, "gcs") && !gcs)
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.gcs: only with provider gcs");
    if (gcs) {
        struct sl_os_gcs g;
        if (sl_os_gcs_init(json_object_get(c, "gcs"), &g, err) < 0)
            return SL_E_INVAL;
        sl_os_gcs_release(&g);
    }
    if (local && !json_object_get(c, "root"))
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.root: required with provider local (or local.root), a directory");
    if (local && has_dotdot(json_string_value(json_object_get(c, "prefix"))))
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.prefix: must not hold a '..' segment with provider local");
    const char *fmt = json_string_value(json_object_get(c, "format"));
    const char *comp = json_string_value(json_object_get(c, "compression"));
    if (fmt && comp && strcmp(comp, "none") != 0 &&
        (strcmp(fmt, "avro") == 0 || strcmp(fmt, "parquet") == 0))
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.compression: only for json, jsonl and csv (%s compresses "
                          "inside the file: %s.compression)",
                          fmt, fmt);
    struct sl_ff_opts o;
    if (sl_ff_opts_from_config(c, &o, err) < 0) {
        sl_ff_opts_free(&o);
        return SL_E_INVAL;
    }
    /* A format or codec this build cannot write is refused now, not dead-lettered later. An empty
     * batch is enough to ask the encoder. */
    struct sl_buf probe;
    sl_buf_init(&probe, 0);
    struct sl_err e = {0};
    int rc = sl_ff_encode(&o, "probe", NULL, 0, &probe, &e);
    sl_buf_release(&probe);
    const char *field = strcmp(e.ecode, "unsupported_format") == 0 ? "format"
                        : o.format == SL_FF_PARQUET                ? "parquet.compression"
                        : o.format == SL_FF_AVRO                   ? "avro.compression"
                                                                   : "compression";
    sl_ff_opts_free(&o);
    if (rc < 0 && strncmp(e.ecode, "unsupported", 11) == 0)
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.%s: %s (not in this build)",
                          field, e.msg);
    return 0;
}

long sl_os_http(const struct sl_os_io *io, const char *method, const char *url,
                struct curl_slist *hdrs, const uint8_t *body, size_t len, const char *key,
                const char *query, struct sl_httpc_resp *r, struct sl_os_result *res)
{
    long status = 0;
    CURLcode cc = sl_httpc_send(io->curl, method, url, hdrs, body, len, io->timeout_ms, r,
                                io->cancel, io->arg, &status);
    if (cc != CURLE_OK) {
        snprintf(res->error, sizeof(res->error), "%s %.150s: %.80s", method, key,
                 curl_easy_strerror(cc));
        return 0;
    }
    snprintf(res->error, sizeof(res->error), "%s %.150s%s%.40s: HTTP %ld", method, key,
             query ? "?" : "", query ? query : "", status);
    if (status < 200 || status >= 300) {
        snprintf(res->excerpt, sizeof(res->excerpt), "%.*s",
                 (int)(r->body.len < sizeof(res->excerpt) ? r->body.len : sizeof(res->excerpt) - 1),
                 r->body.data ? (const char *)r->body.data : "");
        res->retry_after_s = r->retry_after_s;
    }
    return status;
}

/* ---- keys and partitions ---- */

void sl_os_partition(enum sl_os_part mode, uint64_t ts_ms, char *out, size_t n)
{
    if (mode == SL_OS_PART_NONE) {
        snprintf(out, n, "%s", "");
        return;
    }
    time_t t = (time_t)(ts_ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    if (mode == SL_OS_PART_DAY)
        snprintf(out, n, "year=%04d/month=%02d/day=%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday);
    else
        snprintf(out, n, "year=%04d/month=%02d/day=%02d/hour=%02d", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour);
}

int sl_os_key(char *out, size_t n, const char *prefix, const char *strand, const char *partition,
              uint64_t first, uint64_t last, const char *ext)
{
    const char *p = prefix ? prefix : "";
    while (*p == '/')
        p++;
    size_t pl = strlen(p);
    while (pl && p[pl - 1] == '/')
        pl--;
    int k = snprintf(out, n, "%.*s%s%s/%s%s%0*" PRIu64 "-%0*" PRIu64 ".%s", (int)pl, p,
                     pl ? "/" : "", strand, partition, *partition ? "/" : "", SL_OS_SEQ_DIGITS,
                     first, SL_OS_SEQ_DIGITS, last, ext);
    if (k < 0 || (size_t)k >= n)
        return sl_err_set(NULL, SL_E_TOOBIG, "key_too_long", "key too long");
    return 0;
}

static uint64_t bucket_of(enum sl_os_part mode, uint64_t ts_ms)
{
    return mode == SL_OS_PART_DAY    ? ts_ms / 86400000u
           : mode == SL_OS_PART_HOUR ? ts_ms / 3600000u
                                     : 0;
}

size_t sl_os_split(enum sl_os_part mode, const uint64_t *ts, size_t n, struct sl_os_span *out)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || bucket_of(mode, ts[i]) != bucket_of(mode, ts[i - 1]))
            out[k++] = (struct sl_os_span){.start = i, .count = 0};
        out[k - 1].count++;
    }
    return k;
}

/* ---- the sink ---- */

struct sl_os_sink {
    json_t *cfg; /* owns every string below */
    struct sl_os_target target;
    struct sl_os_az az;   /* provider azure */
    struct sl_os_gcs gcs; /* provider gcs */
    struct sl_ff_opts ff;
    enum sl_os_part part;
    const char *prefix;
    uint64_t batch_size, interval_ms;
};

static const char *cstr(const json_t *c, const char *k)
{
    return json_string_value(json_object_get(c, k));
}

int sl_os_sink_new(const json_t *cfg, struct sl_os_sink **out, struct sl_err *err)
{
    struct sl_os_sink *s = calloc(1, sizeof(*s));
    if (!s)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    s->cfg = json_deep_copy(cfg);
    if (!s->cfg || sl_ff_opts_from_config(s->cfg, &s->ff, err) < 0) {
        sl_os_sink_free(s);
        return err && err->code ? err->code : SL_E_NOMEM;
    }
    const json_t *c = s->cfg;
    const char *provider = cstr(c, "provider");
    const char *part = cstr(c, "partitioning");
    s->target.provider = provider && strcmp(provider, "local") == 0   ? SL_OS_LOCAL
                         : provider && strcmp(provider, "azure") == 0 ? SL_OS_AZURE
                         : provider && strcmp(provider, "gcs") == 0   ? SL_OS_GCS
                                                                      : SL_OS_S3;
    if (s->target.provider == SL_OS_AZURE &&
        sl_os_az_init(json_object_get(c, "azure"), &s->az, err) < 0) {
        sl_os_sink_free(s);
        return SL_E_INVAL;
    }
    s->target.az = &s->az;
    if (s->target.provider == SL_OS_GCS &&
        sl_os_gcs_init(json_object_get(c, "gcs"), &s->gcs, err) < 0) {
        sl_os_sink_free(s);
        return SL_E_INVAL;
    }
    s->target.gcs = &s->gcs;
    s->target.bucket = cstr(c, "bucket");
    s->target.region = cstr(c, "region") ? cstr(c, "region") : "us-east-1";
    s->target.endpoint = cstr(c, "endpoint");
    s->target.path_style =
        json_is_true(json_object_get(c, "force_path_style")) || s->target.endpoint != NULL;
    s->target.access_key_id = cstr(c, "access_key_id");
    s->target.secret_access_key = cstr(c, "secret_access_key");
    s->target.session_token = cstr(c, "session_token");
    s->target.root = cstr(c, "root");
    s->part = !part || strcmp(part, "none") == 0 ? SL_OS_PART_NONE
              : strcmp(part, "hour") == 0        ? SL_OS_PART_HOUR
                                                 : SL_OS_PART_DAY;
    s->prefix = cstr(c, "prefix") ? cstr(c, "prefix") : "";
    long long bs = json_integer_value(json_object_get(c, "batch_size"));
    long long iv = json_integer_value(json_object_get(c, "flush_interval_ms"));
    s->batch_size = bs > 0 ? (uint64_t)bs : 1000;
    s->interval_ms = iv > 0 ? (uint64_t)iv : 60000;
    *out = s;
    return 0;
}

void sl_os_sink_free(struct sl_os_sink *s)
{
    if (!s)
        return;
    sl_ff_opts_free(&s->ff);
    sl_os_az_release(&s->az);
    sl_os_gcs_release(&s->gcs);
    json_decref(s->cfg);
    free(s);
}

uint64_t sl_os_batch_size(const struct sl_os_sink *s)
{
    return s->batch_size;
}

uint64_t sl_os_interval_ms(const struct sl_os_sink *s)
{
    return s->interval_ms;
}

/* ---- batches ---- */

struct os_file {
    size_t start, count;
    char key[SL_OS_KEY_MAX];
};

struct sl_os_batch {
    struct sl_os_sink *sink;
    char strand[SL_STRAND_NAME_MAX + 1];
    struct sl_ff_record *recs;
    size_t n;
    struct os_file *files;
    size_t nfiles, done;
};

void sl_os_batch_free(struct sl_os_batch *b)
{
    if (!b)
        return;
    free(b->recs);
    free(b->files);
    free(b);
}

int sl_os_batch_prepare(struct sl_os_sink *s, const struct sl_batch *in, struct sl_os_batch **out,
                        struct sl_err *err)
{
    size_t n = in->n;
    struct sl_os_batch *b = calloc(1, sizeof(*b));
    uint64_t *ts = calloc(n ? n : 1, sizeof(*ts));
    struct sl_os_span *spans = calloc(n ? n : 1, sizeof(*spans));
    int rc = 0;
    if (!b || !ts || !spans || !(b->recs = calloc(n ? n : 1, sizeof(*b->recs)))) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto out;
    }
    b->sink = s;
    b->n = n;
    snprintf(b->strand, sizeof(b->strand), "%s", in->strand);
    for (size_t i = 0; i < b->n; i++) {
        const struct sl_rec *r = &in->recs[i];
        b->recs[i] = (struct sl_ff_record){.payload = r->payload, /* the segment mapping */
                                           .payload_len = r->payload_len,
                                           .seq = r->seq,
                                           .timestamp_ms = r->timestamp_ms,
                                           .hash = r->hash};
        ts[i] = r->timestamp_ms;
    }
    b->nfiles = sl_os_split(s->part, ts, b->n, spans);
    b->files = calloc(b->nfiles ? b->nfiles : 1, sizeof(*b->files));
    if (!b->files) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto out;
    }
    for (size_t f = 0; f < b->nfiles; f++) {
        struct os_file *of = &b->files[f];
        char part[64];
        of->start = spans[f].start;
        of->count = spans[f].count;
        sl_os_partition(s->part, ts[of->start], part, sizeof(part));
        if (sl_os_key(of->key, sizeof(of->key), s->prefix, b->strand, part, b->recs[of->start].seq,
                      b->recs[of->start + of->count - 1].seq, sl_ff_extension(&s->ff)) < 0) {
            rc = sl_err_set(err, SL_E_INVAL, "key_too_long", "object key too long");
            goto out;
        }
    }
out:
    free(ts);
    free(spans);
    if (rc < 0) {
        sl_os_batch_free(b);
        b = NULL;
    }
    *out = b;
    return rc;
}

long sl_os_batch_store(struct sl_os_batch *b, const struct sl_os_io *io, struct sl_os_result *res)
{
    struct sl_os_sink *s = b->sink;
    res->retry_after_s = -1;
    res->excerpt[0] = res->error[0] = 0;
    res->files = res->bytes = 0;
    while (b->done < b->nfiles) {
        struct os_file *f = &b->files[b->done];
        struct sl_buf file;
        sl_buf_init(&file, 0);
        struct sl_err e = {0};
        if (sl_ff_encode(&s->ff, b->strand, b->recs + f->start, f->count, &file, &e) < 0) {
            snprintf(res->error, sizeof(res->error), "encode %.120s: %.120s", f->key, e.msg);
            sl_buf_release(&file);
            return 422;
        }
        const char *ctype = sl_ff_content_type(&s->ff);
        long st = s->target.provider == SL_OS_LOCAL
                      ? sl_os_local_put(&s->target, f->key, file.data, file.len, res)
                  : s->target.provider == SL_OS_AZURE
                      ? sl_os_az_put(&s->target, io, f->key, file.data, file.len, ctype, res)
                  : s->target.provider == SL_OS_GCS
                      ? sl_os_gcs_put(&s->target, io, f->key, file.data, file.len, ctype, res)
                      : sl_os_s3_put(&s->target, io, f->key, file.data, file.len, ctype, res);
        size_t len = file.len;
        sl_buf_release(&file);
        if (st < 200 || st >= 300)
            return st;
        b->done++;
        res->files++;
        res->bytes += len;
    }
    return 200;
}

uint64_t sl_os_batch_stored(const struct sl_os_batch *b)
{
    uint64_t n = 0;
    for (size_t i = 0; i < b->done; i++)
        n += b->files[i].count;
    return n;
}

size_t sl_os_batch_files(const struct sl_os_batch *b)
{
    return b->nfiles;
}

const char *sl_os_batch_key(const struct sl_os_batch *b, size_t i)
{
    return i < b->nfiles ? b->files[i].key : NULL;
}

int sl_os_sink_check(struct sl_os_sink *s, const struct sl_os_io *io, struct sl_err *err)
{
    struct sl_os_result res = {.retry_after_s = -1};
    long st = s->target.provider == SL_OS_LOCAL   ? sl_os_local_probe(&s->target, &res)
              : s->target.provider == SL_OS_AZURE ? sl_os_az_probe(&s->target, io, &res)
              : s->target.provider == SL_OS_GCS   ? sl_os_gcs_probe(&s->target, io, &res)
                                                  : sl_os_s3_probe(&s->target, io, &res);
    if (st >= 200 && st < 300)
        return 0;
    if (st == 404)
        return sl_err_set(err, SL_E_NOTFOUND, "unhealthy", "%s %s does not exist (%s)",
                          s->target.provider == SL_OS_AZURE ? "container" : "bucket",
                          s->target.bucket, res.error);
    if (st == 401 || st == 403)
        return sl_err_set(err, SL_E_INVAL, "unhealthy", "access to bucket %s is denied (%s)",
                          s->target.bucket, res.error);
    if (st == 0 && s->target.provider != SL_OS_LOCAL)
        return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "cannot reach %s: %s",
                          s->target.provider == SL_OS_AZURE ? s->az.base
                          : s->target.provider == SL_OS_GCS ? s->gcs.base
                          : s->target.endpoint              ? s->target.endpoint
                                                            : "S3",
                          res.error);
    return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "%s", res.error);
}
