/*
 * src/optim/optim-impl.h — what optim.c (groups, state, the step loop)
 * needs from each optimizer family (sgd.c, adam.c, rmsprop.c).
 */
#ifndef CLGRAD_OPTIM_IMPL_H
#define CLGRAD_OPTIM_IMPL_H

#include "clgrad/optim.h"
#include "core/internal.h"

#define CG_OPTIM_MAX_STATE 3

struct cg__optim_family {
    const char *name;                          /* "SGD", for messages       */
    struct cg_optim_options (*defaults)(void); /* PyTorch's                 */
    /* Checks o as torch.optim's constructor does; fn names the caller. */
    cg_status (*validate)(cg_ctx *ctx, const char *fn, const struct cg_optim_options *o);
    /* Bit i set: state buffer i is needed with these options. */
    unsigned (*state_mask)(const struct cg_optim_options *o);
    /* The backend's hyper-parameters for a parameter's step-th update
     * (step >= 1), bias corrections in double. */
    void (*hparams)(const struct cg_optim_options *o, int64_t step,
                    struct cg_optim_hparams *h);
};

extern const struct cg__optim_family cg__sgd_family;
extern const struct cg__optim_family cg__adam_family;
extern const struct cg__optim_family cg__rmsprop_family;

/* The family of a kind, or NULL for an unknown one. */
const struct cg__optim_family *cg__optim_family(enum cg_optim_kind kind);

/* ZeRO-1 sharding (src/dist/dist.c): this rank updates only elements
 * [lo, hi) of param (flattened; lo == hi: none) and keeps state for those
 * only (a state of all of param is sliced, others dropped). A sharded
 * optimizer asks the context's cg_dist to all-gather the parameters after
 * each step, and clip sums the squares of its own ranges over the ranks.
 * cg__optim_range: whether param has a range, and it ([0, numel) if not). */
cg_status cg__optim_set_range(cg_optim *opt, const cg_tensor *param, int64_t lo, int64_t hi);
bool cg__optim_range(const cg_optim *opt, const cg_tensor *param, int64_t *lo, int64_t *hi);
void cg__optim_set_sharded(cg_optim *opt, bool sharded);
bool cg__optim_sharded(const cg_optim *opt);

#endif
