/*
 * cl/cg_erf.h - the one definition of the erf polynomial, shared by C and
 * OpenCL C: backends/cpu/cpu_vmath.h includes it, and tools/embed_cl.py
 * puts it in front of cl/ew.cl and cl/seq.cl. Only macros, so it is valid
 * in both languages.
 *
 * Abramowitz & Stegun 7.1.26 (Hastings; |error| <= 1.5e-7), the form
 * PyTorch's vectorised erf uses (ATen vec256_float.h):
 *   erf(a) = 1 - t P(t) exp(-a^2),  t = 1 / (1 + CG_ERF_P a),  a >= 0,
 * with P(t) = CG_ERF_POLY(t), by Horner's rule from the highest term.
 * Callers take a = |x| / sqrt 2: CG_ERF_P_SQRT1_2 folds the 1 / sqrt 2 in.
 */
#ifndef CG_ERF_H
#define CG_ERF_H

#define CG_ERF_P 0.3275911f
#define CG_ERF_P_SQRT1_2 (CG_ERF_P * 0.70710678118654752440f)
#define CG_ERF_A1 0.254829592f
#define CG_ERF_A2 (-0.284496736f)
#define CG_ERF_A3 1.421413741f
#define CG_ERF_A4 (-1.453152027f)
#define CG_ERF_A5 1.061405429f
#define CG_ERF_POLY(t)                                                                      \
    ((((CG_ERF_A5 * (t) + CG_ERF_A4) * (t) + CG_ERF_A3) * (t) + CG_ERF_A2) * (t) + CG_ERF_A1)

#endif
