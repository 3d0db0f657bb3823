/* The formats that the object-storage sink does not write yet: each answers a clear error. This
 * file goes away as ff_csv.c, ff_avro.c, ff_parquet.c and ff_compress.c land. */
#include "formats/filefmt.h"

#include <string.h>

int sl_ff_encode_avro(const struct sl_ff_opts *o, const char *strand, const struct sl_ff_record *r,
                      size_t n, struct sl_buf *out, struct sl_err *err)
{
    return sl_err_set(err, SL_E_INVAL, "unsupported_format", "format avro: not available yet");
}
