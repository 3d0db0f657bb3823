/* bench/framework.sh's in-process sink: a connector plugin (kind "bench_null", built against
 * include/sluice/connector.h alone) whose send() accepts every batch and does nothing, so that a
 * run datagen -> strand -> bench_null measures the framework with no sink work at all. */
#include <sluice/connector.h>
#include <stdlib.h>

static const struct sl_field fields[] = {
    {"batch_size", SL_F_INT, 0, "1000", 0, "Records per send.", 1, 100000, NULL, NULL},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int null_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                     struct sl_err *err)
{
    info->batch_max = (uint64_t)json_integer_value(json_object_get(ctx->config, "batch_size"));
    *self = (void *)1;
    return 0;
}

static enum sl_result null_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    return SL_R_OK;
}

static void null_close(void *self)
{
}

static const struct sl_sink_ops ops = {.open = null_open, .send = null_send, .close = null_close};

static const struct sl_connector null_sink = {.abi = SL_CONNECTOR_ABI,
                                              .name = "bench_null",
                                              .direction = SL_OUTBOUND,
                                              .category = "utility",
                                              .description = "Accepts and drops every record.",
                                              .fields = fields,
                                              .sink = &ops};

__attribute__((visibility("default"))) const struct sl_connector *const *
sluice_connectors(const struct sl_host *host)
{
    static const struct sl_connector *const list[] = {&null_sink, NULL};
    return host->abi == SL_CONNECTOR_ABI ? list : NULL;
}
