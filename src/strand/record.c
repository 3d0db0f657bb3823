#include "strand/record.h"

#include "core/crc32c.h"
#include "core/util.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>

/* One digest context per thread: EVP_MD_CTX_new/fetch per record would cost more than the
 * hash of a 200-byte record. A pthread key frees it when the thread (a committer) exits. */
static _Thread_local EVP_MD_CTX *t_ctx;
static EVP_MD *g_sha256;
static pthread_key_t g_ctx_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void init_once(void)
{
    g_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!g_sha256 || pthread_key_create(&g_ctx_key, ctx_free) != 0)
        abort(); /* OpenSSL without SHA-256: nothing sensible to do */
}

static EVP_MD_CTX *ctx_get(void)
{
    if (!t_ctx) {
        pthread_once(&g_once, init_once);
        t_ctx = EVP_MD_CTX_new();
        if (!t_ctx)
            abort();
        pthread_setspecific(g_ctx_key, t_ctx);
    }
    return t_ctx;
}

static inline uint8_t *be(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
    return p + bytes;
}

void sl_record_hash(const char *strand, size_t strand_len, const struct sl_record *r,
                    uint8_t out[SL_HASH_LEN])
{
    /* 0x00 || "SLCR1" || seq || ts || flags || len(strand) || strand: at most 92 bytes */
    uint8_t head[1 + 5 + 8 + 8 + 4 + 2 + SL_STRAND_NAME_MAX + 2];
    uint8_t *p = head;
    *p++ = 0x00;
    memcpy(p, "SLCR1", 5);
    p += 5;
    p = be(p, r->seq, 8);
    p = be(p, r->timestamp_ms, 8);
    p = be(p, r->flags, 4);
    p = be(p, strand_len, 2);
    memcpy(p, strand, strand_len);
    p += strand_len;
    p = be(p, r->source_len, 2);
    uint8_t mid[SL_HASH_LEN + 4];
    memcpy(mid, r->prev_hash, SL_HASH_LEN);
    be(mid + SL_HASH_LEN, r->payload_len, 4);

    EVP_MD_CTX *c = ctx_get();
    unsigned int n = 0;
    EVP_DigestInit_ex2(c, g_sha256, NULL);
    EVP_DigestUpdate(c, head, (size_t)(p - head));
    EVP_DigestUpdate(c, r->source, r->source_len);
    EVP_DigestUpdate(c, mid, sizeof(mid));
    EVP_DigestUpdate(c, r->payload, r->payload_len);
    EVP_DigestFinal_ex(c, out, &n);
}

void sl_node_hash(const uint8_t left[SL_HASH_LEN], const uint8_t right[SL_HASH_LEN],
                  uint8_t out[SL_HASH_LEN])
{
    static const uint8_t one = 0x01;
    EVP_MD_CTX *c = ctx_get();
    unsigned int n = 0;
    EVP_DigestInit_ex2(c, g_sha256, NULL);
    EVP_DigestUpdate(c, &one, 1);
    EVP_DigestUpdate(c, left, SL_HASH_LEN);
    EVP_DigestUpdate(c, right, SL_HASH_LEN);
    EVP_DigestFinal_ex(c, out, &n);
}

void sl_frame_encode(const struct sl_record *r, uint8_t *out)
{
    uint32_t len = (uint32_t)sl_frame_len(r->source_len, r->payload_len);
    sl_put_le32(out, len);
    sl_put_le64(out + 8, r->seq);
    sl_put_le64(out + 16, r->timestamp_ms);
    sl_put_le32(out + 24, r->flags);
    out[28] = (uint8_t)r->source_len;
    out[29] = (uint8_t)(r->source_len >> 8);
    out[30] = out[31] = 0;
    sl_put_le32(out + 32, r->payload_len);
    uint8_t *p = out + SL_FRAME_HDR;
    memcpy(p, r->source, r->source_len);
    p += r->source_len;
    memcpy(p, r->payload, r->payload_len);
    p += r->payload_len;
    memcpy(p, r->prev_hash, SL_HASH_LEN);
    memcpy(p + SL_HASH_LEN, r->hash, SL_HASH_LEN);
    sl_put_le32(out + 4, sl_crc32c(0, out + 8, len - 8));
}

enum sl_frame_status sl_frame_decode(const uint8_t *p, uint64_t avail, struct sl_record *r,
                                     uint32_t *frame_len)
{
    if (avail < 4) { /* the few bytes left at the end of a full segment: zeros, or torn */
        for (uint64_t i = 0; i < avail; i++)
            if (p[i])
                return SL_FRAME_TORN;
        return SL_FRAME_END;
    }
    uint32_t len = sl_get_le32(p);
    if (len == 0)
        return SL_FRAME_END;
    if (len < SL_FRAME_OVERHEAD)
        return SL_FRAME_BADLEN;
    if (len > avail)
        return SL_FRAME_TORN;
    uint16_t sl = sl_get_le16(p + 28);
    uint32_t pl = sl_get_le32(p + 32);
    if (sl_frame_len(sl, pl) != len || p[30] || p[31])
        return SL_FRAME_BADLEN;
    if (sl_get_le32(p + 4) != sl_crc32c(0, p + 8, len - 8))
        return SL_FRAME_BADCRC;
    r->seq = sl_get_le64(p + 8);
    r->timestamp_ms = sl_get_le64(p + 16);
    r->flags = sl_get_le32(p + 24);
    r->source_len = sl;
    r->source = (const char *)p + SL_FRAME_HDR;
    r->payload_len = pl;
    r->payload = p + SL_FRAME_HDR + sl;
    memcpy(r->prev_hash, p + len - 2 * SL_HASH_LEN, SL_HASH_LEN);
    memcpy(r->hash, p + len - SL_HASH_LEN, SL_HASH_LEN);
    *frame_len = len;
    return SL_FRAME_OK;
}

const char *sl_frame_status_str(enum sl_frame_status st)
{
    switch (st) {
    case SL_FRAME_OK:
        return "ok";
    case SL_FRAME_END:
        return "end";
    case SL_FRAME_TORN:
        return "torn frame (length past end of file)";
    case SL_FRAME_BADLEN:
        return "bad frame length";
    case SL_FRAME_BADCRC:
        return "crc mismatch";
    }
    return "?";
}

int sl_strand_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > SL_STRAND_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (i > 0)
            ok = ok || c == '.' || c == '_' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}
