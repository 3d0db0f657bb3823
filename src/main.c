/* sluice: serve | verify | connectors | config-doc | version. Thin: everything lives in the
 * modules. */
#include "api/api.h"
#include "api/auth.h"
#include "api/http.h"
#include "cli/cli.h"
#include "core/config.h"
#include "core/log.h"
#include "core/netpolicy.h"
#include "core/util.h"
#include "core/version.h"
#include "engine/catalog_doc.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "pipeline/pipeline.h"

#include "strand/store.h"
#include "strand/verify.h"
#include "tools/cli.h"
#include <curl/curl.h>

#include <dirent.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Applies the pipelines of path (a file or directory), their problems on stderr. Nonzero if
 * any file was refused. */
static int apply_pipelines(const char *path, struct sl_api *api)
{
    struct sl_buf msgs;
    sl_buf_init(&msgs, 0);
    int bad = sl_pipelines_run(path, api->registry, api->store, &msgs);
    if (msgs.len)
        fprintf(stderr, "%.*s", (int)msgs.len, (const char *)msgs.data);
    sl_buf_release(&msgs);
    return bad;
}

/* The server's heap keeps what it has touched. By default glibc gives the top of a heap back to
 * the kernel once 128 KiB are free there and serves blocks of 128 KiB and more (a batch's body,
 * its answer of 67 bytes per record) with fresh mmaps: each request then touches new pages,
 * and a page fault costs ~14 us on the test VM (a 1000-record batch: ~17 of them for its
 * answer alone). Measured with `wrk` batches of 1000: 6–9k faults/s -> 4.2–4.8k, 1.30–1.50M ->
 * 1.48–1.59M records/s. What stays is the peak of the transient buffers (a few MB per loop);
 * malloc_trim still returns it when many connections close (api/http.c). */
static void tune_heap(void)
{
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
    mallopt(M_TOP_PAD, 16 << 20);
}

static int cmd_serve(int argc, char **argv)
{
    /* the data directory holds every record, the signing key and connector secrets: what the
     * server creates is its user's alone (directories 0700, files 0600) */
    umask(077);
    tune_heap();
    struct sl_config cfg;
    struct sl_err err = {0};
    if (sl_config_load(&cfg, argc, argv, &err) < 0) {
        fprintf(stderr, "sluice: %s\n", err.msg);
        return 2;
    }
    sl_log_set_level(cfg.log_level);
    if (cfg.checkpoint_strand[0] &&
        !sl_strand_name_valid(cfg.checkpoint_strand, strlen(cfg.checkpoint_strand))) {
        fprintf(stderr,
                "sluice: checkpoint_strand: '%s' is not a strand name ([a-z0-9][a-z0-9._-]*)\n",
                cfg.checkpoint_strand);
        return 2;
    }
    char host[256];
    unsigned port;
    if (sl_config_split_listen(cfg.listen, host, sizeof(host), &port) < 0) {
        fprintf(stderr, "sluice: listen: expected HOST:PORT, got '%s'\n", cfg.listen);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Block the stop signals before any thread exists (threads inherit the mask), so that they
     * are always taken by sigwait below, never by a random thread. */
    sigset_t stop_sigs;
    sigemptyset(&stop_sigs);
    sigaddset(&stop_sigs, SIGINT);
    sigaddset(&stop_sigs, SIGTERM);
    sigaddset(&stop_sigs, SIGHUP); /* reloads the pipelines */
    pthread_sigmask(SIG_BLOCK, &stop_sigs, NULL);
    /* Before the registry opens (it skips connectors of unknown kinds); after the mask, which a
     * thread started by a plugin inherits too. */
    if (sl_plugins_load(cfg.plugins, &err) < 0) {
        fprintf(stderr, "sluice: %s\n", err.msg);
        return 2;
    }

    static struct sl_api api;
    sl_api_init(&api, NULL, &cfg);
    if (cfg.auth_tokens[0]) {
        struct sl_buf msgs;
        sl_buf_init(&msgs, 0);
        int bad = sl_auth_load(cfg.auth_tokens, &api.auth, &msgs);
        if (bad)
            fprintf(stderr, "%.*ssluice: the tokens file %s was refused\n", (int)msgs.len,
                    (const char *)msgs.data, cfg.auth_tokens);
        sl_buf_release(&msgs);
        if (bad)
            return 2;
    }
    char perr[200];
    if (sl_netpolicy_set((int)cfg.outbound_deny_private, cfg.outbound_allow, cfg.outbound_deny,
                         perr, sizeof(perr)) < 0) {
        fprintf(stderr, "sluice: %s\n", perr);
        return 2;
    }
    /* Redis's protected mode: reachable from other hosts, and nobody needs a token */
    int loopback = !strncmp(host, "127.", 4) || !strcmp(host, "::1") || !strcmp(host, "localhost");
    if (!loopback && !api.auth && !cfg.insecure_no_auth) {
        fprintf(stderr,
                "sluice: refusing to listen on %s without API tokens: anyone who reaches the port "
                "could create connectors and read every record. Give --auth-tokens FILE "
                "(docs/security.md), listen on 127.0.0.1, or pass --insecure-no-auth.\n",
                host);
        return 2;
    }
    struct sl_store_opts so = {.dir = cfg.data,
                               .segment_bytes = cfg.segment_bytes,
                               .durable = cfg.durable,
                               .no_tree = !cfg.merkle_tree,
                               .spare_max_rate = cfg.spare_max_rate,
                               .cache_window = cfg.cache_window};
    if (sl_store_open(&api.store, &so, &api.recovery, &err) < 0) {
        sl_error("cannot open data directory %s: %s", cfg.data, err.msg);
        return 1;
    }
    if (cfg.merkle_tree && sl_checkpoint_key_open(&cfg, &api.ckpt_key, &err) < 0) {
        sl_error("%s", err.msg);
        sl_store_close(api.store);
        return 1;
    }
    api.have_key = cfg.merkle_tree != 0;
    if (sl_registry_open(&api.registry, cfg.data, &err) < 0) {
        sl_error("cannot open the connector registry in %s: %s", cfg.data, err.msg);
        sl_store_close(api.store);
        return 1;
    }
    struct sl_bbk_opts bo = {
        .data_dir = cfg.data,
        .registry = api.registry,
        .supabase_url = cfg.boboyka_supabase_url,
        .supabase_key = cfg.boboyka_supabase_key,
        .timeout_ms = cfg.boboyka_mirror_timeout_ms,
        .max_retries = cfg.boboyka_mirror_max_retries,
        .retry_base_ms = cfg.boboyka_retry_base_ms,
        .retry_max_ms = cfg.boboyka_retry_max_ms,
        .dedup_column = cfg.boboyka_dedup_column,
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (sl_bbk_open(&api.boboyka, api.store, &bo, &err) < 0) {
        sl_error("cannot open the Boboyka service in %s: %s", cfg.data, err.msg);
        sl_registry_close(api.registry);
        sl_store_close(api.store);
        return 1;
    }
    sl_info("opened %s: %llu strands, %llu records in %llu ms (%llu torn tails cut)", cfg.data,
            (unsigned long long)api.recovery.strands, (unsigned long long)api.recovery.records,
            (unsigned long long)api.recovery.elapsed_ms,
            (unsigned long long)api.recovery.truncations);
    if (!cfg.durable)
        sl_warn("durability: none — writes are acknowledged before they reach the disk");
    struct sl_http_opts ho = {
        .host = host,
        .port = port,
        .max_body = cfg.max_body_bytes,
        .max_conns = (unsigned)cfg.max_connections,
        .max_conns_per_ip = (unsigned)cfg.max_connections_per_ip,
        .timeout_s = (unsigned)cfg.connection_timeout_s,
        .header_timeout_s = (unsigned)cfg.header_timeout_s,
        .body_timeout_s = (unsigned)cfg.body_timeout_s,
        .threads = (unsigned)cfg.http_threads,
        .on_complete = sl_api_on_complete,
    };
    /* TLS: the PEM files read once at start (kept for the server's life) */
    char *pem[3] = {NULL, NULL, NULL};
    const char *pem_path[3] = {cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca};
    static const char *const pem_opt[3] = {"tls_cert", "tls_key", "tls_client_ca"};
    if (!cfg.tls_cert[0] != !cfg.tls_key[0] || (cfg.tls_client_ca[0] && !cfg.tls_cert[0])) {
        sl_error("TLS: tls_cert and tls_key go together (and tls_client_ca needs them)");
        return 2;
    }
    for (int i = 0; i < 3; i++) {
        if (!pem_path[i][0])
            continue;
        size_t len;
        if (!(pem[i] = sl_read_file(pem_path[i], 1 << 20, &len)) || !strstr(pem[i], "-----BEGIN")) {
            sl_error("%s: cannot read a PEM file from %s", pem_opt[i], pem_path[i]);
            return 2;
        }
    }
    ho.tls_cert = pem[0];
    ho.tls_key = pem[1];
    ho.tls_client_ca = pem[2];
    struct sl_http_server *srv;
    if (sl_http_start(&srv, &ho, sl_api_handle, &api, &err) < 0) {
        sl_error("%s", err.msg);
        sl_bbk_close(api.boboyka);
        sl_store_close(api.store);
        sl_registry_close(api.registry);
        return 1;
    }
    struct sl_engine *engine = NULL;
    if (sl_engine_start(&engine, api.store, api.registry, NULL, &err) < 0) {
        sl_error("%s", err.msg);
        sl_http_stop(srv);
        sl_bbk_close(api.boboyka);
        sl_store_close(api.store);
        sl_registry_close(api.registry);
        return 1;
    }
    if (cfg.pipelines[0]) {
        if (apply_pipelines(cfg.pipelines, &api)) {
            sl_error("pipelines in %s refused: nothing was started", cfg.pipelines);
            sl_engine_stop(engine);
            sl_http_stop(srv);
            sl_bbk_close(api.boboyka);
            sl_store_close(api.store);
            sl_registry_close(api.registry);
            return 1;
        }
    }
    if (cfg.merkle_tree && sl_checkpointer_start(&api) < 0)
        sl_warn("cannot start the checkpointer: checkpoints are signed on request only");
    sl_info("listening on %s:%u", host, sl_http_port(srv));
    int sig = 0;
    while (sigwait(&stop_sigs, &sig) != 0 || sig == SIGHUP) {
        if (sig != SIGHUP)
            continue;
        sig = 0;
        if (cfg.tls_cert[0]) { /* a renewed certificate: new handshakes use it */
            size_t l1, l2;
            char *c = sl_read_file(cfg.tls_cert, 1 << 20, &l1),
                 *k = sl_read_file(cfg.tls_key, 1 << 20, &l2);
            char why[300] = "the certificate or key file cannot be read";
            if (c && k && sl_http_tls_reload(c, k, why, sizeof(why)) == 0)
                sl_info("SIGHUP: TLS certificate reloaded from %s", cfg.tls_cert);
            else
                sl_error("SIGHUP: %s; the TLS certificate in use is unchanged", why);
            free(c); /* the loaded identity holds its own copies */
            free(k);
        }
        if (!cfg.pipelines[0])
            continue;
        /* the difference is applied: unchanged connectors keep running; an invalid file
         * changes nothing */
        if (apply_pipelines(cfg.pipelines, &api))
            sl_error("SIGHUP: pipelines in %s refused; the running ones are unchanged",
                     cfg.pipelines);
        else
            sl_info("SIGHUP: pipelines in %s reloaded", cfg.pipelines);
    }
    sl_info("shutting down (%s)", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* Stop accepting, refuse further requests on open connections, let the committers finish
     * and answer every pending write, then stop. */
    sl_http_quiesce(srv);
    sl_api_shutdown(&api);
    sl_http_drain(srv);         /* writes the loops deferred before the gate closed are committed */
    sl_checkpointer_stop(&api); /* it appends to a strand: before the store closes */
    sl_engine_stop(engine);     /* workers read strands: they stop first */
    sl_bbk_close(api.boboyka);  /* answers its ingests in flight */
    sl_store_close(api.store);  /* answers every pending write (and counts pushes) */
    sl_registry_close(api.registry); /* then the counters are flushed */
    sl_http_stop(srv);
    sl_note_key_release(&api.ckpt_key);
    sl_auth_free(api.auth);
    sl_info("stopped");
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    const char *data = NULL, *only = NULL, *ckpt = NULL, *vkey = NULL;
    static const char usage[] =
        "usage: sluice verify --data DIR [--strand NAME] [--checkpoint FILE [--key VKEY]]\n";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            data = argv[++i];
        else if (strcmp(argv[i], "--strand") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--checkpoint") == 0 && i + 1 < argc)
            ckpt = argv[++i];
        else if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            vkey = argv[++i];
        else {
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!data)
        data = getenv("SLUICE_DATA");
    if (!data) {
        fputs(usage, stderr);
        return 2;
    }
    /* --checkpoint: the strand must extend that older signed checkpoint */
    struct sl_old_checkpoint ck;
    if (ckpt) {
        struct sl_err err = {0};
        if (sl_old_checkpoint_load(ckpt, vkey, data, &ck, &err) < 0) {
            printf("FAIL %s\n", err.msg);
            return 1;
        }
        if (!only)
            only = ck.strand;
    }
    char sdir[4200];
    snprintf(sdir, sizeof(sdir), "%s/strands", data);
    DIR *d = opendir(sdir);
    if (!d) {
        fprintf(stderr, "sluice verify: %s is not a sluice data directory\n", data);
        return 2;
    }
    int bad = 0, seen = 0;
    struct dirent *e;
    char names[1024][SL_STRAND_NAME_MAX + 1];
    int n = 0;
    while ((e = readdir(d)) && n < 1024)
        if (sl_strand_name_valid(e->d_name, strlen(e->d_name)) &&
            (!only || strcmp(only, e->d_name) == 0))
            snprintf(names[n++], sizeof(names[0]), "%s", e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
    for (int i = 0; i < n; i++) {
        char dir[4400];
        snprintf(dir, sizeof(dir), "%s/%.64s", sdir, names[i]);
        static struct sl_verify_result r;
        sl_verify_strand_at(dir, names[i], ckpt ? ck.size : 0, &r);
        seen++;
        bad |= sl_verify_print(names[i], &r, ckpt ? &ck : NULL);
    }
    if (only && !seen) {
        fprintf(stderr, "sluice verify: no strand named %s in %s\n", only, data);
        return 1;
    }
    return bad;
}

/* sluice validate FILE...: every problem of each, as FILE:LINE:COL: path: message. */
static int cmd_validate(int argc, char **argv)
{
    if (argc < 1) {
        fprintf(stderr, "usage: sluice validate PIPELINE.yaml...\n");
        return 2;
    }
    int bad = 0;
    for (int i = 0; i < argc; i++) {
        struct sl_buf msgs;
        sl_buf_init(&msgs, 0);
        struct sl_pipeline *p = NULL;
        int n = sl_pipeline_load(argv[i], &p, &msgs);
        if (msgs.len)
            fprintf(stderr, "%.*s", (int)msgs.len, (const char *)msgs.data);
        if (n)
            fprintf(stderr, "%s: %d problem%s\n", argv[i], n, n == 1 ? "" : "s");
        else
            printf("%s: valid\n", argv[i]);
        bad += n != 0;
        sl_pipeline_free(p);
        sl_buf_release(&msgs);
    }
    return bad ? 1 : 0;
}

/* sluice run FILE [serve options]: serve with --pipelines FILE. */
static int cmd_run(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "usage: sluice run PIPELINE.yaml [--data DIR] [serve options]\n");
        return 2;
    }
    char **args = calloc((size_t)argc + 2, sizeof(*args));
    if (!args)
        return 1;
    args[0] = "--pipelines";
    args[1] = argv[0];
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    int rc = cmd_serve(argc + 1, args);
    free(args);
    return rc;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 ? argv[1] : "";
    if (strcmp(cmd, "validate") == 0)
        return cmd_validate(argc - 2, argv + 2);
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "verify") == 0)
        return cmd_verify(argc - 2, argv + 2);
    if (strcmp(cmd, "key") == 0)
        return sl_cmd_key(argc - 2, argv + 2);
    if (strcmp(cmd, "prove") == 0)
        return sl_cmd_prove(argc - 2, argv + 2);
    if (strcmp(cmd, "verify-proof") == 0)
        return sl_cmd_verify_proof(argc - 2, argv + 2);
    if (strcmp(cmd, "config-doc") == 0) {
        sl_config_write_doc(stdout);
        return 0;
    }
    if (strcmp(cmd, "connectors") == 0) { /* [--markdown] [--plugins DIR] */
        int md = 0;
        for (int i = 2; i < argc; i++) {
            struct sl_err err = {0};
            if (strcmp(argv[i], "--markdown") == 0) {
                md = 1;
            } else if (strcmp(argv[i], "--plugins") == 0 && i + 1 < argc) {
                if (sl_plugins_load(argv[++i], &err) < 0) {
                    fprintf(stderr, "sluice: %s\n", err.msg);
                    return 2;
                }
            } else {
                fprintf(stderr, "usage: sluice connectors [--markdown] [--plugins DIR]\n");
                return 2;
            }
        }
        md ? sl_catalog_markdown(stdout) : sl_catalog_print(stdout);
        return 0;
    }
    if (sl_cli_is_command(cmd)) /* push, tail, status: clients of a running server */
        return sl_cli_main(cmd, argc - 2, argv + 2);
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sluice " SL_VERSION "\n");
        return 0;
    }
    sl_config_usage(stderr);
    fprintf(stderr, "\nclient commands (docs/cli.md):\n");
    sl_cli_usage(stderr);
    return 2;
}
