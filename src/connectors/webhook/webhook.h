/* The webhook sink's request body and headers, shared with the tests that check their exact
 * bytes. */
#ifndef SL_CONNECTORS_WEBHOOK_WEBHOOK_H
#define SL_CONNECTORS_WEBHOOK_WEBHOOK_H

#include "core/buf.h"
#include "core/err.h"

#include <jansson.h>
#include <sluice/connector.h>

int sl_webhook_body(struct sl_buf *body, const struct sl_batch *b);

/* The header lines a request for a batch starting with `first` carries under a validated config
 * (secret headers resolved), each ended by CRLF, in curl's syntax: "Name: value", "Name;" for an
 * empty value, "Expect:" for none. *text is malloc'ed. 0, or a negative code with err. */
int sl_webhook_headers(const json_t *config, const struct sl_rec *first, char **text,
                       struct sl_err *err);

#endif
