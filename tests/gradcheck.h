/*
 * tests/gradcheck.h — finite-difference gradient checks for any function of
 * tensors, on the backend under test.
 *
 *     static cg_tensor *f(cg_tensor **in, void *user)
 *     {
 *         return cg_mul(cg_tanh(in[0]), in[1]);          // any output shape
 *     }
 *     ...
 *     cg_tensor *in[2] = {gc_input(ctx, &rng, CG_SHAPE(3, 4), -1, 1),
 *                         gc_input(ctx, &rng, CG_SHAPE(4), -1, 1)};
 *     gc_check(ctx, "tanh*mul", f, NULL, 2, in, NULL);   // fails the test
 *     gc_free_inputs(2, in);
 *
 * The scalar checked is L = sum_i w_i * f(x)_i with fixed random weights
 * w_i in [-1, 1] (so every output element and every pattern of upstream
 * gradients matters, not only their sum). The analytic gradient comes from
 * cg_backward(L); the numeric one from central differences
 *     dL/dx_j ~ (L(x + eps e_j) - L(x - eps e_j)) / (2 eps),
 * with f evaluated on the device in float32 and the weighted sum taken on
 * the host in double. Every input whose requires_grad is set is checked;
 * the others (index tensors, constants) are left alone.
 *
 * Tolerance (the default, GC_DEFAULT_OPTS): |analytic - numeric| <=
 * atol + rtol * |numeric| with eps = 1e-2, rtol = 1e-2, atol = 2e-3.
 * Why: the central difference's truncation error is eps^2/6 * |f'''|
 * ~ 2e-5 |f'''|; float32 rounding of f's m outputs (relative 6e-8 each,
 * summed in double) contributes ~ sqrt(m) * 6e-8 * |f| / (2 eps), about
 * 3e-5 for m = 100 and |f| ~ 1. Both sit two orders of magnitude below
 * atol, while a wrong gradient (a missing term, a wrong sign, a transposed
 * index) is off by O(0.1 .. 1). Inputs must stay at least 2 eps away from
 * kinks (relu at 0, clamp bounds, ties of max) — the callers choose ranges
 * that do.
 */
#ifndef CLGRAD_TEST_GRADCHECK_H
#define CLGRAD_TEST_GRADCHECK_H

#include <stdint.h>

#include "clgrad/clgrad.h"

typedef cg_tensor *(*gc_fn)(cg_tensor **inputs, void *user);

struct gc_opts {
    float eps;
    double rtol, atol;
};
#define GC_DEFAULT_OPTS ((struct gc_opts){.eps = 1e-2f, .rtol = 1e-2, .atol = 2e-3})

/* A persistent leaf with requires_grad, values uniform in [lo, hi) from the
 * test RNG *rng (tests/harness.h th_rand_u64). */
cg_tensor *gc_input(cg_ctx *ctx, uint64_t *rng, int ndim, const int64_t *shape, float lo, float hi);
/* A persistent constant (no grad) holding data. */
cg_tensor *gc_const(cg_ctx *ctx, int ndim, const int64_t *shape, const float *data);
void gc_free_inputs(int n, cg_tensor **inputs);

/* Checks f's analytic gradients against central differences for every
 * input with requires_grad; fails the current cmocka test with the input,
 * element and both values on a mismatch. opts NULL: GC_DEFAULT_OPTS.
 * Leaves the inputs' values and grads as they were (grads cleared). */
void gc_check(cg_ctx *ctx, const char *what, gc_fn f, void *user, int n, cg_tensor **inputs,
              const struct gc_opts *opts);

#endif
