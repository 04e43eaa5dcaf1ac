/*
 * LSTM, GRU and RNN on models built in the test, against a naive double-precision reference
 * written from ONNX's equations, at what the node tests leave out: bidirectional runs with
 * sequence_lens of unequal lengths (0 and full among them), layout 1, batch above 1, hidden
 * sizes that are not multiples of 16, clip, peepholes with input_forget, both GRU reset forms,
 * every activation with alpha and beta values, weights as graph inputs (transposed during the
 * run) and as initializers, omitted outputs, and enough batch rows for the gate kernels to
 * split over threads. Each case runs with the widest vector kernels the CPU has, with the
 * AVX2 ones and with the portable ones. Then the refusals: shapes that disagree with
 * hidden_size, bad directions, layouts, clips and activation lists, sequence lengths out of
 * range (at run time), non-float inputs; each error names the node and the problem.
 */
#include "harness.h"
#include "engine_test.h"
#include "model_builder.h"

#include "engine_int.h"
#include "veil/engine.h"

#include <math.h>

#define MAXD 2
#define REF_MAXH 128 /* the reference's largest hidden size */

struct spec {
    const char *op;  /* LSTM, GRU or RNN */
    const char *dir; /* NULL: the default (forward) */
    int layout;
    int64_t S, B, I, H;
    bool bias, h0, c0, peep, runtime_w;
    const int32_t *lens; /* NULL: no sequence_lens input */
    float clip;          /* 0: none */
    int input_forget, lbr;
    const char *const *acts;
    size_t n_acts;
    const float *alpha, *beta;
    size_t n_alpha, n_beta;
    bool skip_out[3]; /* outputs left out (Y, Y_h, Y_c) */
    int64_t opset;
};

/* ---- Reference ---- */

struct ract {
    char name[24];
    double a, b;
};

static double ref_act(const struct ract *a, double x)
{
    const char *n = a->name;
    if (strcmp(n, "Sigmoid") == 0)
        return 1.0 / (1.0 + exp(-x));
    if (strcmp(n, "Tanh") == 0)
        return tanh(x);
    if (strcmp(n, "Relu") == 0)
        return x > 0 ? x : 0;
    if (strcmp(n, "Affine") == 0)
        return a->a * x + a->b;
    if (strcmp(n, "LeakyRelu") == 0)
        return x >= 0 ? x : a->a * x;
    if (strcmp(n, "ThresholdedRelu") == 0)
        return x > a->a ? x : 0;
    if (strcmp(n, "ScaledTanh") == 0)
        return a->a * tanh(a->b * x);
    if (strcmp(n, "HardSigmoid") == 0)
        return fmax(0.0, fmin(1.0, a->a * x + a->b));
    if (strcmp(n, "Elu") == 0)
        return x >= 0 ? x : a->a * (exp(x) - 1.0);
    if (strcmp(n, "Softsign") == 0)
        return x / (1.0 + fabs(x));
    if (strcmp(n, "Softplus") == 0)
        return log(1.0 + exp(x));
    abort();
}

/* The activations of each direction, alpha and beta taken in order by those that use them. */
static void ref_acts(const struct spec *sp, size_t per, int dirs, struct ract acts[MAXD][3])
{
    static const char *const def[3][3] = {
        {"Sigmoid", "Tanh", "Tanh"}, {"Sigmoid", "Tanh"}, {"Tanh"}};
    int kind = strcmp(sp->op, "LSTM") == 0 ? 0 : strcmp(sp->op, "GRU") == 0 ? 1 : 2;
    size_t ai = 0, bi = 0;
    for (int d = 0; d < dirs; d++)
        for (size_t k = 0; k < per; k++) {
            struct ract *a = &acts[d][k];
            const char *n = sp->n_acts ? sp->acts[(size_t)d * per + k] : def[kind][k];
            memset(a, 0, sizeof(*a));
            snprintf(a->name, sizeof(a->name), "%s", n);
            bool ua = strcmp(n, "Affine") == 0 || strcmp(n, "LeakyRelu") == 0 ||
                      strcmp(n, "ThresholdedRelu") == 0 || strcmp(n, "ScaledTanh") == 0 ||
                      strcmp(n, "HardSigmoid") == 0 || strcmp(n, "Elu") == 0;
            bool ub = strcmp(n, "Affine") == 0 || strcmp(n, "ScaledTanh") == 0 ||
                      strcmp(n, "HardSigmoid") == 0;
            a->a = strcmp(n, "LeakyRelu") == 0 ? 0.01 : strcmp(n, "HardSigmoid") == 0 ? 0.2 : 1.0;
            a->b = strcmp(n, "HardSigmoid") == 0 ? 0.5 : strcmp(n, "ScaledTanh") == 0 ? 1.0 : 0.0;
            if (ua && ai < sp->n_alpha)
                a->a = sp->alpha[ai++];
            if (ub && bi < sp->n_beta)
                a->b = sp->beta[bi++];
        }
}

struct data {
    float *x, *w, *r, *bias, *h0, *c0, *p;
    int32_t lens[128];
};

static double clipd(const struct spec *sp, double v)
{
    if (sp->clip <= 0)
        return v;
    return v > sp->clip ? sp->clip : v < -sp->clip ? -sp->clip : v;
}

/* Y [S, D, B, H] or [B, S, D, H]; Y_h and Y_c [D, B, H] or [B, D, H], all zeroed first. */
static void reference(const struct spec *sp, const struct data *dt, int dirs, size_t G, double *y,
                      double *yh, double *yc)
{
    int64_t S = sp->S, B = sp->B, I = sp->I, H = sp->H, GH = (int64_t)G * H;
    size_t per = G == 4 ? 3 : G == 3 ? 2 : 1;
    struct ract acts[MAXD][3];
    ref_acts(sp, per, dirs, acts);
    double h[REF_MAXH], c[REF_MAXH], hn[REF_MAXH], cn[REF_MAXH], rh[REF_MAXH];
    double gx[4 * REF_MAXH], gh[4 * REF_MAXH];
    if (H > REF_MAXH)
        abort();
    for (int d = 0; d < dirs; d++) {
        bool rev = d == 1 || (sp->dir != NULL && strcmp(sp->dir, "reverse") == 0);
        const float *W = dt->w + d * GH * I, *R = dt->r + d * GH * H;
        const float *Wb = sp->bias ? dt->bias + d * 2 * GH : NULL, *Rb = Wb ? Wb + GH : NULL;
        const float *P = sp->peep ? dt->p + d * 3 * H : NULL;
        for (int64_t b = 0; b < B; b++) {
            int64_t srow = sp->layout ? b * dirs + d : d * B + b;
            for (int64_t k = 0; k < H; k++) {
                h[k] = sp->h0 ? dt->h0[srow * H + k] : 0;
                c[k] = sp->c0 ? dt->c0[srow * H + k] : 0;
            }
            int64_t L = sp->lens ? dt->lens[b] : S;
            for (int64_t s = 0; s < L; s++) {
                int64_t t = rev ? L - 1 - s : s;
                const float *xt = dt->x + (sp->layout ? b * S + t : t * B + b) * I;
                for (int64_t j = 0; j < GH; j++) {
                    double ax = Wb ? Wb[j] : 0, ah = Rb ? Rb[j] : 0;
                    for (int64_t k = 0; k < I; k++)
                        ax += (double)W[j * I + k] * xt[k];
                    for (int64_t k = 0; k < H; k++)
                        ah += (double)R[j * H + k] * h[k];
                    gx[j] = ax;
                    gh[j] = ah;
                }
                for (int64_t k = 0; k < H; k++) {
                    if (G == 4) {
                        double pi = P ? P[k] : 0, po = P ? P[H + k] : 0, pf = P ? P[2 * H + k] : 0;
                        double i = ref_act(&acts[d][0], clipd(sp, gx[k] + gh[k] + pi * c[k]));
                        double f =
                            sp->input_forget
                                ? 1.0 - i
                                : ref_act(&acts[d][0],
                                          clipd(sp, gx[2 * H + k] + gh[2 * H + k] + pf * c[k]));
                        double g = ref_act(&acts[d][1], clipd(sp, gx[3 * H + k] + gh[3 * H + k]));
                        cn[k] = f * c[k] + i * g;
                        double o =
                            ref_act(&acts[d][0], clipd(sp, gx[H + k] + gh[H + k] + po * cn[k]));
                        hn[k] = o * ref_act(&acts[d][2], cn[k]);
                    } else if (G == 1) {
                        hn[k] = ref_act(&acts[d][0], clipd(sp, gx[k] + gh[k]));
                    }
                }
                if (G == 3) {
                    double z[REF_MAXH], r[REF_MAXH];
                    for (int64_t k = 0; k < H; k++) {
                        z[k] = ref_act(&acts[d][0], clipd(sp, gx[k] + gh[k]));
                        r[k] = ref_act(&acts[d][0], clipd(sp, gx[H + k] + gh[H + k]));
                        rh[k] = r[k] * h[k];
                    }
                    for (int64_t k = 0; k < H; k++) {
                        double pre;
                        if (sp->lbr) {
                            pre = gx[2 * H + k] + r[k] * gh[2 * H + k];
                        } else {
                            pre = gx[2 * H + k] + (Rb ? Rb[2 * H + k] : 0);
                            for (int64_t q = 0; q < H; q++)
                                pre += (double)R[(2 * H + k) * H + q] * rh[q];
                        }
                        double hh = ref_act(&acts[d][1], clipd(sp, pre));
                        hn[k] = (1 - z[k]) * hh + z[k] * h[k];
                    }
                }
                memcpy(h, hn, (size_t)H * sizeof(double));
                memcpy(c, cn, (size_t)H * sizeof(double));
                int64_t yrow = sp->layout ? (b * S + t) * dirs + d : (t * dirs + d) * B + b;
                for (int64_t k = 0; k < H; k++)
                    y[yrow * H + k] = h[k];
            }
            for (int64_t k = 0; k < H && L > 0; k++) {
                yh[srow * H + k] = h[k];
                yc[srow * H + k] = c[k];
            }
        }
    }
}

/* ---- Models ---- */

static VeilOnnx__AttributeProto *attr_strs(struct mb *b, const char *name, const char *const *v,
                                           size_t n)
{
    VeilOnnx__AttributeProto *a =
        mb_attr_new(b, name, VEIL_ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS);
    a->n_strings = n;
    a->strings = mb_alloc(b, (n + 1) * sizeof(*a->strings));
    for (size_t i = 0; i < n; i++) {
        a->strings[i].data = (uint8_t *)mb_str(b, v[i]);
        a->strings[i].len = strlen(v[i]);
    }
    return a;
}

static void fill(float *v, size_t n, float scale, uint32_t *seed)
{
    for (size_t i = 0; i < n; i++)
        v[i] = rnd(seed) * scale;
}

/* dst = the n names joined by commas (empty names keep their place). */
static void join(char *dst, size_t cap, const char *const *names, size_t n)
{
    size_t len = 0;
    dst[0] = '\0';
    for (size_t k = 0; k < n && len < cap; k++)
        len += (size_t)snprintf(dst + len, cap - len, "%s%s", names[k], k + 1 < n ? "," : "");
}

/* Builds the model of sp (its inputs in the order of ins[]), returns the packed bytes. */
static void build(const struct spec *sp, const struct data *dt, int dirs, size_t G,
                  struct veil_buf *out)
{
    struct mb b;
    mb_init(&b);
    if (sp->opset)
        b.opset = sp->opset;
    int64_t S = sp->S, B = sp->B, I = sp->I, H = sp->H, GH = (int64_t)G * H;
    int64_t xd[3] = {sp->layout ? B : S, sp->layout ? S : B, I};
    int64_t wd[3] = {dirs, GH, I}, rd[3] = {dirs, GH, H}, bd[2] = {dirs, 2 * GH};
    int64_t sd[3] = {sp->layout ? B : dirs, sp->layout ? dirs : B, H}, ld[1] = {B};
    int64_t pd[2] = {dirs, 3 * H};
    mb_input(&b, "X", 1, 3, xd);
    if (sp->runtime_w) {
        mb_input(&b, "W", 1, 3, wd);
        mb_input(&b, "R", 1, 3, rd);
        if (sp->bias)
            mb_input(&b, "B", 1, 2, bd);
    } else {
        mb_init_f(&b, "W", 3, wd, dt->w);
        mb_init_f(&b, "R", 3, rd, dt->r);
        if (sp->bias)
            mb_init_f(&b, "B", 2, bd, dt->bias);
    }
    if (sp->lens)
        mb_input(&b, "L", 6, 1, ld);
    if (sp->h0)
        mb_input(&b, "H0", 1, 3, sd);
    if (sp->c0)
        mb_input(&b, "C0", 1, 3, sd);
    if (sp->peep)
        mb_init_f(&b, "P", 2, pd, dt->p);
    char ins[64], outs[32];
    const char *slot[8] = {"X",
                           "W",
                           "R",
                           sp->bias ? "B" : "",
                           sp->lens ? "L" : "",
                           sp->h0 ? "H0" : "",
                           sp->c0 ? "C0" : "",
                           sp->peep ? "P" : ""};
    size_t last = 2;
    for (size_t k = 3; k < 8; k++)
        if (slot[k][0])
            last = k;
    join(ins, sizeof(ins), slot, last + 1);
    size_t n_out = G == 4 ? 3 : 2, lo = 0;
    const char *on[3] = {"Y", "Yh", "Yc"};
    for (size_t k = 0; k < n_out; k++)
        if (!sp->skip_out[k])
            lo = k;
    const char *oslot[3];
    for (size_t k = 0; k <= lo; k++)
        oslot[k] = sp->skip_out[k] ? "" : on[k];
    join(outs, sizeof(outs), oslot, lo + 1);
    VeilOnnx__AttributeProto *at[12];
    size_t na = 0;
    at[na++] = mb_attr_i(&b, "hidden_size", H);
    if (sp->dir)
        at[na++] = mb_attr_s(&b, "direction", sp->dir);
    if (sp->layout)
        at[na++] = mb_attr_i(&b, "layout", 1);
    if (sp->clip > 0)
        at[na++] = mb_attr_f(&b, "clip", sp->clip);
    if (sp->input_forget)
        at[na++] = mb_attr_i(&b, "input_forget", 1);
    if (sp->lbr)
        at[na++] = mb_attr_i(&b, "linear_before_reset", 1);
    if (sp->n_acts)
        at[na++] = attr_strs(&b, "activations", sp->acts, sp->n_acts);
    if (sp->n_alpha)
        at[na++] = mb_attr_floats(&b, "activation_alpha", sp->n_alpha, sp->alpha);
    if (sp->n_beta)
        at[na++] = mb_attr_floats(&b, "activation_beta", sp->n_beta, sp->beta);
    VeilOnnx__NodeProto *node = mb_node(&b, sp->op, ins, outs, 0);
    node->n_attribute = na;
    node->attribute = mb_alloc(&b, (na + 1) * sizeof(*node->attribute));
    memcpy(node->attribute, at, na * sizeof(*at));
    int64_t yd[4] = {S, dirs, B, H}, y1[4] = {B, S, dirs, H};
    for (size_t k = 0; k < n_out; k++) {
        if (sp->skip_out[k])
            continue;
        if (k == 0)
            mb_output(&b, "Y", 1, 4, sp->layout ? y1 : yd);
        else
            mb_output(&b, on[k], 1, 3, sd);
    }
    mb_pack(&b, out);
    mb_release(&b);
}

/* Runs sp against the reference at every vector width the CPU has; false on a mismatch. */
static bool check(const struct spec *sp)
{
    int dirs = sp->dir != NULL && strcmp(sp->dir, "bidirectional") == 0 ? 2 : 1;
    size_t G = strcmp(sp->op, "LSTM") == 0 ? 4 : strcmp(sp->op, "GRU") == 0 ? 3 : 1;
    int64_t S = sp->S, B = sp->B, I = sp->I, H = sp->H, GH = (int64_t)G * H;
    size_t nx = (size_t)(S * B * I), nw = (size_t)(dirs * GH * I), nr = (size_t)(dirs * GH * H);
    size_t ns = (size_t)(dirs * B * H), ny = (size_t)S * ns;
    struct data dt;
    uint32_t seed = (uint32_t)(S * 131 + B * 17 + H * 7 + I + (int64_t)G * 1000 + dirs);
    bool ok = false;
    memset(&dt, 0, sizeof(dt));
    dt.x = malloc(nx * sizeof(float) + 4);
    dt.w = malloc(nw * sizeof(float) + 4);
    dt.r = malloc(nr * sizeof(float) + 4);
    dt.bias = malloc((size_t)(dirs * 2 * GH) * sizeof(float));
    dt.h0 = malloc(ns * sizeof(float) + 4);
    dt.c0 = malloc(ns * sizeof(float) + 4);
    dt.p = malloc((size_t)(dirs * 3 * H) * sizeof(float));
    double *want[3] = {calloc(ny + 1, sizeof(double)), calloc(ns + 1, sizeof(double)),
                       calloc(ns + 1, sizeof(double))};
    if (dt.x == NULL || dt.w == NULL || dt.r == NULL || dt.bias == NULL || dt.h0 == NULL ||
        dt.c0 == NULL || dt.p == NULL || want[0] == NULL || want[1] == NULL || want[2] == NULL)
        abort();
    float ws = 1.0f / sqrtf((float)H);
    fill(dt.x, nx, 1.0f, &seed);
    fill(dt.w, nw, ws, &seed);
    fill(dt.r, nr, ws, &seed);
    fill(dt.bias, (size_t)(dirs * 2 * GH), ws, &seed);
    fill(dt.h0, ns, 1.0f, &seed);
    fill(dt.c0, ns, 1.0f, &seed);
    fill(dt.p, (size_t)(dirs * 3 * H), 0.5f, &seed);
    if (sp->lens)
        memcpy(dt.lens, sp->lens, (size_t)B * sizeof(int32_t));
    reference(sp, &dt, dirs, G, want[0], want[1], want[2]);
    struct veil_buf buf;
    build(sp, &dt, dirs, G, &buf);

    int64_t xd[3] = {sp->layout ? B : S, sp->layout ? S : B, I};
    int64_t wd[3] = {dirs, GH, I}, rd[3] = {dirs, GH, H}, bd[2] = {dirs, 2 * GH};
    int64_t sd[3] = {sp->layout ? B : dirs, sp->layout ? dirs : B, H}, ld[1] = {B};
    struct veil_tensor in[8];
    size_t n_in = 0;
    in[n_in++] = tensor_f(dt.x, 3, xd);
    if (sp->runtime_w) {
        in[n_in++] = tensor_f(dt.w, 3, wd);
        in[n_in++] = tensor_f(dt.r, 3, rd);
        if (sp->bias)
            in[n_in++] = tensor_f(dt.bias, 2, bd);
    }
    if (sp->lens)
        in[n_in++] = tensor_of(VEIL_DT_INT32, 1, ld, dt.lens);
    if (sp->h0)
        in[n_in++] = tensor_f(dt.h0, 3, sd);
    if (sp->c0)
        in[n_in++] = tensor_f(dt.c0, 3, sd);
    size_t n_out = 0, idx[3];
    for (size_t k = 0; k < (G == 4 ? 3u : 2u); k++)
        if (!sp->skip_out[k])
            idx[n_out++] = k;

    enum veil__engine_vec_isa best = veil__engine_vec_best();
    for (int isa = (int)best; isa >= (int)VEIL__ENGINE_VEC_BASE; isa--) {
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        struct veil_engine_options opt = {.threads = 2};
        struct veil_tensor out[3];
        memset(out, 0, sizeof(out));
        veil_err rc = veil_engine_model_load(veil_buf_span(&buf), &opt, &m, &eb);
        if (rc == VEIL_OK) {
            veil__engine_model_cap_attention(m, (enum veil__engine_vec_isa)isa);
            rc = veil_engine_run(m, in, n_in, out, n_out, &eb);
        }
        veil_engine_model_free(m);
        if (rc != VEIL_OK) {
            fprintf(stderr, "%s: %s\n", sp->op, veil_errbuf_msg(&eb, rc));
            goto out;
        }
        bool good = true;
        for (size_t o = 0; o < n_out; o++) {
            size_t n = idx[o] == 0 ? ny : ns;
            const float *g = out[o].data;
            float *wf = malloc(n * sizeof(float) + 4);
            if (wf == NULL)
                abort();
            for (size_t i = 0; i < n; i++)
                wf[i] = (float)want[idx[o]][i];
            double e = rel_l2(g, wf, n);
            if (out[o].nbytes != n * sizeof(float) || !(e <= 1e-5)) {
                fprintf(stderr, "%s %s isa %d output %zu: %zu bytes, relative L2 error %.3g\n",
                        sp->op, sp->dir ? sp->dir : "forward", isa, idx[o], out[o].nbytes, e);
                good = false;
            }
            for (size_t i = 0; good && i < n; i++)
                if (!(fabs(g[i] - want[idx[o]][i]) <= 2e-5 * (1 + fabs(want[idx[o]][i])))) {
                    fprintf(stderr, "%s isa %d output %zu element %zu: %.8g, want %.8g\n", sp->op,
                            isa, idx[o], i, (double)g[i], want[idx[o]][i]);
                    good = false;
                }
            free(wf);
        }
        for (size_t o = 0; o < n_out; o++)
            veil_tensor_release(&out[o]);
        if (!good)
            goto out;
    }
    ok = true;
out:
    veil_buf_release(&buf);
    free(dt.x);
    free(dt.w);
    free(dt.r);
    free(dt.bias);
    free(dt.h0);
    free(dt.c0);
    free(dt.p);
    for (int k = 0; k < 3; k++)
        free(want[k]);
    return ok;
}

/* ---- Cases ---- */

TEST(lstm_bidirectional_lens_both_layouts)
{
    static const int32_t lens[4] = {7, 3, 0, 5};
    for (int layout = 0; layout < 2; layout++) {
        struct spec sp = {.op = "LSTM",
                          .dir = "bidirectional",
                          .layout = layout,
                          .S = 7,
                          .B = 4,
                          .I = 5,
                          .H = 17,
                          .bias = true,
                          .h0 = true,
                          .c0 = true,
                          .peep = true,
                          .lens = lens,
                          .clip = 2.0f};
        ASSERT_TRUE(check(&sp));
    }
}

TEST(lstm_reverse_input_forget_runtime_weights)
{
    static const int32_t lens[3] = {2, 6, 4};
    struct spec sp = {.op = "LSTM",
                      .dir = "reverse",
                      .S = 6,
                      .B = 3,
                      .I = 9,
                      .H = 33,
                      .bias = true,
                      .h0 = true,
                      .peep = true,
                      .input_forget = 1,
                      .runtime_w = true,
                      .lens = lens};
    ASSERT_TRUE(check(&sp));
    sp.peep = false;
    sp.layout = 1;
    sp.clip = 0.6f;
    ASSERT_TRUE(check(&sp));
}

TEST(lstm_activations_alpha_beta)
{
    static const char *const acts[6] = {"HardSigmoid", "Elu",      "ScaledTanh",
                                        "Sigmoid",     "Softplus", "LeakyRelu"};
    static const float alpha[5] = {0.25f, 0.8f, 0.7f, 0.03f, 9.0f};
    static const float beta[2] = {0.45f, 1.3f};
    static const int32_t lens[2] = {5, 2};
    struct spec sp = {.op = "LSTM",
                      .dir = "bidirectional",
                      .S = 5,
                      .B = 2,
                      .I = 3,
                      .H = 10,
                      .bias = true,
                      .c0 = true,
                      .lens = lens,
                      .acts = acts,
                      .n_acts = 6,
                      .alpha = alpha,
                      .n_alpha = 4,
                      .beta = beta,
                      .n_beta = 2};
    ASSERT_TRUE(check(&sp));
    static const char *const acts2[3] = {"Affine", "Softsign", "Relu"};
    struct spec s2 = {.op = "LSTM",
                      .S = 4,
                      .B = 3,
                      .I = 2,
                      .H = 6,
                      .bias = true,
                      .acts = acts2,
                      .n_acts = 3,
                      .alpha = alpha,
                      .n_alpha = 1,
                      .beta = beta,
                      .n_beta = 1,
                      .layout = 1};
    ASSERT_TRUE(check(&s2));
}

TEST(gru_both_reset_forms)
{
    static const int32_t lens[3] = {6, 1, 4};
    for (int lbr = 0; lbr < 2; lbr++)
        for (int layout = 0; layout < 2; layout++) {
            struct spec sp = {.op = "GRU",
                              .dir = "bidirectional",
                              .layout = layout,
                              .S = 6,
                              .B = 3,
                              .I = 4,
                              .H = 33,
                              .bias = true,
                              .h0 = true,
                              .lens = lens,
                              .lbr = lbr,
                              .clip = layout ? 0.8f : 0.0f};
            ASSERT_TRUE(check(&sp));
        }
    struct spec sp = {.op = "GRU",
                      .dir = "reverse",
                      .S = 5,
                      .B = 2,
                      .I = 7,
                      .H = 5,
                      .runtime_w = true,
                      .bias = true,
                      .lbr = 1};
    ASSERT_TRUE(check(&sp));
}

TEST(gru_activations)
{
    static const char *const acts[4] = {"HardSigmoid", "ThresholdedRelu", "Sigmoid", "Affine"};
    static const float alpha[3] = {0.3f, 0.05f, 0.9f};
    static const float beta[2] = {0.4f, 0.2f};
    struct spec sp = {.op = "GRU",
                      .dir = "bidirectional",
                      .S = 5,
                      .B = 2,
                      .I = 3,
                      .H = 9,
                      .bias = true,
                      .h0 = true,
                      .acts = acts,
                      .n_acts = 4,
                      .alpha = alpha,
                      .n_alpha = 3,
                      .beta = beta,
                      .n_beta = 2};
    ASSERT_TRUE(check(&sp));
}

TEST(rnn_directions_and_activations)
{
    static const int32_t lens[5] = {1, 8, 0, 3, 8};
    static const char *const acts[2] = {"Relu", "Softsign"};
    const char *dirs[3] = {NULL, "reverse", "bidirectional"};
    for (int d = 0; d < 3; d++) {
        struct spec sp = {.op = "RNN",
                          .dir = dirs[d],
                          .layout = d == 1,
                          .S = 8,
                          .B = 5,
                          .I = 6,
                          .H = 19,
                          .bias = true,
                          .h0 = true,
                          .lens = lens,
                          .clip = d == 2 ? 1.1f : 0.0f};
        ASSERT_TRUE(check(&sp));
    }
    struct spec sp = {.op = "RNN",
                      .dir = "bidirectional",
                      .S = 4,
                      .B = 2,
                      .I = 3,
                      .H = 7,
                      .acts = acts,
                      .n_acts = 2};
    ASSERT_TRUE(check(&sp));
    struct spec s1 = {.op = "RNN", .S = 3, .B = 1, .I = 1, .H = 1, .bias = true, .h0 = true};
    ASSERT_TRUE(check(&s1));
}

TEST(outputs_omitted)
{
    static const int32_t lens[3] = {3, 0, 2};
    struct spec a = {.op = "LSTM",
                     .S = 3,
                     .B = 3,
                     .I = 4,
                     .H = 5,
                     .bias = true,
                     .lens = lens,
                     .skip_out = {true, true, false}};
    ASSERT_TRUE(check(&a));
    struct spec b = {.op = "LSTM",
                     .dir = "bidirectional",
                     .S = 3,
                     .B = 3,
                     .I = 4,
                     .H = 5,
                     .lens = lens,
                     .skip_out = {false, true, false}};
    ASSERT_TRUE(check(&b));
    struct spec c = {.op = "GRU",
                     .S = 3,
                     .B = 3,
                     .I = 4,
                     .H = 5,
                     .lens = lens,
                     .skip_out = {false, true, false}};
    ASSERT_TRUE(check(&c));
    struct spec d = {.op = "RNN",
                     .dir = "reverse",
                     .S = 3,
                     .B = 3,
                     .I = 4,
                     .H = 5,
                     .skip_out = {true, false, false},
                     .opset = 7};
    ASSERT_TRUE(check(&d));
}

TEST(threaded_gate_rows)
{
    /* 80 rows of 4 x 48 gates: more than one thread's share (veil__engine_parallel splits them). */
    struct spec sp = {.op = "LSTM",
                      .dir = "bidirectional",
                      .S = 3,
                      .B = 80,
                      .I = 5,
                      .H = 48,
                      .bias = true,
                      .h0 = true,
                      .c0 = true};
    ASSERT_TRUE(check(&sp));
    struct spec g = {.op = "GRU", .S = 3, .B = 80, .I = 5, .H = 60, .bias = true, .h0 = true};
    ASSERT_TRUE(check(&g));
}

TEST(batch_sizes_both_product_paths)
{
    /*
     * Up to 8 rows a direction, the per-step products run on the engine's packed panels (every
     * row tile and tail: 1 to 8 rows); above, on oneDNN primitives. Weights as initializers
     * (packed or reordered at plan time) and as graph inputs (packed or transposed per run).
     */
    static const int32_t lens[12] = {5, 1, 0, 5, 3, 4, 5, 2, 5, 5, 1, 4};
    const int64_t batches[4] = {6, 7, 8, 12};
    for (int bi = 0; bi < 4; bi++)
        for (int rt = 0; rt < 2; rt++) {
            int64_t nb = batches[bi];
            struct spec l = {.op = "LSTM",
                             .dir = "bidirectional",
                             .S = 5,
                             .B = nb,
                             .I = 6,
                             .H = 21,
                             .bias = true,
                             .h0 = true,
                             .c0 = true,
                             .lens = lens,
                             .runtime_w = rt == 1,
                             .layout = bi == 1};
            ASSERT_TRUE(check(&l));
            struct spec g = {.op = "GRU",
                             .dir = bi == 2 ? "reverse" : "bidirectional",
                             .S = 5,
                             .B = nb,
                             .I = 6,
                             .H = 13,
                             .bias = true,
                             .h0 = true,
                             .lens = lens,
                             .runtime_w = rt == 1,
                             .lbr = bi == 3 && rt == 0};
            ASSERT_TRUE(check(&g));
            struct spec r = {.op = "RNN",
                             .S = 5,
                             .B = nb,
                             .I = 6,
                             .H = 70,
                             .bias = true,
                             .lens = lens,
                             .runtime_w = rt == 1};
            ASSERT_TRUE(check(&r));
        }
    struct spec g = {.op = "GRU",
                     .dir = "bidirectional",
                     .S = 4,
                     .B = 3,
                     .I = 5,
                     .H = 9,
                     .bias = true,
                     .h0 = true,
                     .runtime_w = true};
    ASSERT_TRUE(check(&g));
}

/* ---- Refusals ---- */

struct bad {
    const char *op;
    int64_t H_attr;  /* hidden_size attribute (0: none) */
    int64_t wrows;   /* W's rows (gates * hidden when right) */
    const char *dir; /* NULL: none */
    int64_t layout;  /* -1: none */
    float clip;      /* 0: none */
    const char *acts[3];
    size_t n_acts;
    int x_dt;    /* 1 float, 11 double */
    int lens_dt; /* 0 none, 6 int32, 1 float */
};

/* Loads (and, when that passes, runs) an LSTM/GRU/RNN of hidden 3 on X [2, 2, 2]. */
static veil_err run_bad(const struct bad *bd, const int32_t *lens, struct veil_errbuf *eb)
{
    struct mb b;
    struct veil_engine_model *m = NULL;
    size_t G = strcmp(bd->op, "LSTM") == 0 ? 4 : strcmp(bd->op, "GRU") == 0 ? 3 : 1;
    int64_t xd[3] = {2, 2, 2}, wd[3] = {1, bd->wrows ? bd->wrows : (int64_t)G * 3, 2};
    int64_t rd[3] = {1, (int64_t)G * 3, 3}, ld[1] = {2};
    float w[64] = {0}, r[64] = {0}, x[8] = {0};
    double xdbl[8] = {0};
    mb_init(&b);
    mb_input(&b, "X", bd->x_dt ? bd->x_dt : 1, 3, xd);
    if (bd->lens_dt)
        mb_input(&b, "L", bd->lens_dt, 1, ld);
    mb_init_f(&b, "W", 3, wd, w);
    mb_init_f(&b, "R", 3, rd, r);
    VeilOnnx__AttributeProto *at[6];
    size_t na = 0;
    if (bd->H_attr)
        at[na++] = mb_attr_i(&b, "hidden_size", bd->H_attr);
    if (bd->dir)
        at[na++] = mb_attr_s(&b, "direction", bd->dir);
    if (bd->layout >= 0)
        at[na++] = mb_attr_i(&b, "layout", bd->layout);
    if (bd->clip != 0)
        at[na++] = mb_attr_f(&b, "clip", bd->clip);
    if (bd->n_acts)
        at[na++] = attr_strs(&b, "activations", bd->acts, bd->n_acts);
    VeilOnnx__NodeProto *n = mb_node(&b, bd->op, bd->lens_dt ? "X,W,R,,L" : "X,W,R", "Y", 0);
    n->name = mb_str(&b, "rec0");
    n->n_attribute = na;
    n->attribute = mb_alloc(&b, (na + 1) * sizeof(*n->attribute));
    memcpy(n->attribute, at, na * sizeof(*at));
    mb_output(&b, "Y", 1, 0, xd);
    veil_err rc = mb_load(&b, NULL, &m, eb);
    if (rc != VEIL_OK)
        return rc;
    struct veil_tensor in[2], out;
    in[0] = bd->x_dt == 11 ? tensor_of(VEIL_DT_DOUBLE, 3, xd, xdbl) : tensor_f(x, 3, xd);
    float lf[2] = {1, 1};
    if (bd->lens_dt == 6)
        in[1] = tensor_of(VEIL_DT_INT32, 1, ld, lens);
    else
        in[1] = tensor_f(lf, 1, ld);
    rc = veil_engine_run(m, in, bd->lens_dt ? 2 : 1, &out, 1, eb);
    if (rc == VEIL_OK)
        veil_tensor_release(&out);
    veil_engine_model_free(m);
    return rc;
}

TEST(refusals_name_node_and_problem)
{
    struct veil_errbuf eb = {{0}};
    struct bad ok = {.op = "LSTM", .H_attr = 3, .layout = -1};
    ASSERT_OK(run_bad(&ok, NULL, &eb));

    struct bad hs = ok;
    hs.H_attr = 4;
    ASSERT_ERR(run_bad(&hs, NULL, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'rec0' (LSTM)");
    ASSERT_STR_CONTAINS(eb.msg, "hidden_size is 4 but R has shape [1, 12, 3]");

    struct bad ws = {.op = "GRU", .wrows = 8, .layout = -1};
    ASSERT_ERR(run_bad(&ws, NULL, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "input W has shape [1, 8, 2], expected [1, 9, 2]");

    struct bad dir = {.op = "RNN", .dir = "sideways", .layout = -1};
    ASSERT_ERR(run_bad(&dir, NULL, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'rec0' (RNN)");
    ASSERT_STR_CONTAINS(eb.msg, "direction is 'sideways'");

    struct bad lay = {.op = "GRU", .layout = 2};
    ASSERT_ERR(run_bad(&lay, NULL, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "layout must be 0 or 1");

    struct bad clip = {.op = "LSTM", .layout = -1, .clip = -1.0f};
    ASSERT_ERR(run_bad(&clip, NULL, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "clip must be a positive float");

    struct bad act = {.op = "GRU", .layout = -1, .acts = {"Sigmoid", "Swish"}, .n_acts = 2};
    ASSERT_ERR(run_bad(&act, NULL, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "node 'rec0' (GRU)");
    ASSERT_STR_CONTAINS(eb.msg, "activations: 'Swish' (entry 1) is not one of");

    struct bad nact = {.op = "LSTM", .layout = -1, .acts = {"Sigmoid", "Tanh"}, .n_acts = 2};
    ASSERT_ERR(run_bad(&nact, NULL, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "activations has 2 names; LSTM with 1 direction takes 3");

    struct bad dbl = {.op = "RNN", .layout = -1, .x_dt = 11};
    ASSERT_ERR(run_bad(&dbl, NULL, &eb), VEIL_E_UNSUPPORTED);
    ASSERT_STR_CONTAINS(eb.msg, "input X has type double (float is supported)");

    struct bad lf = {.op = "RNN", .layout = -1, .lens_dt = 1};
    ASSERT_ERR(run_bad(&lf, NULL, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "sequence_lens has type float");

    /* Sequence lengths are checked when the run reads them, before any state is computed. */
    struct bad ls = {.op = "LSTM", .layout = -1, .lens_dt = 6};
    static const int32_t good[2] = {2, 0}, high[2] = {1, 3}, neg[2] = {-1, 2};
    ASSERT_OK(run_bad(&ls, good, &eb));
    ASSERT_ERR(run_bad(&ls, high, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "node 'rec0' (LSTM)");
    ASSERT_STR_CONTAINS(eb.msg, "sequence_lens[1] is 3, outside 0 to seq_length 2");
    ASSERT_ERR(run_bad(&ls, neg, &eb), VEIL_E_INVALID);
    ASSERT_STR_CONTAINS(eb.msg, "sequence_lens[0] is -1");
}

TEST(empty_sequence_and_batch)
{
    /* seq_length 0: Y is empty and Y_h zero; batch 0: every output is empty. */
    for (int k = 0; k < 2; k++) {
        struct mb b;
        struct veil_engine_model *m = NULL;
        struct veil_errbuf eb = {{0}};
        int64_t xd[3] = {k == 0 ? 0 : 3, k == 0 ? 2 : 0, 4}, wd[3] = {1, 20, 4};
        int64_t rd[3] = {1, 20, 5};
        float w[80], r[100], x[1] = {0};
        uint32_t seed = 3;
        fill(w, 80, 0.5f, &seed);
        fill(r, 100, 0.5f, &seed);
        mb_init(&b);
        mb_input(&b, "X", 1, 3, xd);
        mb_init_f(&b, "W", 3, wd, w);
        mb_init_f(&b, "R", 3, rd, r);
        mb_node(&b, "LSTM", "X,W,R", "Y,Yh,Yc", 1, mb_attr_i(&b, "hidden_size", 5));
        mb_output(&b, "Y", 1, 0, xd);
        mb_output(&b, "Yh", 1, 0, xd);
        mb_output(&b, "Yc", 1, 0, xd);
        ASSERT_OK(mb_load(&b, NULL, &m, &eb));
        struct veil_tensor in = tensor_f(x, 3, xd), out[3];
        ASSERT_OK(veil_engine_run(m, &in, 1, out, 3, &eb));
        ASSERT_EQ_U64(out[0].nbytes, 0);
        ASSERT_EQ_U64(out[1].nbytes, k == 0 ? 2 * 5 * sizeof(float) : 0);
        for (size_t i = 0; i < out[1].nbytes / sizeof(float); i++)
            ASSERT_TRUE(((const float *)out[1].data)[i] == 0.0f &&
                        ((const float *)out[2].data)[i] == 0.0f);
        for (int o = 0; o < 3; o++)
            veil_tensor_release(&out[o]);
        veil_engine_model_free(m);
    }
}

RUN_TESTS()
