/*
 * backends/cpu/cpu_threads.c — the cpu backend's one thread pool: it splits
 * large GEMMs (cpu_gemm.c: over the batch, or into row / column tiles of C,
 * each tile one single-threaded sgemm), convolution and pooling (cpu_conv.c,
 * over images and planes), and the large elementwise, reduction and
 * optimizer loops across cores. OpenBLAS is kept on one thread
 * (cpu_gemm.c), so there is never a second pool competing for the cores:
 * two pools that each spin while the other works cost more than a second
 * core gains (on the 2-core machine the CNN trained 25% slower on two
 * cores than on one before this was so).
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
 * any thread count, 1 included — except OpenBLAS GEMM tiles, whose edge
 * kernels round differently from one whole call (cpu_gemm.c): those are
 * deterministic for a given thread count.
 *
 * Dispatch: the caller publishes a job under the mutex, bumps a generation
 * counter and broadcasts. The caller runs part 0, and every thread, the
 * caller included, then claims the other parts from an atomic counter
 * until none is left, so a worker that is
 * slow to wake (a futex wake-up in a VM costs tens of microseconds) costs
 * parallelism, never a wait; the caller waits only for parts already
 * running (spinning on an atomic count, then sleeping).
 * Idle workers sleep on a condition variable after a short spin on the
 * generation (CG_CPU_SPIN_NS): a training step issues its large ops back to
 * back with a little serial work between them (an LSTM step's cell between
 * two GEMMs), and a worker still spinning starts the next one at once
 * instead of after a futex wake-up. The spin pauses the core between polls
 * (no syscalls, no sched_yield) and is bounded in time, so a machine busy
 * with other work loses at most a few tens of microseconds per large op.
 *
 * Late workers: the one thing a second thread can make worse. On a
 * machine with more runnable threads than cores (other processes, a CI
 * runner's neighbours), a worker is often off its core when a job is
 * published; it claims a part when it next runs, and if that is late, or
 * it loses its core mid-part, the caller finishes its own part and waits
 * for the worker's, longer than doing both itself would have taken.
 * Measured on the 2-core EPYC with three other busy processes, the MLP's
 * 64x128x256 product (one 42 us part on 1 thread): 2 threads median
 * 209 us, 64x256x784 350 us against 249 us on one; the MLP trained at
 * 1.59 ms a step on 2 threads against 1.34 ms on one. So the caller times
 * each job (two clock reads, ~50 ns): when it waited for its workers so
 * long that the job took longer than running every part itself would have
 * (its own parts' time scaled to all parts), by more than recent jobs
 * gained (a decaying sum of time saved turns negative), it runs the next
 * CG_CPU_SOLO_JOBS jobs alone — the same parts, in order, so results are
 * as handed over — and then hands over again to see whether the workers
 * keep up. The idle workers meanwhile stop spinning and sleep, leaving
 * the cores to whoever has them. The same machine and load after: the
 * products 47 and 254 us on 2 threads, the MLP's step as on one thread.
 * On an idle machine a spinning worker takes its part within a
 * microsecond, every job saves time and the guard never trips.
 * CLGRAD_CPU_HANDOFF: "auto" (this), "always" (no guard, the default),
 * "never" (every job alone, the same parts: the tests compare the two).
 * The guard is not the default because it can stick on an idle machine:
 * where gaps between jobs outlast the spin, every job finds its workers
 * asleep and pays a futex wake-up; a few tiny jobs (Adam's halves) lose
 * that, the caller goes solo, the workers sleep through the solo stretch,
 * and the probe after it loses again. Measured (clgrad-dist-bench, MLP,
 * 2 threads, idle machine, alternated): auto 71k / 67k / 122k samples/s
 * (CPU time = wall time: alone), always 118k / 113k / 108k. A probe that
 * first wakes the workers and does not count its first jobs might fix it;
 * not done.
 *
 * Nesting: a range function that itself calls cg__cpu_parallel_for (a
 * GEMM tile calling the blocked SGEMM, say) runs that loop on its own
 * thread; the pool runs one job at a time.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cpu.h"

/* How long an idle worker (and a caller waiting for its workers) polls
 * before sleeping. Measured on the 2-core EPYC, clgrad-bench --quick
 * training on 2 threads, best of 3, spin 0 / 20 / 50 / 200 µs: LSTM 31.4k /
 * 31.3k / 33.6k / 36.7k tokens/s, Transformer 31.5k / 31.6k / 34.7k /
 * 34.0k, CNN 1,944 / 2,077 / 2,192 / 2,316 samples/s: most of the gain by
 * 50 µs. Env CLGRAD_CPU_SPIN_US overrides it (0: sleep at once). */
#define CG_CPU_SPIN_NS 50000

/* Jobs the caller runs alone once workers cost more than they saved (see
 * the top): a training step issues 5-50 jobs, so this is a few steps,
 * after which jobs are handed over again (a probe that may lose up to
 * CG_CPU_PROBE_CREDIT_NS before the next solo stretch). */
#define CG_CPU_SOLO_JOBS 64

/* What handing over may lose after a start or a solo stretch before the
 * caller goes solo again: the first jobs find the workers asleep (a
 * futex wake-up costs 10-50 us in a VM), so on an idle machine a job or
 * two must be allowed to lose while the workers come back to spinning;
 * on a busy one every job loses 50-150 us and this is spent at once. */
#define CG_CPU_PROBE_CREDIT_NS 100000

enum handoff { HANDOFF_AUTO, HANDOFF_ALWAYS, HANDOFF_NEVER };

/* A pause between polls: tells the core this is a spin-wait (saves power,
 * frees the sibling hyperthread), no syscall. */
#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() ((void)0)
#endif

struct cg_cpu_pool {
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    int nthreads;                   /* workers + the caller              */
    pthread_t *workers;
    void **scratch;                 /* per worker (index 0 unused)       */
    size_t *scratch_len;            /* bytes in scratch[t]               */
    int64_t spin_ns;
    enum handoff handoff;
    /* the late-worker guard; only the calling thread touches these */
    int64_t gain_ns;                /* what handing over saved, decayed  */
    int solo_left;                  /* jobs still to run alone           */
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

/* The calling thread's index in the pool it belongs to (0: not a worker,
 * i.e. a caller), and whether it is running a part of a job right now. */
static _Thread_local int tl_worker;
static _Thread_local bool tl_in_job;

struct worker_start {
    struct cg_cpu_pool *pool;
    int index;
};

/* A bad CLGRAD_* value gets one line on stderr naming the variable, the
 * value and what is accepted, once per process (issue 17 item 6: they were
 * ignored silently); the default is used instead. */
static void env_warn_once(atomic_bool *warned, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void env_warn_once(atomic_bool *warned, const char *fmt, ...)
{
    if (atomic_exchange(warned, true)) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("clgrad: warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int64_t spin_from_env(void);
static enum handoff handoff_from_env(void);

int cg__cpu_threads_from_env(void)
{
    /* checked here, when a context opens, for their warnings */
    (void)spin_from_env();
    (void)handoff_from_env();
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int dflt = n < 1 ? 1 : n > CG_CPU_MAX_THREADS ? CG_CPU_MAX_THREADS : (int)n;
    const char *v = getenv("CLGRAD_CPU_THREADS");
    if (v && *v) {
        static atomic_bool warned;
        char *end;
        errno = 0;
        long t = strtol(v, &end, 10);
        bool number = *end == '\0' && errno == 0;
        if (number && t >= 1 && t <= CG_CPU_MAX_THREADS) return (int)t;
        if (number && t > CG_CPU_MAX_THREADS) {
            env_warn_once(&warned, "CLGRAD_CPU_THREADS=%s is over the limit of %d threads; "
                          "using %d", v, CG_CPU_MAX_THREADS, CG_CPU_MAX_THREADS);
            return CG_CPU_MAX_THREADS;
        }
        env_warn_once(&warned, "CLGRAD_CPU_THREADS=%s is not a thread count (accepted: an "
                      "integer from 1 to %d); using %d", v, CG_CPU_MAX_THREADS, dflt);
    }
    return dflt;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Polls until done(p) or spin_ns have passed; returns done(p). The clock is
 * read every 64 polls (a vDSO call, no syscall). */
static bool spin_until(int64_t spin_ns, bool (*done)(struct cg_cpu_pool *, unsigned),
                       struct cg_cpu_pool *pool, unsigned v)
{
    if (spin_ns <= 0) return done(pool, v);
    int64_t end = 0;
    for (unsigned i = 0;; i++) {
        if (done(pool, v)) return true;
        if ((i & 63) == 0) {
            int64_t t = now_ns();
            if (!end) end = t + spin_ns;
            else if (t >= end) return false;
        }
        cpu_relax();
    }
}

static bool gen_moved(struct cg_cpu_pool *pool, unsigned seen)
{
    return atomic_load_explicit(&pool->gen, memory_order_acquire) != seen;
}

static bool parts_done(struct cg_cpu_pool *pool, unsigned parts)
{
    return atomic_load_explicit(&pool->finished, memory_order_acquire) == (int)parts;
}

/* Range p of `parts` equal contiguous ranges of [0, n). */
static void part_range(int64_t n, int parts, int p, int64_t *lo, int64_t *hi)
{
    *lo = n * p / parts;
    *hi = n * (p + 1) / parts;
}

/* Runs part p of a job of `parts` and counts it finished. */
static void run_part(struct cg_cpu_pool *pool, cg_cpu_range_fn fn, void *arg, int64_t n,
                     int parts, int p)
{
    int64_t lo, hi;
    part_range(n, parts, p, &lo, &hi);
    tl_in_job = true;
    if (lo < hi) fn(arg, lo, hi);
    tl_in_job = false;
    if (atomic_fetch_add_explicit(&pool->finished, 1, memory_order_acq_rel) + 1 == parts) {
        /* the last part: wake the caller if it stopped spinning */
        pthread_mutex_lock(&pool->mu);
        pthread_cond_signal(&pool->done);
        pthread_mutex_unlock(&pool->mu);
    }
}

/* Claims and runs parts of job `g` until none is left; returns how many
 * this thread ran. Any thread may run any part: a part's range is fixed by
 * (n, parts), so results do not depend on who runs it, and a caller whose
 * workers are slow to wake does the work itself instead of waiting for
 * them. */
static int run_parts(struct cg_cpu_pool *pool, unsigned g, cg_cpu_range_fn fn, void *arg,
                     int64_t n, int parts)
{
    int ran = 0;
    for (;;) {
        unsigned long long w = atomic_load_explicit(&pool->claim, memory_order_acquire);
        unsigned p = (unsigned)(w & 0xffffffffu);
        if ((unsigned)(w >> 32) != g || p >= (unsigned)parts) break;
        if (!atomic_compare_exchange_weak_explicit(&pool->claim, &w, w + 1,
                                                   memory_order_acq_rel, memory_order_relaxed))
            continue;
        run_part(pool, fn, arg, n, parts, (int)p);
        ran++;
    }
    return ran;
}

static void *worker_main(void *arg_)
{
    struct worker_start *ws = arg_;
    struct cg_cpu_pool *pool = ws->pool;
    tl_worker = ws->index;
    free(ws);
    unsigned seen = 0;
    for (;;) {
        spin_until(pool->spin_ns, gen_moved, pool, seen);
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
        (void)run_parts(pool, seen, fn, arg, n, parts);
    }
}

static int64_t spin_from_env(void)
{
    const char *v = getenv("CLGRAD_CPU_SPIN_US");
    if (v && *v) {
        static atomic_bool warned;
        char *end;
        errno = 0;
        long us = strtol(v, &end, 10);
        if (*end == '\0' && errno == 0 && us >= 0 && us <= 1000000) return (int64_t)us * 1000;
        env_warn_once(&warned, "CLGRAD_CPU_SPIN_US=%s is not a spin time (accepted: an integer "
                      "number of microseconds from 0 to 1000000); using %d", v,
                      CG_CPU_SPIN_NS / 1000);
    }
    return CG_CPU_SPIN_NS;
}

static enum handoff handoff_from_env(void)
{
    const char *v = getenv("CLGRAD_CPU_HANDOFF");
    if (!v || !*v || strcmp(v, "always") == 0) return HANDOFF_ALWAYS;
    if (strcmp(v, "auto") == 0) return HANDOFF_AUTO;
    if (strcmp(v, "never") == 0) return HANDOFF_NEVER;
    static atomic_bool warned;
    env_warn_once(&warned, "CLGRAD_CPU_HANDOFF=%s is not auto, always or never; using always", v);
    return HANDOFF_ALWAYS;
}

/* Starts the workers; false (and no pool: loops stay serial) on failure. */
static bool pool_start(struct cg_cpu_ctx *c)
{
    struct cg_cpu_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return false;
    pool->nthreads = c->nthreads;
    pool->spin_ns = spin_from_env();
    pool->handoff = handoff_from_env();
    pool->gain_ns = CG_CPU_PROBE_CREDIT_NS;
    pool->workers = calloc((size_t)c->nthreads, sizeof *pool->workers);
    pool->scratch = calloc((size_t)c->nthreads, sizeof *pool->scratch);
    pool->scratch_len = calloc((size_t)c->nthreads, sizeof *pool->scratch_len);
    if (!pool->workers || !pool->scratch || !pool->scratch_len ||
        pthread_mutex_init(&pool->mu, NULL) != 0) {
        free(pool->workers);
        free(pool->scratch);
        free(pool->scratch_len);
        free(pool);
        return false;
    }
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    atomic_init(&pool->gen, 0);
    atomic_init(&pool->claim, 0);
    atomic_init(&pool->finished, 0);
    int started = 1;  /* the caller is thread 0 */
    for (; started < c->nthreads; started++) {
        struct worker_start *ws = malloc(sizeof *ws);
        if (!ws) break;
        *ws = (struct worker_start){.pool = pool, .index = started};
        if (pthread_create(&pool->workers[started], NULL, worker_main, ws) != 0) {
            free(ws);
            break;
        }
    }
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
    for (int t = 0; t < pool->nthreads; t++) free(pool->scratch[t]);
    free(pool->scratch);
    free(pool->scratch_len);
    free(pool->workers);
    free(pool);
    c->pool_threads = NULL;
}

int cg__cpu_parallel_threads(const struct cg_cpu_ctx *c)
{
    return tl_in_job ? 1 : c->nthreads;
}

void *cg__cpu_scratch(struct cg_cpu_ctx *c, size_t bytes)
{
    void **slot = &c->scratch;
    size_t *len = &c->scratch_len;
    if (tl_worker > 0 && c->pool_threads && tl_worker < c->pool_threads->nthreads) {
        slot = &c->pool_threads->scratch[tl_worker];
        len = &c->pool_threads->scratch_len[tl_worker];
    }
    if (*len < bytes) {
        size_t cap = (bytes + CG_CPU_ALIGN - 1) / CG_CPU_ALIGN * CG_CPU_ALIGN;
        void *p = aligned_alloc(CG_CPU_ALIGN, cap);
        if (!p) return NULL;
        free(*slot);
        *slot = p;
        *len = cap;
    }
    return *slot;
}

void cg__cpu_parallel_for(struct cg_cpu_ctx *c, int64_t n, int64_t grain, cg_cpu_range_fn fn,
                          void *arg)
{
    /* parts: as many threads as have `grain` items each, at most nthreads;
     * one inside a part of a running job (the pool is busy with it) */
    int64_t want = grain > 0 ? n / grain : n;
    int threads = cg__cpu_parallel_threads(c);
    int parts = want < threads ? (int)want : threads;
    if (parts >= 2 && !c->pool_threads && !c->pool_failed && !pool_start(c))
        c->pool_failed = true;
    struct cg_cpu_pool *pool = c->pool_threads;
    if (parts < 2 || !pool) {
        if (n > 0) fn(arg, 0, n);
        return;
    }
    if (parts > pool->nthreads) parts = pool->nthreads;
    if (pool->handoff == HANDOFF_NEVER || pool->solo_left > 0) {
        /* alone: the parts a handed-over job would have, in order */
        if (pool->solo_left > 0) pool->solo_left--;
        tl_in_job = true;
        for (int p = 0; p < parts; p++) {
            int64_t lo, hi;
            part_range(n, parts, p, &lo, &hi);
            if (lo < hi) fn(arg, lo, hi);
        }
        tl_in_job = false;
        return;
    }
    bool timed = pool->handoff == HANDOFF_AUTO; /* only the guard reads the clock */
    int64_t t0 = timed ? now_ns() : 0;
    pthread_mutex_lock(&pool->mu);
    unsigned g = atomic_load_explicit(&pool->gen, memory_order_relaxed) + 1;
    pool->fn = fn;
    pool->arg = arg;
    pool->n = n;
    pool->parts = parts;
    atomic_store_explicit(&pool->finished, 0, memory_order_relaxed);
    /* part 0 is the caller's: it works from the start, never only waits */
    atomic_store_explicit(&pool->claim, (unsigned long long)g << 32 | 1, memory_order_release);
    atomic_store_explicit(&pool->gen, g, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);

    int64_t t1 = timed ? now_ns() : 0;
    run_part(pool, fn, arg, n, parts, 0);
    int mine = 1 + run_parts(pool, g, fn, arg, n, parts);
    int64_t own = timed ? now_ns() - t1 : 0;
    if (!spin_until(pool->spin_ns, parts_done, pool, (unsigned)parts)) {
        pthread_mutex_lock(&pool->mu);
        while (atomic_load_explicit(&pool->finished, memory_order_acquire) < parts)
            pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
    if (!timed) return;
    /* What handing over saved: all parts alone (estimated from the
     * caller's own, parts / mine of its time) less what the job took,
     * publishing included; negative when a worker was late or never came
     * (then it saved nothing and the hand-over cost its wake-up). A
     * running sum that forgets an eighth each job: once it is negative,
     * handing over has cost more than it saved over the last jobs. */
    int64_t alone = own * parts / mine, saved = alone - (now_ns() - t0);
    pool->gain_ns += saved - pool->gain_ns / 8;
    if (pool->gain_ns < 0) {
        pool->gain_ns = CG_CPU_PROBE_CREDIT_NS;
        pool->solo_left = CG_CPU_SOLO_JOBS;
    }
}
