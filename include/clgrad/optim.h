/*
 * clgrad/optim.h — SGD, Adam / AdamW and RMSProp with torch.optim's update
 * rules and defaults, and learning-rate schedules (StepLR,
 * CosineAnnealingLR, LinearLR warm-up) as closed forms.
 *
 * An optimizer holds parameter groups (each a list of persistent tensors with
 * its own hyper-parameters, as torch.optim's param_groups) and per-parameter
 * state: a step count and the moment buffers, persistent tensors on the
 * device created (zero) at a parameter's first update. cg_optim_step updates
 * every parameter that has a gradient with ONE fused backend call per
 * parameter tensor; a parameter whose gradient is NULL (never reached by
 * backward, or cleared) is skipped, as PyTorch skips p.grad is None.
 *
 *     cg_optim *opt = cg_adam(model, 1e-3f);          // Adam(lr=1e-3)
 *     ... cg_optim_zero_grad(opt); cg_backward(loss); cg_optim_step(opt);
 *     cg_optim_free(opt);
 *
 * Other options: start from PyTorch's defaults and change what differs.
 *
 *     struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_SGD);
 *     o.lr = 0.1f; o.momentum = 0.9f; o.nesterov = true;
 *     cg_optim *sgd = cg_optim_create(model, &o);
 *
 *     o = cg_optim_defaults(CG_OPTIM_ADAM);           // AdamW(lr=1e-3,
 *     o.decoupled_weight_decay = true;                //   weight_decay=1e-2)
 *     o.weight_decay = 1e-2f;                         // (= cg_adamw(model, 1e-3f))
 *
 * Groups: cg_optim_create_params(ctx, params, n, &o) for a plain array,
 * then cg_optim_add_group(opt, more, m, &o2) for tensors with other options
 * (same optimizer kind).
 *
 * Ownership: the optimizer borrows its parameters (they must outlive it) and
 * owns its state; cg_optim_free frees the state.
 */
#ifndef CLGRAD_OPTIM_H
#define CLGRAD_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "clgrad/backend.h"
#include "clgrad/nn.h"
#include "clgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_optim cg_optim;

/* Hyper-parameters of a group. The formulas are torch.optim's (see
 * src/optim/sgd.c, adam.c, rmsprop.c for each "algorithm" box). */
struct cg_optim_options {
    enum cg_optim_kind kind;        /* CG_OPTIM_SGD, _ADAM, _RMSPROP (backend.h) */
    float lr;
    float weight_decay;             /* L2 added to the gradient, or decoupled */
    float momentum;                 /* SGD, RMSProp                          */
    float dampening;                /* SGD                                   */
    bool nesterov;                  /* SGD                                   */
    float beta1, beta2;             /* Adam                                  */
    float eps;                      /* Adam, RMSProp                         */
    bool decoupled_weight_decay;    /* Adam: true is AdamW                   */
    float alpha;                    /* RMSProp smoothing constant            */
    bool centered;                  /* RMSProp                               */
};

/* PyTorch's defaults for kind:
 *   SGD:     lr 1e-3, momentum 0, dampening 0, nesterov false, weight_decay 0
 *   Adam:    lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0
 *   RMSProp: lr 1e-2, alpha 0.99, eps 1e-8, momentum 0, centered false,
 *            weight_decay 0 */
CG_API struct cg_optim_options cg_optim_defaults(enum cg_optim_kind kind);

/* An optimizer over all parameters of model (one group). Returns NULL on
 * bad options (message in cg_last_error). */
CG_API cg_optim *cg_optim_create(cg_module *model, const struct cg_optim_options *o);
/* An optimizer over n persistent tensors (one group); n may be 0. */
CG_API cg_optim *cg_optim_create_params(cg_ctx *ctx, cg_tensor *const *params, int n,
                                        const struct cg_optim_options *o);
/* Adds a parameter group with its own options (the same kind). */
CG_API cg_status cg_optim_add_group(cg_optim *opt, cg_tensor *const *params, int n,
                                    const struct cg_optim_options *o);
CG_API void cg_optim_free(cg_optim *opt);

/* Shorthands with PyTorch's defaults and the given learning rate. */
CG_API cg_optim *cg_sgd(cg_module *model, float lr);
CG_API cg_optim *cg_adam(cg_module *model, float lr);
CG_API cg_optim *cg_adamw(cg_module *model, float lr);   /* weight_decay 1e-2 */
CG_API cg_optim *cg_rmsprop(cg_module *model, float lr);

/* Clears every parameter's gradient (sets it to none, as PyTorch's default
 * zero_grad(set_to_none=True)); the next backward writes it afresh. */
CG_API void cg_optim_zero_grad(cg_optim *opt);
/* One update of every parameter that has a gradient. */
CG_API cg_status cg_optim_step(cg_optim *opt);

/* Learning rate of every group (for schedules), or of group 0. */
CG_API void cg_optim_set_lr(cg_optim *opt, float lr);
CG_API float cg_optim_lr(const cg_optim *opt);
CG_API int cg_optim_num_groups(const cg_optim *opt);
/* The options of group g (NULL if out of range); editable between steps. */
CG_API struct cg_optim_options *cg_optim_group_options(cg_optim *opt, int g);
/* The number of steps taken by param (0 before its first update, or if the
 * optimizer does not hold it). */
CG_API int64_t cg_optim_param_steps(const cg_optim *opt, const cg_tensor *param);
/* State buffer i of param (SGD: 0 momentum; Adam: 0 exp_avg, 1 exp_avg_sq;
 * RMSProp: 0 square_avg, 1 momentum buffer, 2 grad_avg), or NULL. It has
 * param's shape, except under ZeRO-1 sharding (cg_dist_shard_optimizer in
 * dist.h): there it is a 1-D tensor of the elements this rank owns. */
CG_API cg_tensor *cg_optim_param_state(const cg_optim *opt, const cg_tensor *param, int i);
/* Restoring state (checkpoints, io.h): sets param's step count, and state
 * buffer i from host data (numel(param) floats, row-major; created if
 * absent; data NULL drops the buffer, so the next step starts it at zero).
 * param must be held by opt. */
CG_API cg_status cg_optim_set_param_steps(cg_optim *opt, const cg_tensor *param, int64_t steps);
CG_API cg_status cg_optim_set_param_state(cg_optim *opt, const cg_tensor *param, int i,
                                          const float *data);

/* The context, and the parameters across all groups in order (i from 0 to
 * cg_optim_num_params - 1; NULL outside that range). */
CG_API cg_ctx *cg_optim_ctx(const cg_optim *opt);
CG_API int cg_optim_num_params(const cg_optim *opt);
CG_API cg_tensor *cg_optim_param(const cg_optim *opt, int i);

/* torch.nn.utils.clip_grad_norm_: scales every gradient by
 * min(1, max_norm / (total_norm + 1e-6)), total_norm the 2-norm of all
 * gradients together. Runs on the device; returns total_norm (before
 * clipping) as a 0-d tensor in the current scope, or NULL on failure. */
CG_API cg_tensor *cg_optim_clip_grad_norm(cg_optim *opt, float max_norm);

/* ---- learning-rate schedules ------------------------------------------
 * torch.optim.lr_scheduler's schedulers as closed forms of the scheduler
 * step t (PyTorch's last_epoch: 0 before the first scheduler.step()). The
 * caller chooses what t counts (optimizer steps or epochs) and sets the
 * rate itself:
 *
 *     struct cg_lr_schedule cos = cg_lr_cosine(total_steps, 0.0);
 *     for (int64_t t = 0; t < total_steps; t++) {
 *         double lr;
 *         cg_lr_schedule_at(&cos, 1e-3, t, &lr);
 *         cg_optim_set_lr(opt, (float)lr);
 *         ... forward, backward, cg_optim_step(opt);
 *     }
 *
 * Two schedules applied at the same t, the first's rate the second's base
 * (cg_lr_schedule_at(&warm, lr_of_cosine, t, &lr)), are PyTorch's
 * ChainedScheduler([LinearLR, CosineAnnealingLR]) when each scales the rate
 * by a factor (StepLR, LinearLR, CosineAnnealingLR with eta_min 0). */
enum cg_lr_kind {
    CG_LR_CONSTANT,   /* base_lr                                              */
    CG_LR_STEP,       /* StepLR: base_lr * gamma^floor(t / step_size)         */
    CG_LR_COSINE,     /* CosineAnnealingLR: eta_min + (base_lr - eta_min)
                       *   * (1 + cos(pi * t / t_max)) / 2  (a cosine that goes
                       *   on rising after t_max, as PyTorch's does)          */
    CG_LR_LINEAR      /* LinearLR: base_lr * (start_factor + (end_factor -
                       *   start_factor) * min(t, total_iters) / total_iters) */
};
struct cg_lr_schedule {
    enum cg_lr_kind kind;
    int64_t step_size;        /* STEP: scheduler steps between decays (>= 1)   */
    double gamma;             /* STEP: decay factor                            */
    int64_t t_max;            /* COSINE: steps from base_lr down to eta_min    */
    double eta_min;           /* COSINE                                        */
    double start_factor;      /* LINEAR: factor at t = 0 (0 < f <= 1)          */
    double end_factor;        /* LINEAR: factor from t = total_iters on (0..1) */
    int64_t total_iters;      /* LINEAR: steps of the ramp (>= 0; 0: end_factor) */
};
/* Schedules with PyTorch's argument names (nothing is checked until used). */
CG_API struct cg_lr_schedule cg_lr_constant(void);
CG_API struct cg_lr_schedule cg_lr_step(int64_t step_size, double gamma);
CG_API struct cg_lr_schedule cg_lr_cosine(int64_t t_max, double eta_min);
CG_API struct cg_lr_schedule cg_lr_linear(double start_factor, double end_factor,
                                          int64_t total_iters);
/* A linear warm-up over n steps: (t + 1) / n * base_lr for t < n, then base_lr
 * (LinearLR(start_factor=1/n, total_iters=n-1)); n = 0 or 1 is no warm-up. */
CG_API struct cg_lr_schedule cg_lr_warmup(int64_t n);
/* *lr = the rate at scheduler step t >= 0. CG_STATUS_INVALID_ARGUMENT (with
 * a message naming the field) for a schedule outside the ranges above, a
 * negative t or a negative or non-finite base_lr. */
CG_API cg_status cg_lr_schedule_at(const struct cg_lr_schedule *s, double base_lr, int64_t t,
                                   double *lr);

#ifdef __cplusplus
}
#endif
#endif
