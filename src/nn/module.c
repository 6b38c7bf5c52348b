/*
 * src/nn/module.c — the module base: named parameters, named children,
 * train/eval, and Sequential.
 *
 * Names follow torch.nn.Module: a parameter registered as "weight" in the
 * child "0" enumerates as "0.weight" (Module.named_parameters, state_dict),
 * own parameters first, then each child in registration order.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/internal.h"

struct cg_module {
    const struct cg_module_i *iface;
    cg_ctx *ctx;
    void *priv;
    bool training;

    int n_params, cap_params;
    char (*param_names)[CG_NAME_MAX];
    cg_tensor **params;

    int n_children, cap_children;
    char (*child_names)[CG_NAME_MAX];
    cg_module **children;

    int n_buffers, cap_buffers;           /* non-parameter state (running stats) */
    char (*buffer_names)[CG_NAME_MAX];
    cg_tensor **buffers;
};

cg_module *cg_module_create(cg_ctx *ctx, const struct cg_module_i *iface, void *priv)
{
    if (!ctx) return NULL;
    if (!iface || (!iface->forward && !iface->forward_ex)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_module_create: the interface needs a forward function");
        return NULL;
    }
    cg_module *m = calloc(1, sizeof *m);
    if (!m) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_module_create(%s): out of host memory",
                  iface->type ? iface->type : "?");
        return NULL;
    }
    m->iface = iface;
    m->ctx = ctx;
    m->priv = priv;
    m->training = true;
    return m;
}

void cg_module_free(cg_module *m)
{
    if (!m) return;
    for (int i = 0; i < m->n_children; i++) cg_module_free(m->children[i]);
    for (int i = 0; i < m->n_params; i++) cg_tensor_free(m->params[i]);
    for (int i = 0; i < m->n_buffers; i++) cg_tensor_free(m->buffers[i]);
    if (m->iface->free_priv) m->iface->free_priv(m);
    free(m->buffers);
    free(m->buffer_names);
    free(m->children);
    free(m->child_names);
    free(m->params);
    free(m->param_names);
    free(m);
}

/* Checks a local (undotted) name for a new entry of m. */
static cg_status check_name(cg_module *m, const char *what, const char *name)
{
    if (!name || !*name || strchr(name, '.') || strlen(name) >= CG_NAME_MAX)
        return cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s(%s): name \"%s\" must be non-empty, without '.', "
                         "shorter than %d characters", what, cg_module_type(m),
                         name ? name : "(null)", CG_NAME_MAX);
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->param_names[i], name))
            return cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s(%s): \"%s\" is already a parameter", what,
                             cg_module_type(m), name);
    for (int i = 0; i < m->n_children; i++)
        if (!strcmp(m->child_names[i], name))
            return cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s(%s): \"%s\" is already a child module", what,
                             cg_module_type(m), name);
    for (int i = 0; i < m->n_buffers; i++)
        if (!strcmp(m->buffer_names[i], name))
            return cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "%s(%s): \"%s\" is already a buffer", what,
                             cg_module_type(m), name);
    return CG_OK;
}

/* Grows a pair of parallel arrays (names, items) to hold one more entry. */
static bool grow(int n, int *cap, void **names, void **items, size_t item_size)
{
    if (n < *cap) return true;
    int nc = *cap ? 2 * *cap : 4;
    void *nn = realloc(*names, (size_t)nc * CG_NAME_MAX);
    if (!nn) return false;
    *names = nn;
    void *ni = realloc(*items, (size_t)nc * item_size);
    if (!ni) return false;
    *items = ni;
    *cap = nc;
    return true;
}

cg_status cg_module_add_parameter(cg_module *m, const char *name, cg_tensor *t)
{
    if (!m) {
        cg_tensor_free(t);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    cg_status st = check_name(m, "cg_module_add_parameter", name);
    if (st == CG_OK && !t)
        st = cg_ctx_status(m->ctx) != CG_OK
                 ? cg_ctx_status(m->ctx)
                 : cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "cg_module_add_parameter(%s.%s): tensor is NULL",
                             cg_module_type(m), name);
    if (st == CG_OK && cg__tensor_is_scoped(t))
        st = cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                       "cg_module_add_parameter(%s.%s): the tensor belongs to a "
                       "scope; create it with no scope open or cg_tensor_keep it",
                       cg_module_type(m), name);
    if (st == CG_OK) st = cg_tensor_set_requires_grad(t, true);
    if (st == CG_OK && !grow(m->n_params, &m->cap_params, (void **)&m->param_names,
                             (void **)&m->params, sizeof(cg_tensor *)))
        st = cg__error(m->ctx, CG_STATUS_OUT_OF_MEMORY,
                       "cg_module_add_parameter: out of host memory");
    if (st != CG_OK) {
        cg_tensor_free(t);
        return st;
    }
    snprintf(m->param_names[m->n_params], CG_NAME_MAX, "%s", name);
    m->params[m->n_params++] = t;
    return CG_OK;
}

cg_status cg_module_add_buffer(cg_module *m, const char *name, cg_tensor *t)
{
    if (!m) {
        cg_tensor_free(t);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    cg_status st = check_name(m, "cg_module_add_buffer", name);
    if (st == CG_OK && !t)
        st = cg_ctx_status(m->ctx) != CG_OK
                 ? cg_ctx_status(m->ctx)
                 : cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "cg_module_add_buffer(%s.%s): tensor is NULL",
                             cg_module_type(m), name);
    if (st == CG_OK && cg__tensor_is_scoped(t))
        st = cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                       "cg_module_add_buffer(%s.%s): the tensor belongs to a "
                       "scope; create it with no scope open or cg_tensor_keep it",
                       cg_module_type(m), name);
    if (st == CG_OK && !grow(m->n_buffers, &m->cap_buffers, (void **)&m->buffer_names,
                             (void **)&m->buffers, sizeof(cg_tensor *)))
        st = cg__error(m->ctx, CG_STATUS_OUT_OF_MEMORY,
                       "cg_module_add_buffer: out of host memory");
    if (st != CG_OK) {
        cg_tensor_free(t);
        return st;
    }
    snprintf(m->buffer_names[m->n_buffers], CG_NAME_MAX, "%s", name);
    m->buffers[m->n_buffers++] = t;
    return CG_OK;
}

cg_status cg_module_add_child(cg_module *m, const char *name, cg_module *child)
{
    if (!m) {
        cg_module_free(child);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    cg_status st = check_name(m, "cg_module_add_child", name);
    if (st == CG_OK && !child)
        st = cg_ctx_status(m->ctx) != CG_OK
                 ? cg_ctx_status(m->ctx)
                 : cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                             "cg_module_add_child(%s.%s): module is NULL",
                             cg_module_type(m), name);
    if (st == CG_OK && child->ctx != m->ctx)
        st = cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                       "cg_module_add_child(%s.%s): the child belongs to another context",
                       cg_module_type(m), name);
    if (st == CG_OK && !grow(m->n_children, &m->cap_children, (void **)&m->child_names,
                             (void **)&m->children, sizeof(cg_module *)))
        st = cg__error(m->ctx, CG_STATUS_OUT_OF_MEMORY,
                       "cg_module_add_child: out of host memory");
    if (st != CG_OK) {
        cg_module_free(child);
        return st;
    }
    snprintf(m->child_names[m->n_children], CG_NAME_MAX, "%s", name);
    m->children[m->n_children++] = child;
    child->training = m->training;
    return CG_OK;
}

cg_tensor *cg_module_forward(cg_module *m, cg_tensor *x)
{
    if (!m || !x) return NULL;
    return m->iface->forward ? m->iface->forward(m, x) : m->iface->forward_ex(m, x, NULL);
}

static bool args_empty(const struct cg_forward_args *a)
{
    return !a || (!a->state[0] && !a->state[1] && !a->causal);
}

cg_tensor *cg_module_forward_ex(cg_module *m, cg_tensor *x, struct cg_forward_args *args)
{
    if (!m || !x) return NULL;
    if (args) args->state_out[0] = args->state_out[1] = NULL;
    if (m->iface->forward_ex) return m->iface->forward_ex(m, x, args);
    if (!args_empty(args)) {
        cg__error(m->ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_module_forward_ex: a %s takes no %s", cg_module_type(m),
                  args->causal ? "causal flag" : "state");
        return NULL;
    }
    return m->iface->forward(m, x);
}

/* Depth-first enumeration with a dotted prefix; returns the new count. */
static int collect(const cg_module *m, const char *prefix, struct cg_named_tensor *out,
                   int max, int count)
{
    for (int i = 0; i < m->n_params; i++, count++) {
        if (count >= max) continue;
        snprintf(out[count].name, CG_NAME_MAX, "%s%s", prefix, m->param_names[i]);
        out[count].tensor = m->params[i];
    }
    for (int i = 0; i < m->n_children; i++) {
        char p[CG_NAME_MAX];
        snprintf(p, sizeof p, "%s%s.", prefix, m->child_names[i]);
        count = collect(m->children[i], p, out, max, count);
    }
    return count;
}

int cg_module_parameters(const cg_module *m, struct cg_named_tensor *out, int max)
{
    if (!m) return 0;
    if (!out) max = 0;
    return collect(m, "", out, max, 0);
}

cg_tensor *cg_module_parameter(const cg_module *m, const char *name)
{
    if (!m || !name) return NULL;
    const char *dot = strchr(name, '.');
    if (!dot) {
        for (int i = 0; i < m->n_params; i++)
            if (!strcmp(m->param_names[i], name)) return m->params[i];
        return NULL;
    }
    size_t len = (size_t)(dot - name);
    for (int i = 0; i < m->n_children; i++)
        if (strlen(m->child_names[i]) == len && !strncmp(m->child_names[i], name, len))
            return cg_module_parameter(m->children[i], dot + 1);
    return NULL;
}

/* Buffers, enumerated and looked up as parameters are (torch's
 * named_buffers): own first, then each child's, dotted. */
static int collect_buffers(const cg_module *m, const char *prefix, struct cg_named_tensor *out,
                           int max, int count)
{
    for (int i = 0; i < m->n_buffers; i++, count++) {
        if (count >= max) continue;
        snprintf(out[count].name, CG_NAME_MAX, "%s%s", prefix, m->buffer_names[i]);
        out[count].tensor = m->buffers[i];
    }
    for (int i = 0; i < m->n_children; i++) {
        char p[CG_NAME_MAX];
        snprintf(p, sizeof p, "%s%s.", prefix, m->child_names[i]);
        count = collect_buffers(m->children[i], p, out, max, count);
    }
    return count;
}

int cg_module_buffers(const cg_module *m, struct cg_named_tensor *out, int max)
{
    if (!m) return 0;
    if (!out) max = 0;
    return collect_buffers(m, "", out, max, 0);
}

cg_tensor *cg_module_buffer(const cg_module *m, const char *name)
{
    if (!m || !name) return NULL;
    const char *dot = strchr(name, '.');
    if (!dot) {
        for (int i = 0; i < m->n_buffers; i++)
            if (!strcmp(m->buffer_names[i], name)) return m->buffers[i];
        return NULL;
    }
    size_t len = (size_t)(dot - name);
    for (int i = 0; i < m->n_children; i++)
        if (strlen(m->child_names[i]) == len && !strncmp(m->child_names[i], name, len))
            return cg_module_buffer(m->children[i], dot + 1);
    return NULL;
}

int64_t cg_module_numel(const cg_module *m)
{
    if (!m) return 0;
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += cg_tensor_numel(m->params[i]);
    for (int i = 0; i < m->n_children; i++) n += cg_module_numel(m->children[i]);
    return n;
}

static void set_training(cg_module *m, bool on)
{
    m->training = on;
    for (int i = 0; i < m->n_children; i++) set_training(m->children[i], on);
}

void cg_module_train(cg_module *m)
{
    if (m) set_training(m, true);
}

void cg_module_eval(cg_module *m)
{
    if (m) set_training(m, false);
}

bool cg_module_is_training(const cg_module *m) { return m && m->training; }
const char *cg_module_type(const cg_module *m)
{
    return m && m->iface->type ? m->iface->type : "Module";
}
cg_ctx *cg_module_ctx(const cg_module *m) { return m ? m->ctx : NULL; }
void *cg_module_priv(const cg_module *m) { return m ? m->priv : NULL; }
int cg_module_num_children(const cg_module *m) { return m ? m->n_children : 0; }

cg_module *cg_module_child(const cg_module *m, int i)
{
    return m && i >= 0 && i < m->n_children ? m->children[i] : NULL;
}

const char *cg_module_child_name(const cg_module *m, int i)
{
    return m && i >= 0 && i < m->n_children ? m->child_names[i] : NULL;
}

/* ---- Sequential (torch.nn.Sequential) -------------------------------------- */

static cg_tensor *sequential_forward(cg_module *m, cg_tensor *x)
{
    for (int i = 0; i < m->n_children && x; i++)
        x = cg_module_forward(m->children[i], x);
    return x;
}

static const struct cg_module_i sequential_i = {
    .type = "Sequential",
    .forward = sequential_forward,
};

cg_status cg_sequential_append(cg_module *seq, cg_module *m)
{
    if (!seq) {
        cg_module_free(m);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    if (seq->iface != &sequential_i) {
        cg_module_free(m);
        return cg__error(seq->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_sequential_append: the module is a %s, not a Sequential",
                         cg_module_type(seq));
    }
    char name[32];
    snprintf(name, sizeof name, "%d", seq->n_children);
    return cg_module_add_child(seq, name, m);
}

cg_module *cg_sequential_module_array(cg_ctx *ctx, int n, cg_module *const *mods)
{
    cg_module *seq = NULL;
    cg_status st = CG_OK;
    if (n < 0)
        st = cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_sequential_module: n = %d < 0", n);
    else if (n > 0 && !mods)
        st = cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_sequential_module: modules is NULL");
    if (st == CG_OK) seq = cg_module_create(ctx, &sequential_i, NULL);
    /* Every given module is owned from here on: appended, or freed. */
    for (int i = 0; i < n && mods; i++) {
        if (!seq) {
            cg_module_free(mods[i]);
        } else if (cg_sequential_append(seq, mods[i]) != CG_OK) {
            cg_module_free(seq);
            seq = NULL;
        }
    }
    return seq;
}

cg_module *cg_sequential_module(cg_ctx *ctx, int n, ...)
{
    if (n < 0) return cg_sequential_module_array(ctx, n, NULL);
    cg_module **mods = calloc((size_t)n + 1, sizeof *mods);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        cg_module *m = va_arg(ap, cg_module *);
        if (mods) mods[i] = m;
        else cg_module_free(m);
    }
    va_end(ap);
    if (!mods) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_sequential_module: out of host memory");
        return NULL;
    }
    cg_module *seq = cg_sequential_module_array(ctx, n, mods);
    free(mods);
    return seq;
}
