/*
 * src/core/ops_pool.c — the max and average pooling ops
 * (torch.nn.functional.max_pool2d, avg_pool2d) on the backend's pool2d
 * primitives, and global average pooling; their modules are src/nn/pool.c.
 *
 * Output size (torch.nn.MaxPool2d docs, "Shape"; ceil_mode=False):
 *     out = floor((in + 2 p - d (k - 1) - 1) / s) + 1
 * PyTorch also requires p <= k / 2 (pool2d_shape_check: "pad should be at
 * most half of effective kernel size"), checked here likewise.
 *
 * Max pooling records, per output, the index within its input plane of the
 * first maximum (the backend's argmax); its backward sends each output's
 * gradient there (pool2d_backward). Average pooling divides by k * k,
 * padding included (count_include_pad=True), and its backward spreads each
 * gradient evenly over the window.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/dispatch.h"
#include "core/ops_internal.h"

/* node->i: kind, then the window. */
enum { PI_KIND, PI_KH, PI_KW, PI_SH, PI_SW, PI_PH, PI_PW, PI_DH, PI_DW };

static cg_status pool_backward(struct cg_node *nd, cg_tensor *y, cg_tensor *gy_in)
{
    cg_tensor *x = nd->inputs[0];
    cg_ctx *ctx = cg__ctx_of(x);
    enum cg_pool_kind kind = (enum cg_pool_kind)nd->i[PI_KIND];
    struct cg_conv2d_desc d = {
        .n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
        .kh = nd->i[PI_KH], .kw = nd->i[PI_KW], .sh = nd->i[PI_SH], .sw = nd->i[PI_SW],
        .ph = nd->i[PI_PH], .pw = nd->i[PI_PW], .dh = nd->i[PI_DH], .dw = nd->i[PI_DW],
        .oh = y->shape[2], .ow = y->shape[3]};
    cg_tensor *gx = cg__tensor_new_unowned(ctx, x->ndim, x->shape);
    if (!gx) return ctx->status;
    cg_status st = cg_tensor_fill(gx, 0.0f);
    if (st == CG_OK && cg__tnumel(y) > 0) {
        cg_tensor *gy = cg__contig_ref(gy_in);
        if (!gy) {
            st = ctx->status;
        } else {
            struct cg_ptr am = cg__ptr_opt(nd->saved[0]);
            st = cg__be_pool2d_backward(ctx, nd->name, kind, &d, cg__ptr(gx), cg__ptr(gy), am);
            cg__tensor_unref(gy);
        }
    }
    if (st == CG_OK) st = cg__accumulate_grad(x, gx);
    cg__tensor_unref(gx);
    return st;
}

static cg_tensor *pool_op(const char *name, enum cg_pool_kind kind, cg_tensor *x, int64_t k,
                          int64_t s, int64_t p, int64_t dl)
{
    if (!x) return NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    char sx[128];
    CG_SHAPE_STR(x, sx);
    if (s == 0) s = k;   /* PyTorch: stride defaults to kernel_size */
    if (x->ndim != 4) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH, "%s: input %s must be (N, C, H, W)", name, sx);
        return NULL;
    }
    if (k < 1 || s < 1 || dl < 1 || p < 0) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "%s: kernel (%" PRId64 "), stride (%" PRId64 ") and dilation (%" PRId64
                  ") must be >= 1 and padding (%" PRId64 ") >= 0", name, k, s, dl, p);
        return NULL;
    }
    if (p > k / 2) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "%s: padding %" PRId64 " must be at most half the kernel size %" PRId64
                  " (as PyTorch requires)", name, p, k);
        return NULL;
    }
    struct cg_conv2d_desc d = {
        .n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
        .kh = k, .kw = k, .sh = s, .sw = s, .ph = p, .pw = p, .dh = dl, .dw = dl};
    int64_t eh, ew;
    if (!cg__window_span(d.h, k, p, dl, &eh) || !cg__window_span(d.w, k, p, dl, &ew)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "%s: input %s with kernel %" PRId64 ", padding %" PRId64 " and dilation %" PRId64
                  ": sizes overflow 64 bits", name, sx, k, p, dl);
        return NULL;
    }
    if (eh < 0 || ew < 0) {
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "%s: input %s padded by %" PRId64 " is smaller than the %s window "
                  "(%" PRId64 " x %" PRId64 "): the output would be empty",
                  name, sx, p, dl > 1 ? "dilated" : "pooling", dl * (k - 1) + 1,
                  dl * (k - 1) + 1);
        return NULL;
    }
    d.oh = eh / s + 1;
    d.ow = ew / s + 1;
    if (!cg__be_has_pool2d(ctx)) {   /* both directions, up front */
        cg__be_missing(ctx, name, "pool2d/pool2d_backward");
        return NULL;
    }
    cg_tensor *y = cg__tensor_new(ctx, CG_SHAPE(d.n, d.c, d.oh, d.ow));
    cg_tensor *am = NULL, *xc = NULL;
    cg_status st = y ? CG_OK : ctx->status;
    if (st == CG_OK && kind == CG_POOL_MAX) {
        am = cg__tensor_new_unowned(ctx, CG_SHAPE(d.n, d.c, d.oh, d.ow));
        if (!am) st = ctx->status;
    }
    if (st == CG_OK && cg__tnumel(y) > 0) {
        xc = cg__contig_ref(x);
        if (!xc) st = ctx->status;
        else
            st = cg__be_pool2d(ctx, name, kind, &d, cg__ptr(y), cg__ptr_opt(am), cg__ptr(xc));
    }
    if (st == CG_OK) {
        bool failed;
        struct cg_node *nd = cg__record(y, name, pool_backward, 1, &x, am ? 1 : 0, &am, &failed);
        if (failed) st = ctx->status;
        if (nd) {
            int64_t ip[] = {kind, k, k, s, s, p, p, dl, dl};
            for (int i = 0; i < (int)(sizeof ip / sizeof ip[0]); i++) nd->i[i] = ip[i];
        }
    }
    cg__tensor_unref(am);
    cg__tensor_unref(xc);
    if (st != CG_OK) {
        cg_tensor_free(y);
        return NULL;
    }
    return y;
}

CG_API cg_tensor *cg_max_pool2d(cg_tensor *x, int64_t kernel, int64_t stride, int64_t padding,
                                int64_t dilation)
{
    return pool_op("cg_max_pool2d", CG_POOL_MAX, x, kernel, stride, padding, dilation);
}

CG_API cg_tensor *cg_avg_pool2d(cg_tensor *x, int64_t kernel, int64_t stride, int64_t padding)
{
    return pool_op("cg_avg_pool2d", CG_POOL_AVG, x, kernel, stride, padding, 1);
}

/* x (N, C, H, W) -> (N, C): the mean over the H * W plane, composed from a
 * reshape (a view when x is contiguous) and a mean along the last axis. */
CG_API cg_tensor *cg_global_avg_pool2d(cg_tensor *x)
{
    if (!x) return NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    if (x->ndim != 4 || x->shape[2] * x->shape[3] == 0) {
        char sx[128];
        cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                  "cg_global_avg_pool2d: input %s must be (N, C, H, W) with H, W >= 1",
                  CG_SHAPE_STR(x, sx));
        return NULL;
    }
    int token = cg__compose_begin(ctx);
    cg_tensor *r = cg_mean(cg_reshape(x, CG_SHAPE(x->shape[0], x->shape[1], -1)), -1, false);
    return cg__compose_end(ctx, token, r);
}
