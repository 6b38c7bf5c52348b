/*
 * src/nn/loss.c — MSE, cross-entropy and binary cross-entropy with logits.
 *
 * Each loss is a composition of differentiable ops (ops.h): it runs on the
 * context's backend, forward and backward, and autograd supplies the
 * gradient. Only shapes are checked here, on the host.
 */
#include <math.h>

#include "clgrad/nn.h"
#include "core/internal.h"

/* per: the per-element losses, any shape. */
static cg_tensor *reduce(cg_tensor *per, enum cg_reduction r)
{
    switch (r) {
    case CG_REDUCTION_MEAN: return cg_mean_all(per);
    case CG_REDUCTION_SUM: return cg_sum_all(per);
    case CG_REDUCTION_NONE: return per;
    }
    return NULL;
}

static cg_status check_reduction(cg_ctx *ctx, const char *fn, enum cg_reduction r)
{
    if (r == CG_REDUCTION_MEAN || r == CG_REDUCTION_SUM || r == CG_REDUCTION_NONE)
        return CG_OK;
    return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: unknown reduction %d", fn, (int)r);
}

/* pred and target must have identical shapes (PyTorch only warns and then
 * broadcasts, which silently turns (N, 1) vs (N) into an (N, N) loss). */
static cg_status check_same_shape(const char *fn, const char *an, cg_tensor *a,
                                  const char *bn, cg_tensor *b)
{
    if (cg__shape_eq(a, b)) return CG_OK;
    char sa[128], sb[128];
    return cg__error(cg_tensor_ctx(a), CG_STATUS_SHAPE_MISMATCH,
                     "%s: %s %s and %s %s must have the same shape", fn, an,
                     cg_tensor_describe(a, sa, sizeof sa), bn,
                     cg_tensor_describe(b, sb, sizeof sb));
}

/* torch.nn.MSELoss: l = (pred - target)^2, then mean or sum.
 * pred, target: the same shape. */
cg_tensor *cg_mse_loss(cg_tensor *pred, cg_tensor *target, enum cg_reduction reduction)
{
    if (!pred || !target) return NULL;
    if (check_reduction(cg_tensor_ctx(pred), "cg_mse_loss", reduction) != CG_OK ||
        check_same_shape("cg_mse_loss", "pred", pred, "target", target) != CG_OK)
        return NULL;
    cg_tensor *d = cg_sub(pred, target);
    return reduce(cg_mul(d, d), reduction);
}

/* torch.nn.CrossEntropyLoss (class indices, label_smoothing = eps), see the
 * formula in its docs:
 *   l_n = (1 - eps) * (-log p[n, y_n]) + eps / C * sum_c (-log p[n, c])
 * with log p = log_softmax(logits) (max-subtracted, so any logits are finite).
 * logits: (N, C), target: (N) integer class indices as floats. */
cg_tensor *cg_cross_entropy_loss(cg_tensor *logits, cg_tensor *target,
                                 enum cg_reduction reduction, float label_smoothing)
{
    if (!logits || !target) return NULL;
    cg_ctx *ctx = cg_tensor_ctx(logits);
    char sl[128], st[128];
    cg_tensor_describe(logits, sl, sizeof sl);
    cg_tensor_describe(target, st, sizeof st);
    if (check_reduction(ctx, "cg_cross_entropy_loss", reduction) != CG_OK) return NULL;
    if (cg_tensor_ndim(logits) != 2) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "cg_cross_entropy_loss: logits %s must be (N, C)", sl);
        return NULL;
    }
    if (cg_tensor_ndim(target) != 1 || cg_tensor_dim(target, 0) != cg_tensor_dim(logits, 0)) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "cg_cross_entropy_loss: target %s must be (N) = (%lld) class indices "
                  "for logits %s", st, (long long)cg_tensor_dim(logits, 0), sl);
        return NULL;
    }
    if (!(label_smoothing >= 0.0f && label_smoothing <= 1.0f)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_cross_entropy_loss: label_smoothing %g must be in [0, 1]",
                  (double)label_smoothing);
        return NULL;
    }
    cg_tensor *logp = cg_log_softmax(logits, -1);                /* (N, C) */
    cg_tensor *nll = cg_neg(cg_pick(logp, target));              /* (N)    */
    cg_tensor *per = nll;
    if (label_smoothing > 0.0f) {
        cg_tensor *smooth = cg_neg(cg_mean(logp, 1, false));     /* (N)    */
        per = cg_add(cg_mul_scalar(nll, 1.0f - label_smoothing),
                     cg_mul_scalar(smooth, label_smoothing));
    }
    return reduce(per, reduction);
}

struct cg_ce_options cg_ce_options_default(void)
{
    return (struct cg_ce_options){.reduction = CG_REDUCTION_MEAN, .ignore_index = -100};
}

/* (N, C, d1..dk) logits -> (N*d1*..*dk, C) rows, classes last. */
static cg_tensor *ce_rows(cg_tensor *logits)
{
    int nd = cg_tensor_ndim(logits);
    if (nd == 2) return logits;
    int64_t perm[CG_MAX_DIMS], C = cg_tensor_dim(logits, 1);
    perm[0] = 0;
    for (int d = 2; d < nd; d++) perm[d - 1] = d;
    perm[nd - 1] = 1;
    cg_tensor *moved = cg_contiguous(cg_permute(logits, nd, perm));
    return cg_reshape(moved, CG_SHAPE(cg_tensor_numel(logits) / C, C));
}

/* Checks the shapes of cg_cross_entropy_loss_ex's arguments. */
static cg_status ce_check(cg_ctx *ctx, cg_tensor *logits, cg_tensor *target,
                          const struct cg_ce_options *o)
{
    const char *fn = "cg_cross_entropy_loss_ex";
    char sl[128], st[128];
    cg_tensor_describe(logits, sl, sizeof sl);
    cg_tensor_describe(target, st, sizeof st);
    int nd = cg_tensor_ndim(logits);
    if (check_reduction(ctx, fn, o->reduction) != CG_OK) return CG_STATUS_INVALID_ARGUMENT;
    if (nd < 2 || cg_tensor_dim(logits, 1) < 1)
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "%s: logits %s must be (N, C) or (N, C, d1, ...)", fn, sl);
    bool ok = cg_tensor_ndim(target) == nd - 1 && cg_tensor_dim(target, 0) == cg_tensor_dim(logits, 0);
    for (int d = 2; ok && d < nd; d++) ok = cg_tensor_dim(target, d - 1) == cg_tensor_dim(logits, d);
    if (!ok)
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "%s: target %s must be logits %s without the class dim 1", fn, st, sl);
    if (!(o->label_smoothing >= 0.0f && o->label_smoothing <= 1.0f))
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s: label_smoothing %g must be in [0, 1]", fn, (double)o->label_smoothing);
    if (o->weight && (cg_tensor_ndim(o->weight) != 1 ||
                      cg_tensor_dim(o->weight, 0) != cg_tensor_dim(logits, 1))) {
        char sw[128];
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "%s: weight %s must be (C) = (%lld)", fn,
                         cg_tensor_describe(o->weight, sw, sizeof sw),
                         (long long)cg_tensor_dim(logits, 1));
    }
    return CG_OK;
}

/* torch.nn.CrossEntropyLoss with weight, ignore_index, label_smoothing and
 * (N, C, d...) inputs; the formula is in nn.h (PyTorch's docs, and its
 * cross_entropy_loss_label_smoothing for how the smoothing term is weighted
 * and masked). Built from differentiable ops; ignored targets are replaced
 * by class 0 before the pick and masked out after it. */
cg_tensor *cg_cross_entropy_loss_ex(cg_tensor *logits, cg_tensor *target,
                                    const struct cg_ce_options *opts)
{
    if (!logits || !target) return NULL;
    cg_ctx *ctx = cg_tensor_ctx(logits);
    struct cg_ce_options o = opts ? *opts : cg_ce_options_default();
    if (ce_check(ctx, logits, target, &o) != CG_OK) return NULL;
    int64_t C = cg_tensor_dim(logits, 1), M = cg_tensor_numel(target);
    cg_tensor *logp = cg_log_softmax(ce_rows(logits), -1);            /* (M, C) */
    cg_tensor *y = cg_reshape(target, CG_SHAPE(M));                 /* (M)    */
    cg_tensor *valid = NULL;                                           /* (M) 0/1 */
    if (o.use_ignore_index) {
        cg_tensor *ign = cg_tensor_full(ctx, CG_SHAPE(1), (float)o.ignore_index);
        valid = cg_affine(cg_eq(y, ign), -1.0f, 1.0f);
        y = cg_mul(y, valid);
    }
    cg_tensor *per = cg_neg(cg_pick(logp, y));                        /* (M)    */
    cg_tensor *wy = NULL;                                              /* (M)    */
    cg_tensor *w_row = NULL;                                           /* (1, C) */
    if (o.weight) {
        w_row = cg_reshape(o.weight, CG_SHAPE(1, C));
        wy = cg_reshape(cg_index_rows(cg_reshape(o.weight, CG_SHAPE(C, 1)), y), CG_SHAPE(M));
        per = cg_mul(per, wy);
    }
    if (o.label_smoothing > 0.0f) {
        cg_tensor *wl = w_row ? cg_mul(logp, w_row) : logp;
        cg_tensor *smooth = cg_neg(cg_sum(wl, 1, false));            /* (M)    */
        per = cg_add(cg_mul_scalar(per, 1.0f - o.label_smoothing),
                     cg_mul_scalar(smooth, o.label_smoothing / (float)C));
    }
    if (valid) {
        per = cg_mul(per, valid);
        wy = wy ? cg_mul(wy, valid) : valid;
    }
    switch (o.reduction) {
    case CG_REDUCTION_NONE:
        return cg_reshape(per, cg_tensor_ndim(target), cg_tensor_shape(target));
    case CG_REDUCTION_SUM:
        return cg_sum_all(per);
    case CG_REDUCTION_MEAN:
        return wy ? cg_div(cg_sum_all(per), cg_sum_all(wy)) : cg_mean_all(per);
    }
    return NULL;
}

/* torch.nn.BCEWithLogitsLoss, in the stable form of its implementation:
 *   l = max(x, 0) - x * y + log(1 + exp(-|x|))
 * exp only ever sees -|x| <= 0, so no overflow for any x. max(x, 0) is
 * written (x + |x|) / 2: with d|x|/dx = 0 at x = 0 this gives the exact
 * gradient sigmoid(0) - y = 1/2 - y there (relu's would give -y).
 * logits, target: the same shape. */
cg_tensor *cg_bce_with_logits_loss(cg_tensor *logits, cg_tensor *target,
                                   enum cg_reduction reduction)
{
    if (!logits || !target) return NULL;
    if (check_reduction(cg_tensor_ctx(logits), "cg_bce_with_logits_loss", reduction) != CG_OK ||
        check_same_shape("cg_bce_with_logits_loss", "logits", logits, "target", target) != CG_OK)
        return NULL;
    cg_tensor *ax = cg_abs(logits);
    cg_tensor *pos = cg_mul_scalar(cg_add(logits, ax), 0.5f);            /* max(x, 0) */
    cg_tensor *xy = cg_mul(logits, target);
    cg_tensor *soft = cg_log(cg_add_scalar(cg_exp(cg_neg(ax)), 1.0f));   /* log(1+e^-|x|) */
    return reduce(cg_add(cg_sub(pos, xy), soft), reduction);
}
