/* libFuzzer target: an answer to a _bulk request, as the Elasticsearch sink reads it. The first
 * byte is the number of actions the request had (0-255); parsing never reads out of bounds, and
 * an answer it accepts gives every item a status and a NUL-ended reason. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/elasticsearch/elasticsearch.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1)
        return 0;
    size_t actions = d[0];
    char *body = malloc(n - 1 ? n - 1 : 1);
    struct sl_es_item *items = calloc(actions ? actions : 1, sizeof(*items));
    if (!body || !items)
        abort();
    memcpy(body, d + 1, n - 1);
    char why[200];
    if (sl_es_bulk_parse(body, n - 1, actions, items, why, sizeof(why)) == 0)
        for (size_t i = 0; i < actions; i++)
            if (items[i].status < 100 || items[i].status > 599 ||
                strnlen(items[i].reason, sizeof(items[i].reason)) == sizeof(items[i].reason))
                abort();
    free(body);
    free(items);
    return 0;
}
