#include "strand/tree.h"

#include "core/crc32c.h"
#include "core/io.h"
#include "core/log.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Stored tree levels: every STEP-th (level 0 is the leaves, in the segments). Tiles need the
 * multiples of 8; the ones in between halve the hashing of a proof (a node is at most 3 levels
 * above a stored one: 7 hashes) for 1/15 of a hash per record of extra writes. */
#define STEP 4
#define NSTORED 16 /* stored levels 4, 8, ..., 60: index level / STEP */
#define STATE_MAGIC "SLTREE02"
#define REPLAY_CHUNK 4096
#define MAP_MIN (1u << 20)

/* A read-only shared mapping of a nodes file. Readers use the newest one that covers what they
 * read; a larger one replaces it when the file has grown past it, and old ones stay mapped until
 * close (their pages are the same page cache, and readers may still hold them). */
struct nmap {
    struct nmap *next;
    const uint8_t *p;
    uint64_t len;
};

struct sl_tree {
    char dir[4200];
    int durable;
    sl_tree_leaves_fn leaves;
    void *lctx;
    int fds[NSTORED];            /* nodes-<level>; -1 until first needed */
    struct sl_buf pend[NSTORED]; /* syncer-private: nodes completed since the last publish */
    uint64_t pend_first[NSTORED];
    struct sl_mt_acc acc;      /* syncer-private */
    struct sl_buf batch;       /* syncer-private: leaves added since the last publish */
    uint64_t size;             /* published, atomic */
    int failed;                /* atomic */
    struct nmap *cur[NSTORED]; /* atomic pointers; all maps on `maps`, under mmu */
    struct nmap *maps;
    pthread_mutex_t mmu;

    uint64_t id;         /* unique in the process: the key of its ranges in merkle.c's cache */
    pthread_mutex_t nmu; /* the cached checkpoint */
    char *note;
    size_t note_len;
    uint64_t note_size, note_at;
};

static int nodes_fd(struct sl_tree *t, unsigned k, int create)
{
    if (t->fds[k] >= 0 || !create)
        return t->fds[k];
    char path[4300];
    snprintf(path, sizeof(path), "%s/nodes-%u", t->dir, k * STEP);
    t->fds[k] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    return t->fds[k];
}

/* A mapping of nodes-<STEP k> covering need bytes (which the file has), or NULL. */
static const struct nmap *map_for(struct sl_tree *t, unsigned k, uint64_t need)
{
    struct nmap *m = __atomic_load_n(&t->cur[k], __ATOMIC_ACQUIRE);
    if (m && m->len >= need)
        return m;
    pthread_mutex_lock(&t->mmu);
    m = t->cur[k];
    if (!m || m->len < need) {
        uint64_t len = need * 2 < MAP_MIN ? MAP_MIN : need * 2;
        int fd = t->fds[k];
        void *p = fd >= 0 ? mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
        struct nmap *n = p != MAP_FAILED ? malloc(sizeof(*n)) : NULL;
        if (n) {
            n->p = p;
            n->len = len;
            n->next = t->maps;
            t->maps = n;
            __atomic_store_n(&t->cur[k], n, __ATOMIC_RELEASE);
        } else if (p != MAP_FAILED) {
            munmap(p, len);
        }
        m = n;
    }
    pthread_mutex_unlock(&t->mmu);
    return m;
}

/* Stored hashes of tree level STEP * k, nodes [first, first + n). Only nodes the tree has
 * published (or, while opening, verified to be in the file) are read. */
static int read_stored(struct sl_tree *t, unsigned k, uint64_t first, uint64_t n,
                       uint8_t out[][SL_HASH_LEN])
{
    if (k == 0)
        return t->leaves(t->lctx, first, n, out);
    const struct nmap *m = k < NSTORED ? map_for(t, k, (first + n) * SL_HASH_LEN) : NULL;
    if (m) { /* a syscall per node costs more than the hashing on a VM */
        memcpy(out, m->p + first * SL_HASH_LEN, n * SL_HASH_LEN);
        return 0;
    }
    int fd = k < NSTORED ? nodes_fd(t, k, 0) : -1;
    if (fd < 0 || sl_pread_all(fd, out, n * SL_HASH_LEN, first * SL_HASH_LEN) < 0)
        return SL_E_IO;
    return 0;
}

static int node(void *ctx, unsigned level, uint64_t index, uint8_t out[SL_HASH_LEN])
{
    struct sl_tree *t = ctx;
    unsigned d = level % STEP; /* levels above the nearest stored one */
    uint64_t cnt = (uint64_t)1 << d;
    uint8_t buf[1u << (STEP - 1)][SL_HASH_LEN];
    int rc = read_stored(t, level / STEP, index << d, cnt, buf);
    if (rc)
        return rc;
    for (; cnt > 1; cnt /= 2)
        sl_node_hash_pairs((const uint8_t(*)[SL_HASH_LEN])buf, cnt / 2, buf);
    memcpy(out, buf[0], SL_HASH_LEN);
    return 0;
}

struct sl_mt_src sl_tree_src(struct sl_tree *t)
{
    struct sl_mt_src s = {.node = node, .ctx = t, .id = t->id};
    return s;
}

/* The tree is not to be trusted until a restart rebuilds it: proofs are refused, it is not
 * saved. Logged once, with why. */
static void set_failed(struct sl_tree *t, const char *why)
{
    if (!__atomic_exchange_n(&t->failed, 1, __ATOMIC_RELAXED))
        sl_error("tree %s: %s; proofs are refused until restart", t->dir, why);
}

static void nodes_failed(struct sl_tree *t, unsigned k)
{
    char why[160];
    snprintf(why, sizeof(why), "cannot write nodes-%u: %s", k * STEP, strerror(errno));
    set_failed(t, why);
}

/* Nodes of a stored level complete in index order: they are gathered and written with one
 * pwrite per level at publish. */
static void on_node(void *ctx, unsigned level, uint64_t index, const uint8_t h[SL_HASH_LEN])
{
    struct sl_tree *t = ctx;
    unsigned k = level / STEP;
    if (level % STEP || k >= NSTORED)
        return;
    if (t->pend[k].len == 0)
        t->pend_first[k] = index;
    if (sl_buf_append(&t->pend[k], h, SL_HASH_LEN) < 0)
        nodes_failed(t, k);
}

static void flush_nodes(struct sl_tree *t)
{
    for (unsigned k = 1; k < NSTORED; k++) {
        if (t->pend[k].len == 0)
            continue;
        int fd = nodes_fd(t, k, 1);
        if (fd < 0 ||
            sl_pwrite_all(fd, t->pend[k].data, t->pend[k].len, t->pend_first[k] * SL_HASH_LEN) < 0)
            nodes_failed(t, k);
        sl_buf_reset(&t->pend[k]);
    }
}

/* The leaves added since the last call go into the tree, level by level (the independent nodes
 * of a level are hashed several at a time). */
void sl_tree_absorb(struct sl_tree *t)
{
    sl_mt_acc_push_many(&t->acc, (uint8_t(*)[SL_HASH_LEN])t->batch.data, t->batch.len / SL_HASH_LEN,
                        on_node, t);
    sl_buf_reset(&t->batch);
}

void sl_tree_add(struct sl_tree *t, const uint8_t leaf[SL_HASH_LEN])
{
    if (sl_buf_append(&t->batch, leaf, SL_HASH_LEN) < 0) { /* out of memory: one by one */
        sl_tree_absorb(t);
        sl_mt_acc_push(&t->acc, leaf, on_node, t);
    }
}

void sl_tree_invalidate(struct sl_tree *t)
{
    set_failed(t, "holds leaves the strand did not publish");
}

void sl_tree_publish(struct sl_tree *t)
{
    sl_tree_absorb(t);
    flush_nodes(t); /* readers may use every node below the size they see */
    __atomic_store_n(&t->size, t->acc.size, __ATOMIC_RELEASE);
}

uint64_t sl_tree_size(struct sl_tree *t)
{
    return __atomic_load_n(&t->size, __ATOMIC_ACQUIRE);
}

int sl_tree_ok(struct sl_tree *t)
{
    return !__atomic_load_n(&t->failed, __ATOMIC_RELAXED);
}

static uint64_t read_state(struct sl_tree *t)
{
    char path[4300];
    snprintf(path, sizeof(path), "%s/state", t->dir);
    uint8_t b[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, b, sizeof(b));
    close(fd);
    if (n != (ssize_t)sizeof(b) || memcmp(b, STATE_MAGIC, 8) != 0 ||
        sl_get_le32(b + 16) != sl_crc32c(0, b, 16))
        return 0;
    return sl_get_le64(b + 8);
}

int sl_tree_save(struct sl_tree *t, struct sl_err *err)
{
    if (!sl_tree_ok(t))
        return sl_err_set(err, SL_E_IO, "io_error", "tree %s: tiles were not written", t->dir);
    sl_tree_absorb(t);
    flush_nodes(t);
    uint64_t size = t->acc.size;
    for (unsigned k = 1; k < NSTORED; k++)
        if (t->fds[k] >= 0 && t->durable && sl_io.fdatasync(t->fds[k]) < 0)
            return sl_err_sys(err, SL_E_IO, "sync %s/nodes-%u", t->dir, k * STEP);
    char path[4300], tmp[4400];
    snprintf(path, sizeof(path), "%s/state", t->dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    uint8_t b[20];
    memcpy(b, STATE_MAGIC, 8);
    sl_put_le64(b + 8, size);
    sl_put_le32(b + 16, sl_crc32c(0, b, 16));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return sl_err_sys(err, SL_E_IO, "create %s", tmp);
    int rc = sl_pwrite_all(fd, b, sizeof(b), 0);
    if (rc == 0 && t->durable)
        rc = sl_io.fdatasync(fd);
    close(fd);
    if (rc < 0 || rename(tmp, path) < 0)
        return sl_err_sys(err, SL_E_IO, "write %s", path);
    return 0;
}

int sl_tree_open(const char *dir, uint64_t count, sl_tree_leaves_fn leaves, void *ctx, int durable,
                 struct sl_tree **out, uint64_t *replayed, struct sl_err *err)
{
    struct sl_tree *t = calloc(1, sizeof(*t));
    if (!t)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    static uint64_t g_ids;
    t->id = __atomic_add_fetch(&g_ids, 1, __ATOMIC_RELAXED);
    snprintf(t->dir, sizeof(t->dir), "%s/tree", dir);
    t->durable = durable;
    t->leaves = leaves;
    t->lctx = ctx;
    pthread_mutex_init(&t->nmu, NULL);
    pthread_mutex_init(&t->mmu, NULL);
    for (unsigned k = 0; k < NSTORED; k++) {
        t->fds[k] = -1;
        sl_buf_init(&t->pend[k], 0);
    }
    sl_buf_init(&t->batch, 0);
    int rc;
    if (sl_mkdir_p(t->dir) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "create %s", t->dir);
        goto fail;
    }
    /* The tiles are trusted up to the saved size; beyond it they are rebuilt from the records
     * (a torn tail may have been cut, or the tiles' last writes lost). */
    uint64_t saved = read_state(t);
    if (saved > count)
        saved = 0; /* the strand is shorter than the tree was: rebuild it all */
    for (unsigned k = 1; k < NSTORED; k++) {
        uint64_t need = saved >> (k * STEP);
        int fd = nodes_fd(t, k, need > 0);
        off_t len = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
        if (len < 0 || (uint64_t)len < need * SL_HASH_LEN) {
            sl_warn("tree %s: nodes-%u is shorter than the saved size; rebuilding the tree", t->dir,
                    k * STEP);
            saved = 0;
            break;
        }
    }
    for (unsigned k = 1; k < NSTORED; k++) {
        uint64_t keep = saved >> (k * STEP);
        if (t->fds[k] >= 0 && ftruncate(t->fds[k], (off_t)(keep * SL_HASH_LEN)) < 0) {
            rc = sl_err_sys(err, SL_E_IO, "truncate %s/nodes-%u", t->dir, k * STEP);
            goto fail;
        }
    }
    struct sl_mt_src src = sl_tree_src(t);
    if ((rc = sl_mt_acc_init(&t->acc, &src, saved)) != 0) {
        rc = sl_err_set(err, rc, "io_error", "tree %s: cannot read the saved tiles", t->dir);
        goto fail;
    }
    uint8_t(*buf)[SL_HASH_LEN] = malloc(REPLAY_CHUNK * SL_HASH_LEN);
    if (!buf) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto fail;
    }
    for (uint64_t lo = saved; lo < count;) {
        uint64_t n = count - lo < REPLAY_CHUNK ? count - lo : REPLAY_CHUNK;
        if ((rc = leaves(ctx, lo, n, buf)) != 0) {
            free(buf);
            rc = sl_err_set(err, rc, "io_error", "tree %s: cannot read leaf %llu", t->dir,
                            (unsigned long long)lo);
            goto fail;
        }
        sl_mt_acc_push_many(&t->acc, buf, n, on_node, t);
        flush_nodes(t);
        lo += n;
    }
    free(buf);
    if (!sl_tree_ok(t)) {
        rc = sl_err_set(err, SL_E_IO, "io_error", "tree %s: cannot write tiles", t->dir);
        goto fail;
    }
    sl_tree_publish(t);
    if (replayed)
        *replayed = count - saved;
    *out = t;
    return 0;
fail:
    sl_tree_close(t);
    return rc;
}

void sl_tree_close(struct sl_tree *t)
{
    if (!t)
        return;
    for (unsigned k = 0; k < NSTORED; k++) {
        if (t->fds[k] >= 0)
            close(t->fds[k]);
        sl_buf_release(&t->pend[k]);
    }
    sl_buf_release(&t->batch);
    for (struct nmap *m = t->maps, *next; m; m = next) {
        next = m->next;
        munmap((void *)m->p, m->len);
        free(m);
    }
    pthread_mutex_destroy(&t->mmu);
    pthread_mutex_destroy(&t->nmu);
    free(t->note);
    free(t);
}

int sl_tree_tile(struct sl_tree *t, unsigned level, uint64_t index, unsigned w, struct sl_buf *out)
{
    if (w == 0 || w > SL_TILE_WIDTH || level * SL_TILE_HEIGHT >= NSTORED * STEP ||
        index > (UINT64_MAX >> SL_TILE_HEIGHT))
        return SL_E_INVAL;
    uint64_t first = index * SL_TILE_WIDTH;
    uint64_t avail = sl_tree_size(t) >> (level * SL_TILE_HEIGHT);
    if (first >= avail || avail - first < w)
        return SL_E_NOTFOUND;
    if (sl_buf_reserve(out, (size_t)w * SL_HASH_LEN) < 0)
        return SL_E_NOMEM;
    int rc = read_stored(t, level * SL_TILE_HEIGHT / STEP, first, w,
                         (uint8_t(*)[SL_HASH_LEN])(out->data + out->len));
    if (rc == 0)
        out->len += (size_t)w * SL_HASH_LEN;
    return rc;
}

int sl_tree_note_get(struct sl_tree *t, struct sl_buf *out, uint64_t *size, uint64_t *at_ms)
{
    int rc = SL_E_NOTFOUND;
    pthread_mutex_lock(&t->nmu);
    if (t->note) {
        rc = sl_buf_append(out, t->note, t->note_len) < 0 ? SL_E_NOMEM : 0;
        *size = t->note_size;
        *at_ms = t->note_at;
    }
    pthread_mutex_unlock(&t->nmu);
    return rc;
}

void sl_tree_note_put(struct sl_tree *t, const char *text, size_t len, uint64_t size,
                      uint64_t at_ms)
{
    char *c = malloc(len + 1);
    if (!c)
        return;
    memcpy(c, text, len);
    c[len] = 0;
    pthread_mutex_lock(&t->nmu);
    if (!t->note || size >= t->note_size) { /* never replace a newer one */
        free(t->note);
        t->note = c;
        t->note_len = len;
        t->note_size = size;
        t->note_at = at_ms;
        c = NULL;
    }
    pthread_mutex_unlock(&t->nmu);
    free(c);
}
