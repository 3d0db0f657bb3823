/* Signed notes and checkpoints: key file round trip, sign/open, every way a note can be wrong,
 * the checkpoint body parser, strict base64. */
#include "core/util.h"
#include "strand/note.h"
#include "t.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void test_base64(void)
{
    uint8_t out[16];
    size_t n = 0;
    T_CHECK(sl_base64_decode("Zm9vYmFy", 8, out, sizeof(out), &n) == 0 && n == 6 &&
                memcmp(out, "foobar", 6) == 0,
            "base64: foobar");
    T_CHECK(sl_base64_decode("Zm9vYg==", 8, out, sizeof(out), &n) == 0 && n == 4 &&
                memcmp(out, "foob", 4) == 0,
            "base64: two padding characters");
    T_CHECK(sl_base64_decode("Zm9vYmE=", 8, out, sizeof(out), &n) == 0 && n == 5,
            "base64: one padding character");
    T_CHECK(sl_base64_decode("Zm9v YmE", 8, out, sizeof(out), &n) < 0,
            "base64: a space is refused");
    T_CHECK(sl_base64_decode("Zm9=YmE=", 8, out, sizeof(out), &n) < 0,
            "base64: padding in the middle is refused");
    T_CHECK(sl_base64_decode("Zm9vY", 5, out, sizeof(out), &n) < 0, "base64: bad length refused");
    T_CHECK(sl_base64_decode("Zm9vYmFyZm9vYmFyZm9vYmFy", 24, out, 16, &n) < 0,
            "base64: output longer than the buffer is refused");
}

static void test_sign_open(const char *dir)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/k", dir);
    struct sl_note_key k, k2, v, other;
    struct sl_err err = {0};
    T_EQ_INT(sl_note_key_load(path, NULL, &k, &err), SL_E_IO,
             "a missing key is not created without a name");
    T_EQ_INT(sl_note_key_load(path, "bad name", &k, &err), SL_E_INVAL,
             "a key name with a space is refused");
    T_EQ_INT(sl_note_key_load(path, "example.com/log", &k, &err), 0, "a new key is generated");
    struct stat st;
    T_CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "the key file is mode 0600");
    T_EQ_INT(sl_note_key_load(path, "ignored", &k2, &err), 0, "the key file loads again");
    T_CHECK(memcmp(k.pub, k2.pub, 32) == 0 && k.id == k2.id &&
                strcmp(k2.name, "example.com/log") == 0,
            "same key, name and id after loading");
    struct sl_buf vk;
    sl_buf_init(&vk, 0);
    sl_note_vkey(&k, &vk);
    T_EQ_INT(sl_note_vkey_parse((const char *)vk.data, vk.len, &v, &err), 0,
             "the verifier key parses");
    T_CHECK(v.id == k.id && memcmp(v.pub, k.pub, 32) == 0,
            "the verifier key carries the public key");
    vk.data[vk.len - 2] ^= 1;
    T_CHECK(sl_note_vkey_parse((const char *)vk.data, vk.len, &other, &err) != 0,
            "a verifier key whose id does not match its key is refused");
    sl_buf_release(&vk);

    uint8_t root[SL_HASH_LEN];
    memset(root, 0xab, sizeof(root));
    struct sl_buf body, note;
    sl_buf_init(&body, 0);
    sl_buf_init(&note, 0);
    sl_checkpoint_body("example.com/log/default", 12345, root, &body);
    static const char want[] =
        "example.com/log/default\n12345\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n";
    T_CHECK(body.len == sizeof(want) - 1 && memcmp(body.data, want, body.len) == 0,
            "checkpoint body: origin, size, base64 root (C2SP tlog-checkpoint)");
    T_EQ_INT(sl_note_sign(&k, (const char *)body.data, body.len, &note, &err), 0, "sign");
    size_t bl = 0;
    T_EQ_INT(sl_note_open((const char *)note.data, note.len, &v, &bl, &err), 0, "the note opens");
    T_EQ_INT(bl, body.len, "the signed text is the body");
    char origin[64];
    uint64_t size = 0;
    uint8_t r2[SL_HASH_LEN];
    T_CHECK(sl_checkpoint_parse((const char *)note.data, bl, origin, sizeof(origin), &size, r2,
                                &err) == 0 &&
                size == 12345 && memcmp(root, r2, 32) == 0 &&
                strcmp(origin, "example.com/log/default") == 0,
            "the body parses back");
    note.data[26] ^= 1; /* a digit of the size */
    T_CHECK(sl_note_open((const char *)note.data, note.len, &v, &bl, &err) != 0 &&
                strstr(err.msg, "does not verify"),
            "a changed body fails: %s", err.msg);
    note.data[26] ^= 1;
    snprintf(path, sizeof(path), "%s/k2", dir);
    T_EQ_INT(sl_note_key_load(path, "example.com/log", &other, &err), 0, "a second key, same name");
    struct sl_buf ov;
    sl_buf_init(&ov, 0);
    sl_note_vkey(&other, &ov);
    struct sl_note_key ovk;
    sl_note_vkey_parse((const char *)ov.data, ov.len, &ovk, &err);
    T_CHECK(sl_note_open((const char *)note.data, note.len, &ovk, &bl, &err) != 0 &&
                strstr(err.msg, "no signature"),
            "another key of the same name finds no signature: %s", err.msg);
    T_CHECK(sl_note_open((const char *)body.data, body.len, &v, &bl, &err) != 0,
            "an unsigned body is refused");
    static const char *bad[] = {"o\n01\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
                                "o\n-1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n",
                                "o\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6=\n",
                                "\n1\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n", "o\n1\n"};
    int refused = 0;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        refused += sl_checkpoint_parse(bad[i], strlen(bad[i]), origin, sizeof(origin), &size, r2,
                                       &err) != 0;
    T_EQ_INT(refused, 5,
             "malformed checkpoint bodies are refused (leading zero, sign, short root, "
             "empty origin, missing line)");
    sl_buf_release(&ov);
    sl_buf_release(&body);
    sl_buf_release(&note);
    sl_note_key_release(&k);
    sl_note_key_release(&k2);
    sl_note_key_release(&other);
}

int main(void)
{
    char dir[] = "/tmp/sluice-note-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    test_base64();
    test_sign_open(dir);
    char cmd[100];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    return T_DONE();
}
