/*
 * tools/bench_fma.c — the multiply-add loop behind clgrad-bench's "machine
 * peak". tools/meson.build compiles this file up to three times: plainly
 * (BENCH_FMA_NAME = bench_fma_generic, 8 lanes), with -mfma -mavx2
 * (bench_fma_avx2, 8 lanes: 256-bit FMAs) and with -mavx512f
 * (bench_fma_avx512, BENCH_FMA_LANES 16: 512-bit FMAs); clgrad-bench calls
 * the widest one the cpu reports (__builtin_cpu_supports, which also asks
 * the OS whether it saves the wide registers).
 *
 * Why this shape: a fused multiply-add has a latency of 4-5 cycles and two
 * issue ports on current x86 cores, so at least 8-10 independent chains of
 * vectors are needed to keep both ports busy every cycle (Agner Fog,
 * instruction tables, "VFMADD132PS"; the same reasoning as the accumulator
 * blocking of BLIS/OpenBLAS micro-kernels). Twelve chains leave headroom
 * and, with x and y, fit the 16 (AVX2) or 32 (AVX-512) vector registers.
 * GCC vector extensions keep the loop plain C; -ffp-contract=fast lets the
 * compiler fuse a * x + y into one FMA even under -std=c11.
 */
#include <stdint.h>

#ifndef BENCH_FMA_NAME
#define BENCH_FMA_NAME bench_fma_generic
#endif
#ifndef BENCH_FMA_LANES
#define BENCH_FMA_LANES 8
#endif

#define LANES BENCH_FMA_LANES
#define CHAINS 12

typedef float vf __attribute__((vector_size(LANES * sizeof(float))));

double BENCH_FMA_NAME(int64_t iters, float *sink);

/* Runs iters rounds of CHAINS independent LANES-wide multiply-adds;
 * returns the floating-point operations done (2 per lane per multiply-add)
 * and stores a value that depends on every chain in *sink, so nothing is
 * optimised away. */
double BENCH_FMA_NAME(int64_t iters, float *sink)
{
    /* x slightly below 1 and a small y keep every chain finite and normal. */
    vf x, y, acc[CHAINS];
    for (int l = 0; l < LANES; l++) {
        x[l] = 1.0f - 1e-7f * (float)(l % 8 + 1);
        y[l] = 1e-7f * (float)(l % 8 + 1);
    }
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < LANES; l++) acc[c][l] = 1.0f + 0.01f * (float)(c * LANES + l);
    for (int64_t i = 0; i < iters; i++) {
        /* Written out so the accumulators stay in registers. */
        acc[0] = acc[0] * x + y;
        acc[1] = acc[1] * x + y;
        acc[2] = acc[2] * x + y;
        acc[3] = acc[3] * x + y;
        acc[4] = acc[4] * x + y;
        acc[5] = acc[5] * x + y;
        acc[6] = acc[6] * x + y;
        acc[7] = acc[7] * x + y;
        acc[8] = acc[8] * x + y;
        acc[9] = acc[9] * x + y;
        acc[10] = acc[10] * x + y;
        acc[11] = acc[11] * x + y;
    }
    float s = 0.0f;
    for (int c = 0; c < CHAINS; c++)
        for (int l = 0; l < LANES; l++) s += acc[c][l];
    *sink = s;
    return (double)iters * CHAINS * LANES * 2.0;
}
