/*
 * src/core/autograd.c — the define-by-run graph and the backward pass.
 *
 * Each recorded op leaves a struct cg_node on its result: the op's name, its
 * backward function, references to its inputs and to any saved tensors. The
 * graph is therefore owned by the tensors themselves: when a scope ends, its
 * results die and release their nodes (cg__node_free), which release inputs
 * no one else holds.
 *
 * cg_backward(loss):
 *   1. an iterative depth-first walk from loss over node->inputs (an
 *      explicit stack, so a 100k-op chain cannot overflow the C stack)
 *      gives a post-order: every tensor after all its inputs;
 *   2. the seed 1 goes into loss's gradient, then the tensors are visited
 *      in reverse post-order, so each node runs once, after every consumer
 *      of its result has added its share (chain rule with sums over uses:
 *      the "reverse accumulation" of Griewank & Walther, Evaluating
 *      Derivatives, ch. 3);
 *   3. a non-leaf's gradient is parked in t->grad while the walk runs and
 *      released as soon as its node has used it; a leaf that requires grad
 *      keeps a persistent, contiguous t->grad that accumulates (+=) across
 *      backward calls, as PyTorch's .grad does.
 * Every node's backward runs in its own scope with grad recording off, so
 * its temporaries are freed when it returns and peak memory stays near the
 * forward pass's.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops_internal.h"
#include "core/dispatch.h"

/* ---- nodes ----------------------------------------------------------- */

struct cg_node *cg__node_new(cg_ctx *ctx, const char *name, cg_backward_fn backward,
                             int n_inputs, cg_tensor *const *inputs)
{
    CG_ASSERT(n_inputs >= 0 && n_inputs <= CG_NODE_MAX_INPUTS);
    struct cg_node *node = cg__cache_get(ctx, CG_CACHE_NODE);
    if (!node) return NULL;
    node->ctx = ctx;
    node->name = name;
    node->backward = backward;
    node->n_inputs = n_inputs;
    for (int i = 0; i < n_inputs; i++) node->inputs[i] = inputs[i];
    return node;
}

bool cg__needs_grad(cg_ctx *ctx, int n, cg_tensor *const *inputs)
{
    if (!ctx->grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (inputs[i] && inputs[i]->requires_grad) return true;
    return false;
}

/* Makes out record node: takes a reference to each input and saved tensor. */
static void attach(cg_tensor *out, struct cg_node *node)
{
    for (int i = 0; i < node->n_inputs; i++)
        if (node->inputs[i]) cg__tensor_ref(node->inputs[i]);
    for (int i = 0; i < CG_NODE_MAX_SAVED; i++)
        if (node->saved[i]) cg__tensor_ref(node->saved[i]);
    CG_ASSERT(out->node == NULL);
    out->node = node;
    out->requires_grad = true;
}

void cg__node_attach(cg_tensor *out, struct cg_node *node)
{
    if (!node) return;
    if (!cg__needs_grad(out->st->ctx, node->n_inputs, node->inputs)) {
        cg__cache_put(node->ctx, CG_CACHE_NODE, node); /* no references were taken yet */
        return;
    }
    attach(out, node);
}

void cg__node_free(struct cg_node *node)
{
    if (!node) return;
    for (int i = 0; i < node->n_inputs; i++) cg__tensor_unref(node->inputs[i]);
    for (int i = 0; i < CG_NODE_MAX_SAVED; i++) cg__tensor_unref(node->saved[i]);
    cg__cache_put(node->ctx, CG_CACHE_NODE, node);
}

struct cg_node *cg__record(cg_tensor *out, const char *name, cg_backward_fn backward, int n_inputs,
                           cg_tensor *const *inputs, int n_saved, cg_tensor *const *saved,
                           bool *failed)
{
    *failed = false;
    cg_ctx *ctx = out->st->ctx;
    if (!cg__needs_grad(ctx, n_inputs, inputs)) return NULL;
    struct cg_node *node = cg__node_new(ctx, name, backward, n_inputs, inputs);
    if (!node) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory for the autograd node",
                  name);
        *failed = true;
        return NULL;
    }
    CG_ASSERT(n_saved <= CG_NODE_MAX_SAVED);
    for (int i = 0; i < n_saved; i++) node->saved[i] = saved[i];
    attach(out, node); /* needs_grad was checked above */
    return node;
}

/* ---- gradient accumulation ------------------------------------------- */

cg_status cg__accumulate_grad(cg_tensor *t, cg_tensor *g)
{
    if (!t || !t->requires_grad) return CG_OK;
    cg_ctx *ctx = t->st->ctx;
    if (!g) return ctx->status ? ctx->status : CG_STATUS_INVALID_ARGUMENT;
    cg_tensor *gs = cg__sum_to_ref(g, t->ndim, t->shape);
    if (!gs) return ctx->status;
    cg_status st = CG_OK;
    if (!t->node) {
        /* A leaf: persistent grad, owned by t alone (no scope, no list). A
         * private temporary (a summed gradient, say) becomes it as it is. */
        if (!t->grad && cg__tensor_is_private(gs)) {
            t->grad = gs; /* our reference moves into t->grad */
            return CG_OK;
        }
        if (!t->grad) {
            cg_tensor *ng = cg__tensor_new_unowned(ctx, t->ndim, t->shape);
            if (!ng) {
                st = ctx->status;
            } else if ((st = cg__ew(ctx, "accumulating a gradient", CG_EW_COPY, 0, 0, ng, gs,
                                    NULL)) != CG_OK) {
                cg__tensor_unref(ng);
            } else {
                t->grad = ng;
            }
        } else {
            st = cg__ew(ctx, "accumulating a gradient", CG_EW_ADD, 0, 0, t->grad, t->grad, gs);
        }
        cg__tensor_unref(gs);
        return st;
    }
    /* A non-leaf during backward: park the gradient. A parked tensor that
     * others may also hold (add's backward hands one g to both inputs) is
     * never written in place: the sum goes into a new tensor, unless the
     * parked one is a private temporary. */
    if (!t->grad) {
        t->grad = gs; /* our reference moves into t->grad */
        return CG_OK;
    }
    if (cg__tensor_is_private(t->grad)) {
        st = cg__ew(ctx, "accumulating a gradient", CG_EW_ADD, 0, 0, t->grad, t->grad, gs);
        cg__tensor_unref(gs);
        return st;
    }
    cg_tensor *sum = cg__tensor_new_unowned(ctx, t->ndim, t->shape);
    if (!sum) {
        cg__tensor_unref(gs);
        return ctx->status;
    }
    st = cg__ew(ctx, "accumulating a gradient", CG_EW_ADD, 0, 0, sum, t->grad, gs);
    cg__tensor_unref(gs);
    if (st != CG_OK) {
        cg__tensor_unref(sum);
        return st;
    }
    cg__tensor_unref(t->grad);
    t->grad = sum;
    return CG_OK;
}

cg_status cg__accumulate_grad_window(cg_tensor *t, int ndim, const int64_t *shape,
                                     const int64_t *strides, int64_t offset, cg_tensor *g)
{
    if (!t || !t->requires_grad) return CG_OK;
    cg_ctx *ctx = t->st->ctx;
    if (!g) return ctx->status ? ctx->status : CG_STATUS_INVALID_ARGUMENT;
    /* A leaf's grad is its own; a non-leaf's parked one when private. Both
     * are contiguous from their start. The slices of one tensor (attention's
     * Q, K and V) then cost one zero fill and a third each, instead of a
     * full-size fill, copy and add per slice. */
    if (t->grad && (!t->node || cg__tensor_is_private(t->grad))) {
        cg_tensor *win = cg__tensor_view_unowned(t->grad, ndim, shape, strides, offset);
        if (!win) return ctx->status;
        cg_status st = cg__ew(ctx, "accumulating a gradient", CG_EW_ADD, 0, 0, win, win, g);
        cg__tensor_unref(win);
        return st;
    }
    cg_tensor *gx = cg__tensor_new_unowned(ctx, t->ndim, t->shape);
    if (!gx) return ctx->status;
    cg_status st = cg_tensor_fill(gx, 0.0f);
    cg_tensor *win = st == CG_OK ? cg__tensor_view_unowned(gx, ndim, shape, strides, offset) : NULL;
    if (st == CG_OK && !win) st = ctx->status;
    if (st == CG_OK) st = cg__ew(ctx, "accumulating a gradient", CG_EW_COPY, 0, 0, win, g, NULL);
    if (win) cg__tensor_unref(win);   /* before: gx must be private to be adopted */
    if (st == CG_OK) st = cg__accumulate_grad(t, gx);
    cg__tensor_unref(gx);
    return st;
}

/* ---- the backward pass ----------------------------------------------- */

struct frame {
    cg_tensor *t;
    int next; /* next input to visit */
};

/* The walk's stack and post-order: arrays kept in ctx between calls (no
 * allocation per backward in steady state). A cg_backward takes them out
 * of ctx while it runs, so a nested one starts with its own. */
struct walk {
    struct frame *stack;
    cg_tensor **order;
    int64_t n_stack, cap_stack, n_order, cap_order;
};

static struct walk walk_take(cg_ctx *ctx)
{
    struct walk w = {.stack = ctx->bw_stack, .order = ctx->bw_order,
                     .cap_stack = ctx->cap_bw_stack, .cap_order = ctx->cap_bw_order};
    ctx->bw_stack = ctx->bw_order = NULL;
    ctx->cap_bw_stack = ctx->cap_bw_order = 0;
    return w;
}

static void walk_give_back(cg_ctx *ctx, struct walk *w)
{
    free(ctx->bw_stack); /* a nested call's, if any: keep the outer ones */
    free(ctx->bw_order);
    ctx->bw_stack = w->stack;
    ctx->bw_order = w->order;
    ctx->cap_bw_stack = w->cap_stack;
    ctx->cap_bw_order = w->cap_order;
}

/* Room for one more element in arr (n used of cap). */
static bool walk_reserve(void **arr, int64_t n, int64_t *cap, size_t elem)
{
    if (n < *cap) return true;
    int64_t nc = *cap ? *cap * 2 : 64;
    void *p = realloc(*arr, (size_t)nc * elem);
    if (!p) return false;
    *arr = p;
    *cap = nc;
    return true;
}

/* Post-order of the tensors that require grad and lead to out, into
 * w->order. A tensor is marked seen by setting its visit field to this
 * walk's epoch, so there is no visited set to allocate or clear. */
static cg_status topo_order(cg_ctx *ctx, cg_tensor *out, struct walk *w)
{
    uint64_t epoch = ++ctx->visit_epoch;
    w->n_stack = w->n_order = 0;
    if (!walk_reserve((void **)&w->stack, 0, &w->cap_stack, sizeof *w->stack)) goto oom;
    out->visit = epoch;
    w->stack[w->n_stack++] = (struct frame){out, 0};
    while (w->n_stack > 0) {
        struct frame *f = &w->stack[w->n_stack - 1];
        struct cg_node *node = f->t->node;
        if (node && f->next < node->n_inputs) {
            cg_tensor *in = node->inputs[f->next++];
            if (!in || !in->requires_grad || in->visit == epoch) continue;
            in->visit = epoch;
            if (!walk_reserve((void **)&w->stack, w->n_stack, &w->cap_stack, sizeof *w->stack))
                goto oom;
            w->stack[w->n_stack++] = (struct frame){in, 0};
            continue;
        }
        if (!walk_reserve((void **)&w->order, w->n_order, &w->cap_order, sizeof *w->order))
            goto oom;
        w->order[w->n_order++] = f->t;
        w->n_stack--;
    }
    return CG_OK;
oom:
    return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_backward: out of host memory for the graph");
}

static cg_status run_backward(cg_ctx *ctx, cg_tensor *out, cg_tensor *seed, cg_tensor **order,
                              int64_t n_order)
{
    cg_status st = cg__accumulate_grad(out, seed);
    for (int64_t k = n_order - 1; k >= 0 && st == CG_OK; k--) {
        cg_tensor *t = order[k];
        /* Reverse post-order puts every consumer of a leaf before it: its
         * gradient is final here (data parallelism starts its all-reduce).
         * Before a node's backward the hook runs too, so collectives in
         * flight move on between ops (Open MPI's move only inside MPI calls). */
        if (t->grad && ctx->grad_ready) st = ctx->grad_ready(ctx->grad_ready_data, t);
        if (!t->node || !t->grad) continue; /* leaf, or no path to out */
        cg_tensor *g = t->grad;
        t->grad = NULL;
        int token = cg__compose_begin(ctx); /* frees the node's temporaries */
        st = t->node->backward(t->node, t, g);
        if (st != CG_OK && ctx->status == CG_OK)
            cg__error(ctx, st, "cg_backward: the backward of %s failed", t->node->name);
        cg__compose_end(ctx, token, NULL);
        cg__tensor_unref(g);
    }
    /* After a failure, non-leaves may still hold parked gradients. */
    for (int64_t k = 0; k < n_order; k++) {
        cg_tensor *t = order[k];
        if (t->node && t->grad) {
            cg__tensor_unref(t->grad);
            t->grad = NULL;
        }
    }
    return st;
}

CG_API cg_status cg_backward_with(cg_tensor *out, cg_tensor *grad_out)
{
    if (!out || !grad_out) return CG_STATUS_INVALID_ARGUMENT; /* earlier op failed */
    cg_ctx *ctx = out->st->ctx;
    char sa[128], sb[128];
    if (!cg__shape_eq(out, grad_out))
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_backward: gradient of shape %s for a tensor of shape %s",
                         CG_SHAPE_STR(grad_out, sa), CG_SHAPE_STR(out, sb));
    if (!out->requires_grad)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_backward: the tensor does not require grad (no leaf of its graph "
                         "has requires_grad, or it was computed with grad recording off)");
    struct walk w = walk_take(ctx);
    cg_status st = topo_order(ctx, out, &w);
    if (st == CG_OK) {
        /* Gradients are computed by the same ops, unrecorded, in a private
         * scope: whatever the backward functions create is freed on return. */
        bool was = cg_set_grad_enabled(ctx, false);
        int token = cg__compose_begin(ctx);
        st = run_backward(ctx, out, grad_out, w.order, w.n_order);
        cg__compose_end(ctx, token, NULL);
        if (ctx->grad_ready) { /* waits for the gradient all-reduces */
            cg_status st2 = ctx->grad_ready(ctx->grad_ready_data, NULL);
            if (st == CG_OK) st = st2;
        }
        cg_set_grad_enabled(ctx, was);
    }
    walk_give_back(ctx, &w);
    return st;
}

CG_API cg_status cg_backward(cg_tensor *loss)
{
    if (!loss) return CG_STATUS_INVALID_ARGUMENT; /* earlier op failed: its error stands */
    cg_ctx *ctx = loss->st->ctx;
    if (cg__tnumel(loss) != 1) {
        char sh[128];
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_backward: the loss must have one element, not shape %s (reduce it "
                         "with cg_sum_all / cg_mean_all, or use cg_backward_with)",
                         CG_SHAPE_STR(loss, sh));
    }
    cg_tensor *seed = cg__tensor_new_unowned(ctx, loss->ndim, loss->shape);
    if (!seed) return ctx->status;
    struct cg_view v = cg__view_of(seed);
    cg_status st = cg__be_fill(ctx, "cg_backward: seeding", &v, 1.0f);
    if (st == CG_OK) st = cg_backward_with(loss, seed);
    cg__tensor_unref(seed);
    return st;
}

/* ---- requires_grad, grad, detach ------------------------------------- */

CG_API cg_status cg_tensor_set_requires_grad(cg_tensor *t, bool requires_grad)
{
    if (!t) return CG_STATUS_INVALID_ARGUMENT;
    if (t->node)
        return cg__error(t->st->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_tensor_set_requires_grad: the tensor was produced by %s; only "
                         "leaves can be marked (use cg_detach for a leaf copy of its data)",
                         t->node->name);
    t->requires_grad = requires_grad;
    return CG_OK;
}

CG_API bool cg_tensor_requires_grad(const cg_tensor *t) { return t && t->requires_grad; }
CG_API bool cg_tensor_has_history(const cg_tensor *t) { return t && t->node; }
CG_API cg_tensor *cg_tensor_grad(const cg_tensor *t) { return t && !t->node ? t->grad : NULL; }

CG_API void cg_tensor_zero_grad(cg_tensor *t)
{
    if (!t || !t->grad || t->node) return;
    cg_tensor_fill(t->grad, 0.0f);
}

CG_API void cg_tensor_clear_grad(cg_tensor *t)
{
    if (!t || !t->grad || t->node) return;
    cg__tensor_unref(t->grad);
    t->grad = NULL;
}

CG_API cg_tensor *cg_detach(cg_tensor *t)
{
    if (!t) return NULL;
    return cg__tensor_view(t, t->ndim, t->shape, t->strides, t->offset);
}
