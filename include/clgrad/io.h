/*
 * clgrad/io.h — checkpoints in the safetensors format.
 *
 * The file format is Hugging Face's safetensors
 * (huggingface.co/docs/safetensors, "Format"): an 8-byte little-endian
 * header length N, N bytes of JSON
 *
 *     {"__metadata__": {"format": "pt", ...},
 *      "0.weight": {"dtype": "F32", "shape": [64, 10], "data_offsets": [0, 2560]},
 *      ...}
 *
 * padded with spaces to a multiple of 8 bytes, then the tensors' bytes,
 * tightly packed, little-endian, offsets relative to the end of the header.
 *
 * Model weights are stored under exactly the names cg_module_parameters
 * gives, which are PyTorch's state_dict names ("0.weight" of shape
 * (out, in) for Linear), so a clgrad checkpoint opens in PyTorch:
 *
 *     from safetensors.torch import load_file
 *     sd = load_file("model.safetensors")
 *     model.load_state_dict({k: v for k, v in sd.items()
 *                            if not k.startswith(("optim.", "scaler.",
 *                                                 "target_scaler."))})
 *
 * (a checkpoint saved with opt and scalers NULL holds the weights alone and
 * loads with a plain model.load_state_dict(load_file(...))), and a file
 * written by safetensors.torch.save_file(model.state_dict(), ...) loads
 * here into the equivalent clgrad model.
 *
 * The rest of the training state goes into the same file, so a run resumes
 * exactly where it stopped:
 *   - optimizer state: tensors "optim.<param>.<buffer>" with torch.optim's
 *     buffer names (Adam: exp_avg, exp_avg_sq; SGD: momentum_buffer;
 *     RMSProp: square_avg, momentum_buffer, grad_avg), and metadata
 *     "optim.<param>.step", "optim.kind", "optim.groups", "optim.group.<g>"
 *     (each group's hyper-parameters, restored on load as PyTorch's
 *     Optimizer.load_state_dict does);
 *   - the context's host RNG state ("clgrad.rng"), the epoch and step;
 *   - the fitted preprocessing statistics: tensors "scaler.offset",
 *     "scaler.scale" and metadata "scaler.kind" (and the same for
 *     "target_scaler.");
 *   - what a tool needs to rebuild the model: its spec string
 *     (cg_model_from_spec), input sample shape, task and class names;
 *   - any user metadata (string keys and values).
 *
 * Resume: build the model and optimizer exactly as for a fresh run (and the
 * data loader), THEN load, so that the RNG state restored last is the one
 * the next epoch's shuffle and dropout draw from:
 *
 *     // at the end of an epoch
 *     struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
 *     ex.epoch = epoch;                            // epochs completed
 *     ex.model_spec = spec;
 *     ex.scaler = sc;                              // or NULL
 *     if (cg_checkpoint_save("run/last.safetensors", model, opt, &ex) != CG_OK)
 *         fprintf(stderr, "%s\n", cg_last_error(ctx));
 *
 *     // a later process: same model, optimizer and loader, then
 *     struct cg_checkpoint_extra got;
 *     if (cg_checkpoint_load("run/last.safetensors", model, opt, &got) != CG_OK)
 *         die("%s", cg_last_error(ctx));          // names what does not fit
 *     for (int64_t epoch = got.epoch + 1; epoch <= epochs; epoch++) ...
 *     cg_checkpoint_extra_clear(&got);
 *
 * Safety. A save writes a temporary file in the destination's folder,
 * flushes and fsyncs it, renames it over the destination and fsyncs the
 * folder: a crash or a full disk leaves the previous checkpoint intact (a
 * crash may leave a ".NAME.tmp-PID-N" file behind, which the next save to
 * the same path removes once process PID is gone and the file is over a
 * minute old; a failed save removes its own). A save never writes what a
 * load rejects: strings must be UTF-8, and the header (and a checkpoint's
 * metadata) goes through the reader's checks before any file is touched.
 * A load validates the whole header before it reads any tensor data
 * or changes the model: the header length against the file size (and a
 * 100 MB cap), the JSON strictly (grammar, UTF-8, duplicate keys, known
 * fields only), every dtype, every shape against its data_offsets, offsets
 * within the buffer, no overlaps and no uncovered bytes; a checkpoint load
 * then matches names and shapes against the model from the header alone,
 * so a mismatch or a stray tensor costs no data read, and rejects NaN or
 * Inf values (cg_checkpoint_load_ex can allow them). Errors name the
 * file and what is wrong; a model mismatch lists every name, e.g.
 *   "ck.safetensors: does not fit the model: missing: 2.weight; unexpected:
 *    3.weight; shape mismatch: 0.weight is (64, 10) in the file, (32, 10)
 *    in the model"
 *
 * Dtypes. clgrad writes F32. It reads F32, and converts F16, BF16 (exactly),
 * F64 (rounded to nearest) and I64 (PyTorch's counters, e.g. BatchNorm's
 * num_batches_tracked; an error unless every value is within +-2^24, so
 * exact) to float32; every other dtype (other integers, BOOL, F8_*) is
 * rejected as "unsupported dtype".
 *
 * Errors of the host-only functions (cg_safetensors_*, and
 * cg_checkpoint_read_extra) are in cg_last_error(NULL); those of
 * cg_checkpoint_save / _load are in cg_last_error(cg_module_ctx(model)).
 */
#ifndef CLGRAD_IO_H
#define CLGRAD_IO_H

#include <stdbool.h>
#include <stdint.h>

#include "clgrad/data.h"
#include "clgrad/nn.h"
#include "clgrad/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------ safetensors -- */

/* The largest JSON header a reader accepts (the Rust safetensors crate's
 * MAX_HEADER_SIZE). */
#define CG_SAFETENSORS_MAX_HEADER 100000000u

/* One named float32 array in host memory. */
struct cg_st_tensor {
    char *name;
    int ndim;                        /* 0 .. CG_MAX_DIMS                   */
    int64_t shape[CG_MAX_DIMS];
    int64_t numel;                   /* product of shape (1 for ndim 0)   */
    float *data;                     /* (shape...) row-major; numel floats */
};

struct cg_st_meta {
    char *key;
    char *value;
};

/* The contents of a safetensors file: tensors in file (offset) order when
 * read, in insertion order when written; metadata in file order. */
struct cg_safetensors {
    int n_tensors;
    struct cg_st_tensor *tensors;
    int n_meta;
    struct cg_st_meta *meta;
};

/* An empty set, to fill with cg_safetensors_add / _set_meta. */
CG_API cg_status cg_safetensors_create(struct cg_safetensors **out);
CG_API void cg_safetensors_free(struct cg_safetensors *st);
/* Adds a copy of data (numel floats, row-major; NULL: zeros) as tensor
 * `name` with shape (ndim dims). A name already present is an error. */
CG_API cg_status cg_safetensors_add(struct cg_safetensors *st, const char *name, int ndim,
                                    const int64_t *shape, const float *data);
/* Sets metadata key to value (both copied), replacing an existing value. */
CG_API cg_status cg_safetensors_set_meta(struct cg_safetensors *st, const char *key,
                                         const char *value);
/* The tensor / metadata value called name, or NULL. */
CG_API const struct cg_st_tensor *cg_safetensors_find(const struct cg_safetensors *st,
                                                      const char *name);
CG_API const char *cg_safetensors_meta(const struct cg_safetensors *st, const char *key);

/* Reads and validates a whole file (see "Safety" above). */
CG_API cg_status cg_safetensors_read(const char *path, struct cg_safetensors **out);
/* Writes st as F32 tensors, atomically (see "Safety" above). */
CG_API cg_status cg_safetensors_write(const char *path, const struct cg_safetensors *st);

/* ------------------------------------------------------- checkpoints -- */

struct cg_checkpoint_meta {
    const char *key;                 /* must not start with a reserved
                                        prefix: "clgrad.", "optim.",
                                        "scaler.", "target_scaler.", nor be
                                        "format"                           */
    const char *value;
};

/* Everything in a checkpoint besides weights and optimizer state. For a
 * save, the caller fills it (pointers are borrowed); a load fills it with
 * copies the caller releases with cg_checkpoint_extra_clear. */
struct cg_checkpoint_extra {
    int64_t epoch;                   /* epochs completed; -1: not stored   */
    int64_t step;                    /* optimizer steps taken; -1: none    */
    const char *model_spec;          /* cg_model_from_spec string or NULL  */
    int input_ndim;                  /* sample shape the model takes;
                                        0: not stored                      */
    int64_t input_shape[CG_MAX_DIMS];
    enum cg_task task;               /* CG_TASK_AUTO: not stored           */
    int n_classes;                   /* classification; 0: not stored      */
    const char *const *class_names;  /* (n_classes) or NULL                */
    const struct cg_scaler *scaler;  /* features, or NULL                  */
    const struct cg_scaler *target_scaler; /* regression targets, or NULL  */
    int n_meta;
    const struct cg_checkpoint_meta *meta;   /* (n_meta)                   */
    /* Set by a load (ignored by a save, which stores the context's RNG). */
    bool has_rng;
    uint64_t rng[4];                 /* cg_rand_state when saved           */
    bool has_optim;                  /* the file holds optimizer state     */
};

/* Nothing stored: epoch and step -1, everything else empty. */
CG_API struct cg_checkpoint_extra cg_checkpoint_extra_init(void);
/* Frees what a load put into e and resets it to cg_checkpoint_extra_init().
 * Only for a struct filled by cg_checkpoint_load / _read_extra. */
CG_API void cg_checkpoint_extra_clear(struct cg_checkpoint_extra *e);

/* Saves model's parameters, opt's state (opt may be NULL: weights only),
 * the context's RNG state and extra (may be NULL) to path, atomically.
 * Only the optimizer state of the model's parameters is saved. */
CG_API cg_status cg_checkpoint_save(const char *path, const cg_module *model,
                                    const cg_optim *opt,
                                    const struct cg_checkpoint_extra *extra);
/* Loads path into model (every parameter must be in the file with its
 * shape, and the file must hold no other weights), into opt (may be NULL:
 * the optimizer state in the file is ignored; else the file must hold
 * state of the same optimizer kind and group count), restores the
 * context's RNG state when the file has one, and fills extra_out (may be
 * NULL; release with cg_checkpoint_extra_clear). Nothing is changed unless
 * the whole file fits. */
CG_API cg_status cg_checkpoint_load(const char *path, cg_module *model, cg_optim *opt,
                                    struct cg_checkpoint_extra *extra_out);
/* cg_checkpoint_load's options (cg_checkpoint_load_ex). */
struct cg_checkpoint_load_options {
    bool allow_nonfinite;            /* false: NaN or Inf in a weight,
                                        buffer or optimizer state is an
                                        error naming the tensor            */
};
CG_API struct cg_checkpoint_load_options cg_checkpoint_load_options_default(void);
/* cg_checkpoint_load with options (NULL: the defaults). */
CG_API cg_status cg_checkpoint_load_ex(const char *path, cg_module *model, cg_optim *opt,
                                       struct cg_checkpoint_extra *extra_out,
                                       const struct cg_checkpoint_load_options *opts);
/* Reads only the extra part (model spec, shapes, scalers, ...), e.g. to
 * rebuild the model before cg_checkpoint_load. */
CG_API cg_status cg_checkpoint_read_extra(const char *path,
                                          struct cg_checkpoint_extra *out);

#ifdef __cplusplus
}
#endif
#endif
