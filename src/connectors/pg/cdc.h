/* The postgres_cdc source: a logical replication client (libpq, replication=database, pgoutput
 * protocol 1) on the source contract (include/sluice/connector.h): one strand record per row
 * change, a transaction emitted as one group at its commit, and an LSN confirmed to PostgreSQL
 * only once durable() reported everything before it fsynced in the strand.
 * docs/connectors.md ("PostgreSQL CDC") is the user's contract: envelope, types, resume rule.
 *
 * Threads: start/poll/stop run on the connector's worker thread (the framework's), durable() on
 * the strand's committer thread; only poll's thread uses the libpq connections. */
#ifndef SL_CONNECTORS_PG_CDC_H
#define SL_CONNECTORS_PG_CDC_H

#include "core/err.h"

#include <jansson.h>
#include <sluice/connector.h>
#include <stddef.h>
#include <stdint.h>

/* The source's ops (cdc.c), for connector.c's struct sl_connector. */
extern const struct sl_source_ops sl_pg_source_ops;

/* After the connector id was deleted: drops the replication slot and the publication of config
 * that this connector created (meta markers "@pg.created_slot:<name>", "@pg.created_pub:<name>"),
 * unless config.drop_slot_on_delete is false; objects that existed before are never touched.
 * Waits (about 10 s at most) for the connector's source to be stopped and for the slot to be
 * released by its walsender, then drops over a normal connection. Failures (server unreachable,
 * slot still busy) are logged with the SQL to run by hand; nothing is returned because the
 * connector is gone either way. Call it before the connector's meta state is dropped. Blocks: any
 * thread but the connector's own worker. */
void sl_pg_cdc_cleanup(const json_t *config, const char *id, struct sl_meta *meta);

/* 0 if s is a connection string libpq accepts: a postgres:// or postgresql:// URI, or key=value
 * pairs (at least one). Else SL_E_INVAL with "config.connection_string: ..." in err, libpq's
 * reason included with any password in it replaced by "***". conninfo.c; any thread. */
int sl_pg_conninfo_check(const char *s, struct sl_err *err);
/* The same, naming field ("config.connection.url"). */
int sl_pg_conninfo_check_field(const char *s, const char *field, struct sl_err *err);

/* PQconnectdbParams(keys, vals, 1), but only to addresses the outbound policy allows
 * (core/netpolicy.h): every TCP host the parameters name is resolved here and checked, and the
 * first allowed address of each is passed as hostaddr, so libpq connects to what was checked
 * without resolving again (host stays, for TLS verification and the password file); a hostaddr
 * given is checked as it is; Unix-socket hosts are local and allowed. Returns the connection
 * (check PQstatus), or NULL with why ("outbound policy: ..." or the name that did not resolve).
 * stop (may be NULL) is asked every 250 ms while connecting: nonzero gives up at once ("stopped
 * while connecting"). conninfo.c; any thread. */
struct pg_conn;
struct pg_conn *sl_pg_connect(const char *const *keys, const char *const *vals, int (*stop)(void *),
                              void *arg, char *why, size_t whylen);

/* The default strand of a config without "strand": "cdc.<database>" (the database of the
 * connection string or of the Rivven "database" field, made a valid strand name). */
void sl_pg_cdc_default_strand(const json_t *config, char *out, size_t n);

#endif
