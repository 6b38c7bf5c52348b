/*
 * tests/test_optim.c — SGD, Adam, AdamW and RMSProp trajectories on the
 * backend under test against an independent float64 host implementation
 * of the torch.optim docs' "algorithm" boxes.
 *
 * The gradient of loss = sum(P1 * G1) + sum(P2 * G2) is exactly G (random,
 * new every step), so the device and the reference see the same gradients.
 * P2 misses one step (no gradient: skipped, its step count lags, as
 * PyTorch's per-parameter state['step']) and P3 never gets a gradient.
 */
#include <math.h>
#include <string.h>

#include "harness.h"

#define N1 21   /* P1: (7, 3) */
#define N2 5    /* P2: (5)    */
#define STEPS 6
#define SKIP_STEP 2   /* P2 has no gradient on this step */

/* ---- the float64 reference ------------------------------------------------- */

struct ref_param {
    int64_t n, step;
    double p[N1], s0[N1], s1[N1], s2[N1];   /* s*: state buffers */
};

/* One update; torch.optim docs, "algorithm" (maximize off, amsgrad off). */
static void ref_update(const struct cg_optim_options *o, struct ref_param *r, const float *grad)
{
    int64_t t = ++r->step;
    double lr = o->lr, wd = o->weight_decay;
    for (int64_t i = 0; i < r->n; i++) {
        double g = grad[i], *p = &r->p[i];
        switch (o->kind) {
        case CG_OPTIM_SGD: {
            double mu = o->momentum;
            if (wd != 0) g += wd * *p;
            if (mu != 0) {
                r->s0[i] = t > 1 ? mu * r->s0[i] + (1 - o->dampening) * g : g;
                g = o->nesterov ? g + mu * r->s0[i] : r->s0[i];
            }
            *p -= lr * g;
            break;
        }
        case CG_OPTIM_ADAM: {
            double b1 = o->beta1, b2 = o->beta2;
            if (o->decoupled_weight_decay) *p -= lr * wd * *p;   /* AdamW */
            else if (wd != 0) g += wd * *p;
            r->s0[i] = b1 * r->s0[i] + (1 - b1) * g;
            r->s1[i] = b2 * r->s1[i] + (1 - b2) * g * g;
            double mhat = r->s0[i] / (1 - pow(b1, (double)t));
            double vhat = r->s1[i] / (1 - pow(b2, (double)t));
            *p -= lr * mhat / (sqrt(vhat) + o->eps);
            break;
        }
        case CG_OPTIM_RMSPROP: {
            double a = o->alpha, mu = o->momentum;
            if (wd != 0) g += wd * *p;
            r->s0[i] = a * r->s0[i] + (1 - a) * g * g;
            double vt = r->s0[i];
            if (o->centered) {
                r->s2[i] = a * r->s2[i] + (1 - a) * g;
                vt -= r->s2[i] * r->s2[i];
            }
            double d = sqrt(vt) + o->eps;
            if (mu > 0) {
                r->s1[i] = mu * r->s1[i] + g / d;
                *p -= lr * r->s1[i];
            } else {
                *p -= lr * g / d;
            }
            break;
        }
        }
    }
}

/* ---- helpers ------------------------------------------------------------------ */

static cg_tensor *param(cg_ctx *ctx, int nd, const int64_t *shape, const float *v)
{
    cg_tensor *t = cg_tensor_from_host(ctx, nd, shape, v);   /* no scope: persistent */
    assert_non_null(t);
    assert_int_equal(cg_tensor_set_requires_grad(t, true), CG_OK);
    return t;
}

static void assert_tensor_close(const cg_tensor *t, const double *want, int64_t n,
                                const char *what, int step)
{
    float got[N1];
    char msg[160];
    assert_non_null(t);
    assert_int_equal(cg_tensor_to_host(t, got, n), CG_OK);
    snprintf(msg, sizeof msg, "%s after step %d", what, step);
    th_assert_close(got, want, n, 2e-5, 2e-6, msg);
}

/* One training step with gradients G1 (and G2 unless skip2). */
static void device_step(cg_ctx *ctx, cg_optim *opt, cg_tensor *P1, cg_tensor *P2,
                        const float *g1, const float *g2, bool skip2)
{
    cg_scope_begin(ctx);
    cg_tensor *loss = cg_sum_all(cg_mul(P1, cg_tensor_from_host(ctx, CG_SHAPE(7, 3), g1)));
    if (!skip2)
        loss = cg_add(loss, cg_sum_all(cg_mul(P2, cg_tensor_from_host(ctx, CG_SHAPE(N2), g2))));
    cg_optim_zero_grad(opt);
    assert_null(cg_tensor_grad(P1));
    assert_int_equal(cg_backward(loss), CG_OK);
    assert_int_equal(cg_optim_step(opt), CG_OK);
    cg_scope_end(ctx);
}

/* Runs STEPS steps with options o (all three params in one group, or P2 in
 * a second group with o2) and checks params and state after each. */
static void check_trajectory(cg_ctx *ctx, const struct cg_optim_options *o,
                             const struct cg_optim_options *o2, const char *name)
{
    uint64_t s = 1000 + (uint64_t)o->kind * 17 + (uint64_t)(o->momentum * 100) +
                 (uint64_t)o->centered * 3 + (uint64_t)o->nesterov * 5;
    float p1[N1], p2[N2], p3[3] = {0.5f, -0.25f, 2};
    th_fill_uniform(&s, p1, N1, -1, 1);
    th_fill_uniform(&s, p2, N2, -1, 1);
    cg_tensor *P1 = param(ctx, CG_SHAPE(7, 3), p1), *P2 = param(ctx, CG_SHAPE(N2), p2),
              *P3 = param(ctx, CG_SHAPE(3), p3);
    struct ref_param r1 = {.n = N1}, r2 = {.n = N2};
    for (int i = 0; i < N1; i++) r1.p[i] = p1[i];
    for (int i = 0; i < N2; i++) r2.p[i] = p2[i];

    cg_optim *opt;
    if (o2) {
        cg_tensor *g1[2] = {P1, P3};
        opt = cg_optim_create_params(ctx, g1, 2, o);
        assert_non_null(opt);
        assert_int_equal(cg_optim_add_group(opt, &P2, 1, o2), CG_OK);
        assert_int_equal(cg_optim_num_groups(opt), 2);
    } else {
        cg_tensor *all[3] = {P1, P2, P3};
        opt = cg_optim_create_params(ctx, all, 3, o);
    }
    assert_non_null(opt);
    assert_null(cg_optim_param_state(opt, P1, 0));   /* lazily created */

    for (int step = 0; step < STEPS; step++) {
        float g1[N1], g2[N2];
        th_fill_uniform(&s, g1, N1, -2, 2);
        th_fill_uniform(&s, g2, N2, -2, 2);
        bool skip2 = step == SKIP_STEP;
        device_step(ctx, opt, P1, P2, g1, g2, skip2);
        ref_update(o, &r1, g1);
        if (!skip2) ref_update(o2 ? o2 : o, &r2, g2);

        char what[96];
        snprintf(what, sizeof what, "%s P1", name);
        assert_tensor_close(P1, r1.p, N1, what, step);
        snprintf(what, sizeof what, "%s P2", name);
        assert_tensor_close(P2, r2.p, N2, what, step);
        /* the first moment / momentum / square average buffer */
        const struct cg_optim_options *oo = o2 ? o2 : o;
        if (oo->kind != CG_OPTIM_SGD || oo->momentum != 0) {
            snprintf(what, sizeof what, "%s P2 state 0", name);
            assert_tensor_close(cg_optim_param_state(opt, P2, 0), r2.s0, N2, what, step);
        }
    }
    assert_int_equal(cg_optim_param_steps(opt, P1), STEPS);
    assert_int_equal(cg_optim_param_steps(opt, P2), STEPS - 1);
    /* P3 never had a gradient: untouched, no state (torch: p.grad is None) */
    assert_int_equal(cg_optim_param_steps(opt, P3), 0);
    assert_null(cg_optim_param_state(opt, P3, 0));
    float p3now[3];
    assert_int_equal(cg_tensor_to_host(P3, p3now, 3), CG_OK);
    assert_memory_equal(p3now, p3, sizeof p3);

    cg_optim_free(opt);
    cg_tensor_free(P1);
    cg_tensor_free(P2);
    cg_tensor_free(P3);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_SGD);
    assert_true(o.kind == CG_OPTIM_SGD && o.lr == 1e-3f && o.momentum == 0 &&
                o.dampening == 0 && !o.nesterov && o.weight_decay == 0);
    o = cg_optim_defaults(CG_OPTIM_ADAM);
    assert_true(o.kind == CG_OPTIM_ADAM && o.lr == 1e-3f && o.beta1 == 0.9f &&
                o.beta2 == 0.999f && o.eps == 1e-8f && o.weight_decay == 0 &&
                !o.decoupled_weight_decay);
    o = cg_optim_defaults(CG_OPTIM_RMSPROP);
    assert_true(o.kind == CG_OPTIM_RMSPROP && o.lr == 1e-2f && o.alpha == 0.99f &&
                o.eps == 1e-8f && o.momentum == 0 && !o.centered && o.weight_decay == 0);
}

static void test_sgd(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_SGD);
    o.lr = 0.1f;
    check_trajectory(ctx, &o, NULL, "SGD");
    o.weight_decay = 0.05f;
    check_trajectory(ctx, &o, NULL, "SGD wd");
    o.momentum = 0.9f;
    o.dampening = 0.3f;   /* step 1 ignores dampening (buffer = grad) */
    check_trajectory(ctx, &o, NULL, "SGD momentum dampening");
    o.dampening = 0;
    o.nesterov = true;
    check_trajectory(ctx, &o, NULL, "SGD nesterov");
}

static void test_adam(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_ADAM);
    o.lr = 0.01f;
    check_trajectory(ctx, &o, NULL, "Adam");
    o.beta1 = 0.8f;
    o.beta2 = 0.95f;
    o.eps = 1e-3f;
    o.weight_decay = 0.1f;
    check_trajectory(ctx, &o, NULL, "Adam betas eps wd");
    o = cg_optim_defaults(CG_OPTIM_ADAM);
    o.lr = 0.01f;
    o.weight_decay = 0.5f;
    o.decoupled_weight_decay = true;
    check_trajectory(ctx, &o, NULL, "AdamW");
}

static void test_rmsprop(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_RMSPROP);
    check_trajectory(ctx, &o, NULL, "RMSprop");
    o.alpha = 0.9f;
    o.momentum = 0.5f;
    check_trajectory(ctx, &o, NULL, "RMSprop momentum");
    o.centered = true;
    o.weight_decay = 0.1f;
    o.eps = 1e-4f;
    check_trajectory(ctx, &o, NULL, "RMSprop centered momentum wd");
    o.momentum = 0;
    check_trajectory(ctx, &o, NULL, "RMSprop centered");
}

static void test_param_groups(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_optim_options a = cg_optim_defaults(CG_OPTIM_SGD), b = a;
    a.lr = 0.1f;
    b.lr = 0.02f;
    b.momentum = 0.7f;
    check_trajectory(ctx, &a, &b, "SGD groups");
    struct cg_optim_options c = cg_optim_defaults(CG_OPTIM_ADAM), d = c;
    d.lr = 0.05f;
    d.weight_decay = 0.1f;
    d.decoupled_weight_decay = true;
    check_trajectory(ctx, &c, &d, "Adam/AdamW groups");
}

/* One fused backend call per parameter with a gradient, and no transfer. */
static void test_one_launch_per_param(void **state)
{
    cg_ctx *ctx = *state;
    float v[N1];
    uint64_t s = 3;
    th_fill_uniform(&s, v, N1, -1, 1);
    cg_tensor *P1 = param(ctx, CG_SHAPE(7, 3), v), *P2 = param(ctx, CG_SHAPE(N2), v);
    cg_tensor *ps[2] = {P1, P2};
    struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_RMSPROP);
    o.centered = true;
    o.momentum = 0.9f;
    cg_optim *opt = cg_optim_create_params(ctx, ps, 2, &o);
    for (int i = 0; i < 2; i++) device_step(ctx, opt, P1, P2, v, v, false);

    cg_scope_begin(ctx);
    cg_tensor *loss = cg_add(cg_sum_all(cg_mul(P1, P1)), cg_sum_all(cg_mul(P2, P2)));
    cg_optim_zero_grad(opt);
    assert_int_equal(cg_backward(loss), CG_OK);
    assert_int_equal(cg_ctx_synchronize(ctx), CG_OK);
    cg_ctx_reset_stats(ctx);
    assert_int_equal(cg_optim_step(opt), CG_OK);
    struct cg_backend_stats st;
    cg_ctx_stats(ctx, &st);
    assert_int_equal(st.launches, 2);
    assert_int_equal(st.uploads, 0);
    assert_int_equal(st.downloads, 0);
    cg_scope_end(ctx);
    cg_optim_free(opt);
    cg_tensor_free(P1);
    cg_tensor_free(P2);
}

static void test_module_shorthands(void **state)
{
    cg_ctx *ctx = *state;
    cg_module *m = cg_sequential_module(ctx, 3, cg_linear_module(ctx, 3, 4, true), cg_tanh_module(ctx),
                                 cg_linear_module(ctx, 4, 2, false));
    cg_optim *opts[4] = {cg_sgd(m, 0.1f), cg_adam(m, 1e-3f), cg_adamw(m, 2e-3f), cg_rmsprop(m, 0.01f)};
    for (int i = 0; i < 4; i++) {
        assert_non_null(opts[i]);
        assert_int_equal(cg_optim_num_groups(opts[i]), 1);
    }
    assert_true(cg_optim_lr(opts[2]) == 2e-3f);
    struct cg_optim_options *o = cg_optim_group_options(opts[2], 0);
    assert_true(o->decoupled_weight_decay && o->weight_decay == 1e-2f);
    assert_null(cg_optim_group_options(opts[2], 1));
    cg_optim_set_lr(opts[0], 0.5f);
    assert_true(cg_optim_lr(opts[0]) == 0.5f);

    /* every parameter of the model is held: a step moves all three */
    cg_scope_begin(ctx);
    float x[6] = {1, 2, 3, -1, 0.5f, 2};
    cg_tensor *y = cg_module_forward(m, cg_tensor_from_host(ctx, CG_SHAPE(2, 3), x));
    cg_optim_zero_grad(opts[1]);
    assert_int_equal(cg_backward(cg_sum_all(cg_mul(y, y))), CG_OK);
    assert_int_equal(cg_optim_step(opts[1]), CG_OK);
    struct cg_named_tensor ps[3];
    assert_int_equal(cg_module_parameters(m, ps, 3), 3);
    for (int i = 0; i < 3; i++) assert_int_equal(cg_optim_param_steps(opts[1], ps[i].tensor), 1);
    cg_optim_zero_grad(opts[1]);
    for (int i = 0; i < 3; i++) assert_null(cg_tensor_grad(ps[i].tensor));
    cg_scope_end(ctx);
    for (int i = 0; i < 4; i++) cg_optim_free(opts[i]);
    cg_module_free(m);
}

/* torch.nn.utils.clip_grad_norm_: every gradient scaled by
 * min(1, max_norm / (total_norm + 1e-6)), total_norm over all of them. */
static void test_clip_grad_norm(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rs = 99;
    float g1[N1], g2[N2];
    th_fill_uniform(&rs, g1, N1, -2, 2);
    th_fill_uniform(&rs, g2, N2, -2, 2);
    double sq = 0;
    for (int i = 0; i < N1; i++) sq += (double)g1[i] * g1[i];
    for (int i = 0; i < N2; i++) sq += (double)g2[i] * g2[i];
    double norm = sqrt(sq);
    const float limits[2] = {(float)(norm / 3), (float)(norm * 2)}; /* clips, does not */
    for (int k = 0; k < 2; k++) {
        cg_tensor *p1 = cg_tensor_zeros(ctx, CG_SHAPE(7, 3)), *p2 = cg_tensor_zeros(ctx, CG_SHAPE(N2));
        cg_tensor_set_requires_grad(p1, true);
        cg_tensor_set_requires_grad(p2, true);
        cg_tensor *ps[2] = {p1, p2};
        struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_SGD);
        cg_optim *opt = cg_optim_create_params(ctx, ps, 2, &o);
        assert_non_null(opt);
        assert_int_equal(cg_optim_num_params(opt), 2);
        assert_ptr_equal(cg_optim_param(opt, 1), p2);
        assert_null(cg_optim_param(opt, 2));
        cg_scope_begin(ctx);
        cg_tensor *c1 = cg_tensor_from_host(ctx, CG_SHAPE(7, 3), g1);
        cg_tensor *c2 = cg_tensor_from_host(ctx, CG_SHAPE(N2), g2);
        cg_tensor *loss = cg_add(cg_sum_all(cg_mul(p1, c1)), cg_sum_all(cg_mul(p2, c2)));
        assert_int_equal(cg_backward(loss), CG_OK);
        cg_tensor *tn = cg_optim_clip_grad_norm(opt, limits[k]);
        assert_non_null(tn);
        float got_norm;
        assert_int_equal(cg_tensor_item(tn, &got_norm), CG_OK);
        assert_true(fabs(got_norm - norm) <= 1e-5 * norm);
        double coef = fmin(1.0, limits[k] / (norm + 1e-6));
        double w1[N1], w2[N2];
        for (int i = 0; i < N1; i++) w1[i] = g1[i] * coef;
        for (int i = 0; i < N2; i++) w2[i] = g2[i] * coef;
        float r1[N1], r2[N2];
        assert_int_equal(cg_tensor_to_host(cg_tensor_grad(p1), r1, N1), CG_OK);
        assert_int_equal(cg_tensor_to_host(cg_tensor_grad(p2), r2, N2), CG_OK);
        th_assert_close(r1, w1, N1, 1e-5, 1e-6, "clipped grad 1");
        th_assert_close(r2, w2, N2, 1e-5, 1e-6, "clipped grad 2");
        cg_ctx_clear_error(ctx);
        assert_null(cg_optim_clip_grad_norm(opt, -1.0f));
        th_assert_error_contains(ctx, "not a positive number");
        cg_ctx_clear_error(ctx);
        cg_scope_end(ctx);
        cg_optim_free(opt);
        cg_tensor_free(p1);
        cg_tensor_free(p2);
    }
}

static void test_validation(void **state)
{
    cg_ctx *ctx = *state;
    float v[3] = {1, 2, 3};
    cg_tensor *P = param(ctx, CG_SHAPE(3), v);
    struct cg_optim_options o = cg_optim_defaults(CG_OPTIM_SGD);
    o.lr = -1;
    assert_null(cg_optim_create_params(ctx, &P, 1, &o));
    th_assert_error_contains(ctx, "invalid learning rate");
    cg_ctx_clear_error(ctx);
    o = cg_optim_defaults(CG_OPTIM_SGD);
    o.nesterov = true;
    o.momentum = 0.9f;
    o.dampening = 0.1f;
    assert_null(cg_optim_create_params(ctx, &P, 1, &o));
    th_assert_error_contains(ctx, "Nesterov momentum requires");
    cg_ctx_clear_error(ctx);
    o = cg_optim_defaults(CG_OPTIM_ADAM);
    o.beta2 = 1.0f;
    assert_null(cg_optim_create_params(ctx, &P, 1, &o));
    th_assert_error_contains(ctx, "beta parameter at index 1");
    cg_ctx_clear_error(ctx);
    o = cg_optim_defaults(CG_OPTIM_RMSPROP);
    o.alpha = -0.5f;
    assert_null(cg_optim_create_params(ctx, &P, 1, &o));
    th_assert_error_contains(ctx, "alpha");
    cg_ctx_clear_error(ctx);

    cg_tensor *twice[2] = {P, P};
    o = cg_optim_defaults(CG_OPTIM_ADAM);
    assert_null(cg_optim_create_params(ctx, twice, 2, &o));
    th_assert_error_contains(ctx, "more than once");
    cg_ctx_clear_error(ctx);
    cg_optim *opt = cg_optim_create_params(ctx, &P, 1, &o);
    assert_non_null(opt);
    assert_int_equal(cg_optim_add_group(opt, &P, 1, &o), CG_STATUS_INVALID_ARGUMENT);
    struct cg_optim_options sgd = cg_optim_defaults(CG_OPTIM_SGD);
    cg_tensor *Q = param(ctx, CG_SHAPE(3), v);
    assert_int_equal(cg_optim_add_group(opt, &Q, 1, &sgd), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "Adam optimizer");
    cg_ctx_clear_error(ctx);
    cg_scope_begin(ctx);
    cg_tensor *S = cg_tensor_from_host(ctx, CG_SHAPE(3), v);
    assert_int_equal(cg_optim_add_group(opt, &S, 1, &o), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "persistent");
    cg_scope_end(ctx);
    cg_ctx_clear_error(ctx);
    /* options edited into nonsense between steps are caught at the step */
    cg_optim_group_options(opt, 0)->lr = NAN;
    assert_int_equal(cg_optim_step(opt), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "cg_optim_step");
    cg_ctx_clear_error(ctx);
    cg_optim_free(opt);
    cg_optim_free(NULL);
    cg_tensor_free(P);
    cg_tensor_free(Q);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test_setup_teardown(test_sgd, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_adam, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_rmsprop, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_param_groups, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_one_launch_per_param, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_module_shorthands, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_validation, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_clip_grad_norm, th_setup, th_teardown),
    };
    return TH_RUN(tests);
}
