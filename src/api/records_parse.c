/* See records_parse.h. */
#include "api/records_parse.h"

#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SOURCE 1024

struct envelope {
    const char *agent;
    uint32_t agent_len;
    const char *strand;
    uint32_t strand_len;
    const uint8_t *payload;
    size_t payload_len;
    uint32_t flags;
    int has_strand;
};

/* Reads one record object {"agent_id"?, "strand"?, "payload", "flags"?} at *p. rec_end, when
 * known, is where the object's MessagePack ends (sl_json_to_mp wrote it alone): a payload that
 * is the object's last value then ends there, without walking it again. On error fills msg
 * (naming the field) and returns -1. */
static int parse_envelope(const uint8_t **p, const uint8_t *end, const uint8_t *rec_end,
                          struct envelope *e, char *msg, size_t msglen)
{
    memset(e, 0, sizeof(*e));
    uint32_t n;
    if (sl_mp_type(*p, end) != SL_MP_MAP || sl_mp_read_map(p, end, &n) < 0) {
        snprintf(msg, msglen, "body: a record must be a JSON object");
        return -1;
    }
    int seen_agent = 0, seen_flags = 0, seen_payload = 0;
    for (uint32_t i = 0; i < n; i++) {
        const char *k;
        uint32_t kl;
        if (sl_mp_read_str(p, end, &k, &kl) < 0) {
            snprintf(msg, msglen, "body: object keys must be strings");
            return -1;
        }
        int t = sl_mp_type(*p, end);
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
        int *seen = KEY("agent_id")  ? &seen_agent
                    : KEY("strand")  ? &e->has_strand
                    : KEY("payload") ? &seen_payload
                    : KEY("flags")   ? &seen_flags
                                     : NULL;
        if (!seen) {
            snprintf(msg, msglen,
                     "%.*s: unknown field (a record has agent_id, strand, payload and flags)",
                     (int)(kl > 64 ? 64 : kl), k);
            return -1;
        }
        if (*seen) {
            snprintf(msg, msglen, "%.*s: field given twice", (int)kl, k);
            return -1;
        }
        *seen = 1;
        if (KEY("agent_id") || KEY("strand")) {
            const char *s;
            uint32_t sl;
            if (t != SL_MP_STR || sl_mp_read_str(p, end, &s, &sl) < 0) {
                snprintf(msg, msglen, "%.*s: must be a string", (int)kl, k);
                return -1;
            }
            if (KEY("agent_id")) {
                if (sl > MAX_SOURCE) {
                    snprintf(msg, msglen, "agent_id: longer than %d bytes", MAX_SOURCE);
                    return -1;
                }
                e->agent = s;
                e->agent_len = sl;
            } else {
                if (!sl_strand_name_valid(s, sl)) {
                    snprintf(msg, msglen,
                             "strand: '%.*s' is not a valid name ([a-z0-9][a-z0-9._-]{0,63})",
                             (int)(sl > 80 ? 80 : sl), s);
                    return -1;
                }
                e->strand = s;
                e->strand_len = sl;
            }
        } else if (KEY("flags")) {
            int64_t v;
            if (t != SL_MP_INT || sl_mp_read_int(p, end, &v) < 0 || v < 0 || v > 0xffffffffLL) {
                snprintf(msg, msglen, "flags: must be an integer between 0 and 4294967295");
                return -1;
            }
            e->flags = (uint32_t)v;
        } else {
            long len = rec_end && i == n - 1
                           ? (long)(rec_end - *p)
                           : sl_mp_skip(*p, (size_t)(end - *p), SL_JSON_MAX_DEPTH + 1);
            if (len < 0) {
                snprintf(msg, msglen, "payload: malformed value");
                return -1;
            }
            e->payload = *p;
            e->payload_len = (size_t)len;
            *p += len;
        }
#undef KEY
    }
    if (!seen_payload) {
        snprintf(msg, msglen, "payload: required field is missing");
        return -1;
    }
    return 0;
}

struct rec_start {
    size_t off;  /* where the record's MessagePack starts in w->mp */
    size_t line; /* its NDJSON line number (1-based) */
};

/* Splits NDJSON into records: transcodes each non-blank line into w->mp, remembering where each
 * record starts. Returns the count, or -1 after answering the error. */
static long transcode_ndjson(struct sl_buf *mp, const char *body, size_t len,
                             struct rec_start **starts, uint64_t max_records, struct sl_err *err)
{
    size_t cap = 1024, n = 0;
    struct rec_start *st = malloc(cap * sizeof(*st));
    if (!st)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    size_t line = 0;
    for (size_t pos = 0; pos < len;) {
        const char *nl = memchr(body + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - body) : len;
        line++;
        size_t a = pos, b = end; /* a line's offsets; errors count bytes from the line start */
        while (a < b && (body[a] == ' ' || body[a] == '\t' || body[a] == '\r'))
            a++;
        pos = end + 1;
        if (a == b)
            continue; /* blank line */
        if (n == max_records) {
            free(st);
            return sl_err_set(err, SL_E_TOOBIG, "batch_too_large",
                              "body: more than %llu records in a batch",
                              (unsigned long long)max_records);
        }
        if (n == cap) {
            struct rec_start *ns = realloc(st, (cap *= 2) * sizeof(*ns));
            if (!ns) {
                free(st);
                return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
            }
            st = ns;
        }
        st[n].off = mp->len;
        st[n++].line = line;
        struct sl_jerr je;
        if (sl_json_to_mp(body + a, b - a, mp, SL_JSON_MAX_DEPTH + 1, &je) < 0) {
            free(st);
            return sl_err_set(err, SL_E_INVAL, "invalid_json", "line %zu: %s", line, je.msg);
        }
    }
    *starts = st;
    return (long)n;
}

int sl_records_parse(const struct sl_records_in *in, struct sl_records *out, struct sl_err *err)
{
    memset(out, 0, sizeof(*out));
    sl_buf_init(&out->mp, 0);
    if (sl_buf_reserve(&out->mp, in->len + 16) < 0) /* a first guess; the buffer grows */
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    const char *qstrand = in->qstrand;
    if (qstrand && !sl_strand_name_valid(qstrand, strlen(qstrand)))
        return sl_err_set(err, SL_E_INVAL, "invalid_strand",
                          "strand: '%.80s' is not a valid name ([a-z0-9][a-z0-9._-]{0,63})",
                          qstrand);
    if (!in->batch && qstrand)
        return sl_err_set(err, SL_E_INVAL, "invalid_query",
                          "strand: give the strand in the body for POST /v1/records");

    /* 1. JSON -> MessagePack */
    struct rec_start *starts = NULL;
    long n = 1;
    struct sl_jerr je;
    int ndjson = in->batch && in->ndjson;
    if (ndjson) {
        n = transcode_ndjson(&out->mp, in->body, in->len, &starts, in->max_records, err);
        if (n < 0)
            return (int)n;
    } else if (sl_json_to_mp(in->body, in->len, &out->mp, SL_JSON_MAX_DEPTH + 1, &je) < 0) {
        return sl_err_set(err, SL_E_INVAL, "invalid_json", "body: %s", je.msg);
    }
    const uint8_t *p = out->mp.data, *end = out->mp.data + out->mp.len;
    if (in->batch && !ndjson) {
        uint32_t an;
        if (sl_mp_type(p, end) != SL_MP_ARRAY || sl_mp_read_array(&p, end, &an) < 0)
            return sl_err_set(err, SL_E_INVAL, "invalid_batch",
                              "body: a batch is a JSON array of records (or NDJSON with "
                              "Content-Type: application/x-ndjson)");
        if (an > in->max_records)
            return sl_err_set(err, SL_E_TOOBIG, "batch_too_large",
                              "body: more than %llu records in a batch",
                              (unsigned long long)in->max_records);
        n = an;
    }
    if (n == 0) {
        free(starts);
        return sl_err_set(err, SL_E_INVAL, "empty_batch", "body: the batch holds no records");
    }

    /* 2. validate every record before anything is written */
    out->recs = calloc((size_t)n, sizeof(*out->recs));
    if (!out->recs) {
        free(starts);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    out->n = (size_t)n;
    const char *sname = qstrand;
    size_t snlen = qstrand ? strlen(qstrand) : 0;
    int rc = 0;
    for (long i = 0; i < n && rc == 0; i++) {
        struct envelope e;
        char msg[300];
        size_t line = starts ? starts[i].line : 0;
        const uint8_t *rec_end = NULL;
        if (starts) {
            p = out->mp.data + starts[i].off;
            rec_end = i + 1 < n ? out->mp.data + starts[i + 1].off : end;
        }
        if (parse_envelope(&p, end, rec_end, &e, msg, sizeof(msg)) < 0) {
            if (!in->batch)
                rc = sl_err_set(err, SL_E_INVAL, "invalid_record", "%s", msg);
            else if (ndjson)
                rc = sl_err_set(err, SL_E_INVAL, "invalid_record", "line %zu: %s", line, msg);
            else
                rc = sl_err_set(err, SL_E_INVAL, "invalid_record", "record %ld (0-based): %s", i,
                                msg);
            break;
        }
        if (!in->batch && p != end) {
            rc = sl_err_set(err, SL_E_INVAL, "invalid_record", "body: trailing data");
            break;
        }
        if (e.strand) {
            if (sname && (snlen != e.strand_len || memcmp(sname, e.strand, snlen) != 0)) {
                rc = sl_err_set(err, SL_E_INVAL, "mixed_strands",
                                "strand: %s %ld names strand '%.*s' but the batch goes to "
                                "'%.*s'; one batch goes to one strand",
                                ndjson ? "line" : "record", ndjson ? (long)line : i,
                                (int)e.strand_len, e.strand, (int)snlen, sname);
                break;
            }
            sname = e.strand;
            snlen = e.strand_len;
        }
        struct sl_append_rec *r = &out->recs[i];
        r->payload = e.payload;
        r->payload_len = (uint32_t)e.payload_len;
        r->source = e.agent ? e.agent : "";
        r->source_len = (uint16_t)e.agent_len;
        r->flags = e.flags;
    }
    free(starts);
    if (rc)
        return rc;
    if (!sname) {
        sname = "default";
        snlen = 7;
    }
    memcpy(out->strand, sname, snlen);
    out->strand[snlen] = 0;
    return 0;
}

void sl_records_release(struct sl_records *r)
{
    sl_buf_release(&r->mp);
    free(r->recs);
    r->recs = NULL;
    r->n = 0;
}
