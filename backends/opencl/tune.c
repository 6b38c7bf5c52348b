/*
 * backends/opencl/tune.c — CLBlast SGEMM parameters tuned for the device at
 * hand, stored in the clgrad cache folder and applied at backend open.
 *
 * CLBlast picks its Xgemm kernel's tile sizes from a database of devices it
 * was tuned on; for a device it does not know (PoCL's cpu driver, most
 * integrated GPUs) it falls back to generic defaults, which on PoCL with two
 * cores give ~5-14 GFLOP/s at N=1024. cg_cl_tune_gemm() runs a bounded
 * search instead of CLBlast's CLTune-based tuners (not packaged by Debian):
 *
 *   stage 1  a fixed list of structurally different configurations (work-
 *            group shape, tile per work-item, vector widths, local memory);
 *   stage 2  the best of stage 1 with its k-loop parameters (KWG, KWI) and
 *            strided access (STRM, STRN) varied one at a time;
 *   stage 3  while the time budget lasts, the list meant for the other
 *            kind of device (GPU-style on a CPU and the reverse);
 *   final    the four fastest timed three times more, alternately (the
 *            driver's binary cache makes that cheap), ranked by those;
 *   switch   with the winner, where CLBlast should change from its direct
 *            GEMM kernel (small sizes) to the tuned one (tune_threshold);
 *
 * each one compiled (CLBlast rebuilds its GEMM program after
 * CLBlastOverrideParameters and a cache clear), run once as warm-up, its
 * full result compared with the baseline's, then timed (best of a few
 * runs). Every configuration passes CLBlast's own tuner constraints
 * (cg_cl_gemm_params_check). The baseline (CLBlast's current parameters)
 * is itself checked at sampled entries against a float64 host product, and
 * the winner is checked again on odd sizes and transposed operands before
 * it is stored: a wrong configuration is never saved.
 *
 * The result goes to <cache>/clblast-sgemm-<key>.tune, a small text file
 * whose key hashes the device name, driver version, platform and CLBlast
 * version; the file repeats them in full and load() compares them, so a
 * driver or CLBlast update makes it a miss. cg_cl_tune_apply() (called by
 * opencl.c at open) passes a stored result to CLBlastOverrideParameters.
 * CLGRAD_CLBLAST_TUNE=0 skips that (for side-by-side measurements);
 * CLGRAD_VERBOSE=1 logs what was applied or why not.
 *
 * Parameter meanings and constraints: CLBlast's src/kernels/level3/
 * xgemm_part1.opencl and src/tuning/kernels/xgemm.hpp (1.5.x).
 */
#include "cl_backend.h"

#include <clblast_c.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CG_TUNE_MAGIC "clgrad-clblast-tune 1"
#define CG_STR2(x) #x
#define CG_STR(x) CG_STR2(x)
#define CG_CLBLAST_VERSION                                                        \
    CG_STR(CLBLAST_VERSION_MAJOR) "." CG_STR(CLBLAST_VERSION_MINOR) "." CG_STR( \
        CLBLAST_VERSION_PATCH)

/* CG_CL_TRY for an error buffer given as pointer and length. */
#define CG_CL_TRY_LEN(errbuf, errlen, call)                                   \
    do {                                                                      \
        cl_int cg_rc_ = (call);                                               \
        if (cg_rc_ != CL_SUCCESS)                                             \
            return cg_cl_fail((errbuf), (errlen), #call, cg_rc_);             \
    } while (0)

/* In the order of enum cg_cl_gemm_param (cl_backend.h). */
const char *const cg_cl_gemm_param_names[CG_CL_GEMM_NPARAMS] = {
    "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB",
    "NDIMC", "NWG", "SA", "SB", "STRM", "STRN", "VWM", "VWN",
};

const char *cg_cl_clblast_version(void)
{
    return CG_CLBLAST_VERSION;
}

static double tune_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int tune_verbose(void)
{
    return cg_cl_env_bool("CLGRAD_VERBOSE", 0);
}

/* ---- parameters ------------------------------------------------------ */

static int is_pow2(size_t x)
{
    return x != 0 && (x & (x - 1)) == 0;
}

int cg_cl_gemm_params_check(const struct cg_cl_gemm_params *p, size_t max_wg,
                            size_t local_mem, char *why, size_t len)
{
    const size_t *v = p->v;
#define CG_BAD(...) (snprintf(why, len, __VA_ARGS__), 0)
    for (int i = 0; i < CG_CL_GEMM_NPARAMS; ++i)
        if (v[i] > 4096)
            return CG_BAD("%s = %zu is out of range", cg_cl_gemm_param_names[i], v[i]);
    if (v[CG_GP_GEMMK] != 0 || v[CG_GP_KREG] != 1)
        return CG_BAD("only GEMMK=0 with KREG=1 is searched");
    for (int i = CG_GP_KWG; i <= CG_GP_NWG; ++i)
        if (!is_pow2(v[i]))
            return CG_BAD("%s = %zu is not a power of two", cg_cl_gemm_param_names[i], v[i]);
    if (v[CG_GP_SA] > 1 || v[CG_GP_SB] > 1 || v[CG_GP_STRM] > 1 || v[CG_GP_STRN] > 1)
        return CG_BAD("SA, SB, STRM and STRN are 0 or 1");
    if (v[CG_GP_VWM] == 0 || v[CG_GP_VWM] > 8 || !is_pow2(v[CG_GP_VWM]) ||
        v[CG_GP_VWN] == 0 || v[CG_GP_VWN] > 8 || !is_pow2(v[CG_GP_VWN]))
        return CG_BAD("VWM and VWN are 1, 2, 4 or 8");
    const size_t mwg = v[CG_GP_MWG], nwg = v[CG_GP_NWG], kwg = v[CG_GP_KWG];
    const size_t mdimc = v[CG_GP_MDIMC], ndimc = v[CG_GP_NDIMC];
    const size_t mdima = v[CG_GP_MDIMA], ndimb = v[CG_GP_NDIMB];
    /* Whole vectors per work-item, and the reshaped loads of A and B. */
    if (mwg % (mdimc * v[CG_GP_VWM]) != 0)
        return CG_BAD("MWG %zu is not a multiple of MDIMC*VWM", mwg);
    if (nwg % (ndimc * v[CG_GP_VWN]) != 0)
        return CG_BAD("NWG %zu is not a multiple of NDIMC*VWN", nwg);
    if (mwg % (mdima * v[CG_GP_VWM]) != 0)
        return CG_BAD("MWG %zu is not a multiple of MDIMA*VWM", mwg);
    if (nwg % (ndimb * v[CG_GP_VWN]) != 0)
        return CG_BAD("NWG %zu is not a multiple of NDIMB*VWN", nwg);
    if (kwg % v[CG_GP_KWI] != 0)
        return CG_BAD("KWG %zu is not a multiple of KWI", kwg);
    /* KDIMA = MDIMC*NDIMC/MDIMA rows of the A tile per load step. */
    if ((mdimc * ndimc) % mdima != 0 || kwg % ((mdimc * ndimc) / mdima) != 0)
        return CG_BAD("KWG %zu is not a multiple of MDIMC*NDIMC/MDIMA", kwg);
    if ((mdimc * ndimc) % ndimb != 0 || kwg % ((mdimc * ndimc) / ndimb) != 0)
        return CG_BAD("KWG %zu is not a multiple of MDIMC*NDIMC/NDIMB", kwg);
    if (mdimc * ndimc > max_wg)
        return CG_BAD("work-group %zu x %zu exceeds the device's %zu", mdimc, ndimc, max_wg);
    size_t lmem = (v[CG_GP_SA] * kwg * mwg + v[CG_GP_SB] * kwg * nwg) * sizeof(float);
    if (lmem > local_mem)
        return CG_BAD("needs %zu bytes of local memory, the device has %zu", lmem, local_mem);
#undef CG_BAD
    return 1;
}

void cg_cl_gemm_params_format(const struct cg_cl_gemm_params *p, char *out, size_t len)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < CG_CL_GEMM_NPARAMS && used < len; ++i) {
        int w = snprintf(out + used, len - used, "%s%s=%zu", i ? " " : "",
                         cg_cl_gemm_param_names[i], p->v[i]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* Parses "NAME=V NAME=V ..." naming every parameter once; 0 on error. */
static int params_parse(const char *s, struct cg_cl_gemm_params *p)
{
    int seen = 0;
    memset(p, 0, sizeof *p);
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '\0' || *s == '\n')
            break;
        char name[16];
        unsigned long val;
        int used = 0;
        if (sscanf(s, "%15[A-Z]=%lu%n", name, &val, &used) != 2)
            return 0;
        int i = 0;
        while (i < CG_CL_GEMM_NPARAMS && strcmp(name, cg_cl_gemm_param_names[i]) != 0)
            i++;
        if (i == CG_CL_GEMM_NPARAMS || (seen & (1 << i)))
            return 0;
        seen |= 1 << i;
        p->v[i] = val;
        s += used;
    }
    return seen == (1 << CG_CL_GEMM_NPARAMS) - 1;
}

/* A configuration from the values in parameter order. */
static struct cg_cl_gemm_params cg_P(size_t kwg, size_t kwi, size_t mdima, size_t mdimc,
                                     size_t mwg, size_t ndimb, size_t ndimc, size_t nwg,
                                     size_t sa, size_t sb, size_t strm, size_t strn,
                                     size_t vwm, size_t vwn)
{
    struct cg_cl_gemm_params p = {{0, 1, kwg, kwi, mdima, mdimc, mwg, ndimb, ndimc, nwg, sa, sb,
                                   strm, strn, vwm, vwn}};
    return p;
}

#define CG_TUNE_NCPU 7
#define CG_TUNE_NGPU 6

/* Stage 1 (and 3). CPU-style first (small work-groups, a large register tile per
 * work-item in whole float8/float4 vectors: PoCL runs a work-group as a
 * loop on one core, so few work-items with much work each keeps the loop
 * overhead low), then GPU-style ones (larger groups, local memory). The
 * order matters only when the time budget runs out. */
int cg_cl_tune_candidates(int cpu, struct cg_cl_gemm_params *out, int cap)
{
    /*              KWG KWI MDIMA MDIMC MWG NDIMB NDIMC NWG SA SB STRM STRN VWM VWN */
    const struct cg_cl_gemm_params cpu_list[] = {
        cg_P(16, 2, 8, 8, 128, 8, 8, 64, 0, 0, 0, 0, 8, 8),
        cg_P(16, 2, 8, 8, 64, 4, 4, 64, 0, 0, 0, 0, 8, 8),
        cg_P(16, 2, 8, 8, 128, 8, 8, 128, 0, 0, 0, 0, 8, 8),
        cg_P(16, 2, 4, 4, 32, 4, 4, 64, 0, 0, 0, 0, 8, 8),
        cg_P(32, 2, 8, 8, 64, 8, 8, 64, 1, 1, 0, 0, 8, 8),
        cg_P(16, 2, 8, 8, 128, 4, 4, 64, 0, 0, 0, 0, 8, 8),
        cg_P(32, 2, 8, 8, 128, 8, 8, 128, 1, 1, 0, 0, 8, 8),
    };
    const struct cg_cl_gemm_params gpu_list[] = {
        cg_P(32, 2, 16, 16, 64, 16, 16, 64, 1, 1, 0, 0, 2, 2),
        cg_P(16, 2, 16, 16, 128, 16, 16, 128, 1, 1, 1, 0, 4, 4),
        cg_P(16, 2, 8, 8, 64, 8, 8, 64, 1, 1, 1, 1, 4, 4),
        cg_P(32, 2, 16, 8, 64, 8, 16, 64, 1, 1, 0, 0, 4, 2),
        cg_P(16, 2, 32, 16, 128, 16, 16, 128, 1, 1, 1, 1, 4, 4),
        cg_P(16, 2, 8, 8, 32, 8, 8, 32, 0, 0, 0, 0, 1, 1),
    };
    const int ncpu = CG_TUNE_NCPU, ngpu = CG_TUNE_NGPU;
    _Static_assert(sizeof cpu_list / sizeof cpu_list[0] == CG_TUNE_NCPU, "cpu list");
    _Static_assert(sizeof gpu_list / sizeof gpu_list[0] == CG_TUNE_NGPU, "gpu list");
    int n = 0;
    for (int i = 0; i < ncpu + ngpu && n < cap; ++i) {
        int j = cpu ? i : (i + ngpu) % (ncpu + ngpu);   /* GPU list first on a GPU */
        out[n++] = j < ncpu ? cpu_list[j] : gpu_list[j - ncpu];
    }
    return n;
}

/* Only the configurations of the device's own style (stage 1). */
static int tune_candidates_own(int cpu, struct cg_cl_gemm_params *out, int cap)
{
    struct cg_cl_gemm_params all[32];
    int n = cg_cl_tune_candidates(cpu, all, 32), own = cpu ? CG_TUNE_NCPU : CG_TUNE_NGPU;
    if (own > n)
        own = n;
    if (own > cap)
        own = cap;
    memcpy(out, all, (size_t)own * sizeof all[0]);
    return own;
}

/* Stage 2: one parameter of the k loop or the access pattern changed. */
static int tune_neighbours(const struct cg_cl_gemm_params *best, struct cg_cl_gemm_params *out,
                           int cap)
{
    static const struct {
        int param;
        size_t value;
    } moves[] = {
        {CG_GP_KWG, 8},  {CG_GP_KWG, 32}, {CG_GP_KWI, 1}, {CG_GP_KWI, 8},
        {CG_GP_STRM, 1}, {CG_GP_STRN, 1}, {CG_GP_KWG, 64},
    };
    int n = 0;
    for (size_t i = 0; i < sizeof moves / sizeof moves[0] && n < cap; ++i) {
        if (best->v[moves[i].param] == moves[i].value)
            continue;
        out[n] = *best;
        out[n].v[moves[i].param] = moves[i].value;
        n++;
    }
    return n;
}

/* ---- the stored result ------------------------------------------------ */

static uint64_t tune_fnv(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s;; ++p) {
        h ^= *p;
        h *= 0x100000001b3ull;
        if (*p == '\0')
            return h;
    }
}

void cg_cl_tune_path(const struct cg_cl_device *dev, char *out, size_t len)
{
    char dir[1024];
    cg_cl_cache_dir(dir, sizeof dir);
    if (!dir[0]) {
        out[0] = '\0';
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    h = tune_fnv(h, dev->name);
    h = tune_fnv(h, dev->driver);
    h = tune_fnv(h, dev->platform_name);
    h = tune_fnv(h, CG_CLBLAST_VERSION);
    snprintf(out, len, "%s/clblast-sgemm-%016llx.tune", dir, (unsigned long long)h);
}

cg_status cg_cl_tune_save(const struct cg_cl_device *dev, const struct cg_cl_tune_result *r,
                          char *err, size_t len)
{
    char path[1100], dir[1024], tmp[1200], params[512];
    cg_cl_tune_path(dev, path, sizeof path);
    cg_cl_cache_dir(dir, sizeof dir);
    if (!path[0])
        return cg_cl_failf(err, len, CG_STATUS_IO_ERROR,
                           "tune: no cache folder (set CLGRAD_CACHE_DIR or HOME)");
    if (cg_cl_mkdirs(dir) != 0)
        return cg_cl_failf(err, len, CG_STATUS_IO_ERROR, "tune: cannot create %s: %s", dir,
                           strerror(errno));
    /* Private temporary file, then rename(): readers never see half a file. */
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return cg_cl_failf(err, len, CG_STATUS_IO_ERROR, "tune: cannot write %s: %s", tmp,
                           strerror(errno));
    cg_cl_gemm_params_format(&r->params, params, sizeof params);
    fprintf(f, "%s\ndevice %s\ndriver %s\nplatform %s\nclblast %s\nXgemm %s\n", CG_TUNE_MAGIC,
            dev->name, dev->driver, dev->platform_name, CG_CLBLAST_VERSION, params);
    if (r->min_indirect > 0)
        fprintf(f, "GemmRoutine XGEMM_MIN_INDIRECT_SIZE=%zu\n", r->min_indirect);
    fprintf(f, "measured n=%d gflops=%.2f baseline_gflops=%.2f seconds=%.1f tried=%d\n", r->n,
            r->gflops, r->baseline_gflops, r->seconds, r->tried);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cg_cl_failf(err, len, CG_STATUS_IO_ERROR, "tune: cannot write %s: %s", path,
                           strerror(e));
    }
    return CG_OK;
}

/* Reads one line into buf (without '\n'); 0 at EOF or on a long line. */
static int tune_line(FILE *f, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, f))
        return 0;
    size_t n = strlen(buf);
    if (n == 0 || buf[n - 1] != '\n')
        return 0;
    buf[n - 1] = '\0';
    return 1;
}

/* "<key> <value>" with value equal to want. */
static int tune_field(FILE *f, const char *key, const char *want)
{
    char line[600];
    size_t k = strlen(key);
    return tune_line(f, line, sizeof line) && strncmp(line, key, k) == 0 &&
           line[k] == ' ' && strcmp(line + k + 1, want) == 0;
}

cg_status cg_cl_tune_load(const struct cg_cl_device *dev, struct cg_cl_gemm_params *out,
                          size_t *min_indirect, char *err, size_t len)
{
    unsigned long t = 0;
    char path[1100], line[600], why[160];
    cg_cl_tune_path(dev, path, sizeof path);
    FILE *f = path[0] ? fopen(path, "r") : NULL;
    if (!f)
        return cg_cl_failf(err, len, CG_STATUS_IO_ERROR, "tune: no stored result (%s)",
                           path[0] ? path : "no cache folder");
    int ok = tune_line(f, line, sizeof line) && strcmp(line, CG_TUNE_MAGIC) == 0 &&
             tune_field(f, "device", dev->name) && tune_field(f, "driver", dev->driver) &&
             tune_field(f, "platform", dev->platform_name) &&
             tune_field(f, "clblast", CG_CLBLAST_VERSION) &&
             tune_line(f, line, sizeof line) && strncmp(line, "Xgemm ", 6) == 0 &&
             params_parse(line + 6, out);
    /* Optional: the direct/indirect GEMM switch-over (0: CLBlast's own). */
    if (ok && tune_line(f, line, sizeof line) && strncmp(line, "GemmRoutine ", 12) == 0)
        ok = sscanf(line + 12, "XGEMM_MIN_INDIRECT_SIZE=%lu", &t) == 1 && t >= 1 && t <= 8192;
    fclose(f);
    if (min_indirect)
        *min_indirect = ok ? (size_t)t : 0;
    if (!ok)
        return cg_cl_failf(err, len, CG_STATUS_PARSE_ERROR,
                           "tune: %s is damaged or for another device, driver or CLBlast",
                           path);
    size_t max_wg = 0;
    cl_ulong lmem = 0;
    clGetDeviceInfo(dev->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
    clGetDeviceInfo(dev->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL);
    if (!cg_cl_gemm_params_check(out, max_wg, (size_t)lmem, why, sizeof why))
        return cg_cl_failf(err, len, CG_STATUS_PARSE_ERROR, "tune: %s: invalid parameters: %s",
                           path, why);
    return CG_OK;
}

cg_status cg_cl_gemm_params_override(const struct cg_cl_device *dev,
                                     const struct cg_cl_gemm_params *p, char *err, size_t len)
{
    const char *names[CG_CL_GEMM_NPARAMS];
    for (int i = 0; i < CG_CL_GEMM_NPARAMS; ++i)
        names[i] = cg_cl_gemm_param_names[i];
    int rc = (int)CLBlastOverrideParameters(dev->device, "Xgemm", CLBlastPrecisionSingle,
                                            CG_CL_GEMM_NPARAMS, names, p->v);
    if (rc != 0)
        return cg_cl_clblast_fail(err, len, "CLBlastOverrideParameters(Xgemm)", rc);
    return CG_OK;
}

cg_status cg_cl_gemm_threshold_override(const struct cg_cl_device *dev, size_t min_indirect,
                                        char *err, size_t len)
{
    const char *name = "XGEMM_MIN_INDIRECT_SIZE";
    int rc = (int)CLBlastOverrideParameters(dev->device, "GemmRoutine", CLBlastPrecisionSingle,
                                            1, &name, &min_indirect);
    if (rc != 0)
        return cg_cl_clblast_fail(err, len, "CLBlastOverrideParameters(GemmRoutine)", rc);
    return CG_OK;
}

int cg_cl_tune_apply(const struct cg_cl_device *dev)
{
    char err[1400];
    struct cg_cl_gemm_params p;
    size_t t = 0;
    if (!cg_cl_env_bool("CLGRAD_CLBLAST_TUNE", 1))
        return 0;
    if (cg_cl_tune_load(dev, &p, &t, err, sizeof err) != CG_OK ||
        cg_cl_gemm_params_override(dev, &p, err, sizeof err) != CG_OK ||
        (t > 0 && cg_cl_gemm_threshold_override(dev, t, err, sizeof err) != CG_OK)) {
        if (tune_verbose())
            fprintf(stderr, "clgrad opencl: CLBlast GEMM untuned: %s\n", err);
        return 0;
    }
    if (tune_verbose()) {
        char s[512];
        cg_cl_gemm_params_format(&p, s, sizeof s);
        fprintf(stderr, "clgrad opencl: CLBlast GEMM tuned: %s XGEMM_MIN_INDIRECT_SIZE=%zu\n",
                s, t);
    }
    return 1;
}

/* ---- the search ------------------------------------------------------- */

/* Max |c - ref| allowed for a k-term dot product of values in [-1, 1]:
 * float32 summation error grows at most ~k*eps*|terms|; 1e-5*k is ~100x
 * that for k=1024 yet far below the O(1) error of a wrong tile. */
double cg_cl_tune_tolerance(int64_t k)
{
    return 1e-5 * (double)(k > 16 ? k : 16);
}

int64_t cg_cl_tune_compare(const float *c, const float *ref, int64_t count, int64_t k)
{
    const double tol = cg_cl_tune_tolerance(k);
    for (int64_t i = 0; i < count; ++i)
        if (!(fabs((double)c[i] - (double)ref[i]) <= tol))   /* NaN fails too */
            return i;
    return -1;
}

struct cg_tune_ws {
    const struct cg_cl_device *dev;
    cl_command_queue q;
    int n;
    cl_mem a, b, c;
    float *ha, *hb, *hc, *ref;
    char *err;
    size_t err_len;
    FILE *log;
};

static void tune_log(struct cg_tune_ws *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void tune_log(struct cg_tune_ws *w, const char *fmt, ...)
{
    if (!w->log)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(w->log, fmt, ap);
    va_end(ap);
    fflush(w->log);
}

/* C (m, n) = op(A) op(B), row-major, then waits. */
static cg_status tune_sgemm(struct cg_tune_ws *w, int ta, int tb, size_t m, size_t n,
                            size_t k, cl_mem a, cl_mem b, cl_mem c)
{
    size_t lda = ta ? m : k, ldb = tb ? k : n;
    int rc = (int)CLBlastSgemm(CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                               tb ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, 1.0f, a, 0,
                               lda, b, 0, ldb, 0.0f, c, 0, n, &w->q, NULL);
    if (rc != 0)
        return cg_cl_clblast_fail(w->err, w->err_len, "CLBlastSgemm", rc);
    CG_CL_TRY_LEN(w->err, w->err_len, clFinish(w->q));
    return CG_OK;
}

static cg_status tune_download(struct cg_tune_ws *w, cl_mem m, float *dst, size_t count)
{
    CG_CL_TRY_LEN(w->err, w->err_len,
                  clEnqueueReadBuffer(w->q, m, CL_TRUE, 0, count * sizeof(float), dst, 0, NULL,
                                      NULL));
    return CG_OK;
}

/* Runs the current parameters: one warm-up (which compiles after a
 * change), its result into w->hc, then the best time of up to `reps` runs
 * within ~1.5 s. Returns GFLOP/s in *gflops. */
static cg_status tune_measure(struct cg_tune_ws *w, int reps, double *gflops)
{
    const size_t n = (size_t)w->n;
    cg_status st = tune_sgemm(w, 0, 0, n, n, n, w->a, w->b, w->c);
    if (st == CG_OK)
        st = tune_download(w, w->c, w->hc, n * n);
    if (st != CG_OK)
        return st;
    double best = 1e30, t_start = tune_now();
    for (int r = 0; r < reps && (r < 2 || tune_now() - t_start < 1.5); ++r) {
        double t0 = tune_now();
        st = tune_sgemm(w, 0, 0, n, n, n, w->a, w->b, w->c);
        if (st != CG_OK)
            return st;
        double t = tune_now() - t0;
        if (t < best)
            best = t;
    }
    *gflops = 2.0 * (double)n * n * n / best * 1e-9;
    return CG_OK;
}

/* Host float64 product of row-major operands, entry (i, j). */
static double tune_dot(const float *a, const float *b, int ta, int tb, int64_t m, int64_t n,
                       int64_t k, int64_t i, int64_t j)
{
    double s = 0.0;
    for (int64_t p = 0; p < k; ++p) {
        double x = ta ? a[p * m + i] : a[i * k + p];
        double y = tb ? b[j * k + p] : b[p * n + j];
        s += x * y;
    }
    return s;
}

/* The baseline's n x n result against float64 at 512 sampled entries. */
static cg_status tune_check_samples(struct cg_tune_ws *w)
{
    const int64_t n = w->n;
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int t = 0; t < 512; ++t) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int64_t i = (int64_t)((s >> 33) % (uint64_t)n), j = (int64_t)((s >> 13) % (uint64_t)n);
        double want = tune_dot(w->ha, w->hb, 0, 0, n, n, n, i, j);
        if (!(fabs(w->hc[i * n + j] - want) <= cg_cl_tune_tolerance(n)))
            return cg_cl_failf(w->err, w->err_len, CG_STATUS_BACKEND_ERROR,
                               "tune: CLBlast's baseline GEMM is wrong at (%lld, %lld): "
                               "%g, expected %g",
                               (long long)i, (long long)j, w->hc[i * n + j], want);
    }
    return CG_OK;
}

/* The current parameters on odd sizes and transposed operands, whole
 * result against float64: tiles that do not divide the size go through
 * CLBlast's pad/transpose path, which the n x n run never touches. */
static cg_status tune_check_odd(struct cg_tune_ws *w)
{
    const int64_t m = 515, n = 389, k = 333;   /* m*n*k > CLBlast's direct-GEMM limit */
    cg_status st = CG_OK;
    for (int variant = 0; variant < 2 && st == CG_OK; ++variant) {
        int ta = variant, tb = variant;
        cl_int rc;
        cl_mem a = NULL, b = NULL, c = NULL;
        a = clCreateBuffer(w->dev->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                           (size_t)(m * k) * sizeof(float), w->ha, &rc);
        if (rc == CL_SUCCESS)
            b = clCreateBuffer(w->dev->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                               (size_t)(k * n) * sizeof(float), w->hb, &rc);
        if (rc == CL_SUCCESS)
            c = clCreateBuffer(w->dev->context, CL_MEM_READ_WRITE,
                               (size_t)(m * n) * sizeof(float), NULL, &rc);
        if (rc != CL_SUCCESS)
            st = cg_cl_fail(w->err, w->err_len, "clCreateBuffer(tune check)", rc);
        if (st == CG_OK)
            st = tune_sgemm(w, ta, tb, (size_t)m, (size_t)n, (size_t)k, a, b, c);
        if (st == CG_OK)
            st = tune_download(w, c, w->hc, (size_t)(m * n));
        for (int64_t i = 0; st == CG_OK && i < m; ++i)
            for (int64_t j = 0; j < n; ++j) {
                double want = tune_dot(w->ha, w->hb, ta, tb, m, n, k, i, j);
                if (!(fabs(w->hc[i * n + j] - want) <= cg_cl_tune_tolerance(k))) {
                    st = cg_cl_failf(w->err, w->err_len, CG_STATUS_BACKEND_ERROR,
                                     "tune: %s GEMM (%lld x %lld x %lld) wrong at (%lld, %lld)",
                                     ta ? "transposed" : "plain", (long long)m, (long long)n,
                                     (long long)k, (long long)i, (long long)j);
                    break;
                }
            }
        if (a) clReleaseMemObject(a);
        if (b) clReleaseMemObject(b);
        if (c) clReleaseMemObject(c);
    }
    return st;
}

static cg_status tune_ws_init(struct cg_tune_ws *w)
{
    const size_t nn = (size_t)w->n * (size_t)w->n;
    const size_t host = nn > 515 * 389 ? nn : 515 * 389;   /* hc also holds the odd check */
    cl_int rc;
    w->ha = malloc(host * sizeof(float));
    w->hb = malloc(host * sizeof(float));
    w->hc = malloc(host * sizeof(float));
    w->ref = malloc(nn * sizeof(float));
    if (!w->ha || !w->hb || !w->hc || !w->ref)
        return cg_cl_failf(w->err, w->err_len, CG_STATUS_OUT_OF_MEMORY,
                           "tune: out of host memory");
    uint64_t s = 42;
    for (size_t i = 0; i < host; ++i) {   /* uniform in [-1, 1), never all zero */
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        w->ha[i] = (float)((double)(s >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        w->hb[i] = (float)((double)(s >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
    }
    w->q = clCreateCommandQueue(w->dev->context, w->dev->device, 0, &rc);
    if (rc != CL_SUCCESS) {
        w->q = NULL;
        return cg_cl_fail(w->err, w->err_len, "clCreateCommandQueue", rc);
    }
    cl_mem *bufs[3] = {&w->a, &w->b, &w->c};
    float *src[3] = {w->ha, w->hb, NULL};
    for (int i = 0; i < 3; ++i) {
        *bufs[i] = clCreateBuffer(w->dev->context,
                                  CL_MEM_READ_WRITE | (src[i] ? CL_MEM_COPY_HOST_PTR : 0),
                                  nn * sizeof(float), src[i], &rc);
        if (rc != CL_SUCCESS) {
            *bufs[i] = NULL;
            return cg_cl_fail(w->err, w->err_len, "clCreateBuffer(tune)", rc);
        }
    }
    return CG_OK;
}

static void tune_ws_free(struct cg_tune_ws *w)
{
    if (w->a) clReleaseMemObject(w->a);
    if (w->b) clReleaseMemObject(w->b);
    if (w->c) clReleaseMemObject(w->c);
    if (w->q) clReleaseCommandQueue(w->q);
    free(w->ha);
    free(w->hb);
    free(w->hc);
    free(w->ref);
}

/* Compiles, checks and times one configuration. *gflops = 0 when CLBlast
 * rejects it or its result is wrong (logged; the search goes on). */
static cg_status tune_try(struct cg_tune_ws *w, const struct cg_cl_gemm_params *p,
                          double *gflops)
{
    char s[512];
    cg_cl_gemm_params_format(p, s, sizeof s);
    *gflops = 0.0;
    /* The override replaces CLBlast's database entry; clearing its program
     * cache makes the next call compile with it. */
    CLBlastClearCache();
    cg_status st = cg_cl_gemm_params_override(w->dev, p, w->err, w->err_len);
    double t0 = tune_now(), g = 0.0;
    if (st == CG_OK)
        st = tune_measure(w, 4, &g);
    if (st != CG_OK) {
        tune_log(w, "  %-100s rejected: %s\n", s, w->err);
        return st == CG_STATUS_OUT_OF_MEMORY ? st : CG_OK;
    }
    int64_t bad = cg_cl_tune_compare(w->hc, w->ref, (int64_t)w->n * w->n, w->n);
    if (bad >= 0) {
        tune_log(w, "  %-100s WRONG at (%lld, %lld): rejected\n", s,
                 (long long)(bad / w->n), (long long)(bad % w->n));
        return CG_OK;
    }
    *gflops = g;
    tune_log(w, "  %-100s %7.1f GFLOP/s (%.1f s)\n", s, g, tune_now() - t0);
    return CG_OK;
}

/* Best time of a few s x s x s GEMMs with the current settings. */
static cg_status tune_time_size(struct cg_tune_ws *w, size_t sz, double *secs)
{
    double best = 1e30, start = tune_now();
    for (int r = 0; r < 6 && (r < 3 || tune_now() - start < 0.5); ++r) {
        double t0 = tune_now();
        cg_status st = tune_sgemm(w, 0, 0, sz, sz, sz, w->a, w->b, w->c);
        if (st != CG_OK)
            return st;
        if (r > 0 && tune_now() - t0 < best)   /* r == 0 warms up */
            best = tune_now() - t0;
    }
    *secs = best;
    return CG_OK;
}

/* CLBlast runs a GEMM with m*n*k < XGEMM_MIN_INDIRECT_SIZE^3 through its
 * direct kernel (no copies, untuned here) and larger ones through Xgemm.
 * With Xgemm tuned the best switch-over moves: time both paths on cubes
 * and return the smallest size from which the indirect one always wins
 * (0: it never does; keep CLBlast's value). */
static cg_status tune_threshold(struct cg_tune_ws *w, size_t *out)
{
    static const size_t sizes[] = {64, 128, 256, 512};
    enum { NS = sizeof sizes / sizeof sizes[0] };
    double t[2][NS];
    *out = 0;
    for (int mode = 0; mode < 2; ++mode) {   /* 0: all direct, 1: all indirect */
        CLBlastClearCache();
        cg_status st = cg_cl_gemm_threshold_override(w->dev, mode ? 1 : 8192, w->err,
                                                     w->err_len);
        for (int i = 0; i < NS && st == CG_OK; ++i)
            st = sizes[i] <= (size_t)w->n ? tune_time_size(w, sizes[i], &t[mode][i])
                                          : CG_OK;
        if (st != CG_OK)
            return st;
    }
    for (int i = NS - 1; i >= 0; --i) {   /* from the largest down */
        if (sizes[i] > (size_t)w->n)
            continue;
        double flop = 2.0 * (double)(sizes[i] * sizes[i] * sizes[i]);
        tune_log(w, "  %zu^3: direct %.1f, indirect %.1f GFLOP/s\n", sizes[i],
                 flop / t[0][i] * 1e-9, flop / t[1][i] * 1e-9);
        if (t[1][i] >= t[0][i])
            break;
        *out = sizes[i];
    }
    return CG_OK;
}

/* The fastest few configurations so far, fastest first. */
#define CG_TUNE_TOP 4
struct cg_tune_top {
    struct cg_cl_gemm_params p;
    double g;
};

static void tune_top_add(struct cg_tune_top *top, int *n, const struct cg_cl_gemm_params *p,
                         double g)
{
    if (g <= 0.0)
        return;
    int i = *n;
    if (i == CG_TUNE_TOP) {
        if (g <= top[i - 1].g)
            return;
        i--;   /* replaces the slowest */
    } else {
        (*n)++;
    }
    for (; i > 0 && top[i - 1].g < g; --i)
        top[i] = top[i - 1];
    top[i] = (struct cg_tune_top){*p, g};
}

cg_status cg_cl_tune_gemm(const struct cg_cl_device *dev, const struct cg_cl_tune_opts *o,
                          struct cg_cl_tune_result *r, char *err, size_t len)
{
    struct cg_tune_ws w;
    memset(&w, 0, sizeof w);
    memset(r, 0, sizeof *r);
    w.dev = dev;
    w.n = o->n > 0 ? o->n : 1024;
    w.err = err;
    w.err_len = len;
    w.log = o->log;
    r->n = w.n;
    if (w.n < 64 || w.n > 8192 || (w.n & (w.n - 1)) != 0)
        return cg_cl_failf(err, len, CG_STATUS_INVALID_ARGUMENT,
                           "tune: size %d must be a power of two in [64, 8192]", w.n);
    const double t_start = tune_now();
    const double budget = o->budget_s > 0 ? o->budget_s : 240.0;
    size_t max_wg = 0;
    cl_ulong lmem = 0;
    cl_device_type type = 0;
    clGetDeviceInfo(dev->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL);
    clGetDeviceInfo(dev->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof lmem, &lmem, NULL);
    clGetDeviceInfo(dev->device, CL_DEVICE_TYPE, sizeof type, &type, NULL);

    cg_status st = tune_ws_init(&w);
    /* Baseline: CLBlast's current parameters for the device. */
    if (st == CG_OK) {
        CLBlastClearCache();
        st = tune_measure(&w, 4, &r->baseline_gflops);
    }
    if (st == CG_OK)
        st = tune_check_samples(&w);
    if (st != CG_OK) {
        tune_ws_free(&w);
        return st;
    }
    memcpy(w.ref, w.hc, (size_t)w.n * w.n * sizeof(float));
    tune_log(&w, "  %-100s %7.1f GFLOP/s\n", "baseline (CLBlast's own parameters)",
             r->baseline_gflops);

    struct cg_cl_gemm_params cand[32];
    int max = o->max_candidates > 0 ? o->max_candidates : 1000;
    const int cpu = (type & CL_DEVICE_TYPE_CPU) != 0;
    int nc = tune_candidates_own(cpu, cand, 32);
    struct cg_cl_gemm_params best;
    double best_g = 0.0;
    struct cg_tune_top top[CG_TUNE_TOP];
    int ntop = 0;
    char why[160];
    for (int stage = 1; stage <= 3 && st == CG_OK; ++stage) {
        if (stage == 2) {
            if (best_g <= 0.0)
                continue;
            nc = tune_neighbours(&best, cand, 32);
        } else if (stage == 3) {   /* the other device style, if time is left */
            nc = tune_candidates_own(!cpu, cand, 32);
        }
        for (int i = 0; i < nc && st == CG_OK; ++i) {
            if (r->tried >= max || tune_now() - t_start > budget)
                break;
            if (!cg_cl_gemm_params_check(&cand[i], max_wg, (size_t)lmem, why, sizeof why))
                continue;   /* e.g. a work-group larger than the device allows */
            double g;
            st = tune_try(&w, &cand[i], &g);
            r->tried++;
            if (g <= 0.0)
                r->rejected++;
            tune_top_add(top, &ntop, &cand[i], g);
            if (g > best_g) {
                best_g = g;
                best = cand[i];
            }
        }
    }
    /* One timing on a shared machine is noisy, and the leaders were timed
     * at different moments: time them again, alternately (their programs
     * now load from the driver's cache), and rank them by these timings
     * only. A failure or wrong result in any round disqualifies. */
    double again[CG_TUNE_TOP] = {0};
    for (int round = 0; round < 3 && st == CG_OK && ntop > 1; ++round)
        for (int i = 0; i < ntop && st == CG_OK; ++i) {
            double g;
            if (again[i] < 0.0)
                continue;
            tune_log(&w, "again:");
            st = tune_try(&w, &top[i].p, &g);
            again[i] = g <= 0.0 ? -1.0 : (g > again[i] ? g : again[i]);
        }
    for (int i = 0; i < ntop && ntop > 1; ++i)
        top[i].g = again[i] > 0.0 ? again[i] : 0.0;
    best_g = 0.0;
    for (int i = 0; i < ntop; ++i)
        if (top[i].g > best_g) {
            best_g = top[i].g;
            best = top[i].p;
        }
    /* Accept only a clear win that is also right on odd, transposed sizes. */
    if (st == CG_OK && best_g > 1.05 * r->baseline_gflops) {
        CLBlastClearCache();
        st = cg_cl_gemm_params_override(dev, &best, err, len);
        if (st == CG_OK && o->threshold) {
            st = tune_threshold(&w, &r->min_indirect);
            CLBlastClearCache();
            if (st == CG_OK && r->min_indirect > 0)
                st = cg_cl_gemm_threshold_override(dev, r->min_indirect, err, len);
            if (st == CG_OK)
                tune_log(&w, "  XGEMM_MIN_INDIRECT_SIZE: %zu%s\n", r->min_indirect,
                         r->min_indirect ? "" : " (CLBlast's own value kept)");
        }
        if (st == CG_OK)
            st = tune_check_odd(&w);   /* also compiles the final program */
        if (st == CG_OK) {
            r->found = 1;
            r->params = best;
            r->gflops = best_g;
        } else {
            tune_log(&w, "  best configuration failed the odd-size check: %s\n", err);
            r->rejected++;
        }
    }
    CLBlastClearCache();
    r->seconds = tune_now() - t_start;
    tune_ws_free(&w);
    return st == CG_STATUS_BACKEND_ERROR && !r->found ? CG_OK : st;
}

/* ---- a device for the tool and the test -------------------------------- */

cg_status cg_cl_tune_device_open(int index, struct cg_cl_device *d, char *err, size_t len)
{
    cl_platform_id plats[16], pl[64];
    cl_device_id devs[64];
    cl_uint np = 0;
    int n = 0;
    memset(d, 0, sizeof *d);
    cl_int rc = clGetPlatformIDs(16, plats, &np);
    if (rc != CL_SUCCESS || np == 0)
        return cg_cl_failf(err, len, CG_STATUS_DEVICE_NOT_FOUND, "tune: no OpenCL platform");
    /* Numbered over all platforms in order, as the opencl backend does. */
    for (cl_uint p = 0; p < np && p < 16 && n < 64; ++p) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, (cl_uint)(64 - n), devs + n, &nd) !=
            CL_SUCCESS)
            continue;
        for (cl_uint i = 0; i < nd && n < 64; ++i)
            pl[n++] = plats[p];
    }
    if (index < 0 || index >= n)
        return cg_cl_failf(err, len, CG_STATUS_DEVICE_NOT_FOUND,
                           "tune: no OpenCL device %d (%d found)", index, n);
    char pname[128], pver[120], cver[128] = "";
    d->platform = pl[index];
    d->device = devs[index];
    clGetDeviceInfo(d->device, CL_DEVICE_NAME, sizeof d->name, d->name, NULL);
    clGetDeviceInfo(d->device, CL_DRIVER_VERSION, sizeof d->driver, d->driver, NULL);
    pname[0] = pver[0] = '\0';
    clGetPlatformInfo(d->platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL);
    clGetPlatformInfo(d->platform, CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
    snprintf(d->platform_name, sizeof d->platform_name, "%s %s", pname, pver);
    clGetDeviceInfo(d->device, CL_DEVICE_OPENCL_C_VERSION, sizeof cver, cver, NULL);
    int major = 1, minor = 0;
    sscanf(cver, "OpenCL C %d.%d", &major, &minor);
    d->c_version = major * 10 + minor;
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform, 0};
    d->context = clCreateContext(props, 1, &d->device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        d->context = NULL;
        return cg_cl_fail(err, len, "clCreateContext", rc);
    }
    return CG_OK;
}

void cg_cl_tune_device_close(struct cg_cl_device *d)
{
    if (d->context) {
        CLBlastClearCache();   /* its programs hold the context */
        clReleaseContext(d->context);
    }
    d->context = NULL;
}
