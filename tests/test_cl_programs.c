/*
 * tests/test_cl_programs.c — every OpenCL C program in cl/ compiles on the
 * selected device with the build options the opencl backend uses, and the
 * on-disk binary cache works: a second build loads the binary instead of
 * compiling, a damaged cache file falls back to a source build, and a
 * compile error reports the build log.
 *
 * It links the plugin's program/cache code directly (cl_core_dep in
 * backends/opencl/meson.build), not the plugin, so it can see whether a
 * build came from the cache. Registered in tests/meson.build in the opencl
 * suite with the opencl environment; without an OpenCL device it skips
 * (exit 77), or fails when CI=true, like the backend tests.
 * Device: $CLGRAD_DEVICE as an index, else the first GPU, else device 0.
 */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cl_backend.h"

struct fx {
    struct cg_cl_device dev;
    char cache[256];
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void skip_or_fail(const char *why)
{
    const char *ci = getenv("CI");
    int in_ci = ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0);
    fprintf(stderr, "%s: %s\n", in_ci ? "FAIL" : "SKIP", why);
    exit(in_ci ? 1 : 77);
}

/* Picks the device and fills what program builds depend on. */
static void pick_device(struct cg_cl_device *d)
{
    cl_platform_id plats[8], pl[64];
    cl_device_id devs[64];
    cl_uint np = 0;
    int n = 0;
    if (clGetPlatformIDs(8, plats, &np) != CL_SUCCESS || np == 0)
        skip_or_fail("no OpenCL platform");
    for (cl_uint p = 0; p < np && p < 8; ++p) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, (cl_uint)(64 - n), devs + n, &nd) !=
            CL_SUCCESS)
            continue;
        for (cl_uint i = 0; i < nd && n < 64; ++i)
            pl[n++] = plats[p];
    }
    if (n == 0)
        skip_or_fail("no OpenCL device");
    int pick = -1;
    const char *env = getenv("CLGRAD_DEVICE");
    if (env && *env && strspn(env, "0123456789") == strlen(env))
        pick = atoi(env);
    for (int i = 0; pick < 0 && i < n; ++i) {
        cl_device_type t = 0;
        clGetDeviceInfo(devs[i], CL_DEVICE_TYPE, sizeof t, &t, NULL);
        if (t & CL_DEVICE_TYPE_GPU)
            pick = i;
    }
    if (pick < 0)
        pick = 0;
    if (pick >= n)
        skip_or_fail("CLGRAD_DEVICE names no device");

    char pname[128], pver[120], cver[128];
    memset(d, 0, sizeof *d);
    d->platform = pl[pick];
    d->device = devs[pick];
    clGetDeviceInfo(d->device, CL_DEVICE_NAME, sizeof d->name, d->name, NULL);
    clGetDeviceInfo(d->device, CL_DRIVER_VERSION, sizeof d->driver, d->driver, NULL);
    clGetPlatformInfo(d->platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL);
    clGetPlatformInfo(d->platform, CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
    snprintf(d->platform_name, sizeof d->platform_name, "%s %s", pname, pver);
    clGetDeviceInfo(d->device, CL_DEVICE_OPENCL_C_VERSION, sizeof cver, cver, NULL);
    int major = 1, minor = 0;
    sscanf(cver, "OpenCL C %d.%d", &major, &minor);
    d->c_version = major * 10 + minor;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    cl_int rc;
    pick_device(&f->dev);
    f->dev.context = clCreateContext(NULL, 1, &f->dev.device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS)
        skip_or_fail("clCreateContext failed");
    /* A private, empty cache folder: the first build must compile. */
    snprintf(f->cache, sizeof f->cache, "/tmp/clgrad-test-cache-XXXXXX");
    if (!mkdtemp(f->cache))
        return -1;
    setenv("CLGRAD_CACHE_DIR", f->cache, 1);
    *state = f;
    return 0;
}

static void rm_cache(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    clReleaseContext(f->dev.context);
    rm_cache(f->cache);
    free(f);
    return 0;
}

/* Builds program p; returns from_cache, fails the test on error. */
static int build(struct fx *f, int p, cl_program *out)
{
    char options[256], err[CG_CL_ERR_LEN] = "";
    int from_cache = -1;
    cg_cl_build_options(&f->dev, (enum cg_cl_prog)p, options, sizeof options);
    cg_status st = cg_cl_program_build(&f->dev, cg_cl_programs[p].name,
                                       cg_cl_programs[p].source, options, out,
                                       &from_cache, err, sizeof err);
    if (st != CG_OK)
        fail_msg("program %s (options \"%s\") on %s: %s", cg_cl_programs[p].name, options,
                 f->dev.name, err);
    return from_cache;
}

static cl_uint kernel_count(cl_program prog)
{
    cl_uint n = 0;
    assert_int_equal(clCreateKernelsInProgram(prog, 0, NULL, &n), CL_SUCCESS);
    return n;
}

/* Every program compiles from source, every kernel in it can be created,
 * and the second build (a new context, as a new process would have) loads
 * the cached binary. */
static void test_compile_then_cache(void **state)
{
    struct fx *f = *state;
    double cold = 0, warm = 0;
    for (int p = 0; p < CG_CL_PROG_COUNT; ++p) {
        cl_program prog;
        double t0 = now_ms();
        assert_int_equal(build(f, p, &prog), 0);
        cold += now_ms() - t0;
        cl_uint n = kernel_count(prog);
        assert_true(n >= 1);
        cl_kernel ks[32];
        assert_true(n <= 32);
        assert_int_equal(clCreateKernelsInProgram(prog, n, ks, NULL), CL_SUCCESS);
        for (cl_uint i = 0; i < n; ++i)
            clReleaseKernel(ks[i]);
        clReleaseProgram(prog);
    }
    cl_int rc;
    cl_context c2 = clCreateContext(NULL, 1, &f->dev.device, NULL, NULL, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    struct cg_cl_device d1 = f->dev;
    f->dev.context = c2;
    for (int p = 0; p < CG_CL_PROG_COUNT; ++p) {
        cl_program prog;
        double t0 = now_ms();
        assert_int_equal(build(f, p, &prog), 1);
        warm += now_ms() - t0;
        assert_true(kernel_count(prog) >= 1);
        clReleaseProgram(prog);
    }
    f->dev.context = d1.context;
    clReleaseContext(c2);
    printf("# %s: %d programs, cold build %.0f ms, from cache %.0f ms\n", f->dev.name,
           CG_CL_PROG_COUNT, cold, warm);
}

/* Another driver version (or option set) is another cache entry. */
static void test_cache_key_covers_driver(void **state)
{
    struct fx *f = *state;
    cl_program prog;
    build(f, CG_CL_PROG_EW, &prog);   /* cached now, if not already */
    clReleaseProgram(prog);
    struct cg_cl_device saved = f->dev;
    snprintf(f->dev.driver, sizeof f->dev.driver, "%.200s-other", saved.driver);
    assert_int_equal(build(f, CG_CL_PROG_EW, &prog), 0);
    clReleaseProgram(prog);
    f->dev = saved;
    assert_int_equal(build(f, CG_CL_PROG_EW, &prog), 1);
    clReleaseProgram(prog);
}

/* A damaged cache file is a miss: the build falls back to source and
 * rewrites the file, which the next build loads. */
static void test_damaged_cache_falls_back(void **state)
{
    struct fx *f = *state;
    cl_program prog;
    build(f, CG_CL_PROG_OPTIM, &prog);
    clReleaseProgram(prog);
    char cmd[600];
    snprintf(cmd, sizeof cmd,
             "for x in '%s'/optim-*.clbin; do head -c 100 \"$x\" > \"$x.cut\" && "
             "mv \"$x.cut\" \"$x\"; done", f->cache);
    assert_int_equal(system(cmd), 0);
    assert_int_equal(build(f, CG_CL_PROG_OPTIM, &prog), 0);
    clReleaseProgram(prog);
    assert_int_equal(build(f, CG_CL_PROG_OPTIM, &prog), 1);
    clReleaseProgram(prog);
    /* No temporary files are left behind by the atomic writes. */
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q tmp", f->cache);
    assert_int_not_equal(system(cmd), 0);
}

/* Writes a file of `bytes` bytes last used `age` seconds ago. */
static void cache_file(const char *dir, const char *name, size_t bytes, int age)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    for (size_t i = 0; i < bytes; ++i)
        fputc((int)(i & 0xff), fp);
    assert_int_equal(fclose(fp), 0);
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= age;
    t[1] = t[0];
    assert_int_equal(utimensat(AT_FDCWD, path, t, 0), 0);
}

static int cache_has(const char *dir, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

/* The folder's cap (CLGRAD_CACHE_MAX_MB): a new binary evicts the least
 * recently used ones, a load counting as a use, until the binaries fit;
 * tuning results and other files stay, temporary files of dead writers
 * go. */
static void test_cache_size_cap(void **state)
{
    struct fx *f = *state;
    const size_t mib = (size_t)1 << 20;
    cl_program prog;
    build(f, CG_CL_PROG_INDEX, &prog);   /* cached now, if not already */
    clReleaseProgram(prog);
    char cmd[600], index_bin[256] = "";
    snprintf(cmd, sizeof cmd, "cd '%s' && touch -d '1 hour ago' index-*.clbin", f->cache);
    assert_int_equal(system(cmd), 0);
    /* Older than every file below until this load uses it. */
    assert_int_equal(build(f, CG_CL_PROG_INDEX, &prog), 1);
    clReleaseProgram(prog);
    const char *names[] = {"old-0.clbin", "old-1.clbin", "old-2.clbin", "new-3.clbin"};
    for (int i = 0; i < 4; ++i)
        cache_file(f->cache, names[i], mib, i < 3 ? 600 - 100 * i : 0);
    cache_file(f->cache, "clblast-sgemm-0.tune", mib / 2, 3000);
    cache_file(f->cache, "ew-0.clbin.tmp.2147483646.0", 100, 3000);   /* no such pid */
    snprintf(cmd, sizeof cmd, "cd '%s' && ls index-*.clbin", f->cache);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    assert_non_null(fgets(index_bin, sizeof index_bin, p));
    pclose(p);
    index_bin[strcspn(index_bin, "\n")] = '\0';

    /* A new program is written; the cap leaves room for about two more. */
    setenv("CLGRAD_CACHE_MAX_MB", "3", 1);
    const char *src = "__kernel void cap_probe(__global float *x) { x[0] = 2.0f; }\n";
    char options[256], err[CG_CL_ERR_LEN] = "";
    int from_cache = -1;
    cg_cl_build_options(&f->dev, CG_CL_PROG_EW, options, sizeof options);
    cg_status st = cg_cl_program_build(&f->dev, "cap", src, options, &prog, &from_cache, err,
                                       sizeof err);
    unsetenv("CLGRAD_CACHE_MAX_MB");
    assert_int_equal(st, CG_OK);
    assert_int_equal(from_cache, 0);
    clReleaseProgram(prog);
    snprintf(cmd, sizeof cmd, "ls -l --time-style=+%%s '%s'", f->cache);
    assert_int_equal(system(cmd), 0);
    assert_false(cache_has(f->cache, "old-0.clbin"));   /* least recently used */
    assert_false(cache_has(f->cache, "old-1.clbin"));
    assert_true(cache_has(f->cache, "new-3.clbin"));
    assert_true(cache_has(f->cache, index_bin));        /* used by the load above */
    assert_true(cache_has(f->cache, "clblast-sgemm-0.tune"));
    assert_false(cache_has(f->cache, "ew-0.clbin.tmp.2147483646.0"));
    snprintf(cmd, sizeof cmd,
             "test $(cat '%s'/*.clbin | wc -c) -le %zu && ls '%s' | grep -q '^cap-.*\\.clbin$'",
             f->cache, 3 * mib, f->cache);
    assert_int_equal(system(cmd), 0);
    /* The call the plugin makes, directly: a cap below one file keeps
     * only the file named. */
    assert_true(cg_cl_cache_trim(f->cache, 1, index_bin) >= 1);
    assert_true(cache_has(f->cache, index_bin));
    assert_false(cache_has(f->cache, "new-3.clbin"));
}

/* A compile error names the program and carries the build log. */
static void test_build_error_has_log(void **state)
{
    struct fx *f = *state;
    char err[CG_CL_ERR_LEN] = "";
    cl_program prog = NULL;
    int from_cache = -1;
    const char *src = "__kernel void broken(__global float *x) { x[0] = undefined_name; }\n";
    cg_status st = cg_cl_program_build(&f->dev, "broken", src, "", &prog, &from_cache, err,
                                       sizeof err);
    assert_int_equal(st, CG_STATUS_BACKEND_ERROR);
    assert_null(prog);
    assert_non_null(strstr(err, "clBuildProgram(broken"));
    assert_non_null(strstr(err, "CL_BUILD_PROGRAM_FAILURE (-11)"));
    assert_non_null(strstr(err, "undefined_name"));
}

static void test_error_names(void **state)
{
    (void)state;
    assert_string_equal(cg_cl_error_name(CL_SUCCESS), "CL_SUCCESS");
    assert_string_equal(cg_cl_error_name(-5), "CL_OUT_OF_RESOURCES");
    assert_string_equal(cg_cl_error_name(-72), "CL_MAX_SIZE_RESTRICTION_EXCEEDED");
    assert_string_equal(cg_cl_error_name(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
    assert_string_equal(cg_cl_error_name(-25), "CL_UNKNOWN_ERROR");
    for (int c = 0; c >= -72; --c)
        if (c > -20 || c < -29)
            assert_string_not_equal(cg_cl_error_name(c), "CL_UNKNOWN_ERROR");
    assert_string_equal(cg_cl_clblast_status_name(-2050), "CLBlastInsufficientMemoryTemp");
    assert_string_equal(cg_cl_clblast_status_name(-1016), "CLBlastInvalidLeadDimA");
    assert_string_equal(cg_cl_clblast_status_name(-54), "CL_INVALID_WORK_GROUP_SIZE");
    char err[128];
    assert_int_equal(cg_cl_fail(err, sizeof err, "clFinish(q)", -5), CG_STATUS_BACKEND_ERROR);
    assert_string_equal(err, "clFinish(q): CL_OUT_OF_RESOURCES (-5)");
    assert_int_equal(cg_cl_fail(err, sizeof err, "x", -4), CG_STATUS_OUT_OF_MEMORY);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_then_cache),
        cmocka_unit_test(test_cache_key_covers_driver),
        cmocka_unit_test(test_damaged_cache_falls_back),
        cmocka_unit_test(test_cache_size_cap),
        cmocka_unit_test(test_build_error_has_log),
        cmocka_unit_test(test_error_names),
    };
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("cl_programs", tests, setup, teardown);
}
