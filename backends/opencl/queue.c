/*
 * backends/opencl/queue.c — the one path from the plugin to the device.
 *
 * Ordering rule: the device runs work in the order the frontend issued it.
 * Everything that reaches cl->queue is enqueued here: kernel launches
 * (cg_cl_launch*), transfers (cg_cl_write/read/copy_mem), waits
 * (cg_cl_wait), and libraries that enqueue by themselves, which get the
 * queue only from cg_cl_queue_take. Some work may wait instead: the fusion
 * chain (fuse.c) and the optimizer batch (optim.c) are pending queues
 * behind struct cg_cl_pending_i, at most one holding work at a time. Every
 * submission first drains the pending queue, in cg_cl_sync, the one place
 * that does; a queue that takes work drains another's first (cg_cl_defer).
 *
 * A drain runs with cl->draining set: its launches come through here as
 * any other (nothing is pending then, so nothing is drained again), but
 * they are not counted in stats.launches, which counts primitive calls (a
 * deferred call was counted when its queue took it).
 */
#include "cl_backend.h"

#include <stdio.h>

cg_status cg_cl_sync(struct cg_cl *cl)
{
    const struct cg_cl_pending_i *q = cl->pending;
    if (!q)
        return CG_OK;
    cl->pending = NULL;   /* taken: the drain's launches must not drain it again */
    cl->draining = 1;
    cg_status st = q->drain(cl);
    cl->draining = 0;
    return st;
}

cg_status cg_cl_defer(struct cg_cl *cl, const struct cg_cl_pending_i *q)
{
    if (cl->pending == q)
        return CG_OK;
    cg_status st = cg_cl_sync(cl);
    if (st == CG_OK)
        cl->pending = q;
    return st;
}

cg_status cg_cl_queue_take(struct cg_cl *cl, cl_command_queue **q)
{
    *q = &cl->queue;
    return cg_cl_sync(cl);
}

/* ---- kernels ------------------------------------------------------------ */

/* Sets the args and enqueues a dims-d range: the one clEnqueueNDRangeKernel. */
static cg_status enqueue(struct cg_cl *cl, const struct cg_cl_kref *kr,
                         const struct cg_cl_arg *args, int nargs, cl_uint dims,
                         const size_t *offset, const size_t *global, const size_t *local)
{
    for (int i = 0; i < nargs; ++i) {
        cl_int rc = clSetKernelArg(kr->kern, (cl_uint)i, args[i].size, args[i].ptr);
        if (rc != CL_SUCCESS) {
            char what[96];
            snprintf(what, sizeof what, "clSetKernelArg(%s, %d)", kr->name, i);
            return cg_cl_fail(cl->err, sizeof cl->err, what, rc);
        }
    }
    cl_int rc = clEnqueueNDRangeKernel(cl->queue, kr->kern, dims, offset, global, local, 0,
                                       NULL, NULL);
    if (rc != CL_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "clEnqueueNDRangeKernel(%s)", kr->name);
        return cg_cl_fail(cl->err, sizeof cl->err, what, rc);
    }
    cl->device_launches++;
    return CG_OK;
}

/* One launch's bookkeeping: a primitive call unless a drain runs it. */
static void count(struct cg_cl *cl, const struct cg_cl_kref *kr)
{
    if (!cl->draining)
        cl->stats.launches++;
    if (kr->k >= 0)
        cl->kernel_launches[kr->k]++;
}

cg_status cg_cl_launch_nd(struct cg_cl *cl, const struct cg_cl_kref *kr,
                          const struct cg_cl_arg *args, int nargs, cl_uint dims,
                          const size_t *offset, const size_t *global, const size_t *local)
{
    cg_status st = cg_cl_sync(cl);
    if (st == CG_OK)
        st = enqueue(cl, kr, args, nargs, dims, offset, global, local);
    if (st == CG_OK)
        count(cl, kr);
    return st;
}

cg_status cg_cl_launch(struct cg_cl *cl, enum cg_cl_kern k, const struct cg_cl_arg *args,
                       int nargs, size_t groups, size_t local)
{
    struct cg_cl_kref kr;
    cg_status st = cg_cl_kernel(cl, k, &kr);
    size_t global = groups * local;
    return st != CG_OK ? st : cg_cl_launch_nd(cl, &kr, args, nargs, 1, NULL, &global, &local);
}

cg_status cg_cl_launch_n(struct cg_cl *cl, enum cg_cl_kern k, const struct cg_cl_arg *args,
                         int nargs, int64_t n)
{
    struct cg_cl_kref kr;
    cg_status st = cg_cl_kernel(cl, k, &kr);
    if (st != CG_OK)
        return st;
    size_t global = cg_cl_groups_for(cl, n, kr.local) * kr.local;
    return cg_cl_launch_nd(cl, &kr, args, nargs, 1, NULL, &global, &kr.local);
}

/* (PoCL compiles a kernel once per work-group size, so the sizes come from
 * a short list where they can.) */
cg_status cg_cl_launch_exact(struct cg_cl *cl, const struct cg_cl_kref *kr,
                             const struct cg_cl_arg *args, int nargs, int64_t items)
{
    cg_status st = cg_cl_sync(cl);
    if (st != CG_OK || items <= 0)
        return st;
    size_t n = (size_t)items, local = kr->local;
    size_t l = cg_cl_pow2_divisor(n, local);
    if (l >= 32 || l == local) {
        st = enqueue(cl, kr, args, nargs, 1, NULL, &n, &l);
    } else if (n <= (kr->wg < 1024 ? kr->wg : 1024)) {
        st = enqueue(cl, kr, args, nargs, 1, NULL, &n, &n);
    } else {
        size_t full = n - n % local, rest = n % local;
        st = enqueue(cl, kr, args, nargs, 1, NULL, &full, &local);
        if (st == CG_OK)
            st = enqueue(cl, kr, args, nargs, 1, &full, &rest, &rest);
    }
    if (st == CG_OK)
        count(cl, kr);
    return st;
}

cg_status cg_cl_launch_rows(struct cg_cl *cl, const struct cg_cl_kref *kr,
                            const struct cg_cl_arg *args, int nargs, size_t g0, size_t g1,
                            const size_t *local)
{
    cg_status st = cg_cl_sync(cl);
    for (size_t r0 = 0; r0 < g1 && st == CG_OK; r0 += CG_CL_MAX_ROWS) {
        size_t nr = g1 - r0 < CG_CL_MAX_ROWS ? g1 - r0 : CG_CL_MAX_ROWS;
        const size_t offset[2] = {0, r0}, global[2] = {g0, nr};
        size_t loc[2];
        if (local) {   /* the caller's shape, its rows dividing this launch's */
            loc[0] = local[0];
            loc[1] = cg_cl_pow2_divisor(nr, local[1]);
        }
        st = enqueue(cl, kr, args, nargs, 2, r0 ? offset : NULL, global, local ? loc : NULL);
    }
    if (st == CG_OK)
        count(cl, kr);
    return st;
}

cg_status cg_cl_launch_2d(struct cg_cl *cl, enum cg_cl_kern k, const struct cg_cl_arg *args,
                          int nargs, size_t g0, size_t g1)
{
    struct cg_cl_kref kr;
    cg_status st = cg_cl_kernel(cl, k, &kr);
    return st != CG_OK ? st : cg_cl_launch_rows(cl, &kr, args, nargs, g0, g1, NULL);
}

/* ---- transfers and waits ------------------------------------------------ */

cg_status cg_cl_write(struct cg_cl *cl, cl_mem dst, size_t off, size_t bytes, const void *src,
                      cl_event *done)
{
    cg_status st = cg_cl_sync(cl);   /* pending ops may read dst's old contents */
    if (st != CG_OK)
        return st;
    CG_CL_TRY(cl->err, clEnqueueWriteBuffer(cl->queue, dst, done ? CL_FALSE : CL_TRUE, off,
                                            bytes, src, 0, NULL, done));
    return CG_OK;
}

cg_status cg_cl_read(struct cg_cl *cl, void *dst, cl_mem src, size_t off, size_t bytes)
{
    cg_status st = cg_cl_sync(cl);
    if (st != CG_OK)
        return st;
    if (bytes == 0)   /* still waits, as download() promises */
        CG_CL_TRY(cl->err, clFinish(cl->queue));
    else
        CG_CL_TRY(cl->err, clEnqueueReadBuffer(cl->queue, src, CL_TRUE, off, bytes, dst, 0,
                                               NULL, NULL));
    return CG_OK;
}

cg_status cg_cl_read_async(struct cg_cl *cl, void *dst, cl_mem src, size_t off, size_t bytes,
                           cl_event *done)
{
    cg_status st = cg_cl_sync(cl);
    if (st != CG_OK)
        return st;
    if (bytes == 0)
        CG_CL_TRY(cl->err, clEnqueueMarkerWithWaitList(cl->queue, 0, NULL, done));
    else
        CG_CL_TRY(cl->err, clEnqueueReadBuffer(cl->queue, src, CL_FALSE, off, bytes, dst, 0,
                                               NULL, done));
    /* sent now, so it completes without a later call into the queue */
    cl_int rc = clFlush(cl->queue);
    if (rc != CL_SUCCESS) {
        clReleaseEvent(*done);
        return cg_cl_fail(cl->err, sizeof cl->err, "clFlush(after a read)", rc);
    }
    return CG_OK;
}

cg_status cg_cl_copy_mem(struct cg_cl *cl, cl_mem dst, size_t dst_off, cl_mem src,
                         size_t src_off, size_t bytes)
{
    cg_status st = cg_cl_sync(cl);
    if (st != CG_OK)
        return st;
    CG_CL_TRY(cl->err,
              clEnqueueCopyBuffer(cl->queue, src, dst, src_off, dst_off, bytes, 0, NULL, NULL));
    if (!cl->draining)
        cl->stats.launches++;
    return CG_OK;
}

cg_status cg_cl_wait(struct cg_cl *cl)
{
    cg_status st = cg_cl_sync(cl);
    CG_CL_TRY(cl->err, clFinish(cl->queue));
    return st;
}
