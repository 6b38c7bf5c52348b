/*
 * backends/cpu/cpu.c — the cpu reference backend: vtable, device, memory,
 * statistics. The kernels live in cpu_*.c (see cpu.h).
 */
#include "cpu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#if CG_HAVE_OPENBLAS
#include <cblas.h>
#endif

cg_status cg__cpu_error(struct cg_cpu_ctx *c, cg_status status, const char *fmt, ...)
{
    char msg[CG_CPU_ERR_LEN - 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, sizeof c->err, "cpu %s", msg);
    return status;
}

/* ---- bounds checks shared by the kernels ---- */

static int64_t buffer_elems(const struct cg_buffer *b)
{
    return (int64_t)(b->bytes / sizeof(float));
}

cg_status cg__cpu_check_range(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t count,
                              const char *what)
{
    if (count < 0)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: negative count %lld",
                             what, (long long)count);
    if (count == 0) return CG_OK;
    if (!p.buf)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: NULL buffer", what);
    int64_t have = buffer_elems(p.buf);
    if (p.off < 0 || p.off > have || count > have - p.off)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT,
                             "%s: elements [%lld, %lld + %lld) outside a buffer of %lld",
                             what, (long long)p.off, (long long)p.off, (long long)count,
                             (long long)have);
    return CG_OK;
}

int64_t cg__cpu_view_numel(const struct cg_view *v)
{
    int64_t n = 1;
    for (int d = 0; d < v->ndim; d++) n *= v->shape[d];
    return n;
}

cg_status cg__cpu_check_view(struct cg_cpu_ctx *c, const struct cg_view *v,
                             const char *what)
{
    if (!v) return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: NULL view", what);
    if (v->ndim < 0 || v->ndim > CG_MAX_DIMS)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: ndim %d not in [0, %d]",
                             what, v->ndim, CG_MAX_DIMS);
    /* One pass (this runs for every view of every op): the element count,
     * and the lowest and highest element addressed, as strides may be
     * negative or 0. */
    int64_t numel = 1, lo = v->off, hi = v->off;
    for (int d = 0; d < v->ndim; d++) {
        if (v->shape[d] < 0)
            return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: negative dim %d (%lld)",
                                 what, d, (long long)v->shape[d]);
        numel *= v->shape[d];
        if (v->shape[d] == 0) continue; /* empty: nothing addressed */
        int64_t span = (v->shape[d] - 1) * v->strides[d];
        if (span < 0) lo += span; else hi += span;
    }
    if (numel == 0) return CG_OK;
    struct cg_ptr p = {v->buf, lo};
    return cg__cpu_check_range(c, p, hi - lo + 1, what);
}

cg_status cg__cpu_index(struct cg_cpu_ctx *c, float v, int64_t limit, const char *what,
                        int64_t *out)
{
    /* The frontend validates indices; this guards the oracle's memory. */
    /* !(v >= 0) also catches NaN; 2^53 bounds v before the integer cast. */
    bool ok = v >= 0.0f && v < 0x1p53f && v == (float)(int64_t)v &&
              (limit < 0 || (int64_t)v < limit);
    if (!ok)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT,
                             "%s: index %g is not an integer in [0, %lld)", what, (double)v,
                             (long long)limit);
    *out = (int64_t)v;
    return CG_OK;
}

/* ---- device ---- */

/* Copies the value of the first "key<spaces>: value" line of /proc/cpuinfo. */
static bool cpuinfo_field(const char *key, char *dst, size_t len)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[512];
    bool found = false;
    size_t klen = strlen(key);
    while (!found && fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) != 0) continue;
        char *colon = strchr(line + klen, ':');
        if (!colon) continue;
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t') v++;
        v[strcspn(v, "\n")] = '\0';
        snprintf(dst, len, "%s", v);
        found = *v != '\0';
    }
    fclose(f);
    return found;
}

static void cpu_device_info(struct cg_device_info *d)
{
    memset(d, 0, sizeof *d);
    if (!cpuinfo_field("model name", d->name, sizeof d->name))
        snprintf(d->name, sizeof d->name, "cpu");
    if (!cpuinfo_field("vendor_id", d->vendor, sizeof d->vendor))
        snprintf(d->vendor, sizeof d->vendor, "unknown");
#if CG_HAVE_OPENBLAS
    snprintf(d->version, sizeof d->version, "clgrad cpu reference backend; %s",
             openblas_get_config());
#else
    snprintf(d->version, sizeof d->version,
             "clgrad cpu reference backend; blocked C GEMM (no OpenBLAS)");
#endif
    d->type = CG_DEVICE_CPU;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    d->global_mem_bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : 0;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    d->compute_units = ncpu > 0 ? (uint32_t)ncpu : 1;
}

static cg_status cpu_list_devices(struct cg_device_info *out, int max, int *count,
                                  char *err, size_t err_len)
{
    (void)err;
    (void)err_len;
    if (out && max > 0) cpu_device_info(&out[0]);
    *count = 1;
    return CG_OK;
}

static cg_status cpu_open(int device, void **ctx, char *err, size_t err_len)
{
    *ctx = NULL;
    if (device != 0) {
        snprintf(err, err_len, "cpu: no device %d (the cpu backend has one device, 0)",
                 device);
        return CG_STATUS_DEVICE_NOT_FOUND;
    }
    struct cg_cpu_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, err_len, "cpu: out of memory opening the backend");
        return CG_STATUS_OUT_OF_MEMORY;
    }
    c->nthreads = cg__cpu_threads_from_env();
    *ctx = c;
    return CG_OK;
}

/* Frees every idle pooled buffer. */
static void pool_drain(struct cg_cpu_ctx *c)
{
    for (int k = 0; k < CG_CPU_POOL_CLASSES; k++) {
        while (c->pool[k]) {
            struct cg_buffer *b = c->pool[k];
            c->pool[k] = b->next;
            c->stats.bytes_reserved -= b->cap;
            free(b->data);
            free(b);
        }
    }
    c->pool_idle_bytes = 0;
}

static void cpu_close(void *ctx)
{
    struct cg_cpu_ctx *c = ctx;
    if (c) {
        cg__cpu_pool_stop(c);
#if CG_HAVE_ONEDNN
        cg__cpu_dconv_release(c);
#endif
        pool_drain(c);
        free(c->scratch);
    }
    free(c);
}

static const char *cpu_last_error(void *ctx)
{
    return ((struct cg_cpu_ctx *)ctx)->err;
}

/* ---- memory ---- */

/* The pool's size class of a request and the capacity it gets: 64 bytes,
 * then four classes per power of two (2^e + j 2^(e-2), j = 1..4), up to
 * CG_CPU_POOL_MAX_BYTES; -1 (capacity = bytes rounded to CG_CPU_ALIGN)
 * above that. */
static int size_class(size_t bytes, size_t *cap)
{
    if (bytes <= 64) {
        *cap = 64;
        return 0;
    }
    if (bytes > CG_CPU_POOL_MAX_BYTES) {
        *cap = (bytes + CG_CPU_ALIGN - 1) / CG_CPU_ALIGN * CG_CPU_ALIGN;
        return -1;
    }
    int e = 6;                                /* 2^e < bytes <= 2^(e+1) */
    while (((size_t)2 << e) < bytes) e++;
    size_t step = (size_t)1 << (e - 2);
    size_t j = (bytes - ((size_t)1 << e) + step - 1) / step;    /* 1..4 */
    size_t c = ((size_t)1 << e) + j * step;
    /* aligned_alloc wants a multiple of the alignment. */
    *cap = (c + CG_CPU_ALIGN - 1) / CG_CPU_ALIGN * CG_CPU_ALIGN;
    return 1 + (e - 6) * 4 + (int)(j - 1);
}

_Static_assert(1 + (39 - 6) * 4 + 3 < CG_CPU_POOL_CLASSES,
               "CG_CPU_POOL_CLASSES must cover classes up to CG_CPU_POOL_MAX_BYTES (2^40)");

static cg_status cpu_alloc(void *ctx, size_t bytes, struct cg_buffer **out)
{
    struct cg_cpu_ctx *c = ctx;
    *out = NULL;
    size_t cap;
    int cls = bytes > 0 ? size_class(bytes, &cap) : -1;
    struct cg_buffer *b = NULL;
    if (cls >= 0 && c->pool[cls]) {
        b = c->pool[cls];                     /* a pool hit: no malloc */
        c->pool[cls] = b->next;
        c->pool_idle_bytes -= b->cap;
    } else {
        b = calloc(1, sizeof *b);
        if (!b) return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY, "alloc: buffer header");
        b->cls = cls;
        b->cap = bytes > 0 ? cap : 0;
        if (bytes > 0 && cap >= bytes && !(b->data = aligned_alloc(CG_CPU_ALIGN, cap)) &&
            c->pool_idle_bytes > 0) {
            pool_drain(c);   /* idle buffers of other classes: give them back, retry */
            b->data = aligned_alloc(CG_CPU_ALIGN, cap);
        }
        if (bytes > 0 && (cap < bytes || !b->data)) {
            free(b);
            return cg__cpu_error(c, CG_STATUS_OUT_OF_MEMORY, "alloc: %zu bytes", bytes);
        }
        c->stats.device_allocs++;
        c->stats.bytes_reserved += b->cap;
    }
    b->bytes = bytes;
    b->next = NULL;
    c->stats.bytes_in_use += bytes;
    if (c->stats.bytes_in_use > c->stats.bytes_peak)
        c->stats.bytes_peak = c->stats.bytes_in_use;
    if (c->stats.bytes_in_use > c->pool_high_water)
        c->pool_high_water = c->stats.bytes_in_use;
    *out = b;
    return CG_OK;
}

static void cpu_release(void *ctx, struct cg_buffer *buf)
{
    struct cg_cpu_ctx *c = ctx;
    if (!buf) return;
    c->stats.bytes_in_use -= buf->bytes;
    /* The idle cap (cpu.h): the floor, or the most this context has ever
     * had in use at once, whichever is larger. */
    size_t cap = c->pool_high_water > CG_CPU_POOL_MAX_IDLE ? c->pool_high_water
                                                          : CG_CPU_POOL_MAX_IDLE;
    if (buf->cls >= 0 && buf->cap <= cap && c->pool_idle_bytes <= cap - buf->cap) {
        buf->next = c->pool[buf->cls];
        c->pool[buf->cls] = buf;
        c->pool_idle_bytes += buf->cap;
        return;
    }
    c->stats.bytes_reserved -= buf->cap;
    free(buf->data);
    free(buf);
}

/* Checks that [off, off + bytes) lies inside buf. */
static cg_status check_bytes(struct cg_cpu_ctx *c, const struct cg_buffer *buf, size_t off,
                             size_t bytes, const char *what)
{
    if (bytes == 0) return CG_OK;
    if (!buf) return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: NULL buffer", what);
    if (off > buf->bytes || bytes > buf->bytes - off)
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT,
                             "%s: bytes [%zu, %zu + %zu) outside a buffer of %zu", what, off,
                             off, bytes, buf->bytes);
    return CG_OK;
}

static cg_status cpu_upload(void *ctx, struct cg_buffer *dst, size_t off_bytes,
                            const void *src, size_t bytes)
{
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_bytes(c, dst, off_bytes, bytes, "upload");
    if (s != CG_OK) return s;
    if (bytes) memcpy((char *)dst->data + off_bytes, src, bytes);
    c->stats.uploads++;
    c->stats.upload_bytes += bytes;
    return CG_OK;
}

static cg_status cpu_download(void *ctx, void *dst, struct cg_buffer *src, size_t off_bytes,
                              size_t bytes)
{
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_bytes(c, src, off_bytes, bytes, "download");
    if (s != CG_OK) return s;
    if (bytes) memcpy(dst, (const char *)src->data + off_bytes, bytes);
    c->stats.downloads++;
    c->stats.download_bytes += bytes;
    return CG_OK;
}

static cg_status cpu_copy(void *ctx, struct cg_buffer *dst, size_t dst_off_bytes,
                          struct cg_buffer *src, size_t src_off_bytes, size_t bytes)
{
    struct cg_cpu_ctx *c = ctx;
    cg_status s = check_bytes(c, dst, dst_off_bytes, bytes, "copy dst");
    if (s == CG_OK) s = check_bytes(c, src, src_off_bytes, bytes, "copy src");
    if (s != CG_OK) return s;
    /* memmove: a copy within one buffer may overlap. */
    if (bytes)
        memmove((char *)dst->data + dst_off_bytes,
                (const char *)src->data + src_off_bytes, bytes);
    c->stats.launches++;
    return CG_OK;
}

/* ---- sync and stats ---- */

static cg_status cpu_finish(void *ctx)
{
    (void)ctx;  /* every primitive completes before it returns */
    return CG_OK;
}

static void cpu_get_stats(void *ctx, struct cg_backend_stats *out)
{
    *out = ((struct cg_cpu_ctx *)ctx)->stats;
}

static void cpu_reset_stats(void *ctx)
{
    struct cg_cpu_ctx *c = ctx;
    struct cg_backend_stats kept = {
        .bytes_in_use = c->stats.bytes_in_use,
        .bytes_peak = c->stats.bytes_in_use,
        .bytes_reserved = c->stats.bytes_reserved,
    };
    c->stats = kept;
}

static const struct cg_backend_i cpu_backend = {
    .abi_version = CG_BACKEND_ABI_VERSION,
    .struct_size = sizeof(struct cg_backend_i),
    .name = "cpu",
    .description = "reference backend: plain C loops, OpenBLAS GEMM",
    .list_devices = cpu_list_devices,
    .preferred_device = NULL,
    .open = cpu_open,
    .close = cpu_close,
    .last_error = cpu_last_error,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .upload = cpu_upload,
    .download = cpu_download,
    .copy = cpu_copy,
    .fill = cg__cpu_fill,
    .ew = cg__cpu_ew,
    .reduce = cg__cpu_reduce,
    .gemm = cg__cpu_gemm,
    .softmax = cg__cpu_softmax,
    .softmax_backward = cg__cpu_softmax_backward,
    .index_rows = cg__cpu_index_rows,
    .index_rows_add = cg__cpu_index_rows_add,
    .pick = cg__cpu_pick,
    .pick_add = cg__cpu_pick_add,
    .optim_update = cg__cpu_optim_update,
    .finish = cpu_finish,
    .get_stats = cpu_get_stats,
    .reset_stats = cpu_reset_stats,
    .im2col = cg__cpu_im2col,
    .col2im = cg__cpu_col2im,
    .pool2d = cg__cpu_pool2d,
    .pool2d_backward = cg__cpu_pool2d_backward,
    .lstm_cell = cg__cpu_lstm_cell,
    .lstm_cell_backward = cg__cpu_lstm_cell_backward,
    .softmax_causal = cg__cpu_softmax_causal,
    .bias_gelu = cg__cpu_bias_gelu,
    .bias_gelu_backward = cg__cpu_bias_gelu_backward,
    .layernorm = cg__cpu_layernorm,
    .layernorm_backward = cg__cpu_layernorm_backward,
#if CG_HAVE_ONEDNN
    .conv2d = cg__cpu_conv2d,
    .conv2d_backward_data = cg__cpu_conv2d_backward_data,
    .conv2d_backward_weights = cg__cpu_conv2d_backward_weights,
#endif
};

/* The built-in backend's entry, which the core's registry calls directly
 * (declared there in core/internal.h); same type as a plugin's
 * cg_backend_entry (cg_backend_entry_fn), so the backend needs nothing from
 * the core but backend.h. */
const struct cg_backend_i *cg__cpu_backend(void);
const struct cg_backend_i *cg__cpu_backend(void)
{
    return &cpu_backend;
}
