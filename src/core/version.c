/* src/core/version.c — cg_version (clgrad/version.h). */
#include "clgrad/version.h"

/* From the generated header the library was built with, so it is the
 * library's own version whatever headers a program was compiled against. */
CG_API const char *cg_version(void)
{
    return CLGRAD_VERSION_STRING;
}
