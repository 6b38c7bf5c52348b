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

/* Reads a CSV file into a dataset with features from every column but
 * target. missing: error, drop, mean or zero. layout_in (a checkpoint's
 * "csv.columns", or NULL): first conform the table to the training file's
 * columns and categories; layout_out (or NULL): the table's layout text,
 * malloc'ed, to store with the model (cg_table_layout_format). */
#define CLI_LAYOUT_KEY "csv.columns"
struct cg_dataset *cli_load_csv(const char *path, const char *target, char delimiter,
                                enum cg_task task, const char *missing, const char *layout_in,
                                char **layout_out);

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
