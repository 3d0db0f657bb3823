/* GET /v1/openapi.json: docs/openapi.yaml, built into the binary (the assembler's .incbin, so
 * the file is the one source) and turned into JSON once, with the pipeline's YAML reader. */
#include "api/api.h"
#include "core/log.h"
#include "pipeline/yamlj.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

__asm__(".section .rodata\n"
        ".global sl_openapi_yaml\n"
        "sl_openapi_yaml:\n"
        ".incbin \"docs/openapi.yaml\"\n"
        ".global sl_openapi_yaml_end\n"
        "sl_openapi_yaml_end:\n"
        ".byte 0\n"
        ".previous\n");
extern const char sl_openapi_yaml[], sl_openapi_yaml_end[];

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static char *g_json; /* the document as compact JSON, or NULL if it does not parse */
static size_t g_len;

static void load(void)
{
    char err[256];
    struct sl_ymarks marks = {0};
    json_t *doc = sl_yaml_to_json(sl_openapi_yaml, (size_t)(sl_openapi_yaml_end - sl_openapi_yaml),
                                  &marks, err, sizeof(err));
    sl_ymarks_free(&marks);
    if (!doc)
        sl_warn("docs/openapi.yaml (built in): %s", err);
    g_json = doc ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    g_len = g_json ? strlen(g_json) : 0;
    json_decref(doc);
}

void sl_v1_openapi(struct sl_api *api, struct sl_http_req *req)
{
    (void)api;
    pthread_once(&g_once, load);
    if (!g_json)
        return sl_api_error(req, 500, "openapi_unavailable",
                            "the built-in OpenAPI document does not parse");
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_append(&b, g_json, g_len);
    sl_api_json(req, 200, &b);
}
