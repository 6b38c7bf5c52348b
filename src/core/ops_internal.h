/*
 * src/core/ops_internal.h — helpers shared by the op families (ops_*.c) and
 * autograd.c. Never installed.
 *
 * Ownership of temporaries. A public op's result is owned by the current
 * scope (or persistent), like every tensor a user sees. Temporaries an op
 * needs only while it runs are taken as *references* (cg__*_ref helpers):
 * unowned tensors, or an existing tensor with one more reference, that the
 * op drops with cg__tensor_unref before it returns. That way an op called
 * with no scope open leaves nothing behind in the persistent list.
 *
 * Ops built from other public ops (softmax on an inner axis, matmul on
 * folded batches, ...) run them inside cg__compose_begin/end: a private scope
 * that frees every intermediate the result's graph does not need, then hands
 * the result to the caller's scope.
 */
#ifndef CLGRAD_CORE_OPS_INTERNAL_H
#define CLGRAD_CORE_OPS_INTERNAL_H

#include "clgrad/nn.h"
#include "clgrad/ops.h"
#include "core/internal.h"

static inline cg_ctx *cg__ctx_of(const cg_tensor *t) { return t->st->ctx; }
static inline int64_t cg__tnumel(const cg_tensor *t) { return cg__numel(t->ndim, t->shape); }

/* Normalises a possibly negative axis into [0, ndim); records an error
 * naming `what` when out of range. */
cg_status cg__norm_axis(cg_ctx *ctx, const char *what, int axis, int ndim, int *out);

/* The NumPy broadcast shape of a and b; error "what: shapes (..) and (..)
 * do not broadcast". */
cg_status cg__broadcast_shape(cg_ctx *ctx, const char *what, const cg_tensor *a,
                              const cg_tensor *b, int *ndim, int64_t *shape);

/* A backend view of t stretched to (ndim, shape) (t must broadcast to it):
 * stride 0 along stretched dims, not coalesced. */
struct cg_view cg__view_bcast(const cg_tensor *t, int ndim, const int64_t *shape);

/* out = op(a[, b]) on the backend, a and b broadcast to out's shape; skips
 * empty outputs; a backend failure is recorded with `what`. Not recorded
 * for autograd. */
cg_status cg__ew(cg_ctx *ctx, const char *what, enum cg_ew_op op, float p0, float p1,
                 cg_tensor *out, const cg_tensor *a, const cg_tensor *b);
/* A new scoped tensor of the broadcast shape holding op(a[, b]); not
 * recorded. */
cg_tensor *cg__ew_new(const char *what, enum cg_ew_op op, float p0, float p1,
                      cg_tensor *a, cg_tensor *b);

/* t with one more reference when contiguous, else an unowned contiguous
 * copy. Drop with cg__tensor_unref. */
cg_tensor *cg__contig_ref(cg_tensor *t);

/* Sums g over the dims it broadcast along, to (ndim, shape) (see
 * cg__accumulate_grad): a new reference (g itself when nothing to sum). */
cg_tensor *cg__sum_to_ref(cg_tensor *g, int ndim, const int64_t *shape);

/* Backend reduce of a contiguous `in` seen as (outer, n, inner) into the
 * contiguous `out` (numel outer * inner). */
cg_status cg__reduce_into(const char *what, enum cg_reduce_op op, cg_tensor *out, cg_tensor *in,
                          int64_t outer, int64_t n, int64_t inner, float scale);
/* The same into a new unowned tensor of shape (out_ndim, out_shape). */
cg_tensor *cg__reduce_ref(const char *what, enum cg_reduce_op op, cg_tensor *in, int64_t outer,
                          int64_t n, int64_t inner, float scale, int out_ndim,
                          const int64_t *out_shape);

/* Private scope around a composite op (lifetime.c); see the top of this
 * file. begin returns a token for end; end returns r moved into the
 * caller's scope (or the kept list), or NULL if r is NULL. end_n does the
 * same for n results (n <= 4) in place, any of them NULL; a result it
 * cannot move becomes NULL (error recorded). */
int cg__compose_begin(cg_ctx *ctx);
cg_tensor *cg__compose_end(cg_ctx *ctx, int token, cg_tensor *r);
cg_status cg__compose_end_n(cg_ctx *ctx, int token, int n, cg_tensor **rs);

/* True when an op on these inputs must record a node: grad recording is on
 * and some input requires grad. */
bool cg__needs_grad(cg_ctx *ctx, int n, cg_tensor *const *inputs);
/* node->inputs[i] exists and wants a gradient. */
static inline bool cg__input_needs_grad(const struct cg_node *node, int i)
{
    return i < node->n_inputs && node->inputs[i] && node->inputs[i]->requires_grad;
}
/* Records `name` on out when cg__needs_grad; saved[] (may be NULL) is
 * stored in node->saved. Returns the attached node (to fill f/i params;
 * refs are already taken), NULL when nothing was recorded. On an
 * allocation failure records the error and returns NULL with *failed set. */
struct cg_node *cg__record(cg_tensor *out, const char *name, cg_backward_fn backward, int n_inputs,
                           cg_tensor *const *inputs, int n_saved, cg_tensor *const *saved,
                           bool *failed);

/* ---- layer ops with a fused kernel or a composed fallback -------------
 * (ops_fused.c, ops_lstm.c): one call, the same values either way; the
 * choice follows the context's backend. */

/* torch.nn.LayerNorm over the last w->ndim dims of x (..., *w.shape), with
 * weight w and bias b of that shape, biased variance, eps inside the
 * square root. */
cg_tensor *cg__layer_norm(cg_tensor *x, cg_tensor *w, cg_tensor *b, float eps);
/* softmax(s + M) over the last axis of the scores s (.., T, T), M the
 * causal mask (0 where j <= i, -1e30 above). *mask_cache: a kept (T, T)
 * mask the composed path builds once per T and reuses; the caller frees it
 * (cg_tensor_free) with its owner. */
cg_tensor *cg__softmax_causal(cg_tensor *s, cg_tensor **mask_cache);
/* gelu(x + bias) over the last axis of x (.., F); bias (F) or NULL. */
cg_tensor *cg__bias_gelu(cg_tensor *x, cg_tensor *bias);

/* One recurrent layer (torch.nn.RNN with tanh, LSTM or GRU; the
 * equations are src/nn/rnn.c's) over all time steps. Its weights, as
 * PyTorch's *_l{k}: w_ih (G H, in), w_hh (G H, H), biases (G H) or NULL
 * for none, G = 1, 4 or 3 gates. */
struct cg_rnn_layer {
    enum cg_rnn_mode mode;
    int64_t hidden;
    cg_tensor *w_ih, *w_hh, *b_ih, *b_hh;
};
/* x: (T, B, in) when tdim == 0, (B, T, in) when tdim == 1; h, c: (B, H)
 * initial states (c for LSTM only). Returns the layer's outputs in x's
 * layout with H features; *h_last, *c_last: the final states (B, H). An
 * LSTM runs as one fused op where the backend has lstm_cell. */
cg_tensor *cg__rnn_layer(const struct cg_rnn_layer *l, cg_tensor *x, int tdim, cg_tensor *h,
                         cg_tensor *c, cg_tensor **h_last, cg_tensor **c_last);

/* t's position plus off elements, for a primitive's argument. */
static inline struct cg_ptr cg__ptr_at(const cg_tensor *t, int64_t off)
{
    struct cg_ptr p = cg__ptr(t);
    p.off += off;
    return p;
}

/* Shape strings for messages. */
#define CG_SHAPE_STR(t, buf) cg__shape_str((t)->ndim, (t)->shape, buf, sizeof buf)

#endif
