/*
 * clgrad/context.h — the context: backend and device, RNG, errors, scopes.
 *
 * A context binds one backend instance on one device, a seeded host random
 * generator (initialisation, shuffling, dropout: the same seed gives the same
 * numbers on every backend), the last error message, and the stack of scopes
 * that own intermediate tensors.
 *
 *     cg_ctx *ctx;
 *     if (cg_ctx_create(&ctx, NULL) != CG_OK) {        // CLGRAD_BACKEND etc.
 *         fprintf(stderr, "%s\n", cg_last_error(NULL));
 *         return 1;
 *     }
 *     cg_scope_begin(ctx);
 *     ...                        // every tensor made here is freed by:
 *     cg_scope_end(ctx);
 *     cg_ctx_free(ctx);
 *
 * Errors. Functions that can fail return cg_status; functions that return a
 * tensor return NULL on failure. Either way the message is in
 * cg_last_error(ctx), and the first failure since cg_ctx_clear_error() stays
 * in cg_ctx_status(ctx), so a chain of ops can be checked once at its end
 * (an op given a NULL input returns NULL without a new message).
 *
 * Threads. One context per thread. The plugin registry is initialised once
 * under a lock; backends lock their shared caches.
 */
#ifndef CLGRAD_CONTEXT_H
#define CLGRAD_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/backend.h"
#include "clgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_ctx cg_ctx;

struct cg_ctx_options {
    const char *backend;  /* "cpu", "opencl", "auto"; NULL: $CLGRAD_BACKEND or auto */
    const char *device;   /* index or name substring; NULL: $CLGRAD_DEVICE or auto  */
    uint64_t seed;        /* host RNG seed                                          */
};

/* Creates a context. opts NULL means all defaults (environment, seed 0).
 * On failure *out is NULL and cg_last_error(NULL) lists what is available. */
CG_API cg_status cg_ctx_create(cg_ctx **out, const struct cg_ctx_options *opts);
/* Frees the context and every tensor it still owns. NULL is fine. */
CG_API void cg_ctx_free(cg_ctx *ctx);

/* The message of the last failure in ctx, or of this thread's last failure
 * when ctx is NULL (e.g. after cg_ctx_create failed). Never NULL. */
CG_API const char *cg_last_error(const cg_ctx *ctx);
/* The first failure since cg_ctx_clear_error, CG_OK if none. */
CG_API cg_status cg_ctx_status(const cg_ctx *ctx);
CG_API void cg_ctx_clear_error(cg_ctx *ctx);

CG_API const char *cg_ctx_backend_name(const cg_ctx *ctx);
CG_API const struct cg_device_info *cg_ctx_device(const cg_ctx *ctx);
/* Waits for all queued device work. */
CG_API cg_status cg_ctx_synchronize(cg_ctx *ctx);
CG_API void cg_ctx_stats(cg_ctx *ctx, struct cg_backend_stats *out);
CG_API void cg_ctx_reset_stats(cg_ctx *ctx);
/* Direct access to the backend, for custom ops and the primitive tests. */
CG_API const struct cg_backend_i *cg_ctx_backend(cg_ctx *ctx, void **backend_ctx);

/* Host RNG (xoshiro256**, seeded through splitmix64). */
CG_API void cg_seed(cg_ctx *ctx, uint64_t seed);
CG_API uint64_t cg_rand_u64(cg_ctx *ctx);
CG_API double cg_rand_uniform(cg_ctx *ctx);          /* [0, 1)        */
CG_API double cg_rand_normal(cg_ctx *ctx);           /* N(0, 1)       */
CG_API void cg_rand_state(const cg_ctx *ctx, uint64_t state[4]);
CG_API void cg_rand_set_state(cg_ctx *ctx, const uint64_t state[4]);

/* Scopes own every tensor created while they are open (see tensor.h);
 * cg_scope_end frees them all. Scopes nest. */
CG_API void cg_scope_begin(cg_ctx *ctx);
CG_API void cg_scope_end(cg_ctx *ctx);

/* Gradient recording; returns the previous setting. */
CG_API bool cg_set_grad_enabled(cg_ctx *ctx, bool enabled);
CG_API bool cg_is_grad_enabled(const cg_ctx *ctx);

/* The registry of backends: "cpu" plus every plugin found. */
#define CG_MAX_BACKENDS 16
struct cg_backend_entry_info {
    char name[64];
    char path[1024];        /* "built in" for cpu                        */
    bool loaded;            /* false: error says why                     */
    char error[1024];
};
/* Lists backends found (loads plugins on first use). */
CG_API cg_status cg_backends_list(struct cg_backend_entry_info *out, int max, int *count);
/* Devices of one backend. */
CG_API cg_status cg_backend_devices(const char *backend, struct cg_device_info *out,
                                    int max, int *count);
/* What CLGRAD_BACKEND=auto / CLGRAD_DEVICE unset would pick. */
CG_API cg_status cg_backend_auto(char *backend, size_t backend_len, int *device);
/* Loads one plugin file explicitly and registers it. */
CG_API cg_status cg_plugin_load(const char *path);

#ifdef __cplusplus
}
#endif
#endif
