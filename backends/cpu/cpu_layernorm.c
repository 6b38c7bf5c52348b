/*
 * backends/cpu/cpu_layernorm.c — LayerNorm over the last axis, forward and
 * backward each in one kernel (backend.h states the formulas: those of
 * torch.nn.LayerNorm, biased variance; the backward is the one PyTorch's
 * layer_norm_backward computes, with the row means of g and g * xhat).
 *
 * Composed from ops, a LayerNorm costs ~9 passes over the activations
 * forward and ~15 backward (each op and its adjoint); these cost 2 and 2.
 * Row sums run in float with 8 lanes added in a fixed order (as cpu_gemm.c's
 * dot_f), the variance from a second pass over x - mean (no cancellation).
 * Rows split across the thread pool; the parameters' gradients are column
 * sums, taken per fixed block of LN_BLOCK rows and the blocks then added in
 * block order, so every result is the same for any thread count.
 */
#include <math.h>

#include "cpu.h"

#define LN_BLOCK 32     /* rows per partial column sum of gw and gb */

/* sum x[j] y[j] (y NULL: sum x[j]), j < n, in 8 lanes. */
CG_CPU_KERNEL static float row_dot(const float *restrict x, const float *restrict y, int64_t n)
{
    float lane[8] = {0};
    int64_t p = 0;
    if (y)
        for (; p + 8 <= n; p += 8)
            for (int l = 0; l < 8; l++) lane[l] += x[p + l] * y[p + l];
    else
        for (; p + 8 <= n; p += 8)
            for (int l = 0; l < 8; l++) lane[l] += x[p + l];
    for (int l = 0; p < n; p++, l++) lane[l] += y ? x[p] * y[p] : x[p];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* sum (x[j] - mu)^2, j < n, in 8 lanes. */
CG_CPU_KERNEL static float row_sq_dev(const float *restrict x, float mu, int64_t n)
{
    float lane[8] = {0};
    int64_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int l = 0; l < 8; l++) lane[l] += (x[p + l] - mu) * (x[p + l] - mu);
    for (int l = 0; p < n; p++, l++) lane[l] += (x[p] - mu) * (x[p] - mu);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* y[j] = (x[j] - mu) rs w[j] + b[j] (w, b NULL: 1, 0). */
CG_CPU_KERNEL static void norm_row(int64_t n, float *restrict y, const float *restrict x,
                                   const float *restrict w, const float *restrict b, float mu,
                                   float rs)
{
    if (w && b)
        for (int64_t j = 0; j < n; j++) y[j] = (x[j] - mu) * rs * w[j] + b[j];
    else
        for (int64_t j = 0; j < n; j++)
            y[j] = (x[j] - mu) * rs * (w ? w[j] : 1.0f) + (b ? b[j] : 0.0f);
}

struct ln_job {
    float *y, *mean, *rstd;         /* forward outputs; backward: y is gx */
    const float *x, *w, *b, *gy;
    float *part;                    /* backward: per block [gw | gb] sums, or NULL */
    int64_t rows, cols;
    float eps;
};

static void ln_rows(void *arg, int64_t lo, int64_t hi)
{
    const struct ln_job *j = arg;
    const int64_t n = j->cols;
    for (int64_t r = lo; r < hi; r++) {
        const float *x = j->x + r * n;
        float mu = (float)((double)row_dot(x, NULL, n) / (double)n);
        double var = (double)row_sq_dev(x, mu, n) / (double)n;
        float rs = (float)(1.0 / sqrt(var + (double)j->eps));
        j->mean[r] = mu;
        j->rstd[r] = rs;
        norm_row(n, j->y + r * n, x, j->w, j->b, mu, rs);
    }
}

/* One row of the adjoint: gx from gy; gw_acc += gy xhat, gb_acc += gy
 * (either NULL: skipped). g = gy w is formed on the fly. */
CG_CPU_KERNEL static void ln_backward_row(int64_t n, float *restrict gx, const float *restrict gy,
                                          const float *restrict x, const float *restrict w,
                                          float mu, float rs, float *restrict gw_acc,
                                          float *restrict gb_acc)
{
    float s_g = 0.0f, s_gx = 0.0f;    /* sum g, sum g xhat */
    if (w) {
        float lg[8] = {0}, lgx[8] = {0};
        int64_t p = 0;
        for (; p + 8 <= n; p += 8)
            for (int l = 0; l < 8; l++) {
                float g = gy[p + l] * w[p + l];
                lg[l] += g;
                lgx[l] += g * ((x[p + l] - mu) * rs);
            }
        for (int l = 0; p < n; p++, l++) {
            float g = gy[p] * w[p];
            lg[l] += g;
            lgx[l] += g * ((x[p] - mu) * rs);
        }
        s_g = ((lg[0] + lg[1]) + (lg[2] + lg[3])) + ((lg[4] + lg[5]) + (lg[6] + lg[7]));
        s_gx = ((lgx[0] + lgx[1]) + (lgx[2] + lgx[3])) + ((lgx[4] + lgx[5]) + (lgx[6] + lgx[7]));
    } else {
        float lg[8] = {0}, lgx[8] = {0};
        int64_t p = 0;
        for (; p + 8 <= n; p += 8)
            for (int l = 0; l < 8; l++) {
                lg[l] += gy[p + l];
                lgx[l] += gy[p + l] * ((x[p + l] - mu) * rs);
            }
        for (int l = 0; p < n; p++, l++) {
            lg[l] += gy[p];
            lgx[l] += gy[p] * ((x[p] - mu) * rs);
        }
        s_g = ((lg[0] + lg[1]) + (lg[2] + lg[3])) + ((lg[4] + lg[5]) + (lg[6] + lg[7]));
        s_gx = ((lgx[0] + lgx[1]) + (lgx[2] + lgx[3])) + ((lgx[4] + lgx[5]) + (lgx[6] + lgx[7]));
    }
    const float m_g = s_g / (float)n, m_gx = s_gx / (float)n;
    for (int64_t j = 0; j < n; j++) {
        float xhat = (x[j] - mu) * rs;
        float g = w ? gy[j] * w[j] : gy[j];
        gx[j] = rs * (g - m_g - xhat * m_gx);
    }
    if (gw_acc)
        for (int64_t j = 0; j < n; j++) gw_acc[j] += gy[j] * ((x[j] - mu) * rs);
    if (gb_acc)
        for (int64_t j = 0; j < n; j++) gb_acc[j] += gy[j];
}

/* Blocks [lo, hi) of LN_BLOCK rows. */
static void ln_backward_blocks(void *arg, int64_t lo, int64_t hi)
{
    const struct ln_job *j = arg;
    const int64_t n = j->cols;
    for (int64_t blk = lo; blk < hi; blk++) {
        float *acc = j->part ? j->part + blk * 2 * n : NULL;
        if (acc)
            for (int64_t t = 0; t < 2 * n; t++) acc[t] = 0.0f;
        int64_t r1 = (blk + 1) * LN_BLOCK < j->rows ? (blk + 1) * LN_BLOCK : j->rows;
        for (int64_t r = blk * LN_BLOCK; r < r1; r++)
            ln_backward_row(n, j->y + r * n, j->gy + r * n, j->x + r * n, j->w, j->mean[r],
                            j->rstd[r], acc, acc ? acc + n : NULL);
    }
}

static cg_status check_shape(struct cg_cpu_ctx *c, const char *what, int64_t rows, int64_t cols)
{
    if (rows < 0 || cols < 1 || rows > INT64_MAX / cols)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: bad shape (%lld, %lld)", what,
                             (long long)rows, (long long)cols);
    return CG_OK;
}

/* Checks p (when its buf is set, or when required) holds count floats. */
static cg_status check_opt(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t count, const char *what)
{
    return p.buf ? cg__cpu_check_range(c, p, count, what) : CG_OK;
}

cg_status cg__cpu_layernorm(void *ctx, struct cg_ptr y, struct cg_ptr mean, struct cg_ptr rstd,
                            struct cg_ptr x, struct cg_ptr w, struct cg_ptr b, int64_t rows,
                            int64_t cols, float eps)
{
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_shape(c, "layernorm", rows, cols);
    if (s == CG_OK && !(eps >= 0.0f))
        s = cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "layernorm: eps %g must be >= 0",
                          (double)eps);
    if (s == CG_OK) s = cg__cpu_check_range(c, y, rows * cols, "layernorm y");
    if (s == CG_OK) s = cg__cpu_check_range(c, x, rows * cols, "layernorm x");
    if (s == CG_OK) s = cg__cpu_check_range(c, mean, rows, "layernorm mean");
    if (s == CG_OK) s = cg__cpu_check_range(c, rstd, rows, "layernorm rstd");
    if (s == CG_OK) s = check_opt(c, w, cols, "layernorm weight");
    if (s == CG_OK) s = check_opt(c, b, cols, "layernorm bias");
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (rows == 0) return CG_OK;
    struct ln_job j = {.y = cg__cpu_at(y), .mean = cg__cpu_at(mean), .rstd = cg__cpu_at(rstd),
                       .x = cg__cpu_at(x), .w = w.buf ? cg__cpu_at(w) : NULL,
                       .b = b.buf ? cg__cpu_at(b) : NULL, .rows = rows, .cols = cols, .eps = eps};
    cg__cpu_parallel_for(c, rows, CG_CPU_PAR_MIN / 4 / cols + 1, ln_rows, &j);
    return CG_OK;
}

cg_status cg__cpu_layernorm_backward(void *ctx, struct cg_ptr gx, struct cg_ptr gw,
                                     struct cg_ptr gb, struct cg_ptr gy, struct cg_ptr x,
                                     struct cg_ptr mean, struct cg_ptr rstd, struct cg_ptr w,
                                     int64_t rows, int64_t cols)
{
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_shape(c, "layernorm_backward", rows, cols);
    if (s == CG_OK) s = cg__cpu_check_range(c, gx, rows * cols, "layernorm_backward gx");
    if (s == CG_OK) s = cg__cpu_check_range(c, gy, rows * cols, "layernorm_backward gy");
    if (s == CG_OK) s = cg__cpu_check_range(c, x, rows * cols, "layernorm_backward x");
    if (s == CG_OK) s = cg__cpu_check_range(c, mean, rows, "layernorm_backward mean");
    if (s == CG_OK) s = cg__cpu_check_range(c, rstd, rows, "layernorm_backward rstd");
    if (s == CG_OK) s = check_opt(c, w, cols, "layernorm_backward weight");
    if (s == CG_OK) s = check_opt(c, gw, cols, "layernorm_backward gw");
    if (s == CG_OK) s = check_opt(c, gb, cols, "layernorm_backward gb");
    if (s != CG_OK) return s;
    c->stats.launches++;
    const int64_t blocks = (rows + LN_BLOCK - 1) / LN_BLOCK;
    float *part = NULL;
    if (gw.buf || gb.buf) {
        /* the caller's scratch: workers never touch the caller's */
        part = cg__cpu_scratch(c, sizeof(float) * (size_t)(blocks * 2 * cols + 1));
        if (!part)
            return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY,
                                 "layernorm_backward: no memory for %lld partial sums",
                                 (long long)(blocks * 2 * cols));
    }
    struct ln_job j = {.y = cg__cpu_at(gx), .mean = cg__cpu_at(mean), .rstd = cg__cpu_at(rstd),
                       .x = cg__cpu_at(x), .w = w.buf ? cg__cpu_at(w) : NULL,
                       .gy = cg__cpu_at(gy), .part = part, .rows = rows, .cols = cols};
    cg__cpu_parallel_for(c, blocks, CG_CPU_PAR_MIN / 4 / (LN_BLOCK * cols) + 1,
                         ln_backward_blocks, &j);
    /* the blocks' sums, added in block order */
    for (int half = 0; half < 2 && part; half++) {
        struct cg_ptr dst = half ? gb : gw;
        if (!dst.buf) continue;
        float *d = cg__cpu_at(dst);
        for (int64_t t = 0; t < cols; t++) d[t] = 0.0f;
        for (int64_t blk = 0; blk < blocks; blk++) {
            const float *p = part + blk * 2 * cols + half * cols;
            for (int64_t t = 0; t < cols; t++) d[t] += p[t];
        }
    }
    return CG_OK;
}
