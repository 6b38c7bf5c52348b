/*
 * clgrad/nn.h — modules (Linear, activations, Sequential) and losses.
 *
 * A module is a small object with a forward function, named parameters
 * (persistent tensors that require grad) and named child modules, as
 * torch.nn.Module. Sequential names its children "0", "1", ... so that
 * parameters enumerate exactly as PyTorch's state_dict names them:
 * "0.weight", "0.bias", "2.weight", ... (activations take an index but have
 * no parameters). Losses are compositions of differentiable ops (ops.h), so
 * they run, forward and backward, on the context's backend.
 *
 * The PyTorch seed program, in C:
 *
 *     cg_module *model = cg_sequential(ctx, 5,
 *         cg_linear(ctx, 10, 64, true), cg_relu_module(ctx),
 *         cg_linear(ctx, 64, 64, true), cg_relu_module(ctx),
 *         cg_linear(ctx, 64, 1, true));
 *     cg_optim *opt = cg_adam(model, 1e-3f);                  // optim.h
 *     for (int epoch = 0; epoch < 10; epoch++) {
 *         cg_scope_begin(ctx);                                // owns the step
 *         cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(32, 10), xs);
 *         cg_tensor *y = cg_tensor_from_host(ctx, CG_SHAPE(32, 1), ys);
 *         cg_tensor *loss = cg_mse_loss(cg_module_forward(model, x), y,
 *                                       CG_REDUCTION_MEAN);
 *         cg_optim_zero_grad(opt);
 *         cg_backward(loss);
 *         cg_optim_step(opt);
 *         float l; cg_tensor_item(loss, &l);
 *         printf("Epoch %02d | Loss: %.4f\n", epoch + 1, l);
 *         cg_scope_end(ctx);                                  // frees x..loss
 *     }
 *     cg_optim_free(opt);
 *     cg_module_free(model);
 *
 * Ownership. A constructor returns a module the caller owns (free it with
 * cg_module_free); cg_sequential and cg_module_add_child take ownership of
 * their children, cg_module_add_parameter of its tensor. Every constructor
 * returns NULL on failure, with the message in cg_last_error(ctx), and a
 * constructor given a NULL child frees the others and returns NULL, so
 * nested calls need one check at the end.
 * Parameters are persistent tensors of the module's context: free modules
 * (and optimizers) before the context.
 *
 * Writing a module: fill a struct cg_module_i and create it with
 * cg_module_create; keep your state in `priv`.
 *
 *     static cg_tensor *scale_forward(cg_module *m, cg_tensor *x)
 *     { return cg_mul(x, cg_module_parameter(m, "scale")); }
 *     static const struct cg_module_i scale_i = {
 *         .type = "Scale", .forward = scale_forward };
 *     cg_module *m = cg_module_create(ctx, &scale_i, NULL);
 *     cg_tensor *s = cg_tensor_full(ctx, CG_SHAPE(1), 1.0f);  // no scope open
 *     cg_tensor_set_requires_grad(s, true);
 *     cg_module_add_parameter(m, "scale", s);
 */
#ifndef CLGRAD_NN_H
#define CLGRAD_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "clgrad/ops.h"
#include "clgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_module cg_module;

/* The longest dotted parameter name, e.g. "encoder.layers.11.0.weight". */
#define CG_NAME_MAX 128

/* A module's behaviour. */
struct cg_module_i {
    const char *type;                                   /* "Linear", ...   */
    /* x: the module's input; returns a tensor in the current scope or NULL. */
    cg_tensor *(*forward)(cg_module *m, cg_tensor *x);
    /* optional: frees priv (parameters and children are freed by the core). */
    void (*free_priv)(cg_module *m);
};

/* A parameter and its dotted name ("0.weight"). */
struct cg_named_tensor {
    char name[CG_NAME_MAX];
    cg_tensor *tensor;
};

/* ---- Module base ---------------------------------------------------------- */
/* A module with no parameters or children yet; training mode on. */
CG_API cg_module *cg_module_create(cg_ctx *ctx, const struct cg_module_i *iface,
                                   void *priv);
/* Frees m, its parameters and (recursively) its children. NULL is fine. */
CG_API void cg_module_free(cg_module *m);
/* Registers t as parameter `name` (no '.'): m takes ownership of t, which
 * must be persistent (made with no scope open, or cg_tensor_keep'd) and is
 * marked requires_grad. On failure t is freed too. */
CG_API cg_status cg_module_add_parameter(cg_module *m, const char *name, cg_tensor *t);
/* Registers child as submodule `name`; m takes ownership (freed on failure). */
CG_API cg_status cg_module_add_child(cg_module *m, const char *name, cg_module *child);

/* Runs the module: y = m(x). x NULL gives NULL (no new message). */
CG_API cg_tensor *cg_module_forward(cg_module *m, cg_tensor *x);

/* All parameters of m and its descendants, depth-first in registration
 * order with dotted names, as torch.nn.Module.named_parameters(): fills up
 * to max entries of out (out may be NULL when max is 0) and returns the
 * total number. */
CG_API int cg_module_parameters(const cg_module *m, struct cg_named_tensor *out, int max);
/* The parameter with the dotted name ("2.bias"), or NULL. */
CG_API cg_tensor *cg_module_parameter(const cg_module *m, const char *name);
/* The number of scalar parameters (sum of numel). */
CG_API int64_t cg_module_numel(const cg_module *m);

/* Training / evaluation mode for m and its descendants (torch's
 * module.train() / module.eval()). Modules start in training mode. */
CG_API void cg_module_train(cg_module *m);
CG_API void cg_module_eval(cg_module *m);
CG_API bool cg_module_is_training(const cg_module *m);

CG_API const char *cg_module_type(const cg_module *m);
CG_API cg_ctx *cg_module_ctx(const cg_module *m);
CG_API void *cg_module_priv(const cg_module *m);
CG_API int cg_module_num_children(const cg_module *m);
CG_API cg_module *cg_module_child(const cg_module *m, int i);
CG_API const char *cg_module_child_name(const cg_module *m, int i);

/* ---- Layers --------------------------------------------------------------- */
/* torch.nn.Linear: y = x W^T + b.
 *   x: (..., in)  ->  y: (..., out);  weight W: (out, in), bias b: (out).
 * Initialised as torch.nn.Linear.reset_parameters: W ~ U(-1/sqrt(in),
 * 1/sqrt(in)) (kaiming_uniform_ with a = sqrt(5)), then b ~ the same, drawn
 * in row-major order from the context's host RNG, so every backend starts
 * from the same weights. */
CG_API cg_module *cg_linear(cg_ctx *ctx, int64_t in, int64_t out, bool bias);

/* Activations (no parameters), any input shape. */
CG_API cg_module *cg_relu_module(cg_ctx *ctx);
CG_API cg_module *cg_sigmoid_module(cg_ctx *ctx);
CG_API cg_module *cg_tanh_module(cg_ctx *ctx);
CG_API cg_module *cg_gelu_module(cg_ctx *ctx);          /* exact (erf) GELU */
/* torch.nn.Softmax(dim): normalises along axis (negative counts from the end). */
CG_API cg_module *cg_softmax_module(cg_ctx *ctx, int axis);

/* torch.nn.Sequential of n modules (cg_module *), named "0", "1", ... Takes
 * ownership of them all, even on failure. */
CG_API cg_module *cg_sequential(cg_ctx *ctx, int n, ...);
CG_API cg_module *cg_sequential_array(cg_ctx *ctx, int n, cg_module *const *mods);
/* Appends m as the next child ("n"); takes ownership. */
CG_API cg_status cg_sequential_append(cg_module *seq, cg_module *m);

/* ---- Losses ----------------------------------------------------------------
 * Each returns a 0-d tensor (MEAN, SUM) or the per-element losses (NONE) in
 * the current scope, differentiable w.r.t. the prediction / logits. */
enum cg_reduction {
    CG_REDUCTION_MEAN,
    CG_REDUCTION_SUM,
    CG_REDUCTION_NONE,
};

/* torch.nn.MSELoss: (pred - target)^2.  pred, target: the same shape. */
CG_API cg_tensor *cg_mse_loss(cg_tensor *pred, cg_tensor *target,
                              enum cg_reduction reduction);
/* torch.nn.CrossEntropyLoss with class-index targets:
 *   logits: (N, C), target: (N) of integers in [0, C) (float32).
 *   loss_i = (1 - eps) * (-logp[i, y_i]) + eps * mean_c(-logp[i, c]),
 *   logp = log_softmax(logits) (stable for any logits), eps = label_smoothing
 *   in [0, 1]. NONE gives (N). */
CG_API cg_tensor *cg_cross_entropy_loss(cg_tensor *logits, cg_tensor *target,
                                        enum cg_reduction reduction,
                                        float label_smoothing);
/* torch.nn.BCEWithLogitsLoss: logits, target: the same shape, target in
 * [0, 1]. loss = max(x, 0) - x * y + log(1 + exp(-|x|)), stable for any x. */
CG_API cg_tensor *cg_bce_with_logits_loss(cg_tensor *logits, cg_tensor *target,
                                          enum cg_reduction reduction);

/* ---- Models from a spec string (src/nn/spec.c) ------------------------------
 * torch.nn.Flatten(): (N, d1, d2, ...) -> (N, d1 * d2 * ...). */
CG_API cg_module *cg_flatten_module(cg_ctx *ctx);
/* A Sequential built from a spec such as
 *     "flatten, linear 256 relu, linear 128 relu, linear 10"
 * for samples of shape in_shape (no batch dim). Layers are separated by
 * commas; each is a kind with its arguments, optionally followed by
 * activations (relu, sigmoid, tanh, gelu, softmax). Kinds: linear OUT,
 * flatten, and the activations alone. On success the output sample shape
 * is stored in out_ndim/out_shape (either may be NULL). On failure returns
 * NULL; the message names the layer and its column in the spec. */
CG_API cg_module *cg_model_from_spec(cg_ctx *ctx, const char *spec, int in_ndim,
                                     const int64_t *in_shape, int *out_ndim,
                                     int64_t *out_shape);

#ifdef __cplusplus
}
#endif
#endif
