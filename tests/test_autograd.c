/*
 * tests/test_autograd.c — gradient checks (central differences, see
 * gradcheck.h for the tolerance) of every differentiable op, on random
 * shapes with broadcasting, views and reuse; the backward pass's
 * bookkeeping (accumulation, zero_grad, no-grad, detach, errors, deep
 * graphs); and flat memory over many steps. Runs on every backend.
 */
#include <math.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

#define S(...) CG_SHAPE(__VA_ARGS__)

/* ---- op wrappers: f(inputs) for gc_check ---- */

#define F1(name, expr)                                                        \
    static cg_tensor *name(cg_tensor **in, void *u)                           \
    {                                                                         \
        (void)u;                                                              \
        cg_tensor *a = in[0];                                                 \
        return expr;                                                          \
    }
#define F2(name, expr)                                                        \
    static cg_tensor *name(cg_tensor **in, void *u)                           \
    {                                                                         \
        (void)u;                                                              \
        cg_tensor *a = in[0], *b = in[1];                                     \
        return expr;                                                          \
    }

F2(f_add, cg_add(a, b))
F2(f_sub, cg_sub(a, b))
F2(f_mul, cg_mul(a, b))
F2(f_div, cg_div(a, b))
F2(f_maximum, cg_maximum(a, b))
F2(f_minimum, cg_minimum(a, b))
F1(f_add_scalar, cg_add_scalar(a, 0.75f))
F1(f_mul_scalar, cg_mul_scalar(a, -1.5f))
F1(f_affine, cg_affine(a, 2.5f, -0.5f))
F1(f_pow, cg_pow_scalar(a, 2.5f))
F1(f_pow3, cg_pow_scalar(a, 3.0f))
F1(f_clamp, cg_clamp(a, -0.5f, 0.5f))
F1(f_neg, cg_neg(a))
F1(f_exp, cg_exp(a))
F1(f_log, cg_log(a))
F1(f_sqrt, cg_sqrt(a))
F1(f_abs, cg_abs(a))
F1(f_relu, cg_relu(a))
F1(f_sigmoid, cg_sigmoid(a))
F1(f_tanh, cg_tanh(a))
F1(f_gelu, cg_gelu(a))
F1(f_sum_all, cg_sum_all(a))
F1(f_mean_all, cg_mean_all(a))
F1(f_sum_all_t, cg_sum_all(cg_transpose(a, 0, 1)))
F2(f_matmul, cg_matmul(a, b))
F2(f_matmul_tt, cg_matmul(cg_transpose(a, 0, 1), cg_transpose(b, -1, -2)))
F1(f_reshape, cg_reshape(a, S(2, -1)))
F1(f_reshape_nc, cg_reshape(cg_transpose(a, 0, 1), S(-1)))
F1(f_permute, cg_mul(cg_permute(a, S(2, 0, 1)), cg_permute(a, S(2, 0, 1))))
F1(f_slice, cg_slice(a, 1, 1, -1, 2))
F1(f_slice2, cg_add(cg_slice(a, 0, 0, 2, 1), cg_slice(a, 0, -2, 100, 1)))
/* three slices of one non-leaf (attention's Q, K, V): the gradient parked
 * on e takes the later slices' gradients in place */
static cg_tensor *f_slice3(cg_tensor **in, void *u)
{
    (void)u;
    cg_tensor *e = cg_exp(in[0]);
    return cg_mul(cg_add(cg_slice(e, 1, 0, 2, 1), cg_slice(e, 1, 1, 3, 1)),
                  cg_slice(e, 1, 2, 4, 1));
}
F1(f_flatten, cg_flatten(cg_permute(a, S(1, 0, 2)), 1, 2))
F1(f_unsq, cg_squeeze(cg_mul(cg_unsqueeze(a, 1), cg_unsqueeze(a, 1)), 1))
F1(f_expand, cg_tanh(cg_expand(a, S(2, 3, 4))))
F1(f_contig, cg_exp(cg_contiguous(cg_slice(cg_transpose(a, 0, 1), 0, 0, 3, 2))))
F1(f_clone, cg_mul(cg_clone(a), a))
F1(f_view_chain, cg_matmul(cg_slice(a, 0, 0, 4, 2), cg_transpose(cg_slice(a, 0, 1, 4, 2), 0, 1)))
F1(f_twice, cg_add(cg_mul(a, a), a))
F1(f_diamond, cg_add(cg_mul(cg_tanh(a), cg_tanh(a)), cg_sigmoid(a)))

static cg_tensor *f_reduce(cg_tensor **in, void *u)
{
    const int *p = u; /* {op, axis, keepdim} */
    switch (p[0]) {
    case 0: return cg_sum(in[0], p[1], p[2]);
    case 1: return cg_mean(in[0], p[1], p[2]);
    default: return cg_max(in[0], p[1], p[2]);
    }
}

static cg_tensor *f_softmax(cg_tensor **in, void *u)
{
    const int *p = u; /* {log, axis} */
    return p[0] ? cg_log_softmax(in[0], p[1]) : cg_softmax(in[0], p[1]);
}

static cg_tensor *f_cat(cg_tensor **in, void *u)
{
    const int *p = u; /* {n, dim} */
    return cg_tanh(cg_cat(p[0], in, p[1]));
}

static cg_tensor *f_index_rows(cg_tensor **in, void *u) { return cg_index_rows(in[0], in[1]); }
static cg_tensor *f_pick(cg_tensor **in, void *u) { return cg_pick(in[0], in[1]); }

/* ---- helpers ---- */

static uint64_t rng_for(const char *name)
{
    uint64_t s = 42;
    for (; *name; s = s * 31 + (uint64_t)*name++) {}
    return s;
}

/* A leaf whose values keep at least `gap` away from each point in avoid[]. */
static cg_tensor *input_avoiding(cg_ctx *ctx, uint64_t *rng, int nd, const int64_t *shape, float lo,
                                 float hi, int n_avoid, const float *avoid, float gap)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    float h[512];
    assert_true(n <= 512);
    for (int64_t i = 0; i < n; i++) {
        bool ok;
        do {
            h[i] = (float)th_rand_uniform(rng, lo, hi);
            ok = true;
            for (int k = 0; k < n_avoid; k++) ok = ok && fabsf(h[i] - avoid[k]) > gap;
        } while (!ok);
    }
    cg_tensor *t = gc_const(ctx, nd, shape, h);
    cg_tensor_set_requires_grad(t, true);
    return t;
}

/* A leaf of distinct values spaced >= 0.05 apart, shuffled (no ties). */
static cg_tensor *input_distinct(cg_ctx *ctx, uint64_t *rng, int nd, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < nd; i++) n *= shape[i];
    float h[512];
    assert_true(n <= 512);
    for (int64_t i = 0; i < n; i++) h[i] = -1.0f + 0.05f * (float)i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(th_rand_u64(rng) % (uint64_t)(i + 1));
        float t = h[i];
        h[i] = h[j];
        h[j] = t;
    }
    cg_tensor *t = gc_const(ctx, nd, shape, h);
    cg_tensor_set_requires_grad(t, true);
    return t;
}

static void check2(cg_ctx *ctx, const char *what, gc_fn f, int na, const int64_t *sa, int nb,
                   const int64_t *sb, float lo, float hi, float blo, float bhi)
{
    uint64_t rng = rng_for(what);
    cg_tensor *in[2] = {gc_input(ctx, &rng, na, sa, lo, hi), gc_input(ctx, &rng, nb, sb, blo, bhi)};
    gc_check(ctx, what, f, NULL, 2, in, NULL);
    gc_free_inputs(2, in);
}

static void check1(cg_ctx *ctx, const char *what, gc_fn f, void *user, int na, const int64_t *sa,
                   float lo, float hi)
{
    uint64_t rng = rng_for(what);
    cg_tensor *in[1] = {gc_input(ctx, &rng, na, sa, lo, hi)};
    gc_check(ctx, what, f, user, 1, in, NULL);
    gc_free_inputs(1, in);
}

/* ---- gradient checks ---- */

static void test_grad_binary_broadcast(void **state)
{
    cg_ctx *ctx = *state;
    gc_fn fs[4] = {f_add, f_sub, f_mul, f_div};
    const char *names[4] = {"add", "sub", "mul", "div"};
    for (int k = 0; k < 4; k++) {
        char w[64];
        float blo = k == 3 ? 0.5f : -1.0f, bhi = k == 3 ? 1.5f : 1.0f;
        snprintf(w, sizeof w, "%s same", names[k]);
        check2(ctx, w, fs[k], S(3, 5), S(3, 5), -1, 1, blo, bhi);
        snprintf(w, sizeof w, "%s row", names[k]);
        check2(ctx, w, fs[k], S(3, 5), S(5), -1, 1, blo, bhi);
        snprintf(w, sizeof w, "%s both", names[k]);
        check2(ctx, w, fs[k], S(2, 1, 3), S(4, 1), -1, 1, blo, bhi);
        snprintf(w, sizeof w, "%s scalar", names[k]);
        check2(ctx, w, fs[k], S(2, 3), 0, NULL, -1, 1, blo, bhi);
        snprintf(w, sizeof w, "%s col-first", names[k]);
        check2(ctx, w, fs[k], S(3, 1), S(2, 3, 4), -1, 1, blo, bhi);
    }
}

static void test_grad_maximum_minimum(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = rng_for("maxmin");
    /* b = a + offsets of magnitude >= 0.1, so no tie lies within eps */
    float ha[15], hb[15];
    th_fill_uniform(&rng, ha, 15, -1, 1);
    for (int i = 0; i < 15; i++)
        hb[i] = ha[i] + (th_rand_u64(&rng) & 1 ? 1.0f : -1.0f) * (float)th_rand_uniform(&rng, 0.1, 0.5);
    cg_tensor *in[2] = {gc_const(ctx, S(3, 5), ha), gc_const(ctx, S(3, 5), hb)};
    cg_tensor_set_requires_grad(in[0], true);
    cg_tensor_set_requires_grad(in[1], true);
    gc_check(ctx, "maximum", f_maximum, NULL, 2, in, NULL);
    gc_check(ctx, "minimum", f_minimum, NULL, 2, in, NULL);
    gc_free_inputs(2, in);
    /* broadcasting b (5) against a (3, 5): separated from every a value */
    float hr[5];
    for (int i = 0; i < 5; i++) hr[i] = -1.2f + 0.6f * (float)i; /* a in (-1,1) */
    float ha2[15];
    for (int i = 0; i < 15; i++) {
        float v;
        do v = (float)th_rand_uniform(&rng, -1, 1);
        while (fabsf(v - hr[i % 5]) < 0.05f);
        ha2[i] = v;
    }
    cg_tensor *in2[2] = {gc_const(ctx, S(3, 5), ha2), gc_const(ctx, S(5), hr)};
    cg_tensor_set_requires_grad(in2[0], true);
    cg_tensor_set_requires_grad(in2[1], true);
    gc_check(ctx, "maximum bcast", f_maximum, NULL, 2, in2, NULL);
    gc_check(ctx, "minimum bcast", f_minimum, NULL, 2, in2, NULL);
    gc_free_inputs(2, in2);
}

static void test_grad_unary(void **state)
{
    cg_ctx *ctx = *state;
    check1(ctx, "add_scalar", f_add_scalar, NULL, S(3, 4), -1, 1);
    check1(ctx, "mul_scalar", f_mul_scalar, NULL, S(3, 4), -1, 1);
    check1(ctx, "affine", f_affine, NULL, S(7), -1, 1);
    check1(ctx, "pow 2.5", f_pow, NULL, S(3, 4), 0.5f, 1.5f);
    check1(ctx, "pow 3", f_pow3, NULL, S(3, 4), -1.2f, 1.2f);
    check1(ctx, "neg", f_neg, NULL, S(2, 3, 2), -1, 1);
    check1(ctx, "exp", f_exp, NULL, S(3, 4), -1, 1);
    check1(ctx, "log", f_log, NULL, S(3, 4), 0.5f, 2.0f);
    check1(ctx, "sqrt", f_sqrt, NULL, S(3, 4), 0.5f, 2.0f);
    check1(ctx, "sigmoid", f_sigmoid, NULL, S(3, 4), -3, 3);
    check1(ctx, "tanh", f_tanh, NULL, S(3, 4), -2, 2);
    check1(ctx, "gelu", f_gelu, NULL, S(3, 4), -3, 3);
    uint64_t rng = rng_for("kinks");
    const float zero = 0, bounds[2] = {-0.5f, 0.5f};
    cg_tensor *in[1];
    in[0] = input_avoiding(ctx, &rng, S(4, 5), -1, 1, 1, &zero, 0.05f);
    gc_check(ctx, "relu", f_relu, NULL, 1, in, NULL);
    gc_check(ctx, "abs", f_abs, NULL, 1, in, NULL);
    gc_free_inputs(1, in);
    in[0] = input_avoiding(ctx, &rng, S(4, 5), -1, 1, 2, bounds, 0.05f);
    gc_check(ctx, "clamp", f_clamp, NULL, 1, in, NULL);
    gc_free_inputs(1, in);
}

static void test_grad_reductions(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = rng_for("reduce");
    for (int op = 0; op < 3; op++)
        for (int axis = -3; axis < 3; axis++)
            for (int keep = 0; keep < 2; keep++) {
                int p[3] = {op, axis, keep};
                char w[64];
                snprintf(w, sizeof w, "reduce op %d axis %d keepdim %d", op, axis, keep);
                cg_tensor *in[1] = {op == 2 ? input_distinct(ctx, &rng, S(3, 4, 5))
                                            : gc_input(ctx, &rng, S(3, 4, 5), -1, 1)};
                gc_check(ctx, w, f_reduce, p, 1, in, NULL);
                gc_free_inputs(1, in);
            }
    check1(ctx, "sum_all", f_sum_all, NULL, S(3, 4), -1, 1);
    check1(ctx, "mean_all", f_mean_all, NULL, S(2, 3, 4), -1, 1);
    check1(ctx, "sum_all transposed", f_sum_all_t, NULL, S(3, 4), -1, 1);
    int p[3] = {0, 0, 0};
    check1(ctx, "sum 1-d", f_reduce, p, S(7), -1, 1);
}

static void test_grad_matmul(void **state)
{
    cg_ctx *ctx = *state;
    check2(ctx, "matmul 2d", f_matmul, S(5, 3), S(3, 4), -1, 1, -1, 1);
    check2(ctx, "matmul transposed views", f_matmul_tt, S(3, 5), S(4, 3), -1, 1, -1, 1);
    check2(ctx, "matmul (B,M,K)x(K,N)", f_matmul, S(2, 3, 4), S(4, 5), -1, 1, -1, 1);
    check2(ctx, "matmul (B,M,K)x(B,K,N)", f_matmul, S(2, 3, 4), S(2, 4, 2), -1, 1, -1, 1);
    check2(ctx, "matmul (M,K)x(B,K,N)", f_matmul, S(3, 4), S(2, 4, 2), -1, 1, -1, 1);
    check2(ctx, "matmul batch broadcast", f_matmul, S(2, 1, 3, 2), S(3, 2, 2), -1, 1, -1, 1);
    check2(ctx, "matmul vec-mat", f_matmul, S(4), S(4, 3), -1, 1, -1, 1);
    check2(ctx, "matmul mat-vec", f_matmul, S(3, 4), S(4), -1, 1, -1, 1);
    check2(ctx, "matmul vec-vec", f_matmul, S(5), S(5), -1, 1, -1, 1);
    check1(ctx, "matmul of two slices of one tensor", f_view_chain, NULL, S(4, 3), -1, 1);
}

static void test_grad_softmax(void **state)
{
    cg_ctx *ctx = *state;
    for (int log = 0; log < 2; log++)
        for (int axis = -1; axis < 3; axis++) {
            int p[2] = {log, axis};
            char w[64];
            snprintf(w, sizeof w, "%s axis %d", log ? "log_softmax" : "softmax", axis);
            check1(ctx, w, f_softmax, p, S(3, 4, 5), -2, 2);
        }
}

static void test_grad_views(void **state)
{
    cg_ctx *ctx = *state;
    check1(ctx, "reshape", f_reshape, NULL, S(3, 4), -1, 1);
    check1(ctx, "reshape non-contiguous", f_reshape_nc, NULL, S(3, 4), -1, 1);
    check1(ctx, "permute (used twice)", f_permute, NULL, S(2, 3, 4), -1, 1);
    check1(ctx, "slice step 2", f_slice, NULL, S(3, 7), -1, 1);
    check1(ctx, "overlapping slices", f_slice2, NULL, S(3, 4), -1, 1);
    check1(ctx, "slices of a non-leaf", f_slice3, NULL, S(3, 4), -1, 1);
    check1(ctx, "flatten", f_flatten, NULL, S(2, 3, 4), -1, 1);
    check1(ctx, "unsqueeze/squeeze", f_unsq, NULL, S(3, 4), -1, 1);
    check1(ctx, "expand", f_expand, NULL, S(3, 1), -1, 1);
    check1(ctx, "contiguous of strided", f_contig, NULL, S(4, 5), -1, 1);
    check1(ctx, "clone", f_clone, NULL, S(4, 5), -1, 1);
    uint64_t rng = rng_for("cat");
    cg_tensor *in[6];
    for (int i = 0; i < 6; i++) in[i] = gc_input(ctx, &rng, S(2, i + 1), -1, 1);
    int p6[2] = {6, 1}, p2[2] = {2, -1};
    gc_check(ctx, "cat 6 along dim 1", f_cat, p6, 6, in, NULL);
    gc_check(ctx, "cat 2", f_cat, p2, 2, in, NULL);
    gc_free_inputs(6, in);
}

static void test_grad_index(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = rng_for("index");
    const float rows[7] = {2, 0, 4, 2, 2, 1, 4}; /* repeats add up */
    cg_tensor *in[2] = {gc_input(ctx, &rng, S(5, 3), -1, 1), gc_const(ctx, S(7), rows)};
    gc_check(ctx, "index_rows", f_index_rows, NULL, 2, in, NULL);
    gc_free_inputs(2, in);
    const float cols[4] = {3, 0, 3, 1};
    cg_tensor *in2[2] = {gc_input(ctx, &rng, S(4, 5), -1, 1), gc_const(ctx, S(4), cols)};
    gc_check(ctx, "pick", f_pick, NULL, 2, in2, NULL);
    gc_free_inputs(2, in2);
}

static void test_grad_reuse(void **state)
{
    cg_ctx *ctx = *state;
    check1(ctx, "x*x + x", f_twice, NULL, S(3, 4), -1, 1);
    check1(ctx, "tanh(x)^2 + sigmoid(x)", f_diamond, NULL, S(3, 4), -1, 1);
}

/* ---- bookkeeping ---- */

static void read(cg_tensor *t, float *out, int64_t n)
{
    assert_non_null(t);
    assert_int_equal(cg_tensor_to_host(t, out, n), CG_OK);
}

static void test_accumulate_and_zero_grad(void **state)
{
    cg_ctx *ctx = *state;
    const float xv[3] = {1, 2, 3};
    cg_tensor *x = cg_tensor_from_host(ctx, S(3), xv);
    cg_tensor_set_requires_grad(x, true);
    assert_null(cg_tensor_grad(x));
    float g[3];
    for (int rep = 1; rep <= 2; rep++) {
        cg_scope_begin(ctx);
        /* L = sum(x * x): dL/dx = 2x, twice after two backward calls */
        assert_int_equal(cg_backward(cg_sum_all(cg_mul(x, x))), CG_OK);
        cg_scope_end(ctx);
        read(cg_tensor_grad(x), g, 3);
        for (int i = 0; i < 3; i++) assert_float_equal(g[i], 2 * rep * xv[i], 1e-5);
    }
    cg_tensor_zero_grad(x);
    read(cg_tensor_grad(x), g, 3);
    for (int i = 0; i < 3; i++) assert_float_equal(g[i], 0, 0);
    cg_tensor_clear_grad(x);
    assert_null(cg_tensor_grad(x));
    cg_tensor_free(x);
}

static void test_no_grad_detach_errors(void **state)
{
    cg_ctx *ctx = *state;
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_full(ctx, S(2, 3), 1.5f);
    cg_tensor_set_requires_grad(x, true);
    cg_tensor *y = cg_mul_scalar(x, 2);
    assert_true(cg_tensor_requires_grad(y));
    assert_true(cg_tensor_has_history(y));
    assert_null(cg_tensor_grad(y));
    /* only leaves can be marked */
    assert_int_equal(cg_tensor_set_requires_grad(y, true), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "cg_mul_scalar");
    cg_ctx_clear_error(ctx);
    /* non-scalar loss */
    assert_int_equal(cg_backward(y), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "one element, not shape (2, 3)");
    cg_ctx_clear_error(ctx);
    /* no-grad mode records nothing */
    bool was = cg_set_grad_enabled(ctx, false);
    cg_tensor *z = cg_sum_all(cg_mul_scalar(x, 2));
    cg_set_grad_enabled(ctx, was);
    assert_false(cg_tensor_has_history(z));
    assert_false(cg_tensor_requires_grad(z));
    assert_int_equal(cg_backward(z), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "does not require grad");
    cg_ctx_clear_error(ctx);
    /* detach: same data, no history; gradient stops there */
    cg_tensor *d = cg_detach(y);
    assert_false(cg_tensor_has_history(d));
    assert_false(cg_tensor_requires_grad(d));
    float h[6];
    read(d, h, 6);
    for (int i = 0; i < 6; i++) assert_float_equal(h[i], 3.0f, 0);
    cg_tensor *l = cg_sum_all(cg_add(cg_mul(d, x), x)); /* dL/dx = d + 1 = 4 */
    assert_int_equal(cg_backward(l), CG_OK);
    read(cg_tensor_grad(x), h, 6);
    for (int i = 0; i < 6; i++) assert_float_equal(h[i], 4.0f, 1e-6);
    /* backward_with a seed of the output's shape */
    cg_tensor_zero_grad(x);
    assert_int_equal(cg_backward_with(y, cg_tensor_full(ctx, S(2, 3), 0.5f)), CG_OK);
    read(cg_tensor_grad(x), h, 6);
    for (int i = 0; i < 6; i++) assert_float_equal(h[i], 1.0f, 1e-6);
    /* NULL propagates silently; the first error stays */
    assert_null(cg_add(cg_tensor_full(ctx, S(2), 1), cg_tensor_full(ctx, S(3), 1)));
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_SHAPE_MISMATCH);
    assert_null(cg_relu(cg_add(NULL, x)));
    assert_int_equal(cg_backward(NULL), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "cg_add: shapes (2,) and (3,) do not broadcast");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
}

/* A chain far deeper than a recursive walk could survive. */
static void test_deep_graph(void **state)
{
    cg_ctx *ctx = *state;
    const int depth = 20000;
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_full(ctx, S(1), 0.0f);
    cg_tensor_set_requires_grad(x, true);
    cg_tensor *y = x;
    for (int i = 0; i < depth; i++) y = cg_add_scalar(y, 1.0f);
    assert_non_null(y);
    cg_tensor *l = cg_mul(y, y); /* y = depth: dL/dx = 2 depth */
    assert_int_equal(cg_backward(cg_sum_all(l)), CG_OK);
    float g;
    read(cg_tensor_grad(x), &g, 1);
    assert_float_equal(g, 2.0f * depth, 1e-3f * depth);
    cg_scope_end(ctx);
}

/* Many training-like steps in scopes: memory stays flat, no host round
 * trips besides the batch upload. */
static void test_memory_flat(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = rng_for("mem");
    cg_tensor *w1 = gc_input(ctx, &rng, S(10, 16), -0.3f, 0.3f);
    cg_tensor *b1 = gc_input(ctx, &rng, S(16), -0.1f, 0.1f);
    cg_tensor *w2 = gc_input(ctx, &rng, S(16, 1), -0.3f, 0.3f);
    float xs[32 * 10], ys[32];
    struct cg_backend_stats s0, s;
    uint64_t peak_after_warmup = 0, in_use_before = 0;
    for (int step = 0; step < 40; step++) {
        th_fill_uniform(&rng, xs, 320, -1, 1);
        th_fill_uniform(&rng, ys, 32, -1, 1);
        if (step == 0) {
            cg_ctx_stats(ctx, &s0);
            in_use_before = s0.bytes_in_use;
        }
        cg_ctx_reset_stats(ctx);
        cg_scope_begin(ctx);
        cg_tensor *x = cg_tensor_from_host(ctx, S(32, 10), xs);
        cg_tensor *y = cg_tensor_from_host(ctx, S(32, 1), ys);
        cg_tensor *h = cg_relu(cg_add(cg_matmul(x, w1), b1));
        cg_tensor *d = cg_sub(cg_matmul(h, w2), y);
        cg_tensor *loss = cg_mean_all(cg_mul(d, d));
        cg_tensor_zero_grad(w1);
        cg_tensor_zero_grad(b1);
        cg_tensor_zero_grad(w2);
        assert_int_equal(cg_backward(loss), CG_OK);
        cg_ctx_stats(ctx, &s);
        assert_int_equal(s.uploads, 2);   /* x and y */
        assert_int_equal(s.downloads, 0); /* forward and backward stay on the device */
        cg_scope_end(ctx);
        cg_ctx_stats(ctx, &s);
        if (step == 4) peak_after_warmup = s.bytes_peak;
        if (step > 4) assert_true(s.bytes_peak <= peak_after_warmup);
        if (step > 0) /* the grads (created at step 0) are the only new memory */
            assert_int_equal(s.bytes_in_use, in_use_before + (10 * 16 + 16 + 16) * sizeof(float));
    }
    cg_tensor *ins[3] = {w1, b1, w2};
    gc_free_inputs(3, ins);
    cg_ctx_stats(ctx, &s);
    assert_int_equal(s.bytes_in_use, in_use_before - (10 * 16 + 16 + 16) * sizeof(float));
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grad_binary_broadcast, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_maximum_minimum, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_unary, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_reductions, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_matmul, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_softmax, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_views, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_index, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_grad_reuse, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_accumulate_and_zero_grad, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_no_grad_detach_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_deep_graph, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_memory_flat, th_setup, th_teardown),
    };
    return TH_RUN(tests);
}
