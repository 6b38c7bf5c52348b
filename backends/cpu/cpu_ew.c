/*
 * backends/cpu/cpu_ew.c — fill and elementwise ops over strided n-d views.
 *
 * Each element is computed in double from the float inputs and rounded once,
 * so the results are as close to the exact formula as float allows. The
 * formulas are those of enum cg_ew_op in include/clgrad/backend.h.
 */
#include <math.h>

#include "cpu.h"

#define CG_SQRT1_2 0.70710678118654752440      /* 1 / sqrt(2)      */
#define CG_INV_SQRT_2PI 0.39894228040143267794 /* 1 / sqrt(2 pi)   */

/* Odometer over a strided n-d index space: advances idx and the element
 * offsets of up to three views that share one shape. */
struct ew_iter {
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t idx[CG_MAX_DIMS];
    int64_t off[3];
    int64_t strides[3][CG_MAX_DIMS];
};

static void iter_init(struct ew_iter *it, const struct cg_view *const v[3])
{
    *it = (struct ew_iter){.ndim = v[0]->ndim};
    for (int d = 0; d < it->ndim; d++) it->shape[d] = v[0]->shape[d];
    for (int k = 0; k < 3; k++) {
        if (!v[k]) continue;
        it->off[k] = v[k]->off;
        for (int d = 0; d < it->ndim; d++) it->strides[k][d] = v[k]->strides[d];
    }
}

static void iter_next(struct ew_iter *it)
{
    for (int d = it->ndim - 1; d >= 0; d--) {
        for (int k = 0; k < 3; k++) it->off[k] += it->strides[k][d];
        if (++it->idx[d] < it->shape[d]) return;
        for (int k = 0; k < 3; k++) it->off[k] -= it->strides[k][d] * it->shape[d];
        it->idx[d] = 0;
    }
}

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
    const struct cg_view *const views[3] = {out, a, b};
    struct ew_iter it;
    iter_init(&it, views);
    float *po = out->buf->data;
    const float *pa = a->buf->data, *pb = b ? b->buf->data : NULL;
    for (int64_t e = 0; e < numel; e++, iter_next(&it)) {
        /* Read both inputs before writing: out may be a or b (in place). */
        double x = pa[it.off[1]], g = pb ? pb[it.off[2]] : 0.0;
        po[it.off[0]] = (float)ew_apply(op, p0, p1, x, g);
    }
    return CG_OK;
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
    const struct cg_view *const views[3] = {out, NULL, NULL};
    struct ew_iter it;
    iter_init(&it, views);
    for (int64_t e = 0; e < numel; e++, iter_next(&it)) out->buf->data[it.off[0]] = value;
    return CG_OK;
}
