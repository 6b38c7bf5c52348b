/*
 * src/data/idx.c — IDX files (the MNIST format), plain or gzipped.
 *
 * Format (yann.lecun.com/exdb/mnist, "THE IDX FILE FORMAT"): a big-endian
 * magic 0x0000TTNN (TT: element type, NN: number of dims), NN big-endian
 * uint32 dims, then the elements, big-endian, row-major.
 *
 * Everything goes through zlib's gzread, which reads plain files as they
 * are. The header is never trusted for an allocation: a plain file's length
 * must match it exactly before anything is allocated; a compressed file's
 * real length is unknown until it is inflated, so its buffer starts at
 * most 16 MiB and grows geometrically only as data really arrives.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/data-impl.h"

#define IDX_CHUNK (64 * 1024)                 /* a multiple of every size */
#define IDX_FIRST_ALLOC ((int64_t)4 << 20)    /* elements: 16 MiB floats  */

static int idx_type_size(int type)
{
    switch (type) {
    case 0x08: case 0x09: return 1;           /* uint8, int8             */
    case 0x0B: return 2;                      /* int16                   */
    case 0x0C: case 0x0D: return 4;           /* int32, float32          */
    case 0x0E: return 8;                      /* float64                 */
    default: return 0;
    }
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* n big-endian elements of type at src -> floats at dst. */
static void idx_convert(int type, const unsigned char *src, int64_t n, float *dst)
{
    for (int64_t i = 0; i < n; i++) {
        switch (type) {
        case 0x08: dst[i] = (float)src[i]; break;
        case 0x09: dst[i] = (float)(int8_t)src[i]; break;
        case 0x0B: dst[i] = (float)(int16_t)(uint16_t)(src[2 * i] << 8 | src[2 * i + 1]); break;
        case 0x0C: dst[i] = (float)(int32_t)be32(src + 4 * i); break;
        case 0x0D: {
            uint32_t u = be32(src + 4 * i);
            memcpy(&dst[i], &u, 4);
            break;
        }
        case 0x0E: {
            uint64_t u = (uint64_t)be32(src + 8 * i) << 32 | be32(src + 8 * i + 4);
            double d;
            memcpy(&d, &u, 8);
            dst[i] = (float)d;
            break;
        }
        }
    }
}

/* gzread of up to n bytes; -1 with a message on a zlib error. */
static int64_t idx_gzread(gzFile g, const char *path, void *dst, unsigned n)
{
    int r = gzread(g, dst, n);
    if (r < 0) {
        int err;
        const char *msg = gzerror(g, &err);
        cg__error(NULL, err == Z_ERRNO ? CG_STATUS_IO_ERROR : CG_STATUS_PARSE_ERROR,
                  "%s: %s", path, err == Z_ERRNO ? strerror(errno) : msg);
        return -1;
    }
    return r;
}

/* Reads and validates magic and dims into idx; *header_bytes is their size. */
static cg_status idx_header(gzFile g, const char *path, struct cg_idx *idx,
                            int64_t *header_bytes)
{
    unsigned char b[4 * CG_IDX_MAX_DIMS];
    int64_t r = idx_gzread(g, path, b, 4);
    if (r < 0) return CG_STATUS_PARSE_ERROR;
    if (r < 4)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: truncated: %lld bytes, too short for an IDX header", path,
                         (long long)r);
    uint32_t magic = be32(b);
    if (b[0] || b[1] || !idx_type_size(b[2]))
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: wrong magic number 0x%08x: not an IDX file (expected 0x0000TTNN, "
                         "TT one of 08 09 0B 0C 0D 0E)",
                         path, magic);
    idx->type = b[2];
    idx->ndim = b[3];
    if (idx->ndim < 1 || idx->ndim > CG_IDX_MAX_DIMS)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: magic 0x%08x declares %d dims (1 to %d supported)", path, magic,
                         idx->ndim, CG_IDX_MAX_DIMS);
    r = idx_gzread(g, path, b, (unsigned)(4 * idx->ndim));
    if (r < 0) return CG_STATUS_PARSE_ERROR;
    if (r < 4 * idx->ndim)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: truncated: the header declares %d dims but ends after %lld bytes",
                         path, idx->ndim, (long long)(4 + r));
    int64_t numel = 1, bytes;
    for (int i = 0; i < idx->ndim; i++) {
        idx->dims[i] = be32(b + 4 * i);
        if (idx->dims[i] == 0)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: dim %d is 0", path, i);
        if (!cg__mul_ok(numel, idx->dims[i], &numel))
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: the product of the dims overflows (dim %d = %lld)", path, i,
                             (long long)idx->dims[i]);
    }
    /* Both the file's bytes (8 per float64 element) and ours (4) must fit
     * (fuzz_idx found numel * 8 overflowing for a float64 file). */
    int64_t esize = idx_type_size(idx->type) > 4 ? idx_type_size(idx->type) : 4;
    if (!cg__mul_ok(numel, esize, &bytes) || (uint64_t)bytes > SIZE_MAX)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: the product of the dims overflows (%lld elements)", path,
                         (long long)numel);
    idx->numel = numel;
    *header_bytes = 4 + 4 * (int64_t)idx->ndim;
    return CG_OK;
}

/* Float files: elements [first, first + n) must be finite in float32 (NaN
 * and Inf would reach training as a NaN loss; a float64 beyond float32's
 * range became Inf in the conversion). The message names the item (index
 * along the first dim) and the element within it. */
static cg_status idx_check_finite(const char *path, const struct cg_idx *idx, int64_t first,
                                  int64_t n)
{
    if (idx->type != 0x0D && idx->type != 0x0E) return CG_OK;
    const float *v = idx->data + first;
    for (int64_t i = 0; i < n; i++) {
        if (isfinite(v[i])) continue;
        int64_t per_item = idx->numel / idx->dims[0], e = first + i;
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: item %lld, element %lld: %s value%s (float values must be "
                         "finite)", path, (long long)(e / per_item), (long long)(e % per_item),
                         isnan(v[i]) ? "NaN" : "infinite",
                         idx->type == 0x0E && !isnan(v[i]) ? " or one beyond float32's range"
                                                          : "");
    }
    return CG_OK;
}

/* Reads idx->numel elements; grows idx->data only as they arrive. With
 * raw (uint8 files only) the bytes go as they are into *raw instead. */
static cg_status idx_data(gzFile g, const char *path, struct cg_idx *idx, int64_t cap,
                          unsigned char **raw)
{
    int esize = idx_type_size(idx->type);
    int64_t want = idx->numel * esize, got = 0, n = 0;
    unsigned char *chunk = malloc(IDX_CHUNK);
    if (!chunk) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    cg_status st = CG_OK;
    while (got < want) {
        unsigned ask = (unsigned)(want - got < IDX_CHUNK ? want - got : IDX_CHUNK);
        int64_t r = idx_gzread(g, path, chunk, ask);
        if (r < 0) { st = CG_STATUS_PARSE_ERROR; goto out; }
        got += r;
        if (r < ask || r % esize) {
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s: truncated: expected %lld bytes of data, got %lld", path,
                           (long long)want, (long long)got);
            goto out;
        }
        int64_t k = r / esize;
        if (n + k > cap) {
            int64_t nc = cap * 2 < idx->numel ? cap * 2 : idx->numel;
            void *d = realloc(raw ? (void *)*raw : (void *)idx->data,
                              (size_t)nc * (raw ? 1 : sizeof(float)));
            if (!d) {
                st = cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                               "%s: out of memory for %lld elements", path, (long long)nc);
                goto out;
            }
            if (raw) *raw = d;
            else idx->data = d;
            cap = nc;
        }
        if (raw) {
            memcpy(*raw + n, chunk, (size_t)k);
        } else {
            idx_convert(idx->type, chunk, k, idx->data + n);
            if ((st = idx_check_finite(path, idx, n, k)) != CG_OK) goto out;
        }
        n += k;
    }
    int64_t extra = idx_gzread(g, path, chunk, IDX_CHUNK);
    if (extra < 0) { st = CG_STATUS_PARSE_ERROR; goto out; }
    if (extra > 0)
        st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                       "%s: unexpected data after the %lld bytes the header declares", path,
                       (long long)want);
out:
    free(chunk);
    return st;
}

/* cg_idx_read; with raw, a uint8 file's elements stay bytes, in *raw
 * (malloc'd, the caller's), and (*out)->data is NULL. */
static cg_status idx_read(const char *path, struct cg_idx **out, unsigned char **raw)
{
    if (out) *out = NULL;
    if (raw) *raw = NULL;
    if (!path || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_idx_read: NULL argument");
    gzFile g = gzopen(path, "rb");
    if (!g) return cg__error(NULL, CG_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
    struct cg_idx *idx = calloc(1, sizeof *idx);
    if (!idx) {
        gzclose(g);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    int64_t header_bytes = 0, cap;
    cg_status st = idx_header(g, path, idx, &header_bytes);
    if (st != CG_OK) goto fail;
    if (gzdirect(g)) {
        /* Plain file: its length must be exactly what the header says. */
        struct stat sb;
        int64_t want = idx->numel * idx_type_size(idx->type);
        if (stat(path, &sb) != 0) {
            st = cg__error(NULL, CG_STATUS_IO_ERROR, "%s: %s", path, strerror(errno));
            goto fail;
        }
        int64_t have = (int64_t)sb.st_size - header_bytes;
        if (S_ISREG(sb.st_mode) && have < want) {
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s: truncated: expected %lld bytes of data, got %lld", path,
                           (long long)want, (long long)have);
            goto fail;
        }
        if (S_ISREG(sb.st_mode) && have > want) {
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s: %lld unexpected bytes after the %lld bytes of data the header "
                           "declares",
                           path, (long long)(have - want), (long long)want);
            goto fail;
        }
        cap = S_ISREG(sb.st_mode) ? idx->numel
                                  : (idx->numel < IDX_FIRST_ALLOC ? idx->numel : IDX_FIRST_ALLOC);
    } else {
        cap = idx->numel < IDX_FIRST_ALLOC ? idx->numel : IDX_FIRST_ALLOC;
    }
    if (idx->type != 0x08) raw = NULL;
    void *data = malloc((size_t)cap * (raw ? 1 : sizeof(float)));
    if (raw) *raw = data;
    else idx->data = data;
    if (!data) {
        st = cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory for %lld elements",
                       path, (long long)cap);
        goto fail;
    }
    if ((st = idx_data(g, path, idx, cap, raw)) != CG_OK) goto fail;
    gzclose(g);
    *out = idx;
    return CG_OK;
fail:
    gzclose(g);
    cg_idx_free(idx);
    if (raw) {
        free(*raw);
        *raw = NULL;
    }
    return st;
}

CG_API cg_status cg_idx_read(const char *path, struct cg_idx **out)
{
    return idx_read(path, out, NULL);
}

CG_API void cg_idx_free(struct cg_idx *idx)
{
    if (!idx) return;
    free(idx->data);
    free(idx);
}

static bool idx_is_integer(int type)
{
    return type == 0x08 || type == 0x09 || type == 0x0B || type == 0x0C;
}

CG_API cg_status cg_idx_load_pair(const char *images_path, const char *labels_path, bool scale,
                                  struct cg_dataset **out)
{
    if (out) *out = NULL;
    if (!images_path || !labels_path || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_idx_load_pair: NULL argument");
    struct cg_idx *img = NULL, *lab = NULL;
    struct cg_dataset *ds = NULL;
    unsigned char *pix = NULL;      /* uint8 images stay bytes: 1/4 the memory */
    cg_status st;
    if ((st = idx_read(images_path, &img, &pix)) != CG_OK) return st;
    if ((st = cg_idx_read(labels_path, &lab)) != CG_OK) goto done;
    if (img->ndim < 2 || img->ndim > CG_MAX_DIMS) {
        st = cg__error(NULL, CG_STATUS_SHAPE_MISMATCH,
                       "%s: images need 2 to %d dims (n, ...), the file has %d", images_path,
                       CG_MAX_DIMS, img->ndim);
        goto done;
    }
    if (lab->ndim != 1 || !idx_is_integer(lab->type)) {
        st = cg__error(NULL, CG_STATUS_SHAPE_MISMATCH,
                       "%s: labels must be a 1-d file of integers (type 0x%02x, %d dims)",
                       labels_path, lab->type, lab->ndim);
        goto done;
    }
    if (lab->dims[0] != img->dims[0]) {
        st = cg__error(NULL, CG_STATUS_SHAPE_MISMATCH,
                       "%s has %lld labels but %s has %lld images", labels_path,
                       (long long)lab->dims[0], images_path, (long long)img->dims[0]);
        goto done;
    }
    int64_t max = 0;
    for (int64_t i = 0; i < lab->numel; i++) {
        float v = lab->data[i];
        if (v < 0 || v >= (float)CG_IDX_MAX_CLASSES) {
            /* A huge label would build a model with that many outputs
             * (16M classes: minutes before failing); no real labels file
             * has one, so stop here. */
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s: item %lld: label %.0f is out of range: labels must be class "
                           "indices in [0, %d)", labels_path, (long long)i, (double)v,
                           CG_IDX_MAX_CLASSES);
            goto done;
        }
        if (v > max) max = (int64_t)v;
    }
    if (!(ds = calloc(1, sizeof *ds))) {
        st = cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_idx_load_pair: out of memory");
        goto done;
    }
    ds->n = img->dims[0];
    if (img->ndim == 3) {                     /* (n, H, W): one channel */
        ds->sample_ndim = 3;
        ds->sample_shape[0] = 1;
        ds->sample_shape[1] = img->dims[1];
        ds->sample_shape[2] = img->dims[2];
    } else {
        ds->sample_ndim = img->ndim - 1;
        for (int i = 1; i < img->ndim; i++) ds->sample_shape[i - 1] = img->dims[i];
    }
    ds->sample_numel = img->numel / img->dims[0];
    if (pix) {
        /* Bytes; the loader divides by 255 per batch (torchvision ToTensor),
         * the same float division as float storage did here. */
        ds->x_u8 = pix;
        pix = NULL;
        ds->x_div = scale ? 255.0f : 1.0f;
    } else {
        ds->x = img->data;
        img->data = NULL;
    }
    ds->y = lab->data;
    lab->data = NULL;
    ds->y_dim = 0;
    ds->n_classes = (int)max + 1;
    *out = ds;
done:
    free(pix);
    cg_idx_free(img);
    cg_idx_free(lab);
    return st;
}
