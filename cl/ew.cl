/*
 * cl/ew.cl - elementwise ops and fill (OpenCL C 1.2, float32).
 *
 * One kernel serves every op in enum cg_ew_op (include/clgrad/backend.h):
 * `op` is the same for all work-items, so the switch costs a uniform branch,
 * and one program build covers all ops (a -D per op would mean one build
 * each, ~1 s cold on PoCL). enum cg_ew_op itself is not written here:
 * tools/embed_cl.py copies it from backend.h in front of this file, with
 * cl/cg_erf.h, so the op numbers are the host's by construction.
 *
 * Offsets, shapes and strides are in elements. Every kernel loops with a
 * grid stride, so the host may launch fewer work-items than elements.
 */

#define CG_INV_SQRT_2PI 0.39894228040143267794f /* 1 / sqrt(2 pi) */

/* Stable logistic: never evaluates exp of a large positive number. */
static float cg_sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + exp(-x));
    float e = exp(x);
    return e / (1.0f + e);
}

/* erf(x / sqrt 2) given e2 = exp(-x^2 / 2), Abramowitz & Stegun 7.1.26
 * (|error| <= 1.5e-7, cl/cg_erf.h), in the form of PyTorch's vectorised
 * erf (ATen vec256_float.h) and of cl/seq.cl's bias_gelu:
 *   erf(a) = sign(a) (1 - t P(t) exp(-a^2)),  t = 1 / (1 + p |a|).
 * Straight-line code: PoCL vectorises it across work-items, where the
 * built-in erf's branches keep a kernel scalar (~20x slower, PoCL 3.1). The
 * 1 - ... then 1 + erf cancel to 0 in the far negative tail as the built-in
 * erf and PyTorch's GELU do, and GELU's density shares the exp. */
static float cg_erf_sqrt1_2(float x, float e2)
{
    float t = 1.0f / (1.0f + CG_ERF_P_SQRT1_2 * fabs(x));
    float p = CG_ERF_POLY(t);
    float r = 1.0f - p * t * e2;
    return x < 0.0f ? -r : r;
}

/* NaN-propagating max/min, as torch.maximum/minimum (fmax would drop NaN). */
static float cg_max_nan(float a, float b) { return (a > b || isnan(a)) ? a : b; }
static float cg_min_nan(float a, float b) { return (a < b || isnan(a)) ? a : b; }

static float cg_ew_apply(int op, float x, float g, float p0, float p1)
{
    switch (op) {
    case CG_EW_COPY:        return x;
    case CG_EW_NEG:         return -x;
    case CG_EW_EXP:         return exp(x);
    case CG_EW_LOG:         return log(x);
    case CG_EW_SQRT:        return sqrt(x);
    case CG_EW_ABS:         return fabs(x);
    case CG_EW_RELU:        return x < 0.0f ? 0.0f : x;
    case CG_EW_SIGMOID:     return cg_sigmoid(x);
    case CG_EW_TANH:        return tanh(x);
    /* PyTorch GELU (approximate='none'): x * Phi(x), Phi(x) = (1 + erf(x/sqrt 2)) / 2 */
    case CG_EW_GELU:
        return x * 0.5f * (1.0f + cg_erf_sqrt1_2(x, exp(-0.5f * x * x)));
    case CG_EW_POW_SCALAR:  return pow(x, p0);
    case CG_EW_CLAMP: {
        float t = x < p0 ? p0 : x;     /* min(max(x, p0), p1), NaN stays NaN */
        return t > p1 ? p1 : t;
    }
    case CG_EW_AFFINE:      return p0 * x + p1;
    case CG_EW_SIGN:        return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
    case CG_EW_ADD:         return x + g;
    case CG_EW_SUB:         return x - g;
    case CG_EW_MUL:         return x * g;
    case CG_EW_DIV:         return x / g;
    case CG_EW_MAXIMUM:     return cg_max_nan(x, g);
    case CG_EW_MINIMUM:     return cg_min_nan(x, g);
    case CG_EW_EQ:          return x == g ? 1.0f : 0.0f;
    case CG_EW_GT:          return x > g ? 1.0f : 0.0f;
    case CG_EW_AXPBY:       return p0 * x + p1 * g;
    case CG_EW_RELU_BACKWARD:    return x > 0.0f ? g : 0.0f;
    case CG_EW_SIGMOID_BACKWARD: return g * x * (1.0f - x);     /* x = y */
    case CG_EW_TANH_BACKWARD:    return g * (1.0f - x * x);     /* x = y */
    /* d/dx x*Phi(x) = Phi(x) + x*phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi) */
    case CG_EW_GELU_BACKWARD: {
        float e2 = exp(-0.5f * x * x);
        float cdf = 0.5f * (1.0f + cg_erf_sqrt1_2(x, e2));
        float pdf = CG_INV_SQRT_2PI * e2;
        return g * (cdf + x * pdf);
    }
    case CG_EW_POW_SCALAR_BACKWARD: return g * p0 * pow(x, p0 - 1.0f);
    case CG_EW_CLAMP_BACKWARD:   return (x >= p0 && x <= p1) ? g : 0.0f;
    default:                  return NAN;
    }
}

/* ---- kernels ----
 * (backends/opencl/fuse.c prefixes its generated kernels with the source
 * above this line: keep every helper above it.) */

/* Flat path: out is contiguous; each input is contiguous (step 1) or a
 * broadcast scalar (step 0).
 * out: (n) at oo; a: (n) at ao, step sa; b: (n) at bo, step sb. */
__kernel void ew_flat(__global float *out, long oo,
                      __global const float *a, long ao, long sa,
                      __global const float *b, long bo, long sb,
                      int op, float p0, float p1, long n)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        float x = a[ao + i * sa];
        float g = b[bo + i * sb];
        out[oo + i] = cg_ew_apply(op, x, g, p0, p1);
    }
}

/* Offsets of linear index i (row-major over shape) in three views. */
static void cg_offsets3(long i, int ndim, const long *shape, const long *so,
                        const long *sa, const long *sb,
                        long *o, long *ia, long *ib)
{
    for (int d = ndim - 1; d >= 0; --d) {
        long c = i % shape[d];
        i /= shape[d];
        *o += c * so[d];
        *ia += c * sa[d];
        *ib += c * sb[d];
    }
}

/* General path: any strides (0 for broadcast dims), ndim <= 8.
 * out, a, b: views of shape `shape` with strides so, sa, sb. */
__kernel void ew_strided(__global float *out, long oo,
                         __global const float *a, long ao,
                         __global const float *b, long bo,
                         int op, float p0, float p1, int ndim, long8 shape8,
                         long8 so8, long8 sa8, long8 sb8, long n)
{
    long shape[8], so[8], sa[8], sb[8];
    vstore8(shape8, 0, shape);
    vstore8(so8, 0, so);
    vstore8(sa8, 0, sa);
    vstore8(sb8, 0, sb);
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        long o = oo, ia = ao, ib = bo;
        cg_offsets3(i, ndim, shape, so, sa, sb, &o, &ia, &ib);
        out[o] = cg_ew_apply(op, a[ia], b[ib], p0, p1);
    }
}

/* out: (n) contiguous at oo. */
__kernel void fill_flat(__global float *out, long oo, float value, long n)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
        out[oo + i] = value;
}

/* out: view of shape `shape` with strides so. */
__kernel void fill_strided(__global float *out, long oo, float value, int ndim,
                           long8 shape8, long8 so8, long n)
{
    long shape[8], so[8];
    vstore8(shape8, 0, shape);
    vstore8(so8, 0, so);
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        long o = oo, rem = i;
        for (int d = ndim - 1; d >= 0; --d) {
            o += (rem % shape[d]) * so[d];
            rem /= shape[d];
        }
        out[o] = value;
    }
}
