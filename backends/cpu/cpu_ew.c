/*
 * backends/cpu/cpu_ew.c — fill and elementwise ops over strided n-d views.
 *
 * Each element is computed in double from the float inputs and rounded once,
 * so the results are as close to the exact formula as float allows. The
 * formulas are those of enum cg_ew_op in include/clgrad/backend.h.
 *
 * Speed: a view is walked one row (its last dim) at a time. A row whose
 * elements are adjacent in out and adjacent or broadcast (stride 0) in a and
 * b goes through ew_row_fast, plain loops the compiler vectorises; ops whose
 * float result equals the double result rounded once (+, -, *, /, sqrt,
 * comparisons, selects: IEEE 754 operations are correctly rounded, and
 * double has more than 2 * 24 + 2 bits, so rounding twice is harmless —
 * Figueroa, "When is double rounding innocuous?", SIGNUM 1995) are done in
 * float, the others in double as below. Results are bit-identical to the
 * per-element double path, which remains for every other row.
 */
#include <math.h>

#include "cpu.h"

#define CG_SQRT1_2 0.70710678118654752440      /* 1 / sqrt(2)      */
#define CG_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi)   */

/* Logistic function without overflow: exp() only sees -|x|. */
static double sigmoid(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* Standard normal CDF, Phi(x) = (1 + erf(x / sqrt 2)) / 2. */
static double normal_cdf(double x)
{
    return 0.5 * (1.0 + erf(x * CG_SQRT1_2));
}

/* The formula of one op (backend.h); x = a, g = b. Comparisons are written
 * so that NaN propagates as in PyTorch (relu, clamp, maximum, minimum). */
static double ew_apply(enum cg_ew_op op, double p0, double p1, double x, double g)
{
    switch (op) {
    case CG_EW_COPY: return x;
    case CG_EW_NEG: return -x;
    case CG_EW_EXP: return exp(x);
    case CG_EW_LOG: return log(x);
    case CG_EW_SQRT: return sqrt(x);
    case CG_EW_ABS: return fabs(x);
    case CG_EW_RELU: return x < 0 ? 0.0 : x;
    case CG_EW_SIGMOID: return sigmoid(x);
    case CG_EW_TANH: return tanh(x);
    case CG_EW_GELU: return x * normal_cdf(x);  /* PyTorch GELU, approximate='none' */
    case CG_EW_POW_SCALAR: return pow(x, p0);
    case CG_EW_CLAMP: return x < p0 ? p0 : (x > p1 ? p1 : x);
    case CG_EW_AFFINE: return p0 * x + p1;
    case CG_EW_SIGN: return x > 0 ? 1.0 : (x < 0 ? -1.0 : x);  /* keeps 0 and NaN */
    case CG_EW_ADD: return x + g;
    case CG_EW_SUB: return x - g;
    case CG_EW_MUL: return x * g;
    case CG_EW_DIV: return x / g;
    case CG_EW_MAXIMUM: return (x > g || isnan(x)) ? x : g;
    case CG_EW_MINIMUM: return (x < g || isnan(x)) ? x : g;
    case CG_EW_EQ: return x == g ? 1.0 : 0.0;
    case CG_EW_GT: return x > g ? 1.0 : 0.0;
    case CG_EW_AXPBY: return p0 * x + p1 * g;
    case CG_EW_RELU_BACKWARD: return x > 0 ? g : 0.0;
    case CG_EW_SIGMOID_BACKWARD: return g * x * (1.0 - x);   /* x = y */
    case CG_EW_TANH_BACKWARD: return g * (1.0 - x * x);      /* x = y */
    case CG_EW_GELU_BACKWARD:
        /* d/dx x Phi(x) = Phi(x) + x phi(x), phi the standard normal pdf */
        return g * (normal_cdf(x) + x * CG_INV_SQRT_2PI * exp(-0.5 * x * x));
    case CG_EW_POW_SCALAR_BACKWARD:
        /* PyTorch pow_backward: a zero exponent gives a zero gradient even
         * where x^-1 is infinite. */
        return p0 == 0 ? 0.0 : g * p0 * pow(x, p0 - 1.0);
    case CG_EW_CLAMP_BACKWARD: return (x >= p0 && x <= p1) ? g : 0.0;
    case CG_EW_COUNT: break;
    }
    return NAN;  /* unreachable: cg__cpu_ew rejects unknown ops */
}

static cg_status check_same_shape(struct cg_cpu_ctx *c, const struct cg_view *out,
                                  const struct cg_view *v, const char *what)
{
    bool same = v->ndim == out->ndim;
    for (int d = 0; same && d < out->ndim; d++) same = v->shape[d] == out->shape[d];
    if (!same)
        return cg__cpu_error(c, CG_STATUS_SHAPE_MISMATCH,
                             "ew: %s has ndim %d, shape differs from out's (ndim %d)", what,
                             v->ndim, out->ndim);
    return CG_OK;
}

/* Rows whose output elements are adjacent: o[i] = op(a[SA * i], b[SB * i])
 * for i < n; SA and SB are constants 0 or 1 where the loops vectorise, else
 * the row's strides. Returns false for ops left to the double path. b is a valid pointer even for unary ops (the caller
 * passes a), so every loop reads it alike. */
#define EW_LOOP(SA, SB, expr)                                                             \
    do {                                                                                  \
        for (int64_t i = 0; i < n; i++) {                                                 \
            const float x = a[(SA) * i], g = b[(SB) * i];                                 \
            (void)g;                                                                      \
            o[i] = (expr);                                                                \
        }                                                                                 \
        return true;                                                                      \
    } while (0)

#define EW_ROW_CASES(SA, SB)                                                              \
    switch (op) {                                                                         \
    case CG_EW_COPY: EW_LOOP(SA, SB, x);                                                  \
    case CG_EW_NEG: EW_LOOP(SA, SB, -x);                                                  \
    case CG_EW_SQRT: EW_LOOP(SA, SB, sqrtf(x));                                           \
    case CG_EW_ABS: EW_LOOP(SA, SB, fabsf(x));                                            \
    case CG_EW_RELU: EW_LOOP(SA, SB, x < 0 ? 0.0f : x);                                   \
    case CG_EW_CLAMP: EW_LOOP(SA, SB, x < p0 ? p0 : (x > p1 ? p1 : x));                   \
    case CG_EW_AFFINE: EW_LOOP(SA, SB, (float)((double)p0 * x + (double)p1));             \
    case CG_EW_SIGN: EW_LOOP(SA, SB, x > 0 ? 1.0f : (x < 0 ? -1.0f : x));                 \
    case CG_EW_ADD: EW_LOOP(SA, SB, x + g);                                               \
    case CG_EW_SUB: EW_LOOP(SA, SB, x - g);                                               \
    case CG_EW_MUL: EW_LOOP(SA, SB, x * g);                                               \
    case CG_EW_DIV: EW_LOOP(SA, SB, x / g);                                               \
    case CG_EW_MAXIMUM: EW_LOOP(SA, SB, (x > g || x != x) ? x : g);                       \
    case CG_EW_MINIMUM: EW_LOOP(SA, SB, (x < g || x != x) ? x : g);                       \
    case CG_EW_EQ: EW_LOOP(SA, SB, x == g ? 1.0f : 0.0f);                                 \
    case CG_EW_GT: EW_LOOP(SA, SB, x > g ? 1.0f : 0.0f);                                  \
    case CG_EW_AXPBY: EW_LOOP(SA, SB, (float)((double)p0 * x + (double)p1 * g));          \
    case CG_EW_RELU_BACKWARD: EW_LOOP(SA, SB, x > 0 ? g : 0.0f);                          \
    case CG_EW_SIGMOID_BACKWARD: EW_LOOP(SA, SB, (float)((double)g * x * (1.0 - x)));     \
    case CG_EW_TANH_BACKWARD: EW_LOOP(SA, SB, (float)((double)g * (1.0 - (double)x * x))); \
    case CG_EW_CLAMP_BACKWARD: EW_LOOP(SA, SB, (x >= p0 && x <= p1) ? g : 0.0f);          \
    default: return false;                                                                \
    }

CG_CPU_KERNEL static bool ew_row_fast(enum cg_ew_op op, float p0, float p1, int64_t n,
                                      float *o, const float *a, int64_t sa, const float *b,
                                      int64_t sb)
{
    /* o: (n) adjacent; a, b: (n) with strides sa, sb */
    if (sa == 1 && sb == 1) EW_ROW_CASES(1, 1)
    if (sa == 1 && sb == 0) EW_ROW_CASES(1, 0)
    if (sa == 0 && sb == 1) EW_ROW_CASES(0, 1)
    /* Any other strides (a transposed gradient being copied, say): scalar
     * loads, but no per-element switch or double round trip. */
    EW_ROW_CASES(sa, sb)
}

/* Any row: strides of any sign, every op, in double. */
static void ew_row_generic(enum cg_ew_op op, double p0, double p1, int64_t n, float *o,
                           int64_t so, const float *a, int64_t sa, const float *b, int64_t sb)
{
    for (int64_t i = 0; i < n; i++) {
        /* Read both inputs before writing: out may be a or b (in place). */
        double x = a[i * sa], g = b ? b[i * sb] : 0.0;
        o[i * so] = (float)ew_apply(op, p0, p1, x, g);
    }
}

/* Calls row(k, offsets) for every row of the views' shared shape: dims
 * 0..ndim-2 are walked by an odometer, the last dim is the row. */
struct ew_rows {
    int outer_nd;
    int64_t shape[CG_MAX_DIMS], idx[CG_MAX_DIMS];
    int64_t off[3];
    int64_t strides[3][CG_MAX_DIMS];
};

static void rows_init(struct ew_rows *r, const struct cg_view *const v[3])
{
    *r = (struct ew_rows){.outer_nd = v[0]->ndim > 0 ? v[0]->ndim - 1 : 0};
    for (int d = 0; d < r->outer_nd; d++) r->shape[d] = v[0]->shape[d];
    for (int k = 0; k < 3; k++) {
        if (!v[k]) continue;
        r->off[k] = v[k]->off;
        for (int d = 0; d < r->outer_nd; d++) r->strides[k][d] = v[k]->strides[d];
    }
}

static void rows_next(struct ew_rows *r)
{
    for (int d = r->outer_nd - 1; d >= 0; d--) {
        for (int k = 0; k < 3; k++) r->off[k] += r->strides[k][d];
        if (++r->idx[d] < r->shape[d]) return;
        for (int k = 0; k < 3; k++) r->off[k] -= r->strides[k][d] * r->shape[d];
        r->idx[d] = 0;
    }
}

/* Puts the odometer at row r (rows numbered in row-major order). */
static void rows_seek(struct ew_rows *r, const struct cg_view *const v[3], int64_t row)
{
    for (int d = r->outer_nd - 1; d >= 0; d--) {
        r->idx[d] = r->shape[d] ? row % r->shape[d] : 0;
        row = r->shape[d] ? row / r->shape[d] : 0;
    }
    for (int k = 0; k < 3; k++) {
        r->off[k] = v[k] ? v[k]->off : 0;
        for (int d = 0; d < r->outer_nd; d++) r->off[k] += r->idx[d] * r->strides[k][d];
    }
}

/* Row length and the strides along it (a 0-d view is one row of one). */
static int64_t row_len(const struct cg_view *v) { return v->ndim ? v->shape[v->ndim - 1] : 1; }
static int64_t row_stride(const struct cg_view *v)
{
    return v && v->ndim ? v->strides[v->ndim - 1] : 1;
}

struct ew_job {
    enum cg_ew_op op;
    float p0, p1;
    const struct cg_view *views[3];     /* out, a, b (NULL when unary) */
};

/* Elements [lo, hi) of the views in row-major order: the row pieces of
 * that range, each through ew_row_fast or ew_row_generic. */
static void ew_range(void *arg, int64_t lo, int64_t hi)
{
    const struct ew_job *j = arg;
    const struct cg_view *out = j->views[0], *a = j->views[1], *b = j->views[2];
    struct ew_rows it;
    rows_init(&it, j->views);
    int64_t n = row_len(out), so = row_stride(out), sa = row_stride(a), sb = row_stride(b);
    rows_seek(&it, j->views, lo / n);
    float *po = out->buf->data;
    const float *pa = a->buf->data, *pb = b ? b->buf->data : NULL;
    bool fast_layout = so == 1;
    for (int64_t e = lo % n, at = lo; at < hi; e = 0, rows_next(&it)) {
        int64_t len = n - e < hi - at ? n - e : hi - at;
        float *o = po + it.off[0] + e * so;
        const float *ra = pa + it.off[1] + e * sa, *rb = b ? pb + it.off[2] + e * sb : ra;
        at += len;
        if (fast_layout && ew_row_fast(j->op, j->p0, j->p1, len, o, ra, sa, rb, b ? sb : sa))
            continue;
        ew_row_generic(j->op, j->p0, j->p1, len, o, so, ra, sa, b ? rb : NULL, sb);
    }
}

/* Elements per part when an op is split across threads. A libm call in
 * double (exp, log, tanh, erf, pow) costs ~10-30 ns an element against
 * well under 1 ns for an add, so those ops split at 1/16 of the size: a
 * 4k-element GELU takes longer than a 64k-element add. */
static int64_t ew_grain(enum cg_ew_op op)
{
    switch (op) {
    case CG_EW_EXP:
    case CG_EW_LOG:
    case CG_EW_SIGMOID:
    case CG_EW_TANH:
    case CG_EW_GELU:
    case CG_EW_POW_SCALAR:
    case CG_EW_GELU_BACKWARD:
    case CG_EW_POW_SCALAR_BACKWARD: return CG_CPU_PAR_MIN / 32;
    default: return CG_CPU_PAR_MIN / 2;
    }
}

cg_status cg__cpu_ew(void *ctx, enum cg_ew_op op, float p0, float p1,
                     const struct cg_view *out, const struct cg_view *a,
                     const struct cg_view *b)
{
    /* out, a, b: strided views of one shape; a and b may broadcast
     * (stride 0); out may be a or b with the identical view */
    struct cg_cpu_ctx *c = ctx;
    if ((int)op < 0 || op >= CG_EW_COUNT)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "ew: unknown op %d", (int)op);
    bool binary = op >= CG_EW_FIRST_BINARY;
    if (binary && !b)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "ew: binary op %d without b",
                             (int)op);
    if (!binary) b = NULL;
    cg_status s = cg__cpu_check_view(c, out, "ew out");
    if (s == CG_OK) s = cg__cpu_check_view(c, a, "ew a");
    if (s == CG_OK && b) s = cg__cpu_check_view(c, b, "ew b");
    if (s == CG_OK) s = check_same_shape(c, out, a, "a");
    if (s == CG_OK && b) s = check_same_shape(c, out, b, "b");
    if (s != CG_OK) return s;
    c->stats.launches++;

    int64_t numel = cg__cpu_view_numel(out);
    if (numel == 0) return CG_OK;
    if (out->ndim <= 1 && row_stride(out) == 1 && numel < ew_grain(op)) {
        /* One row, too small to split (the flat views the core makes for
         * same-shape operands): ew_range's row body without its walk. */
        int64_t sa = row_stride(a), sb = row_stride(b);
        float *o = out->buf->data + out->off;
        const float *ra = a->buf->data + a->off, *rb = b ? b->buf->data + b->off : ra;
        if (!ew_row_fast(op, p0, p1, numel, o, ra, sa, rb, b ? sb : sa))
            ew_row_generic(op, p0, p1, numel, o, 1, ra, sa, b ? rb : NULL, sb);
        return CG_OK;
    }
    struct ew_job job = {.op = op, .p0 = p0, .p1 = p1, .views = {out, a, b}};
    /* Large views are split across the thread pool by element ranges;
     * every element is computed alike wherever a range starts. */
    cg__cpu_parallel_for(c, numel, ew_grain(op), ew_range, &job);
    return CG_OK;
}

CG_CPU_KERNEL static void fill_row(float *o, int64_t n, int64_t stride, float value)
{
    if (stride == 1) {
        for (int64_t i = 0; i < n; i++) o[i] = value;
    } else {
        for (int64_t i = 0; i < n; i++) o[i * stride] = value;
    }
}

struct fill_job {
    float value;
    const struct cg_view *views[3];     /* out, NULL, NULL */
};

/* Elements [lo, hi) of out in row-major order. */
static void fill_range(void *arg, int64_t lo, int64_t hi)
{
    const struct fill_job *j = arg;
    const struct cg_view *out = j->views[0];
    struct ew_rows it;
    rows_init(&it, j->views);
    int64_t n = row_len(out), so = row_stride(out);
    rows_seek(&it, j->views, lo / n);
    for (int64_t e = lo % n, at = lo; at < hi; e = 0, rows_next(&it)) {
        int64_t len = n - e < hi - at ? n - e : hi - at;
        fill_row(out->buf->data + it.off[0] + e * so, len, so, j->value);
        at += len;
    }
}

cg_status cg__cpu_fill(void *ctx, const struct cg_view *out, float value)
{
    /* out: a strided view of any shape */
    struct cg_cpu_ctx *c = ctx;
    cg_status s = cg__cpu_check_view(c, out, "fill out");
    if (s != CG_OK) return s;
    c->stats.launches++;

    int64_t numel = cg__cpu_view_numel(out);
    if (numel == 0) return CG_OK;
    struct fill_job job = {.value = value, .views = {out, NULL, NULL}};
    cg__cpu_parallel_for(c, numel, CG_CPU_PAR_MIN / 2, fill_range, &job);
    return CG_OK;
}
