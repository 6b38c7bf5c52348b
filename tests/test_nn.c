/*
 * tests/test_nn.c — modules (Linear, activations, Sequential, the module
 * base) and losses, on the backend under test.
 *
 * Values are compared with float64 host references; gradients with central
 * finite differences of those float64 references (h = 1e-6 relative, so
 * their own error is ~1e-9 and a float32 tolerance of 1e-4 relative is all
 * the device's rounding).
 */
#include <math.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

#define MAXN 4096

/* ---- helpers ---------------------------------------------------------------- */

/* A float64 reference: a scalar function of n values. */
typedef double (*ref_fn)(const double *v, void *ud);

/* Central differences of f at v (n values) into g. */
static void fd_grad(ref_fn f, void *ud, double *v, int64_t n, double *g)
{
    for (int64_t i = 0; i < n; i++) {
        double keep = v[i], h = 1e-6 * fmax(1.0, fabs(keep));
        v[i] = keep + h;
        double fp = f(v, ud);
        v[i] = keep - h;
        double fm = f(v, ud);
        v[i] = keep;
        g[i] = (fp - fm) / (2 * h);
    }
}

static void to_double(const float *x, double *d, int64_t n)
{
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
}

static void fetch(const cg_tensor *t, float *out, int64_t n)
{
    assert_non_null(t);
    assert_int_equal(cg_tensor_numel(t), n);
    assert_int_equal(cg_tensor_to_host(t, out, n), CG_OK);
}

static float item(const cg_tensor *t)
{
    float v = NAN;
    assert_non_null(t);
    assert_int_equal(cg_tensor_item(t, &v), CG_OK);
    return v;
}

static cg_tensor *leaf(cg_ctx *ctx, int nd, const int64_t *shape, const float *v)
{
    cg_tensor *t = cg_tensor_from_host(ctx, nd, shape, v);
    assert_non_null(t);
    assert_int_equal(cg_tensor_set_requires_grad(t, true), CG_OK);
    return t;
}

static void assert_all_finite(const float *x, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i])) fail_msg("%s[%lld] = %g is not finite", what, (long long)i, (double)x[i]);
}

/* ---- Linear ----------------------------------------------------------------- */

/* The weights must be exactly torch's kaiming_uniform_(a=sqrt(5)) and bias
 * uniform draws, in row-major order, W then b, from the context's RNG:
 * replay the RNG and rebuild them. */
static void test_linear_init_exact(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t in = 13, out = 7;
    uint64_t rng[4];
    cg_rand_state(ctx, rng);
    cg_module *lin = cg_linear_module(ctx, in, out, true);
    assert_non_null(lin);

    cg_rand_set_state(ctx, rng);
    double bound = sqrt(2.0 / (1.0 + 5.0)) * sqrt(3.0 / in); /* = 1/sqrt(in) */
    assert_true(fabs(bound - 1.0 / sqrt((double)in)) < 1e-15);
    float w[13 * 7], b[7], want_w[13 * 7], want_b[7];
    for (int i = 0; i < in * out; i++)
        want_w[i] = (float)(-bound + 2 * bound * cg_rand_uniform(ctx));
    for (int i = 0; i < out; i++)
        want_b[i] = (float)(-bound + 2 * bound * cg_rand_uniform(ctx));
    cg_tensor *W = cg_module_parameter(lin, "weight"), *B = cg_module_parameter(lin, "bias");
    assert_int_equal(cg_tensor_ndim(W), 2);
    assert_int_equal(cg_tensor_dim(W, 0), out);
    assert_int_equal(cg_tensor_dim(W, 1), in);
    assert_int_equal(cg_tensor_ndim(B), 1);
    assert_int_equal(cg_tensor_dim(B, 0), out);
    assert_true(cg_tensor_requires_grad(W) && cg_tensor_requires_grad(B));
    fetch(W, w, in * out);
    fetch(B, b, out);
    assert_memory_equal(w, want_w, sizeof w);
    assert_memory_equal(b, want_b, sizeof b);
    cg_module_free(lin);
}

/* Statistics of a large layer: inside +-1/sqrt(in), mean ~0, variance
 * bound^2 / 3 (uniform), and the range actually used. */
static void test_linear_init_stats(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t in = 64, out = 64, n = in * out;
    cg_module *lin = cg_linear_module(ctx, in, out, true);
    static float w[64 * 64];
    fetch(cg_module_parameter(lin, "weight"), w, n);
    double bound = 1.0 / sqrt((double)in), s = 0, s2 = 0, lo = 1, hi = -1;
    for (int64_t i = 0; i < n; i++) {
        assert_true(w[i] >= -bound && w[i] <= bound);
        s += w[i];
        s2 += (double)w[i] * w[i];
        lo = fmin(lo, w[i]);
        hi = fmax(hi, w[i]);
    }
    double mean = s / n, var = s2 / n - mean * mean, want_var = bound * bound / 3;
    /* std error of the mean: bound/sqrt(3n) ~ 0.0011; of the variance ~2% */
    assert_true(fabs(mean) < 0.006);
    assert_true(fabs(var / want_var - 1) < 0.1);
    assert_true(lo < -0.95 * bound && hi > 0.95 * bound);
    float b[64];
    fetch(cg_module_parameter(lin, "bias"), b, out);
    for (int i = 0; i < out; i++) assert_true(b[i] >= -bound && b[i] <= bound);
    cg_module_free(lin);
}

/* The seed network's state_dict names, shapes and counts. */
static void test_sequential_names(void **state)
{
    cg_ctx *ctx = *state;
    cg_module *model = cg_sequential_module(ctx, 5, cg_linear_module(ctx, 10, 64, true), cg_relu_module(ctx),
                                     cg_linear_module(ctx, 64, 64, true), cg_relu_module(ctx),
                                     cg_linear_module(ctx, 64, 1, true));
    assert_non_null(model);
    const char *want[] = {"0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"};
    const int64_t numel[] = {640, 64, 4096, 64, 64, 1};
    struct cg_named_tensor ps[8];
    assert_int_equal(cg_module_parameters(model, NULL, 0), 6);
    assert_int_equal(cg_module_parameters(model, ps, 3), 6);  /* truncated fill */
    assert_int_equal(cg_module_parameters(model, ps, 8), 6);
    int64_t total = 0;
    for (int i = 0; i < 6; i++) {
        assert_string_equal(ps[i].name, want[i]);
        assert_int_equal(cg_tensor_numel(ps[i].tensor), numel[i]);
        assert_ptr_equal(cg_module_parameter(model, want[i]), ps[i].tensor);
        total += numel[i];
    }
    assert_int_equal(cg_module_numel(model), total);
    assert_null(cg_module_parameter(model, "1.weight"));
    assert_null(cg_module_parameter(model, "4.weight.x"));
    assert_null(cg_module_parameter(model, "weight"));
    assert_int_equal(cg_module_num_children(model), 5);
    assert_string_equal(cg_module_child_name(model, 3), "3");
    assert_string_equal(cg_module_type(cg_module_child(model, 3)), "ReLU");
    assert_string_equal(cg_module_type(model), "Sequential");

    /* nesting: names get every prefix */
    cg_module *outer = cg_sequential_module(ctx, 2, cg_sequential_module(ctx, 1, cg_linear_module(ctx, 3, 2, false)),
                                     cg_linear_module(ctx, 2, 2, true));
    assert_int_equal(cg_module_parameters(outer, ps, 8), 3);
    assert_string_equal(ps[0].name, "0.0.weight");
    assert_string_equal(ps[1].name, "1.weight");
    assert_string_equal(ps[2].name, "1.bias");

    /* train / eval reach every descendant */
    assert_true(cg_module_is_training(outer));
    cg_module_eval(outer);
    assert_false(cg_module_is_training(cg_module_child(cg_module_child(outer, 0), 0)));
    cg_module_train(outer);
    assert_true(cg_module_is_training(cg_module_child(cg_module_child(outer, 0), 0)));
    cg_module_free(outer);
    cg_module_free(model);
}

struct linear_ref {
    int64_t n, in, out;
    const double *R;  /* (n, out) */
};

/* v = [x (n, in), W (out, in), b (out)] -> sum((x W^T + b) * R) */
static double linear_ref(const double *v, void *ud)
{
    const struct linear_ref *r = ud;
    const double *x = v, *W = v + r->n * r->in, *b = W + r->out * r->in;
    double s = 0;
    for (int64_t i = 0; i < r->n; i++)
        for (int64_t o = 0; o < r->out; o++) {
            double y = b[o];
            for (int64_t k = 0; k < r->in; k++) y += x[i * r->in + k] * W[o * r->in + k];
            s += y * r->R[i * r->out + o];
        }
    return s;
}

/* Forward and gradients of Linear for x of rank 1, 2 and 3. */
static void check_linear(cg_ctx *ctx, int nd, const int64_t *xshape, int64_t in, int64_t out)
{
    uint64_t s = 77 + (uint64_t)nd;
    int64_t n = 1;
    for (int d = 0; d < nd - 1; d++) n *= xshape[d];
    static float x[MAXN], R[MAXN], got[MAXN], w[MAXN], b[64];
    static double v[MAXN], Rd[MAXN], g[MAXN];
    th_fill_uniform(&s, x, n * in, -2, 2);
    th_fill_uniform(&s, R, n * out, -1, 1);

    cg_module *lin = cg_linear_module(ctx, in, out, true);
    cg_tensor *W = cg_module_parameter(lin, "weight"), *B = cg_module_parameter(lin, "bias");
    fetch(W, w, out * in);
    fetch(B, b, out);

    cg_scope_begin(ctx);
    cg_tensor *X = leaf(ctx, nd, xshape, x);
    int64_t yshape[CG_MAX_DIMS];
    memcpy(yshape, xshape, sizeof(int64_t) * (size_t)nd);
    yshape[nd - 1] = out;
    cg_tensor *Y = cg_module_forward(lin, X);
    assert_non_null(Y);
    assert_int_equal(cg_tensor_ndim(Y), nd);
    for (int d = 0; d < nd; d++) assert_int_equal(cg_tensor_dim(Y, d), yshape[d]);
    cg_tensor *Rt = cg_tensor_from_host(ctx, nd, yshape, R);
    assert_int_equal(cg_backward(cg_sum_all(cg_mul(Y, Rt))), CG_OK);

    struct linear_ref ref = {n, in, out, Rd};
    to_double(R, Rd, n * out);
    to_double(x, v, n * in);
    to_double(w, v + n * in, out * in);
    to_double(b, v + n * in + out * in, out);
    /* forward against the reference, row by row */
    fetch(Y, got, n * out);
    static double want[MAXN];
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double y = v[n * in + out * in + o];
            for (int64_t k = 0; k < in; k++) y += v[i * in + k] * v[n * in + o * in + k];
            want[i * out + o] = y;
        }
    th_assert_close(got, want, n * out, 1e-5, 1e-5, "Linear forward");

    fd_grad(linear_ref, &ref, v, n * in + out * in + out, g);
    fetch(cg_tensor_grad(X), got, n * in);
    th_assert_close(got, g, n * in, 1e-4, 1e-4, "Linear dx");
    fetch(cg_tensor_grad(W), got, out * in);
    th_assert_close(got, g + n * in, out * in, 1e-4, 1e-4, "Linear dW");
    fetch(cg_tensor_grad(B), got, out);
    th_assert_close(got, g + n * in + out * in, out, 1e-4, 1e-4, "Linear db");
    cg_scope_end(ctx);
    cg_module_free(lin);
}

static void test_linear_grad(void **state)
{
    cg_ctx *ctx = *state;
    check_linear(ctx, 2, (const int64_t[]){9, 7}, 7, 5);
    check_linear(ctx, 3, (const int64_t[]){2, 3, 11}, 11, 4);
    check_linear(ctx, 1, (const int64_t[]){6}, 6, 3);
}

static void test_linear_no_bias_and_errors(void **state)
{
    cg_ctx *ctx = *state;
    cg_module *lin = cg_linear_module(ctx, 4, 3, false);
    struct cg_named_tensor ps[2];
    assert_int_equal(cg_module_parameters(lin, ps, 2), 1);
    assert_string_equal(ps[0].name, "weight");

    cg_scope_begin(ctx);
    float x[4 * 5] = {0};
    for (int i = 0; i < 20; i++) x[i] = 0.1f * (float)i - 1;
    float w[12], y[12];
    fetch(ps[0].tensor, w, 12);
    cg_tensor *Y = cg_module_forward(lin, cg_tensor_from_host(ctx, CG_SHAPE(4, 4), x));
    fetch(Y, y, 12);
    for (int i = 0; i < 4; i++)
        for (int o = 0; o < 3; o++) {
            double want = 0;
            for (int k = 0; k < 4; k++) want += (double)x[i * 4 + k] * w[o * 4 + k];
            assert_true(fabs(y[i * 3 + o] - want) < 1e-5);
        }
    /* wrong feature count: a clear message naming the layer and shape */
    cg_ctx_clear_error(ctx);
    assert_null(cg_module_forward(lin, cg_tensor_from_host(ctx, CG_SHAPE(4, 5), x)));
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "Linear(4, 3)");
    th_assert_error_contains(ctx, "(4, 5)");
    cg_ctx_clear_error(ctx);
    assert_null(cg_module_forward(lin, NULL));
    cg_scope_end(ctx);
    cg_module_free(lin);

    assert_null(cg_linear_module(ctx, 0, 3, true));
    th_assert_error_contains(ctx, "in (0)");
    cg_ctx_clear_error(ctx);
}

/* ---- activations ------------------------------------------------------------- */

enum act { ACT_RELU, ACT_SIGMOID, ACT_TANH, ACT_GELU, ACT_SOFTMAX0, ACT_SOFTMAX1 };
struct act_ref {
    enum act a;
    int64_t rows, cols;
    const double *R;
};

static void act_eval(const struct act_ref *r, const double *x, double *y)
{
    int64_t n = r->rows * r->cols;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        switch (r->a) {
        case ACT_RELU: y[i] = v > 0 ? v : 0; break;
        case ACT_SIGMOID: y[i] = 1 / (1 + exp(-v)); break;
        case ACT_TANH: y[i] = tanh(v); break;
        case ACT_GELU: y[i] = 0.5 * v * (1 + erf(v / sqrt(2.0))); break;
        default: break;
        }
    }
    if (r->a == ACT_SOFTMAX0 || r->a == ACT_SOFTMAX1) {
        bool rows = r->a == ACT_SOFTMAX1;    /* along the last axis */
        int64_t outer = rows ? r->rows : r->cols, len = rows ? r->cols : r->rows;
        for (int64_t o = 0; o < outer; o++) {
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < len; k++) {
                int64_t i = rows ? o * r->cols + k : k * r->cols + o;
                m = fmax(m, x[i]);
            }
            for (int64_t k = 0; k < len; k++) {
                int64_t i = rows ? o * r->cols + k : k * r->cols + o;
                s += exp(x[i] - m);
            }
            for (int64_t k = 0; k < len; k++) {
                int64_t i = rows ? o * r->cols + k : k * r->cols + o;
                y[i] = exp(x[i] - m) / s;
            }
        }
    }
}

static double act_ref_fn(const double *x, void *ud)
{
    const struct act_ref *r = ud;
    double y[MAXN], s = 0;
    act_eval(r, x, y);
    for (int64_t i = 0; i < r->rows * r->cols; i++) s += y[i] * r->R[i];
    return s;
}

static void test_activations(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t rows = 5, cols = 7, n = rows * cols;
    const char *names[] = {"ReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "Softmax"};
    uint64_t s = 5;
    float x[35], R[35], got[35];
    double xd[35], Rd[35], want[35], g[35];
    for (int a = ACT_RELU; a <= ACT_SOFTMAX1; a++) {
        th_fill_uniform(&s, x, n, -3, 3);
        th_fill_uniform(&s, R, n, -1, 1);
        to_double(x, xd, n);
        to_double(R, Rd, n);
        cg_module *m = a == ACT_RELU      ? cg_relu_module(ctx)
                     : a == ACT_SIGMOID   ? cg_sigmoid_module(ctx)
                     : a == ACT_TANH      ? cg_tanh_module(ctx)
                     : a == ACT_GELU      ? cg_gelu_module(ctx)
                     : a == ACT_SOFTMAX0  ? cg_softmax_module(ctx, 0)
                                          : cg_softmax_module(ctx, -1);
        assert_non_null(m);
        assert_string_equal(cg_module_type(m), names[a]);
        assert_int_equal(cg_module_parameters(m, NULL, 0), 0);
        struct act_ref ref = {(enum act)a, rows, cols, Rd};

        cg_scope_begin(ctx);
        cg_tensor *X = leaf(ctx, CG_SHAPE(rows, cols), x);
        cg_tensor *Y = cg_module_forward(m, X);
        assert_int_equal(cg_backward(cg_sum_all(cg_mul(Y, cg_tensor_from_host(ctx, CG_SHAPE(rows, cols), R)))),
                         CG_OK);
        act_eval(&ref, xd, want);
        fetch(Y, got, n);
        th_assert_close(got, want, n, 1e-5, 1e-6, names[a]);
        fd_grad(act_ref_fn, &ref, xd, n, g);
        fetch(cg_tensor_grad(X), got, n);
        th_assert_close(got, g, n, 1e-4, 1e-5, names[a]);
        cg_scope_end(ctx);
        cg_module_free(m);
    }
}

/* ---- the module base ----------------------------------------------------------- */

static cg_tensor *scale_forward(cg_module *m, cg_tensor *x)
{
    return cg_mul(x, cg_module_parameter(m, "scale"));
}

static const struct cg_module_i scale_i = {.type = "Scale", .forward = scale_forward};

static void test_custom_module_and_errors(void **state)
{
    cg_ctx *ctx = *state;
    cg_module *m = cg_module_create(ctx, &scale_i, NULL);
    assert_non_null(m);
    cg_tensor *sc = cg_tensor_full(ctx, CG_SHAPE(1), 3.0f);
    assert_int_equal(cg_module_add_parameter(m, "scale", sc), CG_OK);
    assert_true(cg_tensor_requires_grad(sc));

    /* duplicate and dotted names, scoped tensors: refused (and freed) */
    cg_tensor *t2 = cg_tensor_full(ctx, CG_SHAPE(1), 1.0f);
    assert_int_equal(cg_module_add_parameter(m, "scale", t2), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "already a parameter");
    cg_tensor *t3 = cg_tensor_full(ctx, CG_SHAPE(1), 1.0f);
    assert_int_equal(cg_module_add_parameter(m, "a.b", t3), CG_STATUS_INVALID_ARGUMENT);
    cg_scope_begin(ctx);
    cg_tensor *t4 = cg_tensor_full(ctx, CG_SHAPE(1), 1.0f);
    assert_int_equal(cg_module_add_parameter(m, "s2", t4), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "scope");
    cg_scope_end(ctx);
    assert_int_equal(cg_module_add_child(m, "scale", cg_relu_module(ctx)),
                     CG_STATUS_INVALID_ARGUMENT);
    cg_ctx_clear_error(ctx);

    cg_scope_begin(ctx);
    float x[3] = {1, -2, 0.5f}, y[3], g;
    cg_tensor *Y = cg_module_forward(m, cg_tensor_from_host(ctx, CG_SHAPE(3), x));
    fetch(Y, y, 3);
    assert_true(y[0] == 3 && y[1] == -6 && y[2] == 1.5f);
    assert_int_equal(cg_backward(cg_sum_all(Y)), CG_OK);
    fetch(cg_tensor_grad(sc), &g, 1);
    assert_true(fabsf(g - (-0.5f)) < 1e-6f);
    cg_scope_end(ctx);

    /* a failed child constructor: Sequential frees the rest, returns NULL */
    assert_null(cg_sequential_module(ctx, 3, cg_linear_module(ctx, 2, 2, true), cg_linear_module(ctx, 0, 2, true),
                              cg_relu_module(ctx)));
    th_assert_error_contains(ctx, "cg_linear_module");
    cg_ctx_clear_error(ctx);
    assert_int_equal(cg_sequential_append(m, cg_relu_module(ctx)), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "not a Sequential");
    cg_ctx_clear_error(ctx);
    cg_module_free(m);
    cg_module_free(NULL);
}

/* ---- losses -------------------------------------------------------------------- */

enum loss { L_MSE, L_CE, L_BCE };
struct loss_ref {
    enum loss kind;
    enum cg_reduction red;
    int64_t n, c;            /* rows, cols (CE: N, C) */
    const double *target;    /* (n, c) or CE (n)      */
    double eps;
    double *per;             /* out: per-element loss (optional) */
};

static double loss_ref_fn(const double *x, void *ud)
{
    const struct loss_ref *r = ud;
    double s = 0;
    int64_t count = 0;
    if (r->kind == L_CE) {
        for (int64_t i = 0; i < r->n; i++) {
            const double *row = x + i * r->c;
            double m = -INFINITY, se = 0, sum_logp = 0;
            for (int64_t k = 0; k < r->c; k++) m = fmax(m, row[k]);
            for (int64_t k = 0; k < r->c; k++) se += exp(row[k] - m);
            double lse = m + log(se);
            for (int64_t k = 0; k < r->c; k++) sum_logp += row[k] - lse;
            double nll = -(row[(int64_t)r->target[i]] - lse);
            double l = (1 - r->eps) * nll + r->eps * (-sum_logp / (double)r->c);
            if (r->per) r->per[i] = l;
            s += l;
        }
        count = r->n;
    } else {
        for (int64_t i = 0; i < r->n * r->c; i++) {
            double v = x[i], y = r->target[i], l;
            if (r->kind == L_MSE) l = (v - y) * (v - y);
            else l = fmax(v, 0) - v * y + log1p(exp(-fabs(v)));
            if (r->per) r->per[i] = l;
            s += l;
        }
        count = r->n * r->c;
    }
    return r->red == CG_REDUCTION_MEAN ? s / (double)count : s;
}

static cg_tensor *run_loss(enum loss k, cg_tensor *x, cg_tensor *t, enum cg_reduction red,
                           float eps)
{
    switch (k) {
    case L_MSE: return cg_mse_loss(x, t, red);
    case L_CE: return cg_cross_entropy_loss(x, t, red, eps);
    case L_BCE: return cg_bce_with_logits_loss(x, t, red);
    }
    return NULL;
}

/* Value (reduced and per element) and gradient of one loss against the
 * float64 reference on random inputs. */
static void check_loss(cg_ctx *ctx, enum loss k, enum cg_reduction red, float eps,
                       int64_t n, int64_t c, uint64_t seed)
{
    uint64_t s = seed;
    static float x[MAXN], t[MAXN], got[MAXN];
    static double xd[MAXN], td[MAXN], per[MAXN], g[MAXN];
    int64_t nt = k == L_CE ? n : n * c;
    th_fill_uniform(&s, x, n * c, -4, 4);
    for (int64_t i = 0; i < nt; i++)
        t[i] = k == L_CE ? (float)(th_rand_u64(&s) % (uint64_t)c)
             : k == L_BCE ? (float)th_rand_uniform(&s, 0, 1)
                          : (float)th_rand_uniform(&s, -3, 3);
    to_double(x, xd, n * c);
    to_double(t, td, nt);
    struct loss_ref ref = {k, red, n, c, td, eps, per};
    double want = loss_ref_fn(xd, &ref);

    cg_scope_begin(ctx);
    cg_tensor *X = leaf(ctx, CG_SHAPE(n, c), x);
    cg_tensor *T = k == L_CE ? cg_tensor_from_host(ctx, CG_SHAPE(n), t)
                             : cg_tensor_from_host(ctx, CG_SHAPE(n, c), t);
    cg_tensor *L = run_loss(k, X, T, red, eps);
    assert_non_null(L);
    assert_int_equal(cg_tensor_numel(L), 1);
    float l = item(L);
    th_assert_close(&l, &want, 1, 1e-5, 1e-6, "loss value");
    assert_int_equal(cg_backward(L), CG_OK);
    ref.per = NULL;
    fd_grad(loss_ref_fn, &ref, xd, n * c, g);
    fetch(cg_tensor_grad(X), got, n * c);
    th_assert_close(got, g, n * c, 1e-4, 1e-6, "loss gradient");

    /* NONE: the per-element losses */
    cg_tensor *P = run_loss(k, X, T, CG_REDUCTION_NONE, eps);
    fetch(P, got, nt);
    th_assert_close(got, per, nt, 1e-5, 1e-6, "per-element loss");
    cg_scope_end(ctx);
}

static void test_mse(void **state)
{
    check_loss(*state, L_MSE, CG_REDUCTION_MEAN, 0, 7, 3, 11);
    check_loss(*state, L_MSE, CG_REDUCTION_SUM, 0, 5, 1, 12);
}

static void test_cross_entropy(void **state)
{
    check_loss(*state, L_CE, CG_REDUCTION_MEAN, 0, 9, 5, 21);
    check_loss(*state, L_CE, CG_REDUCTION_MEAN, 0.1f, 9, 5, 22);
    check_loss(*state, L_CE, CG_REDUCTION_SUM, 0.25f, 4, 11, 23);
}

static void test_bce(void **state)
{
    check_loss(*state, L_BCE, CG_REDUCTION_MEAN, 0, 6, 5, 31);
    check_loss(*state, L_BCE, CG_REDUCTION_SUM, 0, 3, 1, 32);
}

/* Hand-computed values at logits of +-1e4: finite values and gradients. */
static void test_losses_extreme(void **state)
{
    cg_ctx *ctx = *state;
    cg_scope_begin(ctx);
    /* cross-entropy rows, targets (0, 0, 2):
     *   [1e4, -1e4, 0]  -> -logp[0] = 0
     *   [-1e4, 1e4, 0]  -> -logp[0] = 2e4
     *   [0, 0, 0]       -> log 3
     * mean = (2e4 + log 3) / 3; with label smoothing 0.1 the second row is
     * 0.9 * 2e4 + 0.1 * (2e4 + 0 + 1e4) / 3 = 19000, the first 0.1 * 3e4/3
     * = 1000, the third log 3. d/dlogits = (softmax - onehot) / 3. */
    float lg[9] = {1e4f, -1e4f, 0, -1e4f, 1e4f, 0, 0, 0, 0}, tg[3] = {0, 0, 2};
    cg_tensor *X = leaf(ctx, CG_SHAPE(3, 3), lg);
    cg_tensor *T = cg_tensor_from_host(ctx, CG_SHAPE(3), tg);
    cg_tensor *L = cg_cross_entropy_loss(X, T, CG_REDUCTION_MEAN, 0.0f);
    double want = (2e4 + log(3.0)) / 3;
    float l = item(L);
    th_assert_close(&l, &want, 1, 1e-6, 0, "CE(1e4)");
    assert_int_equal(cg_backward(L), CG_OK);
    float g[9];
    fetch(cg_tensor_grad(X), g, 9);
    double third = 1.0 / 3, wg[9] = {0, 0, 0, -third, third, 0, third / 3, third / 3, -2 * third / 3};
    th_assert_close(g, wg, 9, 1e-5, 1e-6, "CE(1e4) gradient");
    l = item(cg_cross_entropy_loss(X, T, CG_REDUCTION_MEAN, 0.1f));
    want = (1000 + 19000 + log(3.0)) / 3;
    th_assert_close(&l, &want, 1, 1e-6, 0, "CE(1e4, smoothing 0.1)");

    /* BCE with logits: x = (1e4, -1e4, 1e4, -1e4, 0), y = (1, 0, 0, 1, 0.3)
     *   losses (0, 0, 1e4, 1e4, log 2); mean = (2e4 + log 2) / 5
     *   gradient (sigmoid(x) - y) / 5 = (0, 0, 1, -1, 0.2) / 5 */
    float bx[5] = {1e4f, -1e4f, 1e4f, -1e4f, 0}, by[5] = {1, 0, 0, 1, 0.3f}, per[5];
    cg_tensor *BX = leaf(ctx, CG_SHAPE(5), bx);
    cg_tensor *BY = cg_tensor_from_host(ctx, CG_SHAPE(5), by);
    L = cg_bce_with_logits_loss(BX, BY, CG_REDUCTION_MEAN);
    l = item(L);
    want = (2e4 + log(2.0)) / 5;
    th_assert_close(&l, &want, 1, 1e-6, 0, "BCE(1e4)");
    fetch(cg_bce_with_logits_loss(BX, BY, CG_REDUCTION_NONE), per, 5);
    double wper[5] = {0, 0, 1e4, 1e4, log(2.0)};
    th_assert_close(per, wper, 5, 1e-6, 1e-7, "BCE(1e4) per element");
    assert_int_equal(cg_backward(L), CG_OK);
    fetch(cg_tensor_grad(BX), g, 5);
    double wbg[5] = {0, 0, 0.2, -0.2, 0.2 * (0.5 - 0.3)};
    th_assert_close(g, wbg, 5, 1e-5, 1e-7, "BCE(1e4) gradient");
    assert_all_finite(g, 5, "BCE gradient");

    /* MSE sum, by hand: (1-0)^2 + (-2-1)^2 = 10 */
    float mp[2] = {1, -2}, mt[2] = {0, 1};
    l = item(cg_mse_loss(cg_tensor_from_host(ctx, CG_SHAPE(2), mp),
                         cg_tensor_from_host(ctx, CG_SHAPE(2), mt), CG_REDUCTION_SUM));
    assert_true(l == 10.0f);
    cg_scope_end(ctx);
}

static void test_loss_shape_errors(void **state)
{
    cg_ctx *ctx = *state;
    cg_scope_begin(ctx);
    float v[12] = {0.5f, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2};
    cg_tensor *a = cg_tensor_from_host(ctx, CG_SHAPE(4, 3), v);
    cg_tensor *b = cg_tensor_from_host(ctx, CG_SHAPE(4, 1), v);
    cg_tensor *t4 = cg_tensor_from_host(ctx, CG_SHAPE(4), v + 1);
    cg_tensor *t3 = cg_tensor_from_host(ctx, CG_SHAPE(3), v + 1);

    cg_ctx_clear_error(ctx);
    assert_null(cg_mse_loss(a, b, CG_REDUCTION_MEAN));
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "cg_mse_loss");
    th_assert_error_contains(ctx, "(4, 1)");
    cg_ctx_clear_error(ctx);
    assert_null(cg_bce_with_logits_loss(a, t4, CG_REDUCTION_MEAN));
    th_assert_error_contains(ctx, "same shape");
    cg_ctx_clear_error(ctx);
    assert_null(cg_cross_entropy_loss(a, t3, CG_REDUCTION_MEAN, 0));
    th_assert_error_contains(ctx, "target (3,)");
    cg_ctx_clear_error(ctx);
    assert_null(cg_cross_entropy_loss(t4, t4, CG_REDUCTION_MEAN, 0));
    th_assert_error_contains(ctx, "must be (N, C)");
    cg_ctx_clear_error(ctx);
    assert_null(cg_cross_entropy_loss(a, t4, CG_REDUCTION_MEAN, 1.5f));
    th_assert_error_contains(ctx, "label_smoothing");
    cg_ctx_clear_error(ctx);
    assert_null(cg_mse_loss(a, a, (enum cg_reduction)7));
    th_assert_error_contains(ctx, "reduction");
    cg_ctx_clear_error(ctx);
    /* a class index out of range is refused by the pick, not silently read */
    float bad[4] = {0, 1, 3, 2};
    assert_null(cg_cross_entropy_loss(a, cg_tensor_from_host(ctx, CG_SHAPE(4), bad),
                                      CG_REDUCTION_MEAN, 0));
    assert_int_not_equal(cg_ctx_status(ctx), CG_OK);
    cg_ctx_clear_error(ctx);
    /* NULL in, NULL out, no new message */
    assert_null(cg_mse_loss(NULL, a, CG_REDUCTION_MEAN));
    assert_int_equal(cg_ctx_status(ctx), CG_OK);
    cg_scope_end(ctx);
}

/* ---- device-side finite differences (tests/gradcheck.h) ---------------------- */

struct gc_user {
    cg_module *m;
    int kind;              /* loss: 0 MSE mean, 1 MSE sum, 2 CE, 3 CE smoothed, 4 BCE */
    cg_tensor *target;     /* CE class indices */
};

/* in[0] = x; the module's parameters follow (perturbed in place). */
static cg_tensor *gc_module_fn(cg_tensor **in, void *user)
{
    return cg_module_forward(((struct gc_user *)user)->m, in[0]);
}

static cg_tensor *gc_loss_fn(cg_tensor **in, void *user)
{
    const struct gc_user *u = user;
    switch (u->kind) {
    case 0: return cg_mse_loss(in[0], in[1], CG_REDUCTION_MEAN);
    case 1: return cg_mse_loss(in[0], in[1], CG_REDUCTION_SUM);
    case 2: return cg_cross_entropy_loss(in[0], u->target, CG_REDUCTION_MEAN, 0.0f);
    case 3: return cg_cross_entropy_loss(in[0], u->target, CG_REDUCTION_MEAN, 0.2f);
    default: return cg_bce_with_logits_loss(in[0], in[1], CG_REDUCTION_MEAN);
    }
}

/* Gradients of Linear, a small MLP and every loss by central differences of
 * the device's own float32 forward (gradcheck.h states the tolerance). */
static void test_gradcheck(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 4242;
    struct gc_user u = {0};

    u.m = cg_sequential_module(ctx, 3, cg_linear_module(ctx, 7, 6, true), cg_tanh_module(ctx),
                        cg_linear_module(ctx, 6, 3, true));
    cg_tensor *in[6];
    in[0] = gc_input(ctx, &rng, CG_SHAPE(5, 7), -1, 1);
    struct cg_named_tensor ps[4];
    assert_int_equal(cg_module_parameters(u.m, ps, 4), 4);
    for (int i = 0; i < 4; i++) in[1 + i] = ps[i].tensor;
    gc_check(ctx, "Linear-Tanh-Linear", gc_module_fn, &u, 5, in, NULL);
    cg_tensor_free(in[0]);
    cg_module_free(u.m);

    u.m = cg_linear_module(ctx, 4, 2, true);
    in[0] = gc_input(ctx, &rng, CG_SHAPE(2, 3, 4), -1, 1);
    in[1] = cg_module_parameter(u.m, "weight");
    in[2] = cg_module_parameter(u.m, "bias");
    gc_check(ctx, "Linear (2, 3, 4)", gc_module_fn, &u, 3, in, NULL);
    cg_tensor_free(in[0]);
    cg_module_free(u.m);
    u.m = NULL;

    float cls[6] = {2, 0, 4, 1, 4, 3};
    u.target = gc_const(ctx, CG_SHAPE(6), cls);
    for (u.kind = 0; u.kind < 5; u.kind++) {
        in[0] = gc_input(ctx, &rng, CG_SHAPE(6, 5), -3, 3);
        in[1] = gc_input(ctx, &rng, CG_SHAPE(6, 5), u.kind == 4 ? 0 : -2, u.kind == 4 ? 1 : 2);
        const char *names[] = {"MSE mean", "MSE sum", "cross-entropy",
                               "cross-entropy smoothed", "BCE with logits"};
        bool ce = u.kind == 2 || u.kind == 3;   /* in[1] unused: class indices are u.target */
        gc_check(ctx, names[u.kind], gc_loss_fn, &u, ce ? 1 : 2, in, NULL);
        gc_free_inputs(2, in);
    }
    cg_tensor_free(u.target);
}

/* ---- cross-entropy with weights, ignore_index, smoothing, (N, C, d) ----------- */

enum { CEX_N = 3, CEX_C = 5, CEX_D = 4, CEX_M = CEX_N * CEX_D };

/* The float64 reference of PyTorch's formula (nn.h): x (N, C, D) logits,
 * y (N, D) targets, w (C) or NULL; per (N*D) and the MEAN / SUM values. */
static void cex_reference(const float *x, const float *y, const float *w, float eps, bool ign,
                          double *per, double *mean, double *sum)
{
    double num = 0, den = 0;
    for (int n = 0; n < CEX_N; n++)
        for (int d = 0; d < CEX_D; d++) {
            int i = n * CEX_D + d, t = (int)y[i];
            double mx = -INFINITY, se = 0, lp[CEX_C];
            for (int c = 0; c < CEX_C; c++) mx = fmax(mx, x[(n * CEX_C + c) * CEX_D + d]);
            for (int c = 0; c < CEX_C; c++) se += exp(x[(n * CEX_C + c) * CEX_D + d] - mx);
            for (int c = 0; c < CEX_C; c++) lp[c] = x[(n * CEX_C + c) * CEX_D + d] - mx - log(se);
            per[i] = 0;
            if (ign && t == -100) continue;
            for (int c = 0; c < CEX_C; c++) {
                double q = (c == t) * (1 - eps) + eps / CEX_C;
                per[i] -= (w ? w[c] : 1.0) * q * lp[c];
            }
            num += per[i];
            den += w ? w[t] : 1.0;
        }
    *mean = num / den;
    *sum = num;
}

struct cex_user {
    cg_tensor *target, *weight;
    float eps;
};

static cg_tensor *cex_fn(cg_tensor **in, void *user)
{
    const struct cex_user *u = user;
    struct cg_ce_options o = cg_ce_options_default();
    o.weight = u->weight;
    o.label_smoothing = u->eps;
    o.use_ignore_index = true;
    return cg_cross_entropy_loss_ex(in[0], u->target, &o);
}

static void test_cross_entropy_ex(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 777;
    float x[CEX_N * CEX_C * CEX_D], y[CEX_M], w[CEX_C];
    for (int i = 0; i < CEX_N * CEX_C * CEX_D; i++) x[i] = (float)th_rand_uniform(&rng, -3, 3);
    for (int i = 0; i < CEX_M; i++) y[i] = (float)(th_rand_u64(&rng) % CEX_C);
    y[1] = y[7] = -100;                                  /* ignored */
    for (int c = 0; c < CEX_C; c++) w[c] = (float)th_rand_uniform(&rng, 0.2, 2);
    cg_scope_begin(ctx);
    cg_tensor *X = cg_tensor_from_host(ctx, CG_SHAPE(CEX_N, CEX_C, CEX_D), x);
    cg_tensor *Y = cg_tensor_from_host(ctx, CG_SHAPE(CEX_N, CEX_D), y);
    cg_tensor *W = cg_tensor_from_host(ctx, CG_SHAPE(CEX_C), w);
    for (int variant = 0; variant < 4; variant++) {
        bool weighted = variant & 1;
        float eps = variant & 2 ? 0.15f : 0.0f;
        double per[CEX_M], mean, sum;
        cex_reference(x, y, weighted ? w : NULL, eps, true, per, &mean, &sum);
        struct cg_ce_options o = cg_ce_options_default();
        o.weight = weighted ? W : NULL;
        o.label_smoothing = eps;
        o.use_ignore_index = true;
        float got[CEX_M], l;
        l = item(cg_cross_entropy_loss_ex(X, Y, &o));
        th_assert_close(&l, &mean, 1, 1e-5, 1e-6, "CE ex mean");
        o.reduction = CG_REDUCTION_SUM;
        l = item(cg_cross_entropy_loss_ex(X, Y, &o));
        th_assert_close(&l, &sum, 1, 1e-5, 1e-6, "CE ex sum");
        o.reduction = CG_REDUCTION_NONE;
        cg_tensor *P = cg_cross_entropy_loss_ex(X, Y, &o);
        assert_non_null(P);
        assert_int_equal(cg_tensor_ndim(P), 2);
        assert_int_equal(cg_tensor_dim(P, 1), CEX_D);
        fetch(P, got, CEX_M);
        th_assert_close(got, per, CEX_M, 1e-5, 1e-6, "CE ex per element");
    }
    /* without ignore_index and weights it is cg_cross_entropy_loss on rows */
    float y2[CEX_M], xr[CEX_M * CEX_C];
    for (int i = 0; i < CEX_M; i++) y2[i] = (float)(i % CEX_C);
    for (int n = 0; n < CEX_N; n++)
        for (int c = 0; c < CEX_C; c++)
            for (int d = 0; d < CEX_D; d++)
                xr[(n * CEX_D + d) * CEX_C + c] = x[(n * CEX_C + c) * CEX_D + d];
    float a = item(cg_cross_entropy_loss_ex(X, cg_tensor_from_host(ctx, CG_SHAPE(CEX_N, CEX_D), y2),
                                            NULL));
    float b = item(cg_cross_entropy_loss(cg_tensor_from_host(ctx, CG_SHAPE(CEX_M, CEX_C), xr),
                                         cg_tensor_from_host(ctx, CG_SHAPE(CEX_M), y2),
                                         CG_REDUCTION_MEAN, 0));
    th_assert_close_f(&a, &b, 1, 1e-6, 1e-7, "CE ex == CE");
    /* errors */
    struct cg_ce_options o = cg_ce_options_default();
    o.weight = cg_tensor_from_host(ctx, CG_SHAPE(CEX_C - 1), w);
    cg_ctx_clear_error(ctx);
    assert_null(cg_cross_entropy_loss_ex(X, Y, &o));
    th_assert_error_contains(ctx, "weight (4,) f32 must be (C) = (5)");
    cg_ctx_clear_error(ctx);
    assert_null(cg_cross_entropy_loss_ex(X, cg_tensor_from_host(ctx, CG_SHAPE(CEX_N, CEX_C), x),
                                         NULL));
    th_assert_error_contains(ctx, "without the class dim 1");
    cg_ctx_clear_error(ctx);
    assert_null(cg_cross_entropy_loss_ex(X, Y, NULL));   /* -100 is a class index here */
    assert_int_not_equal(cg_ctx_status(ctx), CG_OK);
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);

    /* gradients: weighted, smoothed, with ignored targets */
    struct cex_user u = {.eps = 0.2f};
    u.target = gc_const(ctx, CG_SHAPE(CEX_N, CEX_D), y);
    u.weight = gc_const(ctx, CG_SHAPE(CEX_C), w);
    cg_tensor *in[1] = {gc_input(ctx, &rng, CG_SHAPE(CEX_N, CEX_C, CEX_D), -3, 3)};
    gc_check(ctx, "cross-entropy ex", cex_fn, &u, 1, in, NULL);
    gc_free_inputs(1, in);
    cg_tensor_free(u.target);
    cg_tensor_free(u.weight);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_linear_init_exact, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_linear_init_stats, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_sequential_names, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_linear_grad, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_linear_no_bias_and_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_activations, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_custom_module_and_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_mse, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_cross_entropy, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_bce, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_losses_extreme, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_loss_shape_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_gradcheck, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_cross_entropy_ex, th_setup, th_teardown),
    };
    return TH_RUN(tests);
}
