/*
 * backends/cpu/cpu_gemm.c — row-major batched GEMM through OpenBLAS (or,
 * in builds without it, cpu_gemm_blocked.c's blocked C loop):
 *   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b],  b < batch
 * op(A) is (m, k), op(B) is (k, n), C is (m, n) with row pitch ldc.
 * Every size and pitch is checked here, so cblas never reaches xerbla (which
 * prints and would leave C untouched).
 *
 * Threads. OpenBLAS runs on one thread, always (openblas_set_num_threads(1)
 * on the first GEMM; it is process-wide, as OpenBLAS's pool is), and the
 * cpu backend's own pool (cpu_threads.c) splits the work: a batch of
 * products over the batch, a single product into as many tiles of C as
 * there are threads — bands of rows when C is taller than wide, else bands
 * of columns, 32-aligned so each tile keeps OpenBLAS's full-width kernels —
 * each tile one single-threaded sgemm. Before, OpenBLAS's own pool took
 * GEMMs above 2^23 multiply-adds while ours took the elementwise ops, and
 * the two pools' idle workers (OpenBLAS's yield in a loop) competed for the
 * same cores: on the 2-core machine the CNN, LSTM and Transformer trained
 * slower on two threads than on one, with a third of their CPU time in
 * the kernel.
 * A product of fewer than CG_CPU_GEMM_PAR_MIN multiply-adds stays on the
 * calling thread: handing it over costs more than half of it takes.
 * OPENBLAS_NUM_THREADS, when set, caps the threads a GEMM uses, as it
 * capped OpenBLAS's pool before, unless CLGRAD_CPU_THREADS is set too: the
 * clgrad variable is the more specific one, and MPI jobs and test
 * harnesses often export OPENBLAS_NUM_THREADS=1 for other libraries (with
 * the cap, CLGRAD_CPU_THREADS=2 ran every GEMM on one core: the CNN at
 * 2,620 instead of 4,498 samples/s, and the tests of tiled GEMM never
 * tiled).
 *
 * oneDNN. On CPUs with AVX-512F (and unless CLGRAD_CPU_AVX512=0), the
 * mid-size products go to oneDNN's sgemm (dnnl_sgemm, JIT AVX-512 kernels)
 * instead of OpenBLAS, which OPENBLAS_CORETYPE=Haswell keeps on its AVX2
 * kernels. Measured on the 2-core AMD EPYC (Zen 4: its AVX-512 FMAs are
 * double-pumped, so the FMA peak is the same 117 GFLOP/s a core with
 * either width; oneDNN gains on packing and edges, not on width), one
 * thread, CPU time, best of 5 interleaved, GFLOP/s OpenBLAS -> oneDNN:
 * the CNN's per-image convolution products 64x196x288 72 -> 85,
 * 288x196x64 (A^T) 78 -> 95, 64x288x196 (B^T) 65 -> 69, its fc1
 * 64x128x3136 97 -> 112; the MLP's 64x784x256 97 -> 113; the LSTM's
 * 32x512x128 (B^T) 85 -> 99. oneDNN lost on narrow or tiny products:
 * n = 9..32 (0.7-0.9x), the seed FFN's 32x64x64 (0.73x), and short,
 * narrow B^T products (64x64x256, 0.73x), which stay with OpenBLAS
 * (use_onednn gives the rule and later measurements). Each call runs on
 * its calling thread (OpenMP's thread
 * count set to 1 on each of our threads), so the tiles and results are as
 * with OpenBLAS: the same for a given thread count, within the last bits
 * of OpenBLAS's. CLGRAD_CPU_AVX512=0 (read once) keeps every product on
 * OpenBLAS, the path of CPUs without AVX-512; the tests run both ways.
 *
 * Determinism: with a given thread count every run computes the same
 * tiles, so results repeat exactly. The blocked loop's results do not
 * depend on tiles at all (each C element sums its k products in one fixed
 * order), nor do batches split over threads (each product is one call);
 * an OpenBLAS product split into tiles may differ from the whole product
 * in the last bits (its edge kernels accumulate in another order), so its
 * results can change with the thread count.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#if CG_HAVE_OPENBLAS
#include <cblas.h>
#endif

#if CG_HAVE_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#endif

#include "cpu.h"

/* Multiply-adds below which a GEMM runs on the calling thread: 2^18 take
 * ~4-6 µs on one core, about what a hand-over to a sleeping worker (a
 * futex wake-up) costs. The seed FFN's largest product (32x64x64, 2^17)
 * stays serial; an LSTM step's (32x512x128) is split. */
#define CG_CPU_GEMM_PAR_MIN ((int64_t)1 << 18)
/* Multiply-adds up to which a product A B^T (A untransposed) gets B
 * transposed into scratch first, where OpenBLAS would not take its
 * small-matrix kernel. OpenBLAS 0.3.21 (SkylakeX/Cooperlake kernels) runs
 * products of up to 10^6 multiply-adds in those kernels, which skip
 * packing and the separate clearing of C for beta = 0, but not this case
 * (column-major TN) when C has over 1200 elements or k < 32, unless m is
 * 8, 16 or 32 (its sgemm_small_kernel_permit): the attention's scores
 * Q K^T and dP = dO V^T, 128 products 64x64x16 a step each, took the
 * packed path at 60 GFLOP/s. Measured (one thread, CPU time, best of 5):
 * 277 us as given, 217 us transposed here (the transpose included). */
#define CG_CPU_GEMM_SMALL_BT (1 << 19)
/* Tiles are multiples of this many rows or columns of C: whole vectors
 * of the widest kernels (16 floats), and fine enough to balance the MLP's
 * weight gradient 256x784x64 as 400 + 384 columns (with 32: 416 + 368,
 * the caller's tile 6% over half). */
#define CG_CPU_GEMM_TILE_ALIGN 16

static pthread_once_t gemm_once = PTHREAD_ONCE_INIT;
static int gemm_max_threads = CG_CPU_MAX_THREADS;

/* Reads the OPENBLAS_NUM_THREADS cap (none where CLGRAD_CPU_THREADS is
 * set) and keeps OpenBLAS on one thread. */
static void gemm_threads_init(void)
{
    const char *own = getenv("CLGRAD_CPU_THREADS");
    const char *v = getenv("OPENBLAS_NUM_THREADS");
    if (v && *v && !(own && *own)) {
        char *end;
        long t = strtol(v, &end, 10);
        if (*end == '\0' && t >= 1 && t < CG_CPU_MAX_THREADS) gemm_max_threads = (int)t;
    }
#if CG_HAVE_OPENBLAS
    openblas_set_num_threads(1);
#endif
}

#if CG_HAVE_ONEDNN
static pthread_once_t onednn_once = PTHREAD_ONCE_INIT;
static bool onednn_on;

/* oneDNN on CPUs with AVX-512F, unless CLGRAD_CPU_AVX512 is "0". */
static void onednn_init(void)
{
    const char *v = getenv("CLGRAD_CPU_AVX512");
    /* A bad value: one line naming it (README: never ignored silently). */
    if (v && *v && strcmp(v, "0") != 0 && strcmp(v, "1") != 0)
        fprintf(stderr, "clgrad: warning: CLGRAD_CPU_AVX512=%s is not 0 or 1; using 1\n", v);
    __builtin_cpu_init();
    onednn_on = !(v && strcmp(v, "0") == 0) && __builtin_cpu_supports("avx512f");
}

/* Whether a product of sizes already checked goes to oneDNN (the
 * measurements above): n >= 64 columns, at least 2^20 multiply-adds, and
 * not a short, narrow B^T product (m < 256 and n < 128), where oneDNN
 * repacks B^T for little work. Measured again (the 2-core EPYC, 1 thread,
 * CPU time, best of 7, us OpenBLAS -> oneDNN): B^T with k = 64 now gains with
 * many rows, the Transformer's 2048x192x64 521 -> 481, 2048x256x64
 * 693 -> 656, 2048x64x64 183 -> 175, 512x64x64 44 -> 42 (the old rule kept
 * them on OpenBLAS, whose beta = 0 also clears C in a separate pass); the
 * short ones lose, 64x64x256 25 -> 35, 64x64x784 72 -> 81, 128x64x256
 * 44 -> 50, 64x96x256 35 -> 44 (the MLP's 2-thread tiles), while
 * 64x128x256 46 -> 43 and the LSTM's 32x512x128 58 -> 47 still gain. */
bool cg__cpu_onednn_on(void)
{
    pthread_once(&onednn_once, onednn_init);
    return onednn_on;
}

/* One OpenMP thread for oneDNN calls from this thread (an OpenMP setting
 * is per thread; a pool worker is a fresh one): our pool splits the work. */
void cg__cpu_onednn_one_thread(void)
{
    static _Thread_local bool omp_single;
    if (!omp_single) {
        omp_set_num_threads(1);
        omp_single = true;
    }
}

static bool use_onednn(int trans_b, int64_t m, int64_t n, int64_t k)
{
    return cg__cpu_onednn_on() && n >= 64 && (double)m * n * k >= (double)(1 << 20) &&
           !(trans_b && m < 256 && n < 128);
}
#endif

/* Threads for a GEMM of `macs` multiply-adds (a double: batch m n k may
 * exceed int64 in a request that the bounds checks then refuse). */
static int gemm_threads(struct cg_cpu_ctx *c, double macs)
{
    pthread_once(&gemm_once, gemm_threads_init);
    if (macs < (double)CG_CPU_GEMM_PAR_MIN) return 1;
    int t = cg__cpu_parallel_threads(c);
    return t < gemm_max_threads ? t : gemm_max_threads;
}

/* Elements spanned by a rows x cols matrix stored with row pitch ld. */
static int64_t matrix_extent(int64_t rows, int64_t cols, int64_t ld)
{
    return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
}

/* Checks a stored matrix (rows, cols) with pitch ld, repeated batch times
 * at the given stride. */
static cg_status check_matrix(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t rows,
                              int64_t cols, int64_t ld, int64_t stride, int64_t batch,
                              const char *what)
{
    if (ld < (cols > 1 ? cols : 1) || ld > INT_MAX)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT,
                             "gemm: %s is stored (%lld, %lld) but its pitch is %lld", what,
                             (long long)rows, (long long)cols, (long long)ld);
    int64_t extent = matrix_extent(rows, cols, ld);
    if (stride < 0)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "gemm: %s has stride %lld",
                             what, (long long)stride);
    return cg__cpu_check_range(c, p, (batch - 1) * stride + extent, what);
}

/* C = beta * C over an (m, n) block with pitch ldc; beta == 0 overwrites
 * (BLAS semantics: whatever C held, NaN included, is not read). */
static void scale_c(float *cm, int64_t m, int64_t n, int64_t ldc, float beta)
{
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++)
            cm[i * ldc + j] = beta == 0.0f ? 0.0f : beta * cm[i * ldc + j];
}

/* ---- thin products: k == 1, n == 1, m == 1 ----
 *
 * Outer products (k == 1) and matrix-vector products (n == 1 or m == 1)
 * are what a bias costs (its gradient is a sum over the batch, which the
 * frontend writes as a product with a vector of ones) and what a layer of
 * width 1 costs. They do one multiply-add per element read, so they run at
 * memory speed in a plain loop, while sgemm packs both operands first:
 * measured on the 2-core EPYC (one thread, CPU time, min of 5), m x n x k
 * cblas_sgemm (OpenBLAS 0.3.21) against these loops: the seed FFN's
 * 32x1x64 0.87 vs 0.29 µs, 32x64x1 1.30 vs 0.45 µs, 64x1x32 (A^T) 1.24 vs
 * 0.60 µs; the CNN's biases 32x784x1 12.6 vs 2.9 µs, 64x196x1 6.1 vs
 * 1.3 µs, 4096x1x196 355 vs 134 µs. Sums run in float, 8 lanes and then
 * the lanes in a fixed order, so results do not depend on alignment or
 * threads. */

/* sum x[p] y[p], p < n, both contiguous. */
CG_CPU_KERNEL static float dot_f(const float *restrict x, const float *restrict y, int64_t n)
{
    float lane[8] = {0};
    int64_t p = 0;
    for (; p + 8 <= n; p += 8)
        for (int l = 0; l < 8; l++) lane[l] += x[p + l] * y[p + l];
    for (int l = 0; p < n; p++, l++) lane[l] += x[p] * y[p];
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

/* y[i] += s x[i], i < n. */
CG_CPU_KERNEL static void axpy_f(float *restrict y, const float *restrict x, float s, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] += s * x[i];
}

/* c[j] = alpha v[j] + beta c[j] (beta == 0: c is not read), j < n, c with
 * stride ldc. */
CG_CPU_KERNEL static void store_scaled(float *c, int64_t ldc, const float *restrict v, int64_t n,
                                      float alpha, float beta)
{
    if (beta == 0.0f)
        for (int64_t j = 0; j < n; j++) c[j * ldc] = alpha * v[j];
    else
        for (int64_t j = 0; j < n; j++) c[j * ldc] = alpha * v[j] + beta * c[j * ldc];
}

/* Row i of an outer product: c[j] = alpha (a_i b[j ldb]) + beta c[j]. */
CG_CPU_KERNEL static void outer_row(float *restrict c, const float *restrict b, int64_t ldb,
                                    int64_t n, float ai, float alpha, float beta)
{
    if (ldb == 1 && beta == 0.0f)
        for (int64_t j = 0; j < n; j++) c[j] = alpha * (ai * b[j]);
    else if (ldb == 1)
        for (int64_t j = 0; j < n; j++) c[j] = alpha * (ai * b[j]) + beta * c[j];
    else
        for (int64_t j = 0; j < n; j++)
            c[j] = alpha * (ai * b[j * ldb]) + (beta == 0.0f ? 0.0f : beta * c[j]);
}

/* x[p * ld], p < n, as a contiguous vector: x itself when ld == 1, else
 * copied into the thread's scratch (NULL when that cannot grow). */
static const float *contiguous(struct cg_cpu_ctx *c, const float *x, int64_t ld, int64_t n)
{
    if (ld == 1) return x;
    float *v = cg__cpu_scratch(c, sizeof(float) * (size_t)n);
    if (v)
        for (int64_t p = 0; p < n; p++) v[p] = x[p * ld];
    return v;
}

/* The thin product (k, n or m == 1, any transposes and pitches), or false
 * (nothing done) for other shapes or when no scratch vector could be had.
 * Sizes checked, k >= 1. */
static bool gemm_thin(struct cg_cpu_ctx *c, int ta, int tb, int64_t m, int64_t n, int64_t k,
                      float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                      float beta, float *cm, int64_t ldc)
{
    if (k == 1) {
        /* op(A) column: a[i lda] (or a[i] transposed); op(B) row: b[j]
         * (or b[j ldb] transposed) */
        for (int64_t i = 0; i < m; i++)
            outer_row(cm + i * ldc, b, tb ? ldb : 1, n, ta ? a[i] : a[i * lda], alpha, beta);
        return true;
    }
    if (n == 1 && !ta) {
        /* C[i] = A row i . op(B) column (b[p], or b[p ldb] untransposed) */
        const float *bv = contiguous(c, b, tb ? 1 : ldb, k);
        if (!bv) return false;
        for (int64_t i = 0; i < m; i++) {
            float v = dot_f(a + i * lda, bv, k);
            cm[i * ldc] = alpha * v + (beta == 0.0f ? 0.0f : beta * cm[i * ldc]);
        }
        return true;
    }
    if (m == 1 && tb) {
        /* C[j] = op(A) row (a[p], or a[p lda] transposed) . B row j */
        const float *av = contiguous(c, a, ta ? lda : 1, k);
        if (!av) return false;
        for (int64_t j = 0; j < n; j++) {
            float v = dot_f(av, b + j * ldb, k);
            cm[j] = alpha * v + (beta == 0.0f ? 0.0f : beta * cm[j]);
        }
        return true;
    }
    bool col = n == 1, row = m == 1;   /* here: col with ta, row without tb */
    if (!col && !row) return false;
    /* Sums of contiguous rows: C column = sum_p op(B)[p] A row p (A
     * stored (k, m)), or C row = sum_p op(A)[p] B row p. */
    int64_t len = col ? m : n;
    float *acc = cg__cpu_scratch(c, sizeof(float) * (size_t)len);
    if (!acc) return false;
    for (int64_t t = 0; t < len; t++) acc[t] = 0.0f;
    for (int64_t p = 0; p < k; p++) {
        if (col) axpy_f(acc, a + p * lda, tb ? b[p] : b[p * ldb], m);
        else axpy_f(acc, b + p * ldb, ta ? a[p * lda] : a[p], n);
    }
    store_scaled(cm, col ? ldc : 1, acc, len, alpha, beta);
    return true;
}

/* One product of sizes already checked: C = alpha op(A) op(B) + beta C,
 * op(A) (m, k), op(B) (k, n), C (m, n); on the calling thread. */
static cg_status gemm_one(struct cg_cpu_ctx *c, int trans_a, int trans_b, int64_t m, int64_t n,
                          int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                          int64_t ldb, float beta, float *cm, int64_t ldc)
{
    if (k == 0) {
        /* An empty sum: C = beta * C. Not left to cblas, which may reject
         * lda == 0. */
        scale_c(cm, m, n, ldc, beta);
        return CG_OK;
    }
    if ((k == 1 || n == 1 || m == 1) &&
        gemm_thin(c, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, cm, ldc))
        return CG_OK;
#if CG_HAVE_ONEDNN
    if (use_onednn(trans_b, m, n, k)) {
        cg__cpu_onednn_one_thread();
        if (dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb,
                       beta, cm, ldc) == dnnl_success)
            return CG_OK;
        /* (it fails only when it cannot get memory: OpenBLAS then) */
    }
#endif
#if CG_HAVE_OPENBLAS
    if (trans_b && !trans_a && (double)m * n * k <= (double)CG_CPU_GEMM_SMALL_BT &&
        (m * n > 1200 || k < 32) && m != 8 && m != 16 && m != 32) {
        /* B^T of a small product: transposed here, so that OpenBLAS takes
         * its small-matrix kernel (see CG_CPU_GEMM_SMALL_BT) */
        float *bt = cg__cpu_scratch(c, sizeof(float) * (size_t)(n * k));
        if (bt) {
            for (int64_t p = 0; p < k; p++)
                for (int64_t j = 0; j < n; j++) bt[p * n + j] = b[j * ldb + p];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)n,
                        (blasint)k, alpha, a, (blasint)lda, bt, (blasint)n, beta, cm,
                        (blasint)ldc);
            return CG_OK;
        }
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
                (blasint)lda, b, (blasint)ldb, beta, cm, (blasint)ldc);
    return CG_OK;
#else
    return cg__cpu_sgemm_blocked(c, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, cm,
                                 ldc);
#endif
}

/* A batched product cut into work items: item i is tile i % tiles of
 * product i / tiles; a tile is tile_len rows (split_m) or columns of C. */
struct gemm_job {
    struct cg_cpu_ctx *c;
    const struct cg_gemm_desc *d;
    const float *a, *b;     /* product 0's operands (NULL when k == 0) */
    float *cm;
    int64_t tiles, tile_len;
    bool split_m;
    atomic_int status;      /* the first failure (blocked: packing memory) */
};

/* Items [lo, hi): each one single-threaded GEMM on its tile. */
static void gemm_items(void *arg, int64_t lo, int64_t hi)
{
    struct gemm_job *j = arg;
    const struct cg_gemm_desc *d = j->d;
    for (int64_t it = lo; it < hi; it++) {
        int64_t bi = it / j->tiles, t0 = it % j->tiles * j->tile_len;
        const float *am = j->a ? j->a + bi * d->stride_a : NULL;
        const float *bm = j->b ? j->b + bi * d->stride_b : NULL;
        float *cm = j->cm + bi * d->stride_c;
        int64_t m = d->m, n = d->n;
        if (j->split_m) {
            /* rows [t0, t0 + m) of C and of op(A) */
            m = d->m - t0 < j->tile_len ? d->m - t0 : j->tile_len;
            if (am) am += d->trans_a ? t0 : t0 * d->lda;
            cm += t0 * d->ldc;
        } else {
            /* columns [t0, t0 + n) of C and of op(B) */
            n = d->n - t0 < j->tile_len ? d->n - t0 : j->tile_len;
            if (bm) bm += d->trans_b ? t0 * d->ldb : t0;
            cm += t0;
        }
        cg_status s = gemm_one(j->c, d->trans_a, d->trans_b, m, n, d->k, d->alpha, am, d->lda,
                               bm, d->ldb, d->beta, cm, d->ldc);
        if (s != CG_OK) {
            int ok = CG_OK;
            atomic_compare_exchange_strong(&j->status, &ok, (int)s);
        }
    }
}

cg_status cg__cpu_gemm(void *ctx, const struct cg_gemm_desc *d, struct cg_ptr a,
                       struct cg_ptr b, struct cg_ptr c)
{
    /* a: batch x stored (m, k) or (k, m) if trans_a; b: stored (k, n) or
     * (n, k) if trans_b; c: batch x (m, n) */
    struct cg_cpu_ctx *cc = ctx;
    if (d->m < 0 || d->n < 0 || d->k < 0 || d->batch < 0 || d->m > INT_MAX ||
        d->n > INT_MAX || d->k > INT_MAX)
        return cg__cpu_error(cc, CG_STATUS_INVALID_ARGUMENT,
                             "gemm: bad size m %lld n %lld k %lld batch %lld",
                             (long long)d->m, (long long)d->n, (long long)d->k,
                             (long long)d->batch);
    if (d->m == 0 || d->n == 0 || d->batch == 0) {
        cc->stats.launches++;   /* an empty C: nothing is read or written */
        return CG_OK;
    }
    int64_t a_rows = d->trans_a ? d->k : d->m, a_cols = d->trans_a ? d->m : d->k;
    int64_t b_rows = d->trans_b ? d->n : d->k, b_cols = d->trans_b ? d->k : d->n;
    cg_status s = check_matrix(cc, c, d->m, d->n, d->ldc, d->stride_c, d->batch, "C");
    if (s == CG_OK && d->k > 0) {
        s = check_matrix(cc, a, a_rows, a_cols, d->lda, d->stride_a, d->batch, "A");
        if (s == CG_OK)
            s = check_matrix(cc, b, b_rows, b_cols, d->ldb, d->stride_b, d->batch, "B");
    }
    if (s != CG_OK) return s;
    cc->stats.launches++;

    int threads = gemm_threads(cc, (double)d->batch * d->m * d->n * d->k);
    struct gemm_job j = {.c = cc, .d = d, .a = d->k > 0 ? cg__cpu_at(a) : NULL,
                         .b = d->k > 0 ? cg__cpu_at(b) : NULL, .cm = cg__cpu_at(c), .tiles = 1,
                         .split_m = true, .tile_len = d->m};
    atomic_init(&j.status, CG_OK);
    int64_t items = d->batch;
    if (threads > 1 && d->batch < threads) {
        /* Few products: each into `threads` tiles of C. */
        j.split_m = d->m >= d->n;
        int64_t dim = j.split_m ? d->m : d->n, per = (dim + threads - 1) / threads;
        j.tile_len = (per + CG_CPU_GEMM_TILE_ALIGN - 1) / CG_CPU_GEMM_TILE_ALIGN *
                     CG_CPU_GEMM_TILE_ALIGN;
        j.tiles = (dim + j.tile_len - 1) / j.tile_len;
        items = d->batch * j.tiles;
    }
    if (threads > 1 && items > 1)
        cg__cpu_parallel_for(cc, items, 1, gemm_items, &j);
    else
        gemm_items(&j, 0, items);
    s = atomic_load(&j.status);
    if (s != CG_OK)
        return cg__cpu_error(cc, s, "gemm: out of memory for packing (m %lld n %lld k %lld)",
                             (long long)d->m, (long long)d->n, (long long)d->k);
    return CG_OK;
}
