/* Signed checkpoints: the C2SP tlog-checkpoint body signed as a C2SP signed note (Ed25519).
 *
 *   checkpoint body   <origin>\n<tree size>\n<base64 root hash>\n
 *   signed note       body \n "— " <key name> " " base64(key id[4] || signature[64]) \n
 *   key id            SHA-256(<key name> || "\n" || 0x01 || public key)[0:4], big-endian
 *   verifier key      <key name>+<key id, 8 hex digits>+base64(0x01 || public key)
 *   private key file  PRIVATE+KEY+<key name>+<key id>+base64(0x01 || seed)   (mode 0600)
 *
 * Any thread; a key is read-only after loading. */
#ifndef SL_STRAND_NOTE_H
#define SL_STRAND_NOTE_H

#include "core/buf.h"
#include "core/err.h"
#include "strand/record.h"

#include <stddef.h>
#include <stdint.h>

#define SL_NOTE_NAME_MAX 128

struct sl_note_key {
    char name[SL_NOTE_NAME_MAX + 1];
    uint32_t id;
    uint8_t pub[32];
    void *pkey; /* EVP_PKEY, NULL for a verifier */
};

/* Loads the private key at path; if the file does not exist and name is not NULL, generates
 * one named name and writes it (mode 0600, synced). */
int sl_note_key_load(const char *path, const char *name, struct sl_note_key *k, struct sl_err *err);
void sl_note_key_release(struct sl_note_key *k);
/* Appends the verifier key string (no newline). */
int sl_note_vkey(const struct sl_note_key *k, struct sl_buf *out);
/* Parses a verifier key string "name+id+base64". */
int sl_note_vkey_parse(const char *s, size_t len, struct sl_note_key *k, struct sl_err *err);

/* Appends body (which ends with "\n") and its signature line: a signed note. */
int sl_note_sign(const struct sl_note_key *k, const char *body, size_t len, struct sl_buf *out,
                 struct sl_err *err);
/* Checks that note carries a valid signature by verifier v; *body_len = length of the signed
 * text. Errors say what is wrong (no signature by that key, bad signature, malformed note). */
int sl_note_open(const char *note, size_t len, const struct sl_note_key *v, size_t *body_len,
                 struct sl_err *err);

/* Appends a checkpoint body. */
int sl_checkpoint_body(const char *origin, uint64_t size, const uint8_t root[SL_HASH_LEN],
                       struct sl_buf *out);
/* Parses a checkpoint body (extension lines after the third are allowed and ignored). */
int sl_checkpoint_parse(const char *body, size_t len, char *origin, size_t origin_cap,
                        uint64_t *size, uint8_t root[SL_HASH_LEN], struct sl_err *err);

#endif
