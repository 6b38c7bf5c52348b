/*
 * backends/cpu/cpu.h — private to the cpu reference backend.
 *
 * The cpu backend is the oracle every other backend is checked against, so
 * its kernels are plain loops that follow the formulas in
 * include/clgrad/backend.h literally, computing each element in double and
 * rounding once to float. Buffers are 64-byte aligned host memory; "device"
 * transfers are memcpy. One file per op family:
 *
 *   cpu.c          vtable, device, open/close, memory, stats
 *   cpu_ew.c       fill, elementwise ops over strided views
 *   cpu_reduce.c   sum/max/min/argmax along the middle axis
 *   cpu_gemm.c     batched GEMM through OpenBLAS cblas_sgemm, or else
 *   cpu_gemm_blocked.c  a cache-blocked C SGEMM (builds without OpenBLAS)
 *   cpu_softmax.c  softmax / log-softmax forward and backward, causal softmax
 *   cpu_index.c    row gather/scatter-add, pick/pick-add
 *   cpu_optim.c    fused SGD / Adam(W) / RMSProp updates
 *   cpu_conv.c     im2col / col2im, max / average pooling and backward
 *   cpu_conv_dnnl.c  whole convolutions through oneDNN (AVX-512 builds)
 *   cpu_rnn.c      fused LSTM cell step and backward
 *   cpu_seq.c      the Transformer feed-forward's bias + GELU
 *   cpu_layernorm.c  LayerNorm forward and backward
 *   cpu_threads.c  the thread pool that splits large loops across cores
 *
 * Every primitive checks that what it touches lies inside its buffers and
 * returns CG_STATUS_INVALID_ARGUMENT with a message otherwise: an oracle
 * must report a frontend bug, not corrupt memory.
 */
#ifndef CLGRAD_BACKENDS_CPU_H
#define CLGRAD_BACKENDS_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/backend.h"

/* The few hot loops (elementwise rows, optimizer updates) are written as
 * plain loops and marked CG_CPU_KERNEL: with GCC they are vectorised even in
 * -O2 builds (whose "very cheap" cost model skips loops of unknown length)
 * and, on x86-64 with ifunc support, cloned for AVX2 with a run-time pick
 * (GCC's target_clones); the library is built with -fno-math-errno so
 * that sqrtf vectorises (it changes no result, only drops errno).
 * Elsewhere the mark is empty and the loops stay plain C. The elementwise rows do in float only what rounds exactly
 * as the double reference (+, -, *, /, sqrt, comparisons) and keep the
 * double formula for the rest, so their results do not change; Adam runs in
 * float as PyTorch's does (cpu_optim.c says why). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    __GNUC__ >= 8
#define CG_CPU_KERNEL                                                                    \
    __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic"),               \
                   target_clones("avx2", "default")))
#elif defined(__GNUC__) && !defined(__clang__)
#define CG_CPU_KERNEL __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define CG_CPU_KERNEL
#endif

#define CG_CPU_ALIGN 64
#define CG_CPU_ERR_LEN 1024

/* A block of host memory standing in for device memory. */
struct cg_buffer {
    float *data;            /* CG_CPU_ALIGN-aligned; NULL when bytes == 0 */
    size_t bytes;           /* as requested: what the bounds checks use   */
    size_t cap;             /* allocated (the size class), >= bytes       */
    int cls;                /* pool size class, or -1: not pooled         */
    struct cg_buffer *next; /* free-list link while pooled                */
};

/* The buffer pool (cpu.c): freed buffers wait in per-size-class free lists
 * for the next alloc of their class, so a training or evaluation loop that
 * makes the same tensors every step stops calling malloc after its first
 * step (the first steps fill the pool). Classes are 4 per power of two, so
 * a buffer wastes at most a quarter of itself (in address space: pages never
 * written are never faulted in). Large buffers are pooled too: before, those
 * over 16 MiB went back to glibc, which mmaps them, so every evaluation
 * batch of the CNN was mapped, page-faulted and unmapped again (1.8 M minor
 * faults in one test pass). Idle buffers are kept up to
 * max(CG_CPU_POOL_MAX_IDLE, the high-water mark of bytes in use): a program
 * that once needed P bytes at a time keeps at most P more idle, so a loop
 * that repeats its largest step allocates nothing once warm, and the pool
 * never holds more than twice the program's own peak (or the floor). */
#define CG_CPU_POOL_CLASSES 144
#define CG_CPU_POOL_MAX_BYTES ((size_t)1 << 40)     /* larger: malloc/free  */
#define CG_CPU_POOL_MAX_IDLE ((size_t)512 << 20)    /* floor of idle cap    */

/* Threads (cpu_threads.c): loops over at least CG_CPU_PAR_MIN elements are
 * split across the context's thread pool; below that handing work over
 * costs more than it saves. Measured (an add plus a full sum, one core vs
 * two, on an idle 16-core VM): 32k elements 12.4 vs 12.4 µs, 64k 24.5 vs
 * 14-20 µs, 128k 43-48 vs 26-37 µs, 1M 790-950 vs 430-450 µs. Ops that
 * cost more per element split sooner: libm-heavy elementwise ops
 * (cpu_ew.c's ew_grain), GEMMs of 2^18 multiply-adds and more (cpu_gemm.c),
 * convolution and pooling by images or planes (cpu_conv.c). */
#define CG_CPU_MAX_THREADS 64
#define CG_CPU_PAR_MIN ((int64_t)1 << 16)

struct cg_cpu_pool;

/* One opened instance (the backend's void *ctx). */
struct cg_cpu_ctx {
    char err[CG_CPU_ERR_LEN];
    struct cg_backend_stats stats;
    struct cg_buffer *pool[CG_CPU_POOL_CLASSES];
    size_t pool_idle_bytes;
    size_t pool_high_water;             /* most bytes ever in use at once  */
    int nthreads;                       /* CLGRAD_CPU_THREADS or the cores */
    struct cg_cpu_pool *pool_threads;   /* started on first use; or NULL   */
    bool pool_failed;                   /* could not start: stay serial    */
    void *scratch;                      /* the calling thread's scratch    */
    size_t scratch_len;                 /* bytes in scratch                */
    struct cg_cpu_dconv *dconv;         /* oneDNN convolutions, or NULL    */
};

/* Work on items [lo, hi) of a split loop. */
typedef void (*cg_cpu_range_fn)(void *arg, int64_t lo, int64_t hi);

/* The thread count from CLGRAD_CPU_THREADS, else the online cores. */
int cg__cpu_threads_from_env(void);
/* Runs fn over [0, n) split into contiguous ranges of at least grain items,
 * one per thread (the caller runs the first), and returns when all are
 * done. Serial (one fn(arg, 0, n) call) when n < 2 grain or the context has
 * one thread. */
void cg__cpu_parallel_for(struct cg_cpu_ctx *c, int64_t n, int64_t grain, cg_cpu_range_fn fn,
                          void *arg);
/* Joins the context's workers and frees their scratch (cpu_close). */
void cg__cpu_pool_stop(struct cg_cpu_ctx *c);
/* The threads a loop started here may use: the context's count, or 1 inside
 * a part of a running job (a nested loop runs on its own thread). */
int cg__cpu_parallel_threads(const struct cg_cpu_ctx *c);
/* At least `bytes` of CG_CPU_ALIGN-aligned memory private to the calling
 * thread (the caller's is c->scratch, each worker has its own), kept and
 * grown across calls so steady state allocates nothing; its contents do not
 * survive the next call from the same thread. NULL when out of memory. */
void *cg__cpu_scratch(struct cg_cpu_ctx *c, size_t bytes);

/* Records "cpu <fmt...>" as the last error and returns status. */
cg_status cg__cpu_error(struct cg_cpu_ctx *c, cg_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Checks that count elements from p lie inside p.buf; what names the
 * argument for the message ("ew out"). count may be 0. */
cg_status cg__cpu_check_range(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t count,
                              const char *what);
/* Checks a strided view: ndim, non-negative shape, and that every element it
 * addresses lies inside its buffer. */
cg_status cg__cpu_check_view(struct cg_cpu_ctx *c, const struct cg_view *v,
                             const char *what);
/* Element count of a view (product of its shape; 1 for ndim == 0). */
int64_t cg__cpu_view_numel(const struct cg_view *v);

/* The float at element p.off of p.buf (p.buf must be valid). */
static inline float *cg__cpu_at(struct cg_ptr p)
{
    return p.buf->data + p.off;
}

/* Reads idx (a float holding an exact integer) and checks 0 <= idx < limit
 * (limit < 0: no upper bound). */
cg_status cg__cpu_index(struct cg_cpu_ctx *c, float v, int64_t limit, const char *what,
                        int64_t *out);

/* The primitives, one family per file (arguments as in backend.h). */
cg_status cg__cpu_fill(void *ctx, const struct cg_view *out, float value);
cg_status cg__cpu_ew(void *ctx, enum cg_ew_op op, float p0, float p1,
                     const struct cg_view *out, const struct cg_view *a,
                     const struct cg_view *b);
cg_status cg__cpu_reduce(void *ctx, enum cg_reduce_op op, struct cg_ptr out,
                         struct cg_ptr in, int64_t outer, int64_t n, int64_t inner,
                         float scale);
cg_status cg__cpu_gemm(void *ctx, const struct cg_gemm_desc *d, struct cg_ptr a,
                       struct cg_ptr b, struct cg_ptr c);
/* One row-major SGEMM, C = alpha op(A) op(B) + beta C, by the blocked C
 * loop (cpu_gemm_blocked.c; the GEMM of builds without OpenBLAS), on the
 * calling thread. Sizes and pitches must already be checked. Returns
 * CG_STATUS_OUT_OF_MEMORY, recording no message (it may run on a worker),
 * when its packing space cannot grow. */
cg_status cg__cpu_sgemm_blocked(struct cg_cpu_ctx *c, int trans_a, int trans_b, int64_t m,
                                int64_t n, int64_t k, float alpha, const float *a,
                                int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                                int64_t ldc);
cg_status cg__cpu_softmax(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                          int64_t cols, int use_log);
cg_status cg__cpu_softmax_backward(void *ctx, struct cg_ptr gx, struct cg_ptr y,
                                   struct cg_ptr gy, int64_t rows, int64_t cols, int use_log);
cg_status cg__cpu_index_rows(void *ctx, struct cg_ptr out, struct cg_ptr src,
                             struct cg_ptr idx, int64_t n, int64_t inner);
cg_status cg__cpu_index_rows_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                                 struct cg_ptr idx, int64_t n, int64_t inner);
cg_status cg__cpu_pick(void *ctx, struct cg_ptr out, struct cg_ptr src, struct cg_ptr idx,
                       int64_t rows, int64_t cols);
cg_status cg__cpu_pick_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                           struct cg_ptr idx, int64_t rows, int64_t cols);
cg_status cg__cpu_optim_update(void *ctx, const struct cg_optim_hparams *h,
                               struct cg_ptr param, struct cg_ptr grad,
                               struct cg_ptr state[3], int64_t n);
/* cpu_gemm.c (builds with oneDNN only): whether oneDNN is used (AVX-512F
 * and CLGRAD_CPU_AVX512 not 0, read once), and one OpenMP thread for
 * oneDNN calls from the calling thread. */
bool cg__cpu_onednn_on(void);
void cg__cpu_onednn_one_thread(void);
/* cpu_conv_dnnl.c (builds with oneDNN only): whole convolutions, and the
 * release of their cached primitives (cpu_close). */
struct cg_cpu_dconv;
void cg__cpu_dconv_release(struct cg_cpu_ctx *c);
cg_status cg__cpu_conv2d(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                         struct cg_ptr y, struct cg_ptr x, struct cg_ptr w, struct cg_ptr b);
cg_status cg__cpu_conv2d_backward_data(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                                       struct cg_ptr dx, struct cg_ptr gy, struct cg_ptr w);
cg_status cg__cpu_conv2d_backward_weights(void *ctx, const struct cg_conv2d_desc *d,
                                          int64_t out_c, struct cg_ptr dw, struct cg_ptr db,
                                          struct cg_ptr x, struct cg_ptr gy);
cg_status cg__cpu_im2col(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr col,
                         struct cg_ptr img);
cg_status cg__cpu_col2im(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr img,
                         struct cg_ptr col);
cg_status cg__cpu_pool2d(void *ctx, enum cg_pool_kind kind, const struct cg_conv2d_desc *d,
                         struct cg_ptr out, struct cg_ptr argmax, struct cg_ptr in);
cg_status cg__cpu_pool2d_backward(void *ctx, enum cg_pool_kind kind,
                                  const struct cg_conv2d_desc *d, struct cg_ptr gin,
                                  struct cg_ptr gout, struct cg_ptr argmax);
cg_status cg__cpu_lstm_cell(void *ctx, struct cg_ptr c, struct cg_ptr h, struct cg_ptr save,
                            struct cg_ptr gates, struct cg_ptr c_prev, int64_t batch,
                            int64_t hidden);
cg_status cg__cpu_lstm_cell_backward(void *ctx, struct cg_ptr g_gates, struct cg_ptr g_c_prev,
                                     struct cg_ptr gh, struct cg_ptr gc, struct cg_ptr save,
                                     struct cg_ptr c_prev, int64_t batch, int64_t hidden);
/* cpu_softmax.c (with softmax and softmax_backward above) */
cg_status cg__cpu_softmax_causal(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                                 int64_t cols, int64_t period);
/* cpu_seq.c */
cg_status cg__cpu_bias_gelu(void *ctx, struct cg_ptr out, struct cg_ptr in, struct cg_ptr bias,
                            int64_t rows, int64_t cols);
cg_status cg__cpu_bias_gelu_backward(void *ctx, struct cg_ptr gx, struct cg_ptr in,
                                     struct cg_ptr bias, struct cg_ptr gy, int64_t rows,
                                     int64_t cols);
/* cpu_layernorm.c */
cg_status cg__cpu_layernorm(void *ctx, struct cg_ptr y, struct cg_ptr mean, struct cg_ptr rstd,
                            struct cg_ptr x, struct cg_ptr w, struct cg_ptr b, int64_t rows,
                            int64_t cols, float eps);
cg_status cg__cpu_layernorm_backward(void *ctx, struct cg_ptr gx, struct cg_ptr gw,
                                     struct cg_ptr gb, struct cg_ptr gy, struct cg_ptr x,
                                     struct cg_ptr mean, struct cg_ptr rstd, struct cg_ptr w,
                                     int64_t rows, int64_t cols);

#endif
