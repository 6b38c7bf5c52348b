/*
 * backends/opencl/env.c — the opencl plugin's switches from the
 * environment. A value that is not accepted is never ignored silently: it
 * is named on stderr, with what is accepted, and the default stays (a
 * switch only tunes speed or logging, so the run goes on).
 */
#include "cl_backend.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether name=value was already named on stderr: each switch is read at
 * every open (some at every program build), one line is enough. */
static int warned(const char *name, const char *value)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    static char seen[16][96];
    static int n;
    char key[96];
    snprintf(key, sizeof key, "%s=%s", name, value);
    pthread_mutex_lock(&lock);
    int found = 0;
    for (int i = 0; i < n && !found; ++i)
        found = strcmp(seen[i], key) == 0;
    if (!found && n < 16)
        memcpy(seen[n++], key, sizeof key);
    pthread_mutex_unlock(&lock);
    return found;
}

int cg_cl_env_bool(const char *name, int dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    if (strcmp(v, "0") == 0 || strcmp(v, "1") == 0)
        return v[0] == '1';
    if (!warned(name, v))
        fprintf(stderr, "clgrad opencl: %s=\"%s\" is not accepted (0 or 1); using %d\n", name,
                v, dflt);
    return dflt;
}

long long cg_cl_env_int(const char *name, long long lo, long long hi, long long dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno == 0 && *end == '\0' && x >= lo && x <= hi)
        return x;
    if (!warned(name, v))
        fprintf(stderr,
                "clgrad opencl: %s=\"%s\" is not accepted (a whole number from %lld to %lld); "
                "using %lld\n", name, v, lo, hi, dflt);
    return dflt;
}

int cg_cl_env_choice(const char *name, const char *const *choices, int dflt)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return dflt;
    char accepted[256] = "";
    size_t len = 0;
    for (int i = 0; choices[i]; ++i) {
        if (strcmp(v, choices[i]) == 0)
            return i;
        int w = snprintf(accepted + len, sizeof accepted - len, "%s%s", i ? ", " : "",
                         choices[i]);
        if (w > 0 && (size_t)w < sizeof accepted - len)
            len += (size_t)w;
    }
    if (!warned(name, v))
        fprintf(stderr, "clgrad opencl: %s=\"%s\" is not accepted (%s); using %s\n", name, v,
                accepted, dflt >= 0 ? choices[dflt] : "the default");
    return dflt;
}
