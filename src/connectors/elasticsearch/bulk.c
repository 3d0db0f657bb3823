/* Reading Elasticsearch's (and OpenSearch's) _bulk answers: elasticsearch.h. */
#include "connectors/elasticsearch/elasticsearch.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

int sl_es_item_retriable(int status)
{
    return status == 408 || status == 429 || status >= 500;
}

/* "<type>: <reason>" of an item's error object (or its text, when it is a string). */
static void reason_of(const json_t *e, char *out, size_t n)
{
    if (json_is_string(e)) {
        snprintf(out, n, "%s", json_string_value(e));
        return;
    }
    const char *type = json_string_value(json_object_get(e, "type"));
    const char *why = json_string_value(json_object_get(e, "reason"));
    snprintf(out, n, "%s: %s", type ? type : "error", why ? why : "(no reason given)");
}

/* ---- the answer's top-level "errors", read without building a tree ---- */

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Past the string at p (at its opening quote), or NULL. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\')
            p++;
        else if (*p == '"')
            return p + 1;
    }
    return NULL;
}

/* Past the value at p, or NULL if it ends early. Only the structure is followed (brackets and
 * strings), not the grammar: the answer is checked whole by jansson when it matters. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p != '{' && *p != '[') {
        while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
               *p != '\r' && *p != '\t')
            p++;
        return p;
    }
    size_t depth = 0;
    while (p < end) {
        if (*p == '"') {
            if (!(p = skip_string(p, end)))
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

/* The top-level "errors" of an answer: 0 false, 1 true, -1 not found or not a boolean. */
static int top_errors(const char *p, const char *end)
{
    p = ws(p, end);
    if (p >= end || *p++ != '{')
        return -1;
    for (;;) {
        p = ws(p, end);
        if (p >= end || *p != '"')
            return -1;
        const char *k = p + 1, *after = skip_string(p, end);
        if (!after)
            return -1;
        int is_errors = after - k == 7 && memcmp(k, "errors\"", 7) == 0;
        p = ws(after, end);
        if (p >= end || *p++ != ':')
            return -1;
        p = ws(p, end);
        if (is_errors) {
            if (end - p >= 4 && memcmp(p, "true", 4) == 0)
                return 1;
            if (end - p >= 5 && memcmp(p, "false", 5) == 0)
                return 0;
            return -1;
        }
        if (!(p = skip_value(p, end)))
            return -1;
        p = ws(p, end);
        if (p >= end || *p != ',')
            return -1;
        p++;
    }
}

int sl_es_bulk_parse(const char *body, size_t len, size_t n, struct sl_es_item *items, char *why,
                     size_t whylen)
{
    /* the usual answer, "errors": false, needs no tree: thousands of items cost allocations */
    if (top_errors(body, body + len) == 0) {
        for (size_t i = 0; i < n; i++)
            items[i] = (struct sl_es_item){.status = 200};
        return 0;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    if (!json_is_object(root)) {
        snprintf(why, whylen, "the _bulk answer is not a JSON object (%s)", root ? "" : je.text);
        goto out;
    }
    json_t *errors = json_object_get(root, "errors"), *arr = json_object_get(root, "items");
    if (!json_is_boolean(errors)) {
        snprintf(why, whylen, "the _bulk answer has no boolean \"errors\"");
        goto out;
    }
    if (json_is_false(errors) && !arr) { /* (filter_path=errors) */
        for (size_t i = 0; i < n; i++)
            items[i] = (struct sl_es_item){.status = 200};
        rc = 0;
        goto out;
    }
    if (!json_is_array(arr) || json_array_size(arr) != n) {
        snprintf(why, whylen, "the _bulk answer has %zu items for %zu actions",
                 json_is_array(arr) ? json_array_size(arr) : 0, n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *it = json_array_get(arr, i), *res = NULL;
        const char *action = "";
        if (!json_is_object(it) || json_object_size(it) != 1) {
            snprintf(why, whylen, "item %zu of the _bulk answer is not {\"<action>\": {...}}", i);
            goto out;
        }
        json_object_foreach(it, action, res) break;
        json_t *st = json_object_get(res, "status");
        if (!json_is_integer(st) || json_integer_value(st) < 100 || json_integer_value(st) > 599) {
            snprintf(why, whylen, "item %zu of the _bulk answer has no HTTP status", i);
            goto out;
        }
        items[i].status = (int)json_integer_value(st);
        items[i].reason[0] = 0;
        json_t *err = json_object_get(res, "error");
        if (err)
            reason_of(err, items[i].reason, sizeof(items[i].reason));
        else if (items[i].status >= 300)
            snprintf(items[i].reason, sizeof(items[i].reason), "%s: status %d", action,
                     items[i].status);
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}
