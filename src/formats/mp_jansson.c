#include "formats/mp_jansson.h"

#include "formats/json_mp.h"

#include <math.h>
#include <string.h>

json_t *sl_mp_to_jansson(const uint8_t **p, const uint8_t *end, int max_depth)
{
    if (max_depth < 0)
        return NULL;
    const uint8_t *q = *p;
    json_t *out = NULL;
    switch (sl_mp_type(q, end)) {
    case SL_MP_NIL:
        if (sl_mp_read_nil(&q, end) == 0)
            out = json_null();
        break;
    case SL_MP_BOOL: {
        int b;
        if (sl_mp_read_bool(&q, end, &b) == 0)
            out = json_boolean(b);
        break;
    }
    case SL_MP_INT: {
        int64_t i;
        double d;
        if (sl_mp_read_int(&q, end, &i) == 0)
            out = json_integer((json_int_t)i);
        else if (sl_mp_read_double(&q, end, &d) == 0) /* a uint64 above INT64_MAX */
            out = json_real(d);
        break;
    }
    case SL_MP_FLOAT: {
        double d;
        if (sl_mp_read_double(&q, end, &d) == 0 && isfinite(d))
            out = json_real(d);
        break;
    }
    case SL_MP_STR: {
        const char *s;
        uint32_t n;
        if (sl_mp_read_str(&q, end, &s, &n) == 0)
            out = json_stringn(s, n); /* NULL if not UTF-8 */
        break;
    }
    case SL_MP_ARRAY: {
        uint32_t n;
        if (sl_mp_read_array(&q, end, &n) < 0)
            break;
        out = json_array();
        for (uint32_t i = 0; out && i < n; i++) {
            json_t *v = sl_mp_to_jansson(&q, end, max_depth - 1);
            if (!v || json_array_append_new(out, v) < 0) {
                json_decref(out);
                out = NULL;
            }
        }
        break;
    }
    case SL_MP_MAP: {
        uint32_t n;
        if (sl_mp_read_map(&q, end, &n) < 0)
            break;
        out = json_object();
        for (uint32_t i = 0; out && i < n; i++) {
            const char *k;
            uint32_t kl;
            json_t *v = NULL;
            if (sl_mp_read_str(&q, end, &k, &kl) < 0 || memchr(k, 0, kl) || /* keys are C strings */
                !(v = sl_mp_to_jansson(&q, end, max_depth - 1)) ||
                json_object_setn_new(out, k, kl, v) < 0) {
                json_decref(out);
                out = NULL;
            }
        }
        break;
    }
    default:
        break;
    }
    if (out)
        *p = q;
    return out;
}

int sl_jansson_to_mp(const json_t *v, struct sl_buf *out, int max_depth)
{
    if (max_depth < 0)
        return -1;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (sl_mp_write_map(out, (uint32_t)json_object_size(v)) < 0)
            return -1;
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            if (sl_mp_write_str(out, k, strlen(k)) < 0 ||
                sl_jansson_to_mp(m, out, max_depth - 1) < 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (sl_mp_write_array(out, (uint32_t)json_array_size(v)) < 0)
            return -1;
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m) if (sl_jansson_to_mp(m, out, max_depth - 1) < 0) return -1;
        return 0;
    }
    case JSON_STRING:
        return sl_mp_write_str(out, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return sl_mp_write_int(out, json_integer_value(v));
    case JSON_REAL:
        return sl_mp_write_double(out, json_real_value(v));
    case JSON_TRUE:
    case JSON_FALSE:
        return sl_mp_write_bool(out, json_is_true(v));
    default:
        return sl_mp_write_nil(out);
    }
}
