/*
 * cl/softmax.cl - softmax and log-softmax over the last axis of a contiguous
 * (rows, cols) block, forward and backward (backend.h, softmax()).
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

/* out, in: (rows, cols) at oo, io. */
__kernel void softmax_fwd(__global float *out, long oo,
                          __global const float *in, long io,
                          long rows, long cols, int log_mode, __local float *lv)
{
    const int lid = get_local_id(0), ls = get_local_size(0);
    for (long row = get_group_id(0); row < rows; row += get_num_groups(0)) {
        __global const float *x = in + io + row * cols;
        __global float *y = out + oo + row * cols;
        float m = -INFINITY;
        for (long j = lid; j < cols; j += ls)
            m = fmax(m, x[j]);
        m = cg_group_reduce(lv, m, 1);
        float s = 0.0f;
        for (long j = lid; j < cols; j += ls)
            s += exp(x[j] - m);
        s = cg_group_reduce(lv, s, 0);
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
