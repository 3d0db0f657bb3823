/* bench/spare_stall.c - how long a small commit's fdatasync waits while the next segment's
 * 64 MiB of zeros are written beside it, the way src/strand/segment.c prepares its spare.
 *
 *   cc -O2 -pthread -o spare_stall bench/spare_stall.c
 *   ./spare_stall MODE DIR        (MODE 0: write 64 MiB, then one fdatasync, as first built;
 *                                  1: sync_file_range after each 1 MiB;
 *                                  2: O_DIRECT, 1 MiB per write, as now)
 *
 * One thread writes 4,000 bytes into a pre-zeroed 64 MiB file and calls fdatasync, over and
 * over, for 5 s (a strand's commits); another, after 0.5 s, makes three spares one second apart.
 * Prints the commits' p50 / p99 / p99.9 / max and how many waited more than 5 ms. Run both
 * modes alternately on a quiet machine; the figures are in docs/performance.md. Not part of
 * `make test`. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MIB (1 << 20)

static int g_chunked;
static const char *g_dir;
static volatile int g_stop;
static char g_zero[MIB] __attribute__((aligned(4096)));

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *spares(void *arg)
{
    (void)arg;
    char path[4096];
    snprintf(path, sizeof(path), "%s/spare.dat", g_dir);
    struct timespec half = {0, 500000000}, one = {1, 0};
    nanosleep(&half, NULL);
    for (int r = 0; r < 3 && !g_stop; r++) {
        double t = now_ms();
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | (g_chunked == 2 ? O_DIRECT : 0), 0644);
        if (fd < 0)
            return NULL;
        for (int i = 0; i < 64; i++) {
            if (pwrite(fd, g_zero, MIB, (off_t)i * MIB) != MIB)
                break;
            if (g_chunked == 1)
                sync_file_range(fd, (off_t)i * MIB, MIB,
                                SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                    SYNC_FILE_RANGE_WAIT_AFTER);
        }
        fdatasync(fd);
        close(fd);
        fprintf(stderr, "spare %d: %.0f ms\n", r, now_ms() - t);
        nanosleep(&one, NULL);
    }
    unlink(path);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: spare_stall MODE(0|1|2) DIR\n");
        return 2;
    }
    g_chunked = atoi(argv[1]);
    g_dir = argv[2];
    char path[4096];
    snprintf(path, sizeof(path), "%s/active.dat", g_dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    for (int i = 0; i < 64; i++)
        if (write(fd, g_zero, MIB) != MIB)
            return 1;
    fsync(fd);
    pthread_t th;
    pthread_create(&th, NULL, spares, NULL);
    enum { CAP = 400000 };
    double *lat = malloc(sizeof(*lat) * CAP), t0 = now_ms();
    char rec[4000];
    memset(rec, 'x', sizeof(rec));
    int n = 0;
    while (lat && now_ms() - t0 < 5000 && n < CAP) {
        double t = now_ms();
        off_t off = (off_t)n * (off_t)sizeof(rec) % (64 * MIB - (off_t)sizeof(rec));
        if (pwrite(fd, rec, sizeof(rec), off) != (ssize_t)sizeof(rec) || fdatasync(fd) < 0)
            break;
        lat[n++] = now_ms() - t;
    }
    g_stop = 1;
    pthread_join(th, NULL);
    close(fd);
    unlink(path);
    if (!lat || n == 0)
        return 1;
    qsort(lat, (size_t)n, sizeof(*lat), cmp);
    int over = 0;
    for (int i = 0; i < n; i++)
        over += lat[i] > 5.0;
    printf("chunked=%d commits=%d p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.1f over_5ms=%d\n",
           g_chunked, n, lat[n / 2], lat[n * 99 / 100], lat[n * 999 / 1000], lat[n - 1], over);
    free(lat);
    return 0;
}
