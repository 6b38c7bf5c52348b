/*
 * src/core/lifetime.c — who owns a tensor, and when it dies. Every rule of
 * tensor ownership lives in this file: allocation, reference counts,
 * scopes, the kept (persistent) list, the free-list caches of the small
 * structs, composite ops' private scopes, and which temporaries gradient
 * accumulation may adopt or update in place.
 *
 *   what                       owner (holds one reference)      dies at
 *   -------------------------  -------------------------------  -------------------------------
 *   a tensor made while a      the innermost open scope          cg_scope_end, or cg_tensor_free
 *   scope is open (cg__tensor_ (ctx->scoped, slot in             (which empties its slot)
 *   new, every op's result)    t->scope_slot)
 *   a tensor made with no      the kept list (ctx->kept, slot    cg_tensor_free, or cg_ctx_free
 *   scope open, or kept        in t->persistent_slot)
 *   (cg_tensor_keep)
 *   an unowned tensor          the caller alone                  cg__tensor_unref
 *   (cg__tensor_new_unowned,
 *   cg__tensor_view_unowned)
 *   an autograd node           its output tensor (t->node)       the output's last reference,
 *                                                                 or cg_tensor_keep
 *   a node's inputs and saved  one reference each, the node's    the node
 *   tensors
 *   a leaf's gradient t->grad  t alone (no scope, no list)       t's last reference,
 *                                                                 cg_tensor_clear_grad
 *   a non-leaf's parked grad   t, while cg_backward runs          once its node has used it
 *   a storage (device buffer)  one reference per tensor or view  the last one: backend release
 *   a composite op's           its private scope                  cg__compose_end; the result
 *   intermediates              (cg__compose_begin)                moves to the caller's scope
 *   tensor, storage and node   ctx's free-list caches once        cg_ctx_free
 *   structs that died          dropped
 *
 * A tensor's refs counts its owners: at most one scope or list entry, plus
 * one per node that holds it, plus the unowned holders. A scope or the
 * kept list never holds a tensor twice. When refs reaches zero the tensor
 * frees its node (releasing the node's inputs), its gradient, and its
 * reference to the storage.
 *
 * Users see only scoped or kept tensors; ops take their temporaries as
 * unowned references, so an op called with no scope open leaves nothing
 * behind in the kept list (ops_internal.h).
 */
#include <stdlib.h>
#include <string.h>

#include "core/ops_internal.h"
#include "core/dispatch.h"

/* Under AddressSanitizer a cached struct is poisoned, so a use after its
 * cg__cache_put is still reported as one. */
#if defined(__SANITIZE_ADDRESS__)
#define CG_HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CG_HAVE_ASAN 1
#endif
#endif
#ifdef CG_HAVE_ASAN
#include <sanitizer/asan_interface.h>
#define CG_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define CG_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define CG_POISON(p, n) ((void)(p), (void)(n))
#define CG_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* ---- struct caches -------------------------------------------------- *
 * Every op makes a tensor, a storage and usually an autograd node, and a
 * scope's end drops them: a stack of dropped structs per kind turns each
 * calloc/free pair into a few pointer moves. A stack never holds more than
 * the most structs of its kind alive at once. The pointers live in the
 * stack, not in the cached structs, so a cached struct can be poisoned
 * whole under ASan and LeakSanitizer still sees it held. */

static const size_t cache_size[CG_CACHE_COUNT] = {
    [CG_CACHE_TENSOR] = sizeof(cg_tensor),
    [CG_CACHE_STORAGE] = sizeof(struct cg_storage),
    [CG_CACHE_NODE] = sizeof(struct cg_node),
};
_Static_assert(CG_CACHE_COUNT == 3, "cache_size must list every cache kind");

void *cg__cache_get(cg_ctx *ctx, enum cg_cache_kind kind)
{
    struct cg_cache *c = &ctx->cache[kind];
    if (c->n == 0) return calloc(1, cache_size[kind]);
    void *p = c->items[--c->n];
    CG_UNPOISON(p, cache_size[kind]);
    memset(p, 0, cache_size[kind]);
    return p;
}

void cg__cache_put(cg_ctx *ctx, enum cg_cache_kind kind, void *p)
{
    if (!p) return;
    struct cg_cache *c = &ctx->cache[kind];
    if (c->n == c->cap) {
        int64_t ncap = c->cap ? c->cap * 2 : 256;
        void **items = realloc(c->items, (size_t)ncap * sizeof *items);
        if (!items) {
            free(p); /* no room to cache it: nothing is lost but speed */
            return;
        }
        c->items = items;
        c->cap = ncap;
    }
    c->items[c->n++] = p;
    CG_POISON(p, cache_size[kind]);
}

static void cache_drain(cg_ctx *ctx, enum cg_cache_kind kind)
{
    struct cg_cache *c = &ctx->cache[kind];
    while (c->n > 0) {
        void *p = c->items[--c->n];
        CG_UNPOISON(p, cache_size[kind]);
        free(p);
    }
    free(c->items);
    c->items = NULL;
    c->cap = 0;
}

/* ---- the scope and kept lists ---------------------------------------- */

static bool grow(void **arr, int64_t *cap, int64_t need, size_t elem)
{
    if (need <= *cap) return true;
    int64_t ncap = *cap ? *cap * 2 : 256;
    while (ncap < need) ncap *= 2;
    void *p = realloc(*arr, (size_t)ncap * elem);
    if (!p) return false;
    *arr = p;
    *cap = ncap;
    return true;
}

/* Registers a new tensor in the open scope, or in the kept list when no
 * scope is open; the list takes over the caller's reference. */
static bool own(cg_ctx *ctx, cg_tensor *t)
{
    if (ctx->n_marks > 0) {
        if (!grow((void **)&ctx->scoped, &ctx->cap_scoped, ctx->n_scoped + 1, sizeof(cg_tensor *)))
            return false;
        t->scope_slot = ctx->n_scoped;
        ctx->scoped[ctx->n_scoped++] = t;
        t->persistent_slot = -1;
    } else {
        if (!grow((void **)&ctx->kept, &ctx->cap_kept, ctx->n_kept + 1, sizeof(cg_tensor *)))
            return false;
        t->scope_slot = -1;
        t->persistent_slot = ctx->n_kept;
        ctx->kept[ctx->n_kept++] = t;
    }
    return true;
}

/* Removes t from the scope or kept list it is in (does not drop the
 * list's reference: the caller does). */
static void disown(cg_ctx *ctx, cg_tensor *t)
{
    if (t->scope_slot >= 0) {
        ctx->scoped[t->scope_slot] = NULL;
        t->scope_slot = -1;
    }
    if (t->persistent_slot >= 0) {
        int64_t last = --ctx->n_kept;
        cg_tensor *moved = ctx->kept[last];
        ctx->kept[t->persistent_slot] = moved;
        moved->persistent_slot = t->persistent_slot;
        t->persistent_slot = -1;
    }
}

/* Moves a scoped tensor to the kept list (its reference moves with it). */
static bool make_persistent(cg_ctx *ctx, cg_tensor *t)
{
    if (t->persistent_slot >= 0) return true;
    if (!grow((void **)&ctx->kept, &ctx->cap_kept, ctx->n_kept + 1, sizeof(cg_tensor *)))
        return false;
    if (t->scope_slot >= 0) {
        ctx->scoped[t->scope_slot] = NULL;
        t->scope_slot = -1;
    }
    t->persistent_slot = ctx->n_kept;
    ctx->kept[ctx->n_kept++] = t;
    return true;
}

bool cg__tensor_is_scoped(const cg_tensor *t) { return t->scope_slot >= 0; }

CG_API void cg_scope_begin(cg_ctx *ctx)
{
    int64_t cap = ctx->cap_marks;
    if (!grow((void **)&ctx->marks, &cap, ctx->n_marks + 1, sizeof *ctx->marks)) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_scope_begin: out of memory");
        return;
    }
    ctx->cap_marks = (int)cap;
    ctx->marks[ctx->n_marks++] = ctx->n_scoped;
}

CG_API void cg_scope_end(cg_ctx *ctx)
{
    if (ctx->n_marks == 0) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_scope_end: no scope is open");
        return;
    }
    int64_t mark = ctx->marks[--ctx->n_marks];
    /* Release in reverse creation order: outputs before their inputs. */
    while (ctx->n_scoped > mark) {
        cg_tensor *t = ctx->scoped[--ctx->n_scoped];
        if (!t) continue;
        t->scope_slot = -1;
        cg__tensor_unref(t);
    }
}

void cg__lifetime_release(cg_ctx *ctx)
{
    while (ctx->n_marks > 0) cg_scope_end(ctx);
    /* Kept tensors the user did not free. Each holds one reference from
     * this list; autograd nodes may hold more, so dropping them in any
     * order frees everything once the last reference goes. */
    while (ctx->n_kept > 0) {
        cg_tensor *t = ctx->kept[--ctx->n_kept];
        t->persistent_slot = -1;
        cg__tensor_unref(t);
    }
    free(ctx->kept);
    free(ctx->scoped);
    free(ctx->marks);
    ctx->kept = ctx->scoped = NULL;
    ctx->marks = NULL;
    for (int k = 0; k < CG_CACHE_COUNT; k++) cache_drain(ctx, (enum cg_cache_kind)k);
}

/* ---- allocation and reference counts ---------------------------------- */

static cg_tensor *tensor_alloc_struct(cg_ctx *ctx)
{
    cg_tensor *t = cg__cache_get(ctx, CG_CACHE_TENSOR);
    if (!t) return NULL;
    t->refs = 1;
    t->scope_slot = -1;
    t->persistent_slot = -1;
    t->dtype = CG_F32;
    return t;
}

cg_tensor *cg__tensor_new_unowned(cg_ctx *ctx, int ndim, const int64_t *shape)
{
    int64_t n;
    if (cg__check_shape(ctx, "cg_tensor", ndim, shape, &n) != CG_OK) return NULL;
    cg_tensor *t = tensor_alloc_struct(ctx);
    struct cg_storage *st = cg__cache_get(ctx, CG_CACHE_STORAGE);
    if (!t || !st) {
        cg__cache_put(ctx, CG_CACHE_TENSOR, t);
        cg__cache_put(ctx, CG_CACHE_STORAGE, st);
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_tensor: out of host memory");
        return NULL;
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    cg__contiguous_strides(ndim, shape, t->strides);
    st->ctx = ctx;
    st->refs = 1;
    st->bytes = (size_t)n * sizeof(float);
    if (cg__be_alloc(ctx, st, ndim, shape) != CG_OK) {
        cg__cache_put(ctx, CG_CACHE_TENSOR, t);
        cg__cache_put(ctx, CG_CACHE_STORAGE, st);
        return NULL;
    }
    t->st = st;
    return t;
}

cg_tensor *cg__tensor_new(cg_ctx *ctx, int ndim, const int64_t *shape)
{
    cg_tensor *t = cg__tensor_new_unowned(ctx, ndim, shape);
    if (t && !own(ctx, t)) {
        cg__tensor_unref(t);
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_tensor: out of host memory");
        return NULL;
    }
    return t;
}

cg_tensor *cg__tensor_view_unowned(cg_tensor *base, int ndim, const int64_t *shape,
                                   const int64_t *strides, int64_t offset)
{
    cg_ctx *ctx = base->st->ctx;
    cg_tensor *t = tensor_alloc_struct(ctx);
    if (!t) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_tensor view: out of host memory");
        return NULL;
    }
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        t->strides[i] = strides[i];
    }
    t->offset = offset;
    t->st = base->st;
    t->st->refs++;
    return t;
}

cg_tensor *cg__tensor_view(cg_tensor *base, int ndim, const int64_t *shape,
                           const int64_t *strides, int64_t offset)
{
    cg_ctx *ctx = base->st->ctx;
    cg_tensor *t = cg__tensor_view_unowned(base, ndim, shape, strides, offset);
    if (t && !own(ctx, t)) {
        cg__tensor_unref(t);
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_tensor view: out of host memory");
        return NULL;
    }
    return t;
}

void cg__tensor_ref(cg_tensor *t) { t->refs++; }

static void storage_unref(struct cg_storage *st)
{
    if (--st->refs > 0) return;
    cg_ctx *ctx = st->ctx;
    cg__be_release(ctx, st->buf);
    cg__cache_put(ctx, CG_CACHE_STORAGE, st);
}

void cg__tensor_unref(cg_tensor *t)
{
    if (!t || --t->refs > 0) return;
    if (t->node) {
        struct cg_node *node = t->node;
        t->node = NULL;
        cg__node_free(node);
    }
    if (t->grad) cg__tensor_unref(t->grad);
    cg_ctx *ctx = t->st->ctx;
    storage_unref(t->st);
    cg__cache_put(ctx, CG_CACHE_TENSOR, t);
}

CG_API void cg_tensor_free(cg_tensor *t)
{
    if (!t) return;
    disown(t->st->ctx, t);
    cg__tensor_unref(t);
}

CG_API cg_tensor *cg_tensor_keep(cg_tensor *t)
{
    if (!t) return NULL;
    cg_ctx *ctx = t->st->ctx;
    if (!make_persistent(ctx, t)) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_tensor_keep: out of host memory");
        return NULL;
    }
    if (t->node) {
        struct cg_node *node = t->node;
        t->node = NULL;
        cg__node_free(node);
    }
    return t;
}

/* ---- composite ops' private scopes ------------------------------------ */

int cg__compose_begin(cg_ctx *ctx)
{
    int before = ctx->n_marks;
    cg_scope_begin(ctx);
    return ctx->n_marks == before + 1 ? ctx->n_marks : -1;
}

/* Inlined into both entry points so that the one-result case, run per
 * node of every backward pass, has no loop left. */
static inline __attribute__((always_inline)) cg_status compose_end(cg_ctx *ctx, int token, int n,
                                                                   cg_tensor **rs)
{
    if (token < 0) return CG_OK; /* begin failed (error recorded): nothing to end */
    CG_ASSERT(ctx->n_marks == token);
    /* Which results the private scope owns; hold each through the scope's
     * end with a reference of our own. */
    bool inner[CG_NODE_MAX_INPUTS];
    CG_ASSERT(n <= CG_NODE_MAX_INPUTS);
    int64_t mark = ctx->marks[token - 1];
    for (int i = 0; i < n; i++) {
        inner[i] = rs[i] && rs[i]->scope_slot >= mark;
        if (rs[i]) cg__tensor_ref(rs[i]);
    }
    cg_scope_end(ctx);
    cg_status st = CG_OK;
    for (int i = 0; i < n; i++) {
        if (!rs[i]) continue;
        if (!inner[i]) {
            cg__tensor_unref(rs[i]); /* owned outside: still alive */
            continue;
        }
        /* rs[i] survived the scope through our reference; hand it to the
         * caller's scope (or the kept list), which takes that reference. */
        if (!own(ctx, rs[i])) {
            cg__tensor_unref(rs[i]);
            rs[i] = NULL;
            st = cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "out of host memory");
        }
    }
    return st;
}

cg_status cg__compose_end_n(cg_ctx *ctx, int token, int n, cg_tensor **rs)
{
    return compose_end(ctx, token, n, rs);
}

cg_tensor *cg__compose_end(cg_ctx *ctx, int token, cg_tensor *r)
{
    compose_end(ctx, token, 1, &r);
    return r;
}

/* ---- temporaries gradient accumulation may adopt ----------------------- */

bool cg__tensor_is_private(const cg_tensor *g)
{
    return g->refs == 1 && g->st->refs == 1 && g->offset == 0 && !g->node && !g->grad &&
           cg_tensor_is_contiguous(g);
}
