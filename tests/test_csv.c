/*
 * tests/test_csv.c — the CSV reader: the grammar (quotes, delimiters, CRLF,
 * BOM, blank lines), column kinds and target handling, missing-value
 * policies, streaming across buffer boundaries, and every malformed input
 * of issue 4 with the file:line:column its message must name; issue 19's
 * tables as they come (counts lines, no header, column choice, dates, IDs,
 * task inference, held-out split, reading like a layout, gzip, locale).
 */
#include "harness.h"

#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clgrad-test-csv-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    *state = NULL;
    return 0;
}

static int group_teardown(void **state)
{
    rmdir(tmpdir);
    return 0;
}

/* Writes text to tmpdir/name; returns the path (static buffer). */
static const char *write_file(const char *name, const char *text, size_t len)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, len, f), len);
    fclose(f);
    return path;
}

/* Parses text from memory under the name "data.csv". */
static cg_status parse(const char *text, const struct cg_csv_options *o, struct cg_table **t)
{
    FILE *f = fmemopen((void *)text, strlen(text), "rb");
    assert_non_null(f);
    cg_status st = cg_csv_read_stream(f, "data.csv", o, t);
    fclose(f);
    if (st != CG_OK) assert_null(*t);
    return st;
}

static void expect_error(const char *text, const struct cg_csv_options *o, cg_status want,
                         const char *needle)
{
    struct cg_table *t = (struct cg_table *)1;
    cg_status st = parse(text, o, &t);
    if (st != want)
        fail_msg("status %s, want %s (message: %s)", cg_status_str(st), cg_status_str(want),
                 cg_last_error(NULL));
    th_assert_error_contains(NULL, needle);
}

static void test_basic(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    struct cg_table *t;
    assert_int_equal(parse("a,b,y\n1,2.5,-3\n4e2, -5 ,6.25\n", &o, &t), CG_OK);
    assert_int_equal(t->n_rows, 2);
    assert_int_equal(t->n_cols, 3);
    assert_string_equal(t->cols[0].name, "a");
    assert_string_equal(t->cols[2].name, "y");
    assert_int_equal(t->target, 2);
    assert_int_equal(t->task, CG_TASK_REGRESSION);
    const float want[] = {1, 2.5f, -3, 400, -5, 6.25f};
    th_assert_close_f(t->values, want, 6, 0, 0, "values");
    assert_int_equal(cg_table_column(t, "b"), 1);
    assert_int_equal(cg_table_column(t, "nope"), -1);
    cg_table_free(t);
}

/* Random values printed with %.9g must come back bit-exact as float32, over
 * enough rows that fields straddle the reader's 64 KiB buffer. */
static void test_streaming_random(void **state)
{
    uint64_t s = 77;
    const int rows = 20011, cols = 7;
    size_t cap = (size_t)rows * cols * 24 + 256, n = 0;
    char *text = malloc(cap);
    float *ref = malloc((size_t)rows * cols * sizeof *ref);
    n += (size_t)snprintf(text + n, cap - n, "c0,\"c,1\",c2,c3,c4,c5,c6\r\n");
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) {
            float v = (float)th_rand_uniform(&s, -1e4, 1e4);
            if (c == 3) v = (float)(int)v;
            ref[r * cols + c] = v;
            /* every fifth cell quoted, some padded with spaces */
            const char *fmt = (r + c) % 5 == 0 ? "\"%.9g\"" : (r + c) % 7 == 0 ? "  %.9g " : "%.9g";
            n += (size_t)snprintf(text + n, cap - n, fmt, (double)v);
            text[n++] = c + 1 < cols ? ',' : '\n';
        }
    }
    const char *path = write_file("stream.csv", text, n);
    struct cg_table *t;
    assert_int_equal(cg_csv_read(path, NULL, &t), CG_OK);
    unlink(path);
    assert_int_equal(t->n_rows, rows);
    assert_int_equal(t->n_cols, cols);
    assert_string_equal(t->cols[1].name, "c,1");
    assert_int_equal(t->target, -1);
    th_assert_close_f(t->values, ref, (int64_t)rows * cols, 0, 0, "streamed values");
    cg_table_free(t);
    free(text);
    free(ref);
}

/* Short decimals (the reader's fast path) and long ones (strtof) must both
 * give exactly strtof's correctly rounded float. */
static void test_number_formats(void **state)
{
    uint64_t s = 123;
    const char *fmts[] = {"%.4f", "%.3e", "%g", "%.1f", "%.7g", "%.12g", "%.0f", "%+.2E"};
    const int rows = 4000, cols = 8;
    size_t cap = (size_t)rows * cols * 32 + 64, n = 0;
    char *text = malloc(cap);
    float *ref = malloc((size_t)rows * cols * sizeof *ref);
    n += (size_t)snprintf(text, cap, "a,b,c,d,e,f,g,h\n");
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double mag = pow(10.0, th_rand_uniform(&s, -12, 12));
            double v = th_rand_uniform(&s, -1, 1) * mag;
            char cell[64];
            snprintf(cell, sizeof cell, fmts[c], v);
            ref[r * cols + c] = strtof(cell, NULL);
            n += (size_t)snprintf(text + n, cap - n, "%s%c", cell, c + 1 < cols ? ',' : '\n');
        }
    struct cg_table *t;
    assert_int_equal(parse(text, NULL, &t), CG_OK);
    assert_memory_equal(t->values, ref, (size_t)rows * cols * sizeof *ref);
    cg_table_free(t);
    free(text);
    free(ref);
}

static void test_quotes_bom_crlf(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "label";
    struct cg_table *t;
    const char *text = "\xEF\xBB\xBF" "x,label\r\n"
                       "1,\"a,b\"\r\n"
                       "\r\n"                               /* blank: skipped */
                       "2,\"say \"\"hi\"\"\"\r\n"
                       "3,\"two\nlines\"\r\n"
                       "4,\"a,b\"";                         /* no final newline */
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_string_equal(t->cols[0].name, "x");              /* BOM stripped */
    assert_int_equal(t->n_rows, 4);
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    const struct cg_column *c = &t->cols[1];
    assert_int_equal(c->n_categories, 3);
    /* sorted by byte order: "a,b" < "say \"hi\"" < "two\nlines" */
    assert_string_equal(c->categories[0], "a,b");
    assert_string_equal(c->categories[1], "say \"hi\"");
    assert_string_equal(c->categories[2], "two\nlines");
    const float want[] = {1, 0, 2, 1, 3, 2, 4, 0};
    th_assert_close_f(t->values, want, 8, 0, 0, "values");
    cg_table_free(t);
}

static void test_delimiters(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    struct cg_table *t;
    o.delimiter = ';';
    assert_int_equal(parse("a;b\n\"1;5\";2\n3 ;4\n", &o, &t), CG_OK);
    /* "1;5" is quoted text, so column a is categorical: "1;5" and "3" */
    assert_int_equal(t->cols[0].kind, CG_COLUMN_CATEGORICAL);
    assert_int_equal(t->cols[0].n_categories, 2);
    assert_string_equal(t->cols[0].categories[0], "1;5");
    assert_int_equal(t->cols[1].kind, CG_COLUMN_NUMERIC);
    cg_table_free(t);

    o.delimiter = '\t';
    assert_int_equal(parse("a\tb b\n1.5\t2\n\t\t\n", &o, &t), CG_STATUS_MISSING_VALUE);
    th_assert_error_contains(NULL, "data.csv:3:1: missing value in column \"a\"");
    assert_int_equal(parse("a\tb b\n1.5\t2\n-1\t 7 \n", &o, &t), CG_OK);
    assert_string_equal(t->cols[1].name, "b b");
    const float want[] = {1.5f, 2, -1, 7};
    th_assert_close_f(t->values, want, 4, 0, 0, "tab values");
    cg_table_free(t);
}

static void test_classification_labels(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    o.task = CG_TASK_CLASSIFICATION;
    struct cg_table *t;
    /* integer labels sort numerically: 2 < 9 < 10 (not "10" < "2") */
    assert_int_equal(parse("x,y\n0.5,10\n1.5,2\n2.5,9\n3.5,2\n", &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    assert_int_equal(t->cols[1].n_categories, 3);
    assert_string_equal(t->cols[1].categories[0], "2");
    assert_string_equal(t->cols[1].categories[1], "9");
    assert_string_equal(t->cols[1].categories[2], "10");
    const float want_y[] = {2, 0, 1, 0};
    for (int r = 0; r < 4; r++) assert_true(t->values[r * 2 + 1] == want_y[r]);
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_from_table(t, &ds), CG_OK);
    assert_int_equal(ds->n_classes, 3);
    assert_int_equal(ds->y_dim, 0);
    assert_string_equal(ds->class_names[2], "10");
    th_assert_close_f(ds->y, want_y, 4, 0, 0, "class indices");
    cg_dataset_free(ds);
    cg_table_free(t);

    /* AUTO: strings -> classification, numbers -> regression */
    o.task = CG_TASK_AUTO;
    assert_int_equal(parse("x,y\n1,cat\n2,dog\n", &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    cg_table_free(t);
    assert_int_equal(parse("x,y\n1,3\n2,4\n", &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_REGRESSION);
    cg_table_free(t);
    /* REGRESSION forces a numeric target */
    o.task = CG_TASK_REGRESSION;
    expect_error("x,y\n1,3\n2,dog\n", &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:3:2: non-numeric value \"dog\" in numeric column \"y\"");
}

static void test_categorical_features(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "price";
    struct cg_table *t;
    const char *text = "color,size,price\nred,1,10\nblue,2,20\ngreen,3,30\nred,4,40\n";
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->cols[0].kind, CG_COLUMN_CATEGORICAL);
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_from_table(t, &ds), CG_OK);
    /* blue, green, red one-hot, then size */
    assert_int_equal(ds->sample_ndim, 1);
    assert_int_equal(ds->sample_shape[0], 4);
    const float want_x[] = {0, 0, 1, 1, 1, 0, 0, 2, 0, 1, 0, 3, 0, 0, 1, 4};
    const float want_y[] = {10, 20, 30, 40};
    th_assert_close_f(ds->x, want_x, 16, 0, 0, "one-hot features");
    assert_int_equal(ds->y_dim, 1);
    th_assert_close_f(ds->y, want_y, 4, 0, 0, "regression targets");
    cg_dataset_free(ds);
    cg_table_free(t);

    o.reject_categorical = true;
    expect_error(text, &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:2:1: non-numeric value \"red\" in column \"color\"");
}

static void test_missing_policies(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    const char *text = "a,b,y\n1,x,1\n,y,2\n3,NA,3\n5,x,\n7,\"\",5\n";
    expect_error(text, &o, CG_STATUS_MISSING_VALUE,
                 "data.csv:3:1: missing value in column \"a\"");

    struct cg_table *t;
    o.missing = CG_MISSING_DROP;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_rows, 1);
    assert_int_equal(t->cols[1].n_categories, 1);    /* "y" only in a dropped row */
    cg_table_free(t);

    /* mean: a's mean over present kept cells = (1 + 3 + 7) / 3; b's mode "x";
     * the row with a missing target is dropped. */
    o.missing = CG_MISSING_FILL_MEAN;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_rows, 4);
    assert_int_equal(t->cols[1].n_categories, 2);
    assert_string_equal(t->cols[1].categories[0], "x");
    const float want_mean[] = {1, 0, 1, (1 + 3 + 7) / 3.0f, 1, 2, 3, 0, 3, 7, 0, 5};
    th_assert_close_f(t->values, want_mean, 12, 1e-7, 0, "mean fill");
    cg_table_free(t);

    o.missing = CG_MISSING_FILL_CONSTANT;
    o.fill_value = -9;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_true(t->values[3] == -9.0f);
    cg_table_free(t);

    o.missing = CG_MISSING_DROP;
    expect_error("a,y\n1,\n,2\n", &o, CG_STATUS_PARSE_ERROR, "no rows left");
    o.missing = CG_MISSING_FILL_MEAN;
    expect_error("a,y\n,1\n,2\n", &o, CG_STATUS_PARSE_ERROR, "no values to take the mean");
}

/* ------------------------------------------------ the bad-input matrix -- */

static void test_empty_file(void **state)
{
    expect_error("", NULL, CG_STATUS_PARSE_ERROR, "data.csv:1: empty file");
    expect_error("\n\n  \n", NULL, CG_STATUS_PARSE_ERROR, "empty file");
    /* and through a real path */
    const char *path = write_file("empty.csv", "", 0);
    struct cg_table *t;
    assert_int_equal(cg_csv_read(path, NULL, &t), CG_STATUS_PARSE_ERROR);
    th_assert_error_contains(NULL, "empty.csv:1: empty file");
    unlink(path);
    assert_int_equal(cg_csv_read("/nonexistent/x.csv", NULL, &t), CG_STATUS_IO_ERROR);
    th_assert_error_contains(NULL, "/nonexistent/x.csv: cannot open");
}

static void test_header_only(void **state)
{
    expect_error("a,b,c\n", NULL, CG_STATUS_PARSE_ERROR, "data.csv:2: no data rows");
    expect_error("a,b,c", NULL, CG_STATUS_PARSE_ERROR, "no data rows");
}

static void test_ragged_rows(void **state)
{
    expect_error("a,b,c\n1,2,3\n4,5\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:3:3: too few fields: expected 3, got 2");
    expect_error("a,b,c\n1,2,3\n4,5,6,7\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:3:4: too many fields: the header has 3 columns");
}

static void test_non_numeric_cell(void **state)
{
    expect_error("name,age\nx,3\ny,4\nz,abc\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:4:2: non-numeric value \"abc\" in numeric column \"age\"");
    /* a quoted field spanning lines moves the line count on */
    expect_error("a,b\n\"p\nq\",1\nr,1.5.2\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:4:2: non-numeric value \"1.5.2\"");
    /* long values are cut in the message */
    char text[256];
    snprintf(text, sizeof text, "a\n1\n%s\n",
             "0123456789012345678901234567890123456789012345678901234567890123456789x");
    expect_error(text, NULL, CG_STATUS_PARSE_ERROR, "01234567890123456789...\"");
}

static void test_missing_target_column(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "price";
    expect_error("a,b\n1,2\n", &o, CG_STATUS_INVALID_ARGUMENT,
                 "data.csv:1: no target column named \"price\"; the header has \"a\", \"b\"");
}

static void test_non_finite_cells(void **state)
{
    expect_error("a,b\n1,2\n3,NaN\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:3:2: non-finite value \"NaN\" in column \"b\"");
    expect_error("a,b\n1,2\n-inf,4\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:3:1: non-finite value \"-inf\"");
    expect_error("a,b\nInfinity,2\n", NULL, CG_STATUS_PARSE_ERROR, "data.csv:2:1: non-finite");
    expect_error("a,b\n1,1e39\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:2:2: value \"1e39\" in column \"b\" is out of float32 range");
}

static void test_wide_row(void **state)
{
    const int cols = 10000, rows = 3;
    size_t cap = (size_t)cols * 16 * (rows + 1), n = 0;
    char *text = malloc(cap);
    for (int c = 0; c < cols; c++) n += (size_t)snprintf(text + n, cap - n, "%sf%d", c ? "," : "", c);
    text[n++] = '\n';
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++)
            n += (size_t)snprintf(text + n, cap - n, "%s%d", c ? "," : "", r * cols + c);
        text[n++] = '\n';
    }
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "f9999";
    const char *path = write_file("wide.csv", text, n);
    struct cg_table *t;
    assert_int_equal(cg_csv_read(path, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, cols);
    assert_int_equal(t->n_rows, rows);
    assert_int_equal(t->target, cols - 1);
    for (int64_t i = 0; i < (int64_t)cols * rows; i++)
        if (t->values[i] != (float)i) fail_msg("cell %lld is %g", (long long)i, (double)t->values[i]);
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_from_table(t, &ds), CG_OK);
    assert_int_equal(ds->sample_shape[0], cols - 1);
    assert_true(ds->y[2] == (float)(3 * cols - 1));
    cg_dataset_free(ds);
    cg_table_free(t);

    /* one ragged wide row names its column */
    text[n - 2] = 0;                       /* cut the last row's last digit */
    n = strlen(text);
    char *comma = strrchr(text, ',');
    *comma = 0;                            /* drop the last field entirely */
    path = write_file("wide.csv", text, strlen(text));
    assert_int_equal(cg_csv_read(path, &o, &t), CG_STATUS_PARSE_ERROR);
    th_assert_error_contains(NULL, "wide.csv:4:10000: too few fields: expected 10000, got 9999");
    unlink(path);
    free(text);
}

static void test_unterminated_quote(void **state)
{
    expect_error("a,b\n1,2\n3,\"abc\n4,5\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:3:2: unterminated quoted field");
    expect_error("a,\"b\n", NULL, CG_STATUS_PARSE_ERROR, "data.csv:1:2: unterminated quoted");
}

static void test_other_malformed(void **state)
{
    expect_error("a,a\n1,2\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:1:2: duplicate column name \"a\" (also column 1)");
    expect_error("a,b\n\"1\"x,2\n", NULL, CG_STATUS_PARSE_ERROR,
                 "data.csv:2:1: unexpected character 'x' after a closing quote");
    struct cg_csv_options o = cg_csv_options_default();
    o.delimiter = '"';
    expect_error("a\n1\n", &o, CG_STATUS_INVALID_ARGUMENT, "delimiter");
    /* an empty header cell gets a generated name */
    struct cg_table *t;
    assert_int_equal(parse("a,,c\n1,2,3\n", NULL, &t), CG_OK);
    assert_string_equal(t->cols[1].name, "column2");
    cg_table_free(t);
}

/* A prediction file with fewer categories, another column order, an extra
 * column and classes in another order gets the training file's layout. */
static void test_conform_layout(void **state)
{
    (void)state;
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "kind";
    o.task = CG_TASK_CLASSIFICATION;
    struct cg_table *train, *test, *like;
    assert_int_equal(parse("color,size,kind\nred,1,b\nblue,2,a\ngreen,3,c\n", &o, &train), CG_OK);
    char *text;
    assert_int_equal(cg_table_layout_format(train, &text), CG_OK);
    assert_int_equal(cg_table_layout_parse(text, &like), CG_OK);
    free(text);
    assert_int_equal(like->n_cols, 3);
    assert_int_equal(like->target, 2);
    assert_int_equal(like->cols[0].n_categories, 3);
    assert_string_equal(like->cols[0].categories[2], "red");

    /* the test file alone would one-hot color as (green, red) and number
     * classes (b, c) as 0, 1 */
    assert_int_equal(parse("kind,extra,size,color\nc,9,5,green\nb,9,6,red\n", &o, &test), CG_OK);
    assert_int_equal(cg_table_conform(test, like), CG_OK);
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_from_table(test, &ds), CG_OK);
    assert_int_equal(ds->sample_shape[0], 4);
    const float want_x[] = {0, 1, 0, 5, 0, 0, 1, 6};   /* blue green red size */
    const float want_y[] = {2, 1};                        /* a b c */
    th_assert_close_f(ds->x, want_x, 8, 0, 0, "conformed features");
    th_assert_close_f(ds->y, want_y, 2, 0, 0, "conformed classes");
    assert_int_equal(ds->n_classes, 3);
    assert_string_equal(ds->class_names[0], "a");
    cg_dataset_free(ds);
    cg_table_free(test);

    /* no target column: prediction only */
    o.target = NULL;
    assert_int_equal(parse("size,color\n7,blue\n", &o, &test), CG_OK);
    assert_int_equal(cg_table_conform(test, like), CG_OK);
    assert_int_equal(test->n_cols, 2);
    assert_int_equal(test->target, -1);
    assert_true(test->values[0] == 0 && test->values[1] == 7);
    cg_table_free(test);

    /* errors name the column; the table is left as it was */
    assert_int_equal(parse("size,color\n7,purple\n", &o, &test), CG_OK);
    assert_int_equal(cg_table_conform(test, like), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "column \"color\": category \"purple\" was not seen in training");
    assert_int_equal(test->n_cols, 2);
    cg_table_free(test);
    assert_int_equal(parse("color\nred\n", &o, &test), CG_OK);
    assert_int_equal(cg_table_conform(test, like), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "column \"size\", which the model was trained on, is missing");
    cg_table_free(test);
    assert_int_equal(parse("size,color\nbig,red\n", &o, &test), CG_OK);
    assert_int_equal(cg_table_conform(test, like), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "column \"size\" holds text, but it was numeric in training");
    cg_table_free(test);
    cg_table_free(like);
    cg_table_free(train);
}

/* Names with tabs, newlines and backslashes survive the layout text; bad
 * layout texts are refused with the line at fault. */
static void test_layout_text(void **state)
{
    (void)state;
    struct cg_csv_options o = cg_csv_options_default();
    struct cg_table *t, *back;
    assert_int_equal(parse("\"a\tb\",\"c\\d\"\n\"x\ny\",1\nz,2\n", &o, &t), CG_OK);
    char *text;
    assert_int_equal(cg_table_layout_format(t, &text), CG_OK);
    assert_int_equal(cg_table_layout_parse(text, &back), CG_OK);
    free(text);
    assert_int_equal(back->n_cols, 2);
    assert_string_equal(back->cols[0].name, "a\tb");
    assert_string_equal(back->cols[1].name, "c\\d");
    assert_int_equal(back->cols[0].kind, CG_COLUMN_CATEGORICAL);
    assert_string_equal(back->cols[0].categories[0], "x\ny");
    assert_int_equal(back->cols[1].kind, CG_COLUMN_NUMERIC);
    cg_table_free(back);
    cg_table_free(t);

    const char *bad[][2] = {
        {"", "not a clgrad column layout"},
        {"clgrad-columns 2 -1 0\n", "not a clgrad column layout"},
        {"clgrad-columns 1 5 0\nn\tx\n", "target or task out of range"},
        {"clgrad-columns 1 -1 0\nq\tx\n", "line 2: expected 'c' or 'n'"},
        {"clgrad-columns 1 -1 0\nn\tx\ty\n", "line 2: a numeric column lists categories"},
        {"clgrad-columns 1 -1 0\nc\tx\\q\n", "line 2: bad escape"},
        {"clgrad-columns 1 -1 0\nn\tx\nn\tx\n", "line 3: duplicate column name"},
        {"clgrad-columns 1 -1 0\nn\tx\nn\ty", "text after the last line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        back = (struct cg_table *)1;
        assert_int_equal(cg_table_layout_parse(bad[i][0], &back), CG_STATUS_PARSE_ERROR);
        th_assert_error_contains(NULL, bad[i][1]);
    }
}

/* ------------------------------------------------- issue 19: real tables -- */

/* Reads text written to a file (so the path API and gzip detection run). */
static cg_status read_text(const char *text, const struct cg_csv_options *o, struct cg_table **t)
{
    const char *path = write_file("t.csv", text, strlen(text));
    cg_status st = cg_csv_read(path, o, t);
    unlink(path);
    if (st != CG_OK) assert_null(*t);
    return st;
}

/* scikit-learn's bundled CSVs (iris.csv, wine_data.csv) open with a line of
 * counts and class names, then rows without a header. */
static void test_counts_line(void **state)
{
    /* more fields in the rows than in the first line: an error naming both
     * counts and the options that fix it */
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "last";
    struct cg_table *t = NULL;
    /* fewer fields in line 1 than in the rows */
    const char *fewer = "4,3,a,b\n1,2,3,4,0\n5,6,7,8,1\n1,2,3,4,0\n5,6,7,8,1\n";
    expect_error(fewer, &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:2: the first row has 5 fields but the header (line 1) has 4: if "
                 "line 1 is not a header row, use --skip-rows 1 (and --no-header");
    const char *more = "4,3,a,b,c,d\n1,2,3,4,0\n5,6,7,8,1\n";
    expect_error(more, &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:2: the first row has 5 fields but the header (line 1) has 6");
    /* the fix */
    o.skip_rows = 1;
    o.no_header = true;
    assert_int_equal(read_text(fewer, &o, &t), CG_OK);
    assert_int_equal(t->n_rows, 4);
    assert_int_equal(t->n_cols, 5);
    assert_string_equal(t->cols[0].name, "column1");
    assert_string_equal(t->cols[4].name, "column5");
    assert_int_equal(t->target, 4);
    assert_null(t->notes);
    const float want[] = {1, 2, 3, 4, 0, 5, 6, 7, 8, 1};
    th_assert_close_f(t->values, want, 10, 0, 0, "rows after the counts line");
    cg_table_free(t);
    /* the same field count (iris.csv): read, but with a warning */
    o.skip_rows = 0;
    o.no_header = false;
    const char *iris = "4,2,setosa,versicolor\n5.1,3.5,1.4,0\n4.9,3.0,1.4,0\n"
                       "7.0,3.2,4.7,1\n6.4,3.2,4.5,1\n";
    assert_int_equal(parse(iris, &o, &t), CG_OK);
    assert_non_null(t->notes);
    assert_non_null(strstr(t->notes, "warning: the header (line 1) has numeric column names "
                                     "(\"4\", \"2\"): if line 1 is not a header, use "
                                     "--skip-rows 1 --no-header\n"));
    cg_table_free(t);
    /* a line of counts, then a real header (boston_house_prices.csv) */
    o.skip_rows = 1;
    o.target = "MEDV";
    assert_int_equal(parse("3,2,,\n\"CRIM\",\"MEDV\"\n0.1,24\n0.2,21.6\n0.3,34.7\n", &o, &t),
                     CG_OK);
    assert_string_equal(t->cols[1].name, "MEDV");
    assert_int_equal(t->n_rows, 3);
    assert_int_equal(t->task, CG_TASK_REGRESSION);
    assert_null(t->notes);
    cg_table_free(t);
    o.skip_rows = 0;                    /* forgotten: the error hints at it */
    expect_error("3,2,,\n\"CRIM\",\"MEDV\"\n0.1,24\n", &o, CG_STATUS_INVALID_ARGUMENT,
                 "no target column named \"MEDV\"; the header has \"3\", \"2\", \"column3\", "
                 "\"column4\" (line 1 looks like data, not a header: --skip-rows 1, and "
                 "--no-header if no header follows)");
    o.skip_rows = 9;
    expect_error("a\n1\n", &o, CG_STATUS_PARSE_ERROR, "ends before the 9 lines");
}

static void test_no_header(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.no_header = true;
    o.target = "column2";
    struct cg_table *t;
    /* blank lines and a quoted, missing-free first row */
    assert_int_equal(parse("\n\"1.5\",a\n2.5,b\n3.5,a\n4.5,b\n", &o, &t), CG_OK);
    assert_int_equal(t->n_rows, 4);
    assert_string_equal(t->cols[0].name, "column1");
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    assert_int_equal(t->cols[1].n_categories, 2);
    const float want[] = {1.5f, 0, 2.5f, 1, 3.5f, 0, 4.5f, 1};
    th_assert_close_f(t->values, want, 8, 0, 0, "headerless rows");
    cg_table_free(t);
    /* the first row counts as a row: a later ragged row names its line */
    expect_error("1,2\n3,4,5\n", &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:2:3: too many fields: the first row has 2 columns");
    /* a missing cell in the first row is found like any other */
    expect_error("1,\n3,4\n", &o, CG_STATUS_MISSING_VALUE,
                 "data.csv:1:2: missing value in column \"column2\"");
    /* text checks reach the first row too */
    expect_error("1,caf\xe9\n3,4\n", &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:1:2: the text is not valid UTF-8");
    expect_error("1,a\n3,caf\xe9\n", &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:2:2: the class name is not valid UTF-8");
    o.target = "y";
    expect_error("1,2\n3,4\n", &o, CG_STATUS_INVALID_ARGUMENT,
                 "no target column named \"y\"; the file (no header) has \"column1\", "
                 "\"column2\"");
}

static void test_target_by_number_and_last(void **state)
{
    const char *text = "a,b,c\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n";
    struct cg_csv_options o = cg_csv_options_default();
    struct cg_table *t;
    const char *specs[] = {"3", "last", "c"};
    for (int i = 0; i < 3; i++) {
        o.target = specs[i];
        assert_int_equal(parse(text, &o, &t), CG_OK);
        assert_int_equal(t->target, 2);
        assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
        cg_table_free(t);
    }
    o.target = "1";
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->target, 0);
    assert_int_equal(t->task, CG_TASK_REGRESSION);
    cg_table_free(t);
    /* a column really named "2" wins over column number 2 */
    o.target = "2";
    assert_int_equal(parse("2,b,last\n1,5,7\n3,6,8\n5,7,9\n", &o, &t), CG_OK);
    assert_int_equal(t->target, 0);
    cg_table_free(t);
    o.target = "last";                  /* and a column named "last" */
    assert_int_equal(parse("2,last,z\n1,5,7\n3,6,8\n5,7,9\n", &o, &t), CG_OK);
    assert_int_equal(t->target, 1);
    cg_table_free(t);
    o.target = "4";
    expect_error(text, &o, CG_STATUS_INVALID_ARGUMENT,
                 "data.csv: no target column 4: the file has 3 columns");
    o.target = "0";
    expect_error(text, &o, CG_STATUS_INVALID_ARGUMENT, "no target column 0");
}

static void test_drop_and_features(void **state)
{
    const char *text = "id,a,b,c,y\n1,10,20,30,0.5\n2,11,21,31,1.5\n3,12,22,32,2.5\n";
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    o.drop = "id, 3";                   /* by name and by number, spaces ignored */
    struct cg_table *t;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 3);
    assert_string_equal(t->cols[0].name, "a");
    assert_string_equal(t->cols[1].name, "c");
    assert_int_equal(t->target, 2);
    const float want[] = {10, 30, 0.5f, 11, 31, 1.5f, 12, 32, 2.5f};
    th_assert_close_f(t->values, want, 9, 0, 0, "after drop");
    cg_table_free(t);
    /* dropped columns are not read at all: text or gaps there are fine */
    o.drop = "id";
    assert_int_equal(parse("id,a,y\n,1,2\nx,3,4\n", &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 2);
    cg_table_free(t);

    o.drop = NULL;
    o.features = "c,a";                 /* the file's order is kept */
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 3);
    assert_string_equal(t->cols[0].name, "a");
    assert_string_equal(t->cols[1].name, "c");
    assert_string_equal(t->cols[2].name, "y");
    struct cg_dataset *ds;
    assert_int_equal(cg_dataset_from_table(t, &ds), CG_OK);
    assert_int_equal(ds->sample_numel, 2);
    cg_dataset_free(ds);
    cg_table_free(t);
    o.drop = "a";                       /* both: features minus drop */
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 2);
    assert_string_equal(t->cols[0].name, "c");
    cg_table_free(t);

    o.features = "a,nope";
    o.drop = NULL;
    expect_error(text, &o, CG_STATUS_INVALID_ARGUMENT,
                 "data.csv:1: no column \"nope\" (in --features); the header has \"id\", "
                 "\"a\", \"b\", \"c\", \"y\"");
    o.features = NULL;
    o.drop = "9";
    expect_error(text, &o, CG_STATUS_INVALID_ARGUMENT, "--drop: no column 9: the file has 5");
    o.drop = "a,,b";
    expect_error(text, &o, CG_STATUS_INVALID_ARGUMENT, "an empty column name");
    o.drop = "y";
    expect_error(text, &o, CG_STATUS_INVALID_ARGUMENT, "--drop names the target column \"y\"");
}

/* Expected date features: year, month and day of year on circles, weekday
 * (Monday 0, as Python's date.weekday()), hour on a circle. */
static void date_want(float *w, int year, int month, int doy, int days, int weekday, double hour)
{
    const double tp = 6.283185307179586;
    w[0] = (float)year;
    w[1] = (float)sin(tp * (month - 1) / 12);
    w[2] = (float)cos(tp * (month - 1) / 12);
    w[3] = (float)sin(tp * (doy - 1) / days);
    w[4] = (float)cos(tp * (doy - 1) / days);
    w[5] = (float)weekday;
    w[6] = (float)sin(tp * hour / 24);
    w[7] = (float)cos(tp * hour / 24);
}

static void test_date_column(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    struct cg_table *t;
    /* weekdays and days of year from Python's datetime */
    const char *text = "when,y\n2012-01-31,1\n2012/03/01,2\n2000-02-29,3\n1999-12-31,4\n";
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 7);
    const char *names[] = {"when_year", "when_month_sin", "when_month_cos", "when_doy_sin",
                           "when_doy_cos", "when_weekday", "y"};
    for (int j = 0; j < 7; j++) {
        assert_string_equal(t->cols[j].name, names[j]);
        assert_int_equal(t->cols[j].kind, CG_COLUMN_NUMERIC);
    }
    assert_int_equal(t->target, 6);
    float w[4][8];
    date_want(w[0], 2012, 1, 31, 366, 1, 0);
    date_want(w[1], 2012, 3, 61, 366, 3, 0);
    date_want(w[2], 2000, 2, 60, 366, 1, 0);
    date_want(w[3], 1999, 12, 365, 365, 4, 0);
    for (int r = 0; r < 4; r++)
        th_assert_close_f(t->values + r * 7, w[r], 6, 1e-6, 1e-6, "date features");
    assert_non_null(t->notes);
    assert_string_equal(t->notes, "note: column \"when\" holds dates: 6 numeric features "
                                  "when_year, when_month_sin, when_month_cos, when_doy_sin, "
                                  "when_doy_cos, when_weekday\n");
    cg_table_free(t);

    /* date-times: two more features, the hour of the day */
    text = "t,y\n2024-07-14T06:00:00,1\n2024-07-14 18:30,2\n2012-01-31T00:00:00Z,3\n";
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 9);
    assert_string_equal(t->cols[6].name, "t_hour_sin");
    assert_string_equal(t->cols[7].name, "t_hour_cos");
    date_want(w[0], 2024, 7, 196, 366, 6, 6.0);
    date_want(w[1], 2024, 7, 196, 366, 6, 18.5);
    date_want(w[2], 2012, 1, 31, 366, 1, 0);
    for (int r = 0; r < 3; r++)
        th_assert_close_f(t->values + r * 9, w[r], 8, 1e-6, 1e-6, "date-time features");
    cg_table_free(t);

    /* not every value a date: an ordinary text column (few values: one-hot) */
    assert_int_equal(parse("d,y\n2012-01-31,1\n2012-02-30,2\n2012-01-31,3\n", &o, &t), CG_OK);
    assert_int_equal(t->cols[0].kind, CG_COLUMN_CATEGORICAL);
    assert_null(t->notes);
    cg_table_free(t);
    /* forms: valid ones expand, near misses stay text */
    const struct { const char *s; bool date; } forms[] = {
        {"2012-1-5", true}, {"2012/12/31 23:59:59.5", true}, {"2012-01-31T10:00+05:30", true},
        {"2012-01-31T10:00:00-0800", true}, {"2012-13-01", false}, {"2013-02-29", false},
        {"12-01-31", false}, {"2012-01/31", false}, {"2012-01-31T24:00", false},
        {"2012-01-31T10", false}, {"2012-01-31 10:00 extra", false}, {"31/01/2012", false},
        {"2012-01-31T10:00:00.", false},
    };
    for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
        char buf[256];
        snprintf(buf, sizeof buf, "d,y\n%s,1\n2012-01-01,2\n", forms[i].s);
        assert_int_equal(parse(buf, &o, &t), CG_OK);
        if ((t->n_cols > 2) != forms[i].date) fail_msg("\"%s\": date %d", forms[i].s, forms[i].date);
        cg_table_free(t);
    }
    /* keep: stays text */
    o.keep = "when";
    assert_int_equal(parse("when,y\n2012-01-31,1\n2012-02-01,2\n", &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 2);
    assert_int_equal(t->cols[0].kind, CG_COLUMN_CATEGORICAL);
    cg_table_free(t);
    o.keep = NULL;
    /* a derived name that is already a column */
    expect_error("d,d_year,y\n2012-01-31,1,1\n2012-02-01,2,2\n", &o, CG_STATUS_INVALID_ARGUMENT,
                 "the date column \"d\" would become \"d_year\", which is already a column");
}

/* A text column with (nearly) one value per row would one-hot into as many
 * features: dropped with a warning, unless kept. */
static void test_id_column(void **state)
{
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "name,color,x,y\n");
    for (int r = 0; r < 50; r++)
        n += (size_t)snprintf(text + n, sizeof text - n, "person %d,%s,%d,%d.5\n", r,
                              r % 3 ? "red" : "blue", r, r % 7);
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    struct cg_table *t;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 3);
    assert_string_equal(t->cols[0].name, "color");       /* few values: one-hot */
    assert_int_equal(t->cols[0].kind, CG_COLUMN_CATEGORICAL);
    assert_int_equal(t->target, 2);
    assert_non_null(t->notes);
    assert_string_equal(t->notes, "warning: dropped column \"name\": text with 50 distinct "
                                  "values in 50 rows would one-hot encode into 50 features "
                                  "(--keep name keeps it)\n");
    float want[] = {0, 0, 0.5f, 1, 1, 1.5f};            /* blue 0 < red 1 */
    th_assert_close_f(t->values, want, 6, 0, 0, "the rest");
    cg_table_free(t);
    o.keep = "name";
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 4);
    assert_int_equal(t->cols[0].n_categories, 50);
    assert_null(t->notes);
    cg_table_free(t);
    o.keep = NULL;
    /* 20 distinct values are never dropped (small files) */
    n = (size_t)snprintf(text, sizeof text, "name,y\n");
    for (int r = 0; r < 20; r++)
        n += (size_t)snprintf(text + n, sizeof text - n, "p%d,%d.5\n", r, r);
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->cols[0].n_categories, 20);
    cg_table_free(t);
    /* the only feature dropped: an error that says so */
    n = (size_t)snprintf(text, sizeof text, "name,y\n");
    for (int r = 0; r < 30; r++)
        n += (size_t)snprintf(text + n, sizeof text - n, "p%d,%d.5\n", r, r);
    expect_error(text, &o, CG_STATUS_INVALID_ARGUMENT, "no feature columns left after dropping");
}

static void test_integer_labels(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    struct cg_table *t;
    char text[8192];
    /* 3 distinct integers in 9 rows: classification, classes sorted */
    const char *cls = "x,y\n0.1,2\n0.2,0\n0.3,10\n0.4,2\n0.5,0\n0.6,10\n0.7,2\n0.8,0\n0.9,10\n";
    assert_int_equal(parse(cls, &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    assert_string_equal(t->task_reason, "classification: integer target \"y\" with 3 distinct "
                                        "values (--task regression to override)");
    assert_int_equal(t->cols[1].kind, CG_COLUMN_CATEGORICAL);
    assert_int_equal(t->cols[1].n_categories, 3);
    assert_string_equal(t->cols[1].categories[0], "0");
    assert_string_equal(t->cols[1].categories[1], "2");
    assert_string_equal(t->cols[1].categories[2], "10");
    const float want[] = {1, 0, 2, 1, 0, 2, 1, 0, 2};
    for (int r = 0; r < 9; r++) assert_true(t->values[r * 2 + 1] == want[r]);
    enum cg_task task;
    char why[200];
    assert_int_equal(cg_table_infer_task(t, 1, &task, why, sizeof why), CG_OK);
    assert_int_equal(task, CG_TASK_CLASSIFICATION);
    assert_string_equal(why, "classification: text target \"y\" with 3 classes");
    assert_int_equal(cg_table_infer_task(t, 0, &task, NULL, 0), CG_OK);
    assert_int_equal(task, CG_TASK_REGRESSION);
    assert_int_equal(cg_table_infer_task(t, 2, &task, NULL, 0), CG_STATUS_INVALID_ARGUMENT);
    cg_table_free(t);
    /* overridden */
    o.task = CG_TASK_REGRESSION;
    assert_int_equal(parse(cls, &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_REGRESSION);
    assert_string_equal(t->task_reason, "regression: set by --task regression (target \"y\")");
    cg_table_free(t);
    o.task = CG_TASK_AUTO;
    /* non-integers: regression */
    assert_int_equal(parse("x,y\n1,2\n2,2.5\n3,2\n4,2\n", &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_REGRESSION);
    assert_string_equal(t->task_reason, "regression: target \"y\" has non-integer values such "
                                        "as 2.5 (--task classification to override)");
    cg_table_free(t);
    /* 21 distinct integers (each twice): regression; 20: classification */
    for (int k = 20; k <= 21; k++) {
        size_t n = (size_t)snprintf(text, sizeof text, "x,y\n");
        for (int r = 0; r < 2 * k; r++)
            n += (size_t)snprintf(text + n, sizeof text - n, "%d,%d\n", r, r % k);
        assert_int_equal(parse(text, &o, &t), CG_OK);
        assert_int_equal(t->task, k == 20 ? CG_TASK_CLASSIFICATION : CG_TASK_REGRESSION);
        if (k == 21)
            assert_string_equal(t->task_reason,
                                 "regression: integer target \"y\" with more than 20 distinct "
                                 "values (--task classification to override)");
        cg_table_free(t);
    }
    /* labels that do not repeat: regression */
    assert_int_equal(parse("x,y\n1,3\n2,4\n3,5\n4,3\n", &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_REGRESSION);
    assert_string_equal(t->task_reason, "regression: integer target \"y\" with 3 distinct "
                                        "values in only 4 rows (--task classification to "
                                        "override)");
    cg_table_free(t);
    /* text: classification, with its reason */
    assert_int_equal(parse("x,y\n1,cat\n2,dog\n", &o, &t), CG_OK);
    assert_string_equal(t->task_reason, "classification: text target \"y\" with 2 classes");
    cg_table_free(t);
    /* no target: no reason */
    o.target = NULL;
    assert_int_equal(parse("x,y\n1,cat\n2,dog\n", &o, &t), CG_OK);
    assert_null(t->task_reason);
    cg_table_free(t);
}

static void test_one_class(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    expect_error("x,y\n1,spam\n2,spam\n3,spam\n", &o, CG_STATUS_INVALID_ARGUMENT,
                 "data.csv: target \"y\" has a single class (\"spam\") in all 3 rows: nothing "
                 "to classify");
    /* an integer target with one value is classified, so the same error */
    expect_error("x,y\n1,1\n2,1\n3,1\n", &o, CG_STATUS_INVALID_ARGUMENT,
                 "target \"y\" has a single class (\"1\") in all 3 rows");
    o.task = CG_TASK_CLASSIFICATION;
    expect_error("x,y\n1,7\n2,7\n", &o, CG_STATUS_INVALID_ARGUMENT, "single class (\"7\")");
    /* the only other class's rows dropped for missing values */
    o.missing = CG_MISSING_DROP;
    expect_error("x,y\n1,a\n,b\n3,a\n", &o, CG_STATUS_INVALID_ARGUMENT,
                 "single class (\"a\") in all 2 rows");
    /* a constant regression target is not classification */
    o.task = CG_TASK_REGRESSION;
    struct cg_table *t;
    assert_int_equal(parse("x,y\n1,1\n2,1\n", &o, &t), CG_OK);
    cg_table_free(t);
}

static void test_split_deterministic(void **state)
{
    char text[16384];
    size_t n = (size_t)snprintf(text, sizeof text, "x,c,y\n");
    for (int r = 0; r < 200; r++)
        n += (size_t)snprintf(text + n, sizeof text - n, "%d,%s,%d\n", r, r % 2 ? "a" : "b",
                              r % 3);
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    struct cg_table *t, *rest, *test, *rest2, *test2;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(cg_table_split(t, 0.1, 42, &rest, &test), CG_OK);
    assert_int_equal(test->n_rows, 20);
    assert_int_equal(rest->n_rows, 180);
    assert_int_equal(test->n_cols, 3);
    assert_int_equal(test->target, 2);
    assert_int_equal(test->task, CG_TASK_CLASSIFICATION);
    assert_string_equal(test->cols[1].categories[1], "b");
    assert_string_equal(test->task_reason, t->task_reason);
    /* every row in exactly one part, in file order within each */
    bool seen[200] = {0};
    float prev = -1;
    for (int64_t r = 0; r < test->n_rows; r++) {
        float x = test->values[r * 3];
        assert_true(x > prev);
        prev = x;
        seen[(int)x] = true;
        assert_memory_equal(test->values + r * 3, t->values + (int)x * 3, 3 * sizeof(float));
    }
    prev = -1;
    for (int64_t r = 0; r < rest->n_rows; r++) {
        float x = rest->values[r * 3];
        assert_true(x > prev);
        prev = x;
        assert_false(seen[(int)x]);
        seen[(int)x] = true;
    }
    for (int r = 0; r < 200; r++) assert_true(seen[r]);
    /* the same (seed, rows, fraction): the same rows, from a fresh read */
    struct cg_table *t2;
    assert_int_equal(read_text(text, &o, &t2), CG_OK);
    assert_int_equal(cg_table_split(t2, 0.1, 42, &rest2, &test2), CG_OK);
    assert_memory_equal(test->values, test2->values, 20 * 3 * sizeof(float));
    cg_table_free(rest2);
    cg_table_free(test2);
    /* another seed: other rows */
    assert_int_equal(cg_table_split(t2, 0.1, 43, &rest2, &test2), CG_OK);
    assert_true(memcmp(test->values, test2->values, 20 * 3 * sizeof(float)) != 0);
    cg_table_free(rest2);
    cg_table_free(test2);
    /* the held-out rows pinned: a change of the generator would move them
     * and break every split recorded with a model */
    const float pinned[] = {2, 23, 25, 30, 44};
    for (int i = 0; i < 5; i++) assert_true(test->values[i * 3] == pinned[i]);
    /* 0: no test set */
    assert_int_equal(cg_table_split(t, 0, 42, &rest2, &test2), CG_OK);
    assert_null(test2);
    assert_int_equal(rest2->n_rows, 200);
    assert_memory_equal(rest2->values, t->values, 200 * 3 * sizeof(float));
    cg_table_free(rest2);
    /* fractions that leave a part empty */
    assert_int_equal(cg_table_split(t, 1.0, 42, &rest2, &test2), CG_STATUS_INVALID_ARGUMENT);
    assert_null(rest2);
    assert_null(test2);
    /* a fraction that rounds to no row still holds out one */
    assert_int_equal(cg_table_split(t, 0.001, 42, &rest2, &test2), CG_OK);
    assert_int_equal(test2->n_rows, 1);
    assert_int_equal(rest2->n_rows, 199);
    bool among = false;                 /* the permutation's first row: one of 0.1's */
    for (int64_t r = 0; r < test->n_rows; r++) among |= test->values[r * 3] == test2->values[0];
    assert_true(among);
    cg_table_free(rest2);
    cg_table_free(test2);
    struct cg_table *one;
    assert_int_equal(parse("x,y\n1,2.5\n", &o, &one), CG_OK);
    assert_int_equal(cg_table_split(one, 0.1, 42, &rest2, &test2), CG_STATUS_INVALID_ARGUMENT);
    th_assert_error_contains(NULL, "1 rows cannot hold out a test fraction of 0.1");
    cg_table_free(one);
    cg_table_free(rest);
    cg_table_free(test);
    cg_table_free(t2);
    cg_table_free(t);
}

/* Evaluation files are read as the training file was (opts.like): date
 * columns expanded the same way even with one row, dropped columns skipped,
 * target and task from the layout. */
static void test_read_like(void **state)
{
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof text, "id,day,color,y\n");
    for (int r = 0; r < 40; r++)
        n += (size_t)snprintf(text + n, sizeof text - n, "u%d,2020-01-%02d,%s,%d\n", r,
                              r % 28 + 1, r % 2 ? "red" : "blue", r % 2);
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    struct cg_table *t, *like, *e;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->n_cols, 8);                 /* 6 date features, color, y */
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    char *layout;
    assert_int_equal(cg_table_layout_format(t, &layout), CG_OK);
    assert_int_equal(cg_table_layout_parse(layout, &like), CG_OK);
    free(layout);
    /* one row, columns in another order, an extra column, no --target */
    struct cg_csv_options eo = cg_csv_options_default();
    eo.like = like;
    assert_int_equal(parse("extra,y,color,day,id\nq,0,blue,2020-01-05,u99\n", &eo, &e), CG_OK);
    assert_non_null(e->task_reason);
    assert_null(e->notes);
    assert_int_equal(cg_table_conform(e, like), CG_OK);
    assert_int_equal(e->n_cols, t->n_cols);
    for (int j = 0; j < t->n_cols; j++) assert_string_equal(e->cols[j].name, t->cols[j].name);
    assert_int_equal(e->target, t->target);
    assert_int_equal(e->task, CG_TASK_CLASSIFICATION);
    /* row 4 of the training file: the same day, color and class */
    th_assert_close_f(e->values, t->values + 4 * 8, 8, 0, 0, "same features as training");
    cg_table_free(e);
    /* a prediction file without the target */
    assert_int_equal(parse("day,color\n2020-01-05,red\n", &eo, &e), CG_OK);
    assert_int_equal(e->target, -1);
    assert_int_equal(cg_table_conform(e, like), CG_OK);
    assert_int_equal(e->n_cols, 7);
    cg_table_free(e);
    /* a date column with a non-date */
    expect_error("day,color,y\nsoon,red,1\n", &eo, CG_STATUS_INVALID_ARGUMENT,
                 "column \"day\" held dates in training, but \"soon\" is not a date");
    cg_table_free(like);
    cg_table_free(t);
}

/* cg_csv_read decompresses gzip files (scikit-learn ships digits.csv.gz). */
static void test_gzip(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/z.csv.gz", tmpdir);
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    gzputs(g, "0,1,2,7\n3,4,5,8\n6,7,8,7\n9,1,2,8\n");
    gzclose(g);
    struct cg_csv_options o = cg_csv_options_default();
    o.no_header = true;
    o.target = "last";
    struct cg_table *t;
    assert_int_equal(cg_csv_read(path, &o, &t), CG_OK);
    assert_int_equal(t->n_rows, 4);
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    assert_true(t->values[4] == 3);
    cg_table_free(t);
    /* a truncated gzip file is an error, not a short table */
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 20), 0);
    fclose(f);
    assert_int_not_equal(cg_csv_read(path, &o, &t), CG_OK);
    th_assert_error_contains(NULL, "z.csv.gz");
    unlink(path);
}

/* A program that has set a locale with a decimal comma must still read
 * "1.5" as 1.5. The locale is generated into tmpdir when the system lacks
 * it (localedef needs Debian's locales package; tools/setup.sh installs it). */
static void test_locale(void **state)
{
    if (!setlocale(LC_ALL, "de_DE.UTF-8")) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1",
                 tmpdir);
        int rc = system(cmd);
        setenv("LOCPATH", tmpdir, 1);
        if (!setlocale(LC_ALL, "de_DE.UTF-8"))
            fail_msg("cannot set or generate the de_DE.UTF-8 locale (localedef exit %d): "
                     "install Debian's locales package", rc);
    }
    /* the locale really has a decimal comma: strtod stops at the '.' */
    assert_string_equal(localeconv()->decimal_point, ",");
    assert_true(strtod("1.5", NULL) == 1.0);
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    struct cg_table *t, *like;
    /* short numbers (fast path), long ones (strtof), numeric categories */
    const char *text = "a,b,c,y\n1.5,0.1234567890123456789,2.5e-3,1.5\n"
                       "-2.25,3.0000000000000000001,1e5,2.5\n";
    cg_status st = read_text(text, &o, &t);
    if (st == CG_OK) {
        const float want[] = {1.5f, 0.1234567890123456789f, 2.5e-3f, 1.5f,
                              -2.25f, 3.0f, 1e5f, 2.5f};
        th_assert_close_f(t->values, want, 8, 0, 0, "values under de_DE");
        cg_table_free(t);
        /* categories that are numbers match across files under conform */
        o.task = CG_TASK_CLASSIFICATION;
        st = parse("x,y\n1,0.5\n2,1.5\n3,0.5\n", &o, &t);
    }
    if (st == CG_OK) {
        char *layout;
        assert_int_equal(cg_table_layout_format(t, &layout), CG_OK);
        assert_int_equal(cg_table_layout_parse(layout, &like), CG_OK);
        free(layout);
        cg_table_free(t);
        struct cg_csv_options eo = cg_csv_options_default();
        eo.like = like;
        assert_int_equal(parse("x,y\n4,1.5\n", &eo, &t), CG_OK);
        st = cg_table_conform(t, like);
        if (st == CG_OK) assert_true(t->values[1] == 1);
        cg_table_free(t);
        cg_table_free(like);
    }
    /* the caller's locale is untouched */
    assert_string_equal(localeconv()->decimal_point, ",");
    setlocale(LC_ALL, "C");
    char rm[600];
    snprintf(rm, sizeof rm, "rm -rf %s/de_DE.UTF-8", tmpdir);
    if (system(rm) != 0) fail_msg("cannot remove %s/de_DE.UTF-8", tmpdir);
    if (st != CG_OK) fail_msg("under de_DE: %s", cg_last_error(NULL));
}

/* Issue 17 item 1: names and categories that are not UTF-8 (Latin-1
 * "caf\xe9") are rejected at load with line and column; they used to train
 * and save a checkpoint no reader opens. Valid UTF-8 passes. */
static void test_invalid_utf8(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    expect_error("a,caf\xe9,y\n1,2,3\n", &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:1:2: the column name is not valid UTF-8 text (byte 0xe9 at byte 4");
    expect_error("a,y\n1,tea\n2,\"caf\xe9\"\n", &o, CG_STATUS_PARSE_ERROR,
                 "data.csv:3:2: the class name is not valid UTF-8 text (byte 0xe9 at byte 4");
    expect_error("a,b,y\n1,red,0\n2,\xc0\xaf,1\n", &o, CG_STATUS_PARSE_ERROR,  /* overlong */
                 "data.csv:3:2: the category is not valid UTF-8 text (byte 0xc0 at byte 1");
    expect_error("a,b,y\n1,\xed\xa0\x80,0\n", &o, CG_STATUS_PARSE_ERROR,      /* surrogate */
                 "data.csv:2:2: the category is not valid UTF-8");
    struct cg_table *t;
    assert_int_equal(parse("caf\xc3\xa9,y\n1,\xe6\x97\xa5\n2,\xf0\x9f\x98\x80\n", &o, &t), CG_OK);
    assert_string_equal(t->cols[0].name, "caf\xc3\xa9");
    assert_int_equal(t->cols[1].n_categories, 2);
    cg_table_free(t);
    /* a NUL byte inside a name would cut it short silently */
    static const char nul[] = "a\0b,y\n1,2\n";
    FILE *f = fmemopen((void *)nul, sizeof nul - 1, "rb");
    t = (struct cg_table *)1;
    assert_int_equal(cg_csv_read_stream(f, "data.csv", &o, &t), CG_STATUS_PARSE_ERROR);
    fclose(f);
    th_assert_error_contains(NULL, "data.csv:1:1: a NUL byte (at byte 2 of the field)");
    /* Found by fuzz_csv in CI's 30 s pass: a numeric cell "0\0\0" read as 0
     * (strtof stops at the NUL) while a second reading of the file with
     * its own layout, where the column is a class target, rejected it. A
     * NUL byte anywhere in a field is now an error. */
    static const char numnul[] = "y\n0\n0\0\0\n1\n1\n";
    f = fmemopen((void *)numnul, sizeof numnul - 1, "rb");
    t = (struct cg_table *)1;
    assert_int_equal(cg_csv_read_stream(f, "data.csv", &o, &t), CG_STATUS_PARSE_ERROR);
    fclose(f);
    th_assert_error_contains(NULL, "data.csv:3:1: a NUL byte (at byte 2 of the field)");
}

/* Found by fuzz_csv: a categorical column whose only category is in a
 * dropped row left its filled cells at category 0 of 0 (an index out of
 * range for one-hot). Now an error naming the column. */
static void test_fill_without_categories(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    for (int k = 0; k < 2; k++) {
        o.missing = k ? CG_MISSING_FILL_CONSTANT : CG_MISSING_FILL_MEAN;
        expect_error("a,c,y\n1,,0\n,red,\n5,3,\n", &o, CG_STATUS_PARSE_ERROR,
                     "data.csv: column 2 (\"c\") has no values in the rows kept");
    }
}

/* Found by fuzz_csv: a file read again with its own layout as `like` (what
 * clgrad-eval does) failed when the class column's first value looked like
 * a number ("10", later "z"): the target was read as numeric. */
static void test_like_class_target(void **state)
{
    struct cg_csv_options o = cg_csv_options_default();
    o.target = "y";
    o.task = CG_TASK_CLASSIFICATION;
    static const char text[] = "a,y\n1,10\n2,1\n3,z\n4,1\n";
    struct cg_table *t, *like, *t2;
    assert_int_equal(parse(text, &o, &t), CG_OK);
    assert_int_equal(t->task, CG_TASK_CLASSIFICATION);
    char *layout;
    assert_int_equal(cg_table_layout_format(t, &layout), CG_OK);
    assert_int_equal(cg_table_layout_parse(layout, &like), CG_OK);
    free(layout);
    struct cg_csv_options lo = cg_csv_options_default();
    lo.like = like;
    assert_int_equal(parse(text, &lo, &t2), CG_OK);
    assert_int_equal(cg_table_conform(t2, like), CG_OK);
    assert_int_equal(t2->n_rows, t->n_rows);
    assert_memory_equal(t2->values, t->values, (size_t)(t->n_rows * t->n_cols) * sizeof(float));
    cg_table_free(t2);
    cg_table_free(like);
    cg_table_free(t);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_streaming_random),
        cmocka_unit_test(test_number_formats),
        cmocka_unit_test(test_quotes_bom_crlf),
        cmocka_unit_test(test_delimiters),
        cmocka_unit_test(test_classification_labels),
        cmocka_unit_test(test_categorical_features),
        cmocka_unit_test(test_missing_policies),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_header_only),
        cmocka_unit_test(test_ragged_rows),
        cmocka_unit_test(test_non_numeric_cell),
        cmocka_unit_test(test_missing_target_column),
        cmocka_unit_test(test_non_finite_cells),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_fill_without_categories),
        cmocka_unit_test(test_like_class_target),
        cmocka_unit_test(test_wide_row),
        cmocka_unit_test(test_unterminated_quote),
        cmocka_unit_test(test_other_malformed),
        cmocka_unit_test(test_conform_layout),
        cmocka_unit_test(test_layout_text),
        cmocka_unit_test(test_counts_line),
        cmocka_unit_test(test_no_header),
        cmocka_unit_test(test_target_by_number_and_last),
        cmocka_unit_test(test_drop_and_features),
        cmocka_unit_test(test_date_column),
        cmocka_unit_test(test_id_column),
        cmocka_unit_test(test_integer_labels),
        cmocka_unit_test(test_one_class),
        cmocka_unit_test(test_split_deterministic),
        cmocka_unit_test(test_read_like),
        cmocka_unit_test(test_gzip),
        cmocka_unit_test(test_locale),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("csv", tests, group_setup, group_teardown);
}
