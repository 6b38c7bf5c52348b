/*
 * backends/opencl/program.c — the program table and program builds with an
 * on-disk cache of compiled binaries.
 *
 * Cache files live in cg_cl_cache_dir() as "<program>-<key>.clbin", where
 * key hashes everything the binary depends on: the source, the build
 * options, the device name, the driver version and the platform. A file
 * holds a small header (magic, key, size) and a checksum of the binary, so
 * a stale or damaged file is simply a miss. Writers create a private
 * temporary file and rename() it over the final name, which is atomic on
 * POSIX file systems: concurrent processes never see half a file, so the
 * cache needs no lock. A binary the driver rejects (e.g. after a driver
 * update that kept its version string) falls back to a source build, whose
 * result then replaces the file.
 *
 * CLGRAD_VERBOSE=1 logs each build to stderr: "built from source" or
 * "loaded from cache", with the time taken (a warm run shows only loads).
 */
#include "cl_backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cg_cl_conv.h"
#include "cg_cl_ew.h"
#include "cg_cl_gemm.h"
#include "cg_cl_index.h"
#include "cg_cl_optim.h"
#include "cg_cl_reduce.h"
#include "cg_cl_rnn.h"
#include "cg_cl_seq.h"
#include "cg_cl_norm.h"
#include "cg_cl_softmax.h"

const struct cg_cl_program_desc cg_cl_programs[CG_CL_PROG_COUNT] = {
    [CG_CL_PROG_EW] = {"ew", cg_cl_src_ew},
    [CG_CL_PROG_REDUCE] = {"reduce", cg_cl_src_reduce},
    [CG_CL_PROG_SOFTMAX] = {"softmax", cg_cl_src_softmax},
    [CG_CL_PROG_INDEX] = {"index", cg_cl_src_index},
    [CG_CL_PROG_OPTIM] = {"optim", cg_cl_src_optim},
    [CG_CL_PROG_CONV] = {"conv", cg_cl_src_conv},
    [CG_CL_PROG_RNN] = {"rnn", cg_cl_src_rnn},
    [CG_CL_PROG_SEQ] = {"seq", cg_cl_src_seq},
    [CG_CL_PROG_NORM] = {"norm", cg_cl_src_norm},
    [CG_CL_PROG_GEMM] = {"gemm", cg_cl_src_gemm},
};
_Static_assert(sizeof(cg_cl_programs) / sizeof(cg_cl_programs[0]) == CG_CL_PROG_COUNT,
               "one entry per program");

#define CG_CL_CACHE_MAGIC "CGCLBIN1"
#define CG_CL_CACHE_FORMAT "clgrad-opencl-cache-1"

void cg_cl_build_options(const struct cg_cl_device *dev, enum cg_cl_prog p,
                         char *out, size_t len)
{
    (void)p;
    /* Kernels are OpenCL C 1.2; a 1.1-only compiler gets no -cl-std (the
     * kernels avoid 1.2-only built-ins apart from `static`). No fast-math:
     * the reductions' Kahan compensation and the stable sigmoid need IEEE
     * evaluation order. */
    snprintf(out, len, "%s", dev->c_version >= 12 ? "-cl-std=CL1.2" : "");
}

static int verbose_on(void)
{
    return cg_cl_env_bool("CLGRAD_VERBOSE", 0);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void cg_cl_cache_dir(char *out, size_t len)
{
    const char *d = getenv("CLGRAD_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    out[0] = '\0';
    if (d && *d)
        snprintf(out, len, "%s", d);
    else if (xdg && *xdg)
        snprintf(out, len, "%s/clgrad", xdg);
    else if (home && *home)
        snprintf(out, len, "%s/.cache/clgrad", home);
}

/* FNV-1a, 64-bit, continued from h. */
static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; ++i) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* Two independent 64-bit hashes of the NUL-separated parts (128-bit key). */
static void cache_key(const struct cg_cl_device *dev, const char *source,
                      const char *options, uint64_t key[2])
{
    const char *parts[] = {CG_CL_CACHE_FORMAT, source, options, dev->name,
                           dev->driver, dev->platform_name};
    key[0] = 0xcbf29ce484222325ull;
    key[1] = 0x84222325cbf29ce4ull;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); ++i) {
        size_t n = strlen(parts[i]) + 1;   /* the NUL separates parts */
        key[0] = fnv1a(key[0], parts[i], n);
        key[1] = fnv1a(key[1] ^ 0x9e3779b97f4a7c15ull, parts[i], n);
    }
}

/* mkdir -p; returns 0 on success. */
int cg_cl_mkdirs(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return -1;
    for (char *p = buf + 1; *p; ++p) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return (mkdir(buf, 0755) == 0 || errno == EEXIST) ? 0 : -1;
}

/* Reads a cache file; returns a malloc'd binary (size in *size) or NULL. */
static unsigned char *cache_read(const char *path, const uint64_t key[2],
                                 size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char magic[8];
    uint64_t hdr[3], sum;
    unsigned char *bin = NULL;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CG_CL_CACHE_MAGIC, 8) != 0 ||
        fread(hdr, sizeof hdr, 1, f) != 1 || hdr[0] != key[0] || hdr[1] != key[1] ||
        hdr[2] == 0 || hdr[2] > ((uint64_t)1 << 31))
        goto fail;
    bin = malloc(hdr[2]);
    if (!bin || fread(bin, 1, hdr[2], f) != hdr[2] || fread(&sum, sizeof sum, 1, f) != 1 ||
        sum != fnv1a(0xcbf29ce484222325ull, bin, hdr[2]))
        goto fail;
    fclose(f);
    *size = hdr[2];
    return bin;
fail:
    free(bin);
    fclose(f);
    return NULL;
}

/* Writes a cache file atomically (private temporary + rename). Failure only
 * means the next run compiles again, so it is not an error. */
static int cache_write(const char *dir, const char *path, const uint64_t key[2],
                       const unsigned char *bin, size_t size)
{
    static atomic_uint counter;
    char tmp[4200];
    if (cg_cl_mkdirs(dir) != 0)
        return 0;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(),
             atomic_fetch_add(&counter, 1u));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0)
        return 0;
    FILE *f = fdopen(fd, "wb");
    if (!f) {
        close(fd);
        unlink(tmp);
        return 0;
    }
    uint64_t hdr[3] = {key[0], key[1], size};
    uint64_t sum = fnv1a(0xcbf29ce484222325ull, bin, size);
    int ok = fwrite(CG_CL_CACHE_MAGIC, 1, 8, f) == 8 &&
             fwrite(hdr, sizeof hdr, 1, f) == 1 && fwrite(bin, 1, size, f) == size &&
             fwrite(&sum, sizeof sum, 1, f) == 1;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return 0;
    }
    return 1;
}

/* ---- the cache's size cap -----------------------------------------------
 * The folder would grow without bound (every fused chain shape, every
 * driver update adds binaries), so CLGRAD_CACHE_MAX_MB (default
 * CG_CL_CACHE_MAX_MB) caps its *.clbin files: after a new binary is
 * written, the least recently used go until the total fits, never the one
 * just written. A load refreshes its file's modification time, so that
 * time orders the files by last use. Temporary files of writers that died
 * (NAME.clbin.tmp.PID.N) go too. Tuning results (*.tune) are never
 * evicted: tiny, and minutes to redo. */

struct cache_entry {
    char name[256];
    struct timespec used;
    off_t bytes;
};

static int cache_entry_older(const void *a, const void *b)
{
    const struct cache_entry *x = a, *y = b;
    if (x->used.tv_sec != y->used.tv_sec)
        return x->used.tv_sec < y->used.tv_sec ? -1 : 1;
    return x->used.tv_nsec < y->used.tv_nsec ? -1 : x->used.tv_nsec > y->used.tv_nsec;
}

/* A temporary file whose writer is gone: NAME.clbin.tmp.PID.N, no PID. */
static int cache_tmp_stale(const char *name)
{
    const char *t = strstr(name, ".clbin.tmp.");
    if (!t)
        return 0;
    char *end;
    long pid = strtol(t + strlen(".clbin.tmp."), &end, 10);
    return pid > 0 && *end == '.' && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

/* Reads the folder's binaries into *out (malloc'd); returns their count,
 * -1 when the folder cannot be read. Removes stale temporary files. */
static int cache_list(const char *dir, struct cache_entry **out, uint64_t *total)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0, cap = 0;
    struct cache_entry *v = NULL;
    struct dirent *e;
    char path[4400];
    *total = 0;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (cache_tmp_stale(e->d_name)) {
            unlink(path);
            continue;
        }
        struct stat st;
        if (len < 7 || len >= sizeof v->name || strcmp(e->d_name + len - 6, ".clbin") != 0 ||
            stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            struct cache_entry *g = realloc(v, (size_t)cap * sizeof *v);
            if (!g)
                break;
            v = g;
        }
        memcpy(v[n].name, e->d_name, len + 1);
        v[n].used = st.st_mtim;
        v[n].bytes = st.st_size;
        *total += (uint64_t)st.st_size;
        ++n;
    }
    closedir(d);
    *out = v;
    return n;
}

int cg_cl_cache_trim(const char *dir, uint64_t max_bytes, const char *keep)
{
    struct cache_entry *v = NULL;
    uint64_t total = 0;
    int n = cache_list(dir, &v, &total), removed = 0;
    if (n > 0 && total > max_bytes) {
        qsort(v, (size_t)n, sizeof *v, cache_entry_older);
        char path[4400];
        for (int i = 0; i < n && total > max_bytes; ++i) {
            if (keep && strcmp(v[i].name, keep) == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, v[i].name);
            if (unlink(path) == 0 || errno == ENOENT) {   /* another process's trim */
                total -= (uint64_t)v[i].bytes;
                ++removed;
            }
        }
    }
    free(v);
    return removed;
}

uint64_t cg_cl_cache_max_bytes(void)
{
    return (uint64_t)cg_cl_env_int("CLGRAD_CACHE_MAX_MB", 1, (long long)1 << 30,
                                   CG_CL_CACHE_MAX_MB) << 20;
}

/* Appends the build log of prog to err. */
static void append_log(const struct cg_cl_device *dev, cl_program prog,
                       char *err, size_t err_len)
{
    size_t n = 0, used = strlen(err);
    if (clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &n) !=
            CL_SUCCESS || n == 0 || used + 2 >= err_len)
        return;
    char *log = malloc(n + 1);
    if (!log)
        return;
    if (clGetProgramBuildInfo(prog, dev->device, CL_PROGRAM_BUILD_LOG, n, log, NULL) ==
        CL_SUCCESS) {
        log[n] = '\0';
        snprintf(err + used, err_len - used, "\nbuild log:\n%s", log);
    }
    free(log);
}

static cl_program try_binary(const struct cg_cl_device *dev, const char *options,
                             const unsigned char *bin, size_t size)
{
    cl_int rc, bin_rc;
    cl_program prog = clCreateProgramWithBinary(dev->context, 1, &dev->device, &size,
                                                &bin, &bin_rc, &rc);
    if (rc != CL_SUCCESS || bin_rc != CL_SUCCESS) {
        if (prog)
            clReleaseProgram(prog);
        return NULL;
    }
    if (clBuildProgram(prog, 1, &dev->device, options, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return NULL;
    }
    return prog;
}

/* The binary of a built program (one device), malloc'd, or NULL. */
static unsigned char *program_binary(cl_program prog, size_t *size)
{
    size_t n = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) != CL_SUCCESS ||
        n == 0)
        return NULL;
    unsigned char *bin = malloc(n);
    if (!bin)
        return NULL;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) != CL_SUCCESS) {
        free(bin);
        return NULL;
    }
    *size = n;
    return bin;
}

cg_status cg_cl_program_build(const struct cg_cl_device *dev, const char *name,
                              const char *source, const char *options,
                              cl_program *out, int *from_cache, char *err,
                              size_t err_len)
{
    char dir[4000], path[4096];
    uint64_t key[2];
    double t0 = now_ms();
    *out = NULL;
    *from_cache = 0;
    cg_cl_cache_dir(dir, sizeof dir);
    cache_key(dev, source, options, key);
    if (dir[0])
        snprintf(path, sizeof path, "%s/%s-%016llx%016llx.clbin", dir, name,
                 (unsigned long long)key[0], (unsigned long long)key[1]);

    if (dir[0]) {
        size_t size = 0;
        unsigned char *bin = cache_read(path, key, &size);
        cl_program prog = bin ? try_binary(dev, options, bin, size) : NULL;
        free(bin);
        if (prog) {
            utimensat(AT_FDCWD, path, NULL, 0);   /* used now (the size cap) */
            if (verbose_on())
                fprintf(stderr, "clgrad opencl: program %s: loaded from cache %s (%.1f ms)\n",
                        name, path, now_ms() - t0);
            *out = prog;
            *from_cache = 1;
            return CG_OK;
        }
    }

    cl_int rc;
    size_t len = strlen(source);
    cl_program prog = clCreateProgramWithSource(dev->context, 1, &source, &len, &rc);
    if (rc != CL_SUCCESS) {
        char what[128];
        snprintf(what, sizeof what, "clCreateProgramWithSource(%s)", name);
        return cg_cl_fail(err, err_len, what, rc);
    }
    rc = clBuildProgram(prog, 1, &dev->device, options, NULL, NULL);
    if (rc != CL_SUCCESS) {
        char what[256];
        snprintf(what, sizeof what, "clBuildProgram(%s, \"%s\")", name, options);
        cg_status st = cg_cl_fail(err, err_len, what, rc);
        append_log(dev, prog, err, err_len);
        clReleaseProgram(prog);
        return st;
    }
    if (dir[0]) {
        size_t size = 0;
        unsigned char *bin = program_binary(prog, &size);
        if (bin && cache_write(dir, path, key, bin, size))
            cg_cl_cache_trim(dir, cg_cl_cache_max_bytes(), strrchr(path, '/') + 1);
        free(bin);
    }
    if (verbose_on())
        fprintf(stderr, "clgrad opencl: program %s: built from source (%.1f ms)\n", name,
                now_ms() - t0);
    *out = prog;
    return CG_OK;
}
