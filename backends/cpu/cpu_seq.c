/*
 * backends/cpu/cpu_seq.c — the Transformer feed-forward's bias + GELU,
 * forward and backward (backend.h states the formulas; GELU is PyTorch's
 * exact form, x Phi(x), approximate='none').
 *
 * Like the LSTM cell (cpu_rnn.c) these compute in float through
 * cpu_vmath.h, one row per call of a vectorised CG_CPU_KERNEL loop: with
 * libm's double erf and exp per element the GELU of a d=64 Transformer
 * cost more than its feed-forward GEMMs. Phi comes from Abramowitz &
 * Stegun's erf (cpu_vmath.h), sharing GELU's one exp. Rows split across
 * the thread pool (each row's result does not depend on the split).
 */
#include <math.h>

#include "cpu.h"
#include "cpu_vmath.h"

#define INV_SQRT_2PI 0.39894228040143268f

/* One row: o[j] = z Phi(z), z = x[j] + b[j] (b NULL: 0). */
CG_CPU_KERNEL static void bias_gelu_row(int64_t n, float *restrict o, const float *restrict x,
                                        const float *restrict b)
{
    for (int64_t j = 0; j < n; j++) {
        float z = x[j] + (b ? b[j] : 0.0f);
        o[j] = z * cg_vnormcdff(z, cg_vexpf(-0.5f * z * z));
    }
}

/* One row of the adjoint: gx[j] = gy[j] (Phi(z) + z phi(z)). */
CG_CPU_KERNEL static void bias_gelu_backward_row(int64_t n, float *restrict gx,
                                                 const float *restrict x,
                                                 const float *restrict b,
                                                 const float *restrict gy)
{
    for (int64_t j = 0; j < n; j++) {
        float z = x[j] + (b ? b[j] : 0.0f);
        float e = cg_vexpf(-0.5f * z * z);
        gx[j] = gy[j] * (cg_vnormcdff(z, e) + z * e * INV_SQRT_2PI);
    }
}

static cg_status check(struct cg_cpu_ctx *c, const char *what, int64_t rows, int64_t cols,
                       struct cg_ptr bias)
{
    if (rows < 0 || cols < 0 || (cols > 0 && rows > INT64_MAX / cols))
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: bad shape (%lld, %lld)", what,
                             (long long)rows, (long long)cols);
    return bias.buf ? cg__cpu_check_range(c, bias, cols, what) : CG_OK;
}

/* Rows [lo, hi) of either direction; gy NULL: forward (out = GELU). */
struct bias_gelu_job {
    float *out;
    const float *in, *bias, *gy;
    int64_t cols;
};

static void bias_gelu_rows(void *arg, int64_t lo, int64_t hi)
{
    const struct bias_gelu_job *j = arg;
    for (int64_t r = lo; r < hi; r++) {
        int64_t o = r * j->cols;
        if (j->gy) bias_gelu_backward_row(j->cols, j->out + o, j->in + o, j->bias, j->gy + o);
        else bias_gelu_row(j->cols, j->out + o, j->in + o, j->bias);
    }
}

/* Splits once a range holds ~2^14 elements: GELU costs ~20 flops each. */
static void run_rows(struct cg_cpu_ctx *c, struct bias_gelu_job *j, int64_t rows)
{
    if (rows == 0 || j->cols == 0) return;
    int64_t grain = ((int64_t)1 << 14) / j->cols + 1;
    cg__cpu_parallel_for(c, rows, grain, bias_gelu_rows, j);
}

cg_status cg__cpu_bias_gelu(void *ctx, struct cg_ptr out, struct cg_ptr in, struct cg_ptr bias,
                            int64_t rows, int64_t cols)
{
    /* out, in: (rows, cols); bias: (cols) or none */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check(c, "bias_gelu bias", rows, cols, bias);
    if (s == CG_OK) s = cg__cpu_check_range(c, out, rows * cols, "bias_gelu out");
    if (s == CG_OK) s = cg__cpu_check_range(c, in, rows * cols, "bias_gelu in");
    if (s != CG_OK) return s;
    c->stats.launches++;
    struct bias_gelu_job j = {.out = cg__cpu_at(out), .in = cg__cpu_at(in),
                              .bias = bias.buf ? cg__cpu_at(bias) : NULL, .cols = cols};
    run_rows(c, &j, rows);
    return CG_OK;
}

cg_status cg__cpu_bias_gelu_backward(void *ctx, struct cg_ptr gx, struct cg_ptr in,
                                     struct cg_ptr bias, struct cg_ptr gy, int64_t rows,
                                     int64_t cols)
{
    /* gx, in, gy: (rows, cols); bias: (cols) or none */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check(c, "bias_gelu_backward bias", rows, cols, bias);
    if (s == CG_OK) s = cg__cpu_check_range(c, gx, rows * cols, "bias_gelu_backward gx");
    if (s == CG_OK) s = cg__cpu_check_range(c, in, rows * cols, "bias_gelu_backward in");
    if (s == CG_OK) s = cg__cpu_check_range(c, gy, rows * cols, "bias_gelu_backward gy");
    if (s != CG_OK) return s;
    c->stats.launches++;
    struct bias_gelu_job j = {.out = cg__cpu_at(gx), .in = cg__cpu_at(in),
                              .bias = bias.buf ? cg__cpu_at(bias) : NULL,
                              .gy = cg__cpu_at(gy), .cols = cols};
    run_rows(c, &j, rows);
    return CG_OK;
}
