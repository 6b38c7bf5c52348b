/*
 * src/optim/sgd.c — stochastic gradient descent, torch.optim.SGD.
 *
 * The update (torch.optim.SGD docs, "Algorithm"), per parameter theta with
 * gradient g at step t, lr gamma, weight decay lambda, momentum mu,
 * dampening tau:
 *     if lambda != 0:  g = g + lambda * theta
 *     if mu != 0:
 *         b = (t > 1) ? mu * b + (1 - tau) * g : g
 *         g = nesterov ? g + mu * b : b
 *     theta = theta - gamma * g
 * The backend's fused kernel (optim_update, CG_OPTIM_SGD) applies it; b is
 * state buffer 0, needed only when mu != 0.
 */
#include <string.h>

#include "optim-impl.h"

static struct cg_optim_options sgd_defaults(void)
{
    struct cg_optim_options o;
    memset(&o, 0, sizeof o);
    o.kind = CG_OPTIM_SGD;
    o.lr = 1e-3f;           /* torch.optim.SGD(lr=1e-3) since PyTorch 2.2 */
    return o;
}

/* The checks of SGD.__init__. */
static cg_status sgd_validate(cg_ctx *ctx, const char *fn, const struct cg_optim_options *o)
{
    const char *bad = NULL;
    double v = 0;
    if (o->kind != CG_OPTIM_SGD) bad = "kind (must stay CG_OPTIM_SGD)", v = o->kind;
    else if (!(o->lr >= 0.0f)) bad = "learning rate", v = o->lr;
    else if (!(o->momentum >= 0.0f)) bad = "momentum value", v = o->momentum;
    else if (!(o->weight_decay >= 0.0f)) bad = "weight_decay value", v = o->weight_decay;
    if (bad) return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s(SGD): invalid %s: %g",
                              fn, bad, v);
    if (o->nesterov && (o->momentum <= 0.0f || o->dampening != 0.0f))
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s(SGD): Nesterov momentum requires a momentum and zero "
                         "dampening (momentum %g, dampening %g)", fn,
                         (double)o->momentum, (double)o->dampening);
    return CG_OK;
}

static unsigned sgd_state_mask(const struct cg_optim_options *o)
{
    return o->momentum != 0.0f ? 1u : 0u;
}

static void sgd_hparams(const struct cg_optim_options *o, int64_t step,
                        struct cg_optim_hparams *h)
{
    h->kind = CG_OPTIM_SGD;
    h->lr = o->lr;
    h->weight_decay = o->weight_decay;
    h->momentum = o->momentum;
    h->dampening = o->dampening;
    h->nesterov = o->nesterov;
    h->step = step;             /* step == 1: the kernel sets b = g */
    h->bias_correction1 = 1.0f;
    h->bias_correction2 = 1.0f;
}

const struct cg__optim_family cg__sgd_family = {
    .name = "SGD",
    .defaults = sgd_defaults,
    .validate = sgd_validate,
    .state_mask = sgd_state_mask,
    .hparams = sgd_hparams,
};

cg_optim *cg_sgd(cg_module *model, float lr)
{
    struct cg_optim_options o = sgd_defaults();
    o.lr = lr;
    return cg_optim_create(model, &o);
}
