/*
 * src/data/data-impl.h — helpers shared by the files of src/data (never
 * installed).
 */
#ifndef CLGRAD_DATA_IMPL_H
#define CLGRAD_DATA_IMPL_H

#include <locale.h>
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

/* Numbers in files mean the same whatever setlocale() the program called:
 * between begin and end this thread parses in the C locale (POSIX 2008
 * uselocale, thread-local, so other threads keep theirs). */
struct cg__c_numeric {
    locale_t c, old;
};
static inline void cg__c_numeric_begin(struct cg__c_numeric *s)
{
    s->c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    s->old = s->c ? uselocale(s->c) : (locale_t)0;
}
static inline void cg__c_numeric_end(struct cg__c_numeric *s)
{
    if (!s->c) return;
    uselocale(s->old);
    freelocale(s->c);
}

/* A date or date-time cell (transforms.c): "YYYY-MM-DD" or "YYYY/MM/DD"
 * (month and day of one or two digits), optionally "T" or " " and
 * "HH:MM[:SS[.fff]]", optionally "Z" or "+HH:MM" / "-HHMM" (ignored). */
struct cg__date {
    int year, month, day;      /* a real calendar date                    */
    double hour;               /* hours since midnight, fraction included */
    bool has_time;
};
bool cg__date_parse(const char *s, struct cg__date *d);
/* The numeric features of a date: year, month sin/cos, day-of-year sin/cos,
 * weekday (Monday 0), hour sin/cos; out has CG__DATE_FEATURES values. */
#define CG__DATE_FEATURES 8
extern const char *const cg__date_feature_names[CG__DATE_FEATURES];
void cg__date_features(const struct cg__date *d, float *out);

/* Dataset internals. */
struct cg_dataset *cg__dataset_alloc(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                     bool has_y, int64_t y_dim, int n_classes);
char *cg__strdup(const char *s);
/* out (k, sample_numel) = ds's samples rows[0..k) (rows NULL: 0..k-1) as
 * floats, whatever ds's storage (bytes are divided by x_div). */
void cg__dataset_rows_to_float(const struct cg_dataset *ds, const int64_t *rows, int64_t k,
                               float *out);

#endif
