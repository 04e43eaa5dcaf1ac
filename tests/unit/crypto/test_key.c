#include "harness.h"
#include "veil/crypto.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

TEST(parse_text_key)
{
    const char *text = "VEIL-MODEL-KEY-1\n# comment\n\nid: prod-7\n"
                       "key: 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
    struct veil_model_key *k = NULL;
    ASSERT_OK(veil_model_key_parse(veil_span_from_str(text), &k, NULL));
    ASSERT_STR_EQ(k->id, "prod-7");
    ASSERT_EQ_U64(k->key[31], 0x1f);
    veil_model_key_free(k);
}

TEST(parse_raw_key)
{
    uint8_t raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (uint8_t)i;
    struct veil_model_key *k = NULL;
    ASSERT_OK(veil_model_key_parse(veil_span_make(raw, 32), &k, NULL));
    ASSERT_TRUE(strncmp(k->id, "raw-", 4) == 0);
    ASSERT_EQ_U64(strlen(k->id), 20);
    ASSERT_MEM_EQ(k->key, raw, 32);
    veil_model_key_free(k);
}

TEST(reject_bad_key_files)
{
    static const char *bad[] = {
        "",
        "something else\n",
        "VEIL-MODEL-KEY-1\nid: a\n",
        "VEIL-MODEL-KEY-1\nkey: 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "VEIL-MODEL-KEY-1\nid: a\nkey: 0001\n",
        "VEIL-MODEL-KEY-1\nid: a\nkey: "
        "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "VEIL-MODEL-KEY-1\nid: has space\nkey: "
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n",
        "VEIL-MODEL-KEY-1\nid: a\ncolour: blue\n",
        "VEIL-MODEL-KEY-1\nno colon here\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct veil_model_key *k = NULL;
        struct veil_errbuf eb = {{0}};
        veil_err rc = veil_model_key_parse(veil_span_from_str(bad[i]), &k, &eb);
        if (rc != VEIL_E_FORMAT || k != NULL || eb.msg[0] == '\0')
            HFAIL("case %zu accepted or unclear: %s", i, eb.msg);
    }
}

TEST(generate_save_load)
{
    char dir[] = "/tmp/veil-key-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof(path), "%s/m.key", dir);
    struct veil_model_key *a = NULL, *b = NULL;
    ASSERT_OK(veil_model_key_generate(NULL, &a, NULL));
    ASSERT_TRUE(strncmp(a->id, "k-", 2) == 0);
    ASSERT_OK(veil_model_key_save(a, path, NULL));
    struct stat st;
    ASSERT_EQ_I64(stat(path, &st), 0);
    ASSERT_EQ_U64(st.st_mode & 0777, 0600);
    struct veil_errbuf eb = {{0}};
    ASSERT_ERR(veil_model_key_save(a, path, &eb), VEIL_E_EXISTS);
    ASSERT_OK(veil_model_key_load(path, &b, NULL));
    ASSERT_STR_EQ(a->id, b->id);
    ASSERT_TRUE(veil_memeq_ct(a->key, b->key, 32));
    veil_model_key_free(a);
    veil_model_key_free(b);
    veil_model_key_free(NULL);
    ASSERT_ERR(veil_model_key_generate("bad id", &a, NULL), VEIL_E_INVALID);
    unlink(path);
    rmdir(dir);
}

TEST(allocation_failures_are_clean)
{
    /* Every allocation of a generate + save fails once in turn; none may crash or leak. */
    for (uint64_t n = 0; n < 20; n++) {
        struct veil_model_key *k = NULL;
        veil_alloc_fail_after(n);
        veil_err rc = veil_model_key_generate("x", &k, NULL);
        veil_alloc_fail_reset();
        if (rc == VEIL_OK) {
            veil_model_key_free(k);
            break;
        }
        ASSERT_ERR(rc, VEIL_E_NOMEM);
        ASSERT_TRUE(k == NULL);
    }
}

RUN_TESTS()
