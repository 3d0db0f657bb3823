/* POST /v1/pipelines/reload: the pipeline files given by --pipelines (or sluice run) applied
 * again, as SIGHUP does: 200 {"reloaded": true, "warnings": [...]}; an invalid file changes
 * nothing and is answered 400 {"error": <its first problem>, "code": "invalid_pipeline",
 * "problems": [every line]}; without --pipelines, 409 no_pipelines. */
#include "api/api.h"
#include "core/buf.h"
#include "core/config.h"
#include "pipeline/pipeline.h"

#include <stdlib.h>
#include <string.h>

void sl_v1_pipelines_reload(struct sl_api *api, struct sl_http_req *req)
{
    if (!api->cfg || !api->cfg->pipelines[0])
        return sl_api_error(req, 409, "no_pipelines",
                            "no pipelines to reload: start with --pipelines PATH or sluice run "
                            "FILE");
    struct sl_buf msgs, out;
    sl_buf_init(&msgs, 0);
    sl_buf_init(&out, 0);
    int bad = sl_pipelines_run(api->cfg->pipelines, api->registry, api->store, &msgs);
    json_t *lines = json_array();
    const char *s = (const char *)msgs.data;
    for (size_t i = 0; i < msgs.len;) {
        const char *nl = memchr(s + i, '\n', msgs.len - i);
        size_t n = nl ? (size_t)(nl - (s + i)) : msgs.len - i;
        json_array_append_new(lines, json_stringn(s + i, n));
        i += n + 1;
    }
    json_t *body = NULL;
    if (bad) {
        const char *first = json_string_value(json_array_get(lines, 0));
        for (size_t i = 0; i < json_array_size(lines); i++) /* the first error, not a warning */
            if (!strstr(json_string_value(json_array_get(lines, i)), ": warning: ")) {
                first = json_string_value(json_array_get(lines, i));
                break;
            }
        body = json_pack("{s:s, s:s, s:O}", "error", first ? first : "the pipelines were refused",
                         "code", "invalid_pipeline", "problems", lines);
    } else {
        body = json_pack("{s:b, s:O}", "reloaded", 1, "warnings", lines);
    }
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (text)
        sl_buf_puts(&out, text);
    free(text);
    json_decref(body);
    json_decref(lines);
    sl_buf_release(&msgs);
    sl_api_json(req, bad ? 400 : 200, &out);
    sl_buf_release(&out);
}
