/*
 * src/data/csv.c — streaming CSV reader into a cg_table.
 *
 * The grammar is RFC 4180's (https://www.rfc-editor.org/rfc/rfc4180) with
 * the usual relaxations: any one-byte delimiter, LF, CRLF or lone CR line
 * ends, a UTF-8 byte order mark, blank lines skipped, spaces around unquoted
 * fields trimmed, a '"' inside an unquoted field taken literally.
 *
 * Memory. The file goes through one fixed-size fread buffer; a field is
 * copied into a small growable buffer only until it is converted. What stays
 * is one float per cell, in one row-major array grown by 1.5x (so at most
 * ~1.5x the numeric size, shrunk to fit at the end), plus the distinct
 * strings of categorical columns. The text itself is never kept.
 *
 * Numbers are always read in the C locale ('.' is the decimal point), also
 * when the program has called setlocale(LC_NUMERIC, ...): the reader
 * switches its own thread to the C locale while it runs (uselocale).
 *
 * After parsing, the table is shaped for a model (csv_shape): date columns
 * become numeric features, ID-like text columns are dropped, and an AUTO
 * target's task is inferred. What was decided goes to the table's notes and
 * task_reason, never to a stream: the caller decides what to print.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/data-impl.h"

#define CSV_CHUNK (64 * 1024)
#define CSV_MAX_FIELD (16u << 20)     /* one cell: 16 MiB               */
#define CSV_MAX_COLS (1 << 24)
#define CSV_MAX_CATEGORIES (1 << 24)  /* indices stay exact in float32 */

enum { KIND_UNDECIDED = -1 };

/* Distinct strings of a categorical column, in first-seen order, with an
 * open-addressing index (FNV-1a hash, linear probing). */
struct cat_map {
    char **keys;
    int n, cap;
    int *slots;               /* key index + 1; 0 = empty */
    int n_slots;              /* power of two             */
};

struct col_state {
    char *name;
    int kind;                 /* KIND_UNDECIDED or enum cg_column_kind */
    struct cat_map cats;
    bool has_missing;         /* NaN placeholders to fill at the end */
    int out;                  /* column in the table, -1: not read    */
    bool keep;                /* in opts.keep: stays text, one-hot    */
    bool want_date;           /* like mode: expanded as dates in training */
};

struct parser {
    FILE *f;
    gzFile gz;                /* instead of f, for cg_csv_read */
    const char *name;
    struct cg_csv_options o;

    char buf[CSV_CHUNK];
    size_t len, pos;
    bool eof;

    char *fld;                /* current field, NUL-terminated */
    size_t flen, fcap;
    bool fquoted;
    int64_t line;             /* line of the next unread byte (1-based) */
    int64_t fline;            /* line where the current field began     */
    int fcol;                 /* 0-based field index in the record      */

    struct col_state *cols;   /* the file's columns                 */
    int n_cols;
    int n_out;                /* columns read into the table        */
    int target;               /* the file column, -1: none          */
    int64_t header_line;      /* 0: no header                       */
    bool numeric_header;      /* some header names read as numbers  */
    char **first;             /* no_header: the first row's fields  */
    int64_t first_line;
    struct cg__sb notes;

    float *vals;              /* (n_rows, n_cols), capacity cap_rows */
    int64_t n_rows, cap_rows;
    int64_t n_records;        /* data records seen, dropped or not   */
    bool row_drop;
};

/* ---------------------------------------------------------------- input -- */

static int csv_fill(struct parser *p)
{
    if (p->eof) return 0;
    if (p->gz) {
        int n = gzread(p->gz, p->buf, (unsigned)sizeof p->buf);
        p->len = n > 0 ? (size_t)n : 0;
        p->pos = 0;
        if (n <= 0) {
            p->eof = true;
            if (n < 0) return -1;
        }
        return n > 0;
    }
    p->len = fread(p->buf, 1, sizeof p->buf, p->f);
    p->pos = 0;
    if (p->len == 0) {
        p->eof = true;
        if (ferror(p->f)) return -1;
    }
    return p->len > 0;
}

/* The next byte, or -1 at the end of input (-2 on a read error). */
static inline int csv_peek(struct parser *p)
{
    if (p->pos == p->len) {
        int r = csv_fill(p);
        if (r <= 0) return r < 0 ? -2 : -1;
    }
    return (unsigned char)p->buf[p->pos];
}

static inline int csv_get(struct parser *p)
{
    int c = csv_peek(p);
    if (c >= 0) p->pos++;
    return c;
}

/* Counts a line end whose first byte c was just read: LF, CR or CRLF. */
static inline void csv_newline(struct parser *p, int c)
{
    if (c == '\r' && csv_peek(p) == '\n') p->pos++;
    p->line++;
}

static cg_status csv_io_error(struct parser *p)
{
    int zerr = Z_OK;
    const char *zmsg = p->gz ? gzerror(p->gz, &zerr) : NULL;
    return cg__error(NULL, CG_STATUS_IO_ERROR, "%s:%lld: read error: %s", p->name,
                     (long long)p->line,
                     zerr != Z_OK && zerr != Z_ERRNO ? zmsg : strerror(errno));
}

/* Up to 40 bytes of s for a message, "..." when cut. */
static const char *csv_excerpt(const char *s, char *buf, size_t len)
{
    size_t n = strlen(s);
    if (n < 41 || len < 45) return s;
    snprintf(buf, len, "%.40s...", s);
    return buf;
}

/* Names and categories end up in checkpoints, whose JSON header must be
 * UTF-8 (and C strings hold no NUL): a Latin-1 "caf\xe9" would train and
 * save a checkpoint that no reader opens. So text fields must be valid
 * UTF-8 (RFC 3629: no overlongs, surrogates or code points past U+10FFFF)
 * without NUL bytes; the error names line, column and byte. */
static cg_status csv_check_text(const struct parser *p, const char *text, size_t n,
                                const char *what)
{
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], len = 1, cp = c, min = 0;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else if (c >= 0x80 || c == 0) len = 0;
        for (unsigned k = 1; len && k < len; k++) {
            if (i + k >= n || (s[i + k] & 0xC0) != 0x80) len = 0;
            else cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (len > 1 && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) len = 0;
        if (!len)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: %s is not valid UTF-8 text (byte 0x%02x at byte %zu "
                             "of the field); convert the file to UTF-8, e.g. iconv -f latin1 "
                             "-t utf-8", p->name, (long long)p->fline, p->fcol + 1, what, c, i + 1);
        i += len;
    }
    return CG_OK;
}

/* Appends n bytes to the field (keeping room for its NUL). */
static cg_status csv_append_n(struct parser *p, const char *src, size_t n)
{
    if (p->flen + n + 1 > p->fcap) {
        if (p->flen + n + 1 > CSV_MAX_FIELD)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: field longer than %u bytes", p->name,
                             (long long)p->fline, p->fcol + 1, CSV_MAX_FIELD);
        size_t cap = p->fcap ? p->fcap : 256;
        while (cap < p->flen + n + 1) cap *= 2;
        char *nf = realloc(p->fld, cap);
        if (!nf) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
        p->fld = nf;
        p->fcap = cap;
    }
    memcpy(p->fld + p->flen, src, n);
    p->flen += n;
    return CG_OK;
}

static inline cg_status csv_append(struct parser *p, int c)
{
    if (p->flen + 2 <= p->fcap) {
        p->fld[p->flen++] = (char)c;
        return CG_OK;
    }
    char ch = (char)c;
    return csv_append_n(p, &ch, 1);
}

static inline bool csv_space(const struct parser *p, int c)
{
    return (c == ' ' || c == '\t') && c != p->o.delimiter;
}

enum { END_FIELD, END_RECORD, END_INPUT };

/* Reads one field into p->fld. *end says what ended it: a delimiter, a line
 * end (or the end of input after some text), or the end of input before
 * the record's first byte (no record). */
static cg_status csv_field(struct parser *p, int *end)
{
    cg_status st;
    p->flen = 0;
    p->fquoted = false;
    p->fline = p->line;
    int c;
    while (csv_space(p, c = csv_peek(p))) p->pos++;
    if (c == -2) return csv_io_error(p);
    if (c == -1 && p->fcol == 0) {
        *end = END_INPUT;
        return CG_OK;
    }
    if (c == '"') {
        p->pos++;
        p->fquoted = true;
        for (;;) {
            c = csv_get(p);
            if (c == -2) return csv_io_error(p);
            if (c == -1)
                return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                                 "%s:%lld:%d: unterminated quoted field (the file ends "
                                 "inside the quotes opened here)",
                                 p->name, (long long)p->fline, p->fcol + 1);
            if (c == '"') {
                if (csv_peek(p) != '"') break;
                p->pos++;                           /* "" is one quote */
            } else if (c == '\n' || (c == '\r' && csv_peek(p) != '\n')) {
                p->line++;
            }
            if ((st = csv_append(p, c)) != CG_OK) return st;
        }
        while (csv_space(p, c = csv_peek(p))) p->pos++;
        c = csv_get(p);
        if (c == -2) return csv_io_error(p);
        if (c == p->o.delimiter) {
            *end = END_FIELD;
        } else if (c == '\n' || c == '\r' || c == -1) {
            if (c >= 0) csv_newline(p, c);
            *end = END_RECORD;
        } else {
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: unexpected character '%c' after a closing quote "
                             "(a quote inside a quoted field is written \"\")",
                             p->name, (long long)p->line, p->fcol + 1, c);
        }
    } else {
        /* The common case: scan the buffer for the field's end and copy
         * the run at once. */
        const char delim = p->o.delimiter;
        for (;;) {
            if (p->pos == p->len && (c = csv_peek(p)) < 0) {
                if (c == -2) return csv_io_error(p);
                *end = END_RECORD;                  /* the end of input */
                break;
            }
            const char *b = p->buf + p->pos, *e = p->buf + p->len, *q = b;
            while (q < e && *q != delim && *q != '\n' && *q != '\r') q++;
            if ((st = csv_append_n(p, b, (size_t)(q - b))) != CG_OK) return st;
            p->pos += (size_t)(q - b);
            if (q == e) continue;
            c = (unsigned char)*q;
            p->pos++;
            if (c == (unsigned char)delim) {
                *end = END_FIELD;
            } else {
                csv_newline(p, c);
                *end = END_RECORD;
            }
            break;
        }
        while (p->flen > 0 && csv_space(p, (unsigned char)p->fld[p->flen - 1])) p->flen--;
    }
    if (!p->fld && (st = csv_append_n(p, "", 0)) != CG_OK) return st;
    p->fld[p->flen] = 0;
    /* Fields are C strings from here on: a NUL byte would end one early
     * (a number "0\0\0" would read as 0, a class name as a shorter one,
     * and a second reading of the file could disagree with the first). A
     * CSV file is text, so a NUL byte in a field is an error. */
    const char *nul = memchr(p->fld, 0, p->flen);
    if (nul)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s:%lld:%d: a NUL byte (at byte %zu of the field): a CSV file is "
                         "text; is this a binary file?", p->name, (long long)p->fline,
                         p->fcol + 1, (size_t)(nul - p->fld) + 1);
    return CG_OK;
}

/* ---------------------------------------------------------- categories -- */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a 64, isthe.com/chongo/tech/comp/fnv */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

static void cat_map_free(struct cat_map *m)
{
    for (int i = 0; i < m->n; i++) free(m->keys[i]);
    free(m->keys);
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static bool cat_map_grow(struct cat_map *m)
{
    int ns = m->n_slots ? m->n_slots * 2 : 16;
    int *slots = calloc((size_t)ns, sizeof *slots);
    if (!slots) return false;
    for (int i = 0; i < m->n; i++) {
        size_t h = fnv1a(m->keys[i]) & (size_t)(ns - 1);
        while (slots[h]) h = (h + 1) & (size_t)(ns - 1);
        slots[h] = i + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = ns;
    return true;
}

/* The index of s in m, added if new; -1 when out of memory. */
static int cat_map_intern(struct cat_map *m, const char *s)
{
    if (2 * (m->n + 1) > m->n_slots && !cat_map_grow(m)) return -1;
    size_t mask = (size_t)(m->n_slots - 1), h = fnv1a(s) & mask;
    for (; m->slots[h]; h = (h + 1) & mask)
        if (strcmp(m->keys[m->slots[h] - 1], s) == 0) return m->slots[h] - 1;
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 8;
        char **k = realloc(m->keys, (size_t)cap * sizeof *k);
        if (!k) return -1;
        m->keys = k;
        m->cap = cap;
    }
    char *key = cg__strdup(s);
    if (!key) return -1;
    m->keys[m->n] = key;
    m->slots[h] = m->n + 1;
    return m->n++;
}

/* ---------------------------------------------------------------- cells -- */

/* Parses a whole cell as a number; *v is the double. */
static bool csv_number(const char *s, double *v)
{
    if (!*s) return false;
    char *end;
    *v = strtod(s, &end);
    return *end == 0;
}

enum { NUM_OK, NUM_NOT, NUM_NONFINITE, NUM_RANGE };

/* Clinger's fast path ("How to read floating point numbers accurately",
 * PLDI 1990) for float32: a decimal m * 10^e with m < 2^24 and |e| <= 10
 * has m and 10^|e| exact in float, so one float multiply or divide gives
 * the correctly rounded result. Returns false for anything else. */
static bool csv_fast_float(const char *s, float *v)
{
    static const float pow10[] = {1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f,
                                  1e6f, 1e7f, 1e8f, 1e9f, 1e10f};
    bool neg = *s == '-';
    if (*s == '-' || *s == '+') s++;
    uint32_t m = 0;
    int e = 0, digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        if (m >= (1u << 24) / 10) return false;
        m = m * 10 + (uint32_t)(*s - '0');
    }
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, digits++, e--) {
            if (m >= (1u << 24) / 10) return false;
            m = m * 10 + (uint32_t)(*s - '0');
        }
    }
    if (!digits) return false;
    if (*s == 'e' || *s == 'E') {
        s++;
        bool eneg = *s == '-';
        if (*s == '-' || *s == '+') s++;
        if (!(*s >= '0' && *s <= '9')) return false;
        int x = 0;
        for (; *s >= '0' && *s <= '9'; s++)
            if ((x = x * 10 + (*s - '0')) > 100) return false;
        e += eneg ? -x : x;
    }
    if (*s || e < -10 || e > 10) return false;
    float f = (float)m;
    f = e < 0 ? f / pow10[-e] : f * pow10[e];
    *v = neg ? -f : f;
    return true;
}

/* A cell as a float32: NUM_OK, or why not. strtof rounds correctly. */
static int csv_float(const char *s, float *v)
{
    if (csv_fast_float(s, v)) return NUM_OK;
    if (!*s) return NUM_NOT;
    char *end;
    errno = 0;
    float f = strtof(s, &end);
    if (*end) return NUM_NOT;
    if (isinf(f) && errno == ERANGE) return NUM_RANGE;
    if (!isfinite(f)) return NUM_NONFINITE;
    *v = f;
    return NUM_OK;
}

static bool csv_is_missing(const char *s)
{
    return !s[0] || (s[0] == 'N' && (strcmp(s, "NA") == 0 || strcmp(s, "N/A") == 0));
}

/* Stores field s of file column p->fcol into its table column in row;
 * columns that are not read are skipped without a look. */
static cg_status csv_cell(struct parser *p, const char *s, float *row)
{
    int col = p->fcol;
    struct col_state *c = &p->cols[col];
    if (c->out < 0) return CG_OK;
    char ex[64];
    if (csv_is_missing(s)) {
        if (p->o.missing == CG_MISSING_ERROR)
            return cg__error(NULL, CG_STATUS_MISSING_VALUE,
                             "%s:%lld:%d: missing value in column \"%s\" (an option can "
                             "drop or fill missing values)",
                             p->name, (long long)p->fline, col + 1, c->name);
        if (col == p->target || p->o.missing == CG_MISSING_DROP) p->row_drop = true;
        c->has_missing = true;
        row[c->out] = NAN;
        return CG_OK;
    }
    float v = 0;
    int num = csv_float(s, &v);
    bool is_num = num != NUM_NOT;
    if (c->kind == KIND_UNDECIDED) {
        if (!is_num && col != p->target && p->o.reject_categorical)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: non-numeric value \"%s\" in column \"%s\": "
                             "categorical feature columns are rejected "
                             "(reject_categorical)",
                             p->name, (long long)p->fline, col + 1,
                             csv_excerpt(s, ex, sizeof ex), c->name);
        c->kind = is_num ? CG_COLUMN_NUMERIC : CG_COLUMN_CATEGORICAL;
    }
    if (c->kind == CG_COLUMN_CATEGORICAL) {
        if (c->cats.n >= CSV_MAX_CATEGORIES)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: column \"%s\" has more than %d categories",
                             p->name, (long long)p->fline, col + 1, c->name,
                             CSV_MAX_CATEGORIES);
        /* s is p->fld, or a no_header first-row field (checked whole there) */
        cg_status ts = csv_check_text(p, s, s == p->fld ? p->flen : strlen(s),
                                      col == p->target ? "the class name" : "the category");
        if (ts != CG_OK) return ts;
        int idx = cat_map_intern(&c->cats, s);
        if (idx < 0) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
        row[c->out] = (float)idx;
        return CG_OK;
    }
    if (num == NUM_NOT)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s:%lld:%d: non-numeric value \"%s\" in numeric column \"%s\"",
                         p->name, (long long)p->fline, col + 1,
                         csv_excerpt(s, ex, sizeof ex), c->name);
    if (num == NUM_NONFINITE)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s:%lld:%d: non-finite value \"%s\" in column \"%s\"", p->name,
                         (long long)p->fline, col + 1, csv_excerpt(s, ex, sizeof ex), c->name);
    if (num == NUM_RANGE)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s:%lld:%d: value \"%s\" in column \"%s\" is out of float32 range",
                         p->name, (long long)p->fline, col + 1,
                         csv_excerpt(s, ex, sizeof ex), c->name);
    row[c->out] = v;
    return CG_OK;
}

/* --------------------------------------------------------------- header -- */

static int cmp_name(const void *a, const void *b)
{
    const struct col_state *x = *(const struct col_state *const *)a;
    const struct col_state *y = *(const struct col_state *const *)b;
    return strcmp(x->name, y->name);
}

static cg_status csv_oom(const struct parser *p)
{
    return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
}

static cg_status csv_header_field(struct parser *p, int *cap)
{
    if (p->n_cols >= CSV_MAX_COLS)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s:%lld: more than %d columns",
                         p->name, (long long)p->fline, CSV_MAX_COLS);
    if (p->n_cols == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        struct col_state *cols = realloc(p->cols, (size_t)nc * sizeof *cols);
        if (!cols) return csv_oom(p);
        p->cols = cols;
        *cap = nc;
    }
    struct col_state *c = &p->cols[p->n_cols];
    memset(c, 0, sizeof *c);
    c->kind = KIND_UNDECIDED;
    cg_status ts = csv_check_text(p, p->fld, p->flen,
                                  p->o.no_header ? "the text" : "the column name");
    if (ts != CG_OK) return ts;
    char gen[32];
    if (p->flen == 0) snprintf(gen, sizeof gen, "column%d", p->n_cols + 1);
    c->name = cg__strdup(p->flen ? p->fld : gen);
    if (!c->name) return csv_oom(p);
    p->n_cols++;
    return CG_OK;
}

/* Skips opts.skip_rows physical lines (quotes mean nothing there). */
static cg_status csv_skip_lines(struct parser *p)
{
    for (int i = 0; i < p->o.skip_rows; i++) {
        int c;
        while ((c = csv_get(p)) >= 0 && c != '\n' && c != '\r') {}
        if (c == -2) return csv_io_error(p);
        if (c == -1)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld: the file ends before the %d lines that skip_rows "
                             "(--skip-rows) skips",
                             p->name, (long long)p->line, p->o.skip_rows);
        csv_newline(p, c);
    }
    return CG_OK;
}

/* "\"a\", \"b\", ..." of the file's column names, for messages. */
static void csv_name_list(const struct parser *p, char *list, size_t len)
{
    size_t n = 0;
    list[0] = 0;
    for (int i = 0; i < p->n_cols && n + 8 < len; i++) {
        int w = snprintf(list + n, len - n, "%s\"%s\"", i ? ", " : "", p->cols[i].name);
        if (w < 0 || (size_t)w >= len - n) {
            snprintf(list + n, len - n, ", ...");
            break;
        }
        n += (size_t)w;
    }
}

/* The file column that spec names: a column name first, then "last", then
 * a 1-based number. -1: none; -2: a number out of range. */
static int csv_find(const struct parser *p, const char *spec)
{
    for (int i = 0; i < p->n_cols; i++)
        if (strcmp(p->cols[i].name, spec) == 0) return i;
    if (strcmp(spec, "last") == 0) return p->n_cols - 1;
    if (!*spec || strspn(spec, "0123456789") != strlen(spec)) return -1;
    long v = strlen(spec) > 9 ? -1 : strtol(spec, NULL, 10);
    return v >= 1 && v <= p->n_cols ? (int)v - 1 : -2;
}

enum { LIST_DROP, LIST_FEATURES, LIST_KEEP };
static const char *const list_flag[] = {"--drop", "--features", "--keep"};

/* Marks the columns of a comma-separated list in mark (n_cols). */
static cg_status csv_list(struct parser *p, const char *list, int which, bool *mark)
{
    const char *s = list;
    for (;;) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        while (n && (*s == ' ' || *s == '\t')) s++, n--;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
        char item[256];
        if (n == 0 || n >= sizeof item)
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "%s: %s \"%s\": %s column name in the list", p->name,
                             list_flag[which], list, n ? "a too long" : "an empty");
        memcpy(item, s, n);
        item[n] = 0;
        int j = csv_find(p, item);
        if (j < 0) {
            char names[512];
            csv_name_list(p, names, sizeof names);
            if (j == -2)
                return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                                 "%s: %s: no column %s: the file has %d columns", p->name,
                                 list_flag[which], item, p->n_cols);
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "%s:%lld: no column \"%s\" (in %s); the %s has %s", p->name,
                             (long long)(p->header_line ? p->header_line : p->first_line),
                             item, list_flag[which],
                             p->header_line ? "header" : "file (no header)", names);
        }
        mark[j] = true;
        if (!e) return CG_OK;
        s = e + 1;
    }
}

/* The target column (p->target), from opts.target or like's. */
static cg_status csv_plan_target(struct parser *p)
{
    p->target = -1;
    const struct cg_table *like = p->o.like;
    const char *spec = p->o.target;
    bool from_like = !spec && like && like->target >= 0;
    if (from_like) spec = like->cols[like->target].name;
    if (!spec) return CG_OK;
    if (from_like) {                    /* by name only; may be absent */
        for (int i = 0; i < p->n_cols; i++)
            if (strcmp(p->cols[i].name, spec) == 0) p->target = i;
        return CG_OK;
    }
    int j = csv_find(p, spec);
    if (j == -2)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: no target column %s: the file has %d columns", p->name, spec,
                         p->n_cols);
    if (j < 0) {
        char names[512];
        csv_name_list(p, names, sizeof names);
        char hint[160] = "";
        if (p->numeric_header)
            snprintf(hint, sizeof hint,
                     " (line %lld looks like data, not a header: --skip-rows %lld, and "
                     "--no-header if no header follows)",
                     (long long)p->header_line, (long long)p->header_line);
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s:%lld: no target column named \"%s\"; the %s has %s%s", p->name,
                         (long long)(p->header_line ? p->header_line : p->first_line), spec,
                         p->header_line ? "header" : "file (no header)", names, hint);
    }
    p->target = j;
    return CG_OK;
}

/* Whether like has a column named name + suffix; -1 when out of memory. */
static int like_has(const struct cg_table *like, const char *name, const char *suffix)
{
    struct cg__sb b = {0};
    cg__sb_printf(&b, "%s%s", name, suffix);
    int r = b.oom || !b.p ? -1 : cg_table_column(like, b.p) >= 0;
    free(b.p);
    return r;
}

/* Which file columns become which table columns. */
static cg_status csv_plan(struct parser *p)
{
    cg_status st = csv_plan_target(p);
    if (st != CG_OK) return st;
    const struct cg_table *like = p->o.like;
    bool *mark = calloc((size_t)p->n_cols * 3, sizeof *mark);
    if (!mark) return csv_oom(p);
    bool *drop = mark, *feat = mark + p->n_cols, *keep = mark + 2 * p->n_cols;
    if (!like) {
        if (p->o.drop && (st = csv_list(p, p->o.drop, LIST_DROP, drop)) != CG_OK) goto out;
        if (p->o.features && (st = csv_list(p, p->o.features, LIST_FEATURES, feat)) != CG_OK)
            goto out;
        if (p->o.keep && (st = csv_list(p, p->o.keep, LIST_KEEP, keep)) != CG_OK) goto out;
        if (p->target >= 0 && drop[p->target]) {
            st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                           "%s: --drop names the target column \"%s\"", p->name,
                           p->cols[p->target].name);
            goto out;
        }
    }
    p->n_out = 0;
    for (int j = 0; j < p->n_cols; j++) {
        struct col_state *c = &p->cols[j];
        bool read = true;
        c->keep = keep[j];
        if (like && j != p->target) {
            /* like's own columns, and date columns it expanded */
            int own = like_has(like, c->name, ""), date = like_has(like, c->name, "_year");
            if (own < 0 || date < 0) {
                st = csv_oom(p);
                goto out;
            }
            c->want_date = !own && date;
            read = own || c->want_date;
        } else if (j != p->target) {
            read = !drop[j] && (!p->o.features || feat[j]);
        }
        c->out = read ? p->n_out++ : -1;
    }
    if (p->target >= 0 && like) {
        /* The target is read as in training: a class column whose first
         * value looks like a number ("10", then "z") must not turn numeric
         * (found by fuzz_csv: "non-numeric value" on re-reading). */
        int lt = cg_table_column(like, p->cols[p->target].name);
        if (lt >= 0) p->cols[p->target].kind = like->cols[lt].kind;
    }
    if (p->target >= 0 && !like) {
        if (p->o.task == CG_TASK_REGRESSION) p->cols[p->target].kind = CG_COLUMN_NUMERIC;
        if (p->o.task == CG_TASK_CLASSIFICATION)
            p->cols[p->target].kind = CG_COLUMN_CATEGORICAL;
    }
    if (p->n_out == 0)
        st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: no columns left to read",
                       p->name);
out:
    free(mark);
    return st;
}

/* A header whose names read as numbers is likely a data row, or a line
 * of counts as in scikit-learn's bundled CSVs ("150,4,setosa,..."). */
static void csv_header_warning(struct parser *p)
{
    char list[200];
    size_t n = 0;
    int found = 0;
    for (int i = 0; i < p->n_cols; i++) {
        char *end;
        const char *s = p->cols[i].name;
        (void)strtod(s, &end);
        if (end == s || *end) continue;
        if (found++ < 3 && n < sizeof list)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s\"%s\"", found > 1 ? ", " : "",
                                  s);
    }
    p->numeric_header = found > 0;
    if (found)
        cg__sb_printf(&p->notes,
                      "warning: the header (line %lld) has numeric column names (%s%s): if "
                      "line %lld is not a header, use --skip-rows %lld --no-header\n",
                      (long long)p->header_line, list, found > 3 ? ", ..." : "",
                      (long long)p->header_line, (long long)p->header_line);
}

/* Reads the header record (or, with no_header, the first row, kept for
 * csv_rows): column names, unique; then plans the columns. */
static cg_status csv_header(struct parser *p)
{
    cg_status st;
    int cap = 0, end;
    /* UTF-8 byte order mark */
    if (csv_peek(p) == 0xEF && p->len - p->pos >= 3 &&
        memcmp(p->buf + p->pos, "\xEF\xBB\xBF", 3) == 0)
        p->pos += 3;
    if ((st = csv_skip_lines(p)) != CG_OK) return st;
    for (;;) {                                  /* skip blank lines */
        p->fcol = 0;
        if ((st = csv_field(p, &end)) != CG_OK) return st;
        if (end == END_INPUT)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s:%lld: empty file: expected %s",
                             p->name, (long long)p->line,
                             p->o.no_header ? "a data row" : "a header row");
        if (!(end == END_RECORD && p->flen == 0 && !p->fquoted)) break;
    }
    int64_t line = p->fline;
    struct cg__sb first = {0};                  /* no_header: the fields, NUL-separated */
    for (;;) {
        if (p->o.no_header) cg__sb_putn(&first, p->fld, p->flen + 1);
        if ((st = csv_header_field(p, &cap)) != CG_OK) {
            free(first.p);
            return st;
        }
        if (end != END_FIELD) break;
        p->fcol++;
        if ((st = csv_field(p, &end)) != CG_OK) {
            free(first.p);
            return st;
        }
    }
    if (p->o.no_header) {
        if (first.oom) return csv_oom(p);
        p->first = calloc((size_t)p->n_cols, sizeof *p->first);
        if (!p->first) {
            free(first.p);
            return csv_oom(p);
        }
        /* first.p holds n_cols NUL-terminated strings; p->first[0] owns it */
        const char *f = first.p;
        for (int j = 0; j < p->n_cols; j++, f += strlen(f) + 1) {
            p->first[j] = (char *)f;
            char gen[32];
            snprintf(gen, sizeof gen, "column%d", j + 1);
            free(p->cols[j].name);
            if (!(p->cols[j].name = cg__strdup(gen))) return csv_oom(p);
        }
        p->first_line = line;
        return csv_plan(p);
    }
    p->header_line = line;
    /* Duplicate names would make a target name ambiguous. */
    struct col_state **sorted = malloc((size_t)p->n_cols * sizeof *sorted);
    if (!sorted) return csv_oom(p);
    for (int i = 0; i < p->n_cols; i++) sorted[i] = &p->cols[i];
    qsort(sorted, (size_t)p->n_cols, sizeof *sorted, cmp_name);
    for (int i = 1; i < p->n_cols; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            int a = (int)(sorted[i - 1] - p->cols), b = (int)(sorted[i] - p->cols);
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s:%lld:%d: duplicate column name \"%s\" (also column %d)",
                           p->name, (long long)line, (a > b ? a : b) + 1,
                           sorted[i]->name, (a < b ? a : b) + 1);
            free(sorted);
            return st;
        }
    }
    free(sorted);
    if (!p->o.like) csv_header_warning(p);
    return csv_plan(p);
}

/* ----------------------------------------------------------------- rows -- */

static cg_status csv_grow_rows(struct parser *p)
{
    int64_t cap = p->cap_rows ? p->cap_rows + p->cap_rows / 2 + 1 : 1024, bytes;
    if (!cg__mul_ok(cap, p->n_out, &bytes) || !cg__mul_ok(bytes, sizeof(float), &bytes) ||
        (uint64_t)bytes > SIZE_MAX)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: table too large", p->name);
    float *v = realloc(p->vals, (size_t)bytes);
    if (!v)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "%s:%lld: out of memory for %lld rows of %d columns", p->name,
                         (long long)p->line, (long long)cap, p->n_out);
    p->vals = v;
    p->cap_rows = cap;
    return CG_OK;
}

/* The error for a first data row whose field count differs from the
 * header's: usually a first line that is not the header. */
static cg_status csv_header_mismatch(struct parser *p, int64_t line, int got)
{
    return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                     "%s:%lld: the first row has %d fields but the header (line %lld) has %d: "
                     "if line %lld is not a header row, use --skip-rows %lld (and --no-header "
                     "if the file has none)",
                     p->name, (long long)line, got, (long long)p->header_line, p->n_cols,
                     (long long)p->header_line, (long long)p->header_line);
}

/* Reads fields to the end of the record, counting them (for a message). */
static cg_status csv_count_rest(struct parser *p, int end, int *count)
{
    cg_status st;
    while (end == END_FIELD) {
        p->fcol++;
        if ((st = csv_field(p, &end)) != CG_OK) return st;
    }
    *count = p->fcol + 1;
    return CG_OK;
}

/* The no_header first row, read with the header, into the table. */
static cg_status csv_first_row(struct parser *p)
{
    cg_status st;
    if (p->n_rows == p->cap_rows && (st = csv_grow_rows(p)) != CG_OK) return st;
    float *row = p->vals + p->n_rows * p->n_out;
    p->row_drop = false;
    p->fline = p->first_line;
    for (p->fcol = 0; p->fcol < p->n_cols; p->fcol++)
        if ((st = csv_cell(p, p->first[p->fcol], row)) != CG_OK) return st;
    p->n_records++;
    if (!p->row_drop) p->n_rows++;
    return CG_OK;
}

/* Reads the data records; returns at the end of input. */
static cg_status csv_rows(struct parser *p)
{
    cg_status st;
    int end;
    if (p->first && (st = csv_first_row(p)) != CG_OK) return st;
    for (;;) {
        if (p->n_rows == p->cap_rows && (st = csv_grow_rows(p)) != CG_OK) return st;
        float *row = p->vals + p->n_rows * p->n_out;
        int64_t rec_line = p->line;
        p->fcol = 0;
        p->row_drop = false;
        if ((st = csv_field(p, &end)) != CG_OK) return st;
        if (end == END_INPUT) return CG_OK;
        if (end == END_RECORD && p->flen == 0 && !p->fquoted) continue;   /* blank */
        rec_line = p->fline;
        bool first = p->n_records == 0 && p->header_line > 0;
        for (;;) {
            if (p->fcol >= p->n_cols) {
                int got;
                if (first && (st = csv_count_rest(p, end, &got)) == CG_OK)
                    return csv_header_mismatch(p, rec_line, got);
                if (first) return st;
                return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                                 "%s:%lld:%d: too many fields: the %s has %d columns",
                                 p->name, (long long)p->fline, p->fcol + 1,
                                 p->header_line ? "header" : "first row", p->n_cols);
            }
            if ((st = csv_cell(p, p->fld, row)) != CG_OK) return st;
            if (end != END_FIELD) break;
            p->fcol++;
            if ((st = csv_field(p, &end)) != CG_OK) return st;
        }
        if (p->fcol + 1 < p->n_cols) {
            if (first) return csv_header_mismatch(p, rec_line, p->fcol + 1);
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: too few fields: expected %d, got %d", p->name,
                             (long long)rec_line, p->fcol + 2, p->n_cols, p->fcol + 1);
        }
        p->n_records++;
        if (!p->row_drop) p->n_rows++;
    }
}

/* ----------------------------------------------------------- finishing -- */

struct cat_sort {
    const char *s;
    double v;
    int old;
};

static int cmp_cat_num(const void *a, const void *b)
{
    const struct cat_sort *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return strcmp(x->s, y->s);
}

static int cmp_cat_str(const void *a, const void *b)
{
    return strcmp(((const struct cat_sort *)a)->s, ((const struct cat_sort *)b)->s);
}

/* Keeps the categories that the kept rows use, sorted (numerically when all
 * are numbers), remaps the cells, and fills missing cells with the most
 * frequent category. The sorted names go to out->categories. */
static cg_status csv_finish_categorical(struct parser *p, struct cat_map *m, int col,
                                        struct cg_column *out)
{
    int64_t *count = calloc((size_t)m->n + 1, sizeof *count);
    struct cat_sort *cs = malloc(((size_t)m->n + 1) * sizeof *cs);
    int *remap = malloc(((size_t)m->n + 1) * sizeof *remap);
    if (!count || !cs || !remap) {
        free(count); free(cs); free(remap);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
    }
    for (int64_t r = 0; r < p->n_rows; r++) {
        float v = p->vals[r * p->n_out + col];
        if (!isnan(v)) count[(int)v]++;
    }
    int n = 0, mode = -1;
    bool numeric = true;
    for (int i = 0; i < m->n; i++) {
        if (!count[i]) continue;
        if (mode < 0 || count[i] > count[mode]) mode = i;
        cs[n].s = m->keys[i];
        cs[n].old = i;
        if (!csv_number(m->keys[i], &cs[n].v) || isnan(cs[n].v)) numeric = false;
        n++;
    }
    if (n == 0) {   /* every kept cell missing: nothing to fill them with (fuzz_csv) */
        free(count); free(cs); free(remap);
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: column %d (\"%s\") has no values in the rows kept, so its "
                         "missing cells cannot be filled", p->name, col + 1, out->name);
    }
    qsort(cs, (size_t)n, sizeof *cs, numeric ? cmp_cat_num : cmp_cat_str);
    out->categories = calloc((size_t)n + 1, sizeof *out->categories);
    if (!out->categories) {
        free(count); free(cs); free(remap);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
    }
    for (int i = 0; i < n; i++) {
        remap[cs[i].old] = i;
        out->categories[i] = m->keys[cs[i].old];
        m->keys[cs[i].old] = NULL;                  /* moved */
    }
    out->n_categories = n;
    float fill = mode >= 0 ? (float)remap[mode] : 0.0f;
    for (int64_t r = 0; r < p->n_rows; r++) {
        float *v = &p->vals[r * p->n_out + col];
        *v = isnan(*v) ? fill : (float)remap[(int)*v];
    }
    free(count); free(cs); free(remap);
    return CG_OK;
}

static void csv_fill_numeric(struct parser *p, int col, float value)
{
    for (int64_t r = 0; r < p->n_rows; r++) {
        float *v = &p->vals[r * p->n_out + col];
        if (isnan(*v)) *v = value;
    }
}

/* ------------------------------------------------------------- shaping -- */

enum { SHAPE_KEEP, SHAPE_DATE, SHAPE_DROP };

/* A date column's features for each category: (n_categories, 8), and
 * whether any value has a time of day. False when a category is not a
 * date (*bad names it). */
static bool shape_dates(const struct cg_column *c, float *feat, bool *has_time,
                        const char **bad)
{
    *has_time = false;
    for (int k = 0; k < c->n_categories; k++) {
        struct cg__date d;
        if (!cg__date_parse(c->categories[k], &d)) {
            *bad = c->categories[k];
            return false;
        }
        cg__date_features(&d, feat + (size_t)k * CG__DATE_FEATURES);
        *has_time |= d.has_time;
    }
    return true;
}

/* What becomes of table column k (read from file column c): kept, turned
 * into date features (feat filled, *n_feat of them) or dropped. */
static cg_status shape_decide(struct parser *p, const struct cg_table *t, int k,
                              const struct col_state *c, float *feat, int *n_feat, int *action)
{
    const struct cg_column *tc = &t->cols[k];
    const struct cg_table *like = p->o.like;
    *action = SHAPE_KEEP;
    if (k == t->target) return CG_OK;
    bool has_time = false;
    const char *bad = NULL;
    char ex[64];
    if (like) {
        if (!c->want_date) return CG_OK;
        if (tc->kind != CG_COLUMN_CATEGORICAL || !shape_dates(tc, feat, &has_time, &bad))
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "%s: column \"%s\" held dates in training, but %s%s%s is not a "
                             "date",
                             p->name, tc->name, bad ? "\"" : "",
                             bad ? csv_excerpt(bad, ex, sizeof ex) : "a number",
                             bad ? "\"" : "");
        int hour = like_has(like, tc->name, "_hour_sin");
        if (hour < 0) return csv_oom(p);
        *n_feat = hour ? 8 : 6;
        *action = SHAPE_DATE;
        return CG_OK;
    }
    if (tc->kind != CG_COLUMN_CATEGORICAL || c->keep) return CG_OK;
    if (shape_dates(tc, feat, &has_time, &bad)) {
        *n_feat = has_time ? 8 : 6;
        *action = SHAPE_DATE;
    } else if (tc->n_categories > CG_TEXT_DISTINCT_MAX &&
               2 * (int64_t)tc->n_categories > t->n_rows) {
        *action = SHAPE_DROP;
    }
    return CG_OK;
}

/* Rebuilds t with the columns' actions applied. feats[k]: column k's date
 * features per category (SHAPE_DATE only). */
static cg_status shape_apply(struct parser *p, struct cg_table *t, const int *action,
                             float *const *feats, const int *n_feat)
{
    int n_new = 0;
    for (int k = 0; k < t->n_cols; k++)
        n_new += action[k] == SHAPE_KEEP ? 1 : action[k] == SHAPE_DATE ? n_feat[k] : 0;
    if (n_new == (t->target >= 0))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: no feature columns left after dropping ID-like text columns "
                         "(--keep keeps one)", p->name);
    struct cg_column *cols = calloc((size_t)n_new, sizeof *cols);
    float *vals = malloc(((size_t)t->n_rows * (size_t)n_new + 1) * sizeof *vals);
    if (!cols || !vals) {
        free(cols);
        free(vals);
        return csv_oom(p);
    }
    cg_status st = CG_OK;
    int to = 0, target = -1;
    for (int k = 0; k < t->n_cols && st == CG_OK; k++) {
        struct cg_column *c = &t->cols[k];
        if (action[k] == SHAPE_DROP) continue;
        if (action[k] == SHAPE_KEEP) {
            if (k == t->target) target = to;
            for (int64_t r = 0; r < t->n_rows; r++)
                vals[r * n_new + to] = t->values[r * t->n_cols + k];
            cols[to++] = *c;
            memset(c, 0, sizeof *c);            /* moved */
            continue;
        }
        for (int f = 0; f < n_feat[k]; f++, to++) {
            struct cg__sb name = {0};
            cg__sb_printf(&name, "%s_%s", c->name, cg__date_feature_names[f]);
            cols[to].kind = CG_COLUMN_NUMERIC;
            cols[to].name = name.p;
            if (name.oom || !name.p) {
                st = csv_oom(p);
                break;
            }
            bool taken = false;                  /* moved columns have NULL names */
            for (int i = 0; i < t->n_cols; i++)
                taken |= t->cols[i].name && strcmp(t->cols[i].name, name.p) == 0;
            for (int i = 0; i < to; i++) taken |= strcmp(cols[i].name, name.p) == 0;
            if (taken) {
                st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                               "%s: the date column \"%s\" would become \"%s\", which is "
                               "already a column (--keep %s keeps it as text)",
                               p->name, c->name, name.p, c->name);
                break;
            }
            for (int64_t r = 0; r < t->n_rows; r++) {
                int cat = (int)t->values[r * t->n_cols + k];
                vals[r * n_new + to] = feats[k][(size_t)cat * CG__DATE_FEATURES + f];
            }
        }
    }
    /* t's columns that were moved are zeroed; free the rest with t's. */
    for (int k = 0; k < t->n_cols; k++) {
        free(t->cols[k].name);
        for (int j = 0; j < t->cols[k].n_categories; j++) free(t->cols[k].categories[j]);
        free(t->cols[k].categories);
    }
    free(t->cols);
    free(t->values);
    t->cols = cols;
    t->values = vals;
    t->n_cols = n_new;                          /* unbuilt entries are zero */
    t->target = target;
    return st;
}

/* Notes for what shape_apply did, before it moves the columns. */
static void shape_notes(struct parser *p, const struct cg_table *t, const int *action,
                        const int *n_feat)
{
    if (p->o.like) return;
    for (int k = 0; k < t->n_cols; k++) {
        const struct cg_column *c = &t->cols[k];
        if (action[k] == SHAPE_DATE) {
            cg__sb_printf(&p->notes, "note: column \"%s\" holds dates: %d numeric features",
                          c->name, n_feat[k]);
            for (int f = 0; f < n_feat[k]; f++)
                cg__sb_printf(&p->notes, "%s %s_%s", f ? "," : "", c->name,
                              cg__date_feature_names[f]);
            cg__sb_putn(&p->notes, "\n", 1);
        } else if (action[k] == SHAPE_DROP) {
            cg__sb_printf(&p->notes,
                          "warning: dropped column \"%s\": text with %d distinct values in "
                          "%lld rows would one-hot encode into %d features (--keep %s keeps "
                          "it)\n",
                          c->name, c->n_categories, (long long)t->n_rows, c->n_categories,
                          c->name);
        }
    }
}

/* Dates to numbers, ID-like text dropped. */
static cg_status shape_columns(struct parser *p, struct cg_table *t, const int *src)
{
    int n = t->n_cols;
    int *action = calloc((size_t)n, sizeof *action), *n_feat = calloc((size_t)n, sizeof *n_feat);
    float **feats = calloc((size_t)n, sizeof *feats);
    cg_status st = CG_OK;
    bool change = false;
    if (!action || !n_feat || !feats) st = csv_oom(p);
    for (int k = 0; k < n && st == CG_OK; k++) {
        if (t->cols[k].kind == CG_COLUMN_CATEGORICAL &&
            !(feats[k] = malloc(((size_t)t->cols[k].n_categories + 1) * CG__DATE_FEATURES *
                                sizeof **feats))) {
            st = csv_oom(p);
            break;
        }
        st = shape_decide(p, t, k, &p->cols[src[k]], feats[k], &n_feat[k], &action[k]);
        change |= action[k] != SHAPE_KEEP;
    }
    if (st == CG_OK && change) {
        shape_notes(p, t, action, n_feat);
        st = shape_apply(p, t, action, feats, n_feat);
    }
    for (int k = 0; feats && k < n; k++) free(feats[k]);
    free(feats);
    free(action);
    free(n_feat);
    return st;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

CG_API cg_status cg_table_infer_task(const struct cg_table *t, int column, enum cg_task *task,
                                     char *reason, size_t len)
{
    if (!t || !task || column < 0 || column >= t->n_cols)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_table_infer_task: no table or column %d", column);
    char dummy[1];
    if (!reason || !len) reason = dummy, len = sizeof dummy;
    const struct cg_column *c = &t->cols[column];
    if (c->kind == CG_COLUMN_CATEGORICAL) {
        *task = CG_TASK_CLASSIFICATION;
        snprintf(reason, len, "classification: text target \"%s\" with %d classes", c->name,
                 c->n_categories);
        return CG_OK;
    }
    /* Distinct values, up to one more than the limit. */
    float seen[CG_INT_CLASSES_MAX + 1];
    int n_seen = 0;
    *task = CG_TASK_REGRESSION;
    for (int64_t r = 0; r < t->n_rows; r++) {
        float v = t->values[r * t->n_cols + column];
        if (v != floorf(v)) {
            snprintf(reason, len,
                     "regression: target \"%s\" has non-integer values such as %g (--task "
                     "classification to override)",
                     c->name, (double)v);
            return CG_OK;
        }
        int i = 0;
        while (i < n_seen && seen[i] != v) i++;
        if (i == n_seen && n_seen <= CG_INT_CLASSES_MAX) seen[n_seen++] = v;
    }
    if (n_seen > CG_INT_CLASSES_MAX) {
        snprintf(reason, len,
                 "regression: integer target \"%s\" with more than %d distinct values (--task "
                 "classification to override)",
                 c->name, CG_INT_CLASSES_MAX);
    } else if (2 * (int64_t)n_seen > t->n_rows) {
        snprintf(reason, len,
                 "regression: integer target \"%s\" with %d distinct values in only %lld rows "
                 "(--task classification to override)",
                 c->name, n_seen, (long long)t->n_rows);
    } else {
        *task = CG_TASK_CLASSIFICATION;
        snprintf(reason, len,
                 "classification: integer target \"%s\" with %d distinct values (--task "
                 "regression to override)",
                 c->name, n_seen);
    }
    return CG_OK;
}

/* A numeric target becomes categorical: its distinct values (few, checked
 * by cg_table_infer_task) sorted, as categories "0", "1", ... */
static cg_status shape_int_classes(struct parser *p, struct cg_table *t)
{
    struct cg_column *c = &t->cols[t->target];
    float seen[CG_INT_CLASSES_MAX + 1];
    int n = 0;
    for (int64_t r = 0; r < t->n_rows; r++) {
        float v = t->values[r * t->n_cols + t->target] + 0.0f;   /* no "-0" */
        int i = 0;
        while (i < n && seen[i] != v) i++;
        if (i == n) {
            if (n == CG_INT_CLASSES_MAX + 1) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: too many classes", p->name);
            seen[n++] = v;
        }
    }
    qsort(seen, (size_t)n, sizeof *seen, cmp_float);
    char **cats = calloc((size_t)n + 1, sizeof *cats);
    if (!cats) return csv_oom(p);
    for (int i = 0; i < n; i++) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.0f", (double)seen[i]);
        if (!(cats[i] = cg__strdup(buf))) {
            for (int j = 0; j < i; j++) free(cats[j]);
            free(cats);
            return csv_oom(p);
        }
    }
    for (int64_t r = 0; r < t->n_rows; r++) {
        float *v = &t->values[r * t->n_cols + t->target];
        int i = 0;
        while (seen[i] != *v + 0.0f) i++;
        *v = (float)i;
    }
    c->kind = CG_COLUMN_CATEGORICAL;
    c->categories = cats;
    c->n_categories = n;
    return CG_OK;
}

/* The target's task, and why. */
static cg_status shape_task(struct parser *p, struct cg_table *t)
{
    if (t->target < 0) return CG_OK;
    struct cg_column *c = &t->cols[t->target];
    char reason[512];
    cg_status st;
    const char *tn = c->kind == CG_COLUMN_CATEGORICAL ? "classification" : "regression";
    if (p->o.like) {
        t->task = c->kind == CG_COLUMN_CATEGORICAL ? CG_TASK_CLASSIFICATION : CG_TASK_REGRESSION;
        if (p->o.like->task != CG_TASK_AUTO) t->task = p->o.like->task;
        tn = t->task == CG_TASK_CLASSIFICATION ? "classification" : "regression";
        snprintf(reason, sizeof reason, "%s: as the model was trained (target \"%s\")", tn,
                 c->name);
    } else if (p->o.task != CG_TASK_AUTO) {
        t->task = p->o.task;
        snprintf(reason, sizeof reason, "%s: set by --task %s (target \"%s\")", tn, tn, c->name);
    } else {
        if ((st = cg_table_infer_task(t, t->target, &t->task, reason, sizeof reason)) != CG_OK)
            return st;
        if (t->task == CG_TASK_CLASSIFICATION && c->kind == CG_COLUMN_NUMERIC &&
            (st = shape_int_classes(p, t)) != CG_OK)
            return st;
    }
    if (!p->o.like && t->task == CG_TASK_CLASSIFICATION && c->n_categories < 2) {
        char ex[64];
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: target \"%s\" has a single class (\"%s\") in all %lld rows: "
                         "nothing to classify",
                         p->name, c->name,
                         c->n_categories ? csv_excerpt(c->categories[0], ex, sizeof ex) : "",
                         (long long)t->n_rows);
    }
    if (!(t->task_reason = cg__strdup(reason))) return csv_oom(p);
    return CG_OK;
}

static cg_status csv_finish(struct parser *p, struct cg_table **out)
{
    cg_status st;
    if (p->n_records == 0)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s:%lld: no data rows: the file has only a header", p->name,
                         (long long)p->line);
    if (p->n_rows == 0)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: no rows left: all %lld rows had missing values", p->name,
                         (long long)p->n_records);
    struct cg_table *t = calloc(1, sizeof *t);
    int *src = malloc((size_t)p->n_out * sizeof *src);
    if (!t || !src || !(t->cols = calloc((size_t)p->n_out, sizeof *t->cols))) {
        free(t);
        free(src);
        return csv_oom(p);
    }
    t->n_cols = p->n_out;
    t->target = p->target >= 0 ? p->cols[p->target].out : -1;
    t->n_rows = p->n_rows;
    for (int j = 0; j < p->n_cols; j++) {
        struct col_state *c = &p->cols[j];
        int k = c->out;
        if (k < 0) continue;
        src[k] = j;
        struct cg_column *tc = &t->cols[k];
        tc->name = c->name;
        c->name = NULL;
        if (c->kind == CG_COLUMN_CATEGORICAL) {
            tc->kind = CG_COLUMN_CATEGORICAL;
            if ((st = csv_finish_categorical(p, &c->cats, k, tc)) != CG_OK) goto fail;
            continue;
        }
        tc->kind = CG_COLUMN_NUMERIC;
        if (!c->has_missing || p->o.missing == CG_MISSING_DROP) continue;
        if (p->o.missing == CG_MISSING_FILL_CONSTANT) {
            csv_fill_numeric(p, k, p->o.fill_value);
            continue;
        }
        double sum = 0;
        int64_t n = 0;
        for (int64_t r = 0; r < p->n_rows; r++) {
            float v = p->vals[r * p->n_out + k];
            if (!isnan(v)) { sum += v; n++; }
        }
        if (n == 0) {
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s: column %d (\"%s\") has no values to take the mean of",
                           p->name, j + 1, tc->name);
            goto fail;
        }
        csv_fill_numeric(p, k, (float)(sum / (double)n));
    }
    /* Give back the growth slack. */
    float *v = realloc(p->vals, ((size_t)p->n_rows * (size_t)p->n_out + 1) * sizeof(float));
    t->values = v ? v : p->vals;
    p->vals = NULL;
    if ((st = shape_columns(p, t, src)) != CG_OK || (st = shape_task(p, t)) != CG_OK) goto fail;
    if (p->notes.oom) {
        st = csv_oom(p);
        goto fail;
    }
    t->notes = p->notes.p;
    p->notes.p = NULL;
    free(src);
    *out = t;
    return CG_OK;
fail:
    free(src);
    cg_table_free(t);
    return st;
}

static void csv_parser_free(struct parser *p)
{
    for (int j = 0; j < p->n_cols; j++) {
        free(p->cols[j].name);
        cat_map_free(&p->cols[j].cats);
    }
    free(p->cols);
    free(p->vals);
    free(p->fld);
    if (p->first) free(p->first[0]);            /* owns every field's text */
    free(p->first);
    free(p->notes.p);
}

/* ------------------------------------------------------------------ API -- */

CG_API struct cg_csv_options cg_csv_options_default(void)
{
    struct cg_csv_options o = {.delimiter = ',', .target = NULL, .task = CG_TASK_AUTO,
                               .missing = CG_MISSING_ERROR, .fill_value = 0.0f,
                               .reject_categorical = false, .skip_rows = 0,
                               .no_header = false, .drop = NULL, .features = NULL,
                               .keep = NULL, .like = NULL};
    return o;
}

/* Reads from f or gz. */
static cg_status csv_read(FILE *f, gzFile gz, const char *name, const struct cg_csv_options *opts,
                          struct cg_table **out)
{
    struct parser *p = calloc(1, sizeof *p);
    if (!p) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_csv_read: out of memory");
    p->f = f;
    p->gz = gz;
    p->name = name ? name : "(stream)";
    p->o = opts ? *opts : cg_csv_options_default();
    if (!p->o.delimiter) p->o.delimiter = ',';
    p->line = 1;
    cg_status st;
    if (p->o.delimiter == '"' || p->o.delimiter == '\n' || p->o.delimiter == '\r')
        st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                       "cg_csv_read: the delimiter cannot be a quote or a line end");
    else if ((unsigned)p->o.missing > CG_MISSING_FILL_CONSTANT ||
             (unsigned)p->o.task > CG_TASK_CLASSIFICATION || p->o.skip_rows < 0)
        st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_csv_read: bad option value");
    else if ((st = csv_header(p)) == CG_OK && (st = csv_rows(p)) == CG_OK)
        st = csv_finish(p, out);
    csv_parser_free(p);
    free(p);
    return st;
}

CG_API cg_status cg_csv_read_stream(FILE *f, const char *name, const struct cg_csv_options *opts,
                                    struct cg_table **out)
{
    if (out) *out = NULL;
    if (!f || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_csv_read_stream: NULL argument");
    struct cg__c_numeric loc;
    cg__c_numeric_begin(&loc);
    cg_status st = csv_read(f, NULL, name, opts, out);
    cg__c_numeric_end(&loc);
    return st;
}

CG_API cg_status cg_csv_read(const char *path, const struct cg_csv_options *opts,
                             struct cg_table **out)
{
    if (out) *out = NULL;
    if (!path || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_csv_read: NULL argument");
    /* zlib reads plain files as they are and gzip files decompressed. */
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return cg__error(NULL, CG_STATUS_IO_ERROR, "%s: cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, CSV_CHUNK);
    struct cg__c_numeric loc;
    cg__c_numeric_begin(&loc);
    cg_status st = csv_read(NULL, gz, path, opts, out);
    cg__c_numeric_end(&loc);
    gzclose(gz);
    return st;
}

CG_API void cg_table_free(struct cg_table *t)
{
    if (!t) return;
    for (int j = 0; t->cols && j < t->n_cols; j++) {
        free(t->cols[j].name);
        for (int k = 0; t->cols[j].categories && k < t->cols[j].n_categories; k++)
            free(t->cols[j].categories[k]);
        free(t->cols[j].categories);
    }
    free(t->cols);
    free(t->values);
    free(t->task_reason);
    free(t->notes);
    free(t);
}

CG_API int cg_table_column(const struct cg_table *t, const char *name)
{
    if (!t || !name) return -1;
    for (int j = 0; j < t->n_cols; j++)
        if (strcmp(t->cols[j].name, name) == 0) return j;
    return -1;
}
