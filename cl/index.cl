/*
 * cl/index.cl - row gather/scatter-add (embeddings) and per-row pick
 * (cross-entropy), backend.h index_rows / index_rows_add / pick / pick_add.
 *
 * Indices are float32 holding exact integers (the frontend range-checks
 * them). index_rows_add may see repeated indices; OpenCL 1.2 has no float
 * atomics, so it adds through atomic_cmpxchg on the float's bits (32-bit
 * global atomics are core since OpenCL 1.1). The order of the additions to
 * one element is unspecified, so sums may differ in the last bits between
 * runs.
 */

/* *p += v, atomically. */
static void cg_atomic_add_f(volatile __global float *p, float v)
{
    volatile __global uint *u = (volatile __global uint *)p;
    uint old = *u, seen;
    for (;;) {
        uint want = as_uint(as_float(old) + v);
        seen = atomic_cmpxchg(u, old, want);
        if (seen == old)
            break;
        old = seen;
    }
}

/* out: (n, inner); src: (rows, inner); idx: (n). out[i, :] = src[idx[i], :] */
__kernel void index_rows(__global float *out, long oo,
                         __global const float *src, long so,
                         __global const float *idx, long xo, long n, long inner)
{
    long total = n * inner;
    for (long t = get_global_id(0); t < total; t += get_global_size(0)) {
        long i = t / inner, j = t - i * inner;
        long r = (long)idx[xo + i];
        out[oo + t] = src[so + r * inner + j];
    }
}

/* dst: (rows, inner); src: (n, inner); idx: (n). dst[idx[i], :] += src[i, :] */
__kernel void index_rows_add(__global float *dst, long dso,
                             __global const float *src, long so,
                             __global const float *idx, long xo, long n, long inner)
{
    long total = n * inner;
    for (long t = get_global_id(0); t < total; t += get_global_size(0)) {
        long i = t / inner, j = t - i * inner;
        long r = (long)idx[xo + i];
        cg_atomic_add_f(dst + dso + r * inner + j, src[so + t]);
    }
}

/* out: (rows); src: (rows, cols); idx: (rows). out[i] = src[i, idx[i]] */
__kernel void pick(__global float *out, long oo,
                   __global const float *src, long so,
                   __global const float *idx, long xo, long rows, long cols)
{
    for (long i = get_global_id(0); i < rows; i += get_global_size(0))
        out[oo + i] = src[so + i * cols + (long)idx[xo + i]];
}

/* dst: (rows, cols); src: (rows); idx: (rows). dst[i, idx[i]] += src[i]
 * (one element per row: no two work-items meet, no atomics needed). */
__kernel void pick_add(__global float *dst, long dso,
                       __global const float *src, long so,
                       __global const float *idx, long xo, long rows, long cols)
{
    for (long i = get_global_id(0); i < rows; i += get_global_size(0))
        dst[dso + i * cols + (long)idx[xo + i]] += src[so + i];
}
