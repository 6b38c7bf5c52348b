/*
 * tests/fuzz/fuzz_csv.c — the CSV reader with fuzzed options, then what a
 * training tool does with the table: the layout text round trip,
 * cg_table_conform onto its own layout, and cg_dataset_from_table.
 *
 * Input: byte 0 options (delimiter, task, missing policy, one-hot or
 * reject, fill value), byte 1 the target (a name from a fixed list, a
 * number, "last" or none) and skip_rows, no_header, drop, features and
 * keep, then the CSV text. Invariants: every numeric cell finite, every
 * categorical cell an index below its column's category count, unique
 * column names and unique categories, all valid UTF-8 (they go into
 * checkpoints); format(parse(format(t))) ==
 * format(t) and the parsed layout equals t's; conforming t to its own
 * layout changes no value, nor does reading the file again with the
 * layout as `like` and conforming; the dataset's features are finite and its
 * labels class indices in range.
 */
#include <math.h>
#include <string.h>

#include "clgrad/clgrad.h"
#include "fuzz.h"

static void check_table(const struct cg_table *t)
{
    FUZZ_CHECK(t->n_rows >= 1 && t->n_cols >= 1, "%lld rows, %d cols", (long long)t->n_rows,
               t->n_cols);
    FUZZ_CHECK(t->target >= -1 && t->target < t->n_cols, "target %d", t->target);
    for (int j = 0; j < t->n_cols; j++) {
        const struct cg_column *c = &t->cols[j];
        FUZZ_CHECK(c->name && c->name[0], "column %d has no name", j);
        FUZZ_CHECK(fuzz_utf8_valid(c->name), "column %d: name not UTF-8", j);
        for (int k = 0; k < j; k++)
            FUZZ_CHECK(strcmp(t->cols[k].name, c->name) != 0, "duplicate column \"%s\"", c->name);
        if (c->kind == CG_COLUMN_CATEGORICAL) {
            FUZZ_CHECK(c->n_categories >= 0, "column %d: %d categories", j, c->n_categories);
            for (int k = 0; k < c->n_categories; k++)
                FUZZ_CHECK(fuzz_utf8_valid(c->categories[k]), "column \"%s\": category %d not "
                           "UTF-8", c->name, k);
            for (int k = 1; k < c->n_categories; k++)
                FUZZ_CHECK(strcmp(c->categories[k - 1], c->categories[k]) != 0,
                           "column \"%s\": duplicate category \"%s\"", c->name, c->categories[k]);
        }
        for (int64_t r = 0; r < t->n_rows; r++) {
            float v = t->values[r * t->n_cols + j];
            FUZZ_CHECK(isfinite(v), "row %lld column \"%s\" is %g", (long long)r, c->name,
                       (double)v);
            if (c->kind == CG_COLUMN_CATEGORICAL)
                FUZZ_CHECK(v >= 0 && v < c->n_categories && v == floorf(v),
                           "row %lld column \"%s\": category %g of %d", (long long)r, c->name,
                           (double)v, c->n_categories);
        }
    }
}

static void check_same_layout(const struct cg_table *a, const struct cg_table *b)
{
    FUZZ_CHECK(a->n_cols == b->n_cols, "%d vs %d columns", a->n_cols, b->n_cols);
    FUZZ_CHECK(a->target == b->target && (a->target < 0 || a->task == b->task),
               "target %d/%d task %d/%d", a->target, b->target, a->task, b->task);
    for (int j = 0; j < a->n_cols; j++) {
        FUZZ_CHECK(strcmp(a->cols[j].name, b->cols[j].name) == 0, "name \"%s\" vs \"%s\"",
                   a->cols[j].name, b->cols[j].name);
        FUZZ_CHECK(a->cols[j].kind == b->cols[j].kind, "kind of \"%s\"", a->cols[j].name);
        if (a->cols[j].kind != CG_COLUMN_CATEGORICAL) continue;
        FUZZ_CHECK(a->cols[j].n_categories == b->cols[j].n_categories, "categories of \"%s\"",
                   a->cols[j].name);
        for (int k = 0; k < a->cols[j].n_categories; k++)
            FUZZ_CHECK(strcmp(a->cols[j].categories[k], b->cols[j].categories[k]) == 0,
                       "category %d of \"%s\"", k, a->cols[j].name);
    }
}

static void check_dataset(const struct cg_table *t, const struct cg_dataset *ds)
{
    FUZZ_CHECK(ds->n == t->n_rows, "%lld samples for %lld rows", (long long)ds->n,
               (long long)t->n_rows);
    FUZZ_CHECK(ds->sample_ndim == 1 && ds->sample_numel == ds->sample_shape[0] &&
                   ds->sample_numel >= 1, "sample shape");
    FUZZ_CHECK(ds->x, "a CSV dataset without float features");
    for (int64_t i = 0; i < ds->n * ds->sample_numel; i++)
        FUZZ_CHECK(isfinite(ds->x[i]), "feature %lld is %g", (long long)i, (double)ds->x[i]);
    if (t->target < 0) {
        FUZZ_CHECK(!ds->y, "targets without a target column");
        return;
    }
    FUZZ_CHECK(ds->y, "no targets");
    if (t->task == CG_TASK_CLASSIFICATION) {
        FUZZ_CHECK(ds->y_dim == 0 && ds->n_classes >= 1, "y_dim %lld, %d classes",
                   (long long)ds->y_dim, ds->n_classes);
        for (int64_t i = 0; i < ds->n; i++)
            FUZZ_CHECK(ds->y[i] >= 0 && ds->y[i] < ds->n_classes && ds->y[i] == floorf(ds->y[i]),
                       "label %lld is %g of %d classes", (long long)i, (double)ds->y[i],
                       ds->n_classes);
        for (int k = 0; ds->class_names && k < ds->n_classes; k++)
            FUZZ_CHECK(ds->class_names[k] != NULL, "class name %d", k);
    } else {
        FUZZ_CHECK(ds->y_dim == 1, "regression y_dim %lld", (long long)ds->y_dim);
        for (int64_t i = 0; i < ds->n; i++)
            FUZZ_CHECK(isfinite(ds->y[i]), "target %lld is %g", (long long)i, (double)ds->y[i]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2) return 0;
    static const char delims[4] = {',', ';', '\t', '|'};
    static const char *const targets[8] = {NULL, "y", "label", "species", "a", "b", "last",
                                           "2"};
    static const float fills[2] = {-1.5f, 1e30f};
    struct cg_csv_options o = cg_csv_options_default();
    o.delimiter = delims[data[0] & 3];
    o.task = (enum cg_task)((data[0] >> 2) % 3);
    o.missing = (enum cg_missing)((data[0] >> 4) & 3);
    o.reject_categorical = (data[0] >> 6) & 1;
    o.fill_value = fills[data[0] >> 7];
    o.target = targets[data[1] & 7];
    o.skip_rows = (data[1] >> 3) & 1;
    o.no_header = (data[1] >> 4) & 1;
    o.drop = (data[1] >> 5) & 1 ? "b" : NULL;
    o.features = (data[1] >> 6) & 1 ? "a,c" : NULL;
    o.keep = (data[1] >> 7) & 1 ? "c" : NULL;

    const char *path = fuzz_file(0, "in.csv", data + 2, size - 2, 0);
    struct cg_table *t = NULL;
    cg_status st = cg_csv_read(path, &o, &t);
    if (st != CG_OK) {
        FUZZ_CHECK(!t && cg_last_error(NULL)[0], "a failure with a table or no message");
        return 0;
    }
    check_table(t);

    /* The layout text round trip. */
    char *text = NULL, *text2 = NULL;
    struct cg_table *lay = NULL;
    st = cg_table_layout_format(t, &text);
    FUZZ_CHECK(st == CG_OK, "layout_format: %s", cg_last_error(NULL));
    st = cg_table_layout_parse(text, &lay);
    FUZZ_CHECK(st == CG_OK, "layout_parse of our own text: %s\n%s", cg_last_error(NULL), text);
    check_same_layout(t, lay);
    st = cg_table_layout_format(lay, &text2);
    FUZZ_CHECK(st == CG_OK && strcmp(text, text2) == 0, "layout text changed:\n%s\n---\n%s",
               text, text2 ? text2 : "(failed)");

    /* Conforming to its own layout is the identity. */
    size_t nv = (size_t)t->n_rows * (size_t)t->n_cols;
    float *before = malloc(nv * sizeof *before + 1);
    FUZZ_CHECK(before != NULL, "out of memory");
    memcpy(before, t->values, nv * sizeof *before);
    st = cg_table_conform(t, lay);
    FUZZ_CHECK(st == CG_OK, "conform to its own layout: %s", cg_last_error(NULL));
    FUZZ_CHECK((size_t)t->n_rows * (size_t)t->n_cols == nv &&
                   memcmp(before, t->values, nv * sizeof *before) == 0,
               "conform to its own layout changed the values");
    check_table(t);

    /* Reading the same file again as the layout says (what clgrad-eval
     * does with a training layout) gives the same table. */
    struct cg_csv_options o2 = o;
    o2.like = lay;
    struct cg_table *t2 = NULL;
    st = cg_csv_read(path, &o2, &t2);
    FUZZ_CHECK(st == CG_OK, "re-reading like its own layout: %s", cg_last_error(NULL));
    st = cg_table_conform(t2, lay);
    FUZZ_CHECK(st == CG_OK, "conforming the re-read table: %s", cg_last_error(NULL));
    FUZZ_CHECK(t2->n_rows == t->n_rows && t2->n_cols == t->n_cols &&
                   memcmp(t2->values, t->values, nv * sizeof *before) == 0,
               "re-read like its own layout: %lld x %d vs %lld x %d, or other values",
               (long long)t2->n_rows, t2->n_cols, (long long)t->n_rows, t->n_cols);
    cg_table_free(t2);

    struct cg_dataset *ds = NULL;
    st = cg_dataset_from_table(t, &ds);
    if (st == CG_OK) check_dataset(t, ds);
    else FUZZ_CHECK(!ds && cg_last_error(NULL)[0], "a failure with a dataset or no message");

    cg_dataset_free(ds);
    free(before);
    free(text);
    free(text2);
    cg_table_free(lay);
    cg_table_free(t);
    return 0;
}
