/*
 * tools/plot.h — clgrad-train's training record: one CSV row per epoch
 * (--log) and the curves as a self-contained SVG (--plot).
 * Both return false with errno set when the file cannot be written.
 */
#ifndef CLGRAD_TOOLS_PLOT_H
#define CLGRAD_TOOLS_PLOT_H

#include <stdbool.h>

/* One row of the training record. */
struct epoch_record {
    int epoch;
    double train_loss, val_loss, val_metric, lr, samples_per_s, seconds;
    bool has_val;                   /* val_loss and val_metric are set */
};

/* Appends r to the CSV log at path; first: this run's first row. A fresh
 * run (first && !resumed) starts the file; a resumed one appends, with the
 * header only if the file was empty. val_metric is accuracy
 * (classification) or RMSE. */
bool record_log(const char *path, const struct epoch_record *r, bool first, bool resumed,
                bool classification);

/* Writes the curves of hist[0..n) (n >= 1) to path, atomically (a
 * temporary file renamed over it): loss (train, and validation when
 * has_val) and, when has_val, validation accuracy or RMSE. */
bool record_plot(const char *path, const struct epoch_record *hist, int n, bool has_val,
                 bool classification);

#endif
