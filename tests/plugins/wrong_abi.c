/* A plugin built for a different ABI version: the loader must refuse it. */
#include <clgrad/backend.h>

static const struct cg_backend_i wrong = {
    .abi_version = CG_BACKEND_ABI_VERSION + 998,
    .struct_size = sizeof(struct cg_backend_i),
    .name = "broken",
};

CG_BACKEND_EXPORT const struct cg_backend_i *cg_backend_entry(void);
CG_BACKEND_EXPORT const struct cg_backend_i *cg_backend_entry(void) { return &wrong; }
