/*
 * clgrad/tensor.h — n-d float32 tensors on the context's device.
 *
 * A tensor is a strided view (shape, strides, offset, in elements) of a
 * reference-counted device buffer. Views (cg_reshape of a contiguous tensor,
 * cg_permute, cg_transpose, cg_slice: see ops.h, as they are differentiable)
 * share the buffer and cost no copy.
 *
 *     cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(2, 3), data);
 *     cg_tensor *xt = cg_transpose(x, 0, 1);             // (3, 2) view
 *     cg_tensor_print(xt, stdout);
 *
 * Ownership. A tensor created while a scope is open (cg_scope_begin) belongs
 * to that scope and is freed by cg_scope_end; a tensor created with no scope
 * open, or passed to cg_tensor_keep, is persistent and freed by
 * cg_tensor_free (or cg_ctx_free). Tensors are reference counted: a view
 * keeps its buffer alive and an autograd node keeps its inputs alive, so
 * freeing in any order is safe.
 */
#ifndef CLGRAD_TENSOR_H
#define CLGRAD_TENSOR_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "clgrad/context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_tensor cg_tensor;

/* CG_SHAPE(32, 10) expands to the two arguments `2, (int64_t[]){32, 10}`. */
#define CG_SHAPE(...)                                                         \
    (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),                \
        (const int64_t[]){__VA_ARGS__}

/* Creation. Shapes have 0..CG_MAX_DIMS dims; a dim may be 0 (empty). */
CG_API cg_tensor *cg_tensor_empty(cg_ctx *ctx, int ndim, const int64_t *shape);
CG_API cg_tensor *cg_tensor_zeros(cg_ctx *ctx, int ndim, const int64_t *shape);
CG_API cg_tensor *cg_tensor_full(cg_ctx *ctx, int ndim, const int64_t *shape, float value);
/* Copies numel floats from data (row-major). */
CG_API cg_tensor *cg_tensor_from_host(cg_ctx *ctx, int ndim, const int64_t *shape,
                                      const float *data);
/* Uniform in [lo, hi) / normal(mean, std) from the context's host RNG. */
CG_API cg_tensor *cg_tensor_uniform(cg_ctx *ctx, int ndim, const int64_t *shape,
                                    float lo, float hi);
CG_API cg_tensor *cg_tensor_normal(cg_ctx *ctx, int ndim, const int64_t *shape,
                                   float mean, float std);

/* Copies to / from host memory in row-major order (any strides). n must
 * equal numel. to_host waits for the device. */
CG_API cg_status cg_tensor_to_host(const cg_tensor *t, float *dst, int64_t n);
CG_API cg_status cg_tensor_set_data(cg_tensor *t, const float *src, int64_t n);
/* The value of a one-element tensor. */
CG_API cg_status cg_tensor_item(const cg_tensor *t, float *out);

/* Lifetime. */
CG_API void cg_tensor_free(cg_tensor *t);
/* Moves t out of its scope: it becomes persistent (and drops its autograd
 * history, which belongs to the scope). Returns t. */
CG_API cg_tensor *cg_tensor_keep(cg_tensor *t);

/* Shape. Negative dims count from the end. */
CG_API int cg_tensor_ndim(const cg_tensor *t);
CG_API int64_t cg_tensor_dim(const cg_tensor *t, int dim);
CG_API const int64_t *cg_tensor_shape(const cg_tensor *t);
CG_API const int64_t *cg_tensor_strides(const cg_tensor *t);
CG_API int64_t cg_tensor_numel(const cg_tensor *t);
CG_API bool cg_tensor_is_contiguous(const cg_tensor *t);
CG_API cg_dtype cg_tensor_dtype(const cg_tensor *t);
CG_API cg_ctx *cg_tensor_ctx(const cg_tensor *t);
/* "(32, 10) f32" into buf; returns buf. */
CG_API char *cg_tensor_describe(const cg_tensor *t, char *buf, size_t len);
/* Shape, strides and values (corners only for large tensors). */
CG_API cg_status cg_tensor_print(const cg_tensor *t, FILE *f);

/* The tensor's storage, for custom ops and tests. */
CG_API struct cg_view cg_tensor_view(const cg_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
