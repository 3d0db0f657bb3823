/* Errors: functions return 0 or a negative SL_E_* code and fill an optional caller-owned
 * struct sl_err. The HTTP layer maps codes to statuses in one table (src/api/errors.c). */
#ifndef SL_CORE_ERR_H
#define SL_CORE_ERR_H

enum sl_errcode {
    SL_OK = 0,
    SL_E_INVAL = -1,    /* bad input from a caller: 400 */
    SL_E_NOTFOUND = -2, /* 404 */
    SL_E_IO = -3,       /* file system error: 500, fatal for a strand */
    SL_E_CORRUPT = -4,  /* on-disk data failed a check */
    SL_E_NOMEM = -5,
    SL_E_TOOBIG = -6,   /* 413 */
    SL_E_CONFLICT = -7, /* 409 */
    SL_E_UNAVAIL = -8,  /* 503: shutting down, strand failed */
    SL_E_MEDIA = -9,    /* 415 */
    SL_E_METHOD = -10,  /* 405 */
    SL_E_RATE = -11,    /* 429: over a rate limit */
};

struct sl_err {
    int code;       /* SL_E_* */
    int sys_errno;  /* saved errno, 0 if none */
    int retriable;  /* 1 if retrying the same call may succeed */
    char field[64]; /* the input field the error is about, "" if none */
    char ecode[48]; /* snake_case code for API answers, e.g. "invalid_json" */
    char msg[256];
};

/* Fills err (if not NULL) and returns code. */
int sl_err_set(struct sl_err *err, int code, const char *ecode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, saving errno and appending strerror. */
int sl_err_sys(struct sl_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sl_err_clear(struct sl_err *err);

#endif
