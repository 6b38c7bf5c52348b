/*
 * backends/opencl/ew.c — fill and elementwise ops over strided views
 * (cl/ew.cl).
 *
 * Two kernels per op family: a flat one when out is contiguous and each
 * input is either laid out like out or a broadcast scalar (the common case:
 * activations, bias-free arithmetic, scaling by a scalar tensor), and a
 * general strided one (ndim <= 6, shapes and strides passed as long8).
 *
 * Ops over a contiguous out whose inputs are flat, or a row or column
 * broadcast of a (rows, cols) out (a bias), are not launched here but
 * appended to the pending chain of fuse.c, which launches a run of them as
 * one kernel; the rest (and everything with CLGRAD_FUSE=0, or inside a
 * GEMM) launch at once.
 */
#include "cl_backend.h"

#include <string.h>

/* cl/ew.cl numbers the ops from this enum (tools/embed_cl.py copies it). */
_Static_assert(CG_MAX_DIMS <= 8, "shapes travel as long8");

static int64_t view_numel(const struct cg_view *v)
{
    int64_t n = 1;
    for (int d = 0; d < v->ndim; ++d)
        n *= v->shape[d];
    return n;
}

/* Row-major contiguous, ignoring size-1 dims. */
static int view_contiguous(const struct cg_view *v)
{
    int64_t expect = 1;
    for (int d = v->ndim - 1; d >= 0; --d) {
        if (v->shape[d] != 1 && v->strides[d] != expect)
            return 0;
        expect *= v->shape[d];
    }
    return 1;
}

/* Every dim broadcast: a single element. */
static int view_scalar(const struct cg_view *v)
{
    for (int d = 0; d < v->ndim; ++d)
        if (v->shape[d] != 1 && v->strides[d] != 0)
            return 0;
    return 1;
}

/* Checks a view's rank, shape and that every element it reaches lies in its
 * buffer. */
static cg_status view_check(struct cg_cl *cl, const char *what, const char *arg,
                            const struct cg_view *v, const struct cg_view *like)
{
    if (!v || !v->buf)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: %s is NULL", what, arg);
    if (v->ndim < 0 || v->ndim > CG_MAX_DIMS)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: %s has ndim %d (max %d)",
                            what, arg, v->ndim, CG_MAX_DIMS);
    if (like && (v->ndim != like->ndim ||
                 memcmp(v->shape, like->shape, sizeof(int64_t) * (size_t)v->ndim) != 0))
        return cg_cl_errorf(cl, CG_STATUS_SHAPE_MISMATCH,
                            "%s: %s's shape differs from out's", what, arg);
    int64_t lo = v->off, hi = v->off;
    for (int d = 0; d < v->ndim; ++d) {
        if (v->shape[d] < 0)
            return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: %s has shape[%d] = %lld",
                                what, arg, d, (long long)v->shape[d]);
        if (v->shape[d] == 0)
            return CG_OK;   /* empty: reaches nothing */
        int64_t span = (v->shape[d] - 1) * v->strides[d];
        if (span < 0)
            lo += span;
        else
            hi += span;
    }
    struct cg_ptr p = {v->buf, lo};
    return cg_cl_check_range(cl, what, arg, p, hi - lo + 1);
}

static void pack8(const int64_t *src, int n, cl_long8 *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < n; ++i)
        out->s[i] = src[i];
}

cg_status cg_cl_fill_range(struct cg_cl *cl, struct cg_ptr p, int64_t n, float value)
{
    if (n <= 0)
        return CG_OK;
    cl_long off = p.off, cn = n;
    struct cg_cl_arg args[] = {CG_ARG(p.buf->mem), CG_ARG(off), CG_ARG(value), CG_ARG(cn)};
    return cg_cl_launch_n(cl, CG_CL_K_FILL_FLAT, args, 4, n);
}

cg_status cg_cl_fill(void *ctx, const struct cg_view *out, float value)
{
    struct cg_cl *cl = ctx;
    cg_status st = view_check(cl, "fill", "out", out, NULL);
    if (st != CG_OK)
        return st;
    int64_t n = view_numel(out);
    if (n == 0)
        return CG_OK;
    if (view_contiguous(out)) {
        struct cg_ptr p = {out->buf, out->off};
        if (cl->cfg.fuse)
            return cg_cl_fuse_ew(cl, CG_CL_FUSE_FILL, value, 0.0f, p, n, NULL, NULL);
        return cg_cl_fill_range(cl, p, n, value);
    }
    cl_long off = out->off, cn = n;
    cl_int ndim = out->ndim;
    cl_long8 shape, so;
    pack8(out->shape, out->ndim, &shape);
    pack8(out->strides, out->ndim, &so);
    struct cg_cl_arg args[] = {CG_ARG(out->buf->mem), CG_ARG(off), CG_ARG(value),
                               CG_ARG(ndim), CG_ARG(shape), CG_ARG(so), CG_ARG(cn)};
    return cg_cl_launch_n(cl, CG_CL_K_FILL_STRIDED, args, 7, n);
}

/* Flat step of an input: 1 if laid out like a contiguous out, 0 if a
 * broadcast scalar, -1 otherwise. */
static int flat_step(const struct cg_view *v)
{
    if (view_scalar(v))
        return 0;
    return view_contiguous(v) ? 1 : -1;
}

/* How a fused chain reads input v of a contiguous out: the flat cases, and
 * a (rows, cols) view broadcast along rows (a bias: strides (0, 1)) or
 * along columns (strides (1, 0)). 0 when none applies. */
static int fuse_src_of(const struct cg_view *v, struct cg_cl_fuse_src *s)
{
    s->buf = v->buf;
    s->off = v->off;
    s->div = 1;
    int step = flat_step(v);
    if (step >= 0) {
        s->mode = step ? CG_CL_FUSE_CONTIG : CG_CL_FUSE_SCALAR;
        return 1;
    }
    if (v->ndim != 2)
        return 0;
    s->div = v->shape[1];
    if (v->strides[0] == 0 && v->strides[1] == 1) {
        s->mode = CG_CL_FUSE_ROW;
        return 1;
    }
    if (v->strides[0] == 1 && v->strides[1] == 0) {
        s->mode = CG_CL_FUSE_COL;
        return 1;
    }
    return 0;
}

cg_status cg_cl_ew(void *ctx, enum cg_ew_op op, float p0, float p1,
                   const struct cg_view *out, const struct cg_view *a,
                   const struct cg_view *b)
{
    struct cg_cl *cl = ctx;
    if ((int)op < 0 || op >= CG_EW_COUNT)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "ew: unknown op %d", (int)op);
    int binary = op >= CG_EW_FIRST_BINARY;
    cg_status st = view_check(cl, "ew", "out", out, NULL);
    if (st == CG_OK)
        st = view_check(cl, "ew", "a", a, out);
    if (st == CG_OK && binary)
        st = view_check(cl, "ew", "b", b, out);
    if (st != CG_OK)
        return st;
    /* Unary ops pass a again as b (with b's index unused by the op). */
    const struct cg_view *bb = binary ? b : a;
    int64_t n = view_numel(out);
    if (n == 0)
        return CG_OK;

    struct cg_cl_fuse_src fa, fb;
    if (cl->cfg.fuse && view_contiguous(out) && fuse_src_of(a, &fa) &&
        (!binary || fuse_src_of(b, &fb))) {
        struct cg_ptr po = {out->buf, out->off};
        return cg_cl_fuse_ew(cl, (int)op, p0, p1, po, n, &fa, binary ? &fb : NULL);
    }
    cl_int cop = (cl_int)op;
    cl_long cn = n, oo = out->off, ao = a->off, bo = bb->off;
    int sa = flat_step(a), sb = binary ? flat_step(b) : 0;
    if (view_contiguous(out) && sa >= 0 && sb >= 0) {
        cl_long csa = sa, csb = sb;
        struct cg_cl_arg args[] = {CG_ARG(out->buf->mem), CG_ARG(oo), CG_ARG(a->buf->mem),
                                   CG_ARG(ao), CG_ARG(csa), CG_ARG(bb->buf->mem),
                                   CG_ARG(bo), CG_ARG(csb), CG_ARG(cop), CG_ARG(p0),
                                   CG_ARG(p1), CG_ARG(cn)};
        return cg_cl_launch_n(cl, CG_CL_K_EW_FLAT, args, 12, n);
    }
    cl_int ndim = out->ndim;
    cl_long8 shape, so, sav, sbv;
    pack8(out->shape, out->ndim, &shape);
    pack8(out->strides, out->ndim, &so);
    pack8(a->strides, out->ndim, &sav);
    if (binary)
        pack8(b->strides, out->ndim, &sbv);
    else
        memset(&sbv, 0, sizeof sbv);
    struct cg_cl_arg args[] = {CG_ARG(out->buf->mem), CG_ARG(oo), CG_ARG(a->buf->mem),
                               CG_ARG(ao), CG_ARG(bb->buf->mem), CG_ARG(bo),
                               CG_ARG(cop), CG_ARG(p0), CG_ARG(p1), CG_ARG(ndim),
                               CG_ARG(shape), CG_ARG(so), CG_ARG(sav), CG_ARG(sbv),
                               CG_ARG(cn)};
    return cg_cl_launch_n(cl, CG_CL_K_EW_STRIDED, args, 15, n);
}
