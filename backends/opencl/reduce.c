/*
 * backends/opencl/reduce.c — reductions over the middle axis of
 * (outer, n, inner), and row softmax / log-softmax forward and backward
 * (cl/reduce.cl, cl/softmax.cl).
 */
#include "cl_backend.h"

#include <math.h>

_Static_assert(CG_REDUCE_COUNT == 4, "cl/reduce.cl's enum must list every cg_reduce_op");

static cg_status check_sizes(struct cg_cl *cl, const char *what, int64_t a, int64_t b,
                             int64_t c)
{
    if (a < 0 || b < 0 || c < 0)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "%s: negative size (%lld, %lld, %lld)", what, (long long)a,
                            (long long)b, (long long)c);
    if ((b != 0 && a > INT64_MAX / b) || (a * b != 0 && c > INT64_MAX / (a * b)))
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: size overflows", what);
    return CG_OK;
}

cg_status cg_cl_reduce(void *ctx, enum cg_reduce_op op, struct cg_ptr out,
                       struct cg_ptr in, int64_t outer, int64_t n, int64_t inner,
                       float scale)
{
    struct cg_cl *cl = ctx;
    if ((int)op < 0 || op >= CG_REDUCE_COUNT)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "reduce: unknown op %d",
                            (int)op);
    cg_status st = check_sizes(cl, "reduce", outer, n, inner);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "reduce", "out", out, outer * inner);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "reduce", "in", in, outer * n * inner);
    if (st != CG_OK)
        return st;
    int64_t outputs = outer * inner;
    if (outputs == 0)
        return CG_OK;
    if (n == 0) {   /* backend.h: 0 for SUM and ARGMAX, -inf MAX, +inf MIN */
        float v = op == CG_REDUCE_MAX ? -INFINITY : op == CG_REDUCE_MIN ? INFINITY : 0.0f;
        return cg_cl_fill_range(cl, out, outputs, v);
    }

    cl_int cop = (cl_int)op;
    cl_long oo = out.off, io = in.off, co = outer, cn = n, ci = inner;
    /* Enough outputs to give every lane of the device one (or rows too short
     * to share): one work-item each. Otherwise a work-group per output. */
    size_t lanes = (size_t)cl->compute_units * 256;
    if ((uint64_t)outputs >= lanes || n <= 64) {
        struct cg_cl_arg args[] = {CG_ARG(out.buf->mem), CG_ARG(oo), CG_ARG(in.buf->mem),
                                   CG_ARG(io), CG_ARG(cop), CG_ARG(co), CG_ARG(cn),
                                   CG_ARG(ci), CG_ARG(scale)};
        return cg_cl_launch_n(cl, CG_CL_K_REDUCE_ITEM, args, 9, outputs);
    }
    size_t local = cg_cl_local_size(cl, CG_CL_K_REDUCE_GROUP);
    size_t groups = (uint64_t)outputs < 65536 ? (size_t)outputs : 65536;
    struct cg_cl_arg args[] = {CG_ARG(out.buf->mem), CG_ARG(oo), CG_ARG(in.buf->mem),
                               CG_ARG(io), CG_ARG(cop), CG_ARG(co), CG_ARG(cn),
                               CG_ARG(ci), CG_ARG(scale),
                               CG_ARG_LOCAL(local * sizeof(cl_float)),
                               CG_ARG_LOCAL(local * sizeof(cl_long))};
    return cg_cl_launch(cl, CG_CL_K_REDUCE_GROUP, args, 11, groups, local);
}

/* Local size for a per-row kernel: a power of two, no wider than the row
 * needs. */
static size_t row_local(struct cg_cl *cl, enum cg_cl_kern k, int64_t cols)
{
    size_t l = cg_cl_local_size(cl, k);
    while (l > 32 && (int64_t)(l / 2) >= cols)
        l /= 2;
    return l;
}

cg_status cg_cl_softmax(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                        int64_t cols, int log)
{
    struct cg_cl *cl = ctx;
    cg_status st = check_sizes(cl, "softmax", rows, cols, 1);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "softmax", "out", out, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "softmax", "in", in, rows * cols);
    if (st != CG_OK || rows * cols == 0)
        return st;
    size_t local = row_local(cl, CG_CL_K_SOFTMAX_FWD, cols);
    size_t groups = rows < 65536 ? (size_t)rows : 65536;
    cl_long oo = out.off, io = in.off, cr = rows, cc = cols;
    cl_int lg = log != 0;
    struct cg_cl_arg args[] = {CG_ARG(out.buf->mem), CG_ARG(oo), CG_ARG(in.buf->mem),
                               CG_ARG(io), CG_ARG(cr), CG_ARG(cc), CG_ARG(lg),
                               CG_ARG_LOCAL(local * sizeof(cl_float))};
    return cg_cl_launch(cl, CG_CL_K_SOFTMAX_FWD, args, 8, groups, local);
}

cg_status cg_cl_softmax_backward(void *ctx, struct cg_ptr gx, struct cg_ptr y,
                                 struct cg_ptr gy, int64_t rows, int64_t cols, int log)
{
    struct cg_cl *cl = ctx;
    cg_status st = check_sizes(cl, "softmax_backward", rows, cols, 1);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "softmax_backward", "gx", gx, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "softmax_backward", "y", y, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "softmax_backward", "gy", gy, rows * cols);
    if (st != CG_OK || rows * cols == 0)
        return st;
    size_t local = row_local(cl, CG_CL_K_SOFTMAX_BWD, cols);
    size_t groups = rows < 65536 ? (size_t)rows : 65536;
    cl_long go = gx.off, yo = y.off, gyo = gy.off, cr = rows, cc = cols;
    cl_int lg = log != 0;
    struct cg_cl_arg args[] = {CG_ARG(gx.buf->mem), CG_ARG(go), CG_ARG(y.buf->mem),
                               CG_ARG(yo), CG_ARG(gy.buf->mem), CG_ARG(gyo), CG_ARG(cr),
                               CG_ARG(cc), CG_ARG(lg),
                               CG_ARG_LOCAL(local * sizeof(cl_float))};
    return cg_cl_launch(cl, CG_CL_K_SOFTMAX_BWD, args, 10, groups, local);
}
