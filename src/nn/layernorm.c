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
 * One kernel each way when the backend has layernorm / layernorm_backward
 * (backend.h gives the formulas): composed from ops, a LayerNorm is ~9
 * passes over the activations forward and ~15 backward, a tenth of a small
 * Transformer's step on the cpu backend. Otherwise composed from ops (mean,
 * sub, mul, pow), and autograd supplies the backward: the same values.
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

/* ---- in the backend's kernels --------------------------------------------- */

/* inputs: x (..., *shape), weight, bias; saved: mean, rstd (rows). */
static cg_status fused_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    (void)y;
    cg_tensor *x = n->inputs[0], *w = n->inputs[1], *b = n->inputs[2];
    cg_ctx *ctx = cg__ctx_of(x);
    const int64_t cols = cg__tnumel(w), rows = cg__tnumel(x) / cols;
    const bool need_w = cg__input_needs_grad(n, 1), need_b = cg__input_needs_grad(n, 2);
    cg_tensor *xc = cg__contig_ref(x), *gc = xc ? cg__contig_ref(g) : NULL;
    cg_tensor *wc = gc ? cg__contig_ref(w) : NULL;
    cg_tensor *gx = wc ? cg__tensor_new(ctx, x->ndim, x->shape) : NULL;
    cg_tensor *gw = gx && need_w ? cg__tensor_new(ctx, w->ndim, w->shape) : NULL;
    cg_tensor *gb = gx && need_b ? cg__tensor_new(ctx, b->ndim, b->shape) : NULL;
    cg_status st = gx && (gw || !need_w) && (gb || !need_b) ? CG_OK : ctx->status;
    const struct cg_ptr none = {NULL, 0};
    if (st == CG_OK &&
        ctx->be->layernorm_backward(ctx->bctx, cg__ptr(gx), gw ? cg__ptr(gw) : none,
                                    gb ? cg__ptr(gb) : none, cg__ptr(gc), cg__ptr(xc),
                                    cg__ptr(n->saved[0]), cg__ptr(n->saved[1]), cg__ptr(wc),
                                    rows, cols) != CG_OK)
        st = cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "LayerNorm backward");
    if (wc) cg__tensor_unref(wc);
    if (gc) cg__tensor_unref(gc);
    if (xc) cg__tensor_unref(xc);
    if (st == CG_OK && cg__input_needs_grad(n, 0)) st = cg__accumulate_grad(x, gx);
    if (st == CG_OK && gw) st = cg__accumulate_grad(w, gw);
    if (st == CG_OK && gb) st = cg__accumulate_grad(b, gb);
    return st;
}

/* x (..., *shape) normalised over its last l->n elements per row, recorded
 * as one op. */
static cg_tensor *fused_forward(struct layernorm *l, cg_tensor *x)
{
    cg_ctx *ctx = cg__ctx_of(x);
    int64_t cols = l->n, rows = cg__tnumel(x) / cols;
    cg_tensor *xc = cg__contig_ref(x), *wc = xc ? cg__contig_ref(l->weight) : NULL;
    cg_tensor *bc = wc ? cg__contig_ref(l->bias) : NULL;
    cg_tensor *out = bc ? cg__tensor_new(ctx, x->ndim, x->shape) : NULL;
    cg_tensor *mean = out ? cg__tensor_new(ctx, 1, &rows) : NULL;
    cg_tensor *rstd = mean ? cg__tensor_new(ctx, 1, &rows) : NULL;
    bool ok = rstd != NULL;
    if (ok && ctx->be->layernorm(ctx->bctx, cg__ptr(out), cg__ptr(mean), cg__ptr(rstd),
                                 cg__ptr(xc), cg__ptr(wc), cg__ptr(bc), rows, cols,
                                 LN_EPS) != CG_OK) {
        cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "LayerNorm");
        ok = false;
    }
    if (bc) cg__tensor_unref(bc);
    if (wc) cg__tensor_unref(wc);
    if (xc) cg__tensor_unref(xc);
    if (ok) {
        bool failed;
        cg_tensor *in[3] = {x, l->weight, l->bias}, *saved[2] = {mean, rstd};
        cg__record(out, "LayerNorm", fused_backward, 3, in, 2, saved, &failed);
        ok = !failed;
    }
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

/* ---- composed from ops ------------------------------------------------------ */

static cg_tensor *composed_forward(struct layernorm *l, cg_tensor *x)
{
    /* (..., N): the normalised dims flattened into one */
    int nd = cg_tensor_ndim(x);
    int64_t flat[CG_MAX_DIMS];
    int lead = nd - l->ndim;
    for (int i = 0; i < lead; i++) flat[i] = cg_tensor_dim(x, i);
    flat[lead] = l->n;
    cg_tensor *xf = cg_reshape(x, lead + 1, flat);
    cg_tensor *d = cg_sub(xf, cg_mean(xf, -1, true));
    cg_tensor *var = cg_mean(cg_mul(d, d), -1, true);                    /* (..., 1) */
    cg_tensor *y = cg_mul(d, cg_pow_scalar(cg_add_scalar(var, LN_EPS), -0.5f));
    y = cg_reshape(y, nd, cg_tensor_shape(x));
    return cg_add(cg_mul(y, l->weight), l->bias);
}

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
    cg_ctx *ctx = cg_module_ctx(m);
    if (CG_BACKEND_HAS(ctx->be, layernorm) && CG_BACKEND_HAS(ctx->be, layernorm_backward))
        return fused_forward(l, x);
    return composed_forward(l, x);
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
