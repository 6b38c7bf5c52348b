/*
 * tools/clgrad-tune.c — tunes CLBlast's SGEMM kernel parameters for an
 * OpenCL device and stores them in the clgrad cache folder, where the
 * opencl backend applies them whenever it opens that device
 * (backends/opencl/tune.c has the search and the file format).
 *
 *   clgrad-tune                 search (a few minutes on PoCL), store
 *   clgrad-tune --compare       GFLOP/s with CLBlast's own and the stored
 *                               parameters, side by side
 *   clgrad-tune --show | --forget
 *
 * It links the plugin's core library (cl_core_dep), not libclgrad: tuning
 * needs CLBlast's override call for a raw cl_device_id.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cl_tune.h"
#include "cli.h"

#include <clblast_c.h>

static const int cmp_sizes[] = {256, 512, 1024, 2048};
#define N_CMP ((int)(sizeof cmp_sizes / sizeof cmp_sizes[0]))

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clgrad-tune [--device N] [--size N] [--budget SECONDS] [--max N] [--no-switch]\n"
            "                   [--quiet]\n"
            "       clgrad-tune [--device N] --compare [--rounds R]\n"
            "       clgrad-tune [--device N] --show | --forget\n"
            "\n"
            "Searches CLBlast's SGEMM (Xgemm) kernel parameters for an OpenCL device: a\n"
            "fixed set of configurations that satisfy CLBlast's constraints, then the best\n"
            "one's k-loop and access variants, each compiled, checked against CLBlast's\n"
            "own result and timed on an N x N x N GEMM. The winner must beat CLBlast's\n"
            "own parameters by 5%% and give correct results on odd and transposed sizes;\n"
            "it is then stored in the cache folder ($CLGRAD_CACHE_DIR, else\n"
            "$XDG_CACHE_HOME/clgrad, else ~/.cache/clgrad), keyed by device name, driver\n"
            "version, platform and CLBlast version. The opencl backend applies it with\n"
            "CLBlastOverrideParameters when it opens the device (CLGRAD_CLBLAST_TUNE=0\n"
            "turns that off; CLGRAD_VERBOSE=1 says what was applied). On CPU devices\n"
            "(PoCL) the backend runs GEMM on its own kernels instead (cl/gemm.cl, no\n"
            "tuning needed); CLGRAD_GEMM=clblast selects CLBlast there.\n"
            "\n"
            "  --device N      OpenCL device, numbered as the backend does (default 0)\n"
            "                  (env: CLGRAD_DEVICE)\n"
            "  --size N        GEMM size timed while tuning, a power of two (default 1024)\n"
            "  --budget S      start no new configuration after S seconds (default 240;\n"
            "                  each new configuration compiles CLBlast's GEMM program:\n"
            "                  ~10-20 s on PoCL)\n"
            "  --max N         try at most N configurations\n"
            "  --no-switch     keep CLBlast's own size below which it uses its direct\n"
            "                  (untuned) GEMM kernel; by default the tuner times both paths\n"
            "                  on 64..512 cubes and stores the size from which the tuned\n"
            "                  kernel wins (CLBlast's XGEMM_MIN_INDIRECT_SIZE)\n"
            "  --quiet         no line per configuration\n"
            "  --compare       GFLOP/s at N = 256, 512, 1024, 2048 with CLBlast's own and\n"
            "                  the stored parameters, alternating in separate processes\n"
            "  --rounds R      rounds of --compare (default 3): min / median / max\n"
            "  --show          print the stored result for the device\n"
            "  --forget        delete the stored result for the device\n"
            "  -h, --help      this text\n"
            "  --version       the clgrad version\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return 0;
    *out = (int)v;
    return 1;
}

/* One process of --compare: GFLOP/s (best of a few runs) per size, with
 * the stored parameters applied or not; written to fd as doubles. */
static int compare_child(int device, int tuned, int fd)
{
    struct cg_cl_device d;
    char err[2048];
    double g[N_CMP] = {0};
    if (cg_cl_tune_device_open(device, &d, err, sizeof err) != CG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", err);
        return 1;
    }
    if (tuned && !cg_cl_tune_apply(&d)) {   /* Xgemm and the switch-over size */
        fprintf(stderr, "clgrad-tune: no usable stored result for this device\n");
        cg_cl_tune_device_close(&d);
        return 1;
    }
    cl_int rc;
    cl_command_queue q = clCreateCommandQueue(d.context, d.device, 0, &rc);
    for (int s = 0; s < N_CMP && rc == CL_SUCCESS; ++s) {
        size_t n = (size_t)cmp_sizes[s], bytes = n * n * sizeof(float);
        float *h = malloc(bytes);
        for (size_t i = 0; h && i < n * n; ++i)
            h[i] = (float)((i * 7919u) % 2003u) / 1001.0f - 1.0f;
        cl_mem a = clCreateBuffer(d.context, CL_MEM_COPY_HOST_PTR, bytes, h, &rc);
        cl_mem b = clCreateBuffer(d.context, CL_MEM_COPY_HOST_PTR, bytes, h, &rc);
        cl_mem c = clCreateBuffer(d.context, CL_MEM_READ_WRITE, bytes, NULL, &rc);
        double best = 1e30, start = 0;
        for (int r = 0; r < 8; ++r) {   /* r == 0 warms up (compiles) */
            double t0 = now_s();
            if (r == 1)
                start = t0;
            if (CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, n, n,
                             n, 1.0f, a, 0, n, b, 0, n, 0.0f, c, 0, n, &q, NULL) != 0 ||
                clFinish(q) != CL_SUCCESS) {
                best = 1e30;
                break;
            }
            double t = now_s() - t0;
            if (r > 0 && t < best)
                best = t;
            if (r >= 3 && now_s() - start > 2.0)
                break;
        }
        g[s] = best < 1e30 ? 2.0 * (double)n * n * n / best * 1e-9 : 0.0;
        clReleaseMemObject(a);
        clReleaseMemObject(b);
        clReleaseMemObject(c);
        free(h);
    }
    if (q)
        clReleaseCommandQueue(q);
    cg_cl_tune_device_close(&d);
    return write(fd, g, sizeof g) == (ssize_t)sizeof g ? 0 : 1;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static int compare(int device, int rounds)
{
    double g[2][16][N_CMP];
    for (int r = 0; r < rounds; ++r)
        for (int mode = 0; mode < 2; ++mode) {   /* untuned, tuned, untuned, ... */
            int fds[2];
            if (pipe(fds) != 0)
                return 1;
            fflush(NULL);
            pid_t pid = fork();
            if (pid < 0)
                return 1;
            if (pid == 0) {   /* no OpenCL in the parent before fork */
                close(fds[0]);
                _exit(compare_child(device, mode, fds[1]));
            }
            close(fds[1]);
            ssize_t got = read(fds[0], g[mode][r], sizeof g[mode][r]);
            close(fds[0]);
            int status = 0;
            waitpid(pid, &status, 0);
            if (got != (ssize_t)sizeof g[mode][r] || !WIFEXITED(status) ||
                WEXITSTATUS(status) != 0)
                return 1;
        }
    double load[3] = {0};
    if (getloadavg(load, 3) < 0)
        load[0] = -1;
    printf("SGEMM GFLOP/s, N x N x N, %d round%s (min / median / max), load average %.2f\n",
           rounds, rounds == 1 ? "" : "s", load[0]);
    printf("%6s  %-24s  %-24s  %s\n", "N", "CLBlast's parameters", "tuned", "ratio");
    for (int s = 0; s < N_CMP; ++s) {
        double v[2][16];
        char cell[2][64];
        for (int mode = 0; mode < 2; ++mode) {
            for (int r = 0; r < rounds; ++r)
                v[mode][r] = g[mode][r][s];
            qsort(v[mode], (size_t)rounds, sizeof(double), cmp_double);
            snprintf(cell[mode], sizeof cell[mode], "%.1f / %.1f / %.1f", v[mode][0],
                     v[mode][rounds / 2], v[mode][rounds - 1]);
        }
        double base = v[0][rounds / 2];
        printf("%6d  %-24s  %-24s  %.2fx\n", cmp_sizes[s], cell[0], cell[1],
               base > 0 ? v[1][rounds / 2] / base : 0.0);
    }
    return 0;
}

enum {
    OPT_SIZE = CLI_OPT_TOOL, OPT_BUDGET, OPT_MAX, OPT_ROUNDS, OPT_NO_SWITCH, OPT_QUIET,
    OPT_COMPARE, OPT_SHOW, OPT_FORGET
};

static const struct option long_options[] = {
    CLI_OPTIONS_COMMON,
    {"device", required_argument, NULL, CLI_OPT_DEVICE},
    {"size", required_argument, NULL, OPT_SIZE},
    {"budget", required_argument, NULL, OPT_BUDGET},
    {"max", required_argument, NULL, OPT_MAX},
    {"rounds", required_argument, NULL, OPT_ROUNDS},
    {"no-switch", no_argument, NULL, OPT_NO_SWITCH},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"compare", no_argument, NULL, OPT_COMPARE},
    {"show", no_argument, NULL, OPT_SHOW},
    {"forget", no_argument, NULL, OPT_FORGET},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    cli_prog = "clgrad-tune";
    int device = 0, size = 1024, max = 0, quiet = 0, rounds = 3;
    int do_compare = 0, do_show = 0, do_forget = 0, budget = 240, no_switch = 0;
    const char *env = getenv("CLGRAD_DEVICE");
    if (env && *env && !parse_int(env, 0, 63, &device)) {
        fprintf(stderr, "clgrad-tune: CLGRAD_DEVICE=%s is not a device index\n", env);
        return 2;
    }
    int c;
    while ((c = cli_getopt(argc, argv, "h", long_options)) != -1) {
        const char *a = cli_optname(), *v = optarg;
        switch (c) {
        case 'h': usage(stdout); return 0;
        case CLI_OPT_VERSION: cli_version(CLGRAD_VERSION_STRING); /* no libclgrad here */
        case CLI_OPT_DEVICE: device = (int)cli_int(a, v, 0, 63); break;
        case OPT_SIZE: size = (int)cli_int(a, v, 64, 8192); break;
        case OPT_BUDGET: budget = (int)cli_int(a, v, 1, 86400); break;
        case OPT_MAX: max = (int)cli_int(a, v, 1, 1000); break;
        case OPT_ROUNDS: rounds = (int)cli_int(a, v, 1, 16); break;
        case OPT_NO_SWITCH: no_switch = 1; break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_COMPARE: do_compare = 1; break;
        case OPT_SHOW: do_show = 1; break;
        case OPT_FORGET: do_forget = 1; break;
        }
    }
    if (size & (size - 1))
        cli_usage_error("option '--size': %d is not a power of two", size);
    if (do_compare)
        return compare(device, rounds) == 0 ? 0 : 1;

    struct cg_cl_device d;
    char err[2048], path[1200], params[512];
    if (cg_cl_tune_device_open(device, &d, err, sizeof err) != CG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", err);
        return 1;
    }
    cg_cl_tune_path(&d, path, sizeof path);
    int rc = 0;
    if (do_show || do_forget) {
        struct cg_cl_gemm_params p;
        size_t t = 0;
        if (do_forget) {
            if (path[0] && unlink(path) != 0 && errno != ENOENT) {
                fprintf(stderr, "clgrad-tune: cannot delete %s: %s\n", path, strerror(errno));
                rc = 1;
            } else {
                printf("forgot %s\n", path);
            }
        } else if (cg_cl_tune_load(&d, &p, &t, err, sizeof err) != CG_OK) {
            printf("%s: %s\n", d.name, err);
        } else {
            cg_cl_gemm_params_format(&p, params, sizeof params);
            printf("%s\n  %s\n  Xgemm %s\n", d.name, path, params);
            if (t > 0)
                printf("  GemmRoutine XGEMM_MIN_INDIRECT_SIZE=%zu\n", t);
        }
        cg_cl_tune_device_close(&d);
        return rc;
    }

    struct cg_cl_tune_opts o = {size, (double)budget, max, !no_switch, quiet ? NULL : stdout};
    struct cg_cl_tune_result r;
    printf("tuning CLBlast SGEMM on \"%s\" (%s, CLBlast %s), N=%d, budget %d s\n", d.name,
           d.driver, cg_cl_clblast_version(), size, budget);
    cl_device_type type = 0;
    clGetDeviceInfo(d.device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    if (type & CL_DEVICE_TYPE_CPU)
        printf("note: on a CPU device the opencl backend runs GEMM on its own kernels\n"
               "(cl/gemm.cl), which need no tuning; this result is used with CLGRAD_GEMM=clblast\n");
    fflush(stdout);
    cg_status st = cg_cl_tune_gemm(&d, &o, &r, err, sizeof err);
    if (st != CG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", err);
        rc = 1;
    } else if (!r.found) {
        printf("no configuration beat CLBlast's own parameters (%.1f GFLOP/s) by 5%% "
               "(%d tried, %d rejected, %.0f s); nothing stored\n",
               r.baseline_gflops, r.tried, r.rejected, r.seconds);
    } else if (cg_cl_tune_save(&d, &r, err, sizeof err) != CG_OK) {
        fprintf(stderr, "clgrad-tune: %s\n", err);
        rc = 1;
    } else {
        cg_cl_gemm_params_format(&r.params, params, sizeof params);
        printf("best: %s XGEMM_MIN_INDIRECT_SIZE=%zu%s\n  %.1f GFLOP/s vs %.1f with CLBlast's own parameters (%.2fx); "
               "%d tried, %d rejected, %.0f s\nstored in %s\n",
               params, r.min_indirect, r.min_indirect ? "" : " (CLBlast's)", r.gflops,
               r.baseline_gflops,
               r.baseline_gflops > 0 ? r.gflops / r.baseline_gflops : 0.0, r.tried, r.rejected,
               r.seconds, path);
    }
    cg_cl_tune_device_close(&d);
    return rc;
}
