/*
 * tests/test_dataloader.c — the DataLoader on the backend under test:
 * batch shapes (images and flat samples, class-index and regression
 * targets, the partial last batch), per-epoch shuffles that cover every
 * sample once and follow the context's seed, drop_last, prefetching giving
 * the same batches as the synchronous path, and no device allocation per
 * step.
 *
 * Sample i holds x = i * 100 + j in its element j, so a downloaded batch
 * says which samples it carries.
 */
#include "harness.h"

#include <string.h>

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
        cmocka_unit_test_setup_teardown(test_loader_errors, th_setup, th_teardown),
    };
    return TH_RUN(tests);
}
