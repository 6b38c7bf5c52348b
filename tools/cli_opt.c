/* tools/cli_opt.c — messages and option parsing (see cli.h); needs no
 * libclgrad, so clgrad-tune links it too. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cli_prog = "clgrad";
const char *cli_rank = "";
void (*cli_on_exit)(int status);

void cli_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: %s", cli_prog, cli_rank);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (cli_on_exit) cli_on_exit(1);
    exit(1);
}

char *cli_strf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) cli_die("cannot format a message");
    char *s = malloc((size_t)n + 1);
    if (!s) cli_die("out of memory");
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

void cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: %s", cli_prog, cli_rank);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    if (cli_on_exit) cli_on_exit(2);
    exit(2);
}

/* The long name of the last option, "--name" (malloc'ed, replaced per call). */
static char *last_opt;

static void set_last_opt(const struct option *longopts, int val, const char *fallback)
{
    const char *name = NULL;
    for (const struct option *o = longopts; o->name; o++)
        if (o->val == val && !o->flag) {
            name = o->name;
            break;
        }
    free(last_opt);
    last_opt = name ? cli_strf("--%s", name) : cli_strf("%s", fallback);
}

const char *cli_optname(void)
{
    return last_opt ? last_opt : "";
}

int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts)
{
    /* ':' first: a missing value returns ':' instead of a message of
     * getopt's own; opterr 0 keeps getopt quiet for unknown options too. */
    size_t n = strlen(shortopts);
    char *so = malloc(n + 2);
    if (!so) cli_die("out of memory");
    so[0] = ':';
    memcpy(so + 1, shortopts, n + 1);
    opterr = 0;
    int c = getopt_long(argc, argv, so, longopts, NULL);
    free(so);
    if (c == -1) {
        free(last_opt);
        last_opt = NULL;
        if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
        return -1;
    }
    const char *arg = argv[optind - 1];
    if (c == ':') {
        set_last_opt(longopts, optopt, arg);
        cli_usage_error("option '%s' needs a value", cli_optname());
    }
    if (c == '?') {
        /* optopt 0: an unknown or ambiguous long name; a long option given
         * "=value" that takes none has its val in optopt. */
        if (optopt && strncmp(arg, "--", 2) == 0 && strchr(arg, '=')) {
            set_last_opt(longopts, optopt, arg);
            cli_usage_error("option '%s' takes no value", cli_optname());
        }
        if (optopt) cli_usage_error("unknown option '-%c'", optopt);
        /* the name without "=value"; a prefix of several long names is
         * ambiguous (getopt_long takes a prefix of one) */
        size_t len = strcspn(arg, "=");
        int matches = 0;
        for (const struct option *o = longopts; o->name && len > 2; o++)
            matches += strncmp(o->name, arg + 2, len - 2) == 0;
        cli_usage_error("%s option '%.*s'", matches > 1 ? "ambiguous" : "unknown", (int)len, arg);
    }
    set_last_opt(longopts, c, "");
    return c;
}

void cli_version(const char *version)
{
    printf("%s (clgrad) %s\n", cli_prog, version);
    exit(0);
}

void cli_threads(const char *v)
{
    int64_t n = cli_int(cli_optname(), v, 1, 1024);
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)n);
    if (setenv("CLGRAD_CPU_THREADS", buf, 1) != 0) cli_die("setenv: %s", strerror(errno));
}

double cli_double(const char *opt, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !(d >= lo && d <= hi))
        cli_usage_error("option '%s': '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    return d;
}

int64_t cli_int(const char *opt, const char *v, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || n < lo || n > hi)
        cli_usage_error("option '%s': '%s' is not an integer in [%lld, %lld]", opt, v,
                        (long long)lo,
                        (long long)hi);
    return n;
}

