/*
 * backends/opencl/cl_tune.h — CLBlast GEMM tuning (tune.c): the search,
 * the stored result's file, and the device a build or a search runs on.
 * The interface tools/clgrad-tune and tests/test_gemm_tune use; it needs
 * nothing of the plugin's instance (cl_backend.h, which includes this).
 */
#ifndef CG_OPENCL_TUNE_H
#define CG_OPENCL_TUNE_H

#include <stdint.h>
#include <stdio.h>

#include "cl_error.h"

/* What a program build depends on besides its source. */
struct cg_cl_device {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    char name[256];            /* CL_DEVICE_NAME                       */
    char driver[256];          /* CL_DRIVER_VERSION                    */
    char platform_name[256];   /* CL_PLATFORM_NAME + CL_PLATFORM_VERSION */
    int c_version;             /* OpenCL C version * 10 (12 for 1.2)   */
};

/* ---- CLBlast GEMM tuning (tune.c) ------------------------------------ */

/* CLBlast's Xgemm kernel parameters (1.5.x), in this order. */
enum cg_cl_gemm_param {
    CG_GP_GEMMK, CG_GP_KREG, CG_GP_KWG, CG_GP_KWI, CG_GP_MDIMA, CG_GP_MDIMC,
    CG_GP_MWG, CG_GP_NDIMB, CG_GP_NDIMC, CG_GP_NWG, CG_GP_SA, CG_GP_SB,
    CG_GP_STRM, CG_GP_STRN, CG_GP_VWM, CG_GP_VWN, CG_CL_GEMM_NPARAMS
};
extern const char *const cg_cl_gemm_param_names[CG_CL_GEMM_NPARAMS];
struct cg_cl_gemm_params {
    size_t v[CG_CL_GEMM_NPARAMS];
};

struct cg_cl_tune_opts {
    int n;                     /* timed GEMM is n x n x n (0: 1024)     */
    double budget_s;           /* no new candidate after this (0: 240)  */
    int max_candidates;        /* 0: all                                */
    int threshold;             /* also tune XGEMM_MIN_INDIRECT_SIZE     */
    FILE *log;                 /* one line per candidate; NULL: quiet   */
};
struct cg_cl_tune_result {
    int found;                 /* params beat the baseline and verified */
    struct cg_cl_gemm_params params;
    size_t min_indirect;       /* XGEMM_MIN_INDIRECT_SIZE; 0: CLBlast's */
    int n;
    double gflops, baseline_gflops, seconds;
    int tried, rejected;
};

/* "1.5.3": the CLBlast version built against (part of the stored key). */
const char *cg_cl_clblast_version(void);
/* 1 when p satisfies CLBlast's constraints and the device's limits, else
 * 0 with the reason in why. */
int cg_cl_gemm_params_check(const struct cg_cl_gemm_params *p, size_t max_wg,
                            size_t local_mem, char *why, size_t len);
void cg_cl_gemm_params_format(const struct cg_cl_gemm_params *p, char *out, size_t len);
/* The built-in first-stage candidates (CPU-style first when cpu). */
int cg_cl_tune_candidates(int cpu, struct cg_cl_gemm_params *out, int cap);
/* Where the result for dev is stored ("" when there is no cache folder). */
void cg_cl_tune_path(const struct cg_cl_device *dev, char *out, size_t len);
cg_status cg_cl_tune_save(const struct cg_cl_device *dev, const struct cg_cl_tune_result *r,
                          char *err, size_t len);
/* The stored parameters, when the file exists, matches dev, the driver and
 * the CLBlast version, and its parameters pass the check. */
cg_status cg_cl_tune_load(const struct cg_cl_device *dev, struct cg_cl_gemm_params *out,
                          size_t *min_indirect, char *err, size_t len);
cg_status cg_cl_gemm_params_override(const struct cg_cl_device *dev,
                                     const struct cg_cl_gemm_params *p, char *err, size_t len);
/* CLBlast's GemmRoutine XGEMM_MIN_INDIRECT_SIZE: m*n*k below its cube uses
 * the direct kernel. */
cg_status cg_cl_gemm_threshold_override(const struct cg_cl_device *dev, size_t min_indirect,
                                        char *err, size_t len);
/* At open: applies a stored result (unless CLGRAD_CLBLAST_TUNE=0); 1 when
 * applied. Failures only leave CLBlast's own parameters in place. */
int cg_cl_tune_apply(const struct cg_cl_device *dev);
/* The search (dev->context must exist). Clears CLBlast's program cache
 * between candidates; leaves the winner applied when one is found. When
 * none is, this process's CLBlast keeps the last configuration tried
 * (CLBlast's C API cannot restore its own): a tuning process should only
 * save and exit, as tools/clgrad-tune does. */
cg_status cg_cl_tune_gemm(const struct cg_cl_device *dev, const struct cg_cl_tune_opts *o,
                          struct cg_cl_tune_result *r, char *err, size_t len);
/* Result check: index of the first entry off by more than the tolerance
 * for a k-term product of values in [-1, 1], or -1. */
double cg_cl_tune_tolerance(int64_t k);
int64_t cg_cl_tune_compare(const float *c, const float *ref, int64_t count, int64_t k);
/* Device `index` numbered as the backend does, with a context (tool, test). */
cg_status cg_cl_tune_device_open(int index, struct cg_cl_device *d, char *err, size_t len);
void cg_cl_tune_device_close(struct cg_cl_device *d);

#endif
