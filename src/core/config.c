#include "core/config.h"

#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

enum opt_type { OT_STR, OT_SIZE, OT_UINT, OT_DURABILITY, OT_LOGLEVEL };

struct opt {
    const char *name; /* snake_case: YAML key; flag is --kebab-case; env is SLUICE_UPPER */
    enum opt_type type;
    size_t off;
    size_t cap; /* OT_STR buffer size */
    const char *def;
    uint64_t min, max; /* OT_SIZE / OT_UINT range */
    const char *help;
};

#define F(x) offsetof(struct sl_config, x)
static const struct opt g_opts[] = {
    {"data", OT_STR, F(data), sizeof(((struct sl_config *)0)->data), "./sluice-data", 0, 0,
     "Data directory: strands (segment files) and metadata live here."},
    {"listen", OT_STR, F(listen), sizeof(((struct sl_config *)0)->listen), "127.0.0.1:7475", 0, 0,
     "HTTP listen address, HOST:PORT (port 0 picks a free port; the log says which)."},
    {"config", OT_STR, F(config), sizeof(((struct sl_config *)0)->config), "", 0, 0,
     "YAML file with any of these options as top-level keys."},
    {"durability", OT_DURABILITY, F(durable), 0, "fsync", 0, 0,
     "`fsync`: a write is acknowledged only after fdatasync of its bytes (group commit). "
     "`none`: acknowledged once written to the page cache; a power loss or kernel crash can lose "
     "the last seconds of acknowledged records (a process crash loses nothing)."},
    {"segment_bytes", OT_SIZE, F(segment_bytes), 0, "64M", 65536, (uint64_t)4 << 30,
     "Size of each preallocated segment file; a record must fit in one segment."},
    {"spare_max_rate", OT_SIZE, F(spare_max_rate), 0, "32M", 0, (uint64_t)1 << 40,
     "Bytes per second. Once a segment is half full, the next one is zero-filled in the "
     "background, so that a small commit's fdatasync has no file-system metadata to write; a "
     "segment whose first half was written faster than this gets no such spare (its successor is "
     "only preallocated): at batch-load rates each fdatasync covers megabytes, and writing every "
     "byte twice would halve the disk's bandwidth. 0: always a spare."},
    {"cache_window", OT_SIZE, F(cache_window), 0, "256M", 0, (uint64_t)1 << 40,
     "Bytes of each strand's newest log data kept in the page cache with durability fsync: "
     "older pages are dropped once durable (as PostgreSQL does for its WAL), so the log's writes "
     "reuse recycled pages instead of taking fresh ones until memory is full. Readers of older "
     "records (a sink catching up, a lookup by hash, a proof) read them from the disk. 0: the "
     "kernel decides."},
    {"max_body_bytes", OT_SIZE, F(max_body_bytes), 0, "1M", 1024, (uint64_t)1 << 30,
     "Largest accepted HTTP request body; larger requests get 413."},
    {"max_connections", OT_UINT, F(max_connections), 0, "4096", 1, 1000000,
     "Concurrent HTTP connections, per event loop (http_threads)."},
    {"connection_timeout_s", OT_UINT, F(connection_timeout_s), 0, "60", 1, 86400,
     "Idle HTTP connections are closed after this many seconds."},
    {"header_timeout_s", OT_UINT, F(header_timeout_s), 0, "15", 1, 3600,
     "A new connection that has not sent its first request's headers within this many seconds "
     "is closed, however slowly it keeps sending (slowloris)."},
    {"body_timeout_s", OT_UINT, F(body_timeout_s), 0, "60", 1, 86400,
     "A request body not received in full within this many seconds of its headers: the "
     "connection is closed and nothing of the request is handled."},
    {"http_threads", OT_UINT, F(http_threads), 0, "1", 1, 64,
     "HTTP event-loop threads (each runs its own epoll loop)."},
    {"batch_max_records", OT_UINT, F(batch_max_records), 0, "100000", 1, 10000000,
     "Most records accepted in one POST /v1/records/batch."},
    {"log_level", OT_LOGLEVEL, F(log_level), 0, "info", 0, 0, "debug, info, warn or error."},
    {"pipelines", OT_STR, F(pipelines), sizeof(((struct sl_config *)0)->pipelines), "", 0, 0,
     "A pipeline file (Rivven's YAML: sources, sinks, settings) or a directory of `*.yaml` / "
     "`*.yml` files, applied at start after validating every file (docs/pipelines.md): their "
     "connectors are created, changed or removed to match, and are managed by their file. An "
     "invalid file stops `serve` with exit status 1 and every problem as FILE:LINE:COL. Empty: "
     "none."},
    {"auth_tokens", OT_STR, F(auth_tokens), sizeof(((struct sl_config *)0)->auth_tokens), "", 0, 0,
     "A YAML file of API tokens (`tokens:` a list of `name`, `scopes` [read, write, admin], and "
     "`secret_sha256` (hex) or `secret` (e.g. `${file:/run/secrets/x}`)), docs/security.md. With "
     "tokens, every route but /v1/health needs `Authorization: Bearer <token>` with the route's "
     "scope (401 without a valid token, 403 with too small a scope). Empty: no tokens."},
    {"metrics_public", OT_UINT, F(metrics_public), 0, "0", 0, 1,
     "1: GET /metrics needs no token even when tokens are configured (a scraper without "
     "credentials); 0: it needs the read scope like every GET."},
    {"insecure_no_auth", OT_UINT, F(insecure_no_auth), 0, "0", 0, 1,
     "1 (or the bare flag --insecure-no-auth): serve on an address that is not loopback without "
     "any token. Without it `serve` refuses to start there (Redis's protected mode)."},
    {"outbound_deny_private", OT_UINT, F(outbound_deny_private), 0, "0", 0, 1,
     "1: outbound connectors may not connect to private addresses either (10/8, 172.16/12, "
     "192.168/16, 127/8, 100.64/10, ::1, fc00::/7). Link-local (169.254/16, fe80::/10: cloud "
     "metadata services) is always denied. Checked on the resolved address at connect time "
     "(docs/security.md)."},
    {"outbound_allow", OT_STR, F(outbound_allow), sizeof(((struct sl_config *)0)->outbound_allow),
     "", 0, 0,
     "Comma-separated addresses or CIDRs outbound connectors may reach even when a deny rule "
     "covers them (e.g. 10.1.0.0/16 with outbound_deny_private)."},
    {"outbound_deny", OT_STR, F(outbound_deny), sizeof(((struct sl_config *)0)->outbound_deny), "",
     0, 0, "Comma-separated addresses or CIDRs outbound connectors may not reach."},
    {"tls_cert", OT_STR, F(tls_cert), sizeof(((struct sl_config *)0)->tls_cert), "", 0, 0,
     "PEM file with the listener's certificate (chain): the API is served over TLS 1.2/1.3 only. "
     "Needs tls_key. Empty: plain HTTP."},
    {"tls_key", OT_STR, F(tls_key), sizeof(((struct sl_config *)0)->tls_key), "", 0, 0,
     "PEM file with the certificate's private key."},
    {"tls_client_ca", OT_STR, F(tls_client_ca), sizeof(((struct sl_config *)0)->tls_client_ca), "",
     0, 0,
     "PEM file of the CA that client certificates must chain to (mutual TLS): a request without "
     "such a certificate is answered 403 client_certificate_required. Empty: none asked for."},
    {"max_connections_per_ip", OT_UINT, F(max_connections_per_ip), 0, "0", 0, 1000000,
     "Concurrent HTTP connections one client address may hold (further ones are closed at "
     "once); 0: no limit but max_connections."},
    {"plugins", OT_STR, F(plugins), sizeof(((struct sl_config *)0)->plugins), "", 0, 0,
     "Directory of connector plugins: every `*.so` in it is loaded at start, in name order, and "
     "its connector kinds join the catalog (examples/README.md). A plugin that cannot be loaded "
     "(not a shared object, no `sluice_connectors`, another connector ABI, a kind name already "
     "taken) stops `serve` with exit status 2. Empty: no plugins."},
    {"boboyka_supabase_url", OT_STR, F(boboyka_supabase_url),
     sizeof(((struct sl_config *)0)->boboyka_supabase_url), "", 0, 0,
     "Supabase project URL for the Boboyka dual-write (https://<ref>.supabase.co). Also read from "
     "BOBOYKA_SUPABASE_URL. Dual-write is on when both the URL and the key are set."},
    {"boboyka_supabase_key", OT_STR, F(boboyka_supabase_key),
     sizeof(((struct sl_config *)0)->boboyka_supabase_key), "", 0, 0,
     "Supabase service_role key for the dual-write (sent as apikey and Bearer token, never "
     "shown). Also read from BOBOYKA_SUPABASE_KEY."},
    {"boboyka_mirror_timeout_ms", OT_UINT, F(boboyka_mirror_timeout_ms), 0, "2000", 1, 600000,
     "Longest an ingest waits for its Supabase mirror write; a slower write fails (the event is "
     "kept and retried in the background)."},
    {"boboyka_mirror_max_retries", OT_UINT, F(boboyka_mirror_max_retries), 0, "10", 0, 1000000,
     "Background retries of a failed mirror write before it is marked failed."},
    {"boboyka_retry_base_ms", OT_UINT, F(boboyka_retry_base_ms), 0, "1000", 1, 86400000,
     "Backoff before the first retry (full jitter, doubling per attempt)."},
    {"boboyka_retry_max_ms", OT_UINT, F(boboyka_retry_max_ms), 0, "300000", 1, 86400000,
     "Longest backoff between retries."},
    {"boboyka_dedup_column", OT_STR, F(boboyka_dedup_column),
     sizeof(((struct sl_config *)0)->boboyka_dedup_column), "", 0, 0,
     "A unique column of the Supabase tables that gets the record hash; with it, inserts use "
     "on_conflict + resolution=ignore-duplicates so a retry after an ambiguous failure cannot "
     "add a second row. Empty: the body is the event data alone."},
    {"merkle_tree", OT_UINT, F(merkle_tree), 0, "1", 0, 1,
     "1: every strand keeps a Merkle tree (RFC 6962) beside its segments, for inclusion and "
     "consistency proofs and signed checkpoints (docs/proofs.md). 0: no tree, no proofs."},
    {"checkpoint_key", OT_STR, F(checkpoint_key), sizeof(((struct sl_config *)0)->checkpoint_key),
     "", 0, 0,
     "Ed25519 key that signs checkpoints, in the signed-note private key format "
     "(PRIVATE+KEY+name+id+base64). Generated (mode 0600) if the file does not exist. Empty: "
     "DATA/checkpoint.key. `sluice key` prints its verifier key."},
    {"checkpoint_origin", OT_STR, F(checkpoint_origin),
     sizeof(((struct sl_config *)0)->checkpoint_origin), "", 0, 0,
     "Origin line of checkpoints; `{strand}` is replaced by the strand's name (appended as "
     "`/<strand>` if absent). Empty: `<hostname>/sluice/<strand>`."},
    {"checkpoint_interval_ms", OT_UINT, F(checkpoint_interval_ms), 0, "1000", 0, 86400000,
     "A new checkpoint is signed at most this often per strand (a request in between gets the "
     "latest one); 0: every request for a grown tree signs one. A background thread also signs "
     "one per grown strand this often (at least every 100 ms)."},
    {"checkpoint_strand", OT_STR, F(checkpoint_strand),
     sizeof(((struct sl_config *)0)->checkpoint_strand), "", 0, 0,
     "A strand that receives every checkpoint the background thread signs, as a record "
     "{\"strand\", \"tree_size\", \"checkpoint\"}: give it a webhook connector to keep the "
     "checkpoints on another system (docs/proofs.md). Empty: none."},
};
#define NOPTS (sizeof(g_opts) / sizeof(g_opts[0]))

static const struct opt *find_opt(const char *name, size_t n)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(g_opts[i].name) == n && strncmp(g_opts[i].name, name, n) == 0)
            return &g_opts[i];
    return NULL;
}

static int set_opt(struct sl_config *cfg, const struct opt *o, const char *v, const char *where,
                   struct sl_err *err)
{
    char *base = (char *)cfg + o->off;
    uint64_t n;
    switch (o->type) {
    case OT_STR:
        if (strlen(v) >= o->cap)
            return sl_err_set(err, SL_E_INVAL, "invalid_config", "%s: %s is too long", where,
                              o->name);
        strcpy(base, v);
        return 0;
    case OT_SIZE:
    case OT_UINT:
        if ((o->type == OT_SIZE ? sl_parse_size(v, &n) : sl_parse_u64(v, &n)) != 0 || n < o->min ||
            n > o->max)
            return sl_err_set(err, SL_E_INVAL, "invalid_config",
                              "%s: %s must be %s between %llu and %llu, got '%s'", where, o->name,
                              o->type == OT_SIZE ? "a size (e.g. 64M)" : "an integer",
                              (unsigned long long)o->min, (unsigned long long)o->max, v);
        *(uint64_t *)(void *)base = n;
        return 0;
    case OT_DURABILITY:
        if (strcmp(v, "fsync") && strcmp(v, "none"))
            return sl_err_set(err, SL_E_INVAL, "invalid_config",
                              "%s: durability must be 'fsync' or 'none', got '%s'", where, v);
        *(int *)(void *)base = strcmp(v, "fsync") == 0;
        return 0;
    case OT_LOGLEVEL: {
        int l = sl_log_parse_level(v);
        if (l < 0)
            return sl_err_set(err, SL_E_INVAL, "invalid_config",
                              "%s: log_level must be debug, info, warn or error, got '%s'", where,
                              v);
        *(int *)(void *)base = l;
        return 0;
    }
    }
    return 0;
}

static int load_yaml(struct sl_config *cfg, const char *path, struct sl_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return sl_err_sys(err, SL_E_INVAL, "config file %s", path);
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = 0, depth = 0, done = 0;
    char key[128] = "";
    int have_key = 0;
    while (!done && rc == 0) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            rc = sl_err_set(err, SL_E_INVAL, "invalid_config", "%s:%zu: %s", path,
                            p.problem_mark.line + 1, p.problem ? p.problem : "YAML error");
            break;
        }
        switch (ev.type) {
        case YAML_MAPPING_START_EVENT:
            if (++depth > 1)
                rc = sl_err_set(err, SL_E_INVAL, "invalid_config",
                                "%s:%zu: option %s must be a plain value", path,
                                ev.start_mark.line + 1, key);
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = sl_err_set(err, SL_E_INVAL, "invalid_config",
                            "%s:%zu: option %s must be a plain value", path, ev.start_mark.line + 1,
                            have_key ? key : "(top level)");
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            if (depth != 1) {
                rc = sl_err_set(err, SL_E_INVAL, "invalid_config",
                                "%s: the file must be a mapping of option: value", path);
            } else if (!have_key) {
                snprintf(key, sizeof(key), "%s", v);
                have_key = 1;
            } else {
                const struct opt *o = find_opt(key, strlen(key));
                char where[4200];
                snprintf(where, sizeof(where), "%s:%zu", path, ev.start_mark.line + 1);
                if (!o || strcmp(key, "config") == 0)
                    rc = sl_err_set(err, SL_E_INVAL, "invalid_config", "%s: unknown option '%s'",
                                    where, key);
                else
                    rc = set_opt(cfg, o, v, where, err);
                have_key = 0;
            }
            break;
        }
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

static void env_name(char *out, size_t n, const char *name)
{
    size_t i = snprintf(out, n, "SLUICE_");
    for (; *name && i + 1 < n; name++)
        out[i++] = (char)(*name >= 'a' && *name <= 'z' ? *name - 32 : *name);
    out[i] = 0;
}

int sl_config_load(struct sl_config *cfg, int argc, char **argv, struct sl_err *err)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc;
    for (size_t i = 0; i < NOPTS; i++)
        if ((rc = set_opt(cfg, &g_opts[i], g_opts[i].def, "default", err)))
            return rc;
    /* the config file path itself: flag > env */
    const char *cpath = getenv("SLUICE_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            cpath = argv[i + 1];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            cpath = argv[i] + 9;
    }
    if (cpath && *cpath) {
        snprintf(cfg->config, sizeof(cfg->config), "%s", cpath);
        if ((rc = load_yaml(cfg, cpath, err)))
            return rc;
    }
    for (size_t i = 0; i < NOPTS; i++) {
        char en[96];
        env_name(en, sizeof(en), g_opts[i].name);
        const char *v = getenv(en);
        /* The Boboyka seed names its two variables BOBOYKA_SUPABASE_URL/KEY: read those too. */
        if (!v && strncmp(g_opts[i].name, "boboyka_supabase_", 17) == 0)
            v = getenv(en + 7);
        if (v && g_opts[i].off != F(config) && (rc = set_opt(cfg, &g_opts[i], v, en, err)))
            return rc;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return sl_err_set(err, SL_E_INVAL, "invalid_config", "unexpected argument '%s'", a);
        a += 2;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        char name[96];
        if (n >= sizeof(name))
            return sl_err_set(err, SL_E_INVAL, "invalid_config", "unknown option '%s'", argv[i]);
        for (size_t k = 0; k < n; k++)
            name[k] = a[k] == '-' ? '_' : a[k];
        name[n] = 0;
        const struct opt *o = find_opt(name, n);
        if (!o)
            return sl_err_set(err, SL_E_INVAL, "invalid_config", "unknown option '%s'", argv[i]);
        /* a 0/1 option given bare (--insecure-no-auth) means 1 */
        int flag = o->type == OT_UINT && o->min == 0 && o->max == 1 && !eq &&
                   (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0);
        const char *v = flag ? "1" : eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v)
            return sl_err_set(err, SL_E_INVAL, "invalid_config", "option --%.*s needs a value",
                              (int)n, a);
        if (o->off != F(config) && (rc = set_opt(cfg, o, v, "command line", err)))
            return rc;
    }
    return 0;
}

int sl_config_split_listen(const char *listen, char *host, size_t hostlen, unsigned *port)
{
    const char *colon;
    const char *h = listen;
    size_t hl;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':')
            return -1;
        h = listen + 1;
        hl = (size_t)(close - h);
        colon = close + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - listen);
    }
    uint64_t p;
    if (hl == 0 || hl >= hostlen || sl_parse_u64(colon + 1, &p) || p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = (unsigned)p;
    return 0;
}

void sl_config_write_doc(FILE *f)
{
    fprintf(f, "# Configuration\n\n"
               "Generated by `sluice config-doc` from the option table in `src/core/config.c`; "
               "`make test` checks that this file is current.\n\n"
               "Every option can be given as a command-line flag, an environment variable or a "
               "top-level key of the YAML file named by `--config`. A flag beats the "
               "environment, which beats the file, which beats the default. Sizes take a K, M "
               "or G suffix (powers of 1024).\n\n"
               "| option | flag | environment | default | meaning |\n"
               "| --- | --- | --- | --- | --- |\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[96], en[96];
        size_t k = 0;
        for (const char *p = g_opts[i].name; *p && k + 1 < sizeof(flag); p++)
            flag[k++] = *p == '_' ? '-' : *p;
        flag[k] = 0;
        env_name(en, sizeof(en), g_opts[i].name);
        fprintf(f, "| `%s` | `--%s` | `%s` | `%s` | %s |\n", g_opts[i].name, flag, en,
                *g_opts[i].def ? g_opts[i].def : "(none)", g_opts[i].help);
    }
}

void sl_config_usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  sluice serve [--data DIR] [--listen HOST:PORT] [--config FILE] [options]\n"
               "  sluice run PIPELINE.yaml [--data DIR] [serve options]\n"
               "  sluice validate PIPELINE.yaml...\n"
               "  sluice verify --data DIR [--strand NAME] [--checkpoint FILE [--key VKEY]]\n"
               "  sluice key [--data DIR] [--checkpoint-key FILE]\n"
               "  sluice prove --url URL --strand NAME RECORD_HASH\n"
               "  sluice verify-proof BUNDLE --key VKEY\n"
               "  sluice connectors [--markdown] [--plugins DIR]\n"
               "  sluice config-doc\n"
               "  sluice version\n\noptions:\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[96];
        size_t k = 0;
        for (const char *p = g_opts[i].name; *p && k + 1 < sizeof(flag); p++)
            flag[k++] = *p == '_' ? '-' : *p;
        flag[k] = 0;
        fprintf(f, "  --%-22s default %s\n", flag, *g_opts[i].def ? g_opts[i].def : "(none)");
    }
}
