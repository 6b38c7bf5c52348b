/*
 * src/data/data-impl.h — helpers shared by the files of src/data (never
 * installed).
 */
#ifndef CLGRAD_DATA_IMPL_H
#define CLGRAD_DATA_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clgrad/data.h"
#include "core/internal.h"

/* splitmix64 (Steele, Lea, Flood: "Fast splittable pseudorandom number
 * generators", OOPSLA 2014): a tiny seeded generator for host-only code that
 * has no context (dataset splits). */
static inline uint64_t cg__splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A uniform integer in [0, n) from 64 random bits, without modulo bias
 * (Lemire, "Fast random integer generation in an interval", 2019, with
 * rejection). next(state) supplies the bits. */
static inline uint64_t cg__bounded(uint64_t (*next)(void *), void *state, uint64_t n)
{
    uint64_t threshold = (0 - n) % n;   /* 2^64 mod n */
    for (;;) {
        uint64_t r = next(state);
        if (r >= threshold) return r % n;
    }
}

/* Fisher-Yates (Knuth, TAOCP vol. 2, 3.4.2, Algorithm P): perm (n) becomes
 * a uniformly random permutation of 0..n-1. */
void cg__permutation(int64_t *perm, int64_t n, uint64_t (*next)(void *), void *state);

/* Dataset internals. */
struct cg_dataset *cg__dataset_alloc(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                     bool has_y, int64_t y_dim, int n_classes);
char *cg__strdup(const char *s);

#endif
