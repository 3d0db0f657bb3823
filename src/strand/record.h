/* One record of a strand: its canonical hash and its on-disk frame (docs/strand-format.md). */
#ifndef SL_STRAND_RECORD_H
#define SL_STRAND_RECORD_H

#include <stddef.h>
#include <stdint.h>

#define SL_HASH_LEN 32
#define SL_FLAG_TOMBSTONE 2u
#define SL_STRAND_NAME_MAX 64
#define SL_SOURCE_MAX 65535u

/* A decoded record. Pointers borrow from a segment mapping or from the caller. */
struct sl_record {
    uint64_t seq;
    uint64_t timestamp_ms;
    uint32_t flags;
    uint16_t source_len;
    const char *source;
    uint32_t payload_len;
    const uint8_t *payload; /* MessagePack */
    uint8_t prev_hash[SL_HASH_LEN];
    uint8_t hash[SL_HASH_LEN];
};

/* Frame: u32le frame_len | u32le crc32c(bytes 8..frame_len) | u64le seq | u64le timestamp_ms |
 * u32le flags | u16le source_len | u16le 0 | u32le payload_len | source | payload |
 * prev_hash[32] | record_hash[32] */
#define SL_FRAME_HDR 36u
#define SL_FRAME_OVERHEAD (SL_FRAME_HDR + 2 * SL_HASH_LEN)

static inline uint64_t sl_frame_len(size_t source_len, size_t payload_len)
{
    return SL_FRAME_OVERHEAD + (uint64_t)source_len + (uint64_t)payload_len;
}

/* record_hash = SHA-256(0x00 || canonical) over the fields of r (r->hash is not read). Uses
 * the CPU's SHA extensions when it has them; sl_record_hash_evp is OpenSSL's (tests). */
void sl_record_hash(const char *strand, size_t strand_len, const struct sl_record *r,
                    uint8_t out[SL_HASH_LEN]);
void sl_record_hash_evp(const char *strand, size_t strand_len, const struct sl_record *r,
                        uint8_t out[SL_HASH_LEN]);

/* The Merkle tree's interior node (RFC 6962): SHA-256(0x01 || left || right). Uses the CPU's
 * SHA extensions when it has them; sl_node_hash_evp is OpenSSL's (the reference in tests). */
void sl_node_hash(const uint8_t left[SL_HASH_LEN], const uint8_t right[SL_HASH_LEN],
                  uint8_t out[SL_HASH_LEN]);
void sl_node_hash_evp(const uint8_t left[SL_HASH_LEN], const uint8_t right[SL_HASH_LEN],
                      uint8_t out[SL_HASH_LEN]);
/* out[i] = node hash of (in[2i], in[2i+1]) for i < npairs, several at a time (faster than one by
 * one). out may be in itself (in place: out[i] overwrites in[i]). */
void sl_node_hash_pairs(const uint8_t in[][SL_HASH_LEN], size_t npairs, uint8_t out[][SL_HASH_LEN]);

/* Writes r's frame (including r->prev_hash and r->hash) to out, which has sl_frame_len() bytes. */
void sl_frame_encode(const struct sl_record *r, uint8_t *out);

enum sl_frame_status {
    SL_FRAME_OK = 0,
    SL_FRAME_END = 1,  /* a zero length word: the clean end of the written data */
    SL_FRAME_TORN = 2, /* length runs past the available bytes */
    SL_FRAME_BADLEN = 3,
    SL_FRAME_BADCRC = 4,
};

/* Decodes the frame at p (avail bytes readable). On OK fills r and
 * *frame_len. Never reads outside [p, p+avail). */
enum sl_frame_status sl_frame_decode(const uint8_t *p, uint64_t avail, struct sl_record *r,
                                     uint32_t *frame_len);
const char *sl_frame_status_str(enum sl_frame_status st);

/* 1 if name matches [a-z0-9][a-z0-9._-]{0,63}. */
int sl_strand_name_valid(const char *name, size_t len);

#endif
