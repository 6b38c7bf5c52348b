/*
 * src/optim/rmsprop.c — RMSProp, torch.optim.RMSprop.
 *
 * The update (torch.optim.RMSprop docs, "Algorithm"), per parameter theta
 * with gradient g, lr gamma, smoothing alpha, weight decay lambda,
 * momentum mu:
 *     if lambda != 0:  g = g + lambda * theta
 *     v = alpha * v + (1 - alpha) * g^2
 *     if centered:  ga = alpha * ga + (1 - alpha) * g;  d = sqrt(v - ga^2) + eps
 *     else:         d = sqrt(v) + eps
 *     if mu > 0:  b = mu * b + g / d;  theta = theta - gamma * b
 *     else:       theta = theta - gamma * g / d
 * (eps is added outside the square root, as in _single_tensor_rmsprop.) The
 * backend's fused kernel (optim_update, CG_OPTIM_RMSPROP) applies it; v, b
 * and ga are state buffers 0, 1 (mu > 0) and 2 (centered), all starting at 0.
 */
#include <string.h>

#include "optim-impl.h"

static struct cg_optim_options rmsprop_defaults(void)
{
    struct cg_optim_options o;
    memset(&o, 0, sizeof o);
    o.kind = CG_OPTIM_RMSPROP;
    o.lr = 1e-2f;
    o.alpha = 0.99f;
    o.eps = 1e-8f;
    return o;
}

/* The checks of RMSprop.__init__. */
static cg_status rmsprop_validate(cg_ctx *ctx, const char *fn, const struct cg_optim_options *o)
{
    const char *bad = NULL;
    double v = 0;
    if (o->kind != CG_OPTIM_RMSPROP) bad = "kind (must stay CG_OPTIM_RMSPROP)", v = o->kind;
    else if (!(o->lr >= 0.0f)) bad = "learning rate", v = o->lr;
    else if (!(o->eps >= 0.0f)) bad = "epsilon value", v = o->eps;
    else if (!(o->momentum >= 0.0f)) bad = "momentum value", v = o->momentum;
    else if (!(o->weight_decay >= 0.0f)) bad = "weight_decay value", v = o->weight_decay;
    else if (!(o->alpha >= 0.0f)) bad = "alpha value", v = o->alpha;
    if (bad)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s(RMSprop): invalid %s: %g",
                         fn, bad, v);
    return CG_OK;
}

static unsigned rmsprop_state_mask(const struct cg_optim_options *o)
{
    return 1u | (o->momentum > 0.0f ? 2u : 0u) | (o->centered ? 4u : 0u);
}

static void rmsprop_hparams(const struct cg_optim_options *o, int64_t step,
                            struct cg_optim_hparams *h)
{
    h->kind = CG_OPTIM_RMSPROP;
    h->lr = o->lr;
    h->weight_decay = o->weight_decay;
    h->momentum = o->momentum;
    h->alpha = o->alpha;
    h->eps = o->eps;
    h->centered = o->centered;
    h->step = step;
    h->bias_correction1 = 1.0f;
    h->bias_correction2 = 1.0f;
}

const struct cg__optim_family cg__rmsprop_family = {
    .name = "RMSprop",
    .defaults = rmsprop_defaults,
    .validate = rmsprop_validate,
    .state_mask = rmsprop_state_mask,
    .hparams = rmsprop_hparams,
};

cg_optim *cg_rmsprop(cg_module *model, float lr)
{
    struct cg_optim_options o = rmsprop_defaults();
    o.lr = lr;
    return cg_optim_create(model, &o);
}
