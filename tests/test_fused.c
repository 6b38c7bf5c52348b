/*
 * tests/test_fused.c — the fused sequence-model kernels of struct
 * cg_backend_i (lstm_cell, lstm_cell_backward, softmax_causal) and the
 * layers that use them (src/nn/rnn.c's LSTM step, src/nn/attention.c's
 * causal softmax), on the backend named by CLGRAD_BACKEND:
 *
 *   - the primitives, called directly, against float64 references written
 *     here from the torch.nn.LSTM equations and the causal-softmax formula
 *     in backend.h: random inputs, odd B and H, pre-activations large
 *     enough to saturate every gate; outputs start as garbage between
 *     guard elements, so an unwritten element or a stray write fails;
 *   - causal softmax: masked entries exactly 0 (their inputs are NaN, so
 *     reading one would show), rows summing to 1, periods shorter and
 *     longer than the row;
 *   - the fused and the composed paths (the same context with a vtable
 *     copy whose fused members are NULL) give the same outputs and
 *     gradients, to float rounding, and the fused path launches fewer
 *     kernels;
 *   - bias_gelu and its backward against float64 (erfc from libm), both
 *     tails and z near 0, with and without a bias;
 *   - layernorm and its backward against float64 (torch.nn.LayerNorm's
 *     formulas, backend.h): one column, narrow and wide rows, rows wider
 *     than a work-group, no rows, inputs far from 0 (the variance must not
 *     cancel), with and without weight / bias and gw / gb; the parameter
 *     gradients bitwise the same on a second run; a LayerNorm module fused
 *     vs composed;
 *   - finite-difference gradient checks (gradcheck.h) through the fused
 *     LSTM op (several steps, two layers, initial states, saturating
 *     gates) and through a Transformer block's fused bias + GELU.
 *
 * Tolerances, |got - want| <= atol + rtol * |want|:
 *   lstm_cell c, h, save                  rtol 1e-5, atol 1e-6
 *   lstm_cell_backward                    rtol 1e-5, atol 5e-6
 *       (the float activations saved by the forward carry 1 ulp, and
 *        1 - i for a saturated gate is then off by up to 6e-8 absolute)
 *   softmax_causal                        rtol 1e-5, atol 1e-7; masked == 0
 *   bias_gelu, bias_gelu_backward         rtol 1e-5, atol 1e-6
 *   layernorm y, mean, rstd               rtol 1e-5, atol 1e-5
 *   layernorm_backward gx                 rtol 1e-4, atol 1e-5
 *       (gx subtracts two row means from g: a float row sum's rounding
 *        relative to the largest term, times rstd)
 *   layernorm_backward gw, gb             rtol 1e-5, atol 1e-6 * rows
 *       (float column sums of `rows` terms of magnitude <= ~2)
 *   fused vs composed (module level)      rtol 1e-5, atol 1e-6
 *       (a Transformer block: atol 1e-5; a LayerNorm: rtol 1e-4, atol
 *        1e-5, the float mean rounding as in layernorm's checks)
 */
#include "harness.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/internal.h"
#include "gradcheck.h"

#define GUARD 4
#define GUARD_VALUE 4321.0f
#define GARBAGE 777.0f

static float *fetch(const cg_tensor *t)
{
    assert_non_null(t);
    int64_t n = cg_tensor_numel(t);
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(cg_tensor_to_host(t, h, n), CG_OK);
    return h;
}

/* ---- device arrays with guards ------------------------------------------ */

struct darr {
    cg_tensor *t;
    struct cg_ptr at;   /* the first element after the leading guard */
    int64_t n;
};

/* A device copy of host[0, n) between guards (host NULL: GARBAGE). */
static struct darr darr_new(cg_ctx *ctx, const float *host, int64_t n)
{
    int64_t total = n + 2 * GUARD;
    float *h = malloc((size_t)total * sizeof *h);
    assert_non_null(h);
    for (int64_t i = 0; i < total; i++) h[i] = GUARD_VALUE;
    for (int64_t i = 0; i < n; i++) h[GUARD + i] = host ? host[i] : GARBAGE;
    cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(total), h);
    free(h);
    if (!t) fail_msg("cg_tensor_from_host(%lld): %s", (long long)total, cg_last_error(ctx));
    struct cg_view v = cg_tensor_view(t);
    return (struct darr){t, {v.buf, v.off + GUARD}, n};
}

/* The region on the host (malloc'd), failing if a guard changed. */
static float *darr_read(struct darr d, const char *what)
{
    float *h = fetch(d.t);
    for (int64_t i = 0; i < GUARD; i++)
        if (h[i] != GUARD_VALUE || h[GUARD + d.n + i] != GUARD_VALUE)
            fail_msg("%s: a guard element outside the region changed", what);
    memmove(h, h + GUARD, (size_t)d.n * sizeof *h);
    return h;
}

struct env {
    cg_ctx *ctx;
    const struct cg_backend_i *be;
    void *bctx;
};

static struct env env_of(void **state)
{
    struct env e = {.ctx = *state};
    e.be = cg_ctx_backend(e.ctx, &e.bctx);
    assert_non_null(e.be);
    return e;
}

static bool has_fused_lstm(const struct cg_backend_i *be)
{
    return CG_BACKEND_HAS(be, lstm_cell) && CG_BACKEND_HAS(be, lstm_cell_backward);
}

#define CHECK_OK(e, call)                                                                   \
    do {                                                                                    \
        cg_status s_ = (call);                                                              \
        if (s_ != CG_OK)                                                                    \
            fail_msg("%s -> %s: %s", #call, cg_status_str(s_), (e)->be->last_error((e)->bctx)); \
    } while (0)

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- lstm_cell / lstm_cell_backward against float64 ---------------------- */

/* One (B, H) case; gates uniform in [-span, span), a few of them +-(span..3 span). */
static void check_lstm_cell(struct env *e, uint64_t seed, int64_t B, int64_t H, float span)
{
    uint64_t rng = seed;
    const int64_t n = B * H;
    float *G = malloc((size_t)(4 * n) * sizeof *G), *cp = malloc((size_t)n * sizeof *cp);
    float *gh = malloc((size_t)n * sizeof *gh), *gc = malloc((size_t)n * sizeof *gc);
    assert_true(G && cp && gh && gc);
    th_fill_uniform(&rng, G, 4 * n, -span, span);
    for (int64_t k = 0; k < 4 * n; k += 5) G[k] = (float)th_rand_uniform(&rng, span, 3 * span) *
                                               (k % 2 ? -1.0f : 1.0f);
    th_fill_uniform(&rng, cp, n, -3, 3);
    th_fill_uniform(&rng, gh, n, -1, 1);
    th_fill_uniform(&rng, gc, n, -1, 1);

    /* float64 references (torch.nn.LSTM docs) */
    double *c_ref = malloc((size_t)n * sizeof *c_ref), *h_ref = malloc((size_t)n * sizeof *h_ref);
    double *s_ref = malloc((size_t)(5 * n) * sizeof *s_ref);
    double *dG_ref = malloc((size_t)(4 * n) * sizeof *dG_ref);
    double *dcp_ref = malloc((size_t)n * sizeof *dcp_ref);
    assert_true(c_ref && h_ref && s_ref && dG_ref && dcp_ref);
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < H; j++) {
            const float *g4 = G + b * 4 * H;
            int64_t t = b * H + j;
            double i = sigmoid_d(g4[j]), f = sigmoid_d(g4[H + j]);
            double g = tanh(g4[2 * H + j]), o = sigmoid_d(g4[3 * H + j]);
            double c = f * cp[t] + i * g, tc = tanh(c);
            c_ref[t] = c;
            h_ref[t] = o * tc;
            double *s = s_ref + b * 5 * H + j;
            s[0] = i, s[H] = f, s[2 * H] = g, s[3 * H] = o, s[4 * H] = tc;
            /* d/dG of <gh, h> + <gc, c> by the chain rule */
            double dc = gc[t] + gh[t] * o * (1 - tc * tc);
            double *d = dG_ref + b * 4 * H + j;
            d[0] = dc * g * i * (1 - i);
            d[H] = dc * cp[t] * f * (1 - f);
            d[2 * H] = dc * i * (1 - g * g);
            d[3 * H] = gh[t] * tc * o * (1 - o);
            dcp_ref[t] = dc * f;
        }

    cg_scope_begin(e->ctx);
    struct darr dGt = darr_new(e->ctx, G, 4 * n), dcp = darr_new(e->ctx, cp, n);
    struct darr dc = darr_new(e->ctx, NULL, n), dh = darr_new(e->ctx, NULL, n);
    struct darr ds = darr_new(e->ctx, NULL, 5 * n);
    CHECK_OK(e, e->be->lstm_cell(e->bctx, dc.at, dh.at, ds.at, dGt.at, dcp.at, B, H));
    char what[96];
    float *c = darr_read(dc, "lstm_cell c"), *h = darr_read(dh, "lstm_cell h");
    float *s = darr_read(ds, "lstm_cell save");
    snprintf(what, sizeof what, "lstm_cell c (B=%lld, H=%lld, span %g)", (long long)B,
             (long long)H, (double)span);
    th_assert_close(c, c_ref, n, 1e-5, 1e-6, what);
    what[10] = 'h';
    th_assert_close(h, h_ref, n, 1e-5, 1e-6, what);
    th_assert_close(s, s_ref, 5 * n, 1e-5, 1e-6, "lstm_cell save [i|f|g|o|tanh c]");

    struct darr dgh = darr_new(e->ctx, gh, n), dgc = darr_new(e->ctx, gc, n);
    struct darr ddG = darr_new(e->ctx, NULL, 4 * n), ddcp = darr_new(e->ctx, NULL, n);
    CHECK_OK(e, e->be->lstm_cell_backward(e->bctx, ddG.at, ddcp.at, dgh.at, dgc.at, ds.at,
                                          dcp.at, B, H));
    float *dG = darr_read(ddG, "lstm_cell_backward g_gates");
    float *dcpv = darr_read(ddcp, "lstm_cell_backward g_c_prev");
    snprintf(what, sizeof what, "lstm_cell_backward g_gates (B=%lld, H=%lld, span %g)",
             (long long)B, (long long)H, (double)span);
    th_assert_close(dG, dG_ref, 4 * n, 1e-5, 5e-6, what);
    th_assert_close(dcpv, dcp_ref, n, 1e-5, 5e-6, "lstm_cell_backward g_c_prev");
    cg_scope_end(e->ctx);

    free(c), free(h), free(s), free(dG), free(dcpv);
    free(G), free(cp), free(gh), free(gc);
    free(c_ref), free(h_ref), free(s_ref), free(dG_ref), free(dcp_ref);
}

static void test_lstm_cell_primitive(void **state)
{
    struct env e = env_of(state);
    if (!has_fused_lstm(e.be)) {
        print_message("backend %s has no fused LSTM cell: skipped\n", e.be->name);
        skip();
    }
    const struct {
        int64_t B, H;
        float span;
    } cases[] = {{1, 1, 3}, {3, 7, 3}, {5, 33, 4}, {2, 129, 2}, {3, 17, 40}, {7, 5, 90}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        check_lstm_cell(&e, 100 + k, cases[k].B, cases[k].H, cases[k].span);
}

static void test_lstm_cell_errors(void **state)
{
    struct env e = env_of(state);
    if (!has_fused_lstm(e.be)) skip();
    cg_scope_begin(e.ctx);
    struct darr small = darr_new(e.ctx, NULL, 10), big = darr_new(e.ctx, NULL, 200);
    /* gates of B=2, H=5 need 40 elements: 10 is too few */
    cg_status s = e.be->lstm_cell(e.bctx, big.at, big.at, big.at, small.at, big.at, 2, 5);
    assert_int_equal(s, CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "lstm_cell"));
    s = e.be->lstm_cell_backward(e.bctx, big.at, big.at, big.at, big.at, small.at, big.at, 2, 5);
    assert_int_equal(s, CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "lstm_cell_backward"));
    s = e.be->lstm_cell(e.bctx, big.at, big.at, big.at, big.at, big.at, -1, 5);
    assert_int_equal(s, CG_STATUS_INVALID_ARGUMENT);
    cg_scope_end(e.ctx);
}

/* ---- softmax_causal ------------------------------------------------------- */

static void check_softmax_causal(struct env *e, uint64_t seed, int64_t rows, int64_t cols,
                                 int64_t period, float span)
{
    uint64_t rng = seed;
    const int64_t n = rows * cols;
    float *x = malloc((size_t)n * sizeof *x);
    double *ref = malloc((size_t)n * sizeof *ref);
    assert_true(x && ref);
    th_fill_uniform(&rng, x, n, -span, span);
    for (int64_t r = 0; r < rows; r++) {
        int64_t q = r % period, seen = q < cols ? q + 1 : cols;
        double m = -INFINITY, sum = 0;
        for (int64_t j = 0; j < seen; j++) m = fmax(m, x[r * cols + j]);
        for (int64_t j = 0; j < seen; j++) sum += exp(x[r * cols + j] - m);
        for (int64_t j = 0; j < cols; j++)
            ref[r * cols + j] = j < seen ? exp(x[r * cols + j] - m) / sum : 0.0;
        for (int64_t j = seen; j < cols; j++) x[r * cols + j] = NAN; /* never read */
    }
    cg_scope_begin(e->ctx);
    struct darr din = darr_new(e->ctx, x, n), dout = darr_new(e->ctx, NULL, n);
    CHECK_OK(e, e->be->softmax_causal(e->bctx, dout.at, din.at, rows, cols, period));
    float *y = darr_read(dout, "softmax_causal out");
    char what[128];
    snprintf(what, sizeof what, "softmax_causal (%lld, %lld) period %lld span %g",
             (long long)rows, (long long)cols, (long long)period, (double)span);
    th_assert_close(y, ref, n, 1e-5, 1e-7, what);
    for (int64_t r = 0; r < rows; r++) {
        double sum = 0;
        int64_t q = r % period;
        for (int64_t j = 0; j < cols; j++) {
            if (j > q && y[r * cols + j] != 0.0f)
                fail_msg("%s: row %lld (q %lld) column %lld is %g, not exactly 0", what,
                         (long long)r, (long long)q, (long long)j, (double)y[r * cols + j]);
            sum += y[r * cols + j];
        }
        if (fabs(sum - 1.0) > 1e-5)
            fail_msg("%s: row %lld sums to %.9g", what, (long long)r, sum);
    }
    cg_scope_end(e->ctx);
    free(y);
    free(x);
    free(ref);
}

static void test_softmax_causal_primitive(void **state)
{
    struct env e = env_of(state);
    if (!CG_BACKEND_HAS(e.be, softmax_causal)) {
        print_message("backend %s has no causal softmax: skipped\n", e.be->name);
        skip();
    }
    check_softmax_causal(&e, 1, 3 * 7, 7, 7, 3);     /* 3 blocks of (7, 7)       */
    check_softmax_causal(&e, 2, 1, 1, 1, 3);         /* T = 1                    */
    check_softmax_causal(&e, 3, 10, 9, 5, 5);        /* period < cols            */
    check_softmax_causal(&e, 4, 6, 3, 6, 5);         /* period > cols: late rows full */
    check_softmax_causal(&e, 5, 2 * 33, 33, 33, 60); /* large scores             */
    check_softmax_causal(&e, 6, 2 * 300, 300, 300, 8); /* rows wider than a work-group */

    /* bad arguments: period 0, a block outside its buffer */
    cg_scope_begin(e.ctx);
    struct darr a = darr_new(e.ctx, NULL, 12);
    assert_int_equal(e.be->softmax_causal(e.bctx, a.at, a.at, 3, 4, 0),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "softmax_causal"));
    assert_int_equal(e.be->softmax_causal(e.bctx, a.at, a.at, 10, 4, 4),
                     CG_STATUS_INVALID_ARGUMENT);
    cg_scope_end(e.ctx);
}

/* ---- bias_gelu / bias_gelu_backward against float64 ------------------------ */

/* Both in-tree backends (cpu, opencl) have the fused bias + GELU: its tests
 * fail there when it is missing, and skip only for an out-of-tree plugin. */
static void require_bias_gelu(const struct cg_backend_i *be)
{
    if (CG_BACKEND_HAS(be, bias_gelu) && CG_BACKEND_HAS(be, bias_gelu_backward)) return;
    if (strcmp(be->name, "cpu") == 0 || strcmp(be->name, "opencl") == 0)
        fail_msg("backend %s lacks bias_gelu / bias_gelu_backward", be->name);
    print_message("backend %s has no fused bias + GELU: skipped\n", be->name);
    skip();
}

static double gelu_cdf_d(double z) { return 0.5 * erfc(-z / sqrt(2.0)); }

/* One (rows, cols) case; x uniform in [-span, span), bias in [-1, 1) or none. */
static void check_bias_gelu(struct env *e, uint64_t seed, int64_t rows, int64_t cols, float span,
                            bool with_bias)
{
    uint64_t rng = seed;
    const int64_t n = rows * cols;
    float *x = malloc((size_t)n * sizeof *x), *gy = malloc((size_t)n * sizeof *gy);
    float *b = malloc((size_t)cols * sizeof *b);
    double *y_ref = malloc((size_t)n * sizeof *y_ref), *gx_ref = malloc((size_t)n * sizeof *gx_ref);
    assert_true(x && gy && b && y_ref && gx_ref);
    th_fill_uniform(&rng, x, n, -span, span);
    th_fill_uniform(&rng, gy, n, -1, 1);
    th_fill_uniform(&rng, b, cols, -1, 1);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) {
            /* z in double from the float inputs, as the kernel sees them */
            double z = (double)x[r * cols + j] + (with_bias ? (double)b[j] : 0.0);
            double pdf = exp(-0.5 * z * z) / sqrt(2.0 * M_PI);
            y_ref[r * cols + j] = z * gelu_cdf_d(z);
            gx_ref[r * cols + j] = gy[r * cols + j] * (gelu_cdf_d(z) + z * pdf);
        }
    cg_scope_begin(e->ctx);
    struct darr dx = darr_new(e->ctx, x, n), db = darr_new(e->ctx, b, cols);
    struct darr dgy = darr_new(e->ctx, gy, n);
    struct darr dy = darr_new(e->ctx, NULL, n), dgx = darr_new(e->ctx, NULL, n);
    struct cg_ptr bias = with_bias ? db.at : (struct cg_ptr){NULL, 0};
    CHECK_OK(e, e->be->bias_gelu(e->bctx, dy.at, dx.at, bias, rows, cols));
    CHECK_OK(e, e->be->bias_gelu_backward(e->bctx, dgx.at, dx.at, bias, dgy.at, rows, cols));
    float *y = darr_read(dy, "bias_gelu out"), *gx = darr_read(dgx, "bias_gelu_backward gx");
    char what[128];
    snprintf(what, sizeof what, "bias_gelu (%lld, %lld) span %g bias %d", (long long)rows,
             (long long)cols, (double)span, with_bias);
    th_assert_close(y, y_ref, n, 1e-5, 1e-6, what);
    snprintf(what, sizeof what, "bias_gelu_backward (%lld, %lld) span %g bias %d",
             (long long)rows, (long long)cols, (double)span, with_bias);
    th_assert_close(gx, gx_ref, n, 1e-5, 1e-6, what);
    cg_scope_end(e->ctx);
    free(y), free(gx), free(x), free(gy), free(b), free(y_ref), free(gx_ref);
}

static void test_bias_gelu_primitive(void **state)
{
    struct env e = env_of(state);
    require_bias_gelu(e.be);
    check_bias_gelu(&e, 11, 1, 1, 2, true);
    check_bias_gelu(&e, 12, 7, 13, 3, true);
    check_bias_gelu(&e, 13, 5, 37, 9, false); /* both tails: Phi ~ 0 and ~ 1 */
    check_bias_gelu(&e, 14, 3, 257, 0.01f, true);
    check_bias_gelu(&e, 15, 2, 9, 0.001f, false); /* z near 0 */
    check_bias_gelu(&e, 16, 67, 256, 4, true);    /* many work-groups (a d=64 FFN row) */
    check_bias_gelu(&e, 17, 129, 33, 4, false);
    check_bias_gelu(&e, 18, 32768 + 37, 3, 4, true); /* taller than one opencl launch */

    cg_scope_begin(e.ctx);
    struct darr a = darr_new(e.ctx, NULL, 12), bias = darr_new(e.ctx, NULL, 4);
    /* a (5, 4) block does not fit 12 elements (+ the trailing guard) */
    assert_int_equal(e.be->bias_gelu(e.bctx, a.at, a.at, bias.at, 5, 4),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "bias_gelu"));
    /* a bias starting 3 elements before its buffer's end, for 4 columns */
    struct cg_ptr short_bias = {bias.at.buf, bias.at.off + 4 + GUARD - 3};
    assert_int_equal(e.be->bias_gelu(e.bctx, a.at, a.at, short_bias, 3, 4),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_int_equal(e.be->bias_gelu_backward(e.bctx, a.at, a.at, bias.at, a.at, -1, 4),
                     CG_STATUS_INVALID_ARGUMENT);
    cg_scope_end(e.ctx);
}

/* ---- layernorm / layernorm_backward against float64 ------------------------ */

/* Both in-tree backends have the fused LayerNorm: as for bias + GELU. */
static void require_layernorm(const struct cg_backend_i *be)
{
    if (CG_BACKEND_HAS(be, layernorm) && CG_BACKEND_HAS(be, layernorm_backward)) return;
    if (strcmp(be->name, "cpu") == 0 || strcmp(be->name, "opencl") == 0)
        fail_msg("backend %s lacks layernorm / layernorm_backward", be->name);
    print_message("backend %s has no fused LayerNorm: skipped\n", be->name);
    skip();
}

#define LN_EPS 1e-5f

struct ln_case {
    int64_t rows, cols;
    float shift, span; /* x uniform in [shift - span, shift + span) */
    bool affine;       /* w, b given (else NULL bufs: 1 and 0)        */
    bool param_grads;  /* gw, gb asked for (else NULL bufs)           */
};

/* float64 references from the float inputs (backend.h's formulas), and
 * per element the error a float kernel cannot avoid on top of the stated
 * tolerances: its mean carries ~log2(cols) roundings of the row's values,
 * and xhat = (x - mean) rstd then an absolute error of about
 *   e_r = 2 (log2(cols) + 2) FLT_EPSILON mean_j |x[r, j]| rstd[r],
 * large for a row far from 0 with a small spread (300 rows of 3 values
 * around 2 hold some), and taken into y (times |w|), gx (through xhat and
 * the row mean of g xhat) and gw (summed over rows). */
struct ln_ref {
    double *y, *mean, *rstd, *gx, *gw, *gb;
    double *ty, *tgx, *tgw;   /* the unavoidable errors */
};

static struct ln_ref ln_reference(const struct ln_case *k, const float *x, const float *w,
                                  const float *b, const float *gy)
{
    const int64_t R = k->rows, C = k->cols, n = R * C;
    struct ln_ref f = {malloc((size_t)(n + 1) * sizeof(double)),
                       malloc((size_t)(R + 1) * sizeof(double)),
                       malloc((size_t)(R + 1) * sizeof(double)),
                       malloc((size_t)(n + 1) * sizeof(double)),
                       calloc((size_t)C, sizeof(double)), calloc((size_t)C, sizeof(double)),
                       malloc((size_t)(n + 1) * sizeof(double)),
                       malloc((size_t)(n + 1) * sizeof(double)),
                       calloc((size_t)C, sizeof(double))};
    assert_true(f.y && f.mean && f.rstd && f.gx && f.gw && f.gb && f.ty && f.tgx && f.tgw);
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * C, *gr = gy + r * C;
        double mu = 0, var = 0, mg = 0, mgx = 0, mabs = 0, gmax = 0;
        for (int64_t j = 0; j < C; j++) mu += xr[j], mabs += fabs(xr[j]) / (double)C;
        mu /= (double)C;
        for (int64_t j = 0; j < C; j++) var += (xr[j] - mu) * (xr[j] - mu);
        double rs = 1.0 / sqrt(var / (double)C + (double)LN_EPS);
        double ex = 2.0 * (log2((double)C) + 2.0) * FLT_EPSILON * mabs * rs;
        for (int64_t j = 0; j < C; j++)
            gmax = fmax(gmax, fabs(gr[j] * (k->affine ? w[j] : 1.0)));
        f.mean[r] = mu;
        f.rstd[r] = rs;
        for (int64_t j = 0; j < C; j++) {
            double xh = (xr[j] - mu) * rs, g = (double)gr[j] * (k->affine ? w[j] : 1.0);
            f.y[r * C + j] = xh * (k->affine ? w[j] : 1.0) + (k->affine ? b[j] : 0.0);
            mg += g / (double)C;
            mgx += g * xh / (double)C;
            f.gw[j] += (double)gr[j] * xh;
            f.gb[j] += gr[j];
        }
        for (int64_t j = 0; j < C; j++) {
            double xh = (xr[j] - mu) * rs, g = (double)gr[j] * (k->affine ? w[j] : 1.0);
            f.gx[r * C + j] = rs * (g - mg - xh * mgx);
            f.ty[r * C + j] = ex * (k->affine ? fabs(w[j]) : 1.0);
            f.tgx[r * C + j] = 2.0 * rs * ex * gmax * (1.0 + fabs(xh));
            f.tgw[j] += fabs(gr[j]) * ex;
        }
    }
    return f;
}

static void ln_ref_free(struct ln_ref *f)
{
    free(f->y), free(f->mean), free(f->rstd), free(f->gx), free(f->gw), free(f->gb);
    free(f->ty), free(f->tgx), free(f->tgw);
}

/* |got - want| <= atol + rtol |want| + extra[i]. */
static void ln_assert_close(const float *got, const double *want, const double *extra,
                            int64_t n, double rtol, double atol, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        if (!(d <= atol + rtol * fabs(want[i]) + extra[i]))
            fail_msg("%s: element %lld of %lld: got %.9g, want %.9g (rtol %g, atol %g, "
                     "+ %g for the float mean)",
                     what, (long long)i, (long long)n, (double)got[i], want[i], rtol, atol,
                     extra[i]);
    }
}

static void check_layernorm(struct env *e, uint64_t seed, const struct ln_case *k)
{
    uint64_t rng = seed;
    const int64_t R = k->rows, C = k->cols, n = R * C;
    float *x = malloc((size_t)(n + 1) * sizeof *x), *gy = malloc((size_t)(n + 1) * sizeof *gy);
    float *w = malloc((size_t)C * sizeof *w), *b = malloc((size_t)C * sizeof *b);
    assert_true(x && gy && w && b);
    th_fill_uniform(&rng, x, n, k->shift - k->span, k->shift + k->span);
    th_fill_uniform(&rng, gy, n, -1, 1);
    th_fill_uniform(&rng, w, C, -1.5f, 1.5f);
    th_fill_uniform(&rng, b, C, -1, 1);
    struct ln_ref f = ln_reference(k, x, w, b, gy);

    char what[160];
    snprintf(what, sizeof what, "(%lld, %lld) x in %g +- %g, affine %d, gw/gb %d",
             (long long)R, (long long)C, (double)k->shift, (double)k->span, k->affine,
             k->param_grads);
    const struct cg_ptr none = {NULL, 0};
    cg_scope_begin(e->ctx);
    struct darr dx = darr_new(e->ctx, x, n), dy = darr_new(e->ctx, NULL, n);
    struct darr dm = darr_new(e->ctx, NULL, R), drs = darr_new(e->ctx, NULL, R);
    struct darr dw = darr_new(e->ctx, w, C), db = darr_new(e->ctx, b, C);
    CHECK_OK(e, e->be->layernorm(e->bctx, dy.at, dm.at, drs.at, dx.at,
                                 k->affine ? dw.at : none, k->affine ? db.at : none, R, C,
                                 LN_EPS));
    char msg[256];
    float *y = darr_read(dy, "layernorm y"), *mean = darr_read(dm, "layernorm mean");
    float *rstd = darr_read(drs, "layernorm rstd");
    snprintf(msg, sizeof msg, "layernorm y %s", what);
    ln_assert_close(y, f.y, f.ty, n, 1e-5, 1e-5, msg);
    snprintf(msg, sizeof msg, "layernorm mean %s", what);
    th_assert_close(mean, f.mean, R, 1e-5, 1e-5, msg);
    snprintf(msg, sizeof msg, "layernorm rstd %s", what);
    th_assert_close(rstd, f.rstd, R, 1e-5, 1e-5, msg);

    /* the backward reads the forward's own mean and rstd, as the layer does */
    struct darr dgy = darr_new(e->ctx, gy, n), dgx = darr_new(e->ctx, NULL, n);
    struct darr dgw = darr_new(e->ctx, NULL, C), dgb = darr_new(e->ctx, NULL, C);
    struct cg_ptr pgw = k->param_grads ? dgw.at : none, pgb = k->param_grads ? dgb.at : none;
    CHECK_OK(e, e->be->layernorm_backward(e->bctx, dgx.at, pgw, pgb, dgy.at, dx.at, dm.at,
                                          drs.at, k->affine ? dw.at : none, R, C));
    float *gx = darr_read(dgx, "layernorm_backward gx");
    float *gw = darr_read(dgw, "layernorm_backward gw");
    float *gb = darr_read(dgb, "layernorm_backward gb");
    snprintf(msg, sizeof msg, "layernorm_backward gx %s", what);
    ln_assert_close(gx, f.gx, f.tgx, n, 1e-4, 1e-5, msg);
    if (k->param_grads) {
        double atol = 1e-6 * (double)(R > 1 ? R : 1);
        snprintf(msg, sizeof msg, "layernorm_backward gw %s", what);
        ln_assert_close(gw, f.gw, f.tgw, C, 1e-5, atol, msg);
        snprintf(msg, sizeof msg, "layernorm_backward gb %s", what);
        th_assert_close(gb, f.gb, C, 1e-5, atol, msg);
        /* the same sums, bit for bit, on a second run */
        CHECK_OK(e, e->be->layernorm_backward(e->bctx, dgx.at, pgw, pgb, dgy.at, dx.at, dm.at,
                                              drs.at, k->affine ? dw.at : none, R, C));
        float *gw2 = darr_read(dgw, "layernorm_backward gw"), *gb2 = darr_read(dgb, "gb");
        if (memcmp(gw, gw2, (size_t)C * sizeof *gw) || memcmp(gb, gb2, (size_t)C * sizeof *gb))
            fail_msg("layernorm_backward %s: gw / gb differ between two runs", what);
        free(gw2), free(gb2);
    } else {
        for (int64_t j = 0; j < C; j++) /* NULL bufs: nothing written */
            if (gw[j] != GARBAGE || gb[j] != GARBAGE)
                fail_msg("layernorm_backward %s: wrote gw / gb without bufs", what);
    }
    cg_scope_end(e->ctx);
    ln_ref_free(&f);
    free(y), free(mean), free(rstd), free(gx), free(gw), free(gb);
    free(x), free(gy), free(w), free(b);
}

static void layernorm_cases(struct env *e)
{
    const struct {
        int64_t rows, cols;
        float shift, span;
    } shapes[] = {
        {1, 1, 0.5f, 2},    {7, 13, 0, 2},    {33, 64, 10, 2}, /* mean far from 0 */
        {5, 1000, -1, 3},   {300, 3, 0, 1.5f}, {0, 5, 0, 1},
        {3, 4099, 0, 2},    /* rows wider than any work-group, odd width */
        {9001, 3, 2, 1},    /* more column blocks than the opencl cap */
        {129, 257, 0, 0.01f},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int v = 0; v < 4; v++) {
            struct ln_case k = {shapes[i].rows, shapes[i].cols, shapes[i].shift,
                                shapes[i].span, v & 1, (v & 2) != 0};
            check_layernorm(e, 700 + 4 * i + (uint64_t)v, &k);
        }
}

static void test_layernorm_primitive(void **state)
{
    struct env e = env_of(state);
    require_layernorm(e.be);
    layernorm_cases(&e);
}

/* The opencl backend has two row layouts (backends/opencl/norm.c): a
 * work-item per row on CPU devices, a work-group per row elsewhere;
 * CLGRAD_LN_ROW_ITEMS=1 or 0 picks one at open, so both run here. */
static void test_layernorm_opencl_layouts(void **state)
{
    struct env e0 = env_of(state);
    if (strcmp(e0.be->name, "opencl") != 0) skip();
    for (int items = 0; items < 2; items++) {
        assert_int_equal(setenv("CLGRAD_LN_ROW_ITEMS", items ? "1" : "0", 1), 0);
        cg_ctx *ctx = th_ctx_create(4321);
        unsetenv("CLGRAD_LN_ROW_ITEMS");
        assert_non_null(ctx);
        print_message("opencl layernorm, %s per row\n", items ? "a work-item" : "a work-group");
        struct env e = env_of((void **)&ctx);
        layernorm_cases(&e);
        cg_ctx_free(ctx);
    }
}

/* The last k elements of d's buffer (its trailing guard included). */
static struct cg_ptr end_of(struct darr d, int64_t k)
{
    return (struct cg_ptr){d.at.buf, d.at.off + d.n + GUARD - k};
}

static void test_layernorm_errors(void **state)
{
    struct env e = env_of(state);
    require_layernorm(e.be);
    const struct cg_ptr none = {NULL, 0};
    cg_scope_begin(e.ctx);
    /* a (3, 4) block: blocks from a, rows from r, columns from c */
    struct darr ad = darr_new(e.ctx, NULL, 12), rd = darr_new(e.ctx, NULL, 3);
    struct darr cd = darr_new(e.ctx, NULL, 4);
    struct cg_ptr a = ad.at, r = rd.at, c = cd.at;
    /* one element short: */
    struct cg_ptr sa = end_of(ad, 11), sr = end_of(rd, 2), sc = end_of(cd, 3);
    const char *fwd = "layernorm", *bwd = "layernorm_backward";
#define LN_FWD(...) e.be->layernorm(e.bctx, __VA_ARGS__)
#define LN_BWD(...) e.be->layernorm_backward(e.bctx, __VA_ARGS__)
#define EXPECT_BAD(call, name)                                                              \
    do {                                                                                    \
        assert_int_equal((call), CG_STATUS_INVALID_ARGUMENT);                               \
        assert_non_null(strstr(e.be->last_error(e.bctx), (name)));                          \
    } while (0)
    /* the valid calls these vary */
    CHECK_OK(&e, LN_FWD(a, r, r, a, c, c, 3, 4, LN_EPS));
    CHECK_OK(&e, LN_BWD(a, c, c, a, a, r, r, c, 3, 4));
    /* sizes */
    const int64_t bad[][2] = {{-1, 4}, {3, 0}, {3, -2}, {INT64_MAX / 2, 4}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        EXPECT_BAD(LN_FWD(a, r, r, a, none, none, bad[i][0], bad[i][1], LN_EPS), fwd);
        EXPECT_BAD(LN_BWD(a, none, none, a, a, r, r, none, bad[i][0], bad[i][1]), bwd);
    }
    /* eps negative or NaN */
    EXPECT_BAD(LN_FWD(a, r, r, a, c, c, 3, 4, -1.0f), fwd);
    EXPECT_BAD(LN_FWD(a, r, r, a, c, c, 3, 4, NAN), fwd);
    /* each argument too short, or a required one missing */
    EXPECT_BAD(LN_FWD(sa, r, r, a, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, sr, r, a, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, r, sr, a, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, r, r, sa, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, r, r, a, sc, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, r, r, a, c, sc, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(none, r, r, a, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, none, r, a, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, r, none, a, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_FWD(a, r, r, none, c, c, 3, 4, LN_EPS), fwd);
    EXPECT_BAD(LN_BWD(sa, c, c, a, a, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, sc, c, a, a, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, sc, a, a, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, sa, a, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, a, sa, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, a, a, sr, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, a, a, r, sr, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, a, a, r, r, sc, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(none, c, c, a, a, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, none, a, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, a, none, r, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, a, a, none, r, c, 3, 4), bwd);
    EXPECT_BAD(LN_BWD(a, c, c, a, a, r, none, c, 3, 4), bwd);
#undef LN_FWD
#undef LN_BWD
#undef EXPECT_BAD
    cg_scope_end(e.ctx);
}

/* ---- fused vs composed ------------------------------------------------------ */

/* The context's vtable with the fused members cleared: the layers then take
 * their composed paths on the same device and buffers. Restored by
 * composed_end. */
static struct cg_backend_i composed_vtable;
static const struct cg_backend_i *saved_vtable;

static void composed_begin(cg_ctx *ctx)
{
    saved_vtable = ctx->be;
    composed_vtable = *ctx->be;
    composed_vtable.lstm_cell = NULL;
    composed_vtable.lstm_cell_backward = NULL;
    composed_vtable.softmax_causal = NULL;
    composed_vtable.bias_gelu = NULL;
    composed_vtable.bias_gelu_backward = NULL;
    composed_vtable.layernorm = NULL;
    composed_vtable.layernorm_backward = NULL;
    ctx->be = &composed_vtable;
}

static void composed_end(cg_ctx *ctx) { ctx->be = saved_vtable; }

/* Everything a run produces, on the host: the outputs and the gradients of
 * the inputs and parameters, concatenated, and the kernel launches. */
struct run {
    float *v;
    int64_t n;
    uint64_t launches;
};

static void run_append(struct run *r, const cg_tensor *t)
{
    float *h = fetch(t);
    int64_t n = cg_tensor_numel(t);
    r->v = realloc(r->v, (size_t)(r->n + n) * sizeof *r->v);
    assert_non_null(r->v);
    memcpy(r->v + r->n, h, (size_t)n * sizeof *h);
    r->n += n;
    free(h);
}

/* Weighted sum of t's elements with weights from *rng (the same for both
 * paths when the caller reseeds). */
static cg_tensor *weighted(cg_ctx *ctx, uint64_t *rng, cg_tensor *t)
{
    int64_t n = cg_tensor_numel(t);
    float *w = malloc((size_t)n * sizeof *w);
    assert_non_null(w);
    th_fill_uniform(rng, w, n, -1, 1);
    cg_tensor *wt = cg_tensor_from_host(ctx, cg_tensor_ndim(t), cg_tensor_shape(t), w);
    free(w);
    return cg_sum_all(cg_mul(t, wt));
}

struct lstm_case {
    int64_t B, T, IN, H;
    int L;
    bool batch_first, states, use_hn, use_cn;
    float wspan; /* parameter range: larger saturates the gates */
};

static struct run run_lstm(cg_ctx *ctx, cg_module *m, const struct lstm_case *k, cg_tensor *x,
                           cg_tensor *h0, cg_tensor *c0)
{
    struct run r = {0};
    struct cg_named_tensor ps[16];
    int np = cg_module_parameters(m, ps, 16);
    cg_tensor *leaves[3] = {x, h0, c0};
    for (int i = 0; i < np; i++) cg_tensor_clear_grad(ps[i].tensor);
    for (int i = 0; i < 3; i++)
        if (leaves[i]) cg_tensor_clear_grad(leaves[i]);
    struct cg_backend_stats s0, s1;
    cg_ctx_stats(ctx, &s0);
    cg_scope_begin(ctx);
    cg_tensor *hn = NULL, *cn = NULL;
    cg_tensor *y = th_rnn_run(m, x, h0, c0, &hn, &cn);
    if (!y) fail_msg("LSTM forward: %s", cg_last_error(ctx));
    uint64_t wr = 77;
    cg_tensor *loss = weighted(ctx, &wr, y);
    if (k->use_hn) loss = cg_add(loss, weighted(ctx, &wr, hn));
    if (k->use_cn) loss = cg_add(loss, weighted(ctx, &wr, cn));
    if (cg_backward(loss) != CG_OK) fail_msg("LSTM backward: %s", cg_last_error(ctx));
    run_append(&r, y);
    run_append(&r, hn);
    run_append(&r, cn);
    cg_scope_end(ctx);
    cg_ctx_stats(ctx, &s1);
    r.launches = s1.launches - s0.launches;
    for (int i = 0; i < 3; i++)
        if (leaves[i]) run_append(&r, cg_tensor_grad(leaves[i]));
    for (int i = 0; i < np; i++) run_append(&r, cg_tensor_grad(ps[i].tensor));
    return r;
}

static void check_lstm_fused_vs_composed(cg_ctx *ctx, uint64_t seed, const struct lstm_case *k)
{
    uint64_t rng = seed;
    cg_module *m = cg_recurrent_module(ctx, CG_RNN_LSTM, k->IN, k->H, k->L, true, k->batch_first);
    assert_non_null(m);
    struct cg_named_tensor ps[16];
    int np = cg_module_parameters(m, ps, 16);
    for (int i = 0; i < np; i++) {
        int64_t n = cg_tensor_numel(ps[i].tensor);
        float *v = malloc((size_t)n * sizeof *v);
        th_fill_uniform(&rng, v, n, -k->wspan, k->wspan);
        assert_int_equal(cg_tensor_set_data(ps[i].tensor, v, n), CG_OK);
        free(v);
    }
    cg_tensor *x = k->batch_first ? gc_input(ctx, &rng, CG_SHAPE(k->B, k->T, k->IN), -2, 2)
                                  : gc_input(ctx, &rng, CG_SHAPE(k->T, k->B, k->IN), -2, 2);
    cg_tensor *h0 = k->states ? gc_input(ctx, &rng, CG_SHAPE(k->L, k->B, k->H), -1, 1) : NULL;
    cg_tensor *c0 = k->states ? gc_input(ctx, &rng, CG_SHAPE(k->L, k->B, k->H), -2, 2) : NULL;

    struct run fused = run_lstm(ctx, m, k, x, h0, c0);
    composed_begin(ctx);
    struct run comp = run_lstm(ctx, m, k, x, h0, c0);
    composed_end(ctx);
    assert_int_equal(fused.n, comp.n);
    char what[160];
    snprintf(what, sizeof what,
             "LSTM fused vs composed (B=%lld T=%lld H=%lld L=%d batch_first=%d states=%d)",
             (long long)k->B, (long long)k->T, (long long)k->H, k->L, k->batch_first, k->states);
    th_assert_close_f(fused.v, comp.v, fused.n, 1e-5, 1e-6, what);
    if (fused.launches >= comp.launches)
        fail_msg("%s: fused path launched %llu kernels, composed %llu", what,
                 (unsigned long long)fused.launches, (unsigned long long)comp.launches);
    print_message("%s: %llu launches fused, %llu composed\n", what,
                  (unsigned long long)fused.launches, (unsigned long long)comp.launches);
    free(fused.v);
    free(comp.v);
    cg_tensor *own[3] = {x, h0, c0};
    gc_free_inputs(k->states ? 3 : 1, own);
    cg_module_free(m);
}

static void test_lstm_fused_vs_composed(void **state)
{
    cg_ctx *ctx = *state;
    if (!has_fused_lstm(ctx->be)) {
        print_message("backend %s has no fused LSTM cell: skipped\n", ctx->be->name);
        skip();
    }
    const struct lstm_case cases[] = {
        {3, 5, 4, 7, 2, true, true, true, true, 0.5f},
        {1, 4, 3, 5, 1, false, false, false, false, 0.5f}, /* loss on y only */
        {5, 3, 6, 9, 1, false, true, false, true, 3.0f},   /* saturating gates */
        {2, 6, 5, 33, 3, true, true, true, false, 0.3f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_lstm_fused_vs_composed(ctx, 300 + i, &cases[i]);
}

/* Causal attention and a causal Transformer block: fused softmax vs the
 * additive mask. */
static struct run run_module(cg_ctx *ctx, cg_module *m, cg_tensor *x, bool attn)
{
    struct run r = {0};
    struct cg_named_tensor ps[32];
    int np = cg_module_parameters(m, ps, 32);
    for (int i = 0; i < np; i++) cg_tensor_clear_grad(ps[i].tensor);
    cg_tensor_clear_grad(x);
    struct cg_backend_stats s0, s1;
    cg_ctx_stats(ctx, &s0);
    cg_scope_begin(ctx);
    cg_tensor *y = attn ? th_self_attention(m, x, true) : cg_module_forward(m, x);
    if (!y) fail_msg("forward: %s", cg_last_error(ctx));
    uint64_t wr = 78;
    if (cg_backward(weighted(ctx, &wr, y)) != CG_OK) fail_msg("backward: %s", cg_last_error(ctx));
    run_append(&r, y);
    cg_scope_end(ctx);
    cg_ctx_stats(ctx, &s1);
    r.launches = s1.launches - s0.launches;
    run_append(&r, cg_tensor_grad(x));
    for (int i = 0; i < np; i++) run_append(&r, cg_tensor_grad(ps[i].tensor));
    return r;
}

static void test_causal_attention_fused_vs_composed(void **state)
{
    cg_ctx *ctx = *state;
    if (!CG_BACKEND_HAS(ctx->be, softmax_causal)) {
        print_message("backend %s has no causal softmax: skipped\n", ctx->be->name);
        skip();
    }
    for (int kind = 0; kind < 2; kind++) {
        uint64_t rng = 400 + (uint64_t)kind;
        const int64_t B = 3, T = kind ? 9 : 5, E = 6;
        cg_module *m = kind ? cg_transformer_block_module(ctx, E, 2, 10, 0.0f, true)
                            : cg_multihead_attention_module(ctx, E, 3, 0.0f, true);
        assert_non_null(m);
        struct cg_named_tensor ps[32];
        int np = cg_module_parameters(m, ps, 32);
        for (int i = 0; i < np; i++) { /* nonzero biases, larger scores */
            int64_t n = cg_tensor_numel(ps[i].tensor);
            float *v = malloc((size_t)n * sizeof *v);
            th_fill_uniform(&rng, v, n, -1.2f, 1.2f);
            assert_int_equal(cg_tensor_set_data(ps[i].tensor, v, n), CG_OK);
            free(v);
        }
        cg_tensor *x = gc_input(ctx, &rng, CG_SHAPE(B, T, E), -2, 2);
        struct run fused = run_module(ctx, m, x, kind == 0);
        composed_begin(ctx);
        struct run comp = run_module(ctx, m, x, kind == 0);
        composed_end(ctx);
        assert_int_equal(fused.n, comp.n);
        const char *what = kind ? "causal block fused vs composed"
                                : "causal attention fused vs composed";
        /* the block's two LayerNorms round differently fused (a row sum
         * in one kernel) and composed (mean, sub, mul ops); the parameter
         * gradients after them are sums over B T rows of terms ~1 that
         * cancel to ~0.1, so they differ by ~1e-6 absolute */
        th_assert_close_f(fused.v, comp.v, fused.n, 1e-5, kind ? 1e-5 : 1e-6, what);
        if (fused.launches >= comp.launches)
            fail_msg("%s: fused path launched %llu kernels, composed %llu", what,
                     (unsigned long long)fused.launches, (unsigned long long)comp.launches);
        free(fused.v);
        free(comp.v);
        gc_free_inputs(1, &x);
        cg_module_free(m);
    }
}

/* A LayerNorm module: the fused kernels vs the composed ops, forward and
 * backward (input, weight and bias gradients), one and two normalised dims. */
static void test_layernorm_fused_vs_composed(void **state)
{
    cg_ctx *ctx = *state;
    require_layernorm(ctx->be);
    const struct {
        int nd;
        int64_t norm[2], x[3];
        float shift;
    } cases[] = {{1, {7}, {3, 5, 7}, 0.0f}, {2, {4, 6}, {2, 4, 6}, 5.0f}, {1, {64}, {2, 9, 64}, -3.0f},
                 {1, {1}, {4, 3, 1}, 0.0f}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        uint64_t rng = 450 + c;
        cg_module *m = cg_layernorm_module(ctx, cases[c].nd, cases[c].norm);
        assert_non_null(m);
        struct cg_named_tensor ps[2];
        assert_int_equal(cg_module_parameters(m, ps, 2), 2);
        for (int i = 0; i < 2; i++) {
            int64_t n = cg_tensor_numel(ps[i].tensor);
            float *v = malloc((size_t)n * sizeof *v);
            th_fill_uniform(&rng, v, n, -1.5f, 1.5f);
            assert_int_equal(cg_tensor_set_data(ps[i].tensor, v, n), CG_OK);
            free(v);
        }
        cg_tensor *x = gc_input(ctx, &rng, 3, cases[c].x, cases[c].shift - 2,
                                cases[c].shift + 2);
        struct run fused = run_module(ctx, m, x, false);
        composed_begin(ctx);
        struct run comp = run_module(ctx, m, x, false);
        composed_end(ctx);
        assert_int_equal(fused.n, comp.n);
        char what[96];
        snprintf(what, sizeof what, "LayerNorm fused vs composed (case %zu)", c);
        th_assert_close_f(fused.v, comp.v, fused.n, 1e-4, 1e-5, what);
        if (fused.launches >= comp.launches)
            fail_msg("%s: fused path launched %llu kernels, composed %llu", what,
                     (unsigned long long)fused.launches, (unsigned long long)comp.launches);
        print_message("%s: %llu launches fused, %llu composed\n", what,
                      (unsigned long long)fused.launches, (unsigned long long)comp.launches);
        free(fused.v);
        free(comp.v);
        gc_free_inputs(1, &x);
        cg_module_free(m);
    }
}

/* ---- gradient checks through the fused LSTM op ---------------------------- */

static cg_tensor *f_lstm(cg_tensor **in, void *user)
{
    cg_module *m = user;
    cg_tensor *hn = NULL, *cn = NULL;
    cg_tensor *y = th_rnn_run(m, in[0], in[1], in[2], &hn, &cn);
    cg_tensor *parts[3] = {cg_reshape(y, CG_SHAPE(-1)), cg_reshape(hn, CG_SHAPE(-1)),
                           cg_reshape(cn, CG_SHAPE(-1))};
    return cg_cat(3, parts, 0);
}

static void check_lstm_grad(cg_ctx *ctx, uint64_t seed, int64_t B, int64_t T, int64_t H, int L,
                            bool batch_first, float span)
{
    const int64_t IN = 3;
    uint64_t rng = seed;
    cg_module *m = cg_recurrent_module(ctx, CG_RNN_LSTM, IN, H, L, true, batch_first);
    assert_non_null(m);
    cg_tensor *in[3 + 4 * 3];
    int n = 0;
    in[n++] = batch_first ? gc_input(ctx, &rng, CG_SHAPE(B, T, IN), -span, span)
                          : gc_input(ctx, &rng, CG_SHAPE(T, B, IN), -span, span);
    in[n++] = gc_input(ctx, &rng, CG_SHAPE(L, B, H), -1, 1);
    in[n++] = gc_input(ctx, &rng, CG_SHAPE(L, B, H), -1, 1);
    int n_own = n;
    struct cg_named_tensor ps[12];
    int np = cg_module_parameters(m, ps, 12);
    for (int i = 0; i < np; i++) {
        int64_t k = cg_tensor_numel(ps[i].tensor);
        float *v = malloc((size_t)k * sizeof *v);
        th_fill_uniform(&rng, v, k, -0.8f, 0.8f);
        assert_int_equal(cg_tensor_set_data(ps[i].tensor, v, k), CG_OK);
        free(v);
        in[n++] = ps[i].tensor;
    }
    char what[96];
    snprintf(what, sizeof what, "fused LSTM B=%lld T=%lld H=%lld L=%d span %g", (long long)B,
             (long long)T, (long long)H, L, (double)span);
    gc_check(ctx, what, f_lstm, m, n, in, NULL);
    gc_free_inputs(n_own, in);
    cg_module_free(m);
}

static void test_lstm_fused_gradcheck(void **state)
{
    cg_ctx *ctx = *state;
    if (!has_fused_lstm(ctx->be)) skip();
    check_lstm_grad(ctx, 500, 3, 4, 3, 2, false, 1.0f);
    check_lstm_grad(ctx, 501, 1, 3, 5, 1, true, 1.0f);
    check_lstm_grad(ctx, 502, 2, 3, 3, 1, true, 4.0f); /* gates near saturation */
}

/* ---- gradient check through the fused bias + GELU (a Transformer block) ---- */

static cg_tensor *f_block(cg_tensor **in, void *user)
{
    return cg_module_forward(user, in[0]);
}

static void test_block_gradcheck(void **state)
{
    cg_ctx *ctx = *state;
    require_bias_gelu(ctx->be);
    uint64_t rng = 600;
    cg_module *m = cg_transformer_block_module(ctx, 4, 2, 5, 0.0f, true);
    assert_non_null(m);
    cg_tensor *in[16];
    int n = 0;
    in[n++] = gc_input(ctx, &rng, CG_SHAPE(2, 3, 4), -1.5f, 1.5f);
    struct cg_named_tensor ps[15];
    int np = cg_module_parameters(m, ps, 15);
    for (int i = 0; i < np; i++) { /* nonzero biases; linear1's spread GELU's input */
        int64_t k = cg_tensor_numel(ps[i].tensor);
        float *v = malloc((size_t)k * sizeof *v);
        th_fill_uniform(&rng, v, k, -1.0f, 1.0f);
        assert_int_equal(cg_tensor_set_data(ps[i].tensor, v, k), CG_OK);
        free(v);
        in[n++] = ps[i].tensor;
    }
    gc_check(ctx, "Transformer block (fused bias + GELU)", f_block, m, n, in, NULL);
    gc_free_inputs(1, in);
    cg_module_free(m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lstm_cell_primitive, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_lstm_cell_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_softmax_causal_primitive, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_lstm_fused_vs_composed, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_causal_attention_fused_vs_composed, th_setup,
                                        th_teardown),
        cmocka_unit_test_setup_teardown(test_lstm_fused_gradcheck, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_bias_gelu_primitive, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_block_gradcheck, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_layernorm_primitive, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_layernorm_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_layernorm_opencl_layouts, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_layernorm_fused_vs_composed, th_setup,
                                        th_teardown),
    };
    return TH_RUN(tests);
}
