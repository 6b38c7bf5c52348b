/*
 * src/io/checkpoint.c — training checkpoints on top of safetensors.c: model
 * weights by state_dict name, optimizer state, the host RNG, the epoch,
 * preprocessing statistics and what a tool needs to rebuild the model.
 *
 * The layout (see io.h for the user's view):
 *   tensors   <param>                       model weights, PyTorch names
 *             optim.<param>.<buffer>        torch.optim state names
 *             scaler.offset, scaler.scale   (n_features) each
 *             target_scaler.offset, .scale
 *   metadata  format = "pt"                 (what Hugging Face tools expect)
 *             clgrad.version = "1"
 *             clgrad.rng = 4 x 16 hex digits, cg_rand_state
 *             clgrad.epoch, clgrad.step, clgrad.model_spec,
 *             clgrad.input_shape ("1,28,28"), clgrad.task, clgrad.n_classes,
 *             clgrad.class_names (a JSON array of strings)
 *             optim.kind ("adam"), optim.groups, optim.group.<g>
 *             ("lr=0.001 weight_decay=0 ..."), optim.<param>.step
 *             scaler.kind, target_scaler.kind ("standard" | "minmax")
 *             anything else: user metadata
 *
 * A load validates everything (file, names, shapes, metadata) before it
 * changes anything, so a bad file leaves the model, optimizer and RNG as
 * they were.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "io-impl.h"

#define CK_VERSION "1"

static const char *const reserved_prefixes[] = {"clgrad.", "optim.", "scaler.",
                                                "target_scaler."};

static bool is_reserved(const char *key)
{
    if (strcmp(key, "format") == 0) return true;
    for (size_t i = 0; i < sizeof reserved_prefixes / sizeof reserved_prefixes[0]; i++)
        if (strncmp(key, reserved_prefixes[i], strlen(reserved_prefixes[i])) == 0) return true;
    return false;
}

/* torch.optim's state names, by buffer index (optim.h: cg_optim_param_state). */
static const char *const *state_names(enum cg_optim_kind kind)
{
    static const char *const sgd[3] = {"momentum_buffer", NULL, NULL};
    static const char *const adam[3] = {"exp_avg", "exp_avg_sq", NULL};
    static const char *const rmsprop[3] = {"square_avg", "momentum_buffer", "grad_avg"};
    switch (kind) {
    case CG_OPTIM_SGD: return sgd;
    case CG_OPTIM_ADAM: return adam;
    case CG_OPTIM_RMSPROP: return rmsprop;
    }
    return NULL;
}

static const char *kind_name(enum cg_optim_kind kind)
{
    switch (kind) {
    case CG_OPTIM_SGD: return "sgd";
    case CG_OPTIM_ADAM: return "adam";
    case CG_OPTIM_RMSPROP: return "rmsprop";
    }
    return "?";
}

static enum cg_optim_kind optim_kind(const cg_optim *opt)
{
    /* cg_optim_group_options only reads here. */
    return cg_optim_group_options((cg_optim *)opt, 0)->kind;
}

/* Strict decimal integer: optional '-', digits, nothing else. */
static bool parse_i64(const char *s, int64_t *out)
{
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) return false;
    *out = v;
    return true;
}

struct cg_checkpoint_extra cg_checkpoint_extra_init(void)
{
    struct cg_checkpoint_extra e;
    memset(&e, 0, sizeof e);
    e.epoch = -1;
    e.step = -1;
    e.task = CG_TASK_AUTO;
    return e;
}

void cg_checkpoint_extra_clear(struct cg_checkpoint_extra *e)
{
    if (!e) return;
    free((char *)e->model_spec);
    if (e->class_names) {
        for (int i = 0; i < e->n_classes; i++) free((char *)e->class_names[i]);
        free((char **)e->class_names);
    }
    cg_scaler_free((struct cg_scaler *)e->scaler);
    cg_scaler_free((struct cg_scaler *)e->target_scaler);
    if (e->meta) {
        for (int i = 0; i < e->n_meta; i++) {
            free((char *)e->meta[i].key);
            free((char *)e->meta[i].value);
        }
        free((struct cg_checkpoint_meta *)e->meta);
    }
    *e = cg_checkpoint_extra_init();
}

static cg_status parse_extra(const char *path, const struct cg_safetensors *st,
                             struct cg_checkpoint_extra *e);

/* ---- saving --------------------------------------------------------------- */

static cg_status check_scaler(const char *what, const struct cg_scaler *s)
{
    if (!s) return CG_OK;
    if (s->n_features < 1 || !s->offset || !s->scale ||
        (s->kind != CG_SCALER_STANDARD && s->kind != CG_SCALER_MINMAX))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_checkpoint_save: the %s is not a fitted scaler (%lld features)",
                         what, (long long)s->n_features);
    return CG_OK;
}

static cg_status check_extra(const struct cg_checkpoint_extra *e)
{
    const char *fn = "cg_checkpoint_save";
    if (e->input_ndim < 0 || e->input_ndim > CG_MAX_DIMS)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: input_ndim %d is not in [0, %d]",
                         fn, e->input_ndim, CG_MAX_DIMS);
    for (int d = 0; d < e->input_ndim; d++)
        if (e->input_shape[d] < 1)
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: input_shape[%d] is %lld",
                             fn, d, (long long)e->input_shape[d]);
    if (e->n_classes < 0 || (e->class_names && e->n_classes == 0))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: class_names given with n_classes %d", fn, e->n_classes);
    size_t bad;
    for (int i = 0; e->class_names && i < e->n_classes; i++) {
        if (!e->class_names[i])
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: class_names[%d] is NULL",
                             fn, i);
        /* The header is JSON: readers reject what is not UTF-8 (issue 17
         * item 1: a Latin-1 class name made an unloadable checkpoint). */
        if (!cg__utf8_valid(e->class_names[i], &bad))
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "%s: class_names[%d] \"%.100s\" is not valid UTF-8 (byte 0x%02x at "
                             "byte %zu); nothing was written", fn, i, e->class_names[i],
                             (unsigned char)e->class_names[i][bad], bad + 1);
    }
    if (e->model_spec && !cg__utf8_valid(e->model_spec, &bad))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: the model spec is not valid UTF-8 (byte %zu); nothing was written",
                         fn, bad + 1);
    if (e->n_meta < 0 || (e->n_meta > 0 && !e->meta))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: %d metadata entries at NULL",
                         fn, e->n_meta);
    for (int i = 0; i < e->n_meta; i++) {
        if (!e->meta[i].key || !e->meta[i].value)
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: metadata entry %d is NULL",
                             fn, i);
        if (is_reserved(e->meta[i].key))
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "%s: metadata key \"%s\" is reserved (\"format\", \"clgrad.*\", "
                             "\"optim.*\", \"scaler.*\", \"target_scaler.*\")", fn,
                             e->meta[i].key);
    }
    cg_status st = check_scaler("scaler", e->scaler);
    return st != CG_OK ? st : check_scaler("target scaler", e->target_scaler);
}

static cg_status put_meta_i64(struct cg_safetensors *st, const char *key, int64_t v)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%" PRId64, v);
    return cg_safetensors_set_meta(st, key, buf);
}

static cg_status put_scaler(struct cg_safetensors *st, const char *prefix,
                            const struct cg_scaler *s)
{
    if (!s) return CG_OK;
    char key[64];
    snprintf(key, sizeof key, "%s.kind", prefix);
    cg_status r = cg_safetensors_set_meta(st, key, s->kind == CG_SCALER_MINMAX ? "minmax" : "standard");
    snprintf(key, sizeof key, "%s.offset", prefix);
    if (r == CG_OK) r = cg_safetensors_add(st, key, 1, &s->n_features, s->offset);
    snprintf(key, sizeof key, "%s.scale", prefix);
    if (r == CG_OK) r = cg_safetensors_add(st, key, 1, &s->n_features, s->scale);
    return r;
}

/* Adds tensor t (on the device) to st under name. */
static cg_status put_tensor(struct cg_safetensors *st, const char *name, const cg_tensor *t)
{
    int64_t n = cg_tensor_numel(t);
    float *host = malloc((size_t)n * sizeof(float) + 1);
    if (!host)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "cg_checkpoint_save: out of host memory for \"%s\"", name);
    cg_status r = cg_tensor_to_host(t, host, n);
    if (r == CG_OK) r = cg_safetensors_add(st, name, cg_tensor_ndim(t), cg_tensor_shape(t), host);
    free(host);
    return r;
}

static cg_status put_optim(struct cg_safetensors *st, const cg_optim *opt,
                           const struct cg_named_tensor *params, int n)
{
    enum cg_optim_kind kind = optim_kind(opt);
    const char *const *names = state_names(kind);
    cg_status r = cg_safetensors_set_meta(st, "optim.kind", kind_name(kind));
    int groups = cg_optim_num_groups(opt);
    if (r == CG_OK) r = put_meta_i64(st, "optim.groups", groups);
    for (int g = 0; r == CG_OK && g < groups; g++) {
        const struct cg_optim_options *o = cg_optim_group_options((cg_optim *)opt, g);
        char key[64], val[512];
        snprintf(key, sizeof key, "optim.group.%d", g);
        snprintf(val, sizeof val,
                 "lr=%.9g weight_decay=%.9g momentum=%.9g dampening=%.9g nesterov=%d "
                 "beta1=%.9g beta2=%.9g eps=%.9g decoupled_weight_decay=%d alpha=%.9g "
                 "centered=%d", (double)o->lr, (double)o->weight_decay, (double)o->momentum,
                 (double)o->dampening, (int)o->nesterov, (double)o->beta1, (double)o->beta2,
                 (double)o->eps, (int)o->decoupled_weight_decay, (double)o->alpha,
                 (int)o->centered);
        r = cg_safetensors_set_meta(st, key, val);
    }
    for (int i = 0; r == CG_OK && i < n; i++) {
        char key[CG_NAME_MAX + 64];
        snprintf(key, sizeof key, "optim.%s.step", params[i].name);
        r = put_meta_i64(st, key, cg_optim_param_steps(opt, params[i].tensor));
        for (int s = 0; r == CG_OK && s < 3; s++) {
            cg_tensor *buf = cg_optim_param_state(opt, params[i].tensor, s);
            if (!buf || !names[s]) continue;
            snprintf(key, sizeof key, "optim.%s.%s", params[i].name, names[s]);
            r = put_tensor(st, key, buf);
        }
    }
    return r;
}

static cg_status put_extra(struct cg_safetensors *st, const struct cg_checkpoint_extra *e)
{
    cg_status r = CG_OK;
    if (e->epoch >= 0) r = put_meta_i64(st, "clgrad.epoch", e->epoch);
    if (r == CG_OK && e->step >= 0) r = put_meta_i64(st, "clgrad.step", e->step);
    if (r == CG_OK && e->model_spec) r = cg_safetensors_set_meta(st, "clgrad.model_spec", e->model_spec);
    if (r == CG_OK && e->input_ndim > 0) {
        char buf[256] = "";
        size_t k = 0;
        for (int d = 0; d < e->input_ndim; d++)
            k += (size_t)snprintf(buf + k, sizeof buf - k, "%s%" PRId64, d ? "," : "",
                                  e->input_shape[d]);
        r = cg_safetensors_set_meta(st, "clgrad.input_shape", buf);
    }
    if (r == CG_OK && e->task != CG_TASK_AUTO)
        r = cg_safetensors_set_meta(st, "clgrad.task", e->task == CG_TASK_CLASSIFICATION
                                                           ? "classification" : "regression");
    if (r == CG_OK && e->n_classes > 0) r = put_meta_i64(st, "clgrad.n_classes", e->n_classes);
    if (r == CG_OK && e->class_names) {
        struct cg__sb b = {0};
        cg__sb_puts(&b, "[");
        for (int i = 0; i < e->n_classes; i++) {
            if (i) cg__sb_puts(&b, ",");
            cg__sb_json_string(&b, e->class_names[i]);
        }
        cg__sb_puts(&b, "]");
        r = b.oom ? cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_checkpoint_save: out of host memory")
                  : cg_safetensors_set_meta(st, "clgrad.class_names", b.p);
        free(b.p);
    }
    if (r == CG_OK) r = put_scaler(st, "scaler", e->scaler);
    if (r == CG_OK) r = put_scaler(st, "target_scaler", e->target_scaler);
    for (int i = 0; r == CG_OK && i < e->n_meta; i++)
        r = cg_safetensors_set_meta(st, e->meta[i].key, e->meta[i].value);
    return r;
}

/* Copies this thread's last message (from a host-side function) into ctx. */
static cg_status to_ctx(cg_ctx *ctx, cg_status st)
{
    if (st != CG_OK && ctx) cg__error(ctx, st, "%s", cg_last_error(NULL));
    return st;
}

cg_status cg_checkpoint_save(const char *path, const cg_module *model, const cg_optim *opt,
                             const struct cg_checkpoint_extra *extra)
{
    if (!model) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_checkpoint_save: model is NULL");
    cg_ctx *ctx = cg_module_ctx(model);
    if (!path) return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_checkpoint_save: path is NULL");
    if (opt && cg_optim_num_groups(opt) < 1)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_checkpoint_save: the optimizer has no parameter groups");
    cg_status r = extra ? check_extra(extra) : CG_OK;
    if (r != CG_OK) return to_ctx(ctx, r);

    int n = cg_module_parameters(model, NULL, 0);
    struct cg_named_tensor *params = calloc((size_t)n + 1, sizeof *params);
    struct cg_safetensors *st = NULL;
    if (!params)
        return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_checkpoint_save: out of host memory");
    cg_module_parameters(model, params, n);
    /* Buffers (BatchNorm's running statistics) are part of the state too,
     * after the parameters, as in PyTorch's state_dict. */
    int nb = cg_module_buffers(model, NULL, 0);
    struct cg_named_tensor *bufs = calloc((size_t)nb + 1, sizeof *bufs);
    if (!bufs) {
        free(params);
        return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_checkpoint_save: out of host memory");
    }
    cg_module_buffers(model, bufs, nb);
    for (int i = 0; i < nb; i++) {
        if (is_reserved(bufs[i].name)) {
            r = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                          "cg_checkpoint_save: buffer \"%s\" uses a reserved prefix", bufs[i].name);
            goto done;
        }
    }
    for (int i = 0; i < n; i++) {
        if (is_reserved(params[i].name)) {
            r = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                          "cg_checkpoint_save: parameter \"%s\" uses a reserved prefix",
                          params[i].name);
            goto done;
        }
    }
    r = cg_safetensors_create(&st);
    if (r == CG_OK) r = cg_safetensors_set_meta(st, "format", "pt");
    if (r == CG_OK) r = cg_safetensors_set_meta(st, "clgrad.version", CK_VERSION);
    uint64_t rng[4];
    cg_rand_state(ctx, rng);
    char rs[80];
    snprintf(rs, sizeof rs, "%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64 ",%016" PRIx64, rng[0],
             rng[1], rng[2], rng[3]);
    if (r == CG_OK) r = cg_safetensors_set_meta(st, "clgrad.rng", rs);
    for (int i = 0; r == CG_OK && i < n; i++) r = put_tensor(st, params[i].name, params[i].tensor);
    for (int i = 0; r == CG_OK && i < nb; i++) r = put_tensor(st, bufs[i].name, bufs[i].tensor);
    if (r == CG_OK && opt) r = put_optim(st, opt, params, n);
    if (r == CG_OK && extra) r = put_extra(st, extra);
    if (r == CG_OK) {
        /* What a load will parse must parse now, before the file at path
         * is replaced (the JSON header itself is checked by the writer). */
        struct cg_checkpoint_extra back;
        r = parse_extra(path, st, &back);
        cg_checkpoint_extra_clear(&back);
        if (r != CG_OK)
            r = cg__error(NULL, r, "cg_checkpoint_save: the checkpoint would not load back: %s; "
                          "nothing was written", cg_last_error(NULL));
    }
    if (r == CG_OK) r = cg_safetensors_write(path, st);
done:
    cg_safetensors_free(st);
    free(bufs);
    free(params);
    /* Every failure above is in this thread's last error (device errors are
     * also in ctx already); copy host-side ones into ctx. */
    return to_ctx(ctx, r);
}

/* ---- loading -------------------------------------------------------------- */

static cg_status parse_scaler(const char *path, const struct cg_safetensors *st,
                              const char *prefix, const struct cg_scaler **out)
{
    char k1[64], k2[64], k3[64];
    snprintf(k1, sizeof k1, "%s.kind", prefix);
    snprintf(k2, sizeof k2, "%s.offset", prefix);
    snprintf(k3, sizeof k3, "%s.scale", prefix);
    const char *kind = cg_safetensors_meta(st, k1);
    const struct cg_st_tensor *off = cg_safetensors_find(st, k2), *sc = cg_safetensors_find(st, k3);
    if (!kind && !off && !sc) return CG_OK;
    enum cg_scaler_kind k;
    if (!kind || !off || !sc) {
        return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: incomplete %s: needs metadata %s "
                         "and tensors %s and %s", path, prefix, k1, k2, k3);
    }
    if (strcmp(kind, "standard") == 0) k = CG_SCALER_STANDARD;
    else if (strcmp(kind, "minmax") == 0) k = CG_SCALER_MINMAX;
    else {
        return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: %s is \"%.64s\", not standard or "
                         "minmax", path, k1, kind);
    }
    if (off->ndim != 1 || sc->ndim != 1 || off->shape[0] != sc->shape[0] || off->shape[0] < 1) {
        return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: %s and %s must be 1-d of the same, "
                         "non-zero length", path, k2, k3);
    }
    for (int64_t i = 0; i < sc->numel; i++) {
        if (!isfinite(off->data[i]) || !isfinite(sc->data[i]) || sc->data[i] == 0.0f) {
            return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: %s[%lld] or %s[%lld] is zero or "
                             "not finite", path, k3, (long long)i, k2, (long long)i);
        }
    }
    struct cg_scaler *s;
    cg_status r = cg_scaler_create(k, off->shape[0], &s);
    if (r != CG_OK) return r;
    memcpy(s->offset, off->data, (size_t)off->numel * sizeof(float));
    memcpy(s->scale, sc->data, (size_t)sc->numel * sizeof(float));
    *out = s;
    return CG_OK;
}

static cg_status bad_meta(const char *path, const char *key, const char *value, const char *want)
{
    return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: metadata %s is \"%.64s\", not %s", path,
                     key, value, want);
}

/* Everything but weights and optimizer state, validated, into e (which
 * the caller clears on failure too). */
static cg_status parse_extra(const char *path, const struct cg_safetensors *st,
                             struct cg_checkpoint_extra *e)
{
    *e = cg_checkpoint_extra_init();
    const char *v;
    if ((v = cg_safetensors_meta(st, "clgrad.version")) && strcmp(v, CK_VERSION) != 0)
        return cg__error(NULL, CG_STATUS_UNSUPPORTED,
                         "%s: checkpoint format version \"%.32s\"; this clgrad reads version "
                         CK_VERSION, path, v);
    if ((v = cg_safetensors_meta(st, "clgrad.epoch")) && (!parse_i64(v, &e->epoch) || e->epoch < 0))
        return bad_meta(path, "clgrad.epoch", v, "a non-negative integer");
    if ((v = cg_safetensors_meta(st, "clgrad.step")) && (!parse_i64(v, &e->step) || e->step < 0))
        return bad_meta(path, "clgrad.step", v, "a non-negative integer");
    if ((v = cg_safetensors_meta(st, "clgrad.rng"))) {
        const char *s = v;
        for (int i = 0; i < 4; i++) {
            char *end;
            if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                return bad_meta(path, "clgrad.rng", v, "4 comma-separated hex numbers");
            errno = 0;
            e->rng[i] = strtoull(s, &end, 16);
            if (errno || end == s || *end != (i < 3 ? ',' : '\0'))
                return bad_meta(path, "clgrad.rng", v, "4 comma-separated hex numbers");
            s = end + 1;
        }
        if (!(e->rng[0] | e->rng[1] | e->rng[2] | e->rng[3]))
            return bad_meta(path, "clgrad.rng", v, "a valid xoshiro256** state (all zero)");
        e->has_rng = true;
    }
    if ((v = cg_safetensors_meta(st, "clgrad.model_spec")) && !(e->model_spec = strdup(v)))
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", path);
    if ((v = cg_safetensors_meta(st, "clgrad.input_shape"))) {
        const char *s = v;
        while (*s) {
            int64_t d;
            char *end;
            errno = 0;
            d = strtoll(s, &end, 10);
            if (errno || end == s || *s < '0' || *s > '9' || d < 1 || e->input_ndim == CG_MAX_DIMS ||
                (*end != ',' && *end != '\0') || (*end == ',' && end[1] == '\0'))
                return bad_meta(path, "clgrad.input_shape", v, "1 to 6 comma-separated sizes");
            e->input_shape[e->input_ndim++] = d;
            s = *end ? end + 1 : end;
        }
        if (e->input_ndim == 0)
            return bad_meta(path, "clgrad.input_shape", v, "1 to 6 comma-separated sizes");
    }
    if ((v = cg_safetensors_meta(st, "clgrad.task"))) {
        if (strcmp(v, "classification") == 0) e->task = CG_TASK_CLASSIFICATION;
        else if (strcmp(v, "regression") == 0) e->task = CG_TASK_REGRESSION;
        else return bad_meta(path, "clgrad.task", v, "classification or regression");
    }
    int64_t nc = 0;
    if ((v = cg_safetensors_meta(st, "clgrad.n_classes")) &&
        (!parse_i64(v, &nc) || nc < 1 || nc > INT32_MAX))
        return bad_meta(path, "clgrad.n_classes", v, "a positive integer");
    e->n_classes = (int)nc;
    if ((v = cg_safetensors_meta(st, "clgrad.class_names"))) {
        char **names;
        int n;
        char err[512];
        if (!cg__json_string_array(v, &names, &n, err, sizeof err))
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: metadata clgrad.class_names: %s", path, err);
        if (n != e->n_classes) {
            for (int i = 0; i < n; i++) free(names[i]);
            free(names);
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: clgrad.class_names has %d names for %d classes", path, n,
                             e->n_classes);
        }
        e->class_names = (const char *const *)names;
    }
    cg_status r = parse_scaler(path, st, "scaler", &e->scaler);
    if (r == CG_OK) r = parse_scaler(path, st, "target_scaler", &e->target_scaler);
    if (r != CG_OK) return r;
    e->has_optim = cg_safetensors_meta(st, "optim.kind") != NULL;

    int n_user = 0;
    for (int i = 0; i < st->n_meta; i++) n_user += !is_reserved(st->meta[i].key);
    if (n_user > 0) {
        struct cg_checkpoint_meta *m = calloc((size_t)n_user, sizeof *m);
        if (!m) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", path);
        e->meta = m;
        for (int i = 0; i < st->n_meta; i++) {
            if (is_reserved(st->meta[i].key)) continue;
            m[e->n_meta].key = strdup(st->meta[i].key);
            m[e->n_meta].value = strdup(st->meta[i].value);
            e->n_meta++;
            if (!m[e->n_meta - 1].key || !m[e->n_meta - 1].value)
                return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", path);
        }
    }
    return CG_OK;
}

static bool is_scaler_tensor(const char *name)
{
    return strncmp(name, "scaler.", 7) == 0 || strncmp(name, "target_scaler.", 14) == 0;
}

/* read_extra needs the scalers' data only. */
static cg_status want_scalers(void *user, const struct cg_safetensors *set, bool *want)
{
    (void)user;
    for (int i = 0; i < set->n_tensors; i++) want[i] = is_scaler_tensor(set->tensors[i].name);
    return CG_OK;
}

cg_status cg_checkpoint_read_extra(const char *path, struct cg_checkpoint_extra *out)
{
    if (!path || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_checkpoint_read_extra: NULL argument");
    *out = cg_checkpoint_extra_init();
    struct cg_safetensors *st;
    cg_status r = cg__safetensors_read_checked(path, want_scalers, NULL, &st);
    if (r != CG_OK) return r;
    r = parse_extra(path, st, out);
    if (r != CG_OK) cg_checkpoint_extra_clear(out);
    cg_safetensors_free(st);
    return r;
}

/* Lists for the mismatch message: "missing: a, b; unexpected: c; ...". */
struct mismatch {
    struct cg__sb missing, unexpected, shape;
    int n;
};

static void list_add(struct cg__sb *b, const char *item)
{
    if (b->n > 1500) {             /* the message buffer is 2 KB */
        if (b->p[b->n - 1] != '.') cg__sb_puts(b, ", ...");
        return;
    }
    if (b->n) cg__sb_puts(b, ", ");
    cg__sb_puts(b, item);
}

static bool same_shape(const struct cg_st_tensor *t, const cg_tensor *p)
{
    if (t->ndim != cg_tensor_ndim(p)) return false;
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] != cg_tensor_dim(p, d)) return false;
    return true;
}

static void add_shape_mismatch(struct mismatch *mm, const char *name,
                               const struct cg_st_tensor *t, const cg_tensor *p)
{
    char a[128], b[128], item[CG_NAME_MAX + 600];
    cg__shape_str(t->ndim, t->shape, a, sizeof a);
    cg__shape_str(cg_tensor_ndim(p), cg_tensor_shape(p), b, sizeof b);
    snprintf(item, sizeof item, "%.200s is %s in the file, %s in the model", name, a, b);
    list_add(&mm->shape, item);
    mm->n++;
}

/* The model parameter called name, or NULL. */
static const struct cg_named_tensor *find_param(const struct cg_named_tensor *ps, int n,
                                                const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (strlen(ps[i].name) == len && strncmp(ps[i].name, name, len) == 0) return &ps[i];
    return NULL;
}

/* Is file tensor `name` ("optim.<param>.<buffer>") state of this optimizer
 * kind for a model parameter? */
static bool is_optim_tensor(const char *name, enum cg_optim_kind kind,
                            const struct cg_named_tensor *ps, int n)
{
    const char *rest = name + strlen("optim.");
    const char *dot = strrchr(rest, '.');
    if (!dot || !find_param(ps, n, rest, (size_t)(dot - rest))) return false;
    const char *const *names = state_names(kind);
    for (int s = 0; s < 3; s++)
        if (names[s] && strcmp(dot + 1, names[s]) == 0) return true;
    return false;
}

/* Parses "lr=0.001 weight_decay=0 ..." into o (kind kept). */
static bool parse_group(const char *v, struct cg_optim_options *o)
{
    char buf[512];
    if (strlen(v) >= sizeof buf) return false;
    snprintf(buf, sizeof buf, "%s", v);
    int seen = 0;
    for (char *save = NULL, *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq) return false;
        *eq = '\0';
        char *end;
        errno = 0;
        double x = strtod(eq + 1, &end);
        if (errno || end == eq + 1 || *end || !isfinite(x)) return false;
        float f = (float)x;
        if (strcmp(tok, "lr") == 0) o->lr = f;
        else if (strcmp(tok, "weight_decay") == 0) o->weight_decay = f;
        else if (strcmp(tok, "momentum") == 0) o->momentum = f;
        else if (strcmp(tok, "dampening") == 0) o->dampening = f;
        else if (strcmp(tok, "nesterov") == 0) o->nesterov = x != 0;
        else if (strcmp(tok, "beta1") == 0) o->beta1 = f;
        else if (strcmp(tok, "beta2") == 0) o->beta2 = f;
        else if (strcmp(tok, "eps") == 0) o->eps = f;
        else if (strcmp(tok, "decoupled_weight_decay") == 0) o->decoupled_weight_decay = x != 0;
        else if (strcmp(tok, "alpha") == 0) o->alpha = f;
        else if (strcmp(tok, "centered") == 0) o->centered = x != 0;
        else return false;
        seen++;
    }
    return seen == 11;
}

/* Checks the optimizer part of the file against opt; fills groups[]. */
static cg_status check_optim(const char *path, const struct cg_safetensors *st, cg_optim *opt,
                             const struct cg_named_tensor *ps, int n, struct mismatch *mm,
                             struct cg_optim_options *groups, int64_t *steps)
{
    enum cg_optim_kind kind = optim_kind(opt);
    const char *v = cg_safetensors_meta(st, "optim.kind");
    if (!v)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: holds no optimizer state (pass opt NULL to load the weights only)",
                         path);
    if (strcmp(v, kind_name(kind)) != 0)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: the optimizer state is for %.32s, the optimizer is %s", path, v,
                         kind_name(kind));
    int64_t ng;
    v = cg_safetensors_meta(st, "optim.groups");
    if (!v || !parse_i64(v, &ng) || ng != cg_optim_num_groups(opt))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: optim.groups is %s, the optimizer has %d parameter group(s)", path,
                         v ? v : "missing", cg_optim_num_groups(opt));
    for (int g = 0; g < (int)ng; g++) {
        char key[64];
        snprintf(key, sizeof key, "optim.group.%d", g);
        groups[g] = *cg_optim_group_options(opt, g);
        v = cg_safetensors_meta(st, key);
        if (!v || !parse_group(v, &groups[g]))
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: metadata %s is %s%.200s%s, not the 11 hyper-parameters "
                             "\"lr=... weight_decay=... ...\"", path, key, v ? "\"" : "",
                             v ? v : "missing", v ? "\"" : "");
    }
    const char *const *names = state_names(kind);
    for (int i = 0; i < n; i++) {
        char key[CG_NAME_MAX + 64];
        snprintf(key, sizeof key, "optim.%s.step", ps[i].name);
        steps[i] = 0;
        if ((v = cg_safetensors_meta(st, key)) && (!parse_i64(v, &steps[i]) || steps[i] < 0))
            return bad_meta(path, key, v, "a non-negative integer");
        for (int s = 0; s < 3; s++) {
            if (!names[s]) continue;
            snprintf(key, sizeof key, "optim.%s.%s", ps[i].name, names[s]);
            const struct cg_st_tensor *t = cg_safetensors_find(st, key);
            if (t && !same_shape(t, ps[i].tensor)) add_shape_mismatch(mm, key, t, ps[i].tensor);
        }
    }
    return CG_OK;
}

/* What the header check (before any tensor data is read) shares with the
 * rest of a load. */
struct load {
    const char *path;
    cg_optim *opt;
    const struct cg_named_tensor *ps, *bs;
    int n, nb;
    struct mismatch mm;
    struct cg_optim_options *groups;
    int64_t *steps;
};

/* Names, shapes and optimizer metadata against the model, from the header
 * alone (issue 17 item 8: a junk tensor must not be read, a mismatch must
 * not wait for gigabytes of data). Tensors the load does not use (the
 * optimizer state when opt is NULL) are left unread. */
static cg_status check_header(void *user, const struct cg_safetensors *st, bool *want)
{
    struct load *L = user;
    const struct cg_named_tensor *ps = L->ps, *bs = L->bs;
    int n = L->n, nb = L->nb;
    struct mismatch *mm = &L->mm;
    /* 1. Names and shapes, of parameters and then buffers. */
    for (int i = 0; i < n + nb; i++) {
        const struct cg_named_tensor *nt = i < n ? &ps[i] : &bs[i - n];
        const struct cg_st_tensor *t = cg_safetensors_find(st, nt->name);
        if (!t) {
            list_add(&mm->missing, nt->name);
            mm->n++;
        } else if (!same_shape(t, nt->tensor)) {
            add_shape_mismatch(mm, nt->name, t, nt->tensor);
        }
    }
    enum cg_optim_kind kind = L->opt ? optim_kind(L->opt) : CG_OPTIM_SGD;
    for (int i = 0; i < st->n_tensors; i++) {
        const char *name = st->tensors[i].name;
        bool ok = find_param(ps, n, name, strlen(name)) != NULL ||
                  find_param(bs, nb, name, strlen(name)) != NULL;
        if (!ok && strncmp(name, "optim.", 6) == 0) {
            ok = !L->opt || is_optim_tensor(name, kind, ps, n);
            want[i] = L->opt != NULL;
        }
        if (!ok && is_scaler_tensor(name)) ok = true;     /* parse_extra checks them */
        if (!ok) {
            list_add(&mm->unexpected, name);
            mm->n++;
        }
    }
    /* 2. Optimizer state. */
    if (L->opt) {
        cg_status r = check_optim(L->path, st, L->opt, ps, n, mm, L->groups, L->steps);
        if (r != CG_OK) return r;
    }
    if (mm->missing.oom || mm->unexpected.oom || mm->shape.oom)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_checkpoint_load: out of host memory");
    if (mm->n > 0)
        return cg__error(NULL, CG_STATUS_SHAPE_MISMATCH,
                         "%s: does not fit the model: %s%s%s%s%s%s%s%s", L->path,
                         mm->missing.n ? "missing: " : "", mm->missing.n ? mm->missing.p : "",
                         mm->missing.n && (mm->unexpected.n || mm->shape.n) ? "; " : "",
                         mm->unexpected.n ? "unexpected: " : "",
                         mm->unexpected.n ? mm->unexpected.p : "",
                         mm->unexpected.n && mm->shape.n ? "; " : "",
                         mm->shape.n ? "shape mismatch: " : "", mm->shape.n ? mm->shape.p : "");
    return CG_OK;
}

/* NaN or Inf in weights, buffers or optimizer state would train to NaN
 * (issue 17 item 8): an error naming the tensor and the element, unless
 * the caller allows them. */
static cg_status check_finite(const char *path, const struct cg_safetensors *st)
{
    for (int i = 0; i < st->n_tensors; i++) {
        const struct cg_st_tensor *t = &st->tensors[i];
        for (int64_t k = 0; k < t->numel; k++)
            if (!isfinite(t->data[k]))
                return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                                 "%s: tensor \"%.200s\" holds %s at element %lld (and is not "
                                 "loaded; allow_nonfinite in cg_checkpoint_load_ex accepts it)",
                                 path, t->name, isnan(t->data[k]) ? "NaN" : "an infinite value",
                                 (long long)k);
    }
    return CG_OK;
}

struct cg_checkpoint_load_options cg_checkpoint_load_options_default(void)
{
    struct cg_checkpoint_load_options o = {.allow_nonfinite = false};
    return o;
}

cg_status cg_checkpoint_load(const char *path, cg_module *model, cg_optim *opt,
                             struct cg_checkpoint_extra *extra_out)
{
    return cg_checkpoint_load_ex(path, model, opt, extra_out, NULL);
}

cg_status cg_checkpoint_load_ex(const char *path, cg_module *model, cg_optim *opt,
                                struct cg_checkpoint_extra *extra_out,
                                const struct cg_checkpoint_load_options *lo)
{
    if (extra_out) *extra_out = cg_checkpoint_extra_init();
    if (!model) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_checkpoint_load: model is NULL");
    cg_ctx *ctx = cg_module_ctx(model);
    if (!path) return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_checkpoint_load: path is NULL");
    struct cg_checkpoint_load_options o = lo ? *lo : cg_checkpoint_load_options_default();

    struct cg_safetensors *st = NULL;
    cg_status r = CG_OK;
    int n = cg_module_parameters(model, NULL, 0);
    int ng = opt ? cg_optim_num_groups(opt) : 0;
    struct cg_named_tensor *ps = calloc((size_t)n + 1, sizeof *ps);
    int nb = cg_module_buffers(model, NULL, 0);
    struct cg_named_tensor *bs = calloc((size_t)nb + 1, sizeof *bs);
    int64_t *steps = calloc((size_t)n + 1, sizeof *steps);
    struct cg_optim_options *groups = calloc((size_t)ng + 1, sizeof *groups);
    struct load L = {.path = path, .opt = opt, .ps = ps, .bs = bs, .n = n, .nb = nb,
                     .groups = groups, .steps = steps};
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    if (!ps || !bs || !steps || !groups) {
        r = cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_checkpoint_load: out of host memory");
        goto done;
    }
    cg_module_parameters(model, ps, n);
    cg_module_buffers(model, bs, nb);
    enum cg_optim_kind kind = opt ? optim_kind(opt) : CG_OPTIM_SGD;

    /* 1, 2. The header against the model, then the data. */
    r = cg__safetensors_read_checked(path, check_header, &L, &st);
    if (r != CG_OK) goto done;
    if (!o.allow_nonfinite && (r = check_finite(path, st)) != CG_OK) goto done;
    /* 3. The rest. */
    r = parse_extra(path, st, &ex);
    if (r != CG_OK) goto done;

    /* 4. Everything fits: apply. */
    for (int i = 0; r == CG_OK && i < n + nb; i++) {
        const struct cg_named_tensor *nt = i < n ? &ps[i] : &bs[i - n];
        const struct cg_st_tensor *t = cg_safetensors_find(st, nt->name);
        r = cg_tensor_set_data(nt->tensor, t->data, t->numel);
    }
    if (opt) {
        const char *const *names = state_names(kind);
        for (int g = 0; g < ng; g++) *cg_optim_group_options(opt, g) = groups[g];
        for (int i = 0; r == CG_OK && i < n; i++) {
            r = cg_optim_set_param_steps(opt, ps[i].tensor, steps[i]);
            for (int s = 0; r == CG_OK && s < 3; s++) {
                if (!names[s]) continue;
                char key[CG_NAME_MAX + 64];
                snprintf(key, sizeof key, "optim.%s.%s", ps[i].name, names[s]);
                const struct cg_st_tensor *t = cg_safetensors_find(st, key);
                r = cg_optim_set_param_state(opt, ps[i].tensor, s, t ? t->data : NULL);
            }
        }
    }
    if (r == CG_OK && ex.has_rng) cg_rand_set_state(ctx, ex.rng);
    if (r == CG_OK && extra_out) {
        *extra_out = ex;
        ex = cg_checkpoint_extra_init();
    }
done:
    to_ctx(ctx, r);
    cg_checkpoint_extra_clear(&ex);
    free(L.mm.missing.p);
    free(L.mm.unexpected.p);
    free(L.mm.shape.p);
    free(groups);
    free(steps);
    free(bs);
    free(ps);
    cg_safetensors_free(st);
    return r;
}
