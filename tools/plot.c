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

/* One panel of the SVG chart: up to two series over epochs. */
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
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    double pad = 0.05 * (hi - lo);
    lo -= pad;
    hi += pad;
    double e0 = r[0].epoch, e1 = r[n - 1].epoch > e0 ? r[n - 1].epoch : e0 + 1;
#define SX(e) (x0 + 50 + (w - 70) * ((e) - e0) / (e1 - e0))
#define SY(v) (y0 + h - 40 - (h - 70) * ((v) - lo) / (hi - lo))
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='15' font-weight='bold'>%s</text>\n",
            x0 + 50, y0 + 20, title);
    fprintf(f, "<rect x='%.1f' y='%.1f' width='%.1f' height='%.1f' fill='none' stroke='#999'/>\n",
            x0 + 50, y0 + 30, w - 70, h - 70);
    for (int k = 0; k <= 4; k++) {
        double v = lo + (hi - lo) * k / 4;
        fprintf(f, "<line x1='%.1f' x2='%.1f' y1='%.1f' y2='%.1f' stroke='#eee'/>\n", x0 + 50,
                x0 + w - 20, SY(v), SY(v));
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%.*f%s</text>\n",
                x0 + 46, SY(v) + 4, percent ? 1 : 3, percent ? 100 * v : v, percent ? "%" : "");
    }
    int step = n > 10 ? (n + 9) / 10 : 1;
    for (int i = 0; i < n; i += step)
        fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%d</text>\n",
                SX(r[i].epoch), y0 + h - 24, r[i].epoch);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='12' text-anchor='middle'>epoch</text>\n",
            x0 + 50 + (w - 70) / 2, y0 + h - 6);
    const double *series[2] = {a, b};
    const char *names[2] = {a_name, b_name}, *colors[2] = {"#1f77b4", "#d62728"};
    for (int s = 0; s < 2; s++) {
        if (!series[s]) continue;
        fprintf(f, "<polyline fill='none' stroke='%s' stroke-width='2' points='", colors[s]);
        for (int i = 0; i < n; i++)
            if (isfinite(series[s][i])) fprintf(f, "%.1f,%.1f ", SX(r[i].epoch), SY(series[s][i]));
        fprintf(f, "'/>\n");
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
    fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='960' height='380' "
               "font-family='sans-serif'>\n<rect width='960' height='380' fill='white'/>\n");
    svg_panel(f, 0, 0, 480, 380, "loss", hist, n, tl, has_val ? vl : NULL, "train",
              "validation", false);
    svg_panel(f, 480, 0, 480, 380, classification ? "validation accuracy" : "validation RMSE",
              hist, n, has_val ? vm : NULL, NULL, classification ? "accuracy" : "RMSE", NULL,
              classification);
    fprintf(f, "</svg>\n");
    ok = fclose(f) == 0 && rename(tmp, path) == 0;
done:
    free(tl);
    free(vl);
    free(vm);
    free(tmp);
    return ok;
}
