/*
 * tests/test_checkpoint.c — safetensors files and training checkpoints
 * (src/io): round trips, exact resume, files made by hand and by an
 * independent Python reader/writer, a matrix of malformed files, and a
 * save that fails or crashes half-way.
 */
#include "harness.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int setup(void **state) { return th_dir_setup(state, 1234, "ck"); }
static int teardown(void **state) { return th_dir_teardown(state); }

static void path_in(const struct th_dirfx *f, const char *name, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", f->dir, name);
}

static void assert_thread_error(const char *needle)
{
    if (!strstr(cg_last_error(NULL), needle)) {
        print_error("last error \"%s\" does not contain \"%s\"\n", cg_last_error(NULL), needle);
        fail();
    }
}

/* ---- helpers: models, weights ---------------------------------------------- */

static cg_module *make_mlp(cg_ctx *ctx)
{
    return cg_sequential_module(ctx, 3, cg_linear_module(ctx, 7, 13, true), cg_tanh_module(ctx),
                         cg_linear_module(ctx, 13, 3, true));
}

/* All parameters of m, concatenated, in a new array of *n floats. */
static float *weights(const cg_module *m, int64_t *n)
{
    struct cg_named_tensor ps[16];
    int np = cg_module_parameters(m, ps, 16);
    assert_true(np <= 16);
    *n = cg_module_numel(m);
    float *w = malloc((size_t)*n * sizeof *w);
    int64_t k = 0;
    for (int i = 0; i < np; i++) {
        int64_t c = cg_tensor_numel(ps[i].tensor);
        assert_int_equal(cg_tensor_to_host(ps[i].tensor, w + k, c), CG_OK);
        k += c;
    }
    return w;
}

static void assert_bits_equal(const float *a, const float *b, int64_t n, const char *what)
{
    if (memcmp(a, b, (size_t)n * sizeof *a) != 0) {
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&a[i], &b[i], sizeof *a) != 0) {
                print_error("%s: first difference at %lld: %.9g vs %.9g\n", what, (long long)i,
                            (double)a[i], (double)b[i]);
                break;
            }
        fail();
    }
}

/* Training data: x (N, 7), y (N, 3), random, fixed by the test. */
enum { N_SAMPLES = 23, BATCH = 4 };
static float X[N_SAMPLES * 7], Y[N_SAMPLES * 3];

static void make_data(void)
{
    uint64_t s = 99;
    th_fill_uniform(&s, X, N_SAMPLES * 7, -1.5f, 1.5f);
    th_fill_uniform(&s, Y, N_SAMPLES * 3, -1.0f, 1.0f);
}

/* `steps` steps of MSE training on batches drawn with the context's RNG, so
 * that a resume is only exact if the RNG state is restored too. */
static void train_steps(cg_ctx *ctx, cg_module *m, cg_optim *opt, int steps)
{
    for (int s = 0; s < steps; s++) {
        float xb[BATCH * 7], yb[BATCH * 3];
        for (int b = 0; b < BATCH; b++) {
            int i = (int)(cg_rand_u64(ctx) % N_SAMPLES);
            memcpy(xb + b * 7, X + i * 7, sizeof(float) * 7);
            memcpy(yb + b * 3, Y + i * 3, sizeof(float) * 3);
        }
        cg_scope_begin(ctx);
        cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(BATCH, 7), xb);
        cg_tensor *y = cg_tensor_from_host(ctx, CG_SHAPE(BATCH, 3), yb);
        cg_tensor *loss = cg_mse_loss(cg_module_forward(m, x), y, CG_REDUCTION_MEAN);
        cg_optim_zero_grad(opt);
        assert_int_equal(cg_backward(loss), CG_OK);
        assert_int_equal(cg_optim_step(opt), CG_OK);
        cg_scope_end(ctx);
        assert_int_equal(cg_ctx_status(ctx), CG_OK);
    }
}

static cg_optim *make_optim(cg_module *m, enum cg_optim_kind kind, float lr)
{
    struct cg_optim_options o = cg_optim_defaults(kind);
    o.lr = lr;
    if (kind == CG_OPTIM_SGD) o.momentum = 0.9f, o.nesterov = true;
    if (kind == CG_OPTIM_RMSPROP) o.momentum = 0.5f, o.centered = true;
    if (kind == CG_OPTIM_ADAM) o.weight_decay = 0.01f, o.decoupled_weight_decay = true;
    return cg_optim_create(m, &o);
}

/* ---- safetensors round trip -------------------------------------------------- */

static void test_safetensors_roundtrip(void **state)
{
    struct th_dirfx *f = *state;
    char p[256];
    path_in(f, "rt.safetensors", p, sizeof p);
    uint64_t s = 5;
    float a[5 * 3 * 2], b[1] = {-0.0f}, c[11];
    th_fill_uniform(&s, a, 30, -1e6f, 1e6f);
    th_fill_uniform(&s, c, 11, -1, 1);
    c[3] = INFINITY;
    c[4] = 1e-45f;   /* a subnormal survives bit for bit */
    struct cg_safetensors *st;
    assert_int_equal(cg_safetensors_create(&st), CG_OK);
    assert_int_equal(cg_safetensors_add(st, "layer.a", CG_SHAPE(5, 3, 2), a), CG_OK);
    assert_int_equal(cg_safetensors_add(st, "scalar", 0, NULL, b), CG_OK);
    assert_int_equal(cg_safetensors_add(st, "empty", CG_SHAPE(0, 4), NULL), CG_OK);
    assert_int_equal(cg_safetensors_add(st, "we\"ird\\name\n\xc3\xa9", CG_SHAPE(11), c), CG_OK);
    assert_int_equal(cg_safetensors_add(st, "scalar", CG_SHAPE(1), b), CG_STATUS_INVALID_ARGUMENT);
    assert_int_equal(cg_safetensors_set_meta(st, "note", "tab\there \"quoted\" \xe2\x82\xac"), CG_OK);
    assert_int_equal(cg_safetensors_set_meta(st, "k", "old"), CG_OK);
    assert_int_equal(cg_safetensors_set_meta(st, "k", "new"), CG_OK);
    assert_int_equal(cg_safetensors_write(p, st), CG_OK);

    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    FILE *fp = fopen(p, "rb");
    unsigned char len8[8];
    assert_int_equal(fread(len8, 1, 8, fp), 8);
    fclose(fp);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    assert_int_equal(hlen % 8, 0);   /* padded: the buffer starts 8-aligned */
    assert_int_equal((uint64_t)sb.st_size, 8 + hlen + 4 * (30 + 1 + 0 + 11));

    struct cg_safetensors *r;
    assert_int_equal(cg_safetensors_read(p, &r), CG_OK);
    assert_int_equal(r->n_tensors, 4);
    const struct cg_st_tensor *t = cg_safetensors_find(r, "layer.a");
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[0], 5);
    assert_int_equal(t->shape[2], 2);
    assert_bits_equal(t->data, a, 30, "layer.a");
    t = cg_safetensors_find(r, "scalar");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);
    assert_bits_equal(t->data, b, 1, "scalar (-0)");
    t = cg_safetensors_find(r, "empty");
    assert_int_equal(t->numel, 0);
    t = cg_safetensors_find(r, "we\"ird\\name\n\xc3\xa9");
    assert_non_null(t);
    assert_bits_equal(t->data, c, 11, "weird");
    assert_string_equal(cg_safetensors_meta(r, "note"), "tab\there \"quoted\" \xe2\x82\xac");
    assert_string_equal(cg_safetensors_meta(r, "k"), "new");
    assert_null(cg_safetensors_meta(r, "absent"));
    cg_safetensors_free(r);
    cg_safetensors_free(st);
}

/* ---- checkpoint round trip ---------------------------------------------------- */

static void test_checkpoint_roundtrip(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[256];
    path_in(f, "ck.safetensors", p, sizeof p);
    make_data();
    cg_seed(ctx, 11);
    cg_module *m = make_mlp(ctx);
    cg_optim *opt = make_optim(m, CG_OPTIM_ADAM, 3e-3f);
    train_steps(ctx, m, opt, 2);

    struct cg_scaler *sc;
    assert_int_equal(cg_scaler_create(CG_SCALER_MINMAX, 7, &sc), CG_OK);
    for (int i = 0; i < 7; i++) sc->offset[i] = -0.1f * (float)i, sc->scale[i] = 1.0f / 3 + (float)i;
    const char *classes[3] = {"cat", "dog \"big\"", "\xc3\xa9l\xc3\xa8ve"};
    struct cg_checkpoint_meta um[2] = {{"author", "io"}, {"best_val_loss", "0.125"}};
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    ex.epoch = 4;
    ex.step = 123;
    ex.model_spec = "linear 13 tanh, linear 3";
    ex.input_ndim = 1;
    ex.input_shape[0] = 7;
    ex.task = CG_TASK_CLASSIFICATION;
    ex.n_classes = 3;
    ex.class_names = classes;
    ex.scaler = sc;
    ex.n_meta = 2;
    ex.meta = um;
    uint64_t rng_saved[4];
    cg_rand_state(ctx, rng_saved);
    assert_int_equal(cg_checkpoint_save(p, m, opt, &ex), CG_OK);

    /* A fresh model, optimizer and RNG: everything must come back. */
    cg_seed(ctx, 77);
    cg_module *m2 = make_mlp(ctx);
    cg_optim *opt2 = make_optim(m2, CG_OPTIM_ADAM, 0.5f);
    struct cg_checkpoint_extra got;
    assert_int_equal(cg_checkpoint_load(p, m2, opt2, &got), CG_OK);
    int64_t n1, n2;
    float *w1 = weights(m, &n1), *w2 = weights(m2, &n2);
    assert_int_equal(n1, n2);
    assert_bits_equal(w1, w2, n1, "weights");
    free(w1);
    free(w2);
    struct cg_named_tensor p1[4], p2[4];
    assert_int_equal(cg_module_parameters(m, p1, 4), 4);
    cg_module_parameters(m2, p2, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(cg_optim_param_steps(opt2, p2[i].tensor), 2);
        for (int s = 0; s < 2; s++) {
            cg_tensor *a = cg_optim_param_state(opt, p1[i].tensor, s);
            cg_tensor *b = cg_optim_param_state(opt2, p2[i].tensor, s);
            assert_non_null(b);
            int64_t n = cg_tensor_numel(a);
            float *ha = malloc((size_t)n * 4), *hb = malloc((size_t)n * 4);
            cg_tensor_to_host(a, ha, n);
            cg_tensor_to_host(b, hb, n);
            assert_bits_equal(ha, hb, n, "optimizer state");
            free(ha);
            free(hb);
        }
    }
    struct cg_optim_options *o2 = cg_optim_group_options(opt2, 0);
    assert_true(o2->lr == 3e-3f);
    assert_true(o2->weight_decay == 0.01f);
    assert_true(o2->decoupled_weight_decay);
    uint64_t rng_now[4];
    cg_rand_state(ctx, rng_now);
    assert_memory_equal(rng_now, rng_saved, sizeof rng_now);
    assert_true(got.has_rng && got.has_optim);
    assert_int_equal(got.epoch, 4);
    assert_int_equal(got.step, 123);
    assert_string_equal(got.model_spec, "linear 13 tanh, linear 3");
    assert_int_equal(got.input_ndim, 1);
    assert_int_equal(got.input_shape[0], 7);
    assert_int_equal(got.task, CG_TASK_CLASSIFICATION);
    assert_int_equal(got.n_classes, 3);
    for (int i = 0; i < 3; i++) assert_string_equal(got.class_names[i], classes[i]);
    assert_non_null(got.scaler);
    assert_int_equal(got.scaler->kind, CG_SCALER_MINMAX);
    assert_int_equal(got.scaler->n_features, 7);
    assert_bits_equal(got.scaler->offset, sc->offset, 7, "scaler offset");
    assert_bits_equal(got.scaler->scale, sc->scale, 7, "scaler scale");
    assert_null(got.target_scaler);
    assert_int_equal(got.n_meta, 2);
    assert_string_equal(got.meta[0].key, "author");
    assert_string_equal(got.meta[1].value, "0.125");
    cg_checkpoint_extra_clear(&got);
    assert_int_equal(got.epoch, -1);

    /* The extra part alone (for tools that rebuild the model first). */
    assert_int_equal(cg_checkpoint_read_extra(p, &got), CG_OK);
    assert_string_equal(got.model_spec, "linear 13 tanh, linear 3");
    assert_non_null(got.scaler);
    cg_checkpoint_extra_clear(&got);

    /* Weights only: opt NULL ignores the optimizer state in the file. */
    cg_module *m3 = make_mlp(ctx);
    assert_int_equal(cg_checkpoint_load(p, m3, NULL, NULL), CG_OK);
    w1 = weights(m, &n1);
    w2 = weights(m3, &n2);
    assert_bits_equal(w1, w2, n1, "weights-only load");
    free(w1);
    free(w2);

    /* Another optimizer kind, or a weights-only file with an optimizer. */
    cg_optim *sgd = make_optim(m3, CG_OPTIM_SGD, 0.1f);
    assert_int_equal(cg_checkpoint_load(p, m3, sgd, NULL), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "the optimizer state is for adam, the optimizer is sgd");
    char p2path[256];
    path_in(f, "weights-only.safetensors", p2path, sizeof p2path);
    assert_int_equal(cg_checkpoint_save(p2path, m3, NULL, NULL), CG_OK);
    assert_int_equal(cg_checkpoint_load(p2path, m3, sgd, NULL), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "holds no optimizer state");
    struct cg_safetensors *r;
    assert_int_equal(cg_safetensors_read(p2path, &r), CG_OK);
    assert_int_equal(r->n_tensors, 4);   /* nothing but the weights */
    assert_string_equal(cg_safetensors_meta(r, "format"), "pt");
    cg_safetensors_free(r);

    /* Reserved user metadata is refused. */
    struct cg_checkpoint_meta bad = {"optim.kind", "sgd"};
    ex.meta = &bad;
    ex.n_meta = 1;
    assert_int_equal(cg_checkpoint_save(p2path, m3, NULL, &ex), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "\"optim.kind\" is reserved");
    cg_ctx_clear_error(ctx);

    cg_optim_free(sgd);
    cg_module_free(m3);
    cg_optim_free(opt2);
    cg_module_free(m2);
    cg_optim_free(opt);
    cg_module_free(m);
    cg_scaler_free(sc);
}

/* ---- resume == uninterrupted ---------------------------------------------------- */

static void resume_case(struct th_dirfx *f, enum cg_optim_kind kind)
{
    cg_ctx *ctx = f->ctx;
    char p[256];
    path_in(f, "resume.safetensors", p, sizeof p);
    make_data();

    cg_seed(ctx, 42);
    cg_module *a = make_mlp(ctx);
    cg_optim *oa = make_optim(a, kind, 1e-2f);
    train_steps(ctx, a, oa, 6);
    int64_t n;
    float *wa = weights(a, &n);

    cg_seed(ctx, 42);
    cg_module *b = make_mlp(ctx);
    cg_optim *ob = make_optim(b, kind, 1e-2f);
    train_steps(ctx, b, ob, 3);
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    ex.step = 3;
    assert_int_equal(cg_checkpoint_save(p, b, ob, &ex), CG_OK);
    cg_optim_free(ob);
    cg_module_free(b);

    /* "A new process": other seed, other initial weights, other lr. */
    cg_seed(ctx, 4242);
    cg_module *c = make_mlp(ctx);
    cg_optim *oc = make_optim(c, kind, 0.75f);
    struct cg_checkpoint_extra got;
    assert_int_equal(cg_checkpoint_load(p, c, oc, &got), CG_OK);
    assert_int_equal(got.step, 3);
    cg_checkpoint_extra_clear(&got);
    train_steps(ctx, c, oc, 3);
    float *wc = weights(c, &n);
    assert_bits_equal(wc, wa, n, "resumed vs uninterrupted weights");

    free(wa);
    free(wc);
    cg_optim_free(oa);
    cg_module_free(a);
    cg_optim_free(oc);
    cg_module_free(c);
}

static void test_resume_adam(void **state) { resume_case(*state, CG_OPTIM_ADAM); }
static void test_resume_sgd(void **state) { resume_case(*state, CG_OPTIM_SGD); }
static void test_resume_rmsprop(void **state) { resume_case(*state, CG_OPTIM_RMSPROP); }

/* ---- mismatches ---------------------------------------------------------------- */

static void test_model_mismatch(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[256];
    path_in(f, "mm.safetensors", p, sizeof p);
    cg_module *saved = cg_sequential_module(ctx, 4, cg_linear_module(ctx, 10, 64, true), cg_relu_module(ctx),
                                     cg_relu_module(ctx), cg_linear_module(ctx, 64, 3, true));
    assert_int_equal(cg_checkpoint_save(p, saved, NULL, NULL), CG_OK);
    cg_module *other = cg_sequential_module(ctx, 3, cg_linear_module(ctx, 10, 32, true), cg_relu_module(ctx),
                                     cg_linear_module(ctx, 32, 3, true));
    int64_t n0, n1;
    float *before = weights(other, &n0);
    assert_int_equal(cg_checkpoint_load(p, other, NULL, NULL), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "does not fit the model");
    th_assert_error_contains(ctx, "missing: 2.weight, 2.bias");
    th_assert_error_contains(ctx, "unexpected: 3.weight, 3.bias");
    th_assert_error_contains(ctx, "shape mismatch: 0.weight is (64, 10) in the file, (32, 10) in the model");
    th_assert_error_contains(ctx, "0.bias is (64,) in the file, (32,) in the model");
    float *after = weights(other, &n1);
    assert_bits_equal(after, before, n0, "model unchanged after a failed load");
    free(before);
    free(after);
    cg_ctx_clear_error(ctx);
    cg_module_free(saved);
    cg_module_free(other);
}

/* Buffers (BatchNorm2d's running statistics and num_batches_tracked) are
 * saved and restored with the weights, under PyTorch's state_dict names. */
static void test_buffers_roundtrip(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[256];
    path_in(f, "bn.safetensors", p, sizeof p);
    cg_module *a = cg_sequential_module(ctx, 1, cg_batch_norm2d_module(ctx, 3, 1e-5f, 0.1f));
    assert_non_null(a);
    for (int k = 0; k < 3; k++) { /* training steps move the running statistics */
        cg_scope_begin(ctx);
        cg_tensor *x = cg_tensor_normal(ctx, CG_SHAPE(4, 3, 5, 5), 2.0f, 3.0f);
        assert_non_null(cg_module_forward(a, x));
        cg_scope_end(ctx);
    }
    const char *names[3] = {"0.running_mean", "0.running_var", "0.num_batches_tracked"};
    float want[3][3], got[3][3];
    for (int i = 0; i < 3; i++) {
        cg_tensor *b = cg_module_buffer(a, names[i]);
        assert_non_null(b);
        assert_int_equal(cg_tensor_to_host(b, want[i], cg_tensor_numel(b)), CG_OK);
    }
    assert_true(want[0][0] != 0.0f && want[1][0] != 1.0f); /* really moved */
    assert_int_equal(cg_checkpoint_save(p, a, NULL, NULL), CG_OK);
    cg_module *b = cg_sequential_module(ctx, 1, cg_batch_norm2d_module(ctx, 3, 1e-5f, 0.1f));
    assert_int_equal(cg_checkpoint_load(p, b, NULL, NULL), CG_OK);
    for (int i = 0; i < 3; i++) {
        cg_tensor *t = cg_module_buffer(b, names[i]);
        assert_int_equal(cg_tensor_to_host(t, got[i], cg_tensor_numel(t)), CG_OK);
        assert_memory_equal(got[i], want[i], (size_t)cg_tensor_numel(t) * sizeof(float));
    }
    /* A model without those buffers says which names it did not expect. */
    cg_module *c = cg_sequential_module(ctx, 1, cg_relu_module(ctx));
    assert_int_equal(cg_checkpoint_load(p, c, NULL, NULL), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "unexpected: 0.weight, 0.bias, 0.running_mean");
    cg_ctx_clear_error(ctx);
    cg_module_free(a);
    cg_module_free(b);
    cg_module_free(c);
}

/* ---- hand-made files --------------------------------------------------------- */

/* Writes [u64 hlen][json][data] with hlen as given (not necessarily the
 * JSON's length) and returns the path. */
static void write_raw(const char *path, uint64_t hlen, const char *json, size_t json_len,
                      const void *data, size_t data_len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    assert_int_equal(fwrite(b, 1, 8, fp), 8);
    if (json_len) assert_int_equal(fwrite(json, 1, json_len, fp), json_len);
    if (data_len) assert_int_equal(fwrite(data, 1, data_len, fp), data_len);
    fclose(fp);
}

static void write_file(const char *path, const char *json, const void *data, size_t data_len)
{
    write_raw(path, strlen(json), json, strlen(json), data, data_len);
}

static void test_handmade_file(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[256];
    path_in(f, "hand.safetensors", p, sizeof p);
    /* What safetensors.torch.save_file({"0.weight": W (2, 3), "0.bias": b},
     * metadata={"format": "pt"}) writes, plus F16 / BF16 / F64 tensors, with
     * whitespace and key order a reader must not depend on. Byte layout by
     * hand: bias [0, 8), weight [8, 32), half [32, 38), bf [38, 42),
     * dbl [42, 58). */
    const char *json =
        "{\"__metadata__\":{\"format\":\"pt\"}, \"0.weight\" : {\"shape\": [2, 3], "
        "\"dtype\": \"F32\", \"data_offsets\": [8, 32]},\n\"0.bias\":{\"dtype\":\"F32\","
        "\"shape\":[2],\"data_offsets\":[0,8]},\"half\":{\"dtype\":\"F16\",\"shape\":[3],"
        "\"data_offsets\":[32,38]},\"bf\":{\"dtype\":\"BF16\",\"shape\":[2],"
        "\"data_offsets\":[38,42]},\"dbl\":{\"dtype\":\"F64\",\"shape\":[2,1],"
        "\"data_offsets\":[42,58]}}  ";
    unsigned char data[58];
    const float bias[2] = {0.5f, -0.25f}, w[6] = {1, 2, 3, -4, 5.5f, 1e-3f};
    /* little-endian bytes, built explicitly */
    for (int i = 0; i < 8; i++) {
        uint32_t u;
        memcpy(&u, i < 2 ? &bias[i] : &w[i - 2], 4);
        for (int k = 0; k < 4; k++) data[4 * i + k] = (unsigned char)(u >> (8 * k));
    }
    /* F16: 1.0 = 0x3C00, -2.5 = 0xC100, 2^-24 (smallest subnormal) = 0x0001 */
    const uint16_t h[3] = {0x3C00, 0xC100, 0x0001};
    for (int i = 0; i < 3; i++) data[32 + 2 * i] = h[i] & 0xFF, data[33 + 2 * i] = (unsigned char)(h[i] >> 8);
    /* BF16: 1.0 = 0x3F80, -3.0 = 0xC040 */
    const uint16_t bf[2] = {0x3F80, 0xC040};
    for (int i = 0; i < 2; i++) data[38 + 2 * i] = bf[i] & 0xFF, data[39 + 2 * i] = (unsigned char)(bf[i] >> 8);
    const double dv[2] = {0.1, -1e300};
    for (int i = 0; i < 2; i++) {
        uint64_t u;
        memcpy(&u, &dv[i], 8);
        for (int k = 0; k < 8; k++) data[42 + 8 * i + k] = (unsigned char)(u >> (8 * k));
    }
    write_file(p, json, data, sizeof data);

    struct cg_safetensors *r;
    assert_int_equal(cg_safetensors_read(p, &r), CG_OK);
    assert_int_equal(r->n_tensors, 5);
    assert_string_equal(r->tensors[0].name, "0.bias");   /* file (offset) order */
    const struct cg_st_tensor *t = cg_safetensors_find(r, "0.weight");
    assert_bits_equal(t->data, w, 6, "0.weight");
    t = cg_safetensors_find(r, "half");
    assert_true(t->data[0] == 1.0f && t->data[1] == -2.5f && t->data[2] == 0x1p-24f);
    t = cg_safetensors_find(r, "bf");
    assert_true(t->data[0] == 1.0f && t->data[1] == -3.0f);
    t = cg_safetensors_find(r, "dbl");
    assert_int_equal(t->ndim, 2);
    assert_true(t->data[0] == (float)0.1 && isinf(t->data[1]) && t->data[1] < 0);
    cg_safetensors_free(r);

    /* The PyTorch-style part loads into the equivalent clgrad model. */
    const char *json2 =
        "{\"__metadata__\":{\"format\":\"pt\"},\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],"
        "\"data_offsets\":[0,8]},\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],"
        "\"data_offsets\":[8,32]}}";
    write_file(p, json2, data, 32);
    cg_module *m = cg_sequential_module(ctx, 2, cg_linear_module(ctx, 3, 2, true), cg_relu_module(ctx));
    assert_int_equal(cg_checkpoint_load(p, m, NULL, NULL), CG_OK);
    float got[6];
    assert_int_equal(cg_tensor_to_host(cg_module_parameter(m, "0.weight"), got, 6), CG_OK);
    assert_bits_equal(got, w, 6, "loaded 0.weight");
    assert_int_equal(cg_tensor_to_host(cg_module_parameter(m, "0.bias"), got, 2), CG_OK);
    assert_bits_equal(got, bias, 2, "loaded 0.bias");
    /* And it computes y = x W^T + b. */
    cg_scope_begin(ctx);
    float xv[3] = {1, -1, 2}, yv[2];
    cg_tensor *y = cg_module_forward(m, cg_tensor_from_host(ctx, CG_SHAPE(1, 3), xv));
    assert_int_equal(cg_tensor_to_host(y, yv, 2), CG_OK);
    th_assert_close(yv, (const double[]){fmax(0, 1 - 2 + 6 + 0.5), fmax(0, -4 - 5.5 + 2e-3 - 0.25)},
                    2, 1e-5, 1e-6, "forward of loaded Linear");
    cg_scope_end(ctx);
    cg_module_free(m);
}

/* ---- malformed files ------------------------------------------------------------ */

struct bad_case {
    const char *what;
    const char *json;          /* NULL: raw bytes below */
    int64_t hlen;              /* -1: strlen(json) */
    size_t data_len;           /* bytes of (zero) data after the header */
    cg_status status;
    const char *needle;
};

static void test_malformed(void **state)
{
    struct th_dirfx *f = *state;
    char p[256];
    path_in(f, "bad.safetensors", p, sizeof p);
    static const struct bad_case cases[] = {
        {"header length past the end", "{}", 1000, 0, CG_STATUS_PARSE_ERROR, "runs past the end of the file"},
        {"huge header length", "{}", (int64_t)1 << 40, 0, CG_STATUS_PARSE_ERROR, "over the 100000000-byte limit"},
        {"huge header length (max)", "{}", -2, 0, CG_STATUS_PARSE_ERROR, "over the 100000000-byte limit"},
        {"truncated data", "{\"a\":{\"dtype\":\"F32\",\"shape\":[6],\"data_offsets\":[0,24]}}", -1, 12,
         CG_STATUS_PARSE_ERROR, "out of range: the data buffer holds 12 bytes (truncated file?)"},
        {"overlapping offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}}", -1, 24,
         CG_STATUS_PARSE_ERROR, "tensors \"a\" [0, 16] and \"b\" [8, 24] overlap"},
        {"out-of-range offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}}",
         -1, 16, CG_STATUS_PARSE_ERROR, "are out of range"},
        {"reversed offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", -1, 8,
         CG_STATUS_PARSE_ERROR, "end before they begin"},
        {"gap in the buffer", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", -1, 16,
         CG_STATUS_PARSE_ERROR, "bytes [0, 8) of the data buffer belong to no tensor"},
        {"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", -1, 12,
         CG_STATUS_PARSE_ERROR, "trailing bytes"},
        {"unsupported dtype", "{\"a\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[0,8]}}", -1, 8,
         CG_STATUS_PARSE_ERROR, "unsupported dtype U64"},
        {"unknown dtype", "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "unknown dtype \"F33\""},
        {"dtype not a string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "dtype is not a string"},
        {"shape/size mismatch", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,20]}}", -1, 20,
         CG_STATUS_PARSE_ERROR, "shape (2, 3) F32 needs 24 bytes but data_offsets [0, 20] hold 20"},
        {"overflowing shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],"
         "\"data_offsets\":[0,4]}}", -1, 4, CG_STATUS_PARSE_ERROR, "is too large"},
        {"too many dims", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
         -1, 4, CG_STATUS_PARSE_ERROR, "more than 6 dims"},
        {"negative dim", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "not a non-negative integer"},
        {"fractional offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "not a non-negative integer"},
        {"three offsets", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "more than 2 values"},
        {"invalid JSON", "{\"a\":{\"dtype\":\"F32\",,\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "invalid JSON at byte 20"},
        {"unterminated string", "{\"a", -1, 0, CG_STATUS_PARSE_ERROR, "unterminated string"},
        {"unclosed object", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", -1, 4,
         CG_STATUS_PARSE_ERROR, "expected ',' or '}', found the end of the header"},
        {"trailing JSON", "{} {}", -1, 0, CG_STATUS_PARSE_ERROR, "trailing characters"},
        {"bad escape", "{\"a\\q\":{}}", -1, 0, CG_STATUS_PARSE_ERROR, "bad escape"},
        {"control character", "{\"a\tb\":{}}", -1, 0, CG_STATUS_PARSE_ERROR, "control character"},
        {"invalid UTF-8", "{\"a\xff\":{}}", -1, 0, CG_STATUS_PARSE_ERROR, "invalid UTF-8"},
        {"overlong UTF-8", "{\"a\xc0\xaf\":{}}", -1, 0, CG_STATUS_PARSE_ERROR, "invalid UTF-8"},
        {"lone surrogate", "{\"a\\ud800\":{}}", -1, 0, CG_STATUS_PARSE_ERROR, "unpaired surrogate"},
        {"literal true", "{\"a\":true}", -1, 0, CG_STATUS_PARSE_ERROR, "its value is not an object"},
        {"duplicate names", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", -1, 8,
         CG_STATUS_PARSE_ERROR, "duplicate tensor name \"a\""},
        {"duplicate field", "{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],"
         "\"data_offsets\":[0,4]}}", -1, 4, CG_STATUS_PARSE_ERROR, "duplicate field \"dtype\""},
        {"duplicate metadata", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", -1, 0,
         CG_STATUS_PARSE_ERROR, "duplicate metadata key \"k\""},
        {"two metadata objects", "{\"__metadata__\":{},\"__metadata__\":{}}", -1, 0,
         CG_STATUS_PARSE_ERROR, "duplicate key \"__metadata__\""},
        {"metadata not strings", "{\"__metadata__\":{\"k\":1}}", -1, 0, CG_STATUS_PARSE_ERROR,
         "metadata value of \"k\" is not a string"},
        {"non-object JSON (array)", "[1, 2]", -1, 0, CG_STATUS_PARSE_ERROR, "not a JSON object"},
        {"non-object JSON (string)", "\"x\"", -1, 0, CG_STATUS_PARSE_ERROR, "not a JSON object"},
        {"not JSON at all", "PK\x03\x04", -1, 0, CG_STATUS_PARSE_ERROR, "invalid JSON at byte 0"},
        {"empty header", "", -1, 0, CG_STATUS_PARSE_ERROR, "the header is empty"},
        {"missing field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", -1, 0, CG_STATUS_PARSE_ERROR,
         "missing field \"data_offsets\""},
        {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4, CG_STATUS_PARSE_ERROR,
         "missing field \"dtype\""},
        {"unknown field", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "unknown field \"x\""},
        {"empty name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", -1, 4,
         CG_STATUS_PARSE_ERROR, "empty name"},
        {"NUL escape", "{\"a\\u0000b\":{}}", -1, 0, CG_STATUS_PARSE_ERROR, "\\u0000"},
    };
    static unsigned char zeros[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct bad_case *c = &cases[i];
        uint64_t hlen = c->hlen == -1 ? strlen(c->json) : c->hlen == -2 ? UINT64_MAX : (uint64_t)c->hlen;
        write_raw(p, hlen, c->json, strlen(c->json), zeros, c->data_len);
        struct cg_safetensors *r = (struct cg_safetensors *)&r;
        cg_status s = cg_safetensors_read(p, &r);
        if (s != c->status || !strstr(cg_last_error(NULL), c->needle) || r != NULL) {
            print_error("case \"%s\": status %s, message \"%s\"; expected %s with \"%s\"\n",
                        c->what, cg_status_str(s), cg_last_error(NULL), cg_status_str(c->status),
                        c->needle);
            fail();
        }
    }

    /* Files that are too short, missing, or not files. */
    FILE *fp = fopen(p, "wb");
    fwrite("\x02\0\0\0\0", 1, 5, fp);
    fclose(fp);
    struct cg_safetensors *r;
    assert_int_equal(cg_safetensors_read(p, &r), CG_STATUS_PARSE_ERROR);
    assert_thread_error("truncated: the file is 5 bytes");
    fp = fopen(p, "wb");
    fclose(fp);
    assert_int_equal(cg_safetensors_read(p, &r), CG_STATUS_PARSE_ERROR);
    assert_thread_error("the file is 0 bytes");
    assert_int_equal(cg_safetensors_read(f->dir, &r), CG_STATUS_IO_ERROR);
    assert_thread_error("is a folder");
    path_in(f, "does-not-exist.safetensors", p, sizeof p);
    assert_int_equal(cg_safetensors_read(p, &r), CG_STATUS_IO_ERROR);
    assert_thread_error("No such file");

    /* Through cg_checkpoint_load: the message lands in the context and the
     * model stays as it was. */
    cg_ctx *ctx = f->ctx;
    path_in(f, "bad.safetensors", p, sizeof p);
    write_file(p, "{\"0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                  "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}", zeros, 24);
    cg_module *m = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 3, 2, true));
    int64_t n;
    float *before = weights(m, &n);
    assert_int_equal(cg_checkpoint_load(p, m, NULL, NULL), CG_STATUS_PARSE_ERROR);
    th_assert_error_contains(ctx, "overlap");
    float *after = weights(m, &n);
    assert_bits_equal(after, before, n, "model after a malformed file");
    free(before);
    free(after);
    cg_ctx_clear_error(ctx);
    cg_module_free(m);
}

/* ---- failures during a save ------------------------------------------------------ */

static int count_tmp_files(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp-")) n++;
    if (d) closedir(d);
    return n;
}

static void test_failed_save_keeps_old(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[256];
    path_in(f, "keep.safetensors", p, sizeof p);
    cg_seed(ctx, 3);
    cg_module *good = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 40, 30, true));
    assert_int_equal(cg_checkpoint_save(p, good, NULL, NULL), CG_OK);
    cg_module *other = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 40, 30, true));
    int64_t n;
    float *wgood = weights(good, &n);

    /* 1. A full disk: writes past 1000 bytes fail with EFBIG half-way. */
    struct rlimit old;
    getrlimit(RLIMIT_FSIZE, &old);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {1000, old.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    cg_status s = cg_checkpoint_save(p, other, NULL, NULL);
    setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    assert_int_equal(s, CG_STATUS_IO_ERROR);
    th_assert_error_contains(ctx, "File too large");
    th_assert_error_contains(ctx, "unchanged");
    cg_ctx_clear_error(ctx);
    assert_int_equal(count_tmp_files(f->dir), 0);   /* cleaned up */
    cg_module *check = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 40, 30, true));
    assert_int_equal(cg_checkpoint_load(p, check, NULL, NULL), CG_OK);
    float *w = weights(check, &n);
    assert_bits_equal(w, wgood, n, "old checkpoint after a failed save");
    free(w);

    /* 2. A crash: the process dies (SIGXFSZ) in the middle of the write.
     * The child only does host work (no device calls after fork). */
    struct cg_safetensors *st;
    assert_int_equal(cg_safetensors_create(&st), CG_OK);
    float big[4096];
    memset(big, 0, sizeof big);
    assert_int_equal(cg_safetensors_add(st, "0.weight", CG_SHAPE(4096), big), CG_OK);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit core = {0, 0}, small = {2000, 2000};
        setrlimit(RLIMIT_CORE, &core);
        signal(SIGXFSZ, SIG_DFL);
        setrlimit(RLIMIT_FSIZE, &small);
        cg_safetensors_write(p, st);
        _exit(0);   /* not reached if the write really dies half-way */
    }
    int wst;
    assert_int_equal(waitpid(pid, &wst, 0), pid);
    assert_true(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGXFSZ);
    cg_safetensors_free(st);
    assert_int_equal(count_tmp_files(f->dir), 1);   /* the crash's leftover */
    assert_int_equal(cg_checkpoint_load(p, check, NULL, NULL), CG_OK);
    w = weights(check, &n);
    assert_bits_equal(w, wgood, n, "old checkpoint after a crash during save");
    free(w);

    /* 3. A folder that does not exist. */
    char q[300];
    snprintf(q, sizeof q, "%s/no/such/dir/x.safetensors", f->dir);
    assert_int_equal(cg_checkpoint_save(q, good, NULL, NULL), CG_STATUS_IO_ERROR);
    th_assert_error_contains(ctx, "cannot create the temporary file");
    cg_ctx_clear_error(ctx);

    free(wgood);
    cg_module_free(good);
    cg_module_free(other);
    cg_module_free(check);
}

/* ---- the independent Python reader / writer ---------------------------------------- */

/* python3 tests/tools/safetensors_check.py, from TEST_SOURCE_DIR (set by
 * meson); skipped when run by hand without it. */
static bool python_script(char *buf, size_t len)
{
    const char *src = getenv("TEST_SOURCE_DIR");
    if (!src || !*src) return false;
    snprintf(buf, len, "%s/tools/safetensors_check.py", src);
    return access(buf, R_OK) == 0 && system("python3 -c 'import json, struct' 2>/dev/null") == 0;
}

static void test_python_reads_ours(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char script[512], p[256], e[256], cmd[1400];
    if (!python_script(script, sizeof script)) {
        skip();
        return;
    }
    path_in(f, "py.safetensors", p, sizeof p);
    path_in(f, "py-expect.json", e, sizeof e);
    cg_seed(ctx, 8);
    cg_module *m = make_mlp(ctx);
    cg_optim *opt = make_optim(m, CG_OPTIM_ADAM, 1e-3f);
    make_data();
    train_steps(ctx, m, opt, 1);
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    ex.epoch = 1;
    assert_int_equal(cg_checkpoint_save(p, m, opt, &ex), CG_OK);

    /* The expected tensors as exact bit patterns. */
    FILE *fp = fopen(e, "w");
    fprintf(fp, "{\"metadata\": {\"format\": \"pt\", \"clgrad.epoch\": \"1\", \"optim.kind\": "
                "\"adam\", \"optim.0.weight.step\": \"1\"}, \"tensors\": {");
    struct cg_named_tensor ps[4];
    cg_module_parameters(m, ps, 4);
    for (int i = 0; i < 4; i++) {
        for (int s = -1; s < 2; s++) {
            cg_tensor *t = s < 0 ? ps[i].tensor : cg_optim_param_state(opt, ps[i].tensor, s);
            int64_t n = cg_tensor_numel(t);
            float *h = malloc((size_t)n * 4);
            cg_tensor_to_host(t, h, n);
            fprintf(fp, "%s\"%s%s%s\": {\"shape\": [", i || s >= 0 ? ", " : "", s < 0 ? "" : "optim.",
                    ps[i].name, s < 0 ? "" : s == 0 ? ".exp_avg" : ".exp_avg_sq");
            for (int d = 0; d < cg_tensor_ndim(t); d++)
                fprintf(fp, "%s%lld", d ? ", " : "", (long long)cg_tensor_dim(t, d));
            fprintf(fp, "], \"bits\": [");
            for (int64_t k = 0; k < n; k++) {
                uint32_t u;
                memcpy(&u, &h[k], 4);
                fprintf(fp, "%s%u", k ? ", " : "", u);
            }
            fprintf(fp, "]}");
            free(h);
        }
    }
    fprintf(fp, "}}\n");
    fclose(fp);
    snprintf(cmd, sizeof cmd, "python3 '%s' check '%s' '%s'", script, p, e);
    assert_int_equal(system(cmd), 0);
    cg_optim_free(opt);
    cg_module_free(m);
}

static void test_python_writes_we_read(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char script[512], p[256], cmd[1400];
    if (!python_script(script, sizeof script)) {
        skip();
        return;
    }
    path_in(f, "from-py.safetensors", p, sizeof p);
    snprintf(cmd, sizeof cmd, "python3 '%s' write '%s'", script, p);
    assert_int_equal(system(cmd), 0);
    /* safetensors_check.py write: a state_dict of Linear(3, 2) -> ReLU ->
     * Linear(2, 1) with weights k/10 - 0.3 (k = 0, 1, ...), plus F16, BF16
     * and F64 extras. */
    struct cg_safetensors *r;
    assert_int_equal(cg_safetensors_read(p, &r), CG_OK);
    const struct cg_st_tensor *t = cg_safetensors_find(r, "extra.half");
    assert_non_null(t);
    assert_true(t->data[0] == 1.0f && t->data[1] == -2.5f && t->data[2] == 0x1p-14f);
    t = cg_safetensors_find(r, "extra.bf16");
    assert_true(t->data[0] == 1.0f && t->data[1] == -3.0f && t->data[2] == 0.15625f);
    t = cg_safetensors_find(r, "extra.f64");
    assert_true(t->data[0] == (float)0.1 && t->data[1] == (float)-1e-3);
    assert_string_equal(cg_safetensors_meta(r, "format"), "pt");
    cg_safetensors_free(r);

    cg_module *m = cg_sequential_module(ctx, 3, cg_linear_module(ctx, 3, 2, true), cg_relu_module(ctx),
                                 cg_linear_module(ctx, 2, 1, true));
    assert_int_equal(cg_checkpoint_load(p, m, NULL, NULL), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "unexpected: extra.half, extra.bf16, extra.f64");
    cg_ctx_clear_error(ctx);
    snprintf(cmd, sizeof cmd, "python3 '%s' write '%s' --weights-only", script, p);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(cg_checkpoint_load(p, m, NULL, NULL), CG_OK);
    const char *names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    const int sizes[4] = {6, 2, 2, 1};
    for (int i = 0, k = 0; i < 4; i++) {
        float v[6];
        assert_int_equal(cg_tensor_to_host(cg_module_parameter(m, names[i]), v, sizes[i]), CG_OK);
        for (int j = 0; j < sizes[i]; j++, k++) assert_true(v[j] == (float)(k / 10.0 - 0.3));
    }
    cg_module_free(m);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_safetensors_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_adam, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_sgd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_rmsprop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_buffers_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handmade_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_save_keeps_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_reads_ours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_python_writes_we_read, setup, teardown),
    };
    return th_run("checkpoint", tests, sizeof tests / sizeof tests[0], argc, argv);
}
