/* A plugin whose entry returns NULL: the loader must refuse it. */
#include <clgrad/backend.h>

CG_BACKEND_EXPORT const struct cg_backend_i *cg_backend_entry(void);
CG_BACKEND_EXPORT const struct cg_backend_i *cg_backend_entry(void) { return 0; }
