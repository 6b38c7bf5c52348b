/*
 * backends/cpu/cpu_reduce.c — reductions along the middle axis of a
 * contiguous (outer, n, inner) block:
 *   out[o * inner + i] = R_{r < n} in[(o * n + r) * inner + i]
 * Sums accumulate in double. MAX/MIN propagate NaN (as torch.max does);
 * ARGMAX returns the first maximum, treating NaN as the largest value (as
 * torch.argmax does).
 */
#include <math.h>

#include "cpu.h"

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

    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            /* in.buf is NULL-safe here: n == 0 never dereferences it. */
            const float *x = n > 0 ? cg__cpu_at(in) + o * n * inner + i : NULL;
            cg__cpu_at(out)[o * inner + i] = (float)reduce_one(op, x, n, inner, scale);
        }
    }
    return CG_OK;
}
