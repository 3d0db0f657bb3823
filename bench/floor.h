/* What the floor benchmarks (bench/strand_floor.c, mysql_floor.c, framework_floor.c) share: clocks,
 * and appending prepared groups to a strand all at once and waiting for every one. Header-only:
 * each floor is one program. */
#ifndef SL_BENCH_FLOOR_H
#define SL_BENCH_FLOOR_H

#include "strand/strand.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

static inline uint64_t floor_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline double floor_cpu_s(void) /* user + system of the whole process */
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static pthread_mutex_t floor_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t floor_cv = PTHREAD_COND_INITIALIZER;
static size_t floor_done;
static int floor_failed;

static inline void floor_on_done(struct sl_append *a)
{
    pthread_mutex_lock(&floor_mu);
    floor_done++;
    floor_failed |= a->status != 0;
    pthread_cond_signal(&floor_cv);
    pthread_mutex_unlock(&floor_mu);
}

/* Submits apps[0..n) (their done set here) and waits for all. Returns 0, or -1 when a submit or
 * an append failed. */
static inline int floor_submit_all(struct sl_strand *s, struct sl_append *apps, size_t n)
{
    struct sl_err err = {0};
    floor_done = 0;
    floor_failed = 0;
    for (size_t i = 0; i < n; i++) {
        apps[i].done = floor_on_done;
        if (sl_strand_submit(s, &apps[i], &err) != 0) {
            fprintf(stderr, "submit: %s\n", err.msg);
            return -1;
        }
    }
    pthread_mutex_lock(&floor_mu);
    while (floor_done < n)
        pthread_cond_wait(&floor_cv, &floor_mu);
    pthread_mutex_unlock(&floor_mu);
    return floor_failed ? -1 : 0;
}

#endif
