#include "tools/cli.h"

#include "core/buf.h"
#include "core/util.h"
#include "tools/bundle.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FILE (16u << 20)

static void key_path(const struct sl_config *cfg, char *out, size_t n)
{
    if (cfg->checkpoint_key[0])
        snprintf(out, n, "%s", cfg->checkpoint_key);
    else
        snprintf(out, n, "%s/checkpoint.key", cfg->data);
}

int sl_checkpoint_key_open(const struct sl_config *cfg, struct sl_note_key *k, struct sl_err *err)
{
    char path[8300], name[300], host[256];
    key_path(cfg, path, sizeof(path));
    if (gethostname(host, sizeof(host)) != 0 || !*host)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = 0;
    snprintf(name, sizeof(name), "%s/sluice", host);
    if (!cfg->checkpoint_key[0] && sl_mkdir_p(cfg->data) < 0)
        return sl_err_sys(err, SL_E_IO, "create data directory %s", cfg->data);
    return sl_note_key_load(path, name, k, err);
}

int sl_cmd_key(int argc, char **argv)
{
    struct sl_config cfg;
    struct sl_err err = {0};
    struct sl_note_key k;
    if (sl_config_load(&cfg, argc, argv, &err) < 0 || sl_checkpoint_key_open(&cfg, &k, &err) < 0) {
        fprintf(stderr, "sluice key: %s\n", err.msg);
        return 2;
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_note_vkey(&k, &b);
    printf("%.*s\n", (int)b.len, (const char *)b.data);
    sl_buf_release(&b);
    sl_note_key_release(&k);
    return 0;
}

/* Reads a whole file ("-": stdin) into b. */
static int read_file(const char *path, struct sl_buf *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f)
        return -1;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        if (b->len + n > MAX_FILE || sl_buf_append(b, tmp, n) < 0)
            break;
    int rc = ferror(f) || n > 0 ? -1 : 0;
    if (f != stdin)
        fclose(f);
    return rc;
}

/* A verifier key given as the string itself or as a file holding it. */
static int load_vkey(const char *arg, struct sl_note_key *v, struct sl_err *err)
{
    if (strchr(arg, '+') && access(arg, R_OK) != 0)
        return sl_note_vkey_parse(arg, strlen(arg), v, err);
    struct sl_buf b;
    sl_buf_init(&b, 0);
    int rc = read_file(arg, &b) < 0 ? sl_err_sys(err, SL_E_INVAL, "verifier key file %s", arg)
                                    : sl_note_vkey_parse((const char *)b.data, b.len, v, err);
    sl_buf_release(&b);
    return rc;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    struct sl_buf *b = ud;
    return b->len + sz * n > MAX_FILE || sl_buf_append(b, p, sz * n) < 0 ? 0 : sz * n;
}

int sl_cmd_prove(int argc, char **argv)
{
    const char *url = NULL, *strand = NULL, *hash = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[++i];
        else if (strcmp(argv[i], "--strand") == 0 && i + 1 < argc)
            strand = argv[++i];
        else if (!hash && argv[i][0] != '-')
            hash = argv[i];
        else
            hash = NULL, i = argc;
    }
    uint8_t h[SL_HASH_LEN];
    if (!url || !strand || !hash || sl_hex_decode(hash, strlen(hash), h, SL_HASH_LEN) < 0) {
        fprintf(stderr, "usage: sluice prove --url URL --strand NAME RECORD_HASH (64 hex)\n");
        return 2;
    }
    size_t ul = strlen(url);
    while (ul && url[ul - 1] == '/')
        ul--;
    char full[4200];
    snprintf(full, sizeof(full), "%.*s/v1/records/%s?proof=1&raw=1", (int)ul, url, hash);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    struct sl_buf b;
    sl_buf_init(&b, 0);
    int rc = 1;
    /* a record newer than the latest checkpoint waits for the next one (checkpoint_interval_ms) */
    for (int attempt = 0; c && attempt < 100; attempt++) {
        sl_buf_reset(&b);
        long status = 0;
        curl_easy_setopt(c, CURLOPT_URL, full);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (cc != CURLE_OK) {
            fprintf(stderr, "sluice prove: %s: %s\n", full, curl_easy_strerror(cc));
            break;
        }
        if (status != 200) {
            fprintf(stderr, "sluice prove: HTTP %ld: %.*s\n", status, (int)b.len,
                    (const char *)b.data);
            break;
        }
        struct sl_bundle bu;
        struct sl_err err = {0};
        int prc = sl_bundle_parse((const char *)b.data, b.len, &bu, &err);
        sl_bundle_release(&bu);
        if (prc == 0) {
            if (strcmp(bu.strand, strand) != 0) {
                fprintf(stderr, "sluice prove: record %s is in strand %s, not %s\n", hash,
                        bu.strand, strand);
                break;
            }
            fwrite(b.data, 1, b.len, stdout);
            putchar('\n');
            rc = 0;
            break;
        }
        if (!memmem(b.data, b.len, "\"proof_pending\"", 15)) {
            fprintf(stderr, "sluice prove: the server's answer is not a proof bundle: %s\n",
                    err.msg);
            break;
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (rc && b.len && memmem(b.data, b.len, "\"proof_pending\"", 15))
        fprintf(stderr, "sluice prove: no checkpoint covers the record yet\n");
    sl_buf_release(&b);
    if (c)
        curl_easy_cleanup(c);
    return rc;
}

int sl_cmd_verify_proof(int argc, char **argv)
{
    const char *path = NULL, *vkey = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            vkey = argv[++i];
        else if (!path)
            path = argv[i];
        else
            vkey = NULL, i = argc;
    }
    if (!path || !vkey) {
        fprintf(stderr, "usage: sluice verify-proof BUNDLE|- --key VKEY|VKEY_FILE\n");
        return 2;
    }
    struct sl_err err = {0};
    struct sl_note_key v;
    if (load_vkey(vkey, &v, &err) < 0) {
        fprintf(stderr, "sluice verify-proof: %s\n", err.msg);
        return 2;
    }
    struct sl_buf b;
    sl_buf_init(&b, 0);
    if (read_file(path, &b) < 0) {
        fprintf(stderr, "sluice verify-proof: cannot read %s\n", path);
        sl_buf_release(&b);
        return 2;
    }
    struct sl_bundle bu;
    char origin[512];
    int rc = sl_bundle_parse((const char *)b.data, b.len, &bu, &err);
    if (rc == 0)
        rc = sl_bundle_verify(&bu, &v, origin, sizeof(origin), &err);
    char hx[2 * SL_HASH_LEN + 1];
    sl_hex_encode(hx, bu.rec.hash, SL_HASH_LEN);
    if (rc == 0)
        printf("ok %s seq %llu record %s is in the tree of size %llu of %s, signed by %s\n",
               bu.strand, (unsigned long long)bu.rec.seq, hx, (unsigned long long)bu.tree_size,
               origin, v.name);
    else
        printf("FAIL %s\n", err.msg);
    sl_bundle_release(&bu);
    sl_buf_release(&b);
    return rc ? 1 : 0;
}

int sl_old_checkpoint_load(const char *path, const char *vkey, const char *data,
                           struct sl_old_checkpoint *ck, struct sl_err *err)
{
    struct sl_note_key v;
    int rc;
    if (vkey) {
        rc = load_vkey(vkey, &v, err);
    } else {
        struct sl_config cfg = {0};
        snprintf(cfg.data, sizeof(cfg.data), "%s", data);
        char kp[8300];
        key_path(&cfg, kp, sizeof(kp));
        rc = sl_note_key_load(kp, NULL, &v, err); /* never creates one */
        sl_note_key_release(&v);                  /* only its public half is needed */
    }
    if (rc)
        return rc;
    struct sl_buf b;
    sl_buf_init(&b, 0);
    size_t body;
    if (read_file(path, &b) < 0)
        rc = sl_err_sys(err, SL_E_INVAL, "checkpoint file %s", path);
    else if ((rc = sl_note_open((const char *)b.data, b.len, &v, &body, err)) == 0)
        rc = sl_checkpoint_parse((const char *)b.data, body, ck->origin, sizeof(ck->origin),
                                 &ck->size, ck->root, err);
    sl_buf_release(&b);
    if (rc)
        return rc;
    const char *last = strrchr(ck->origin, '/');
    last = last ? last + 1 : ck->origin;
    if (!sl_strand_name_valid(last, strlen(last)))
        return sl_err_set(err, SL_E_INVAL, "invalid_checkpoint",
                          "checkpoint: origin %s does not end with a strand name (use --strand)",
                          ck->origin);
    memcpy(ck->strand, last, strlen(last) + 1); /* a valid name: at most 64 bytes */
    return 0;
}

int sl_verify_print(const char *name, const struct sl_verify_result *r,
                    const struct sl_old_checkpoint *ck)
{
    char head[SL_HASH_LEN * 2 + 1], root[SL_HASH_LEN * 2 + 1];
    if (!r->ok) {
        printf("FAIL %s seq %llu: %s\n", name, (unsigned long long)r->bad_seq, r->reason);
        return 1;
    }
    if (r->tree_problem[0]) {
        printf("FAIL %s %s\n", name, r->tree_problem);
        return 1;
    }
    if (ck && !r->have_root_at) {
        printf("FAIL %s checkpoint: the strand has %llu records but the checkpoint covers %llu "
               "(records were removed)\n",
               name, (unsigned long long)r->count, (unsigned long long)ck->size);
        return 1;
    }
    if (ck && memcmp(r->root_at, ck->root, SL_HASH_LEN) != 0) {
        sl_hex_encode(head, r->root_at, SL_HASH_LEN);
        sl_hex_encode(root, ck->root, SL_HASH_LEN);
        printf("FAIL %s checkpoint: the first %llu records have root %.16s…, the checkpoint "
               "signed %.16s… (history was rewritten)\n",
               name, (unsigned long long)ck->size, head, root);
        return 1;
    }
    sl_hex_encode(head, r->head, SL_HASH_LEN);
    sl_hex_encode(root, r->root, SL_HASH_LEN);
    printf("ok %s %llu %s", name, (unsigned long long)r->count, head);
    if (ck) /* the plain line stays "ok <strand> <count> <head_hash>" for scripts */
        printf(" root %s consistent with checkpoint %llu", root, (unsigned long long)ck->size);
    putchar('\n');
    return 0;
}
