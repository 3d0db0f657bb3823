/* `sluice verify`: an independent, read-only walk over a strand's segment files that recomputes
 * every CRC, hash and link. It does not use the index files or the strand code paths. */
#ifndef SL_STRAND_VERIFY_H
#define SL_STRAND_VERIFY_H

#include "strand/record.h"

#include <stdint.h>

struct sl_verify_result {
    int ok;
    uint64_t count;
    uint8_t head[SL_HASH_LEN];
    uint64_t bad_seq; /* first bad seq when !ok */
    char reason[256]; /* "crc: ...", "hash: ...", "link: ..." or "io: ..." */
};

/* Verifies the strand stored in dir (named name). Returns 0 if it could be read at all. */
int sl_verify_strand(const char *dir, const char *name, struct sl_verify_result *res);

#endif
