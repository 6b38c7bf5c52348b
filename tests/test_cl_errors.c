/*
 * tests/test_cl_errors.c — errors inside the opencl backend's deferred work
 * (backends/opencl/fuse.c chains, flushed by the next call) reach a caller
 * instead of vanishing.
 *
 * White-box: the test reaches into the plugin's instance (cl_backend.h) and
 * swaps its queue for one on a second context of the same device, so that
 * enqueueing any of the instance's kernels fails deterministically with
 * CL_INVALID_CONTEXT (OpenCL 1.2, clEnqueueNDRangeKernel: the queue's and
 * the kernel's contexts differ). Then:
 *   - alloc of more than CL_DEVICE_MAX_MEM_ALLOC_SIZE takes the retry path,
 *     which flushes the pending chain: the flush's failure is returned, with
 *     the OpenCL error name, not ignored;
 *   - get_stats does not flush (it cannot return a status), so the pending
 *     op survives it and runs once the real queue is back.
 * And a value an opencl switch does not accept is named on stderr, and on
 * a CPU device an op shorter than the fused chain joins it only where the
 * chain's whole index range stays inside the op's buffers (fuse.c,
 * fuse_in_bounds: masked-off lanes of vector loads still name addresses).
 */
#include "harness.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cl_backend.h"

struct sabotage {
    struct cg_cl *cl;
    cl_context ctx2;
    cl_command_queue q2, saved;
};

/* Points cl's queue at a queue of a second context on the same device. */
static void sabotage_begin(struct sabotage *s, void *bctx)
{
    cl_int rc;
    s->cl = bctx;
    s->ctx2 = clCreateContext(NULL, 1, &s->cl->dev.device, NULL, NULL, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    s->q2 = clCreateCommandQueue(s->ctx2, s->cl->dev.device, 0, &rc);
    assert_int_equal(rc, CL_SUCCESS);
    s->saved = s->cl->queue;
    s->cl->queue = s->q2;
}

static void sabotage_end(struct sabotage *s)
{
    s->cl->queue = s->saved;
    clReleaseCommandQueue(s->q2);
    clReleaseContext(s->ctx2);
}

struct env {
    cg_ctx *ctx;
    const struct cg_backend_i *be;
    void *bctx;
    struct cg_buffer *buf;
    uint64_t launched;   /* the instance's device_launches after the ew */
};

/* A 7-element buffer holding 1..7 and a pending (deferred) out = 2 * x + 1
 * over it, in place. */
static struct env setup_pending(void **state)
{
    struct env e = {.ctx = *state};
    e.be = cg_ctx_backend(e.ctx, &e.bctx);
    if (strcmp(e.be->name, "opencl") != 0) {
        print_message("backend %s: white-box opencl test skipped\n", e.be->name);
        skip();
    }
    float h[7] = {1, 2, 3, 4, 5, 6, 7};
    assert_int_equal(e.be->alloc(e.bctx, sizeof h, &e.buf), CG_OK);
    assert_int_equal(e.be->upload(e.bctx, e.buf, 0, h, sizeof h), CG_OK);
    assert_int_equal(e.be->finish(e.bctx), CG_OK);
    struct cg_view v = {.buf = e.buf, .off = 0, .ndim = 1, .shape = {7}, .strides = {1}};
    uint64_t before = ((struct cg_cl *)e.bctx)->device_launches;
    assert_int_equal(e.be->ew(e.bctx, CG_EW_AFFINE, 2.0f, 1.0f, &v, &v, NULL), CG_OK);
    e.launched = ((struct cg_cl *)e.bctx)->device_launches;
    if (e.launched != before) {
        print_message("fusion is off (CLGRAD_FUSE=0): nothing is deferred, skipped\n");
        e.be->release(e.bctx, e.buf);
        skip();
    }
    return e;
}

static void test_alloc_returns_flush_error(void **state)
{
    struct env e = setup_pending(state);
    struct sabotage s;
    sabotage_begin(&s, e.bctx);
    cl_ulong max_alloc = 0;
    assert_int_equal(clGetDeviceInfo(s.cl->dev.device, CL_DEVICE_MAX_MEM_ALLOC_SIZE,
                                     sizeof max_alloc, &max_alloc, NULL),
                     CL_SUCCESS);
    struct cg_buffer *big = NULL;
    cg_status st = e.be->alloc(e.bctx, (size_t)max_alloc + 1, &big);
    sabotage_end(&s);
    const char *msg = e.be->last_error(e.bctx);
    print_message("alloc -> %s: %s\n", cg_status_str(st), msg);
    assert_int_equal(st, CG_STATUS_BACKEND_ERROR);
    assert_null(big);
    assert_non_null(strstr(msg, "alloc("));
    assert_non_null(strstr(msg, "flushing pending work"));
    assert_non_null(strstr(msg, "CL_INVALID_CONTEXT"));
    assert_int_equal(e.be->finish(e.bctx), CG_OK);   /* the instance still works */
    e.be->release(e.bctx, e.buf);
}

static void test_get_stats_keeps_pending_work(void **state)
{
    struct env e = setup_pending(state);
    struct sabotage s;
    struct cg_backend_stats stats;
    sabotage_begin(&s, e.bctx);
    e.be->get_stats(e.bctx, &stats);   /* a flush here would fail and drop the op */
    sabotage_end(&s);
    assert_true(s.cl->device_launches == e.launched);   /* still pending */
    float h[7];
    assert_int_equal(e.be->download(e.bctx, h, e.buf, 0, sizeof h), CG_OK);
    for (int i = 0; i < 7; i++)
        assert_float_equal(h[i], 2.0f * (float)(i + 1) + 1.0f, 0.0f);
    e.be->release(e.bctx, e.buf);
}

/* Every opencl switch with a value it does not accept: one line on stderr
 * naming the variable, the value and what is accepted, and the context
 * works with the defaults (issue 17: such values were ignored silently). */
static const struct {
    const char *name, *value, *accepted;
} bad_env[] = {
    {"CLGRAD_FUSE", "maybe", "(0 or 1)"},
    {"CLGRAD_OPTIM_BATCH", "2", "(0 or 1)"},
    {"CLGRAD_FUSE_LOOP", "yes", "(0 or 1)"},
    {"CLGRAD_LN_ROW_ITEMS", "-1", "(0 or 1)"},
    {"CLGRAD_VERBOSE", "abc", "(0 or 1)"},
    {"CLGRAD_CLBLAST_TUNE", "off", "(0 or 1)"},
    {"CLGRAD_CL_MEM_MB", "lots", "(a whole number from 1 to"},
    {"CLGRAD_CACHE_MAX_MB", "0", "(a whole number from 1 to"},
    {"CLGRAD_GEMM", "bogus", "(own, own-inplace, own-packed, clblast)"},
};

static void test_bad_env_values_warn(void **state)
{
    (void)state;
    if (strcmp(th_backend(), "opencl") != 0) {
        print_message("backend %s: opencl's switches, skipped\n", th_backend());
        skip();
    }
    char path[] = "/tmp/clgrad-env-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    assert_true(saved >= 0 && dup2(fd, 2) == 2);
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++)
        setenv(bad_env[i].name, bad_env[i].value, 1);
    setenv("CLGRAD_CACHE_DIR", path, 1);   /* a file: the plugin writes no binary */
    cg_ctx *ctx = th_ctx_create(31);
    float ha[4] = {1, 2, 3, 4}, hb[4] = {5, 6, 7, 8}, hc[4];
    cg_tensor *a = cg_tensor_from_host(ctx, CG_SHAPE(2, 2), ha);
    cg_tensor *b = cg_tensor_from_host(ctx, CG_SHAPE(2, 2), hb);
    cg_tensor *c = cg_matmul(a, b);   /* reads CLGRAD_GEMM */
    cg_status st = cg_tensor_to_host(c, hc, 4);
    cg_ctx_free(ctx);
    /* CLGRAD_CACHE_MAX_MB is read after a binary is written: directly. */
    uint64_t cap = cg_cl_cache_max_bytes();
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++)
        unsetenv(bad_env[i].name);
    unsetenv("CLGRAD_CACHE_DIR");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char log[8192] = "";
    ssize_t n = pread(fd, log, sizeof log - 1, 0);
    close(fd);
    unlink(path);
    log[n > 0 ? n : 0] = '\0';
    print_message("%s", log);
    assert_int_equal(st, CG_OK);
    assert_true(cap == (uint64_t)CG_CL_CACHE_MAX_MB << 20);
    assert_true(hc[0] == 19 && hc[1] == 22 && hc[2] == 43 && hc[3] == 50);
    for (size_t i = 0; i < sizeof bad_env / sizeof bad_env[0]; i++) {
        char want[160];
        snprintf(want, sizeof want, "%s=\"%s\" is not accepted %s", bad_env[i].name,
                 bad_env[i].value, bad_env[i].accepted);
        if (!strstr(log, want))
            fail_msg("no warning \"%s\" on stderr", want);
        const char *first = strstr(log, want);
        if (strstr(first + 1, want))
            fail_msg("\"%s\" warned more than once", want);
    }
}

/* A short op on a small buffer does not join a long chain (its guarded
 * lanes would address far past the buffer); a short op on a slice of a
 * long buffer does; the values are those of the ops one by one. */
static void test_short_ops_join_only_in_bounds(void **state)
{
    cg_ctx *ctx = *state;
    void *bctx;
    const struct cg_backend_i *be = cg_ctx_backend(ctx, &bctx);
    if (strcmp(be->name, "opencl") != 0) {
        print_message("backend %s: white-box opencl test skipped\n", be->name);
        skip();
    }
    struct cg_cl *cl = bctx;
    enum { LONG = 4096, SHORT = 16 };
    static float a[LONG], got[LONG];
    float s[SHORT];
    for (int i = 0; i < LONG; i++)
        a[i] = (float)(i % 97) * 0.25f - 3.0f;
    for (int i = 0; i < SHORT; i++)
        s[i] = (float)i - 5.5f;
    struct cg_buffer *ba, *bb, *bc, *bs;
    assert_int_equal(be->alloc(bctx, sizeof a, &ba), CG_OK);
    assert_int_equal(be->alloc(bctx, sizeof a, &bb), CG_OK);
    assert_int_equal(be->alloc(bctx, sizeof a, &bc), CG_OK);
    assert_int_equal(be->alloc(bctx, sizeof s, &bs), CG_OK);
    assert_int_equal(be->upload(bctx, ba, 0, a, sizeof a), CG_OK);
    assert_int_equal(be->upload(bctx, bs, 0, s, sizeof s), CG_OK);
    assert_int_equal(be->finish(bctx), CG_OK);
    struct cg_view va = {.buf = ba, .ndim = 1, .shape = {LONG}, .strides = {1}};
    struct cg_view vb = {.buf = bb, .ndim = 1, .shape = {LONG}, .strides = {1}};
    struct cg_view vs = {.buf = bs, .ndim = 1, .shape = {SHORT}, .strides = {1}};
    struct cg_view va_head = {.buf = ba, .ndim = 1, .shape = {SHORT}, .strides = {1}};
    struct cg_view vc_head = {.buf = bc, .ndim = 1, .shape = {SHORT}, .strides = {1}};

    uint64_t l0 = cl->device_launches;
    assert_int_equal(be->ew(bctx, CG_EW_ADD, 0, 0, &vb, &va, &va), CG_OK);      /* b = 2a */
    if (cl->device_launches != l0) {
        print_message("fusion is off (CLGRAD_FUSE=0): nothing is deferred, skipped\n");
        skip();
    }
    assert_int_equal(be->ew(bctx, CG_EW_AFFINE, 3.0f, 1.0f, &vc_head, &va_head, NULL), CG_OK);
    assert_true(cl->device_launches == l0);        /* in bounds: joined, pending */
    assert_int_equal(be->ew(bctx, CG_EW_AFFINE, 2.0f, 0.5f, &vs, &vs, NULL), CG_OK);
    /* Out of bounds: on a CPU device the chain went out first; a GPU's
     * masked-off lanes touch no memory, so there it joins. */
    assert_true(cl->device_launches == l0 + (cl->cpu_device ? 1 : 0));
    assert_int_equal(be->download(bctx, got, bb, 0, sizeof got), CG_OK);
    for (int i = 0; i < LONG; i++)
        assert_float_equal(got[i], 2.0f * a[i], 1e-6f * (1.0f + fabsf(a[i])));
    assert_int_equal(be->download(bctx, got, bc, 0, SHORT * sizeof(float)), CG_OK);
    for (int i = 0; i < SHORT; i++)
        assert_float_equal(got[i], 3.0f * a[i] + 1.0f, 1e-6f * (1.0f + fabsf(a[i])));
    assert_int_equal(be->download(bctx, got, bs, 0, sizeof s), CG_OK);
    for (int i = 0; i < SHORT; i++)
        assert_float_equal(got[i], 2.0f * s[i] + 0.5f, 1e-6f);
    be->release(bctx, ba);
    be->release(bctx, bb);
    be->release(bctx, bc);
    be->release(bctx, bs);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alloc_returns_flush_error, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_get_stats_keeps_pending_work, th_setup,
                                        th_teardown),
        cmocka_unit_test(test_bad_env_values_warn),
        cmocka_unit_test_setup_teardown(test_short_ops_join_only_in_bounds, th_setup,
                                        th_teardown),
    };
    return TH_RUN(tests);
}
