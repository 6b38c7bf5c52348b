/*
 * src/core/ops_softmax.c — softmax and log-softmax along an axis.
 *
 * The backend normalises the last axis of a contiguous (rows, cols) block,
 * subtracting each row's maximum first (the standard log-sum-exp shift, so
 * exp never overflows). Another axis is moved last by a transpose, made
 * contiguous, normalised, and transposed back: all recorded ops, so autograd
 * composes their backwards.
 *
 * Backward (backend softmax_backward), with y the output and g = dL/dy:
 *   softmax:     dx = y * (g - sum(g * y))
 *   log-softmax: dx = g - exp(y) * sum(g)
 */
#include "core/ops_internal.h"
#include "core/dispatch.h"

static cg_status softmax_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *x = n->inputs[0];
    cg_ctx *ctx = cg__ctx_of(x);
    int64_t cols = n->i[0], rows = cols > 0 ? cg__tnumel(y) / cols : 0;
    cg_tensor *gx = cg__tensor_new(ctx, x->ndim, x->shape);
    cg_tensor *gc = gx ? cg__contig_ref(g) : NULL;
    if (!gc) return ctx->status;
    cg_status st = CG_OK;
    if (rows * cols > 0)
        st = cg__be_softmax_backward(ctx, n->name, cg__ptr(gx), cg__ptr(y), cg__ptr(gc), rows,
                                     cols, (int)n->i[1]);
    cg__tensor_unref(gc);
    return st ? st : cg__accumulate_grad(x, gx);
}

/* Along the last axis (any tensor; a 0-d tensor is one row of one). */
static cg_tensor *softmax_last(const char *name, cg_tensor *t, int log)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int64_t cols = t->ndim > 0 ? t->shape[t->ndim - 1] : 1;
    int64_t rows = cols > 0 ? cg__tnumel(t) / cols : 0;
    cg_tensor *c = cg__contig_ref(t);
    if (!c) return NULL;
    cg_tensor *out = cg__tensor_new(ctx, t->ndim, t->shape);
    bool ok = out != NULL;
    if (ok && rows * cols > 0)
        ok = cg__be_softmax(ctx, name, cg__ptr(out), cg__ptr(c), rows, cols, log) == CG_OK;
    cg__tensor_unref(c);
    if (ok) {
        bool failed;
        struct cg_node *n = cg__record(out, name, softmax_backward, 1, &t, 0, NULL, &failed);
        ok = !failed;
        if (n) {
            n->i[0] = cols;
            n->i[1] = log;
        }
    }
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

static cg_tensor *softmax_op(const char *name, cg_tensor *t, int axis, int log)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int a;
    if (t->ndim == 0) {
        if (axis != 0 && axis != -1) {
            cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: axis %d out of range for a 0-d tensor",
                      name, axis);
            return NULL;
        }
        return softmax_last(name, t, log);
    }
    if (cg__norm_axis(ctx, name, axis, t->ndim, &a) != CG_OK) return NULL;
    if (a == t->ndim - 1) return softmax_last(name, t, log);
    int token = cg__compose_begin(ctx);
    cg_tensor *r = cg_transpose(softmax_last(name, cg_transpose(t, a, -1), log), a, -1);
    return cg__compose_end(ctx, token, r);
}

CG_API cg_tensor *cg_softmax(cg_tensor *t, int axis) { return softmax_op("cg_softmax", t, axis, 0); }
CG_API cg_tensor *cg_log_softmax(cg_tensor *t, int axis)
{
    return softmax_op("cg_log_softmax", t, axis, 1);
}
