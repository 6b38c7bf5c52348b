/*
 * backends/opencl/norm.c — LayerNorm over the last axis, forward in one
 * kernel and backward in one (gx) plus, for the parameters' gradients, a
 * column-sum kernel and a fixed-order combine (cl/norm.cl; backend.h
 * states the formulas: torch.nn.LayerNorm, biased variance).
 *
 * Composed from ops, a LayerNorm ran ~9 kernels forward and ~15 backward
 * (each op and its adjoint); a small Transformer step on PoCL spent a large
 * part of its time there. Every result is independent of timing: row sums
 * are local-memory trees, column sums fixed blocks of rows added in block
 * order. Queued without waiting, like every primitive.
 *
 * Two layouts (cl->cfg.ln_row_items): on GPUs a work-group per row (or per few
 * narrow rows) with local-memory tree sums; on CPU devices (PoCL) a
 * work-item per row with 8-wide vector steps, since PoCL spills every
 * value live across a barrier (cl/norm.cl). PoCL, 2-core EPYC, a (2048,
 * 64) block: forward 4.5 ms with work-groups, 0.09 ms a work-item per row;
 * backward with gw, gb 2.0 ms -> 0.08 ms (the cpu backend: 0.17, 0.29).
 */
#include "cl_backend.h"

/* Work-groups per launch: taller blocks take several launches (as
 * softmax caps its groups), so the global size stays small on any driver. */
#define CG_LN_MAX_GROUPS 65536
/* Column sums: rows per block at least this, and at most this many
 * blocks (the combine's loop), so blocks grow for very tall inputs. */
#define CG_LN_MIN_BLOCK 32
#define CG_LN_MAX_BLOCKS 256

static cg_status ln_shape(struct cg_cl *cl, const char *what, int64_t rows, int64_t cols)
{
    if (rows < 0 || cols < 1 || rows > INT64_MAX / cols)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: bad shape (%lld, %lld)",
                            what, (long long)rows, (long long)cols);
    return CG_OK;
}

static cg_status ln_opt(struct cg_cl *cl, const char *what, const char *arg,
                        struct cg_ptr p, int64_t n)
{
    return p.buf ? cg_cl_check_range(cl, what, arg, p, n) : CG_OK;
}

/* An optional (cols) argument: with none, the kernel still loads from a
 * stand-in (straight-line code, see cl/seq.cl) and selects the load away. */
static void ln_opt_arg(struct cg_ptr p, struct cg_ptr stand_in, cl_mem *mem, cl_long *off,
                       cl_int *has)
{
    *has = p.buf != NULL;
    *mem = p.buf ? p.buf->mem : stand_in.buf->mem;
    *off = p.buf ? p.off : stand_in.off;
}

/* How a row kernel lays out rows: lc = 2^lc_log2 work-items a row, `rows`
 * rows a group of `local`, `per` columns a work-item; single: the
 * one-column kernel (cols <= lc). */
struct cg_ln_shape {
    enum cg_cl_kern k;
    size_t local;
    cl_int lc_log2, per;
    int64_t group_rows;
};

/* The work-group kernels over nr rows; args end with `per` and the local
 * buffer, and the _1 variant (one_k: every column in a work-item of its
 * own) takes no `per`. */
static cg_status ln_launch_groups(struct cg_cl *cl, const struct cg_ln_shape *s,
                                  enum cg_cl_kern one_k, struct cg_cl_arg *args, int nargs,
                                  int64_t nr)
{
    size_t groups = (size_t)((nr + s->group_rows - 1) / s->group_rows);
    if (s->k == one_k) {
        args[nargs - 2] = args[nargs - 1];
        nargs--;
    }
    return cg_cl_launch(cl, s->k, args, nargs, groups, s->local);
}

/* The row-per-work-item kernels (CPU devices): a 1-d launch over rows,
 * work-groups small enough that every compute unit gets a few. */
static cg_status ln_launch_rows(struct cg_cl *cl, enum cg_cl_kern k,
                                const struct cg_cl_arg *args, int nargs, int64_t rows)
{
    size_t local = cg_cl_local_size(cl, k);
    while (local > 1 && (uint64_t)rows / local < 4 * (uint64_t)cl->compute_units)
        local /= 2;
    return cg_cl_launch(cl, k, args, nargs, cg_cl_groups_for(cl, rows, local), local);
}

static struct cg_ln_shape ln_layout(struct cg_cl *cl, enum cg_cl_kern k1, enum cg_cl_kern kn,
                                    int64_t cols)
{
    struct cg_ln_shape s = {.k = k1, .local = cg_cl_local_size(cl, k1)};
    if (cols > (int64_t)s.local) {
        s.k = kn;
        s.local = cg_cl_local_size(cl, kn);
    }
    int64_t lc = 1;
    s.lc_log2 = 0;
    while (lc < cols && lc < (int64_t)s.local) {
        lc *= 2;
        s.lc_log2++;
    }
    s.per = (cl_int)((cols + lc - 1) / lc);
    s.group_rows = (int64_t)s.local / lc;
    return s;
}

cg_status cg_cl_layernorm(void *ctx, struct cg_ptr y, struct cg_ptr mean, struct cg_ptr rstd,
                          struct cg_ptr x, struct cg_ptr w, struct cg_ptr b, int64_t rows,
                          int64_t cols, float eps)
{
    /* y, x: (rows, cols); mean, rstd: (rows); w, b: (cols) or none */
    struct cg_cl *cl = ctx;
    const char *what = "layernorm";
    cg_status st = ln_shape(cl, what, rows, cols);
    if (st == CG_OK && !(eps >= 0.0f))
        st = cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "layernorm: eps %g must be >= 0",
                          (double)eps);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "y", y, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "x", x, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "mean", mean, rows);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "rstd", rstd, rows);
    if (st == CG_OK)
        st = ln_opt(cl, what, "weight", w, cols);
    if (st == CG_OK)
        st = ln_opt(cl, what, "bias", b, cols);
    if (st != CG_OK || rows == 0)
        return st;

    cl_mem wm, bm;
    cl_long wo, bo, cc = cols;
    cl_int hw, hb;
    ln_opt_arg(w, x, &wm, &wo, &hw);
    ln_opt_arg(b, x, &bm, &bo, &hb);
    if (cl->cfg.ln_row_items) {
        cl_long yo = y.off, xo = x.off, mo = mean.off, ro = rstd.off, nr = rows;
        struct cg_cl_arg args[] = {
            CG_ARG(y.buf->mem),    CG_ARG(yo), CG_ARG(mean.buf->mem), CG_ARG(mo),
            CG_ARG(rstd.buf->mem), CG_ARG(ro), CG_ARG(x.buf->mem),    CG_ARG(xo),
            CG_ARG(wm),            CG_ARG(wo), CG_ARG(hw),            CG_ARG(bm),
            CG_ARG(bo),            CG_ARG(hb), CG_ARG(nr),            CG_ARG(cc),
            CG_ARG(eps)};
        return ln_launch_rows(cl, CG_CL_K_LAYERNORM_FWD_ROW, args, 17, rows);
    }
    struct cg_ln_shape s = ln_layout(cl, CG_CL_K_LAYERNORM_FWD_1, CG_CL_K_LAYERNORM_FWD, cols);
    const int64_t chunk = s.group_rows * CG_LN_MAX_GROUPS;
    for (int64_t r = 0; r < rows && st == CG_OK; r += chunk) {
        cl_long nr = rows - r < chunk ? rows - r : chunk;
        cl_long yo = y.off + r * cols, xo = x.off + r * cols, mo = mean.off + r;
        cl_long ro = rstd.off + r;
        struct cg_cl_arg args[] = {
            CG_ARG(y.buf->mem),    CG_ARG(yo), CG_ARG(mean.buf->mem), CG_ARG(mo),
            CG_ARG(rstd.buf->mem), CG_ARG(ro), CG_ARG(x.buf->mem),    CG_ARG(xo),
            CG_ARG(wm),            CG_ARG(wo), CG_ARG(hw),            CG_ARG(bm),
            CG_ARG(bo),            CG_ARG(hb), CG_ARG(nr),            CG_ARG(cc),
            CG_ARG(eps),           CG_ARG(s.lc_log2), CG_ARG(s.per),
            CG_ARG_LOCAL(s.local * sizeof(cl_float))};
        st = ln_launch_groups(cl, &s, CG_CL_K_LAYERNORM_FWD_1, args, 20, nr);
    }
    return st;
}

/* gx from gy, rows at a time (see the forward). */
static cg_status ln_bwd_rows(struct cg_cl *cl, struct cg_ptr gx, struct cg_ptr gy,
                             struct cg_ptr x, struct cg_ptr mean, struct cg_ptr rstd,
                             struct cg_ptr w, int64_t rows, int64_t cols)
{
    cl_mem wm;
    cl_long wo, cc = cols;
    cl_int hw;
    ln_opt_arg(w, x, &wm, &wo, &hw);
    if (cl->cfg.ln_row_items) {
        cl_long go = gx.off, yo = gy.off, xo = x.off, mo = mean.off, ro = rstd.off, nr = rows;
        struct cg_cl_arg args[] = {
            CG_ARG(gx.buf->mem),   CG_ARG(go), CG_ARG(gy.buf->mem),   CG_ARG(yo),
            CG_ARG(x.buf->mem),    CG_ARG(xo), CG_ARG(mean.buf->mem), CG_ARG(mo),
            CG_ARG(rstd.buf->mem), CG_ARG(ro), CG_ARG(wm),            CG_ARG(wo),
            CG_ARG(hw),            CG_ARG(nr), CG_ARG(cc)};
        return ln_launch_rows(cl, CG_CL_K_LAYERNORM_BWD_ROW, args, 15, rows);
    }
    struct cg_ln_shape s = ln_layout(cl, CG_CL_K_LAYERNORM_BWD_1, CG_CL_K_LAYERNORM_BWD, cols);
    const int64_t chunk = s.group_rows * CG_LN_MAX_GROUPS;
    cg_status st = CG_OK;
    for (int64_t r = 0; r < rows && st == CG_OK; r += chunk) {
        cl_long nr = rows - r < chunk ? rows - r : chunk;
        cl_long go = gx.off + r * cols, yo = gy.off + r * cols, xo = x.off + r * cols;
        cl_long mo = mean.off + r, ro = rstd.off + r;
        struct cg_cl_arg args[] = {
            CG_ARG(gx.buf->mem),   CG_ARG(go), CG_ARG(gy.buf->mem),   CG_ARG(yo),
            CG_ARG(x.buf->mem),    CG_ARG(xo), CG_ARG(mean.buf->mem), CG_ARG(mo),
            CG_ARG(rstd.buf->mem), CG_ARG(ro), CG_ARG(wm),            CG_ARG(wo),
            CG_ARG(hw),            CG_ARG(nr), CG_ARG(cc),            CG_ARG(s.lc_log2),
            CG_ARG(s.per),         CG_ARG_LOCAL(2 * s.local * sizeof(cl_float))};
        st = ln_launch_groups(cl, &s, CG_CL_K_LAYERNORM_BWD_1, args, 18, nr);
    }
    return st;
}

/* gw, gb (either may be a NULL buf, not both): column sums over fixed
 * blocks of rows, then (more than one block) the blocks' sums added in
 * block order from a pool buffer. */
static cg_status ln_bwd_params(struct cg_cl *cl, struct cg_ptr gw, struct cg_ptr gb,
                               struct cg_ptr gy, struct cg_ptr x, struct cg_ptr mean,
                               struct cg_ptr rstd, int64_t rows, int64_t cols)
{
    cl_long cc = cols, cr = rows, dwo, dbo, stride = 0;
    cl_int hw, hb;
    cl_mem dw, db;
    int64_t blk = CG_LN_MIN_BLOCK;
    if ((rows + blk - 1) / blk > CG_LN_MAX_BLOCKS)
        blk = (rows + CG_LN_MAX_BLOCKS - 1) / CG_LN_MAX_BLOCKS;
    const int64_t blocks = rows == 0 ? 1 : (rows + blk - 1) / blk;
    if (blk > INT32_MAX)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "layernorm_backward: %lld rows is too many", (long long)rows);
    cl_int cblk = (cl_int)blk;
    struct cg_buffer *part = NULL;
    cg_status st = CG_OK;
    if (blocks == 1) {   /* straight into gw, gb */
        ln_opt_arg(gw, gy, &dw, &dwo, &hw);
        ln_opt_arg(gb, gy, &db, &dbo, &hb);
    } else {
        st = cg_cl_alloc(cl, sizeof(float) * (size_t)(blocks * 2 * cols), &part);
        if (st != CG_OK)
            return st;
        dw = db = part->mem;
        dwo = 0, dbo = cols, stride = 2 * cols;
        hw = hb = 1;
    }
    cl_long gyo = gy.off, xo = x.off, mo = mean.off, ro = rstd.off;
    struct cg_cl_arg args[] = {
        CG_ARG(dw),          CG_ARG(dwo), CG_ARG(hw),            CG_ARG(db),
        CG_ARG(dbo),         CG_ARG(hb),  CG_ARG(stride),        CG_ARG(gy.buf->mem),
        CG_ARG(gyo),         CG_ARG(x.buf->mem), CG_ARG(xo),     CG_ARG(mean.buf->mem),
        CG_ARG(mo),          CG_ARG(rstd.buf->mem), CG_ARG(ro),  CG_ARG(cr),
        CG_ARG(cc),          CG_ARG(cblk)};
    if (cl->cfg.ln_row_items) {   /* a work-item per block, 8 columns a step */
        cl_long nb = blocks;
        struct cg_cl_arg rargs[19];
        for (int i = 0; i < 18; i++)
            rargs[i] = args[i];
        rargs[18] = CG_ARG(nb);
        st = ln_launch_rows(cl, CG_CL_K_LAYERNORM_BWD_COLS_ROW, rargs, 19, blocks);
    } else {
        st = cg_cl_launch_2d(cl, CG_CL_K_LAYERNORM_BWD_COLS, args, 18, (size_t)cols,
                             (size_t)blocks);
    }
    if (st == CG_OK && part) {
        cl_long nb = blocks;
        ln_opt_arg(gw, gy, &dw, &dwo, &hw);
        ln_opt_arg(gb, gy, &db, &dbo, &hb);
        struct cg_cl_arg cargs[] = {CG_ARG(dw), CG_ARG(dwo),       CG_ARG(hw),
                                    CG_ARG(db), CG_ARG(dbo),       CG_ARG(hb),
                                    CG_ARG(part->mem), CG_ARG(nb), CG_ARG(cc)};
        st = cg_cl_launch_2d(cl, CG_CL_K_LAYERNORM_BWD_COMBINE, cargs, 9, (size_t)cols, 2);
    }
    /* the queue is in order: later users of the buffer run after these */
    if (part)
        cg_cl_release(cl, part);
    return st;
}

cg_status cg_cl_layernorm_backward(void *ctx, struct cg_ptr gx, struct cg_ptr gw,
                                   struct cg_ptr gb, struct cg_ptr gy, struct cg_ptr x,
                                   struct cg_ptr mean, struct cg_ptr rstd, struct cg_ptr w,
                                   int64_t rows, int64_t cols)
{
    /* gx, gy, x: (rows, cols); mean, rstd: (rows); w, gw, gb: (cols) or none */
    struct cg_cl *cl = ctx;
    const char *what = "layernorm_backward";
    cg_status st = ln_shape(cl, what, rows, cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "gx", gx, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "gy", gy, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "x", x, rows * cols);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "mean", mean, rows);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, what, "rstd", rstd, rows);
    if (st == CG_OK)
        st = ln_opt(cl, what, "weight", w, cols);
    if (st == CG_OK)
        st = ln_opt(cl, what, "gw", gw, cols);
    if (st == CG_OK)
        st = ln_opt(cl, what, "gb", gb, cols);
    if (st != CG_OK)
        return st;
    if (rows > 0)
        st = ln_bwd_rows(cl, gx, gy, x, mean, rstd, w, rows, cols);
    /* no rows: the column sums are 0 (one block of none) */
    if (st == CG_OK && (gw.buf || gb.buf))
        st = ln_bwd_params(cl, gw, gb, gy, x, mean, rstd, rows, cols);
    return st;
}
