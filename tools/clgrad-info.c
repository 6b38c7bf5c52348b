/*
 * clgrad-info — lists the backends clgrad finds, each backend's devices, and
 * what CLGRAD_BACKEND=auto would pick. With --backend / --device (or
 * CLGRAD_BACKEND / CLGRAD_DEVICE) it also opens that choice, so a bad value shows the same error a
 * training run would.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <clgrad/clgrad.h>

#include "cli.h"

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

static const struct option long_options[] = {
    CLI_OPTIONS_COMMON,
    {"backend", required_argument, NULL, CLI_OPT_BACKEND},
    {"device", required_argument, NULL, CLI_OPT_DEVICE},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
    cli_prog = "clgrad-info";
    const char *backend = getenv("CLGRAD_BACKEND"), *device = getenv("CLGRAD_DEVICE");
    int c;
    while ((c = cli_getopt(argc, argv, "h", long_options)) != -1) {
        switch (c) {
        case 'h':
            printf("usage: clgrad-info [OPTION]...\n"
                   "Lists clgrad's backends and devices and what 'auto' picks.\n"
                   "\n"
                   "  --backend NAME       also show what this backend selects (env: CLGRAD_BACKEND)\n"
                   "  --device D           ... and this device (env: CLGRAD_DEVICE)\n"
                   CLI_HELP_COMMON
                   "Honours CLGRAD_PLUGIN_PATH (more folders to search for backend plugins).\n");
            return 0;
        case CLI_OPT_VERSION: cli_version(cg_version());
        case CLI_OPT_BACKEND: backend = optarg; break;
        case CLI_OPT_DEVICE: device = optarg; break;
        }
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

    if ((backend && *backend) || (device && *device)) {
        cg_ctx *ctx;
        struct cg_ctx_options co = {.backend = backend, .device = device};
        if (cg_ctx_create(&ctx, &co) != CG_OK) cli_die("%s", cg_last_error(NULL));
        printf("selected (backend %s, device %s): %s on %s\n", backend ? backend : "auto",
               device ? device : "auto", cg_ctx_backend_name(ctx), cg_ctx_device(ctx)->name);
        cg_ctx_free(ctx);
    }
    return 0;
}
