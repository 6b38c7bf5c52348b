/*
 * backends/cpu/cpu_rnn.c — the fused sequence-model kernels: an LSTM cell
 * step forward and backward (backend.h states the formulas: torch.nn.LSTM's
 * documented equations). The causal softmax is in cpu_softmax.c.
 *
 * Unlike the elementwise ops these kernels compute in float, through the
 * vectorisable exp/tanh/logistic of cpu_vmath.h, one row of the batch per
 * call of a CG_CPU_KERNEL loop: an LSTM step is 5 transcendental functions
 * per hidden unit, and with libm's double exp and tanh the cell cost more
 * than the step's GEMM. The results differ from a double computation by a
 * few float ulps (PyTorch's CPU LSTM cell is float too). The backward
 * reads the float activations that the forward saved, as a composed graph
 * (sigmoid, tanh, mul, add as separate ops) would.
 */
#include <math.h>

#include "cpu.h"
#include "cpu_vmath.h"

static cg_status check_block(struct cg_cpu_ctx *c, struct cg_ptr p, int64_t rows,
                             int64_t cols, const char *what)
{
    return cg__cpu_check_range(c, p, rows * cols, what);
}

/* backend.h's shared check, with the function's name. */
static cg_status check_sizes(struct cg_cpu_ctx *c, const char *what, int64_t batch,
                             int64_t hidden)
{
    char msg[96];
    cg_status s = cg_lstm_sizes_check(batch, hidden, msg, sizeof msg);
    return s == CG_OK ? CG_OK : cg__cpu_error(c, s, "%s: %s", what, msg);
}

/* One batch row of the cell: G (4H) = [i | f | g | o] pre-activations,
 * cp (H) = c_prev; writes sv (5H) = [i | f | g | o | tanh c], co, ho (H). */
CG_CPU_KERNEL static void lstm_cell_row(int64_t H, const float *restrict G,
                                        const float *restrict cp, float *restrict sv,
                                        float *restrict co, float *restrict ho)
{
    for (int64_t j = 0; j < H; j++) {
        float i = cg_vsigmoidf(G[j]), f = cg_vsigmoidf(G[H + j]);
        float g = cg_vtanhf(G[2 * H + j]), o = cg_vsigmoidf(G[3 * H + j]);
        float cn = f * cp[j] + i * g, t = cg_vtanhf(cn);
        sv[j] = i;
        sv[H + j] = f;
        sv[2 * H + j] = g;
        sv[3 * H + j] = o;
        sv[4 * H + j] = t;
        co[j] = cn;
        ho[j] = o * t;
    }
}

/* Its adjoint for one batch row (backend.h's formulas): sv (5H) and cp (H)
 * from the forward, dh, dcn (H) upstream; writes dG (4H) and dcp (H). */
CG_CPU_KERNEL static void lstm_cell_backward_row(int64_t H, const float *restrict sv,
                                                 const float *restrict cp,
                                                 const float *restrict dh,
                                                 const float *restrict dcn, float *restrict dG,
                                                 float *restrict dcp)
{
    for (int64_t j = 0; j < H; j++) {
        float i = sv[j], f = sv[H + j], g = sv[2 * H + j], o = sv[3 * H + j];
        float t = sv[4 * H + j];
        float dc = dcn[j] + dh[j] * o * (1.0f - t * t);
        dG[j] = dc * g * i * (1.0f - i);
        dG[H + j] = dc * cp[j] * f * (1.0f - f);
        dG[2 * H + j] = dc * i * (1.0f - g * g);
        dG[3 * H + j] = dh[j] * t * o * (1.0f - o);
        dcp[j] = dc * f;
    }
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

    for (int64_t b = 0; b < B; b++)
        lstm_cell_row(H, cg__cpu_at(gates) + b * 4 * H, cg__cpu_at(c_prev) + b * H,
                      cg__cpu_at(save) + b * 5 * H, cg__cpu_at(c) + b * H, cg__cpu_at(h) + b * H);
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

    for (int64_t b = 0; b < B; b++)
        lstm_cell_backward_row(H, cg__cpu_at(save) + b * 5 * H, cg__cpu_at(c_prev) + b * H,
                               cg__cpu_at(gh) + b * H, cg__cpu_at(gc) + b * H,
                               cg__cpu_at(g_gates) + b * 4 * H, cg__cpu_at(g_c_prev) + b * H);
    return CG_OK;
}
