/*
 * tools/bench_fma.c — the multiply-add loop behind clgrad-bench's "machine
 * peak". tools/meson.build compiles this file twice: once plainly
 * (BENCH_FMA_NAME = bench_fma_generic) and, when the compiler accepts
 * -mfma -mavx2, once with them (bench_fma_avx2); clgrad-bench calls the
 * second only when the cpu reports both features.
 *
 * Why this shape: a fused multiply-add has a latency of 4-5 cycles and two
 * issue ports on current x86 cores, so at least 8-10 independent chains of
 * 8-lane vectors are needed to keep both ports busy every cycle (Agner Fog,
 * instruction tables, "VFMADD132PS"; the same reasoning as the accumulator
 * blocking of BLIS/OpenBLAS micro-kernels). Twelve chains leave headroom.
 * GCC vector extensions keep the loop plain C; -ffp-contract=fast lets the
 * compiler fuse a * x + y into one FMA even under -std=c11.
 */
#include <stdint.h>

#ifndef BENCH_FMA_NAME
#define BENCH_FMA_NAME bench_fma_generic
#endif

#define LANES 8
#define CHAINS 12

typedef float v8f __attribute__((vector_size(LANES * sizeof(float))));

double BENCH_FMA_NAME(int64_t iters, float *sink);

/* Runs iters rounds of CHAINS independent 8-lane multiply-adds; returns the
 * floating-point operations done (2 per lane per multiply-add) and stores a
 * value that depends on every chain in *sink, so nothing is optimised away. */
double BENCH_FMA_NAME(int64_t iters, float *sink)
{
    /* x slightly below 1 and a small y keep every chain finite and normal. */
    const v8f x = {0.9999999f, 0.9999998f, 0.9999997f, 0.9999996f,
                   0.9999995f, 0.9999994f, 0.9999993f, 0.9999992f};
    const v8f y = {1e-7f, 2e-7f, 3e-7f, 4e-7f, 5e-7f, 6e-7f, 7e-7f, 8e-7f};
    v8f acc[CHAINS];
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
