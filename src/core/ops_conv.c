/*
 * src/core/ops_conv.c — the 2-d convolution op (torch.nn.functional.conv2d;
 * the Conv2d module is src/nn/conv.c) as im2col plus batched GEMM on the
 * backend.
 *
 * Forward, per group g (channels split into G groups of Cg = C / G inputs
 * and Og = O / G outputs; K = Cg * KH * KW, L = OH * OW):
 *     col = im2col(x)                          (N, C * KH * KW, L)
 *     y[n, g] = W[g] · col[n, g]               (Og, K) · (K, L) -> (Og, L)
 * im2col's row index is (ci * KH + i) * KW + j, so group g's rows of col
 * are the contiguous block [g K, (g + 1) K) and W[g] is rows [g Og,
 * (g + 1) Og) of W seen as (O, K): one GEMM per group, batched over n with
 * W shared (batch stride 0). The bias is broadcast into y first, as the
 * rank-1 product b · 1^T (1 a vector of L ones), and the GEMM adds onto it
 * (beta = 1).
 *
 * Backward, with gy = dL/dy (N, O, L):
 *     db       = sum over n and L of gy = 1_N^T · (gy · 1_L)  (two GEMMs)
 *     dW[g]    = sum_n gy[n, g] · col[n, g]^T                (batched GEMM
 *                into (N, O, K), then summed over n as 1_N^T · (N, O K))
 *     dcol[n, g] = W[g]^T · gy[n, g],  dx = col2im(dcol)     (the adjoint
 *                of im2col, which sums overlapping windows)
 * (the standard im2col formulation: Chellapilla et al. 2006, "High
 * Performance Convolutional Neural Networks for Document Processing";
 * Caffe's conv layer, whose bias terms are also GEMMs against a vector of
 * ones, "bias_multiplier_"). Sums as GEMMs run at BLAS speed on every
 * backend, where a strided reduction over n would not. col is saved from
 * the forward for dW. A 1x1 kernel with stride 1 and no padding needs no
 * im2col: col is x itself.
 *
 * Fused: a backend with the conv2d members (backend.h; the cpu backend
 * through oneDNN's convolutions) runs each of the three directions whole
 * when groups == 1; it may decline a call (CG_STATUS_UNSUPPORTED), which
 * is then composed as above. After a fused forward no col is kept: a
 * declined weight gradient recomputes it from x.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/dispatch.h"
#include "core/ops_internal.h"

/* The node's integer parameters (node->i). */
enum { CI_SH, CI_SW, CI_PH, CI_PW, CI_DH, CI_DW, CI_GROUPS, CI_IDENTITY };

/* Everything one convolution's kernels need. */
struct conv_geom {
    struct cg_conv2d_desc d;   /* over the whole input: c = C          */
    int64_t out_c, groups;
    int64_t cg, og;            /* channels per group, in and out       */
    int64_t k;                 /* Cg * KH * KW: rows of a group's col  */
    int64_t l;                 /* OH * OW                              */
    bool identity;             /* col == x (1x1, stride 1, no padding) */
};

static void geom_finish(struct conv_geom *g)
{
    g->cg = g->d.c / g->groups;
    g->og = g->out_c / g->groups;
    g->k = g->cg * g->d.kh * g->d.kw;
    g->l = g->d.oh * g->d.ow;
    g->identity = g->d.kh == 1 && g->d.kw == 1 && g->d.sh == 1 && g->d.sw == 1 &&
                  g->d.ph == 0 && g->d.pw == 0;
}


/* A vector of n ones (an unowned reference), for sums and broadcasts as
 * GEMMs. */
static cg_tensor *ones_ref(cg_ctx *ctx, int64_t n)
{
    cg_tensor *t = cg__tensor_new_unowned(ctx, CG_SHAPE(n));
    if (t && cg_tensor_fill(t, 1.0f) != CG_OK) {
        cg__tensor_unref(t);
        return NULL;
    }
    return t;
}

/* out (cols) = sum over rows of in (rows, cols), as 1^T · in (a GEMM with
 * m = 1, which BLAS runs as a vectorised GEMV). */
static cg_status sum_rows(cg_ctx *ctx, const char *what, cg_tensor *out, cg_tensor *in,
                          int64_t rows, int64_t cols)
{
    cg_tensor *ones = ones_ref(ctx, rows);
    if (!ones) return ctx->status;
    cg_status st = cg__be_gemm1(ctx, what, 0, 0, 1, cols, rows, 0.0f, cg__ptr(ones), rows,
                                cg__ptr(in), cols, cg__ptr(out), cols);
    cg__tensor_unref(ones);
    return st;
}

/* ---- backward ---------------------------------------------------------- */

/* db (O) = sum over n and l of gy (N, O, L): per (n, o) over l as
 * gy (N O, L) · 1_L, then over n. */
static cg_status conv_grad_bias(const struct conv_geom *g, cg_tensor *b, cg_tensor *gy)
{
    cg_ctx *ctx = cg__ctx_of(gy);
    int64_t n = g->d.n, o = g->out_c;
    cg_tensor *ones = ones_ref(ctx, g->l);
    cg_tensor *per_n = ones ? cg__tensor_new_unowned(ctx, CG_SHAPE(n, o)) : NULL;
    cg_tensor *db = per_n ? cg__tensor_new_unowned(ctx, CG_SHAPE(o)) : NULL;
    cg_status st = db ? CG_OK : ctx->status;
    if (st == CG_OK) {
        struct cg_gemm_desc d = {.m = n * o, .n = 1, .k = g->l, .alpha = 1.0f, .beta = 0.0f,
                                 .lda = g->l, .ldb = 1, .ldc = 1, .batch = 1};
        st = cg__be_gemm(ctx, "cg_conv2d backward (bias)", &d, cg__ptr(gy), cg__ptr(ones),
                  cg__ptr(per_n));
    }
    if (st == CG_OK) st = sum_rows(ctx, "cg_conv2d backward (bias)", db, per_n, n, o);
    if (st == CG_OK) st = cg__accumulate_grad(b, db);
    cg__tensor_unref(ones);
    cg__tensor_unref(per_n);
    cg__tensor_unref(db);
    return st;
}

/* dW (O, Cg, KH, KW) = sum_n gy[n] · col[n]^T, per group. */
static cg_status conv_grad_weight(const struct conv_geom *g, cg_tensor *w, cg_tensor *gy,
                                  cg_tensor *col)
{
    cg_ctx *ctx = cg__ctx_of(w);
    int64_t n = g->d.n, o = g->out_c, ck = g->d.c * g->d.kh * g->d.kw;
    /* Per-sample products, summed after: GEMM's batch entries never share
     * an output (a parallel device would race on one). */
    cg_tensor *per_n = n == 1 ? cg__tensor_new_unowned(ctx, w->ndim, w->shape)
                              : cg__tensor_new_unowned(ctx, CG_SHAPE(n, o, g->k));
    if (!per_n) return ctx->status;
    cg_status st = CG_OK;
    for (int64_t gi = 0; gi < g->groups && st == CG_OK; gi++) {
        struct cg_gemm_desc d = {
            .trans_a = 0, .trans_b = 1, .m = g->og, .n = g->k, .k = g->l,
            .alpha = 1.0f, .beta = 0.0f, .lda = g->l, .ldb = g->l, .ldc = g->k,
            .stride_a = o * g->l, .stride_b = ck * g->l, .stride_c = o * g->k, .batch = n,
        };
        st = cg__be_gemm(ctx, "cg_conv2d backward (weight)", &d, cg__ptr_at(gy, gi * g->og * g->l),
                  cg__ptr_at(col, gi * g->k * g->l), cg__ptr_at(per_n, gi * g->og * g->k));
    }
    cg_tensor *dw = NULL;
    if (st == CG_OK && n == 1) {
        dw = per_n;   /* one sample: nothing to sum */
        per_n = NULL;
    } else if (st == CG_OK) {
        dw = cg__tensor_new_unowned(ctx, w->ndim, w->shape);
        st = dw ? sum_rows(ctx, "cg_conv2d backward (weight)", dw, per_n, n, o * g->k)
                : ctx->status;
    }
    cg__tensor_unref(per_n);
    if (st == CG_OK) st = cg__accumulate_grad(w, dw);
    cg__tensor_unref(dw);
    return st;
}

/* dx (N, C, H, W) = col2im(W^T · gy), per group. */
static cg_status conv_grad_input(const struct conv_geom *g, cg_tensor *x, cg_tensor *w,
                                 cg_tensor *gy)
{
    cg_ctx *ctx = cg__ctx_of(x);
    int64_t n = g->d.n, o = g->out_c, ck = g->d.c * g->d.kh * g->d.kw;
    cg_tensor *wc = cg__contig_ref(w);
    if (!wc) return ctx->status;
    /* With no im2col (identity) dcol is dx itself: (N, C, L) is (N, C, H, W). */
    cg_tensor *dcol = g->identity ? cg__tensor_new_unowned(ctx, x->ndim, x->shape)
                                  : cg__tensor_new_unowned(ctx, CG_SHAPE(n, ck, g->l));
    cg_status st = dcol ? CG_OK : ctx->status;
    for (int64_t gi = 0; gi < g->groups && st == CG_OK; gi++) {
        struct cg_gemm_desc d = {
            .trans_a = 1, .trans_b = 0, .m = g->k, .n = g->l, .k = g->og,
            .alpha = 1.0f, .beta = 0.0f, .lda = g->k, .ldb = g->l, .ldc = g->l,
            .stride_a = 0, .stride_b = o * g->l, .stride_c = ck * g->l, .batch = n,
        };
        st = cg__be_gemm(ctx, "cg_conv2d backward (input)", &d, cg__ptr_at(wc, gi * g->og * g->k),
                  cg__ptr_at(gy, gi * g->og * g->l), cg__ptr_at(dcol, gi * g->k * g->l));
    }
    cg__tensor_unref(wc);
    cg_tensor *dx = NULL;
    if (st == CG_OK && g->identity) {
        dx = dcol;
        dcol = NULL;
    } else if (st == CG_OK) {
        dx = cg__tensor_new_unowned(ctx, x->ndim, x->shape);
        if (!dx) st = ctx->status;
        if (st == CG_OK) st = cg_tensor_fill(dx, 0.0f);
        if (st == CG_OK)
            st = cg__be_col2im(ctx, "cg_conv2d backward", &g->d, cg__ptr(dx), cg__ptr(dcol));
    }
    cg__tensor_unref(dcol);
    if (st == CG_OK) st = cg__accumulate_grad(x, dx);
    cg__tensor_unref(dx);
    return st;
}

/* The fused weight (and bias, when db_wanted) gradient; *done tells
 * whether the backend took it (else nothing was written). */
static cg_status conv_grad_weight_fused(const struct conv_geom *g, cg_tensor *x, cg_tensor *w,
                                        cg_tensor *b, bool db_wanted, cg_tensor *gy, bool *done)
{
    cg_ctx *ctx = cg__ctx_of(x);
    *done = false;
    cg_tensor *xc = cg__contig_ref(x);
    cg_tensor *dw = xc ? cg__tensor_new_unowned(ctx, w->ndim, w->shape) : NULL;
    cg_tensor *db = dw && db_wanted ? cg__tensor_new_unowned(ctx, b->ndim, b->shape) : NULL;
    cg_status st = dw && (db || !db_wanted) ? CG_OK : ctx->status;
    if (st == CG_OK)
        st = cg__be_conv2d_backward_weights(ctx, "cg_conv2d backward (weight)", &g->d, g->out_c,
                                            cg__ptr(dw), cg__ptr_opt(db), cg__ptr(xc),
                                            cg__ptr(gy));
    if (st == CG_OK) {
        *done = true;
        st = cg__accumulate_grad(w, dw);
        if (st == CG_OK && db) st = cg__accumulate_grad(b, db);
    } else if (st == CG_STATUS_UNSUPPORTED) {
        st = CG_OK;
    }
    cg__tensor_unref(db);
    cg__tensor_unref(dw);
    cg__tensor_unref(xc);
    return st;
}

/* The fused input gradient; *done as above. */
static cg_status conv_grad_input_fused(const struct conv_geom *g, cg_tensor *x, cg_tensor *w,
                                       cg_tensor *gy, bool *done)
{
    cg_ctx *ctx = cg__ctx_of(x);
    *done = false;
    cg_tensor *wc = cg__contig_ref(w);
    cg_tensor *dx = wc ? cg__tensor_new_unowned(ctx, x->ndim, x->shape) : NULL;
    cg_status st = dx ? CG_OK : ctx->status;
    if (st == CG_OK)
        st = cg__be_conv2d_backward_data(ctx, "cg_conv2d backward (input)", &g->d, g->out_c,
                                         cg__ptr(dx), cg__ptr(gy), cg__ptr(wc));
    if (st == CG_OK) {
        *done = true;
        st = cg__accumulate_grad(x, dx);
    } else if (st == CG_STATUS_UNSUPPORTED) {
        st = CG_OK;
    }
    cg__tensor_unref(dx);
    cg__tensor_unref(wc);
    return st;
}

/* col for the composed weight gradient when the forward kept none (it
 * was fused): im2col of x again (x itself for the identity). */
static cg_tensor *conv_col_again(const struct conv_geom *g, cg_tensor *x)
{
    cg_ctx *ctx = cg__ctx_of(x);
    cg_tensor *xc = cg__contig_ref(x);
    if (!xc || g->identity) return xc;
    cg_tensor *col =
        cg__tensor_new_unowned(ctx, CG_SHAPE(g->d.n, g->d.c * g->d.kh * g->d.kw, g->l));
    if (col && cg__be_im2col(ctx, "cg_conv2d backward (weight)", &g->d, cg__ptr(col),
                             cg__ptr(xc)) != CG_OK) {
        cg__tensor_unref(col);
        col = NULL;
    }
    cg__tensor_unref(xc);
    return col;
}

static cg_status conv2d_backward(struct cg_node *nd, cg_tensor *y, cg_tensor *gy_in)
{
    cg_tensor *x = nd->inputs[0], *w = nd->inputs[1], *b = nd->inputs[2];
    cg_ctx *ctx = cg__ctx_of(x);
    struct conv_geom g = {
        .d = {.n = x->shape[0], .c = x->shape[1], .h = x->shape[2], .w = x->shape[3],
              .kh = w->shape[2], .kw = w->shape[3],
              .sh = nd->i[CI_SH], .sw = nd->i[CI_SW], .ph = nd->i[CI_PH], .pw = nd->i[CI_PW],
              .dh = nd->i[CI_DH], .dw = nd->i[CI_DW], .oh = y->shape[2], .ow = y->shape[3]},
        .out_c = y->shape[1], .groups = nd->i[CI_GROUPS],
    };
    geom_finish(&g);
    if (g.d.n * g.out_c * g.l == 0) return CG_OK;   /* nothing flows back */
    cg_tensor *gy = cg__contig_ref(gy_in);
    if (!gy) return ctx->status;
    cg_status st = CG_OK;
    bool fused = g.groups == 1 && cg__be_has_conv2d_fused(ctx);
    bool need_b = cg__input_needs_grad(nd, 2), need_w = cg__input_needs_grad(nd, 1);
    bool done = false;
    if (need_w && fused) st = conv_grad_weight_fused(&g, x, w, b, need_b, gy, &done);
    if (done) need_b = false;   /* the fused call summed db too */
    if (st == CG_OK && need_b) st = conv_grad_bias(&g, b, gy);
    if (st == CG_OK && need_w && !done) {
        cg_tensor *col = nd->saved[0];
        if (col) cg__tensor_ref(col);
        else col = conv_col_again(&g, x);
        st = col ? conv_grad_weight(&g, w, gy, col) : ctx->status;
        cg__tensor_unref(col);
    }
    done = false;
    if (st == CG_OK && cg__input_needs_grad(nd, 0) && fused)
        st = conv_grad_input_fused(&g, x, w, gy, &done);
    if (st == CG_OK && cg__input_needs_grad(nd, 0) && !done) st = conv_grad_input(&g, x, w, gy);
    cg__tensor_unref(gy);
    return st;
}

/* ---- forward ----------------------------------------------------------- */

/* Checks shapes and options and fills g; messages name both shapes. */
static cg_status conv_check(cg_ctx *ctx, const cg_tensor *x, const cg_tensor *w,
                            const cg_tensor *b, const struct cg_conv2d_opts *o,
                            struct conv_geom *g)
{
    char sx[128], sw[128], sb[128];
    CG_SHAPE_STR(x, sx);
    CG_SHAPE_STR(w, sw);
    if (b) CG_SHAPE_STR(b, sb);
    if (cg__ctx_of(w) != ctx || (b && cg__ctx_of(b) != ctx))
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_conv2d: tensors of two different contexts");
    if (x->ndim != 4)
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_conv2d: input %s must be (N, C, H, W)", sx);
    if (w->ndim != 4)
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_conv2d: weight %s must be (O, C / groups, KH, KW)", sw);
    int64_t s[2], p[2], dl[2], groups = o->groups ? o->groups : 1;
    for (int i = 0; i < 2; i++) {
        s[i] = o->stride[i] ? o->stride[i] : 1;
        p[i] = o->padding[i];
        dl[i] = o->dilation[i] ? o->dilation[i] : 1;
        if (s[i] < 1 || p[i] < 0 || dl[i] < 1)
            return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                             "cg_conv2d: stride (%" PRId64 ") and dilation (%" PRId64
                             ") must be >= 1 and padding (%" PRId64 ") >= 0",
                             s[i], dl[i], p[i]);
    }
    int64_t c = x->shape[1], oc = w->shape[0];
    if (groups < 1 || c % groups || oc % groups)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_conv2d: groups %" PRId64 " must be >= 1 and divide both the input "
                         "channels (%" PRId64 ") and the output channels (%" PRId64 ")",
                         groups, c, oc);
    if (w->shape[1] * groups != c || w->shape[2] < 1 || w->shape[3] < 1)
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_conv2d: weight %s does not fit input %s with groups %" PRId64
                         " (expected (%" PRId64 ", %" PRId64 ", KH, KW), KH, KW >= 1)",
                         sw, sx, groups, oc, c / groups);
    if (b && (b->ndim != 1 || b->shape[0] != oc))
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_conv2d: bias %s must be (%" PRId64 ") for weight %s", sb, oc, sw);
    g->d = (struct cg_conv2d_desc){
        .n = x->shape[0], .c = c, .h = x->shape[2], .w = x->shape[3],
        .kh = w->shape[2], .kw = w->shape[3], .sh = s[0], .sw = s[1],
        .ph = p[0], .pw = p[1], .dh = dl[0], .dw = dl[1]};
    /* torch.nn.Conv2d docs, "Shape": H_out = floor((H + 2p - d (k - 1) - 1) / s) + 1 */
    int64_t eh, ew;
    if (!cg__window_span(g->d.h, g->d.kh, p[0], dl[0], &eh) ||
        !cg__window_span(g->d.w, g->d.kw, p[1], dl[1], &ew))
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_conv2d: input %s with weight %s, padding (%" PRId64 ", %" PRId64
                         ") and dilation (%" PRId64 ", %" PRId64 "): sizes overflow 64 bits",
                         sx, sw, p[0], p[1], dl[0], dl[1]);
    if (eh < 0 || ew < 0)
        return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                         "cg_conv2d: input %s padded by (%" PRId64 ", %" PRId64 ") is smaller than "
                         "the dilated kernel (%" PRId64 " x %" PRId64 ")",
                         sx, p[0], p[1], dl[0] * (g->d.kh - 1) + 1, dl[1] * (g->d.kw - 1) + 1);
    g->d.oh = eh / s[0] + 1;
    g->d.ow = ew / s[1] + 1;
    g->out_c = oc;
    g->groups = groups;
    /* Every size the kernels use below must be countable: the output
     * (N, O, OH * OW) and the columns (N, C * KH * KW, OH * OW). */
    int64_t l, ck, col, out;
    if (!cg__numel_ok(2, (int64_t[]){g->d.oh, g->d.ow}, &l) ||
        !cg__numel_ok(3, (int64_t[]){c, g->d.kh, g->d.kw}, &ck) ||
        !cg__numel_ok(3, (int64_t[]){g->d.n, ck, l}, &col) ||
        !cg__numel_ok(3, (int64_t[]){g->d.n, oc, l}, &out))
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_conv2d: input %s with weight %s gives an output of (%" PRId64
                         ", %" PRId64 ") pixels per channel: too large to count in 64 bits",
                         sx, sw, g->d.oh, g->d.ow);
    geom_finish(g);
    return CG_OK;
}

/* y (N, O, L) = W · col (+ b), per group. */
static cg_status conv_forward_into(cg_ctx *ctx, const struct conv_geom *g, cg_tensor *y,
                                   cg_tensor *wc, cg_tensor *b, cg_tensor *col)
{
    int64_t n = g->d.n, o = g->out_c, ck = g->d.c * g->d.kh * g->d.kw;
    float beta = 0.0f;
    if (b) {
        /* y[n] = b · 1_L^T (O, 1) · (1, L) for every n: the bias broadcast. */
        cg_tensor *bc = cg__contig_ref(b), *ones = bc ? ones_ref(ctx, g->l) : NULL;
        cg_status st = ones ? CG_OK : ctx->status;
        if (st == CG_OK) {
            struct cg_gemm_desc d = {.m = o, .n = g->l, .k = 1, .alpha = 1.0f, .beta = 0.0f,
                                     .lda = 1, .ldb = g->l, .ldc = g->l, .stride_c = o * g->l,
                                     .batch = n};
            st = cg__be_gemm(ctx, "cg_conv2d (bias)", &d, cg__ptr(bc), cg__ptr(ones), cg__ptr(y));
        }
        cg__tensor_unref(ones);
        cg__tensor_unref(bc);
        if (st != CG_OK) return st;
        beta = 1.0f;
    }
    for (int64_t gi = 0; gi < g->groups; gi++) {
        struct cg_gemm_desc d = {
            .trans_a = 0, .trans_b = 0, .m = g->og, .n = g->l, .k = g->k,
            .alpha = 1.0f, .beta = beta, .lda = g->k, .ldb = g->l, .ldc = g->l,
            .stride_a = 0, .stride_b = ck * g->l, .stride_c = o * g->l, .batch = n,
        };
        cg_status st = cg__be_gemm(ctx, "cg_conv2d", &d, cg__ptr_at(wc, gi * g->og * g->k),
                            cg__ptr_at(col, gi * g->k * g->l), cg__ptr_at(y, gi * g->og * g->l));
        if (st != CG_OK) return st;
    }
    return CG_OK;
}

CG_API cg_tensor *cg_conv2d_ex(cg_tensor *x, cg_tensor *w, cg_tensor *b,
                               const struct cg_conv2d_opts *opts)
{
    if (!x || !w) return NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    struct cg_conv2d_opts o = opts ? *opts : (struct cg_conv2d_opts){0};
    struct conv_geom g;
    if (conv_check(ctx, x, w, b, &o, &g) != CG_OK) return NULL;
    /* Both directions' primitives up front: a backend that could run the
     * forward but not the backward fails here, not in cg_backward. */
    if (!cg__be_has_conv2d(ctx)) {
        cg__be_missing(ctx, "cg_conv2d", "im2col/col2im");
        return NULL;
    }
    cg_tensor *y = cg__tensor_new(ctx, CG_SHAPE(g.d.n, g.out_c, g.d.oh, g.d.ow));
    if (!y) return NULL;
    cg_tensor *xc = NULL, *wc = NULL, *col = NULL;
    cg_status st = CG_OK;
    if (g.d.n > 0 && g.out_c > 0) {   /* (C >= 1 follows from w's shape) */
        xc = cg__contig_ref(x);
        wc = xc ? cg__contig_ref(w) : NULL;
        if (!wc) st = ctx->status;
        bool fused = false;
        if (st == CG_OK && g.groups == 1 && cg__be_has_conv2d_fused(ctx)) {
            cg_tensor *bc = b ? cg__contig_ref(b) : NULL;
            if (b && !bc) st = ctx->status;
            if (st == CG_OK)
                st = cg__be_conv2d(ctx, "cg_conv2d", &g.d, g.out_c, cg__ptr(y), cg__ptr(xc),
                                   cg__ptr(wc), cg__ptr_opt(bc));
            cg__tensor_unref(bc);
            fused = st == CG_OK;
            if (st == CG_STATUS_UNSUPPORTED) st = CG_OK;   /* declined: compose it */
        }
        if (st == CG_OK && !fused && g.identity) {
            col = xc;
            cg__tensor_ref(col);
        } else if (st == CG_OK && !fused) {
            col = cg__tensor_new_unowned(ctx, CG_SHAPE(g.d.n, g.d.c * g.d.kh * g.d.kw, g.l));
            if (!col) st = ctx->status;
            else
                st = cg__be_im2col(ctx, "cg_conv2d", &g.d, cg__ptr(col), cg__ptr(xc));
        }
        if (st == CG_OK && !fused) st = conv_forward_into(ctx, &g, y, wc, b, col);
    }
    if (st == CG_OK) {
        /* col is kept for dW only when w will receive a gradient. */
        bool keep_col = col && ctx->grad_enabled && w->requires_grad;
        bool failed;
        struct cg_node *nd = cg__record(y, "cg_conv2d", conv2d_backward, 3,
                                        (cg_tensor *[]){x, w, b}, keep_col ? 1 : 0,
                                        (cg_tensor *[]){col}, &failed);
        if (failed) st = ctx->status;
        if (nd) {
            int64_t ip[] = {g.d.sh, g.d.sw, g.d.ph, g.d.pw, g.d.dh, g.d.dw, g.groups};
            for (int i = 0; i < (int)(sizeof ip / sizeof ip[0]); i++) nd->i[i] = ip[i];
        }
    }
    cg__tensor_unref(col);
    cg__tensor_unref(wc);
    cg__tensor_unref(xc);
    if (st != CG_OK) {
        cg_tensor_free(y);
        return NULL;
    }
    return y;
}

CG_API cg_tensor *cg_conv2d(cg_tensor *x, cg_tensor *w, cg_tensor *b, int64_t stride,
                            int64_t padding, int64_t dilation, int64_t groups)
{
    if (!x || !w) return NULL;
    /* 0 would silently mean "default" in the options struct: refuse it. */
    if (stride < 1 || dilation < 1 || groups < 1 || padding < 0) {
        cg__error(cg__ctx_of(x), CG_STATUS_INVALID_ARGUMENT,
                  "cg_conv2d: stride (%" PRId64 "), dilation (%" PRId64 ") and groups (%" PRId64
                  ") must be >= 1 and padding (%" PRId64 ") >= 0",
                  stride, dilation, groups, padding);
        return NULL;
    }
    struct cg_conv2d_opts o = {.stride = {stride, stride}, .padding = {padding, padding},
                               .dilation = {dilation, dilation}, .groups = groups};
    return cg_conv2d_ex(x, w, b, &o);
}
