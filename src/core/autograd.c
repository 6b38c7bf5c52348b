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

/* ---- nodes ----------------------------------------------------------- */

struct cg_node *cg__node_new(const char *name, cg_backward_fn backward, int n_inputs,
                             cg_tensor *const *inputs)
{
    CG_ASSERT(n_inputs >= 0 && n_inputs <= CG_NODE_MAX_INPUTS);
    struct cg_node *node = calloc(1, sizeof *node);
    if (!node) return NULL;
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

void cg__node_attach(cg_tensor *out, struct cg_node *node)
{
    if (!node) return;
    if (!cg__needs_grad(out->st->ctx, node->n_inputs, node->inputs)) {
        free(node); /* no references were taken yet */
        return;
    }
    for (int i = 0; i < node->n_inputs; i++)
        if (node->inputs[i]) cg__tensor_ref(node->inputs[i]);
    for (int i = 0; i < CG_NODE_MAX_SAVED; i++)
        if (node->saved[i]) cg__tensor_ref(node->saved[i]);
    CG_ASSERT(out->node == NULL);
    out->node = node;
    out->requires_grad = true;
}

void cg__node_free(struct cg_node *node)
{
    if (!node) return;
    for (int i = 0; i < node->n_inputs; i++) cg__tensor_unref(node->inputs[i]);
    for (int i = 0; i < CG_NODE_MAX_SAVED; i++) cg__tensor_unref(node->saved[i]);
    free(node);
}

struct cg_node *cg__record(cg_tensor *out, const char *name, cg_backward_fn backward, int n_inputs,
                           cg_tensor *const *inputs, int n_saved, cg_tensor *const *saved,
                           bool *failed)
{
    *failed = false;
    cg_ctx *ctx = out->st->ctx;
    if (!cg__needs_grad(ctx, n_inputs, inputs)) return NULL;
    struct cg_node *node = cg__node_new(name, backward, n_inputs, inputs);
    if (!node) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory for the autograd node",
                  name);
        *failed = true;
        return NULL;
    }
    CG_ASSERT(n_saved <= CG_NODE_MAX_SAVED);
    for (int i = 0; i < n_saved; i++) node->saved[i] = saved[i];
    cg__node_attach(out, node);
    return node;
}

/* ---- composite ops --------------------------------------------------- */

int cg__compose_begin(cg_ctx *ctx)
{
    int before = ctx->n_marks;
    cg_scope_begin(ctx);
    return ctx->n_marks == before + 1 ? ctx->n_marks : -1;
}

cg_tensor *cg__compose_end(cg_ctx *ctx, int token, cg_tensor *r)
{
    if (token < 0) return r; /* begin failed (error recorded): nothing to end */
    CG_ASSERT(ctx->n_marks == token);
    bool inner = r && r->scope_slot >= ctx->marks[token - 1];
    if (r) cg__tensor_ref(r);
    cg_scope_end(ctx);
    if (!r) return NULL;
    if (!inner) {
        cg__tensor_unref(r);
        return r;
    }
    /* r survived the scope through our reference; hand it to the caller's
     * scope (or the persistent list), which takes that reference over. */
    if (!cg__ctx_own(ctx, r)) {
        cg__tensor_unref(r);
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "out of host memory");
        return NULL;
    }
    return r;
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
        /* A leaf: persistent grad, owned by t alone (no scope, no list). */
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
    /* A non-leaf during backward: park the gradient; never written in place,
     * since one tensor may be handed to several inputs (add's backward). */
    if (!t->grad) {
        t->grad = gs; /* our reference moves into t->grad */
        return CG_OK;
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

/* ---- the backward pass ----------------------------------------------- */

/* An open-addressing set of tensor pointers (visited marks). */
struct ptr_set {
    const void **slots;
    size_t cap, count; /* cap is a power of two */
};

static size_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull; /* murmur3 finaliser */
    x ^= x >> 33;
    return (size_t)x;
}

static bool ptr_set_grow(struct ptr_set *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 256;
    const void **ns = calloc(ncap, sizeof *ns);
    if (!ns) return false;
    for (size_t i = 0; i < s->cap; i++) {
        if (!s->slots[i]) continue;
        size_t h = ptr_hash(s->slots[i]) & (ncap - 1);
        while (ns[h]) h = (h + 1) & (ncap - 1);
        ns[h] = s->slots[i];
    }
    free(s->slots);
    s->slots = ns;
    s->cap = ncap;
    return true;
}

/* Inserts p; returns 1 if added, 0 if present, -1 when out of memory. */
static int ptr_set_add(struct ptr_set *s, const void *p)
{
    if ((s->count + 1) * 2 > s->cap && !ptr_set_grow(s)) return -1;
    size_t h = ptr_hash(p) & (s->cap - 1);
    while (s->slots[h]) {
        if (s->slots[h] == p) return 0;
        h = (h + 1) & (s->cap - 1);
    }
    s->slots[h] = p;
    s->count++;
    return 1;
}

struct frame {
    cg_tensor *t;
    int next; /* next input to visit */
};

/* Post-order of the tensors that require grad and lead to out. */
static cg_status topo_order(cg_ctx *ctx, cg_tensor *out, cg_tensor ***order, int64_t *n_order)
{
    struct ptr_set seen = {0};
    struct frame *stack = NULL;
    cg_tensor **ord = NULL;
    int64_t n_stack = 0, cap_stack = 0, n_ord = 0, cap_ord = 0;
    cg_status st = CG_OK;

#define PUSH(arr, n, cap, val)                                                \
    do {                                                                      \
        if ((n) == (cap)) {                                                   \
            int64_t nc_ = (cap) ? (cap) * 2 : 64;                             \
            void *p_ = realloc((arr), (size_t)nc_ * sizeof *(arr));           \
            if (!p_) goto oom;                                                \
            (arr) = p_;                                                       \
            (cap) = nc_;                                                      \
        }                                                                     \
        (arr)[(n)++] = (val);                                                 \
    } while (0)

    if (ptr_set_add(&seen, out) < 0) goto oom;
    PUSH(stack, n_stack, cap_stack, ((struct frame){out, 0}));
    while (n_stack > 0) {
        struct frame *f = &stack[n_stack - 1];
        struct cg_node *node = f->t->node;
        if (node && f->next < node->n_inputs) {
            cg_tensor *in = node->inputs[f->next++];
            if (!in || !in->requires_grad) continue;
            int added = ptr_set_add(&seen, in);
            if (added < 0) goto oom;
            if (added) PUSH(stack, n_stack, cap_stack, ((struct frame){in, 0}));
            continue;
        }
        PUSH(ord, n_ord, cap_ord, f->t);
        n_stack--;
    }
#undef PUSH
    free(seen.slots);
    free(stack);
    *order = ord;
    *n_order = n_ord;
    return st;
oom:
    free(seen.slots);
    free(stack);
    free(ord);
    return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_backward: out of host memory for the graph");
}

static cg_status run_backward(cg_ctx *ctx, cg_tensor *out, cg_tensor *seed, cg_tensor **order,
                              int64_t n_order)
{
    cg_status st = cg__accumulate_grad(out, seed);
    for (int64_t k = n_order - 1; k >= 0 && st == CG_OK; k--) {
        cg_tensor *t = order[k];
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
    cg_tensor **order = NULL;
    int64_t n_order = 0;
    cg_status st = topo_order(ctx, out, &order, &n_order);
    if (st != CG_OK) return st;
    /* Gradients are computed by the same ops, unrecorded, in a private
     * scope: whatever the backward functions create is freed on return. */
    bool was = cg_set_grad_enabled(ctx, false);
    int token = cg__compose_begin(ctx);
    st = run_backward(ctx, out, grad_out, order, n_order);
    cg__compose_end(ctx, token, NULL);
    cg_set_grad_enabled(ctx, was);
    free(order);
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
    cg_status st = ctx->be->fill(ctx->bctx, &v, 1.0f) != CG_OK
                       ? cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "cg_backward: seeding")
                       : cg_backward_with(loss, seed);
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
