/*
 * tools/cli.h — what the command-line tools share: one-line fatal errors,
 * option parsing (cli_opt.c, no libclgrad needed), and loading CSV and IDX
 * data the same way (cli.c).
 * Every function here exits the process on failure (status 1, or 2 for a
 * usage error), printing "<prog>: <message>" to stderr.
 */
#ifndef CLGRAD_TOOLS_CLI_H
#define CLGRAD_TOOLS_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <clgrad/clgrad.h>

#define CLI_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* The program name used in messages; set it first thing in main. */
extern const char *cli_prog;
/* Under mpirun (cli_dist.c): "rank R/N: " after the program name, and a
 * hook cli_die and cli_usage_error call before they exit (MPI_Abort, so
 * the other ranks do not wait for this one forever). */
extern const char *cli_rank;
extern void (*cli_on_exit)(int status);

void cli_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* A formatted string of any length (malloc'ed; exits when out of memory).
 * The tools keep user input (paths, model specs, names) in these, never in
 * fixed-size buffers that would cut it silently. */
char *cli_strf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A usage error: the message plus "(see --help)", exit status 2. */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* ---- options ----------------------------------------------------------
 * Every tool parses its options with getopt_long through cli_getopt, so
 * "--epochs=3", "--epochs 3", "-e 3" and "-e3" all work, unique prefixes of
 * long names are accepted, and every usage error has one wording:
 *
 *   <prog>: unknown option '--bogus' (see --help)
 *   <prog>: ambiguous option '--e' (see --help)
 *   <prog>: option '--epochs' needs a value (see --help)
 *   <prog>: option '--quiet' takes no value (see --help)
 *   <prog>: option '--epochs': 'x' is not an integer in [1, 1000000] (see --help)
 *   <prog>: unexpected argument 'foo' (see --help)
 *   <prog>: option '--data' is required (see --help)
 *
 * Short forms shared by the tools: -e epochs, -b batch, -l lr, -s seed,
 * -t threads, -o save, -h help. Long-only options use values from
 * CLI_OPT_LONG up. */
enum {
    CLI_OPT_LONG = 0x100,
    CLI_OPT_VERSION = CLI_OPT_LONG,  /* --version             */
    CLI_OPT_BACKEND,                 /* --backend NAME        */
    CLI_OPT_DEVICE,                  /* --device D            */
    CLI_OPT_TARGET,                  /* the CSV options (CLI_OPTIONS_CSV) */
    CLI_OPT_TASK,
    CLI_OPT_DELIMITER,
    CLI_OPT_MISSING,
    CLI_OPT_SKIP_ROWS,
    CLI_OPT_NO_HEADER,
    CLI_OPT_DROP,
    CLI_OPT_FEATURES,
    CLI_OPT_KEEP,
    CLI_OPT_TOOL                     /* a tool's own options from here */
};
/* The entries every tool has (put them in its table): --help, --version. */
#define CLI_OPTIONS_COMMON \
    {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, CLI_OPT_VERSION}
/* --backend, --device and --threads (-t) for the tools that make a context. */
#define CLI_OPTIONS_DEVICE \
    {"backend", required_argument, NULL, CLI_OPT_BACKEND}, \
    {"device", required_argument, NULL, CLI_OPT_DEVICE}, \
    {"threads", required_argument, NULL, 't'}
/* The --help lines for CLI_OPTIONS_DEVICE (and the variables they override). */
#define CLI_HELP_DEVICE \
    "  --backend NAME       cpu, opencl or auto (default auto) (env: CLGRAD_BACKEND)\n" \
    "  --device D           device index or name substring (env: CLGRAD_DEVICE)\n" \
    "  -t, --threads N      cpu backend threads (default: the online cores, at most 64)\n" \
    "                       (env: CLGRAD_CPU_THREADS)\n"
#define CLI_HELP_COMMON \
    "  -h, --help           this text\n" \
    "      --version        the clgrad version\n"

/* The next option as getopt_long returns it (-1 at the end, when no
 * operand may remain: any is an "unexpected argument" error); '?' and ':'
 * never come back, they are usage errors. shortopts without a leading ':'.
 * optarg holds the value. */
int cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts);
/* The long name of the option cli_getopt returned last, as "--epochs"
 * (static storage). */
const char *cli_optname(void);
/* --version: prints "<prog> (clgrad) VERSION" and exits 0; VERSION is
 * cg_version() (the library linked) in every tool that links libclgrad. */
void cli_version(const char *version) __attribute__((noreturn));
/* --threads N: checks N (1..1024) and sets CLGRAD_CPU_THREADS for the
 * context the tool creates next. */
void cli_threads(const char *v);

/* Option values, each checked against its range; opt names the option in
 * the message (cli_optname()). */
double cli_double(const char *opt, const char *v, double lo, double hi);
int64_t cli_int(const char *opt, const char *v, int64_t lo, int64_t hi);
char cli_delimiter(const char *v);                 /* one character, or "tab" */
enum cg_task cli_task(const char *v);              /* auto|regression|classification */

bool cli_is_dir(const char *path);
/* dir/name.gz if it exists, else dir/name (malloc'ed). */
char *cli_idx_path(const char *dir, const char *name);

/* ---- CSV files -------------------------------------------------------
 * The options that say how to read a CSV (struct cg_csv_options), shared
 * by clgrad-train and clgrad-eval; *_given: set on the command line (eval
 * otherwise takes the checkpoint's). */
struct cli_csv {
    const char *target, *missing, *drop, *features, *keep;
    char delimiter;
    enum cg_task task;
    int skip_rows;
    bool no_header;
    bool task_given, delimiter_given, missing_given, skip_rows_given, no_header_given;
};
#define CLI_CSV_DEFAULT ((struct cli_csv){.missing = "error", .delimiter = ',', \
                                          .task = CG_TASK_AUTO})
#define CLI_OPTIONS_CSV \
    {"target", required_argument, NULL, CLI_OPT_TARGET}, \
    {"task", required_argument, NULL, CLI_OPT_TASK}, \
    {"delimiter", required_argument, NULL, CLI_OPT_DELIMITER}, \
    {"missing", required_argument, NULL, CLI_OPT_MISSING}, \
    {"skip-rows", required_argument, NULL, CLI_OPT_SKIP_ROWS}, \
    {"no-header", no_argument, NULL, CLI_OPT_NO_HEADER}, \
    {"drop", required_argument, NULL, CLI_OPT_DROP}, \
    {"features", required_argument, NULL, CLI_OPT_FEATURES}, \
    {"keep", required_argument, NULL, CLI_OPT_KEEP}
#define CLI_HELP_CSV \
    "  --target COL         CSV: the column to predict: a name, a 1-based column\n" \
    "                       number or 'last'\n" \
    "  --task KIND          CSV: auto (default), regression or classification. auto:\n" \
    "                       text labels, and integers with at most 20 distinct\n" \
    "                       values (and at most one per two rows), are classes;\n" \
    "                       anything else is regression. The choice and the\n" \
    "                       reason are printed.\n" \
    "  --delimiter C        CSV: field separator (default ','; 'tab' for a tab)\n" \
    "  --missing POLICY     CSV: empty cells (also NA, NaN, ?): error (default),\n" \
    "                       drop (the row), mean or zero\n" \
    "  --skip-rows N        CSV: lines to skip before the header (default 0)\n" \
    "  --no-header          CSV: no header row; columns are column1..columnN\n" \
    "  --drop COL,...       CSV: columns not to use (names, numbers or 'last')\n" \
    "  --features COL,...   CSV: the only feature columns to use\n" \
    "  --keep COL,...       CSV: text columns to one-hot encode even though nearly\n" \
    "                       every value is distinct (such columns, e.g. IDs, are\n" \
    "                       otherwise dropped with a warning); dates in ISO form\n" \
    "                       (2012-01-31, 2012/01/31, with or without a time)\n" \
    "                       become year, month, day-of-year and weekday features\n"

/* Handles c if it is one of CLI_OPTIONS_CSV (returns true). */
bool cli_csv_option(int c, const char *v, struct cli_csv *o);
/* Reads a CSV file. like (a training layout, or NULL): read as that file
 * was read (cg_csv_options.like), then conformed to its columns and
 * categories. An empty cell under --missing error suggests the option. */
struct cg_table *cli_csv_read(const char *path, const struct cli_csv *o,
                              const struct cg_table *like);
/* The table's rows as a dataset (path names it in messages). */
struct cg_dataset *cli_table_dataset(const struct cg_table *t, const char *path);

/* Checkpoint metadata keys of CSV models: the column layout, the options
 * that describe the file's format, and the held-out test split. */
#define CLI_LAYOUT_KEY "csv.columns"
#define CLI_SKIP_ROWS_KEY "csv.skip_rows"
#define CLI_NO_HEADER_KEY "csv.no_header"
#define CLI_DELIMITER_KEY "csv.delimiter"
#define CLI_MISSING_KEY "csv.missing"
#define CLI_TEST_SPLIT_KEY "csv.test_split"
#define CLI_SEED_KEY "csv.seed"

/* ---- data parallelism (cli_dist.c) -----------------------------------
 * cli_dist_begin: under mpirun (cg_dist_launched), joins the job through
 * cg_dist_create and sets cli_rank and cli_on_exit; alone, leaves
 * cli_dist NULL (rank 0 of 1). cli_dist_end frees it (MPI_Finalize). */
extern cg_dist *cli_dist;
void cli_dist_rank_from_env(void);
void cli_dist_begin(cg_ctx *ctx);
void cli_dist_end(void);
/* This rank's part [*lo, *hi) of n items, for sharded evaluation. */
void cli_dist_part(int64_t n, int64_t *lo, int64_t *hi);
#endif
