/* MQTT connectors: the source (`mqtt`, Rivven's keys) and the sink (`mqtt_sink`). Private to
 * src/connectors/mqtt/.
 *
 * Why an MQTT 3.1.1 client of our own (codec.c, conn.c) rather than a library: the source must
 * send PUBACK (QoS 1) and PUBREC (QoS 2) only once the record is fsynced in the strand, from its
 * durable() callback. libmosquitto 2.0 sends them before its message callback runs, and Eclipse
 * Paho C (1.3, Debian's libpaho-mqtt) does too: MQTTProtocol_handlePublishes() queues the message
 * for messageArrived and sends the PUBACK right away (messageArrived's return value only decides
 * whether Paho calls it again, from its own memory). Neither lets a kill -9 of Sluice lose nothing
 * the broker handed over. MQTT 3.1.1 is small: the packets used here are a few hundred lines. */
#ifndef SL_CONNECTORS_MQTT_H
#define SL_CONNECTORS_MQTT_H

#include <gnutls/gnutls.h>
#include <sluice/connector.h>

#include "core/buf.h"

/* ---- packets (codec.c: pure, unit-tested and fuzzed) ---- */

enum {
    SL_MQTT_CONNECT = 1,
    SL_MQTT_CONNACK,
    SL_MQTT_PUBLISH,
    SL_MQTT_PUBACK,
    SL_MQTT_PUBREC,
    SL_MQTT_PUBREL,
    SL_MQTT_PUBCOMP,
    SL_MQTT_SUBSCRIBE,
    SL_MQTT_SUBACK,
    SL_MQTT_UNSUBSCRIBE,
    SL_MQTT_UNSUBACK,
    SL_MQTT_PINGREQ,
    SL_MQTT_PINGRESP,
    SL_MQTT_DISCONNECT,
};

#define SL_MQTT_MAX_PACKET (16u << 20) /* a bigger incoming packet closes the connection */

struct sl_mqtt_connect {
    const char *client_id;
    int clean_session;
    unsigned keep_alive; /* seconds */
    const char *username, *password;
    const char *will_topic; /* NULL: no last will */
    const char *will_message;
    int will_qos, will_retain;
};

/* One decoded packet; pointers borrow from the bytes given to sl_mqtt_parse. */
struct sl_mqtt_pkt {
    int type;
    unsigned flags; /* the fixed header's low 4 bits */
    uint16_t id;    /* packet identifier (PUBLISH QoS > 0, acks, SUBACK) */
    /* PUBLISH */
    int qos, retain, dup;
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    /* CONNACK */
    int session_present, rc;
    /* SUBACK: one return code per topic filter (0..2 granted QoS, 0x80 refused) */
    const uint8_t *codes;
    size_t ncodes;
};

/* Encoders: append one packet to b; 0, or -1 (b's cap, or a field too long for MQTT). */
int sl_mqtt_put_connect(struct sl_buf *b, const struct sl_mqtt_connect *c);
int sl_mqtt_put_subscribe(struct sl_buf *b, uint16_t id, const char *const *filters, size_t n,
                          int qos);
int sl_mqtt_put_publish(struct sl_buf *b, const char *topic, size_t topic_len, const void *payload,
                        size_t len, int qos, int retain, int dup, uint16_t id);
/* PUBACK, PUBREC, PUBREL or PUBCOMP for id. */
int sl_mqtt_put_ack(struct sl_buf *b, int type, uint16_t id);
/* PINGREQ or DISCONNECT. */
int sl_mqtt_put_empty(struct sl_buf *b, int type);

/* The length of the packet at p[0..n): > 0 when complete, 0 when more bytes are needed, -1 when
 * the header is malformed or announces more than max bytes. */
long sl_mqtt_frame(const uint8_t *p, size_t n, size_t max);
/* Decodes one complete packet (as framed by sl_mqtt_frame) that a server sends a client:
 * 0, or -1 (malformed, or a type a server does not send). */
int sl_mqtt_parse(const uint8_t *p, size_t n, struct sl_mqtt_pkt *pkt);

/* 1 if t[0..n) is a valid topic name (filter = 0) or topic filter (filter = 1): 1..65535 bytes of
 * UTF-8 without NUL; a name has no '+' or '#'; in a filter, '+' and '#' fill a whole level and
 * '#' is the last one. */
int sl_mqtt_topic_valid(const char *t, size_t n, int filter);

/* ---- the source's record shape and position (codec.c) ---- */

struct sl_mqtt_msg {
    const char *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    int qos, retain, dup;
    uint16_t id;
    uint64_t received_ms;
};

/* QoS 2 packet ids received (their records appended) and not yet released: what the source
 * must recognise as already stored when the broker sends them again. */
#define SL_MQTT_PENDING_MAX 249 /* 13 + 2 * 249 <= SL_POSITION_MAX */
struct sl_mqtt_pending {
    size_t n;
    uint16_t id[SL_MQTT_PENDING_MAX];
};

/* Appends the record of m to mp (docs/connectors.md, "MQTT"); with pending non-NULL the record
 * also carries sluice_mqtt_pending (the last record of a group, QoS 2 sources). 0, or -1. */
int sl_mqtt_record(struct sl_buf *mp, const struct sl_mqtt_msg *m, int parse_json,
                   int include_metadata, const struct sl_mqtt_pending *pending);
/* Adds sluice_mqtt_pending to the record that starts at mp->data + at and ends mp (the last one
 * written): 0, or -1 (not a map, or the buffer's cap). */
int sl_mqtt_record_add_pending(struct sl_buf *mp, size_t at, const struct sl_mqtt_pending *p);
/* The position bytes: a group counter and the pending ids. */
size_t sl_mqtt_pos_encode(uint64_t group, const struct sl_mqtt_pending *p, uint8_t *out);
/* 0, or -1 if pos is not a position of this source. */
int sl_mqtt_pos_decode(const void *pos, size_t len, uint64_t *group, struct sl_mqtt_pending *p);
/* The sluice_mqtt_pending of a record's payload: 0, or -1 if it carries none. */
int sl_mqtt_record_pending(const uint8_t *payload, size_t len, struct sl_mqtt_pending *p);
/* Folds a record without sluice_mqtt_pending (one of a group whose last record a crash cut off)
 * into the position pos of *pos_len bytes (0: none yet, a new one of group 0; room for
 * SL_POSITION_MAX): a QoS 2 record's packet id joins the pending ids, so that the broker's
 * redelivery of it is not appended again; a QoS 0 or 1 record leaves pos as it is. 0, or -1 (not
 * a record of this source, one without its qos and packet_id (include_metadata false), or the
 * pending ids are full), pos unchanged. */
int sl_mqtt_pos_fold(void *pos, size_t *pos_len, const uint8_t *payload, size_t len);
int sl_mqtt_pending_has(const struct sl_mqtt_pending *p, uint16_t id);
void sl_mqtt_pending_del(struct sl_mqtt_pending *p, uint16_t id);
int sl_mqtt_pending_add(struct sl_mqtt_pending *p, uint16_t id); /* 0, or -1 if full */

/* ---- connections (conn.c) ---- */

struct sl_mqtt_url {
    int tls;
    char host[256];
    unsigned port;
};

/* mqtt://host[:port] (1883) or mqtts://host[:port] (8883); 0, or -1 with why. */
int sl_mqtt_parse_url(const char *url, struct sl_mqtt_url *u, char *why, size_t n);

struct sl_mqtt_conn {
    int fd; /* -1: not connected */
    gnutls_session_t tls;
    gnutls_certificate_credentials_t cred;
    struct sl_buf in; /* bytes received, not yet taken as packets */
    size_t in_off;
    struct sl_buf out; /* scratch for encoding */
    uint64_t last_sent_ns, last_recv_ns;
    /* Optional: nonzero makes waits (connect, TLS, send, receive) give up within 100 ms. */
    int (*cancelled)(void *arg);
    void *cancel_arg;
};

void sl_mqtt_conn_init(struct sl_mqtt_conn *c);
/* Connects to config.broker_url (config.tls, config.auth, client id and session from cp) and
 * waits for CONNACK within timeout_ms. 0, or -1 with why (and *refused = 1 when the broker
 * refused the login or the client id: starting again would fail the same way). */
int sl_mqtt_conn_open(struct sl_mqtt_conn *c, const json_t *config,
                      const struct sl_mqtt_connect *cp, int timeout_ms, int *session_present,
                      int *refused, char *why, size_t n);
/* Sends len bytes within timeout_ms: 0, or -1 (the connection is then closed). */
int sl_mqtt_conn_send(struct sl_mqtt_conn *c, const void *p, size_t len, int timeout_ms);
/* Sends c->out and empties it. */
int sl_mqtt_conn_flush(struct sl_mqtt_conn *c, int timeout_ms);
/* The next packet, waiting at most timeout_ms (and returning early when wake_fd, if >= 0, is
 * readable): 1 with pkt (valid until the next call), 0 if none yet, -1 if the connection failed
 * or sent garbage (closed then; why says what). */
int sl_mqtt_conn_next(struct sl_mqtt_conn *c, struct sl_mqtt_pkt *pkt, int timeout_ms, int wake_fd,
                      char *why, size_t n);
/* Sends PINGREQ when nothing was sent for half of keep_alive seconds; -1 (and closes) when the
 * broker sent nothing, not even a PINGRESP, for 1.5 keep_alive: a broker gone without a word. */
int sl_mqtt_conn_keepalive(struct sl_mqtt_conn *c, unsigned keep_alive);
/* DISCONNECT (when polite and connected), then closes. */
void sl_mqtt_conn_close(struct sl_mqtt_conn *c, int polite);
void sl_mqtt_conn_release(struct sl_mqtt_conn *c);

/* The config fields both kinds share: auth, tls. */
extern const struct sl_field sl_mqtt_auth_fields[];
extern const struct sl_field sl_mqtt_tls_fields[];
extern const char *const sl_mqtt_qos_names[]; /* at_most_once, at_least_once, exactly_once */
/* Index of a QoS name (0..2). */
int sl_mqtt_qos_of(const char *name);
/* broker_url checks for a config: a 400 naming config.broker_url. */
int sl_mqtt_check_url(const json_t *config, struct sl_err *err);

#endif
