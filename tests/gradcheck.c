/* tests/gradcheck.c — see gradcheck.h. */
#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

cg_tensor *gc_input(cg_ctx *ctx, uint64_t *rng, int ndim, const int64_t *shape, float lo, float hi)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    assert_non_null(h);
    th_fill_uniform(rng, h, n, lo, hi);
    cg_tensor *t = gc_const(ctx, ndim, shape, h);
    free(h);
    assert_int_equal(cg_tensor_set_requires_grad(t, true), CG_OK);
    return t;
}

cg_tensor *gc_const(cg_ctx *ctx, int ndim, const int64_t *shape, const float *data)
{
    cg_tensor *t = cg_tensor_from_host(ctx, ndim, shape, data);
    if (!t) fail_msg("gc_const: %s", cg_last_error(ctx));
    return cg_tensor_keep(t); /* persistent even if a scope is open */
}

void gc_free_inputs(int n, cg_tensor **inputs)
{
    for (int i = 0; i < n; i++) cg_tensor_free(inputs[i]);
}

static float *download(cg_tensor *t, int64_t *n)
{
    *n = cg_tensor_numel(t);
    float *h = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *h);
    assert_non_null(h);
    if (cg_tensor_to_host(t, h, *n) != CG_OK) fail_msg("download: %s", cg_last_error(cg_tensor_ctx(t)));
    return h;
}

/* L = sum w_i f(x)_i, f on the device (float32), the sum in double. */
static double eval(cg_ctx *ctx, const char *what, gc_fn f, void *user, cg_tensor **in,
                   const float *w, int64_t m)
{
    cg_scope_begin(ctx);
    bool was = cg_set_grad_enabled(ctx, false);
    cg_tensor *out = f(in, user);
    cg_set_grad_enabled(ctx, was);
    if (!out) fail_msg("%s: f failed: %s", what, cg_last_error(ctx));
    int64_t n;
    float *h = download(out, &n);
    assert_int_equal(n, m);
    double L = 0;
    for (int64_t i = 0; i < n; i++) L += (double)w[i] * (double)h[i];
    free(h);
    cg_scope_end(ctx);
    return L;
}

void gc_check(cg_ctx *ctx, const char *what, gc_fn f, void *user, int n, cg_tensor **inputs,
              const struct gc_opts *opts)
{
    struct gc_opts o = opts ? *opts : GC_DEFAULT_OPTS;
    uint64_t rng = 0x5eed ^ (uint64_t)n;
    for (const char *c = what; *c; c++) rng = rng * 131 + (uint64_t)*c;

    /* Analytic gradients of L = sum(w * f). */
    for (int i = 0; i < n; i++) cg_tensor_clear_grad(inputs[i]);
    cg_scope_begin(ctx);
    cg_tensor *out = f(inputs, user);
    if (!out) fail_msg("%s: f failed: %s", what, cg_last_error(ctx));
    int64_t m = cg_tensor_numel(out);
    float *w = malloc((size_t)(m > 0 ? m : 1) * sizeof *w);
    assert_non_null(w);
    th_fill_uniform(&rng, w, m, -1.0f, 1.0f);
    cg_tensor *wt = cg_tensor_from_host(ctx, cg_tensor_ndim(out), cg_tensor_shape(out), w);
    cg_tensor *loss = cg_sum_all(cg_mul(out, wt));
    if (cg_backward(loss) != CG_OK) fail_msg("%s: backward failed: %s", what, cg_last_error(ctx));
    float **ana = calloc((size_t)n, sizeof *ana);
    assert_non_null(ana);
    for (int i = 0; i < n; i++) {
        if (!cg_tensor_requires_grad(inputs[i])) continue;
        int64_t k = cg_tensor_numel(inputs[i]);
        cg_tensor *g = cg_tensor_grad(inputs[i]);
        if (g) {
            assert_int_equal(cg_tensor_ndim(g), cg_tensor_ndim(inputs[i]));
            for (int d = 0; d < cg_tensor_ndim(g); d++)
                assert_int_equal(cg_tensor_dim(g, d), cg_tensor_dim(inputs[i], d));
            ana[i] = download(g, &k);
        } else {
            ana[i] = calloc((size_t)(k > 0 ? k : 1), sizeof(float)); /* no path: zero */
        }
    }
    cg_scope_end(ctx);

    /* Central differences, one element at a time. */
    for (int i = 0; i < n; i++) {
        if (!ana[i]) continue;
        int64_t k;
        float *x = download(inputs[i], &k);
        for (int64_t j = 0; j < k; j++) {
            float x0 = x[j];
            x[j] = x0 + o.eps;
            assert_int_equal(cg_tensor_set_data(inputs[i], x, k), CG_OK);
            double lp = eval(ctx, what, f, user, inputs, w, m);
            x[j] = x0 - o.eps;
            assert_int_equal(cg_tensor_set_data(inputs[i], x, k), CG_OK);
            double lm = eval(ctx, what, f, user, inputs, w, m);
            x[j] = x0;
            /* the step actually taken, after float rounding of x0 +- eps */
            double h = (double)(x0 + o.eps) - (double)(x0 - o.eps);
            double num = (lp - lm) / h;
            double err = fabs((double)ana[i][j] - num);
            if (!(err <= o.atol + o.rtol * fabs(num)))
                fail_msg("%s: input %d element %lld (x = %g): analytic %.6g, numeric %.6g "
                         "(rtol %g, atol %g)", what, i, (long long)j, (double)x0,
                         (double)ana[i][j], num, o.rtol, o.atol);
        }
        assert_int_equal(cg_tensor_set_data(inputs[i], x, k), CG_OK);
        free(x);
        free(ana[i]);
        cg_tensor_clear_grad(inputs[i]);
    }
    free(ana);
    free(w);
}
