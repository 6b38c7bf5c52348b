/*
 * cl/gemm.cl - the opencl backend's own SGEMM for CPU devices (OpenCL C
 * 1.2), backend.h gemm: C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b].
 *
 * PoCL runs a work-group as a loop on one core and compiles each work-item
 * to plain vector code, so these kernels are written as a CPU BLAS micro-
 * kernel is (GotoBLAS/BLIS: Goto and van de Geijn, "Anatomy of high-
 * performance matrix multiplication", ACM TOMS 34(3), 2008): one work-item
 * keeps a 6 x 16 tile of C in twelve float8 accumulators (16 AVX2 ymm
 * registers: 12 + 2 loaded B vectors + 1 broadcast A value) and runs the
 * whole k loop over it with fma. Accumulators are named variables, not
 * arrays: PoCL's compiler keeps an indexed private array in memory.
 *
 *   gemm_outer  D (rows, cols) = X (rows, k) * Y (k, cols), a 6 x 16 tile
 *               per work-item: per k, one row of 16 Y values (two float8
 *               loads) times 6 broadcast X values. X is read through
 *               strides (any layout), Y must have its 16 values side by
 *               side: either in place (a row of B, or of A for the
 *               transposed-output case) or packed by gemm_pack. D goes to
 *               C (ct = 0) or to C transposed (ct = 1).
 *   gemm_dot    C = A * B^T with both operands read along k in place
 *               (the row-major "NT" case, Linear's forward): a 3 x 4 tile
 *               of float8 partial dot products, summed across lanes at
 *               the end.
 *   gemm_pack   copies a strided operand into panels of W (6 or 16) rows
 *               or columns laid out k-major, zero-padded to whole panels
 *               (BLIS's packed micro-panels): for large products, where
 *               in-place rows would miss the caches (row pitches that are
 *               multiples of 4 KiB map onto a few cache sets).
 *
 * Work-items never share an output entry and each sums its k terms in a
 * fixed order, so results are the same run to run. Rows and columns past
 * the edge read clamped (valid) addresses and are not stored. beta == 0
 * never reads C (BLAS semantics: NaN in C stays out). Offsets are in
 * floats, as longs; dimension 2 of every launch is the batch entry.
 */

#define MR 6    /* tile rows per work-item    */
#define NR 16   /* tile columns: two float8   */

/* One row of the tile: 16 results, scaled and merged into C, w <= 16 of
 * them in range. */
inline void gemm_store_row(__global float *cr, float8 v0, float8 v1, int w, float alpha,
                           float beta)
{
    v0 *= alpha;
    v1 *= alpha;
    if (w == NR) {
        if (beta != 0.0f) {
            v0 = fma((float8)beta, vload8(0, cr), v0);
            v1 = fma((float8)beta, vload8(1, cr), v1);
        }
        vstore8(v0, 0, cr);
        vstore8(v1, 1, cr);
        return;
    }
    float v[NR];
    vstore8(v0, 0, v);
    vstore8(v1, 1, v);
    for (int j = 0; j < w; ++j)
        cr[j] = beta != 0.0f ? fma(beta, cr[j], v[j]) : v[j];
}

/* The same row written down a column of C (C holds D transposed). */
inline void gemm_store_col(__global float *cc, long ldc, float8 v0, float8 v1, int w,
                           float alpha, float beta)
{
    float v[NR];
    vstore8(v0 * alpha, 0, v);
    vstore8(v1 * alpha, 1, v);
    for (int j = 0; j < w; ++j) {
        __global float *p = cc + j * ldc;
        *p = beta != 0.0f ? fma(beta, *p, v[j]) : v[j];
    }
}

#define GEMM_ROW(t, xv)                          \
    {                                            \
        float8 x_ = (float8)(xv);                \
        c##t##0 = fma(x_, y0, c##t##0);          \
        c##t##1 = fma(x_, y1, c##t##1);          \
    }
#define GEMM_STEP(o)                                                               \
    GEMM_ROW(0, x0[o]) GEMM_ROW(1, x1[o]) GEMM_ROW(2, x2[o]) GEMM_ROW(3, x3[o]) \
    GEMM_ROW(4, x4[o]) GEMM_ROW(5, x5[o])

/* D (rows, cols) = X (rows, k) * Y (k, cols) for batch entry b:
 *   X(r, p) = x[xoff + b*sx + (r/6)*xsp + (r%6)*xrs + p*xks]
 *   Y(p, j) = y[yoff + b*sy + (j/16)*ysp + p*ldy + j%16]
 * In place, row-major A as X: xsp = 6*lda, xrs = lda, xks = 1; A^T:
 * xsp = 6, xrs = 1, xks = lda; B as Y: ysp = 16, ldy = ldb. Packed:
 * xsp = 6*k, xrs = 1, xks = 6; ysp = 16*k, ldy = 16, ypad = 1 (panels
 * are zero-padded, so the last one needs no clamping either).
 * Global size (ceil(rows/6), ceil(cols/16), batch). */
__kernel void gemm_outer(__global float *c, long coff, long ldc, long sc, int ct,
                         __global const float *x, long xoff, long xsp, long xrs, long xks,
                         long sx, __global const float *y, long yoff, long ysp, long ldy,
                         long sy, int ypad, long rows, long cols, long k, float alpha,
                         float beta)
{
    const long ip = get_global_id(0), jp = get_global_id(1), b = get_global_id(2);
    const long r0 = ip * MR, j0 = jp * NR;
    if (r0 >= rows || j0 >= cols)
        return;
    const int w = (int)min((long)NR, cols - j0);
    const long last = rows - 1 - r0;   /* rows past the edge repeat the last one */
    __global const float *xb = x + xoff + b * sx + ip * xsp;
    __global const float *x0 = xb;
    __global const float *x1 = xb + min(1L, last) * xrs;
    __global const float *x2 = xb + min(2L, last) * xrs;
    __global const float *x3 = xb + min(3L, last) * xrs;
    __global const float *x4 = xb + min(4L, last) * xrs;
    __global const float *x5 = xb + min(5L, last) * xrs;
    __global const float *yq = y + yoff + b * sy + jp * ysp;
    float8 c00 = 0.0f, c01 = 0.0f, c10 = 0.0f, c11 = 0.0f, c20 = 0.0f, c21 = 0.0f;
    float8 c30 = 0.0f, c31 = 0.0f, c40 = 0.0f, c41 = 0.0f, c50 = 0.0f, c51 = 0.0f;
    if (w == NR || ypad) {
        for (long p = 0; p < k; ++p) {
            __global const float *yr = yq + p * ldy;
            float8 y0 = vload8(0, yr), y1 = vload8(1, yr);
            long o = p * xks;
            GEMM_STEP(o)
        }
    } else {   /* the last, partial panel in place: columns clamped */
        for (long p = 0; p < k; ++p) {
            __global const float *yr = yq + p * ldy;
            float v[NR];
            for (int j = 0; j < NR; ++j)
                v[j] = yr[min(j, w - 1)];
            float8 y0 = vload8(0, v), y1 = vload8(1, v);
            long o = p * xks;
            GEMM_STEP(o)
        }
    }
    __global float *cb = c + coff + b * sc;
#define GEMM_PUT(t)                                                                      \
    if (t <= last) {                                                                     \
        if (ct)                                                                          \
            gemm_store_col(cb + j0 * ldc + r0 + t, ldc, c##t##0, c##t##1, w, alpha, beta); \
        else                                                                             \
            gemm_store_row(cb + (r0 + t) * ldc + j0, c##t##0, c##t##1, w, alpha, beta);  \
    }
    GEMM_PUT(0) GEMM_PUT(1) GEMM_PUT(2) GEMM_PUT(3) GEMM_PUT(4) GEMM_PUT(5)
#undef GEMM_PUT
}

/* Sum of the 8 lanes. */
inline float gemm_hsum(float8 v)
{
    float4 h = v.lo + v.hi;
    float2 q = h.lo + h.hi;
    return q.x + q.y;
}

#define DOT_COL(u)                                 \
    {                                              \
        float8 bv = vload8(0, b##u + p);           \
        c0##u = fma(a0v, bv, c0##u);               \
        c1##u = fma(a1v, bv, c1##u);               \
        c2##u = fma(a2v, bv, c2##u);               \
    }
#define DOT_TAIL(t, u) s##t##u = fma(a##t[p], b##u[p], s##t##u);
#define DOT_PUT(t, u)                                                   \
    if (t <= mlast && u <= nlast) {                                     \
        __global float *q = cb + (i0 + t) * ldc + j0 + u;               \
        float v = alpha * s##t##u;                                      \
        *q = beta != 0.0f ? fma(beta, *q, v) : v;                       \
    }

/* C (m, n) = A (m, k) * B (n, k)^T for batch entry bt, a 3 x 4 tile per
 * work-item: A's and B's rows are read along k, 8 floats at a time; the
 * k % 8 tail and the lane sums follow. Global (ceil(m/3), ceil(n/4), batch). */
__kernel void gemm_dot(__global float *c, long coff, long ldc, long sc,
                       __global const float *a, long aoff, long lda, long sa,
                       __global const float *b, long boff, long ldb, long sb, long m, long n,
                       long k, float alpha, float beta)
{
    const long i0 = get_global_id(0) * 3, j0 = get_global_id(1) * 4, bt = get_global_id(2);
    if (i0 >= m || j0 >= n)
        return;
    const long mlast = m - 1 - i0, nlast = n - 1 - j0;
    __global const float *ab = a + aoff + bt * sa + i0 * lda;
    __global const float *bb = b + boff + bt * sb + j0 * ldb;
    __global const float *a0 = ab;
    __global const float *a1 = ab + min(1L, mlast) * lda;
    __global const float *a2 = ab + min(2L, mlast) * lda;
    __global const float *b0 = bb;
    __global const float *b1 = bb + min(1L, nlast) * ldb;
    __global const float *b2 = bb + min(2L, nlast) * ldb;
    __global const float *b3 = bb + min(3L, nlast) * ldb;
    float8 c00 = 0.0f, c01 = 0.0f, c02 = 0.0f, c03 = 0.0f, c10 = 0.0f, c11 = 0.0f;
    float8 c12 = 0.0f, c13 = 0.0f, c20 = 0.0f, c21 = 0.0f, c22 = 0.0f, c23 = 0.0f;
    long p = 0;
    for (; p + 8 <= k; p += 8) {
        float8 a0v = vload8(0, a0 + p), a1v = vload8(0, a1 + p), a2v = vload8(0, a2 + p);
        DOT_COL(0) DOT_COL(1) DOT_COL(2) DOT_COL(3)
    }
    float s00 = gemm_hsum(c00), s01 = gemm_hsum(c01), s02 = gemm_hsum(c02);
    float s03 = gemm_hsum(c03), s10 = gemm_hsum(c10), s11 = gemm_hsum(c11);
    float s12 = gemm_hsum(c12), s13 = gemm_hsum(c13), s20 = gemm_hsum(c20);
    float s21 = gemm_hsum(c21), s22 = gemm_hsum(c22), s23 = gemm_hsum(c23);
    for (; p < k; ++p) {
        DOT_TAIL(0, 0) DOT_TAIL(0, 1) DOT_TAIL(0, 2) DOT_TAIL(0, 3)
        DOT_TAIL(1, 0) DOT_TAIL(1, 1) DOT_TAIL(1, 2) DOT_TAIL(1, 3)
        DOT_TAIL(2, 0) DOT_TAIL(2, 1) DOT_TAIL(2, 2) DOT_TAIL(2, 3)
    }
    __global float *cb = c + coff + bt * sc;
    DOT_PUT(0, 0) DOT_PUT(0, 1) DOT_PUT(0, 2) DOT_PUT(0, 3)
    DOT_PUT(1, 0) DOT_PUT(1, 1) DOT_PUT(1, 2) DOT_PUT(1, 3)
    DOT_PUT(2, 0) DOT_PUT(2, 1) DOT_PUT(2, 2) DOT_PUT(2, 3)
}

#define PACK_KB 32   /* k values per work-item */

/* dst[b*dsb + q*W*k + p*W + i] = src[soff + b*ssb + (q*W + i)*sr + p*sk]
 * for i < W (0 where q*W + i >= count): panel q of W rows (or columns) of
 * a (count, k) operand read through strides sr and sk, k-major. One work-
 * item copies PACK_KB values of k of one panel, looping along whichever
 * source stride is 1. Global (ceil(k/PACK_KB), panels, batch). */
__kernel void gemm_pack(__global float *dst, long doff, long dsb, __global const float *src,
                        long soff, long sr, long sk, long ssb, long count, long k, int W)
{
    const long p0 = get_global_id(0) * PACK_KB, q = get_global_id(1), b = get_global_id(2);
    if (p0 >= k)
        return;
    const long pend = min(p0 + PACK_KB, k), i0 = q * W;
    const int w = (int)min((long)W, count - i0);
    __global float *d = dst + doff + b * dsb + q * W * k;
    __global const float *s = src + soff + b * ssb + i0 * sr;
    if (sr == 1 && w == 16 && W == 16) {
        for (long p = p0; p < pend; ++p)
            vstore16(vload16(0, s + p * sk), 0, d + p * 16);
        return;
    }
    if (sr == 1) {
        for (long p = p0; p < pend; ++p)
            for (int i = 0; i < w; ++i)
                d[p * W + i] = s[p * sk + i];
    } else {
        for (int i = 0; i < w; ++i)
            for (long p = p0; p < pend; ++p)
                d[p * W + i] = s[i * sr + p * sk];
    }
    for (long p = p0; p < pend; ++p)
        for (int i = w; i < W; ++i)
            d[p * W + i] = 0.0f;
}
