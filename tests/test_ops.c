/*
 * tests/test_ops.c — forward values of every op against float64 host
 * references on random inputs: broadcasting corner cases, reductions along
 * every axis, matmul layouts, softmax stability, views and non-contiguous
 * chains, empty tensors, and the error messages for bad shapes. Runs on
 * every backend.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

#define S(...) CG_SHAPE(__VA_ARGS__)
#define MAXN 4096

/* ---- host helpers ---- */

static int64_t numel(int nd, const int64_t *s)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= s[i];
    return n;
}

/* A tensor with random values; the host copy goes to h (MAXN floats). */
static cg_tensor *rnd(cg_ctx *ctx, uint64_t *rng, int nd, const int64_t *shape, float lo, float hi,
                      float *h)
{
    int64_t n = numel(nd, shape);
    assert_true(n <= MAXN);
    th_fill_uniform(rng, h, n, lo, hi);
    cg_tensor *t = cg_tensor_from_host(ctx, nd, shape, h);
    assert_non_null(t);
    return t;
}

static cg_ctx *cur_ctx; /* for messages */

static int setup(void **state)
{
    th_setup(state);
    cur_ctx = *state;
    return 0;
}

static void get(cg_tensor *t, float *out)
{
    if (!t) fail_msg("op failed: %s", cg_last_error(cur_ctx));
    assert_int_equal(cg_tensor_to_host(t, out, cg_tensor_numel(t)), CG_OK);
}

static void expect_shape(const cg_tensor *t, int nd, const int64_t *shape)
{
    if (!t) fail_msg("op failed: %s", cg_last_error(cur_ctx));
    assert_int_equal(cg_tensor_ndim(t), nd);
    for (int i = 0; i < nd; i++) assert_int_equal(cg_tensor_dim(t, i), shape[i]);
}

/* Row-major index of out element `flat` mapped into a broadcast input. */
static int64_t bidx(int ond, const int64_t *oshape, int64_t flat, int ind, const int64_t *ishape)
{
    int64_t idx = 0, istride = 1;
    for (int d = ond - 1; d >= 0; d--) {
        int64_t c = flat % oshape[d];
        flat /= oshape[d];
        int id = d - (ond - ind);
        if (id >= 0) {
            if (ishape[id] != 1) idx += c * istride;
            istride *= ishape[id];
        }
    }
    return idx;
}

/* ---- elementwise ---- */

static double ref_bin(int op, double a, double b)
{
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return a / b;
    case 4: return a > b ? a : b;
    case 5: return a < b ? a : b;
    case 6: return a == b;
    default: return a > b;
    }
}

static cg_tensor *do_bin(int op, cg_tensor *a, cg_tensor *b)
{
    switch (op) {
    case 0: return cg_add(a, b);
    case 1: return cg_sub(a, b);
    case 2: return cg_mul(a, b);
    case 3: return cg_div(a, b);
    case 4: return cg_maximum(a, b);
    case 5: return cg_minimum(a, b);
    case 6: return cg_eq(a, b);
    default: return cg_gt(a, b);
    }
}

static void test_binary_broadcast(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 11;
    struct { int na; int64_t sa[4]; int nb; int64_t sb[4]; int no; int64_t so[4]; } cases[] = {
        {2, {7, 5}, 2, {7, 5}, 2, {7, 5}},
        {2, {7, 5}, 1, {5}, 2, {7, 5}},
        {2, {7, 1}, 1, {5}, 2, {7, 5}},
        {3, {3, 1, 5}, 2, {4, 1}, 3, {3, 4, 5}},
        {1, {1}, 3, {2, 3, 4}, 3, {2, 3, 4}},
        {0, {0}, 2, {3, 4}, 2, {3, 4}},
        {2, {3, 4}, 0, {0}, 2, {3, 4}},
        {4, {2, 1, 3, 1}, 3, {4, 1, 1}, 4, {2, 4, 3, 1}},
        {2, {0, 3}, 1, {3}, 2, {0, 3}},
        {2, {1, 3}, 2, {0, 1}, 2, {0, 3}},
    };
    static float ha[MAXN], hb[MAXN], ho[MAXN];
    static double want[MAXN];
    cg_scope_begin(ctx);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cg_tensor *a = rnd(ctx, &rng, cases[c].na, cases[c].sa, -2, 2, ha);
        cg_tensor *b = rnd(ctx, &rng, cases[c].nb, cases[c].sb, 0.5f, 2, hb);
        if (numel(cases[c].nb, cases[c].sb) > 2) { /* some equal pairs for eq */
            hb[0] = ha[0];
            assert_int_equal(cg_tensor_set_data(b, hb, numel(cases[c].nb, cases[c].sb)), CG_OK);
        }
        for (int op = 0; op < 8; op++) {
            cg_tensor *o = do_bin(op, a, b);
            expect_shape(o, cases[c].no, cases[c].so);
            int64_t n = numel(cases[c].no, cases[c].so);
            get(o, ho);
            for (int64_t i = 0; i < n; i++)
                want[i] = ref_bin(op, ha[bidx(cases[c].no, cases[c].so, i, cases[c].na, cases[c].sa)],
                                  hb[bidx(cases[c].no, cases[c].so, i, cases[c].nb, cases[c].sb)]);
            char w[64];
            snprintf(w, sizeof w, "case %zu op %d", c, op);
            th_assert_close(ho, want, n, 1e-6, 1e-7, w);
        }
    }
    /* a strided (transposed) operand broadcast against a row */
    cg_tensor *a = rnd(ctx, &rng, S(5, 3), -1, 1, ha);
    cg_tensor *b = rnd(ctx, &rng, S(5), -1, 1, hb);
    get(cg_mul(cg_transpose(a, 0, 1), b), ho);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++) want[i * 5 + j] = (double)ha[j * 3 + i] * hb[j];
    th_assert_close(ho, want, 15, 1e-6, 0, "transposed * row");
    cg_scope_end(ctx);
}

static void test_unary_scalar(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 12;
    static float hx[MAXN], ho[MAXN];
    static double want[MAXN];
    const int n = 3 * 37;
    cg_scope_begin(ctx);
    for (int op = 0; op < 15; op++) {
        bool pos = op == 2 || op == 3 || op == 10;
        cg_tensor *x = rnd(ctx, &rng, S(3, 37), pos ? 0.1f : -6.0f, pos ? 4.0f : 6.0f, hx);
        cg_tensor *o = NULL;
        for (int i = 0; i < n; i++) {
            double v = hx[i], r = 0;
            switch (op) {
            case 0: r = -v; break;
            case 1: r = exp(v); break;
            case 2: r = log(v); break;
            case 3: r = sqrt(v); break;
            case 4: r = fabs(v); break;
            case 5: r = v > 0 ? v : 0; break;
            case 6: r = 1 / (1 + exp(-v)); break;
            case 7: r = tanh(v); break;
            case 8: r = v * 0.5 * (1 + erf(v / sqrt(2.0))); break; /* PyTorch GELU */
            case 9: r = v < -0.5 ? -0.5 : v > 1.25 ? 1.25 : v; break;
            case 10: r = pow(v, 2.5); break;
            case 11: r = v + 0.375; break;
            case 12: r = v * -1.75; break;
            case 13: r = 2.5 * v - 1.0; break;
            default: r = v * v * v; break;
            }
            want[i] = r;
        }
        switch (op) {
        case 0: o = cg_neg(x); break;
        case 1: o = cg_exp(x); break;
        case 2: o = cg_log(x); break;
        case 3: o = cg_sqrt(x); break;
        case 4: o = cg_abs(x); break;
        case 5: o = cg_relu(x); break;
        case 6: o = cg_sigmoid(x); break;
        case 7: o = cg_tanh(x); break;
        case 8: o = cg_gelu(x); break;
        case 9: o = cg_clamp(x, -0.5f, 1.25f); break;
        case 10: o = cg_pow_scalar(x, 2.5f); break;
        case 11: o = cg_add_scalar(x, 0.375f); break;
        case 12: o = cg_mul_scalar(x, -1.75f); break;
        case 13: o = cg_affine(x, 2.5f, -1.0f); break;
        default: o = cg_pow_scalar(x, 3.0f); break;
        }
        expect_shape(o, S(3, 37));
        get(o, ho);
        char w[32];
        snprintf(w, sizeof w, "unary op %d", op);
        th_assert_close(ho, want, n, 2e-5, 1e-6, w);
    }
    /* sigmoid stays finite and exact at the extremes */
    const float ext[4] = {-100, -30, 30, 100};
    get(cg_sigmoid(cg_tensor_from_host(ctx, S(4), ext)), ho);
    const double wext[4] = {0, 1 / (1 + exp(30.0)), 1 / (1 + exp(-30.0)), 1};
    th_assert_close(ho, wext, 4, 1e-6, 1e-30, "sigmoid extremes");
    /* empty */
    cg_tensor *e = cg_exp(cg_tensor_empty(ctx, S(0, 4)));
    expect_shape(e, S(0, 4));
    /* clamp with lo > hi is an error */
    assert_null(cg_clamp(e, 1, 0));
    th_assert_error_contains(ctx, "cg_clamp: lo 1 > hi 0");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
}

/* ---- reductions ---- */

static void test_reductions(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 13;
    static float hx[MAXN], ho[MAXN];
    static double want[MAXN];
    const int64_t sh[3] = {3, 4, 5};
    cg_scope_begin(ctx);
    cg_tensor *x = rnd(ctx, &rng, 3, sh, -2, 2, hx);
    for (int axis = -3; axis < 3; axis++) {
        int a = axis < 0 ? axis + 3 : axis;
        int64_t outer = numel(a, sh), len = sh[a], inner = numel(2 - a, sh + a + 1);
        for (int op = 0; op < 4; op++) {
            for (int keep = 0; keep < 2; keep++) {
                cg_tensor *o = op == 0 ? cg_sum(x, axis, keep)
                             : op == 1 ? cg_mean(x, axis, keep)
                             : op == 2 ? cg_max(x, axis, keep)
                                       : cg_argmax(x, axis, keep);
                int64_t os[3];
                int on = 0;
                for (int d = 0; d < 3; d++)
                    if (d != a) os[on++] = sh[d];
                    else if (keep) os[on++] = 1;
                expect_shape(o, on, os);
                for (int64_t p = 0; p < outer; p++)
                    for (int64_t q = 0; q < inner; q++) {
                        double s = 0, m = -INFINITY;
                        int64_t am = 0;
                        for (int64_t r = 0; r < len; r++) {
                            double v = hx[(p * len + r) * inner + q];
                            s += v;
                            if (v > m) { m = v; am = r; }
                        }
                        want[p * inner + q] = op == 0 ? s : op == 1 ? s / len : op == 2 ? m : am;
                    }
                get(o, ho);
                char w[64];
                snprintf(w, sizeof w, "reduce op %d axis %d keep %d", op, axis, keep);
                th_assert_close(ho, want, outer * inner, 1e-5, 1e-6, w);
            }
        }
    }
    /* over everything, on a transposed (strided) input */
    cg_tensor *xt = cg_permute(x, S(2, 0, 1));
    double s = 0;
    for (int i = 0; i < 60; i++) s += hx[i];
    get(cg_sum_all(xt), ho);
    th_assert_close(ho, &s, 1, 1e-5, 1e-6, "sum_all");
    double mean = s / 60;
    get(cg_mean_all(xt), ho);
    th_assert_close(ho, &mean, 1, 1e-5, 1e-6, "mean_all");
    expect_shape(cg_sum_all(x), 0, NULL);
    /* argmax takes the first of ties */
    const float ties[6] = {1, 3, 3, 2, 2, 0};
    get(cg_argmax(cg_tensor_from_host(ctx, S(2, 3), ties), 1, false), ho);
    const double wt[2] = {1, 0};
    th_assert_close(ho, wt, 2, 0, 0, "argmax ties");
    /* empty axis: sum 0, mean NaN, max an error */
    cg_tensor *e = cg_tensor_empty(ctx, S(3, 0));
    get(cg_sum(e, 1, false), ho);
    const double z3[3] = {0, 0, 0}, nan3[3] = {NAN, NAN, NAN};
    th_assert_close(ho, z3, 3, 0, 0, "sum of empty");
    get(cg_mean(e, 1, false), ho);
    th_assert_close(ho, nan3, 3, 0, 0, "mean of empty");
    get(cg_mean_all(e), ho);
    th_assert_close(ho, nan3, 1, 0, 0, "mean_all of empty");
    assert_null(cg_max(e, 1, false));
    th_assert_error_contains(ctx, "cg_max: axis 1 of shape (3, 0) is empty");
    cg_ctx_clear_error(ctx);
    assert_null(cg_sum(x, 3, false));
    th_assert_error_contains(ctx, "cg_sum: axis 3 out of range for a 3-d tensor");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
}

/* ---- matmul ---- */

/* C = A B over (batch) with A (.., M, K), B (.., K, N) given as host
 * arrays and strides (elements) for batch, row, col. */
static void ref_mm(double *c, const float *a, const float *b, int64_t batch, int64_t m, int64_t k,
                   int64_t n, const int64_t sa[3], const int64_t sb[3])
{
    for (int64_t p = 0; p < batch; p++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double s = 0;
                for (int64_t q = 0; q < k; q++)
                    s += (double)a[p * sa[0] + i * sa[1] + q * sa[2]] *
                         (double)b[p * sb[0] + q * sb[1] + j * sb[2]];
                c[(p * m + i) * n + j] = s;
            }
}

static void test_matmul(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 14;
    static float ha[MAXN], hb[MAXN], ho[MAXN];
    static double want[MAXN];
    cg_scope_begin(ctx);
    /* 2-d, odd sizes */
    cg_tensor *a = rnd(ctx, &rng, S(7, 5), -1, 1, ha), *b = rnd(ctx, &rng, S(5, 3), -1, 1, hb);
    cg_tensor *o = cg_matmul(a, b);
    expect_shape(o, S(7, 3));
    get(o, ho);
    ref_mm(want, ha, hb, 1, 7, 5, 3, (int64_t[]){0, 5, 1}, (int64_t[]){0, 3, 1});
    th_assert_close(ho, want, 21, 1e-5, 1e-5, "2-d");
    /* transposed views on both sides: a^T (5,7) from a (7,5) */
    cg_tensor *b2 = rnd(ctx, &rng, S(4, 7), -1, 1, hb);
    get(cg_matmul(cg_transpose(a, 0, 1), cg_transpose(b2, 0, 1)), ho);
    ref_mm(want, ha, hb, 1, 5, 7, 4, (int64_t[]){0, 1, 5}, (int64_t[]){0, 1, 7});
    th_assert_close(ho, want, 20, 1e-5, 1e-5, "transposed views");
    /* strided (sliced with step): copy path */
    cg_tensor *as = cg_slice(a, 1, 0, 5, 2); /* (7, 3) */
    cg_tensor *b3 = rnd(ctx, &rng, S(3, 6), -1, 1, hb);
    get(cg_matmul(as, b3), ho);
    ref_mm(want, ha, hb, 1, 7, 3, 6, (int64_t[]){0, 5, 2}, (int64_t[]){0, 6, 1});
    th_assert_close(ho, want, 42, 1e-5, 1e-5, "sliced operand");
    /* (B, M, K) x (K, N): folded batch */
    cg_tensor *a3 = rnd(ctx, &rng, S(3, 4, 5), -1, 1, ha);
    cg_tensor *w = rnd(ctx, &rng, S(5, 2), -1, 1, hb);
    o = cg_matmul(a3, w);
    expect_shape(o, S(3, 4, 2));
    get(o, ho);
    ref_mm(want, ha, hb, 3, 4, 5, 2, (int64_t[]){20, 5, 1}, (int64_t[]){0, 2, 1});
    th_assert_close(ho, want, 24, 1e-5, 1e-5, "(B,M,K)x(K,N)");
    /* (B, M, K) x (B, K, N) */
    cg_tensor *b4 = rnd(ctx, &rng, S(3, 5, 2), -1, 1, hb);
    get(cg_matmul(a3, b4), ho);
    ref_mm(want, ha, hb, 3, 4, 5, 2, (int64_t[]){20, 5, 1}, (int64_t[]){10, 2, 1});
    th_assert_close(ho, want, 24, 1e-5, 1e-5, "(B,M,K)x(B,K,N)");
    /* (M, K) x (B, K, N) and the batch-transposed a3^T (B, K, M) x ... */
    static float hc[MAXN];
    cg_tensor *a2 = rnd(ctx, &rng, S(4, 5), -1, 1, hc);
    get(cg_matmul(a2, b4), ho);
    ref_mm(want, hc, hb, 3, 4, 5, 2, (int64_t[]){0, 5, 1}, (int64_t[]){10, 2, 1});
    th_assert_close(ho, want, 24, 1e-5, 1e-5, "(M,K)x(B,K,N)");
    /* broadcast batch dims (2, 1) x (3): out (2, 3, M, N) */
    cg_tensor *a5 = rnd(ctx, &rng, S(2, 1, 4, 3), -1, 1, ha);
    cg_tensor *b5 = rnd(ctx, &rng, S(3, 3, 2), -1, 1, hb);
    o = cg_matmul(a5, b5);
    expect_shape(o, S(2, 3, 4, 2));
    get(o, ho);
    for (int p = 0; p < 2; p++)
        for (int q = 0; q < 3; q++)
            ref_mm(want + (p * 3 + q) * 8, ha + p * 12, hb + q * 6, 1, 4, 3, 2,
                   (int64_t[]){0, 3, 1}, (int64_t[]){0, 2, 1});
    th_assert_close(ho, want, 48, 1e-5, 1e-5, "broadcast batch");
    /* batch dims that do not collapse into one stride: the heads of a
     * (B, T, 2, h, d) projection as (B, h, T, d) q and k (split into a few
     * batched GEMMs); then (5, 5, 5) batches, too many calls: copied */
    cg_tensor *qk = rnd(ctx, &rng, S(3, 5, 2, 2, 4), -1, 1, ha);  /* B=3 T=5 h=2 d=4 */
    cg_tensor *p = cg_permute(qk, S(2, 0, 3, 1, 4));              /* (2, B, h, T, d) */
    cg_tensor *q = cg_squeeze(cg_slice(p, 0, 0, 1, 1), 0), *kk = cg_squeeze(cg_slice(p, 0, 1, 2, 1), 0);
    o = cg_matmul(q, cg_transpose(kk, -2, -1));
    expect_shape(o, S(3, 2, 5, 5));
    get(o, ho);
    for (int bi = 0; bi < 3; bi++)
        for (int hi = 0; hi < 2; hi++)
            ref_mm(want + (bi * 2 + hi) * 25, ha + bi * 80 + hi * 4, ha + bi * 80 + 8 + hi * 4, 1,
                   5, 4, 5, (int64_t[]){0, 16, 1}, (int64_t[]){0, 1, 16});
    th_assert_close(ho, want, 150, 1e-5, 1e-5, "heads (split batch)");
    cg_tensor *a6 = rnd(ctx, &rng, S(5, 5, 5, 2, 3), -1, 1, ha);
    cg_tensor *b6 = rnd(ctx, &rng, S(3, 2), -1, 1, hb);
    o = cg_matmul(cg_permute(a6, S(1, 2, 0, 3, 4)), b6);   /* batch strides (30, 6, 150) */
    expect_shape(o, S(5, 5, 5, 2, 2));
    get(o, ho);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++)
            for (int l = 0; l < 5; l++)
                ref_mm(want + ((i * 5 + j) * 5 + l) * 4, ha + i * 30 + j * 6 + l * 150, hb, 1, 2,
                       3, 2, (int64_t[]){0, 3, 1}, (int64_t[]){0, 2, 1});
    th_assert_close(ho, want, 500, 1e-5, 1e-5, "125 strided batches (copied)");
    /* 1-d operands */
    cg_tensor *v = rnd(ctx, &rng, S(5), -1, 1, hb);
    o = cg_matmul(a2, v);
    expect_shape(o, S(4));
    get(o, ho);
    ref_mm(want, hc, hb, 1, 4, 5, 1, (int64_t[]){0, 5, 1}, (int64_t[]){0, 1, 1});
    th_assert_close(ho, want, 4, 1e-5, 1e-5, "mat-vec");
    o = cg_matmul(v, v);
    expect_shape(o, 0, NULL);
    get(o, ho);
    double dot = 0;
    for (int i = 0; i < 5; i++) dot += (double)hb[i] * hb[i];
    th_assert_close(ho, &dot, 1, 1e-5, 1e-5, "vec-vec");
    /* K = 0 gives zeros; M = 0 gives an empty result */
    get(cg_matmul(cg_tensor_empty(ctx, S(2, 0)), cg_tensor_empty(ctx, S(0, 3))), ho);
    const double z6[6] = {0};
    th_assert_close(ho, z6, 6, 0, 0, "K = 0");
    expect_shape(cg_matmul(cg_tensor_empty(ctx, S(0, 4)), a2), S(0, 5));
    /* errors */
    assert_null(cg_matmul(a, a));
    th_assert_error_contains(ctx, "cg_matmul: shapes (7, 5) and (7, 5) do not fit");
    cg_ctx_clear_error(ctx);
    assert_null(cg_matmul(cg_tensor_empty(ctx, S(2, 4, 5)), cg_tensor_empty(ctx, S(3, 5, 2))));
    th_assert_error_contains(ctx, "batch dims of shapes (2, 4, 5) and (3, 5, 2) do not broadcast");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
}

/* ---- softmax ---- */

static void test_softmax(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 15;
    static float hx[MAXN], ho[MAXN];
    static double want[MAXN];
    const int64_t sh[3] = {3, 4, 6};
    cg_scope_begin(ctx);
    for (int big = 0; big < 2; big++) {
        /* big: logits up to +-500, where a naive exp overflows */
        cg_tensor *x = rnd(ctx, &rng, 3, sh, big ? -500.0f : -3.0f, big ? 500.0f : 3.0f, hx);
        for (int axis = -1; axis < 3; axis++) {
            int a = axis < 0 ? 2 : axis;
            int64_t outer = numel(a, sh), len = sh[a], inner = numel(2 - a, sh + a + 1);
            for (int lg = 0; lg < 2; lg++) {
                for (int64_t p = 0; p < outer; p++)
                    for (int64_t q = 0; q < inner; q++) {
                        double m = -INFINITY, s = 0;
                        for (int64_t r = 0; r < len; r++)
                            m = fmax(m, hx[(p * len + r) * inner + q]);
                        for (int64_t r = 0; r < len; r++) s += exp(hx[(p * len + r) * inner + q] - m);
                        for (int64_t r = 0; r < len; r++) {
                            double z = hx[(p * len + r) * inner + q] - m;
                            want[(p * len + r) * inner + q] = lg ? z - log(s) : exp(z) / s;
                        }
                    }
                cg_tensor *o = lg ? cg_log_softmax(x, axis) : cg_softmax(x, axis);
                expect_shape(o, 3, sh);
                get(o, ho);
                char w[64];
                snprintf(w, sizeof w, "%s axis %d big %d", lg ? "log_softmax" : "softmax", axis, big);
                th_assert_close(ho, want, 72, 1e-5, 1e-6, w);
            }
        }
    }
    cg_scope_end(ctx);
}

/* ---- views ---- */

/* want[i] = h[off + sum_d idx_d * strides[d]] over a row-major walk. */
static void ref_view(double *want, const float *h, int nd, const int64_t *shape,
                     const int64_t *strides, int64_t off)
{
    int64_t n = numel(nd, shape);
    for (int64_t i = 0; i < n; i++) {
        int64_t f = i, at = off;
        for (int d = nd - 1; d >= 0; d--) {
            at += (f % shape[d]) * strides[d];
            f /= shape[d];
        }
        want[i] = h[at];
    }
}

static void test_views(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 16;
    static float hx[MAXN], ho[MAXN];
    static double want[MAXN];
    cg_scope_begin(ctx);
    cg_tensor *x = rnd(ctx, &rng, S(2, 3, 4), -1, 1, hx); /* strides (12, 4, 1) */
    /* reshape with -1 is a view of a contiguous tensor */
    cg_tensor *r = cg_reshape(x, S(-1, 6));
    expect_shape(r, S(4, 6));
    assert_true(cg_tensor_view(r).buf == cg_tensor_view(x).buf);
    get(r, ho);
    ref_view(want, hx, S(24), (int64_t[]){1}, 0);
    th_assert_close(ho, want, 24, 0, 0, "reshape");
    /* permute / transpose are strided views */
    cg_tensor *p = cg_permute(x, S(2, 0, 1));
    expect_shape(p, S(4, 2, 3));
    assert_false(cg_tensor_is_contiguous(p));
    get(p, ho);
    ref_view(want, hx, S(4, 2, 3), (int64_t[]){1, 12, 4}, 0);
    th_assert_close(ho, want, 24, 0, 0, "permute");
    get(cg_transpose(x, -1, 0), ho);
    ref_view(want, hx, S(4, 3, 2), (int64_t[]){1, 4, 12}, 0);
    th_assert_close(ho, want, 24, 0, 0, "transpose");
    /* slice with step and negative bounds (Python's x[:, -3::2, 1:]) */
    cg_tensor *s = cg_slice(cg_slice(x, 1, -3, 100, 2), 2, 1, 4, 1);
    expect_shape(s, S(2, 2, 3));
    get(s, ho);
    ref_view(want, hx, S(2, 2, 3), (int64_t[]){12, 8, 1}, 1);
    th_assert_close(ho, want, 12, 0, 0, "slice");
    expect_shape(cg_slice(x, 2, 3, 1, 1), S(2, 3, 0)); /* empty */
    /* non-contiguous chain: slice of a permute, reshaped (a copy), then
     * made contiguous */
    cg_tensor *c = cg_slice(cg_permute(x, S(2, 1, 0)), 0, 1, 4, 2); /* (2, 3, 2) */
    ref_view(want, hx, S(2, 3, 2), (int64_t[]){2, 4, 12}, 1);
    get(cg_contiguous(c), ho);
    th_assert_close(ho, want, 12, 0, 0, "contiguous of slice of permute");
    cg_tensor *cr = cg_reshape(c, S(3, 4));
    assert_true(cg_tensor_is_contiguous(cr));
    get(cr, ho);
    th_assert_close(ho, want, 12, 0, 0, "reshape of a strided view");
    /* view refuses what needs a copy; reshape of a merged-dims permute is
     * still a view when the layout allows it */
    assert_null(cg_view(p, S(8, 3)));
    th_assert_error_contains(ctx, "cg_view: a tensor of shape (4, 2, 3)");
    cg_ctx_clear_error(ctx);
    cg_tensor *pv = cg_view(cg_permute(x, S(1, 2, 0)), S(12, 2)); /* dims 1,2 stay adjacent */
    assert_true(cg_tensor_view(pv).buf == cg_tensor_view(x).buf);
    get(pv, ho);
    ref_view(want, hx, S(12, 2), (int64_t[]){1, 12}, 0);
    th_assert_close(ho, want, 24, 0, 0, "view of permute");
    /* flatten, unsqueeze, squeeze, expand */
    expect_shape(cg_flatten(x, 1, -1), S(2, 12));
    expect_shape(cg_flatten(x, 0, 1), S(6, 4));
    expect_shape(cg_unsqueeze(x, -1), S(2, 3, 4, 1));
    expect_shape(cg_squeeze(cg_unsqueeze(x, 1), 1), S(2, 3, 4));
    cg_tensor *col = cg_slice(x, 2, 1, 2, 1); /* (2, 3, 1) */
    cg_tensor *e = cg_expand(col, S(2, 2, -1, 5));
    expect_shape(e, S(2, 2, 3, 5));
    get(e, ho);
    ref_view(want, hx, S(2, 2, 3, 5), (int64_t[]){0, 12, 4, 0}, 1);
    th_assert_close(ho, want, 60, 0, 0, "expand");
    assert_null(cg_expand(x, S(2, 5, 4)));
    th_assert_error_contains(ctx, "cg_expand: cannot expand (2, 3, 4) to (2, 5, 4)");
    cg_ctx_clear_error(ctx);
    /* cat along the middle dim, 5 inputs (more than a node holds) */
    cg_tensor *parts[5];
    for (int i = 0; i < 5; i++) parts[i] = cg_slice(x, 1, i % 3, i % 3 + 1, 1);
    cg_tensor *ct = cg_cat(5, parts, 1);
    expect_shape(ct, S(2, 5, 4));
    get(ct, ho);
    for (int a = 0; a < 2; a++)
        for (int i = 0; i < 5; i++)
            for (int j = 0; j < 4; j++) want[(a * 5 + i) * 4 + j] = hx[a * 12 + (i % 3) * 4 + j];
    th_assert_close(ho, want, 40, 0, 0, "cat");
    assert_null(cg_cat(2, (cg_tensor *[]){x, r}, 0));
    th_assert_error_contains(ctx, "cg_cat: tensor 1 of shape (4, 6)");
    cg_ctx_clear_error(ctx);
    /* bad arguments */
    assert_null(cg_reshape(x, S(5, -1)));
    th_assert_error_contains(ctx, "cg_reshape: cannot reshape (2, 3, 4) (24 elements) into (5, -1)");
    cg_ctx_clear_error(ctx);
    assert_null(cg_permute(x, S(0, 0, 1)));
    th_assert_error_contains(ctx, "is not a permutation");
    cg_ctx_clear_error(ctx);
    assert_null(cg_squeeze(x, 0));
    th_assert_error_contains(ctx, "cg_squeeze: dim 0 of (2, 3, 4) has size 2");
    cg_ctx_clear_error(ctx);
    assert_null(cg_slice(x, 0, 0, 1, 0));
    th_assert_error_contains(ctx, "cg_slice: step 0");
    cg_ctx_clear_error(ctx);
    /* detach shares the data */
    assert_true(cg_tensor_view(cg_detach(p)).buf == cg_tensor_view(x).buf);
    cg_scope_end(ctx);
}

/* ---- indexing ---- */

static void test_index(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 17;
    static float ht[MAXN], ho[MAXN];
    static double want[MAXN];
    cg_scope_begin(ctx);
    cg_tensor *table = rnd(ctx, &rng, S(6, 5), -1, 1, ht);
    const float rows[2][4] = {{5, 0, 0, 3}, {1, 2, 5, 4}};
    cg_tensor *idx = cg_tensor_from_host(ctx, S(2, 4), &rows[0][0]);
    cg_tensor *o = cg_index_rows(table, idx);
    expect_shape(o, S(2, 4, 5));
    get(o, ho);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 5; j++) want[i * 5 + j] = ht[(int)(&rows[0][0])[i] * 5 + j];
    th_assert_close(ho, want, 40, 0, 0, "index_rows");
    /* pick from a strided source (transposed table: (5, 6)) */
    const float cols[5] = {0, 5, 3, 3, 1};
    cg_tensor *ci = cg_tensor_from_host(ctx, S(5), cols);
    get(cg_pick(cg_transpose(table, 0, 1), ci), ho);
    for (int i = 0; i < 5; i++) want[i] = ht[(int)cols[i] * 5 + i];
    th_assert_close(ho, want, 5, 0, 0, "pick");
    /* validation: out of range, negative, not an integer, wrong shapes */
    const float bad[3][5] = {{0, 1, 6, 2, 0}, {0, -1, 0, 0, 0}, {0, 1.5f, 0, 0, 0}};
    assert_null(cg_index_rows(table, cg_tensor_from_host(ctx, S(5), bad[0])));
    th_assert_error_contains(ctx, "cg_index_rows: index 6 at position 2 is not an integer in [0, 6)");
    cg_ctx_clear_error(ctx);
    assert_null(cg_pick(cg_transpose(table, 0, 1), cg_tensor_from_host(ctx, S(5), bad[1])));
    th_assert_error_contains(ctx, "cg_pick: index -1 at position 1");
    cg_ctx_clear_error(ctx);
    assert_null(cg_pick(cg_transpose(table, 0, 1), cg_tensor_from_host(ctx, S(5), bad[2])));
    th_assert_error_contains(ctx, "index 1.5 at position 1");
    cg_ctx_clear_error(ctx);
    assert_null(cg_pick(table, ci));
    th_assert_error_contains(ctx, "cg_pick: src (6, 5) must be (N, C) and idx (5,) must be (N)");
    cg_ctx_clear_error(ctx);
    /* empty index */
    expect_shape(cg_index_rows(table, cg_tensor_empty(ctx, S(0))), S(0, 5));
    cg_scope_end(ctx);
}

/* ---- errors, NULL chains, in-place ---- */

static void test_errors_and_inplace(void **state)
{
    cg_ctx *ctx = *state;
    cg_scope_begin(ctx);
    cg_tensor *a = cg_tensor_zeros(ctx, S(32, 10)), *b = cg_tensor_zeros(ctx, S(3, 10));
    assert_null(cg_add(a, b));
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "cg_add: shapes (32, 10) and (3, 10) do not broadcast");
    /* a chain with a failure inside returns NULL and keeps the first error */
    cg_tensor *r = cg_relu(cg_matmul(cg_sub(a, b), a));
    assert_null(r);
    assert_null(cg_sum_all(r));
    th_assert_error_contains(ctx, "cg_sub: shapes (32, 10) and (3, 10)");
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_SHAPE_MISMATCH);
    cg_ctx_clear_error(ctx);
    assert_int_equal(cg_ctx_status(ctx), CG_OK);
    /* in-place fill and broadcast copy, on a strided destination */
    cg_tensor *t = cg_tensor_zeros(ctx, S(4, 3));
    cg_tensor *tt = cg_transpose(t, 0, 1); /* (3, 4) view */
    assert_int_equal(cg_tensor_fill(cg_slice(tt, 0, 1, 3, 1), 2.0f), CG_OK);
    const float row[4] = {1, 2, 3, 4};
    assert_int_equal(cg_tensor_copy(cg_slice(tt, 0, 0, 1, 1), cg_tensor_from_host(ctx, S(4), row)),
                     CG_OK);
    float h[12];
    get(t, h);
    for (int i = 0; i < 4; i++) {
        assert_float_equal(h[i * 3], row[i], 0);
        assert_float_equal(h[i * 3 + 1], 2.0f, 0);
        assert_float_equal(h[i * 3 + 2], 2.0f, 0);
    }
    assert_int_equal(cg_tensor_copy(t, cg_tensor_zeros(ctx, S(3, 4))), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "cg_tensor_copy: shapes (4, 3) and (3, 4) do not broadcast");
    cg_ctx_clear_error(ctx);
    assert_int_equal(cg_tensor_fill(cg_expand(cg_tensor_zeros(ctx, S(1)), S(3)), 1.0f),
                     CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "expanded (stride 0) view");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
}

/* Ops run with no scope open leave only their results behind: once the
 * results (views included, which are results too) are freed, so is all
 * device memory the composite ops used internally. */
static void test_no_scope_no_leak(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_backend_stats s0, s1;
    cg_tensor *x = cg_tensor_full(ctx, S(3, 4), 0.5f);
    cg_ctx_stats(ctx, &s0);
    cg_tensor *t[8];
    t[0] = cg_transpose(x, 0, 1);
    t[1] = cg_softmax(t[0], 0);                  /* composite: inner axis */
    t[2] = cg_slice(x, 1, 0, 4, 2);
    t[3] = cg_matmul(t[1], t[2]);                /* strided operand copy */
    t[4] = cg_permute(t[3], S(1, 0));
    t[5] = cg_sum(t[4], 0, false);               /* strided reduce */
    t[6] = cg_reshape(t[4], S(-1));              /* copy */
    t[7] = cg_cat(6, (cg_tensor *[]){x, x, x, x, x, x}, 0); /* nested cats */
    for (int i = 0; i < 8; i++) assert_non_null(t[i]);
    for (int i = 7; i >= 0; i--) cg_tensor_free(t[i]);
    cg_ctx_stats(ctx, &s1);
    assert_int_equal(s1.bytes_in_use, s0.bytes_in_use);
    cg_tensor_free(x);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_binary_broadcast, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_unary_scalar, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_reductions, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_matmul, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_softmax, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_views, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_index, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_errors_and_inplace, setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_no_scope_no_leak, setup, th_teardown),
    };
    return TH_RUN(tests);
}
