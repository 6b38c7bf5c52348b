/*
 * src/nn/dropout.c — dropout (torch.nn.functional.dropout, nn.Dropout).
 *
 * In training each element is kept with probability 1 - p and scaled by
 * 1 / (1 - p), so the expected output equals the input ("Dropout",
 * Srivastava et al. 2014, the "inverted" form PyTorch uses). The mask is
 * drawn on the host, one uniform u per element (kept when u < 1 - p, as
 * torch's bernoulli_(1 - p)), and uploaded as a tensor of 0 and
 * 1 / (1 - p): every backend then drops the same elements for the same
 * seed. Each call takes one key from the context's seeded RNG; element i
 * of row r (dim 0, the sample) gets u = hash(key, global row, i), the
 * global row being r plus the context's row_offset (data parallelism: the
 * rank's first sample in the global batch). So N ranks draw the masks one
 * process draws for the same global batch (a counter-based generator, as
 * Philox is for torch's CUDA dropout). y = x * mask is a
 * recorded multiply, so the backward (g * mask) comes from autograd.
 */
#include <stdlib.h>

#include "clgrad/nn.h"
#include "core/ops_internal.h"

/* u in [0, 1) from (key, i): splitmix64's finaliser (Steele et al.,
 * "Fast splittable pseudorandom number generators", 2014) of key + i * its
 * golden-ratio increment, top 53 bits. */
static double mask_uniform(uint64_t key, uint64_t i)
{
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

CG_API cg_tensor *cg_dropout(cg_tensor *x, float p, bool training)
{
    if (!x) return NULL;
    cg_ctx *ctx = cg__ctx_of(x);
    if (!(p >= 0.0f && p <= 1.0f)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_dropout: probability %g must be in [0, 1]", (double)p);
        return NULL;
    }
    if (!training || p == 0.0f) return x;
    int64_t n = cg__tnumel(x);
    float *mask = malloc((size_t)(n > 0 ? n : 1) * sizeof *mask);
    if (!mask) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dropout: out of host memory for a mask of "
                  "%lld values", (long long)n);
        return NULL;
    }
    /* p == 1 drops everything (torch returns zeros rather than 0 * inf). */
    double keep = 1.0 - (double)p;
    float scale = p < 1.0f ? (float)(1.0 / keep) : 0.0f;
    uint64_t key = cg_rand_u64(ctx);
    int64_t rows = x->ndim > 0 ? x->shape[0] : 1, row_len = rows > 0 ? n / rows : 0;
    uint64_t base = (uint64_t)(ctx->row_offset * row_len);
    for (int64_t i = 0; i < n; i++) mask[i] = mask_uniform(key, base + (uint64_t)i) < keep ? scale : 0.0f;
    int token = cg__compose_begin(ctx);
    cg_tensor *m = cg_tensor_from_host(ctx, x->ndim, x->shape, mask);
    free(mask);
    return cg__compose_end(ctx, token, cg_mul(x, m));
}

struct dropout {
    float p;
};

static cg_tensor *dropout_forward(cg_module *m, cg_tensor *x)
{
    const struct dropout *d = cg_module_priv(m);
    return cg_dropout(x, d->p, cg_module_is_training(m));
}

static void dropout_free_priv(cg_module *m) { free(cg_module_priv(m)); }

static const struct cg_module_i dropout_i = {
    .type = "Dropout",
    .forward = dropout_forward,
    .free_priv = dropout_free_priv,
};

CG_API cg_module *cg_dropout_module(cg_ctx *ctx, float p)
{
    if (!ctx) return NULL;
    if (!(p >= 0.0f && p <= 1.0f)) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                  "cg_dropout_module: probability %g must be in [0, 1]", (double)p);
        return NULL;
    }
    struct dropout *d = malloc(sizeof *d);
    if (!d) {
        cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dropout_module: out of host memory");
        return NULL;
    }
    d->p = p;
    cg_module *m = cg_module_create(ctx, &dropout_i, d);
    if (!m) free(d);
    return m;
}
