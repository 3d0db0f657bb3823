/* The datagen source's events, shared with the tests that check reproducibility. */
#ifndef SL_CONNECTORS_DATAGEN_DATAGEN_H
#define SL_CONNECTORS_DATAGEN_DATAGEN_H

#include "core/buf.h"

#include <sluice/connector.h>
#include <stdint.h>

/* Appends event i of pattern (0 orders, 1 users, 2 pageviews) under seed as JSON; *flags gets
 * TOMBSTONE for a CDC delete. 0 or -1. */
int sl_datagen_event(struct sl_buf *json, int pattern, int cdc, const char *stream, uint64_t seed,
                     uint64_t i, uint32_t *flags);

#endif
