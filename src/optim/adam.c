/*
 * src/optim/adam.c — Adam and AdamW, torch.optim.Adam / torch.optim.AdamW.
 *
 * The update (torch.optim.Adam docs, "Algorithm", amsgrad off), per
 * parameter theta with gradient g at step t, lr gamma, betas (b1, b2),
 * weight decay lambda:
 *     Adam:   if lambda != 0:  g = g + lambda * theta
 *     AdamW:  theta = theta - gamma * lambda * theta   (torch.optim.AdamW docs)
 *     m = b1 * m + (1 - b1) * g
 *     v = b2 * v + (1 - b2) * g^2
 *     theta = theta - gamma / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * The last line is the form of PyTorch's implementation (_single_tensor_adam:
 * step_size = lr / bias_correction1, denom = sqrt(v) / sqrt(bias_correction2)
 * + eps), i.e. eps is added after the bias correction of v. The bias
 * corrections 1 - b^t are computed here in double; the backend's fused kernel
 * (optim_update, CG_OPTIM_ADAM) does the rest. m and v are state buffers 0
 * and 1.
 */
#include <math.h>
#include <string.h>

#include "optim-impl.h"

static struct cg_optim_options adam_defaults(void)
{
    struct cg_optim_options o;
    memset(&o, 0, sizeof o);
    o.kind = CG_OPTIM_ADAM;
    o.lr = 1e-3f;
    o.beta1 = 0.9f;
    o.beta2 = 0.999f;
    o.eps = 1e-8f;
    return o;
}

/* The checks of Adam.__init__. */
static cg_status adam_validate(cg_ctx *ctx, const char *fn, const struct cg_optim_options *o)
{
    const char *bad = NULL;
    double v = 0;
    if (o->kind != CG_OPTIM_ADAM) bad = "kind (must stay CG_OPTIM_ADAM)", v = o->kind;
    else if (!(o->lr >= 0.0f)) bad = "learning rate", v = o->lr;
    else if (!(o->eps >= 0.0f)) bad = "epsilon value", v = o->eps;
    else if (!(o->beta1 >= 0.0f && o->beta1 < 1.0f)) bad = "beta parameter at index 0", v = o->beta1;
    else if (!(o->beta2 >= 0.0f && o->beta2 < 1.0f)) bad = "beta parameter at index 1", v = o->beta2;
    else if (!(o->weight_decay >= 0.0f)) bad = "weight_decay value", v = o->weight_decay;
    if (bad)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s(%s): invalid %s: %g", fn,
                         o->decoupled_weight_decay ? "AdamW" : "Adam", bad, v);
    return CG_OK;
}

static unsigned adam_state_mask(const struct cg_optim_options *o) { return 3u; }

static void adam_hparams(const struct cg_optim_options *o, int64_t step,
                         struct cg_optim_hparams *h)
{
    h->kind = CG_OPTIM_ADAM;
    h->lr = o->lr;
    h->weight_decay = o->weight_decay;
    h->beta1 = o->beta1;
    h->beta2 = o->beta2;
    h->eps = o->eps;
    h->decoupled_weight_decay = o->decoupled_weight_decay;
    h->step = step;
    h->bias_correction1 = (float)(1.0 - pow((double)o->beta1, (double)step));
    h->bias_correction2 = (float)(1.0 - pow((double)o->beta2, (double)step));
}

const struct cg__optim_family cg__adam_family = {
    .name = "Adam",
    .defaults = adam_defaults,
    .validate = adam_validate,
    .state_mask = adam_state_mask,
    .hparams = adam_hparams,
};

cg_optim *cg_adam(cg_module *model, float lr)
{
    struct cg_optim_options o = adam_defaults();
    o.lr = lr;
    return cg_optim_create(model, &o);
}

/* torch.optim.AdamW defaults: Adam's, with weight_decay 1e-2, decoupled. */
cg_optim *cg_adamw(cg_module *model, float lr)
{
    struct cg_optim_options o = adam_defaults();
    o.lr = lr;
    o.weight_decay = 1e-2f;
    o.decoupled_weight_decay = true;
    return cg_optim_create(model, &o);
}
