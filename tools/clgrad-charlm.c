/*
 * clgrad-charlm — a character-level language model: trains an LSTM or a
 * small (causal) Transformer on any text file, prints the loss every N steps
 * with tokens per second, then samples text from the model.
 *
 *   clgrad-charlm                                  # LSTM on the GPL-3 text
 *   clgrad-charlm --arch transformer --steps 1000 --temperature 0.7
 *   clgrad-charlm --text book.txt --hidden 256 --layers 2 --sample 1000
 *
 * The models, in PyTorch terms (so a loss curve can be compared with a
 * PyTorch script on the same text and configuration; V = the number of
 * distinct bytes in the text):
 *   lstm:        Embedding(V, E) -> LSTM(E, H, num_layers=L, batch_first=True)
 *                -> Linear(H, V)
 *   transformer: Embedding(V, D) + learned positions Embedding(T, D)
 *                -> N x TransformerEncoderLayer(D, heads, 4D, dropout,
 *                   activation="gelu", batch_first=True, norm_first=True)
 *                   with a causal mask -> LayerNorm(D) -> Linear(D, V)
 * trained with Adam (PyTorch's defaults but the learning rate) on
 * cross-entropy over every (batch, time) position: logits (B, T, V) are seen
 * as (B*T, V) against the next characters (B*T). Each batch holds B windows
 * of T+1 characters at uniformly random offsets (the context's seeded RNG).
 * Gradients are clipped to a global 2-norm (--clip, 0 = off).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <clgrad/clgrad.h>

#include "cli.h"

#define DEFAULT_TEXT "/usr/share/common-licenses/GPL-3"

struct options {
    const char *text, *arch, *backend, *device, *prompt, *save, *load;
    int arch_given;           /* the first architecture option given (for --load) */
    bool steps_given, seq_given;
    bool shard_optimizer;       /* ZeRO-1 under mpirun (dist.h) */
    int64_t embed, hidden, layers, d_model, heads, blocks, batch, seq;
    int steps, print_every, sample;
    float lr, clip, dropout, temperature;
    uint64_t seed;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: clgrad-charlm [OPTION]...\n"
        "\n"
        "Trains a character-level language model on a text file, printing the\n"
        "training loss (mean over the last N steps) and tokens per second, then\n"
        "samples text from it.\n"
        "\n"
        "  --text FILE          training text (default " DEFAULT_TEXT ")\n"
        "  --arch ARCH          lstm (default) or transformer\n"
        "  --steps N            training steps (default 500; 0 with --load)\n"
        "  -b, --batch B        sequences per batch (default 32)\n"
        "  --seq T              characters per sequence (default 64)\n"
        "  -l, --lr LR          Adam learning rate (default 3e-3)\n"
        "  --clip C             clip the gradients' global 2-norm to C (default 1; 0 off)\n"
        "  --print-every N      steps between loss lines (default 50)\n"
        "lstm:\n"
        "  --embed E            embedding size (default 64)\n"
        "  --hidden H           LSTM hidden size (default 128)\n"
        "  --layers L           LSTM layers (default 1)\n"
        "transformer:\n"
        "  --d-model D          model width (default 64)\n"
        "  --heads N            attention heads (default 4)\n"
        "  --blocks N           Transformer blocks (default 2)\n"
        "  --dropout P          dropout (default 0)\n"
        "sampling:\n"
        "  --sample N           characters to sample after training (default 400; 0 none)\n"
        "  --temperature T      softmax temperature (default 0.8; 0 = always the most likely)\n"
        "  --prompt TEXT        text to start from (default: the text's first character)\n"
        "checkpoints:\n"
        "  -o, --save FILE      after training, save the model, the optimizer state,\n"
        "                       the architecture and the vocabulary (safetensors)\n"
        "  --load FILE          start from a --save file: its architecture (the\n"
        "                       options above are then an error; --seq too for a\n"
        "                       transformer, whose context it is), vocabulary and\n"
        "                       weights. Alone it only samples (sample-only mode, no\n"
        "                       text read); with --steps N it trains on, and the text\n"
        "                       may hold only characters of the saved vocabulary.\n"
        "other:\n"
        "  -s, --seed S         seed of the context's RNG (default 1)\n"
        "  --shard-optimizer    under mpirun: each rank keeps and updates 1/N of\n"
        "                       Adam's state (ZeRO-1); same model, less memory\n"
        CLI_HELP_DEVICE
        CLI_HELP_COMMON);
}

enum {
    OPT_TEXT = CLI_OPT_TOOL, OPT_ARCH, OPT_PROMPT, OPT_EMBED, OPT_HIDDEN, OPT_LAYERS,
    OPT_D_MODEL, OPT_HEADS, OPT_BLOCKS, OPT_SEQ, OPT_STEPS, OPT_PRINT_EVERY, OPT_SAMPLE,
    OPT_CLIP, OPT_DROPOUT, OPT_TEMPERATURE, OPT_LOAD, OPT_SHARD_OPTIMIZER
};

static const struct option long_options[] = {
    CLI_OPTIONS_COMMON,
    CLI_OPTIONS_DEVICE,
    {"text", required_argument, NULL, OPT_TEXT},
    {"arch", required_argument, NULL, OPT_ARCH},
    {"steps", required_argument, NULL, OPT_STEPS},
    {"batch", required_argument, NULL, 'b'},
    {"seq", required_argument, NULL, OPT_SEQ},
    {"lr", required_argument, NULL, 'l'},
    {"clip", required_argument, NULL, OPT_CLIP},
    {"print-every", required_argument, NULL, OPT_PRINT_EVERY},
    {"embed", required_argument, NULL, OPT_EMBED},
    {"hidden", required_argument, NULL, OPT_HIDDEN},
    {"layers", required_argument, NULL, OPT_LAYERS},
    {"d-model", required_argument, NULL, OPT_D_MODEL},
    {"heads", required_argument, NULL, OPT_HEADS},
    {"blocks", required_argument, NULL, OPT_BLOCKS},
    {"dropout", required_argument, NULL, OPT_DROPOUT},
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"temperature", required_argument, NULL, OPT_TEMPERATURE},
    {"prompt", required_argument, NULL, OPT_PROMPT},
    {"seed", required_argument, NULL, 's'},
    {"save", required_argument, NULL, 'o'},
    {"load", required_argument, NULL, OPT_LOAD},
    {"shard-optimizer", no_argument, NULL, OPT_SHARD_OPTIMIZER},
    {NULL, 0, NULL, 0},
};

/* Exits after --help, --version or a usage error (status 2). */
static void parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.text = DEFAULT_TEXT, .arch = "lstm", .embed = 64, .hidden = 128,
                          .layers = 1, .d_model = 64, .heads = 4, .blocks = 2, .batch = 32,
                          .seq = 64, .steps = 500, .print_every = 50, .sample = 400,
                          .lr = 3e-3f, .clip = 1.0f, .dropout = 0.0f, .temperature = 0.8f,
                          .seed = 1};
    const int64_t big = INT32_MAX;
    int c;
    while ((c = cli_getopt(argc, argv, "hb:l:s:t:o:", long_options)) != -1) {
        const char *a = cli_optname(), *v = optarg;
        switch (c) {
        case OPT_ARCH: case OPT_EMBED: case OPT_HIDDEN: case OPT_LAYERS: case OPT_D_MODEL:
        case OPT_HEADS: case OPT_BLOCKS: case OPT_DROPOUT:
            if (!o->arch_given) o->arch_given = c;
            break;
        case OPT_SEQ: o->seq_given = true; break;
        default: break;
        }
        switch (c) {
        case 'h': usage(stdout); exit(0);
        case CLI_OPT_VERSION: cli_version(cg_version());
        case CLI_OPT_BACKEND: o->backend = v; break;
        case CLI_OPT_DEVICE: o->device = v; break;
        case 't': cli_threads(v); break;
        case OPT_TEXT: o->text = v; break;
        case OPT_ARCH: o->arch = v; break;
        case OPT_PROMPT: o->prompt = v; break;
        case OPT_EMBED: o->embed = cli_int(a, v, 1, big); break;
        case OPT_HIDDEN: o->hidden = cli_int(a, v, 1, big); break;
        case OPT_LAYERS: o->layers = cli_int(a, v, 1, 64); break;
        case OPT_D_MODEL: o->d_model = cli_int(a, v, 1, big); break;
        case OPT_HEADS: o->heads = cli_int(a, v, 1, big); break;
        case OPT_BLOCKS: o->blocks = cli_int(a, v, 1, 64); break;
        case 'b': o->batch = cli_int(a, v, 1, big); break;
        case OPT_SEQ: o->seq = cli_int(a, v, 1, big); break;
        case OPT_STEPS:
            o->steps = (int)cli_int(a, v, 0, 100000000);
            o->steps_given = true;
            break;
        case 'o': o->save = v; break;
        case OPT_LOAD: o->load = v; break;
        case OPT_SHARD_OPTIMIZER: o->shard_optimizer = true; break;
        case OPT_PRINT_EVERY: o->print_every = (int)cli_int(a, v, 1, 100000000); break;
        case OPT_SAMPLE: o->sample = (int)cli_int(a, v, 0, 100000000); break;
        case 's': o->seed = (uint64_t)cli_int(a, v, 0, INT64_MAX); break;
        case 'l': o->lr = (float)cli_double(a, v, 0, 1e3); break;
        case OPT_CLIP: o->clip = (float)cli_double(a, v, 0, 1e12); break;
        case OPT_DROPOUT: o->dropout = (float)cli_double(a, v, 0, 0.999); break;
        case OPT_TEMPERATURE: o->temperature = (float)cli_double(a, v, 0, 1e3); break;
        }
    }
    if (o->load && o->arch_given) {
        const struct option *l = long_options;
        while (l->name && l->val != o->arch_given) l++;
        cli_usage_error("option '--%s' conflicts with --load: the checkpoint fixes the model",
                        l->name);
    }
    if (o->load && !o->steps_given) o->steps = 0;   /* --load alone: sample only */
    if (strcmp(o->arch, "lstm") && strcmp(o->arch, "transformer"))
        cli_usage_error("option '--arch': '%s' is not lstm or transformer", o->arch);
    if (!strcmp(o->arch, "transformer") && o->d_model % o->heads)
        cli_usage_error("option '--d-model': %lld is not a multiple of --heads %lld",
                        (long long)o->d_model, (long long)o->heads);
}

/* ---- the text ---------------------------------------------------------------- */

struct corpus {
    float *ids;        /* the text as vocabulary indices */
    int64_t n;
    int vocab;
    unsigned char chars[256];   /* index -> byte */
    int index[256];             /* byte -> index, -1 if absent */
    unsigned char start;        /* the text's first byte: the default prompt */
};

/* Reads the text at path. c->vocab 0: its distinct bytes become the
 * vocabulary; else (a loaded model) every byte must be in c's vocabulary. */
static int load_text(const char *path, struct corpus *c)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "clgrad-charlm: cannot open %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) {
        fprintf(stderr, "clgrad-charlm: cannot read %s: %s\n", path,
                buf ? "read error" : "out of memory");
        free(buf);
        return 1;
    }
    if (c->vocab == 0) {
        bool seen[256] = {0};
        for (size_t i = 0; i < n; i++) seen[buf[i]] = true;
        for (int b = 0; b < 256; b++) {
            c->index[b] = seen[b] ? c->vocab : -1;
            if (seen[b]) c->chars[c->vocab++] = (unsigned char)b;
        }
        c->start = n ? buf[0] : 0;
    }
    c->n = (int64_t)n;
    c->ids = malloc((n ? n : 1) * sizeof *c->ids);
    if (!c->ids) {
        free(buf);
        fprintf(stderr, "clgrad-charlm: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        if (c->index[buf[i]] < 0) {
            fprintf(stderr, "clgrad-charlm: %s: byte %d ('%c') at offset %zu is not in the "
                    "loaded model's vocabulary of %d characters\n", path, buf[i],
                    buf[i] >= 32 && buf[i] < 127 ? buf[i] : '?', i, c->vocab);
            free(buf);
            return 1;
        }
        c->ids[i] = (float)c->index[buf[i]];
    }
    free(buf);
    return 0;
}

/* B windows of T+1 characters: inputs x (B, T), next characters y (B, T). */
static void make_batch(cg_ctx *ctx, const struct corpus *c, int64_t B, int64_t T, float *x,
                       float *y)
{
    for (int64_t b = 0; b < B; b++) {
        int64_t off = (int64_t)(cg_rand_u64(ctx) % (uint64_t)(c->n - T));
        memcpy(x + b * T, c->ids + off, (size_t)T * sizeof *x);
        memcpy(y + b * T, c->ids + off + 1, (size_t)T * sizeof *y);
    }
}

/* ---- the models ------------------------------------------------------------------ */

struct model {
    bool lstm;
    cg_module *all;                    /* owns everything below          */
    cg_module *emb, *rnn, *head;       /* lstm: borrowed from all        */
    int64_t context;                   /* transformer: max positions     */
};

static int build_model(cg_ctx *ctx, const struct options *o, int vocab, struct model *m)
{
    m->lstm = !strcmp(o->arch, "lstm");
    if (m->lstm) {
        m->all = cg_sequential_module(ctx, 3, cg_embedding_module(ctx, vocab, o->embed),
                               cg_lstm_module(ctx, o->embed, o->hidden, (int)o->layers, true),
                               cg_linear_module(ctx, o->hidden, vocab, true));
        if (m->all) {
            m->emb = cg_module_child(m->all, 0);
            m->rnn = cg_module_child(m->all, 1);
            m->head = cg_module_child(m->all, 2);
        }
    } else {
        int n = (int)o->blocks + 4;
        cg_module **mods = calloc((size_t)n, sizeof *mods);
        if (!mods) return 1;
        int k = 0;
        mods[k++] = cg_embedding_module(ctx, vocab, o->d_model);
        mods[k++] = cg_positional_embedding_module(ctx, o->seq, o->d_model);
        for (int64_t b = 0; b < o->blocks; b++)
            mods[k++] = cg_transformer_block_module(ctx, o->d_model, o->heads, 4 * o->d_model,
                                             o->dropout, true);
        mods[k++] = cg_layernorm_module(ctx, 1, (int64_t[]){o->d_model});
        mods[k++] = cg_linear_module(ctx, o->d_model, vocab, true);
        m->all = cg_sequential_module_array(ctx, n, mods);
        free(mods);
        m->context = o->seq;
    }
    if (!m->all) {
        fprintf(stderr, "clgrad-charlm: building the model: %s\n", cg_last_error(ctx));
        return 1;
    }
    return 0;
}

/* ---- sampling ------------------------------------------------------------------------ */

/* Draws an index from softmax(logits / temperature) (argmax at 0). */
static int draw(cg_ctx *ctx, const float *logits, int V, float temperature)
{
    int best = 0;
    for (int v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v;
    if (temperature <= 0.0f) return best;
    double p[256], sum = 0;
    for (int v = 0; v < V; v++) sum += p[v] = exp((logits[v] - logits[best]) / temperature);
    double u = cg_rand_uniform(ctx) * sum;
    for (int v = 0; v < V; v++)
        if ((u -= p[v]) < 0) return v;
    return V - 1;
}

/* The last position's logits of a (1, T, V) output into out. */
static bool last_logits(cg_tensor *logits, int V, float *out)
{
    if (!logits) return false;
    int64_t T = cg_tensor_dim(logits, 1);
    cg_tensor *row = cg_slice(logits, 1, T - 1, T, 1);
    return row && cg_tensor_to_host(row, out, V) == CG_OK;
}

static int sample(cg_ctx *ctx, const struct options *o, const struct corpus *c,
                  struct model *m)
{
    const int V = c->vocab;
    int64_t cap = (o->prompt ? (int64_t)strlen(o->prompt) : 1) + o->sample;
    float *ids = malloc((size_t)(cap > 0 ? cap : 1) * sizeof *ids);
    float logits[256];
    if (!ids) return 1;
    int64_t n = 0;
    if (o->prompt && *o->prompt) {
        for (const unsigned char *p = (const unsigned char *)o->prompt; *p; p++) {
            if (c->index[*p] < 0) {
                fprintf(stderr, "clgrad-charlm: the prompt's character '%c' (byte %d) is not "
                        "in the text's vocabulary\n", *p, *p);
                free(ids);
                return 1;
            }
            ids[n++] = (float)c->index[*p];
        }
    } else {
        ids[n++] = (float)c->index[c->start];
    }
    printf("--- sample (temperature %g) ---\n", (double)o->temperature);
    for (int64_t i = 0; i < n; i++) putchar(c->chars[(int)ids[i]]);
    cg_module_eval(m->all);
    bool was = cg_set_grad_enabled(ctx, false);
    int rc = 0;
    cg_tensor *h = NULL, *cs = NULL; /* LSTM states (L, 1, H), persistent */
    int64_t fed = 0;                 /* LSTM: characters already through the states */
    for (int i = 0; i < o->sample && rc == 0; i++) {
        cg_scope_begin(ctx);
        bool ok;
        if (m->lstm) {
            /* feed the characters not yet seen, carrying (h, c) */
            cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(1, n - fed), ids + fed);
            struct cg_forward_args st = {.state = {h, cs}};
            cg_tensor *y = cg_module_forward_ex(m->rnn, cg_module_forward(m->emb, x), &st);
            cg_tensor *hn = st.state_out[0], *cn = st.state_out[1];
            ok = last_logits(cg_module_forward(m->head, y), V, logits) && hn && cn;
            if (ok) {
                cg_tensor_free(h);
                cg_tensor_free(cs);
                h = cg_tensor_keep(hn);
                cs = cg_tensor_keep(cn);
                fed = n;
            }
        } else {
            /* the last `context` characters */
            int64_t start = n > m->context ? n - m->context : 0;
            cg_tensor *x = cg_tensor_from_host(ctx, CG_SHAPE(1, n - start), ids + start);
            ok = last_logits(cg_module_forward(m->all, x), V, logits);
        }
        cg_scope_end(ctx);
        if (!ok) {
            fprintf(stderr, "\nclgrad-charlm: sampling: %s\n", cg_last_error(ctx));
            rc = 1;
            break;
        }
        int next = draw(ctx, logits, V, o->temperature);
        ids[n++] = (float)next;
        putchar(c->chars[next]);
    }
    printf("\n--- end of sample ---\n");
    cg_tensor_free(h);
    cg_tensor_free(cs);
    cg_set_grad_enabled(ctx, was);
    free(ids);
    return rc;
}

/* ---- training ------------------------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int train(cg_ctx *ctx, const struct options *o, const struct corpus *c, struct model *m,
                 cg_optim *opt)
{
    const int64_t T = o->seq, V = c->vocab;
    /* Under mpirun every rank draws the same global batch of --batch
     * windows and trains on its slice (rows rank * B .. of them). */
    const int rank = cg_dist_rank(cli_dist), world = cg_dist_world_size(cli_dist);
    const int64_t G = o->batch, B = G / world;
    float *x = malloc((size_t)(G * T) * sizeof *x), *y = malloc((size_t)(G * T) * sizeof *y);
    if (!x || !y) {
        fprintf(stderr, "clgrad-charlm: out of memory\n");
        free(x);
        free(y);
        return 1;
    }
    int rc = 0;
    double window_loss = 0, t0 = now(), t_all = t0;
    int window = 0;
    cg_module_train(m->all);
    for (int step = 1; step <= o->steps; step++) {
        make_batch(ctx, c, G, T, x, y);
        cg_dist_set_batch_offset(ctx, rank * B); /* dropout masks by global row */
        cg_scope_begin(ctx);
        cg_tensor *logits = cg_module_forward(m->all, cg_tensor_from_host(ctx, CG_SHAPE(B, T),
                                                                           x + rank * B * T));
        cg_tensor *loss = cg_cross_entropy_loss(cg_reshape(logits, CG_SHAPE(B * T, V)),
                                                cg_tensor_from_host(ctx, CG_SHAPE(B * T),
                                                                    y + rank * B * T),
                                                CG_REDUCTION_MEAN, 0.0f);
        cg_optim_zero_grad(opt);
        float l = NAN;
        bool ok = cg_backward(loss) == CG_OK &&
                  (o->clip <= 0.0f || cg_optim_clip_grad_norm(opt, o->clip)) &&
                  cg_optim_step(opt) == CG_OK && cg_tensor_item(loss, &l) == CG_OK;
        cg_scope_end(ctx);
        if (!ok) cli_die("step %d: %s", step, cg_last_error(ctx));
        window_loss += l;
        window++;
        if (step % o->print_every == 0 || step == o->steps) {
            /* the global loss: every rank's batch has B rows */
            if (cg_dist_allreduce_f64(cli_dist, &window_loss, 1, CG_DIST_SUM) != CG_OK)
                cli_die("step %d: %s", step, cg_last_error(ctx));
            window_loss /= world;
            double t1 = now();
            if (rank == 0)
                printf("step %6d | loss %.4f | %.0f tokens/s\n", step, window_loss / window,
                       (double)(window * G * T) / (t1 - t0));
            fflush(stdout);
            window_loss = 0;
            window = 0;
            t0 = t1;
        }
    }
    if (rc == 0 && o->steps > 0 && rank == 0)
        printf("trained %d steps in %.1f s: %.0f tokens/s overall\n", o->steps, now() - t_all,
               (double)o->steps * (double)(G * T) / (now() - t_all));
    free(x);
    free(y);
    return rc;
}

/* ---- checkpoints ------------------------------------------------------------------- */

/* The architecture and vocabulary, as metadata beside the weights. */
enum { N_CONF = 11 };
static const char *const conf_keys[N_CONF] = {
    "charlm.arch", "charlm.vocab", "charlm.start", "charlm.embed", "charlm.hidden",
    "charlm.layers", "charlm.d_model", "charlm.heads", "charlm.blocks", "charlm.seq",
    "charlm.dropout"};

/* Bytes as hex: the vocabulary may hold bytes that are not UTF-8 text. */
static char *hex(const unsigned char *b, int n)
{
    char *s = malloc((size_t)n * 2 + 1);
    if (!s) cli_die("out of memory");
    for (int i = 0; i < n; i++) snprintf(s + 2 * i, 3, "%02x", b[i]);
    s[2 * n] = '\0';
    return s;
}

static void save(cg_module *model, cg_optim *opt, const struct options *o,
                 const struct corpus *c)
{
    char *v[N_CONF] = {cli_strf("%s", o->arch), hex(c->chars, c->vocab), hex(&c->start, 1),
                       cli_strf("%lld", (long long)o->embed), cli_strf("%lld", (long long)o->hidden),
                       cli_strf("%lld", (long long)o->layers), cli_strf("%lld", (long long)o->d_model),
                       cli_strf("%lld", (long long)o->heads), cli_strf("%lld", (long long)o->blocks),
                       cli_strf("%lld", (long long)o->seq), cli_strf("%.9g", (double)o->dropout)};
    struct cg_checkpoint_meta meta[N_CONF];
    for (int i = 0; i < N_CONF; i++) meta[i] = (struct cg_checkpoint_meta){conf_keys[i], v[i]};
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    ex.step = o->steps;
    ex.meta = meta;
    ex.n_meta = N_CONF;
    if (cg_checkpoint_save(o->save, model, opt, &ex) != CG_OK)
        cli_die("saving %s: %s", o->save, cg_last_error(cg_optim_ctx(opt)));
    for (int i = 0; i < N_CONF; i++) free(v[i]);
    printf("saved %s\n", o->save);
}

static int64_t conf_int(const char *path, const char *key, const char *v, int64_t hi)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > hi)
        cli_die("%s: %s \"%s\" is not an integer in [1, %lld]", path, key, v, (long long)hi);
    return n;
}

/* Sets the architecture and vocabulary from a --save file's metadata. */
static void load_conf(const char *path, const struct cg_checkpoint_extra *ex, struct options *o,
                      struct corpus *c)
{
    const char *v[N_CONF] = {0};
    for (int k = 0; k < N_CONF; k++) {
        for (int i = 0; i < ex->n_meta; i++)
            if (strcmp(ex->meta[i].key, conf_keys[k]) == 0) v[k] = ex->meta[i].value;
        if (!v[k]) cli_die("%s has no %s: not a clgrad-charlm --save file", path, conf_keys[k]);
    }
    if (strcmp(v[0], "lstm") == 0) o->arch = "lstm";
    else if (strcmp(v[0], "transformer") == 0) o->arch = "transformer";
    else cli_die("%s: charlm.arch \"%s\" is not lstm or transformer", path, v[0]);
    size_t len = strlen(v[1]);
    if (len < 2 || len > 512 || len % 2 || strlen(v[2]) != 2)
        cli_die("%s: charlm.vocab or charlm.start is malformed", path);
    for (int b = 0; b < 256; b++) c->index[b] = -1;
    c->vocab = 0;
    for (size_t i = 0; i < len; i += 2) {
        unsigned int byte;
        if (sscanf(v[1] + i, "%2x", &byte) != 1 || c->index[byte] >= 0)
            cli_die("%s: charlm.vocab is malformed at character %zu", path, i / 2);
        c->index[byte] = c->vocab;
        c->chars[c->vocab++] = (unsigned char)byte;
    }
    unsigned int start;
    if (sscanf(v[2], "%2x", &start) != 1 || c->index[start] < 0)
        cli_die("%s: charlm.start is not in the vocabulary", path);
    c->start = (unsigned char)start;
    const int64_t big = INT32_MAX;
    o->embed = conf_int(path, conf_keys[3], v[3], big);
    o->hidden = conf_int(path, conf_keys[4], v[4], big);
    o->layers = conf_int(path, conf_keys[5], v[5], 64);
    o->d_model = conf_int(path, conf_keys[6], v[6], big);
    o->heads = conf_int(path, conf_keys[7], v[7], big);
    o->blocks = conf_int(path, conf_keys[8], v[8], 64);
    if (strcmp(o->arch, "transformer") == 0) {
        int64_t seq = conf_int(path, conf_keys[9], v[9], big);
        if (o->seq_given && o->seq != seq)
            cli_usage_error("option '--seq': the loaded transformer's context is %lld",
                            (long long)seq);
        o->seq = seq;
    }
    char *end;
    o->dropout = strtof(v[10], &end);
    if (*end || !(o->dropout >= 0 && o->dropout < 1))
        cli_die("%s: charlm.dropout \"%s\" is not in [0, 1)", path, v[10]);
}

int main(int argc, char **argv)
{
    cli_prog = "clgrad-charlm";
    cli_dist_rank_from_env();
    struct options o;
    parse_args(argc, argv, &o);
    struct corpus c = {0};
    struct cg_checkpoint_extra ex = cg_checkpoint_extra_init();
    if (o.load) {
        if (cg_checkpoint_read_extra(o.load, &ex) != CG_OK) cli_die("%s", cg_last_error(NULL));
        load_conf(o.load, &ex, &o, &c);
    }
    bool read_text = !o.load || o.steps > 0;   /* sample-only needs no text */
    if (read_text) {
        if (load_text(o.text, &c)) return 1;
        if (c.n < o.seq + 2) {
            fprintf(stderr, "clgrad-charlm: %s has %lld characters; --seq %lld needs at least %lld\n",
                    o.text, (long long)c.n, (long long)o.seq, (long long)o.seq + 2);
            free(c.ids);
            return 1;
        }
    }
    struct cg_ctx_options co = {.backend = o.backend, .device = o.device, .seed = o.seed};
    cg_ctx *ctx;
    if (cg_ctx_create(&ctx, &co) != CG_OK) {
        fprintf(stderr, "clgrad-charlm: %s\n", cg_last_error(NULL));
        free(c.ids);
        return 1;
    }
    cli_dist_begin(ctx); /* under mpirun: data-parallel (include/clgrad/dist.h) */
    int world = cg_dist_world_size(cli_dist), rank = cg_dist_rank(cli_dist);
    if (o.batch % world)
        cli_die("--batch %lld (the global batch) does not divide by the %d ranks",
                (long long)o.batch, world);
    struct model m = {0};
    int rc = build_model(ctx, &o, c.vocab, &m);
    cg_optim *opt = rc == 0 ? cg_adam(m.all, o.lr) : NULL;
    if (rc == 0 && !opt) {
        fprintf(stderr, "clgrad-charlm: %s%s\n", cli_rank, cg_last_error(ctx));
        rc = 1;
    }
    if (rc == 0 && o.load) {
        /* the weights, and Adam's state when training goes on; the RNG
         * stays the one --seed set */
        uint64_t rng[4];
        cg_rand_state(ctx, rng);
        if (cg_checkpoint_load(o.load, m.all, ex.has_optim && o.steps > 0 ? opt : NULL, NULL) !=
            CG_OK)
            cli_die("%s", cg_last_error(ctx));
        cg_rand_set_state(ctx, rng);
        cg_optim_set_lr(opt, o.lr);
    }
    /* every rank loaded the same file; attach checks and broadcasts rank 0's */
    if (rc == 0 && (cg_dist_attach(cli_dist, m.all) != CG_OK ||
                    cg_dist_broadcast_optim(cli_dist, opt) != CG_OK ||
                    (o.shard_optimizer && cg_dist_shard_optimizer(cli_dist, opt) != CG_OK)))
        cli_die("%s", cg_last_error(ctx));
    if (rc == 0) {
        const struct cg_device_info *dev = cg_ctx_device(ctx);
        if (rank == 0) {
            printf("clgrad-charlm: %s on %s (%s), ", o.arch, cg_ctx_backend_name(ctx),
                   dev ? dev->name : "?");
            if (read_text) printf("%lld characters, ", (long long)c.n);
            printf("vocabulary %d, %lld parameters%s%s\n", c.vocab,
                   (long long)cg_module_numel(m.all), o.load ? "; loaded " : "",
                   o.load ? o.load : "");
            if (o.steps > 0) {
                printf("batch %lld x %lld tokens, Adam lr %g, clip %g, %d steps",
                       (long long)o.batch, (long long)o.seq, (double)o.lr, (double)o.clip,
                       o.steps);
                if (world > 1)
                    printf("; %d ranks x %lld sequences", world, (long long)o.batch / world);
                printf("\n");
            }
            fflush(stdout);
        }
        if (o.steps > 0) rc = train(ctx, &o, &c, &m, opt);
    }
    /* sharded: every rank's share of Adam's state to rank 0 first */
    if (rc == 0 && o.save && cg_dist_gather_optim(cli_dist, opt) != CG_OK)
        cli_die("saving %s: %s", o.save, cg_last_error(ctx));
    if (rc == 0 && o.save && rank == 0) save(m.all, opt, &o, &c);
    if (rc == 0 && o.sample > 0 && rank == 0) rc = sample(ctx, &o, &c, &m);
    cg_optim_free(opt);
    if (rc != 0) cg_dist_abort(cli_dist, rc); /* this rank alone failed: end the job */
    cli_dist_end();
    cg_module_free(m.all);
    cg_ctx_free(ctx);
    cg_checkpoint_extra_clear(&ex);
    free(c.ids);
    return rc;
}
