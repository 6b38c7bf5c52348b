/*
 * backends/cpu/cpu_softmax.c — softmax and log-softmax over the last axis of
 * a contiguous (rows, cols) block, forward and backward.
 *
 * Forward subtracts the row maximum before exp, so logits of any size give
 * finite results (the usual "safe softmax"):
 *   softmax:     y_j = exp(x_j - max) / sum_k exp(x_k - max)
 *   log-softmax: y_j = (x_j - max) - log(sum_k exp(x_k - max))
 * The causal softmax (attention's softmax(S + M), backend.h) is the plain
 * one over each row's first r mod period + 1 columns, zeros after.
 * Backward (backend.h):
 *   softmax:     gx = y * (gy - sum(gy * y))
 *   log-softmax: gx = gy - exp(y) * sum(gy)
 * Sums accumulate in double, in 4 lanes added in a fixed order (so GCC
 * vectorises them without reassociating anything: the result does not
 * depend on the vector width); exp is cpu_vmath.h's float exp (~1 ulp),
 * vectorised, where libm's double exp per element was most of a
 * log-softmax over a vocabulary. Rows split across the thread pool.
 */
#include <math.h>
#include <string.h>

#include "cpu.h"
#include "cpu_vmath.h"

static cg_status check_block(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t rows,
                             int64_t cols, const char *what)
{
    if (rows < 0 || cols < 0)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: bad shape (%lld, %lld)",
                             what, (long long)rows, (long long)cols);
    return cg__cpu_check_range(c, p, rows * cols, what);
}

/* Adds the 4 lanes in a fixed order. */
static double lanes_sum(const double l[4]) { return (l[0] + l[1]) + (l[2] + l[3]); }

/* max of x[0, cols) (-inf for none; NaN is passed over as in a compare),
 * in 8 lanes so that it vectorises. */
CG_CPU_KERNEL static float row_max(const float *restrict x, int64_t cols)
{
    float lane[8];
    for (int l = 0; l < 8; l++) lane[l] = -INFINITY;
    int64_t j = 0;
    for (; j + 8 <= cols; j += 8)
        for (int l = 0; l < 8; l++) lane[l] = x[j + l] > lane[l] ? x[j + l] : lane[l];
    float max = -INFINITY;
    for (int l = 0; l < 8; l++) max = lane[l] > max ? lane[l] : max;
    for (; j < cols; j++) max = x[j] > max ? x[j] : max;
    return max;
}

#define EXP_CHUNK 256

/* sum_j exp(x[j] - max), in double; with e: also e[j] = exp(x[j] - max).
 * Chunks of EXP_CHUNK go through a stack buffer so the exp loop has no
 * branch (it vectorises) and e may be x (an in-place softmax). The buffer
 * is padded with zeros to whole vectors of 8 and the exp runs over those
 * too, so no element takes the loop's scalar remainder (the causal
 * softmax's rows are 1..T long: with T = 64, half its exps were scalar);
 * the pad is cleared after, and adding exact zeros changes no sum. */
CG_CPU_KERNEL static double exp_shifted(float *e, const float *x, float max, int64_t cols)
{
    float buf[EXP_CHUNK];
    double lane[4] = {0};
    for (int64_t j0 = 0; j0 < cols; j0 += EXP_CHUNK) {
        int64_t n = cols - j0 < EXP_CHUNK ? cols - j0 : EXP_CHUNK, n8 = (n + 7) / 8 * 8;
        for (int64_t i = 0; i < n; i++) buf[i] = x[j0 + i] - max;
        for (int64_t i = n; i < n8; i++) buf[i] = 0.0f;
        for (int64_t i = 0; i < n8; i++) buf[i] = cg_vexpf(buf[i]);
        for (int64_t i = n; i < n8; i++) buf[i] = 0.0f;
        for (int64_t j = 0; j < n8; j += 4)
            for (int l = 0; l < 4; l++) lane[l] += buf[j + l];
        if (e) memcpy(e + j0, buf, sizeof(float) * (size_t)n);
    }
    return lanes_sum(lane);
}

CG_CPU_KERNEL static void softmax_row(float *y, const float *x, int64_t cols, int use_log)
{
    /* y, x: (cols) */
    float max = row_max(x, cols);
    if (use_log) {
        double lse = log(exp_shifted(NULL, x, max, cols));
        for (int64_t j = 0; j < cols; j++) y[j] = (float)(((double)x[j] - max) - lse);
    } else {
        float inv = (float)(1.0 / exp_shifted(y, x, max, cols));
        for (int64_t j = 0; j < cols; j++) y[j] *= inv;
    }
}

/* Rows [lo, hi) of a softmax (gy NULL) or of its backward (out = gx); a
 * causal softmax when period > 0. */
struct softmax_job {
    float *out;
    const float *y, *gy;
    int64_t cols, period;
    int use_log;
};

static void softmax_backward_row(float *gx, const float *y, const float *gy, int64_t cols,
                                 int use_log);

static void softmax_rows(void *arg, int64_t lo, int64_t hi)
{
    const struct softmax_job *j = arg;
    for (int64_t r = lo; r < hi; r++) {
        int64_t o = r * j->cols;
        if (j->gy) {
            softmax_backward_row(j->out + o, j->y + o, j->gy + o, j->cols, j->use_log);
        } else if (j->period > 0) {
            /* row r sees columns [0, r mod period]; the rest are 0 */
            int64_t q = r % j->period, n = q < j->cols ? q + 1 : j->cols;
            softmax_row(j->out + o, j->y + o, n, 0);
            for (int64_t c = n; c < j->cols; c++) j->out[o + c] = 0.0f;
        } else {
            softmax_row(j->out + o, j->y + o, j->cols, j->use_log);
        }
    }
}

static void run_rows(struct cg_cpu_ctx *c, struct softmax_job *j, int64_t rows)
{
    cg__cpu_parallel_for(c, rows, CG_CPU_PAR_MIN / 4 / j->cols + 1, softmax_rows, j);
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

    struct softmax_job j = {.out = cg__cpu_at(out), .y = cg__cpu_at(in), .cols = cols,
                            .use_log = use_log};
    run_rows(c, &j, rows);
    return CG_OK;
}

CG_CPU_KERNEL static void softmax_backward_row(float *gx, const float *y, const float *gy,
                                               int64_t cols, int use_log)
{
    /* gx, y, gy: (cols); dot = sum(gy) (log) or sum(gy * y) */
    double lane[4] = {0};
    int64_t j = 0;
    if (use_log) {
        for (; j + 4 <= cols; j += 4)
            for (int l = 0; l < 4; l++) lane[l] += gy[j + l];
        for (int l = 0; j < cols; j++, l++) lane[l] += gy[j];
        float dot = (float)lanes_sum(lane);
        for (j = 0; j < cols; j++) gx[j] = gy[j] - cg_vexpf(y[j]) * dot;
    } else {
        for (; j + 4 <= cols; j += 4)
            for (int l = 0; l < 4; l++) lane[l] += (double)gy[j + l] * y[j + l];
        for (int l = 0; j < cols; j++, l++) lane[l] += (double)gy[j] * y[j];
        float dot = (float)lanes_sum(lane);
        for (j = 0; j < cols; j++) gx[j] = y[j] * (gy[j] - dot);
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

    struct softmax_job j = {.out = cg__cpu_at(gx), .y = cg__cpu_at(y), .gy = cg__cpu_at(gy),
                            .cols = cols, .use_log = use_log};
    run_rows(c, &j, rows);
    return CG_OK;
}

cg_status cg__cpu_softmax_causal(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                                 int64_t cols, int64_t period)
{
    /* out, in: (rows, cols); backend.h gives the formula */
    struct cg_cpu_ctx *c = ctx;
    char msg[96];
    cg_status s = cg_softmax_causal_check(rows, cols, period, msg, sizeof msg);
    if (s != CG_OK) return cg__cpu_error(c, s, "softmax_causal: %s", msg);
    s = check_block(c, out, rows, cols, "softmax_causal out");
    if (s == CG_OK) s = check_block(c, in, rows, cols, "softmax_causal in");
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (rows == 0 || cols == 0) return CG_OK;
    struct softmax_job j = {.out = cg__cpu_at(out), .y = cg__cpu_at(in), .cols = cols,
                            .period = period};
    run_rows(c, &j, rows);
    return CG_OK;
}
