/*
 * src/core/dispatch.h — the one way from the frontend to a backend. Every
 * primitive the core and src/nn run goes through one function here,
 * cg__be_<member>, with one error convention:
 *
 *   - an optional member the backend lacks (NULL, or beyond its
 *     struct_size: CG_BACKEND_HAS) fails with CG_STATUS_UNSUPPORTED and
 *     "<what>: the '<backend>' backend has no <member> primitive";
 *   - a failed call becomes the context's sticky error
 *     "<what>: <member> <sizes>: <backend's last_error> on <backend>
 *     backend (<device>)", with status CG_STATUS_OUT_OF_MEMORY when the
 *     backend said so (or an allocation failed), else
 *     CG_STATUS_BACKEND_ERROR;
 *   - the status is returned.
 * `what` names the op that called (its public name, or the layer's), and
 * <sizes> are the primitive's shape arguments, so a message names both.
 *
 * The calls are inline (the small-op path stays one indirect call); the
 * messages are built out of line, in dispatch.c, only on failure. No op,
 * layer or optimizer touches ctx->be's members; only context.c (open,
 * close, statistics) and the registry do, besides this file. The
 * fused-or-composed choices (LayerNorm, causal softmax, bias + GELU, the
 * LSTM cell) use the cg__be_has_* queries below, in core's ops
 * (ops_fused.c, ops_rnn.c); whole convolutions (ops_conv.c) also compose
 * when the member declines a call (CG_STATUS_UNSUPPORTED).
 */
#ifndef CLGRAD_CORE_DISPATCH_H
#define CLGRAD_CORE_DISPATCH_H

#include "core/internal.h"

/* Records a failed (or missing) primitive `prim`; see the top of this
 * file. sizes: n values named by `names` ("rows, cols"), or n = 0. */
cg_status cg__be_fail(cg_ctx *ctx, cg_status st, const char *what, const char *prim,
                      const char *names, int n, const int64_t *sizes);
/* The same for a call on views: sizes are out's shape. */
cg_status cg__be_fail_view(cg_ctx *ctx, cg_status st, const char *what, const char *prim,
                           const struct cg_view *out);
cg_status cg__be_missing(cg_ctx *ctx, const char *what, const char *prim);
/* The same for optim_update: "cg_optim_step(<family>) of parameter <shape>". */
cg_status cg__be_fail_optim(cg_ctx *ctx, cg_status st, const char *family, const cg_tensor *p);
cg_status cg__be_fail_alloc(cg_ctx *ctx, int ndim, const int64_t *shape, size_t bytes);

#define CG__SIZES(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), \
                       (const int64_t[]){__VA_ARGS__}
#define CG__BE_HAS(ctx, m) CG_BACKEND_HAS((ctx)->be, m)

/* ---- memory and transfers ------------------------------------------- */

/* A device buffer of st->bytes for a (ndim, shape) tensor into st->buf;
 * a failure is CG_STATUS_OUT_OF_MEMORY, whatever the backend said. */
static inline cg_status cg__be_alloc(cg_ctx *ctx, struct cg_storage *st, int ndim,
                                     const int64_t *shape)
{
    if (ctx->be->alloc(ctx->bctx, st->bytes, &st->buf) == CG_OK) return CG_OK;
    return cg__be_fail_alloc(ctx, ndim, shape, st->bytes);
}

static inline void cg__be_release(cg_ctx *ctx, struct cg_buffer *buf)
{
    ctx->be->release(ctx->bctx, buf);
}

static inline cg_status cg__be_upload(cg_ctx *ctx, const char *what, struct cg_ptr dst,
                                      const float *src, int64_t n)
{
    cg_status s = ctx->be->upload(ctx->bctx, dst.buf, (size_t)dst.off * sizeof(float), src,
                                  (size_t)n * sizeof(float));
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "upload", "n", CG__SIZES(n));
}

static inline cg_status cg__be_download(cg_ctx *ctx, const char *what, float *dst,
                                        struct cg_ptr src, int64_t n)
{
    cg_status s = ctx->be->download(ctx->bctx, dst, src.buf, (size_t)src.off * sizeof(float),
                                    (size_t)n * sizeof(float));
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "download", "n", CG__SIZES(n));
}

/* Optional (src/dist/dist.c): a read that does not wait, and its poll. */
static inline cg_status cg__be_download_async(cg_ctx *ctx, const char *what, float *dst,
                                              struct cg_ptr src, int64_t n, void **ticket)
{
    if (!CG__BE_HAS(ctx, download_async)) return cg__be_missing(ctx, what, "download_async");
    cg_status s = ctx->be->download_async(ctx->bctx, dst, src.buf,
                                          (size_t)src.off * sizeof(float),
                                          (size_t)n * sizeof(float), ticket);
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "download_async", "n", CG__SIZES(n));
}

static inline cg_status cg__be_download_poll(cg_ctx *ctx, const char *what, void *ticket,
                                             bool wait, bool *done)
{
    if (!CG__BE_HAS(ctx, download_poll)) return cg__be_missing(ctx, what, "download_poll");
    int d = 0;
    cg_status s = ctx->be->download_poll(ctx->bctx, ticket, wait, &d);
    *done = d != 0;
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "download_poll", NULL, 0, NULL);
}

/* n floats from src to dst, on the device. */
static inline cg_status cg__be_copy(cg_ctx *ctx, const char *what, struct cg_ptr dst,
                                    struct cg_ptr src, int64_t n)
{
    cg_status s = ctx->be->copy(ctx->bctx, dst.buf, (size_t)dst.off * sizeof(float), src.buf,
                                (size_t)src.off * sizeof(float), (size_t)n * sizeof(float));
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "copy", "n", CG__SIZES(n));
}

static inline cg_status cg__be_finish(cg_ctx *ctx, const char *what)
{
    cg_status s = ctx->be->finish(ctx->bctx);
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "finish", NULL, 0, NULL);
}

/* ---- elementwise, reductions, GEMM ----------------------------------- */

static inline cg_status cg__be_fill(cg_ctx *ctx, const char *what, const struct cg_view *out,
                                    float value)
{
    cg_status s = ctx->be->fill(ctx->bctx, out, value);
    return s == CG_OK ? CG_OK : cg__be_fail_view(ctx, s, what, "fill", out);
}

static inline cg_status cg__be_ew(cg_ctx *ctx, const char *what, enum cg_ew_op op, float p0,
                                  float p1, const struct cg_view *out, const struct cg_view *a,
                                  const struct cg_view *b)
{
    cg_status s = ctx->be->ew(ctx->bctx, op, p0, p1, out, a, b);
    return s == CG_OK ? CG_OK : cg__be_fail_view(ctx, s, what, "ew", out);
}

static inline cg_status cg__be_reduce(cg_ctx *ctx, const char *what, enum cg_reduce_op op,
                                      struct cg_ptr out, struct cg_ptr in, int64_t outer,
                                      int64_t n, int64_t inner, float scale)
{
    cg_status s = ctx->be->reduce(ctx->bctx, op, out, in, outer, n, inner, scale);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "reduce", "outer, n, inner",
                                    CG__SIZES(outer, n, inner));
}

static inline cg_status cg__be_gemm(cg_ctx *ctx, const char *what, const struct cg_gemm_desc *d,
                                    struct cg_ptr a, struct cg_ptr b, struct cg_ptr c)
{
    cg_status s = ctx->be->gemm(ctx->bctx, d, a, b, c);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "gemm", "batch, m, n, k",
                                    CG__SIZES(d->batch, d->m, d->n, d->k));
}

/* One plain GEMM (batch 1, alpha 1): C = op(A) op(B) + beta C. */
static inline cg_status cg__be_gemm1(cg_ctx *ctx, const char *what, int ta, int tb, int64_t m,
                                     int64_t n, int64_t k, float beta, struct cg_ptr a,
                                     int64_t lda, struct cg_ptr b, int64_t ldb, struct cg_ptr c,
                                     int64_t ldc)
{
    struct cg_gemm_desc d = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                             .alpha = 1.0f, .beta = beta, .lda = lda, .ldb = ldb, .ldc = ldc,
                             .batch = 1};
    return cg__be_gemm(ctx, what, &d, a, b, c);
}

/* ---- softmax, indexing, optimizer ------------------------------------ */

static inline cg_status cg__be_softmax(cg_ctx *ctx, const char *what, struct cg_ptr out,
                                       struct cg_ptr in, int64_t rows, int64_t cols, int log)
{
    cg_status s = ctx->be->softmax(ctx->bctx, out, in, rows, cols, log);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "softmax", "rows, cols", CG__SIZES(rows, cols));
}

static inline cg_status cg__be_softmax_backward(cg_ctx *ctx, const char *what, struct cg_ptr gx,
                                                struct cg_ptr y, struct cg_ptr gy, int64_t rows,
                                                int64_t cols, int log)
{
    cg_status s = ctx->be->softmax_backward(ctx->bctx, gx, y, gy, rows, cols, log);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "softmax_backward", "rows, cols",
                                    CG__SIZES(rows, cols));
}

/* index_rows / index_rows_add (rows = true) and pick / pick_add. */
static inline cg_status cg__be_gather(cg_ctx *ctx, const char *what, bool rows, struct cg_ptr out,
                                      struct cg_ptr src, struct cg_ptr idx, int64_t n,
                                      int64_t inner)
{
    cg_status s = rows ? ctx->be->index_rows(ctx->bctx, out, src, idx, n, inner)
                       : ctx->be->pick(ctx->bctx, out, src, idx, n, inner);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, rows ? "index_rows" : "pick", "n, inner",
                                    CG__SIZES(n, inner));
}

static inline cg_status cg__be_scatter_add(cg_ctx *ctx, const char *what, bool rows,
                                           struct cg_ptr dst, struct cg_ptr src,
                                           struct cg_ptr idx, int64_t n, int64_t inner)
{
    cg_status s = rows ? ctx->be->index_rows_add(ctx->bctx, dst, src, idx, n, inner)
                       : ctx->be->pick_add(ctx->bctx, dst, src, idx, n, inner);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, rows ? "index_rows_add" : "pick_add",
                                    "n, inner", CG__SIZES(n, inner));
}

/* One update by the optimizer `family` ("Adam") of elements [lo, hi) of
 * parameter p and of its gradient (flattened; all of p: 0, numel), with
 * state of hi - lo elements (ZeRO-1 sharding updates a range). */
static inline cg_status cg__be_optim_update(cg_ctx *ctx, const char *family,
                                            const struct cg_optim_hparams *h, const cg_tensor *p,
                                            struct cg_ptr grad, struct cg_ptr state[3],
                                            int64_t lo, int64_t hi)
{
    struct cg_ptr pp = cg__ptr(p);
    pp.off += lo;
    grad.off += lo;
    cg_status s = ctx->be->optim_update(ctx->bctx, h, pp, grad, state, hi - lo);
    return s == CG_OK ? CG_OK : cg__be_fail_optim(ctx, s, family, p);
}

/* bytes of the backend's pinned host memory (the optional host_alloc), or
 * NULL where it has none or refuses: the caller then uses malloc, so a
 * refusal is no error. */
static inline void *cg__be_host_alloc(cg_ctx *ctx, size_t bytes)
{
    void *p = NULL;
    if (!CG__BE_HAS(ctx, host_alloc) || !CG__BE_HAS(ctx, host_free)) return NULL;
    return ctx->be->host_alloc(ctx->bctx, bytes, &p) == CG_OK ? p : NULL;
}

static inline void cg__be_host_free(cg_ctx *ctx, void *p) { ctx->be->host_free(ctx->bctx, p); }

/* ---- convolution and pooling windows (optional members) --------------- */

static inline bool cg__be_has_conv2d(cg_ctx *ctx)
{
    return CG__BE_HAS(ctx, im2col) && CG__BE_HAS(ctx, col2im);
}
static inline bool cg__be_has_pool2d(cg_ctx *ctx)
{
    return CG__BE_HAS(ctx, pool2d) && CG__BE_HAS(ctx, pool2d_backward);
}

#define CG__DESC_SIZES(d) "n, c, h, w, kh, kw, oh, ow", \
    CG__SIZES((d)->n, (d)->c, (d)->h, (d)->w, (d)->kh, (d)->kw, (d)->oh, (d)->ow)

static inline cg_status cg__be_im2col(cg_ctx *ctx, const char *what,
                                      const struct cg_conv2d_desc *d, struct cg_ptr col,
                                      struct cg_ptr img)
{
    if (!CG__BE_HAS(ctx, im2col)) return cg__be_missing(ctx, what, "im2col");
    cg_status s = ctx->be->im2col(ctx->bctx, d, col, img);
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "im2col", CG__DESC_SIZES(d));
}

static inline cg_status cg__be_col2im(cg_ctx *ctx, const char *what,
                                      const struct cg_conv2d_desc *d, struct cg_ptr img,
                                      struct cg_ptr col)
{
    if (!CG__BE_HAS(ctx, col2im)) return cg__be_missing(ctx, what, "col2im");
    cg_status s = ctx->be->col2im(ctx->bctx, d, img, col);
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "col2im", CG__DESC_SIZES(d));
}

static inline cg_status cg__be_pool2d(cg_ctx *ctx, const char *what, enum cg_pool_kind kind,
                                      const struct cg_conv2d_desc *d, struct cg_ptr out,
                                      struct cg_ptr argmax, struct cg_ptr in)
{
    if (!CG__BE_HAS(ctx, pool2d)) return cg__be_missing(ctx, what, "pool2d");
    cg_status s = ctx->be->pool2d(ctx->bctx, kind, d, out, argmax, in);
    return s == CG_OK ? CG_OK : cg__be_fail(ctx, s, what, "pool2d", CG__DESC_SIZES(d));
}

static inline cg_status cg__be_pool2d_backward(cg_ctx *ctx, const char *what,
                                               enum cg_pool_kind kind,
                                               const struct cg_conv2d_desc *d, struct cg_ptr gin,
                                               struct cg_ptr gout, struct cg_ptr argmax)
{
    if (!CG__BE_HAS(ctx, pool2d_backward)) return cg__be_missing(ctx, what, "pool2d_backward");
    cg_status s = ctx->be->pool2d_backward(ctx->bctx, kind, d, gin, gout, argmax);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "pool2d_backward", CG__DESC_SIZES(d));
}

/* ---- whole convolutions (fused, optional; backend.h) ------------------
 * CG_STATUS_UNSUPPORTED from the backend means "compose this one": it is
 * returned as is, with no error recorded (the member may decline sizes). */

static inline bool cg__be_has_conv2d_fused(cg_ctx *ctx)
{
    return CG__BE_HAS(ctx, conv2d) && CG__BE_HAS(ctx, conv2d_backward_data) &&
           CG__BE_HAS(ctx, conv2d_backward_weights);
}

/* s as the caller gets it: CG_OK and a decline as they are, a failure
 * recorded with the member's name and the convolution's sizes. */
static inline cg_status cg__be_conv_result(cg_ctx *ctx, cg_status s, const char *what,
                                           const char *member, const struct cg_conv2d_desc *d,
                                           int64_t out_c)
{
    if (s == CG_OK || s == CG_STATUS_UNSUPPORTED) return s;
    return cg__be_fail(ctx, s, what, member, "n, c, h, w, out_c, kh, kw, oh, ow",
                       CG__SIZES(d->n, d->c, d->h, d->w, out_c, d->kh, d->kw, d->oh, d->ow));
}

static inline cg_status cg__be_conv2d(cg_ctx *ctx, const char *what,
                                      const struct cg_conv2d_desc *d, int64_t out_c,
                                      struct cg_ptr y, struct cg_ptr x, struct cg_ptr w,
                                      struct cg_ptr b)
{
    if (!CG__BE_HAS(ctx, conv2d)) return CG_STATUS_UNSUPPORTED;
    return cg__be_conv_result(ctx, ctx->be->conv2d(ctx->bctx, d, out_c, y, x, w, b), what,
                              "conv2d", d, out_c);
}

static inline cg_status cg__be_conv2d_backward_data(cg_ctx *ctx, const char *what,
                                                    const struct cg_conv2d_desc *d,
                                                    int64_t out_c, struct cg_ptr dx,
                                                    struct cg_ptr gy, struct cg_ptr w)
{
    if (!CG__BE_HAS(ctx, conv2d_backward_data)) return CG_STATUS_UNSUPPORTED;
    return cg__be_conv_result(ctx, ctx->be->conv2d_backward_data(ctx->bctx, d, out_c, dx, gy, w),
                              what, "conv2d_backward_data", d, out_c);
}

static inline cg_status cg__be_conv2d_backward_weights(cg_ctx *ctx, const char *what,
                                                       const struct cg_conv2d_desc *d,
                                                       int64_t out_c, struct cg_ptr dw,
                                                       struct cg_ptr db, struct cg_ptr x,
                                                       struct cg_ptr gy)
{
    if (!CG__BE_HAS(ctx, conv2d_backward_weights)) return CG_STATUS_UNSUPPORTED;
    return cg__be_conv_result(ctx,
                              ctx->be->conv2d_backward_weights(ctx->bctx, d, out_c, dw, db, x, gy),
                              what, "conv2d_backward_weights", d, out_c);
}

/* ---- fused kernels (optional members; backend.h gives the math) ------- */

static inline bool cg__be_has_lstm_cell(cg_ctx *ctx)
{
    return CG__BE_HAS(ctx, lstm_cell) && CG__BE_HAS(ctx, lstm_cell_backward);
}
static inline bool cg__be_has_softmax_causal(cg_ctx *ctx)
{
    return CG__BE_HAS(ctx, softmax_causal);
}
static inline bool cg__be_has_bias_gelu(cg_ctx *ctx)
{
    return CG__BE_HAS(ctx, bias_gelu) && CG__BE_HAS(ctx, bias_gelu_backward);
}
static inline bool cg__be_has_layernorm(cg_ctx *ctx)
{
    return CG__BE_HAS(ctx, layernorm) && CG__BE_HAS(ctx, layernorm_backward);
}

static inline cg_status cg__be_lstm_cell(cg_ctx *ctx, const char *what, struct cg_ptr c,
                                         struct cg_ptr h, struct cg_ptr save, struct cg_ptr gates,
                                         struct cg_ptr c_prev, int64_t batch, int64_t hidden)
{
    if (!CG__BE_HAS(ctx, lstm_cell)) return cg__be_missing(ctx, what, "lstm_cell");
    cg_status s = ctx->be->lstm_cell(ctx->bctx, c, h, save, gates, c_prev, batch, hidden);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "lstm_cell", "batch, hidden",
                                    CG__SIZES(batch, hidden));
}

static inline cg_status cg__be_lstm_cell_backward(cg_ctx *ctx, const char *what,
                                                  struct cg_ptr g_gates, struct cg_ptr g_c_prev,
                                                  struct cg_ptr gh, struct cg_ptr gc,
                                                  struct cg_ptr save, struct cg_ptr c_prev,
                                                  int64_t batch, int64_t hidden)
{
    if (!CG__BE_HAS(ctx, lstm_cell_backward))
        return cg__be_missing(ctx, what, "lstm_cell_backward");
    cg_status s = ctx->be->lstm_cell_backward(ctx->bctx, g_gates, g_c_prev, gh, gc, save, c_prev,
                                              batch, hidden);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "lstm_cell_backward", "batch, hidden",
                                    CG__SIZES(batch, hidden));
}

static inline cg_status cg__be_softmax_causal(cg_ctx *ctx, const char *what, struct cg_ptr out,
                                              struct cg_ptr in, int64_t rows, int64_t cols,
                                              int64_t period)
{
    if (!CG__BE_HAS(ctx, softmax_causal)) return cg__be_missing(ctx, what, "softmax_causal");
    cg_status s = ctx->be->softmax_causal(ctx->bctx, out, in, rows, cols, period);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "softmax_causal", "rows, cols, period",
                                    CG__SIZES(rows, cols, period));
}

static inline cg_status cg__be_bias_gelu(cg_ctx *ctx, const char *what, struct cg_ptr out,
                                         struct cg_ptr in, struct cg_ptr bias, int64_t rows,
                                         int64_t cols)
{
    if (!CG__BE_HAS(ctx, bias_gelu)) return cg__be_missing(ctx, what, "bias_gelu");
    cg_status s = ctx->be->bias_gelu(ctx->bctx, out, in, bias, rows, cols);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "bias_gelu", "rows, cols",
                                    CG__SIZES(rows, cols));
}

static inline cg_status cg__be_bias_gelu_backward(cg_ctx *ctx, const char *what, struct cg_ptr gx,
                                                  struct cg_ptr in, struct cg_ptr bias,
                                                  struct cg_ptr gy, int64_t rows, int64_t cols)
{
    if (!CG__BE_HAS(ctx, bias_gelu_backward))
        return cg__be_missing(ctx, what, "bias_gelu_backward");
    cg_status s = ctx->be->bias_gelu_backward(ctx->bctx, gx, in, bias, gy, rows, cols);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "bias_gelu_backward", "rows, cols",
                                    CG__SIZES(rows, cols));
}

static inline cg_status cg__be_layernorm(cg_ctx *ctx, const char *what, struct cg_ptr y,
                                         struct cg_ptr mean, struct cg_ptr rstd, struct cg_ptr x,
                                         struct cg_ptr w, struct cg_ptr b, int64_t rows,
                                         int64_t cols, float eps)
{
    if (!CG__BE_HAS(ctx, layernorm)) return cg__be_missing(ctx, what, "layernorm");
    cg_status s = ctx->be->layernorm(ctx->bctx, y, mean, rstd, x, w, b, rows, cols, eps);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "layernorm", "rows, cols",
                                    CG__SIZES(rows, cols));
}

static inline cg_status cg__be_layernorm_backward(cg_ctx *ctx, const char *what,
                                                  struct cg_ptr gx, struct cg_ptr gw,
                                                  struct cg_ptr gb, struct cg_ptr gy,
                                                  struct cg_ptr x, struct cg_ptr mean,
                                                  struct cg_ptr rstd, struct cg_ptr w,
                                                  int64_t rows, int64_t cols)
{
    if (!CG__BE_HAS(ctx, layernorm_backward))
        return cg__be_missing(ctx, what, "layernorm_backward");
    cg_status s =
        ctx->be->layernorm_backward(ctx->bctx, gx, gw, gb, gy, x, mean, rstd, w, rows, cols);
    return s == CG_OK ? CG_OK
                      : cg__be_fail(ctx, s, what, "layernorm_backward", "rows, cols",
                                    CG__SIZES(rows, cols));
}

#endif
