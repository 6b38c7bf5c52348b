/* A shared module without the entry symbol: the loader must refuse it. */
#include <clgrad/backend.h>

CG_BACKEND_EXPORT int cg_not_the_entry(void);
CG_BACKEND_EXPORT int cg_not_the_entry(void) { return 42; }
