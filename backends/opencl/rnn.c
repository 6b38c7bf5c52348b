/*
 * backends/opencl/rnn.c — the fused sequence-model primitives: an LSTM
 * cell step forward and backward in one kernel each (cl/rnn.cl), and the
 * causal softmax in one kernel (cl/softmax.cl, sharing softmax's row
 * reduction). Formulas in include/clgrad/backend.h; queued
 * without waiting, like every primitive.
 */
#include "cl_backend.h"

/* backend.h's shared check, with the function's name. */
static cg_status lstm_sizes(struct cg_cl *cl, const char *what, int64_t batch,
                            int64_t hidden)
{
    char msg[96];
    cg_status st = cg_lstm_sizes_check(batch, hidden, msg, sizeof msg);
    return st == CG_OK ? CG_OK : cg_cl_errorf(cl, st, "%s: %s", what, msg);
}

cg_status cg_cl_lstm_cell(void *ctx, struct cg_ptr c, struct cg_ptr h, struct cg_ptr save,
                          struct cg_ptr gates, struct cg_ptr c_prev, int64_t batch,
                          int64_t hidden)
{
    /* c, h, c_prev: (B, H); save: (B, 5H); gates: (B, 4H) */
    struct cg_cl *cl = ctx;
    const int64_t n = batch * hidden;
    cg_status st = lstm_sizes(cl, "lstm_cell", batch, hidden);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "lstm_cell", "c", c, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "lstm_cell", "h", h, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "lstm_cell", "save", save, 5 * n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "lstm_cell", "gates", gates, 4 * n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "lstm_cell", "c_prev", c_prev, n);
    if (st != CG_OK || n == 0)
        return st;
    cl_long oc = c.off, oh = h.off, os = save.off, og = gates.off, op = c_prev.off;
    cl_long cn = n, ch = hidden;
    struct cg_cl_arg args[] = {CG_ARG(c.buf->mem),     CG_ARG(oc), CG_ARG(h.buf->mem),
                               CG_ARG(oh),             CG_ARG(save.buf->mem), CG_ARG(os),
                               CG_ARG(gates.buf->mem), CG_ARG(og), CG_ARG(c_prev.buf->mem),
                               CG_ARG(op),             CG_ARG(cn), CG_ARG(ch)};
    return cg_cl_launch_n(cl, CG_CL_K_LSTM_CELL_FWD, args, 12, n);
}

cg_status cg_cl_lstm_cell_backward(void *ctx, struct cg_ptr g_gates, struct cg_ptr g_c_prev,
                                   struct cg_ptr gh, struct cg_ptr gc, struct cg_ptr save,
                                   struct cg_ptr c_prev, int64_t batch, int64_t hidden)
{
    /* g_gates: (B, 4H); g_c_prev, gh, gc, c_prev: (B, H); save: (B, 5H) */
    struct cg_cl *cl = ctx;
    const char *w = "lstm_cell_backward";
    const int64_t n = batch * hidden;
    cg_status st = lstm_sizes(cl, w, batch, hidden);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "g_gates", g_gates, 4 * n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "g_c_prev", g_c_prev, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "gh", gh, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "gc", gc, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "save", save, 5 * n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, w, "c_prev", c_prev, n);
    if (st != CG_OK || n == 0)
        return st;
    cl_long odg = g_gates.off, odc = g_c_prev.off, ogh = gh.off, ogc = gc.off;
    cl_long os = save.off, op = c_prev.off, cn = n, ch = hidden;
    struct cg_cl_arg args[] = {
        CG_ARG(g_gates.buf->mem), CG_ARG(odg), CG_ARG(g_c_prev.buf->mem), CG_ARG(odc),
        CG_ARG(gh.buf->mem),      CG_ARG(ogh), CG_ARG(gc.buf->mem),       CG_ARG(ogc),
        CG_ARG(save.buf->mem),    CG_ARG(os),  CG_ARG(c_prev.buf->mem),   CG_ARG(op),
        CG_ARG(cn),               CG_ARG(ch)};
    return cg_cl_launch_n(cl, CG_CL_K_LSTM_CELL_BWD, args, 14, n);
}

cg_status cg_cl_softmax_causal(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                               int64_t cols, int64_t period)
{
    /* out, in: (rows, cols) */
    struct cg_cl *cl = ctx;
    char msg[96];
    cg_status st = cg_softmax_causal_check(rows, cols, period, msg, sizeof msg);
    if (st != CG_OK)
        return cg_cl_errorf(cl, st, "softmax_causal: %s", msg);
    st = cg_cl_check_range(cl, "softmax_causal", "out", out, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "softmax_causal", "in", in, rows * cols);
    if (st != CG_OK || rows * cols == 0)
        return st;
    /* One work-group per row, a power of two no wider than the row needs
     * (as reduce.c's softmax). */
    size_t local = cg_cl_local_size(cl, CG_CL_K_SOFTMAX_CAUSAL);
    while (local > 32 && (int64_t)(local / 2) >= cols)
        local /= 2;
    size_t groups = rows < 65536 ? (size_t)rows : 65536;
    cl_long oo = out.off, io = in.off, cr = rows, cc = cols, cp = period;
    struct cg_cl_arg args[] = {CG_ARG(out.buf->mem), CG_ARG(oo), CG_ARG(in.buf->mem),
                               CG_ARG(io),           CG_ARG(cr), CG_ARG(cc),
                               CG_ARG(cp),           CG_ARG_LOCAL(local * sizeof(cl_float))};
    return cg_cl_launch(cl, CG_CL_K_SOFTMAX_CAUSAL, args, 8, groups, local);
}
