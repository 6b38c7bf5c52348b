/*
 * clgrad/ops.h — differentiable tensor ops, views and autograd.
 *
 * Every op takes tensors and returns a new tensor owned by the context's
 * current scope (persistent if no scope is open: see tensor.h), or NULL on
 * failure with the message in cg_last_error(ctx). An op given a NULL input
 * returns NULL without a new message, so a chain is checked once at its end
 * with cg_ctx_status(ctx). All work, forward and backward, runs on the
 * context's backend; nothing is computed on the host.
 *
 * Autograd is define-by-run (as PyTorch's): when grad recording is on
 * (cg_set_grad_enabled, context.h) and an input requires grad, the result
 * remembers the op and its inputs; cg_backward(loss) walks that graph in
 * reverse and accumulates (+=) d loss / d t into cg_tensor_grad(t) of every
 * leaf t with requires_grad. A tensor used twice receives the sum; an input
 * that was broadcast receives its gradient summed back to its own shape.
 *
 *     cg_ctx *ctx; cg_ctx_create(&ctx, NULL);
 *     cg_tensor *w = cg_tensor_normal(ctx, CG_SHAPE(10, 1), 0.0f, 0.1f);
 *     cg_tensor *b = cg_tensor_zeros(ctx, CG_SHAPE(1));
 *     cg_tensor_set_requires_grad(w, true);              // persistent leaves
 *     cg_tensor_set_requires_grad(b, true);
 *     for (int step = 0; step < 100; step++) {
 *         cg_scope_begin(ctx);                           // owns the step
 *         cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(32, 10), xs);
 *         cg_tensor *y = cg_tensor_from_host(ctx, CG_SHAPE(32, 1), ys);
 *         cg_tensor *p = cg_add(cg_matmul(x, w), b);     // (32, 1), b broadcast
 *         cg_tensor *d = cg_sub(p, y);
 *         cg_tensor *loss = cg_mean_all(cg_mul(d, d));   // () scalar
 *         cg_tensor_zero_grad(w); cg_tensor_zero_grad(b);
 *         if (cg_backward(loss) != CG_OK)                // also reports any
 *             fprintf(stderr, "%s\n", cg_last_error(ctx)); // error above
 *         // cg_tensor_grad(w): (10, 1), cg_tensor_grad(b): (1)
 *         cg_scope_end(ctx);                             // frees x..loss
 *     }
 *
 * Conventions.
 *   - Axes may be negative (counting from the end, -1 = last), as in PyTorch.
 *   - Broadcasting follows NumPy/PyTorch: shapes align at their last dims; a
 *     dim of 1 (or a missing leading dim) stretches. A mismatch is an error
 *     naming both shapes: "cg_add: shapes (32, 10) and (3, 10) do not
 *     broadcast".
 *   - Views (reshape of a contiguous tensor, permute, transpose, slice,
 *     expand, squeeze, unsqueeze, detach) share their input's storage; the
 *     gradient of a view flows back into its base.
 *   - Index tensors (cg_index_rows, cg_pick) are float32 tensors holding
 *     exact integers; they are checked to lie in range (a download of the
 *     index tensor only, never of data) and never receive a gradient.
 *   - Integer shapes use CG_SHAPE: cg_reshape(x, CG_SHAPE(-1, 28 * 28)).
 */
#ifndef CLGRAD_OPS_H
#define CLGRAD_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include "clgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Elementwise, binary, with broadcasting ------------------------------
 * a, b: any shapes that broadcast together; the result has the broadcast
 * shape. */
CG_API cg_tensor *cg_add(cg_tensor *a, cg_tensor *b);
CG_API cg_tensor *cg_sub(cg_tensor *a, cg_tensor *b);
CG_API cg_tensor *cg_mul(cg_tensor *a, cg_tensor *b);
CG_API cg_tensor *cg_div(cg_tensor *a, cg_tensor *b);
/* Elementwise max / min. The gradient goes to a where a >= b (maximum) or
 * a <= b (minimum), else to b (ties go to a). */
CG_API cg_tensor *cg_maximum(cg_tensor *a, cg_tensor *b);
CG_API cg_tensor *cg_minimum(cg_tensor *a, cg_tensor *b);
/* Comparisons: 1.0 where true, else 0.0. Never differentiable. */
CG_API cg_tensor *cg_eq(cg_tensor *a, cg_tensor *b);
CG_API cg_tensor *cg_gt(cg_tensor *a, cg_tensor *b);

/* ---- Elementwise with scalars ---------------------------------------------
 * t: any shape; the result has t's shape. */
CG_API cg_tensor *cg_add_scalar(cg_tensor *t, float s);        /* t + s       */
CG_API cg_tensor *cg_mul_scalar(cg_tensor *t, float s);        /* t * s       */
CG_API cg_tensor *cg_affine(cg_tensor *t, float scale, float shift); /* scale * t + shift */
CG_API cg_tensor *cg_pow_scalar(cg_tensor *t, float p);        /* t ^ p       */
/* min(max(t, lo), hi); the gradient passes where lo <= t <= hi. */
CG_API cg_tensor *cg_clamp(cg_tensor *t, float lo, float hi);

/* ---- Elementwise, unary ---------------------------------------------------
 * t: any shape; the result has t's shape. */
CG_API cg_tensor *cg_neg(cg_tensor *t);
CG_API cg_tensor *cg_exp(cg_tensor *t);
CG_API cg_tensor *cg_log(cg_tensor *t);
CG_API cg_tensor *cg_sqrt(cg_tensor *t);
CG_API cg_tensor *cg_abs(cg_tensor *t);     /* gradient sign(t), 0 at 0      */
CG_API cg_tensor *cg_relu(cg_tensor *t);    /* gradient 0 at t == 0 (PyTorch) */
CG_API cg_tensor *cg_sigmoid(cg_tensor *t);
CG_API cg_tensor *cg_tanh(cg_tensor *t);
CG_API cg_tensor *cg_gelu(cg_tensor *t);    /* exact (erf) GELU             */

/* ---- Reductions -----------------------------------------------------------
 * t: (..., n, ...) with n at `axis`; the result drops that axis, or keeps it
 * as 1 when keepdim. Over an empty axis sum is 0, mean is NaN, and max is an
 * error. */
CG_API cg_tensor *cg_sum(cg_tensor *t, int axis, bool keepdim);
CG_API cg_tensor *cg_mean(cg_tensor *t, int axis, bool keepdim);
/* The gradient of max goes to the first maximum along the axis. */
CG_API cg_tensor *cg_max(cg_tensor *t, int axis, bool keepdim);
/* Index of the first maximum, as a float. Not differentiable. */
CG_API cg_tensor *cg_argmax(cg_tensor *t, int axis, bool keepdim);
/* Over all elements: a 0-d tensor (one element). */
CG_API cg_tensor *cg_sum_all(cg_tensor *t);
CG_API cg_tensor *cg_mean_all(cg_tensor *t);

/* ---- Matrix product (torch.matmul) ----------------------------------------
 *   a: (M, K),       b: (K, N)       -> (M, N)
 *   a: (..., M, K),  b: (K, N)       -> (..., M, N)
 *   a: (M, K),       b: (..., K, N)  -> (..., M, N)
 *   a: (..., M, K),  b: (..., K, N)  -> (..., M, N), batch dims broadcast
 *   a 1-d (K) is treated as (1, K) and b 1-d (K) as (K, 1), the added dim
 *   then removed from the result, as torch.matmul does.
 * Transposed views (cg_transpose of the last two dims) run without a copy. */
CG_API cg_tensor *cg_matmul(cg_tensor *a, cg_tensor *b);

/* ---- Softmax --------------------------------------------------------------
 * t: any shape; normalises along axis (the last, -1, is the fast path; other
 * axes cost a transpose copy). Stable: the maximum is subtracted first. */
CG_API cg_tensor *cg_softmax(cg_tensor *t, int axis);
CG_API cg_tensor *cg_log_softmax(cg_tensor *t, int axis);

/* ---- Shape and views ------------------------------------------------------ */
/* The same elements in another shape (one dim may be -1: inferred). A view
 * when t is contiguous, else a copy. */
CG_API cg_tensor *cg_reshape(cg_tensor *t, int ndim, const int64_t *shape);
/* Like reshape, but fails instead of copying when t is not contiguous. */
CG_API cg_tensor *cg_view(cg_tensor *t, int ndim, const int64_t *shape);
/* Dims reordered: result dim i is t's dim perm[i]; ndim must equal t's.
 * cg_permute(x, CG_SHAPE(0, 2, 1)). A view. */
CG_API cg_tensor *cg_permute(cg_tensor *t, int ndim, const int64_t *perm);
/* Swaps two dims. A view. */
CG_API cg_tensor *cg_transpose(cg_tensor *t, int dim0, int dim1);
/* Elements start, start+step, ... < end of one dim (Python's t[start:end:step]
 * along dim: negative start/end count from the end and are clamped to the
 * dim; step >= 1). A view. */
CG_API cg_tensor *cg_slice(cg_tensor *t, int dim, int64_t start, int64_t end,
                           int64_t step);
/* Dims start_dim..end_dim merged into one (torch.flatten). */
CG_API cg_tensor *cg_flatten(cg_tensor *t, int start_dim, int end_dim);
/* Inserts a dim of size 1 before position dim (-1: at the end). A view. */
CG_API cg_tensor *cg_unsqueeze(cg_tensor *t, int dim);
/* Removes dim, which must have size 1. A view. */
CG_API cg_tensor *cg_squeeze(cg_tensor *t, int dim);
/* Broadcasts t to shape (torch.expand: size-1 or missing leading dims
 * stretch; -1 keeps a dim). A stride-0 view: no memory; its gradient sums. */
CG_API cg_tensor *cg_expand(cg_tensor *t, int ndim, const int64_t *shape);
/* t's values in row-major layout: a new view of t's storage when t is
 * already contiguous, else a copy. Owned like any op result. */
CG_API cg_tensor *cg_contiguous(cg_tensor *t);
/* A contiguous copy, always (differentiable, torch.clone). */
CG_API cg_tensor *cg_clone(cg_tensor *t);
/* Concatenates n tensors along dim; all other dims must agree. */
CG_API cg_tensor *cg_cat(int n, cg_tensor *const *ts, int dim);

/* ---- Indexing -------------------------------------------------------------
 * Gather rows: table (V, D), idx (N) of integers in [0, V) -> (N, D).
 * (Embedding lookup.) Differentiable w.r.t. table; repeated rows add up. */
CG_API cg_tensor *cg_index_rows(cg_tensor *table, cg_tensor *idx);
/* One element per row: src (N, C), idx (N) of integers in [0, C) -> (N),
 * out[i] = src[i, idx[i]]. (Cross-entropy's pick.) Differentiable w.r.t.
 * src. */
CG_API cg_tensor *cg_pick(cg_tensor *src, cg_tensor *idx);

/* ---- In-place, never recorded ---------------------------------------------
 * For optimizers, initialisers and gradient clipping; t must not be a
 * stride-0 (expanded) view. */
CG_API cg_status cg_tensor_fill(cg_tensor *t, float value);
/* dst[...] = src[...]; src must broadcast to dst's shape. */
CG_API cg_status cg_tensor_copy(cg_tensor *dst, cg_tensor *src);

/* ---- Autograd -------------------------------------------------------------
 * Only a leaf (a tensor no recorded op produced) can be marked; marking a
 * non-leaf is an error, as in PyTorch. */
CG_API cg_status cg_tensor_set_requires_grad(cg_tensor *t, bool requires_grad);
/* True for marked leaves and for results recorded from them. */
CG_API bool cg_tensor_requires_grad(const cg_tensor *t);
/* True when t was produced by a recorded op. */
CG_API bool cg_tensor_has_history(const cg_tensor *t);
/* The accumulated gradient of a leaf: contiguous, t's shape, owned by t
 * (freed with it). NULL until a backward pass reaches t. */
CG_API cg_tensor *cg_tensor_grad(const cg_tensor *t);
/* Sets the gradient to zero (keeps its memory), as llm.c's zero_grad. */
CG_API void cg_tensor_zero_grad(cg_tensor *t);
/* Frees the gradient (PyTorch's zero_grad(set_to_none=True)). */
CG_API void cg_tensor_clear_grad(cg_tensor *t);
/* Backpropagates from loss, which must have exactly one element: seeds
 * d loss / d loss = 1 and accumulates into the grad of every leaf that
 * requires it. Intermediate gradients live in the current scope. The graph
 * stays, so backward may run again (grads add up). */
CG_API cg_status cg_backward(cg_tensor *loss);
/* Like cg_backward with a given seed gradient of loss's shape (any size). */
CG_API cg_status cg_backward_with(cg_tensor *out, cg_tensor *grad_out);
/* A view of t's data without history (requires_grad false). */
CG_API cg_tensor *cg_detach(cg_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
