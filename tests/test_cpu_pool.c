/*
 * tests/test_cpu_pool.c — the cpu backend's buffer pool (backends/cpu/cpu.c)
 * keeps large buffers too: once a training or evaluation loop is warm, no
 * step allocates from the OS.
 *
 * A CNN step on a batch large enough that its activations and im2col
 * columns are tens of MiB each (before, buffers over 16 MiB went back to
 * glibc, which mmaps them: each step mapped, page-faulted and unmapped
 * them again). After two warm-up steps, three more steps must make no pool
 * miss (the backend's device_allocs, a count of real allocations) and
 * page-fault far fewer pages than one of the large buffers holds (getrusage
 * minor faults: a buffer of 25 MiB is 6400 pages; the bound is 1000, which
 * leaves room for the small faults of a process that is not idle and is
 * still below one large buffer's worth). Both for evaluation (forward
 * only, without autograd) and for training (forward, backward, SGD step).
 * Under AddressSanitizer or valgrind only the pool misses are counted:
 * their allocators keep freed host memory in quarantine and hand out fresh
 * pages for the frontend's small allocations (tens of thousands of faults
 * per step there, none of them the pool's).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "harness.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* Batch of 256 28x28 images: conv1's output (256, 32, 28, 28) is 25.7 MB,
 * conv2's im2col columns (256, 288, 196) 57.8 MB. */
#define BATCH 256
#define WARM_STEPS 2
#define COUNTED_STEPS 3
#define MAX_FAULTS 1000

static cg_module *make_cnn(cg_ctx *ctx)
{
    struct cg_conv2d_opts pad1 = {.padding = {1, 1}};
    return cg_sequential_module(ctx, 9, cg_conv2d_module(ctx, 1, 32, 3, 3, &pad1),
                         cg_relu_module(ctx), cg_max_pool2d_module(ctx, 2, 0, 0, 1),
                         cg_conv2d_module(ctx, 32, 64, 3, 3, &pad1), cg_relu_module(ctx),
                         cg_max_pool2d_module(ctx, 2, 0, 0, 1), cg_flatten_module(ctx),
                         cg_linear_module(ctx, 64 * 7 * 7, 10, true), cg_relu_module(ctx));
}

static long minor_faults(void)
{
    struct rusage ru;
    assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
    return ru.ru_minflt;
}

/* One step on fresh inputs: forward (and, when train, backward and an SGD
 * step) inside a scope, so every tensor of the step is freed at its end. */
static void step(cg_ctx *ctx, cg_module *net, cg_optim *opt, const float *xs,
                 const float *labels, bool train)
{
    cg_scope_begin(ctx);
    cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(BATCH, 1, 28, 28), xs);
    cg_tensor *y = cg_tensor_from_host(ctx, CG_SHAPE(BATCH), labels);
    cg_tensor *loss = cg_cross_entropy_loss(cg_module_forward(net, x), y, CG_REDUCTION_MEAN, 0.0f);
    if (train) {
        cg_optim_zero_grad(opt);
        cg_backward(loss);
        cg_optim_step(opt);
    }
    float l;
    if (cg_tensor_item(loss, &l) != CG_OK) fail_msg("step: %s", cg_last_error(ctx));
    cg_scope_end(ctx);
}

static void run_loop(void **state, bool train)
{
    cg_ctx *ctx = *state;
    float *xs = TH_TALLOC(float, BATCH * 28 * 28);
    float *labels = TH_TALLOC(float, BATCH);
    uint64_t seed = 0x5eed0001u + (train ? 1 : 0);
    th_fill_uniform(&seed, xs, BATCH * 28 * 28, 0.0f, 1.0f);
    for (int i = 0; i < BATCH; i++) labels[i] = (float)(th_rand_u64(&seed) % 10);

    cg_module *net = make_cnn(ctx);
    assert_non_null(net);
    cg_optim *opt = cg_sgd(net, 0.01f);
    assert_non_null(opt);
    if (train) cg_module_train(net);
    else cg_module_eval(net);
    bool was = cg_set_grad_enabled(ctx, train);

    for (int s = 0; s < WARM_STEPS; s++) step(ctx, net, opt, xs, labels, train);
    struct cg_backend_stats before, after;
    cg_ctx_stats(ctx, &before);
    long faults0 = minor_faults();
    for (int s = 0; s < COUNTED_STEPS; s++) step(ctx, net, opt, xs, labels, train);
    long faults = minor_faults() - faults0;
    cg_ctx_stats(ctx, &after);
    cg_set_grad_enabled(ctx, was);

    print_message("%s: %llu pool misses, %ld minor faults in %d warm steps "
                  "(peak %.1f MiB in use)\n",
                  train ? "train" : "eval",
                  (unsigned long long)(after.device_allocs - before.device_allocs), faults,
                  COUNTED_STEPS, (double)after.bytes_peak / (1 << 20));
    /* The large buffers really are large: the test must exercise them. */
    assert_true(after.bytes_peak > ((uint64_t)64 << 20));
    assert_int_equal(after.device_allocs - before.device_allocs, 0);
    if (!UNDER_ASAN && !RUNNING_ON_VALGRIND) assert_true(faults < MAX_FAULTS);
    cg_optim_free(opt);
    cg_module_free(net);
}

static void test_eval_warm_no_alloc(void **state)
{
    run_loop(state, false);
}

static void test_train_warm_no_alloc(void **state)
{
    run_loop(state, true);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eval_warm_no_alloc, th_arena_setup,
                                        th_arena_teardown),
        cmocka_unit_test_setup_teardown(test_train_warm_no_alloc, th_arena_setup,
                                        th_arena_teardown),
    };
    return TH_RUN(tests);
}
