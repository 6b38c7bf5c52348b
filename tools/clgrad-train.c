/*
 * clgrad-train — train a model from the command line on a CSV file or on
 * Fashion-MNIST (IDX), on whichever backend CLGRAD_BACKEND / --backend picks.
 *
 *   clgrad-train --data fashion-mnist --epochs 10
 *   clgrad-train --data houses.csv --target price --model "linear 64 relu, linear 1"
 *
 * Each epoch prints train loss, validation loss and accuracy (classification)
 * or RMSE (regression), samples per second and the backend and device; on a
 * terminal a progress bar with an ETA shows progress within the epoch.
 * Every error (bad option, malformed file, a model that does not fit the
 * data) is one line on stderr and exit status 1 (2 for usage errors).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <clgrad/clgrad.h>

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

struct options {
    const char *data, *target, *model, *loss, *optim, *backend, *device, *scale, *missing;
    char delimiter;
    enum cg_task task;
    float lr, momentum, weight_decay, label_smoothing;
    int64_t batch;
    int epochs;
    uint64_t seed;
    double val_split;
    int progress; /* -1 auto (a terminal), 0 off, 1 on */
    bool quiet;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: clgrad-train --data SOURCE [options]\n"
        "\n"
        "Trains a model and prints, per epoch, train loss, validation loss and\n"
        "accuracy (classification) or RMSE (regression), samples/s and the device.\n"
        "\n"
        "data:\n"
        "  --data SOURCE        fashion-mnist (Debian's dataset-fashion-mnist, in\n"
        "                       " FASHION_DIR "), a folder holding\n"
        "                       {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz],\n"
        "                       or a CSV file with a header row\n"
        "  --target COLUMN      CSV: the column to predict (required for CSV)\n"
        "  --task KIND          CSV: auto (default: classification when the target is\n"
        "                       not numeric), regression or classification\n"
        "  --delimiter C        CSV: field separator (default ','; 'tab' for a tab)\n"
        "  --missing POLICY     CSV: error (default), drop, mean or zero\n"
        "  --scale KIND         CSV features: standard (default), minmax or none;\n"
        "                       fitted on the training split only\n"
        "  --val-split F        fraction held out for validation (default 0.1)\n"
        "\n"
        "model and training:\n"
        "  --model SPEC         layers, comma-separated (default for fashion-mnist:\n"
        "                       \"linear 256 relu, linear 128 relu, linear 10\"; for CSV:\n"
        "                       \"linear 64 relu, linear 64 relu, linear K\", K the\n"
        "                       number of outputs). Kinds: linear N, flatten, and the\n"
        "                       activations relu, sigmoid, tanh, gelu, softmax, which\n"
        "                       may also follow a layer (\"linear 256 relu\"). A model\n"
        "                       that starts with linear gets flat samples.\n"
        "  --loss NAME          auto (default: cross-entropy for classification, mse\n"
        "                       for regression), cross-entropy, mse, bce (two classes,\n"
        "                       one output)\n"
        "  --label-smoothing F  cross-entropy label smoothing (default 0)\n"
        "  --optim NAME         adam (default), adamw, sgd, rmsprop\n"
        "  --lr F               learning rate (default 1e-3)\n"
        "  --momentum F         sgd / rmsprop momentum (default 0)\n"
        "  --weight-decay F     weight decay (default 0; adamw 1e-2)\n"
        "  --batch N            mini-batch size (default 64)\n"
        "  --epochs N           epochs (default 10)\n"
        "  --seed N             seed for initialisation, split and shuffling (default 0)\n"
        "\n"
        "device and output:\n"
        "  --backend NAME       cpu, opencl or auto (default: $CLGRAD_BACKEND or auto)\n"
        "  --device D           device index or name substring (default: $CLGRAD_DEVICE)\n"
        "  --progress / --no-progress   force the progress bar on or off (default:\n"
        "                       on when stderr is a terminal)\n"
        "  --quiet              only the final result\n"
        "  -h, --help           this text\n");
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "clgrad-train: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "clgrad-train: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    exit(2);
}

static double parse_double(const char *opt, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !(d >= lo && d <= hi))
        usage_error("%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    return d;
}

static int64_t parse_int(const char *opt, const char *v, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || n < lo || n > hi)
        usage_error("%s: '%s' is not an integer in [%lld, %lld]", opt, v, (long long)lo,
                    (long long)hi);
    return n;
}

static void parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.loss = "auto", .optim = "adam", .scale = "standard",
                          .missing = "error", .delimiter = ',', .task = CG_TASK_AUTO,
                          .lr = 1e-3f, .weight_decay = -1, .batch = 64, .epochs = 10,
                          .val_split = 0.1, .progress = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--progress") == 0) { o->progress = 1; continue; }
        if (strcmp(a, "--no-progress") == 0) { o->progress = 0; continue; }
        if (strcmp(a, "--quiet") == 0) { o->quiet = true; continue; }
        if (strncmp(a, "--", 2) != 0) usage_error("unexpected argument '%s'", a);
        if (i + 1 >= argc) usage_error("%s needs a value", a);
        const char *v = argv[++i];
        if (strcmp(a, "--data") == 0) o->data = v;
        else if (strcmp(a, "--target") == 0) o->target = v;
        else if (strcmp(a, "--model") == 0) o->model = v;
        else if (strcmp(a, "--loss") == 0) o->loss = v;
        else if (strcmp(a, "--optim") == 0) o->optim = v;
        else if (strcmp(a, "--backend") == 0) o->backend = v;
        else if (strcmp(a, "--device") == 0) o->device = v;
        else if (strcmp(a, "--scale") == 0) o->scale = v;
        else if (strcmp(a, "--missing") == 0) o->missing = v;
        else if (strcmp(a, "--lr") == 0) o->lr = (float)parse_double(a, v, 0, 1e3);
        else if (strcmp(a, "--momentum") == 0) o->momentum = (float)parse_double(a, v, 0, 1);
        else if (strcmp(a, "--weight-decay") == 0) o->weight_decay = (float)parse_double(a, v, 0, 1e3);
        else if (strcmp(a, "--label-smoothing") == 0) o->label_smoothing = (float)parse_double(a, v, 0, 1);
        else if (strcmp(a, "--batch") == 0) o->batch = parse_int(a, v, 1, 1 << 24);
        else if (strcmp(a, "--epochs") == 0) o->epochs = (int)parse_int(a, v, 1, 1000000);
        else if (strcmp(a, "--seed") == 0) o->seed = (uint64_t)parse_int(a, v, 0, INT64_MAX);
        else if (strcmp(a, "--val-split") == 0) o->val_split = parse_double(a, v, 0, 0.9);
        else if (strcmp(a, "--delimiter") == 0) {
            if (strcmp(v, "tab") == 0 || strcmp(v, "\\t") == 0) o->delimiter = '\t';
            else if (strlen(v) == 1 && v[0] != '"' && v[0] != '\n') o->delimiter = v[0];
            else usage_error("--delimiter: '%s' is not one character", v);
        } else if (strcmp(a, "--task") == 0) {
            if (strcmp(v, "auto") == 0) o->task = CG_TASK_AUTO;
            else if (strcmp(v, "regression") == 0) o->task = CG_TASK_REGRESSION;
            else if (strcmp(v, "classification") == 0) o->task = CG_TASK_CLASSIFICATION;
            else usage_error("--task: '%s' is not auto, regression or classification", v);
        } else usage_error("unknown option '%s'", a);
    }
    if (!o->data) usage_error("--data is required");
}

/* ---- data ------------------------------------------------------------ */

struct data {
    struct cg_dataset *train, *val, *test;
    bool classification;
    int64_t outputs;          /* classes, or regression targets per sample */
    char source[512];
};

static bool is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* dir/name.gz if it exists, else dir/name. */
static void idx_path(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s.gz", dir, name);
    if (access(buf, R_OK) != 0) snprintf(buf, len, "%s/%s", dir, name);
}

static void load_idx_dir(const struct options *o, const char *dir, struct data *d)
{
    char img[1024], lab[1024];
    struct cg_dataset *all;
    idx_path(img, sizeof img, dir, "train-images-idx3-ubyte");
    idx_path(lab, sizeof lab, dir, "train-labels-idx1-ubyte");
    if (cg_idx_load_pair(img, lab, true, &all) != CG_OK) die("%s", cg_last_error(NULL));
    idx_path(img, sizeof img, dir, "t10k-images-idx3-ubyte");
    idx_path(lab, sizeof lab, dir, "t10k-labels-idx1-ubyte");
    if (access(img, R_OK) == 0 && cg_idx_load_pair(img, lab, true, &d->test) != CG_OK)
        die("%s", cg_last_error(NULL));
    if (cg_dataset_split(all, o->val_split, o->seed, &d->train, &d->val) != CG_OK)
        die("%s", cg_last_error(NULL));
    cg_dataset_free(all);
    d->classification = true;
    d->outputs = d->train->n_classes;
    if (d->test && d->test->n_classes > d->outputs) d->outputs = d->test->n_classes;
    snprintf(d->source, sizeof d->source, "%s", dir);
}

static void load_csv(const struct options *o, struct data *d)
{
    if (!o->target) usage_error("--target COLUMN is required with a CSV file");
    struct cg_csv_options co = cg_csv_options_default();
    co.delimiter = o->delimiter;
    co.target = o->target;
    co.task = o->task;
    if (strcmp(o->missing, "error") == 0) co.missing = CG_MISSING_ERROR;
    else if (strcmp(o->missing, "drop") == 0) co.missing = CG_MISSING_DROP;
    else if (strcmp(o->missing, "mean") == 0) co.missing = CG_MISSING_FILL_MEAN;
    else if (strcmp(o->missing, "zero") == 0) { co.missing = CG_MISSING_FILL_CONSTANT; co.fill_value = 0; }
    else usage_error("--missing: '%s' is not error, drop, mean or zero", o->missing);
    struct cg_table *tab;
    if (cg_csv_read(o->data, &co, &tab) != CG_OK) die("%s", cg_last_error(NULL));
    struct cg_dataset *all;
    cg_status st = cg_dataset_from_table(tab, &all);
    cg_table_free(tab);
    if (st != CG_OK) die("%s", cg_last_error(NULL));
    if (all->n < 2) die("%s: only %lld usable rows", o->data, (long long)all->n);
    if (cg_dataset_split(all, o->val_split, o->seed, &d->train, &d->val) != CG_OK)
        die("%s", cg_last_error(NULL));
    cg_dataset_free(all);
    d->classification = d->train->n_classes > 0;
    d->outputs = d->classification ? d->train->n_classes : d->train->y_dim;
    if (strcmp(o->scale, "none") != 0) {
        enum cg_scaler_kind kind;
        if (strcmp(o->scale, "standard") == 0) kind = CG_SCALER_STANDARD;
        else if (strcmp(o->scale, "minmax") == 0) kind = CG_SCALER_MINMAX;
        else usage_error("--scale: '%s' is not standard, minmax or none", o->scale);
        struct cg_scaler *sc;
        if (cg_scaler_fit(d->train, kind, true, &sc) != CG_OK ||
            cg_scaler_apply(sc, d->train) != CG_OK ||
            (d->val && cg_scaler_apply(sc, d->val) != CG_OK))
            die("%s", cg_last_error(NULL));
        cg_scaler_free(sc);
    }
    snprintf(d->source, sizeof d->source, "%s", o->data);
}

static void load_data(const struct options *o, struct data *d)
{
    memset(d, 0, sizeof *d);
    if (strcmp(o->data, "fashion-mnist") == 0) {
        if (!is_dir(FASHION_DIR))
            die("%s not found: install Debian's dataset-fashion-mnist package "
                "(tools/setup.sh does)", FASHION_DIR);
        load_idx_dir(o, FASHION_DIR, d);
    } else if (is_dir(o->data)) {
        load_idx_dir(o, o->data, d);
    } else {
        load_csv(o, d);
    }
}

/* ---- metrics --------------------------------------------------------- */

struct metrics {
    double loss;       /* mean over samples */
    double accuracy;   /* classification    */
    double rmse;       /* regression        */
};

struct trainer {
    const struct options *o;
    cg_ctx *ctx;
    cg_module *model;
    cg_optim *opt;
    struct data *d;
    enum { LOSS_CE, LOSS_MSE, LOSS_BCE } loss;
};

/* The mean loss of a batch: pred (B, outputs), y (B) indices or (B, k). */
static cg_tensor *batch_loss(const struct trainer *t, cg_tensor *pred, cg_tensor *y)
{
    switch (t->loss) {
    case LOSS_CE:
        return cg_cross_entropy_loss(pred, y, CG_REDUCTION_MEAN, t->o->label_smoothing);
    case LOSS_BCE:
        return cg_bce_with_logits_loss(cg_flatten(pred, 0, -1), y, CG_REDUCTION_MEAN);
    default:
        return cg_mse_loss(pred, y, CG_REDUCTION_MEAN);
    }
}

/* Number of correct predictions in a batch, as a 0-d tensor. */
static cg_tensor *batch_correct(const struct trainer *t, cg_tensor *pred, cg_tensor *y)
{
    if (t->loss == LOSS_BCE)
        return cg_sum_all(cg_eq(cg_gt(cg_flatten(pred, 0, -1),
                                      cg_tensor_zeros(t->ctx, 0, NULL)), y));
    return cg_sum_all(cg_eq(cg_argmax(pred, 1, false), y));
}

static struct metrics evaluate(struct trainer *t, const struct cg_dataset *ds)
{
    struct metrics m = {0};
    cg_loader *ld;
    struct cg_loader_options lo = {.batch_size = t->o->batch > 256 ? t->o->batch : 256};
    if (cg_loader_create(t->ctx, ds, &lo, &ld) != CG_OK) die("%s", cg_last_error(t->ctx));
    cg_module_eval(t->model);
    bool grad = cg_set_grad_enabled(t->ctx, false);
    double loss_sum = 0, correct = 0;
    cg_tensor *x, *y;
    while (cg_loader_next(ld, &x, &y) == CG_OK && x) {
        cg_scope_begin(t->ctx);
        int64_t b = cg_tensor_dim(x, 0);
        cg_tensor *pred = cg_module_forward(t->model, x);
        float l = 0, c = 0;
        if (cg_tensor_item(batch_loss(t, pred, y), &l) != CG_OK ||
            (t->d->classification && cg_tensor_item(batch_correct(t, pred, y), &c) != CG_OK))
            die("evaluation: %s", cg_last_error(t->ctx));
        loss_sum += (double)l * (double)b;
        correct += c;
        cg_scope_end(t->ctx);
    }
    if (cg_ctx_status(t->ctx) != CG_OK) die("evaluation: %s", cg_last_error(t->ctx));
    cg_set_grad_enabled(t->ctx, grad);
    cg_module_train(t->model);
    cg_loader_free(ld);
    m.loss = loss_sum / (double)ds->n;
    m.accuracy = correct / (double)ds->n;
    /* MSE is mean over outputs; RMSE over every target value. */
    m.rmse = sqrt(m.loss);
    return m;
}

/* ---- progress -------------------------------------------------------- */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void progress_bar(int epoch, int epochs, int64_t done, int64_t total, double elapsed,
                         double loss)
{
    const int width = 30;
    int fill = total ? (int)((double)width * (double)done / (double)total) : width;
    double eta = done ? elapsed * (double)(total - done) / (double)done : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\repoch %d/%d [%s] %3d%% %lld/%lld  ETA %d:%02d  loss %.4f ", epoch, epochs,
            bar, total ? (int)(100 * done / total) : 100, (long long)done, (long long)total,
            (int)eta / 60, (int)eta % 60, loss);
    fflush(stderr);
}

/* ---- training -------------------------------------------------------- */

static cg_optim *make_optim(const struct options *o, cg_module *model)
{
    enum cg_optim_kind kind;
    bool decoupled = false;
    if (strcmp(o->optim, "adam") == 0) kind = CG_OPTIM_ADAM;
    else if (strcmp(o->optim, "adamw") == 0) { kind = CG_OPTIM_ADAM; decoupled = true; }
    else if (strcmp(o->optim, "sgd") == 0) kind = CG_OPTIM_SGD;
    else if (strcmp(o->optim, "rmsprop") == 0) kind = CG_OPTIM_RMSPROP;
    else usage_error("--optim: '%s' is not adam, adamw, sgd or rmsprop", o->optim);
    struct cg_optim_options oo = cg_optim_defaults(kind);
    oo.lr = o->lr;
    oo.decoupled_weight_decay = decoupled;
    if (decoupled) oo.weight_decay = 1e-2f; /* torch.optim.AdamW's default */
    if (o->weight_decay >= 0) oo.weight_decay = o->weight_decay;
    oo.momentum = o->momentum;
    return cg_optim_create(model, &oo);
}

static void pick_loss(struct trainer *t)
{
    const char *l = t->o->loss;
    const struct data *d = t->d;
    if (strcmp(l, "auto") == 0) l = d->classification ? "cross-entropy" : "mse";
    if (strcmp(l, "cross-entropy") == 0) {
        if (!d->classification) die("--loss cross-entropy needs class labels, but %s is a regression target", t->o->target ? t->o->target : "the target");
        t->loss = LOSS_CE;
    } else if (strcmp(l, "mse") == 0) {
        if (d->classification) die("--loss mse needs a numeric target; for class labels use cross-entropy");
        t->loss = LOSS_MSE;
    } else if (strcmp(l, "bce") == 0) {
        if (!d->classification || d->outputs != 2)
            die("--loss bce needs exactly two classes (it has %lld)", (long long)d->outputs);
        t->loss = LOSS_BCE;
    } else {
        usage_error("--loss: '%s' is not auto, cross-entropy, mse or bce", l);
    }
}

static cg_module *make_model(struct trainer *t)
{
    const struct options *o = t->o;
    struct data *d = t->d;
    int64_t want = t->loss == LOSS_BCE ? 1 : d->outputs;
    char spec[512];
    if (o->model) snprintf(spec, sizeof spec, "%s", o->model);
    else snprintf(spec, sizeof spec, "linear %d relu, linear %d relu, linear %lld",
                  d->test ? 256 : 64, d->test ? 128 : 64, (long long)want);
    /* A model that starts with a linear layer sees flat samples. */
    const char *first = spec + strspn(spec, " ");
    if (strncmp(first, "linear", 6) == 0 && d->train->sample_ndim > 1) {
        int64_t flat = d->train->sample_numel;
        if (cg_dataset_reshape(d->train, 1, &flat) != CG_OK ||
            (d->val && cg_dataset_reshape(d->val, 1, &flat) != CG_OK) ||
            (d->test && cg_dataset_reshape(d->test, 1, &flat) != CG_OK))
            die("%s", cg_last_error(NULL));
    }
    int out_ndim;
    int64_t out_shape[CG_MAX_DIMS];
    cg_module *m = cg_model_from_spec(t->ctx, spec, d->train->sample_ndim,
                                      d->train->sample_shape, &out_ndim, out_shape);
    if (!m) die("%s", cg_last_error(t->ctx));
    if (out_ndim != 1 || out_shape[0] != want) {
        cg_module_free(m);
        die("the model's output (%lld value%s per sample, from \"%s\") does not fit the data, "
            "which needs %lld (%s)", (long long)(out_ndim == 1 ? out_shape[0] : -1),
            out_ndim == 1 && out_shape[0] == 1 ? "" : "s", spec, (long long)want,
            t->loss == LOSS_BCE ? "one logit for bce"
            : d->classification ? "one per class" : "one per target");
    }
    return m;
}

static void print_metrics(const struct trainer *t, const char *what, struct metrics m)
{
    if (t->d->classification)
        printf("%s loss %.4f  %s acc %.2f%%", what, m.loss, what, 100 * m.accuracy);
    else
        printf("%s loss %.4f  %s RMSE %.4f", what, m.loss, what, m.rmse);
}

static void train(struct trainer *t)
{
    const struct options *o = t->o;
    cg_loader *ld;
    struct cg_loader_options lo = {.batch_size = o->batch, .shuffle = true};
    if (cg_loader_create(t->ctx, t->d->train, &lo, &ld) != CG_OK) die("%s", cg_last_error(t->ctx));
    bool bar = o->progress == 1 || (o->progress == -1 && isatty(STDERR_FILENO) && !o->quiet);
    /* The running loss is summed on the device and read only for display,
     * so the queue is not drained every step. */
    cg_tensor *loss_sum = cg_tensor_zeros(t->ctx, 0, NULL);
    for (int epoch = 1; epoch <= o->epochs; epoch++) {
        double t0 = now(), last_draw = 0;
        int64_t done = 0, total = t->d->train->n, steps = 0;
        cg_tensor_fill(loss_sum, 0);
        cg_tensor *x, *y;
        while (cg_loader_next(ld, &x, &y) == CG_OK && x) {
            cg_scope_begin(t->ctx);
            cg_tensor *loss = batch_loss(t, cg_module_forward(t->model, x), y);
            cg_optim_zero_grad(t->opt);
            cg_backward(loss);
            cg_optim_step(t->opt);
            bool grad = cg_set_grad_enabled(t->ctx, false);
            cg_tensor_copy(loss_sum, cg_add(loss_sum, loss));
            cg_set_grad_enabled(t->ctx, grad);
            cg_scope_end(t->ctx);
            if (cg_ctx_status(t->ctx) != CG_OK)
                die("epoch %d, step %lld: %s", epoch, (long long)steps + 1, cg_last_error(t->ctx));
            done += cg_tensor_dim(x, 0);
            steps++;
            if (bar && (now() - last_draw > 0.2 || done == total)) {
                float s = 0;
                cg_tensor_item(loss_sum, &s);
                progress_bar(epoch, o->epochs, done, total, now() - t0, s / (double)steps);
                last_draw = now();
            }
        }
        if (cg_ctx_status(t->ctx) != CG_OK) die("%s", cg_last_error(t->ctx));
        float s = 0;
        if (cg_tensor_item(loss_sum, &s) != CG_OK) die("%s", cg_last_error(t->ctx));
        double secs = now() - t0;
        if (bar) fprintf(stderr, "\r%*s\r", 100, "");
        if (o->quiet) continue;
        printf("epoch %2d/%d  train loss %.4f  ", epoch, o->epochs, s / (double)steps);
        if (t->d->val) {
            print_metrics(t, "val", evaluate(t, t->d->val));
            printf("  ");
        }
        printf("%.0f samples/s  [%s: %s]\n", (double)done / secs, cg_ctx_backend_name(t->ctx),
               cg_ctx_device(t->ctx)->name);
        fflush(stdout);
    }
    cg_tensor_free(loss_sum);
    cg_loader_free(ld);
}

int main(int argc, char **argv)
{
    struct options o;
    parse_args(argc, argv, &o);
    struct data d;
    load_data(&o, &d);

    struct cg_ctx_options co = {.backend = o.backend, .device = o.device, .seed = o.seed};
    struct trainer t = {.o = &o, .d = &d};
    if (cg_ctx_create(&t.ctx, &co) != CG_OK) die("%s", cg_last_error(NULL));
    pick_loss(&t);
    t.model = make_model(&t);
    t.opt = make_optim(&o, t.model);
    if (!t.opt) die("%s", cg_last_error(t.ctx));

    if (!o.quiet) {
        printf("clgrad-train: %s: %lld training, %lld validation, %lld test samples; %s, "
               "%lld parameters; %s on %s\n", d.source, (long long)d.train->n,
               (long long)(d.val ? d.val->n : 0), (long long)(d.test ? d.test->n : 0),
               d.classification ? "classification" : "regression",
               (long long)cg_module_numel(t.model), cg_ctx_backend_name(t.ctx),
               cg_ctx_device(t.ctx)->name);
        fflush(stdout);
    }
    double t0 = now();
    train(&t);
    double secs = now() - t0;

    const struct cg_dataset *final = d.test ? d.test : d.val;
    if (final) {
        struct metrics m = evaluate(&t, final);
        print_metrics(&t, d.test ? "test" : "val", m);
        printf("  (after %d epochs, %.1f s)\n", o.epochs, secs);
    }
    cg_optim_free(t.opt);
    cg_module_free(t.model);
    cg_ctx_free(t.ctx);
    cg_dataset_free(d.train);
    cg_dataset_free(d.val);
    cg_dataset_free(d.test);
    return 0;
}
