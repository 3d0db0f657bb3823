/* A proof bundle: one record, its inclusion proof and the signed checkpoint it leads to, as
 * printed by `sluice prove` (the JSON of GET /v1/records/{hash}?proof=1&raw=1) and checked
 * offline by `sluice verify-proof`. Parsing never trusts the input: every field is checked. */
#ifndef SL_TOOLS_BUNDLE_H
#define SL_TOOLS_BUNDLE_H

#include "core/err.h"
#include "strand/merkle.h"
#include "strand/note.h"
#include "strand/record.h"

#include <stddef.h>

struct sl_bundle {
    char strand[SL_STRAND_NAME_MAX + 1];
    struct sl_record rec; /* source and payload point into the owned buffers below */
    char *source;
    uint8_t *payload;
    uint64_t leaf_index, tree_size;
    size_t nhashes;
    uint8_t hashes[SL_MT_MAX_PROOF][SL_HASH_LEN];
    char *checkpoint; /* the signed note */
    size_t checkpoint_len;
};

/* Parses a bundle; errors name the field. Release with sl_bundle_release (also after failure). */
int sl_bundle_parse(const char *json, size_t len, struct sl_bundle *b, struct sl_err *err);
void sl_bundle_release(struct sl_bundle *b);
/* Checks the record's hash, the checkpoint's signature by v and the proof against its root.
 * On success fills origin (the checkpoint's). Errors say which part failed: "record: ...",
 * "checkpoint: ...", "proof: ...". */
int sl_bundle_verify(const struct sl_bundle *b, const struct sl_note_key *v, char *origin,
                     size_t origin_cap, struct sl_err *err);

#endif
