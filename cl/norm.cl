/*
 * cl/norm.cl - LayerNorm over the last axis of a contiguous (rows, cols)
 * block, forward and backward (OpenCL C 1.2; backend.h layernorm /
 * layernorm_backward give the formulas: torch.nn.LayerNorm with the biased
 * variance, and the backward PyTorch's layer_norm_backward computes from
 * the row means of g = gy w and g xhat).
 *
 * Row kernels (layernorm_fwd, layernorm_bwd): a 1-d work-group of local
 * size lc * R holds R rows of lc = 2^lc_log2 work-items each; work-item
 * (lx, ly) = (lid mod lc, lid / lc) takes columns lx, lx + lc, ... of row
 * group * R + ly. Row sums are a tree over the lc partial sums in local
 * memory, so they do not depend on timing. The mean comes first and the
 * variance from a second pass over x - mean (no cancellation, as the cpu
 * backend). Narrow rows share a group (the host picks lc >= cols and R =
 * local / lc), so a group does more than one short row: PoCL pays per
 * work-group. The _1 variants are the same bodies with one column per
 * work-item (cols <= lc): no loop, so PoCL vectorises across work-items.
 *
 * Those kernels suit GPUs; CPU devices take the *_row kernels further
 * down (a work-item per row, or per block of rows), see there.
 *
 * Parameter gradients (layernorm_bwd_cols or _cols_row, then
 * layernorm_bwd_combine): column sums over fixed blocks of `blk` rows,
 * each block adding its rows in order, then one work-item per (column,
 * gw | gb) adding the blocks' partial sums in block order: the same result
 * on every run (no atomics).
 */

/* The sum of v over the lc work-items of this work-item's row (lv[base,
 * base + lc) is the row's scratch, lc a power of two). Every work-item
 * of the group must call it. */
static float cg_ln_row_sum(__local float *lv, float v, int lx, int base, int lc)
{
    lv[base + lx] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = lc / 2; s > 0; s /= 2) {
        if (lx < s)
            lv[base + lx] += lv[base + lx + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = lv[base];
    barrier(CLK_LOCAL_MEM_FENCE);  /* lv is reused by the next sum */
    return r;
}

/* Two row sums at once (lv holds 2 * local floats): *a, *b in place. */
static void cg_ln_row_sum2(__local float *lv, float *a, float *b, int lx, int base, int lc)
{
    __local float *lb = lv + get_local_size(0);
    lv[base + lx] = *a;
    lb[base + lx] = *b;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = lc / 2; s > 0; s /= 2) {
        if (lx < s) {
            lv[base + lx] += lv[base + lx + s];
            lb[base + lx] += lb[base + lx + s];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *a = lv[base];
    *b = lb[base];
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* y, x: (rows, cols) at yo, xo; mean, rstd: (rows) at mo, ro; w, b: (cols)
 * at wo, bo, read only when has_w / has_b (else the host passes a readable
 * stand-in: straight-line loads). per: columns per work-item. */
static void cg_ln_fwd(__global float *y, long yo, __global float *mean, long mo,
                      __global float *rstd, long ro, __global const float *x, long xo,
                      __global const float *w, long wo, int has_w, __global const float *b,
                      long bo, int has_b, long rows, long cols, float eps, int lc_log2,
                      const int per, __local float *lv)
{
    const int lid = get_local_id(0), lc = 1 << lc_log2, lx = lid & (lc - 1);
    const int base = lid - lx;
    const long row = (long)get_group_id(0) * (long)(get_local_size(0) >> lc_log2) +
                     (lid >> lc_log2);
    const int live = row < rows;
    __global const float *xr = x + xo + row * cols;
    __global float *yr = y + yo + row * cols;

    float s = 0.0f;
    for (int k = 0; k < per; ++k) {
        long j = lx + (long)k * lc;
        if (live && j < cols)
            s += xr[j];
    }
    const float mu = cg_ln_row_sum(lv, s, lx, base, lc) / (float)cols;
    float q = 0.0f;
    for (int k = 0; k < per; ++k) {
        long j = lx + (long)k * lc;
        if (live && j < cols) {
            float d = xr[j] - mu;
            q += d * d;
        }
    }
    const float rs = 1.0f / sqrt(cg_ln_row_sum(lv, q, lx, base, lc) / (float)cols + eps);
    for (int k = 0; k < per; ++k) {
        long j = lx + (long)k * lc;
        if (live && j < cols) {
            float wj = w[wo + j], bj = b[bo + j];
            yr[j] = (xr[j] - mu) * rs * (has_w ? wj : 1.0f) + (has_b ? bj : 0.0f);
        }
    }
    if (live && lx == 0) {
        mean[mo + row] = mu;
        rstd[ro + row] = rs;
    }
}

__kernel void layernorm_fwd(__global float *y, long yo, __global float *mean, long mo,
                            __global float *rstd, long ro, __global const float *x, long xo,
                            __global const float *w, long wo, int has_w,
                            __global const float *b, long bo, int has_b, long rows, long cols,
                            float eps, int lc_log2, int per, __local float *lv)
{
    cg_ln_fwd(y, yo, mean, mo, rstd, ro, x, xo, w, wo, has_w, b, bo, has_b, rows, cols, eps,
              lc_log2, per, lv);
}

/* cols <= lc: one column per work-item. */
__kernel void layernorm_fwd_1(__global float *y, long yo, __global float *mean, long mo,
                              __global float *rstd, long ro, __global const float *x, long xo,
                              __global const float *w, long wo, int has_w,
                              __global const float *b, long bo, int has_b, long rows,
                              long cols, float eps, int lc_log2, __local float *lv)
{
    cg_ln_fwd(y, yo, mean, mo, rstd, ro, x, xo, w, wo, has_w, b, bo, has_b, rows, cols, eps,
              lc_log2, 1, lv);
}

/* gx, gy, x: (rows, cols); mean, rstd: (rows); w: (cols) when has_w.
 *   gx = rstd (g - mean_j(g) - xhat mean_j(g xhat)),  g = gy w. */
static void cg_ln_bwd(__global float *gx, long gxo, __global const float *gy, long gyo,
                      __global const float *x, long xo, __global const float *mean, long mo,
                      __global const float *rstd, long ro, __global const float *w, long wo,
                      int has_w, long rows, long cols, int lc_log2, const int per,
                      __local float *lv)
{
    const int lid = get_local_id(0), lc = 1 << lc_log2, lx = lid & (lc - 1);
    const int base = lid - lx;
    const long row = (long)get_group_id(0) * (long)(get_local_size(0) >> lc_log2) +
                     (lid >> lc_log2);
    const int live = row < rows;
    __global const float *xr = x + xo + row * cols;
    __global const float *gr = gy + gyo + row * cols;
    __global float *out = gx + gxo + row * cols;
    const float mu = live ? mean[mo + row] : 0.0f, rs = live ? rstd[ro + row] : 0.0f;

    float sg = 0.0f, sgx = 0.0f;
    for (int k = 0; k < per; ++k) {
        long j = lx + (long)k * lc;
        if (live && j < cols) {
            float wj = w[wo + j];
            float g = gr[j] * (has_w ? wj : 1.0f);
            sg += g;
            sgx += g * ((xr[j] - mu) * rs);
        }
    }
    cg_ln_row_sum2(lv, &sg, &sgx, lx, base, lc);
    const float mg = sg / (float)cols, mgx = sgx / (float)cols;
    for (int k = 0; k < per; ++k) {
        long j = lx + (long)k * lc;
        if (live && j < cols) {
            float wj = w[wo + j];
            float g = gr[j] * (has_w ? wj : 1.0f);
            out[j] = rs * (g - mg - ((xr[j] - mu) * rs) * mgx);
        }
    }
}

__kernel void layernorm_bwd(__global float *gx, long gxo, __global const float *gy, long gyo,
                            __global const float *x, long xo, __global const float *mean,
                            long mo, __global const float *rstd, long ro,
                            __global const float *w, long wo, int has_w, long rows, long cols,
                            int lc_log2, int per, __local float *lv)
{
    cg_ln_bwd(gx, gxo, gy, gyo, x, xo, mean, mo, rstd, ro, w, wo, has_w, rows, cols, lc_log2,
              per, lv);
}

__kernel void layernorm_bwd_1(__global float *gx, long gxo, __global const float *gy, long gyo,
                              __global const float *x, long xo, __global const float *mean,
                              long mo, __global const float *rstd, long ro,
                              __global const float *w, long wo, int has_w, long rows,
                              long cols, int lc_log2, __local float *lv)
{
    cg_ln_bwd(gx, gxo, gy, gyo, x, xo, mean, mo, rstd, ro, w, wo, has_w, rows, cols, lc_log2, 1,
              lv);
}

/* ---- one work-item per row (CPU devices) -------------------------------
 *
 * PoCL runs a work-group as loops over its work-items between barriers,
 * keeping every private value live across a barrier in memory; the
 * row-group kernels above spend most of their time there (a (2048, 64)
 * forward: ~4.5 ms, against ~0.2 ms for the cpu backend). On a CPU device
 * a work-item takes a whole row instead, 8 columns a step with vload8 /
 * vstore8 (one AVX register), the row sums in 8 lanes added in a fixed
 * order (as the cpu backend's cpu_layernorm.c). */

/* ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) */
static float cg_ln_lanes(float8 a)
{
    return ((a.s0 + a.s1) + (a.s2 + a.s3)) + ((a.s4 + a.s5) + (a.s6 + a.s7));
}

/* Arguments as layernorm_fwd's; a grid-stride loop over rows. */
__kernel void layernorm_fwd_row(__global float *y, long yo, __global float *mean, long mo,
                                __global float *rstd, long ro, __global const float *x,
                                long xo, __global const float *w, long wo, int has_w,
                                __global const float *b, long bo, int has_b, long rows,
                                long cols, float eps)
{
    const long c8 = cols & ~7L;
    __global const float *wp = w + wo, *bp = b + bo;
    for (long row = get_global_id(0); row < rows; row += get_global_size(0)) {
        __global const float *xr = x + xo + row * cols;
        __global float *yr = y + yo + row * cols;
        float8 acc = 0.0f;
        long j = 0;
        for (; j < c8; j += 8)
            acc += vload8(0, xr + j);
        float tail[8] = {0};
        for (int l = 0; j < cols; ++j, ++l)
            tail[l] = xr[j];
        acc += vload8(0, tail);
        const float mu = cg_ln_lanes(acc) / (float)cols;
        acc = 0.0f;
        for (j = 0; j < c8; j += 8) {
            float8 d = vload8(0, xr + j) - mu;
            acc += d * d;
        }
        for (int l = 0; l < 8; ++l)
            tail[l] = 0.0f;
        for (int l = 0; j < cols; ++j, ++l)
            tail[l] = (xr[j] - mu) * (xr[j] - mu);
        acc += vload8(0, tail);
        const float rs = 1.0f / sqrt(cg_ln_lanes(acc) / (float)cols + eps);
        for (j = 0; j < c8; j += 8) {
            float8 v = (vload8(0, xr + j) - mu) * rs;
            if (has_w)
                v *= vload8(0, wp + j);
            if (has_b)
                v += vload8(0, bp + j);
            vstore8(v, 0, yr + j);
        }
        for (; j < cols; ++j)
            yr[j] = (xr[j] - mu) * rs * (has_w ? wp[j] : 1.0f) + (has_b ? bp[j] : 0.0f);
        mean[mo + row] = mu;
        rstd[ro + row] = rs;
    }
}

/* Arguments as layernorm_bwd's; a grid-stride loop over rows. */
__kernel void layernorm_bwd_row(__global float *gx, long gxo, __global const float *gy,
                                long gyo, __global const float *x, long xo,
                                __global const float *mean, long mo,
                                __global const float *rstd, long ro, __global const float *w,
                                long wo, int has_w, long rows, long cols)
{
    const long c8 = cols & ~7L;
    __global const float *wp = w + wo;
    for (long row = get_global_id(0); row < rows; row += get_global_size(0)) {
        __global const float *xr = x + xo + row * cols;
        __global const float *gr = gy + gyo + row * cols;
        __global float *out = gx + gxo + row * cols;
        const float mu = mean[mo + row], rs = rstd[ro + row];
        float8 ag = 0.0f, agx = 0.0f;
        long j = 0;
        for (; j < c8; j += 8) {
            float8 g = vload8(0, gr + j);
            if (has_w)
                g *= vload8(0, wp + j);
            ag += g;
            agx += g * ((vload8(0, xr + j) - mu) * rs);
        }
        float tg[8] = {0}, tgx[8] = {0};
        for (int l = 0; j < cols; ++j, ++l) {
            float g = gr[j] * (has_w ? wp[j] : 1.0f);
            tg[l] = g;
            tgx[l] = g * ((xr[j] - mu) * rs);
        }
        ag += vload8(0, tg);
        agx += vload8(0, tgx);
        const float mg = cg_ln_lanes(ag) / (float)cols, mgx = cg_ln_lanes(agx) / (float)cols;
        for (j = 0; j < c8; j += 8) {
            float8 g = vload8(0, gr + j);
            if (has_w)
                g *= vload8(0, wp + j);
            float8 xh = (vload8(0, xr + j) - mu) * rs;
            vstore8(rs * (g - mg - xh * mgx), 0, out + j);
        }
        for (; j < cols; ++j) {
            float g = gr[j] * (has_w ? wp[j] : 1.0f);
            out[j] = rs * (g - mg - ((xr[j] - mu) * rs) * mgx);
        }
    }
}

/* Arguments as layernorm_bwd_cols's; a 1-d range over blocks: work-item
 * k adds its rows, in order, into rows k of dw and db 8 columns a step
 * (the cpu backend's way: the partial rows stay in cache). */
__kernel void layernorm_bwd_cols_row(__global float *dw, long dwo, int has_w,
                                     __global float *db, long dbo, int has_b, long stride,
                                     __global const float *gy, long gyo,
                                     __global const float *x, long xo,
                                     __global const float *mean, long mo,
                                     __global const float *rstd, long ro, long rows, long cols,
                                     int blk, long blocks)
{
    const long c8 = cols & ~7L;
    for (long k = get_global_id(0); k < blocks; k += get_global_size(0)) {
        __global float *pw = dw + dwo + k * stride, *pb = db + dbo + k * stride;
        for (long j = 0; j < cols; ++j) {
            if (has_w)
                pw[j] = 0.0f;
            if (has_b)
                pb[j] = 0.0f;
        }
        const long r1 = (k + 1) * blk < rows ? (k + 1) * blk : rows;
        for (long r = k * blk; r < r1; ++r) {
            __global const float *gr = gy + gyo + r * cols, *xr = x + xo + r * cols;
            const float mu = mean[mo + r], rs = rstd[ro + r];
            long j = 0;
            for (; j < c8; j += 8) {
                float8 g = vload8(0, gr + j);
                if (has_w)
                    vstore8(vload8(0, pw + j) + g * ((vload8(0, xr + j) - mu) * rs), 0, pw + j);
                if (has_b)
                    vstore8(vload8(0, pb + j) + g, 0, pb + j);
            }
            for (; j < cols; ++j) {
                if (has_w)
                    pw[j] += gr[j] * ((xr[j] - mu) * rs);
                if (has_b)
                    pb[j] += gr[j];
            }
        }
    }
}

/* A 2-d range (cols, blocks): work-item (j, k) adds rows [k blk, (k + 1)
 * blk) of column j:
 *   dw[dwo + k stride + j] = sum_r gy[r, j] xhat[r, j]   (when has_w)
 *   db[dbo + k stride + j] = sum_r gy[r, j]              (when has_b)
 * The row loop has the same trip count in every work-item (the tail is
 * masked), which PoCL can vectorise across columns. */
__kernel void layernorm_bwd_cols(__global float *dw, long dwo, int has_w, __global float *db,
                                 long dbo, int has_b, long stride, __global const float *gy,
                                 long gyo, __global const float *x, long xo,
                                 __global const float *mean, long mo,
                                 __global const float *rstd, long ro, long rows, long cols,
                                 int blk)
{
    const long j = get_global_id(0), k = get_global_id(1), r0 = k * blk;
    float sw = 0.0f, sb = 0.0f;
    for (int t = 0; t < blk; ++t) {
        long r = r0 + t;
        if (r < rows) {
            float g = gy[gyo + r * cols + j];
            sw += g * ((x[xo + r * cols + j] - mean[mo + r]) * rstd[ro + r]);
            sb += g;
        }
    }
    if (has_w)
        dw[dwo + k * stride + j] = sw;
    if (has_b)
        db[dbo + k * stride + j] = sb;
}

/* A 2-d range (cols, 2): part holds `blocks` rows of [gw | gb] partial
 * sums (2 cols floats each); work-item (j, h) adds column j of half h in
 * block order into dw (h = 0, when has_w) or db (h = 1, when has_b). */
__kernel void layernorm_bwd_combine(__global float *dw, long dwo, int has_w, __global float *db,
                                    long dbo, int has_b, __global const float *part,
                                    long blocks, long cols)
{
    const long j = get_global_id(0);
    const int h = get_global_id(1);
    __global const float *p = part + h * cols + j;
    float s = 0.0f;
    for (long k = 0; k < blocks; ++k)
        s += p[k * 2 * cols];
    if (h == 0 && has_w)
        dw[dwo + j] = s;
    if (h == 1 && has_b)
        db[dbo + j] = s;
}
