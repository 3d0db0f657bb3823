/* The pipeline files' YAML loader: core-schema typing, ${VAR} expansion, line/column marks and
 * the refusals, each with its LINE:COL. */
#include "pipeline/yamlj.h"
#include "t.h"

#include <stdlib.h>
#include <string.h>

static char *load(const char *text, struct sl_ymarks *m, char *err, size_t n)
{
    json_t *j = sl_yaml_to_json(text, strlen(text), m, err, n);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(j);
    return s;
}

static void refused(const char *text, const char *want)
{
    struct sl_ymarks m = {0};
    char err[2100];
    char *s = load(text, &m, err, sizeof(err));
    T_CHECK(!s && strncmp(err, want, strlen(want)) == 0, "refused: %s (%s)", want, err);
    free(s);
    sl_ymarks_free(&m);
}

int main(void)
{
    struct sl_ymarks m = {0};
    char err[2100];
    setenv("SL_T_PORT", "5432", 1);
    unsetenv("SL_T_UNSET");
    char *s = load("a: 1\nb: -0x1F\nc: 1.5e3\nd: true\ne: ~\nf: '7'\ng: \"x\"\nh: yes\n"
                   "i: ${SL_T_PORT}\nj: \"${SL_T_PORT}\"\nk: ${SL_T_UNSET:-dflt}\nl: [1, two]\n"
                   "m: 9223372036854775807\nn: 0o17\n",
                   &m, err, sizeof(err));
    T_EQ_STR(s,
             "{\"a\":1,\"b\":\"-0x1F\",\"c\":1500.0,\"d\":true,\"e\":null,\"f\":\"7\",\"g\":\"x\","
             "\"h\":\"yes\",\"i\":5432,\"j\":\"5432\",\"k\":\"dflt\",\"l\":[1,\"two\"],"
             "\"m\":9223372036854775807,\"n\":15}",
             "core schema: ints (exact), floats, bools, null, quoted strings; YAML 1.1's yes is "
             "a string; ${VAR} typed after expansion unless quoted; defaults");
    free(s);
    const struct sl_ymark *k = sl_ymarks_find(&m, "l[1]");
    T_CHECK(k && k->line == 12 && k->col == 8, "the mark of l[1] is 12:8 (%d:%d)", k ? k->line : 0,
            k ? k->col : 0);
    k = sl_ymarks_find(&m, "i.deeper.path");
    T_CHECK(k && k->line == 9 && k->col == 1, "an unknown path falls back to its nearest ancestor");
    sl_ymarks_free(&m);

    refused("a:\n\tb: 1\n", "2:1: YAML: found character that cannot start any token");
    refused("a: 1\nb: 2\na: 3\n", "3:1: duplicate key 'a'");
    refused("a: &x 1\n", "1:4: anchors (&name) are not supported");
    refused("a: 1\nb: *x\n", "2:4: aliases (*name) are not supported");
    refused("a: !!binary aGk=\n", "1:4: tag tag:yaml.org,2002:binary is not supported");
    refused("a: !custom 1\n", "1:4: tag !custom is not supported");
    refused("a: 1\n---\nb: 2\n", "2:1: one YAML document per file");
    refused("x: ${SL_T_UNSET}\ny: ${SL_T_UNSET2}\n",
            "1:4: ${SL_T_UNSET} is not set (and has no default: ${SL_T_UNSET:-default})\n2:4: "
            "${SL_T_UNSET2} is not set");
    refused("x: ${bad-name}\n", "1:4: ${bad-name}: not a variable name");
    refused("x: ${unterminated\n", "1:4: unterminated ${");
    refused("x: ${file:/nonexistent/secret}\n", "1:4: ${file:/nonexistent/secret}: cannot read");
    {
        char deep[400] = "";
        for (int i = 0; i < 70; i++)
            strcat(deep, "[");
        refused(deep, "1:66: nested deeper than 64 levels");
    }
    return T_DONE();
}
