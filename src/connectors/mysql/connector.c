/* The mysql-cdc source as a connector: its config table (Rivven's mysql-cdc keys, plus what
 * users of Debezium's MySQL connector expect) and the checks across fields. */
#include "connectors/mysql/mysql.h"
#include "core/err.h"
#include "strand/record.h"

#include <regex.h>
#include <sluice/connector.h>
#include <stddef.h>

static const char *const g_tls_modes[] = {"disable", "prefer", "require", NULL};
static const char *const g_snapshot_modes[] = {"initial", "never", "initial_only", "when_needed",
                                               NULL};

static const struct sl_field f_tls[] = {
    {"mode", SL_F_ENUM, 0, "\"prefer\"", 0,
     "disable, prefer (the library's default) or require (TLS, the server certificate is not "
     "verified).",
     0, 0, g_tls_modes, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_mysql_cdc[] = {
    {"host", SL_F_STRING, 1, NULL, 0, "Database host.", 0, 0, NULL, NULL},
    {"port", SL_F_INT, 0, "3306", 0, "Database port.", 1, 65535, NULL, NULL},
    {"database", SL_F_STRING, 1, NULL, 0, "Database whose tables are captured.", 0, 0, NULL, NULL},
    {"user", SL_F_STRING, 1, NULL, 0,
     "User with REPLICATION SLAVE, REPLICATION CLIENT and SELECT on the captured tables.", 0, 0,
     NULL, NULL},
    {"password", SL_F_STRING, 1, NULL, SL_SECRET, "Password.", 0, 0, NULL, NULL},
    {"server_id", SL_F_INT, 1, NULL, 0,
     "Replica server id, unique among the server's replicas and binlog readers.", 1, 4294967295LL,
     NULL, NULL},
    {"tables", SL_F_STRING_LIST, 0, "[]", 0,
     "Tables to capture (name in database, or db.table; globs allowed); empty = all of database.",
     0, 0, NULL, NULL},
    {"table_regex", SL_F_STRING, 0, NULL, 0,
     "POSIX extended regex a captured table must match (as db.table or table).", 0, 0, NULL, NULL},
    {"snapshot_mode", SL_F_ENUM, 0, "\"initial\"", 0,
     "initial (snapshot, then stream), never (stream from now), initial_only (snapshot, then "
     "stop) or when_needed (snapshot again when the stored binlog position is gone).",
     0, 0, g_snapshot_modes, NULL},
    {"include_schema_changes", SL_F_BOOL, 0, "false", 0,
     "Write each DDL statement on the captured database as a record of its own ({\"ddl\", "
     "\"databaseName\", \"source\", \"ts_ms\"}, no op); rows decode right either way.",
     0, 0, NULL, NULL},
    {"heartbeat_interval_ms", SL_F_INT, 0, "1000", 0,
     "While the binlog is idle, the stored position follows the server's heartbeats (asked every "
     "min(this, 250 ms)) at most this often, across binlog rotations.",
     1, 86400000, NULL, NULL},
    {"tls", SL_F_OBJECT, 0, NULL, 0, "{\"mode\": disable|prefer|require}.", 0, 0, NULL, f_tls},
    {"strand", SL_F_STRAND, 0, NULL, 0,
     "Strand the changes are written to (default cdc.<database>).", 0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int check_mysql(json_t *c, struct sl_err *err)
{
    const char *re = json_string_value(json_object_get(c, "table_regex"));
    if (re) {
        regex_t r;
        if (regcomp(&r, re, REG_EXTENDED | REG_NOSUB) != 0)
            return sl_err_set(err, SL_E_INVAL, "invalid_config",
                              "config.table_regex: not a valid POSIX extended regular expression");
        regfree(&r);
    }
    if (!json_object_get(c, "strand")) {
        char strand[SL_STRAND_NAME_MAX + 1];
        sl_mysql_default_strand(c, strand, sizeof(strand));
        json_object_set_new(c, "strand", json_string(strand));
    }
    return 0;
}

static const char *const my_aliases[] = {"mysql_cdc", "mariadb-cdc", NULL};

const struct sl_connector sl_conn_mysql_cdc = {
    .abi = SL_CONNECTOR_ABI,
    .name = "mysql-cdc",
    .aliases = my_aliases,
    .direction = SL_INBOUND,
    .category = "database",
    .description = "Change Data Capture from MySQL/MariaDB (row-based binlog) into a strand.",
    .fields = f_mysql_cdc,
    .check_config = check_mysql,
    .source = &sl_mysql_source_ops,
};
