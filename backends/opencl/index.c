/*
 * backends/opencl/index.c — row gather / scatter-add (embeddings) and
 * per-row pick / pick-add (cl/index.cl). Index tensors are float32 holding
 * exact integers, range-checked by the frontend.
 */
#include "cl_backend.h"

static cg_status index_launch(struct cg_cl *cl, enum cg_cl_kern k, const char *what,
                              struct cg_ptr dst, int64_t dst_n, struct cg_ptr src,
                              int64_t src_n, struct cg_ptr idx, int64_t n_idx,
                              int64_t a, int64_t b, int64_t items)
{
    if (a < 0 || b < 0)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: negative size (%lld, %lld)",
                            what, (long long)a, (long long)b);
    if (items == 0)
        return CG_OK;
    cg_status st = cg_cl_check_range(cl, what, "idx", idx, n_idx);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "src", src, src_n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "dst", dst, dst_n);
    if (st != CG_OK)
        return st;
    cl_long dso = dst.off, so = src.off, xo = idx.off, ca = a, cb = b;
    struct cg_cl_arg args[] = {CG_ARG(dst.buf->mem), CG_ARG(dso), CG_ARG(src.buf->mem),
                               CG_ARG(so), CG_ARG(idx.buf->mem), CG_ARG(xo), CG_ARG(ca),
                               CG_ARG(cb)};
    return cg_cl_launch_n(cl, k, args, 8, items);
}

/* out: (n, inner); src: (rows, inner); idx: (n). The source's row count is
 * not passed: only the start of src is checked here, the frontend checked
 * idx against rows. */
cg_status cg_cl_index_rows(void *ctx, struct cg_ptr out, struct cg_ptr src,
                           struct cg_ptr idx, int64_t n, int64_t inner)
{
    return index_launch(ctx, CG_CL_K_INDEX_ROWS, "index_rows", out, n * inner, src, 0,
                        idx, n, n, inner, n * inner);
}

/* dst: (rows, inner); src: (n, inner); idx: (n). */
cg_status cg_cl_index_rows_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                               struct cg_ptr idx, int64_t n, int64_t inner)
{
    return index_launch(ctx, CG_CL_K_INDEX_ROWS_ADD, "index_rows_add", dst, 0, src,
                        n * inner, idx, n, n, inner, n * inner);
}

/* out: (rows); src: (rows, cols); idx: (rows). */
cg_status cg_cl_pick(void *ctx, struct cg_ptr out, struct cg_ptr src, struct cg_ptr idx,
                     int64_t rows, int64_t cols)
{
    return index_launch(ctx, CG_CL_K_PICK, "pick", out, rows, src, rows * cols, idx,
                        rows, rows, cols, rows);
}

/* dst: (rows, cols); src: (rows); idx: (rows). */
cg_status cg_cl_pick_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                         struct cg_ptr idx, int64_t rows, int64_t cols)
{
    return index_launch(ctx, CG_CL_K_PICK_ADD, "pick_add", dst, rows * cols, src, rows,
                        idx, rows, rows, cols, rows);
}
