/* The object-storage sink as a connector (kind object_storage; aliases s3-sink, object-storage):
 * its config table and its sink ops over objstore.c. Batches are stable (planned before upload,
 * so a retried or re-run batch writes the same objects) and flushed on server shutdown. */
#include "connectors/objstore/objstore.h"
#include "connectors/s3/s3.h"
#include "core/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_os_providers[] = {"s3", "local", "azure", "gcs", NULL};
static const char *const g_os_formats[] = {"json", "jsonl", "csv", "avro", "parquet", NULL};
static const char *const g_os_compression[] = {"none", "gzip",   "zstd", "snappy",
                                               "lz4",  "brotli", NULL};
static const char *const g_os_partitioning[] = {"none", "day", "hour", NULL};
static const char *const g_os_parquet_codecs[] = {"none", "snappy", "gzip", "zstd",
                                                  "lz4",  "brotli", NULL};
static const char *const g_os_avro_codecs[] = {"none", "deflate", "snappy", NULL};
static const char *const g_os_line_endings[] = {"lf", "crlf", NULL};

static const struct sl_field f_os_parquet[] = {
    {"compression", SL_F_ENUM, 0, "\"snappy\"", 0, "Codec of the column chunks.", 0, 0,
     g_os_parquet_codecs, NULL},
    {"row_group_size", SL_F_INT, 0, "10000", 0, "Rows per row group.", 1, 10000000, NULL, NULL},
    {"enable_statistics", SL_F_BOOL, 0, "true", 0, "Column statistics in the footer.", 0, 0, NULL,
     NULL},
    {"data_page_size", SL_F_INT, 0, "1048576", 0, "Data page size in bytes.", 4096, 1073741824,
     NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_os_avro[] = {
    {"compression", SL_F_ENUM, 0, "\"none\"", 0, "Block codec: none, deflate, snappy.", 0, 0,
     g_os_avro_codecs, NULL},
    {"schema", SL_F_STRING, 0, NULL, 0, "Explicit Avro schema (JSON text); inferred if absent.", 0,
     0, NULL, NULL},
    {"namespace", SL_F_STRING, 0, "\"sluice.events\"", 0, "Namespace of inferred schemas.", 0, 0,
     NULL, NULL},
    {"record_name", SL_F_STRING, 0, "\"Event\"", 0,
     "Record name of inferred schemas (also avro.name).", 0, 0, NULL, NULL},
    {"wire_format", SL_F_BOOL, 0, "false", 0, "Magic byte + schema id prefix.", 0, 0, NULL, NULL},
    {"schema_id", SL_F_INT, 0, NULL, 0, "Schema id for the wire format.", 0, 2147483647, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_os_csv[] = {
    {"delimiter", SL_F_STRING, 0, "\",\"", 0, "Field delimiter: , \\t ; |", 0, 0, NULL, NULL},
    {"include_header", SL_F_BOOL, 0, "true", 0, "Header row with the column names.", 0, 0, NULL,
     NULL},
    {"quote_char", SL_F_STRING, 0, "\"\\\"\"", 0, "Quote character.", 0, 0, NULL, NULL},
    {"always_quote", SL_F_BOOL, 0, "false", 0, "Quote every field.", 0, 0, NULL, NULL},
    {"line_ending", SL_F_ENUM, 0, "\"lf\"", 0, "lf or crlf.", 0, 0, g_os_line_endings, NULL},
    {"null_value", SL_F_STRING, 0, "\"NULL\"", 0, "How a null is written.", 0, 0, NULL, NULL},
    {"columns", SL_F_STRING_LIST, 0, NULL, 0, "Column order (default: every column, sorted).", 0, 0,
     NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_os_azure[] = {
    {"account", SL_F_STRING, 0, NULL, 0, "Storage account name.", 0, 0, NULL, NULL},
    {"access_key", SL_F_STRING, 0, NULL, SL_SECRET, "Account key (base64): Shared Key signing.", 0,
     0, NULL, NULL},
    {"connection_string", SL_F_STRING, 0, NULL, SL_SECRET,
     "AccountName=..;AccountKey=..;BlobEndpoint=.. (or UseDevelopmentStorage=true).", 0, 0, NULL,
     NULL},
    {"sas_token", SL_F_STRING, 0, NULL, SL_SECRET, "Shared access signature (query string).", 0, 0,
     NULL, NULL},
    {"use_managed_identity", SL_F_BOOL, 0, "false", 0,
     "Accepted; unavailable outside Azure (the health check says so).", 0, 0, NULL, NULL},
    {"endpoint", SL_F_URL, 0, NULL, 0,
     "Blob endpoint (default https://{account}.blob.core.windows.net; Azurite: "
     "http://127.0.0.1:10000/devstoreaccount1).",
     0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_os_gcs[] = {
    {"service_account_path", SL_F_STRING, 0, NULL, 0,
     "Service-account key file (JSON) on the server: RS256 JWT -> OAuth2 token.", 0, 0, NULL, NULL},
    {"use_adc", SL_F_BOOL, 0, "false", 0,
     "Application Default Credentials: the key file GOOGLE_APPLICATION_CREDENTIALS names.", 0, 0,
     NULL, NULL},
    {"endpoint", SL_F_URL, 0, NULL, 0,
     "JSON API endpoint (default https://storage.googleapis.com).", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_object_storage[] = {
    {"provider", SL_F_ENUM, 0, "\"s3\"", 0, "s3 (or S3-compatible), gcs, azure or local.", 0, 0,
     g_os_providers, NULL},
    {"bucket", SL_F_STRING, 0, NULL, 0, "Bucket (required for s3; also s3.bucket).", 0, 0, NULL,
     NULL},
    {"prefix", SL_F_STRING, 0, "\"\"", 0, "Key prefix: {prefix}/{strand}/...", 0, 0, NULL, NULL},
    {"root", SL_F_STRING, 0, NULL, 0, "provider local: the directory (also local.root).", 0, 0,
     NULL, NULL},
    {"format", SL_F_ENUM, 0, "\"json\"", 0, "json, jsonl, csv, avro or parquet.", 0, 0,
     g_os_formats, NULL},
    {"compression", SL_F_ENUM, 0, "\"none\"", 0, "Whole-file codec of json, jsonl and csv.", 0, 0,
     g_os_compression, NULL},
    {"include_metadata", SL_F_BOOL, 0, "true", 0,
     "Adds _record_hash, _seq, _timestamp_ms, _strand to every row.", 0, 0, NULL, NULL},
    {"partitioning", SL_F_ENUM, 0, "\"none\"", 0,
     "none, day (daily) or hour (hourly): year=/month=/day=[/hour=] of the record's UTC time.", 0,
     0, g_os_partitioning, NULL},
    {"batch_size", SL_F_INT, 0, "1000", 0,
     "Records per file (batch.size; 10000 by default with the StreamHouse spelling).", 1, 1000000,
     NULL, NULL},
    {"flush_interval_ms", SL_F_INT, 0, "60000", 0,
     "Longest wait before a partial batch is written (batch.interval_ms; flush_interval_secs).", 1,
     86400000, NULL, NULL},
    {"endpoint", SL_F_URL, 0, NULL, 0, "S3-compatible endpoint (path-style); absent: AWS.", 0, 0,
     NULL, NULL},
    {"region", SL_F_STRING, 0, "\"us-east-1\"", 0, "AWS region for SigV4.", 0, 0, NULL, NULL},
    {"force_path_style", SL_F_BOOL, 0, "false", 0, "Path-style URLs on AWS too.", 0, 0, NULL, NULL},
    {"access_key_id", SL_F_STRING, 0, NULL, 0, "SigV4 access key (absent: unsigned requests).", 0,
     0, NULL, NULL},
    {"secret_access_key", SL_F_STRING, 0, NULL, SL_SECRET, "SigV4 secret key.", 0, 0, NULL, NULL},
    {"session_token", SL_F_STRING, 0, NULL, SL_SECRET, "AWS session token (optional).", 0, 0, NULL,
     NULL},
    {"parquet", SL_F_OBJECT, 0, "{}", 0, "Parquet options.", 0, 0, NULL, f_os_parquet},
    {"avro", SL_F_OBJECT, 0, "{}", 0, "Avro options.", 0, 0, NULL, f_os_avro},
    {"csv", SL_F_OBJECT, 0, "{}", 0, "CSV options.", 0, 0, NULL, f_os_csv},
    {"azure", SL_F_OBJECT, 0, NULL, 0, "provider azure: credentials and endpoint.", 0, 0, NULL,
     f_os_azure},
    {"gcs", SL_F_OBJECT, 0, NULL, 0, "provider gcs: credentials and endpoint.", 0, 0, NULL,
     f_os_gcs},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int check_object_storage(json_t *c, struct sl_err *err)
{
    return sl_s3_check_keys(c, err) ? SL_E_INVAL : sl_os_check(c, err);
}

struct os_conn {
    const struct sl_sink_ctx *ctx;
    struct sl_os_sink *sink;
    CURL *curl;
    long timeout_ms;
};

static int os_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct os_conn *o = calloc(1, sizeof(*o));
    if (!o || !(o->curl = curl_easy_init())) {
        free(o);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    if (sl_os_sink_new(ctx->config, &o->sink, err) < 0) {
        curl_easy_cleanup(o->curl);
        free(o);
        return err && err->code ? err->code : SL_E_INVAL;
    }
    o->ctx = ctx;
    o->timeout_ms = (long)json_integer_value(json_object_get(ctx->config, "timeout_ms"));
    info->batch_max = sl_os_batch_size(o->sink);
    info->linger_ms = sl_os_interval_ms(o->sink);
    info->flags = SL_SINK_STABLE_BATCHES | SL_SINK_FLUSH_ON_SHUTDOWN;
    *self = o;
    return 0;
}

/* Stores every file of the batch in order, stopping at the first failure; the files stored
 * before it are reported as accepted (they are a prefix of the batch, and the rest is split the
 * same way when it is sent again). */
static enum sl_result os_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct os_conn *o = self;
    struct sl_os_batch *ob = NULL;
    struct sl_err err = {0};
    if (sl_os_batch_prepare(o->sink, b, &ob, &err) < 0) {
        snprintf(out->error, sizeof(out->error), "%s", err.msg);
        return SL_R_REJECT;
    }
    struct sl_os_io io = {.curl = o->curl,
                          .cancel = o->ctx->cancelled,
                          .arg = o->ctx->arg,
                          .timeout_ms = o->timeout_ms};
    struct sl_os_result res;
    long st = sl_os_batch_store(ob, &io, &res);
    out->accepted = (size_t)sl_os_batch_stored(ob);
    out->files = res.files;
    out->bytes = res.bytes;
    out->status = (int)st;
    out->retry_after_ms = res.retry_after_s >= 0 ? res.retry_after_s * 1000 : -1;
    snprintf(out->error, sizeof(out->error), "%s", res.error);
    snprintf(out->excerpt, sizeof(out->excerpt), "%s", res.excerpt);
    sl_os_batch_free(ob);
    if (st >= 200 && st < 300)
        return SL_R_OK;
    if (st == 0)
        return SL_R_NOT_CONNECTED; /* network or local I/O error: transient */
    if (st == 422)
        return SL_R_REJECT; /* cannot be encoded */
    return st == 408 || st == 429 || st >= 500 ? SL_R_RETRY : SL_R_REJECT;
}

static int os_check(void *self, struct sl_err *err)
{
    struct os_conn *o = self;
    struct sl_os_io io = {.curl = o->curl,
                          .cancel = o->ctx->cancelled,
                          .arg = o->ctx->arg,
                          .timeout_ms = o->timeout_ms};
    return sl_os_sink_check(o->sink, &io, err);
}

static void os_close(void *self)
{
    struct os_conn *o = self;
    if (!o)
        return;
    sl_os_sink_free(o->sink);
    curl_easy_cleanup(o->curl);
    free(o);
}

static const struct sl_sink_ops os_ops = {
    .open = os_open, .send = os_send, .check = os_check, .close = os_close};

static const char *const os_aliases[] = {"s3-sink", "object-storage", NULL};

const struct sl_connector sl_conn_object_storage = {
    .abi = SL_CONNECTOR_ABI,
    .name = "object_storage",
    .aliases = os_aliases,
    .direction = SL_OUTBOUND,
    .category = "storage",
    .description =
        "Batches records into JSON/JSONL/CSV/Avro/Parquet files on S3 or a local directory.",
    .fields = f_object_storage,
    .normalize = sl_os_normalize,
    .check_config = check_object_storage,
    .sink = &os_ops,
};
