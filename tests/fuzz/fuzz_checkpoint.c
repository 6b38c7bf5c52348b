/*
 * tests/fuzz/fuzz_checkpoint.c — the checkpoint loader: metadata alone
 * (cg_checkpoint_read_extra), and a full load into a fixed model
 * ("linear 3 relu, linear 2" on 4 inputs, plus a BatchNorm model's
 * buffers through the spec picked by byte 0) with and without an Adam
 * optimizer.
 *
 * Invariants: a failed load changes nothing (weights, optimizer state and
 * step counts, RNG state compared bit for bit); a successful one leaves
 * finite weights, and saving the loaded state (with the extra it returned)
 * succeeds and loads back to the same weights and extra: the writer never
 * writes what the reader rejects. Metadata read alone is consistent
 * (class names match n_classes, scalers finite and non-zero).
 */
#include <math.h>
#include <string.h>

#include "clgrad/clgrad.h"
#include "fuzz.h"

struct model {
    cg_module *m;
    cg_optim *opt;
    int in_ndim;
    int64_t in_shape[3];
};

static cg_ctx *ctx;
static struct model models[2];

static void done(void)
{
    for (int i = 0; i < 2; i++) {
        cg_optim_free(models[i].opt);
        cg_module_free(models[i].m);
    }
    cg_ctx_free(ctx);
}

static void setup(void)
{
    struct cg_ctx_options o = {.backend = "cpu", .seed = 7};
    FUZZ_CHECK(cg_ctx_create(&ctx, &o) == CG_OK, "cpu context: %s", cg_last_error(NULL));
    static const char *const specs[2] = {"linear 3 relu, linear 2", "batchnorm, gap, linear 2"};
    models[0] = (struct model){.in_ndim = 1, .in_shape = {4}};
    models[1] = (struct model){.in_ndim = 3, .in_shape = {2, 2, 2}};
    for (int i = 0; i < 2; i++) {
        models[i].m = cg_model_from_spec(ctx, specs[i], models[i].in_ndim, models[i].in_shape,
                                         NULL, NULL);
        FUZZ_CHECK(models[i].m, "model: %s", cg_last_error(ctx));
        models[i].opt = cg_adam(models[i].m, 1e-3f);
        FUZZ_CHECK(models[i].opt, "optimizer: %s", cg_last_error(ctx));
    }
    atexit(done);
}

/* Every float of the model's state, optimizer state and RNG, in order. */
struct snap {
    float *v;
    size_t n;
    uint64_t rng[4];
};

static void put(struct snap *s, const cg_tensor *t)
{
    int64_t n = t ? cg_tensor_numel(t) : 0;
    s->v = realloc(s->v, (s->n + (size_t)n + 2) * sizeof *s->v);
    FUZZ_CHECK(s->v, "out of memory");
    s->v[s->n++] = t ? (float)n : -1.0f;
    if (n) FUZZ_CHECK(cg_tensor_to_host(t, s->v + s->n, n) == CG_OK, "download");
    s->n += (size_t)n;
}

static struct snap take(const struct model *md)
{
    struct snap s = {0};
    int n = cg_module_parameters(md->m, NULL, 0);
    struct cg_named_tensor ps[16];
    FUZZ_CHECK(n <= 16, "%d parameters", n);
    cg_module_parameters(md->m, ps, n);
    for (int i = 0; i < n; i++) {
        put(&s, ps[i].tensor);
        s.v = realloc(s.v, (s.n + 1) * sizeof *s.v);
        s.v[s.n++] = (float)cg_optim_param_steps(md->opt, ps[i].tensor);
        for (int k = 0; k < 3; k++) put(&s, cg_optim_param_state(md->opt, ps[i].tensor, k));
    }
    int nb = cg_module_buffers(md->m, ps, 16);
    for (int i = 0; i < nb; i++) put(&s, ps[i].tensor);
    cg_rand_state(ctx, s.rng);
    return s;
}

static bool same(const struct snap *a, const struct snap *b)
{
    return a->n == b->n && memcmp(a->v, b->v, a->n * sizeof *a->v) == 0 &&
           memcmp(a->rng, b->rng, sizeof a->rng) == 0;
}

static void check_extra(const struct cg_checkpoint_extra *e)
{
    FUZZ_CHECK(e->n_classes >= 0 && (!e->class_names || e->n_classes > 0), "%d classes",
               e->n_classes);
    for (int i = 0; e->class_names && i < e->n_classes; i++)
        FUZZ_CHECK(e->class_names[i], "class name %d", i);
    FUZZ_CHECK(e->input_ndim >= 0 && e->input_ndim <= CG_MAX_DIMS, "input_ndim %d", e->input_ndim);
    for (int d = 0; d < e->input_ndim; d++) FUZZ_CHECK(e->input_shape[d] >= 1, "input dim %d", d);
    const struct cg_scaler *sc[2] = {e->scaler, e->target_scaler};
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; sc[k] && i < sc[k]->n_features; i++)
            FUZZ_CHECK(isfinite(sc[k]->offset[i]) && isfinite(sc[k]->scale[i]) &&
                           sc[k]->scale[i] != 0, "scaler %d feature %lld", k, (long long)i);
}

static bool same_extra(const struct cg_checkpoint_extra *a, const struct cg_checkpoint_extra *b)
{
    if (a->epoch != b->epoch || a->step != b->step || a->n_classes != b->n_classes ||
        a->input_ndim != b->input_ndim || a->task != b->task || a->n_meta != b->n_meta ||
        !a->model_spec != !b->model_spec || !a->class_names != !b->class_names ||
        !a->scaler != !b->scaler || !a->target_scaler != !b->target_scaler)
        return false;
    if (a->model_spec && strcmp(a->model_spec, b->model_spec) != 0) return false;
    for (int i = 0; a->class_names && i < a->n_classes; i++)
        if (strcmp(a->class_names[i], b->class_names[i]) != 0) return false;
    for (int i = 0; i < a->n_meta; i++)
        if (strcmp(a->meta[i].key, b->meta[i].key) != 0 ||
            strcmp(a->meta[i].value, b->meta[i].value) != 0)
            return false;
    return memcmp(a->input_shape, b->input_shape, (size_t)a->input_ndim * sizeof(int64_t)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!ctx) setup();
    struct model *md = &models[data[0] & 1];
    bool with_opt = !(data[0] & 2);
    const char *path = fuzz_file(0, "in.safetensors", data + 1, size - 1, 0);

    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    if (cg_checkpoint_read_extra(path, &ex) == CG_OK) check_extra(&ex);
    else FUZZ_CHECK(cg_last_error(NULL)[0], "a failure with no message");
    cg_checkpoint_extra_clear(&ex);

    struct snap before = take(md);
    cg_status st = cg_checkpoint_load(path, md->m, with_opt ? md->opt : NULL, &ex);
    if (st != CG_OK) {
        struct snap after = take(md);
        FUZZ_CHECK(same(&before, &after), "a failed load (%s) changed the state",
                   cg_last_error(ctx));
        FUZZ_CHECK(cg_last_error(ctx)[0], "a failure with no message");
        cg_ctx_clear_error(ctx);
        free(after.v);
        free(before.v);
        return 0;
    }
    check_extra(&ex);
    struct snap loaded = take(md);
    for (size_t i = 0; i < loaded.n; i++)
        FUZZ_CHECK(isfinite(loaded.v[i]), "loaded value %zu is %g", i, (double)loaded.v[i]);

    /* What was loaded saves, and loads back to the same state. */
    char out[512];
    snprintf(out, sizeof out, "%s/out.safetensors", fuzz_dir());
    st = cg_checkpoint_save(out, md->m, with_opt ? md->opt : NULL, &ex);
    FUZZ_CHECK(st == CG_OK, "saving what was loaded: %s", cg_last_error(ctx));
    struct cg_checkpoint_extra ex2 = cg_checkpoint_extra_init();
    st = cg_checkpoint_load(out, md->m, with_opt ? md->opt : NULL, &ex2);
    FUZZ_CHECK(st == CG_OK, "loading what was saved: %s", cg_last_error(ctx));
    struct snap again = take(md);
    FUZZ_CHECK(same(&loaded, &again), "the state changed in a save/load round trip");
    FUZZ_CHECK(same_extra(&ex, &ex2), "the extra changed in a save/load round trip");
    cg_checkpoint_extra_clear(&ex2);
    cg_checkpoint_extra_clear(&ex);
    free(again.v);
    free(loaded.v);
    free(before.v);
    return 0;
}
