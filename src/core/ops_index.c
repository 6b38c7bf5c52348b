/*
 * src/core/ops_index.c — row gather (embeddings) and per-row pick (the
 * class-index term of cross-entropy), differentiable w.r.t. the float
 * source; the index tensor never receives a gradient.
 *
 * Index range. Backends trust the indices they get (an OpenCL kernel cannot
 * report a bad one), so every index is checked here, before any device
 * work: each must be an exact integer in [0, limit). Indices usually come
 * straight from the host (a loader's labels, token ids): then the range
 * recorded at upload (struct cg_storage) answers without touching the
 * device. Otherwise (indices computed on the device) the check reads the
 * index tensor back: one download of N floats, never of the data indexed.
 *
 * Backward: the adjoint of a gather is a scatter-add into zeros of the
 * source's shape (backend index_rows_add / pick_add; repeated rows add up).
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "core/ops_internal.h"
#include "core/dispatch.h"

static cg_status check_indices(cg_ctx *ctx, const char *what, const cg_tensor *idx, int64_t limit)
{
    int64_t n = cg__tnumel(idx);
    if (n == 0) return CG_OK;
    const struct cg_storage *sto = idx->st;
    if (sto->host_range_known && sto->host_all_integral && sto->host_min >= 0.0f &&
        (double)sto->host_max < (double)limit)
        return CG_OK;
    float *h = malloc((size_t)n * sizeof *h);
    if (!h) return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", what);
    cg_status st = cg_tensor_to_host(idx, h, n);
    for (int64_t i = 0; st == CG_OK && i < n; i++) {
        float v = h[i];
        if (!(v >= 0.0f && (double)v < (double)limit && v == floorf(v)))
            st = cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                           "%s: index %g at position %" PRId64 " is not an integer in [0, %" PRId64 ")",
                           what, (double)v, i, limit);
    }
    free(h);
    return st;
}

static cg_status gather_backward(struct cg_node *nd, cg_tensor *y, cg_tensor *g, bool rows)
{
    /* rows: table (V, D) += scatter of g (N, D); else src (N, C) += g (N) at idx */
    cg_tensor *src = nd->inputs[0], *idx = nd->saved[0];
    cg_ctx *ctx = cg__ctx_of(src);
    int64_t n = cg__tnumel(idx), inner = src->shape[1];
    cg_tensor *gs = cg_tensor_zeros(ctx, src->ndim, src->shape);
    cg_tensor *gc = gs ? cg__contig_ref(g) : NULL;
    if (!gc) return ctx->status;
    cg_status st = CG_OK;
    if (n * inner > 0)
        st = cg__be_scatter_add(ctx, nd->name, rows, cg__ptr(gs), cg__ptr(gc), cg__ptr(idx), n,
                                inner);
    cg__tensor_unref(gc);
    return st ? st : cg__accumulate_grad(src, gs);
}

static cg_status index_rows_backward(struct cg_node *nd, cg_tensor *y, cg_tensor *g)
{
    return gather_backward(nd, y, g, true);
}

static cg_status pick_backward(struct cg_node *nd, cg_tensor *y, cg_tensor *g)
{
    return gather_backward(nd, y, g, false);
}

/* Shared body: out = gather(src, idx); out_shape given. */
static cg_tensor *gather(const char *name, bool rows, cg_tensor *src, cg_tensor *idx, int out_ndim,
                         const int64_t *out_shape, int64_t limit)
{
    cg_ctx *ctx = cg__ctx_of(src);
    if (check_indices(ctx, name, idx, limit) != CG_OK) return NULL;
    int64_t n = cg__tnumel(idx), inner = src->shape[1];
    cg_tensor *sc = cg__contig_ref(src);
    cg_tensor *ic = sc ? cg__contig_ref(idx) : NULL;
    cg_tensor *out = ic ? cg__tensor_new(ctx, out_ndim, out_shape) : NULL;
    bool ok = out != NULL;
    if (ok && n * inner > 0)
        ok = cg__be_gather(ctx, name, rows, cg__ptr(out), cg__ptr(sc), cg__ptr(ic), n, inner) ==
             CG_OK;
    if (ok) {
        bool failed;
        cg__record(out, name, rows ? index_rows_backward : pick_backward, 1, &src, 1, &ic, &failed);
        ok = !failed;
    }
    cg__tensor_unref(sc);
    cg__tensor_unref(ic); /* a recorded node keeps its own reference */
    if (!ok) {
        cg_tensor_free(out);
        return NULL;
    }
    return out;
}

CG_API cg_tensor *cg_index_rows(cg_tensor *table, cg_tensor *idx)
{
    if (!table || !idx) return NULL;
    cg_ctx *ctx = cg__ctx_of(table);
    char sa[128], sb[128];
    if (cg__ctx_of(idx) != ctx || table->ndim != 2 || idx->ndim >= CG_MAX_DIMS) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "cg_index_rows: table %s must be (V, D) and idx %s at most %d-d (same context)",
                  CG_SHAPE_STR(table, sa), CG_SHAPE_STR(idx, sb), CG_MAX_DIMS - 1);
        return NULL;
    }
    int64_t shape[CG_MAX_DIMS];
    for (int i = 0; i < idx->ndim; i++) shape[i] = idx->shape[i];
    shape[idx->ndim] = table->shape[1];
    return gather("cg_index_rows", true, table, idx, idx->ndim + 1, shape, table->shape[0]);
}

CG_API cg_tensor *cg_pick(cg_tensor *src, cg_tensor *idx)
{
    if (!src || !idx) return NULL;
    cg_ctx *ctx = cg__ctx_of(src);
    char sa[128], sb[128];
    if (cg__ctx_of(idx) != ctx || src->ndim != 2 || idx->ndim != 1 ||
        idx->shape[0] != src->shape[0]) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "cg_pick: src %s must be (N, C) and idx %s must be (N) (same context)",
                  CG_SHAPE_STR(src, sa), CG_SHAPE_STR(idx, sb));
        return NULL;
    }
    return gather("cg_pick", false, src, idx, 1, idx->shape, src->shape[1]);
}
