/*
 * tools/clgrad-seed.c — the seed program: the PyTorch feed-forward example
 * (shared/seed/000_3d17dbad29e9803e.txt) in C.
 *
 * A 10 -> 64 -> 64 -> 1 ReLU network, MSELoss, Adam(lr=1e-3), shuffled
 * mini-batches of 32, on a learnable synthetic regression
 *     y = w . x + 0.5 sin(x0) + 0.05 noise,   x ~ N(0, I_10), w ~ U(-1, 1)^10
 * (4096 samples, a fixed seed), printing the mean training loss of each
 * epoch as the original prints loss.item(): "Epoch 01 | Loss: 0.1234".
 *
 * The backend comes from --backend / CLGRAD_BACKEND (cpu, opencl, auto) and
 * --device / CLGRAD_DEVICE;
 * the line naming it goes to stderr so stdout holds only the losses. Every
 * random number (weights, data, shuffling) comes from the context's host
 * RNG, so the same --seed gives the same losses on every backend.
 *
 *   clgrad-seed [--epochs N] [--seed S] [--samples N] [--batch-size B]
 *               [--lr LR] [--steps-per-epoch K] [--stats] [--backend NAME]
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <clgrad/clgrad.h>

#include "cli.h"

#define IN_DIM 10
#define HIDDEN 64

struct opts {
    const char *backend, *device;
    long epochs, samples, batch, steps_per_epoch;
    uint64_t seed;
    float lr;
    int stats;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clgrad-seed [OPTION]...\n"
            "  -e, --epochs N       epochs (default 10)\n"
            "  -s, --seed S         seed of weights, data and shuffling (default 42)\n"
            "  --samples N          training samples (default 4096)\n"
            "  -b, --batch-size B   mini-batch size (default 32)\n"
            "  -l, --lr LR          Adam learning rate (default 1e-3)\n"
            "  --steps-per-epoch K  batches per epoch (default: one pass over the data;\n"
            "                       more wrap around with a reshuffle)\n"
            "  --stats              per-epoch time and device memory on stderr\n"
            CLI_HELP_DEVICE
            CLI_HELP_COMMON);
}

enum { OPT_SAMPLES = CLI_OPT_TOOL, OPT_STEPS_PER_EPOCH, OPT_STATS };

static const struct option long_options[] = {
    CLI_OPTIONS_COMMON,
    CLI_OPTIONS_DEVICE,
    {"epochs", required_argument, NULL, 'e'},
    {"seed", required_argument, NULL, 's'},
    {"samples", required_argument, NULL, OPT_SAMPLES},
    {"batch-size", required_argument, NULL, 'b'},
    {"batch", required_argument, NULL, 'b'},
    {"lr", required_argument, NULL, 'l'},
    {"steps-per-epoch", required_argument, NULL, OPT_STEPS_PER_EPOCH},
    {"stats", no_argument, NULL, OPT_STATS},
    {NULL, 0, NULL, 0},
};

/* Exits after --help, --version or a usage error (status 2). */
static void parse_args(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.epochs = 10, .samples = 4096, .batch = 32, .seed = 42, .lr = 1e-3f};
    int c;
    while ((c = cli_getopt(argc, argv, "he:s:b:l:t:", long_options)) != -1) {
        const char *a = cli_optname(), *v = optarg;
        switch (c) {
        case 'h': usage(stdout); exit(0);
        case CLI_OPT_VERSION: cli_version(cg_version());
        case CLI_OPT_BACKEND: o->backend = v; break;
        case CLI_OPT_DEVICE: o->device = v; break;
        case 't': cli_threads(v); break;
        case OPT_STATS: o->stats = 1; break;
        case 'e': o->epochs = (long)cli_int(a, v, 0, 100000000); break;
        case OPT_SAMPLES: o->samples = (long)cli_int(a, v, 1, 1L << 30); break;
        case 'b': o->batch = (long)cli_int(a, v, 1, 1L << 24); break;
        case OPT_STEPS_PER_EPOCH: o->steps_per_epoch = (long)cli_int(a, v, 1, 1L << 30); break;
        case 's': o->seed = (uint64_t)cli_int(a, v, 0, INT64_MAX); break;
        case 'l': o->lr = (float)cli_double(a, v, 0, 1e3); break;
        }
    }
}

/* The synthetic regression, drawn from the context's RNG.
 * xs: (n, IN_DIM), ys: (n) */
static void make_data(cg_ctx *ctx, long n, float *xs, float *ys)
{
    double w[IN_DIM];
    for (int j = 0; j < IN_DIM; j++) w[j] = 2 * cg_rand_uniform(ctx) - 1;
    for (long i = 0; i < n; i++) {
        double y = 0;
        for (int j = 0; j < IN_DIM; j++) {
            double x = cg_rand_normal(ctx);
            xs[i * IN_DIM + j] = (float)x;
            y += w[j] * x;
        }
        y += 0.5 * sin(xs[i * IN_DIM]) + 0.05 * cg_rand_normal(ctx);
        ys[i] = (float)y;
    }
}

/* Fisher-Yates from the context's RNG (DataLoader(shuffle=True)). */
static void shuffle(cg_ctx *ctx, long *perm, long n)
{
    for (long i = n - 1; i > 0; i--) {
        long j = (long)(cg_rand_uniform(ctx) * (double)(i + 1));
        long t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Resident host memory in KiB (Linux /proc), or -1 where unknown. */
static long host_rss_kib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size, rss = -1;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &size, &rss) != 2) rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

static int fail(cg_ctx *ctx, const char *what)
{
    fprintf(stderr, "clgrad-seed: %s: %s\n", what, cg_last_error(ctx));
    return 1;
}

int main(int argc, char **argv)
{
    cli_prog = "clgrad-seed";
    struct opts o;
    parse_args(argc, argv, &o);

    cg_ctx *ctx;
    struct cg_ctx_options co = {.backend = o.backend, .device = o.device, .seed = o.seed};
    if (cg_ctx_create(&ctx, &co) != CG_OK) return fail(NULL, "cannot create a context");
    fprintf(stderr, "clgrad-seed: backend %s, device %s\n", cg_ctx_backend_name(ctx),
            cg_ctx_device(ctx)->name);

    /* 1. model, loss, optimizer: as the PyTorch original */
    cg_module *model = cg_sequential_module(ctx, 5,
        cg_linear_module(ctx, IN_DIM, HIDDEN, true), cg_relu_module(ctx),
        cg_linear_module(ctx, HIDDEN, HIDDEN, true), cg_relu_module(ctx),
        cg_linear_module(ctx, HIDDEN, 1, true));
    cg_optim *opt = model ? cg_adam(model, o.lr) : NULL;
    /* the running sum of the epoch's batch losses stays on the device */
    cg_tensor *loss_sum = cg_tensor_zeros(ctx, CG_SHAPE(1));

    float *xs = malloc((size_t)o.samples * IN_DIM * sizeof *xs);
    float *ys = malloc((size_t)o.samples * sizeof *ys);
    float *xb = malloc((size_t)o.batch * IN_DIM * sizeof *xb);
    float *yb = malloc((size_t)o.batch * sizeof *yb);
    long *perm = malloc((size_t)o.samples * sizeof *perm);
    int rc = 0;
    if (!opt || !loss_sum) {
        rc = fail(ctx, "cannot build the model");
        goto done;
    }
    if (!xs || !ys || !xb || !yb || !perm) {
        fprintf(stderr, "clgrad-seed: out of host memory\n");
        rc = 1;
        goto done;
    }
    make_data(ctx, o.samples, xs, ys);
    for (long i = 0; i < o.samples; i++) perm[i] = i;

    long per_epoch = o.steps_per_epoch ? o.steps_per_epoch
                                       : (o.samples + o.batch - 1) / o.batch;
    long pos = o.samples;   /* position in perm: at the end, so epoch 1 shuffles */
    for (long epoch = 0; epoch < o.epochs; epoch++) {
        double t0 = now_s();
        if (cg_tensor_fill(loss_sum, 0.0f) != CG_OK) {
            rc = fail(ctx, "fill");
            goto done;
        }
        if (!o.steps_per_epoch) pos = o.samples;   /* one pass: reshuffle */
        for (long step = 0; step < per_epoch; step++) {
            if (pos >= o.samples) {
                shuffle(ctx, perm, o.samples);
                pos = 0;
            }
            long b = o.samples - pos < o.batch ? o.samples - pos : o.batch;
            for (long i = 0; i < b; i++) {
                memcpy(xb + i * IN_DIM, xs + perm[pos + i] * IN_DIM, IN_DIM * sizeof *xb);
                yb[i] = ys[perm[pos + i]];
            }
            pos += b;

            /* 2. one training step: forward, loss, backward, update */
            cg_scope_begin(ctx);
            cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(b, IN_DIM), xb);
            cg_tensor *y = cg_tensor_from_host(ctx, CG_SHAPE(b, 1), yb);
            cg_tensor *pred = cg_module_forward(model, x);
            cg_tensor *loss = cg_mse_loss(pred, y, CG_REDUCTION_MEAN);
            cg_optim_zero_grad(opt);
            cg_status st = cg_backward(loss);
            if (st == CG_OK) st = cg_optim_step(opt);
            if (st == CG_OK) st = cg_tensor_copy(loss_sum, cg_add(loss_sum, cg_detach(loss)));
            cg_scope_end(ctx);
            if (st != CG_OK) {
                rc = fail(ctx, "training step");
                goto done;
            }
        }
        float sum;
        if (cg_tensor_item(loss_sum, &sum) != CG_OK) {
            rc = fail(ctx, "reading the loss");
            goto done;
        }
        printf("Epoch %02ld | Loss: %.4f\n", epoch + 1, (double)sum / (double)per_epoch);
        fflush(stdout);
        if (o.stats) {
            struct cg_backend_stats s;
            cg_ctx_stats(ctx, &s);
            fprintf(stderr,
                    "clgrad-seed: epoch %ld: %.3f s, %ld steps; device memory in use %" PRIu64
                    " B, peak %" PRIu64 " B, reserved %" PRIu64 " B, allocations %" PRIu64
                    "; host RSS %ld KiB\n",
                    epoch + 1, now_s() - t0, per_epoch, s.bytes_in_use, s.bytes_peak,
                    s.bytes_reserved, s.device_allocs, host_rss_kib());
        }
    }

done:
    free(xs);
    free(ys);
    free(xb);
    free(yb);
    free(perm);
    cg_tensor_free(loss_sum);
    cg_optim_free(opt);
    cg_module_free(model);
    cg_ctx_free(ctx);
    return rc;
}
