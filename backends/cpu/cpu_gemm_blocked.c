/*
 * backends/cpu/cpu_gemm_blocked.c — a cache-blocked SGEMM in plain C, the
 * cpu backend's GEMM when the build has no OpenBLAS (meson -Dblas=disabled
 * or no openblas.pc):
 *
 *   C = alpha op(A) op(B) + beta C     row-major, op(X) = X or X^T
 *   op(A): (m, k) with pitch lda, op(B): (k, n) with pitch ldb, C: (m, n)
 *   with pitch ldc; beta == 0 overwrites C (NaN included) and alpha == 0
 *   or k == 0 reads neither A nor B, as BLAS specifies.
 *
 * The loop nest is Goto's (Goto & van de Geijn, "Anatomy of
 * High-Performance Matrix Multiplication", ACM TOMS 34(3), 2008), as BLIS
 * and OpenBLAS arrange it:
 *
 *   for jc over n in NC columns            B panel  (KC x NC) -> L3
 *     for pc over k in KC                  pack op(B) into NR-wide slivers
 *       for ic over m in MC rows (threads) pack op(A) into MR-tall slivers
 *         for jr over NC in NR             B sliver (KC x NR)  -> L1
 *           for ir over MC in MR           A sliver (MR x KC)  -> L2
 *             micro-kernel: an MR x NR block of C += A sliver * B sliver
 *
 * Packing makes every operand contiguous in the order the micro-kernel
 * reads it, whatever the transposes and pitches, and pads the edges with
 * zeros so the micro-kernel always computes a full MR x NR block (only the
 * part inside C is stored). The micro-kernel keeps its block in a local
 * in registers (block_sums: twelve 8-wide vectors, in an FMA clone picked
 * at run time), and adds it to C once per sliver pair. Measured on a
 * 2-core AMD EPYC: 63-76 GFLOP/s on one thread at N = 256..2048, against
 * OpenBLAS's ~81 (a plain float accumulator array reached 4-8).
 *
 * Threads: cpu_gemm.c splits a large product into tiles of C, one call
 * here per tile, on the thread that runs the tile (with that thread's
 * packing space, cg__cpu_scratch). Each C element sums its k products in
 * one fixed order wherever a tile begins (the micro-kernel's p loop, then
 * the KC panels in order), so results do not depend on the tiles, nor on
 * the thread count.
 */
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define MR 6
#define NR 16
#define MC 120   /* rows of A per L2 block (a multiple of MR)  */
#define KC 256   /* depth of one packed panel                  */
#define NC 2048  /* columns of B per L3 panel (a multiple of NR) */

/* The operands of one product. */
struct gemm_args {
    int trans_a, trans_b;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha;
    const float *a, *b;
    float *c;
    /* the current (jc, pc) step */
    int64_t jc, nc, pc, kc;
    float *pack_a;          /* one row block: MC * KC floats   */
    const float *pack_b;    /* ceil(nc / NR) * NR * kc floats */
};

/* op(A)[i][p] and op(B)[p][j]. */
static inline float a_at(const struct gemm_args *g, int64_t i, int64_t p)
{
    return g->trans_a ? g->a[p * g->lda + i] : g->a[i * g->lda + p];
}

static inline float b_at(const struct gemm_args *g, int64_t p, int64_t j)
{
    return g->trans_b ? g->b[j * g->ldb + p] : g->b[p * g->ldb + j];
}

/* Rows [i0, i0 + mc) of op(A), columns [pc, pc + kc), into MR-row slivers:
 * dst[(s * kc + p) * MR + r] = op(A)[i0 + s MR + r][pc + p], 0 past m. */
static void pack_a(const struct gemm_args *g, float *dst, int64_t i0, int64_t mc)
{
    for (int64_t s = 0; s * MR < mc; s++, dst += g->kc * MR) {
        int64_t rows = mc - s * MR < MR ? mc - s * MR : MR;
        for (int64_t p = 0; p < g->kc; p++) {
            for (int64_t r = 0; r < rows; r++)
                dst[p * MR + r] = a_at(g, i0 + s * MR + r, g->pc + p);
            for (int64_t r = rows; r < MR; r++) dst[p * MR + r] = 0.0f;
        }
    }
}

/* Columns [jc, jc + nc) of op(B), rows [pc, pc + kc), into NR-column
 * slivers: dst[(s * kc + p) * NR + j] = op(B)[pc + p][jc + s NR + j]. */
static void pack_b(const struct gemm_args *g, float *dst)
{
    for (int64_t s = 0; s * NR < g->nc; s++, dst += g->kc * NR) {
        int64_t cols = g->nc - s * NR < NR ? g->nc - s * NR : NR;
        int64_t j0 = g->jc + s * NR;
        for (int64_t p = 0; p < g->kc; p++) {
            float *d = dst + p * NR;
            if (!g->trans_b && cols == NR) {
                memcpy(d, g->b + (g->pc + p) * g->ldb + j0, sizeof(float) * NR);
                continue;
            }
            for (int64_t j = 0; j < cols; j++) d[j] = b_at(g, g->pc + p, j0 + j);
            for (int64_t j = cols; j < NR; j++) d[j] = 0.0f;
        }
    }
}

/* The MR x NR block of sums over one sliver pair: acc = a^T b, a (kc, MR),
 * b (kc, NR). With GCC/Clang the rows of acc are vector-extension values
 * (NR / 8 vectors of 8 floats each, lowered to whatever the clone's ISA
 * has), which the compiler keeps in registers across the p loop; a plain
 * float array of 64 accumulators it spills to the stack each iteration
 * (measured: 4 GFLOP/s). Elsewhere the plain loops. */
#if defined(__GNUC__)
typedef float cg_v8sf __attribute__((vector_size(32)));
/* the same, for loads and stores at any float's alignment */
typedef float cg_v8sf_u __attribute__((vector_size(32), aligned(4), may_alias));
/* On x86-64 an FMA clone (FMA implies AVX: 8 wide) with contraction on, so
 * each a * b + acc is one fused multiply-add, as in every BLAS. Dispatch
 * by feature: "arch=haswell" would test the cpu model and miss AMD's. */
#if !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && __GNUC__ >= 8
#define CG_GEMM_KERNEL                                                                   \
    __attribute__((optimize("O3", "fp-contract=fast"), target_clones("fma", "default")))
#else
#define CG_GEMM_KERNEL
#endif
CG_GEMM_KERNEL static void block_sums(int64_t kc, const float *restrict a,
                                     const float *restrict b, float acc_out[MR][NR])
{
    cg_v8sf acc[MR][NR / 8];
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NR / 8; v++) acc[r][v] = (cg_v8sf){0};
    for (int64_t p = 0; p < kc; p++, a += MR, b += NR) {
        cg_v8sf bv[NR / 8];
        for (int v = 0; v < NR / 8; v++) bv[v] = *(const cg_v8sf_u *)(b + 8 * v);
        for (int r = 0; r < MR; r++)
            for (int v = 0; v < NR / 8; v++) acc[r][v] += a[r] * bv[v];
    }
    for (int r = 0; r < MR; r++)
        for (int v = 0; v < NR / 8; v++) *(cg_v8sf_u *)&acc_out[r][8 * v] = acc[r][v];
}
#else
static void block_sums(int64_t kc, const float *restrict a, const float *restrict b,
                       float acc[MR][NR])
{
    for (int r = 0; r < MR; r++)
        for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
    for (int64_t p = 0; p < kc; p++, a += MR, b += NR)
        for (int r = 0; r < MR; r++)
            for (int j = 0; j < NR; j++) acc[r][j] += a[r] * b[j];
}
#endif

/* C[0..rows)[0..cols) += alpha * (a sliver (kc, MR)^T · b sliver (kc, NR)). */
static void micro_kernel(int64_t kc, const float *restrict a, const float *restrict b,
                         float *c, int64_t ldc, int64_t rows, int64_t cols, float alpha)
{
    float acc[MR][NR];
    block_sums(kc, a, b, acc);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++) c[r * ldc + j] += alpha * acc[r][j];
}

/* Row blocks of the current (jc, pc) step: pack, then multiply. */
static void row_blocks(const struct gemm_args *g)
{
    for (int64_t i0 = 0; i0 < g->m; i0 += MC) {
        int64_t mc = g->m - i0 < MC ? g->m - i0 : MC;
        float *pa = g->pack_a;   /* one row block at a time */
        pack_a(g, pa, i0, mc);
        for (int64_t jr = 0; jr < g->nc; jr += NR) {
            const float *pb = g->pack_b + jr * g->kc;
            int64_t cols = g->nc - jr < NR ? g->nc - jr : NR;
            for (int64_t ir = 0; ir < mc; ir += MR) {
                int64_t rows = mc - ir < MR ? mc - ir : MR;
                micro_kernel(g->kc, pa + ir * g->kc, pb, g->c + (i0 + ir) * g->ldc + g->jc + jr,
                             g->ldc, rows, cols, g->alpha);
            }
        }
    }
}

cg_status cg__cpu_sgemm_blocked(struct cg_cpu_ctx *c, int trans_a, int trans_b, int64_t m,
                                int64_t n, int64_t k, float alpha, const float *a,
                                int64_t lda, const float *b, int64_t ldb, float beta, float *cm,
                                int64_t ldc)
{
    /* a: stored (m, k), or (k, m) if trans_a; b: stored (k, n), or (n, k)
     * if trans_b; cm: (m, n) with pitch ldc */
    if (m == 0 || n == 0) return CG_OK;
    /* C = beta C first (BLAS: beta == 0 does not read C); the panels below
     * then only add. */
    for (int64_t i = 0; i < m; i++) {
        float *row = cm + i * ldc;
        if (beta == 0.0f) memset(row, 0, sizeof(float) * (size_t)n);
        else if (beta != 1.0f)
            for (int64_t j = 0; j < n; j++) row[j] *= beta;
    }
    if (k == 0 || alpha == 0.0f) return CG_OK;

    int64_t mc_max = m < MC ? (m + MR - 1) / MR * MR : MC;
    int64_t nc_max = n < NC ? (n + NR - 1) / NR * NR : NC;
    int64_t kc_max = k < KC ? k : KC;
    float *space = cg__cpu_scratch(c, sizeof(float) * (size_t)(mc_max * KC + nc_max * kc_max));
    if (!space) return CG_STATUS_OUT_OF_MEMORY;
    struct gemm_args g = {.trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k,
                          .lda = lda, .ldb = ldb, .ldc = ldc, .alpha = alpha, .a = a, .b = b,
                          .c = cm, .pack_a = space};
    float *pb = space + mc_max * KC;
    g.pack_b = pb;
    for (g.jc = 0; g.jc < n; g.jc += NC) {
        g.nc = n - g.jc < NC ? n - g.jc : NC;
        for (g.pc = 0; g.pc < k; g.pc += KC) {
            g.kc = k - g.pc < KC ? k - g.pc : KC;
            pack_b(&g, pb);
            row_blocks(&g);
        }
    }
    return CG_OK;
}
