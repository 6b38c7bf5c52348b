/*
 * src/nn/pool.c — torch.nn.MaxPool2d, AvgPool2d and a global average pool
 * as modules over the pooling ops (src/core/ops_pool.c).
 */
#include <inttypes.h>
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"

/* ---- modules ---------------------------------------------------------- */

struct pool_module {
    enum cg_pool_kind kind;
    int64_t kernel, stride, padding, dilation;
};

static cg_tensor *pool_module_forward(cg_module *m, cg_tensor *x)
{
    const struct pool_module *p = cg_module_priv(m);
    return p->kind == CG_POOL_MAX ? cg_max_pool2d(x, p->kernel, p->stride, p->padding, p->dilation)
                                  : cg_avg_pool2d(x, p->kernel, p->stride, p->padding);
}

static void pool_module_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i max_pool_i = {
    .type = "MaxPool2d", .forward = pool_module_forward, .free_priv = pool_module_free_priv};
static const struct cg_module_i avg_pool_i = {
    .type = "AvgPool2d", .forward = pool_module_forward, .free_priv = pool_module_free_priv};

static cg_module *pool_module(cg_ctx *ctx, enum cg_pool_kind kind, int64_t kernel,
                              int64_t stride, int64_t padding, int64_t dilation)
{
    if (!ctx) return NULL;
    const char *what = kind == CG_POOL_MAX ? "cg_max_pool2d_module" : "cg_avg_pool2d_module";
    if (kernel < 1 || stride < 0 || dilation < 1 || padding < 0 || padding > kernel / 2) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "%s: kernel %" PRId64 " and dilation %" PRId64 " must be >= 1, stride %" PRId64
                  " >= 0 (0: the kernel size), padding %" PRId64 " in [0, kernel / 2]",
                  what, kernel, dilation, stride, padding);
        return NULL;
    }
    struct pool_module *p = malloc(sizeof *p);
    if (!p) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", what);
        return NULL;
    }
    *p = (struct pool_module){kind, kernel, stride ? stride : kernel, padding, dilation};
    cg_module *m = cg_module_create(ctx, kind == CG_POOL_MAX ? &max_pool_i : &avg_pool_i, p);
    if (!m) free(p);
    return m;
}

CG_API cg_module *cg_max_pool2d_module(cg_ctx *ctx, int64_t kernel, int64_t stride,
                                       int64_t padding, int64_t dilation)
{
    return pool_module(ctx, CG_POOL_MAX, kernel, stride, padding, dilation);
}

CG_API cg_module *cg_avg_pool2d_module(cg_ctx *ctx, int64_t kernel, int64_t stride,
                                       int64_t padding)
{
    return pool_module(ctx, CG_POOL_AVG, kernel, stride, padding, 1);
}

static cg_tensor *gap_forward(cg_module *m, cg_tensor *x)
{
    (void)m;
    return cg_global_avg_pool2d(x);
}

static const struct cg_module_i gap_i = {.type = "GlobalAvgPool2d", .forward = gap_forward};

CG_API cg_module *cg_global_avg_pool2d_module(cg_ctx *ctx)
{
    return cg_module_create(ctx, &gap_i, NULL);
}
