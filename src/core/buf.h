/* Growable byte buffer with a hard cap (curl's dynbuf idea): every append checks the cap, so a
 * buffer filled from the network or disk can never grow without bound. */
#ifndef SL_CORE_BUF_H
#define SL_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

struct sl_buf {
    uint8_t *data;
    size_t len;
    size_t cap; /* allocated bytes */
    size_t max; /* hard cap on len; 0 means SL_BUF_DEFAULT_MAX */
    int failed; /* set once an append failed (cap or OOM); later appends are no-ops */
};

#define SL_BUF_DEFAULT_MAX ((size_t)1 << 31)

void sl_buf_init(struct sl_buf *b, size_t max);
void sl_buf_release(struct sl_buf *b); /* frees storage; b can be reused after sl_buf_init */
void sl_buf_reset(struct sl_buf *b);   /* len = 0, keeps storage, clears failed */
int sl_buf_reserve(struct sl_buf *b, size_t extra); /* 0 or -1 (cap/OOM; sets failed) */
int sl_buf_append(struct sl_buf *b, const void *p, size_t n);
int sl_buf_putc(struct sl_buf *b, uint8_t c);
int sl_buf_puts(struct sl_buf *b, const char *s);
int sl_buf_printf(struct sl_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal (with quotes), escaping as RFC 8259 requires. */
int sl_buf_json_str(struct sl_buf *b, const char *s, size_t n);
/* Appends n bytes as standard base64 (RFC 4648, with padding). */
int sl_buf_base64(struct sl_buf *b, const uint8_t *p, size_t n);
/* Appends n bytes as lowercase hex. */
int sl_buf_hex(struct sl_buf *b, const uint8_t *p, size_t n);
/* Takes ownership of the storage: returns data (NUL-terminated) and leaves b empty. */
char *sl_buf_steal(struct sl_buf *b, size_t *len);

static inline int sl_buf_put_be16(struct sl_buf *b, uint16_t v)
{
    uint8_t t[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    return sl_buf_append(b, t, 2);
}
static inline int sl_buf_put_be32(struct sl_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    return sl_buf_append(b, t, 4);
}
static inline int sl_buf_put_be64(struct sl_buf *b, uint64_t v)
{
    uint8_t t[8];
    for (int i = 0; i < 8; i++)
        t[i] = (uint8_t)(v >> (56 - 8 * i));
    return sl_buf_append(b, t, 8);
}

#endif
