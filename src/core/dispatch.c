/*
 * src/core/dispatch.c — the failure side of the dispatch layer
 * (dispatch.h): one message format for every primitive, built only when a
 * call fails, so the calls themselves stay inline and small.
 */
#include <inttypes.h>
#include <stdio.h>

#include "core/dispatch.h"

/* The backend's status, as the frontend reports it: out of memory stays
 * out of memory (the user can shrink the batch), everything else is a
 * backend error (the message says which). */
static cg_status frontend_status(cg_status st)
{
    return st == CG_STATUS_OUT_OF_MEMORY ? st : CG_STATUS_BACKEND_ERROR;
}

static void detail_of(cg_ctx *ctx, char *buf, size_t len, cg_status st)
{
    const char *d = ctx->be->last_error ? ctx->be->last_error(ctx->bctx) : NULL;
    snprintf(buf, len, "%s", d && *d ? d : cg_status_str(st));
}

cg_status cg__be_fail(cg_ctx *ctx, cg_status st, const char *what, const char *prim,
                      const char *names, int n, const int64_t *sizes)
{
    char sz[256] = "", detail[CG_ERR_LEN / 2];
    size_t used = 0;
    if (n > 0) used = (size_t)snprintf(sz, sizeof sz, " (%s = ", names);
    for (int i = 0; i < n && used < sizeof sz; i++)
        used += (size_t)snprintf(sz + used, sizeof sz - used, "%s%" PRId64, i ? ", " : "",
                                 sizes[i]);
    if (n > 0 && used < sizeof sz) snprintf(sz + used, sizeof sz - used, ")");
    detail_of(ctx, detail, sizeof detail, st);
    st = frontend_status(st);
    return cg__error(ctx, st, "%s: %s%s: %s on %s backend (%s)", what, prim, sz, detail,
                     ctx->backend_name, ctx->device.name);
}

cg_status cg__be_fail_view(cg_ctx *ctx, cg_status st, const char *what, const char *prim,
                           const struct cg_view *out)
{
    char sh[128], detail[CG_ERR_LEN / 2];
    cg__shape_str(out ? out->ndim : 0, out ? out->shape : NULL, sh, sizeof sh);
    detail_of(ctx, detail, sizeof detail, st);
    st = frontend_status(st);
    return cg__error(ctx, st, "%s: %s over %s: %s on %s backend (%s)", what, prim, sh, detail,
                     ctx->backend_name, ctx->device.name);
}

cg_status cg__be_fail_alloc(cg_ctx *ctx, int ndim, const int64_t *shape, size_t bytes)
{
    char sh[128], detail[CG_ERR_LEN / 2];
    cg__shape_str(ndim, shape, sh, sizeof sh);
    detail_of(ctx, detail, sizeof detail, CG_STATUS_OUT_OF_MEMORY);
    return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY,
                     "cg_tensor: allocating a %s tensor (%zu bytes): %s on %s backend (%s)", sh,
                     bytes, detail, ctx->backend_name, ctx->device.name);
}

cg_status cg__be_fail_optim(cg_ctx *ctx, cg_status st, const char *family, const cg_tensor *p)
{
    char sh[128], w[256];
    snprintf(w, sizeof w, "cg_optim_step(%s) of parameter %s", family,
             cg_tensor_describe(p, sh, sizeof sh));
    return cg__be_fail(ctx, st, w, "optim_update", NULL, 0, NULL);
}

cg_status cg__be_missing(cg_ctx *ctx, const char *what, const char *prim)
{
    return cg__error(ctx, CG_STATUS_UNSUPPORTED, "%s: the '%s' backend has no %s primitive", what,
                     ctx->backend_name, prim);
}
