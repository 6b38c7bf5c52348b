/*
 * tests/test_gemm_tune.c — CLBlast GEMM tuning (backends/opencl/tune.c):
 * the parameter constraints, the stored file (round trip, key mismatch,
 * damage), the result check, a short real search, and GEMMs computed with
 * searched configurations against a float64 host product on odd and
 * transposed sizes.
 *
 * Links the plugin's core library (cl_core_dep) like test_cl_programs.
 * Registered only when the opencl backend is built, in the opencl suite;
 * without an OpenCL device it skips (exit 77), or fails when CI=true.
 * Device: $CLGRAD_DEVICE as an index, else device 0.
 */
#include "harness.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cl_tune.h"

#include <clblast_c.h>

struct fx {
    struct cg_cl_device dev;
    char cache[256];
};

static void skip_or_fail(const char *why)
{
    const char *ci = getenv("CI");
    int in_ci = ci && (strcmp(ci, "true") == 0 || strcmp(ci, "1") == 0);
    fprintf(stderr, "%s: %s\n", in_ci ? "FAIL" : "SKIP", why);
    exit(in_ci ? 1 : 77);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    char err[2048];
    int device = 0;
    const char *env = getenv("CLGRAD_DEVICE");
    if (env && *env)
        device = atoi(env);
    if (cg_cl_tune_device_open(device, &f->dev, err, sizeof err) != CG_OK)
        skip_or_fail(err);
    snprintf(f->cache, sizeof f->cache, "/tmp/clgrad-tune-test-XXXXXX");
    if (!mkdtemp(f->cache))
        return -1;
    setenv("CLGRAD_CACHE_DIR", f->cache, 1);
    unsetenv("CLGRAD_CLBLAST_TUNE");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char path[1200];
    cg_cl_tune_path(&f->dev, path, sizeof path);
    unlink(path);
    rmdir(f->cache);
    cg_cl_tune_device_close(&f->dev);
    free(f);
    return 0;
}

/* A configuration known to satisfy every constraint. */
static struct cg_cl_gemm_params good_params(void)
{
    struct cg_cl_gemm_params p;
    int n = cg_cl_tune_candidates(1, &p, 1);
    assert_int_equal(n, 1);
    return p;
}

static void test_params_check(void **state)
{
    (void)state;
    char why[160];
    struct cg_cl_gemm_params all[32];
    /* Every built-in candidate passes CLBlast's constraints. */
    int n = cg_cl_tune_candidates(1, all, 32);
    assert_true(n >= 8);
    assert_int_equal(cg_cl_tune_candidates(0, all, 32), n);   /* same set, GPU-style first */
    for (int i = 0; i < n; ++i) {
        int ok = cg_cl_gemm_params_check(&all[i], 1024, 32768, why, sizeof why);
        if (!ok)
            fail_msg("candidate %d: %s", i, why);
    }
    struct cg_cl_gemm_params p = good_params();
    p.v[CG_GP_MWG] = p.v[CG_GP_MDIMC] * p.v[CG_GP_VWM] / 2;   /* half a vector per item */
    assert_false(cg_cl_gemm_params_check(&p, 1024, 32768, why, sizeof why));
    assert_non_null(strstr(why, "MWG"));
    p = good_params();
    p.v[CG_GP_KWI] = p.v[CG_GP_KWG] * 2;
    assert_false(cg_cl_gemm_params_check(&p, 1024, 32768, why, sizeof why));
    p = good_params();
    p.v[CG_GP_KWG] = 24;
    assert_false(cg_cl_gemm_params_check(&p, 1024, 32768, why, sizeof why));
    p = good_params();
    assert_false(cg_cl_gemm_params_check(&p, p.v[CG_GP_MDIMC] * p.v[CG_GP_NDIMC] - 1, 32768,
                                         why, sizeof why));
    assert_non_null(strstr(why, "work-group"));
    p = good_params();
    p.v[CG_GP_SA] = p.v[CG_GP_SB] = 1;
    assert_false(cg_cl_gemm_params_check(&p, 1024, 64, why, sizeof why));
    assert_non_null(strstr(why, "local memory"));
    p = good_params();
    p.v[CG_GP_GEMMK] = 1;
    assert_false(cg_cl_gemm_params_check(&p, 1024, 32768, why, sizeof why));
}

static void test_compare_tolerance(void **state)
{
    (void)state;
    float ref[64], c[64];
    uint64_t s = 7;
    th_fill_uniform(&s, ref, 64, -10.0f, 10.0f);
    memcpy(c, ref, sizeof c);
    assert_int_equal(cg_cl_tune_compare(c, ref, 64, 1024), -1);
    c[37] += (float)(0.5 * cg_cl_tune_tolerance(1024));
    assert_int_equal(cg_cl_tune_compare(c, ref, 64, 1024), -1);
    c[41] += 0.5f;   /* what a wrong tile looks like */
    assert_int_equal(cg_cl_tune_compare(c, ref, 64, 1024), 41);
    c[41] = ref[41];
    c[3] = NAN;
    assert_int_equal(cg_cl_tune_compare(c, ref, 64, 1024), 3);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_store_round_trip_and_damage(void **state)
{
    struct fx *f = *state;
    char err[2048], path[1200], text[8192];
    struct cg_cl_tune_result r;
    struct cg_cl_gemm_params back;
    memset(&r, 0, sizeof r);
    r.found = 1;
    r.params = good_params();
    r.n = 1024;
    r.gflops = 30.0;
    r.baseline_gflops = 5.0;
    r.min_indirect = 256;

    /* Nothing stored yet: load fails, apply leaves CLBlast alone. */
    assert_int_not_equal(cg_cl_tune_load(&f->dev, &back, NULL, err, sizeof err), CG_OK);
    assert_int_equal(cg_cl_tune_apply(&f->dev), 0);

    assert_int_equal(cg_cl_tune_save(&f->dev, &r, err, sizeof err), CG_OK);
    cg_cl_tune_path(&f->dev, path, sizeof path);
    assert_non_null(strstr(path, f->cache));
    size_t t = 0;
    assert_int_equal(cg_cl_tune_load(&f->dev, &back, &t, err, sizeof err), CG_OK);
    assert_memory_equal(back.v, r.params.v, sizeof back.v);
    assert_int_equal(t, 256);
    assert_int_equal(cg_cl_tune_apply(&f->dev), 1);
    setenv("CLGRAD_CLBLAST_TUNE", "0", 1);
    assert_int_equal(cg_cl_tune_apply(&f->dev), 0);
    unsetenv("CLGRAD_CLBLAST_TUNE");

    /* Another driver version is another file: a miss. */
    struct cg_cl_device other = f->dev;
    snprintf(other.driver, sizeof other.driver, "%.200s-updated", f->dev.driver);
    assert_int_not_equal(cg_cl_tune_load(&other, &back, NULL, err, sizeof err), CG_OK);

    /* The same file with another driver line inside is rejected. */
    snprintf(text, sizeof text, "%s", read_file(path));
    char *drv = strstr(text, "\ndriver ");
    assert_non_null(drv);
    char damaged[8192];
    snprintf(damaged, sizeof damaged, "%.*s\ndriver 0.0-other%s", (int)(drv - text), text,
             strchr(drv + 1, '\n'));
    write_file(path, damaged);
    assert_int_equal(cg_cl_tune_load(&f->dev, &back, NULL, err, sizeof err), CG_STATUS_PARSE_ERROR);
    assert_non_null(strstr(err, "another device"));

    /* Parameters that break a constraint are rejected, not applied. */
    snprintf(damaged, sizeof damaged, "%s", text);
    char *kwg = strstr(damaged, " KWG=");
    assert_non_null(kwg);
    memcpy(kwg, " KWG=3", 6);   /* "KWG=16" -> "KWG=36", not a power of two */
    write_file(path, damaged);
    assert_int_equal(cg_cl_tune_load(&f->dev, &back, NULL, err, sizeof err), CG_STATUS_PARSE_ERROR);
    assert_non_null(strstr(err, "invalid parameters"));
    assert_int_equal(cg_cl_tune_apply(&f->dev), 0);

    /* A switch-over size out of range. */
    snprintf(damaged, sizeof damaged, "%s", text);
    char *sw = strstr(damaged, "INDIRECT_SIZE=256");
    assert_non_null(sw);
    memcpy(sw, "INDIRECT_SIZE=000", 17);
    write_file(path, damaged);
    assert_int_equal(cg_cl_tune_load(&f->dev, &back, &t, err, sizeof err), CG_STATUS_PARSE_ERROR);

    /* A parameter missing, or a truncated file. */
    snprintf(damaged, sizeof damaged, "%s", text);
    char *vwn = strstr(damaged, " VWN=");
    assert_non_null(vwn);
    vwn[0] = '\n';
    vwn[1] = '\0';
    write_file(path, damaged);
    assert_int_equal(cg_cl_tune_load(&f->dev, &back, NULL, err, sizeof err), CG_STATUS_PARSE_ERROR);
    write_file(path, "clgrad-clblast-tune 1\ndevice ");
    assert_int_equal(cg_cl_tune_load(&f->dev, &back, NULL, err, sizeof err), CG_STATUS_PARSE_ERROR);
    unlink(path);
}

/* A GEMM of odd size through CLBlast with whatever parameters are applied,
 * against float64 on the host. */
static void check_gemm(struct fx *f, int ta, int tb)
{
    const int64_t m = 301, n = 389, k = 515;   /* m*n*k above CLBlast's direct-GEMM limit */
    float *a = malloc((size_t)(m * k) * sizeof(float));
    float *b = malloc((size_t)(k * n) * sizeof(float));
    float *c = malloc((size_t)(m * n) * sizeof(float));
    double *want = malloc((size_t)(m * n) * sizeof(double));
    uint64_t s = 99;
    th_fill_uniform(&s, a, m * k, -1.0f, 1.0f);
    th_fill_uniform(&s, b, k * n, -1.0f, 1.0f);
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
            double acc = 0.0;
            for (int64_t p = 0; p < k; ++p)
                acc += (double)(ta ? a[p * m + i] : a[i * k + p]) *
                       (double)(tb ? b[j * k + p] : b[p * n + j]);
            want[i * n + j] = acc;
        }
    cl_int rc;
    cl_command_queue q = clCreateCommandQueue(f->dev.context, f->dev.device, 0, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    cl_mem da = clCreateBuffer(f->dev.context, CL_MEM_COPY_HOST_PTR, (size_t)(m * k) * 4, a, &rc);
    cl_mem db = clCreateBuffer(f->dev.context, CL_MEM_COPY_HOST_PTR, (size_t)(k * n) * 4, b, &rc);
    cl_mem dc = clCreateBuffer(f->dev.context, CL_MEM_READ_WRITE, (size_t)(m * n) * 4, NULL, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    int st = (int)CLBlastSgemm(CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                               tb ? CLBlastTransposeYes : CLBlastTransposeNo, (size_t)m, (size_t)n,
                               (size_t)k, 1.0f, da, 0, (size_t)(ta ? m : k), db, 0,
                               (size_t)(tb ? k : n), 0.0f, dc, 0, (size_t)n, &q, NULL);
    assert_int_equal(st, 0);
    assert_int_equal(clEnqueueReadBuffer(q, dc, CL_TRUE, 0, (size_t)(m * n) * 4, c, 0, NULL, NULL),
                     CL_SUCCESS);
    th_assert_close(c, want, m * n, 1e-4, 1e-4, ta ? (tb ? "gemm TT" : "gemm TN")
                                                   : (tb ? "gemm NT" : "gemm NN"));
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    clReleaseCommandQueue(q);
    free(a);
    free(b);
    free(c);
    free(want);
}

/* A short real search: two configurations at n=512 (above CLBlast's
 * direct-GEMM limit, so the tuned kernel is the one timed). */
static void test_short_search(void **state)
{
    struct fx *f = *state;
    char err[2048];
    struct cg_cl_tune_opts o = {512, 600.0, 2, 0, NULL};
    struct cg_cl_tune_result r;
    cg_status st = cg_cl_tune_gemm(&f->dev, &o, &r, err, sizeof err);
    if (st != CG_OK)
        fail_msg("tune: %s", err);
    assert_int_equal(r.n, 512);
    assert_int_equal(r.tried, 2);
    assert_true(r.baseline_gflops > 0.0);
    assert_true(r.seconds > 0.0);
    if (r.found) {
        char why[160];
        assert_true(r.gflops > r.baseline_gflops);
        assert_true(cg_cl_gemm_params_check(&r.params, 1u << 20, 1u << 20, why, sizeof why));
        assert_int_equal(cg_cl_tune_save(&f->dev, &r, err, sizeof err), CG_OK);
        struct cg_cl_gemm_params back;
        assert_int_equal(cg_cl_tune_load(&f->dev, &back, NULL, err, sizeof err), CG_OK);
        assert_memory_equal(back.v, r.params.v, sizeof back.v);
    }
}

/* The searched configurations compute correct products, plain and
 * transposed, on sizes their tiles do not divide. */
static void test_candidates_compute_correctly(void **state)
{
    struct fx *f = *state;
    char err[2048];
    struct cg_cl_gemm_params cand[2];
    assert_int_equal(cg_cl_tune_candidates(1, cand, 2), 2);
    for (int i = 0; i < 2; ++i) {
        CLBlastClearCache();
        assert_int_equal(cg_cl_gemm_params_override(&f->dev, &cand[i], err, sizeof err), CG_OK);
        check_gemm(f, 0, 0);
        check_gemm(f, 1, 0);
        check_gemm(f, 0, 1);
    }
    /* An incomplete set is refused by CLBlast, with its status name. */
    const char *names[1] = {"KWG"};
    size_t values[1] = {16};
    int rc = (int)CLBlastOverrideParameters(f->dev.device, "Xgemm", CLBlastPrecisionSingle, 1,
                                            names, values);
    assert_int_not_equal(rc, 0);
    CLBlastClearCache();
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params_check),
        cmocka_unit_test(test_compare_tolerance),
        cmocka_unit_test_setup_teardown(test_store_round_trip_and_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_candidates_compute_correctly, setup, teardown),
    };
    return TH_RUN(tests);
}
