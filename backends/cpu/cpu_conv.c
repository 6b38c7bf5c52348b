/*
 * backends/cpu/cpu_conv.c — convolution and pooling primitives over NCHW
 * batches (backend.h: im2col, col2im, pool2d, pool2d_backward):
 *
 *   im2col   col[b, (ci*kh + i)*kw + j, y*ow + x] =
 *                img[b, ci, y*sh - ph + i*dh, x*sw - pw + j*dw]  (0 in padding)
 *   col2im   its adjoint, accumulated into img
 *   pool2d   max (argmax = first maximum, padding ignored) or average
 *            (divided by kh*kw, padding counted: PyTorch's
 *            count_include_pad=True)
 *   pool2d_backward  the adjoint of pool2d, accumulated into gin
 *
 * The frontend runs a convolution as im2col followed by a GEMM, so im2col
 * walks col row by row: for each (ci, i, j) it finds the ranges of y and x
 * whose taps land inside the image once (valid_range) and fills the row in
 * one vectorised call for stride 1 (a strided loop otherwise), with no
 * per-element test and no call per output row (a small CNN's rows are 14
 * floats, where a memcpy call cost more than the copy).
 * The adjoints (col2im, pool2d_backward) gather the sums of one input plane
 * in a double scratch plane and add it to the float output once, so each
 * element is rounded once, as everywhere in this oracle.
 *
 * Threads: every primitive here is independent per image (im2col) or per
 * (image, channel) plane (the others), so large batches are split across
 * the thread pool by whole images or planes; each output element is
 * computed as in the serial loop, so results do not depend on the thread
 * count. A part's double scratch plane is its thread's (cg__cpu_scratch).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

/* Validates d: positive kernel, stride and dilation, non-negative sizes and
 * padding, and an output size that matches the input (so no index below
 * can leave its plane). what names the primitive for the message. */
static cg_status check_desc(struct cg_cpu_ctx *c, const struct cg_conv2d_desc *d,
                            const char *what)
{
    char msg[512];
    cg_status st = cg_conv2d_desc_check(d, msg, sizeof msg);
    return st == CG_OK ? CG_OK : cg__cpu_error(c, st, "%s: %s", what, msg);
}

/* The outputs o in [0, n) whose tap o * stride + off lies in [0, size):
 * [*lo, *hi), possibly empty. */
static void valid_range(int64_t off, int64_t stride, int64_t size, int64_t n, int64_t *lo,
                        int64_t *hi)
{
    /* o * stride + off >= 0  <=>  o >= ceil(-off / stride) */
    int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
    /* o * stride + off < size  <=>  o < ceil((size - off) / stride) */
    int64_t b = size - off <= 0 ? 0 : (size - off + stride - 1) / stride;
    if (b > n) b = n;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* One primitive's arguments, for the range functions below. */
struct conv_job {
    const struct cg_conv2d_desc *d;
    enum cg_pool_kind kind;
    float *dst, *aux;           /* col / img / out / gin; argmax          */
    const float *src, *aux_in;  /* img / col / in / gout; argmax          */
    struct cg_cpu_ctx *c;
    atomic_int failed;          /* a part could not get its scratch plane */
};

/* Elements per part when a primitive is split across threads (each item
 * moves or adds a few floats). */
#define CONV_PAR_GRAIN (CG_CPU_PAR_MIN / 2)

/* Runs fn over `items` images or planes of `per` elements each, split
 * into parts of at least CONV_PAR_GRAIN elements. */
static void conv_parallel(struct cg_cpu_ctx *c, int64_t items, int64_t per, cg_cpu_range_fn fn,
                          struct conv_job *j)
{
    int64_t grain = per > 0 ? (CONV_PAR_GRAIN + per - 1) / per : items;
    cg__cpu_parallel_for(c, items, grain, fn, j);
}

/* Loops GCC must not turn back into memcpy/memset calls (short rows). */
#if defined(__GNUC__) && !defined(__clang__)
#define CONV_NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define CONV_NO_LIBCALL
#endif

/* One (ci, i, j) row of col for stride 1: oh rows of ow outputs, output
 * (y, x) copied from src's pixel (y + yoff, x + xoff) where y in [y0, y1)
 * and x in [x0, x1), zero elsewhere. Plain loops GCC vectorises: the rows
 * are short (14 or 28 floats in a small CNN), so a memcpy call per row cost
 * more than the copy. */
CG_CPU_KERNEL CONV_NO_LIBCALL static void im2col_rows_s1(float *restrict out, const float *restrict src,
                                                         int64_t oh, int64_t ow, int64_t w,
                                                         int64_t yoff, int64_t xoff, int64_t y0,
                                                         int64_t y1, int64_t x0, int64_t x1)
{
    for (int64_t y = 0; y < oh; y++, out += ow) {
        if (y < y0 || y >= y1) {
            for (int64_t x = 0; x < ow; x++) out[x] = 0.0f;
            continue;
        }
        int64_t base = (y + yoff) * w + xoff;   /* >= 0 for x >= x0 */
        for (int64_t x = 0; x < x0; x++) out[x] = 0.0f;
        for (int64_t x = x0; x < x1; x++) out[x] = src[base + x];
        for (int64_t x = x1; x < ow; x++) out[x] = 0.0f;
    }
}

/* Images [lo, hi) of im2col. */
static void im2col_range(void *arg, int64_t lo, int64_t hi)
{
    const struct conv_job *jb = arg;
    const struct cg_conv2d_desc *d = jb->d;
    int64_t k = d->c * d->kh * d->kw, p = d->oh * d->ow, plane = d->h * d->w;
    for (int64_t b = lo; b < hi; b++)
        for (int64_t ci = 0; ci < d->c; ci++) {
            const float *src = jb->src + (b * d->c + ci) * plane;
            for (int64_t i = 0; i < d->kh; i++)
                for (int64_t j = 0; j < d->kw; j++) {
                    int64_t row = (ci * d->kh + i) * d->kw + j;
                    float *dst = jb->dst + (b * k + row) * p;
                    int64_t y0, y1, x0, x1, xoff = j * d->dw - d->pw, yoff = i * d->dh - d->ph;
                    valid_range(yoff, d->sh, d->h, d->oh, &y0, &y1);
                    valid_range(xoff, d->sw, d->w, d->ow, &x0, &x1);
                    if (d->sh == 1 && d->sw == 1) {   /* the common case */
                        im2col_rows_s1(dst, src, d->oh, d->ow, d->w, yoff, xoff, y0, y1, x0,
                                       x1);
                        continue;
                    }
                    for (int64_t y = 0; y < d->oh; y++) {
                        float *out = dst + y * d->ow;
                        if (y < y0 || y >= y1 || x0 == x1) {
                            memset(out, 0, sizeof(float) * (size_t)d->ow);
                            continue;
                        }
                        const float *in = src + (y * d->sh + yoff) * d->w;
                        int64_t x = 0;
                        for (; x < x0; x++) out[x] = 0.0f;
                        for (x = x0; x < x1; x++) out[x] = in[x * d->sw + xoff];
                        for (x = x1; x < d->ow; x++) out[x] = 0.0f;
                    }
                }
        }
}

cg_status cg__cpu_im2col(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr col,
                         struct cg_ptr img)
{
    /* col: (n, c*kh*kw, oh*ow), img: (n, c, h, w) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_desc(c, d, "im2col");
    if (s != CG_OK) return s;
    int64_t k = d->c * d->kh * d->kw, p = d->oh * d->ow, plane = d->h * d->w;
    s = cg__cpu_check_range(c, col, d->n * k * p, "im2col col");
    if (s == CG_OK) s = cg__cpu_check_range(c, img, d->n * d->c * plane, "im2col img");
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (d->n * k * p == 0) return CG_OK;

    struct conv_job j = {.d = d, .dst = cg__cpu_at(col), .src = cg__cpu_at(img), .c = c};
    conv_parallel(c, d->n, k * p, im2col_range, &j);
    return CG_OK;
}

/* One (ci, i, j) row of col added into the double plane acc, for stride 1
 * across: output (y, x) to pixel (y * sh + yoff, x + xoff), y in [y0, y1)
 * and x in [x0, x1) (the sums stay in double). One call per row of col,
 * not per output row (14 elements in a small CNN). */
CG_CPU_KERNEL static void col2im_rows_sw1(double *restrict acc, const float *restrict from,
                                          int64_t ow, int64_t w, int64_t sh, int64_t yoff,
                                          int64_t xoff, int64_t y0, int64_t y1, int64_t x0,
                                          int64_t x1)
{
    for (int64_t y = y0; y < y1; y++) {
        int64_t base = (y * sh + yoff) * w + xoff;   /* >= 0 for x >= x0 */
        const float *f = from + y * ow;
        for (int64_t x = x0; x < x1; x++) acc[base + x] += f[x];
    }
}

/* dst[q] = dst[q] + acc[q] rounded once, q < n. */
CG_CPU_KERNEL static void add_plane(float *restrict dst, const double *restrict acc, int64_t n)
{
    for (int64_t q = 0; q < n; q++) dst[q] = (float)(dst[q] + acc[q]);
}

/* Planes [lo, hi) (q = b * c + ci) of col2im, summed in the thread's
 * double scratch plane. */
static void col2im_range(void *arg, int64_t lo, int64_t hi)
{
    struct conv_job *jb = arg;
    const struct cg_conv2d_desc *d = jb->d;
    int64_t k = d->c * d->kh * d->kw, p = d->oh * d->ow, plane = d->h * d->w;
    double *acc = cg__cpu_scratch(jb->c, sizeof(double) * (size_t)(plane > 0 ? plane : 1));
    if (!acc) {
        atomic_store(&jb->failed, 1);
        return;
    }
    for (int64_t q = lo; q < hi; q++) {
        int64_t b = q / d->c, ci = q % d->c;
        memset(acc, 0, sizeof(double) * (size_t)plane);
        for (int64_t i = 0; i < d->kh; i++)
            for (int64_t j = 0; j < d->kw; j++) {
                int64_t row = (ci * d->kh + i) * d->kw + j;
                const float *src = jb->src + (b * k + row) * p;
                int64_t y0, y1, x0, x1, xoff = j * d->dw - d->pw;
                valid_range(i * d->dh - d->ph, d->sh, d->h, d->oh, &y0, &y1);
                valid_range(xoff, d->sw, d->w, d->ow, &x0, &x1);
                if (d->sw == 1) {   /* the common case: contiguous, vectorised */
                    col2im_rows_sw1(acc, src, d->ow, d->w, d->sh, i * d->dh - d->ph, xoff, y0,
                                    y1, x0, x1);
                    continue;
                }
                for (int64_t y = y0; y < y1; y++) {
                    double *to = acc + (y * d->sh - d->ph + i * d->dh) * d->w;
                    const float *from = src + y * d->ow;
                    for (int64_t x = x0; x < x1; x++) to[x * d->sw + xoff] += from[x];
                }
            }
        add_plane(jb->dst + q * plane, acc, plane);
    }
}

cg_status cg__cpu_col2im(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr img,
                         struct cg_ptr col)
{
    /* img: (n, c, h, w) accumulated into, col: (n, c*kh*kw, oh*ow) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_desc(c, d, "col2im");
    if (s != CG_OK) return s;
    int64_t k = d->c * d->kh * d->kw, p = d->oh * d->ow, plane = d->h * d->w;
    s = cg__cpu_check_range(c, img, d->n * d->c * plane, "col2im img");
    if (s == CG_OK) s = cg__cpu_check_range(c, col, d->n * k * p, "col2im col");
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (d->n * k * p == 0) return CG_OK;   /* nothing reads any pixel: img stays */

    /* Each part sums its planes in its thread's scratch. The caller's is
     * taken first, so a serial run fails before any write; a worker that
     * cannot get one leaves its planes unwritten and the call fails. */
    struct conv_job j = {.d = d, .dst = cg__cpu_at(img), .src = cg__cpu_at(col), .c = c};
    atomic_init(&j.failed, 0);
    if (!cg__cpu_scratch(c, sizeof(double) * (size_t)(plane > 0 ? plane : 1)))
        return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY, "col2im: %lld-pixel scratch",
                             (long long)plane);
    conv_parallel(c, d->n * d->c, d->kh * d->kw * p + plane, col2im_range, &j);
    if (atomic_load(&j.failed))
        return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY, "col2im: %lld-pixel scratch",
                             (long long)plane);
    return CG_OK;
}

/* Max over one window of plane `in` (h, w) for output (y, x): the first
 * maximum's index (h_in * w + w_in) in *arg; NaN wins over numbers (as
 * torch.max_pool2d propagates NaN). A window entirely in the padding gives
 * -inf and index -1. */
static float window_max(const struct cg_conv2d_desc *d, const float *in, int64_t y,
                        int64_t x, int64_t *arg)
{
    float best = -INFINITY;
    int64_t at = -1;
    for (int64_t i = 0; i < d->kh; i++) {
        int64_t iy = y * d->sh - d->ph + i * d->dh;
        if (iy < 0 || iy >= d->h) continue;
        for (int64_t j = 0; j < d->kw; j++) {
            int64_t ix = x * d->sw - d->pw + j * d->dw;
            if (ix < 0 || ix >= d->w) continue;
            float v = in[iy * d->w + ix];
            if (at < 0 || v > best || (isnan(v) && !isnan(best))) {
                best = v;
                at = iy * d->w + ix;
            }
        }
    }
    *arg = at;
    return best;
}

/* Sum over one window, padding counting as zeros. */
static double window_sum(const struct cg_conv2d_desc *d, const float *in, int64_t y,
                         int64_t x)
{
    double sum = 0.0;
    for (int64_t i = 0; i < d->kh; i++) {
        int64_t iy = y * d->sh - d->ph + i * d->dh;
        if (iy < 0 || iy >= d->h) continue;
        for (int64_t j = 0; j < d->kw; j++) {
            int64_t ix = x * d->sw - d->pw + j * d->dw;
            if (ix >= 0 && ix < d->w) sum += in[iy * d->w + ix];
        }
    }
    return sum;
}

/* "v replaces best as the window's maximum" in window_max's order: larger,
 * or the first NaN. */
#define POOL_TAKES(v, best) ((v) > (best) || ((v) != (v) && (best) == (best)))

/* Comparisons that may not trap: lets GCC if-convert (and so vectorise)
 * the selects below; clgrad never reads the floating-point flags. */
#if defined(__GNUC__) && !defined(__clang__)
#define POOL_NO_TRAP __attribute__((optimize("no-trapping-math")))
#else
#define POOL_NO_TRAP
#endif

/* One output row of 2x2 stride-2 max pooling over rows r0 and r0 + w of a
 * plane (base: r0's index in it), for inputs without NaN: the first
 * maximum of each row pair, then the bottom one only if strictly larger,
 * which is window_max's row-major first maximum. Selects, no branches
 * (random data mispredicts every other one), indices as floats (exact
 * below 2^24), so the loop vectorises. The row goes in blocks of POOL_VW
 * outputs, a fixed count GCC turns into straight vector code with no
 * scalar remainder (rows are short: 14 or 7 outputs in a small CNN, mostly
 * remainder otherwise); the last block overlaps the one before, which
 * recomputes a few outputs to the same values. Returns whether the
 * windows hold a NaN, in which case the caller redoes the row by
 * window_max's rule. Needs ow >= POOL_VW. */
#define POOL_2X2_ROW(NAME, POOL_VW)                                                         \
    CG_CPU_KERNEL POOL_NO_TRAP static bool NAME(float *restrict o, float *restrict am,       \
                                                const float *restrict r0, int64_t w,       \
                                                int64_t base, int64_t ow)                  \
    {                                                                                     \
        const float *r1 = r0 + w;                                                         \
        float fb = (float)base, fw = (float)w;                                            \
        int n = (int)ow, nan = 0; /* < 2^24: int keeps the conversion vectorisable */     \
        for (int x0 = 0;; x0 += POOL_VW) {                                                \
            if (x0 > n - POOL_VW) x0 = n - POOL_VW;                                       \
            _Pragma("GCC unroll 1") /* a 4-wide loop unrolled first stays scalar */     \
            for (int k = 0; k < POOL_VW; k++) {                                           \
                int x = x0 + k;                                                           \
                float xf = fb + (float)(2 * x);                                           \
                float a = r0[2 * x], b = r0[2 * x + 1], c = r1[2 * x], d = r1[2 * x + 1]; \
                int tt = b > a, tb = d > c;                                               \
                float top = tt ? b : a, bot = tb ? d : c;                                 \
                float ti = tt ? xf + 1.0f : xf, bi = tb ? xf + fw + 1.0f : xf + fw;       \
                int t = bot > top;                                                        \
                o[x] = t ? bot : top;                                                     \
                am[x] = t ? bi : ti;                                                      \
                nan |= (a != a) | (b != b) | (c != c) | (d != d);                         \
            }                                                                             \
            if (x0 + POOL_VW == n) break;                                                 \
        }                                                                                 \
        return nan != 0;                                                                  \
    }
POOL_2X2_ROW(max_pool_2x2_row8, 8)
POOL_2X2_ROW(max_pool_2x2_row4, 4)

/* Max pooling without padding: every window lies inside its plane (check_desc
 * matched oh, ow to the input), so the loops test no bounds. The 2x2,
 * stride-2 pooling of most CNNs gets its own loop over row pairs. Same
 * values and first-maximum indices as window_max. */
static void max_pool_unpadded(const struct cg_conv2d_desc *d, float *out, float *argmax,
                              const float *in, int64_t planes)
{
    /* out, argmax: (planes, oh, ow); in: (planes, h, w) */
    int64_t w = d->w, plane = d->h * d->w, p = d->oh * d->ow;
    bool two_by_two = d->kh == 2 && d->kw == 2 && d->sh == 2 && d->sw == 2 &&
                      d->dh == 1 && d->dw == 1 && plane < ((int64_t)1 << 24);
    for (int64_t q = 0; q < planes; q++) {
        const float *src = in + q * plane;
        float *o = out + q * p, *am = argmax + q * p;
        for (int64_t y = 0; y < d->oh; y++, o += d->ow, am += d->ow) {
            if (two_by_two && d->ow >= 8 &&
                !max_pool_2x2_row8(o, am, src + 2 * y * w, w, 2 * y * w, d->ow))
                continue;
            if (two_by_two && d->ow >= 4 && d->ow < 8 &&
                !max_pool_2x2_row4(o, am, src + 2 * y * w, w, 2 * y * w, d->ow))
                continue;
            for (int64_t x = 0; x < d->ow; x++) {
                int64_t at = y * d->sh * w + x * d->sw;
                float best = src[at];
                for (int64_t i = 0; i < d->kh; i++)
                    for (int64_t j = 0; j < d->kw; j++) {
                        int64_t t = (y * d->sh + i * d->dh) * w + x * d->sw + j * d->dw;
                        if (POOL_TAKES(src[t], best)) best = src[t], at = t;
                    }
                o[x] = best;
                am[x] = (float)at;
            }
        }
    }
}

static cg_status check_kind(struct cg_cpu_ctx *c, enum cg_pool_kind kind, const char *what)
{
    if (kind != CG_POOL_MAX && kind != CG_POOL_AVG)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: unknown pool kind %d", what,
                             (int)kind);
    return CG_OK;
}

/* Planes [lo, hi) of pool2d. */
static void pool2d_range(void *arg, int64_t lo, int64_t hi)
{
    const struct conv_job *jb = arg;
    const struct cg_conv2d_desc *d = jb->d;
    int64_t p = d->oh * d->ow, plane = d->h * d->w;
    if (jb->kind == CG_POOL_MAX && d->ph == 0 && d->pw == 0) {
        max_pool_unpadded(d, jb->dst + lo * p, jb->aux + lo * p, jb->src + lo * plane, hi - lo);
        return;
    }
    double area = (double)(d->kh * d->kw);
    for (int64_t q = lo; q < hi; q++) {
        const float *src = jb->src + q * plane;
        float *dst = jb->dst + q * p;
        for (int64_t y = 0; y < d->oh; y++)
            for (int64_t x = 0; x < d->ow; x++) {
                if (jb->kind == CG_POOL_AVG) {
                    dst[y * d->ow + x] = (float)(window_sum(d, src, y, x) / area);
                    continue;
                }
                int64_t at;
                dst[y * d->ow + x] = window_max(d, src, y, x, &at);
                jb->aux[q * p + y * d->ow + x] = (float)at;
            }
    }
}

cg_status cg__cpu_pool2d(void *ctx, enum cg_pool_kind kind, const struct cg_conv2d_desc *d,
                         struct cg_ptr out, struct cg_ptr argmax, struct cg_ptr in)
{
    /* out, argmax: (n, c, oh, ow); in: (n, c, h, w) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_kind(c, kind, "pool2d");
    if (s == CG_OK) s = check_desc(c, d, "pool2d");
    if (s != CG_OK) return s;
    int64_t planes = d->n * d->c, p = d->oh * d->ow, plane = d->h * d->w;
    s = cg__cpu_check_range(c, out, planes * p, "pool2d out");
    if (s == CG_OK) s = cg__cpu_check_range(c, in, planes * plane, "pool2d in");
    if (s == CG_OK && kind == CG_POOL_MAX)
        s = cg__cpu_check_range(c, argmax, planes * p, "pool2d argmax");
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (planes * p == 0) return CG_OK;

    struct conv_job j = {.d = d, .kind = kind, .dst = cg__cpu_at(out),
                         .aux = kind == CG_POOL_MAX ? cg__cpu_at(argmax) : NULL,
                         .src = cg__cpu_at(in), .c = c};
    conv_parallel(c, planes, plane + p, pool2d_range, &j);
    return CG_OK;
}

/* Whether every entry is -1 or an integer in [0, limit). Bitwise ands and
 * ors of the comparisons, no short-circuit, so the loop vectorises (it
 * ran scalar, with branches, at a third of the scatter it guards). */
CG_CPU_KERNEL POOL_NO_TRAP static bool argmax_all_valid(const float *restrict argmax,
                                                        int64_t count, float limit)
{
    int bad = 0;
    for (int64_t t = 0; t < count; t++) {
        float v = argmax[t];
        int ok = (v == -1.0f) | ((v >= 0.0f) & (v < limit) & (v == truncf(v)));
        bad |= ok ^ 1;
    }
    return !bad;
}

/* Checks every argmax entry before any write: -1 (an empty window) or an
 * integer index inside the (h, w) plane. One branch-free pass (the check
 * ran per element through cg__cpu_index and cost as much as the scatter);
 * cg__cpu_index only words the message for the first bad entry. */
static cg_status check_argmax(struct cg_cpu_ctx *c, const float *argmax, int64_t count,
                              int64_t plane)
{
    /* plane < 2^24 (true of any plane a pooling index can name exactly)
     * keeps (float)plane exact. */
    if (argmax_all_valid(argmax, count, (float)plane) && plane < ((int64_t)1 << 24))
        return CG_OK;
    for (int64_t t = 0; t < count; t++) {
        if (argmax[t] == -1.0f) continue;
        int64_t at;
        cg_status s = cg__cpu_index(c, argmax[t], plane, "pool2d_backward argmax", &at);
        if (s != CG_OK) return s;
    }
    return CG_OK;
}

/* Planes [lo, hi) of max pool2d_backward with disjoint windows: each
 * gradient straight into its pixel. */
static void pool2d_backward_disjoint(void *arg, int64_t lo, int64_t hi)
{
    const struct conv_job *jb = arg;
    const struct cg_conv2d_desc *d = jb->d;
    int64_t p = d->oh * d->ow, plane = d->h * d->w;
    for (int64_t q = lo; q < hi; q++) {
        const float *g = jb->src + q * p, *am = jb->aux_in + q * p;
        float *dst = jb->dst + q * plane;
        for (int64_t t = 0; t < p; t++)
            if (am[t] >= 0.0f) dst[(int64_t)am[t]] += g[t];
    }
}

/* Planes [lo, hi) of pool2d_backward, summed in the thread's double
 * scratch plane. */
static void pool2d_backward_range(void *arg, int64_t lo, int64_t hi)
{
    struct conv_job *jb = arg;
    const struct cg_conv2d_desc *d = jb->d;
    int64_t p = d->oh * d->ow, plane = d->h * d->w;
    double *acc = cg__cpu_scratch(jb->c, sizeof(double) * (size_t)(plane > 0 ? plane : 1));
    if (!acc) {
        atomic_store(&jb->failed, 1);
        return;
    }
    double area = (double)(d->kh * d->kw);
    for (int64_t q = lo; q < hi; q++) {
        const float *g = jb->src + q * p;
        memset(acc, 0, sizeof(double) * (size_t)plane);
        for (int64_t y = 0; y < d->oh; y++)
            for (int64_t x = 0; x < d->ow; x++) {
                double gy = g[y * d->ow + x];
                if (jb->kind == CG_POOL_MAX) {
                    float at = jb->aux_in[q * p + y * d->ow + x];
                    if (at >= 0.0f) acc[(int64_t)at] += gy;
                    continue;
                }
                for (int64_t i = 0; i < d->kh; i++) {
                    int64_t iy = y * d->sh - d->ph + i * d->dh;
                    if (iy < 0 || iy >= d->h) continue;
                    for (int64_t j = 0; j < d->kw; j++) {
                        int64_t ix = x * d->sw - d->pw + j * d->dw;
                        if (ix >= 0 && ix < d->w) acc[iy * d->w + ix] += gy / area;
                    }
                }
            }
        float *dst = jb->dst + q * plane;
        for (int64_t t = 0; t < plane; t++) dst[t] = (float)(dst[t] + acc[t]);
    }
}

cg_status cg__cpu_pool2d_backward(void *ctx, enum cg_pool_kind kind,
                                  const struct cg_conv2d_desc *d, struct cg_ptr gin,
                                  struct cg_ptr gout, struct cg_ptr argmax)
{
    /* gin: (n, c, h, w) accumulated into; gout, argmax: (n, c, oh, ow) */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_kind(c, kind, "pool2d_backward");
    if (s == CG_OK) s = check_desc(c, d, "pool2d_backward");
    if (s != CG_OK) return s;
    int64_t planes = d->n * d->c, p = d->oh * d->ow, plane = d->h * d->w;
    s = cg__cpu_check_range(c, gin, planes * plane, "pool2d_backward gin");
    if (s == CG_OK) s = cg__cpu_check_range(c, gout, planes * p, "pool2d_backward gout");
    if (s == CG_OK && kind == CG_POOL_MAX) {
        s = cg__cpu_check_range(c, argmax, planes * p, "pool2d_backward argmax");
        if (s == CG_OK && planes * p > 0)
            s = check_argmax(c, cg__cpu_at(argmax), planes * p, plane);
    }
    if (s != CG_OK) return s;
    c->stats.launches++;
    if (planes * p == 0) return CG_OK;
    /* Disjoint windows (2x2 stride 2, say): each input pixel receives at
     * most one gradient, so adding it straight to gin rounds once, as the
     * double scratch would. */
    bool disjoint = kind == CG_POOL_MAX && d->sh >= d->kh && d->sw >= d->kw && d->dh == 1 &&
                    d->dw == 1;
    struct conv_job j = {.d = d, .kind = kind, .dst = cg__cpu_at(gin), .src = cg__cpu_at(gout),
                         .aux_in = kind == CG_POOL_MAX ? cg__cpu_at(argmax) : NULL, .c = c};
    atomic_init(&j.failed, 0);
    if (disjoint) {
        conv_parallel(c, planes, p, pool2d_backward_disjoint, &j);
        return CG_OK;
    }
    /* As in col2im: the caller's scratch first, so a serial run fails
     * before any write. */
    if (!cg__cpu_scratch(c, sizeof(double) * (size_t)(plane > 0 ? plane : 1)))
        return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY, "pool2d_backward: %lld-pixel scratch",
                             (long long)plane);
    conv_parallel(c, planes, plane + p * d->kh * d->kw, pool2d_backward_range, &j);
    if (atomic_load(&j.failed))
        return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY, "pool2d_backward: %lld-pixel scratch",
                             (long long)plane);
    return CG_OK;
}
