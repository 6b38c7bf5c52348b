/*
 * cl/optim.cl - fused optimizer updates, one kernel per optimizer, one
 * launch per parameter tensor (backend.h optim_update). Semantics follow
 * the "Algorithm" boxes of the torch.optim docs (PyTorch 2.x), and the
 * single-tensor implementations in torch/optim/{sgd,adam,rmsprop}.py for
 * the order of operations. All state tensors have n elements.
 *
 * Each update is a function of one element (cg_sgd_at, ...), called by the
 * one-tensor kernels and by the *_multi kernels, which update up to
 * OPTIM_BATCH tensors of one optimizer step in a single launch (optim.c
 * batches consecutive updates with equal hyper-parameters; unused slots
 * have n = 0). Same function, same inputs: both give bitwise the same
 * result.
 */

#define OPTIM_BATCH 8   /* CG_CL_OPTIM_BATCH in backends/opencl/cl_backend.h */

/* torch.optim.SGD:
 *   g = grad + weight_decay * p                       (if weight_decay != 0)
 *   if momentum != 0:
 *       buf = g                                       (first step, t == 1)
 *       buf = momentum * buf + (1 - dampening) * g    (t > 1)
 *       g = g + momentum * buf  if nesterov  else  g = buf
 *   p = p - lr * g
 * p, g, buf: (n) at their offsets; buf unused when momentum == 0. */
static void cg_sgd_at(__global float *p, __global const float *gr, __global float *buf,
                      long i, float lr, float weight_decay, float momentum, float dampening,
                      int nesterov, int first_step)
{
    float w = p[i];
    float g = gr[i];
    if (weight_decay != 0.0f)
        g += weight_decay * w;
    if (momentum != 0.0f) {
        float b = first_step ? g : momentum * buf[i] + (1.0f - dampening) * g;
        buf[i] = b;
        g = nesterov ? g + momentum * b : b;
    }
    p[i] = w - lr * g;
}

#define SGD_HP lr, weight_decay, momentum, dampening, nesterov, first_step

__kernel void optim_sgd(__global float *p, long po, __global const float *gr, long go,
                        __global float *buf, long bo, long n, float lr,
                        float weight_decay, float momentum, float dampening,
                        int nesterov, int first_step)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
        cg_sgd_at(p + po, gr + go, buf + bo, i, SGD_HP);
}

/* torch.optim.Adam / AdamW:
 *   AdamW: p = p * (1 - lr * weight_decay);  Adam: g = grad + weight_decay * p
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g^2
 *   step_size = lr / bias_correction1
 *   denom = sqrt(v) / sqrt(bias_correction2) + eps
 *   p = p - step_size * m / denom
 * p, g, m, v: (n). */
static void cg_adam_at(__global float *p, __global const float *gr, __global float *m,
                       __global float *v, long i, float lr, float weight_decay, float beta1,
                       float beta2, float eps, int decoupled, float step_size, float bc2_sqrt)
{
    float w = p[i];
    float g = gr[i];
    if (weight_decay != 0.0f) {
        if (decoupled)
            w *= 1.0f - lr * weight_decay;
        else
            g += weight_decay * w;
    }
    float mi = beta1 * m[i] + (1.0f - beta1) * g;
    float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    float denom = sqrt(vi) / bc2_sqrt + eps;
    p[i] = w - step_size * (mi / denom);
}

#define ADAM_HP lr, weight_decay, beta1, beta2, eps, decoupled, step_size, bc2_sqrt

__kernel void optim_adam(__global float *p, long po, __global const float *gr, long go,
                         __global float *m, long mo, __global float *v, long vo,
                         long n, float lr, float weight_decay, float beta1,
                         float beta2, float eps, int decoupled, float step_size,
                         float bc2_sqrt)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
        cg_adam_at(p + po, gr + go, m + mo, v + vo, i, ADAM_HP);
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
static void cg_rmsprop_at(__global float *p, __global const float *gr, __global float *v,
                          __global float *buf, __global float *ga, long i, float lr,
                          float weight_decay, float alpha, float eps, float momentum,
                          int centered)
{
    float w = p[i];
    float g = gr[i];
    if (weight_decay != 0.0f)
        g += weight_decay * w;
    float vi = alpha * v[i] + (1.0f - alpha) * g * g;
    v[i] = vi;
    float avg;
    if (centered) {
        float gai = alpha * ga[i] + (1.0f - alpha) * g;
        ga[i] = gai;
        avg = sqrt(vi - gai * gai) + eps;
    } else {
        avg = sqrt(vi) + eps;
    }
    if (momentum > 0.0f) {
        float b = momentum * buf[i] + g / avg;
        buf[i] = b;
        p[i] = w - lr * b;
    } else {
        p[i] = w - lr * g / avg;
    }
}

#define RMSPROP_HP lr, weight_decay, alpha, eps, momentum, centered

__kernel void optim_rmsprop(__global float *p, long po, __global const float *gr, long go,
                            __global float *v, long vo, __global float *buf, long bo,
                            __global float *ga, long gao, long n, float lr,
                            float weight_decay, float alpha, float eps,
                            float momentum, int centered)
{
    for (long i = get_global_id(0); i < n; i += get_global_size(0))
        cg_rmsprop_at(p + po, gr + go, v + vo, buf + bo, ga + gao, i, RMSPROP_HP);
}

/* ---- one element per work-item -----------------------------------------
 * CPU devices: the launch holds exactly n work-items (queue.c
 * cg_cl_launch_exact), so these have no loop and no bounds check. PoCL
 * vectorises a work-group across its work-items only over straight-line
 * code: with the grid-stride loop of the kernels above, Adam was a quarter
 * of a PoCL MLP step. n is taken (and unused) so the arguments match. */

__kernel void optim_sgd_item(__global float *p, long po, __global const float *gr, long go,
                             __global float *buf, long bo, long n, float lr,
                             float weight_decay, float momentum, float dampening,
                             int nesterov, int first_step)
{
    cg_sgd_at(p + po, gr + go, buf + bo, get_global_id(0), SGD_HP);
}

__kernel void optim_adam_item(__global float *p, long po, __global const float *gr, long go,
                              __global float *m, long mo, __global float *v, long vo,
                              long n, float lr, float weight_decay, float beta1,
                              float beta2, float eps, int decoupled, float step_size,
                              float bc2_sqrt)
{
    cg_adam_at(p + po, gr + go, m + mo, v + vo, get_global_id(0), ADAM_HP);
}

__kernel void optim_rmsprop_item(__global float *p, long po, __global const float *gr,
                                 long go, __global float *v, long vo, __global float *buf,
                                 long bo, __global float *ga, long gao, long n, float lr,
                                 float weight_decay, float alpha, float eps,
                                 float momentum, int centered)
{
    cg_rmsprop_at(p + po, gr + go, v + vo, buf + bo, ga + gao, get_global_id(0), RMSPROP_HP);
}

/* ---- several tensors per launch ----------------------------------------
 * Slot k: param, grad and the optimizer's state buffers, each as (buffer,
 * element offset), and its length nk (0: unused). Every work-item takes its
 * grid-stride share of every slot. */

#define SGD_SLOT(k) __global float *p##k, long po##k, __global const float *g##k, long go##k, \
                    __global float *b##k, long bo##k, long n##k
#define SGD_RUN(k) for (long i = gid; i < n##k; i += gsize) \
                       cg_sgd_at(p##k + po##k, g##k + go##k, b##k + bo##k, i, SGD_HP)

__kernel void optim_sgd_multi(SGD_SLOT(0), SGD_SLOT(1), SGD_SLOT(2), SGD_SLOT(3),
                              SGD_SLOT(4), SGD_SLOT(5), SGD_SLOT(6), SGD_SLOT(7),
                              float lr, float weight_decay, float momentum, float dampening,
                              int nesterov, int first_step)
{
    const long gid = get_global_id(0), gsize = get_global_size(0);
    SGD_RUN(0); SGD_RUN(1); SGD_RUN(2); SGD_RUN(3);
    SGD_RUN(4); SGD_RUN(5); SGD_RUN(6); SGD_RUN(7);
}

#define ADAM_SLOT(k) __global float *p##k, long po##k, __global const float *g##k, long go##k, \
                     __global float *m##k, long mo##k, __global float *v##k, long vo##k, long n##k
#define ADAM_RUN(k) for (long i = gid; i < n##k; i += gsize) \
                        cg_adam_at(p##k + po##k, g##k + go##k, m##k + mo##k, v##k + vo##k, i, \
                                   ADAM_HP)

__kernel void optim_adam_multi(ADAM_SLOT(0), ADAM_SLOT(1), ADAM_SLOT(2), ADAM_SLOT(3),
                               ADAM_SLOT(4), ADAM_SLOT(5), ADAM_SLOT(6), ADAM_SLOT(7),
                               float lr, float weight_decay, float beta1, float beta2,
                               float eps, int decoupled, float step_size, float bc2_sqrt)
{
    const long gid = get_global_id(0), gsize = get_global_size(0);
    ADAM_RUN(0); ADAM_RUN(1); ADAM_RUN(2); ADAM_RUN(3);
    ADAM_RUN(4); ADAM_RUN(5); ADAM_RUN(6); ADAM_RUN(7);
}

#define RMS_SLOT(k) __global float *p##k, long po##k, __global const float *g##k, long go##k, \
                    __global float *v##k, long vo##k, __global float *b##k, long bo##k, \
                    __global float *a##k, long ao##k, long n##k
#define RMS_RUN(k) for (long i = gid; i < n##k; i += gsize) \
                       cg_rmsprop_at(p##k + po##k, g##k + go##k, v##k + vo##k, b##k + bo##k, \
                                     a##k + ao##k, i, RMSPROP_HP)

__kernel void optim_rmsprop_multi(RMS_SLOT(0), RMS_SLOT(1), RMS_SLOT(2), RMS_SLOT(3),
                                  RMS_SLOT(4), RMS_SLOT(5), RMS_SLOT(6), RMS_SLOT(7),
                                  float lr, float weight_decay, float alpha, float eps,
                                  float momentum, int centered)
{
    const long gid = get_global_id(0), gsize = get_global_size(0);
    RMS_RUN(0); RMS_RUN(1); RMS_RUN(2); RMS_RUN(3);
    RMS_RUN(4); RMS_RUN(5); RMS_RUN(6); RMS_RUN(7);
}
