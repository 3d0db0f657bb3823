/* bench/getlat.c - closed-loop latency of GET requests, for bench/proofs.sh.
 *
 * CONNS keep-alive connections, one thread each, each sending one request, reading the whole
 * answer (headers, Content-Length body) and sending the next; every request is timed from just
 * before its send() to the last byte of its answer with CLOCK_MONOTONIC. No scripting runtime
 * and no allocation per request: wrk with a Lua request() function measured the collector's
 * pauses as request latency (GET /v1/health: p99 10.9 ms through request(), 0.36 ms without).
 *
 *   getlat PORT SECONDS CONNS KIND N STRAND
 *     KIND inclusion: GET /v1/strands/STRAND/proof/inclusion?seq=<random < N>&tree_size=N
 *     KIND consistency: GET /v1/strands/STRAND/proof/consistency?from=<random 1..N>&to=N
 *     KIND health: GET /v1/health (the HTTP path's floor)
 *
 * Output: one line "GETLAT requests=.. non2xx=.. duration_us=.. p50_us=.. p90_us=.. p99_us=..
 * p999_us=.. max_us=.." (nearest rank over every request). Exit 1 on a connection error.
 * build: cc -O2 -pthread -o getlat bench/getlat.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int g_port, g_secs;
static const char *g_kind, *g_strand;
static uint64_t g_n;

struct conn {
    pthread_t th;
    unsigned seed;
    uint32_t *lat; /* microseconds */
    size_t nlat, cap;
    uint64_t non2xx;
    int failed;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t rnd(unsigned *seed, uint64_t n) /* 0 <= r < n */
{
    uint64_t r = ((uint64_t)rand_r(seed) << 31) ^ (uint64_t)rand_r(seed);
    return n ? r % n : 0;
}

static int make_request(struct conn *c, char *out, size_t cap)
{
    if (strcmp(g_kind, "health") == 0)
        return snprintf(out, cap, "GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    if (strcmp(g_kind, "consistency") == 0)
        return snprintf(out, cap,
                        "GET /v1/strands/%s/proof/consistency?from=%llu&to=%llu HTTP/1.1\r\n"
                        "Host: 127.0.0.1\r\n\r\n",
                        g_strand, (unsigned long long)(1 + rnd(&c->seed, g_n)),
                        (unsigned long long)g_n);
    return snprintf(out, cap,
                    "GET /v1/strands/%s/proof/inclusion?seq=%llu&tree_size=%llu HTTP/1.1\r\n"
                    "Host: 127.0.0.1\r\n\r\n",
                    g_strand, (unsigned long long)rnd(&c->seed, g_n), (unsigned long long)g_n);
}

/* Reads one answer; returns its status, or -1. */
static int read_answer(int fd, char *buf, size_t cap)
{
    size_t have = 0;
    char *end = NULL;
    while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
        if (have == cap)
            return -1;
        ssize_t k = recv(fd, buf + have, cap - have, 0);
        if (k <= 0)
            return -1;
        have += (size_t)k;
    }
    int status = have > 12 ? atoi(buf + 9) : -1;
    size_t body = 0;
    for (char *p = buf; p < end; p++)
        if ((p == buf || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
            body = strtoull(p + 15, NULL, 10);
    size_t total = (size_t)(end + 4 - buf) + body;
    for (size_t got = have; got < total;) { /* the rest of the body, not kept */
        ssize_t k = recv(fd, buf, total - got < cap ? total - got : cap, 0);
        if (k <= 0)
            return -1;
        got += (size_t)k;
    }
    return status;
}

static void *run(void *arg)
{
    struct conn *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)g_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        c->failed = 1;
        return NULL;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    static __thread char req[512], buf[1 << 16];
    uint64_t stop = now_ns() + (uint64_t)g_secs * 1000000000ull;
    for (uint64_t t0; (t0 = now_ns()) < stop;) {
        int len = make_request(c, req, sizeof(req));
        if (send(fd, req, (size_t)len, MSG_NOSIGNAL) != len) {
            c->failed = 1;
            break;
        }
        int st = read_answer(fd, buf, sizeof(buf));
        if (st < 0) {
            c->failed = 1;
            break;
        }
        if (st < 200 || st > 299)
            c->non2xx++;
        if (c->nlat == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 1 << 16;
            c->lat = realloc(c->lat, c->cap * sizeof(*c->lat));
            if (!c->lat) {
                c->failed = 1;
                break;
            }
        }
        c->lat[c->nlat++] = (uint32_t)((now_ns() - t0) / 1000);
    }
    close(fd);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: getlat PORT SECONDS CONNS inclusion|consistency|health N STRAND\n");
        return 2;
    }
    g_port = atoi(argv[1]);
    g_secs = atoi(argv[2]);
    int conns = atoi(argv[3]);
    g_kind = argv[4];
    g_n = strtoull(argv[5], NULL, 10);
    g_strand = argv[6];
    if (g_port <= 0 || g_secs <= 0 || conns <= 0 || conns > 256 || !g_n) {
        fprintf(stderr, "getlat: bad arguments\n");
        return 2;
    }
    struct conn *cs = calloc((size_t)conns, sizeof(*cs));
    uint64_t t0 = now_ns();
    for (int i = 0; i < conns; i++) {
        cs[i].seed = (unsigned)(i * 7919 + time(NULL));
        pthread_create(&cs[i].th, NULL, run, &cs[i]);
    }
    size_t total = 0;
    uint64_t non2xx = 0;
    int failed = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(cs[i].th, NULL);
        total += cs[i].nlat;
        non2xx += cs[i].non2xx;
        failed |= cs[i].failed;
    }
    uint64_t dur = (now_ns() - t0) / 1000;
    uint32_t *all = malloc((total ? total : 1) * sizeof(*all));
    for (int i = 0, k = 0; i < conns; i++) {
        memcpy(all + k, cs[i].lat, cs[i].nlat * sizeof(*all));
        k += (int)cs[i].nlat;
        free(cs[i].lat);
    }
    qsort(all, total, sizeof(*all), cmp_u32);
#define PCT(p) (total ? all[(size_t)((double)(total - 1) * (p) / 100.0 + 0.5)] : 0)
    printf("GETLAT requests=%zu non2xx=%llu duration_us=%llu p50_us=%u p90_us=%u p99_us=%u "
           "p999_us=%u max_us=%u\n",
           total, (unsigned long long)non2xx, (unsigned long long)dur, PCT(50), PCT(90), PCT(99),
           PCT(99.9), total ? all[total - 1] : 0);
    free(all);
    free(cs);
    return failed ? 1 : 0;
}
