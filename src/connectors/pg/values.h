/* PostgreSQL values (text output format, as pgoutput and libpq deliver them) -> MessagePack, typed
 * by the column's type OID, and the Debezium-style change envelope around a row.
 *
 *   int2/int4/int8/oid/xid -> integer; float4/float8 -> float (NaN, Infinity -> string);
 *   numeric/money -> string (no precision loss); bool -> true/false; json/jsonb -> the JSON
 *   value itself; timestamp -> "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" (read as UTC);
 *   timestamptz -> the same in UTC (the connections run with TimeZone=UTC); bytea -> base64
 *   string; one-dimensional and nested arrays of the types above -> arrays; NULL -> nil;
 *   an unchanged TOASTed value (not sent by PostgreSQL) -> the string SL_PG_TOAST_MARKER;
 *   everything else (text, varchar, uuid, date, time, interval, enums, ...) -> string.
 * Strings that are not valid UTF-8 (only possible in a non-UTF8 database) get U+FFFD.
 * Threads: any; reentrant. */
#ifndef SL_CONNECTORS_PG_VALUES_H
#define SL_CONNECTORS_PG_VALUES_H

#include "connectors/pg/pgoutput.h"
#include "core/buf.h"

#include <stdint.h>

#define SL_PG_TOAST_MARKER "__sluice_unchanged_toast__"

/* Appends the value of text s[0..n) of type oid. 0 or -1 (buffer cap / out of memory). */
int sl_pg_value_mp(struct sl_buf *b, uint32_t oid, const char *s, size_t n);

/* Where a change comes from: the "source" block of the envelope. */
struct sl_pg_source {
    const char *db;
    uint64_t lsn;        /* WAL position of the change (snapshot rows: the slot's start point) */
    uint64_t commit_lsn; /* end of the commit record: the resume position */
    uint32_t tx_index;   /* 0-based position of the change within its transaction */
    uint32_t txid;
    int64_t commit_ts_ms;
    int snapshot;
};

/* Appends {"op","before","after","source":{...},"ts_ms"} for a change of rel. before/after may
 * be NULL (nil). before_key_only: only the key columns of before (a 'K' tuple). */
int sl_pg_envelope_mp(struct sl_buf *b, char op, const struct sl_pgo_rel *rel,
                      const struct sl_pgo_tuple *before, int before_key_only,
                      const struct sl_pgo_tuple *after, const struct sl_pg_source *src,
                      uint64_t ts_ms);

/* Reads source.commit_lsn and source.tx_index back from an envelope (the resume position).
 * 0, or -1 if the payload is not an envelope. */
int sl_pg_envelope_position(const uint8_t *mp, size_t n, uint64_t *commit_lsn, uint32_t *tx_index);

/* PostgreSQL epoch (2000-01-01) microseconds -> Unix milliseconds. */
int64_t sl_pg_ts_to_unix_ms(int64_t pg_us);

#endif
