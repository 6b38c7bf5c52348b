/*
 * src/data/layout.c — making a new CSV's table line up with the table a
 * model was trained on.
 *
 * cg_csv_read numbers each categorical column's categories per file (sorted),
 * so a prediction file that lacks a category, has a new column order or
 * numbers classes differently would give cg_dataset_from_table a different
 * one-hot layout than training did. cg_table_conform rewrites such a table
 * into the training table's layout; the layout itself (names, kinds,
 * categories, target, no rows) travels in a checkpoint as the text of
 * cg_table_layout_format. cg_table_split holds out test rows.
 */
#include "data-impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAYOUT_MAGIC "clgrad-columns 1"

/* ---------------------------------------------------------------- conform -- */

/* The index of category s in col, or -1. Categories are few (one-hot
 * columns), so a linear scan is fine. */
static int layout_category(const struct cg_column *col, const char *s)
{
    for (int k = 0; k < col->n_categories; k++)
        if (strcmp(col->categories[k], s) == 0) return k;
    return -1;
}

/* The category of col whose text reads as the number v, or -1: a column
 * that was text in training but happens to hold only numbers in this file
 * ("1", "2", ... in a column that also had "3b" when trained). */
static int layout_category_number(const struct cg_column *col, float v)
{
    for (int k = 0; k < col->n_categories; k++) {
        char *end;
        double d = strtod(col->categories[k], &end);
        if (end != col->categories[k] && *end == '\0' && (float)d == v) return k;
    }
    return -1;
}

/* map (n_categories of have) -> index in want's categories; names the first
 * unknown category. */
static cg_status layout_map_categories(const struct cg_column *have, const struct cg_column *want,
                                       int *map)
{
    for (int k = 0; k < have->n_categories; k++) {
        map[k] = layout_category(want, have->categories[k]);
        if (map[k] < 0) {
            char known[256] = "";
            size_t used = 0;
            for (int j = 0; j < want->n_categories && used + 8 < sizeof known; j++)
                used += (size_t)snprintf(known + used, sizeof known - used, "%s\"%s\"",
                                         j ? ", " : "", want->categories[j]);
            if (used >= sizeof known) strcpy(known + sizeof known - 5, "...");
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "column \"%s\": category \"%s\" was not seen in training "
                             "(known: %s)", have->name, have->categories[k], known);
        }
    }
    return CG_OK;
}

/* Writes column `from` of t (rows of t->n_cols values) into column `to` of
 * out (rows of n_out values), recoded to want's categories. */
static cg_status layout_copy_column(const struct cg_table *t, int from, const struct cg_column *want,
                                    float *out, int n_out, int to)
{
    const struct cg_column *have = &t->cols[from];
    const float *src = t->values + from;
    if (want->kind == CG_COLUMN_NUMERIC) {
        if (have->kind != CG_COLUMN_NUMERIC)
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "column \"%s\" holds text, but it was numeric in training",
                             have->name);
        for (int64_t r = 0; r < t->n_rows; r++) out[r * n_out + to] = src[r * t->n_cols];
        return CG_OK;
    }
    if (have->kind == CG_COLUMN_NUMERIC) {
        for (int64_t r = 0; r < t->n_rows; r++) {
            float v = src[r * t->n_cols];
            int k = layout_category_number(want, v);
            if (k < 0)
                return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                                 "column \"%s\", data row %lld: category \"%g\" was not seen "
                                 "in training", have->name, (long long)r + 1, (double)v);
            out[r * n_out + to] = (float)k;
        }
        return CG_OK;
    }
    int *map = malloc(((size_t)have->n_categories + 1) * sizeof *map);
    if (!map) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
    cg_status st = layout_map_categories(have, want, map);
    if (st == CG_OK)
        for (int64_t r = 0; r < t->n_rows; r++)
            out[r * n_out + to] = (float)map[(int)src[r * t->n_cols]];
    free(map);
    return st;
}

/* A deep copy of col's name, kind and categories into out. */
static cg_status layout_copy_meta(const struct cg_column *col, struct cg_column *out)
{
    out->kind = col->kind;
    out->name = cg__strdup(col->name);
    out->n_categories = 0;
    out->categories = NULL;
    if (!out->name) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
    if (col->kind != CG_COLUMN_CATEGORICAL) return CG_OK;
    out->categories = calloc((size_t)col->n_categories + 1, sizeof *out->categories);
    if (!out->categories) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
    for (int k = 0; k < col->n_categories; k++) {
        if (!(out->categories[k] = cg__strdup(col->categories[k])))
            return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
        out->n_categories = k + 1;
    }
    return CG_OK;
}

static void layout_free_cols(struct cg_column *cols, int n)
{
    for (int j = 0; cols && j < n; j++) {
        free(cols[j].name);
        for (int k = 0; k < cols[j].n_categories; k++) free(cols[j].categories[k]);
        free(cols[j].categories);
    }
    free(cols);
}

static cg_status table_conform(struct cg_table *t, const struct cg_table *like);

CG_API cg_status cg_table_conform(struct cg_table *t, const struct cg_table *like)
{
    if (!t || !like)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_table_conform: NULL table");
    struct cg__c_numeric loc;                  /* categories that are numbers */
    cg__c_numeric_begin(&loc);
    cg_status st = table_conform(t, like);
    cg__c_numeric_end(&loc);
    return st;
}

static cg_status table_conform(struct cg_table *t, const struct cg_table *like)
{
    /* Every column of like must be in t, except that a prediction file may
     * lack the target; t's extra columns are dropped. */
    bool has_target = like->target >= 0 && cg_table_column(t, like->cols[like->target].name) >= 0;
    int n_out = like->n_cols - (like->target >= 0 && !has_target);
    int64_t cells;
    if (!cg__mul_ok(t->n_rows, n_out, &cells))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_table_conform: too many rows");
    float *vals = malloc((size_t)(cells ? cells : 1) * sizeof *vals);
    struct cg_column *cols = calloc((size_t)n_out + 1, sizeof *cols);
    if (!vals || !cols) {
        free(vals); free(cols);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_table_conform: out of memory");
    }
    cg_status st = CG_OK;
    int to = 0, target = -1;
    for (int j = 0; j < like->n_cols && st == CG_OK; j++) {
        const struct cg_column *want = &like->cols[j];
        int from = cg_table_column(t, want->name);
        if (from < 0) {
            if (j == like->target) continue;       /* no target: prediction only */
            st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                           "column \"%s\", which the model was trained on, is missing",
                           want->name);
            break;
        }
        if (j == like->target) target = to;
        st = layout_copy_column(t, from, want, vals, n_out, to);
        if (st == CG_OK) st = layout_copy_meta(want, &cols[to]);
        to++;
    }
    if (st != CG_OK) {
        layout_free_cols(cols, n_out);
        free(vals);
        return st;
    }
    layout_free_cols(t->cols, t->n_cols);
    free(t->values);
    t->cols = cols;
    t->values = vals;
    t->n_cols = n_out;
    t->target = target;
    t->task = target >= 0 ? like->task : CG_TASK_AUTO;
    return CG_OK;
}

/* ----------------------------------------------------------------- format -- */

/* A field with '\\', tab, newline and CR escaped, so fields split on tabs
 * and records on newlines. */
static void sb_field(struct cg__sb *b, const char *s)
{
    for (; *s; s++) {
        const char *e = *s == '\\' ? "\\\\" : *s == '\t' ? "\\t" : *s == '\n' ? "\\n"
                      : *s == '\r' ? "\\r" : NULL;
        if (e) cg__sb_putn(b, e, 2);
        else cg__sb_putn(b, s, 1);
    }
}

CG_API cg_status cg_table_layout_format(const struct cg_table *t, char **out)
{
    if (!t || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_table_layout_format: NULL argument");
    struct cg__sb b = {0};
    cg__sb_printf(&b, LAYOUT_MAGIC " %d %d\n", t->target, (int)t->task);
    for (int j = 0; j < t->n_cols; j++) {
        const struct cg_column *c = &t->cols[j];
        cg__sb_putn(&b, c->kind == CG_COLUMN_CATEGORICAL ? "c\t" : "n\t", 2);
        sb_field(&b, c->name);
        for (int k = 0; c->kind == CG_COLUMN_CATEGORICAL && k < c->n_categories; k++) {
            cg__sb_putn(&b, "\t", 1);
            sb_field(&b, c->categories[k]);
        }
        cg__sb_putn(&b, "\n", 1);
    }
    if (b.oom) {
        free(b.p);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_table_layout_format: out of memory");
    }
    *out = b.p;
    return CG_OK;
}

/* Unescapes the field at *s up to a tab, newline or end into a new string;
 * *s moves past it. NULL on a bad escape or no memory (*bad says which). */
static char *layout_field(const char **s, bool *bad)
{
    struct cg__sb b = {0};
    cg__sb_putn(&b, "", 0);
    const char *p = *s;
    for (; *p && *p != '\t' && *p != '\n'; p++) {
        char c = *p;
        if (c == '\\') {
            c = p[1] == '\\' ? '\\' : p[1] == 't' ? '\t' : p[1] == 'n' ? '\n'
              : p[1] == 'r' ? '\r' : 0;
            if (!c) { free(b.p); *bad = true; return NULL; }
            p++;
        }
        cg__sb_putn(&b, &c, 1);
    }
    *s = p;
    if (b.oom) { free(b.p); return NULL; }
    return b.p;
}

static cg_status layout_bad(int line, const char *what)
{
    return cg__error(NULL, CG_STATUS_PARSE_ERROR, "column layout, line %d: %s", line, what);
}

/* Parses one "c|n<TAB>name[<TAB>category...]" line at *s into col. */
static cg_status layout_parse_column(const char **s, int line, struct cg_column *col)
{
    const char *p = *s;
    if ((p[0] != 'c' && p[0] != 'n') || p[1] != '\t')
        return layout_bad(line, "expected 'c' or 'n' and a tab");
    col->kind = p[0] == 'c' ? CG_COLUMN_CATEGORICAL : CG_COLUMN_NUMERIC;
    p += 2;
    bool bad = false;
    if (!(col->name = layout_field(&p, &bad)))
        return bad ? layout_bad(line, "bad escape in the column name")
                   : cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
    int cap = 0;
    while (*p == '\t') {
        p++;
        if (col->kind != CG_COLUMN_CATEGORICAL)
            return layout_bad(line, "a numeric column lists categories");
        if (col->n_categories + 1 >= cap) {
            cap = cap ? 2 * cap : 8;
            char **c = realloc(col->categories, (size_t)cap * sizeof *c);
            if (!c) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
            col->categories = c;
        }
        char *f = layout_field(&p, &bad);
        if (!f)
            return bad ? layout_bad(line, "bad escape in a category")
                       : cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "out of memory");
        col->categories[col->n_categories++] = f;
    }
    if (*p != '\n') return layout_bad(line, "missing line end");
    *s = p + 1;
    return CG_OK;
}

CG_API cg_status cg_table_layout_parse(const char *text, struct cg_table **out)
{
    if (!text || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_table_layout_parse: NULL argument");
    size_t ml = strlen(LAYOUT_MAGIC);
    int target, task, used = 0;
    if (strncmp(text, LAYOUT_MAGIC " ", ml + 1) != 0 ||
        sscanf(text + ml, " %d %d\n%n", &target, &task, &used) != 2 || used == 0 ||
        text[ml + (size_t)used - 1] != '\n')
        return layout_bad(1, "not a clgrad column layout (\"" LAYOUT_MAGIC " TARGET TASK\")");
    int n = 0;
    for (const char *p = text + ml + used; *p; p++) n += *p == '\n';
    if (target < -1 || target >= n || task < CG_TASK_AUTO || task > CG_TASK_CLASSIFICATION)
        return layout_bad(1, "target or task out of range");
    struct cg_table *t = calloc(1, sizeof *t);
    if (!t || !(t->cols = calloc((size_t)n + 1, sizeof *t->cols))) {
        free(t);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_table_layout_parse: out of memory");
    }
    t->target = target;
    t->task = (enum cg_task)task;
    const char *p = text + ml + used;
    cg_status st = CG_OK;
    for (int j = 0; j < n && st == CG_OK; j++) {
        t->n_cols = j + 1;
        st = layout_parse_column(&p, j + 2, &t->cols[j]);
    }
    for (int j = 0; j < t->n_cols && st == CG_OK; j++)
        for (int i = 0; i < j && st == CG_OK; i++)
            if (strcmp(t->cols[i].name, t->cols[j].name) == 0)
                st = layout_bad(j + 2, "duplicate column name");
    if (st == CG_OK && *p) st = layout_bad(n + 2, "text after the last line");
    if (st != CG_OK) {
        cg_table_free(t);
        return st;
    }
    *out = t;
    return CG_OK;
}

/* ------------------------------------------------------------------ split -- */

/* A new table with t's columns and the rows whose pick[r] equals want, in
 * t's order. */
static cg_status table_rows(const struct cg_table *t, const bool *pick, bool want, int64_t n,
                            struct cg_table **out)
{
    struct cg_table *s = calloc(1, sizeof *s);
    if (s) {
        s->cols = calloc((size_t)t->n_cols + 1, sizeof *s->cols);
        s->values = malloc(((size_t)n * (size_t)t->n_cols + 1) * sizeof *s->values);
    }
    if (!s || !s->cols || !s->values) {
        cg_table_free(s);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_table_split: out of memory");
    }
    s->n_cols = t->n_cols;
    s->target = t->target;
    s->task = t->task;
    s->n_rows = n;
    cg_status st = CG_OK;
    for (int j = 0; j < t->n_cols && st == CG_OK; j++) st = layout_copy_meta(&t->cols[j], &s->cols[j]);
    if (st == CG_OK && ((t->task_reason && !(s->task_reason = cg__strdup(t->task_reason))) ||
                        (t->notes && !(s->notes = cg__strdup(t->notes)))))
        st = cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_table_split: out of memory");
    if (st != CG_OK) {
        cg_table_free(s);
        return st;
    }
    int64_t k = 0;
    for (int64_t r = 0; r < t->n_rows; r++)
        if (pick[r] == want)
            memcpy(s->values + k++ * t->n_cols, t->values + r * t->n_cols,
                   (size_t)t->n_cols * sizeof *s->values);
    *out = s;
    return CG_OK;
}

static uint64_t split_next(void *state) { return cg__splitmix64(state); }

CG_API cg_status cg_table_split(const struct cg_table *t, double test_fraction, uint64_t seed,
                                struct cg_table **rest, struct cg_table **test)
{
    if (!t || !rest || !test)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_table_split: NULL argument");
    *rest = *test = NULL;
    if (!(test_fraction >= 0.0 && test_fraction < 1.0))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_table_split: the test fraction %g is not in [0, 1)", test_fraction);
    /* At least one row when a test set is asked for: scikit-learn's
     * train_test_split rounds the test size up, so a user of it expects
     * a tiny file to still hold out a row. */
    int64_t n = t->n_rows, n_test = (int64_t)llround((double)n * test_fraction);
    if (test_fraction > 0 && n_test < 1) n_test = 1;
    if (test_fraction > 0 && n_test >= n)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_table_split: %lld rows cannot hold out a test fraction of %g "
                         "(%lld rows) with rows left to train on",
                         (long long)n, test_fraction, (long long)n_test);
    /* The first n_test entries of a seeded permutation of the rows: the
     * same (seed, n, fraction) picks the same rows, as cg_dataset_split. */
    int64_t *perm = malloc(((size_t)n + 1) * sizeof *perm);
    bool *pick = calloc((size_t)n + 1, sizeof *pick);
    if (!perm || !pick) {
        free(perm);
        free(pick);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_table_split: out of memory");
    }
    uint64_t state = seed;
    cg__permutation(perm, n, split_next, &state);
    for (int64_t i = 0; i < n_test; i++) pick[perm[i]] = true;
    cg_status st = table_rows(t, pick, false, n - n_test, rest);
    if (st == CG_OK && n_test > 0 && (st = table_rows(t, pick, true, n_test, test)) != CG_OK) {
        cg_table_free(*rest);
        *rest = NULL;
    }
    free(perm);
    free(pick);
    return st;
}
