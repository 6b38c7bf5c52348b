/* tests/harness.c — see harness.h. */
#include "harness.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *th_backend(void)
{
    const char *be = getenv("CLGRAD_BACKEND");
    return be && *be ? be : "cpu";
}

cg_ctx *th_ctx_create(uint64_t seed)
{
    struct cg_ctx_options o = {.backend = th_backend(), .device = NULL, .seed = seed};
    cg_ctx *ctx = NULL;
    if (cg_ctx_create(&ctx, &o) == CG_OK) return ctx;
    const char *ci = getenv("CI");
    bool in_ci = ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0);
    fprintf(stderr, "%s: cannot create a context on backend '%s': %s\n",
            in_ci ? "FAIL" : "SKIP", o.backend, cg_last_error(NULL));
    exit(in_ci ? 1 : 77);
}

int th_setup(void **state)
{
    *state = th_ctx_create(1234);
    return 0;
}

int th_teardown(void **state)
{
    cg_ctx_free(*state);
    return 0;
}

int th_run(const char *name, const struct CMUnitTest *tests, size_t n, int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    char group[256];
    snprintf(group, sizeof group, "%s [%s]", name, th_backend());
    return _cmocka_run_group_tests(group, tests, n, NULL, NULL);
}

uint64_t th_rand_u64(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double th_rand_uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(th_rand_u64(s) >> 11) * 0x1.0p-53);
}

void th_fill_uniform(uint64_t *s, float *x, int64_t n, float lo, float hi)
{
    for (int64_t i = 0; i < n; i++) x[i] = (float)th_rand_uniform(s, lo, hi);
}

static void assert_close_impl(const float *a, const float *bf, const double *bd,
                              int64_t n, double rtol, double atol, const char *what)
{
    double worst = 0;
    int64_t wi = -1;
    for (int64_t i = 0; i < n; i++) {
        double b = bd ? bd[i] : (double)bf[i];
        double d = fabs((double)a[i] - b);
        double r = d / (atol + rtol * fabs(b));
        if (isnan(a[i]) != isnan(b)) r = INFINITY;
        if (isnan(a[i]) && isnan(b)) r = 0;
        if (r > worst || (r == INFINITY && wi < 0)) { worst = r; wi = i; }
    }
    if (worst > 1.0) {
        double b = bd ? bd[wi] : (double)bf[wi];
        fail_msg("%s: element %lld of %lld: got %.9g, want %.9g (rtol %g, atol %g)",
                 what, (long long)wi, (long long)n, (double)a[wi], b, rtol, atol);
    }
}

void th_assert_close(const float *a, const double *b, int64_t n, double rtol,
                     double atol, const char *what)
{
    assert_close_impl(a, NULL, b, n, rtol, atol, what);
}

void th_assert_close_f(const float *a, const float *b, int64_t n, double rtol,
                       double atol, const char *what)
{
    assert_close_impl(a, b, NULL, n, rtol, atol, what);
}

void th_assert_error_contains(const cg_ctx *ctx, const char *needle)
{
    const char *msg = cg_last_error(ctx);
    if (!strstr(msg, needle))
        fail_msg("error message \"%s\" does not contain \"%s\"", msg, needle);
}

#define TH_ARENA_MAX 8192
static void *arena[TH_ARENA_MAX];
static int arena_n;

void *th_talloc(size_t bytes)
{
    assert_true(arena_n < TH_ARENA_MAX);
    void *p = calloc(1, bytes ? bytes : 1);
    assert_non_null(p);
    arena[arena_n++] = p;
    return p;
}

int th_arena_mark(void) { return arena_n; }

void th_arena_release(int mark)
{
    while (arena_n > mark) free(arena[--arena_n]);
}

int th_arena_setup(void **state)
{
    th_arena_release(0);
    return th_setup(state);
}

int th_arena_teardown(void **state)
{
    th_arena_release(0);
    return th_teardown(state);
}

int th_dir_setup(void **state, uint64_t seed, const char *tag)
{
    struct th_dirfx *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->ctx = th_ctx_create(seed);
    snprintf(f->dir, sizeof f->dir, "/tmp/clgrad-%.16s-XXXXXX", tag);
    if (!f->ctx || !mkdtemp(f->dir)) {
        cg_ctx_free(f->ctx);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

int th_dir_teardown(void **state)
{
    struct th_dirfx *f = *state;
    DIR *d = opendir(f->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(f->dir);
    cg_ctx_free(f->ctx);
    free(f);
    return 0;
}

cg_tensor *th_rnn_run(cg_module *m, cg_tensor *x, cg_tensor *h0, cg_tensor *c0,
                      cg_tensor **hn, cg_tensor **cn)
{
    struct cg_forward_args a = {.state = {h0, c0}};
    cg_tensor *y = cg_module_forward_ex(m, x, &a);
    if (hn) *hn = a.state_out[0];
    if (cn) *cn = a.state_out[1];
    return y;
}

cg_tensor *th_self_attention(cg_module *m, cg_tensor *x, bool causal)
{
    struct cg_forward_args a = {.causal = causal};
    return cg_module_forward_ex(m, x, &a);
}
