/* MessagePack <-> jansson directly, for code that works on JSON trees (transforms, filters)
 * without going through JSON text. The encodings are sl_json_to_mp's (smallest headers,
 * integers as integers, floats as float64). Pure; any thread. */
#ifndef SL_FORMATS_MP_JANSSON_H
#define SL_FORMATS_MP_JANSSON_H

#include "core/buf.h"

#include <jansson.h>
#include <stdint.h>

/* The value at *p (advanced past it), or NULL if it is malformed, nested deeper than
 * max_depth, or a type JSON cannot hold (bin, ext) or a string that is not UTF-8. An unsigned
 * integer above INT64_MAX becomes a float. A map key holding a NUL byte is refused. */
json_t *sl_mp_to_jansson(const uint8_t **p, const uint8_t *end, int max_depth);
/* Appends v. 0, or -1 (out of memory, or nested deeper than max_depth). */
int sl_jansson_to_mp(const json_t *v, struct sl_buf *out, int max_depth);

#endif
