/*
 * clgrad-info — lists the backends clgrad finds, each backend's devices, and
 * what CLGRAD_BACKEND=auto would pick. With CLGRAD_BACKEND or CLGRAD_DEVICE
 * set it also opens that choice, so a bad value shows the same error a
 * training run would.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

static const char *type_name(enum cg_device_type t)
{
    switch (t) {
    case CG_DEVICE_CPU: return "CPU";
    case CG_DEVICE_GPU: return "GPU";
    case CG_DEVICE_ACCELERATOR: return "accelerator";
    default: return "other";
    }
}

static void list_devices(const char *backend, const char *auto_be, int auto_dev)
{
    struct cg_device_info devs[32];
    int n = 0;
    if (cg_backend_devices(backend, devs, 32, &n) != CG_OK) {
        printf("    (cannot list devices: %s)\n", cg_last_error(NULL));
        return;
    }
    if (n == 0) printf("    (no devices)\n");
    for (int i = 0; i < n && i < 32; i++) {
        bool is_auto = strcmp(backend, auto_be) == 0 && i == auto_dev;
        printf("    [%d] %s%s\n", i, devs[i].name, is_auto ? "   <- auto" : "");
        printf("        vendor %s, type %s, %.1f GiB, %" PRIu32 " compute units\n",
               devs[i].vendor, type_name(devs[i].type),
               (double)devs[i].global_mem_bytes / (1024.0 * 1024.0 * 1024.0),
               devs[i].compute_units);
        if (devs[i].version[0]) printf("        %s\n", devs[i].version);
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: clgrad-info\n"
               "Lists clgrad's backends and devices and what 'auto' picks.\n"
               "Honours CLGRAD_BACKEND, CLGRAD_DEVICE and CLGRAD_PLUGIN_PATH.\n");
        return 0;
    }
    struct cg_backend_entry_info bes[CG_MAX_BACKENDS];
    int n = 0;
    cg_backends_list(bes, CG_MAX_BACKENDS, &n);
    char auto_be[64];
    int auto_dev = 0;
    cg_backend_auto(auto_be, sizeof auto_be, &auto_dev);

    printf("clgrad backends:\n");
    for (int i = 0; i < n && i < CG_MAX_BACKENDS; i++) {
        printf("  %s  (%s)\n", bes[i].name, bes[i].path);
        if (!bes[i].loaded) {
            printf("    unusable: %s\n", bes[i].error);
            continue;
        }
        list_devices(bes[i].name, auto_be, auto_dev);
    }
    printf("auto picks: %s device %d\n", auto_be, auto_dev);

    const char *env_be = getenv("CLGRAD_BACKEND"), *env_dev = getenv("CLGRAD_DEVICE");
    if ((env_be && *env_be) || (env_dev && *env_dev)) {
        cg_ctx *ctx;
        if (cg_ctx_create(&ctx, NULL) != CG_OK) {
            fprintf(stderr, "clgrad-info: %s\n", cg_last_error(NULL));
            return 1;
        }
        printf("selected (CLGRAD_BACKEND=%s CLGRAD_DEVICE=%s): %s on %s\n",
               env_be ? env_be : "", env_dev ? env_dev : "", cg_ctx_backend_name(ctx),
               cg_ctx_device(ctx)->name);
        cg_ctx_free(ctx);
    }
    return 0;
}
