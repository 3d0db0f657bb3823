/* The connector kinds table: validation with field paths, defaults, redaction, and the rule
 * that a secret sent back as "***" keeps the stored value. */
#include "engine/kinds.h"
#include "t.h"

#include <stdlib.h>

static json_t *J(const char *s)
{
    json_error_t e;
    json_t *o = json_loads(s, 0, &e);
    if (!o)
        abort();
    return o;
}

static void expect_err(const char *kind, const char *cfg, const char *needle)
{
    struct sl_err err = {0};
    json_t *in = J(cfg);
    json_t *out = sl_kind_validate(sl_kind_find(kind), in, &err);
    T_CHECK(!out && err.code == SL_E_INVAL && strstr(err.msg, needle),
            "%s %s rejected naming %s (\"%s\")", kind, cfg, needle, err.msg);
    json_decref(out);
    json_decref(in);
}

/* connection_string: what libpq's parser accepts, URI or key=value, and never an echoed password */
static void conninfo_checks(void)
{
    static const char *const good[] = {"postgres://app:pa:ss@db:5432/shop",
                                       "postgresql://db/shop?sslmode=require",
                                       "postgres://",
                                       "host=db user=app password=hunter2 dbname=shop",
                                       "host=db password='it\\'s a secret' dbname=shop",
                                       "dbname=shop"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        json_t *in = json_pack("{s:s}", "connection_string", good[i]);
        struct sl_err err = {0};
        json_t *out = sl_kind_validate(sl_kind_find("postgres_cdc"), in, &err);
        T_CHECK(out != NULL, "connection_string %s is accepted (%s)", good[i], out ? "" : err.msg);
        json_decref(out);
        json_decref(in);
    }
    static const struct {
        const char *s, *needle, *secret;
    } bad[] = {
        {"mysql://x", "missing \"=\" after \"mysql://x\"", NULL},
        {"hello", "missing \"=\"", NULL},
        {"", "it is empty", NULL},
        {"   ", "it is empty", NULL},
        {"POSTGRES://h/db", "missing \"=\"", NULL},
        {"host=db foo=bar", "invalid connection option \"foo\"", NULL},
        {"host=db password='s3cretpw", "unterminated quoted string", "s3cretpw"},
        {"postgres://u:s3cretpw@[::1/db", "postgres://u:***@[::1/db", "s3cretpw"},
        {"postgres://u:ab%zzs3cret@h/db", "percent-encoded token: \"***\"", "s3cret"},
        {"postgres://h/db?password=ab%zzs3cret", "percent-encoded token: \"***\"", "s3cret"},
        {"postgresql://u:p@ss:w@db/shop?x=a@b", "invalid URI query parameter: \"x\"", "p@ss:w"},
        {"postgres://u:\"pw\"@[::1/db", "postgres://u:***@[::1/db", "\"pw\""},
        {"host=h \"pw", "missing \"=\" after \"\"pw\"", NULL},
        {"mysql://app:s3cretpw@db/shop", "missing \"=\" after \"mysql://app:***@db/shop\"",
         "s3cretpw"},
        {"app:s3cret@pw@db:5432/shop", "after \"app:***@db:5432/shop\"", "s3cret"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *in = json_pack("{s:s}", "connection_string", bad[i].s);
        struct sl_err err = {0};
        json_t *out = sl_kind_validate(sl_kind_find("postgres_cdc"), in, &err);
        T_CHECK(!out && err.code == SL_E_INVAL && strcmp(err.ecode, "invalid_config") == 0 &&
                    strncmp(err.msg, "config.connection_string: ", 26) == 0 &&
                    strstr(err.msg, bad[i].needle) &&
                    !(bad[i].secret && strstr(err.msg, bad[i].secret)),
                "connection_string '%s' refused, saying %s%s (\"%s\")", bad[i].s, bad[i].needle,
                bad[i].secret ? ", without the password" : "", err.msg);
        json_decref(out);
        json_decref(in);
    }
}

int main(void)
{
    T_CHECK(sl_kind_find("webhook") && sl_kind_find("s3") && sl_kind_find("rest_bridge") &&
                sl_kind_find("postgres_cdc") && sl_kind_find("kafka") && !sl_kind_find("nope"),
            "the five kinds are known, others are not");
    struct sl_err err = {0};
    json_t *in = J("{\"url\":\"https://h/x\",\"secret\":\"s3cr3t\",\"retry\":{\"max_retries\":3}}");
    json_t *cfg = sl_kind_validate(sl_kind_find("webhook"), in, &err);
    T_CHECK(cfg && json_integer_value(json_object_get(cfg, "batch_size")) == 1 &&
                json_integer_value(json_object_get(json_object_get(cfg, "retry"), "max_retries")) ==
                    3 &&
                json_integer_value(
                    json_object_get(json_object_get(cfg, "retry"), "initial_backoff_ms")) == 200,
            "defaults are filled in, nested ones too, given values kept");
    json_t *red = sl_kind_redact(sl_kind_find("webhook"), cfg);
    T_EQ_STR(json_string_value(json_object_get(red, "secret")), "***", "secret redacted");
    T_EQ_STR(json_string_value(json_object_get(cfg, "secret")), "s3cr3t",
             "redaction works on a copy");
    /* PATCH sends the redacted config back: the secret is kept */
    json_t *patch = json_deep_copy(red);
    sl_kind_keep_secrets(sl_kind_find("webhook"), patch, cfg);
    T_EQ_STR(json_string_value(json_object_get(patch, "secret")), "s3cr3t",
             "\"***\" sent back keeps the stored secret");
    json_object_set_new(patch, "secret", json_string("new"));
    sl_kind_keep_secrets(sl_kind_find("webhook"), patch, cfg);
    T_EQ_STR(json_string_value(json_object_get(patch, "secret")), "new",
             "a new secret replaces the stored one");
    json_decref(patch);
    json_decref(red);
    json_decref(cfg);
    json_decref(in);

    in = J("{\"connection_string\":\"postgres://app:pa:ss@db:5432/shop\"}");
    cfg = sl_kind_validate(sl_kind_find("postgres_cdc"), in, &err);
    red = sl_kind_redact(sl_kind_find("postgres_cdc"), cfg);
    T_EQ_STR(json_string_value(json_object_get(red, "connection_string")),
             "postgres://app:***@db:5432/shop", "URL connection string: password masked");
    patch = json_deep_copy(red);
    sl_kind_keep_secrets(sl_kind_find("postgres_cdc"), patch, cfg);
    T_EQ_STR(json_string_value(json_object_get(patch, "connection_string")),
             "postgres://app:pa:ss@db:5432/shop", "the masked string sent back keeps the password");
    json_decref(patch);
    json_decref(red);
    json_decref(cfg);
    json_decref(in);
    /* libpq refuses this one (query parameter x), but a config stored before that check may hold
     * such a string: redaction still masks the whole password */
    in = J("{\"connection_string\":\"postgresql://u:p@ss:w@db/shop?x=a@b\"}");
    red = sl_kind_redact(sl_kind_find("postgres_cdc"), in);
    T_EQ_STR(json_string_value(json_object_get(red, "connection_string")),
             "postgresql://u:***@db/shop?x=a@b", "a password holding '@' is masked whole");
    json_decref(red);
    json_decref(in);
    in = J("{\"connection_string\":\"host=db user=app password=hunter2 dbname=shop\"}");
    cfg = sl_kind_validate(sl_kind_find("postgres_cdc"), in, &err);
    red = sl_kind_redact(sl_kind_find("postgres_cdc"), cfg);
    T_EQ_STR(json_string_value(json_object_get(red, "connection_string")),
             "host=db user=app password=*** dbname=shop", "key=value connection string masked");
    json_decref(red);
    json_decref(cfg);
    json_decref(in);

    expect_err("webhook", "{}", "config.url");
    expect_err("webhook", "{\"url\":\"http://a\",\"retry\":{\"max_retries\":-2}}",
               "config.retry.max_retries");
    expect_err("webhook", "{\"url\":\"http://a\",\"retry\":{\"nope\":1}}", "config.retry.nope");
    expect_err("webhook", "{\"url\":\"http://a\",\"start\":\"x\"}", "config.start");
    expect_err("kafka", "{\"brokers\":[1],\"topic\":\"t\"}", "config.brokers");
    expect_err("rest_bridge", "{\"rate_limit\":{\"events_per_second\":0}}",
               "config.rate_limit.events_per_second");
    expect_err("rest_bridge", "{\"flags\":4294967296}", "config.flags");
    expect_err("postgres_cdc", "{\"host\":\"h\"}", "config.database");
    conninfo_checks();
    expect_err("s3", "{\"endpoint\":\"http://a\",\"bucket\":\"b\",\"secret_access_key\":\"k\"}",
               "config.access_key_id");
    /* an empty string counts where leaving the field out would be refused, as spelled */
    expect_err("object_storage", "{\"s3.bucket\":\"\"}", "config.s3.bucket: required, must not be");
    expect_err("s3", "{\"endpoint\":\"http://a\",\"bucket\":\"\"}", "config.bucket: required");
    expect_err("kafka", "{\"brokers\":[\"b:9092\"],\"topic\":\"\"}", "config.topic");
    /* a nested spelling is checked after normalization (found by fuzz_objstore_config) */
    expect_err("object_storage", "{\"provider\":\"local\",\"local\":{\"root\":\"\"}}",
               "config.root: required, must not be empty");
    {
        json_t *e_in = J("{\"s3.bucket\":\"b\",\"s3.prefix\":\"\"}");
        struct sl_err e_err = {0};
        json_t *out = sl_kind_validate(sl_kind_find("object_storage"), e_in, &e_err);
        T_CHECK(out != NULL, "an empty string a field may be (s3.prefix) is kept (%s)", e_err.msg);
        json_decref(out);
        json_decref(e_in);
    }
    {
        json_t *s_in = J("{\"s3.secret_access_key\":\"k\",\"connection.url\":"
                         "\"postgres://u:pw@h/db\",\"db.password\":\"x\",\"s3.bucket\":\"b\"}");
        json_t *r = sl_kind_redact_spelled(sl_kind_find("object_storage"), s_in);
        T_CHECK(strcmp(json_string_value(json_object_get(r, "s3.secret_access_key")), "***") == 0 &&
                    strcmp(json_string_value(json_object_get(r, "connection.url")),
                           "postgres://u:***@h/db") == 0 &&
                    strcmp(json_string_value(json_object_get(r, "db.password")), "***") == 0 &&
                    strcmp(json_string_value(json_object_get(r, "s3.bucket")), "b") == 0,
                "secrets in a config as a client spelled it are masked, the rest kept");
        json_decref(r);
        json_decref(s_in);
    }

    json_t *d = sl_kind_describe(sl_kind_find("s3"));
    T_CHECK(json_array_size(json_object_get(d, "fields")) >= 8 &&
                strcmp(json_string_value(json_object_get(d, "direction")), "outbound") == 0,
            "the catalog describes a kind's fields and direction");
    json_decref(d);
    return T_DONE();
}
