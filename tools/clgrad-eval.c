/*
 * clgrad-eval — evaluate a checkpoint on a data set and write predictions.
 *
 *   clgrad-eval --checkpoint run/best.safetensors --data fashion-mnist
 *   clgrad-eval --checkpoint houses.safetensors --data test.csv --target price \
 *               --predictions preds.csv
 *
 * The model is rebuilt from the checkpoint's metadata (clgrad.model_spec and
 * clgrad.input_shape, written by clgrad-train; --model supplies a spec for
 * files from elsewhere, e.g. PyTorch), its weights loaded by name, and the
 * checkpoint's preprocessing (the feature scaler fitted on the training
 * split) applied to the data before evaluation.
 *
 * Classification prints the mean cross-entropy (or BCE for a one-logit
 * model), accuracy, a per-class precision / recall / F1 table and the
 * confusion matrix; regression prints MSE, RMSE, MAE and R² (the
 * coefficient of determination, averaged over outputs as
 * sklearn.metrics.r2_score's "uniform_average"). All metrics are computed on
 * the host in double precision from the model's outputs.
 *
 * Errors are one line on stderr and exit status 1 (2 for usage errors).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <clgrad/clgrad.h>

#include "cli.h"

#define FASHION_DIR CLI_FASHION_DIR

struct options {
    const char *checkpoint, *data, *model, *predictions, *backend, *device;
    struct cli_csv csv;   /* unset format options: the checkpoint's */
    bool split_test;      /* --split test */
    int64_t batch;
    int max_matrix;    /* widest confusion matrix printed */
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: clgrad-eval --checkpoint FILE --data SOURCE [OPTION]...\n"
        "\n"
        "Loads a checkpoint, evaluates it on a data set and prints loss and accuracy,\n"
        "a per-class precision/recall table and the confusion matrix (classification)\n"
        "or MSE, RMSE, MAE and R^2 (regression).\n"
        "\n"
        "  --checkpoint FILE    a .safetensors checkpoint (from clgrad-train --save)\n"
        "  --data SOURCE        fashion-mnist (" FASHION_DIR "), an IDX folder\n"
        "                       (its t10k-* test files if present, else train-*), or\n"
        "                       a CSV file (.csv or .csv.gz)\n"
        "  --split WHICH        CSV: all (default: every row of the file) or test (the\n"
        "                       rows clgrad-train held out with --test-split, found\n"
        "                       again from the seed and fraction it recorded)\n"
        "CSV files are read as the training file was: the checkpoint records the\n"
        "target, task, columns and categories, and the file format (--skip-rows,\n"
        "--no-header, --delimiter, --missing), so none of these is needed; given,\n"
        "they override it.\n"
        CLI_HELP_CSV
        "  --model SPEC         the model spec, when the checkpoint does not store one\n"
        "                       (e.g. a file written by PyTorch)\n"
        "  --predictions FILE   write one CSV row per sample. Classification:\n"
        "                         index,target,predicted,probability\n"
        "                       (class names where the checkpoint has them; the\n"
        "                       probability of the predicted class). Regression:\n"
        "                         index,target,prediction  (one target), or\n"
        "                         index,target_0..target_K-1,prediction_0..prediction_K-1\n"
        "                       in the target's own units. index counts the evaluated\n"
        "                       rows from 0 (with --split test: the held-out rows in\n"
        "                       file order).\n"
        "  -b, --batch N        evaluation batch size (default 256)\n"
        CLI_HELP_DEVICE
        CLI_HELP_COMMON);
}

enum { OPT_CHECKPOINT = CLI_OPT_TOOL, OPT_DATA, OPT_MODEL, OPT_PREDICTIONS, OPT_SPLIT };

static const struct option long_options[] = {
    CLI_OPTIONS_COMMON,
    CLI_OPTIONS_DEVICE,
    CLI_OPTIONS_CSV,
    {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
    {"data", required_argument, NULL, OPT_DATA},
    {"split", required_argument, NULL, OPT_SPLIT},
    {"model", required_argument, NULL, OPT_MODEL},
    {"predictions", required_argument, NULL, OPT_PREDICTIONS},
    {"batch", required_argument, NULL, 'b'},
    {NULL, 0, NULL, 0},
};

static void parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.csv = CLI_CSV_DEFAULT, .batch = 256, .max_matrix = 30};
    int c;
    while ((c = cli_getopt(argc, argv, "hb:t:", long_options)) != -1) {
        const char *v = optarg;
        switch (c) {
        case 'h': usage(stdout); exit(0);
        case CLI_OPT_VERSION: cli_version(cg_version());
        case CLI_OPT_BACKEND: o->backend = v; break;
        case CLI_OPT_DEVICE: o->device = v; break;
        case 't': cli_threads(v); break;
        case OPT_CHECKPOINT: o->checkpoint = v; break;
        case OPT_DATA: o->data = v; break;
        case OPT_MODEL: o->model = v; break;
        case OPT_PREDICTIONS: o->predictions = v; break;
        case OPT_SPLIT:
            if (strcmp(v, "all") != 0 && strcmp(v, "test") != 0)
                cli_usage_error("option '--split': '%s' is not all or test", v);
            o->split_test = strcmp(v, "test") == 0;
            break;
        case 'b': o->batch = cli_int(cli_optname(), v, 1, 1 << 24); break;
        default: cli_csv_option(c, v, &o->csv); break;
        }
    }
    if (!o->checkpoint) cli_usage_error("option '--checkpoint' is required");
    if (!o->data) cli_usage_error("option '--data' is required");
}

/* ---- data ------------------------------------------------------------ */

/* The folder's t10k-* files if present, else train-*; *what names them
 * (malloc'ed). */
static struct cg_dataset *load_idx_dir(const char *dir, char **what)
{
    char *probe = cli_idx_path(dir, "t10k-images-idx3-ubyte");
    const char *set = access(probe, R_OK) == 0 ? "t10k" : "train";
    free(probe);
    char *img = cli_strf("%s-images-idx3-ubyte", set), *lab = cli_strf("%s-labels-idx1-ubyte", set);
    char *ip = cli_idx_path(dir, img), *lp = cli_idx_path(dir, lab);
    struct cg_dataset *ds;
    if (cg_idx_load_pair(ip, lp, true, &ds) != CG_OK) cli_die("%s", cg_last_error(NULL));
    free(img);
    free(lab);
    free(ip);
    free(lp);
    *what = cli_strf("%s (%s set)", dir, set);
    return ds;
}

static const char *meta(const struct cg_checkpoint_extra *ex, const char *key)
{
    for (int i = 0; i < ex->n_meta; i++)
        if (strcmp(ex->meta[i].key, key) == 0) return ex->meta[i].value;
    return NULL;
}

/* A CSV read as the training file was (the checkpoint's layout: target,
 * task, columns, categories; and its format options where not given),
 * then, with --split test, only the rows clgrad-train held out. */
static struct cg_dataset *load_csv(const struct options *o, const struct cg_checkpoint_extra *ex)
{
    struct cli_csv c = o->csv;
    const char *v;
    if (!c.skip_rows_given && (v = meta(ex, CLI_SKIP_ROWS_KEY))) c.skip_rows = atoi(v);
    if (!c.no_header_given && (v = meta(ex, CLI_NO_HEADER_KEY))) c.no_header = atoi(v) != 0;
    if (!c.delimiter_given && (v = meta(ex, CLI_DELIMITER_KEY)) && strlen(v) == 1)
        c.delimiter = v[0];
    if (!c.missing_given && (v = meta(ex, CLI_MISSING_KEY))) c.missing = v;
    if (!c.task_given && ex->task != CG_TASK_AUTO) c.task = ex->task;
    struct cg_table *like = NULL;
    const char *layout = meta(ex, CLI_LAYOUT_KEY);
    if (layout && cg_table_layout_parse(layout, &like) != CG_OK)
        cli_die("%s: the column layout: %s", o->checkpoint, cg_last_error(NULL));
    struct cg_table *tab = cli_csv_read(o->data, &c, like);
    cg_table_free(like);
    if (o->split_test) {
        const char *f = meta(ex, CLI_TEST_SPLIT_KEY), *s = meta(ex, CLI_SEED_KEY);
        double fraction = f ? strtod(f, NULL) : 0;
        if (!(fraction > 0) || !s)
            cli_die("%s records no held-out test rows (trained with --test-split 0, or not "
                    "by clgrad-train from a CSV): --split test needs them", o->checkpoint);
        struct cg_table *rest, *test;
        if (cg_table_split(tab, fraction, strtoull(s, NULL, 10), &rest, &test) != CG_OK)
            cli_die("%s: %s", o->data, cg_last_error(NULL));
        cg_table_free(tab);
        cg_table_free(rest);
        tab = test;
    }
    struct cg_dataset *ds = cli_table_dataset(tab, o->data);
    cg_table_free(tab);
    return ds;
}

/* The data set's class indices renumbered to the checkpoint's classes (a
 * CSV's categories are sorted per file, so a test file with fewer classes
 * numbers them differently). */
static void map_classes(struct cg_dataset *ds, const struct cg_checkpoint_extra *ex)
{
    if (!ds->class_names || !ex->class_names) return;
    int *map = malloc((size_t)ds->n_classes * sizeof *map);
    if (!map) cli_die("out of memory");
    for (int c = 0; c < ds->n_classes; c++) {
        map[c] = -1;
        for (int k = 0; k < ex->n_classes; k++)
            if (strcmp(ds->class_names[c], ex->class_names[k]) == 0) map[c] = k;
        if (map[c] < 0)
            cli_die("class \"%s\" in the data is not one of the checkpoint's %d classes",
                ds->class_names[c], ex->n_classes);
    }
    for (int64_t i = 0; i < ds->n; i++) ds->y[i] = (float)map[(int)ds->y[i]];
    free(map);
}

/* ---- metrics --------------------------------------------------------- */

struct results {
    bool classification, bce;
    int64_t k;                 /* model outputs                          */
    int n_classes;             /* rows / columns of the confusion matrix */
    int64_t n;
    double loss_sum;
    int64_t *confusion;        /* (n_classes, n_classes): [true][pred]   */
    /* regression, per output j: sums for MAE, MSE and R^2 */
    double *abs_err, *sq_err, *y_sum, *y_sq;
};

/* Cross-entropy of one row of logits (k) against class y, stably:
 * logsumexp(z) - z_y (PyTorch's CrossEntropyLoss, reduction 'none'). */
static double ce_row(const float *z, int64_t k, int y, int *pred, double *prob)
{
    double mx = z[0];
    int arg = 0;
    for (int64_t j = 1; j < k; j++)
        if (z[j] > mx) mx = z[j], arg = (int)j;
    double s = 0;
    for (int64_t j = 0; j < k; j++) s += exp((double)z[j] - mx);
    *pred = arg;
    *prob = 1.0 / s;
    return mx + log(s) - (double)z[y];
}

static void write_csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_class(FILE *f, int c, const struct cg_checkpoint_extra *ex)
{
    if (ex->class_names && c >= 0 && c < ex->n_classes) write_csv_field(f, ex->class_names[c]);
    else fprintf(f, "%d", c);
}

/* Accumulates one batch: pred (b, k) and y (b) class indices or (b, d). */
static void accumulate(struct results *r, const float *pred, const float *y, int64_t b,
                       int64_t ydim, const struct cg_checkpoint_extra *ex, FILE *out)
{
    for (int64_t i = 0; i < b; i++, r->n++) {
        const float *z = pred + i * r->k;
        if (r->classification) {
            int t = (int)y[i], p;
            double prob, loss;
            if (t < 0 || t >= r->n_classes)
                cli_die("sample %lld has class %d, but the model has %d", (long long)r->n, t,
                    r->n_classes);
            if (r->bce) {   /* BCEWithLogits: max(x,0) - x*y + log(1 + exp(-|x|)) */
                double x = z[0];
                loss = fmax(x, 0) - x * t + log1p(exp(-fabs(x)));
                p = x > 0;
                prob = 1 / (1 + exp(-x));
                if (!p) prob = 1 - prob;
            } else {
                loss = ce_row(z, r->k, t, &p, &prob);
            }
            r->loss_sum += loss;
            r->confusion[(int64_t)t * r->n_classes + p]++;
            if (out) {
                fprintf(out, "%lld,", (long long)r->n);
                write_class(out, t, ex);
                fputc(',', out);
                write_class(out, p, ex);
                fprintf(out, ",%.6f\n", prob);
            }
        } else {
            const float *t = y + i * ydim;
            if (out) fprintf(out, "%lld", (long long)r->n);
            for (int64_t j = 0; j < r->k; j++) {
                double e = (double)z[j] - (double)t[j];
                r->abs_err[j] += fabs(e);
                r->sq_err[j] += e * e;
                r->y_sum[j] += t[j];
                r->y_sq[j] += (double)t[j] * t[j];
                r->loss_sum += e * e / (double)r->k;
            }
            if (out) {
                for (int64_t j = 0; j < r->k; j++) fprintf(out, ",%.9g", (double)t[j]);
                for (int64_t j = 0; j < r->k; j++) fprintf(out, ",%.9g", (double)z[j]);
                fputc('\n', out);
            }
        }
    }
}

/* "3 name" or "3" (malloc'ed). */
static char *class_label(int c, const struct cg_checkpoint_extra *ex)
{
    if (ex->class_names && c < ex->n_classes) return cli_strf("%d %s", c, ex->class_names[c]);
    return cli_strf("%d", c);
}

static void print_classification(const struct results *r, const struct cg_checkpoint_extra *ex,
                                 int max_matrix)
{
    int k = r->n_classes;
    int64_t correct = 0;
    for (int c = 0; c < k; c++) correct += r->confusion[(int64_t)c * k + c];
    printf("loss %.4f (%s)  accuracy %.2f%% (%lld/%lld)\n\n", r->loss_sum / (double)r->n,
           r->bce ? "binary cross-entropy" : "cross-entropy",
           100.0 * (double)correct / (double)r->n, (long long)correct, (long long)r->n);
    /* the class column is as wide as the longest label: names are never cut */
    int w = 9;
    for (int c = 0; c < k; c++) {
        char *name = class_label(c, ex);
        if ((int)strlen(name) > w) w = (int)strlen(name);
        free(name);
    }
    printf("%-*s %9s %9s %9s %9s\n", w, "class", "precision", "recall", "f1", "support");
    double mp = 0, mr = 0, mf = 0;
    for (int c = 0; c < k; c++) {
        int64_t tp = r->confusion[(int64_t)c * k + c], row = 0, col = 0;
        for (int j = 0; j < k; j++) {
            row += r->confusion[(int64_t)c * k + j];
            col += r->confusion[(int64_t)j * k + c];
        }
        /* sklearn's convention: an undefined ratio (0/0) counts as 0. */
        double p = col ? (double)tp / (double)col : 0, rc = row ? (double)tp / (double)row : 0;
        double f1 = p + rc > 0 ? 2 * p * rc / (p + rc) : 0;
        mp += p, mr += rc, mf += f1;
        char *name = class_label(c, ex);
        printf("%-*s %9.4f %9.4f %9.4f %9lld\n", w, name, p, rc, f1, (long long)row);
        free(name);
    }
    printf("%-*s %9.4f %9.4f %9.4f %9lld\n\n", w, "macro avg", mp / k, mr / k, mf / k,
           (long long)r->n);
    if (k > max_matrix) {
        printf("(confusion matrix of %d classes not shown; use --predictions)\n", k);
        return;
    }
    printf("confusion matrix (rows: true class, columns: predicted class)\n%8s", "");
    for (int j = 0; j < k; j++) printf(" %6d", j);
    printf("\n");
    for (int c = 0; c < k; c++) {
        printf("%8d", c);
        for (int j = 0; j < k; j++) printf(" %6lld", (long long)r->confusion[(int64_t)c * k + j]);
        printf("\n");
    }
}

static void print_regression(const struct results *r)
{
    double mse = 0, mae = 0, r2 = 0;
    double n = (double)r->n;
    for (int64_t j = 0; j < r->k; j++) {
        mse += r->sq_err[j] / n;
        mae += r->abs_err[j] / n;
        double ss_tot = r->y_sq[j] - r->y_sum[j] * r->y_sum[j] / n;
        /* sklearn: a constant target gives R^2 1 if predicted exactly, else 0 */
        r2 += ss_tot > 0 ? 1 - r->sq_err[j] / ss_tot : (r->sq_err[j] == 0 ? 1 : 0);
    }
    mse /= (double)r->k;
    mae /= (double)r->k;
    r2 /= (double)r->k;
    printf("loss (MSE) %.6g  RMSE %.6g  MAE %.6g  R^2 %.4f  (%lld samples", mse, sqrt(mse), mae,
           r2, (long long)r->n);
    if (r->k > 1) printf(", %lld outputs averaged", (long long)r->k);
    printf(")\n");
}

/* ---- main ------------------------------------------------------------ */

int main(int argc, char **argv)
{
    cli_prog = "clgrad-eval";
    struct options o;
    parse_args(argc, argv, &o);
    struct cg_checkpoint_extra ex;
    if (cg_checkpoint_read_extra(o.checkpoint, &ex) != CG_OK) cli_die("%s", cg_last_error(NULL));
    const char *spec = o.model ? o.model : ex.model_spec;
    if (!spec)
        cli_die("%s stores no model spec (clgrad.model_spec); give one with --model", o.checkpoint);

    char *source;
    struct cg_dataset *ds;
    if (strcmp(o.data, "fashion-mnist") == 0 || cli_is_dir(o.data)) {
        const char *dir = strcmp(o.data, "fashion-mnist") == 0 ? FASHION_DIR : o.data;
        if (!cli_is_dir(dir)) cli_die("%s not found: install Debian's dataset-fashion-mnist package", dir);
        if (o.split_test)
            cli_usage_error("option '--split test' is for CSV files; an IDX folder's test set "
                            "is its t10k files");
        ds = load_idx_dir(dir, &source);
    } else {
        ds = load_csv(&o, &ex);
        source = cli_strf("%s%s", o.data, o.split_test ? " (its held-out test rows)" : "");
    }
    if (!ds->y) cli_die("%s has no targets to evaluate against", source);
    bool classification = ds->n_classes > 0 && ds->y_dim == 0;
    if (ex.task == CG_TASK_CLASSIFICATION && !classification)
        cli_die("the checkpoint is a classifier but %s has a numeric target", source);
    if (ex.task == CG_TASK_REGRESSION && classification)
        cli_die("the checkpoint is a regression model but %s has class labels", source);
    if (classification) map_classes(ds, &ex);

    /* The checkpoint's preprocessing, then its input shape. */
    if (ex.scaler && cg_scaler_apply(ex.scaler, ds) != CG_OK)
        cli_die("applying the checkpoint's scaler: %s", cg_last_error(NULL));
    if (ex.input_ndim > 0) {
        if (cg_dataset_reshape(ds, ex.input_ndim, ex.input_shape) != CG_OK)
            cli_die("the data does not fit the model's input: %s", cg_last_error(NULL));
    } else {
        const char *first = spec + strspn(spec, " ");
        if (strncmp(first, "linear", 6) == 0 && ds->sample_ndim > 1 &&
            cg_dataset_reshape(ds, 1, &ds->sample_numel) != CG_OK)
            cli_die("%s", cg_last_error(NULL));
    }

    cg_ctx *ctx;
    struct cg_ctx_options co = {.backend = o.backend, .device = o.device, .seed = 0};
    if (cg_ctx_create(&ctx, &co) != CG_OK) cli_die("%s", cg_last_error(NULL));
    int out_ndim;
    int64_t out_shape[CG_MAX_DIMS];
    cg_module *model = cg_model_from_spec(ctx, spec, ds->sample_ndim, ds->sample_shape, &out_ndim,
                                          out_shape);
    if (!model) cli_die("%s", cg_last_error(ctx));
    if (cg_checkpoint_load(o.checkpoint, model, NULL, NULL) != CG_OK) cli_die("%s", cg_last_error(ctx));
    if (out_ndim != 1) cli_die("the model's output per sample has %d dims; expected 1", out_ndim);

    struct results r = {.classification = classification, .k = out_shape[0]};
    if (classification) {
        r.bce = r.k == 1;
        int64_t classes = r.bce ? 2 : r.k;
        if (ex.n_classes > 0 && classes != ex.n_classes)
            cli_die("the model has %lld outputs for %d classes", (long long)r.k, ex.n_classes);
        if (classes > 100000) cli_die("%lld classes: too many", (long long)classes);
        r.n_classes = (int)classes;
        r.confusion = calloc((size_t)(classes * classes), sizeof *r.confusion);
        if (!r.confusion) cli_die("out of memory");
    } else {
        if (r.k != ds->y_dim)
            cli_die("the model predicts %lld values per sample, the data has %lld targets",
                (long long)r.k, (long long)ds->y_dim);
        r.abs_err = calloc((size_t)r.k, sizeof(double));
        r.sq_err = calloc((size_t)r.k, sizeof(double));
        r.y_sum = calloc((size_t)r.k, sizeof(double));
        r.y_sq = calloc((size_t)r.k, sizeof(double));
        if (!r.abs_err || !r.sq_err || !r.y_sum || !r.y_sq) cli_die("out of memory");
    }

    FILE *out = NULL;
    if (o.predictions) {
        out = fopen(o.predictions, "w");
        if (!out) cli_die("%s: %s", o.predictions, strerror(errno));
        if (classification) fprintf(out, "index,target,predicted,probability\n");
        else {
            fprintf(out, "index");
            for (int64_t j = 0; j < r.k; j++) fprintf(out, r.k > 1 ? ",target_%lld" : ",target", (long long)j);
            for (int64_t j = 0; j < r.k; j++) fprintf(out, r.k > 1 ? ",prediction_%lld" : ",prediction", (long long)j);
            fputc('\n', out);
        }
    }

    printf("clgrad-eval: %s on %s: %lld samples; %s", o.checkpoint, source, (long long)ds->n,
           classification ? "classification" : "regression");
    if (ex.epoch >= 0) printf(", after %lld epochs", (long long)ex.epoch);
    printf("; %s on %s\n", cg_ctx_backend_name(ctx), cg_ctx_device(ctx)->name);

    cg_loader *ld;
    struct cg_loader_options lo = {.batch_size = o.batch};
    if (cg_loader_create(ctx, ds, &lo, &ld) != CG_OK) cli_die("%s", cg_last_error(ctx));
    cg_module_eval(model);
    cg_set_grad_enabled(ctx, false);
    int64_t ydim = ds->y_dim ? ds->y_dim : 1;
    float *hp = malloc((size_t)(o.batch * r.k) * sizeof *hp);
    float *hy = malloc((size_t)(o.batch * ydim) * sizeof *hy);
    if (!hp || !hy) cli_die("out of memory");
    cg_tensor *x, *y;
    cg_status st;
    while ((st = cg_loader_next(ld, &x, &y)) == CG_OK && x) {
        cg_scope_begin(ctx);
        int64_t b = cg_tensor_dim(x, 0);
        cg_tensor *pred = cg_module_forward(model, x);
        if (!pred || cg_tensor_to_host(pred, hp, b * r.k) != CG_OK ||
            cg_tensor_to_host(y, hy, b * ydim) != CG_OK)
            cli_die("evaluation: %s", cg_last_error(ctx));
        cg_scope_end(ctx);
        if (!classification && ex.target_scaler &&
            cg_scaler_inverse_data(ex.target_scaler, hp, b, r.k) != CG_OK)
            cli_die("%s", cg_last_error(NULL));
        accumulate(&r, hp, hy, b, ydim, &ex, out);
    }
    if (st != CG_OK) cli_die("%s", cg_last_error(ctx));
    if (out && (fflush(out) != 0 || ferror(out) || fclose(out) != 0))
        cli_die("%s: write failed: %s", o.predictions, strerror(errno));

    if (classification) print_classification(&r, &ex, o.max_matrix);
    else print_regression(&r);
    if (o.predictions) printf("predictions written to %s\n", o.predictions);

    free(hp);
    free(hy);
    free(r.confusion);
    free(r.abs_err);
    free(r.sq_err);
    free(r.y_sum);
    free(r.y_sq);
    cg_loader_free(ld);
    cg_module_free(model);
    cg_ctx_free(ctx);
    cg_dataset_free(ds);
    free(source);
    cg_checkpoint_extra_clear(&ex);
    return 0;
}
