/*
 * src/core/ops_reduce.c — sum / mean / max / argmax along an axis, over all
 * elements, and the broadcast-undoing sum that autograd uses.
 *
 * The backend reduces a contiguous block seen as (outer, n, inner) along n,
 * so an axis reduction of a contiguous tensor is one call with
 * outer = prod(shape[:axis]), n = shape[axis], inner = prod(shape[axis+1:]);
 * a strided input is made contiguous first.
 */
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "core/ops_internal.h"
#include "core/dispatch.h"

cg_status cg__reduce_into(const char *what, enum cg_reduce_op op, cg_tensor *out, cg_tensor *in,
                          int64_t outer, int64_t n, int64_t inner, float scale)
{
    cg_ctx *ctx = cg__ctx_of(in);
    if (outer * inner == 0) return CG_OK;
    return cg__be_reduce(ctx, what, op, cg__ptr(out), cg__ptr(in), outer, n, inner, scale);
}

cg_tensor *cg__reduce_ref(const char *what, enum cg_reduce_op op, cg_tensor *in, int64_t outer,
                          int64_t n, int64_t inner, float scale, int out_ndim,
                          const int64_t *out_shape)
{
    cg_ctx *ctx = cg__ctx_of(in);
    cg_tensor *out = cg__tensor_new_unowned(ctx, out_ndim, out_shape);
    if (!out) return NULL;
    if (cg__reduce_into(what, op, out, in, outer, n, inner, scale) != CG_OK) {
        cg__tensor_unref(out);
        return NULL;
    }
    return out;
}

/* ---- summing a gradient back to an input's shape --------------------- */

cg_tensor *cg__sum_to_ref(cg_tensor *g, int ndim, const int64_t *shape)
{
    cg_ctx *ctx = cg__ctx_of(g);
    int lead = g->ndim - ndim;
    bool same = lead == 0, ok = lead >= 0;
    for (int i = 0; ok && i < ndim; i++) {
        if (shape[i] != g->shape[i + lead]) same = false;
        if (shape[i] != g->shape[i + lead] && shape[i] != 1) ok = false;
    }
    if (same) {
        cg__tensor_ref(g);
        return g;
    }
    if (!ok) {
        char sg[128], st[128];
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "autograd: a gradient of shape %s does not reduce to shape %s (a backward "
                  "function is wrong)", CG_SHAPE_STR(g, sg), cg__shape_str(ndim, shape, st, sizeof st));
        return NULL;
    }
    /* Dims to sum: the leading ones t lacks and those t has as 1. A dim of
     * size 1 in g can join a run either way, so runs are as long as possible
     * and most cases need one backend call. */
    bool red[CG_MAX_DIMS];
    for (int j = 0; j < g->ndim; j++)
        red[j] = j < lead || g->shape[j] == 1 || shape[j - lead] == 1;
    cg_tensor *cur = cg__contig_ref(g);
    if (!cur) return NULL;
    int64_t cs[CG_MAX_DIMS];
    memcpy(cs, g->shape, sizeof(int64_t) * (size_t)g->ndim);
    int j = 0;
    while (j < g->ndim) {
        if (!red[j] || cs[j] == 1) {
            j++;
            continue;
        }
        int e = j;
        while (e < g->ndim && red[e]) e++;
        int64_t outer = cg__numel(j, cs), n = cg__numel(e - j, cs + j),
                inner = cg__numel(g->ndim - e, cs + e);
        for (int k = j; k < e; k++) cs[k] = 1;
        bool last = true;
        for (int k = e; k < g->ndim; k++)
            if (red[k] && cs[k] != 1) last = false;
        cg_tensor *next = last ? cg__reduce_ref("autograd: summing a broadcast gradient",
                                                CG_REDUCE_SUM, cur, outer, n, inner, 1.0f, ndim, shape)
                               : cg__reduce_ref("autograd: summing a broadcast gradient",
                                                CG_REDUCE_SUM, cur, outer, n, inner, 1.0f, g->ndim, cs);
        cg__tensor_unref(cur);
        if (!next) return NULL;
        cur = next;
        if (last) return cur;
        j = e;
    }
    /* Only size-1 dims differed (e.g. (1, 3) -> (3)): a one-term sum is a
     * copy into the new shape. */
    cg_tensor *v = cg__reduce_ref("autograd: reshaping a gradient", CG_REDUCE_SUM, cur,
                                  cg__tnumel(cur), 1, 1, 1.0f, ndim, shape);
    cg__tensor_unref(cur);
    return v;
}

/* ---- along one axis -------------------------------------------------- */

struct axis_split {
    int axis;
    int64_t outer, n, inner;
    int out_ndim;
    int64_t out_shape[CG_MAX_DIMS];
};

static cg_status split_axis(cg_ctx *ctx, const char *what, const cg_tensor *t, int axis,
                            bool keepdim, struct axis_split *s)
{
    if (t->ndim == 0) {
        /* A 0-d tensor reduces along axis 0 or -1 to itself (as PyTorch). */
        if (axis != 0 && axis != -1)
            return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s: axis %d out of range for a 0-d tensor", what, axis);
        *s = (struct axis_split){.axis = 0, .outer = 1, .n = 1, .inner = 1, .out_ndim = 0};
        return CG_OK;
    }
    cg_status st = cg__norm_axis(ctx, what, axis, t->ndim, &s->axis);
    if (st != CG_OK) return st;
    s->outer = cg__numel(s->axis, t->shape);
    s->n = t->shape[s->axis];
    s->inner = cg__numel(t->ndim - s->axis - 1, t->shape + s->axis + 1);
    s->out_ndim = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (i != s->axis)
            s->out_shape[s->out_ndim++] = t->shape[i];
        else if (keepdim)
            s->out_shape[s->out_ndim++] = 1;
    }
    return CG_OK;
}

/* g (the reduced shape) seen as x's shape: stride 0 along the reduced
 * axis, so no copy is made. g must be contiguous. */
static cg_tensor *expand_back(cg_tensor *g, const cg_tensor *x, int axis)
{
    int64_t strides[CG_MAX_DIMS];
    int64_t s = 1;
    for (int i = x->ndim - 1; i >= 0; i--) {
        if (i == axis) {
            strides[i] = 0;
            continue;
        }
        strides[i] = s;
        s *= x->shape[i];
    }
    return cg__tensor_view(g, x->ndim, x->shape, strides, g->offset);
}

static cg_status sum_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* d sum / dx = 1 along the axis; mean scales by f[0] = 1/n. */
    cg_tensor *x = n->inputs[0];
    cg_tensor *gs = n->f[0] == 1.0f ? g : cg__ew_new("mean backward", CG_EW_AFFINE, n->f[0], 0, g, NULL);
    if (!gs) return cg__ctx_of(x)->status;
    cg_tensor *gc = cg__contig_ref(gs);
    if (!gc) return cg__ctx_of(x)->status;
    cg_status st = cg__accumulate_grad(x, x->ndim == 0 ? gc : expand_back(gc, x, (int)n->i[0]));
    cg__tensor_unref(gc);
    return st;
}

static cg_status max_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* The gradient goes to the first maximum: gx[o, idx[o, i], i] = g[o, i].
     * It is built in (outer, inner, n) layout, where pick_add scatters one
     * element per row, then seen as x's (outer, n, inner) by strides. */
    cg_tensor *x = n->inputs[0], *idx = n->saved[0];
    cg_ctx *ctx = cg__ctx_of(x);
    int axis = (int)n->i[0];
    int64_t outer = n->i[1], len = n->i[2], inner = n->i[3];
    cg_tensor *gp = cg_tensor_zeros(ctx, CG_SHAPE(outer * inner, len));
    cg_tensor *gc = gp ? cg__contig_ref(g) : NULL;
    if (!gc) return ctx->status;
    cg_status st = CG_OK;
    if (outer * inner > 0)
        st = cg__be_scatter_add(ctx, "cg_max backward", false, cg__ptr(gp), cg__ptr(gc),
                                cg__ptr(idx), outer * inner, len);
    cg__tensor_unref(gc);
    if (st != CG_OK) return st;
    int64_t strides[CG_MAX_DIMS], s = 1;
    for (int i = x->ndim - 1; i > axis; i--) {
        strides[i] = s * len;
        s *= x->shape[i];
    }
    strides[axis] = 1;
    s *= len;
    for (int i = axis - 1; i >= 0; i--) {
        strides[i] = s;
        s *= x->shape[i];
    }
    return cg__accumulate_grad(x, cg__tensor_view(gp, x->ndim, x->shape, strides, 0));
}

static cg_tensor *reduce_axis(const char *name, enum cg_reduce_op op, cg_tensor *t, int axis,
                              bool keepdim, bool mean)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    struct axis_split s;
    if (split_axis(ctx, name, t, axis, keepdim, &s) != CG_OK) return NULL;
    if ((op == CG_REDUCE_MAX || op == CG_REDUCE_ARGMAX) && s.n == 0 && s.outer * s.inner > 0) {
        char sh[128];
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: axis %d of shape %s is empty", name, axis,
                  CG_SHAPE_STR(t, sh));
        return NULL;
    }
    float scale = mean ? (s.n > 0 ? 1.0f / (float)s.n : NAN) : 1.0f;
    cg_tensor *c = cg__contig_ref(t);
    if (!c) return NULL;
    cg_tensor *out = cg__tensor_new(ctx, s.out_ndim, s.out_shape);
    cg_tensor *idx = NULL;
    /* The backend's empty SUM is 0 whatever the scale: a mean of nothing is
     * NaN (as PyTorch), written directly. */
    bool ok = out && (mean && s.n == 0
                          ? cg_tensor_fill(out, NAN) == CG_OK
                          : cg__reduce_into(name, op, out, c, s.outer, s.n, s.inner, scale) == CG_OK);
    bool grad = ok && op != CG_REDUCE_ARGMAX && cg__needs_grad(ctx, 1, &t);
    if (grad && op == CG_REDUCE_MAX) {
        int64_t ishape[2] = {s.outer, s.inner};
        idx = cg__reduce_ref(name, CG_REDUCE_ARGMAX, c, s.outer, s.n, s.inner, 1.0f, 2, ishape);
        ok = idx != NULL;
    }
    cg__tensor_unref(c);
    if (ok && grad) {
        bool failed;
        struct cg_node *n = cg__record(out, name, op == CG_REDUCE_MAX ? max_backward : sum_backward,
                                       1, &t, idx ? 1 : 0, &idx, &failed);
        ok = !failed;
        if (n) {
            n->f[0] = scale;
            n->i[0] = s.axis;
            n->i[1] = s.outer;
            n->i[2] = s.n;
            n->i[3] = s.inner;
        }
    }
    cg__tensor_unref(idx); /* the node holds its own reference */
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

CG_API cg_tensor *cg_sum(cg_tensor *t, int axis, bool keepdim)
{
    return reduce_axis("cg_sum", CG_REDUCE_SUM, t, axis, keepdim, false);
}
CG_API cg_tensor *cg_mean(cg_tensor *t, int axis, bool keepdim)
{
    return reduce_axis("cg_mean", CG_REDUCE_SUM, t, axis, keepdim, true);
}
CG_API cg_tensor *cg_max(cg_tensor *t, int axis, bool keepdim)
{
    return reduce_axis("cg_max", CG_REDUCE_MAX, t, axis, keepdim, false);
}
CG_API cg_tensor *cg_argmax(cg_tensor *t, int axis, bool keepdim)
{
    return reduce_axis("cg_argmax", CG_REDUCE_ARGMAX, t, axis, keepdim, false);
}

/* ---- over all elements ----------------------------------------------- */

static cg_status sum_all_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* g: () -> x's shape by stride-0 view (scaled by 1/numel for mean) */
    cg_tensor *x = n->inputs[0];
    cg_tensor *gs = n->f[0] == 1.0f ? g : cg__ew_new("mean_all backward", CG_EW_AFFINE, n->f[0], 0, g, NULL);
    if (!gs) return cg__ctx_of(x)->status;
    int64_t zero[CG_MAX_DIMS] = {0};
    return cg__accumulate_grad(x, cg__tensor_view(gs, x->ndim, x->shape, zero, gs->offset));
}

static cg_tensor *reduce_all(const char *name, cg_tensor *t, bool mean)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int64_t n = cg__tnumel(t);
    float scale = mean ? (n > 0 ? 1.0f / (float)n : NAN) : 1.0f;
    cg_tensor *c = cg__contig_ref(t);
    if (!c) return NULL;
    cg_tensor *out = cg__tensor_new(ctx, 0, NULL);
    bool ok = out && (mean && n == 0 ? cg_tensor_fill(out, NAN) == CG_OK
                                     : cg__reduce_into(name, CG_REDUCE_SUM, out, c, 1, n, 1, scale) == CG_OK);
    cg__tensor_unref(c);
    if (ok) {
        bool failed;
        struct cg_node *node = cg__record(out, name, sum_all_backward, 1, &t, 0, NULL, &failed);
        ok = !failed;
        if (node) node->f[0] = scale;
    }
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

CG_API cg_tensor *cg_sum_all(cg_tensor *t) { return reduce_all("cg_sum_all", t, false); }
CG_API cg_tensor *cg_mean_all(cg_tensor *t) { return reduce_all("cg_mean_all", t, true); }
