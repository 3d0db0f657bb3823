/* JSON <-> MessagePack transcoder; the encoding rules are in json_mp.h.
 *
 * JSON -> MessagePack is one pass over the input with no tree: a container is opened with a
 * one-byte placeholder header (fixmap/fixarray, the common case) and patched when it closes; only
 * a container with more than 15 entries moves its contents right by 2 or 4 bytes to make room for
 * a map16/map32 header. Strings are scanned 16 bytes at a time for '"', '\\', control and
 * non-ASCII bytes; a plain string is then one memcpy. Numbers take an exact integer path, then
 * Clinger's fast path for short decimals, and only then strtod. */
#include "formats/json_mp.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Nesting handled without touching the heap; deeper documents (if max_depth allows) move the
 * stack to a heap block that doubles as needed. */
#define INLINE_DEPTH 64

/* A container being built (JSON side: pos = offset of its header in out, n = entries so far) or
 * walked (MessagePack side: pos = 1 for a map, n = items still to read, keys and values counted
 * separately). */
struct frame {
    size_t pos;
    uint64_t n;
};

struct stack {
    struct frame *f;
    int cap;
    struct frame inl[INLINE_DEPTH];
};

static void stack_init(struct stack *s)
{
    s->f = s->inl;
    s->cap = INLINE_DEPTH;
}

static void stack_release(struct stack *s)
{
    if (s->f != s->inl)
        free(s->f);
}

/* Makes room for frame index `depth`; the caller has checked depth < max_depth. */
static int stack_room(struct stack *s, int depth)
{
    if (depth < s->cap)
        return 0;
    int ncap = s->cap > INT32_MAX / 2 ? INT32_MAX : s->cap * 2;
    struct frame *nf = malloc((size_t)ncap * sizeof(*nf));
    if (!nf)
        return -1;
    memcpy(nf, s->f, (size_t)s->cap * sizeof(*nf));
    if (s->f != s->inl)
        free(s->f);
    s->f = nf;
    s->cap = ncap;
    return 0;
}

static void jerr_set(struct sl_jerr *err, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void jerr_set(struct sl_jerr *err, size_t off, const char *fmt, ...)
{
    if (!err)
        return;
    va_list ap;
    va_start(ap, fmt);
    err->offset = off;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
}

/* Room for n more bytes; the fast check mirrors sl_buf_reserve (which keeps one byte spare for
 * a NUL terminator). */
static inline int room(struct sl_buf *b, size_t n)
{
    if (!b->failed && b->len + n < b->cap && b->len + n <= b->max)
        return 0;
    return sl_buf_reserve(b, n);
}

static inline void be16(uint8_t *o, uint16_t v)
{
    o[0] = (uint8_t)(v >> 8);
    o[1] = (uint8_t)v;
}

static inline void be32(uint8_t *o, uint32_t v)
{
    o[0] = (uint8_t)(v >> 24);
    o[1] = (uint8_t)(v >> 16);
    o[2] = (uint8_t)(v >> 8);
    o[3] = (uint8_t)v;
}

static inline void be64(uint8_t *o, uint64_t v)
{
    be32(o, (uint32_t)(v >> 32));
    be32(o + 4, (uint32_t)v);
}

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) << 32 | rd32(p + 4);
}

/* ---- encoders (o must have room for 9 bytes) ---- */

static inline size_t enc_f64(uint8_t *o, double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    o[0] = 0xcb;
    be64(o + 1, u);
    return 9;
}

/* Container header; fix is 0x80 (map) or 0x90 (array). */
static inline size_t enc_container_head(uint8_t *o, uint8_t fix, uint32_t n)
{
    if (n <= 15) {
        o[0] = (uint8_t)(fix | n);
        return 1;
    }
    if (n <= 0xffff) {
        o[0] = fix == 0x80 ? 0xde : 0xdc;
        be16(o + 1, (uint16_t)n);
        return 3;
    }
    o[0] = fix == 0x80 ? 0xdf : 0xdd;
    be32(o + 1, n);
    return 5;
}

static inline size_t enc_utf8(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xc0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xe0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (uint8_t)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (uint8_t)(0xf0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (uint8_t)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- public writers ---- */

int sl_mp_write_nil(struct sl_buf *b)
{
    return sl_buf_putc(b, 0xc0);
}

int sl_mp_write_bool(struct sl_buf *b, int v)
{
    return sl_buf_putc(b, v ? 0xc3 : 0xc2);
}

int sl_mp_write_int(struct sl_buf *b, int64_t v)
{
    uint8_t t[9];
    return sl_buf_append(b, t, sl_mp_enc_int(t, v));
}

int sl_mp_write_uint(struct sl_buf *b, uint64_t v)
{
    uint8_t t[9];
    return sl_buf_append(b, t, sl_mp_enc_uint(t, v));
}

int sl_mp_write_double(struct sl_buf *b, double v)
{
    uint8_t t[9];
    return sl_buf_append(b, t, enc_f64(t, v));
}

int sl_mp_write_str(struct sl_buf *b, const char *s, size_t n)
{
    uint8_t t[5];
    if (n > UINT32_MAX) {
        b->failed = 1;
        return -1;
    }
    size_t hl = sl_mp_enc_str_head(t, n);
    if (room(b, hl + n))
        return -1;
    sl_buf_append(b, t, hl);
    return sl_buf_append(b, s, n);
}

int sl_mp_write_array(struct sl_buf *b, uint32_t n)
{
    uint8_t t[5];
    return sl_buf_append(b, t, enc_container_head(t, 0x90, n));
}

int sl_mp_write_map(struct sl_buf *b, uint32_t n)
{
    uint8_t t[5];
    return sl_buf_append(b, t, enc_container_head(t, 0x80, n));
}

/* ---- UTF-8 ---- */

/* Length (2..4) of the valid multi-byte sequence at p (p[0] >= 0x80), or 0 if it is invalid:
 * stray continuation byte, overlong, encoded surrogate, above U+10FFFF, or truncated. */
static inline int utf8_seq(const uint8_t *p, const uint8_t *end)
{
    uint8_t c = p[0], lo = 0x80, hi = 0xbf;
    size_t avail = (size_t)(end - p);
    if (c < 0xc2)
        return 0;
    if (c < 0xe0)
        return avail >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c < 0xf0) {
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        return avail >= 3 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c < 0xf5) {
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        return avail >= 4 && p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
                       (p[3] & 0xc0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

/* Offset of the first invalid sequence in s[0..n), or n if all of it is valid UTF-8. */
static size_t utf8_check(const uint8_t *s, size_t n)
{
    const uint8_t *p = s, *end = s + n;
    while (p < end) {
#if defined(__SSE2__)
        while (end - p >= 16 && !_mm_movemask_epi8(_mm_loadu_si128((const __m128i *)p)))
            p += 16;
#endif
        while (p < end && *p < 0x80)
            p++;
        if (p == end)
            break;
        int k = utf8_seq(p, end);
        if (!k)
            return (size_t)(p - s);
        p += k;
    }
    return n;
}

/* ---- JSON -> MessagePack ---- */

/* Where and why parsing stopped. why == NULL with out_full set means the output cap was hit. */
struct perr {
    const uint8_t *at;
    const char *why;
    int out_full;
};

static const uint8_t ws_tab[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1};

/* 1 for string bytes that need no attention: printable ASCII other than '"' and '\\'. */
static const uint8_t plain_tab[256] = {
#define R4(x) x, x, x, x
#define R16(x) R4(x), R4(x), R4(x), R4(x)
    R16(0), R16(0), /* 0x00-0x1f */
    1,      1,      0,      1,      1,      1,      1,      1,
    1,      1,      1,      1,      1,      1,      1,      1, /* 0x20-0x2f ('"') */
    R16(1), R16(1),                                            /* 0x30-0x4f */
    1,      1,      1,      1,      1,      1,      1,      1,
    1,      1,      1,      1,      0,      1,      1,      1,     /* 0x50-0x5f ('\\') */
    R16(1), R16(1),                                                /* 0x60-0x7f */
    R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0), R16(0) /* 0x80-0xff */
#undef R16
#undef R4
};

static inline const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end)
{
    while (p < end && ws_tab[*p])
        p++;
    return p;
}

/* First byte at or after p that is '"', '\\', < 0x20 or >= 0x80 (or end). */
static inline const uint8_t *scan_plain(const uint8_t *p, const uint8_t *end)
{
#if defined(__SSE2__)
    const __m128i q = _mm_set1_epi8('"'), bs = _mm_set1_epi8('\\'), sp = _mm_set1_epi8(0x20);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        /* signed compare: bytes >= 0x80 are negative, so "< 0x20" catches them too */
        __m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs)),
                                 _mm_cmplt_epi8(v, sp));
        int mask = _mm_movemask_epi8(m);
        if (mask)
            return p + __builtin_ctz((unsigned)mask);
        p += 16;
    }
#endif
    while (p < end && plain_tab[*p])
        p++;
    return p;
}

static inline int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The 4 hex digits at p (p + 4 <= end checked by the caller), or -1. */
static inline long hex4(const uint8_t *p)
{
    int a = hexval(p[0]), b = hexval(p[1]), c = hexval(p[2]), d = hexval(p[3]);
    if ((a | b | c | d) < 0)
        return -1;
    return (long)(a << 12 | b << 8 | c << 4 | d);
}

/* Decodes the already validated string body s..e (escapes present) into o. */
static void str_decode(const uint8_t *s, const uint8_t *e, uint8_t *o)
{
    while (s < e) {
        const uint8_t *b = memchr(s, '\\', (size_t)(e - s));
        if (!b)
            b = e;
        memcpy(o, s, (size_t)(b - s));
        o += b - s;
        s = b;
        if (s == e)
            break;
        switch (s[1]) {
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            uint32_t cp = (uint32_t)hex4(s + 2);
            s += 6;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)hex4(s + 2) - 0xdc00);
                s += 6;
            }
            o += enc_utf8(o, cp);
            continue;
        }
        default: /* '"', '\\', '/' */
            *o++ = s[1];
            break;
        }
        s += 2;
    }
}

/* String at p (the opening quote). Appends it to out and returns the byte after the closing
 * quote, or NULL with e filled. */
static const uint8_t *json_str(const uint8_t *p, const uint8_t *end, struct sl_buf *out,
                               struct perr *e)
{
    const uint8_t *s = p + 1, *r = scan_plain(s, end);
    size_t n;
    int esc = 0;

    if (r < end && *r == '"') {
        n = (size_t)(r - s); /* plain ASCII: the common case */
    } else {
        /* Validate, find the end and measure the decoded length. */
        n = (size_t)(r - s);
        for (;;) {
            if (r == end)
                goto unterminated;
            uint8_t c = *r;
            if (c == '"')
                break;
            if (c == '\\') {
                if (end - r < 2)
                    goto unterminated;
                esc = 1;
                switch (r[1]) {
                case '"':
                case '\\':
                case '/':
                case 'b':
                case 'f':
                case 'n':
                case 'r':
                case 't':
                    n++;
                    r += 2;
                    break;
                case 'u': {
                    long cp = end - r >= 6 ? hex4(r + 2) : -1;
                    if (cp < 0) {
                        e->at = r;
                        e->why = "invalid \\u escape in string";
                        return NULL;
                    }
                    if (cp >= 0xd800 && cp <= 0xdfff) {
                        long lo = -1;
                        if (cp <= 0xdbff && end - r >= 12 && r[6] == '\\' && r[7] == 'u')
                            lo = hex4(r + 8);
                        if (lo < 0xdc00 || lo > 0xdfff) {
                            e->at = r;
                            e->why = "lone surrogate in \\u escape";
                            return NULL;
                        }
                        n += 4;
                        r += 12;
                    } else {
                        n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : 3;
                        r += 6;
                    }
                    break;
                }
                default:
                    e->at = r;
                    e->why = "invalid escape in string";
                    return NULL;
                }
            } else if (c < 0x20) {
                e->at = r;
                e->why = "control character in string";
                return NULL;
            } else {
                int k = utf8_seq(r, end);
                if (!k) {
                    e->at = r;
                    e->why = "invalid UTF-8 in string";
                    return NULL;
                }
                n += (size_t)k;
                r += k;
            }
            const uint8_t *q = scan_plain(r, end);
            n += (size_t)(q - r);
            r = q;
        }
    }
    if (n > UINT32_MAX) {
        e->at = p;
        e->why = "string longer than 4 GiB";
        return NULL;
    }
    uint8_t head[5];
    size_t hl = sl_mp_enc_str_head(head, n);
    if (room(out, hl + n)) {
        e->at = p;
        e->out_full = 1;
        return NULL;
    }
    uint8_t *o = out->data + out->len;
    memcpy(o, head, hl);
    o += hl;
    if (esc)
        str_decode(s, r, o);
    else
        memcpy(o, s, n);
    out->len = (size_t)(o - out->data) + n;
    return r + 1;

unterminated:
    e->at = p;
    e->why = "unterminated string";
    return NULL;
}

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void c_locale_init(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* Exact powers of ten for Clinger's fast path. */
static const double pow10_tab[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline int is_digit(uint8_t c)
{
    return (unsigned)(c - '0') < 10;
}

/* Correctly rounded value of the (syntactically valid) JSON number s..e. */
static double parse_double(const uint8_t *s, const uint8_t *e)
{
#if FLT_EVAL_METHOD == 0
    /* Clinger: a mantissa below 2^53 times an exact power of ten up to 1e22 is one correctly
     * rounded IEEE operation. */
    const uint8_t *q = s;
    int neg = *q == '-', nd = 0, e10 = 0, ok = 1;
    uint64_t mant = 0;
    q += neg;
    for (; q < e && is_digit(*q); q++) {
        if (nd < 19) {
            mant = mant * 10 + (uint64_t)(*q - '0');
            nd += mant != 0;
        } else {
            ok = 0;
        }
    }
    if (q < e && *q == '.') {
        for (q++; q < e && is_digit(*q); q++) {
            if (nd < 19) {
                mant = mant * 10 + (uint64_t)(*q - '0');
                nd += mant != 0;
                e10--;
            } else {
                ok = 0;
            }
        }
    }
    if (q < e) { /* exponent */
        int eneg = 0, ev = 0;
        q++;
        if (*q == '+' || *q == '-')
            eneg = *q++ == '-';
        for (; q < e; q++)
            if (ev < 10000)
                ev = ev * 10 + (*q - '0');
        e10 += eneg ? -ev : ev;
    }
    if (ok && mant <= (uint64_t)1 << 53 && e10 >= -22 && e10 <= 22) {
        double d = (double)mant;
        d = e10 < 0 ? d / pow10_tab[-e10] : d * pow10_tab[e10];
        return neg ? -d : d;
    }
#endif
    char tmp[64], *t = tmp;
    size_t n = (size_t)(e - s);
    if (n >= sizeof(tmp)) {
        t = malloc(n + 1);
        if (!t)
            return NAN;
    }
    memcpy(t, s, n);
    t[n] = 0;
    pthread_once(&c_locale_once, c_locale_init);
    double d = c_locale ? strtod_l(t, NULL, c_locale) : strtod(t, NULL);
    if (t != tmp)
        free(t);
    return d;
}

/* Number at p (a '-' or a digit). Appends it to out and returns the byte after it, or NULL. */
static const uint8_t *json_num(const uint8_t *p, const uint8_t *end, struct sl_buf *out,
                               struct perr *e)
{
    const uint8_t *start = p;
    int neg = 0, big = 0, isfloat = 0;
    uint64_t m = 0;

    if (*p == '-') {
        neg = 1;
        p++;
    }
    if (p == end || !is_digit(*p)) {
        e->at = p;
        e->why = "invalid number: expected a digit";
        return NULL;
    }
    if (*p == '0') {
        p++;
        if (p < end && is_digit(*p)) {
            e->at = p;
            e->why = "invalid number: leading zeros are not allowed";
            return NULL;
        }
    } else {
        for (; p < end && is_digit(*p); p++) {
            uint64_t d = (uint64_t)(*p - '0');
            if (m > (UINT64_MAX - d) / 10)
                big = 1;
            else
                m = m * 10 + d;
        }
    }
    if (p < end && *p == '.') {
        isfloat = 1;
        p++;
        if (p == end || !is_digit(*p)) {
            e->at = p;
            e->why = "invalid number: expected a digit after '.'";
            return NULL;
        }
        while (p < end && is_digit(*p))
            p++;
    }
    if (p < end && (*p | 0x20) == 'e') {
        isfloat = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p == end || !is_digit(*p)) {
            e->at = p;
            e->why = "invalid number: expected a digit in the exponent";
            return NULL;
        }
        while (p < end && is_digit(*p))
            p++;
    }
    uint8_t t[9];
    size_t k;
    if (!isfloat && (big || (neg && m > (uint64_t)1 << 63))) {
        /* Rounding it to a float would store a different number than the one sent. */
        e->at = start;
        e->why = "integer out of range (-2^63 .. 2^64-1); send it as a string";
        return NULL;
    }
    if (!isfloat) {
        if (!neg)
            k = sl_mp_enc_uint(t, m);
        else if (m == (uint64_t)1 << 63)
            k = sl_mp_enc_int(t, INT64_MIN);
        else
            k = sl_mp_enc_int(t, -(int64_t)m);
    } else {
        double d = parse_double(start, p);
        if (!isfinite(d)) {
            e->at = start;
            e->why = "number out of range";
            return NULL;
        }
        k = enc_f64(t, d);
    }
    if (room(out, k)) {
        e->at = start;
        e->out_full = 1;
        return NULL;
    }
    memcpy(out->data + out->len, t, k);
    out->len += k;
    return p;
}

/* Patches the placeholder header at pos for n entries, moving the contents if it grows. */
static int close_container(struct sl_buf *out, size_t pos, uint64_t n)
{
    uint8_t fix = out->data[pos];
    if (n <= 15) {
        out->data[pos] = (uint8_t)(fix | n);
        return 0;
    }
    size_t extra = n <= 0xffff ? 2 : 4;
    if (room(out, extra))
        return -1;
    uint8_t *d = out->data + pos;
    memmove(d + 1 + extra, d + 1, out->len - pos - 1);
    enc_container_head(d, fix, (uint32_t)n);
    out->len += extra;
    return 0;
}

int sl_json_to_mp(const char *json, size_t len, struct sl_buf *out, int max_depth,
                  struct sl_jerr *err)
{
    static const char nothing[1];
    if (!json) { /* NULL + 0 is undefined behaviour */
        json = nothing;
        len = 0;
    }
    const uint8_t *const base = (const uint8_t *)json, *end = base + len, *p;
    const size_t len0 = out->len;
    const int failed0 = out->failed;
    struct perr e = {NULL, NULL, 0};
    struct stack st;
    int depth = 0;

    stack_init(&st);
    p = skip_ws(base, end);
    if (p == end) {
        jerr_set(err, 0, "empty body");
        return -1;
    }

value:
    if (p == end) {
        e.at = p;
        e.why = "expected a value";
        goto fail;
    }
    switch (*p) {
    case '{':
    case '[': {
        if (depth >= max_depth) {
            e.at = p;
            goto too_deep;
        }
        if (stack_room(&st, depth) || room(out, 1)) {
            e.at = p;
            e.out_full = 1;
            goto fail;
        }
        uint8_t fix = *p == '{' ? 0x80 : 0x90;
        st.f[depth].pos = out->len;
        st.f[depth].n = 0;
        depth++;
        out->data[out->len++] = fix;
        p = skip_ws(p + 1, end);
        if (p < end && *p == (fix == 0x80 ? '}' : ']')) {
            p++;
            depth--; /* empty: the placeholder is already right */
            goto after;
        }
        if (fix == 0x80)
            goto key;
        goto value;
    }
    case '"':
        p = json_str(p, end, out, &e);
        if (!p)
            goto fail;
        goto after;
    case 't':
    case 'f':
    case 'n': {
        static const char *const lit[3] = {"true", "false", "null"};
        static const uint8_t code[3] = {0xc3, 0xc2, 0xc0};
        int i = *p == 't' ? 0 : *p == 'f' ? 1 : 2;
        size_t n = i == 1 ? 5 : 4;
        if ((size_t)(end - p) < n || memcmp(p, lit[i], n) != 0) {
            e.at = p;
            e.why = "invalid literal";
            goto fail;
        }
        if (room(out, 1)) {
            e.at = p;
            e.out_full = 1;
            goto fail;
        }
        out->data[out->len++] = code[i];
        p += n;
        goto after;
    }
    default:
        if (*p == '-' || is_digit(*p)) {
            p = json_num(p, end, out, &e);
            if (!p)
                goto fail;
            goto after;
        }
        e.at = p;
        e.why = "expected a value";
        goto fail;
    }

key:
    if (p == end || *p != '"') {
        e.at = p;
        e.why = "expected a string key";
        goto fail;
    }
    p = json_str(p, end, out, &e);
    if (!p)
        goto fail;
    p = skip_ws(p, end);
    if (p == end || *p != ':') {
        e.at = p;
        e.why = "expected ':' after object key";
        goto fail;
    }
    p = skip_ws(p + 1, end);
    goto value;

after:
    if (depth == 0) {
        p = skip_ws(p, end);
        if (p != end) {
            e.at = p;
            e.why = "unexpected data after the JSON value";
            goto fail;
        }
        stack_release(&st);
        if (out->data)
            out->data[out->len] = 0;
        return 0;
    }
    {
        struct frame *f = &st.f[depth - 1];
        int is_map = out->data[f->pos] == 0x80;
        f->n++;
        p = skip_ws(p, end);
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            if (is_map)
                goto key;
            goto value;
        }
        if (p < end && *p == (is_map ? '}' : ']')) {
            if (f->n > UINT32_MAX) {
                e.at = p;
                e.why = "more than 2^32-1 entries in a container";
                goto fail;
            }
            if (close_container(out, f->pos, f->n)) {
                e.at = p;
                e.out_full = 1;
                goto fail;
            }
            p++;
            depth--;
            goto after;
        }
        e.at = p;
        e.why = is_map ? "expected ',' or '}' after object member"
                       : "expected ',' or ']' after array element";
        goto fail;
    }

too_deep:
    stack_release(&st);
    jerr_set(err, (size_t)(e.at - base), "invalid JSON at byte %zu: nesting deeper than %d",
             (size_t)(e.at - base), max_depth);
    goto restore;
fail:
    stack_release(&st);
    if (e.out_full)
        jerr_set(err, (size_t)(e.at - base), "output too large at byte %zu", (size_t)(e.at - base));
    else
        jerr_set(err, (size_t)(e.at - base), "invalid JSON at byte %zu: %s", (size_t)(e.at - base),
                 e.at == end ? "unexpected end of input" : e.why);
restore:
    out->len = len0;
    out->failed = failed0;
    if (out->data && out->len < out->cap)
        out->data[out->len] = 0;
    return -1;
}

/* ---- MessagePack ---- */

/* Decoded header of the value at p. For str/bin: n = payload bytes; ext: n = payload bytes
 * including the type byte; array/map: n = entries; other types: n = payload bytes (0..8). */
struct mph {
    int type;
    unsigned hdr;
    uint64_t n;
};

/* 0, or -1 if the header is truncated or the byte is 0xc1. Does not check the payload. */
static int mp_head(const uint8_t *p, const uint8_t *end, struct mph *h)
{
    if (p >= end)
        return -1;
    uint8_t c = *p;
    size_t avail = (size_t)(end - p);
    h->hdr = 1;
    h->n = 0;
    if (c <= 0x7f || c >= 0xe0) {
        h->type = SL_MP_INT;
        return 0;
    }
    if (c <= 0x8f) {
        h->type = SL_MP_MAP;
        h->n = c & 15;
        return 0;
    }
    if (c <= 0x9f) {
        h->type = SL_MP_ARRAY;
        h->n = c & 15;
        return 0;
    }
    if (c <= 0xbf) {
        h->type = SL_MP_STR;
        h->n = c & 31;
        return 0;
    }
    /* 0xc0..0xdf: type, then either a fixed payload size or a length field of lsize bytes */
    static const struct {
        uint8_t type, lsize, fixed;
    } tab[32] = {
        [0x00] = {SL_MP_NIL, 0, 0},  [0x01] = {SL_MP_INVALID, 0, 0}, [0x02] = {SL_MP_BOOL, 0, 0},
        [0x03] = {SL_MP_BOOL, 0, 0}, [0x04] = {SL_MP_BIN, 1, 0},     [0x05] = {SL_MP_BIN, 2, 0},
        [0x06] = {SL_MP_BIN, 4, 0},  [0x07] = {SL_MP_EXT, 1, 0},     [0x08] = {SL_MP_EXT, 2, 0},
        [0x09] = {SL_MP_EXT, 4, 0},  [0x0a] = {SL_MP_FLOAT, 0, 4},   [0x0b] = {SL_MP_FLOAT, 0, 8},
        [0x0c] = {SL_MP_INT, 0, 1},  [0x0d] = {SL_MP_INT, 0, 2},     [0x0e] = {SL_MP_INT, 0, 4},
        [0x0f] = {SL_MP_INT, 0, 8},  [0x10] = {SL_MP_INT, 0, 1},     [0x11] = {SL_MP_INT, 0, 2},
        [0x12] = {SL_MP_INT, 0, 4},  [0x13] = {SL_MP_INT, 0, 8},     [0x14] = {SL_MP_EXT, 0, 2},
        [0x15] = {SL_MP_EXT, 0, 3},  [0x16] = {SL_MP_EXT, 0, 5},     [0x17] = {SL_MP_EXT, 0, 9},
        [0x18] = {SL_MP_EXT, 0, 17}, [0x19] = {SL_MP_STR, 1, 0},     [0x1a] = {SL_MP_STR, 2, 0},
        [0x1b] = {SL_MP_STR, 4, 0},  [0x1c] = {SL_MP_ARRAY, 2, 0},   [0x1d] = {SL_MP_ARRAY, 4, 0},
        [0x1e] = {SL_MP_MAP, 2, 0},  [0x1f] = {SL_MP_MAP, 4, 0},
    };
    const unsigned i = c - 0xc0u;
    h->type = tab[i].type;
    if (h->type == SL_MP_INVALID)
        return -1;
    if (tab[i].fixed) {
        h->n = tab[i].fixed;
        return 0;
    }
    unsigned ls = tab[i].lsize;
    if (avail < 1 + ls)
        return -1;
    h->hdr = 1 + ls;
    h->n = ls == 0 ? 0 : ls == 1 ? p[1] : ls == 2 ? rd16(p + 1) : rd32(p + 1);
    if (h->type == SL_MP_EXT)
        h->n++; /* the ext type byte counts as payload */
    return 0;
}

static inline int mp_is_container(int type)
{
    return type == SL_MP_ARRAY || type == SL_MP_MAP;
}

long sl_mp_skip(const uint8_t *mp, size_t len, int max_depth)
{
    static const uint8_t nothing[1];
    if (!mp) { /* NULL + 0 is undefined behaviour */
        mp = nothing;
        len = 0;
    }
    const uint8_t *p = mp, *end = mp + len;
    struct stack st;
    int depth = 0;
    long ret = -1;
    struct mph h;

    stack_init(&st);
    for (;;) {
        if (mp_head(p, end, &h))
            goto out;
        p += h.hdr;
        if (mp_is_container(h.type)) {
            if (depth >= max_depth) /* an empty container counts too, as in JSON */
                goto out;
            if (h.n) {
                if (stack_room(&st, depth))
                    goto out;
                st.f[depth++].n = h.type == SL_MP_MAP ? h.n * 2 : h.n;
                continue;
            }
        } else {
            if ((uint64_t)(end - p) < h.n)
                goto out;
            p += h.n;
        }
        while (depth > 0 && --st.f[depth - 1].n == 0)
            depth--;
        if (depth == 0)
            break;
    }
    ret = (long)(p - mp);
out:
    stack_release(&st);
    return ret;
}

static char *fmt_u64(char *end, uint64_t u)
{
    char *s = end;
    do {
        *--s = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    return s;
}

/* What fmt_float prints for d when that is a plain decimal: if d is the double nearest to
 * m / 10^k for an integer m < 10^15, the 15-digit rounding of d is exactly m / 10^k (d lies within
 * half an ulp of it, far less than half a step of the 15-digit grid), so %.15g prints m / 10^k
 * without trailing zeros and it reads back. Returns 0 when this does not apply (exponent style,
 * more digits) and the printf path must decide. Covers most real data (22.4, 0.5, 1013.25). */
static size_t fmt_short_decimal(char *o, double d)
{
    double a = fabs(d);
    char *s = o;
    if (a == 0) {
        if (signbit(d))
            *s++ = '-';
        memcpy(s, "0.0", 4);
        return (size_t)(s - o) + 3;
    }
    if (!(a >= 1e-4 && a < 1e15))
        return 0;
    for (int k = 0; k <= 15; k++) {
        double t = a * pow10_tab[k];
        if (t >= 1e15)
            return 0;
        if (t != (double)(uint64_t)t)
            continue;
        uint64_t m = (uint64_t)t, pk = 1;
        if ((double)m / pow10_tab[k] != a)
            continue;
        while (k > 0 && m % 10 == 0) {
            m /= 10;
            k--;
        }
        for (int i = 0; i < k; i++)
            pk *= 10;
        uint64_t ip = m / pk, fp = m % pk;
        if (ip == 0 && fp * 10000 < pk) /* below 1e-4: %g would switch to an exponent */
            return 0;
        char t1[24], *q = fmt_u64(t1 + sizeof(t1), ip);
        if (d < 0)
            *s++ = '-';
        memcpy(s, q, (size_t)(t1 + sizeof(t1) - q));
        s += t1 + sizeof(t1) - q;
        *s++ = '.';
        if (k == 0) {
            *s++ = '0';
        } else {
            for (int i = k - 1; i >= 0; i--) {
                s[i] = (char)('0' + fp % 10);
                fp /= 10;
            }
            s += k;
        }
        *s = 0;
        return (size_t)(s - o);
    }
    return 0;
}

/* Shortest of %.15g/%.16g/%.17g that reads back to d, with ".0" added if it would otherwise read
 * back as an integer. A float32 is first replaced by the double of its own shortest decimal
 * (%.6g..%.9g, read back as a float), so 0.1f prints as 0.1 and the text printed is always what
 * its double would print: converting the JSON back and printing again gives the same text. */
static size_t fmt_float(char *o, size_t cap, double d, int is32)
{
    size_t n = 0;
    if (!is32 && (n = fmt_short_decimal(o, d)) != 0)
        return n;
    pthread_once(&c_locale_once, c_locale_init);
    locale_t old = c_locale ? uselocale(c_locale) : (locale_t)0;
    if (is32) {
        for (int prec = 6; prec <= 9; prec++) {
            snprintf(o, cap, "%.*g", prec, d);
            if (prec == 9 || strtof(o, NULL) == (float)d)
                break;
        }
        d = strtod(o, NULL);
    }
    for (int prec = 15; prec <= 17; prec++) {
        n = (size_t)snprintf(o, cap, "%.*g", prec, d);
        if (prec == 17 || strtod(o, NULL) == d)
            break;
    }
    if (c_locale)
        uselocale(old);
    if (!strpbrk(o, ".e")) {
        memcpy(o + n, ".0", 3);
        n += 2;
    }
    return n;
}

/* Appends without checking: a failed append sets out->failed, which sl_mp_to_json checks. */
static inline void put(struct sl_buf *b, const void *s, size_t n)
{
    if (room(b, n) == 0) {
        memcpy(b->data + b->len, s, n);
        b->len += n;
    }
}

static inline void put1(struct sl_buf *b, uint8_t c)
{
    if (room(b, 1) == 0)
        b->data[b->len++] = c;
}

int sl_mp_to_json(const uint8_t *mp, size_t len, size_t *used, struct sl_buf *out, int max_depth,
                  struct sl_jerr *err)
{
    static const uint8_t nothing[1];
    if (!mp) { /* NULL + 0 is undefined behaviour */
        mp = nothing;
        len = 0;
    }
    const uint8_t *p = mp, *end = mp + len;
    const size_t len0 = out->len;
    const int failed0 = out->failed;
    struct stack st;
    int depth = 0;
    struct mph h;
    char tmp[40];

    stack_init(&st);
    for (;;) {
        if (mp_head(p, end, &h)) {
            if (p < end && *p == 0xc1)
                jerr_set(err, (size_t)(p - mp),
                         "invalid MessagePack at byte %zu: reserved type byte 0xc1",
                         (size_t)(p - mp));
            else
                goto truncated;
            goto fail;
        }
        if (depth > 0 && st.f[depth - 1].pos && !(st.f[depth - 1].n & 1) && h.type != SL_MP_STR) {
            jerr_set(err, (size_t)(p - mp), "map key at byte %zu is not a string",
                     (size_t)(p - mp));
            goto fail;
        }
        const uint8_t *v = p + h.hdr;
        if (!mp_is_container(h.type) && (uint64_t)(end - v) < h.n)
            goto truncated;
        switch (h.type) {
        case SL_MP_NIL:
            put(out, "null", 4);
            break;
        case SL_MP_BOOL:
            if (*p == 0xc3)
                put(out, "true", 4);
            else
                put(out, "false", 5);
            break;
        case SL_MP_INT: {
            uint8_t c = *p;
            uint64_t u;
            int neg = 0;
            if (c <= 0x7f) {
                u = c;
            } else if (c >= 0xe0) {
                u = (uint64_t)(0x100 - c);
                neg = 1;
            } else if (c <= 0xcf) { /* uint8..uint64 */
                u = c == 0xcc ? v[0] : c == 0xcd ? rd16(v) : c == 0xce ? rd32(v) : rd64(v);
            } else { /* int8..int64 */
                int64_t s = c == 0xd0   ? (int8_t)v[0]
                            : c == 0xd1 ? (int16_t)rd16(v)
                            : c == 0xd2 ? (int32_t)rd32(v)
                                        : (int64_t)rd64(v);
                neg = s < 0;
                u = neg ? 0 - (uint64_t)s : (uint64_t)s;
            }
            char *s = fmt_u64(tmp + sizeof(tmp), u);
            if (neg)
                *--s = '-';
            put(out, s, (size_t)(tmp + sizeof(tmp) - s));
            break;
        }
        case SL_MP_FLOAT: {
            double d;
            if (h.n == 4) {
                uint32_t u = rd32(v);
                float f;
                memcpy(&f, &u, 4);
                d = f;
            } else {
                uint64_t u = rd64(v);
                memcpy(&d, &u, 8);
            }
            if (!isfinite(d)) {
                jerr_set(err, (size_t)(p - mp),
                         "NaN or infinity at byte %zu cannot be shown as JSON", (size_t)(p - mp));
                goto fail;
            }
            put(out, tmp, fmt_float(tmp, sizeof(tmp) - 3, d, h.n == 4));
            break;
        }
        case SL_MP_STR: {
            const uint8_t *q = scan_plain(v, v + h.n);
            if (q == v + h.n) { /* printable ASCII, nothing to escape */
                if (room(out, h.n + 2) == 0) {
                    uint8_t *o = out->data + out->len;
                    o[0] = '"';
                    memcpy(o + 1, v, (size_t)h.n);
                    o[h.n + 1] = '"';
                    out->len += h.n + 2;
                }
                break;
            }
            size_t bad = (size_t)(q - v) + utf8_check(q, (size_t)(v + h.n - q));
            if (bad != h.n) {
                jerr_set(err, (size_t)(v + bad - mp),
                         "invalid MessagePack at byte %zu: string is not valid UTF-8",
                         (size_t)(v + bad - mp));
                goto fail;
            }
            sl_buf_json_str(out, (const char *)v, (size_t)h.n);
            break;
        }
        case SL_MP_BIN:
        case SL_MP_EXT:
            jerr_set(err, (size_t)(p - mp), "binary values cannot be shown as JSON");
            goto fail;
        default: /* array, map */
            if (depth >= max_depth) {
                jerr_set(err, (size_t)(p - mp),
                         "invalid MessagePack at byte %zu: nesting deeper than %d",
                         (size_t)(p - mp), max_depth);
                goto fail;
            }
            if (h.n == 0) {
                put(out, h.type == SL_MP_MAP ? "{}" : "[]", 2);
                break;
            }
            if (stack_room(&st, depth) || out->failed)
                goto full;
            st.f[depth].pos = h.type == SL_MP_MAP;
            st.f[depth].n = h.type == SL_MP_MAP ? h.n * 2 : h.n;
            depth++;
            put1(out, h.type == SL_MP_MAP ? '{' : '[');
            p = v;
            continue;
        }
        p = v + (mp_is_container(h.type) ? 0 : h.n);
        /* a value is complete: separators and closing brackets */
        while (depth > 0) {
            struct frame *f = &st.f[depth - 1];
            if (--f->n > 0) {
                put1(out, f->pos && (f->n & 1) ? ':' : ',');
                break;
            }
            put1(out, f->pos ? '}' : ']');
            depth--;
        }
        if (depth == 0)
            break;
    }
    if (out->failed)
        goto full;
    out->data[out->len] = 0;
    stack_release(&st);
    if (used)
        *used = (size_t)(p - mp);
    return 0;

truncated:
    jerr_set(err, (size_t)(p - mp), "invalid MessagePack at byte %zu: truncated value",
             (size_t)(p - mp));
    goto fail;
full:
    jerr_set(err, (size_t)(p - mp), "output too large at byte %zu", (size_t)(p - mp));
fail:
    stack_release(&st);
    out->len = len0;
    out->failed = failed0;
    if (out->data && out->len < out->cap)
        out->data[out->len] = 0;
    return -1;
}

/* ---- readers ---- */

int sl_mp_type(const uint8_t *p, const uint8_t *end)
{
    struct mph h;
    if (p >= end)
        return SL_MP_INVALID;
    mp_head(p, end, &h); /* sets h.type from the first byte even if the rest is truncated */
    return h.type;
}

static int read_container(const uint8_t **p, const uint8_t *end, uint32_t *n, int type)
{
    struct mph h;
    if (mp_head(*p, end, &h) || h.type != type)
        return -1;
    *n = (uint32_t)h.n;
    *p += h.hdr;
    return 0;
}

int sl_mp_read_map(const uint8_t **p, const uint8_t *end, uint32_t *n)
{
    return read_container(p, end, n, SL_MP_MAP);
}

int sl_mp_read_array(const uint8_t **p, const uint8_t *end, uint32_t *n)
{
    return read_container(p, end, n, SL_MP_ARRAY);
}

int sl_mp_read_str(const uint8_t **p, const uint8_t *end, const char **s, uint32_t *n)
{
    struct mph h;
    if (mp_head(*p, end, &h) || h.type != SL_MP_STR || (uint64_t)(end - *p - h.hdr) < h.n)
        return -1;
    *s = (const char *)*p + h.hdr;
    *n = (uint32_t)h.n;
    *p += h.hdr + h.n;
    return 0;
}

int sl_mp_read_int(const uint8_t **p, const uint8_t *end, int64_t *v)
{
    struct mph h;
    if (mp_head(*p, end, &h) || h.type != SL_MP_INT || (uint64_t)(end - *p - h.hdr) < h.n)
        return -1;
    const uint8_t c = **p, *q = *p + 1;
    int64_t r;
    if (c <= 0x7f)
        r = c;
    else if (c >= 0xe0)
        r = (int8_t)c;
    else if (c == 0xcc)
        r = q[0];
    else if (c == 0xcd)
        r = rd16(q);
    else if (c == 0xce)
        r = rd32(q);
    else if (c == 0xcf) {
        uint64_t u = rd64(q);
        if (u > INT64_MAX)
            return -1;
        r = (int64_t)u;
    } else if (c == 0xd0)
        r = (int8_t)q[0];
    else if (c == 0xd1)
        r = (int16_t)rd16(q);
    else if (c == 0xd2)
        r = (int32_t)rd32(q);
    else
        r = (int64_t)rd64(q);
    *v = r;
    *p += h.hdr + h.n;
    return 0;
}

int sl_mp_read_nil(const uint8_t **p, const uint8_t *end)
{
    if (*p >= end || **p != 0xc0)
        return -1;
    (*p)++;
    return 0;
}

int sl_mp_read_bool(const uint8_t **p, const uint8_t *end, int *v)
{
    if (*p >= end || (**p != 0xc2 && **p != 0xc3))
        return -1;
    *v = **p == 0xc3;
    (*p)++;
    return 0;
}

int sl_mp_read_double(const uint8_t **p, const uint8_t *end, double *v)
{
    struct mph h;
    if (mp_head(*p, end, &h) || (uint64_t)(end - *p - h.hdr) < h.n)
        return -1;
    const uint8_t *q = *p + 1;
    if (h.type == SL_MP_FLOAT) {
        if (h.n == 4) {
            uint32_t u = rd32(q);
            float f;
            memcpy(&f, &u, 4);
            *v = f;
        } else {
            uint64_t u = rd64(q);
            memcpy(v, &u, 8);
        }
        *p += 1 + h.n;
        return 0;
    }
    if (h.type != SL_MP_INT)
        return -1;
    if (**p == 0xcf) {
        *v = (double)rd64(q);
        *p += 9;
        return 0;
    }
    int64_t i;
    if (sl_mp_read_int(p, end, &i))
        return -1;
    *v = (double)i;
    return 0;
}

/* ---- helpers shared by connectors (moved from the Kafka connectors) ---- */

int sl_utf8_valid(const uint8_t *s, size_t n)
{
    return utf8_check(s, n) == n;
}

/* base64 as a MessagePack string: the text is written after a str32 header patched after. */
int sl_mp_write_base64(struct sl_buf *b, const void *p, size_t n)
{
    size_t at = b->len;
    if (sl_buf_putc(b, 0xdb) < 0 || sl_buf_put_be32(b, 0) < 0)
        return -1;
    size_t start = b->len;
    if (sl_buf_base64(b, p, n) < 0)
        return -1;
    size_t len = b->len - start;
    /* the smallest header, as sl_json_to_mp writes it: move the text down if shorter */
    uint8_t hdr[5];
    size_t h;
    if (len < 32)
        hdr[0] = (uint8_t)(0xa0 | len), h = 1;
    else if (len < 256)
        hdr[0] = 0xd9, hdr[1] = (uint8_t)len, h = 2;
    else if (len < 65536)
        hdr[0] = 0xda, hdr[1] = (uint8_t)(len >> 8), hdr[2] = (uint8_t)len, h = 3;
    else
        hdr[0] = 0xdb, hdr[1] = (uint8_t)(len >> 24), hdr[2] = (uint8_t)(len >> 16),
        hdr[3] = (uint8_t)(len >> 8), hdr[4] = (uint8_t)len, h = 5;
    memcpy(b->data + at, hdr, h);
    if (h < 5)
        memmove(b->data + at + h, b->data + start, len);
    b->len = at + h + len;
    return 0;
}

/* Moves *p to the value of key (klen bytes) in the map at *p. 0, or -1 if absent or malformed. */
static int map_find_n(const uint8_t **p, const uint8_t *end, const char *key, size_t klen)
{
    uint32_t n;
    if (sl_mp_read_map(p, end, &n) < 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(p, end, &k, &kl) < 0)
            return -1;
        if (kl == klen && memcmp(k, key, klen) == 0)
            return 0;
        long skip = sl_mp_skip(*p, (size_t)(end - *p), 64);
        if (skip < 0)
            return -1;
        *p += skip;
    }
    return -1;
}

/* The value at a dotted path of a MessagePack map, or NULL. */
const uint8_t *sl_mp_at_path(const uint8_t *p, const uint8_t *end, const char *path)
{
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t plen = dot ? (size_t)(dot - path) : strlen(path);
        if (map_find_n(&p, end, path, plen) < 0)
            return NULL;
        path += plen + (dot ? 1 : 0);
    }
    return p;
}

/* ---- shared by the CDC sources (moved from connectors/pg/values.c) ---- */

int sl_mp_write_str_lossy(struct sl_buf *b, const char *s, size_t n)
{
    const uint8_t *u = (const uint8_t *)s, *end = u + n;
    size_t bad = utf8_check(u, n);
    if (bad == n)
        return sl_mp_write_str(b, s, n);
    struct sl_buf t;
    sl_buf_init(&t, 0);
    sl_buf_append(&t, u, bad);
    for (const uint8_t *p = u + bad; p < end;) {
        int k = *p < 0x80 ? 1 : utf8_seq(p, end);
        if (k)
            sl_buf_append(&t, p, (size_t)k);
        else
            sl_buf_append(&t, "\xef\xbf\xbd", 3);
        p += k ? k : 1;
    }
    int rc = t.failed ? -1 : sl_mp_write_str(b, (const char *)t.data, t.len);
    sl_buf_release(&t);
    return rc;
}

int sl_mp_map_find(const uint8_t **p, const uint8_t *end, const char *key)
{
    return map_find_n(p, end, key, strlen(key));
}
