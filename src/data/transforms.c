/*
 * src/data/transforms.c — fitted feature scaling: standardization and
 * min-max, as scikit-learn's StandardScaler and MinMaxScaler
 * (scikit-learn.org/stable/modules/preprocessing.html). Statistics are
 * fitted once (on the training split) and kept in a plain struct, so the
 * same transform applies to validation data and at prediction time.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data-impl.h"

CG_API cg_status cg_scaler_create(enum cg_scaler_kind kind, int64_t n_features,
                                  struct cg_scaler **out)
{
    if (!out) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_scaler_create: NULL out");
    *out = NULL;
    if ((unsigned)kind > CG_SCALER_MINMAX || n_features <= 0 ||
        (uint64_t)n_features > SIZE_MAX / sizeof(float))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_scaler_create: bad kind %d or n_features %lld", (int)kind,
                         (long long)n_features);
    struct cg_scaler *s = calloc(1, sizeof *s);
    if (s) {
        s->offset = malloc((size_t)n_features * sizeof(float));
        s->scale = malloc((size_t)n_features * sizeof(float));
    }
    if (!s || !s->offset || !s->scale) {
        cg_scaler_free(s);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_scaler_create: out of memory");
    }
    s->kind = kind;
    s->n_features = n_features;
    for (int64_t j = 0; j < n_features; j++) {
        s->offset[j] = 0.0f;
        s->scale[j] = 1.0f;
    }
    *out = s;
    return CG_OK;
}

CG_API void cg_scaler_free(struct cg_scaler *s)
{
    if (!s) return;
    free(s->offset);
    free(s->scale);
    free(s);
}

/* A scale of 0 (a constant feature) or one that is not finite would give
 * NaN or Inf: such a feature keeps scale 1 and so maps to x - offset = 0,
 * as sklearn's _handle_zeros_in_scale does. */
static float safe_scale(double s)
{
    return (s > 0 && isfinite(s) && (float)s > 0.0f && isfinite((float)s)) ? (float)s : 1.0f;
}

CG_API cg_status cg_scaler_fit_data(const float *x, int64_t n, int64_t d,
                                    enum cg_scaler_kind kind, bool per_feature,
                                    struct cg_scaler **out)
{
    if (!out) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_scaler_fit: NULL out");
    *out = NULL;
    if (!x || n <= 0 || d <= 0)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_scaler_fit: nothing to fit (n %lld, d %lld)", (long long)n,
                         (long long)d);
    int64_t nf = per_feature ? d : 1, per = per_feature ? n : n * d;
    struct cg_scaler *s;
    cg_status st = cg_scaler_create(kind, nf, &s);
    if (st != CG_OK) return st;
    double *a = calloc((size_t)nf, sizeof *a), *b = calloc((size_t)nf, sizeof *b);
    if (!a || !b) {
        free(a); free(b); cg_scaler_free(s);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_scaler_fit: out of memory");
    }
    if (kind == CG_SCALER_STANDARD) {
        /* Two passes in double: mean, then the mean squared deviation
         * (population variance, numpy.var's ddof=0, as StandardScaler). */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) a[per_feature ? j : 0] += x[i * d + j];
        for (int64_t k = 0; k < nf; k++) a[k] /= (double)per;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                double dv = x[i * d + j] - a[per_feature ? j : 0];
                b[per_feature ? j : 0] += dv * dv;
            }
        for (int64_t k = 0; k < nf; k++) {
            s->offset[k] = (float)a[k];
            s->scale[k] = safe_scale(sqrt(b[k] / (double)per));
        }
    } else {
        for (int64_t k = 0; k < nf; k++) { a[k] = INFINITY; b[k] = -INFINITY; }
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < d; j++) {
                int64_t k = per_feature ? j : 0;
                double v = x[i * d + j];
                if (v < a[k]) a[k] = v;
                if (v > b[k]) b[k] = v;
            }
        for (int64_t k = 0; k < nf; k++) {
            s->offset[k] = (float)a[k];
            s->scale[k] = safe_scale(b[k] - a[k]);
        }
    }
    free(a);
    free(b);
    for (int64_t k = 0; k < nf; k++) {
        if (!isfinite(s->offset[k])) {
            cg_scaler_free(s);
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "cg_scaler_fit: feature %lld has non-finite values",
                             (long long)k);
        }
    }
    *out = s;
    return CG_OK;
}

CG_API cg_status cg_scaler_fit(const struct cg_dataset *ds, enum cg_scaler_kind kind,
                               bool per_feature, struct cg_scaler **out)
{
    if (!ds) {
        if (out) *out = NULL;
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_scaler_fit: NULL dataset");
    }
    if (!ds->x_u8) return cg_scaler_fit_data(ds->x, ds->n, ds->sample_numel, kind, per_feature, out);
    /* Byte storage: fit on a float copy (ds is const; the copy goes away). */
    float *x = malloc(((size_t)ds->n * (size_t)ds->sample_numel + 1) * sizeof(float));
    if (!x) {
        if (out) *out = NULL;
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_scaler_fit: out of memory");
    }
    cg__dataset_rows_to_float(ds, NULL, ds->n, x);
    cg_status st = cg_scaler_fit_data(x, ds->n, ds->sample_numel, kind, per_feature, out);
    free(x);
    return st;
}

static cg_status scaler_check(const struct cg_scaler *s, const float *x, int64_t n, int64_t d,
                              const char *fn)
{
    if (!s || (!x && n > 0) || n < 0 || d <= 0)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: bad arguments", fn);
    if (s->n_features != 1 && s->n_features != d)
        return cg__error(NULL, CG_STATUS_SHAPE_MISMATCH,
                         "%s: the scaler was fitted on %lld features, the data has %lld", fn,
                         (long long)s->n_features, (long long)d);
    for (int64_t k = 0; k < s->n_features; k++)
        if (!(s->scale[k] > 0 && isfinite(s->scale[k]) && isfinite(s->offset[k])))
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "%s: feature %lld has offset %g and scale %g (the scale must be "
                             "finite and > 0)",
                             fn, (long long)k, (double)s->offset[k], (double)s->scale[k]);
    return CG_OK;
}

CG_API cg_status cg_scaler_apply_data(const struct cg_scaler *s, float *x, int64_t n, int64_t d)
{
    cg_status st = scaler_check(s, x, n, d, "cg_scaler_apply");
    if (st != CG_OK) return st;
    bool per = s->n_features != 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            int64_t k = per ? j : 0;
            x[i * d + j] = (x[i * d + j] - s->offset[k]) / s->scale[k];
        }
    return CG_OK;
}

CG_API cg_status cg_scaler_inverse_data(const struct cg_scaler *s, float *x, int64_t n,
                                        int64_t d)
{
    cg_status st = scaler_check(s, x, n, d, "cg_scaler_inverse");
    if (st != CG_OK) return st;
    bool per = s->n_features != 1;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++) {
            int64_t k = per ? j : 0;
            x[i * d + j] = x[i * d + j] * s->scale[k] + s->offset[k];
        }
    return CG_OK;
}

CG_API cg_status cg_scaler_apply(const struct cg_scaler *s, struct cg_dataset *ds)
{
    if (!ds) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_scaler_apply: NULL dataset");
    /* Checked before converting, so a wrong scaler leaves ds as it was
     * (scaler_check looks only at whether the data pointer is NULL). */
    cg_status st = scaler_check(s, ds->x_u8 ? (const float *)(const void *)ds->x_u8 : ds->x,
                                ds->n, ds->sample_numel, "cg_scaler_apply");
    if (st == CG_OK) st = cg_dataset_to_float(ds);     /* bytes cannot hold the result */
    if (st != CG_OK) return st;
    return cg_scaler_apply_data(s, ds->x, ds->n, ds->sample_numel);
}

/* ---------------------------------------------------------------- dates -- */

/* Dates become numbers a model can use: the year as it is, the month and
 * the day of the year as points on a circle (sin, cos), so that December
 * sits next to January, the weekday, and with a time of day the hour on a
 * circle too (the usual cyclic encoding, e.g. scikit-learn's "Time-related
 * feature engineering" example). */

static bool is_leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dm[m - 1];
}

/* Reads 1..max digits (at least min) at *s into *v. */
static bool date_digits(const char **s, int min, int max, int *v)
{
    int n = 0, x = 0;
    while (n < max && **s >= '0' && **s <= '9') x = x * 10 + (*(*s)++ - '0'), n++;
    *v = x;
    return n >= min;
}

bool cg__date_parse(const char *s, struct cg__date *d)
{
    int y, m, day;
    if (!date_digits(&s, 4, 4, &y) || (*s != '-' && *s != '/')) return false;
    char sep = *s++;
    if (!date_digits(&s, 1, 2, &m) || *s++ != sep || !date_digits(&s, 1, 2, &day)) return false;
    if (m < 1 || m > 12 || day < 1 || day > days_in_month(y, m)) return false;
    d->year = y;
    d->month = m;
    d->day = day;
    d->hour = 0;
    d->has_time = false;
    if (!*s) return true;
    if (*s != 'T' && *s != ' ') return false;
    s++;
    int hh, mm, ss = 0;
    double frac = 0;
    if (!date_digits(&s, 2, 2, &hh) || *s++ != ':' || !date_digits(&s, 2, 2, &mm)) return false;
    if (*s == ':') {
        s++;
        if (!date_digits(&s, 2, 2, &ss)) return false;
        if (*s == '.' || *s == ',') {
            double scale = 0.1;
            if (!(s[1] >= '0' && s[1] <= '9')) return false;
            for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10) frac += (*s - '0') * scale;
        }
    }
    if (hh > 23 || mm > 59 || ss > 60) return false;
    if (*s == 'Z') {
        s++;
    } else if (*s == '+' || *s == '-') {           /* a UTC offset, ignored */
        int oh, om = 0;
        s++;
        if (!date_digits(&s, 2, 2, &oh)) return false;
        if (*s == ':') s++;
        if (*s && !date_digits(&s, 2, 2, &om)) return false;
        if (oh > 23 || om > 59) return false;
    }
    if (*s) return false;
    d->hour = hh + mm / 60.0 + (ss + frac) / 3600.0;
    d->has_time = true;
    return true;
}

const char *const cg__date_feature_names[CG__DATE_FEATURES] = {
    "year", "month_sin", "month_cos", "doy_sin", "doy_cos", "weekday", "hour_sin", "hour_cos"};

void cg__date_features(const struct cg__date *d, float *out)
{
    const double two_pi = 6.283185307179586;
    int doy = d->day;
    for (int m = 1; m < d->month; m++) doy += days_in_month(d->year, m);
    /* Sakamoto's weekday (Sunday 0), shifted so Monday is 0 as pandas'
     * Timestamp.dayofweek. */
    static const int t[12] = {0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4};
    int y = d->year - (d->month < 3);
    int sunday0 = (y + y / 4 - y / 100 + y / 400 + t[d->month - 1] + d->day) % 7;
    double ma = two_pi * (d->month - 1) / 12.0;
    double da = two_pi * (doy - 1) / (is_leap(d->year) ? 366.0 : 365.0);
    double ha = two_pi * d->hour / 24.0;
    out[0] = (float)d->year;
    out[1] = (float)sin(ma);
    out[2] = (float)cos(ma);
    out[3] = (float)sin(da);
    out[4] = (float)cos(da);
    out[5] = (float)((sunday0 + 6) % 7);
    out[6] = (float)sin(ha);
    out[7] = (float)cos(ha);
}
