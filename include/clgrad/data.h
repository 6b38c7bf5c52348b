/*
 * clgrad/data.h — data import (CSV, IDX/MNIST), preprocessing, Dataset and
 * DataLoader.
 *
 * The flow, host side first, device last:
 *
 *   file --cg_csv_read--> cg_table --cg_table_split--> rest, test (held out)
 *   cg_table --cg_dataset_from_table--> cg_dataset
 *   file --cg_idx_load_pair-----------------------------------> cg_dataset
 *   cg_dataset --cg_dataset_split / cg_scaler_fit+apply--> cg_dataset
 *   cg_dataset --cg_loader_next--> (x, y) tensors on the context's device
 *
 * A worked example: a CSV with a string target, standardized features,
 * 20% held out for validation, shuffled mini-batches of 64.
 *
 *     struct cg_csv_options co = cg_csv_options_default();
 *     co.target = "species";                    // class labels, sorted
 *     struct cg_table *tab;
 *     if (cg_csv_read("iris.csv", &co, &tab) != CG_OK)
 *         die("%s", cg_last_error(NULL));       // "iris.csv:17:4: ..."
 *     struct cg_dataset *all, *train, *val;
 *     cg_dataset_from_table(tab, &all);         // (N, D) + (N) class indices
 *     cg_table_free(tab);
 *     cg_dataset_split(all, 0.2, 42, &train, &val);
 *     cg_dataset_free(all);
 *     struct cg_scaler *sc;                     // fitted on train only
 *     cg_scaler_fit(train, CG_SCALER_STANDARD, true, &sc);
 *     cg_scaler_apply(sc, train);
 *     cg_scaler_apply(sc, val);                 // and at prediction time
 *
 *     struct cg_loader_options lo = {.batch_size = 64, .shuffle = true};
 *     cg_loader *ld;
 *     cg_loader_create(ctx, train, &lo, &ld);
 *     for (int epoch = 0; epoch < 10; epoch++) {
 *         cg_tensor *x, *y;                     // (64, D), (64): owned by ld
 *         cg_status st;
 *         while ((st = cg_loader_next(ld, &x, &y)) == CG_OK && x) {
 *             cg_scope_begin(ctx);
 *             ... forward, loss, backward, step ...
 *             cg_scope_end(ctx);
 *         }
 *         if (st != CG_OK) die("%s", cg_last_error(ctx));
 *     }
 *     cg_loader_free(ld);                       // before cg_ctx_free
 *     cg_dataset_free(train); cg_dataset_free(val); cg_scaler_free(sc);
 *
 * Tables as they come (scikit-learn's wine_data.csv opens with a line of
 * counts and class names, then rows without a header), with 10% of the
 * rows held out for a final test, reproducible from the seed:
 *
 *     co = cg_csv_options_default();
 *     co.skip_rows = 1;
 *     co.no_header = true;                      // columns column1..column14
 *     co.target = "last";                       // or "14", or a name
 *     cg_csv_read("wine_data.csv", &co, &tab);
 *     if (tab->notes) fputs(tab->notes, stderr);   // dates, dropped columns
 *     puts(tab->task_reason);   // classification: integer target ... 3 ...
 *     struct cg_table *rest, *test;
 *     cg_table_split(tab, 0.1, seed, &rest, &test);
 *
 * Fashion-MNIST (Debian's package path shown):
 *
 *     struct cg_dataset *mnist;                 // (60000, 1, 28, 28), [0, 1],
 *                                               // kept as bytes (x_u8)
 *     cg_idx_load_pair("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz",
 *                      "/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz",
 *                      true, &mnist);
 *     cg_dataset_reshape(mnist, CG_SHAPE(784)); // for an MLP: (60000, 784)
 *
 * Errors. The host-side functions here (CSV, IDX, tables, datasets,
 * scalers) take no context: their failure message is this thread's last
 * error, cg_last_error(NULL). Parse errors name the file, the 1-based line
 * and the 1-based column (field number) as "file:line:column: what", e.g.
 *   data.csv:17:4: non-numeric value "abc" in numeric column "age"
 * IDX errors name the file and the byte offset or sizes involved. The
 * loader, which talks to the device, records errors in its context.
 *
 * Ownership. Every `**out` object is allocated by the library and owned by
 * the caller, who releases it with the matching *_free (NULL is fine). The
 * public structs are plain data: their arrays belong to the struct and are
 * freed with it. A loader borrows its dataset (which must outlive it and not
 * change meanwhile) and owns the batch tensors it returns; free the loader
 * before its context.
 */
#ifndef CLGRAD_DATA_H
#define CLGRAD_DATA_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "clgrad/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ CSV -- */

/* What the target column holds. AUTO (the rule of cg_table_infer_task):
 * classification when the target holds text, or only integers with at most
 * CG_INT_CLASSES_MAX distinct values and at most one distinct value per two
 * rows (labels repeat); regression otherwise. */
enum cg_task { CG_TASK_AUTO, CG_TASK_REGRESSION, CG_TASK_CLASSIFICATION };
#define CG_INT_CLASSES_MAX 20

/* What to do with a missing cell: an empty field (quoted or not), "NA" or
 * "N/A". NaN and Inf are never "missing": they are always an error. */
enum cg_missing {
    CG_MISSING_ERROR,          /* default: fail (CG_STATUS_MISSING_VALUE),
                                  naming line and column                   */
    CG_MISSING_DROP,           /* drop the whole row                       */
    CG_MISSING_FILL_MEAN,      /* numeric: the column's mean over present
                                  cells; categorical: its most frequent
                                  category                                 */
    CG_MISSING_FILL_CONSTANT,  /* numeric: fill_value; categorical: as mean */
};

/* Column lists (drop, features, keep) are comma-separated; each item is a
 * column name, a 1-based column number or "last" (a name wins when the
 * header really has a column called "3" or "last"); spaces around items
 * are ignored. The command-line tools' flags are given beside each field. */
struct cg_csv_options {
    char delimiter;            /* ',' (0 also means ','), ';', '\t', ...
                                  --delimiter                              */
    const char *target;        /* target column: a name, a 1-based number
                                  or "last"; NULL: no target    --target   */
    enum cg_task task;         /* how to read the target          --task   */
    enum cg_missing missing;   /* rows with a missing *target* are dropped
                                  under every policy but CG_MISSING_ERROR
                                                               --missing   */
    float fill_value;          /* for CG_MISSING_FILL_CONSTANT             */
    bool reject_categorical;   /* a non-numeric feature column is an error
                                  instead of being one-hot encoded         */
    int skip_rows;             /* lines skipped at the top of the file,
                                  before the header (or before the first
                                  row with no_header)        --skip-rows N */
    bool no_header;            /* the file has no header row: the columns
                                  are named column1..columnN  --no-header  */
    const char *drop;          /* columns not read at all        --drop    */
    const char *features;      /* the only feature columns read (the
                                  target is read too)         --features   */
    const char *keep;          /* text columns one-hot encoded even when
                                  nearly every value is distinct  --keep   */
    const struct cg_table *like; /* a training layout (cg_table_layout_parse)
                                  to read this file as that one was read:
                                  its date columns expanded the same way,
                                  columns it lacks skipped, none dropped by
                                  guessing; target (when NULL here) and task
                                  (when AUTO) from it. Prediction and
                                  evaluation files; then cg_table_conform. */
};

/* All defaults: ',', no target, AUTO, missing values are errors, one-hot. */
CG_API struct cg_csv_options cg_csv_options_default(void);

enum cg_column_kind {
    CG_COLUMN_NUMERIC,         /* float values                             */
    CG_COLUMN_CATEGORICAL,     /* values are indices into categories[]     */
};

struct cg_column {
    char *name;
    enum cg_column_kind kind;
    int n_categories;          /* categorical only                         */
    char **categories;         /* sorted: numerically if every category is
                                  a number, else by strcmp (byte order)    */
};

/* A table read from a CSV: every cell a float, row-major. */
struct cg_table {
    int64_t n_rows;
    int n_cols;
    struct cg_column *cols;    /* (n_cols)                                 */
    float *values;             /* (n_rows, n_cols); categorical cells hold
                                  the category's index as a float          */
    int target;                /* index of the target column, -1: none    */
    enum cg_task task;         /* REGRESSION or CLASSIFICATION if target  */
    char *task_reason;         /* with a target: the task and why, one line
                                  without "\n", e.g. "classification:
                                  integer target \"y\" with 3 distinct
                                  values (--task regression to override)";
                                  else NULL                                */
    char *notes;               /* what the reader decided beyond parsing,
                                  one line each ending in "\n" ("note: ..."
                                  for date columns turned into numbers,
                                  "warning: ..." for dropped columns and a
                                  header that looks like data); NULL when
                                  nothing. The library prints nothing: the
                                  caller shows these.                      */
};

/* Reads a CSV file: skip_rows lines, then a header row (unless no_header),
 * then the rows. A file whose name ends in ".gz" (or that starts with the
 * gzip magic) is decompressed on the fly. The file is read streaming
 * through a fixed-size buffer and only float32 values are kept (plus each
 * categorical column's distinct strings), so memory is about 4 bytes per
 * cell. Quoted fields ("a,b", "say ""hi""", newlines inside quotes), CRLF
 * or LF line ends and a UTF-8 BOM are accepted; blank lines are skipped;
 * spaces around unquoted fields are trimmed. A column's kind is fixed by
 * its first present value (numeric if it parses as a number); a later
 * non-numeric value in a numeric column is an error. Numbers are read the
 * same whatever the program's locale ('.' is the decimal point even after
 * setlocale(LC_ALL, "de_DE.UTF-8")).
 *
 * Text feature columns. A column whose every present value is a date or
 * date-time in ISO 8601 form, "2012-01-31" or "2012/01/31", optionally
 * followed by "T" or " " and "HH:MM[:SS[.fff]]" (and "Z" or "+HH:MM",
 * ignored), becomes numeric columns NAME_year, NAME_month_sin,
 * NAME_month_cos, NAME_doy_sin, NAME_doy_cos (month and day of year on
 * circles, so December is next to January), NAME_weekday (Monday 0 ..
 * Sunday 6, as pandas' dayofweek) and, when any value has a time of day,
 * NAME_hour_sin and NAME_hour_cos; a "note:" line says so. Any other text
 * column with more than CG_TEXT_DISTINCT_MAX distinct values that are more
 * than half its present values (an ID, free text) is dropped with a
 * "warning:" line naming it, unless it is in keep (then it is one-hot
 * encoded like any text column).
 *
 * With a target, task AUTO is decided by cg_table_infer_task (an integer
 * target that is classified becomes a categorical column whose categories
 * are its values, sorted numerically) and task_reason says why. A
 * classification target with a single class is an error.
 *
 * opts NULL: defaults. Errors: empty file, header only, ragged rows, a
 * header with another number of fields than the first row (the message
 * suggests skip_rows / no_header), non-numeric or non-finite cells in
 * numeric columns, a target, drop, features or keep column that is not in
 * the file, duplicate column names, unterminated quotes, a single class,
 * column names or categories that are not valid UTF-8 or hold a NUL byte
 * (they go into checkpoints, whose header is JSON), a categorical column
 * left with no value to fill missing cells from; each names file:line:col
 * (or the column) where there is one. */
#define CG_TEXT_DISTINCT_MAX 20
CG_API cg_status cg_csv_read(const char *path, const struct cg_csv_options *opts,
                             struct cg_table **out);
/* The same from an open stream (never decompressed); name is used in
 * messages. f stays open. */
CG_API cg_status cg_csv_read_stream(FILE *f, const char *name,
                                    const struct cg_csv_options *opts,
                                    struct cg_table **out);
CG_API void cg_table_free(struct cg_table *t);
/* The task AUTO gives column `column` of t, and why, in reason (at most len
 * bytes with the NUL; NULL or 0 for none): classification for a categorical
 * (text) column; for a numeric one, classification when every value is an
 * integer, there are at most CG_INT_CLASSES_MAX distinct values and at most
 * n_rows / 2 of them; else regression. The reason names the column and the
 * count, and the --task value that overrides it. */
CG_API cg_status cg_table_infer_task(const struct cg_table *t, int column, enum cg_task *task,
                                     char *reason, size_t len);
/* Holds out round(n_rows * test_fraction) rows, at least 1, as *test and
 * returns the others as *rest (both new tables with t's columns; t unchanged; rows
 * keep their file order in each). Which rows are held out depends only on
 * (seed, t->n_rows, test_fraction) (splitmix64 + Fisher-Yates, the first
 * rows of the permutation), so the same file read with the same options
 * gives the same test rows on every machine: record the seed and fraction
 * with the model to evaluate on exactly those rows later. test_fraction 0:
 * *test is NULL and *rest a copy. Errors: a fraction outside [0, 1) or a
 * split that leaves either part empty. */
CG_API cg_status cg_table_split(const struct cg_table *t, double test_fraction, uint64_t seed,
                                struct cg_table **rest, struct cg_table **test);
/* The index of the column called name, or -1. */
CG_API int cg_table_column(const struct cg_table *t, const char *name);

/* Prediction-time CSVs. cg_csv_read numbers categories per file, so a new
 * file with fewer categories or another column order would one-hot into a
 * different layout than the training file. cg_table_conform rewrites t into
 * like's layout: like's columns in like's order (found by name; t's extra
 * columns dropped; like's target may be absent, for prediction only), each
 * categorical cell renumbered to like's categories. Errors name the column:
 * a missing column, a category not seen in training, text in a column that
 * was numeric. t is unchanged on error.
 *
 *     cg_table_layout_format(train_table, &text);   // save with the model
 *     ...
 *     cg_table_layout_parse(text, &layout);          // a table with no rows
 *     cg_table_conform(new_table, layout);
 *     cg_dataset_from_table(new_table, &ds);         // same features as training
 *
 * The layout text: "clgrad-columns 1 TARGET TASK", then a line per column,
 * "c" (categorical) or "n" (numeric), a tab, the name, and for "c" a tab
 * before each category, with backslash, tab, newline and CR escaped as
 * \\, \t, \n, \r. *text is malloc'ed; free() it. */
CG_API cg_status cg_table_conform(struct cg_table *t, const struct cg_table *like);
CG_API cg_status cg_table_layout_format(const struct cg_table *t, char **text);
CG_API cg_status cg_table_layout_parse(const char *text, struct cg_table **out);

/* ------------------------------------------------------------------ IDX -- */

/* An IDX file (the MNIST format: yann.lecun.com/exdb/mnist, "THE IDX FILE
 * FORMAT"): big-endian magic 0x0000TTNN with T the element type (0x08
 * uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64)
 * and NN the number of dims, then NN big-endian uint32 dims, then data. */
#define CG_IDX_MAX_DIMS 8
struct cg_idx {
    int type;                        /* 0x08 .. 0x0E                       */
    int ndim;
    int64_t dims[CG_IDX_MAX_DIMS];
    int64_t numel;
    float *data;                     /* (dims...) converted to float       */
};

/* Reads an IDX file, gzip-compressed or plain (zlib detects which). The
 * header is validated first: magic, type, dims (zero and overflowing
 * products are errors); a plain file's length must match the header before
 * anything is allocated, and a compressed one is read into memory that
 * grows only as data really arrives. Float values (types 0x0D, 0x0E) must
 * be finite in float32: NaN, Inf and float64 values out of float32's range
 * are errors naming the file, the item (index along the first dim) and the
 * element. Errors name the file and the sizes,
 * e.g. "x.gz: truncated: expected 47040000 bytes of data, got 1000". */
CG_API cg_status cg_idx_read(const char *path, struct cg_idx **out);
CG_API void cg_idx_free(struct cg_idx *idx);

/* -------------------------------------------------------------- Dataset -- */

/* Samples with one shape, and their targets, in host memory. */
struct cg_dataset {
    int64_t n;                       /* number of samples                  */
    int sample_ndim;                 /* 1 ..< CG_MAX_DIMS                  */
    int64_t sample_shape[CG_MAX_DIMS];
    int64_t sample_numel;            /* product of sample_shape            */
    float *x;                        /* (n, sample_shape...) row-major, or
                                        NULL when x_u8 holds the samples   */
    /* Targets: y_dim == 0: y is (n) class indices (exact integers as
     * floats) in [0, n_classes); y_dim > 0: y is (n, y_dim) (regression
     * values or one-hot rows). y NULL: no targets. */
    int64_t y_dim;
    float *y;
    int n_classes;                   /* classification; 0 for regression   */
    char **class_names;              /* (n_classes) or NULL                */
    /* Byte storage (cg_idx_load_pair's uint8 images: a quarter of the
     * memory): x is NULL and x_u8 is (n, sample_shape...); sample value k
     * is (float)x_u8[k] / x_div, a float division, the same value float
     * storage would hold (x_div 255: torchvision's ToTensor; 1: raw). The
     * loader converts each batch as it gathers it; the scalers and
     * cg_dataset_to_float give float storage where it is needed. */
    uint8_t *x_u8;
    float x_div;
};

/* Allocates a dataset with uninitialised x (n, sample_shape) and, unless
 * has_y is false, y of (n) (y_dim 0) or (n, y_dim). */
CG_API cg_status cg_dataset_create(int64_t n, int sample_ndim, const int64_t *sample_shape,
                                   bool has_y, int64_t y_dim, int n_classes,
                                   struct cg_dataset **out);
CG_API void cg_dataset_free(struct cg_dataset *ds);
/* Features from every non-target column (numeric as is, categorical one-hot
 * in category order), sample shape (D); targets: classification (n) class
 * indices with class_names, regression (n, 1); no target column: y NULL. */
CG_API cg_status cg_dataset_from_table(const struct cg_table *t, struct cg_dataset **out);
/* Loads images and labels IDX files as one dataset: images (n, H, W)
 * become samples (1, H, W) (other ranks keep their shape), uint8 pixels
 * scaled to [0, 1] when scale is true (uint8 images stay bytes: x_u8 with
 * x_div 255, or 1 unscaled; other types are floats in x); labels must be a
 * 1-D integer file with values in [0, CG_IDX_MAX_CLASSES) and as many
 * entries as there are images; n_classes is the largest label + 1. A label
 * at or over the cap is an error naming the file, the item and the label:
 * such a file is almost surely not a labels file, and would build a model
 * with one output per class. */
#define CG_IDX_MAX_CLASSES 65536
CG_API cg_status cg_idx_load_pair(const char *images_path, const char *labels_path,
                                  bool scale, struct cg_dataset **out);
/* Byte storage (x_u8) -> float storage (x), in place; float storage is
 * left as it is. */
CG_API cg_status cg_dataset_to_float(struct cg_dataset *ds);
/* Changes the sample shape (same numel), e.g. (1, 28, 28) -> (784). */
CG_API cg_status cg_dataset_reshape(struct cg_dataset *ds, int ndim, const int64_t *shape);
/* Splits ds into a shuffled validation part of round(n * val_fraction)
 * samples and a training part with the rest (both new; ds unchanged). The
 * permutation comes from seed alone (splitmix64 + Fisher-Yates), so a seed
 * gives the same split on every machine. Each part must be non-empty
 * unless val_fraction is 0 (then *val is NULL). */
CG_API cg_status cg_dataset_split(const struct cg_dataset *ds, double val_fraction,
                                  uint64_t seed, struct cg_dataset **train,
                                  struct cg_dataset **val);
/* Class-index targets (n) -> one-hot rows (n, n_classes), in place. */
CG_API cg_status cg_dataset_one_hot(struct cg_dataset *ds);
/* out (n, k) = one-hot of labels (n); labels must be integers in [0, k). */
CG_API cg_status cg_one_hot(const float *labels, int64_t n, int k, float *out);

/* -------------------------------------------------------- Preprocessing -- */

enum cg_scaler_kind {
    CG_SCALER_STANDARD,   /* (x - mean) / std, population std (ddof 0), as
                             sklearn.preprocessing.StandardScaler          */
    CG_SCALER_MINMAX,     /* (x - min) / (max - min), into [0, 1], as
                             sklearn.preprocessing.MinMaxScaler            */
};

/* Fitted statistics: x' = (x - offset[j]) / scale[j]. A constant feature
 * (std or range 0) gets scale 1, so it maps to 0, never NaN. n_features is
 * the sample's numel (per-feature) or 1 (one statistic for all values, as
 * torchvision's Normalize for a one-channel image). Plain arrays, so it
 * can be saved with a checkpoint and rebuilt with cg_scaler_create. */
struct cg_scaler {
    enum cg_scaler_kind kind;
    int64_t n_features;
    float *offset;        /* (n_features) mean or min                     */
    float *scale;         /* (n_features) std or max - min, never 0       */
};

/* An unfitted scaler with offset 0 and scale 1 (to be filled by hand). */
CG_API cg_status cg_scaler_create(enum cg_scaler_kind kind, int64_t n_features,
                                  struct cg_scaler **out);
CG_API void cg_scaler_free(struct cg_scaler *s);
/* Fits on ds's samples (the training split only; byte storage is read
 * through a temporary float copy). per_feature false: one statistic over
 * every value. Statistics are computed in double. */
CG_API cg_status cg_scaler_fit(const struct cg_dataset *ds, enum cg_scaler_kind kind,
                               bool per_feature, struct cg_scaler **out);
/* The same on a raw (n, d) array (e.g. regression targets ds->y). */
CG_API cg_status cg_scaler_fit_data(const float *x, int64_t n, int64_t d,
                                    enum cg_scaler_kind kind, bool per_feature,
                                    struct cg_scaler **out);
/* Transforms ds->x in place (byte storage becomes float storage first). */
CG_API cg_status cg_scaler_apply(const struct cg_scaler *s, struct cg_dataset *ds);
/* Transforms / inverts x (n, d) in place; d must be s->n_features, or any
 * d when n_features is 1. */
CG_API cg_status cg_scaler_apply_data(const struct cg_scaler *s, float *x, int64_t n,
                                      int64_t d);
CG_API cg_status cg_scaler_inverse_data(const struct cg_scaler *s, float *x, int64_t n,
                                        int64_t d);

/* ----------------------------------------------------------- DataLoader -- */

typedef struct cg_loader cg_loader;

struct cg_loader_options {
    int64_t batch_size;        /* > 0                                      */
    bool shuffle;              /* a new permutation each epoch, drawn from
                                  the context's RNG (cg_rand_u64)          */
    bool drop_last;            /* skip a final partial batch               */
    bool prefetch;             /* gather the next batch on a second thread
                                  while the caller works                   */
    /* Data parallelism (dist.h): with shard_count N > 1, batch_size is the
     * global batch and this loader returns slice shard_rank of each
     * (batch_size / N samples); every rank draws the same shuffle. The
     * global batch must divide by N and the data set hold at least N
     * samples; a final partial batch that does not divide by N is skipped
     * on every rank. */
    int shard_rank, shard_count;
};

/* Creates a loader over ds (borrowed). The batch tensors are allocated
 * once here, persistent: x (B, sample_shape...) and y (B) or (B, y_dim),
 * plus a second pair for a final partial batch; each step only uploads. */
CG_API cg_status cg_loader_create(cg_ctx *ctx, const struct cg_dataset *ds,
                                  const struct cg_loader_options *opts,
                                  cg_loader **out);
CG_API void cg_loader_free(cg_loader *l);
/* The next batch of the current epoch; the first call of an epoch begins it
 * (drawing the shuffle). At the end of the epoch *x and *y are set to NULL
 * and CG_OK returned; the call after that begins the next epoch. *y is
 * NULL when ds has no targets. The tensors belong to the loader and are
 * overwritten by the next call: do not free them, copy what must last. */
CG_API cg_status cg_loader_next(cg_loader *l, cg_tensor **x, cg_tensor **y);
/* Abandons the current epoch; the next call to cg_loader_next begins a new
 * one. */
CG_API void cg_loader_reset(cg_loader *l);
/* Batches per epoch (the last one partial unless drop_last), and the
 * number of epochs begun so far. */
CG_API int64_t cg_loader_batches(const cg_loader *l);
CG_API int64_t cg_loader_epoch(const cg_loader *l);

#ifdef __cplusplus
}
#endif
#endif
