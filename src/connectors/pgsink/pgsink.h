/* The PostgreSQL sink's private parts: the sink's state (pgsink.c) and the encoder that turns a
 * batch of records into a plan of statements with their COPY text (encode.c). Worker thread. */
#ifndef SL_CONNECTORS_PGSINK_H
#define SL_CONNECTORS_PGSINK_H

#include "core/buf.h"
#include "sluice/connector.h"

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#define PS_MAX_COLS 1600 /* PostgreSQL's limit */
#define PS_MAX_PK 64
#define PS_INFLIGHT 64    /* batches taken before the oldest is reported (the framework's most) */
#define PS_TXN_ROWS 32768 /* a transaction holds about this many rows (at least two batches) */

/* How a JSON value becomes a column's text (text_of's rules, by the column's format_type). */
enum ps_ckind { CK_TEXT, CK_JSON, CK_ARRAY, CK_BYTEA, CK_TS };

struct ps_col {
    char *name, *type; /* format_type() */
    size_t len;
    enum ps_ckind kind;
    int pk;
};

/* One statement of a batch's transaction, in record order. */
enum ps_step_kind {
    ST_COPY,   /* several rows with the same columns: COPY (into the table, or the stage + merge) */
    ST_ONE,    /* one row: INSERT ... VALUES with parameters */
    ST_DELETE, /* DELETE ... WHERE pk = parameters */
};

struct ps_step {
    enum ps_step_kind kind;
    size_t names_off;   /* its column list ("a", "b"), NUL-ended, in plan.sql */
    size_t copy_off;    /* its rows as COPY ... FROM STDIN [; the upsert's merge], in plan.sql */
    size_t first, rows; /* records of the batch it covers */
    size_t sql_off, data_off; /* in plan.sql (NUL-ended) and plan.data */
    size_t data_len, nparams; /* COPY text lines; for ST_ONE/ST_DELETE one line of fields */
};

struct ps_plan {
    struct ps_step *steps;
    size_t n, cap;
    struct sl_buf sql, data;
    uint64_t *keys; /* upsert: each row's primary-key hash (0: none), in row order */
    size_t nkeys, cap_keys;
};

/* A set of 64-bit hashes standing for primary keys (0 is never one). */
struct ps_hset {
    uint64_t *t;
    size_t cap, n;
};
void ps_hset_clear(struct ps_hset *h);
void ps_hset_release(struct ps_hset *h);
int ps_hset_has(const struct ps_hset *h, uint64_t k);
/* 1 if k was there already, 0 once added; -1 out of memory. */
int ps_hset_add(struct ps_hset *h, uint64_t k);

/* A batch send() took: its records (copied: a failure is isolated record by record after
 * send() returned), its plan, and its outcome once known. */
struct ps_flight {
    int done;   /* the outcome below is final */
    int in_txn; /* its rows are in the transaction on the wire */
    enum sl_result r;
    char error[256];
    size_t accepted;
    size_t *reject, nrej, cap_reject;
    struct sl_rec *recs;
    size_t n, cap_recs;
    struct sl_buf bytes; /* the payloads recs point into */
    struct ps_plan plan;
    char strand[256];
    uint8_t *stored; /* isolation: which records are stored */
    size_t *map;     /* each record's index in the batch the framework sent */
    size_t n_sent;   /* the framework's batch size */
};

/* Which records of the last batch that was isolated are stored (each in its own transaction).
 * When the framework sends that batch again (after a pipelined failure it sends it again
 * whole; a dead letter is replayed), those are not stored twice: only the others are sent. */
struct ps_memo {
    int valid;
    char strand[256];
    uint64_t first_seq;
    size_t n;
    uint8_t *stored; /* n flags */
    size_t cap;
};

struct pgsink {
    const struct sl_sink_ctx *ctx;
    const char *url, *table;
    int upsert, strict, autocreate;
    char pk[PS_MAX_PK][64];
    size_t npk;
    PGconn *conn;
    struct ps_col cols[PS_MAX_COLS];
    size_t ncols;
    char qtable[300]; /* quoted */
    int staged;       /* the connection has the staging table (upsert) */
    int reloaded;     /* the columns were read again during this batch's encoding */
    /* the batches taken, oldest first (a ring) */
    struct ps_flight fl[PS_INFLIGHT];
    size_t head, count, cap; /* cap: max_inflight, from batch.size and PS_TXN_ROWS */
    /* the transaction on the wire: one query whose COPY takes the rows of each batch that
     * joins it (same columns), then commits */
    int txn, copying, txn_solo;
    size_t txn_n;            /* batches in it */
    struct sl_buf txn_names; /* its COPY's column list */
    struct ps_hset txn_keys; /* upsert: the keys in it (the merge may not touch one twice) */
    size_t solo;             /* batches that get a transaction of their own (finding a bad one) */
    /* the results of what is on the wire, as they come */
    int rfailed;
    char rstate[8], rwhy[512];
    struct ps_memo memo;
    size_t *reject; /* handed to the framework by flush() */
    size_t cap_reject;
    /* scratch: the encoder's, the statements' */
    struct sl_buf line, key, text, json, sqlbuf, pstore;
    const char **params;
    uint16_t sig[PS_MAX_COLS], gsig[PS_MAX_COLS];
    size_t nsig, ngsig;
    uint32_t seen[PS_MAX_COLS], seen_gen;
    struct ps_hset gkeys; /* the keys of the group being gathered */
};

/* encode.c */
void ps_quote_ident(struct sl_buf *b, const char *s, size_t n);
void ps_free_cols(struct pgsink *p);
int ps_load_cols(struct pgsink *p, char *why, size_t n);
int ps_exec(struct pgsink *p, const char *sql, int n, const char *const *vals, char *why,
            size_t whylen, char *sqlstate);
/* Builds the plan of recs[0, n) (cleared first). 0, or -1 with *bad = the record that cannot be
 * turned into SQL and why; -2 when the failure is not a record's (the table cannot be created
 * or its columns read: why and state filled). May run catalog queries (ps_idle() first). */
int ps_encode(struct pgsink *p, const struct sl_rec *recs, size_t n, struct ps_plan *pl,
              size_t *bad, char *why, size_t whylen, char *state);
void ps_plan_release(struct ps_plan *pl);
/* Splits one line of COPY fields into NUL-ended parameter values (NULL for \N), unescaped into
 * store. Returns the number of fields. */
size_t ps_params_of(const char *line, size_t len, struct sl_buf *store, const char **params,
                    size_t max);
/* pgsink.c: makes the connection idle (the transaction on the wire committed and answered, its
 * batches given their outcome), for a catalog query. */
void ps_idle(struct pgsink *p);

#endif
