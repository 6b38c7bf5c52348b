/*
 * tools/clgrad-dist-bench.c — the distributed measure of issue 16: training
 * throughput of one model on one process or under mpirun, and how much of
 * the gradient all-reduce backward hides.
 *
 *   clgrad-dist-bench --model mlp                       # one process
 *   mpirun -np 2 -x CLGRAD_CPU_THREADS=1 clgrad-dist-bench --model cnn
 *   tools/bench_dist.sh                                 # the comparison
 *
 * Each run trains --rounds rounds of --steps steps (after --warmup steps)
 * on random data at the global batch --batch, and rank 0 prints the median
 * samples/s with the rounds' range (the slowest rank's time of each round),
 * the time per step, and the gradient all-reduce's wait after backward
 * (dist.h's wait_s: the part backward did not hide), and the process's CPU
 * time per step (the slowest rank's). --no-overlap launches
 * every all-reduce after backward, so its wait is the whole communication
 * time; tools/bench_dist.sh compares both to give the hidden share.
 * --shard-optimizer shards Adam's state over the ranks (ZeRO-1,
 * cg_dist_shard_optimizer); every run reports the optimizer state bytes of
 * the fullest rank and the time per step of the parameters' all-gather.
 * Models: mlp (784-256-128-10), cnn (the README's Fashion-MNIST CNN) and
 * transformer (clgrad-charlm's: 2 blocks, d_model 64, 4 heads, T 64,
 * vocabulary 65).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <clgrad/clgrad.h>
#include <clgrad/dist.h>

#define TF_T 64
#define TF_V 65
#define TF_D 64

struct opts {
    const char *model;
    int64_t batch;
    int steps, rounds, warmup;
    bool no_overlap, json, shard;
    double bucket_mb;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* This process's CPU time (all threads): on a busy machine a better
 * figure of the work per step than the wall clock. */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clgrad-dist-bench [options]   (alone or under mpirun)\n"
            "  --model M        mlp (default), cnn or transformer\n"
            "  --batch B        global batch (default 64; divides by the ranks)\n"
            "  --steps K        timed steps per round (default 20)\n"
            "  --rounds R       rounds (default 5): median and range\n"
            "  --warmup W       untimed steps first (default 3)\n"
            "  --no-overlap     all-reduce only after backward (measures the whole\n"
            "                   communication time)\n"
            "  --bucket-mb X    gradient bucket size (default 1)\n"
            "  --shard-optimizer  ZeRO-1: each rank keeps 1/N of Adam's state\n"
            "  --json           one JSON object instead of the text line\n");
}

static int parse(int argc, char **argv, struct opts *o)
{
    *o = (struct opts){.model = "mlp", .batch = 64, .steps = 20, .rounds = 5, .warmup = 3,
                       .bucket_mb = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        } else if (!strcmp(a, "--no-overlap")) {
            o->no_overlap = true;
        } else if (!strcmp(a, "--shard-optimizer")) {
            o->shard = true;
        } else if (!strcmp(a, "--json")) {
            o->json = true;
        } else if (v && !strcmp(a, "--model")) {
            o->model = v, i++;
        } else if (v && !strcmp(a, "--batch")) {
            o->batch = strtoll(v, &end, 10), i++;
        } else if (v && !strcmp(a, "--steps")) {
            o->steps = (int)strtol(v, &end, 10), i++;
        } else if (v && !strcmp(a, "--rounds")) {
            o->rounds = (int)strtol(v, &end, 10), i++;
        } else if (v && !strcmp(a, "--warmup")) {
            o->warmup = (int)strtol(v, &end, 10), i++;
        } else if (v && !strcmp(a, "--bucket-mb")) {
            o->bucket_mb = strtod(v, &end), i++;
        } else {
            fprintf(stderr, "clgrad-dist-bench: unknown option or missing value: '%s'\n", a);
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "clgrad-dist-bench: bad value '%s' for %s\n", v, a);
            return 2;
        }
    }
    if (strcmp(o->model, "mlp") && strcmp(o->model, "cnn") && strcmp(o->model, "transformer")) {
        fprintf(stderr, "clgrad-dist-bench: --model must be mlp, cnn or transformer\n");
        return 2;
    }
    if (o->batch < 1 || o->steps < 1 || o->rounds < 1 || o->warmup < 0 || !(o->bucket_mb > 0)) {
        fprintf(stderr, "clgrad-dist-bench: --batch, --steps, --rounds must be >= 1, "
                        "--warmup >= 0, --bucket-mb > 0\n");
        return 2;
    }
    return 0;
}

static cg_module *build(cg_ctx *ctx, const char *model)
{
    if (!strcmp(model, "mlp"))
        return cg_model_from_spec(ctx, "flatten, linear 256 relu, linear 128 relu, linear 10", 3,
                                  (int64_t[]){1, 28, 28}, NULL, NULL);
    if (!strcmp(model, "cnn"))
        return cg_model_from_spec(ctx,
                                  "conv 32 3 pad 1 relu, maxpool 2, conv 64 3 pad 1 relu, "
                                  "maxpool 2, flatten, linear 128 relu, linear 10",
                                  3, (int64_t[]){1, 28, 28}, NULL, NULL);
    cg_module *mods[6];
    int k = 0;
    mods[k++] = cg_embedding_module(ctx, TF_V, TF_D);
    mods[k++] = cg_positional_embedding_module(ctx, TF_T, TF_D);
    for (int b = 0; b < 2; b++) mods[k++] = cg_transformer_block_module(ctx, TF_D, 4, 4 * TF_D, 0.0f, true);
    mods[k++] = cg_layernorm_module(ctx, 1, (int64_t[]){TF_D});
    mods[k++] = cg_linear_module(ctx, TF_D, TF_V, true);
    return cg_sequential_module_array(ctx, k, mods);
}

static struct cg_dataset *make_data(const char *model, int64_t n)
{
    struct cg_dataset *ds = NULL;
    bool tf = !strcmp(model, "transformer");
    int64_t shape[3] = {1, 28, 28};
    cg_status st = tf ? cg_dataset_create(n, 1, (int64_t[]){TF_T}, true, TF_T, 0, &ds)
                      : cg_dataset_create(n, 3, shape, true, 0, 10, &ds);
    if (st != CG_OK) return NULL;
    uint64_t s = 99;
    int64_t per = tf ? TF_T : 784;
    for (int64_t i = 0; i < n * per; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ds->x[i] = tf ? (float)((s >> 33) % TF_V) : (float)((s >> 33) % 1000) / 1000.0f;
        if (tf) ds->y[i] = (float)((s >> 40) % TF_V);
    }
    if (!tf)
        for (int64_t i = 0; i < n; i++) ds->y[i] = (float)(i % 10);
    return ds;
}

static cg_tensor *step_loss(const char *model, cg_module *m, cg_tensor *x, cg_tensor *y)
{
    if (strcmp(model, "transformer"))
        return cg_cross_entropy_loss(cg_module_forward(m, x), y, CG_REDUCTION_MEAN, 0.0f);
    int64_t b = cg_tensor_dim(x, 0);
    cg_tensor *logits = cg_module_forward(m, x); /* (B, T, V) */
    return cg_cross_entropy_loss(cg_reshape(logits, CG_SHAPE(b * TF_T, TF_V)),
                                 cg_reshape(y, CG_SHAPE(b * TF_T)), CG_REDUCTION_MEAN, 0.0f);
}

int main(int argc, char **argv)
{
    struct opts o;
    int rc = parse(argc, argv, &o);
    if (rc) return rc == 1 ? 0 : rc;
    cg_ctx *ctx;
    if (cg_ctx_create(&ctx, &(struct cg_ctx_options){.seed = 1}) != CG_OK) {
        fprintf(stderr, "clgrad-dist-bench: %s\n", cg_last_error(NULL));
        return 1;
    }
    cg_dist *d = NULL;
    struct cg_dist_options dopt = {.bucket_bytes = (size_t)(o.bucket_mb * 1048576.0),
                                   .no_overlap = o.no_overlap};
    if (cg_dist_launched() && cg_dist_create(ctx, &dopt, &d) != CG_OK) {
        fprintf(stderr, "clgrad-dist-bench: %s\n", cg_last_error(ctx));
        cg_ctx_free(ctx);
        return 1;
    }
    int rank = cg_dist_rank(d), world = cg_dist_world_size(d);
    cg_module *m = build(ctx, o.model);
    int64_t n = o.batch * 8;
    struct cg_dataset *ds = make_data(o.model, n);
    cg_optim *opt = m ? cg_adam(m, 1e-3f) : NULL;
    cg_loader *ld = NULL;
    struct cg_loader_options lo = {.batch_size = o.batch, .shuffle = true,
                                   .shard_rank = rank, .shard_count = world};
    double *rate = calloc((size_t)o.rounds, sizeof *rate);
    double *wait = calloc((size_t)o.rounds, sizeof *wait);
    double *cpu = calloc((size_t)o.rounds, sizeof *cpu);
    double *gat = calloc((size_t)o.rounds, sizeof *gat);
    if (!m || !ds || !opt || !rate || !wait || !cpu || !gat || cg_dist_attach(d, m) != CG_OK ||
        (o.shard && cg_dist_shard_optimizer(d, opt) != CG_OK) ||
        cg_loader_create(ctx, ds, &lo, &ld) != CG_OK) {
        fprintf(stderr, "clgrad-dist-bench: rank %d: %s\n", rank, cg_last_error(ctx));
        rc = 1;
        goto out;
    }
    for (int r = -1; r < o.rounds && rc == 0; r++) {
        int k = r < 0 ? o.warmup : o.steps;
        cg_ctx_synchronize(ctx);
        cg_dist_barrier(d);
        cg_dist_reset_stats(d);
        double t0 = now_s(), c0 = cpu_s();
        for (int i = 0; i < k;) {
            cg_tensor *x, *y;
            if (cg_loader_next(ld, &x, &y) != CG_OK) {
                rc = 1;
                break;
            }
            if (!x) continue;
            cg_scope_begin(ctx);
            cg_tensor *loss = step_loss(o.model, m, x, y);
            cg_optim_zero_grad(opt);
            cg_status st = cg_backward(loss);
            if (st == CG_OK) st = cg_optim_step(opt);
            cg_scope_end(ctx);
            if (st != CG_OK) {
                rc = 1;
                break;
            }
            i++;
        }
        cg_ctx_synchronize(ctx);
        double t[4] = {now_s() - t0, 0, cpu_s() - c0, 0};
        struct cg_dist_stats ds_;
        cg_dist_get_stats(d, &ds_);
        t[1] = ds_.wait_s;
        t[3] = ds_.gather_s;
        cg_dist_allreduce_f64(d, t, 4, CG_DIST_MAX); /* the slowest rank sets the pace */
        if (r >= 0) {
            rate[r] = (double)o.batch * k / t[0];
            wait[r] = t[1] / k;
            cpu[r] = t[2] / k;
            gat[r] = t[3] / k;
        }
    }
    /* Adam's state on this rank (the fullest rank's, and all ranks'). */
    double state[2] = {0, 0};
    for (int i = 0; i < cg_optim_num_params(opt); i++)
        for (int s = 0; s < 3; s++) {
            cg_tensor *t = cg_optim_param_state(opt, cg_optim_param(opt, i), s);
            if (t) state[0] += 4.0 * (double)cg_tensor_numel(t); /* sharded: a range */
        }
    state[1] = state[0];
    cg_dist_allreduce_f64(d, state, 1, CG_DIST_MAX);
    cg_dist_allreduce_f64(d, state + 1, 1, CG_DIST_SUM);
    if (rc) {
        fprintf(stderr, "clgrad-dist-bench: rank %d: %s\n", rank, cg_last_error(ctx));
        cg_dist_abort(d, 1);
        goto out;
    }
    if (rank == 0) {
        qsort(rate, (size_t)o.rounds, sizeof *rate, cmp_double);
        qsort(wait, (size_t)o.rounds, sizeof *wait, cmp_double);
        qsort(cpu, (size_t)o.rounds, sizeof *cpu, cmp_double);
        qsort(gat, (size_t)o.rounds, sizeof *gat, cmp_double);
        double med = rate[o.rounds / 2], wmed = wait[o.rounds / 2], cmed = cpu[o.rounds / 2];
        double gmed = gat[o.rounds / 2];
        const char *thr = getenv("CLGRAD_CPU_THREADS");
        double mb = (double)cg_module_numel(m) * 4.0 / 1048576.0;
        if (o.json)
            printf("{\"model\": \"%s\", \"ranks\": %d, \"threads\": \"%s\", \"backend\": \"%s\", "
                   "\"batch\": %lld, \"overlap\": %s, \"samples_per_s\": %.1f, \"min\": %.1f, "
                   "\"max\": %.1f, \"step_ms\": %.3f, \"cpu_ms\": %.3f, \"wait_ms\": %.3f, "
                   "\"grad_mb\": %.3f, \"shard\": %s, \"state_mb\": %.3f, \"state_total_mb\": %.3f, "
                   "\"gather_ms\": %.3f}\n",
                   o.model, world, thr ? thr : "default", cg_ctx_backend_name(ctx),
                   (long long)o.batch, o.no_overlap ? "false" : "true", med, rate[0],
                   rate[o.rounds - 1], 1e3 * (double)o.batch / med, 1e3 * cmed, 1e3 * wmed, mb,
                   o.shard ? "true" : "false", state[0] / 1048576.0, state[1] / 1048576.0,
                   1e3 * gmed);
        else
            printf("%-11s ranks %d threads %-7s %-6s batch %lld%s: %8.1f samples/s [%.1f-%.1f] "
                                      "%7.2f ms/step (CPU %.2f ms), all-reduce wait %.3f ms/step, gradients %.2f MB, "
                   "Adam state %.2f MB/rank%s (all-gather %.3f ms/step)\n",
                   o.model, world, thr ? thr : "default", cg_ctx_backend_name(ctx),
                   (long long)o.batch, o.no_overlap ? " (no overlap)" : "", med, rate[0],
                   rate[o.rounds - 1], 1e3 * (double)o.batch / med, 1e3 * cmed, 1e3 * wmed, mb,
                   state[0] / 1048576.0, o.shard ? " sharded" : "", 1e3 * gmed);
    }
out:
    free(rate);
    free(wait);
    free(cpu);
    free(gat);
    cg_loader_free(ld);
    cg_optim_free(opt);
    cg_module_free(m);
    cg_dataset_free(ds);
    cg_dist_free(d);
    cg_ctx_free(ctx);
    return rc;
}
