/*
 * backends/opencl/optim.c — fused optimizer updates (cl/optim.cl cites the
 * torch.optim formulas). Host side: validate, pick the kernel, and turn
 * Adam's bias corrections into the two scalars the kernel needs, in double
 * precision as PyTorch computes them in Python.
 *
 * An optimizer step calls optim_update once per parameter, back to back,
 * with the same hyper-parameters. Launches cost more than a small tensor's
 * arithmetic on a CPU device, so the updates wait in a batch (cl->opt_batch)
 * and go out as one *_multi launch of up to CG_CL_OPTIM_BATCH tensors when
 * the batch is full, the hyper-parameters change, two updates touch the same
 * memory, or anything else is enqueued (the batch is a pending queue of
 * queue.c). A batch of one uses
 * the one-tensor kernel. Both kernels call the same per-element function,
 * so batching never changes a result.
 */
#include "cl_backend.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* Buffers and element offsets of one update, unused state entries
 * pointing at param (any valid buffer keeps the kernel args legal). */
struct cg_optim_args {
    cl_mem p, g, s[3];
    cl_long po, go, so[3], n;
};

static cg_status optim_state(struct cg_cl *cl, const char *what, struct cg_ptr *state,
                             int i, int needed, int64_t n, struct cg_ptr param,
                             struct cg_ptr *out)
{
    if (!needed) {   /* unused: any valid buffer keeps the kernel args legal */
        out->buf = param.buf;
        out->off = 0;
        return CG_OK;
    }
    if (!state || !state[i].buf)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: state[%d] is NULL", what,
                            i);
    char arg[16];
    snprintf(arg, sizeof arg, "state[%d]", i);
    *out = state[i];
    return cg_cl_check_range(cl, what, arg, state[i], n);
}

/* Validates one update and fills it in as a batch item. */
static cg_status optim_prepare(struct cg_cl *cl, const struct cg_optim_hparams *h,
                               struct cg_ptr param, struct cg_ptr grad,
                               struct cg_ptr state[3], int64_t n,
                               struct cg_cl_optim_item *it)
{
    cg_status st = cg_cl_check_range(cl, "optim_update", "param", param, n);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "optim_update", "grad", grad, n);
    if (st != CG_OK)
        return st;
    it->param = param;
    it->grad = grad;
    it->n = n;
    const char *w;
    int need[3];
    switch (h->kind) {
    case CG_OPTIM_SGD:
        w = "optim_update(sgd)";
        need[0] = h->momentum != 0.0f, need[1] = need[2] = 0;
        break;
    case CG_OPTIM_ADAM:
        w = "optim_update(adam)";
        need[0] = need[1] = 1, need[2] = 0;
        break;
    case CG_OPTIM_RMSPROP:
        w = "optim_update(rmsprop)";
        need[0] = 1, need[1] = h->momentum > 0.0f, need[2] = h->centered != 0;
        break;
    default:
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "optim_update: unknown optimizer kind %d", (int)h->kind);
    }
    for (int i = 0; i < 3 && st == CG_OK; ++i)
        st = optim_state(cl, w, state, i, need[i], n, param, &it->state[i]);
    if (st == CG_OK && h->kind == CG_OPTIM_ADAM &&
        (!(h->bias_correction1 > 0.0f) || !(h->bias_correction2 > 0.0f)))
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "optim_update(adam): bias corrections must be > 0 "
                            "(got %g, %g; step %lld)",
                            (double)h->bias_correction1, (double)h->bias_correction2,
                            (long long)h->step);
    return st;
}

static void optim_unpack(const struct cg_cl_optim_item *it, struct cg_optim_args *a)
{
    a->p = it->param.buf->mem;
    a->po = it->param.off;
    a->g = it->grad.buf->mem;
    a->go = it->grad.off;
    for (int i = 0; i < 3; ++i) {
        a->s[i] = it->state[i].buf->mem;
        a->so[i] = it->state[i].off;
    }
    a->n = it->n;
}

/* The scalar arguments shared by every tensor of a launch. */
struct cg_optim_scalars {
    cl_int nesterov, first, decoupled, centered;
    cl_float step_size, bc2_sqrt;
};

static void optim_scalars_of(const struct cg_optim_hparams *h, struct cg_optim_scalars *s)
{
    s->nesterov = h->nesterov != 0;
    s->first = h->step <= 1;
    s->decoupled = h->decoupled_weight_decay != 0;
    s->centered = h->centered != 0;
    /* torch.optim.Adam: step_size = lr / bias_correction1,
     * bias_correction2_sqrt = sqrt(bias_correction2). */
    s->step_size = (cl_float)((double)h->lr / (double)h->bias_correction1);
    s->bc2_sqrt = (cl_float)sqrt((double)h->bias_correction2);
}

/* The hyper-parameter arguments, appended at args[n]; returns the count. */
static int optim_hp_args(const struct cg_optim_hparams *h, const struct cg_optim_scalars *s,
                         struct cg_cl_arg *args, int n)
{
    switch (h->kind) {
    case CG_OPTIM_SGD:
        args[n++] = CG_ARG(h->lr);
        args[n++] = CG_ARG(h->weight_decay);
        args[n++] = CG_ARG(h->momentum);
        args[n++] = CG_ARG(h->dampening);
        args[n++] = CG_ARG(s->nesterov);
        args[n++] = CG_ARG(s->first);
        break;
    case CG_OPTIM_ADAM:
        args[n++] = CG_ARG(h->lr);
        args[n++] = CG_ARG(h->weight_decay);
        args[n++] = CG_ARG(h->beta1);
        args[n++] = CG_ARG(h->beta2);
        args[n++] = CG_ARG(h->eps);
        args[n++] = CG_ARG(s->decoupled);
        args[n++] = CG_ARG(s->step_size);
        args[n++] = CG_ARG(s->bc2_sqrt);
        break;
    default:   /* RMSProp */
        args[n++] = CG_ARG(h->lr);
        args[n++] = CG_ARG(h->weight_decay);
        args[n++] = CG_ARG(h->alpha);
        args[n++] = CG_ARG(h->eps);
        args[n++] = CG_ARG(h->momentum);
        args[n++] = CG_ARG(s->centered);
        break;
    }
    return n;
}

/* States per slot: SGD {buf}, Adam {m, v}, RMSProp {v, buf, grad_avg}. */
static int optim_nstates(enum cg_optim_kind k)
{
    return k == CG_OPTIM_SGD ? 1 : k == CG_OPTIM_ADAM ? 2 : 3;
}

/* Tensor arguments of one slot (the kernels' *_SLOT order); returns the
 * new count. */
static int optim_slot_args(const struct cg_optim_args *a, int nstates,
                           struct cg_cl_arg *args, int n)
{
    args[n++] = CG_ARG(a->p);
    args[n++] = CG_ARG(a->po);
    args[n++] = CG_ARG(a->g);
    args[n++] = CG_ARG(a->go);
    for (int i = 0; i < nstates; ++i) {
        args[n++] = CG_ARG(a->s[i]);
        args[n++] = CG_ARG(a->so[i]);
    }
    return n;
}

static const enum cg_cl_kern optim_item[] = {
    CG_CL_K_OPTIM_SGD_ITEM, CG_CL_K_OPTIM_ADAM_ITEM, CG_CL_K_OPTIM_RMSPROP_ITEM};
static const enum cg_cl_kern optim_one[] = {CG_CL_K_OPTIM_SGD, CG_CL_K_OPTIM_ADAM,
                                               CG_CL_K_OPTIM_RMSPROP};
static const enum cg_cl_kern optim_multi[] = {
    CG_CL_K_OPTIM_SGD_MULTI, CG_CL_K_OPTIM_ADAM_MULTI, CG_CL_K_OPTIM_RMSPROP_MULTI};

/* One launch for items[0..count). */
static cg_status optim_launch(struct cg_cl *cl, const struct cg_optim_hparams *h,
                              const struct cg_cl_optim_item *items, int count)
{
    struct cg_optim_scalars s;
    struct cg_optim_args a[CG_CL_OPTIM_BATCH];
    struct cg_cl_arg args[CG_CL_OPTIM_BATCH * 11 + 8];
    optim_scalars_of(h, &s);
    int ns = optim_nstates(h->kind), n = 0;
    int64_t most = 0;
    if (count == 1) {   /* the one-tensor kernel: n before the hparams */
        optim_unpack(&items[0], &a[0]);
        n = optim_slot_args(&a[0], ns, args, 0);
        args[n++] = CG_ARG(a[0].n);
        n = optim_hp_args(h, &s, args, n);
        if (!cl->cpu_device)
            return cg_cl_launch_n(cl, optim_one[h->kind], args, n, a[0].n);
        struct cg_cl_kref kr;   /* one element per work-item: see cl/optim.cl */
        cg_status st = cg_cl_kernel(cl, optim_item[h->kind], &kr);
        return st != CG_OK ? st : cg_cl_launch_exact(cl, &kr, args, n, a[0].n);
    }
    for (int k = 0; k < CG_CL_OPTIM_BATCH; ++k) {
        /* Unused slots repeat item 0's buffers with n = 0. */
        optim_unpack(&items[k < count ? k : 0], &a[k]);
        if (k >= count)
            a[k].n = 0;
        n = optim_slot_args(&a[k], ns, args, n);
        args[n++] = CG_ARG(a[k].n);
        if (a[k].n > most)
            most = a[k].n;
    }
    n = optim_hp_args(h, &s, args, n);
    return cg_cl_launch_n(cl, optim_multi[h->kind], args, n, most);
}

/* Bytes of a *_multi launch's arguments (the device must take them). */
static size_t optim_multi_bytes(enum cg_optim_kind k)
{
    return CG_CL_OPTIM_BATCH * (size_t)(2 + optim_nstates(k)) * 16 +
           CG_CL_OPTIM_BATCH * 8 + 8 * 4;
}

static int optim_same_hparams(const struct cg_optim_hparams *a,
                              const struct cg_optim_hparams *b)
{
    return a->kind == b->kind && a->lr == b->lr && a->weight_decay == b->weight_decay &&
           a->momentum == b->momentum && a->dampening == b->dampening &&
           a->nesterov == b->nesterov && a->beta1 == b->beta1 && a->beta2 == b->beta2 &&
           a->eps == b->eps && a->decoupled_weight_decay == b->decoupled_weight_decay &&
           a->alpha == b->alpha && a->centered == b->centered && a->step == b->step &&
           a->bias_correction1 == b->bias_correction1 &&
           a->bias_correction2 == b->bias_correction2;
}

static int ranges_meet(struct cg_ptr a, struct cg_ptr b, int64_t n, int64_t m)
{
    return a.buf == b.buf && a.off < b.off + m && b.off < a.off + n;
}

/* Whether it touches memory a batched item writes, or writes what one
 * reads: the updates of a batch run in no particular order. */
static int optim_conflict(const struct cg_cl *cl, const struct cg_cl_optim_item *it, int ns)
{
    for (int j = 0; j < cl->opt_batch_n; ++j) {
        const struct cg_cl_optim_item *o = &cl->opt_batch[j];
        struct cg_ptr mine[5] = {it->param, it->grad, it->state[0], it->state[1], it->state[2]};
        struct cg_ptr theirs[5] = {o->param, o->grad, o->state[0], o->state[1], o->state[2]};
        for (int x = 0; x < 2 + ns; ++x)
            for (int y = 0; y < 2 + ns; ++y)
                if ((x != 1 || y != 1) &&   /* two reads of one grad are fine */
                    ranges_meet(mine[x], theirs[y], it->n, o->n))
                    return 1;
    }
    return 0;
}

/* Launches the batch (queue.c calls this, the batch's queue taken). */
static cg_status optim_drain(struct cg_cl *cl)
{
    int count = cl->opt_batch_n;
    cl->opt_batch_n = 0;
    return count ? optim_launch(cl, &cl->opt_h, cl->opt_batch, count) : CG_OK;
}

/* The batch as a pending queue. */
static const struct cg_cl_pending_i optim_queue = {"optimizer batch", optim_drain};

cg_status cg_cl_optim_update(void *ctx, const struct cg_optim_hparams *h,
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
    struct cg_cl_optim_item it;
    cg_status st = optim_prepare(cl, h, param, grad, state, n, &it);
    if (st != CG_OK)
        return st;
    if (!cl->cfg.optim_batch || optim_multi_bytes(h->kind) > cl->max_param)
        return optim_launch(cl, h, &it, 1);
    if (cl->opt_batch_n > 0 && (cl->opt_batch_n == CG_CL_OPTIM_BATCH ||
                                !optim_same_hparams(&cl->opt_h, h) ||
                                optim_conflict(cl, &it, optim_nstates(h->kind))))
        st = cg_cl_sync(cl);   /* the batch goes out first */
    if (st == CG_OK)
        st = cg_cl_defer(cl, &optim_queue);
    if (st != CG_OK)
        return st;
    if (cl->opt_batch_n == 0)
        cl->opt_h = *h;
    cl->opt_batch[cl->opt_batch_n++] = it;
    cl->stats.launches++;   /* a primitive call, dispatched to the batch */
    return CG_OK;
}
