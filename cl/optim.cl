/*
 * cl/optim.cl - fused optimizer updates, one kernel per optimizer, one
 * launch per parameter tensor (backend.h optim_update). Semantics follow
 * the "Algorithm" boxes of the torch.optim docs (PyTorch 2.x), and the
 * single-tensor implementations in torch/optim/{sgd,adam,rmsprop}.py for
 * the order of operations. All state tensors have n elements.
 */

/* torch.optim.SGD:
 *   g = grad + weight_decay * p                       (if weight_decay != 0)
 *   if momentum != 0:
 *       buf = g                                       (first step, t == 1)
 *       buf = momentum * buf + (1 - dampening) * g    (t > 1)
 *       g = g + momentum * buf  if nesterov  else  g = buf
 *   p = p - lr * g
 * p, g, buf: (n) at their offsets; buf unused when momentum == 0. */
__kernel void optim_sgd(__global float *p, long po, __global const float *gr, long go,
                        __global float *buf, long bo, long n, float lr,
                        float weight_decay, float momentum, float dampening,
                        int nesterov, int first_step)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        float w = p[po + i];
        float g = gr[go + i];
        if (weight_decay != 0.0f)
            g += weight_decay * w;
        if (momentum != 0.0f) {
            float b = first_step ? g
                                 : momentum * buf[bo + i] + (1.0f - dampening) * g;
            buf[bo + i] = b;
            g = nesterov ? g + momentum * b : b;
        }
        p[po + i] = w - lr * g;
    }
}

/* torch.optim.Adam / AdamW:
 *   AdamW: p = p * (1 - lr * weight_decay);  Adam: g = grad + weight_decay * p
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g^2
 *   step_size = lr / bias_correction1
 *   denom = sqrt(v) / sqrt(bias_correction2) + eps
 *   p = p - step_size * m / denom
 * p, g, m, v: (n). */
__kernel void optim_adam(__global float *p, long po, __global const float *gr, long go,
                         __global float *m, long mo, __global float *v, long vo,
                         long n, float lr, float weight_decay, float beta1,
                         float beta2, float eps, int decoupled, float step_size,
                         float bc2_sqrt)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        float w = p[po + i];
        float g = gr[go + i];
        if (weight_decay != 0.0f) {
            if (decoupled)
                w *= 1.0f - lr * weight_decay;
            else
                g += weight_decay * w;
        }
        float mi = beta1 * m[mo + i] + (1.0f - beta1) * g;
        float vi = beta2 * v[vo + i] + (1.0f - beta2) * g * g;
        m[mo + i] = mi;
        v[vo + i] = vi;
        float denom = sqrt(vi) / bc2_sqrt + eps;
        p[po + i] = w - step_size * (mi / denom);
    }
}

/* torch.optim.RMSprop:
 *   g = grad + weight_decay * p                       (if weight_decay != 0)
 *   v = alpha * v + (1 - alpha) * g^2
 *   centered: ga = alpha * ga + (1 - alpha) * g;  avg = sqrt(v - ga^2) + eps
 *   else:     avg = sqrt(v) + eps
 *   momentum > 0: buf = momentum * buf + g / avg;  p = p - lr * buf
 *   else:         p = p - lr * g / avg
 * p, g, v (square_avg), buf (momentum buffer), ga (grad_avg): (n); buf and
 * ga are unused unless momentum > 0 / centered. */
__kernel void optim_rmsprop(__global float *p, long po, __global const float *gr, long go,
                            __global float *v, long vo, __global float *buf, long bo,
                            __global float *ga, long gao, long n, float lr,
                            float weight_decay, float alpha, float eps,
                            float momentum, int centered)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        float w = p[po + i];
        float g = gr[go + i];
        if (weight_decay != 0.0f)
            g += weight_decay * w;
        float vi = alpha * v[vo + i] + (1.0f - alpha) * g * g;
        v[vo + i] = vi;
        float avg;
        if (centered) {
            float gai = alpha * ga[gao + i] + (1.0f - alpha) * g;
            ga[gao + i] = gai;
            avg = sqrt(vi - gai * gai) + eps;
        } else {
            avg = sqrt(vi) + eps;
        }
        if (momentum > 0.0f) {
            float b = momentum * buf[bo + i] + g / avg;
            buf[bo + i] = b;
            p[po + i] = w - lr * b;
        } else {
            p[po + i] = w - lr * g / avg;
        }
    }
}
