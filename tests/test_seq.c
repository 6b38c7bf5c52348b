/*
 * tests/test_seq.c — sequence models: Embedding, RNN/LSTM/GRU, LayerNorm,
 * multi-head self-attention, the Transformer block; on the backend under
 * test.
 *
 *   - forward values against float64 host references written here from the
 *     PyTorch docs' equations (torch.nn.LSTM / GRU / RNN / LayerNorm /
 *     MultiheadAttention), with the module's own parameters;
 *   - finite-difference gradient checks (gradcheck.h) of every layer
 *     through several time steps, initial states, two layers, the causal
 *     mask;
 *   - the causal mask never lets a position see a later one;
 *   - opencl against cpu (a second, cpu context) on random inputs;
 *   - learnability: an LSTM and a GRU learn to copy a sequence after a
 *     delay, a one-block Transformer learns to reverse a sequence, each to
 *     a stated accuracy within a fixed number of steps.
 */
#include <math.h>
#include <string.h>

#include "gradcheck.h"
#include "harness.h"

/* ---- helpers ---------------------------------------------------------------- */

static float *fetch(const cg_tensor *t)
{
    assert_non_null(t);
    int64_t n = cg_tensor_numel(t);
    float *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
    assert_non_null(h);
    assert_int_equal(cg_tensor_to_host(t, h, n), CG_OK);
    return h;
}

static double *fetch_d(const cg_tensor *t)
{
    float *f = fetch(t);
    int64_t n = cg_tensor_numel(t);
    double *d = malloc((size_t)(n > 0 ? n : 1) * sizeof *d);
    assert_non_null(d);
    for (int64_t i = 0; i < n; i++) d[i] = f[i];
    free(f);
    return d;
}

static cg_tensor *param(cg_module *m, const char *name)
{
    cg_tensor *p = cg_module_parameter(m, name);
    if (!p) fail_msg("no parameter \"%s\"", name);
    return p;
}

/* Overwrites every parameter of m with uniform values in [lo, hi). */
static void randomize(cg_module *m, uint64_t *rng, float lo, float hi)
{
    struct cg_named_tensor ps[64];
    int n = cg_module_parameters(m, ps, 64);
    assert_true(n <= 64);
    for (int i = 0; i < n; i++) {
        int64_t k = cg_tensor_numel(ps[i].tensor);
        float *v = malloc((size_t)k * sizeof *v);
        th_fill_uniform(rng, v, k, lo, hi);
        assert_int_equal(cg_tensor_set_data(ps[i].tensor, v, k), CG_OK);
        free(v);
    }
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

/* ---- float64 references of torch.nn.RNN / LSTM / GRU --------------------------
 * Written from the torch.nn docs' equations, independently of src/nn/rnn.c:
 *   LSTM: i,f,g,o = rows [0,H), [H,2H), [2H,3H), [3H,4H) of W_ih x + b_ih + W_hh h + b_hh
 *         c' = sigma(f) c + sigma(i) tanh(g);  h' = sigma(o) tanh(c')
 *   GRU:  r,z,n = rows [0,H), [H,2H), [2H,3H)
 *         r = sigma(W_ir x + b_ir + W_hr h + b_hr), z likewise,
 *         n = tanh(W_in x + b_in + r (W_hn h + b_hn)), h' = (1 - z) n + z h
 *   RNN:  h' = tanh(W_ih x + b_ih + W_hh h + b_hh)
 * x: (T, B, in) time-major; h0, c0: (L, B, H) or NULL; out: (T, B, H);
 * hn, cn: (L, B, H). */
struct ref_rnn {
    enum cg_rnn_mode mode;
    int L;
    int64_t in, H, T, B;
    double *w_ih[4], *w_hh[4], *b_ih[4], *b_hh[4]; /* per layer */
};

static void ref_rnn_load(struct ref_rnn *r, cg_module *m)
{
    for (int k = 0; k < r->L; k++) {
        char n[64];
        snprintf(n, sizeof n, "weight_ih_l%d", k);
        r->w_ih[k] = fetch_d(param(m, n));
        snprintf(n, sizeof n, "weight_hh_l%d", k);
        r->w_hh[k] = fetch_d(param(m, n));
        snprintf(n, sizeof n, "bias_ih_l%d", k);
        r->b_ih[k] = fetch_d(param(m, n));
        snprintf(n, sizeof n, "bias_hh_l%d", k);
        r->b_hh[k] = fetch_d(param(m, n));
    }
}

static void ref_rnn_free(struct ref_rnn *r)
{
    for (int k = 0; k < r->L; k++) {
        free(r->w_ih[k]);
        free(r->w_hh[k]);
        free(r->b_ih[k]);
        free(r->b_hh[k]);
    }
}

static void ref_rnn_run(const struct ref_rnn *r, const double *x, const double *h0,
                        const double *c0, double *out, double *hn, double *cn)
{
    const int64_t H = r->H, B = r->B, T = r->T;
    const int G = r->mode == CG_RNN_LSTM ? 4 : r->mode == CG_RNN_GRU ? 3 : 1;
    double *layer_in = malloc((size_t)(T * B * (r->in > H ? r->in : H)) * sizeof(double));
    double *layer_out = malloc((size_t)(T * B * H) * sizeof(double));
    double *gi = malloc((size_t)(G * H) * sizeof(double)), *gh = malloc((size_t)(G * H) * sizeof(double));
    memcpy(layer_in, x, (size_t)(T * B * r->in) * sizeof(double));
    int64_t in = r->in;
    for (int k = 0; k < r->L; k++) {
        for (int64_t b = 0; b < B; b++) {
            double h[64], c[64];
            assert_true(H <= 64);
            for (int64_t j = 0; j < H; j++) {
                h[j] = h0 ? h0[(k * B + b) * H + j] : 0.0;
                c[j] = c0 ? c0[(k * B + b) * H + j] : 0.0;
            }
            for (int64_t t = 0; t < T; t++) {
                const double *xt = layer_in + (t * B + b) * in;
                for (int64_t j = 0; j < G * H; j++) {
                    double si = r->b_ih[k][j], sh = r->b_hh[k][j];
                    for (int64_t q = 0; q < in; q++) si += r->w_ih[k][j * in + q] * xt[q];
                    for (int64_t q = 0; q < H; q++) sh += r->w_hh[k][j * H + q] * h[q];
                    gi[j] = si;
                    gh[j] = sh;
                }
                for (int64_t j = 0; j < H; j++) {
                    if (r->mode == CG_RNN_TANH) {
                        h[j] = tanh(gi[j] + gh[j]);
                    } else if (r->mode == CG_RNN_LSTM) {
                        double ig = sigm(gi[j] + gh[j]);
                        double fg = sigm(gi[H + j] + gh[H + j]);
                        double gg = tanh(gi[2 * H + j] + gh[2 * H + j]);
                        double og = sigm(gi[3 * H + j] + gh[3 * H + j]);
                        c[j] = fg * c[j] + ig * gg;
                        h[j] = og * tanh(c[j]);
                    } else {
                        double rg = sigm(gi[j] + gh[j]);
                        double zg = sigm(gi[H + j] + gh[H + j]);
                        double ng = tanh(gi[2 * H + j] + rg * gh[2 * H + j]);
                        h[j] = (1 - zg) * ng + zg * h[j];
                    }
                }
                for (int64_t j = 0; j < H; j++) layer_out[(t * B + b) * H + j] = h[j];
            }
            for (int64_t j = 0; j < H; j++) {
                hn[(k * B + b) * H + j] = h[j];
                if (cn) cn[(k * B + b) * H + j] = c[j];
            }
        }
        memcpy(layer_in, layer_out, (size_t)(T * B * H) * sizeof(double));
        in = H;
    }
    memcpy(out, layer_out, (size_t)(T * B * H) * sizeof(double));
    free(layer_in);
    free(layer_out);
    free(gi);
    free(gh);
}

/* ---- Embedding -------------------------------------------------------------- */

static cg_tensor *f_module(cg_tensor **in, void *user) { return cg_module_forward(user, in[0]); }

static void test_embedding(void **state)
{
    cg_ctx *ctx = *state;
    cg_module *e = cg_embedding_module(ctx, 7, 5);
    assert_non_null(e);
    struct cg_named_tensor ps[2];
    assert_int_equal(cg_module_parameters(e, ps, 2), 1);
    assert_string_equal(ps[0].name, "weight");
    assert_int_equal(cg_tensor_dim(ps[0].tensor, 0), 7);
    assert_int_equal(cg_tensor_dim(ps[0].tensor, 1), 5);
    const float idx[6] = {3, 0, 6, 3, 1, 5};
    cg_tensor *ids = gc_const(ctx, CG_SHAPE(2, 3), idx);
    cg_scope_begin(ctx);
    cg_tensor *y = cg_module_forward(e, ids);
    assert_non_null(y);
    assert_int_equal(cg_tensor_ndim(y), 3);
    assert_int_equal(cg_tensor_dim(y, 2), 5);
    float *w = fetch(ps[0].tensor), *yh = fetch(y);
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 5; j++) assert_true(yh[i * 5 + j] == w[(int)idx[i] * 5 + j]);
    free(w);
    free(yh);
    /* out of range */
    const float bad[2] = {2, 7};
    cg_tensor *b = cg_tensor_from_host(ctx, CG_SHAPE(2), bad);
    assert_null(cg_module_forward(e, b));
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    /* gradient w.r.t. the table (repeated index 3 adds up) */
    cg_tensor *wt = param(e, "weight");
    cg_tensor *win[2] = {ids, wt};
    gc_check(ctx, "embedding weight", f_module, e, 2, win, NULL);
    cg_tensor_free(ids);
    cg_module_free(e);
}

static void test_positional_embedding(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 11;
    cg_module *p = cg_positional_embedding_module(ctx, 6, 3);
    assert_non_null(p);
    cg_tensor *x = gc_input(ctx, &rng, CG_SHAPE(2, 4, 3), -1, 1);
    cg_scope_begin(ctx);
    cg_tensor *y = cg_module_forward(p, x);
    float *xh = fetch(x), *yh = fetch(y), *w = fetch(param(p, "weight"));
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 3; j++)
                assert_float_equal(yh[(b * 4 + t) * 3 + j], xh[(b * 4 + t) * 3 + j] + w[t * 3 + j], 1e-6);
    free(xh);
    free(yh);
    free(w);
    cg_tensor *too_long = cg_tensor_zeros(ctx, CG_SHAPE(1, 7, 3));
    assert_null(cg_module_forward(p, too_long));
    th_assert_error_contains(ctx, "T <= 6");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    cg_tensor *in[2] = {x, param(p, "weight")};
    gc_check(ctx, "positional embedding", f_module, p, 2, in, NULL);
    cg_tensor_free(x);
    cg_module_free(p);
}

/* ---- RNN / LSTM / GRU: names, init, forward vs reference --------------------- */

static void test_rnn_params(void **state)
{
    cg_ctx *ctx = *state;
    const enum cg_rnn_mode modes[3] = {CG_RNN_TANH, CG_RNN_LSTM, CG_RNN_GRU};
    const int gates[3] = {1, 4, 3};
    for (int mi = 0; mi < 3; mi++) {
        cg_module *m = cg_recurrent_module(ctx, modes[mi], 5, 9, 2, true, false);
        assert_non_null(m);
        struct cg_named_tensor ps[16];
        assert_int_equal(cg_module_parameters(m, ps, 16), 8);
        const char *names[8] = {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                                "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1"};
        const int64_t cols[8] = {5, 9, 0, 0, 9, 9, 0, 0};
        double bound = 1.0 / sqrt(9.0);
        for (int i = 0; i < 8; i++) {
            assert_string_equal(ps[i].name, names[i]);
            assert_int_equal(cg_tensor_dim(ps[i].tensor, 0), gates[mi] * 9);
            assert_int_equal(cg_tensor_ndim(ps[i].tensor), cols[i] ? 2 : 1);
            if (cols[i]) assert_int_equal(cg_tensor_dim(ps[i].tensor, 1), cols[i]);
            float *v = fetch(ps[i].tensor);
            double lo = 1, hi = -1;
            for (int64_t j = 0; j < cg_tensor_numel(ps[i].tensor); j++) {
                assert_true(fabs(v[j]) <= bound);
                lo = fmin(lo, v[j]);
                hi = fmax(hi, v[j]);
            }
            if (cg_tensor_numel(ps[i].tensor) >= 36) /* spread over the range */
                assert_true(lo < -0.5 * bound && hi > 0.5 * bound);
            free(v);
        }
        cg_module_free(m);
    }
    cg_module *nb = cg_recurrent_module(ctx, CG_RNN_GRU, 3, 4, 1, false, true);
    assert_int_equal(cg_module_parameters(nb, NULL, 0), 2);
    cg_module_free(nb);
    assert_null(cg_recurrent_module(ctx, CG_RNN_LSTM, 3, 0, 1, true, false));
    th_assert_error_contains(ctx, "hidden_size");
    cg_ctx_clear_error(ctx);
}

/* Forward against ref_rnn_run, with and without batch_first and initial
 * states, two layers. */
static void check_rnn_forward(cg_ctx *ctx, enum cg_rnn_mode mode, bool batch_first, bool states)
{
    const int L = 2;
    const int64_t IN = 3, H = 5, T = 6, B = 2;
    uint64_t rng = 77 + (uint64_t)mode * 10 + batch_first * 2 + states;
    cg_module *m = cg_recurrent_module(ctx, mode, IN, H, L, true, batch_first);
    assert_non_null(m);
    randomize(m, &rng, -0.7f, 0.7f);
    float xf[6 * 2 * 3], hf[2 * 2 * 5], cf[2 * 2 * 5];
    th_fill_uniform(&rng, xf, T * B * IN, -1.5f, 1.5f);
    th_fill_uniform(&rng, hf, L * B * H, -1, 1);
    th_fill_uniform(&rng, cf, L * B * H, -1, 1);
    /* the reference is time-major: x_tm[t][b] */
    double x_tm[6 * 2 * 3], h0[20], c0[20];
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < IN; j++)
                x_tm[(t * B + b) * IN + j] =
                    xf[batch_first ? (b * T + t) * IN + j : (t * B + b) * IN + j];
    for (int i = 0; i < L * B * H; i++) {
        h0[i] = hf[i];
        c0[i] = cf[i];
    }
    struct ref_rnn ref = {mode, L, IN, H, T, B, {0}, {0}, {0}, {0}};
    ref_rnn_load(&ref, m);
    double out[6 * 2 * 5], hn[20], cn[20];
    ref_rnn_run(&ref, x_tm, states ? h0 : NULL, states ? c0 : NULL, out, hn,
                mode == CG_RNN_LSTM ? cn : NULL);
    ref_rnn_free(&ref);

    cg_scope_begin(ctx);
    cg_tensor *x = batch_first ? cg_tensor_from_host(ctx, CG_SHAPE(B, T, IN), xf)
                               : cg_tensor_from_host(ctx, CG_SHAPE(T, B, IN), xf);
    cg_tensor *h0t = states ? cg_tensor_from_host(ctx, CG_SHAPE(L, B, H), hf) : NULL;
    cg_tensor *c0t = states && mode == CG_RNN_LSTM ? cg_tensor_from_host(ctx, CG_SHAPE(L, B, H), cf) : NULL;
    cg_tensor *hnt = NULL, *cnt = NULL;
    cg_tensor *y = th_rnn_run(m, x, h0t, c0t, &hnt, mode == CG_RNN_LSTM ? &cnt : NULL);
    if (!y) fail_msg("rnn forward: %s", cg_last_error(ctx));
    assert_int_equal(cg_tensor_ndim(y), 3);
    assert_int_equal(cg_tensor_dim(y, batch_first ? 0 : 1), B);
    assert_int_equal(cg_tensor_dim(y, batch_first ? 1 : 0), T);
    assert_int_equal(cg_tensor_dim(y, 2), H);
    float *yh = fetch(y);
    double want[6 * 2 * 5];
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < H; j++)
                want[batch_first ? (b * T + t) * H + j : (t * B + b) * H + j] = out[(t * B + b) * H + j];
    char what[64];
    snprintf(what, sizeof what, "%s output (batch_first %d, states %d)",
             cg_module_type(m), batch_first, states);
    th_assert_close(yh, want, T * B * H, 1e-4, 1e-5, what);
    free(yh);
    float *hh = fetch(hnt);
    th_assert_close(hh, hn, L * B * H, 1e-4, 1e-5, "h_n");
    free(hh);
    if (mode == CG_RNN_LSTM) {
        float *ch = fetch(cnt);
        th_assert_close(ch, cn, L * B * H, 1e-4, 1e-5, "c_n");
        free(ch);
    }
    cg_scope_end(ctx);
    cg_module_free(m);
}

static void test_rnn_forward_reference(void **state)
{
    cg_ctx *ctx = *state;
    const enum cg_rnn_mode modes[3] = {CG_RNN_TANH, CG_RNN_LSTM, CG_RNN_GRU};
    for (int mi = 0; mi < 3; mi++)
        for (int bf = 0; bf < 2; bf++)
            for (int st = 0; st < 2; st++) check_rnn_forward(ctx, modes[mi], bf, st);
}

/* Unbatched (T, in) input equals the batched form with B = 1; bad shapes
 * are reported. */
static void test_rnn_unbatched_and_errors(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 5;
    cg_module *m = cg_lstm_module(ctx, 3, 4, 2, true);
    float xf[5 * 3], hf[2 * 4], cf[2 * 4];
    th_fill_uniform(&rng, xf, 15, -1, 1);
    th_fill_uniform(&rng, hf, 8, -1, 1);
    th_fill_uniform(&rng, cf, 8, -1, 1);
    cg_scope_begin(ctx);
    cg_tensor *hn1, *cn1, *hn2, *cn2;
    cg_tensor *y1 = th_rnn_run(m, cg_tensor_from_host(ctx, CG_SHAPE(5, 3), xf),
                                   cg_tensor_from_host(ctx, CG_SHAPE(2, 4), hf),
                                   cg_tensor_from_host(ctx, CG_SHAPE(2, 4), cf), &hn1, &cn1);
    cg_tensor *y2 = th_rnn_run(m, cg_tensor_from_host(ctx, CG_SHAPE(1, 5, 3), xf),
                                   cg_tensor_from_host(ctx, CG_SHAPE(2, 1, 4), hf),
                                   cg_tensor_from_host(ctx, CG_SHAPE(2, 1, 4), cf), &hn2, &cn2);
    assert_non_null(y1);
    assert_non_null(y2);
    assert_int_equal(cg_tensor_ndim(y1), 2);
    assert_int_equal(cg_tensor_ndim(hn1), 2);
    assert_int_equal(cg_tensor_ndim(cn1), 2);
    float *a = fetch(y1), *b = fetch(y2);
    th_assert_close_f(a, b, 20, 1e-6, 1e-7, "unbatched output");
    free(a);
    free(b);
    a = fetch(cn1);
    b = fetch(cn2);
    th_assert_close_f(a, b, 8, 1e-6, 1e-7, "unbatched c_n");
    free(a);
    free(b);

    cg_tensor *x = cg_tensor_zeros(ctx, CG_SHAPE(2, 5, 3));
    assert_null(th_rnn_run(m, cg_tensor_zeros(ctx, CG_SHAPE(2, 5, 4)), NULL, NULL, NULL, NULL));
    th_assert_error_contains(ctx, "with 3 features");
    cg_ctx_clear_error(ctx);
    assert_null(th_rnn_run(m, x, cg_tensor_zeros(ctx, CG_SHAPE(2, 5, 4)), NULL, NULL, NULL));
    th_assert_error_contains(ctx, "h0");
    cg_ctx_clear_error(ctx);
    cg_module *g = cg_gru_module(ctx, 3, 4, 1, true);
    assert_null(th_rnn_run(g, x, NULL, cg_tensor_zeros(ctx, CG_SHAPE(1, 2, 4)), NULL, NULL));
    th_assert_error_contains(ctx, "c0 is only for an LSTM");
    cg_ctx_clear_error(ctx);
    cg_module *lin = cg_linear_module(ctx, 3, 3, true);
    assert_null(th_rnn_run(lin, x, cg_tensor_zeros(ctx, CG_SHAPE(1, 2, 3)), NULL, NULL, NULL));
    th_assert_error_contains(ctx, "a Linear takes no state");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    cg_module_free(lin);
    cg_module_free(g);
    cg_module_free(m);
}

/* ---- RNN gradient checks -------------------------------------------------------
 * in[0] x, in[1] h0, in[2] c0 (LSTM), then the module's parameters. The
 * checked output concatenates y, h_n and c_n, so every path is weighted. */
struct rnn_gc {
    cg_module *m;
    bool lstm;
};

static cg_tensor *f_rnn(cg_tensor **in, void *user)
{
    struct rnn_gc *u = user;
    cg_tensor *hn = NULL, *cn = NULL;
    cg_tensor *y = th_rnn_run(u->m, in[0], in[1], u->lstm ? in[2] : NULL, &hn,
                                  u->lstm ? &cn : NULL);
    cg_tensor *parts[3] = {cg_reshape(y, CG_SHAPE(-1)), cg_reshape(hn, CG_SHAPE(-1)),
                           u->lstm ? cg_reshape(cn, CG_SHAPE(-1)) : NULL};
    return cg_cat(u->lstm ? 3 : 2, parts, 0);
}

static void check_rnn_grad(cg_ctx *ctx, enum cg_rnn_mode mode, bool batch_first, int L,
                           int64_t T)
{
    const int64_t IN = 3, H = 3, B = 2;
    uint64_t rng = 1000 + (uint64_t)mode;
    cg_module *m = cg_recurrent_module(ctx, mode, IN, H, L, true, batch_first);
    assert_non_null(m);
    randomize(m, &rng, -0.8f, 0.8f);
    struct rnn_gc u = {m, mode == CG_RNN_LSTM};
    cg_tensor *in[3 + 4 * 2];
    int n = 0;
    in[n++] = batch_first ? gc_input(ctx, &rng, CG_SHAPE(B, T, IN), -1, 1)
                          : gc_input(ctx, &rng, CG_SHAPE(T, B, IN), -1, 1);
    in[n++] = gc_input(ctx, &rng, CG_SHAPE(L, B, H), -1, 1);
    if (mode == CG_RNN_LSTM) in[n++] = gc_input(ctx, &rng, CG_SHAPE(L, B, H), -1, 1);
    int n_own = n;
    struct cg_named_tensor ps[8];
    int np = cg_module_parameters(m, ps, 8);
    for (int i = 0; i < np; i++) in[n++] = ps[i].tensor;
    char what[64];
    snprintf(what, sizeof what, "%s L=%d T=%lld batch_first=%d", cg_module_type(m), L,
             (long long)T, batch_first);
    gc_check(ctx, what, f_rnn, &u, n, in, NULL);
    gc_free_inputs(n_own, in);
    cg_module_free(m);
}

static void test_rnn_grad(void **state)
{
    cg_ctx *ctx = *state;
    check_rnn_grad(ctx, CG_RNN_TANH, false, 2, 4);
    check_rnn_grad(ctx, CG_RNN_TANH, true, 1, 3);
}

static void test_lstm_grad(void **state)
{
    cg_ctx *ctx = *state;
    check_rnn_grad(ctx, CG_RNN_LSTM, true, 2, 4);
    check_rnn_grad(ctx, CG_RNN_LSTM, false, 1, 5);
}

static void test_gru_grad(void **state)
{
    cg_ctx *ctx = *state;
    check_rnn_grad(ctx, CG_RNN_GRU, false, 2, 4);
    check_rnn_grad(ctx, CG_RNN_GRU, true, 1, 5);
}

/* ---- LayerNorm ------------------------------------------------------------------ */

static void test_layernorm(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 31;
    cg_module *ln = cg_layernorm_module(ctx, CG_SHAPE(3, 4));
    assert_non_null(ln);
    struct cg_named_tensor ps[2];
    assert_int_equal(cg_module_parameters(ln, ps, 2), 2);
    assert_string_equal(ps[0].name, "weight");
    assert_string_equal(ps[1].name, "bias");
    float *w0 = fetch(ps[0].tensor), *b0 = fetch(ps[1].tensor);
    for (int i = 0; i < 12; i++) assert_true(w0[i] == 1.0f && b0[i] == 0.0f);
    free(w0);
    free(b0);
    randomize(ln, &rng, -1.5f, 1.5f);
    cg_tensor *x = gc_input(ctx, &rng, CG_SHAPE(5, 3, 4), -2, 3);
    /* reference: torch.nn.LayerNorm docs, biased variance, eps 1e-5 */
    double *xd = fetch_d(x), *w = fetch_d(ps[0].tensor), *b = fetch_d(ps[1].tensor);
    double want[60];
    for (int r = 0; r < 5; r++) {
        double mu = 0, var = 0;
        for (int j = 0; j < 12; j++) mu += xd[r * 12 + j] / 12;
        for (int j = 0; j < 12; j++) var += (xd[r * 12 + j] - mu) * (xd[r * 12 + j] - mu) / 12;
        for (int j = 0; j < 12; j++)
            want[r * 12 + j] = (xd[r * 12 + j] - mu) / sqrt(var + 1e-5) * w[j] + b[j];
    }
    cg_scope_begin(ctx);
    float *y = fetch(cg_module_forward(ln, x));
    th_assert_close(y, want, 60, 1e-4, 1e-5, "layernorm");
    free(y);
    assert_null(cg_module_forward(ln, cg_tensor_zeros(ctx, CG_SHAPE(5, 4, 3))));
    th_assert_error_contains(ctx, "must end with those dims");
    cg_ctx_clear_error(ctx);
    cg_scope_end(ctx);
    free(xd);
    free(w);
    free(b);
    cg_tensor *in[3] = {x, ps[0].tensor, ps[1].tensor};
    gc_check(ctx, "layernorm", f_module, ln, 3, in, NULL);
    cg_tensor_free(x);
    cg_module_free(ln);
}

/* ---- attention -------------------------------------------------------------------- */

/* Float64 torch.nn.MultiheadAttention self-attention (batch_first):
 * x (B, T, E), in_w (3E, E), in_b (3E), out_w (E, E), out_b (E) -> y. */
static void ref_mha(const double *x, const double *in_w, const double *in_b,
                    const double *out_w, const double *out_b, int64_t B, int64_t T,
                    int64_t E, int64_t nh, bool causal, double *y)
{
    int64_t d = E / nh;
    double *qkv = malloc((size_t)(B * T * 3 * E) * sizeof(double));
    double *o = malloc((size_t)(B * T * E) * sizeof(double));
    for (int64_t r = 0; r < B * T; r++)
        for (int64_t j = 0; j < 3 * E; j++) {
            double s = in_b[j];
            for (int64_t q = 0; q < E; q++) s += in_w[j * E + q] * x[r * E + q];
            qkv[r * 3 * E + j] = s;
        }
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < nh; h++)
            for (int64_t i = 0; i < T; i++) {
                double sc[32], mx = -INFINITY, sum = 0;
                assert_true(T <= 32);
                int64_t last = causal ? i : T - 1;
                for (int64_t j = 0; j <= last; j++) {
                    double s = 0;
                    for (int64_t q = 0; q < d; q++)
                        s += qkv[(b * T + i) * 3 * E + h * d + q] *
                             qkv[(b * T + j) * 3 * E + E + h * d + q];
                    sc[j] = s / sqrt((double)d);
                    mx = fmax(mx, sc[j]);
                }
                for (int64_t j = 0; j <= last; j++) sum += (sc[j] = exp(sc[j] - mx));
                for (int64_t q = 0; q < d; q++) {
                    double s = 0;
                    for (int64_t j = 0; j <= last; j++)
                        s += sc[j] / sum * qkv[(b * T + j) * 3 * E + 2 * E + h * d + q];
                    o[(b * T + i) * E + h * d + q] = s;
                }
            }
    for (int64_t r = 0; r < B * T; r++)
        for (int64_t j = 0; j < E; j++) {
            double s = out_b[j];
            for (int64_t q = 0; q < E; q++) s += out_w[j * E + q] * o[r * E + q];
            y[r * E + j] = s;
        }
    free(qkv);
    free(o);
}

static void test_attention_params(void **state)
{
    cg_ctx *ctx = *state;
    cg_module *a = cg_multihead_attention_module(ctx, 8, 2, 0.0f, true);
    assert_non_null(a);
    struct cg_named_tensor ps[4];
    assert_int_equal(cg_module_parameters(a, ps, 4), 4);
    assert_string_equal(ps[0].name, "in_proj_weight");
    assert_string_equal(ps[1].name, "in_proj_bias");
    assert_string_equal(ps[2].name, "out_proj.weight");
    assert_string_equal(ps[3].name, "out_proj.bias");
    assert_int_equal(cg_tensor_dim(ps[0].tensor, 0), 24);
    assert_int_equal(cg_tensor_dim(ps[0].tensor, 1), 8);
    float *w = fetch(ps[0].tensor), *b = fetch(ps[1].tensor), *ob = fetch(ps[3].tensor);
    double bound = sqrt(6.0 / 32.0); /* xavier_uniform_ of (24, 8) */
    for (int i = 0; i < 24 * 8; i++) assert_true(fabs(w[i]) <= bound);
    for (int i = 0; i < 24; i++) assert_true(b[i] == 0.0f);
    for (int i = 0; i < 8; i++) assert_true(ob[i] == 0.0f);
    free(w);
    free(b);
    free(ob);
    cg_module_free(a);
    assert_null(cg_multihead_attention_module(ctx, 10, 3, 0.0f, true));
    th_assert_error_contains(ctx, "multiple of num_heads");
    cg_ctx_clear_error(ctx);

    cg_module *blk = cg_transformer_block_module(ctx, 8, 2, 16, 0.1f, true);
    assert_non_null(blk);
    struct cg_named_tensor bp[16];
    assert_int_equal(cg_module_parameters(blk, bp, 16), 12);
    const char *names[12] = {"self_attn.in_proj_weight", "self_attn.in_proj_bias",
                             "self_attn.out_proj.weight", "self_attn.out_proj.bias",
                             "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                             "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"};
    for (int i = 0; i < 12; i++) assert_string_equal(bp[i].name, names[i]);
    cg_module_free(blk);
}

static void test_attention_forward_reference(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t B = 2, T = 5, E = 6, NH = 3;
    for (int causal = 0; causal < 2; causal++) {
        uint64_t rng = 300 + (uint64_t)causal;
        cg_module *a = cg_multihead_attention_module(ctx, E, NH, 0.0f, true);
        randomize(a, &rng, -0.6f, 0.6f);
        float xf[2 * 5 * 6];
        th_fill_uniform(&rng, xf, B * T * E, -1.5f, 1.5f);
        double xd[60], want[60];
        for (int i = 0; i < 60; i++) xd[i] = xf[i];
        double *iw = fetch_d(param(a, "in_proj_weight")), *ib = fetch_d(param(a, "in_proj_bias"));
        double *ow = fetch_d(param(a, "out_proj.weight")), *ob = fetch_d(param(a, "out_proj.bias"));
        ref_mha(xd, iw, ib, ow, ob, B, T, E, NH, causal, want);
        free(iw);
        free(ib);
        free(ow);
        free(ob);
        cg_scope_begin(ctx);
        cg_tensor *y = th_self_attention(a, cg_tensor_from_host(ctx, CG_SHAPE(B, T, E), xf), causal);
        if (!y) fail_msg("attention: %s", cg_last_error(ctx));
        float *yh = fetch(y);
        th_assert_close(yh, want, B * T * E, 1e-4, 1e-5, causal ? "causal attention" : "attention");
        free(yh);
        cg_scope_end(ctx);
        cg_module_free(a);
    }
}

/* Perturbing x at position p changes no output at positions < p under the
 * causal mask (bit for bit: the masked weights are exactly 0), while it
 * does change outputs at positions >= p, and without the mask, all. */
static void test_causal_mask_never_sees_future(void **state)
{
    cg_ctx *ctx = *state;
    const int64_t B = 2, T = 6, E = 8;
    uint64_t rng = 404;
    cg_module *blk = cg_transformer_block_module(ctx, E, 2, 16, 0.0f, true);
    cg_module *a = cg_module_child(blk, 0);
    randomize(blk, &rng, -0.5f, 0.5f);
    float x[2 * 6 * 8], xp[2 * 6 * 8];
    th_fill_uniform(&rng, x, B * T * E, -1, 1);
    for (int64_t p = 1; p < T; p++) {
        memcpy(xp, x, sizeof x);
        for (int64_t b = 0; b < B; b++)
            for (int64_t j = 0; j < E; j++) /* not a constant shift: LayerNorm removes those */
                xp[(b * T + p) * E + j] += (float)th_rand_uniform(&rng, -1, 1);
        for (int which = 0; which < 3; which++) { /* attention causal, block causal, not causal */
            cg_scope_begin(ctx);
            cg_tensor *x0 = cg_tensor_from_host(ctx, CG_SHAPE(B, T, E), x);
            cg_tensor *x1 = cg_tensor_from_host(ctx, CG_SHAPE(B, T, E), xp);
            cg_tensor *y0 = which == 0 ? th_self_attention(a, x0, true)
                          : which == 1 ? cg_module_forward(blk, x0) : th_self_attention(a, x0, false);
            cg_tensor *y1 = which == 0 ? th_self_attention(a, x1, true)
                          : which == 1 ? cg_module_forward(blk, x1) : th_self_attention(a, x1, false);
            float *h0 = fetch(y0), *h1 = fetch(y1);
            for (int64_t b = 0; b < B; b++)
                for (int64_t t = 0; t < T; t++) {
                    double diff = 0;
                    for (int64_t j = 0; j < E; j++)
                        diff = fmax(diff, fabs(h0[(b * T + t) * E + j] - h1[(b * T + t) * E + j]));
                    if (which < 2 && t < p && diff != 0.0)
                        fail_msg("causal %s: output at t=%lld changed by %g when x at %lld changed",
                                 which ? "block" : "attention", (long long)t, diff, (long long)p);
                    if ((which < 2 && t >= p) || which == 2)
                        if (!(diff > 1e-4))
                            fail_msg("output at t=%lld did not change (%g) when x at %lld changed "
                                     "(which %d)", (long long)t, diff, (long long)p, which);
                }
            free(h0);
            free(h1);
            cg_scope_end(ctx);
        }
    }
    cg_module_free(blk);
}

struct attn_gc {
    cg_module *m;
    bool causal;
};

static cg_tensor *f_attn(cg_tensor **in, void *user)
{
    struct attn_gc *u = user;
    return th_self_attention(u->m, in[0], u->causal);
}

static void test_attention_grad(void **state)
{
    cg_ctx *ctx = *state;
    for (int causal = 0; causal < 2; causal++) {
        uint64_t rng = 500 + (uint64_t)causal;
        cg_module *a = cg_multihead_attention_module(ctx, 4, 2, 0.0f, true);
        randomize(a, &rng, -0.8f, 0.8f);
        struct attn_gc u = {a, causal};
        cg_tensor *in[5];
        in[0] = gc_input(ctx, &rng, CG_SHAPE(2, 4, 4), -1, 1);
        struct cg_named_tensor ps[4];
        assert_int_equal(cg_module_parameters(a, ps, 4), 4);
        for (int i = 0; i < 4; i++) in[1 + i] = ps[i].tensor;
        gc_check(ctx, causal ? "causal attention" : "attention", f_attn, &u, 5, in, NULL);
        gc_free_inputs(1, in);
        cg_module_free(a);
    }
}

static void test_transformer_block_grad(void **state)
{
    cg_ctx *ctx = *state;
    for (int causal = 0; causal < 2; causal++) {
        uint64_t rng = 600 + (uint64_t)causal;
        cg_module *blk = cg_transformer_block_module(ctx, 4, 2, 6, 0.0f, causal);
        randomize(blk, &rng, -0.7f, 0.7f);
        cg_tensor *in[13];
        in[0] = gc_input(ctx, &rng, CG_SHAPE(2, 3, 4), -1, 1);
        struct cg_named_tensor ps[12];
        assert_int_equal(cg_module_parameters(blk, ps, 12), 12);
        for (int i = 0; i < 12; i++) in[1 + i] = ps[i].tensor;
        gc_check(ctx, causal ? "causal block" : "block", f_module, blk, 13, in, NULL);
        gc_free_inputs(1, in);
        cg_module_free(blk);
    }
}

/* Dropout in the block: training mode drops (the output differs from eval
 * mode), eval mode is deterministic. */
static void test_transformer_block_dropout(void **state)
{
    cg_ctx *ctx = *state;
    uint64_t rng = 700;
    cg_module *blk = cg_transformer_block_module(ctx, 8, 2, 16, 0.5f, false);
    float x[3 * 4 * 8];
    th_fill_uniform(&rng, x, 96, -1, 1);
    cg_scope_begin(ctx);
    cg_tensor *xt = cg_tensor_from_host(ctx, CG_SHAPE(3, 4, 8), x);
    cg_module_eval(blk);
    float *e1 = fetch(cg_module_forward(blk, xt)), *e2 = fetch(cg_module_forward(blk, xt));
    th_assert_close_f(e1, e2, 96, 0, 0, "eval is deterministic");
    cg_module_train(blk);
    float *t1 = fetch(cg_module_forward(blk, xt));
    double diff = 0;
    for (int i = 0; i < 96; i++) diff = fmax(diff, fabs(t1[i] - e1[i]));
    assert_true(diff > 1e-3);
    free(e1);
    free(e2);
    free(t1);
    cg_scope_end(ctx);
    cg_module_free(blk);
}

/* ---- opencl against cpu ----------------------------------------------------------
 * The same modules (parameters copied by name) and inputs on a second, cpu
 * context; outputs and every parameter gradient must agree. */
static void copy_params(cg_module *dst, cg_module *src)
{
    struct cg_named_tensor ps[32];
    int n = cg_module_parameters(src, ps, 32);
    assert_int_equal(n, cg_module_parameters(dst, NULL, 0));
    for (int i = 0; i < n; i++) {
        float *v = fetch(ps[i].tensor);
        assert_int_equal(cg_tensor_set_data(param(dst, ps[i].name), v, cg_tensor_numel(ps[i].tensor)), CG_OK);
        free(v);
    }
}

/* Runs m on x and backprops sum(y * w) (y: ny values); returns y on host. */
static float *run_and_grad(cg_ctx *ctx, cg_module *m, int nd, const int64_t *xs, const float *x,
                           int64_t ny, const float *w)
{
    cg_scope_begin(ctx);
    cg_tensor *xt = cg_tensor_from_host(ctx, nd, xs, x);
    cg_tensor *y = cg_module_forward(m, xt);
    if (!y) fail_msg("forward: %s", cg_last_error(ctx));
    assert_int_equal(cg_tensor_numel(y), ny);
    cg_tensor *wt = cg_tensor_from_host(ctx, cg_tensor_ndim(y), cg_tensor_shape(y), w);
    struct cg_named_tensor ps[32];
    int n = cg_module_parameters(m, ps, 32);
    for (int i = 0; i < n; i++) cg_tensor_clear_grad(ps[i].tensor);
    assert_int_equal(cg_backward(cg_sum_all(cg_mul(y, wt))), CG_OK);
    float *yh = fetch(y);
    cg_scope_end(ctx);
    return yh;
}

static void test_parity_with_cpu(void **state)
{
    cg_ctx *ctx = *state;
    if (!strcmp(cg_ctx_backend_name(ctx), "cpu")) {
        print_message("backend under test is cpu: parity with cpu is trivially true, skipped\n");
        skip();
    }
    struct cg_ctx_options o = {.backend = "cpu", .seed = 1234};
    cg_ctx *ref;
    assert_int_equal(cg_ctx_create(&ref, &o), CG_OK);
    const int64_t B = 3, T = 7, IN = 6;
    for (int kind = 0; kind < 4; kind++) {
        uint64_t rng = 900 + (uint64_t)kind;
        cg_module *m[2];
        cg_ctx *cs[2] = {ctx, ref};
        for (int c = 0; c < 2; c++) {
            m[c] = kind == 0 ? cg_lstm_module(cs[c], IN, 10, 2, true)
                 : kind == 1 ? cg_gru_module(cs[c], IN, 10, 2, true)
                 : kind == 2 ? cg_rnn_module(cs[c], IN, 10, 1, true)
                             : cg_transformer_block_module(cs[c], IN, 2, 12, 0.0f, true);
            assert_non_null(m[c]);
        }
        copy_params(m[1], m[0]);
        float x[3 * 7 * 6], w[3 * 7 * 10];
        th_fill_uniform(&rng, x, B * T * IN, -1, 1);
        int64_t ny = B * T * (kind == 3 ? IN : 10);
        th_fill_uniform(&rng, w, ny, -1, 1);
        float *y0 = run_and_grad(ctx, m[0], CG_SHAPE(B, T, IN), x, ny, w);
        float *y1 = run_and_grad(ref, m[1], CG_SHAPE(B, T, IN), x, ny, w);
        th_assert_close_f(y0, y1, ny, 1e-4, 1e-5, cg_module_type(m[0]));
        free(y0);
        free(y1);
        struct cg_named_tensor ps[32];
        int n = cg_module_parameters(m[0], ps, 32);
        for (int i = 0; i < n; i++) {
            float *g0 = fetch(cg_tensor_grad(ps[i].tensor));
            float *g1 = fetch(cg_tensor_grad(param(m[1], ps[i].name)));
            char what[400];
            snprintf(what, sizeof what, "%.64s grad %.300s", cg_module_type(m[0]), ps[i].name);
            th_assert_close_f(g0, g1, cg_tensor_numel(ps[i].tensor), 1e-3, 1e-4, what);
            free(g0);
            free(g1);
        }
        cg_module_free(m[0]);
        cg_module_free(m[1]);
    }
    cg_ctx_free(ref);
}

/* ---- learnability -----------------------------------------------------------------
 * Copy after a delay: inputs x_t uniform over symbols 1..K, the target at
 * step t is x_{t-D} (0 for t < D). Accuracy is over the steps t >= D of a
 * fresh batch. Embedding(K+1, 8) -> RNN(8, 32) -> Linear(32, K+1), Adam. */
#define CP_K 4
#define CP_D 2
#define CP_T 10
#define CP_B 32

static void copy_batch(uint64_t *rng, float *x, float *y)
{
    for (int b = 0; b < CP_B; b++)
        for (int t = 0; t < CP_T; t++) {
            x[b * CP_T + t] = (float)(1 + th_rand_u64(rng) % CP_K);
            y[b * CP_T + t] = t < CP_D ? 0.0f : x[b * CP_T + t - CP_D];
        }
}

static double accuracy(const float *logits, const float *y, int64_t n, int64_t V,
                       bool (*count)(int64_t i))
{
    int64_t good = 0, total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (count && !count(i)) continue;
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (logits[i * V + v] > logits[i * V + best]) best = v;
        good += best == (int64_t)y[i];
        total++;
    }
    return (double)good / (double)total;
}

static bool copy_counted(int64_t i) { return i % CP_T >= CP_D; }

/* A small sequence task: `steps` Adam steps of mean cross-entropy over
 * every (batch, time) position on batches from make_batch, then the
 * accuracy (in eval mode) on one fresh batch, counting positions where
 * count says so (NULL: all). Fails below `want`. x and y hold b * t. */
typedef void (*seq_batch_fn)(uint64_t *rng, float *x, float *y);

static void learn_task(cg_ctx *ctx, const char *what, cg_module *all, cg_optim *opt,
                       seq_batch_fn make_batch, uint64_t rng, int64_t b, int64_t t, int64_t v,
                       int steps, double want, bool (*count)(int64_t i))
{
    float *x = malloc(sizeof(float) * (size_t)(b * t)), *y = malloc(sizeof(float) * (size_t)(b * t));
    assert_non_null(x);
    assert_non_null(y);
    float first = 0, last = 0;
    for (int step = 0; step < steps; step++) {
        make_batch(&rng, x, y);
        cg_scope_begin(ctx);
        cg_tensor *logits = cg_module_forward(all, cg_tensor_from_host(ctx, CG_SHAPE(b, t), x));
        cg_tensor *loss = cg_cross_entropy_loss(cg_reshape(logits, CG_SHAPE(-1, v)),
                                                cg_tensor_from_host(ctx, CG_SHAPE(b * t), y),
                                                CG_REDUCTION_MEAN, 0.0f);
        cg_optim_zero_grad(opt);
        if (cg_backward(loss) != CG_OK) fail_msg("backward: %s", cg_last_error(ctx));
        assert_int_equal(cg_optim_step(opt), CG_OK);
        assert_int_equal(cg_tensor_item(loss, step ? &last : &first), CG_OK);
        cg_scope_end(ctx);
    }
    make_batch(&rng, x, y);
    cg_scope_begin(ctx);
    cg_module_eval(all);
    float *lh = fetch(cg_module_forward(all, cg_tensor_from_host(ctx, CG_SHAPE(b, t), x)));
    double acc = accuracy(lh, y, b * t, v, count);
    free(lh);
    cg_scope_end(ctx);
    free(x);
    free(y);
    print_message("%s: loss %.3f -> %.3f, accuracy %.3f after %d steps\n", what, first, last,
                  acc, steps);
    if (acc < want) fail_msg("%s: accuracy %.3f < %.3f", what, acc, want);
}

static void learn_copy(cg_ctx *ctx, enum cg_rnn_mode mode, int steps, double want)
{
    const int64_t V = CP_K + 1;
    cg_seed(ctx, 42);
    cg_module *model[3] = {cg_embedding_module(ctx, V, 8), cg_recurrent_module(ctx, mode, 8, 32, 1, true, true),
                           cg_linear_module(ctx, 32, V, true)};
    cg_module *all = cg_sequential_module_array(ctx, 3, model);
    assert_non_null(all);
    cg_optim *opt = cg_adam(all, 1e-2f);
    char what[64];
    snprintf(what, sizeof what, "%s copy (delay %d)", mode == CG_RNN_LSTM ? "LSTM" : "GRU", CP_D);
    learn_task(ctx, what, all, opt, copy_batch, 4242, CP_B, CP_T, V, steps, want, copy_counted);
    cg_optim_free(opt);
    cg_module_free(all);
}

static void test_learn_copy_lstm(void **state) { learn_copy(*state, CG_RNN_LSTM, 150, 0.98); }
static void test_learn_copy_gru(void **state) { learn_copy(*state, CG_RNN_GRU, 150, 0.98); }

/* Reverse: x of RV_T symbols in 0..RV_K-1, target y_t = x_{T-1-t}.
 * Embedding + positional embedding -> one Transformer block (non-causal)
 * -> LayerNorm -> Linear, Adam. Accuracy over every position. */
#define RV_K 8
#define RV_T 6
#define RV_B 32

static void reverse_batch(uint64_t *rng, float *x, float *y)
{
    for (int b = 0; b < RV_B; b++) {
        for (int t = 0; t < RV_T; t++) x[b * RV_T + t] = (float)(th_rand_u64(rng) % RV_K);
        for (int t = 0; t < RV_T; t++) y[b * RV_T + t] = x[b * RV_T + RV_T - 1 - t];
    }
}

static void test_learn_reverse_transformer(void **state)
{
    cg_ctx *ctx = *state;
    const int steps = 250;
    const double want = 0.98;
    const int64_t D = 32;
    cg_seed(ctx, 7);
    cg_module *all = cg_sequential_module(ctx, 5, cg_embedding_module(ctx, RV_K, D),
                                   cg_positional_embedding_module(ctx, RV_T, D),
                                   cg_transformer_block_module(ctx, D, 2, 64, 0.0f, false),
                                   cg_layernorm_module(ctx, CG_SHAPE(D)), cg_linear_module(ctx, D, RV_K, true));
    assert_non_null(all);
    cg_optim *opt = cg_adam(all, 3e-3f);
    learn_task(ctx, "Transformer reverse", all, opt, reverse_batch, 777, RV_B, RV_T, RV_K, steps,
               want, NULL);
    cg_optim_free(opt);
    cg_module_free(all);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_embedding, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_positional_embedding, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_rnn_params, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_rnn_forward_reference, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_rnn_unbatched_and_errors, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_rnn_grad, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_lstm_grad, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_gru_grad, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_layernorm, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_attention_params, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_attention_forward_reference, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_causal_mask_never_sees_future, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_attention_grad, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_transformer_block_grad, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_transformer_block_dropout, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_parity_with_cpu, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_learn_copy_lstm, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_learn_copy_gru, th_setup, th_teardown),
        cmocka_unit_test_setup_teardown(test_learn_reverse_transformer, th_setup, th_teardown),
    };
    return TH_RUN(tests);
}
