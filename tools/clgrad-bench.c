/*
 * clgrad-bench — how fast clgrad is on this machine, every backend side by
 * side in one run:
 *
 *   - the machine's own fp32 peak, from a multiply-add loop (bench_fma.c) of
 *     the widest FMA the cpu has (AVX-512, AVX2+FMA or plain C), at every
 *     thread count measured and on every core, from each thread's CPU time
 *     (a busy machine's other processes do not lower it);
 *   - GEMM GFLOP/s at N = 256, 512, 1024, 2048, and as a share of the peak
 *     at the set's thread count (every core for opencl: PoCL uses them all);
 *   - the cost of one small op (a one-element add) forward, and forward plus
 *     backward, in microseconds;
 *   - training throughput of the seed FFN (10-64-64-1, batch 32, Adam, MSE),
 *     the Fashion-MNIST MLP (784-256-128-10, batch 64, Adam, cross entropy)
 *     and CNN (clgrad-train's: two 3x3 conv + max-pool stages, batch 64), a
 *     character-level LSTM (embedding 64, hidden 128) and a 2-block d=64
 *     causal Transformer (both batch 32 x 64 tokens, vocabulary 65), all on
 *     synthetic data of the datasets' shapes (speed does not depend on the
 *     values, and the bench then runs anywhere);
 *   - training throughput as a share of the FMA peak, from each model's
 *     FLOPs per sample (train_flops: its GEMMs and convolutions, forward
 *     and both backward products, counted from the model's shapes);
 *   - peak host memory (getrusage ru_maxrss) and peak device-pool memory
 *     (cg_ctx_stats bytes_peak) of each training run;
 *   - cold and warm start: process start to the end of the MLP's first
 *     step with empty program caches (clgrad's, PoCL's and the NVIDIA
 *     driver's, all pointed at a new folder), then again with them filled.
 *
 * Each measurement repeats (--reps) and reports min, median and max; there
 * is no pass/fail. With --compare-torch, tools/bench_torch.py runs the same
 * configurations in PyTorch in the same run (when python3 can import torch)
 * and the table adds the ratios. PyTorch gets its best settings: each
 * torch set runs in every configuration of torch_cfgs (its defaults, and
 * tuned environments: OpenBLAS without a pool of its own beside torch's,
 * glibc's malloc thresholds raised, OMP_WAIT_POLICY=PASSIVE), and each
 * cell takes the faster, naming it. clgrad's opencl (which uses every
 * core) is compared against torch at every core. With --threads 1,2 the cpu backend (and
 * torch) is measured once per thread count, each its own column ("cpu 1t",
 * "cpu 2t"), and a second table gives the 2-thread / 1-thread ratios.
 *
 *   clgrad-bench                       all backends, full sizes, 5 reps
 *   clgrad-bench --quick --reps 1      a smoke run (well under 2 minutes)
 *   clgrad-bench --backends cpu --threads 1 --compare-torch --json out.json
 *   clgrad-bench --backends cpu --threads 1,2 --compare-torch --rounds 3
 *
 * How: each (set, group of measurements) runs in a fresh child process
 * (this program re-executed with --child, or bench_torch.py), so one group's
 * peak RSS, its device pool and its OpenCL runtime never leak into another's
 * figures, and a crash in one backend leaves the others' results. A set is a
 * backend at one thread count, or torch at one. The children run group-major
 * -- gemm of every set, then op of every set, ... -- and --rounds repeats
 * that whole pass (odd rounds with the sets in reverse order), each round's
 * values added to the same statistics: this machine's speed drifts by tens
 * of percent over minutes, so sets compared must run seconds apart, not
 * minutes. The scaling table's per-round ratios (each round's N-thread
 * median over its 1-thread median) are the figures that drift cancels
 * from. A child prints lines
 *   stat NAME UNIT V1 V2 ...       one value per repetition
 *   info KEY VALUE                 free text (device name, first-call time)
 * on stdout; bench_torch.py speaks the same protocol.
 */
#define _XOPEN_SOURCE 700     /* nftw, to remove the cold-start cache folder */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <clgrad/clgrad.h>

extern char **environ;

/* bench_fma.c, built plainly and (where the compiler can) for AVX2 + FMA
 * and for AVX-512. */
double bench_fma_generic(int64_t iters, float *sink);
#ifdef BENCH_HAVE_AVX2_FMA
double bench_fma_avx2(int64_t iters, float *sink);
#endif
#ifdef BENCH_HAVE_AVX512
double bench_fma_avx512(int64_t iters, float *sink);
#endif

#ifndef BENCH_TORCH_SCRIPT
#define BENCH_TORCH_SCRIPT "bench_torch.py"
#endif
#ifndef BENCH_TORCH_SCRIPT_INSTALLED
#define BENCH_TORCH_SCRIPT_INSTALLED ""
#endif
#ifndef BENCH_VERSION
#define BENCH_VERSION "unknown"
#endif

#define MAX_BACKENDS 8
#define MAX_STATS 64
#define MAX_INFOS 32
#define MAX_REPS 100         /* a child's repetitions                     */
#define MAX_ROUNDS 20
#define MAX_VALUES 200       /* of one stat over all rounds: reps x rounds */
#define MAX_THREAD_COUNTS 4  /* values of --threads                       */
#define N_TORCH_CFGS 3
#define MAX_SETS (MAX_BACKENDS + MAX_THREAD_COUNTS + N_TORCH_CFGS * (MAX_THREAD_COUNTS + 1))
#define MAX_PEAKS (MAX_THREAD_COUNTS + 2)   /* 1, each --threads count, every core */

#define DEFAULT_GEMM_SIZES "256,512,1024,2048"
#define MAX_GEMM_SIZES 8

/* ---- options ----------------------------------------------------------- */

struct options {
    char backends[256];     /* comma-separated; "" = every backend found   */
    bool quick;
    int reps;
    int rounds;             /* group-major passes over every set            */
    int threads[MAX_THREAD_COUNTS];     /* --threads LIST                   */
    int n_threads;          /* 0 = leave OpenBLAS / torch at their defaults */
    char gemm_sizes[128];   /* --gemm-sizes, as given to the children       */
    const char *json;
    bool compare_torch;
    unsigned only;          /* --only: bit g runs group g; 0 = every group  */
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: clgrad-bench [options]\n"
        "\n"
        "Measures GEMM GFLOP/s (and the share of this machine's measured FMA\n"
        "peak), the cost of a small op, training throughput (and its share of the\n"
        "peak), peak memory and the cold and warm start of the MLP's first step,\n"
        "for each backend side by side. Reports min/median/max over repetitions.\n"
        "Every set (a backend or torch at one thread count) runs one group of\n"
        "measurements before any set runs the next, so slow drift hits all alike.\n"
        "\n"
        "  --backends LIST    comma-separated backends (default: every one found,\n"
        "                     e.g. cpu,opencl)\n"
        "  --quick            smaller, shorter runs (a smoke test: under ~2 minutes)\n"
        "  --reps N           repetitions per measurement (default 5, --quick 3)\n"
        "  --rounds K         repeat the whole interleaved pass K times (default 1;\n"
        "                     odd rounds take the sets in reverse order), every\n"
        "                     round's values in the same min/median/max; with\n"
        "                     several --threads, also per-round scaling ratios\n"
        "  --threads LIST     thread counts for the cpu backend and for torch,\n"
        "                     comma-separated (e.g. 1,2): sets CLGRAD_CPU_THREADS\n"
        "                     and OPENBLAS_NUM_THREADS in the children, so 1 means\n"
        "                     one core (default: the libraries' own defaults, i.e.\n"
        "                     every core). Several counts: one column per count\n"
        "                     (\"cpu 1t\", \"cpu 2t\"; torch likewise, each clgrad\n"
        "                     column's ratios against torch at its count) and a\n"
        "                     table of each count's rates over the first count's;\n"
        "                     other backends run once, with the first count\n"
        "  --gemm-sizes LIST  GEMM sizes N (N x N x N), comma-separated (default\n"
        "                     " DEFAULT_GEMM_SIZES "; a GPU wants 4096 too)\n"
        "  --only LIST        only these groups, comma-separated: start, gemm,\n"
        "                     op, ffn, mlp, cnn, lstm, transformer (default:\n"
        "                     all), e.g. --only cnn to compare one model\n"
        "  --json FILE        also write every value to FILE as JSON\n"
        "  --compare-torch    run the same configurations in PyTorch (python3 +\n"
        "                     torch, via bench_torch.py) and print the ratios;\n"
        "                     torch runs with its defaults and with tuned\n"
        "                     environments, and each cell takes the faster (the\n"
        "                     table names it); opencl is compared with torch on\n"
        "                     every core. The python is $CLGRAD_PYTHON, else the\n"
        "                     first of python3 and /usr/bin/python3 that imports\n"
        "                     torch\n"
        "  -h, --help         this text\n");
}

static bool parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

/* A comma-separated list of up to max distinct integers in [lo, hi]. */
static bool parse_list(const char *s, int lo, int hi, int *v, int max, int *n)
{
    char list[256];
    snprintf(list, sizeof list, "%s", s);
    *n = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int x;
        if (*n == max || !parse_int(tok, lo, hi, &x)) return false;
        for (int i = 0; i < *n; i++)
            if (v[i] == x) return false;
        v[(*n)++] = x;
    }
    return *n > 0;
}

/* ---- time and statistics ---------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void min_median_max(const double *v, int n, double *mn, double *med, double *mx)
{
    double s[MAX_VALUES];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    *mn = s[0];
    *mx = s[n - 1];
    *med = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* ======================================================================== *
 *  Child side: one backend, one group of measurements, results on stdout.  *
 * ======================================================================== */

struct child {
    cg_ctx *ctx;
    const char *backend;
    bool quick;
    int reps;
    int gemm_sizes[MAX_GEMM_SIZES];
    int n_gemm_sizes;
};

static void emit_stat(const char *name, const char *unit, const double *v, int n)
{
    printf("stat %s %s", name, unit);
    for (int i = 0; i < n; i++) printf(" %.6g", v[i]);
    printf("\n");
    fflush(stdout);
}

static void emit_info(const char *key, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void emit_info(const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("info %s ", key);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

static int child_fail(struct child *c, const char *what)
{
    fprintf(stderr, "clgrad-bench: %s on %s: %s\n", what, c->backend,
            cg_last_error(c->ctx));
    return 1;
}

/* Seconds one repetition should last: long enough for a stable figure. */
static double rep_seconds(const struct child *c) { return c->quick ? 0.15 : 0.6; }

/* Repetitions of `count` calls of fn, each timed; fills secs[rep]. */
typedef cg_status (*work_fn)(struct child *c, void *arg, int64_t count);

static cg_status time_reps(struct child *c, work_fn fn, void *arg, int64_t count, double *secs)
{
    for (int r = 0; r < c->reps; r++) {
        double t0 = now_s();
        cg_status s = fn(c, arg, count);
        if (s == CG_OK) s = cg_ctx_synchronize(c->ctx);
        if (s != CG_OK) return s;
        secs[r] = now_s() - t0;
    }
    return CG_OK;
}

/* Warms fn up and picks a count so that one repetition lasts about
 * rep_seconds (at least min_count). */
static cg_status calibrate(struct child *c, work_fn fn, void *arg, int64_t min_count,
                           int64_t *count)
{
    int64_t n = min_count;
    for (;;) {
        double t0 = now_s();
        cg_status s = fn(c, arg, n);
        if (s == CG_OK) s = cg_ctx_synchronize(c->ctx);
        if (s != CG_OK) return s;
        double dt = now_s() - t0;
        double want = rep_seconds(c);
        if (dt >= 0.25 * want || n >= ((int64_t)1 << 40)) {
            double per = dt / (double)n;
            int64_t k = per > 0 ? (int64_t)(want / per) : n;
            *count = k > min_count ? k : min_count;
            return CG_OK;
        }
        n *= 4;
    }
}

/* ---- GEMM --------------------------------------------------------------- */

struct gemm_arg {
    const struct cg_backend_i *be;
    void *bctx;
    struct cg_gemm_desc d;
    struct cg_ptr a, b, c;
};

static cg_status gemm_work(struct child *c, void *p, int64_t count)
{
    struct gemm_arg *g = p;
    for (int64_t i = 0; i < count; i++) {
        cg_status s = g->be->gemm(g->bctx, &g->d, g->a, g->b, g->c);
        if (s != CG_OK) {
            fprintf(stderr, "clgrad-bench: gemm on %s: %s\n", c->backend,
                    g->be->last_error(g->bctx));
            return s;
        }
    }
    return CG_OK;
}

static struct cg_ptr ptr_of(const cg_tensor *t)
{
    struct cg_view v = cg_tensor_view(t);
    struct cg_ptr p = {v.buf, v.off};
    return p;
}

static int child_gemm(struct child *c)
{
    for (int si = 0; si < c->n_gemm_sizes; si++) {
        int64_t n = c->gemm_sizes[si];
        cg_tensor *a = cg_tensor_uniform(c->ctx, CG_SHAPE(n, n), -1.0f, 1.0f);
        cg_tensor *b = cg_tensor_uniform(c->ctx, CG_SHAPE(n, n), -1.0f, 1.0f);
        cg_tensor *out = cg_tensor_zeros(c->ctx, CG_SHAPE(n, n));
        if (!a || !b || !out) return child_fail(c, "allocating GEMM operands");
        struct gemm_arg g = {
            .d = {.m = n, .n = n, .k = n, .alpha = 1.0f, .beta = 0.0f, .lda = n, .ldb = n,
                  .ldc = n, .batch = 1},
            .a = ptr_of(a), .b = ptr_of(b), .c = ptr_of(out),
        };
        g.be = cg_ctx_backend(c->ctx, &g.bctx);
        /* The first call may compile kernels (OpenCL): timed on its own. */
        double t0 = now_s();
        if (gemm_work(c, &g, 1) != CG_OK || cg_ctx_synchronize(c->ctx) != CG_OK)
            return child_fail(c, "GEMM");
        char key[64];
        snprintf(key, sizeof key, "gemm_%d_first_call_s", (int)n);
        emit_info(key, "%.4f", now_s() - t0);
        int64_t count;
        double secs[MAX_REPS], gflops[MAX_REPS];
        if (calibrate(c, gemm_work, &g, 1, &count) != CG_OK ||
            time_reps(c, gemm_work, &g, count, secs) != CG_OK)
            return child_fail(c, "GEMM");
        for (int r = 0; r < c->reps; r++)
            gflops[r] = 2.0 * (double)n * (double)n * (double)n * (double)count / secs[r] * 1e-9;
        snprintf(key, sizeof key, "gemm_%d", (int)n);
        emit_stat(key, "GFLOP/s", gflops, c->reps);
        cg_tensor_free(a);
        cg_tensor_free(b);
        cg_tensor_free(out);
    }
    return 0;
}

/* ---- one small op --------------------------------------------------------- */

struct op_arg {
    cg_tensor *a, *b;
    bool backward;
};

static cg_status op_work(struct child *c, void *p, int64_t count)
{
    struct op_arg *o = p;
    for (int64_t i = 0; i < count; i++) {
        cg_scope_begin(c->ctx);
        cg_tensor *y = cg_add(o->a, o->b);
        cg_status s = !y ? cg_ctx_status(c->ctx) : o->backward ? cg_backward(y) : CG_OK;
        cg_scope_end(c->ctx);
        if (s != CG_OK) return s;
    }
    return CG_OK;
}

static int child_op(struct child *c)
{
    float one = 1.5f, two = -0.25f;
    struct op_arg o = {
        .a = cg_tensor_from_host(c->ctx, CG_SHAPE(1), &one),
        .b = cg_tensor_from_host(c->ctx, CG_SHAPE(1), &two),
    };
    if (!o.a || !o.b || cg_tensor_set_requires_grad(o.a, true) != CG_OK)
        return child_fail(c, "creating the op's inputs");
    const char *names[2] = {"op_fwd", "op_fwd_bwd"};
    for (int k = 0; k < 2; k++) {
        o.backward = k == 1;
        int64_t count;
        double secs[MAX_REPS], us[MAX_REPS];
        if (calibrate(c, op_work, &o, 100, &count) != CG_OK ||
            time_reps(c, op_work, &o, count, secs) != CG_OK)
            return child_fail(c, "the small op");
        for (int r = 0; r < c->reps; r++) us[r] = secs[r] / (double)count * 1e6;
        emit_stat(names[k], "us", us, c->reps);
    }
    cg_tensor_free(o.a);
    cg_tensor_free(o.b);
    return 0;
}

/* ---- training ------------------------------------------------------------- */

enum loss_kind { LOSS_MSE, LOSS_CE };

struct train_cfg {
    const char *name;       /* stat prefix                                  */
    const char *unit;       /* headline unit: steps/s, samples/s, tokens/s  */
    int64_t batch;
    int x_ndim;
    int64_t x_shape[4];     /* one sample                                    */
    int64_t classes;        /* CE: classes (or vocabulary); MSE: target width */
    enum loss_kind loss;
    int64_t seq;            /* > 0: x holds token ids (batch, seq), one
                               target per token; throughput in tokens      */
};

#define VOCAB 65            /* a character-level text's alphabet          */
#define SEQ 64

static const struct train_cfg train_cfgs[] = {
    {"ffn", "steps/s", 32, 1, {10}, 1, LOSS_MSE, 0},
    {"mlp", "samples/s", 64, 1, {784}, 10, LOSS_CE, 0},
    {"cnn", "samples/s", 64, 3, {1, 28, 28}, 10, LOSS_CE, 0},
    {"lstm", "tokens/s", 32, 1, {SEQ}, VOCAB, LOSS_CE, SEQ},
    {"transformer", "tokens/s", 32, 1, {SEQ}, VOCAB, LOSS_CE, SEQ},
};
#define N_TRAIN ((int)(sizeof train_cfgs / sizeof train_cfgs[0]))

/* The models, as tools/bench_torch.py builds them in PyTorch. */
static cg_module *build_model(cg_ctx *ctx, const struct train_cfg *cfg)
{
    if (strcmp(cfg->name, "ffn") == 0)       /* the seed program's model */
        return cg_sequential_module(ctx, 5, cg_linear_module(ctx, 10, 64, true), cg_relu_module(ctx),
                             cg_linear_module(ctx, 64, 64, true), cg_relu_module(ctx),
                             cg_linear_module(ctx, 64, 1, true));
    if (strcmp(cfg->name, "mlp") == 0)       /* clgrad-train's Fashion-MNIST MLP */
        return cg_sequential_module(ctx, 5, cg_linear_module(ctx, 784, 256, true), cg_relu_module(ctx),
                             cg_linear_module(ctx, 256, 128, true), cg_relu_module(ctx),
                             cg_linear_module(ctx, 128, 10, true));
    if (strcmp(cfg->name, "cnn") == 0)       /* clgrad-train --help's CNN */
        return cg_model_from_spec(ctx,
                                  "conv 32 3 pad 1 relu, maxpool 2, conv 64 3 pad 1 relu, "
                                  "maxpool 2, flatten, linear 128 relu, linear 10",
                                  cfg->x_ndim, cfg->x_shape, NULL, NULL);
    if (strcmp(cfg->name, "lstm") == 0)      /* char-level: embed 64, LSTM 128 */
        return cg_sequential_module(ctx, 3, cg_embedding_module(ctx, VOCAB, 64),
                             cg_lstm_module(ctx, 64, 128, 1, true), cg_linear_module(ctx, 128, VOCAB, true));
    /* transformer: d = 64, 4 heads, feed-forward 256, 2 causal pre-norm blocks */
    return cg_sequential_module(ctx, 5, cg_embedding_module(ctx, VOCAB, 64),
                         cg_positional_embedding_module(ctx, SEQ, 64),
                         cg_transformer_block_module(ctx, 64, 4, 256, 0.0f, true),
                         cg_transformer_block_module(ctx, 64, 4, 256, 0.0f, true),
                         cg_linear_module(ctx, 64, VOCAB, true));
}

/* Floating-point operations of one training step per unit of the model's
 * rate (a step for the FFN, a sample, a token), from build_model's shapes:
 * 2 per multiply-add of every GEMM and convolution, in the forward pass,
 * the weight gradient and the input gradient (none for a layer fed by the
 * data, whose input needs no gradient). Elementwise ops, pooling, softmax,
 * LayerNorm and Adam are left out, so the share of the peak this gives is
 * a lower bound of the work done. */
static double linear_macs(double in, double out) { return in * out; }
/* A k x k convolution of cin -> cout channels over an h x w output. */
static double conv_macs(double cin, double cout, double k, double h, double w)
{
    return cin * cout * k * k * h * w;
}

static double train_flops(const struct train_cfg *cfg)
{
    double first = 0, rest = 0;         /* multiply-adds of one forward */
    double per = 1;                     /* units per forward counted    */
    if (strcmp(cfg->name, "ffn") == 0) {
        first = linear_macs(10, 64);
        rest = linear_macs(64, 64) + linear_macs(64, 1);
        per = 1.0 / (double)cfg->batch;            /* the rate is in steps */
    } else if (strcmp(cfg->name, "mlp") == 0) {
        first = linear_macs(784, 256);
        rest = linear_macs(256, 128) + linear_macs(128, 10);
    } else if (strcmp(cfg->name, "cnn") == 0) {
        first = conv_macs(1, 32, 3, 28, 28);                    /* pad 1: 28x28 */
        rest = conv_macs(32, 64, 3, 14, 14) + linear_macs(64 * 7 * 7, 128) +
               linear_macs(128, 10);
    } else if (strcmp(cfg->name, "lstm") == 0) {
        /* Per token: the 4 gates from input (64) and hidden (128) state, and
         * the output layer; the embedding is a lookup and needs the LSTM's
         * input gradient, so nothing is "first". */
        rest = linear_macs(64 + 128, 4 * 128) + linear_macs(128, VOCAB);
    } else if (strcmp(cfg->name, "transformer") == 0) {
        /* Per token and block (d 64, ff 256): QKV and output projections,
         * the scores Q K^T and the weighted sum over SEQ keys (computed in
         * full, masked after), the feed-forward pair; then the output layer. */
        double block = linear_macs(64, 3 * 64) + 2.0 * SEQ * 64 + linear_macs(64, 64) +
                       linear_macs(64, 256) + linear_macs(256, 64);
        rest = 2 * block + linear_macs(64, VOCAB);
    } else {
        return 0;
    }
    /* forward + weight gradient for every layer, input gradient for rest */
    return 2.0 * (2.0 * (first + rest) + rest) / per;
}

#define TRAIN_BATCHES 16    /* distinct synthetic batches, reused in turn */

struct train_arg {
    const struct train_cfg *cfg;
    cg_module *model;
    cg_optim *opt;
    float *xs, *ys;         /* TRAIN_BATCHES batches                       */
    int64_t x_elems, y_elems;   /* per batch                               */
    int64_t next;
    float last_loss;
};

static cg_status train_work(struct child *c, void *p, int64_t count)
{
    struct train_arg *t = p;
    const struct train_cfg *cfg = t->cfg;
    for (int64_t i = 0; i < count; i++) {
        int64_t k = t->next++ % TRAIN_BATCHES;
        cg_scope_begin(c->ctx);
        int64_t xshape[5] = {cfg->batch};
        memcpy(xshape + 1, cfg->x_shape, sizeof(int64_t) * (size_t)cfg->x_ndim);
        cg_tensor *x = cg_tensor_from_host(c->ctx, cfg->x_ndim + 1, xshape,
                                           t->xs + k * t->x_elems);
        cg_tensor *y = cfg->loss == LOSS_CE
                           ? cg_tensor_from_host(c->ctx, CG_SHAPE(t->y_elems),
                                                 t->ys + k * t->y_elems)
                           : cg_tensor_from_host(c->ctx, CG_SHAPE(cfg->batch, cfg->classes),
                                                 t->ys + k * t->y_elems);
        cg_tensor *out = cg_module_forward(t->model, x);
        if (cfg->seq > 0) out = cg_reshape(out, CG_SHAPE(-1, cfg->classes)); /* (B*T, V) */
        cg_tensor *loss = cfg->loss == LOSS_CE
                              ? cg_cross_entropy_loss(out, y, CG_REDUCTION_MEAN, 0.0f)
                              : cg_mse_loss(out, y, CG_REDUCTION_MEAN);
        cg_optim_zero_grad(t->opt);
        cg_status s = cg_backward(loss);
        if (s == CG_OK) s = cg_optim_step(t->opt);
        /* Only the last step reads the loss: a host read is a device sync. */
        if (s == CG_OK && i == count - 1) s = cg_tensor_item(loss, &t->last_loss);
        cg_scope_end(c->ctx);
        if (s != CG_OK) return s;
    }
    return CG_OK;
}

static int child_train(struct child *c, const struct train_cfg *cfg, double t_start)
{
    struct train_arg t = {.cfg = cfg};
    int64_t sample = 1;
    for (int d = 0; d < cfg->x_ndim; d++) sample *= cfg->x_shape[d];
    t.x_elems = cfg->batch * sample;
    t.y_elems = cfg->loss == LOSS_CE ? cfg->batch * (cfg->seq > 0 ? cfg->seq : 1)
                                     : cfg->batch * cfg->classes;
    t.xs = malloc(sizeof(float) * (size_t)(t.x_elems * TRAIN_BATCHES));
    t.ys = malloc(sizeof(float) * (size_t)(t.y_elems * TRAIN_BATCHES));
    if (!t.xs || !t.ys) {
        free(t.xs);
        free(t.ys);
        fprintf(stderr, "clgrad-bench: out of host memory for synthetic data\n");
        return 1;
    }
    /* Synthetic data: pixels in [0, 1) like scaled images, class labels, or
     * a smooth regression target. */
    for (int64_t i = 0; i < t.x_elems * TRAIN_BATCHES; i++)
        t.xs[i] = cfg->seq > 0 ? (float)(cg_rand_u64(c->ctx) % (uint64_t)cfg->classes)
                               : (float)cg_rand_uniform(c->ctx);
    for (int64_t i = 0; i < t.y_elems * TRAIN_BATCHES; i++)
        t.ys[i] = cfg->loss == LOSS_CE ? (float)(cg_rand_u64(c->ctx) % (uint64_t)cfg->classes)
                                       : (float)cg_rand_normal(c->ctx);
    cg_ctx_reset_stats(c->ctx);
    t.model = build_model(c->ctx, cfg);
    t.opt = t.model ? cg_adam(t.model, 1e-3f) : NULL;
    int rc = 0;
    if (!t.opt) {
        rc = child_fail(c, "building the model");
        goto out;
    }
    /* The first step, from process start: the warm-start cost. */
    if (train_work(c, &t, 1) != CG_OK) {
        rc = child_fail(c, "training");
        goto out;
    }
    char key[64];
    snprintf(key, sizeof key, "%s_first_step_s", cfg->name);
    emit_info(key, "%.4f", now_s() - t_start);
    int64_t count;
    double secs[MAX_REPS], v[MAX_REPS];
    if (calibrate(c, train_work, &t, c->quick ? 5 : 20, &count) != CG_OK ||
        time_reps(c, train_work, &t, count, secs) != CG_OK) {
        rc = child_fail(c, "training");
        goto out;
    }
    if (!isfinite(t.last_loss)) {
        fprintf(stderr, "clgrad-bench: %s on %s: the loss is %g\n", cfg->name, c->backend,
                (double)t.last_loss);
        rc = 1;
        goto out;
    }
    double per = strcmp(cfg->unit, "steps/s") == 0 ? 1.0
                 : (double)cfg->batch * (cfg->seq > 0 ? (double)cfg->seq : 1.0);
    for (int r = 0; r < c->reps; r++) v[r] = (double)count * per / secs[r];
    snprintf(key, sizeof key, "%s", cfg->name);
    emit_stat(key, cfg->unit, v, c->reps);

    /* Memory: the whole process's RSS high-water mark, and the pool's. */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    struct cg_backend_stats st;
    cg_ctx_stats(c->ctx, &st);
    double rss = (double)ru.ru_maxrss / 1024.0, pool = (double)st.bytes_peak / 1048576.0;
    snprintf(key, sizeof key, "%s_peak_rss", cfg->name);
    emit_stat(key, "MiB", &rss, 1);
    snprintf(key, sizeof key, "%s_pool_peak", cfg->name);
    emit_stat(key, "MiB", &pool, 1);
out:
    cg_optim_free(t.opt);
    cg_module_free(t.model);
    free(t.xs);
    free(t.ys);
    return rc;
}

/* "cold" / "warm": process start to the end of the MLP's first step (the
 * parent points the program caches at an empty folder, then runs this
 * again on the filled one). Just that step: nothing else warms anything. */
static int child_start(struct child *c, const char *which, double t_start)
{
    const struct train_cfg *cfg = &train_cfgs[1];          /* mlp */
    float *x = calloc((size_t)(cfg->batch * cfg->x_shape[0]), sizeof *x);
    float *y = calloc((size_t)cfg->batch, sizeof *y);
    cg_module *model = build_model(c->ctx, cfg);
    cg_optim *opt = model ? cg_adam(model, 1e-3f) : NULL;
    int rc = 0;
    if (!x || !y || !opt) {
        rc = child_fail(c, "building the model");
        goto out;
    }
    for (int64_t i = 0; i < cfg->batch * cfg->x_shape[0]; i++) x[i] = (float)cg_rand_uniform(c->ctx);
    for (int64_t i = 0; i < cfg->batch; i++) y[i] = (float)(i % cfg->classes);
    struct train_arg t = {.cfg = cfg, .model = model, .opt = opt, .xs = x, .ys = y,
                          .x_elems = cfg->batch * cfg->x_shape[0], .y_elems = cfg->batch};
    /* train_work reads its batch k = next % TRAIN_BATCHES: batch 0 only. */
    if (train_work(c, &t, 1) != CG_OK || cg_ctx_synchronize(c->ctx) != CG_OK) {
        rc = child_fail(c, "the first step");
        goto out;
    }
    double dt = now_s() - t_start;
    char key[64];
    snprintf(key, sizeof key, "mlp_%s_start", which);
    emit_stat(key, "s", &dt, 1);
out:
    cg_optim_free(opt);
    cg_module_free(model);
    free(x);
    free(y);
    return rc;
}

static const char *device_type_name(enum cg_device_type t)
{
    switch (t) {
    case CG_DEVICE_CPU: return "cpu";
    case CG_DEVICE_GPU: return "gpu";
    case CG_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

static int child_main(const char *backend, const char *group, bool quick, int reps,
                      const char *gemm_sizes)
{
    double t_start = now_s();
    struct child c = {.backend = backend, .quick = quick, .reps = reps};
    if (!parse_list(gemm_sizes, 1, 65536, c.gemm_sizes, MAX_GEMM_SIZES, &c.n_gemm_sizes)) return 2;
    struct cg_ctx_options o = {.backend = backend, .seed = 1234};
    if (cg_ctx_create(&c.ctx, &o) != CG_OK) {
        fprintf(stderr, "clgrad-bench: backend %s: %s\n", backend, cg_last_error(NULL));
        return 1;
    }
    emit_info("device", "%s", cg_ctx_device(c.ctx)->name);
    emit_info("device_type", "%s", device_type_name(cg_ctx_device(c.ctx)->type));
    int rc = 2;
    if (strcmp(group, "cold") == 0 || strcmp(group, "warm") == 0)
        rc = child_start(&c, group, t_start);
    else if (strcmp(group, "gemm") == 0) rc = child_gemm(&c);
    else if (strcmp(group, "op") == 0) rc = child_op(&c);
    for (int i = 0; i < N_TRAIN; i++)
        if (strcmp(group, train_cfgs[i].name) == 0) rc = child_train(&c, &train_cfgs[i], t_start);
    if (rc == 2) fprintf(stderr, "clgrad-bench: unknown measurement group '%s'\n", group);
    cg_ctx_free(c.ctx);
    return rc;
}

/* ======================================================================== *
 *  Parent side: machine peak, children, table, JSON.                       *
 * ======================================================================== */

/* "start" runs the children "cold" and "warm" (clgrad's sets only). */
static const char *groups[] = {"start", "gemm", "op", "ffn", "mlp", "cnn", "lstm", "transformer"};
#define N_GROUPS ((int)(sizeof groups / sizeof groups[0]))

/* PyTorch's configurations: each torch set runs in every one (as its own
 * set, side by side), and each cell of the table takes the fastest. The
 * first is torch as installed (torch.set_num_threads(N) and
 * OPENBLAS_NUM_THREADS=N, the --threads variables). The others:
 *   - OPENBLAS_NUM_THREADS=1: Debian's torch calls OpenBLAS (pthread
 *     build) for GEMM, whose own N-thread pool otherwise fights torch's
 *     OpenMP pool for the same cores;
 *   - MALLOC_MMAP_THRESHOLD_ (32 MiB, glibc's upper limit) and
 *     MALLOC_TRIM_THRESHOLD_ (1 GiB): glibc otherwise maps, page-faults and
 *     unmaps torch's large temporaries every step;
 *   - OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep instead of
 *     spinning, which helps where the threads outnumber free cores (it
 *     changes nothing on one thread, so it is tried only on several). */
struct torch_cfg {
    const char *name;
    bool multi_only;            /* only with more than one thread */
    const char *vars[5];        /* NULL-terminated "NAME=VALUE" */
};
static const struct torch_cfg torch_cfgs[N_TORCH_CFGS] = {
    {"default", false, {NULL}},
    {"tuned", false, {"OPENBLAS_NUM_THREADS=1", "MALLOC_MMAP_THRESHOLD_=33554432",
                      "MALLOC_TRIM_THRESHOLD_=1073741824", NULL}},
    {"passive", true, {"OPENBLAS_NUM_THREADS=1", "MALLOC_MMAP_THRESHOLD_=33554432",
                       "MALLOC_TRIM_THRESHOLD_=1073741824", "OMP_WAIT_POLICY=PASSIVE", NULL}},
};

/* The variables --threads sets: the cpu backend's pool and OpenBLAS (which
 * also caps the cpu backend's GEMM threads, and torch's BLAS). */
static const char *const thread_vars[] = {"CLGRAD_CPU_THREADS", "OPENBLAS_NUM_THREADS"};
#define N_THREAD_VARS ((int)(sizeof thread_vars / sizeof thread_vars[0]))

struct stat_rec {
    char name[64], unit[16];
    int n;
    double v[MAX_VALUES];           /* every repetition of every round     */
    double round_med[MAX_ROUNDS];   /* each round's median; NAN: not run    */
};

struct info_rec {
    char key[64], value[256];
};

/* The results of one set: a backend (at one thread count) or torch (at one
 * thread count); one column of the table. */
struct result_set {
    char name[64];              /* "cpu", "cpu 2t", "opencl", "torch 1t"   */
    char backend[64];           /* the children's backend; "" for torch    */
    bool torch;
    int torch_cfg;              /* its torch_cfgs entry (torch sets)        */
    int alts[N_TORCH_CFGS];     /* a first-config torch set: the sets of the
                                   other configs at its count; -1 none      */
    int threads;                /* the count it is measured at; 0: none    */
    int torch_ref;              /* the torch set of its xN ratios; -1 none */
    int base;                   /* its 1-thread (first count) set for the
                                   scaling table; -1 none                  */
    char **env;                 /* its children's environment              */
    char cache_dir[4096];       /* the "start" group's program caches       */
    char env_slots[N_THREAD_VARS][64];
    bool ok;                    /* at least one group ran                  */
    bool gone;                  /* cannot run at all: no later group runs  */
    bool failed[N_GROUPS];      /* a group failed: it does not run again   */
    char error[512];            /* why a group failed or the set is absent  */
    struct stat_rec stats[MAX_STATS];
    int n_stats;
    struct info_rec infos[MAX_INFOS];
    int n_infos;
};

static const struct stat_rec *find_stat(const struct result_set *r, const char *name)
{
    for (int i = 0; i < r->n_stats; i++)
        if (strcmp(r->stats[i].name, name) == 0) return &r->stats[i];
    return NULL;
}

static const char *find_info(const struct result_set *r, const char *key)
{
    for (int i = 0; i < r->n_infos; i++)
        if (strcmp(r->infos[i].key, key) == 0) return r->infos[i].value;
    return NULL;
}

/* Appends one stat line's values (of round `round`) to r's record of it. */
static void add_stat(struct result_set *r, const char *name, const char *unit,
                     const double *v, int n, int round)
{
    struct stat_rec *s = NULL;
    for (int i = 0; i < r->n_stats && !s; i++)
        if (strcmp(r->stats[i].name, name) == 0) s = &r->stats[i];
    if (!s) {
        if (r->n_stats == MAX_STATS) return;
        s = &r->stats[r->n_stats++];
        snprintf(s->name, sizeof s->name, "%s", name);
        snprintf(s->unit, sizeof s->unit, "%s", unit);
        for (int k = 0; k < MAX_ROUNDS; k++) s->round_med[k] = NAN;
    }
    for (int i = 0; i < n && s->n < MAX_VALUES; i++) s->v[s->n++] = v[i];
    double mn, mx;
    min_median_max(v, n, &mn, &s->round_med[round], &mx);
}

/* Parses the child protocol from buf into r. Stats accumulate over rounds;
 * an info keeps its first round's value. */
static void parse_lines(struct result_set *r, char *buf, int round)
{
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "stat ", 5) == 0) {
            char name[64], unit[16];
            int used = 0, n = 0;
            double v[MAX_REPS];
            if (sscanf(line + 5, "%63s %15s%n", name, unit, &used) != 2) continue;
            char *p = line + 5 + used;
            while (n < MAX_REPS) {
                char *end;
                v[n] = strtod(p, &end);
                if (end == p) break;
                n++;
                p = end;
            }
            if (n > 0) add_stat(r, name, unit, v, n, round);
        } else if (strncmp(line, "info ", 5) == 0 && r->n_infos < MAX_INFOS) {
            struct info_rec *in = &r->infos[r->n_infos];
            char *sp = strchr(line + 5, ' ');
            if (!sp) continue;
            snprintf(in->key, sizeof in->key, "%.*s", (int)(sp - line - 5), line + 5);
            if (find_info(r, in->key)) continue;
            snprintf(in->value, sizeof in->value, "%s", sp + 1);
            r->n_infos++;
        } else if (strncmp(line, "unavailable ", 12) == 0) {
            snprintf(r->error, sizeof r->error, "%s", line + 12);
            r->gone = true;
        }
    }
}

/* Runs argv with stdout captured into *out (malloc'd); returns the exit
 * status (or -1 when it cannot start). stderr passes through. */
static int run_capture(char *const argv[], char *const envp[], char **out)
{
    *out = NULL;
    int fds[2];
    if (pipe(fds) != 0) return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    pid_t pid;
    int err = posix_spawnp(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (err != 0) {
        close(fds[0]);
        errno = err;
        return -1;
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf && len + 1024 > cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
            } else {
                buf = nb;
                cap *= 2;
            }
        }
        char scratch[1024];
        ssize_t k = read(fds[0], buf ? buf + len : scratch, 1024);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        if (buf) len += (size_t)k;
    }
    close(fds[0]);
    if (buf) buf[len] = '\0';
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    *out = buf;
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Whether environment entry e sets the variable that "NAME=VALUE" sets. */
static bool same_var(const char *e, const char *nv)
{
    size_t l = strcspn(nv, "=");
    return strncmp(e, nv, l) == 0 && e[l] == '=';
}

/* base (NULL-terminated) with the n "NAME=VALUE" entries of over set, a
 * later one of the same name winning; a new array of borrowed strings. */
static char **env_with(char *const *base, const char *const *over, int n)
{
    size_t nb = 0;
    while (base[nb]) nb++;
    char **env = calloc(nb + (size_t)n + 1, sizeof *env);
    if (!env) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < nb; i++) {
        bool replaced = false;
        for (int j = 0; j < n && !replaced; j++) replaced = same_var(base[i], over[j]);
        if (!replaced) env[k++] = base[i];
    }
    for (int j = 0; j < n; j++) {
        bool later = false;
        for (int q = j + 1; q < n && !later; q++) later = same_var(over[q], over[j]);
        if (!later) env[k++] = (char *)over[j];
    }
    return env;
}

/* The environment of a set's children: thread_vars set to threads
 * (threads > 0; written into slots, one per variable), then extra (NULL-
 * terminated, or NULL), which wins over them. */
static char **child_env(int threads, char slots[][64], const char *const *extra)
{
    const char *over[N_THREAD_VARS + 8];
    int n = 0;
    for (int v = 0; threads > 0 && v < N_THREAD_VARS; v++) {
        snprintf(slots[v], 64, "%s=%d", thread_vars[v], threads);
        over[n++] = slots[v];
    }
    for (int i = 0; extra && extra[i] && i < 8; i++) over[n++] = extra[i];
    return env_with(environ, over, n);
}

static const char *self_exe(const char *argv0)
{
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0) {
        path[n] = '\0';
        return path;
    }
    return argv0;
}

static bool file_exists(const char *p)
{
    struct stat st;
    return p && *p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* The python that runs bench_torch.py: $CLGRAD_PYTHON when set, else the
 * first of "python3" (PATH) and /usr/bin/python3 that imports torch. The
 * second matters where PATH's python3 is a private one (pyenv, a venv) and
 * torch came from Debian's python3-torch. NULL when none does. */
static const char *torch_python(char **env)
{
    const char *forced = getenv("CLGRAD_PYTHON");
    if (forced && *forced) return forced;
    static const char *const candidates[] = {"python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        char *argv[] = {(char *)candidates[i], "-c",
                        "try:\n import torch\nexcept Exception:\n raise SystemExit(1)", NULL};
        char *out = NULL;
        int rc = run_capture(argv, env ? env : environ, &out);
        free(out);
        if (rc == 0) return candidates[i];
    }
    return NULL;
}

/* What every child of a run shares. */
struct runner {
    const char *exe;            /* this program, for --child               */
    const char *python;         /* runs bench_torch.py                     */
    const char *script;         /* bench_torch.py                          */
    const struct options *o;
};

/* Runs argv (a child of set r, for group g) with env, adding its values to
 * r as round `round`; a failure is recorded in r. */
static void run_child(struct result_set *r, int g, int round, char *const argv[], char **env)
{
    char *out;
    int rc = run_capture(argv, env, &out);
    if (out) parse_lines(r, out, round);
    free(out);
    size_t l = strlen(r->error);
    if (rc < 0) {
        snprintf(r->error + l, sizeof r->error - l, "%scannot run %s: %s", l ? "; " : "",
                 argv[0], strerror(errno));
        r->gone = true;
    } else if (rc != 0) {
        snprintf(r->error + l, sizeof r->error - l, "%s%s%s failed (exit %d)", l ? "; " : "",
                 r->torch ? "bench_torch.py " : "", groups[g], rc);
        r->failed[g] = true;
    } else if (!r->gone) {      /* not "unavailable" (torch not importable) */
        r->ok = true;
    }
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The "start" group of clgrad set r: the MLP's first step with every
 * program cache pointed at a new empty folder ("cold", first round only:
 * it compiles everything), then with the caches that run filled ("warm",
 * every round). main removes the folder at the end. */
static void run_start(struct result_set *r, int g, int round, const struct runner *x)
{
    if (!r->cache_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(r->cache_dir, sizeof r->cache_dir, "%s/clgrad-bench-cache-XXXXXX",
                 tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(r->cache_dir)) {
            size_t l = strlen(r->error);
            snprintf(r->error + l, sizeof r->error - l, "%scannot make a cache folder %s: %s",
                     l ? "; " : "", r->cache_dir, strerror(errno));
            r->cache_dir[0] = '\0';
            r->failed[g] = true;
            return;
        }
    }
    /* clgrad's program cache, PoCL's kernel cache, the NVIDIA driver's. */
    char vars[3][4200];
    snprintf(vars[0], sizeof vars[0], "CLGRAD_CACHE_DIR=%s/clgrad", r->cache_dir);
    snprintf(vars[1], sizeof vars[1], "POCL_CACHE_DIR=%s/pocl", r->cache_dir);
    snprintf(vars[2], sizeof vars[2], "CUDA_CACHE_PATH=%s/nv", r->cache_dir);
    const char *over[3] = {vars[0], vars[1], vars[2]};
    char **env = env_with(r->env ? r->env : environ, over, 3);
    static const char *const which[2] = {"cold", "warm"};
    for (int k = round == 0 ? 0 : 1; env && k < 2 && !r->failed[g] && !r->gone; k++) {
        char *argv[] = {(char *)x->exe, "--child", r->backend, (char *)which[k], NULL};
        run_child(r, g, round, argv, env);
    }
    free(env);
}

/* Runs group g of set r in a fresh process (this program with --child, or
 * bench_torch.py), adding its values to r as round `round`. */
static void run_group(struct result_set *r, int g, int round, const struct runner *x)
{
    if (r->gone || r->failed[g]) return;
    bool start = strcmp(groups[g], "start") == 0;
    if (start && r->torch) return;
    if (x->o->rounds > 1)
        fprintf(stderr, "clgrad-bench: round %d/%d: %s: %s ...\n", round + 1, x->o->rounds,
                r->name, groups[g]);
    else
        fprintf(stderr, "clgrad-bench: %s: %s ...\n", r->name, groups[g]);
    if (start) {
        run_start(r, g, round, x);
        return;
    }
    char reps[16], thr[16];
    snprintf(reps, sizeof reps, "%d", x->o->reps);
    snprintf(thr, sizeof thr, "%d", r->threads);
    const char *quick = x->o->quick ? "--quick" : NULL;
    char *child[] = {(char *)x->exe, "--child", r->backend, (char *)groups[g], "--reps", reps,
                     "--gemm-sizes", (char *)x->o->gemm_sizes, (char *)quick, NULL};
    char *torch[] = {(char *)x->python, (char *)x->script, "--groups", (char *)groups[g],
                     "--reps", reps, "--threads", thr, "--gemm-sizes", (char *)x->o->gemm_sizes,
                     "--config", r->torch ? (char *)torch_cfgs[r->torch_cfg].name : "",
                     (char *)quick, NULL};
    run_child(r, g, round, r->torch ? torch : child, r->env ? r->env : environ);
}

/* ---- machine peak ------------------------------------------------------- */

typedef double (*fma_fn)(int64_t iters, float *sink);

struct fma_thread {
    fma_fn fn;
    int64_t iters;
    double flops, cpu_s;
    float sink;
    pthread_barrier_t *start;
};

static double thread_cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *fma_thread_main(void *p)
{
    struct fma_thread *t = p;
    pthread_barrier_wait(t->start);
    double c0 = thread_cpu_s();
    t->flops = t->fn(t->iters, &t->sink);
    t->cpu_s = thread_cpu_s() - c0;
    return NULL;
}

/* GFLOP/s of nthreads threads running the loop together: the sum of each
 * thread's operations over its own CPU time. On a shared machine wall
 * time would also count the moments another process held the core; CPU
 * time counts what a core does while it runs the loop, which is the peak
 * a GEMM can be held against. nthreads is at most the core count (more
 * threads than cores would count a core twice). */
static double fma_peak(fma_fn fn, int nthreads, int64_t iters)
{
    struct fma_thread th[256];
    pthread_t tid[256];
    pthread_barrier_t start;
    if (nthreads > 256) nthreads = 256;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
    for (int i = 0; i < nthreads; i++) {
        th[i] = (struct fma_thread){.fn = fn, .iters = iters, .start = &start};
        pthread_create(&tid[i], NULL, fma_thread_main, &th[i]);
    }
    pthread_barrier_wait(&start);
    double gflops = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(tid[i], NULL);
        if (th[i].cpu_s > 0) gflops += th[i].flops / th[i].cpu_s * 1e-9;
    }
    pthread_barrier_destroy(&start);
    return gflops;
}

struct machine {
    char cpu[256];
    int cores;
    const char *isa;
    int n_peaks;
    int peak_threads[MAX_PEAKS];        /* 1, each --threads count, cores */
    double peak[MAX_PEAKS][MAX_REPS];
    double peak_med[MAX_PEAKS];
};

/* The median FMA peak at a thread count (0, or more than the cores: every
 * core). */
static double peak_for(const struct machine *m, int threads)
{
    if (threads <= 0 || threads > m->cores) threads = m->cores;
    for (int i = 0; i < m->n_peaks; i++)
        if (m->peak_threads[i] == threads) return m->peak_med[i];
    return 0;
}

static void add_peak_count(struct machine *m, int threads)
{
    if (threads > m->cores) threads = m->cores;
    for (int i = 0; i < m->n_peaks; i++)
        if (m->peak_threads[i] == threads) return;
    if (m->n_peaks < MAX_PEAKS) m->peak_threads[m->n_peaks++] = threads;
}

static void measure_machine(struct machine *m, const struct options *o)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    m->cores = n > 0 ? (int)n : 1;
    struct cg_device_info dev[1];
    int cnt = 0;
    snprintf(m->cpu, sizeof m->cpu, "unknown cpu");
    if (cg_backend_devices("cpu", dev, 1, &cnt) == CG_OK && cnt > 0)
        snprintf(m->cpu, sizeof m->cpu, "%s", dev[0].name);
    fma_fn fn = bench_fma_generic;
    m->isa = "generic C (8 lanes; no -mfma -mavx2)";
    __builtin_cpu_init();
#ifdef BENCH_HAVE_AVX2_FMA
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        fn = bench_fma_avx2;
        m->isa = "AVX2+FMA, 8 lanes";
    }
#endif
#ifdef BENCH_HAVE_AVX512
    if (__builtin_cpu_supports("avx512f")) {
        fn = bench_fma_avx512;
        m->isa = "AVX-512 FMA, 16 lanes";
    }
#endif
    m->n_peaks = 0;
    add_peak_count(m, 1);
    for (int i = 0; i < o->n_threads; i++) add_peak_count(m, o->threads[i]);
    add_peak_count(m, m->cores);
    /* Calibrate on one thread to ~0.1 s (quick) or ~0.3 s per run. */
    int64_t iters = 1 << 20;
    float sink;
    for (;;) {
        double t0 = thread_cpu_s();
        fn(iters, &sink);
        double dt = thread_cpu_s() - t0;
        if (dt > 0.02) {
            iters = (int64_t)((double)iters * (o->quick ? 0.1 : 0.3) / dt);
            break;
        }
        iters *= 4;
    }
    for (int r = 0; r < o->reps; r++)
        for (int i = 0; i < m->n_peaks; i++) m->peak[i][r] = fma_peak(fn, m->peak_threads[i], iters);
    double mn, mx;
    for (int i = 0; i < m->n_peaks; i++)
        min_median_max(m->peak[i], o->reps, &mn, &m->peak_med[i], &mx);
}

/* ---- output --------------------------------------------------------------- */

/* A short, fixed-width rendering of a figure. */
static const char *fmt_num(char *buf, size_t len, double v)
{
    double a = fabs(v);
    if (a >= 1000) snprintf(buf, len, "%.0f", v);
    else if (a >= 100) snprintf(buf, len, "%.1f", v);
    else if (a >= 10) snprintf(buf, len, "%.2f", v);
    else snprintf(buf, len, "%.3f", v);
    return buf;
}

/* Higher is better for rates; lower for times and memory. */
static bool higher_is_better(const char *unit) { return strchr(unit, '/') != NULL; }

static const char *describe(const char *name, char *buf, size_t len)
{
    int n;
    if (sscanf(name, "gemm_%d", &n) == 1) snprintf(buf, len, "GEMM N=%d", n);
    else if (strcmp(name, "op_fwd") == 0) snprintf(buf, len, "small op (add, 1 elem) fwd");
    else if (strcmp(name, "op_fwd_bwd") == 0) snprintf(buf, len, "small op fwd+bwd");
    else if (strcmp(name, "ffn") == 0) snprintf(buf, len, "FFN 10-64-64-1 b32 Adam");
    else if (strcmp(name, "mlp") == 0) snprintf(buf, len, "MLP 784-256-128-10 b64 Adam");
    else if (strcmp(name, "cnn") == 0) snprintf(buf, len, "CNN 2 conv b64 Adam");
    else if (strcmp(name, "lstm") == 0) snprintf(buf, len, "LSTM h128 b32x64 Adam");
    else if (strcmp(name, "transformer") == 0) snprintf(buf, len, "Transformer 2x d64 b32x64");
    else if (strcmp(name, "mlp_cold_start") == 0) snprintf(buf, len, "MLP 1st step, empty caches");
    else if (strcmp(name, "mlp_warm_start") == 0) snprintf(buf, len, "MLP 1st step, warm caches");
    else if (strstr(name, "_peak_rss"))
        snprintf(buf, len, "%.*s peak RSS", (int)(strstr(name, "_peak_rss") - name), name);
    else if (strstr(name, "_pool_peak"))
        snprintf(buf, len, "%.*s peak pool", (int)(strstr(name, "_pool_peak") - name), name);
    else snprintf(buf, len, "%s", name);
    return buf;
}

static double median_of(const struct stat_rec *st)
{
    double mn, med, mx;
    min_median_max(st->v, st->n, &mn, &med, &mx);
    return med;
}

/* The set whose figure a cell of set s shows for stat name: s itself, or,
 * for a torch set, the fastest of its configurations (s and s->alts) by
 * that stat's median; a memory stat follows its model's rate, so the
 * memory shown is the winner's. */
static const struct result_set *pick(const struct result_set *sets, int s, const char *name)
{
    const struct result_set *r = &sets[s];
    if (!r->torch) return r;
    char decide[64];
    const char *cut = strstr(name, "_peak_rss");
    if (!cut) cut = strstr(name, "_pool_peak");
    snprintf(decide, sizeof decide, "%.*s", cut ? (int)(cut - name) : 63, name);
    const struct result_set *best = NULL;
    double best_med = 0;
    for (int k = -1; k < N_TORCH_CFGS; k++) {
        int i = k < 0 ? s : r->alts[k];
        if (i < 0 || !sets[i].ok) continue;
        const struct stat_rec *st = find_stat(&sets[i], decide);
        if (!st) st = find_stat(&sets[i], name);
        if (!st) continue;
        double med = median_of(st);
        bool better = higher_is_better(st->unit) ? med > best_med : med < best_med;
        if (!best || better) {
            best = &sets[i];
            best_med = med;
        }
    }
    return best ? best : r;
}

/* Every stat name in the order of first appearance across the sets. */
static int union_names(const struct result_set *const *sets, int n_sets, const char **names, int max,
                       const char **units)
{
    int n = 0;
    for (int s = 0; s < n_sets; s++)
        for (int i = 0; i < sets[s]->n_stats; i++) {
            const char *nm = sets[s]->stats[i].name;
            bool seen = false;
            for (int k = 0; k < n && !seen; k++) seen = strcmp(names[k], nm) == 0;
            if (!seen && n < max) {
                units[n] = sets[s]->stats[i].unit;
                names[n++] = nm;
            }
        }
    return n;
}

/* Set a's figure over set b's for a stat: the ratio of their medians over
 * every value, and each round's ratio (the two ran seconds apart within a
 * round, so the machine's slow drift cancels) in per_round[*n_rounds].
 * False when either set lacks the stat. */
static bool scaling(const struct result_set *s, const struct result_set *base, const char *name,
                    int rounds, double *ratio, double *per_round, int *n_rounds)
{
    const struct stat_rec *a = find_stat(s, name), *b = find_stat(base, name);
    *n_rounds = 0;
    if (!a || !b) return false;
    double ma = median_of(a), mb = median_of(b);
    if (!(ma > 0 && mb > 0)) return false;
    *ratio = ma / mb;
    for (int r = 0; r < rounds; r++)
        if (a->round_med[r] > 0 && b->round_med[r] > 0)
            per_round[(*n_rounds)++] = a->round_med[r] / b->round_med[r];
    return true;
}

/* Whether set s is a column of the tables: it ran, and it is not a torch
 * configuration folded into its first configuration's column. */
static bool is_column(const struct result_set *r) { return r->ok && !(r->torch && r->torch_cfg); }

/* The thread-scaling table: each set measured at a further thread count
 * against its first count's set, for the rates (GEMM, training). */
static void print_scaling(const struct result_set *sets, int n_sets, const char **names,
                          const char **units, int n_names, const struct options *o)
{
    printf("\nthreads: median of N threads / median of %d thread%s (rates; torch: each side its "
           "fastest configuration)%s\n", o->threads[0], o->threads[0] == 1 ? "" : "s",
           o->rounds > 1 ? "; \"rounds\": median [min - max] of the per-round ratios "
                           "(each round's sets ran seconds apart: the drift-robust figure)"
                         : "");
    printf("%-30s %-10s", "measure", "unit");
    for (int s = 0; s < n_sets; s++) {
        if (sets[s].base < 0 || sets[s].base == s) continue;
        char head[160];
        snprintf(head, sizeof head, "%.63s / %.63s", sets[s].name, sets[sets[s].base].name);
        printf(" | %-36s", head);
    }
    printf("\n");
    for (int k = 0; k < n_names; k++) {
        if (!higher_is_better(units[k])) continue;
        char desc[96];
        printf("%-30s %-10s", describe(names[k], desc, sizeof desc), units[k]);
        for (int s = 0; s < n_sets; s++) {
            if (sets[s].base < 0 || sets[s].base == s) continue;
            char cell[128] = "-";
            double ratio, per[MAX_ROUNDS], mn, med, mx;
            int nr;
            if (scaling(pick(sets, s, names[k]), pick(sets, sets[s].base, names[k]), names[k],
                        o->rounds, &ratio, per, &nr)) {
                int l = snprintf(cell, sizeof cell, "x%.2f", ratio);
                if (o->rounds > 1 && nr > 0) {
                    min_median_max(per, nr, &mn, &med, &mx);
                    snprintf(cell + l, sizeof cell - (size_t)l, "  rounds x%.2f [%.2f - %.2f]",
                             med, mn, mx);
                }
            }
            printf(" | %-36s", cell);
        }
        printf("\n");
    }
}

/* Whether a set's figures can be held against the cpu's FMA peak: the cpu
 * backend, torch, or an OpenCL device that is this cpu (PoCL). */
static bool on_cpu(const struct result_set *r)
{
    const char *t = find_info(r, "device_type");
    return r->torch || strcmp(r->backend, "cpu") == 0 || (t && strcmp(t, "cpu") == 0);
}

/* Training throughput as a share of the FMA peak at each set's thread
 * count (every core for a set without one: opencl). */
static void print_shares(const struct result_set *sets, int n_sets, const struct machine *m)
{
    printf("\ntraining as a share of the FMA peak at the set's thread count (opencl: every "
           "core); FLOPs per unit from the model's shapes: 2 per multiply-add of its GEMMs and "
           "convolutions, forward + weight gradient + input gradient (none into the data); "
           "elementwise ops, pooling, softmax and Adam not counted\n");
    printf("%-30s %-12s", "measure", "FLOPs/unit");
    for (int s = 0; s < n_sets; s++)
        if (is_column(&sets[s])) printf(" | %-12s", sets[s].name);
    printf("\n");
    for (int i = 0; i < N_TRAIN; i++) {
        const struct train_cfg *cfg = &train_cfgs[i];
        double flops = train_flops(cfg);
        char desc[96], f[32];
        printf("%-30s %-12s", describe(cfg->name, desc, sizeof desc),
               fmt_num(f, sizeof f, flops));
        for (int s = 0; s < n_sets; s++) {
            if (!is_column(&sets[s])) continue;
            const struct result_set *r = pick(sets, s, cfg->name);
            const struct stat_rec *st = find_stat(r, cfg->name);
            double peak = peak_for(m, sets[s].threads);
            char cell[32] = "-";
            if (st && peak > 0 && on_cpu(&sets[s]))
                snprintf(cell, sizeof cell, "%.1f%%", 100.0 * median_of(st) * flops / (peak * 1e9));
            printf(" | %-12s", cell);
        }
        printf("\n");
    }
}

static void print_table(const struct result_set *sets, int n_sets, const struct machine *m,
                        const struct options *o)
{
    const struct result_set *all[MAX_SETS];
    for (int i = 0; i < n_sets; i++) all[i] = &sets[i];
    const char *names[MAX_STATS * 2], *units[MAX_STATS * 2];
    int n_names = union_names(all, n_sets, names, MAX_STATS * 2, units);
    bool any_torch = false;
    for (int s = 0; s < n_sets; s++) any_torch |= sets[s].torch && sets[s].ok;

    printf("\nFMA peak (%s; from each thread's CPU time), GFLOP/s:", m->isa);
    for (int i = 0; i < m->n_peaks; i++)
        printf("%s %d thread%s %.1f", i ? "," : "", m->peak_threads[i],
               m->peak_threads[i] == 1 ? "" : "s", m->peak_med[i]);
    printf("\n");
    for (int s = 0; s < n_sets; s++) {
        const struct result_set *r = &sets[s];
        const char *dev = find_info(r, r->torch ? "version" : "device");
        if (!dev) dev = r->torch ? "" : "(no device)";
        printf("%-20s %s", r->name, dev);
        if (r->torch) {
            const char *const *vars = torch_cfgs[r->torch_cfg].vars;
            bool blas = false;
            for (int v = 0; vars[v]; v++) blas |= same_var(vars[v], "OPENBLAS_NUM_THREADS=");
            if (r->threads > 0) printf("; torch.set_num_threads(%d)", r->threads);
            else printf("; threads as installed");
            if (r->threads > 0 && !blas) printf(", OPENBLAS_NUM_THREADS=%d", r->threads);
            for (int v = 0; vars[v]; v++) printf(", %s", vars[v]);
        }
        printf("%s%s%s\n", !r->error[0] ? "" : "  -- ", r->ok ? "" : "not run: ", r->error);
    }
    int values = o->reps * o->rounds;
    printf("each cell: median [min - max] over %d value%s (%d rep%s x %d round%s, the sets "
           "interleaved group by group); GEMM also as %% of the FMA peak at the set's thread "
           "count (opencl: every core)%s\n\n",
           values, values == 1 ? "" : "s", o->reps, o->reps == 1 ? "" : "s", o->rounds,
           o->rounds == 1 ? "" : "s",
           any_torch ? "; torch: the fastest of its configurations, named; xN = clgrad / torch "
                       "at the same thread count (opencl: torch on every core; >1: clgrad "
                       "faster or smaller)" : "");

    printf("%-30s %-10s", "measure", "unit");
    /* A column per set that ran (the list above says why one did not). */
    for (int s = 0; s < n_sets; s++)
        if (is_column(&sets[s])) printf(" | %-32s", sets[s].name);
    printf("\n");
    for (int k = 0; k < n_names; k++) {
        char desc[96];
        printf("%-30s %-10s", describe(names[k], desc, sizeof desc), units[k]);
        int gemm_n = 0;
        bool is_gemm = sscanf(names[k], "gemm_%d", &gemm_n) == 1;
        for (int s = 0; s < n_sets; s++) {
            if (!is_column(&sets[s])) continue;
            const struct result_set *r = pick(sets, s, names[k]);
            const struct stat_rec *st = find_stat(r, names[k]);
            char cell[160] = "-", a[32], b[32], c[32];
            if (st) {
                double mn, med, mx;
                min_median_max(st->v, st->n, &mn, &med, &mx);
                int l;
                if (st->n > 1)
                    l = snprintf(cell, sizeof cell, "%s [%s - %s]", fmt_num(a, 32, med),
                                 fmt_num(b, 32, mn), fmt_num(c, 32, mx));
                else
                    l = snprintf(cell, sizeof cell, "%s", fmt_num(a, 32, med));
                double peak = peak_for(m, sets[s].threads);
                if (is_gemm && peak > 0 && on_cpu(&sets[s]))
                    l += snprintf(cell + l, sizeof cell - (size_t)l, " %.0f%%",
                                  100.0 * med / peak);
                if (r->torch) {
                    snprintf(cell + l, sizeof cell - (size_t)l, " %s", torch_cfgs[r->torch_cfg].name);
                } else if (sets[s].torch_ref >= 0) {
                    const struct result_set *t = pick(sets, sets[s].torch_ref, names[k]);
                    const struct stat_rec *ts = t->ok ? find_stat(t, names[k]) : NULL;
                    double tmed = ts ? median_of(ts) : 0;
                    if (tmed > 0 && med > 0)
                        snprintf(cell + l, sizeof cell - (size_t)l, " x%.2f",
                                 higher_is_better(st->unit) ? med / tmed : tmed / med);
                }
            }
            printf(" | %-32s", cell);
        }
        printf("\n");
    }
    /* Start-up: the first GEMM call (kernel compilation, first round) and
     * the time from process start to the end of the first training step of
     * the mlp group (warm caches), beside the "start" rows above. */
    printf("\nfirst calls (s):");
    for (int s = 0; s < n_sets; s++) {
        if (sets[s].torch || !sets[s].ok) continue;
        const char *g = find_info(&sets[s], "gemm_1024_first_call_s");
        const char *f = find_info(&sets[s], "mlp_first_step_s");
        printf("  %s: GEMM N=1024 %s, MLP first step %s;", sets[s].name, g ? g : "-",
               f ? f : "-");
    }
    printf("\n");
    print_shares(sets, n_sets, m);
    if (o->n_threads > 1) print_scaling(sets, n_sets, names, units, n_names, o);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void json_num(FILE *f, double v)
{
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fprintf(f, "null");
}

static void json_list(FILE *f, const double *v, int n)
{
    fprintf(f, "[");
    for (int k = 0; k < n; k++) {
        fprintf(f, "%s", k ? ", " : "");
        json_num(f, v[k]);
    }
    fprintf(f, "]");
}

static const struct train_cfg *train_cfg_of(const char *name)
{
    for (int i = 0; i < N_TRAIN; i++)
        if (strcmp(train_cfgs[i].name, name) == 0) return &train_cfgs[i];
    return NULL;
}

static void json_set(FILE *f, const struct result_set *sets, int s, const struct machine *m,
                     const struct options *o)
{
    const struct result_set *r = &sets[s];
    fprintf(f, "{\"ok\": %s, \"error\": ", r->ok ? "true" : "false");
    json_str(f, r->error);
    fprintf(f, ", \"threads\": ");
    if (r->threads > 0) fprintf(f, "%d", r->threads);
    else fprintf(f, "null");
    if (r->torch) {
        fprintf(f, ", \"config\": ");
        json_str(f, torch_cfgs[r->torch_cfg].name);
        fprintf(f, ", \"config_env\": [");
        for (int v = 0; torch_cfgs[r->torch_cfg].vars[v]; v++) {
            fprintf(f, "%s", v ? ", " : "");
            json_str(f, torch_cfgs[r->torch_cfg].vars[v]);
        }
        fprintf(f, "]");
    }
    if (!r->torch && r->torch_ref >= 0) {
        fprintf(f, ", \"torch_ratios_against\": ");
        json_str(f, sets[r->torch_ref].name);
    }
    fprintf(f, ", \"info\": {");
    for (int i = 0; i < r->n_infos; i++) {
        fprintf(f, "%s", i ? ", " : "");
        json_str(f, r->infos[i].key);
        fprintf(f, ": ");
        json_str(f, r->infos[i].value);
    }
    fprintf(f, "}, \"results\": {");
    double peak = peak_for(m, r->threads);
    for (int i = 0; i < r->n_stats; i++) {
        const struct stat_rec *st = &r->stats[i];
        double mn, med, mx;
        min_median_max(st->v, st->n, &mn, &med, &mx);
        fprintf(f, "%s\n      ", i ? "," : "");
        json_str(f, st->name);
        fprintf(f, ": {\"unit\": ");
        json_str(f, st->unit);
        fprintf(f, ", \"min\": ");
        json_num(f, mn);
        fprintf(f, ", \"median\": ");
        json_num(f, med);
        fprintf(f, ", \"max\": ");
        json_num(f, mx);
        fprintf(f, ", \"values\": ");
        json_list(f, st->v, st->n);
        if (o->rounds > 1) {
            fprintf(f, ", \"round_medians\": ");
            json_list(f, st->round_med, o->rounds);
        }
        int n;
        const struct train_cfg *tc = train_cfg_of(st->name);
        bool cpu = on_cpu(r) && peak > 0;
        if (sscanf(st->name, "gemm_%d", &n) == 1 && cpu) {
            fprintf(f, ", \"fraction_of_peak\": ");
            json_num(f, med / peak);
        } else if (tc && cpu) {
            fprintf(f, ", \"flops_per_unit\": ");
            json_num(f, train_flops(tc));
            fprintf(f, ", \"fraction_of_peak\": ");
            json_num(f, med * train_flops(tc) / (peak * 1e9));
        }
        fprintf(f, "}");
    }
    fprintf(f, "}");
    if (r->torch && !r->torch_cfg) {
        /* Which configuration each cell of this column took. */
        fprintf(f, ", \"fastest_config\": {");
        for (int i = 0; i < r->n_stats; i++) {
            fprintf(f, "%s", i ? ", " : "");
            json_str(f, r->stats[i].name);
            fprintf(f, ": ");
            json_str(f, torch_cfgs[pick(sets, s, r->stats[i].name)->torch_cfg].name);
        }
        fprintf(f, "}");
    }
    fprintf(f, "}");
}

/* "thread_scaling": for each set at a further thread count, its rates over
 * its first count's set's (torch: each side its fastest configuration). */
static void json_scaling(FILE *f, const struct result_set *sets, int n_sets,
                         const struct options *o)
{
    fprintf(f, "{");
    bool first = true;
    for (int s = 0; s < n_sets; s++) {
        if (sets[s].base < 0 || sets[s].base == s) continue;
        fprintf(f, "%s\n    ", first ? "" : ",");
        first = false;
        json_str(f, sets[s].name);
        fprintf(f, ": {\"base\": ");
        json_str(f, sets[sets[s].base].name);
        fprintf(f, ", \"results\": {");
        bool first_stat = true;
        for (int i = 0; i < sets[s].n_stats; i++) {
            const struct stat_rec *st = &sets[s].stats[i];
            double ratio, per[MAX_ROUNDS], mn, med, mx;
            int nr;
            if (!higher_is_better(st->unit) ||
                !scaling(pick(sets, s, st->name), pick(sets, sets[s].base, st->name), st->name,
                         o->rounds, &ratio, per, &nr))
                continue;
            fprintf(f, "%s\n      ", first_stat ? "" : ",");
            first_stat = false;
            json_str(f, st->name);
            fprintf(f, ": {\"ratio_of_medians\": ");
            json_num(f, ratio);
            fprintf(f, ", \"round_ratios\": ");
            json_list(f, per, nr);
            fprintf(f, ", \"median_of_round_ratios\": ");
            if (nr > 0) {
                min_median_max(per, nr, &mn, &med, &mx);
                json_num(f, med);
            } else {
                fprintf(f, "null");
            }
            fprintf(f, "}");
        }
        fprintf(f, "}}");
    }
    fprintf(f, "%s}", first ? "" : "\n  ");
}

static int write_json(const char *path, const struct result_set *sets, int n_sets,
                      const struct machine *m, const struct options *o, const char *date)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "clgrad-bench: cannot write %s: %s\n", path, strerror(errno));
        return 1;
    }
    fprintf(f, "{\n  \"tool\": \"clgrad-bench\",\n  \"version\": ");
    json_str(f, BENCH_VERSION);
    fprintf(f, ",\n  \"date\": ");
    json_str(f, date);
    fprintf(f, ",\n  \"quick\": %s,\n  \"reps\": %d,\n  \"rounds\": %d,\n  \"threads\": [",
            o->quick ? "true" : "false", o->reps, o->rounds);
    for (int i = 0; i < o->n_threads; i++) fprintf(f, "%s%d", i ? ", " : "", o->threads[i]);
    fprintf(f, "],\n  \"data\": \"synthetic, same shapes as the datasets\",\n");
    fprintf(f, "  \"machine\": {\"cpu\": ");
    json_str(f, m->cpu);
    fprintf(f, ", \"cores\": %d, \"fma_isa\": ", m->cores);
    json_str(f, m->isa);
    fprintf(f, ", \"fma_peak_gflops\": {");
    for (int i = 0; i < m->n_peaks; i++) {
        fprintf(f, "%s\"%d\": {\"median\": ", i ? ", " : "", m->peak_threads[i]);
        json_num(f, m->peak_med[i]);
        fprintf(f, ", \"values\": ");
        json_list(f, m->peak[i], o->reps);
        fprintf(f, "}");
    }
    /* clgrad's sets under "backends", torch's under "torch" (null when not
     * requested), both keyed by set name. */
    for (int torch = 0; torch < 2; torch++) {
        fprintf(f, torch ? ",\n  \"torch\": " : "}},\n  \"backends\": ");
        if (torch && !o->compare_torch) {
            fprintf(f, "null");
            continue;
        }
        fprintf(f, "{");
        bool first = true;
        for (int s = 0; s < n_sets; s++) {
            if (sets[s].torch != (torch == 1)) continue;
            fprintf(f, "%s\n    ", first ? "" : ",");
            first = false;
            json_str(f, sets[s].name);
            fprintf(f, ": ");
            json_set(f, sets, s, m, o);
        }
        fprintf(f, "\n  }");
    }
    fprintf(f, ",\n  \"thread_scaling\": ");
    json_scaling(f, sets, n_sets, o);
    fprintf(f, "\n}\n");
    bool bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "clgrad-bench: error writing %s\n", path);
        return 1;
    }
    return 0;
}

/* ---- main ------------------------------------------------------------------ */

/* The backends to measure: the list given, else every loadable one. */
static int pick_backends(const struct options *o, char names[][64])
{
    int n = 0;
    if (o->backends[0]) {
        char list[256];
        snprintf(list, sizeof list, "%s", o->backends);
        for (char *tok = strtok(list, ","); tok && n < MAX_BACKENDS; tok = strtok(NULL, ","))
            if (*tok) snprintf(names[n++], 64, "%s", tok);
        return n;
    }
    struct cg_backend_entry_info info[CG_MAX_BACKENDS];
    int count = 0;
    if (cg_backends_list(info, CG_MAX_BACKENDS, &count) != CG_OK) count = 0;
    for (int i = 0; i < count && i < CG_MAX_BACKENDS && n < MAX_BACKENDS; i++) {
        if (!info[i].loaded) continue;
        int ndev = 0;
        if (cg_backend_devices(info[i].name, NULL, 0, &ndev) != CG_OK || ndev == 0) {
            fprintf(stderr, "clgrad-bench: skipping %s: no device\n", info[i].name);
            continue;
        }
        snprintf(names[n++], 64, "%.63s", info[i].name);
    }
    return n;
}

/* Appends a set; threads is its count (0: none), env_threads its children's
 * thread variables (0: left as they are); torch_cfg its torch_cfgs entry
 * (torch sets). */
static struct result_set *add_set(struct result_set *sets, int *n, const char *backend,
                                  bool torch, int torch_cfg, int threads, int env_threads,
                                  bool suffix)
{
    struct result_set *r = &sets[(*n)++];
    const char *base = torch ? "torch" : backend;
    char cfg[32] = "";
    if (torch && torch_cfg) snprintf(cfg, sizeof cfg, " %s", torch_cfgs[torch_cfg].name);
    if (suffix) snprintf(r->name, sizeof r->name, "%.30s %dt%s", base, threads, cfg);
    else snprintf(r->name, sizeof r->name, "%.30s%s", base, cfg);
    snprintf(r->backend, sizeof r->backend, "%.63s", torch ? "" : backend);
    r->torch = torch;
    r->torch_cfg = torch ? torch_cfg : 0;
    r->threads = threads;
    r->torch_ref = r->base = -1;
    for (int k = 0; k < N_TORCH_CFGS; k++) r->alts[k] = -1;
    r->env = child_env(env_threads, r->env_slots, torch ? torch_cfgs[torch_cfg].vars : NULL);
    return r;
}

/* The sets, in table order: each backend (the cpu backend once per thread
 * count), then torch once per thread count and configuration; each clgrad
 * set's torch set (the same count; every core for other backends, which
 * adds that count to torch's when --threads lacks it) and scaling base. */
static int make_sets(const struct options *o, struct result_set *sets, int cores)
{
    char backends[MAX_BACKENDS][64];
    int nb = pick_backends(o, backends), n = 0;
    int first = o->n_threads ? o->threads[0] : 0;
    bool several = o->n_threads > 1, other = false;
    for (int b = 0; b < nb; b++) {
        if (strcmp(backends[b], "cpu") != 0) {
            add_set(sets, &n, backends[b], false, 0, 0, first, false);
            other = true;
            continue;
        }
        int base = n;
        for (int t = 0; t < (several ? o->n_threads : 1); t++)
            add_set(sets, &n, "cpu", false, 0, several ? o->threads[t] : first,
                    several ? o->threads[t] : first, several)->base = several ? base : -1;
    }
    int n_backend = n;
    if (nb == 0 || !o->compare_torch) return n;
    int counts[MAX_THREAD_COUNTS + 1], nc = 0;
    bool has_cores = false;
    for (int t = 0; t < o->n_threads; t++) {
        counts[nc++] = o->threads[t];
        has_cores |= o->threads[t] == cores;
    }
    if (nc == 0) counts[nc++] = 0;                      /* torch's own default */
    else if (other && !has_cores) counts[nc++] = cores;
    int base = n;
    for (int t = 0; t < nc; t++) {
        int prim = n;
        add_set(sets, &n, NULL, true, 0, counts[t], counts[t], nc > 1)->base = nc > 1 ? base : -1;
        for (int c = 1; c < N_TORCH_CFGS; c++) {
            if (torch_cfgs[c].multi_only && counts[t] == 1) continue;
            sets[prim].alts[c] = n;
            add_set(sets, &n, NULL, true, c, counts[t], counts[t], nc > 1);
        }
    }
    /* Each clgrad set's torch column: the same thread count; for a set
     * without one (opencl), torch on every core (or at its default). */
    for (int s = 0; s < n_backend; s++) {
        int want = sets[s].threads > 0 ? sets[s].threads : o->n_threads ? cores : 0;
        for (int t = n_backend; t < n; t++)
            if (!sets[t].torch_cfg && sets[t].threads == want) sets[s].torch_ref = t;
    }
    return n;
}

/* --threads LIST: distinct counts in [1, 1024]. */
static bool parse_threads(const char *s, struct options *o)
{
    char list[256];
    snprintf(list, sizeof list, "%s", s);
    o->n_threads = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int v;
        if (o->n_threads == MAX_THREAD_COUNTS || !parse_int(tok, 1, 1024, &v)) return false;
        for (int i = 0; i < o->n_threads; i++)
            if (o->threads[i] == v) return false;
        o->threads[o->n_threads++] = v;
    }
    return o->n_threads > 0;
}

/* --only LIST: the groups' bits, 0 if a name is not a group. */
static unsigned parse_only(const char *list)
{
    unsigned mask = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int g = 0;
        while (g < N_GROUPS && strcmp(groups[g], t) != 0)
            g++;
        if (g == N_GROUPS)
            return 0;
        mask |= 1u << g;
    }
    return mask;
}

int main(int argc, char **argv)
{
    struct options o = {.reps = 0, .rounds = 1, .gemm_sizes = DEFAULT_GEMM_SIZES};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (strcmp(a, "--child") == 0) {
            /* --child BACKEND GROUP [--reps N] [--quick] */
            if (i + 2 >= argc) return 2;
            const char *be = argv[i + 1], *group = argv[i + 2];
            int reps = 3;
            bool quick = false;
            const char *sizes = DEFAULT_GEMM_SIZES;
            for (int k = i + 3; k < argc; k++) {
                if (strcmp(argv[k], "--quick") == 0) quick = true;
                else if (strcmp(argv[k], "--reps") == 0 && k + 1 < argc &&
                         parse_int(argv[k + 1], 1, MAX_REPS, &reps)) k++;
                else if (strcmp(argv[k], "--gemm-sizes") == 0 && k + 1 < argc) sizes = argv[++k];
            }
            return child_main(be, group, quick, reps, sizes);
        } else if (strcmp(a, "--backends") == 0 && has_val) {
            snprintf(o.backends, sizeof o.backends, "%s", argv[++i]);
        } else if (strcmp(a, "--quick") == 0) {
            o.quick = true;
        } else if (strcmp(a, "--reps") == 0 && has_val) {
            if (!parse_int(argv[++i], 1, MAX_REPS, &o.reps)) {
                fprintf(stderr, "clgrad-bench: --reps wants an integer in [1, %d], not '%s'\n",
                        MAX_REPS, argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--rounds") == 0 && has_val) {
            if (!parse_int(argv[++i], 1, MAX_ROUNDS, &o.rounds)) {
                fprintf(stderr, "clgrad-bench: --rounds wants an integer in [1, %d], not '%s'\n",
                        MAX_ROUNDS, argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0 && has_val) {
            if (!parse_threads(argv[++i], &o)) {
                fprintf(stderr, "clgrad-bench: --threads wants up to %d distinct integers in "
                        "[1, 1024], comma-separated, not '%s'\n", MAX_THREAD_COUNTS, argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--gemm-sizes") == 0 && has_val) {
            int v[MAX_GEMM_SIZES], n;
            if (!parse_list(argv[++i], 1, 65536, v, MAX_GEMM_SIZES, &n)) {
                fprintf(stderr, "clgrad-bench: --gemm-sizes wants up to %d distinct integers in "
                        "[1, 65536], comma-separated, not '%s'\n", MAX_GEMM_SIZES, argv[i]);
                return 2;
            }
            snprintf(o.gemm_sizes, sizeof o.gemm_sizes, "%s", argv[i]);
        } else if (strcmp(a, "--only") == 0 && has_val) {
            o.only = parse_only(argv[++i]);
            if (!o.only) {
                fprintf(stderr, "clgrad-bench: --only wants groups from start, gemm, op, ffn, "
                        "mlp, cnn, lstm, transformer, comma-separated, not '%s'\n", argv[i]);
                return 2;
            }
        } else if (strcmp(a, "--json") == 0 && has_val) {
            o.json = argv[++i];
        } else if (strcmp(a, "--compare-torch") == 0) {
            o.compare_torch = true;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "clgrad-bench: unknown or incomplete option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (o.reps == 0) o.reps = o.quick ? 3 : 5;
    if (o.reps * o.rounds > MAX_VALUES) {
        fprintf(stderr, "clgrad-bench: --reps times --rounds is at most %d, not %d\n",
                MAX_VALUES, o.reps * o.rounds);
        return 2;
    }

    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %z", localtime(&t));

    static struct result_set sets[MAX_SETS];
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int n_sets = make_sets(&o, sets, ncpu > 0 ? (int)ncpu : 1);
    if (n_sets == 0) {
        fprintf(stderr, "clgrad-bench: no backend to measure\n");
        return 1;
    }
    printf("clgrad-bench %s  %s  %s, %d reps x %d round%s\n", BENCH_VERSION, date,
           o.quick ? "quick" : "full", o.reps, o.rounds, o.rounds == 1 ? "" : "s");
    if (o.n_threads) {
        printf("threads: CLGRAD_CPU_THREADS and OPENBLAS_NUM_THREADS =");
        for (int i = 0; i < o.n_threads; i++) printf("%s%d", i ? "," : " ", o.threads[i]);
        printf(" for the cpu backend (and torch); other backends get %d\n", o.threads[0]);
    }
    if (o.compare_torch) {
        printf("torch: every cell the fastest of these configurations, each run side by side:");
        for (int c = 0; c < N_TORCH_CFGS; c++) {
            printf("%s %s (", c ? ";" : "", torch_cfgs[c].name);
            if (!torch_cfgs[c].vars[0]) printf("torch.set_num_threads(N), OPENBLAS_NUM_THREADS=N");
            for (int v = 0; torch_cfgs[c].vars[v]; v++) printf("%s%s", v ? ", " : "", torch_cfgs[c].vars[v]);
            printf("%s)", torch_cfgs[c].multi_only ? "; N > 1 only" : "");
        }
        printf("\n");
    }
    fflush(stdout);

    static struct machine m;
    fprintf(stderr, "clgrad-bench: FMA peak ...\n");
    measure_machine(&m, &o);

    struct runner x = {.exe = self_exe(argv[0]), .o = &o};
    if (o.compare_torch) {
        x.script = getenv("CLGRAD_BENCH_TORCH");
        if (!file_exists(x.script)) x.script = BENCH_TORCH_SCRIPT;
        if (!file_exists(x.script)) x.script = BENCH_TORCH_SCRIPT_INSTALLED;
        for (int s = 0; s < n_sets; s++) {
            if (!sets[s].torch) continue;
            if (!file_exists(x.script)) {
                snprintf(sets[s].error, sizeof sets[s].error,
                         "bench_torch.py not found (set CLGRAD_BENCH_TORCH)");
                sets[s].gone = true;
            } else if (!x.python) {
                x.python = torch_python(sets[s].env);
                if (!x.python) x.python = "python3";    /* bench_torch.py: "unavailable" */
            }
        }
    }
    /* Group-major: every set runs a group before any runs the next, and the
     * rounds repeat that pass, so the machine's drift over minutes hits every
     * set alike. Odd rounds take the sets in reverse order, so that a drift
     * within a group does not always favour the same set. */
    for (int round = 0; round < o.rounds; round++)
        for (int g = 0; g < N_GROUPS; g++)
            for (int i = 0; i < n_sets && (!o.only || (o.only >> g & 1)); i++)
                run_group(&sets[round % 2 ? n_sets - 1 - i : i], g, round, &x);
    for (int s = 0; s < n_sets; s++)
        if (sets[s].torch && !sets[s].ok)
            fprintf(stderr, "clgrad-bench: PyTorch comparison (%s) skipped: %s\n", sets[s].name,
                    sets[s].error);

    print_table(sets, n_sets, &m, &o);
    int rc = 0;
    if (o.json) rc = write_json(o.json, sets, n_sets, &m, &o, date);
    for (int s = 0; s < n_sets; s++) {
        free(sets[s].env);
        if (sets[s].cache_dir[0])
            nftw(sets[s].cache_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
    return rc;
}
