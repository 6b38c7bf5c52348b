/*
 * src/io/io-impl.h — what checkpoint.c shares with safetensors.c: the
 * growable string used to build JSON, and the strict JSON string-array
 * parser (class names in the metadata).
 */
#ifndef CLGRAD_IO_IMPL_H
#define CLGRAD_IO_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "clgrad/io.h"

/* A growable NUL-terminated string; oom is sticky. */
struct cg__sb {
    char *p;
    size_t n, cap;
    bool oom;
};
void cg__sb_putn(struct cg__sb *b, const char *s, size_t n);
void cg__sb_puts(struct cg__sb *b, const char *s);
void cg__sb_printf(struct cg__sb *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Appends s as a JSON string literal ("..." with escapes). */
void cg__sb_json_string(struct cg__sb *b, const char *s);

/* Parses exactly a JSON array of strings ("[\"a\", \"b\"]"). On success
 * *out holds *n malloc'd strings (free each, then the array); on failure
 * returns false with the reason in err. */
bool cg__json_string_array(const char *s, char ***out, int *n, char *err, size_t errlen);

#endif
