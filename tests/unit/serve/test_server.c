/* The server library end to end in one process: a model repository in a temporary folder, a
 * plaintext server on free ports, and veil_serve_run_engine on the instance it serves. */
#include "../engine/model_builder.h"
#include "harness.h"

#include "veil/serve.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static void *serve_main(void *arg)
{
    if (veil_serve_run(arg) != VEIL_OK)
        abort();
    return NULL;
}

TEST(run_engine_on_the_served_instance)
{
    struct mb b;
    mb_init(&b);
    int64_t d[2] = {-1, 3};
    mb_input(&b, "x", 1, 2, d);
    mb_node(&b, "Relu", "x", "y", 0);
    mb_output(&b, "y", 1, 2, d);
    struct veil_buf onnx;
    mb_pack(&b, &onnx);
    mb_release(&b);

    char dir[] = "/tmp/veil-test-serve-XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char base[256], ver[256], file[256];
    snprintf(base, sizeof(base), "%s/m", dir);
    snprintf(ver, sizeof(ver), "%s/m/1", dir);
    snprintf(file, sizeof(file), "%s/m/1/model.onnx", dir);
    ASSERT_TRUE(mkdir(base, 0700) == 0 && mkdir(ver, 0700) == 0);
    FILE *f = fopen(file, "wb");
    ASSERT_TRUE(f != NULL);
    ASSERT_EQ_U64(fwrite(onnx.p, 1, onnx.len, f), onnx.len);
    fclose(f);
    veil_buf_release(&onnx);

    struct veil_serve_options so;
    memset(&so, 0, sizeof(so));
    so.host = "127.0.0.1";
    so.grpc_any_port = true;
    so.rest_any_port = true;
    so.model_name = "m";
    so.model_base_path = base;
    so.file_system_poll_wait_seconds = -1;
    so.plaintext = true;
    struct veil_errbuf eb = {{0}};
    struct veil_serve *s = NULL;
    ASSERT_OK(veil_serve_new(&so, &s, &eb));
    pthread_t t;
    pthread_create(&t, NULL, serve_main, s);
    for (int i = 0; i < 3000 && !veil_serve_is_ready(s); i++)
        usleep(10000);
    ASSERT_TRUE(veil_serve_is_ready(s));

    float x[6] = {-1.0f, 2.0f, -3.0f, 4.0f, -5.0f, 6.0f};
    struct veil_tensor in, out;
    memset(&in, 0, sizeof(in));
    in.dtype = VEIL_DT_FLOAT;
    in.rank = 2;
    in.dims[0] = 2;
    in.dims[1] = 3;
    in.data = x;
    in.nbytes = sizeof(x);
    ASSERT_OK(veil_serve_run_engine(s, "m", &in, 1, &out, 1, &eb));
    ASSERT_EQ_I64(out.dims[0], 2);
    for (int i = 0; i < 6; i++)
        ASSERT_TRUE(((float *)out.data)[i] == (x[i] > 0 ? x[i] : 0.0f));
    veil_tensor_release(&out);
    ASSERT_ERR(veil_serve_run_engine(s, "other", &in, 1, &out, 1, &eb), VEIL_E_NOTFOUND);
    ASSERT_STR_CONTAINS(eb.msg, "other");
    in.dims[1] = 4;
    ASSERT_ERR(veil_serve_run_engine(s, "m", &in, 1, &out, 1, &eb), VEIL_E_INVALID);

    veil_serve_stop(s);
    pthread_join(t, NULL);
    veil_serve_free(s);
    unlink(file);
    rmdir(ver);
    rmdir(base);
    rmdir(dir);
}

RUN_TESTS()
