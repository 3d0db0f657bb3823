/* Transforms (docs/pipelines.md#transforms): a chain applied to each record's payload, on the
 * source side (before it is written to the strand) or the sink side (before it is sent), the
 * Rivven seed's names and keys, plus Kafka Connect's TimestampConverter and Cast:
 *
 *   Filter                 condition (an expression, docs/expressions.md), action keep|drop
 *   MaskField              fields (paths), mask_char ("*")
 *   ReplaceField           rename {old: new}, include [fields], exclude [fields]
 *   InsertField            static {field: value}, timestamp.field (ms since the epoch)
 *   ExtractNewRecordState  the CDC envelope's `after` image; delete.handling.mode drop|none|
 *                          rewrite (Debezium's; deletes dropped by default), add.fields [op,
 *                          table, schema, db, lsn, ts_ms, source.*] as __<name>
 *   TimestampConverter     field, target.type unix|string (ISO 8601 UTC, ms) from ms or ISO
 *   Cast                   spec {field: int64|float64|string|boolean}
 *   ContentRouter          field, routes {value: strand}, default: the strand the record goes
 *                          to (sources only; the value of field, as a string, picks the route)
 *
 * Field paths are dotted (customer.address.zip). A chain is checked once (sl_transforms_compile,
 * errors naming transforms[i].config.<key>); applying it to one record gives the new payload,
 * "drop", or an error for that record alone (it goes to the dead letters). Pure; any thread. */
#ifndef SL_TRANSFORM_TRANSFORM_H
#define SL_TRANSFORM_TRANSFORM_H

#include "core/err.h"
#include "expr/expr.h"

#include <jansson.h>

struct sl_transforms;

/* Compiles a JSON array of {"type", "config"}. NULL with err ("transforms[1].config.condition:
 * column 3: ...", code invalid_config) if any is wrong. */
struct sl_transforms *sl_transforms_compile(const json_t *list, struct sl_err *err);
void sl_transforms_free(struct sl_transforms *t);

enum sl_tr_result { SL_TR_KEEP, SL_TR_DROP, SL_TR_FAIL };

/* Applies the chain to *value (replaced in place; a new reference on KEEP). r gives the
 * metadata to Filter conditions (its value is ignored). On FAIL, why says which transform and
 * why ("transforms[2] Cast: amount: \"abc\" is not an int64"). */
enum sl_tr_result sl_transforms_apply(const struct sl_transforms *t, json_t **value,
                                      const struct sl_expr_rec *r, char *why, size_t whylen);
/* Nonzero if the chain has a ContentRouter (only sources may have one). */
int sl_transforms_route(const struct sl_transforms *t);

/* The same on a MessagePack payload: on KEEP, out (reset first) holds the new payload. A
 * payload that cannot be decoded, or a result that cannot be encoded, is a FAIL. */
struct sl_buf;
enum sl_tr_result sl_transforms_apply_mp(const struct sl_transforms *t, const uint8_t *mp,
                                         size_t len, const struct sl_expr_rec *r,
                                         struct sl_buf *out, char *why, size_t whylen);
/* The same on the reference path: the payload decoded into a jansson tree, the chain applied
 * to it, the tree encoded. sl_transforms_apply_mp gives the same bytes without the tree when
 * the chain allows it (tests/unit/test_transform_mp.c compares the two). */
enum sl_tr_result sl_transforms_apply_mp_tree(const struct sl_transforms *t, const uint8_t *mp,
                                              size_t len, const struct sl_expr_rec *r,
                                              struct sl_buf *out, char *why, size_t whylen);
/* The same, and *route gets the strand a ContentRouter chose ("" if none; 65 bytes). */
enum sl_tr_result sl_transforms_apply_routed(const struct sl_transforms *t, const uint8_t *mp,
                                             size_t len, const struct sl_expr_rec *r,
                                             struct sl_buf *out, char *route, char *why,
                                             size_t whylen);

#endif
