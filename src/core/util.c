#include "core/util.h"

#include "core/io.h"

#include <errno.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t sl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void sl_thread_name(pthread_t th, const char *fmt, ...)
{
    char name[64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof(name), fmt, ap);
    va_end(ap);
    name[15] = 0; /* TASK_COMM_LEN - 1 */
    (void)pthread_setname_np(th, name);
}

uint64_t sl_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int sl_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void sl_hex_encode(char *out, const uint8_t *p, size_t n)
{
    static const char hexd[] = "0123456789abcdef";
    size_t i = 0;
#ifdef __SSE2__
    /* 16 bytes at a time (a record hash is two): the nibbles interleaved high first, then
     * '0' + nibble, plus 'a' - '0' - 10 where the nibble is over 9. Every record hash an answer
     * or a listing prints goes through here. */
    const __m128i low4 = _mm_set1_epi8(0x0f), nine = _mm_set1_epi8(9), zero = _mm_set1_epi8('0'),
                  gap = _mm_set1_epi8('a' - '0' - 10);
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), low4), lo = _mm_and_si128(v, low4);
        __m128i a = _mm_unpacklo_epi8(hi, lo), b = _mm_unpackhi_epi8(hi, lo);
        a = _mm_add_epi8(_mm_add_epi8(a, zero), _mm_and_si128(_mm_cmpgt_epi8(a, nine), gap));
        b = _mm_add_epi8(_mm_add_epi8(b, zero), _mm_and_si128(_mm_cmpgt_epi8(b, nine), gap));
        _mm_storeu_si128((__m128i *)(out + 2 * i), a);
        _mm_storeu_si128((__m128i *)(out + 2 * i + 16), b);
    }
#endif
    for (; i < n; i++) {
        out[2 * i] = hexd[p[i] >> 4];
        out[2 * i + 1] = hexd[p[i] & 15];
    }
    out[2 * n] = 0;
}

int sl_hex_decode(const char *s, size_t slen, uint8_t *out, size_t n)
{
    if (slen != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = sl_hex_digit(s[2 * i]), lo = sl_hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

int sl_base64_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *n)
{
    if (slen % 4)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < slen; i += 4) {
        int pad = 0;
        uint32_t v = 0;
        for (int j = 0; j < 4; j++) {
            int d = b64_value(s[i + j]);
            if (s[i + j] == '=' && i + 4 == slen && j >= 2 && (j == 3 || s[i + 3] == '=')) {
                pad++;
                d = 0;
            } else if (d < 0 || pad) {
                return -1;
            }
            v = v << 6 | (uint32_t)d;
        }
        size_t k = 3 - (size_t)pad;
        if (o + k > cap)
            return -1;
        for (size_t j = 0; j < k; j++)
            out[o++] = (uint8_t)(v >> (16 - 8 * j));
    }
    *n = o;
    return 0;
}

int sl_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int sl_parse_size(const char *s, uint64_t *out)
{
    char tmp[32];
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n + 1);
    uint64_t mul = 1;
    switch (tmp[n - 1]) {
    case 'k':
    case 'K':
        mul = 1024;
        break;
    case 'm':
    case 'M':
        mul = 1024 * 1024;
        break;
    case 'g':
    case 'G':
        mul = 1024 * 1024 * 1024;
        break;
    }
    if (mul > 1)
        tmp[n - 1] = 0;
    uint64_t v;
    if (sl_parse_u64(tmp, &v) || v > UINT64_MAX / mul)
        return -1;
    *out = v * mul;
    return 0;
}

int sl_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = sl_io.pwrite(fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        b += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int sl_pread_all(int fd, void *p, size_t n, uint64_t off)
{
    uint8_t *b = p;
    while (n > 0) {
        ssize_t r = pread(fd, b, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            errno = EIO; /* short file */
            return -1;
        }
        b += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int sl_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int sl_mkdir_p(const char *path)
{
    char tmp[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

uint64_t sl_rand64(void)
{
    uint64_t v;
    if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v))
        v = sl_mono_ns() * 0x9e3779b97f4a7c15ull;
    return v;
}

uint64_t sl_backoff_ms(uint64_t base, uint64_t max, int attempt)
{
    uint64_t cap = base;
    for (int i = 1; i < attempt && cap < max; i++)
        cap *= 2;
    if (cap > max)
        cap = max;
    return sl_rand64() % (cap + 1);
}

char *sl_read_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            if (cap > max) {
                free(buf);
                fclose(f);
                errno = EFBIG;
                return NULL;
            }
            char *b = realloc(buf, cap = cap ? cap * 2 : 65536 * 2);
            if (!b) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = b;
        }
        if ((got = fread(buf + n, 1, cap - n - 1, f)) == 0)
            break;
        n += got;
    }
    fclose(f);
    if (n > max) {
        free(buf);
        errno = EFBIG;
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}
