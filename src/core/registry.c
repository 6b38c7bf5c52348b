/*
 * src/core/registry.c — the backend registry and plugin loader.
 *
 * The registry holds the built-in cpu backend plus every plugin found in
 * CLGRAD_PLUGIN_PATH (':'-separated), the install folder and, only when the
 * library runs from its build tree, that tree's backends/, in that order; the first plugin of a given name wins. It is filled once,
 * under a lock, on first use. Each plugin is checked step by step (as ggml's
 * load_backend and PipeWire's open_plugin do), every failure with its own
 * status and a message naming the file:
 *   dlopen(RTLD_NOW | RTLD_LOCAL) -> dlsym(CG_BACKEND_ENTRY_NAME) -> vtable
 *   not NULL -> abi_version -> struct_size -> required members present.
 * A plugin that fails stays listed (with its error) so that asking for it
 * says why it is not there.
 */
#define _GNU_SOURCE   /* dladdr */
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "config.h"
#include "core/internal.h"
#include "core/registry.h"

struct reg_entry {
    struct cg_backend_entry_info info;
    const struct cg_backend_i *be;
    void *handle;
};

static struct reg_entry entries[CG_MAX_BACKENDS];
static int n_entries;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static bool name_taken(const char *name)
{
    for (int i = 0; i < n_entries; i++)
        if (strcmp(entries[i].info.name, name) == 0) return true;
    return false;
}

/* Checks a vtable; on failure fills err and returns the status. */
static cg_status check_vtable(const struct cg_backend_i *be, const char *path,
                              char *err, size_t len)
{
    if (!be) {
        snprintf(err, len, "%s: %s() returned NULL", path, CG_BACKEND_ENTRY_NAME);
        return CG_STATUS_PLUGIN_INVALID;
    }
    if (be->abi_version != CG_BACKEND_ABI_VERSION) {
        snprintf(err, len, "%s: plugin built for backend ABI version %u, this clgrad uses %u",
                 path, be->abi_version, CG_BACKEND_ABI_VERSION);
        return CG_STATUS_ABI_MISMATCH;
    }
    if (be->struct_size < CG_BACKEND_I_REQUIRED_SIZE) {
        snprintf(err, len, "%s: plugin vtable is %u bytes, this clgrad needs at least %zu",
                 path, be->struct_size, (size_t)CG_BACKEND_I_REQUIRED_SIZE);
        return CG_STATUS_ABI_MISMATCH;
    }
    if (!be->name || !*be->name || strlen(be->name) >= sizeof entries[0].info.name) {
        snprintf(err, len, "%s: plugin vtable has no valid name", path);
        return CG_STATUS_PLUGIN_INVALID;
    }
    if (!be->list_devices || !be->open || !be->close || !be->alloc || !be->release ||
        !be->upload || !be->download || !be->copy || !be->fill || !be->ew || !be->reduce ||
        !be->gemm || !be->softmax || !be->softmax_backward || !be->index_rows ||
        !be->index_rows_add || !be->pick || !be->pick_add || !be->optim_update ||
        !be->finish || !be->get_stats || !be->reset_stats || !be->last_error) {
        snprintf(err, len, "%s: plugin '%s' lacks a required vtable member", path, be->name);
        return CG_STATUS_PLUGIN_INVALID;
    }
    return CG_OK;
}

/* Opens one plugin file. On success *out_be and *out_handle are set. */
static cg_status open_plugin(const char *path, const struct cg_backend_i **out_be,
                             void **out_handle, char *err, size_t len)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(err, len, "%s: not a loadable plugin: %s", path, dlerror());
        return CG_STATUS_PLUGIN_INVALID;
    }
    dlerror();
    void *sym = dlsym(h, CG_BACKEND_ENTRY_NAME);
    if (!sym) {
        const char *why = dlerror();
        snprintf(err, len, "%s: no entry symbol %s: %s", path, CG_BACKEND_ENTRY_NAME,
                 why ? why : "symbol is NULL");
        dlclose(h);
        return CG_STATUS_PLUGIN_INVALID;
    }
    cg_backend_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object pointer -> function pointer */
    const struct cg_backend_i *be = entry();
    cg_status st = check_vtable(be, path, err, len);
    if (st != CG_OK) {
        dlclose(h);
        return st;
    }
    *out_be = be;
    *out_handle = h;
    return CG_OK;
}

static struct reg_entry *add_entry(const char *name, const char *path)
{
    if (n_entries == CG_MAX_BACKENDS) return NULL;
    struct reg_entry *e = &entries[n_entries++];
    memset(e, 0, sizeof *e);
    snprintf(e->info.name, sizeof e->info.name, "%s", name);
    snprintf(e->info.path, sizeof e->info.path, "%s", path);
    return e;
}

/* Registers the plugin at path; the caller holds reg_lock. */
static cg_status register_plugin(const char *path, const char *expected_name)
{
    const struct cg_backend_i *be = NULL;
    void *handle = NULL;
    char err[sizeof entries[0].info.error + 64];
    cg_status st = open_plugin(path, &be, &handle, err, sizeof err);
    const char *name = st == CG_OK ? be->name : expected_name;
    if (st == CG_OK && name_taken(name)) {
        snprintf(err, sizeof err, "%s: backend '%s' is already registered", path, name);
        dlclose(handle);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    if (st != CG_OK && (!name || name_taken(name))) return st; /* nothing to list */
    struct reg_entry *e = add_entry(name, path);
    if (!e) {
        if (handle) dlclose(handle);
        snprintf(err, sizeof err, "%s: too many backends (at most %d)", path, CG_MAX_BACKENDS);
        cg__set_thread_error(err);
        return CG_STATUS_INVALID_ARGUMENT;
    }
    if (st == CG_OK) {
        e->be = be;
        e->handle = handle;
        e->info.loaded = true;
    } else {
        memcpy(e->info.error, err, sizeof e->info.error - 1); /* err is larger: truncate */
        e->info.error[sizeof e->info.error - 1] = '\0';
        cg__set_thread_error(err);
    }
    return st;
}

/* "clgrad-backend-opencl.so" -> "opencl"; NULL if the name does not match. */
static bool plugin_name(const char *file, char *name, size_t len)
{
    size_t pre = strlen(CG_BACKEND_FILE_PREFIX), n = strlen(file);
    if (n <= pre + 3 || strncmp(file, CG_BACKEND_FILE_PREFIX, pre) != 0 ||
        strcmp(file + n - 3, ".so") != 0)
        return false;
    snprintf(name, len, "%.*s", (int)(n - pre - 3), file + pre);
    return true;
}

static void scan_dir(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[1024], name[64];
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        int n = snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (n < 0 || (size_t)n >= sizeof path) continue;
        if (plugin_name(de->d_name, name, sizeof name)) {
            if (!name_taken(name)) register_plugin(path, name);
        } else if (depth > 0) {
            scan_dir(path, depth - 1); /* build tree: backends/<name>/ */
        }
    }
    closedir(d);
}

/* The build tree's backends/ folder when this library runs uninstalled,
 * else false. Uninstalled means the library file itself sits at the root
 * of a meson build tree (next to meson-private/): the build tree is then
 * the one it was built in, found at run time, so no build path is compiled
 * into the library, and an installed library never loads plugins from a
 * build folder (which may be anyone's, under /tmp; issue 17 item 7).
 * `meson devenv` and the tests run the build tree's library, so they find
 * its plugins this way. */
static bool uninstalled_plugin_dir(char *out, size_t len)
{
    Dl_info info;
    if (!dladdr((const void *)entries, &info) || !info.dli_fname) return false;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash) return false;
    char marker[1024];
    int n = snprintf(marker, sizeof marker, "%.*s/meson-private", (int)(slash - info.dli_fname),
                     info.dli_fname);
    struct stat sb;
    if (n < 0 || (size_t)n >= sizeof marker || stat(marker, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return false;
    n = snprintf(out, len, "%.*s/backends", (int)(slash - info.dli_fname), info.dli_fname);
    return n > 0 && (size_t)n < len;
}

static void registry_init(void)
{
    pthread_mutex_lock(&reg_lock);
    struct reg_entry *cpu = add_entry("cpu", "built in");
    cpu->be = cg__cpu_backend();
    cpu->info.loaded = true;

    const char *env = getenv("CLGRAD_PLUGIN_PATH");
    if (env && *env) {
        char *copy = strdup(env), *save = NULL;
        for (char *dir = copy ? strtok_r(copy, ":", &save) : NULL; dir;
             dir = strtok_r(NULL, ":", &save)) {
            /* A folder that is not there is a typo more often than not
             * (issue 17 item 6): say so, once, and go on. */
            struct stat sb;
            if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
                fprintf(stderr, "clgrad: warning: CLGRAD_PLUGIN_PATH=%s: %s is not a folder "
                        "(accepted: ':'-separated folders holding clgrad-backend-*.so)\n",
                        env, dir);
            scan_dir(dir, 0);
        }
        free(copy);
    }
    scan_dir(CG_PLUGIN_INSTALL_DIR, 0);
    char build_dir[1024];
    if (uninstalled_plugin_dir(build_dir, sizeof build_dir)) scan_dir(build_dir, 1);
    pthread_mutex_unlock(&reg_lock);
}

static void registry_ensure(void) { pthread_once(&reg_once, registry_init); }

CG_API cg_status cg_plugin_load(const char *path)
{
    if (!path) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_plugin_load: path is NULL");
    registry_ensure();
    pthread_mutex_lock(&reg_lock);
    const struct cg_backend_i *be;
    void *handle;
    char err[2048];
    cg_status st = open_plugin(path, &be, &handle, err, sizeof err);
    if (st == CG_OK && name_taken(be->name)) {
        snprintf(err, sizeof err, "%s: backend '%s' is already registered", path, be->name);
        dlclose(handle);
        st = CG_STATUS_INVALID_ARGUMENT;
    }
    if (st == CG_OK) {
        struct reg_entry *e = add_entry(be->name, path);
        if (e) {
            e->be = be;
            e->handle = handle;
            e->info.loaded = true;
        } else {
            dlclose(handle);
            snprintf(err, sizeof err, "%s: too many backends (at most %d)", path, CG_MAX_BACKENDS);
            st = CG_STATUS_INVALID_ARGUMENT;
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (st != CG_OK) cg__error(NULL, st, "%s", err);
    return st;
}

CG_API cg_status cg_backends_list(struct cg_backend_entry_info *out, int max, int *count)
{
    registry_ensure();
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < n_entries && i < max; i++) out[i] = entries[i].info;
    *count = n_entries;
    pthread_mutex_unlock(&reg_lock);
    return CG_OK;
}

/* "cpu, opencl (not loaded: ...)" for error messages. */
void cg__registry_describe(char *buf, size_t len)
{
    registry_ensure();
    size_t used = 0;
    buf[0] = '\0';
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < n_entries && used < len; i++) {
        const struct reg_entry *e = &entries[i];
        int n = e->info.loaded
                    ? snprintf(buf + used, len - used, "%s%s", i ? ", " : "", e->info.name)
                    : snprintf(buf + used, len - used, "%s%s (unusable: %s)", i ? ", " : "",
                               e->info.name, e->info.error);
        if (n < 0) break;
        used += (size_t)n;
    }
    pthread_mutex_unlock(&reg_lock);
}

cg_status cg__registry_find(const char *name, const struct cg_backend_i **out)
{
    registry_ensure();
    cg_status st = CG_STATUS_BACKEND_NOT_FOUND;
    char why[1100] = "";
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < n_entries; i++) {
        if (strcasecmp(entries[i].info.name, name) != 0) continue;
        if (entries[i].info.loaded) {
            *out = entries[i].be;
            st = CG_OK;
        } else {
            snprintf(why, sizeof why, ": %s", entries[i].info.error);
        }
        break;
    }
    pthread_mutex_unlock(&reg_lock);
    if (st != CG_OK) {
        char avail[2048];
        cg__registry_describe(avail, sizeof avail);
        cg__error(NULL, st, "unknown or unusable backend '%s'%s; available backends: %s",
                  name, why, avail);
    }
    return st;
}

/* Lists the devices of be into a malloc'd array. */
cg_status cg__list_devices(const struct cg_backend_i *be, struct cg_device_info **out, int *count)
{
    char err[1024] = "";
    int n = 0;
    *out = NULL;
    *count = 0;
    cg_status st = be->list_devices(NULL, 0, &n, err, sizeof err);
    if (st != CG_OK)
        return cg__error(NULL, st, "listing devices of backend '%s': %s", be->name, err);
    if (n == 0) return CG_OK;
    struct cg_device_info *devs = calloc((size_t)n, sizeof *devs);
    if (!devs) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "listing devices: out of memory");
    int got = 0;
    st = be->list_devices(devs, n, &got, err, sizeof err);
    if (st != CG_OK) {
        free(devs);
        return cg__error(NULL, st, "listing devices of backend '%s': %s", be->name, err);
    }
    *out = devs;
    *count = got < n ? got : n;
    return CG_OK;
}

CG_API cg_status cg_backend_devices(const char *backend, struct cg_device_info *out, int max,
                                    int *count)
{
    const struct cg_backend_i *be;
    cg_status st = cg__registry_find(backend, &be);
    if (st != CG_OK) return st;
    struct cg_device_info *devs;
    int n;
    if ((st = cg__list_devices(be, &devs, &n)) != CG_OK) return st;
    for (int i = 0; i < n && i < max; i++) out[i] = devs[i];
    *count = n;
    free(devs);
    return CG_OK;
}

/* auto: the first plugin backend that has a GPU, else cpu. */
CG_API cg_status cg_backend_auto(char *backend, size_t backend_len, int *device)
{
    registry_ensure();
    const struct cg_backend_i *list[CG_MAX_BACKENDS];
    int n = 0;
    pthread_mutex_lock(&reg_lock);
    for (int i = 0; i < n_entries; i++)
        if (entries[i].info.loaded && strcmp(entries[i].info.name, "cpu") != 0)
            list[n++] = entries[i].be;
    pthread_mutex_unlock(&reg_lock);
    for (int i = 0; i < n; i++) {
        struct cg_device_info *devs;
        int nd;
        if (cg__list_devices(list[i], &devs, &nd) != CG_OK) continue;
        int pick = list[i]->preferred_device ? list[i]->preferred_device() : -1;
        for (int d = 0; pick < 0 && d < nd; d++)
            if (devs[d].type == CG_DEVICE_GPU) pick = d;
        bool gpu = pick >= 0 && pick < nd && devs[pick].type == CG_DEVICE_GPU;
        free(devs);
        if (gpu) {
            snprintf(backend, backend_len, "%s", list[i]->name);
            *device = pick;
            return CG_OK;
        }
    }
    snprintf(backend, backend_len, "cpu");
    *device = 0;
    return CG_OK;
}
