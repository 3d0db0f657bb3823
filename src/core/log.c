#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum sl_log_level g_level = SL_LOG_INFO;
static const char *const g_names[] = {"debug", "info", "warn", "error"};

void sl_log_set_level(enum sl_log_level lvl)
{
    g_level = lvl;
}

int sl_log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, g_names[i]) == 0)
            return i;
    return -1;
}

void sl_log(enum sl_log_level lvl, const char *fmt, ...)
{
    if (lvl < g_level)
        return;
    char line[1024];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(line + n, sizeof(line) - (size_t)n, ".%03dZ %s ", (int)(tv.tv_usec / 1000),
                  g_names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += m;
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    fwrite(line, 1, (size_t)n, stderr); /* one fwrite per line: stdio locks the stream */
}
