#include "strand/note.h"

#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ALG_ED25519 0x01
#define SIG_PREFIX "\xe2\x80\x94 " /* U+2014 EM DASH, then a space */

static int name_valid(const char *s, size_t n)
{
    if (n == 0 || n > SL_NOTE_NAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '+' || (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

static uint32_t key_id(const char *name, const uint8_t pub[32])
{
    uint8_t buf[SL_NOTE_NAME_MAX + 2 + 32], h[32];
    size_t n = strlen(name);
    memcpy(buf, name, n);
    buf[n] = '\n';
    buf[n + 1] = ALG_ED25519;
    memcpy(buf + n + 2, pub, 32);
    SHA256(buf, n + 34, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

static int finish_key(struct sl_note_key *k, const char *name, size_t nlen, EVP_PKEY *pkey,
                      struct sl_err *err)
{
    size_t publen = 32;
    if (EVP_PKEY_get_raw_public_key(pkey, k->pub, &publen) != 1 || publen != 32) {
        EVP_PKEY_free(pkey);
        return sl_err_set(err, SL_E_INVAL, "invalid_key", "cannot derive the public key");
    }
    memcpy(k->name, name, nlen);
    k->name[nlen] = 0;
    k->pkey = pkey;
    k->id = key_id(k->name, k->pub);
    return 0;
}

static int write_new_key(const char *path, const char *name, struct sl_note_key *k,
                         struct sl_err *err)
{
    size_t nlen = strlen(name);
    if (!name_valid(name, nlen))
        return sl_err_set(err, SL_E_INVAL, "invalid_key",
                          "checkpoint key name '%s': no spaces or '+', at most %d bytes", name,
                          SL_NOTE_NAME_MAX);
    uint8_t seed[33];
    seed[0] = ALG_ED25519;
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    size_t sl = 32;
    if (!c || EVP_PKEY_keygen_init(c) != 1 || EVP_PKEY_keygen(c, &pkey) != 1 ||
        EVP_PKEY_get_raw_private_key(pkey, seed + 1, &sl) != 1) {
        EVP_PKEY_CTX_free(c);
        EVP_PKEY_free(pkey);
        return sl_err_set(err, SL_E_IO, "keygen_failed", "cannot generate an Ed25519 key");
    }
    EVP_PKEY_CTX_free(c);
    int rc = finish_key(k, name, nlen, pkey, err);
    if (rc)
        return rc;
    struct sl_buf b;
    sl_buf_init(&b, 0);
    sl_buf_printf(&b, "PRIVATE+KEY+%s+%08x+", k->name, k->id);
    sl_buf_base64(&b, seed, sizeof(seed));
    sl_buf_putc(&b, '\n');
    OPENSSL_cleanse(seed, sizeof(seed));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || sl_pwrite_all(fd, b.data, b.len, 0) < 0 || fsync(fd) < 0) {
        rc = sl_err_sys(err, SL_E_IO, "write checkpoint key %s", path);
        if (fd >= 0)
            unlink(path);
    }
    if (fd >= 0)
        close(fd);
    OPENSSL_cleanse(b.data, b.len);
    sl_buf_release(&b);
    if (rc) {
        sl_note_key_release(k);
        return rc;
    }
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        sl_fsync_dir(dir);
    }
    return 0;
}

int sl_note_key_load(const char *path, const char *name, struct sl_note_key *k, struct sl_err *err)
{
    memset(k, 0, sizeof(*k));
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT && name)
            return write_new_key(path, name, k, err);
        return sl_err_sys(err, SL_E_IO, "checkpoint key %s", path);
    }
    char line[512];
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    fclose(f);
    line[n] = 0;
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    /* PRIVATE+KEY+name+id+base64 (base64 may itself hold '+': split four times only) */
    char *p = line, *fields[5] = {0};
    int nf = 0;
    for (char *s; nf < 4 && (s = strsep(&p, "+"));)
        fields[nf++] = s;
    if (p)
        fields[nf++] = p;
    p = NULL;
    uint8_t seed[40];
    size_t sn = 0;
    int rc = 0;
    if (nf != 5 || p || strcmp(fields[0], "PRIVATE") || strcmp(fields[1], "KEY") ||
        !name_valid(fields[2], strlen(fields[2])) ||
        sl_base64_decode(fields[4], strlen(fields[4]), seed, sizeof(seed), &sn) < 0 || sn != 33 ||
        seed[0] != ALG_ED25519)
        rc = sl_err_set(err, SL_E_INVAL, "invalid_key",
                        "checkpoint key %s: expected PRIVATE+KEY+<name>+<id>+<base64 Ed25519 "
                        "seed>",
                        path);
    EVP_PKEY *pkey = rc ? NULL : EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed + 1, 32);
    OPENSSL_cleanse(seed, sizeof(seed));
    if (fields[4]) /* the secret part; the name and id are still needed below */
        OPENSSL_cleanse(fields[4], strlen(fields[4]));
    if (rc)
        return rc;
    if (!pkey)
        return sl_err_set(err, SL_E_INVAL, "invalid_key", "checkpoint key %s: bad Ed25519 key",
                          path);
    rc = finish_key(k, fields[2], strlen(fields[2]), pkey, err);
    char idhex[9];
    snprintf(idhex, sizeof(idhex), "%08x", k->id);
    if (rc == 0 && strcmp(idhex, fields[3]) != 0) {
        sl_note_key_release(k);
        return sl_err_set(err, SL_E_INVAL, "invalid_key",
                          "checkpoint key %s: key id %s does not match the key (%s)", path,
                          fields[3], idhex);
    }
    return rc;
}

void sl_note_key_release(struct sl_note_key *k)
{
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
}

int sl_note_vkey(const struct sl_note_key *k, struct sl_buf *out)
{
    uint8_t v[33];
    v[0] = ALG_ED25519;
    memcpy(v + 1, k->pub, 32);
    sl_buf_printf(out, "%s+%08x+", k->name, k->id);
    return sl_buf_base64(out, v, sizeof(v));
}

int sl_note_vkey_parse(const char *s, size_t len, struct sl_note_key *k, struct sl_err *err)
{
    memset(k, 0, sizeof(*k));
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        len--;
    const char *p1 = memchr(s, '+', len);
    const char *p2 = p1 ? memchr(p1 + 1, '+', len - (size_t)(p1 + 1 - s)) : NULL;
    uint8_t v[40];
    size_t vn = 0;
    uint8_t idb[4];
    if (!p1 || !p2 || !name_valid(s, (size_t)(p1 - s)) || p2 - p1 - 1 != 8 ||
        sl_hex_decode(p1 + 1, 8, idb, 4) < 0 ||
        sl_base64_decode(p2 + 1, len - (size_t)(p2 + 1 - s), v, sizeof(v), &vn) < 0 || vn != 33 ||
        v[0] != ALG_ED25519)
        return sl_err_set(err, SL_E_INVAL, "invalid_key",
                          "verifier key: expected <name>+<8 hex digits>+<base64 of 0x01 and an "
                          "Ed25519 public key>");
    memcpy(k->name, s, (size_t)(p1 - s));
    k->name[p1 - s] = 0;
    memcpy(k->pub, v + 1, 32);
    k->id = (uint32_t)idb[0] << 24 | (uint32_t)idb[1] << 16 | (uint32_t)idb[2] << 8 | idb[3];
    if (key_id(k->name, k->pub) != k->id)
        return sl_err_set(err, SL_E_INVAL, "invalid_key",
                          "verifier key: its key id does not match its name and public key");
    return 0;
}

int sl_note_sign(const struct sl_note_key *k, const char *body, size_t len, struct sl_buf *out,
                 struct sl_err *err)
{
    if (!k->pkey)
        return sl_err_set(err, SL_E_INVAL, "invalid_key", "not a signing key");
    uint8_t sig[4 + 64];
    size_t siglen = 64;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = c && EVP_DigestSignInit(c, NULL, NULL, NULL, k->pkey) == 1 &&
             EVP_DigestSign(c, sig + 4, &siglen, (const unsigned char *)body, len) == 1 &&
             siglen == 64;
    EVP_MD_CTX_free(c);
    if (!ok)
        return sl_err_set(err, SL_E_IO, "sign_failed", "Ed25519 signing failed");
    sig[0] = (uint8_t)(k->id >> 24);
    sig[1] = (uint8_t)(k->id >> 16);
    sig[2] = (uint8_t)(k->id >> 8);
    sig[3] = (uint8_t)k->id;
    sl_buf_append(out, body, len);
    sl_buf_puts(out, "\n" SIG_PREFIX);
    sl_buf_puts(out, k->name);
    sl_buf_putc(out, ' ');
    sl_buf_base64(out, sig, sizeof(sig));
    sl_buf_putc(out, '\n');
    return out->failed ? sl_err_set(err, SL_E_NOMEM, "out_of_memory", "out of memory") : 0;
}

static int ed25519_ok(const uint8_t pub[32], const uint8_t sig[64], const char *msg, size_t len)
{
    EVP_PKEY *pk = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, 32);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    int ok = pk && c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, pk) == 1 &&
             EVP_DigestVerify(c, sig, 64, (const unsigned char *)msg, len) == 1;
    EVP_MD_CTX_free(c);
    EVP_PKEY_free(pk);
    return ok;
}

int sl_note_open(const char *note, size_t len, const struct sl_note_key *v, size_t *body_len,
                 struct sl_err *err)
{
    /* the signatures start after the last "\n\n"; the text before it (with one "\n") is signed */
    size_t split = 0;
    int found = 0;
    for (size_t i = len; i >= 2; i--)
        if (note[i - 1] == '\n' && note[i - 2] == '\n') {
            split = i - 1;
            found = 1;
            break;
        }
    if (!found || len == 0 || note[len - 1] != '\n')
        return sl_err_set(err, SL_E_INVAL, "malformed_note",
                          "checkpoint: not a signed note (no blank line before the signatures, "
                          "or no final newline)");
    if (memchr(note, 0, len))
        return sl_err_set(err, SL_E_INVAL, "malformed_note", "checkpoint: contains a NUL byte");
    int named = 0;
    for (size_t p = split + 1; p < len;) {
        const char *line = note + p, *eol = memchr(line, '\n', len - p);
        size_t ll = (size_t)(eol - line);
        p += ll + 1;
        size_t pl = sizeof(SIG_PREFIX) - 1;
        const char *sp = ll > pl ? memchr(line + pl, ' ', ll - pl) : NULL;
        if (ll <= pl || memcmp(line, SIG_PREFIX, pl) != 0 || !sp)
            return sl_err_set(err, SL_E_INVAL, "malformed_note",
                              "checkpoint: malformed signature line");
        size_t nl = (size_t)(sp - line) - pl;
        if (nl != strlen(v->name) || memcmp(line + pl, v->name, nl) != 0)
            continue;
        uint8_t sig[80];
        size_t sn;
        if (sl_base64_decode(sp + 1, (size_t)(eol - sp - 1), sig, sizeof(sig), &sn) < 0 || sn != 68)
            return sl_err_set(err, SL_E_INVAL, "malformed_note",
                              "checkpoint: malformed signature by %s", v->name);
        uint32_t id =
            (uint32_t)sig[0] << 24 | (uint32_t)sig[1] << 16 | (uint32_t)sig[2] << 8 | sig[3];
        if (id != v->id)
            continue;
        named = 1;
        if (ed25519_ok(v->pub, sig + 4, note, split)) {
            *body_len = split;
            return 0;
        }
    }
    return sl_err_set(err, SL_E_INVAL, "bad_signature",
                      named ? "checkpoint: the signature by %s does not verify (the text was "
                              "changed or signed by another key)"
                            : "checkpoint: no signature by key %s",
                      v->name);
}

int sl_checkpoint_body(const char *origin, uint64_t size, const uint8_t root[SL_HASH_LEN],
                       struct sl_buf *out)
{
    sl_buf_printf(out, "%s\n%llu\n", origin, (unsigned long long)size);
    sl_buf_base64(out, root, SL_HASH_LEN);
    return sl_buf_putc(out, '\n');
}

int sl_checkpoint_parse(const char *body, size_t len, char *origin, size_t origin_cap,
                        uint64_t *size, uint8_t root[SL_HASH_LEN], struct sl_err *err)
{
    const char *line[3];
    size_t ll[3];
    size_t p = 0;
    for (int i = 0; i < 3; i++) {
        const char *eol = p < len ? memchr(body + p, '\n', len - p) : NULL;
        if (!eol)
            return sl_err_set(err, SL_E_INVAL, "malformed_checkpoint",
                              "checkpoint: expected origin, tree size and root hash lines");
        line[i] = body + p;
        ll[i] = (size_t)(eol - line[i]);
        p += ll[i] + 1;
    }
    char num[24];
    size_t rn = 0;
    if (ll[0] == 0 || ll[0] >= origin_cap || ll[1] == 0 || ll[1] >= sizeof(num))
        return sl_err_set(err, SL_E_INVAL, "malformed_checkpoint",
                          "checkpoint: bad origin or tree size line");
    for (size_t i = 0; i < ll[0]; i++)
        if ((unsigned char)line[0][i] < 0x20 || line[0][i] == 0x7f)
            return sl_err_set(err, SL_E_INVAL, "malformed_checkpoint",
                              "checkpoint: the origin line holds a control character");
    memcpy(num, line[1], ll[1]);
    num[ll[1]] = 0;
    if (sl_parse_u64(num, size) < 0 || (ll[1] > 1 && num[0] == '0'))
        return sl_err_set(err, SL_E_INVAL, "malformed_checkpoint",
                          "checkpoint: tree size is not a decimal number");
    if (sl_base64_decode(line[2], ll[2], root, SL_HASH_LEN, &rn) < 0 || rn != SL_HASH_LEN)
        return sl_err_set(err, SL_E_INVAL, "malformed_checkpoint",
                          "checkpoint: root hash is not 32 bytes of base64");
    memcpy(origin, line[0], ll[0]);
    origin[ll[0]] = 0;
    return 0;
}
