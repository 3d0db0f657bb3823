/* YAML to JSON for pipeline files: one document of mappings, sequences and scalars becomes a
 * jansson tree, with the line and column of every node kept by path, so that an error found
 * later (a config field of the wrong type) points at its line.
 *
 * Plain scalars are typed by YAML 1.2's core schema (null, true/false, integers, floats, else a
 * string); quoted ones are strings. ${VAR} and ${VAR:-default} are replaced in scalar values
 * from the environment before typing (so `port: ${PORT}` is an integer), ${file:/path} by the
 * file's content without its trailing newline (a secret: its node is marked so). Refused, with
 * LINE:COL: anchors and aliases, tags other than the core ones, duplicate keys, keys that are
 * not scalars, more than one document, nesting deeper than 64, files above 4 MiB, an unset
 * variable without a default. Pure apart from getenv and ${file:}; any thread. */
#ifndef SL_PIPELINE_YAMLJ_H
#define SL_PIPELINE_YAMLJ_H

#include <jansson.h>
#include <stddef.h>

#define SL_YAML_MAX_BYTES (4u << 20)

struct sl_ymark {
    char *path;    /* "sources.pg.config.port", "sinks.s.topics[1]" */
    int line, col; /* 1-based */
    int secret;    /* the value came from ${file:} */
};

struct sl_ymarks {
    struct sl_ymark *v;
    size_t n, cap;
};

/* Parses text. The tree, or NULL with "LINE:COL: message" in err (every unset variable, one
 * line each). marks gets every node. */
json_t *sl_yaml_to_json(const char *text, size_t len, struct sl_ymarks *marks, char *err,
                        size_t errlen);
/* The mark of path, or of its nearest ancestor that has one; NULL if none. */
const struct sl_ymark *sl_ymarks_find(const struct sl_ymarks *m, const char *path);
void sl_ymarks_free(struct sl_ymarks *m);

#endif
