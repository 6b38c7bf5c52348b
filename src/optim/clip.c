/*
 * src/optim/clip.c — gradient clipping by global norm, on the device.
 *
 * torch.nn.utils.clip_grad_norm_(parameters, max_norm):
 *   total_norm = || (||g_1||_2, ..., ||g_n||_2) ||_2
 *   clip_coef  = max_norm / (total_norm + 1e-6), clamped to at most 1
 *   g_i       *= clip_coef
 * The norm and the coefficient stay 0-d tensors on the device, so clipping
 * adds no host round trip; read the returned norm only if you need it.
 * With ZeRO-1 sharding (dist.h) a rank holds the averaged gradient of its
 * own elements only: it sums their squares and the sums are added over the
 * ranks, the same total, so the norm and the clipping stay exact.
 */
#include <math.h>

#include "optim-impl.h"
#include "dist/dist-impl.h"

CG_API cg_tensor *cg_optim_clip_grad_norm(cg_optim *opt, float max_norm)
{
    cg_ctx *ctx = cg_optim_ctx(opt);
    if (!(max_norm > 0) || !isfinite(max_norm)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_optim_clip_grad_norm: max_norm %g is not a positive number", (double)max_norm);
        return NULL;
    }
    bool grad = cg_set_grad_enabled(ctx, false);
    cg_tensor *sumsq = cg_tensor_zeros(ctx, 0, NULL);
    int n = cg_optim_num_params(opt);
    for (int i = 0; i < n; i++) {
        cg_tensor *p = cg_optim_param(opt, i), *g = cg_tensor_grad(p);
        int64_t lo, hi;
        if (!g) continue;
        if (cg__optim_range(opt, p, &lo, &hi)) { /* sharded: this rank's elements */
            if (lo == hi) continue;
            g = cg_slice(cg_view(g, 1, (int64_t[]){cg_tensor_numel(g)}), 0, lo, hi, 1);
        }
        sumsq = cg_add(sumsq, cg_sum_all(cg_mul(g, g)));
    }
    if (cg__optim_sharded(opt)) sumsq = cg__dist_sum(sumsq);
    cg_tensor *norm = cg_sqrt(sumsq);
    cg_tensor *coef = cg_clamp(cg_div(cg_tensor_full(ctx, 0, NULL, max_norm),
                                      cg_add_scalar(norm, 1e-6f)),
                               -INFINITY, 1.0f);
    for (int i = 0; i < n && coef; i++) {
        cg_tensor *p = cg_optim_param(opt, i), *g = cg_tensor_grad(p);
        int64_t lo, hi;
        if (cg__optim_range(opt, p, &lo, &hi) && lo == hi) continue; /* not this rank's */
        if (g && cg_tensor_copy(g, cg_mul(g, coef)) != CG_OK) norm = NULL;
    }
    cg_set_grad_enabled(ctx, grad);
    return coef ? norm : NULL;
}
