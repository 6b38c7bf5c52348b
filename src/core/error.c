/*
 * src/core/error.c — status names and error messages.
 *
 * A failure records "<what failed>: <detail>" twice: in the context (read by
 * cg_last_error(ctx); the first failure also stays in ctx->status) and in a
 * thread-local buffer, for failures that happen before a context exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"

static _Thread_local char thread_err[CG_ERR_LEN];

static const char *const status_names[] = {
    [CG_OK] = "CG_OK",
    [CG_STATUS_INVALID_ARGUMENT] = "CG_STATUS_INVALID_ARGUMENT",
    [CG_STATUS_SHAPE_MISMATCH] = "CG_STATUS_SHAPE_MISMATCH",
    [CG_STATUS_OUT_OF_MEMORY] = "CG_STATUS_OUT_OF_MEMORY",
    [CG_STATUS_BACKEND_NOT_FOUND] = "CG_STATUS_BACKEND_NOT_FOUND",
    [CG_STATUS_DEVICE_NOT_FOUND] = "CG_STATUS_DEVICE_NOT_FOUND",
    [CG_STATUS_PLUGIN_INVALID] = "CG_STATUS_PLUGIN_INVALID",
    [CG_STATUS_ABI_MISMATCH] = "CG_STATUS_ABI_MISMATCH",
    [CG_STATUS_BACKEND_ERROR] = "CG_STATUS_BACKEND_ERROR",
    [CG_STATUS_IO_ERROR] = "CG_STATUS_IO_ERROR",
    [CG_STATUS_PARSE_ERROR] = "CG_STATUS_PARSE_ERROR",
    [CG_STATUS_UNSUPPORTED] = "CG_STATUS_UNSUPPORTED",
    [CG_STATUS_MISSING_VALUE] = "CG_STATUS_MISSING_VALUE",
};
_Static_assert(sizeof status_names / sizeof status_names[0] == CG_STATUS_COUNT,
               "every cg_status needs a name");

CG_API const char *cg_status_str(cg_status status)
{
    if ((unsigned)status >= CG_STATUS_COUNT) return "CG_STATUS_UNKNOWN";
    return status_names[status];
}

void cg__set_thread_error(const char *msg)
{
    snprintf(thread_err, sizeof thread_err, "%s", msg);
}

cg_status cg__verror(cg_ctx *ctx, cg_status status, const char *fmt, va_list ap)
{
    char msg[CG_ERR_LEN];
    vsnprintf(msg, sizeof msg, fmt, ap);
    cg__set_thread_error(msg);
    if (ctx) {
        memcpy(ctx->err, msg, sizeof msg);
        if (ctx->status == CG_OK) ctx->status = status;
    }
    return status;
}

cg_status cg__error(cg_ctx *ctx, cg_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cg__verror(ctx, status, fmt, ap);
    va_end(ap);
    return status;
}

CG_API const char *cg_last_error(const cg_ctx *ctx)
{
    if (ctx) return ctx->err;
    return thread_err;
}

CG_API cg_status cg_ctx_status(const cg_ctx *ctx) { return ctx->status; }

CG_API void cg_ctx_clear_error(cg_ctx *ctx)
{
    ctx->status = CG_OK;
    ctx->err[0] = '\0';
}

_Noreturn void cg__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "clgrad: internal error: %s:%d: assertion failed: %s\n", file, line, expr);
    abort();
}
