/*
 * tests/test_loader.c — the plugin registry: discovery through
 * CLGRAD_PLUGIN_PATH, refusal of broken plugins (wrong ABI, no entry symbol,
 * NULL vtable, not a shared object), and the errors for unknown backends and
 * devices, which must list what is there.
 *
 * The registry is filled once per process, so main() sets CLGRAD_PLUGIN_PATH
 * before anything touches it. TEST_PLUGIN_DIR holds the broken plugins
 * (built by tests/meson.build); TEST_OPENCL_BUILT is 1 when the opencl
 * plugin is part of this build.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool opencl_built(void)
{
    const char *v = getenv("TEST_OPENCL_BUILT");
    return v && strcmp(v, "1") == 0;
}

static const struct cg_backend_entry_info *find_entry(const struct cg_backend_entry_info *e,
                                                      int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0) return &e[i];
    return NULL;
}

static void test_list_has_cpu_and_plugins(void **state)
{
    (void)state;
    struct cg_backend_entry_info e[CG_MAX_BACKENDS];
    int n = 0;
    assert_int_equal(cg_backends_list(e, CG_MAX_BACKENDS, &n), CG_OK);
    const struct cg_backend_entry_info *cpu = find_entry(e, n, "cpu");
    assert_non_null(cpu);
    assert_true(cpu->loaded);
    if (opencl_built()) {
        const struct cg_backend_entry_info *cl = find_entry(e, n, "opencl");
        assert_non_null(cl);
        assert_true(cl->loaded);
    }
    /* The broken plugin found on CLGRAD_PLUGIN_PATH is listed, with why. */
    const struct cg_backend_entry_info *broken = find_entry(e, n, "broken");
    assert_non_null(broken);
    assert_false(broken->loaded);
    assert_non_null(strstr(broken->error, "ABI version"));
}

static void test_broken_backend_says_why(void **state)
{
    (void)state;
    struct cg_ctx_options o = {.backend = "broken"};
    cg_ctx *ctx = (cg_ctx *)0x1;
    assert_int_equal(cg_ctx_create(&ctx, &o), CG_STATUS_BACKEND_NOT_FOUND);
    assert_null(ctx);
    const char *msg = cg_last_error(NULL);
    assert_non_null(strstr(msg, "'broken'"));
    assert_non_null(strstr(msg, "ABI version"));
    assert_non_null(strstr(msg, "cpu"));
}

static void plugin_path(char *buf, size_t len, const char *file)
{
    snprintf(buf, len, "%s/%s", getenv("TEST_PLUGIN_DIR"), file);
}

static void test_wrong_abi_refused(void **state)
{
    (void)state;
    char p[1024];
    plugin_path(p, sizeof p, "clgrad-backend-broken.so");
    assert_int_equal(cg_plugin_load(p), CG_STATUS_ABI_MISMATCH);
    assert_non_null(strstr(cg_last_error(NULL), "ABI version 999"));
    assert_non_null(strstr(cg_last_error(NULL), p));
}

static void test_no_entry_refused(void **state)
{
    (void)state;
    char p[1024];
    plugin_path(p, sizeof p, "clgrad-backend-noentry.so");
    assert_int_equal(cg_plugin_load(p), CG_STATUS_PLUGIN_INVALID);
    assert_non_null(strstr(cg_last_error(NULL), "no entry symbol cg_backend_entry"));
}

static void test_null_entry_refused(void **state)
{
    (void)state;
    char p[1024];
    plugin_path(p, sizeof p, "clgrad-backend-nullentry.so");
    assert_int_equal(cg_plugin_load(p), CG_STATUS_PLUGIN_INVALID);
    assert_non_null(strstr(cg_last_error(NULL), "returned NULL"));
}

static void test_not_a_plugin_refused(void **state)
{
    (void)state;
    char p[] = "/tmp/clgrad-test-notaplugin-XXXXXX";
    int fd = mkstemp(p);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "hello\n", 6), 6);
    close(fd);
    assert_int_equal(cg_plugin_load(p), CG_STATUS_PLUGIN_INVALID);
    assert_non_null(strstr(cg_last_error(NULL), "not a loadable plugin"));
    unlink(p);
    assert_int_equal(cg_plugin_load("/nonexistent/clgrad-backend-x.so"), CG_STATUS_PLUGIN_INVALID);
    assert_non_null(strstr(cg_last_error(NULL), "/nonexistent/clgrad-backend-x.so"));
}

static void test_unknown_backend_lists_choices(void **state)
{
    (void)state;
    struct cg_ctx_options o = {.backend = "nosuch"};
    cg_ctx *ctx;
    assert_int_equal(cg_ctx_create(&ctx, &o), CG_STATUS_BACKEND_NOT_FOUND);
    const char *msg = cg_last_error(NULL);
    assert_non_null(strstr(msg, "'nosuch'"));
    assert_non_null(strstr(msg, "available backends: cpu"));
    if (opencl_built()) assert_non_null(strstr(msg, "opencl"));

    /* The same through the environment. */
    setenv("CLGRAD_BACKEND", "nosuch2", 1);
    assert_int_equal(cg_ctx_create(&ctx, NULL), CG_STATUS_BACKEND_NOT_FOUND);
    assert_non_null(strstr(cg_last_error(NULL), "'nosuch2'"));
    setenv("CLGRAD_BACKEND", "cpu", 1);
}

static void test_unknown_device_lists_devices(void **state)
{
    (void)state;
    const char *backends[] = {"cpu", "opencl"};
    for (int b = 0; b < (opencl_built() ? 2 : 1); b++) {
        struct cg_device_info devs[8];
        int n = 0;
        if (cg_backend_devices(backends[b], devs, 8, &n) != CG_OK || n == 0) continue;
        struct cg_ctx_options o = {.backend = backends[b], .device = "nosuch-device"};
        cg_ctx *ctx;
        assert_int_equal(cg_ctx_create(&ctx, &o), CG_STATUS_DEVICE_NOT_FOUND);
        const char *msg = cg_last_error(NULL);
        assert_non_null(strstr(msg, "nosuch-device"));
        assert_non_null(strstr(msg, "0: "));
        assert_non_null(strstr(msg, devs[0].name));
        o.device = "99";
        assert_int_equal(cg_ctx_create(&ctx, &o), CG_STATUS_DEVICE_NOT_FOUND);
        /* By index and by name substring, the device is found. */
        o.device = "0";
        assert_int_equal(cg_ctx_create(&ctx, &o), CG_OK);
        assert_string_equal(cg_ctx_device(ctx)->name, devs[0].name);
        cg_ctx_free(ctx);
        char sub[8];
        snprintf(sub, sizeof sub, "%.4s", devs[0].name);
        o.device = sub;
        assert_int_equal(cg_ctx_create(&ctx, &o), CG_OK);
        cg_ctx_free(ctx);
    }
}

static void test_duplicate_plugin_refused(void **state)
{
    (void)state;
    if (!opencl_built()) skip();
    char p[1024];
    snprintf(p, sizeof p, "%s/clgrad-backend-opencl.so", getenv("TEST_OPENCL_DIR"));
    assert_int_equal(cg_plugin_load(p), CG_STATUS_INVALID_ARGUMENT);
    assert_non_null(strstr(cg_last_error(NULL), "already registered"));
}

static void test_auto_choice(void **state)
{
    (void)state;
    char be[64];
    int dev = -1;
    assert_int_equal(cg_backend_auto(be, sizeof be, &dev), CG_OK);
    assert_true(dev >= 0);
    /* auto means a GPU when there is one, else cpu. */
    if (strcmp(be, "cpu") != 0) {
        struct cg_device_info devs[16];
        int n = 0;
        assert_int_equal(cg_backend_devices(be, devs, 16, &n), CG_OK);
        assert_true(dev < n);
        assert_int_equal(devs[dev].type, CG_DEVICE_GPU);
    }
    struct cg_ctx_options o = {.backend = "auto"};
    cg_ctx *ctx;
    assert_int_equal(cg_ctx_create(&ctx, &o), CG_OK);
    assert_string_equal(cg_ctx_backend_name(ctx), be);
    cg_ctx_free(ctx);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(cg_status_str(CG_OK), "CG_OK");
    assert_string_equal(cg_status_str(CG_STATUS_ABI_MISMATCH), "CG_STATUS_ABI_MISMATCH");
    assert_string_equal(cg_status_str((cg_status)1000), "CG_STATUS_UNKNOWN");
}

int main(int argc, char **argv)
{
    char path[4096];
    snprintf(path, sizeof path, "%s:%s", getenv("TEST_PLUGIN_DIR"),
             getenv("TEST_OPENCL_DIR") ? getenv("TEST_OPENCL_DIR") : "");
    setenv("CLGRAD_PLUGIN_PATH", path, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_has_cpu_and_plugins),
        cmocka_unit_test(test_broken_backend_says_why),
        cmocka_unit_test(test_wrong_abi_refused),
        cmocka_unit_test(test_no_entry_refused),
        cmocka_unit_test(test_null_entry_refused),
        cmocka_unit_test(test_not_a_plugin_refused),
        cmocka_unit_test(test_unknown_backend_lists_choices),
        cmocka_unit_test(test_unknown_device_lists_devices),
        cmocka_unit_test(test_duplicate_plugin_refused),
        cmocka_unit_test(test_auto_choice),
        cmocka_unit_test(test_status_names),
    };
    return TH_RUN(tests);
}
