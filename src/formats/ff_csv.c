/* CSV writer (RFC 4180 style): a header row of the column names, then one line per record. Values
 * keep their own representation (no promotion: CSV has no types): strings as they are, numbers and
 * booleans as JSON prints them, nested maps/arrays as compact JSON text; a field is quoted when it
 * holds the delimiter, the quote character, CR or LF (or always, with always_quote), the quote
 * character doubled inside. Null and missing values are null_value, never quoted. */
#include "formats/ff_rows.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_ROWS 4096

int sl_ff_encode_csv(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                     size_t n, struct sl_buf *out, struct sl_err *err)
{
    struct sl_ff_schema s;
    struct sl_ff_chunk c;
    struct sl_buf tmp;
    memset(&c, 0, sizeof(c));
    sl_buf_init(&tmp, 0);
    long *cols = NULL;
    size_t ncols = 0;
    const char *eol = o->csv.crlf ? "\r\n" : "\n";
    char d = o->csv.delimiter, q = o->csv.quote;
    int rc = sl_ff_schema_infer(&s, o->include_metadata, strand, r, n, err);
    if (rc)
        goto done;
    ncols = o->csv.columns ? o->csv.ncolumns : s.ncols;
    cols = calloc(ncols ? ncols : 1, sizeof(*cols));
    if (!cols) {
        rc = sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory");
        goto done;
    }
    for (size_t k = 0; k < ncols; k++) /* an explicit column absent from the batch: all null */
        cols[k] = o->csv.columns
                      ? sl_ff_schema_find(&s, o->csv.columns[k], strlen(o->csv.columns[k]))
                      : (long)k;
    if (o->csv.include_header) {
        for (size_t k = 0; k < ncols; k++) {
            if (k)
                sl_buf_putc(out, (uint8_t)d);
            if (o->csv.columns)
                sl_ff_csv_field(out, o->csv.columns[k], strlen(o->csv.columns[k]), d, q,
                                o->csv.always_quote);
            else
                sl_ff_csv_field(out, s.cols[k].name, s.cols[k].name_len, d, q, o->csv.always_quote);
        }
        sl_buf_puts(out, eol);
    }
    for (size_t from = 0; from < n && !out->failed; from += CHUNK_ROWS) {
        size_t m = n - from < CHUNK_ROWS ? n - from : CHUNK_ROWS;
        if ((rc = sl_ff_chunk_fill(&c, &s, r + from, m, 0, err)))
            goto done;
        for (size_t i = 0; i < m; i++) {
            for (size_t k = 0; k < ncols; k++) {
                if (k)
                    sl_buf_putc(out, (uint8_t)d);
                const struct sl_ff_val *v = cols[k] >= 0 ? sl_ff_at(&c, (size_t)cols[k], i) : NULL;
                if (!v || v->type == SL_FT_NULL) {
                    sl_buf_puts(out, o->csv.null_value ? o->csv.null_value : "");
                } else if (v->type == SL_FT_STRING) {
                    sl_ff_csv_field(out, v->v.s, v->len, d, q, o->csv.always_quote);
                } else {
                    sl_buf_reset(&tmp);
                    sl_ff_put_text(&tmp, v);
                    sl_ff_csv_field(out, (const char *)tmp.data, tmp.len, d, q,
                                    o->csv.always_quote);
                }
            }
            sl_buf_puts(out, eol);
        }
    }
    if (out->failed)
        rc = sl_err_set(err, SL_E_TOOBIG, "file_too_large", "file larger than the buffer cap");
done:
    free(cols);
    sl_buf_release(&tmp);
    sl_ff_chunk_release(&c);
    sl_ff_schema_release(&s);
    return rc;
}
