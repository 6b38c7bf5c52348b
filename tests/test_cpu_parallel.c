/*
 * tests/test_cpu_parallel.c — the cpu backend's thread pool on GEMM and the
 * convolution primitives (backends/cpu/cpu_gemm.c, cpu_conv.c,
 * cpu_threads.c), called through the backend vtable on problems large
 * enough to be split, with CLGRAD_CPU_THREADS = 1, 2 and 3, with the
 * workers' spin off (CLGRAD_CPU_SPIN_US=0: every hand-over through the
 * condition variable), and with no hand-over at all (CLGRAD_CPU_HANDOFF=
 * never: the caller runs every part itself, as the late-worker guard does
 * on a busy machine; its results must be those of the handed-over parts):
 *
 *   gemm     single products cut into row tiles (C taller than wide) and
 *            column tiles, all four transposes, pitches wider than rows,
 *            beta 0 over NaN; batches split over threads; a batch smaller
 *            than the thread count (tiles of several products); thin
 *            products (k, n or m == 1), tightly packed and padded. Each against
 *            a float64 reference (rtol 1e-5, atol 1e-6 (k + 1)); batch
 *            splits bit-identical for every thread count (each product is
 *            one call either way); every result identical when run again
 *            with the same thread count.
 *   conv     im2col, col2im, max pooling (2x2 stride 2, and 3x3 stride 2
 *            padded), average pooling, and both backward paths (disjoint
 *            windows, overlapping windows): against float64 references and
 *            bit-identical for every thread count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define NCASES 128

/* One set of results: for each case, its floats. */
struct results {
    float *v[NCASES];
    int64_t n[NCASES];
    int count;
};

struct run {
    cg_ctx *ctx;
    const struct cg_backend_i *be;
    void *bctx;
    struct results *out;
};

/* Uploads host floats into a fresh 1-d tensor. */
static cg_tensor *upload(struct run *r, const float *h, int64_t n)
{
    cg_tensor *t = cg_tensor_from_host(r->ctx, CG_SHAPE(n), h);
    if (!t) fail_msg("cg_tensor_from_host(%lld): %s", (long long)n, cg_last_error(r->ctx));
    return t;
}

static struct cg_ptr ptr_of(cg_tensor *t)
{
    struct cg_view v = cg_tensor_view(t);
    return (struct cg_ptr){v.buf, v.off};
}

/* Keeps a copy of t's n floats as the next result. */
static float *keep(struct run *r, cg_tensor *t, int64_t n)
{
    assert_true(r->out->count < NCASES);
    float *h = malloc(sizeof(float) * (size_t)n);
    assert_non_null(h);
    assert_int_equal(cg_tensor_to_host(t, h, n), CG_OK);
    r->out->v[r->out->count] = h;
    r->out->n[r->out->count++] = n;
    return h;
}

static void check_ok(struct run *r, cg_status s, const char *what)
{
    if (s != CG_OK) fail_msg("%s: %s", what, cg_last_error(r->ctx));
}

/* ---- gemm ---- */

static double mat_at(const float *x, int trans, int64_t ld, int64_t i, int64_t j)
{
    return trans ? x[j * ld + i] : x[i * ld + j];
}

/* pad: extra elements in each row pitch and between batch entries (0:
 * tightly packed, the layout the thin kernels' contiguous paths need). */
static void gemm_case(struct run *r, uint64_t seed, int ta, int tb, int64_t m, int64_t n,
                      int64_t k, int64_t batch, float alpha, float beta, int64_t pad)
{
    struct cg_gemm_desc d = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                             .alpha = alpha, .beta = beta, .batch = batch};
    int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    d.lda = a_cols + 3 * pad;
    d.ldb = b_cols + pad;
    d.ldc = n + 2 * pad;
    d.stride_a = a_rows * d.lda + 5 * pad;
    d.stride_b = b_rows * d.ldb + 2 * pad;
    d.stride_c = m * d.ldc + 3 * pad;
    int64_t na = batch * d.stride_a, nb = batch * d.stride_b, nc = batch * d.stride_c;
    float *ha = malloc(sizeof(float) * na), *hb = malloc(sizeof(float) * nb);
    float *hc = malloc(sizeof(float) * nc);
    double *want = malloc(sizeof(double) * nc);
    uint64_t rng = seed;
    th_fill_uniform(&rng, ha, na, -1.0f, 1.0f);
    th_fill_uniform(&rng, hb, nb, -1.0f, 1.0f);
    th_fill_uniform(&rng, hc, nc, -1.0f, 1.0f);
    /* beta == 0 overwrites C, NaN included; C's gaps stay as they were */
    for (int64_t i = 0; i < nc; i++) {
        if (beta == 0.0f) hc[i] = NAN;
        want[i] = hc[i];
    }
    for (int64_t bi = 0; bi < batch; bi++) {
        const float *A = ha + bi * d.stride_a, *B = hb + bi * d.stride_b;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t p = 0; p < k; p++)
                    acc += mat_at(A, ta, d.lda, i, p) * mat_at(B, tb, d.ldb, p, j);
                int64_t ci = bi * d.stride_c + i * d.ldc + j;
                want[ci] = alpha * acc + (beta == 0.0f ? 0.0 : beta * (double)hc[ci]);
            }
    }
    cg_scope_begin(r->ctx);
    cg_tensor *ta_ = upload(r, ha, na), *tb_ = upload(r, hb, nb), *tc = upload(r, hc, nc);
    check_ok(r, r->be->gemm(r->bctx, &d, ptr_of(ta_), ptr_of(tb_), ptr_of(tc)), "gemm");
    float *got = keep(r, tc, nc);
    char what[160];
    snprintf(what, sizeof what, "gemm ta %d tb %d m %lld n %lld k %lld batch %lld", ta, tb,
             (long long)m, (long long)n, (long long)k, (long long)batch);
    th_assert_close(got, want, nc, 1e-5, 1e-6 * (double)(k + 1), what);
    cg_scope_end(r->ctx);
    free(ha);
    free(hb);
    free(hc);
    free(want);
}

/* Cases whose results may depend on the thread count (OpenBLAS tiles),
 * then those that may not; returns the index of the first of the latter. */
static int run_gemms(struct run *r)
{
    uint64_t seed = 500;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            gemm_case(r, seed++, ta, tb, 301, 67, 129, 1, 1.0f, 0.0f, 1);   /* row tiles    */
            gemm_case(r, seed++, ta, tb, 37, 517, 71, 1, -0.5f, 0.75f, 1);  /* column tiles */
        }
    gemm_case(r, seed++, 0, 1, 70, 90, 50, 2, 1.0f, 1.0f, 1);  /* 2 products, 3 threads */
    int first_fixed = r->out->count;
    gemm_case(r, seed++, 0, 0, 45, 39, 170, 7, 1.0f, 0.0f, 1);  /* batch split */
    gemm_case(r, seed++, 1, 1, 45, 39, 170, 7, 0.5f, 2.0f, 1);
    gemm_case(r, seed++, 1, 0, 11, 13, 9, 3, 1.0f, 0.0f, 1);    /* small: serial */
    /* small A B^T, B transposed into scratch first: the attention's scores
     * (batched 64x64x16), packed and padded, beta 0 and not; and one small
     * enough for OpenBLAS's own small kernel (C of 437 elements, k 45) */
    gemm_case(r, seed++, 0, 1, 64, 64, 16, 5, 1.0f, 0.0f, 0);
    gemm_case(r, seed++, 0, 1, 64, 64, 16, 5, -0.5f, 0.5f, 1);
    gemm_case(r, seed++, 0, 1, 19, 23, 45, 3, 1.0f, 0.0f, 1);
    /* thin products (k, n or m == 1: cpu_gemm.c's own loops), packed and
     * padded, large enough to be split into tiles and small */
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int64_t pad = 0; pad < 2; pad++) {
                gemm_case(r, seed++, ta, tb, 1031, 1, 301, 1, 1.0f, 0.0f, pad);
                gemm_case(r, seed++, ta, tb, 1, 1031, 301, 1, -1.5f, 0.5f, pad);
                gemm_case(r, seed++, ta, tb, 301, 517, 1, 1, 0.75f, 0.0f, pad);
                gemm_case(r, seed++, ta, tb, 33, 77, 1, 5, 1.0f, 1.0f, pad);
                gemm_case(r, seed++, ta, tb, 33, 1, 7, 3, 1.0f, 0.25f, pad);
            }
    return first_fixed;
}

/* ---- convolution and pooling ---- */

static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p)
{
    return (in + 2 * p - k) / s + 1;
}

static struct cg_conv2d_desc conv_desc(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k,
                                       int64_t s, int64_t p)
{
    return (struct cg_conv2d_desc){.n = n, .c = c, .h = h, .w = w, .kh = k, .kw = k, .sh = s,
                                   .sw = s, .ph = p, .pw = p, .dh = 1, .dw = 1,
                                   .oh = out_size(h, k, s, p), .ow = out_size(w, k, s, p)};
}

/* The input pixel of tap (i, j) for output (y, x), or -1 in the padding. */
static int64_t tap(const struct cg_conv2d_desc *d, int64_t y, int64_t x, int64_t i, int64_t j)
{
    int64_t iy = y * d->sh - d->ph + i * d->dh, ix = x * d->sw - d->pw + j * d->dw;
    return iy < 0 || iy >= d->h || ix < 0 || ix >= d->w ? -1 : iy * d->w + ix;
}

static void im2col_cases(struct run *r)
{
    struct cg_conv2d_desc d = conv_desc(4, 5, 37, 37, 3, 1, 1);
    int64_t plane = d.h * d.w, p = d.oh * d.ow, k = d.c * 9;
    int64_t nimg = d.n * d.c * plane, ncol = d.n * k * p;
    float *img = malloc(sizeof(float) * nimg), *col = malloc(sizeof(float) * ncol);
    double *want_col = malloc(sizeof(double) * ncol), *want_img = malloc(sizeof(double) * nimg);
    uint64_t rng = 41;
    th_fill_uniform(&rng, img, nimg, -1.0f, 1.0f);
    th_fill_uniform(&rng, col, ncol, -1.0f, 1.0f);
    for (int64_t t = 0; t < nimg; t++) want_img[t] = img[t];
    for (int64_t b = 0; b < d.n; b++)
        for (int64_t ci = 0; ci < d.c; ci++)
            for (int64_t i = 0; i < 3; i++)
                for (int64_t j = 0; j < 3; j++)
                    for (int64_t y = 0; y < d.oh; y++)
                        for (int64_t x = 0; x < d.ow; x++) {
                            int64_t row = (ci * 3 + i) * 3 + j, at = tap(&d, y, x, i, j);
                            int64_t ct = (b * k + row) * p + y * d.ow + x;
                            int64_t base = (b * d.c + ci) * plane;
                            want_col[ct] = at < 0 ? 0.0 : img[base + at];
                            if (at >= 0) want_img[base + at] += col[ct];
                        }
    cg_scope_begin(r->ctx);
    cg_tensor *ti = upload(r, img, nimg), *tc = upload(r, col, ncol);
    cg_tensor *tcol = upload(r, col, ncol);
    check_ok(r, r->be->im2col(r->bctx, &d, ptr_of(tcol), ptr_of(ti)), "im2col");
    th_assert_close(keep(r, tcol, ncol), want_col, ncol, 0, 1e-30, "im2col");
    check_ok(r, r->be->col2im(r->bctx, &d, ptr_of(ti), ptr_of(tc)), "col2im");
    th_assert_close(keep(r, ti, nimg), want_img, nimg, 1e-6, 1e-6, "col2im");
    cg_scope_end(r->ctx);
    free(img);
    free(col);
    free(want_col);
    free(want_img);
}

static void pool_case(struct run *r, enum cg_pool_kind kind, struct cg_conv2d_desc d)
{
    int64_t plane = d.h * d.w, p = d.oh * d.ow, planes = d.n * d.c;
    float *in = malloc(sizeof(float) * planes * plane), *g = malloc(sizeof(float) * planes * p);
    double *want = malloc(sizeof(double) * planes * p);
    double *want_am = malloc(sizeof(double) * planes * p);
    double *want_gin = malloc(sizeof(double) * planes * plane);
    uint64_t rng = 43 + (uint64_t)kind + (uint64_t)d.kh;
    th_fill_uniform(&rng, in, planes * plane, -1.0f, 1.0f);
    th_fill_uniform(&rng, g, planes * p, -1.0f, 1.0f);
    for (int64_t t = 0; t < planes * plane; t++) want_gin[t] = in[t];
    for (int64_t q = 0; q < planes; q++)
        for (int64_t y = 0; y < d.oh; y++)
            for (int64_t x = 0; x < d.ow; x++) {
                double best = -INFINITY, sum = 0;
                int64_t arg = -1, o = q * p + y * d.ow + x;
                for (int64_t i = 0; i < d.kh; i++)
                    for (int64_t j = 0; j < d.kw; j++) {
                        int64_t at = tap(&d, y, x, i, j);
                        if (at < 0) continue;
                        double v = in[q * plane + at];
                        sum += v;
                        if (arg < 0 || v > best) best = v, arg = at;
                    }
                if (kind == CG_POOL_MAX) {
                    want[o] = best;
                    want_am[o] = (double)arg;
                    if (arg >= 0) want_gin[q * plane + arg] += g[o];
                } else {
                    double area = (double)(d.kh * d.kw);
                    want[o] = sum / area;
                    for (int64_t i = 0; i < d.kh; i++)
                        for (int64_t j = 0; j < d.kw; j++) {
                            int64_t at = tap(&d, y, x, i, j);
                            if (at >= 0) want_gin[q * plane + at] += g[o] / area;
                        }
                }
            }
    cg_scope_begin(r->ctx);
    cg_tensor *ti = upload(r, in, planes * plane), *tg = upload(r, g, planes * p);
    cg_tensor *to = upload(r, g, planes * p), *tam = upload(r, g, planes * p);
    check_ok(r, r->be->pool2d(r->bctx, kind, &d, ptr_of(to), ptr_of(tam), ptr_of(ti)),
             "pool2d");
    th_assert_close(keep(r, to, planes * p), want, planes * p, 1e-6, 1e-7, "pool2d");
    if (kind == CG_POOL_MAX)
        th_assert_close(keep(r, tam, planes * p), want_am, planes * p, 0, 1e-30,
                        "pool2d argmax");
    check_ok(r, r->be->pool2d_backward(r->bctx, kind, &d, ptr_of(ti), ptr_of(tg), ptr_of(tam)),
             "pool2d_backward");
    th_assert_close(keep(r, ti, planes * plane), want_gin, planes * plane, 1e-6, 1e-6,
                    "pool2d_backward");
    cg_scope_end(r->ctx);
    free(in);
    free(g);
    free(want);
    free(want_am);
    free(want_gin);
}

/* Every case on a fresh context with `threads` threads, the given spin
 * ("" = the default) and hand-over ("" = the default). */
static void run_all(int threads, const char *spin, const char *handoff, struct results *out,
                    int *first_fixed)
{
    char v[16];
    snprintf(v, sizeof v, "%d", threads);
    setenv("CLGRAD_CPU_THREADS", v, 1);
    if (*spin) setenv("CLGRAD_CPU_SPIN_US", spin, 1);
    if (*handoff) setenv("CLGRAD_CPU_HANDOFF", handoff, 1);
    struct run r = {.out = out};
    struct cg_ctx_options o = {.backend = "cpu", .seed = 1};
    assert_int_equal(cg_ctx_create(&r.ctx, &o), CG_OK);
    r.be = cg_ctx_backend(r.ctx, &r.bctx);
    assert_non_null(r.be);
    *first_fixed = run_gemms(&r);
    im2col_cases(&r);
    pool_case(&r, CG_POOL_MAX, conv_desc(8, 10, 64, 64, 2, 2, 0));   /* disjoint windows */
    pool_case(&r, CG_POOL_MAX, conv_desc(8, 10, 63, 63, 3, 2, 1));   /* overlapping      */
    pool_case(&r, CG_POOL_AVG, conv_desc(8, 10, 63, 63, 3, 2, 1));
    cg_ctx_free(r.ctx);
    unsetenv("CLGRAD_CPU_THREADS");
    unsetenv("CLGRAD_CPU_SPIN_US");
    unsetenv("CLGRAD_CPU_HANDOFF");
}

static void free_results(struct results *r)
{
    for (int i = 0; i < r->count; i++) free(r->v[i]);
}

static void assert_same(const struct results *a, const struct results *b, int from, int to,
                        const char *what)
{
    assert_int_equal(a->count, b->count);
    for (int i = from; i < to; i++) {
        assert_int_equal(a->n[i], b->n[i]);
        if (memcmp(a->v[i], b->v[i], sizeof(float) * (size_t)a->n[i]) != 0)
            fail_msg("result %d differs: %s", i, what);
    }
}

static void test_parallel_gemm_conv(void **state)
{
    (void)state;
    static struct results one, runs[3][3];
    int first_fixed = 0;
    run_all(1, "", "", &one, &first_fixed);
    for (int t = 1; t <= 3; t++) {
        run_all(t, "", "always", &runs[t - 1][0], &first_fixed);
        run_all(t, "0", "", &runs[t - 1][1], &first_fixed);
        run_all(t, "", "never", &runs[t - 1][2], &first_fixed);
    }
    char what[96];
    for (int t = 1; t <= 3; t++) {
        /* the same thread count, spin or none, handed over or not:
         * identical, every case */
        snprintf(what, sizeof what, "%d threads, run again (spin off)", t);
        assert_same(&runs[t - 1][0], &runs[t - 1][1], 0, runs[t - 1][0].count, what);
        snprintf(what, sizeof what, "%d threads, every part on the caller", t);
        assert_same(&runs[t - 1][0], &runs[t - 1][2], 0, runs[t - 1][0].count, what);
        /* batch splits and the conv primitives: as on one thread */
        snprintf(what, sizeof what, "%d threads against 1", t);
        assert_same(&one, &runs[t - 1][0], first_fixed, one.count, what);
    }
    assert_same(&one, &runs[0][0], 0, one.count, "1 thread, run again");
    free_results(&one);
    for (int t = 0; t < 3; t++)
        for (int k = 0; k < 3; k++) free_results(&runs[t][k]);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_gemm_conv),
    };
    return TH_RUN(tests);
}
