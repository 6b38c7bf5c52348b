/*
 * src/dist/dist.c — data-parallel training over MPI (include/clgrad/dist.h).
 *
 * Gradient buckets. At attach the model's parameters are taken in reverse
 * registration order (the order backward finishes them: the last layer
 * first) and cut into buckets of about bucket_bytes. cg_backward calls
 * grad_hook for each leaf as soon as its gradient is final (autograd.c),
 * and before each node's backward, where collectives in flight move on;
 * when every parameter of a bucket is in, the bucket goes out with a
 * non-blocking MPI_Iallreduce (sum) while the walk goes on, except the last
 * bucket, which waits for the end of the walk and the blocking
 * MPI_Allreduce (pump says why). When the walk ends (hook with NULL) the
 * buckets still out (those holding a parameter without a gradient this
 * step) are launched in index order, every request is waited for, and the
 * sums are scaled by 1/N and written back: the mean gradient, as DistributedDataParallel computes it. All
 * ranks run the same graph, so they launch the same buckets in the same
 * order, which MPI's collective ordering rule asks for.
 *
 * Memory. On the cpu backend the gradient is host memory: a one-tensor
 * bucket is all-reduced in place in it, a bucket of several is packed into
 * the bucket's host block with memcpy. Other backends read each gradient
 * into that host block (allocated once at attach) and upload the mean; with
 * download_async (opencl) the reads are only enqueued when the bucket is
 * ready, and the bucket goes out at a later hook (or at the end) once they
 * have landed. Buckets are sent strictly in the order they were staged, so
 * every rank issues the same collectives in the same order. The host
 * blocks come from the backend's host_alloc where it has one (opencl:
 * pinned, mapped once at attach), else malloc. Without MPI the file builds
 * the one-process versions of the API.
 *
 * ZeRO-1 (cg_dist_shard_optimizer). The parameters, flattened in the
 * buckets' order, are cut into N equal ranges (partition; a tensor may be
 * split); rank r owns range r. Each bucket goes out with
 * MPI_Ireduce_scatter instead of MPI_Iallreduce (same staging, same
 * overlap): rank r receives the sums of its elements of the bucket and
 * writes their mean into its gradients (bucket_finish_shard); the rest of
 * its gradients keep their local values. The optimizer updates elements
 * [lo, hi) of each parameter and keeps state for those only (optim.c's
 * ranges), clipping adds the owned squares over the ranks (clip.c), and
 * cg_optim_step ends in cg__dist_gather_params: one MPI_Allgatherv of the
 * flattened parameters, then every rank writes the others' elements back.
 * The sums are the all-reduce's, possibly added in another order (MPI
 * picks the algorithm), so every rank ends with the parameters of an
 * unsharded run to float rounding (tests/tools/test_dist.py). For a
 * checkpoint, cg_dist_gather_optim assembles each parameter's state on
 * rank 0 from its owners' pieces (point to point, in the optimizer's
 * parameter order).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "clgrad/dist.h"
#include "core/dispatch.h"
#include "core/ops_internal.h"
#include "dist/dist-impl.h"
#include "optim/optim-impl.h"
#include "../backends/cpu/cpu.h"

#if CG_HAVE_MPI
#include <mpi.h>
#endif

#define DIST_DEFAULT_BUCKET_BYTES ((size_t)1 << 20)

struct bucket {
    int first, count;       /* d->params[first .. first + count)          */
    int64_t numel;
    int ready;              /* parameters finished in this backward        */
    bool launched;
    bool done;              /* its request completed (MPI_Test)            */
    bool staged;            /* its reads are out (this backward)           */
    void **tickets;         /* (count) reads in flight: download_async     */
    int n_tickets;
    float *host;            /* numel floats (NULL: in place, cpu)          */
    bool pinned;            /* host came from the backend's host_alloc     */
    /* sharded: reduce-scattered; rank r receives the sums of the bucket's
     * elements it owns (rcounts[r] of them, in rank order) into recv */
    int *rcounts;           /* (world), NULL: all-reduced                  */
    float *recv;            /* rcounts[rank] floats                        */
    double t_launch;
#if CG_HAVE_MPI
    MPI_Request req;
#endif
};

struct cg_dist {
    cg_ctx *ctx;
    int rank, world;
    bool we_init;           /* cg_dist_create called MPI_Init_thread       */
    size_t bucket_bytes;
    bool direct;            /* the cpu backend: gradients are host memory  */
    bool no_overlap;        /* launch every bucket after the walk (bench)  */
#if CG_HAVE_MPI
    MPI_Comm comm;
#endif
    cg_module *model;
    cg_tensor **params;     /* reverse registration order                  */
    int64_t *offs;          /* each parameter's offset in its bucket       */
    int *bucket_of;
    bool *ready;
    int n_params, hint;
    struct bucket *buckets;
    int n_buckets;
    int *order;             /* buckets in the order they were staged       */
    int n_order, next_send; /* order[0 .. next_send) have been sent        */
    /* ZeRO-1 (cg_dist_shard_optimizer) */
    bool shard;             /* partition the parameters over the ranks     */
    cg_optim *opt;          /* the sharded optimizer (borrowed)            */
    int64_t *flat;          /* (n_params) offset in the flattened order    */
    int64_t *own_lo, *own_hi; /* (n_params) this rank's elements of
                               params[i] (own_lo == own_hi: none)          */
    int *counts, *displs;   /* (world) rank r owns flattened elements
                               [displs[r], displs[r] + counts[r])         */
    float *gather;          /* (all parameters) the flattened parameters   */
    bool gather_pinned;
    struct cg_dist_stats stats;
};


CG_API bool cg_dist_available(void) { return CG_HAVE_MPI; }

/* Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE; MPICH/Hydra and Slurm set
 * PMI_SIZE; PMIx launchers PMIX_RANK. */
static int launched_size(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const char *v = getenv(names[i]);
        if (v && *v) return atoi(v);
    }
    return getenv("PMIX_RANK") ? 2 : 0; /* size unknown: "several" */
}

CG_API bool cg_dist_launched(void) { return launched_size() > 0; }

CG_API int cg_dist_rank(const cg_dist *d) { return d ? d->rank : 0; }
CG_API int cg_dist_world_size(const cg_dist *d) { return d ? d->world : 1; }

CG_API void cg_dist_set_batch_offset(cg_ctx *ctx, int64_t first_row)
{
    if (ctx) ctx->row_offset = first_row;
}

int cg__dist_world(cg_ctx *ctx) { return ctx && ctx->dist ? ctx->dist->world : 1; }

CG_API void cg_dist_get_stats(const cg_dist *d, struct cg_dist_stats *out)
{
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (d) *out = d->stats;
}

CG_API void cg_dist_reset_stats(cg_dist *d)
{
    if (d) memset(&d->stats, 0, sizeof d->stats);
}

/* "rank 1/4: " in front of dist's messages when there are several ranks. */
#define RANKFMT "rank %d/%d: "
#define RANKARG(d) (d)->rank, (d)->world

#if CG_HAVE_MPI

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static cg_status mpi_error(cg_dist *d, int rc, const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, s, &len) != MPI_SUCCESS) snprintf(s, sizeof s, "error %d", rc);
    return cg__error(d->ctx, CG_STATUS_IO_ERROR, RANKFMT "%s: %s", RANKARG(d), what, s);
}
#define MPI_TRY(d, call)                                                      \
    do {                                                                      \
        int rc_ = (call);                                                     \
        if (rc_ != MPI_SUCCESS) return mpi_error((d), rc_, #call);            \
    } while (0)

static MPI_Op mpi_op(enum cg_dist_op op)
{
    return op == CG_DIST_MAX ? MPI_MAX : op == CG_DIST_MIN ? MPI_MIN : MPI_SUM;
}

CG_API cg_status cg_dist_create(cg_ctx *ctx, const struct cg_dist_options *opts, cg_dist **out)
{
    if (out) *out = NULL;
    if (!ctx || !out) return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_dist_create: NULL argument");
    if (ctx->dist)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dist_create: the context already has a cg_dist");
    cg_dist *d = calloc(1, sizeof *d);
    if (!d) return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_create: out of host memory");
    d->ctx = ctx;
    d->bucket_bytes = opts && opts->bucket_bytes ? opts->bucket_bytes : DIST_DEFAULT_BUCKET_BYTES;
    d->direct = ctx->be == cg__cpu_backend();
    d->no_overlap = opts && opts->no_overlap;
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int provided;
        int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
        if (rc != MPI_SUCCESS) {
            free(d);
            return cg__error(ctx, CG_STATUS_IO_ERROR, "cg_dist_create: MPI_Init_thread failed (%d)", rc);
        }
        d->we_init = true;
    }
    /* Our own communicator: our collectives never mix with the program's,
     * and failures come back as codes (MPI_ERRORS_RETURN), not aborts. */
    if (MPI_Comm_dup(MPI_COMM_WORLD, &d->comm) != MPI_SUCCESS) {
        if (d->we_init) MPI_Finalize();
        free(d);
        return cg__error(ctx, CG_STATUS_IO_ERROR, "cg_dist_create: MPI_Comm_dup failed");
    }
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(d->comm, &d->rank);
    MPI_Comm_size(d->comm, &d->world);
    ctx->dist = d;
    *out = d;
    return CG_OK;
}

/* A host staging block of n floats: the backend's pinned, mapped memory
 * where it has some (host_alloc: opencl's CL_MEM_ALLOC_HOST_PTR), so the
 * reads and writes of gradients and parameters go by DMA; else malloc
 * (also when the driver refuses). */
static float *stage_alloc(cg_dist *d, int64_t n, bool *pinned)
{
    size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
    void *p = d->direct ? NULL : cg__be_host_alloc(d->ctx, bytes);
    *pinned = p != NULL;
    return p ? p : malloc(bytes);
}

static void stage_free(cg_dist *d, float *p, bool pinned)
{
    if (pinned) cg__be_host_free(d->ctx, p);
    else free(p);
}

static void free_buckets(cg_dist *d)
{
    for (int b = 0; b < d->n_buckets; b++) {
        if (d->buckets[b].launched && !d->buckets[b].done)
            MPI_Wait(&d->buckets[b].req, MPI_STATUS_IGNORE);
        stage_free(d, d->buckets[b].host, d->buckets[b].pinned);
        free(d->buckets[b].rcounts);
        free(d->buckets[b].recv);
        free(d->buckets[b].tickets);
    }
    free(d->buckets);
    free(d->order);
    d->order = NULL;
    free(d->params);
    free(d->offs);
    free(d->bucket_of);
    free(d->ready);
    free(d->own_lo);
    free(d->own_hi);
    free(d->flat);
    free(d->counts);
    free(d->displs);
    stage_free(d, d->gather, d->gather_pinned);
    d->buckets = NULL;
    d->params = NULL;
    d->offs = d->flat = d->own_lo = d->own_hi = NULL;
    d->bucket_of = d->counts = d->displs = NULL;
    d->ready = NULL;
    d->gather = NULL;
    d->n_buckets = d->n_params = 0;
}

/* The optimizer is not touched: the program may have freed it already
 * (a sharded one then fails its next step, cg__dist_gather_params). */
static void detach(cg_dist *d)
{
    if (d->ctx->grad_ready_data == d) {
        d->ctx->grad_ready = NULL;
        d->ctx->grad_ready_data = NULL;
    }
    free_buckets(d);
    d->model = NULL;
    d->opt = NULL;
    d->shard = false;
}

CG_API void cg_dist_free(cg_dist *d)
{
    if (!d) return;
    detach(d);
    if (d->ctx->dist == d) d->ctx->dist = NULL;
    d->ctx->row_offset = 0;
    MPI_Comm_free(&d->comm);
    if (d->we_init) {
        int fin = 0;
        MPI_Finalized(&fin);
        if (!fin) MPI_Finalize();
    }
    free(d);
}

CG_API void cg_dist_abort(cg_dist *d, int code)
{
    if (!d || d->world <= 1) return;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code > 0 && code < 128 ? code : 1);
}

CG_API cg_status cg_dist_barrier(cg_dist *d)
{
    if (!d || d->world == 1) return CG_OK;
    MPI_TRY(d, MPI_Barrier(d->comm));
    return CG_OK;
}

CG_API cg_status cg_dist_allreduce(cg_dist *d, float *values, int n, enum cg_dist_op op)
{
    if (!d || d->world == 1 || n <= 0) return CG_OK;
    MPI_TRY(d, MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_FLOAT, mpi_op(op), d->comm));
    return CG_OK;
}

CG_API cg_status cg_dist_allreduce_f64(cg_dist *d, double *values, int n, enum cg_dist_op op)
{
    if (!d || d->world == 1 || n <= 0) return CG_OK;
    MPI_TRY(d, MPI_Allreduce(MPI_IN_PLACE, values, n, MPI_DOUBLE, mpi_op(op), d->comm));
    return CG_OK;
}

CG_API cg_status cg_dist_agree(cg_dist *d, cg_status local)
{
    if (!d || d->world == 1) return local;
    /* The lowest failing rank (MIN over rank-or-world), then its status. */
    int mine = local != CG_OK ? d->rank : d->world, first = d->world;
    MPI_TRY(d, MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, d->comm));
    int code = first == d->rank ? (int)local : 0;
    MPI_TRY(d, MPI_Allreduce(MPI_IN_PLACE, &code, 1, MPI_INT, MPI_MAX, d->comm));
    if (code != CG_OK && local == CG_OK)
        cg__error(d->ctx, (cg_status)code, RANKFMT "rank %d failed (%s)", RANKARG(d), first,
                  cg_status_str((cg_status)code));
    return (cg_status)code;
}

CG_API cg_status cg_dist_broadcast(cg_dist *d, void *buf, size_t bytes)
{
    if (!d || d->world == 1 || bytes == 0) return CG_OK;
    for (size_t off = 0; off < bytes;) { /* MPI counts are int */
        size_t n = bytes - off < ((size_t)1 << 30) ? bytes - off : (size_t)1 << 30;
        MPI_TRY(d, MPI_Bcast((char *)buf + off, (int)n, MPI_BYTE, 0, d->comm));
        off += n;
    }
    return CG_OK;
}

/* t's values from rank 0 into every rank's t. */
static cg_status broadcast_tensor(cg_dist *d, cg_tensor *t, const char *name)
{
    int64_t n = cg_tensor_numel(t);
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    if (!h)
        return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY,
                         RANKFMT "broadcasting %s: out of host memory", RANKARG(d), name);
    cg_status st = d->rank == 0 ? cg_tensor_to_host(t, h, n) : CG_OK;
    /* Every rank takes part even after a local failure, then all agree. */
    cg_status st2 = cg_dist_broadcast(d, h, (size_t)n * sizeof *h);
    if (st == CG_OK) st = st2;
    if (st == CG_OK && d->rank != 0) st = cg_tensor_set_data(t, h, n);
    free(h);
    return st;
}

CG_API cg_status cg_dist_broadcast_module(cg_dist *d, cg_module *model)
{
    if (!d || d->world == 1) return CG_OK;
    if (!model) return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT, "cg_dist_broadcast_module: NULL model");
    int np = cg_module_parameters(model, NULL, 0), nb = cg_module_buffers(model, NULL, 0);
    struct cg_named_tensor *nt = malloc((size_t)(np + nb + 1) * sizeof *nt);
    if (!nt) return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_broadcast_module: out of host memory");
    cg_module_parameters(model, nt, np);
    cg_module_buffers(model, nt + np, nb);
    cg_status st = CG_OK;
    for (int i = 0; i < np + nb; i++) {
        cg_status s = broadcast_tensor(d, nt[i].tensor, nt[i].name);
        if (st == CG_OK) st = s;
    }
    free(nt);
    return cg_dist_agree(d, st);
}

static int find_param(cg_dist *d, const cg_tensor *t);

CG_API cg_status cg_dist_broadcast_optim(cg_dist *d, cg_optim *opt)
{
    if (!d || d->world == 1) return CG_OK;
    if (!opt) return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT, "cg_dist_broadcast_optim: NULL optimizer");
    /* Sharded: rank 0 first holds the whole state (and every rank keeps
     * its range of what comes, below). */
    cg_status st = d->opt == opt ? cg_dist_gather_optim(d, opt) : CG_OK;
    if (st != CG_OK) return st;
    int np = cg_optim_num_params(opt);
    for (int i = 0; i < np && st == CG_OK; i++) {
        cg_tensor *p = cg_optim_param(opt, i);
        int64_t steps = cg_optim_param_steps(opt, p), n = cg_tensor_numel(p);
        /* Which state buffers rank 0 holds, then their values. */
        int64_t head[5] = {steps, 0, 0, 0, 0};
        for (int k = 0; k < 4; k++) head[1 + k] = cg_optim_param_state(opt, p, k) != NULL;
        if ((st = cg_dist_broadcast(d, head, sizeof head)) != CG_OK) break;
        if (d->rank != 0 && (st = cg_optim_set_param_steps(opt, p, head[0])) != CG_OK) break;
        float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
        if (!h) return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_broadcast_optim: out of host memory");
        for (int k = 0; k < 4 && st == CG_OK; k++) {
            if (!head[1 + k]) {
                if (d->rank != 0 && cg_optim_param_state(opt, p, k))
                    st = cg_optim_set_param_state(opt, p, k, NULL);
                continue;
            }
            if (d->rank == 0) st = cg_tensor_to_host(cg_optim_param_state(opt, p, k), h, n);
            cg_status s = cg_dist_broadcast(d, h, (size_t)n * sizeof *h);
            if (st == CG_OK) st = s;
            if (st == CG_OK && d->rank != 0) st = cg_optim_set_param_state(opt, p, k, h);
        }
        free(h);
        /* Sharded: keep only this rank's range (cg_dist_shard_optimizer). */
        if (st == CG_OK && d->opt == opt) {
            int j = find_param(d, p);
            st = cg__optim_set_range(opt, p, d->own_lo[j], d->own_hi[j]);
        }
    }
    return cg_dist_agree(d, st);
}

/* ---- model check and gradient buckets ------------------------------- */

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

/* The same (count, hash of names and shapes) on every rank, or an error
 * on every rank naming the ranks that differ from rank 0. */
static cg_status check_model(cg_dist *d, cg_module *model)
{
    int np = cg_module_parameters(model, NULL, 0), nb = cg_module_buffers(model, NULL, 0);
    struct cg_named_tensor *nt = malloc((size_t)(np + nb + 1) * sizeof *nt);
    if (!nt) return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_attach: out of host memory");
    cg_module_parameters(model, nt, np);
    cg_module_buffers(model, nt + np, nb);
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < np + nb; i++) {
        h = fnv1a(h, nt[i].name, strlen(nt[i].name) + 1);
        int nd = cg_tensor_ndim(nt[i].tensor);
        h = fnv1a(h, &nd, sizeof nd);
        h = fnv1a(h, cg_tensor_shape(nt[i].tensor), (size_t)nd * sizeof(int64_t));
    }
    free(nt);
    uint64_t mine[3] = {(uint64_t)np, (uint64_t)nb, h};
    uint64_t *all = malloc((size_t)d->world * sizeof mine);
    if (!all) return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_attach: out of host memory");
    int rc = MPI_Allgather(mine, 3, MPI_UINT64_T, all, 3, MPI_UINT64_T, d->comm);
    if (rc != MPI_SUCCESS) {
        free(all);
        return mpi_error(d, rc, "cg_dist_attach: MPI_Allgather");
    }
    char list[256] = "";
    size_t len = 0;
    int bad = 0;
    for (int r = 1; r < d->world; r++) {
        if (memcmp(all + 3 * r, all, sizeof mine) == 0) continue;
        if (bad++ < 8 && len < sizeof list)
            len += (size_t)snprintf(list + len, sizeof list - len,
                                    "%s rank %d (%" PRIu64 " parameters, %" PRIu64 " buffers)",
                                    bad > 1 ? "," : "", r, all[3 * r], all[3 * r + 1]);
    }
    cg_status st = CG_OK;
    if (bad)
        st = cg__error(d->ctx, CG_STATUS_SHAPE_MISMATCH,
                       RANKFMT "cg_dist_attach: the model differs between ranks (names or "
                       "shapes of parameters and buffers): rank 0 has %" PRIu64 " parameters "
                       "and %" PRIu64 " buffers, and%s%s differ",
                       RANKARG(d), all[0], all[1], list, bad > 8 ? " and more" : "");
    free(all);
    return st;
}

static float *grad_ptr(cg_tensor *g)
{
    return g->st->buf->data + g->offset;
}

/* Starts b's trip to the host: nothing to do on the cpu backend (MPI reads
 * the gradients, packed at send time); elsewhere a read of each gradient
 * into b's host block, without waiting where the backend can
 * (download_async), else a plain download. Appends b to the send order. */
static cg_status bucket_stage(cg_dist *d, struct bucket *b)
{
    bool async = !d->direct && CG__BE_HAS(d->ctx, download_async) &&
                 CG__BE_HAS(d->ctx, download_poll);
    b->staged = true;
    d->order[d->n_order++] = (int)(b - d->buckets);
    b->n_tickets = 0;
    if (d->direct) return CG_OK;
    for (int i = b->first; i < b->first + b->count; i++) {
        cg_tensor *g = d->params[i]->grad;
        int64_t n = cg_tensor_numel(d->params[i]);
        float *dst = b->host + d->offs[i];
        if (!g) {
            memset(dst, 0, (size_t)n * sizeof *dst);
        } else if (async) {
            void *ticket;
            cg_status st = cg__be_download_async(d->ctx, "cg_backward (gradient all-reduce)", dst,
                                                 cg__ptr(g), n, &ticket);
            if (st != CG_OK) return st;
            b->tickets[b->n_tickets++] = ticket;
        } else {
            cg_status st = cg_tensor_to_host(g, dst, n);
            if (st != CG_OK) return st;
        }
    }
    return CG_OK;
}

/* Whether b's reads have landed (wait: until they have). */
static cg_status bucket_landed(cg_dist *d, struct bucket *b, bool wait, bool *landed)
{
    cg_status st = CG_OK;
    while (b->n_tickets > 0) {
        bool done = false;
        if (cg__be_download_poll(d->ctx, "cg_backward (gradient all-reduce)",
                                 b->tickets[b->n_tickets - 1], wait, &done) != CG_OK) {
            st = d->ctx->status;
            done = true; /* the ticket is released on failure too */
        }
        if (!done) break;
        b->n_tickets--; /* the queue is in order: the last read lands last */
    }
    *landed = b->n_tickets == 0;
    return st;
}

/* Sends b with a non-blocking collective (it overlaps backward) or, where
 * blocking, with the blocking one. A blocking collective never matches a
 * non-blocking one (MPI 3.1, 5.12), so the choice must be the same on
 * every rank whatever the timing: see pump. */
static cg_status bucket_send(cg_dist *d, struct bucket *b, bool blocking)
{
    float *buf = b->host;
    if (!buf && !d->params[b->first]->grad) {
        /* cpu, one tensor without a gradient here (another rank may have
         * one): every rank must still send numel floats, so this bucket
         * gets a block of its own, zeros now and packed from then on. */
        b->host = stage_alloc(d, b->numel, &b->pinned);
        if (!b->host)
            return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY,
                             "cg_backward: out of host memory for a bucket of %" PRId64
                             " floats", b->numel);
        memset(b->host, 0, (size_t)b->numel * sizeof *b->host);
        buf = b->host;
    } else if (!buf) { /* cpu, one tensor: in place */
        buf = grad_ptr(d->params[b->first]->grad);
    } else if (d->direct) {
        for (int i = b->first; i < b->first + b->count; i++) {
            cg_tensor *g = d->params[i]->grad;
            int64_t n = cg_tensor_numel(d->params[i]);
            float *dst = b->host + d->offs[i];
            if (g) memcpy(dst, grad_ptr(g), (size_t)n * sizeof *dst);
            else memset(dst, 0, (size_t)n * sizeof *dst);
        }
    }
    b->launched = true;
    b->t_launch = now_s();
    d->stats.bytes += (double)b->numel * sizeof(float);
    d->stats.buckets++;
    if (blocking) {
        b->done = true; /* bucket_finish waits for nothing */
        if (!b->rcounts)
            MPI_TRY(d, MPI_Allreduce(MPI_IN_PLACE, buf, (int)b->numel, MPI_FLOAT, MPI_SUM, d->comm));
        else
            MPI_TRY(d, MPI_Reduce_scatter(buf, b->recv, b->rcounts, MPI_FLOAT, MPI_SUM, d->comm));
    } else if (!b->rcounts) {
        MPI_TRY(d, MPI_Iallreduce(MPI_IN_PLACE, buf, (int)b->numel, MPI_FLOAT, MPI_SUM, d->comm,
                                  &b->req));
    } else {
        MPI_TRY(d, MPI_Ireduce_scatter(buf, b->recv, b->rcounts, MPI_FLOAT, MPI_SUM, d->comm,
                                       &b->req));
    }
    return CG_OK;
}

/* Sends the staged buckets whose data has landed, in staging order (the
 * same on every rank, as MPI's collective ordering needs); wait (the walk
 * has ended): all.
 * The last bucket (the first layer's parameters, whose gradients backward
 * finishes last) waits for the end of the walk and goes out blocking, as
 * do all buckets with no_overlap: nothing is left to hide it behind, and
 * Open MPI's blocking all-reduce (coll/tuned) is much faster than its
 * non-blocking one (libnbc, which moves only inside MPI calls): 0.12
 * against 0.37 ms for 0.9 MB between two ranks of this 2-core machine (a
 * plain MPI loop, medians of 200). The rule depends on the bucket's index
 * only, so every rank makes the same choice even where reads land at
 * different times (opencl). */
static cg_status pump(cg_dist *d, bool wait)
{
    cg_status st = CG_OK;
    while (d->next_send < d->n_order) {
        bool last = d->order[d->next_send] == d->n_buckets - 1;
        if (last && !wait) break;
        struct bucket *b = &d->buckets[d->order[d->next_send]];
        bool landed = true;
        cg_status s = b->n_tickets ? bucket_landed(d, b, wait, &landed) : CG_OK;
        if (st == CG_OK) st = s;
        if (!landed) break;
        s = bucket_send(d, b, last || d->no_overlap);
        if (st == CG_OK) st = s;
        d->next_send++;
    }
    return st;
}

/* Sharded: the mean of this rank's elements of b (in b->recv) into their
 * gradients; the other elements keep this rank's local gradient. */
static cg_status bucket_finish_shard(cg_dist *d, struct bucket *b)
{
    int64_t f0 = d->flat[b->first];
    int64_t a = d->displs[d->rank], e = a + d->counts[d->rank]; /* owned, flattened */
    a = a > f0 ? a : f0;
    e = e < f0 + b->numel ? e : f0 + b->numel;
    float inv = 1.0f / (float)d->world;
    cg_status st = CG_OK;
    for (int i = b->first; i < b->first + b->count && st == CG_OK; i++) {
        cg_tensor *g = d->params[i]->grad;
        int64_t x = d->flat[i] > a ? d->flat[i] : a;
        int64_t y = d->flat[i] + cg_tensor_numel(d->params[i]);
        y = y < e ? y : e;
        if (!g || x >= y) continue;
        float *src = b->recv + (x - a);
        cg__storage_written(g->st);
        if (d->direct) {
            float *dst = grad_ptr(g) + (x - d->flat[i]);
            for (int64_t k = 0; k < y - x; k++) dst[k] = src[k] * inv;
        } else {
            for (int64_t k = 0; k < y - x; k++) src[k] *= inv;
            struct cg_ptr dst = cg__ptr(g);
            dst.off += x - d->flat[i];
            st = cg__be_upload(d->ctx, "cg_backward (gradient reduce-scatter)", dst, src, y - x);
        }
    }
    b->ready = 0;
    return st;
}

/* Waits for b and writes the mean back into the gradients (sharded: the
 * elements this rank owns only). */
static cg_status bucket_finish(cg_dist *d, struct bucket *b)
{
    if (!b->done) MPI_TRY(d, MPI_Wait(&b->req, MPI_STATUS_IGNORE));
    b->launched = b->done = false;
    d->stats.total_s += now_s() - b->t_launch;
    if (b->rcounts) return bucket_finish_shard(d, b);
    float inv = 1.0f / (float)d->world;
    cg_status st = CG_OK;
    for (int i = b->first; i < b->first + b->count && st == CG_OK; i++) {
        cg_tensor *g = d->params[i]->grad;
        if (!g) continue; /* no gradient on any rank (same graph everywhere) */
        int64_t n = cg_tensor_numel(g);
        float *src = b->host ? b->host + d->offs[i] : grad_ptr(g);
        if (d->direct) {
            float *dst = grad_ptr(g);
            for (int64_t k = 0; k < n; k++) dst[k] = src[k] * inv;
            cg__storage_written(g->st);
        } else {
            for (int64_t k = 0; k < n; k++) src[k] *= inv;
            st = cg_tensor_set_data(g, src, n);
        }
    }
    b->ready = 0;
    return st;
}

static int find_param(cg_dist *d, const cg_tensor *t)
{
    for (int k = 0; k < d->n_params; k++) {
        int i = (d->hint + k) % d->n_params;
        if (d->params[i] == t) {
            d->hint = i + 1;
            return i;
        }
    }
    return -1;
}

/* Open MPI moves a non-blocking collective on only inside MPI calls:
 * poke the ones in flight, so they progress during backward. */
static void progress(cg_dist *d)
{
    for (int k = 0; k < d->next_send; k++) {
        struct bucket *bk = &d->buckets[d->order[k]];
        int done;
        if (bk->launched && !bk->done) {
            MPI_Test(&bk->req, &done, MPI_STATUS_IGNORE);
            bk->done = done;
        }
    }
}

/* autograd's hook (core/internal.h): t a finished leaf, a node about to
 * run its backward, or NULL at the end of the walk. */
static cg_status grad_hook(void *data, cg_tensor *t)
{
    cg_dist *d = data;
    cg_status st = CG_OK;
    if (t && t->node) { /* between two ops of the walk: send what landed */
        st = pump(d, false);
        progress(d);
        return st;
    }
    if (t) {
        int i = find_param(d, t);
        if (i < 0 || d->ready[i]) return CG_OK;
        d->ready[i] = true;
        struct bucket *b = &d->buckets[d->bucket_of[i]];
        if (++b->ready == b->count && !d->no_overlap) st = bucket_stage(d, b);
        cg_status s = pump(d, false);
        if (st == CG_OK) st = s;
        progress(d);
        return st;
    }
    /* The walk ended: stage what is left (parameters without a gradient
     * this step keep theirs back), in index order, send all, wait. */
    for (int k = 0; k < d->n_buckets; k++) {
        if (d->buckets[k].staged) continue;
        cg_status s = bucket_stage(d, &d->buckets[k]);
        if (st == CG_OK) st = s;
    }
    double t0 = now_s();
    cg_status s = pump(d, true);
    if (st == CG_OK) st = s;
    for (int k = 0; k < d->n_buckets; k++) {
        struct bucket *b = &d->buckets[k];
        if (b->launched) s = bucket_finish(d, b);
        if (st == CG_OK) st = s;
        b->staged = false;
        b->ready = 0;
    }
    d->stats.wait_s += now_s() - t0;
    for (int i = 0; i < d->n_params; i++) d->ready[i] = false;
    d->hint = 0;
    d->n_order = d->next_send = 0;
    return st;
}

/* Rank r's elements [*lo, *hi) of parameter i; false when it owns none. */
static bool piece_of(const cg_dist *d, int r, int i, int64_t *lo, int64_t *hi)
{
    int64_t n = cg_tensor_numel(d->params[i]);
    *lo = d->displs[r] - d->flat[i];
    *hi = d->displs[r] + d->counts[r] - d->flat[i];
    *lo = *lo < 0 ? 0 : *lo;
    *hi = *hi > n ? n : *hi;
    return *hi > *lo;
}

/* ZeRO-1's partition: the parameters flattened in bucket order (the
 * reverse of registration), cut into N ranges of equal size (to one
 * element); a tensor may be split between two or more ranks. Records each
 * rank's range, this rank's elements of every parameter, and allocates the
 * flattened host block of the all-gather. */
static cg_status partition(cg_dist *d)
{
    int np = d->n_params, w = d->world;
    d->flat = malloc((size_t)(np + 1) * sizeof *d->flat);
    d->own_lo = malloc((size_t)(np + 1) * sizeof *d->own_lo);
    d->own_hi = malloc((size_t)(np + 1) * sizeof *d->own_hi);
    d->counts = calloc((size_t)w, sizeof *d->counts);
    d->displs = calloc((size_t)w, sizeof *d->displs);
    if (!d->flat || !d->own_lo || !d->own_hi || !d->counts || !d->displs)
        return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_shard_optimizer: out of host memory");
    int64_t total = 0;
    for (int i = 0; i < np; i++) {
        d->flat[i] = total;
        total += cg_tensor_numel(d->params[i]);
    }
    if (total > INT32_MAX)
        return cg__error(d->ctx, CG_STATUS_UNSUPPORTED,
                         RANKFMT "cg_dist_shard_optimizer: %" PRId64 " parameters; the "
                         "all-gather counts in int (at most %d)", RANKARG(d), total, INT32_MAX);
    for (int r = 0; r < w; r++) {
        d->displs[r] = (int)(total * r / w);
        d->counts[r] = (int)(total * (r + 1) / w) - d->displs[r];
    }
    for (int i = 0; i < np; i++)
        if (!piece_of(d, d->rank, i, &d->own_lo[i], &d->own_hi[i]))
            d->own_lo[i] = d->own_hi[i] = 0;
    d->gather = stage_alloc(d, total, &d->gather_pinned);
    if (!d->gather)
        return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY,
                         "cg_dist_shard_optimizer: out of host memory for %" PRId64 " floats", total);
    return CG_OK;
}

/* Sharded: how many of bucket b's elements each rank owns, and this
 * rank's receive block. */
static cg_status bucket_scatter(cg_dist *d, struct bucket *b)
{
    int64_t f0 = d->flat[b->first], f1 = f0 + b->numel;
    b->rcounts = calloc((size_t)d->world, sizeof *b->rcounts);
    if (!b->rcounts) return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_shard_optimizer: out of host memory");
    for (int r = 0; r < d->world; r++) {
        int64_t a = d->displs[r], e = a + d->counts[r];
        a = a > f0 ? a : f0;
        e = e < f1 ? e : f1;
        b->rcounts[r] = e > a ? (int)(e - a) : 0;
    }
    b->recv = malloc((size_t)(b->rcounts[d->rank] > 0 ? b->rcounts[d->rank] : 1) * sizeof(float));
    if (!b->recv) return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_shard_optimizer: out of host memory");
    return CG_OK;
}

static cg_status make_buckets(cg_dist *d, cg_module *model)
{
    int np = cg_module_parameters(model, NULL, 0);
    struct cg_named_tensor *nt = malloc((size_t)(np + 1) * sizeof *nt);
    d->params = malloc((size_t)(np + 1) * sizeof *d->params);
    d->offs = malloc((size_t)(np + 1) * sizeof *d->offs);
    d->bucket_of = malloc((size_t)(np + 1) * sizeof *d->bucket_of);
    d->ready = calloc((size_t)np + 1, sizeof *d->ready);
    d->buckets = calloc((size_t)np + 1, sizeof *d->buckets);
    d->order = malloc((size_t)(np + 1) * sizeof *d->order);
    if (!nt || !d->params || !d->offs || !d->bucket_of || !d->ready || !d->buckets || !d->order) {
        free(nt);
        return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_attach: out of host memory");
    }
    cg_module_parameters(model, nt, np);
    d->n_params = np;
    for (int i = 0; i < np; i++) d->params[i] = nt[np - 1 - i].tensor;
    free(nt);
    if (d->shard) {
        cg_status st = partition(d);
        if (st != CG_OK) return st;
    }
    struct bucket *b = NULL;
    for (int i = 0; i < np; i++) {
        int64_t n = cg_tensor_numel(d->params[i]);
        if (!b || (size_t)b->numel * sizeof(float) >= d->bucket_bytes ||
            b->numel + n > INT32_MAX) {
            b = &d->buckets[d->n_buckets++];
            b->first = i;
        }
        d->offs[i] = b->numel;
        d->bucket_of[i] = (int)(b - d->buckets);
        b->numel += n;
        b->count++;
    }
    for (int k = 0; k < d->n_buckets; k++) {
        b = &d->buckets[k];
        b->tickets = malloc((size_t)b->count * sizeof *b->tickets);
        if (!b->tickets)
            return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_attach: out of host memory");
        if (d->shard) {
            cg_status st = bucket_scatter(d, b);
            if (st != CG_OK) return st;
        }
        if (d->direct && b->count == 1) continue;
        b->host = stage_alloc(d, b->numel, &b->pinned);
        if (!b->host)
            return cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY,
                             "cg_dist_attach: out of host memory for a bucket of %" PRId64
                             " floats", b->numel);
    }
    return CG_OK;
}

CG_API cg_status cg_dist_attach(cg_dist *d, cg_module *model)
{
    if (!d) return CG_OK; /* one process */
    if (!model) return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT, "cg_dist_attach: NULL model");
    if (d->model)
        return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dist_attach: a model is already attached (one model per cg_dist)");
    if (d->ctx->grad_ready)
        return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dist_attach: the context already has a gradient hook");
    if (d->world == 1) {
        d->model = model;
        return CG_OK;
    }
    cg_status st = check_model(d, model);
    if (st != CG_OK) return st;
    if ((st = cg_dist_broadcast_module(d, model)) != CG_OK) return st;
    st = cg_dist_agree(d, make_buckets(d, model));
    if (st != CG_OK) {
        detach(d);
        return st;
    }
    d->model = model;
    d->ctx->grad_ready = grad_hook;
    d->ctx->grad_ready_data = d;
    return CG_OK;
}

/* ---- ZeRO-1: optimizer sharding --------------------------------------- */

CG_API cg_status cg_dist_shard_optimizer(cg_dist *d, cg_optim *opt)
{
    if (!d) return CG_OK;
    const char *fn = "cg_dist_shard_optimizer";
    if (!opt) return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT, "%s: NULL optimizer", fn);
    if (!d->model)
        return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s: no model attached (call cg_dist_attach first)", fn);
    if (cg_optim_ctx(opt) != d->ctx)
        return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s: the optimizer belongs to another context", fn);
    if (d->opt == opt) return CG_OK;
    if (d->opt)
        return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "%s: another optimizer is sharded already (one per cg_dist)", fn);
    if (d->world == 1) return CG_OK; /* nothing to share */
    cg_status st = CG_OK;
    int n = cg_optim_num_params(opt);
    for (int k = 0; k < n && st == CG_OK; k++) {
        cg_tensor *p = cg_optim_param(opt, k);
        if (find_param(d, p) < 0) {
            char desc[128];
            cg_tensor_describe(p, desc, sizeof desc);
            st = cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT,
                           RANKFMT "%s: the optimizer's parameter %d %s is not a parameter of "
                           "the attached model", RANKARG(d), fn, k, desc);
        }
    }
    if ((st = cg_dist_agree(d, st)) != CG_OK) return st;
    /* Rebuild the buckets, now reduce-scattered. */
    free_buckets(d);
    d->shard = true;
    st = cg_dist_agree(d, make_buckets(d, d->model));
    for (int k = 0; k < n && st == CG_OK; k++) {
        cg_tensor *p = cg_optim_param(opt, k);
        int i = find_param(d, p);
        st = cg__optim_set_range(opt, p, d->own_lo[i], d->own_hi[i]);
    }
    if (st != CG_OK) {
        detach(d);
        return st;
    }
    cg__optim_set_sharded(opt, true);
    d->opt = opt;
    return CG_OK;
}

/* Writes elements [lo, hi) of parameter i from the flattened block. */
static cg_status unpack_param(cg_dist *d, int i, int64_t lo, int64_t hi)
{
    cg_tensor *p = d->params[i];
    if (hi <= lo) return CG_OK;
    const float *src = d->gather + d->flat[i] + lo;
    cg__storage_written(p->st);
    if (d->direct) {
        memcpy(grad_ptr(p) + lo, src, (size_t)(hi - lo) * sizeof(float));
        return CG_OK;
    }
    struct cg_ptr dst = cg__ptr(p);
    dst.off += lo;
    return cg__be_upload(d->ctx, "cg_optim_step (parameter all-gather)", dst, src, hi - lo);
}

/* This rank's elements of every parameter into the flattened host block,
 * one MPI_Allgatherv, and the other ranks' elements back into the
 * tensors. On the cpu backend with memcpy; elsewhere with ranged
 * downloads and uploads. A rank that fails still takes part in the
 * collective (no hang), then reports its status. */
cg_status cg__dist_gather_params(cg_optim *opt)
{
    cg_ctx *ctx = cg_optim_ctx(opt);
    cg_dist *d = ctx->dist;
    if (!d || d->opt != opt)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_optim_step: the optimizer was sharded by a cg_dist that is gone "
                         "(free the optimizer before the cg_dist)");
    double t0 = now_s();
    cg_status st = CG_OK;
    for (int i = 0; i < d->n_params; i++) {
        int64_t lo = d->own_lo[i], hi = d->own_hi[i];
        if (hi <= lo) continue;
        float *dst = d->gather + d->flat[i] + lo;
        struct cg_ptr src = cg__ptr(d->params[i]);
        if (d->direct) {
            memcpy(dst, grad_ptr(d->params[i]) + lo, (size_t)(hi - lo) * sizeof(float));
        } else if (st == CG_OK) {
            src.off += lo;
            st = cg__be_download(ctx, "cg_optim_step (parameter all-gather)", dst, src, hi - lo);
        }
    }
    int rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, d->gather, d->counts, d->displs,
                            MPI_FLOAT, d->comm);
    if (rc != MPI_SUCCESS) return mpi_error(d, rc, "cg_optim_step: MPI_Allgatherv of the parameters");
    for (int i = 0; i < d->n_params && st == CG_OK; i++) {
        st = unpack_param(d, i, 0, d->own_lo[i]);
        if (st == CG_OK)
            st = unpack_param(d, i, d->own_hi[i] > d->own_lo[i] ? d->own_hi[i] : 0,
                              cg_tensor_numel(d->params[i]));
    }
    d->stats.gather_s += now_s() - t0;
    d->stats.gather_bytes += (double)(d->displs[d->world - 1] + d->counts[d->world - 1] -
                                      d->counts[d->rank]) * sizeof(float);
    return st;
}

/* The values of state tensor t for elements [lo, hi) of a parameter of n
 * elements into dst: t holds the range, or (gathered before) all of it. */
static cg_status state_piece(cg_tensor *t, int64_t n, int64_t lo, int64_t hi, float *dst, float *tmp)
{
    if (cg_tensor_numel(t) == hi - lo) return cg_tensor_to_host(t, dst, hi - lo);
    cg_status st = cg_tensor_to_host(t, tmp, n);
    if (st == CG_OK) memcpy(dst, tmp + lo, (size_t)(hi - lo) * sizeof *dst);
    return st;
}

/* Parameter i's step count and state from every rank that owns a piece
 * of it into rank 0's optimizer, whole (point to point, in rank order).
 * h: 4 x numel floats on rank 0 (three states and a spare), 2 x numel on
 * the others. A failing rank still sends, so rank 0 never waits forever. */
static cg_status gather_state(cg_dist *d, cg_optim *opt, int i, float *h)
{
    cg_tensor *p = d->params[i];
    int64_t n = cg_tensor_numel(p), lo, hi;
    int64_t head[1 + CG_OPTIM_MAX_STATE];
    cg_status st = CG_OK;
    if (d->rank != 0) {
        if (!piece_of(d, d->rank, i, &lo, &hi)) return CG_OK;
        head[0] = cg_optim_param_steps(opt, p);
        for (int k = 0; k < CG_OPTIM_MAX_STATE; k++) head[1 + k] = cg_optim_param_state(opt, p, k) != NULL;
        MPI_TRY(d, MPI_Send(head, 1 + CG_OPTIM_MAX_STATE, MPI_INT64_T, 0, 1, d->comm));
        for (int k = 0; k < CG_OPTIM_MAX_STATE; k++) {
            if (!head[1 + k]) continue;
            cg_status s = state_piece(cg_optim_param_state(opt, p, k), n, lo, hi, h, h + n);
            if (st == CG_OK) st = s;
            MPI_TRY(d, MPI_Send(h, (int)(hi - lo), MPI_FLOAT, 0, 2, d->comm));
        }
        return st;
    }
    bool has[CG_OPTIM_MAX_STATE] = {false};
    int64_t steps = 0;
    bool first = true;
    for (int r = 0; r < d->world; r++) {
        if (!piece_of(d, r, i, &lo, &hi)) continue;
        if (r == 0) {
            head[0] = cg_optim_param_steps(opt, p);
            for (int k = 0; k < CG_OPTIM_MAX_STATE; k++) {
                cg_tensor *t = cg_optim_param_state(opt, p, k);
                head[1 + k] = t != NULL;
                cg_status s = t ? state_piece(t, n, lo, hi, h + k * n + lo, h + 3 * n) : CG_OK;
                if (st == CG_OK) st = s;
            }
        } else {
            MPI_TRY(d, MPI_Recv(head, 1 + CG_OPTIM_MAX_STATE, MPI_INT64_T, r, 1, d->comm,
                                MPI_STATUS_IGNORE));
            for (int k = 0; k < CG_OPTIM_MAX_STATE; k++)
                if (head[1 + k])
                    MPI_TRY(d, MPI_Recv(h + k * n + lo, (int)(hi - lo), MPI_FLOAT, r, 2, d->comm,
                                        MPI_STATUS_IGNORE));
        }
        if (first) steps = head[0];
        first = false;
        for (int k = 0; k < CG_OPTIM_MAX_STATE; k++) has[k] = has[k] || head[1 + k];
    }
    cg_status s = cg_optim_set_param_steps(opt, p, steps);
    if (st == CG_OK) st = s;
    for (int k = 0; k < CG_OPTIM_MAX_STATE && st == CG_OK; k++)
        st = cg_optim_set_param_state(opt, p, k, has[k] ? h + k * n : NULL);
    return st;
}

CG_API cg_status cg_dist_gather_optim(cg_dist *d, cg_optim *opt)
{
    if (!d || !d->opt) return CG_OK; /* not sharded: rank 0 has it all */
    if (opt != d->opt)
        return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_dist_gather_optim: not the optimizer cg_dist_shard_optimizer sharded");
    int64_t big = 1;
    for (int i = 0; i < d->n_params; i++)
        big = cg_tensor_numel(d->params[i]) > big ? cg_tensor_numel(d->params[i]) : big;
    float *h = malloc((size_t)big * (d->rank == 0 ? 4 : 2) * sizeof *h);
    cg_status st = h ? CG_OK : cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY,
                                         "cg_dist_gather_optim: out of host memory");
    if ((st = cg_dist_agree(d, st)) != CG_OK) {
        free(h);
        return st;
    }
    int n = cg_optim_num_params(opt);
    for (int k = 0; k < n; k++) {
        cg_status s = gather_state(d, opt, find_param(d, cg_optim_param(opt, k)), h);
        if (st == CG_OK) st = s;
    }
    free(h);
    return cg_dist_agree(d, st);
}

/* ---- SyncBatchNorm's sums ------------------------------------------- */

/* t summed over the ranks into a new tensor (not recorded). */
static cg_tensor *sum_over_ranks(cg_dist *d, cg_tensor *t)
{
    int64_t n = cg__tnumel(t);
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    if (!h) {
        cg__error(d->ctx, CG_STATUS_OUT_OF_MEMORY, RANKFMT "cg_dist: out of host memory", RANKARG(d));
        return NULL;
    }
    cg_tensor *r = NULL;
    if (cg_tensor_to_host(t, h, n) == CG_OK) {
        int rc = MPI_Allreduce(MPI_IN_PLACE, h, (int)n, MPI_FLOAT, MPI_SUM, d->comm);
        if (rc != MPI_SUCCESS)
            mpi_error(d, rc, "SyncBatchNorm: MPI_Allreduce");
        else
            r = cg_tensor_from_host(d->ctx, t->ndim, t->shape, h);
    }
    free(h);
    return r;
}

/* d(sum_r t_r)/d t_r = 1 for every rank's loss: the gradient of a rank's
 * t is the sum over ranks of the gradients of the sum (torch's
 * SyncBatchNorm backward all-reduces sum_dy and sum_dy_xmu the same way). */
static cg_status dist_sum_backward(struct cg_node *node, cg_tensor *out, cg_tensor *g)
{
    cg_ctx *ctx = node->ctx;
    cg_tensor *s = sum_over_ranks(ctx->dist, g);
    return s ? cg__accumulate_grad(node->inputs[0], s) : ctx->status;
}

cg_tensor *cg__dist_sum(cg_tensor *t)
{
    if (!t) return NULL;
    cg_ctx *ctx = cg__ctx_of(t);
    if (!ctx->dist || ctx->dist->world == 1) return t;
    cg_tensor *r = sum_over_ranks(ctx->dist, t);
    if (!r) return NULL;
    bool failed;
    cg__record(r, "dist_sum", dist_sum_backward, 1, &t, 0, NULL, &failed);
    return failed ? NULL : r;
}

#else /* !CG_HAVE_MPI: one process */

CG_API cg_status cg_dist_create(cg_ctx *ctx, const struct cg_dist_options *opts, cg_dist **out)
{
    (void)opts;
    if (out) *out = NULL;
    if (!ctx || !out) return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_dist_create: NULL argument");
    if (launched_size() > 1)
        return cg__error(ctx, CG_STATUS_UNSUPPORTED,
                         "cg_dist_create: launched as one of %d processes, but clgrad was built "
                         "without MPI (install libopenmpi-dev and rebuild with -Dmpi=enabled)",
                         launched_size());
    cg_dist *d = calloc(1, sizeof *d);
    if (!d) return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_dist_create: out of host memory");
    d->ctx = ctx;
    d->world = 1;
    *out = d;
    return CG_OK;
}

CG_API void cg_dist_free(cg_dist *d) { free(d); }
CG_API void cg_dist_abort(cg_dist *d, int code) { (void)d, (void)code; }
CG_API cg_status cg_dist_barrier(cg_dist *d) { (void)d; return CG_OK; }
CG_API cg_status cg_dist_allreduce(cg_dist *d, float *v, int n, enum cg_dist_op op)
{
    (void)d, (void)v, (void)n, (void)op;
    return CG_OK;
}
CG_API cg_status cg_dist_allreduce_f64(cg_dist *d, double *v, int n, enum cg_dist_op op)
{
    (void)d, (void)v, (void)n, (void)op;
    return CG_OK;
}
CG_API cg_status cg_dist_agree(cg_dist *d, cg_status local) { (void)d; return local; }
CG_API cg_status cg_dist_broadcast(cg_dist *d, void *buf, size_t bytes)
{
    (void)d, (void)buf, (void)bytes;
    return CG_OK;
}
CG_API cg_status cg_dist_broadcast_module(cg_dist *d, cg_module *model)
{
    (void)d, (void)model;
    return CG_OK;
}
CG_API cg_status cg_dist_broadcast_optim(cg_dist *d, cg_optim *opt)
{
    (void)d, (void)opt;
    return CG_OK;
}
CG_API cg_status cg_dist_attach(cg_dist *d, cg_module *model)
{
    if (!d) return CG_OK; /* one process */
    if (!model) return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT, "cg_dist_attach: NULL model");
    d->model = model;
    return CG_OK;
}
cg_tensor *cg__dist_sum(cg_tensor *t) { return t; }
CG_API cg_status cg_dist_shard_optimizer(cg_dist *d, cg_optim *opt)
{
    if (!d) return CG_OK;
    if (!opt) return cg__error(d->ctx, CG_STATUS_INVALID_ARGUMENT, "cg_dist_shard_optimizer: NULL optimizer");
    return CG_OK; /* one rank: nothing to share */
}
CG_API cg_status cg_dist_gather_optim(cg_dist *d, cg_optim *opt)
{
    (void)d, (void)opt;
    return CG_OK;
}
cg_status cg__dist_gather_params(cg_optim *opt) { (void)opt; return CG_OK; }

#endif
