/*
 * tests/test_reliability.c — the faults of issue 17 found by feeding clgrad
 * bad input, each checked on every backend where it applies:
 *   - NaN through the vectorised math (exp, sigmoid, tanh, GELU, softmax)
 *     stays NaN (item 2; under UBSan the old exp converted NaN to int);
 *   - a checkpoint whose class names are not UTF-8 is not written, and the
 *     previous file survives (item 1);
 *   - NaN/Inf weights are rejected with the tensor's name unless allowed,
 *     and names/shapes are checked from the header before any data is read
 *     (item 8);
 *   - stale temporary files of dead processes are removed by the next save
 *     to the same path (item 10);
 *   - messages that name the layer and bytes, or the columns (item 11).
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The out-of-memory test asks for terabytes on purpose: under ASan, make
 * malloc return NULL as it does elsewhere instead of aborting. */
__attribute__((visibility("default"))) const char *__asan_default_options(void);
__attribute__((visibility("default"))) const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static int setup(void **state) { return th_dir_setup(state, 77, "rel"); }
static int teardown(void **state) { return th_dir_teardown(state); }

static char *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

static void write_all(const char *path, const void *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

/* ---- item 2: NaN through the vectorised math --------------------------------- */

static void test_nan_math(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    /* (2, 8): row 0 has a NaN at column 3, row 1 is finite */
    float x[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i / 4.0f - 2.0f;
    x[3] = NAN;
    cg_scope_begin(ctx);
    cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(2, 8), x);
    cg_tensor *outs[5] = {cg_exp(t), cg_sigmoid(t), cg_tanh(t), cg_gelu(t), cg_softmax(t, 1)};
    const char *names[5] = {"exp", "sigmoid", "tanh", "gelu", "softmax"};
    for (int k = 0; k < 5; k++) {
        assert_non_null(outs[k]);
        float y[16];
        assert_int_equal(cg_tensor_to_host(outs[k], y, 16), CG_OK);
        for (int i = 0; i < 16; i++) {
            /* softmax: the whole row of the NaN is NaN (as PyTorch) */
            bool want_nan = i == 3 || (k == 4 && i < 8);
            if (want_nan != (bool)isnan(y[i]))
                fail_msg("%s: element %d is %g (input %g)", names[k], i, (double)y[i],
                         (double)x[i]);
        }
    }
    cg_scope_end(ctx);
}

/* ---- item 1: never write what the reader rejects ------------------------------ */

static void test_save_invalid_utf8(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[128];
    snprintf(p, sizeof p, "%s/ck.safetensors", f->dir);
    cg_module *m = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 3, 2, true));
    assert_non_null(m);
    static const char *const good[2] = {"caf\xc3\xa9", "tea"};
    static const char *const bad[2] = {"caf\xe9", "tea"};   /* Latin-1 */
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    ex.task = CG_TASK_CLASSIFICATION;
    ex.n_classes = 2;
    ex.class_names = good;
    assert_int_equal(cg_checkpoint_save(p, m, NULL, &ex), CG_OK);
    size_t n0, n1;
    char *before = read_all(p, &n0);

    ex.class_names = bad;
    assert_int_equal(cg_checkpoint_save(p, m, NULL, &ex), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "class_names[0] \"caf\xe9\" is not valid UTF-8 (byte 0xe9 at "
                                  "byte 4); nothing was written");
    cg_ctx_clear_error(ctx);
    char *after = read_all(p, &n1);
    assert_true(n0 == n1 && memcmp(before, after, n0) == 0);   /* the good file survives */
    struct cg_checkpoint_extra got;
    assert_int_equal(cg_checkpoint_load(p, m, NULL, &got), CG_OK);
    assert_string_equal(got.class_names[0], "caf\xc3\xa9");
    cg_checkpoint_extra_clear(&got);

    /* User metadata and the safetensors writer itself. */
    struct cg_checkpoint_meta meta = {"note", "caf\xe9"};
    ex.class_names = good;
    ex.n_meta = 1;
    ex.meta = &meta;
    assert_int_equal(cg_checkpoint_save(p, m, NULL, &ex), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "value of metadata \"note\" is not valid UTF-8");
    cg_ctx_clear_error(ctx);
    struct cg_safetensors *st;
    assert_int_equal(cg_safetensors_create(&st), CG_OK);
    assert_int_equal(cg_safetensors_add(st, "w\xff", 0, NULL, NULL), CG_OK);
    assert_int_equal(cg_safetensors_write(p, st), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "tensor name \"w\xff\" is not valid UTF-8");
    cg_safetensors_free(st);
    free(after);
    after = read_all(p, &n1);
    assert_true(n0 == n1 && memcmp(before, after, n0) == 0);
    free(before);
    free(after);
    cg_module_free(m);
}

/* ---- item 8: header first, finite values ------------------------------------- */

/* Rewrites the safetensors file at path with its header edited by fn
 * (which gets the JSON without padding and returns a new malloc'd one);
 * the data buffer is kept and then extended to extra_bytes more (a sparse
 * file: no disk is used). */
static void edit_file(const char *path, char *(*fn)(const char *json, int64_t buflen),
                      int64_t extra_bytes)
{
    size_t n;
    char *b = read_all(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | (unsigned char)b[i];
    char *json = strndup(b + 8, hlen);
    for (size_t k = strlen(json); k > 0 && json[k - 1] == ' '; k--) json[k - 1] = '\0';
    int64_t buflen = (int64_t)(n - 8 - hlen);
    char *nj = fn(json, buflen);
    size_t nl = strlen(nj);
    size_t padded = (nl + 7) / 8 * 8;
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    unsigned char lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(lenb, 1, 8, fp);
    fwrite(nj, 1, nl, fp);
    for (size_t k = nl; k < padded; k++) fputc(' ', fp);
    fwrite(b + 8 + hlen, 1, (size_t)buflen, fp);
    assert_int_equal(fclose(fp), 0);
    if (extra_bytes) {
        int fd = open(path, O_WRONLY);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t)(8 + padded + (size_t)buflen) + extra_bytes), 0);
        close(fd);
    }
    free(nj);
    free(json);
    free(b);
}

#define JUNK_BYTES ((int64_t)1 << 40)   /* 1 TiB, sparse */

static char *add_junk(const char *json, int64_t buflen)
{
    size_t n = strlen(json) + 200;
    char *out = malloc(n);
    snprintf(out, n, "%.*s,\"junk\":{\"dtype\":\"F32\",\"shape\":[%lld],\"data_offsets\":[%lld,%lld]}}",
             (int)strlen(json) - 1, json, (long long)(JUNK_BYTES / 4), (long long)buflen,
             (long long)(buflen + JUNK_BYTES));
    return out;
}

static char *resize_bias(const char *json, int64_t buflen)
{
    (void)buflen;
    /* "0.bias" (2) of the model becomes (1, 2): same bytes, other shape */
    char *out = malloc(strlen(json) + 8);
    const char *at = strstr(json, "\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2]");
    assert_non_null(at);
    size_t k = (size_t)(at - json) + strlen("\"0.bias\":{\"dtype\":\"F32\",\"shape\":[");
    sprintf(out, "%.*s1,%s", (int)k, json, json + k);
    return out;
}

static void test_header_first(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[128];
    snprintf(p, sizeof p, "%s/ck.safetensors", f->dir);
    cg_module *m = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 3, 2, true));
    assert_int_equal(cg_checkpoint_save(p, m, NULL, NULL), CG_OK);
    /* A 1 TiB tensor the model does not have: the old loader allocated and
     * read it before matching names (failing "out of host memory"); now
     * the header alone rejects it. */
    edit_file(p, add_junk, JUNK_BYTES);
    assert_int_equal(cg_checkpoint_load(p, m, NULL, NULL), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "does not fit the model: unexpected: junk");
    cg_ctx_clear_error(ctx);
    /* read_extra reads no weights at all */
    struct cg_checkpoint_extra ex;
    assert_int_equal(cg_checkpoint_read_extra(p, &ex), CG_OK);
    cg_checkpoint_extra_clear(&ex);

    assert_int_equal(cg_checkpoint_save(p, m, NULL, NULL), CG_OK);
    edit_file(p, resize_bias, 0);
    assert_int_equal(cg_checkpoint_load(p, m, NULL, NULL), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(ctx, "shape mismatch: 0.bias is (1, 2) in the file, (2,) in the model");
    cg_ctx_clear_error(ctx);
    cg_module_free(m);
}

static void test_nonfinite_weights(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    char p[128];
    snprintf(p, sizeof p, "%s/ck.safetensors", f->dir);
    cg_module *m = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 3, 2, true));
    cg_optim *opt = cg_adam(m, 1e-3f);
    assert_non_null(opt);
    cg_tensor *w = cg_module_parameter(m, "0.weight");
    float good[6], bad[6], got[6];
    assert_int_equal(cg_tensor_to_host(w, good, 6), CG_OK);
    const float values[2] = {NAN, -INFINITY};
    for (int k = 0; k < 2; k++) {
        memcpy(bad, good, sizeof bad);
        bad[4] = values[k];
        assert_int_equal(cg_tensor_set_data(w, bad, 6), CG_OK);
        assert_int_equal(cg_checkpoint_save(p, m, opt, NULL), CG_OK);
        assert_int_equal(cg_tensor_set_data(w, good, 6), CG_OK);
        /* rejected, naming the tensor and the element; the model unchanged */
        assert_int_equal(cg_checkpoint_load(p, m, opt, NULL), CG_STATUS_PARSE_ERROR);
        th_assert_error_contains(ctx, k ? "tensor \"0.weight\" holds an infinite value at element 4"
                                        : "tensor \"0.weight\" holds NaN at element 4");
        cg_ctx_clear_error(ctx);
        assert_int_equal(cg_tensor_to_host(w, got, 6), CG_OK);
        assert_memory_equal(got, good, sizeof good);
        /* allowed on request */
        struct cg_checkpoint_load_options o = cg_checkpoint_load_options_default();
        o.allow_nonfinite = true;
        assert_int_equal(cg_checkpoint_load_ex(p, m, opt, NULL, &o), CG_OK);
        assert_int_equal(cg_tensor_to_host(w, got, 6), CG_OK);
        assert_memory_equal(got, bad, sizeof bad);
        assert_int_equal(cg_tensor_set_data(w, good, 6), CG_OK);
    }
    /* optimizer state too */
    assert_int_equal(cg_optim_set_param_state(opt, w, 1, (float[]){0, 0, INFINITY, 0, 0, 0}),
                     CG_OK);
    assert_int_equal(cg_checkpoint_save(p, m, opt, NULL), CG_OK);
    assert_int_equal(cg_checkpoint_load(p, m, opt, NULL), CG_STATUS_PARSE_ERROR);
    th_assert_error_contains(ctx, "tensor \"optim.0.weight.exp_avg_sq\" holds an infinite value "
                                  "at element 2");
    cg_ctx_clear_error(ctx);
    /* weights only: the optimizer state is not even read */
    assert_int_equal(cg_checkpoint_load(p, m, NULL, NULL), CG_OK);
    cg_optim_free(opt);
    cg_module_free(m);
}

/* ---- item 10: stale temporary files ------------------------------------------ */

static void touch(const char *path, time_t age)
{
    write_all(path, "x", 1);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= age;
    t[1] = t[0];
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static void test_stale_temps(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    /* A PID that is surely dead: a child that has exited and was reaped. */
    fflush(NULL);
    pid_t dead = fork();
    assert_true(dead >= 0);
    if (dead == 0) _exit(0);
    assert_int_equal(waitpid(dead, NULL, 0), dead);
    char p[128], stale[256], young[256], live[256], other[256], odd[256];
    snprintf(p, sizeof p, "%s/ck.safetensors", f->dir);
    snprintf(stale, sizeof stale, "%s/.ck.safetensors.tmp-%d-3", f->dir, (int)dead);
    snprintf(young, sizeof young, "%s/.ck.safetensors.tmp-%d-4", f->dir, (int)dead);
    snprintf(live, sizeof live, "%s/.ck.safetensors.tmp-%d-0", f->dir, (int)getppid());
    snprintf(other, sizeof other, "%s/.other.safetensors.tmp-%d-0", f->dir, (int)dead);
    snprintf(odd, sizeof odd, "%s/.ck.safetensors.tmp-%d-x", f->dir, (int)dead);
    touch(stale, 120);
    touch(young, 0);      /* may be a save in progress on another machine */
    touch(live, 120);
    touch(other, 120);
    touch(odd, 120);
    cg_module *m = cg_sequential_module(ctx, 1, cg_linear_module(ctx, 3, 2, true));
    assert_int_equal(cg_checkpoint_save(p, m, NULL, NULL), CG_OK);
    struct stat sb;
    assert_int_equal(stat(stale, &sb), -1);     /* removed */
    assert_int_equal(stat(young, &sb), 0);
    assert_int_equal(stat(live, &sb), 0);
    assert_int_equal(stat(other, &sb), 0);
    assert_int_equal(stat(odd, &sb), 0);
    cg_module_free(m);
}

/* ---- item 11: messages that name what is at fault ----------------------------- */

static void test_messages(void **state)
{
    struct th_dirfx *f = *state;
    cg_ctx *ctx = f->ctx;
    /* 2^19 x 2^20 floats: 2 TiB, more than any test machine has */
    cg_module *m = cg_linear_module(ctx, (int64_t)1 << 20, (int64_t)1 << 19, true);
    assert_null(m);
    th_assert_error_contains(ctx, "cg_linear_module(in 1048576, out 524288): out of host memory for "
                                  "the weight (2199023255552 bytes)");
    cg_ctx_clear_error(ctx);

    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    static const char text[] = "y\n1\n2\n";
    FILE *fp = fmemopen((void *)text, sizeof text - 1, "rb");
    struct cg_table *t;
    assert_int_equal(cg_csv_read_stream(fp, "only-target.csv", &o, &t), CG_OK);
    fclose(fp);
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_from_table(t, &ds), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "the table has no feature columns: its only column, \"y\", is "
                                   "the target");
    cg_table_free(t);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nan_math, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_invalid_utf8, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nonfinite_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_temps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_messages, setup, teardown),
    };
    return th_run("reliability", tests, sizeof tests / sizeof tests[0], argc, argv);
}
