/*
 * src/nn/spec.c — models from a short spec string, for clgrad-train:
 *
 *     "linear 256 relu, linear 128 relu, linear 10"
 *
 * Grammar (whitespace separates words; commas separate layers):
 *     spec   := layer ( "," layer )*
 *     layer  := kind arg* activation*
 *     kind   := "linear" OUT | "flatten" | activation
 *     activation := "relu" | "sigmoid" | "tanh" | "gelu" | "softmax"
 * Layers take keyword arguments after their positional ones, so that
 * "conv 32 3 pad 1 relu" or "maxpool 2 stride 2" can join the table below
 * with their own parsers; each entry says how it changes a sample's shape.
 * Shapes are inferred from the input sample shape: "linear" needs a flat
 * sample (use "flatten" first for images) and takes its input size from the
 * previous layer. Errors name the layer and its column in the spec.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clgrad/nn.h"
#include "core/internal.h"

#define SPEC_MAX_WORDS 16

struct spec_layer {
    const char *text;   /* the layer's text in the spec, for messages */
    int column;         /* 1-based column of its first word          */
    int n_words;
    char words[SPEC_MAX_WORDS][32];
};

struct spec_shape {
    int ndim;
    int64_t dims[CG_MAX_DIMS];
};

typedef cg_status (*spec_build_fn)(cg_ctx *ctx, const struct spec_layer *l, int *word,
                                   struct spec_shape *shape, cg_module *seq);

static cg_status spec_error(cg_ctx *ctx, const struct spec_layer *l, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static cg_status spec_error(cg_ctx *ctx, const struct spec_layer *l, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "model spec, column %d (\"%s\"): %s",
                     l->column, l->text, msg);
}

static bool parse_int(const char *w, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(w, &end, 10);
    if (*w == '\0' || *end != '\0' || errno != 0) return false;
    *out = v;
    return true;
}

static cg_status add(cg_ctx *ctx, cg_module *seq, cg_module *m)
{
    if (!m) return cg_ctx_status(ctx) != CG_OK ? cg_ctx_status(ctx) : CG_STATUS_OUT_OF_MEMORY;
    return cg_sequential_append(seq, m);
}

/* ---- Flatten --------------------------------------------------------- */

/* torch.nn.Flatten(): (N, d1, d2, ...) -> (N, d1 * d2 * ...). */
static cg_tensor *flatten_forward(cg_module *m, cg_tensor *x)
{
    (void)m;
    return cg_flatten(x, 1, -1);
}

static const struct cg_module_i flatten_i = {.type = "Flatten", .forward = flatten_forward};

CG_API cg_module *cg_flatten_module(cg_ctx *ctx)
{
    return cg_module_create(ctx, &flatten_i, NULL);
}

/* ---- layer builders -------------------------------------------------- */

static cg_status build_activation(cg_ctx *ctx, const struct spec_layer *l, int *word,
                                  struct spec_shape *shape, cg_module *seq)
{
    const char *w = l->words[*word];
    cg_module *m = NULL;
    if (strcmp(w, "relu") == 0) m = cg_relu_module(ctx);
    else if (strcmp(w, "sigmoid") == 0) m = cg_sigmoid_module(ctx);
    else if (strcmp(w, "tanh") == 0) m = cg_tanh_module(ctx);
    else if (strcmp(w, "gelu") == 0) m = cg_gelu_module(ctx);
    else if (strcmp(w, "softmax") == 0) m = cg_softmax_module(ctx, -1);
    else return spec_error(ctx, l, "'%s' is not an activation", w);
    (void)shape;
    (*word)++;
    return add(ctx, seq, m);
}

static cg_status build_linear(cg_ctx *ctx, const struct spec_layer *l, int *word,
                              struct spec_shape *shape, cg_module *seq)
{
    int64_t out;
    if (*word + 1 >= l->n_words || !parse_int(l->words[*word + 1], &out) || out <= 0)
        return spec_error(ctx, l, "'linear' needs a positive output size, as in 'linear 128'");
    if (shape->ndim != 1) {
        char sh[128];
        return spec_error(ctx, l, "'linear' needs a flat sample but gets shape %s; put "
                          "'flatten' before it", cg__shape_str(shape->ndim, shape->dims, sh, sizeof sh));
    }
    *word += 2;
    cg_status st = add(ctx, seq, cg_linear(ctx, shape->dims[0], out, true));
    shape->dims[0] = out;
    return st;
}

static cg_status build_flatten(cg_ctx *ctx, const struct spec_layer *l, int *word,
                               struct spec_shape *shape, cg_module *seq)
{
    (void)l;
    (*word)++;
    int64_t n = cg__numel(shape->ndim, shape->dims);
    shape->ndim = 1;
    shape->dims[0] = n;
    return add(ctx, seq, cg_flatten_module(ctx));
}

static const struct {
    const char *kind;
    spec_build_fn build;
} spec_kinds[] = {
    {"linear", build_linear},   {"flatten", build_flatten}, {"relu", build_activation},
    {"sigmoid", build_activation}, {"tanh", build_activation}, {"gelu", build_activation},
    {"softmax", build_activation},
};
#define N_KINDS (int)(sizeof spec_kinds / sizeof spec_kinds[0])

static spec_build_fn find_kind(const char *w)
{
    for (int i = 0; i < N_KINDS; i++)
        if (strcmp(spec_kinds[i].kind, w) == 0) return spec_kinds[i].build;
    return NULL;
}

static bool is_activation(const char *w)
{
    return find_kind(w) == build_activation;
}

/* Splits one layer's text into lower-case words. */
static cg_status split_words(cg_ctx *ctx, struct spec_layer *l, const char *s, size_t len)
{
    l->n_words = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && isspace((unsigned char)s[i])) i++;
        if (i == len) break;
        size_t j = i;
        while (j < len && !isspace((unsigned char)s[j])) j++;
        if (l->n_words == SPEC_MAX_WORDS) return spec_error(ctx, l, "too many words");
        if (j - i >= sizeof l->words[0]) return spec_error(ctx, l, "word too long");
        for (size_t k = i; k < j; k++)
            l->words[l->n_words][k - i] = (char)tolower((unsigned char)s[k]);
        l->words[l->n_words][j - i] = '\0';
        l->n_words++;
        i = j;
    }
    return CG_OK;
}

static cg_status build_layer(cg_ctx *ctx, const struct spec_layer *l, struct spec_shape *shape,
                             cg_module *seq)
{
    if (l->n_words == 0) return spec_error(ctx, l, "empty layer (two commas in a row?)");
    spec_build_fn build = find_kind(l->words[0]);
    if (!build) {
        char known[256] = "";
        for (int i = 0; i < N_KINDS; i++) {
            strncat(known, i ? ", " : "", sizeof known - strlen(known) - 1);
            strncat(known, spec_kinds[i].kind, sizeof known - strlen(known) - 1);
        }
        return spec_error(ctx, l, "unknown layer '%s'; known layers: %s", l->words[0], known);
    }
    int word = 0;
    cg_status st = build(ctx, l, &word, shape, seq);
    /* Trailing activations: "linear 256 relu". */
    while (st == CG_OK && word < l->n_words) {
        if (!is_activation(l->words[word]))
            return spec_error(ctx, l, "unexpected '%s' (only activations may follow a layer's "
                              "arguments)", l->words[word]);
        st = build_activation(ctx, l, &word, shape, seq);
    }
    return st;
}

CG_API cg_module *cg_model_from_spec(cg_ctx *ctx, const char *spec, int in_ndim,
                                     const int64_t *in_shape, int *out_ndim, int64_t *out_shape)
{
    if (!spec || in_ndim < 1 || in_ndim > CG_MAX_DIMS) {
        cg__error(ctx, CG_STATUS_INVALID_ARGUMENT, "cg_model_from_spec: bad spec or input shape");
        return NULL;
    }
    struct spec_shape shape = {.ndim = in_ndim};
    for (int i = 0; i < in_ndim; i++) shape.dims[i] = in_shape[i];
    cg_module *seq = cg_sequential(ctx, 0);
    if (!seq) return NULL;
    const char *p = spec;
    cg_status st = CG_OK;
    while (st == CG_OK) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char text[256];
        snprintf(text, sizeof text, "%.*s", (int)len, p);
        struct spec_layer l = {.text = text, .column = (int)(p - spec) + 1};
        while (l.text[0] == ' ') {
            l.text++;
            l.column++;
        }
        st = split_words(ctx, &l, p, len);
        if (st == CG_OK) st = build_layer(ctx, &l, &shape, seq);
        if (!comma) break;
        p = comma + 1;
    }
    if (st != CG_OK) {
        cg_module_free(seq);
        return NULL;
    }
    if (out_ndim) *out_ndim = shape.ndim;
    if (out_shape)
        for (int i = 0; i < shape.ndim; i++) out_shape[i] = shape.dims[i];
    return seq;
}
