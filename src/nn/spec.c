/*
 * src/nn/spec.c — models from a short spec string, for clgrad-train:
 *
 *     "linear 256 relu, linear 128 relu, linear 10"
 *     "conv 32 3 pad 1 relu, maxpool 2, conv 64 3 pad 1 relu, maxpool 2,
 *      flatten, linear 128 relu, linear 10"
 *
 * Grammar (whitespace separates words; commas separate layers):
 *     spec   := layer ( "," layer )*
 *     layer  := kind arg* option* activation*
 *     kind   := "linear" OUT
 *             | "conv" OUT K          options: stride S, pad P, dilation D,
 *                                              groups G, nobias
 *             | "maxpool" K           options: stride S, pad P, dilation D
 *             | "avgpool" K           options: stride S, pad P
 *             | "gap" | "batchnorm" | "dropout" P | "flatten" | activation
 *     activation := "relu" | "sigmoid" | "tanh" | "gelu" | "softmax"
 * ("padding" is accepted for "pad"; a pool's stride defaults to K.)
 * Shapes are inferred from the input sample shape, layer by layer: conv,
 * the pools, gap and batchnorm need an image sample (C, H, W); "linear"
 * needs a flat sample (use "flatten" or "gap" first for images) and takes
 * its input size from the previous layer; a window that does not fit the
 * image, or shrinks it below one pixel, is an error. Errors name the layer
 * and its column in the spec.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
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

static bool parse_float(const char *w, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(w, &end);
    if (*w == '\0' || *end != '\0' || errno != 0 || !isfinite(v)) return false;
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

/* A layer's output sample or weight (`what`) must be countable, in bytes
 * too (cg__mul_ok): a layer that makes one too large is named. */
static cg_status check_size(cg_ctx *ctx, const struct spec_layer *l, const char *what,
                            const struct spec_shape *s, int64_t *numel)
{
    int64_t n, bytes;
    if (cg__numel_ok(s->ndim, s->dims, &n) && cg__mul_ok(n, (int64_t)sizeof(float), &bytes)) {
        if (numel) *numel = n;
        return CG_OK;
    }
    char sh[128];
    return spec_error(ctx, l, "its %s %s is too large (its size overflows 64 bits)", what,
                      cg__shape_str(s->ndim, s->dims, sh, sizeof sh));
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
    struct spec_shape weight = {2, {out, shape->dims[0]}};
    cg_status st = check_size(ctx, l, "weight", &weight, NULL);
    if (st != CG_OK) return st;
    st = add(ctx, seq, cg_linear_module(ctx, shape->dims[0], out, true));
    shape->dims[0] = out;
    return st;
}

static cg_status build_flatten(cg_ctx *ctx, const struct spec_layer *l, int *word,
                               struct spec_shape *shape, cg_module *seq)
{
    (*word)++;
    int64_t n = 0; /* set when st is CG_OK; GCC 12 at -O2 cannot see it */
    cg_status st = check_size(ctx, l, "input sample", shape, &n);
    if (st != CG_OK) return st;
    shape->ndim = 1;
    shape->dims[0] = n;
    return add(ctx, seq, cg_flatten_module(ctx));
}

/* ---- image layers ------------------------------------------------------ */

/* The image layers' keyword options ("stride 2"), in any order after the
 * positional arguments; -1 where not given. */
struct spec_opts {
    int64_t stride, pad, dilation, groups;
    bool nobias;
};

static bool is_activation(const char *w);

/* Parses options from *word up to the first activation. allowed lists the
 * keywords this kind takes, e.g. "stride pad dilation". */
static cg_status parse_opts(cg_ctx *ctx, const struct spec_layer *l, int *word,
                            const char *allowed, struct spec_opts *o)
{
    *o = (struct spec_opts){-1, -1, -1, -1, false};
    while (*word < l->n_words && !is_activation(l->words[*word])) {
        const char *k = l->words[*word];
        const char *name = strcmp(k, "padding") == 0 ? "pad" : k;
        int64_t *slot = strcmp(name, "stride") == 0     ? &o->stride
                        : strcmp(name, "pad") == 0      ? &o->pad
                        : strcmp(name, "dilation") == 0 ? &o->dilation
                        : strcmp(name, "groups") == 0   ? &o->groups
                                                        : NULL;
        /* Whole-word match in the allowed list. */
        const char *hit = strstr(allowed, name);
        size_t nl = strlen(name);
        bool ok = hit && (hit == allowed || hit[-1] == ' ') && (hit[nl] == ' ' || !hit[nl]);
        if (!ok || (!slot && strcmp(name, "nobias") != 0))
            return spec_error(ctx, l, "unexpected '%s' ('%s' takes the options: %s; "
                              "activations may follow)", k, l->words[0], allowed);
        if (!slot) {
            o->nobias = true;
            (*word)++;
            continue;
        }
        int64_t v;
        int64_t min = strcmp(name, "pad") == 0 ? 0 : 1;
        if (*word + 1 >= l->n_words || !parse_int(l->words[*word + 1], &v) || v < min)
            return spec_error(ctx, l, "'%s' needs an integer >= %" PRId64 ", as in '%s %d'", k,
                              min, k, min == 0 ? 1 : 2);
        *slot = v;
        *word += 2;
    }
    return CG_OK;
}

/* Positional integer argument i (1-based word) of the layer, >= 1. */
static cg_status positional(cg_ctx *ctx, const struct spec_layer *l, int i, const char *usage,
                            int64_t *out)
{
    if (i >= l->n_words || !parse_int(l->words[i], out) || *out < 1)
        return spec_error(ctx, l, "'%s' needs %s", l->words[0], usage);
    return CG_OK;
}

/* Image layers need a (C, H, W) sample. */
static cg_status need_image(cg_ctx *ctx, const struct spec_layer *l, const struct spec_shape *s)
{
    if (s->ndim == 3) return CG_OK;
    char sh[128];
    return spec_error(ctx, l, "'%s' needs an image sample (C, H, W) but gets shape %s%s",
                      l->words[0], cg__shape_str(s->ndim, s->dims, sh, sizeof sh),
                      s->ndim == 1 ? " (image layers must come before 'flatten', and a flat "
                                     "CSV row is no image)" : "");
}

/* The output size of a window over (H, W), as PyTorch computes it
 * (torch.nn.Conv2d / MaxPool2d docs, "Shape"):
 *     out = floor((in + 2 pad - dilation (k - 1) - 1) / stride) + 1 */
static cg_status window_out(cg_ctx *ctx, const struct spec_layer *l, struct spec_shape *s,
                            int64_t k, int64_t stride, int64_t pad, int64_t dil)
{
    int64_t eh, ew, span = 0;
    if (!cg__window_span(s->dims[1], k, pad, dil, &eh) ||
        !cg__window_span(s->dims[2], k, pad, dil, &ew) || !cg__mul_ok(dil, k - 1, &span) ||
        !cg__add_ok(span, 1, &span))
        return spec_error(ctx, l, "kernel %" PRId64 ", padding %" PRId64 " and dilation %" PRId64
                          " are too large (the window's size overflows 64 bits)", k, pad, dil);
    if (eh < 0 || ew < 0) {
        char sh[128];
        return spec_error(ctx, l, "the %swindow (%" PRId64 " x %" PRId64 ") does not fit the "
                          "image %s padded by %" PRId64 ": the output would have no pixels",
                          dil > 1 ? "dilated " : "", span, span,
                          cg__shape_str(s->ndim, s->dims, sh, sizeof sh), pad);
    }
    s->dims[1] = eh / stride + 1;
    s->dims[2] = ew / stride + 1;
    return CG_OK;
}

static cg_status build_conv(cg_ctx *ctx, const struct spec_layer *l, int *word,
                            struct spec_shape *shape, cg_module *seq)
{
    const char *usage = "a positive output channel count and kernel size, as in 'conv 32 3'";
    int64_t out = 0, k = 0;
    cg_status st = positional(ctx, l, 1, usage, &out);
    if (st == CG_OK) st = positional(ctx, l, 2, usage, &k);
    if (st != CG_OK) return st;
    *word = 3;
    struct spec_opts o;
    if ((st = parse_opts(ctx, l, word, "stride pad dilation groups nobias", &o)) != CG_OK ||
        (st = need_image(ctx, l, shape)) != CG_OK)
        return st;
    int64_t in = shape->dims[0];
    int64_t groups = o.groups > 0 ? o.groups : 1;
    if (in % groups || out % groups)
        return spec_error(ctx, l, "groups %" PRId64 " must divide both the input channels "
                          "(%" PRId64 ") and the output channels (%" PRId64 ")", groups, in, out);
    int64_t stride = o.stride > 0 ? o.stride : 1, pad = o.pad > 0 ? o.pad : 0;
    int64_t dil = o.dilation > 0 ? o.dilation : 1;
    if ((st = window_out(ctx, l, shape, k, stride, pad, dil)) != CG_OK) return st;
    shape->dims[0] = out;
    struct spec_shape weight = {4, {out, in / groups, k, k}};
    if ((st = check_size(ctx, l, "output sample", shape, NULL)) != CG_OK ||
        (st = check_size(ctx, l, "weight", &weight, NULL)) != CG_OK)
        return st;
    struct cg_conv2d_opts co = {.stride = {stride, stride}, .padding = {pad, pad},
                                .dilation = {dil, dil}, .groups = groups, .no_bias = o.nobias};
    return add(ctx, seq, cg_conv2d_module(ctx, in, out, k, k, &co));
}

static cg_status build_pool(cg_ctx *ctx, const struct spec_layer *l, int *word,
                            struct spec_shape *shape, cg_module *seq)
{
    bool max = strcmp(l->words[0], "maxpool") == 0;
    int64_t k = 0;
    cg_status st = positional(ctx, l, 1, max ? "a positive kernel size, as in 'maxpool 2'"
                                             : "a positive kernel size, as in 'avgpool 2'", &k);
    if (st != CG_OK) return st;
    *word = 2;
    struct spec_opts o;
    if ((st = parse_opts(ctx, l, word, max ? "stride pad dilation" : "stride pad", &o)) != CG_OK ||
        (st = need_image(ctx, l, shape)) != CG_OK)
        return st;
    int64_t stride = o.stride > 0 ? o.stride : k, pad = o.pad > 0 ? o.pad : 0;
    int64_t dil = o.dilation > 0 ? o.dilation : 1;
    if (pad > k / 2)
        return spec_error(ctx, l, "pad %" PRId64 " must be at most half the kernel size %" PRId64,
                          pad, k);
    if ((st = window_out(ctx, l, shape, k, stride, pad, dil)) != CG_OK ||
        (st = check_size(ctx, l, "output sample", shape, NULL)) != CG_OK)
        return st;
    return add(ctx, seq, max ? cg_max_pool2d_module(ctx, k, stride, pad, dil)
                             : cg_avg_pool2d_module(ctx, k, stride, pad));
}

static cg_status build_gap(cg_ctx *ctx, const struct spec_layer *l, int *word,
                           struct spec_shape *shape, cg_module *seq)
{
    cg_status st = need_image(ctx, l, shape);
    if (st != CG_OK) return st;
    (*word)++;
    shape->ndim = 1;    /* (C, H, W) -> (C) */
    return add(ctx, seq, cg_global_avg_pool2d_module(ctx));
}

static cg_status build_batchnorm(cg_ctx *ctx, const struct spec_layer *l, int *word,
                                 struct spec_shape *shape, cg_module *seq)
{
    cg_status st = need_image(ctx, l, shape);
    if (st != CG_OK) return st;
    (*word)++;
    return add(ctx, seq, cg_batch_norm2d_module(ctx, shape->dims[0], 0.0f, 0.0f));
}

static cg_status build_dropout(cg_ctx *ctx, const struct spec_layer *l, int *word,
                               struct spec_shape *shape, cg_module *seq)
{
    (void)shape;
    double p;
    if (*word + 1 >= l->n_words || !parse_float(l->words[*word + 1], &p) || p < 0 || p > 1)
        return spec_error(ctx, l, "'dropout' needs a probability in [0, 1], as in 'dropout 0.5'");
    *word += 2;
    return add(ctx, seq, cg_dropout_module(ctx, (float)p));
}

static const struct {
    const char *kind;
    spec_build_fn build;
} spec_kinds[] = {
    {"linear", build_linear},   {"conv", build_conv},     {"maxpool", build_pool},
    {"avgpool", build_pool},    {"gap", build_gap},       {"batchnorm", build_batchnorm},
    {"dropout", build_dropout}, {"flatten", build_flatten}, {"relu", build_activation},
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
    cg_module *seq = cg_sequential_module(ctx, 0);
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
