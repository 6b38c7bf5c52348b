/*
 * backends/opencl/opencl.c — the opencl backend plugin: vtable and entry
 * point, device listing, open/close, finish and stats.
 *
 * Devices are numbered over all platforms in order (platform 0's devices,
 * then platform 1's, ...). An instance owns one context and one in-order
 * queue on its device; primitives only enqueue, and download()/finish() are
 * the only waits (uploads copy small sources aside and do not wait either,
 * pool.c). Elementwise ops and optimizer updates are deferred and fused
 * (fuse.c, optim.c): every entry point here that enqueues anything else
 * flushes them first. Programs build on first use (program.c) and their
 * binaries are cached on disk, so a second run starts without compiling.
 */
#include "cl_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CG_CL_MAX_DEVICES 64

cg_status cg_cl_errorf(struct cg_cl *cl, cg_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cl->err, sizeof cl->err, fmt, ap);
    va_end(ap);
    return status;
}

/* The flattened device list. A machine without any OpenCL platform (the
 * ICD loader says CL_PLATFORM_NOT_FOUND_KHR, -1001) has zero devices. */
static cg_status devices_enumerate(cl_platform_id *plats, cl_device_id *devs, int *count,
                                   char *err, size_t err_len)
{
    cl_platform_id pl[16];
    cl_uint np = 0;
    *count = 0;
    cl_int rc = clGetPlatformIDs(16, pl, &np);
    if (rc == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (rc == CL_SUCCESS && np == 0))
        return CG_OK;
    if (rc != CL_SUCCESS)
        return cg_cl_fail(err, err_len, "clGetPlatformIDs", rc);
    if (np > 16)
        np = 16;
    for (cl_uint p = 0; p < np && *count < CG_CL_MAX_DEVICES; ++p) {
        cl_uint nd = 0;
        rc = clGetDeviceIDs(pl[p], CL_DEVICE_TYPE_ALL, (cl_uint)(CG_CL_MAX_DEVICES - *count),
                            devs + *count, &nd);
        if (rc == CL_DEVICE_NOT_FOUND)
            continue;
        if (rc != CL_SUCCESS)
            return cg_cl_fail(err, err_len, "clGetDeviceIDs", rc);
        if (nd > (cl_uint)(CG_CL_MAX_DEVICES - *count))
            nd = (cl_uint)(CG_CL_MAX_DEVICES - *count);
        for (cl_uint d = 0; d < nd; ++d)
            plats[*count + (int)d] = pl[p];
        *count += (int)nd;
    }
    return CG_OK;
}

static void device_str(cl_device_id dev, cl_device_info what, char *out, size_t len)
{
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, len, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[len - 1] = '\0';
}

static void platform_str(cl_platform_id p, cl_platform_info what, char *out, size_t len)
{
    out[0] = '\0';
    if (clGetPlatformInfo(p, what, len, out, NULL) != CL_SUCCESS)
        out[0] = '\0';
    out[len - 1] = '\0';
}

static void device_describe(cl_platform_id plat, cl_device_id dev, struct cg_device_info *o)
{
    char pver[128], drv[120];
    cl_device_type type = 0;
    cl_ulong mem = 0;
    cl_uint cu = 0;
    memset(o, 0, sizeof *o);
    device_str(dev, CL_DEVICE_NAME, o->name, sizeof o->name);
    device_str(dev, CL_DEVICE_VENDOR, o->vendor, sizeof o->vendor);
    platform_str(plat, CL_PLATFORM_VERSION, pver, sizeof pver);
    device_str(dev, CL_DRIVER_VERSION, drv, sizeof drv);
    snprintf(o->version, sizeof o->version, "%s, driver %s", pver, drv);
    clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
    o->type = (type & CL_DEVICE_TYPE_GPU)           ? CG_DEVICE_GPU
              : (type & CL_DEVICE_TYPE_CPU)         ? CG_DEVICE_CPU
              : (type & CL_DEVICE_TYPE_ACCELERATOR) ? CG_DEVICE_ACCELERATOR
                                                    : CG_DEVICE_OTHER;
    o->global_mem_bytes = mem;
    o->compute_units = cu;
}

static cg_status list_devices(struct cg_device_info *out, int max, int *count,
                              char *err, size_t err_len)
{
    cl_platform_id plats[CG_CL_MAX_DEVICES];
    cl_device_id devs[CG_CL_MAX_DEVICES];
    int n = 0;
    cg_status st = devices_enumerate(plats, devs, &n, err, err_len);
    *count = n;
    if (st != CG_OK)
        return st;
    for (int i = 0; i < n && i < max && out; ++i)
        device_describe(plats[i], devs[i], &out[i]);
    return CG_OK;
}

static int preferred_device(void)
{
    cl_platform_id plats[CG_CL_MAX_DEVICES];
    cl_device_id devs[CG_CL_MAX_DEVICES];
    char err[256];
    int n = 0;
    if (devices_enumerate(plats, devs, &n, err, sizeof err) != CG_OK)
        return -1;
    for (int i = 0; i < n; ++i) {
        cl_device_type type = 0;
        if (clGetDeviceInfo(devs[i], CL_DEVICE_TYPE, sizeof type, &type, NULL) == CL_SUCCESS &&
            (type & CL_DEVICE_TYPE_GPU))
            return i;
    }
    return -1;
}

/* "OpenCL C 1.2 ..." -> 12. */
static int c_version(cl_device_id dev)
{
    char s[256];
    int major = 1, minor = 0;
    device_str(dev, CL_DEVICE_OPENCL_C_VERSION, s, sizeof s);
    if (sscanf(s, "OpenCL C %d.%d", &major, &minor) != 2)
        return 10;
    return major * 10 + minor;
}

static void instance_close(void *ctx);

/* Checks the device can run the kernels: they need 64-bit integers (absent
 * from the embedded profile unless cles_khr_int64) and OpenCL C >= 1.1
 * (32-bit global atomics are core there). */
static cg_status device_probe(struct cg_cl *cl)
{
    char profile[64], *ext;
    size_t n = 0;
    cl_bool avail = CL_FALSE;
    clGetDeviceInfo(cl->dev.device, CL_DEVICE_AVAILABLE, sizeof avail, &avail, NULL);
    if (!avail)
        return cg_cl_errorf(cl, CG_STATUS_DEVICE_NOT_FOUND,
                            "opencl: device \"%s\" is not available", cl->dev.name);
    if (cl->dev.c_version < 11)
        return cg_cl_errorf(cl, CG_STATUS_UNSUPPORTED,
                            "opencl: device \"%s\" supports only OpenCL C 1.0", cl->dev.name);
    device_str(cl->dev.device, CL_DEVICE_PROFILE, profile, sizeof profile);
    if (strcmp(profile, "EMBEDDED_PROFILE") != 0)
        return CG_OK;
    CG_CL_TRY(cl->err, clGetDeviceInfo(cl->dev.device, CL_DEVICE_EXTENSIONS, 0, NULL, &n));
    ext = calloc(1, n + 1);
    if (!ext)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "opencl: out of host memory");
    clGetDeviceInfo(cl->dev.device, CL_DEVICE_EXTENSIONS, n, ext, NULL);
    int ok = strstr(ext, "cles_khr_int64") != NULL;
    free(ext);
    if (!ok)
        return cg_cl_errorf(cl, CG_STATUS_UNSUPPORTED,
                            "opencl: device \"%s\" (embedded profile) lacks cles_khr_int64",
                            cl->dev.name);
    return CG_OK;
}

/* The switches, by device type unless the environment sets them: 0 or 1,
 * anything else is named on stderr and the default kept. */
static void read_config(struct cg_cl *cl)
{
    struct cg_cl_config *c = &cl->cfg;
    c->fuse = cg_cl_env_bool("CLGRAD_FUSE", 1);
    /* A CPU device runs the *_multi kernels' per-slot loops as scalar code
     * (PoCL vectorises across work-items only over straight-line bodies),
     * so there one launch per tensor is faster (PoCL MLP: 16k -> 23k
     * samples/s). Batching is part of deferral: off with CLGRAD_FUSE=0. */
    c->optim_batch = c->fuse && cg_cl_env_bool("CLGRAD_OPTIM_BATCH", !cl->cpu_device);
    /* The fused kernel's form (fuse.c): a grid-stride loop on GPUs, one
     * element per work-item on a CPU device, as every flat kernel there
     * (cg_cl_groups_for); CLGRAD_FUSE_LOOP=1 or 0 picks one. */
    c->fuse_per_item = !cg_cl_env_bool("CLGRAD_FUSE_LOOP", !cl->cpu_device);
    c->ln_row_items = cg_cl_env_bool("CLGRAD_LN_ROW_ITEMS", cl->cpu_device);
    c->verbose = cg_cl_env_bool("CLGRAD_VERBOSE", 0);
}

static cg_status instance_init(struct cg_cl *cl, cl_platform_id plat, cl_device_id dev)
{
    char pname[128], pver[120];
    cl_int rc;
    cl->dev.platform = plat;
    cl->dev.device = dev;
    device_str(dev, CL_DEVICE_NAME, cl->dev.name, sizeof cl->dev.name);
    device_str(dev, CL_DRIVER_VERSION, cl->dev.driver, sizeof cl->dev.driver);
    platform_str(plat, CL_PLATFORM_NAME, pname, sizeof pname);
    platform_str(plat, CL_PLATFORM_VERSION, pver, sizeof pver);
    snprintf(cl->dev.platform_name, sizeof cl->dev.platform_name, "%s %s", pname, pver);
    cl->dev.c_version = c_version(dev);
    CG_CL_TRY(cl->err, clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS,
                                       sizeof cl->compute_units, &cl->compute_units, NULL));
    CG_CL_TRY(cl->err, clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof cl->max_wg,
                                       &cl->max_wg, NULL));
    CG_CL_TRY(cl->err, clGetDeviceInfo(dev, CL_DEVICE_MAX_PARAMETER_SIZE, sizeof cl->max_param,
                                       &cl->max_param, NULL));
    CG_CL_TRY(cl->err, clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof cl->max_alloc,
                                       &cl->max_alloc, NULL));
    CG_CL_TRY(cl->err, clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof cl->mem_limit,
                                       &cl->mem_limit, NULL));
    /* A lower ceiling for the pool, in MiB (tests; sharing a device). */
    long long mb = cg_cl_env_int("CLGRAD_CL_MEM_MB", 1, (long long)(cl->mem_limit >> 20),
                                 (long long)(cl->mem_limit >> 20));
    cl->mem_limit_what = "CL_DEVICE_GLOBAL_MEM_SIZE";
    if ((cl_ulong)mb < cl->mem_limit >> 20) {
        cl->mem_limit = (cl_ulong)mb << 20;
        cl->mem_limit_what = "CLGRAD_CL_MEM_MB";
    }
    cl_device_type type = 0;
    CG_CL_TRY(cl->err, clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof type, &type, NULL));
    cl->cpu_device = (type & CL_DEVICE_TYPE_CPU) != 0;
    read_config(cl);
    if (cl->compute_units == 0)
        cl->compute_units = 1;
    if (cl->max_wg == 0)
        cl->max_wg = 1;
    cg_status st = device_probe(cl);
    if (st == CG_OK)
        st = cg_cl_fuse_init(cl);
    if (st != CG_OK)
        return st;

    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)plat, 0};
    cl->dev.context = clCreateContext(props, 1, &dev, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        cl->dev.context = NULL;
        return cg_cl_fail(cl->err, sizeof cl->err, "clCreateContext", rc);
    }
    cl->queue = clCreateCommandQueue(cl->dev.context, dev, 0, &rc);  /* in-order */
    if (rc != CL_SUCCESS) {
        cl->queue = NULL;
        return cg_cl_fail(cl->err, sizeof cl->err, "clCreateCommandQueue", rc);
    }
    cg_cl_tune_apply(&cl->dev);   /* stored CLBlast GEMM parameters (tune.c) */
    return CG_OK;
}

static cg_status instance_open(int device, void **ctx, char *err, size_t err_len)
{
    cl_platform_id plats[CG_CL_MAX_DEVICES];
    cl_device_id devs[CG_CL_MAX_DEVICES];
    int n = 0;
    *ctx = NULL;
    cg_status st = devices_enumerate(plats, devs, &n, err, err_len);
    if (st != CG_OK)
        return st;
    if (device < 0 || device >= n)
        return cg_cl_failf(err, err_len, CG_STATUS_DEVICE_NOT_FOUND,
                           "opencl: no device %d (%d device%s found)", device, n,
                           n == 1 ? "" : "s");
    struct cg_cl *cl = calloc(1, sizeof *cl);
    if (!cl)
        return cg_cl_failf(err, err_len, CG_STATUS_OUT_OF_MEMORY,
                           "opencl: out of host memory");
    cg_cl_clblast_ref();
    st = instance_init(cl, plats[device], devs[device]);
    if (st != CG_OK) {
        snprintf(err, err_len, "%s", cl->err);
        instance_close(cl);
        return st;
    }
    *ctx = cl;
    return CG_OK;
}

static void instance_close(void *ctx)
{
    struct cg_cl *cl = ctx;
    if (!cl)
        return;
    if (cl->queue) {
        cg_cl_wait(cl);   /* the user's last ops still run, as before fusion */
        cg_cl_stage_reap(cl, 1);
        cg_cl_kernels_report(cl);
    }
    cg_cl_fuse_release(cl);
    cg_cl_host_free_all(cl);
    cg_cl_pool_free_all(cl);
    cg_cl_gemm_release(cl);
    cg_cl_kernels_release(cl);
    if (cl->queue)
        clReleaseCommandQueue(cl->queue);
    if (cl->dev.context)
        clReleaseContext(cl->dev.context);
    cg_cl_clblast_unref();
    free(cl);
}

static const char *instance_last_error(void *ctx)
{
    struct cg_cl *cl = ctx;
    return cl ? cl->err : "";
}

static cg_status instance_finish(void *ctx)
{
    struct cg_cl *cl = ctx;
    cg_status st = cg_cl_wait(cl);
    cg_cl_stage_reap(cl, 1);
    return st;
}

/* Only reads the counters. Pending chains and batches were counted when
 * their calls joined them, and flushing them changes no counter, so there
 * is no flush here: one would fail where no status can be returned, and
 * its ops would be lost (tests/test_cl_errors.c). The next call that
 * enqueues anything flushes them and reports any error. */
static void instance_get_stats(void *ctx, struct cg_backend_stats *out)
{
    struct cg_cl *cl = ctx;
    *out = cl->stats;
}

static void instance_reset_stats(void *ctx)
{
    struct cg_cl *cl = ctx;
    struct cg_backend_stats s = {0};
    s.bytes_in_use = cl->stats.bytes_in_use;
    s.bytes_peak = cl->stats.bytes_in_use;
    s.bytes_reserved = cl->stats.bytes_reserved;
    cl->stats = s;
}

static const struct cg_backend_i backend_i = {
    .abi_version = CG_BACKEND_ABI_VERSION,
    .struct_size = sizeof(struct cg_backend_i),
    .name = "opencl",
    .description = "OpenCL 1.2 devices (GPUs, or CPUs through PoCL); GEMM by CLBlast",
    .list_devices = list_devices,
    .preferred_device = preferred_device,
    .open = instance_open,
    .close = instance_close,
    .last_error = instance_last_error,
    .alloc = cg_cl_alloc,
    .release = cg_cl_release,
    .upload = cg_cl_upload,
    .download = cg_cl_download,
    .copy = cg_cl_copy,
    .fill = cg_cl_fill,
    .ew = cg_cl_ew,
    .reduce = cg_cl_reduce,
    .gemm = cg_cl_gemm,
    .softmax = cg_cl_softmax,
    .softmax_backward = cg_cl_softmax_backward,
    .index_rows = cg_cl_index_rows,
    .index_rows_add = cg_cl_index_rows_add,
    .pick = cg_cl_pick,
    .pick_add = cg_cl_pick_add,
    .optim_update = cg_cl_optim_update,
    .finish = instance_finish,
    .get_stats = instance_get_stats,
    .reset_stats = instance_reset_stats,
    .im2col = cg_cl_im2col,
    .col2im = cg_cl_col2im,
    .pool2d = cg_cl_pool2d,
    .pool2d_backward = cg_cl_pool2d_backward,
    .lstm_cell = cg_cl_lstm_cell,
    .lstm_cell_backward = cg_cl_lstm_cell_backward,
    .softmax_causal = cg_cl_softmax_causal,
    .bias_gelu = cg_cl_bias_gelu,
    .bias_gelu_backward = cg_cl_bias_gelu_backward,
    .layernorm = cg_cl_layernorm,
    .layernorm_backward = cg_cl_layernorm_backward,
    .download_async = cg_cl_download_async,
    .download_poll = cg_cl_download_poll,
    .host_alloc = cg_cl_host_alloc,
    .host_free = cg_cl_host_free,
};

/* The plugin's only exported symbol. */
CG_BACKEND_EXPORT const struct cg_backend_i *cg_backend_entry(void);
CG_BACKEND_EXPORT const struct cg_backend_i *cg_backend_entry(void)
{
    return &backend_i;
}
