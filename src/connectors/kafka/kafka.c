/* Kafka (SapixDB's `kafka` source): its config table. Stored and validated; the consumer that
 * runs it ships with the messaging issue, so a connector of this kind is shown "paused". */
#include <sluice/connector.h>
#include <stddef.h>

static const char *const g_offset_reset[] = {"latest", "earliest", NULL};

static const struct sl_field f_kafka[] = {
    {"brokers", SL_F_STRING_LIST, 1, NULL, 0, "Bootstrap brokers, host:port.", 0, 0, NULL, NULL},
    {"topic", SL_F_STRING, 1, NULL, 0, "Topic to consume.", 0, 0, NULL, NULL},
    {"group_id", SL_F_STRING, 0, NULL, 0, "Consumer group.", 0, 0, NULL, NULL},
    {"auto_offset_reset", SL_F_ENUM, 0, "\"latest\"", 0, "latest or earliest.", 0, 0,
     g_offset_reset, NULL},
    {"strand", SL_F_STRAND, 0, "\"default\"", 0, "Strand the messages are written to.", 0, 0, NULL,
     NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

const struct sl_connector sl_conn_kafka = {
    .abi = SL_CONNECTOR_ABI,
    .name = "kafka",
    .direction = SL_INBOUND,
    .category = "messaging",
    .description = "Kafka consumer into a strand.",
    .fields = f_kafka,
};
