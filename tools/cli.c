/* tools/cli.c — see cli.h. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *cli_prog = "clgrad";

void cli_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    exit(2);
}

double cli_double(const char *opt, const char *v, double lo, double hi)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (*v == '\0' || *end != '\0' || errno != 0 || !(d >= lo && d <= hi))
        cli_usage_error("%s: '%s' is not a number in [%g, %g]", opt, v, lo, hi);
    return d;
}

int64_t cli_int(const char *opt, const char *v, int64_t lo, int64_t hi)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || n < lo || n > hi)
        cli_usage_error("%s: '%s' is not an integer in [%lld, %lld]", opt, v, (long long)lo,
                        (long long)hi);
    return n;
}

char cli_delimiter(const char *v)
{
    if (strcmp(v, "tab") == 0 || strcmp(v, "\\t") == 0) return '\t';
    if (strlen(v) == 1 && v[0] != '"' && v[0] != '\n') return v[0];
    cli_usage_error("--delimiter: '%s' is not one character", v);
}

enum cg_task cli_task(const char *v)
{
    if (strcmp(v, "auto") == 0) return CG_TASK_AUTO;
    if (strcmp(v, "regression") == 0) return CG_TASK_REGRESSION;
    if (strcmp(v, "classification") == 0) return CG_TASK_CLASSIFICATION;
    cli_usage_error("--task: '%s' is not auto, regression or classification", v);
}

bool cli_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

void cli_idx_path(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s.gz", dir, name);
    if (access(buf, R_OK) != 0) snprintf(buf, len, "%s/%s", dir, name);
}

struct cg_dataset *cli_load_csv(const char *path, const char *target, char delimiter,
                                enum cg_task task, const char *missing, const char *layout_in,
                                char **layout_out)
{
    if (!target) cli_usage_error("--target COLUMN is required with a CSV file");
    struct cg_csv_options co = cg_csv_options_default();
    co.delimiter = delimiter;
    co.target = target;
    co.task = task;
    if (strcmp(missing, "error") == 0) co.missing = CG_MISSING_ERROR;
    else if (strcmp(missing, "drop") == 0) co.missing = CG_MISSING_DROP;
    else if (strcmp(missing, "mean") == 0) co.missing = CG_MISSING_FILL_MEAN;
    else if (strcmp(missing, "zero") == 0) {
        co.missing = CG_MISSING_FILL_CONSTANT;
        co.fill_value = 0;
    } else cli_usage_error("--missing: '%s' is not error, drop, mean or zero", missing);
    struct cg_table *tab;
    if (cg_csv_read(path, &co, &tab) != CG_OK) {
        const char *e = cg_last_error(NULL);
        if (strstr(e, "missing value")) cli_die("%s; --missing drop, mean or zero handles them", e);
        cli_die("%s", e);
    }
    if (layout_in) {               /* the training file's columns and categories */
        struct cg_table *like;
        if (cg_table_layout_parse(layout_in, &like) != CG_OK)
            cli_die("the checkpoint's column layout: %s", cg_last_error(NULL));
        cg_status st = cg_table_conform(tab, like);
        cg_table_free(like);
        if (st != CG_OK) cli_die("%s: %s", path, cg_last_error(NULL));
    }
    if (layout_out && cg_table_layout_format(tab, layout_out) != CG_OK)
        cli_die("%s", cg_last_error(NULL));
    struct cg_dataset *ds;
    cg_status st = cg_dataset_from_table(tab, &ds);
    cg_table_free(tab);
    if (st != CG_OK) cli_die("%s", cg_last_error(NULL));
    if (ds->n < 1) cli_die("%s: no usable rows", path);
    return ds;
}
