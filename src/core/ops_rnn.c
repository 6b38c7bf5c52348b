/*
 * src/core/ops_rnn.c — one recurrent layer over all its time steps
 * (torch.nn.RNN, LSTM, GRU; src/nn/rnn.c has the equations and the
 * module), as ops: cg__rnn_layer.
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
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/dispatch.h"
#include "core/ops_internal.h"

/* ---- the window op ------------------------------------------------------ */

static cg_status window_backward(struct cg_node *n, cg_tensor *y, cg_tensor *g)
{
    cg_tensor *base = n->inputs[0];
    cg_ctx *ctx = cg__ctx_of(base);
    if (!base->grad) {
        cg_tensor *z = cg__tensor_new_unowned(ctx, base->ndim, base->shape);
        if (!z) return ctx->status;
        struct cg_view v = cg__view_of(z);
        if (cg__be_fill(ctx, "rnn window backward", &v, 0.0f) != CG_OK) {
            cg__tensor_unref(z);
            return ctx->status;
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

#define SEQ "LSTM sequence" /* the op's name, in messages */

static inline struct cg_ptr at(const cg_tensor *t, int64_t off) { return cg__ptr_at(t, off); }

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
    if (st == CG_OK) st = cg__be_copy(ctx, SEQ, cg__ptr(dh), cg__ptr(gs), TS * N);
    if (st == CG_OK) st = cg__be_copy(ctx, SEQ, cg__ptr(dc), at(gs, (TS + T) * N), N);
    int cur = 0;
    for (int64_t t = T - 1; t >= 0 && st == CG_OK; t--) {
        st = cg__be_lstm_cell_backward(ctx, SEQ, at(dG, t * 4 * N), at(dc, (1 - cur) * N),
                                       at(dh, (t + 1) * N), at(dc, cur * N), at(save, t * 5 * N),
                                       at(S, (TS + t) * N), B, H);
        cur = 1 - cur;
        /* dh_{t-1} += dG_t W_hh */
        if (st == CG_OK && (t > 0 || want_h0))
            st = cg__be_gemm1(ctx, SEQ, 0, 0, B, H, 4 * H, 1.0f, at(dG, t * 4 * N), 4 * H,
                              cg__ptr(w), H, at(dh, t * N), H);
    }
    if (st == CG_OK) st = cg__accumulate_grad(xw, dG);
    if (st == CG_OK && cg__input_needs_grad(n, 1)) {
        /* dW_hh = sum_t dG_t^T h_{t-1}: h_0 .. h_{T-1} are S's first T*B rows */
        cg_tensor *dw = cg__tensor_new(ctx, 2, (int64_t[]){4 * H, H});
        st = dw ? cg__be_gemm1(ctx, SEQ, 1, 0, 4 * H, H, T * B, 0.0f, cg__ptr(dG), 4 * H,
                               cg__ptr(S), H, cg__ptr(dw), H)
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
    if (st == CG_OK) st = cg__be_copy(ctx, SEQ, cg__ptr(G), cg__ptr(xw), T * 4 * N);
    for (int64_t t = 0; t < T && st == CG_OK; t++) {
        /* G_t += h_{t-1} W_hh^T, then the cell: c_t, h_t into S */
        st = cg__be_gemm1(ctx, SEQ, 0, 1, B, 4 * H, H, 1.0f, at(S, t * N), H, cg__ptr(w), H,
                          at(G, t * 4 * N), 4 * H);
        if (st == CG_OK)
            st = cg__be_lstm_cell(ctx, SEQ, at(S, (TS + t + 1) * N), at(S, (t + 1) * N),
                                  at(save, t * 5 * N), at(G, t * 4 * N), at(S, (TS + t) * N), B,
                                  H);
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
static cg_tensor *layer_forward_seq(const struct cg_rnn_layer *r, cg_tensor *x, int tdim,
                                    cg_tensor *h, cg_tensor *c, cg_tensor **h_last,
                                    cg_tensor **c_last)
{
    const int64_t H = r->hidden, T = cg_tensor_dim(x, tdim), B = cg_tensor_dim(x, 1 - tdim);
    const int64_t N = B * H, TS = T + 1;
    /* time-major input projection: transposing x (in wide) is cheaper than
     * transposing xw (4H wide) */
    cg_tensor *xw = cg_matmul(tdim ? cg_transpose(x, 0, 1) : x, cg_transpose(r->w_ih, 0, 1));
    if (r->b_ih) xw = cg_add(xw, cg_add(r->b_ih, r->b_hh));
    cg_tensor *S = lstm_seq(cg_contiguous(xw), r->w_hh, h, c, T, B, H);
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

/* ops_internal.h says what it takes and gives. */
cg_tensor *cg__rnn_layer(const struct cg_rnn_layer *r, cg_tensor *x, int tdim, cg_tensor *h,
                         cg_tensor *c, cg_tensor **h_last, cg_tensor **c_last)
{
    cg_ctx *ctx = cg_tensor_ctx(x);
    if (r->mode == CG_RNN_LSTM && cg__be_has_lstm_cell(ctx))
        return layer_forward_seq(r, x, tdim, h, c, h_last, c_last);
    const int gates = r->mode == CG_RNN_LSTM ? 4 : r->mode == CG_RNN_GRU ? 3 : 1;
    const int64_t H = r->hidden, GH = gates * r->hidden;
    const int64_t T = cg_tensor_dim(x, tdim), B = cg_tensor_dim(x, 1 - tdim);

    /* Input projection of every step at once: (.., .., G*H). RNN and LSTM
     * add both biases here, once; GRU keeps b_hh for the hidden side, as
     * b_hn sits inside r_t * (...). */
    cg_tensor *xw = cg_matmul(x, cg_transpose(r->w_ih, 0, 1));
    if (r->b_ih)
        xw = cg_add(xw, r->mode == CG_RNN_GRU ? r->b_ih : cg_add(r->b_ih, r->b_hh));
    xw = cg_contiguous(xw);
    if (!xw) return NULL;
    /* step t's rows: (T, B, GH) -> t*B*GH + b*GH; (B, T, GH) -> t*GH + b*T*GH */
    const int64_t t_stride = tdim == 0 ? B * GH : GH, b_stride = tdim == 0 ? GH : T * GH;
    cg_tensor *whh_t = cg_transpose(r->w_hh, 0, 1); /* (H, G*H) */

    cg_tensor **hs = malloc((size_t)(T > 0 ? T : 1) * sizeof *hs);
    if (!hs) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory",
                  r->mode == CG_RNN_LSTM ? "LSTM" : r->mode == CG_RNN_GRU ? "GRU" : "RNN");
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
            if (r->b_ih) hw = cg_add(hw, r->b_hh);
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
