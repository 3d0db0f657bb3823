#include "engine/kinds.h"

#include "connectors/objstore/objstore.h"
#include "connectors/pg/cdc.h"
#include "strand/record.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define SECRET 1
#define HAS_PASSWORD 2 /* a connection string: only the password inside is hidden */

static const char *const g_start[] = {"head", "earliest", NULL};
static const char *const g_offset_reset[] = {"latest", "earliest", NULL};
static const char *const g_tls_modes[] = {"disable", "prefer", "require", NULL};
static const char *const g_snapshot_modes[] = {"initial", "never", "initial_only", NULL};

static const struct sl_field f_rate_limit[] = {
    {"events_per_second", SL_F_NUMBER, 1, NULL, 0, "Sustained pushes per second.", 0, 0, NULL,
     NULL},
    {"burst", SL_F_INT, 0, NULL, 0, "Bucket size (default: events_per_second, at least 1).", 1,
     1000000000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_retry[] = {
    {"initial_backoff_ms", SL_F_INT, 0, "200", 0, "First retry delay.", 1, 3600000, NULL, NULL},
    {"max_backoff_ms", SL_F_INT, 0, "30000", 0, "Largest retry delay.", 1, 86400000, NULL, NULL},
    {"max_retries", SL_F_INT, 0, "-1", 0, "Retries before dead-lettering; -1 = forever.", -1,
     1000000000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_breaker[] = {
    {"failure_threshold", SL_F_INT, 0, "5", 0, "Consecutive failures that open the breaker.", 1,
     1000000, NULL, NULL},
    {"reset_timeout_secs", SL_F_INT, 0, "30", 0, "Seconds open before a trial request.", 1, 86400,
     NULL, NULL},
    {"success_threshold", SL_F_INT, 0, "2", 0, "Successes in half-open state that close it.", 1,
     1000000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_tls[] = {
    {"mode", SL_F_ENUM, 0, "\"prefer\"", 0, "disable, prefer or require.", 0, 0, g_tls_modes, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

#define OUTBOUND_COMMON                                                                            \
    {"start",    SL_F_ENUM, 0,                                                                     \
     "\"head\"", 0,         "Where a new connector starts: head (new records only) or earliest.",  \
     0,          0,         g_start,                                                               \
     NULL},                                                                                        \
        {"retry", SL_F_OBJECT, 0,    "{}",   0, "Retry with exponential backoff and full jitter.", \
         0,       0,           NULL, f_retry},                                                     \
        {"circuit_breaker",                                                                        \
         SL_F_OBJECT,                                                                              \
         0,                                                                                        \
         "{}",                                                                                     \
         0,                                                                                        \
         "Stops sending while a target keeps failing.",                                            \
         0,                                                                                        \
         0,                                                                                        \
         NULL,                                                                                     \
         f_breaker},                                                                               \
        {"max_consecutive_failures",                                                               \
         SL_F_INT,                                                                                 \
         0,                                                                                        \
         "0",                                                                                      \
         0,                                                                                        \
         "Failures in a row after which the connector goes to failed; 0 = never.",                 \
         0,                                                                                        \
         1000000000,                                                                               \
         NULL,                                                                                     \
         NULL},                                                                                    \
    {                                                                                              \
        "timeout_ms", SL_F_INT, 0, "10000", 0, "Request timeout.", 1, 600000, NULL, NULL           \
    }

static const struct sl_field f_rest_bridge[] = {
    {"flags", SL_F_INT, 0, "0", 0,
     "Flags of pushed records (2 = TOMBSTONE) unless the request sets them.", 0, 4294967295LL, NULL,
     NULL},
    {"strand", SL_F_STRAND, 0, "\"default\"", 0, "Strand the pushes are written to.", 0, 0, NULL,
     NULL},
    {"rate_limit", SL_F_OBJECT, 0, NULL, 0, "Token bucket; over it the push answers 429.", 0, 0,
     NULL, f_rate_limit},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_webhook[] = {
    {"url", SL_F_URL, 1, NULL, 0, "POST target.", 0, 0, NULL, NULL},
    {"secret", SL_F_STRING, 0, NULL, SECRET, "Sent as Authorization: Bearer <secret>.", 0, 0, NULL,
     NULL},
    {"batch_size", SL_F_INT, 0, "1", 0, "Events per POST; above 1 the body is a JSON array.", 1,
     10000, NULL, NULL},
    OUTBOUND_COMMON,
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_s3[] = {
    {"endpoint", SL_F_URL, 1, NULL, 0, "S3-compatible endpoint (path-style URLs).", 0, 0, NULL,
     NULL},
    {"bucket", SL_F_STRING, 1, NULL, 0, "Bucket.", 0, 0, NULL, NULL},
    {"prefix", SL_F_STRING, 0, "\"\"", 0, "Key prefix; objects are {prefix}/{record_hash}.json.", 0,
     0, NULL, NULL},
    {"auth_header", SL_F_STRING, 0, NULL, SECRET, "Sent verbatim as Authorization (R2, MinIO).", 0,
     0, NULL, NULL},
    {"access_key_id", SL_F_STRING, 0, NULL, 0, "AWS SigV4 access key.", 0, 0, NULL, NULL},
    {"secret_access_key", SL_F_STRING, 0, NULL, SECRET, "AWS SigV4 secret key.", 0, 0, NULL, NULL},
    {"session_token", SL_F_STRING, 0, NULL, SECRET, "AWS session token (optional).", 0, 0, NULL,
     NULL},
    {"region", SL_F_STRING, 0, "\"us-east-1\"", 0, "AWS region for SigV4.", 0, 0, NULL, NULL},
    OUTBOUND_COMMON,
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* Both dialects: SapixDB (connection_string, slot, publication, table_filter) and Rivven's
 * postgres-cdc source (host, port, database, user, password, slot_name, ...). */
static const struct sl_field f_postgres_cdc[] = {
    {"connection_string", SL_F_STRING, 0, NULL, HAS_PASSWORD,
     "postgres://user:pass@host:5432/db (SapixDB dialect).", 0, 0, NULL, NULL},
    {"slot", SL_F_STRING, 0, NULL, 0, "Replication slot (SapixDB dialect).", 0, 0, NULL, NULL},
    {"publication", SL_F_STRING, 0, NULL, 0, "Publication (SapixDB dialect).", 0, 0, NULL, NULL},
    {"table_filter", SL_F_STRING, 0, NULL, 0, "Tables to capture, e.g. public.* (SapixDB dialect).",
     0, 0, NULL, NULL},
    {"host", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"port", SL_F_INT, 0, NULL, 0, "Rivven dialect (5432).", 1, 65535, NULL, NULL},
    {"database", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"user", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"password", SL_F_STRING, 0, NULL, SECRET, "Rivven dialect.", 0, 0, NULL, NULL},
    {"slot_name", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"publication_name", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"publication_tables", SL_F_STRING_LIST, 0, NULL, 0, "Rivven dialect; empty = all tables.", 0,
     0, NULL, NULL},
    {"auto_create_slot", SL_F_BOOL, 0, NULL, 0, "Rivven dialect (true).", 0, 0, NULL, NULL},
    {"auto_create_publication", SL_F_BOOL, 0, NULL, 0, "Rivven dialect (true).", 0, 0, NULL, NULL},
    {"tls", SL_F_OBJECT, 0, NULL, 0, "Rivven dialect: {\"mode\": disable|prefer|require}.", 0, 0,
     NULL, f_tls},
    {"snapshot_mode", SL_F_ENUM, 0, NULL, 0, "initial, never or initial_only.", 0, 0,
     g_snapshot_modes, NULL},
    {"heartbeat_interval_ms", SL_F_INT, 0, NULL, 0, "Rivven dialect.", 0, 86400000, NULL, NULL},
    {"strand", SL_F_STRAND, 0, NULL, 0,
     "Strand the changes are written to (default cdc.<database>).", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_kafka[] = {
    {"brokers", SL_F_STRING_LIST, 1, NULL, 0, "Bootstrap brokers, host:port.", 0, 0, NULL, NULL},
    {"topic", SL_F_STRING, 1, NULL, 0, "Topic to consume.", 0, 0, NULL, NULL},
    {"group_id", SL_F_STRING, 0, NULL, 0, "Consumer group.", 0, 0, NULL, NULL},
    {"auto_offset_reset", SL_F_ENUM, 0, "\"latest\"", 0, "latest or earliest.", 0, 0,
     g_offset_reset, NULL},
    {"strand", SL_F_STRAND, 0, "\"default\"", 0, "Strand the messages are written to.", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int check_postgres(const json_t *c, struct sl_err *err)
{
    int sapix = json_object_get(c, "connection_string") != NULL;
    int rivven = json_object_get(c, "host") != NULL || json_object_get(c, "database") != NULL;
    if (!sapix && !rivven)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.connection_string: required (or the Rivven fields host and "
                          "database)");
    if (rivven && !json_object_get(c, "database"))
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.database: required with host");
    if (rivven && !json_object_get(c, "host"))
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "config.host: required with database");
    if (!json_object_get(c, "strand")) { /* the default names the database: cdc.<database> */
        char strand[SL_STRAND_NAME_MAX + 1];
        sl_pg_cdc_default_strand(c, strand, sizeof(strand));
        json_object_set_new((json_t *)c, "strand", json_string(strand));
    }
    return 0;
}

static int check_s3(const json_t *c, struct sl_err *err)
{
    int key = json_object_get(c, "access_key_id") != NULL;
    int secret = json_object_get(c, "secret_access_key") != NULL;
    if (key != secret)
        return sl_err_set(err, SL_E_INVAL, "invalid_config",
                          "config.%s: required with %s (SigV4 needs both)",
                          key ? "secret_access_key" : "access_key_id",
                          key ? "access_key_id" : "secret_access_key");
    return 0;
}

/* ---- object_storage (src/connectors/objstore; the keys as objstore.c normalizes them) ---- */

static const char *const g_os_providers[] = {"s3", "local", NULL};
static const char *const g_os_formats[] = {"json", "jsonl", "csv", "avro", "parquet", NULL};
static const char *const g_os_compression[] = {"none", "gzip", "zstd", "snappy", "lz4", NULL};
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
    {"record_name", SL_F_STRING, 0, "\"Event\"", 0, "Record name of inferred schemas.", 0, 0, NULL,
     NULL},
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

static const struct sl_field f_object_storage[] = {
    {"provider", SL_F_ENUM, 0, "\"s3\"", 0, "s3 (or S3-compatible) or local.", 0, 0, g_os_providers,
     NULL},
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
    {"secret_access_key", SL_F_STRING, 0, NULL, SECRET, "SigV4 secret key.", 0, 0, NULL, NULL},
    {"session_token", SL_F_STRING, 0, NULL, SECRET, "AWS session token (optional).", 0, 0, NULL,
     NULL},
    {"parquet", SL_F_OBJECT, 0, "{}", 0, "Parquet options.", 0, 0, NULL, f_os_parquet},
    {"avro", SL_F_OBJECT, 0, "{}", 0, "Avro options.", 0, 0, NULL, f_os_avro},
    {"csv", SL_F_OBJECT, 0, "{}", 0, "CSV options.", 0, 0, NULL, f_os_csv},
    OUTBOUND_COMMON,
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* Other names of a kind: StreamHouse's connectorClass and Rivven's connector name. (Rivven also
 * calls it "s3", but in the REST API "s3" stays SapixDB's per-record kind.) */
static const struct {
    const char *alias, *kind;
} g_aliases[] = {
    {"s3-sink", "object_storage"},
    {"object-storage", "object_storage"},
};

static int check_object_storage(const json_t *c, struct sl_err *err)
{
    return check_s3(c, err) ? SL_E_INVAL : sl_os_check(c, err);
}

static const struct sl_kind g_kinds[] = {
    {"rest_bridge", SL_INBOUND, 1,
     "Any system POSTs JSON to /v1/connectors/inbound/rest/{id}/push.", f_rest_bridge, NULL},
    {"webhook", SL_OUTBOUND, 1, "POSTs every record of the followed strands to a URL.", f_webhook,
     NULL},
    {"s3", SL_OUTBOUND, 1, "PUTs every record as {prefix}/{record_hash}.json.", f_s3, check_s3},
    {"postgres_cdc", SL_INBOUND, 1, "PostgreSQL logical replication into a strand.", f_postgres_cdc,
     check_postgres},
    {"kafka", SL_INBOUND, 0, "Kafka consumer into a strand.", f_kafka, NULL},
    {"object_storage", SL_OUTBOUND, 1,
     "Batches records into JSON/JSONL/CSV/Avro/Parquet files on S3 or a local directory.",
     f_object_storage, check_object_storage},
};
#define NKINDS (sizeof(g_kinds) / sizeof(g_kinds[0]))

/* Normalization hooks by kind (kinds.h). A table beside g_kinds, so that the kinds' rows need no
 * new member. */
typedef json_t *(*normalize_fn)(const json_t *config, struct sl_err *err);
static const struct {
    const char *kind;
    normalize_fn fn;
} g_normalizers[] = {
    {"object_storage", sl_os_normalize},
};

static normalize_fn normalizer(const struct sl_kind *k)
{
    for (size_t i = 0; i < sizeof(g_normalizers) / sizeof(g_normalizers[0]); i++)
        if (strcmp(g_normalizers[i].kind, k->name) == 0)
            return g_normalizers[i].fn;
    return NULL;
}

const struct sl_kind *sl_kind_find(const char *name)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (strcmp(g_kinds[i].name, name) == 0)
            return &g_kinds[i];
    for (size_t i = 0; i < sizeof(g_aliases) / sizeof(g_aliases[0]); i++)
        if (strcmp(g_aliases[i].alias, name) == 0)
            return sl_kind_find(g_aliases[i].kind);
    return NULL;
}

const struct sl_kind *const *sl_kinds_all(void)
{
    static const struct sl_kind *list[NKINDS + 1];
    for (size_t i = 0; i < NKINDS; i++)
        list[i] = &g_kinds[i];
    list[NKINDS] = NULL;
    return list;
}

static const char *type_name(enum sl_ftype t)
{
    static const char *const names[] = {"string",  "integer", "number",
                                        "boolean", "enum",    "array of strings",
                                        "object",  "url",     "strand name"};
    return names[t];
}

/* Fails with "<path>: <message>", the path naming the field (config.retry.max_retries). */
static int bad(struct sl_err *err, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(struct sl_err *err, const char *path, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return sl_err_set(err, SL_E_INVAL, "invalid_config", "%s: %s", path, msg);
}

/* Validates one object against fields; returns a new object with defaults, or NULL. */
static json_t *validate(const struct sl_field *fields, const json_t *in, const char *path,
                        struct sl_err *err)
{
    if (!json_is_object(in)) {
        bad(err, path, "must be an object");
        return NULL;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)in, key, val)
    {
        int known = 0;
        for (const struct sl_field *f = fields; f->name && !known; f++)
            known = strcmp(f->name, key) == 0;
        if (!known) {
            char p[256];
            snprintf(p, sizeof(p), "%s.%s", path, key);
            bad(err, p, "unknown field");
            return NULL;
        }
    }
    json_t *out = json_object();
    for (const struct sl_field *f = fields; f->name; f++) {
        char p[256];
        snprintf(p, sizeof(p), "%s.%s", path, f->name);
        json_t *v = json_object_get(in, f->name), *owned = NULL;
        if (!v || json_is_null(v)) {
            if (f->required) {
                bad(err, p, "required field is missing");
                goto fail;
            }
            if (!f->def)
                continue;
            owned = json_loads(f->def, JSON_DECODE_ANY, NULL);
            v = owned;
        }
        json_t *res = NULL;
        switch (f->type) {
        case SL_F_STRING:
        case SL_F_URL:
        case SL_F_STRAND:
            if (!json_is_string(v)) {
                bad(err, p, "must be a %s", type_name(f->type));
                break;
            }
            if (f->type == SL_F_URL && strncmp(json_string_value(v), "http://", 7) != 0 &&
                strncmp(json_string_value(v), "https://", 8) != 0) {
                bad(err, p, "must be an http:// or https:// URL");
                break;
            }
            if (f->type == SL_F_STRAND &&
                !sl_strand_name_valid(json_string_value(v), json_string_length(v))) {
                bad(err, p, "must be a strand name ([a-z0-9][a-z0-9._-]{0,63})");
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_INT:
            if (!json_is_integer(v) || json_integer_value(v) < f->min ||
                json_integer_value(v) > f->max) {
                bad(err, p, "must be an integer between %lld and %lld", f->min, f->max);
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_NUMBER:
            if (!json_is_number(v) || json_number_value(v) <= 0) {
                bad(err, p, "must be a number greater than 0");
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_BOOL:
            if (!json_is_boolean(v)) {
                bad(err, p, "must be a boolean");
                break;
            }
            res = json_incref(v);
            break;
        case SL_F_ENUM: {
            int ok = 0;
            char list[160] = "";
            for (const char *const *c = f->choices; *c; c++) {
                ok |= json_is_string(v) && strcmp(json_string_value(v), *c) == 0;
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s",
                         c == f->choices ? "" : ", ", *c);
            }
            if (!ok) {
                bad(err, p, "must be one of: %s", list);
                break;
            }
            res = json_incref(v);
            break;
        }
        case SL_F_STRING_LIST: {
            int ok = json_is_array(v);
            size_t i;
            json_t *e;
            json_array_foreach(v, i, e) ok &= json_is_string(e);
            if (!ok) {
                bad(err, p, "must be an array of strings");
                break;
            }
            res = json_incref(v);
            break;
        }
        case SL_F_OBJECT:
            res = validate(f->sub, v, p, err);
            break;
        }
        json_decref(owned);
        if (!res)
            goto fail;
        json_object_set_new(out, f->name, res);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

json_t *sl_kind_validate(const struct sl_kind *k, const json_t *config, struct sl_err *err)
{
    json_t *norm = NULL;
    normalize_fn fn = normalizer(k);
    if (fn && json_is_object(config) && !(norm = fn(config, err)))
        return NULL;
    json_t *out = validate(k->fields, norm ? norm : config, "config", err);
    json_decref(norm);
    if (out && k->check && k->check(out, err) != 0) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* "scheme://user:password@host" -> "scheme://user:***@host"; "... password=x ..." -> "password=***"
 */
static json_t *mask_password(const char *s)
{
    char buf[2048];
    const char *scheme = strstr(s, "://"), *at = NULL;
    if (scheme) { /* userinfo ends at the last '@' before the path (a password may hold '@') */
        const char *path = strchr(scheme + 3, '/');
        for (const char *q = scheme + 3; *q && (!path || q < path); q++)
            if (*q == '@')
                at = q;
    }
    if (scheme && at) {
        const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
        if (colon) {
            snprintf(buf, sizeof(buf), "%.*s***%s", (int)(colon + 1 - s), s, at);
            return json_string(buf);
        }
        return json_string(s);
    }
    const char *pw = strstr(s, "password=");
    if (pw) {
        const char *end = pw + 9;
        while (*end && *end != ' ')
            end++;
        snprintf(buf, sizeof(buf), "%.*s***%s", (int)(pw + 9 - s), s, end);
        return json_string(buf);
    }
    return json_string(s);
}

static json_t *redact(const struct sl_field *fields, const json_t *in)
{
    json_t *out = json_deep_copy(in);
    for (const struct sl_field *f = fields; f->name; f++) {
        json_t *v = json_object_get(out, f->name);
        if (!v)
            continue;
        if (f->secret == SECRET)
            json_object_set_new(out, f->name, json_string("***"));
        else if (f->secret == HAS_PASSWORD && json_is_string(v))
            json_object_set_new(out, f->name, mask_password(json_string_value(v)));
        else if (f->type == SL_F_OBJECT && json_is_object(v))
            json_object_set_new(out, f->name, redact(f->sub, v));
    }
    return out;
}

json_t *sl_kind_redact(const struct sl_kind *k, const json_t *config)
{
    return redact(k->fields, config);
}

static void keep(const struct sl_field *fields, json_t *cfg, const json_t *old)
{
    for (const struct sl_field *f = fields; f->name; f++) {
        json_t *v = json_object_get(cfg, f->name), *o = json_object_get(old, f->name);
        if (!v || !o)
            continue;
        if (f->secret == SECRET && json_is_string(v) && strcmp(json_string_value(v), "***") == 0) {
            json_object_set(cfg, f->name, o);
        } else if (f->secret == HAS_PASSWORD && json_is_string(v) && json_is_string(o)) {
            json_t *m = mask_password(json_string_value(o));
            if (json_equal(m, v))
                json_object_set(cfg, f->name, o);
            json_decref(m);
        } else if (f->type == SL_F_OBJECT && json_is_object(v) && json_is_object(o)) {
            keep(f->sub, v, o);
        }
    }
}

void sl_kind_keep_secrets(const struct sl_kind *k, json_t *cfg, const json_t *old)
{
    /* a normalized config puts secrets where keep() finds them (s3.secret_access_key -> top) */
    normalize_fn fn = normalizer(k);
    json_t *norm = fn && json_is_object(cfg) ? fn(cfg, NULL) : NULL;
    if (norm) {
        json_object_clear(cfg);
        json_object_update(cfg, norm);
        json_decref(norm);
    }
    keep(k->fields, cfg, old);
}

static json_t *describe_fields(const struct sl_field *fields)
{
    json_t *arr = json_array();
    for (const struct sl_field *f = fields; f->name; f++) {
        json_t *o =
            json_pack("{s:s, s:s, s:b, s:b, s:s}", "name", f->name, "type", type_name(f->type),
                      "required", f->required, "secret", f->secret != 0, "description", f->help);
        json_object_set_new(o, "default",
                            f->def ? json_loads(f->def, JSON_DECODE_ANY, NULL) : json_null());
        if (f->type == SL_F_INT) {
            json_object_set_new(o, "min", json_integer(f->min));
            json_object_set_new(o, "max", json_integer(f->max));
        }
        if (f->choices) {
            json_t *c = json_array();
            for (const char *const *x = f->choices; *x; x++)
                json_array_append_new(c, json_string(*x));
            json_object_set_new(o, "choices", c);
        }
        if (f->sub)
            json_object_set_new(o, "fields", describe_fields(f->sub));
        json_array_append_new(arr, o);
    }
    return arr;
}

json_t *sl_kind_describe(const struct sl_kind *k)
{
    json_t *aliases = json_array();
    for (size_t i = 0; i < sizeof(g_aliases) / sizeof(g_aliases[0]); i++)
        if (strcmp(g_aliases[i].kind, k->name) == 0)
            json_array_append_new(aliases, json_string(g_aliases[i].alias));
    json_t *o =
        json_pack("{s:s, s:s, s:b, s:s, s:o}", "kind", k->name, "direction",
                  k->direction == SL_INBOUND ? "inbound" : "outbound", "worker", k->has_worker,
                  "description", k->help, "fields", describe_fields(k->fields));
    if (json_array_size(aliases))
        json_object_set(o, "aliases", aliases);
    json_decref(aliases);
    return o;
}
