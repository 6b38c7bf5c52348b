/*
 * src/nn/activation.c — activation modules (torch.nn.ReLU, Sigmoid, Tanh,
 * GELU, Softmax): no parameters, any input shape, the output has the
 * input's shape. The math and its backward live in the ops (ops.h).
 */
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/internal.h"

static cg_tensor *relu_forward(cg_module *m, cg_tensor *x) { return cg_relu(x); }
static cg_tensor *sigmoid_forward(cg_module *m, cg_tensor *x) { return cg_sigmoid(x); }
static cg_tensor *tanh_forward(cg_module *m, cg_tensor *x) { return cg_tanh(x); }
static cg_tensor *gelu_forward(cg_module *m, cg_tensor *x) { return cg_gelu(x); }

static const struct cg_module_i relu_i = {.type = "ReLU", .forward = relu_forward};
static const struct cg_module_i sigmoid_i = {.type = "Sigmoid", .forward = sigmoid_forward};
static const struct cg_module_i tanh_i = {.type = "Tanh", .forward = tanh_forward};
static const struct cg_module_i gelu_i = {.type = "GELU", .forward = gelu_forward};

cg_module *cg_relu_module(cg_ctx *ctx) { return cg_module_create(ctx, &relu_i, NULL); }
cg_module *cg_sigmoid_module(cg_ctx *ctx) { return cg_module_create(ctx, &sigmoid_i, NULL); }
cg_module *cg_tanh_module(cg_ctx *ctx) { return cg_module_create(ctx, &tanh_i, NULL); }
cg_module *cg_gelu_module(cg_ctx *ctx) { return cg_module_create(ctx, &gelu_i, NULL); }

/* Softmax keeps its axis; the op checks it against the input's ndim. */
struct softmax {
    int axis;
};

static cg_tensor *softmax_forward(cg_module *m, cg_tensor *x)
{
    const struct softmax *s = cg_module_priv(m);
    return cg_softmax(x, s->axis);
}

static void softmax_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i softmax_i = {
    .type = "Softmax",
    .forward = softmax_forward,
    .free_priv = softmax_free_priv,
};

cg_module *cg_softmax_module(cg_ctx *ctx, int axis)
{
    if (!ctx) return NULL;
    struct softmax *s = malloc(sizeof *s);
    if (!s) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_softmax_module: out of host memory");
        return NULL;
    }
    s->axis = axis;
    cg_module *m = cg_module_create(ctx, &softmax_i, s);
    if (!m) free(s);
    return m;
}
