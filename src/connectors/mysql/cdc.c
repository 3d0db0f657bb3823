/* The mysql-cdc source on the connector contract (include/sluice/connector.h): a binlog client
 * (libmariadb's mariadb_rpl_* API for the transport, binlog.c for the bytes) that emits one strand
 * record per row change, decoded straight into the group's buffer. A group holds whole committed
 * transactions: as many as the server has already sent, up to GROUP_BYTES or GROUP_MS, so that a
 * backlog is appended in few strand commits while a lone transaction goes out at its XID
 * (transactions over CHUNK_BYTES of records go in chunks before it).
 *
 * Resume: every record carries (file, pos, snapshot, row): pos is the start of its transaction's
 * GTID event, row its index in the transaction (struct key). At start the framework hands back
 * the last durable key (read back from the strand after a crash, through position_of); the dump
 * restarts at that transaction's GTID event and every change at or before the key is skipped, so
 * nothing is lost and nothing is written twice. MySQL/MariaDB keep no replication state for us:
 * nothing is acknowledged upstream, durable() only tells the snapshot phase when it is done.
 *
 * Snapshot (MariaDB): START TRANSACTION WITH CONSISTENT SNAPSHOT plus the binlog position of that
 * very snapshot (status binlog_snapshot_file / binlog_snapshot_position, no table locks), then the
 * stream from that position: no row missed or doubled.
 *
 * Threads: start/poll/stop on the connector's worker thread, durable() on the strand's committer.
 */
#include "connectors/mysql/mysql.h"

#include "connectors/cdc_common.h"
#include "connectors/mysql/binlog.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/netpolicy.h"
#include "core/util.h"
#include "engine/meta.h"
#include "formats/json_mp.h"
#include "strand/record.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <mysql.h>
/* after mysql.h, which it needs */
#include <mariadb_rpl.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHUNK_BYTES (8u << 20)    /* a transaction is emitted in groups of at most this */
#define GROUP_BYTES (1u << 20)    /* whole transactions gathered into one group up to this */
#define GROUP_MS 10               /* ... or while the oldest of them waited less than this */
#define SNAP_ROWS 5000            /* rows per group during the snapshot */
#define SNAP_KEY "mysql.snapshot" /* connector state: 1 = snapshot pending, 2 = done */
#define IDLE_POS_MS 200           /* a position with no records is emitted at most this often */
#define FILE_MAX 64
#define ROW_ALL UINT32_MAX /* the key of a whole transaction */
#define GTID_DOMAINS 8     /* replication domains followed by GTID (more: file and position) */
#define GTID_MAX 48        /* "domain-server-seq" */
#define STATE_MAX (GTID_DOMAINS * GTID_MAX)

enum {
    R_OK = SL_CDC_OK,
    R_RETRY = SL_CDC_RETRY,
    R_DOWN = SL_CDC_DOWN,
    R_FATAL = SL_CDC_FATAL,
    R_DONE = SL_CDC_DONE
};
enum { SNAP_INITIAL, SNAP_NEVER, SNAP_ONLY, SNAP_WHEN_NEEDED };
enum { PH_IDLE, PH_SNAPSHOT, PH_SNAP_WAIT, PH_STREAM };

/* The resume key; stream 0 = a snapshot row (sorts before the stream at the same position). */
struct key {
    char file[FILE_MAX];
    uint64_t pos;
    uint8_t stream;
    uint32_t row;
};

/* ---- GTID state ---- */

/* MariaDB's GTID position: the last transaction (server, seq) of each replication domain, as
 * gtid_binlog_pos and @slave_connect_state write it ("0-1-100,1-2-7"). */
struct gtid_state {
    int known, n; /* known: 0 = no GTIDs to follow (MySQL, or more domains than fit) */
    struct {
        uint32_t domain, server;
        uint64_t seq;
    } d[GTID_DOMAINS];
};

struct pending {
    size_t off;
    uint32_t len, flags;
};

struct cdc {
    const char *id;
    const json_t *config;
    struct sl_meta *meta;
    void (*gauge)(void *arg, const char *name, uint64_t value);
    void (*give_up)(void *arg);
    int (*stopped_fn)(void *arg);
    void *arg;
    /* config */
    char host[256], user[128], password[256], db[128], tls[16];
    unsigned port;
    uint32_t server_id;
    char **tables;
    size_t ntables;
    regex_t re;
    int have_re, snap_mode, include_ddl;
    long long hb_ms;
    char strand_name[SL_STRAND_NAME_MAX + 1];
    /* session */
    int phase, ever_connected, streamed_before;
    MYSQL *m, *sql;
    MARIADB_RPL *rpl;
    MARIADB_RPL_EVENT *ev;
    int checksum;
    char file[FILE_MAX];
    char err[600];
    struct sl_emitter *em;
    /* tables seen in TABLE_MAP events */
    struct sl_my_table *maps;
    uint8_t *captured;
    size_t nmaps;
    /* GTIDs (MariaDB): the state after the last transaction read; the one to connect with and
     * the transaction/row to skip up to (from the last position emitted, or the start's) */
    struct gtid_state state;
    char resume_state[STATE_MAX], skip_gtid[GTID_MAX];
    uint32_t skip_row;
    int by_gtid; /* this session started from resume_state */
    /* the transaction being read */
    int in_tx, standalone, tx_replay, tx_has_gtid;
    uint32_t tx_domain, tx_server;
    uint64_t tx_seq;
    char tx_state[STATE_MAX]; /* state before it */
    char tx_file[FILE_MAX], gtid[GTID_MAX];
    uint64_t tx_pos;
    uint32_t tx_row;
    int64_t tx_ts_ms;
    /* the group being gathered: records in data, pend[i] each one's bytes; bound_* = where the
     * last whole transaction in it ends */
    struct sl_buf data, after;
    size_t bound_len, bound_npend;
    uint64_t group_t0_ns;
    struct sl_my_srcenc srcenc; /* the source block of srcenc_t in the transaction tx_gen */
    const struct sl_my_table *srcenc_t;
    uint64_t tx_gen, srcenc_gen;
    struct pending *pend;
    size_t npend, cappend;
    struct sl_emit_rec *recs;
    struct key last; /* key of the last record added */
    struct key key;  /* of the last group emitted (or the resume key): skip up to it */
    uint64_t last_emit_ns;
    /* snapshot */
    MYSQL_RES *snap_tables, *snap_res;
    char snap_file[FILE_MAX];
    uint64_t snap_pos;
    uint32_t snap_row;
    int64_t snap_ts_ms;
    uint64_t snap_total;
    struct key snap_end;
    /* durability: written by durable() (committer thread) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct key durable_key;
};

static int stopped(struct cdc *c)
{
    return c->stopped_fn(c->arg);
}

static void seterr(struct cdc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(struct cdc *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

/* Binlog files are <base>.<number>: compared by number, so .1000000 follows .999999. */
static int file_cmp(const char *a, const char *b)
{
    const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
    if (da && db) {
        unsigned long long na = strtoull(da + 1, NULL, 10), nb = strtoull(db + 1, NULL, 10);
        if (na != nb)
            return na < nb ? -1 : 1;
    }
    return strcmp(a, b);
}

static int key_cmp(const struct key *a, const struct key *b)
{
    if (!a->file[0] || !b->file[0])
        return a->file[0] ? 1 : b->file[0] ? -1 : 0;
    int f = file_cmp(a->file, b->file);
    if (f)
        return f;
    if (a->pos != b->pos)
        return a->pos < b->pos ? -1 : 1;
    if (a->stream != b->stream)
        return a->stream < b->stream ? -1 : 1;
    return a->row == b->row ? 0 : a->row < b->row ? -1 : 1;
}

/* Position bytes: 3, file length, file, pos (8, big-endian), stream, row (4), then the GTID
 * resume: GTID length (1) and the GTID of the key's transaction when the key is inside it, the
 * state length (2) and the MariaDB GTID state to connect with (empty: resume by file and
 * position). Version 2 (before GTIDs) has no GTID part. */
static size_t key_put(uint8_t *p, const struct key *k, const char *gtid, const char *state)
{
    size_t fl = strlen(k->file), n = 0, gl = strlen(gtid), sl = strlen(state);
    p[n++] = 3;
    p[n++] = (uint8_t)fl;
    memcpy(p + n, k->file, fl);
    n += fl;
    for (int i = 0; i < 8; i++)
        p[n++] = (uint8_t)(k->pos >> (56 - 8 * i));
    p[n++] = k->stream;
    for (int i = 0; i < 4; i++)
        p[n++] = (uint8_t)(k->row >> (24 - 8 * i));
    p[n++] = (uint8_t)gl;
    memcpy(p + n, gtid, gl);
    n += gl;
    p[n++] = (uint8_t)(sl >> 8);
    p[n++] = (uint8_t)sl;
    memcpy(p + n, state, sl);
    return n + sl;
}

/* Reads position bytes; gtid and state (GTID_MAX and STATE_MAX bytes, may be NULL) get the GTID
 * part ("" for version 2). */
static int key_get(const void *bytes, size_t len, struct key *k, char *gtid, char *state)
{
    const uint8_t *p = bytes;
    if (gtid)
        gtid[0] = 0;
    if (state)
        state[0] = 0;
    if (!p || len < 2 || (p[0] != 2 && p[0] != 3) || p[1] >= FILE_MAX || len < 2u + p[1] + 13u ||
        (p[0] == 2 && len != 2u + p[1] + 13u))
        return -1;
    if (p[0] == 3) {
        size_t at = 2u + p[1] + 13u;
        size_t gl = at < len ? p[at] : GTID_MAX;
        size_t sat = at + 1 + gl;
        size_t sl = sat + 2 <= len ? (size_t)p[sat] << 8 | p[sat + 1] : STATE_MAX;
        if (gl >= GTID_MAX || sl >= STATE_MAX || sat + 2 + sl != len)
            return -1;
        if (gtid) {
            memcpy(gtid, p + at + 1, gl);
            gtid[gl] = 0;
        }
        if (state) {
            memcpy(state, p + sat + 2, sl);
            state[sl] = 0;
        }
    }
    memset(k, 0, sizeof(*k));
    memcpy(k->file, p + 2, p[1]);
    const uint8_t *q = p + 2 + p[1];
    for (int i = 0; i < 8; i++)
        k->pos = k->pos << 8 | q[i];
    k->stream = q[8];
    k->row = (uint32_t)q[9] << 24 | (uint32_t)q[10] << 16 | (uint32_t)q[11] << 8 | q[12];
    return 0;
}

/* ---- GTID state ---- */

static int state_parse(struct gtid_state *st, const char *s)
{
    memset(st, 0, sizeof(*st));
    while (s && *s) {
        char *e;
        unsigned long long dom = strtoull(s, &e, 10), srv, seq;
        if (*e != '-' || (srv = strtoull(e + 1, &e, 10), *e != '-'))
            return -1;
        seq = strtoull(e + 1, &e, 10);
        if ((*e && *e != ',') || st->n == GTID_DOMAINS || dom > UINT32_MAX || srv > UINT32_MAX)
            return -1;
        st->d[st->n].domain = (uint32_t)dom;
        st->d[st->n].server = (uint32_t)srv;
        st->d[st->n++].seq = seq;
        s = *e ? e + 1 : e;
    }
    st->known = 1;
    return 0;
}

static void state_put(const struct gtid_state *st, char *out, size_t n)
{
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; st->known && i < st->n && k < n; i++)
        k += (size_t)snprintf(out + k, n - k, "%s%u-%u-%llu", i ? "," : "", st->d[i].domain,
                              st->d[i].server, (unsigned long long)st->d[i].seq);
}

/* The transaction (domain, server, seq) is read: the position moves past it. */
static void state_apply(struct gtid_state *st, uint32_t domain, uint32_t server, uint64_t seq)
{
    int i = 0;
    while (i < st->n && st->d[i].domain != domain)
        i++;
    if (i == GTID_DOMAINS) {
        st->known = 0; /* more domains than a position holds: file and position only */
        return;
    }
    st->n += i == st->n;
    st->d[i].domain = domain, st->d[i].server = server, st->d[i].seq = seq;
}

/* ---- meta ---- */

static uint64_t meta_get(struct cdc *c, const char *key)
{
    return sl_cdc_state_get(c->meta, c->id, key);
}

static int meta_set(struct cdc *c, const char *key, uint64_t v)
{
    return sl_cdc_state_set(c->meta, c->id, key, v, c->err, sizeof(c->err));
}

/* ---- config ---- */

static const char *cstr(const json_t *cfg, const char *k, const char *def)
{
    const char *v = json_string_value(json_object_get(cfg, k));
    return v ? v : def;
}

static void load_config(struct cdc *c)
{
    const json_t *cfg = c->config;
    snprintf(c->host, sizeof(c->host), "%s", cstr(cfg, "host", "127.0.0.1"));
    snprintf(c->user, sizeof(c->user), "%s", cstr(cfg, "user", ""));
    snprintf(c->password, sizeof(c->password), "%s", cstr(cfg, "password", ""));
    snprintf(c->db, sizeof(c->db), "%s", cstr(cfg, "database", ""));
    json_t *tls = json_object_get(cfg, "tls");
    snprintf(c->tls, sizeof(c->tls), "%s", cstr(tls, "mode", "prefer"));
    json_t *v = json_object_get(cfg, "port");
    c->port = v ? (unsigned)json_integer_value(v) : 3306;
    c->server_id = (uint32_t)json_integer_value(json_object_get(cfg, "server_id"));
    const char *sm = cstr(cfg, "snapshot_mode", "initial");
    c->snap_mode = !strcmp(sm, "never")          ? SNAP_NEVER
                   : !strcmp(sm, "initial_only") ? SNAP_ONLY
                   : !strcmp(sm, "when_needed")  ? SNAP_WHEN_NEEDED
                                                 : SNAP_INITIAL;
    c->include_ddl = json_is_true(json_object_get(cfg, "include_schema_changes"));
    v = json_object_get(cfg, "heartbeat_interval_ms");
    c->hb_ms = v ? json_integer_value(v) : 1000;
    if (c->hb_ms <= 0)
        c->hb_ms = 1000;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(cfg, "tables"), i, e)
    {
        char **t = realloc(c->tables, (c->ntables + 1) * sizeof(*t));
        if (!t)
            break;
        c->tables = t;
        const char *s = json_string_value(e);
        size_t sz = strlen(s) + strlen(c->db) + 2;
        char *f = malloc(sz);
        if (!f)
            break;
        snprintf(f, sz, "%s%s%s", strchr(s, '.') ? "" : c->db, strchr(s, '.') ? "" : ".", s);
        c->tables[c->ntables++] = f;
    }
    const char *re = cstr(cfg, "table_regex", NULL);
    c->have_re = re && regcomp(&c->re, re, REG_EXTENDED | REG_NOSUB) == 0;
    const char *st = cstr(cfg, "strand", NULL);
    if (st)
        snprintf(c->strand_name, sizeof(c->strand_name), "%s", st);
    else
        sl_mysql_default_strand(cfg, c->strand_name, sizeof(c->strand_name));
}

/* A table is captured when it is in `database` (or named db.table in `tables`), listed in
 * `tables` (globs allowed) if that is set, and matched by table_regex (against "db.table" or
 * "table") if that is set. */
static int captured(const struct cdc *c, const char *db, size_t dblen, const char *tab,
                    size_t tablen)
{
    char full[600], name[300];
    snprintf(full, sizeof(full), "%.*s.%.*s", (int)dblen, db, (int)tablen, tab);
    snprintf(name, sizeof(name), "%.*s", (int)tablen, tab);
    int in_db = strlen(c->db) == dblen && memcmp(c->db, db, dblen) == 0;
    if (c->ntables) {
        int hit = 0;
        for (size_t i = 0; i < c->ntables && !hit; i++)
            hit = fnmatch(c->tables[i], full, 0) == 0;
        if (!hit)
            return 0;
    } else if (!in_db) {
        return 0;
    }
    if (c->have_re && regexec(&c->re, full, 0, NULL, 0) != 0 &&
        regexec(&c->re, name, 0, NULL, 0) != 0)
        return 0;
    return 1;
}

/* ---- connections ---- */

/* mysql_real_connect, in steps (libmariadb's non-blocking API) driven with poll() 250 ms at a
 * time, so that a connector being stopped (the server shutting down) does not wait out a
 * server that does not answer; the library's own timeouts still apply, and limit_s bounds
 * the whole handshake. The connection is used with the blocking API afterwards. */
static int connect_stepwise(struct cdc *c, MYSQL *m, const char *host, unsigned limit_s)
{
    MYSQL *ret = NULL;
    uint64_t until = sl_mono_ns() + (uint64_t)limit_s * 1000000000ull, lib_until = 0;
    int st =
        mysql_options(m, MYSQL_OPT_NONBLOCK, 0) == 0
            ? mysql_real_connect_start(&ret, m, host, c->user, c->password, NULL, c->port, NULL, 0)
            : -1;
    if (st < 0) { /* no non-blocking support: as before */
        ret = mysql_real_connect(m, host, c->user, c->password, NULL, c->port, NULL, 0);
        st = 0;
    }
    while (st) {
        if ((st & MYSQL_WAIT_TIMEOUT) && !lib_until)
            lib_until = sl_mono_ns() + (uint64_t)mysql_get_timeout_value_ms(m) * 1000000u;
        struct pollfd pfd = {.fd = mysql_get_socket(m),
                             .events = (short)((st & MYSQL_WAIT_READ ? POLLIN : 0) |
                                               (st & MYSQL_WAIT_WRITE ? POLLOUT : 0) |
                                               (st & MYSQL_WAIT_EXCEPT ? POLLPRI : 0))};
        int r = pfd.fd >= 0 && pfd.events ? poll(&pfd, 1, 250) : poll(NULL, 0, 10);
        int ready = 0;
        if (r > 0) {
            if (pfd.revents & (POLLIN | POLLERR | POLLHUP))
                ready |= st & MYSQL_WAIT_READ;
            if (pfd.revents & (POLLOUT | POLLERR | POLLHUP))
                ready |= st & MYSQL_WAIT_WRITE;
            if (pfd.revents & POLLPRI)
                ready |= MYSQL_WAIT_EXCEPT;
        } else if (r < 0 && errno != EINTR) {
            seterr(c, "cannot connect to MySQL/MariaDB at %s:%u: poll: %s", c->host, c->port,
                   strerror(errno));
            return -1;
        }
        uint64_t now = sl_mono_ns();
        if (!ready && lib_until && now >= lib_until)
            ready = MYSQL_WAIT_TIMEOUT;
        if (!ready) {
            if (stopped(c)) {
                seterr(c, "cannot connect to MySQL/MariaDB at %s:%u: stopped while connecting",
                       c->host, c->port);
                return -1;
            }
            if (now >= until) {
                seterr(c, "cannot connect to MySQL/MariaDB at %s:%u: no answer within %u s",
                       c->host, c->port, limit_s);
                return -1;
            }
            continue;
        }
        lib_until = 0;
        st = mysql_real_connect_cont(&ret, m, ready);
    }
    if (!ret) {
        seterr(c, "cannot connect to MySQL/MariaDB at %s:%u: %s", c->host, c->port, mysql_error(m));
        return -1;
    }
    return 0;
}

static MYSQL *connect_my(struct cdc *c, unsigned read_timeout)
{
    MYSQL *m = mysql_init(NULL);
    if (!m) {
        seterr(c, "out of memory");
        return NULL;
    }
    unsigned ct = 5;
    mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
    mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &read_timeout);
    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    if (!strcmp(c->tls, "require")) {
        my_bool on = 1, off = 0;
        mysql_optionsv(m, MYSQL_OPT_SSL_ENFORCE, &on);
        mysql_optionsv(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &off);
    }
    /* the outbound policy: a TCP host is resolved and checked here, and its allowed address is
     * what libmariadb connects to ("localhost" is libmariadb's Unix socket: local) */
    char addr[64], why[300];
    const char *host = c->host;
    if (strcmp(host, "localhost") != 0 && host[0] != '/') {
        if (sl_netpolicy_pick(host, addr, sizeof(addr), why, sizeof(why)) < 0) {
            seterr(c, "cannot connect to MySQL/MariaDB at %s:%u: %s", c->host, c->port, why);
            mysql_close(m);
            return NULL;
        }
        host = addr;
    }
    if (connect_stepwise(c, m, host, ct + read_timeout) < 0) {
        mysql_close(m);
        return NULL;
    }
    if (!strcmp(c->tls, "require") && !mysql_get_ssl_cipher(m)) {
        /* the library may fall back to plain text (seen with 3.3 on 127.0.0.1): refuse it */
        seterr(c,
               "tls.mode is require but the connection to %s:%u is not encrypted: the server "
               "has no TLS (have_ssl = DISABLED; give it ssl_cert and ssl_key)",
               c->host, c->port);
        mysql_close(m);
        return NULL;
    }
    return m;
}

/* What a server error means: retry (connection trouble, server going down) or fail (bad
 * credentials, missing privilege, binlog gone). */
static int classify(struct cdc *c, MYSQL *m)
{
    unsigned e = mysql_errno(m);
    if (e == 1045 || e == 1044 || e == 1227 || e == 1236 || e == 1049 || e == 1142)
        return R_FATAL;
    if (e >= 2000 && e < 3000)
        return c->ever_connected || c->streamed_before ? R_DOWN : R_FATAL;
    return R_RETRY;
}

static int query(struct cdc *c, MYSQL *m, const char *sql, const char *what)
{
    if (mysql_query(m, sql) == 0)
        return R_OK;
    seterr(c, "%s: %s", what, mysql_error(m));
    return classify(c, m);
}

/* First row of sql's result, values into out[0..n) (NULL -> ""). */
static int query_row(struct cdc *c, MYSQL *m, const char *sql, char out[][128], int n, int *found)
{
    int rc = query(c, m, sql, sql);
    if (rc != R_OK)
        return rc;
    MYSQL_RES *res = mysql_store_result(m);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    *found = row != NULL && (int)mysql_num_fields(res) >= n;
    for (int i = 0; i < n; i++)
        snprintf(out[i], 128, "%s", *found && row[i] ? row[i] : "");
    mysql_free_result(res);
    return R_OK;
}

/* The server settings row-based CDC needs, each with the way to set it. */
static int check_server(struct cdc *c)
{
    char v[4][128];
    int found, rc;
    if ((rc = query_row(c, c->m, "SELECT @@log_bin, @@binlog_format, @@binlog_row_image", v, 3,
                        &found)) != R_OK)
        return rc;
    if (strcmp(v[0], "1") != 0) {
        seterr(c, "binary logging is off on the server (log_bin = OFF): start it with --log-bin "
                  "(log_bin in the [mysqld] section of its config) and binlog_format = ROW");
        return R_FATAL;
    }
    if (strcasecmp(v[1], "ROW") != 0) {
        seterr(c,
               "binlog_format is %s on the server; CDC needs ROW: SET GLOBAL binlog_format = "
               "'ROW' (and binlog_format = ROW in the server's config file)",
               v[1]);
        return R_FATAL;
    }
    if (strcasecmp(v[2], "FULL") != 0) {
        seterr(c,
               "binlog_row_image is %s on the server; CDC needs FULL: SET GLOBAL "
               "binlog_row_image = 'FULL' (and in the server's config file)",
               v[2]);
        return R_FATAL;
    }
    if ((rc = query_row(c, c->m, "SELECT @@binlog_row_metadata", v, 1, &found)) == R_OK &&
        strcasecmp(v[0], "FULL") != 0) {
        seterr(c,
               "binlog_row_metadata is %s on the server; CDC needs FULL (column names, ENUM/SET "
               "values and charsets in the binlog): SET GLOBAL binlog_row_metadata = 'FULL' "
               "(and in the server's config file)",
               v[0]);
        return R_FATAL;
    }
    return rc == R_OK || rc == R_RETRY ? R_OK : rc; /* a server without the variable: MySQL 5.7 */
}

/* ---- groups ---- */

static void group_reset(struct cdc *c)
{
    sl_buf_reset(&c->data);
    c->npend = c->bound_len = c->bound_npend = 0;
}

/* Adds the record at data[off..len) with key k to the group. */
static int group_add(struct cdc *c, const struct key *k, uint32_t flags, size_t off)
{
    if (c->npend == c->cappend) {
        size_t nc = c->cappend ? c->cappend * 2 : 256;
        struct pending *p = realloc(c->pend, nc * sizeof(*p));
        if (!p)
            return -1;
        c->pend = p;
        struct sl_emit_rec *r = realloc(c->recs, nc * sizeof(*r));
        if (!r)
            return -1;
        c->recs = r;
        c->cappend = nc;
    }
    if (!c->npend)
        c->group_t0_ns = sl_mono_ns();
    c->pend[c->npend++] = (struct pending){off, (uint32_t)(c->data.len - off), flags};
    c->last = *k;
    return c->data.failed ? -1 : 0;
}

/* Emits the group (or, with none, the position k alone). */
static int group_emit(struct cdc *c, const struct key *k)
{
    if (c->data.failed) {
        seterr(c, "out of memory buffering a transaction");
        return -1;
    }
    struct key p = c->npend ? c->last : *k;
    for (size_t i = 0; i < c->npend; i++)
        c->recs[i] = (struct sl_emit_rec){.payload = c->data.data + c->pend[i].off,
                                          .payload_len = c->pend[i].len,
                                          .flags = c->pend[i].flags};
    /* inside a transaction: connect with the state before it and skip up to the row; at its end
     * (or outside the stream): connect with the state after it */
    int inside = p.stream && p.row != ROW_ALL;
    char st[STATE_MAX];
    if (inside)
        snprintf(st, sizeof(st), "%s", c->tx_state);
    else
        state_put(&c->state, st, sizeof(st));
    if (!c->state.known)
        st[0] = 0;
    const char *g = inside && st[0] ? c->gtid : "";
    uint8_t bytes[SL_POSITION_MAX];
    size_t n = c->npend, len = key_put(bytes, &p, g, st);
    int rc = c->em->emit(c->em, c->recs, n, bytes, len);
    group_reset(c);
    c->last_emit_ns = sl_mono_ns();
    if (rc < 0) {
        seterr(c, "strand %s refused %s (%d)", c->strand_name, n ? "a group" : "a position", rc);
        return -1;
    }
    c->key = p;
    snprintf(c->resume_state, sizeof(c->resume_state), "%s", st);
    snprintf(c->skip_gtid, sizeof(c->skip_gtid), "%s", g);
    c->skip_row = p.row;
    return 0;
}

/* Whether the change k of the transaction being read is in the strand already (a restart
 * re-reads the transaction of its position). */
static int in_strand(const struct cdc *c, const struct key *k)
{
    if (!c->tx_replay)
        return 0;
    return c->by_gtid ? k->row <= c->skip_row : key_cmp(k, &c->key) <= 0;
}

/* ---- streaming ---- */

static struct sl_my_table *table_of(struct cdc *c, uint64_t id, int *cap)
{
    for (size_t i = 0; i < c->nmaps; i++)
        if (c->maps[i].id == id) {
            *cap = c->captured[i];
            return &c->maps[i];
        }
    return NULL;
}

static int on_table_map(struct cdc *c, const uint8_t *body, size_t n)
{
    struct sl_my_table t;
    const char *why;
    if (sl_my_table_parse(body, n, &t, &why) < 0) {
        seterr(c, "binlog %s: %s", c->file, why);
        return -1;
    }
    size_t i = 0;
    while (i < c->nmaps && c->maps[i].id != t.id)
        i++;
    if (i == c->nmaps) {
        struct sl_my_table *m = realloc(c->maps, (c->nmaps + 1) * sizeof(*m));
        uint8_t *cp = m ? realloc(c->captured, c->nmaps + 1) : NULL;
        if (m)
            c->maps = m;
        if (!cp) {
            sl_my_table_release(&t);
            seterr(c, "out of memory");
            return -1;
        }
        c->captured = cp;
        c->nmaps++;
    } else {
        sl_my_table_release(&c->maps[i]);
    }
    c->maps[i] = t;
    c->srcenc_t = NULL;
    c->captured[i] = (uint8_t)captured(c, t.db.s, t.db.len, t.table.s, t.table.len);
    return 0;
}

static int on_rows(struct cdc *c, const struct sl_my_header *h, const uint8_t *body, size_t n)
{
    struct sl_my_rows r;
    const char *why;
    if (sl_my_rows_begin(h->type, body, n, &r, &why) < 0) {
        seterr(c, "binlog %s: %s", c->file, why);
        return -1;
    }
    int cap = 0;
    struct sl_my_table *t = table_of(c, r.table_id, &cap);
    if (!t) {
        seterr(c, "binlog %s: rows for table id %llu before its table map", c->file,
               (unsigned long long)r.table_id);
        return -1;
    }
    if (!cap)
        return 0;
    if (!c->in_tx) {
        seterr(c, "binlog %s: row event outside a transaction", c->file);
        return -1;
    }
    if (!t->have_names) {
        seterr(c,
               "binlog %s: table %.*s.%.*s has no column names in the binlog: set "
               "binlog_row_metadata = FULL on the server",
               c->file, (int)t->db.len, t->db.s, (int)t->table.len, t->table.s);
        return -1;
    }
    if (c->srcenc_t != t || c->srcenc_gen != c->tx_gen) { /* once per table and transaction */
        struct sl_my_source src = {.db = t->db,
                                   .table = t->table,
                                   .file = c->tx_file,
                                   .pos = c->tx_pos,
                                   .server_id = h->server_id,
                                   .gtid = c->gtid[0] ? c->gtid : NULL,
                                   .ts_ms = c->tx_ts_ms};
        sl_my_source_encode(&c->srcenc, &src);
        c->srcenc_t = t;
        c->srcenc_gen = c->tx_gen;
    }
    uint64_t now = sl_now_ms();
    for (;;) {
        size_t off = c->data.len;
        int rc = sl_my_change_next(&c->data, &r, t, &c->srcenc, c->tx_row, now, &why);
        if (rc == 0)
            return 0;
        if (rc < 0) {
            seterr(c, "binlog %s at %llu: %s", c->file, (unsigned long long)c->tx_pos,
                   rc == -1 ? why : "out of memory");
            return -1;
        }
        struct key k = {.pos = c->tx_pos, .stream = 1, .row = c->tx_row++};
        memcpy(k.file, c->tx_file, sizeof(k.file));
        if (in_strand(c, &k)) {
            c->data.len = off; /* already in the strand */
            continue;
        }
        if (group_add(c, &k, r.op == 'd' ? SL_FLAG_TOMBSTONE : 0, off) < 0) {
            seterr(c, "out of memory encoding a change");
            return -1;
        }
        if (c->data.len >= CHUNK_BYTES && group_emit(c, &k) < 0)
            return -1;
    }
}

/* The end of a transaction: its records as one group, or its position alone (not more often
 * than IDLE_POS_MS: a restart re-reads what a skipped position covered, and skips it again). */
static void forget_tables(struct cdc *c)
{
    for (size_t i = 0; i < c->nmaps; i++)
        sl_my_table_release(&c->maps[i]);
    c->nmaps = 0;
}

/* Whether the server has sent more than what was read (bytes waiting on the socket): then the
 * group grows by the next transactions instead of being emitted. Bytes libmariadb already holds
 * count as none: the group goes out a little early, which is harmless. */
static int more_waiting(struct cdc *c)
{
    struct pollfd p = {.fd = (int)mysql_get_socket(c->m), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static int on_commit(struct cdc *c)
{
    if (!c->in_tx)
        return 0;
    c->in_tx = 0;
    /* every transaction maps its tables again before its rows: forgetting them here bounds the
     * cache (an ALTER or a FLUSH TABLES gives a table a new id) */
    forget_tables(c);
    if (c->tx_has_gtid)
        state_apply(&c->state, c->tx_domain, c->tx_server, c->tx_seq);
    struct key k = {.pos = c->tx_pos, .stream = 1, .row = ROW_ALL};
    memcpy(k.file, c->tx_file, sizeof(k.file));
    if (c->npend) {
        /* whole transactions are gathered into one group while the server has more to send:
         * one strand commit for many of them (a group is atomic: a restart never finds part of
         * a transaction that fit in one group) */
        c->last = k;
        c->bound_len = c->data.len;
        c->bound_npend = c->npend;
        return 0; /* emitted by stream() before it would wait, or when large or old enough */
    }
    if ((!c->by_gtid && key_cmp(&k, &c->key) <= 0) ||
        sl_mono_ns() - c->last_emit_ns < IDLE_POS_MS * 1000000ull)
        return 0;
    return group_emit(c, &k);
}

/* With include_schema_changes: a DDL statement run in the captured database, or naming it
 * (`db`.t, db.t), becomes a record of its own in the transaction's group. */
static int on_ddl(struct cdc *c, const struct sl_my_header *h, const struct sl_my_query *q)
{
    size_t dl = strlen(c->db);
    int hit = q->db.len == dl && !strncmp(q->db.s, c->db, dl);
    for (size_t i = 0; !hit && dl && i + dl + 1 <= q->sql.len; i++)
        hit = !strncasecmp(q->sql.s + i, c->db, dl) &&
              (q->sql.s[i + dl] == '.' ||
               (q->sql.s[i + dl] == '`' && i + dl + 1 < q->sql.len && q->sql.s[i + dl + 1] == '.'));
    if (!hit)
        return 0;
    struct key k = {.pos = c->tx_pos, .stream = 1, .row = c->tx_row++};
    memcpy(k.file, c->tx_file, sizeof(k.file));
    if (in_strand(c, &k))
        return 0;
    struct sl_my_source src = {.db = {c->db, dl},
                               .table = {"", 0},
                               .file = c->tx_file,
                               .pos = c->tx_pos,
                               .row = k.row,
                               .server_id = h->server_id,
                               .gtid = c->gtid[0] ? c->gtid : NULL,
                               .ts_ms = c->tx_ts_ms};
    size_t off = c->data.len;
    if (sl_my_ddl_mp(&c->data, &q->sql, &src, sl_now_ms()) < 0 || group_add(c, &k, 0, off) < 0) {
        seterr(c, "out of memory encoding a schema change");
        return -1;
    }
    return 0;
}

/* A transaction starts at the event h (its GTID event, or its BEGIN without GTIDs): that event's
 * position is the transaction's resume position. standalone: no XID/COMMIT ends it (DDL). */
static void tx_begin(struct cdc *c, const struct sl_my_header *h, int standalone,
                     const struct sl_my_gtid *g)
{
    c->in_tx = 1;
    c->standalone = standalone;
    snprintf(c->tx_file, sizeof(c->tx_file), "%s", c->file);
    c->tx_pos = h->next_pos - h->event_len;
    c->tx_row = 0;
    c->tx_ts_ms = (int64_t)h->timestamp * 1000;
    c->gtid[0] = 0;
    c->tx_has_gtid = g != NULL;
    if (g) {
        c->tx_domain = g->domain, c->tx_server = h->server_id, c->tx_seq = g->seq;
        snprintf(c->gtid, sizeof(c->gtid), "%u-%u-%llu", g->domain, h->server_id,
                 (unsigned long long)g->seq);
    }
    state_put(&c->state, c->tx_state, sizeof(c->tx_state));
    struct key start = {.pos = c->tx_pos, .stream = 1, .row = 0};
    memcpy(start.file, c->tx_file, sizeof(start.file));
    /* some of it may be in the strand: by GTID, the transaction named by the position (the
     * server sends nothing older); by file and position, any at or before it */
    if (c->by_gtid)
        c->tx_replay = c->skip_gtid[0] && !strcmp(c->gtid, c->skip_gtid);
    else
        c->tx_replay = key_cmp(&start, &c->key) <= 0;
    c->tx_gen++;
    /* what an unfinished transaction (none is expected: the binlog holds committed ones) left
     * after the last whole one goes */
    c->data.len = c->bound_len;
    c->npend = c->bound_npend;
}

/* A heartbeat (the binlog is idle): its position is the end of what the server has read, where
 * the next transaction will start. With nothing being read the position moves there, at most
 * every heartbeat_interval_ms, so an idle connector's position follows the binlog across
 * rotations and the files behind it can be purged. stream 0 sorts before the transaction at that
 * position: a restart from it skips nothing. */
static int on_heartbeat(struct cdc *c, const struct sl_my_header *h, const uint8_t *body, size_t n)
{
    if (c->in_tx || c->npend || !h->next_pos || n == 0 || n >= FILE_MAX ||
        sl_mono_ns() - c->last_emit_ns < (uint64_t)c->hb_ms * 1000000u)
        return 0;
    struct key k = {.pos = h->next_pos, .stream = 0, .row = ROW_ALL};
    memcpy(k.file, body, n);
    int d = key_cmp(&k, &c->key);
    if (d == 0 || (d < 0 && !c->by_gtid)) /* by GTID the last key may be another server's */
        return 0;
    return group_emit(c, &k);
}

static int handle_event(struct cdc *c, const uint8_t *raw, size_t len)
{
    struct sl_my_header h;
    const char *why;
    long body_len = sl_my_event(raw, len, c->checksum, &h, &why);
    if (body_len < 0) {
        seterr(c, "binlog %s: %s", c->file, why);
        return -1;
    }
    const uint8_t *body = raw + SL_MY_HEADER_LEN;
    size_t n = (size_t)body_len;
    switch (h.type) {
    case SL_MY_FORMAT_DESCRIPTION:
        return sl_my_fde_checksum(body, len - SL_MY_HEADER_LEN, &c->checksum, &why);
    case SL_MY_ROTATE: {
        uint64_t pos;
        struct sl_my_str f;
        if (sl_my_rotate(body, n, &pos, &f, &why) < 0 || f.len >= FILE_MAX) {
            seterr(c, "binlog: bad rotate event");
            return -1;
        }
        snprintf(c->file, sizeof(c->file), "%.*s", (int)f.len, f.s);
        return 0;
    }
    case SL_MY_GTID: {
        struct sl_my_gtid g;
        if (sl_my_gtid(body, n, &g, &why) < 0) {
            seterr(c, "binlog %s: %s", c->file, why);
            return -1;
        }
        tx_begin(c, &h, g.flags & 1, &g);
        return 0;
    }
    case SL_MY_MYSQL_GTID:
    case SL_MY_MYSQL_GTID + 1: /* MySQL's GTID / anonymous GTID: a transaction starts */
        tx_begin(c, &h, 0, NULL);
        return 0;
    case SL_MY_QUERY: {
        struct sl_my_query q;
        if (sl_my_query(body, n, &q, &why) < 0) {
            seterr(c, "binlog %s: %s", c->file, why);
            return -1;
        }
        if (q.sql.len == 5 && !strncasecmp(q.sql.s, "BEGIN", 5)) {
            if (!c->in_tx) /* a binlog without GTID events: the transaction starts here */
                tx_begin(c, &h, 0, NULL);
            return 0;
        }
        if (!c->in_tx) /* DDL without a GTID event before it */
            return 0;
        if (c->standalone && c->include_ddl && on_ddl(c, &h, &q) < 0)
            return -1;
        if (c->standalone || (q.sql.len == 6 && !strncasecmp(q.sql.s, "COMMIT", 6)) ||
            (q.sql.len == 8 && !strncasecmp(q.sql.s, "ROLLBACK", 8)))
            return on_commit(c); /* DDL, or a non-transactional engine's commit */
        return 0;
    }
    case SL_MY_TABLE_MAP:
        return on_table_map(c, body, n);
    case SL_MY_WRITE_ROWS_V1:
    case SL_MY_UPDATE_ROWS_V1:
    case SL_MY_DELETE_ROWS_V1:
    case SL_MY_WRITE_ROWS:
    case SL_MY_UPDATE_ROWS:
    case SL_MY_DELETE_ROWS:
        return on_rows(c, &h, body, n);
    case SL_MY_XID:
        return on_commit(c);
    case SL_MY_HEARTBEAT:
        return on_heartbeat(c, &h, body, n);
    default:
        if (h.type >= SL_MY_ROWS_COMPRESSED_FIRST && h.type <= SL_MY_ROWS_COMPRESSED_LAST) {
            seterr(c, "compressed row events (log_bin_compress = ON) are not supported: SET "
                      "GLOBAL log_bin_compress = OFF");
            return -2;
        }
        return 0;
    }
}

/* Between transactions: the whole ones gathered go out as one group unless more is waiting
 * (and the group is still small and young). */
static int flush_group(struct cdc *c)
{
    if (!c->npend || c->in_tx)
        return 0;
    if (c->data.len < GROUP_BYTES && sl_mono_ns() - c->group_t0_ns < GROUP_MS * 1000000ull &&
        more_waiting(c))
        return 0;
    return group_emit(c, &c->last);
}

static int stream(struct cdc *c, int timeout_ms)
{
    uint64_t deadline = sl_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!stopped(c) && sl_mono_ns() < deadline) {
        if (flush_group(c) < 0)
            return R_RETRY;
        MARIADB_RPL_EVENT *ev = mariadb_rpl_fetch(c->rpl, c->ev);
        if (!ev) {
            c->ev = NULL; /* freed by a failed fetch */
            unsigned e = mysql_errno(c->m);
            if (e == 1236 && c->snap_mode == SNAP_WHEN_NEEDED) {
                seterr(c, "the binlog at %s:%llu is gone (%s): taking a new snapshot", c->key.file,
                       (unsigned long long)c->key.pos, mysql_error(c->m));
                memset(&c->key, 0, sizeof(c->key));
                c->resume_state[0] = c->skip_gtid[0] = 0;
                c->streamed_before = 0;
                meta_set(c, SNAP_KEY, 0);
                return R_RETRY;
            }
            if (e == 1236 && c->by_gtid)
                seterr(c,
                       "the server cannot send the binlog from GTID state %s (%s): its binlog "
                       "was purged past it? Delete and recreate the connector (or use "
                       "snapshot_mode when_needed)",
                       c->resume_state, mysql_error(c->m));
            else if (e == 1236)
                seterr(c,
                       "the server cannot send binlog %s from %llu (%s): it was purged? Delete "
                       "and recreate the connector (or use snapshot_mode when_needed)",
                       c->key.file, (unsigned long long)c->key.pos, mysql_error(c->m));
            else if (e == 1227)
                seterr(c,
                       "reading the binlog needs the REPLICATION SLAVE privilege: GRANT "
                       "REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '%s'@'%%' (%s)",
                       c->user, mysql_error(c->m));
            else
                seterr(c, "binlog stream ended: %s",
                       e ? mysql_error(c->m) : "the server closed it");
            return e ? classify(c, c->m) : R_DOWN;
        }
        c->ev = ev;
        if (ev->raw_data_size <= ev->raw_data_ofs)
            continue;
        int rc =
            handle_event(c, ev->raw_data + ev->raw_data_ofs, ev->raw_data_size - ev->raw_data_ofs);
        if (rc == -2)
            return R_FATAL;
        if (rc < 0)
            return R_RETRY;
    }
    return R_OK;
}

/* The GTID state at file:pos (MariaDB's BINLOG_GTID_POS), the one the stream starts from; not
 * known on MySQL or when the server cannot say (then positions carry no GTID state). */
static void load_state(struct cdc *c, MYSQL *m, const char *file, uint64_t pos)
{
    char esc[2 * FILE_MAX + 1], q[3 * FILE_MAX + 64];
    mysql_real_escape_string(m, esc, file, (unsigned long)strlen(file));
    snprintf(q, sizeof(q), "SELECT BINLOG_GTID_POS('%s', %llu)", esc, (unsigned long long)pos);
    memset(&c->state, 0, sizeof(c->state));
    if (mysql_query(m, q) != 0)
        return;
    MYSQL_RES *res = mysql_store_result(m);
    MYSQL_ROW row = res ? mysql_fetch_row(res) : NULL;
    if (row && row[0] && strlen(row[0]) < STATE_MAX)
        state_parse(&c->state, row[0]);
    mysql_free_result(res);
}

/* Starts the dump: from the GTID state of the last position when it has one (MariaDB's
 * @slave_connect_state, the replication protocol's way: the server finds the binlog file and
 * offset itself, so a renamed, purged-then-rotated or failed-over binlog resumes right), else from
 * file:pos. */
static int start_streaming(struct cdc *c, const char *file, uint64_t pos)
{
    char q[STATE_MAX + 64], v[1][128];
    int rc, found;
    struct gtid_state rs;
    c->by_gtid = c->resume_state[0] && state_parse(&rs, c->resume_state) == 0;
    if (c->by_gtid) {
        c->state = rs;
        snprintf(q, sizeof(q), "SET @slave_connect_state = '%s'", c->resume_state);
        if ((rc = query(c, c->m, q, "set up the binlog dump by GTID")) != R_OK ||
            (rc = query(c, c->m,
                        "SET @slave_gtid_strict_mode = 0, @slave_gtid_ignore_duplicates = 0",
                        "set up the binlog dump by GTID")) != R_OK)
            return rc;
    } else {
        load_state(c, c->m, file, pos);
    }
    /* the first event (an artificial ROTATE) comes before the format description that says
     * whether events end with a checksum: take it from the server's setting */
    if ((rc = query_row(c, c->m, "SELECT @@global.binlog_checksum", v, 1, &found)) != R_OK)
        return rc;
    c->checksum = found && strcasecmp(v[0], "NONE") != 0;
    if ((rc = query(c, c->m, "SET @master_binlog_checksum = @@global.binlog_checksum",
                    "set up the binlog dump")) != R_OK ||
        (rc = query(c, c->m, "SET @mariadb_slave_capability = 4", "set up the binlog dump")) !=
            R_OK)
        return rc;
    long long period = c->hb_ms < 250 ? c->hb_ms : 250; /* poll() returns at least this often */
    snprintf(q, sizeof(q), "SET @master_heartbeat_period = %lld", period * 1000000LL);
    if ((rc = query(c, c->m, q, "set up the binlog dump")) != R_OK)
        return rc;
    if (!(c->rpl = mariadb_rpl_init(c->m))) {
        seterr(c, "mariadb_rpl_init: %s", mysql_error(c->m));
        return R_FATAL;
    }
    mariadb_rpl_optionsv(c->rpl, MARIADB_RPL_SERVER_ID, (unsigned int)c->server_id);
    /* by GTID: no file (the server's artificial ROTATE names the one it starts in) */
    mariadb_rpl_optionsv(c->rpl, MARIADB_RPL_FILENAME, c->by_gtid ? "" : file,
                         c->by_gtid ? (size_t)0 : strlen(file));
    mariadb_rpl_optionsv(c->rpl, MARIADB_RPL_START, c->by_gtid ? 4ul : (unsigned long)pos);
    mariadb_rpl_optionsv(c->rpl, MARIADB_RPL_FLAGS, (unsigned int)0);
    if (mariadb_rpl_open(c->rpl)) {
        if (c->by_gtid)
            seterr(c, "binlog dump from GTID state %s: %s", c->resume_state, mysql_error(c->m));
        else
            seterr(c, "binlog dump from %s:%llu: %s", file, (unsigned long long)pos,
                   mysql_error(c->m));
        return classify(c, c->m);
    }
    snprintf(c->file, sizeof(c->file), "%s", file);
    c->phase = PH_STREAM;
    c->in_tx = 0;
    if (c->by_gtid)
        sl_info("connector %s: streaming the binlog from GTID state %s (last position %s:%llu) "
                "into strand %s",
                c->id, c->resume_state, file, (unsigned long long)pos, c->strand_name);
    else {
        char st[STATE_MAX];
        state_put(&c->state, st, sizeof(st));
        sl_info("connector %s: streaming the binlog from %s:%llu (GTID state '%s') into strand %s",
                c->id, file, (unsigned long long)pos, c->state.known ? st : "not followed",
                c->strand_name);
    }
    if (!c->streamed_before) { /* a durable position will say that it has run */
        c->streamed_before = 1;
        /* a first start: everything from here on (sorts before the stream at pos) */
        struct key k = {.pos = pos, .stream = 0, .row = ROW_ALL};
        snprintf(k.file, sizeof(k.file), "%s", file);
        if (!c->key.file[0]) {
            if (group_emit(c, &k) < 0)
                return R_RETRY;
        }
    }
    return R_OK;
}

/* ---- snapshot ---- */

static void gauge(struct cdc *c, const char *name, uint64_t v)
{
    if (c->gauge)
        c->gauge(c->arg, name, v);
}

static int snapshot_begin(struct cdc *c)
{
    int rc, found;
    char v[2][128];
    if (!(c->sql = connect_my(c, 3600)))
        return R_DOWN; /* the replication connection just worked */
    if ((rc = query(c, c->sql, "SET SESSION time_zone = '+00:00'", "snapshot")) != R_OK ||
        (rc = query(c, c->sql, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
                    "snapshot")) != R_OK ||
        (rc = query(c, c->sql, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                    "snapshot")) != R_OK)
        return rc;
    if ((rc = query_row(c, c->sql,
                        "SELECT (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
                        "WHERE VARIABLE_NAME = 'BINLOG_SNAPSHOT_FILE'), (SELECT VARIABLE_VALUE "
                        "FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = "
                        "'BINLOG_SNAPSHOT_POSITION')",
                        v, 2, &found)) != R_OK)
        return rc;
    if (!found || !v[0][0] || strlen(v[0]) >= FILE_MAX) {
        seterr(c, "snapshot: the server gives no binlog_snapshot_file (a consistent snapshot "
                  "with its binlog position needs MariaDB); use snapshot_mode never");
        return R_FATAL;
    }
    snprintf(c->snap_file, sizeof(c->snap_file), "%.*s", FILE_MAX - 1, v[0]);
    c->snap_pos = strtoull(v[1], NULL, 10);
    load_state(c, c->m, c->snap_file, c->snap_pos); /* positions of snapshot rows carry it */
    char esc[300], q[700];
    mysql_real_escape_string(c->sql, esc, c->db, (unsigned long)strlen(c->db));
    snprintf(q, sizeof(q),
             "SELECT table_schema, table_name, COALESCE(table_rows, 0) FROM "
             "information_schema.tables WHERE table_type = 'BASE TABLE' AND table_schema NOT IN "
             "('mysql', 'information_schema', 'performance_schema', 'sys') %s%s%s ORDER BY 1, 2",
             c->ntables ? "" : "AND table_schema = '", c->ntables ? "" : esc,
             c->ntables ? "" : "'");
    if ((rc = query(c, c->sql, q, "snapshot: list tables")) != R_OK)
        return rc;
    c->snap_tables = mysql_store_result(c->sql);
    c->snap_total = 0;
    for (MYSQL_ROW row; c->snap_tables && (row = mysql_fetch_row(c->snap_tables));)
        if (captured(c, row[0], strlen(row[0]), row[1], strlen(row[1])))
            c->snap_total += strtoull(row[2], NULL, 10);
    if (c->snap_tables)
        mysql_data_seek(c->snap_tables, 0);
    c->snap_row = 0;
    c->snap_ts_ms = (int64_t)sl_now_ms();
    gauge(c, "snapshot_rows_estimate", c->snap_total);
    gauge(c, "snapshot_rows_done", 0);
    c->phase = PH_SNAPSHOT;
    sl_info("connector %s: snapshot at binlog %s:%llu (about %llu rows)", c->id, c->snap_file,
            (unsigned long long)c->snap_pos, (unsigned long long)c->snap_total);
    return R_OK;
}

/* A value of the text protocol, typed like the binlog decoder types it. */
static int snap_value(struct sl_buf *b, const MYSQL_FIELD *f, const char *s, unsigned long n)
{
    if (!s)
        return sl_mp_write_nil(b);
    char tmp[72];
    switch (f->type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 64 ? n : 64), s);
        if (f->flags & UNSIGNED_FLAG)
            return sl_mp_write_uint(b, strtoull(tmp, NULL, 10));
        return sl_mp_write_int(b, strtoll(tmp, NULL, 10));
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE:
        snprintf(tmp, sizeof(tmp), "%.*s", (int)(n < 64 ? n : 64), s);
        return sl_mp_write_double(b, strtod(tmp, NULL));
    case MYSQL_TYPE_BIT: {
        uint64_t v = 0;
        for (unsigned long i = 0; i < n && i < 8; i++)
            v = v << 8 | (uint8_t)s[i];
        return sl_mp_write_uint(b, v);
    }
    case MYSQL_TYPE_DATETIME:
    case MYSQL_TYPE_TIMESTAMP:
        return sl_my_datetime_text(b, s, n);
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_GEOMETRY:
        if (f->charsetnr == 63 && !(f->flags & (ENUM_FLAG | SET_FLAG))) {
            struct sl_buf t;
            sl_buf_init(&t, 0);
            int rc = sl_buf_base64(&t, (const uint8_t *)s, n) < 0 || t.failed
                         ? -1
                         : sl_mp_write_str(b, t.data ? (const char *)t.data : "", t.len);
            sl_buf_release(&t);
            return rc;
        }
        return sl_mp_write_str_lossy(b, s, n);
    default: /* DECIMAL, DATE, TIME, ENUM, SET, JSON: the text itself */
        return sl_mp_write_str_lossy(b, s, n);
    }
}

/* One step: opens the next captured table's result, or emits up to SNAP_ROWS of its rows. */
static int snapshot_step(struct cdc *c)
{
    int rc;
    if (!c->snap_res) {
        MYSQL_ROW t;
        while ((t = c->snap_tables ? mysql_fetch_row(c->snap_tables) : NULL) &&
               !captured(c, t[0], strlen(t[0]), t[1], strlen(t[1])))
            ;
        if (!t) { /* every table read */
            query(c, c->sql, "COMMIT", "snapshot");
            mysql_free_result(c->snap_tables);
            c->snap_tables = NULL;
            mysql_close(c->sql);
            c->sql = NULL;
            c->snap_end = (struct key){
                .pos = c->snap_pos, .stream = 0, .row = c->snap_row ? c->snap_row - 1 : 0};
            memcpy(c->snap_end.file, c->snap_file, FILE_MAX);
            c->phase = PH_SNAP_WAIT;
            return R_OK;
        }
        char q[700], *p = q;
        p += snprintf(q, sizeof(q), "SELECT * FROM `");
        for (int k = 0; k < 2; k++) {
            for (const char *s = t[k]; *s && p < q + sizeof(q) - 8; s++) {
                if (*s == '`')
                    *p++ = '`';
                *p++ = *s;
            }
            p += snprintf(p, (size_t)(q + sizeof(q) - p), k ? "`" : "`.`");
        }
        if ((rc = query(c, c->sql, q, "snapshot")) != R_OK)
            return rc;
        if (!(c->snap_res = mysql_use_result(c->sql))) {
            seterr(c, "snapshot: %s", mysql_error(c->sql));
            return classify(c, c->sql);
        }
        return R_OK;
    }
    MYSQL_RES *res = c->snap_res;
    unsigned nf = mysql_num_fields(res);
    MYSQL_FIELD *fields = mysql_fetch_fields(res);
    struct sl_my_source src = {.db = {fields[0].db, strlen(fields[0].db)},
                               .table = {fields[0].org_table, strlen(fields[0].org_table)},
                               .file = c->snap_file,
                               .pos = c->snap_pos,
                               .ts_ms = c->snap_ts_ms,
                               .snapshot = 1};
    MYSQL_ROW row;
    int n = 0;
    while (n < SNAP_ROWS && (row = mysql_fetch_row(res))) {
        unsigned long *lens = mysql_fetch_lengths(res);
        sl_buf_reset(&c->after);
        sl_mp_write_map(&c->after, nf);
        for (unsigned i = 0; i < nf; i++) {
            sl_mp_write_str_lossy(&c->after, fields[i].name, fields[i].name_length);
            snap_value(&c->after, &fields[i], row[i], lens[i]);
        }
        struct key k = {.pos = c->snap_pos, .stream = 0, .row = c->snap_row++};
        memcpy(k.file, c->snap_file, FILE_MAX);
        src.row = k.row;
        size_t off = c->data.len;
        if (c->after.failed ||
            sl_my_envelope_mp(&c->data, 'r', NULL, &c->after, &src, sl_now_ms()) < 0 ||
            group_add(c, &k, 0, off) < 0) {
            seterr(c, "out of memory encoding a snapshot row");
            return R_FATAL;
        }
        n++;
    }
    if (n && group_emit(c, &c->last) < 0)
        return R_RETRY;
    gauge(c, "snapshot_rows_done", c->snap_row);
    if (n < SNAP_ROWS) {
        if (mysql_errno(c->sql)) {
            seterr(c, "snapshot: %s", mysql_error(c->sql));
            return classify(c, c->sql);
        }
        mysql_free_result(res);
        c->snap_res = NULL;
    }
    return R_OK;
}

static int snapshot_wait(struct cdc *c, int timeout_ms)
{
    struct timespec dl;
    sl_cdc_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&c->mu);
    int done = c->snap_row == 0;
    while (!done && !stopped(c)) {
        done = key_cmp(&c->durable_key, &c->snap_end) >= 0;
        if (!done && pthread_cond_timedwait(&c->cv, &c->mu, &dl) != 0)
            break;
    }
    pthread_mutex_unlock(&c->mu);
    if (!done)
        return R_OK;
    if (meta_set(c, SNAP_KEY, 2) != 0)
        return R_RETRY;
    sl_info("connector %s: snapshot of %u rows at %s:%llu is in strand %s", c->id, c->snap_row,
            c->snap_file, (unsigned long long)c->snap_pos, c->strand_name);
    if (c->snap_mode == SNAP_ONLY)
        return R_DONE;
    return start_streaming(c, c->snap_file, c->snap_pos);
}

/* ---- session ---- */

static int session_open(struct cdc *c)
{
    int rc;
    if (!(c->m = connect_my(c, 30)))
        return c->ever_connected || c->streamed_before ? R_DOWN : R_FATAL;
    if ((rc = check_server(c)) != R_OK)
        return rc;
    c->ever_connected = 1;
    uint64_t snap_state = meta_get(c, SNAP_KEY);
    int resume = c->key.file[0] && (c->key.stream || snap_state == 2 || c->snap_mode == SNAP_NEVER);
    if (resume) /* from the transaction of the last durable record (or the snapshot point) */
        return start_streaming(c, c->key.file, c->key.pos);
    int snap = c->snap_mode != SNAP_NEVER;
    if (snap) {
        if (meta_set(c, SNAP_KEY, 1) != 0)
            return R_RETRY;
        return snapshot_begin(c);
    }
    char v[2][128];
    int found;
    if ((rc = query_row(c, c->m, "SHOW MASTER STATUS", v, 2, &found)) != R_OK) {
        if (mysql_errno(c->m) == 1227)
            seterr(c,
                   "SHOW MASTER STATUS needs the REPLICATION CLIENT (BINLOG MONITOR) "
                   "privilege: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '%s'@'%%'",
                   c->user);
        return rc;
    }
    if (!found || strlen(v[0]) >= FILE_MAX) {
        seterr(c, "SHOW MASTER STATUS returned nothing: is binary logging on?");
        return R_FATAL;
    }
    return start_streaming(c, v[0], strtoull(v[1], NULL, 10));
}

static void session_close(struct cdc *c)
{
    if (c->snap_res)
        mysql_free_result(c->snap_res);
    if (c->snap_tables)
        mysql_free_result(c->snap_tables);
    c->snap_res = c->snap_tables = NULL;
    if (c->ev)
        mariadb_free_rpl_event(c->ev);
    c->ev = NULL;
    if (c->rpl)
        mariadb_rpl_close(c->rpl);
    c->rpl = NULL;
    if (c->sql)
        mysql_close(c->sql);
    if (c->m)
        mysql_close(c->m);
    c->sql = c->m = NULL;
    forget_tables(c);
    group_reset(c);
    c->in_tx = 0;
    c->checksum = 0;
    c->phase = PH_IDLE;
}

/* ---- the source contract ---- */

static void cdc_free(struct cdc *c)
{
    if (!c)
        return;
    session_close(c);
    free(c->maps);
    free(c->captured);
    sl_buf_release(&c->data);
    sl_buf_release(&c->srcenc.b);
    sl_buf_release(&c->after);
    free(c->pend);
    free(c->recs);
    for (size_t i = 0; i < c->ntables; i++)
        free(c->tables[i]);
    free(c->tables);
    if (c->have_re)
        regfree(&c->re);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

static int my_start(void **self, const struct sl_source_ctx *ctx, struct sl_err *err)
{
    struct cdc *c = calloc(1, sizeof(*c));
    if (!c)
        return ctx->host->fail(err, "out of memory");
    c->id = ctx->id;
    c->config = ctx->config;
    c->meta = ctx->meta;
    c->gauge = ctx->gauge;
    c->give_up = ctx->give_up;
    c->stopped_fn = ctx->stopped;
    c->arg = ctx->arg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    sl_buf_init(&c->data, 0);
    sl_buf_init(&c->srcenc.b, 0);
    sl_buf_init(&c->after, 0);
    load_config(c);
    if (ctx->position &&
        key_get(ctx->position, ctx->position_len, &c->key, c->skip_gtid, c->resume_state) == 0) {
        c->streamed_before = 1;
        c->skip_row = c->key.row;
    }
    c->durable_key = c->key;
    *self = c;
    return 0;
}

static enum sl_result my_poll(void *self, struct sl_emitter *em, int timeout_ms, char *error,
                              size_t errlen)
{
    struct cdc *c = self;
    c->em = em;
    int rc;
    switch (c->phase) {
    case PH_IDLE:
        rc = c->snap_mode == SNAP_ONLY && meta_get(c, SNAP_KEY) == 2 ? R_DONE : session_open(c);
        break;
    case PH_SNAPSHOT:
        rc = stopped(c) ? R_OK : snapshot_step(c);
        break;
    case PH_SNAP_WAIT:
        rc = snapshot_wait(c, timeout_ms);
        break;
    default:
        rc = stream(c, timeout_ms);
        break;
    }
    if (rc == R_OK)
        return SL_R_OK;
    session_close(c);
    return sl_cdc_result(rc, c->id, c->err, error, errlen, c->give_up, c->arg);
}

static void my_durable(void *self, const void *position, size_t len)
{
    struct cdc *c = self;
    struct key k;
    if (key_get(position, len, &k, NULL, NULL) != 0)
        return;
    pthread_mutex_lock(&c->mu);
    if (key_cmp(&k, &c->durable_key) > 0)
        c->durable_key = k;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

static void my_stop(void *self)
{
    struct cdc *c = self;
    if (!c)
        return;
    if (c->phase == PH_SNAP_WAIT && key_cmp(&c->durable_key, &c->snap_end) >= 0)
        meta_set(c, SNAP_KEY, 2);
    cdc_free(c);
}

static int my_position_of(const uint8_t *payload, size_t len, void *position, size_t *position_len)
{
    struct key k = {0};
    int snap;
    if (sl_my_envelope_position(payload, len, k.file, sizeof(k.file), &k.pos, &k.row, &snap) != 0)
        return -1;
    k.stream = !snap;
    *position_len = key_put(position, &k, "", ""); /* no GTID state in a record: by file */
    return 0;
}

static const struct sl_gauge my_gauges[] = {
    {"snapshot_rows_done", "Rows of the initial snapshot in the strand so far."},
    {"snapshot_rows_estimate", "Estimated rows of the initial snapshot (information_schema)."},
    {NULL, NULL},
};

const struct sl_source_ops sl_mysql_source_ops = {.start = my_start,
                                                  .poll = my_poll,
                                                  .durable = my_durable,
                                                  .stop = my_stop,
                                                  .position_of = my_position_of,
                                                  .gauges = my_gauges};

void sl_mysql_default_strand(const json_t *cfg, char *out, size_t n)
{
    const char *db = json_string_value(json_object_get(cfg, "database"));
    size_t k = (size_t)snprintf(out, n, "cdc.");
    for (const char *p = db ? db : "mysql"; *p && k + 1 < n && k < SL_STRAND_NAME_MAX; p++) {
        char ch = (char)tolower((unsigned char)*p);
        out[k++] = (isalnum((unsigned char)ch) || ch == '.' || ch == '-' || ch == '_') ? ch : '_';
    }
    out[k] = 0;
}
