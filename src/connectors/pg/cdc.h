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

#include "engine/kinds.h" /* struct sl_source_env */

void sl_pg_cdc_run(const struct sl_source_env *env);

/* After the connector id was deleted: drops the replication slot and the publication of config
 * that this connector created (meta markers "@pg.created_slot:<name>", "@pg.created_pub:<name>"),
 * unless config.drop_slot_on_delete is false; objects that existed before are never touched.
 * Waits (about 10 s at most) for the connector's worker to return and for the slot to be released
 * by its walsender, then drops over a normal connection. Failures (server unreachable, slot still
 * busy) are logged with the SQL to run by hand; nothing is returned because the connector is gone
 * either way. Call it before the connector's meta state is dropped. Blocks: any thread but the
 * connector's own worker. */
void sl_pg_cdc_cleanup(const json_t *config, const char *id, struct sl_meta *meta);

/* 0 if s is a connection string libpq accepts: a postgres:// or postgresql:// URI, or key=value
 * pairs (at least one). Else SL_E_INVAL with "config.connection_string: ..." in err, libpq's
 * reason included with any password in it replaced by "***". conninfo.c; any thread. */
int sl_pg_conninfo_check(const char *s, struct sl_err *err);

/* The default strand of a config without "strand": "cdc.<database>" (the database of the
 * connection string or of the Rivven "database" field, made a valid strand name). */
void sl_pg_cdc_default_strand(const json_t *config, char *out, size_t n);

#endif
