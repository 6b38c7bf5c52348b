/*
 * src/core/internal.h — the structures behind the public handles, shared by
 * the files of libclgrad (never installed).
 */
#ifndef CLGRAD_CORE_INTERNAL_H
#define CLGRAD_CORE_INTERNAL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/backend.h"
#include "clgrad/context.h"
#include "clgrad/tensor.h"

#define CG_ERR_LEN 2048
#define CG_NODE_MAX_INPUTS 4
#define CG_NODE_MAX_SAVED 4

/* Internal invariant check: a failure is a bug in clgrad, never user error. */
#define CG_ASSERT(x)                                                          \
    do {                                                                      \
        if (!(x)) cg__assert_fail(#x, __FILE__, __LINE__);                    \
    } while (0)
_Noreturn void cg__assert_fail(const char *expr, const char *file, int line);

/* A device buffer shared by a tensor and its views. */
struct cg_storage {
    cg_ctx *ctx;
    struct cg_buffer *buf;
    size_t bytes;
    int refs;
    /* What the last whole-storage upload from the host held, so that index
     * ops can check labels and token ids without reading them back. Valid
     * until the device writes the storage (cg__storage_written). */
    bool host_range_known;
    bool host_all_integral;
    float host_min, host_max;
};

/* Forget what the host knew about st's values: call before any in-place
 * device write into an existing storage. */
static inline void cg__storage_written(struct cg_storage *st) { st->host_range_known = false; }

struct cg_node;
/* Computes the gradients of node->inputs from grad_out (the gradient of
 * out) and accumulates them with cg__accumulate_grad. Runs with grad
 * recording off; may create scoped tensors. */
typedef cg_status (*cg_backward_fn)(struct cg_node *node, cg_tensor *out,
                                    cg_tensor *grad_out);

/* The autograd record of the op that produced a tensor. Holds a reference
 * to each input and saved tensor. */
struct cg_node {
    cg_ctx *ctx;                            /* whose node cache it returns to */
    const char *name;                       /* op name, for messages     */
    cg_backward_fn backward;
    int n_inputs;
    cg_tensor *inputs[CG_NODE_MAX_INPUTS];
    cg_tensor *saved[CG_NODE_MAX_SAVED];    /* extra tensors backward needs */
    float f[4];                             /* scalar parameters         */
    int64_t i[2 * CG_MAX_DIMS];             /* integer parameters        */
};

struct cg_tensor {
    struct cg_storage *st;
    int64_t offset;                    /* elements                        */
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t strides[CG_MAX_DIMS];      /* elements                        */
    cg_dtype dtype;
    int refs;                          /* owners: scope/user, nodes       */
    int64_t scope_slot;                /* index in ctx->scoped, or -1     */
    int64_t persistent_slot;           /* index in ctx->kept, or -1       */
    bool requires_grad;
    cg_tensor *grad;                   /* owned; same shape, contiguous   */
    struct cg_node *node;              /* NULL for leaves                 */
    uint64_t visit;                    /* cg_backward's mark (ctx->visit_epoch) */
};

/* Free lists of the small structs every op makes and drops (lifetime.c). */
enum cg_cache_kind { CG_CACHE_TENSOR, CG_CACHE_STORAGE, CG_CACHE_NODE, CG_CACHE_COUNT };

struct cg_ctx {
    const struct cg_backend_i *be;
    void *bctx;
    struct cg_device_info device;
    char backend_name[64];

    uint64_t rng[4];

    cg_status status;                  /* first failure, sticky           */
    char err[CG_ERR_LEN];

    bool grad_enabled;

    /* ---- ownership: lifetime.c's alone ----
     * Scopes: tensors created while a scope is open, and the marks where
     * each open scope starts. */
    cg_tensor **scoped;
    int64_t n_scoped, cap_scoped;
    int64_t *marks;
    int n_marks, cap_marks;

    /* The kept (persistent) tensors, freed by cg_ctx_free if the user did
     * not. */
    cg_tensor **kept;
    int64_t n_kept, cap_kept;

    /* Dropped tensor, storage and node structs, kept for reuse so that a
     * training loop in steady state makes no host allocation per op
     * (issue 8); released by cg_ctx_free. */
    struct cg_cache {
        void **items;
        int64_t n, cap;
    } cache[CG_CACHE_COUNT];

    /* cg_backward's scratch, kept between calls for the same reason: the
     * walk's stack and post-order, and the epoch whose mark in
     * cg_tensor.visit means "seen by this walk". */
    void *bw_stack, *bw_order;
    int64_t cap_bw_stack, cap_bw_order;
    uint64_t visit_epoch;

    /* Data parallelism (src/dist/dist.c), all NULL/0 in one process.
     * grad_ready runs when cg_backward has finished a leaf's gradient,
     * before each node's backward (t->node set: nothing is final, a chance
     * to move communication on) and with NULL when the walk ended;
     * row_offset is this process's first row in the global batch, so dropout masks follow the global sample
     * index; dist is the communicator SyncBatchNorm sums over. */
    cg_status (*grad_ready)(void *data, cg_tensor *t);
    void *grad_ready_data;
    struct cg_dist *dist;
    int64_t row_offset;
};

/* Errors: record a message in ctx (and in the thread's last error), return
 * status. ctx may be NULL. */
cg_status cg__error(cg_ctx *ctx, cg_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
cg_status cg__verror(cg_ctx *ctx, cg_status status, const char *fmt, va_list ap);
/* A failed backend call is reported by the dispatch layer (dispatch.h). */
void cg__set_thread_error(const char *msg);

/* Tensor ownership (lifetime.c, whose header comment has the rules as a
 * table). cg__tensor_new allocates a contiguous tensor with uninitialised
 * storage and registers it in the current scope (or the kept list). */
cg_tensor *cg__tensor_new(cg_ctx *ctx, int ndim, const int64_t *shape);
/* The same, owned by nobody: the caller holds the only reference (for
 * gradients owned by their tensor, and temporaries). */
cg_tensor *cg__tensor_new_unowned(cg_ctx *ctx, int ndim, const int64_t *shape);
/* A view of t's storage with another shape, strides and offset. */
cg_tensor *cg__tensor_view(cg_tensor *t, int ndim, const int64_t *shape,
                           const int64_t *strides, int64_t offset);
/* The same, owned by nobody: drop with cg__tensor_unref. */
cg_tensor *cg__tensor_view_unowned(cg_tensor *t, int ndim, const int64_t *shape,
                                   const int64_t *strides, int64_t offset);
void cg__tensor_ref(cg_tensor *t);
/* Drops one reference; at zero frees the node, grad and storage. */
void cg__tensor_unref(cg_tensor *t);
/* Whether a scope owns t (a module parameter or optimizer state must not
 * be: the scope's end would free it). */
bool cg__tensor_is_scoped(const cg_tensor *t);
/* Whether g is a plain temporary that only the caller holds: one
 * reference, a storage no view shares, contiguous from its start, no
 * history and no gradient. Such a tensor may become a gradient as it is,
 * or be updated in place, without anyone else seeing the change. */
bool cg__tensor_is_private(const cg_tensor *g);
/* Drops every scope, kept tensor and cached struct (cg_ctx_free). */
void cg__lifetime_release(cg_ctx *ctx);
/* A zeroed struct of the given kind from ctx's cache, or calloc'd when
 * the cache is empty (NULL when out of memory); cg__cache_put returns one. */
void *cg__cache_get(cg_ctx *ctx, enum cg_cache_kind kind);
void cg__cache_put(cg_ctx *ctx, enum cg_cache_kind kind, void *p);

/* Shapes (tensor.c). cg__check_shape checks a user-given shape (dims
 * 0..CG_MAX_DIMS, sizes >= 0, a product that fits) and gives its number
 * of elements; on failure records a message for `what`. */
cg_status cg__check_shape(cg_ctx *ctx, const char *what, int ndim, const int64_t *shape,
                          int64_t *numel);
/* Size arithmetic. Every product of sizes goes through cg__mul_ok, the one
 * checked multiply of the library (src/data's readers too): *out = a * b
 * for sizes a, b >= 0; false when one is negative or the product overflows
 * int64 (then *out is meaningless). Sizes come from users (a model spec, a
 * shape argument, a file header), and a product that wraps would be
 * undefined behaviour, then a wrong allocation; the caller turns false into
 * an error naming the layer, op or file. */
static inline bool cg__mul_ok(int64_t a, int64_t b, int64_t *out)
{
    return (a | b) >= 0 && !__builtin_mul_overflow(a, b, out); /* a | b < 0: one is */
}
static inline bool cg__add_ok(int64_t a, int64_t b, int64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}
/* The product of shape[0..ndim) into *out; false when it overflows. */
bool cg__numel_ok(int ndim, const int64_t *shape, int64_t *out);
/* The same for shapes known to fit (a tensor's: cg__check_shape admitted
 * it); INT64_MAX, which no allocation accepts, should one not. */
int64_t cg__numel(int ndim, const int64_t *shape);
/* The span in + 2 pad - dil (k - 1) - 1 of a window along one axis; the
 * output size is span / stride + 1 when span >= 0 (torch.nn.Conv2d docs,
 * "Shape"). False when it overflows int64. */
bool cg__window_span(int64_t in, int64_t k, int64_t pad, int64_t dil, int64_t *span);
bool cg__shape_eq(const cg_tensor *a, const cg_tensor *b);
void cg__contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
/* "(2, 3)" into buf. */
char *cg__shape_str(int ndim, const int64_t *shape, char *buf, size_t len);

/* A backend view of t alone, dims coalesced where its layout allows. For
 * several views that must keep one shape (out, a, b of an ew op), start
 * from cg_tensor_view() of each and coalesce them together instead. */
struct cg_view cg__view_of(const cg_tensor *t);
/* Coalesce adjacent dims of out/a/b together (any may be NULL except out):
 * dims i and i+1 merge when every view has stride[i] == stride[i+1] *
 * shape[i+1]; size-1 dims are dropped. */
void cg__views_coalesce(struct cg_view *out, struct cg_view *a, struct cg_view *b);
static inline struct cg_ptr cg__ptr(const cg_tensor *t)
{
    struct cg_ptr p = {t->st->buf, t->offset};
    return p;
}
/* cg__ptr of an optional tensor (a bias, a gradient not wanted): a NULL
 * buf where t is NULL, as the backend's optional arguments expect. */
static inline struct cg_ptr cg__ptr_opt(const cg_tensor *t)
{
    struct cg_ptr none = {NULL, 0};
    return t ? cg__ptr(t) : none;
}

/* Autograd glue. cg__node_attach makes out record node (taking a reference
 * to each input and saved tensor); it does nothing when grad recording is
 * off or no input requires grad, and frees node then. */
struct cg_node *cg__node_new(cg_ctx *ctx, const char *name, cg_backward_fn backward,
                             int n_inputs, cg_tensor *const *inputs);
void cg__node_attach(cg_tensor *out, struct cg_node *node);
void cg__node_free(struct cg_node *node);
/* grad(t) += g (g may broadcast-reduce to t's shape: sums over dims that
 * t had as 1 or lacked). */
cg_status cg__accumulate_grad(cg_tensor *t, cg_tensor *g);
/* grad(t)[window] += g, the window a view (ndim, shape, strides, offset)
 * of a contiguous tensor of t's shape (a slice's backward): added in place
 * where t's gradient is t's alone, else scattered into zeros first. */
cg_status cg__accumulate_grad_window(cg_tensor *t, int ndim, const int64_t *shape,
                                     const int64_t *strides, int64_t offset, cg_tensor *g);



/* A growable NUL-terminated string; oom is sticky. */
struct cg__sb {
    char *p;
    size_t n, cap;
    bool oom;
};
void cg__sb_putn(struct cg__sb *b, const char *s, size_t n);
void cg__sb_puts(struct cg__sb *b, const char *s);
void cg__sb_printf(struct cg__sb *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The built-in reference backend (backends/cpu). */
const struct cg_backend_i *cg__cpu_backend(void);
#endif
