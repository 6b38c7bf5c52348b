/*
 * tests/test_cpu_threads.c — the cpu backend's thread pool
 * (backends/cpu/cpu_threads.c): elementwise ops and reductions on tensors
 * large enough to be split across threads give bit-identical results for
 * CLGRAD_CPU_THREADS = 1, 2 and 3, handed over to the workers or with every
 * part run by the caller (CLGRAD_CPU_HANDOFF=always / never: the pool's
 * late-worker guard switches between the two at run time), and match
 * float64 references.
 *
 * Covered: contiguous, broadcast and transposed (strided) elementwise views,
 * reductions over the inner axis (inner > 1, column blocks), over rows
 * (inner == 1) and over everything (the split sum), max and argmax.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define R 301
#define C 701   /* R * C = 211001 elements: above the 64k split threshold */

enum { OUT_RELU, OUT_MUL_T, OUT_SUM0, OUT_SUM1, OUT_SUM_ALL, OUT_MAX0, OUT_ARGMAX1, OUT_COUNT };
static const int64_t out_len[OUT_COUNT] = {R * C, R * C, C, R, 1, C, R};

/* Runs every op with `threads` threads and CLGRAD_CPU_HANDOFF=handoff;
 * out[k] receives result k. */
static void run_ops(int threads, const char *handoff, const float *hx, const float *hz,
                    const float *hb, float *out[OUT_COUNT])
{
    char v[16];
    snprintf(v, sizeof v, "%d", threads);
    setenv("CLGRAD_CPU_THREADS", v, 1);
    setenv("CLGRAD_CPU_HANDOFF", handoff, 1);
    cg_ctx *ctx = NULL;
    struct cg_ctx_options o = {.backend = "cpu", .seed = 1};
    assert_int_equal(cg_ctx_create(&ctx, &o), CG_OK);
    cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(R, C), hx);
    cg_tensor *z = cg_tensor_from_host(ctx, CG_SHAPE(R, C), hz);
    cg_tensor *b = cg_tensor_from_host(ctx, CG_SHAPE(1, C), hb);
    assert_non_null(b);
    cg_tensor *res[OUT_COUNT] = {
        cg_relu(cg_add(x, b)),
        cg_mul(cg_transpose(x, 0, 1), cg_transpose(z, 0, 1)),
        cg_sum(x, 0, false),
        cg_sum(x, 1, false),
        cg_sum_all(x),
        cg_max(z, 0, false),
        cg_argmax(z, 1, false),
    };
    for (int k = 0; k < OUT_COUNT; k++) {
        assert_non_null(res[k]);
        assert_int_equal(cg_tensor_to_host(res[k], out[k], out_len[k]), CG_OK);
    }
    cg_ctx_free(ctx);
    unsetenv("CLGRAD_CPU_THREADS");
    unsetenv("CLGRAD_CPU_HANDOFF");
}

static void test_threads_deterministic(void **state)
{
    (void)state;
    uint64_t rng = 77;
    float *hx = malloc(sizeof(float) * R * C), *hz = malloc(sizeof(float) * R * C);
    float hb[C];
    th_fill_uniform(&rng, hx, R * C, -2.0f, 2.0f);
    th_fill_uniform(&rng, hz, R * C, -2.0f, 2.0f);
    th_fill_uniform(&rng, hb, C, -1.0f, 1.0f);
    /* runs: 1, 2, 3 threads handed over; 2, 3 threads all on the caller */
    enum { RUNS = 5 };
    static const int threads[RUNS] = {1, 2, 3, 2, 3};
    static const char *const handoff[RUNS] = {"always", "always", "always", "never", "never"};
    float *got[RUNS][OUT_COUNT];
    for (int t = 0; t < RUNS; t++) {
        for (int k = 0; k < OUT_COUNT; k++) got[t][k] = malloc(sizeof(float) * out_len[k]);
        run_ops(threads[t], handoff[t], hx, hz, hb, got[t]);
    }
    for (int t = 1; t < RUNS; t++)
        for (int k = 0; k < OUT_COUNT; k++)
            if (memcmp(got[0][k], got[t][k], sizeof(float) * out_len[k]) != 0)
                fail_msg("result %d differs between 1 and %d threads (hand-over %s)", k,
                         threads[t], handoff[t]);

    /* float64 references */
    double *want = malloc(sizeof(double) * R * C);
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            double s = (double)hx[i * C + j] + hb[j];
            want[i * C + j] = s < 0 ? 0.0 : s;
        }
    th_assert_close(got[0][OUT_RELU], want, R * C, 1e-6, 1e-7, "relu(x + b)");
    for (int64_t j = 0; j < C; j++)
        for (int64_t i = 0; i < R; i++)
            want[j * R + i] = (double)hx[i * C + j] * hz[i * C + j];
    th_assert_close(got[0][OUT_MUL_T], want, R * C, 1e-6, 1e-7, "x^T * z^T");
    double all = 0.0;
    for (int64_t j = 0; j < C; j++) want[j] = 0.0;
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) want[j] += hx[i * C + j], all += hx[i * C + j];
    th_assert_close(got[0][OUT_SUM0], want, C, 1e-5, 1e-5, "sum over rows");
    th_assert_close(got[0][OUT_SUM_ALL], &all, 1, 1e-5, 1e-4, "sum of all");
    for (int64_t i = 0; i < R; i++) {
        want[i] = 0.0;
        for (int64_t j = 0; j < C; j++) want[i] += hx[i * C + j];
    }
    th_assert_close(got[0][OUT_SUM1], want, R, 1e-5, 1e-5, "sum over columns");
    for (int64_t j = 0; j < C; j++) {
        want[j] = -INFINITY;
        for (int64_t i = 0; i < R; i++)
            if (hz[i * C + j] > want[j]) want[j] = hz[i * C + j];
    }
    th_assert_close(got[0][OUT_MAX0], want, C, 0, 1e-30, "max over rows");
    for (int64_t i = 0; i < R; i++) {
        int64_t arg = 0;
        for (int64_t j = 1; j < C; j++)
            if (hz[i * C + j] > hz[i * C + arg]) arg = j;
        want[i] = (double)arg;
    }
    th_assert_close(got[0][OUT_ARGMAX1], want, R, 0, 1e-30, "argmax over columns");

    free(want);
    for (int t = 0; t < RUNS; t++)
        for (int k = 0; k < OUT_COUNT; k++) free(got[t][k]);
    free(hx);
    free(hz);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_deterministic),
    };
    return TH_RUN(tests);
}
