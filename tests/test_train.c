/*
 * tests/test_train.c — whole training loops on the backend under test:
 * learnability (XOR with BCE, linear regression), flat memory, no hidden
 * host round trips, and the same losses as the cpu backend.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

/* ---- XOR --------------------------------------------------------------------- */

/* A 2-8-1 tanh network learns XOR with BCE-with-logits and Adam. */
static void test_xor_bce(void **state)
{
    cg_ctx *ctx = *state;
    const float x[8] = {0, 0, 0, 1, 1, 0, 1, 1}, y[4] = {0, 1, 1, 0};
    cg_module *model = cg_sequential_module(ctx, 3, cg_linear_module(ctx, 2, 8, true), cg_tanh_module(ctx),
                                     cg_linear_module(ctx, 8, 1, true));
    assert_non_null(model);
    cg_optim *opt = cg_adam(model, 0.05f);
    assert_non_null(opt);
    float loss = NAN;
    for (int step = 0; step < 400; step++) {
        cg_scope_begin(ctx);
        cg_tensor *X = cg_tensor_from_host(ctx, CG_SHAPE(4, 2), x);
        cg_tensor *Y = cg_tensor_from_host(ctx, CG_SHAPE(4, 1), y);
        cg_tensor *L = cg_bce_with_logits_loss(cg_module_forward(model, X), Y, CG_REDUCTION_MEAN);
        cg_optim_zero_grad(opt);
        assert_int_equal(cg_backward(L), CG_OK);
        assert_int_equal(cg_optim_step(opt), CG_OK);
        if (step == 399) assert_int_equal(cg_tensor_item(L, &loss), CG_OK);
        cg_scope_end(ctx);
    }
    cg_scope_begin(ctx);
    cg_module_eval(model);
    bool prev = cg_set_grad_enabled(ctx, false);
    float logits[4];
    cg_tensor *out = cg_module_forward(model, cg_tensor_from_host(ctx, CG_SHAPE(4, 2), x));
    assert_false(cg_tensor_requires_grad(out));
    assert_int_equal(cg_tensor_to_host(out, logits, 4), CG_OK);
    cg_set_grad_enabled(ctx, prev);
    cg_scope_end(ctx);
    int correct = 0;
    for (int i = 0; i < 4; i++) correct += (logits[i] > 0) == (y[i] > 0.5f);
    if (correct != 4)
        fail_msg("XOR: %d of 4 correct (logits %g %g %g %g, final loss %g)", correct,
                 (double)logits[0], (double)logits[1], (double)logits[2], (double)logits[3],
                 (double)loss);
    assert_true(loss < 0.05f);
    cg_optim_free(opt);
    cg_module_free(model);
}

/* ---- linear regression ------------------------------------------------------- */

/* Linear(5, 1) with SGD recovers the weights of noise-free data to 1e-3. */
static void test_linear_regression(void **state)
{
    cg_ctx *ctx = *state;
    enum { N = 256, D = 5 };
    const double w[D] = {0.5, -1.25, 2.0, 0.75, -0.3}, b = 0.4;
    static float x[N * D], y[N];
    uint64_t s = 99;
    th_fill_uniform(&s, x, N * D, -1, 1);
    for (int i = 0; i < N; i++) {
        double v = b;
        for (int j = 0; j < D; j++) v += w[j] * x[i * D + j];
        y[i] = (float)v;
    }
    cg_module *lin = cg_linear_module(ctx, D, 1, true);
    struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_SGD);
    o.lr = 0.3f;
    o.momentum = 0.5f;
    cg_optim *opt = cg_optim_create(lin, &o);
    assert_non_null(opt);
    for (int step = 0; step < 400; step++) {
        cg_scope_begin(ctx);
        cg_tensor *X = cg_tensor_from_host(ctx, CG_SHAPE(N, D), x);
        cg_tensor *Y = cg_tensor_from_host(ctx, CG_SHAPE(N, 1), y);
        cg_tensor *L = cg_mse_loss(cg_module_forward(lin, X), Y, CG_REDUCTION_MEAN);
        cg_optim_zero_grad(opt);
        assert_int_equal(cg_backward(L), CG_OK);
        assert_int_equal(cg_optim_step(opt), CG_OK);
        cg_scope_end(ctx);
    }
    float gw[D], gb;
    assert_int_equal(cg_tensor_to_host(cg_module_parameter(lin, "weight"), gw, D), CG_OK);
    assert_int_equal(cg_tensor_to_host(cg_module_parameter(lin, "bias"), &gb, 1), CG_OK);
    th_assert_close(gw, w, D, 0, 1e-3, "regression weights");
    th_assert_close(&gb, &b, 1, 0, 1e-3, "regression bias");
    cg_optim_free(opt);
    cg_module_free(lin);
}

/* ---- the seed network, a small loop ------------------------------------------ */

struct seed_run {
    cg_module *model;
    cg_optim *opt;
    float xs[512 * 10], ys[512];
};

/* The seed network and a synthetic regression, all from ctx's RNG. */
static void seed_setup(cg_ctx *ctx, struct seed_run *r)
{
    r->model = cg_sequential_module(ctx, 5, cg_linear_module(ctx, 10, 64, true), cg_relu_module(ctx),
                             cg_linear_module(ctx, 64, 64, true), cg_relu_module(ctx),
                             cg_linear_module(ctx, 64, 1, true));
    assert_non_null(r->model);
    r->opt = cg_adam(r->model, 1e-3f);
    assert_non_null(r->opt);
    double w[10];
    for (int j = 0; j < 10; j++) w[j] = 2 * cg_rand_uniform(ctx) - 1;
    for (int i = 0; i < 512; i++) {
        double v = 0;
        for (int j = 0; j < 10; j++) {
            r->xs[i * 10 + j] = (float)cg_rand_normal(ctx);
            v += w[j] * r->xs[i * 10 + j];
        }
        r->ys[i] = (float)(v + 0.5 * sin(r->xs[i * 10]));
    }
}

static void seed_teardown(struct seed_run *r)
{
    cg_optim_free(r->opt);
    cg_module_free(r->model);
}

/* One step on batch k (32 rows, wrapping); returns the loss if read. */
static float seed_step(cg_ctx *ctx, struct seed_run *r, int k, bool read_loss)
{
    int row = (k * 32) % 512;
    float l = NAN;
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(32, 10), r->xs + row * 10);
    cg_tensor *y = cg_tensor_from_host(ctx, CG_SHAPE(32, 1), r->ys + row);
    cg_tensor *loss = cg_mse_loss(cg_module_forward(r->model, x), y, CG_REDUCTION_MEAN);
    cg_optim_zero_grad(r->opt);
    assert_int_equal(cg_backward(loss), CG_OK);
    assert_int_equal(cg_optim_step(r->opt), CG_OK);
    if (read_loss) assert_int_equal(cg_tensor_item(loss, &l), CG_OK);
    cg_scope_end(ctx);
    return l;
}

/* The pool's high-water mark and the memory in use between steps stop
 * growing after the first steps (all of a step's intermediates are freed by
 * its scope, the optimizer state exists after step 1). */
static void test_memory_flat(void **state)
{
    cg_ctx *ctx = *state;
    static struct seed_run r;
    seed_setup(ctx, &r);
    struct cg_backend_stats s0, s;
    for (int k = 0; k < 4; k++) seed_step(ctx, &r, k, k == 3);
    cg_ctx_stats(ctx, &s0);
    for (int k = 4; k < 60; k++) {
        seed_step(ctx, &r, k, k % 8 == 0);
        cg_ctx_stats(ctx, &s);
        if (s.bytes_in_use != s0.bytes_in_use || s.bytes_peak != s0.bytes_peak)
            fail_msg("step %d: in use %llu (was %llu), peak %llu (was %llu)", k,
                     (unsigned long long)s.bytes_in_use, (unsigned long long)s0.bytes_in_use,
                     (unsigned long long)s.bytes_peak, (unsigned long long)s0.bytes_peak);
    }
    /* a pooling backend also stops allocating (cpu has no pool: every
     * buffer is an allocation, and reserved == in use) */
    if (strcmp(th_backend(), "cpu") != 0) assert_int_equal(s.device_allocs, s0.device_allocs);
    assert_int_equal(s.bytes_reserved, s0.bytes_reserved);
    seed_teardown(&r);
}

/* One step moves only the batch to the device and the loss back: x and y
 * up, the loss value down; forward, backward and the update stay on the
 * device. */
static void test_step_transfers(void **state)
{
    cg_ctx *ctx = *state;
    static struct seed_run r;
    seed_setup(ctx, &r);
    for (int k = 0; k < 2; k++) seed_step(ctx, &r, k, false);
    assert_int_equal(cg_ctx_synchronize(ctx), CG_OK);
    cg_ctx_reset_stats(ctx);
    float l = seed_step(ctx, &r, 2, true);
    assert_true(isfinite(l));
    struct cg_backend_stats s;
    cg_ctx_stats(ctx, &s);
    if (s.uploads != 2 || s.downloads != 1)
        fail_msg("one training step: %llu uploads (%llu B), %llu downloads (%llu B); "
                 "want 2 (x, y) and 1 (the loss)",
                 (unsigned long long)s.uploads, (unsigned long long)s.upload_bytes,
                 (unsigned long long)s.downloads, (unsigned long long)s.download_bytes);
    assert_int_equal(s.upload_bytes, (32 * 10 + 32) * sizeof(float));
    assert_int_equal(s.download_bytes, sizeof(float));
    seed_teardown(&r);
}

/* The same for a classifier fed by a DataLoader: labels uploaded from the
 * host are range-checked from what the upload recorded, so cross-entropy's
 * class-index pick reads nothing back. Only the loader's two uploads and
 * the loss value move. */
static void test_classifier_step_transfers(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t n = 96, d = 12, classes = 5;
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_create(n, 1, &d, true, 0, (int)classes, &ds), CG_OK);
    for (int64_t i = 0; i < n * d; i++) ds->x[i] = (float)cg_rand_normal(ctx);
    for (int64_t i = 0; i < n; i++) ds->y[i] = (float)(i % classes);
    cg_loader *ld;
    struct cg_loader_options lo = {.batch_size = 32, .shuffle = true};
    assert_int_equal(cg_loader_create(ctx, ds, &lo, &ld), CG_OK);
    cg_module *model = cg_sequential_module(ctx, 3, cg_linear_module(ctx, d, 16, true), cg_relu_module(ctx),
                                     cg_linear_module(ctx, 16, classes, true));
    cg_optim *opt = cg_adam(model, 1e-2f);
    assert_non_null(opt);
    for (int k = 0; k < 3; k++) {
        cg_tensor *x, *y;
        assert_int_equal(cg_loader_next(ld, &x, &y), CG_OK);
        assert_non_null(x);
        if (k == 2) {
            assert_int_equal(cg_ctx_synchronize(ctx), CG_OK);
            cg_ctx_reset_stats(ctx);
            /* the loader uploaded before the reset: upload again inside */
            float hy[32], hx[32 * 12];
            assert_int_equal(cg_tensor_to_host(x, hx, 32 * 12), CG_OK);
            assert_int_equal(cg_tensor_to_host(y, hy, 32), CG_OK);
            cg_ctx_reset_stats(ctx);
            assert_int_equal(cg_tensor_set_data(x, hx, 32 * 12), CG_OK);
            assert_int_equal(cg_tensor_set_data(y, hy, 32), CG_OK);
        }
        cg_scope_begin(ctx);
        cg_tensor *loss = cg_cross_entropy_loss(cg_module_forward(model, x), y,
                                                CG_REDUCTION_MEAN, 0.0f);
        cg_optim_zero_grad(opt);
        assert_int_equal(cg_backward(loss), CG_OK);
        assert_int_equal(cg_optim_step(opt), CG_OK);
        float l;
        if (k == 2) {
            assert_int_equal(cg_tensor_item(loss, &l), CG_OK);
            assert_true(isfinite(l));
        }
        cg_scope_end(ctx);
    }
    struct cg_backend_stats s;
    cg_ctx_stats(ctx, &s);
    if (s.uploads != 2 || s.downloads != 1)
        fail_msg("one classifier step: %llu uploads, %llu downloads; want 2 (x, y) and 1",
                 (unsigned long long)s.uploads, (unsigned long long)s.downloads);
    /* A label tensor written on the device is still checked, by reading it. */
    cg_scope_begin(ctx);
    cg_tensor *bad = cg_tensor_full(ctx, CG_SHAPE(4), 7.0f);
    cg_tensor *logits = cg_tensor_zeros(ctx, CG_SHAPE(4, 5));
    cg_ctx_clear_error(ctx);
    assert_null(cg_cross_entropy_loss(logits, bad, CG_REDUCTION_MEAN, 0.0f));
    th_assert_error_contains(ctx, "not an integer in [0, 5)");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    cg_optim_free(opt);
    cg_module_free(model);
    cg_loader_free(ld);
    cg_dataset_free(ds);
}

/* The same seed gives the same losses here as on the cpu backend (1e-4
 * relative); on cpu itself, two runs agree exactly. */
static void test_same_losses_as_cpu(void **state)
{
    const int steps = 48;
    float here[48], ref[48];
    static struct seed_run r;
    cg_ctx *ctx = th_ctx_create(7);
    seed_setup(ctx, &r);
    for (int k = 0; k < steps; k++) here[k] = seed_step(ctx, &r, k, true);
    seed_teardown(&r);
    cg_ctx_free(ctx);

    cg_ctx *cpu;
    struct cg_ctx_options o = {.backend = "cpu", .device = NULL, .seed = 7};
    assert_int_equal(cg_ctx_create(&cpu, &o), CG_OK);
    seed_setup(cpu, &r);
    for (int k = 0; k < steps; k++) ref[k] = seed_step(cpu, &r, k, true);
    seed_teardown(&r);
    cg_ctx_free(cpu);

    assert_true(ref[steps - 1] < 0.5f * ref[0]);   /* it learns */
    if (strcmp(th_backend(), "cpu") == 0)
        assert_memory_equal(here, ref, sizeof here);
    else
        th_assert_close_f(here, ref, steps, 1e-4, 0, "losses vs cpu");
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_xor_bce, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_linear_regression, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_memory_flat, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_step_transfers, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_classifier_step_transfers, th_setup, th_teardown),
        cmocka_unit_test(test_same_losses_as_cpu),
    };
    return TH_RUN(tests);
}
