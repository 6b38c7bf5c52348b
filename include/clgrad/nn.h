/*
 * clgrad/nn.h — modules (Linear, activations, Sequential) and losses.
 *
 * A module is a small object with a forward function, named parameters
 * (persistent tensors that require grad) and named child modules, as
 * torch.nn.Module. Sequential names its children "0", "1", ... so that
 * parameters enumerate exactly as PyTorch's state_dict names them:
 * "0.weight", "0.bias", "2.weight", ... (activations take an index but have
 * no parameters). Losses are compositions of differentiable ops (ops.h), so
 * they run, forward and backward, on the context's backend.
 *
 * The PyTorch seed program, in C:
 *
 *     cg_module *model = cg_sequential_module(ctx, 5,
 *         cg_linear_module(ctx, 10, 64, true), cg_relu_module(ctx),
 *         cg_linear_module(ctx, 64, 64, true), cg_relu_module(ctx),
 *         cg_linear_module(ctx, 64, 1, true));
 *     cg_optim *opt = cg_adam(model, 1e-3f);                  // optim.h
 *     for (int epoch = 0; epoch < 10; epoch++) {
 *         cg_scope_begin(ctx);                                // owns the step
 *         cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(32, 10), xs);
 *         cg_tensor *y = cg_tensor_from_host(ctx, CG_SHAPE(32, 1), ys);
 *         cg_tensor *loss = cg_mse_loss(cg_module_forward(model, x), y,
 *                                       CG_REDUCTION_MEAN);
 *         cg_optim_zero_grad(opt);
 *         cg_backward(loss);
 *         cg_optim_step(opt);
 *         float l; cg_tensor_item(loss, &l);
 *         printf("Epoch %02d | Loss: %.4f\n", epoch + 1, l);
 *         cg_scope_end(ctx);                                  // frees x..loss
 *     }
 *     cg_optim_free(opt);
 *     cg_module_free(model);
 *
 * Names. A bare name is an op on tensors (cg_conv2d, cg_dropout, cg_relu in
 * ops.h); every function that constructs a layer returns a cg_module and
 * ends in _module (cg_linear_module, cg_conv2d_module, cg_sequential_module);
 * functions on a module start with cg_module_. Every module runs through
 * cg_module_forward(m, x), or cg_module_forward_ex(m, x, &args) for the
 * keyword arguments some take (an RNN's initial and final states,
 * attention's causal mask).
 *
 * Ownership. A constructor returns a module the caller owns (free it with
 * cg_module_free); cg_sequential_module and cg_module_add_child take ownership of
 * their children, cg_module_add_parameter of its tensor. Every constructor
 * returns NULL on failure, with the message in cg_last_error(ctx), and a
 * constructor given a NULL child frees the others and returns NULL, so
 * nested calls need one check at the end.
 * Parameters are persistent tensors of the module's context: free modules
 * (and optimizers) before the context.
 *
 * Writing a module: fill a struct cg_module_i and create it with
 * cg_module_create; keep your state in `priv`.
 *
 *     static cg_tensor *scale_forward(cg_module *m, cg_tensor *x)
 *     { return cg_mul(x, cg_module_parameter(m, "scale")); }
 *     static const struct cg_module_i scale_i = {
 *         .type = "Scale", .forward = scale_forward };
 *     cg_module *m = cg_module_create(ctx, &scale_i, NULL);
 *     cg_tensor *s = cg_tensor_full(ctx, CG_SHAPE(1), 1.0f);  // no scope open
 *     cg_tensor_set_requires_grad(s, true);
 *     cg_module_add_parameter(m, "scale", s);
 */
#ifndef CLGRAD_NN_H
#define CLGRAD_NN_H

#include <stdbool.h>
#include <stdint.h>

#include "clgrad/ops.h"
#include "clgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_module cg_module;

/* The extra arguments some modules take, as keyword arguments of their
 * PyTorch forward: one struct, so every module runs through
 * cg_module_forward_ex (and cg_module_forward, which passes none). Zero
 * (or NULL args) means the default. */
struct cg_forward_args {
    /* Recurrent layers: the initial states, h0 = state[0] and, for LSTM,
     * c0 = state[1]: (L, B, H), unbatched (L, H); NULL = zeros. */
    cg_tensor *state[2];
    /* Recurrent layers, out: the final states of every layer, h0's shape
     * (state_out[1]: LSTM's c). Left NULL for modules without state. */
    cg_tensor *state_out[2];
    /* MultiheadAttention: position t attends to positions <= t only
     * (torch's is_causal / generate_square_subsequent_mask). */
    bool causal;
};

/* The longest dotted parameter name, e.g. "encoder.layers.11.0.weight". */
#define CG_NAME_MAX 128

/* A module's behaviour. */
struct cg_module_i {
    const char *type;                                   /* "Linear", ...   */
    /* x: the module's input; returns a tensor in the current scope or NULL. */
    cg_tensor *(*forward)(cg_module *m, cg_tensor *x);
    /* optional: the forward with extra arguments (struct cg_forward_args);
     * a module that has one may leave forward NULL (it gets args = NULL). */
    cg_tensor *(*forward_ex)(cg_module *m, cg_tensor *x, struct cg_forward_args *args);
    /* optional: frees priv (parameters and children are freed by the core). */
    void (*free_priv)(cg_module *m);
};

/* A parameter and its dotted name ("0.weight"). */
struct cg_named_tensor {
    char name[CG_NAME_MAX];
    cg_tensor *tensor;
};

/* ---- Module base ---------------------------------------------------------- */
/* A module with no parameters or children yet; training mode on. */
CG_API cg_module *cg_module_create(cg_ctx *ctx, const struct cg_module_i *iface,
                                   void *priv);
/* Frees m, its parameters and (recursively) its children. NULL is fine. */
CG_API void cg_module_free(cg_module *m);
/* Registers t as parameter `name` (no '.'): m takes ownership of t, which
 * must be persistent (made with no scope open, or cg_tensor_keep'd) and is
 * marked requires_grad. On failure t is freed too. */
CG_API cg_status cg_module_add_parameter(cg_module *m, const char *name, cg_tensor *t);
/* Registers child as submodule `name`; m takes ownership (freed on failure). */
CG_API cg_status cg_module_add_child(cg_module *m, const char *name, cg_module *child);

/* Registers t as buffer `name` (no '.'): persistent state that is not a
 * parameter (BatchNorm's running_mean, running_var, num_batches_tracked),
 * as torch.nn.Module.register_buffer. m takes ownership of t, which must be
 * persistent; it is not marked requires_grad. On failure t is freed too. */
CG_API cg_status cg_module_add_buffer(cg_module *m, const char *name, cg_tensor *t);
/* All buffers of m and its descendants with dotted names, in the order of
 * cg_module_parameters ("1.running_mean", ...); returns the total number. */
CG_API int cg_module_buffers(const cg_module *m, struct cg_named_tensor *out, int max);
/* The buffer with the dotted name ("1.running_var"), or NULL. */
CG_API cg_tensor *cg_module_buffer(const cg_module *m, const char *name);

/* Runs the module: y = m(x). x NULL gives NULL (no new message). */
CG_API cg_tensor *cg_module_forward(cg_module *m, cg_tensor *x);
/* y = m(x, **args): the same with extra arguments (args NULL: none). A
 * module that takes none fails with CG_STATUS_INVALID_ARGUMENT when args
 * asks for anything; args->state_out is filled on success. */
CG_API cg_tensor *cg_module_forward_ex(cg_module *m, cg_tensor *x, struct cg_forward_args *args);

/* All parameters of m and its descendants, depth-first in registration
 * order with dotted names, as torch.nn.Module.named_parameters(): fills up
 * to max entries of out (out may be NULL when max is 0) and returns the
 * total number. */
CG_API int cg_module_parameters(const cg_module *m, struct cg_named_tensor *out, int max);
/* The parameter with the dotted name ("2.bias"), or NULL. */
CG_API cg_tensor *cg_module_parameter(const cg_module *m, const char *name);
/* The number of scalar parameters (sum of numel). */
CG_API int64_t cg_module_numel(const cg_module *m);

/* Training / evaluation mode for m and its descendants (torch's
 * module.train() / module.eval()). Modules start in training mode. */
CG_API void cg_module_train(cg_module *m);
CG_API void cg_module_eval(cg_module *m);
CG_API bool cg_module_is_training(const cg_module *m);

CG_API const char *cg_module_type(const cg_module *m);
CG_API cg_ctx *cg_module_ctx(const cg_module *m);
CG_API void *cg_module_priv(const cg_module *m);
CG_API int cg_module_num_children(const cg_module *m);
CG_API cg_module *cg_module_child(const cg_module *m, int i);
CG_API const char *cg_module_child_name(const cg_module *m, int i);

/* ---- Layers --------------------------------------------------------------- */
/* torch.nn.Linear: y = x W^T + b.
 *   x: (..., in)  ->  y: (..., out);  weight W: (out, in), bias b: (out).
 * Initialised as torch.nn.Linear.reset_parameters: W ~ U(-1/sqrt(in),
 * 1/sqrt(in)) (kaiming_uniform_ with a = sqrt(5)), then b ~ the same, drawn
 * in row-major order from the context's host RNG, so every backend starts
 * from the same weights. */
CG_API cg_module *cg_linear_module(cg_ctx *ctx, int64_t in, int64_t out, bool bias);

/* Activations (no parameters), any input shape. */
CG_API cg_module *cg_relu_module(cg_ctx *ctx);
CG_API cg_module *cg_sigmoid_module(cg_ctx *ctx);
CG_API cg_module *cg_tanh_module(cg_ctx *ctx);
CG_API cg_module *cg_gelu_module(cg_ctx *ctx);          /* exact (erf) GELU */
/* torch.nn.Softmax(dim): normalises along axis (negative counts from the end). */
CG_API cg_module *cg_softmax_module(cg_ctx *ctx, int axis);

/* torch.nn.Sequential of n modules (cg_module *), named "0", "1", ... Takes
 * ownership of them all, even on failure. */
CG_API cg_module *cg_sequential_module(cg_ctx *ctx, int n, ...);
CG_API cg_module *cg_sequential_module_array(cg_ctx *ctx, int n, cg_module *const *mods);
/* Appends m as the next child ("n"); takes ownership. */
CG_API cg_status cg_sequential_append(cg_module *seq, cg_module *m);

/* ---- Losses ----------------------------------------------------------------
 * Each returns a 0-d tensor (MEAN, SUM) or the per-element losses (NONE) in
 * the current scope, differentiable w.r.t. the prediction / logits. */
enum cg_reduction {
    CG_REDUCTION_MEAN,
    CG_REDUCTION_SUM,
    CG_REDUCTION_NONE,
};

/* torch.nn.MSELoss: (pred - target)^2.  pred, target: the same shape. */
CG_API cg_tensor *cg_mse_loss(cg_tensor *pred, cg_tensor *target,
                              enum cg_reduction reduction);
/* torch.nn.CrossEntropyLoss with class-index targets:
 *   logits: (N, C), target: (N) of integers in [0, C) (float32).
 *   loss_i = (1 - eps) * (-logp[i, y_i]) + eps * mean_c(-logp[i, c]),
 *   logp = log_softmax(logits) (stable for any logits), eps = label_smoothing
 *   in [0, 1]. NONE gives (N). */
CG_API cg_tensor *cg_cross_entropy_loss(cg_tensor *logits, cg_tensor *target,
                                        enum cg_reduction reduction,
                                        float label_smoothing);
/* The rest of torch.nn.CrossEntropyLoss's options (class-index targets):
 *   logits (N, C) or (N, C, d1, ..., dk), target (N) or (N, d1, ..., dk);
 *   weight: (C) class weights or NULL; ignore_index (when use_ignore_index):
 *   targets equal to it add nothing, to the loss or to the mean's divisor.
 * As PyTorch documents it, with q = (1 - eps) one_hot(y) + eps / C:
 *   l_n = -sum_c w_c q_{n,c} logp_{n,c}   (w_c = 1 without weights)
 *   MEAN = sum_n l_n / sum_n w_{y_n} over targets that are not ignored (NaN
 *   when every target is ignored, as PyTorch); SUM = sum_n l_n; NONE gives
 *   target's shape with 0 at ignored positions. */
struct cg_ce_options {
    enum cg_reduction reduction;   /* MEAN                                   */
    float label_smoothing;         /* eps in [0, 1], 0                       */
    cg_tensor *weight;             /* (C) or NULL                            */
    bool use_ignore_index;         /* false (PyTorch's -100 is opt-in here:
                                      it costs a mask and a device-side
                                      index check)                          */
    int64_t ignore_index;          /* -100                                   */
};
CG_API struct cg_ce_options cg_ce_options_default(void);
CG_API cg_tensor *cg_cross_entropy_loss_ex(cg_tensor *logits, cg_tensor *target,
                                           const struct cg_ce_options *opts);
/* torch.nn.BCEWithLogitsLoss: logits, target: the same shape, target in
 * [0, 1]. loss = max(x, 0) - x * y + log(1 + exp(-|x|)), stable for any x. */
CG_API cg_tensor *cg_bce_with_logits_loss(cg_tensor *logits, cg_tensor *target,
                                          enum cg_reduction reduction);

/* ---- Models from a spec string (src/nn/spec.c) ------------------------------
 * torch.nn.Flatten(): (N, d1, d2, ...) -> (N, d1 * d2 * ...). */
CG_API cg_module *cg_flatten_module(cg_ctx *ctx);
/* A Sequential built from a spec such as
 *     "flatten, linear 256 relu, linear 128 relu, linear 10"
 * or, for images (C, H, W),
 *     "conv 32 3 pad 1 relu, maxpool 2, conv 64 3 pad 1 relu, maxpool 2,
 *      flatten, linear 128 relu, linear 10"
 * for samples of shape in_shape (no batch dim). Layers are separated by
 * commas; each is a kind with its arguments, optionally followed by
 * activations (relu, sigmoid, tanh, gelu, softmax). Kinds:
 *     linear OUT                              (flat samples)
 *     conv OUT K [stride S] [pad P] [dilation D] [groups G] [nobias]
 *     maxpool K [stride S] [pad P] [dilation D]   (stride defaults to K)
 *     avgpool K [stride S] [pad P]
 *     gap          global average pooling, (C, H, W) -> (C)
 *     batchnorm    BatchNorm2d over the current channels
 *     dropout P
 *     flatten, and the activations alone.
 * Shapes are inferred through every layer. On success the output sample
 * shape is stored in out_ndim/out_shape (either may be NULL). On failure
 * returns NULL; the message names the layer and its column in the spec. */
CG_API cg_module *cg_model_from_spec(cg_ctx *ctx, const char *spec, int in_ndim,
                                     const int64_t *in_shape, int *out_ndim,
                                     int64_t *out_shape);

/* ---- Sequence models (src/nn/embedding.c, rnn.c, layernorm.c, attention.c)
 * PyTorch's semantics, default inits and parameter names, so weights map 1:1
 * by name onto torch.nn.Embedding / RNN / LSTM / GRU / LayerNorm /
 * MultiheadAttention / TransformerEncoderLayer state_dicts. Index tensors
 * (token ids) are float32 tensors holding exact integers, as in ops.h.
 *
 *     cg_module *emb = cg_embedding_module(ctx, 65, 32);
 *     cg_module *lstm = cg_lstm_module(ctx, 32, 128, 2, true);       // batch_first
 *     cg_tensor *x = cg_module_forward(emb, ids);              // (B, T, 32)
 *     struct cg_forward_args st = {0};                        // h0 = c0 = 0
 *     cg_tensor *y = cg_module_forward_ex(lstm, x, &st);      // (B, T, 128)
 *     // st.state_out[0], st.state_out[1]: hn, cn (L, B, 128)
 */

/* torch.nn.Embedding(num, dim): weight (num, dim) ~ N(0, 1) (drawn from the
 * context's RNG, row-major). idx: any shape (...) of integers in [0, num)
 * -> (..., dim). */
CG_API cg_module *cg_embedding_module(cg_ctx *ctx, int64_t num_embeddings, int64_t dim);

/* Learned positional embeddings: weight (max_len, dim) ~ N(0, 1), as an
 * nn.Embedding over positions. x: (B, T, dim) or (T, dim), T <= max_len
 * -> x + weight[0:T] (broadcast over B). */
CG_API cg_module *cg_positional_embedding_module(cg_ctx *ctx, int64_t max_len, int64_t dim);

/* torch.nn.RNN (tanh), LSTM and GRU. Per layer k (0-based):
 *   weight_ih_l{k}: (G*H, in_k)  in_0 = input_size, in_k = H after,
 *   weight_hh_l{k}: (G*H, H), bias_ih_l{k}, bias_hh_l{k}: (G*H),
 * G = 1 (RNN), 4 (LSTM: gates i, f, g, o), 3 (GRU: r, z, n), every one
 * ~ U(-1/sqrt(H), 1/sqrt(H)) in that order, layer by layer (PyTorch's
 * RNNBase.reset_parameters). The equations are those of the torch.nn.RNN,
 * LSTM and GRU docs (quoted in src/nn/rnn.c). PyTorch's inter-layer dropout
 * and proj_size are not provided (as with their defaults, 0). */
enum cg_rnn_mode {
    CG_RNN_TANH,
    CG_RNN_LSTM,
    CG_RNN_GRU,
};
CG_API cg_module *cg_recurrent_module(cg_ctx *ctx, enum cg_rnn_mode mode, int64_t input_size,
                                int64_t hidden_size, int num_layers, bool bias,
                                bool batch_first);
/* Shorthands with bias = true. */
CG_API cg_module *cg_rnn_module(cg_ctx *ctx, int64_t input_size, int64_t hidden_size,
                         int num_layers, bool batch_first);
CG_API cg_module *cg_lstm_module(cg_ctx *ctx, int64_t input_size, int64_t hidden_size,
                          int num_layers, bool batch_first);
CG_API cg_module *cg_gru_module(cg_ctx *ctx, int64_t input_size, int64_t hidden_size,
                         int num_layers, bool batch_first);
/* cg_module_forward_ex(m, x, &args) runs the recurrence over all time
 * steps (full backpropagation through time when the result is
 * differentiated):
 *   x:  (T, B, in), or (B, T, in) when batch_first, or unbatched (T, in)
 *   args.state[0] = h0: (L, B, H) (unbatched: (L, H)), NULL = zeros
 *   args.state[1] = c0: the same shape, LSTM only (must be NULL otherwise)
 * Returns the last layer's outputs h_t for every t: (T, B, H) / (B, T, H) /
 * (T, H); args.state_out[0] (and [1] for LSTM) receive the final states of
 * every layer, h0's shape. cg_module_forward(m, x) starts from zeros. */

/* torch.nn.LayerNorm(normalized_shape, eps=1e-5): normalises over the last
 * ndim dims of x (which must equal shape), biased variance, then y * weight +
 * bias; weight = 1, bias = 0 (elementwise_affine = true, both of that
 * shape). x: (..., *shape) -> the same shape. */
CG_API cg_module *cg_layernorm_module(cg_ctx *ctx, int ndim, const int64_t *shape);

/* torch.nn.MultiheadAttention(E, num_heads, dropout, bias, batch_first=True)
 * used as self-attention (query = key = value = x):
 *   in_proj_weight (3E, E) xavier_uniform_, in_proj_bias (3E) zeros,
 *   out_proj.weight (E, E) Linear's init, out_proj.bias (E) zeros.
 * dropout applies to the attention weights in training mode. */
CG_API cg_module *cg_multihead_attention_module(cg_ctx *ctx, int64_t embed_dim, int64_t num_heads,
                                         float dropout, bool bias);
/* x: (B, T, E) -> (B, T, E); with cg_module_forward_ex, args.causal: position
 * t attends to positions <= t only (torch's is_causal /
 * generate_square_subsequent_mask). */

/* torch.nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
 * activation="gelu", batch_first=True, norm_first=True) (pre-norm):
 *   x = x + dropout1(self_attn(norm1(x)))
 *   x = x + dropout2(linear2(dropout(gelu(linear1(norm2(x))))))
 * Children: self_attn, linear1, linear2, norm1, norm2 (PyTorch's names).
 * causal masks the self-attention. x: (B, T, d_model) -> the same shape. */
CG_API cg_module *cg_transformer_block_module(cg_ctx *ctx, int64_t d_model, int64_t nhead,
                                       int64_t dim_feedforward, float dropout, bool causal);

/* ---- Convolutional networks (src/nn/conv.c, pool.c, norm.c, dropout.c; the
 * conv and pool ops in src/core/ops_conv.c, ops_pool.c) ------------------------
 * NCHW layout throughout, with PyTorch's semantics, defaults and output
 * sizes: for a window of size k, stride s, padding p, dilation d,
 *     out = floor((in + 2 p - d (k - 1) - 1) / s) + 1     (must be >= 1).
 * Convolution and pooling run on the backend's im2col / col2im / pool2d
 * primitives (backend.h); a backend without them gives CG_STATUS_UNSUPPORTED.
 *
 *     cg_module *net = cg_sequential_module(ctx, 6,
 *         cg_conv2d_module(ctx, 1, 32, 3, 3, &(struct cg_conv2d_opts){
 *                          .padding = {1, 1}}),
 *         cg_relu_module(ctx), cg_max_pool2d_module(ctx, 2, 0, 0, 1),
 *         cg_flatten_module(ctx), cg_dropout_module(ctx, 0.25f),
 *         cg_linear_module(ctx, 32 * 14 * 14, 10, true));
 *     cg_tensor *logits = cg_module_forward(net, x);     // x: (N, 1, 28, 28)
 */

/* Convolution options; zero-initialised fields take PyTorch's defaults
 * (stride 1, padding 0, dilation 1, groups 1, with bias). [0] is the
 * height, [1] the width. */
struct cg_conv2d_opts {
    int64_t stride[2];
    int64_t padding[2];
    int64_t dilation[2];
    int64_t groups;
    bool no_bias;            /* module only: no bias parameter */
};

/* torch.nn.functional.conv2d:
 *   x: (N, C, H, W), w: (O, C / groups, KH, KW), b: (O) or NULL
 *   -> (N, O, OH, OW); channels split into `groups` independent groups
 *   (C and O divisible by groups). Differentiable w.r.t. x, w and b.
 * Square stride, padding and dilation; cg_conv2d_ex takes them per axis
 * (its no_bias is ignored: pass b NULL). */
CG_API cg_tensor *cg_conv2d(cg_tensor *x, cg_tensor *w, cg_tensor *b, int64_t stride,
                            int64_t padding, int64_t dilation, int64_t groups);
CG_API cg_tensor *cg_conv2d_ex(cg_tensor *x, cg_tensor *w, cg_tensor *b,
                               const struct cg_conv2d_opts *opts);
/* torch.nn.Conv2d(in_c, out_c, (kh, kw), ...); opts NULL: defaults.
 * Parameters "weight" (out_c, in_c / groups, kh, kw) and "bias" (out_c),
 * initialised as Conv2d.reset_parameters: both U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)), fan_in = in_c / groups * kh * kw, weight first, drawn
 * row-major from the context's RNG. */
CG_API cg_module *cg_conv2d_module(cg_ctx *ctx, int64_t in_c, int64_t out_c, int64_t kh,
                                   int64_t kw, const struct cg_conv2d_opts *opts);

/* torch.nn.functional.max_pool2d / avg_pool2d with square windows:
 *   x: (N, C, H, W) -> (N, C, OH, OW).
 * stride 0 means stride = kernel (PyTorch's default); padding at most
 * kernel / 2. Max ignores padding and sends its gradient to the first
 * maximum of each window; avg divides by kernel^2, padding included
 * (count_include_pad=True). ceil_mode is not supported (always floor). */
CG_API cg_tensor *cg_max_pool2d(cg_tensor *x, int64_t kernel, int64_t stride, int64_t padding,
                                int64_t dilation);
CG_API cg_tensor *cg_avg_pool2d(cg_tensor *x, int64_t kernel, int64_t stride, int64_t padding);
/* Global average pooling: x (N, C, H, W) -> (N, C), the mean of each plane
 * (torch: x.mean((2, 3)), or AdaptiveAvgPool2d(1) then flatten). */
CG_API cg_tensor *cg_global_avg_pool2d(cg_tensor *x);
CG_API cg_module *cg_max_pool2d_module(cg_ctx *ctx, int64_t kernel, int64_t stride,
                                       int64_t padding, int64_t dilation);
CG_API cg_module *cg_avg_pool2d_module(cg_ctx *ctx, int64_t kernel, int64_t stride,
                                       int64_t padding);
CG_API cg_module *cg_global_avg_pool2d_module(cg_ctx *ctx);

/* torch.nn.functional.batch_norm over the channels of x (N, C, H, W);
 * running_mean, running_var: (C); weight, bias: (C) or NULL.
 * training: normalise with the batch's mean and biased variance over
 *   (N, H, W), and (when running_mean / running_var are given) update them
 *   in place: r = (1 - momentum) r + momentum * s, with the batch variance
 *   taken unbiased (n / (n - 1)) for running_var. Needs N * H * W > 1.
 * otherwise: normalise with running_mean and running_var.
 * y = (x - mean) / sqrt(var + eps) * weight + bias. Differentiable w.r.t.
 * x, weight and bias. */
CG_API cg_tensor *cg_batch_norm2d(cg_tensor *x, cg_tensor *running_mean, cg_tensor *running_var,
                                  cg_tensor *weight, cg_tensor *bias, bool training,
                                  float momentum, float eps);
/* torch.nn.BatchNorm2d(num_features, eps, momentum) with affine=True:
 * parameters "weight" (ones) and "bias" (zeros); buffers "running_mean"
 * (zeros), "running_var" (ones) and "num_batches_tracked" (a 0-d count).
 * Training mode uses batch statistics and updates the buffers; eval mode
 * uses the running statistics. eps <= 0 or momentum <= 0 take PyTorch's
 * defaults, 1e-5 and 0.1. */
CG_API cg_module *cg_batch_norm2d_module(cg_ctx *ctx, int64_t num_features, float eps,
                                         float momentum);

/* torch.nn.functional.dropout: in training, each element is kept with
 * probability 1 - p and scaled by 1 / (1 - p) (p = 1 zeroes everything);
 * the mask comes from the context's host RNG in row-major order, so every
 * backend drops the same elements for the same seed. Not training: x
 * itself. x: any shape. p in [0, 1]. */
CG_API cg_tensor *cg_dropout(cg_tensor *x, float p, bool training);
/* torch.nn.Dropout(p): cg_dropout in the module's training mode. */
CG_API cg_module *cg_dropout_module(cg_ctx *ctx, float p);

#ifdef __cplusplus
}
#endif
#endif
