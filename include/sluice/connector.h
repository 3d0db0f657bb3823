/* The connector contract: what a sink or a source implements, and what the framework does for
 * it. Every connector kind of Sluice, in-tree (src/connectors/<kind>/) or loaded from a shared
 * object (--plugins DIR), is one `struct sl_connector`. This header is also the plugin ABI: it
 * includes nothing of Sluice's internals; change it only together with SL_CONNECTOR_ABI.
 *
 * The framework (src/engine/) owns everything that is the same for every connector: threads,
 * start pinning, durable cursors, batching (size + linger), retries with exponential backoff,
 * full jitter and Retry-After, the circuit breaker, consecutive failures -> "failed", dead
 * letters and their replay, metrics and state. A connector owns its config table, its wire
 * protocol, its encoding and its idempotency keys. It never sleeps to retry on its own: it
 * returns SL_R_RETRY and the framework decides when to call again.
 *
 * Threads: open/send/flush/check/close of one sink instance run on that connector's worker
 * thread, one at a time; so do start/poll/stop of a source. durable() may run on another thread
 * (the strand's committer): keep it short and lock what it shares with poll(). The static parts
 * (fields, normalize, check_config) run on any thread and must be reentrant. */
#ifndef SLUICE_CONNECTOR_H
#define SLUICE_CONNECTOR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Raised whenever a struct below changes layout or meaning; a plugin built for another value is
 * refused at load with a message naming both. */
#define SL_CONNECTOR_ABI 4

struct sl_err;  /* filled through sl_host.fail(); its layout is the host's */
struct sl_meta; /* the host's metadata store: opaque */

/* ---- the config table (one row per field; validates, fills defaults, redacts, documents) ---- */

enum sl_direction { SL_INBOUND, SL_OUTBOUND };

enum sl_ftype {
    SL_F_STRING,
    SL_F_INT,    /* integer within [min, max] */
    SL_F_NUMBER, /* integer or float, > 0 */
    SL_F_BOOL,
    SL_F_ENUM,        /* string among choices */
    SL_F_STRING_LIST, /* array of strings */
    SL_F_OBJECT,      /* nested table in sub */
    SL_F_URL,         /* http:// or https:// URL */
    SL_F_STRAND,      /* a valid strand name */
    SL_F_STRING_MAP,  /* object of string values (HTTP headers) */
};

#define SL_SECRET 1       /* never returned: "***" in answers; "***" sent back keeps it */
#define SL_HAS_PASSWORD 2 /* a connection string: only the password inside is masked */

struct sl_field {
    const char *name;
    enum sl_ftype type;
    int required;
    const char *def; /* default as JSON text; NULL = none (absent stays absent) */
    int secret;      /* 0, SL_SECRET or SL_HAS_PASSWORD */
    const char *help;
    long long min, max;         /* SL_F_INT */
    const char *const *choices; /* SL_F_ENUM, NULL-terminated */
    const struct sl_field *sub; /* SL_F_OBJECT, terminated by a row with a NULL name */
};

/* ---- records and results ---- */

#define SL_REC_HASH_LEN 32
#define SL_REC_TOMBSTONE 2u

/* One strand record as a sink sees it. Every pointer borrows from the strand (read-only
 * memory) and stays valid while the batch is being handled. */
struct sl_rec {
    uint64_t seq, timestamp_ms;
    uint32_t flags; /* SL_REC_TOMBSTONE */
    uint32_t source_len;
    const char *source; /* agent_id or the connector id of an inbound connector; not NUL-ended */
    uint32_t payload_len;
    const uint8_t *payload; /* MessagePack */
    const uint8_t *hash;    /* SL_REC_HASH_LEN bytes: the record_hash */
};

/* Records [first_seq, first_seq + n) of one strand, in seq order. */
struct sl_batch {
    const char *strand;
    const struct sl_rec *recs;
    size_t n;
};

enum sl_result {
    SL_R_OK,            /* every record accepted by the target: the cursor may pass them */
    SL_R_QUEUED,        /* taken, not yet confirmed: flush() confirms (batching sinks) */
    SL_R_RETRY,         /* transient: the framework retries with backoff (records after
                         * outcome.accepted are sent again) */
    SL_R_NOT_CONNECTED, /* the target is unreachable: like RETRY, also counted as an outage */
    SL_R_REJECT,        /* the target refuses for good: dead letters (see sl_outcome) */
    SL_R_FATAL,         /* the connector cannot go on: a sink is restarted (state
                         * "restarting"); a source, see sl_source_ops.poll */
};

/* What a send() tells the framework beyond its result. The framework zeroes it (and sets
 * retry_after_ms to -1) before each call. */
struct sl_outcome {
    size_t accepted;      /* records [0, accepted) are stored for good, whatever the result */
    long retry_after_ms;  /* the target asked to wait (Retry-After); -1 if it did not */
    int status;           /* the target's own status (HTTP status), 0 if none: in dead letters */
    const size_t *reject; /* SL_R_REJECT: indexes of the refused records (sorted), every other
                           * record of the batch being accepted; NULL = every record from
                           * `accepted` on. Owned by the sink until its next call. */
    size_t n_reject;
    uint64_t files, bytes; /* objects written by this call (file-writing sinks' stats) */
    char error[256];       /* why, for last_error and dead letters */
    char excerpt[256];     /* start of the target's answer, for dead letters */
};

/* ---- what the host gives a connector ---- */

struct sl_host {
    uint32_t abi; /* SL_CONNECTOR_ABI of the host */
    /* Fills err (code invalid_config unless told otherwise) and returns a negative code. */
    int (*fail)(struct sl_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
    /* Logs a line prefixed with the connector id; level 0 debug, 1 info, 2 warning, 3 error. */
    void (*log)(const char *id, int level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
    /* Renders a MessagePack payload as JSON text (appended to *out, realloc'ed, NUL-ended;
     * *len updated). 0, or -1 if it is not valid MessagePack. */
    int (*payload_json)(const uint8_t *mp, size_t mp_len, char **out, size_t *len);
    /* Encodes JSON text as MessagePack (malloc'ed). 0, or -1 with err filled. */
    int (*json_payload)(const char *json, size_t len, uint8_t **mp, size_t *mp_len,
                        struct sl_err *err);
    uint64_t (*now_ms)(void); /* wall clock (the fake clock in component tests) */
};

/* ---- sinks ---- */

/* Filled by open(); zero means the default. */
struct sl_sink_info {
    uint64_t batch_max;    /* records per send (default 1) */
    uint64_t linger_ms;    /* hold a partial batch this long after its first record was written */
    unsigned flags;        /* SL_SINK_* */
    unsigned max_inflight; /* > 1: send() may return SL_R_QUEUED for that many batches before
                            * flush() reports the oldest (pipelining; not with stable batches) */
};
/* A batch, once planned, is sent again with exactly the same records after a retry, a restart
 * or a crash (its end is stored before the first attempt): deterministic object names then
 * never put one record in two objects. */
#define SL_SINK_STABLE_BATCHES 1u
/* On server shutdown (not on disable/delete), pending records are sent before stopping,
 * one attempt per batch, within 10 s. */
#define SL_SINK_FLUSH_ON_SHUTDOWN 2u

struct sl_sink_ctx {
    const char *id;       /* the connector's id */
    const json_t *config; /* validated, defaults filled; valid until close() */
    const struct sl_host *host;
    /* Nonzero once a long operation must stop at once (the connector is being disabled, or the
     * shutdown flush ran out of time): poll it in transfers. */
    int (*cancelled)(void *arg);
    void *arg;
};

struct sl_sink_ops {
    int (*open)(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                struct sl_err *err);
    enum sl_result (*send)(void *self, const struct sl_batch *b, struct sl_outcome *out);
    /* Optional: waits for the oldest batch send() returned SL_R_QUEUED for and reports its
     * result (the batches' records need not be kept: send() copies what it sends). */
    enum sl_result (*flush)(void *self, struct sl_outcome *out);
    /* Optional health check before the connector is "running" (a closed port, a missing
     * bucket, a refused login): 0, or a negative code with err saying why. */
    int (*check)(void *self, struct sl_err *err);
    /* Optional: the exact bytes send() would put on the wire for b (malloc'ed), with no I/O. */
    int (*format)(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len);
    void (*close)(void *self);
    /* Optional (pipelining sinks): waits at most timeout_ms for the oldest batch in flight to be
     * answered; 1 if it is (flush() will not block), 0 if not yet. With it, the framework sends
     * records written meanwhile instead of blocking in flush() with free slots. */
    int (*ready)(void *self, int timeout_ms);
};

/* ---- sources ---- */

/* One record a source hands to the framework; bytes are copied by sl_emitter.emit(). */
struct sl_emit_rec {
    const uint8_t *payload; /* MessagePack */
    uint32_t payload_len;
    uint32_t flags;
};

/* The framework's side of a source: emit() appends a group of records to the connector's strand
 * atomically (one commit) and remembers `position` (opaque bytes, at most SL_POSITION_MAX) as
 * where the source is once that group is durable. With n == 0 it only moves the position (a
 * source that advanced without producing records, e.g. a transaction on other tables): durable,
 * and reported to durable(), once every group emitted before it is. It blocks while too much is
 * in flight (back-pressure). 0, or a negative code (the strand failed: return SL_R_RETRY; the
 * framework then restarts the source from its durable position). */
struct sl_emitter {
    int (*emit)(struct sl_emitter *em, const struct sl_emit_rec *recs, size_t n,
                const void *position, size_t position_len);
    void *impl;
};

struct sl_source_ctx {
    const char *id;
    const json_t *config;
    const struct sl_host *host;
    /* Where the last durable group left the source (the position given with it), or NULL and 0
     * on a first start. */
    const void *position;
    size_t position_len;
    int (*stopped)(void *arg); /* nonzero: return from poll() soon */
    void *arg;
    /* Sets this connector's gauge `name` (one of sl_source_ops.gauges; other names are
     * ignored) to value. Any thread. */
    void (*gauge)(void *arg, const char *name, uint64_t value);
    /* Called by poll() just before it returns SL_R_FATAL: the failure is the config's (a host
     * that cannot be reached at the first connection, a refused login, a missing permission),
     * and starting again would fail the same way. Poll's thread. */
    void (*give_up)(void *arg);
    /* The host's metadata store, for state of the connector's own (postgres_cdc: which slot it
     * created): in-tree connectors only, NULL for plugins (as in sl_connector.deleted). */
    struct sl_meta *meta;
};

/* A number a source reports about itself (WAL bytes its replication slot retains): shown as
 * stats.<name> in the connector's JSON and as sluice_connector_<name>{connector,kind} (a gauge)
 * in /metrics, 0 until reported. name: lower-case letters, digits and '_', starting with a
 * letter, at most 48 bytes, not a name of the framework's own families (records_total,
 * lag_records, breaker_open, state); help: one line. */
struct sl_gauge {
    const char *name;
    const char *help;
};

struct sl_source_ops {
    int (*start)(void **self, const struct sl_source_ctx *ctx, struct sl_err *err);
    /* Emits what is available (waiting at most timeout_ms for more) and returns within about
     * timeout_ms. SL_R_OK: call again; SL_R_RETRY / SL_R_NOT_CONNECTED: the framework backs off
     * (1 s doubling to 60 s; state running, error shown as last_error), then calls again;
     * SL_R_REJECT: the source is finished (e.g. max_events reached): "completed".
     * SL_R_FATAL: the connector is restarted (stop, then start again from its durable position)
     * after a backoff of 1 s doubling to 60 s, state "restarting"; after ctx.give_up() in this
     * poll: "failed" with the error, kept until a PATCH or POST /restart. */
    enum sl_result (*poll)(void *self, struct sl_emitter *em, int timeout_ms, char *error,
                           size_t errlen);
    /* Everything emitted up to `position` is fsynced: the ONLY place to acknowledge upstream.
     * Runs on the strand's committer thread, in the order the groups were emitted (a position
     * emitted with no records while nothing is in flight: inside emit(), on poll's thread). A
     * position emitted with no records may be skipped when a group emitted after it is
     * reported: each report covers everything before it. */
    void (*durable)(void *self, const void *position, size_t position_len);
    void (*stop)(void *self);
    /* Optional, for exactly-once: the position a record this source emitted stands for (written
     * into its payload). The stored position is written after fsync and can lag the strand
     * after a crash; at start the framework reads this source's records after it back from the
     * strand, and the last one's position wins. 0, or -1 if the payload carries none. */
    int (*position_of)(const uint8_t *payload, size_t len, void *position, size_t *position_len);
    /* Optional: the gauges this source reports through sl_source_ctx.gauge, ended by a row
     * with a NULL name; at most 8. */
    const struct sl_gauge *gauges;
    /* Optional, with position_of, for a source that writes its whole position only into the
     * last record of a group: a crash inside a group's write can leave the group's first
     * records in the strand without it. At start the framework then takes the position of this
     * source's last record that has one and folds each of its records after it into it, in
     * strand order (into the stored position, which may be empty, when none of the records
     * after it has a whole one). position holds position_len bytes and has room for
     * SL_POSITION_MAX. 0, or -1 if the record cannot be folded (folding stops there). */
    int (*position_fold)(void *position, size_t *position_len, const uint8_t *payload, size_t len);
};

#define SL_POSITION_MAX 512

/* ---- the connector ---- */

struct sl_connector {
    uint32_t abi; /* SL_CONNECTOR_ABI */
    const char *name;
    const char *const *aliases; /* NULL-terminated, or NULL */
    enum sl_direction direction;
    const char *category; /* database, messaging, storage, warehouse, lakehouse, ai, utility */
    const char *description;
    /* Non-NULL: listed in the catalog but cannot be created in this build, and why. */
    const char *unavailable;
    const struct sl_field *fields; /* the connector's own; the framework adds its common ones */
    /* Optional: rewrites other spellings of a config (the seeds' dialects) into the canonical
     * keys of fields; a new object, or NULL with err naming the field as the client spelled it. */
    json_t *(*normalize)(const json_t *config, struct sl_err *err);
    /* Optional: checks across fields of a validated config; may fill in derived defaults. */
    int (*check_config)(json_t *config, struct sl_err *err);
    /* Optional: the connector was deleted; undo what it created on the target (a replication
     * slot). Called after its worker was told to stop; `meta` is the host's metadata store
     * (in-tree connectors only; NULL for plugins). Any thread; may block a few seconds. */
    void (*deleted)(const char *id, const json_t *config, struct sl_meta *meta);
    const struct sl_sink_ops *sink;     /* outbound */
    const struct sl_source_ops *source; /* inbound with a worker of its own */
};

/* A plugin shared object exports this symbol: a NULL-terminated list of its connectors. */
#define SL_PLUGIN_SYMBOL "sluice_connectors"
typedef const struct sl_connector *const *(*sl_plugin_entry_fn)(const struct sl_host *host);

#endif
