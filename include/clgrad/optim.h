/*
 * clgrad/optim.h — SGD, Adam / AdamW and RMSProp with torch.optim's update
 * rules and defaults.
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
 * RMSProp: 0 square_avg, 1 momentum buffer, 2 grad_avg), or NULL. */
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

#ifdef __cplusplus
}
#endif
#endif
