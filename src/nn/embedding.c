/*
 * src/nn/embedding.c — torch.nn.Embedding and learned positional embeddings.
 *
 * Both are a table lookup (cg_index_rows, whose backward scatter-adds into
 * the table on the device), so there is no hand-written backward here.
 */
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/internal.h"

struct embedding {
    int64_t num, dim;
    cg_tensor *weight;  /* (num, dim), owned by the module's parameter list */
};

static void embedding_free_priv(cg_module *m) { free(cg_module_priv(m)); }

/* idx: (...) integers in [0, num) -> (..., dim) */
static cg_tensor *embedding_forward(cg_module *m, cg_tensor *idx)
{
    struct embedding *e = cg_module_priv(m);
    int nd = cg_tensor_ndim(idx);
    if (nd >= CG_MAX_DIMS) {
        char s[128];
        cg__error(cg_module_ctx(m), CG_STATUS_SHAPE_MISMATCH,
                  "Embedding(%lld, %lld): index tensor %s has too many dims (the result "
                  "adds one, at most %d)", (long long)e->num, (long long)e->dim,
                  cg_tensor_describe(idx, s, sizeof s), CG_MAX_DIMS);
        return NULL;
    }
    int64_t shape[CG_MAX_DIMS];
    for (int i = 0; i < nd; i++) shape[i] = cg_tensor_dim(idx, i);
    shape[nd] = e->dim;
    cg_tensor *rows = cg_index_rows(e->weight, cg_reshape(idx, CG_SHAPE(-1)));  /* (N, dim) */
    return cg_reshape(rows, nd + 1, shape);
}

static const struct cg_module_i embedding_i = {
    .type = "Embedding",
    .forward = embedding_forward,
    .free_priv = embedding_free_priv,
};

/* A module holding one (rows, dim) N(0, 1) parameter "weight":
 * torch.nn.Embedding.reset_parameters is init.normal_(self.weight). */
static cg_module *table_module(cg_ctx *ctx, const struct cg_module_i *iface, const char *fn,
                               int64_t rows, int64_t dim)
{
    if (!ctx) return NULL;
    if (rows < 1 || dim < 1) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "%s: sizes (%lld, %lld) must be >= 1", fn,
                  (long long)rows, (long long)dim);
        return NULL;
    }
    struct embedding *e = calloc(1, sizeof *e);
    if (!e) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", fn);
        return NULL;
    }
    e->num = rows;
    e->dim = dim;
    cg_module *m = cg_module_create(ctx, iface, e);
    if (!m) {
        free(e);
        return NULL;
    }
    cg_tensor *w = cg_tensor_normal(ctx, CG_SHAPE(rows, dim), 0.0f, 1.0f);
    e->weight = w ? cg_tensor_keep(w) : NULL;
    if (cg_module_add_parameter(m, "weight", e->weight) != CG_OK) {
        cg_module_free(m);
        return NULL;
    }
    return m;
}

cg_module *cg_embedding_module(cg_ctx *ctx, int64_t num_embeddings, int64_t dim)
{
    return table_module(ctx, &embedding_i, "cg_embedding_module", num_embeddings, dim);
}

/* x: (B, T, dim) or (T, dim) -> x + weight[0:T] */
static cg_tensor *posemb_forward(cg_module *m, cg_tensor *x)
{
    struct embedding *e = cg_module_priv(m);
    int nd = cg_tensor_ndim(x);
    if (nd < 2 || cg_tensor_dim(x, -1) != e->dim || cg_tensor_dim(x, -2) > e->num) {
        char s[128];
        cg__error(cg_module_ctx(m), CG_STATUS_SHAPE_MISMATCH,
                  "PositionalEmbedding(%lld, %lld): input %s must be (..., T, %lld) with "
                  "T <= %lld", (long long)e->num, (long long)e->dim,
                  cg_tensor_describe(x, s, sizeof s), (long long)e->dim, (long long)e->num);
        return NULL;
    }
    return cg_add(x, cg_slice(e->weight, 0, 0, cg_tensor_dim(x, -2), 1));
}

static const struct cg_module_i posemb_i = {
    .type = "PositionalEmbedding",
    .forward = posemb_forward,
    .free_priv = embedding_free_priv,
};

cg_module *cg_positional_embedding_module(cg_ctx *ctx, int64_t max_len, int64_t dim)
{
    return table_module(ctx, &posemb_i, "cg_positional_embedding_module", max_len, dim);
}
