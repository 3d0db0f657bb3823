/* The mysql-cdc source (cdc.c: the binlog client, binlog.c: the event decoder, connector.c: the
 * config table). docs/connectors.md ("MySQL / MariaDB CDC") is the user's contract. */
#ifndef SL_CONNECTORS_MYSQL_MYSQL_H
#define SL_CONNECTORS_MYSQL_MYSQL_H

#include <jansson.h>
#include <sluice/connector.h>
#include <stddef.h>

extern const struct sl_source_ops sl_mysql_source_ops;

/* The default strand of a config without "strand": "cdc.<database>" made a valid strand name. */
void sl_mysql_default_strand(const json_t *config, char *out, size_t n);

#endif
