/*
 * tests/fuzz/fuzz_safetensors.c — the safetensors reader, and the writer
 * on what the reader accepted.
 *
 * Invariants: a read set has unique non-empty names, 0..CG_MAX_DIMS dims,
 * numel the product of the shape; writing it succeeds (the writer never
 * refuses what the reader produced) and reading that back gives the same
 * tensors (shapes and bits) and metadata, in the same order.
 */
#include <string.h>

#include "clgrad/clgrad.h"
#include "fuzz.h"

static void check_set(const struct cg_safetensors *s)
{
    for (int i = 0; i < s->n_tensors; i++) {
        const struct cg_st_tensor *t = &s->tensors[i];
        FUZZ_CHECK(t->name && t->name[0], "tensor %d has no name", i);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= CG_MAX_DIMS, "\"%s\": ndim %d", t->name, t->ndim);
        int64_t n = 1;
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0, "\"%s\": dim %d", t->name, d);
            n *= t->shape[d];
        }
        FUZZ_CHECK(n == t->numel && t->data, "\"%s\": numel %lld, product %lld", t->name,
                   (long long)t->numel, (long long)n);
        for (int j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(s->tensors[j].name, t->name) != 0, "duplicate \"%s\"", t->name);
    }
    for (int i = 0; i < s->n_meta; i++)
        for (int j = 0; j < i; j++)
            FUZZ_CHECK(strcmp(s->meta[j].key, s->meta[i].key) != 0, "duplicate key \"%s\"",
                       s->meta[i].key);
}

static void check_equal(const struct cg_safetensors *a, const struct cg_safetensors *b)
{
    FUZZ_CHECK(a->n_tensors == b->n_tensors && a->n_meta == b->n_meta, "%d/%d tensors, %d/%d meta",
               a->n_tensors, b->n_tensors, a->n_meta, b->n_meta);
    for (int i = 0; i < a->n_tensors; i++) {
        const struct cg_st_tensor *x = &a->tensors[i], *y = &b->tensors[i];
        FUZZ_CHECK(strcmp(x->name, y->name) == 0 && x->ndim == y->ndim && x->numel == y->numel &&
                       memcmp(x->shape, y->shape, (size_t)x->ndim * sizeof x->shape[0]) == 0,
                   "tensor %d: \"%s\" vs \"%s\"", i, x->name, y->name);
        FUZZ_CHECK(memcmp(x->data, y->data, (size_t)x->numel * sizeof(float)) == 0,
                   "tensor \"%s\": data changed", x->name);
    }
    for (int i = 0; i < a->n_meta; i++)
        FUZZ_CHECK(strcmp(a->meta[i].key, b->meta[i].key) == 0 &&
                       strcmp(a->meta[i].value, b->meta[i].value) == 0,
                   "metadata %d: \"%s\" vs \"%s\"", i, a->meta[i].key, b->meta[i].key);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_file(0, "in.safetensors", data, size, 0);
    struct cg_safetensors *s = NULL, *back = NULL;
    if (cg_safetensors_read(path, &s) != CG_OK) {
        FUZZ_CHECK(!s && cg_last_error(NULL)[0], "a failure with a result or no message");
        return 0;
    }
    check_set(s);
    char out[512];
    snprintf(out, sizeof out, "%s/out.safetensors", fuzz_dir());
    FUZZ_CHECK(cg_safetensors_write(out, s) == CG_OK, "writing what was read: %s",
               cg_last_error(NULL));
    FUZZ_CHECK(cg_safetensors_read(out, &back) == CG_OK, "reading what was written: %s",
               cg_last_error(NULL));
    check_equal(s, back);
    cg_safetensors_free(back);
    cg_safetensors_free(s);
    return 0;
}
