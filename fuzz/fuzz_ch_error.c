/* libFuzzer target: an answer of ClickHouse's HTTP interface, as the ClickHouse sink reads it
 * after a failed insert. Parsing never reads out of bounds; a parsed code is classified; the
 * message is one NUL-ended line within its buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/clickhouse/clickhouse.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    /* a copy of exactly n bytes, so that ASan sees any read past the end */
    char *body = malloc(n ? n : 1);
    if (!body)
        return 0;
    memcpy(body, d, n);
    int code;
    long row;
    if (sl_ch_parse_error(body, n, &code, &row) == 0) {
        if (code < 0 || code > 100000 || row < 0)
            abort();
        enum sl_ch_class c = sl_ch_classify(code);
        if (c != SL_CH_TRANSIENT && c != SL_CH_ROW && c != SL_CH_CONFIG)
            abort();
    }
    char msg[64];
    sl_ch_message(body, n, msg, sizeof(msg));
    if (strlen(msg) >= sizeof(msg) || strchr(msg, '\n'))
        abort();
    free(body);
    return 0;
}
