/*
 * backends/cpu/cpu_rnn.c — the fused sequence-model kernels: an LSTM cell
 * step forward and backward, and the causal softmax (backend.h states the
 * formulas; the LSTM's are torch.nn.LSTM's documented equations).
 *
 * Like every cpu kernel each element is computed in double from the float
 * inputs and rounded once. The backward reads the float activations that
 * the forward saved, so it sees exactly what a composed graph (sigmoid,
 * tanh, mul, add as separate ops) would have kept.
 */
#include <math.h>

#include "cpu.h"

/* Logistic function without overflow (as cpu_ew.c's CG_EW_SIGMOID). */
static double sigmoid(double x)
{
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

static cg_status check_block(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t rows,
                             int64_t cols, const char *what)
{
    return cg__cpu_check_range(c, p, rows * cols, what);
}

static cg_status check_sizes(struct cg_cpu_ctx *c, const char *what, int64_t batch,
                             int64_t hidden)
{
    if (batch < 0 || hidden < 0 || (hidden > 0 && batch > INT64_MAX / (5 * hidden)))
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT, "%s: bad size (B=%lld, H=%lld)",
                             what, (long long)batch, (long long)hidden);
    return CG_OK;
}

cg_status cg__cpu_lstm_cell(void *ctx, struct cg_ptr c, struct cg_ptr h, struct cg_ptr save,
                            struct cg_ptr gates, struct cg_ptr c_prev, int64_t batch,
                            int64_t hidden)
{
    /* c, h, c_prev: (B, H); save: (B, 5H); gates: (B, 4H) */
    struct cg_cpu_ctx *cx = ctx;
    const int64_t B = batch, H = hidden;
    cg_status s = check_sizes(cx, "lstm_cell", B, H);
    if (s == CG_OK) s = check_block(cx, c, B, H, "lstm_cell c");
    if (s == CG_OK) s = check_block(cx, h, B, H, "lstm_cell h");
    if (s == CG_OK) s = check_block(cx, save, B, 5 * H, "lstm_cell save");
    if (s == CG_OK) s = check_block(cx, gates, B, 4 * H, "lstm_cell gates");
    if (s == CG_OK) s = check_block(cx, c_prev, B, H, "lstm_cell c_prev");
    if (s != CG_OK) return s;
    cx->stats.launches++;
    if (B == 0 || H == 0) return CG_OK;

    for (int64_t b = 0; b < B; b++) {
        const float *G = cg__cpu_at(gates) + b * 4 * H, *cp = cg__cpu_at(c_prev) + b * H;
        float *sv = cg__cpu_at(save) + b * 5 * H;
        float *co = cg__cpu_at(c) + b * H, *ho = cg__cpu_at(h) + b * H;
        for (int64_t j = 0; j < H; j++) {
            double i = sigmoid(G[j]), f = sigmoid(G[H + j]);
            double g = tanh(G[2 * H + j]), o = sigmoid(G[3 * H + j]);
            double cn = f * cp[j] + i * g, t = tanh(cn);
            sv[j] = (float)i;
            sv[H + j] = (float)f;
            sv[2 * H + j] = (float)g;
            sv[3 * H + j] = (float)o;
            sv[4 * H + j] = (float)t;
            co[j] = (float)cn;
            ho[j] = (float)(o * t);
        }
    }
    return CG_OK;
}

cg_status cg__cpu_lstm_cell_backward(void *ctx, struct cg_ptr g_gates, struct cg_ptr g_c_prev,
                                     struct cg_ptr gh, struct cg_ptr gc, struct cg_ptr save,
                                     struct cg_ptr c_prev, int64_t batch, int64_t hidden)
{
    /* g_gates: (B, 4H); g_c_prev, gh, gc, c_prev: (B, H); save: (B, 5H) */
    struct cg_cpu_ctx *cx = ctx;
    const int64_t B = batch, H = hidden;
    cg_status s = check_sizes(cx, "lstm_cell_backward", B, H);
    if (s == CG_OK) s = check_block(cx, g_gates, B, 4 * H, "lstm_cell_backward g_gates");
    if (s == CG_OK) s = check_block(cx, g_c_prev, B, H, "lstm_cell_backward g_c_prev");
    if (s == CG_OK) s = check_block(cx, gh, B, H, "lstm_cell_backward gh");
    if (s == CG_OK) s = check_block(cx, gc, B, H, "lstm_cell_backward gc");
    if (s == CG_OK) s = check_block(cx, save, B, 5 * H, "lstm_cell_backward save");
    if (s == CG_OK) s = check_block(cx, c_prev, B, H, "lstm_cell_backward c_prev");
    if (s != CG_OK) return s;
    cx->stats.launches++;
    if (B == 0 || H == 0) return CG_OK;

    for (int64_t b = 0; b < B; b++) {
        const float *sv = cg__cpu_at(save) + b * 5 * H, *cp = cg__cpu_at(c_prev) + b * H;
        const float *dh = cg__cpu_at(gh) + b * H, *dcn = cg__cpu_at(gc) + b * H;
        float *dG = cg__cpu_at(g_gates) + b * 4 * H, *dcp = cg__cpu_at(g_c_prev) + b * H;
        for (int64_t j = 0; j < H; j++) {
            double i = sv[j], f = sv[H + j], g = sv[2 * H + j], o = sv[3 * H + j];
            double t = sv[4 * H + j];
            double dc = dcn[j] + (double)dh[j] * o * (1.0 - t * t);
            dG[j] = (float)(dc * g * i * (1.0 - i));
            dG[H + j] = (float)(dc * cp[j] * f * (1.0 - f));
            dG[2 * H + j] = (float)(dc * i * (1.0 - g * g));
            dG[3 * H + j] = (float)((double)dh[j] * t * o * (1.0 - o));
            dcp[j] = (float)(dc * f);
        }
    }
    return CG_OK;
}

cg_status cg__cpu_softmax_causal(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                                 int64_t cols, int64_t period)
{
    /* out, in: (rows, cols) */
    struct cg_cpu_ctx *c = ctx;
    if (rows < 0 || cols < 0 || period < 1 || (cols > 0 && rows > INT64_MAX / cols))
        return cg__cpu_error(c, CG_STATUS_INVALID_ARGUMENT,
                             "softmax_causal: bad shape (%lld, %lld) or period %lld",
                             (long long)rows, (long long)cols, (long long)period);
    cg_status s = check_block(c, out, rows, cols, "softmax_causal out");
    if (s == CG_OK) s = check_block(c, in, rows, cols, "softmax_causal in");
    if (s != CG_OK) return s;
    c->stats.launches++;

    for (int64_t r = 0; r < rows && cols > 0; r++) {
        const float *x = cg__cpu_at(in) + r * cols;
        float *y = cg__cpu_at(out) + r * cols;
        int64_t q = r % period, n = q < cols ? q + 1 : cols; /* columns seen */
        double max = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j < n; j++)
            if (x[j] > max) max = x[j];
        for (int64_t j = 0; j < n; j++) sum += exp(x[j] - max);
        for (int64_t j = 0; j < n; j++) y[j] = (float)(exp(x[j] - max) / sum);
        for (int64_t j = n; j < cols; j++) y[j] = 0.0f;
    }
    return CG_OK;
}
