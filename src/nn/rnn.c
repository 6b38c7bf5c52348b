/*
 * src/nn/rnn.c — torch.nn.RNN (tanh), LSTM and GRU: multi-layer,
 * batch_first, initial states, full backpropagation through time.
 *
 * The equations are exactly those of the PyTorch docs (torch.nn.RNN, LSTM,
 * GRU; x_t the layer's input, h_{t-1} its previous hidden state, sigma the
 * logistic sigmoid, * the elementwise product):
 *
 *   RNN:  h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)
 *   LSTM: i_t = sigma(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)
 *         f_t = sigma(W_if x_t + b_if + W_hf h_{t-1} + b_hf)
 *         g_t = tanh (W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)
 *         o_t = sigma(W_io x_t + b_io + W_ho h_{t-1} + b_ho)
 *         c_t = f_t * c_{t-1} + i_t * g_t
 *         h_t = o_t * tanh(c_t)
 *         weight_ih_l{k} = (W_ii | W_if | W_ig | W_io), (4H, in), rows in
 *         that order; the same for weight_hh and the biases.
 *   GRU:  r_t = sigma(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
 *         z_t = sigma(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
 *         n_t = tanh (W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))
 *         h_t = (1 - z_t) * n_t + z_t * h_{t-1}
 *         weight_ih_l{k} = (W_ir | W_iz | W_in), (3H, in).
 * Layer k > 0 takes layer k-1's h_t as its x_t.
 *
 * Cost. The input projection of a layer is ONE matmul over all time steps,
 * (T*B, in) x (in, G*H); each step then does one (B, H) x (H, G*H) matmul
 * for the hidden projection and a few elementwise ops on the gates. Backward
 * is autograd's, through the same ops.
 *
 * Fused LSTM. When the backend has lstm_cell and lstm_cell_backward
 * (backend.h), an LSTM layer's T steps are instead one recorded op,
 * `LSTM sequence` (below, where its cost is explained), with one GEMM and
 * one cell kernel per step each way and the W_hh gradient as one GEMM over
 * all steps. Without them the composed ops above run; both give the same
 * values (tests/test_fused.c).
 *
 * Windows. Steps read their rows and gate chunks out of the projection
 * tensors through `window`, a view op whose backward adds its gradient into
 * the same window of the base's gradient buffer, in place. cg_slice would
 * instead scatter into a fresh full-size zero tensor per use, which over T
 * steps is O(T^2) memory and time. In place is safe here because every base
 * a window reads (the projections, the gate pre-activations) is private to
 * this file and consumed by windows only, so its parked gradient is always
 * the buffer window_backward created.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"

#define MAX_LAYERS 64

struct rnn {
    enum cg_rnn_mode mode;
    int64_t in, hidden;
    int layers, gates;
    bool bias, batch_first;
    /* per layer, owned by the module's parameter list; biases NULL without bias */
    cg_tensor *w_ih[MAX_LAYERS], *w_hh[MAX_LAYERS], *b_ih[MAX_LAYERS], *b_hh[MAX_LAYERS];
};

static const char *mode_name(enum cg_rnn_mode mode)
{
    return mode == CG_RNN_LSTM ? "LSTM" : mode == CG_RNN_GRU ? "GRU" : "RNN";
}

/* ---- the window op ------------------------------------------------------ */

static cg_status window_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *base = n->inputs[0];
    cg_ctx *ctx = cg__ctx_of(base);
    if (!base->grad) {
        cg_tensor *z = cg__tensor_new_unowned(ctx, base->ndim, base->shape);
        if (!z) return ctx->status;
        struct cg_view v = cg__view_of(z);
        if (ctx->be->fill(ctx->bctx, &v, 0.0f) != CG_OK) {
            cg__tensor_unref(z);
            return cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "rnn window backward");
        }
        base->grad = z;
    }
    /* base is contiguous, so its gradient buffer has base's strides. */
    cg_tensor *win = cg__tensor_view(base->grad, y->ndim, y->shape, y->strides,
                                     base->grad->offset + (y->offset - base->offset));
    if (!win) return ctx->status;
    return cg__ew(ctx, "rnn window backward", CG_EW_ADD, 0, 0, win, win, g);
}

/* A window of the contiguous, private tensor base: element (i, j, ..) at
 * base element off + i * strides[0] + j * strides[1] + .. */
static cg_tensor *window_nd(cg_tensor *base, int ndim, const int64_t *shape,
                            const int64_t *strides, int64_t off)
{
    if (!base) return NULL;
    CG_ASSERT(cg_tensor_is_contiguous(base));
    cg_tensor *v = cg__tensor_view(base, ndim, shape, strides, base->offset + off);
    if (!v) return NULL;
    bool failed;
    cg__record(v, "rnn window", window_backward, 1, &base, 0, NULL, &failed);
    if (failed) {
        cg_tensor_free(v);
        return NULL;
    }
    return v;
}

/* A (rows, cols) window: element (i, j) at base element off + i * row_stride + j. */
static cg_tensor *window(cg_tensor *base, int64_t rows, int64_t cols, int64_t row_stride,
                         int64_t off)
{
    return window_nd(base, 2, (int64_t[]){rows, cols}, (int64_t[]){row_stride, 1}, off);
}

/* A (B, G*H) block of gate pre-activations inside a private base: row b at
 * off + b * row_stride. */
struct rows {
    cg_tensor *base;
    int64_t off, row_stride;
};

/* Columns [k*H, (k+width)*H) of the block: gate chunks k .. k+width-1. */
static cg_tensor *chunk(struct rows r, int64_t B, int64_t H, int k, int width)
{
    return window(r.base, B, width * H, r.row_stride, r.off + k * H);
}

/* ---- the whole fused LSTM recurrence as one op ------------------------------ */

/* With the fused cell the layer's T steps are one recorded op, `LSTM
 * sequence`, whose backward is written here from backend primitives
 * instead of autograd's step-by-step graph. Per step it costs one GEMM and
 * one cell kernel each way, with no per-step tensor, window or gradient
 * add: the step's hidden projection is accumulated by the GEMM (beta = 1)
 * into the gate buffer that already holds the input projection, and in
 * the backward dh_{t-1} likewise into a buffer that already holds the
 * output's gradient. The weight gradient of W_hh, sum_t dG_t^T h_{t-1},
 * is then ONE (4H, T*B) x (T*B, H) GEMM over the gate gradients of all
 * steps, the way cuDNN and PyTorch's CPU LSTM batch it.
 *
 * Output: a private (2, T+1, B, H) tensor S, S[0, t] = h_t and
 * S[1, t] = c_t, t = 0 (the initial state) .. T. The layer reads y, h_n and
 * c_n through windows of S, so their gradients meet in S's gradient; the
 * only window on the c half is c_n = S[1, T], which the backward relies on.
 * Inputs: xw (T, B, 4H), the input projection with both biases, contiguous
 * and time-major; W_hh (4H, H); h0, c0 (B, H). */

static cg_status seq_gemm(cg_ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k,
                          float beta, struct cg_ptr a, int64_t lda, struct cg_ptr b, int64_t ldb,
                          struct cg_ptr c, int64_t ldc)
{
    struct cg_gemm_desc d = {.trans_a = ta, .trans_b = tb, .m = m, .n = n, .k = k,
                             .alpha = 1.0f, .beta = beta, .lda = lda, .ldb = ldb, .ldc = ldc,
                             .batch = 1};
    if (ctx->be->gemm(ctx->bctx, &d, a, b, c) != CG_OK)
        return cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "LSTM sequence GEMM");
    return CG_OK;
}

static struct cg_ptr at(const cg_tensor *t, int64_t off)
{
    struct cg_ptr p = cg__ptr(t);
    p.off += off;
    return p;
}

static cg_status seq_copy(cg_ctx *ctx, struct cg_ptr dst, struct cg_ptr src, int64_t n)
{
    if (ctx->be->copy(ctx->bctx, dst.buf, (size_t)dst.off * sizeof(float), src.buf,
                      (size_t)src.off * sizeof(float), (size_t)n * sizeof(float)) != CG_OK)
        return cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "LSTM sequence copy");
    return CG_OK;
}

/* The (B, H) gradient wrt h0 or c0, accumulated when that input wants one. */
static cg_status seq_state_grad(struct cg_node *n, int i, cg_tensor *src, int64_t off)
{
    if (!cg__input_needs_grad(n, i)) return CG_OK;
    cg_tensor *s = n->inputs[i];
    cg_tensor *v = cg__tensor_view(src, s->ndim, s->shape, (int64_t[]){s->shape[1], 1},
                                   src->offset + off);
    return v ? cg__accumulate_grad(s, v) : cg__ctx_of(src)->status;
}

static cg_status lstm_seq_backward(struct cg_node *n, cg_tensor *S, cg_tensor *g)
{
    cg_tensor *xw = n->inputs[0], *save = n->saved[0];
    cg_ctx *ctx = cg__ctx_of(xw);
    const int64_t T = n->i[0], B = n->i[1], H = n->i[2], N = B * H, TS = T + 1;
    const bool want_h0 = cg__input_needs_grad(n, 2);
    cg_tensor *gs = cg__contig_ref(g), *w = gs ? cg__contig_ref(n->inputs[1]) : NULL;
    cg_tensor *dh = w ? cg__tensor_new_unowned(ctx, 3, (int64_t[]){TS, B, H}) : NULL;
    cg_tensor *dc = dh ? cg__tensor_new_unowned(ctx, 3, (int64_t[]){2, B, H}) : NULL;
    cg_tensor *dG = dc ? cg__tensor_new(ctx, 3, (int64_t[]){T, B, 4 * H}) : NULL;
    cg_status st = dG ? CG_OK : ctx->status;
    /* dh[t] starts as the gradient reaching h_t from outside (y, h_n); dc
     * ping-pongs between dc[0] and dc[1] and starts as c_n's gradient. */
    if (st == CG_OK) st = seq_copy(ctx, cg__ptr(dh), cg__ptr(gs), TS * N);
    if (st == CG_OK) st = seq_copy(ctx, cg__ptr(dc), at(gs, (TS + T) * N), N);
    int cur = 0;
    for (int64_t t = T - 1; t >= 0 && st == CG_OK; t--) {
        if (ctx->be->lstm_cell_backward(ctx->bctx, at(dG, t * 4 * N), at(dc, (1 - cur) * N),
                                        at(dh, (t + 1) * N), at(dc, cur * N),
                                        at(save, t * 5 * N), at(S, (TS + t) * N), B,
                                        H) != CG_OK)
            st = cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "LSTM sequence cell backward");
        cur = 1 - cur;
        /* dh_{t-1} += dG_t W_hh */
        if (st == CG_OK && (t > 0 || want_h0))
            st = seq_gemm(ctx, 0, 0, B, H, 4 * H, 1.0f, at(dG, t * 4 * N), 4 * H, cg__ptr(w), H,
                          at(dh, t * N), H);
    }
    if (st == CG_OK) st = cg__accumulate_grad(xw, dG);
    if (st == CG_OK && cg__input_needs_grad(n, 1)) {
        /* dW_hh = sum_t dG_t^T h_{t-1}: h_0 .. h_{T-1} are S's first T*B rows */
        cg_tensor *dw = cg__tensor_new(ctx, 2, (int64_t[]){4 * H, H});
        st = dw ? seq_gemm(ctx, 1, 0, 4 * H, H, T * B, 0.0f, cg__ptr(dG), 4 * H, cg__ptr(S), H,
                           cg__ptr(dw), H)
                : ctx->status;
        if (st == CG_OK) st = cg__accumulate_grad(n->inputs[1], dw);
    }
    if (st == CG_OK) st = seq_state_grad(n, 2, dh, 0);
    if (st == CG_OK) st = seq_state_grad(n, 3, dc, cur * N);
    if (dc) cg__tensor_unref(dc);
    if (dh) cg__tensor_unref(dh);
    if (w) cg__tensor_unref(w);
    if (gs) cg__tensor_unref(gs);
    return st;
}

/* Copies the (B, H) state s into S at element off. */
static cg_status seq_state_in(cg_tensor *S, int64_t off, cg_tensor *s)
{
    cg_tensor *v = cg__tensor_view(S, 2, s->shape, (int64_t[]){s->shape[1], 1}, S->offset + off);
    return v ? cg__ew(cg__ctx_of(S), "LSTM initial state", CG_EW_COPY, 0, 0, v, s, NULL)
             : cg__ctx_of(S)->status;
}

static cg_tensor *lstm_seq(cg_tensor *xw, cg_tensor *w_hh, cg_tensor *h0, cg_tensor *c0,
                           int64_t T, int64_t B, int64_t H)
{
    if (!xw || !w_hh || !h0 || !c0) return NULL;
    cg_ctx *ctx = cg__ctx_of(xw);
    const int64_t N = B * H, TS = T + 1;
    CG_ASSERT(cg_tensor_is_contiguous(xw) && h0->ndim == 2 && c0->ndim == 2);
    cg_tensor *w = cg__contig_ref(w_hh);
    cg_tensor *S = w ? cg__tensor_new(ctx, 4, (int64_t[]){2, TS, B, H}) : NULL;
    cg_tensor *save = S ? cg__tensor_new_unowned(ctx, 3, (int64_t[]){T, B, 5 * H}) : NULL;
    cg_tensor *G = save ? cg__tensor_new_unowned(ctx, 3, (int64_t[]){T, B, 4 * H}) : NULL;
    cg_status st = G ? CG_OK : ctx->status;
    if (st == CG_OK) st = seq_state_in(S, 0, h0);
    if (st == CG_OK) st = seq_state_in(S, TS * N, c0);
    if (st == CG_OK) st = seq_copy(ctx, cg__ptr(G), cg__ptr(xw), T * 4 * N);
    for (int64_t t = 0; t < T && st == CG_OK; t++) {
        /* G_t += h_{t-1} W_hh^T, then the cell: c_t, h_t into S */
        st = seq_gemm(ctx, 0, 1, B, 4 * H, H, 1.0f, at(S, t * N), H, cg__ptr(w), H,
                      at(G, t * 4 * N), 4 * H);
        if (st == CG_OK &&
            ctx->be->lstm_cell(ctx->bctx, at(S, (TS + t + 1) * N), at(S, (t + 1) * N),
                               at(save, t * 5 * N), at(G, t * 4 * N), at(S, (TS + t) * N), B,
                               H) != CG_OK)
            st = cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "LSTM sequence cell");
    }
    if (st == CG_OK) {
        bool failed;
        cg_tensor *in[4] = {xw, w_hh, h0, c0};
        struct cg_node *n = cg__record(S, "LSTM sequence", lstm_seq_backward, 4, in, 1, &save,
                                       &failed);
        if (failed) st = ctx->status;
        if (n) {
            n->i[0] = T;
            n->i[1] = B;
            n->i[2] = H;
        }
    }
    if (G) cg__tensor_unref(G);
    if (save) cg__tensor_unref(save);
    if (w) cg__tensor_unref(w);
    if (st != CG_OK) {
        if (S) cg_tensor_free(S);
        return NULL;
    }
    return S;
}

/* One fused LSTM layer: x (T, B, in) [tdim 0] or (B, T, in) [tdim 1]. */
static cg_tensor *layer_forward_seq(struct rnn *r, int k, cg_tensor *x, int tdim, cg_tensor *h,
                                    cg_tensor *c, cg_tensor **h_last, cg_tensor **c_last)
{
    const int64_t H = r->hidden, T = cg_tensor_dim(x, tdim), B = cg_tensor_dim(x, 1 - tdim);
    const int64_t N = B * H, TS = T + 1;
    /* time-major input projection: transposing x (in wide) is cheaper than
     * transposing xw (4H wide) */
    cg_tensor *xw = cg_matmul(tdim ? cg_transpose(x, 0, 1) : x, cg_transpose(r->w_ih[k], 0, 1));
    if (r->bias) xw = cg_add(xw, cg_add(r->b_ih[k], r->b_hh[k]));
    cg_tensor *S = lstm_seq(cg_contiguous(xw), r->w_hh[k], h, c, T, B, H);
    /* y = h_1 .. h_T in x's layout */
    int64_t shape[3] = {T, B, H}, strides[3] = {N, H, 1};
    if (tdim) {
        shape[0] = B;
        shape[1] = T;
        strides[0] = H;
        strides[1] = N;
    }
    *h_last = window(S, B, H, H, T * N);
    *c_last = window(S, B, H, H, (TS + T) * N);
    return window_nd(S, 3, shape, strides, N);
}

/* ---- one layer over all steps ------------------------------------------- */

/* x: (T, B, in) when tdim == 0, (B, T, in) when tdim == 1;
 * h, c: (B, H) initial states (c for LSTM only).
 * Returns the layer's outputs in x's layout with H features; *h_last,
 * *c_last: the final states (B, H). */
static cg_tensor *layer_forward(struct rnn *r, int k, cg_tensor *x, int tdim, cg_tensor *h,
                                cg_tensor *c, cg_tensor **h_last, cg_tensor **c_last)
{
    cg_ctx *ctx = cg_tensor_ctx(x);
    if (r->mode == CG_RNN_LSTM && CG_BACKEND_HAS(ctx->be, lstm_cell) &&
        CG_BACKEND_HAS(ctx->be, lstm_cell_backward))
        return layer_forward_seq(r, k, x, tdim, h, c, h_last, c_last);
    const int64_t H = r->hidden, GH = r->gates * r->hidden;
    const int64_t T = cg_tensor_dim(x, tdim), B = cg_tensor_dim(x, 1 - tdim);

    /* Input projection of every step at once: (.., .., G*H). RNN and LSTM
     * add both biases here, once; GRU keeps b_hh for the hidden side, as
     * b_hn sits inside r_t * (...). */
    cg_tensor *xw = cg_matmul(x, cg_transpose(r->w_ih[k], 0, 1));
    if (r->bias)
        xw = cg_add(xw, r->mode == CG_RNN_GRU ? r->b_ih[k] : cg_add(r->b_ih[k], r->b_hh[k]));
    xw = cg_contiguous(xw);
    if (!xw) return NULL;
    /* step t's rows: (T, B, GH) -> t*B*GH + b*GH; (B, T, GH) -> t*GH + b*T*GH */
    const int64_t t_stride = tdim == 0 ? B * GH : GH, b_stride = tdim == 0 ? GH : T * GH;
    cg_tensor *whh_t = cg_transpose(r->w_hh[k], 0, 1); /* (H, G*H) */

    cg_tensor **hs = malloc((size_t)(T > 0 ? T : 1) * sizeof *hs);
    if (!hs) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", mode_name(r->mode));
        return NULL;
    }
    for (int64_t t = 0; t < T && h; t++) {
        struct rows xr = {xw, t * t_stride, b_stride};
        cg_tensor *hw = cg_matmul(h, whh_t); /* (B, G*H) */
        switch (r->mode) {
        case CG_RNN_TANH:
            h = cg_tanh(cg_add(chunk(xr, B, H, 0, 1), hw));
            break;
        case CG_RNN_LSTM: {
            struct rows pre = {cg_add(chunk(xr, B, H, 0, 4), hw), 0, GH};
            cg_tensor *i = cg_sigmoid(chunk(pre, B, H, 0, 1));
            cg_tensor *f = cg_sigmoid(chunk(pre, B, H, 1, 1));
            cg_tensor *g = cg_tanh(chunk(pre, B, H, 2, 1));
            cg_tensor *o = cg_sigmoid(chunk(pre, B, H, 3, 1));
            c = cg_add(cg_mul(f, c), cg_mul(i, g));
            h = cg_mul(o, cg_tanh(c));
            break;
        }
        case CG_RNN_GRU: {
            if (r->bias) hw = cg_add(hw, r->b_hh[k]);
            struct rows hr = {hw, 0, GH};
            /* r and z together: one add and one sigmoid over 2H columns */
            struct rows rz = {cg_sigmoid(cg_add(chunk(xr, B, H, 0, 2), chunk(hr, B, H, 0, 2))),
                              0, 2 * H};
            cg_tensor *rt = chunk(rz, B, H, 0, 1), *zt = chunk(rz, B, H, 1, 1);
            cg_tensor *n = cg_tanh(cg_add(chunk(xr, B, H, 2, 1), cg_mul(rt, chunk(hr, B, H, 2, 1))));
            h = cg_add(n, cg_mul(zt, cg_sub(h, n))); /* (1 - z) n + z h */
            break;
        }
        }
        hs[t] = cg_unsqueeze(h, tdim);
        if (!hs[t]) h = NULL;
    }
    cg_tensor *out = h ? (T > 0 ? cg_cat((int)T, hs, tdim) : NULL) : NULL;
    free(hs);
    *h_last = h;
    *c_last = c;
    return out;
}

/* ---- the module ------------------------------------------------------------ */

static cg_status shape_error(cg_ctx *ctx, struct rnn *r, const char *what, cg_tensor *t,
                             const char *want)
{
    char s[128];
    return cg__error(ctx, CG_STATUS_SHAPE_MISMATCH,
                     "%s(%lld, %lld, num_layers=%d): %s %s must be %s", mode_name(r->mode),
                     (long long)r->in, (long long)r->hidden, r->layers, what,
                     cg_tensor_describe(t, s, sizeof s), want);
}

/* s: the expected initial-state shape; t must match it exactly. */
static bool state_ok(cg_tensor *t, int nd, const int64_t *s)
{
    if (cg_tensor_ndim(t) != nd) return false;
    for (int i = 0; i < nd; i++)
        if (cg_tensor_dim(t, i) != s[i]) return false;
    return true;
}

/* The layers, in rnn_forward's private scope. x: (T, B, in) or
 * (B, T, in) [tdim 1], or unbatched (T, in); h0, c0: checked, or NULL.
 * *hn, *cn: the final states (c only for LSTM). */
static cg_tensor *run_layers(struct rnn *r, cg_ctx *ctx, cg_tensor *x, cg_tensor *h0,
                             cg_tensor *c0, bool batched, int tdim, int64_t B, cg_tensor **hn,
                             cg_tensor **cn)
{
    if (!batched) { /* (T, in) -> (T, 1, in); states (L, H) -> (L, 1, H) */
        x = cg_unsqueeze(x, 1);
        if (h0) h0 = cg_unsqueeze(h0, 1);
        if (c0) c0 = cg_unsqueeze(c0, 1);
    }
    cg_tensor *zeros = NULL;
    if (!h0 || (r->mode == CG_RNN_LSTM && !c0)) zeros = cg_tensor_zeros(ctx, CG_SHAPE(B, r->hidden));

    cg_tensor *hl[MAX_LAYERS], *cl[MAX_LAYERS];
    cg_tensor *y = x;
    for (int k = 0; k < r->layers && y; k++) {
        cg_tensor *h = h0 ? cg_squeeze(cg_slice(h0, 0, k, k + 1, 1), 0) : zeros;
        cg_tensor *c = NULL;
        if (r->mode == CG_RNN_LSTM) c = c0 ? cg_squeeze(cg_slice(c0, 0, k, k + 1, 1), 0) : zeros;
        if (!h || (r->mode == CG_RNN_LSTM && !c)) return NULL;
        y = layer_forward(r, k, y, tdim, h, c, &hl[k], &cl[k]);
        hl[k] = cg_unsqueeze(hl[k], 0);
        if (r->mode == CG_RNN_LSTM) cl[k] = cg_unsqueeze(cl[k], 0);
    }
    if (!y) return NULL;
    *hn = cg_cat(r->layers, hl, 0);
    if (r->mode == CG_RNN_LSTM) *cn = cg_cat(r->layers, cl, 0);
    if (!batched) {
        y = cg_squeeze(y, 1);
        *hn = cg_squeeze(*hn, 1);
        if (*cn) *cn = cg_squeeze(*cn, 1);
    }
    if (!*hn || (r->mode == CG_RNN_LSTM && !*cn)) return NULL;
    return y;
}

/* cg_module_forward_ex of RNN, LSTM and GRU (nn.h): args->state = {h0, c0},
 * args->state_out = {h_n, c_n}. */
static cg_tensor *rnn_forward(cg_module *m, cg_tensor *x, struct cg_forward_args *args)
{
    cg_ctx *ctx = cg_module_ctx(m);
    struct rnn *r = cg_module_priv(m);
    cg_tensor *h0 = args ? args->state[0] : NULL, *c0 = args ? args->state[1] : NULL;
    if (args && args->causal) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: takes no causal flag", mode_name(r->mode));
        return NULL;
    }
    char want[160];
    int nd = cg_tensor_ndim(x);
    if ((nd != 2 && nd != 3) || cg_tensor_dim(x, -1) != r->in) {
        snprintf(want, sizeof want, "%s with %lld features",
                 r->batch_first ? "(B, T, in) or (T, in)" : "(T, B, in) or (T, in)",
                 (long long)r->in);
        shape_error(ctx, r, "input", x, want);
        return NULL;
    }
    bool batched = nd == 3;
    int tdim = batched && r->batch_first ? 1 : 0;
    int64_t B = batched ? cg_tensor_dim(x, 1 - tdim) : 1;
    int64_t sshape[3] = {r->layers, B, r->hidden};
    if (!batched) sshape[1] = r->hidden;
    if (batched)
        snprintf(want, sizeof want, "(num_layers=%d, B=%lld, H=%lld)", r->layers,
                 (long long)B, (long long)r->hidden);
    else
        snprintf(want, sizeof want, "(num_layers=%d, H=%lld)", r->layers, (long long)r->hidden);
    if (h0 && !state_ok(h0, nd, sshape)) {
        shape_error(ctx, r, "h0", h0, want);
        return NULL;
    }
    if (c0 && r->mode != CG_RNN_LSTM) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: c0 is only for an LSTM", mode_name(r->mode));
        return NULL;
    }
    if (c0 && !state_ok(c0, nd, sshape)) {
        shape_error(ctx, r, "c0", c0, want);
        return NULL;
    }
    if (cg_tensor_dim(x, tdim) < 1) {
        shape_error(ctx, r, "input", x, "at least one time step long");
        return NULL;
    }
    int token = cg__compose_begin(ctx);
    cg_tensor *res[3] = {NULL, NULL, NULL}; /* y, h_n, c_n */
    res[0] = run_layers(r, ctx, x, h0, c0, batched, tdim, B, &res[1], &res[2]);
    /* A private scope frees the temporaries the graph does not hold; y,
     * h_n and c_n leave it together (the states die with it if y failed). */
    if (!res[0]) res[1] = res[2] = NULL;
    cg__compose_end_n(ctx, token, 3, res);
    cg_tensor *y = res[0], *st[2] = {res[1], res[2]};
    if (!y) return NULL;
    if (args) {
        args->state_out[0] = st[0];
        args->state_out[1] = st[1];
    }
    return y;
}

static void rnn_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i rnn_i[3] = {
    [CG_RNN_TANH] = {.type = "RNN", .forward_ex = rnn_forward, .free_priv = rnn_free_priv},
    [CG_RNN_LSTM] = {.type = "LSTM", .forward_ex = rnn_forward, .free_priv = rnn_free_priv},
    [CG_RNN_GRU] = {.type = "GRU", .forward_ex = rnn_forward, .free_priv = rnn_free_priv},
};

/* A persistent (rows, cols) or (rows) [cols == 0] tensor of U(-b, b) values,
 * row-major from the context's RNG (torch.nn.init.uniform_). */
static cg_tensor *uniform_param(cg_ctx *ctx, int64_t rows, int64_t cols, double b)
{
    cg_tensor *t = cols ? cg_tensor_uniform(ctx, CG_SHAPE(rows, cols), (float)-b, (float)b)
                        : cg_tensor_uniform(ctx, CG_SHAPE(rows), (float)-b, (float)b);
    return t ? cg_tensor_keep(t) : NULL;
}

cg_module *cg_recurrent_module(cg_ctx *ctx, enum cg_rnn_mode mode, int64_t input_size,
                         int64_t hidden_size, int num_layers, bool bias, bool batch_first)
{
    if (!ctx) return NULL;
    if (mode != CG_RNN_TANH && mode != CG_RNN_LSTM && mode != CG_RNN_GRU) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_recurrent_module: unknown mode %d", (int)mode);
        return NULL;
    }
    if (input_size < 1 || hidden_size < 1 || num_layers < 1 || num_layers > MAX_LAYERS) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_recurrent_module(%s): input_size (%lld) and hidden_size (%lld) must be >= 1, "
                  "num_layers (%d) in [1, %d]", mode_name(mode), (long long)input_size,
                  (long long)hidden_size, num_layers, MAX_LAYERS);
        return NULL;
    }
    struct rnn *r = calloc(1, sizeof *r);
    if (!r) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_recurrent_module: out of host memory");
        return NULL;
    }
    r->mode = mode;
    r->in = input_size;
    r->hidden = hidden_size;
    r->layers = num_layers;
    r->gates = mode == CG_RNN_LSTM ? 4 : mode == CG_RNN_GRU ? 3 : 1;
    r->bias = bias;
    r->batch_first = batch_first;
    cg_module *m = cg_module_create(ctx, &rnn_i[mode], r);
    if (!m) {
        free(r);
        return NULL;
    }
    /* torch.nn.RNNBase.reset_parameters: stdv = 1 / sqrt(hidden_size);
     * init.uniform_(w, -stdv, stdv) for every parameter in registration
     * order: weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0, ..._l1. */
    double stdv = 1.0 / sqrt((double)hidden_size);
    int64_t GH = r->gates * hidden_size;
    for (int k = 0; k < num_layers; k++) {
        char name[64];
        int64_t in_k = k == 0 ? input_size : hidden_size;
        snprintf(name, sizeof name, "weight_ih_l%d", k);
        r->w_ih[k] = uniform_param(ctx, GH, in_k, stdv);
        if (cg_module_add_parameter(m, name, r->w_ih[k]) != CG_OK) goto fail;
        snprintf(name, sizeof name, "weight_hh_l%d", k);
        r->w_hh[k] = uniform_param(ctx, GH, hidden_size, stdv);
        if (cg_module_add_parameter(m, name, r->w_hh[k]) != CG_OK) goto fail;
        if (!bias) continue;
        snprintf(name, sizeof name, "bias_ih_l%d", k);
        r->b_ih[k] = uniform_param(ctx, GH, 0, stdv);
        if (cg_module_add_parameter(m, name, r->b_ih[k]) != CG_OK) goto fail;
        snprintf(name, sizeof name, "bias_hh_l%d", k);
        r->b_hh[k] = uniform_param(ctx, GH, 0, stdv);
        if (cg_module_add_parameter(m, name, r->b_hh[k]) != CG_OK) goto fail;
    }
    return m;
fail:
    cg_module_free(m);
    return NULL;
}

cg_module *cg_rnn_module(cg_ctx *ctx, int64_t input_size, int64_t hidden_size, int num_layers,
                  bool batch_first)
{
    return cg_recurrent_module(ctx, CG_RNN_TANH, input_size, hidden_size, num_layers, true, batch_first);
}

cg_module *cg_lstm_module(cg_ctx *ctx, int64_t input_size, int64_t hidden_size, int num_layers,
                   bool batch_first)
{
    return cg_recurrent_module(ctx, CG_RNN_LSTM, input_size, hidden_size, num_layers, true, batch_first);
}

cg_module *cg_gru_module(cg_ctx *ctx, int64_t input_size, int64_t hidden_size, int num_layers,
                  bool batch_first)
{
    return cg_recurrent_module(ctx, CG_RNN_GRU, input_size, hidden_size, num_layers, true, batch_first);
}
