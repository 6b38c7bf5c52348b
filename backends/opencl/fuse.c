/*
 * backends/opencl/fuse.c — elementwise chains fused into one generated
 * kernel.
 *
 * A training step issues long runs of small elementwise ops (bias add,
 * activation, their backward helpers, gradient copies), and on a CPU device
 * each clEnqueueNDRangeKernel costs several microseconds, more than the
 * arithmetic. So ew() and fill() over contiguous outputs do not enqueue at
 * once: they append the op to a pending chain. Any other primitive, a
 * transfer, finish() or an op the chain cannot take drains the chain first
 * (the chain is a pending queue of queue.c), as ONE kernel that computes
 * the ops in order:
 *
 *     for (i = gid; i < n; i += gsize) {
 *         float v0 = cg_ew_apply(ADD, b0[o0 + i], b1[o1 + i % d1], ..);
 *         b2[o2 + i] = v0;                    every output is stored, so
 *         float v1 = cg_ew_apply(RELU, v0, ..);  saved tensors stay valid
 *         b3[o3 + i] = v1;
 *     }
 *
 * A later op that reads an earlier op's output at the same index takes it
 * from the register. Ops of one element (a loss's scale, a fill of ones)
 * are "uniform": every work-item computes them before the loop (their
 * inputs are never written by the kernel) and the work-item of element 0
 * stores them; a later op reading one as a broadcast scalar takes the
 * register.
 *
 * The kernel comes in four forms (fuse_head). GPUs get the loop above;
 * a CPU device (PoCL) one element per work-item with no loop and no bounds
 * check, launched over exactly the elements (cg_fuse_launch_item), since
 * PoCL vectorises across work-items only over straight-line code (a bias
 * add + ReLU over (2048, 256): ~0.14 ms so, ~0.85 ms as the loop). When
 * every row / column broadcast of the chain has the same row length, the
 * broadcasts index by row and column instead of i % cols and i / cols (a
 * 64-bit division an element): a (cols, rows) range on a CPU device, in
 * launches of at most 32768 rows; counters stepped along the loop on GPUs.
 * On a CPU device a chain of one op gets a generated kernel too (the stock
 * ew_flat switches over the op per element and does not vectorise).
 *
 * Correctness rests on one rule: within the kernel, work-item w handles
 * indices i = w, w + gsize, ... (one index in the per-item forms, whatever
 * launches it takes); an access is safe when every element it
 * touches is written, if at all, only by the same work-item before (or, for
 * aligned in-place updates, at) the same index. append() checks each new
 * op's reads against the chain's writes and its write against the chain's
 * reads and writes, by buffer and element range, and flushes first when the
 * rule would break (e.g. a broadcast read of a chain result of many
 * elements, or a write over something the chain read at another index).
 *
 * Each op is the same cg_ew_apply() of cl/ew.cl (its source is the
 * program's prefix), with the same float inputs, so a fused chain gives
 * bitwise the results of the unfused kernels (tests/test_cl_fusion.c). The
 * generated source depends only on the chain's shape (ops, which buffer
 * each access uses, input modes) and the form, never on sizes, offsets or
 * scalars, which travel as arguments: a training loop settles on a handful
 * of kernels,
 * built once per process (hash map below) and loaded from the on-disk
 * binary cache (program.c) in the next one.
 *
 * CLGRAD_FUSE=0 turns fusion off, and optim.c's batching with it (every
 * op launches at once, as before). CLGRAD_FUSE_LOOP=1 / 0 picks the loop /
 * per-item forms on any device (the tests run both).
 */
#include "cl_backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CG_FUSE_MAX_OPS 16
#define CG_FUSE_MAX_BUFS 12
#define CG_FUSE_MAX_ACC (CG_FUSE_MAX_OPS * 3)
#define CG_FUSE_MAX_ARGS (CG_FUSE_MAX_BUFS + CG_FUSE_MAX_OPS * 8 + 2)
#define CG_FUSE_KEY_LEN (CG_FUSE_MAX_OPS * 8 + 2)

/* How the generated kernel walks the elements (fuse_head). */
enum cg_fuse_form { CG_FF_LOOP, CG_FF_LOOP_2D, CG_FF_ITEM, CG_FF_ITEM_2D };

/* How an input is read; REG: an earlier op's value. */
enum cg_fuse_mode { CG_FM_CONTIG, CG_FM_SCALAR, CG_FM_ROW, CG_FM_COL, CG_FM_REG };

struct cg_fuse_in {
    enum cg_fuse_mode mode;
    int buf;                   /* chain buffer index (memory modes)     */
    int reg;                   /* op index (REG)                        */
    cl_long off, div;
};

struct cg_fuse_op {
    int op;                    /* cg_ew_op, or CG_CL_FUSE_FILL          */
    int uniform;               /* one element: computed before the loop */
    int nin;
    struct cg_fuse_in in[2];
    int out_buf;
    cl_long out_off, n;
    cl_float p0, p1;
};

/* A memory access of the chain, for the hazard checks. */
struct cg_fuse_acc {
    int buf;
    int64_t lo, hi;            /* element range [lo, hi)                */
    int write;
    int aligned;               /* contiguous from lo: element lo + i is
                                  touched by the work-item of index i   */
    int64_t n;                 /* writes: element count                 */
    int op;                    /* writes: the op that wrote it          */
};

struct cg_fuse_chain {
    int nops, nbufs, nacc;
    struct cg_fuse_op ops[CG_FUSE_MAX_OPS];
    struct cg_buffer *bufs[CG_FUSE_MAX_BUFS];
    struct cg_fuse_acc acc[CG_FUSE_MAX_ACC];
    size_t arg_bytes;          /* kernel argument bytes so far          */
};

/* One generated kernel, by key. */
struct cg_fuse_entry {
    unsigned char key[CG_FUSE_KEY_LEN];
    size_t key_len;
    uint64_t hash;
    cl_program prog;
    cl_kernel kern;
    size_t local;              /* power of two, <= 256 and wg          */
    size_t wg;                 /* the kernel's work-group size limit   */
};

struct cg_cl_fuse {
    struct cg_fuse_chain chain;
    struct cg_fuse_entry *map;  /* open addressing, cap a power of two  */
    size_t cap, used;
};

static int fuse_has_params(int op)
{
    return op == CG_CL_FUSE_FILL || op == CG_EW_POW_SCALAR || op == CG_EW_CLAMP ||
           op == CG_EW_AFFINE || op == CG_EW_AXPBY || op == CG_EW_POW_SCALAR_BACKWARD ||
           op == CG_EW_CLAMP_BACKWARD;
}

cg_status cg_cl_fuse_init(struct cg_cl *cl)
{
    cl->fuse = calloc(1, sizeof *cl->fuse);
    if (!cl->fuse)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "opencl: out of host memory");
    return CG_OK;
}

void cg_cl_fuse_release(struct cg_cl *cl)
{
    struct cg_cl_fuse *f = cl->fuse;
    if (!f)
        return;
    for (size_t i = 0; i < f->cap; ++i) {
        if (f->map[i].kern)
            clReleaseKernel(f->map[i].kern);
        if (f->map[i].prog)
            clReleaseProgram(f->map[i].prog);
    }
    free(f->map);
    free(f);
    cl->fuse = NULL;
}

/* ---- hazard checks ------------------------------------------------------ */

static int fuse_overlap(const struct cg_fuse_acc *a, int buf, int64_t lo, int64_t hi)
{
    return a->buf == buf && a->lo < hi && lo < a->hi;
}

/* How op `o` (n elements, uniform if n == 1) may read [lo, hi) of buf with
 * mode m at off: *reg = -1 for memory, else the op whose register holds the
 * value. Returns 0 when the read cannot join the chain. */
static int fuse_read_ok(const struct cg_fuse_chain *c, int buf, enum cg_fuse_mode m,
                        int64_t off, int64_t lo, int64_t hi, int64_t n, int *reg)
{
    *reg = -1;
    int last = -1;
    for (int i = 0; i < c->nacc; ++i) {
        const struct cg_fuse_acc *a = &c->acc[i];
        if (!a->write || !fuse_overlap(a, buf, lo, hi))
            continue;
        /* Every overlapping write in a chain is aligned with the others
         * (write_ok), so the latest one holds the current value. */
        last = i;
    }
    if (last < 0)
        return 1;
    const struct cg_fuse_acc *w = &c->acc[last];
    const struct cg_fuse_op *wo = &c->ops[w->op];
    if (w->lo != off)
        return 0;
    if (m == CG_FM_CONTIG && !wo->uniform && w->n == n) {
        *reg = w->op;
        return 1;
    }
    if (m == CG_FM_SCALAR && wo->uniform) {
        *reg = w->op;
        return 1;
    }
    return 0;
}

/* Whether a write of [off, off + n) in buf by a (uniform) op may join. */
static int fuse_write_ok(const struct cg_fuse_chain *c, int buf, int64_t off, int64_t n,
                         int uniform)
{
    for (int i = 0; i < c->nacc; ++i) {
        const struct cg_fuse_acc *a = &c->acc[i];
        if (!fuse_overlap(a, buf, off, off + n))
            continue;
        if (a->write) {
            if (a->lo != off || a->n != n)
                return 0;
        } else if (uniform || !a->aligned || a->lo != off) {
            /* Uniform ops run in every work-item: no one may write what
             * any of them reads. */
            return 0;
        }
    }
    return 1;
}

/* ---- building the chain ------------------------------------------------- */

static int fuse_buf(struct cg_fuse_chain *c, struct cg_buffer *b, int *added)
{
    for (int i = 0; i < c->nbufs; ++i)
        if (c->bufs[i] == b)
            return i;
    if (c->nbufs == CG_FUSE_MAX_BUFS)
        return -1;
    c->bufs[c->nbufs] = b;
    ++*added;
    return c->nbufs++;
}

static void fuse_note(struct cg_fuse_chain *c, int buf, int64_t lo, int64_t hi, int write,
                      int aligned, int64_t n, int op)
{
    struct cg_fuse_acc *a = &c->acc[c->nacc++];
    a->buf = buf;
    a->lo = lo;
    a->hi = hi;
    a->write = write;
    a->aligned = aligned;
    a->n = n;
    a->op = op;
}

static void fuse_range(const struct cg_cl_fuse_src *s, int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = s->off;
    switch (s->mode) {
    case CG_CL_FUSE_CONTIG: *hi = s->off + n; break;
    case CG_CL_FUSE_SCALAR: *hi = s->off + 1; break;
    case CG_CL_FUSE_ROW:    *hi = s->off + s->div; break;
    default:                *hi = s->off + n / s->div; break;   /* COL */
    }
}

/* The chain's length: its longest op that is not uniform (0 if none). */
static int64_t fuse_nmax(const struct cg_fuse_chain *c)
{
    int64_t nmax = 0;
    for (int i = 0; i < c->nops; ++i)
        if (!c->ops[i].uniform && c->ops[i].n > nmax)
            nmax = c->ops[i].n;
    return nmax;
}

/* The last element index op o names in one of its buffers when the
 * kernel runs i over [0, nmax). */
static int64_t fuse_last_index(const struct cg_fuse_in *in, int64_t nmax)
{
    switch (in->mode) {
    case CG_FM_CONTIG: return in->off + nmax - 1;
    case CG_FM_ROW: return in->off + in->div - 1;
    case CG_FM_COL: return in->off + (nmax - 1) / in->div;
    default: return in->off;
    }
}

/* Chain buffer j's length in floats (its size class, allocated). */
static int64_t fuse_buf_len(const struct cg_fuse_chain *c, int j)
{
    return (int64_t)(c->bufs[j]->cap / sizeof(cl_float));
}

/* Whether op o, run over [0, nmax), names only elements inside its
 * buffers (an op as long as the chain, or uniform, always does). */
static int fuse_op_in_bounds(const struct cg_fuse_chain *c, const struct cg_fuse_op *o,
                             int64_t nmax)
{
    if (o->uniform || o->n >= nmax)
        return 1;
    for (int k = 0; k < o->nin; ++k)
        if (o->in[k].mode != CG_FM_REG &&
            fuse_last_index(&o->in[k], nmax) >= fuse_buf_len(c, o->in[k].buf))
            return 0;
    return o->out_off + nmax - 1 < fuse_buf_len(c, o->out_buf);
}

/* Whether the chain with op o added keeps every address inside its buffer.
 * An op shorter than the chain (n < nmax) is guarded by i < n, and on a CPU
 * device the guard becomes masked vector loads and stores over all nmax
 * elements: the masked-off lanes still name their addresses, and each
 * instruction whose lanes reach a page that is not mapped takes a
 * fault-suppression microcode assist. The LSTM's bias add over 1M elements
 * fused with two copies of a few thousand ran 3x slower, charlm on PoCL 15%,
 * whenever the copies' buffers lay near the end of the heap (perf: same
 * kernel, same launches; only buffer placement differed). So on a CPU
 * device an op joins only where every index up to nmax stays inside the
 * buffers it names (a GPU's masked-off lanes touch no memory). The price:
 * a short op on a small buffer (a bias) starts a new chain, one launch more
 * per step on a small MLP (788 against 736 launches, rentals.csv). */
static int fuse_in_bounds(const struct cg_fuse_chain *c, const struct cg_fuse_op *o)
{
    int64_t nmax = fuse_nmax(c);
    if (o->uniform || o->n <= nmax)
        return fuse_op_in_bounds(c, o, nmax);
    for (int i = 0; i < c->nops; ++i)
        if (!fuse_op_in_bounds(c, &c->ops[i], o->n))
            return 0;
    return 1;
}

/* Tries to add the op to the chain; 0 when it does not fit (the chain is
 * then unchanged). */
static int fuse_try_append(struct cg_cl *cl, struct cg_fuse_chain *c, int op, float p0,
                           float p1, struct cg_ptr out, int64_t n,
                           const struct cg_cl_fuse_src *src, int nin, int alone)
{
    if (c->nops == CG_FUSE_MAX_OPS)
        return 0;
    int uniform = n == 1;
    struct cg_fuse_op o = {.op = op, .uniform = uniform, .nin = nin, .p0 = p0, .p1 = p1,
                           .out_off = out.off, .n = n};
    int nbufs0 = c->nbufs, added = 0;
    size_t bytes = 8 + 8 + (fuse_has_params(op) ? 8 : 0);   /* out off, n, params */
    int in_buf[2];
    int64_t in_lo[2], in_hi[2];
    for (int k = 0; k < nin; ++k) {
        const struct cg_cl_fuse_src *s = &src[k];
        int64_t lo, hi;
        fuse_range(s, n, &lo, &hi);
        int b = fuse_buf(c, s->buf, &added);
        if (b < 0)
            goto undo;
        struct cg_fuse_in *in = &o.in[k];
        in->mode = (enum cg_fuse_mode)s->mode;
        in->buf = b;
        in->off = s->off;
        in->div = s->div;
        int reg;
        if (!fuse_read_ok(c, b, in->mode, s->off, lo, hi, n, &reg))
            goto undo;
        if (reg >= 0) {
            in->mode = CG_FM_REG;
            in->reg = reg;
        } else {
            bytes += 8 + (s->mode == CG_CL_FUSE_ROW || s->mode == CG_CL_FUSE_COL ? 8 : 0);
        }
        in_buf[k] = b;
        in_lo[k] = lo;
        in_hi[k] = hi;
    }
    int ob = fuse_buf(c, out.buf, &added);
    if (ob < 0 || !fuse_write_ok(c, ob, out.off, n, uniform))
        goto undo;
    /* A uniform op must not overwrite its own memory input: other
     * work-items may still be reading it. */
    for (int k = 0; k < nin && !alone; ++k)
        if (uniform && o.in[k].mode != CG_FM_REG && in_buf[k] == ob && in_lo[k] < out.off + n &&
            out.off < in_hi[k])
            goto undo;
    bytes += (size_t)added * sizeof(cl_mem);
    if (c->arg_bytes + bytes + 8 > cl->max_param)
        goto undo;
    o.out_buf = ob;
    if (cl->cpu_device && !fuse_in_bounds(c, &o))
        goto undo;
    int idx = c->nops++;
    c->ops[idx] = o;
    c->arg_bytes += bytes;
    for (int k = 0; k < nin; ++k)
        if (o.in[k].mode != CG_FM_REG)
            fuse_note(c, in_buf[k], in_lo[k], in_hi[k], 0,
                      src[k].mode == CG_CL_FUSE_CONTIG && !uniform, n, idx);
    fuse_note(c, ob, out.off, out.off + n, 1, !uniform, n, idx);
    return 1;
undo:
    c->nbufs = nbufs0;
    return 0;
}

static cg_status fuse_drain(struct cg_cl *cl);
/* The chain as a pending queue (queue.c). */
static const struct cg_cl_pending_i fuse_queue = {"fusion chain", fuse_drain};

cg_status cg_cl_fuse_ew(struct cg_cl *cl, int op, float p0, float p1, struct cg_ptr out,
                        int64_t n, const struct cg_cl_fuse_src *a,
                        const struct cg_cl_fuse_src *b)
{
    struct cg_cl_fuse_src src[2];
    int nin = 0;
    if (a)
        src[nin++] = *a;
    if (b)
        src[nin++] = *b;
    for (int k = 0; k < nin; ++k)   /* one element is one element */
        if (n == 1 || (src[k].mode == CG_CL_FUSE_ROW && src[k].div == n))
            src[k].mode = n == 1 ? CG_CL_FUSE_SCALAR : CG_CL_FUSE_CONTIG;
    cg_status st = cg_cl_defer(cl, &fuse_queue);
    if (st != CG_OK)
        return st;
    struct cg_fuse_chain *c = &cl->fuse->chain;
    if (!fuse_try_append(cl, c, op, p0, p1, out, n, src, nin, 0)) {
        st = cg_cl_sync(cl);
        if (st == CG_OK)
            st = cg_cl_defer(cl, &fuse_queue);
        if (st != CG_OK)
            return st;
        if (!fuse_try_append(cl, c, op, p0, p1, out, n, src, nin, 0)) {
            /* A one-element op in place: alone, its one work-item reads
             * before it writes (the stock kernel; all its inputs are
             * scalars). */
            if (!fuse_try_append(cl, c, op, p0, p1, out, n, src, nin, 1))
                goto too_big;
            cl->stats.launches++;
            return cg_cl_sync(cl);
        }
    }
    cl->stats.launches++;   /* a primitive call, dispatched to the chain */
    return CG_OK;
too_big:
    return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                        "ew: op %d does not fit a kernel's arguments on this device", op);
}

/* ---- the generated kernel ----------------------------------------------- */

/* What a flush launches: the kernel's form and sizes. */
struct cg_fuse_plan {
    enum cg_fuse_form form;
    cl_long nmax;              /* the most elements of an op (0: all uniform) */
    cl_long cols;              /* 2-d forms: the broadcasts' row length       */
    int guard[CG_FUSE_MAX_OPS];   /* op has fewer elements than nmax          */
};

/* The row length every row and column broadcast of the chain shares: 0
 * when there is none, -1 when they differ. */
static cl_long fuse_cols(const struct cg_fuse_chain *c)
{
    cl_long cols = 0;
    for (int i = 0; i < c->nops; ++i)
        for (int k = 0; k < c->ops[i].nin; ++k) {
            const struct cg_fuse_in *in = &c->ops[i].in[k];
            if (in->mode != CG_FM_ROW && in->mode != CG_FM_COL)
                continue;
            if (cols && cols != in->div)
                return -1;
            cols = in->div;
        }
    return cols;
}

static void fuse_plan_of(const struct cg_cl *cl, const struct cg_fuse_chain *c,
                         struct cg_fuse_plan *p)
{
    p->nmax = fuse_nmax(c);
    for (int i = 0; i < c->nops; ++i)
        p->guard[i] = !c->ops[i].uniform && c->ops[i].n < p->nmax;
    /* Every broadcast op has n = rows * cols; a longer flat op may not. */
    p->cols = fuse_cols(c);
    int two_d = p->cols > 0 && p->nmax > 0 && p->nmax % p->cols == 0;
    if (!two_d)
        p->cols = 0;
    if (cl->cfg.fuse_per_item)
        p->form = two_d ? CG_FF_ITEM_2D : CG_FF_ITEM;
    else
        p->form = two_d ? CG_FF_LOOP_2D : CG_FF_LOOP;
}

static int fuse_2d(enum cg_fuse_form form)
{
    return form == CG_FF_LOOP_2D || form == CG_FF_ITEM_2D;
}

/* The key: everything the source depends on, a few bytes per op. */
static size_t fuse_key(const struct cg_fuse_chain *c, const struct cg_fuse_plan *p,
                       unsigned char *key)
{
    size_t k = 0;
    key[k++] = (unsigned char)p->form;
    key[k++] = (unsigned char)c->nbufs;
    for (int i = 0; i < c->nops; ++i) {
        const struct cg_fuse_op *o = &c->ops[i];
        key[k++] = (unsigned char)(o->op + 1);
        key[k++] = (unsigned char)(o->uniform | p->guard[i] << 1 | o->nin << 2);
        key[k++] = (unsigned char)o->out_buf;
        for (int j = 0; j < 2; ++j) {
            const struct cg_fuse_in *in = &o->in[j];
            int which = j < o->nin ? (in->mode == CG_FM_REG ? in->reg : in->buf) : 0;
            key[k++] = (unsigned char)(j < o->nin ? in->mode : 0);
            key[k++] = (unsigned char)which;
        }
        key[k++] = 0xff;
    }
    return k;
}

static uint64_t fuse_hash(const unsigned char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* A growing string for the source. */
struct cg_sbuf {
    char *s;
    size_t len, cap;
    int oom;
};

__attribute__((format(printf, 2, 3))) static void cg_sb(struct cg_sbuf *b, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int w = b->s ? vsnprintf(b->s + b->len, room, fmt, ap) : -1;
        va_end(ap);
        if (w >= 0 && (size_t)w < room) {
            b->len += (size_t)w;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (w >= 0 && cap < b->len + (size_t)w + 1)
            cap *= 2;
        char *s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
}

/* The expression an input reads. In the 2-d forms r and c are the
 * element's row and column (i = r * cols + c), so a broadcast needs no
 * division. */
static void fuse_in_expr(struct cg_sbuf *b, const struct cg_fuse_op *o, int op_idx, int k,
                         const struct cg_fuse_chain *c, enum cg_fuse_form form)
{
    const struct cg_fuse_in *in = &o->in[k];
    int two_d = fuse_2d(form);
    switch (in->mode) {
    case CG_FM_REG:
        cg_sb(b, "%c%d", c->ops[in->reg].uniform ? 'u' : 'v', in->reg);
        break;
    case CG_FM_CONTIG: cg_sb(b, "b%d[o%d_%d + i]", in->buf, op_idx, k); break;
    case CG_FM_SCALAR: cg_sb(b, "b%d[o%d_%d]", in->buf, op_idx, k); break;
    case CG_FM_ROW:
        if (two_d)
            cg_sb(b, "b%d[o%d_%d + c]", in->buf, op_idx, k);
        else
            cg_sb(b, "b%d[o%d_%d + i %% d%d_%d]", in->buf, op_idx, k, op_idx, k);
        break;
    case CG_FM_COL:
        if (two_d)
            cg_sb(b, "b%d[o%d_%d + r]", in->buf, op_idx, k);
        else
            cg_sb(b, "b%d[o%d_%d + i / d%d_%d]", in->buf, op_idx, k, op_idx, k);
        break;
    }
}

/* One op's statement: value into u<i>/v<i>, then the store (a uniform
 * op's by the work-item of element 0 alone). */
static void fuse_stmt(struct cg_sbuf *b, const struct cg_fuse_chain *c, int i, int guard,
                      enum cg_fuse_form form)
{
    const struct cg_fuse_op *o = &c->ops[i];
    char var = o->uniform ? 'u' : 'v';
    const char *ind = o->uniform || form == CG_FF_ITEM || form == CG_FF_ITEM_2D ? "    "
                                                                               : "        ";
    if (guard)
        cg_sb(b, "%sif (i < n%d) {\n", ind, i);
    if (o->op == CG_CL_FUSE_FILL) {
        cg_sb(b, "%s    %c%d = pa%d;\n", ind, var, i, i);
    } else {
        cg_sb(b, "%s    { float x = ", ind);
        fuse_in_expr(b, o, i, 0, c, form);
        cg_sb(b, "; float g = ");
        if (o->nin > 1)
            fuse_in_expr(b, o, i, 1, c, form);
        else
            cg_sb(b, "x");   /* as ew_flat: unary ops get a as b too */
        if (fuse_has_params(o->op))
            cg_sb(b, "; %c%d = cg_ew_apply(%d, x, g, pa%d, pb%d); }\n", var, i, o->op, i, i);
        else
            cg_sb(b, "; %c%d = cg_ew_apply(%d, x, g, 0.0f, 0.0f); }\n", var, i, o->op);
    }
    if (o->uniform)
        cg_sb(b, "%s    if (%s == 0) b%d[o%d] = u%d;\n", ind,
              form == CG_FF_LOOP || form == CG_FF_LOOP_2D ? "gid" : "i", o->out_buf, i, i);
    else
        cg_sb(b, "%s    b%d[o%d + i] = v%d;\n", ind, o->out_buf, i, i);
    if (guard)
        cg_sb(b, "%s}\n", ind);
}

/* The kernel's parameter list, in the order fuse_args passes them. */
static void fuse_params(struct cg_sbuf *b, const struct cg_fuse_chain *c,
                        const struct cg_fuse_plan *p)
{
    int two_d = fuse_2d(p->form);
    for (int j = 0; j < c->nbufs; ++j)
        cg_sb(b, "%s__global float *b%d", j ? ", " : "", j);
    for (int i = 0; i < c->nops; ++i) {
        const struct cg_fuse_op *o = &c->ops[i];
        for (int k = 0; k < o->nin; ++k) {
            if (o->in[k].mode == CG_FM_REG)
                continue;
            cg_sb(b, ", long o%d_%d", i, k);
            if (!two_d && (o->in[k].mode == CG_FM_ROW || o->in[k].mode == CG_FM_COL))
                cg_sb(b, ", long d%d_%d", i, k);
        }
        cg_sb(b, ", long o%d", i);
        if (p->guard[i])
            cg_sb(b, ", long n%d", i);
        if (fuse_has_params(o->op))
            cg_sb(b, ", float pa%d, float pb%d", i, i);
    }
    cg_sb(b, ", long nmax");
    if (two_d)
        cg_sb(b, ", long cols");
}

/* cl/ew.cl up to its kernels: the helpers, cg_ew_apply among them. */
static int fuse_prefix_len(void)
{
    const char *s = cg_cl_programs[CG_CL_PROG_EW].source;
    const char *k = strstr(s, "/* ---- kernels ----");
    return k ? (int)(k - s) : (int)strlen(s);
}

/* The kernel's head: which elements a work-item computes.
 *   LOOP     i = gid, gid + gsize, ... < nmax (a grid-stride loop)
 *   LOOP_2D  the same, with row and column stepped along, not divided
 *   ITEM     i = get_global_id(0), one element, no loop: the host launches
 *            exactly nmax work-items (cg_fuse_launch_item)
 *   ITEM_2D  (c, r) = (get_global_id(0), get_global_id(1)) on a (cols,
 *            rows) range */
static void fuse_head(struct cg_sbuf *b, enum cg_fuse_form form)
{
    switch (form) {
    case CG_FF_LOOP:
    case CG_FF_LOOP_2D:
        cg_sb(b, "    const long gid = get_global_id(0), gsize = get_global_size(0);\n");
        break;
    case CG_FF_ITEM:
        cg_sb(b, "    const long i = get_global_id(0);\n");
        break;
    case CG_FF_ITEM_2D:
        cg_sb(b, "    const long c = get_global_id(0), r = get_global_id(1), "
                 "i = r * cols + c;\n");
        break;
    }
}

static char *fuse_source(const struct cg_fuse_chain *c, const struct cg_fuse_plan *p)
{
    struct cg_sbuf b = {0};
    int loop = p->form == CG_FF_LOOP || p->form == CG_FF_LOOP_2D;
    cg_sb(&b, "%.*s/* generated by backends/opencl/fuse.c */\n__kernel void ew_fused(",
          fuse_prefix_len(), cg_cl_programs[CG_CL_PROG_EW].source);
    fuse_params(&b, c, p);
    cg_sb(&b, ")\n{\n");
    fuse_head(&b, p->form);
    for (int i = 0; i < c->nops; ++i)
        if (c->ops[i].uniform) {
            cg_sb(&b, "    float u%d = 0.0f;\n", i);
            fuse_stmt(&b, c, i, 0, p->form);
        }
    if (p->form == CG_FF_LOOP_2D) {
        /* i = r * cols + c, 0 <= c < cols; i += gsize adds sr rows and sc
         * columns, and at most one carry. */
        cg_sb(&b, "    const long sr = gsize / cols, sc = gsize - sr * cols;\n"
                  "    long r = gid / cols, c = gid - r * cols;\n");
    }
    if (loop)
        cg_sb(&b, "    for (long i = gid; i < nmax; i += gsize) {\n");
    const char *ind = loop ? "        " : "    ";
    for (int i = 0; i < c->nops; ++i)
        if (!c->ops[i].uniform)
            cg_sb(&b, "%sfloat v%d = 0.0f;\n", ind, i);
    for (int i = 0; i < c->nops; ++i)
        if (!c->ops[i].uniform)
            fuse_stmt(&b, c, i, p->guard[i], p->form);
    if (p->form == CG_FF_LOOP_2D)
        cg_sb(&b, "        r += sr;\n        c += sc;\n"
                  "        if (c >= cols) {\n            c -= cols;\n            ++r;\n"
                  "        }\n");
    if (loop)
        cg_sb(&b, "    }\n");
    cg_sb(&b, "}\n");
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    return b.s;
}

/* The arguments, in fuse_params' order. */
static int fuse_args(const struct cg_fuse_chain *c, const struct cg_fuse_plan *p,
                     struct cg_cl_arg *args)
{
    int n = 0, two_d = fuse_2d(p->form);
    for (int j = 0; j < c->nbufs; ++j)
        args[n++] = CG_ARG(c->bufs[j]->mem);
    for (int i = 0; i < c->nops; ++i) {
        const struct cg_fuse_op *o = &c->ops[i];
        for (int k = 0; k < o->nin; ++k) {
            if (o->in[k].mode == CG_FM_REG)
                continue;
            args[n++] = CG_ARG(o->in[k].off);
            if (!two_d && (o->in[k].mode == CG_FM_ROW || o->in[k].mode == CG_FM_COL))
                args[n++] = CG_ARG(o->in[k].div);
        }
        args[n++] = CG_ARG(o->out_off);
        if (p->guard[i])
            args[n++] = CG_ARG(o->n);
        if (fuse_has_params(o->op)) {
            args[n++] = CG_ARG(o->p0);
            args[n++] = CG_ARG(o->p1);
        }
    }
    args[n++] = CG_ARG(p->nmax);
    if (two_d)
        args[n++] = CG_ARG(p->cols);
    return n;
}

static cg_status fuse_grow(struct cg_cl *cl, struct cg_cl_fuse *f)
{
    size_t cap = f->cap ? f->cap * 2 : 64;
    struct cg_fuse_entry *map = calloc(cap, sizeof *map);
    if (!map)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "opencl: out of host memory");
    for (size_t i = 0; i < f->cap; ++i) {
        if (!f->map[i].kern)
            continue;
        size_t j = f->map[i].hash & (cap - 1);
        while (map[j].kern)
            j = (j + 1) & (cap - 1);
        map[j] = f->map[i];
    }
    free(f->map);
    f->map = map;
    f->cap = cap;
    return CG_OK;
}

/* The kernel for the chain's key, generated and built on first use. */
static cg_status fuse_kernel(struct cg_cl *cl, const struct cg_fuse_chain *c,
                             const struct cg_fuse_plan *p, struct cg_fuse_entry **out)
{
    struct cg_cl_fuse *f = cl->fuse;
    unsigned char key[CG_FUSE_KEY_LEN];
    size_t len = fuse_key(c, p, key);
    uint64_t h = fuse_hash(key, len);
    if (f->cap) {
        for (size_t j = h & (f->cap - 1); f->map[j].kern; j = (j + 1) & (f->cap - 1)) {
            struct cg_fuse_entry *e = &f->map[j];
            if (e->hash == h && e->key_len == len && memcmp(e->key, key, len) == 0) {
                *out = e;
                return CG_OK;
            }
        }
    }
    if ((f->used + 1) * 2 > f->cap) {
        cg_status st = fuse_grow(cl, f);
        if (st != CG_OK)
            return st;
    }
    char *src = fuse_source(c, p);
    if (!src)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "opencl: out of host memory");
    char options[256];
    int from_cache;
    cl_program prog;
    cg_cl_build_options(&cl->dev, CG_CL_PROG_EW, options, sizeof options);
    cg_status st = cg_cl_program_build(&cl->dev, "fuse", src, options, &prog, &from_cache,
                                       cl->err, sizeof cl->err);
    free(src);
    if (st != CG_OK)
        return st;
    cl_int rc;
    cl_kernel kern = clCreateKernel(prog, "ew_fused", &rc);
    if (rc != CL_SUCCESS) {
        clReleaseProgram(prog);
        return cg_cl_fail(cl->err, sizeof cl->err, "clCreateKernel(ew_fused)", rc);
    }
    size_t wg = 0, local = 256;
    if (clGetKernelWorkGroupInfo(kern, cl->dev.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg,
                                 &wg, NULL) != CL_SUCCESS || wg == 0)
        wg = 1;
    if (wg > cl->max_wg)
        wg = cl->max_wg ? cl->max_wg : 1;
    while (local > wg)
        local /= 2;
    size_t j = h & (f->cap - 1);
    while (f->map[j].kern)
        j = (j + 1) & (f->cap - 1);
    struct cg_fuse_entry *e = &f->map[j];
    memcpy(e->key, key, len);
    e->key_len = len;
    e->hash = h;
    e->prog = prog;
    e->kern = kern;
    e->local = local ? local : 1;
    e->wg = wg;
    f->used++;
    *out = e;
    return CG_OK;
}

/* ---- launching it --------------------------------------------------------
 * The ITEM forms have no loop and no bounds check (PoCL vectorises a
 * work-group across its work-items only over straight-line code: a bias add
 * + ReLU over (2048, 256) takes ~0.14 ms so, ~1.0 ms as a grid-stride loop
 * with i % cols, ~0.7 ms with a bounds check; PoCL 3.1, 2-core EPYC), so
 * the range holds exactly the elements, in work-groups that divide it. */

/* The entry as a kernel to launch. */
static struct cg_cl_kref fuse_kref(const struct cg_fuse_entry *e)
{
    return (struct cg_cl_kref){.kern = e->kern, .name = "ew_fused", .k = -1,
                               .local = e->local, .wg = e->wg};
}

/* ITEM: n work-items exactly. ITEM_2D: a (cols, rows) range in launches of
 * at most CG_CL_MAX_ROWS rows (the row offset travels as the global offset,
 * so the kernel is the same), work-groups of whole rows, several short
 * rows together. */
static cg_status fuse_launch(struct cg_cl *cl, const struct cg_fuse_entry *e,
                             const struct cg_fuse_plan *p, const struct cg_cl_arg *args,
                             int nargs)
{
    struct cg_cl_kref kr = fuse_kref(e);
    size_t n = p->nmax > 0 ? (size_t)p->nmax : 1;   /* all uniform: one work-item */
    switch (p->form) {
    case CG_FF_ITEM:
        return cg_cl_launch_exact(cl, &kr, args, nargs, (int64_t)n);
    case CG_FF_ITEM_2D: {
        size_t cols = (size_t)p->cols, rows = (size_t)(p->nmax / p->cols);
        size_t local[2] = {cols, cols < e->local ? e->local / cols : 1};
        return cg_cl_launch_rows(cl, &kr, args, nargs, cols, rows, cols <= e->wg ? local : NULL);
    }
    default: {
        size_t global = cg_cl_groups_for(cl, (int64_t)n, e->local) * e->local;
        return cg_cl_launch_nd(cl, &kr, args, nargs, 1, NULL, &global, &e->local);
    }
    }
}

/* A one-op chain whose inputs the stock ew_flat / fill_flat kernels take. */
static cg_status fuse_drain_single(struct cg_cl *cl, const struct cg_fuse_chain *c)
{
    const struct cg_fuse_op *o = &c->ops[0];
    cl_mem out = c->bufs[o->out_buf]->mem;
    if (o->op == CG_CL_FUSE_FILL) {
        struct cg_cl_arg args[] = {CG_ARG(out), CG_ARG(o->out_off), CG_ARG(o->p0),
                                   CG_ARG(o->n)};
        return cg_cl_launch_n(cl, CG_CL_K_FILL_FLAT, args, 4, o->n);
    }
    const struct cg_fuse_in *a = &o->in[0], *b = &o->in[o->nin > 1];
    cl_long sa = a->mode == CG_FM_CONTIG, sb = b->mode == CG_FM_CONTIG;
    cl_int cop = o->op;
    struct cg_cl_arg args[] = {CG_ARG(out), CG_ARG(o->out_off), CG_ARG(c->bufs[a->buf]->mem),
                               CG_ARG(a->off), CG_ARG(sa), CG_ARG(c->bufs[b->buf]->mem),
                               CG_ARG(b->off), CG_ARG(sb), CG_ARG(cop), CG_ARG(o->p0),
                               CG_ARG(o->p1), CG_ARG(o->n)};
    return cg_cl_launch_n(cl, CG_CL_K_EW_FLAT, args, 12, o->n);
}

/* Whether the stock kernels take the chain: one op with flat inputs, and a
 * device that runs them well. On a CPU device they do not: their per
 * element switch over the op and grid-stride loop keep PoCL from
 * vectorising (a ReLU over 2^19 elements ~1.3 ms, ~0.1 ms generated), so
 * one op gets a generated kernel too (built once per op and input modes,
 * then from the disk cache). */
static int fuse_stock(const struct cg_cl *cl, const struct cg_fuse_chain *c)
{
    if (c->nops != 1 || cl->cfg.fuse_per_item)
        return 0;
    const struct cg_fuse_op *o = &c->ops[0];
    for (int k = 0; k < o->nin; ++k)
        if (o->in[k].mode != CG_FM_CONTIG && o->in[k].mode != CG_FM_SCALAR)
            return 0;
    return 1;
}

/* Launches the chain (queue.c calls this, the chain's queue taken). */
static cg_status fuse_drain(struct cg_cl *cl)
{
    struct cg_cl_fuse *f = cl->fuse;
    if (f->chain.nops == 0)
        return CG_OK;
    /* Take the chain first: an error leaves it empty, its ops lost, and
     * the caller hears of it. */
    struct cg_fuse_chain *c = &f->chain;
    int nops = c->nops;
    c->nops = 0;
    struct cg_fuse_chain taken = *c;
    taken.nops = nops;
    c->nbufs = 0;
    c->nacc = 0;
    c->arg_bytes = 0;
    if (fuse_stock(cl, &taken))
        return fuse_drain_single(cl, &taken);

    struct cg_fuse_plan plan;
    fuse_plan_of(cl, &taken, &plan);
    struct cg_fuse_entry *e = NULL;
    cg_status st = fuse_kernel(cl, &taken, &plan, &e);
    if (st != CG_OK)
        return st;
    struct cg_cl_arg args[CG_FUSE_MAX_ARGS];
    int nargs = fuse_args(&taken, &plan, args);
    st = fuse_launch(cl, e, &plan, args, nargs);
    if (st == CG_OK) {
        cl->fused_launches++;
        cl->fused_ops += (uint64_t)nops;
    }
    return st;
}
