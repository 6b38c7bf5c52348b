/*
 * src/nn/attention.c — multi-head self-attention (torch.nn.MultiheadAttention
 * layout) and a pre-norm Transformer encoder block
 * (torch.nn.TransformerEncoderLayer with norm_first=True, activation="gelu",
 * batch_first=True).
 *
 * Attention is scaled dot-product attention ("Attention Is All You Need",
 * Vaswani et al. 2017, eq. 1; torch.nn.functional.scaled_dot_product_attention
 * docs):
 *   Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + M) V
 * per head, with [Q | K | V] = x in_proj_weight^T + in_proj_bias and the heads
 * concatenated through out_proj. M is 0, or for a causal mask a large
 * negative number above the diagonal (PyTorch's is_causal uses -inf; -1e30
 * gives exactly the same probabilities, exp(-1e30 - max) being 0 in float32,
 * without inf arithmetic on devices built with finite-math options).
 * Dropout is cg_dropout (src/nn/dropout.c: host-RNG masks, the same on
 * every backend for one seed). Everything is batched matmuls, a softmax and
 * views, so the backward is autograd's, on the device.
 *
 * Causal softmax in one kernel. When the backend has softmax_causal
 * (backend.h), the masked scores never exist: one kernel normalises each
 * row over its first i + 1 columns and writes exact zeros past them, which
 * are the probabilities softmax(S + M) gives (exp(-1e30 - max) is 0 in
 * float32), and no (T, T) mask is built or added. Its backward is the
 * plain softmax backward (zeros stay zeros).
 *
 * Bias + GELU in one kernel. When the backend has bias_gelu (backend.h),
 * the block's gelu(linear1(x)) adds linear1's bias inside the GELU kernel,
 * forward and backward, instead of a bias add and a GELU op.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"

#define MASK_NEG (-1e30f)

/* ---- multi-head attention ------------------------------------------------ */

struct mha {
    int64_t E, heads;
    float dropout;
    cg_tensor *in_w;      /* (3E, E) in_proj_weight     */
    cg_tensor *in_b;      /* (3E) in_proj_bias, or NULL */
    cg_module *out_proj;  /* Linear(E, E), a child      */
    cg_tensor *mask;      /* (T, T) cached causal mask, persistent, or NULL */
};

static void mha_free_priv(cg_module *m)
{
    struct mha *a = cg_module_priv(m);
    cg_tensor_free(a->mask);
    free(a);
}

/* The additive causal mask (T, T): 0 where j <= i, MASK_NEG where j > i.
 * Kept across calls of the same T. */
static cg_tensor *causal_mask(cg_ctx *ctx, struct mha *a, int64_t T)
{
    if (a->mask && cg_tensor_dim(a->mask, 0) == T) return a->mask;
    cg_tensor_free(a->mask);
    a->mask = NULL;
    float *h = malloc((size_t)(T * T) * sizeof *h);
    if (!h) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "attention mask: out of host memory");
        return NULL;
    }
    for (int64_t i = 0; i < T; i++)
        for (int64_t j = 0; j < T; j++) h[i * T + j] = j > i ? MASK_NEG : 0.0f;
    cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(T, T), h);
    free(h);
    a->mask = t ? cg_tensor_keep(t) : NULL;
    return a->mask;
}

/* dS = y * (gy - sum(gy * y)) per row: backend softmax_backward, log = 0. */
static cg_status causal_softmax_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *s = n->inputs[0];
    cg_ctx *ctx = cg__ctx_of(s);
    const int64_t cols = n->i[0], rows = cg__tnumel(y) / cols;
    cg_tensor *gs = cg__tensor_new(ctx, s->ndim, s->shape);
    cg_tensor *gc = gs ? cg__contig_ref(g) : NULL;
    if (!gc) return ctx->status;
    cg_status st = CG_OK;
    if (ctx->be->softmax_backward(ctx->bctx, cg__ptr(gs), cg__ptr(y), cg__ptr(gc), rows, cols, 0) !=
        CG_OK)
        st = cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "causal softmax backward");
    cg__tensor_unref(gc);
    return st ? st : cg__accumulate_grad(s, gs);
}

/* softmax(s + M) over the last axis of the scores s (B, h, T, T), M the
 * causal mask, in the backend's softmax_causal kernel. */
static cg_tensor *causal_softmax(cg_tensor *s)
{
    if (!s) return NULL;
    cg_ctx *ctx = cg__ctx_of(s);
    const int64_t T = s->shape[s->ndim - 1], rows = cg__tnumel(s) / T;
    cg_tensor *c = cg__contig_ref(s);
    cg_tensor *out = c ? cg__tensor_new(ctx, s->ndim, s->shape) : NULL;
    bool ok = out != NULL;
    if (ok && ctx->be->softmax_causal(ctx->bctx, cg__ptr(out), cg__ptr(c), rows, T, T) != CG_OK) {
        cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "causal softmax");
        ok = false;
    }
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

/* cg_module_forward_ex of MultiheadAttention (nn.h): self-attention,
 * args->causal masks the future. */
static cg_tensor *mha_forward(cg_module *m, cg_tensor *x, struct cg_forward_args *args)
{
    cg_ctx *ctx = cg_module_ctx(m);
    bool causal = args && args->causal;
    if (args && (args->state[0] || args->state[1])) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "MultiheadAttention: takes no state");
        return NULL;
    }
    struct mha *a = cg_module_priv(m);
    const int64_t E = a->E, nh = a->heads, d = E / nh;
    if (cg_tensor_ndim(x) != 3 || cg_tensor_dim(x, 2) != E || cg_tensor_dim(x, 1) < 1) {
        char s[128];
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "MultiheadAttention(%lld, heads=%lld): input %s must be (B, T, %lld), T >= 1",
                  (long long)E, (long long)nh, cg_tensor_describe(x, s, sizeof s), (long long)E);
        return NULL;
    }
    const int64_t B = cg_tensor_dim(x, 0), T = cg_tensor_dim(x, 1);
    cg_tensor *qkv = cg_matmul(x, cg_transpose(a->in_w, 0, 1));       /* (B, T, 3E) */
    if (a->in_b) qkv = cg_add(qkv, a->in_b);
    /* (B, T, 3, h, d) -> (3, B, h, T, d): q, k, v of each head */
    cg_tensor *p = cg_permute(cg_reshape(qkv, CG_SHAPE(B, T, 3, nh, d)), CG_SHAPE(2, 0, 3, 1, 4));
    cg_tensor *q = cg_squeeze(cg_slice(p, 0, 0, 1, 1), 0);             /* (B, h, T, d) */
    cg_tensor *k = cg_squeeze(cg_slice(p, 0, 1, 2, 1), 0);
    cg_tensor *v = cg_squeeze(cg_slice(p, 0, 2, 3, 1), 0);
    /* scaling q (T*d values) is cheaper than scaling the (T, T) scores */
    q = cg_mul_scalar(q, (float)(1.0 / sqrt((double)d)));
    cg_tensor *s = cg_matmul(q, cg_transpose(k, -2, -1));              /* (B, h, T, T) */
    cg_tensor *probs;                                                  /* (B, h, T, T) */
    if (causal && CG_BACKEND_HAS(ctx->be, softmax_causal))
        probs = causal_softmax(s);
    else
        probs = cg_softmax(causal ? cg_add(s, causal_mask(ctx, a, T)) : s, -1);
    cg_tensor *w = cg_dropout(probs, a->dropout, cg_module_is_training(m));
    cg_tensor *o = cg_matmul(w, v);                                    /* (B, h, T, d) */
    o = cg_reshape(cg_permute(o, CG_SHAPE(0, 2, 1, 3)), CG_SHAPE(B, T, E));
    return cg_module_forward(a->out_proj, o);
}

static const struct cg_module_i mha_i = {
    .type = "MultiheadAttention",
    .forward_ex = mha_forward,
    .free_priv = mha_free_priv,
};

cg_module *cg_multihead_attention_module(cg_ctx *ctx, int64_t embed_dim, int64_t num_heads,
                                  float dropout_p, bool bias)
{
    if (!ctx) return NULL;
    if (embed_dim < 1 || num_heads < 1 || embed_dim % num_heads || !(dropout_p >= 0.0f) ||
        dropout_p > 1.0f) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_multihead_attention_module: embed_dim (%lld) must be a positive multiple of "
                  "num_heads (%lld), dropout (%g) in [0, 1]", (long long)embed_dim,
                  (long long)num_heads, (double)dropout_p);
        return NULL;
    }
    struct mha *a = calloc(1, sizeof *a);
    if (!a) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_multihead_attention_module: out of host memory");
        return NULL;
    }
    a->E = embed_dim;
    a->heads = num_heads;
    a->dropout = dropout_p;
    cg_module *m = cg_module_create(ctx, &mha_i, a);
    if (!m) {
        free(a);
        return NULL;
    }
    /* As torch.nn.MultiheadAttention.__init__: out_proj (a Linear, its own
     * init) is built first, then _reset_parameters: xavier_uniform_ of
     * in_proj_weight (bound sqrt(6 / (fan_in + fan_out)) = sqrt(6 / (E + 3E))),
     * in_proj_bias and out_proj.bias set to 0. */
    cg_module *out_proj = cg_linear_module(ctx, embed_dim, embed_dim, bias);
    double bound = sqrt(6.0 / (double)(4 * embed_dim));
    cg_tensor *w = cg_tensor_uniform(ctx, CG_SHAPE(3 * embed_dim, embed_dim), (float)-bound,
                                     (float)bound);
    a->in_w = w ? cg_tensor_keep(w) : NULL;
    if (cg_module_add_parameter(m, "in_proj_weight", a->in_w) != CG_OK) goto fail;
    if (bias) {
        cg_tensor *b = cg_tensor_zeros(ctx, CG_SHAPE(3 * embed_dim));
        a->in_b = b ? cg_tensor_keep(b) : NULL;
        if (cg_module_add_parameter(m, "in_proj_bias", a->in_b) != CG_OK) goto fail;
        if (out_proj && cg_tensor_fill(cg_module_parameter(out_proj, "bias"), 0.0f) != CG_OK)
            goto fail;
    }
    a->out_proj = out_proj;
    if (cg_module_add_child(m, "out_proj", out_proj) != CG_OK) goto fail_owned;
    return m;
fail:
    cg_module_free(out_proj);
fail_owned:
    cg_module_free(m);
    return NULL;
}

/* ---- Transformer encoder block (pre-norm) ---------------------------------- */

struct block {
    float dropout;
    bool causal;
    cg_module *attn, *linear1, *linear2, *norm1, *norm2; /* children */
};

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
    struct cg_ptr bp = bc ? cg__ptr(bc) : (struct cg_ptr){NULL, 0};
    if (st == CG_OK && ctx->be->bias_gelu_backward(ctx->bctx, cg__ptr(gx), cg__ptr(xc), bp,
                                                   cg__ptr(gc), rows, cols) != CG_OK)
        st = cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "bias + GELU backward");
    if (bc) cg__tensor_unref(bc);
    if (gc) cg__tensor_unref(gc);
    if (xc) cg__tensor_unref(xc);
    if (st == CG_OK) st = cg__accumulate_grad(x, gx);
    if (st == CG_OK && bias) st = cg__accumulate_grad(bias, gx);
    return st;
}

/* gelu(x + bias) over the last axis of x (bias (F) or NULL) in the
 * backend's bias_gelu kernel, recorded as one op. */
static cg_tensor *bias_gelu(cg_tensor *x, cg_tensor *bias)
{
    if (!x) return NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    const int64_t cols = x->shape[x->ndim - 1], rows = cg__tnumel(x) / cols;
    CG_ASSERT(!bias || (bias->ndim == 1 && bias->shape[0] == cols));
    cg_tensor *xc = cg__contig_ref(x), *bc = xc && bias ? cg__contig_ref(bias) : NULL;
    cg_tensor *out = xc && (bc || !bias) ? cg__tensor_new(ctx, x->ndim, x->shape) : NULL;
    bool ok = out != NULL;
    struct cg_ptr bp = bc ? cg__ptr(bc) : (struct cg_ptr){NULL, 0};
    if (ok && ctx->be->bias_gelu(ctx->bctx, cg__ptr(out), cg__ptr(xc), bp, rows, cols) != CG_OK) {
        cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "bias + GELU");
        ok = false;
    }
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

/* gelu(linear1(x)): the bias add and the GELU in one kernel when the
 * backend has bias_gelu, else Linear then cg_gelu (the same values). */
static cg_tensor *ffn_gelu(cg_module *linear1, cg_tensor *x)
{
    if (!x) return NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    cg_tensor *w = cg_module_parameter(linear1, "weight"); /* (F, E) */
    if (!CG_BACKEND_HAS(ctx->be, bias_gelu) || !CG_BACKEND_HAS(ctx->be, bias_gelu_backward) ||
        x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1]) /* Linear reports it */
        return cg_gelu(cg_module_forward(linear1, x));
    return bias_gelu(cg_matmul(x, cg_transpose(w, 0, 1)), cg_module_parameter(linear1, "bias"));
}

/* torch.nn.TransformerEncoderLayer.forward with norm_first=True
 * (torch/nn/modules/transformer.py):
 *   x = x + self._sa_block(self.norm1(x))   (dropout1 after self_attn)
 *   x = x + self._ff_block(self.norm2(x))   (linear2(dropout(gelu(linear1))),
 *                                            then dropout2)
 * x: (B, T, d_model) -> the same shape. */
static cg_tensor *block_forward(cg_module *m, cg_tensor *x)
{
    struct block *b = cg_module_priv(m);
    bool tr = cg_module_is_training(m);
    struct cg_forward_args causal = {.causal = b->causal};
    cg_tensor *a = cg_module_forward_ex(b->attn, cg_module_forward(b->norm1, x), &causal);
    x = cg_add(x, cg_dropout(a, b->dropout, tr));
    cg_tensor *f = ffn_gelu(b->linear1, cg_module_forward(b->norm2, x));
    f = cg_module_forward(b->linear2, cg_dropout(f, b->dropout, tr));
    return cg_add(x, cg_dropout(f, b->dropout, tr));
}

static void block_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i block_i = {
    .type = "TransformerEncoderLayer",
    .forward = block_forward,
    .free_priv = block_free_priv,
};

cg_module *cg_transformer_block_module(cg_ctx *ctx, int64_t d_model, int64_t nhead,
                                int64_t dim_feedforward, float dropout_p, bool causal)
{
    if (!ctx) return NULL;
    if (dim_feedforward < 1) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_transformer_block_module: dim_feedforward (%lld) must be >= 1",
                  (long long)dim_feedforward);
        return NULL;
    }
    struct block *b = calloc(1, sizeof *b);
    if (!b) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_transformer_block_module: out of host memory");
        return NULL;
    }
    b->dropout = dropout_p;
    b->causal = causal;
    cg_module *m = cg_module_create(ctx, &block_i, b);
    if (!m) {
        free(b);
        return NULL;
    }
    /* Children in TransformerEncoderLayer.__init__'s order (and so its
     * state_dict names and init draws): self_attn, linear1, linear2, norm1,
     * norm2. Each add takes ownership, even of NULL (reported). */
    b->attn = cg_multihead_attention_module(ctx, d_model, nhead, dropout_p, true);
    if (cg_module_add_child(m, "self_attn", b->attn) != CG_OK) goto fail;
    b->linear1 = cg_linear_module(ctx, d_model, dim_feedforward, true);
    if (cg_module_add_child(m, "linear1", b->linear1) != CG_OK) goto fail;
    b->linear2 = cg_linear_module(ctx, dim_feedforward, d_model, true);
    if (cg_module_add_child(m, "linear2", b->linear2) != CG_OK) goto fail;
    b->norm1 = cg_layernorm_module(ctx, CG_SHAPE(d_model));
    if (cg_module_add_child(m, "norm1", b->norm1) != CG_OK) goto fail;
    b->norm2 = cg_layernorm_module(ctx, CG_SHAPE(d_model));
    if (cg_module_add_child(m, "norm2", b->norm2) != CG_OK) goto fail;
    return m;
fail:
    cg_module_free(m);
    return NULL;
}
