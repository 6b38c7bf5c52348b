/*
 * src/core/ops_ew.c — elementwise ops: binary with NumPy broadcasting,
 * scalar ops, unary activations; their backwards; in-place fill and copy.
 *
 * Broadcasting (NumPy's rules, which PyTorch follows): shapes align at their
 * last dims; each pair of dims must be equal or one of them 1; missing
 * leading dims count as 1. A broadcast input is handed to the backend as a
 * view of the output's shape with stride 0 along stretched dims, so no copy
 * is made; in backward, cg__accumulate_grad sums the gradient back over those
 * dims.
 */
#include <inttypes.h>
#include <string.h>

#include "core/ops_internal.h"
#include "core/dispatch.h"

/* ---- shared helpers -------------------------------------------------- */

cg_status cg__norm_axis(cg_ctx *ctx, const char *what, int axis, int ndim, int *out)
{
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s: axis %d out of range for a %d-d tensor", what, axis, ndim);
    *out = a;
    return CG_OK;
}

cg_status cg__broadcast_shape(cg_ctx *ctx, const char *what, const cg_tensor *a,
                              const cg_tensor *b, int *ndim, int64_t *shape)
{
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    for (int i = 0; i < nd; i++) {
        int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char sa[128], sb[128];
            return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "%s: shapes %s and %s do not broadcast",
                             what, CG_SHAPE_STR(a, sa), CG_SHAPE_STR(b, sb));
        }
        shape[i] = da == 1 ? db : da;
    }
    *ndim = nd;
    return CG_OK;
}

struct cg_view cg__view_bcast(const cg_tensor *t, int ndim, const int64_t *shape)
{
    struct cg_view v;
    memset(&v, 0, sizeof v);
    v.buf = t->st->buf;
    v.off = t->offset;
    v.ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        int it = i - (ndim - t->ndim);
        v.shape[i] = shape[i];
        v.strides[i] = it >= 0 && t->shape[it] == shape[i] ? t->strides[it] : 0;
    }
    return v;
}

/* v = t as a 1-d view of n elements (t contiguous), padded as coalescing
 * pads. Filled in place: views are large structs to copy around. */
static void view_flat(struct cg_view *v, const cg_tensor *t, int64_t n)
{
    v->buf = t->st->buf;
    v->off = t->offset;
    v->ndim = 1;
    v->shape[0] = n;
    v->strides[0] = 1;
    for (int i = 1; i < CG_MAX_DIMS; i++) {
        v->shape[i] = 1;
        v->strides[i] = 0;
    }
}

/* Whether t has out's shape and is contiguous: no broadcasting to undo. */
static bool dense_like(const cg_tensor *t, const cg_tensor *out)
{
    return cg__shape_eq(t, out) && cg_tensor_is_contiguous(t);
}

cg_status cg__ew(cg_ctx *ctx, const char *what, enum cg_ew_op op, float p0, float p1,
                 cg_tensor *out, const cg_tensor *a, const cg_tensor *b)
{
    int64_t n = cg__tnumel(out);
    if (n == 0) return CG_OK;
    struct cg_view vo, va, vb;
    if (cg_tensor_is_contiguous(out) && dense_like(a, out) && (!b || dense_like(b, out))) {
        /* The common case, one shape and every tensor contiguous: flat
         * views, which is what coalescing would give, without its work. */
        view_flat(&vo, out, n);
        view_flat(&va, a, n);
        if (b) view_flat(&vb, b, n);
    } else {
        vo = cg_tensor_view(out);
        va = cg__view_bcast(a, out->ndim, out->shape);
        if (b) vb = cg__view_bcast(b, out->ndim, out->shape);
        cg__views_coalesce(&vo, &va, b ? &vb : NULL);
    }
    return cg__be_ew(ctx, what, op, p0, p1, &vo, &va, b ? &vb : NULL);
}

cg_tensor *cg__ew_new(const char *what, enum cg_ew_op op, float p0, float p1, cg_tensor *a,
                      cg_tensor *b)
{
    if (!a || (op >= CG_EW_FIRST_BINARY && !b)) return NULL;
    cg_ctx *ctx = cg__ctx_of(a);
    int nd = a->ndim;
    int64_t shape[CG_MAX_DIMS];
    if (b) {
        if (cg__broadcast_shape(ctx, what, a, b, &nd, shape) != CG_OK) return NULL;
    } else {
        memcpy(shape, a->shape, sizeof(int64_t) * (size_t)a->ndim);
    }
    cg_tensor *out = cg__tensor_new(ctx, nd, shape);
    if (!out) return NULL;
    if (cg__ew(ctx, what, op, p0, p1, out, a, b) != CG_OK) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

/* ---- binary ops ------------------------------------------------------ */

static cg_status add_backward(struct cg_node *n, cg_tensor *out, cg_tensor *g)
{
    /* g: out's shape; accumulate reduces it to each input's shape */
    cg_status st = cg__accumulate_grad(n->inputs[0], g);
    return st ? st : cg__accumulate_grad(n->inputs[1], g);
}

static cg_status sub_backward(struct cg_node *n, cg_tensor *out, cg_tensor *g)
{
    cg_status st = cg__accumulate_grad(n->inputs[0], g);
    if (st || !cg__input_needs_grad(n, 1)) return st;
    return cg__accumulate_grad(n->inputs[1], cg__ew_new("sub backward", CG_EW_NEG, 0, 0, g, NULL));
}

static cg_status mul_backward(struct cg_node *n, cg_tensor *out, cg_tensor *g)
{
    cg_tensor *a = n->inputs[0], *b = n->inputs[1];
    cg_status st = CG_OK;
    if (cg__input_needs_grad(n, 0))
        st = cg__accumulate_grad(a, cg__ew_new("mul backward", CG_EW_MUL, 0, 0, g, b));
    if (!st && cg__input_needs_grad(n, 1))
        st = cg__accumulate_grad(b, cg__ew_new("mul backward", CG_EW_MUL, 0, 0, g, a));
    return st;
}

static cg_status div_backward(struct cg_node *n, cg_tensor *out, cg_tensor *g)
{
    /* out = a / b: d/da = 1 / b, d/db = -a / b^2 = -out / b */
    cg_tensor *b = n->inputs[1];
    cg_status st = CG_OK;
    if (cg__input_needs_grad(n, 0))
        st = cg__accumulate_grad(n->inputs[0], cg__ew_new("div backward", CG_EW_DIV, 0, 0, g, b));
    if (!st && cg__input_needs_grad(n, 1)) {
        cg_tensor *go = cg__ew_new("div backward", CG_EW_MUL, 0, 0, g, out);
        cg_tensor *gob = cg__ew_new("div backward", CG_EW_DIV, 0, 0, go, b);
        st = cg__accumulate_grad(b, cg__ew_new("div backward", CG_EW_NEG, 0, 0, gob, NULL));
    }
    return st;
}

/* maximum / minimum: m marks where b wins (strictly), so ties go to a. */
static cg_status minmax_backward(struct cg_node *n, cg_tensor *g, cg_tensor *m)
{
    cg_tensor *gb = cg__ew_new("maximum/minimum backward", CG_EW_MUL, 0, 0, g, m);
    cg_status st = CG_OK;
    if (cg__input_needs_grad(n, 0))
        st = cg__accumulate_grad(n->inputs[0],
                                 cg__ew_new("maximum/minimum backward", CG_EW_SUB, 0, 0, g, gb));
    if (!st) st = cg__accumulate_grad(n->inputs[1], gb);
    return st;
}

static cg_status maximum_backward(struct cg_node *n, cg_tensor *out, cg_tensor *g)
{
    return minmax_backward(
        n, g, cg__ew_new("maximum backward", CG_EW_GT, 0, 0, n->inputs[1], n->inputs[0]));
}

static cg_status minimum_backward(struct cg_node *n, cg_tensor *out, cg_tensor *g)
{
    return minmax_backward(
        n, g, cg__ew_new("minimum backward", CG_EW_GT, 0, 0, n->inputs[0], n->inputs[1]));
}

static cg_tensor *binary(const char *name, enum cg_ew_op op, cg_tensor *a, cg_tensor *b,
                         cg_backward_fn backward)
{
    if (!a || !b) return NULL;
    cg_ctx *ctx = cg__ctx_of(a);
    if (cg__ctx_of(b) != ctx) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: tensors of two different contexts", name);
        return NULL;
    }
    cg_tensor *out = cg__ew_new(name, op, 0, 0, a, b);
    if (!out || !backward) return out;
    bool failed;
    cg__record(out, name, backward, 2, (cg_tensor *[]){a, b}, 0, NULL, &failed);
    if (failed) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

CG_API cg_tensor *cg_add(cg_tensor *a, cg_tensor *b) { return binary("cg_add", CG_EW_ADD, a, b, add_backward); }
CG_API cg_tensor *cg_sub(cg_tensor *a, cg_tensor *b) { return binary("cg_sub", CG_EW_SUB, a, b, sub_backward); }
CG_API cg_tensor *cg_mul(cg_tensor *a, cg_tensor *b) { return binary("cg_mul", CG_EW_MUL, a, b, mul_backward); }
CG_API cg_tensor *cg_div(cg_tensor *a, cg_tensor *b) { return binary("cg_div", CG_EW_DIV, a, b, div_backward); }
CG_API cg_tensor *cg_maximum(cg_tensor *a, cg_tensor *b)
{
    return binary("cg_maximum", CG_EW_MAXIMUM, a, b, maximum_backward);
}
CG_API cg_tensor *cg_minimum(cg_tensor *a, cg_tensor *b)
{
    return binary("cg_minimum", CG_EW_MINIMUM, a, b, minimum_backward);
}
CG_API cg_tensor *cg_eq(cg_tensor *a, cg_tensor *b) { return binary("cg_eq", CG_EW_EQ, a, b, NULL); }
CG_API cg_tensor *cg_gt(cg_tensor *a, cg_tensor *b) { return binary("cg_gt", CG_EW_GT, a, b, NULL); }

/* ---- unary and scalar ops -------------------------------------------- *
 * Backward formulas: x is the input (inputs[0]), y the output, g the
 * upstream gradient; f[0], f[1] are the op's scalars. */

static cg_status unary_acc(struct cg_node *n, cg_tensor *gx)
{
    return cg__accumulate_grad(n->inputs[0], gx);
}

static cg_status affine_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    if (n->f[0] == 1.0f) return unary_acc(n, g); /* add_scalar */
    return unary_acc(n, cg__ew_new("affine backward", CG_EW_AFFINE, n->f[0], 0, g, NULL));
}

static cg_status neg_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    return unary_acc(n, cg__ew_new("neg backward", CG_EW_NEG, 0, 0, g, NULL));
}

static cg_status exp_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    return unary_acc(n, cg__ew_new("exp backward", CG_EW_MUL, 0, 0, g, y)); /* g * y */
}

static cg_status log_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    return unary_acc(n, cg__ew_new("log backward", CG_EW_DIV, 0, 0, g, n->inputs[0])); /* g / x */
}

static cg_status sqrt_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* g / (2 y) */
    cg_tensor *gy = cg__ew_new("sqrt backward", CG_EW_DIV, 0, 0, g, y);
    return unary_acc(n, cg__ew_new("sqrt backward", CG_EW_AFFINE, 0.5f, 0, gy, NULL));
}

static cg_status abs_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *s = cg__ew_new("abs backward", CG_EW_SIGN, 0, 0, n->inputs[0], NULL);
    return unary_acc(n, cg__ew_new("abs backward", CG_EW_MUL, 0, 0, g, s));
}

/* The backend's fused helpers: RELU/GELU/POW/CLAMP_BACKWARD read x,
 * SIGMOID/TANH_BACKWARD read y. */
static cg_status x_helper_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    return unary_acc(n, cg__ew_new(n->name, (enum cg_ew_op)n->i[0], n->f[0], n->f[1],
                                   n->inputs[0], g));
}

static cg_status y_helper_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    return unary_acc(n, cg__ew_new(n->name, (enum cg_ew_op)n->i[0], 0, 0, y, g));
}

static cg_tensor *unary(const char *name, enum cg_ew_op op, float p0, float p1, cg_tensor *t,
                        cg_backward_fn backward, enum cg_ew_op helper)
{
    if (!t) return NULL;
    cg_tensor *out = cg__ew_new(name, op, p0, p1, t, NULL);
    if (!out) return NULL;
    bool failed;
    struct cg_node *n = cg__record(out, name, backward, 1, &t, 0, NULL, &failed);
    if (failed) {
        cg_tensor_free(out);
        return NULL;
    }
    if (n) {
        n->f[0] = p0;
        n->f[1] = p1;
        n->i[0] = helper;
    }
    return out;
}

CG_API cg_tensor *cg_add_scalar(cg_tensor *t, float s)
{
    return unary("cg_add_scalar", CG_EW_AFFINE, 1.0f, s, t, affine_backward, 0);
}
CG_API cg_tensor *cg_mul_scalar(cg_tensor *t, float s)
{
    return unary("cg_mul_scalar", CG_EW_AFFINE, s, 0.0f, t, affine_backward, 0);
}
CG_API cg_tensor *cg_affine(cg_tensor *t, float scale, float shift)
{
    return unary("cg_affine", CG_EW_AFFINE, scale, shift, t, affine_backward, 0);
}
CG_API cg_tensor *cg_pow_scalar(cg_tensor *t, float p)
{
    return unary("cg_pow_scalar", CG_EW_POW_SCALAR, p, 0, t, x_helper_backward,
                 CG_EW_POW_SCALAR_BACKWARD);
}
CG_API cg_tensor *cg_clamp(cg_tensor *t, float lo, float hi)
{
    if (t && !(lo <= hi)) {
        cg__error(cg__ctx_of(t), CG_STATUS_INVALID_ARGUMENT, "cg_clamp: lo %g > hi %g",
                  (double)lo, (double)hi);
        return NULL;
    }
    return unary("cg_clamp", CG_EW_CLAMP, lo, hi, t, x_helper_backward, CG_EW_CLAMP_BACKWARD);
}
CG_API cg_tensor *cg_neg(cg_tensor *t) { return unary("cg_neg", CG_EW_NEG, 0, 0, t, neg_backward, 0); }
CG_API cg_tensor *cg_exp(cg_tensor *t) { return unary("cg_exp", CG_EW_EXP, 0, 0, t, exp_backward, 0); }
CG_API cg_tensor *cg_log(cg_tensor *t) { return unary("cg_log", CG_EW_LOG, 0, 0, t, log_backward, 0); }
CG_API cg_tensor *cg_sqrt(cg_tensor *t) { return unary("cg_sqrt", CG_EW_SQRT, 0, 0, t, sqrt_backward, 0); }
CG_API cg_tensor *cg_abs(cg_tensor *t) { return unary("cg_abs", CG_EW_ABS, 0, 0, t, abs_backward, 0); }
CG_API cg_tensor *cg_relu(cg_tensor *t)
{
    return unary("cg_relu", CG_EW_RELU, 0, 0, t, x_helper_backward, CG_EW_RELU_BACKWARD);
}
CG_API cg_tensor *cg_gelu(cg_tensor *t)
{
    return unary("cg_gelu", CG_EW_GELU, 0, 0, t, x_helper_backward, CG_EW_GELU_BACKWARD);
}
CG_API cg_tensor *cg_sigmoid(cg_tensor *t)
{
    return unary("cg_sigmoid", CG_EW_SIGMOID, 0, 0, t, y_helper_backward, CG_EW_SIGMOID_BACKWARD);
}
CG_API cg_tensor *cg_tanh(cg_tensor *t)
{
    return unary("cg_tanh", CG_EW_TANH, 0, 0, t, y_helper_backward, CG_EW_TANH_BACKWARD);
}

/* ---- in place, not recorded ------------------------------------------ */

static cg_status check_writable(cg_ctx *ctx, const char *what, const cg_tensor *t)
{
    for (int i = 0; i < t->ndim; i++)
        if (t->strides[i] == 0 && t->shape[i] > 1)
            return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s: the tensor is an expanded (stride 0) view; write to a "
                             "cg_contiguous copy instead", what);
    return CG_OK;
}

CG_API cg_status cg_tensor_fill(cg_tensor *t, float value)
{
    if (!t) return CG_STATUS_INVALID_ARGUMENT;
    cg_ctx *ctx = cg__ctx_of(t);
    cg_status st = check_writable(ctx, "cg_tensor_fill", t);
    if (st != CG_OK || cg__tnumel(t) == 0) return st;
    cg__storage_written(t->st);
    struct cg_view v = cg__view_of(t);
    return cg__be_fill(ctx, "cg_tensor_fill", &v, value);
}

CG_API cg_status cg_tensor_copy(cg_tensor *dst, cg_tensor *src)
{
    if (!dst || !src) return CG_STATUS_INVALID_ARGUMENT;
    cg_ctx *ctx = cg__ctx_of(dst);
    int nd;
    int64_t shape[CG_MAX_DIMS];
    cg_status st = cg__broadcast_shape(ctx, "cg_tensor_copy", dst, src, &nd, shape);
    if (st != CG_OK) return st;
    if (nd != dst->ndim || memcmp(shape, dst->shape, sizeof(int64_t) * (size_t)nd) != 0) {
        char sa[128], sb[128];
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_tensor_copy: source %s does not broadcast to destination %s",
                         CG_SHAPE_STR(src, sa), CG_SHAPE_STR(dst, sb));
    }
    if ((st = check_writable(ctx, "cg_tensor_copy", dst)) != CG_OK) return st;
    cg__storage_written(dst->st);
    return cg__ew(ctx, "cg_tensor_copy", CG_EW_COPY, 0, 0, dst, src, NULL);
}
