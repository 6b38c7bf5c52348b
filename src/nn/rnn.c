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
 * The layer op itself (the projections, the steps, the fused LSTM
 * sequence) is cg__rnn_layer, src/core/ops_rnn.c; this file is the module:
 * parameters, initial states, layers stacked.
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
        struct cg_rnn_layer l = {.mode = r->mode, .hidden = r->hidden, .w_ih = r->w_ih[k],
                                 .w_hh = r->w_hh[k], .b_ih = r->bias ? r->b_ih[k] : NULL,
                                 .b_hh = r->bias ? r->b_hh[k] : NULL};
        y = cg__rnn_layer(&l, y, tdim, h, c, &hl[k], &cl[k]);
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
