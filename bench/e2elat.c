/* bench/e2elat.c - write -> webhook delivery latency and delivery throughput probe for
 * bench/fanout.sh. Adapted from the in-house harness PERF-ANCHORS C7/C8 used
 * (/work/shared/perf/e2elat.c): same idea, rewritten for the bench.
 *
 * Every record carries "t_ns":<CLOCK_MONOTONIC ns at send> and "s":<unique sequence number>.
 * The sink finds every "t_ns":N,"s":K pair in a delivered body (one event, a JSON array of
 * events, or the raw record when the sender posts to the sink directly) and counts it. The
 * first delivery of K gives a latency sample (now - N); later ones count as duplicates.
 * Sender and sink run in one process, so both read the same CLOCK_MONOTONIC.
 *
 * Modes (every sink binds 127.0.0.1:0 and prints "sink listening on 127.0.0.1:PORT" on stderr):
 *
 *   e2elat run HOST PORT PATH RATE SECONDS CONNS DRAIN_S GO_FILE
 *       Starts a sink, waits until GO_FILE exists (the caller creates the webhooks first), then
 *       POSTs RATE records/s for SECONDS over CONNS keep-alive connections, each connection on
 *       a fixed schedule (open loop: a late send does not move the schedule; lateness is
 *       reported). PORT 0 means "post to the sink itself" (harness floor). Then waits up to
 *       DRAIN_S for every acknowledged record to arrive, and prints one result line.
 *   e2elat count N TIMEOUT_S
 *       Sink that exits when N distinct records (s = 0..N-1) arrived, printing
 *       first/last arrival times (CLOCK_REALTIME ns) so the caller can compute records/s.
 *   e2elat slow DELAY_MS
 *       Sink that answers every request DELAY_MS late (a stalled target). Runs until SIGTERM
 *       and then prints the number of requests and events it received.
 *
 * Output: one line of key=value pairs on stdout. Latencies in microseconds, nearest rank.
 * build: cc -O2 -pthread -o e2elat bench/e2elat.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000LL), (long)(t % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

/* ---------------- shared sink state ---------------- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint8_t *seen;    /* deliveries per seq, saturating at 255 */
static uint64_t max_seq; /* size of seen */
static int64_t *lat;     /* first-delivery latencies, ns */
static uint64_t nlat, cap_lat;
static uint64_t n_events, n_unique, n_dup, n_bad_seq, n_requests, n_bytes;
static int64_t first_real, last_real; /* count mode: first and last arrival of a new record */
static int delay_ms;
static int keep_lat = 1;

static const char *find(const char *p, const char *e, const char *needle, size_t nl)
{
    return p < e ? memmem(p, (size_t)(e - p), needle, nl) : NULL;
}

static int64_t num(const char **pp, const char *e)
{
    const char *p = *pp;
    while (p < e && *p == ' ')
        p++;
    int64_t v = 0;
    while (p < e && *p >= '0' && *p <= '9')
        v = v * 10 + (*p++ - '0');
    *pp = p;
    return v;
}

static void account_body(const char *b, size_t n)
{
    int64_t now = mono_ns(), nowr = real_ns();
    const char *p = b, *e = b + n;
    pthread_mutex_lock(&mu);
    n_requests++;
    n_bytes += n;
    while ((p = find(p, e, "\"t_ns\":", 7)) != NULL) {
        p += 7;
        int64_t t = num(&p, e);
        const char *q = find(p, e, "\"s\":", 4);
        if (!q) {
            n_bad_seq++;
            continue;
        }
        q += 4;
        int64_t s = num(&q, e);
        p = q;
        n_events++;
        if (s < 0 || (uint64_t)s >= max_seq) {
            n_bad_seq++;
            continue;
        }
        if (seen[s]) {
            n_dup++;
            if (seen[s] < 255)
                seen[s]++;
            continue;
        }
        seen[s] = 1;
        n_unique++;
        if (!first_real)
            first_real = nowr;
        last_real = nowr;
        if (keep_lat && t > 0 && nlat < cap_lat)
            lat[nlat++] = now - t;
    }
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* One thread per connection: blocking reads, answers 200 after delay_ms. Webhook workers send
 * one request at a time per connector, so this is never the bottleneck (checked by the floor). */
static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg, one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap + 1);
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    for (;;) {
        if (cap - len < 16384) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
        }
        ssize_t k = read(fd, buf + len, cap - len);
        if (k <= 0)
            break;
        len += (size_t)k;
        buf[len] = 0;
        for (;;) {
            char *he = memmem(buf, len, "\r\n\r\n", 4);
            if (!he)
                break;
            size_t hl = (size_t)(he + 4 - buf), cl = 0;
            char save = *he;
            *he = 0;
            char *h = strcasestr(buf, "\ncontent-length:");
            *he = save;
            if (h)
                cl = strtoul(h + 16, NULL, 10);
            if (len < hl + cl) {
                if (hl + cl > cap) {
                    cap = hl + cl + 16384;
                    buf = realloc(buf, cap + 1);
                }
                break;
            }
            account_body(buf + hl, cl);
            if (delay_ms > 0)
                usleep((useconds_t)delay_ms * 1000);
            if (write(fd, ok, sizeof ok - 1) != (ssize_t)(sizeof ok - 1))
                goto done;
            memmove(buf, buf + hl + cl, len - hl - cl);
            len -= hl + cl;
        }
    }
done:
    close(fd);
    free(buf);
    return NULL;
}

static int sink_port;
static int sink_fd;

static void sink_listen(void)
{
    int one = 1;
    sink_fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(sink_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    socklen_t al = sizeof a;
    if (bind(sink_fd, (void *)&a, sizeof a) || listen(sink_fd, 256) ||
        getsockname(sink_fd, (void *)&a, &al)) {
        perror("sink bind/listen");
        exit(1);
    }
    sink_port = ntohs(a.sin_port);
    fprintf(stderr, "sink listening on 127.0.0.1:%d\n", sink_port);
}

static void *accept_main(void *arg)
{
    (void)arg;
    for (;;) {
        int c = accept(sink_fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&at, 256 * 1024);
        if (pthread_create(&t, &at, conn_main, (void *)(intptr_t)c) != 0)
            close(c);
        pthread_attr_destroy(&at);
    }
}

static void sink_alloc(uint64_t seqs, uint64_t lats)
{
    max_seq = seqs;
    seen = calloc(seqs, 1);
    cap_lat = lats;
    lat = malloc(sizeof(*lat) * (lats ? lats : 1));
    if (!seen || !lat) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
}

/* ---------------- sender ---------------- */
static const char *host, *path;
static int port, conns;
static double rate, secs;
static int64_t t_start;
static uint64_t sent, acked, non2xx, late_1ms, net_err;
static int64_t max_late;
static int64_t *ack_lat; /* send -> 2xx answer of every acknowledged record, under mu */
static uint64_t n_ack_lat, cap_ack_lat;

static void *sender_main(void *arg)
{
    long id = (long)arg;
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(s, (void *)&a, sizeof a)) {
        perror("sender connect");
        exit(1);
    }
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* connection id sends seq id, id+conns, id+2*conns, ... at t_start + seq/rate */
    uint64_t total = (uint64_t)(rate * secs);
    char body[512], req[1024], resp[8192];
    uint64_t my_sent = 0, my_ack = 0, my_bad = 0, my_late = 0, my_err = 0;
    int64_t my_max_late = 0;
    uint64_t cap = total / (uint64_t)conns + 2, nmine = 0;
    int64_t *mine = malloc(sizeof(*mine) * cap);
    for (uint64_t seq = (uint64_t)id; seq < total; seq += (uint64_t)conns) {
        int64_t due = t_start + (int64_t)((double)seq * 1e9 / rate);
        sleep_until(due);
        int64_t now = mono_ns();
        if (now - due > 1000000)
            my_late++;
        if (now - due > my_max_late)
            my_max_late = now - due;
        int bl = snprintf(body, sizeof body,
                          "{\"agent_id\":\"bench\",\"payload\":{\"t_ns\":%lld,\"s\":%llu,"
                          "\"source\":\"bench\",\"level\":\"info\",\"event\":\"page_view\","
                          "\"path\":\"/products/widget-42\",\"session\":\"a1b2c3d4e5f6a7b8\","
                          "\"ok\":true}}",
                          (long long)now, (unsigned long long)seq);
        int rl = snprintf(req, sizeof req,
                          "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\n\r\n%s",
                          path, host, bl, body);
        if (write(s, req, (size_t)rl) != rl) {
            my_err++;
            break;
        }
        my_sent++;
        size_t got = 0;
        ssize_t k = 0;
        char *he = NULL;
        while (!(he = memmem(resp, got, "\r\n\r\n", 4)) &&
               (k = read(s, resp + got, sizeof resp - got - 1)) > 0)
            got += (size_t)k;
        if (!he) {
            my_err++;
            break;
        }
        resp[got] = 0;
        size_t hl = (size_t)(he + 4 - resp), cl = 0;
        char *h = strcasestr(resp, "\ncontent-length:");
        if (h)
            cl = strtoul(h + 16, NULL, 10);
        int ok2 = resp[9] == '2';
        size_t left = hl + cl > got ? hl + cl - got : 0; /* only the status matters */
        while (left > 0 && (k = read(s, resp, left < sizeof resp ? left : sizeof resp)) > 0)
            left -= (size_t)k;
        if (ok2) {
            my_ack++;
            if (mine && nmine < cap)
                mine[nmine++] = mono_ns() - now;
        } else
            my_bad++;
    }
    close(s);
    pthread_mutex_lock(&mu);
    sent += my_sent;
    acked += my_ack;
    non2xx += my_bad;
    late_1ms += my_late;
    net_err += my_err;
    if (my_max_late > max_late)
        max_late = my_max_late;
    if (!ack_lat) {
        cap_ack_lat = (uint64_t)(rate * secs) + 64;
        ack_lat = malloc(sizeof(*ack_lat) * cap_ack_lat);
    }
    for (uint64_t i = 0; ack_lat && i < nmine && n_ack_lat < cap_ack_lat; i++)
        ack_lat[n_ack_lat++] = mine[i];
    pthread_mutex_unlock(&mu);
    free(mine);
    return NULL;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_us(double p)
{
    if (!nlat)
        return 0;
    uint64_t r = (uint64_t)(p / 100.0 * (double)nlat + 0.999999999);
    if (r < 1)
        r = 1;
    if (r > nlat)
        r = nlat;
    return (double)lat[r - 1] / 1e3;
}

/* The same, of the send -> answer times (nearest rank). */
static double ack_pct_us(double p)
{
    if (!n_ack_lat)
        return 0;
    uint64_t r = (uint64_t)(p / 100.0 * (double)n_ack_lat + 0.999999999);
    r = r < 1 ? 1 : r > n_ack_lat ? n_ack_lat : r;
    return (double)ack_lat[r - 1] / 1e3;
}

static int mode_run(int argc, char **argv)
{
    if (argc != 10) {
        fprintf(stderr, "usage: e2elat run HOST PORT PATH RATE SECONDS CONNS DRAIN_S GO_FILE\n");
        return 2;
    }
    host = argv[2];
    port = atoi(argv[3]);
    path = argv[4];
    rate = atof(argv[5]);
    secs = atof(argv[6]);
    conns = atoi(argv[7]);
    double drain = atof(argv[8]);
    const char *go = argv[9];
    if (rate <= 0 || secs <= 0 || conns < 1 || conns > 1000) {
        fprintf(stderr, "bad RATE/SECONDS/CONNS\n");
        return 2;
    }
    uint64_t total = (uint64_t)(rate * secs);
    sink_alloc(total + 1, total + 1);
    sink_listen();
    if (port == 0)
        port = sink_port; /* the harness floor: sender -> sink directly */
    pthread_t at;
    pthread_create(&at, NULL, accept_main, NULL);
    struct stat st;
    while (stat(go, &st) != 0)
        usleep(10000);
    pthread_t *tx = calloc((size_t)conns, sizeof(*tx));
    t_start = mono_ns() + 50000000; /* every connection is open before the first send */
    for (long i = 0; i < conns; i++)
        pthread_create(&tx[i], NULL, sender_main, (void *)i);
    for (int i = 0; i < conns; i++)
        pthread_join(tx[i], NULL);
    double send_s = (double)(mono_ns() - t_start) / 1e9;
    int64_t dl = mono_ns() + (int64_t)(drain * 1e9);
    pthread_mutex_lock(&mu);
    while (n_unique < acked && mono_ns() < dl) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    double drain_s = (double)(mono_ns() - t_start) / 1e9 - send_s;
    /* lat[] is only appended under mu; copy the count and sort outside the sinks' way */
    uint64_t n = nlat;
    pthread_mutex_unlock(&mu);
    nlat = n;
    qsort(lat, nlat, sizeof(*lat), cmp64);
    if (ack_lat)
        qsort(ack_lat, n_ack_lat, sizeof(*ack_lat), cmp64);
    printf("rate=%.0f secs=%.0f conns=%d sent=%llu acked=%llu non2xx=%llu net_err=%llu "
           "send_s=%.3f late_1ms=%llu max_late_ms=%.2f delivered=%llu events=%llu dups=%llu "
           "bad_seq=%llu lost=%lld requests=%llu drain_s=%.3f "
           "p50_us=%.0f p90_us=%.0f p99_us=%.0f p999_us=%.0f max_us=%.0f "
           "ack_p50_us=%.0f ack_p99_us=%.0f\n",
           rate, secs, conns, (unsigned long long)sent, (unsigned long long)acked,
           (unsigned long long)non2xx, (unsigned long long)net_err, send_s,
           (unsigned long long)late_1ms, (double)max_late / 1e6, (unsigned long long)n_unique,
           (unsigned long long)n_events, (unsigned long long)n_dup, (unsigned long long)n_bad_seq,
           (long long)acked - (long long)n_unique, (unsigned long long)n_requests, drain_s,
           pct_us(50), pct_us(90), pct_us(99), pct_us(99.9),
           nlat ? (double)lat[nlat - 1] / 1e3 : 0.0, ack_pct_us(50), ack_pct_us(99));
    fflush(stdout);
    _exit(0); /* sink threads may still be blocked in read() */
}

static int mode_count(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: e2elat count N TIMEOUT_S\n");
        return 2;
    }
    uint64_t want = strtoull(argv[2], NULL, 10);
    double timeout = atof(argv[3]);
    keep_lat = 0;
    sink_alloc(want, 0);
    sink_listen();
    pthread_t at;
    pthread_create(&at, NULL, accept_main, NULL);
    int64_t dl = mono_ns() + (int64_t)(timeout * 1e9);
    pthread_mutex_lock(&mu);
    while (n_unique < want && mono_ns() < dl) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20000000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&cv, &mu, &ts);
    }
    /* let the connection threads answer the last request, so the sender does not count it as
     * failed and retry it (that would show up in its stats, not in these figures) */
    pthread_mutex_unlock(&mu);
    usleep(300000);
    pthread_mutex_lock(&mu);
    printf("want=%llu delivered=%llu events=%llu dups=%llu bad_seq=%llu requests=%llu "
           "bytes=%llu first_real_ns=%lld last_real_ns=%lld complete=%d\n",
           (unsigned long long)want, (unsigned long long)n_unique, (unsigned long long)n_events,
           (unsigned long long)n_dup, (unsigned long long)n_bad_seq, (unsigned long long)n_requests,
           (unsigned long long)n_bytes, (long long)first_real, (long long)last_real,
           n_unique >= want);
    fflush(stdout);
    pthread_mutex_unlock(&mu);
    _exit(0);
}

static volatile sig_atomic_t got_term;
static void on_term(int sig)
{
    (void)sig;
    got_term = 1;
}

static int mode_slow(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: e2elat slow DELAY_MS\n");
        return 2;
    }
    delay_ms = atoi(argv[2]);
    keep_lat = 0;
    sink_alloc(1 << 24, 0);
    struct sigaction sa = {.sa_handler = on_term};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sink_listen();
    pthread_t at;
    pthread_create(&at, NULL, accept_main, NULL);
    while (!got_term)
        pause();
    pthread_mutex_lock(&mu);
    printf("delay_ms=%d requests=%llu events=%llu delivered=%llu dups=%llu\n", delay_ms,
           (unsigned long long)n_requests, (unsigned long long)n_events,
           (unsigned long long)n_unique, (unsigned long long)n_dup);
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc >= 2 && !strcmp(argv[1], "run"))
        return mode_run(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "count"))
        return mode_count(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "slow"))
        return mode_slow(argc, argv);
    fprintf(stderr, "usage: e2elat run|count|slow ... (see the comment at the top of e2elat.c)\n");
    return 2;
}
