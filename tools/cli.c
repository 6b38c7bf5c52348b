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

struct cg_dataset *cli_load_csv(const char *path, const char *target, char delimiter,
                                enum cg_task task, const char *missing, const char *layout_in,
                                char **layout_out)
{
    if (!target) cli_usage_error("option '--target' is required with a CSV file");
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
    } else cli_usage_error("option '--missing': '%s' is not error, drop, mean or zero", missing);
    struct cg_table *tab;
    cg_status st = cg_csv_read(path, &co, &tab);
    if (st == CG_STATUS_MISSING_VALUE)
        cli_die("%s; --missing drop, mean or zero handles them", cg_last_error(NULL));
    if (st != CG_OK) cli_die("%s", cg_last_error(NULL));
    if (layout_in) {               /* the training file's columns and categories */
        struct cg_table *like;
        if (cg_table_layout_parse(layout_in, &like) != CG_OK)
            cli_die("the checkpoint's column layout: %s", cg_last_error(NULL));
        st = cg_table_conform(tab, like);
        cg_table_free(like);
        if (st != CG_OK) cli_die("%s: %s", path, cg_last_error(NULL));
    }
    if (layout_out && cg_table_layout_format(tab, layout_out) != CG_OK)
        cli_die("%s", cg_last_error(NULL));
    struct cg_dataset *ds;
    st = cg_dataset_from_table(tab, &ds);
    cg_table_free(tab);
    if (st != CG_OK) cli_die("%s", cg_last_error(NULL));
    if (ds->n < 1) cli_die("%s: no usable rows", path);
    return ds;
}
