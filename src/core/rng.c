/*
 * src/core/rng.c — the context's host random generator: xoshiro256**
 * (Blackman & Vigna, "Scrambled linear pseudorandom number generators",
 * 2021), seeded by splitmix64. Initialisers and dropout masks draw from it
 * on the host, so one seed gives the same values on every backend.
 */
#include <math.h>
#include <string.h>

#include "core/internal.h"

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

CG_API void cg_seed(cg_ctx *ctx, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < 4; i++) ctx->rng[i] = splitmix64(&s);
}

CG_API uint64_t cg_rand_u64(cg_ctx *ctx)
{
    uint64_t *s = ctx->rng;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

CG_API double cg_rand_uniform(cg_ctx *ctx)
{
    return (double)(cg_rand_u64(ctx) >> 11) * 0x1.0p-53;
}

/* Box-Muller; draws two uniforms per call so the stream is position-only. */
CG_API double cg_rand_normal(cg_ctx *ctx)
{
    double u1 = cg_rand_uniform(ctx), u2 = cg_rand_uniform(ctx);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

CG_API void cg_rand_state(const cg_ctx *ctx, uint64_t state[4])
{
    memcpy(state, ctx->rng, sizeof ctx->rng);
}

CG_API void cg_rand_set_state(cg_ctx *ctx, const uint64_t state[4])
{
    memcpy(ctx->rng, state, sizeof ctx->rng);
}
