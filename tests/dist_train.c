/*
 * tests/dist_train.c — a few training steps of a small model, on one
 * process or under mpirun (include/clgrad/dist.h), for tests/tools/test_dist.py.
 *
 *     dist_train MODEL STEPS BATCH [--samples N] [--mismatch] [--fail-rank R]
 *                [--optim sgd|adam|adamw] [--shard]
 *
 * MODEL: mlp, cnn (conv, BatchNorm, dropout, pool) or lstm (embedding,
 * LSTM, linear head). The data are generated from a fixed seed, the same on
 * every rank; BATCH is the global batch. Rank 0 prints the global loss of
 * every step ("step 3 loss 1.234567890e+00") and at the end the sum of
 * squares of the parameters ("params 1.2e+01"). Every rank checks that its
 * parameters are bitwise those of every other rank. Without mpirun no
 * cg_dist is made at all: the plain single-process run the others must
 * match. --mismatch makes rank 1 build a wider model, --fail-rank R makes
 * rank R fail alone at step 2 (as an unreadable file would).
 * --optim picks the optimizer (SGD with momentum 0.9 by default), --shard
 * shards it over the ranks (cg_dist_shard_optimizer, ZeRO-1); rank 0 then
 * prints the optimizer state's bytes, the largest on one rank and the sum
 * over the ranks ("state 1024 2048"), and the state of the largest
 * parameter tensor ("largest 800"), in bytes.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>
#include <clgrad/dist.h>

#define T_LEN 6   /* lstm sequence length */
#define VOCAB 7

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* Rank-tagged error and exit status 2 (every rank reaches it alike). */
static int fail(cg_dist *d, cg_ctx *ctx, const char *what)
{
    fprintf(stderr, "dist_train: rank %d: %s: %s\n", cg_dist_rank(d), what, cg_last_error(ctx));
    return 2;
}

static struct cg_dataset *make_data(const char *model, int64_t n)
{
    struct cg_dataset *ds = NULL;
    uint64_t s = 12345;
    if (!strcmp(model, "mlp")) {
        if (cg_dataset_create(n, 1, (int64_t[]){12}, true, 0, 4, &ds) != CG_OK) return NULL;
        for (int64_t i = 0; i < n; i++) {
            double acc = 0;
            for (int j = 0; j < 12; j++) {
                float v = (float)(lcg(&s) % 2001) / 1000.0f - 1.0f;
                ds->x[i * 12 + j] = v;
                acc += v * (j % 3 - 1);
            }
            ds->y[i] = (float)((acc > 0) * 2 + (lcg(&s) % 2));
        }
    } else if (!strcmp(model, "cnn")) {
        if (cg_dataset_create(n, 3, (int64_t[]){1, 8, 8}, true, 0, 3, &ds) != CG_OK) return NULL;
        for (int64_t i = 0; i < n * 64; i++) ds->x[i] = (float)(lcg(&s) % 1001) / 1000.0f;
        for (int64_t i = 0; i < n; i++) ds->y[i] = (float)(lcg(&s) % 3);
    } else {
        /* Next-token targets of a noisy counting sequence. */
        if (cg_dataset_create(n, 1, (int64_t[]){T_LEN}, true, T_LEN, 0, &ds) != CG_OK) return NULL;
        for (int64_t i = 0; i < n; i++) {
            int tok = (int)(lcg(&s) % VOCAB);
            for (int t = 0; t < T_LEN; t++) {
                ds->x[i * T_LEN + t] = (float)tok;
                tok = (tok + 1 + (lcg(&s) % 4 == 0)) % VOCAB;
                ds->y[i * T_LEN + t] = (float)tok;
            }
        }
    }
    return ds;
}

struct net {
    cg_module *body;                       /* mlp / cnn: the whole model  */
    cg_module *emb, *lstm, *head, *root;   /* lstm                        */
};

static cg_module *build(cg_ctx *ctx, const char *model, int wide, struct net *n)
{
    memset(n, 0, sizeof *n);
    if (!strcmp(model, "mlp")) {
        n->body = cg_model_from_spec(ctx, wide ? "linear 24 relu, linear 4" : "linear 16 relu, linear 4",
                                     1, (int64_t[]){12}, NULL, NULL);
        return n->body;
    }
    if (!strcmp(model, "cnn")) {
        n->body = cg_model_from_spec(ctx,
                                     wide ? "conv 6 3 pad 1, batchnorm, relu, dropout 0.25, "
                                            "maxpool 2, flatten, linear 3"
                                          : "conv 4 3 pad 1, batchnorm, relu, dropout 0.25, "
                                            "maxpool 2, flatten, linear 3",
                                     3, (int64_t[]){1, 8, 8}, NULL, NULL);
        return n->body;
    }
    /* One root module owns the three, so parameters have one order. */
    n->root = cg_sequential_module(ctx, 3, n->emb = cg_embedding_module(ctx, VOCAB, 8),
                                   n->lstm = cg_lstm_module(ctx, 8, wide ? 12 : 10, 1, true),
                                   n->head = cg_linear_module(ctx, wide ? 12 : 10, VOCAB, true));
    return n->root;
}

static cg_tensor *loss_of(const char *model, struct net *n, cg_tensor *x, cg_tensor *y)
{
    if (strcmp(model, "lstm")) return cg_cross_entropy_loss(cg_module_forward(n->body, x), y,
                                                            CG_REDUCTION_MEAN, 0.0f);
    int64_t b = cg_tensor_dim(x, 0);
    cg_tensor *h = cg_module_forward(n->lstm, cg_module_forward(n->emb, x)); /* (B, T, H) */
    cg_tensor *logits = cg_module_forward(n->head, cg_reshape(h, CG_SHAPE(b * T_LEN, -1)));
    return cg_cross_entropy_loss(logits, cg_reshape(y, CG_SHAPE(b * T_LEN)), CG_REDUCTION_MEAN, 0.0f);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: dist_train mlp|cnn|lstm STEPS BATCH [--samples N] "
                        "[--mismatch] [--fail-rank R]\n");
        return 2;
    }
    const char *model = argv[1];
    int steps = atoi(argv[2]);
    int64_t batch = atoll(argv[3]), samples = 3 * batch;
    int mismatch = 0, fail_rank = -1, shard = 0;
    const char *optim = "sgd";
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--samples") && i + 1 < argc) samples = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--mismatch")) mismatch = 1;
        else if (!strcmp(argv[i], "--fail-rank") && i + 1 < argc) fail_rank = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--optim") && i + 1 < argc) optim = argv[++i];
        else if (!strcmp(argv[i], "--shard")) shard = 1;
        else {
            fprintf(stderr, "dist_train: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    cg_ctx *ctx;
    if (cg_ctx_create(&ctx, &(struct cg_ctx_options){.seed = 7}) != CG_OK) {
        fprintf(stderr, "dist_train: %s\n", cg_last_error(NULL));
        return 2;
    }
    cg_dist *d = NULL;
    int rc = 0;
    if (cg_dist_launched() && cg_dist_create(ctx, NULL, &d) != CG_OK) {
        rc = fail(NULL, ctx, "cg_dist_create");
        cg_ctx_free(ctx);
        return rc;
    }
    int rank = cg_dist_rank(d), world = cg_dist_world_size(d);
    struct net net;
    cg_module *root = build(ctx, model, mismatch && rank == 1, &net);
    struct cg_dataset *ds = make_data(model, samples);
    cg_optim *opt = NULL;
    cg_loader *ld = NULL;
    if (!root || !ds) {
        rc = fail(d, ctx, "building the model and data");
        goto out;
    }
    if (cg_dist_attach(d, root) != CG_OK) {
        rc = fail(d, ctx, "cg_dist_attach");
        goto out;
    }
    struct cg_optim_options oo = cg_optim_defaults(CG_OPTIM_SGD);
    oo.lr = 0.1f;
    oo.momentum = 0.9f;
    if (strcmp(optim, "sgd")) {
        oo = cg_optim_defaults(CG_OPTIM_ADAM);
        oo.lr = 0.01f;
        if (!strcmp(optim, "adamw")) {
            oo.weight_decay = 0.1f;
            oo.decoupled_weight_decay = true;
        }
    }
    opt = cg_optim_create(root, &oo);
    if (opt && shard && cg_dist_shard_optimizer(d, opt) != CG_OK) {
        rc = fail(d, ctx, "cg_dist_shard_optimizer");
        goto out;
    }
    struct cg_loader_options lo = {.batch_size = batch, .shuffle = true,
                                   .shard_rank = rank, .shard_count = world};
    if (!opt || cg_loader_create(ctx, ds, &lo, &ld) != CG_OK) {
        rc = fail(d, ctx, "optimizer and loader");
        goto out;
    }
    for (int step = 0; step < steps;) {
        cg_tensor *x, *y;
        if (cg_loader_next(ld, &x, &y) != CG_OK) {
            rc = fail(d, ctx, "cg_loader_next");
            goto out;
        }
        if (!x) continue; /* end of an epoch */
        if (step == 2 && rank == fail_rank) {
            fprintf(stderr, "dist_train: rank %d: cannot read 'missing.bin' (a simulated "
                            "failure of one rank)\n", rank);
            cg_dist_abort(d, 3); /* ends every rank; returns with one rank */
            rc = 3;
            goto out;
        }
        cg_scope_begin(ctx);
        cg_tensor *loss = loss_of(model, &net, x, y);
        cg_optim_zero_grad(opt);
        cg_status st = cg_backward(loss);
        if (st == CG_OK && !cg_optim_clip_grad_norm(opt, 0.5f)) st = cg_ctx_status(ctx);
        if (st == CG_OK) st = cg_optim_step(opt);
        float l = 0;
        if (st == CG_OK) st = cg_tensor_item(loss, &l);
        cg_scope_end(ctx);
        if (st != CG_OK) {
            rc = fail(d, ctx, "training step");
            goto out;
        }
        double gl = l; /* every local batch has batch / N samples: mean of means */
        if (cg_dist_allreduce_f64(d, &gl, 1, CG_DIST_SUM) != CG_OK) {
            rc = fail(d, ctx, "loss all-reduce");
            goto out;
        }
        if (rank == 0) printf("step %d loss %.9e\n", step, gl / world);
        step++;
    }
    /* The optimizer state this rank holds: its largest and its sum over
     * the ranks (with --shard each rank holds only its share). */
    double state = 0, largest = 0; /* largest: one tensor's state */
    for (int i = 0; i < cg_optim_num_params(opt); i++) {
        cg_tensor *p = cg_optim_param(opt, i);
        double one = 0; /* sharded, a state holds this rank's elements only */
        for (int k = 0; k < 3; k++) {
            cg_tensor *t = cg_optim_param_state(opt, p, k);
            if (t) one += (double)cg_tensor_numel(t) * sizeof(float);
        }
        state += one;
        largest = one > largest ? one : largest;
    }
    double st_max = state, st_sum = state;
    if (cg_dist_allreduce_f64(d, &st_max, 1, CG_DIST_MAX) != CG_OK ||
        cg_dist_allreduce_f64(d, &st_sum, 1, CG_DIST_SUM) != CG_OK ||
        cg_dist_allreduce_f64(d, &largest, 1, CG_DIST_MAX) != CG_OK) {
        rc = fail(d, ctx, "state all-reduce");
        goto out;
    }
    if (rank == 0) printf("state %.0f %.0f\nlargest %.0f\n", st_max, st_sum, largest);
    /* The parameters, bitwise the same on every rank: FNV-1a of their bits,
     * as two exact 32-bit halves, MIN and MAX over the ranks. */
    int np = cg_module_parameters(root, NULL, 0);
    struct cg_named_tensor *nt = malloc(sizeof *nt * (size_t)np);
    cg_module_parameters(root, nt, np);
    uint64_t h = 0xcbf29ce484222325ull;
    double sq = 0;
    for (int i = 0; i < np && rc == 0; i++) {
        int64_t n = cg_tensor_numel(nt[i].tensor);
        float *v = malloc(sizeof *v * (size_t)n);
        if (cg_tensor_to_host(nt[i].tensor, v, n) != CG_OK) rc = fail(d, ctx, "reading parameters");
        for (int64_t k = 0; k < n && rc == 0; k++) {
            uint32_t bits;
            memcpy(&bits, &v[k], sizeof bits);
            h = (h ^ bits) * 0x100000001b3ull;
            sq += (double)v[k] * v[k];
        }
        free(v);
    }
    free(nt);
    if (rc == 0) {
        double lo_hi[2] = {(double)(h >> 32), (double)(h & 0xffffffffu)};
        double mn[2] = {lo_hi[0], lo_hi[1]}, mx[2] = {lo_hi[0], lo_hi[1]};
        if (cg_dist_allreduce_f64(d, mn, 2, CG_DIST_MIN) != CG_OK ||
            cg_dist_allreduce_f64(d, mx, 2, CG_DIST_MAX) != CG_OK) {
            rc = fail(d, ctx, "parameter check");
        } else if (mn[0] != mx[0] || mn[1] != mx[1]) {
            fprintf(stderr, "dist_train: rank %d: the parameters differ between ranks\n", rank);
            rc = 1;
        } else if (rank == 0) {
            printf("params %.9e\n", sq);
        }
    }
out:
    cg_loader_free(ld);
    cg_optim_free(opt);
    cg_module_free(root);
    cg_dataset_free(ds);
    cg_dist_free(d);
    cg_ctx_free(ctx);
    return rc;
}
