/*
 * src/core/context.c — contexts: backend and device choice, grad mode,
 * synchronisation and statistics. Errors are error.c's, tensor ownership
 * lifetime.c's, the host random generator rng.c's.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/internal.h"
#include "core/registry.h"
#include "core/dispatch.h"

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

CG_API void cg_ctx_free(cg_ctx *ctx)
{
    if (!ctx) return;
    cg__lifetime_release(ctx); /* every tensor first: they hold device buffers */
    free(ctx->bw_stack);
    free(ctx->bw_order);
    if (ctx->be) ctx->be->close(ctx->bctx);
    free(ctx);
}

CG_API const char *cg_ctx_backend_name(const cg_ctx *ctx) { return ctx->backend_name; }
CG_API const struct cg_device_info *cg_ctx_device(const cg_ctx *ctx) { return &ctx->device; }

CG_API cg_status cg_ctx_synchronize(cg_ctx *ctx)
{
    return cg__be_finish(ctx, "cg_ctx_synchronize");
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
