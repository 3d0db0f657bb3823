/* libFuzzer target for what `sluice verify-proof` and `sluice verify --checkpoint` read from
 * untrusted files: the proof bundle (JSON), the signed note and checkpoint body inside it, and a
 * verifier key. The first byte picks the parser. Every failure must explain itself; a bundle that
 * verifies must really carry a valid inclusion proof and a record that hashes to its hash. */
#include "strand/merkle.h"
#include "strand/note.h"
#include "tools/bundle.h"

#include <stdlib.h>
#include <string.h>

/* the verifier key of the key that signed the seed corpus (fuzz/corpus/fuzz_proof_bundle) */
static const char VKEY[] = "fuzz/sluice+dba6cd86+ATGYuuXJX5q1obN3W9Ys0rwBIqB9chNKSXUcSiNNtA3W";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    struct sl_err err = {0};
    struct sl_note_key v;
    if (sl_note_vkey_parse(VKEY, strlen(VKEY), &v, &err) != 0)
        abort();
    int rc;
    switch (data[0] % 3) {
    case 0: {
        struct sl_bundle b;
        char origin[512];
        rc = sl_bundle_parse(in, len, &b, &err);
        if (rc == 0 && (rc = sl_bundle_verify(&b, &v, origin, sizeof(origin), &err)) == 0) {
            uint8_t h[SL_HASH_LEN];
            sl_record_hash(b.strand, strlen(b.strand), &b.rec, h);
            if (memcmp(h, b.rec.hash, SL_HASH_LEN) != 0 || b.leaf_index >= b.tree_size)
                abort();
        }
        sl_bundle_release(&b);
        break;
    }
    case 1: {
        size_t body;
        char origin[256];
        uint64_t n;
        uint8_t root[SL_HASH_LEN];
        rc = sl_note_open(in, len, &v, &body, &err);
        if (rc == 0 && body >= len)
            abort();
        if (rc != 0) /* the body parser alone, on the raw input */
            body = len;
        int prc = sl_checkpoint_parse(in, body, origin, sizeof(origin), &n, root, &err);
        if (prc == 0 && strlen(origin) == 0)
            abort();
        if (rc == 0)
            rc = prc;
        break;
    }
    default: {
        struct sl_note_key k;
        rc = sl_note_vkey_parse(in, len, &k, &err);
        break;
    }
    }
    if (rc != 0 && (err.msg[0] == 0 || err.ecode[0] == 0))
        abort(); /* every error explains itself */
    return 0;
}
