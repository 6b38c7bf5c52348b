/*
 * cl/rnn.cl - fused kernels for sequence models (OpenCL C 1.2), backend.h
 * lstm_cell / lstm_cell_backward (the causal softmax of attention is in
 * cl/softmax.cl, beside the softmax whose row reduction it shares):
 *
 *   lstm_cell      i, f, o = sigma(G_i, G_f, G_o), g = tanh(G_g) (PyTorch's
 *                  gate order, torch.nn.LSTM docs), c = f*c_prev + i*g,
 *                  h = o*tanh(c); save = [i | f | g | o | tanh(c)] per row
 *   lstm_cell_backward
 *                  dc = gc + gh*o*(1 - t^2); gG = (dc*g*i(1-i), dc*c_prev*f(1-f),
 *                  dc*i*(1-g^2), gh*t*o(1-o)); gc_prev = dc*f
 *
 * One work-item per (b, j) element of the (B, H) state in the LSTM kernels,
 * grid-stride: a step that the composed graph runs as ~11 kernels (4
 * activations, 3 mul, add, tanh, mul, plus their backward) is one launch
 * each way. Buffer offsets travel as longs, like every program here.
 */

/* The stable logistic of cl/ew.cl (CG_EW_SIGMOID), so fused and composed
 * paths round alike. */
static float cg_sigmoid(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + exp(-x));
    float e = exp(x);
    return e / (1.0f + e);
}

/* c, h, cp: (B, H); save: (B, 5H); gates: (B, 4H); n = B * H. */
__kernel void lstm_cell_fwd(__global float *c, long co, __global float *h, long ho,
                            __global float *save, long so, __global const float *gates,
                            long go, __global const float *cp, long cpo, long n, long H)
{
    for (long t = get_global_id(0); t < n; t += get_global_size(0)) {
        long b = t / H, j = t - b * H;
        __global const float *G = gates + go + b * 4 * H + j;
        __global float *sv = save + so + b * 5 * H + j;
        float i = cg_sigmoid(G[0]), f = cg_sigmoid(G[H]);
        float g = tanh(G[2 * H]), o = cg_sigmoid(G[3 * H]);
        float cn = f * cp[cpo + t] + i * g, th = tanh(cn);
        sv[0] = i;
        sv[H] = f;
        sv[2 * H] = g;
        sv[3 * H] = o;
        sv[4 * H] = th;
        c[co + t] = cn;
        h[ho + t] = o * th;
    }
}

/* dG: (B, 4H); dcp, gh, gc, cp: (B, H); save: (B, 5H); n = B * H. */
__kernel void lstm_cell_bwd(__global float *dG, long dgo, __global float *dcp, long dcpo,
                            __global const float *gh, long gho, __global const float *gc,
                            long gco, __global const float *save, long so,
                            __global const float *cp, long cpo, long n, long H)
{
    for (long t = get_global_id(0); t < n; t += get_global_size(0)) {
        long b = t / H, j = t - b * H;
        __global const float *sv = save + so + b * 5 * H + j;
        __global float *d = dG + dgo + b * 4 * H + j;
        float i = sv[0], f = sv[H], g = sv[2 * H], o = sv[3 * H], th = sv[4 * H];
        float dh = gh[gho + t];
        float dc = gc[gco + t] + dh * o * (1.0f - th * th);
        d[0] = dc * g * i * (1.0f - i);
        d[H] = dc * cp[cpo + t] * f * (1.0f - f);
        d[2 * H] = dc * i * (1.0f - g * g);
        d[3 * H] = dh * th * o * (1.0f - o);
        dcp[dcpo + t] = dc * f;
    }
}
