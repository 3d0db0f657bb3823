/* The postgres_cdc source as a connector: its config table (the SapixDB and Rivven dialects) and
 * the checks across fields. The source itself (the replication client) is cdc.c. */
#include "connectors/pg/cdc.h"
#include "core/err.h"
#include "strand/record.h"

#include <sluice/connector.h>
#include <stddef.h>

static const char *const g_tls_modes[] = {"disable", "prefer", "require", NULL};
static const char *const g_snapshot_modes[] = {"initial", "never", "initial_only", NULL};

static const struct sl_field f_tls[] = {
    {"mode", SL_F_ENUM, 0, "\"prefer\"", 0, "disable, prefer or require.", 0, 0, g_tls_modes, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* Both dialects: SapixDB (connection_string, slot, publication, table_filter) and Rivven's
 * postgres-cdc source (host, port, database, user, password, slot_name, ...). */
static const struct sl_field f_postgres_cdc[] = {
    {"connection_string", SL_F_STRING, 0, NULL, SL_HAS_PASSWORD,
     "postgres://user:pass@host:5432/db (SapixDB dialect).", 0, 0, NULL, NULL},
    {"slot", SL_F_STRING, 0, NULL, 0, "Replication slot (SapixDB dialect).", 0, 0, NULL, NULL},
    {"publication", SL_F_STRING, 0, NULL, 0, "Publication (SapixDB dialect).", 0, 0, NULL, NULL},
    {"table_filter", SL_F_STRING, 0, NULL, 0, "Tables to capture, e.g. public.* (SapixDB dialect).",
     0, 0, NULL, NULL},
    {"host", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"port", SL_F_INT, 0, NULL, 0, "Rivven dialect (5432).", 1, 65535, NULL, NULL},
    {"database", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"user", SL_F_STRING, 0, NULL, 0, "Rivven dialect.", 0, 0, NULL, NULL},
    {"password", SL_F_STRING, 0, NULL, SL_SECRET, "Rivven dialect.", 0, 0, NULL, NULL},
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
    {"drop_slot_on_delete", SL_F_BOOL, 0, "true", 0,
     "Deleting the connector drops the slot and publication Sluice created.", 0, 0, NULL, NULL},
    {"strand", SL_F_STRAND, 0, NULL, 0,
     "Strand the changes are written to (default cdc.<database>).", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int check_postgres(json_t *c, struct sl_err *err)
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
    if (sapix &&
        sl_pg_conninfo_check(json_string_value(json_object_get(c, "connection_string")), err))
        return SL_E_INVAL;
    if (!json_object_get(c, "strand")) { /* the default names the database: cdc.<database> */
        char strand[SL_STRAND_NAME_MAX + 1];
        sl_pg_cdc_default_strand(c, strand, sizeof(strand));
        json_object_set_new(c, "strand", json_string(strand));
    }
    return 0;
}

static void pg_deleted(const char *id, const json_t *config, struct sl_meta *meta)
{
    if (meta) /* what Sluice created is recorded in meta */
        sl_pg_cdc_cleanup(config, id, meta);
}

static const char *const pg_aliases[] = {"postgres-cdc", NULL};

const struct sl_connector sl_conn_postgres_cdc = {
    .abi = SL_CONNECTOR_ABI,
    .name = "postgres_cdc",
    .aliases = pg_aliases,
    .direction = SL_INBOUND,
    .category = "database",
    .description = "PostgreSQL logical replication into a strand.",
    .fields = f_postgres_cdc,
    .check_config = check_postgres,
    .deleted = pg_deleted,
    .source = &sl_pg_source_ops,
};
