/*
 * tests/test_tensor.c — tensors on the backend under test: creation, host
 * round trips (contiguous and strided), scalars and empty tensors, shape
 * errors, printing, scopes and ownership (device memory returns to the
 * pool), and the seeded RNG being the same on every context.
 */
#include "harness.h"

#include <string.h>

static void test_roundtrip_sizes(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t sizes[] = {1, 7, 33, 257, 4099};
    uint64_t s = 11;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int64_t n = sizes[k];
        float *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
        th_fill_uniform(&s, x, n, -3, 3);
        cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(n), x);
        assert_non_null(t);
        assert_int_equal(cg_tensor_numel(t), n);
        assert_int_equal(cg_tensor_to_host(t, y, n), CG_OK);
        assert_memory_equal(x, y, (size_t)n * sizeof *x);
        cg_tensor_free(t);
        free(x);
        free(y);
    }
}

static void test_full_zeros_scalar_empty(void **state)
{
    cg_ctx *ctx = *state;
    cg_tensor *z = cg_tensor_zeros(ctx, CG_SHAPE(3, 5));
    cg_tensor *f = cg_tensor_full(ctx, CG_SHAPE(2, 2, 2), 2.5f);
    cg_tensor *sc = cg_tensor_full(ctx, 0, NULL, -1.25f);
    cg_tensor *e = cg_tensor_zeros(ctx, CG_SHAPE(4, 0, 3));
    assert_non_null(z);
    assert_non_null(f);
    assert_non_null(sc);
    assert_non_null(e);
    float buf[15];
    assert_int_equal(cg_tensor_to_host(z, buf, 15), CG_OK);
    for (int i = 0; i < 15; i++) assert_true(buf[i] == 0.0f);
    assert_int_equal(cg_tensor_to_host(f, buf, 8), CG_OK);
    for (int i = 0; i < 8; i++) assert_true(buf[i] == 2.5f);
    float v = 0;
    assert_int_equal(cg_tensor_item(sc, &v), CG_OK);
    assert_true(v == -1.25f);
    assert_int_equal(cg_tensor_ndim(sc), 0);
    assert_int_equal(cg_tensor_numel(e), 0);
    assert_int_equal(cg_tensor_to_host(e, NULL, 0), CG_OK);
    assert_int_equal(cg_tensor_dim(e, -1), 3);
    cg_tensor_free(z);
    cg_tensor_free(f);
    cg_tensor_free(sc);
    cg_tensor_free(e);
}

static void test_shape_errors(void **state)
{
    cg_ctx *ctx = *state;
    cg_ctx_clear_error(ctx);
    assert_null(cg_tensor_zeros(ctx, CG_SHAPE(2, -3)));
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "dim 1 is negative");
    cg_ctx_clear_error(ctx);
    assert_null(cg_tensor_zeros(ctx, CG_SHAPE(1, 1, 1, 1, 1, 1, 1)));
    th_assert_error_contains(ctx, "7 dims (at most 6)");
    cg_ctx_clear_error(ctx);

    cg_tensor *t = cg_tensor_zeros(ctx, CG_SHAPE(2, 3));
    float buf[6];
    assert_int_equal(cg_tensor_to_host(t, buf, 5), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "5 values for a (2, 3) tensor (6 elements)");
    float v;
    assert_int_equal(cg_tensor_item(t, &v), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "(2, 3) has 6 elements, not 1");
    /* The first failure stays until cleared. */
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_SHAPE_MISMATCH);
    cg_ctx_clear_error(ctx);
    assert_int_equal(cg_ctx_status(ctx), CG_OK);
    cg_tensor_free(t);
}

/* A transposed view (cg_transpose, ops.h) read back and written through. */
static void test_strided_roundtrip(void **state)
{
    cg_ctx *ctx = *state;
    float x[12];
    for (int i = 0; i < 12; i++) x[i] = (float)i + 0.5f;
    cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(3, 4), x);
    cg_tensor *tt = cg_transpose(t, 0, 1);
    assert_non_null(tt);
    assert_false(cg_tensor_is_contiguous(tt));
    float y[12];
    assert_int_equal(cg_tensor_to_host(tt, y, 12), CG_OK);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) assert_true(y[i * 3 + j] == x[j * 4 + i]);
    /* Writing through the view lands transposed in the base. */
    float w[12];
    for (int i = 0; i < 12; i++) w[i] = (float)(100 + i);
    assert_int_equal(cg_tensor_set_data(tt, w, 12), CG_OK);
    assert_int_equal(cg_tensor_to_host(t, y, 12), CG_OK);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) assert_true(y[j * 4 + i] == w[i * 3 + j]);
    /* Freeing the base first is safe: the view keeps the buffer. */
    cg_tensor_free(t);
    assert_int_equal(cg_tensor_to_host(tt, y, 12), CG_OK);
    assert_true(y[0] == 100.0f);
    cg_tensor_free(tt);
}

static void test_scope_releases_memory(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_backend_stats s0, s1, s2;
    cg_ctx_stats(ctx, &s0);
    cg_tensor *kept = NULL;
    cg_scope_begin(ctx);
    for (int i = 0; i < 50; i++) assert_non_null(cg_tensor_zeros(ctx, CG_SHAPE(64, 65)));
    kept = cg_tensor_keep(cg_tensor_full(ctx, CG_SHAPE(10), 3.0f));
    cg_ctx_stats(ctx, &s1);
    assert_true(s1.bytes_in_use >= s0.bytes_in_use + 50 * 64 * 65 * 4);
    cg_scope_end(ctx);
    cg_ctx_stats(ctx, &s2);
    assert_true(s2.bytes_in_use <= s0.bytes_in_use + 64 * 4); /* only `kept` is left */
    float v[10];
    assert_int_equal(cg_tensor_to_host(kept, v, 10), CG_OK);
    assert_true(v[9] == 3.0f);
    cg_tensor_free(kept);
    /* Unbalanced scope_end is an error, not a crash. */
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    assert_int_equal(cg_ctx_status(ctx), CG_STATUS_INVALID_ARGUMENT);
    cg_ctx_clear_error(ctx);
}

static void test_print_and_describe(void **state)
{
    cg_ctx *ctx = *state;
    float x[6] = {1, 2, 3, 4, 5, 6.5f};
    cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(2, 3), x);
    char d[64];
    assert_string_equal(cg_tensor_describe(t, d, sizeof d), "(2, 3) f32");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    assert_int_equal(cg_tensor_print(t, f), CG_OK);
    fclose(f);
    assert_non_null(strstr(out, "[[1, 2, 3],"));
    assert_non_null(strstr(out, "[4, 5, 6.5]]"));
    assert_non_null(strstr(out, "shape=(2, 3)"));
    free(out);
    cg_tensor_free(t);

    cg_tensor *big = cg_tensor_zeros(ctx, CG_SHAPE(100, 100));
    f = open_memstream(&out, &len);
    assert_int_equal(cg_tensor_print(big, f), CG_OK);
    fclose(f);
    assert_non_null(strstr(out, "..."));
    assert_true(len < 2000);
    free(out);
    cg_tensor_free(big);
}

static void test_rng_same_on_every_context(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_ctx_options o = {.backend = "cpu", .seed = 77};
    cg_ctx *cpu;
    assert_int_equal(cg_ctx_create(&cpu, &o), CG_OK);
    cg_seed(ctx, 77);
    cg_tensor *a = cg_tensor_uniform(ctx, CG_SHAPE(1000), -1, 1);
    cg_tensor *b = cg_tensor_uniform(cpu, CG_SHAPE(1000), -1, 1);
    float va[1000], vb[1000];
    assert_int_equal(cg_tensor_to_host(a, va, 1000), CG_OK);
    assert_int_equal(cg_tensor_to_host(b, vb, 1000), CG_OK);
    assert_memory_equal(va, vb, sizeof va);
    double mean = 0;
    for (int i = 0; i < 1000; i++) {
        assert_true(va[i] >= -1 && va[i] < 1);
        mean += va[i] / 1000;
    }
    assert_true(mean > -0.1 && mean < 0.1);
    cg_tensor *n = cg_tensor_normal(ctx, CG_SHAPE(4000), 2, 3);
    float vn[4000];
    assert_int_equal(cg_tensor_to_host(n, vn, 4000), CG_OK);
    double m = 0, v = 0;
    for (int i = 0; i < 4000; i++) m += vn[i] / 4000;
    for (int i = 0; i < 4000; i++) v += (vn[i] - m) * (vn[i] - m) / 3999;
    assert_true(m > 1.8 && m < 2.2);
    assert_true(v > 8.0 && v < 10.0);
    /* State save/restore replays the stream. */
    uint64_t st[4];
    cg_rand_state(ctx, st);
    uint64_t r1 = cg_rand_u64(ctx);
    cg_rand_set_state(ctx, st);
    assert_true(cg_rand_u64(ctx) == r1);
    cg_tensor_free(a);
    cg_tensor_free(b);
    cg_tensor_free(n);
    cg_ctx_free(cpu);
}

static void test_ctx_free_releases_kept(void **state)
{
    (void)state;
    cg_ctx *c = th_ctx_create(5);
    /* Tensors left alive, scoped and persistent, are freed by cg_ctx_free
     * (the sanitizer build would report a leak otherwise). */
    assert_non_null(cg_tensor_zeros(c, CG_SHAPE(8)));
    cg_scope_begin(c);
    assert_non_null(cg_tensor_zeros(c, CG_SHAPE(8)));
    cg_ctx_free(c);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip_sizes, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_full_zeros_scalar_empty, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_shape_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_strided_roundtrip, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_scope_releases_memory, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_print_and_describe, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_rng_same_on_every_context, th_setup, th_teardown),
        cmocka_unit_test(test_ctx_free_releases_kept),
    };
    return TH_RUN(tests);
}
