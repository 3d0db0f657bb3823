/* MTH(D[lo:hi]) straight from RFC 6962 2.1 over an array of leaf hashes: the reference the
 * Merkle tests compare everything with. Header-only, for the unit tests. */
#ifndef SL_TEST_MTH_REF_H
#define SL_TEST_MTH_REF_H

#include "strand/record.h"

#include <stdint.h>
#include <string.h>

static inline void mth_ref(uint8_t (*leaves)[SL_HASH_LEN], uint64_t lo, uint64_t hi,
                           uint8_t out[SL_HASH_LEN])
{
    if (hi - lo == 1) {
        memcpy(out, leaves[lo], SL_HASH_LEN);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < hi - lo)
        k *= 2;
    uint8_t l[SL_HASH_LEN], r[SL_HASH_LEN];
    mth_ref(leaves, lo, lo + k, l);
    mth_ref(leaves, lo + k, hi, r);
    sl_node_hash_evp(l, r, out);
}

#endif
