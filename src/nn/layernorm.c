/*
 * src/nn/layernorm.c — torch.nn.LayerNorm(normalized_shape, eps=1e-5,
 * elementwise_affine=True).
 *
 * torch.nn.LayerNorm docs:
 *   y = (x - E[x]) / sqrt(Var[x] + eps) * gamma + beta
 * with the mean and the biased variance (divide by N) taken over the last
 * D = len(normalized_shape) dims, gamma (weight) = 1 and beta (bias) = 0 of
 * normalized_shape at init.
 *
 * The op itself, one fused kernel each way or composed from ops, is
 * cg__layer_norm (src/core/ops_fused.c).
 */
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"

#define LN_EPS 1e-5f

struct layernorm {
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t n;            /* prod(shape) */
    cg_tensor *weight;    /* shape */
    cg_tensor *bias;      /* shape */
};

/* x: (..., *shape) -> the same shape */
static cg_tensor *layernorm_forward(cg_module *m, cg_tensor *x)
{
    struct layernorm *l = cg_module_priv(m);
    int nd = cg_tensor_ndim(x);
    bool ok = nd >= l->ndim;
    for (int i = 0; ok && i < l->ndim; i++)
        ok = cg_tensor_dim(x, nd - l->ndim + i) == l->shape[i];
    if (!ok) {
        char s[128], w[128];
        cg__error(cg_module_ctx(m), CG_STATUS_SHAPE_MISMATCH,
                  "LayerNorm%s: input %s must end with those dims",
                  cg__shape_str(l->ndim, l->shape, w, sizeof w),
                  cg_tensor_describe(x, s, sizeof s));
        return NULL;
    }
    return cg__layer_norm(x, l->weight, l->bias, LN_EPS);
}

static void layernorm_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i layernorm_i = {
    .type = "LayerNorm",
    .forward = layernorm_forward,
    .free_priv = layernorm_free_priv,
};

cg_module *cg_layernorm_module(cg_ctx *ctx, int ndim, const int64_t *shape)
{
    if (!ctx) return NULL;
    bool ok = ndim >= 1 && ndim < CG_MAX_DIMS && shape;
    int64_t n = 1;
    for (int i = 0; ok && i < ndim; i++) {
        ok = shape[i] >= 1;
        n *= shape[i];
    }
    if (!ok) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_layernorm_module: normalized_shape needs 1 to %d dims, each >= 1",
                  CG_MAX_DIMS - 1);
        return NULL;
    }
    struct layernorm *l = calloc(1, sizeof *l);
    if (!l) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_layernorm_module: out of host memory");
        return NULL;
    }
    l->ndim = ndim;
    for (int i = 0; i < ndim; i++) l->shape[i] = shape[i];
    l->n = n;
    cg_module *m = cg_module_create(ctx, &layernorm_i, l);
    if (!m) {
        free(l);
        return NULL;
    }
    cg_tensor *w = cg_tensor_full(ctx, ndim, shape, 1.0f);
    l->weight = w ? cg_tensor_keep(w) : NULL;
    if (cg_module_add_parameter(m, "weight", l->weight) != CG_OK) goto fail;
    cg_tensor *b = cg_tensor_zeros(ctx, ndim, shape);
    l->bias = b ? cg_tensor_keep(b) : NULL;
    if (cg_module_add_parameter(m, "bias", l->bias) != CG_OK) goto fail;
    return m;
fail:
    cg_module_free(m);
    return NULL;
}
