/* The Kafka sink (Rivven's `kafka-sink`): every record of the followed strands becomes one
 * message of `topic`: value = the payload as JSON, key = the value at `key_field` (a dotted path
 * in the payload; a string as is, anything else as JSON text) or else the record_hash in hex,
 * headers strand, seq and record_hash.
 *
 * Delivery: send() hands a batch to librdkafka and returns SL_R_QUEUED; flush() serves delivery
 * reports until every message of the oldest batch has one, so the framework's cursor passes a
 * record only once the broker acknowledged it (acks). Up to MAX_FLIGHT batches are in flight
 * (ready() lets the framework send more meanwhile). A message the broker or librdkafka refuses
 * for good (too large, invalid) is reported by index: a dead letter. Anything else (a broker
 * down, a timeout after timeout_ms) is SL_R_NOT_CONNECTED or SL_R_RETRY: the framework backs off
 * and sends the records again.
 *
 * Sending again without duplicates: when a batch is not fully delivered, the framework sends
 * its records again (and, pipelined, those of the batches after it). Records of those batches
 * that the broker did acknowledge are remembered (by record_hash) and not produced a second
 * time: they are reported delivered at once. Only a restart of the connector forgets them.
 *
 * Order per key: the default partitioner is murmur2 (the Java client's: a key always goes to
 * the same partition), and librdkafka keeps per-partition order across its own retries only with
 * the idempotent producer (up to 5 requests in flight) or with one request in flight, which is
 * what this sink sets when idempotent is false.
 *
 * transactional_id: each batch is one transaction (begin, produce, commit), sent one at a time;
 * a read_committed consumer sees a batch entirely or not at all. */
#include "connectors/kafka/kafka.h"
#include "core/err.h"
#include "core/util.h"
#include "engine/kinds.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FLIGHT 16
#define BATCH 10000
#define POLL_EVERY 1000 /* messages produced between two servings of delivery reports */

static const char *const g_acks[] = {"none", "leader", "all", NULL};
static const char *const g_compression[] = {"none", "gzip", "snappy", "lz4", "zstd", NULL};

static const struct sl_field f_sink[] = {
    {"brokers", SL_F_STRING_LIST, 1, NULL, 0, "Bootstrap brokers, host:port.", 0, 0, NULL, NULL},
    {"topic", SL_F_STRING, 1, NULL, 0, "Kafka topic to produce to.", 0, 0, NULL, NULL},
    {"acks", SL_F_ENUM, 0, "\"all\"", 0,
     "none, leader or all: which replicas acknowledge a message before the cursor passes it.", 0, 0,
     g_acks, NULL},
    {"compression", SL_F_ENUM, 0, "\"none\"", 0, "none, gzip, snappy, lz4 or zstd.", 0, 0,
     g_compression, NULL},
    {"idempotent", SL_F_BOOL, 0, "false", 0,
     "Idempotent producer: librdkafka's retries never duplicate or reorder (needs acks all).", 0, 0,
     NULL, NULL},
    {"transactional_id", SL_F_STRING, 0, NULL, 0,
     "Each batch is a transaction under this id (idempotent, acks all).", 0, 0, NULL, NULL},
    {"key_field", SL_F_STRING, 0, NULL, 0,
     "Dotted path in the payload whose value is the message key; absent (or missing in a "
     "record): the record_hash in hex.",
     0, 0, NULL, NULL},
    {"security", SL_F_OBJECT, 0, "{}", 0, "TLS and SASL (librdkafka's security.* settings).", 0, 0,
     NULL, sl_kafka_security_fields},
    {NULL, 0, 0, NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int ks_check_config(json_t *c, struct sl_err *err)
{
    const char *acks = json_string_value(json_object_get(c, "acks"));
    int txn = json_object_get(c, "transactional_id") != NULL;
    if (json_is_true(json_object_get(c, "idempotent")) && strcmp(acks, "all") != 0)
        return sl_config_error(err, "config.acks", "must be all with idempotent");
    if (txn && strcmp(acks, "all") != 0)
        return sl_config_error(err, "config.acks", "must be all with transactional_id");
    if (txn && !*json_string_value(json_object_get(c, "transactional_id")))
        return sl_config_error(err, "config.transactional_id", "must not be empty");
    const char *kf = json_string_value(json_object_get(c, "key_field"));
    if (kf && (!*kf || *kf == '.' || kf[strlen(kf) - 1] == '.' || strstr(kf, "..")))
        return sl_config_error(err, "config.key_field", "a dotted path such as user.id");
    if (!*json_string_value(json_object_get(c, "topic")))
        return sl_config_error(err, "config.topic", "must not be empty");
    return sl_kafka_check_security(c, err);
}

/* ---- records acknowledged in a batch the framework will send again ---- */

struct redo {
    uint64_t (*slot)[2]; /* first 16 bytes of record_hash; {0,0} empty, {0,1} removed */
    size_t cap, used;
};

static size_t redo_at(const struct redo *r, const uint64_t k[2])
{
    return (size_t)(k[0] ^ (k[1] * 0x9e3779b97f4a7c15ull)) & (r->cap - 1);
}

static void redo_key(uint64_t k[2], const uint8_t *hash)
{
    memcpy(k, hash, 16);
    if (k[0] == 0 && k[1] <= 1)
        k[1] = 2; /* keep the two markers free */
}

static void redo_add(struct redo *r, const uint8_t *hash)
{
    if (r->used + 1 > r->cap / 2) {
        if (r->cap >= (1u << 21)) { /* bounded: forgetting only risks a duplicate */
            memset(r->slot, 0, r->cap * sizeof(*r->slot));
            r->used = 0;
        } else {
            struct redo n = {.cap = r->cap ? r->cap * 2 : 1024};
            if (!(n.slot = calloc(n.cap, sizeof(*n.slot))))
                return;
            for (size_t i = 0; i < r->cap; i++)
                if (r->slot[i][0] || r->slot[i][1] > 1) {
                    size_t j = redo_at(&n, r->slot[i]);
                    while (n.slot[j][0] || n.slot[j][1])
                        j = (j + 1) & (n.cap - 1);
                    memcpy(n.slot[j], r->slot[i], sizeof(n.slot[j]));
                    n.used++;
                }
            free(r->slot);
            *r = n;
        }
    }
    uint64_t k[2];
    redo_key(k, hash);
    size_t j = redo_at(r, k);
    while (r->slot[j][0] || r->slot[j][1]) {
        if (r->slot[j][0] == k[0] && r->slot[j][1] == k[1])
            return;
        j = (j + 1) & (r->cap - 1);
    }
    memcpy(r->slot[j], k, sizeof(k));
    r->used++;
}

/* Whether hash is remembered; it is forgotten then. */
static int redo_take(struct redo *r, const uint8_t *hash)
{
    if (!r->used)
        return 0;
    uint64_t k[2];
    redo_key(k, hash);
    for (size_t j = redo_at(r, k); r->slot[j][0] || r->slot[j][1]; j = (j + 1) & (r->cap - 1))
        if (r->slot[j][0] == k[0] && r->slot[j][1] == k[1]) {
            r->slot[j][0] = 0;
            r->slot[j][1] = 1;
            return 1;
        }
    return 0;
}

/* ---- the sink ---- */

enum { ST_PENDING, ST_OK, ST_REJECT, ST_RETRY };

struct flight {
    uint64_t order; /* 0 = free */
    uint16_t gen;
    size_t n, outstanding;
    uint8_t *st;              /* ST_* per record */
    uint8_t (*hash)[16];      /* per record: remembered if acknowledged but reported failed */
    rd_kafka_resp_err_t fail; /* the first failure */
    int fail_local;           /* it was refused by librdkafka before reaching a broker */
};

struct ksink {
    const struct sl_sink_ctx *ctx;
    rd_kafka_t *rk;
    rd_kafka_topic_t *topic;
    const char *topic_name, *key_field;
    int txn, txn_ready;
    int timeout_ms;
    struct flight fl[MAX_FLIGHT];
    uint64_t sent;
    int discard; /* flush() reported a failure: until the next send(), results are resent */
    struct redo redo;
    struct sl_buf value, key;
    size_t *reject;
};

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    struct ksink *k = opaque;
    uintptr_t id = (uintptr_t)m->_private;
    unsigned slot = (unsigned)((id >> 32) & 0xff), gen = (unsigned)(id >> 48);
    size_t idx = (size_t)(id & 0xffffffffu);
    struct flight *f = slot < MAX_FLIGHT ? &k->fl[slot] : NULL;
    if (!f || !f->order || f->gen != gen || idx >= f->n || f->st[idx] != ST_PENDING)
        return; /* a batch given up on (disable) */
    f->outstanding--;
    switch (m->err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        f->st[idx] = ST_OK;
        return;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
        f->st[idx] = ST_REJECT;
        break;
    default:
        f->st[idx] = ST_RETRY;
    }
    if (!f->fail)
        f->fail = m->err;
}

static void producer_hook(rd_kafka_conf_t *conf)
{
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
}

static void ks_close(void *self)
{
    struct ksink *k = self;
    if (!k)
        return;
    if (k->rk) {
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(k->rk, 0);
    }
    if (k->topic)
        rd_kafka_topic_destroy(k->topic);
    if (k->rk)
        rd_kafka_destroy(k->rk);
    for (int i = 0; i < MAX_FLIGHT; i++) {
        free(k->fl[i].st);
        free(k->fl[i].hash);
    }
    free(k->redo.slot);
    free(k->reject);
    sl_buf_release(&k->value);
    sl_buf_release(&k->key);
    free(k);
}

static int ks_open(void **self, const struct sl_sink_ctx *ctx, struct sl_sink_info *info,
                   struct sl_err *err)
{
    struct ksink *k = calloc(1, sizeof(*k));
    if (!k || !(k->reject = calloc(BATCH, sizeof(*k->reject)))) {
        free(k);
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
    }
    for (int i = 0; i < MAX_FLIGHT; i++)
        if (!(k->fl[i].st = calloc(BATCH, 1)) ||
            !(k->fl[i].hash = calloc(BATCH, sizeof(*k->fl[i].hash)))) {
            ks_close(k);
            return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        }
    const json_t *c = ctx->config;
    k->ctx = ctx;
    k->topic_name = json_string_value(json_object_get(c, "topic"));
    k->key_field = json_string_value(json_object_get(c, "key_field"));
    k->txn = json_object_get(c, "transactional_id") != NULL;
    k->timeout_ms = (int)json_integer_value(json_object_get(c, "timeout_ms"));
    if (k->timeout_ms <= 0)
        k->timeout_ms = 10000;
    sl_buf_init(&k->value, 0);
    sl_buf_init(&k->key, 0);
    char errstr[512], tmo[32], client[160];
    snprintf(client, sizeof(client), "sluice-%s", ctx->id);
    const char *acks = json_string_value(json_object_get(c, "acks"));
    int idem = json_is_true(json_object_get(c, "idempotent")) || k->txn;
    snprintf(tmo, sizeof(tmo), "%d", k->timeout_ms);
    const struct sl_kafka_prop props[] = {
        {"acks", strcmp(acks, "none") == 0     ? "0"
                 : strcmp(acks, "leader") == 0 ? "1"
                                               : "all"},
        {"compression.codec", json_string_value(json_object_get(c, "compression"))},
        {"enable.idempotence", idem ? "true" : "false"},
        {"max.in.flight.requests.per.connection", idem ? "5" : "1"},
        {"transactional.id", json_string_value(json_object_get(c, "transactional_id"))},
        {"message.timeout.ms", tmo},
        /* fuller produce requests (each carries one partition's batch): 15% less CPU here and in
         * the broker than librdkafka's 5 ms, for at most 20 ms more before a delivery report */
        {"linger.ms", "20"},
        {"partitioner", "murmur2_random"},
        /* room for every batch in flight (MAX_FLIGHT x BATCH), so produce never waits */
        {"queue.buffering.max.messages", "200000"},
    };
    k->rk = sl_kafka_new(RD_KAFKA_PRODUCER, c, client, props, sizeof(props) / sizeof(props[0]),
                         producer_hook, k, errstr, sizeof(errstr));
    if (!k->rk || !(k->topic = rd_kafka_topic_new(k->rk, k->topic_name, NULL))) {
        ks_close(k);
        return sl_err_set(err, SL_E_INVAL, "invalid_config", "kafka: %s", errstr);
    }
    info->batch_max = BATCH;
    info->max_inflight = k->txn ? 1 : MAX_FLIGHT;
    *self = k;
    return 0;
}

/* The key of r into k->key. */
static void make_key(struct ksink *k, const struct sl_rec *r)
{
    sl_buf_reset(&k->key);
    const uint8_t *end = r->payload + r->payload_len;
    const uint8_t *v = k->key_field ? sl_mp_at_path(r->payload, end, k->key_field) : NULL;
    if (v) {
        const uint8_t *p = v;
        const char *s;
        uint32_t sl;
        size_t used;
        if (sl_mp_read_str(&p, end, &s, &sl) == 0) {
            sl_buf_append(&k->key, s, sl);
            return;
        }
        if (sl_mp_to_json(v, (size_t)(end - v), &used, &k->key, 64, NULL) == 0)
            return;
        sl_buf_reset(&k->key);
    }
    sl_buf_hex(&k->key, r->hash, SL_REC_HASH_LEN);
}

/* v in decimal into out (at least 21 bytes), NUL-terminated. */
static void decimal(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = 0;
}

/* Produces record i of b as part of flight f; the result goes into f->st[i] now (refused
 * locally) or through dr_cb. 0, or -1 when told to stop. */
static int produce_one(struct ksink *k, struct flight *f, unsigned slot, const struct sl_batch *b,
                       size_t i)
{
    const struct sl_rec *r = &b->recs[i];
    memcpy(f->hash[i], r->hash, 16);
    if (redo_take(&k->redo, r->hash)) { /* acknowledged in an earlier attempt */
        f->st[i] = ST_OK;
        return 0;
    }
    sl_buf_reset(&k->value);
    size_t used;
    if (sl_mp_to_json(r->payload, r->payload_len, &used, &k->value, 64, NULL) < 0) {
        f->st[i] = ST_REJECT;
        if (!f->fail)
            f->fail = RD_KAFKA_RESP_ERR_INVALID_MSG, f->fail_local = 1;
        return 0;
    }
    make_key(k, r);
    char seq[24], hash[SL_REC_HASH_LEN * 2 + 1];
    decimal(seq, r->seq);
    sl_hex_encode(hash, r->hash, SL_REC_HASH_LEN);
    uintptr_t id = ((uintptr_t)f->gen << 48) | ((uintptr_t)slot << 32) | (uintptr_t)i;
    for (;;) {
        rd_kafka_headers_t *h = rd_kafka_headers_new(3);
        rd_kafka_header_add(h, "strand", -1, b->strand, -1);
        rd_kafka_header_add(h, "seq", -1, seq, -1);
        rd_kafka_header_add(h, "record_hash", -1, hash, -1);
        f->st[i] = ST_PENDING;
        f->outstanding++;
        rd_kafka_resp_err_t e = rd_kafka_producev(
            k->rk, RD_KAFKA_V_RKT(k->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_VALUE(k->value.data, k->value.len), RD_KAFKA_V_KEY(k->key.data, k->key.len),
            RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE((void *)id), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        f->outstanding--;
        rd_kafka_headers_destroy(h);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) { /* wait for room: serve delivery reports */
            if (k->ctx->cancelled && k->ctx->cancelled(k->ctx->arg))
                return -1;
            rd_kafka_poll(k->rk, 20);
            continue;
        }
        f->st[i] = e == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? ST_REJECT : ST_RETRY;
        if (!f->fail)
            f->fail = e, f->fail_local = 1;
        return 0;
    }
}

/* The outcome of a flight whose every record has its result; frees the flight. */
static enum sl_result outcome(struct ksink *k, struct flight *f, struct sl_outcome *out)
{
    size_t n = f->n, acc = 0, nrej = 0, retry = 0;
    while (acc < n && f->st[acc] == ST_OK)
        acc++;
    for (size_t i = 0; i < n; i++) {
        if (f->st[i] == ST_REJECT)
            k->reject[nrej++] = i;
        retry += f->st[i] == ST_RETRY || f->st[i] == ST_PENDING;
    }
    enum sl_result r = SL_R_OK;
    if (retry)
        r = f->fail == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT ||
                    f->fail == RD_KAFKA_RESP_ERR__TRANSPORT ||
                    f->fail == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN
                ? SL_R_NOT_CONNECTED
                : SL_R_RETRY;
    else if (nrej)
        r = SL_R_REJECT;
    if (r != SL_R_OK) {
        snprintf(out->error, sizeof(out->error), "kafka: %s%s",
                 f->fail ? rd_kafka_err2str(f->fail) : "not delivered",
                 f->fail_local ? " (refused by the client)" : "");
        if (rd_kafka_fatal_error(k->rk, NULL, 0)) {
            char why[200];
            rd_kafka_fatal_error(k->rk, why, sizeof(why));
            snprintf(out->error, sizeof(out->error), "kafka: fatal producer error: %s", why);
            r = SL_R_FATAL;
        }
    }
    if (r == SL_R_REJECT) {
        out->reject = k->reject;
        out->n_reject = nrej;
    } else if (r != SL_R_OK) {
        out->accepted = acc;
    }
    /* what the broker acknowledged but the framework will send again is remembered */
    if (r != SL_R_OK || k->discard) /* RETRY: [0, acc) is accepted; else nothing is */
        for (size_t i = r == SL_R_OK || r == SL_R_REJECT ? 0 : acc; i < n; i++)
            if (f->st[i] == ST_OK)
                redo_add(&k->redo, f->hash[i]);
    if (r != SL_R_OK)
        k->discard = 1;
    f->order = 0;
    return r;
}

static struct flight *oldest(struct ksink *k)
{
    struct flight *o = NULL;
    for (int i = 0; i < MAX_FLIGHT; i++)
        if (k->fl[i].order && (!o || k->fl[i].order < o->order))
            o = &k->fl[i];
    return o;
}

/* Serves delivery reports until f has them all (0), or the connector is cancelled (-1). */
static int wait_flight(struct ksink *k, struct flight *f)
{
    while (f->outstanding) {
        if (k->ctx->cancelled && k->ctx->cancelled(k->ctx->arg))
            return -1;
        rd_kafka_poll(k->rk, 50);
    }
    return 0;
}

static enum sl_result ks_flush(void *self, struct sl_outcome *out)
{
    struct ksink *k = self;
    struct flight *f = oldest(k);
    if (!f) {
        snprintf(out->error, sizeof(out->error), "no batch in flight");
        return SL_R_RETRY;
    }
    if (wait_flight(k, f) < 0) {
        f->order = 0;
        snprintf(out->error, sizeof(out->error), "kafka: stopped before the delivery reports");
        return SL_R_RETRY;
    }
    return outcome(k, f, out);
}

static int ks_ready(void *self, int timeout_ms)
{
    struct ksink *k = self;
    struct flight *f = oldest(k);
    if (f && f->outstanding)
        rd_kafka_poll(k->rk, timeout_ms);
    return !f || !f->outstanding;
}

/* A transaction error as a result. */
static enum sl_result txn_result(struct ksink *k, rd_kafka_error_t *e, const char *what,
                                 struct sl_outcome *out)
{
    snprintf(out->error, sizeof(out->error), "kafka: %s: %s", what, rd_kafka_error_string(e));
    enum sl_result r = SL_R_RETRY;
    if (rd_kafka_error_is_fatal(e)) {
        r = SL_R_FATAL;
    } else if (rd_kafka_error_txn_requires_abort(e)) {
        rd_kafka_error_t *a = rd_kafka_abort_transaction(k->rk, k->timeout_ms);
        if (a && rd_kafka_error_is_fatal(a))
            r = SL_R_FATAL;
        if (a)
            rd_kafka_error_destroy(a);
    }
    rd_kafka_error_destroy(e);
    return r;
}

static enum sl_result ks_send(void *self, const struct sl_batch *b, struct sl_outcome *out)
{
    struct ksink *k = self;
    if (b->n == 0)
        return SL_R_OK;
    k->discard = 0;
    unsigned slot = MAX_FLIGHT;
    for (unsigned i = 0; i < MAX_FLIGHT && slot == MAX_FLIGHT; i++)
        if (!k->fl[i].order)
            slot = i;
    if (slot == MAX_FLIGHT || b->n > BATCH) { /* the framework keeps within info */
        snprintf(out->error, sizeof(out->error), "more batches than max_inflight");
        return SL_R_RETRY;
    }
    rd_kafka_error_t *e;
    if (k->txn && !k->txn_ready) {
        if ((e = rd_kafka_init_transactions(k->rk, k->timeout_ms)))
            return txn_result(k, e, "init_transactions", out);
        k->txn_ready = 1;
    }
    if (k->txn && (e = rd_kafka_begin_transaction(k->rk)))
        return txn_result(k, e, "begin_transaction", out);
    struct flight *f = &k->fl[slot];
    f->order = ++k->sent;
    f->gen++;
    f->n = b->n;
    f->outstanding = 0;
    f->fail = RD_KAFKA_RESP_ERR_NO_ERROR;
    f->fail_local = 0;
    for (size_t i = 0; i < b->n; i++) {
        /* delivery reports of earlier batches meanwhile: the messages librdkafka frees are
         * reused by the next ones instead of the heap growing by a whole window and shrinking */
        if (i % POLL_EVERY == POLL_EVERY - 1)
            rd_kafka_poll(k->rk, 0);
        if (produce_one(k, f, slot, b, i) < 0) {
            f->order = 0;
            snprintf(out->error, sizeof(out->error), "kafka: stopped while producing");
            return SL_R_RETRY;
        }
    }
    rd_kafka_poll(k->rk, 0);
    if (!k->txn)
        return SL_R_QUEUED;
    /* a transaction: committed (every message delivered) or aborted, here */
    if (f->fail) {
        wait_flight(k, f);
        e = rd_kafka_abort_transaction(k->rk, k->timeout_ms);
        if (e)
            rd_kafka_error_destroy(e);
        for (size_t i = 0; i < f->n; i++) /* aborted: nothing of it is visible */
            if (f->st[i] == ST_OK)
                f->st[i] = ST_RETRY;
        return outcome(k, f, out);
    }
    if ((e = rd_kafka_commit_transaction(k->rk, k->timeout_ms))) {
        f->order = 0;
        return txn_result(k, e, "commit_transaction", out);
    }
    wait_flight(k, f);
    return outcome(k, f, out);
}

static int ks_check(void *self, struct sl_err *err)
{
    struct ksink *k = self;
    char why[400];
    int t = k->timeout_ms < 5000 ? k->timeout_ms : 5000;
    if (sl_kafka_probe(k->rk, k->topic_name, t, k->ctx->cancelled, k->ctx->arg, why, sizeof(why)) ==
        0)
        return 0;
    return sl_err_set(err, SL_E_UNAVAIL, "unhealthy", "kafka: %s", why);
}

/* The messages send() would produce: "key<TAB>value" one a line (headers left out). */
static int ks_format(void *self, const struct sl_batch *b, uint8_t **bytes, size_t *len)
{
    struct ksink *k = self;
    struct sl_buf o;
    sl_buf_init(&o, 0);
    for (size_t i = 0; i < b->n; i++) {
        size_t used;
        make_key(k, &b->recs[i]);
        sl_buf_append(&o, k->key.data, k->key.len);
        sl_buf_putc(&o, '\t');
        if (sl_mp_to_json(b->recs[i].payload, b->recs[i].payload_len, &used, &o, 64, NULL) < 0)
            o.failed = 1;
        sl_buf_putc(&o, '\n');
    }
    if (o.failed) {
        sl_buf_release(&o);
        return -1;
    }
    *bytes = (uint8_t *)sl_buf_steal(&o, len);
    return *bytes ? 0 : -1;
}

static const struct sl_sink_ops ks_ops = {.open = ks_open,
                                          .send = ks_send,
                                          .flush = ks_flush,
                                          .check = ks_check,
                                          .format = ks_format,
                                          .close = ks_close,
                                          .ready = ks_ready};

static const char *const ks_aliases[] = {"kafka-sink", NULL};

const struct sl_connector sl_conn_kafka_sink = {
    .abi = SL_CONNECTOR_ABI,
    .name = "kafka_sink",
    .aliases = ks_aliases,
    .direction = SL_OUTBOUND,
    .category = "messaging",
    .description = "Produces every record of the followed strands to a Kafka topic (value: the "
                   "payload as JSON; headers strand, seq, record_hash); the cursor passes a "
                   "record on the broker's delivery report.",
    .fields = f_sink,
    .check_config = ks_check_config,
    .sink = &ks_ops,
};
