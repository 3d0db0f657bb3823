/* Parsing and validating the body of POST /v1/records and /v1/records/batch, with no HTTP in
 * it (so it can be fuzzed): JSON or NDJSON -> MessagePack in one pass, then every record object
 * {"agent_id"?, "strand"?, "payload", "flags"?} is checked before anything is written. */
#ifndef SL_API_RECORDS_PARSE_H
#define SL_API_RECORDS_PARSE_H

#include "core/buf.h"
#include "core/err.h"
#include "strand/record.h"
#include "strand/strand.h"

#include <stddef.h>
#include <stdint.h>

#define SL_JSON_MAX_DEPTH 64 /* nesting limit of a record payload */

struct sl_records_in {
    const char *body;
    size_t len;
    int batch;           /* /v1/records/batch: an array, or NDJSON */
    int ndjson;          /* Content-Type: application/x-ndjson */
    const char *qstrand; /* ?strand= (batch only), or NULL */
    uint64_t max_records;
};

struct sl_records {
    struct sl_buf mp;           /* the MessagePack of the body: payloads and sources point here */
    struct sl_append_rec *recs; /* n records */
    size_t n;
    char strand[SL_STRAND_NAME_MAX + 1];
};

/* 0, or an SL_E_ code (SL_E_INVAL, SL_E_TOOBIG, SL_E_NOMEM) with err naming the field and, in a
 * batch, the NDJSON line (1-based) or array index (0-based). out is valid (release it) either way.
 */
int sl_records_parse(const struct sl_records_in *in, struct sl_records *out, struct sl_err *err);
void sl_records_release(struct sl_records *r);

#endif
