/*
 * cl/reduce.cl - reductions over the middle axis of a contiguous
 * (outer, n, inner) block into (outer, inner) (backend.h, reduce()).
 *
 * Two shapes of launch, chosen by the host:
 *   reduce_item:  one work-item per output; enough outputs to fill the device
 *                 (reads are coalesced across i when inner > 1).
 *   reduce_group: one work-group per output and a tree in local memory; for
 *                 few outputs with long rows (e.g. a full sum).
 * Sums accumulate with Kahan compensation so a long row keeps float32
 * accuracy near the float64 reference. ARGMAX returns the first maximum:
 * ties go to the smaller index. n == 0 never reaches these kernels.
 */

enum { RED_SUM, RED_MAX, RED_MIN, RED_ARGMAX, RED_COUNT };

/* Does (v, i) beat (best, bi) for op? Ties keep the smaller index. */
static int cg_red_better(int op, float v, long i, float best, long bi)
{
    if (op == RED_MIN)
        return v < best || (v == best && i < bi);
    return v > best || (v == best && i < bi);
}

/* out: (outer, inner) at oo; in: (outer, n, inner) at io. */
__kernel void reduce_item(__global float *out, long oo,
                          __global const float *in, long io,
                          int op, long outer, long n, long inner, float scale)
{
    long total = outer * inner;
    for (long t = get_global_id(0); t < total; t += get_global_size(0)) {
        long o = t / inner, i = t - o * inner;
        __global const float *p = in + io + o * n * inner + i;
        if (op == RED_SUM) {
            float s = 0.0f, c = 0.0f;          /* Kahan: c holds lost low bits */
            for (long r = 0; r < n; ++r) {
                float y = p[r * inner] - c;
                float u = s + y;
                c = (u - s) - y;
                s = u;
            }
            out[oo + t] = s * scale;
        } else {
            float best = p[0];
            long bi = 0;
            for (long r = 1; r < n; ++r) {
                float v = p[r * inner];
                if (cg_red_better(op, v, r, best, bi)) {
                    best = v;
                    bi = r;
                }
            }
            out[oo + t] = op == RED_ARGMAX ? (float)bi : best;
        }
    }
}

/* out: (outer, inner) at oo; in: (outer, n, inner) at io.
 * Local size must be a power of two; lv/li hold one entry per work-item. */
__kernel void reduce_group(__global float *out, long oo,
                           __global const float *in, long io,
                           int op, long outer, long n, long inner, float scale,
                           __local float *lv, __local long *li)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    const long total = outer * inner;
    for (long t = get_group_id(0); t < total; t += get_num_groups(0)) {
        long o = t / inner, i = t - o * inner;
        __global const float *p = in + io + o * n * inner + i;
        float acc, c = 0.0f;
        long ai = LONG_MAX;
        acc = op == RED_SUM ? 0.0f : (op == RED_MIN ? INFINITY : -INFINITY);
        for (long r = lid; r < n; r += ls) {
            float v = p[r * inner];
            if (op == RED_SUM) {
                float y = v - c, u = acc + y;
                c = (u - acc) - y;
                acc = u;
            } else if (cg_red_better(op, v, r, acc, ai) || ai == LONG_MAX) {
                acc = v;
                ai = r;
            }
        }
        lv[lid] = acc;
        li[lid] = ai;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int s = ls / 2; s > 0; s /= 2) {
            if (lid < s) {
                float v = lv[lid + s];
                long vi = li[lid + s];
                if (op == RED_SUM)
                    lv[lid] += v;
                else if (vi != LONG_MAX &&
                         (li[lid] == LONG_MAX ||
                          cg_red_better(op, v, vi, lv[lid], li[lid]))) {
                    lv[lid] = v;
                    li[lid] = vi;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (lid == 0) {
            if (op == RED_SUM)
                out[oo + t] = lv[0] * scale;
            else if (op == RED_ARGMAX)
                out[oo + t] = (float)li[0];
            else
                out[oo + t] = lv[0];
        }
        barrier(CLK_LOCAL_MEM_FENCE);  /* lv/li are reused by the next t */
    }
}
