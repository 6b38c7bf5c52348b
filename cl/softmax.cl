/*
 * cl/softmax.cl - softmax and log-softmax over the last axis of a contiguous
 * (rows, cols) block, forward and backward (backend.h, softmax()), and the
 * causal softmax of attention (backend.h softmax_causal: row r normalises
 * its columns j <= r mod period and writes 0 past them).
 *
 * One work-group per row (grid-stride over rows), local size a power of two.
 * Numerically stable: subtract the row maximum before exp, so no exp
 * overflows and log-softmax = (x - max) - log(sum exp(x - max)).
 */

/* Tree reduction of lv[0..ls) in local memory; is_max selects max or sum.
 * Every work-item gets the result. */
static float cg_group_reduce(__local float *lv, float v, int is_max)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    lv[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = ls / 2; s > 0; s /= 2) {
        if (lid < s)
            lv[lid] = is_max ? fmax(lv[lid], lv[lid + s]) : lv[lid] + lv[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = lv[0];
    barrier(CLK_LOCAL_MEM_FENCE);  /* lv is reused by the caller's next step */
    return r;
}

/* The row's maximum m and sum of exp(x[j] - m) over its first n entries,
 * in every work-item of the group (n >= 1). */
static void cg_row_max_sum(__local float *lv, __global const float *x, long n, float *m,
                           float *s)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    float mx = -INFINITY;
    for (long j = lid; j < n; j += ls)
        mx = fmax(mx, x[j]);
    mx = cg_group_reduce(lv, mx, 1);
    float sum = 0.0f;
    for (long j = lid; j < n; j += ls)
        sum += exp(x[j] - mx);
    *m = mx;
    *s = cg_group_reduce(lv, sum, 0);
}

/* out, in: (rows, cols) at oo, io. */
__kernel void softmax_fwd(__global float *out, long oo,
                          __global const float *in, long io,
                          long rows, long cols, int log_mode, __local float *lv)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    for (long row = get_group_id(0); row < rows; row += get_num_groups(0)) {
        __global const float *x = in + io + row * cols;
        __global float *y = out + oo + row * cols;
        float m, s;
        cg_row_max_sum(lv, x, cols, &m, &s);
        if (log_mode) {
            float ls_ = log(s);
            for (long j = lid; j < cols; j += ls)
                y[j] = (x[j] - m) - ls_;
        } else {
            float inv = 1.0f / s;
            for (long j = lid; j < cols; j += ls)
                y[j] = exp(x[j] - m) * inv;
        }
    }
}

/* gx, y, gy: (rows, cols).
 *   softmax:     gx = y * (gy - sum(gy * y))
 *   log-softmax: gx = gy - exp(y) * sum(gy)                                */
__kernel void softmax_bwd(__global float *gx, long gxo,
                          __global const float *y, long yo,
                          __global const float *gy, long gyo,
                          long rows, long cols, int log_mode, __local float *lv)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    for (long row = get_group_id(0); row < rows; row += get_num_groups(0)) {
        __global const float *yr = y + yo + row * cols;
        __global const float *gr = gy + gyo + row * cols;
        __global float *out = gx + gxo + row * cols;
        float s = 0.0f;
        for (long j = lid; j < cols; j += ls)
            s += log_mode ? gr[j] : gr[j] * yr[j];
        s = cg_group_reduce(lv, s, 0);
        for (long j = lid; j < cols; j += ls)
            out[j] = log_mode ? gr[j] - exp(yr[j]) * s : yr[j] * (gr[j] - s);
    }
}

/* out, in: (rows, cols). One work-group per row (grid-stride over rows);
 * row r reads only its first min(r % period + 1, cols) inputs. */
__kernel void softmax_causal(__global float *out, long oo, __global const float *in, long io,
                             long rows, long cols, long period, __local float *lv)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    for (long row = get_group_id(0); row < rows; row += get_num_groups(0)) {
        __global const float *x = in + io + row * cols;
        __global float *y = out + oo + row * cols;
        long q = row % period, n = q < cols ? q + 1 : cols;
        float m, s;
        cg_row_max_sum(lv, x, n, &m, &s);
        float inv = 1.0f / s;
        for (long j = lid; j < cols; j += ls)
            y[j] = j < n ? exp(x[j] - m) * inv : 0.0f;
    }
}
