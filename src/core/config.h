/* Server options: one table (config.c) gives each option's name, type, default and help. The
 * same table reads command-line flags (--segment-bytes), SLUICE_* environment variables
 * (SLUICE_SEGMENT_BYTES), the YAML file (segment_bytes: 64M) and writes docs/configuration.md.
 * Precedence: flag > environment > file > default. */
#ifndef SL_CORE_CONFIG_H
#define SL_CORE_CONFIG_H

#include "core/err.h"

#include <stdint.h>
#include <stdio.h>

struct sl_config {
    char data[4096];
    char listen[256];
    char config[4096];
    int durable; /* durability: fsync (1) | none (0) */
    uint64_t segment_bytes;
    uint64_t spare_max_rate; /* bytes/s; 0 = every segment gets a zero-filled spare */
    uint64_t cache_window;   /* bytes of each strand's newest log kept in the page cache; 0 = all */
    uint64_t max_body_bytes;
    uint64_t max_connections;
    uint64_t connection_timeout_s;
    uint64_t header_timeout_s; /* a new connection's first request line and headers */
    uint64_t body_timeout_s;   /* a request body, from the request's headers on */
    uint64_t http_threads;
    uint64_t batch_max_records;
    int log_level;
    char boboyka_supabase_url[1024]; /* also BOBOYKA_SUPABASE_URL (the seed's name) */
    char boboyka_supabase_key[1024]; /* also BOBOYKA_SUPABASE_KEY */
    uint64_t boboyka_mirror_timeout_ms;
    uint64_t boboyka_mirror_max_retries;
    uint64_t boboyka_retry_base_ms;
    uint64_t boboyka_retry_max_ms;
    char boboyka_dedup_column[64];
    char plugins[4096];              /* connector plugin directory, "" = none */
    uint64_t merkle_tree;            /* 1: a Merkle tree per strand, 0: none */
    char checkpoint_key[4096];       /* "" = DATA/checkpoint.key */
    char checkpoint_origin[256];     /* "" = <hostname>/sluice/<strand> */
    uint64_t checkpoint_interval_ms; /* a new checkpoint at most this often */
    char checkpoint_strand[65];      /* "" = checkpoints are not appended anywhere */
    char pipelines[4096];            /* pipeline file or directory, "" = none */
    char auth_tokens[4096];          /* tokens file, "" = none */
    uint64_t metrics_public;         /* 1: /metrics needs no token */
    uint64_t insecure_no_auth;       /* 1: a non-loopback listener without tokens is allowed */
    uint64_t outbound_deny_private;  /* 1: RFC 1918, loopback, ULA denied too */
    char outbound_allow[4096];       /* CIDRs allowed whatever the deny rules say */
    char outbound_deny[4096];        /* CIDRs denied besides link-local */
    char tls_cert[4096];             /* PEM certificate chain, "" = plain HTTP */
    char tls_key[4096];              /* PEM private key */
    char tls_client_ca[4096];        /* PEM CA of client certificates, "" = none */
    uint64_t max_connections_per_ip; /* 0 = no limit */
};

/* Fills cfg from defaults, the config file (--config / SLUICE_CONFIG), the environment and
 * argv (flags only; positional arguments are rejected). Errors name the option. */
int sl_config_load(struct sl_config *cfg, int argc, char **argv, struct sl_err *err);
/* Splits "host:port" ("[::1]:80" for IPv6). */
int sl_config_split_listen(const char *listen, char *host, size_t hostlen, unsigned *port);
/* Markdown reference of every option (docs/configuration.md is this output). */
void sl_config_write_doc(FILE *f);
void sl_config_usage(FILE *f);

#endif
