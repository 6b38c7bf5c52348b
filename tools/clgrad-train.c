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
 *
 * Under mpirun (mpirun -np N clgrad-train ...) it trains data-parallel
 * (include/clgrad/dist.h) with no new option: --batch stays the global
 * batch, each rank trains on its slice of it and evaluates its part of the
 * validation and test sets, metrics are summed over the ranks, and only
 * rank 0 prints, draws the bar and writes --log, --plot and checkpoints.
 * --resume loads on rank 0 and broadcasts. A rank that fails prints its
 * rank with the message and ends the whole job (MPI_Abort).
 * --shard-optimizer shards the optimizer state over the ranks (ZeRO-1,
 * cg_dist_shard_optimizer); checkpoints gather it to rank 0 first.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <clgrad/clgrad.h>

#include "cli.h"
#include "plot.h"

#define FASHION_DIR CLI_FASHION_DIR

struct options {
    const char *data, *model, *loss, *optim, *backend, *device, *scale;
    const char *scale_target;
    struct cli_csv csv;
    double test_split;        /* CSV: held-out test rows */
    float lr, momentum, weight_decay, label_smoothing;
    int64_t batch;
    int epochs;
    uint64_t seed;
    double val_split;
    int progress; /* -1 auto (a terminal), 0 off, 1 on */
    bool quiet;
    /* checkpoints, logs, schedules (issue 7) */
    const char *save, *save_best, *resume, *log, *plot, *schedule;
    const char *init, *save_weights;   /* fine-tuning and export (issue 19) */
    int save_every, step_size, early_stop;
    int64_t warmup;
    double gamma;
    float clip;
    bool shard_optimizer;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: clgrad-train --data SOURCE [OPTION]...\n"
        "\n"
        "Trains a model and prints, per epoch, train loss, validation loss and\n"
        "accuracy (classification) or RMSE (regression), samples/s and the device.\n"
        "\n"
        "data:\n"
        "  --data SOURCE        fashion-mnist (Debian's dataset-fashion-mnist, in\n"
        "                       " FASHION_DIR "), a folder holding\n"
        "                       {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz],\n"
        "                       or a CSV file (.csv or .csv.gz; --target required)\n"
        CLI_HELP_CSV
        "  --scale KIND         CSV features: standard (default), minmax or none;\n"
        "                       fitted on the training split only\n"
        "  --scale-target KIND  CSV regression targets: standard (default) or none;\n"
        "                       losses are then in standardized units, RMSE and the\n"
        "                       predictions of clgrad-eval in the target's own\n"
        "  --test-split F       CSV: fraction of rows held out as a test set, chosen by\n"
        "                       --seed, reported after training (default 0.1; 0 none;\n"
        "                       clgrad-eval --split test evaluates the same rows)\n"
        "  --val-split F        fraction of the other rows held out for validation\n"
        "                       (default 0.1)\n"
        "\n"
        "model and training:\n"
        "  --model SPEC         layers, comma-separated (default for fashion-mnist:\n"
        "                       \"linear 256 relu, linear 128 relu, linear 10\"; for CSV:\n"
        "                       \"linear 64 relu, linear 64 relu, linear K\", K the\n"
        "                       number of outputs). Kinds:\n"
        "                         linear N\n"
        "                         conv N K [stride S] [pad P] [dilation D] [groups G]\n"
        "                              [nobias]   (Conv2d, N channels, K x K kernel)\n"
        "                         maxpool K [stride S] [pad P] [dilation D]\n"
        "                         avgpool K [stride S] [pad P]   (stride default: K)\n"
        "                         gap (global average pooling), batchnorm\n"
        "                         (BatchNorm2d), dropout P, flatten, and the\n"
        "                         activations relu, sigmoid, tanh, gelu, softmax,\n"
        "                       which may also follow a layer (\"linear 256 relu\").\n"
        "                       Images are (C, H, W) samples (IDX: (1, 28, 28)); a\n"
        "                       model that starts with linear gets flat samples.\n"
        "                       A CNN for fashion-mnist: \"conv 32 3 pad 1 relu,\n"
        "                       maxpool 2, conv 64 3 pad 1 relu, maxpool 2, flatten,\n"
        "                       linear 128 relu, linear 10\"\n"
        "  --loss NAME          auto (default: cross-entropy for classification, mse\n"
        "                       for regression), cross-entropy, mse, bce (two classes,\n"
        "                       one output)\n"
        "  --label-smoothing F  cross-entropy label smoothing (default 0)\n"
        "  --optim NAME         adam (default), adamw, sgd, rmsprop\n"
        "  -l, --lr F           learning rate (default 1e-3)\n"
        "  --momentum F         sgd / rmsprop momentum (default 0)\n"
        "  --weight-decay F     weight decay (default 0; adamw 1e-2)\n"
        "  -b, --batch N        mini-batch size (default 64)\n"
        "  -e, --epochs N       epochs (default 10)\n"
        "  -s, --seed N         seed for initialisation, split and shuffling (default 0)\n"
        "\n"
        "schedules and regularisation:\n"
        "  --schedule NAME      constant (default), cosine (to 0 over all steps, as\n"
        "                       CosineAnnealingLR) or step (StepLR: --step-size, --gamma)\n"
        "  --step-size N        step schedule: epochs between decays (default 5)\n"
        "  --gamma F            step schedule: decay factor (default 0.1)\n"
        "  --warmup N           linear warm-up over the first N steps (default 0)\n"
        "  --clip-grad F        clip gradients to global norm F (clip_grad_norm_)\n"
        "  --early-stop N       stop when validation loss has not improved for N epochs\n"
        "\n"
        "checkpoints and records (safetensors, PyTorch's parameter names):\n"
        "  -o, --save FILE      checkpoint after every --save-every epochs, at the end\n"
        "                       and on Ctrl-C; weights, optimizer, RNG, epoch, scaler;\n"
        "                       \"{epoch}\" in FILE keeps one file per save\n"
        "  --save-every N       epochs between checkpoints (default 1)\n"
        "  --save-best FILE     checkpoint whenever validation loss improves\n"
        "  --resume FILE        continue from a checkpoint (same data options and seed)\n"
        "  --init FILE          start from the weights in FILE (fine-tuning): a clgrad\n"
        "                       checkpoint or any safetensors file with the model's\n"
        "                       names and shapes, as PyTorch's\n"
        "                       save_file(model.state_dict(), FILE) writes; optimizer,\n"
        "                       epoch and RNG start afresh\n"
        "  --save-weights FILE  at the end, the weights alone as safetensors under\n"
        "                       PyTorch's state_dict names: torch's\n"
        "                       model.load_state_dict(load_file(FILE)) takes it as is\n"
        "  --log FILE.csv       one row per epoch: losses, accuracy or RMSE, lr,\n"
        "                       samples/s, seconds\n"
        "  --plot FILE.svg      training and validation curves, for a browser\n"
        "\n"
        "device and output:\n"
        CLI_HELP_DEVICE
        "  --progress / --no-progress   force the progress bar on or off (default:\n"
        "                       on when stderr is a terminal)\n"
        "  --quiet              only the final result\n"
        "  --shard-optimizer    under mpirun: each rank keeps and updates 1/N of the\n"
        "                       optimizer state (ZeRO-1); same model, less memory\n"
        CLI_HELP_COMMON
        "\n"
        "Options take their value as \"--epochs 3\" or \"--epochs=3\" (short: \"-e 3\").\n");
}

enum {
    OPT_DATA = CLI_OPT_TOOL, OPT_MODEL, OPT_LOSS, OPT_OPTIM, OPT_SCALE,
    OPT_SCALE_TARGET, OPT_TEST_SPLIT, OPT_INIT, OPT_SAVE_WEIGHTS, OPT_SAVE_BEST, OPT_RESUME, OPT_LOG, OPT_PLOT,
    OPT_SCHEDULE, OPT_SAVE_EVERY, OPT_STEP_SIZE, OPT_EARLY_STOP, OPT_WARMUP, OPT_GAMMA,
    OPT_CLIP, OPT_MOMENTUM, OPT_WEIGHT_DECAY, OPT_LABEL_SMOOTHING, OPT_VAL_SPLIT,
    OPT_PROGRESS, OPT_NO_PROGRESS, OPT_QUIET, OPT_SHARD_OPTIMIZER
};

static const struct option long_options[] = {
    CLI_OPTIONS_COMMON,
    CLI_OPTIONS_DEVICE,
    {"data", required_argument, NULL, OPT_DATA},
    CLI_OPTIONS_CSV,
    {"test-split", required_argument, NULL, OPT_TEST_SPLIT},
    {"scale", required_argument, NULL, OPT_SCALE},
    {"scale-target", required_argument, NULL, OPT_SCALE_TARGET},
    {"val-split", required_argument, NULL, OPT_VAL_SPLIT},
    {"model", required_argument, NULL, OPT_MODEL},
    {"loss", required_argument, NULL, OPT_LOSS},
    {"label-smoothing", required_argument, NULL, OPT_LABEL_SMOOTHING},
    {"optim", required_argument, NULL, OPT_OPTIM},
    {"lr", required_argument, NULL, 'l'},
    {"momentum", required_argument, NULL, OPT_MOMENTUM},
    {"weight-decay", required_argument, NULL, OPT_WEIGHT_DECAY},
    {"batch", required_argument, NULL, 'b'},
    {"epochs", required_argument, NULL, 'e'},
    {"seed", required_argument, NULL, 's'},
    {"schedule", required_argument, NULL, OPT_SCHEDULE},
    {"step-size", required_argument, NULL, OPT_STEP_SIZE},
    {"gamma", required_argument, NULL, OPT_GAMMA},
    {"warmup", required_argument, NULL, OPT_WARMUP},
    {"clip-grad", required_argument, NULL, OPT_CLIP},
    {"early-stop", required_argument, NULL, OPT_EARLY_STOP},
    {"save", required_argument, NULL, 'o'},
    {"save-every", required_argument, NULL, OPT_SAVE_EVERY},
    {"save-best", required_argument, NULL, OPT_SAVE_BEST},
    {"resume", required_argument, NULL, OPT_RESUME},
    {"init", required_argument, NULL, OPT_INIT},
    {"save-weights", required_argument, NULL, OPT_SAVE_WEIGHTS},
    {"log", required_argument, NULL, OPT_LOG},
    {"plot", required_argument, NULL, OPT_PLOT},
    {"progress", no_argument, NULL, OPT_PROGRESS},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"shard-optimizer", no_argument, NULL, OPT_SHARD_OPTIMIZER},
    {NULL, 0, NULL, 0},
};

static void parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.loss = "auto", .optim = "adam", .scale = "standard",
                          .scale_target = "standard",
                          .csv = CLI_CSV_DEFAULT, .test_split = 0.1,
                          .lr = 1e-3f, .weight_decay = -1, .batch = 64, .epochs = 10,
                          .val_split = 0.1, .progress = -1, .schedule = "constant",
                          .save_every = 1, .step_size = 5, .gamma = 0.1};
    int c;
    while ((c = cli_getopt(argc, argv, "hl:b:e:s:o:t:", long_options)) != -1) {
        const char *a = cli_optname(), *v = optarg;
        switch (c) {
        case 'h': usage(stdout); exit(0);
        case CLI_OPT_VERSION: cli_version(cg_version());
        case CLI_OPT_BACKEND: o->backend = v; break;
        case CLI_OPT_DEVICE: o->device = v; break;
        case 't': cli_threads(v); break;
        case OPT_PROGRESS: o->progress = 1; break;
        case OPT_NO_PROGRESS: o->progress = 0; break;
        case OPT_QUIET: o->quiet = true; break;
        case OPT_SHARD_OPTIMIZER: o->shard_optimizer = true; break;
        case OPT_DATA: o->data = v; break;
        case OPT_MODEL: o->model = v; break;
        case OPT_LOSS: o->loss = v; break;
        case OPT_OPTIM: o->optim = v; break;
        case OPT_SCALE: o->scale = v; break;
        case OPT_SCALE_TARGET: o->scale_target = v; break;
        case 'o': o->save = v; break;
        case OPT_SAVE_BEST: o->save_best = v; break;
        case OPT_RESUME: o->resume = v; break;
        case OPT_INIT: o->init = v; break;
        case OPT_SAVE_WEIGHTS: o->save_weights = v; break;
        case OPT_LOG: o->log = v; break;
        case OPT_PLOT: o->plot = v; break;
        case OPT_SCHEDULE: o->schedule = v; break;
        case OPT_SAVE_EVERY: o->save_every = (int)cli_int(a, v, 1, 1000000); break;
        case OPT_STEP_SIZE: o->step_size = (int)cli_int(a, v, 1, 1000000); break;
        case OPT_EARLY_STOP: o->early_stop = (int)cli_int(a, v, 1, 1000000); break;
        case OPT_WARMUP: o->warmup = cli_int(a, v, 0, INT64_MAX); break;
        case OPT_GAMMA: o->gamma = cli_double(a, v, 0, 1); break;
        case OPT_CLIP: o->clip = (float)cli_double(a, v, 1e-12, 1e12); break;
        case 'l': o->lr = (float)cli_double(a, v, 0, 1e3); break;
        case OPT_MOMENTUM: o->momentum = (float)cli_double(a, v, 0, 1); break;
        case OPT_WEIGHT_DECAY: o->weight_decay = (float)cli_double(a, v, 0, 1e3); break;
        case OPT_LABEL_SMOOTHING: o->label_smoothing = (float)cli_double(a, v, 0, 1); break;
        case 'b': o->batch = cli_int(a, v, 1, 1 << 24); break;
        case 'e': o->epochs = (int)cli_int(a, v, 1, 1000000); break;
        case 's': o->seed = (uint64_t)cli_int(a, v, 0, INT64_MAX); break;
        case OPT_VAL_SPLIT: o->val_split = cli_double(a, v, 0, 0.9); break;
        case OPT_TEST_SPLIT: o->test_split = cli_double(a, v, 0, 0.9); break;
        default: cli_csv_option(c, v, &o->csv); break;
        }
    }
    if (!o->data) cli_usage_error("option '--data' is required");
    if (o->init && o->resume)
        cli_usage_error("options '--init' and '--resume' exclude each other (--resume restores "
                        "the whole training state, --init only the weights)");
    if (strcmp(o->schedule, "constant") != 0 && strcmp(o->schedule, "cosine") != 0 &&
        strcmp(o->schedule, "step") != 0)
        cli_usage_error("option '--schedule': '%s' is not constant, cosine or step", o->schedule);
}

/* ---- data ------------------------------------------------------------ */

struct data {
    struct cg_dataset *train, *val, *test;
    struct cg_scaler *scaler;      /* fitted on train (CSV), saved in checkpoints */
    struct cg_scaler *target_scaler; /* regression targets, likewise           */
    bool classification;
    bool idx;                 /* IDX images (else a CSV)                 */
    int64_t outputs;          /* classes, or regression targets per sample */
    char *layout;             /* CSV: the columns and categories trained on,
                                 saved in checkpoints for clgrad-eval      */
    struct cg_checkpoint_meta meta[8]; /* CSV: layout, format, test split  */
    int n_meta;
    const char *source;       /* the data's name in messages (borrowed) */
};

static void load_idx_dir(const struct options *o, const char *dir, struct data *d)
{
    struct cg_dataset *all;
    char *img = cli_idx_path(dir, "train-images-idx3-ubyte");
    char *lab = cli_idx_path(dir, "train-labels-idx1-ubyte");
    if (cg_idx_load_pair(img, lab, true, &all) != CG_OK) cli_die("%s", cg_last_error(NULL));
    free(img);
    free(lab);
    img = cli_idx_path(dir, "t10k-images-idx3-ubyte");
    lab = cli_idx_path(dir, "t10k-labels-idx1-ubyte");
    if (access(img, R_OK) == 0 && cg_idx_load_pair(img, lab, true, &d->test) != CG_OK)
        cli_die("%s", cg_last_error(NULL));
    free(img);
    free(lab);
    if (cg_dataset_split(all, o->val_split, o->seed, &d->train, &d->val) != CG_OK)
        cli_die("%s", cg_last_error(NULL));
    cg_dataset_free(all);
    d->classification = true;
    d->idx = true;
    d->outputs = d->train->n_classes;
    if (d->test && d->test->n_classes > d->outputs) d->outputs = d->test->n_classes;
    d->source = dir;
}

/* A CSV: the task and its reason on stdout, the reader's notes (dates,
 * dropped columns) on stderr; --test-split rows held out first (the same
 * rows for the same seed: clgrad-eval --split test finds them again), then
 * the validation split of the rest. */
static void load_csv(const struct options *o, struct data *d)
{
    struct cg_table *tab = cli_csv_read(o->data, &o->csv, NULL);
    if (!o->quiet && tab->task_reason) printf("%s: %s\n", o->data, tab->task_reason);
    if (tab->notes) fputs(tab->notes, stderr);
    if (cg_table_layout_format(tab, &d->layout) != CG_OK) cli_die("%s", cg_last_error(NULL));
    double fraction = o->test_split;   /* cg_table_split holds out at least a row */
    /* what clgrad-eval needs to read the file again as it was read here
     * and to find the same test rows (cli.h's keys) */
    const struct cli_csv *c = &o->csv;
    const char *keys[] = {CLI_LAYOUT_KEY, CLI_SKIP_ROWS_KEY, CLI_NO_HEADER_KEY,
                          CLI_DELIMITER_KEY, CLI_MISSING_KEY, CLI_TEST_SPLIT_KEY, CLI_SEED_KEY};
    char *values[] = {cli_strf("%s", d->layout), cli_strf("%d", c->skip_rows),
                      cli_strf("%d", c->no_header), cli_strf("%c", c->delimiter),
                      cli_strf("%s", c->missing), cli_strf("%.17g", fraction),
                      cli_strf("%llu", (unsigned long long)o->seed)};
    for (int i = 0; i < (int)(sizeof keys / sizeof keys[0]); i++)
        d->meta[d->n_meta++] = (struct cg_checkpoint_meta){keys[i], values[i]};
    struct cg_table *rest = tab, *test = NULL;
    if (fraction > 0) {
        if (cg_table_split(tab, fraction, o->seed, &rest, &test) != CG_OK)
            cli_die("%s: %s (--test-split 0 keeps no test rows)", o->data, cg_last_error(NULL));
        cg_table_free(tab);
    }
    struct cg_dataset *all = cli_table_dataset(rest, o->data);
    cg_table_free(rest);
    if (test) {
        d->test = cli_table_dataset(test, o->data);
        cg_table_free(test);
    }
    if (all->n < 2) cli_die("%s: only %lld usable rows%s", o->data, (long long)all->n,
                            d->test ? " besides the test rows" : "");
    if (cg_dataset_split(all, o->val_split, o->seed, &d->train, &d->val) != CG_OK)
        cli_die("%s", cg_last_error(NULL));
    cg_dataset_free(all);
    d->classification = d->train->n_classes > 0;
    d->outputs = d->classification ? d->train->n_classes : d->train->y_dim;
    if (strcmp(o->scale, "none") != 0) {
        enum cg_scaler_kind kind;
        if (strcmp(o->scale, "standard") == 0) kind = CG_SCALER_STANDARD;
        else if (strcmp(o->scale, "minmax") == 0) kind = CG_SCALER_MINMAX;
        else cli_usage_error("option '--scale': '%s' is not standard, minmax or none", o->scale);
        if (cg_scaler_fit(d->train, kind, true, &d->scaler) != CG_OK ||
            cg_scaler_apply(d->scaler, d->train) != CG_OK ||
            (d->val && cg_scaler_apply(d->scaler, d->val) != CG_OK) ||
            (d->test && cg_scaler_apply(d->scaler, d->test) != CG_OK))
            cli_die("%s", cg_last_error(NULL));
    }
    if (!d->classification && strcmp(o->scale_target, "none") != 0) {
        if (strcmp(o->scale_target, "standard") != 0)
            cli_usage_error("option '--scale-target': '%s' is not standard or none", o->scale_target);
        /* Standardized targets keep the loss near 1 whatever the target's
         * units, so the default learning rate suits every data set. */
        int64_t k = d->train->y_dim;
        if (cg_scaler_fit_data(d->train->y, d->train->n, k, CG_SCALER_STANDARD, true,
                               &d->target_scaler) != CG_OK ||
            cg_scaler_apply_data(d->target_scaler, d->train->y, d->train->n, k) != CG_OK ||
            (d->val && cg_scaler_apply_data(d->target_scaler, d->val->y, d->val->n, k) != CG_OK) ||
            (d->test &&
             cg_scaler_apply_data(d->target_scaler, d->test->y, d->test->n, k) != CG_OK))
            cli_die("%s", cg_last_error(NULL));
    }
    d->source = o->data;
}

static void load_data(const struct options *o, struct data *d)
{
    memset(d, 0, sizeof *d);
    if (strcmp(o->data, "fashion-mnist") == 0) {
        if (!cli_is_dir(FASHION_DIR))
            cli_die("%s not found: install Debian's dataset-fashion-mnist package "
                "(tools/setup.sh does)", FASHION_DIR);
        load_idx_dir(o, FASHION_DIR, d);
    } else if (cli_is_dir(o->data)) {
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
    char *spec;                     /* the model spec, saved in checkpoints */
    int64_t steps;                  /* optimizer steps so far (all epochs)  */
    struct cg_lr_schedule decay;    /* --schedule (cosine: per step, step:  */
                                    /* per epoch)                           */
    struct cg_lr_schedule warmup;   /* --warmup, per step                   */
    int epochs_done;                /* completed epochs                     */
    struct epoch_record *hist;      /* (o->epochs)                          */
    int n_hist;
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

static struct metrics evaluate(struct trainer *t, const struct cg_dataset *all)
{
    struct metrics m = {0};
    cg_loader *ld = NULL;
    struct cg_loader_options lo = {.batch_size = t->o->batch > 256 ? t->o->batch : 256};
    /* Under mpirun each rank evaluates its part of the samples (a view of
     * the same arrays); the sums are added over the ranks below. */
    int64_t lo_i, hi_i, y_row = all->y_dim ? all->y_dim : 1;
    cli_dist_part(all->n, &lo_i, &hi_i);
    struct cg_dataset part = *all, *ds = &part;
    part.n = hi_i - lo_i;
    if (part.x) part.x += lo_i * all->sample_numel;
    if (part.x_u8) part.x_u8 += lo_i * all->sample_numel;
    if (part.y) part.y += lo_i * y_row;
    if (part.n > 0 && cg_loader_create(t->ctx, ds, &lo, &ld) != CG_OK)
        cli_die("%s", cg_last_error(t->ctx));
    cg_module_eval(t->model);
    bool grad = cg_set_grad_enabled(t->ctx, false);
    double loss_sum = 0, correct = 0, sq_sum = 0;
    /* Squared errors in the target's own units: (pred - y) * scale. */
    const struct cg_scaler *ts = t->d->target_scaler;
    cg_tensor *unscale = ts ? cg_tensor_from_host(t->ctx, 1, &ts->n_features, ts->scale) : NULL;
    cg_tensor *x, *y;
    while (ld && cg_loader_next(ld, &x, &y) == CG_OK && x) {
        cg_scope_begin(t->ctx);
        int64_t b = cg_tensor_dim(x, 0);
        cg_tensor *pred = cg_module_forward(t->model, x);
        float l = 0, c = 0, se = 0;
        if (cg_tensor_item(batch_loss(t, pred, y), &l) != CG_OK ||
            (t->d->classification && cg_tensor_item(batch_correct(t, pred, y), &c) != CG_OK) ||
            (unscale && cg_tensor_item(cg_sum_all(cg_pow_scalar(
                            cg_mul(cg_sub(pred, y), unscale), 2.0f)), &se) != CG_OK))
            cli_die("evaluation: %s", cg_last_error(t->ctx));
        loss_sum += (double)l * (double)b;
        correct += c;
        sq_sum += se;
        cg_scope_end(t->ctx);
    }
    cg_tensor_free(unscale);
    if (cg_ctx_status(t->ctx) != CG_OK) cli_die("evaluation: %s", cg_last_error(t->ctx));
    cg_set_grad_enabled(t->ctx, grad);
    cg_module_train(t->model);
    cg_loader_free(ld);
    double sums[3] = {loss_sum, correct, sq_sum};
    if (cg_dist_allreduce_f64(cli_dist, sums, 3, CG_DIST_SUM) != CG_OK)
        cli_die("evaluation: %s", cg_last_error(t->ctx));
    loss_sum = sums[0], correct = sums[1], sq_sum = sums[2];
    m.loss = loss_sum / (double)all->n;
    m.accuracy = correct / (double)all->n;
    /* MSE is mean over outputs; RMSE over every target value. */
    m.rmse = ts ? sqrt(sq_sum / ((double)all->n * (double)ts->n_features)) : sqrt(m.loss);
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
    else cli_usage_error("option '--optim': '%s' is not adam, adamw, sgd or rmsprop", o->optim);
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
        if (!d->classification) cli_die("--loss cross-entropy needs class labels, but %s is a regression target", t->o->csv.target ? t->o->csv.target : "the target");
        t->loss = LOSS_CE;
    } else if (strcmp(l, "mse") == 0) {
        if (d->classification) cli_die("--loss mse needs a numeric target; for class labels use cross-entropy");
        t->loss = LOSS_MSE;
    } else if (strcmp(l, "bce") == 0) {
        if (!d->classification || d->outputs != 2)
            cli_die("--loss bce needs exactly two classes (it has %lld)", (long long)d->outputs);
        t->loss = LOSS_BCE;
    } else {
        cli_usage_error("option '--loss': '%s' is not auto, cross-entropy, mse or bce", l);
    }
}

static cg_module *make_model(struct trainer *t)
{
    const struct options *o = t->o;
    struct data *d = t->d;
    int64_t want = t->loss == LOSS_BCE ? 1 : d->outputs;
    char *spec = t->spec = o->model ? cli_strf("%s", o->model)
                       : cli_strf("linear %d relu, linear %d relu, linear %lld",
                                  d->idx ? 256 : 64, d->idx ? 128 : 64, (long long)want);
    /* A model that starts with a linear layer sees flat samples; image
     * layers (conv, pools, ...) see IDX images as (C, H, W). */
    const char *first = spec + strspn(spec, " ");
    if (strncmp(first, "linear", 6) == 0 && d->train->sample_ndim > 1) {
        int64_t flat = d->train->sample_numel;
        if (cg_dataset_reshape(d->train, 1, &flat) != CG_OK ||
            (d->val && cg_dataset_reshape(d->val, 1, &flat) != CG_OK) ||
            (d->test && cg_dataset_reshape(d->test, 1, &flat) != CG_OK))
            cli_die("%s", cg_last_error(NULL));
    }
    int out_ndim;
    int64_t out_shape[CG_MAX_DIMS];
    cg_module *m = cg_model_from_spec(t->ctx, spec, d->train->sample_ndim,
                                      d->train->sample_shape, &out_ndim, out_shape);
    if (!m) cli_die("%s", cg_last_error(t->ctx));
    if (out_ndim != 1 || out_shape[0] != want) {
        cg_module_free(m);
        cli_die("the model's output (%lld value%s per sample, from \"%s\") does not fit the data, "
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

/* ---- schedules, checkpoints, records ------------------------------------ */

/* The learning rate for optimizer step `step` (0-based) in `epoch` (1-based):
 * the decay (CosineAnnealingLR over all steps, stepped per batch, or StepLR
 * stepped per epoch) with a linear warm-up over the first --warmup steps
 * chained on it (src/optim/schedule.c has the formulas). */
static float lr_at(const struct trainer *t, int64_t step, int epoch)
{
    double lr;
    int64_t at = t->decay.kind == CG_LR_STEP ? epoch - 1 : step;
    if (cg_lr_schedule_at(&t->decay, t->o->lr, at, &lr) != CG_OK ||
        cg_lr_schedule_at(&t->warmup, lr, step, &lr) != CG_OK)
        cli_die("%s", cg_last_error(NULL));
    return (float)lr;
}

/* Saves after epochs_done epochs; "{epoch}" in path becomes that number. */
static void save_checkpoint(struct trainer *t, const char *path_pattern, int epochs_done)
{
    /* sharded: rank 0 first collects the optimizer state of every rank */
    if (cg_dist_gather_optim(cli_dist, t->opt) != CG_OK)
        cli_die("saving %s: %s", path_pattern, cg_last_error(t->ctx));
    if (cg_dist_rank(cli_dist) != 0) return; /* one writer; the model is the same everywhere */
    const char *at = strstr(path_pattern, "{epoch}");
    char *path = at ? cli_strf("%.*s%d%s", (int)(at - path_pattern), path_pattern, epochs_done,
                               at + 7)
                    : cli_strf("%s", path_pattern);
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    const struct cg_dataset *ds = t->d->train;
    ex.epoch = epochs_done;
    ex.step = t->steps;
    ex.model_spec = t->spec;
    ex.input_ndim = ds->sample_ndim;
    memcpy(ex.input_shape, ds->sample_shape, sizeof ex.input_shape);
    ex.task = t->d->classification ? CG_TASK_CLASSIFICATION : CG_TASK_REGRESSION;
    ex.n_classes = t->d->classification ? ds->n_classes : 0;
    ex.class_names = (const char *const *)ds->class_names;
    ex.scaler = t->d->scaler;
    ex.target_scaler = t->d->target_scaler;
    ex.meta = t->d->meta;
    ex.n_meta = t->d->n_meta;
    if (cg_checkpoint_save(path, t->model, t->opt, &ex) != CG_OK)
        cli_die("saving %s: %s", path, cg_last_error(t->ctx));
    free(path);
}

static void write_log(const struct trainer *t, const struct epoch_record *r, bool first)
{
    if (cg_dist_rank(cli_dist) != 0) return;
    /* a resumed run appends to the log it wrote before */
    if (!record_log(t->o->log, r, first, t->o->resume != NULL, t->d->classification))
        cli_die("--log %s: %s", t->o->log, strerror(errno));
}

static void write_plot(const struct trainer *t)
{
    if (cg_dist_rank(cli_dist) != 0) return;
    if (t->n_hist > 0 && !record_plot(t->o->plot, t->hist, t->n_hist, t->d->val != NULL,
                                      t->d->classification))
        cli_die("--plot %s: %s", t->o->plot, strerror(errno));
}

/* Ctrl-C: the first one asks the loop to save and stop after the current
 * step; a second one ends the process at once. */
static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    interrupted = 1;
    signal(sig, SIG_DFL);
}

/* Whether to stop before the next step. Under mpirun (whose Ctrl-C reaches
 * the ranks as SIGTERM, not all at the same step) the ranks agree on it
 * every step, so they all stop after the same one. */
static bool stop_agreed;
static bool should_stop(void)
{
    if (!cli_dist) return stop_agreed = interrupted;
    float f = interrupted ? 1.0f : 0.0f;
    if (cg_dist_allreduce(cli_dist, &f, 1, CG_DIST_MAX) != CG_OK) cli_die("stopping: all ranks");
    return stop_agreed = f > 0;
}

/* ---- training -------------------------------------------------------- */

/* One epoch; returns the mean train loss, or NAN when interrupted. */
static double train_epoch(struct trainer *t, cg_loader *ld, cg_tensor *loss_sum, int epoch,
                          bool bar, int64_t *samples)
{
    const struct options *o = t->o;
    double t0 = now(), last_draw = 0;
    int64_t done = 0, total = t->d->train->n, steps = 0;
    cg_tensor_fill(loss_sum, 0);
    cg_tensor *x, *y;
    while (!should_stop() && cg_loader_next(ld, &x, &y) == CG_OK && x) {
        cg_optim_set_lr(t->opt, lr_at(t, t->steps, epoch));
        cg_scope_begin(t->ctx);
        cg_tensor *loss = batch_loss(t, cg_module_forward(t->model, x), y);
        cg_optim_zero_grad(t->opt);
        cg_backward(loss);
        if (o->clip > 0) cg_optim_clip_grad_norm(t->opt, o->clip);
        cg_optim_step(t->opt);
        bool grad = cg_set_grad_enabled(t->ctx, false);
        cg_tensor_copy(loss_sum, cg_add(loss_sum, loss));
        cg_set_grad_enabled(t->ctx, grad);
        cg_scope_end(t->ctx);
        if (cg_ctx_status(t->ctx) != CG_OK)
            cli_die("epoch %d, step %lld: %s", epoch, (long long)steps + 1, cg_last_error(t->ctx));
        done += cg_tensor_dim(x, 0) * cg_dist_world_size(cli_dist);
        steps++;
        t->steps++;
        if (bar && (now() - last_draw > 0.2 || done == total)) {
            float s = 0;
            cg_tensor_item(loss_sum, &s);
            progress_bar(epoch, o->epochs, done, total, now() - t0, s / (double)steps);
            last_draw = now();
        }
    }
    if (bar) fprintf(stderr, "\r%*s\r", 100, "");
    if (cg_ctx_status(t->ctx) != CG_OK) cli_die("%s", cg_last_error(t->ctx));
    if (stop_agreed) {
        cg_loader_reset(ld);
        return NAN;
    }
    float s = 0;
    if (cg_tensor_item(loss_sum, &s) != CG_OK) cli_die("%s", cg_last_error(t->ctx));
    *samples = done;
    /* Every rank's batches are the same size: the mean over ranks of the
     * mean batch losses is the one-process figure. */
    double mean = s / (double)(steps ? steps : 1);
    if (cg_dist_allreduce_f64(cli_dist, &mean, 1, CG_DIST_SUM) != CG_OK)
        cli_die("%s", cg_last_error(t->ctx));
    return mean / cg_dist_world_size(cli_dist);
}

static void train(struct trainer *t, int first_epoch)
{
    const struct options *o = t->o;
    cg_loader *ld;
    struct cg_loader_options lo = {.batch_size = o->batch, .shuffle = true,
                                   .shard_rank = cg_dist_rank(cli_dist),
                                   .shard_count = cg_dist_world_size(cli_dist)};
    if (cg_loader_create(t->ctx, t->d->train, &lo, &ld) != CG_OK) cli_die("%s", cg_last_error(t->ctx));
    bool bar = o->progress == 1 || (o->progress == -1 && isatty(STDERR_FILENO) && !o->quiet);
    /* The running loss is summed on the device and read only for display,
     * so the queue is not drained every step. */
    cg_tensor *loss_sum = cg_tensor_zeros(t->ctx, 0, NULL);
    double best_val = INFINITY;
    int since_best = 0;
    signal(SIGINT, on_sigint);
    if (cli_dist) signal(SIGTERM, on_sigint);
    for (int epoch = first_epoch; epoch <= o->epochs; epoch++) {
        double t0 = now();
        int64_t samples = 0;
        double train_loss = train_epoch(t, ld, loss_sum, epoch, bar, &samples);
        if (stop_agreed) {
            if (o->save) save_checkpoint(t, o->save, t->epochs_done);
            if (cg_dist_rank(cli_dist) == 0)
            fprintf(stderr, "clgrad-train: interrupted in epoch %d%s%s\n", epoch,
                    o->save ? "; saved the last complete epoch's checkpoint (optimizer state "
                              "included) to " : "",
                    o->save ? o->save : "");
            cg_tensor_free(loss_sum);
            cg_loader_free(ld);
            cli_dist_end();
            exit(130);
        }
        double secs = now() - t0;
        t->epochs_done = epoch;
        struct epoch_record r = {.epoch = epoch, .train_loss = train_loss,
                                 .lr = cg_optim_lr(t->opt),
                                 .samples_per_s = (double)samples / secs, .seconds = secs};
        if (t->d->val) {
            struct metrics m = evaluate(t, t->d->val);
            r.has_val = true;
            r.val_loss = m.loss;
            r.val_metric = t->d->classification ? m.accuracy : m.rmse;
        }
        t->hist[t->n_hist++] = r;
        if (!o->quiet) {
            printf("epoch %2d/%d  train loss %.4f  ", epoch, o->epochs, train_loss);
            if (r.has_val)
                printf(t->d->classification ? "val loss %.4f  val acc %.2f%%  "
                                            : "val loss %.4f  val RMSE %.4f  ",
                       r.val_loss, t->d->classification ? 100 * r.val_metric : r.val_metric);
            printf("%.0f samples/s  [%s: %s]\n", r.samples_per_s, cg_ctx_backend_name(t->ctx),
                   cg_ctx_device(t->ctx)->name);
            fflush(stdout);
        }
        if (o->log) write_log(t, &r, t->n_hist == 1);
        if (o->plot) write_plot(t);
        if (o->save && (epoch % o->save_every == 0 || epoch == o->epochs))
            save_checkpoint(t, o->save, epoch);
        if (r.has_val && r.val_loss < best_val) {
            best_val = r.val_loss;
            since_best = 0;
            if (o->save_best) save_checkpoint(t, o->save_best, epoch);
        } else if (r.has_val && o->early_stop && ++since_best >= o->early_stop) {
            if (!o->quiet)
                printf("early stop: validation loss has not improved for %d epochs\n",
                       o->early_stop);
            if (o->save && epoch % o->save_every != 0) save_checkpoint(t, o->save, epoch);
            break;
        }
    }
    signal(SIGINT, SIG_DFL);
    if (cli_dist) signal(SIGTERM, SIG_DFL);
    cg_tensor_free(loss_sum);
    cg_loader_free(ld);
}

int main(int argc, char **argv)
{
    cli_prog = "clgrad-train";
    cli_dist_rank_from_env();
    struct options o;
    parse_args(argc, argv, &o);
    struct data d;
    load_data(&o, &d);

    struct cg_ctx_options co = {.backend = o.backend, .device = o.device, .seed = o.seed};
    struct trainer t = {.o = &o, .d = &d};
    if (cg_ctx_create(&t.ctx, &co) != CG_OK) cli_die("%s", cg_last_error(NULL));
    cli_dist_begin(t.ctx);
    int rank = cg_dist_rank(cli_dist), world = cg_dist_world_size(cli_dist);
    if (rank > 0) {
        o.quiet = true;
        o.progress = 0;
    }
    pick_loss(&t);
    t.model = make_model(&t);
    t.opt = make_optim(&o, t.model);
    if (!t.opt) cli_die("%s", cg_last_error(t.ctx));

    if (!o.quiet) {
        printf("clgrad-train: %s: %lld training, %lld validation, %lld test samples; %s, "
               "%lld parameters; %s on %s", d.source, (long long)d.train->n,
               (long long)(d.val ? d.val->n : 0), (long long)(d.test ? d.test->n : 0),
               d.classification ? "classification" : "regression",
               (long long)cg_module_numel(t.model), cg_ctx_backend_name(t.ctx),
               cg_ctx_device(t.ctx)->name);
        if (world > 1)
            printf(" x %d ranks (batch %lld = %d x %lld)", world, (long long)o.batch, world,
                   (long long)o.batch / world);
        printf("\n");
        fflush(stdout);
    }
    t.hist = calloc((size_t)o.epochs, sizeof *t.hist);
    if (!t.hist) cli_die("out of memory");
    /* The loader's batches: a final partial one only when the ranks can
     * share it evenly (data.h, shard_count). */
    int64_t rem = d.train->n % o.batch;
    int64_t per_epoch = d.train->n / o.batch + (rem > 0 && rem % world == 0);
    /* T_max: every step of the run; StepLR counts epochs */
    if (strcmp(o.schedule, "cosine") == 0) t.decay = cg_lr_cosine(per_epoch * o.epochs, 0.0);
    else if (strcmp(o.schedule, "step") == 0) t.decay = cg_lr_step(o.step_size, o.gamma);
    else t.decay = cg_lr_constant();
    t.warmup = cg_lr_warmup(o.warmup);
    int first_epoch = 1;
    if (o.resume) {
        /* Rank 0 reads; cg_dist_attach and cg_dist_broadcast_optim below
         * give every rank its model and optimizer state. */
        int64_t at[2] = {0, 0};
        if (rank == 0) {
            struct cg_checkpoint_extra got;
            if (cg_checkpoint_load(o.resume, t.model, t.opt, &got) != CG_OK)
                cli_die("%s", cg_last_error(t.ctx));
            at[0] = got.epoch;
            at[1] = got.step > 0 ? got.step : 0;
            cg_checkpoint_extra_clear(&got);
        }
        /* and the RNG state the checkpoint restored: the same shuffles */
        uint64_t rng[4];
        cg_rand_state(t.ctx, rng);
        if (cg_dist_broadcast(cli_dist, at, sizeof at) != CG_OK ||
            cg_dist_broadcast(cli_dist, rng, sizeof rng) != CG_OK ||
            cg_dist_broadcast_optim(cli_dist, t.opt) != CG_OK)
            cli_die("--resume: %s", cg_last_error(t.ctx));
        cg_rand_set_state(t.ctx, rng);
        first_epoch = (int)at[0] + 1;
        t.steps = at[1];
        t.epochs_done = (int)at[0];
        if (!o.quiet)
            printf("resumed from %s after epoch %d (step %lld)\n", o.resume, first_epoch - 1,
                   (long long)t.steps);
    }
    if (o.init) {
        /* weights only: the library's loader (names, shapes, every mismatch
         * listed; a clgrad checkpoint's optimizer, scaler and metadata
         * entries are not weights), without the RNG state it restores, so
         * --seed still decides shuffling and dropout */
        uint64_t rng[4];
        cg_rand_state(t.ctx, rng);
        if (cg_checkpoint_load(o.init, t.model, NULL, NULL) != CG_OK)
            cli_die("--init: %s", cg_last_error(t.ctx));
        cg_rand_set_state(t.ctx, rng);
        if (!o.quiet) printf("initialised the weights from %s\n", o.init);
    }
    /* Same model on every rank (checked), rank 0's weights everywhere. */
    if (cg_dist_attach(cli_dist, t.model) != CG_OK) cli_die("%s", cg_last_error(t.ctx));
    if (o.shard_optimizer && cg_dist_shard_optimizer(cli_dist, t.opt) != CG_OK)
        cli_die("--shard-optimizer: %s", cg_last_error(t.ctx));
    double t0 = now();
    train(&t, first_epoch);
    double secs = now() - t0;
    /* weights only (no optimizer, scaler or model metadata): PyTorch's
     * load_state_dict(load_file(FILE), strict=True) takes it as it is */
    if (o.save_weights && cg_checkpoint_save(o.save_weights, t.model, NULL, NULL) != CG_OK)
        cli_die("--save-weights: %s", cg_last_error(t.ctx));

    const struct cg_dataset *final = d.test ? d.test : d.val;
    if (final) {
        struct metrics m = evaluate(&t, final);
        if (rank == 0) {
            print_metrics(&t, d.test ? "test" : "val", m);
            printf("  (after %d epoch%s, %.1f s)\n", o.epochs, o.epochs == 1 ? "" : "s", secs);
        }
    }
    free(t.hist);
    free(t.spec);
    cg_scaler_free(d.scaler);
    cg_scaler_free(d.target_scaler);
    free(d.layout);
    for (int i = 0; i < d.n_meta; i++) free((char *)d.meta[i].value);
    cg_optim_free(t.opt);
    cg_module_free(t.model);
    cli_dist_end();
    cg_ctx_free(t.ctx);
    cg_dataset_free(d.train);
    cg_dataset_free(d.val);
    cg_dataset_free(d.test);
    return 0;
}
