/* The REST bridge (SapixDB's `rest_bridge`): any system POSTs JSON to
 * /v1/connectors/inbound/rest/{id}/push and it is written to config.strand. The pushes are served
 * by the HTTP threads (src/api/v1_connectors.c); this is its config table. */
#include "engine/kinds.h"

#include <sluice/connector.h>
#include <stddef.h>
#include <string.h>

static const struct sl_field f_rate_limit[] = {
    {"events_per_second", SL_F_NUMBER, 1, NULL, 0, "Sustained pushes per second.", 0, 0, NULL,
     NULL},
    {"burst", SL_F_INT, 0, NULL, 0, "Bucket size (default: events_per_second, at least 1).", 1,
     1000000000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static const struct sl_field f_rest_bridge[] = {
    {"flags", SL_F_INT, 0, "0", 0,
     "Flags of pushed records (2 = TOMBSTONE) unless the request sets them.", 0, 4294967295LL, NULL,
     NULL},
    {"strand", SL_F_STRAND, 0, "\"default\"", 0, "Strand the pushes are written to.", 0, 0, NULL,
     NULL},
    {"rate_limit", SL_F_OBJECT, 0, NULL, 0, "Token bucket; over it the push answers 429.", 0, 0,
     NULL, f_rate_limit},
    {"push_token", SL_F_STRING, 0, NULL, SL_SECRET,
     "A token (at least 16 characters) that lets an external system push to this bridge and "
     "nothing else: `Authorization: Bearer <push_token>`. When set, pushes without it (or a "
     "write token of --auth-tokens) are refused with 401.",
     0, 0, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int rb_check_config(json_t *cfg, struct sl_err *err)
{
    const char *t = json_string_value(json_object_get(cfg, "push_token"));
    if (t && strlen(t) < 16)
        return sl_config_error(err, "config.push_token", "at least 16 characters");
    return 0;
}

const struct sl_connector sl_conn_rest_bridge = {
    .abi = SL_CONNECTOR_ABI,
    .name = "rest_bridge",
    .direction = SL_INBOUND,
    .category = "utility",
    .description = "Any system POSTs JSON to /v1/connectors/inbound/rest/{id}/push.",
    .fields = f_rest_bridge,
    .check_config = rb_check_config,
};
