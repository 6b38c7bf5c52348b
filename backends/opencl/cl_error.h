/*
 * backends/opencl/cl_error.h — names for OpenCL and CLBlast status codes and
 * CG_CL_TRY, which turns a failing call into a cg_status plus a message
 * "<call text>: <NAME> (<code>)" in an error buffer:
 *
 *     CG_CL_TRY(cl->err, clFinish(cl->queue));
 *     // on failure: returns CG_STATUS_BACKEND_ERROR (or OUT_OF_MEMORY), and
 *     // cl->err holds "clFinish(cl->queue): CL_OUT_OF_RESOURCES (-5)"
 */
#ifndef CG_OPENCL_CL_ERROR_H
#define CG_OPENCL_CL_ERROR_H

#define CL_TARGET_OPENCL_VERSION 120
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <stddef.h>

#include "clgrad/status.h"

#define CG_CL_ERR_LEN 2048

/* "CL_OUT_OF_RESOURCES" for -5; "CL_UNKNOWN_ERROR" for codes it lacks. */
const char *cg_cl_error_name(cl_int code);
/* CLBlast status name ("CLBlastInsufficientMemoryTemp"); codes shared with
 * OpenCL get the OpenCL name. */
const char *cg_cl_clblast_status_name(int code);
/* Status for a failed OpenCL code: out-of-memory codes map to
 * CG_STATUS_OUT_OF_MEMORY, the rest to CG_STATUS_BACKEND_ERROR. */
cg_status cg_cl_status_of(cl_int code);

/* Writes "<what>: <NAME> (<code>)" to err and returns cg_cl_status_of(code). */
cg_status cg_cl_fail(char *err, size_t len, const char *what, cl_int code);
cg_status cg_cl_clblast_fail(char *err, size_t len, const char *what, int code);
/* printf into err; returns status. */
cg_status cg_cl_failf(char *err, size_t len, cg_status status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Evaluate an expression yielding a cl_int; on failure record it in the
 * char array `errbuf` and return the status from the enclosing function. */
#define CG_CL_TRY(errbuf, call)                                               \
    do {                                                                      \
        cl_int cg_cl_rc_ = (call);                                            \
        if (cg_cl_rc_ != CL_SUCCESS)                                          \
            return cg_cl_fail((errbuf), sizeof(errbuf), #call, cg_cl_rc_);    \
    } while (0)

/* The same for a CLBlastStatusCode (0 is CLBlastSuccess). */
#define CG_CLBLAST_TRY(errbuf, call)                                          \
    do {                                                                      \
        int cg_cl_rc_ = (int)(call);                                          \
        if (cg_cl_rc_ != 0)                                                   \
            return cg_cl_clblast_fail((errbuf), sizeof(errbuf), #call, cg_cl_rc_); \
    } while (0)

#endif
