/*
 * src/nn/norm.c — batch normalisation over NCHW channels
 * (torch.nn.functional.batch_norm, torch.nn.BatchNorm2d).
 *
 * Composed from differentiable ops (ops.h), so autograd derives the
 * backward, including the terms through the batch mean and variance. With
 * x seen as (N, C, L), L = H * W, and statistics per channel c over the
 * n = N * L values of (N, L):
 *     training:  mu = mean(x), var = mean((x - mu)^2)        (biased)
 *     eval:      mu = running_mean, var = running_var
 *     y = (x - mu) / sqrt(var + eps) * weight + bias
 * In training the running statistics are updated in place, without
 * recording, as torch.nn.BatchNorm2d documents:
 *     running_mean = (1 - momentum) running_mean + momentum mu
 *     running_var  = (1 - momentum) running_var  + momentum var * n / (n - 1)
 * (the unbiased variance for the running estimate, the biased one to
 * normalise; "Batch Normalization", Ioffe & Szegedy 2015, Algorithm 1-2).
 */
#include <inttypes.h>
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"
#include "dist/dist-impl.h"

#define BN_DEFAULT_EPS 1e-5f
#define BN_DEFAULT_MOMENTUM 0.1f

/* A (C) tensor seen as (1, C, 1), for broadcasting over (N, C, L). */
static cg_tensor *per_channel(cg_tensor *t)
{
    return t ? cg_reshape(t, CG_SHAPE(1, -1, 1)) : NULL;
}

/* Mean over dims 0 and 2 of (N, C, L) -> (1, C, 1). Every (n) row holds L
 * values, so the mean of the per-row means is the mean over all n * L. */
static cg_tensor *channel_mean(cg_tensor *x3)
{
    return cg_mean(cg_mean(x3, 2, true), 0, true);
}

static cg_status check_vec(cg_ctx *ctx, const char *what, const cg_tensor *t, int64_t c,
                           const char *sx)
{
    if (!t || (t->ndim == 1 && t->shape[0] == c)) return CG_OK;
    char st[128];
    return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                     "cg_batch_norm2d: %s %s must be (%" PRId64 ") for input %s", what,
                     CG_SHAPE_STR(t, st), c, sx);
}

/* r = (1 - momentum) r + momentum s, in place; s: (1, C, 1). Not recorded. */
static cg_status running_update(cg_tensor *r, cg_tensor *s, float momentum)
{
    cg_tensor *nr = cg_add(cg_mul_scalar(r, 1.0f - momentum),
                           cg_mul_scalar(cg_reshape(s, CG_SHAPE(-1)), momentum));
    return nr ? cg_tensor_copy(r, nr) : cg_ctx_status(cg__ctx_of(r));
}

CG_API cg_tensor *cg_batch_norm2d(cg_tensor *x, cg_tensor *running_mean, cg_tensor *running_var,
                                  cg_tensor *weight, cg_tensor *bias, bool training,
                                  float momentum, float eps)
{
    if (!x) return NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    char sx[128];
    CG_SHAPE_STR(x, sx);
    if (x->ndim != 4) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "cg_batch_norm2d: input %s must be (N, C, H, W)", sx);
        return NULL;
    }
    int64_t c = x->shape[1], n = x->shape[0] * x->shape[2] * x->shape[3];
    if (check_vec(ctx, "running_mean", running_mean, c, sx) ||
        check_vec(ctx, "running_var", running_var, c, sx) ||
        check_vec(ctx, "weight", weight, c, sx) || check_vec(ctx, "bias", bias, c, sx))
        return NULL;
    if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_batch_norm2d: eps (%g) must be > 0 and momentum (%g) in [0, 1]",
                  (double)eps, (double)momentum);
        return NULL;
    }
    if (!training && (!running_mean || !running_var)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_batch_norm2d: evaluation needs running_mean and running_var");
        return NULL;
    }
    if (training && n <= 1) {
        /* As PyTorch: the batch variance of one value is undefined. */
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_batch_norm2d: expected more than 1 value per channel when training, "
                  "got input %s", sx);
        return NULL;
    }
    int token = cg__compose_begin(ctx);
    cg_tensor *x3 = cg_reshape(x, CG_SHAPE(x->shape[0], c, -1));      /* (N, C, L) */
    cg_tensor *mu, *var;                                                 /* (1, C, 1) */
    cg_tensor *xc;
    int world = cg__dist_world(ctx);
    if (training && world > 1) {
        /* SyncBatchNorm (torch.nn.SyncBatchNorm): per-channel sums over
         * every rank's batch, all-reduced; the backward through
         * cg__dist_sum sums the gradients of the sums the same way. */
        float inv = (float)(1.0 / ((double)n * world));
        mu = cg_mul_scalar(cg__dist_sum(cg_sum(cg_sum(x3, 2, true), 0, true)), inv);
        xc = cg_sub(x3, mu);
        var = cg_mul_scalar(cg__dist_sum(cg_sum(cg_sum(cg_mul(xc, xc), 2, true), 0, true)), inv);
        n *= world;
    } else if (training) {
        mu = channel_mean(x3);
        xc = cg_sub(x3, mu);
        var = channel_mean(cg_mul(xc, xc));
    } else {
        mu = per_channel(running_mean);
        var = per_channel(running_var);
        xc = cg_sub(x3, mu);
    }
    cg_tensor *y = cg_mul(xc, cg_pow_scalar(cg_add_scalar(var, eps), -0.5f));
    if (weight) y = cg_mul(y, per_channel(weight));
    if (bias) y = cg_add(y, per_channel(bias));
    y = cg_reshape(y, x->ndim, x->shape);
    if (y && training && running_mean && running_var) {
        bool was = cg_set_grad_enabled(ctx, false);
        cg_status st = running_update(running_mean, cg_detach(mu), momentum);
        if (st == CG_OK)
            st = running_update(running_var,
                                cg_mul_scalar(cg_detach(var), (float)((double)n / (double)(n - 1))),
                                momentum);
        cg_set_grad_enabled(ctx, was);
        if (st != CG_OK) y = NULL;
    }
    return cg__compose_end(ctx, token, y);
}

/* ---- the module (torch.nn.BatchNorm2d) ---------------------------------- */

struct batch_norm {
    int64_t c;
    float eps, momentum;
    cg_tensor *weight, *bias;                       /* parameters (C)     */
    cg_tensor *running_mean, *running_var;          /* buffers (C)        */
    cg_tensor *num_batches_tracked;                 /* buffer, 0-d        */
};

/* x: (N, C, H, W) -> the same shape */
static cg_tensor *batch_norm_forward(cg_module *m, cg_tensor *x)
{
    struct batch_norm *b = cg_module_priv(m);
    cg_ctx *ctx = cg_module_ctx(m);
    if (cg_tensor_ndim(x) != 4 || cg_tensor_dim(x, 1) != b->c) {
        char s[128];
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "BatchNorm2d(%" PRId64 "): input %s must be (N, %" PRId64 ", H, W)", b->c,
                  cg_tensor_describe(x, s, sizeof s), b->c);
        return NULL;
    }
    bool training = cg_module_is_training(m);
    cg_tensor *y = cg_batch_norm2d(x, b->running_mean, b->running_var, b->weight, b->bias,
                                   training, b->momentum, b->eps);
    if (y && training) {
        /* num_batches_tracked += 1 (a float holding an exact count). */
        int token = cg__compose_begin(ctx);
        bool was = cg_set_grad_enabled(ctx, false);
        cg_status st = cg_tensor_copy(b->num_batches_tracked,
                                      cg_add_scalar(b->num_batches_tracked, 1.0f));
        cg_set_grad_enabled(ctx, was);
        cg__compose_end(ctx, token, NULL);
        if (st != CG_OK) return NULL;
    }
    return y;
}

static void batch_norm_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i batch_norm_i = {
    .type = "BatchNorm2d",
    .forward = batch_norm_forward,
    .free_priv = batch_norm_free_priv,
};

static cg_tensor *kept_full(cg_ctx *ctx, int ndim, const int64_t *shape, float v)
{
    cg_tensor *t = cg_tensor_full(ctx, ndim, shape, v);
    return t ? cg_tensor_keep(t) : NULL;
}

CG_API cg_module *cg_batch_norm2d_module(cg_ctx *ctx, int64_t num_features, float eps,
                                         float momentum)
{
    if (!ctx) return NULL;
    if (num_features < 1 || momentum > 1.0f || eps != eps || momentum != momentum) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_batch_norm2d_module: num_features (%" PRId64 ") must be >= 1 and "
                  "momentum (%g) at most 1", num_features, (double)momentum);
        return NULL;
    }
    struct batch_norm *b = calloc(1, sizeof *b);
    if (!b) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_batch_norm2d_module: out of host memory");
        return NULL;
    }
    b->c = num_features;
    b->eps = eps > 0.0f ? eps : BN_DEFAULT_EPS;
    b->momentum = momentum > 0.0f ? momentum : BN_DEFAULT_MOMENTUM;
    cg_module *m = cg_module_create(ctx, &batch_norm_i, b);
    if (!m) {
        free(b);
        return NULL;
    }
    /* torch.nn.modules.batchnorm._NormBase.reset_parameters: weight ones,
     * bias zeros; reset_running_stats: mean zeros, var ones, count 0. */
    int64_t c = num_features;
    b->weight = kept_full(ctx, CG_SHAPE(c), 1.0f);
    if (cg_module_add_parameter(m, "weight", b->weight) != CG_OK) goto fail;
    b->bias = kept_full(ctx, CG_SHAPE(c), 0.0f);
    if (cg_module_add_parameter(m, "bias", b->bias) != CG_OK) goto fail;
    b->running_mean = kept_full(ctx, CG_SHAPE(c), 0.0f);
    if (cg_module_add_buffer(m, "running_mean", b->running_mean) != CG_OK) goto fail;
    b->running_var = kept_full(ctx, CG_SHAPE(c), 1.0f);
    if (cg_module_add_buffer(m, "running_var", b->running_var) != CG_OK) goto fail;
    b->num_batches_tracked = kept_full(ctx, 0, (const int64_t[]){1}, 0.0f);
    if (cg_module_add_buffer(m, "num_batches_tracked", b->num_batches_tracked) != CG_OK) goto fail;
    return m;
fail:
    cg_module_free(m);
    return NULL;
}
