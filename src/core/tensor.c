/*
 * src/core/tensor.c — tensor creation, host copies, printing, and the
 * shape and view/coalescing helpers the ops use. Who owns a tensor and
 * when it dies is lifetime.c's.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "core/dispatch.h"

/* ---- shapes ---------------------------------------------------------- */

bool cg__numel_ok(int ndim, const int64_t *shape, int64_t *out)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (!cg__mul_ok(n, shape[i], &n)) return false;
    *out = n;
    return true;
}

int64_t cg__numel(int ndim, const int64_t *shape)
{
    int64_t n;
    return cg__numel_ok(ndim, shape, &n) ? n : INT64_MAX;
}

bool cg__window_span(int64_t in, int64_t k, int64_t pad, int64_t dil, int64_t *span)
{
    int64_t pad2, reach, s; /* k, dil >= 1 (callers check): -reach - 1 cannot overflow */
    return cg__mul_ok(pad, 2, &pad2) && cg__mul_ok(dil, k - 1, &reach) &&
           cg__add_ok(in, pad2, &s) && cg__add_ok(s, -reach - 1, span);
}

void cg__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides)
{
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i] > 0 ? shape[i] : 1;
    }
}

bool cg__shape_eq(const cg_tensor *a, const cg_tensor *b)
{
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

char *cg__shape_str(int ndim, const int64_t *shape, char *buf, size_t len)
{
    size_t used = 0;
    int n = snprintf(buf, len, "(");
    used = n > 0 ? (size_t)n : 0;
    for (int i = 0; i < ndim && used < len; i++) {
        n = snprintf(buf + used, len - used, "%s%" PRId64, i ? ", " : "", shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    if (used < len) snprintf(buf + used, len - used, ndim == 1 ? ",)" : ")");
    return buf;
}

cg_status cg__check_shape(cg_ctx *ctx, const char *what, int ndim, const int64_t *shape,
                          int64_t *numel)
{
    if (ndim < 0 || ndim > CG_MAX_DIMS)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: %d dims (at most %d)", what, ndim,
                         CG_MAX_DIMS);
    if (ndim > 0 && !shape)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: shape is NULL", what);
    /* The product counted in bytes from the start, so one pass checks both
     * the byte size and the element count; cg__mul_ok fails on a negative
     * size too, and only then does a second pass say which. */
    int64_t bytes = (int64_t)sizeof(float);
    int i = 0;
    while (i < ndim && cg__mul_ok(bytes, shape[i], &bytes)) i++;
    if (i == ndim) {
        *numel = bytes / (int64_t)sizeof(float);
        return CG_OK;
    }
    for (i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: dim %d is negative (%" PRId64 ")",
                             what, i, shape[i]);
    char sh[128];
    return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                     "%s: shape %s too large (its size in bytes overflows 64 bits)", what,
                     cg__shape_str(ndim, shape, sh, sizeof sh));
}

/* ---- creation -------------------------------------------------------- */

CG_API cg_tensor *cg_tensor_empty(cg_ctx *ctx, int ndim, const int64_t *shape)
{
    return cg__tensor_new(ctx, ndim, shape);
}

CG_API cg_tensor *cg_tensor_full(cg_ctx *ctx, int ndim, const int64_t *shape, float value)
{
    cg_tensor *t = cg__tensor_new(ctx, ndim, shape);
    if (!t) return NULL;
    struct cg_view v = cg__view_of(t);
    if (cg__numel(t->ndim, t->shape) > 0 &&
        cg__be_fill(ctx, "cg_tensor_full", &v, value) != CG_OK) {
        cg_tensor_free(t);
        return NULL;
    }
    return t;
}

CG_API cg_tensor *cg_tensor_zeros(cg_ctx *ctx, int ndim, const int64_t *shape)
{
    return cg_tensor_full(ctx, ndim, shape, 0.0f);
}

CG_API cg_tensor *cg_tensor_from_host(cg_ctx *ctx, int ndim, const int64_t *shape,
                                      const float *data)
{
    cg_tensor *t = cg__tensor_new(ctx, ndim, shape);
    if (!t) return NULL;
    int64_t n = cg__numel(ndim, shape);
    if (n > 0 && !data) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_tensor_from_host: data is NULL");
        cg_tensor_free(t);
        return NULL;
    }
    if (cg_tensor_set_data(t, data, n) != CG_OK) {
        cg_tensor_free(t);
        return NULL;
    }
    return t;
}

static cg_tensor *from_generator(cg_ctx *ctx, int ndim, const int64_t *shape, bool normal,
                                 float a, float b)
{
    int64_t n;
    if (cg__check_shape(ctx, normal ? "cg_tensor_normal" : "cg_tensor_uniform", ndim, shape,
                        &n) != CG_OK)
        return NULL;
    float *host = malloc((size_t)(n > 0 ? n : 1) * sizeof *host);
    if (!host) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "random tensor: out of host memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++)
        host[i] = normal ? (float)(a + b * cg_rand_normal(ctx))
                         : (float)(a + (b - a) * cg_rand_uniform(ctx));
    cg_tensor *t = cg_tensor_from_host(ctx, ndim, shape, host);
    free(host);
    return t;
}

CG_API cg_tensor *cg_tensor_uniform(cg_ctx *ctx, int ndim, const int64_t *shape, float lo,
                                    float hi)
{
    return from_generator(ctx, ndim, shape, false, lo, hi);
}

CG_API cg_tensor *cg_tensor_normal(cg_ctx *ctx, int ndim, const int64_t *shape, float mean,
                                   float std)
{
    return from_generator(ctx, ndim, shape, true, mean, std);
}

/* ---- host copies ----------------------------------------------------- */

/* A contiguous copy of t in a fresh unowned tensor (t itself if contiguous,
 * with a new reference). */
static cg_tensor *contiguous_ref(cg_tensor *t)
{
    if (cg_tensor_is_contiguous(t)) {
        cg__tensor_ref(t);
        return t;
    }
    cg_ctx *ctx = t->st->ctx;
    cg_tensor *c = cg__tensor_new_unowned(ctx, t->ndim, t->shape);
    if (!c) return NULL;
    struct cg_view out = cg_tensor_view(c), in = cg_tensor_view(t);
    cg__views_coalesce(&out, &in, NULL);
    if (cg__be_ew(ctx, "copying a strided tensor", CG_EW_COPY, 0, 0, &out, &in, NULL) != CG_OK) {
        cg__tensor_unref(c);
        return NULL;
    }
    return c;
}

static cg_status check_count(cg_ctx *ctx, const char *what, const cg_tensor *t, int64_t n)
{
    int64_t numel = cg__numel(t->ndim, t->shape);
    if (n == numel) return CG_OK;
    char sh[128];
    return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "%s: %" PRId64 " values for a %s tensor (%" PRId64
                     " elements)", what, n, cg__shape_str(t->ndim, t->shape, sh, sizeof sh), numel);
}

CG_API cg_status cg_tensor_to_host(const cg_tensor *t, float *dst, int64_t n)
{
    if (!t) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_tensor_to_host: tensor is NULL");
    cg_ctx *ctx = t->st->ctx;
    cg_status st = check_count(ctx, "cg_tensor_to_host", t, n);
    if (st != CG_OK || n == 0) return st;
    if (!dst) return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_tensor_to_host: dst is NULL");
    cg_tensor *c = contiguous_ref((cg_tensor *)t);
    if (!c) return ctx->status ? ctx->status : CG_STATUS_BACKEND_ERROR;
    st = cg__be_download(ctx, "cg_tensor_to_host", dst, cg__ptr(c), n);
    cg__tensor_unref(c);
    return st;
}

/* Records the range of a whole-storage upload (see struct cg_storage), for
 * index checks without a read-back. Only integral data can be valid
 * indices, so the scan stops at the first value that is not an integer and
 * leaves the range unknown: an image or a feature batch costs a few
 * elements, not a pass over the upload (an index op on such a tensor reads
 * it back and names the bad value). v == floorf(v) without a libm call:
 * below 2^23, adding and subtracting 2^23 rounds |v| to an integer; from
 * 2^23 up (infinity too) every float is one, as floorf says. NaN fails
 * both tests. */
static void note_range(struct cg_storage *st, const float *src, int64_t n)
{
    float lo = INFINITY, hi = -INFINITY;
    st->host_range_known = false;
    for (int64_t i = 0; i < n; i++) {
        float v = src[i], av = fabsf(v);
        if (!(av >= 0x1p23f || (av + 0x1p23f) - 0x1p23f == av)) return;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    st->host_min = lo;
    st->host_max = hi;
    st->host_all_integral = true;
    st->host_range_known = true;
}

CG_API cg_status cg_tensor_set_data(cg_tensor *t, const float *src, int64_t n)
{
    if (!t) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_tensor_set_data: tensor is NULL");
    cg_ctx *ctx = t->st->ctx;
    cg_status st = check_count(ctx, "cg_tensor_set_data", t, n);
    if (st != CG_OK || n == 0) return st;
    if (!src) return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_tensor_set_data: src is NULL");
    cg__storage_written(t->st);
    if (cg_tensor_is_contiguous(t)) {
        if ((st = cg__be_upload(ctx, "cg_tensor_set_data", cg__ptr(t), src, n)) != CG_OK)
            return st;
        if (t->offset == 0 && (size_t)n * sizeof(float) == t->st->bytes) note_range(t->st, src, n);
        return CG_OK;
    }
    cg_tensor *tmp = cg__tensor_new_unowned(ctx, t->ndim, t->shape);
    if (!tmp) return ctx->status;
    st = cg__be_upload(ctx, "cg_tensor_set_data", cg__ptr(tmp), src, n);
    if (st == CG_OK) {
        struct cg_view out = cg_tensor_view(t), in = cg_tensor_view(tmp);
        cg__views_coalesce(&out, &in, NULL);
        st = cg__be_ew(ctx, "cg_tensor_set_data (strided)", CG_EW_COPY, 0, 0, &out, &in, NULL);
    }
    cg__tensor_unref(tmp);
    return st;
}

CG_API cg_status cg_tensor_item(const cg_tensor *t, float *out)
{
    if (!t) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_tensor_item: tensor is NULL");
    if (cg__numel(t->ndim, t->shape) != 1) {
        char sh[128];
        return cg__error(t->st->ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_tensor_item: tensor of shape %s has %" PRId64 " elements, not 1",
                         cg__shape_str(t->ndim, t->shape, sh, sizeof sh),
                         cg__numel(t->ndim, t->shape));
    }
    return cg_tensor_to_host(t, out, 1);
}

/* ---- accessors ------------------------------------------------------- */

CG_API int cg_tensor_ndim(const cg_tensor *t) { return t->ndim; }

CG_API int64_t cg_tensor_dim(const cg_tensor *t, int dim)
{
    if (dim < 0) dim += t->ndim;
    if (dim < 0 || dim >= t->ndim) return -1;
    return t->shape[dim];
}

CG_API const int64_t *cg_tensor_shape(const cg_tensor *t) { return t->shape; }
CG_API const int64_t *cg_tensor_strides(const cg_tensor *t) { return t->strides; }
CG_API int64_t cg_tensor_numel(const cg_tensor *t) { return cg__numel(t->ndim, t->shape); }
CG_API cg_dtype cg_tensor_dtype(const cg_tensor *t) { return t->dtype; }
CG_API cg_ctx *cg_tensor_ctx(const cg_tensor *t) { return t->st->ctx; }

CG_API bool cg_tensor_is_contiguous(const cg_tensor *t)
{
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

CG_API char *cg_tensor_describe(const cg_tensor *t, char *buf, size_t len)
{
    char sh[128];
    if (!t) {
        snprintf(buf, len, "(null)");
        return buf;
    }
    snprintf(buf, len, "%s f32", cg__shape_str(t->ndim, t->shape, sh, sizeof sh));
    return buf;
}

CG_API struct cg_view cg_tensor_view(const cg_tensor *t)
{
    struct cg_view v;
    memset(&v, 0, sizeof v);
    v.buf = t->st->buf;
    v.off = t->offset;
    v.ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        v.shape[i] = t->shape[i];
        v.strides[i] = t->strides[i];
    }
    return v;
}

/* ---- backend views --------------------------------------------------- */

struct cg_view cg__view_of(const cg_tensor *t)
{
    struct cg_view v = cg_tensor_view(t);
    cg__views_coalesce(&v, NULL, NULL);
    return v;
}

/* Drops size-1 dims, then merges dim i into i+1 when every view is
 * contiguous across the pair. Keeps the views' shapes identical. */
void cg__views_coalesce(struct cg_view *out, struct cg_view *a, struct cg_view *b)
{
    struct cg_view *vs[3] = {out, a, b};
    int nv = b ? 3 : a ? 2 : 1;
    int nd = 0;
    for (int i = 0; i < out->ndim; i++) {
        if (out->shape[i] == 1) continue;
        for (int k = 0; k < nv; k++) {
            vs[k]->shape[nd] = vs[k]->shape[i];
            vs[k]->strides[nd] = vs[k]->strides[i];
        }
        nd++;
    }
    int merged = 0;
    for (int i = 0; i < nd; i++) {
        bool can = merged > 0;
        for (int k = 0; can && k < nv; k++)
            can = vs[k]->strides[merged - 1] == vs[k]->strides[i] * vs[k]->shape[i];
        if (can) {
            for (int k = 0; k < nv; k++) {
                vs[k]->shape[merged - 1] *= vs[k]->shape[i];
                vs[k]->strides[merged - 1] = vs[k]->strides[i];
            }
        } else {
            for (int k = 0; k < nv; k++) {
                vs[k]->shape[merged] = vs[k]->shape[i];
                vs[k]->strides[merged] = vs[k]->strides[i];
            }
            merged++;
        }
    }
    for (int k = 0; k < nv; k++) vs[k]->ndim = merged;
    for (int k = 0; k < nv; k++)
        for (int i = merged; i < CG_MAX_DIMS; i++) {
            vs[k]->shape[i] = 1;
            vs[k]->strides[i] = 0;
        }
}

/* ---- printing -------------------------------------------------------- */

#define PRINT_EDGE 3   /* values shown at each end of a long dim */
#define PRINT_FULL 1000

static void print_rec(FILE *f, const cg_tensor *t, const float *data, int dim, int64_t base,
                      bool summarize, int indent)
{
    if (t->ndim == 0) {
        fprintf(f, "%.6g", data[0]);
        return;
    }
    int64_t n = t->shape[dim];
    int64_t inner = 1;
    for (int i = dim + 1; i < t->ndim; i++) inner *= t->shape[i];
    fputc('[', f);
    for (int64_t i = 0; i < n; i++) {
        if (summarize && n > 2 * PRINT_EDGE && i == PRINT_EDGE) {
            fprintf(f, "..., ");
            if (dim < t->ndim - 1) fprintf(f, "\n%*s", indent + 1, "");
            i = n - PRINT_EDGE - 1;
            continue;
        }
        if (dim == t->ndim - 1) {
            fprintf(f, "%.6g", data[base + i]);
        } else {
            print_rec(f, t, data, dim + 1, base + i * inner, summarize, indent + 1);
        }
        if (i + 1 < n) fprintf(f, dim == t->ndim - 1 ? ", " : ",\n%*s", indent + 1, "");
    }
    fputc(']', f);
}

CG_API cg_status cg_tensor_print(const cg_tensor *t, FILE *f)
{
    if (!t) {
        fprintf(f, "tensor(null)\n");
        return CG_OK;
    }
    int64_t n = cg__numel(t->ndim, t->shape);
    float *data = malloc((size_t)(n > 0 ? n : 1) * sizeof *data);
    if (!data) return cg__error(t->st->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_tensor_print: out of memory");
    cg_status st = cg_tensor_to_host(t, data, n);
    if (st == CG_OK) {
        char sh[128], strides[128];
        fprintf(f, "tensor(");
        if (n == 0)
            fprintf(f, "[]");
        else
            print_rec(f, t, data, 0, 0, n > PRINT_FULL, 7);
        fprintf(f, ", shape=%s, strides=%s%s)\n", cg__shape_str(t->ndim, t->shape, sh, sizeof sh),
                cg__shape_str(t->ndim, t->strides, strides, sizeof strides),
                t->requires_grad ? ", requires_grad" : "");
    }
    free(data);
    return st;
}
