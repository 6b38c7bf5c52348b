/*
 * clgrad/backend.h — the backend plugin ABI.
 *
 * A backend owns memory on its devices and a small, fixed set of primitive
 * kernels. The frontend (tensors, autograd, layers, optimizers) owns shapes,
 * broadcasting, graph bookkeeping and error messages, and calls a backend only
 * through the vtable below. The `cpu` backend is built into libclgrad; every
 * other backend (e.g. `opencl`) is a shared module that exports exactly one
 * symbol, CG_BACKEND_ENTRY_NAME, returning its vtable:
 *
 *     #include <clgrad/backend.h>
 *     static const struct cg_backend_i my_backend = {
 *         .abi_version = CG_BACKEND_ABI_VERSION,
 *         .struct_size = sizeof(struct cg_backend_i),
 *         .name = "mine",
 *         ...
 *     };
 *     CG_BACKEND_EXPORT const struct cg_backend_i *cg_backend_entry(void)
 *     { return &my_backend; }
 *
 * The loader searches CLGRAD_PLUGIN_PATH (':'-separated folders), then the
 * install folder, then the build tree, for files named
 * "clgrad-backend-<name>.so". It refuses, each with its own message, a file
 * that dlopen cannot load, one without the entry symbol, a NULL vtable, and a
 * vtable whose abi_version differs from CG_BACKEND_ABI_VERSION.
 *
 * Conventions for every primitive:
 *   - All element offsets, shapes and strides count elements (float32), not
 *     bytes, unless a parameter's name ends in _bytes.
 *   - Work may be queued asynchronously; only download() and finish() wait.
 *     A later primitive always sees the results of an earlier one.
 *   - On failure a primitive returns a status and last_error(ctx) explains it
 *     ("clEnqueueNDRangeKernel(ew_binary): CL_OUT_OF_RESOURCES").
 *   - Outputs never alias inputs unless stated (ew allows out == a or b with
 *     identical views, for in-place updates).
 *   - Index tensors (labels, token ids) are float32 holding exact integers;
 *     the frontend validates their range before they reach a backend.
 *
 * Members may be appended in later minor revisions: the core reads an
 * appended member only if struct_size covers it (CG_BACKEND_HAS), and every
 * plugin must cover CG_BACKEND_I_REQUIRED_SIZE. Changing or removing a
 * member bumps CG_BACKEND_ABI_VERSION. Members marked "optional" may be NULL.
 */
#ifndef CLGRAD_BACKEND_H
#define CLGRAD_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "clgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CG_BACKEND_ABI_VERSION 1u
#define CG_BACKEND_ENTRY_NAME "cg_backend_entry"
#define CG_BACKEND_FILE_PREFIX "clgrad-backend-"
#define CG_BACKEND_EXPORT __attribute__((visibility("default")))
#define CG_MAX_DIMS 6

typedef enum cg_dtype { CG_F32 = 0, CG_DTYPE_COUNT } cg_dtype;

enum cg_device_type {
    CG_DEVICE_CPU,
    CG_DEVICE_GPU,
    CG_DEVICE_ACCELERATOR,
    CG_DEVICE_OTHER,
};

struct cg_device_info {
    char name[256];
    char vendor[256];
    char version[256];          /* driver / platform version           */
    enum cg_device_type type;
    uint64_t global_mem_bytes;
    uint32_t compute_units;
};

/* A block of device memory; its layout is private to the backend. */
struct cg_buffer;

/* A location in a buffer: a buffer plus an element offset. */
struct cg_ptr {
    struct cg_buffer *buf;
    int64_t off;
};

/* A strided n-d window into a buffer (element units). The core coalesces
 * dimensions before a call, so ndim is as small as the layout allows, and
 * ndim == 0 means a single element. */
struct cg_view {
    struct cg_buffer *buf;
    int64_t off;
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t strides[CG_MAX_DIMS];
};

/* Elementwise operations. Unary ops read a; binary ops read a and b. p0 and
 * p1 are the op's scalar parameters. Formulas, with x = a and g = b: */
enum cg_ew_op {
    /* unary */
    CG_EW_COPY,              /* x                                         */
    CG_EW_NEG,               /* -x                                        */
    CG_EW_EXP,               /* exp(x)                                    */
    CG_EW_LOG,               /* log(x)                                    */
    CG_EW_SQRT,              /* sqrt(x)                                   */
    CG_EW_ABS,               /* |x|                                       */
    CG_EW_RELU,              /* max(x, 0)                                 */
    CG_EW_SIGMOID,           /* 1 / (1 + exp(-x)), stable for large |x|   */
    CG_EW_TANH,              /* tanh(x)                                   */
    CG_EW_GELU,              /* x * 0.5 * (1 + erf(x / sqrt(2))) (PyTorch
                                GELU, approximate='none')                 */
    CG_EW_POW_SCALAR,        /* x ^ p0                                    */
    CG_EW_CLAMP,             /* min(max(x, p0), p1)                       */
    CG_EW_AFFINE,            /* p0 * x + p1                               */
    CG_EW_SIGN,              /* -1, 0 or 1                                */
    /* binary (a and b already broadcast to out's shape by their strides) */
    CG_EW_ADD,               /* a + b                                     */
    CG_EW_SUB,               /* a - b                                     */
    CG_EW_MUL,               /* a * b                                     */
    CG_EW_DIV,               /* a / b                                     */
    CG_EW_MAXIMUM,           /* max(a, b)                                 */
    CG_EW_MINIMUM,           /* min(a, b)                                 */
    CG_EW_EQ,                /* a == b ? 1 : 0                            */
    CG_EW_GT,                /* a > b ? 1 : 0                             */
    CG_EW_AXPBY,             /* p0 * a + p1 * b                           */
    /* backward helpers: a is the forward input x (or output y), b is the
     * upstream gradient g */
    CG_EW_RELU_BACKWARD,     /* x > 0 ? g : 0                             */
    CG_EW_SIGMOID_BACKWARD,  /* a = y: g * y * (1 - y)                    */
    CG_EW_TANH_BACKWARD,     /* a = y: g * (1 - y * y)                    */
    CG_EW_GELU_BACKWARD,     /* g * (Phi(x) + x * phi(x))                 */
    CG_EW_POW_SCALAR_BACKWARD, /* g * p0 * x ^ (p0 - 1)                   */
    CG_EW_CLAMP_BACKWARD,    /* p0 <= x <= p1 ? g : 0                     */
    CG_EW_COUNT
};
#define CG_EW_FIRST_BINARY CG_EW_ADD

enum cg_reduce_op {
    CG_REDUCE_SUM,           /* scale * sum                               */
    CG_REDUCE_MAX,
    CG_REDUCE_MIN,
    CG_REDUCE_ARGMAX,        /* index of the first maximum, as a float    */
    CG_REDUCE_COUNT
};

/* Row-major batched GEMM:
 *   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b],  b < batch,
 * op(A) is (m, k), op(B) is (k, n), C is (m, n); A[b] starts at
 * a.off + b * stride_a, and so on. lda is the row pitch of A as stored
 * (k if A is (m, k) untransposed, m if stored (k, m) and trans_a). */
struct cg_gemm_desc {
    int trans_a, trans_b;
    int64_t m, n, k;
    float alpha, beta;
    int64_t lda, ldb, ldc;
    int64_t stride_a, stride_b, stride_c;
    int64_t batch;
};

enum cg_optim_kind { CG_OPTIM_SGD, CG_OPTIM_ADAM, CG_OPTIM_RMSPROP };

/* Hyper-parameters of one fused optimizer update (torch.optim semantics;
 * src/optim/ cites the formulas). bias_correction1/2 are 1 - beta^step,
 * computed by the core in double precision. */
struct cg_optim_hparams {
    enum cg_optim_kind kind;
    float lr, weight_decay;
    float momentum, dampening;      /* SGD, RMSProp momentum            */
    int nesterov;                   /* SGD                              */
    float beta1, beta2, eps;        /* Adam; eps also RMSProp           */
    int decoupled_weight_decay;     /* AdamW                            */
    float alpha;                    /* RMSProp smoothing constant       */
    int centered;                   /* RMSProp                          */
    int64_t step;                   /* 1 on the first update            */
    float bias_correction1, bias_correction2;
};

/* Geometry of a 2-d convolution or pooling window over an NCHW batch:
 * input (n, c, h, w), kernel (kh, kw), stride, padding, dilation, and the
 * output size, which the core computes as PyTorch does:
 *   oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1   (likewise ow).     */
struct cg_conv2d_desc {
    int64_t n, c, h, w;
    int64_t kh, kw;
    int64_t sh, sw;
    int64_t ph, pw;
    int64_t dh, dw;
    int64_t oh, ow;
};

enum cg_pool_kind { CG_POOL_MAX, CG_POOL_AVG };

/* Output size along one axis, as torch.nn.Conv2d documents it (0 when no
 * window fits): floor((in + 2p - dil (k - 1) - 1) / s) + 1. */
static inline int64_t cg_conv2d_out_size(int64_t in, int64_t k, int64_t s, int64_t p,
                                         int64_t dil)
{
    int64_t a = in + 2 * p - dil * (k - 1) - 1;
    int64_t q = a / s - ((a % s != 0 && a < 0) ? 1 : 0); /* floor division */
    return q + 1 > 0 ? q + 1 : 0;
}

/* Checks a descriptor the way every backend must before using it: positive
 * kernel, stride and dilation, non-negative sizes and padding, and oh/ow
 * matching the formula above (so no index can leave its plane). On failure
 * writes why into msg and returns the status. */
static inline cg_status cg_conv2d_desc_check(const struct cg_conv2d_desc *d, char *msg,
                                             size_t len)
{
    if (!d) {
        snprintf(msg, len, "NULL descriptor");
        return CG_STATUS_INVALID_ARGUMENT;
    }
    if (d->n < 0 || d->c < 0 || d->h < 0 || d->w < 0 || d->kh < 1 || d->kw < 1 ||
        d->sh < 1 || d->sw < 1 || d->ph < 0 || d->pw < 0 || d->dh < 1 || d->dw < 1) {
        snprintf(msg, len,
                 "bad geometry: input (%lld, %lld, %lld, %lld), kernel (%lld, %lld), "
                 "stride (%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld)",
                 (long long)d->n, (long long)d->c, (long long)d->h, (long long)d->w,
                 (long long)d->kh, (long long)d->kw, (long long)d->sh, (long long)d->sw,
                 (long long)d->ph, (long long)d->pw, (long long)d->dh, (long long)d->dw);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    int64_t oh = cg_conv2d_out_size(d->h, d->kh, d->sh, d->ph, d->dh);
    int64_t ow = cg_conv2d_out_size(d->w, d->kw, d->sw, d->pw, d->dw);
    if (d->oh != oh || d->ow != ow) {
        snprintf(msg, len,
                 "output (%lld, %lld) given, but a (%lld, %lld) input with kernel (%lld, %lld), "
                 "stride (%lld, %lld), padding (%lld, %lld), dilation (%lld, %lld) gives "
                 "(%lld, %lld)",
                 (long long)d->oh, (long long)d->ow, (long long)d->h, (long long)d->w,
                 (long long)d->kh, (long long)d->kw, (long long)d->sh, (long long)d->sw,
                 (long long)d->ph, (long long)d->pw, (long long)d->dh, (long long)d->dw,
                 (long long)oh, (long long)ow);
        return CG_STATUS_SHAPE_MISMATCH;
    }
    return CG_OK;
}

/* The size checks every backend makes before lstm_cell and
 * lstm_cell_backward (below): batch, hidden >= 0 and the largest block,
 * save (batch, 5 * hidden), countable in int64. On failure msg says why;
 * the caller adds the function's name and checks its buffers' ranges. */
static inline cg_status cg_lstm_sizes_check(int64_t batch, int64_t hidden, char *msg,
                                            size_t len)
{
    if (batch < 0 || hidden < 0 || hidden > INT64_MAX / 5 ||
        (hidden > 0 && batch > INT64_MAX / (5 * hidden))) {
        snprintf(msg, len, "bad size (B=%lld, H=%lld)", (long long)batch, (long long)hidden);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    return CG_OK;
}

/* The same for softmax_causal: rows, cols >= 0 with rows * cols countable
 * in int64, and period >= 1. */
static inline cg_status cg_softmax_causal_check(int64_t rows, int64_t cols, int64_t period,
                                                char *msg, size_t len)
{
    if (rows < 0 || cols < 0 || period < 1 || (cols > 0 && rows > INT64_MAX / cols)) {
        snprintf(msg, len, "bad shape (%lld, %lld) or period %lld", (long long)rows,
                 (long long)cols, (long long)period);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    return CG_OK;
}

/* Counters a backend keeps for tests and benchmarks. */
struct cg_backend_stats {
    uint64_t uploads, downloads;        /* host<->device transfers        */
    uint64_t upload_bytes, download_bytes;
    uint64_t launches;                  /* primitive calls dispatched     */
    uint64_t device_allocs;             /* real allocations (pool misses) */
    uint64_t bytes_in_use;              /* handed out to the frontend     */
    uint64_t bytes_peak;                /* high-water mark of bytes_in_use */
    uint64_t bytes_reserved;            /* held by the pool, in use or not */
};

struct cg_backend_i {
    uint32_t abi_version;          /* CG_BACKEND_ABI_VERSION               */
    uint32_t struct_size;          /* sizeof(struct cg_backend_i)          */
    const char *name;              /* "cpu", "opencl": CLGRAD_BACKEND value */
    const char *description;

    /* Devices. Fills up to max entries and sets *count to the number of
     * devices found (0 is not an error); out may be NULL when max is 0. On
     * failure writes a message to err. */
    cg_status (*list_devices)(struct cg_device_info *out, int max, int *count,
                              char *err, size_t err_len);
    /* Index of the device `auto` should use, or -1 for "no preference". */
    int (*preferred_device)(void);            /* optional */

    /* An instance bound to one device. */
    cg_status (*open)(int device, void **ctx, char *err, size_t err_len);
    void (*close)(void *ctx);
    const char *(*last_error)(void *ctx);

    /* Memory. alloc'd buffers are uninitialised. upload may return before
     * the copy ends but never needs src to outlive the call. download waits. */
    cg_status (*alloc)(void *ctx, size_t bytes, struct cg_buffer **out);
    void (*release)(void *ctx, struct cg_buffer *buf);
    cg_status (*upload)(void *ctx, struct cg_buffer *dst, size_t off_bytes,
                        const void *src, size_t bytes);
    cg_status (*download)(void *ctx, void *dst, struct cg_buffer *src,
                          size_t off_bytes, size_t bytes);
    cg_status (*copy)(void *ctx, struct cg_buffer *dst, size_t dst_off_bytes,
                      struct cg_buffer *src, size_t src_off_bytes, size_t bytes);

    /* out[i] = value over a strided view. */
    cg_status (*fill)(void *ctx, const struct cg_view *out, float value);
    /* out = op(a) or op(a, b); all views share out's ndim and shape (b is
     * NULL for unary ops). out may have any strides. */
    cg_status (*ew)(void *ctx, enum cg_ew_op op, float p0, float p1,
                    const struct cg_view *out, const struct cg_view *a,
                    const struct cg_view *b);
    /* Contiguous (outer, n, inner) -> (outer, inner):
     * out[o * inner + i] = R_{r < n} in[(o * n + r) * inner + i]
     * (scale multiplies CG_REDUCE_SUM only). n == 0 gives 0 for SUM,
     * -inf for MAX, +inf for MIN, 0 for ARGMAX. */
    cg_status (*reduce)(void *ctx, enum cg_reduce_op op, struct cg_ptr out,
                        struct cg_ptr in, int64_t outer, int64_t n,
                        int64_t inner, float scale);
    cg_status (*gemm)(void *ctx, const struct cg_gemm_desc *d,
                      struct cg_ptr a, struct cg_ptr b, struct cg_ptr c);

    /* Softmax over the last axis of a contiguous (rows, cols) block;
     * log != 0 gives log-softmax. Both subtract the row maximum first. */
    cg_status (*softmax)(void *ctx, struct cg_ptr out, struct cg_ptr in,
                         int64_t rows, int64_t cols, int log);
    /* Given y = softmax(x) (or log-softmax) and gy, writes gx:
     *   softmax:     gx = y * (gy - sum(gy * y))
     *   log-softmax: gx = gy - exp(y) * sum(gy)                          */
    cg_status (*softmax_backward)(void *ctx, struct cg_ptr gx, struct cg_ptr y,
                                  struct cg_ptr gy, int64_t rows, int64_t cols,
                                  int log);

    /* Row gather (embedding): out[i, :] = src[idx[i], :]; out is (n, inner),
     * src is (rows, inner). */
    cg_status (*index_rows)(void *ctx, struct cg_ptr out, struct cg_ptr src,
                            struct cg_ptr idx, int64_t n, int64_t inner);
    /* Its adjoint: dst[idx[i], :] += src[i, :] (repeated indices add up). */
    cg_status (*index_rows_add)(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                                struct cg_ptr idx, int64_t n, int64_t inner);
    /* Pick one column per row: out[i] = src[i * cols + idx[i]]. */
    cg_status (*pick)(void *ctx, struct cg_ptr out, struct cg_ptr src,
                      struct cg_ptr idx, int64_t rows, int64_t cols);
    /* Its adjoint: dst[i * cols + idx[i]] += src[i]. */
    cg_status (*pick_add)(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                          struct cg_ptr idx, int64_t rows, int64_t cols);

    /* One fused optimizer update of n parameters. state: SGD {momentum
     * buffer}, Adam {exp_avg, exp_avg_sq}, RMSProp {square_avg, momentum
     * buffer, grad_avg}; unused entries may have a NULL buf. */
    cg_status (*optim_update)(void *ctx, const struct cg_optim_hparams *h,
                              struct cg_ptr param, struct cg_ptr grad,
                              struct cg_ptr state[3], int64_t n);

    /* Wait for all queued work. */
    cg_status (*finish)(void *ctx);
    void (*get_stats)(void *ctx, struct cg_backend_stats *out);
    void (*reset_stats)(void *ctx); /* zero the counters, keep pool sizes */

    /* ---- convolution and pooling (NCHW). Optional: NULL (or a vtable too
     * short to hold them) makes the core report CG_STATUS_UNSUPPORTED. */

    /* Unfolds a batch of images for convolution as a GEMM:
     *   col[b, (ci * kh + i) * kw + j, y * ow + x] =
     *       img[b, ci, y * sh - ph + i * dh, x * sw - pw + j * dw]
     * (0 where that falls in the padding). img (n, c, h, w),
     * col (n, c * kh * kw, oh * ow). */
    cg_status (*im2col)(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr col,
                        struct cg_ptr img);
    /* Its adjoint: img[...] += col[...] summed over every (i, j, y, x) that
     * reads that pixel. Accumulates into img. */
    cg_status (*col2im)(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr img,
                        struct cg_ptr col);
    /* Pooling over kh x kw windows with stride, padding and dilation:
     * in (n, c, h, w) -> out (n, c, oh, ow). MAX ignores padding (as
     * torch.nn.MaxPool2d) and writes into argmax (same shape as out) the
     * index h_in * w + w_in of the first maximum within its input plane,
     * as a float (a NaN counts as the maximum; a window lying wholly in the
     * padding, possible with dilation, gives -inf and index -1, which the
     * backward skips); AVG divides by kh * kw, padding included
     * (torch.nn.AvgPool2d with count_include_pad=True); argmax is unused for
     * AVG and may then have a NULL buf. */
    cg_status (*pool2d)(void *ctx, enum cg_pool_kind kind, const struct cg_conv2d_desc *d,
                        struct cg_ptr out, struct cg_ptr argmax, struct cg_ptr in);
    /* Its adjoint, accumulating into gin (n, c, h, w) from gout (n, c, oh, ow). */
    cg_status (*pool2d_backward)(void *ctx, enum cg_pool_kind kind,
                                 const struct cg_conv2d_desc *d, struct cg_ptr gin,
                                 struct cg_ptr gout, struct cg_ptr argmax);

    /* ---- fused kernels for sequence models. Optional: NULL (or a vtable
     * too short to hold them) makes the frontend compose the same math from
     * the ew and softmax primitives, kernel by kernel. All blocks are
     * contiguous and row-major.
     *
     * The rule for a fused (model-specific) member. Primitives above are
     * general; a fused member computes what a model could compose from
     * them, only faster. One may be appended only with all three of:
     *   1. a measured gain: a clgrad-bench model, before / after side by
     *      side in one run, named in the commit that adds it;
     *   2. a composed fallback in src/nn giving the same values (to float
     *      rounding), taken whenever the member is NULL, so every backend
     *      need not implement it and the member is optional;
     *   3. a test comparing the two paths on every backend: outputs and
     *      gradients fused vs composed (a vtable copy with the member
     *      NULL), plus a float64 reference for the member itself.
     * The list of fused members; keep it whole (member: fallback; test):
     *   lstm_cell, lstm_cell_backward: src/nn/rnn.c's composed LSTM step;
     *       tests/test_fused.c
     *   softmax_causal: src/nn/attention.c's masked softmax;
     *       tests/test_fused.c
     *   bias_gelu, bias_gelu_backward: src/nn/attention.c's bias add and
     *       GELU ops; tests/test_fused.c
     *   layernorm, layernorm_backward: src/nn/layernorm.c's composed
     *       LayerNorm; tests/test_fused.c
     *   conv2d, conv2d_backward_data, conv2d_backward_weights:
     *       src/core/ops_conv.c's im2col + GEMM; tests/test_conv.c
     * (optim_update is a general primitive, required; im2col, col2im and
     * pooling are primitives with no composed form: without them the core
     * reports CG_STATUS_UNSUPPORTED.) */

    /* One LSTM cell step (torch.nn.LSTM docs; PyTorch's gate order i, f, g,
     * o). gates (B, 4H) holds the pre-activations
     * x W_ih^T + b_ih + h_prev W_hh^T + b_hh, row b = [i | f | g | o];
     * c_prev (B, H). With sigma the logistic function (as CG_EW_SIGMOID):
     *   i = sigma(G[:, 0:H])     f = sigma(G[:, H:2H])
     *   g = tanh (G[:, 2H:3H])   o = sigma(G[:, 3H:4H])
     *   c = f * c_prev + i * g   h = o * tanh(c)
     * Writes c (B, H), h (B, H), and save (B, 5H), row b =
     * [i | f | g | o | tanh(c)]: what lstm_cell_backward reads. */
    cg_status (*lstm_cell)(void *ctx, struct cg_ptr c, struct cg_ptr h, struct cg_ptr save,
                           struct cg_ptr gates, struct cg_ptr c_prev, int64_t batch,
                           int64_t hidden);
    /* Its adjoint. From the upstream gradients gh, gc (B, H), lstm_cell's
     * save (B, 5H) and c_prev (B, H), with t = tanh(c):
     *   dc       = gc + gh * o * (1 - t^2)
     *   gG[:, i] = dc * g * i * (1 - i)        gG[:, f] = dc * c_prev * f * (1 - f)
     *   gG[:, g] = dc * i * (1 - g^2)          gG[:, o] = gh * t * o * (1 - o)
     *   gc_prev  = dc * f
     * Writes (does not accumulate) g_gates (B, 4H) and g_c_prev (B, H). */
    cg_status (*lstm_cell_backward)(void *ctx, struct cg_ptr g_gates, struct cg_ptr g_c_prev,
                                    struct cg_ptr gh, struct cg_ptr gc, struct cg_ptr save,
                                    struct cg_ptr c_prev, int64_t batch, int64_t hidden);
    /* Causal softmax over the last axis of a (rows, cols) block: row r sees
     * only columns j <= q = r mod period (period >= 1), so
     *   out[r, j] = exp(in[r, j] - m) / sum_{k <= q} exp(in[r, k] - m),  j <= q
     *   out[r, j] = 0,                                                   j > q
     * with m = max_{k <= q} in[r, k]. For attention scores (.., T, T) and
     * period T this is softmax(S + M), M the causal mask (-inf where j > i;
     * torch.nn.functional.scaled_dot_product_attention, is_causal=True).
     * Masked inputs are never read. The backward is softmax_backward with
     * log = 0: out is exactly 0 where masked, so gx is 0 there. */
    cg_status (*softmax_causal)(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                                int64_t cols, int64_t period);

    /* ---- the Transformer feed-forward's bias + GELU in one kernel.
     * Optional: NULL makes the frontend add the bias and apply CG_EW_GELU
     * as two ops. in, out, gx, gy are contiguous (rows, cols); bias (cols),
     * or a NULL buf for none (b = 0). With z = in[r, j] + bias[j] and Phi,
     * phi the standard normal CDF and density (GELU as CG_EW_GELU):
     *   out[r, j] = z * Phi(z)                                           */
    cg_status (*bias_gelu)(void *ctx, struct cg_ptr out, struct cg_ptr in, struct cg_ptr bias,
                           int64_t rows, int64_t cols);
    /* Its adjoint wrt z (which is also in's; the bias's is its column
     * sum): gx[r, j] = gy[r, j] * (Phi(z) + z * phi(z)). Writes gx. */
    cg_status (*bias_gelu_backward)(void *ctx, struct cg_ptr gx, struct cg_ptr in,
                                    struct cg_ptr bias, struct cg_ptr gy, int64_t rows,
                                    int64_t cols);

    /* ---- LayerNorm over the last axis in one kernel (torch.nn.LayerNorm,
     * biased variance). Optional: NULL makes the frontend compose it from
     * mean, sub, mul and pow ops. x, y, gx, gy are contiguous (rows, cols);
     * w, b are (cols), or NULL bufs for none (1 and 0); mean and rstd are
     * (rows), written by the forward for the backward to read:
     *   mean[r] = sum_j x[r, j] / cols
     *   rstd[r] = 1 / sqrt(sum_j (x[r, j] - mean[r])^2 / cols + eps)
     *   y[r, j] = (x[r, j] - mean[r]) * rstd[r] * w[j] + b[j]            */
    cg_status (*layernorm)(void *ctx, struct cg_ptr y, struct cg_ptr mean, struct cg_ptr rstd,
                           struct cg_ptr x, struct cg_ptr w, struct cg_ptr b, int64_t rows,
                           int64_t cols, float eps);
    /* Its adjoint. With xhat = (x - mean) * rstd and g = gy * w (per row):
     *   gx[r, j] = rstd[r] * (g[r, j] - mean(g[r, :])
     *                         - xhat[r, j] * mean(g[r, :] * xhat[r, :]))
     *   gw[j] = sum_r gy[r, j] * xhat[r, j]        gb[j] = sum_r gy[r, j]
     * Writes (does not accumulate) gx, and gw and gb where their bufs are
     * not NULL. */
    cg_status (*layernorm_backward)(void *ctx, struct cg_ptr gx, struct cg_ptr gw,
                                    struct cg_ptr gb, struct cg_ptr gy, struct cg_ptr x,
                                    struct cg_ptr mean, struct cg_ptr rstd, struct cg_ptr w,
                                    int64_t rows, int64_t cols);

    /* ---- reads that do not wait (data parallelism's gradient staging,
     * src/dist/dist.c). Optional: without them the core uses download(). */
    /* Enqueues a copy of bytes at src + off_bytes into host memory dst,
     * after all work queued before it, and returns at once. dst must stay
     * valid and untouched until download_poll reports the read done.
     * *ticket identifies the read for download_poll. */
    cg_status (*download_async)(void *ctx, void *dst, struct cg_buffer *src, size_t off_bytes,
                                size_t bytes, void **ticket);
    /* Whether the read has landed in *done (wait: block until it has).
     * Once *done is set, or on failure, the ticket is released. */
    cg_status (*download_poll)(void *ctx, void *ticket, int wait, int *done);

    /* ---- host staging memory (src/dist/dist.c's gradient buckets and
     * parameter all-gather). Optional: without them the core uses malloc. */
    /* bytes of host memory that download/download_async/upload move to and
     * from fastest (OpenCL: a CL_MEM_ALLOC_HOST_PTR buffer, which drivers
     * back with pinned pages, mapped once until host_free), in *ptr. */
    cg_status (*host_alloc)(void *ctx, size_t bytes, void **ptr);
    /* Releases what host_alloc returned; no read or write into it may be
     * in flight. NULL is fine. */
    void (*host_free)(void *ctx, void *ptr);

    /* ---- whole convolutions (groups = 1), fused members by the rule
     * above. Optional: NULL makes the core compose them from im2col,
     * col2im and gemm (src/core/ops_conv.c). Unlike the other fused
     * members, each may also decline particular sizes by returning
     * CG_STATUS_UNSUPPORTED with nothing written and no error recorded (the
     * cpu backend where oneDNN has no fast kernel for a shape, or no
     * AVX-512): the core then composes that call. All tensors are
     * contiguous: x, dx (n, c, h, w); w, dw (out_c, c, kh, kw); b, db
     * (out_c); y, gy (n, out_c, oh, ow). With d's geometry:
     *   y[n, o, y, x] = b[o] + sum_{ci, i, j} w[o, ci, i, j] *
     *                   x[n, ci, y * sh - ph + i * dh, x * sw - pw + j * dw]
     * (0 in the padding; torch.nn.functional.conv2d). b may be a NULL buf
     * (no bias). Writes y. */
    cg_status (*conv2d)(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                        struct cg_ptr y, struct cg_ptr x, struct cg_ptr w, struct cg_ptr b);
    /* dx = the adjoint of conv2d wrt x applied to gy. Writes (does not
     * accumulate) dx. */
    cg_status (*conv2d_backward_data)(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                                      struct cg_ptr dx, struct cg_ptr gy, struct cg_ptr w);
    /* dw[o, ci, i, j] = sum_{n, y, x} gy[n, o, y, x] * x[n, ci, ...] (the
     * tap above), and db[o] = sum_{n, y, x} gy[n, o, y, x] where db is not
     * a NULL buf. Writes (does not accumulate) dw and db. */
    cg_status (*conv2d_backward_weights)(void *ctx, const struct cg_conv2d_desc *d,
                                         int64_t out_c, struct cg_ptr dw, struct cg_ptr db,
                                         struct cg_ptr x, struct cg_ptr gy);
};

/* The members every backend must have: all up to and including reset_stats. */
#define CG_BACKEND_I_REQUIRED_SIZE                                                   \
    (offsetof(struct cg_backend_i, reset_stats) + sizeof(void (*)(void *)))
/* Whether vtable be has optional member m (non-NULL and within struct_size). */
#define CG_BACKEND_HAS(be, m)                                                        \
    ((be)->struct_size >= offsetof(struct cg_backend_i, m) + sizeof((be)->m) && (be)->m)

typedef const struct cg_backend_i *(*cg_backend_entry_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
