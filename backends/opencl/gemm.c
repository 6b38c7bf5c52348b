/*
 * backends/opencl/gemm.c — batched row-major GEMM through CLBlast.
 *
 *   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]      (backend.h)
 *
 * batch == 1 calls CLBlastSgemmWithTempBuffer with a scratch buffer the
 * instance owns, sized by CLBlastSGemmTempBufferSize and grown on demand, so
 * CLBlast does not create and free one per call. batch > 1 calls
 * CLBlastSgemmStridedBatched (one launch for all matrices; its C API takes
 * no scratch buffer). Edge cases CLBlast rejects are handled here:
 * m, n or batch == 0 is a no-op, k == 0 gives C = beta * C.
 * beta == 0 means "C is not read" in BLAS, but CLBlast computes beta * C,
 * which is NaN where a pooled buffer held Inf or NaN; C is zeroed first.
 * CLBlast's kernel parameters for the device come from its database, or
 * from a stored tuning result that tune.c applied when the instance opened
 * (tools/clgrad-tune searches and stores them).
 */
#include "cl_backend.h"

#include <clblast_c.h>
#include <pthread.h>
#include <string.h>

static pthread_mutex_t cg_clblast_lock = PTHREAD_MUTEX_INITIALIZER;
static int cg_clblast_users;

void cg_cl_clblast_ref(void)
{
    pthread_mutex_lock(&cg_clblast_lock);
    cg_clblast_users++;
    pthread_mutex_unlock(&cg_clblast_lock);
}

/* CLBlast caches compiled programs per cl_context for the whole process;
 * those keep our contexts alive. When no instance is open, drop them. */
void cg_cl_clblast_unref(void)
{
    pthread_mutex_lock(&cg_clblast_lock);
    if (--cg_clblast_users == 0)
        CLBlastClearCache();
    pthread_mutex_unlock(&cg_clblast_lock);
}

void cg_cl_gemm_release(struct cg_cl *cl)
{
    if (cl->gemm_tmp)
        clReleaseMemObject(cl->gemm_tmp);
    cl->gemm_tmp = NULL;
    cl->gemm_tmp_bytes = 0;
}

/* Checks one operand stored as (rows, cols) with row pitch ld, batch
 * copies `stride` apart. */
static cg_status cg_gemm_operand(struct cg_cl *cl, const char *arg, struct cg_ptr p,
                                 int64_t rows, int64_t cols, int64_t ld, int64_t stride,
                                 int64_t batch)
{
    if (ld < (cols > 1 ? cols : 1) || stride < 0)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "gemm: %s stored (%lld, %lld) needs ld >= %lld and stride >= 0 "
                            "(got ld %lld, stride %lld)",
                            arg, (long long)rows, (long long)cols,
                            (long long)(cols > 1 ? cols : 1), (long long)ld,
                            (long long)stride);
    int64_t span = (batch - 1) * stride + (rows - 1) * ld + cols;
    return cg_cl_check_range(cl, "gemm", arg, p, span);
}

static cg_status cg_gemm_tmp(struct cg_cl *cl, size_t bytes)
{
    if (bytes <= cl->gemm_tmp_bytes && cl->gemm_tmp)
        return CG_OK;
    cg_cl_gemm_release(cl);
    if (bytes < 256)
        bytes = 256;
    cl_int rc;
    cl->gemm_tmp = clCreateBuffer(cl->dev.context, CL_MEM_READ_WRITE, bytes, NULL, &rc);
    if (rc != CL_SUCCESS) {
        cl->gemm_tmp = NULL;
        return cg_cl_fail(cl->err, sizeof cl->err, "clCreateBuffer(gemm scratch)", rc);
    }
    cl->gemm_tmp_bytes = bytes;
    return CG_OK;
}

/* C[b] (m, n) at pitch ldc, batch copies stride_c apart, as a view. */
static struct cg_view cg_c_view(const struct cg_gemm_desc *d, struct cg_ptr c)
{
    struct cg_view v;
    memset(&v, 0, sizeof v);
    v.buf = c.buf;
    v.off = c.off;
    v.ndim = 3;
    v.shape[0] = d->batch;
    v.shape[1] = d->m;
    v.shape[2] = d->n;
    v.strides[0] = d->stride_c;
    v.strides[1] = d->ldc;
    v.strides[2] = 1;
    return v;
}

cg_status cg_ocl_gemm(void *ctx, const struct cg_gemm_desc *d, struct cg_ptr a,
                      struct cg_ptr b, struct cg_ptr c)
{
    struct cg_cl *cl = ctx;
    if (!d)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "gemm: NULL descriptor");
    if (d->m < 0 || d->n < 0 || d->k < 0 || d->batch < 0)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "gemm: negative size m %lld n %lld k %lld batch %lld",
                            (long long)d->m, (long long)d->n, (long long)d->k,
                            (long long)d->batch);
    if (d->m == 0 || d->n == 0 || d->batch == 0)
        return CG_OK;
    cg_status st = cg_gemm_operand(cl, "c", c, d->m, d->n, d->ldc, d->stride_c, d->batch);
    if (st != CG_OK)
        return st;
    struct cg_view cv = cg_c_view(d, c);
    if (d->k == 0)   /* op(A) op(B) is an empty sum: C = beta * C */
        return d->beta == 0.0f ? cg_ocl_fill(cl, &cv, 0.0f)
                               : cg_ocl_ew(cl, CG_EW_AFFINE, d->beta, 0.0f, &cv, &cv, NULL);

    st = cg_gemm_operand(cl, "a", a, d->trans_a ? d->k : d->m, d->trans_a ? d->m : d->k,
                         d->lda, d->stride_a, d->batch);
    if (st == CG_OK)
        st = cg_gemm_operand(cl, "b", b, d->trans_b ? d->n : d->k, d->trans_b ? d->k : d->n,
                             d->ldb, d->stride_b, d->batch);
    if (st == CG_OK && d->beta == 0.0f)
        st = cg_ocl_fill(cl, &cv, 0.0f);
    if (st != CG_OK)
        return st;

    const CLBlastLayout lay = CLBlastLayoutRowMajor;
    const CLBlastTranspose ta = d->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = d->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    const size_t m = (size_t)d->m, n = (size_t)d->n, k = (size_t)d->k;
    const size_t ao = (size_t)a.off, bo = (size_t)b.off, co = (size_t)c.off;
    const size_t lda = (size_t)d->lda, ldb = (size_t)d->ldb, ldc = (size_t)d->ldc;
    cl_command_queue *q = &cl->queue;
    if (d->batch == 1) {
        size_t tmp = 0;
        CG_CLBLAST_TRY(cl->err, CLBlastSGemmTempBufferSize(lay, ta, tb, m, n, k, ao, lda, bo,
                                                           ldb, co, ldc, q, &tmp));
        st = cg_gemm_tmp(cl, tmp);
        if (st != CG_OK)
            return st;
        CG_CLBLAST_TRY(cl->err,
                       CLBlastSgemmWithTempBuffer(lay, ta, tb, m, n, k, d->alpha, a.buf->mem,
                                                  ao, lda, b.buf->mem, bo, ldb, d->beta,
                                                  c.buf->mem, co, ldc, q, NULL,
                                                  cl->gemm_tmp));
    } else {
        CG_CLBLAST_TRY(cl->err,
                       CLBlastSgemmStridedBatched(lay, ta, tb, m, n, k, d->alpha, a.buf->mem,
                                                  ao, lda, (size_t)d->stride_a, b.buf->mem,
                                                  bo, ldb, (size_t)d->stride_b, d->beta,
                                                  c.buf->mem, co, ldc, (size_t)d->stride_c,
                                                  (size_t)d->batch, q, NULL));
    }
    cl->stats.launches++;
    return CG_OK;
}
