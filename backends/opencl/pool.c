/*
 * backends/opencl/pool.c — device buffers through a size-bucketed pool, and
 * host<->device transfers.
 *
 * clCreateBuffer is slow on many drivers and a training step frees and
 * re-creates the same intermediates every iteration, so release() keeps a
 * buffer on a free list of its size class and alloc() takes one from there.
 * Classes are 256 bytes, then 2^k * {1, 1.25, 1.5, 1.75}: a request wastes
 * less than 25% and a loop with fixed shapes settles into zero real
 * allocations (stats.device_allocs stops growing). A zero-byte request gets a
 * 256-byte buffer, so every handle is real.
 * When the device runs out, alloc() frees every cached buffer and retries.
 * The pool counts what it holds against the device's memory
 * (CL_DEVICE_GLOBAL_MEM_SIZE, or CLGRAD_CL_MEM_MB) and one buffer against
 * CL_DEVICE_MAX_MEM_ALLOC_SIZE, so a model too large fails at alloc() with
 * a message, and allocation is real at creation (pool_clcreate).
 *
 * Uploads do not wait: a blocking clEnqueueWriteBuffer waits for every
 * command queued before it, so a training loop that uploads its batch each
 * step would stall the host at every step. An upload of up to
 * CG_CL_STAGE_MAX bytes copies the source aside (backend.h: the caller may
 * reuse it at once), enqueues a non-blocking write with an event, and the
 * copy is freed once the event completes (checked at the next upload, and
 * at finish/close). Larger uploads stay blocking: the copy would cost as
 * much as the wait.
 */
#include "cl_backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CG_CL_MIN_BYTES 256u
#define CG_CL_STAGE_MAX ((size_t)1 << 20)      /* per upload              */
#define CG_CL_STAGE_LIMIT ((size_t)64 << 20)   /* in flight, all together */

struct cg_cl_stage {
    void *host;
    size_t bytes;
    cl_event done;
    struct cg_cl_stage *next;
};

int cg_cl_size_class(size_t bytes, size_t *cap)
{
    if (bytes <= CG_CL_MIN_BYTES) {
        *cap = CG_CL_MIN_BYTES;
        return 0;
    }
    int k = 63 - __builtin_clzll((unsigned long long)bytes);  /* 2^k <= bytes */
    size_t base = (size_t)1 << k;
    for (int q = 0; q < 4; ++q) {
        size_t c = base + (size_t)q * (base >> 2);
        if (c >= bytes) {
            *cap = c;
            return 4 * (k - 8) + q;
        }
    }
    *cap = base << 1;
    return 4 * (k + 1 - 8);
}

static void buffer_destroy(struct cg_cl *cl, struct cg_buffer *b)
{
    if (b->prev)
        b->prev->next = b->next;
    else
        cl->pool.all = b->next;
    if (b->next)
        b->next->prev = b->prev;
    cl->stats.bytes_reserved -= b->cap;
    clReleaseMemObject(b->mem);
    free(b);
}

/* Frees the cached (not in use) buffers. */
static void pool_trim(struct cg_cl *cl)
{
    for (int c = 0; c < CG_CL_POOL_CLASSES; ++c) {
        while (cl->pool.free[c]) {
            struct cg_buffer *b = cl->pool.free[c];
            cl->pool.free[c] = b->next_free;
            buffer_destroy(cl, b);
        }
    }
}

void cg_cl_pool_free_all(struct cg_cl *cl)
{
    pool_trim(cl);
    while (cl->pool.all)   /* buffers the frontend never released */
        buffer_destroy(cl, cl->pool.all);
}

static void mark_in_use(struct cg_cl *cl, struct cg_buffer *b, size_t bytes)
{
    b->bytes = bytes;
    b->in_use = 1;
    b->next_free = NULL;
    cl->stats.bytes_in_use += bytes;
    if (cl->stats.bytes_in_use > cl->stats.bytes_peak)
        cl->stats.bytes_peak = cl->stats.bytes_in_use;
}

/* Whether a buffer of cap bytes fits the device: in one buffer, and with
 * what the pool holds, under its ceiling. */
static int pool_fits(const struct cg_cl *cl, size_t cap)
{
    return cap <= cl->max_alloc && cl->stats.bytes_reserved <= cl->mem_limit &&
           cap <= cl->mem_limit - cl->stats.bytes_reserved;
}

/* A real allocation: on a CPU device (PoCL) CL_MEM_ALLOC_HOST_PTR makes
 * the driver allocate at clCreateBuffer, so running out is an error here;
 * without it PoCL allocates at the buffer's first use, and fails there by
 * aborting the process (issue 17). On a CPU device host memory is the
 * device's, so nothing is copied. */
static cl_mem pool_clcreate(struct cg_cl *cl, size_t cap, cl_int *rc)
{
    cl_mem_flags flags = CL_MEM_READ_WRITE | (cl->cpu_device ? CL_MEM_ALLOC_HOST_PTR : 0);
    if (!pool_fits(cl, cap)) {
        *rc = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        return NULL;
    }
    return clCreateBuffer(cl->dev.context, flags, cap, NULL, rc);
}

static cg_status pool_create(struct cg_cl *cl, size_t bytes, size_t cap, cl_mem *out)
{
    cl_int rc;
    cl_mem mem = pool_clcreate(cl, cap, &rc);
    if (rc == CL_MEM_OBJECT_ALLOCATION_FAILURE || rc == CL_OUT_OF_RESOURCES ||
        rc == CL_OUT_OF_HOST_MEMORY || rc == CL_INVALID_BUFFER_SIZE) {
        /* Give the cached memory back and retry; pending fused work may
         * still name a cached buffer, so it goes out first (the driver
         * keeps a released cl_mem alive until its commands are done).
         * If that fails, its ops are lost: the caller must hear of it. */
        cg_status st = cg_cl_sync(cl);
        if (st != CG_OK) {
            char why[CG_CL_ERR_LEN];
            memcpy(why, cl->err, sizeof why);
            return cg_cl_errorf(cl, st, "alloc(%zu bytes): flushing pending work: %.1900s",
                                bytes, why);
        }
        pool_trim(cl);
        mem = pool_clcreate(cl, cap, &rc);
    }
    if (cap > cl->max_alloc)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY,
                            "alloc(%zu bytes): device \"%s\" takes at most %llu bytes in one "
                            "buffer (CL_DEVICE_MAX_MEM_ALLOC_SIZE)",
                            bytes, cl->dev.name, (unsigned long long)cl->max_alloc);
    if (rc == CL_MEM_OBJECT_ALLOCATION_FAILURE && !mem && !pool_fits(cl, cap))
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY,
                            "alloc(%zu bytes): out of memory on device \"%s\": clgrad holds "
                            "%llu of its %llu bytes (%s)",
                            bytes, cl->dev.name, (unsigned long long)cl->stats.bytes_reserved,
                            (unsigned long long)cl->mem_limit, cl->mem_limit_what);
    if (rc != CL_SUCCESS) {
        char what[160];
        snprintf(what, sizeof what, "alloc(%zu bytes) on device \"%.60s\": clCreateBuffer",
                 bytes, cl->dev.name);
        cg_status st = cg_cl_fail(cl->err, sizeof cl->err, what, rc);
        return rc == CL_INVALID_BUFFER_SIZE ? CG_STATUS_OUT_OF_MEMORY : st;
    }
    *out = mem;
    return CG_OK;
}

cg_status cg_cl_alloc(void *ctx, size_t bytes, struct cg_buffer **out)
{
    struct cg_cl *cl = ctx;
    size_t cap;
    int cls = cg_cl_size_class(bytes, &cap);
    *out = NULL;
    if (cls >= CG_CL_POOL_CLASSES)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "alloc: %zu bytes is too large",
                            bytes);
    struct cg_buffer *b = cl->pool.free[cls];
    if (b) {
        cl->pool.free[cls] = b->next_free;
        mark_in_use(cl, b, bytes);
        *out = b;
        return CG_OK;
    }

    cl_mem mem = NULL;
    cg_status st = pool_create(cl, bytes, cap, &mem);
    if (st != CG_OK)
        return st;
    b = calloc(1, sizeof *b);
    if (!b) {
        clReleaseMemObject(mem);
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "alloc: out of host memory");
    }
    b->mem = mem;
    b->cap = cap;
    b->cls = cls;
    b->next = cl->pool.all;
    if (b->next)
        b->next->prev = b;
    cl->pool.all = b;
    cl->stats.device_allocs++;
    cl->stats.bytes_reserved += cap;
    mark_in_use(cl, b, bytes);
    *out = b;
    return CG_OK;
}

void cg_cl_release(void *ctx, struct cg_buffer *b)
{
    struct cg_cl *cl = ctx;
    if (!b || !b->in_use)
        return;
    b->in_use = 0;
    cl->stats.bytes_in_use -= b->bytes;
    b->next_free = cl->pool.free[b->cls];
    cl->pool.free[b->cls] = b;
}

/* Checks [off, off + bytes) lies in buf as requested. */
static cg_status check_bytes(struct cg_cl *cl, const char *what,
                             const struct cg_buffer *b, size_t off, size_t bytes)
{
    if (!b)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: NULL buffer", what);
    if (off > b->bytes || bytes > b->bytes - off)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "%s: bytes [%zu, %zu) outside a buffer of %zu bytes", what,
                            off, off + bytes, b->bytes);
    return CG_OK;
}

cg_status cg_cl_check_range(struct cg_cl *cl, const char *what, const char *arg,
                            struct cg_ptr p, int64_t n)
{
    if (!p.buf)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: %s has a NULL buffer",
                            what, arg);
    int64_t cap = (int64_t)(p.buf->bytes / sizeof(float));
    if (p.off < 0 || n < 0 || p.off > cap || n > cap - p.off)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "%s: %s elements [%lld, %lld) outside a buffer of %lld", what,
                            arg, (long long)p.off, (long long)(p.off + n), (long long)cap);
    return CG_OK;
}

void cg_cl_stage_reap(struct cg_cl *cl, int all)
{
    while (cl->stage) {
        struct cg_cl_stage *s = cl->stage;
        cl_int state = CL_COMPLETE;
        if (!all) {
            /* Past the limit: wait for the oldest copy rather than grow. */
            if (cl->stage_bytes > CG_CL_STAGE_LIMIT)
                clWaitForEvents(1, &s->done);
            if (clGetEventInfo(s->done, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof state,
                               &state, NULL) != CL_SUCCESS)
                state = CL_COMPLETE;   /* an event we cannot query: the write failed */
            if (state > CL_COMPLETE)   /* queued, submitted or running; < 0: failed */
                return;
        }
        cl->stage = s->next;
        if (!cl->stage)
            cl->stage_tail = NULL;
        cl->stage_bytes -= s->bytes;
        clReleaseEvent(s->done);
        free(s);
    }
}

/* Non-blocking write of a private copy of src (one allocation: the record,
 * then the bytes). */
static cg_status upload_staged(struct cg_cl *cl, struct cg_buffer *dst, size_t off,
                               const void *src, size_t bytes)
{
    cg_cl_stage_reap(cl, 0);
    struct cg_cl_stage *s = malloc(sizeof *s + bytes);
    if (!s)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "upload: out of host memory");
    s->host = s + 1;
    s->bytes = bytes;
    s->next = NULL;
    memcpy(s->host, src, bytes);
    cg_status st = cg_cl_write(cl, dst->mem, off, bytes, s->host, &s->done);
    if (st != CG_OK) {
        free(s);
        return st;
    }
    if (cl->stage_tail)
        cl->stage_tail->next = s;
    else
        cl->stage = s;
    cl->stage_tail = s;
    cl->stage_bytes += bytes;
    return CG_OK;
}

/* src need not outlive the call, as backend.h promises: small sources are
 * copied aside (above), large ones written with a blocking write. */
cg_status cg_cl_upload(void *ctx, struct cg_buffer *dst, size_t off, const void *src,
                       size_t bytes)
{
    struct cg_cl *cl = ctx;
    cg_status st = check_bytes(cl, "upload", dst, off, bytes);
    if (st != CG_OK || bytes == 0)
        return st;
    if (bytes <= CG_CL_STAGE_MAX)
        st = upload_staged(cl, dst, off, src, bytes);
    else
        st = cg_cl_write(cl, dst->mem, off, bytes, src, NULL);
    if (st != CG_OK)
        return st;
    cl->stats.uploads++;
    cl->stats.upload_bytes += bytes;
    return CG_OK;
}

cg_status cg_cl_download(void *ctx, void *dst, struct cg_buffer *src, size_t off,
                         size_t bytes)
{
    struct cg_cl *cl = ctx;
    cg_status st = check_bytes(cl, "download", src, off, bytes);
    if (st == CG_OK)
        st = cg_cl_read(cl, dst, src->mem, off, bytes);
    if (st != CG_OK)
        return st;
    cg_cl_stage_reap(cl, 1);   /* the in-order queue ran everything before */
    cl->stats.downloads++;
    cl->stats.download_bytes += bytes;
    return CG_OK;
}

/* A non-blocking read whose event is the ticket (data parallelism's
 * gradient staging, src/dist/dist.c). */
cg_status cg_cl_download_async(void *ctx, void *dst, struct cg_buffer *src, size_t off,
                               size_t bytes, void **ticket)
{
    struct cg_cl *cl = ctx;
    cl_event ev = NULL;
    *ticket = NULL;
    cg_status st = check_bytes(cl, "download_async", src, off, bytes);
    if (st == CG_OK)
        st = cg_cl_read_async(cl, dst, src->mem, off, bytes, &ev);
    if (st != CG_OK)
        return st;
    cl->stats.downloads++;
    cl->stats.download_bytes += bytes;
    *ticket = ev;
    return CG_OK;
}

cg_status cg_cl_download_poll(void *ctx, void *ticket, int wait, int *done)
{
    struct cg_cl *cl = ctx;
    cl_event ev = ticket;
    cl_int status = CL_COMPLETE, rc;
    if (wait)
        rc = clWaitForEvents(1, &ev);
    else
        rc = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof status, &status,
                            NULL);
    if (rc == CL_SUCCESS && status < 0)
        rc = status; /* the read itself failed */
    *done = rc != CL_SUCCESS || status == CL_COMPLETE;
    if (*done)
        clReleaseEvent(ev);
    if (rc != CL_SUCCESS)
        return cg_cl_fail(cl->err, sizeof cl->err,
                          wait ? "clWaitForEvents(a gradient read)"
                               : "clGetEventInfo(a gradient read)", rc);
    return CG_OK;
}

/* Host staging memory (data parallelism, src/dist/dist.c): a buffer made
 * with CL_MEM_ALLOC_HOST_PTR, which drivers back with pinned pages that
 * reads and writes reach by DMA, mapped once with a blocking map and left
 * mapped until host_free (the pattern of NVIDIA's OpenCL best practices
 * guide, "pinned memory"); the mapped pointer is the handle. */
struct cg_cl_host {
    void *ptr;
    cl_mem mem;
    struct cg_cl_host *next;
};

cg_status cg_cl_host_alloc(void *ctx, size_t bytes, void **ptr)
{
    struct cg_cl *cl = ctx;
    *ptr = NULL;
    struct cg_cl_host *h = calloc(1, sizeof *h);
    if (!h)
        return cg_cl_errorf(cl, CG_STATUS_OUT_OF_MEMORY, "host_alloc: out of host memory");
    cl_int rc;
    h->mem = clCreateBuffer(cl->dev.context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR,
                            bytes ? bytes : 1, NULL, &rc);
    if (rc == CL_SUCCESS)
        h->ptr = clEnqueueMapBuffer(cl->queue, h->mem, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0,
                                    bytes ? bytes : 1, 0, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        if (h->mem)
            clReleaseMemObject(h->mem);
        free(h);
        return cg_cl_fail(cl->err, sizeof cl->err,
                          "host_alloc: clCreateBuffer/clEnqueueMapBuffer(CL_MEM_ALLOC_HOST_PTR)",
                          rc);
    }
    h->next = cl->hosts;
    cl->hosts = h;
    *ptr = h->ptr;
    return CG_OK;
}

static void host_release(struct cg_cl *cl, struct cg_cl_host *h)
{
    clEnqueueUnmapMemObject(cl->queue, h->mem, h->ptr, 0, NULL, NULL);
    clFinish(cl->queue);
    clReleaseMemObject(h->mem);
    free(h);
}

void cg_cl_host_free(void *ctx, void *ptr)
{
    struct cg_cl *cl = ctx;
    for (struct cg_cl_host **p = &cl->hosts; ptr && *p; p = &(*p)->next) {
        if ((*p)->ptr != ptr)
            continue;
        struct cg_cl_host *h = *p;
        *p = h->next;
        host_release(cl, h);
        return;
    }
}

/* At close: what the program did not give back. */
void cg_cl_host_free_all(struct cg_cl *cl)
{
    while (cl->hosts) {
        struct cg_cl_host *h = cl->hosts;
        cl->hosts = h->next;
        host_release(cl, h);
    }
}

cg_status cg_cl_copy(void *ctx, struct cg_buffer *dst, size_t dst_off,
                     struct cg_buffer *src, size_t src_off, size_t bytes)
{
    struct cg_cl *cl = ctx;
    cg_status st = check_bytes(cl, "copy (dst)", dst, dst_off, bytes);
    if (st == CG_OK)
        st = check_bytes(cl, "copy (src)", src, src_off, bytes);
    if (st != CG_OK || bytes == 0)
        return st;
    if (src == dst && src_off < dst_off + bytes && dst_off < src_off + bytes)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                            "copy: overlapping ranges in one buffer");
    return cg_cl_copy_mem(cl, dst->mem, dst_off, src->mem, src_off, bytes);
}
