/*
 * backends/opencl/optim.c — one fused kernel launch per optimizer update
 * (cl/optim.cl cites the torch.optim formulas). Host side: validate, pick
 * the kernel, and turn Adam's bias corrections into the two scalars the
 * kernel needs, in double precision as PyTorch computes them in Python.
 */
#include "cl_backend.h"

#include <math.h>
#include <stdio.h>

static cg_status cg_state(struct cg_cl *cl, const char *what, struct cg_ptr *state,
                          int i, int needed, int64_t n, struct cg_ptr param,
                          cl_mem *mem, cl_long *off)
{
    if (!needed) {   /* unused: any valid buffer keeps the kernel args legal */
        *mem = param.buf->mem;
        *off = 0;
        return CG_OK;
    }
    if (!state || !state[i].buf)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: state[%d] is NULL", what,
                            i);
    char arg[16];
    snprintf(arg, sizeof arg, "state[%d]", i);
    cg_status st = cg_cl_check_range(cl, what, arg, state[i], n);
    *mem = state[i].buf->mem;
    *off = state[i].off;
    return st;
}

cg_status cg_ocl_optim_update(void *ctx, const struct cg_optim_hparams *h,
                              struct cg_ptr param, struct cg_ptr grad,
                              struct cg_ptr state[3], int64_t n)
{
    struct cg_cl *cl = ctx;
    if (!h)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "optim_update: NULL hparams");
    if (n < 0)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "optim_update: n = %lld",
                            (long long)n);
    if (n == 0)
        return CG_OK;
    cg_status st = cg_cl_check_range(cl, "optim_update", "param", param, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "optim_update", "grad", grad, n);
    if (st != CG_OK)
        return st;
    cl_long po = param.off, go = grad.off, cn = n;
    cl_mem s0, s1, s2;
    cl_long o0, o1, o2;

    switch (h->kind) {
    case CG_OPTIM_SGD: {
        st = cg_state(cl, "optim_update(sgd)", state, 0, h->momentum != 0.0f, n, param, &s0,
                      &o0);
        if (st != CG_OK)
            return st;
        cl_int nesterov = h->nesterov != 0, first = h->step <= 1;
        struct cg_cl_arg args[] = {CG_ARG(param.buf->mem), CG_ARG(po), CG_ARG(grad.buf->mem),
                                   CG_ARG(go), CG_ARG(s0), CG_ARG(o0), CG_ARG(cn),
                                   CG_ARG(h->lr), CG_ARG(h->weight_decay),
                                   CG_ARG(h->momentum), CG_ARG(h->dampening),
                                   CG_ARG(nesterov), CG_ARG(first)};
        return cg_cl_launch_n(cl, CG_CL_K_OPTIM_SGD, args, 13, n);
    }
    case CG_OPTIM_ADAM: {
        st = cg_state(cl, "optim_update(adam)", state, 0, 1, n, param, &s0, &o0);
        if (st == CG_OK)
            st = cg_state(cl, "optim_update(adam)", state, 1, 1, n, param, &s1, &o1);
        if (st != CG_OK)
            return st;
        if (!(h->bias_correction1 > 0.0f) || !(h->bias_correction2 > 0.0f))
            return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                                "optim_update(adam): bias corrections must be > 0 "
                                "(got %g, %g; step %lld)",
                                (double)h->bias_correction1, (double)h->bias_correction2,
                                (long long)h->step);
        /* torch.optim.Adam: step_size = lr / bias_correction1,
         * bias_correction2_sqrt = sqrt(bias_correction2). */
        cl_float step_size = (cl_float)((double)h->lr / (double)h->bias_correction1);
        cl_float bc2_sqrt = (cl_float)sqrt((double)h->bias_correction2);
        cl_int decoupled = h->decoupled_weight_decay != 0;
        struct cg_cl_arg args[] = {CG_ARG(param.buf->mem), CG_ARG(po), CG_ARG(grad.buf->mem),
                                   CG_ARG(go), CG_ARG(s0), CG_ARG(o0), CG_ARG(s1),
                                   CG_ARG(o1), CG_ARG(cn), CG_ARG(h->lr),
                                   CG_ARG(h->weight_decay), CG_ARG(h->beta1),
                                   CG_ARG(h->beta2), CG_ARG(h->eps), CG_ARG(decoupled),
                                   CG_ARG(step_size), CG_ARG(bc2_sqrt)};
        return cg_cl_launch_n(cl, CG_CL_K_OPTIM_ADAM, args, 17, n);
    }
    case CG_OPTIM_RMSPROP: {
        const char *w = "optim_update(rmsprop)";
        st = cg_state(cl, w, state, 0, 1, n, param, &s0, &o0);
        if (st == CG_OK)
            st = cg_state(cl, w, state, 1, h->momentum > 0.0f, n, param, &s1, &o1);
        if (st == CG_OK)
            st = cg_state(cl, w, state, 2, h->centered != 0, n, param, &s2, &o2);
        if (st != CG_OK)
            return st;
        cl_int centered = h->centered != 0;
        struct cg_cl_arg args[] = {CG_ARG(param.buf->mem), CG_ARG(po), CG_ARG(grad.buf->mem),
                                   CG_ARG(go), CG_ARG(s0), CG_ARG(o0), CG_ARG(s1),
                                   CG_ARG(o1), CG_ARG(s2), CG_ARG(o2), CG_ARG(cn),
                                   CG_ARG(h->lr), CG_ARG(h->weight_decay),
                                   CG_ARG(h->alpha), CG_ARG(h->eps), CG_ARG(h->momentum),
                                   CG_ARG(centered)};
        return cg_cl_launch_n(cl, CG_CL_K_OPTIM_RMSPROP, args, 17, n);
    }
    default:
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "optim_update: unknown optimizer kind %d", (int)h->kind);
    }
}
