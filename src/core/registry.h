/* src/core/registry.h — the backend registry, for context.c. */
#ifndef CLGRAD_CORE_REGISTRY_H
#define CLGRAD_CORE_REGISTRY_H

#include "clgrad/backend.h"

/* Finds a loaded backend by name (case-insensitive); on failure records a
 * message listing the available backends. */
cg_status cg__registry_find(const char *name, const struct cg_backend_i **out);
/* Lists the devices of be into a malloc'd array (free it). */
cg_status cg__list_devices(const struct cg_backend_i *be, struct cg_device_info **out,
                           int *count);
/* "cpu, opencl" (with reasons for unusable plugins). */
void cg__registry_describe(char *buf, size_t len);

#endif
