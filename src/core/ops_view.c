/*
 * src/core/ops_view.c — shape ops: reshape/view/flatten/(un)squeeze,
 * permute/transpose, slice, expand, contiguous/clone, cat.
 *
 * A view shares its input's storage (cg__tensor_view) and records a node
 * whose backward maps the gradient back onto the input's shape: the inverse
 * permutation (a view again), a reshape, a scatter into zeros for slices, or
 * a broadcast sum for expand (done by cg__accumulate_grad).
 */
#include <inttypes.h>
#include <string.h>

#include "core/ops_internal.h"
#include "core/dispatch.h"

cg_tensor *cg__contig_ref(cg_tensor *t)
{
    if (cg_tensor_is_contiguous(t)) {
        cg__tensor_ref(t);
        return t;
    }
    cg_ctx *ctx = cg__ctx_of(t);
    cg_tensor *c = cg__tensor_new_unowned(ctx, t->ndim, t->shape);
    if (c && cg__ew(ctx, "making a tensor contiguous", CG_EW_COPY, 0, 0, c, t, NULL) != CG_OK) {
        cg__tensor_unref(c);
        c = NULL;
    }
    return c;
}

/* Records a one-input view/copy op; frees out on failure. */
static cg_tensor *record1(cg_tensor *out, cg_tensor *in, const char *name, cg_backward_fn bw,
                          struct cg_node **node)
{
    if (!out) return NULL;
    bool failed;
    struct cg_node *n = cg__record(out, name, bw, 1, &in, 0, NULL, &failed);
    if (failed) {
        cg_tensor_free(out);
        return NULL;
    }
    if (node) *node = n;
    return out;
}

/* ---- reshape family -------------------------------------------------- */

/* Strides that let a tensor of (old shape, old strides) be seen as new shape
 * without a copy; false if the layout does not allow it. PyTorch's
 * computeStride (aten/src/ATen/TensorUtils.cpp): walk old dims from the
 * last, grouping those that are contiguous with each other into chunks,
 * and give each chunk's new dims strides inside that chunk. */
static bool view_strides(int ond, const int64_t *oshape, const int64_t *ostr, int nnd,
                         const int64_t *nshape, int64_t *nstr)
{
    if (ond == 0 || cg__numel(ond, oshape) == 0) {
        cg__contiguous_strides(nnd, nshape, nstr);
        return true;
    }
    int view_d = nnd - 1;
    int64_t chunk_base = ostr[ond - 1], tensor_numel = 1, view_numel = 1;
    for (int d = ond - 1; d >= 0; d--) {
        tensor_numel *= oshape[d];
        if (d == 0 || (oshape[d - 1] != 1 && ostr[d - 1] != tensor_numel * chunk_base)) {
            while (view_d >= 0 && (view_numel < tensor_numel || nshape[view_d] == 1)) {
                nstr[view_d] = view_numel * chunk_base;
                view_numel *= nshape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base = ostr[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

/* A view of t with shape when the layout allows it; else (copy_ok) a new
 * row-major copy; else NULL with *not_viewable set. Not recorded. */
static cg_tensor *reshape_raw(cg_tensor *t, int ndim, const int64_t *shape, bool copy_ok,
                              bool *not_viewable)
{
    int64_t strides[CG_MAX_DIMS];
    if (not_viewable) *not_viewable = false;
    if (view_strides(t->ndim, t->shape, t->strides, ndim, shape, strides))
        return cg__tensor_view(t, ndim, shape, strides, t->offset);
    if (!copy_ok) {
        if (not_viewable) *not_viewable = true;
        return NULL;
    }
    cg_ctx *ctx = cg__ctx_of(t);
    cg_tensor *out = cg__tensor_new(ctx, ndim, shape);
    if (!out || cg__tnumel(out) == 0) return out;
    /* Row-major copy: out's buffer seen with t's shape. */
    struct cg_view vo = cg_tensor_view(t), vi = cg_tensor_view(t);
    vo.buf = out->st->buf;
    vo.off = out->offset;
    cg__contiguous_strides(t->ndim, t->shape, vo.strides);
    cg__views_coalesce(&vo, &vi, NULL);
    if (cg__be_ew(ctx, "cg_reshape (copy)", CG_EW_COPY, 0, 0, &vo, &vi, NULL) != CG_OK) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

static cg_status reshape_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *x = n->inputs[0];
    return cg__accumulate_grad(x, reshape_raw(g, x->ndim, x->shape, true, NULL));
}

/* Shape with one -1 resolved; error naming `what` on a bad shape. */
static cg_status resolve_shape(cg_ctx *ctx, const char *what, const cg_tensor *t, int ndim,
                               const int64_t *shape, int64_t *out)
{
    char sa[128], sb[128];
    if (ndim < 0 || ndim > CG_MAX_DIMS || (ndim > 0 && !shape))
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: bad shape (%d dims)", what, ndim);
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
        } else if (shape[i] < 0) {
            return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: bad size %" PRId64 " in %s", what,
                             shape[i], cg__shape_str(ndim, shape, sb, sizeof sb));
        } else if (!cg__mul_ok(known, shape[i], &known)) {
            return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: shape %s too large", what,
                             cg__shape_str(ndim, shape, sb, sizeof sb));
        }
    }
    int64_t numel = cg__tnumel(t);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                             "%s: cannot reshape %s (%" PRId64 " elements) into %s", what,
                             CG_SHAPE_STR(t, sa), numel, cg__shape_str(ndim, shape, sb, sizeof sb));
        out[infer] = numel / known;
        known *= out[infer];
    }
    if (known != numel)
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "%s: cannot reshape %s (%" PRId64 " elements) into %s", what,
                         CG_SHAPE_STR(t, sa), numel, cg__shape_str(ndim, shape, sb, sizeof sb));
    return CG_OK;
}

static cg_tensor *reshape_op(const char *name, cg_tensor *t, int ndim, const int64_t *shape,
                             bool copy_ok)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int64_t s[CG_MAX_DIMS];
    if (resolve_shape(ctx, name, t, ndim, shape, s) != CG_OK) return NULL;
    bool not_viewable;
    cg_tensor *out = reshape_raw(t, ndim, s, copy_ok, &not_viewable);
    if (not_viewable) {
        char sa[128], sb[128];
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "%s: a tensor of shape %s and strides %s cannot be viewed as %s without a "
                  "copy (use cg_reshape)", name, CG_SHAPE_STR(t, sa),
                  cg__shape_str(t->ndim, t->strides, sb, sizeof sb),
                  cg__shape_str(ndim, s, (char[128]){0}, 128));
        return NULL;
    }
    return record1(out, t, name, reshape_backward, NULL);
}

CG_API cg_tensor *cg_reshape(cg_tensor *t, int ndim, const int64_t *shape)
{
    return reshape_op("cg_reshape", t, ndim, shape, true);
}

CG_API cg_tensor *cg_view(cg_tensor *t, int ndim, const int64_t *shape)
{
    return reshape_op("cg_view", t, ndim, shape, false);
}

CG_API cg_tensor *cg_flatten(cg_tensor *t, int start_dim, int end_dim)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    if (t->ndim == 0) return reshape_op("cg_flatten", t, CG_SHAPE(1), true);
    int s, e;
    if (cg__norm_axis(ctx, "cg_flatten", start_dim, t->ndim, &s) != CG_OK ||
        cg__norm_axis(ctx, "cg_flatten", end_dim, t->ndim, &e) != CG_OK)
        return NULL;
    if (s > e) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_flatten: start_dim %d is after end_dim %d",
                  start_dim, end_dim);
        return NULL;
    }
    int64_t shape[CG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < s; i++) shape[nd++] = t->shape[i];
    shape[nd++] = cg__numel(e - s + 1, t->shape + s);
    for (int i = e + 1; i < t->ndim; i++) shape[nd++] = t->shape[i];
    return reshape_op("cg_flatten", t, nd, shape, true);
}

CG_API cg_tensor *cg_unsqueeze(cg_tensor *t, int dim)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int d;
    if (t->ndim >= CG_MAX_DIMS) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_unsqueeze: already %d dims (the most)",
                  t->ndim);
        return NULL;
    }
    if (cg__norm_axis(ctx, "cg_unsqueeze", dim, t->ndim + 1, &d) != CG_OK) return NULL;
    int64_t shape[CG_MAX_DIMS];
    for (int i = 0, k = 0; i <= t->ndim; i++) shape[i] = i == d ? 1 : t->shape[k++];
    return reshape_op("cg_unsqueeze", t, t->ndim + 1, shape, false);
}

CG_API cg_tensor *cg_squeeze(cg_tensor *t, int dim)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int d;
    if (cg__norm_axis(ctx, "cg_squeeze", dim, t->ndim, &d) != CG_OK) return NULL;
    if (t->shape[d] != 1) {
        char sh[128];
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_squeeze: dim %d of %s has size %" PRId64
                  ", not 1", dim, CG_SHAPE_STR(t, sh), t->shape[d]);
        return NULL;
    }
    int64_t shape[CG_MAX_DIMS];
    for (int i = 0, k = 0; i < t->ndim; i++)
        if (i != d) shape[k++] = t->shape[i];
    return reshape_op("cg_squeeze", t, t->ndim - 1, shape, false);
}

/* ---- permute / transpose --------------------------------------------- */

static cg_status permute_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* y dim i is x dim perm[i]: the inverse puts g's dim i back at perm[i]. */
    cg_tensor *x = n->inputs[0];
    int64_t shape[CG_MAX_DIMS], strides[CG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        shape[n->i[i]] = g->shape[i];
        strides[n->i[i]] = g->strides[i];
    }
    return cg__accumulate_grad(x, cg__tensor_view(g, x->ndim, shape, strides, g->offset));
}

static cg_tensor *permute_op(const char *name, cg_tensor *t, const int *perm)
{
    int64_t shape[CG_MAX_DIMS], strides[CG_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) {
        shape[i] = t->shape[perm[i]];
        strides[i] = t->strides[perm[i]];
    }
    struct cg_node *node = NULL;
    cg_tensor *out = record1(cg__tensor_view(t, t->ndim, shape, strides, t->offset), t, name,
                             permute_backward, &node);
    if (node)
        for (int i = 0; i < t->ndim; i++) node->i[i] = perm[i];
    return out;
}

CG_API cg_tensor *cg_permute(cg_tensor *t, int ndim, const int64_t *perm)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    char sh[128];
    if (ndim != t->ndim || (ndim > 0 && !perm)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_permute: %d dims in the permutation for a "
                  "tensor of shape %s", ndim, CG_SHAPE_STR(t, sh));
        return NULL;
    }
    int p[CG_MAX_DIMS];
    bool used[CG_MAX_DIMS] = {false};
    for (int i = 0; i < ndim; i++) {
        int64_t v = perm[i] < 0 ? perm[i] + ndim : perm[i];
        if (v < 0 || v >= ndim || used[v]) {
            cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                      "cg_permute: %s is not a permutation of the %d dims of %s",
                      cg__shape_str(ndim, perm, (char[128]){0}, 128), ndim, CG_SHAPE_STR(t, sh));
            return NULL;
        }
        used[v] = true;
        p[i] = (int)v;
    }
    return permute_op("cg_permute", t, p);
}

CG_API cg_tensor *cg_transpose(cg_tensor *t, int dim0, int dim1)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int a, b;
    if (cg__norm_axis(ctx, "cg_transpose", dim0, t->ndim, &a) != CG_OK ||
        cg__norm_axis(ctx, "cg_transpose", dim1, t->ndim, &b) != CG_OK)
        return NULL;
    int p[CG_MAX_DIMS];
    for (int i = 0; i < t->ndim; i++) p[i] = i;
    p[a] = b;
    p[b] = a;
    return permute_op("cg_transpose", t, p);
}

/* ---- slice ----------------------------------------------------------- */

static cg_status slice_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* Add g into x's gradient at the sliced positions. */
    cg_tensor *x = n->inputs[0];
    int dim = (int)n->i[0];
    int64_t start = n->i[1], step = n->i[2];
    int64_t strides[CG_MAX_DIMS];
    cg__contiguous_strides(x->ndim, x->shape, strides);
    int64_t offset = start * strides[dim];
    strides[dim] *= step;
    return cg__accumulate_grad_window(x, g->ndim, g->shape, strides, offset, g);
}

CG_API cg_tensor *cg_slice(cg_tensor *t, int dim, int64_t start, int64_t end, int64_t step)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    int d;
    if (cg__norm_axis(ctx, "cg_slice", dim, t->ndim, &d) != CG_OK) return NULL;
    if (step < 1) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_slice: step %" PRId64 " (must be >= 1)", step);
        return NULL;
    }
    /* Python slice semantics: negative bounds count from the end; clamp. */
    int64_t n = t->shape[d];
    if (start < 0) start += n;
    if (end < 0) end += n;
    start = start < 0 ? 0 : start > n ? n : start;
    end = end < start ? start : end > n ? n : end;
    int64_t len = (end - start + step - 1) / step;
    int64_t shape[CG_MAX_DIMS], strides[CG_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    memcpy(strides, t->strides, sizeof strides);
    shape[d] = len;
    strides[d] *= step;
    struct cg_node *node = NULL;
    cg_tensor *out = record1(cg__tensor_view(t, t->ndim, shape, strides,
                                             t->offset + start * t->strides[d]),
                             t, "cg_slice", slice_backward, &node);
    if (node) {
        node->i[0] = d;
        node->i[1] = start;
        node->i[2] = step;
    }
    return out;
}

/* ---- expand ---------------------------------------------------------- */

static cg_status identity_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* expand: cg__accumulate_grad sums g over the stretched dims */
    return cg__accumulate_grad(n->inputs[0], g);
}

CG_API cg_tensor *cg_expand(cg_tensor *t, int ndim, const int64_t *shape)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    char sa[128], sb[128];
    if (ndim < t->ndim || ndim > CG_MAX_DIMS || (ndim > 0 && !shape)) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "cg_expand: cannot expand %s to %d dims",
                  CG_SHAPE_STR(t, sa), ndim);
        return NULL;
    }
    int64_t s[CG_MAX_DIMS], strides[CG_MAX_DIMS];
    int lead = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int it = i - lead;
        int64_t want = shape[i];
        if (it < 0) {
            if (want < 0) goto bad;
            s[i] = want;
            strides[i] = 0;
        } else if (want == -1 || want == t->shape[it]) {
            s[i] = t->shape[it];
            strides[i] = t->strides[it];
        } else if (t->shape[it] == 1 && want >= 0) {
            s[i] = want;
            strides[i] = 0;
        } else {
            goto bad;
        }
    }
    int64_t n;
    if (!cg__numel_ok(ndim, s, &n)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_expand: %s expanded to %s is too large",
                  CG_SHAPE_STR(t, sa), cg__shape_str(ndim, shape, sb, sizeof sb));
        return NULL;
    }
    return record1(cg__tensor_view(t, ndim, s, strides, t->offset), t, "cg_expand",
                   identity_backward, NULL);
bad:
    cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "cg_expand: cannot expand %s to %s",
              CG_SHAPE_STR(t, sa), cg__shape_str(ndim, shape, sb, sizeof sb));
    return NULL;
}

/* ---- contiguous, clone ----------------------------------------------- */

static cg_tensor *copy_op(const char *name, cg_tensor *t, bool always)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    cg_tensor *out;
    if (!always && cg_tensor_is_contiguous(t)) {
        out = cg__tensor_view(t, t->ndim, t->shape, t->strides, t->offset);
    } else {
        out = cg__tensor_new(ctx, t->ndim, t->shape);
        if (out && cg__ew(ctx, name, CG_EW_COPY, 0, 0, out, t, NULL) != CG_OK) {
            cg_tensor_free(out);
            out = NULL;
        }
    }
    return record1(out, t, name, identity_backward, NULL);
}

CG_API cg_tensor *cg_contiguous(cg_tensor *t) { return copy_op("cg_contiguous", t, false); }
CG_API cg_tensor *cg_clone(cg_tensor *t) { return copy_op("cg_clone", t, true); }

/* ---- cat ------------------------------------------------------------- */

static cg_status cat_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    /* Input k's gradient is g's window [off_k, off_k + size_k) along dim. */
    int dim = (int)n->i[0];
    int64_t off = 0;
    cg_status st = CG_OK;
    for (int k = 0; k < n->n_inputs && st == CG_OK; k++) {
        cg_tensor *x = n->inputs[k];
        if (cg__input_needs_grad(n, k))
            st = cg__accumulate_grad(x, cg__tensor_view(g, g->ndim, x->shape, g->strides,
                                                        g->offset + off * g->strides[dim]));
        off += x->shape[dim];
    }
    return st;
}

/* Up to CG_NODE_MAX_INPUTS inputs, already checked. */
static cg_tensor *cat_small(int n, cg_tensor *const *ts, int dim)
{
    cg_ctx *ctx = cg__ctx_of(ts[0]);
    int64_t shape[CG_MAX_DIMS];
    memcpy(shape, ts[0]->shape, sizeof shape);
    shape[dim] = 0;
    for (int k = 0; k < n; k++) shape[dim] += ts[k]->shape[dim];
    cg_tensor *out = cg__tensor_new(ctx, ts[0]->ndim, shape);
    if (!out) return NULL;
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        if (cg__tnumel(ts[k]) > 0) {
            struct cg_view vo = cg_tensor_view(out), vi = cg_tensor_view(ts[k]);
            vo.shape[dim] = ts[k]->shape[dim];
            vo.off = out->offset + off * out->strides[dim];
            cg__views_coalesce(&vo, &vi, NULL);
            if (cg__be_ew(ctx, "cg_cat", CG_EW_COPY, 0, 0, &vo, &vi, NULL) != CG_OK) {
                cg_tensor_free(out);
                return NULL;
            }
        }
        off += ts[k]->shape[dim];
    }
    bool failed;
    struct cg_node *node = cg__record(out, "cg_cat", cat_backward, n, ts, 0, NULL, &failed);
    if (failed) {
        cg_tensor_free(out);
        return NULL;
    }
    if (node) node->i[0] = dim;
    return out;
}

CG_API cg_tensor *cg_cat(int n, cg_tensor *const *ts, int dim)
{
    if (n < 1 || !ts) {
        cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_cat: no tensors");
        return NULL;
    }
    for (int k = 0; k < n; k++)
        if (!ts[k]) return NULL;
    cg_ctx *ctx = cg__ctx_of(ts[0]);
    int d;
    if (cg__norm_axis(ctx, "cg_cat", dim, ts[0]->ndim, &d) != CG_OK) return NULL;
    for (int k = 1; k < n; k++) {
        bool ok = cg__ctx_of(ts[k]) == ctx && ts[k]->ndim == ts[0]->ndim;
        for (int i = 0; ok && i < ts[0]->ndim; i++)
            ok = i == d || ts[k]->shape[i] == ts[0]->shape[i];
        if (!ok) {
            char sa[128], sb[128];
            cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                      "cg_cat: tensor %d of shape %s does not match tensor 0 of shape %s "
                      "outside dim %d", k, CG_SHAPE_STR(ts[k], sa), CG_SHAPE_STR(ts[0], sb), dim);
            return NULL;
        }
    }
    if (n <= CG_NODE_MAX_INPUTS) return cat_small(n, ts, d);
    /* More inputs than a node holds: cat up to CG_NODE_MAX_INPUTS chunks,
     * each recursively, then the chunks (every step is a recorded cat, so
     * gradients flow through both levels). */
    int token = cg__compose_begin(ctx);
    int chunk = (n + CG_NODE_MAX_INPUTS - 1) / CG_NODE_MAX_INPUTS;
    cg_tensor *parts[CG_NODE_MAX_INPUTS];
    cg_tensor *r = NULL;
    bool ok = true;
    int g = 0;
    for (int k0 = 0; k0 < n && ok; k0 += chunk, g++) {
        int kn = n - k0 < chunk ? n - k0 : chunk;
        parts[g] = cg_cat(kn, ts + k0, d);
        ok = parts[g] != NULL;
    }
    if (ok) r = cat_small(g, parts, d);
    return cg__compose_end(ctx, token, r);
}
