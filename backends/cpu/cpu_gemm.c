/*
 * backends/cpu/cpu_gemm.c — row-major batched GEMM through OpenBLAS (or,
 * in builds without it, cpu_gemm_blocked.c's blocked C loop):
 *   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b],  b < batch
 * op(A) is (m, k), op(B) is (k, n), C is (m, n) with row pitch ldc.
 * Every size and pitch is checked here, so cblas never reaches xerbla (which
 * prints and would leave C untouched).
 *
 * Threads. OpenBLAS splits a GEMM over its thread pool (every core, or
 * OPENBLAS_NUM_THREADS when set before the process starts). Waking the pool
 * and splitting the work costs tens of microseconds, and far more when the
 * other cores are busy (the pool spins: on a loaded 2-core machine two
 * threads lost to one at every MLP-sized GEMM we measured), while a GEMM of
 * fewer than CG_CPU_GEMM_MT_MIN multiply-adds takes only ~0.1-0.2 ms on one
 * core. So small GEMMs — most of a small model's training step — run on one
 * thread, and larger ones on the pool's full size, read once per process.
 * openblas_set_num_threads only stores a number (~10 ns) and is called only
 * when the count changes. It is process-wide, like OpenBLAS's pool itself.
 */
#include <limits.h>
#include <pthread.h>

#include "config.h"
#if CG_HAVE_OPENBLAS
#include <cblas.h>
#endif

#include "cpu.h"

#if CG_HAVE_OPENBLAS
/* 2^23 multiply-adds: ~0.1-0.2 ms on one core at 40-80 GFLOP/s. */
#define CG_CPU_GEMM_MT_MIN ((int64_t)1 << 23)

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static int blas_max_threads = 1;

static void blas_threads_init(void)
{
    int n = openblas_get_num_threads();
    blas_max_threads = n > 0 ? n : 1;
}

/* The thread count for one (m, n, k) product. */
static void blas_threads_for(int64_t m, int64_t n, int64_t k)
{
    pthread_once(&blas_once, blas_threads_init);
    if (blas_max_threads == 1) return;
    int want = m * n * k < CG_CPU_GEMM_MT_MIN ? 1 : blas_max_threads;
    if (openblas_get_num_threads() != want) openblas_set_num_threads(want);
}
#endif

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

#if CG_HAVE_OPENBLAS
    if (d->k > 0) blas_threads_for(d->m, d->n, d->k);
#endif
    for (int64_t i = 0; i < d->batch; i++) {
        float *cm = cg__cpu_at(c) + i * d->stride_c;
        if (d->k == 0) {
            /* An empty sum: C = beta * C. Not left to cblas, which may
             * reject lda == 0. */
            scale_c(cm, d->m, d->n, d->ldc, d->beta);
            continue;
        }
        const float *am = cg__cpu_at(a) + i * d->stride_a;
        const float *bm = cg__cpu_at(b) + i * d->stride_b;
#if CG_HAVE_OPENBLAS
        cblas_sgemm(CblasRowMajor, d->trans_a ? CblasTrans : CblasNoTrans,
                    d->trans_b ? CblasTrans : CblasNoTrans, (blasint)d->m, (blasint)d->n,
                    (blasint)d->k, d->alpha, am, (blasint)d->lda, bm, (blasint)d->ldb,
                    d->beta, cm, (blasint)d->ldc);
#else
        s = cg__cpu_sgemm_blocked(cc, d->trans_a, d->trans_b, d->m, d->n, d->k, d->alpha, am,
                                  d->lda, bm, d->ldb, d->beta, cm, d->ldc);
        if (s != CG_OK) return s;
#endif
    }
    return CG_OK;
}
