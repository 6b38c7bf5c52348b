/*
 * backends/cpu/cpu_index.c — gathers and their adjoint scatter-adds:
 *   index_rows      out[i, :] = src[idx[i], :]      (embedding lookup)
 *   index_rows_add  dst[idx[i], :] += src[i, :]     (its gradient)
 *   pick            out[i] = src[i, idx[i]]         (NLL loss)
 *   pick_add        dst[i, idx[i]] += src[i]        (its gradient)
 * Indices are float32 holding exact integers. The frontend validates them;
 * this oracle checks again so that a bad index becomes an error, not a
 * stray write. Scatter-adds run in index order, so repeated indices add up.
 */
#include "cpu.h"

/* Rows a buffer holds from p.off at `inner` floats per row (bounds the
 * row indices of index_rows*, which do not pass the table's height). */
static int64_t rows_in(struct cg_ptr p, int64_t inner)
{
    if (inner == 0) return -1;  /* no bound needed: nothing is touched */
    if (!p.buf) return 0;
    int64_t have = (int64_t)(p.buf->bytes / sizeof(float)) - p.off;
    return have > 0 ? have / inner : 0;
}

static cg_status check_sizes(struct cg_cpu_ctx *c, int64_t a, int64_t b, const char *what)
{
    if (a < 0 || b < 0)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: negative size (%lld, %lld)",
                             what, (long long)a, (long long)b);
    return CG_OK;
}

cg_status cg__cpu_index_rows(void *ctx, struct cg_ptr out, struct cg_ptr src,
                             struct cg_ptr idx, int64_t n, int64_t inner)
{
    /* out: (n, inner), src: (rows, inner), idx: (n) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_sizes(c, n, inner, "index_rows");
    if (s == CG_OK) s = cg__cpu_check_range(c, out, n * inner, "index_rows out");
    if (s == CG_OK) s = cg__cpu_check_range(c, idx, n, "index_rows idx");
    if (s != CG_OK) return s;
    int64_t rows = rows_in(src, inner);
    for (int64_t i = 0; i < n; i++) {  /* all indices before any write */
        int64_t r;
        s = cg__cpu_index(c, cg__cpu_at(idx)[i], rows, "index_rows idx", &r);
        if (s != CG_OK) return s;
    }
    c->stats.launches++;

    for (int64_t i = 0; i < n && inner > 0; i++) {
        int64_t r = (int64_t)cg__cpu_at(idx)[i];
        const float *from = cg__cpu_at(src) + r * inner;
        float *to = cg__cpu_at(out) + i * inner;
        for (int64_t j = 0; j < inner; j++) to[j] = from[j];
    }
    return CG_OK;
}

cg_status cg__cpu_index_rows_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                                 struct cg_ptr idx, int64_t n, int64_t inner)
{
    /* dst: (rows, inner), src: (n, inner), idx: (n) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_sizes(c, n, inner, "index_rows_add");
    if (s == CG_OK) s = cg__cpu_check_range(c, src, n * inner, "index_rows_add src");
    if (s == CG_OK) s = cg__cpu_check_range(c, idx, n, "index_rows_add idx");
    if (s != CG_OK) return s;
    int64_t rows = rows_in(dst, inner);
    for (int64_t i = 0; i < n; i++) {  /* all indices before any write */
        int64_t r;
        s = cg__cpu_index(c, cg__cpu_at(idx)[i], rows, "index_rows_add idx", &r);
        if (s != CG_OK) return s;
    }
    c->stats.launches++;

    for (int64_t i = 0; i < n && inner > 0; i++) {
        int64_t r = (int64_t)cg__cpu_at(idx)[i];
        const float *from = cg__cpu_at(src) + i * inner;
        float *to = cg__cpu_at(dst) + r * inner;
        for (int64_t j = 0; j < inner; j++) to[j] += from[j];
    }
    return CG_OK;
}

cg_status cg__cpu_pick(void *ctx, struct cg_ptr out, struct cg_ptr src, struct cg_ptr idx,
                       int64_t rows, int64_t cols)
{
    /* out: (rows), src: (rows, cols), idx: (rows) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_sizes(c, rows, cols, "pick");
    if (s == CG_OK) s = cg__cpu_check_range(c, out, rows, "pick out");
    if (s == CG_OK) s = cg__cpu_check_range(c, src, rows * cols, "pick src");
    if (s == CG_OK) s = cg__cpu_check_range(c, idx, rows, "pick idx");
    for (int64_t i = 0; s == CG_OK && i < rows; i++) {
        int64_t j;
        s = cg__cpu_index(c, cg__cpu_at(idx)[i], cols, "pick idx", &j);
    }
    if (s != CG_OK) return s;
    c->stats.launches++;

    for (int64_t i = 0; i < rows; i++) {
        int64_t j = (int64_t)cg__cpu_at(idx)[i];
        cg__cpu_at(out)[i] = cg__cpu_at(src)[i * cols + j];
    }
    return CG_OK;
}

cg_status cg__cpu_pick_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                           struct cg_ptr idx, int64_t rows, int64_t cols)
{
    /* dst: (rows, cols), src: (rows), idx: (rows) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_sizes(c, rows, cols, "pick_add");
    if (s == CG_OK) s = cg__cpu_check_range(c, dst, rows * cols, "pick_add dst");
    if (s == CG_OK) s = cg__cpu_check_range(c, src, rows, "pick_add src");
    if (s == CG_OK) s = cg__cpu_check_range(c, idx, rows, "pick_add idx");
    for (int64_t i = 0; s == CG_OK && i < rows; i++) {
        int64_t j;
        s = cg__cpu_index(c, cg__cpu_at(idx)[i], cols, "pick_add idx", &j);
    }
    if (s != CG_OK) return s;
    c->stats.launches++;

    for (int64_t i = 0; i < rows; i++) {
        int64_t j = (int64_t)cg__cpu_at(idx)[i];
        cg__cpu_at(dst)[i * cols + j] += cg__cpu_at(src)[i];
    }
    return CG_OK;
}
