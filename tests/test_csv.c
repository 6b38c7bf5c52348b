/*
 * tests/test_csv.c — the CSV reader: the grammar (quotes, delimiters, CRLF,
 * BOM, blank lines), column kinds and target handling, missing-value
 * policies, streaming across buffer boundaries, and every malformed input
 * of issue 4 with the file:line:column its message must name.
 */
#include "harness.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

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
    assert_int_equal(parse("a\tb b\n1.5\t2\n\t\t\n", &o, &t), CG_STATUS_PARSE_ERROR);
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
    expect_error(text, &o, CG_STATUS_PARSE_ERROR,
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
    th_assert_error_contains(NULL, "data.csv:1:1: the column name is not valid UTF-8 text (byte 0x00 at byte 2");
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
        cmocka_unit_test(test_wide_row),
        cmocka_unit_test(test_unterminated_quote),
        cmocka_unit_test(test_other_malformed),
        cmocka_unit_test(test_conform_layout),
        cmocka_unit_test(test_layout_text),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("csv", tests, group_setup, group_teardown);
}
