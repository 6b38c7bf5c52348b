/* A program outside the source tree, built against the installed clgrad
 * through `pkg-config --cflags --libs clgrad` (tests/install/check.sh). It
 * uses only the public API. */
#include <clgrad/clgrad.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    /* the installed headers and library are one release */
    if (strcmp(cg_version(), CLGRAD_VERSION_STRING) != 0 || CLGRAD_VERSION_NUMBER < 100) {
        fprintf(stderr, "consumer: library %s, headers %s\n", cg_version(), CLGRAD_VERSION_STRING);
        return 1;
    }
    /* The installed library loads no plugin from the build tree (issue 17
     * item 7): check.sh names that tree in CONSUMER_BUILD_DIR. */
    const char *build = getenv("CONSUMER_BUILD_DIR");
    struct cg_backend_entry_info info[16];
    int n = 0;
    cg_backends_list(info, 16, &n);
    for (int i = 0; build && *build && i < n && i < 16; i++) {
        if (strncmp(info[i].path, build, strlen(build)) == 0) {
            fprintf(stderr, "consumer: the installed library found backend '%s' in the build "
                    "tree: %s\n", info[i].name, info[i].path);
            return 1;
        }
    }
    struct cg_ctx_options o = {.backend = "cpu", .seed = 1};
    cg_ctx *ctx;
    if (cg_ctx_create(&ctx, &o) != CG_OK) {
        fprintf(stderr, "consumer: %s\n", cg_last_error(NULL));
        return 1;
    }
    const float x[4] = {1, 2, 3, 4};
    float y[4] = {0};
    cg_scope_begin(ctx);
    cg_tensor *t = cg_tensor_from_host(ctx, CG_SHAPE(2, 2), x);
    cg_status st = cg_tensor_to_host(t, y, 4);
    cg_scope_end(ctx);
    cg_ctx_free(ctx);
    if (st != CG_OK || y[3] != 4.0f) {
        fprintf(stderr, "consumer: round trip failed\n");
        return 1;
    }
    printf("consumer: ok (%s)\n", cg_status_str(CG_OK));
    return 0;
}
