/*
 * tests/test_primitives.c — the primitive parity suite (in the spirit of
 * ggml's test-backend-ops).
 *
 * Every primitive of struct cg_backend_i is called directly, through
 * cg_ctx_backend(), on the backend named by CLGRAD_BACKEND (meson runs this
 * binary once per backend), on seeded random inputs, and its result is
 * compared with a float64 reference computed here from the formulas in
 * include/clgrad/backend.h. Buffers come from the public API
 * (cg_tensor_from_host, cg_tensor_view, cg_tensor_to_host). Outputs live in
 * buffers larger than the region written, pre-filled with garbage: the whole
 * buffer is compared, so a write outside the region fails too.
 *
 * Tolerances (|got - want| <= atol + rtol * |want|, want rounded to float):
 *   exact ops (copy, neg, abs, relu, sign, clamp, compare, max/min,
 *     relu/clamp backward, fill, reduce max/min/argmax, gathers)  0
 *   add, sub, mul                                 rtol 2.4e-7 (2 ulp)
 *   div, sqrt                                     rtol 6e-7 (OpenCL 2.5/3 ulp)
 *   affine, axpby, sigmoid/tanh backward          rtol 1e-6, atol 1e-6
 *   exp, log, tanh, sigmoid, gelu (+backward), pow (+backward)
 *                                                 rtol 1e-5, atol 1e-6
 *   reduce sum                                    rtol 1e-5, atol 1e-6 * (n + 1)
 *   gemm                                          rtol 1e-5, atol 1e-6 * (k + 1);
 *     1024^3: ||C - C_ref||_F / ||C_ref||_F <= 1e-5
 *   softmax / log-softmax fwd, bwd                rtol 1e-5, atol 1e-6 / 1e-5
 *   scatter-adds                                  rtol 1e-6, atol 1e-5
 *   optimizer updates (5 steps)                   rtol 1e-5, atol 1e-6
 *
 *   ./test_primitives [filter]      e.g. ./test_primitives "*gemm*"
 */
#include "harness.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#define NELEMS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- fixture: a context per test, host memory freed in teardown ---- */

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
    return e;
}

static bool is_cpu(void)
{
    return strcmp(th_backend(), "cpu") == 0;
}

/* ---- device arrays: a 1-d tensor of n floats and its buffer ---- */

struct darr {
    cg_tensor *t;
    struct cg_buffer *buf;
    int64_t off;     /* element offset of t in buf */
    int64_t n;
};

static struct darr darr_new(struct env *e, const float *host, int64_t n)
{
    cg_tensor *t = cg_tensor_from_host(e->ctx, CG_SHAPE(n), host);
    if (!t) fail_msg("cg_tensor_from_host(%lld): %s", (long long)n, cg_last_error(e->ctx));
    struct cg_view v = cg_tensor_view(t);
    return (struct darr){t, v.buf, v.off, n};
}

static struct cg_ptr darr_at(struct darr d, int64_t off)
{
    return (struct cg_ptr){d.buf, d.off + off};
}

static float *darr_read(struct darr d)
{
    float *h = TALLOC(float, d.n);
    cg_status s = cg_tensor_to_host(d.t, h, d.n);
    if (s != CG_OK) fail_msg("cg_tensor_to_host: %s", cg_last_error(cg_tensor_ctx(d.t)));
    return h;
}

static float *rand_floats(struct env *e, int64_t n, double lo, double hi)
{
    float *x = TALLOC(float, n);
    th_fill_uniform(&e->rng, x, n, (float)lo, (float)hi);
    return x;
}

/* Halves in [lo, hi]: inputs with ties and exact zeros. */
static float *rand_halves(struct env *e, int64_t n, double lo, double hi)
{
    float *x = TALLOC(float, n);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(floor(th_rand_uniform(&e->rng, 2 * lo, 2 * hi + 1)) / 2);
    return x;
}

static double *floats_to_doubles(const float *x, int64_t n)
{
    double *d = TALLOC(double, n);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

#define CHECK_OK(e, call)                                                      \
    do {                                                                       \
        cg_status s_ = (call);                                                 \
        if (s_ != CG_OK)                                                       \
            fail_msg("%s -> %s: %s", #call, cg_status_str(s_),                 \
                     (e)->be->last_error((e)->bctx));                          \
    } while (0)

/* ---- strided layouts ---- */

/* How a view of a given shape sits in its buffer. */
struct layout {
    bool transposed;   /* dims stored in reverse order (a permuted view)  */
    unsigned bcast;    /* bit d set: stride 0 along dim d (broadcast)     */
    int64_t off;       /* elements before the view                        */
    int64_t pad;       /* gap after each innermost row                    */
};

static int64_t numel_of(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

/* Sets strides for shape under l; returns the buffer length the view needs
 * (plus 3 trailing elements that must stay untouched). */
static int64_t layout_strides(int ndim, const int64_t *shape, struct layout l,
                              int64_t *strides)
{
    int64_t run = 1;
    bool first = true;
    for (int k = 0; k < ndim; k++) {
        int d = l.transposed ? k : ndim - 1 - k;    /* k-th innermost dim */
        if (l.bcast >> d & 1u) {
            strides[d] = 0;
            continue;
        }
        strides[d] = run;
        run *= shape[d];
        if (first) run += l.pad;
        first = false;
    }
    int64_t hi = 0;
    for (int d = 0; d < ndim; d++) hi += (shape[d] > 0 ? shape[d] - 1 : 0) * strides[d];
    return l.off + hi + 1 + 3;
}

static struct cg_view make_view(struct darr d, int ndim, const int64_t *shape,
                                const int64_t *strides, int64_t off)
{
    struct cg_view v = {.buf = d.buf, .off = d.off + off, .ndim = ndim};
    for (int i = 0; i < ndim; i++) {
        v.shape[i] = shape[i];
        v.strides[i] = strides[i];
    }
    return v;
}

/* Calls f(offsets) for every element of shape, with each view's offset. */
struct odometer {
    int ndim;
    const int64_t *shape;
    int64_t idx[CG_MAX_DIMS];
    bool done;
};

static void odo_init(struct odometer *o, int ndim, const int64_t *shape)
{
    *o = (struct odometer){.ndim = ndim, .shape = shape};
    o->done = numel_of(ndim, shape) == 0;
}

static int64_t odo_offset(const struct odometer *o, const int64_t *strides, int64_t off)
{
    for (int d = 0; d < o->ndim; d++) off += o->idx[d] * strides[d];
    return off;
}

static void odo_next(struct odometer *o)
{
    for (int d = o->ndim - 1; d >= 0; d--) {
        if (++o->idx[d] < o->shape[d]) return;
        o->idx[d] = 0;
    }
    o->done = true;
}

/* ---- elementwise reference ---- */

static double ref_sigmoid(double x)
{
    return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
}

/* The formula of each op, written from backend.h independently of the
 * backends. */
static double ref_ew(enum cg_ew_op op, double p0, double p1, double x, double g)
{
    const double phi_c = 0.3989422804014327;  /* 1 / sqrt(2 pi) */
    switch (op) {
    case CG_EW_COPY: return x;
    case CG_EW_NEG: return -x;
    case CG_EW_EXP: return exp(x);
    case CG_EW_LOG: return log(x);
    case CG_EW_SQRT: return sqrt(x);
    case CG_EW_ABS: return fabs(x);
    case CG_EW_RELU: return x > 0 ? x : 0;
    case CG_EW_SIGMOID: return ref_sigmoid(x);
    case CG_EW_TANH: return tanh(x);
    case CG_EW_GELU: return x * 0.5 * (1 + erf(x / sqrt(2.0)));
    case CG_EW_POW_SCALAR: return pow(x, p0);
    case CG_EW_CLAMP: return fmin(fmax(x, p0), p1);
    case CG_EW_AFFINE: return p0 * x + p1;
    case CG_EW_SIGN: return (x > 0) - (x < 0);
    case CG_EW_ADD: return x + g;
    case CG_EW_SUB: return x - g;
    case CG_EW_MUL: return x * g;
    case CG_EW_DIV: return x / g;
    case CG_EW_MAXIMUM: return fmax(x, g);
    case CG_EW_MINIMUM: return fmin(x, g);
    case CG_EW_EQ: return x == g;
    case CG_EW_GT: return x > g;
    case CG_EW_AXPBY: return p0 * x + p1 * g;
    case CG_EW_RELU_BACKWARD: return x > 0 ? g : 0;
    case CG_EW_SIGMOID_BACKWARD: return g * x * (1 - x);
    case CG_EW_TANH_BACKWARD: return g * (1 - x * x);
    case CG_EW_GELU_BACKWARD:
        return g * (0.5 * (1 + erf(x / sqrt(2.0))) + x * phi_c * exp(-x * x / 2));
    case CG_EW_POW_SCALAR_BACKWARD: return g * p0 * pow(x, p0 - 1);
    case CG_EW_CLAMP_BACKWARD: return x >= p0 && x <= p1 ? g : 0;
    case CG_EW_COUNT: break;
    }
    fail_msg("ref_ew: op %d", (int)op);
    return 0;
}

/* One op with its parameters, input ranges and tolerance. */
struct ew_spec {
    enum cg_ew_op op;
    const char *name;
    float p0, p1;
    double lo_a, hi_a, lo_b, hi_b;
    bool halves;                 /* inputs on a grid of halves (ties, zeros) */
    double rtol, atol;
};

#define EXACT 0, 0
#define ULP2 2.4e-7, 0
#define ULP5 6e-7, 0
#define ARITH 1e-6, 1e-6
#define TRANS 1e-5, 1e-6
static const struct ew_spec ew_specs[] = {
    {CG_EW_COPY, "copy", 0, 0, -3, 3, 0, 0, false, EXACT},
    {CG_EW_NEG, "neg", 0, 0, -3, 3, 0, 0, false, EXACT},
    {CG_EW_EXP, "exp", 0, 0, -10, 10, 0, 0, false, TRANS},
    {CG_EW_LOG, "log", 0, 0, 0.01, 50, 0, 0, false, TRANS},
    {CG_EW_SQRT, "sqrt", 0, 0, 0, 50, 0, 0, false, ULP5},
    {CG_EW_ABS, "abs", 0, 0, -3, 3, 0, 0, true, EXACT},
    {CG_EW_RELU, "relu", 0, 0, -3, 3, 0, 0, true, EXACT},
    {CG_EW_SIGMOID, "sigmoid", 0, 0, -20, 20, 0, 0, false, TRANS},
    {CG_EW_TANH, "tanh", 0, 0, -5, 5, 0, 0, false, TRANS},
    {CG_EW_GELU, "gelu", 0, 0, -6, 6, 0, 0, false, TRANS},
    {CG_EW_POW_SCALAR, "pow 3", 3, 0, -2, 2, 0, 0, false, TRANS},
    {CG_EW_POW_SCALAR, "pow -1.5", -1.5f, 0, 0.25, 3, 0, 0, false, TRANS},
    {CG_EW_POW_SCALAR, "pow 0.5", 0.5f, 0, 0, 4, 0, 0, false, TRANS},
    {CG_EW_CLAMP, "clamp", -1, 1.5f, -3, 3, 0, 0, true, EXACT},
    {CG_EW_AFFINE, "affine", 1.75f, -0.5f, -3, 3, 0, 0, false, ARITH},
    {CG_EW_SIGN, "sign", 0, 0, -2, 2, 0, 0, true, EXACT},
    {CG_EW_ADD, "add", 0, 0, -3, 3, -3, 3, false, ULP2},
    {CG_EW_SUB, "sub", 0, 0, -3, 3, -3, 3, false, ULP2},
    {CG_EW_MUL, "mul", 0, 0, -3, 3, -3, 3, false, ULP2},
    {CG_EW_DIV, "div", 0, 0, -3, 3, 0.5, 2, false, ULP5},
    {CG_EW_MAXIMUM, "maximum", 0, 0, -2, 2, -2, 2, true, EXACT},
    {CG_EW_MINIMUM, "minimum", 0, 0, -2, 2, -2, 2, true, EXACT},
    {CG_EW_EQ, "eq", 0, 0, -1, 1, -1, 1, true, EXACT},
    {CG_EW_GT, "gt", 0, 0, -1, 1, -1, 1, true, EXACT},
    {CG_EW_AXPBY, "axpby", 0.75f, -1.25f, -3, 3, -3, 3, false, ARITH},
    {CG_EW_RELU_BACKWARD, "relu_backward", 0, 0, -2, 2, -2, 2, true, EXACT},
    {CG_EW_SIGMOID_BACKWARD, "sigmoid_backward", 0, 0, 0, 1, -3, 3, false, ARITH},
    {CG_EW_TANH_BACKWARD, "tanh_backward", 0, 0, -1, 1, -3, 3, false, ARITH},
    {CG_EW_GELU_BACKWARD, "gelu_backward", 0, 0, -6, 6, -3, 3, false, TRANS},
    {CG_EW_POW_SCALAR_BACKWARD, "pow_backward 3", 3, 0, -2, 2, -3, 3, false, TRANS},
    {CG_EW_POW_SCALAR_BACKWARD, "pow_backward -1.5", -1.5f, 0, 0.25, 3, -3, 3, false,
     TRANS},
    {CG_EW_CLAMP_BACKWARD, "clamp_backward", -1, 1.5f, -3, 3, -2, 2, true, EXACT},
};

/* A shape with the layouts of out, a and b. */
struct ew_case {
    const char *name;
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    struct layout lo, la, lb;
    bool inplace;   /* out is a: same buffer, same view (lo) */
};

static const struct ew_case ew_cases[] = {
    {"empty", 1, {0}, {0}, {0}, {0}, false},
    {"n=1", 1, {1}, {0}, {0}, {0}, false},
    {"n=7", 1, {7}, {0}, {0}, {0}, false},
    {"n=33 offsets", 1, {33}, {false, 0, 5, 0}, {false, 0, 2, 0}, {false, 0, 9, 0}, false},
    {"n=257", 1, {257}, {0}, {0}, {0}, false},
    {"0-d", 0, {0}, {false, 0, 1, 0}, {false, 0, 2, 0}, {false, 0, 3, 0}, false},
    {"scalar op tensor", 1, {33}, {0}, {false, 1, 4, 0}, {0}, false},
    {"tensor op scalar", 1, {257}, {0}, {0}, {false, 1, 1, 0}, false},
    {"row broadcast", 2, {7, 33}, {0}, {false, 1, 0, 0}, {false, 0, 3, 0}, false},
    {"column broadcast", 2, {33, 7}, {0}, {false, 0, 0, 0}, {false, 2, 1, 0}, false},
    {"outer broadcast", 2, {7, 33}, {false, 0, 0, 2}, {false, 1, 0, 0}, {false, 2, 0, 0},
     false},
    {"4-d mixed broadcast", 4, {2, 3, 5, 7}, {false, 0, 3, 2}, {false, 0xA, 1, 0},
     {false, 0x5, 2, 1}, false},
    {"transposed inputs", 2, {7, 33}, {0}, {true, 0, 1, 0}, {true, 0, 2, 3}, false},
    {"transposed output", 2, {33, 7}, {true, 0, 4, 2}, {false, 0, 3, 1}, {false, 1, 0, 0},
     false},
    {"3-d transposed all", 3, {3, 5, 7}, {true, 0, 1, 1}, {true, 0x2, 0, 0},
     {false, 0, 2, 3}, false},
    {"6-d", 6, {2, 1, 3, 2, 1, 5}, {false, 0, 5, 1}, {true, 0, 0, 2}, {false, 0x9, 1, 0},
     false},
    {"empty 2-d rows", 2, {0, 5}, {0}, {false, 1, 0, 0}, {0}, false},
    {"empty 2-d cols", 2, {5, 0}, {true, 0, 0, 0}, {0}, {false, 2, 0, 0}, false},
    {"all broadcast", 2, {3, 4}, {0}, {false, 3, 1, 0}, {false, 3, 2, 0}, false},
    {"in place", 2, {7, 33}, {false, 0, 2, 0}, {0}, {true, 0, 0, 1}, true},
    {"in place strided", 2, {5, 7}, {true, 0, 1, 3}, {0}, {false, 1, 0, 0}, true},
    {"in place broadcast b", 1, {257}, {false, 0, 0, 0}, {0}, {false, 1, 0, 0}, true},
};

/* Runs one op on one case and compares out's whole buffer. */
static void ew_run(struct env *e, const struct ew_spec *sp, const struct ew_case *cs)
{
    int mark = th_arena_mark();
    bool binary = sp->op >= CG_EW_FIRST_BINARY;
    int nd = cs->ndim;
    int64_t so[CG_MAX_DIMS] = {0}, sa[CG_MAX_DIMS] = {0}, sb[CG_MAX_DIMS] = {0};
    struct layout la = cs->inplace ? cs->lo : cs->la;
    int64_t no = layout_strides(nd, cs->shape, cs->lo, so);
    int64_t na = layout_strides(nd, cs->shape, la, sa);
    int64_t nb = layout_strides(nd, cs->shape, cs->lb, sb);

    float *ha = sp->halves ? rand_halves(e, na, sp->lo_a, sp->hi_a)
                           : rand_floats(e, na, sp->lo_a, sp->hi_a);
    float *hb = sp->halves ? rand_halves(e, nb, sp->lo_b, sp->hi_b)
                           : rand_floats(e, nb, sp->lo_b, sp->hi_b);
    float *ho = cs->inplace ? ha : rand_floats(e, no, 100, 200);  /* garbage */

    /* expected: out's buffer with the view's elements replaced */
    double *want = floats_to_doubles(ho, no);
    struct odometer it;
    for (odo_init(&it, nd, cs->shape); !it.done; odo_next(&it)) {
        double x = ha[odo_offset(&it, sa, la.off)];
        double g = binary ? hb[odo_offset(&it, sb, cs->lb.off)] : 0;
        want[odo_offset(&it, so, cs->lo.off)] = (float)ref_ew(sp->op, sp->p0, sp->p1, x, g);
    }

    cg_scope_begin(e->ctx);
    struct darr da = darr_new(e, ha, na), db = darr_new(e, hb, nb);
    struct darr dout = cs->inplace ? da : darr_new(e, ho, no);
    struct cg_view vo = make_view(dout, nd, cs->shape, so, cs->lo.off);
    struct cg_view va = make_view(da, nd, cs->shape, sa, la.off);
    struct cg_view vb = make_view(db, nd, cs->shape, sb, cs->lb.off);
    CHECK_OK(e, e->be->ew(e->bctx, sp->op, sp->p0, sp->p1, &vo, &va, binary ? &vb : NULL));
    float *got = darr_read(dout);
    char what[160];
    snprintf(what, sizeof what, "ew %s, case \"%s\"", sp->name, cs->name);
    th_assert_close(got, want, no, sp->rtol, sp->atol, what);
    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_ew_all_ops_all_layouts(void **state)
{
    struct env e = env_of(state, 101);
    _Static_assert(CG_EW_COUNT == 29, "a new ew op needs a spec in ew_specs");
    bool covered[CG_EW_COUNT] = {false};
    for (int s = 0; s < NELEMS(ew_specs); s++) {
        covered[ew_specs[s].op] = true;
        for (int c = 0; c < NELEMS(ew_cases); c++) ew_run(&e, &ew_specs[s], &ew_cases[c]);
    }
    for (int op = 0; op < CG_EW_COUNT; op++)
        if (!covered[op]) fail_msg("ew op %d has no test spec", op);
}

/* Large |x|: stable formulas give finite, saturated values, never NaN. */
static void test_ew_extremes(void **state)
{
    struct env e = env_of(state, 102);
    static const float xs[] = {-1e4f, -1000, -100, -30, -10, -1e-3f, 0, 1e-3f, 10, 30, 100,
                               1000, 1e4f};
    const int n = NELEMS(xs);
    float ones[NELEMS(xs)];
    for (int i = 0; i < n; i++) ones[i] = 1.0f;
    static const enum cg_ew_op ops[] = {CG_EW_SIGMOID, CG_EW_TANH, CG_EW_GELU,
                                        CG_EW_GELU_BACKWARD, CG_EW_EXP, CG_EW_RELU};
    for (int k = 0; k < NELEMS(ops); k++) {
        cg_scope_begin(e.ctx);
        struct darr dx = darr_new(&e, xs, n), dg = darr_new(&e, ones, n);
        struct darr dout = darr_new(&e, ones, n);
        int64_t shape[1] = {n}, st[1] = {1};
        struct cg_view vo = make_view(dout, 1, shape, st, 0);
        struct cg_view vx = make_view(dx, 1, shape, st, 0);
        struct cg_view vg = make_view(dg, 1, shape, st, 0);
        bool binary = ops[k] >= CG_EW_FIRST_BINARY;
        CHECK_OK(&e, e.be->ew(e.bctx, ops[k], 0, 0, &vo, &vx, binary ? &vg : NULL));
        float *got = darr_read(dout);
        double want[NELEMS(xs)];
        for (int i = 0; i < n; i++) want[i] = (float)ref_ew(ops[k], 0, 0, xs[i], 1.0);
        char what[64];
        snprintf(what, sizeof what, "ew op %d at large |x|", (int)ops[k]);
        /* atol 1e-30: values below float's normal range may flush to 0 */
        th_assert_close(got, want, n, 1e-5, 1e-30, what);
        for (int i = 0; i < n; i++)
            if (isnan(got[i])) fail_msg("%s: NaN at x = %g", what, (double)xs[i]);
        cg_scope_end(e.ctx);
    }
}

/* ---- fill ---- */

static void test_fill_strided(void **state)
{
    struct env e = env_of(state, 103);
    static const struct ew_case cases[] = {
        {"empty", 1, {0}, {false, 0, 1, 0}, {0}, {0}, false},
        {"n=1", 1, {1}, {0}, {0}, {0}, false},
        {"n=7 offset", 1, {7}, {false, 0, 3, 0}, {0}, {0}, false},
        {"n=257", 1, {257}, {0}, {0}, {0}, false},
        {"0-d", 0, {0}, {false, 0, 2, 0}, {0}, {0}, false},
        {"2-d pitched", 2, {7, 33}, {false, 0, 1, 5}, {0}, {0}, false},
        {"2-d transposed", 2, {33, 7}, {true, 0, 4, 2}, {0}, {0}, false},
        {"4-d pitched", 4, {2, 3, 5, 7}, {false, 0, 3, 1}, {0}, {0}, false},
        {"empty 2-d", 2, {5, 0}, {false, 0, 0, 2}, {0}, {0}, false},
    };
    static const float values[] = {3.25f, -0.0f, NAN, INFINITY};
    for (int c = 0; c < NELEMS(cases); c++) {
        for (int k = 0; k < NELEMS(values); k++) {
            int mark = th_arena_mark();
            const struct ew_case *cs = &cases[c];
            int64_t st[CG_MAX_DIMS] = {0};
            int64_t nb = layout_strides(cs->ndim, cs->shape, cs->lo, st);
            float *h = rand_floats(&e, nb, -1, 1);
            double *want = floats_to_doubles(h, nb);
            struct odometer it;
            for (odo_init(&it, cs->ndim, cs->shape); !it.done; odo_next(&it))
                want[odo_offset(&it, st, cs->lo.off)] = values[k];
            cg_scope_begin(e.ctx);
            struct darr d = darr_new(&e, h, nb);
            struct cg_view v = make_view(d, cs->ndim, cs->shape, st, cs->lo.off);
            CHECK_OK(&e, e.be->fill(e.bctx, &v, values[k]));
            float *got = darr_read(d);
            char what[96];
            snprintf(what, sizeof what, "fill %g, case \"%s\"", (double)values[k], cs->name);
            th_assert_close(got, want, nb, 0, 0, what);
            cg_scope_end(e.ctx);
            th_arena_release(mark);
        }
    }
}

/* ---- reduce ---- */

static double ref_reduce(enum cg_reduce_op op, const float *x, int64_t n, int64_t stride,
                         double scale)
{
    double acc = op == CG_REDUCE_SUM      ? 0
                 : op == CG_REDUCE_MAX    ? -INFINITY
                 : op == CG_REDUCE_MIN    ? INFINITY
                                          : 0;
    int64_t arg = 0;
    for (int64_t r = 0; r < n; r++) {
        double v = x[r * stride];
        switch (op) {
        case CG_REDUCE_SUM: acc += v; break;
        case CG_REDUCE_MAX: acc = fmax(acc, v); break;
        case CG_REDUCE_MIN: acc = fmin(acc, v); break;
        case CG_REDUCE_ARGMAX:
            if (v > x[arg * stride]) arg = r;
            break;
        case CG_REDUCE_COUNT: break;
        }
    }
    if (op == CG_REDUCE_SUM) return scale * acc;
    if (op == CG_REDUCE_ARGMAX) return (double)arg;
    return acc;
}

static void reduce_run(struct env *e, enum cg_reduce_op op, int64_t outer, int64_t n,
                       int64_t inner, float scale, bool halves, double lo, double hi,
                       double rtol, double atol)
{
    int mark = th_arena_mark();
    const int64_t in_off = 3, out_off = 2;
    int64_t nin = in_off + outer * n * inner + 2, nout = out_off + outer * inner + 2;
    float *hin = halves ? rand_halves(e, nin, lo, hi) : rand_floats(e, nin, lo, hi);
    float *hout = rand_floats(e, nout, 100, 200);
    double *want = floats_to_doubles(hout, nout);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            want[out_off + o * inner + i] =
                (float)ref_reduce(op, hin + in_off + o * n * inner + i, n, inner, scale);

    cg_scope_begin(e->ctx);
    struct darr din = darr_new(e, hin, nin), dout = darr_new(e, hout, nout);
    CHECK_OK(e, e->be->reduce(e->bctx, op, darr_at(dout, out_off), darr_at(din, in_off),
                              outer, n, inner, scale));
    float *got = darr_read(dout);
    char what[128];
    snprintf(what, sizeof what, "reduce op %d (outer %lld, n %lld, inner %lld, scale %g)",
             (int)op, (long long)outer, (long long)n, (long long)inner, (double)scale);
    th_assert_close(got, want, nout, rtol, atol, what);
    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_reduce(void **state)
{
    struct env e = env_of(state, 104);
    static const int64_t shapes[][3] = {
        {1, 1, 1},  {1, 7, 1},  {1, 257, 1}, {7, 33, 1}, {1, 33, 7}, {3, 7, 5},
        {5, 1, 4},  {2, 0, 3},  {0, 3, 2},   {4, 3, 0},  {33, 1, 1}, {2, 257, 3},
    };
    for (int s = 0; s < NELEMS(shapes); s++) {
        int64_t outer = shapes[s][0], n = shapes[s][1], inner = shapes[s][2];
        double sum_atol = 1e-6 * (double)(n + 1);
        reduce_run(&e, CG_REDUCE_SUM, outer, n, inner, 1.0f, false, -1, 1, 1e-5, sum_atol);
        reduce_run(&e, CG_REDUCE_SUM, outer, n, inner, 0.25f, false, -1, 1, 1e-5, sum_atol);
        reduce_run(&e, CG_REDUCE_MAX, outer, n, inner, 1.0f, false, -5, 5, 0, 0);
        reduce_run(&e, CG_REDUCE_MIN, outer, n, inner, 1.0f, false, -5, 5, 0, 0);
        reduce_run(&e, CG_REDUCE_ARGMAX, outer, n, inner, 1.0f, false, -5, 5, 0, 0);
        /* few distinct values: ties, the first maximum must win */
        reduce_run(&e, CG_REDUCE_ARGMAX, outer, n, inner, 1.0f, true, -1, 1, 0, 0);
        reduce_run(&e, CG_REDUCE_MAX, outer, n, inner, 1.0f, true, -1, 1, 0, 0);
    }
    /* Long sums of nearly equal values: one running float sum drifts by
     * about 1e-4 relative (sum 0.1f 1e5 times: 9998.6, not 10000);
     * pairwise or double accumulation stays within 1e-5. */
    reduce_run(&e, CG_REDUCE_SUM, 1, 100003, 1, 1.0f, false, 0.1, 0.1001, 1e-5, 1e-3);
    reduce_run(&e, CG_REDUCE_SUM, 1, 100003, 1, 1.0f, false, -0.5, 1.5, 1e-5, 1e-3);
    reduce_run(&e, CG_REDUCE_SUM, 3, 20011, 2, 0.5f, false, -0.5, 1.5, 1e-5, 1e-3);
}

/* ---- gemm ---- */

/* Element (i, j) of op(X) for X stored with pitch ld. */
static double mat_at(const float *x, int trans, int64_t ld, int64_t i, int64_t j)
{
    return trans ? x[j * ld + i] : x[i * ld + j];
}

static void gemm_run(struct env *e, int ta, int tb, int64_t m, int64_t n, int64_t k,
                     int64_t batch, float alpha, float beta)
{
    int mark = th_arena_mark();
    struct cg_gemm_desc d = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                             .alpha = alpha, .beta = beta, .batch = batch};
    int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    /* pitches wider than the rows and gaps between batch entries: both
     * must be honoured, and C's gaps must stay untouched */
    d.lda = a_cols + 3;
    d.ldb = b_cols + 1;
    d.ldc = n + 2;
    d.stride_a = a_rows * d.lda + 5;
    d.stride_b = b_rows * d.ldb + 2;
    d.stride_c = m * d.ldc + 3;
    const int64_t oa = 5, ob = 3, oc = 7;
    int64_t na = oa + batch * d.stride_a, nb = ob + batch * d.stride_b;
    int64_t nc = oc + batch * d.stride_c;
    float *ha = rand_floats(e, na, -1, 1), *hb = rand_floats(e, nb, -1, 1);
    float *hc = rand_floats(e, nc, -1, 1);
    /* beta == 0 must overwrite C, NaN included (BLAS semantics) */
    if (beta == 0.0f)
        for (int64_t i = 0; i < nc; i++) hc[i] = NAN;

    double *want = floats_to_doubles(hc, nc);
    for (int64_t bi = 0; bi < batch; bi++) {
        const float *A = ha + oa + bi * d.stride_a, *B = hb + ob + bi * d.stride_b;
        for (int64_t i = 0; i < m; i++) {
            for (int64_t j = 0; j < n; j++) {
                double acc = 0;
                for (int64_t p = 0; p < k; p++)
                    acc += mat_at(A, ta, d.lda, i, p) * mat_at(B, tb, d.ldb, p, j);
                int64_t ci = oc + bi * d.stride_c + i * d.ldc + j;
                double old = beta == 0.0f ? 0 : beta * (double)hc[ci];
                want[ci] = (float)(alpha * acc + old);
            }
        }
    }

    cg_scope_begin(e->ctx);
    struct darr da = darr_new(e, ha, na), db = darr_new(e, hb, nb), dc = darr_new(e, hc, nc);
    CHECK_OK(e, e->be->gemm(e->bctx, &d, darr_at(da, oa), darr_at(db, ob), darr_at(dc, oc)));
    float *got = darr_read(dc);
    char what[160];
    snprintf(what, sizeof what,
             "gemm ta %d tb %d m %lld n %lld k %lld batch %lld alpha %g beta %g", ta, tb,
             (long long)m, (long long)n, (long long)k, (long long)batch, (double)alpha,
             (double)beta);
    th_assert_close(got, want, nc, 1e-5, 1e-6 * (double)(k + 1), what);
    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_gemm(void **state)
{
    struct env e = env_of(state, 105);
    static const int64_t sizes[][3] = {
        {1, 1, 1}, {7, 33, 5}, {33, 7, 257}, {257, 33, 7}, {1, 257, 33},
        {33, 1, 7}, {0, 7, 5}, {7, 0, 5}, {7, 5, 0},
        /* large enough for the cpu backend's oneDNN path on AVX-512 CPUs
         * (cpu_gemm.c use_onednn: n >= 64, 2^20 multiply-adds, k >= 128);
         * CLGRAD_CPU_AVX512=0 runs the same case through OpenBLAS */
        {130, 67, 160},
    };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int s = 0; s < NELEMS(sizes); s++) {
                int64_t m = sizes[s][0], n = sizes[s][1], k = sizes[s][2];
                gemm_run(&e, ta, tb, m, n, k, 1, 1.0f, 0.0f);
                gemm_run(&e, ta, tb, m, n, k, 1, -0.75f, 0.5f);
                gemm_run(&e, ta, tb, m, n, k, 3, 1.5f, 1.0f);
                gemm_run(&e, ta, tb, m, n, k, 2, 0.5f, 0.0f);
            }
}

/* A large GEMM against a float64 reference, normalised Frobenius error. */
static void test_gemm_large(void **state)
{
    struct env e = env_of(state, 106);
    const int64_t N = RUNNING_ON_VALGRIND ? 256 : 1024;
    float *ha = rand_floats(&e, N * N, -1, 1), *hb = rand_floats(&e, N * N, -1, 1);
    float *hc = TALLOC(float, N * N);
    for (int64_t i = 0; i < N * N; i++) hc[i] = NAN;
    /* reference: i-p-j order, so the inner loop streams rows of B */
    double *ref = TALLOC(double, N * N);
    double *bd = floats_to_doubles(hb, N * N);
    for (int64_t i = 0; i < N; i++) {
        double *r = ref + i * N;
        for (int64_t p = 0; p < N; p++) {
            double aip = ha[i * N + p];
            const double *brow = bd + p * N;
            for (int64_t j = 0; j < N; j++) r[j] += aip * brow[j];
        }
    }
    cg_scope_begin(e.ctx);
    struct darr da = darr_new(&e, ha, N * N), db = darr_new(&e, hb, N * N);
    struct darr dc = darr_new(&e, hc, N * N);
    struct cg_gemm_desc d = {.m = N, .n = N, .k = N, .alpha = 1, .beta = 0,
                             .lda = N, .ldb = N, .ldc = N, .batch = 1};
    CHECK_OK(&e, e.be->gemm(e.bctx, &d, darr_at(da, 0), darr_at(db, 0), darr_at(dc, 0)));
    float *got = darr_read(dc);
    double num = 0, den = 0;
    for (int64_t i = 0; i < N * N; i++) {
        double diff = got[i] - ref[i];
        num += diff * diff;
        den += ref[i] * ref[i];
    }
    double err = sqrt(num / den);
    if (!(err <= 1e-5))
        fail_msg("gemm %lld^3: normalised error %.3g > 1e-5", (long long)N, err);
    cg_scope_end(e.ctx);
}

/* ---- softmax ---- */

static void ref_softmax_row(double *y, const float *x, int64_t cols, int use_log)
{
    double max = -INFINITY, sum = 0;
    for (int64_t j = 0; j < cols; j++) max = fmax(max, x[j]);
    for (int64_t j = 0; j < cols; j++) sum += exp(x[j] - max);
    for (int64_t j = 0; j < cols; j++)
        y[j] = use_log ? (x[j] - max) - log(sum) : exp(x[j] - max) / sum;
}

static void softmax_run(struct env *e, int64_t rows, int64_t cols, double scale,
                        int use_log)
{
    int mark = th_arena_mark();
    const int64_t off = 3;
    int64_t cnt = rows * cols, nbuf = off + cnt + 2;
    float *hx = rand_floats(e, nbuf, -3 * scale, 3 * scale);
    float *hy = rand_floats(e, nbuf, 100, 200);
    double *want = floats_to_doubles(hy, nbuf);
    for (int64_t r = 0; r < rows; r++)
        ref_softmax_row(want + off + r * cols, hx + off + r * cols, cols, use_log);
    for (int64_t i = 0; i < nbuf; i++) want[i] = (float)want[i];

    /* backward from the forward's (float) output */
    float *y = TALLOC(float, nbuf);
    for (int64_t i = 0; i < nbuf; i++) y[i] = (float)want[i];
    float *hgy = rand_floats(e, nbuf, -1, 1), *hgx = rand_floats(e, nbuf, 100, 200);
    double *gwant = floats_to_doubles(hgx, nbuf);
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + off + r * cols, *gr = hgy + off + r * cols;
        double dot = 0;
        for (int64_t j = 0; j < cols; j++) dot += use_log ? gr[j] : (double)gr[j] * yr[j];
        for (int64_t j = 0; j < cols; j++)
            gwant[off + r * cols + j] =
                (float)(use_log ? gr[j] - exp(yr[j]) * dot : yr[j] * (gr[j] - dot));
    }

    cg_scope_begin(e->ctx);
    struct darr dx = darr_new(e, hx, nbuf), dy = darr_new(e, hy, nbuf);
    struct darr dyin = darr_new(e, y, nbuf), dgy = darr_new(e, hgy, nbuf);
    struct darr dgx = darr_new(e, hgx, nbuf);
    CHECK_OK(e, e->be->softmax(e->bctx, darr_at(dy, off), darr_at(dx, off), rows, cols,
                               use_log));
    CHECK_OK(e, e->be->softmax_backward(e->bctx, darr_at(dgx, off), darr_at(dyin, off),
                                        darr_at(dgy, off), rows, cols, use_log));
    float *got = darr_read(dy), *ggot = darr_read(dgx);
    char what[128];
    snprintf(what, sizeof what, "%s (%lld, %lld), logits scale %g",
             use_log ? "log_softmax" : "softmax", (long long)rows, (long long)cols, scale);
    th_assert_close(got, want, nbuf, 1e-5, use_log ? 1e-5 : 1e-6, what);
    strcat(what, ", backward");
    th_assert_close(ggot, gwant, nbuf, 1e-5, use_log ? 1e-5 : 1e-6, what);
    for (int64_t i = 0; i < nbuf; i++)
        if (isnan(got[i]) || isnan(ggot[i])) fail_msg("%s: NaN at %lld", what, (long long)i);
    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_softmax(void **state)
{
    struct env e = env_of(state, 107);
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {7, 33}, {33, 257}, {257, 7},
                                        {3, 1000}, {0, 5}, {5, 0}};
    for (int s = 0; s < NELEMS(shapes); s++)
        for (int use_log = 0; use_log < 2; use_log++) {
            softmax_run(&e, shapes[s][0], shapes[s][1], 1.0, use_log);
            /* logits around 1e4: exp without the max shift would overflow */
            softmax_run(&e, shapes[s][0], shapes[s][1], 1e4, use_log);
        }
}

/* ---- gathers and scatter-adds ---- */

static float *rand_indices(struct env *e, int64_t n, int64_t limit)
{
    float *x = TALLOC(float, n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(th_rand_u64(&e->rng) % (uint64_t)limit);
    return x;
}

static void index_rows_run(struct env *e, int64_t n, int64_t inner, int64_t rows)
{
    int mark = th_arena_mark();
    const int64_t off = 2;
    int64_t nsrc = off + rows * inner + 1, nout = off + n * inner + 3;
    float *hsrc = rand_floats(e, nsrc, -1, 1), *hout = rand_floats(e, nout, 100, 200);
    float *hupd = rand_floats(e, nout, -1, 1);      /* rows to scatter-add */
    float *hidx = rand_indices(e, n + off, rows);   /* n > rows repeats indices */
    double *want = floats_to_doubles(hout, nout);
    double *want_add = floats_to_doubles(hsrc, nsrc);
    for (int64_t i = 0; i < n; i++) {
        int64_t r = (int64_t)hidx[off + i];
        for (int64_t j = 0; j < inner; j++) {
            want[off + i * inner + j] = hsrc[off + r * inner + j];
            want_add[off + r * inner + j] += hupd[off + i * inner + j];
        }
    }
    for (int64_t i = 0; i < nsrc; i++) want_add[i] = (float)want_add[i];

    cg_scope_begin(e->ctx);
    struct darr dsrc = darr_new(e, hsrc, nsrc), dout = darr_new(e, hout, nout);
    struct darr didx = darr_new(e, hidx, n + off);
    struct darr dtab = darr_new(e, hsrc, nsrc), dupd = darr_new(e, hupd, nout);
    CHECK_OK(e, e->be->index_rows(e->bctx, darr_at(dout, off), darr_at(dsrc, off),
                                  darr_at(didx, off), n, inner));
    CHECK_OK(e, e->be->index_rows_add(e->bctx, darr_at(dtab, off), darr_at(dupd, off),
                                      darr_at(didx, off), n, inner));
    char what[128];
    snprintf(what, sizeof what, "index_rows (n %lld, inner %lld, rows %lld)", (long long)n,
             (long long)inner, (long long)rows);
    th_assert_close(darr_read(dout), want, nout, 0, 0, what);
    snprintf(what, sizeof what, "index_rows_add (n %lld, inner %lld, rows %lld)",
             (long long)n, (long long)inner, (long long)rows);
    th_assert_close(darr_read(dtab), want_add, nsrc, 1e-6, 1e-5, what);
    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void pick_run(struct env *e, int64_t rows, int64_t cols)
{
    int mark = th_arena_mark();
    const int64_t off = 1;
    int64_t nsrc = off + rows * cols + 2, nout = off + rows + 2;
    float *hsrc = rand_floats(e, nsrc, -1, 1), *hout = rand_floats(e, nout, -1, 1);
    float *hidx = rand_indices(e, rows + off, cols);
    double *want = floats_to_doubles(hout, nout), *want_add = floats_to_doubles(hsrc, nsrc);
    for (int64_t i = 0; i < rows; i++) {
        int64_t j = (int64_t)hidx[off + i];
        want[off + i] = hsrc[off + i * cols + j];
        want_add[off + i * cols + j] = (float)(want_add[off + i * cols + j] + hout[off + i]);
    }

    cg_scope_begin(e->ctx);
    struct darr dsrc = darr_new(e, hsrc, nsrc), dout = darr_new(e, hout, nout);
    struct darr didx = darr_new(e, hidx, rows + off);
    struct darr ddst = darr_new(e, hsrc, nsrc), dupd = darr_new(e, hout, nout);
    CHECK_OK(e, e->be->pick(e->bctx, darr_at(dout, off), darr_at(dsrc, off),
                            darr_at(didx, off), rows, cols));
    CHECK_OK(e, e->be->pick_add(e->bctx, darr_at(ddst, off), darr_at(dupd, off),
                                darr_at(didx, off), rows, cols));
    char what[96];
    snprintf(what, sizeof what, "pick (%lld, %lld)", (long long)rows, (long long)cols);
    th_assert_close(darr_read(dout), want, nout, 0, 0, what);
    snprintf(what, sizeof what, "pick_add (%lld, %lld)", (long long)rows, (long long)cols);
    th_assert_close(darr_read(ddst), want_add, nsrc, 2.4e-7, 0, what);
    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_index_ops(void **state)
{
    struct env e = env_of(state, 108);
    static const int64_t sizes[] = {0, 1, 7, 33, 257};
    static const int64_t inners[] = {1, 5, 33};
    for (int s = 0; s < NELEMS(sizes); s++) {
        for (int k = 0; k < NELEMS(inners); k++) {
            index_rows_run(&e, sizes[s], inners[k], 11);
            index_rows_run(&e, sizes[s], inners[k], 1);   /* every index repeats */
            pick_run(&e, sizes[s], inners[k]);
        }
        index_rows_run(&e, sizes[s], 0, 3);
    }
}

/* ---- optimizer updates ---- */

/* Float64 re-implementation of the torch.optim formulas (the "algorithm"
 * boxes of the PyTorch docs for SGD, Adam/AdamW and RMSprop). */
struct ref_optim {
    double *p, *s0, *s1, *s2;
};

static void ref_optim_step(const struct cg_optim_hparams *h, struct ref_optim *r,
                           const float *grad, int64_t n)
{
    double lr = h->lr, wd = h->weight_decay, mu = h->momentum;
    for (int64_t i = 0; i < n; i++) {
        double g = grad[i], p = r->p[i];
        switch (h->kind) {
        case CG_OPTIM_SGD:
            g += wd * p;
            if (mu != 0) {
                r->s0[i] = h->step == 1 ? g : mu * r->s0[i] + (1 - h->dampening) * g;
                g = h->nesterov ? g + mu * r->s0[i] : r->s0[i];
            }
            p -= lr * g;
            break;
        case CG_OPTIM_ADAM: {
            if (h->decoupled_weight_decay) p *= 1 - lr * wd;
            else g += wd * p;
            r->s0[i] = h->beta1 * r->s0[i] + (1 - h->beta1) * g;
            r->s1[i] = h->beta2 * r->s1[i] + (1 - h->beta2) * g * g;
            double bc1 = 1 - pow(h->beta1, (double)h->step);
            double bc2 = 1 - pow(h->beta2, (double)h->step);
            double mhat = r->s0[i] / bc1, vhat = r->s1[i] / bc2;
            p -= lr * mhat / (sqrt(vhat) + h->eps);
            break;
        }
        case CG_OPTIM_RMSPROP: {
            g += wd * p;
            double a = h->alpha;
            r->s0[i] = a * r->s0[i] + (1 - a) * g * g;
            double v = r->s0[i];
            if (h->centered) {
                r->s2[i] = a * r->s2[i] + (1 - a) * g;
                v -= r->s2[i] * r->s2[i];
            }
            double avg = sqrt(v) + h->eps;
            if (mu > 0) {
                r->s1[i] = mu * r->s1[i] + g / avg;
                p -= lr * r->s1[i];
            } else {
                p -= lr * g / avg;
            }
            break;
        }
        }
        r->p[i] = p;
    }
}

struct optim_case {
    const char *name;
    struct cg_optim_hparams h;
};

static const struct optim_case optim_cases[] = {
    {"sgd", {.kind = CG_OPTIM_SGD, .lr = 0.1f}},
    {"sgd wd", {.kind = CG_OPTIM_SGD, .lr = 0.1f, .weight_decay = 0.05f}},
    {"sgd momentum", {.kind = CG_OPTIM_SGD, .lr = 0.1f, .momentum = 0.9f}},
    {"sgd momentum dampening",
     {.kind = CG_OPTIM_SGD, .lr = 0.05f, .momentum = 0.8f, .dampening = 0.3f}},
    {"sgd nesterov wd",
     {.kind = CG_OPTIM_SGD, .lr = 0.05f, .momentum = 0.9f, .nesterov = 1,
      .weight_decay = 0.01f}},
    {"adam", {.kind = CG_OPTIM_ADAM, .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f}},
    {"adam wd",
     {.kind = CG_OPTIM_ADAM, .lr = 0.01f, .beta1 = 0.8f, .beta2 = 0.99f, .eps = 1e-6f,
      .weight_decay = 0.1f}},
    {"adamw",
     {.kind = CG_OPTIM_ADAM, .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
      .weight_decay = 0.01f, .decoupled_weight_decay = 1}},
    {"rmsprop", {.kind = CG_OPTIM_RMSPROP, .lr = 0.01f, .alpha = 0.99f, .eps = 1e-8f}},
    {"rmsprop centered",
     {.kind = CG_OPTIM_RMSPROP, .lr = 0.01f, .alpha = 0.9f, .eps = 1e-8f, .centered = 1}},
    {"rmsprop momentum wd",
     {.kind = CG_OPTIM_RMSPROP, .lr = 0.01f, .alpha = 0.99f, .eps = 1e-8f, .momentum = 0.9f,
      .weight_decay = 0.05f}},
    {"rmsprop centered momentum wd",
     {.kind = CG_OPTIM_RMSPROP, .lr = 0.005f, .alpha = 0.95f, .eps = 1e-7f, .momentum = 0.5f,
      .centered = 1, .weight_decay = 0.01f}},
};

static void optim_run(struct env *e, const struct optim_case *oc, int64_t n, int steps)
{
    int mark = th_arena_mark();
    const int64_t off = 1;
    int64_t nb = n + off + 1;
    float *hp = rand_floats(e, nb, -1, 1);
    float *zeros = TALLOC(float, nb);
    struct ref_optim r = {floats_to_doubles(hp, nb), TALLOC(double, nb), TALLOC(double, nb),
                          TALLOC(double, nb)};
    cg_scope_begin(e->ctx);
    struct darr dp = darr_new(e, hp, nb), dg = darr_new(e, zeros, nb);
    struct darr ds[3];
    struct cg_ptr state[3];
    for (int k = 0; k < 3; k++) {
        ds[k] = darr_new(e, zeros, nb);  /* torch.optim starts states at 0 */
        state[k] = darr_at(ds[k], off);
    }
    struct cg_optim_hparams h = oc->h;
    for (int t = 1; t <= steps; t++) {
        float *hg = rand_floats(e, nb, -1, 1);
        CHECK_OK(e, cg_tensor_set_data(dg.t, hg, nb));
        h.step = t;
        h.bias_correction1 = (float)(1 - pow(h.beta1, t));
        h.bias_correction2 = (float)(1 - pow(h.beta2, t));
        CHECK_OK(e, e->be->optim_update(e->bctx, &h, darr_at(dp, off), darr_at(dg, off),
                                        state, n));
        ref_optim_step(&h, &(struct ref_optim){r.p + off, r.s0 + off, r.s1 + off, r.s2 + off},
                       hg + off, n);
    }
    char what[128];
    snprintf(what, sizeof what, "%s, n %lld, %d steps: param", oc->name, (long long)n, steps);
    th_assert_close(darr_read(dp), r.p, nb, 1e-5, 1e-6, what);
    /* states in use: SGD momentum {0}; Adam {0, 1}; RMSProp {0, 1 if
     * momentum, 2 if centered} */
    const double *refs[3] = {r.s0, r.s1, r.s2};
    bool used[3] = {oc->h.kind != CG_OPTIM_SGD || oc->h.momentum != 0,
                    oc->h.kind == CG_OPTIM_ADAM ||
                        (oc->h.kind == CG_OPTIM_RMSPROP && oc->h.momentum > 0),
                    oc->h.kind == CG_OPTIM_RMSPROP && oc->h.centered};
    for (int k = 0; k < 3; k++) {
        if (!used[k]) continue;
        snprintf(what, sizeof what, "%s, n %lld, %d steps: state[%d]", oc->name,
                 (long long)n, steps, k);
        th_assert_close(darr_read(ds[k]), refs[k], nb, 1e-5, 1e-6, what);
    }
    cg_scope_end(e->ctx);
    th_arena_release(mark);
}

static void test_optim_update(void **state)
{
    struct env e = env_of(state, 109);
    static const int64_t sizes[] = {0, 1, 7, 33, 257};
    for (int c = 0; c < NELEMS(optim_cases); c++)
        for (int s = 0; s < NELEMS(sizes); s++) optim_run(&e, &optim_cases[c], sizes[s], 5);
    /* Larger tensors take other launch shapes on CPU devices (opencl's
     * exact launches: 1536 in groups of 512, 4099 as full groups plus the
     * rest at an offset). Adam's cases only: RMSProp with weight decay
     * computes grad + wd p in float on opencl, and among thousands of
     * random elements one cancels past this tolerance (6.6e-5 relative at
     * n = 4099, the same with the grid-stride kernel). */
    for (int c = 0; c < NELEMS(optim_cases); c++)
        if (optim_cases[c].h.kind == CG_OPTIM_ADAM) {
            optim_run(&e, &optim_cases[c], 1536, 5);
            optim_run(&e, &optim_cases[c], 4099, 5);
        }
}

/* ---- memory: upload, download, copy at offsets ---- */

static void test_memory_transfers(void **state)
{
    struct env e = env_of(state, 110);
    const size_t size = 1001;   /* odd: not a multiple of a float */
    unsigned char *model = TALLOC(unsigned char, size);
    unsigned char *src = TALLOC(unsigned char, size), *got = TALLOC(unsigned char, size);
    for (size_t i = 0; i < size; i++) model[i] = (unsigned char)th_rand_u64(&e.rng);
    struct cg_buffer *b1 = NULL, *b2 = NULL, *b0 = NULL;
    CHECK_OK(&e, e.be->alloc(e.bctx, size, &b1));
    CHECK_OK(&e, e.be->alloc(e.bctx, size, &b2));
    CHECK_OK(&e, e.be->alloc(e.bctx, 0, &b0));   /* zero-size is valid */
    assert_non_null(b1);
    assert_non_null(b2);
    CHECK_OK(&e, e.be->upload(e.bctx, b1, 0, model, size));

    /* partial uploads at aligned and odd offsets */
    struct { size_t off, len; } ups[] = {{12, 100}, {501, 37}, {0, 1}, {size - 3, 3}};
    for (int u = 0; u < NELEMS(ups); u++) {
        for (size_t i = 0; i < ups[u].len; i++) src[i] = (unsigned char)th_rand_u64(&e.rng);
        CHECK_OK(&e, e.be->upload(e.bctx, b1, ups[u].off, src, ups[u].len));
        memcpy(model + ups[u].off, src, ups[u].len);
    }
    /* src may be reused as soon as upload returns */
    memset(src, 0xAB, size);
    CHECK_OK(&e, e.be->download(e.bctx, got, b1, 0, size));
    assert_memory_equal(got, model, size);
    /* partial downloads */
    CHECK_OK(&e, e.be->download(e.bctx, got, b1, 333, 77));
    assert_memory_equal(got, model + 333, 77);

    /* copies: b1 -> b2 (whole, then at offsets), and within b2 */
    unsigned char *model2 = TALLOC(unsigned char, size);
    CHECK_OK(&e, e.be->copy(e.bctx, b2, 0, b1, 0, size));
    memcpy(model2, model, size);
    CHECK_OK(&e, e.be->copy(e.bctx, b2, 8, b1, 400, 256));
    memcpy(model2 + 8, model + 400, 256);
    CHECK_OK(&e, e.be->copy(e.bctx, b2, 701, b1, 3, 99));
    memcpy(model2 + 701, model + 3, 99);
    CHECK_OK(&e, e.be->copy(e.bctx, b2, 500, b2, 100, 50));   /* same buffer */
    memmove(model2 + 500, model2 + 100, 50);
    /* zero-byte transfers are no-ops */
    CHECK_OK(&e, e.be->upload(e.bctx, b2, 5, src, 0));
    CHECK_OK(&e, e.be->copy(e.bctx, b2, 5, b1, 9, 0));
    CHECK_OK(&e, e.be->download(e.bctx, got, b2, 0, size));
    assert_memory_equal(got, model2, size);
    CHECK_OK(&e, e.be->download(e.bctx, got, b1, 0, size));
    assert_memory_equal(got, model, size);
    CHECK_OK(&e, e.be->finish(e.bctx));
    e.be->release(e.bctx, b0);
    e.be->release(e.bctx, b1);
    e.be->release(e.bctx, b2);
}

/* ---- stats ---- */

static void test_stats(void **state)
{
    struct env e = env_of(state, 111);
    bool exact = is_cpu();   /* no pool: every count is known exactly */
    struct cg_backend_stats s0, s;
    CHECK_OK(&e, e.be->finish(e.bctx));
    e.be->reset_stats(e.bctx);
    e.be->get_stats(e.bctx, &s0);
    assert_int_equal(s0.uploads, 0);
    assert_int_equal(s0.downloads, 0);
    assert_int_equal(s0.upload_bytes, 0);
    assert_int_equal(s0.download_bytes, 0);
    assert_int_equal(s0.launches, 0);
    assert_int_equal(s0.device_allocs, 0);
    assert_true(s0.bytes_peak >= s0.bytes_in_use);
    assert_true(s0.bytes_reserved >= s0.bytes_in_use);

    const size_t bytes = 4096 + 36;
    struct cg_buffer *b = NULL;
    CHECK_OK(&e, e.be->alloc(e.bctx, bytes, &b));
    e.be->get_stats(e.bctx, &s);
    assert_int_equal(s.device_allocs, 1);   /* a fresh context has an empty pool */
    assert_true(s.bytes_in_use >= s0.bytes_in_use + bytes);
    assert_true(s.bytes_peak >= s.bytes_in_use);
    assert_true(s.bytes_reserved >= s.bytes_in_use);
    if (exact) assert_int_equal(s.bytes_in_use, s0.bytes_in_use + bytes);

    float *h = rand_floats(&e, (int64_t)(bytes / 4), -1, 1);
    CHECK_OK(&e, e.be->upload(e.bctx, b, 0, h, bytes));
    CHECK_OK(&e, e.be->upload(e.bctx, b, 8, h, 100));
    CHECK_OK(&e, e.be->download(e.bctx, h, b, 4, 1000));
    e.be->get_stats(e.bctx, &s);
    assert_int_equal(s.uploads, 2);
    assert_int_equal(s.upload_bytes, bytes + 100);
    assert_int_equal(s.downloads, 1);
    assert_int_equal(s.download_bytes, 1000);

    uint64_t before = s.launches;
    struct cg_view v = {.buf = b, .off = 0, .ndim = 1, .shape = {100}, .strides = {1}};
    CHECK_OK(&e, e.be->fill(e.bctx, &v, 1.0f));
    CHECK_OK(&e, e.be->ew(e.bctx, CG_EW_EXP, 0, 0, &v, &v, NULL));
    e.be->get_stats(e.bctx, &s);
    if (exact) assert_int_equal(s.launches, before + 2);
    else assert_true(s.launches >= before + 2);

    uint64_t peak = s.bytes_peak;
    e.be->release(e.bctx, b);
    CHECK_OK(&e, e.be->finish(e.bctx));
    e.be->get_stats(e.bctx, &s);
    assert_int_equal(s.bytes_in_use, s0.bytes_in_use);
    assert_true(s.bytes_peak >= peak);
    e.be->reset_stats(e.bctx);
    e.be->get_stats(e.bctx, &s);
    assert_int_equal(s.uploads, 0);
    assert_int_equal(s.launches, 0);
    assert_int_equal(s.bytes_in_use, s0.bytes_in_use);
}

/* ---- device and error reporting ---- */

static void test_device_info(void **state)
{
    struct env e = env_of(state, 112);
    const struct cg_device_info *d = cg_ctx_device(e.ctx);
    assert_non_null(d);
    assert_true(strlen(d->name) > 0);
    assert_true(d->global_mem_bytes > 0);
    assert_true(d->compute_units >= 1);
    assert_int_equal(e.be->abi_version, CG_BACKEND_ABI_VERSION);
    assert_true(e.be->struct_size >= sizeof(struct cg_backend_i));
    assert_string_equal(e.be->name, th_backend());
    /* every member of the ABI is present (only preferred_device is optional) */
#define HAS(m) {#m, e.be->m != NULL}
    const struct { const char *name; bool present; } members[] = {
        HAS(list_devices), HAS(open), HAS(close), HAS(last_error), HAS(alloc),
        HAS(release), HAS(upload), HAS(download), HAS(copy), HAS(fill), HAS(ew),
        HAS(reduce), HAS(gemm), HAS(softmax), HAS(softmax_backward), HAS(index_rows),
        HAS(index_rows_add), HAS(pick), HAS(pick_add), HAS(optim_update), HAS(finish),
        HAS(get_stats), HAS(reset_stats)};
#undef HAS
    for (int i = 0; i < NELEMS(members); i++)
        if (!members[i].present) fail_msg("backend member %s is NULL", members[i].name);
    int count = -1;
    char err[256] = "";
    struct cg_device_info list[4];
    CHECK_OK(&e, e.be->list_devices(list, 4, &count, err, sizeof err));
    assert_true(count >= 1);
    CHECK_OK(&e, e.be->list_devices(NULL, 0, &count, err, sizeof err));
    assert_true(count >= 1);
    if (is_cpu()) {
        assert_int_equal(count, 1);
        assert_int_equal(list[0].type, CG_DEVICE_CPU);
        void *other = NULL;
        assert_int_equal(e.be->open(1, &other, err, sizeof err), CG_STATUS_DEVICE_NOT_FOUND);
        assert_non_null(strstr(err, "no device 1"));
    }
}

/* The cpu oracle checks bounds so that a frontend bug is an error, not a
 * corrupted heap (other backends are not required to). */
static void test_cpu_rejects_bad_arguments(void **state)
{
    if (!is_cpu()) skip();
    struct env e = env_of(state, 113);
    float h[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    cg_scope_begin(e.ctx);
    struct darr d = darr_new(&e, h, 8);
    struct cg_view v = {.buf = d.buf, .off = d.off, .ndim = 2, .shape = {3, 3},
                        .strides = {3, 1}};
    assert_int_equal(e.be->fill(e.bctx, &v, 0), CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "fill out"));
    v.shape[0] = 2;
    struct cg_view a = v;
    a.ndim = 1;
    assert_int_equal(e.be->ew(e.bctx, CG_EW_ADD, 0, 0, &v, &v, &a), CG_STATUS_SHAPE_MISMATCH);
    assert_int_equal(e.be->ew(e.bctx, CG_EW_ADD, 0, 0, &v, &v, NULL),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_int_equal(e.be->reduce(e.bctx, CG_REDUCE_SUM, darr_at(d, 0), darr_at(d, 0), 3, 3,
                                  1, 1.0f),
                     CG_STATUS_INVALID_ARGUMENT);
    struct cg_gemm_desc g = {.m = 2, .n = 2, .k = 2, .lda = 1, .ldb = 2, .ldc = 2,
                             .alpha = 1, .batch = 1};
    assert_int_equal(e.be->gemm(e.bctx, &g, darr_at(d, 0), darr_at(d, 0), darr_at(d, 4)),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "pitch"));
    float bad[2] = {1.5f, 0};
    struct darr di = darr_new(&e, bad, 2);
    assert_int_equal(e.be->pick(e.bctx, darr_at(d, 0), darr_at(d, 0), darr_at(di, 0), 2, 4),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(e.be->last_error(e.bctx), "index 1.5"));
    struct cg_optim_hparams oh = {.kind = CG_OPTIM_ADAM, .step = 1, .bias_correction1 = 0.1f,
                                  .bias_correction2 = 0.001f};
    struct cg_ptr st[3] = {{NULL, 0}, {NULL, 0}, {NULL, 0}};
    assert_int_equal(e.be->optim_update(e.bctx, &oh, darr_at(d, 0), darr_at(d, 4), st, 4),
                     CG_STATUS_INVALID_ARGUMENT);
    /* nothing was written */
    float back[8];
    CHECK_OK(&e, cg_tensor_to_host(d.t, back, 8));
    assert_memory_equal(back, h, sizeof h);
    cg_scope_end(e.ctx);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_device_info),
        T(test_memory_transfers),
        T(test_stats),
        T(test_fill_strided),
        T(test_ew_all_ops_all_layouts),
        T(test_ew_extremes),
        T(test_reduce),
        T(test_gemm),
        T(test_gemm_large),
        T(test_softmax),
        T(test_index_ops),
        T(test_optim_update),
        T(test_cpu_rejects_bad_arguments),
    };
#undef T
    return TH_RUN(tests);
}
