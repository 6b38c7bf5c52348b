/*
 * backends/cpu/cpu_threads.c — a small persistent thread pool that splits
 * the large elementwise, reduction and optimizer loops across cores.
 *
 * Sizing: CLGRAD_CPU_THREADS (1 disables the pool) or else the number of
 * online cores, read when the backend opens. The workers start on the first
 * loop that is large enough to split (so a context that never runs one
 * starts no thread) and are joined by cg__cpu_pool_stop when the context
 * closes, so leak checkers see no thread outliving its context.
 *
 * Determinism: cg__cpu_parallel_for hands each thread one fixed contiguous
 * range of [0, n), and every caller splits its work so that what a range
 * computes does not depend on where the ranges begin (elementwise outputs,
 * whole reduction outputs, reduction partials over fixed blocks combined in
 * block order, see cpu_reduce.c). Results are therefore bit-identical for
 * any thread count, 1 included.
 *
 * Dispatch: the caller publishes a job under the mutex, bumps a generation
 * counter and broadcasts. Every thread, the caller included, then claims
 * parts from an atomic counter until none is left, so a worker that is
 * slow to wake (a futex wake-up in a VM costs tens of microseconds) costs
 * parallelism, never a wait; the caller waits only for parts already
 * running (spinning on an atomic count, then sleeping).
 * Workers spin briefly on the generation before sleeping on the condition
 * variable, since a training step issues its large ops back to back and a
 * futex wake-up costs as much as a 64k-element add; on an oversubscribed
 * machine the spin gives up after a few microseconds.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "cpu.h"

/* Polls of the generation counter before a worker sleeps (~10-20 µs). */
#define CG_CPU_SPIN 20000

struct cg_cpu_pool {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    int nthreads;                   /* workers + the caller              */
    pthread_t *workers;
    atomic_uint gen;                /* bumped once per job               */
    /* Parts are claimed through one word, (job generation << 32) | next
     * part, so a worker still holding an old job's fields can never claim
     * a part of a newer job. */
    atomic_ullong claim;
    atomic_int finished;            /* parts of this job completed       */
    bool stop;
    /* the job (written under mu before its claim word is published) */
    cg_cpu_range_fn fn;
    void *arg;
    int64_t n;
    int parts;
};

int cg__cpu_threads_from_env(void)
{
    const char *v = getenv("CLGRAD_CPU_THREADS");
    if (v && *v) {
        char *end;
        long t = strtol(v, &end, 10);
        if (*end == '\0' && t >= 1) return t > CG_CPU_MAX_THREADS ? CG_CPU_MAX_THREADS : (int)t;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) return 1;
    return n > CG_CPU_MAX_THREADS ? CG_CPU_MAX_THREADS : (int)n;
}

/* Range p of `parts` equal contiguous ranges of [0, n). */
static void part_range(int64_t n, int parts, int p, int64_t *lo, int64_t *hi)
{
    *lo = n * p / parts;
    *hi = n * (p + 1) / parts;
}

/* Claims and runs parts of job `g` until none is left. Any thread may
 * run any part: a part's range is fixed by (n, parts), so results do not
 * depend on who runs it, and a caller whose workers are slow to wake does
 * the work itself instead of waiting for them. */
static void run_parts(struct cg_cpu_pool *pool, unsigned g, cg_cpu_range_fn fn, void *arg,
                      int64_t n, int parts)
{
    for (;;) {
        unsigned long long w = atomic_load_explicit(&pool->claim, memory_order_acquire);
        unsigned p = (unsigned)(w & 0xffffffffu);
        if ((unsigned)(w >> 32) != g || p >= (unsigned)parts) return;
        if (!atomic_compare_exchange_weak_explicit(&pool->claim, &w, w + 1,
                                                   memory_order_acq_rel, memory_order_relaxed))
            continue;
        int64_t lo, hi;
        part_range(n, parts, (int)p, &lo, &hi);
        if (lo < hi) fn(arg, lo, hi);
        if (atomic_fetch_add_explicit(&pool->finished, 1, memory_order_acq_rel) + 1 == parts) {
            /* the last part: wake the caller if it stopped spinning */
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

static void *worker_main(void *arg_)
{
    struct cg_cpu_pool *pool = arg_;
    unsigned seen = 0;
    for (;;) {
        unsigned g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        for (int spin = 0; g == seen && spin < CG_CPU_SPIN; spin++)
            g = atomic_load_explicit(&pool->gen, memory_order_acquire);
        pthread_mutex_lock(&pool->mu);
        while (atomic_load_explicit(&pool->gen, memory_order_relaxed) == seen && !pool->stop)
            pthread_cond_wait(&pool->wake, &pool->mu);
        if (pool->stop) {
            pthread_mutex_unlock(&pool->mu);
            return NULL;
        }
        seen = atomic_load_explicit(&pool->gen, memory_order_relaxed);
        cg_cpu_range_fn fn = pool->fn;
        void *arg = pool->arg;
        int64_t n = pool->n;
        int parts = pool->parts;
        pthread_mutex_unlock(&pool->mu);
        run_parts(pool, seen, fn, arg, n, parts);
    }
}

/* Starts the workers; false (and no pool: loops stay serial) on failure. */
static bool pool_start(struct cg_cpu_ctx *c)
{
    struct cg_cpu_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return false;
    pool->nthreads = c->nthreads;
    pool->workers = calloc((size_t)c->nthreads, sizeof *pool->workers);
    if (!pool->workers || pthread_mutex_init(&pool->mu, NULL) != 0) {
        free(pool->workers);
        free(pool);
        return false;
    }
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->claim, 0);
    atomic_init(&pool->finished, 0);
    int started = 1;  /* the caller is thread 0 */
    for (; started < c->nthreads; started++)
        if (pthread_create(&pool->workers[started], NULL, worker_main, pool) != 0) break;
    pool->nthreads = started;
    c->pool_threads = pool;
    if (started == 1) {
        cg__cpu_pool_stop(c);
        return false;
    }
    return true;
}

void cg__cpu_pool_stop(struct cg_cpu_ctx *c)
{
    struct cg_cpu_pool *pool = c->pool_threads;
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    pool->stop = true;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int t = 1; t < pool->nthreads; t++) pthread_join(pool->workers[t], NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    pthread_mutex_destroy(&pool->mu);
    free(pool->workers);
    free(pool);
    c->pool_threads = NULL;
}

void cg__cpu_parallel_for(struct cg_cpu_ctx *c, int64_t n, int64_t grain, cg_cpu_range_fn fn,
                          void *arg)
{
    /* parts: as many threads as have `grain` items each, at most nthreads */
    int64_t want = grain > 0 ? n / grain : n;
    int parts = want < c->nthreads ? (int)want : c->nthreads;
    if (parts >= 2 && !c->pool_threads && !c->pool_failed && !pool_start(c))
        c->pool_failed = true;
    struct cg_cpu_pool *pool = c->pool_threads;
    if (parts < 2 || !pool) {
        if (n > 0) fn(arg, 0, n);
        return;
    }
    if (parts > pool->nthreads) parts = pool->nthreads;
    pthread_mutex_lock(&pool->mu);
    unsigned g = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->parts = parts;
    atomic_store_explicit(&pool->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&pool->claim, (unsigned long long)g << 32, memory_order_release);
    atomic_store_explicit(&pool->gen, g, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);

    run_parts(pool, g, fn, arg, n, parts);
    for (int spin = 0; spin < CG_CPU_SPIN; spin++)
        if (atomic_load_explicit(&pool->finished, memory_order_acquire) == parts) return;
    pthread_mutex_lock(&pool->mu);
    while (atomic_load_explicit(&pool->finished, memory_order_acquire) < parts)
        pthread_cond_wait(&pool->done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}
