/* Small helpers shared by every module. */
#ifndef SL_CORE_UTIL_H
#define SL_CORE_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

uint64_t sl_now_ms(void);  /* wall clock, ms since the epoch */
uint64_t sl_mono_ns(void); /* monotonic clock */
uint64_t sl_rand64(void);
/* Exponential backoff with full jitter: a random delay in [0, min(max, base * 2^(attempt-1))]. */
uint64_t
sl_backoff_ms(uint64_t base, uint64_t max,
              int attempt); /* random (getrandom; the clock if that fails): jitter, not secrets */
/* Writes n bytes as 2n lowercase hex chars plus a NUL to out (2n+1 bytes). */
void sl_hex_encode(char *out, const uint8_t *p, size_t n);
/* Value of one hex digit (either case), or -1. */
int sl_hex_digit(char c);
/* Parses exactly 2*n lowercase/uppercase hex chars into out; 0 or -1. */
int sl_hex_decode(const char *s, size_t slen, uint8_t *out, size_t n);
/* Decodes standard base64 (RFC 4648, padding required, no whitespace) of slen chars into out
 * (cap bytes); *n = decoded length. 0 or -1 (bad character, bad length, too long). */
int sl_base64_decode(const char *s, size_t slen, uint8_t *out, size_t cap, size_t *n);
/* Parses a decimal unsigned integer that must fill s completely; 0 or -1 (empty, sign,
 * junk, overflow). */
int sl_parse_u64(const char *s, uint64_t *out);
/* Like sl_parse_u64 with an optional K/M/G suffix (powers of 1024). */
int sl_parse_size(const char *s, uint64_t *out);
/* Writes all n bytes at off; retries on EINTR and short writes. 0 or -1 (errno set). */
int sl_pwrite_all(int fd, const void *p, size_t n, uint64_t off);
int sl_pread_all(int fd, void *p, size_t n, uint64_t off);
/* fsyncs the directory containing nothing but the name: makes a rename/create durable. */
int sl_fsync_dir(const char *dir);
int sl_mkdir_p(const char *path);

static inline void sl_put_le32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* x86-64 only target: little-endian memory order */
}
static inline void sl_put_le64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static inline uint32_t sl_get_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static inline uint64_t sl_get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint16_t sl_get_le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* The whole file at path (malloc'ed, NUL-ended, *len its size), or NULL with errno set
 * (EFBIG when larger than max bytes). */
char *sl_read_file(const char *path, size_t max, size_t *len);

/* Names a thread for top -H, perf and gdb: "sl-http0", "commit:<strand>", "c:<connector id>"
 * (cut to the kernel's 15 characters). */
void sl_thread_name(pthread_t th, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
