/*
 * src/core/ops_matmul.c — matrix products with torch.matmul's shape rules,
 * on the backend's batched GEMM.
 *
 * Each operand is handed to GEMM as it lies in memory when its matrices are
 * row-major with a row pitch (untransposed) or column-major (transposed
 * flag: a cg_transpose view), and its batch dims collapse into one batch
 * stride (0 for a broadcast operand). Batch dims that do not collapse
 * loop over a few batched GEMMs (mm_split). Anything else is copied to a
 * contiguous temporary first. When b is shared by the whole batch and a's
 * batch and row dims collapse, the batch folds into GEMM's m (one large
 * product instead of many small ones: the common (B, T, C) x (C, N) case).
 *
 * Backward (torch.matmul's, with batch broadcasting undone by
 * cg__accumulate_grad):  dA = dC · B^T,  dB = A^T · dC.
 */
#include <inttypes.h>
#include <string.h>

#include "core/ops_internal.h"
#include "core/dispatch.h"

/* One operand of a GEMM: a (rows, cols) matrix per batch entry. */
struct mm_operand {
    cg_tensor *t;       /* the tensor read (the input or a contiguous copy) */
    cg_tensor *tmp;     /* the copy we own, if one was needed             */
    int trans;
    int64_t ld, batch_stride;
};

/* How a (r, c) matrix with strides (s0, s1) can be read by GEMM:
 * untransposed with row pitch ld >= c, or transposed with ld >= r. */
static bool mat_layout(int64_t r, int64_t c, int64_t s0, int64_t s1, int *trans, int64_t *ld)
{
    int64_t cm = c > 1 ? c : 1, rm = r > 1 ? r : 1;
    if (s1 == 1 || c <= 1) {
        int64_t l = r <= 1 ? cm : s0;
        if (l >= cm) {
            *trans = 0;
            *ld = l;
            return true;
        }
    }
    if (s0 == 1 || r <= 1) {
        int64_t l = c <= 1 ? rm : s1;
        if (l >= rm) {
            *trans = 1;
            *ld = l;
            return true;
        }
    }
    return false;
}

/* One stride for the batch dims of t stretched to (nb, bshape), if any. */
static bool batch_stride(const cg_tensor *t, int nb, const int64_t *bshape, int64_t *stride)
{
    int tb = t->ndim - 2;
    int64_t s = 0, expect = -1;
    for (int i = nb - 1; i >= 0; i--) {
        if (bshape[i] == 1) continue;
        int it = i - (nb - tb);
        int64_t si = it >= 0 && t->shape[it] == bshape[i] ? t->strides[it] : 0;
        if (expect < 0) {
            s = si; /* innermost batch dim: the batch stride */
        } else if (si != expect) {
            return false;
        }
        expect = si * bshape[i];
    }
    *stride = s;
    return true;
}

/* Prepares t (..., r, c) as a GEMM operand over batch (nb, bshape). */
static cg_status operand(cg_ctx *ctx, cg_tensor *t, int nb, const int64_t *bshape,
                         struct mm_operand *op)
{
    int64_t r = t->shape[t->ndim - 2], c = t->shape[t->ndim - 1];
    op->t = t;
    if (mat_layout(r, c, t->strides[t->ndim - 2], t->strides[t->ndim - 1], &op->trans, &op->ld) &&
        batch_stride(t, nb, bshape, &op->batch_stride))
        return CG_OK;
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, bshape, sizeof(int64_t) * (size_t)nb);
    shape[nb] = r;
    shape[nb + 1] = c;
    op->tmp = cg__tensor_new_unowned(ctx, nb + 2, shape);
    if (!op->tmp) return ctx->status;
    cg_status st = cg__ew(ctx, "cg_matmul (copying an operand)", CG_EW_COPY, 0, 0, op->tmp, t, NULL);
    if (st != CG_OK) return st;
    op->t = op->tmp;
    op->trans = 0;
    op->ld = c > 1 ? c : 1;
    op->batch_stride = r * c;
    return CG_OK;
}

/* The stride of batch dim i of (nb, bshape) in t: 0 where t broadcasts. */
static int64_t dim_stride(const cg_tensor *t, int nb, const int64_t *bshape, int i)
{
    int it = i - (nb - (t->ndim - 2));
    return it >= 0 && bshape[i] > 1 && t->shape[it] == bshape[i] ? t->strides[it] : 0;
}

/* At most this many GEMM calls in place of copying an operand. */
#define MM_MAX_CALLS 16

/* Batch dims that do not collapse into one stride, with matrices GEMM can
 * read as they lie: the heads of a (B, T, 3, h, d) projection seen as
 * (B, h, T, d), say. One batched GEMM over the largest batch dim per index
 * of the others, when that is at most MM_MAX_CALLS GEMMs, instead of a
 * contiguous copy of the operand (forward and backward of attention copied
 * Q, K, V and their gradients: ~6% of a small Transformer's step on cpu).
 * False (nothing done) when this does not apply. */
static bool mm_split(cg_ctx *ctx, cg_tensor *out, cg_tensor *a, cg_tensor *b, int nb,
                     const int64_t *bshape, cg_status *st)
{
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
    int ta, tb;
    int64_t lda, ldb;
    if (nb < 2 || !mat_layout(m, k, a->strides[a->ndim - 2], a->strides[a->ndim - 1], &ta, &lda) ||
        !mat_layout(k, n, b->strides[b->ndim - 2], b->strides[b->ndim - 1], &tb, &ldb))
        return false;
    int inner = 0;
    for (int i = 1; i < nb; i++)
        if (bshape[i] > bshape[inner]) inner = i;
    int64_t calls = cg__numel(nb, bshape) / bshape[inner];
    if (calls > MM_MAX_CALLS) return false;
    struct cg_gemm_desc d = {
        .trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k, .alpha = 1.0f, .beta = 0.0f,
        .lda = lda, .ldb = ldb, .ldc = n, .batch = bshape[inner],
        .stride_a = dim_stride(a, nb, bshape, inner), .stride_b = dim_stride(b, nb, bshape, inner),
        .stride_c = out->strides[inner],
    };
    *st = CG_OK;
    for (int64_t call = 0; call < calls && *st == CG_OK; call++) {
        struct cg_ptr pa = cg__ptr(a), pb = cg__ptr(b), pc = cg__ptr(out);
        int64_t rest = call;    /* the call's index over the other dims, row-major */
        for (int i = nb - 1; i >= 0; i--) {
            if (i == inner) continue;
            int64_t idx = rest % bshape[i];
            rest /= bshape[i];
            pa.off += idx * dim_stride(a, nb, bshape, i);
            pb.off += idx * dim_stride(b, nb, bshape, i);
            pc.off += idx * out->strides[i];
        }
        *st = cg__be_gemm(ctx, "cg_matmul", &d, pa, pb, pc);
    }
    return true;
}

/* out (bshape..., M, N), contiguous  =  a (..., M, K) · b (..., K, N). */
static cg_status mm_into(cg_ctx *ctx, cg_tensor *out, cg_tensor *a, cg_tensor *b, int nb,
                         const int64_t *bshape)
{
    int64_t m = a->shape[a->ndim - 2], k = a->shape[a->ndim - 1], n = b->shape[b->ndim - 1];
    int64_t batch = cg__numel(nb, bshape);
    if (batch * m * n == 0) return CG_OK;
    if (k == 0) return cg_tensor_fill(out, 0.0f);
    int64_t sa, sb;
    cg_status st;
    if (!(batch_stride(a, nb, bshape, &sa) && batch_stride(b, nb, bshape, &sb)) &&
        mm_split(ctx, out, a, b, nb, bshape, &st))
        return st;
    struct mm_operand oa = {0}, ob = {0};
    st = operand(ctx, a, nb, bshape, &oa);
    if (st == CG_OK) st = operand(ctx, b, nb, bshape, &ob);
    if (st == CG_OK) {
        struct cg_gemm_desc d = {
            .trans_a = oa.trans, .trans_b = ob.trans, .m = m, .n = n, .k = k,
            .alpha = 1.0f, .beta = 0.0f, .lda = oa.ld, .ldb = ob.ld, .ldc = n,
            .stride_a = oa.batch_stride, .stride_b = ob.batch_stride, .stride_c = m * n,
            .batch = batch,
        };
        /* b shared by every batch entry and a's rows evenly spaced across
         * the batch: one GEMM with m = batch * M. */
        if (batch > 1 && ob.batch_stride == 0 && !oa.trans && oa.batch_stride == m * oa.ld) {
            d.m = batch * m;
            d.batch = 1;
            d.stride_a = d.stride_b = d.stride_c = 0;
        }
        st = cg__be_gemm(ctx, "cg_matmul", &d, cg__ptr(oa.t), cg__ptr(ob.t), cg__ptr(out));
    }
    cg__tensor_unref(oa.tmp);
    cg__tensor_unref(ob.tmp);
    return st;
}

/* The last two dims swapped, as a view in the current scope. */
static cg_tensor *mT(cg_tensor *t) { return cg_transpose(t, -2, -1); }

static cg_status matmul_backward(struct cg_node *nd, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *a = nd->inputs[0], *b = nd->inputs[1];
    cg_status st = CG_OK;
    if (cg__input_needs_grad(nd, 0)) /* dA = g · B^T, batch dims summed by accumulate */
        st = cg__accumulate_grad(a, cg_matmul(g, mT(b)));
    if (st != CG_OK || !cg__input_needs_grad(nd, 1)) return st;
    if (b->ndim == 2 && b->strides[0] == 1 && b->shape[0] > 1 && b->shape[1] > 1) {
        /* b is stored column-major: Linear's W^T, a transposed view of a
         * contiguous (N, K) weight. Compute dB^T = g^T · A, contiguous in
         * the weight's own layout, and hand back its transposed view: the
         * gradient then reaches W as a plain contiguous copy instead of a
         * strided transpose (the same GEMM either way). */
        int64_t k = a->shape[a->ndim - 1], n = b->shape[1];
        cg_tensor *a2 = a->ndim > 2 ? cg_reshape(a, CG_SHAPE(-1, k)) : a;
        cg_tensor *g2 = g->ndim > 2 ? cg_reshape(g, CG_SHAPE(-1, n)) : g;
        return cg__accumulate_grad(b, mT(cg_matmul(mT(g2), a2))); /* NULL-safe chain */
    }
    if (b->ndim == 2 && a->ndim > 2) {
        /* dB = sum over the batch of A^T g = A2^T · g2 with the batch folded
         * into the rows: one GEMM, no (B, K, N) temporary. */
        int64_t k = a->shape[a->ndim - 1], n = b->shape[1];
        cg_tensor *a2 = cg_reshape(a, CG_SHAPE(-1, k));
        cg_tensor *g2 = cg_reshape(g, CG_SHAPE(-1, n));
        return cg__accumulate_grad(b, cg_matmul(mT(a2), g2));
    }
    return cg__accumulate_grad(b, cg_matmul(mT(a), g));
}

CG_API cg_tensor *cg_matmul(cg_tensor *a, cg_tensor *b)
{
    if (!a || !b) return NULL;
    cg_ctx *ctx = cg__ctx_of(a);
    char sa[128], sb[128];
    if (cg__ctx_of(b) != ctx) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_matmul: tensors of two different contexts");
        return NULL;
    }
    if (a->ndim == 0 || b->ndim == 0) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "cg_matmul: shapes %s and %s: 0-d operand",
                  CG_SHAPE_STR(a, sa), CG_SHAPE_STR(b, sb));
        return NULL;
    }
    if (a->ndim == 1 || b->ndim == 1) {
        /* torch.matmul: a 1-d a is a row (1, K), a 1-d b a column (K, 1);
         * the added dim is removed from the result. */
        int token = cg__compose_begin(ctx);
        cg_tensor *r = cg_matmul(a->ndim == 1 ? cg_unsqueeze(a, 0) : a,
                                 b->ndim == 1 ? cg_unsqueeze(b, -1) : b);
        if (a->ndim == 1) r = cg_squeeze(r, b->ndim == 1 ? -1 : -2);
        if (b->ndim == 1) r = cg_squeeze(r, -1);
        return cg__compose_end(ctx, token, r);
    }
    int64_t k = a->shape[a->ndim - 1];
    if (b->shape[b->ndim - 2] != k) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "cg_matmul: shapes %s and %s do not fit (a's last dim %" PRId64
                  " != b's second-to-last dim %" PRId64 ")",
                  CG_SHAPE_STR(a, sa), CG_SHAPE_STR(b, sb), k, b->shape[b->ndim - 2]);
        return NULL;
    }
    /* Batch dims: NumPy broadcasting of a's and b's leading dims. */
    int na = a->ndim - 2, nbb = b->ndim - 2, nb = na > nbb ? na : nbb;
    int64_t shape[CG_MAX_DIMS];
    if (nb + 2 > CG_MAX_DIMS) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_matmul: too many dims");
        return NULL;
    }
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - na), ib = i - (nb - nbb);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                      "cg_matmul: batch dims of shapes %s and %s do not broadcast",
                      CG_SHAPE_STR(a, sa), CG_SHAPE_STR(b, sb));
            return NULL;
        }
        shape[i] = da == 1 ? db : da;
    }
    shape[nb] = a->shape[a->ndim - 2];
    shape[nb + 1] = b->shape[b->ndim - 1];
    cg_tensor *out = cg__tensor_new(ctx, nb + 2, shape);
    if (!out) return NULL;
    if (mm_into(ctx, out, a, b, nb, shape) != CG_OK) {
        cg_tensor_free(out);
        return NULL;
    }
    bool failed;
    cg__record(out, "cg_matmul", matmul_backward, 2, (cg_tensor *[]){a, b}, 0, NULL, &failed);
    if (failed) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}
