/* A tiny in-tree test header. Each check prints a TAP-like line: "ok - ..." or "not ok - ...";
 * tests/run.sh counts them. A test executable exits non-zero if any check failed. */
#ifndef SL_TEST_T_H
#define SL_TEST_T_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int t_failed_, t_passed_;

#define T_CHECK(cond, ...)                                                                         \
    do {                                                                                           \
        if (cond) {                                                                                \
            t_passed_++;                                                                           \
            printf("ok - ");                                                                       \
        } else {                                                                                   \
            t_failed_++;                                                                           \
            printf("not ok - %s:%d: ", __FILE__, __LINE__);                                        \
        }                                                                                          \
        printf(__VA_ARGS__);                                                                       \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
    } while (0)

#define T_EQ_INT(a, b, name)                                                                       \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        T_CHECK(a_ == b_, "%s (%lld == %lld)", name, a_, b_);                                      \
    } while (0)

#define T_EQ_STR(a, b, name)                                                                       \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        T_CHECK(a_ &&b_ &&strcmp(a_, b_) == 0, "%s (\"%s\" == \"%s\")", name, a_ ? a_ : "(null)",  \
                b_ ? b_ : "(null)");                                                               \
    } while (0)

/* Lowercase hex of p[0..n) in a static buffer (up to 2 KiB of input): for golden-byte checks. */
static inline const char *t_hex(const uint8_t *p, size_t n)
{
    static char buf[1 << 12];
    static const char d[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n && 2 * i + 2 < sizeof(buf); i++) {
        buf[2 * i] = d[p[i] >> 4];
        buf[2 * i + 1] = d[p[i] & 15];
    }
    buf[2 * i] = 0;
    return buf;
}

#define T_DONE() (t_failed_ ? 1 : 0)

#endif
