/*
 * backends/opencl/gemm.c — batched row-major GEMM:
 *
 *   C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b]      (backend.h)
 *
 * Two implementations, one chosen per instance at the first GEMM
 * (gemm_path; CLGRAD_VERBOSE=1 says which, and which kernel each kind
 * of product first used):
 *
 *   own      on CPU devices (PoCL): cl/gemm.cl, register-blocked kernels
 *            written for a compiler that turns a work-item into straight
 *            vector code. Products up to CG_GEMM_PACK_MIN multiply-adds
 *            per batch entry read A and B in place (no copies, one launch:
 *            gemm_outer for NN/TN/TT, gemm_dot for NT); larger ones first
 *            copy op(A) and op(B) into zero-padded panels (gemm_pack, two
 *            launches) so the micro-kernel streams through memory at unit
 *            stride whatever the row pitch. Nothing to tune and no manual
 *            step. On PoCL (two Zen3 cores) it runs the MLP's batch-64
 *            shapes at 70-140 GFLOP/s and N=1024 at about half the
 *            machine's FMA peak, several times CLBlast's untuned speed.
 *   clblast  everywhere else (GPUs): CLBlast, with the kernel parameters of
 *            its database or of a stored tuning result (tune.c).
 *
 * CLGRAD_GEMM=own or =clblast forces one (measurements, tests);
 * =own-inplace and =own-packed also force the own kernels' copy decision.
 *
 * For CLBlast, batch == 1 calls CLBlastSgemmWithTempBuffer with a scratch
 * buffer the instance owns, sized by CLBlastSGemmTempBufferSize and grown
 * on demand, so CLBlast does not create and free one per call. batch > 1
 * calls CLBlastSgemmStridedBatched (its C API takes no scratch buffer).
 * The own kernels' packed panels use the same scratch buffer. Edge cases
 * CLBlast rejects are handled here for both: m, n or batch == 0 is a no-op,
 * k == 0 gives C = beta * C. beta == 0 means "C is not read" in BLAS, but
 * CLBlast computes beta * C, which is NaN where a pooled buffer held Inf or
 * NaN; C is zeroed first (the own kernels never read C when beta == 0).
 */
#include "cl_backend.h"

#include <clblast_c.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t clblast_lock = PTHREAD_MUTEX_INITIALIZER;
static int cg_clblast_users;

void cg_cl_clblast_ref(void)
{
    pthread_mutex_lock(&clblast_lock);
    cg_clblast_users++;
    pthread_mutex_unlock(&clblast_lock);
}

/* CLBlast caches compiled programs per cl_context for the whole process;
 * those keep our contexts alive. When no instance is open, drop them. */
void cg_cl_clblast_unref(void)
{
    pthread_mutex_lock(&clblast_lock);
    if (--cg_clblast_users == 0)
        CLBlastClearCache();
    pthread_mutex_unlock(&clblast_lock);
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
static cg_status gemm_operand(struct cg_cl *cl, const char *arg, struct cg_ptr p,
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

static cg_status gemm_tmp(struct cg_cl *cl, size_t bytes)
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
static struct cg_view c_view(const struct cg_gemm_desc *d, struct cg_ptr c)
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

/* ---- which implementation ------------------------------------------- */

enum {
    CG_GEMM_CLBLAST = 1,
    CG_GEMM_OWN = 2,
    /* bits above: kernel kinds already reported under CLGRAD_VERBOSE */
    CG_GEMM_SEEN_OUTER = 4,
    CG_GEMM_SEEN_DOT = 8,
    CG_GEMM_SEEN_PACKED = 16,
    /* CLGRAD_GEMM=own-inplace / own-packed: never / always pack (tests) */
    CG_GEMM_NO_PACK = 32,
    CG_GEMM_ALL_PACK = 64,
};

static int gemm_verbose(void)
{
    return cg_cl_env_bool("CLGRAD_VERBOSE", 0);
}

/* Own kernels on CPU devices, CLBlast elsewhere; CLGRAD_GEMM overrides. */
static int gemm_path(struct cg_cl *cl)
{
    if (cl->gemm_path)
        return cl->gemm_path & 3;
    static const char *const modes[] = {"own", "own-inplace", "own-packed", "clblast", NULL};
    static const int paths[] = {CG_GEMM_OWN, CG_GEMM_OWN | CG_GEMM_NO_PACK,
                                CG_GEMM_OWN | CG_GEMM_ALL_PACK, CG_GEMM_CLBLAST};
    static const char *const whys[] = {"CLGRAD_GEMM=own", "CLGRAD_GEMM=own-inplace: never packed",
                                       "CLGRAD_GEMM=own-packed: always packed",
                                       "CLGRAD_GEMM=clblast"};
    int m = cg_cl_env_choice("CLGRAD_GEMM", modes, -1);
    const char *why;
    if (m >= 0) {
        cl->gemm_path = paths[m];
        why = whys[m];
    } else {
        cl->gemm_path = cl->cpu_device ? CG_GEMM_OWN : CG_GEMM_CLBLAST;
        why = cl->cpu_device ? "a CPU device" : "not a CPU device";
    }
    if (gemm_verbose())
        fprintf(stderr, "clgrad opencl: GEMM on %s: %s (%s)\n", cl->dev.name,
                (cl->gemm_path & 3) == CG_GEMM_OWN ? "own kernels (cl/gemm.cl)" : "CLBlast", why);
    return cl->gemm_path;
}

/* ---- own kernels (cl/gemm.cl) ----------------------------------------- */

#define CG_GEMM_MR 6    /* tile rows of gemm_outer (cl/gemm.cl MR)   */
#define CG_GEMM_NR 16   /* tile columns (cl/gemm.cl NR)              */
#define CG_GEMM_PACK_KB 32
/* In place below this many multiply-adds per batch entry, packed from
 * it. Measured on PoCL 3.1, Zen3, two cores, side by side (GFLOP/s, in
 * place / packed): 256^3 32 / 25, 512^3 20 / 15, 1024^3 12 / 29 (one core:
 * 45 / 75), 2048^3 6.5 / 13.6. The MLP's and CNN's shapes are all below
 * 2^24; copies would cost them a third. */
#define CG_GEMM_PACK_MIN ((int64_t)1 << 28)
#define CG_GEMM_PACK_MAX_BYTES ((size_t)256 << 20)

static int64_t gemm_ceil(int64_t x, int64_t d)
{
    return (x + d - 1) / d;
}

/* Enqueues kernel k over a 3-d range of work-groups of one work-item: a
 * work-item is a whole register tile, and PoCL hands groups to its
 * threads one by one, which balances the two cores. */
static cg_status gemm_launch(struct cg_cl *cl, enum cg_cl_kern k, const struct cg_cl_arg *args,
                             int nargs, int64_t g0, int64_t g1, int64_t g2)
{
    struct cg_cl_kref kr;
    cg_status st = cg_cl_kernel(cl, k, &kr);
    size_t global[3] = {(size_t)g0, (size_t)g1, (size_t)g2}, local[3] = {1, 1, 1};
    return st != CG_OK ? st : cg_cl_launch_nd(cl, &kr, args, nargs, 3, NULL, global, local);
}

static void gemm_seen(struct cg_cl *cl, int bit, const struct cg_gemm_desc *d,
                      const char *what)
{
    if ((cl->gemm_path & bit) || !gemm_verbose())
        return;
    cl->gemm_path |= bit;
    fprintf(stderr,
            "clgrad opencl: GEMM %lld x %lld x %lld %c%c batch %lld (first of its kind): %s\n",
            (long long)d->m, (long long)d->n, (long long)d->k, d->trans_a ? 'T' : 'N',
            d->trans_b ? 'T' : 'N', (long long)d->batch, what);
}

/* gemm_outer: D (rows, cols) = X * Y, X read through (xsp, xrs, xks), Y
 * through (ysp, ldy); see cl/gemm.cl. */
struct cg_gemm_outer {
    int ct, ypad;
    struct cg_ptr x, y;
    cl_long xsp, xrs, xks, sx, ysp, ldy, sy, rows, cols;
};

static cg_status gemm_run_outer(struct cg_cl *cl, const struct cg_gemm_desc *d,
                                const struct cg_gemm_outer *o, struct cg_ptr c)
{
    cl_long coff = c.off, ldc = d->ldc, sc = d->stride_c, k = d->k;
    cl_long xoff = o->x.off, yoff = o->y.off;
    cl_int ct = o->ct, ypad = o->ypad;
    float alpha = d->alpha, beta = d->beta;
    struct cg_cl_arg args[] = {
        CG_ARG(c.buf->mem), CG_ARG(coff), CG_ARG(ldc), CG_ARG(sc), CG_ARG(ct),
        CG_ARG(o->x.buf->mem), CG_ARG(xoff), CG_ARG(o->xsp), CG_ARG(o->xrs), CG_ARG(o->xks),
        CG_ARG(o->sx), CG_ARG(o->y.buf->mem), CG_ARG(yoff), CG_ARG(o->ysp), CG_ARG(o->ldy),
        CG_ARG(o->sy), CG_ARG(ypad), CG_ARG(o->rows), CG_ARG(o->cols), CG_ARG(k),
        CG_ARG(alpha), CG_ARG(beta),
    };
    return gemm_launch(cl, CG_CL_K_GEMM_OUTER, args, (int)(sizeof args / sizeof args[0]),
                       gemm_ceil(o->rows, CG_GEMM_MR), gemm_ceil(o->cols, CG_GEMM_NR),
                       d->batch);
}

/* C = A * B^T in place (row-major NT). */
static cg_status gemm_run_dot(struct cg_cl *cl, const struct cg_gemm_desc *d, struct cg_ptr a,
                              struct cg_ptr b, struct cg_ptr c)
{
    cl_long coff = c.off, ldc = d->ldc, sc = d->stride_c;
    cl_long aoff = a.off, lda = d->lda, sa = d->stride_a;
    cl_long boff = b.off, ldb = d->ldb, sb = d->stride_b;
    cl_long m = d->m, n = d->n, k = d->k;
    float alpha = d->alpha, beta = d->beta;
    struct cg_cl_arg args[] = {
        CG_ARG(c.buf->mem), CG_ARG(coff), CG_ARG(ldc), CG_ARG(sc),
        CG_ARG(a.buf->mem), CG_ARG(aoff), CG_ARG(lda), CG_ARG(sa),
        CG_ARG(b.buf->mem), CG_ARG(boff), CG_ARG(ldb), CG_ARG(sb),
        CG_ARG(m), CG_ARG(n), CG_ARG(k), CG_ARG(alpha), CG_ARG(beta),
    };
    return gemm_launch(cl, CG_CL_K_GEMM_DOT, args, (int)(sizeof args / sizeof args[0]),
                       gemm_ceil(d->m, 3), gemm_ceil(d->n, 4), d->batch);
}

/* Copies the (count, k) operand src(i, p) = src[off + b*ssb + i*sr + p*sk]
 * into zero-padded panels of w rows at dst (element offset doff, dsb per
 * batch entry); `entries` is 1 for an operand shared by the batch. */
static cg_status gemm_pack(struct cg_cl *cl, cl_long doff, cl_long dsb, struct cg_ptr src,
                           cl_long sr, cl_long sk, cl_long ssb, cl_long count, cl_long k,
                           cl_int w, int64_t entries)
{
    cl_long soff = src.off;
    struct cg_cl_arg args[] = {
        CG_ARG(cl->gemm_tmp), CG_ARG(doff), CG_ARG(dsb), CG_ARG(src.buf->mem), CG_ARG(soff),
        CG_ARG(sr), CG_ARG(sk), CG_ARG(ssb), CG_ARG(count), CG_ARG(k), CG_ARG(w),
    };
    return gemm_launch(cl, CG_CL_K_GEMM_PACK, args, (int)(sizeof args / sizeof args[0]),
                       gemm_ceil(k, CG_GEMM_PACK_KB), gemm_ceil(count, w), entries);
}

/* Large products: op(A) into 6-row panels, op(B) into 16-column panels
 * (shared operands packed once), then gemm_outer over the panels.
 * Returns CG_STATUS_OUT_OF_MEMORY, without launching, when the scratch
 * buffer cannot grow: the caller runs in place instead. */
static cg_status gemm_run_packed(struct cg_cl *cl, const struct cg_gemm_desc *d,
                                 struct cg_ptr a, struct cg_ptr b, struct cg_ptr c)
{
    const int64_t pm = gemm_ceil(d->m, CG_GEMM_MR) * CG_GEMM_MR;
    const int64_t pn = gemm_ceil(d->n, CG_GEMM_NR) * CG_GEMM_NR;
    const int64_t na = d->stride_a ? d->batch : 1, nb = d->stride_b ? d->batch : 1;
    const int64_t xsb = pm * d->k, ysb = pn * d->k;   /* floats per batch entry */
    const double bytes = ((double)na * xsb + (double)nb * ysb) * sizeof(float);
    if (bytes > (double)CG_GEMM_PACK_MAX_BYTES)
        return CG_STATUS_OUT_OF_MEMORY;
    cg_status st = gemm_tmp(cl, (size_t)bytes);
    if (st != CG_OK)
        return CG_STATUS_OUT_OF_MEMORY;
    const cl_long k = d->k, xoff = 0, yoff = na * xsb;
    /* op(A)(i, p) and op(B)^T(j, p) through strides. */
    st = gemm_pack(cl, xoff, xsb, a, d->trans_a ? 1 : d->lda, d->trans_a ? d->lda : 1,
                   d->stride_a, d->m, k, CG_GEMM_MR, na);
    if (st == CG_OK)
        st = gemm_pack(cl, yoff, ysb, b, d->trans_b ? d->ldb : 1, d->trans_b ? 1 : d->ldb,
                       d->stride_b, d->n, k, CG_GEMM_NR, nb);
    if (st != CG_OK)
        return st;
    struct cg_buffer tmp = {.mem = cl->gemm_tmp, .bytes = cl->gemm_tmp_bytes};
    struct cg_gemm_outer o = {
        .ct = 0, .ypad = 1,
        .x = {.buf = &tmp, .off = xoff}, .xsp = CG_GEMM_MR * k, .xrs = 1, .xks = CG_GEMM_MR,
        .sx = na > 1 ? xsb : 0,
        .y = {.buf = &tmp, .off = yoff}, .ysp = CG_GEMM_NR * k, .ldy = CG_GEMM_NR,
        .sy = nb > 1 ? ysb : 0,
        .rows = d->m, .cols = d->n,
    };
    return gemm_run_outer(cl, d, &o, c);
}

static cg_status gemm_own(struct cg_cl *cl, const struct cg_gemm_desc *d, struct cg_ptr a,
                          struct cg_ptr b, struct cg_ptr c)
{
    const double macs = (double)d->m * (double)d->n * (double)d->k;
    if ((cl->gemm_path & CG_GEMM_ALL_PACK) ||
        (!(cl->gemm_path & CG_GEMM_NO_PACK) && macs >= (double)CG_GEMM_PACK_MIN)) {
        cg_status st = gemm_run_packed(cl, d, a, b, c);
        if (st != CG_STATUS_OUT_OF_MEMORY) {
            if (st == CG_OK)
                gemm_seen(cl, CG_GEMM_SEEN_PACKED, d,
                          "gemm_pack + gemm_outer (6x16 tiles over packed panels)");
            return st;
        }
    }
    if (!d->trans_a && d->trans_b) {
        gemm_seen(cl, CG_GEMM_SEEN_DOT, d, "gemm_dot in place (3x4 tiles along k)");
        return gemm_run_dot(cl, d, a, b, c);
    }
    struct cg_gemm_outer o;
    memset(&o, 0, sizeof o);
    if (!d->trans_b) {   /* NN, TN: X = op(A), Y = B */
        o.x = a;
        o.xrs = d->trans_a ? 1 : d->lda;
        o.xks = d->trans_a ? d->lda : 1;
        o.sx = d->stride_a;
        o.y = b;
        o.ldy = d->ldb;
        o.sy = d->stride_b;
        o.rows = d->m;
        o.cols = d->n;
    } else {   /* TT: C^T (n, m) = B (n, k) * A (k, m), stored transposed */
        o.ct = 1;
        o.x = b;
        o.xrs = d->ldb;
        o.xks = 1;
        o.sx = d->stride_b;
        o.y = a;
        o.ldy = d->lda;
        o.sy = d->stride_a;
        o.rows = d->n;
        o.cols = d->m;
    }
    o.xsp = CG_GEMM_MR * o.xrs;
    o.ysp = CG_GEMM_NR;
    gemm_seen(cl, CG_GEMM_SEEN_OUTER, d, "gemm_outer in place (6x16 tiles)");
    return gemm_run_outer(cl, d, &o, c);
}

cg_status cg_cl_gemm(void *ctx, const struct cg_gemm_desc *d, struct cg_ptr a,
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
    cg_status st = gemm_operand(cl, "c", c, d->m, d->n, d->ldc, d->stride_c, d->batch);
    if (st != CG_OK)
        return st;
    struct cg_view cv = c_view(d, c);
    if (d->k == 0)   /* op(A) op(B) is an empty sum: C = beta * C */
        return d->beta == 0.0f ? cg_cl_fill(cl, &cv, 0.0f)
                               : cg_cl_ew(cl, CG_EW_AFFINE, d->beta, 0.0f, &cv, &cv, NULL);

    st = gemm_operand(cl, "a", a, d->trans_a ? d->k : d->m, d->trans_a ? d->m : d->k,
                      d->lda, d->stride_a, d->batch);
    if (st == CG_OK)
        st = gemm_operand(cl, "b", b, d->trans_b ? d->n : d->k, d->trans_b ? d->k : d->n,
                          d->ldb, d->stride_b, d->batch);
    if (st == CG_OK && gemm_path(cl) == CG_GEMM_OWN)
        return gemm_own(cl, d, a, b, c);
    if (st == CG_OK && d->beta == 0.0f)   /* see "k == 0" above */
        st = cg_cl_fill(cl, &cv, 0.0f);
    cl_command_queue *q = NULL;
    if (st == CG_OK)   /* CLBlast enqueues by itself: pending work goes first */
        st = cg_cl_queue_take(cl, &q);
    if (st != CG_OK)
        return st;

    const CLBlastLayout lay = CLBlastLayoutRowMajor;
    const CLBlastTranspose ta = d->trans_a ? CLBlastTransposeYes : CLBlastTransposeNo;
    const CLBlastTranspose tb = d->trans_b ? CLBlastTransposeYes : CLBlastTransposeNo;
    const size_t m = (size_t)d->m, n = (size_t)d->n, k = (size_t)d->k;
    const size_t ao = (size_t)a.off, bo = (size_t)b.off, co = (size_t)c.off;
    const size_t lda = (size_t)d->lda, ldb = (size_t)d->ldb, ldc = (size_t)d->ldc;
    if (d->batch == 1) {
        size_t tmp = 0;
        CG_CLBLAST_TRY(cl->err, CLBlastSGemmTempBufferSize(lay, ta, tb, m, n, k, ao, lda, bo,
                                                           ldb, co, ldc, q, &tmp));
        st = gemm_tmp(cl, tmp);
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
