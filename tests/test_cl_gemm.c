/*
 * tests/test_cl_gemm.c — edge cases of the opencl backend's own GEMM
 * kernels (cl/gemm.cl, backends/opencl/gemm.c) against float64 references.
 *
 * The kernels work in tiles (gemm_outer 6 x 16, gemm_dot 3 x 4 with k in
 * steps of 8, gemm_pack 32 values of k per work-item) and have an in-place
 * and a packed path, so the sizes here sit on both sides of every tile
 * edge, and each test runs its cases once per path, forced through
 * CLGRAD_GEMM (read when a context's first GEMM runs): own-inplace,
 * own-packed, own (the automatic choice; also the large products that
 * cross its threshold) and clblast (the GPU path, so PoCL keeps testing
 * it). On the cpu backend CLGRAD_GEMM means nothing and the same cases
 * check the cpu GEMM.
 *
 * Every case: all four transpose combinations, pitches wider than the
 * rows, element offsets, gaps between batch entries (C's gaps must stay
 * untouched: the whole buffer is compared), operands shared by the batch
 * (stride 0), alpha/beta, and beta == 0 over a C full of NaN (BLAS: C is
 * not read). Tolerance as tests/test_primitives.c: rtol 1e-5, atol
 * 1e-6 * (k + 1).
 *
 *   ./test_cl_gemm [filter]
 */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

struct env {
    cg_ctx *ctx;
    const struct cg_backend_i *be;
    void *bctx;
    uint64_t rng;
};

/* A fresh context whose GEMM runs in `mode` (see the header comment). */
static struct env env_open(const char *mode, uint64_t seed)
{
    setenv("CLGRAD_GEMM", mode, 1);
    struct env e = {.ctx = th_ctx_create(seed), .rng = seed};
    e.be = cg_ctx_backend(e.ctx, &e.bctx);
    assert_non_null(e.be);
    return e;
}

static void env_close(struct env *e)
{
    cg_ctx_free(e->ctx);
    unsetenv("CLGRAD_GEMM");
}

/* A device copy of n host floats. */
struct darr {
    cg_tensor *t;
    struct cg_ptr p;
    int64_t n;
};

static struct darr darr_new(struct env *e, const float *host, int64_t n)
{
    cg_tensor *t = cg_tensor_from_host(e->ctx, CG_SHAPE(n), host);
    if (!t) fail_msg("cg_tensor_from_host(%lld): %s", (long long)n, cg_last_error(e->ctx));
    struct cg_view v = cg_tensor_view(t);
    return (struct darr){t, {v.buf, v.off}, n};
}

static struct cg_ptr darr_at(struct darr d, int64_t off)
{
    return (struct cg_ptr){d.p.buf, d.p.off + off};
}

static float *darr_read(struct darr d)
{
    float *h = TH_TALLOC(float, d.n);
    if (cg_tensor_to_host(d.t, h, d.n) != CG_OK)
        fail_msg("cg_tensor_to_host: %s", cg_last_error(cg_tensor_ctx(d.t)));
    return h;
}

static float *rand_floats(struct env *e, int64_t n)
{
    float *x = TH_TALLOC(float, n);
    th_fill_uniform(&e->rng, x, n, -1.0f, 1.0f);
    return x;
}

/* One product. shared_a / shared_b give that operand batch stride 0. */
struct gemm_case {
    int64_t m, n, k, batch;
    float alpha, beta;
    int shared_a, shared_b;
};

static double at(const float *x, int trans, int64_t ld, int64_t r, int64_t c)
{
    return trans ? x[c * ld + r] : x[r * ld + c];
}

/* Runs c with transposes (ta, tb) and checks the whole of C's buffer;
 * returns C as read back (arena memory). */
static float *gemm_check(struct env *e, const struct gemm_case *c, int ta, int tb)
{
    const int64_t m = c->m, n = c->n, k = c->k, batch = c->batch;
    struct cg_gemm_desc d = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                             .alpha = c->alpha, .beta = c->beta, .batch = batch};
    const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    d.lda = a_cols + 1;
    d.ldb = b_cols + 3;
    d.ldc = n + 2;
    d.stride_a = c->shared_a ? 0 : a_rows * d.lda + 4;
    d.stride_b = c->shared_b ? 0 : b_rows * d.ldb + 1;
    d.stride_c = m * d.ldc + 5;
    const int64_t oa = 3, ob = 6, oc = 2;
    const int64_t na = oa + (c->shared_a ? 1 : batch) * a_rows * d.lda + batch * 4;
    const int64_t nb = ob + (c->shared_b ? 1 : batch) * b_rows * d.ldb + batch;
    const int64_t nc = oc + batch * d.stride_c + 1;
    float *ha = rand_floats(e, na), *hb = rand_floats(e, nb), *hc = rand_floats(e, nc);
    if (c->beta == 0.0f)
        for (int64_t i = 0; i < nc; ++i)
            hc[i] = NAN;
    double *want = TH_TALLOC(double, nc);
    for (int64_t i = 0; i < nc; ++i)
        want[i] = hc[i];
    for (int64_t b = 0; b < batch; ++b) {
        const float *A = ha + oa + b * d.stride_a, *B = hb + ob + b * d.stride_b;
        for (int64_t i = 0; i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
                double acc = 0.0;
                for (int64_t p = 0; p < k; ++p)
                    acc += at(A, ta, d.lda, i, p) * at(B, tb, d.ldb, p, j);
                const int64_t ci = oc + b * d.stride_c + i * d.ldc + j;
                const double old = c->beta == 0.0f ? 0.0 : (double)c->beta * hc[ci];
                want[ci] = (float)((double)c->alpha * acc + old);
            }
    }
    cg_scope_begin(e->ctx);
    struct darr da = darr_new(e, ha, na), db = darr_new(e, hb, nb), dc = darr_new(e, hc, nc);
    cg_status st = e->be->gemm(e->bctx, &d, darr_at(da, oa), darr_at(db, ob), darr_at(dc, oc));
    if (st != CG_OK)
        fail_msg("gemm: %s", cg_last_error(e->ctx));
    float *got = darr_read(dc);
    cg_scope_end(e->ctx);
    char what[200];
    snprintf(what, sizeof what,
             "gemm %c%c m %lld n %lld k %lld batch %lld alpha %g beta %g shared %d%d (%s)",
             ta ? 'T' : 'N', tb ? 'T' : 'N', (long long)m, (long long)n, (long long)k,
             (long long)batch, (double)c->alpha, (double)c->beta, c->shared_a, c->shared_b,
             getenv("CLGRAD_GEMM"));
    th_assert_close(got, want, nc, 1e-5, 1e-6 * (double)(k + 1), what);
    return got;
}

static void run_cases(const char *mode, const struct gemm_case *cases, int ncases,
                      uint64_t seed)
{
    struct env e = env_open(mode, seed);
    for (int i = 0; i < ncases; ++i)
        for (int t = 0; t < 4; ++t) {
            int mark = th_arena_mark();
            gemm_check(&e, &cases[i], t >> 1, t & 1);
            th_arena_release(mark);
        }
    env_close(&e);
}

/* Sizes on both sides of the tile edges: m around 6 and 3, n around 16
 * and 4, k around 8 (gemm_dot's vectors) and 32 (gemm_pack's blocks). */
static const struct gemm_case edge_cases[] = {
    {1, 1, 1, 1, 1.0f, 0.0f, 0, 0},
    {5, 15, 7, 1, 1.0f, 0.0f, 0, 0},
    {6, 16, 8, 1, -0.75f, 0.5f, 0, 0},
    {7, 17, 9, 1, 1.0f, 0.0f, 0, 0},
    {12, 32, 31, 1, 1.5f, 1.0f, 0, 0},
    {13, 33, 33, 1, 1.0f, 0.0f, 0, 0},
    {3, 4, 16, 1, 2.0f, -1.0f, 0, 0},
    {4, 5, 17, 2, 1.0f, 0.0f, 0, 0},
    {11, 3, 64, 3, 0.5f, 0.25f, 0, 0},
    {1, 47, 5, 1, 1.0f, 0.0f, 0, 0},
    {47, 1, 65, 1, 1.0f, 1.0f, 0, 0},
    {17, 31, 1, 2, 1.0f, 0.0f, 0, 0},
    {33, 7, 257, 1, -1.0f, 0.0f, 0, 0},
    {8, 20, 10, 3, 1.0f, 0.0f, 1, 0},   /* A shared by the batch (conv's weights) */
    {9, 18, 12, 3, 1.0f, 1.0f, 0, 1},   /* B shared */
    {7, 21, 33, 2, 0.75f, 0.0f, 1, 1},
};

static void test_edges_inplace(void **state)
{
    (void)state;
    run_cases("own-inplace", edge_cases, NELEMS(edge_cases), 11);
}

static void test_edges_packed(void **state)
{
    (void)state;
    run_cases("own-packed", edge_cases, NELEMS(edge_cases), 12);
}

static void test_edges_clblast(void **state)
{
    (void)state;
    run_cases("clblast", edge_cases, NELEMS(edge_cases), 13);
}

/* The MLP's and the CNN's shapes (batch 64 rows), in mode "own". */
static void test_model_shapes(void **state)
{
    (void)state;
    static const struct gemm_case cases[] = {
        {64, 256, 784, 1, 1.0f, 0.0f, 0, 0},
        {64, 10, 128, 1, 1.0f, 1.0f, 0, 0},
        {32, 196, 9, 4, 1.0f, 1.0f, 1, 0},   /* conv forward, weights shared */
        {24, 72, 49, 3, 1.0f, 0.0f, 0, 0},
    };
    run_cases("own", cases, NELEMS(cases), 14);
}

/* A product past the automatic packing threshold (2^28 multiply-adds),
 * with odd panels, in mode "own": NN and NT (B packed from its rows). */
static void test_large_auto(void **state)
{
    (void)state;
    const struct gemm_case c = {517, 523, 1000, 1, -0.5f, 2.0f, 0, 0};
    struct env e = env_open("own", 15);
    gemm_check(&e, &c, 0, 0);
    gemm_check(&e, &c, 0, 1);
    env_close(&e);
}

/* The same product twice gives the same bits: no atomics, a fixed order. */
static void test_deterministic(void **state)
{
    (void)state;
    const char *modes[] = {"own-inplace", "own-packed"};
    const struct gemm_case c = {37, 70, 301, 2, 1.0f, 0.0f, 0, 0};
    for (int i = 0; i < NELEMS(modes); ++i)
        for (int t = 0; t < 4; ++t) {
            int mark = th_arena_mark();
            struct env e1 = env_open(modes[i], 21), e2 = env_open(modes[i], 21);
            float *c1 = gemm_check(&e1, &c, t >> 1, t & 1);
            float *c2 = gemm_check(&e2, &c, t >> 1, t & 1);
            int64_t nc = 2 + c.batch * (c.m * (c.n + 2) + 5) + 1;
            assert_memory_equal(c1, c2, (size_t)nc * sizeof(float));
            env_close(&e1);
            env_close(&e2);
            th_arena_release(mark);
        }
}

/* Bad descriptors are errors, never crashes, on every path. */
static void test_bad_arguments(void **state)
{
    (void)state;
    const char *modes[] = {"own-inplace", "own-packed", "clblast"};
    for (int i = 0; i < NELEMS(modes); ++i) {
        struct env e = env_open(modes[i], 31);
        float h[64] = {0};
        cg_scope_begin(e.ctx);
        struct darr x = darr_new(&e, h, 64);
        struct cg_gemm_desc d = {.m = 4, .n = 4, .k = 4, .alpha = 1, .lda = 4, .ldb = 4,
                                 .ldc = 4, .batch = 1};
        assert_int_equal(e.be->gemm(e.bctx, &d, x.p, x.p, x.p), CG_OK);
        d.k = -1;
        assert_int_equal(e.be->gemm(e.bctx, &d, x.p, x.p, x.p), CG_STATUS_INVALID_ARGUMENT);
        d.k = 4;
        d.lda = 2;   /* pitch below the row length */
        assert_int_not_equal(e.be->gemm(e.bctx, &d, x.p, x.p, x.p), CG_OK);
        d.lda = 4;
        d.m = 40;    /* past the end of the buffer */
        assert_int_not_equal(e.be->gemm(e.bctx, &d, x.p, x.p, x.p), CG_OK);
        cg_scope_end(e.ctx);
        env_close(&e);
    }
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_edges_inplace, th_arena_setup, th_arena_teardown),
        cmocka_unit_test_setup_teardown(test_edges_packed, th_arena_setup, th_arena_teardown),
        cmocka_unit_test_setup_teardown(test_edges_clblast, th_arena_setup, th_arena_teardown),
        cmocka_unit_test_setup_teardown(test_model_shapes, th_arena_setup, th_arena_teardown),
        cmocka_unit_test_setup_teardown(test_large_auto, th_arena_setup, th_arena_teardown),
        cmocka_unit_test_setup_teardown(test_deterministic, th_arena_setup, th_arena_teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, th_arena_setup, th_arena_teardown),
    };
    return TH_RUN(tests);
}
