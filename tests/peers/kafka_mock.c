/* A Kafka cluster for tests and benchmarks: librdkafka's mock cluster (rdkafka_mock.h, real TCP
 * listeners on 127.0.0.1 that any Kafka client can use; nothing is persisted) in a process of its
 * own, so that Sluice, kcat and a test all talk to it over the network.
 *
 *   kafka_mock BROKERS [TOPIC:PARTITIONS ...]
 *
 * prints "BOOTSTRAP host:port,..." on stdout once the cluster is up, then reads commands on
 * stdin, one a line, answering each with "ok" or "error ...":
 *   topic NAME PARTITIONS     create a topic
 *   down ID / up ID           take broker ID (1..BROKERS) down or up (closes its connections)
 *   errors APIKEY CODE COUNT  the next COUNT requests of that API fail with that error code
 *                             (rd_kafka_mock_push_request_errors; e.g. 0 = Produce)
 *   rtt ID MS                 add MS of round-trip time to broker ID
 * It exits at the end of stdin (the test closed the pipe or died) or on SIGTERM.
 *
 * Gotcha: the mock keeps at most 5 MiB (and 100,000 message sets) per partition and deletes the
 * oldest beyond that (the log start offset moves): spread large volumes over partitions. */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int topic(rd_kafka_mock_cluster_t *mc, const char *name, int parts)
{
    return rd_kafka_mock_topic_create(mc, name, parts, 1) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

int main(int argc, char **argv)
{
    int brokers = argc > 1 ? atoi(argv[1]) : 0;
    if (brokers < 1 || brokers > 9) {
        fprintf(stderr, "usage: kafka_mock BROKERS(1..9) [TOPIC:PARTITIONS ...]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "kafka_mock: %s\n", errstr);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (!mc) {
        fprintf(stderr, "kafka_mock: the mock cluster cannot start\n");
        return 1;
    }
    for (int i = 2; i < argc; i++) {
        char name[256];
        int parts = 1;
        if (sscanf(argv[i], "%255[^:]:%d", name, &parts) < 1 || parts < 1 ||
            topic(mc, name, parts) < 0) {
            fprintf(stderr, "kafka_mock: bad topic %s\n", argv[i]);
            return 2;
        }
    }
    printf("BOOTSTRAP %s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);
    char line[512];
    while (fgets(line, sizeof(line), stdin)) {
        char name[256];
        int a, b, c;
        int ok = 1;
        if (sscanf(line, "topic %255s %d", name, &a) == 2)
            ok = topic(mc, name, a) == 0;
        else if (sscanf(line, "down %d", &a) == 1)
            ok = rd_kafka_mock_broker_set_down(mc, a) == RD_KAFKA_RESP_ERR_NO_ERROR;
        else if (sscanf(line, "up %d", &a) == 1)
            ok = rd_kafka_mock_broker_set_up(mc, a) == RD_KAFKA_RESP_ERR_NO_ERROR;
        else if (sscanf(line, "rtt %d %d", &a, &b) == 2)
            ok = rd_kafka_mock_broker_set_rtt(mc, a, b) == RD_KAFKA_RESP_ERR_NO_ERROR;
        else if (sscanf(line, "errors %d %d %d", &a, &b, &c) == 3 && c > 0 && c <= 1000) {
            rd_kafka_resp_err_t errs[1000];
            for (int i = 0; i < c; i++)
                errs[i] = (rd_kafka_resp_err_t)b;
            rd_kafka_mock_push_request_errors_array(mc, (int16_t)a, (size_t)c, errs);
        } else
            ok = 0;
        if (ok)
            printf("ok\n");
        else
            printf("error %s", line);
        fflush(stdout);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
