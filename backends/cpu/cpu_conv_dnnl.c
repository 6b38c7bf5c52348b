/*
 * backends/cpu/cpu_conv_dnnl.c — whole convolutions through oneDNN's
 * convolution primitives (backend.h: conv2d, conv2d_backward_data,
 * conv2d_backward_weights; groups = 1), for builds with oneDNN on CPUs
 * with AVX-512F (and unless CLGRAD_CPU_AVX512=0, as for the GEMMs in
 * cpu_gemm.c). Anything else is declined (CG_STATUS_UNSUPPORTED) and the
 * core composes im2col + GEMM (src/core/ops_conv.c), which stays the
 * reference.
 *
 * Why. The composed path runs the CNN's convolutions at oneDNN's sgemm
 * speed (~85 GFLOP/s a core) plus im2col/col2im passes. oneDNN's own
 * convolutions (jit:avx512_core; what torch 1.13 runs) on its blocked
 * layouts (nChw16c activations, OIhw16i16o-like weights) measured, one
 * thread, CPU time, best of 3 on the 2-core EPYC, the CNN's conv2
 * (64x32x14x14 -> 64 channels, 3x3 pad 1): forward 118, backward data
 * 115, backward weights 93 GFLOP/s; conv1 (1 -> 32 channels, 28x28)
 * forward and weights 76. Asked for plain nchw/oihw layouts instead,
 * oneDNN 2.6 picks gemm:jit (its own im2col + sgemm: 62-72 GFLOP/s, no
 * better than ours), so each primitive is created with format "any" and
 * the caller's plain NCHW / OIHW tensors are reordered in and out around
 * it. Backward data with fewer than 16 input channels ran at 6 GFLOP/s
 * (conv1's, 1 channel: its jit kernel works on 16-channel blocks) and is
 * declined; so is any shape whose chosen implementation is not a jit one
 * (a "ref" or "gemm" fallback).
 *
 * Primitives (and their reorders) are created once per shape, direction
 * and part size, kept in a list on the context and freed at close.
 *
 * Threads: as cpu_gemm.c, oneDNN runs one OpenMP thread on each calling
 * thread and the cpu backend's pool splits the batch: part i of t runs
 * the primitive on its images (t = the thread count, parts of ceil(n / t)
 * images). The weight gradient of part i > 0 goes to a partial buffer and
 * the parts are summed in order after, so results depend on the thread
 * count (as the GEMM's tiles do), never on timing. Each part's reordered
 * tensors and scratchpads live in its thread's scratch (cg__cpu_scratch).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "cpu.h"

#if CG_HAVE_ONEDNN
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

enum dconv_kind { DCONV_FWD, DCONV_BWD_DATA, DCONV_BWD_WEIGHTS };

/* Arguments a primitive takes (bias: the 4th, optional). */
#define DCONV_ARGS 4

/* One argument: the caller's plain layout, the primitive's, and the
 * reorder between them (NULL when they are the same). */
struct dconv_arg {
    int arg;                        /* DNNL_ARG_*; 0: slot unused            */
    bool out;                       /* written by the primitive              */
    int64_t per_image;              /* elements of one image; 0: not batched */
    dnnl_memory_desc_t user, inner, reorder_pad;
    dnnl_primitive_t reorder;
    size_t inner_off;               /* the inner copy in the part's scratch  */
};

struct dconv_plan {
    struct dconv_plan *next;
    enum dconv_kind kind;
    struct cg_conv2d_desc d;        /* d.n: the images of one part           */
    int64_t out_c;
    bool bias;
    bool ok;                        /* false: declined (kept so as not to ask again) */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t pad;         /* its scratchpad                        */
    struct dconv_arg args[DCONV_ARGS];
    size_t pad_off, reorder_pad_off, scratch_bytes;
};

/* The context's oneDNN state (cg_cpu_ctx.dconv). */
struct cg_cpu_dconv {
    dnnl_engine_t eng;
    struct dconv_plan *plans;
    int count;
    float *partial;                 /* weight gradients of parts 1..t-1      */
    size_t partial_len;             /* floats                                */
};

/* Plans kept at most; past it the list is dropped and rebuilt (a model
 * has a few shapes; only a stream of new ones gets here). */
#define DCONV_MAX_PLANS 64

/* cg__cpu_onednn_one_thread (cpu_gemm.c) runs before a primitive is
 * created too: oneDNN fixes a convolution's thread split (and then asks
 * OpenMP for that many threads) at creation, from omp_get_max_threads().
 * Without it the CNN's convolutions ran on two OpenMP threads beside our
 * pool, 13% of the time in libgomp. */

static size_t align_up(size_t n) { return (n + CG_CPU_ALIGN - 1) / CG_CPU_ALIGN * CG_CPU_ALIGN; }

static void plan_free(struct dconv_plan *p)
{
    if (p->prim) dnnl_primitive_destroy(p->prim);
    for (int i = 0; i < DCONV_ARGS; i++)
        if (p->args[i].reorder) dnnl_primitive_destroy(p->args[i].reorder);
    free(p);
}

void cg__cpu_dconv_release(struct cg_cpu_ctx *c)
{
    struct cg_cpu_dconv *dc = c->dconv;
    if (!dc) return;
    for (struct dconv_plan *p = dc->plans, *next; p; p = next) {
        next = p->next;
        plan_free(p);
    }
    if (dc->eng) dnnl_engine_destroy(dc->eng);
    free(dc->partial);
    free(dc);
    c->dconv = NULL;
}

/* Creates the primitive's argument i and its reorder; false on failure. */
static bool plan_arg(struct dconv_plan *p, dnnl_engine_t eng, dnnl_primitive_attr_t attr,
                     dnnl_primitive_desc_t pd, int i, int arg, bool out, int nd,
                     const int64_t *dims, dnnl_format_tag_t tag, int64_t per_image)
{
    struct dconv_arg *a = &p->args[i];
    a->arg = arg;
    a->out = out;
    a->per_image = per_image;
    dnnl_dims_t dd = {0};
    memcpy(dd, dims, sizeof(int64_t) * (size_t)nd);
    const dnnl_memory_desc_t *inner = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, arg);
    if (!inner || dnnl_memory_desc_init_by_tag(&a->user, nd, dd, dnnl_f32, tag) != dnnl_success)
        return false;
    a->inner = *inner;
    if (dnnl_memory_desc_equal(&a->user, &a->inner)) return true;
    dnnl_primitive_desc_t rpd;
    const dnnl_memory_desc_t *from = out ? &a->inner : &a->user, *to = out ? &a->user : &a->inner;
    if (dnnl_reorder_primitive_desc_create(&rpd, from, eng, to, eng, attr) != dnnl_success)
        return false;
    a->reorder_pad = *dnnl_primitive_desc_query_md(rpd, dnnl_query_scratchpad_md, 0);
    bool ok = dnnl_primitive_create(&a->reorder, rpd) == dnnl_success;
    dnnl_primitive_desc_destroy(rpd);
    return ok;
}

/* Fills p (kind, d, out_c, bias set) with its primitive, or leaves p->ok
 * false where oneDNN has no jit kernel for it. */
static void plan_build(struct dconv_plan *p, dnnl_engine_t eng)
{
    const struct cg_conv2d_desc *d = &p->d;
    int64_t xs[4] = {d->n, d->c, d->h, d->w}, ws[4] = {p->out_c, d->c, d->kh, d->kw};
    int64_t ys[4] = {d->n, p->out_c, d->oh, d->ow}, bs[1] = {p->out_c};
    dnnl_dims_t st = {d->sh, d->sw}, dil = {d->dh - 1, d->dw - 1}, pad = {d->ph, d->pw};
    dnnl_dims_t xd = {0}, wd = {0}, yd = {0}, bd = {0};
    memcpy(xd, xs, sizeof xs);
    memcpy(wd, ws, sizeof ws);
    memcpy(yd, ys, sizeof ys);
    bd[0] = p->out_c;
    dnnl_memory_desc_t xa, wa, ya, ba;
    dnnl_primitive_attr_t attr = NULL;
    dnnl_primitive_desc_t fpd = NULL, pd = NULL;
    if (dnnl_memory_desc_init_by_tag(&xa, 4, xd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&wa, 4, wd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&ya, 4, yd, dnnl_f32, dnnl_format_tag_any) ||
        dnnl_memory_desc_init_by_tag(&ba, 1, bd, dnnl_f32, dnnl_a) ||
        dnnl_primitive_attr_create(&attr) ||
        dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user))
        goto done;
    /* torch's bottom/right padding is ph, pw too: oneDNN checks the output
     * size with the same floor division (oh = (h + 2 ph - span) / sh + 1). */
    dnnl_convolution_desc_t fd, bwd;
    if (dnnl_dilated_convolution_forward_desc_init(&fd, dnnl_forward_training,
                                                   dnnl_convolution_direct, &xa, &wa,
                                                   p->bias ? &ba : NULL, &ya, st, dil, pad, pad) ||
        dnnl_primitive_desc_create(&fpd, &fd, attr, eng, NULL))
        goto done;
    if (p->kind == DCONV_FWD) {
        pd = fpd;
        fpd = NULL;
    } else if (p->kind == DCONV_BWD_DATA) {
        if (dnnl_dilated_convolution_backward_data_desc_init(&bwd, dnnl_convolution_direct, &xa,
                                                             &wa, &ya, st, dil, pad, pad) ||
            dnnl_primitive_desc_create(&pd, &bwd, attr, eng, fpd))
            goto done;
    } else {
        if (dnnl_dilated_convolution_backward_weights_desc_init(
                &bwd, dnnl_convolution_direct, &xa, &wa, p->bias ? &ba : NULL, &ya, st, dil, pad,
                pad) ||
            dnnl_primitive_desc_create(&pd, &bwd, attr, eng, fpd))
            goto done;
    }
    const char *impl = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) || !impl ||
        strncmp(impl, "jit", 3) != 0)
        goto done;   /* ref or gemm: the composed path is as fast or faster */
    int64_t xi = d->c * d->h * d->w, yi = p->out_c * d->oh * d->ow;
    bool ok;
    if (p->kind == DCONV_FWD)
        ok = plan_arg(p, eng, attr, pd, 0, DNNL_ARG_SRC, false, 4, xs, dnnl_nchw, xi) &&
             plan_arg(p, eng, attr, pd, 1, DNNL_ARG_WEIGHTS, false, 4, ws, dnnl_oihw, 0) &&
             plan_arg(p, eng, attr, pd, 2, DNNL_ARG_DST, true, 4, ys, dnnl_nchw, yi) &&
             (!p->bias || plan_arg(p, eng, attr, pd, 3, DNNL_ARG_BIAS, false, 1, bs, dnnl_a, 0));
    else if (p->kind == DCONV_BWD_DATA)
        ok = plan_arg(p, eng, attr, pd, 0, DNNL_ARG_DIFF_DST, false, 4, ys, dnnl_nchw, yi) &&
             plan_arg(p, eng, attr, pd, 1, DNNL_ARG_WEIGHTS, false, 4, ws, dnnl_oihw, 0) &&
             plan_arg(p, eng, attr, pd, 2, DNNL_ARG_DIFF_SRC, true, 4, xs, dnnl_nchw, xi);
    else
        ok = plan_arg(p, eng, attr, pd, 0, DNNL_ARG_SRC, false, 4, xs, dnnl_nchw, xi) &&
             plan_arg(p, eng, attr, pd, 1, DNNL_ARG_DIFF_DST, false, 4, ys, dnnl_nchw, yi) &&
             plan_arg(p, eng, attr, pd, 2, DNNL_ARG_DIFF_WEIGHTS, true, 4, ws, dnnl_oihw, 0) &&
             (!p->bias ||
              plan_arg(p, eng, attr, pd, 3, DNNL_ARG_DIFF_BIAS, true, 1, bs, dnnl_a, 0));
    if (!ok) goto done;
    p->pad = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if (dnnl_primitive_create(&p->prim, pd)) {
        p->prim = NULL;
        goto done;
    }
    /* A part's scratch: the inner copies, the primitive's scratchpad, and
     * one scratchpad the reorders share (they run one after another). */
    size_t off = 0, rpad = 0;
    for (int i = 0; i < DCONV_ARGS; i++) {
        struct dconv_arg *a = &p->args[i];
        if (!a->reorder) continue;
        a->inner_off = off;
        off += align_up(dnnl_memory_desc_get_size(&a->inner));
        size_t r = dnnl_memory_desc_get_size(&a->reorder_pad);
        if (r > rpad) rpad = r;
    }
    p->pad_off = off;
    off += align_up(dnnl_memory_desc_get_size(&p->pad));
    p->reorder_pad_off = off;
    p->scratch_bytes = off + align_up(rpad);
    p->ok = true;
done:
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (fpd) dnnl_primitive_desc_destroy(fpd);
    if (attr) dnnl_primitive_attr_destroy(attr);
}

/* The plan for (kind, d with part size n, out_c, bias), built on first
 * use; NULL when out of memory. */
static struct dconv_plan *plan_get(struct cg_cpu_ctx *c, enum dconv_kind kind,
                                   const struct cg_conv2d_desc *d, int64_t n, int64_t out_c,
                                   bool bias)
{
    struct cg_cpu_dconv *dc = c->dconv;
    if (!dc) {
        dc = calloc(1, sizeof *dc);
        if (!dc) return NULL;
        if (dnnl_engine_create(&dc->eng, dnnl_cpu, 0) != dnnl_success) dc->eng = NULL;
        c->dconv = dc;
    }
    struct cg_conv2d_desc key = *d;
    key.n = n;
    for (struct dconv_plan *p = dc->plans; p; p = p->next)
        if (p->kind == kind && p->out_c == out_c && p->bias == bias &&
            memcmp(&p->d, &key, sizeof key) == 0)
            return p;
    if (dc->count >= DCONV_MAX_PLANS) {
        for (struct dconv_plan *p = dc->plans, *next; p; p = next) {
            next = p->next;
            plan_free(p);
        }
        dc->plans = NULL;
        dc->count = 0;
    }
    struct dconv_plan *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->kind = kind;
    p->d = key;
    p->out_c = out_c;
    p->bias = bias;
    if (dc->eng) plan_build(p, dc->eng);
    p->next = dc->plans;
    dc->plans = p;
    dc->count++;
    return p;
}

/* Runs plan p on one part: user[i] is argument i's plain tensor for this
 * part (already offset). false when oneDNN failed or no scratch. */
static bool plan_run(struct cg_cpu_ctx *c, struct cg_cpu_dconv *dc, const struct dconv_plan *p,
                     float *const user[DCONV_ARGS])
{
    cg__cpu_onednn_one_thread();
    char *s = cg__cpu_scratch(c, p->scratch_bytes ? p->scratch_bytes : 1);
    if (!s) return false;
    dnnl_stream_t str = NULL;
    dnnl_memory_t um[DCONV_ARGS] = {0}, im[DCONV_ARGS] = {0}, pad = NULL;
    dnnl_exec_arg_t ea[DCONV_ARGS + 1];
    int ne = 0;
    bool ok = dnnl_stream_create(&str, dc->eng, dnnl_stream_default_flags) == dnnl_success;
    if (ok && dnnl_memory_desc_get_size(&p->pad) > 0)
        ok = dnnl_memory_create(&pad, &p->pad, dc->eng, s + p->pad_off) == dnnl_success;
    for (int i = 0; ok && i < DCONV_ARGS; i++) {
        const struct dconv_arg *a = &p->args[i];
        if (!a->arg) continue;
        if (a->reorder) {
            ok = dnnl_memory_create(&um[i], &a->user, dc->eng, user[i]) == dnnl_success &&
                 dnnl_memory_create(&im[i], &a->inner, dc->eng, s + a->inner_off) ==
                     dnnl_success;
        } else {
            ok = dnnl_memory_create(&im[i], &a->inner, dc->eng, user[i]) == dnnl_success;
        }
        if (ok) ea[ne++] = (dnnl_exec_arg_t){a->arg, im[i]};
    }
    /* in: reorder, run, out: reorder */
    for (int pass = 0; pass < 3 && ok; pass++) {
        if (pass == 1) {
            if (pad) ea[ne++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, pad};
            ok = dnnl_primitive_execute(p->prim, str, ne, ea) == dnnl_success;
            continue;
        }
        for (int i = 0; ok && i < DCONV_ARGS; i++) {
            const struct dconv_arg *a = &p->args[i];
            if (!a->reorder || a->out != (pass == 2)) continue;
            /* (the reorders' scratchpads share one place: they run one
             * after another) */
            dnnl_memory_t rpad = NULL;
            if (dnnl_memory_desc_get_size(&a->reorder_pad) > 0)
                ok = dnnl_memory_create(&rpad, &a->reorder_pad, dc->eng,
                                        s + p->reorder_pad_off) == dnnl_success;
            dnnl_exec_arg_t r[3] = {{DNNL_ARG_FROM, a->out ? im[i] : um[i]},
                                    {DNNL_ARG_TO, a->out ? um[i] : im[i]},
                                    {DNNL_ARG_SCRATCHPAD, rpad}};
            if (ok) ok = dnnl_primitive_execute(a->reorder, str, rpad ? 3 : 2, r) == dnnl_success;
            if (rpad) dnnl_memory_destroy(rpad);
        }
    }
    if (ok) ok = dnnl_stream_wait(str) == dnnl_success;
    for (int i = 0; i < DCONV_ARGS; i++) {
        if (um[i]) dnnl_memory_destroy(um[i]);
        if (im[i]) dnnl_memory_destroy(im[i]);
    }
    if (pad) dnnl_memory_destroy(pad);
    if (str) dnnl_stream_destroy(str);
    return ok;
}

/* One call split into parts of `per` images (the last may be smaller). */
struct dconv_job {
    struct cg_cpu_ctx *c;
    const struct dconv_plan *full, *last;   /* plans for per and the last part's size */
    int64_t parts, per;
    float *user[DCONV_ARGS];                /* whole tensors                           */
    float *partial;                         /* BWD_WEIGHTS: parts 1.. write here       */
    int64_t partial_len;                    /* floats per part: dw then db             */
    atomic_int failed;
};

static void dconv_parts(void *arg, int64_t lo, int64_t hi)
{
    struct dconv_job *j = arg;
    for (int64_t part = lo; part < hi; part++) {
        const struct dconv_plan *p = part == j->parts - 1 ? j->last : j->full;
        float *u[DCONV_ARGS] = {0};
        for (int i = 0; i < DCONV_ARGS; i++) {
            const struct dconv_arg *a = &p->args[i];
            if (!a->arg) continue;
            u[i] = j->user[i] + part * j->per * a->per_image;
            /* weight gradients of parts after the first: their partials */
            if (p->kind == DCONV_BWD_WEIGHTS && a->out && part > 0)
                u[i] = j->partial + (part - 1) * j->partial_len +
                       (a->arg == DNNL_ARG_DIFF_BIAS ? p->out_c * p->d.c * p->d.kh * p->d.kw : 0);
        }
        if (!plan_run(j->c, j->c->dconv, p, u)) atomic_store(&j->failed, 1);
    }
}

/* Runs kind over the batch, or returns CG_STATUS_UNSUPPORTED (nothing
 * written) where it is declined. user: the plan's arguments in order. */
static cg_status dconv_call(struct cg_cpu_ctx *c, enum dconv_kind kind,
                            const struct cg_conv2d_desc *d, int64_t out_c, bool bias,
                            float *const user[DCONV_ARGS], const char *what)
{
    if (!cg__cpu_onednn_on() || d->n < 1) return CG_STATUS_UNSUPPORTED;
    if (kind == DCONV_BWD_DATA && d->c < 16) return CG_STATUS_UNSUPPORTED;   /* see the top */
    cg__cpu_onednn_one_thread();
    int64_t t = cg__cpu_parallel_threads(c);
    int64_t parts = t < d->n ? t : d->n, per = (d->n + parts - 1) / parts;
    parts = (d->n + per - 1) / per;
    int64_t last_n = d->n - (parts - 1) * per;
    struct dconv_plan *full = plan_get(c, kind, d, per, out_c, bias);
    struct dconv_plan *last = full && last_n != per ? plan_get(c, kind, d, last_n, out_c, bias)
                                                    : full;
    if (!full || !last)
        return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY, "%s: no memory for a oneDNN plan", what);
    /* (a second plan_get may have dropped the list: look full up again) */
    if (last != full) full = plan_get(c, kind, d, per, out_c, bias);
    if (!full || !full->ok || !last->ok) return CG_STATUS_UNSUPPORTED;
    c->stats.launches++;
    struct dconv_job j = {.c = c, .full = full, .last = last, .parts = parts, .per = per};
    memcpy(j.user, user, sizeof j.user);
    atomic_init(&j.failed, 0);
    if (kind == DCONV_BWD_WEIGHTS && parts > 1) {
        struct cg_cpu_dconv *dc = c->dconv;
        j.partial_len = out_c * d->c * d->kh * d->kw + (bias ? out_c : 0);
        size_t need = (size_t)(j.partial_len * (parts - 1));
        if (dc->partial_len < need) {
            float *np = realloc(dc->partial, need * sizeof(float));
            if (!np)
                return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY,
                                     "%s: no memory for %zu partial gradients", what, need);
            dc->partial = np;
            dc->partial_len = need;
        }
        j.partial = dc->partial;
    }
    if (parts > 1) cg__cpu_parallel_for(c, parts, 1, dconv_parts, &j);
    else dconv_parts(&j, 0, 1);
    if (atomic_load(&j.failed))
        return cg__cpu_error(c, CG_STATUS_BACKEND_ERROR,
                             "%s: a oneDNN convolution failed (or no scratch memory)", what);
    if (j.partial) {
        /* dw (then db) += each later part's, in part order */
        int64_t nw = out_c * d->c * d->kh * d->kw;
        for (int64_t part = 1; part < parts; part++) {
            const float *q = j.partial + (part - 1) * j.partial_len;
            for (int64_t k = 0; k < nw; k++) user[2][k] += q[k];
            for (int64_t k = 0; bias && k < out_c; k++) user[3][k] += q[nw + k];
        }
    }
    return CG_OK;
}

static cg_status check_conv(struct cg_cpu_ctx *c, const struct cg_conv2d_desc *d, int64_t out_c,
                            const char *what)
{
    char msg[512];
    cg_status st = cg_conv2d_desc_check(d, msg, sizeof msg);
    if (st != CG_OK) return cg__cpu_error(c, st, "%s: %s", what, msg);
    if (out_c < 1)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: %lld output channels", what,
                             (long long)out_c);
    return CG_OK;
}

cg_status cg__cpu_conv2d(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                         struct cg_ptr y, struct cg_ptr x, struct cg_ptr w, struct cg_ptr b)
{
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_conv(c, d, out_c, "conv2d");
    if (s == CG_OK) s = cg__cpu_check_range(c, y, d->n * out_c * d->oh * d->ow, "conv2d y");
    if (s == CG_OK) s = cg__cpu_check_range(c, x, d->n * d->c * d->h * d->w, "conv2d x");
    if (s == CG_OK) s = cg__cpu_check_range(c, w, out_c * d->c * d->kh * d->kw, "conv2d w");
    if (s == CG_OK && b.buf) s = cg__cpu_check_range(c, b, out_c, "conv2d b");
    if (s != CG_OK) return s;
    float *u[DCONV_ARGS] = {cg__cpu_at(x), cg__cpu_at(w), cg__cpu_at(y),
                            b.buf ? cg__cpu_at(b) : NULL};
    return dconv_call(c, DCONV_FWD, d, out_c, b.buf != NULL, u, "conv2d");
}

cg_status cg__cpu_conv2d_backward_data(void *ctx, const struct cg_conv2d_desc *d, int64_t out_c,
                                       struct cg_ptr dx, struct cg_ptr gy, struct cg_ptr w)
{
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_conv(c, d, out_c, "conv2d_backward_data");
    if (s == CG_OK)
        s = cg__cpu_check_range(c, dx, d->n * d->c * d->h * d->w, "conv2d_backward_data dx");
    if (s == CG_OK)
        s = cg__cpu_check_range(c, gy, d->n * out_c * d->oh * d->ow, "conv2d_backward_data gy");
    if (s == CG_OK)
        s = cg__cpu_check_range(c, w, out_c * d->c * d->kh * d->kw, "conv2d_backward_data w");
    if (s != CG_OK) return s;
    float *u[DCONV_ARGS] = {cg__cpu_at(gy), cg__cpu_at(w), cg__cpu_at(dx), NULL};
    return dconv_call(c, DCONV_BWD_DATA, d, out_c, false, u, "conv2d_backward_data");
}

cg_status cg__cpu_conv2d_backward_weights(void *ctx, const struct cg_conv2d_desc *d,
                                          int64_t out_c, struct cg_ptr dw, struct cg_ptr db,
                                          struct cg_ptr x, struct cg_ptr gy)
{
    struct cg_cpu_ctx *c = ctx;
    const char *what = "conv2d_backward_weights";
    cg_status s = check_conv(c, d, out_c, what);
    if (s == CG_OK) s = cg__cpu_check_range(c, dw, out_c * d->c * d->kh * d->kw, "conv2d dw");
    if (s == CG_OK && db.buf) s = cg__cpu_check_range(c, db, out_c, "conv2d db");
    if (s == CG_OK) s = cg__cpu_check_range(c, x, d->n * d->c * d->h * d->w, "conv2d x");
    if (s == CG_OK) s = cg__cpu_check_range(c, gy, d->n * out_c * d->oh * d->ow, "conv2d gy");
    if (s != CG_OK) return s;
    float *u[DCONV_ARGS] = {cg__cpu_at(x), cg__cpu_at(gy), cg__cpu_at(dw),
                            db.buf ? cg__cpu_at(db) : NULL};
    return dconv_call(c, DCONV_BWD_WEIGHTS, d, out_c, db.buf != NULL, u, what);
}

#endif /* CG_HAVE_ONEDNN */
