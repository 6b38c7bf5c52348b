/*
 * backends/cpu/cpu_softmax.c — softmax and log-softmax over the last axis of
 * a contiguous (rows, cols) block, forward and backward.
 *
 * Forward subtracts the row maximum before exp, so logits of any size give
 * finite results (the usual "safe softmax"):
 *   softmax:     y_j = exp(x_j - max) / sum_k exp(x_k - max)
 *   log-softmax: y_j = (x_j - max) - log(sum_k exp(x_k - max))
 * Backward (backend.h):
 *   softmax:     gx = y * (gy - sum(gy * y))
 *   log-softmax: gx = gy - exp(y) * sum(gy)
 * Sums accumulate in double.
 */
#include <math.h>

#include "cpu.h"

static cg_status check_block(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t rows,
                             int64_t cols, const char *what)
{
    if (rows < 0 || cols < 0)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: bad shape (%lld, %lld)",
                             what, (long long)rows, (long long)cols);
    return cg__cpu_check_range(c, p, rows * cols, what);
}

static void softmax_row(float *y, const float *x, int64_t cols, int use_log)
{
    /* y, x: (cols) */
    double max = -INFINITY;
    for (int64_t j = 0; j < cols; j++)
        if (x[j] > max) max = x[j];
    double sum = 0.0;
    for (int64_t j = 0; j < cols; j++) sum += exp(x[j] - max);
    if (use_log) {
        double lse = log(sum);
        for (int64_t j = 0; j < cols; j++) y[j] = (float)((x[j] - max) - lse);
    } else {
        for (int64_t j = 0; j < cols; j++) y[j] = (float)(exp(x[j] - max) / sum);
    }
}

cg_status cg__cpu_softmax(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                          int64_t cols, int use_log)
{
    /* out, in: (rows, cols) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_block(c, out, rows, cols, "softmax out");
    if (s == CG_OK) s = check_block(c, in, rows, cols, "softmax in");
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (rows == 0 || cols == 0) return CG_OK;

    for (int64_t r = 0; r < rows; r++)
        softmax_row(cg__cpu_at(out) + r * cols, cg__cpu_at(in) + r * cols, cols, use_log);
    return CG_OK;
}

static void softmax_backward_row(float *gx, const float *y, const float *gy, int64_t cols,
                                 int use_log)
{
    /* gx, y, gy: (cols) */
    double dot = 0.0;
    if (use_log) {
        for (int64_t j = 0; j < cols; j++) dot += gy[j];
        for (int64_t j = 0; j < cols; j++) gx[j] = (float)(gy[j] - exp((double)y[j]) * dot);
    } else {
        for (int64_t j = 0; j < cols; j++) dot += (double)gy[j] * y[j];
        for (int64_t j = 0; j < cols; j++) gx[j] = (float)(y[j] * (gy[j] - dot));
    }
}

cg_status cg__cpu_softmax_backward(void *ctx, struct cg_ptr gx, struct cg_ptr y,
                                   struct cg_ptr gy, int64_t rows, int64_t cols, int use_log)
{
    /* gx, y, gy: (rows, cols) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_block(c, gx, rows, cols, "softmax_backward gx");
    if (s == CG_OK) s = check_block(c, y, rows, cols, "softmax_backward y");
    if (s == CG_OK) s = check_block(c, gy, rows, cols, "softmax_backward gy");
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (rows == 0 || cols == 0) return CG_OK;

    for (int64_t r = 0; r < rows; r++)
        softmax_backward_row(cg__cpu_at(gx) + r * cols, cg__cpu_at(y) + r * cols,
                             cg__cpu_at(gy) + r * cols, cols, use_log);
    return CG_OK;
}
