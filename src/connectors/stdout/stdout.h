/* The stdout sink's output, shared with the tests that check its exact bytes. */
#ifndef SL_CONNECTORS_STDOUT_STDOUT_H
#define SL_CONNECTORS_STDOUT_STDOUT_H

#include "core/buf.h"

#include <sluice/connector.h>

/* Appends the lines of every record of b (text: the text format; pretty: indented JSON). */
int sl_stdout_format(const struct sl_batch *b, int text, int pretty, struct sl_buf *out);

#endif
