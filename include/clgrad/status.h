/*
 * clgrad/status.h — status codes shared by the library and its backend plugins.
 *
 * Every public function that can fail returns a cg_status (or, for functions
 * that return a tensor, NULL plus a status recorded in the context). The text
 * that explains a failure is in cg_last_error() (see context.h).
 *
 *     if (cg_ctx_create(&ctx, NULL) != CG_OK)
 *         fprintf(stderr, "clgrad: %s\n", cg_last_error(NULL));
 */
#ifndef CLGRAD_STATUS_H
#define CLGRAD_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CG_BUILDING_LIBRARY)
#define CG_API __attribute__((visibility("default")))
#else
#define CG_API
#endif

typedef enum cg_status {
    CG_OK = 0,
    CG_STATUS_INVALID_ARGUMENT,  /* a bad value from the caller           */
    CG_STATUS_SHAPE_MISMATCH,    /* shapes that do not fit together       */
    CG_STATUS_OUT_OF_MEMORY,     /* host or device allocation failed      */
    CG_STATUS_BACKEND_NOT_FOUND, /* no such backend, or it cannot load    */
    CG_STATUS_DEVICE_NOT_FOUND,  /* no such device on the chosen backend  */
    CG_STATUS_PLUGIN_INVALID,    /* file is not a clgrad plugin           */
    CG_STATUS_ABI_MISMATCH,      /* plugin built for another ABI version  */
    CG_STATUS_BACKEND_ERROR,     /* the device or its driver failed       */
    CG_STATUS_IO_ERROR,          /* a file could not be read or written   */
    CG_STATUS_PARSE_ERROR,       /* malformed input data                  */
    CG_STATUS_UNSUPPORTED,       /* not implemented by this backend       */
    CG_STATUS_MISSING_VALUE,     /* input data lacks a value (an empty CSV
                                    cell) and the caller's policy is to fail */
    CG_STATUS_COUNT
} cg_status;

/* A short constant name for a status, e.g. "CG_STATUS_SHAPE_MISMATCH". */
CG_API const char *cg_status_str(cg_status status);

#ifdef __cplusplus
}
#endif
#endif
