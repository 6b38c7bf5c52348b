/*
 * src/optim/schedule.c — learning-rate schedules (optim.h), the closed
 * forms of torch.optim.lr_scheduler (each class's _get_closed_form_lr in
 * PyTorch 1.13 / 2.x, torch/optim/lr_scheduler.py):
 *   StepLR:            base_lr * gamma ** (last_epoch // step_size)
 *   CosineAnnealingLR: eta_min + (base_lr - eta_min)
 *                        * (1 + cos(pi * last_epoch / T_max)) / 2
 *   LinearLR:          base_lr * (start_factor + (end_factor - start_factor)
 *                        * min(total_iters, last_epoch) / total_iters)
 * PyTorch's step() uses recursive forms of the same curves; tests/test_schedule.c
 * checks these against the rates PyTorch's schedulers actually set.
 */
#include <math.h>

#include "clgrad/optim.h"
#include "core/internal.h"

CG_API struct cg_lr_schedule cg_lr_constant(void)
{
    return (struct cg_lr_schedule){.kind = CG_LR_CONSTANT};
}

CG_API struct cg_lr_schedule cg_lr_step(int64_t step_size, double gamma)
{
    return (struct cg_lr_schedule){.kind = CG_LR_STEP, .step_size = step_size, .gamma = gamma};
}

CG_API struct cg_lr_schedule cg_lr_cosine(int64_t t_max, double eta_min)
{
    return (struct cg_lr_schedule){.kind = CG_LR_COSINE, .t_max = t_max, .eta_min = eta_min};
}

CG_API struct cg_lr_schedule cg_lr_linear(double start_factor, double end_factor,
                                          int64_t total_iters)
{
    return (struct cg_lr_schedule){.kind = CG_LR_LINEAR, .start_factor = start_factor,
                                   .end_factor = end_factor, .total_iters = total_iters};
}

CG_API struct cg_lr_schedule cg_lr_warmup(int64_t n)
{
    if (n <= 1) return cg_lr_constant();
    return cg_lr_linear(1.0 / (double)n, 1.0, n - 1);
}

static cg_status bad(const char *what, double v)
{
    return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_lr_schedule_at: %s %g", what, v);
}

CG_API cg_status cg_lr_schedule_at(const struct cg_lr_schedule *s, double base_lr, int64_t t,
                                   double *lr)
{
    if (!s || !lr)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_lr_schedule_at: NULL argument");
    if (!(base_lr >= 0) || !isfinite(base_lr))
        return bad("base_lr must be finite and >= 0, not", base_lr);
    if (t < 0) return bad("the step t must be >= 0, not", (double)t);
    switch (s->kind) {
    case CG_LR_CONSTANT:
        *lr = base_lr;
        return CG_OK;
    case CG_LR_STEP:
        if (s->step_size < 1) return bad("StepLR step_size must be >= 1, not", (double)s->step_size);
        if (!(s->gamma >= 0) || !isfinite(s->gamma))
            return bad("StepLR gamma must be finite and >= 0, not", s->gamma);
        *lr = base_lr * pow(s->gamma, (double)(t / s->step_size));
        return CG_OK;
    case CG_LR_COSINE:
        if (s->t_max < 1) return bad("CosineAnnealingLR t_max must be >= 1, not", (double)s->t_max);
        if (!(s->eta_min >= 0) || !isfinite(s->eta_min))
            return bad("CosineAnnealingLR eta_min must be finite and >= 0, not", s->eta_min);
        *lr = s->eta_min + (base_lr - s->eta_min) *
                               (1.0 + cos(M_PI * (double)t / (double)s->t_max)) / 2.0;
        return CG_OK;
    case CG_LR_LINEAR: {
        /* PyTorch's bounds: 0 < start_factor <= 1, 0 <= end_factor <= 1 */
        if (!(s->start_factor > 0 && s->start_factor <= 1))
            return bad("LinearLR start_factor must be in (0, 1], not", s->start_factor);
        if (!(s->end_factor >= 0 && s->end_factor <= 1))
            return bad("LinearLR end_factor must be in [0, 1], not", s->end_factor);
        if (s->total_iters < 0)
            return bad("LinearLR total_iters must be >= 0, not", (double)s->total_iters);
        double f = s->end_factor;
        if (t < s->total_iters)
            f = s->start_factor + (s->end_factor - s->start_factor) * (double)t /
                                      (double)s->total_iters;
        *lr = base_lr * f;
        return CG_OK;
    }
    }
    return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_lr_schedule_at: unknown kind %d",
                     (int)s->kind);
}
