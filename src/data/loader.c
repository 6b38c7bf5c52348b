/*
 * src/data/loader.c — mini-batches of a dataset as tensors on the device.
 *
 * The batch tensors are allocated once, at create: a full (B, ...) pair and,
 * when the last batch is partial, a second pair of its exact size. A step
 * gathers the batch's samples (in the epoch's order) into a host staging
 * buffer as floats (a byte dataset is converted there, so the whole set
 * never exists as floats) and uploads it with cg_tensor_set_data, so
 * training runs with no device allocation per step. The shuffle is Fisher-Yates over the
 * context's RNG, one new permutation per epoch, so a seed fixes the batches
 * on every backend.
 *
 * Prefetching. With opts.prefetch a worker thread gathers batch b+1 into
 * the other of two staging buffers while the caller uploads batch b and
 * runs its step. The worker only copies host memory (it never touches the
 * context, which belongs to the caller's thread); at most one job is in
 * flight, and the main thread waits for it before it reads that buffer or
 * redraws the permutation.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/data-impl.h"

struct cg_loader {
    cg_ctx *ctx;
    const struct cg_dataset *ds;         /* borrowed */
    struct cg_loader_options o;
    int64_t n_batches;
    int64_t last_count;                  /* samples in the final batch  */
    int64_t y_row;                       /* floats per target: y_dim or 1 */
    int64_t shards, shard;               /* N ranks, this one's slice   */

    int64_t *perm;                       /* (n) this epoch's order      */
    int64_t pos;                         /* next batch; -1: no epoch    */
    int64_t epochs;

    cg_tensor *x, *y;                    /* (B, sample...), (B) / (B, k) */
    cg_tensor *x_last, *y_last;          /* the partial final batch     */
    float *stage_x[2], *stage_y[2];      /* host gather buffers         */

    bool threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool busy;                           /* a job is pending or running */
    int64_t job;                         /* its batch index             */
    bool quit;
};

/* This loader's samples in batch b: its slice of the global batch. */
static int64_t batch_count(const cg_loader *l, int64_t b)
{
    return (b == l->n_batches - 1 ? l->last_count : l->o.batch_size) / l->shards;
}

/* stage[slot] = the samples of batch b, in epoch order, as floats (byte
 * storage is converted here, one batch at a time). */
static void loader_gather(cg_loader *l, int64_t b, int slot)
{
    const struct cg_dataset *ds = l->ds;
    int64_t k = batch_count(l, b), start = b * l->o.batch_size + l->shard * k;
    cg__dataset_rows_to_float(ds, l->perm + start, k, l->stage_x[slot]);
    for (int64_t i = 0; ds->y && i < k; i++)
        memcpy(l->stage_y[slot] + i * l->y_row, ds->y + l->perm[start + i] * l->y_row,
               (size_t)l->y_row * sizeof(float));
}

static void *loader_worker(void *arg)
{
    cg_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->busy && !l->quit) pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit) break;
        int64_t b = l->job;
        pthread_mutex_unlock(&l->mu);
        loader_gather(l, b, (int)(b % 2));
        pthread_mutex_lock(&l->mu);
        l->busy = false;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Waits until the worker has no job. */
static void loader_idle(cg_loader *l)
{
    if (!l->threaded) return;
    pthread_mutex_lock(&l->mu);
    while (l->busy) pthread_cond_wait(&l->cv, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static void loader_submit(cg_loader *l, int64_t b)
{
    pthread_mutex_lock(&l->mu);
    l->job = b;
    l->busy = true;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

static uint64_t ctx_next(void *ctx) { return cg_rand_u64(ctx); }

/* A persistent (kept) tensor of shape (b, rest...). */
static cg_tensor *batch_tensor(cg_ctx *ctx, int64_t b, int nrest, const int64_t *rest)
{
    int64_t shape[CG_MAX_DIMS];
    shape[0] = b;
    for (int i = 0; i < nrest; i++) shape[i + 1] = rest[i];
    cg_tensor *t = cg_tensor_empty(ctx, nrest + 1, shape);
    return t ? cg_tensor_keep(t) : NULL;
}

static cg_status loader_tensors(cg_loader *l)
{
    const struct cg_dataset *ds = l->ds;
    int64_t b = (l->o.batch_size < ds->n ? l->o.batch_size : ds->n) / l->shards;
    int64_t last = l->last_count / l->shards;
    int ny = ds->y_dim ? 1 : 0;
    if (!(l->x = batch_tensor(l->ctx, b, ds->sample_ndim, ds->sample_shape))) goto fail;
    if (ds->y && !(l->y = batch_tensor(l->ctx, b, ny, &ds->y_dim))) goto fail;
    if (last != b) {
        if (!(l->x_last = batch_tensor(l->ctx, last, ds->sample_ndim, ds->sample_shape)))
            goto fail;
        if (ds->y && !(l->y_last = batch_tensor(l->ctx, last, ny, &ds->y_dim)))
            goto fail;
    }
    return CG_OK;
fail:
    return cg_ctx_status(l->ctx) != CG_OK ? cg_ctx_status(l->ctx) : CG_STATUS_OUT_OF_MEMORY;
}

CG_API cg_status cg_loader_create(cg_ctx *ctx, const struct cg_dataset *ds,
                                  const struct cg_loader_options *opts, cg_loader **out)
{
    if (out) *out = NULL;
    if (!ctx || !ds || !opts || !out)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_loader_create: NULL argument");
    if (opts->batch_size <= 0)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_loader_create: batch_size must be > 0, got %lld",
                         (long long)opts->batch_size);
    if ((!ds->x && !ds->x_u8) || ds->n <= 0 || ds->sample_ndim < 1 || ds->sample_ndim >= CG_MAX_DIMS)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_loader_create: the dataset is empty or its sample has %d dims "
                         "(1 to %d)",
                         ds->sample_ndim, CG_MAX_DIMS - 1);
    int64_t shards = opts->shard_count > 1 ? opts->shard_count : 1;
    if (shards > 1 && (opts->shard_rank < 0 || opts->shard_rank >= shards))
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_loader_create: shard_rank %d is not in [0, %lld)",
                         opts->shard_rank, (long long)shards);
    if (opts->batch_size % shards)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_loader_create: the global batch size %lld does not divide by the "
                         "%lld ranks (each rank takes batch / ranks samples)",
                         (long long)opts->batch_size, (long long)shards);
    if (ds->n < shards)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_loader_create: the data set has %lld samples, fewer than the %lld "
                         "ranks", (long long)ds->n, (long long)shards);
    int64_t full = ds->n / opts->batch_size, rem = ds->n % opts->batch_size;
    if (rem % shards) rem = 0; /* a partial batch N ranks cannot share evenly */
    if (full == 0 && rem == 0 && shards > 1)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_loader_create: %lld samples make no batch of %lld that divides by "
                         "the %lld ranks", (long long)ds->n, (long long)opts->batch_size,
                         (long long)shards);
    if (full == 0 && opts->drop_last)
        return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT,
                         "cg_loader_create: %lld samples make no full batch of %lld, and "
                         "drop_last is set",
                         (long long)ds->n, (long long)opts->batch_size);
    cg_loader *l = calloc(1, sizeof *l);
    if (!l) return cg__error(ctx, CG_STATUS_OUT_OF_MEMORY, "cg_loader_create: out of memory");
    l->ctx = ctx;
    l->ds = ds;
    l->o = *opts;
    l->n_batches = full + (rem && !opts->drop_last);
    l->last_count = rem && !opts->drop_last ? rem : (full ? opts->batch_size : rem);
    l->y_row = ds->y_dim ? ds->y_dim : 1;
    l->shards = shards;
    l->shard = shards > 1 ? opts->shard_rank : 0;
    l->pos = -1;
    int64_t b = opts->batch_size < ds->n ? opts->batch_size : ds->n;
    int nstage = opts->prefetch ? 2 : 1;
    cg_status st = CG_OK;
    l->perm = malloc((size_t)ds->n * sizeof *l->perm);
    for (int s = 0; s < nstage; s++) {
        l->stage_x[s] = malloc((size_t)(b * ds->sample_numel) * sizeof(float));
        l->stage_y[s] = malloc((size_t)(b * l->y_row) * sizeof(float));
        if (!l->stage_x[s] || !l->stage_y[s]) st = CG_STATUS_OUT_OF_MEMORY;
    }
    if (!l->perm || st != CG_OK) {
        st = cg__error(ctx, CG_STATUS_OUT_OF_MEMORY,
                       "cg_loader_create: out of memory for batches of %lld", (long long)b);
        goto fail;
    }
    for (int64_t i = 0; i < ds->n; i++) l->perm[i] = i;
    if ((st = loader_tensors(l)) != CG_OK) goto fail;
    if (opts->prefetch) {
        pthread_mutex_init(&l->mu, NULL);
        pthread_cond_init(&l->cv, NULL);
        /* No thread: stay synchronous, which gives the same batches. */
        l->threaded = pthread_create(&l->thread, NULL, loader_worker, l) == 0;
        if (!l->threaded) {
            pthread_cond_destroy(&l->cv);
            pthread_mutex_destroy(&l->mu);
        }
    }
    *out = l;
    return CG_OK;
fail:
    cg_loader_free(l);
    return st;
}

CG_API void cg_loader_free(cg_loader *l)
{
    if (!l) return;
    if (l->threaded) {
        pthread_mutex_lock(&l->mu);
        l->quit = true;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
        pthread_cond_destroy(&l->cv);
        pthread_mutex_destroy(&l->mu);
    }
    cg_tensor_free(l->x);
    cg_tensor_free(l->y);
    cg_tensor_free(l->x_last);
    cg_tensor_free(l->y_last);
    for (int s = 0; s < 2; s++) {
        free(l->stage_x[s]);
        free(l->stage_y[s]);
    }
    free(l->perm);
    free(l);
}

static void loader_begin_epoch(cg_loader *l)
{
    loader_idle(l);
    if (l->o.shuffle) cg__permutation(l->perm, l->ds->n, ctx_next, l->ctx);
    l->pos = 0;
    l->epochs++;
    if (l->threaded) loader_submit(l, 0);
}

CG_API cg_status cg_loader_next(cg_loader *l, cg_tensor **x, cg_tensor **y)
{
    if (x) *x = NULL;
    if (y) *y = NULL;
    if (!l || !x) return cg__error(l ? l->ctx : NULL, CG_STATUS_INVALID_ARGUMENT,
                                   "cg_loader_next: NULL argument");
    if (l->pos < 0) loader_begin_epoch(l);
    if (l->pos == l->n_batches) {
        l->pos = -1;
        return CG_OK;
    }
    int64_t b = l->pos, k = batch_count(l, b);
    int slot = 0;
    if (l->threaded) {
        loader_idle(l);                       /* batch b is in its buffer */
        slot = (int)(b % 2);
        if (b + 1 < l->n_batches) loader_submit(l, b + 1);
    } else {
        loader_gather(l, b, 0);
    }
    bool partial = l->x_last && b == l->n_batches - 1;
    cg_tensor *tx = partial ? l->x_last : l->x;
    cg_tensor *ty = partial ? l->y_last : l->y;
    cg_status st = cg_tensor_set_data(tx, l->stage_x[slot], k * l->ds->sample_numel);
    if (st == CG_OK && ty) st = cg_tensor_set_data(ty, l->stage_y[slot], k * l->y_row);
    if (st != CG_OK) {
        cg_loader_reset(l);
        return st;
    }
    l->pos++;
    l->ctx->row_offset = l->shard * k; /* dropout: the global sample index */
    *x = tx;
    if (y) *y = ty;
    return CG_OK;
}

CG_API void cg_loader_reset(cg_loader *l)
{
    if (!l) return;
    loader_idle(l);
    l->pos = -1;
}

CG_API int64_t cg_loader_batches(const cg_loader *l) { return l ? l->n_batches : 0; }

CG_API int64_t cg_loader_epoch(const cg_loader *l) { return l ? l->epochs : 0; }
