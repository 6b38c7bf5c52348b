/*
 * tests/harness.h — shared fixtures for the cmocka suites.
 *
 * Every suite that touches a device creates its context through
 * th_ctx_create(), which honours CLGRAD_BACKEND. When that backend is
 * missing the suite skips (exit 77) on a developer's machine but fails
 * loudly in CI (CI=true), as a missing OpenCL device must never pass there.
 */
#ifndef CLGRAD_TEST_HARNESS_H
#define CLGRAD_TEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "clgrad/clgrad.h"

/* Creates a context on $CLGRAD_BACKEND with the given seed; on failure
 * exits 77 (skip) outside CI and 1 inside CI, printing why. */
cg_ctx *th_ctx_create(uint64_t seed);
/* cmocka group setup/teardown storing a cg_ctx* in *state (seed 1234). */
int th_setup(void **state);
int th_teardown(void **state);
/* Runs the group with an optional filter from argv[1]. */
#define TH_RUN(tests) th_run(#tests, tests, sizeof(tests) / sizeof(tests[0]), argc, argv)
int th_run(const char *name, const struct CMUnitTest *tests, size_t n, int argc, char **argv);

/* Deterministic test RNG (independent of the context's). */
uint64_t th_rand_u64(uint64_t *s);
double th_rand_uniform(uint64_t *s, double lo, double hi);
void th_fill_uniform(uint64_t *s, float *x, int64_t n, float lo, float hi);

/* Asserts max |a-b| / (atol + rtol*|b|) <= 1 over n values; prints the
 * worst index on failure. */
void th_assert_close(const float *a, const double *b, int64_t n, double rtol,
                     double atol, const char *what);
void th_assert_close_f(const float *a, const float *b, int64_t n, double rtol,
                       double atol, const char *what);
/* Asserts that the context's last error contains `needle`. */
void th_assert_error_contains(const cg_ctx *ctx, const char *needle);

/* A host-memory arena for tests: th_talloc returns zeroed memory that
 * th_arena_release(mark) frees (everything since th_arena_mark() returned
 * mark); th_arena_setup/th_arena_teardown are th_setup/th_teardown that
 * also empty the arena, so nothing leaks when an assertion fails. */
void *th_talloc(size_t bytes);
#define TH_TALLOC(type, n) ((type *)th_talloc(sizeof(type) * (size_t)(n)))
int th_arena_mark(void);
void th_arena_release(int mark);
int th_arena_setup(void **state);
int th_arena_teardown(void **state);

/* A context and an empty temporary folder (/tmp/clgrad-<tag>-XXXXXX) for
 * tests that write files; th_dir_teardown removes the folder's files, the
 * folder and the context. */
struct th_dirfx {
    cg_ctx *ctx;
    char dir[64];
};
int th_dir_setup(void **state, uint64_t seed, const char *tag);
int th_dir_teardown(void **state);

/* Name of the backend under test ("cpu", "opencl"). */
const char *th_backend(void);

/* An RNN/LSTM/GRU with explicit states, through cg_module_forward_ex:
 * h0/c0 NULL = zeros; *hn, *cn (when not NULL) get the final states. */
cg_tensor *th_rnn_run(cg_module *m, cg_tensor *x, cg_tensor *h0, cg_tensor *c0,
                      cg_tensor **hn, cg_tensor **cn);
/* Self-attention, causal or not, through cg_module_forward_ex. */
cg_tensor *th_self_attention(cg_module *m, cg_tensor *x, bool causal);

#endif
