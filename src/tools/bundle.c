#include "tools/bundle.h"

#include "core/util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int bad(struct sl_err *err, const char *field, const char *what)
{
    return sl_err_set(err, SL_E_INVAL, "invalid_bundle", "%s: %s", field, what);
}

static int get_u64(json_t *o, const char *field, uint64_t max, uint64_t *out, struct sl_err *err)
{
    json_t *v = json_object_get(o, field);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return bad(err, field, "must be a non-negative integer");
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_hash(json_t *v, const char *field, uint8_t out[SL_HASH_LEN], struct sl_err *err)
{
    if (!json_is_string(v) ||
        sl_hex_decode(json_string_value(v), json_string_length(v), out, SL_HASH_LEN) < 0)
        return bad(err, field, "must be 64 hexadecimal characters");
    return 0;
}

static int parse_proof(json_t *p, struct sl_bundle *b, struct sl_err *err)
{
    if (!json_is_object(p))
        return bad(err, "proof", "must be an object (is the record covered by a checkpoint?)");
    json_t *hs = json_object_get(p, "hashes");
    if (get_u64(p, "leaf_index", UINT64_MAX >> 1, &b->leaf_index, err) ||
        get_u64(p, "tree_size", UINT64_MAX >> 1, &b->tree_size, err))
        return SL_E_INVAL;
    if (!json_is_array(hs) || json_array_size(hs) > 64)
        return bad(err, "proof.hashes", "must be an array of at most 64 hashes");
    b->nhashes = json_array_size(hs);
    for (size_t i = 0; i < b->nhashes; i++)
        if (get_hash(json_array_get(hs, i), "proof.hashes", b->hashes[i], err))
            return SL_E_INVAL;
    return 0;
}

static int parse_obj(json_t *o, struct sl_bundle *b, struct sl_err *err)
{
    struct sl_record *r = &b->rec;
    uint64_t flags;
    if (!json_is_object(o))
        return bad(err, "bundle", "must be a JSON object");
    json_t *st = json_object_get(o, "strand"), *src = json_object_get(o, "source"),
           *pl = json_object_get(o, "payload_msgpack_b64"), *ck = json_object_get(o, "checkpoint");
    if (!json_is_string(st) || !sl_strand_name_valid(json_string_value(st), json_string_length(st)))
        return bad(err, "strand", "must be a strand name");
    memcpy(b->strand, json_string_value(st), json_string_length(st) + 1);
    if (get_u64(o, "seq", UINT64_MAX >> 1, &r->seq, err) ||
        get_u64(o, "timestamp_ms", UINT64_MAX >> 1, &r->timestamp_ms, err) ||
        get_u64(o, "flags", UINT32_MAX, &flags, err) ||
        get_hash(json_object_get(o, "prev_hash"), "prev_hash", r->prev_hash, err) ||
        get_hash(json_object_get(o, "record_hash"), "record_hash", r->hash, err))
        return SL_E_INVAL;
    r->flags = (uint32_t)flags;
    if (!json_is_string(src) || json_string_length(src) > SL_SOURCE_MAX)
        return bad(err, "source", "must be a string of at most 65535 bytes");
    r->source_len = (uint16_t)json_string_length(src);
    if (!(b->source = malloc(r->source_len + 1u)))
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    memcpy(b->source, json_string_value(src), r->source_len);
    r->source = b->source;
    if (!json_is_string(pl))
        return bad(err, "payload_msgpack_b64",
                   "missing: the bundle must carry the payload's exact bytes (raw=1)");
    size_t n = json_string_length(pl), got;
    if (!(b->payload = malloc(n / 4 * 3 + 1)) ||
        sl_base64_decode(json_string_value(pl), n, b->payload, n / 4 * 3 + 1, &got) < 0 ||
        got > UINT32_MAX)
        return bad(err, "payload_msgpack_b64", "must be base64");
    r->payload = b->payload;
    r->payload_len = (uint32_t)got;
    if (parse_proof(json_object_get(o, "proof"), b, err))
        return SL_E_INVAL;
    if (!json_is_string(ck) || json_string_length(ck) == 0 || json_string_length(ck) > 65536)
        return bad(err, "checkpoint", "must be the signed checkpoint's text");
    b->checkpoint_len = json_string_length(ck);
    if (!(b->checkpoint = malloc(b->checkpoint_len + 1)))
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    memcpy(b->checkpoint, json_string_value(ck), b->checkpoint_len + 1);
    return 0;
}

int sl_bundle_parse(const char *json, size_t len, struct sl_bundle *b, struct sl_err *err)
{
    memset(b, 0, sizeof(*b));
    if (len == 0)
        return sl_err_set(err, SL_E_INVAL, "invalid_bundle", "bundle: empty");
    json_error_t je;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!o)
        return sl_err_set(err, SL_E_INVAL, "invalid_bundle", "bundle: not JSON (%s at byte %d)",
                          je.text, je.position);
    int rc = parse_obj(o, b, err);
    json_decref(o);
    return rc;
}

void sl_bundle_release(struct sl_bundle *b)
{
    free(b->source);
    free(b->payload);
    free(b->checkpoint);
    b->source = b->checkpoint = NULL;
    b->payload = NULL;
}

int sl_bundle_verify(const struct sl_bundle *b, const struct sl_note_key *v, char *origin,
                     size_t origin_cap, struct sl_err *err)
{
    uint8_t h[SL_HASH_LEN], root[SL_HASH_LEN];
    char a[2 * SL_HASH_LEN + 1], c[2 * SL_HASH_LEN + 1];
    sl_record_hash(b->strand, strlen(b->strand), &b->rec, h);
    if (memcmp(h, b->rec.hash, SL_HASH_LEN) != 0) {
        sl_hex_encode(a, h, SL_HASH_LEN);
        sl_hex_encode(c, b->rec.hash, SL_HASH_LEN);
        return sl_err_set(err, SL_E_INVAL, "bad_record",
                          "record: its contents hash to %.16s…, not to its record_hash %.16s…", a,
                          c);
    }
    if (b->leaf_index != b->rec.seq)
        return sl_err_set(err, SL_E_INVAL, "bad_proof",
                          "proof: leaf_index %llu is not the record's seq %llu",
                          (unsigned long long)b->leaf_index, (unsigned long long)b->rec.seq);
    size_t body_len;
    uint64_t size;
    int rc = sl_note_open(b->checkpoint, b->checkpoint_len, v, &body_len, err);
    if (rc == 0)
        rc = sl_checkpoint_parse(b->checkpoint, body_len, origin, origin_cap, &size, root, err);
    if (rc)
        return rc;
    if (size != b->tree_size)
        return sl_err_set(err, SL_E_INVAL, "bad_proof",
                          "proof: it is for a tree of size %llu, the checkpoint is for %llu",
                          (unsigned long long)b->tree_size, (unsigned long long)size);
    if (sl_mt_verify_inclusion(b->rec.hash, b->leaf_index, b->tree_size, b->hashes, b->nhashes,
                               root) != 0)
        return sl_err_set(err, SL_E_INVAL, "bad_proof",
                          "proof: the inclusion proof of seq %llu does not lead to the "
                          "checkpoint's root hash",
                          (unsigned long long)b->leaf_index);
    return 0;
}
