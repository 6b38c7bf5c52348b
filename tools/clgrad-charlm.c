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
    const char *text, *arch, *backend, *device, *prompt;
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
        "  --steps N            training steps (default 500)\n"
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
        "other:\n"
        "  -s, --seed S         seed of the context's RNG (default 1)\n"
        CLI_HELP_DEVICE
        CLI_HELP_COMMON);
}

enum {
    OPT_TEXT = CLI_OPT_TOOL, OPT_ARCH, OPT_PROMPT, OPT_EMBED, OPT_HIDDEN, OPT_LAYERS,
    OPT_D_MODEL, OPT_HEADS, OPT_BLOCKS, OPT_SEQ, OPT_STEPS, OPT_PRINT_EVERY, OPT_SAMPLE,
    OPT_CLIP, OPT_DROPOUT, OPT_TEMPERATURE
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
    while ((c = cli_getopt(argc, argv, "hb:l:s:t:", long_options)) != -1) {
        const char *a = cli_optname(), *v = optarg;
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
        case OPT_STEPS: o->steps = (int)cli_int(a, v, 0, 100000000); break;
        case OPT_PRINT_EVERY: o->print_every = (int)cli_int(a, v, 1, 100000000); break;
        case OPT_SAMPLE: o->sample = (int)cli_int(a, v, 0, 100000000); break;
        case 's': o->seed = (uint64_t)cli_int(a, v, 0, INT64_MAX); break;
        case 'l': o->lr = (float)cli_double(a, v, 0, 1e3); break;
        case OPT_CLIP: o->clip = (float)cli_double(a, v, 0, 1e12); break;
        case OPT_DROPOUT: o->dropout = (float)cli_double(a, v, 0, 0.999); break;
        case OPT_TEMPERATURE: o->temperature = (float)cli_double(a, v, 0, 1e3); break;
        }
    }
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
};

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
    bool seen[256] = {0};
    for (size_t i = 0; i < n; i++) seen[buf[i]] = true;
    c->vocab = 0;
    for (int b = 0; b < 256; b++) {
        c->index[b] = seen[b] ? c->vocab : -1;
        if (seen[b]) c->chars[c->vocab++] = (unsigned char)b;
    }
    c->n = (int64_t)n;
    c->ids = malloc((n ? n : 1) * sizeof *c->ids);
    if (!c->ids) {
        free(buf);
        fprintf(stderr, "clgrad-charlm: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) c->ids[i] = (float)c->index[buf[i]];
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
        ids[n++] = c->ids[0];
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

static int train(cg_ctx *ctx, const struct options *o, const struct corpus *c, struct model *m)
{
    const int64_t T = o->seq, V = c->vocab;
    /* Under mpirun every rank draws the same global batch of --batch
     * windows and trains on its slice (rows rank * B .. of them). */
    const int rank = cg_dist_rank(cli_dist), world = cg_dist_world_size(cli_dist);
    const int64_t G = o->batch, B = G / world;
    cg_optim *opt = cg_adam(m->all, o->lr);
    float *x = malloc((size_t)(G * T) * sizeof *x), *y = malloc((size_t)(G * T) * sizeof *y);
    if (!opt || !x || !y) {
        fprintf(stderr, "clgrad-charlm: %s\n", opt ? "out of memory" : cg_last_error(ctx));
        cg_optim_free(opt);
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
    cg_optim_free(opt);
    free(x);
    free(y);
    return rc;
}

int main(int argc, char **argv)
{
    cli_prog = "clgrad-charlm";
    cli_dist_rank_from_env();
    struct options o;
    parse_args(argc, argv, &o);
    int rc;
    struct corpus c = {0};
    if (load_text(o.text, &c)) return 1;
    if (c.n < o.seq + 2) {
        fprintf(stderr, "clgrad-charlm: %s has %lld characters; --seq %lld needs at least %lld\n",
                o.text, (long long)c.n, (long long)o.seq, (long long)o.seq + 2);
        free(c.ids);
        return 1;
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
    rc = build_model(ctx, &o, c.vocab, &m);
    if (rc == 0 && cg_dist_attach(cli_dist, m.all) != CG_OK) cli_die("%s", cg_last_error(ctx));
    if (rc == 0 && rank == 0) {
        const struct cg_device_info *dev = cg_ctx_device(ctx);
        printf("clgrad-charlm: %s on %s (%s), %lld characters, vocabulary %d, %lld parameters\n",
               o.arch, cg_ctx_backend_name(ctx), dev ? dev->name : "?", (long long)c.n, c.vocab,
               (long long)cg_module_numel(m.all));
        printf("batch %lld x %lld tokens, Adam lr %g, clip %g, %d steps", (long long)o.batch,
               (long long)o.seq, (double)o.lr, (double)o.clip, o.steps);
        if (world > 1) printf("; %d ranks x %lld sequences", world, (long long)o.batch / world);
        printf("\n");
        fflush(stdout);
    }
    if (rc == 0) rc = train(ctx, &o, &c, &m);
    if (rc == 0 && o.sample > 0 && rank == 0) rc = sample(ctx, &o, &c, &m);
    if (rc != 0) cg_dist_abort(cli_dist, rc); /* this rank alone failed: end the job */
    cli_dist_end();
    cg_module_free(m.all);
    cg_ctx_free(ctx);
    free(c.ids);
    return rc;
}
