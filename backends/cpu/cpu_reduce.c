/*
 * backends/cpu/cpu_reduce.c — reductions along the middle axis of a
 * contiguous (outer, n, inner) block:
 *   out[o * inner + i] = R_{r < n} in[(o * n + r) * inner + i]
 * Sums accumulate in double. MAX/MIN propagate NaN (as torch.max does);
 * ARGMAX returns the first maximum, treating NaN as the largest value (as
 * torch.argmax does).
 *
 * Speed. Walking one output at a time down a column of stride `inner`
 * touches a new cache line per element once inner is large, so for
 * inner > 1 a block of up to CG_RED_COLS adjacent outputs is reduced
 * together, row after row: contiguous loads, a loop the compiler
 * vectorises (max/min/argmax compare in float, exact; sums still add in
 * double). A contiguous row (inner == 1) is summed with eight interleaved
 * double accumulators, which vectorise where one serial chain cannot.
 * Work is split across the thread pool by whole outputs (or column blocks);
 * a single huge sum is split into fixed blocks that depend on n alone and
 * whose partials are added in block order, so results never depend on the
 * thread count.
 */
#include <math.h>

#include "cpu.h"

#define CG_RED_COLS 256      /* outputs reduced together when inner > 1  */
#define CG_RED_BLOCKS 64     /* most partials of one split sum           */
#define CG_RED_BLOCK_MIN 4096

/* One output: reduces x[0], x[stride], ..., x[(n - 1) * stride]. */
static double reduce_one(enum cg_reduce_op op, const float *x, int64_t n, int64_t stride,
                         double scale)
{
    switch (op) {
    case CG_REDUCE_SUM: {
        double acc = 0.0;
        for (int64_t r = 0; r < n; r++) acc += x[r * stride];
        return scale * acc;
    }
    case CG_REDUCE_MAX: {
        double best = -INFINITY;
        for (int64_t r = 0; r < n; r++) {
            double v = x[r * stride];
            if (v > best || isnan(v)) best = v;
            if (isnan(best)) break;
        }
        return best;
    }
    case CG_REDUCE_MIN: {
        double best = INFINITY;
        for (int64_t r = 0; r < n; r++) {
            double v = x[r * stride];
            if (v < best || isnan(v)) best = v;
            if (isnan(best)) break;
        }
        return best;
    }
    case CG_REDUCE_ARGMAX: {
        int64_t arg = 0;
        for (int64_t r = 1; r < n; r++) {
            double v = x[r * stride], best = x[arg * stride];
            if (isnan(best)) break;
            if (v > best || isnan(v)) arg = r;
        }
        return (double)arg;
    }
    case CG_REDUCE_COUNT: break;
    }
    return NAN;  /* unreachable: cg__cpu_reduce rejects unknown ops */
}

/* Sum of a contiguous x[0..n) in double, eight lanes then combined. */
CG_CPU_KERNEL static double sum_row(const float *x, int64_t n)
{
    double l[8] = {0};
    int64_t r = 0;
    for (; r + 8 <= n; r += 8)
        for (int k = 0; k < 8; k++) l[k] += x[r + k];
    double acc = ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
    for (; r < n; r++) acc += x[r];
    return acc;
}

/* Columns [i0, i0 + w) of one outer slice x (n, inner) into out[i0..]. */
CG_CPU_KERNEL static void reduce_cols(enum cg_reduce_op op, float *out, const float *x,
                                      int64_t n, int64_t inner, int64_t i0, int64_t w,
                                      double scale)
{
    x += i0;
    out += i0;
    if (op == CG_REDUCE_SUM) {
        double acc[CG_RED_COLS];
        for (int64_t i = 0; i < w; i++) acc[i] = 0.0;
        for (int64_t r = 0; r < n; r++)
            for (int64_t i = 0; i < w; i++) acc[i] += x[r * inner + i];
        for (int64_t i = 0; i < w; i++) out[i] = (float)(scale * acc[i]);
        return;
    }
    if (op == CG_REDUCE_ARGMAX) {
        float best[CG_RED_COLS], arg[CG_RED_COLS];
        for (int64_t i = 0; i < w; i++) best[i] = x[i], arg[i] = 0.0f;
        for (int64_t r = 1; r < n; r++)
            for (int64_t i = 0; i < w; i++) {
                float v = x[r * inner + i], b = best[i];
                /* first maximum; the first NaN wins and stays */
                bool take = b == b && (v > b || v != v);
                best[i] = take ? v : b;
                arg[i] = take ? (float)r : arg[i];
            }
        for (int64_t i = 0; i < w; i++) out[i] = arg[i];
        return;
    }
    float best[CG_RED_COLS];
    for (int64_t i = 0; i < w; i++) best[i] = op == CG_REDUCE_MAX ? -INFINITY : INFINITY;
    for (int64_t r = 0; r < n; r++)
        for (int64_t i = 0; i < w; i++) {
            float v = x[r * inner + i], b = best[i];
            /* a NaN, once in best, stays: no comparison with it is true */
            bool take = (op == CG_REDUCE_MAX ? v > b : v < b) || (v != v && b == b);
            best[i] = take ? v : b;
        }
    for (int64_t i = 0; i < w; i++) out[i] = best[i];
}

struct reduce_job {
    enum cg_reduce_op op;
    float *out;
    const float *in;
    int64_t n, inner, chunks;   /* chunks: column blocks per outer slice */
    double scale;
    double *partials;           /* split sum: one per block              */
    int64_t block;
};

/* Outputs [lo, hi) of a contiguous-row reduction (inner == 1). */
static void reduce_rows_range(void *arg, int64_t lo, int64_t hi)
{
    const struct reduce_job *j = arg;
    for (int64_t o = lo; o < hi; o++) {
        const float *x = j->in + o * j->n;
        j->out[o] = j->op == CG_REDUCE_SUM ? (float)(j->scale * sum_row(x, j->n))
                                           : (float)reduce_one(j->op, x, j->n, 1, j->scale);
    }
}

/* Column blocks [lo, hi) (numbered o * chunks + block) when inner > 1. */
static void reduce_cols_range(void *arg, int64_t lo, int64_t hi)
{
    const struct reduce_job *j = arg;
    for (int64_t t = lo; t < hi; t++) {
        int64_t o = t / j->chunks, i0 = t % j->chunks * CG_RED_COLS;
        int64_t w = j->inner - i0 < CG_RED_COLS ? j->inner - i0 : CG_RED_COLS;
        reduce_cols(j->op, j->out + o * j->inner, j->in + o * j->n * j->inner, j->n, j->inner,
                    i0, w, j->scale);
    }
}

/* Blocks [lo, hi) of one split sum. */
static void sum_blocks_range(void *arg, int64_t lo, int64_t hi)
{
    const struct reduce_job *j = arg;
    for (int64_t b = lo; b < hi; b++) {
        int64_t r0 = b * j->block, r1 = r0 + j->block < j->n ? r0 + j->block : j->n;
        j->partials[b] = sum_row(j->in + r0, r1 - r0);
    }
}

cg_status cg__cpu_reduce(void *ctx, enum cg_reduce_op op, struct cg_ptr out,
                         struct cg_ptr in, int64_t outer, int64_t n, int64_t inner,
                         float scale)
{
    /* out: (outer, inner), in: (outer, n, inner), both contiguous */
    struct cg_cpu_ctx *c = ctx;
    if ((int)op < 0 || op >= CG_REDUCE_COUNT)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "reduce: unknown op %d",
                             (int)op);
    if (outer < 0 || n < 0 || inner < 0)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT,
                             "reduce: negative size (outer %lld, n %lld, inner %lld)",
                             (long long)outer, (long long)n, (long long)inner);
    cg_status s = cg__cpu_check_range(c, out, outer * inner, "reduce out");
    if (s == CG_OK) s = cg__cpu_check_range(c, in, outer * n * inner, "reduce in");
    if (s != CG_OK) return s;
    c->stats.launches++;

    if (outer * inner == 0) return CG_OK;
    if (n == 0) {
        /* in.buf may be NULL: the empty reductions, with no read. */
        for (int64_t t = 0; t < outer * inner; t++)
            cg__cpu_at(out)[t] = (float)reduce_one(op, NULL, 0, inner, scale);
        return CG_OK;
    }
    struct reduce_job j = {.op = op, .out = cg__cpu_at(out), .in = cg__cpu_at(in), .n = n,
                           .inner = inner, .scale = scale};
    int64_t half = CG_CPU_PAR_MIN / 2;
    if (inner > 1) {
        j.chunks = (inner + CG_RED_COLS - 1) / CG_RED_COLS;
        int64_t per = n * (inner < CG_RED_COLS ? inner : CG_RED_COLS);
        cg__cpu_parallel_for(c, outer * j.chunks, (half + per - 1) / per, reduce_cols_range, &j);
    } else if (op == CG_REDUCE_SUM && outer == 1 && n >= CG_CPU_PAR_MIN) {
        /* One long sum: blocks fixed by n, partials added in order. */
        double partials[CG_RED_BLOCKS];
        j.partials = partials;
        j.block = (n + CG_RED_BLOCKS - 1) / CG_RED_BLOCKS;
        if (j.block < CG_RED_BLOCK_MIN) j.block = CG_RED_BLOCK_MIN;
        int64_t blocks = (n + j.block - 1) / j.block;
        cg__cpu_parallel_for(c, blocks, (half + j.block - 1) / j.block, sum_blocks_range, &j);
        double acc = 0.0;
        for (int64_t b = 0; b < blocks; b++) acc += partials[b];
        j.out[0] = (float)(scale * acc);
    } else {
        cg__cpu_parallel_for(c, outer, (half + n - 1) / n, reduce_rows_range, &j);
    }
    return CG_OK;
}
