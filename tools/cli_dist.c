/* tools/cli_dist.c — the tools under mpirun (see cli.h, include/clgrad/dist.h). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

cg_dist *cli_dist;
static char rank_prefix[48];

static void abort_job(int status)
{
    /* The message is out; end every rank rather than leave them waiting. */
    cg_dist_abort(cli_dist, status);
}

/* Before the context exists (data loading may fail first): the launcher's
 * rank, so even those messages say which rank failed. */
void cli_dist_rank_from_env(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK"), *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (!r) r = getenv("PMI_RANK"), n = getenv("PMI_SIZE");
    if (r && n && atoi(n) > 1) {
        snprintf(rank_prefix, sizeof rank_prefix, "rank %d/%d: ", atoi(r), atoi(n));
        cli_rank = rank_prefix;
    }
}

void cli_dist_begin(cg_ctx *ctx)
{
    if (!cg_dist_launched()) return;
    if (cg_dist_create(ctx, NULL, &cli_dist) != CG_OK) cli_die("%s", cg_last_error(ctx));
    if (cg_dist_world_size(cli_dist) > 1) {
        snprintf(rank_prefix, sizeof rank_prefix, "rank %d/%d: ", cg_dist_rank(cli_dist),
                 cg_dist_world_size(cli_dist));
        cli_rank = rank_prefix;
        cli_on_exit = abort_job;
    }
}

void cli_dist_end(void)
{
    cli_on_exit = NULL;
    cg_dist_free(cli_dist);
    cli_dist = NULL;
}

void cli_dist_part(int64_t n, int64_t *lo, int64_t *hi)
{
    int r = cg_dist_rank(cli_dist), w = cg_dist_world_size(cli_dist);
    *lo = n * r / w;
    *hi = n * (r + 1) / w;
}
