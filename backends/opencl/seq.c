/*
 * backends/opencl/seq.c — the Transformer feed-forward's bias + GELU,
 * forward and backward, one kernel each (cl/seq.cl; backend.h states the
 * formulas; GELU is PyTorch's exact erf form, approximate='none',
 * evaluated as the cpu backend's cpu_seq.c does).
 *
 * Without these the FFN ran the bias add and the GELU as two ops: fuse.c
 * chained them into one kernel, which also stored the pre-activation, and
 * the backward ran GELU's backward plus the add's gradient as further ops.
 * Queued without waiting, like every primitive.
 */
#include "cl_backend.h"

/* The kernels take one work-item per element on a 2-d range (cols, rows)
 * with no loop (PoCL vectorises only straight-line bodies); cg_cl_launch_2d
 * splits very tall blocks. */

static cg_status bias_gelu_check(struct cg_cl *cl, const char *what, int64_t rows,
                                 int64_t cols, struct cg_ptr bias)
{
    if (rows < 0 || cols < 0 || (cols > 0 && rows > INT64_MAX / cols))
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: bad shape (%lld, %lld)",
                            what, (long long)rows, (long long)cols);
    return bias.buf ? cg_cl_check_range(cl, what, "bias", bias, cols) : CG_OK;
}

/* The bias argument: with none, the kernel still loads one (straight-line
 * code) and selects it away, so the first row of `in` stands in for it. */
static void bias_arg(struct cg_ptr bias, struct cg_ptr in, cl_mem *mem, cl_long *off,
                     cl_int *has)
{
    *has = bias.buf != NULL;
    *mem = bias.buf ? bias.buf->mem : in.buf->mem;
    *off = bias.buf ? bias.off : in.off;
}

cg_status cg_cl_bias_gelu(void *ctx, struct cg_ptr out, struct cg_ptr in, struct cg_ptr bias,
                          int64_t rows, int64_t cols)
{
    /* out, in: (rows, cols); bias: (cols) or none */
    struct cg_cl *cl = ctx;
    const int64_t n = rows * cols;
    cg_status st = bias_gelu_check(cl, "bias_gelu", rows, cols, bias);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "bias_gelu", "out", out, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "bias_gelu", "in", in, n);
    cl_mem bm;
    cl_long bo, cc = cols;
    cl_int hb;
    if (st != CG_OK || n == 0)
        return st;
    bias_arg(bias, in, &bm, &bo, &hb);
    cl_long oo = out.off, io = in.off;
    struct cg_cl_arg args[] = {CG_ARG(out.buf->mem), CG_ARG(oo), CG_ARG(in.buf->mem),
                               CG_ARG(io),           CG_ARG(bm), CG_ARG(bo),
                               CG_ARG(hb),           CG_ARG(cc)};
    return cg_cl_launch_2d(cl, CG_CL_K_BIAS_GELU_FWD, args, 8, (size_t)cols, (size_t)rows);
}

cg_status cg_cl_bias_gelu_backward(void *ctx, struct cg_ptr gx, struct cg_ptr in,
                                   struct cg_ptr bias, struct cg_ptr gy, int64_t rows,
                                   int64_t cols)
{
    /* gx, in, gy: (rows, cols); bias: (cols) or none */
    struct cg_cl *cl = ctx;
    const char *w = "bias_gelu_backward";
    const int64_t n = rows * cols;
    cg_status st = bias_gelu_check(cl, w, rows, cols, bias);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "gx", gx, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "in", in, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "gy", gy, n);
    cl_mem bm;
    cl_long bo, cc = cols;
    cl_int hb;
    if (st != CG_OK || n == 0)
        return st;
    bias_arg(bias, in, &bm, &bo, &hb);
    cl_long go = gx.off, io = in.off, yo = gy.off;
    struct cg_cl_arg args[] = {CG_ARG(gx.buf->mem), CG_ARG(go), CG_ARG(in.buf->mem),
                               CG_ARG(io),          CG_ARG(bm), CG_ARG(bo),
                               CG_ARG(hb),          CG_ARG(gy.buf->mem), CG_ARG(yo),
                               CG_ARG(cc)};
    return cg_cl_launch_2d(cl, CG_CL_K_BIAS_GELU_BWD, args, 10, (size_t)cols, (size_t)rows);
}
