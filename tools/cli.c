/* tools/cli.c — data loading shared by the tools (see cli.h). */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char cli_delimiter(const char *v)
{
    if (strcmp(v, "tab") == 0 || strcmp(v, "\\t") == 0) return '\t';
    if (strlen(v) == 1 && v[0] != '"' && v[0] != '\n') return v[0];
    cli_usage_error("option '--delimiter': '%s' is not one character or 'tab'", v);
}

enum cg_task cli_task(const char *v)
{
    if (strcmp(v, "auto") == 0) return CG_TASK_AUTO;
    if (strcmp(v, "regression") == 0) return CG_TASK_REGRESSION;
    if (strcmp(v, "classification") == 0) return CG_TASK_CLASSIFICATION;
    cli_usage_error("option '--task': '%s' is not auto, regression or classification", v);
}

bool cli_is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

char *cli_idx_path(const char *dir, const char *name)
{
    char *gz = cli_strf("%s/%s.gz", dir, name);
    if (access(gz, R_OK) == 0) return gz;
    free(gz);
    return cli_strf("%s/%s", dir, name);
}

bool cli_csv_option(int c, const char *v, struct cli_csv *o)
{
    switch (c) {
    case CLI_OPT_TARGET: o->target = v; return true;
    case CLI_OPT_TASK:
        o->task = cli_task(v);
        o->task_given = true;
        return true;
    case CLI_OPT_DELIMITER:
        o->delimiter = cli_delimiter(v);
        o->delimiter_given = true;
        return true;
    case CLI_OPT_MISSING:
        if (strcmp(v, "error") && strcmp(v, "drop") && strcmp(v, "mean") && strcmp(v, "zero"))
            cli_usage_error("option '--missing': '%s' is not error, drop, mean or zero", v);
        o->missing = v;
        o->missing_given = true;
        return true;
    case CLI_OPT_SKIP_ROWS:
        o->skip_rows = (int)cli_int(cli_optname(), v, 0, INT32_MAX);
        o->skip_rows_given = true;
        return true;
    case CLI_OPT_NO_HEADER:
        o->no_header = o->no_header_given = true;
        return true;
    case CLI_OPT_DROP: o->drop = v; return true;
    case CLI_OPT_FEATURES: o->features = v; return true;
    case CLI_OPT_KEEP: o->keep = v; return true;
    default: return false;
    }
}

struct cg_table *cli_csv_read(const char *path, const struct cli_csv *o,
                              const struct cg_table *like)
{
    if (!o->target && !like) cli_usage_error("option '--target' is required with a CSV file");
    struct cg_csv_options co = cg_csv_options_default();
    co.delimiter = o->delimiter;
    co.target = o->target;
    co.task = o->task;
    co.skip_rows = o->skip_rows;
    co.no_header = o->no_header;
    co.drop = o->drop;
    co.features = o->features;
    co.keep = o->keep;
    co.like = like;
    if (strcmp(o->missing, "drop") == 0) co.missing = CG_MISSING_DROP;
    else if (strcmp(o->missing, "mean") == 0) co.missing = CG_MISSING_FILL_MEAN;
    else if (strcmp(o->missing, "zero") == 0) {
        co.missing = CG_MISSING_FILL_CONSTANT;
        co.fill_value = 0;
    } else co.missing = CG_MISSING_ERROR;
    struct cg_table *tab;
    cg_status st = cg_csv_read(path, &co, &tab);
    if (st == CG_STATUS_MISSING_VALUE)
        cli_die("%s; --missing drop, mean or zero handles them", cg_last_error(NULL));
    if (st != CG_OK) cli_die("%s", cg_last_error(NULL));
    if (like && cg_table_conform(tab, like) != CG_OK)   /* the training file's categories */
        cli_die("%s: %s", path, cg_last_error(NULL));
    return tab;
}

struct cg_dataset *cli_table_dataset(const struct cg_table *t, const char *path)
{
    struct cg_dataset *ds;
    if (cg_dataset_from_table(t, &ds) != CG_OK) cli_die("%s: %s", path, cg_last_error(NULL));
    if (ds->n < 1) cli_die("%s: no usable rows", path);
    return ds;
}
