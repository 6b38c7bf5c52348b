/*
 * clgrad/dist.h — data-parallel training over MPI.
 *
 * N processes (ranks) each hold a full copy of the model and train on their
 * own slice of every global batch; after each backward the gradients are
 * averaged over the ranks, so every rank takes the same optimizer step and
 * the model stays identical everywhere (PyTorch's DistributedDataParallel,
 * Horovod). Launch with Open MPI's mpirun, on one machine or many:
 *
 *     mpirun -np 4 ./train                        # four processes here
 *     mpirun -np 8 --hostfile hosts ./train       # over several machines
 *
 * A single-process program becomes data-parallel with a few calls:
 *
 *     cg_dist *dist;
 *     if (cg_dist_create(ctx, NULL, &dist) != CG_OK) { ...error... }
 *     cg_module *model = ...;                    // same seed on every rank
 *     cg_dist_attach(dist, model);               // check, broadcast, hooks
 *     struct cg_loader_options lo = {.batch_size = 64, .shuffle = true,
 *         .shard_rank = cg_dist_rank(dist),      // 64 stays the global
 *         .shard_count = cg_dist_world_size(dist)};  // batch: 64/N a rank
 *     cg_optim *opt = cg_adam(model, 1e-3f);
 *     cg_dist_shard_optimizer(dist, opt);        // optional: ZeRO-1, below
 *     ...
 *     cg_optim_zero_grad(opt);
 *     cg_backward(loss);          // gradients averaged when it returns
 *     cg_optim_clip_grad_norm(opt, 1.0f);        // sees the averaged ones
 *     cg_optim_step(opt);
 *     float m[2] = {loss_sum, correct};
 *     cg_dist_allreduce(dist, m, 2, CG_DIST_SUM); // global metrics
 *     if (cg_dist_rank(dist) == 0) printf(...);
 *     ...
 *     cg_dist_free(dist);                        // MPI_Finalize if ours
 *
 * What is synchronised:
 *   - at cg_dist_attach: a hash of every parameter's and buffer's name and
 *     shape is compared over the ranks (a mismatch fails on every rank,
 *     naming the ranks that differ), then parameters and buffers are
 *     broadcast from rank 0;
 *   - in cg_backward: gradients go out in buckets of about
 *     bucket_bytes, in reverse parameter order, each with a non-blocking
 *     MPI_Iallreduce as soon as backward has finished all of its
 *     gradients, so communication overlaps the rest of the backward;
 *     the last bucket (the first layer's, finished last: nothing is left
 *     to overlap) goes out after the walk with the blocking
 *     MPI_Allreduce, which Open MPI runs about 3x faster; cg_backward
 *     waits for all and divides by N before it returns. On the cpu
 *     backend MPI reads and writes the gradient memory itself (a bucket
 *     of several tensors is packed into one host block
 *     with memcpy); on other backends each gradient is read into a host
 *     staging block allocated once at attach (pinned and mapped where the
 *     backend can: opencl's CL_MEM_ALLOC_HOST_PTR), with reads enqueued without
 *     waiting (the backend's download_async: the bucket is sent when they
 *     have landed, while the device goes on with backward);
 *   - BatchNorm in training sums its per-channel statistics over every
 *     rank (SyncBatchNorm), and dropout draws its mask from the global
 *     sample index (the loader's shard sets it), so N ranks with a global
 *     batch B compute the model one process computes with batch B, to
 *     float rounding (sums are added in another order).
 * Every rank must make the same calls in the same order (same model, same
 * seed, same number of steps); the loader's sharding guarantees the same
 * number of batches on every rank.
 *
 * Optimizer sharding (ZeRO-1, Rajbhandari et al. 2020; PyTorch's
 * ZeroRedundancyOptimizer): after cg_dist_shard_optimizer(d, opt) the
 * attached model's parameters, flattened in bucket order, are cut into N
 * equal ranges (a tensor may be split), and rank r owns range r:
 *   - the buckets go out with MPI_Ireduce_scatter instead of
 *     MPI_Iallreduce (same overlap with backward): each rank receives, and
 *     scales by 1/N, only its own elements' sums. The other elements of its
 *     gradients keep this rank's local, unreduced values: read gradients
 *     after cg_backward only where this rank owns them;
 *   - cg_optim_clip_grad_norm sums the squares of each rank's own elements
 *     over the ranks: the same global norm, exactly;
 *   - cg_optim_step updates only the own elements and keeps optimizer
 *     state (momentum, Adam's moments) for those only, so that state takes
 *     1/N of its memory on every rank (cg_optim_param_state then holds the
 *     range, flattened); the step ends with one MPI_Allgatherv of the
 *     parameters, after which every rank has the whole model again;
 *   - checkpoints: cg_dist_gather_optim (every rank) assembles the whole
 *     state on rank 0, which then saves as without sharding; the file
 *     resumes on any number of ranks, sharded or not (rank 0 loads,
 *     cg_dist_broadcast_optim, each rank keeps its range).
 * Communication per step: the reduce-scatter plus the all-gather move what
 * one all-reduce moves (a ring all-reduce is a reduce-scatter and an
 * all-gather), but the all-gather comes after the step and is not hidden
 * behind backward. The model is the unsharded one's to float rounding.
 *
 * Without MPI (built with -Dmpi=disabled, or MPI not found) every function
 * works for one process: world size 1, rank 0, reductions are copies;
 * cg_dist_create only fails when the environment says the program was
 * launched by mpirun with more than one rank.
 *
 * Errors: functions return a status and record a message in the context
 * (cg_last_error), prefixed with "rank R: " when there are several ranks.
 * An error every rank detects alike (a batch that does not divide by N,
 * a model mismatch) fails on every rank, so they can all exit cleanly;
 * for an error only one rank sees (an unreadable file), print it and call
 * cg_dist_abort, which ends every rank of the job (MPI_Abort) instead of
 * leaving the others waiting in a collective.
 *
 * Threading: MPI is initialised with MPI_THREAD_FUNNELED; call everything
 * here from the thread that created the context.
 */
#ifndef CLGRAD_DIST_H
#define CLGRAD_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "clgrad/context.h"
#include "clgrad/nn.h"
#include "clgrad/optim.h"
#include "clgrad/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cg_dist cg_dist;

struct cg_dist_options {
    size_t bucket_bytes;   /* gradient bucket size; 0: 1 MiB             */
    bool no_overlap;       /* launch the all-reduces only after backward's
                              walk (to measure what overlap hides)       */
};

enum cg_dist_op { CG_DIST_SUM, CG_DIST_MAX, CG_DIST_MIN };

/* Whether this build has MPI, and whether the environment says we run
 * under mpirun / srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or PMIX_RANK). */
CG_API bool cg_dist_available(void);
CG_API bool cg_dist_launched(void);

/* Joins the job: calls MPI_Init_thread unless the program already did,
 * and works on a duplicate of MPI_COMM_WORLD. ctx is the rank's context;
 * opts may be NULL. *out is freed with cg_dist_free. */
CG_API cg_status cg_dist_create(cg_ctx *ctx, const struct cg_dist_options *opts,
                                cg_dist **out);
/* Waits for nothing, releases the hooks, and calls MPI_Finalize if
 * cg_dist_create called MPI_Init. NULL is fine. Free before the context. */
CG_API void cg_dist_free(cg_dist *d);

CG_API int cg_dist_rank(const cg_dist *d);         /* 0 when d is NULL  */
CG_API int cg_dist_world_size(const cg_dist *d);   /* 1 when d is NULL  */

/* Checks that model has the same parameter and buffer names and shapes on
 * every rank, broadcasts them from rank 0, and from then on averages the
 * gradients of model's parameters in every cg_backward (see above). One
 * model per cg_dist. */
CG_API cg_status cg_dist_attach(cg_dist *d, cg_module *model); /* d NULL: CG_OK */

/* Broadcasts model's parameters and buffers from rank 0 (cg_dist_attach
 * does it; call again after loading a checkpoint on rank 0 only). */
CG_API cg_status cg_dist_broadcast_module(cg_dist *d, cg_module *model);
/* Broadcasts opt's per-parameter state and step counts from rank 0 (after
 * a resume that loaded them on rank 0); a sharded optimizer keeps only
 * its rank's share. */
CG_API cg_status cg_dist_broadcast_optim(cg_dist *d, cg_optim *opt);
/* ZeRO-1 optimizer sharding (see the overview): from now on each rank
 * updates, and keeps optimizer state for, only its 1/N of the attached
 * model's parameter elements; gradients are reduce-scattered instead of
 * all-reduced, and cg_optim_step ends with an all-gather of the
 * parameters. Call after cg_dist_attach, on every rank, with an optimizer
 * over the attached model's parameters; state the optimizer holds for
 * elements another rank owns is dropped. Free the optimizer before d.
 * One optimizer per cg_dist; with one rank it does nothing. */
CG_API cg_status cg_dist_shard_optimizer(cg_dist *d, cg_optim *opt);
/* Sharded: copies every rank's optimizer state and step counts to rank 0,
 * so that rank 0 holds the full state a checkpoint needs (call on every
 * rank before rank 0 saves; rank 0 drops the others' share again at its
 * next cg_optim_step). Not sharded: does nothing. */
CG_API cg_status cg_dist_gather_optim(cg_dist *d, cg_optim *opt);
/* Broadcasts bytes from rank 0's buf into every rank's buf. */
CG_API cg_status cg_dist_broadcast(cg_dist *d, void *buf, size_t bytes);

/* The global index of this rank's first sample in the current batch
 * (rank x local batch), which dropout adds to its row index so that its
 * masks follow the global sample. A sharded cg_loader sets it at every
 * cg_loader_next; a program that cuts its own batches calls this. */
CG_API void cg_dist_set_batch_offset(cg_ctx *ctx, int64_t first_row);

/* values[0..n) = op over the ranks of values, in place, on every rank
 * (float32; losses and counts for global metrics). */
CG_API cg_status cg_dist_allreduce(cg_dist *d, float *values, int n, enum cg_dist_op op);
/* The same for doubles (sums of many losses without float rounding). */
CG_API cg_status cg_dist_allreduce_f64(cg_dist *d, double *values, int n, enum cg_dist_op op);
/* Every rank agrees on a status: returns the first failure any rank
 * reports (the lowest rank's), CG_OK when all are fine. */
CG_API cg_status cg_dist_agree(cg_dist *d, cg_status local);
CG_API cg_status cg_dist_barrier(cg_dist *d);

/* Ends the whole job with status code (1..127) after this rank has printed
 * its error; without MPI, or with one rank, returns to the caller. */
CG_API void cg_dist_abort(cg_dist *d, int code);

/* Gradient communication since the last reset: wait_s, the time
 * cg_backward spent waiting for the all-reduces after its walk ended (the
 * part not hidden behind backward; with no_overlap, all of it); total_s,
 * from each bucket's launch until that wait saw it complete; bytes and
 * buckets all-reduced. */
struct cg_dist_stats {
    double total_s, wait_s;
    double bytes;
    long long buckets;
    double gather_s;       /* sharded: time in the parameters' all-gather */
    double gather_bytes;   /* and the bytes it brought to this rank       */
};
CG_API void cg_dist_get_stats(const cg_dist *d, struct cg_dist_stats *out);
CG_API void cg_dist_reset_stats(cg_dist *d);

#ifdef __cplusplus
}
#endif
#endif
