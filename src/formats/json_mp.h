/* JSON <-> MessagePack transcoder: records arrive as JSON and are stored as MessagePack; record
 * hashes are computed over the MessagePack bytes, so JSON -> MessagePack is exactly deterministic:
 *
 *   - object -> map (fixmap / map16 / map32), members in the order received, duplicate keys kept;
 *     array -> fixarray / array16 / array32; always the smallest header.
 *   - string -> fixstr / str8 / str16 / str32 (smallest) holding the decoded UTF-8: every escape
 *     is decoded (\uXXXX surrogate pairs joined); raw UTF-8 is validated strictly (no overlongs,
 *     no encoded surrogates, nothing above U+10FFFF, no truncated sequences). A lone surrogate
 *     escape and a raw control character (< 0x20) are errors.
 *   - true / false / null -> 0xc3 / 0xc2 / 0xc0.
 *   - number without fraction and exponent that fits in int64 -> smallest integer: >= 0 as positive
 *     fixint / uint8 / uint16 / uint32 / uint64, < 0 as negative fixint / int8 / int16 / int32 /
 *     int64. "-0" is integer 0. Integers in (INT64_MAX, UINT64_MAX] -> uint64.
 *   - any other number (fraction, exponent, or integer beyond the range above) -> float64 (0xcb,
 *     big-endian IEEE 754), correctly rounded. "1.0" and "1e2" are float64. A number whose
 *     magnitude overflows a double (1e400) is an error: it could not be shown as JSON again.
 *
 * MessagePack -> JSON is compact (no spaces); map keys must be strings; integers are printed
 * exactly; float64 with the first of %.15g/%.16g/%.17g that reads back to the same double; a
 * float32 is first turned into the double of its shortest decimal (first of %.6g..%.9g that reads
 * back to the float, so 0.1f -> 0.1) and printed the same way. A float always contains '.' or 'e'
 * (100.0 -> "100.0", -0.0 -> "-0.0") so it reads back as a float. NaN/Inf, bin and ext are errors
 * ("binary values cannot be shown as JSON" for bin/ext); strings must be valid UTF-8 and are
 * escaped as sl_buf_json_str does (\" \\ \n \r \t, other controls as \u00XX, the rest raw).
 *
 * So for any JSON text x written compactly with normalised numbers and escapes,
 * sl_mp_to_json(sl_json_to_mp(x)) == x, and sl_json_to_mp(sl_mp_to_json(m)) == m for every m that
 * sl_json_to_mp produced.
 *
 * All functions are reentrant and may run on any thread. No function allocates per value: nesting
 * up to 64 levels is tracked on the C stack, deeper (only if max_depth allows it) in a heap block
 * that doubles as needed and is freed before returning.
 */
#ifndef SL_FORMATS_JSON_MP_H
#define SL_FORMATS_JSON_MP_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct sl_jerr {
    size_t offset; /* byte offset in the input where the problem is */
    char msg[160]; /* e.g. "invalid JSON at byte 17: expected ':' after object key" */
};

/* Transcodes one complete JSON text (RFC 8259; leading/trailing whitespace allowed, nothing else
 * after the value) to MessagePack appended to out. Returns 0, or -1 with err (optional) filled and
 * out->len (and out->failed) restored to their values on entry. Input that is empty or only
 * whitespace gives "empty body" at offset 0. max_depth: nesting limit (arrays + objects), e.g. 64;
 * deeper -> error; 0 allows scalars only. Output beyond out's hard cap -> error. */
int sl_json_to_mp(const char *json, size_t len, struct sl_buf *out, int max_depth,
                  struct sl_jerr *err);

/* Appends the JSON text of one MessagePack value starting at mp to out; *used gets its byte
 * length. Returns 0, or -1 (malformed/truncated msgpack, or a type JSON cannot hold, with
 * err->msg/offset; out->len restored). Bytes after the value are ignored. */
int sl_mp_to_json(const uint8_t *mp, size_t len, size_t *used, struct sl_buf *out, int max_depth,
                  struct sl_jerr *err);

/* Byte length of the MessagePack value at mp (validating structure: type bytes, lengths, depth;
 * not string contents), or -1 if malformed/truncated. */
long sl_mp_skip(const uint8_t *mp, size_t len, int max_depth);

enum {
    SL_MP_INVALID = 0, /* end of input or the reserved byte 0xc1 */
    SL_MP_NIL,
    SL_MP_BOOL,
    SL_MP_INT,
    SL_MP_FLOAT,
    SL_MP_STR,
    SL_MP_BIN,
    SL_MP_ARRAY,
    SL_MP_MAP,
    SL_MP_EXT,
};

/* Readers for walking a map/array: each returns 0 and advances *p past what it read, or -1 (wrong
 * type, or truncated) and leaves *p alone. */
int sl_mp_read_map(const uint8_t **p, const uint8_t *end, uint32_t *n);
int sl_mp_read_array(const uint8_t **p, const uint8_t *end, uint32_t *n);
/* *s points into the input (not NUL-terminated); the whole string is checked to be in bounds. */
int sl_mp_read_str(const uint8_t **p, const uint8_t *end, const char **s, uint32_t *n);
/* integer (any msgpack int type) into int64; -1 if not an int or does not fit */
int sl_mp_read_int(const uint8_t **p, const uint8_t *end, int64_t *v);
int sl_mp_read_nil(const uint8_t **p, const uint8_t *end);
int sl_mp_read_bool(const uint8_t **p, const uint8_t *end, int *v);
/* float32, float64 or any integer (converted, possibly rounded) into a double */
int sl_mp_read_double(const uint8_t **p, const uint8_t *end, double *v);
/* type of the value at p: one of SL_MP_*; only looks at the first byte */
int sl_mp_type(const uint8_t *p, const uint8_t *end);

/* Writers, producing exactly the encodings sl_json_to_mp uses (smallest header / integer). Each
 * returns 0 or -1 (out's cap reached or out of memory). */
int sl_mp_write_nil(struct sl_buf *b);
int sl_mp_write_bool(struct sl_buf *b, int v);
int sl_mp_write_int(struct sl_buf *b, int64_t v);
int sl_mp_write_uint(struct sl_buf *b, uint64_t v);
int sl_mp_write_double(struct sl_buf *b, double v);
int sl_mp_write_str(struct sl_buf *b, const char *s, size_t n); /* s must be valid UTF-8 */
int sl_mp_write_array(struct sl_buf *b, uint32_t n);
int sl_mp_write_map(struct sl_buf *b, uint32_t n);
/* A string whose bytes may not be valid UTF-8 (database text): invalid sequences become U+FFFD;
 * valid input, the normal case, is copied as is. 0 or -1. */
int sl_mp_write_str_lossy(struct sl_buf *b, const char *s, size_t n);
/* Finds key in the map at *p and leaves *p at its value; 0 or -1 (not a map, or no such key). */
int sl_mp_map_find(const uint8_t **p, const uint8_t *end, const char *key);

/* 1 if s[0..n) is valid UTF-8 (strict, as sl_json_to_mp checks raw UTF-8), else 0. */
int sl_utf8_valid(const uint8_t *s, size_t n);
/* Writes n bytes as a MessagePack string holding their standard base64 (smallest header). */
int sl_mp_write_base64(struct sl_buf *b, const void *p, size_t n);
/* The value at a dotted path (user.id) of a MessagePack map, or NULL. */
const uint8_t *sl_mp_at_path(const uint8_t *p, const uint8_t *end, const char *path);

/* ---- encoders for writers that build MessagePack in place (o must have room for 9 bytes; a
 * string head for 5); each returns the bytes written: the smallest form, as above ---- */

static inline void sl_mp_be(uint8_t *o, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--, v >>= 8)
        o[i] = (uint8_t)v;
}

static inline size_t sl_mp_enc_uint(uint8_t *o, uint64_t u)
{
    if (u <= 0x7f) {
        o[0] = (uint8_t)u;
        return 1;
    }
    int n = u <= 0xff ? 1 : u <= 0xffff ? 2 : u <= 0xffffffff ? 4 : 8;
    o[0] = (uint8_t)(n == 1 ? 0xcc : n == 2 ? 0xcd : n == 4 ? 0xce : 0xcf);
    sl_mp_be(o + 1, u, n);
    return (size_t)n + 1;
}

static inline size_t sl_mp_enc_int(uint8_t *o, int64_t v)
{
    if (v >= 0)
        return sl_mp_enc_uint(o, (uint64_t)v);
    if (v >= -32) {
        o[0] = (uint8_t)v;
        return 1;
    }
    int n = v >= INT8_MIN ? 1 : v >= INT16_MIN ? 2 : v >= INT32_MIN ? 4 : 8;
    o[0] = (uint8_t)(n == 1 ? 0xd0 : n == 2 ? 0xd1 : n == 4 ? 0xd2 : 0xd3);
    sl_mp_be(o + 1, (uint64_t)v, n);
    return (size_t)n + 1;
}

/* String header for n <= UINT32_MAX bytes. */
static inline size_t sl_mp_enc_str_head(uint8_t *o, size_t n)
{
    if (n < 32) {
        o[0] = (uint8_t)(0xa0 | n);
        return 1;
    }
    int k = n <= 0xff ? 1 : n <= 0xffff ? 2 : 4;
    o[0] = (uint8_t)(k == 1 ? 0xd9 : k == 2 ? 0xda : 0xdb);
    sl_mp_be(o + 1, n, k);
    return (size_t)k + 1;
}

#endif
