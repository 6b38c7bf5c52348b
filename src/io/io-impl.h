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

/* Is s valid UTF-8 (RFC 3629)? If not, *bad (may be NULL) is the offset
 * of the first invalid byte. */
bool cg__utf8_valid(const char *s, size_t *bad);

/* Reads path as cg_safetensors_read does, but calls check(user, set, want)
 * after the header is validated and before any tensor data is read: set
 * holds every tensor's name, shape and numel (data NULL) in file order and
 * the metadata; want[i] (all true on entry) may be cleared to leave tensor
 * i out (its data is never read). A check that fails (its own message set)
 * ends the read with its status. check NULL: read everything. */
typedef cg_status (*cg__st_check_fn)(void *user, const struct cg_safetensors *set, bool *want);
cg_status cg__safetensors_read_checked(const char *path, cg__st_check_fn check, void *user,
                                       struct cg_safetensors **out);

#endif
