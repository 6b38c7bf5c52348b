/*
 * tests/test_conv.c — the CNN layers (src/nn/conv.c, pool.c, norm.c,
 * dropout.c) and their model-spec grammar, on the backend under test.
 *
 * Values and gradients are compared with independent float64 direct-loop
 * references written here (no im2col, no GEMM): a convolution is the sum
 *     y[n, o, oy, ox] = b[o] + sum_{ci, i, j} x[n, g Cg + ci, oy sh - ph + i dh,
 *                                               ox sw - pw + j dw] w[o, ci, i, j]
 * with g = o / Og (torch.nn.Conv2d docs), and its gradients are that sum's
 * adjoint, accumulated loop by loop. Tolerances: float32 sums of at most a
 * few hundred products of O(1) values, rtol 1e-4, atol 1e-4. Gradients are
 * also checked by central differences (tests/gradcheck.h).
 *
 * Whole-convolution members (backend.h conv2d*, the cpu backend's oneDNN
 * path): the same references on shapes each of its paths takes (16+ input
 * channels for the data gradient, strides, padding, dilation, odd sizes,
 * batch 1, batches split unevenly over 1 to 3 threads), the same results
 * as the composed im2col + GEMM path (a vtable copy with the members NULL,
 * rtol 1e-4, atol 1e-4), and a fused forward whose backward members
 * decline (col recomputed for the weight gradient).
 */
#include <math.h>
#include <string.h>

#include "core/internal.h"
#include "gradcheck.h"
#include "harness.h"

/* ---- helpers ---------------------------------------------------------------- */

static float *fetch_new(const cg_tensor *t)
{
    assert_non_null(t);
    int64_t n = cg_tensor_numel(t);
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(cg_tensor_to_host(t, h, n), CG_OK);
    return h;
}

static double *to_double_new(const float *x, int64_t n)
{
    double *d = calloc((size_t)(n > 0 ? n : 1), sizeof *d);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

static float *rand_new(uint64_t *rng, int64_t n, float lo, float hi)
{
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    assert_non_null(h);
    th_fill_uniform(rng, h, n, lo, hi);
    return h;
}

static void assert_shape(const cg_tensor *t, int nd, const int64_t *shape)
{
    assert_non_null(t);
    assert_int_equal(cg_tensor_ndim(t), nd);
    for (int i = 0; i < nd; i++) assert_int_equal(cg_tensor_dim(t, i), shape[i]);
}

/* PyTorch's output size (torch.nn.Conv2d / MaxPool2d docs, "Shape"). */
static int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d)
{
    return (in + 2 * p - d * (k - 1) - 1) / s + 1;
}

/* ---- convolution ------------------------------------------------------------ */

struct conv_cfg {
    int64_t n, c, h, w, o, kh, kw, sh, sw, ph, pw, dh, dw, groups;
    bool bias;
};

static void cfg_name(const struct conv_cfg *c, char *buf, size_t len)
{
    snprintf(buf, len,
             "conv x(%lld,%lld,%lld,%lld) o%lld k(%lld,%lld) s(%lld,%lld) p(%lld,%lld) "
             "d(%lld,%lld) g%lld%s", (long long)c->n, (long long)c->c, (long long)c->h,
             (long long)c->w, (long long)c->o, (long long)c->kh, (long long)c->kw,
             (long long)c->sh, (long long)c->sw, (long long)c->ph, (long long)c->pw,
             (long long)c->dh, (long long)c->dw, (long long)c->groups, c->bias ? " bias" : "");
}

static int64_t cfg_oh(const struct conv_cfg *c) { return out_size(c->h, c->kh, c->sh, c->ph, c->dh); }
static int64_t cfg_ow(const struct conv_cfg *c) { return out_size(c->w, c->kw, c->sw, c->pw, c->dw); }

/* The direct-loop reference: forward y, and (gy given) the adjoint into
 * gx, gw, gb (zeroed here). */
static void ref_conv(const struct conv_cfg *c, const double *x, const double *w, const double *b,
                     double *y, const double *gy, double *gx, double *gw, double *gb)
{
    int64_t oh = cfg_oh(c), ow = cfg_ow(c), cg = c->c / c->groups, og = c->o / c->groups;
    if (gy) {
        memset(gx, 0, sizeof(double) * (size_t)(c->n * c->c * c->h * c->w));
        memset(gw, 0, sizeof(double) * (size_t)(c->o * cg * c->kh * c->kw));
        memset(gb, 0, sizeof(double) * (size_t)c->o);
    }
    for (int64_t n = 0; n < c->n; n++)
        for (int64_t o = 0; o < c->o; o++)
            for (int64_t oy = 0; oy < oh; oy++)
                for (int64_t ox = 0; ox < ow; ox++) {
                    int64_t yi = ((n * c->o + o) * oh + oy) * ow + ox;
                    double s = b ? b[o] : 0.0, g = gy ? gy[yi] : 0.0;
                    if (gy && b) gb[o] += g;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t i = 0; i < c->kh; i++)
                            for (int64_t j = 0; j < c->kw; j++) {
                                int64_t iy = oy * c->sh - c->ph + i * c->dh;
                                int64_t ix = ox * c->sw - c->pw + j * c->dw;
                                if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
                                int64_t xi = ((n * c->c + (o / og) * cg + ci) * c->h + iy) * c->w + ix;
                                int64_t wi = ((o * cg + ci) * c->kh + i) * c->kw + j;
                                s += x[xi] * w[wi];
                                if (gy) {
                                    gx[xi] += g * w[wi];
                                    gw[wi] += g * x[xi];
                                }
                            }
                    if (y) y[yi] = s;
                }
}

/* Runs one configuration on the device (forward, then backward of
 * L = sum(gy * y)) and compares everything with ref_conv. */
static void check_conv_cfg(cg_ctx *ctx, const struct conv_cfg *c, uint64_t *rng)
{
    char name[256];
    cfg_name(c, name, sizeof name);
    int64_t oh = cfg_oh(c), ow = cfg_ow(c), cg = c->c / c->groups;
    int64_t nx = c->n * c->c * c->h * c->w, nw = c->o * cg * c->kh * c->kw;
    int64_t ny = c->n * c->o * oh * ow;
    float *hx = rand_new(rng, nx, -1, 1), *hw = rand_new(rng, nw, -1, 1);
    float *hb = rand_new(rng, c->o, -1, 1), *hg = rand_new(rng, ny, -1, 1);

    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(c->n, c->c, c->h, c->w), hx);
    cg_tensor *w = cg_tensor_from_host(ctx, CG_SHAPE(c->o, cg, c->kh, c->kw), hw);
    cg_tensor *b = c->bias ? cg_tensor_from_host(ctx, CG_SHAPE(c->o), hb) : NULL;
    assert_int_equal(cg_tensor_set_requires_grad(x, true), CG_OK);
    assert_int_equal(cg_tensor_set_requires_grad(w, true), CG_OK);
    if (b) assert_int_equal(cg_tensor_set_requires_grad(b, true), CG_OK);
    struct cg_conv2d_opts o = {.stride = {c->sh, c->sw}, .padding = {c->ph, c->pw},
                               .dilation = {c->dh, c->dw}, .groups = c->groups};
    cg_tensor *y = cg_conv2d_ex(x, w, b, &o);
    if (!y) fail_msg("%s: %s", name, cg_last_error(ctx));
    assert_shape(y, 4, (int64_t[]){c->n, c->o, oh, ow});
    cg_tensor *gy = cg_tensor_from_host(ctx, CG_SHAPE(c->n, c->o, oh, ow), hg);
    assert_int_equal(cg_backward_with(y, gy), CG_OK);

    double *dx = to_double_new(hx, nx), *dw = to_double_new(hw, nw);
    double *db = to_double_new(hb, c->o), *dg = to_double_new(hg, ny);
    double *ry = calloc((size_t)ny, sizeof *ry), *rgx = calloc((size_t)nx, sizeof *rgx);
    double *rgw = calloc((size_t)nw, sizeof *rgw), *rgb = calloc((size_t)c->o, sizeof *rgb);
    assert_true(ry && rgx && rgw && rgb);
    ref_conv(c, dx, dw, c->bias ? db : NULL, ry, dg, rgx, rgw, rgb);

    char what[320];
    float *got = fetch_new(y);
    snprintf(what, sizeof what, "%s: y", name);
    th_assert_close(got, ry, ny, 1e-4, 1e-4, what);
    free(got);
    got = fetch_new(cg_tensor_grad(x));
    snprintf(what, sizeof what, "%s: dx", name);
    th_assert_close(got, rgx, nx, 1e-4, 1e-4, what);
    free(got);
    got = fetch_new(cg_tensor_grad(w));
    snprintf(what, sizeof what, "%s: dw", name);
    th_assert_close(got, rgw, nw, 1e-4, 1e-4, what);
    free(got);
    if (b) {
        got = fetch_new(cg_tensor_grad(b));
        snprintf(what, sizeof what, "%s: db", name);
        th_assert_close(got, rgb, c->o, 1e-4, 1e-4, what);
        free(got);
    }
    cg_scope_end(ctx);
    free(hx), free(hw), free(hb), free(hg);
    free(dx), free(dw), free(db), free(dg), free(ry), free(rgx), free(rgw), free(rgb);
}

static const struct conv_cfg fixed_cfgs[] = {
    /* n  c  h  w   o kh kw sh sw ph pw dh dw  g  bias */
    {2, 3, 7, 6, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1, true},     /* plain              */
    {2, 3, 8, 9, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},     /* "same" padding     */
    {3, 2, 9, 7, 3, 3, 2, 2, 3, 1, 0, 1, 1, 1, true},     /* strides, rect k    */
    {2, 2, 9, 10, 3, 3, 3, 1, 2, 2, 1, 2, 3, 1, false},   /* dilation, no bias  */
    {2, 4, 6, 5, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2, true},     /* groups 2           */
    {1, 6, 5, 5, 6, 3, 3, 2, 2, 1, 1, 1, 1, 6, true},     /* depthwise, batch 1 */
    {1, 1, 1, 1, 2, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},     /* 1x1 image          */
    {2, 5, 4, 3, 7, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},     /* 1x1 kernel: no im2col */
    {2, 4, 5, 7, 4, 1, 1, 2, 1, 0, 0, 1, 1, 2, false},    /* 1x1 strided, groups  */
    {1, 3, 3, 3, 2, 5, 5, 1, 1, 2, 2, 1, 1, 1, true},     /* kernel > image, padded */
    {2, 1, 28, 28, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},   /* the MNIST first layer */
};

static void test_conv_reference(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 101;
    for (size_t i = 0; i < sizeof fixed_cfgs / sizeof fixed_cfgs[0]; i++)
        check_conv_cfg(ctx, &fixed_cfgs[i], &rng);
}

/* A random valid configuration (odd sizes included). */
static struct conv_cfg random_cfg(uint64_t *rng, int64_t max_hw)
{
    struct conv_cfg c;
    int64_t r[16];
    for (int i = 0; i < 16; i++) r[i] = (int64_t)(th_rand_u64(rng) % 1000);
    c.groups = 1 + r[0] % 3;
    c.c = c.groups * (1 + r[1] % 3);
    c.o = c.groups * (1 + r[2] % 3);
    c.n = 1 + r[3] % 3;
    c.kh = 1 + r[4] % 3;
    c.kw = 1 + r[5] % 4;
    c.sh = 1 + r[6] % 3;
    c.sw = 1 + r[7] % 2;
    c.dh = 1 + r[8] % 2;
    c.dw = 1 + r[9] % 3;
    c.ph = r[10] % 3;
    c.pw = r[11] % 2;
    c.bias = r[12] % 2;
    /* Large enough for at least one output pixel. */
    int64_t min_h = c.dh * (c.kh - 1) + 1 - 2 * c.ph, min_w = c.dw * (c.kw - 1) + 1 - 2 * c.pw;
    c.h = (min_h > 1 ? min_h : 1) + r[13] % max_hw;
    c.w = (min_w > 1 ? min_w : 1) + r[14] % max_hw;
    return c;
}

static void test_conv_reference_random(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 777;
    for (int i = 0; i < 25; i++) {
        struct conv_cfg c = random_cfg(&rng, 8);
        check_conv_cfg(ctx, &c, &rng);
    }
}

struct conv_user {
    struct cg_conv2d_opts o;
};

static cg_tensor *conv_fn(cg_tensor **in, void *user)
{
    const struct conv_user *u = user;
    return cg_conv2d_ex(in[0], in[1], in[2], &u->o);
}

static cg_tensor *conv_nobias_fn(cg_tensor **in, void *user)
{
    const struct conv_user *u = user;
    return cg_conv2d_ex(in[0], in[1], NULL, &u->o);
}

static void gradcheck_conv_cfg(cg_ctx *ctx, const struct conv_cfg *c, uint64_t *rng)
{
    char name[256];
    cfg_name(c, name, sizeof name);
    struct conv_user u = {.o = {.stride = {c->sh, c->sw}, .padding = {c->ph, c->pw},
                                .dilation = {c->dh, c->dw}, .groups = c->groups}};
    cg_tensor *in[3] = {
        gc_input(ctx, rng, CG_SHAPE(c->n, c->c, c->h, c->w), -1, 1),
        gc_input(ctx, rng, CG_SHAPE(c->o, c->c / c->groups, c->kh, c->kw), -1, 1),
        gc_input(ctx, rng, CG_SHAPE(c->o), -1, 1)};
    gc_check(ctx, name, c->bias ? conv_fn : conv_nobias_fn, &u, c->bias ? 3 : 2, in, NULL);
    gc_free_inputs(3, in);
}

static void test_conv_gradcheck(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 202;
    static const struct conv_cfg cfgs[] = {
        {2, 2, 5, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},
        {1, 2, 7, 6, 2, 3, 2, 2, 2, 1, 0, 1, 1, 1, false},
        {2, 2, 7, 7, 2, 2, 3, 1, 1, 0, 2, 2, 2, 1, true},
        {1, 4, 5, 5, 4, 3, 3, 1, 2, 1, 1, 1, 1, 2, true},
        {2, 3, 4, 5, 3, 1, 1, 1, 1, 0, 0, 1, 1, 3, true},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) gradcheck_conv_cfg(ctx, &cfgs[i], &rng);
    for (int i = 0; i < 3; i++) {
        struct conv_cfg c = random_cfg(&rng, 4);
        gradcheck_conv_cfg(ctx, &c, &rng);
    }
}

/* Conv2d's init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight then bias,
 * fan_in = in_c / groups * kh * kw, drawn row-major from the context RNG. */
static void test_conv_module_init(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t in_c = 4, out_c = 6, kh = 3, kw = 2, groups = 2;
    uint64_t st[4];
    cg_rand_state(ctx, st);
    cg_module *m = cg_conv2d_module(ctx, in_c, out_c, kh, kw,
                                    &(struct cg_conv2d_opts){.groups = groups,
                                                             .padding = {1, 0}});
    assert_non_null(m);
    assert_string_equal(cg_module_type(m), "Conv2d");
    struct cg_named_tensor ps[3];
    assert_int_equal(cg_module_parameters(m, ps, 3), 2);
    assert_string_equal(ps[0].name, "weight");
    assert_string_equal(ps[1].name, "bias");
    assert_shape(ps[0].tensor, 4, (int64_t[]){out_c, in_c / groups, kh, kw});
    assert_shape(ps[1].tensor, 1, (int64_t[]){out_c});
    cg_rand_set_state(ctx, st);
    double bound = 1.0 / sqrt((double)(in_c / groups * kh * kw));
    float want_w[6 * 2 * 3 * 2], want_b[6];
    for (int i = 0; i < 72; i++) want_w[i] = (float)(-bound + 2 * bound * cg_rand_uniform(ctx));
    for (int i = 0; i < 6; i++) want_b[i] = (float)(-bound + 2 * bound * cg_rand_uniform(ctx));
    float *w = fetch_new(ps[0].tensor), *b = fetch_new(ps[1].tensor);
    assert_memory_equal(w, want_w, sizeof want_w);
    assert_memory_equal(b, want_b, sizeof want_b);
    free(w), free(b);

    /* Forward through the module: (N, 4, 5, 3) -> (N, 6, 5, 2) with pad (1, 0). */
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_uniform(ctx, CG_SHAPE(2, 4, 5, 3), -1, 1);
    assert_shape(cg_module_forward(m, x), 4, (int64_t[]){2, 6, 5, 2});
    assert_null(cg_module_forward(m, cg_tensor_zeros(ctx, CG_SHAPE(2, 3, 5, 3))));
    th_assert_error_contains(ctx, "Conv2d(4, 6)");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    cg_module_free(m);

    m = cg_conv2d_module(ctx, 3, 5, 3, 3, &(struct cg_conv2d_opts){.no_bias = true});
    assert_int_equal(cg_module_parameters(m, NULL, 0), 1);
    assert_null(cg_module_parameter(m, "bias"));
    cg_module_free(m);
    assert_null(cg_conv2d_module(ctx, 3, 4, 3, 3, &(struct cg_conv2d_opts){.groups = 2}));
    th_assert_error_contains(ctx, "groups");
    assert_null(cg_conv2d_module(ctx, 0, 4, 3, 3, NULL));
    cg_ctx_clear_error(ctx);
}

static void test_conv_errors(void **state)
{
    cg_ctx *ctx = *state;
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_uniform(ctx, CG_SHAPE(2, 4, 5, 5), -1, 1);
    cg_tensor *w = cg_tensor_uniform(ctx, CG_SHAPE(6, 4, 3, 3), -1, 1);
    cg_tensor *b = cg_tensor_uniform(ctx, CG_SHAPE(6), -1, 1);
    cg_tensor *flat = cg_tensor_uniform(ctx, CG_SHAPE(2, 100), -1, 1);
    assert_null(cg_conv2d(flat, w, b, 1, 0, 1, 1));
    th_assert_error_contains(ctx, "(2, 100) must be (N, C, H, W)");
    assert_null(cg_conv2d(x, cg_tensor_uniform(ctx, CG_SHAPE(6, 3, 3, 3), -1, 1), b, 1, 0, 1, 1));
    th_assert_error_contains(ctx, "does not fit input (2, 4, 5, 5)");
    assert_null(cg_conv2d(x, w, cg_tensor_uniform(ctx, CG_SHAPE(5), -1, 1), 1, 0, 1, 1));
    th_assert_error_contains(ctx, "bias (5,) must be (6)");
    assert_null(cg_conv2d(x, w, b, 1, 0, 1, 3));
    th_assert_error_contains(ctx, "groups 3");
    assert_null(cg_conv2d(x, w, b, 0, 0, 1, 1));
    th_assert_error_contains(ctx, "stride (0)");
    assert_null(cg_conv2d(x, w, b, 1, -1, 1, 1));
    assert_null(cg_conv2d(x, w, b, 1, 0, 3, 1));   /* dilated kernel 7 > 5 */
    th_assert_error_contains(ctx, "smaller than the dilated kernel");
    assert_null(cg_conv2d(x, NULL, b, 1, 0, 1, 1));
    cg_ctx_clear_error(ctx);
    /* Valid: no error left behind, shape by PyTorch's formula. */
    cg_tensor *y = cg_conv2d(x, w, b, 2, 1, 1, 1);
    assert_shape(y, 4, (int64_t[]){2, 6, out_size(5, 3, 2, 1, 1), out_size(5, 3, 2, 1, 1)});
    assert_int_equal(cg_ctx_status(ctx), CG_OK);
    cg_scope_end(ctx);
}

/* ---- pooling ------------------------------------------------------------------ */

struct pool_cfg {
    int64_t n, c, h, w, k, s, p, d;
    bool max;
};

/* Float64 reference pooling and its adjoint (max: the first maximum in
 * row-major window order, padding ignored; avg: / k^2, padding counted). */
static void ref_pool(const struct pool_cfg *c, const double *x, double *y, const double *gy,
                     double *gx)
{
    int64_t oh = out_size(c->h, c->k, c->s, c->p, c->d), ow = out_size(c->w, c->k, c->s, c->p, c->d);
    if (gx) memset(gx, 0, sizeof(double) * (size_t)(c->n * c->c * c->h * c->w));
    for (int64_t nc = 0; nc < c->n * c->c; nc++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                double best = -INFINITY, sum = 0;
                int64_t arg = -1;
                for (int64_t i = 0; i < c->k; i++)
                    for (int64_t j = 0; j < c->k; j++) {
                        int64_t iy = oy * c->s - c->p + i * c->d, ix = ox * c->s - c->p + j * c->d;
                        if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w) continue;
                        double v = x[(nc * c->h + iy) * c->w + ix];
                        sum += v;
                        if (v > best) best = v, arg = iy * c->w + ix;
                    }
                int64_t yi = (nc * oh + oy) * ow + ox;
                y[yi] = c->max ? best : sum / (double)(c->k * c->k);
                if (!gx) continue;
                if (c->max) {
                    gx[nc * c->h * c->w + arg] += gy[yi];
                    continue;
                }
                for (int64_t i = 0; i < c->k; i++)
                    for (int64_t j = 0; j < c->k; j++) {
                        int64_t iy = oy * c->s - c->p + i, ix = ox * c->s - c->p + j;
                        if (iy >= 0 && iy < c->h && ix >= 0 && ix < c->w)
                            gx[(nc * c->h + iy) * c->w + ix] += gy[yi] / (double)(c->k * c->k);
                    }
            }
}

/* Distinct values spaced >= 0.04 apart in random order: no ties, and a
 * +-1e-2 finite-difference step never changes which element is largest. */
static float *distinct_new(uint64_t *rng, int64_t n)
{
    float *h = malloc((size_t)n * sizeof *h);
    assert_non_null(h);
    for (int64_t i = 0; i < n; i++) h[i] = (float)(-1.0 + 0.04 * (double)i);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(th_rand_u64(rng) % (uint64_t)(i + 1));
        float t = h[i];
        h[i] = h[j];
        h[j] = t;
    }
    return h;
}

static cg_tensor *pool_call(cg_tensor *x, const struct pool_cfg *c)
{
    return c->max ? cg_max_pool2d(x, c->k, c->s, c->p, c->d) : cg_avg_pool2d(x, c->k, c->s, c->p);
}

static cg_tensor *pool_fn(cg_tensor **in, void *user) { return pool_call(in[0], user); }

static void test_pool_reference(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 303;
    static const struct pool_cfg cfgs[] = {
        /* n  c  h  w  k  s  p  d  max */
        {2, 3, 8, 8, 2, 2, 0, 1, true},     /* the usual 2x2 */
        {2, 2, 7, 9, 3, 2, 1, 1, true},     /* odd, padded   */
        {1, 3, 9, 8, 3, 1, 1, 2, true},     /* dilated       */
        {3, 1, 5, 6, 2, 1, 0, 1, true},     /* overlapping   */
        {2, 3, 8, 8, 2, 2, 0, 1, false},
        {2, 2, 7, 9, 3, 2, 1, 1, false},    /* padding counted */
        {1, 2, 5, 5, 5, 1, 2, 1, false},
        {1, 1, 1, 1, 1, 1, 0, 1, true},
        {2, 2, 6, 7, 3, 3, 0, 1, true},     /* window drops the last column */
    };
    for (size_t ci = 0; ci < sizeof cfgs / sizeof cfgs[0]; ci++) {
        const struct pool_cfg *c = &cfgs[ci];
        char name[128];
        snprintf(name, sizeof name, "%s k%lld s%lld p%lld d%lld on (%lld,%lld,%lld,%lld)",
                 c->max ? "max" : "avg", (long long)c->k, (long long)c->s, (long long)c->p,
                 (long long)c->d, (long long)c->n, (long long)c->c, (long long)c->h,
                 (long long)c->w);
        int64_t oh = out_size(c->h, c->k, c->s, c->p, c->d), ow = out_size(c->w, c->k, c->s, c->p, c->d);
        int64_t nx = c->n * c->c * c->h * c->w, ny = c->n * c->c * oh * ow;
        float *hx = distinct_new(&rng, nx), *hg = rand_new(&rng, ny, -1, 1);
        cg_scope_begin(ctx);
        cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(c->n, c->c, c->h, c->w), hx);
        assert_int_equal(cg_tensor_set_requires_grad(x, true), CG_OK);
        cg_tensor *y = pool_call(x, c);
        if (!y) fail_msg("%s: %s", name, cg_last_error(ctx));
        assert_shape(y, 4, (int64_t[]){c->n, c->c, oh, ow});
        assert_int_equal(cg_backward_with(y, cg_tensor_from_host(ctx, CG_SHAPE(c->n, c->c, oh, ow), hg)),
                         CG_OK);
        double *dx = to_double_new(hx, nx), *dg = to_double_new(hg, ny);
        double *ry = calloc((size_t)ny, sizeof *ry), *rgx = calloc((size_t)nx, sizeof *rgx);
        ref_pool(c, dx, ry, dg, rgx);
        float *got = fetch_new(y);
        th_assert_close(got, ry, ny, 1e-5, 1e-6, name);
        free(got);
        got = fetch_new(cg_tensor_grad(x));
        th_assert_close(got, rgx, nx, 1e-5, 1e-6, name);
        free(got);
        cg_scope_end(ctx);
        /* Central differences too (values spaced so no max changes). */
        cg_tensor *in[1] = {gc_const(ctx, CG_SHAPE(c->n, c->c, c->h, c->w), hx)};
        assert_int_equal(cg_tensor_set_requires_grad(in[0], true), CG_OK);
        gc_check(ctx, name, pool_fn, (void *)c, 1, in, NULL);
        gc_free_inputs(1, in);
        free(hx), free(hg), free(dx), free(dg), free(ry), free(rgx);
    }
}

static cg_tensor *gap_fn(cg_tensor **in, void *user)
{
    (void)user;
    return cg_global_avg_pool2d(in[0]);
}

static void test_pool_modules_and_errors(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 404;
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_uniform(ctx, CG_SHAPE(2, 3, 7, 5), -1, 1);
    cg_module *mp = cg_max_pool2d_module(ctx, 2, 0, 0, 1);   /* stride = kernel */
    cg_module *ap = cg_avg_pool2d_module(ctx, 3, 2, 1);
    cg_module *gp = cg_global_avg_pool2d_module(ctx);
    assert_string_equal(cg_module_type(mp), "MaxPool2d");
    assert_string_equal(cg_module_type(ap), "AvgPool2d");
    assert_shape(cg_module_forward(mp, x), 4, (int64_t[]){2, 3, 3, 2});
    assert_shape(cg_module_forward(ap, x), 4, (int64_t[]){2, 3, 4, 3});
    cg_tensor *g = cg_module_forward(gp, x);
    assert_shape(g, 2, (int64_t[]){2, 3});
    /* Global average pooling equals the plane means. */
    float *hx = fetch_new(x), *hg = fetch_new(g);
    double want[6];
    for (int i = 0; i < 6; i++) {
        want[i] = 0;
        for (int j = 0; j < 35; j++) want[i] += hx[i * 35 + j] / 35.0;
    }
    th_assert_close(hg, want, 6, 1e-5, 1e-6, "global average pooling");
    free(hx), free(hg);

    assert_null(cg_max_pool2d(x, 2, 2, 2, 1));
    th_assert_error_contains(ctx, "at most half the kernel size");
    assert_null(cg_max_pool2d(x, 9, 1, 0, 1));
    th_assert_error_contains(ctx, "output would be empty");
    assert_null(cg_avg_pool2d(cg_tensor_zeros(ctx, CG_SHAPE(3, 7, 5)), 2, 2, 0));
    th_assert_error_contains(ctx, "must be (N, C, H, W)");
    assert_null(cg_max_pool2d(x, 0, 1, 0, 1));
    assert_null(cg_global_avg_pool2d(cg_tensor_zeros(ctx, CG_SHAPE(2, 6))));
    assert_null(cg_max_pool2d_module(ctx, 3, 1, 2, 1));
    cg_ctx_clear_error(ctx);
    cg_module_free(mp);
    cg_module_free(ap);
    cg_module_free(gp);
    cg_scope_end(ctx);

    cg_tensor *in[1] = {gc_input(ctx, &rng, CG_SHAPE(2, 3, 4, 5), -1, 1)};
    gc_check(ctx, "global average pooling", gap_fn, NULL, 1, in, NULL);
    gc_free_inputs(1, in);
}

/* ---- batch normalisation ------------------------------------------------------- */

/* Float64 BatchNorm2d forward: training uses the batch mean and biased
 * variance over (N, H, W); else rm / rv. Returns the batch statistics in
 * mean / var (biased) when training. */
static void ref_bn(int64_t n, int64_t c, int64_t hw, const double *x, const double *w,
                   const double *b, const double *rm, const double *rv, bool training, double eps,
                   double *y, double *mean, double *var)
{
    for (int64_t ch = 0; ch < c; ch++) {
        double mu = 0, v = 0;
        if (training) {
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < hw; j++) mu += x[(i * c + ch) * hw + j];
            mu /= (double)(n * hw);
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < hw; j++) {
                    double d = x[(i * c + ch) * hw + j] - mu;
                    v += d * d;
                }
            v /= (double)(n * hw);
            mean[ch] = mu;
            var[ch] = v;
        } else {
            mu = rm[ch];
            v = rv[ch];
        }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t k = (i * c + ch) * hw + j;
                y[k] = (x[k] - mu) / sqrt(v + eps) * w[ch] + b[ch];
            }
    }
}

static void test_batchnorm_module(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t n = 3, c = 4, h = 5, w = 3, hw = h * w, nx = n * c * hw;
    uint64_t rng = 505;
    cg_module *net = cg_sequential_module(ctx, 2, cg_relu_module(ctx), cg_batch_norm2d_module(ctx, c, 0, 0));
    assert_non_null(net);
    cg_module *bn = cg_module_child(net, 1);
    assert_string_equal(cg_module_type(bn), "BatchNorm2d");
    /* PyTorch's state_dict names: parameters and buffers. */
    struct cg_named_tensor ps[4], bs[4];
    assert_int_equal(cg_module_parameters(net, ps, 4), 2);
    assert_string_equal(ps[0].name, "1.weight");
    assert_string_equal(ps[1].name, "1.bias");
    assert_int_equal(cg_module_buffers(net, bs, 4), 3);
    assert_string_equal(bs[0].name, "1.running_mean");
    assert_string_equal(bs[1].name, "1.running_var");
    assert_string_equal(bs[2].name, "1.num_batches_tracked");
    assert_ptr_equal(cg_module_buffer(net, "1.running_var"), bs[1].tensor);
    assert_false(cg_tensor_requires_grad(bs[0].tensor));
    assert_int_equal(cg_module_numel(net), 2 * c);   /* buffers are no parameters */

    /* Random affine parameters, so weight and bias matter. */
    float hwt[4], hbs[4];
    th_fill_uniform(&rng, hwt, c, 0.5f, 1.5f);
    th_fill_uniform(&rng, hbs, c, -0.5f, 0.5f);
    assert_int_equal(cg_tensor_set_data(ps[0].tensor, hwt, c), CG_OK);
    assert_int_equal(cg_tensor_set_data(ps[1].tensor, hbs, c), CG_OK);
    double dw[4], db[4], rm[4] = {0, 0, 0, 0}, rv[4] = {1, 1, 1, 1};
    for (int i = 0; i < c; i++) dw[i] = hwt[i], db[i] = hbs[i];

    /* Three training steps with different batches: outputs use the batch
     * statistics; the running ones follow torch.nn.BatchNorm2d's update,
     * r = (1 - 0.1) r + 0.1 s, with the unbiased variance. */
    double *ref_y = malloc(sizeof(double) * (size_t)nx), *dx = NULL;
    double mean[4], var[4];
    for (int step = 0; step < 3; step++) {
        float *hx = rand_new(&rng, nx, -2.0f + (float)step, 3.0f + (float)step);
        cg_scope_begin(ctx);
        cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(n, c, h, w), hx);
        cg_tensor *y = cg_module_forward(net, x);
        assert_shape(y, 4, (int64_t[]){n, c, h, w});
        for (int64_t i = 0; i < nx; i++) hx[i] = hx[i] > 0 ? hx[i] : 0;   /* the ReLU */
        dx = to_double_new(hx, nx);
        ref_bn(n, c, hw, dx, dw, db, NULL, NULL, true, 1e-5, ref_y, mean, var);
        float *got = fetch_new(y);
        th_assert_close(got, ref_y, nx, 1e-4, 1e-4, "BatchNorm2d training output");
        free(got);
        cg_scope_end(ctx);
        double m = (double)(n * hw);
        for (int i = 0; i < c; i++) {
            rm[i] = 0.9 * rm[i] + 0.1 * mean[i];
            rv[i] = 0.9 * rv[i] + 0.1 * var[i] * m / (m - 1);
        }
        float *grm = fetch_new(bs[0].tensor), *grv = fetch_new(bs[1].tensor);
        th_assert_close(grm, rm, c, 1e-5, 1e-6, "running_mean");
        th_assert_close(grv, rv, c, 1e-5, 1e-6, "running_var");
        free(grm), free(grv);
        float cnt;
        assert_int_equal(cg_tensor_item(bs[2].tensor, &cnt), CG_OK);
        assert_true(cnt == (float)(step + 1));
        free(hx);
        free(dx);
    }

    /* Eval: the running statistics, which stay as they are. */
    cg_module_eval(net);
    float *hx = rand_new(&rng, nx, -1, 2);
    cg_scope_begin(ctx);
    cg_tensor *y = cg_module_forward(net, cg_tensor_from_host(ctx, CG_SHAPE(n, c, h, w), hx));
    for (int64_t i = 0; i < nx; i++) hx[i] = hx[i] > 0 ? hx[i] : 0;
    dx = to_double_new(hx, nx);
    ref_bn(n, c, hw, dx, dw, db, rm, rv, false, 1e-5, ref_y, NULL, NULL);
    float *got = fetch_new(y);
    th_assert_close(got, ref_y, nx, 1e-4, 1e-4, "BatchNorm2d eval output");
    free(got);
    /* Batch of one image of one pixel: fine in eval, an error in training. */
    cg_tensor *one = cg_tensor_uniform(ctx, CG_SHAPE(1, c, 1, 1), -1, 1);
    assert_non_null(cg_module_forward(bn, one));
    cg_module_train(net);
    assert_null(cg_module_forward(bn, one));
    th_assert_error_contains(ctx, "more than 1 value per channel");
    assert_null(cg_module_forward(bn, cg_tensor_zeros(ctx, CG_SHAPE(2, c + 1, 2, 2))));
    th_assert_error_contains(ctx, "BatchNorm2d(4)");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    float *grm = fetch_new(bs[0].tensor);
    th_assert_close(grm, rm, c, 1e-5, 1e-6, "running_mean after eval and errors");
    free(grm);
    free(hx), free(dx), free(ref_y);
    cg_module_free(net);
}

struct bn_user {
    cg_tensor *rm, *rv;
    bool training;
};

static cg_tensor *bn_fn(cg_tensor **in, void *user)
{
    struct bn_user *u = user;
    return cg_batch_norm2d(in[0], u->rm, u->rv, in[1], in[2], u->training, 0.1f, 1e-5f);
}

static void test_batchnorm_gradcheck(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 606;
    float rm[3] = {0.2f, -0.3f, 0.1f}, rv[3] = {0.8f, 1.3f, 0.6f};
    struct bn_user u = {.rm = gc_const(ctx, CG_SHAPE(3), rm), .rv = gc_const(ctx, CG_SHAPE(3), rv)};
    for (int t = 0; t < 2; t++) {
        u.training = t == 0;
        cg_tensor *in[3] = {gc_input(ctx, &rng, CG_SHAPE(2, 3, 3, 4), -2, 2),
                            gc_input(ctx, &rng, CG_SHAPE(3), 0.5f, 1.5f),
                            gc_input(ctx, &rng, CG_SHAPE(3), -1, 1)};
        gc_check(ctx, u.training ? "batch norm (training)" : "batch norm (eval)", bn_fn, &u, 3, in,
                 NULL);
        gc_free_inputs(3, in);
    }
    /* Batch of one sample (N = 1): statistics over H, W alone. */
    u.training = true;
    cg_tensor *in[3] = {gc_input(ctx, &rng, CG_SHAPE(1, 3, 3, 3), -2, 2),
                        gc_input(ctx, &rng, CG_SHAPE(3), 0.5f, 1.5f),
                        gc_input(ctx, &rng, CG_SHAPE(3), -1, 1)};
    gc_check(ctx, "batch norm (training, batch 1)", bn_fn, &u, 3, in, NULL);
    gc_free_inputs(3, in);
    cg_tensor_free(u.rm);
    cg_tensor_free(u.rv);
}

/* ---- dropout ---------------------------------------------------------------------- */

static void test_dropout(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t n = 20000;
    const float p = 0.3f;
    uint64_t rng = 707;
    float *hx = rand_new(&rng, n, 0.5f, 1.5f);   /* never 0: a zero means dropped */
    cg_module *d = cg_dropout_module(ctx, p);
    assert_string_equal(cg_module_type(d), "Dropout");
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(4, 5, 1000), hx);
    assert_int_equal(cg_tensor_set_requires_grad(x, true), CG_OK);
    uint64_t st[4];
    cg_rand_state(ctx, st);
    cg_tensor *y = cg_module_forward(d, x);
    assert_shape(y, 3, (int64_t[]){4, 5, 1000});
    /* The mask (src/nn/dropout.c): one key from the context RNG, then
     * u_i = splitmix64 finaliser of key + (i + 1) * golden, top 53 bits, for
     * element i in row-major order (row offset 0 in one process): kept when
     * u < 1 - p, scaled by 1 / (1 - p). */
    cg_rand_set_state(ctx, st);
    uint64_t key = cg_rand_u64(ctx);
    float *hy = fetch_new(y);
    int64_t dropped = 0;
    double *want = malloc(sizeof(double) * (size_t)n), *gwant = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        uint64_t z = key + (uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        bool keep = (double)(z >> 11) * (1.0 / 9007199254740992.0) < 1.0 - (double)p;
        gwant[i] = keep ? 1.0 / (1.0 - (double)p) : 0.0;
        want[i] = hx[i] * gwant[i];
        dropped += hy[i] == 0.0f;
    }
    th_assert_close(hy, want, n, 1e-6, 0, "dropout output");
    /* 6000 expected drops, sd sqrt(n p (1-p)) ~ 65: 5 sd. */
    assert_true(llabs(dropped - 6000) < 330);
    /* The gradient is the same mask. */
    assert_int_equal(cg_backward(cg_sum_all(y)), CG_OK);
    float *gx = fetch_new(cg_tensor_grad(x));
    th_assert_close(gx, gwant, n, 1e-6, 0, "dropout gradient");
    free(gx), free(hy), free(want), free(gwant);

    /* Eval: identity. p = 0: identity; p = 1: zeros. */
    cg_module_eval(d);
    hy = fetch_new(cg_module_forward(d, x));
    assert_memory_equal(hy, hx, sizeof(float) * (size_t)n);
    free(hy);
    hy = fetch_new(cg_dropout(x, 0.0f, true));
    assert_memory_equal(hy, hx, sizeof(float) * (size_t)n);
    free(hy);
    hy = fetch_new(cg_dropout(x, 1.0f, true));
    for (int64_t i = 0; i < n; i++) assert_true(hy[i] == 0.0f);
    free(hy);
    assert_null(cg_dropout(x, 1.5f, true));
    th_assert_error_contains(ctx, "must be in [0, 1]");
    assert_null(cg_dropout_module(ctx, -0.1f));
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    cg_module_free(d);
    free(hx);
}

struct drop_user {
    uint64_t seed;
};

/* The same mask on every call: the RNG is reseeded first. */
static cg_tensor *dropout_fn(cg_tensor **in, void *user)
{
    struct drop_user *u = user;
    cg_seed(cg_tensor_ctx(in[0]), u->seed);
    return cg_dropout(in[0], 0.4f, true);
}

static void test_dropout_gradcheck(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 808;
    struct drop_user u = {99};
    cg_tensor *in[1] = {gc_input(ctx, &rng, CG_SHAPE(3, 2, 5, 4), -1, 1)};
    gc_check(ctx, "dropout", dropout_fn, &u, 1, in, NULL);
    gc_free_inputs(1, in);
}

/* ---- a whole CNN: spec grammar, shapes, gradients -------------------------------- */

static void spec_ok(cg_ctx *ctx, const char *spec, int in_nd, const int64_t *in,
                    int want_nd, const int64_t *want)
{
    int nd = -1;
    int64_t shape[CG_MAX_DIMS];
    cg_module *m = cg_model_from_spec(ctx, spec, in_nd, in, &nd, shape);
    if (!m) fail_msg("\"%s\": %s", spec, cg_last_error(ctx));
    assert_int_equal(nd, want_nd);
    for (int i = 0; i < nd; i++) assert_int_equal(shape[i], want[i]);
    /* The modules agree with the inferred shape. */
    cg_scope_begin(ctx);
    int64_t xs[CG_MAX_DIMS + 1] = {2};
    for (int i = 0; i < in_nd; i++) xs[i + 1] = in[i];
    cg_tensor *y = cg_module_forward(m, cg_tensor_uniform(ctx, in_nd + 1, xs, -1, 1));
    if (!y) fail_msg("\"%s\" forward: %s", spec, cg_last_error(ctx));
    assert_int_equal(cg_tensor_ndim(y), nd + 1);
    assert_int_equal(cg_tensor_dim(y, 0), 2);
    for (int i = 0; i < nd; i++) assert_int_equal(cg_tensor_dim(y, i + 1), want[i]);
    cg_scope_end(ctx);
    cg_module_free(m);
}

static void spec_bad(cg_ctx *ctx, const char *spec, int in_nd, const int64_t *in,
                     const char *needle1, const char *needle2)
{
    cg_module *m = cg_model_from_spec(ctx, spec, in_nd, in, NULL, NULL);
    if (m) fail_msg("\"%s\" should fail", spec);
    th_assert_error_contains(ctx, needle1);
    if (needle2) th_assert_error_contains(ctx, needle2);
    cg_ctx_clear_error(ctx);
}

static void test_spec(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t img[] = {1, 28, 28}, rgb[] = {3, 11, 9}, flat[] = {12};
    spec_ok(ctx, "conv 32 3 pad 1 relu, maxpool 2, conv 64 3 pad 1 relu, maxpool 2, flatten, "
                 "linear 128 relu, linear 10", 3, img, 1, (int64_t[]){10});
    spec_ok(ctx, "conv 4 3", 3, rgb, 3, (int64_t[]){4, 9, 7});
    spec_ok(ctx, "conv 6 3 stride 2 padding 1 dilation 2 groups 3 nobias relu", 3, rgb, 3,
            (int64_t[]){6, out_size(11, 3, 2, 1, 2), out_size(9, 3, 2, 1, 2)});
    spec_ok(ctx, "maxpool 3 stride 2 pad 1 dilation 1, avgpool 2 stride 1 pad 1", 3, rgb, 3,
            (int64_t[]){3, out_size(out_size(11, 3, 2, 1, 1), 2, 1, 1, 1),
                        out_size(out_size(9, 3, 2, 1, 1), 2, 1, 1, 1)});
    spec_ok(ctx, "conv 8 3 pad 1, batchnorm, relu, dropout 0.25, gap, linear 5", 3, rgb, 1,
            (int64_t[]){5});
    spec_ok(ctx, "CONV 2 1 Stride 3, Flatten", 3, rgb, 1, (int64_t[]){2 * 4 * 3});
    spec_ok(ctx, "dropout 0, linear 3", 1, flat, 1, (int64_t[]){3});
    cg_module *m = cg_model_from_spec(ctx, "conv 4 3 pad 1, batchnorm, relu", 3, rgb, NULL, NULL);
    assert_non_null(m);
    struct cg_named_tensor ps[8];
    assert_int_equal(cg_module_parameters(m, ps, 8), 4);
    assert_string_equal(ps[0].name, "0.weight");
    assert_string_equal(ps[2].name, "1.weight");
    assert_int_equal(cg_module_buffers(m, NULL, 0), 3);
    assert_non_null(cg_module_buffer(m, "1.running_mean"));
    cg_module_free(m);

    /* Errors name the layer's column. */
    spec_bad(ctx, "flatten, conv 8 3", 3, img, "column 10", "needs an image sample (C, H, W) but "
             "gets shape (784,)");
    spec_bad(ctx, "conv 8 3", 1, flat, "column 1", "needs an image sample");
    /* 28 -> 26 -> 13 -> 6 -> 3 -> 1 -> nothing: the fifth pool, at column 55. */
    spec_bad(ctx, "conv 8 3, maxpool 2, maxpool 2, maxpool 2, maxpool 2, maxpool 2", 3, img,
             "column 55", "no pixels");
    spec_bad(ctx, "conv 8 30", 3, img, "column 1", "does not fit the image (1, 28, 28)");
    spec_bad(ctx, "conv 8", 3, img, "'conv' needs a positive output channel count", NULL);
    spec_bad(ctx, "conv 8 3 strde 2", 3, img, "unexpected 'strde'", "stride");
    spec_bad(ctx, "conv 8 3 stride 0", 3, img, "'stride' needs an integer >= 1", NULL);
    spec_bad(ctx, "conv 8 3 pad", 3, img, "'pad' needs an integer >= 0", NULL);
    spec_bad(ctx, "conv 9 3 groups 2", 3, rgb, "groups 2 must divide", NULL);
    spec_bad(ctx, "maxpool 2 pad 2", 3, img, "at most half the kernel", NULL);
    spec_bad(ctx, "avgpool 2 dilation 2", 3, img, "unexpected 'dilation'", NULL);
    spec_bad(ctx, "maxpool 2 relu stride 2", 3, img, "unexpected 'stride'", NULL);
    spec_bad(ctx, "gap, gap", 3, img, "column 6", "'gap' needs an image sample");
    spec_bad(ctx, "batchnorm", 1, flat, "'batchnorm' needs an image sample", NULL);
    spec_bad(ctx, "dropout 1.5", 1, flat, "'dropout' needs a probability in [0, 1]", NULL);
    spec_bad(ctx, "dropout", 1, flat, "'dropout' needs a probability", NULL);
    spec_bad(ctx, "conv 8 3, linear 10", 3, img, "put 'flatten' before it", NULL);
}

/* Sizes whose products overflow int64 (issue 17, item 3): each is a clear
 * error naming the layer or op, never a wrapped product (the first two
 * specs hit signed overflow in the flatten's and the conv's size
 * arithmetic before; run under UBSan, tools/check.sh). */
static void test_size_overflow(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t img[] = {1, 28, 28}, big[] = {3037000500};
    /* (4, 2000000026, 2000000026) has 1.6e19 elements */
    spec_bad(ctx, "conv 4 3 pad 1000000000, flatten, linear 3", 3, img, "column 1",
             "output sample (4, 2000000026, 2000000026) is too large");
    spec_bad(ctx, "conv 64 3 pad 3037000499, gap, linear 3", 3, img, "column 1", "too large");
    spec_bad(ctx, "conv 1 3 pad 5000000000000000000", 3, img, "column 1", "too large");
    spec_bad(ctx, "conv 1 3 dilation 5000000000000000000", 3, img, "column 1", "too large");
    spec_bad(ctx, "maxpool 3 stride 1 dilation 5000000000000000000", 3, img, "column 1",
             "too large");
    spec_bad(ctx, "linear 3037000500", 1, big, "column 1", "weight (3037000500, 3037000500)");

    /* The ops check their own arithmetic, for callers other than a spec. */
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_zeros(ctx, CG_SHAPE(1, 1, 4, 4));
    cg_tensor *w = cg_tensor_zeros(ctx, CG_SHAPE(1, 1, 3, 3));
    assert_null(cg_conv2d(x, w, NULL, 1, 3037000499, 1, 1));
    th_assert_error_contains(ctx, "cg_conv2d");
    th_assert_error_contains(ctx, "too large to count");
    cg_ctx_clear_error(ctx);
    assert_null(cg_conv2d(x, w, NULL, 1, INT64_MAX / 2 + 1, 1, 1));
    th_assert_error_contains(ctx, "overflow");
    cg_ctx_clear_error(ctx);
    assert_null(cg_max_pool2d(x, 3, 1, 1, INT64_MAX / 2));
    th_assert_error_contains(ctx, "cg_max_pool2d");
    cg_ctx_clear_error(ctx);
    cg_tensor *one = cg_tensor_zeros(ctx, CG_SHAPE(1, 1));
    assert_null(cg_expand(one, 2, (int64_t[]){4000000000, 4000000000}));
    th_assert_error_contains(ctx, "cg_expand");
    th_assert_error_contains(ctx, "too large");
    cg_ctx_clear_error(ctx);
    assert_null(cg_reshape(one, 3, (int64_t[]){INT64_MAX, 4, 0}));
    th_assert_error_contains(ctx, "too large");
    cg_ctx_clear_error(ctx);
    assert_null(cg_tensor_empty(ctx, 2, (int64_t[]){3037000500, 3037000500}));
    th_assert_error_contains(ctx, "too large");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    assert_null(cg_linear_module(ctx, 3037000500, 3037000500, true));
    th_assert_error_contains(ctx, "too large");
    cg_ctx_clear_error(ctx);
}

/* The Fashion-MNIST CNN, small: one training step's gradients by finite
 * differences through conv, relu, max pooling, flatten and linear. */
struct net_user {
    cg_module *m;
};

static cg_tensor *net_fn(cg_tensor **in, void *user)
{
    struct net_user *u = user;
    return cg_module_forward(u->m, in[0]);
}

static void test_cnn_gradcheck(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 909;
    const int64_t in_shape[] = {2, 6, 6};
    struct net_user u = {cg_model_from_spec(ctx, "conv 3 3 pad 1 tanh, avgpool 2, conv 4 2 tanh, "
                                            "gap, linear 3", 3, in_shape, NULL, NULL)};
    assert_non_null(u.m);
    struct cg_named_tensor ps[8];
    int np = cg_module_parameters(u.m, ps, 8);
    assert_int_equal(np, 6);
    cg_tensor *in[7];
    in[0] = gc_input(ctx, &rng, CG_SHAPE(2, 2, 6, 6), -1, 1);
    for (int i = 0; i < np; i++) in[1 + i] = ps[i].tensor;
    gc_check(ctx, "conv-tanh-avgpool-conv-tanh-gap-linear", net_fn, &u, 1 + np, in, NULL);
    cg_tensor_free(in[0]);
    cg_module_free(u.m);
}

/* ---- whole convolutions (backend.h conv2d members) ------------------------------ */

/* Shapes for the fused members: c >= 16 (the cpu backend declines the data
 * gradient below), every geometry option, odd sizes, batch 1, and batches
 * of 5 and 7 (uneven parts over 2 or 3 threads). */
static const struct conv_cfg fused_cfgs[] = {
    /* n   c   h   w   o kh kw sh sw ph pw dh dw  g  bias */
    {4, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},   /* the bench CNN's conv2 */
    {5, 16, 9, 11, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},     /* odd sizes, odd o    */
    {1, 17, 8, 7, 20, 3, 2, 2, 1, 0, 1, 1, 1, 1, false},    /* batch 1, stride     */
    {7, 24, 13, 10, 9, 3, 3, 2, 2, 2, 1, 2, 1, 1, true},    /* stride 2, dilation  */
    {3, 16, 6, 6, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, true},     /* 1x1                 */
    {2, 20, 5, 9, 5, 5, 3, 1, 3, 2, 0, 1, 2, 1, false},     /* 5x3, stride 3       */
    {5, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true},    /* the CNN's conv1     */
    {3, 3, 11, 9, 6, 3, 3, 1, 2, 1, 1, 1, 1, 1, true},      /* few channels        */
};
#define N_FUSED_CFGS (sizeof fused_cfgs / sizeof fused_cfgs[0])

/* Whether the cpu backend under test takes its oneDNN path (backend.h's
 * conv2d members present, AVX-512F, CLGRAD_CPU_AVX512 not 0). */
static bool cpu_fused_expected(cg_ctx *ctx)
{
    const char *v = getenv("CLGRAD_CPU_AVX512");
    __builtin_cpu_init();
    return strcmp(cg_ctx_backend_name(ctx), "cpu") == 0 && CG_BACKEND_HAS(ctx->be, conv2d) &&
           __builtin_cpu_supports("avx512f") && !(v && strcmp(v, "0") == 0);
}

/* One forward and backward (L = sum(gy * y)): y and the gradients of x,
 * w, b concatenated, and the kernels launched. */
struct conv_run {
    float *v;
    int64_t n;
    uint64_t launches;
};

static struct conv_run run_conv(cg_ctx *ctx, const struct conv_cfg *c, const float *hx,
                                const float *hw, const float *hb, const float *hg)
{
    int64_t oh = cfg_oh(c), ow = cfg_ow(c);
    int64_t nx = c->n * c->c * c->h * c->w, nw = c->o * c->c * c->kh * c->kw;
    int64_t ny = c->n * c->o * oh * ow;
    struct conv_run r = {.n = ny + nx + nw + (c->bias ? c->o : 0)};
    r.v = malloc((size_t)r.n * sizeof *r.v);
    assert_non_null(r.v);
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(c->n, c->c, c->h, c->w), hx);
    cg_tensor *w = cg_tensor_from_host(ctx, CG_SHAPE(c->o, c->c, c->kh, c->kw), hw);
    cg_tensor *b = c->bias ? cg_tensor_from_host(ctx, CG_SHAPE(c->o), hb) : NULL;
    cg_tensor *gy = cg_tensor_from_host(ctx, CG_SHAPE(c->n, c->o, oh, ow), hg);
    assert_int_equal(cg_tensor_set_requires_grad(x, true), CG_OK);
    assert_int_equal(cg_tensor_set_requires_grad(w, true), CG_OK);
    if (b) assert_int_equal(cg_tensor_set_requires_grad(b, true), CG_OK);
    struct cg_conv2d_opts o = {.stride = {c->sh, c->sw}, .padding = {c->ph, c->pw},
                               .dilation = {c->dh, c->dw}, .groups = 1};
    struct cg_backend_stats s0, s1;
    cg_ctx_stats(ctx, &s0);
    cg_tensor *y = cg_conv2d_ex(x, w, b, &o);
    if (!y) fail_msg("%s", cg_last_error(ctx));
    assert_int_equal(cg_backward_with(y, gy), CG_OK);
    cg_ctx_stats(ctx, &s1);
    r.launches = s1.launches - s0.launches;
    assert_int_equal(cg_tensor_to_host(y, r.v, ny), CG_OK);
    assert_int_equal(cg_tensor_to_host(cg_tensor_grad(x), r.v + ny, nx), CG_OK);
    assert_int_equal(cg_tensor_to_host(cg_tensor_grad(w), r.v + ny + nx, nw), CG_OK);
    if (b) assert_int_equal(cg_tensor_to_host(cg_tensor_grad(b), r.v + ny + nx + nw, c->o), CG_OK);
    cg_scope_end(ctx);
    return r;
}

/* Every shape against the float64 reference, through whatever path the
 * backend takes for it. */
static void test_conv_fused_reference(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 0xc0f1;
    for (size_t i = 0; i < N_FUSED_CFGS; i++) check_conv_cfg(ctx, &fused_cfgs[i], &rng);
}

static struct cg_backend_i conv_vtable;

/* Fused (the context's vtable) vs composed (a copy with the conv2d members
 * NULL) on the same inputs, on contexts of 1, 2 and 3 cpu threads (the
 * batch split in parts) or the backend under test. The fused path must
 * launch fewer kernels where the cpu backend's oneDNN path is expected,
 * so a path that silently declined would fail here. */
static void fused_vs_composed(cg_ctx *ctx, uint64_t *rng, const char *label)
{
    bool expect = cpu_fused_expected(ctx);
    for (size_t i = 0; i < N_FUSED_CFGS; i++) {
        const struct conv_cfg *c = &fused_cfgs[i];
        char name[256], what[320];
        cfg_name(c, name, sizeof name);
        int64_t nx = c->n * c->c * c->h * c->w, nw = c->o * c->c * c->kh * c->kw;
        int64_t ny = c->n * c->o * cfg_oh(c) * cfg_ow(c);
        float *hx = rand_new(rng, nx, -1, 1), *hw = rand_new(rng, nw, -1, 1);
        float *hb = rand_new(rng, c->o, -1, 1), *hg = rand_new(rng, ny, -1, 1);
        struct conv_run f = run_conv(ctx, c, hx, hw, hb, hg);
        const struct cg_backend_i *saved = ctx->be;
        conv_vtable = *ctx->be;
        conv_vtable.conv2d = NULL;
        conv_vtable.conv2d_backward_data = NULL;
        conv_vtable.conv2d_backward_weights = NULL;
        ctx->be = &conv_vtable;
        struct conv_run k = run_conv(ctx, c, hx, hw, hb, hg);
        ctx->be = saved;
        snprintf(what, sizeof what, "%s %s: fused vs composed", label, name);
        assert_int_equal(f.n, k.n);
        th_assert_close_f(f.v, k.v, f.n, 1e-4, 1e-4, what);
        if (expect && f.launches >= k.launches)
            fail_msg("%s: the fused path launched %llu kernels, the composed %llu: declined?",
                     what, (unsigned long long)f.launches, (unsigned long long)k.launches);
        free(f.v), free(k.v), free(hx), free(hw), free(hb), free(hg);
    }
}

static void test_conv_fused_vs_composed(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 0xc0f2;
    fused_vs_composed(ctx, &rng, cg_ctx_backend_name(ctx));
    if (strcmp(cg_ctx_backend_name(ctx), "cpu") != 0) return;
    const char *old = getenv("CLGRAD_CPU_THREADS");
    char *keep = old ? strdup(old) : NULL;
    for (int t = 1; t <= 3; t++) {
        char tv[8], label[32];
        snprintf(tv, sizeof tv, "%d", t);
        snprintf(label, sizeof label, "cpu %d threads", t);
        setenv("CLGRAD_CPU_THREADS", tv, 1);
        cg_ctx *c2 = NULL;
        struct cg_ctx_options o = {.backend = "cpu", .seed = 7};
        assert_int_equal(cg_ctx_create(&c2, &o), CG_OK);
        fused_vs_composed(c2, &rng, label);
        cg_ctx_free(c2);
    }
    if (keep) setenv("CLGRAD_CPU_THREADS", keep, 1);
    else unsetenv("CLGRAD_CPU_THREADS");
    free(keep);
}

/* Members that decline every call, as a backend may for a shape. */
static cg_status decline_data(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                              struct cg_ptr dx, struct cg_ptr gy, struct cg_ptr w)
{
    (void)ctx, (void)d, (void)out_c, (void)dx, (void)gy, (void)w;
    return CG_STATUS_UNSUPPORTED;
}

static cg_status decline_weights(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                                 struct cg_ptr dw, struct cg_ptr db, struct cg_ptr x,
                                 struct cg_ptr gy)
{
    (void)ctx, (void)d, (void)out_c, (void)dw, (void)db, (void)x, (void)gy;
    return CG_STATUS_UNSUPPORTED;
}

/* The forward fused (where the backend has it) and both backward members
 * declining: the core composes the gradients, recomputing col from x
 * (the fused forward kept none); against the float64 reference. */
static void test_conv_fused_declined(void **state)
{
    cg_ctx *ctx = *state;
    if (!CG_BACKEND_HAS(ctx->be, conv2d)) skip();   /* no fused forward to pair with */
    uint64_t rng = 0xc0f3;
    const struct cg_backend_i *saved = ctx->be;
    conv_vtable = *ctx->be;
    conv_vtable.conv2d_backward_data = decline_data;
    conv_vtable.conv2d_backward_weights = decline_weights;
    ctx->be = &conv_vtable;
    for (size_t i = 0; i < N_FUSED_CFGS; i++) check_conv_cfg(ctx, &fused_cfgs[i], &rng);
    ctx->be = saved;
}

/* ---- opencl (or any other backend) against cpu ---------------------------------- */

/* Runs the same seeded model, input and dropout masks on ctx and a cpu
 * context; compares outputs, parameter gradients and running statistics. */
static void test_against_cpu(void **state)
{
    cg_ctx *ctx = *state;
    if (strcmp(cg_ctx_backend_name(ctx), "cpu") == 0) skip();   /* nothing to compare with */
    cg_ctx *cpu = NULL;
    struct cg_ctx_options o = {.backend = "cpu", .seed = 1234};
    assert_int_equal(cg_ctx_create(&cpu, &o), CG_OK);
    const char *spec = "conv 6 3 pad 1 relu, batchnorm, maxpool 2, conv 8 3 stride 2 dilation 1 "
                       "groups 2 relu, dropout 0.3, avgpool 2 stride 1 pad 1, conv 8 1, gap, "
                       "linear 5";
    const int64_t in_shape[] = {2, 13, 11};
    cg_ctx *cs[2] = {ctx, cpu};
    cg_module *m[2];
    float *out[2], *grads[2][16];
    int np = 0;
    uint64_t rng0 = 1111;
    float *hx = rand_new(&rng0, 3 * 2 * 13 * 11, -1, 1);
    for (int k = 0; k < 2; k++) {
        cg_seed(cs[k], 42);
        m[k] = cg_model_from_spec(cs[k], spec, 3, in_shape, NULL, NULL);
        if (!m[k]) fail_msg("%s", cg_last_error(cs[k]));
        cg_scope_begin(cs[k]);
        cg_tensor *x = cg_tensor_from_host(cs[k], CG_SHAPE(3, 2, 13, 11), hx);
        cg_tensor *y = cg_module_forward(m[k], x);
        if (!y) fail_msg("%s", cg_last_error(cs[k]));
        out[k] = fetch_new(y);
        assert_int_equal(cg_backward(cg_sum_all(cg_mul(y, y))), CG_OK);
        struct cg_named_tensor ps[16];
        np = cg_module_parameters(m[k], ps, 16);
        assert_true(np <= 16);
        for (int i = 0; i < np; i++) grads[k][i] = fetch_new(cg_tensor_grad(ps[i].tensor));
        cg_scope_end(cs[k]);
    }
    th_assert_close_f(out[0], out[1], 3 * 5, 1e-4, 1e-5, "CNN output, device vs cpu");
    struct cg_named_tensor ps[16], bs[8];
    cg_module_parameters(m[1], ps, 16);
    for (int i = 0; i < np; i++) {
        th_assert_close_f(grads[0][i], grads[1][i], cg_tensor_numel(ps[i].tensor), 1e-3, 1e-4,
                          ps[i].name);
        free(grads[0][i]), free(grads[1][i]);
    }
    int nb = cg_module_buffers(m[1], bs, 8);
    struct cg_named_tensor bs0[8];
    cg_module_buffers(m[0], bs0, 8);
    for (int i = 0; i < nb; i++) {
        float *a = fetch_new(bs0[i].tensor), *b = fetch_new(bs[i].tensor);
        th_assert_close_f(a, b, cg_tensor_numel(bs[i].tensor), 1e-5, 1e-6, bs[i].name);
        free(a), free(b);
    }
    for (int k = 0; k < 2; k++) {
        free(out[k]);
        cg_module_free(m[k]);
    }
    free(hx);
    cg_ctx_free(cpu);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_conv_reference, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_conv_reference_random, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_conv_gradcheck, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_conv_module_init, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_conv_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_pool_reference, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_pool_modules_and_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_batchnorm_module, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_batchnorm_gradcheck, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_dropout, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_dropout_gradcheck, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_spec, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_size_overflow, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_cnn_gradcheck, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_conv_fused_reference, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_conv_fused_vs_composed, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_conv_fused_declined, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_against_cpu, th_setup, th_teardown),
    };
    return TH_RUN(tests);
}
