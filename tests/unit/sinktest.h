/* For the sinks' unit tests: the bytes of a kind's format() for a batch, with no network. */
#ifndef SL_TEST_SINKTEST_H
#define SL_TEST_SINKTEST_H

#include "engine/kinds.h"

#include <stdlib.h>

/* config validated as the API does (NULL with err if it is refused). */
static inline json_t *sink_config(const char *kind, const char *config, struct sl_err *err)
{
    const struct sl_connector *k = sl_kind_find(kind);
    json_t *in = json_loads(config, 0, NULL);
    json_t *cfg = k && in ? sl_kind_validate(k, in, err) : NULL;
    json_decref(in);
    return cfg;
}

/* The bytes format() gives for recs[0..n) of strand "orders" under config (malloc'ed, NUL-ended),
 * or NULL when the config is refused or format() fails. */
static inline char *sink_format(const char *kind, const char *config, const struct sl_rec *recs,
                                size_t n, const struct sl_host *host)
{
    const struct sl_connector *k = sl_kind_find(kind);
    struct sl_err err = {0};
    json_t *cfg = sink_config(kind, config, &err);
    if (!cfg)
        return NULL;
    struct sl_sink_ctx ctx = {.id = "c1", .config = cfg, .host = host};
    struct sl_sink_info info = {0};
    void *self = NULL;
    char *out = NULL;
    if (k->sink->open(&self, &ctx, &info, &err) == 0) {
        struct sl_batch b = {.strand = "orders", .recs = recs, .n = n};
        uint8_t *bytes = NULL;
        size_t len = 0;
        if (k->sink->format(self, &b, &bytes, &len) == 0)
            out = (char *)bytes;
        k->sink->close(self);
    }
    json_decref(cfg);
    return out;
}

#endif
