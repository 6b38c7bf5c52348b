/*
 * backends/cpu/cpu_vmath.h — float exp, logistic, tanh and the normal CDF
 * written so that GCC vectorises loops that call them (no libm calls, no
 * branches: both sides of a choice are computed and one is selected).
 *
 * Used by the fused sequence-model kernels (cpu_rnn.c, cpu_seq.c), where
 * libm's double exp/tanh/erf per element cost more than the GEMMs around
 * them. These kernels compute in float, as PyTorch's vectorised CPU kernels
 * (Sleef) do; the error of each function is a few float ulps, far inside
 * the 1e-5 relative tolerance the tests hold every backend to. The
 * elementwise ops of cpu_ew.c keep their double formulas.
 */
#ifndef CLGRAD_BACKENDS_CPU_VMATH_H
#define CLGRAD_BACKENDS_CPU_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include "../../cl/cg_erf.h"   /* the erf polynomial, shared with cl/ew.cl, cl/seq.cl */

/* c ? a : b through bit masks. GCC does not if-convert a float ?: whose
 * arms compute (with -ftrapping-math an arm might trap), which would keep
 * the whole loop scalar; this form it vectorises into a blend. */
static inline float cg_vselectf(int c, float a, float b)
{
    uint32_t ua, ub, m = -(uint32_t)(c != 0);
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    uint32_t r = (ua & m) | (ub & ~m);
    float f;
    memcpy(&f, &r, sizeof f);
    return f;
}

/* exp(x): Cephes expf. x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two
 * parts so n ln2 is exact), exp(r) by a degree-7 polynomial, 2^n put into
 * the exponent bits. x is clamped to [-87, 88]: below, the result would be
 * subnormal (we return ~1.6e-38 instead of 0); above, it would overflow. */
static inline float cg_vexpf(float x)
{
    x = cg_vselectf(x < -87.0f, -87.0f, x);
    x = cg_vselectf(x > 88.0f, 88.0f, x);
    /* n = round(x / ln2): adding 1.5 * 2^23 leaves no fraction bits (a
     * libm-free floor, so the loop vectorises) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* NaN stays NaN through p; n must not (a NaN-to-int conversion is
     * undefined behaviour, UBSan's report of issue 17 item 2). */
    n = cg_vselectf(n == n, n, 0.0f);
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* 1 / (1 + exp(-x)); exp(-x) of a large negative x clamps, giving ~0. */
static inline float cg_vsigmoidf(float x) { return 1.0f / (1.0f + cg_vexpf(-x)); }

/* tanh(x): Cephes tanhf. For |x| < 0.625 an odd polynomial (relative
 * error ~1e-7 where 1 - 2 / (e^2x + 1) would cancel); else
 * 1 - 2 / (exp(2|x|) + 1) with x's sign. */
static inline float cg_vtanhf(float x)
{
    float a = fabsf(x);
    float z = x * x;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = p * z * x + x;
    float big = 1.0f - 2.0f / (cg_vexpf(2.0f * a) + 1.0f);
    big = copysignf(big, x);
    return cg_vselectf(a < 0.625f, small, big);
}

/* The standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 with erf from
 * Abramowitz & Stegun 7.1.26 (Hastings; |error| <= 1.5e-7), the form
 * PyTorch's vectorised erf uses (ATen vec256_float.h):
 *   erf(a) = 1 - t P(t) exp(-a^2),  t = 1 / (1 + p a),  a = |x| / sqrt 2.
 * exp(-a^2) = exp(-x^2 / 2) = e2 is what the caller passes (GELU's backward
 * reuses it for the density), so this costs no exp of its own: against
 * Numerical Recipes' erfcc, which needs a second exp, bias + GELU ran twice
 * as fast (1.6 vs 3.4 ns an element, AVX2, 2-core EPYC) at the same
 * absolute error (~4e-7 of GELU for |x| <= 6; the relative accuracy of the
 * far negative tail is lost, where GELU is below 1e-4 in magnitude). */
static inline float cg_vnormcdff(float x, float e2)
{
    float t = 1.0f / (1.0f + CG_ERF_P_SQRT1_2 * fabsf(x));
    float p = CG_ERF_POLY(t);
    float half_erfc = 0.5f * p * t * e2;   /* (1 - erf(|x| / sqrt 2)) / 2 */
    return cg_vselectf(x < 0.0f, half_erfc, 1.0f - half_erfc);
}

#endif
