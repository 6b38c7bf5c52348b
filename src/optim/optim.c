/*
 * src/optim/optim.c — what every optimizer shares: parameter groups,
 * per-parameter state, zero_grad, and the step loop.
 *
 * A step makes exactly one backend call per parameter tensor
 * (cg_backend_i.optim_update): the family (sgd.c, adam.c, rmsprop.c) turns
 * the group's options and the parameter's step count into the fused
 * kernel's hyper-parameters. State buffers are persistent device tensors,
 * created zero at a parameter's first update (as torch.optim creates its
 * state lazily), so a step uploads and downloads nothing.
 */
#include <stdlib.h>
#include <string.h>

#include "optim-impl.h"
#include "core/dispatch.h"
#include "dist/dist-impl.h"

struct optim_param {
    cg_tensor *p;                          /* borrowed, contiguous          */
    int64_t step;                          /* updates so far                */
    cg_tensor *state[CG_OPTIM_MAX_STATE];  /* owned, p's shape, or NULL     */
    /* ZeRO-1 sharding (dist.c): this rank updates only elements [lo, hi)
     * of p (flattened) and its state holds only those, as a 1-D tensor
     * (p's shape when the range is all of p); lo == hi: another rank
     * updates all of p, no state here. */
    bool ranged;
    int64_t lo, hi;
};

struct optim_group {
    struct cg_optim_options o;
    int n;
    struct optim_param *params;
};

struct cg_optim {
    cg_ctx *ctx;
    const struct cg__optim_family *family;
    int n_groups;
    struct optim_group *groups;
    bool sharded;    /* ctx's cg_dist all-gathers the parameters after a step */
};

const struct cg__optim_family *cg__optim_family(enum cg_optim_kind kind)
{
    switch (kind) {
    case CG_OPTIM_SGD: return &cg__sgd_family;
    case CG_OPTIM_ADAM: return &cg__adam_family;
    case CG_OPTIM_RMSPROP: return &cg__rmsprop_family;
    }
    return NULL;
}

struct cg_optim_options cg_optim_defaults(enum cg_optim_kind kind)
{
    const struct cg__optim_family *f = cg__optim_family(kind);
    if (f) return f->defaults();
    struct cg_optim_options o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    return o;
}

static struct optim_param *find_param(const cg_optim *opt, const cg_tensor *p)
{
    for (int g = 0; opt && g < opt->n_groups; g++)
        for (int i = 0; i < opt->groups[g].n; i++)
            if (opt->groups[g].params[i].p == p) return &opt->groups[g].params[i];
    return NULL;
}

/* Checks a group's tensors: persistent, contiguous, this context, and not
 * already held (torch.optim: "some parameters appear in more than one
 * parameter group"). */
static cg_status check_params(cg_optim *opt, cg_tensor *const *params, int n)
{
    const char *fn = "cg_optim_add_group";
    if (n < 0 || (n > 0 && !params))
        return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s: %d parameters at %p", fn, n, (const void *)params);
    for (int i = 0; i < n; i++) {
        cg_tensor *p = params[i];
        char s[128];
        if (!p)
            return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s: parameter %d is NULL", fn, i);
        cg_tensor_describe(p, s, sizeof s);
        if (cg_tensor_ctx(p) != opt->ctx)
            return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s: parameter %d %s belongs to another context", fn, i, s);
        if (cg__tensor_is_scoped(p))
            return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s: parameter %d %s belongs to a scope; parameters "
                             "must be persistent", fn, i, s);
        if (!cg_tensor_is_contiguous(p))
            return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s: parameter %d %s is not contiguous", fn, i, s);
        bool dup = find_param(opt, p) != NULL;
        for (int j = 0; j < i && !dup; j++) dup = params[j] == p;
        if (dup)
            return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s: parameter %d %s appears more than once", fn, i, s);
    }
    return CG_OK;
}

cg_status cg_optim_add_group(cg_optim *opt, cg_tensor *const *params, int n,
                             const struct cg_optim_options *o)
{
    if (!opt) return CG_STATUS_INVALID_ARGUMENT;
    if (!o)
        return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_optim_add_group: options are NULL");
    if (o->kind != opt->family->defaults().kind)
        return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_optim_add_group: a group of kind %d in a %s optimizer",
                         (int)o->kind, opt->family->name);
    cg_status st = opt->family->validate(opt->ctx, "cg_optim_add_group", o);
    if (st == CG_OK) st = check_params(opt, params, n);
    if (st != CG_OK) return st;

    struct optim_group *gs = realloc(opt->groups, (size_t)(opt->n_groups + 1) * sizeof *gs);
    if (!gs)
        return cg__error(opt->ctx, CG_STATUS_OUT_OF_MEMORY,
                         "cg_optim_add_group: out of host memory");
    opt->groups = gs;
    struct optim_group *g = &gs[opt->n_groups];
    memset(g, 0, sizeof *g);
    g->o = *o;
    if (n > 0) {
        g->params = calloc((size_t)n, sizeof *g->params);
        if (!g->params)
            return cg__error(opt->ctx, CG_STATUS_OUT_OF_MEMORY,
                             "cg_optim_add_group: out of host memory");
    }
    for (int i = 0; i < n; i++) g->params[i].p = params[i];
    g->n = n;
    opt->n_groups++;
    return CG_OK;
}

cg_optim *cg_optim_create_params(cg_ctx *ctx, cg_tensor *const *params, int n,
                                 const struct cg_optim_options *o)
{
    if (!ctx) return NULL;
    if (!o) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_optim_create: options are NULL");
        return NULL;
    }
    const struct cg__optim_family *f = cg__optim_family(o->kind);
    if (!f) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_optim_create: unknown optimizer kind %d", (int)o->kind);
        return NULL;
    }
    cg_optim *opt = calloc(1, sizeof *opt);
    if (!opt) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_optim_create: out of host memory");
        return NULL;
    }
    opt->ctx = ctx;
    opt->family = f;
    if (cg_optim_add_group(opt, params, n, o) != CG_OK) {
        cg_optim_free(opt);
        return NULL;
    }
    return opt;
}

cg_optim *cg_optim_create(cg_module *model, const struct cg_optim_options *o)
{
    if (!model) return NULL;
    cg_ctx *ctx = cg_module_ctx(model);
    int n = cg_module_parameters(model, NULL, 0);
    struct cg_named_tensor *named = calloc((size_t)n + 1, sizeof *named);
    cg_tensor **ps = calloc((size_t)n + 1, sizeof *ps);
    cg_optim *opt = NULL;
    if (!named || !ps) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_optim_create: out of host memory");
    } else {
        cg_module_parameters(model, named, n);
        for (int i = 0; i < n; i++) ps[i] = named[i].tensor;
        opt = cg_optim_create_params(ctx, ps, n, o);
    }
    free(named);
    free(ps);
    return opt;
}

void cg_optim_free(cg_optim *opt)
{
    if (!opt) return;
    for (int g = 0; g < opt->n_groups; g++) {
        for (int i = 0; i < opt->groups[g].n; i++)
            for (int s = 0; s < CG_OPTIM_MAX_STATE; s++)
                cg_tensor_free(opt->groups[g].params[i].state[s]);
        free(opt->groups[g].params);
    }
    free(opt->groups);
    free(opt);
}

void cg_optim_zero_grad(cg_optim *opt)
{
    for (int g = 0; opt && g < opt->n_groups; g++)
        for (int i = 0; i < opt->groups[g].n; i++)
            cg_tensor_clear_grad(opt->groups[g].params[i].p);
}

/* Elements this rank updates: all of p, or its ZeRO-1 range. */
static int64_t own_numel(const struct optim_param *op)
{
    return op->ranged ? op->hi - op->lo : cg_tensor_numel(op->p);
}

/* Makes op's state fit its range: a state of all of p (loaded, broadcast,
 * or gathered for a checkpoint) keeps the range's slice; a state of
 * another size is dropped. */
static cg_status narrow_state(cg_optim *opt, struct optim_param *op)
{
    int64_t n = cg_tensor_numel(op->p), want = own_numel(op);
    for (int s = 0; s < CG_OPTIM_MAX_STATE; s++) {
        cg_tensor *old = op->state[s];
        if (!old || cg_tensor_numel(old) == want) continue;
        cg_tensor *t = NULL;
        if (cg_tensor_numel(old) == n && want > 0) {
            float *h = malloc((size_t)n * sizeof *h);
            if (!h)
                return cg__error(opt->ctx, CG_STATUS_OUT_OF_MEMORY,
                                 "cg_optim_step: out of host memory (sharded state)");
            cg_status st = cg_tensor_to_host(old, h, n);
            if (st == CG_OK) t = cg_tensor_from_host(opt->ctx, 1, (int64_t[]){want}, h + op->lo);
            free(h);
            if (st != CG_OK) return st;
            if (!t) return cg_ctx_status(opt->ctx) != CG_OK ? cg_ctx_status(opt->ctx)
                                                            : CG_STATUS_OUT_OF_MEMORY;
            t = cg_tensor_keep(t);
        }
        cg_tensor_free(old);
        op->state[s] = t;
    }
    return CG_OK;
}

/* The state buffers the options need, persistent zeros of p's shape (of
 * the range, flattened, when sharded). */
static cg_status ensure_state(cg_optim *opt, const struct optim_group *g,
                              struct optim_param *op)
{
    unsigned mask = opt->family->state_mask(&g->o);
    int64_t want = own_numel(op);
    bool part = want < cg_tensor_numel(op->p);
    cg_status st = narrow_state(opt, op);
    if (st != CG_OK) return st;
    for (int s = 0; s < CG_OPTIM_MAX_STATE; s++) {
        if (!(mask & (1u << s)) || op->state[s]) continue;
        cg_tensor *t = part ? cg_tensor_zeros(opt->ctx, 1, (int64_t[]){want})
                            : cg_tensor_zeros(opt->ctx, cg_tensor_ndim(op->p), cg_tensor_shape(op->p));
        if (!t) return cg_ctx_status(opt->ctx) != CG_OK ? cg_ctx_status(opt->ctx)
                                                        : CG_STATUS_OUT_OF_MEMORY;
        op->state[s] = cg_tensor_keep(t);
    }
    return CG_OK;
}

/* One fused update of one parameter. */
static cg_status step_param(cg_optim *opt, const struct optim_group *g, struct optim_param *op)
{
    if (op->ranged && op->lo == op->hi) /* other ranks update p */
        return narrow_state(opt, op);   /* (drops state a checkpoint gathered) */
    cg_tensor *grad = cg_tensor_grad(op->p);
    if (!grad) return CG_OK;   /* torch.optim: `if p.grad is None: continue` */
    cg_status st = ensure_state(opt, g, op);
    if (st != CG_OK) return st;

    struct cg_optim_hparams h;
    memset(&h, 0, sizeof h);
    opt->family->hparams(&g->o, op->step + 1, &h);
    struct cg_ptr state[CG_OPTIM_MAX_STATE];
    memset(state, 0, sizeof state);
    for (int s = 0; s < CG_OPTIM_MAX_STATE; s++)
        if (op->state[s]) state[s] = cg__ptr(op->state[s]);

    cg_ctx *ctx = opt->ctx;
    cg__storage_written(op->p->st);
    for (int s = 0; s < CG_OPTIM_MAX_STATE; s++)
        if (op->state[s]) cg__storage_written(op->state[s]->st);
    int64_t lo = op->ranged ? op->lo : 0;   /* ZeRO-1: this rank's elements */
    st = cg__be_optim_update(ctx, opt->family->name, &h, op->p, cg__ptr(grad), state, lo,
                             lo + own_numel(op));
    if (st != CG_OK) return st;
    op->step++;
    return CG_OK;
}

cg_status cg_optim_step(cg_optim *opt)
{
    if (!opt) return CG_STATUS_INVALID_ARGUMENT;
    for (int g = 0; g < opt->n_groups; g++) {
        struct optim_group *grp = &opt->groups[g];
        cg_status st = opt->family->validate(opt->ctx, "cg_optim_step", &grp->o);
        for (int i = 0; st == CG_OK && i < grp->n; i++)
            st = step_param(opt, grp, &grp->params[i]);
        if (st != CG_OK) return st;
    }
    /* ZeRO-1: every rank updated its share; now every rank gets them all. */
    return opt->sharded ? cg__dist_gather_params(opt) : CG_OK;
}

void cg_optim_set_lr(cg_optim *opt, float lr)
{
    for (int g = 0; opt && g < opt->n_groups; g++) opt->groups[g].o.lr = lr;
}

float cg_optim_lr(const cg_optim *opt)
{
    return opt && opt->n_groups > 0 ? opt->groups[0].o.lr : 0.0f;
}

int cg_optim_num_groups(const cg_optim *opt) { return opt ? opt->n_groups : 0; }

struct cg_optim_options *cg_optim_group_options(cg_optim *opt, int g)
{
    return opt && g >= 0 && g < opt->n_groups ? &opt->groups[g].o : NULL;
}

int64_t cg_optim_param_steps(const cg_optim *opt, const cg_tensor *param)
{
    const struct optim_param *op = find_param(opt, param);
    return op ? op->step : 0;
}

cg_tensor *cg_optim_param_state(const cg_optim *opt, const cg_tensor *param, int i)
{
    const struct optim_param *op = find_param(opt, param);
    return op && i >= 0 && i < CG_OPTIM_MAX_STATE ? op->state[i] : NULL;
}

cg_status cg_optim_set_param_steps(cg_optim *opt, const cg_tensor *param, int64_t steps)
{
    if (!opt) return CG_STATUS_INVALID_ARGUMENT;
    struct optim_param *op = find_param(opt, param);
    if (!op || steps < 0)
        return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_optim_set_param_steps: %s", op ? "negative step count"
                                                            : "the optimizer does not hold this tensor");
    op->step = steps;
    return CG_OK;
}

cg_status cg_optim_set_param_state(cg_optim *opt, const cg_tensor *param, int i,
                                   const float *data)
{
    if (!opt) return CG_STATUS_INVALID_ARGUMENT;
    struct optim_param *op = find_param(opt, param);
    if (!op || i < 0 || i >= CG_OPTIM_MAX_STATE)
        return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_optim_set_param_state: %s", op ? "state index out of range"
                                                            : "the optimizer does not hold this tensor");
    if (!data) {
        cg_tensor_free(op->state[i]);
        op->state[i] = NULL;
        return CG_OK;
    }
    if (op->state[i] && cg_tensor_numel(op->state[i]) == cg_tensor_numel(op->p))
        return cg_tensor_set_data(op->state[i], data, cg_tensor_numel(op->p));
    cg_tensor_free(op->state[i]); /* a sharded range's: the next step narrows the new one */
    op->state[i] = NULL;
    cg_tensor *t = cg_tensor_from_host(opt->ctx, cg_tensor_ndim(op->p), cg_tensor_shape(op->p), data);
    if (!t) return cg_ctx_status(opt->ctx) != CG_OK ? cg_ctx_status(opt->ctx)
                                                    : CG_STATUS_OUT_OF_MEMORY;
    op->state[i] = cg_tensor_keep(t);
    return CG_OK;
}

/* ---- enumeration (clip.c, checkpoints, user code) --------------------- */

CG_API cg_ctx *cg_optim_ctx(const cg_optim *opt) { return opt->ctx; }

CG_API int cg_optim_num_params(const cg_optim *opt)
{
    int n = 0;
    for (int g = 0; g < opt->n_groups; g++) n += opt->groups[g].n;
    return n;
}

CG_API cg_tensor *cg_optim_param(const cg_optim *opt, int i)
{
    for (int g = 0; g < opt->n_groups && i >= 0; g++) {
        if (i < opt->groups[g].n) return opt->groups[g].params[i].p;
        i -= opt->groups[g].n;
    }
    return NULL;
}

/* ---- ZeRO-1 sharding (src/dist/dist.c) -------------------------------- */

cg_status cg__optim_set_range(cg_optim *opt, const cg_tensor *param, int64_t lo, int64_t hi)
{
    struct optim_param *op = find_param(opt, param);
    if (!op || lo < 0 || hi < lo || hi > cg_tensor_numel(param))
        return cg__error(opt->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dist_shard_optimizer: range [%lld, %lld) of a parameter the "
                         "optimizer %s", (long long)lo, (long long)hi,
                         op ? "holds, out of bounds" : "does not hold");
    op->ranged = true;
    op->lo = lo;
    op->hi = hi;
    return narrow_state(opt, op);
}

bool cg__optim_range(const cg_optim *opt, const cg_tensor *param, int64_t *lo, int64_t *hi)
{
    const struct optim_param *op = find_param(opt, param);
    *lo = 0;
    *hi = cg_tensor_numel(param);
    if (!op || !op->ranged) return false;
    *lo = op->lo;
    *hi = op->hi;
    return true;
}

void cg__optim_set_sharded(cg_optim *opt, bool sharded) { opt->sharded = sharded; }
bool cg__optim_sharded(const cg_optim *opt) { return opt->sharded; }
