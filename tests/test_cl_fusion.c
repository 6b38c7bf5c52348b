/*
 * tests/test_cl_fusion.c — deferred, fused elementwise chains and batched
 * optimizer updates (backends/opencl/fuse.c, optim.c) give the results of
 * the op-by-op path.
 *
 * Programs of elementwise ops (every op kind; contiguous, broadcast-scalar,
 * row- and column-broadcast inputs; in-place updates; odd sizes; outputs
 * overlapping earlier inputs at other offsets) run through the backend's
 * vtable three times: in two contexts with fusion, one per form of the
 * generated kernel (CLGRAD_FUSE_LOOP=0: one element per work-item, on a
 * (cols, rows) range for broadcasts, the CPU-device form; =1: grid-stride
 * loops, the GPU form), and in one opened with CLGRAD_FUSE=0. Every buffer
 * must come out bitwise equal, and close to a float64 reference where the
 * ops are continuous (GELU and its backward, whose erf is Abramowitz &
 * Stegun 7.1.26 on opencl, within rtol 1e-5 and atol 1e-6: its |erf error|
 * <= 1.5e-7 gives |GELU error| <= 2.2e-7 + float rounding for |x| <= 6).
 * Broadcast chains taller than one 2-d launch (32768 rows), with a chain
 * size that is no multiple of the row length, or with two row lengths take
 * the other launch shapes. Further tests check
 * that pending work is flushed in order when a chain's output is
 * downloaded, released to the pool and reused, or read by GEMM; that
 * batched Adam/SGD/RMSProp updates equal one-at-a-time ones; and (opencl)
 * that a second context loads a fused kernel from the on-disk cache
 * instead of rebuilding it. On the cpu backend the same programs check
 * the cpu backend against the reference.
 */
#include "harness.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#define NSLOT 6
#define SLOT_N 4200          /* elements per slot buffer (default) */
#define MAXOPS 16

#define CHECK_OK(be, bctx, call)                                                \
    do {                                                                        \
        cg_status s_ = (call);                                                  \
        if (s_ != CG_OK)                                                        \
            fail_msg("%s -> %s: %s", #call, cg_status_str(s_), (be)->last_error(bctx)); \
    } while (0)

/* How an op reads an input over an out of `rows` x `cols` (n = rows*cols). */
enum mode { M_CONTIG, M_SCALAR, M_ROW, M_COL };

struct fop {
    int op;                  /* cg_ew_op, or -1: fill with p0 */
    float p0, p1;
    int out, a, b;           /* slots                          */
    int64_t oo, ao, bo;      /* element offsets                */
    enum mode am, bm;
    int64_t rows, cols;
};

struct prog {
    int n;
    struct fop ops[MAXOPS];
    int64_t slot;            /* elements per slot; 0: SLOT_N   */
};

static int64_t slot_of(const struct prog *p) { return p->slot ? p->slot : SLOT_N; }

static bool is_binary(int op) { return op >= CG_EW_FIRST_BINARY; }

/* ---- running a program on a backend ---- */

static struct cg_view view_of(struct cg_buffer *buf, int64_t off, enum mode m, int64_t rows,
                              int64_t cols)
{
    struct cg_view v = {.buf = buf, .off = off, .ndim = 2, .shape = {rows, cols}};
    switch (m) {
    case M_CONTIG: v.strides[0] = cols, v.strides[1] = 1; break;
    case M_SCALAR: v.strides[0] = 0, v.strides[1] = 0; break;
    case M_ROW:    v.strides[0] = 0, v.strides[1] = 1; break;
    case M_COL:    v.strides[0] = 1, v.strides[1] = 0; break;
    }
    if (m == M_CONTIG) {   /* coalesced, as the core passes it */
        v.ndim = 1;
        v.shape[0] = rows * cols;
        v.strides[0] = 1;
    }
    return v;
}

/* Runs p on ctx from init (NSLOT slots of slot_of(p) floats); returns the
 * slots. */
static float *run_prog(cg_ctx *ctx, const struct prog *p, const float *init)
{
    void *bctx;
    const struct cg_backend_i *be = cg_ctx_backend(ctx, &bctx);
    const int64_t sn = slot_of(p);
    struct cg_buffer *bufs[NSLOT];
    for (int s = 0; s < NSLOT; s++) {
        CHECK_OK(be, bctx, be->alloc(bctx, (size_t)sn * sizeof(float), &bufs[s]));
        CHECK_OK(be, bctx, be->upload(bctx, bufs[s], 0, init + s * sn,
                                      (size_t)sn * sizeof(float)));
    }
    for (int i = 0; i < p->n; i++) {
        const struct fop *o = &p->ops[i];
        struct cg_view vo = view_of(bufs[o->out], o->oo, M_CONTIG, o->rows, o->cols);
        if (o->op < 0) {
            CHECK_OK(be, bctx, be->fill(bctx, &vo, o->p0));
            continue;
        }
        struct cg_view va = view_of(bufs[o->a], o->ao, o->am, o->rows, o->cols);
        struct cg_view vb = view_of(bufs[o->b], o->bo, o->bm, o->rows, o->cols);
        if (o->am != M_CONTIG || (is_binary(o->op) && o->bm != M_CONTIG)) {
            /* every view 2-d, as the core would pass a broadcast */
            vo = (struct cg_view){.buf = bufs[o->out], .off = o->oo, .ndim = 2,
                                  .shape = {o->rows, o->cols}, .strides = {o->cols, 1}};
            if (o->am == M_CONTIG)
                va = (struct cg_view){.buf = bufs[o->a], .off = o->ao, .ndim = 2,
                                      .shape = {o->rows, o->cols}, .strides = {o->cols, 1}};
            if (o->bm == M_CONTIG)
                vb = (struct cg_view){.buf = bufs[o->b], .off = o->bo, .ndim = 2,
                                      .shape = {o->rows, o->cols}, .strides = {o->cols, 1}};
        }
        CHECK_OK(be, bctx, be->ew(bctx, (enum cg_ew_op)o->op, o->p0, o->p1, &vo, &va,
                                  is_binary(o->op) ? &vb : NULL));
    }
    float *out = TH_TALLOC(float, NSLOT * sn);
    for (int s = 0; s < NSLOT; s++) {
        CHECK_OK(be, bctx, be->download(bctx, out + s * sn, bufs[s], 0,
                                        (size_t)sn * sizeof(float)));
        be->release(bctx, bufs[s]);
    }
    return out;
}

/* ---- the float64 reference ---- */

static double ref_op(int op, double x, double g, double p0, double p1)
{
    switch (op) {
    case CG_EW_COPY: return x;
    case CG_EW_NEG: return -x;
    case CG_EW_EXP: return exp(x);
    case CG_EW_LOG: return log(x);
    case CG_EW_SQRT: return sqrt(x);
    case CG_EW_ABS: return fabs(x);
    case CG_EW_RELU: return x < 0 ? 0 : x;
    case CG_EW_SIGMOID: return 1 / (1 + exp(-x));
    case CG_EW_TANH: return tanh(x);
    case CG_EW_GELU: return x * 0.5 * (1 + erf(x / sqrt(2.0)));
    case CG_EW_POW_SCALAR: return pow(x, p0);
    case CG_EW_CLAMP: return x < p0 ? p0 : x > p1 ? p1 : x;
    case CG_EW_AFFINE: return p0 * x + p1;
    case CG_EW_SIGN: return x > 0 ? 1 : x < 0 ? -1 : 0;
    case CG_EW_ADD: return x + g;
    case CG_EW_SUB: return x - g;
    case CG_EW_MUL: return x * g;
    case CG_EW_DIV: return x / g;
    case CG_EW_MAXIMUM: return x > g ? x : g;
    case CG_EW_MINIMUM: return x < g ? x : g;
    case CG_EW_EQ: return x == g;
    case CG_EW_GT: return x > g;
    case CG_EW_AXPBY: return p0 * x + p1 * g;
    case CG_EW_RELU_BACKWARD: return x > 0 ? g : 0;
    case CG_EW_SIGMOID_BACKWARD: return g * x * (1 - x);
    case CG_EW_TANH_BACKWARD: return g * (1 - x * x);
    case CG_EW_GELU_BACKWARD:
        return g * (0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI));
    case CG_EW_POW_SCALAR_BACKWARD: return g * p0 * pow(x, p0 - 1);
    case CG_EW_CLAMP_BACKWARD: return (x >= p0 && x <= p1) ? g : 0;
    default: return NAN;
    }
}

static int64_t src_index(enum mode m, int64_t off, int64_t i, int64_t cols)
{
    switch (m) {
    case M_CONTIG: return off + i;
    case M_SCALAR: return off;
    case M_ROW: return off + i % cols;
    default: return off + i / cols;
    }
}

static double *ref_prog(const struct prog *p, const float *init)
{
    const int64_t sn = slot_of(p);
    double *m = TH_TALLOC(double, NSLOT * sn);
    for (int64_t i = 0; i < NSLOT * sn; i++) m[i] = init[i];
    for (int k = 0; k < p->n; k++) {
        const struct fop *o = &p->ops[k];
        int64_t n = o->rows * o->cols;
        double *tmp = TH_TALLOC(double, n);   /* all reads before the writes */
        for (int64_t i = 0; i < n; i++) {
            if (o->op < 0) {
                tmp[i] = o->p0;
                continue;
            }
            double x = m[o->a * sn + src_index(o->am, o->ao, i, o->cols)];
            double g = is_binary(o->op) ? m[o->b * sn + src_index(o->bm, o->bo, i, o->cols)]
                                        : x;
            tmp[i] = (float)ref_op(o->op, x, g, o->p0, o->p1);
        }
        for (int64_t i = 0; i < n; i++) m[o->out * sn + o->oo + i] = tmp[i];
    }
    return m;
}

/* ---- fixtures ---- */

struct pair {
    cg_ctx *fused, *fused_loop, *plain;
};

/* Two contexts with fusion (one element per work-item; grid-stride
 * loops) and one without (CLGRAD_FUSE=0 at open). */
static int pair_setup(void **state)
{
    th_arena_release(0);
    struct pair *pr = calloc(1, sizeof *pr);
    if (!pr)
        return -1;
    setenv("CLGRAD_OPTIM_BATCH", "1", 1);   /* batched even on a CPU device */
    setenv("CLGRAD_FUSE_LOOP", "0", 1);
    pr->fused = th_ctx_create(7);
    setenv("CLGRAD_FUSE_LOOP", "1", 1);
    pr->fused_loop = th_ctx_create(7);
    unsetenv("CLGRAD_FUSE_LOOP");
    unsetenv("CLGRAD_OPTIM_BATCH");
    setenv("CLGRAD_FUSE", "0", 1);
    pr->plain = th_ctx_create(7);
    unsetenv("CLGRAD_FUSE");
    *state = pr;
    return 0;
}

static int pair_teardown(void **state)
{
    struct pair *pr = *state;
    cg_ctx_free(pr->fused);
    cg_ctx_free(pr->fused_loop);
    cg_ctx_free(pr->plain);
    free(pr);
    th_arena_release(0);
    return 0;
}

static float *rand_init_n(uint64_t *rng, int64_t slot, float lo, float hi)
{
    float *x = TH_TALLOC(float, NSLOT * slot);
    th_fill_uniform(rng, x, NSLOT * slot, lo, hi);
    return x;
}

static float *rand_init(uint64_t *rng, float lo, float hi)
{
    return rand_init_n(rng, SLOT_N, lo, hi);
}

/* Fused (both forms) and unfused results of p bitwise equal. */
static float *check_bitwise(struct pair *pr, const struct prog *p, const float *init,
                            const char *what)
{
    const int64_t sn = slot_of(p);
    float *b = run_prog(pr->plain, p, init);
    float *a = NULL;
    for (int form = 0; form < 2; form++) {
        a = run_prog(form ? pr->fused_loop : pr->fused, p, init);
        for (int64_t i = 0; i < NSLOT * sn; i++) {
            if (memcmp(&a[i], &b[i], sizeof(float)) != 0) {
                fail_msg("%s: fused (%s) and unfused differ at slot %d element %lld: "
                         "%.9g vs %.9g",
                         what, form ? "loop" : "per item", (int)(i / sn),
                         (long long)(i % sn), (double)a[i], (double)b[i]);
            }
        }
    }
    return a;
}

/* Runs p fused and unfused: bitwise equal; close to the reference when
 * rtol > 0. */
static void check_prog_tol(struct pair *pr, const struct prog *p, const float *init,
                           double rtol, double atol, const char *what)
{
    int mark = th_arena_mark();
    float *a = check_bitwise(pr, p, init, what);
    if (rtol > 0) {
        double *r = ref_prog(p, init);
        th_assert_close(a, r, NSLOT * slot_of(p), rtol, atol, what);
    }
    th_arena_release(mark);
}

static void check_prog(struct pair *pr, const struct prog *p, const float *init,
                       double ref_rtol, const char *what)
{
    check_prog_tol(pr, p, init, ref_rtol, ref_rtol, what);
}

static struct fop mk(int op, int out, int64_t oo, int a, int64_t ao, enum mode am, int b,
                     int64_t bo, enum mode bm, int64_t rows, int64_t cols)
{
    return (struct fop){.op = op, .out = out, .oo = oo, .a = a, .ao = ao, .am = am, .b = b,
                        .bo = bo, .bm = bm, .rows = rows, .cols = cols};
}

/* ---- tests ---- */

/* Every op inside a chain: an affine before it (its input from a
 * register), a row-broadcast second input, and an add after it reading its
 * result from a register, at sizes from one element up. */
static void test_every_op(void **state)
{
    struct pair *pr = *state;
    uint64_t rng = 11;
    static const int64_t shapes[][2] = {{1, 1}, {1, 7}, {3, 11}, {33, 31}, {4, 1031}};
    for (int op = 0; op < CG_EW_COUNT; op++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            int64_t rows = shapes[s][0], cols = shapes[s][1];
            int mark = th_arena_mark();
            float *init = rand_init(&rng, 0.5f, 2.0f);   /* positive: log, sqrt, pow */
            struct prog p = {0};
            p.ops[p.n] = mk(CG_EW_AFFINE, 1, 3, 0, 5, M_CONTIG, 0, 0, M_CONTIG, rows, cols);
            p.ops[p.n].p0 = 0.75f, p.ops[p.n++].p1 = 0.25f;
            struct fop o = mk(op, 3, 0, 1, 3, M_CONTIG, 2, 17, M_ROW, rows, cols);
            if (op == CG_EW_POW_SCALAR || op == CG_EW_POW_SCALAR_BACKWARD)
                o.p0 = 1.7f;
            if (op == CG_EW_CLAMP || op == CG_EW_CLAMP_BACKWARD)
                o.p0 = 0.9f, o.p1 = 1.6f;
            if (op == CG_EW_AFFINE || op == CG_EW_AXPBY)
                o.p0 = -1.25f, o.p1 = 0.5f;
            if (op == CG_EW_EQ)    /* equal where it reads its own input */
                o.b = 1, o.bo = 3, o.bm = M_CONTIG;
            p.ops[p.n++] = o;
            p.ops[p.n++] = mk(CG_EW_ADD, 4, 1, 3, 0, M_CONTIG, 1, 3, M_CONTIG, rows, cols);
            char what[96];
            snprintf(what, sizeof what, "op %d in a chain, %lld x %lld", op, (long long)rows,
                     (long long)cols);
            check_prog(pr, &p, init, 2e-5, what);
            th_arena_release(mark);
        }
    }
}

/* Broadcast inputs of every kind, fills, and one-element (uniform) ops
 * feeding broadcast reads: a loss's backward (ones, scale, products). */
static void test_modes_and_uniform_ops(void **state)
{
    struct pair *pr = *state;
    uint64_t rng = 12;
    int mark = th_arena_mark();
    float *init = rand_init(&rng, -2.0f, 2.0f);
    struct prog p = {0};
    struct fop f = mk(-1, 0, 9, 0, 0, M_CONTIG, 0, 0, M_CONTIG, 1, 1);
    f.p0 = 1.0f;
    p.ops[p.n++] = f;                                                       /* ones(1)   */
    f = mk(CG_EW_AFFINE, 1, 2, 0, 9, M_SCALAR, 0, 0, M_CONTIG, 1, 1);
    f.p0 = 1.0f / 37, f.p1 = 0;
    p.ops[p.n++] = f;                                                       /* scale     */
    p.ops[p.n++] = mk(CG_EW_MUL, 2, 0, 1, 2, M_SCALAR, 3, 0, M_CONTIG, 37, 1);  /* reg scalar */
    p.ops[p.n++] = mk(CG_EW_MUL, 4, 0, 1, 2, M_SCALAR, 3, 0, M_CONTIG, 37, 1);
    p.ops[p.n++] = mk(CG_EW_ADD, 5, 0, 2, 0, M_CONTIG, 4, 0, M_CONTIG, 37, 1);
    p.ops[p.n++] = mk(CG_EW_SUB, 3, 100, 5, 0, M_COL, 0, 200, M_ROW, 37, 13);   /* col, row  */
    f = mk(-1, 4, 700, 0, 0, M_CONTIG, 0, 0, M_CONTIG, 5, 9);
    f.p0 = -0.5f;
    p.ops[p.n++] = f;                                                       /* fill, many */
    p.ops[p.n++] = mk(CG_EW_MAXIMUM, 4, 700, 4, 700, M_CONTIG, 0, 3, M_SCALAR, 5, 9);
    check_prog(pr, &p, init, 2e-5, "broadcast modes and uniform ops");
    th_arena_release(mark);
}

/* Hazards: outputs over what the chain read at other offsets, broadcast
 * reads of a chain's many-element result, in-place updates, one-element
 * in-place ops, and sizes that differ within a chain. */
static void test_hazards(void **state)
{
    struct pair *pr = *state;
    uint64_t rng = 13;
    int mark = th_arena_mark();
    float *init = rand_init(&rng, -1.5f, 1.5f);
    struct prog p = {0};
    p.ops[p.n++] = mk(CG_EW_TANH, 2, 0, 1, 0, M_CONTIG, 0, 0, M_CONTIG, 1, 301);
    p.ops[p.n++] = mk(CG_EW_ADD, 1, 1, 0, 0, M_CONTIG, 3, 0, M_CONTIG, 1, 300); /* over a read, shifted */
    p.ops[p.n++] = mk(CG_EW_MUL, 2, 0, 1, 0, M_CONTIG, 1, 5, M_SCALAR, 1, 301); /* bcast    */
    p.ops[p.n++] = mk(CG_EW_ADD, 3, 0, 3, 0, M_CONTIG, 2, 0, M_CONTIG, 1, 301); /* in place */
    p.ops[p.n++] = mk(CG_EW_MUL, 3, 0, 3, 0, M_CONTIG, 3, 0, M_CONTIG, 1, 301);
    p.ops[p.n++] = mk(CG_EW_SUB, 4, 0, 3, 0, M_ROW, 1, 0, M_CONTIG, 3, 100);    /* row of result */
    p.ops[p.n++] = mk(CG_EW_ADD, 5, 7, 5, 7, M_CONTIG, 4, 3, M_CONTIG, 1, 1);   /* 1-elem in place */
    p.ops[p.n++] = mk(CG_EW_MUL, 5, 20, 5, 7, M_SCALAR, 4, 0, M_CONTIG, 1, 50);
    p.ops[p.n++] = mk(CG_EW_NEG, 0, 0, 5, 20, M_CONTIG, 0, 0, M_CONTIG, 1, 77); /* sizes differ */
    p.ops[p.n++] = mk(CG_EW_SIGMOID, 0, 1000, 4, 0, M_CONTIG, 0, 0, M_CONTIG, 1, 2000);
    p.ops[p.n++] = mk(CG_EW_ADD, 2, 500, 0, 0, M_CONTIG, 0, 1000, M_CONTIG, 1, 77);
    p.ops[p.n++] = mk(CG_EW_COPY, 0, 2, 3, 0, M_CONTIG, 0, 0, M_CONTIG, 1, 40); /* over a write, shifted */
    check_prog(pr, &p, init, 2e-5, "hazards");
    th_arena_release(mark);
}

/* Random programs over every op (bitwise against unfused), and over the
 * continuous ops (also against the reference). */
static void test_random_chains(void **state)
{
    struct pair *pr = *state;
    uint64_t rng = 14;
    static const int cont[] = {CG_EW_COPY, CG_EW_NEG, CG_EW_ABS, CG_EW_RELU, CG_EW_SIGMOID,
                               CG_EW_TANH, CG_EW_CLAMP, CG_EW_AFFINE, CG_EW_ADD, CG_EW_SUB,
                               CG_EW_MUL, CG_EW_MAXIMUM, CG_EW_MINIMUM, CG_EW_AXPBY,
                               CG_EW_TANH_BACKWARD, CG_EW_SIGMOID_BACKWARD};
    for (int t = 0; t < 40; t++) {
        int mark = th_arena_mark();
        bool continuous = t % 2 == 0;
        float *init = rand_init(&rng, -1.0f, 1.0f);
        struct prog p = {0};
        p.n = 2 + (int)(th_rand_u64(&rng) % (MAXOPS - 2));
        int64_t rows = 1 + (int64_t)(th_rand_u64(&rng) % 40);
        int64_t cols = 1 + (int64_t)(th_rand_u64(&rng) % 97);
        for (int i = 0; i < p.n; i++) {
            struct fop *o = &p.ops[i];
            int op = continuous ? cont[th_rand_u64(&rng) % (sizeof cont / sizeof cont[0])]
                                : (int)(th_rand_u64(&rng) % (CG_EW_COUNT + 1)) - 1;
            if (op == CG_EW_LOG || op == CG_EW_SQRT || op == CG_EW_POW_SCALAR ||
                op == CG_EW_POW_SCALAR_BACKWARD || op == CG_EW_DIV)
                op = CG_EW_MUL;   /* keep NaN/inf out: they compare fine, but hide the rest */
            /* Mostly one shape and a few buffers, so ops chain; now and
             * then another size or a shifted offset. */
            int64_t r = rows, c = cols;
            if (th_rand_u64(&rng) % 6 == 0)
                r = 1 + (int64_t)(th_rand_u64(&rng) % rows);
            *o = mk(op, (int)(th_rand_u64(&rng) % NSLOT), 0, (int)(th_rand_u64(&rng) % NSLOT),
                    0, M_CONTIG, (int)(th_rand_u64(&rng) % NSLOT), 0, M_CONTIG, r, c);
            if (th_rand_u64(&rng) % 8 == 0)
                o->oo = (int64_t)(th_rand_u64(&rng) % 5);
            if (th_rand_u64(&rng) % 8 == 0)
                o->ao = (int64_t)(th_rand_u64(&rng) % 5);
            o->am = (enum mode)(th_rand_u64(&rng) % 3 == 0 ? th_rand_u64(&rng) % 4 : M_CONTIG);
            o->bm = (enum mode)(th_rand_u64(&rng) % 3 == 0 ? th_rand_u64(&rng) % 4 : M_CONTIG);
            o->p0 = (float)th_rand_uniform(&rng, -1, 1);
            o->p1 = (float)th_rand_uniform(&rng, -1, 1);
            if (op == CG_EW_CLAMP || op == CG_EW_CLAMP_BACKWARD) {
                o->p0 = -0.5f;
                o->p1 = 0.5f;
            }
            /* backend.h: out may be an input only as the identical view. */
            bool bin = op >= 0 && is_binary(op);
            bool clash_a = op >= 0 && o->out == o->a && !(o->am == M_CONTIG && o->ao == o->oo);
            bool clash_b = bin && o->out == o->b && !(o->bm == M_CONTIG && o->bo == o->oo);
            if (clash_a || clash_b) {
                if (th_rand_u64(&rng) % 2 == 0 && !(clash_a && clash_b)) {
                    if (clash_a)
                        o->am = M_CONTIG, o->ao = o->oo;
                    else
                        o->bm = M_CONTIG, o->bo = o->oo;
                } else {
                    while (o->out == o->a || (bin && o->out == o->b))
                        o->out = (o->out + 1) % NSLOT;
                }
            }
        }
        char what[64];
        snprintf(what, sizeof what, "random chain %d (%d ops%s)", t, p.n,
                 continuous ? ", continuous" : "");
        check_prog(pr, &p, init, continuous ? 1e-4 : 0, what);
        th_arena_release(mark);
    }
}

/* GELU and its backward in chains (a row-broadcast bias before, an
 * unrelated op between) over x in about [-6, 6], against float64: rtol 1e-5,
 * atol 1e-6 as test_primitives, which the Abramowitz & Stegun erf of
 * cl/ew.cl meets (header). */
static void test_gelu_chain_reference(void **state)
{
    struct pair *pr = *state;
    uint64_t rng = 18;
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {37, 101}, {5, 829}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int64_t rows = shapes[s][0], cols = shapes[s][1];
        int mark = th_arena_mark();
        float *init = rand_init(&rng, -3.0f, 3.0f);
        struct prog p = {0};
        p.ops[p.n++] = mk(CG_EW_ADD, 1, 0, 0, 0, M_CONTIG, 2, 11, M_ROW, rows, cols);
        p.ops[p.n++] = mk(CG_EW_GELU, 3, 0, 1, 0, M_CONTIG, 0, 0, M_CONTIG, rows, cols);
        p.ops[p.n++] = mk(CG_EW_TANH, 4, 0, 0, 0, M_CONTIG, 0, 0, M_CONTIG, rows, cols);
        p.ops[p.n++] = mk(CG_EW_GELU_BACKWARD, 5, 0, 1, 0, M_CONTIG, 4, 0, M_CONTIG, rows,
                          cols);
        p.ops[p.n++] = mk(CG_EW_GELU, 0, 0, 2, 0, M_CONTIG, 0, 0, M_CONTIG, rows, cols);
        char what[96];
        snprintf(what, sizeof what, "gelu chain %lld x %lld", (long long)rows,
                 (long long)cols);
        check_prog_tol(pr, &p, init, 1e-5, 1e-6, what);
        th_arena_release(mark);
    }
}

/* Broadcast chains of more rows than one 2-d launch takes (32768), with a
 * column broadcast, a shorter op (bounds check) and a one-element op; the
 * same with a flat op one element longer than the block (no 2-d range: a
 * 1-d one whose size has no power-of-two factor, so full work-groups and a
 * rest); and one with two row lengths. */
static void test_tall_broadcasts(void **state)
{
    struct pair *pr = *state;
    uint64_t rng = 19;
    const int64_t rows = 32768 + 37, cols = 3, n = rows * cols;
    for (int variant = 0; variant < 3; variant++) {
        int mark = th_arena_mark();
        struct prog p = {.slot = n + 64};
        float *init = rand_init_n(&rng, p.slot, -2.0f, 2.0f);
        if (variant == 1)   /* 98416 = 2^4 x 6151: groups of 16, full + rest below */
            p.ops[p.n++] = mk(CG_EW_NEG, 5, 0, 4, 0, M_CONTIG, 0, 0, M_CONTIG, 1, n + 1);
        p.ops[p.n++] = mk(CG_EW_ADD, 1, 0, 0, 0, M_CONTIG, 2, 5, M_ROW, rows, cols);
        p.ops[p.n++] = mk(CG_EW_MUL, 3, 0, 1, 0, M_CONTIG, 2, 9, M_COL, rows, cols);
        p.ops[p.n++] = mk(CG_EW_GELU, 4, 0, 3, 0, M_CONTIG, 0, 0, M_CONTIG, rows, cols);
        if (variant == 2)   /* the same elements as (rows * 3 / 5, 5) rows */
            p.ops[p.n++] = mk(CG_EW_SUB, 1, 0, 4, 0, M_CONTIG, 0, 17, M_ROW, n / 5, 5);
        else
            p.ops[p.n++] = mk(CG_EW_SUB, 1, 0, 4, 0, M_CONTIG, 0, 17, M_ROW, rows, cols);
        struct fop f = mk(-1, 5, 0, 0, 0, M_CONTIG, 0, 0, M_CONTIG, 1, 1001);
        f.p0 = 0.25f;
        p.ops[p.n++] = f;
        f = mk(CG_EW_AFFINE, 5, 2000, 2, 3, M_SCALAR, 0, 0, M_CONTIG, 1, 1);
        f.p0 = 1.5f, f.p1 = -0.5f;
        p.ops[p.n++] = f;
        p.ops[p.n++] = mk(CG_EW_MAXIMUM, 3, 0, 1, 0, M_CONTIG, 5, 2000, M_SCALAR, rows, cols);
        char what[64];
        snprintf(what, sizeof what, "tall broadcast chain, variant %d", variant);
        check_prog_tol(pr, &p, init, 1e-5, 1e-6, what);
        th_arena_release(mark);
    }
    /* 1-d sizes around the work-group rules: powers of two, odd sizes up to
     * and past one group, an odd size of many groups */
    static const int64_t sizes[] = {2, 31, 32, 33, 255, 256, 257, 1023, 1024, 1025, 4096,
                                    65537};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        int mark = th_arena_mark();
        struct prog p = {.slot = sizes[k] + 8};
        float *init = rand_init_n(&rng, p.slot, -2.0f, 2.0f);
        p.ops[p.n++] = mk(CG_EW_SIGMOID, 1, 0, 0, 0, M_CONTIG, 0, 0, M_CONTIG, 1, sizes[k]);
        p.ops[p.n++] = mk(CG_EW_MUL, 2, 3, 1, 0, M_CONTIG, 0, 5, M_CONTIG, 1, sizes[k]);
        p.ops[p.n++] = mk(CG_EW_RELU, 4, 1, 4, 1, M_CONTIG, 0, 0, M_CONTIG, 1, sizes[k]);
        char what[64];
        snprintf(what, sizeof what, "flat chain of %lld", (long long)sizes[k]);
        check_prog_tol(pr, &p, init, 1e-5, 1e-6, what);
        th_arena_release(mark);
    }
}

/* Pending ops flush in order when their output is downloaded mid-chain,
 * when a buffer goes back to the pool and comes out again for another
 * tensor, and when GEMM reads a chain's result. */
static void test_flush_ordering(void **state)
{
    struct pair *pr = *state;
    cg_ctx *ctx = pr->fused;
    void *bctx;
    const struct cg_backend_i *be = cg_ctx_backend(ctx, &bctx);
    const int64_t M = 5, K = 7, N = 3;
    float ha[35], hb[21];
    uint64_t rng = 15;
    th_fill_uniform(&rng, ha, 35, -1, 1);
    th_fill_uniform(&rng, hb, 21, -1, 1);
    struct cg_buffer *a, *b, *c, *t;
    CHECK_OK(be, bctx, be->alloc(bctx, sizeof ha, &a));
    CHECK_OK(be, bctx, be->alloc(bctx, sizeof hb, &b));
    CHECK_OK(be, bctx, be->alloc(bctx, M * N * sizeof(float), &c));
    CHECK_OK(be, bctx, be->upload(bctx, a, 0, ha, sizeof ha));
    CHECK_OK(be, bctx, be->upload(bctx, b, 0, hb, sizeof hb));

    /* a = 2a + 1, then a = relu(a); the GEMM must see both. */
    struct cg_view va = {.buf = a, .ndim = 1, .shape = {35}, .strides = {1}};
    CHECK_OK(be, bctx, be->ew(bctx, CG_EW_AFFINE, 2, 1, &va, &va, NULL));
    CHECK_OK(be, bctx, be->ew(bctx, CG_EW_RELU, 0, 0, &va, &va, NULL));
    struct cg_gemm_desc g = {.m = M, .n = N, .k = K, .alpha = 1, .beta = 0, .lda = K,
                             .ldb = N, .ldc = N, .batch = 1};
    CHECK_OK(be, bctx, be->gemm(bctx, &g, (struct cg_ptr){a, 0}, (struct cg_ptr){b, 0},
                                (struct cg_ptr){c, 0}));
    /* c = c * 3 after the GEMM, then read back. */
    struct cg_view vc = {.buf = c, .ndim = 1, .shape = {M * N}, .strides = {1}};
    CHECK_OK(be, bctx, be->ew(bctx, CG_EW_AFFINE, 3, 0, &vc, &vc, NULL));
    float got[15];
    CHECK_OK(be, bctx, be->download(bctx, got, c, 0, sizeof got));
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) {
                double x = 2.0 * ha[i * K + k] + 1;
                s += (x > 0 ? x : 0) * hb[k * N + j];
            }
            if (fabs(got[i * N + j] - 3 * s) > 1e-4 * (1 + fabs(3 * s)))
                fail_msg("gemm after a chain: c[%lld,%lld] = %g, want %g", (long long)i,
                         (long long)j, (double)got[i * N + j], 3 * s);
        }

    /* A chain writes t, t goes back to the pool, the next alloc of that
     * size class gets it for a tensor of another length, and a new chain
     * writes it; both chains' other outputs must stay right. */
    CHECK_OK(be, bctx, be->alloc(bctx, 40 * sizeof(float), &t));
    struct cg_view vt = {.buf = t, .ndim = 1, .shape = {40}, .strides = {1}};
    CHECK_OK(be, bctx, be->fill(bctx, &vt, 4.0f));
    struct cg_view vb7 = {.buf = b, .off = 0, .ndim = 1, .shape = {21}, .strides = {1}};
    struct cg_view vt21 = {.buf = t, .off = 0, .ndim = 1, .shape = {21}, .strides = {1}};
    CHECK_OK(be, bctx, be->ew(bctx, CG_EW_MUL, 0, 0, &vb7, &vb7, &vt21));   /* b *= 4 */
    be->release(bctx, t);
    struct cg_buffer *u;
    CHECK_OK(be, bctx, be->alloc(bctx, 30 * sizeof(float), &u));
    struct cg_view vu = {.buf = u, .ndim = 1, .shape = {30}, .strides = {1}};
    CHECK_OK(be, bctx, be->fill(bctx, &vu, -1.0f));
    struct cg_view vu21 = {.buf = u, .ndim = 1, .shape = {21}, .strides = {1}};
    CHECK_OK(be, bctx, be->ew(bctx, CG_EW_ADD, 0, 0, &vb7, &vb7, &vu21));   /* b -= 1 */
    float gb[21], gu[30];
    CHECK_OK(be, bctx, be->download(bctx, gb, b, 0, sizeof gb));
    CHECK_OK(be, bctx, be->download(bctx, gu, u, 0, sizeof gu));
    for (int i = 0; i < 21; i++)
        if (gb[i] != hb[i] * 4.0f - 1.0f)
            fail_msg("pool reuse: b[%d] = %g, want %g", i, (double)gb[i],
                     (double)(hb[i] * 4.0f - 1.0f));
    for (int i = 0; i < 30; i++)
        assert_true(gu[i] == -1.0f);

    /* A downloaded chain output, then more ops on it. */
    CHECK_OK(be, bctx, be->ew(bctx, CG_EW_NEG, 0, 0, &vu, &vu, NULL));
    float one;
    CHECK_OK(be, bctx, be->download(bctx, &one, u, 29 * sizeof(float), sizeof one));
    assert_true(one == 1.0f);
    CHECK_OK(be, bctx, be->ew(bctx, CG_EW_AFFINE, 2, 0, &vu, &vu, NULL));
    CHECK_OK(be, bctx, be->finish(bctx));
    CHECK_OK(be, bctx, be->download(bctx, gu, u, 0, sizeof gu));
    for (int i = 0; i < 30; i++)
        assert_true(gu[i] == 2.0f);
    be->release(bctx, u);
    be->release(bctx, a);
    be->release(bctx, b);
    be->release(bctx, c);
}

/* Several parameters updated in a row (batched into one launch on opencl)
 * give bitwise the one-launch-each results, for each optimizer, including
 * a parameter updated twice in a row (which must not share a batch). */
static void test_optim_batches(void **state)
{
    struct pair *pr = *state;
    static const int64_t sizes[] = {640, 64, 4096, 64, 1, 11, 33, 5, 257, 3};
    enum { NP = 10 };
    uint64_t rng = 16;
    for (int kind = 0; kind < 3; kind++) {
        int mark = th_arena_mark();
        float *res[2];
        float *hp[NP], *hg[NP], *hs[NP];
        for (int i = 0; i < NP; i++) {
            hp[i] = TH_TALLOC(float, sizes[i]);
            hg[i] = TH_TALLOC(float, sizes[i]);
            hs[i] = TH_TALLOC(float, 3 * sizes[i]);
            th_fill_uniform(&rng, hp[i], sizes[i], -1, 1);
            th_fill_uniform(&rng, hg[i], sizes[i], -1, 1);
            th_fill_uniform(&rng, hs[i], 3 * sizes[i], 0.1f, 1);
        }
        int64_t total = 0;
        for (int i = 0; i < NP; i++) total += 4 * sizes[i];
        for (int v = 0; v < 2; v++) {
            cg_ctx *ctx = v ? pr->plain : pr->fused;
            void *bctx;
            const struct cg_backend_i *be = cg_ctx_backend(ctx, &bctx);
            struct cg_buffer *bp[NP], *bg[NP], *bs[NP];
            for (int i = 0; i < NP; i++) {
                CHECK_OK(be, bctx, be->alloc(bctx, sizes[i] * 4, &bp[i]));
                CHECK_OK(be, bctx, be->alloc(bctx, sizes[i] * 4, &bg[i]));
                CHECK_OK(be, bctx, be->alloc(bctx, 3 * sizes[i] * 4, &bs[i]));
                CHECK_OK(be, bctx, be->upload(bctx, bp[i], 0, hp[i], sizes[i] * 4));
                CHECK_OK(be, bctx, be->upload(bctx, bg[i], 0, hg[i], sizes[i] * 4));
                CHECK_OK(be, bctx, be->upload(bctx, bs[i], 0, hs[i], 3 * sizes[i] * 4));
            }
            for (int step = 1; step <= 3; step++) {
                struct cg_optim_hparams h = {.kind = (enum cg_optim_kind)kind, .lr = 0.01f,
                                             .weight_decay = 0.01f, .momentum = 0.9f,
                                             .dampening = 0.1f, .beta1 = 0.9f,
                                             .beta2 = 0.999f, .eps = 1e-8f, .alpha = 0.99f,
                                             .centered = 1, .step = step};
                h.bias_correction1 = (float)(1 - pow(0.9, step));
                h.bias_correction2 = (float)(1 - pow(0.999, step));
                for (int i = 0; i < NP; i++) {
                    struct cg_ptr st[3] = {{bs[i], 0}, {bs[i], sizes[i]}, {bs[i], 2 * sizes[i]}};
                    CHECK_OK(be, bctx, be->optim_update(bctx, &h, (struct cg_ptr){bp[i], 0},
                                                        (struct cg_ptr){bg[i], 0}, st,
                                                        sizes[i]));
                    if (i == 4)   /* the same parameter again, at once */
                        CHECK_OK(be, bctx,
                                 be->optim_update(bctx, &h, (struct cg_ptr){bp[i], 0},
                                                  (struct cg_ptr){bg[i], 0}, st, sizes[i]));
                }
                /* the gradient changes between steps: an ew op between batches */
                struct cg_view vg = {.buf = bg[0], .ndim = 1, .shape = {sizes[0]},
                                     .strides = {1}};
                CHECK_OK(be, bctx, be->ew(bctx, CG_EW_AFFINE, -0.5f, 0.125f, &vg, &vg, NULL));
            }
            res[v] = TH_TALLOC(float, total);
            int64_t at = 0;
            for (int i = 0; i < NP; i++) {
                CHECK_OK(be, bctx, be->download(bctx, res[v] + at, bp[i], 0, sizes[i] * 4));
                at += sizes[i];
                CHECK_OK(be, bctx, be->download(bctx, res[v] + at, bs[i], 0, 3 * sizes[i] * 4));
                at += 3 * sizes[i];
                be->release(bctx, bp[i]);
                be->release(bctx, bg[i]);
                be->release(bctx, bs[i]);
            }
        }
        for (int64_t i = 0; i < total; i++)
            if (memcmp(&res[0][i], &res[1][i], sizeof(float)) != 0)
                fail_msg("optimizer %d: batched and one-by-one differ at %lld: %.9g vs %.9g",
                         kind, (long long)i, (double)res[0][i], (double)res[1][i]);
        /* and the updates happened */
        assert_true(res[0][0] != hp[0][0]);
        th_arena_release(mark);
    }
}

/* opencl: a second context (another instance, so an empty in-memory
 * kernel table) finds the fused kernel in the on-disk cache: the cache
 * file is not rewritten (same inode). */
static void test_disk_cache_hit(void **state)
{
    (void)state;
    if (strcmp(th_backend(), "opencl") != 0)
        skip();
    char dir[] = "/tmp/clgrad-fuse-cache-XXXXXX";
    assert_non_null(mkdtemp(dir));
    const char *old = getenv("CLGRAD_CACHE_DIR");
    char *saved = old ? strdup(old) : NULL;
    setenv("CLGRAD_CACHE_DIR", dir, 1);
    struct prog p = {0};
    p.ops[p.n++] = mk(CG_EW_GELU, 1, 0, 0, 0, M_CONTIG, 0, 0, M_CONTIG, 3, 17);
    p.ops[p.n++] = mk(CG_EW_MUL, 2, 0, 1, 0, M_CONTIG, 0, 5, M_ROW, 3, 17);
    uint64_t rng = 17;
    int mark = th_arena_mark();
    float *init = rand_init(&rng, -1, 1);
    ino_t ino[2] = {0, 0};
    float *out[2];
    for (int round = 0; round < 2; round++) {
        cg_ctx *ctx = th_ctx_create(3);
        out[round] = run_prog(ctx, &p, init);
        cg_ctx_free(ctx);
        DIR *d = opendir(dir);
        assert_non_null(d);
        int found = 0;
        for (struct dirent *e; (e = readdir(d));) {
            if (strncmp(e->d_name, "fuse-", 5) != 0)
                continue;
            char path[512];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            assert_int_equal(stat(path, &st), 0);
            ino[round] = st.st_ino;
            found++;
        }
        closedir(d);
        assert_int_equal(found, 1);   /* one chain, one kernel */
    }
    assert_true(ino[0] == ino[1]);
    assert_memory_equal(out[0], out[1], NSLOT * SLOT_N * sizeof(float));
    /* clean up the private cache folder */
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    if (saved)
        setenv("CLGRAD_CACHE_DIR", saved, 1);
    else
        unsetenv("CLGRAD_CACHE_DIR");
    free(saved);
    th_arena_release(mark);
}

int main(int argc, char **argv)
{
#define T(f) cmocka_unit_test_setup_teardown(f, pair_setup, pair_teardown)
    const struct CMUnitTest tests[] = {
        T(test_every_op),
        T(test_modes_and_uniform_ops),
        T(test_hazards),
        T(test_random_chains),
        T(test_gelu_chain_reference),
        T(test_tall_broadcasts),
        T(test_flush_ordering),
        T(test_optim_batches),
        T(test_disk_cache_hit),
    };
#undef T
    return TH_RUN(tests);
}
