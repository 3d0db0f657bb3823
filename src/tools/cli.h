/* Command-line tools around verifiable strands: `sluice key`, `sluice prove`,
 * `sluice verify-proof` and the checkpoint part of `sluice verify` (docs/proofs.md). */
#ifndef SL_TOOLS_CLI_H
#define SL_TOOLS_CLI_H

#include "core/config.h"
#include "core/err.h"
#include "strand/note.h"
#include "strand/verify.h"

/* Opens the checkpoint key named by cfg (checkpoint_key, default DATA/checkpoint.key),
 * generating it if the file does not exist (named <hostname>/sluice). */
int sl_checkpoint_key_open(const struct sl_config *cfg, struct sl_note_key *k, struct sl_err *err);

int sl_cmd_key(int argc, char **argv);
int sl_cmd_prove(int argc, char **argv);
int sl_cmd_verify_proof(int argc, char **argv);

/* An older checkpoint that `sluice verify --checkpoint FILE` checks the strand against. */
struct sl_old_checkpoint {
    char origin[512];
    char strand[SL_STRAND_NAME_MAX + 1]; /* the origin's last path element */
    uint64_t size;
    uint8_t root[SL_HASH_LEN];
};

/* Reads FILE and checks its signature by vkey (a verifier key or a file holding one) or, if
 * vkey is NULL, by the data directory's own key. */
int sl_old_checkpoint_load(const char *path, const char *vkey, const char *data,
                           struct sl_old_checkpoint *ck, struct sl_err *err);
/* Prints the verify line of one strand ("ok ..." or "FAIL ..."); returns 1 if it failed. ck
 * may be NULL. */
int sl_verify_print(const char *name, const struct sl_verify_result *r,
                    const struct sl_old_checkpoint *ck);

#endif
