/*
 * tests/fuzz/fuzz.h — what the fuzz targets share.
 *
 * Each target is one LLVMFuzzerTestOneInput. Built with clang and
 * -Dfuzz=enabled it links libFuzzer (with ASan+UBSan); otherwise it links
 * replay.c, a main that runs the function over every file of a corpus, so
 * `meson test` replays tests/fuzz/corpus/<target>/ in every build.
 * A target checks invariants with FUZZ_CHECK, which aborts with a message:
 * a violated invariant is a finding just as a crash is.
 */
#ifndef CLGRAD_FUZZ_H
#define CLGRAD_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                        \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                            \
            fprintf(stderr, "\n");                                                   \
            abort();                                                                 \
        }                                                                            \
    } while (0)

/* A private folder for this process's files (removed at exit). */
const char *fuzz_dir(void);
/* Writes n bytes to fuzz_dir()/name (gzip-compressed when gz) and returns
 * the path (a static buffer per slot 0..3). */
const char *fuzz_file(int slot, const char *name, const uint8_t *data, size_t n, int gz);

/* Is s valid UTF-8 (RFC 3629)? What a checkpoint's JSON header needs. */
bool fuzz_utf8_valid(const char *s);

#endif
