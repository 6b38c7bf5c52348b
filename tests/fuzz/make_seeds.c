/*
 * tests/fuzz/make_seeds.c — writes the checkpoint seeds of the fuzz corpus
 * (tests/fuzz/corpus/checkpoint/), which need the library to make: valid
 * checkpoints of fuzz_checkpoint.c's two models, with and without
 * optimizer state and extras, each prefixed with fuzz_checkpoint's mode
 * byte. The other seeds are plain files (tests/fuzz/make_seeds.py).
 *
 *   build/tests/fuzz/fuzz_make_seeds tests/fuzz/corpus/checkpoint
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/clgrad.h"

static void die(const char *what, cg_ctx *ctx)
{
    fprintf(stderr, "%s: %s\n", what, cg_last_error(ctx));
    exit(1);
}

/* Copies file `from` to dir/name with the mode byte in front. */
static void seed(const char *dir, const char *name, unsigned char mode, const char *from)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *in = fopen(from, "rb"), *out = fopen(path, "wb");
    if (!in || !out) {
        perror(path);
        exit(1);
    }
    fputc(mode, out);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, out);
    fclose(in);
    if (fclose(out) != 0) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s FOLDER\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    cg_ctx *ctx;
    struct cg_ctx_options o = {.backend = "cpu", .seed = 3};
    if (cg_ctx_create(&ctx, &o) != CG_OK) die("context", NULL);
    static const char *const specs[2] = {"linear 3 relu, linear 2", "batchnorm, gap, linear 2"};
    int64_t shapes[2][3] = {{4}, {2, 2, 2}};
    int ndims[2] = {1, 3};
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s/.seed.tmp", dir);
    for (int k = 0; k < 2; k++) {
        cg_module *m = cg_model_from_spec(ctx, specs[k], ndims[k], shapes[k], NULL, NULL);
        cg_optim *opt = m ? cg_adam(m, 1e-3f) : NULL;
        if (!opt) die("model", ctx);
        /* One step, so that the optimizer has state to save. */
        int64_t xs[4] = {2, shapes[k][0], shapes[k][1], shapes[k][2]};
        cg_scope_begin(ctx);
        cg_tensor *x = cg_tensor_uniform(ctx, 1 + ndims[k], xs, -1, 1);
        cg_tensor *y = cg_module_forward(m, x);
        int64_t ys[2] = {2, 2};
        cg_tensor *t = cg_tensor_uniform(ctx, 2, ys, -1, 1);
        cg_tensor *loss = cg_mse_loss(y, t, CG_REDUCTION_MEAN);
        if (!loss || cg_backward(loss) != CG_OK || cg_optim_step(opt) != CG_OK) die("step", ctx);
        cg_scope_end(ctx);

        char name[64];
        snprintf(name, sizeof name, "valid-weights-%d", k);
        if (cg_checkpoint_save(tmp, m, NULL, NULL) != CG_OK) die("save", ctx);
        seed(dir, name, (unsigned char)(k | 2), tmp);

        struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
        static const char *const classes[2] = {"caf\xc3\xa9", "tea"};
        struct cg_scaler *sc;
        if (cg_scaler_create(CG_SCALER_STANDARD, 4, &sc) != CG_OK) die("scaler", NULL);
        struct cg_checkpoint_meta meta[1] = {{"note", "seed"}};
        ex.epoch = 3;
        ex.step = 12;
        ex.model_spec = specs[k];
        ex.input_ndim = ndims[k];
        memcpy(ex.input_shape, shapes[k], sizeof shapes[k]);
        ex.task = CG_TASK_CLASSIFICATION;
        ex.n_classes = 2;
        ex.class_names = classes;
        ex.scaler = sc;
        ex.n_meta = 1;
        ex.meta = meta;
        if (cg_checkpoint_save(tmp, m, opt, &ex) != CG_OK) die("save", ctx);
        snprintf(name, sizeof name, "valid-full-%d", k);
        seed(dir, name, (unsigned char)k, tmp);
        /* The same file for the other model: a mismatch. */
        snprintf(name, sizeof name, "mismatch-%d", k);
        seed(dir, name, (unsigned char)(1 - k), tmp);
        cg_scaler_free(sc);
        cg_optim_free(opt);
        cg_module_free(m);
    }
    remove(tmp);
    cg_ctx_free(ctx);
    return 0;
}
