/*
 * src/core/context.c — contexts: backend and device choice, the host RNG,
 * scopes and the persistent-tensor list.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "core/registry.h"

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

/* ---- device choice -------------------------------------------------- */

static void describe_devices(const struct cg_device_info *devs, int n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++) {
        int k = snprintf(buf + used, len - used, "%s%d: %s (%s)", i ? "; " : "", i,
                         devs[i].name, devs[i].vendor);
        if (k < 0) break;
        used += (size_t)k;
    }
    if (n == 0) snprintf(buf, len, "none");
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return true;
    return n == 0;
}

/* Resolves `want` (NULL/"" = preferred, an index, or a name substring). */
static cg_status pick_device(const struct cg_backend_i *be, const char *want, int preferred,
                             int *out, struct cg_device_info *info)
{
    struct cg_device_info *devs;
    int n;
    cg_status st = cg__list_devices(be, &devs, &n);
    if (st != CG_OK) return st;
    int pick = -1;
    if (!want || !*want) {
        pick = n > 0 ? (preferred >= 0 && preferred < n ? preferred : 0) : -1;
    } else {
        char *end;
        errno = 0;
        long idx = strtol(want, &end, 10);
        if (*end == '\0' && errno == 0) {
            pick = idx >= 0 && idx < n ? (int)idx : -1;
        } else {
            for (int i = 0; i < n && pick < 0; i++)
                if (contains_nocase(devs[i].name, want) || contains_nocase(devs[i].vendor, want))
                    pick = i;
        }
    }
    if (pick < 0) {
        char list[2048];
        describe_devices(devs, n, list, sizeof list);
        free(devs);
        if (!want || !*want)
            return cg__error(NULL, CG_STATUS_DEVICE_NOT_FOUND,
                             "backend '%s' has no devices", be->name);
        return cg__error(NULL, CG_STATUS_DEVICE_NOT_FOUND,
                         "no device '%s' on backend '%s' (CLGRAD_DEVICE is an index or a name "
                         "substring); devices: %s",
                         want, be->name, list);
    }
    *out = pick;
    *info = devs[pick];
    free(devs);
    return CG_OK;
}

CG_API cg_status cg_ctx_create(cg_ctx **out, const struct cg_ctx_options *opts)
{
    if (!out) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_ctx_create: out is NULL");
    *out = NULL;
    const char *want_be = opts && opts->backend ? opts->backend : getenv("CLGRAD_BACKEND");
    const char *want_dev = opts && opts->device ? opts->device : getenv("CLGRAD_DEVICE");
    if (!want_be || !*want_be) want_be = "auto";

    char name[64];
    int preferred = -1;
    if (strcasecmp(want_be, "auto") == 0) {
        cg_backend_auto(name, sizeof name, &preferred);
    } else {
        snprintf(name, sizeof name, "%s", want_be);
    }
    const struct cg_backend_i *be;
    cg_status st = cg__registry_find(name, &be);
    if (st != CG_OK && !(opts && opts->backend)) {
        /* Say where the name came from (issue 17 item 6). */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", cg_last_error(NULL));
        return cg__error(NULL, st, "CLGRAD_BACKEND=%s: %s (accepted: auto or one of those)",
                         want_be, msg);
    }
    if (st != CG_OK) return st;
    if (preferred < 0 && be->preferred_device) preferred = be->preferred_device();

    cg_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_ctx_create: out of memory");
    int dev = -1;
    if ((st = pick_device(be, want_dev, preferred, &dev, &ctx->device)) != CG_OK) {
        free(ctx);
        return st;
    }
    char err[1024] = "";
    if ((st = be->open(dev, &ctx->bctx, err, sizeof err)) != CG_OK) {
        cg__error(NULL, st, "opening device %d (%s) on backend '%s': %s", dev, ctx->device.name,
                  be->name, err);
        free(ctx);
        return st;
    }
    ctx->be = be;
    snprintf(ctx->backend_name, sizeof ctx->backend_name, "%s", be->name);
    ctx->grad_enabled = true;
    cg_seed(ctx, opts ? opts->seed : 0);
    *out = ctx;
    return CG_OK;
}

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

CG_API void cg_ctx_free(cg_ctx *ctx)
{
    if (!ctx) return;
    while (ctx->n_marks > 0) cg_scope_end(ctx);
    /* Persistent tensors the user did not free. Each holds one reference
     * from this list; autograd nodes may hold more, so dropping them in any
     * order frees everything once the last reference goes. */
    while (ctx->n_kept > 0) {
        cg_tensor *t = ctx->kept[--ctx->n_kept];
        t->persistent_slot = -1;
        cg__tensor_unref(t);
    }
    free(ctx->kept);
    free(ctx->scoped);
    free(ctx->marks);
    free(ctx->bw_stack);
    free(ctx->bw_order);
    for (int k = 0; k < CG_CACHE_COUNT; k++) cache_drain(ctx, (enum cg_cache_kind)k);
    if (ctx->be) ctx->be->close(ctx->bctx);
    free(ctx);
}

CG_API const char *cg_ctx_backend_name(const cg_ctx *ctx) { return ctx->backend_name; }
CG_API const struct cg_device_info *cg_ctx_device(const cg_ctx *ctx) { return &ctx->device; }

CG_API cg_status cg_ctx_synchronize(cg_ctx *ctx)
{
    if (ctx->be->finish(ctx->bctx) != CG_OK)
        return cg__backend_error(ctx, CG_STATUS_BACKEND_ERROR, "cg_ctx_synchronize");
    return CG_OK;
}

CG_API void cg_ctx_stats(cg_ctx *ctx, struct cg_backend_stats *out)
{
    memset(out, 0, sizeof *out);
    ctx->be->get_stats(ctx->bctx, out);
}

CG_API void cg_ctx_reset_stats(cg_ctx *ctx) { ctx->be->reset_stats(ctx->bctx); }

CG_API const struct cg_backend_i *cg_ctx_backend(cg_ctx *ctx, void **backend_ctx)
{
    if (backend_ctx) *backend_ctx = ctx->bctx;
    return ctx->be;
}

CG_API bool cg_set_grad_enabled(cg_ctx *ctx, bool enabled)
{
    bool old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

CG_API bool cg_is_grad_enabled(const cg_ctx *ctx) { return ctx->grad_enabled; }

/* ---- RNG: xoshiro256** (Blackman & Vigna), seeded by splitmix64 ----- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

CG_API void cg_seed(cg_ctx *ctx, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < 4; i++) ctx->rng[i] = splitmix64(&s);
}

CG_API uint64_t cg_rand_u64(cg_ctx *ctx)
{
    uint64_t *s = ctx->rng;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

CG_API double cg_rand_uniform(cg_ctx *ctx)
{
    return (double)(cg_rand_u64(ctx) >> 11) * 0x1.0p-53;
}

/* Box-Muller; draws two uniforms per call so the stream is position-only. */
CG_API double cg_rand_normal(cg_ctx *ctx)
{
    double u1 = cg_rand_uniform(ctx), u2 = cg_rand_uniform(ctx);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

CG_API void cg_rand_state(const cg_ctx *ctx, uint64_t state[4])
{
    memcpy(state, ctx->rng, sizeof ctx->rng);
}

CG_API void cg_rand_set_state(cg_ctx *ctx, const uint64_t state[4])
{
    memcpy(ctx->rng, state, sizeof ctx->rng);
}

/* ---- scopes and ownership ------------------------------------------- */

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

/* Registers a new tensor in the open scope, or as persistent. */
bool cg__ctx_own(cg_ctx *ctx, cg_tensor *t)
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

/* Removes t from the scope or persistent list it is in (does not free). */
void cg__ctx_disown(cg_ctx *ctx, cg_tensor *t)
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

/* Moves a scoped tensor to the persistent list. */
bool cg__ctx_make_persistent(cg_ctx *ctx, cg_tensor *t)
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
