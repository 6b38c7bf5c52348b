/*
 * tests/test_transforms.c — preprocessing: standard and min-max scalers
 * against float64 references (fitted on one split, applied to another),
 * constant features, global statistics, the inverse; seeded
 * train/validation splits; one-hot targets; dataset creation checks.
 */
#include "harness.h"

#include <math.h>
#include <string.h>

/* A dataset (n, d) of uniform values, feature j scaled by (j + 1) and
 * shifted by j so that the statistics differ per feature; feature
 * `constant` (if >= 0) is 3.5 everywhere. */
static struct cg_dataset *random_dataset(int64_t n, int64_t d, int constant, uint64_t seed)
{
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_create(n, 1, &d, true, 0, 5, &ds), CG_OK);
    uint64_t s = seed;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++)
            ds->x[i * d + j] = j == constant ? 3.5f
                                             : (float)(th_rand_uniform(&s, -1, 2) * (j + 1) + j);
        ds->y[i] = (float)(th_rand_u64(&s) % 5);
    }
    return ds;
}

static void test_standard_per_feature(void **state)
{
    const int64_t n = 257, d = 13;
    struct cg_dataset *train = random_dataset(n, d, 4, 1), *val = random_dataset(91, d, 4, 2);
    double *mean = calloc(d, sizeof *mean), *sd = calloc(d, sizeof *sd);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) mean[j] += train->x[i * d + j] / (double)n;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            sd[j] += pow(train->x[i * d + j] - mean[j], 2) / (double)n;
    for (int64_t j = 0; j < d; j++) sd[j] = sqrt(sd[j]);
    double *ref = malloc(91 * d * sizeof *ref);
    for (int64_t i = 0; i < 91; i++)
        for (int64_t j = 0; j < d; j++)
            ref[i * d + j] = j == 4 ? 0.0 : (val->x[i * d + j] - mean[j]) / sd[j];
    float *val_raw = malloc(91 * d * sizeof *val_raw);
    memcpy(val_raw, val->x, 91 * d * sizeof *val_raw);

    struct cg_scaler *sc;
    assert_int_equal(cg_scaler_fit(train, CG_SCALER_STANDARD, true, &sc), CG_OK);
    assert_int_equal(sc->n_features, d);
    th_assert_close(sc->offset, mean, d, 1e-6, 1e-6, "means");
    assert_true(sc->offset[4] == 3.5f);
    assert_true(sc->scale[4] == 1.0f);                   /* std 0 -> 1 */
    assert_int_equal(cg_scaler_apply(sc, val), CG_OK);   /* the other split */
    th_assert_close(val->x, ref, 91 * d, 1e-5, 1e-6, "standardized validation");
    for (int64_t i = 0; i < 91 * d; i++) assert_false(isnan(val->x[i]));
    /* the training split itself comes out with mean 0, std 1 */
    assert_int_equal(cg_scaler_apply(sc, train), CG_OK);
    for (int64_t j = 0; j < d; j++) {
        if (j == 4) continue;
        double m = 0, v = 0;
        for (int64_t i = 0; i < n; i++) m += train->x[i * d + j] / (double)n;
        for (int64_t i = 0; i < n; i++) v += pow(train->x[i * d + j] - m, 2) / (double)n;
        assert_true(fabs(m) < 1e-5 && fabs(v - 1) < 1e-4);
    }
    /* inverse brings the raw values back */
    assert_int_equal(cg_scaler_inverse_data(sc, val->x, 91, d), CG_OK);
    th_assert_close_f(val->x, val_raw, 91 * d, 1e-5, 1e-5, "inverse");
    /* a scaler for another width is refused */
    assert_int_equal(cg_scaler_apply_data(sc, val->x, 91, d - 1), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(NULL, "fitted on 13 features, the data has 12");
    cg_scaler_free(sc);
    free(mean); free(sd); free(ref); free(val_raw);
    cg_dataset_free(train);
    cg_dataset_free(val);
}

static void test_minmax_and_global(void **state)
{
    const int64_t n = 101, d = 7;
    struct cg_dataset *ds = random_dataset(n, d, 2, 3);
    double lo[7], hi[7], glo = INFINITY, ghi = -INFINITY, gsum = 0, gsq = 0;
    for (int j = 0; j < d; j++) { lo[j] = INFINITY; hi[j] = -INFINITY; }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            double v = ds->x[i * d + j];
            lo[j] = fmin(lo[j], v); hi[j] = fmax(hi[j], v);
            glo = fmin(glo, v); ghi = fmax(ghi, v); gsum += v;
        }
    double gmean = gsum / (double)(n * d);
    for (int64_t i = 0; i < n * d; i++) gsq += pow(ds->x[i] - gmean, 2);
    double gstd = sqrt(gsq / (double)(n * d));
    double *ref = malloc(n * d * sizeof *ref), *gref = malloc(n * d * sizeof *gref);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            ref[i * d + j] = j == 2 ? 0.0 : (ds->x[i * d + j] - lo[j]) / (hi[j] - lo[j]);
            gref[i * d + j] = (ds->x[i * d + j] - gmean) / gstd;
        }
    float *raw = malloc(n * d * sizeof *raw);
    memcpy(raw, ds->x, n * d * sizeof *raw);

    struct cg_scaler *sc;
    assert_int_equal(cg_scaler_fit(ds, CG_SCALER_MINMAX, true, &sc), CG_OK);
    assert_int_equal(cg_scaler_apply(sc, ds), CG_OK);
    th_assert_close(ds->x, ref, n * d, 1e-5, 1e-6, "min-max");
    cg_scaler_free(sc);

    memcpy(ds->x, raw, n * d * sizeof *raw);
    assert_int_equal(cg_scaler_fit(ds, CG_SCALER_STANDARD, false, &sc), CG_OK);
    assert_int_equal(sc->n_features, 1);
    assert_int_equal(cg_scaler_apply(sc, ds), CG_OK);
    th_assert_close(ds->x, gref, n * d, 1e-5, 1e-6, "global standardization");
    cg_scaler_free(sc);

    /* a constant array: everything maps to 0, no NaN */
    float c[6] = {2, 2, 2, 2, 2, 2};
    const float zero[6] = {0};
    assert_int_equal(cg_scaler_fit_data(c, 3, 2, CG_SCALER_MINMAX, false, &sc), CG_OK);
    assert_int_equal(cg_scaler_apply_data(sc, c, 3, 2), CG_OK);
    th_assert_close_f(c, zero, 6, 0, 0, "constant");
    /* a hand-made scaler with scale 0 is refused, not divided by */
    sc->scale[0] = 0;
    assert_int_equal(cg_scaler_apply_data(sc, c, 3, 2), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "the scale must be finite and > 0");
    cg_scaler_free(sc);
    assert_int_equal(cg_scaler_fit_data(c, 0, 2, CG_SCALER_MINMAX, true, &sc),
                     CG_STATUS_INVALID_ARGUMENT);
    assert_null(sc);
    free(ref); free(gref); free(raw);
    cg_dataset_free(ds);
}

static void test_split(void **state)
{
    const int64_t n = 203, d = 3;
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_create(n, 1, &d, true, 0, 4, &ds), CG_OK);
    for (int64_t i = 0; i < n; i++) {
        for (int64_t j = 0; j < d; j++) ds->x[i * d + j] = (float)(i * 10 + j);
        ds->y[i] = (float)(i % 4);
    }
    struct cg_dataset *tr, *va, *tr2, *va2, *tr3, *va3;
    assert_int_equal(cg_dataset_split(ds, 0.2, 42, &tr, &va), CG_OK);
    assert_int_equal(va->n, 41);                    /* round(203 * 0.2) */
    assert_int_equal(tr->n, 162);
    assert_int_equal(tr->n_classes, 4);
    /* every sample lands in exactly one part, rows intact */
    char *seen = calloc(n, 1);
    struct cg_dataset *parts[2] = {tr, va};
    for (int p = 0; p < 2; p++)
        for (int64_t i = 0; i < parts[p]->n; i++) {
            int64_t id = (int64_t)parts[p]->x[i * d] / 10;
            assert_true(id >= 0 && id < n && !seen[id]);
            seen[id] = 1;
            assert_true(parts[p]->x[i * d + 2] == (float)(id * 10 + 2));
            assert_true(parts[p]->y[i] == (float)(id % 4));
        }
    for (int64_t i = 0; i < n; i++) assert_true(seen[i]);
    /* the same seed gives the same split, another seed another */
    assert_int_equal(cg_dataset_split(ds, 0.2, 42, &tr2, &va2), CG_OK);
    assert_memory_equal(va->x, va2->x, va->n * d * sizeof(float));
    assert_int_equal(cg_dataset_split(ds, 0.2, 43, &tr3, &va3), CG_OK);
    assert_true(memcmp(va->x, va3->x, va->n * d * sizeof(float)) != 0);
    /* the validation part is not just the tail: it is shuffled */
    int64_t low = 0;
    for (int64_t i = 0; i < va->n; i++) low += va->x[i * d] < 1000;
    assert_true(low > 0);
    cg_dataset_free(tr); cg_dataset_free(va);
    cg_dataset_free(tr2); cg_dataset_free(va2);
    cg_dataset_free(tr3); cg_dataset_free(va3);
    free(seen);

    assert_int_equal(cg_dataset_split(ds, 0.0, 1, &tr, &va), CG_OK);
    assert_int_equal(tr->n, n);
    assert_null(va);
    cg_dataset_free(tr);
    assert_int_equal(cg_dataset_split(ds, 1.0, 1, &tr, &va), CG_STATUS_INVALID_ARGUMENT);
    assert_int_equal(cg_dataset_split(ds, 0.001, 1, &tr, &va), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "both parts non-empty");
    cg_dataset_free(ds);
}

static void test_one_hot(void **state)
{
    const float labels[5] = {2, 0, 1, 2, 3};
    float out[20];
    assert_int_equal(cg_one_hot(labels, 5, 4, out), CG_OK);
    for (int i = 0; i < 5; i++)
        for (int k = 0; k < 4; k++) assert_true(out[i * 4 + k] == (k == (int)labels[i]));
    const float bad[2] = {1, 4};
    assert_int_equal(cg_one_hot(bad, 2, 4, out), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "label 1 is 4");
    const float frac[1] = {0.5f};
    assert_int_equal(cg_one_hot(frac, 1, 4, out), CG_STATUS_INVALID_ARGUMENT);

    struct cg_dataset *ds;
    int64_t d = 2;
    assert_int_equal(cg_dataset_create(5, 1, &d, true, 0, 4, &ds), CG_OK);
    memcpy(ds->y, labels, sizeof labels);
    memset(ds->x, 0, 10 * sizeof(float));
    assert_int_equal(cg_dataset_one_hot(ds), CG_OK);
    assert_int_equal(ds->y_dim, 4);
    assert_int_equal(cg_one_hot(labels, 5, 4, out), CG_OK);
    th_assert_close_f(ds->y, out, 20, 0, 0, "dataset one-hot");
    assert_int_equal(cg_dataset_one_hot(ds), CG_STATUS_INVALID_ARGUMENT);   /* already */
    cg_dataset_free(ds);
}

static void test_dataset_create_checks(void **state)
{
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_create(4, 0, NULL, true, 0, 2, &ds), CG_STATUS_INVALID_ARGUMENT);
    assert_null(ds);
    assert_int_equal(cg_dataset_create(4, 2, (int64_t[]){3, 0}, true, 0, 2, &ds),
                     CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "bad sample shape (3, 0)");
    assert_int_equal(cg_dataset_create(INT64_MAX / 2, 1, (int64_t[]){1 << 20}, true, 0, 2, &ds),
                     CG_STATUS_OUT_OF_MEMORY);
    assert_int_equal(cg_dataset_create(3, 3, (int64_t[]){1, 2, 2}, false, 0, 0, &ds), CG_OK);
    assert_null(ds->y);
    assert_int_equal(ds->sample_numel, 4);
    cg_dataset_free(ds);
    cg_dataset_free(NULL);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_standard_per_feature),
        cmocka_unit_test(test_minmax_and_global),
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_one_hot),
        cmocka_unit_test(test_dataset_create_checks),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("transforms", tests, NULL, NULL);
}
