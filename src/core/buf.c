#include "core/buf.h"

#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sl_buf_init(struct sl_buf *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max ? max : SL_BUF_DEFAULT_MAX;
}

void sl_buf_release(struct sl_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->failed = 0;
}

void sl_buf_reset(struct sl_buf *b)
{
    b->len = 0;
    b->failed = 0;
}

int sl_buf_reserve(struct sl_buf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->max == 0)
        b->max = SL_BUF_DEFAULT_MAX;
    if (extra > b->max || b->len > b->max - extra) {
        b->failed = 1;
        return -1;
    }
    size_t need = b->len + extra + 1; /* +1 keeps room for a NUL terminator */
    if (need <= b->cap)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < need)
        ncap *= 2;
    uint8_t *p = realloc(b->data, ncap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = ncap;
    return 0;
}

int sl_buf_append(struct sl_buf *b, const void *p, size_t n)
{
    if (sl_buf_reserve(b, n))
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return 0;
}

int sl_buf_putc(struct sl_buf *b, uint8_t c)
{
    return sl_buf_append(b, &c, 1);
}

int sl_buf_puts(struct sl_buf *b, const char *s)
{
    return sl_buf_append(b, s, strlen(s));
}

int sl_buf_printf(struct sl_buf *b, const char *fmt, ...)
{
    /* Formatted once into the room there is (the common case: one vsnprintf, not a measuring
     * one first), again after growing the buffer only if it did not fit. */
    size_t room = b->failed || !b->data ? 0 : b->cap - b->len; /* with the NUL */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? (char *)b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) {
        if (room)
            b->data[b->len] = 0;
        return -1;
    }
    if ((size_t)n >= room) {
        if (sl_buf_reserve(b, (size_t)n)) {
            if (room)
                b->data[b->len] = 0; /* the truncated attempt is not part of the buffer */
            return -1;
        }
        va_start(ap, fmt);
        vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    } else if (sl_buf_reserve(b, (size_t)n)) { /* fits the allocation, not the max */
        b->data[b->len] = 0;
        return -1;
    }
    b->len += (size_t)n;
    return 0;
}

int sl_buf_json_str(struct sl_buf *b, const char *s, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    /* Worst case every byte becomes \u00XX. */
    if (sl_buf_reserve(b, n * 6 + 2))
        return -1;
    uint8_t *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = c;
        } else if (c >= 0x20) {
            *o++ = c;
        } else if (c == '\n') {
            *o++ = '\\';
            *o++ = 'n';
        } else if (c == '\t') {
            *o++ = '\\';
            *o++ = 't';
        } else if (c == '\r') {
            *o++ = '\\';
            *o++ = 'r';
        } else {
            memcpy(o, "\\u00", 4);
            o[4] = hexd[c >> 4];
            o[5] = hexd[c & 15];
            o += 6;
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = 0;
    return 0;
}

int sl_buf_hex(struct sl_buf *b, const uint8_t *p, size_t n)
{
    if (sl_buf_reserve(b, n * 2)) /* reserve keeps room for the NUL sl_hex_encode writes */
        return -1;
    sl_hex_encode((char *)b->data + b->len, p, n);
    b->len += n * 2;
    return 0;
}

char *sl_buf_steal(struct sl_buf *b, size_t *len)
{
    if (!b->data)
        sl_buf_reserve(b, 0);
    char *p = (char *)b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

int sl_buf_base64(struct sl_buf *b, const uint8_t *p, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (sl_buf_reserve(b, (n + 2) / 3 * 4))
        return -1;
    char *o = (char *)b->data + b->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - (char *)b->data);
    b->data[b->len] = 0;
    return 0;
}
