/*
 * tests/test_dataloader.c — the DataLoader on the backend under test:
 * batch shapes (images and flat samples, class-index and regression
 * targets, the partial last batch), per-epoch shuffles that cover every
 * sample once and follow the context's seed, drop_last, prefetching giving
 * the same batches as the synchronous path, and no device allocation per
 * step; byte storage (uint8 images) converted per batch to the same
 * floats as float storage.
 *
 * Sample i holds x = i * 100 + j in its element j, so a downloaded batch
 * says which samples it carries.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* n samples of shape (1, 3, 4); y = i % 5 (classes) or (n, 2) rows. */
static struct cg_dataset *id_dataset(int64_t n, int64_t y_dim)
{
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_create(n, 3, (int64_t[]){1, 3, 4}, true, y_dim,
                                       y_dim ? 0 : 5, &ds), CG_OK);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < 12; j++) ds->x[i * 12 + j] = (float)(i * 100 + j);
        if (y_dim == 0) ds->y[i] = (float)(i % 5);
        for (int64_t k = 0; k < y_dim; k++) ds->y[i * y_dim + k] = (float)(i * 10 + k);
    }
    return ds;
}

/* Downloads one batch, checks it against the dataset, returns its sample
 * ids in ids (B). */
static int64_t check_batch(const struct cg_dataset *ds, cg_tensor *x, cg_tensor *y, int64_t *ids)
{
    int64_t b = cg_tensor_dim(x, 0);
    assert_int_equal(cg_tensor_ndim(x), 4);
    assert_int_equal(cg_tensor_dim(x, 1), 1);
    assert_int_equal(cg_tensor_dim(x, 2), 3);
    assert_int_equal(cg_tensor_dim(x, 3), 4);
    float *hx = malloc((size_t)b * 12 * sizeof *hx);
    int64_t yd = ds->y_dim ? ds->y_dim : 1;
    float *hy = malloc((size_t)(b * yd) * sizeof *hy);
    assert_int_equal(cg_tensor_to_host(x, hx, b * 12), CG_OK);
    assert_non_null(y);
    assert_int_equal(cg_tensor_dim(y, 0), b);
    if (ds->y_dim) {
        assert_int_equal(cg_tensor_ndim(y), 2);
        assert_int_equal(cg_tensor_dim(y, 1), ds->y_dim);
    } else {
        assert_int_equal(cg_tensor_ndim(y), 1);
    }
    assert_int_equal(cg_tensor_to_host(y, hy, b * yd), CG_OK);
    for (int64_t i = 0; i < b; i++) {
        int64_t id = (int64_t)hx[i * 12] / 100;
        assert_true(id >= 0 && id < ds->n);
        assert_memory_equal(hx + i * 12, ds->x + id * 12, 12 * sizeof(float));
        assert_memory_equal(hy + i * yd, ds->y + id * yd, (size_t)yd * sizeof(float));
        ids[i] = id;
    }
    free(hx);
    free(hy);
    return b;
}

/* Runs one epoch; writes the sample order into order (n); returns the
 * number of samples delivered and checks each batch's size. */
static int64_t run_epoch(cg_loader *ld, const struct cg_dataset *ds, int64_t bs, int64_t *order,
                         int64_t *n_batches)
{
    cg_tensor *x, *y;
    int64_t got = 0, nb = 0;
    cg_status st;
    while ((st = cg_loader_next(ld, &x, &y)) == CG_OK && x) {
        int64_t b = check_batch(ds, x, y, order + got);
        nb++;
        if (nb < cg_loader_batches(ld)) assert_int_equal(b, bs);
        got += b;
    }
    assert_int_equal(st, CG_OK);
    assert_null(y);
    *n_batches = nb;
    return got;
}

static void test_sequential(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_dataset *ds = id_dataset(103, 0);
    struct cg_loader_options o = {.batch_size = 16};
    cg_loader *ld;
    assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_OK);
    assert_int_equal(cg_loader_batches(ld), 7);
    int64_t order[103], nb;
    for (int epoch = 0; epoch < 2; epoch++) {
        assert_int_equal(run_epoch(ld, ds, 16, order, &nb), 103);
        assert_int_equal(nb, 7);
        for (int64_t i = 0; i < 103; i++) assert_int_equal(order[i], i);
    }
    assert_int_equal(cg_loader_epoch(ld), 2);
    cg_loader_free(ld);
    cg_dataset_free(ds);
}

static bool is_permutation(const int64_t *order, int64_t n)
{
    char *seen = calloc((size_t)n, 1);
    bool ok = true;
    for (int64_t i = 0; i < n && ok; i++) {
        ok = order[i] >= 0 && order[i] < n && !seen[order[i]];
        if (ok) seen[order[i]] = 1;
    }
    free(seen);
    return ok;
}

static void test_shuffle_epochs(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_dataset *ds = id_dataset(103, 0);
    struct cg_loader_options o = {.batch_size = 10, .shuffle = true};
    cg_loader *ld;
    assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_OK);
    int64_t order[3][103], nb;
    for (int e = 0; e < 3; e++) {
        assert_int_equal(run_epoch(ld, ds, 10, order[e], &nb), 103);
        assert_int_equal(nb, 11);
        assert_true(is_permutation(order[e], 103));
    }
    /* shuffled, and a new shuffle each epoch */
    int64_t in_place = 0;
    for (int64_t i = 0; i < 103; i++) in_place += order[0][i] == i;
    assert_true(in_place < 20);
    assert_true(memcmp(order[0], order[1], sizeof order[0]) != 0);
    assert_true(memcmp(order[1], order[2], sizeof order[0]) != 0);
    cg_loader_free(ld);
    cg_dataset_free(ds);
}

/* The same seed gives the same batches; prefetching changes nothing. */
static void test_seed_and_prefetch(void **state)
{
    struct cg_dataset *ds = id_dataset(77, 0);
    int64_t order[4][2][77], nb;
    for (int v = 0; v < 4; v++) {
        cg_ctx *ctx = th_ctx_create(99);
        struct cg_loader_options o = {.batch_size = 8, .shuffle = true, .prefetch = v % 2};
        cg_loader *ld;
        assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_OK);
        for (int e = 0; e < 2; e++) assert_int_equal(run_epoch(ld, ds, 8, order[v][e], &nb), 77);
        if (v == 3) {
            /* abandon an epoch half-way with a prefetch in flight */
            cg_tensor *x, *y;
            assert_int_equal(cg_loader_next(ld, &x, &y), CG_OK);
            assert_int_equal(cg_loader_next(ld, &x, &y), CG_OK);
            cg_loader_reset(ld);
            int64_t again[77];
            assert_int_equal(run_epoch(ld, ds, 8, again, &nb), 77);
            assert_true(is_permutation(again, 77));
        }
        cg_loader_free(ld);
        cg_ctx_free(ctx);
    }
    assert_memory_equal(order[0], order[1], sizeof order[0]);
    assert_memory_equal(order[0], order[2], sizeof order[0]);
    assert_memory_equal(order[0], order[3], sizeof order[0]);
    cg_dataset_free(ds);
}

static void test_drop_last_and_targets(void **state)
{
    cg_ctx *ctx = *state;
    /* regression targets (n, 2) */
    struct cg_dataset *ds = id_dataset(53, 2);
    struct cg_loader_options o = {.batch_size = 16, .shuffle = true, .drop_last = true,
                                  .prefetch = true};
    cg_loader *ld;
    assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_OK);
    assert_int_equal(cg_loader_batches(ld), 3);
    int64_t order[53], nb;
    assert_int_equal(run_epoch(ld, ds, 16, order, &nb), 48);
    assert_int_equal(nb, 3);
    cg_loader_free(ld);

    /* fewer samples than a batch: one batch of them all */
    struct cg_loader_options small = {.batch_size = 100};
    assert_int_equal(cg_loader_create(ctx, ds, &small, &ld), CG_OK);
    assert_int_equal(run_epoch(ld, ds, 100, order, &nb), 53);
    assert_int_equal(nb, 1);
    cg_loader_free(ld);
    cg_dataset_free(ds);

    /* no targets: y is NULL; flat samples (D) give x (B, D) */
    int64_t d = 6;
    assert_int_equal(cg_dataset_create(10, 1, &d, false, 0, 0, &ds), CG_OK);
    for (int i = 0; i < 60; i++) ds->x[i] = (float)i;
    struct cg_loader_options o2 = {.batch_size = 4};
    assert_int_equal(cg_loader_create(ctx, ds, &o2, &ld), CG_OK);
    cg_tensor *x, *y = (cg_tensor *)1;
    float h[24];
    for (int b = 0; b < 3; b++) {
        assert_int_equal(cg_loader_next(ld, &x, &y), CG_OK);
        assert_null(y);
        int64_t rows = b < 2 ? 4 : 2;
        assert_int_equal(cg_tensor_ndim(x), 2);
        assert_int_equal(cg_tensor_dim(x, 0), rows);
        assert_int_equal(cg_tensor_dim(x, 1), 6);
        assert_int_equal(cg_tensor_to_host(x, h, rows * 6), CG_OK);
        th_assert_close_f(h, ds->x + b * 24, rows * 6, 0, 0, "flat batch");
    }
    assert_int_equal(cg_loader_next(ld, &x, &y), CG_OK);
    assert_null(x);
    cg_loader_free(ld);
    cg_dataset_free(ds);
}

/* Batches reuse the loader's tensors: no device allocation after create. */
static void test_no_realloc(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_dataset *ds = id_dataset(45, 0);
    struct cg_loader_options o = {.batch_size = 8, .shuffle = true, .prefetch = true};
    cg_loader *ld;
    assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_OK);
    struct cg_backend_stats before, after;
    cg_ctx_stats(ctx, &before);
    cg_tensor *x, *y, *first_x = NULL, *first_y = NULL, *last_x = NULL;
    for (int e = 0; e < 3; e++) {
        int64_t b = 0;
        while (cg_loader_next(ld, &x, &y) == CG_OK && x) {
            if (b == 0 && !first_x) { first_x = x; first_y = y; }
            if (b < 5) { assert_ptr_equal(x, first_x); assert_ptr_equal(y, first_y); }
            else if (!last_x) last_x = x;
            else assert_ptr_equal(x, last_x);
            b++;
        }
        assert_int_equal(b, 6);
    }
    cg_ctx_stats(ctx, &after);
    assert_int_equal(after.device_allocs, before.device_allocs);
    assert_int_equal(after.uploads - before.uploads, 3 * 6 * 2);
    assert_int_equal(cg_tensor_dim(last_x, 0), 5);
    cg_loader_free(ld);
    cg_dataset_free(ds);
}

/* Big-endian IDX header of type 0x08 with ndim dims into buf; its size. */
static size_t idx_u8_header(unsigned char *buf, int ndim, const uint32_t *dims)
{
    size_t n = 0;
    uint32_t words[4] = {0x0800u | (uint32_t)ndim, dims[0], ndim > 1 ? dims[1] : 0,
                         ndim > 2 ? dims[2] : 0};
    for (int i = 0; i <= ndim; i++)
        for (int b = 3; b >= 0; b--) buf[n++] = (unsigned char)(words[i] >> (8 * b));
    return n;
}

static void write_file(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Fashion-MNIST's form in small: n uint8 images (5, 7) whose first two
 * pixels carry the sample id (id % 256, id / 256) and the rest every byte
 * value (0 and 255 included), labels id % 4; loaded with scale as
 * clgrad-train does, so the dataset keeps bytes (x_u8). *twin gets the
 * float dataset the loader used to hold: each pixel (float)b, then /= 255.0f. */
static struct cg_dataset *byte_dataset(int n, struct cg_dataset **twin)
{
    const int h = 5, w = 7, d = h * w;
    unsigned char *img = malloc(16 + (size_t)(n * d)), lab[8 + 300];
    assert_true(n <= 300);
    size_t io = idx_u8_header(img, 3, (uint32_t[]){(uint32_t)n, (uint32_t)h, (uint32_t)w});
    size_t lo = idx_u8_header(lab, 1, (uint32_t[]){(uint32_t)n});
    for (int i = 0; i < n; i++) {
        unsigned char *px = img + io + i * d;
        px[0] = (unsigned char)(i % 256);
        px[1] = (unsigned char)(i / 256);
        for (int j = 2; j < d; j++) px[j] = (unsigned char)((i * 37 + j * 11) % 256);
        lab[lo + i] = (unsigned char)(i % 4);
    }
    char ip[256], lp[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(ip, sizeof ip, "%s/cg_dl_img_%d.idx", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    snprintf(lp, sizeof lp, "%s/cg_dl_lab_%d.idx", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    write_file(ip, img, io + (size_t)(n * d));
    write_file(lp, lab, lo + (size_t)n);
    struct cg_dataset *ds;
    assert_int_equal(cg_idx_load_pair(ip, lp, true, &ds), CG_OK);
    unlink(ip);
    unlink(lp);
    assert_null(ds->x);
    assert_non_null(ds->x_u8);
    assert_true(ds->x_div == 255.0f);
    assert_int_equal(cg_dataset_create(n, 3, (int64_t[]){1, h, w}, true, 0, 4, twin), CG_OK);
    for (int64_t k = 0; k < (int64_t)n * d; k++) {
        (*twin)->x[k] = (float)img[io + k];
        (*twin)->x[k] /= 255.0f;            /* cg_idx_load_pair's old scaling */
    }
    for (int i = 0; i < n; i++) (*twin)->y[i] = (float)(i % 4);
    free(img);
    return ds;
}

/* Runs an epoch over ds (byte storage) and checks every batch row bitwise
 * against twin's row of the same sample; returns the samples seen. */
static int64_t check_byte_epoch(cg_loader *ld, const struct cg_dataset *ds,
                                const struct cg_dataset *twin, int64_t *order)
{
    int64_t d = ds->sample_numel, got = 0;
    cg_tensor *x, *y;
    cg_status st;
    float *hx = malloc((size_t)(64 * d) * sizeof *hx), hy[64];
    while ((st = cg_loader_next(ld, &x, &y)) == CG_OK && x) {
        int64_t b = cg_tensor_dim(x, 0);
        assert_true(b <= 64);
        assert_int_equal(cg_tensor_numel(x), b * d);
        assert_int_equal(cg_tensor_to_host(x, hx, b * d), CG_OK);
        assert_int_equal(cg_tensor_to_host(y, hy, b), CG_OK);
        for (int64_t i = 0; i < b; i++) {
            int64_t id = lroundf(hx[i * d] * 255.0f) + 256 * lroundf(hx[i * d + 1] * 255.0f);
            assert_true(id >= 0 && id < ds->n);
            assert_memory_equal(hx + i * d, twin->x + id * d, (size_t)d * sizeof(float));
            assert_true(hy[i] == twin->y[id]);
            order[got++] = id;
        }
    }
    assert_int_equal(st, CG_OK);
    free(hx);
    return got;
}

/* Byte storage (uint8 IDX images): the loader converts each batch to the
 * same floats the old float storage held, bit for bit, shuffled, prefetched
 * and flattened; a split keeps bytes; scalers and cg_dataset_to_float see
 * the same values. */
static void test_byte_storage(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_dataset *twin, *ds = byte_dataset(300, &twin);
    int64_t order[300];
    for (int v = 0; v < 2; v++) {
        struct cg_loader_options o = {.batch_size = 64, .shuffle = v == 1, .prefetch = v == 1};
        cg_loader *ld;
        assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_OK);
        for (int e = 0; e < 2; e++) {
            assert_int_equal(check_byte_epoch(ld, ds, twin, order), 300);
            assert_true(is_permutation(order, 300));
        }
        cg_loader_free(ld);
    }

    /* A split keeps bytes and picks the same samples as the float twin's. */
    struct cg_dataset *tr, *va, *ttr, *tva;
    assert_int_equal(cg_dataset_split(ds, 0.2, 7, &tr, &va), CG_OK);
    assert_int_equal(cg_dataset_split(twin, 0.2, 7, &ttr, &tva), CG_OK);
    assert_non_null(tr->x_u8);
    assert_non_null(va->x_u8);
    assert_true(tr->x_div == 255.0f);
    int64_t d = ds->sample_numel;
    assert_int_equal(cg_dataset_reshape(tr, 1, &d), CG_OK);
    struct cg_loader_options o = {.batch_size = 64};
    cg_loader *ld;
    assert_int_equal(cg_loader_create(ctx, tr, &o, &ld), CG_OK);
    cg_tensor *x, *y;
    float *hx = malloc((size_t)(64 * d) * sizeof *hx);
    assert_int_equal(cg_loader_next(ld, &x, &y), CG_OK);
    assert_int_equal(cg_tensor_ndim(x), 2);
    assert_int_equal(cg_tensor_to_host(x, hx, 64 * d), CG_OK);
    assert_memory_equal(hx, ttr->x, (size_t)(64 * d) * sizeof *hx);
    cg_loader_free(ld);
    free(hx);

    /* Scalers: fitted on bytes as on the floats; applying converts. */
    struct cg_scaler *sb, *sf;
    assert_int_equal(cg_scaler_fit(tr, CG_SCALER_STANDARD, true, &sb), CG_OK);
    assert_int_equal(cg_scaler_fit(ttr, CG_SCALER_STANDARD, true, &sf), CG_OK);
    assert_memory_equal(sb->offset, sf->offset, (size_t)d * sizeof(float));
    assert_memory_equal(sb->scale, sf->scale, (size_t)d * sizeof(float));
    assert_int_equal(cg_scaler_apply(sb, va), CG_OK);
    assert_null(va->x_u8);
    assert_int_equal(cg_scaler_apply(sf, tva), CG_OK);
    assert_memory_equal(va->x, tva->x, (size_t)(va->n * d) * sizeof(float));

    /* cg_dataset_to_float: the twin's floats; a second call changes nothing. */
    assert_int_equal(cg_dataset_to_float(tr), CG_OK);
    assert_null(tr->x_u8);
    assert_memory_equal(tr->x, ttr->x, (size_t)(tr->n * d) * sizeof(float));
    assert_int_equal(cg_dataset_to_float(tr), CG_OK);
    assert_int_equal(cg_dataset_to_float(NULL), CG_STATUS_INVALID_ARGUMENT);
    cg_scaler_free(sb);
    cg_scaler_free(sf);
    cg_dataset_free(tr);
    cg_dataset_free(va);
    cg_dataset_free(ttr);
    cg_dataset_free(tva);
    cg_dataset_free(ds);
    cg_dataset_free(twin);
}

static void test_loader_errors(void **state)
{
    cg_ctx *ctx = *state;
    struct cg_dataset *ds = id_dataset(5, 0);
    cg_loader *ld = (cg_loader *)1;
    struct cg_loader_options o = {.batch_size = 0};
    assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_STATUS_INVALID_ARGUMENT);
    assert_null(ld);
    th_assert_error_contains(ctx, "batch_size must be > 0, got 0");
    o.batch_size = 8;
    o.drop_last = true;
    assert_int_equal(cg_loader_create(ctx, ds, &o, &ld), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(ctx, "5 samples make no full batch of 8");
    assert_int_equal(cg_loader_create(ctx, NULL, &o, &ld), CG_STATUS_INVALID_ARGUMENT);
    cg_ctx_clear_error(ctx);
    cg_loader_free(NULL);
    cg_dataset_free(ds);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sequential, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_shuffle_epochs, th_setup, th_teardown),
        cmocka_unit_test(test_seed_and_prefetch),
        cmocka_unit_test_setup_teardown(test_drop_last_and_targets, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_no_realloc, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_byte_storage, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_loader_errors, th_setup, th_teardown),
    };
    return TH_RUN(tests);
}
