#include "connectors/cdc_common.h"

#include "core/err.h"
#include "core/log.h"
#include "engine/meta.h"

#include <stdio.h>

enum sl_result sl_cdc_result(int step, const char *id, const char *why, char *error, size_t errlen,
                             void (*give_up)(void *), void *arg)
{
    if (step == SL_CDC_DONE) {
        sl_info("connector %s: initial_only snapshot complete; the connector stops", id);
        return SL_R_REJECT;
    }
    snprintf(error, errlen, "%s", why);
    if (step == SL_CDC_FATAL) { /* bad config, or refused for good: "failed" until PATCH/restart */
        if (give_up)
            give_up(arg);
        return SL_R_FATAL;
    }
    sl_warn("connector %s: %s; reconnecting", id, why);
    return step == SL_CDC_DOWN ? SL_R_NOT_CONNECTED : SL_R_RETRY;
}

uint64_t sl_cdc_state_get(struct sl_meta *meta, const char *id, const char *key)
{
    uint64_t v = 0;
    if (!meta || sl_meta_get_state(meta, id, key, &v) != 0)
        return 0;
    return v;
}

int sl_cdc_state_set(struct sl_meta *meta, const char *id, const char *key, uint64_t v, char *err,
                     size_t errlen)
{
    struct sl_err e = {0};
    if (meta && sl_meta_set_state(meta, id, key, v, &e) == 0)
        return 0;
    snprintf(err, errlen, "cannot store %s in meta.db: %s", key,
             meta ? e.msg : "no metadata store");
    return -1;
}

void sl_cdc_deadline(struct timespec *dl, int timeout_ms)
{
    clock_gettime(CLOCK_REALTIME, dl);
    dl->tv_nsec += (long)timeout_ms * 1000000L;
    dl->tv_sec += dl->tv_nsec / 1000000000L;
    dl->tv_nsec %= 1000000000L;
}
