/*
 * tests/test_conv_primitives.c — the convolution and pooling primitives of
 * struct cg_backend_i (im2col, col2im, pool2d, pool2d_backward), called
 * directly on the backend named by CLGRAD_BACKEND (meson runs this binary
 * once per backend) and compared with float64 references written here from
 * the formulas in include/clgrad/backend.h, independently of either backend:
 *
 *   im2col    exactly equal to a per-element reference, and conv computed as
 *             a float64 GEMM over the device's columns equals a direct
 *             (six-loop) convolution
 *   col2im    equal to a direct scatter reference, accumulates into img, and
 *             is im2col's adjoint: <im2col(x), y> == <x, col2im(y)>
 *   pool2d    max: value and first-maximum index exactly, on inputs full of
 *             ties (and NaN); avg: sum / (kh*kw) with padding counted
 *   pool2d_backward  scatter of gout through argmax (max) or over the
 *             window (avg), accumulated into gin
 *
 * Geometries: a fixed list (stride 1/2/3, padding 0/1/2, dilation 1/2,
 * kernels 1/3/5, non-square, odd sizes, batch 1, channel 1, windows that
 * leave remainders, a window wholly in the padding) and seeded random ones.
 * Every device array has guard elements before and after it, and outputs
 * start as garbage: a write outside the region, or an element left
 * unwritten, fails.
 *
 * Tolerances (|got - want| <= atol + rtol * |want|, inputs in [-1, 1]):
 *   im2col, pool max (value and index)       exact
 *   col2im, pool backward                    rtol 1e-6, atol 1e-6 * (kh*kw + 1)
 *   pool avg                                 rtol 1e-6, atol 1e-7 * (kh*kw + 1)
 *   adjoint identity (float64 dot products)  relative 1e-5
 *
 * test_conv_forward_timing runs the conv of a (64, 32, 14, 14) batch with 64
 * 3x3 filters, padding 1, as im2col + batched GEMM, prints its time and
 * checks the result against a direct convolution.
 *
 *   ./test_conv_primitives [filter]      e.g. ./test_conv_primitives "*pool*"
 */
#include "harness.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define GUARD 5             /* guard elements on each side of a device array */
#define GUARD_VALUE 4321.0f
#define GARBAGE 777.0f      /* what outputs hold before a primitive runs */

/* ---- fixture: a context per test, host memory from the harness arena ---- */

#define TALLOC TH_TALLOC
#define setup th_arena_setup
#define teardown th_arena_teardown

struct env {
    cg_ctx *ctx;
    const struct cg_backend_i *be;
    void *bctx;
    uint64_t rng;
};

static struct env env_of(void **state, uint64_t seed)
{
    struct env e = {.ctx = *state, .rng = seed};
    e.be = cg_ctx_backend(e.ctx, &e.bctx);
    assert_non_null(e.be);
    if (!CG_BACKEND_HAS(e.be, im2col) || !CG_BACKEND_HAS(e.be, col2im) ||
        !CG_BACKEND_HAS(e.be, pool2d) || !CG_BACKEND_HAS(e.be, pool2d_backward))
        fail_msg("backend %s lacks the conv/pool primitives", e.be->name);
    return e;
}

#define CHECK_OK(e, call)                                                      \
    do {                                                                       \
        cg_status s_ = (call);                                                 \
        if (s_ != CG_OK)                                                       \
            fail_msg("%s -> %s: %s", #call, cg_status_str(s_),                 \
                     (e)->be->last_error((e)->bctx));                          \
    } while (0)

/* ---- device arrays with guards ---- */

struct darr {
    cg_tensor *t;
    struct cg_ptr at;    /* the first element after the leading guard */
    int64_t n;           /* elements between the guards               */
};

/* A device copy of host[0, n) between guards (host NULL: GARBAGE). */
static struct darr darr_new(struct env *e, const float *host, int64_t n)
{
    int64_t total = n + 2 * GUARD;
    float *h = TALLOC(float, total);
    for (int64_t i = 0; i < total; i++) h[i] = GUARD_VALUE;
    for (int64_t i = 0; i < n; i++) h[GUARD + i] = host ? host[i] : GARBAGE;
    cg_tensor *t = cg_tensor_from_host(e->ctx, CG_SHAPE(total), h);
    if (!t) fail_msg("cg_tensor_from_host(%lld): %s", (long long)total, cg_last_error(e->ctx));
    struct cg_view v = cg_tensor_view(t);
    return (struct darr){t, {v.buf, v.off + GUARD}, n};
}

/* Downloads the region, failing if a guard changed. */
static float *darr_read(struct darr d, const char *what)
{
    int64_t total = d.n + 2 * GUARD;
    float *h = TALLOC(float, total);
    cg_status s = cg_tensor_to_host(d.t, h, total);
    if (s != CG_OK) fail_msg("cg_tensor_to_host: %s", cg_last_error(cg_tensor_ctx(d.t)));
    for (int64_t i = 0; i < GUARD; i++)
        if (h[i] != GUARD_VALUE || h[GUARD + d.n + i] != GUARD_VALUE)
            fail_msg("%s: a guard element outside the region changed", what);
    return h + GUARD;
}

static float *rand_floats(struct env *e, int64_t n)
{
    float *x = TALLOC(float, n);
    th_fill_uniform(&e->rng, x, n, -1.0f, 1.0f);
    return x;
}

/* Halves in [-2, 2]: nine values, so pooling windows hold many ties. */
static float *rand_halves(struct env *e, int64_t n)
{
    float *x = TALLOC(float, n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(floor(th_rand_uniform(&e->rng, -4, 5)) / 2);
    return x;
}

/* ---- geometry ---- */

/* n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw */
struct geo {
    int64_t n, c, h, w, kh, kw, sh, sw, ph, pw, dh, dw;
};

/* PyTorch's output size (torch.nn.Conv2d docs, "Shape"), floor division. */
static int64_t out_len(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    int64_t num = in + 2 * p - d * (k - 1) - 1;
    return num < 0 ? 0 : num / s + 1;
}

static struct cg_conv2d_desc desc_of(struct geo g)
{
    return (struct cg_conv2d_desc){
        .n = g.n, .c = g.c, .h = g.h, .w = g.w, .kh = g.kh, .kw = g.kw,
        .sh = g.sh, .sw = g.sw, .ph = g.ph, .pw = g.pw, .dh = g.dh, .dw = g.dw,
        .oh = out_len(g.h, g.kh, g.sh, g.ph, g.dh), .ow = out_len(g.w, g.kw, g.sw, g.pw, g.dw)};
}

static void geo_name(const struct cg_conv2d_desc *d, char *buf, size_t len)
{
    snprintf(buf, len,
             "in (%lld,%lld,%lld,%lld) k (%lld,%lld) s (%lld,%lld) p (%lld,%lld) "
             "d (%lld,%lld) out (%lld,%lld)",
             (long long)d->n, (long long)d->c, (long long)d->h, (long long)d->w,
             (long long)d->kh, (long long)d->kw, (long long)d->sh, (long long)d->sw,
             (long long)d->ph, (long long)d->pw, (long long)d->dh, (long long)d->dw,
             (long long)d->oh, (long long)d->ow);
}

static const struct geo conv_geos[] = {
    {1, 1, 5, 5, 3, 3, 1, 1, 0, 0, 1, 1},     /* batch 1, channel 1      */
    {2, 3, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1},     /* "same" padding          */
    {1, 2, 9, 11, 3, 3, 2, 2, 1, 1, 1, 1},    /* stride 2                */
    {2, 1, 10, 7, 5, 5, 3, 3, 2, 2, 1, 1},    /* stride 3 leaves rests   */
    {1, 3, 11, 9, 3, 3, 1, 1, 2, 2, 2, 2},    /* dilation 2              */
    {3, 2, 8, 8, 1, 1, 1, 1, 0, 0, 1, 1},     /* 1x1                     */
    {1, 1, 13, 13, 1, 1, 2, 2, 0, 0, 1, 1},   /* 1x1 stride 2            */
    {2, 2, 9, 12, 3, 5, 2, 1, 1, 2, 1, 2},    /* non-square everything   */
    {1, 4, 6, 17, 5, 3, 3, 2, 2, 1, 2, 1},
    {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1},     /* one pixel               */
    {1, 2, 2, 3, 3, 3, 1, 1, 2, 2, 1, 1},     /* padding wider than image */
    {2, 3, 15, 13, 5, 5, 2, 3, 2, 0, 1, 2},
    {1, 1, 7, 7, 3, 3, 3, 3, 0, 0, 2, 2},     /* stride 3, dilation 2    */
    {2, 3, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1},   /* the CNN's second conv   */
    {1, 2, 6, 21, 3, 2, 2, 1, 0, 1, 1, 1},    /* stride 2 down, 1 across */
};

static const struct geo pool_geos[] = {
    {2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 1, 1},     /* MaxPool2d(2)            */
    {1, 2, 7, 9, 3, 3, 2, 2, 1, 1, 1, 1},     /* (3, 2, 1), remainders   */
    {1, 1, 11, 10, 3, 2, 3, 1, 1, 0, 1, 1},
    {2, 2, 9, 9, 3, 3, 1, 1, 1, 1, 2, 2},     /* dilation 2              */
    {1, 1, 5, 5, 5, 5, 1, 1, 2, 2, 1, 1},
    {3, 1, 7, 5, 2, 3, 3, 2, 1, 1, 1, 1},
    {1, 1, 3, 5, 2, 2, 1, 1, 1, 0, 4, 1},     /* windows wholly in padding */
    {1, 3, 13, 1, 3, 1, 2, 1, 1, 0, 1, 1},    /* width 1                 */
    /* MaxPool2d(2) rows of 8-wide blocks (ow >= 8), 4-wide (4..7) and
     * scalar (< 4), the last block overlapping the one before, odd sizes
     * leaving a row and a column out */
    {1, 2, 28, 28, 2, 2, 2, 2, 0, 0, 1, 1},   /* ow 14                   */
    {2, 1, 5, 33, 2, 2, 2, 2, 0, 0, 1, 1},    /* ow 16                   */
    {1, 1, 4, 19, 2, 2, 2, 2, 0, 0, 1, 1},    /* ow 9                    */
    {2, 3, 14, 14, 2, 2, 2, 2, 0, 0, 1, 1},   /* ow 7                    */
    {1, 2, 7, 11, 2, 2, 2, 2, 0, 0, 1, 1},    /* ow 5                    */
    {1, 1, 6, 6, 2, 2, 2, 2, 0, 0, 1, 1},     /* ow 3                    */
};

/* A random geometry with at least one output pixel. */
static struct geo random_geo(struct env *e)
{
    for (;;) {
        struct geo g;
        g.n = 1 + (int64_t)(th_rand_u64(&e->rng) % 3);
        g.c = 1 + (int64_t)(th_rand_u64(&e->rng) % 4);
        g.h = 1 + (int64_t)(th_rand_u64(&e->rng) % 14);
        g.w = 1 + (int64_t)(th_rand_u64(&e->rng) % 14);
        g.kh = 1 + (int64_t)(th_rand_u64(&e->rng) % 5);
        g.kw = 1 + (int64_t)(th_rand_u64(&e->rng) % 5);
        g.sh = 1 + (int64_t)(th_rand_u64(&e->rng) % 3);
        g.sw = 1 + (int64_t)(th_rand_u64(&e->rng) % 3);
        g.ph = (int64_t)(th_rand_u64(&e->rng) % 3);
        g.pw = (int64_t)(th_rand_u64(&e->rng) % 3);
        g.dh = 1 + (int64_t)(th_rand_u64(&e->rng) % 2);
        g.dw = 1 + (int64_t)(th_rand_u64(&e->rng) % 2);
        struct cg_conv2d_desc d = desc_of(g);
        if (d.oh > 0 && d.ow > 0) return g;
    }
}

#define N_RANDOM 40

/* ---- float64 references (backend.h formulas, nothing shared) ---- */

/* The image pixel that tap (i, j) of output (y, x) reads, or -1 in the
 * padding: index within its (h, w) plane. */
static int64_t tap(const struct cg_conv2d_desc *d, int64_t y, int64_t x, int64_t i, int64_t j)
{
    int64_t iy = y * d->sh - d->ph + i * d->dh, ix = x * d->sw - d->pw + j * d->dw;
    if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) return -1;
    return iy * d->w + ix;
}

/* col (n, c*kh*kw, oh*ow) from img (n, c, h, w). */
static double *ref_im2col(const struct cg_conv2d_desc *d, const float *img)
{
    int64_t k = d->c * d->kh * d->kw, p = d->oh * d->ow;
    double *col = TALLOC(double, d->n * k * p);
    for (int64_t b = 0; b < d->n; b++)
        for (int64_t ci = 0; ci < d->c; ci++)
            for (int64_t i = 0; i < d->kh; i++)
                for (int64_t j = 0; j < d->kw; j++)
                    for (int64_t y = 0; y < d->oh; y++)
                        for (int64_t x = 0; x < d->ow; x++) {
                            int64_t row = (ci * d->kh + i) * d->kw + j, t = tap(d, y, x, i, j);
                            col[(b * k + row) * p + y * d->ow + x] =
                                t < 0 ? 0.0 : img[(b * d->c + ci) * d->h * d->w + t];
                        }
    return col;
}

/* img (n, c, h, w) = base + the adjoint of im2col applied to col. */
static double *ref_col2im(const struct cg_conv2d_desc *d, const float *base, const float *col)
{
    int64_t k = d->c * d->kh * d->kw, p = d->oh * d->ow, plane = d->h * d->w;
    double *img = TALLOC(double, d->n * d->c * plane);
    for (int64_t q = 0; q < d->n * d->c * plane; q++) img[q] = base[q];
    for (int64_t b = 0; b < d->n; b++)
        for (int64_t ci = 0; ci < d->c; ci++)
            for (int64_t i = 0; i < d->kh; i++)
                for (int64_t j = 0; j < d->kw; j++)
                    for (int64_t y = 0; y < d->oh; y++)
                        for (int64_t x = 0; x < d->ow; x++) {
                            int64_t row = (ci * d->kh + i) * d->kw + j, t = tap(d, y, x, i, j);
                            if (t >= 0)
                                img[(b * d->c + ci) * plane + t] +=
                                    col[(b * k + row) * p + y * d->ow + x];
                        }
    return img;
}

/* Direct convolution: out (n, co, oh, ow) of img (n, c, h, w) with
 * weights wt (co, c, kh, kw), zero padding (torch.nn.Conv2d, no bias). */
static double *ref_conv_direct(const struct cg_conv2d_desc *d, const float *img,
                               const float *wt, int64_t co)
{
    int64_t p = d->oh * d->ow, plane = d->h * d->w;
    double *out = TALLOC(double, d->n * co * p);
    for (int64_t b = 0; b < d->n; b++)
        for (int64_t o = 0; o < co; o++)
            for (int64_t y = 0; y < d->oh; y++)
                for (int64_t x = 0; x < d->ow; x++) {
                    double s = 0;
                    for (int64_t ci = 0; ci < d->c; ci++)
                        for (int64_t i = 0; i < d->kh; i++)
                            for (int64_t j = 0; j < d->kw; j++) {
                                int64_t iy = y * d->sh - d->ph + i * d->dh;
                                int64_t ix = x * d->sw - d->pw + j * d->dw;
                                if (iy < 0 || iy >= d->h || ix < 0 || ix >= d->w) continue;
                                s += (double)wt[((o * d->c + ci) * d->kh + i) * d->kw + j] *
                                     img[(b * d->c + ci) * plane + iy * d->w + ix];
                            }
                    out[(b * co + o) * p + y * d->ow + x] = s;
                }
    return out;
}

/* out[b] (co, P) = wt (co, K) * col[b] (K, P), in float64. */
static double *ref_gemm_conv(const struct cg_conv2d_desc *d, const float *col,
                             const float *wt, int64_t co)
{
    int64_t k = d->c * d->kh * d->kw, p = d->oh * d->ow;
    double *out = TALLOC(double, d->n * co * p);
    for (int64_t b = 0; b < d->n; b++)
        for (int64_t o = 0; o < co; o++)
            for (int64_t q = 0; q < p; q++) {
                double s = 0;
                for (int64_t r = 0; r < k; r++)
                    s += (double)wt[o * k + r] * col[(b * k + r) * p + q];
                out[(b * co + o) * p + q] = s;
            }
    return out;
}

/* Max pooling: value and first-maximum index per output (PyTorch order:
 * rows, then columns; NaN wins; an all-padding window gives -inf, -1). */
static void ref_pool_max(const struct cg_conv2d_desc *d, const float *in, double *out,
                         double *arg)
{
    int64_t p = d->oh * d->ow, plane = d->h * d->w;
    for (int64_t q = 0; q < d->n * d->c; q++)
        for (int64_t y = 0; y < d->oh; y++)
            for (int64_t x = 0; x < d->ow; x++) {
                double best = -INFINITY;
                int64_t at = -1;
                for (int64_t i = 0; i < d->kh; i++)
                    for (int64_t j = 0; j < d->kw; j++) {
                        int64_t t = tap(d, y, x, i, j);
                        if (t < 0) continue;
                        double v = in[q * plane + t];
                        if (isnan(best)) continue;
                        if (at < 0 || isnan(v) || v > best) {
                            best = v;
                            at = t;
                        }
                    }
                out[q * p + y * d->ow + x] = best;
                arg[q * p + y * d->ow + x] = (double)at;
            }
}

/* Average pooling, count_include_pad=True: window sum / (kh * kw). */
static void ref_pool_avg(const struct cg_conv2d_desc *d, const float *in, double *out)
{
    int64_t p = d->oh * d->ow, plane = d->h * d->w;
    for (int64_t q = 0; q < d->n * d->c; q++)
        for (int64_t y = 0; y < d->oh; y++)
            for (int64_t x = 0; x < d->ow; x++) {
                double s = 0;
                for (int64_t i = 0; i < d->kh; i++)
                    for (int64_t j = 0; j < d->kw; j++) {
                        int64_t t = tap(d, y, x, i, j);
                        if (t >= 0) s += in[q * plane + t];
                    }
                out[q * p + y * d->ow + x] = s / (double)(d->kh * d->kw);
            }
}

/* gin = base + the adjoint of pooling applied to gout (arg: max's argmax
 * from ref_pool_max, NULL for avg). */
static double *ref_pool_backward(const struct cg_conv2d_desc *d, const float *base,
                                 const float *gout, const double *arg)
{
    int64_t p = d->oh * d->ow, plane = d->h * d->w;
    double *gin = TALLOC(double, d->n * d->c * plane);
    for (int64_t q = 0; q < d->n * d->c * plane; q++) gin[q] = base[q];
    for (int64_t q = 0; q < d->n * d->c; q++)
        for (int64_t o = 0; o < p; o++) {
            double g = gout[q * p + o];
            if (arg) {
                if (arg[q * p + o] >= 0) gin[q * plane + (int64_t)arg[q * p + o]] += g;
                continue;
            }
            for (int64_t i = 0; i < d->kh; i++)
                for (int64_t j = 0; j < d->kw; j++) {
                    int64_t t = tap(d, o / d->ow, o % d->ow, i, j);
                    if (t >= 0) gin[q * plane + t] += g / (double)(d->kh * d->kw);
                }
        }
    return gin;
}

/* Exact comparison (NaN equals NaN, -inf equals -inf). */
static void assert_exact(const float *got, const double *want, int64_t n, const char *what)
{
    for (int64_t i = 0; i < n; i++) {
        bool same = (isnan(got[i]) && isnan(want[i])) || (double)got[i] == want[i];
        if (!same)
            fail_msg("%s: element %lld of %lld: got %.9g, want %.9g", what, (long long)i,
                     (long long)n, (double)got[i], want[i]);
    }
}

/* ---- im2col / col2im ---- */

static void check_im2col_case(struct env *e, struct geo g)
{
    struct cg_conv2d_desc d = desc_of(g);
    char name[256], what[320];
    geo_name(&d, name, sizeof name);
    int mark = th_arena_mark();
    cg_scope_begin(e->ctx);
    int64_t k = d.c * d.kh * d.kw, p = d.oh * d.ow, nimg = d.n * d.c * d.h * d.w;
    int64_t ncol = d.n * k * p, co = 3;

    /* im2col: exactly the reference, and GEMM over it == direct conv. */
    float *x = rand_floats(e, nimg);
    struct darr img = darr_new(e, x, nimg), col = darr_new(e, NULL, ncol);
    CHECK_OK(e, e->be->im2col(e->bctx, &d, col.at, img.at));
    snprintf(what, sizeof what, "im2col %s", name);
    float *got = darr_read(col, what);
    assert_exact(got, ref_im2col(&d, x), ncol, what);
    float *wt = rand_floats(e, co * k);
    snprintf(what, sizeof what, "conv via im2col %s", name);
    {
        double *via = ref_gemm_conv(&d, got, wt, co), *direct = ref_conv_direct(&d, x, wt, co);
        for (int64_t i = 0; i < d.n * co * p; i++)
            if (fabs(via[i] - direct[i]) > 1e-12 * (1 + fabs(direct[i])))
                fail_msg("%s: output %lld: GEMM over columns %.17g, direct %.17g", what,
                         (long long)i, via[i], direct[i]);
    }

    /* col2im: accumulates into img, equals the direct scatter. */
    float *y = rand_floats(e, ncol), *base = rand_floats(e, nimg);
    struct darr ycol = darr_new(e, y, ncol), acc = darr_new(e, base, nimg);
    CHECK_OK(e, e->be->col2im(e->bctx, &d, acc.at, ycol.at));
    snprintf(what, sizeof what, "col2im %s", name);
    th_assert_close(darr_read(acc, what), ref_col2im(&d, base, y), nimg, 1e-6,
                    1e-6 * (double)(d.kh * d.kw + 1), what);

    /* The adjoint identity, on the device's own results:
     * <im2col(x), y> == <x, col2im(y)> (col2im into zeros). */
    float *zeros = TALLOC(float, nimg);
    struct darr adj = darr_new(e, zeros, nimg);
    CHECK_OK(e, e->be->col2im(e->bctx, &d, adj.at, ycol.at));
    snprintf(what, sizeof what, "col2im adjoint %s", name);
    float *cy = darr_read(adj, what);
    double lhs = 0, rhs = 0, mag = 0;
    for (int64_t i = 0; i < ncol; i++) {
        lhs += (double)got[i] * y[i];
        mag += fabs((double)got[i] * y[i]);
    }
    for (int64_t i = 0; i < nimg; i++) rhs += (double)x[i] * cy[i];
    if (fabs(lhs - rhs) > 1e-5 * (mag + 1e-30))
        fail_msg("%s: <im2col(x), y> = %.12g but <x, col2im(y)> = %.12g", what, lhs, rhs);

    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_im2col_col2im_fixed(void **state)
{
    struct env e = env_of(state, 11);
    for (int i = 0; i < NELEMS(conv_geos); i++) check_im2col_case(&e, conv_geos[i]);
}

static void test_im2col_col2im_random(void **state)
{
    struct env e = env_of(state, 12);
    for (int i = 0; i < N_RANDOM; i++) check_im2col_case(&e, random_geo(&e));
}

/* ---- pooling ---- */

static void check_pool_case(struct env *e, struct geo g, enum cg_pool_kind kind)
{
    struct cg_conv2d_desc d = desc_of(g);
    char name[256], what[320];
    geo_name(&d, name, sizeof name);
    const char *kn = kind == CG_POOL_MAX ? "max" : "avg";
    int mark = th_arena_mark();
    cg_scope_begin(e->ctx);
    int64_t nin = d.n * d.c * d.h * d.w, nout = d.n * d.c * d.oh * d.ow;
    double area = (double)(d.kh * d.kw);

    /* Max sees ties everywhere and, in one element, a NaN. */
    float *x = kind == CG_POOL_MAX ? rand_halves(e, nin) : rand_floats(e, nin);
    if (kind == CG_POOL_MAX && nin > 4) x[nin / 3] = NAN;
    struct darr in = darr_new(e, x, nin), out = darr_new(e, NULL, nout);
    struct darr arg = darr_new(e, NULL, nout);
    CHECK_OK(e, e->be->pool2d(e->bctx, kind, &d, out.at,
                              kind == CG_POOL_MAX ? arg.at : (struct cg_ptr){NULL, 0}, in.at));
    double *want = TALLOC(double, nout), *want_arg = NULL;
    snprintf(what, sizeof what, "pool2d %s %s", kn, name);
    if (kind == CG_POOL_MAX) {
        want_arg = TALLOC(double, nout);
        ref_pool_max(&d, x, want, want_arg);
        assert_exact(darr_read(out, what), want, nout, what);
        snprintf(what, sizeof what, "pool2d max argmax %s", name);
        assert_exact(darr_read(arg, what), want_arg, nout, what);
    } else {
        ref_pool_avg(&d, x, want);
        th_assert_close(darr_read(out, what), want, nout, 1e-6, 1e-7 * (area + 1), what);
    }

    /* Backward accumulates into gin. */
    float *gout = rand_floats(e, nout), *base = rand_floats(e, nin);
    struct darr go = darr_new(e, gout, nout), gin = darr_new(e, base, nin);
    CHECK_OK(e, e->be->pool2d_backward(e->bctx, kind, &d, gin.at, go.at,
                                       kind == CG_POOL_MAX ? arg.at
                                                           : (struct cg_ptr){NULL, 0}));
    snprintf(what, sizeof what, "pool2d_backward %s %s", kn, name);
    th_assert_close(darr_read(gin, what), ref_pool_backward(&d, base, gout, want_arg), nin,
                    1e-6, 1e-6 * (area + 1), what);

    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_pool_max_fixed(void **state)
{
    struct env e = env_of(state, 21);
    for (int i = 0; i < NELEMS(pool_geos); i++) check_pool_case(&e, pool_geos[i], CG_POOL_MAX);
}

static void test_pool_avg_fixed(void **state)
{
    struct env e = env_of(state, 22);
    for (int i = 0; i < NELEMS(pool_geos); i++) check_pool_case(&e, pool_geos[i], CG_POOL_AVG);
}

static void test_pool_random(void **state)
{
    struct env e = env_of(state, 23);
    for (int i = 0; i < N_RANDOM; i++) {
        struct geo g = random_geo(&e);
        check_pool_case(&e, g, CG_POOL_MAX);
        check_pool_case(&e, g, CG_POOL_AVG);
    }
}

/* A window wholly in the padding: -inf and index -1, and backward skips it
 * (pool_geos[6] has such windows; this pins the values down). */
static void test_pool_max_empty_window(void **state)
{
    struct env e = env_of(state, 24);
    struct geo g = {1, 1, 3, 5, 2, 2, 1, 1, 1, 0, 4, 1};
    struct cg_conv2d_desc d = desc_of(g);
    assert_int_equal(d.oh, 1);   /* rows -1 and 3 of a 3-row image */
    int64_t nin = d.h * d.w, nout = d.oh * d.ow;
    float *x = rand_floats(&e, nin);
    struct darr in = darr_new(&e, x, nin), out = darr_new(&e, NULL, nout);
    struct darr arg = darr_new(&e, NULL, nout);
    CHECK_OK(&e, e.be->pool2d(e.bctx, CG_POOL_MAX, &d, out.at, arg.at, in.at));
    float *o = darr_read(out, "out"), *a = darr_read(arg, "argmax");
    for (int64_t i = 0; i < nout; i++) {
        assert_true(isinf(o[i]) && o[i] < 0);
        assert_true(a[i] == -1.0f);
    }
    float *base = rand_floats(&e, nin), *gout = rand_floats(&e, nout);
    struct darr gin = darr_new(&e, base, nin), go = darr_new(&e, gout, nout);
    CHECK_OK(&e, e.be->pool2d_backward(e.bctx, CG_POOL_MAX, &d, gin.at, go.at, arg.at));
    float *gi = darr_read(gin, "gin");
    for (int64_t i = 0; i < nin; i++) assert_true(gi[i] == base[i]);
}

/* ---- bad input and empty batches ---- */

static void test_conv_bad_input(void **state)
{
    struct env e = env_of(state, 31);
    struct geo g = {2, 3, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1};
    struct cg_conv2d_desc d = desc_of(g);
    int64_t nimg = d.n * d.c * d.h * d.w, ncol = nimg * 9;  /* oh, ow = h, w */
    struct darr img = darr_new(&e, rand_floats(&e, nimg), nimg);
    struct darr col = darr_new(&e, NULL, ncol);

    struct cg_conv2d_desc bad = d;
    bad.oh += 1;   /* inconsistent with the input */
    assert_int_equal(e.be->im2col(e.bctx, &bad, col.at, img.at), CG_STATUS_SHAPE_MISMATCH);
    assert_non_null(strstr(e.be->last_error(e.bctx), "im2col"));
    bad = d;
    bad.sh = 0;
    assert_int_equal(e.be->col2im(e.bctx, &bad, img.at, col.at), CG_STATUS_INVALID_ARGUMENT);
    bad = d;
    bad.dw = 0;
    assert_int_equal(e.be->pool2d(e.bctx, CG_POOL_AVG, &bad, col.at, col.at, img.at),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_int_equal(e.be->pool2d(e.bctx, (enum cg_pool_kind)7, &d, col.at, col.at, img.at),
                     CG_STATUS_INVALID_ARGUMENT);

    /* col one image too short: the range check refuses, nothing is written. */
    struct darr small = darr_new(&e, NULL, ncol / 2);
    struct cg_ptr past = {small.at.buf, small.at.off};
    assert_int_equal(e.be->im2col(e.bctx, &d, past, img.at), CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "col"));
    /* max pooling needs its argmax buffer. */
    assert_int_equal(e.be->pool2d(e.bctx, CG_POOL_MAX, &d, col.at, (struct cg_ptr){NULL, 0},
                                  img.at),
                     CG_STATUS_INVALID_ARGUMENT);
    float *c = darr_read(col, "col after refused calls");
    for (int64_t i = 0; i < ncol; i++) assert_true(c[i] == GARBAGE);

    /* An empty batch touches nothing and succeeds. */
    struct cg_conv2d_desc empty = d;
    empty.n = 0;
    CHECK_OK(&e, e.be->im2col(e.bctx, &empty, col.at, img.at));
    CHECK_OK(&e, e.be->col2im(e.bctx, &empty, img.at, col.at));
    CHECK_OK(&e, e.be->pool2d(e.bctx, CG_POOL_MAX, &empty, col.at, col.at, img.at));
    CHECK_OK(&e, e.be->pool2d_backward(e.bctx, CG_POOL_AVG, &empty, img.at, col.at,
                                       (struct cg_ptr){NULL, 0}));
    c = darr_read(col, "col after empty calls");
    for (int64_t i = 0; i < ncol; i++) assert_true(c[i] == GARBAGE);
}

/* ---- timing: conv forward as im2col + batched GEMM ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_conv_forward_timing(void **state)
{
    struct env e = env_of(state, 41);
    /* (64, 32, 14, 14) * 64 filters 3x3, padding 1 (Fashion-MNIST's second
     * conv layer); a smaller batch under valgrind. */
    int64_t n = RUNNING_ON_VALGRIND ? 2 : 64, co = 64;
    struct geo g = {n, 32, 14, 14, 3, 3, 1, 1, 1, 1, 1, 1};
    struct cg_conv2d_desc d = desc_of(g);
    int64_t k = d.c * d.kh * d.kw, p = d.oh * d.ow, nimg = d.n * d.c * d.h * d.w;
    float *x = rand_floats(&e, nimg), *wt = rand_floats(&e, co * k);
    struct darr img = darr_new(&e, x, nimg), w = darr_new(&e, wt, co * k);
    struct darr col = darr_new(&e, NULL, d.n * k * p), out = darr_new(&e, NULL, d.n * co * p);
    /* out[b] (co, P) = W (co, K) * col[b] (K, P): W shared (stride 0). */
    struct cg_gemm_desc gd = {.m = co, .n = p, .k = k, .alpha = 1, .beta = 0, .lda = k,
                              .ldb = p, .ldc = p, .stride_a = 0, .stride_b = k * p,
                              .stride_c = co * p, .batch = d.n};

    int reps = RUNNING_ON_VALGRIND ? 1 : 10;
    double t_im2col = 0, t_total = 0;
    for (int r = -1; r < reps; r++) {   /* r == -1 warms up (program builds) */
        CHECK_OK(&e, e.be->finish(e.bctx));
        double t0 = now_s();
        CHECK_OK(&e, e.be->im2col(e.bctx, &d, col.at, img.at));
        CHECK_OK(&e, e.be->finish(e.bctx));
        double t1 = now_s();
        CHECK_OK(&e, e.be->gemm(e.bctx, &gd, w.at, col.at, out.at));
        CHECK_OK(&e, e.be->finish(e.bctx));
        double t2 = now_s();
        if (r >= 0) {
            t_im2col += t1 - t0;
            t_total += t2 - t0;
        }
    }
    double flops = 2.0 * (double)(d.n * co * p * k);
    printf("conv forward (%lld,32,14,14) x 64 3x3 pad 1 on %s: im2col %.3f ms, "
           "im2col + GEMM %.3f ms (%.1f GFLOP/s), mean of %d\n",
           (long long)d.n, th_backend(), 1e3 * t_im2col / reps, 1e3 * t_total / reps,
           flops / (t_total / reps) * 1e-9, reps);

    double *want = ref_conv_direct(&d, x, wt, co);
    th_assert_close(darr_read(out, "conv out"), want, d.n * co * p, 1e-5, 1e-5 * (double)k,
                    "conv forward via im2col + GEMM");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_im2col_col2im_fixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_im2col_col2im_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_max_fixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_avg_fixed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_max_empty_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conv_forward_timing, setup, teardown),
    };
    return TH_RUN(tests);
}
