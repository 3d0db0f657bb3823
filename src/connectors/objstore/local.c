/* The local provider: {root}/{key} written as temp file -> fsync -> rename -> fsync of the
 * directory, so that a file is complete and durable before the cursor moves past its records, and
 * a crash leaves either the old file, the new one or a stray temp file (never a torn one). Writes
 * and syncs go through sl_io so tests can inject failures. */
#include "connectors/objstore/objstore_int.h"

#include "core/io.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static long fail(struct sl_os_result *res, const char *what, const char *path)
{
    snprintf(res->error, sizeof(res->error), "local: %s %.180s: %s", what, path, strerror(errno));
    return 0; /* an I/O error is transient: the batch is retried under the retry policy */
}

/* mkdir -p dir; every directory it creates is made durable by an fsync of its parent. */
static int make_dirs(char *dir)
{
    struct stat sb;
    if (stat(dir, &sb) == 0)
        return S_ISDIR(sb.st_mode) ? 0 : (errno = ENOTDIR, -1);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        int rc = make_dirs(dir);
        *slash = '/';
        if (rc < 0)
            return -1;
    }
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -1;
    if (slash && slash != dir) {
        *slash = 0;
        int rc = sl_fsync_dir(dir);
        *slash = '/';
        return rc;
    }
    return 0;
}

long sl_os_local_put(const struct sl_os_target *t, const char *key, const uint8_t *data, size_t len,
                     struct sl_os_result *res)
{
    char path[4096], dir[4096], tmp[4200];
    int n = snprintf(path, sizeof(path), "%s/%s", t->root, key);
    if (n < 0 || (size_t)n >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return fail(res, "path", key);
    }
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    *slash = 0;
    if (make_dirs(dir) < 0)
        return fail(res, "mkdir", dir);
    snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, slash + 1);
    int fd = mkstemp(tmp);
    if (fd < 0)
        return fail(res, "create", tmp);
    size_t off = 0;
    while (off < len) {
        ssize_t w = sl_io.pwrite(fd, data + off, len - off, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            goto fail;
        }
        off += (size_t)w;
    }
    if (fchmod(fd, 0644) < 0 || sl_io.fdatasync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    if (sl_fsync_dir(dir) < 0)
        return fail(res, "fsync directory", dir);
    snprintf(res->error, sizeof(res->error), "stored %.200s", path);
    return 200;
fail:;
    long st = fail(res, "write", tmp);
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return st;
}

long sl_os_local_probe(const struct sl_os_target *t, struct sl_os_result *res)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", t->root);
    if (make_dirs(dir) < 0)
        return fail(res, "create", t->root);
    if (access(t->root, W_OK | X_OK) < 0)
        return fail(res, "write to", t->root);
    return 200;
}
