/*
 * cl/conv.cl - convolution and pooling over NCHW batches (OpenCL C 1.2),
 * backend.h im2col / col2im / pool2d / pool2d_backward:
 *
 *   im2col   col[b, (ci*kh + i)*kw + j, y*ow + x] =
 *                img[b, ci, y*sh - ph + i*dh, x*sw - pw + j*dw]  (0 in padding)
 *   col2im   img += its adjoint
 *   pool2d   max (first maximum, padding ignored, index h_in*w + w_in as a
 *            float) or average (sum / (kh*kw), padding counted)
 *   pool2d_backward  gin += the adjoint of pool2d
 *
 * The geometry travels as one int16 `g` (see the G_* names below; the host,
 * backends/opencl/conv.c, checks that every size fits an int) and buffer
 * offsets as longs. Every kernel loops with a grid stride.
 *
 * No atomics: the adjoints are gathers, one work-item per input pixel
 * summing, in a fixed order, every column or output element that read it
 * (Caffe's col2im_gpu_kernel, generalised to dilation). Results are
 * therefore deterministic, run to run.
 */

#define G_C(g)  (g).s0
#define G_H(g)  (g).s1
#define G_W(g)  (g).s2
#define G_KH(g) (g).s3
#define G_KW(g) (g).s4
#define G_SH(g) (g).s5
#define G_SW(g) (g).s6
#define G_PH(g) (g).s7
#define G_PW(g) (g).s8
#define G_DH(g) (g).s9
#define G_DW(g) (g).sa
#define G_OH(g) (g).sb
#define G_OW(g) (g).sc

#define POOL_MAX 0   /* enum cg_pool_kind */
#define POOL_AVG 1

/* col: (n, c*kh*kw, oh*ow); img: (n, c, h, w); total = n * c * oh * ow.
 * One work-item per (b, ci, y, x) writes its kh*kw column entries, so
 * neighbouring work-items (neighbouring x) write neighbouring floats. */
__kernel void im2col(__global float *col, long co, __global const float *img, long io,
                     int16 g, long total)
{
    const int h = G_H(g), w = G_W(g), kh = G_KH(g), kw = G_KW(g);
    const int oh = G_OH(g), ow = G_OW(g), p = oh * ow;
    for (long t = get_global_id(0); t < total; t += get_global_size(0)) {
        long plane = t / p;                 /* b * c + ci */
        int pix = (int)(t - plane * p);
        int y = pix / ow, x = pix - y * ow;
        int y0 = y * G_SH(g) - G_PH(g), x0 = x * G_SW(g) - G_PW(g);
        __global const float *src = img + io + plane * h * w;
        /* row (ci*kh + i)*kw + j of image b starts at (b*c + ci)*kh*kw*p */
        __global float *dst = col + co + plane * kh * kw * p + pix;
        for (int i = 0; i < kh; ++i) {
            int iy = y0 + i * G_DH(g);
            int row_ok = iy >= 0 && iy < h;
            for (int j = 0; j < kw; ++j) {
                int ix = x0 + j * G_DW(g);
                dst[(long)(i * kw + j) * p] =
                    (row_ok && ix >= 0 && ix < w) ? src[iy * w + ix] : 0.0f;
            }
        }
    }
}

/* img: (n, c, h, w) accumulated into; col: (n, c*kh*kw, oh*ow);
 * total = n * c * h * w. Pixel (iy, ix) is read by tap (i, j) of output
 * (y, x) iff iy = y*sh - ph + i*dh, i.e. y = (iy + ph - i*dh) / sh exactly
 * and 0 <= y < oh (likewise x). */
__kernel void col2im(__global float *img, long io, __global const float *col, long co,
                     int16 g, long total)
{
    const int h = G_H(g), w = G_W(g), kh = G_KH(g), kw = G_KW(g);
    const int sh = G_SH(g), sw = G_SW(g), oh = G_OH(g), ow = G_OW(g), p = oh * ow;
    for (long t = get_global_id(0); t < total; t += get_global_size(0)) {
        long plane = t / (h * w);
        int pix = (int)(t - plane * h * w);
        int iy = pix / w, ix = pix - iy * w;
        __global const float *src = col + co + plane * kh * kw * p;
        float sum = 0.0f;
        for (int i = 0; i < kh; ++i) {
            int ty = iy + G_PH(g) - i * G_DH(g);
            if (ty < 0 || ty % sh != 0 || ty / sh >= oh)
                continue;
            int y = ty / sh;
            for (int j = 0; j < kw; ++j) {
                int tx = ix + G_PW(g) - j * G_DW(g);
                if (tx < 0 || tx % sw != 0 || tx / sw >= ow)
                    continue;
                sum += src[(long)(i * kw + j) * p + y * ow + tx / sw];
            }
        }
        img[io + t] += sum;
    }
}

/* out, argmax: (n, c, oh, ow); in: (n, c, h, w); total = n * c * oh * ow.
 * MAX: NaN wins over numbers (as torch.max_pool2d); a window wholly in the
 * padding gives -inf and index -1. argmax is not touched for AVG. */
__kernel void pool2d(__global float *out, long oo, __global float *argmax, long ao,
                     __global const float *in, long io, int16 g, int kind, long total)
{
    const int h = G_H(g), w = G_W(g), kh = G_KH(g), kw = G_KW(g);
    const int oh = G_OH(g), ow = G_OW(g), p = oh * ow;
    for (long t = get_global_id(0); t < total; t += get_global_size(0)) {
        long plane = t / p;
        int pix = (int)(t - plane * p);
        int y = pix / ow, x = pix - y * ow;
        int y0 = y * G_SH(g) - G_PH(g), x0 = x * G_SW(g) - G_PW(g);
        __global const float *src = in + io + plane * h * w;
        float best = -INFINITY, sum = 0.0f;
        int at = -1;
        for (int i = 0; i < kh; ++i) {
            int iy = y0 + i * G_DH(g);
            if (iy < 0 || iy >= h)
                continue;
            for (int j = 0; j < kw; ++j) {
                int ix = x0 + j * G_DW(g);
                if (ix < 0 || ix >= w)
                    continue;
                float v = src[iy * w + ix];
                sum += v;
                if (at < 0 || v > best || (isnan(v) && !isnan(best))) {
                    best = v;
                    at = iy * w + ix;
                }
            }
        }
        if (kind == POOL_MAX) {
            out[oo + t] = best;
            argmax[ao + t] = (float)at;
        } else {
            out[oo + t] = sum / (float)(kh * kw);
        }
    }
}

/* gin: (n, c, h, w) accumulated into; gout, argmax: (n, c, oh, ow);
 * total = n * c * h * w. Gathers, per input pixel, the outputs whose
 * window holds it (as col2im); MAX keeps those whose argmax is this
 * pixel. Tap (i, j) of output (y, x) is the only tap of that window that
 * lands on the pixel, so nothing is counted twice. */
__kernel void pool2d_backward(__global float *gin, long gio, __global const float *gout,
                              long goo, __global const float *argmax, long ao, int16 g,
                              int kind, long total)
{
    const int h = G_H(g), w = G_W(g), kh = G_KH(g), kw = G_KW(g);
    const int sh = G_SH(g), sw = G_SW(g), oh = G_OH(g), ow = G_OW(g), p = oh * ow;
    for (long t = get_global_id(0); t < total; t += get_global_size(0)) {
        long plane = t / (h * w);
        int pix = (int)(t - plane * h * w);
        int iy = pix / w, ix = pix - iy * w;
        __global const float *gsrc = gout + goo + plane * p;
        __global const float *asrc = argmax + ao + plane * p;
        float sum = 0.0f;
        for (int i = 0; i < kh; ++i) {
            int ty = iy + G_PH(g) - i * G_DH(g);
            if (ty < 0 || ty % sh != 0 || ty / sh >= oh)
                continue;
            int y = ty / sh;
            for (int j = 0; j < kw; ++j) {
                int tx = ix + G_PW(g) - j * G_DW(g);
                if (tx < 0 || tx % sw != 0 || tx / sw >= ow)
                    continue;
                int o = y * ow + tx / sw;
                if (kind == POOL_AVG || (int)asrc[o] == pix)
                    sum += gsrc[o];
            }
        }
        if (kind == POOL_AVG)
            sum /= (float)(kh * kw);
        gin[gio + t] += sum;
    }
}
