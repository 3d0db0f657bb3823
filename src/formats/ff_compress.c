/* Whole-file compression of the text formats: a gzip member (zlib), a zstd frame with its content
 * size and checksum, the snappy framing format (stream identifier, chunks of at most 64 KiB with a
 * masked CRC-32C of the uncompressed data), an LZ4 frame with content size and checksum, a brotli
 * stream (RFC 7932; brotli has no container, a .br file is the bare stream). */
#include "formats/ff_rows.h"

#include "core/crc32c.h"

#include <brotli/encode.h>
#include <lz4.h>
#include <lz4frame.h>
#include <pthread.h>
#include <snappy-c.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#define GZIP_LEVEL 6 /* zlib's default: the usual ratio of .gz files */
#define ZSTD_LEVEL 1 /* see docs/formats.md: the speed target of JSONL + zstd */
/* Brotli's quality 5 with a 4 MiB window: ~10% smaller than gzip -6 at 1.6x its time; 11 (the
 * library's default) takes 36x longer than 5 (docs/formats.md). */
#define BROTLI_QUALITY 5
#define BROTLI_LGWIN 22

static int toobig(struct sl_err *err)
{
    return sl_err_set(err, SL_E_TOOBIG, "file_too_large", "compressed file larger than the cap");
}

static int gzip(const uint8_t *in, size_t len, struct sl_buf *out, struct sl_err *err)
{
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "gzip: cannot start");
    int rc = Z_OK;
    z.next_in = (Bytef *)in;
    while (rc == Z_OK) {
        /* zlib takes uInt lengths: feed at most 1 GiB at a time */
        size_t left = len - (size_t)((const uint8_t *)z.next_in - in);
        z.avail_in = left > (1u << 30) ? (1u << 30) : (uInt)left;
        int flush = left > z.avail_in ? Z_NO_FLUSH : Z_FINISH;
        size_t want = deflateBound(&z, z.avail_in) + 64;
        if (sl_buf_reserve(out, want)) {
            deflateEnd(&z);
            return toobig(err);
        }
        z.next_out = out->data + out->len;
        z.avail_out = (uInt)(out->cap - out->len > (1u << 30) ? (1u << 30) : out->cap - out->len);
        uInt before = z.avail_out;
        rc = deflate(&z, flush);
        out->len += before - z.avail_out;
        if (rc == Z_BUF_ERROR)
            rc = Z_OK;
    }
    deflateEnd(&z);
    return rc == Z_STREAM_END ? 0 : sl_err_set(err, SL_E_IO, "compress_failed", "gzip failed");
}

static int zstd(const uint8_t *in, size_t len, struct sl_buf *out, struct sl_err *err)
{
    ZSTD_CCtx *cx = ZSTD_createCCtx();
    if (!cx)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "zstd: cannot start");
    ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(cx, ZSTD_c_contentSizeFlag, 1);
    ZSTD_CCtx_setParameter(cx, ZSTD_c_checksumFlag, 1);
    size_t bound = ZSTD_compressBound(len);
    if (sl_buf_reserve(out, bound)) {
        ZSTD_freeCCtx(cx);
        return toobig(err);
    }
    size_t n = ZSTD_compress2(cx, out->data + out->len, bound, in, len);
    ZSTD_freeCCtx(cx);
    if (ZSTD_isError(n))
        return sl_err_set(err, SL_E_IO, "compress_failed", "zstd: %s", ZSTD_getErrorName(n));
    out->len += n;
    return 0;
}

static void put_le24(uint8_t *p, size_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
}

static int snappy_framed(const uint8_t *in, size_t len, struct sl_buf *out, struct sl_err *err)
{
    static const uint8_t ident[10] = {0xff, 6, 0, 0, 's', 'N', 'a', 'P', 'p', 'Y'};
    sl_buf_append(out, ident, sizeof(ident));
    for (size_t off = 0; off < len; off += 65536) { /* empty input: the identifier alone */
        size_t n = len - off < 65536 ? len - off : 65536;
        uint32_t crc = sl_crc32c(0, in + off, n);
        uint32_t masked = ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
        size_t max = snappy_max_compressed_length(n);
        if (sl_buf_reserve(out, 8 + max))
            return toobig(err);
        uint8_t *h = out->data + out->len;
        size_t clen = max;
        if (snappy_compress((const char *)in + off, n, (char *)h + 8, &clen) != SNAPPY_OK)
            return sl_err_set(err, SL_E_IO, "compress_failed", "snappy failed");
        if (clen >= n) { /* incompressible: an uncompressed chunk */
            h[0] = 0x01;
            memcpy(h + 8, in + off, n);
            clen = n;
        } else {
            h[0] = 0x00;
        }
        put_le24(h + 1, clen + 4);
        for (int i = 0; i < 4; i++)
            h[4 + i] = (uint8_t)(masked >> (8 * i));
        out->len += 8 + clen;
    }
    return out->failed ? toobig(err) : 0;
}

static int lz4_frame(const uint8_t *in, size_t len, struct sl_buf *out, struct sl_err *err)
{
    LZ4F_preferences_t pref;
    memset(&pref, 0, sizeof(pref));
    pref.frameInfo.contentSize = len;
    pref.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    pref.frameInfo.blockSizeID = LZ4F_max4MB;
    size_t bound = LZ4F_compressFrameBound(len, &pref);
    if (sl_buf_reserve(out, bound))
        return toobig(err);
    size_t n = LZ4F_compressFrame(out->data + out->len, bound, in, len, &pref);
    if (LZ4F_isError(n))
        return sl_err_set(err, SL_E_IO, "compress_failed", "lz4: %s", LZ4F_getErrorName(n));
    out->len += n;
    return 0;
}

/* JSONL + zstd: the lines are made in slices (on the caller's thread and one helper thread) and
 * streamed in order into a zstd context with one worker thread, so compressing overlaps making the
 * next lines and the whole text is never held (memory: three slices plus zstd's job buffers plus
 * the output). The size is only known at the end, so the
 * frame is written without Frame_Content_Size and the field is put into the header afterwards
 * (RFC 8878 3.1.1.1: FCS_Field_Size flag 3, 8 bytes after the window descriptor and dictionary
 * id; nothing else in the frame depends on the header's bytes). */
#define JSONL_SLICE 2048

static int zstd_add_content_size(struct sl_buf *out, size_t start, uint64_t size)
{
    if (out->len < start + 6 || out->data[start] != 0x28 || out->data[start + 1] != 0xb5 ||
        out->data[start + 2] != 0x2f || out->data[start + 3] != 0xfd)
        return -1;
    uint8_t fhd = out->data[start + 4];
    if ((fhd >> 6) != 0 || (fhd & 0x20)) /* already has a content size (or single segment) */
        return 0;
    static const size_t did[4] = {0, 1, 2, 4};
    size_t at = start + 6 + did[fhd & 3]; /* magic, descriptor, window descriptor, dict id */
    if (at > out->len || sl_buf_reserve(out, 8))
        return -1;
    memmove(out->data + at + 8, out->data + at, out->len - at);
    for (int i = 0; i < 8; i++)
        out->data[at + (size_t)i] = (uint8_t)(size >> (8 * i));
    out->data[start + 4] = (uint8_t)(fhd | 0xc0);
    out->len += 8;
    return 0;
}

static int zstd_feed(ZSTD_CCtx *cx, const uint8_t *p, size_t len, ZSTD_EndDirective how,
                     struct sl_buf *out, struct sl_err *err)
{
    ZSTD_inBuffer in = {p, len, 0};
    for (;;) {
        if (sl_buf_reserve(out, ZSTD_CStreamOutSize()))
            return toobig(err);
        ZSTD_outBuffer ob = {out->data + out->len, out->cap - out->len, 0};
        size_t left = ZSTD_compressStream2(cx, &ob, &in, how);
        out->len += ob.pos;
        if (ZSTD_isError(left))
            return sl_err_set(err, SL_E_IO, "compress_failed", "zstd: %s", ZSTD_getErrorName(left));
        if (how == ZSTD_e_end ? left == 0 : in.pos == in.size)
            return 0;
    }
}

/* A helper thread makes the odd slices (into two buffers, taken in turn) while the caller makes
 * the even ones and feeds every slice to zstd in order. */
struct helper {
    const struct sl_ff_opts *o;
    const char *strand;
    const struct sl_ff_record *r;
    size_t n, nslices;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct sl_buf buf[2];
    size_t ready[2]; /* slice held by buf[k] + 1; 0: free */
    int rc[2];
    struct sl_err err[2];
    int stop;
};

static void *helper_run(void *arg)
{
    struct helper *h = arg;
    for (size_t k = 1; k < h->nslices; k += 2) {
        int b = (int)((k / 2) & 1);
        pthread_mutex_lock(&h->mu);
        while (h->ready[b] && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        int stop = h->stop;
        pthread_mutex_unlock(&h->mu);
        if (stop)
            break;
        size_t i = k * JSONL_SLICE, m = h->n - i < JSONL_SLICE ? h->n - i : JSONL_SLICE;
        sl_buf_reset(&h->buf[b]);
        int rc = sl_ff_encode_json(h->o, h->strand, h->r + i, m, 1, &h->buf[b], &h->err[b]);
        pthread_mutex_lock(&h->mu);
        h->rc[b] = rc;
        h->ready[b] = k + 1;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
    }
    return NULL;
}

int sl_ff_encode_jsonl_zstd(const struct sl_ff_opts *o, const char *strand,
                            const struct sl_ff_record *r, size_t n, struct sl_buf *out,
                            struct sl_err *err)
{
    ZSTD_CCtx *cx = ZSTD_createCCtx();
    if (!cx)
        return sl_err_set(err, SL_E_NOMEM, "out_of_memory", "zstd: cannot start");
    ZSTD_CCtx_setParameter(cx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(cx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cx, ZSTD_c_nbWorkers, 1); /* fails on a single-threaded libzstd: fine */
    struct helper h;
    memset(&h, 0, sizeof(h));
    h.o = o;
    h.strand = strand;
    h.r = r;
    h.n = n;
    h.nslices = (n + JSONL_SLICE - 1) / JSONL_SLICE;
    sl_buf_init(&h.buf[0], out->max);
    sl_buf_init(&h.buf[1], out->max);
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    pthread_t th;
    int threaded = h.nslices > 1 && pthread_create(&th, NULL, helper_run, &h) == 0;
    struct sl_buf tmp;
    sl_buf_init(&tmp, out->max);
    size_t start = out->len;
    uint64_t total = 0;
    int rc = 0;
    for (size_t k = 0; k < h.nslices && !rc; k++) {
        size_t i = k * JSONL_SLICE, m = n - i < JSONL_SLICE ? n - i : JSONL_SLICE;
        const struct sl_buf *slice = &tmp;
        int b = (int)((k / 2) & 1);
        if (k % 2 == 1 && threaded) {
            pthread_mutex_lock(&h.mu);
            while (h.ready[b] != k + 1)
                pthread_cond_wait(&h.cv, &h.mu);
            pthread_mutex_unlock(&h.mu);
            rc = h.rc[b];
            if (rc && err)
                *err = h.err[b];
            slice = &h.buf[b];
        } else {
            sl_buf_reset(&tmp);
            rc = sl_ff_encode_json(o, strand, r + i, m, 1, &tmp, err);
        }
        if (!rc)
            rc = zstd_feed(cx, slice->data, slice->len, ZSTD_e_continue, out, err);
        total += slice->len;
        if (slice != &tmp) { /* hand the buffer back */
            pthread_mutex_lock(&h.mu);
            h.ready[b] = 0;
            pthread_cond_broadcast(&h.cv);
            pthread_mutex_unlock(&h.mu);
        }
    }
    if (threaded) {
        pthread_mutex_lock(&h.mu);
        h.stop = 1;
        pthread_cond_broadcast(&h.cv);
        pthread_mutex_unlock(&h.mu);
        pthread_join(th, NULL);
    }
    if (!rc)
        rc = zstd_feed(cx, NULL, 0, ZSTD_e_end, out, err);
    if (!rc && zstd_add_content_size(out, start, total))
        rc = out->failed ? toobig(err)
                         : sl_err_set(err, SL_E_IO, "compress_failed", "zstd: unexpected header");
    ZSTD_freeCCtx(cx);
    sl_buf_release(&tmp);
    sl_buf_release(&h.buf[0]);
    sl_buf_release(&h.buf[1]);
    pthread_mutex_destroy(&h.mu);
    pthread_cond_destroy(&h.cv);
    return rc;
}

/* One brotli stream: a Parquet page (the BROTLI codec's raw stream) or a whole .br file. */
static int brotli(const uint8_t *in, size_t len, struct sl_buf *out, struct sl_err *err)
{
    size_t max = BrotliEncoderMaxCompressedSize(len);
    if (max == 0 || sl_buf_reserve(out, max))
        return toobig(err);
    if (!BrotliEncoderCompress(BROTLI_QUALITY, BROTLI_LGWIN, BROTLI_MODE_GENERIC, len, in, &max,
                               out->data + out->len))
        return sl_err_set(err, SL_E_IO, "compress_failed", "brotli failed");
    out->len += max;
    return 0;
}

int sl_ff_compress_block(enum sl_ff_codec codec, const uint8_t *in, size_t len, struct sl_buf *out,
                         struct sl_err *err)
{
    if (codec == SL_FF_SNAPPY) {
        size_t max = snappy_max_compressed_length(len);
        if (sl_buf_reserve(out, max))
            return toobig(err);
        if (snappy_compress((const char *)in, len, (char *)out->data + out->len, &max) != SNAPPY_OK)
            return sl_err_set(err, SL_E_IO, "compress_failed", "snappy failed");
        out->len += max;
        return 0;
    }
    if (codec == SL_FF_LZ4) {
        if (len > LZ4_MAX_INPUT_SIZE)
            return toobig(err);
        int max = LZ4_compressBound((int)len);
        if (sl_buf_reserve(out, (size_t)max))
            return toobig(err);
        int n = LZ4_compress_default((const char *)in, (char *)out->data + out->len, (int)len, max);
        if (n <= 0 && len > 0)
            return sl_err_set(err, SL_E_IO, "compress_failed", "lz4 failed");
        out->len += (size_t)n;
        return 0;
    }
    if (codec == SL_FF_BROTLI)
        return brotli(in, len, out, err);
    return sl_ff_compress(codec, in, len, out, err);
}

int sl_ff_compress(enum sl_ff_codec codec, const uint8_t *in, size_t len, struct sl_buf *out,
                   struct sl_err *err)
{
    switch (codec) {
    case SL_FF_NONE:
        return sl_buf_append(out, in, len) == 0 ? 0 : toobig(err);
    case SL_FF_GZIP:
        return gzip(in, len, out, err);
    case SL_FF_ZSTD:
        return zstd(in, len, out, err);
    case SL_FF_SNAPPY:
        return snappy_framed(in, len, out, err);
    case SL_FF_LZ4:
        return lz4_frame(in, len, out, err);
    case SL_FF_BROTLI:
        return brotli(in, len, out, err);
    default:
        return sl_err_set(err, SL_E_INVAL, "unsupported_compression",
                          "compression: not available for whole files");
    }
}
