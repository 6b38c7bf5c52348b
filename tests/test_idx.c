/*
 * tests/test_idx.c — IDX (MNIST format) files written by the test, plain and
 * gzipped (zlib's gzopen "wb"): every element type, the images+labels pair,
 * and the malformed files of issue 4 (truncated, wrong magic, overflowing
 * dims, label count mismatch) plus a few more.
 */
#include "harness.h"

#include <math.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

static int group_setup(void **state)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clgrad-test-idx-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    rmdir(tmpdir);
    return 0;
}

static const char *tmp_path(const char *name, int which)
{
    static char paths[2][512];
    snprintf(paths[which], sizeof paths[which], "%s/%s", tmpdir, name);
    return paths[which];
}

/* Writes bytes to path, gzipped when gz. */
static void write_bytes(const char *path, const void *data, size_t len, bool gz)
{
    if (gz) {
        gzFile g = gzopen(path, "wb");
        assert_non_null(g);
        if (len) assert_int_equal(gzwrite(g, data, (unsigned)len), (int)len);
        assert_int_equal(gzclose(g), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        if (len) assert_int_equal(fwrite(data, 1, len, f), len);
        fclose(f);
    }
}

static size_t put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    return 4;
}

/* An IDX header for type and dims into buf; returns its length. */
static size_t idx_header(unsigned char *buf, int type, int ndim, const uint32_t *dims)
{
    size_t n = put_be32(buf, (uint32_t)type << 8 | (uint32_t)ndim);
    for (int i = 0; i < ndim; i++) n += put_be32(buf + n, dims[i]);
    return n;
}

/* Images (n, h, w) of random bytes and labels (n) in [0, k). */
static void write_pair(const char *ipath, const char *lpath, bool gz, int n, int h, int w,
                       int k, unsigned char *pix, unsigned char *lab, uint64_t *s)
{
    size_t ilen = 16 + (size_t)n * h * w, llen = 8 + (size_t)n;
    unsigned char *ib = malloc(ilen), *lb = malloc(llen);
    size_t o = idx_header(ib, 0x08, 3, (uint32_t[]){(uint32_t)n, (uint32_t)h, (uint32_t)w});
    for (int i = 0; i < n * h * w; i++) ib[o + i] = pix[i] = (unsigned char)th_rand_u64(s);
    o = idx_header(lb, 0x08, 1, (uint32_t[]){(uint32_t)n});
    for (int i = 0; i < n; i++) lb[o + i] = lab[i] = (unsigned char)(th_rand_u64(s) % (uint64_t)k);
    lab[n - 1] = lb[o + n - 1] = (unsigned char)(k - 1);   /* the top class appears */
    write_bytes(ipath, ib, ilen, gz);
    write_bytes(lpath, lb, llen, gz);
    free(ib);
    free(lb);
}

static void check_pair(bool gz)
{
    uint64_t s = gz ? 5 : 6;
    const int n = 37, h = 5, w = 3, k = 7;
    unsigned char pix[37 * 5 * 3], lab[37];
    const char *ip = tmp_path("img.idx", 0), *lp = tmp_path("lab.idx", 1);
    write_pair(ip, lp, gz, n, h, w, k, pix, lab, &s);
    struct cg_dataset *ds;
    assert_int_equal(cg_idx_load_pair(ip, lp, true, &ds), CG_OK);
    assert_int_equal(ds->n, n);
    assert_int_equal(ds->sample_ndim, 3);
    assert_int_equal(ds->sample_shape[0], 1);
    assert_int_equal(ds->sample_shape[1], h);
    assert_int_equal(ds->sample_shape[2], w);
    assert_int_equal(ds->sample_numel, h * w);
    assert_int_equal(ds->n_classes, k);
    assert_int_equal(ds->y_dim, 0);
    /* uint8 images stay bytes; cg_dataset_to_float gives pixel / 255. */
    assert_null(ds->x);
    assert_non_null(ds->x_u8);
    assert_memory_equal(ds->x_u8, pix, (size_t)(n * h * w));
    assert_true(ds->x_div == 255.0f);
    assert_int_equal(cg_dataset_to_float(ds), CG_OK);
    assert_null(ds->x_u8);
    double ref[37 * 5 * 3], rl[37];
    for (int i = 0; i < n * h * w; i++) ref[i] = pix[i] / 255.0;
    for (int i = 0; i < n; i++) rl[i] = lab[i];
    th_assert_close(ds->x, ref, n * h * w, 1e-7, 0, "scaled pixels");
    th_assert_close(ds->y, rl, n, 0, 0, "labels");
    cg_dataset_free(ds);

    assert_int_equal(cg_idx_load_pair(ip, lp, false, &ds), CG_OK);
    assert_true(ds->x_div == 1.0f);
    assert_int_equal(cg_dataset_to_float(ds), CG_OK);
    for (int i = 0; i < n * h * w; i++) ref[i] = pix[i];
    th_assert_close(ds->x, ref, n * h * w, 0, 0, "raw pixels");
    assert_int_equal(cg_dataset_reshape(ds, CG_SHAPE(15)), CG_OK);
    assert_int_equal(ds->sample_ndim, 1);
    assert_int_equal(cg_dataset_reshape(ds, CG_SHAPE(4, 4)), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(NULL, "cannot become (4, 4)");
    cg_dataset_free(ds);
    unlink(ip);
    unlink(lp);
}

static void test_pair_plain(void **state) { check_pair(false); }
static void test_pair_gzip(void **state) { check_pair(true); }

/* Every element type, big-endian, against the values written. */
static void test_types(void **state)
{
    unsigned char buf[256];
    const double want[5] = {-3, 0, 1, 100, -128};
    const int types[] = {0x09, 0x0B, 0x0C, 0x0D, 0x0E};
    for (int t = 0; t < 5; t++) {
        size_t o = idx_header(buf, types[t], 2, (uint32_t[]){1, 5});
        for (int i = 0; i < 5; i++) {
            switch (types[t]) {
            case 0x09: buf[o++] = (unsigned char)(int8_t)want[i]; break;
            case 0x0B: {
                uint16_t u = (uint16_t)(int16_t)want[i];
                buf[o++] = (unsigned char)(u >> 8);
                buf[o++] = (unsigned char)u;
                break;
            }
            case 0x0C: o += put_be32(buf + o, (uint32_t)(int32_t)want[i]); break;
            case 0x0D: {
                float f = (float)want[i] + 0.25f;
                uint32_t u;
                memcpy(&u, &f, 4);
                o += put_be32(buf + o, u);
                break;
            }
            case 0x0E: {
                double d = want[i] + 0.5;
                uint64_t u;
                memcpy(&u, &d, 8);
                o += put_be32(buf + o, (uint32_t)(u >> 32));
                o += put_be32(buf + o, (uint32_t)u);
                break;
            }
            }
        }
        const char *p = tmp_path("types.idx", 0);
        write_bytes(p, buf, o, t % 2);
        struct cg_idx *idx;
        assert_int_equal(cg_idx_read(p, &idx), CG_OK);
        assert_int_equal(idx->type, types[t]);
        assert_int_equal(idx->ndim, 2);
        assert_int_equal(idx->numel, 5);
        double adj = types[t] == 0x0D ? 0.25 : types[t] == 0x0E ? 0.5 : 0;
        double w[5];
        for (int i = 0; i < 5; i++) w[i] = want[i] + adj;
        th_assert_close(idx->data, w, 5, 0, 0, "typed values");
        cg_idx_free(idx);
        unlink(p);
    }
}

static void expect_read_error(const unsigned char *bytes, size_t len, bool gz,
                              cg_status want, const char *needle)
{
    const char *p = tmp_path(gz ? "bad.idx.gz" : "bad.idx", 0);
    write_bytes(p, bytes, len, gz);
    struct cg_idx *idx = (struct cg_idx *)1;
    cg_status st = cg_idx_read(p, &idx);
    unlink(p);
    if (st != want)
        fail_msg("status %s, want %s (%s)", cg_status_str(st), cg_status_str(want),
                 cg_last_error(NULL));
    assert_null(idx);
    th_assert_error_contains(NULL, needle);
}

static void test_truncated(void **state)
{
    unsigned char buf[64];
    size_t o = idx_header(buf, 0x08, 3, (uint32_t[]){2, 4, 4});
    memset(buf + o, 7, 20);
    for (int gz = 0; gz < 2; gz++) {
        expect_read_error(buf, o + 20, gz, CG_STATUS_PARSE_ERROR,
                          "truncated: expected 32 bytes of data, got 20");
        expect_read_error(buf, 10, gz, CG_STATUS_PARSE_ERROR,
                          "truncated: the header declares 3 dims but ends after 10 bytes");
        expect_read_error(buf, 2, gz, CG_STATUS_PARSE_ERROR, "too short for an IDX header");
        expect_read_error(buf, 0, gz, CG_STATUS_PARSE_ERROR, "too short for an IDX header");
        /* and too long */
        memset(buf + o, 1, 40);
        expect_read_error(buf, o + 40, gz, CG_STATUS_PARSE_ERROR, "after the");
    }
}

static void test_wrong_magic(void **state)
{
    unsigned char buf[64] = {0};
    size_t o = idx_header(buf, 0x08, 1, (uint32_t[]){3});
    buf[0] = 0x1f;                                 /* not 0x0000.... */
    expect_read_error(buf, o + 3, false, CG_STATUS_PARSE_ERROR,
                      "wrong magic number 0x1f000801");
    o = idx_header(buf, 0x0A, 1, (uint32_t[]){3});  /* no type 0x0A */
    expect_read_error(buf, o + 3, true, CG_STATUS_PARSE_ERROR, "wrong magic number 0x00000a01");
    o = idx_header(buf, 0x08, 0, NULL);            /* zero dims */
    expect_read_error(buf, o, false, CG_STATUS_PARSE_ERROR, "declares 0 dims");
    o = idx_header(buf, 0x08, 9, (uint32_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
    expect_read_error(buf, o, false, CG_STATUS_PARSE_ERROR, "declares 9 dims");
    o = idx_header(buf, 0x08, 2, (uint32_t[]){3, 0});
    expect_read_error(buf, o, false, CG_STATUS_PARSE_ERROR, "dim 1 is 0");
    struct cg_idx *idx;
    assert_int_equal(cg_idx_read("/nonexistent/x.idx", &idx), CG_STATUS_IO_ERROR);
    th_assert_error_contains(NULL, "/nonexistent/x.idx: cannot open");
}

static void test_overflow_dims(void **state)
{
    unsigned char buf[64];
    size_t o = idx_header(buf, 0x08, 3, (uint32_t[]){0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu});
    expect_read_error(buf, o, false, CG_STATUS_PARSE_ERROR, "the product of the dims overflows");
    expect_read_error(buf, o, true, CG_STATUS_PARSE_ERROR, "the product of the dims overflows");
    /* 2^60 float64 elements: 2^63 bytes in the file overflow (found by
     * fuzz_idx: a signed overflow before the check) */
    o = idx_header(buf, 0x0E, 2, (uint32_t[]){0x40000000u, 0x40000000u});
    expect_read_error(buf, o, false, CG_STATUS_PARSE_ERROR, "the product of the dims overflows");
    /* 2^62 elements fit int64 but not as bytes of float */
    o = idx_header(buf, 0x08, 2, (uint32_t[]){0x80000000u, 0x80000000u});
    expect_read_error(buf, o, false, CG_STATUS_PARSE_ERROR, "overflows");
    /* 256 GiB declared, a few bytes present: must fail without allocating it */
    o = idx_header(buf, 0x08, 3, (uint32_t[]){65536, 65536, 16});
    memset(buf + o, 0, 8);
    expect_read_error(buf, o + 8, false, CG_STATUS_PARSE_ERROR,
                      "truncated: expected 68719476736 bytes of data, got 8");
    expect_read_error(buf, o + 8, true, CG_STATUS_PARSE_ERROR,
                      "truncated: expected 68719476736 bytes of data, got 8");
}

static void test_count_mismatch(void **state)
{
    uint64_t s = 9;
    unsigned char pix[6 * 2 * 2], lab[6];
    const char *ip = tmp_path("img.idx", 0), *lp = tmp_path("lab.idx", 1);
    write_pair(ip, lp, true, 6, 2, 2, 3, pix, lab, &s);
    /* a labels file with 5 entries */
    unsigned char lb[16];
    size_t o = idx_header(lb, 0x08, 1, (uint32_t[]){5});
    memset(lb + o, 1, 5);
    write_bytes(lp, lb, o + 5, true);
    struct cg_dataset *ds = (struct cg_dataset *)1;
    assert_int_equal(cg_idx_load_pair(ip, lp, true, &ds), CG_STATUS_SHAPE_MISMATCH);
    assert_null(ds);
    char want[1200];
    snprintf(want, sizeof want, "%s has 5 labels but %s has 6 images", lp, ip);
    th_assert_error_contains(NULL, want);
    /* labels that are not 1-d integers */
    o = idx_header(lb, 0x0D, 1, (uint32_t[]){1});
    memset(lb + o, 0, 4);
    write_bytes(lp, lb, o + 4, false);
    assert_int_equal(cg_idx_load_pair(ip, lp, true, &ds), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(NULL, "labels must be a 1-d file of integers");
    /* images given as labels' file: 1-d images */
    assert_int_equal(cg_idx_load_pair(lp, lp, true, &ds), CG_STATUS_SHAPE_MISMATCH);
    th_assert_error_contains(NULL, "images need 2 to");
    /* a negative label */
    o = idx_header(lb, 0x09, 1, (uint32_t[]){6});
    memset(lb + o, 0xFF, 6);
    write_bytes(lp, lb, o + 6, false);
    assert_int_equal(cg_idx_load_pair(ip, lp, true, &ds), CG_STATUS_PARSE_ERROR);
    th_assert_error_contains(NULL, "item 0: label -1 is out of range");
    unlink(ip);
    unlink(lp);
}

/* Issue 17 item 2: float images holding NaN or Inf are rejected, naming the
 * file, the item and the element (they trained to a NaN loss before). */
static void test_nonfinite_floats(void **state)
{
    unsigned char buf[128];
    const float bad[3] = {NAN, INFINITY, -INFINITY};
    for (int k = 0; k < 3; k++) {
        for (int gz = 0; gz < 2; gz++) {
            size_t o = idx_header(buf, 0x0D, 3, (uint32_t[]){3, 2, 2});
            for (int i = 0; i < 12; i++) {
                float v = i == 7 ? bad[k] : (float)i;   /* item 1, element 3 */
                uint32_t u;
                memcpy(&u, &v, 4);
                o += put_be32(buf + o, u);
            }
            const char *p = tmp_path(gz ? "nan.idx.gz" : "nan.idx", 0);
            write_bytes(p, buf, o, gz);
            struct cg_idx *idx = (struct cg_idx *)1;
            assert_int_equal(cg_idx_read(p, &idx), CG_STATUS_PARSE_ERROR);
            assert_null(idx);
            char want[600];
            snprintf(want, sizeof want, "%s: item 1, element 3: %s value", p,
                     k == 0 ? "NaN" : "infinite");
            th_assert_error_contains(NULL, want);
            unlink(p);
        }
    }
    /* float64 beyond float32's range becomes Inf: rejected too */
    size_t o = idx_header(buf, 0x0E, 1, (uint32_t[]){2});
    double d[2] = {1.0, 1e300};
    for (int i = 0; i < 2; i++) {
        uint64_t u;
        memcpy(&u, &d[i], 8);
        o += put_be32(buf + o, (uint32_t)(u >> 32));
        o += put_be32(buf + o, (uint32_t)u);
    }
    expect_read_error(buf, o, false, CG_STATUS_PARSE_ERROR,
                      "item 1, element 0: infinite value or one beyond float32's range");
}

/* Issue 17 item 9: a huge label is an error naming the file, the item and
 * the label, not a 16M-class model that fails a minute later. */
static void test_huge_label(void **state)
{
    uint64_t s = 5;
    unsigned char pix[4 * 2 * 2], lab[4];
    const char *ip = tmp_path("img.idx", 0), *lp = tmp_path("lab.idx", 1);
    write_pair(ip, lp, false, 4, 2, 2, 3, pix, lab, &s);
    unsigned char lb[64];
    size_t o = idx_header(lb, 0x0C, 1, (uint32_t[]){4});
    uint32_t labels[4] = {1, 0, 16000000, 2};
    for (int i = 0; i < 4; i++) o += put_be32(lb + o, labels[i]);
    write_bytes(lp, lb, o, false);
    struct cg_dataset *ds = (struct cg_dataset *)1;
    assert_int_equal(cg_idx_load_pair(ip, lp, true, &ds), CG_STATUS_PARSE_ERROR);
    assert_null(ds);
    char want[700];
    snprintf(want, sizeof want, "%s: item 2: label 16000000 is out of range", lp);
    th_assert_error_contains(NULL, want);
    /* the largest allowed label passes */
    o = idx_header(lb, 0x0C, 1, (uint32_t[]){4});
    labels[2] = CG_IDX_MAX_CLASSES - 1;
    for (int i = 0; i < 4; i++) o += put_be32(lb + o, labels[i]);
    write_bytes(lp, lb, o, false);
    assert_int_equal(cg_idx_load_pair(ip, lp, true, &ds), CG_OK);
    assert_int_equal(ds->n_classes, CG_IDX_MAX_CLASSES);
    cg_dataset_free(ds);
    unlink(ip);
    unlink(lp);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pair_plain),
        cmocka_unit_test(test_pair_gzip),
        cmocka_unit_test(test_types),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_overflow_dims),
        cmocka_unit_test(test_count_mismatch),
        cmocka_unit_test(test_nonfinite_floats),
        cmocka_unit_test(test_huge_label),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("idx", tests, group_setup, group_teardown);
}
