/*
 * src/io/io-impl.h — what checkpoint.c shares with safetensors.c: JSON
 * strings appended to a growable string (core's struct cg__sb), and the
 * strict JSON string-array parser (class names in the metadata).
 */
#ifndef CLGRAD_IO_IMPL_H
#define CLGRAD_IO_IMPL_H

#include <stdbool.h>
#include <stddef.h>

#include "clgrad/io.h"
#include "core/internal.h"   /* struct cg__sb */

/* Appends s as a JSON string literal ("..." with escapes). */
void cg__sb_json_string(struct cg__sb *b, const char *s);

/* Parses exactly a JSON array of strings ("[\"a\", \"b\"]"). On success
 * *out holds *n malloc'd strings (free each, then the array); on failure
 * returns false with the reason in err. */
bool cg__json_string_array(const char *s, char ***out, int *n, char *err, size_t errlen);

#endif
