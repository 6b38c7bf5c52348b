/*
 * tests/test_schedule.c — learning-rate schedules (optim.h) against the
 * rates PyTorch's schedulers set. The reference values were printed by
 * Debian's python3-torch 1.13 with
 *
 *     p = torch.nn.Parameter(torch.zeros(1))
 *     opt = torch.optim.SGD([p], lr=0.1); s = Scheduler(opt, ...)
 *     for _ in range(n): lrs.append(opt.param_groups[0]["lr"]); opt.step(); s.step()
 *
 * (float64 Python floats, so they are compared to 1e-12 relative.)
 */
#include "harness.h"

#include <math.h>

static void expect(const struct cg_lr_schedule *s, const double *want, int n)
{
    for (int t = 0; t < n; t++) {
        double lr = -1;
        assert_int_equal(cg_lr_schedule_at(s, 0.1, t, &lr), CG_OK);
        if (fabs(lr - want[t]) > 1e-12 * fmax(1.0, fabs(want[t]))) {
            print_error("t=%d: lr %.17g, PyTorch %.17g\n", t, lr, want[t]);
            fail();
        }
    }
}

/* StepLR(opt, step_size=3, gamma=0.5) */
static void test_step(void **state)
{
    (void)state;
    static const double want[] = {0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125};
    struct cg_lr_schedule s = cg_lr_step(3, 0.5);
    expect(&s, want, 10);
}

/* CosineAnnealingLR(opt, T_max=5, eta_min=0.01), past T_max (it rises again) */
static void test_cosine(void **state)
{
    (void)state;
    static const double want[] = {
        0.1, 0.09140576474687263, 0.06890576474687263, 0.04109423525312736,
        0.018594235253127367, 0.01, 0.018594235253127367, 0.04109423525312739,
        0.06890576474687267, 0.09140576474687269, 0.10000000000000006, 0.09140576474687272,
        0.06890576474687268};
    struct cg_lr_schedule s = cg_lr_cosine(5, 0.01);
    expect(&s, want, 13);
}

/* LinearLR(opt, start_factor=0.25, end_factor=1.0, total_iters=4) and
 * LinearLR(opt, start_factor=1.0, end_factor=0.5, total_iters=3) */
static void test_linear(void **state)
{
    (void)state;
    static const double up[] = {0.025, 0.043750000000000004, 0.06250000000000001,
                                0.08125000000000002, 0.10000000000000002, 0.10000000000000002,
                                0.10000000000000002};
    static const double down[] = {0.1, 0.08333333333333334, 0.06666666666666668,
                                  0.05000000000000001, 0.05000000000000001};
    struct cg_lr_schedule s = cg_lr_linear(0.25, 1.0, 4);
    expect(&s, up, 7);
    s = cg_lr_linear(1.0, 0.5, 3);
    expect(&s, down, 5);
}

/* ChainedScheduler([LinearLR(opt, start_factor=0.25, total_iters=3),
 *                   CosineAnnealingLR(opt, T_max=8)]): the cosine's rate is
 * the warm-up's base. */
static void test_chained_warmup_cosine(void **state)
{
    (void)state;
    static const double want[] = {
        0.025, 0.04809698831278217, 0.06401650429449553, 0.06913417161825448,
        0.04999999999999999, 0.030865828381745508, 0.014644660940672623,
        0.0038060233744356626, 0.0, 0.0038060233744356634};
    struct cg_lr_schedule cos = cg_lr_cosine(8, 0.0), warm = cg_lr_linear(0.25, 1.0, 3);
    for (int t = 0; t < 10; t++) {
        double base, lr;
        assert_int_equal(cg_lr_schedule_at(&cos, 0.1, t, &base), CG_OK);
        assert_int_equal(cg_lr_schedule_at(&warm, base, t, &lr), CG_OK);
        assert_true(fabs(lr - want[t]) <= 1e-12);
    }
}

/* cg_lr_warmup(n): (t + 1) / n of the rate for t < n, then all of it. */
static void test_warmup(void **state)
{
    (void)state;
    struct cg_lr_schedule w = cg_lr_warmup(4);
    const double want[] = {0.25, 0.5, 0.75, 1, 1, 1};
    for (int t = 0; t < 6; t++) {
        double lr;
        assert_int_equal(cg_lr_schedule_at(&w, 2.0, t, &lr), CG_OK);
        assert_true(fabs(lr - 2.0 * want[t]) <= 1e-12);
    }
    for (int n = 0; n <= 1; n++) {
        double lr;
        w = cg_lr_warmup(n);
        assert_int_equal(cg_lr_schedule_at(&w, 2.0, 0, &lr), CG_OK);
        assert_true(lr == 2.0);
    }
}

static void bad(struct cg_lr_schedule s, double base, int64_t t, const char *needle)
{
    double lr = 42;
    assert_int_equal(cg_lr_schedule_at(&s, base, t, &lr), CG_STATUS_INVALID_ARGUMENT);
    assert_true(lr == 42);
    th_assert_error_contains(NULL, needle);
}

static void test_invalid(void **state)
{
    (void)state;
    bad(cg_lr_step(0, 0.1), 0.1, 0, "step_size must be >= 1");
    bad(cg_lr_step(2, -1), 0.1, 0, "gamma");
    bad(cg_lr_step(2, NAN), 0.1, 0, "gamma");
    bad(cg_lr_cosine(0, 0), 0.1, 0, "t_max must be >= 1");
    bad(cg_lr_cosine(5, -0.5), 0.1, 0, "eta_min");
    bad(cg_lr_linear(0, 1, 3), 0.1, 0, "start_factor");
    bad(cg_lr_linear(0.5, 1.5, 3), 0.1, 0, "end_factor");
    bad(cg_lr_linear(0.5, 1, -1), 0.1, 0, "total_iters");
    bad(cg_lr_constant(), -1, 0, "base_lr");
    bad(cg_lr_constant(), INFINITY, 0, "base_lr");
    bad(cg_lr_constant(), 0.1, -1, "the step t");
    struct cg_lr_schedule s = {.kind = (enum cg_lr_kind)99};
    bad(s, 0.1, 0, "unknown kind 99");
    double lr;
    assert_int_equal(cg_lr_schedule_at(NULL, 0.1, 0, &lr), CG_STATUS_INVALID_ARGUMENT);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_cosine),
        cmocka_unit_test(test_linear),
        cmocka_unit_test(test_chained_warmup_cosine),
        cmocka_unit_test(test_warmup),
        cmocka_unit_test(test_invalid),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("schedule", tests, NULL, NULL);
}
