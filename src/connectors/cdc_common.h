/* What the CDC sources (postgres_cdc, mysql-cdc) share beyond the connector contract: the steps a
 * replication session's poll comes to and how they map onto the contract's results, the
 * connector's own state in meta, and deadlines for condition waits.
 * Threads: any (each call uses only its arguments). */
#ifndef SL_CONNECTORS_CDC_COMMON_H
#define SL_CONNECTORS_CDC_COMMON_H

#include <sluice/connector.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct sl_meta;

/* What a step of a session came to. */
enum { SL_CDC_OK, SL_CDC_RETRY, SL_CDC_DOWN, SL_CDC_FATAL, SL_CDC_DONE };

/* The poll() result for a step that is not SL_CDC_OK (the caller closed its session): DONE ->
 * SL_R_REJECT ("completed"); FATAL -> give_up(arg), SL_R_FATAL ("failed" with why); DOWN ->
 * SL_R_NOT_CONNECTED; RETRY -> SL_R_RETRY (logged as a warning). why goes to error. */
enum sl_result sl_cdc_result(int step, const char *id, const char *why, char *error, size_t errlen,
                             void (*give_up)(void *), void *arg);

/* The connector's state key in meta (0 when unset or no meta). */
uint64_t sl_cdc_state_get(struct sl_meta *meta, const char *id, const char *key);
/* Stores it; 0, or -1 with the reason in err[0..errlen). */
int sl_cdc_state_set(struct sl_meta *meta, const char *id, const char *key, uint64_t v, char *err,
                     size_t errlen);

/* CLOCK_REALTIME timeout_ms from now, for pthread_cond_timedwait. */
void sl_cdc_deadline(struct timespec *dl, int timeout_ms);

#endif
