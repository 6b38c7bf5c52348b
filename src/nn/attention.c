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
 * The causal softmax and the feed-forward's bias + GELU are ops with a
 * fused kernel and a composed fallback, cg__softmax_causal and
 * cg__bias_gelu (src/core/ops_fused.c).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"

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
    if (causal)
        probs = cg__softmax_causal(s, &a->mask);
    else
        probs = cg_softmax(s, -1);
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

/* gelu(linear1(x)): linear1's matmul, then its bias add and the GELU as
 * one op (cg__bias_gelu: one kernel where the backend has it). */
static cg_tensor *ffn_gelu(cg_module *linear1, cg_tensor *x)
{
    if (!x) return NULL;
    cg_tensor *w = cg_module_parameter(linear1, "weight"); /* (F, E) */
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1]) /* Linear reports it */
        return cg_gelu(cg_module_forward(linear1, x));
    return cg__bias_gelu(cg_matmul(x, cg_transpose(w, 0, 1)), cg_module_parameter(linear1, "bias"));
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
