/* Boboyka's typed application events: the four record types, their field schemas (from the
 * SapixDB Boboyka integration), validation of POST /v1/boboyka/ingest bodies into the strand
 * payload (MessagePack map of the data plus "_boboyka_type"), and the reading back of a stored
 * payload's data as JSON (the Supabase mirror body and the events feed: the data without the tag).
 *
 * Validation: record_type one of the four; data an object; known fields must have their type
 * (strings, integers, *_at_ms epoch milliseconds >= 0, cpu_pct a number, metadata an object)
 * and enum values; only dequeued_at_ms may be null; fields may be omitted; unknown fields are
 * kept; "_boboyka_type" inside data is reserved. audit_log without timestamp_ms gets now_ms.
 * Pure functions: no I/O, any thread. */
#ifndef SL_BOBOYKA_SCHEMA_H
#define SL_BOBOYKA_SCHEMA_H

#include "core/buf.h"
#include "core/err.h"

#include <stddef.h>
#include <stdint.h>

enum { SL_BBK_BUILD, SL_BBK_QUEUE, SL_BBK_HEALTH, SL_BBK_AUDIT, SL_BBK_NTYPES };

/* The member of a stored payload that names its record type. */
#define SL_BBK_TAG "_boboyka_type"

/* "project_build", ... and the Supabase table each one is mirrored to. */
const char *sl_bbk_type_name(int type);
const char *sl_bbk_table(int type);
/* -1 if unknown */
int sl_bbk_type_find(const char *name, size_t len);

struct sl_bbk_event {
    int type;
    struct sl_buf payload; /* MessagePack: data's members + "_boboyka_type" */
    uint64_t shape;        /* hash of data's member names in order: same shape, same columns */
};

/* Parses and validates one ingest body. 0, or SL_E_INVAL with err naming the field (e.g.
 * "data.status: must be one of queued, running, succeeded, failed"). ev is initialised either
 * way; release it with sl_bbk_event_release. */
int sl_bbk_parse(const char *body, size_t len, uint64_t now_ms, struct sl_bbk_event *ev,
                 struct sl_err *err);
void sl_bbk_event_release(struct sl_bbk_event *ev);

/* Reads the "_boboyka_type" member of a stored payload: the type, or -1. */
int sl_bbk_payload_type(const uint8_t *mp, size_t len);
/* Appends the payload as a JSON object without its "_boboyka_type" member. 0 or -1. */
int sl_bbk_payload_data_json(const uint8_t *mp, size_t len, struct sl_buf *out);

#endif
