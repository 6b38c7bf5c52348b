/*
 * backends/opencl/conv.c — im2col / col2im and max / average pooling with
 * their backward (cl/conv.cl): one kernel per primitive, queued without
 * waiting. The adjoints gather per input pixel, so no atomics and the
 * results are deterministic.
 *
 * The kernels index within an image plane with 32-bit ints (int division is
 * several times cheaper than long division on GPUs), so this file refuses
 * a geometry whose planes, windows or padded extents do not fit an int;
 * offsets into buffers and the flat work-item index stay 64-bit.
 */
#include "cl_backend.h"

#include <limits.h>
#include <string.h>

/* Validates d (as the cpu oracle does) and packs it into the kernels'
 * int16 (cl/conv.cl's G_* order). */
static cg_status conv_geom(struct cg_cl *cl, const char *what,
                           const struct cg_conv2d_desc *d, cl_int16 *g)
{
    char msg[512];
    cg_status st = cg_conv2d_desc_check(d, msg, sizeof msg);
    if (st != CG_OK) return cg_cl_errorf(cl, st, "%s: %s", what, msg);
    /* Every int the kernels form: plane sizes, window sizes, and tap
     * coordinates up to (o - 1) * s + p + (k - 1) * d (with both signs). */
    int64_t reach_h = (d->oh > 0 ? d->oh - 1 : 0) * d->sh + d->ph + (d->kh - 1) * d->dh;
    int64_t reach_w = (d->ow > 0 ? d->ow - 1 : 0) * d->sw + d->pw + (d->kw - 1) * d->dw;
    int64_t limits[] = {d->c, d->h * d->w, d->oh * d->ow, d->kh * d->kw, reach_h + d->h,
                        reach_w + d->w, d->sh, d->sw};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; ++i)
        if (limits[i] > INT_MAX)
            return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT,
                                "%s: geometry too large for the opencl kernels' 32-bit "
                                "plane indices (input %lld x %lld, output %lld x %lld, "
                                "kernel %lld x %lld)",
                                what, (long long)d->h, (long long)d->w, (long long)d->oh,
                                (long long)d->ow, (long long)d->kh, (long long)d->kw);
    int64_t v[16] = {d->c, d->h, d->w, d->kh, d->kw, d->sh, d->sw,
                     d->ph, d->pw, d->dh, d->dw, d->oh, d->ow};
    memset(g, 0, sizeof *g);
    for (int i = 0; i < 16; ++i)
        g->s[i] = (cl_int)v[i];
    return CG_OK;
}

cg_status cg_cl_im2col(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr col,
                       struct cg_ptr img)
{
    /* col: (n, c*kh*kw, oh*ow); img: (n, c, h, w) */
    struct cg_cl *cl = ctx;
    cl_int16 g;
    cg_status st = conv_geom(cl, "im2col", d, &g);
    if (st != CG_OK)
        return st;
    int64_t total = d->n * d->c * d->oh * d->ow;
    if (total == 0)
        return CG_OK;
    st = cg_cl_check_range(cl, "im2col", "col", col, total * d->kh * d->kw);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "im2col", "img", img, d->n * d->c * d->h * d->w);
    if (st != CG_OK)
        return st;
    cl_long co = col.off, io = img.off, ct = total;
    struct cg_cl_arg args[] = {CG_ARG(col.buf->mem), CG_ARG(co), CG_ARG(img.buf->mem),
                               CG_ARG(io), CG_ARG(g), CG_ARG(ct)};
    return cg_cl_launch_n(cl, CG_CL_K_IM2COL, args, 6, total);
}

cg_status cg_cl_col2im(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr img,
                       struct cg_ptr col)
{
    /* img: (n, c, h, w) accumulated into; col: (n, c*kh*kw, oh*ow) */
    struct cg_cl *cl = ctx;
    cl_int16 g;
    cg_status st = conv_geom(cl, "col2im", d, &g);
    if (st != CG_OK)
        return st;
    int64_t total = d->n * d->c * d->h * d->w, ncol = d->n * d->c * d->kh * d->kw * d->oh * d->ow;
    if (total == 0 || ncol == 0)
        return CG_OK;   /* no pixel, or none read: img stays as it is */
    st = cg_cl_check_range(cl, "col2im", "img", img, total);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "col2im", "col", col, ncol);
    if (st != CG_OK)
        return st;
    cl_long io = img.off, co = col.off, ct = total;
    struct cg_cl_arg args[] = {CG_ARG(img.buf->mem), CG_ARG(io), CG_ARG(col.buf->mem),
                               CG_ARG(co), CG_ARG(g), CG_ARG(ct)};
    return cg_cl_launch_n(cl, CG_CL_K_COL2IM, args, 6, total);
}

static cg_status pool_kind_check(struct cg_cl *cl, const char *what, enum cg_pool_kind k)
{
    if (k != CG_POOL_MAX && k != CG_POOL_AVG)
        return cg_cl_errorf(cl, CG_STATUS_INVALID_ARGUMENT, "%s: unknown pool kind %d", what,
                            (int)k);
    return CG_OK;
}

cg_status cg_cl_pool2d(void *ctx, enum cg_pool_kind kind, const struct cg_conv2d_desc *d,
                       struct cg_ptr out, struct cg_ptr argmax, struct cg_ptr in)
{
    /* out, argmax: (n, c, oh, ow); in: (n, c, h, w) */
    struct cg_cl *cl = ctx;
    cl_int16 g;
    cg_status st = pool_kind_check(cl, "pool2d", kind);
    if (st == CG_OK)
        st = conv_geom(cl, "pool2d", d, &g);
    if (st != CG_OK)
        return st;
    int64_t total = d->n * d->c * d->oh * d->ow;
    if (total == 0)
        return CG_OK;
    st = cg_cl_check_range(cl, "pool2d", "out", out, total);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "pool2d", "in", in, d->n * d->c * d->h * d->w);
    if (st == CG_OK && kind == CG_POOL_MAX)
        st = cg_cl_check_range(cl, "pool2d", "argmax", argmax, total);
    if (st != CG_OK)
        return st;
    /* AVG never touches argmax, which may be NULL: out stands in. */
    struct cg_ptr am = kind == CG_POOL_MAX ? argmax : out;
    cl_long oo = out.off, ao = am.off, io = in.off, ct = total;
    cl_int ck = (cl_int)kind;
    struct cg_cl_arg args[] = {CG_ARG(out.buf->mem), CG_ARG(oo), CG_ARG(am.buf->mem),
                               CG_ARG(ao), CG_ARG(in.buf->mem), CG_ARG(io),
                               CG_ARG(g), CG_ARG(ck), CG_ARG(ct)};
    return cg_cl_launch_n(cl, CG_CL_K_POOL2D, args, 9, total);
}

cg_status cg_cl_pool2d_backward(void *ctx, enum cg_pool_kind kind,
                                const struct cg_conv2d_desc *d, struct cg_ptr gin,
                                struct cg_ptr gout, struct cg_ptr argmax)
{
    /* gin: (n, c, h, w) accumulated into; gout, argmax: (n, c, oh, ow) */
    struct cg_cl *cl = ctx;
    cl_int16 g;
    cg_status st = pool_kind_check(cl, "pool2d_backward", kind);
    if (st == CG_OK)
        st = conv_geom(cl, "pool2d_backward", d, &g);
    if (st != CG_OK)
        return st;
    int64_t total = d->n * d->c * d->h * d->w, nout = d->n * d->c * d->oh * d->ow;
    if (total == 0 || nout == 0)
        return CG_OK;
    st = cg_cl_check_range(cl, "pool2d_backward", "gin", gin, total);
    if (st == CG_OK)
        st = cg_cl_check_range(cl, "pool2d_backward", "gout", gout, nout);
    if (st == CG_OK && kind == CG_POOL_MAX)
        st = cg_cl_check_range(cl, "pool2d_backward", "argmax", argmax, nout);
    if (st != CG_OK)
        return st;
    struct cg_ptr am = kind == CG_POOL_MAX ? argmax : gout;
    cl_long gio = gin.off, goo = gout.off, ao = am.off, ct = total;
    cl_int ck = (cl_int)kind;
    struct cg_cl_arg args[] = {CG_ARG(gin.buf->mem), CG_ARG(gio), CG_ARG(gout.buf->mem),
                               CG_ARG(goo), CG_ARG(am.buf->mem), CG_ARG(ao),
                               CG_ARG(g), CG_ARG(ck), CG_ARG(ct)};
    return cg_cl_launch_n(cl, CG_CL_K_POOL2D_BACKWARD, args, 9, total);
}
