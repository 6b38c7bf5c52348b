/* tools/plot.c — see plot.h. */
#include "plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool record_log(const char *path, const struct epoch_record *r, bool first, bool resumed,
                bool classification)
{
    FILE *f = fopen(path, first && !resumed ? "w" : "a");
    if (!f) return false;
    if (first && (!resumed || ftell(f) == 0))
        fprintf(f, "epoch,train_loss,val_loss,%s,lr,samples_per_s,seconds\n",
                classification ? "val_accuracy" : "val_rmse");
    if (r->has_val)
        fprintf(f, "%d,%.6f,%.6f,%.6f,%.6g,%.1f,%.3f\n", r->epoch, r->train_loss, r->val_loss,
                r->val_metric, r->lr, r->samples_per_s, r->seconds);
    else
        fprintf(f, "%d,%.6f,,,%.6g,%.1f,%.3f\n", r->epoch, r->train_loss, r->lr,
                r->samples_per_s, r->seconds);
    return fclose(f) == 0;
}

/* Axis ticks at round values: a step of 1, 2 or 5 times a power of ten
 * (the "nice numbers" of Heckbert, Graphics Gems I, 1990, as matplotlib's
 * MaxNLocator uses them), the first tick at or below lo and the last at or
 * above hi, at most about `want` intervals. min_step: the smallest step
 * allowed (1 for epochs). */
struct ticks {
    double first, step;
    int n;          /* ticks: first + i * step, i < n */
    int decimals;   /* for labels */
};

static struct ticks nice_ticks(double lo, double hi, int want, double min_step)
{
    double span = hi - lo;
    if (!(span > 0)) span = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
    double raw = span / want, mag = pow(10, floor(log10(raw))), step = 10 * mag;
    static const double mult[] = {1, 2, 5};
    for (int i = 2; i >= 0; i--)
        if (mult[i] * mag >= raw) step = mult[i] * mag;
    if (step < min_step) step = min_step;
    struct ticks t = {floor(lo / step + 1e-9) * step, step, 0, 0};
    double last = ceil(hi / step - 1e-9) * step;
    if (last <= t.first) last = t.first + step;
    t.n = (int)llround((last - t.first) / step) + 1;
    t.decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    return t;
}

/* One panel of the SVG chart: up to two series over epochs. A single
 * epoch is a point in the middle of its panel; every tick is round. */
static void svg_panel(FILE *f, double x0, double y0, double w, double h, const char *title,
                      const struct epoch_record *r, int n, const double *a, const double *b,
                      const char *a_name, const char *b_name, bool percent)
{
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (a && isfinite(a[i])) { lo = fmin(lo, a[i]); hi = fmax(hi, a[i]); }
        if (b && isfinite(b[i])) { lo = fmin(lo, b[i]); hi = fmax(hi, b[i]); }
    }
    if (!isfinite(lo)) { lo = 0; hi = 1; }
    double scale = percent ? 100 : 1;     /* ticks in the units shown */
    struct ticks yt = nice_ticks(lo * scale, hi * scale, 5, 0);
    double ylo = yt.first / scale, yhi = (yt.first + (yt.n - 1) * yt.step) / scale;
    double e0 = r[0].epoch, e1 = r[n - 1].epoch;
    struct ticks xt = nice_ticks(e0, e1, 10, 1);
    /* the x range: first to last epoch, or +-0.5 around a single one */
    double xlo = n > 1 ? e0 : e0 - 0.5, xhi = n > 1 ? e1 : e0 + 0.5;
#define SX(e) (x0 + 50 + (w - 70) * ((e) - xlo) / (xhi - xlo))
#define SY(v) (y0 + h - 40 - (h - 70) * ((v) - ylo) / (yhi - ylo))
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='15' font-weight='bold'>%s</text>\n",
            x0 + 50, y0 + 20, title);
    fprintf(f, "<rect class='frame' x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' "
               "stroke='#999'/>\n", x0 + 50, y0 + 30, w - 70, h - 70);
    for (int k = 0; k < yt.n; k++) {
        double v = yt.first + k * yt.step;
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#eee'/>\n", x0 + 50,
                x0 + w - 20, SY(v / scale), SY(v / scale));
        fprintf(f, "<text class='ytick' x='%.1f' y='%.1f' font-size='11' text-anchor='end'>"
                   "%.*f%s</text>\n", x0 + 46, SY(v / scale) + 4, yt.decimals,
                v == 0 ? 0.0 : v, percent ? "%" : "");
    }
    for (int k = 0; k < xt.n; k++) {
        double e = xt.first + k * xt.step;
        if (e < xlo - 1e-9 || e > xhi + 1e-9) continue;   /* epochs that were run */
        fprintf(f, "<text class='xtick' x='%.1f' y='%.1f' font-size='11' "
                   "text-anchor='middle'>%.0f</text>\n", SX(e), y0 + h - 24, e);
    }
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>epoch</text>\n",
            x0 + 50 + (w - 70) / 2, y0 + h - 6);
    const double *series[2] = {a, b};
    const char *names[2] = {a_name, b_name}, *colors[2] = {"#1f77b4", "#d62728"};
    for (int s = 0; s < 2; s++) {
        if (!series[s]) continue;
        if (n > 1) {
            fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[s]);
            for (int i = 0; i < n; i++)
                if (isfinite(series[s][i]))
                    fprintf(f, "%.1f,%.1f ", SX(r[i].epoch), SY(series[s][i]));
            fprintf(f, "'/>\n");
        }
        for (int i = 0; i < n; i++)
            if (isfinite(series[s][i]))
                fprintf(f, "<circle cx='%.1f' cy='%.1f' r='3' fill='%s'/>\n", SX(r[i].epoch),
                        SY(series[s][i]), colors[s]);
        /* the legend sits in the title row, clear of the curves */
        fprintf(f, "<rect x='%.1f' y='%.1f' width='12' height='4' fill='%s'/>"
                   "<text x='%.1f' y='%.1f' font-size='12'>%s</text>\n",
                x0 + w - 200 + 95 * s, y0 + 13, colors[s], x0 + w - 184 + 95 * s, y0 + 19, names[s]);
    }
#undef SX
#undef SY
}

bool record_plot(const char *path, const struct epoch_record *hist, int n, bool has_val,
                 bool classification)
{
    double *tl = malloc(sizeof(double) * (size_t)n), *vl = malloc(sizeof(double) * (size_t)n),
           *vm = malloc(sizeof(double) * (size_t)n);
    size_t len = strlen(path) + 5;
    char *tmp = malloc(len);
    FILE *f = NULL;
    bool ok = false;
    if (!tl || !vl || !vm || !tmp) {
        errno = ENOMEM;
        goto done;
    }
    for (int i = 0; i < n; i++) {
        tl[i] = hist[i].train_loss;
        vl[i] = hist[i].has_val ? hist[i].val_loss : NAN;
        vm[i] = hist[i].has_val ? hist[i].val_metric : NAN;
    }
    snprintf(tmp, len, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) goto done;
    /* without a validation set only the loss panel: nothing to show beside it */
    int width = has_val ? 960 : 480;
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='380' "
               "font-family='sans-serif'>\n<rect width='%d' height='380' fill='white'/>\n",
            width, width);
    svg_panel(f, 0, 0, 480, 380, has_val ? "loss" : "training loss", hist, n, tl,
              has_val ? vl : NULL, "train", "validation", false);
    if (has_val)
        svg_panel(f, 480, 0, 480, 380,
                  classification ? "validation accuracy" : "validation RMSE", hist, n, vm, NULL,
                  classification ? "accuracy" : "RMSE", NULL, classification);
    fprintf(f, "</svg>\n");
    ok = fclose(f) == 0 && rename(tmp, path) == 0;
done:
    free(tl);
    free(vl);
    free(vm);
    free(tmp);
    return ok;
}
