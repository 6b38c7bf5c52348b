/*
 * src/dist/dist-impl.h — what the layers need from data parallelism
 * (never installed).
 */
#ifndef CLGRAD_DIST_IMPL_H
#define CLGRAD_DIST_IMPL_H

#include "core/internal.h"
#include "clgrad/optim.h"

/* The number of ranks ctx trains with (1 without a cg_dist). */
int cg__dist_world(cg_ctx *ctx);

/* t summed over every rank, elementwise: a recorded op whose backward sums
 * the incoming gradient over the ranks too (SyncBatchNorm's statistics).
 * Returns t itself with one rank. */
cg_tensor *cg__dist_sum(cg_tensor *t);

/* ZeRO-1 (cg_dist_shard_optimizer): after opt's step, every rank's
 * parameters from their owners (MPI_Allgatherv). cg_optim_step calls it. */
cg_status cg__dist_gather_params(cg_optim *opt);

#endif
