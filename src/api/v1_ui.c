/* The web console at /ui/: ui/index.html, ui/app.js and ui/app.css built into the binary (the
 * assembler's .incbin: the files are the one source, no build step, nothing fetched from
 * elsewhere). The files hold no data and are served without a token; the page asks for one
 * when the API answers 401. */
#include "api/api.h"

#include <string.h>

#define EMBED(sym, path)                                                                           \
    __asm__(".section .rodata\n.global " #sym "\n" #sym ":\n.incbin \"" path "\"\n.global " #sym   \
            "_end\n" #sym "_end:\n.byte 0\n.previous\n")
EMBED(sl_ui_index, "ui/index.html");
EMBED(sl_ui_js, "ui/app.js");
EMBED(sl_ui_css, "ui/app.css");
extern const char sl_ui_index[], sl_ui_index_end[], sl_ui_js[], sl_ui_js_end[], sl_ui_css[],
    sl_ui_css_end[];

static const struct {
    const char *path, *ctype, *start, *end;
} g_files[] = {
    {"/ui/", "text/html; charset=utf-8", sl_ui_index, sl_ui_index_end},
    {"/ui/index.html", "text/html; charset=utf-8", sl_ui_index, sl_ui_index_end},
    {"/ui/app.js", "text/javascript; charset=utf-8", sl_ui_js, sl_ui_js_end},
    {"/ui/app.css", "text/css; charset=utf-8", sl_ui_css, sl_ui_css_end},
};

void sl_v1_ui(struct sl_api *api, struct sl_http_req *req, const char *path)
{
    (void)api;
    if (strcmp(path, "/ui") == 0) {
        sl_http_add_header(req, "Location", "/ui/");
        struct sl_buf b;
        sl_buf_init(&b, 0);
        return sl_http_respond(req, 301, "text/plain; charset=utf-8", &b);
    }
    for (size_t i = 0; i < sizeof(g_files) / sizeof(g_files[0]); i++) {
        if (strcmp(path, g_files[i].path) != 0)
            continue;
        struct sl_buf b;
        sl_buf_init(&b, 0);
        sl_buf_append(&b, g_files[i].start, (size_t)(g_files[i].end - g_files[i].start));
        sl_http_add_header(req, "Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                           "base-uri 'none'");
        sl_http_add_header(req, "X-Content-Type-Options", "nosniff");
        sl_http_add_header(req, "Cache-Control", "no-cache");
        return sl_http_respond(req, 200, g_files[i].ctype, &b);
    }
    sl_api_error(req, 404, "not_found", "path: no console file %.100s", path);
}
