#include "strand/store.h"

#include "core/log.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

struct sl_store {
    char dir[4096];
    char sdir[4200];
    struct sl_store_opts opts;
    int lock_fd;
    pthread_rwlock_t lock;      /* guards the strand list; creation takes it for writing */
    struct sl_strand **strands; /* sorted by name */
    size_t n, cap;
};

static int find_idx(struct sl_store *st, const char *name, size_t len, size_t *pos)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *m = sl_strand_name(st->strands[mid]);
        int c = strncmp(m, name, len);
        if (c == 0 && m[len] != 0)
            c = 1;
        if (c == 0) {
            *pos = mid;
            return 1;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return 0;
}

static int insert(struct sl_store *st, struct sl_strand *s, size_t pos)
{
    if (st->n == st->cap) {
        size_t nc = st->cap ? st->cap * 2 : 16;
        struct sl_strand **p = realloc(st->strands, nc * sizeof(*p));
        if (!p)
            return -1;
        st->strands = p;
        st->cap = nc;
    }
    memmove(st->strands + pos + 1, st->strands + pos, (st->n - pos) * sizeof(*st->strands));
    st->strands[pos] = s;
    st->n++;
    return 0;
}

/* Opens strand name (not yet in the list) and inserts it. Caller holds the write lock. */
static int open_strand(struct sl_store *st, const char *name, size_t len, struct sl_strand **out,
                       struct sl_store_recovery *rec, struct sl_err *err)
{
    char nm[SL_STRAND_NAME_MAX + 1], path[4300];
    memcpy(nm, name, len);
    nm[len] = 0;
    snprintf(path, sizeof(path), "%s/%s", st->sdir, nm);
    struct sl_strand_opts so = {.segment_bytes = st->opts.segment_bytes,
                                .durable = st->opts.durable,
                                .no_tree = st->opts.no_tree,
                                .spare_max_rate = st->opts.spare_max_rate,
                                .cache_window = st->opts.cache_window};
    struct sl_strand_recovery sr;
    struct sl_strand *s;
    int rc = sl_strand_open(path, nm, &so, &s, &sr, err);
    if (rc)
        return rc;
    if (st->opts.durable && sl_fsync_dir(st->sdir) < 0) {
        sl_strand_close(s);
        return sl_err_sys(err, SL_E_IO, "sync %s", st->sdir);
    }
    size_t pos;
    find_idx(st, name, len, &pos);
    if (insert(st, s, pos) < 0) {
        sl_strand_close(s);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    if (rec) {
        rec->strands++;
        rec->records += sl_strand_count(s);
        rec->truncations += sr.truncations;
        rec->cut_bytes += sr.cut_bytes;
        rec->idx_rebuilt += sr.idx_rebuilt;
    }
    *out = s;
    return 0;
}

int sl_store_open(struct sl_store **out, const struct sl_store_opts *o,
                  struct sl_store_recovery *rec, struct sl_err *err)
{
    uint64_t t0 = sl_mono_ns();
    struct sl_store_recovery local;
    if (!rec)
        rec = &local;
    memset(rec, 0, sizeof(*rec));
    struct sl_store *st = calloc(1, sizeof(*st));
    if (!st)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    st->lock_fd = -1;
    st->opts = *o;
    snprintf(st->dir, sizeof(st->dir), "%s", o->dir);
    st->opts.dir = st->dir;
    snprintf(st->sdir, sizeof(st->sdir), "%s/strands", st->dir);
    pthread_rwlock_init(&st->lock, NULL);
    int rc;
    char lp[4200];
    snprintf(lp, sizeof(lp), "%s/LOCK", st->dir);
    if (sl_mkdir_p(st->sdir) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "create data directory %s", st->sdir);
        goto fail;
    }
    st->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->lock_fd < 0) {
        rc = sl_err_sys(err, SL_E_IO, "open %s", lp);
        goto fail;
    }
    if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = sl_err_set(err, SL_E_CONFLICT, "data_dir_locked",
                        "data directory %s is in use by another sluice process", st->dir);
        goto fail;
    }
    DIR *d = opendir(st->sdir);
    if (!d) {
        rc = sl_err_sys(err, SL_E_IO, "open %s", st->sdir);
        goto fail;
    }
    struct dirent *e;
    rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (!sl_strand_name_valid(e->d_name, l))
            continue;
        struct sl_strand *s;
        rc = open_strand(st, e->d_name, l, &s, rec, err);
    }
    closedir(d);
    if (rc)
        goto fail;
    struct sl_strand *def;
    if ((rc = sl_store_strand(st, "default", 7, 1, &def, err)))
        goto fail;
    rec->elapsed_ms = (sl_mono_ns() - t0) / 1000000u;
    *out = st;
    return 0;
fail:
    sl_store_close(st);
    return rc;
}

void sl_store_close(struct sl_store *st)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        sl_strand_close(st->strands[i]);
    free(st->strands);
    pthread_rwlock_destroy(&st->lock);
    if (st->lock_fd >= 0)
        close(st->lock_fd);
    free(st);
}

int sl_store_strand(struct sl_store *st, const char *name, size_t len, int create,
                    struct sl_strand **out, struct sl_err *err)
{
    if (!sl_strand_name_valid(name, len))
        return sl_err_set(err, SL_E_INVAL, "invalid_strand",
                          "strand: name must match [a-z0-9][a-z0-9._-]{0,63}");
    size_t pos;
    pthread_rwlock_rdlock(&st->lock);
    int found = find_idx(st, name, len, &pos);
    if (found)
        *out = st->strands[pos];
    pthread_rwlock_unlock(&st->lock);
    if (found)
        return 0;
    if (!create)
        return sl_err_set(err, SL_E_NOTFOUND, "strand_not_found", "strand %.*s does not exist",
                          (int)len, name);
    pthread_rwlock_wrlock(&st->lock);
    int rc = 0;
    if (find_idx(st, name, len, &pos))
        *out = st->strands[pos]; /* another thread created it meanwhile */
    else if ((rc = open_strand(st, name, len, out, NULL, err)) == 0)
        sl_info("created strand %.*s", (int)len, name);
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

int sl_store_find_hash(struct sl_store *st, const uint8_t hash[SL_HASH_LEN], struct sl_strand **out,
                       uint64_t *seq)
{
    int rc = SL_E_NOTFOUND;
    pthread_rwlock_rdlock(&st->lock);
    for (size_t i = 0; i < st->n && rc; i++)
        if (sl_strand_find_hash(st->strands[i], hash, seq) == 0) {
            *out = st->strands[i];
            rc = 0;
        }
    pthread_rwlock_unlock(&st->lock);
    return rc;
}

size_t sl_store_list(struct sl_store *st, struct sl_strand **out, size_t max)
{
    pthread_rwlock_rdlock(&st->lock);
    size_t n = st->n;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = st->strands[i];
    pthread_rwlock_unlock(&st->lock);
    return n;
}
