/*
 * src/nn/conv.c — torch.nn.Conv2d as a module over the cg_conv2d op
 * (src/core/ops_conv.c).
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"

/* ---- the module (torch.nn.Conv2d) --------------------------------------- */

struct conv_module {
    int64_t in_c, out_c, kh, kw;
    struct cg_conv2d_opts opts;
    cg_tensor *weight, *bias;       /* owned by the module's parameter list */
};

/* x: (N, in_c, H, W) -> (N, out_c, OH, OW) */
static cg_tensor *conv_module_forward(cg_module *m, cg_tensor *x)
{
    struct conv_module *c = cg_module_priv(m);
    if (cg_tensor_ndim(x) != 4 || cg_tensor_dim(x, 1) != c->in_c) {
        char s[128];
        cg__error(cg_module_ctx(m), CG_STATUS_SHAPE_MISMATCH,
                  "Conv2d(%" PRId64 ", %" PRId64 "): input %s must be (N, %" PRId64 ", H, W)",
                  c->in_c, c->out_c, cg_tensor_describe(x, s, sizeof s), c->in_c);
        return NULL;
    }
    return cg_conv2d_ex(x, c->weight, c->bias, &c->opts);
}

static void conv_module_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i conv_module_i = {
    .type = "Conv2d",
    .forward = conv_module_forward,
    .free_priv = conv_module_free_priv,
};

/* A persistent tensor of U(-bound, bound) values drawn in row-major order
 * from the context's RNG (torch.nn.init.uniform_: lo + (hi - lo) u). */
static cg_tensor *uniform_param(cg_ctx *ctx, int ndim, const int64_t *shape, double bound)
{
    int64_t n = 0, bytes = 0;
    bool fits = cg__numel_ok(ndim, shape, &n) && cg__mul_ok(n, (int64_t)sizeof(float), &bytes);
    float *v = fits ? malloc((size_t)bytes) : NULL;
    if (!v) {
        char sh[128];
        cg__shape_str(ndim, shape, sh, sizeof sh);
        if (!fits)
            cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                      "cg_conv2d_module: a %s parameter is too large (its size overflows 64 bits)",
                      sh);
        else
            cg__error(ctx, CG_STATUS_OUT_OF_MEMORY,
                      "cg_conv2d_module: out of host memory for a %s parameter (%" PRId64
                      " bytes)", sh, bytes);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) v[i] = (float)(-bound + 2.0 * bound * cg_rand_uniform(ctx));
    cg_tensor *t = cg_tensor_from_host(ctx, ndim, shape, v);
    free(v);
    return t ? cg_tensor_keep(t) : NULL;
}

CG_API cg_module *cg_conv2d_module(cg_ctx *ctx, int64_t in_c, int64_t out_c, int64_t kh,
                                   int64_t kw, const struct cg_conv2d_opts *opts)
{
    if (!ctx) return NULL;
    struct cg_conv2d_opts o = opts ? *opts : (struct cg_conv2d_opts){0};
    int64_t groups = o.groups ? o.groups : 1;
    bool bad_opt = false;
    for (int i = 0; i < 2; i++)
        bad_opt |= o.stride[i] < 0 || o.padding[i] < 0 || o.dilation[i] < 0;
    if (in_c < 1 || out_c < 1 || kh < 1 || kw < 1 || groups < 1 || bad_opt ||
        in_c % groups || out_c % groups) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_conv2d_module(%" PRId64 ", %" PRId64 ", (%" PRId64 ", %" PRId64
                  "), groups %" PRId64 "): channels and kernel sizes must be >= 1, "
                  "groups must divide both channel counts, strides, paddings and "
                  "dilations must be >= 0", in_c, out_c, kh, kw, groups);
        return NULL;
    }
    struct conv_module *c = calloc(1, sizeof *c);
    if (!c) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_conv2d_module: out of host memory");
        return NULL;
    }
    *c = (struct conv_module){.in_c = in_c, .out_c = out_c, .kh = kh, .kw = kw, .opts = o};
    cg_module *m = cg_module_create(ctx, &conv_module_i, c);
    if (!m) {
        free(c);
        return NULL;
    }
    /* torch.nn.Conv2d (_ConvNd.reset_parameters, torch/nn/modules/conv.py):
     *   init.kaiming_uniform_(self.weight, a=math.sqrt(5))
     *     -> bound = sqrt(6 / ((1 + a^2) fan_in)) = 1 / sqrt(fan_in)
     *   bound = 1 / sqrt(fan_in); init.uniform_(self.bias, -bound, bound)
     * with fan_in = weight.size(1) * KH * KW = in_c / groups * KH * KW. */
    double fan_in = (double)(in_c / groups * kh * kw);
    double bound = 1.0 / sqrt(fan_in);
    c->weight = uniform_param(ctx, CG_SHAPE(out_c, in_c / groups, kh, kw), bound);
    if (cg_module_add_parameter(m, "weight", c->weight) != CG_OK) goto fail;
    if (!o.no_bias) {
        c->bias = uniform_param(ctx, CG_SHAPE(out_c), bound);
        if (cg_module_add_parameter(m, "bias", c->bias) != CG_OK) goto fail;
    }
    return m;
fail:
    cg_module_free(m);
    return NULL;
}
