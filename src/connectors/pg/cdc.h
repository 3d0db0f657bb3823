/* The postgres_cdc source: a logical replication client (libpq, replication=database, pgoutput
 * protocol 1) that appends one strand record per row change, a transaction at its commit, and
 * confirms an LSN to PostgreSQL only once everything before it is fsynced in the strand.
 * docs/connectors.md ("PostgreSQL CDC") is the user's contract: envelope, types, resume rule.
 *
 * Threads: sl_pg_cdc_run runs on the connector's own worker thread (started by the engine) and
 * returns when told to stop, when the connector failed (state "failed" with last_error), or
 * when an initial_only snapshot is complete. */
#ifndef SL_CONNECTORS_PG_CDC_H
#define SL_CONNECTORS_PG_CDC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct sl_store;
struct sl_registry;
struct sl_meta;

/* What an inbound worker gets from the engine. */
struct sl_source_env {
    const char *id;
    const json_t *config; /* validated */
    struct sl_store *store;
    struct sl_registry *reg;
    struct sl_meta *meta;
    int (*stopped)(void *arg);          /* 1 once the worker must return */
    int (*nap)(void *arg, uint64_t ms); /* sleeps unless stopped; 1 if stopped */
    void *arg;
};

void sl_pg_cdc_run(const struct sl_source_env *env);

/* The default strand of a config without "strand": "cdc.<database>" (the database of the
 * connection string or of the Rivven "database" field, made a valid strand name). */
void sl_pg_cdc_default_strand(const json_t *config, char *out, size_t n);

#endif
