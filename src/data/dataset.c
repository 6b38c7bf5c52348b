/*
 * src/data/dataset.c — host-side datasets: creation, conversion from a
 * table, reshaping, seeded train/validation split, one-hot targets, and
 * byte storage (x_u8) read as floats.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data-impl.h"

char *cg__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

void cg__permutation(int64_t *perm, int64_t n, uint64_t (*next)(void *), void *state)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)cg__bounded(next, state, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

struct cg_dataset *cg__dataset_alloc(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                     bool has_y, int64_t y_dim, int n_classes)
{
    struct cg_dataset *ds = calloc(1, sizeof *ds);
    if (!ds) return NULL;
    ds->n = n;
    ds->sample_ndim = sample_ndim;
    ds->sample_numel = 1;
    for (int i = 0; i < sample_ndim; i++) {
        ds->sample_shape[i] = sample_shape[i];
        ds->sample_numel *= sample_shape[i];
    }
    ds->y_dim = y_dim;
    ds->n_classes = n_classes;
    /* + 1: a valid pointer even for n == 0 */
    ds->x = malloc(((size_t)n * (size_t)ds->sample_numel + 1) * sizeof(float));
    if (has_y) ds->y = malloc(((size_t)n * (size_t)(y_dim ? y_dim : 1) + 1) * sizeof(float));
    if (!ds->x || (has_y && !ds->y)) {
        cg_dataset_free(ds);
        return NULL;
    }
    return ds;
}

/* Validates a dataset's sizes; the total element counts must fit memory. */
static cg_status dataset_check(const char *fn, int64_t n, int sample_ndim,
                               const int64_t *sample_shape, int64_t y_dim, int n_classes)
{
    if (n < 0 || y_dim < 0 || n_classes < 0)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: negative size (n %lld, y_dim %lld, n_classes %d)", fn,
                         (long long)n, (long long)y_dim, n_classes);
    if (sample_ndim < 1 || sample_ndim >= CG_MAX_DIMS || !sample_shape)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: a sample needs 1 to %d dims, got %d", fn, CG_MAX_DIMS - 1,
                         sample_ndim);
    int64_t numel = 1, total;
    for (int i = 0; i < sample_ndim; i++) {
        if (sample_shape[i] <= 0 || !cg__mul_ok(numel, sample_shape[i], &numel)) {
            char buf[128];
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: bad sample shape %s", fn,
                             cg__shape_str(sample_ndim, sample_shape, buf, sizeof buf));
        }
    }
    if (!cg__mul_ok(n, numel, &total) || !cg__mul_ok(total, 4, &total) ||
        !cg__mul_ok(n, y_dim ? y_dim : 1, &total) || !cg__mul_ok(total, 4, &total) ||
        (uint64_t)total > SIZE_MAX)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: %lld samples are too many", fn,
                         (long long)n);
    return CG_OK;
}

CG_API cg_status cg_dataset_create(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                   bool has_y, int64_t y_dim, int n_classes,
                                   struct cg_dataset **out)
{
    if (!out) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_dataset_create: NULL out");
    *out = NULL;
    cg_status st = dataset_check("cg_dataset_create", n, sample_ndim, sample_shape, y_dim,
                                 n_classes);
    if (st != CG_OK) return st;
    *out = cg__dataset_alloc(n, sample_ndim, sample_shape, has_y, y_dim, n_classes);
    if (!*out)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "cg_dataset_create: out of memory for %lld samples", (long long)n);
    return CG_OK;
}

CG_API void cg_dataset_free(struct cg_dataset *ds)
{
    if (!ds) return;
    if (ds->class_names)
        for (int i = 0; i < ds->n_classes; i++) free(ds->class_names[i]);
    free(ds->class_names);
    free(ds->x);
    free(ds->x_u8);
    free(ds->y);
    free(ds);
}

void cg__dataset_rows_to_float(const struct cg_dataset *ds, const int64_t *rows, int64_t k,
                               float *out)
{
    int64_t d = ds->sample_numel;
    for (int64_t i = 0; i < k; i++) {
        int64_t r = rows ? rows[i] : i;
        if (ds->x_u8) {
            const uint8_t *src = ds->x_u8 + r * d;
            float *dst = out + i * d;
            /* The same division float storage did at load: (float)b / 255. */
            for (int64_t j = 0; j < d; j++) dst[j] = (float)src[j] / ds->x_div;
        } else {
            memcpy(out + i * d, ds->x + r * d, (size_t)d * sizeof(float));
        }
    }
}

CG_API cg_status cg_dataset_to_float(struct cg_dataset *ds)
{
    if (!ds) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_dataset_to_float: NULL dataset");
    if (!ds->x_u8) return CG_OK;
    /* n * sample_numel * 4 fits a size_t: checked when the dataset was
     * made (dataset_check; idx_header for cg_idx_load_pair). */
    float *x = malloc(((size_t)ds->n * (size_t)ds->sample_numel + 1) * sizeof(float));
    if (!x)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "cg_dataset_to_float: out of memory for %lld x %lld floats",
                         (long long)ds->n, (long long)ds->sample_numel);
    cg__dataset_rows_to_float(ds, NULL, ds->n, x);
    free(ds->x_u8);
    ds->x_u8 = NULL;
    ds->x = x;
    return CG_OK;
}

/* dst->class_names = a copy of names (n). */
static cg_status copy_class_names(struct cg_dataset *dst, char *const *names, int n)
{
    if (!names || n == 0) return CG_OK;
    dst->class_names = calloc((size_t)n, sizeof *dst->class_names);
    if (!dst->class_names) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int i = 0; i < n; i++)
        if (!(dst->class_names[i] = cg__strdup(names[i])))
            return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
    return CG_OK;
}

CG_API cg_status cg_dataset_from_table(const struct cg_table *t, struct cg_dataset **out)
{
    if (!out || !t)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_dataset_from_table: NULL argument");
    *out = NULL;
    int64_t d = 0;
    for (int j = 0; j < t->n_cols; j++) {
        if (j == t->target) continue;
        d += t->cols[j].kind == CG_COLUMN_CATEGORICAL ? t->cols[j].n_categories : 1;
    }
    if (d == 0) {
        /* Name the columns: the target alone, or columns with nothing in them. */
        if (t->n_cols == 1 && t->target == 0)
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "cg_dataset_from_table: the table has no feature columns: its only "
                             "column, \"%.200s\", is the target", t->cols[0].name);
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dataset_from_table: the table has no feature columns: its %d "
                         "columns are the target or categorical with no categories (first: "
                         "\"%.200s\")", t->n_cols, t->n_cols ? t->cols[0].name : "");
    }
    bool cls = t->target >= 0 && t->task == CG_TASK_CLASSIFICATION;
    int n_classes = cls ? t->cols[t->target].n_categories : 0;
    cg_status st = dataset_check("cg_dataset_from_table", t->n_rows, 1, &d, cls ? 0 : 1, n_classes);
    if (st != CG_OK) return st;
    struct cg_dataset *ds =
        cg__dataset_alloc(t->n_rows, 1, &d, t->target >= 0, cls ? 0 : 1, n_classes);
    if (!ds)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "cg_dataset_from_table: out of memory for %lld x %lld features",
                         (long long)t->n_rows, (long long)d);
    for (int64_t r = 0; r < t->n_rows; r++) {
        const float *row = t->values + r * t->n_cols;
        float *x = ds->x + r * d;
        for (int j = 0; j < t->n_cols; j++) {
            const struct cg_column *c = &t->cols[j];
            if (j == t->target) {
                ds->y[r] = row[j];
            } else if (c->kind == CG_COLUMN_CATEGORICAL) {
                /* one-hot in category order */
                memset(x, 0, (size_t)c->n_categories * sizeof *x);
                x[(int)row[j]] = 1.0f;
                x += c->n_categories;
            } else {
                *x++ = row[j];
            }
        }
    }
    if (cls && (st = copy_class_names(ds, t->cols[t->target].categories, n_classes)) != CG_OK) {
        cg_dataset_free(ds);
        return st;
    }
    *out = ds;
    return CG_OK;
}

CG_API cg_status cg_dataset_reshape(struct cg_dataset *ds, int ndim, const int64_t *shape)
{
    if (!ds || !shape)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_dataset_reshape: NULL argument");
    cg_status st = dataset_check("cg_dataset_reshape", ds->n, ndim, shape, ds->y_dim,
                                 ds->n_classes);
    if (st != CG_OK) return st;
    int64_t numel = cg__numel(ndim, shape);
    if (numel != ds->sample_numel) {
        char a[128], b[128];
        return cg__error(NULL, CG_STATUS_SHAPE_MISMATCH,
                         "cg_dataset_reshape: samples of shape %s (%lld values) cannot become %s "
                         "(%lld values)",
                         cg__shape_str(ds->sample_ndim, ds->sample_shape, a, sizeof a),
                         (long long)ds->sample_numel, cg__shape_str(ndim, shape, b, sizeof b),
                         (long long)numel);
    }
    ds->sample_ndim = ndim;
    memcpy(ds->sample_shape, shape, (size_t)ndim * sizeof *shape);
    return CG_OK;
}

static uint64_t splitmix_next(void *state) { return cg__splitmix64(state); }

/* dst's rows [0, k) = src's rows idx[0..k), in src's storage (bytes stay
 * bytes). */
static void gather_rows(struct cg_dataset *dst, const struct cg_dataset *src, const int64_t *idx,
                        int64_t k)
{
    int64_t d = src->sample_numel, yd = src->y_dim ? src->y_dim : 1;
    for (int64_t i = 0; i < k; i++) {
        if (src->x_u8) memcpy(dst->x_u8 + i * d, src->x_u8 + idx[i] * d, (size_t)d);
        else memcpy(dst->x + i * d, src->x + idx[i] * d, (size_t)d * sizeof(float));
        if (src->y) memcpy(dst->y + i * yd, src->y + idx[i] * yd, (size_t)yd * sizeof(float));
    }
}

/* A dataset of k samples shaped like ds, in ds's storage. */
static struct cg_dataset *dataset_alloc_like(const struct cg_dataset *ds, int64_t k)
{
    struct cg_dataset *s = cg__dataset_alloc(k, ds->sample_ndim, ds->sample_shape, ds->y != NULL,
                                             ds->y_dim, ds->n_classes);
    if (!s || !ds->x_u8) return s;
    free(s->x);                 /* never touched: it cost no memory */
    s->x = NULL;
    s->x_div = ds->x_div;
    if (!(s->x_u8 = malloc((size_t)k * (size_t)ds->sample_numel + 1))) {
        cg_dataset_free(s);
        return NULL;
    }
    return s;
}

static cg_status dataset_subset(const struct cg_dataset *ds, const int64_t *idx, int64_t k,
                                struct cg_dataset **out)
{
    struct cg_dataset *s = dataset_alloc_like(ds, k);
    if (!s)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "cg_dataset_split: out of memory for %lld samples", (long long)k);
    gather_rows(s, ds, idx, k);
    cg_status st = copy_class_names(s, ds->class_names, ds->n_classes);
    if (st != CG_OK) {
        cg_dataset_free(s);
        return st;
    }
    *out = s;
    return CG_OK;
}

CG_API cg_status cg_dataset_split(const struct cg_dataset *ds, double val_fraction, uint64_t seed,
                                  struct cg_dataset **train, struct cg_dataset **val)
{
    if (!ds || !train || !val)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_dataset_split: NULL argument");
    *train = *val = NULL;
    if (!(val_fraction >= 0.0 && val_fraction < 1.0))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dataset_split: val_fraction %g is not in [0, 1)", val_fraction);
    int64_t n_val = (int64_t)llround((double)ds->n * val_fraction);
    if (val_fraction > 0 && (n_val < 1 || n_val >= ds->n))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dataset_split: %lld samples cannot be split %g / %g with both parts "
                         "non-empty",
                         (long long)ds->n, 1.0 - val_fraction, val_fraction);
    int64_t *perm = malloc(((size_t)ds->n + 1) * sizeof *perm);
    if (!perm) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_dataset_split: out of memory");
    uint64_t state = seed;
    cg__permutation(perm, ds->n, splitmix_next, &state);
    cg_status st = dataset_subset(ds, perm + n_val, ds->n - n_val, train);
    if (st == CG_OK && n_val > 0 && (st = dataset_subset(ds, perm, n_val, val)) != CG_OK) {
        cg_dataset_free(*train);
        *train = NULL;
    }
    free(perm);
    return st;
}

CG_API cg_status cg_one_hot(const float *labels, int64_t n, int k, float *out)
{
    if (!labels || !out || n < 0 || k <= 0)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_one_hot: bad arguments (n %lld, k %d)", (long long)n, k);
    for (int64_t i = 0; i < n; i++) {
        float v = labels[i];
        if (!(v >= 0 && v < (float)k && v == floorf(v)))
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "cg_one_hot: label %lld is %g, not an integer in [0, %d)",
                             (long long)i, (double)v, k);
    }
    memset(out, 0, (size_t)n * (size_t)k * sizeof *out);
    for (int64_t i = 0; i < n; i++) out[i * k + (int64_t)labels[i]] = 1.0f;
    return CG_OK;
}

CG_API cg_status cg_dataset_one_hot(struct cg_dataset *ds)
{
    if (!ds || !ds->y || ds->y_dim != 0 || ds->n_classes <= 0)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dataset_one_hot: the dataset has no class-index targets");
    int64_t bytes;
    if (!cg__mul_ok(ds->n, ds->n_classes, &bytes) || !cg__mul_ok(bytes, 4, &bytes) ||
        (uint64_t)bytes > SIZE_MAX)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_dataset_one_hot: too large");
    float *oh = malloc((size_t)bytes + sizeof(float));
    if (!oh) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_dataset_one_hot: out of memory");
    cg_status st = cg_one_hot(ds->y, ds->n, ds->n_classes, oh);
    if (st != CG_OK) {
        free(oh);
        return st;
    }
    free(ds->y);
    ds->y = oh;
    ds->y_dim = ds->n_classes;
    return CG_OK;
}
