/*
 * tests/fuzz/fuzz_idx.c — the IDX reader, plain and gzip, and the
 * images + labels pair loader.
 *
 * Input: byte 0 the mode (bit 0: gzip the payload before reading; bit 1:
 * split the payload into an images file and a labels file at the offset in
 * bytes 1-2, and load the pair; bit 2: scale uint8 pixels), then the
 * payload. Invariants: dims positive and their product numel; every value
 * finite and, for integer types, an integer in the type's range; a pair's
 * samples and labels agree in number, labels are class indices below
 * n_classes (itself at most CG_IDX_MAX_CLASSES), scaled pixels in [0, 1].
 */
#include <math.h>
#include <string.h>

#include "clgrad/clgrad.h"
#include "fuzz.h"

static void check_idx(const struct cg_idx *x)
{
    FUZZ_CHECK(x->ndim >= 1 && x->ndim <= CG_IDX_MAX_DIMS, "ndim %d", x->ndim);
    int64_t n = 1;
    for (int d = 0; d < x->ndim; d++) {
        FUZZ_CHECK(x->dims[d] >= 1, "dim %d is %lld", d, (long long)x->dims[d]);
        n *= x->dims[d];
    }
    FUZZ_CHECK(n == x->numel, "numel %lld, product %lld", (long long)x->numel, (long long)n);
    double lo = -INFINITY, hi = INFINITY;
    switch (x->type) {
    case 0x08: lo = 0; hi = 255; break;
    case 0x09: lo = -128; hi = 127; break;
    case 0x0B: lo = -32768; hi = 32767; break;
    case 0x0C: lo = -2147483648.0; hi = 2147483648.0; break;   /* float rounding */
    case 0x0D: case 0x0E: break;
    default: FUZZ_CHECK(0, "type 0x%02x", x->type);
    }
    for (int64_t i = 0; i < x->numel; i++) {
        float v = x->data[i];
        FUZZ_CHECK(isfinite(v), "element %lld is %g", (long long)i, (double)v);
        if (x->type != 0x0D && x->type != 0x0E)
            FUZZ_CHECK(v >= lo && v <= hi && v == floorf(v), "element %lld is %g in type 0x%02x",
                       (long long)i, (double)v, x->type);
    }
}

static void check_pair(const struct cg_dataset *ds, int scale)
{
    FUZZ_CHECK(ds->n >= 1 && ds->sample_ndim >= 1 && ds->sample_ndim < CG_MAX_DIMS,
               "n %lld, sample_ndim %d", (long long)ds->n, ds->sample_ndim);
    int64_t m = 1;
    for (int d = 0; d < ds->sample_ndim; d++) m *= ds->sample_shape[d];
    FUZZ_CHECK(m == ds->sample_numel, "sample_numel %lld, product %lld",
               (long long)ds->sample_numel, (long long)m);
    FUZZ_CHECK(ds->n_classes >= 1 && ds->n_classes <= CG_IDX_MAX_CLASSES && ds->y_dim == 0,
               "%d classes", ds->n_classes);
    /* float storage, or bytes (uint8 images) divided by x_div */
    FUZZ_CHECK(ds->x || (ds->x_u8 && ds->x_div > 0), "no samples (x_div %g)", (double)ds->x_div);
    for (int64_t i = 0; i < ds->n * ds->sample_numel; i++) {
        float v = ds->x ? ds->x[i] : (float)ds->x_u8[i] / ds->x_div;
        FUZZ_CHECK(isfinite(v), "pixel %lld is %g", (long long)i, (double)v);
    }
    for (int64_t i = 0; i < ds->n; i++)
        FUZZ_CHECK(ds->y[i] >= 0 && ds->y[i] < ds->n_classes && ds->y[i] == floorf(ds->y[i]),
                   "label %lld is %g of %d classes", (long long)i, (double)ds->y[i],
                   ds->n_classes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3) return 0;
    int gz = data[0] & 1, pair = (data[0] >> 1) & 1, scale = (data[0] >> 2) & 1;
    const uint8_t *p = data + 3;
    size_t n = size - 3;
    if (!pair) {
        const char *path = fuzz_file(0, "in.idx", p, n, gz);
        struct cg_idx *x = NULL;
        if (cg_idx_read(path, &x) == CG_OK) check_idx(x);
        else FUZZ_CHECK(!x && cg_last_error(NULL)[0], "a failure with a result or no message");
        cg_idx_free(x);
        return 0;
    }
    size_t cut = (size_t)(data[1] | data[2] << 8);
    if (cut > n) cut = n;
    const char *img = fuzz_file(0, "images.idx", p, cut, gz);
    const char *lab = fuzz_file(1, "labels.idx", p + cut, n - cut, gz);
    struct cg_dataset *ds = NULL;
    cg_status st = cg_idx_load_pair(img, lab, scale, &ds);
    if (st == CG_OK) {
        check_pair(ds, scale);
        /* Scaled uint8 pixels are in [0, 1]: check through a plain read. */
        struct cg_idx *x = NULL;
        if (scale && cg_idx_read(img, &x) == CG_OK && x->type == 0x08)
            for (int64_t i = 0; i < ds->n * ds->sample_numel; i++) {
                float v = ds->x ? ds->x[i] : (float)ds->x_u8[i] / ds->x_div;
                FUZZ_CHECK(v >= 0 && v <= 1, "scaled pixel %lld is %g", (long long)i, (double)v);
            }
        cg_idx_free(x);
    } else {
        FUZZ_CHECK(!ds && cg_last_error(NULL)[0], "a failure with a result or no message");
    }
    cg_dataset_free(ds);
    return 0;
}
