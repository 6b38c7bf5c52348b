/*
 * tools/cli.h — what the command-line tools share: one-line fatal errors,
 * option value parsing, and loading CSV and IDX data the same way.
 * Every function here exits the process on failure (status 1, or 2 for a
 * usage error), printing "<prog>: <message>" to stderr.
 */
#ifndef CLGRAD_TOOLS_CLI_H
#define CLGRAD_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <clgrad/clgrad.h>

#define CLI_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* The program name used in messages; set it first thing in main. */
extern const char *cli_prog;

void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A usage error: the message plus "(see --help)", exit status 2. */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Option values, each checked against its range. */
double cli_double(const char *opt, const char *v, double lo, double hi);
int64_t cli_int(const char *opt, const char *v, int64_t lo, int64_t hi);
char cli_delimiter(const char *v);                 /* one character, or "tab" */
enum cg_task cli_task(const char *v);              /* auto|regression|classification */

bool cli_is_dir(const char *path);
/* dir/name.gz if it exists, else dir/name. */
void cli_idx_path(char *buf, size_t len, const char *dir, const char *name);

/* Reads a CSV file into a dataset with features from every column but
 * target. missing: error, drop, mean or zero. layout_in (a checkpoint's
 * "csv.columns", or NULL): first conform the table to the training file's
 * columns and categories; layout_out (or NULL): the table's layout text,
 * malloc'ed, to store with the model (cg_table_layout_format). */
#define CLI_LAYOUT_KEY "csv.columns"
struct cg_dataset *cli_load_csv(const char *path, const char *target, char delimiter,
                                enum cg_task task, const char *missing, const char *layout_in,
                                char **layout_out);

#endif
