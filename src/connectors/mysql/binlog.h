/* MySQL / MariaDB binlog event decoder: the bytes of one event (as COM_BINLOG_DUMP sends it,
 * header included) -> its fields, and a ROWS event's row images -> MessagePack maps named and typed
 * by the TABLE_MAP event before it (binlog_row_metadata = FULL gives the column names, signedness,
 * charsets and ENUM/SET values, so the schema at the time of each change travels with it).
 * Pure: no I/O; pointers in results borrow from the input unless said otherwise.
 * Spec: MariaDB's "Replication Protocol" pages and MySQL's binlog event documentation.
 *
 * Values: integers (signed/unsigned, every width), YEAR -> integer; FLOAT/DOUBLE -> float
 * (NaN/inf -> string); DECIMAL -> exact string; BIT -> integer; DATE "YYYY-MM-DD"; TIME
 * "[-]HH:MM:SS[.f]"; DATETIME "YYYY-MM-DDTHH:MM:SS[.f]Z" (read as UTC); TIMESTAMP the same, in UTC
 * (fraction digits = the column's precision); zero dates as MySQL prints them; CHAR/VARCHAR/TEXT
 * -> string (latin1 converted to UTF-8, other charsets taken as UTF-8 with invalid bytes as
 * U+FFFD); BINARY/VARBINARY/BLOB/GEOMETRY -> base64; ENUM/SET -> names (SET: comma-separated);
 * MySQL's binary JSON -> base64 (MariaDB's JSON is text); NULL -> nil.
 * Threads: any; a table is read-only once parsed. */
#ifndef SL_CONNECTORS_MYSQL_BINLOG_H
#define SL_CONNECTORS_MYSQL_BINLOG_H

#include "core/buf.h"

#include <stddef.h>
#include <stdint.h>

#define SL_MY_HEADER_LEN 19
#define SL_MY_MAX_COLS 4096

enum {
    SL_MY_QUERY = 2,
    SL_MY_ROTATE = 4,
    SL_MY_FORMAT_DESCRIPTION = 15,
    SL_MY_XID = 16,
    SL_MY_TABLE_MAP = 19,
    SL_MY_WRITE_ROWS_V1 = 23,
    SL_MY_UPDATE_ROWS_V1 = 24,
    SL_MY_DELETE_ROWS_V1 = 25,
    SL_MY_HEARTBEAT = 27,
    SL_MY_WRITE_ROWS = 30,
    SL_MY_UPDATE_ROWS = 31,
    SL_MY_DELETE_ROWS = 32,
    SL_MY_MYSQL_GTID = 33,
    SL_MY_GTID = 162, /* MariaDB */
    SL_MY_ROWS_COMPRESSED_FIRST = 166,
    SL_MY_ROWS_COMPRESSED_LAST = 171,
};

struct sl_my_header {
    uint32_t timestamp;
    uint8_t type;
    uint32_t server_id;
    uint32_t event_len;
    uint32_t next_pos; /* end of this event in its binlog file */
    uint16_t flags;
};

struct sl_my_str {
    const char *s;
    size_t len;
};

/* Parses the 19-byte header of ev[0..n) and returns the body's length (the event less header and,
 * with checksum, the trailing CRC32, which is verified), or -1 with *why. */
long sl_my_event(const uint8_t *ev, size_t n, int checksum, struct sl_my_header *h,
                 const char **why);

/* Bodies (what follows the header, without the checksum). 0 or -1 with *why. */
int sl_my_fde_checksum(const uint8_t *body, size_t n, int *checksum, const char **why);
int sl_my_rotate(const uint8_t *body, size_t n, uint64_t *pos, struct sl_my_str *file,
                 const char **why);
struct sl_my_gtid {
    uint64_t seq;
    uint32_t domain;
    uint8_t flags; /* 1 = standalone (no XID/COMMIT follows: DDL) */
};
int sl_my_gtid(const uint8_t *body, size_t n, struct sl_my_gtid *g, const char **why);
struct sl_my_query {
    uint32_t thread_id;
    struct sl_my_str db, sql;
};
int sl_my_query(const uint8_t *body, size_t n, struct sl_my_query *q, const char **why);

/* ---- tables ---- */

struct sl_my_col {
    uint8_t type;      /* binlog type (MYSQL_TYPE_*) */
    uint8_t real_type; /* STRING columns: STRING, ENUM or SET */
    uint16_t meta;     /* the type's metadata (length, precision/scale, fsp, ...) */
    uint8_t is_unsigned;
    uint8_t nullable;
    uint16_t charset; /* collation id; 0 = unknown (taken as UTF-8); 63 = binary */
    struct sl_my_str name;
    uint32_t nvals;          /* ENUM/SET: the value names */
    struct sl_my_str *vals;  /* in the table's storage */
    uint8_t key;             /* part of the primary key */
    uint32_t mp_off, mp_len; /* the name as a MessagePack string, in the table's mp_names */
};

struct sl_my_table {
    uint64_t id;
    struct sl_my_str db, table;
    uint32_t ncols;
    int have_names; /* binlog_row_metadata = FULL */
    struct sl_my_col *cols;
    /* storage: one allocation holding the event copy and the arrays */
    void *mem;
    uint8_t *mp_names; /* every column's name encoded once (colN when the binlog has none) */
};

/* Parses a TABLE_MAP body into t (allocating; sl_my_table_release frees). 0 or -1 with *why. */
int sl_my_table_parse(const uint8_t *body, size_t n, struct sl_my_table *t, const char **why);
void sl_my_table_release(struct sl_my_table *t);

/* ---- rows ---- */

struct sl_my_rows {
    char op; /* 'c', 'u', 'd' */
    uint64_t table_id;
    uint16_t flags;
    uint32_t ncols;
    const uint8_t *present, *present_after; /* column bitmaps */
    const uint8_t *at, *end;                /* the row images */
};

/* Reads a ROWS event's body (type: one of the WRITE/UPDATE/DELETE_ROWS codes, v1 or v2) up to its
 * first row. 0 or -1 with *why. */
int sl_my_rows_begin(uint8_t type, const uint8_t *body, size_t n, struct sl_my_rows *r,
                     const char **why);

/* Decodes the next row of r (of table t): appends the before image (UPDATE, DELETE) to before and
 * the after image (WRITE, UPDATE) to after, each as a MessagePack map of column name -> value.
 * 1 if a row was decoded, 0 at the end, -1 with *why (malformed, or the column count does not
 * match the table's), or -2 when a buffer is full / out of memory. */
int sl_my_row_next(struct sl_my_rows *r, const struct sl_my_table *t, struct sl_buf *before,
                   struct sl_buf *after, const char **why);

/* ---- the change envelope (the same shape as postgres_cdc's) ---- */

/* Where a change comes from: the "source" block. (file, pos, snapshot, row) is the resume key:
 * pos is the start of the transaction's GTID event in file (snapshot rows: the binlog position
 * of the snapshot), row the change's 0-based index in its transaction (or in the snapshot). */
struct sl_my_source {
    struct sl_my_str db, table;
    const char *file;
    uint64_t pos;
    uint32_t row;
    uint32_t server_id;
    const char *gtid; /* "domain-server-seq", or NULL */
    int64_t ts_ms;    /* the event's timestamp (commit time, second precision) */
    int snapshot;
};

/* Appends {"op","before","after","source":{...},"ts_ms"}; before/after are MessagePack maps from
 * sl_my_row_next (NULL: nil). 0 or -1. */
int sl_my_envelope_mp(struct sl_buf *b, char op, const struct sl_buf *before,
                      const struct sl_buf *after, const struct sl_my_source *src, uint64_t ts_ms);

/* The "source" block of one table's changes in one transaction, encoded once: b holds the block
 * up to the value of "row" (b.data[0..head)), then the rest. sl_buf_init(&e->b, 0) first. */
struct sl_my_srcenc {
    struct sl_buf b;
    size_t head;
};
void sl_my_source_encode(struct sl_my_srcenc *e, const struct sl_my_source *src);

/* The row path: decodes the next row of r (of table t) straight into b as its whole envelope,
 * the same bytes as sl_my_row_next + sl_my_envelope_mp (src encoded by sl_my_source_encode, row
 * its index). 1 if a row was appended, 0 at the end, -1 with *why (malformed: b is left as it
 * was), -2 when b is full / out of memory. */
int sl_my_change_next(struct sl_buf *b, struct sl_my_rows *r, const struct sl_my_table *t,
                      const struct sl_my_srcenc *src, uint32_t row, uint64_t ts_ms,
                      const char **why);

/* A schema change record (include_schema_changes), Debezium's shape: {"ddl": statement,
 * "databaseName", "source": {... "table": ""}, "ts_ms"}; no "op". 0 or -1. */
int sl_my_ddl_mp(struct sl_buf *b, const struct sl_my_str *sql, const struct sl_my_source *src,
                 uint64_t ts_ms);

/* Reads the resume key back from an envelope (or a schema change record). 0, or -1 if the payload
 * is not one. */
int sl_my_envelope_position(const uint8_t *mp, size_t n, char *file, size_t filecap, uint64_t *pos,
                            uint32_t *row, int *snapshot);

/* Appends the "[-]HH:MM:SS" etc. text forms shared with the snapshot (text protocol) side: a
 * DATETIME/TIMESTAMP text "YYYY-MM-DD HH:MM:SS[.f]" -> "YYYY-MM-DDTHH:MM:SS[.f]Z". */
int sl_my_datetime_text(struct sl_buf *b, const char *s, size_t n);

#endif
