#include "core/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int sl_err_set(struct sl_err *err, int code, const char *ecode, const char *fmt, ...)
{
    if (!err)
        return code;
    err->code = code;
    err->sys_errno = 0;
    err->retriable = 0;
    snprintf(err->ecode, sizeof(err->ecode), "%s", ecode ? ecode : "error");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int sl_err_sys(struct sl_err *err, int code, const char *fmt, ...)
{
    int saved = errno;
    if (!err)
        return code;
    err->code = code;
    err->sys_errno = saved;
    err->retriable = (saved == EINTR || saved == EAGAIN);
    snprintf(err->ecode, sizeof(err->ecode), "%s", "io_error");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof(err->msg))
        snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s", strerror(saved));
    return code;
}

void sl_err_clear(struct sl_err *err)
{
    if (err)
        memset(err, 0, sizeof(*err));
}
