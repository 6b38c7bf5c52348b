/*
 * src/core/ops_fused.c — the layer ops that have a fused kernel in the
 * backend (backend.h gives each one's math) and a composed fallback from
 * other ops with the same values (tests/test_fused.c compares them). The
 * choice is made here, per call, from what the context's backend has
 * (dispatch.h's cg__be_has_*), so src/nn builds its layers from ops only.
 *
 * LayerNorm (torch.nn.LayerNorm): one kernel each way when the backend has
 * layernorm / layernorm_backward. Composed from ops, a LayerNorm is ~9
 * passes over the activations forward and ~15 backward, a tenth of a small
 * Transformer's step on the cpu backend. Otherwise composed from ops (mean,
 * sub, mul, pow), and autograd supplies the backward.
 *
 * Causal softmax: softmax(S + M) over the last axis, M the causal mask
 * (torch.nn.functional.scaled_dot_product_attention with is_causal=True;
 * PyTorch uses -inf above the diagonal, -1e30 gives exactly the same
 * probabilities, exp(-1e30 - max) being 0 in float32, without inf
 * arithmetic on devices built with finite-math options). When the backend
 * has softmax_causal the masked scores never exist: one kernel normalises
 * each row over its first i + 1 columns and writes exact zeros past them,
 * and no (T, T) mask is built or added. Its backward is the plain softmax
 * backward (zeros stay zeros).
 *
 * Bias + GELU: gelu(x + bias), the Transformer feed-forward's, in one
 * kernel forward and backward when the backend has bias_gelu, instead of a
 * bias add and a GELU op.
 */
#include <stdlib.h>

#include "core/dispatch.h"
#include "core/ops_internal.h"

#define MASK_NEG (-1e30f)

/* ---- LayerNorm in the backend's kernels --------------------------------------------- */

/* inputs: x (..., *shape), weight, bias; saved: mean, rstd (rows). */
static cg_status layernorm_fused_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
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
    if (st == CG_OK &&
        cg__be_layernorm_backward(ctx, "LayerNorm backward", cg__ptr(gx), cg__ptr_opt(gw),
                                  cg__ptr_opt(gb), cg__ptr(gc), cg__ptr(xc),
                                  cg__ptr(n->saved[0]), cg__ptr(n->saved[1]), cg__ptr(wc), rows,
                                  cols) != CG_OK)
        st = ctx->status;
    if (wc) cg__tensor_unref(wc);
    if (gc) cg__tensor_unref(gc);
    if (xc) cg__tensor_unref(xc);
    if (st == CG_OK && cg__input_needs_grad(n, 0)) st = cg__accumulate_grad(x, gx);
    if (st == CG_OK && gw) st = cg__accumulate_grad(w, gw);
    if (st == CG_OK && gb) st = cg__accumulate_grad(b, gb);
    return st;
}

/* x (..., *w.shape) normalised over its last numel(w) elements per row,
 * recorded as one op. */
static cg_tensor *layernorm_fused(cg_tensor *x, cg_tensor *w, cg_tensor *b, float eps)
{
    cg_ctx *ctx = cg__ctx_of(x);
    int64_t cols = cg__tnumel(w), rows = cg__tnumel(x) / cols;
    cg_tensor *xc = cg__contig_ref(x), *wc = xc ? cg__contig_ref(w) : NULL;
    cg_tensor *bc = wc ? cg__contig_ref(b) : NULL;
    cg_tensor *out = bc ? cg__tensor_new(ctx, x->ndim, x->shape) : NULL;
    cg_tensor *mean = out ? cg__tensor_new(ctx, 1, &rows) : NULL;
    cg_tensor *rstd = mean ? cg__tensor_new(ctx, 1, &rows) : NULL;
    bool ok = rstd != NULL;
    if (ok)
        ok = cg__be_layernorm(ctx, "LayerNorm", cg__ptr(out), cg__ptr(mean), cg__ptr(rstd),
                              cg__ptr(xc), cg__ptr(wc), cg__ptr(bc), rows, cols, eps) == CG_OK;
    if (bc) cg__tensor_unref(bc);
    if (wc) cg__tensor_unref(wc);
    if (xc) cg__tensor_unref(xc);
    if (ok) {
        bool failed;
        cg_tensor *in[3] = {x, w, b}, *saved[2] = {mean, rstd};
        cg__record(out, "LayerNorm", layernorm_fused_backward, 3, in, 2, saved, &failed);
        ok = !failed;
    }
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

/* ---- LayerNorm composed from ops ------------------------------------------------------ */

static cg_tensor *layernorm_composed(cg_tensor *x, cg_tensor *w, cg_tensor *b, float eps)
{
    /* (..., N): the normalised dims flattened into one */
    int nd = cg_tensor_ndim(x);
    int64_t flat[CG_MAX_DIMS];
    int lead = nd - w->ndim;
    for (int i = 0; i < lead; i++) flat[i] = cg_tensor_dim(x, i);
    flat[lead] = cg__tnumel(w);
    cg_tensor *xf = cg_reshape(x, lead + 1, flat);
    cg_tensor *d = cg_sub(xf, cg_mean(xf, -1, true));
    cg_tensor *var = cg_mean(cg_mul(d, d), -1, true);                    /* (..., 1) */
    cg_tensor *y = cg_mul(d, cg_pow_scalar(cg_add_scalar(var, eps), -0.5f));
    y = cg_reshape(y, nd, cg_tensor_shape(x));
    return cg_add(cg_mul(y, w), b);
}

cg_tensor *cg__layer_norm(cg_tensor *x, cg_tensor *w, cg_tensor *b, float eps)
{
    if (!x || !w || !b) return NULL;
    if (cg__be_has_layernorm(cg__ctx_of(x))) return layernorm_fused(x, w, b, eps);
    return layernorm_composed(x, w, b, eps);
}

/* ---- causal softmax ---------------------------------------------------- */

/* dS = y * (gy - sum(gy * y)) per row: backend softmax_backward, log = 0. */
static cg_status causal_softmax_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *s = n->inputs[0];
    cg_ctx *ctx = cg__ctx_of(s);
    const int64_t cols = n->i[0], rows = cg__tnumel(y) / cols;
    cg_tensor *gs = cg__tensor_new(ctx, s->ndim, s->shape);
    cg_tensor *gc = gs ? cg__contig_ref(g) : NULL;
    if (!gc) return ctx->status;
    cg_status st = cg__be_softmax_backward(ctx, "causal softmax backward", cg__ptr(gs), cg__ptr(y),
                                           cg__ptr(gc), rows, cols, 0);
    cg__tensor_unref(gc);
    return st ? st : cg__accumulate_grad(s, gs);
}

/* softmax(s + M) over the last axis of the scores s (B, h, T, T), M the
 * causal mask, in the backend's softmax_causal kernel. */
static cg_tensor *causal_softmax_fused(cg_tensor *s)
{
    cg_ctx *ctx = cg__ctx_of(s);
    const int64_t T = s->shape[s->ndim - 1], rows = cg__tnumel(s) / T;
    cg_tensor *c = cg__contig_ref(s);
    cg_tensor *out = c ? cg__tensor_new(ctx, s->ndim, s->shape) : NULL;
    bool ok = out != NULL;
    if (ok)
        ok = cg__be_softmax_causal(ctx, "causal softmax", cg__ptr(out), cg__ptr(c), rows, T, T) ==
             CG_OK;
    if (c) cg__tensor_unref(c);
    if (ok) {
        bool failed;
        struct cg_node *n = cg__record(out, "causal softmax", causal_softmax_backward, 1, &s, 0,
                                       NULL, &failed);
        ok = !failed;
        if (n) n->i[0] = T;
    }
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

/* The additive causal mask (T, T): 0 where j <= i, MASK_NEG where j > i.
 * Kept across calls of the same T. */
static cg_tensor *causal_mask(cg_ctx *ctx, cg_tensor **cache, int64_t T)
{
    if (*cache && cg_tensor_dim(*cache, 0) == T) return *cache;
    cg_tensor_free(*cache);
    *cache = NULL;
    float *h = malloc((size_t)(T * T) * sizeof *h);
    if (!h) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "attention mask: out of host memory");
        return NULL;
    }
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) h[i * T + j] = j > i ? MASK_NEG : 0.0f;
    cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(T, T), h);
    free(h);
    *cache = t ? cg_tensor_keep(t) : NULL;
    return *cache;
}

cg_tensor *cg__softmax_causal(cg_tensor *s, cg_tensor **mask_cache)
{
    if (!s) return NULL;
    cg_ctx *ctx = cg__ctx_of(s);
    if (cg__be_has_softmax_causal(ctx)) return causal_softmax_fused(s);
    int64_t T = s->shape[s->ndim - 1];
    return cg_softmax(cg_add(s, causal_mask(ctx, mask_cache, T)), -1);
}

/* ---- bias + GELU in one kernel ------------------------------------------ */

/* inputs: z0 (.., F) the pre-bias activations, bias (F) or none; g: the
 * output's gradient. gz is both inputs' gradient (the bias's summed over
 * rows by cg__accumulate_grad). */
static cg_status bias_gelu_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    (void)y;
    cg_tensor *x = n->inputs[0], *bias = n->n_inputs > 1 ? n->inputs[1] : NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    const int64_t cols = x->shape[x->ndim - 1], rows = cg__tnumel(x) / cols;
    cg_tensor *xc = cg__contig_ref(x), *gc = xc ? cg__contig_ref(g) : NULL;
    cg_tensor *bc = gc && bias ? cg__contig_ref(bias) : NULL;
    cg_tensor *gx = gc && (bc || !bias) ? cg__tensor_new(ctx, x->ndim, x->shape) : NULL;
    cg_status st = gx ? CG_OK : ctx->status;
    struct cg_ptr bp = cg__ptr_opt(bc);
    if (st == CG_OK)
        st = cg__be_bias_gelu_backward(ctx, "bias + GELU backward", cg__ptr(gx), cg__ptr(xc), bp,
                                       cg__ptr(gc), rows, cols);
    if (bc) cg__tensor_unref(bc);
    if (gc) cg__tensor_unref(gc);
    if (xc) cg__tensor_unref(xc);
    if (st == CG_OK) st = cg__accumulate_grad(x, gx);
    if (st == CG_OK && bias) st = cg__accumulate_grad(bias, gx);
    return st;
}

/* gelu(x + bias) over the last axis of x (bias (F) or NULL) in the
 * backend's bias_gelu kernel, recorded as one op. */
static cg_tensor *bias_gelu_fused(cg_tensor *x, cg_tensor *bias)
{
    cg_ctx *ctx = cg__ctx_of(x);
    const int64_t cols = x->shape[x->ndim - 1], rows = cg__tnumel(x) / cols;
    CG_ASSERT(!bias || (bias->ndim == 1 && bias->shape[0] == cols));
    cg_tensor *xc = cg__contig_ref(x), *bc = xc && bias ? cg__contig_ref(bias) : NULL;
    cg_tensor *out = xc && (bc || !bias) ? cg__tensor_new(ctx, x->ndim, x->shape) : NULL;
    bool ok = out != NULL;
    struct cg_ptr bp = cg__ptr_opt(bc);
    if (ok)
        ok = cg__be_bias_gelu(ctx, "bias + GELU", cg__ptr(out), cg__ptr(xc), bp, rows, cols) ==
             CG_OK;
    if (bc) cg__tensor_unref(bc);
    if (xc) cg__tensor_unref(xc);
    if (ok) {
        bool failed;
        cg_tensor *in[2] = {x, bias};
        cg__record(out, "bias + GELU", bias_gelu_backward, bias ? 2 : 1, in, 0, NULL, &failed);
        ok = !failed;
    }
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

cg_tensor *cg__bias_gelu(cg_tensor *x, cg_tensor *bias)
{
    if (!x) return NULL;
    if (cg__be_has_bias_gelu(cg__ctx_of(x))) return bias_gelu_fused(x, bias);
    return cg_gelu(bias ? cg_add(x, bias) : x);
}

