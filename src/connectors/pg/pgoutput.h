/* pgoutput decoder: the bytes of one logical replication message (the payload of an XLogData
 * 'w' message, protocol version 1) -> one event. Pure: no I/O, no allocation in sl_pgo_parse;
 * every pointer in an event borrows from the input. The relation cache keeps what Relation
 * messages announce (column names, type OIDs, key flags), because Insert/Update/Delete only
 * carry a relation id. Spec: PostgreSQL docs, "Logical Replication Message Formats".
 * Threads: a decoder and its cache belong to one thread (the connector's worker). */
#ifndef SL_CONNECTORS_PG_PGOUTPUT_H
#define SL_CONNECTORS_PG_PGOUTPUT_H

#include <stddef.h>
#include <stdint.h>

#define SL_PGO_MAX_COLS 1664 /* PostgreSQL's MaxTupleAttributeNumber */

enum sl_pgo_type {
    SL_PGO_BEGIN = 'B',
    SL_PGO_COMMIT = 'C',
    SL_PGO_ORIGIN = 'O',
    SL_PGO_RELATION = 'R',
    SL_PGO_TYPE = 'Y',
    SL_PGO_INSERT = 'I',
    SL_PGO_UPDATE = 'U',
    SL_PGO_DELETE = 'D',
    SL_PGO_TRUNCATE = 'T',
    SL_PGO_MESSAGE = 'M',
};

/* One column of a TupleData: kind 'n' (NULL), 'u' (unchanged TOASTed value, not sent),
 * 't' (text), 'b' (binary). */
struct sl_pgo_col {
    char kind;
    uint32_t len;
    const char *val;
};

struct sl_pgo_tuple {
    uint16_t ncols;
    struct sl_pgo_col *cols; /* points into the event's storage */
};

struct sl_pgo_str {
    const char *s; /* NUL-terminated inside the input */
    size_t len;
};

struct sl_pgo_relcol {
    uint8_t flags; /* 1 = part of the replica identity key */
    struct sl_pgo_str name;
    uint32_t type_oid;
    int32_t typmod;
};

struct sl_pgo_event {
    enum sl_pgo_type type;
    union {
        struct {
            uint64_t final_lsn;
            int64_t commit_ts_us; /* microseconds since 2000-01-01 UTC */
            uint32_t xid;
        } begin;
        struct {
            uint8_t flags;
            uint64_t commit_lsn, end_lsn;
            int64_t commit_ts_us;
        } commit;
        struct {
            uint64_t lsn;
            struct sl_pgo_str name;
        } origin;
        struct {
            uint32_t relid;
            struct sl_pgo_str nspname, relname;
            uint8_t replident; /* 'd' default, 'n' nothing, 'f' full, 'i' index */
            uint16_t ncols;
            const uint8_t *cols_at, *cols_end; /* walk with sl_pgo_relcol_next */
        } relation;
        struct {
            uint32_t oid;
            struct sl_pgo_str nspname, typname;
        } typ;
        struct {
            uint32_t relid;
            char old_kind; /* 0, 'K' (key columns only) or 'O' (whole old row) */
            struct sl_pgo_tuple old_tup, new_tup;
        } change; /* insert (old_kind 0), update, delete (new_tup.ncols 0) */
        struct {
            uint32_t nrels;
            uint8_t options;          /* 1 CASCADE, 2 RESTART IDENTITY */
            const uint8_t *relids_at; /* nrels big-endian u32 */
        } truncate;
    } u;
    /* storage for the two tuples of a change */
    struct sl_pgo_col old_cols[SL_PGO_MAX_COLS], new_cols[SL_PGO_MAX_COLS];
};

/* Decodes one message. Returns 0, or -1 with *why set (malformed or truncated; the message
 * type is unknown). Bytes after a complete message are an error too. */
int sl_pgo_parse(const uint8_t *p, size_t n, struct sl_pgo_event *ev, const char **why);

/* Reads column i of a relation event (call with i = 0, 1, ...; *at starts at cols_at). Returns
 * 0 or -1 if malformed (already validated by sl_pgo_parse, so -1 is a bug). */
int sl_pgo_relcol_next(const uint8_t **at, const uint8_t *end, struct sl_pgo_relcol *c);
uint32_t sl_pgo_truncate_relid(const struct sl_pgo_event *ev, uint32_t i);

/* ---- relation cache ---- */

struct sl_pgo_relcache_col {
    char *name;
    uint32_t type_oid;
    int key;
};

struct sl_pgo_rel {
    uint32_t relid;
    char *nspname, *relname;
    uint8_t replident;
    uint16_t ncols;
    struct sl_pgo_relcache_col *cols;
    int captured; /* set by the caller (table filter) */
};

struct sl_pgo_relcache {
    struct sl_pgo_rel **v;
    size_t n, cap;
};

void sl_pgo_relcache_init(struct sl_pgo_relcache *rc);
void sl_pgo_relcache_release(struct sl_pgo_relcache *rc);
/* Adds or replaces the relation of a Relation event (a schema change replaces the column map).
 * Returns the cached relation, or NULL when out of memory. */
struct sl_pgo_rel *sl_pgo_relcache_put(struct sl_pgo_relcache *rc, const struct sl_pgo_event *ev);
struct sl_pgo_rel *sl_pgo_relcache_get(struct sl_pgo_relcache *rc, uint32_t relid);

/* LSN text form "X/X" (upper-case hex), as PostgreSQL prints it. */
void sl_pgo_lsn_str(uint64_t lsn, char out[24]);
/* Parses "X/X"; 0 or -1. */
int sl_pgo_lsn_parse(const char *s, uint64_t *lsn);

#endif
