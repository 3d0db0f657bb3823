/* The object_storage sink without a network: partitions and keys, splitting a batch at partition
 * boundaries, config normalization of the seeds' spellings (and the kind schema behind it), the
 * flush rule, the local provider (with I/O failures injected through sl_io), and one batch
 * stored end to end from a real strand. */
#include "connectors/objstore/objstore_int.h"
#include "core/io.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"
#include "t.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *o = json_loads(s, 0, &e);
    if (!o) {
        fprintf(stderr, "bad JSON in test: %s\n", e.text);
        abort();
    }
    return o;
}

static json_t *validate(const char *cfg, struct sl_err *err)
{
    json_t *in = J(cfg);
    json_t *out = sl_kind_validate(sl_kind_find("object_storage"), in, err);
    json_decref(in);
    return out;
}

static void expect_err(const char *cfg, const char *field)
{
    struct sl_err err = {0};
    json_t *out = validate(cfg, &err);
    T_CHECK(!out && err.code == SL_E_INVAL && strncmp(err.msg, field, strlen(field)) == 0,
            "%s rejected naming %s (\"%s\")", cfg, field, err.msg);
    json_decref(out);
}

static const char *S(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

static long long I(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static void test_keys(void)
{
    char p[64], k[SL_OS_KEY_MAX];
    const uint64_t t = 1770732000000ull; /* 2026-02-10T14:00:00Z */
    sl_os_partition(SL_OS_PART_HOUR, t, p, sizeof(p));
    T_EQ_STR(p, "year=2026/month=02/day=10/hour=14", "hour partition in UTC");
    sl_os_partition(SL_OS_PART_HOUR, t - 1, p, sizeof(p));
    T_EQ_STR(p, "year=2026/month=02/day=10/hour=13", "one ms earlier is the hour before");
    sl_os_partition(SL_OS_PART_DAY, t, p, sizeof(p));
    T_EQ_STR(p, "year=2026/month=02/day=10", "day partition");
    sl_os_partition(SL_OS_PART_NONE, t, p, sizeof(p));
    T_EQ_STR(p, "", "no partition");

    sl_os_key(k, sizeof(k), "raw/streaming", "orders", "year=2026/month=02/day=10/hour=14", 5, 9,
              "jsonl.gz");
    T_EQ_STR(k,
             "raw/streaming/orders/year=2026/month=02/day=10/hour=14/"
             "00000000000000000005-00000000000000000009.jsonl.gz",
             "the key layout");
    sl_os_key(k, sizeof(k), "/events/", "logs", "", 0, 18446744073709551615ull, "json");
    T_EQ_STR(k, "events/logs/00000000000000000000-18446744073709551615.json",
             "slashes around the prefix trimmed, no partition, 20-digit seqs");
    sl_os_key(k, sizeof(k), "", "s", "year=2026/month=02/day=10", 1, 1, "parquet");
    T_EQ_STR(k, "s/year=2026/month=02/day=10/00000000000000000001-00000000000000000001.parquet",
             "empty prefix");
    char small[20];
    T_EQ_INT(sl_os_key(small, sizeof(small), "p", "s", "", 1, 2, "json"), SL_E_TOOBIG,
             "a key that does not fit is an error, not a truncation");
    /* keys sort like their seqs */
    char a[SL_OS_KEY_MAX], b[SL_OS_KEY_MAX];
    sl_os_key(a, sizeof(a), "p", "s", "", 9, 9, "json");
    sl_os_key(b, sizeof(b), "p", "s", "", 10, 10, "json");
    T_CHECK(strcmp(a, b) < 0, "zero padding: seq 9 sorts before seq 10");
}

static void test_split(void)
{
    const uint64_t h = 3600000, t0 = 1770732000000ull - 2;
    uint64_t ts[] = {t0, t0 + 1, t0 + 2, t0 + 3, t0 + h + 2, t0 + h + 2, t0 + 30 * h};
    struct sl_os_span sp[7];
    size_t n = sl_os_split(SL_OS_PART_HOUR, ts, 7, sp);
    T_CHECK(n == 4 && sp[0].start == 0 && sp[0].count == 2 && sp[1].start == 2 &&
                sp[1].count == 2 && sp[2].start == 4 && sp[2].count == 2 && sp[3].start == 6 &&
                sp[3].count == 1,
            "hourly: split at each hour boundary (%zu spans)", n);
    n = sl_os_split(SL_OS_PART_DAY, ts, 7, sp);
    T_CHECK(n == 2 && sp[0].count == 6 && sp[1].start == 6, "daily: split at midnight UTC");
    n = sl_os_split(SL_OS_PART_NONE, ts, 7, sp);
    T_CHECK(n == 1 && sp[0].count == 7, "none: one file");
    T_EQ_INT(sl_os_split(SL_OS_PART_HOUR, ts, 0, sp), 0, "an empty batch has no file");
}

static void test_config(void)
{
    struct sl_err err = {0};
    /* StreamHouse: dotted keys, every value a string */
    json_t *c = validate("{\"s3.bucket\":\"my-data-lake\",\"s3.prefix\":\"raw/streaming\","
                         "\"s3.region\":\"eu-west-1\",\"format\":\"jsonl\",\"batch.size\":\"500\","
                         "\"batch.interval_ms\":\"60000\",\"partitioning\":\"hourly\","
                         "\"include_metadata\":\"false\"}",
                         &err);
    T_CHECK(c && strcmp(S(c, "bucket"), "my-data-lake") == 0 &&
                strcmp(S(c, "prefix"), "raw/streaming") == 0 &&
                strcmp(S(c, "region"), "eu-west-1") == 0 && I(c, "batch_size") == 500 &&
                I(c, "flush_interval_ms") == 60000 && strcmp(S(c, "partitioning"), "hour") == 0 &&
                json_is_false(json_object_get(c, "include_metadata")) &&
                !json_object_get(c, "s3.bucket") && !json_object_get(c, "batch"),
            "StreamHouse spelling normalized (%s)", err.msg);
    json_decref(c);
    c = validate("{\"s3.bucket\":\"b\"}", &err);
    T_EQ_INT(c ? I(c, "batch_size") : -1, 10000,
             "StreamHouse spelling: batch_size defaults to 10000");
    json_decref(c);
    /* Rivven: nested s3 and local, flush_interval_secs */
    c = validate("{\"provider\":\"s3\",\"bucket\":\"lake\",\"prefix\":\"events/\",\"format\":"
                 "\"jsonl\",\"compression\":\"none\",\"partitioning\":\"day\",\"batch_size\":1000,"
                 "\"flush_interval_secs\":60,\"s3\":{\"region\":\"us-east-1\",\"endpoint\":"
                 "\"http://minio:9000\",\"force_path_style\":true,\"access_key_id\":\"AK\","
                 "\"secret_access_key\":\"SK\"}}",
                 &err);
    T_CHECK(c && strcmp(S(c, "endpoint"), "http://minio:9000") == 0 &&
                json_is_true(json_object_get(c, "force_path_style")) &&
                strcmp(S(c, "secret_access_key"), "SK") == 0 &&
                I(c, "flush_interval_ms") == 60000 && !json_object_get(c, "s3") &&
                !json_object_get(c, "flush_interval_secs"),
            "Rivven's nested s3 block lifted (%s)", err.msg);
    json_t *red = c ? sl_kind_redact(sl_kind_find("object_storage"), c) : NULL;
    T_EQ_STR(red ? S(red, "secret_access_key") : NULL, "***", "the secret is redacted");
    /* a PATCH sending the redacted secret back, nested, keeps it */
    json_t *patch = J("{\"provider\":\"s3\",\"bucket\":\"lake\",\"s3\":{\"access_key_id\":\"AK\","
                      "\"secret_access_key\":\"***\"}}");
    if (c)
        sl_kind_keep_secrets(sl_kind_find("object_storage"), patch, c);
    T_EQ_STR(S(patch, "secret_access_key"), "SK", "\"***\" in a nested s3 block keeps the secret");
    json_decref(patch);
    json_decref(red);
    json_decref(c);
    /* avro.name is avro.record_name (the Rivven example's spelling) */
    c = validate("{\"bucket\":\"b\",\"format\":\"avro\",\"avro\":{\"namespace\":\"rivven."
                 "events\",\"name\":\"Ev\"}}",
                 &err);
    T_CHECK(c && strcmp(S(json_object_get(c, "avro"), "record_name"), "Ev") == 0 &&
                strcmp(S(json_object_get(c, "avro"), "namespace"), "rivven.events") == 0 &&
                !json_object_get(json_object_get(c, "avro"), "name"),
            "avro.name is read as avro.record_name (%s)", err.msg);
    json_decref(c);
    expect_err("{\"bucket\":\"b\",\"avro\":{\"name\":\"A\",\"record_name\":\"B\"}}",
               "config.avro.name");
    /* local, defaults, nested format options and dotted ones */
    c = validate(
        "{\"provider\":\"local\",\"local\":{\"root\":\"/data\"},\"parquet.row_group_size\":"
        "\"5000\",\"csv\":{\"columns\":\"b,a\",\"include_header\":\"false\"}}",
        &err);
    json_t *pq = c ? json_object_get(c, "parquet") : NULL,
           *av = c ? json_object_get(c, "avro") : NULL;
    json_t *csv = c ? json_object_get(c, "csv") : NULL;
    T_CHECK(c && strcmp(S(c, "root"), "/data") == 0 && I(c, "batch_size") == 1000 &&
                I(c, "flush_interval_ms") == 60000 && strcmp(S(c, "format"), "json") == 0 &&
                strcmp(S(c, "compression"), "none") == 0 &&
                json_is_true(json_object_get(c, "include_metadata")) &&
                strcmp(S(c, "partitioning"), "none") == 0 && I(pq, "row_group_size") == 5000 &&
                strcmp(S(pq, "compression"), "snappy") == 0 &&
                strcmp(S(av, "namespace"), "sluice.events") == 0 &&
                strcmp(S(av, "record_name"), "Event") == 0 &&
                json_array_size(json_object_get(csv, "columns")) == 2 &&
                json_is_false(json_object_get(csv, "include_header")),
            "defaults filled, format options normalized (%s)", err.msg);
    json_decref(c);

    expect_err("{\"bucket\":\"b\",\"format\":\"xml\"}", "config.format");
    expect_err("{\"bucket\":\"b\",\"compression\":\"deflate\"}", "config.compression");
    expect_err("{\"bucket\":\"b\",\"partitioning\":\"weekly\"}", "config.partitioning");
    expect_err("{\"bucket\":\"b\",\"batch.size\":\"ten\"}", "config.batch.size");
    expect_err("{\"bucket\":\"b\",\"batch_size\":0}", "config.batch_size");
    expect_err("{\"bucket\":\"b\",\"flush_interval_secs\":0}", "config.flush_interval_secs");
    expect_err("{\"bucket\":\"b\",\"flush_interval_secs\":2,\"flush_interval_ms\":5}",
               "config.flush_interval_secs");
    expect_err("{\"s3.bucket\":\"a\",\"s3\":{\"bucket\":\"b\"}}", "config.s3.bucket");
    expect_err("{\"bucket\":\"a\",\"s3\":{\"bucket\":\"b\"}}", "config.s3.bucket");
    expect_err("{\"bucket\":\"b\",\"s3\":{\"bogus\":1}}", "config.s3.bogus");
    expect_err("{\"bucket\":\"b\",\"s3.bogus\":1}", "config.s3.bogus");
    expect_err("{\"bucket\":\"b\",\"gcs.bucket\":1}", "config.gcs.bucket");
    expect_err("{\"provider\":\"local\"}", "config.root");
    expect_err("{\"provider\":\"s3\"}", "config.bucket");
    expect_err("{\"provider\":\"local\",\"root\":\"/r\",\"prefix\":\"a/../../b\"}",
               "config.prefix");
    expect_err("{\"bucket\":\"b\",\"format\":\"parquet\",\"compression\":\"gzip\"}",
               "config.compression");
    expect_err("{\"bucket\":\"b\",\"access_key_id\":\"AK\"}", "config.secret_access_key");
    expect_err("{\"bucket\":\"b\",\"avro\":{\"compression\":\"zstd\"}}", "config.avro.compression");
    expect_err("{\"bucket\":\"b\",\"force_path_style\":\"yes\"}", "config.force_path_style");
    expect_err("{\"bucket\":\"b\",\"endpoint\":\"ftp://x\"}", "config.endpoint");
    T_CHECK(sl_kind_find("s3-sink") == sl_kind_find("object_storage") &&
                sl_kind_find("object-storage") == sl_kind_find("object_storage") &&
                sl_kind_find("s3") != sl_kind_find("object_storage"),
            "aliases s3-sink and object-storage; s3 stays the per-record kind");
}

/* ---- the local provider, with faults ---- */

static int g_fail_write, g_fail_sync;
static ssize_t hook_pwrite(int fd, const void *b, size_t n, off_t off)
{
    if (g_fail_write) {
        errno = g_fail_write;
        return -1;
    }
    return pwrite(fd, b, n, off);
}
static int hook_sync(int fd)
{
    if (g_fail_sync) {
        errno = g_fail_sync;
        return -1;
    }
    return fdatasync(fd);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static char buf[1 << 16];
    *len = fread(buf, 1, sizeof(buf) - 1, f);
    buf[*len] = 0;
    fclose(f);
    return buf;
}

static void test_local(const char *root)
{
    struct sl_os_target t = {.provider = SL_OS_LOCAL, .root = root};
    struct sl_os_result res = {0};
    const char *data = "{\"a\":1}\n";
    char path[512], dir[512];
    size_t len = 0;
    T_EQ_INT(sl_os_local_put(&t, "p/s/year=2026/f.jsonl", (const uint8_t *)data, 8, &res), 200,
             "local put stores the file");
    snprintf(path, sizeof(path), "%s/p/s/year=2026/f.jsonl", root);
    snprintf(dir, sizeof(dir), "%s/p/s/year=2026", root);
    const char *got = slurp(path, &len);
    T_CHECK(got && len == 8 && memcmp(got, data, 8) == 0, "with the bytes given");
    T_EQ_INT(count_entries(dir), 1, "and no temp file left beside it");

    struct sl_io_ops saved = sl_io;
    sl_io.pwrite = hook_pwrite;
    sl_io.fdatasync = hook_sync;
    g_fail_write = EIO;
    long st = sl_os_local_put(&t, "p/s/year=2026/g.jsonl", (const uint8_t *)data, 8, &res);
    T_CHECK(st == 0 && strstr(res.error, "Input/output error"),
            "EIO on write: a transient failure (%s)", res.error);
    g_fail_write = 0;
    g_fail_sync = ENOSPC;
    st = sl_os_local_put(&t, "p/s/year=2026/g.jsonl", (const uint8_t *)data, 8, &res);
    T_CHECK(st == 0 && strstr(res.error, "No space"), "ENOSPC on fsync: a transient failure (%s)",
            res.error);
    g_fail_sync = 0;
    T_EQ_INT(count_entries(dir), 1, "a failed write leaves neither the file nor a temp file");
    /* an overwrite (a retried batch) replaces the file whole */
    g_fail_sync = EIO;
    sl_os_local_put(&t, "p/s/year=2026/f.jsonl", (const uint8_t *)"xx", 2, &res);
    g_fail_sync = 0;
    got = slurp(path, &len);
    T_CHECK(got && len == 8, "a failed overwrite keeps the old file intact");
    sl_io = saved;
    T_EQ_INT(sl_os_local_put(&t, "p/s/year=2026/f.jsonl", (const uint8_t *)"[]\n", 3, &res), 200,
             "an overwrite succeeds");
    got = slurp(path, &len);
    T_CHECK(got && len == 3 && count_entries(dir) == 1, "and replaces the file");
}

/* ---- one batch from a real strand ---- */

static void test_batch(const char *root, const char *sdir)
{
    struct sl_strand *s = NULL;
    struct sl_strand_opts so = {.segment_bytes = 1 << 20, .durable = 1};
    struct sl_err err = {0};
    T_CHECK(sl_strand_open(sdir, "ev", &so, &s, NULL, &err) == 0, "strand opens (%s)", err.msg);
    if (!s)
        return;
    struct sl_buf mp[5];
    struct sl_append_rec recs[5];
    uint8_t hashes[5][SL_HASH_LEN];
    for (int i = 0; i < 5; i++) {
        char js[32];
        snprintf(js, sizeof(js), "{\"i\":%d}", i);
        sl_buf_init(&mp[i], 0);
        struct sl_jerr je;
        sl_json_to_mp(js, strlen(js), &mp[i], 8, &je);
        recs[i] = (struct sl_append_rec){.payload = mp[i].data,
                                         .payload_len = (uint32_t)mp[i].len,
                                         .source = "t",
                                         .source_len = 1};
    }
    struct sl_append a = {.recs = recs, .n = 5, .hashes = hashes};
    T_CHECK(sl_strand_append_wait(s, &a, &err) == 0, "5 records appended");
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "{\"provider\":\"local\",\"root\":\"%s\",\"prefix\":\"lake\",\"format\":\"jsonl\"}",
             root);
    json_t *c = validate(cfg, &err);
    struct sl_os_sink *sink = NULL;
    struct sl_os_batch *b = NULL;
    struct sl_rec rs[4];
    struct sl_record rr[4];
    for (int i = 0; i < 4; i++) {
        T_CHECK(sl_strand_read(s, (uint64_t)i + 1, &rr[i]) == 0, "record %d read back", i + 1);
        rs[i] = (struct sl_rec){.seq = rr[i].seq,
                                .timestamp_ms = rr[i].timestamp_ms,
                                .payload = rr[i].payload,
                                .payload_len = rr[i].payload_len,
                                .hash = rr[i].hash};
    }
    struct sl_batch in = {.strand = "ev", .recs = rs, .n = 4};
    T_CHECK(c && sl_os_sink_new(c, &sink, &err) == 0 &&
                sl_os_batch_prepare(sink, &in, &b, &err) == 0,
            "a batch of seqs 1..4 (%s)", err.msg);
    if (b) {
        T_CHECK(sl_os_batch_files(b) == 1 &&
                    strcmp(sl_os_batch_key(b, 0),
                           "lake/ev/00000000000000000001-00000000000000000004.jsonl") == 0,
                "its one file is named by its seq range (%s)", sl_os_batch_key(b, 0));
        struct sl_os_io io = {0};
        struct sl_os_result res;
        T_EQ_INT(sl_os_batch_store(b, &io, &res), 200, "the batch is stored");
        T_CHECK(res.files == 1 && res.bytes > 0 && sl_os_batch_stored(b) == 4,
                "1 file, 4 records stored");
        T_EQ_INT(sl_os_batch_store(b, &io, &res), 200, "storing again stores nothing more");
        T_EQ_INT(res.files, 0, "(no file rewritten)");
        char path[600];
        size_t len = 0;
        snprintf(path, sizeof(path), "%s/lake/ev/00000000000000000001-00000000000000000004.jsonl",
                 root);
        const char *got = slurp(path, &len);
        char h[SL_HASH_LEN * 2 + 1];
        sl_hex_encode(h, hashes[1], SL_HASH_LEN);
        T_CHECK(got && strncmp(got, "{\"i\":1,\"_record_hash\":\"", 23) == 0 && strstr(got, h) &&
                    strstr(got, "\"_seq\":4,") && !strstr(got, "\"_seq\":0,"),
                "the file holds records 1..4 with their metadata");
    }
    sl_os_batch_free(b);
    sl_os_sink_free(sink);
    json_decref(c);
    for (int i = 0; i < 5; i++)
        sl_buf_release(&mp[i]);
    sl_strand_close(s);
}

/* Shared Key (Microsoft's "Authorize with Shared Key"): the string to sign laid out field by
 * field as the spec lists them (Content-Length as a number, the x-ms-* headers, the resource with
 * the account twice on the emulator's path-style URL, the query parameters sorted one per line),
 * and its HMAC-SHA256 with the emulator's published key, computed independently with Python's
 * hmac module. */
static void test_azure_shared_key(void)
{
    const char *hdrs[][2] = {{"x-ms-blob-type", "BlockBlob"},
                             {"x-ms-date", "Sun, 06 Dec 2026 21:00:00 GMT"},
                             {"x-ms-version", "2021-12-02"}};
    struct sl_os_az_req rq = {.method = "PUT",
                              .account = "devstoreaccount1",
                              .path = "/devstoreaccount1/box/a/year%3D2026/b.jsonl",
                              .query = "comp=block&blockid=MDAwMDAx",
                              .content_length = 11,
                              .content_type = "text/plain",
                              .headers = hdrs,
                              .nheaders = 3};
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_os_az_string_to_sign(&rq, &b);
    sl_buf_putc(&b, 0);
    T_EQ_STR((const char *)b.data,
             "PUT\n\n\n11\n\ntext/plain\n\n\n\n\n\n\n"
             "x-ms-blob-type:BlockBlob\nx-ms-date:Sun, 06 Dec 2026 21:00:00 GMT\n"
             "x-ms-version:2021-12-02\n"
             "/devstoreaccount1/devstoreaccount1/box/a/year%3D2026/b.jsonl\nblockid:MDAwMDAx\n"
             "comp:block",
             "azure: string to sign");
    struct sl_os_az az;
    struct sl_err err = {0};
    json_t *cfg = J("{\"connection_string\": \"UseDevelopmentStorage=true\"}");
    T_CHECK(sl_os_az_init(cfg, &az, &err) == 0 && strcmp(az.account, "devstoreaccount1") == 0 &&
                strcmp(az.base, "http://127.0.0.1:10000/devstoreaccount1") == 0 &&
                strcmp(az.path, "/devstoreaccount1") == 0 && az.key_len == 64,
            "azure: UseDevelopmentStorage=true is Azurite's account, key and endpoint (%s)",
            err.msg);
    sl_buf_reset(&b);
    sl_os_az_authorization(&rq, az.key, az.key_len, &b);
    sl_buf_putc(&b, 0);
    T_EQ_STR((const char *)b.data,
             "SharedKey devstoreaccount1:kBOWQZhsP6zyqzid9wfEGshy90U7cK3VpRMt/jsiEgk=",
             "azure: Authorization header");
    sl_os_az_release(&az);
    json_decref(cfg);
    cfg = J("{\"connection_string\": \"DefaultEndpointsProtocol=https;AccountName=acme;"
            "AccountKey=AAAA;EndpointSuffix=core.chinacloudapi.cn\"}");
    T_CHECK(sl_os_az_init(cfg, &az, &err) == 0 &&
                strcmp(az.base, "https://acme.blob.core.chinacloudapi.cn") == 0 && az.path[0] == 0,
            "azure: a connection string without BlobEndpoint makes it from the suffix (%s)",
            err.msg);
    sl_os_az_release(&az);
    json_decref(cfg);
    cfg = J("{\"sas_token\": \"?sv=2021&sig=x\", \"endpoint\": \"https://h.example/\"}");
    T_CHECK(sl_os_az_init(cfg, &az, &err) == 0 && strcmp(az.sas, "sv=2021&sig=x") == 0 &&
                strcmp(az.base, "https://h.example") == 0 && az.key_len == 0,
            "azure: a SAS token is kept without its '?', the endpoint without its '/' (%s)",
            err.msg);
    sl_os_az_release(&az);
    json_decref(cfg);
    sl_buf_release(&b);
}

/* GCS: the key file is read (and refused when it is not a service-account key), use_adc without
 * GOOGLE_APPLICATION_CREDENTIALS names the field, and the JWT is header.claims.signature in
 * base64url with the claims Google's token endpoint checks, its RS256 signature verifying with
 * the key's public half. */
static void b64url_json(const char *s, size_t n, json_t **out)
{
    char std[2048];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof(std) - 4; i++)
        std[k++] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
    while (k % 4)
        std[k++] = '=';
    uint8_t raw[2048];
    size_t rn = 0;
    *out = sl_base64_decode(std, k, raw, sizeof(raw), &rn) == 0
               ? json_loadb((const char *)raw, rn, 0, NULL)
               : NULL;
}

static void test_gcs(const char *dir)
{
    EVP_PKEY *pk = EVP_RSA_gen(2048);
    BIO *bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, pk, NULL, NULL, 0, NULL, NULL);
    char *pem = NULL;
    long pn = BIO_get_mem_data(bio, &pem);
    json_t *sa = json_pack("{s:s, s:s%, s:s, s:s, s:s}", "type", "service_account", "private_key",
                           pem, (size_t)pn, "client_email", "w@p.iam.gserviceaccount.com",
                           "private_key_id", "kid1", "token_uri", "http://127.0.0.1:1/token");
    char path[300], cfg[400];
    snprintf(path, sizeof(path), "%s/sa.json", dir);
    json_dump_file(sa, path, 0);
    snprintf(cfg, sizeof(cfg), "{\"service_account_path\": \"%s\"}", path);
    json_t *c = J(cfg);
    struct sl_os_gcs g;
    struct sl_err err = {0};
    T_CHECK(sl_os_gcs_init(c, &g, &err) == 0 &&
                strcmp(g.base, "https://storage.googleapis.com") == 0 &&
                strcmp(g.token_uri, "http://127.0.0.1:1/token") == 0,
            "gcs: the key file is read; the default endpoint (%s)", err.msg);
    struct sl_buf jwt;
    sl_buf_init(&jwt, 0);
    T_CHECK(sl_os_gcs_jwt(&g, 1800000000, &jwt) == 0, "gcs: a JWT is made");
    const char *s = (const char *)jwt.data, *d1 = memchr(s, '.', jwt.len);
    const char *d2 = d1 ? memchr(d1 + 1, '.', jwt.len - (size_t)(d1 + 1 - s)) : NULL;
    json_t *h = NULL, *cl = NULL;
    if (d1 && d2) {
        b64url_json(s, (size_t)(d1 - s), &h);
        b64url_json(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
    }
    T_CHECK(h && cl && strcmp(json_string_value(json_object_get(h, "alg")), "RS256") == 0 &&
                strcmp(json_string_value(json_object_get(h, "kid")), "kid1") == 0 &&
                strcmp(json_string_value(json_object_get(cl, "iss")),
                       "w@p.iam.gserviceaccount.com") == 0 &&
                strcmp(json_string_value(json_object_get(cl, "aud")), "http://127.0.0.1:1/token") ==
                    0 &&
                json_integer_value(json_object_get(cl, "iat")) == 1800000000 &&
                json_integer_value(json_object_get(cl, "exp")) == 1800003600 &&
                strstr(json_string_value(json_object_get(cl, "scope")), "devstorage"),
            "gcs: JWT header and claims (alg, kid, iss, aud, iat, exp, scope)");
    if (d2) {
        char std[1024];
        size_t k = 0, sl = jwt.len - (size_t)(d2 + 1 - s);
        for (size_t i = 0; i < sl && k < sizeof(std) - 4; i++)
            std[k++] = d2[1 + i] == '-' ? '+' : d2[1 + i] == '_' ? '/' : d2[1 + i];
        while (k % 4)
            std[k++] = '=';
        uint8_t sig[512];
        size_t sn = 0;
        sl_base64_decode(std, k, sig, sizeof(sig), &sn);
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        int ok = EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pk) == 1 &&
                 EVP_DigestVerify(md, sig, sn, (const uint8_t *)s, (size_t)(d2 - s)) == 1;
        EVP_MD_CTX_free(md);
        T_CHECK(ok, "gcs: the RS256 signature verifies with the public key");
    }
    json_decref(h);
    json_decref(cl);
    sl_buf_release(&jwt);
    sl_os_gcs_release(&g);
    json_decref(c);

    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    c = J("{\"use_adc\": true}");
    T_CHECK(sl_os_gcs_init(c, &g, &err) < 0 && strncmp(err.msg, "config.gcs.use_adc", 18) == 0,
            "gcs: use_adc without GOOGLE_APPLICATION_CREDENTIALS names the field (%s)", err.msg);
    json_decref(c);
    setenv("GOOGLE_APPLICATION_CREDENTIALS", path, 1);
    T_CHECK(sl_os_gcs_init(c = J("{\"use_adc\": true}"), &g, &err) == 0,
            "gcs: use_adc reads the file GOOGLE_APPLICATION_CREDENTIALS names (%s)", err.msg);
    sl_os_gcs_release(&g);
    json_decref(c);
    unsetenv("GOOGLE_APPLICATION_CREDENTIALS");
    json_object_set_new(sa, "type", json_string("authorized_user"));
    json_dump_file(sa, path, 0);
    c = J(cfg);
    T_CHECK(sl_os_gcs_init(c, &g, &err) < 0 && strstr(err.msg, "service_account") &&
                strncmp(err.msg, "config.gcs.service_account_path", 31) == 0,
            "gcs: a key file of another type is refused, naming the field (%s)", err.msg);
    json_decref(c);
    json_decref(sa);
    BIO_free(bio);
    EVP_PKEY_free(pk);
}

int main(void)
{
    test_azure_shared_key();
    test_keys();
    test_split();
    test_config();
    char tmpl[] = "/tmp/sluice-objstore-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir)
        return 1;
    char root[300], sdir[300];
    snprintf(root, sizeof(root), "%s/root", dir);
    snprintf(sdir, sizeof(sdir), "%s/strand", dir);
    mkdir(root, 0755);
    mkdir(sdir, 0755);
    test_local(root);
    test_batch(root, sdir);
    test_gcs(dir);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return T_DONE();
}
