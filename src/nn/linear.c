/*
 * src/nn/linear.c — torch.nn.Linear: y = x W^T + b.
 *
 * Forward is cg_matmul(x, W^T) (a transposed view: no copy) plus a broadcast
 * bias add; the backward of both comes from autograd (ops.h), so there is no
 * hand-written backward here.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/internal.h"

struct linear {
    int64_t in, out;
    cg_tensor *weight;   /* (out, in), owned by the module's parameter list */
    cg_tensor *bias;     /* (out) or NULL                                   */
};

/* x: (..., in) -> (..., out) */
static cg_tensor *linear_forward(cg_module *m, cg_tensor *x)
{
    struct linear *l = cg_module_priv(m);
    int nd = cg_tensor_ndim(x);
    if (nd < 1 || cg_tensor_dim(x, -1) != l->in) {
        char s[128];
        cg__error(cg_module_ctx(m), CG_STATUS_SHAPE_MISMATCH,
                  "Linear(%lld, %lld): input %s must have %lld features in its last dim",
                  (long long)l->in, (long long)l->out,
                  cg_tensor_describe(x, s, sizeof s), (long long)l->in);
        return NULL;
    }
    cg_tensor *y = cg_matmul(x, cg_transpose(l->weight, 0, 1));   /* (..., out) */
    return l->bias ? cg_add(y, l->bias) : y;
}

static void linear_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i linear_i = {
    .type = "Linear",
    .forward = linear_forward,
    .free_priv = linear_free_priv,
};

/* A persistent (rows, cols) or (rows) tensor of U(-bound, bound) values drawn
 * in row-major order from the context's RNG: torch.nn.init.uniform_ computes
 * lo + (hi - lo) * u. cols == 0 means 1-d. */
static cg_tensor *uniform_param(cg_ctx *ctx, int64_t rows, int64_t cols, double bound)
{
    int64_t n = 0, bytes = 0;
    bool fits = cg__mul_ok(rows, cols ? cols : 1, &n) &&
                cg__mul_ok(n, (int64_t)sizeof(float), &bytes);
    float *v = fits ? malloc((size_t)bytes) : NULL;
    if (!v) {
        /* weight (out, in), bias (out): name the layer and the size */
        if (!fits)
            cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                      "cg_linear_module(in %" PRId64 ", out %" PRId64 "): the %s is too large "
                      "(its size overflows 64 bits)", cols, rows, cols ? "weight" : "bias");
        else
            cg__error(ctx, CG_STATUS_OUT_OF_MEMORY,
                      "cg_linear_module(in %" PRId64 ", out %" PRId64 "): out of host memory "
                      "for the %s (%" PRId64 " bytes)", cols, rows, cols ? "weight" : "bias",
                      bytes);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(-bound + 2.0 * bound * cg_rand_uniform(ctx));
    cg_tensor *t = cols ? cg_tensor_from_host(ctx, CG_SHAPE(rows, cols), v)
                        : cg_tensor_from_host(ctx, CG_SHAPE(rows), v);
    free(v);
    return t ? cg_tensor_keep(t) : NULL;
}

cg_module *cg_linear_module(cg_ctx *ctx, int64_t in, int64_t out, bool bias)
{
    if (!ctx) return NULL;
    if (in < 1 || out < 1) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_linear_module: in (%lld) and out (%lld) must be >= 1",
                  (long long)in, (long long)out);
        return NULL;
    }
    struct linear *l = calloc(1, sizeof *l);
    if (!l) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_linear_module: out of host memory");
        return NULL;
    }
    l->in = in;
    l->out = out;
    cg_module *m = cg_module_create(ctx, &linear_i, l);
    if (!m) {
        free(l);
        return NULL;
    }
    /* torch.nn.Linear.reset_parameters (torch/nn/modules/linear.py):
     *   init.kaiming_uniform_(self.weight, a=math.sqrt(5))
     *     gain = sqrt(2 / (1 + a^2)), bound = gain * sqrt(3 / fan_in)
     *     (torch/nn/init.py: calculate_gain('leaky_relu', a), kaiming_uniform_)
     *     = 1 / sqrt(fan_in)
     *   bound = 1 / sqrt(fan_in); init.uniform_(self.bias, -bound, bound)
     * fan_in = in (weight is (out, in)). Weight first, then bias. */
    double a = sqrt(5.0);
    double gain = sqrt(2.0 / (1.0 + a * a));
    double w_bound = gain * sqrt(3.0 / (double)in);
    double b_bound = 1.0 / sqrt((double)in);
    l->weight = uniform_param(ctx, out, in, w_bound);
    if (cg_module_add_parameter(m, "weight", l->weight) != CG_OK) goto fail;
    if (bias) {
        l->bias = uniform_param(ctx, out, 0, b_bound);
        if (cg_module_add_parameter(m, "bias", l->bias) != CG_OK) goto fail;
    }
    return m;
fail:
    cg_module_free(m);
    return NULL;
}
