/*
 * backends/opencl/kernels.c — kernel objects (created on first use, with
 * their program) and launch sizes; queue.c launches them.
 *
 *     struct cg_cl_arg args[] = {CG_ARG(mem), CG_ARG(off), CG_ARG(n)};
 *     return cg_cl_launch_n(cl, CG_CL_K_FILL_FLAT, args, 3, n);
 *
 * Kernels loop with a grid stride, so a launch is sized to fill the device
 * (cg_cl_groups_for), not to the element count: the global size never
 * overflows and very large tensors need no special case.
 */
#include "cl_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    enum cg_cl_prog prog;
    const char *name;
} kernel_table[CG_CL_K_COUNT] = {
    [CG_CL_K_EW_FLAT] = {CG_CL_PROG_EW, "ew_flat"},
    [CG_CL_K_EW_STRIDED] = {CG_CL_PROG_EW, "ew_strided"},
    [CG_CL_K_FILL_FLAT] = {CG_CL_PROG_EW, "fill_flat"},
    [CG_CL_K_FILL_STRIDED] = {CG_CL_PROG_EW, "fill_strided"},
    [CG_CL_K_REDUCE_ITEM] = {CG_CL_PROG_REDUCE, "reduce_item"},
    [CG_CL_K_REDUCE_GROUP] = {CG_CL_PROG_REDUCE, "reduce_group"},
    [CG_CL_K_SOFTMAX_FWD] = {CG_CL_PROG_SOFTMAX, "softmax_fwd"},
    [CG_CL_K_SOFTMAX_BWD] = {CG_CL_PROG_SOFTMAX, "softmax_bwd"},
    [CG_CL_K_INDEX_ROWS] = {CG_CL_PROG_INDEX, "index_rows"},
    [CG_CL_K_INDEX_ROWS_ADD] = {CG_CL_PROG_INDEX, "index_rows_add"},
    [CG_CL_K_PICK] = {CG_CL_PROG_INDEX, "pick"},
    [CG_CL_K_PICK_ADD] = {CG_CL_PROG_INDEX, "pick_add"},
    [CG_CL_K_OPTIM_SGD] = {CG_CL_PROG_OPTIM, "optim_sgd"},
    [CG_CL_K_OPTIM_ADAM] = {CG_CL_PROG_OPTIM, "optim_adam"},
    [CG_CL_K_OPTIM_RMSPROP] = {CG_CL_PROG_OPTIM, "optim_rmsprop"},
    [CG_CL_K_OPTIM_SGD_MULTI] = {CG_CL_PROG_OPTIM, "optim_sgd_multi"},
    [CG_CL_K_OPTIM_ADAM_MULTI] = {CG_CL_PROG_OPTIM, "optim_adam_multi"},
    [CG_CL_K_OPTIM_RMSPROP_MULTI] = {CG_CL_PROG_OPTIM, "optim_rmsprop_multi"},
    [CG_CL_K_OPTIM_SGD_ITEM] = {CG_CL_PROG_OPTIM, "optim_sgd_item"},
    [CG_CL_K_OPTIM_ADAM_ITEM] = {CG_CL_PROG_OPTIM, "optim_adam_item"},
    [CG_CL_K_OPTIM_RMSPROP_ITEM] = {CG_CL_PROG_OPTIM, "optim_rmsprop_item"},
    [CG_CL_K_IM2COL] = {CG_CL_PROG_CONV, "im2col"},
    [CG_CL_K_COL2IM] = {CG_CL_PROG_CONV, "col2im"},
    [CG_CL_K_POOL2D] = {CG_CL_PROG_CONV, "pool2d"},
    [CG_CL_K_POOL2D_BACKWARD] = {CG_CL_PROG_CONV, "pool2d_backward"},
    [CG_CL_K_LSTM_CELL_FWD] = {CG_CL_PROG_RNN, "lstm_cell_fwd"},
    [CG_CL_K_LSTM_CELL_BWD] = {CG_CL_PROG_RNN, "lstm_cell_bwd"},
    [CG_CL_K_SOFTMAX_CAUSAL] = {CG_CL_PROG_SOFTMAX, "softmax_causal"},
    [CG_CL_K_BIAS_GELU_FWD] = {CG_CL_PROG_SEQ, "bias_gelu_fwd"},
    [CG_CL_K_BIAS_GELU_BWD] = {CG_CL_PROG_SEQ, "bias_gelu_bwd"},
    [CG_CL_K_LAYERNORM_FWD] = {CG_CL_PROG_NORM, "layernorm_fwd"},
    [CG_CL_K_LAYERNORM_FWD_1] = {CG_CL_PROG_NORM, "layernorm_fwd_1"},
    [CG_CL_K_LAYERNORM_BWD] = {CG_CL_PROG_NORM, "layernorm_bwd"},
    [CG_CL_K_LAYERNORM_BWD_1] = {CG_CL_PROG_NORM, "layernorm_bwd_1"},
    [CG_CL_K_LAYERNORM_FWD_ROW] = {CG_CL_PROG_NORM, "layernorm_fwd_row"},
    [CG_CL_K_LAYERNORM_BWD_ROW] = {CG_CL_PROG_NORM, "layernorm_bwd_row"},
    [CG_CL_K_LAYERNORM_BWD_COLS_ROW] = {CG_CL_PROG_NORM, "layernorm_bwd_cols_row"},
    [CG_CL_K_LAYERNORM_BWD_COLS] = {CG_CL_PROG_NORM, "layernorm_bwd_cols"},
    [CG_CL_K_LAYERNORM_BWD_COMBINE] = {CG_CL_PROG_NORM, "layernorm_bwd_combine"},
    [CG_CL_K_GEMM_OUTER] = {CG_CL_PROG_GEMM, "gemm_outer"},
    [CG_CL_K_GEMM_DOT] = {CG_CL_PROG_GEMM, "gemm_dot"},
    [CG_CL_K_GEMM_PACK] = {CG_CL_PROG_GEMM, "gemm_pack"},
};
_Static_assert(sizeof(kernel_table) / sizeof(kernel_table[0]) == CG_CL_K_COUNT,
               "one entry per kernel");

static cg_status build_program(struct cg_cl *cl, enum cg_cl_prog p)
{
    if (cl->programs[p])
        return CG_OK;
    char options[256];
    int from_cache;
    cg_cl_build_options(&cl->dev, p, options, sizeof options);
    return cg_cl_program_build(&cl->dev, cg_cl_programs[p].name, cg_cl_programs[p].source,
                               options, &cl->programs[p], &from_cache, cl->err,
                               sizeof cl->err);
}

cg_status cg_cl_kernel(struct cg_cl *cl, enum cg_cl_kern k, struct cg_cl_kref *out)
{
    if (!cl->kernels[k]) {
        enum cg_cl_prog p = kernel_table[k].prog;
        cg_status st = build_program(cl, p);
        if (st != CG_OK)
            return st;
        cl_int rc;
        cl_kernel kern = clCreateKernel(cl->programs[p], kernel_table[k].name, &rc);
        if (rc != CL_SUCCESS) {
            char what[96];
            snprintf(what, sizeof what, "clCreateKernel(%s)", kernel_table[k].name);
            return cg_cl_fail(cl->err, sizeof cl->err, what, rc);
        }
        size_t wg = 0;
        if (clGetKernelWorkGroupInfo(kern, cl->dev.device, CL_KERNEL_WORK_GROUP_SIZE,
                                     sizeof wg, &wg, NULL) != CL_SUCCESS || wg == 0)
            wg = 1;
        cl->kernels[k] = kern;
        cl->kernel_wg[k] = wg < cl->max_wg ? wg : cl->max_wg;
    }
    size_t l = 256;
    while (l > cl->kernel_wg[k])
        l /= 2;     /* a power of two: the tree reductions need one */
    *out = (struct cg_cl_kref){.kern = cl->kernels[k], .name = kernel_table[k].name,
                               .k = (int)k, .local = l ? l : 1, .wg = cl->kernel_wg[k]};
    return CG_OK;
}

void cg_cl_kernels_release(struct cg_cl *cl)
{
    for (int k = 0; k < CG_CL_K_COUNT; ++k)
        if (cl->kernels[k])
            clReleaseKernel(cl->kernels[k]);
    for (int p = 0; p < CG_CL_PROG_COUNT; ++p)
        if (cl->programs[p])
            clReleaseProgram(cl->programs[p]);
}

size_t cg_cl_local_size(struct cg_cl *cl, enum cg_cl_kern k)
{
    struct cg_cl_kref kr = {0};
    return cg_cl_kernel(cl, k, &kr) == CG_OK ? kr.local : 1;   /* the launch that
                                                                  follows reports an error */
}

size_t cg_cl_groups_for(struct cg_cl *cl, int64_t n, size_t local)
{
    /* 16 groups per compute unit keeps a GPU busy and hides latency; the
     * grid-stride loops take the rest. A CPU device (PoCL) runs a
     * work-group as a loop over its work-items, which it vectorises only
     * when the kernel body is straight-line code: there one element per
     * work-item is several times faster than a grid-stride loop per
     * work-item (Adam over the MLP's 235k parameters: 43% of a step before),
     * so the cap only keeps the global size in range. */
    int64_t cap = cl->cpu_device ? (int64_t)1 << 24 : (int64_t)cl->compute_units * 16;
    int64_t need = (n + (int64_t)local - 1) / (int64_t)local;
    if (need < 1)
        need = 1;
    return (size_t)(need < cap ? need : cap);
}

size_t cg_cl_pow2_divisor(size_t n, size_t cap)
{
    size_t d = 1;
    while (d * 2 <= cap && n % (d * 2) == 0)
        d *= 2;
    return d;
}

/* CLGRAD_VERBOSE: kernels enqueued since open (CLBlast's not included),
 * at close. */
void cg_cl_kernels_report(struct cg_cl *cl)
{
    if (!cl->cfg.verbose)
        return;
    fprintf(stderr, "clgrad opencl: %llu kernels enqueued:",
            (unsigned long long)cl->device_launches);
    for (int k = 0; k < CG_CL_K_COUNT; ++k)
        if (cl->kernel_launches[k])
            fprintf(stderr, " %s %llu,", kernel_table[k].name,
                    (unsigned long long)cl->kernel_launches[k]);
    fprintf(stderr, " ew_fused %llu (%llu ops)\n", (unsigned long long)cl->fused_launches,
            (unsigned long long)cl->fused_ops);
}
