/*
 * tests/fuzz/fuzz_spec.c — the model-spec parser (cg_model_from_spec),
 * building on the cpu backend.
 *
 * Input: byte 0 picks the input sample shape, the rest is the spec (up to
 * the first NUL). Specs with a number over 4096 are skipped: they only
 * make the fuzzer slow (big layers are legal), and the overflow checks for
 * huge sizes have their own unit tests. Invariants: a failure leaves a
 * message and no model; a model's output shape has positive dims, and a
 * small model's forward pass on a batch of 2 gives that shape, finite
 * (but see padded_pool).
 */
#include <ctype.h>
#include <math.h>
#include <string.h>

#include "clgrad/clgrad.h"
#include "fuzz.h"

static cg_ctx *ctx;

static void done(void) { cg_ctx_free(ctx); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 4096) return 0;
    if (!ctx) {
        struct cg_ctx_options o = {.backend = "cpu", .seed = 1};
        FUZZ_CHECK(cg_ctx_create(&ctx, &o) == CG_OK, "cpu context: %s", cg_last_error(NULL));
        atexit(done);
    }
    static const int ndims[4] = {1, 3, 3, 2};
    static const int64_t shapes[4][3] = {{16, 0, 0}, {1, 8, 8}, {3, 6, 5}, {4, 6, 0}};
    int which = data[0] & 3;
    char spec[4097];
    size_t n = strnlen((const char *)data + 1, size - 1);
    memcpy(spec, data + 1, n);
    spec[n] = '\0';
    for (size_t i = 0; i < n;) {
        if (!isdigit((unsigned char)spec[i])) {
            i++;
            continue;
        }
        long v = 0;
        while (i < n && isdigit((unsigned char)spec[i])) {
            if (v <= 4096) v = v * 10 + (spec[i] - '0');
            i++;
        }
        if (v > 4096) return 0;
    }

    int ondim = -1;
    int64_t oshape[CG_MAX_DIMS] = {0};
    cg_module *m = cg_model_from_spec(ctx, spec, ndims[which], shapes[which], &ondim, oshape);
    if (!m) {
        FUZZ_CHECK(cg_last_error(ctx)[0], "a failure with no message");
        cg_ctx_clear_error(ctx);
        return 0;
    }
    FUZZ_CHECK(ondim >= 1 && ondim < CG_MAX_DIMS, "output ndim %d for \"%s\"", ondim, spec);
    int64_t onumel = 1;
    for (int d = 0; d < ondim; d++) {
        FUZZ_CHECK(oshape[d] >= 1, "output dim %d is %lld for \"%s\"", d, (long long)oshape[d],
                   spec);
        onumel *= oshape[d];
    }
    FUZZ_CHECK(cg_module_numel(m) >= 0, "parameter count");
    if (cg_module_numel(m) <= 100000 && onumel <= 100000) {
        cg_module_eval(m);
        cg_scope_begin(ctx);
        bool g = cg_set_grad_enabled(ctx, false);
        int64_t xs[4] = {2, shapes[which][0], shapes[which][1], shapes[which][2]};
        cg_tensor *x = cg_tensor_uniform(ctx, 1 + ndims[which], xs, -1.0f, 1.0f);
        cg_tensor *y = cg_module_forward(m, x);
        FUZZ_CHECK(y, "forward of \"%s\": %s", spec, cg_last_error(ctx));
        FUZZ_CHECK(cg_tensor_ndim(y) == 1 + ondim && cg_tensor_dim(y, 0) == 2,
                   "forward of \"%s\" gives %d dims", spec, cg_tensor_ndim(y));
        for (int d = 0; d < ondim; d++)
            FUZZ_CHECK(cg_tensor_dim(y, d + 1) == oshape[d], "forward of \"%s\": dim %d is %lld, "
                       "the spec said %lld", spec, d + 1, (long long)cg_tensor_dim(y, d + 1),
                       (long long)oshape[d]);
        float *h = malloc((size_t)(2 * onumel) * sizeof *h);
        FUZZ_CHECK(h && cg_tensor_to_host(y, h, 2 * onumel) == CG_OK, "download");
        /* A padded max pool can have a window of padding alone (pad <= K/2
         * as PyTorch checks, but dilated): -inf there, as in PyTorch, which
         * later layers may turn into NaN. Such specs skip this check. */
        char lower[4097];
        for (size_t i = 0; i <= n; i++) lower[i] = (char)tolower((unsigned char)spec[i]);
        bool padded_pool = strstr(lower, "maxpool") && strstr(lower, "pad");   /* any case */
        for (int64_t i = 0; i < 2 * onumel && !padded_pool; i++)
            FUZZ_CHECK(isfinite(h[i]), "forward of \"%s\": output %lld is %g", spec,
                       (long long)i, (double)h[i]);
        free(h);
        cg_set_grad_enabled(ctx, g);
        cg_scope_end(ctx);
    }
    cg_module_free(m);
    FUZZ_CHECK(cg_ctx_status(ctx) == CG_OK, "context error after \"%s\": %s", spec,
               cg_last_error(ctx));
    return 0;
}
