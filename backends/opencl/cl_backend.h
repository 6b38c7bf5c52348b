/*
 * backends/opencl/cl_backend.h — the opencl plugin's instance and the
 * interfaces between its files (never installed; plugins see only
 * include/clgrad/backend.h).
 *
 *   opencl.c   vtable, entry point, device listing, open/close, finish, stats
 *   pool.c     buffers: size-bucketed pool against the device's memory,
 *              upload/download/copy
 *   program.c  program table, build with an on-disk binary cache (LRU cap)
 *   queue.c    the submission path: launches, transfers, pending queues
 *   kernels.c  kernel objects and launch sizes
 *   env.c      switches from the environment
 *   ew.c       fill and elementwise ops
 *   reduce.c   reductions and softmax
 *   index.c    row gather/scatter-add and pick
 *   fuse.c     elementwise chains deferred and fused into one kernel
 *   optim.c    fused optimizer updates, consecutive ones batched
 *   gemm.c     GEMM: own kernels (cl/gemm.cl) on CPU devices, else CLBlast
 *   tune.c     CLBlast GEMM parameters searched, stored, applied at open
 *              (its interface: cl_tune.h, all tools/clgrad-tune sees)
 *   conv.c     im2col / col2im, pooling forward and backward
 *   rnn.c      fused LSTM cell step and backward, causal softmax
 *   seq.c      the Transformer feed-forward's bias + GELU and its backward
 *   norm.c     LayerNorm forward and backward
 *
 * Threads: one instance per thread (clgrad's contract); the instance is not
 * locked. Process-wide state (CLBlast's cache refcount) is under a mutex.
 */
#ifndef CG_OPENCL_BACKEND_H
#define CG_OPENCL_BACKEND_H

#include <stdint.h>
#include <stdio.h>

#include "cl_error.h"
#include "cl_tune.h"
#include "clgrad/backend.h"

/* ---- programs (program.c) ------------------------------------------- */

enum cg_cl_prog {
    CG_CL_PROG_EW,
    CG_CL_PROG_REDUCE,
    CG_CL_PROG_SOFTMAX,
    CG_CL_PROG_INDEX,
    CG_CL_PROG_OPTIM,
    CG_CL_PROG_CONV,
    CG_CL_PROG_RNN,
    CG_CL_PROG_SEQ,
    CG_CL_PROG_NORM,
    CG_CL_PROG_GEMM,
    CG_CL_PROG_COUNT
};

struct cg_cl_program_desc {
    const char *name;          /* "ew": cl/ew.cl                       */
    const char *source;        /* embedded at build time               */
};
extern const struct cg_cl_program_desc cg_cl_programs[CG_CL_PROG_COUNT];

/* The build options the backend uses for program p on dev (the same for
 * every program today: "-cl-std=CL1.2" where the device supports it). */
void cg_cl_build_options(const struct cg_cl_device *dev, enum cg_cl_prog p,
                         char *out, size_t len);

/* Builds (or loads from the on-disk cache) source with options for dev.
 * *from_cache tells which happened. On failure err holds the reason and,
 * for a compile error, the build log. */
cg_status cg_cl_program_build(const struct cg_cl_device *dev, const char *name,
                              const char *source, const char *options,
                              cl_program *out, int *from_cache, char *err,
                              size_t err_len);

/* The cache folder: $CLGRAD_CACHE_DIR, else $XDG_CACHE_HOME/clgrad, else
 * $HOME/.cache/clgrad; empty when none can be formed (caching is off). */
void cg_cl_cache_dir(char *out, size_t len);
/* The cache folder's cap on *.clbin bytes: CLGRAD_CACHE_MAX_MB, else this. */
#define CG_CL_CACHE_MAX_MB 256
uint64_t cg_cl_cache_max_bytes(void);
/* Removes the least recently used *.clbin files of dir (by modification
 * time; a load refreshes it) until they total at most max_bytes, never the
 * file named keep (NULL: none), and temporary files of dead writers.
 * Returns how many binaries went. */
int cg_cl_cache_trim(const char *dir, uint64_t max_bytes, const char *keep);
/* mkdir -p; returns 0 on success. */
int cg_cl_mkdirs(const char *path);

/* ---- kernels (kernels.c) -------------------------------------------- */

enum cg_cl_kern {
    CG_CL_K_EW_FLAT,
    CG_CL_K_EW_STRIDED,
    CG_CL_K_FILL_FLAT,
    CG_CL_K_FILL_STRIDED,
    CG_CL_K_REDUCE_ITEM,
    CG_CL_K_REDUCE_GROUP,
    CG_CL_K_SOFTMAX_FWD,
    CG_CL_K_SOFTMAX_BWD,
    CG_CL_K_INDEX_ROWS,
    CG_CL_K_INDEX_ROWS_ADD,
    CG_CL_K_PICK,
    CG_CL_K_PICK_ADD,
    CG_CL_K_OPTIM_SGD,
    CG_CL_K_OPTIM_ADAM,
    CG_CL_K_OPTIM_RMSPROP,
    CG_CL_K_OPTIM_SGD_MULTI,
    CG_CL_K_OPTIM_ADAM_MULTI,
    CG_CL_K_OPTIM_RMSPROP_MULTI,
    CG_CL_K_OPTIM_SGD_ITEM,
    CG_CL_K_OPTIM_ADAM_ITEM,
    CG_CL_K_OPTIM_RMSPROP_ITEM,
    CG_CL_K_IM2COL,
    CG_CL_K_COL2IM,
    CG_CL_K_POOL2D,
    CG_CL_K_POOL2D_BACKWARD,
    CG_CL_K_LSTM_CELL_FWD,
    CG_CL_K_LSTM_CELL_BWD,
    CG_CL_K_SOFTMAX_CAUSAL,
    CG_CL_K_BIAS_GELU_FWD,
    CG_CL_K_BIAS_GELU_BWD,
    CG_CL_K_LAYERNORM_FWD,
    CG_CL_K_LAYERNORM_FWD_1,
    CG_CL_K_LAYERNORM_BWD,
    CG_CL_K_LAYERNORM_BWD_1,
    CG_CL_K_LAYERNORM_FWD_ROW,
    CG_CL_K_LAYERNORM_BWD_ROW,
    CG_CL_K_LAYERNORM_BWD_COLS_ROW,
    CG_CL_K_LAYERNORM_BWD_COLS,
    CG_CL_K_LAYERNORM_BWD_COMBINE,
    CG_CL_K_GEMM_OUTER,
    CG_CL_K_GEMM_DOT,
    CG_CL_K_GEMM_PACK,
    CG_CL_K_COUNT
};

/* ---- buffers (pool.c) ----------------------------------------------- */

#define CG_CL_POOL_CLASSES 256

struct cg_buffer {
    cl_mem mem;
    size_t bytes;              /* as requested                         */
    size_t cap;                /* size class actually allocated        */
    int cls;                   /* size class index                     */
    int in_use;
    struct cg_buffer *next_free;
    struct cg_buffer *prev, *next;  /* every live buffer of the instance */
};

struct cg_cl_pool {
    struct cg_buffer *free[CG_CL_POOL_CLASSES];
    struct cg_buffer *all;
};

/* ---- the submission path (queue.c) ---------------------------------------
 * Ordering rule: the device runs work in the order the frontend issued it.
 * Every command reaches cl->queue through queue.c. Work that may wait (the
 * fusion chain of fuse.c, the optimizer batch of optim.c) sits in a pending
 * queue, at most one at a time; every submission drains it first, in
 * cg_cl_sync, the one place that does. An error in a drain is reported by
 * the call that caused it. */

struct cg_cl;
struct cg_cl_pending_i {
    const char *name;                       /* "fusion chain"            */
    cg_status (*drain)(struct cg_cl *cl);   /* enqueues what waits       */
};
/* Before queue q takes work: drains another queue's work first. */
cg_status cg_cl_defer(struct cg_cl *cl, const struct cg_cl_pending_i *q);
/* Drains the pending queue, if any. */
cg_status cg_cl_sync(struct cg_cl *cl);
/* The command queue, for a library that enqueues by itself (CLBlast),
 * after draining. */
cg_status cg_cl_queue_take(struct cg_cl *cl, cl_command_queue **q);
/* Transfers and waits (the host pointer of a non-blocking write, done !=
 * NULL, must live until the event completes). */
cg_status cg_cl_write(struct cg_cl *cl, cl_mem dst, size_t off, size_t bytes, const void *src,
                      cl_event *done);
/* Blocking; bytes == 0 still waits for all enqueued work. */
cg_status cg_cl_read(struct cg_cl *cl, void *dst, cl_mem src, size_t off, size_t bytes);
/* Non-blocking (dist.c's gradient reads): *done completes when dst holds
 * the bytes; dst must live until then; the caller releases *done. */
cg_status cg_cl_read_async(struct cg_cl *cl, void *dst, cl_mem src, size_t off, size_t bytes,
                           cl_event *done);
/* Counted in stats.launches, as a kernel. */
cg_status cg_cl_copy_mem(struct cg_cl *cl, cl_mem dst, size_t dst_off, cl_mem src,
                         size_t src_off, size_t bytes);
/* Drains, then clFinish. */
cg_status cg_cl_wait(struct cg_cl *cl);

#define CG_CL_FUSE_FILL (-1)            /* a fill as a chain op          */
enum cg_cl_fuse_mode {                  /* how an input is read at i      */
    CG_CL_FUSE_CONTIG,                  /* off + i                        */
    CG_CL_FUSE_SCALAR,                  /* off                            */
    CG_CL_FUSE_ROW,                     /* off + i % div (a row broadcast)   */
    CG_CL_FUSE_COL,                     /* off + i / div (a column broadcast) */
};
struct cg_cl_fuse_src {
    struct cg_buffer *buf;
    cl_long off;
    enum cg_cl_fuse_mode mode;
    cl_long div;
};
struct cg_cl_fuse;

/* The most tensors one batched optimizer launch updates (cl/optim.cl). */
#define CG_CL_OPTIM_BATCH 8
struct cg_cl_optim_item {
    struct cg_ptr param, grad, state[3];
    int64_t n;
};

/* ---- the instance ---------------------------------------------------- */

/* Switches read from the environment at open (opencl.c), each defaulting
 * by device type; the tests force them. */
struct cg_cl_config {
    int fuse;                  /* CLGRAD_FUSE: defer ew/fill into chains */
    int optim_batch;           /* CLGRAD_OPTIM_BATCH: *_multi launches   */
    int fuse_per_item;         /* CLGRAD_FUSE_LOOP=0: the ITEM forms     */
    int ln_row_items;          /* CLGRAD_LN_ROW_ITEMS: a work-item a row */
    int verbose;               /* CLGRAD_VERBOSE                         */
};

struct cg_cl {
    struct cg_cl_device dev;
    cl_command_queue queue;
    cl_uint compute_units;
    int cpu_device;                     /* CL_DEVICE_TYPE_CPU (PoCL): one
                                           element per work-item, see
                                           cg_cl_groups_for             */
    size_t max_wg;                      /* CL_DEVICE_MAX_WORK_GROUP_SIZE */

    cl_program programs[CG_CL_PROG_COUNT];
    cl_kernel kernels[CG_CL_K_COUNT];
    size_t kernel_wg[CG_CL_K_COUNT];    /* CL_KERNEL_WORK_GROUP_SIZE      */

    struct cg_cl_pool pool;
    struct cg_cl_host *hosts;           /* host_alloc's mapped buffers (pool.c) */
    struct cg_backend_stats stats;
    uint64_t kernel_launches[CG_CL_K_COUNT];  /* per kernel (CLGRAD_VERBOSE) */

    size_t max_param;                   /* CL_DEVICE_MAX_PARAMETER_SIZE   */
    cl_ulong max_alloc;                 /* CL_DEVICE_MAX_MEM_ALLOC_SIZE   */
    cl_ulong mem_limit;                 /* the pool's ceiling (pool.c):
                                           CL_DEVICE_GLOBAL_MEM_SIZE, or
                                           CLGRAD_CL_MEM_MB              */
    const char *mem_limit_what;         /* which of the two               */

    struct cg_cl_config cfg;            /* switches from the environment  */
    const struct cg_cl_pending_i *pending;  /* the queue holding work (queue.c) */
    int draining;                       /* a drain runs (queue.c)         */
    struct cg_cl_fuse *fuse;            /* the chain, kernels (fuse.c)    */
    int opt_batch_n;                    /* pending optimizer updates       */
    struct cg_optim_hparams opt_h;      /* ... all with these hparams      */
    struct cg_cl_optim_item opt_batch[CG_CL_OPTIM_BATCH];

    struct cg_cl_stage *stage, *stage_tail;  /* in-flight upload copies, */
    size_t stage_bytes;                 /* oldest first (pool.c)          */
    uint64_t device_launches;           /* kernels enqueued (stats.launches */
    uint64_t fused_launches, fused_ops; /* counts primitive calls)         */

    cl_mem gemm_tmp;                    /* CLBlast's GEMM scratch         */
    size_t gemm_tmp_bytes;
    int gemm_path;                      /* gemm.c: 0 until the first GEMM */

    char err[CG_CL_ERR_LEN];
};

/* env.c: a switch from the environment. Unset or empty: dflt; a value not
 * accepted: a one-line warning naming it and what is accepted, and dflt. */
int cg_cl_env_bool(const char *name, int dflt);
/* A whole number in [lo, hi]. */
long long cg_cl_env_int(const char *name, long long lo, long long hi, long long dflt);
/* The index of the value in the NULL-terminated choices (dflt may be -1). */
int cg_cl_env_choice(const char *name, const char *const *choices, int dflt);

/* Record a formatted message in cl->err and return status. */
cg_status cg_cl_errorf(struct cg_cl *cl, cg_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* pool.c */
cg_status cg_cl_alloc(void *ctx, size_t bytes, struct cg_buffer **out);
void cg_cl_release(void *ctx, struct cg_buffer *buf);
cg_status cg_cl_upload(void *ctx, struct cg_buffer *dst, size_t off_bytes,
                       const void *src, size_t bytes);
cg_status cg_cl_download_async(void *ctx, void *dst, struct cg_buffer *src, size_t off,
                               size_t bytes, void **ticket);
cg_status cg_cl_download_poll(void *ctx, void *ticket, int wait, int *done);
cg_status cg_cl_host_alloc(void *ctx, size_t bytes, void **ptr);
void cg_cl_host_free(void *ctx, void *ptr);
void cg_cl_host_free_all(struct cg_cl *cl);
cg_status cg_cl_download(void *ctx, void *dst, struct cg_buffer *src,
                         size_t off_bytes, size_t bytes);
cg_status cg_cl_copy(void *ctx, struct cg_buffer *dst, size_t dst_off_bytes,
                     struct cg_buffer *src, size_t src_off_bytes, size_t bytes);
void cg_cl_pool_free_all(struct cg_cl *cl);
/* Frees the host copies of uploads the device has finished with (all of
 * them when `all`: after a finish). */
void cg_cl_stage_reap(struct cg_cl *cl, int all);
/* Size class of a request and its capacity in bytes (tests, pool). */
int cg_cl_size_class(size_t bytes, size_t *cap);

/* A kernel argument (size and pointer, as clSetKernelArg). */
struct cg_cl_arg {
    size_t size;
    const void *ptr;
};
#define CG_ARG(x) ((struct cg_cl_arg){sizeof(x), &(x)})
#define CG_ARG_LOCAL(bytes) ((struct cg_cl_arg){(bytes), NULL})

/* A kernel to launch: one of the table (cg_cl_kernel) or its own (fuse.c). */
struct cg_cl_kref {
    cl_kernel kern;
    const char *name;
    int k;                     /* enum cg_cl_kern; -1: not in the table */
    size_t local;              /* power of two <= 256 and wg            */
    size_t wg;                 /* CL_KERNEL_WORK_GROUP_SIZE (capped)    */
};

/* kernels.c: the kernel, building its program on first use. */
cg_status cg_cl_kernel(struct cg_cl *cl, enum cg_cl_kern k, struct cg_cl_kref *out);
/* Work-group size for element-wise style kernels (<= 256). */
size_t cg_cl_local_size(struct cg_cl *cl, enum cg_cl_kern k);
/* Number of groups for a grid-stride loop over n items with local size
 * `local`: enough to fill the device, never more than needed. */
size_t cg_cl_groups_for(struct cg_cl *cl, int64_t n, size_t local);
/* The largest power of two <= cap dividing n (n > 0). */
size_t cg_cl_pow2_divisor(size_t n, size_t cap);
void cg_cl_kernels_release(struct cg_cl *cl);
/* CLGRAD_VERBOSE: prints launches per kernel (at close). */
void cg_cl_kernels_report(struct cg_cl *cl);

/* queue.c: launches. Each drains pending work first and counts one
 * primitive call in stats.launches (none inside a drain). */
/* A dims-d range (offset NULL: none; local NULL: the driver's choice). */
cg_status cg_cl_launch_nd(struct cg_cl *cl, const struct cg_cl_kref *kr,
                          const struct cg_cl_arg *args, int nargs, cl_uint dims,
                          const size_t *offset, const size_t *global, const size_t *local);
/* 1-d: `groups` work-groups of `local` work-items. */
cg_status cg_cl_launch(struct cg_cl *cl, enum cg_cl_kern k, const struct cg_cl_arg *args,
                       int nargs, size_t groups, size_t local);
/* 1-d grid-stride launch over n items. */
cg_status cg_cl_launch_n(struct cg_cl *cl, enum cg_cl_kern k, const struct cg_cl_arg *args,
                         int nargs, int64_t n);
/* Exactly n >= 0 work-items (nothing for 0), for kernels with no loop and
 * no bounds check: groups of a power of two <= kr->local dividing n; when
 * only a small one does, n <= min(wg, 1024) as one group, else full groups
 * and then the rest as one group at a global offset. */
cg_status cg_cl_launch_exact(struct cg_cl *cl, const struct cg_cl_kref *kr,
                             const struct cg_cl_arg *args, int nargs, int64_t n);
/* Rows per launch of a 2-d (cols, rows) range: CUDA-based drivers cap a
 * range's second size at 65535 work-groups; a power of two, so the
 * driver's work-group shape divides it. */
#define CG_CL_MAX_ROWS 32768
/* A 2-d range of g0 x g1 work-items (both > 0), one per item; g1 above
 * CG_CL_MAX_ROWS goes out as several enqueues whose global offsets carry
 * the row (get_global_id(1) is the row itself). local NULL: the driver
 * picks divisors of the global sizes (kernels need no bounds check); else
 * {l0, l1}, l1 reduced to a power of two dividing each enqueue's rows. */
cg_status cg_cl_launch_rows(struct cg_cl *cl, const struct cg_cl_kref *kr,
                            const struct cg_cl_arg *args, int nargs, size_t g0, size_t g1,
                            const size_t *local);
/* cg_cl_launch_rows of a table kernel, the driver's work-group shape. */
cg_status cg_cl_launch_2d(struct cg_cl *cl, enum cg_cl_kern k, const struct cg_cl_arg *args,
                          int nargs, size_t g0, size_t g1);

/* fuse.c */
cg_status cg_cl_fuse_init(struct cg_cl *cl);
void cg_cl_fuse_release(struct cg_cl *cl);
/* Appends out[i] = op(a, b) (b NULL: unary; a and b NULL: a fill with p0)
 * over n contiguous elements at out to the fusion chain (a pending queue),
 * draining first when the chain cannot take it. The views were checked by
 * the caller. */
cg_status cg_cl_fuse_ew(struct cg_cl *cl, int op, float p0, float p1, struct cg_ptr out,
                        int64_t n, const struct cg_cl_fuse_src *a,
                        const struct cg_cl_fuse_src *b);

/* ew.c */
cg_status cg_cl_fill(void *ctx, const struct cg_view *out, float value);
cg_status cg_cl_ew(void *ctx, enum cg_ew_op op, float p0, float p1,
                   const struct cg_view *out, const struct cg_view *a,
                   const struct cg_view *b);
/* fill over a contiguous range (n elements at p). */
cg_status cg_cl_fill_range(struct cg_cl *cl, struct cg_ptr p, int64_t n, float value);

/* reduce.c */
cg_status cg_cl_reduce(void *ctx, enum cg_reduce_op op, struct cg_ptr out,
                       struct cg_ptr in, int64_t outer, int64_t n,
                       int64_t inner, float scale);
cg_status cg_cl_softmax(void *ctx, struct cg_ptr out, struct cg_ptr in,
                        int64_t rows, int64_t cols, int log);
cg_status cg_cl_softmax_backward(void *ctx, struct cg_ptr gx, struct cg_ptr y,
                                 struct cg_ptr gy, int64_t rows, int64_t cols,
                                 int log);

/* index.c */
cg_status cg_cl_index_rows(void *ctx, struct cg_ptr out, struct cg_ptr src,
                           struct cg_ptr idx, int64_t n, int64_t inner);
cg_status cg_cl_index_rows_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                               struct cg_ptr idx, int64_t n, int64_t inner);
cg_status cg_cl_pick(void *ctx, struct cg_ptr out, struct cg_ptr src,
                     struct cg_ptr idx, int64_t rows, int64_t cols);
cg_status cg_cl_pick_add(void *ctx, struct cg_ptr dst, struct cg_ptr src,
                         struct cg_ptr idx, int64_t rows, int64_t cols);

/* optim.c */
cg_status cg_cl_optim_update(void *ctx, const struct cg_optim_hparams *h,
                             struct cg_ptr param, struct cg_ptr grad,
                             struct cg_ptr state[3], int64_t n);

/* conv.c */
cg_status cg_cl_im2col(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr col,
                       struct cg_ptr img);
cg_status cg_cl_col2im(void *ctx, const struct cg_conv2d_desc *d, struct cg_ptr img,
                       struct cg_ptr col);
cg_status cg_cl_pool2d(void *ctx, enum cg_pool_kind kind, const struct cg_conv2d_desc *d,
                       struct cg_ptr out, struct cg_ptr argmax, struct cg_ptr in);
cg_status cg_cl_pool2d_backward(void *ctx, enum cg_pool_kind kind,
                                const struct cg_conv2d_desc *d, struct cg_ptr gin,
                                struct cg_ptr gout, struct cg_ptr argmax);

/* rnn.c */
cg_status cg_cl_lstm_cell(void *ctx, struct cg_ptr c, struct cg_ptr h, struct cg_ptr save,
                          struct cg_ptr gates, struct cg_ptr c_prev, int64_t batch,
                          int64_t hidden);
cg_status cg_cl_lstm_cell_backward(void *ctx, struct cg_ptr g_gates, struct cg_ptr g_c_prev,
                                   struct cg_ptr gh, struct cg_ptr gc, struct cg_ptr save,
                                   struct cg_ptr c_prev, int64_t batch, int64_t hidden);
cg_status cg_cl_softmax_causal(void *ctx, struct cg_ptr out, struct cg_ptr in, int64_t rows,
                               int64_t cols, int64_t period);

/* seq.c */
cg_status cg_cl_bias_gelu(void *ctx, struct cg_ptr out, struct cg_ptr in, struct cg_ptr bias,
                          int64_t rows, int64_t cols);
cg_status cg_cl_bias_gelu_backward(void *ctx, struct cg_ptr gx, struct cg_ptr in,
                                   struct cg_ptr bias, struct cg_ptr gy, int64_t rows,
                                   int64_t cols);

/* norm.c */
cg_status cg_cl_layernorm(void *ctx, struct cg_ptr y, struct cg_ptr mean, struct cg_ptr rstd,
                          struct cg_ptr x, struct cg_ptr w, struct cg_ptr b, int64_t rows,
                          int64_t cols, float eps);
cg_status cg_cl_layernorm_backward(void *ctx, struct cg_ptr gx, struct cg_ptr gw,
                                   struct cg_ptr gb, struct cg_ptr gy, struct cg_ptr x,
                                   struct cg_ptr mean, struct cg_ptr rstd, struct cg_ptr w,
                                   int64_t rows, int64_t cols);

/* gemm.c */
cg_status cg_cl_gemm(void *ctx, const struct cg_gemm_desc *d, struct cg_ptr a,
                     struct cg_ptr b, struct cg_ptr c);
void cg_cl_gemm_release(struct cg_cl *cl);
/* CLBlast keeps compiled programs per context in a process-wide cache:
 * opencl.c counts open instances and clears it when the last one closes. */
void cg_cl_clblast_ref(void);
void cg_cl_clblast_unref(void);

/* Range check of n elements at p (element offset) against p.buf's size. */
cg_status cg_cl_check_range(struct cg_cl *cl, const char *what, const char *arg,
                            struct cg_ptr p, int64_t n);

#endif
