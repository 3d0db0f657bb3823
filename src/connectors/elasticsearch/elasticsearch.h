/* The Elasticsearch / OpenSearch sink's private header: reading a _bulk answer (a pure
 * function, unit-tested and fuzzed). */
#ifndef SL_CONNECTORS_ELASTICSEARCH_H
#define SL_CONNECTORS_ELASTICSEARCH_H

#include <stddef.h>

/* One item of a _bulk answer, in the order of the request's actions. */
struct sl_es_item {
    int status;       /* the item's HTTP status */
    char reason[200]; /* "<error.type>: <error.reason>" when it failed, else "" */
};

/* Reads the answer of a _bulk request of n actions: {"took", "errors", "items": [{"<action>":
 * {"status", "error": {"type", "reason"}}}, ...]}. Fills items[0..n) and returns 0; -1 with why
 * when body is not such an answer or has another number of items. A top-level "errors": false
 * means every item is done: its items are then not read (no tree is built for the usual
 * answer). body need not be NUL-ended. */
int sl_es_bulk_parse(const char *body, size_t len, size_t n, struct sl_es_item *items, char *why,
                     size_t whylen);

/* Whether an item's status is worth sending again on its own (429 Too Many Requests, 503 and
 * the other 5xx, 408): 1 or 0. */
int sl_es_item_retriable(int status);

#endif
