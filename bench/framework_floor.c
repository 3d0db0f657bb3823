/* bench/framework.sh's floor: the work of datagen -> stdout with no framework. Generates N
 * datagen events (pattern orders, seed 42), encodes each as MessagePack, renders the stdout
 * sink's JSON lines for them in batches of 1000 and writes them to stdout (/dev/null in the
 * bench). No strand, no fsync, no threads, no cursor: what is left of Sluice's time per record
 * beyond this is the framework's (and the strand's) cost. With a second argument "gen" it only
 * generates and encodes (the floor of a run into a sink that does nothing). Prints
 * "floor_ns=... records=..." on stderr. Built from the project's objects
 * (make build/bench/framework_floor). */
#include "floor.h"

#include "connectors/datagen/datagen.h"
#include "connectors/stdout/stdout.h"
#include "formats/json_mp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GROUP 1000

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 500000;
    int render = !(argc > 2 && strcmp(argv[2], "gen") == 0);
    struct sl_buf json, mp, out;
    sl_buf_init(&json, 0);
    sl_buf_init(&mp, 0);
    sl_buf_init(&out, 0);
    static struct sl_rec recs[GROUP];
    static size_t offs[GROUP];
    static uint8_t hash[SL_REC_HASH_LEN];
    uint64_t t0 = floor_now_ns();
    for (uint64_t i = 0; i < n; i += GROUP) {
        size_t k = n - i < GROUP ? (size_t)(n - i) : GROUP;
        sl_buf_reset(&mp);
        for (size_t j = 0; j < k; j++) {
            uint32_t flags;
            struct sl_jerr je;
            sl_buf_reset(&json);
            offs[j] = mp.len;
            if (sl_datagen_event(&json, 0, 0, "datagen", 42, i + j, &flags) < 0 ||
                sl_json_to_mp((const char *)json.data, json.len, &mp, 16, &je) < 0)
                return 1;
        }
        for (size_t j = 0; j < k; j++)
            recs[j] = (struct sl_rec){.seq = i + j,
                                      .timestamp_ms = 1767225600000ull + i + j,
                                      .source = "bench-datagen",
                                      .source_len = 13,
                                      .payload = mp.data + offs[j],
                                      .payload_len =
                                          (uint32_t)((j + 1 < k ? offs[j + 1] : mp.len) - offs[j]),
                                      .hash = hash};
        if (!render)
            continue;
        struct sl_batch b = {.strand = "default", .recs = recs, .n = k};
        sl_buf_reset(&out);
        if (sl_stdout_format(&b, 0, 0, &out) < 0)
            return 1;
        for (size_t off = 0; off < out.len;) {
            ssize_t w = write(STDOUT_FILENO, out.data + off, out.len - off);
            if (w <= 0)
                return 1;
            off += (size_t)w;
        }
    }
    uint64_t t1 = floor_now_ns();
    fprintf(stderr, "floor_ns=%llu records=%llu\n", (unsigned long long)(t1 - t0),
            (unsigned long long)n);
    sl_buf_release(&json);
    sl_buf_release(&mp);
    sl_buf_release(&out);
    return 0;
}
