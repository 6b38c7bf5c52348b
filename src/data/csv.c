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
 * Numbers are parsed with strtod, so the decimal point is the C locale's
 * '.', unless the program has called setlocale(LC_NUMERIC, ...).
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
};

struct parser {
    FILE *f;
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

    struct col_state *cols;
    int n_cols;
    int target;

    float *vals;              /* (n_rows, n_cols), capacity cap_rows */
    int64_t n_rows, cap_rows;
    int64_t n_records;        /* data records seen, dropped or not   */
    bool row_drop;
};

/* ---------------------------------------------------------------- input -- */

static int csv_fill(struct parser *p)
{
    if (p->eof) return 0;
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
    return cg__error(NULL, CG_STATUS_IO_ERROR, "%s:%lld: read error: %s", p->name,
                     (long long)p->line, strerror(errno));
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
static cg_status csv_check_text(const struct parser *p, const char *what)
{
    const unsigned char *s = (const unsigned char *)p->fld;
    for (size_t i = 0; i < p->flen;) {
        unsigned c = s[i], len = 1, cp = c, min = 0;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else if (c >= 0x80 || c == 0) len = 0;
        for (unsigned k = 1; len && k < len; k++) {
            if (i + k >= p->flen || (s[i + k] & 0xC0) != 0x80) len = 0;
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

static cg_status csv_cell(struct parser *p, float *row)
{
    int col = p->fcol;
    struct col_state *c = &p->cols[col];
    const char *s = p->fld;
    char ex[64];
    if (csv_is_missing(s)) {
        if (p->o.missing == CG_MISSING_ERROR)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: missing value in column \"%s\" (an option can "
                             "drop or fill missing values)",
                             p->name, (long long)p->fline, col + 1, c->name);
        if (col == p->target || p->o.missing == CG_MISSING_DROP) p->row_drop = true;
        c->has_missing = true;
        row[col] = NAN;
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
        cg_status ts = csv_check_text(p, col == p->target ? "the class name" : "the category");
        if (ts != CG_OK) return ts;
        int idx = cat_map_intern(&c->cats, s);
        if (idx < 0) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
        row[col] = (float)idx;
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
    row[col] = v;
    return CG_OK;
}

/* --------------------------------------------------------------- header -- */

static int cmp_name(const void *a, const void *b)
{
    const struct col_state *x = *(const struct col_state *const *)a;
    const struct col_state *y = *(const struct col_state *const *)b;
    return strcmp(x->name, y->name);
}

static cg_status csv_header_field(struct parser *p, int *cap)
{
    if (p->n_cols >= CSV_MAX_COLS)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s:%lld: more than %d columns",
                         p->name, (long long)p->fline, CSV_MAX_COLS);
    if (p->n_cols == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        struct col_state *cols = realloc(p->cols, (size_t)nc * sizeof *cols);
        if (!cols) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
        p->cols = cols;
        *cap = nc;
    }
    struct col_state *c = &p->cols[p->n_cols];
    memset(c, 0, sizeof *c);
    c->kind = KIND_UNDECIDED;
    cg_status ts = csv_check_text(p, "the column name");
    if (ts != CG_OK) return ts;
    char gen[32];
    if (p->flen == 0) snprintf(gen, sizeof gen, "column%d", p->n_cols + 1);
    c->name = cg__strdup(p->flen ? p->fld : gen);
    if (!c->name) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
    p->n_cols++;
    return CG_OK;
}

/* Reads the header record: column names, unique; finds the target. */
static cg_status csv_header(struct parser *p)
{
    cg_status st;
    int cap = 0, end;
    /* UTF-8 byte order mark */
    if (csv_peek(p) == 0xEF && p->len - p->pos >= 3 &&
        memcmp(p->buf + p->pos, "\xEF\xBB\xBF", 3) == 0)
        p->pos += 3;
    for (;;) {                                  /* skip blank lines */
        p->fcol = 0;
        if ((st = csv_field(p, &end)) != CG_OK) return st;
        if (end == END_INPUT)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld: empty file: expected a header row", p->name,
                             (long long)p->line);
        if (!(end == END_RECORD && p->flen == 0 && !p->fquoted)) break;
    }
    int64_t header_line = p->fline;
    for (;;) {
        if ((st = csv_header_field(p, &cap)) != CG_OK) return st;
        if (end != END_FIELD) break;
        p->fcol++;
        if ((st = csv_field(p, &end)) != CG_OK) return st;
    }
    /* Duplicate names would make a target name ambiguous. */
    struct col_state **sorted = malloc((size_t)p->n_cols * sizeof *sorted);
    if (!sorted) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
    for (int i = 0; i < p->n_cols; i++) sorted[i] = &p->cols[i];
    qsort(sorted, (size_t)p->n_cols, sizeof *sorted, cmp_name);
    for (int i = 1; i < p->n_cols; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            int a = (int)(sorted[i - 1] - p->cols), b = (int)(sorted[i] - p->cols);
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s:%lld:%d: duplicate column name \"%s\" (also column %d)",
                           p->name, (long long)header_line, (a > b ? a : b) + 1,
                           sorted[i]->name, (a < b ? a : b) + 1);
            free(sorted);
            return st;
        }
    }
    free(sorted);

    p->target = -1;
    if (p->o.target) {
        for (int i = 0; i < p->n_cols; i++)
            if (strcmp(p->cols[i].name, p->o.target) == 0) p->target = i;
        if (p->target < 0) {
            char list[512];
            size_t n = 0;
            list[0] = 0;
            for (int i = 0; i < p->n_cols && n + 8 < sizeof list; i++) {
                int w = snprintf(list + n, sizeof list - n, "%s\"%s\"", i ? ", " : "",
                                 p->cols[i].name);
                if (w < 0 || (size_t)w >= sizeof list - n) {
                    snprintf(list + n, sizeof list - n, ", ...");
                    break;
                }
                n += (size_t)w;
            }
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "%s:%lld: no target column named \"%s\"; the header has %s",
                             p->name, (long long)header_line, p->o.target, list);
        }
        if (p->o.task == CG_TASK_REGRESSION) p->cols[p->target].kind = CG_COLUMN_NUMERIC;
        if (p->o.task == CG_TASK_CLASSIFICATION)
            p->cols[p->target].kind = CG_COLUMN_CATEGORICAL;
    }
    return CG_OK;
}

/* ----------------------------------------------------------------- rows -- */

static cg_status csv_grow_rows(struct parser *p)
{
    int64_t cap = p->cap_rows ? p->cap_rows + p->cap_rows / 2 + 1 : 1024, bytes;
    if (!cg__mul_ok(cap, p->n_cols, &bytes) || !cg__mul_ok(bytes, sizeof(float), &bytes) ||
        (uint64_t)bytes > SIZE_MAX)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: table too large", p->name);
    float *v = realloc(p->vals, (size_t)bytes);
    if (!v)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "%s:%lld: out of memory for %lld rows of %d columns", p->name,
                         (long long)p->line, (long long)cap, p->n_cols);
    p->vals = v;
    p->cap_rows = cap;
    return CG_OK;
}

/* Reads the data records; returns at the end of input. */
static cg_status csv_rows(struct parser *p)
{
    cg_status st;
    int end;
    for (;;) {
        if (p->n_rows == p->cap_rows && (st = csv_grow_rows(p)) != CG_OK) return st;
        float *row = p->vals + p->n_rows * p->n_cols;
        int64_t rec_line = p->line;
        p->fcol = 0;
        p->row_drop = false;
        if ((st = csv_field(p, &end)) != CG_OK) return st;
        if (end == END_INPUT) return CG_OK;
        if (end == END_RECORD && p->flen == 0 && !p->fquoted) continue;   /* blank */
        rec_line = p->fline;
        for (;;) {
            if (p->fcol >= p->n_cols)
                return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                                 "%s:%lld:%d: too many fields: the header has %d columns",
                                 p->name, (long long)p->fline, p->fcol + 1, p->n_cols);
            if ((st = csv_cell(p, row)) != CG_OK) return st;
            if (end != END_FIELD) break;
            p->fcol++;
            if ((st = csv_field(p, &end)) != CG_OK) return st;
        }
        if (p->fcol + 1 < p->n_cols)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s:%lld:%d: too few fields: expected %d, got %d", p->name,
                             (long long)rec_line, p->fcol + 2, p->n_cols, p->fcol + 1);
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
static cg_status csv_finish_categorical(struct parser *p, int col, struct cg_column *out)
{
    struct cat_map *m = &p->cols[col].cats;
    int64_t *count = calloc((size_t)m->n + 1, sizeof *count);
    struct cat_sort *cs = malloc(((size_t)m->n + 1) * sizeof *cs);
    int *remap = malloc(((size_t)m->n + 1) * sizeof *remap);
    if (!count || !cs || !remap) {
        free(count); free(cs); free(remap);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
    }
    for (int64_t r = 0; r < p->n_rows; r++) {
        float v = p->vals[r * p->n_cols + col];
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
        float *v = &p->vals[r * p->n_cols + col];
        *v = isnan(*v) ? fill : (float)remap[(int)*v];
    }
    free(count); free(cs); free(remap);
    return CG_OK;
}

static void csv_fill_numeric(struct parser *p, int col, float value)
{
    for (int64_t r = 0; r < p->n_rows; r++) {
        float *v = &p->vals[r * p->n_cols + col];
        if (isnan(*v)) *v = value;
    }
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
    if (!t || !(t->cols = calloc((size_t)p->n_cols, sizeof *t->cols))) {
        free(t);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of memory", p->name);
    }
    t->n_cols = p->n_cols;
    t->target = p->target;
    for (int j = 0; j < p->n_cols; j++) {
        struct col_state *c = &p->cols[j];
        struct cg_column *tc = &t->cols[j];
        tc->name = c->name;
        c->name = NULL;
        if (c->kind == CG_COLUMN_CATEGORICAL) {
            tc->kind = CG_COLUMN_CATEGORICAL;
            if ((st = csv_finish_categorical(p, j, tc)) != CG_OK) goto fail;
            continue;
        }
        tc->kind = CG_COLUMN_NUMERIC;
        if (!c->has_missing || p->o.missing == CG_MISSING_DROP) continue;
        if (p->o.missing == CG_MISSING_FILL_CONSTANT) {
            csv_fill_numeric(p, j, p->o.fill_value);
            continue;
        }
        double sum = 0;
        int64_t n = 0;
        for (int64_t r = 0; r < p->n_rows; r++) {
            float v = p->vals[r * p->n_cols + j];
            if (!isnan(v)) { sum += v; n++; }
        }
        if (n == 0) {
            st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                           "%s: column %d (\"%s\") has no values to take the mean of",
                           p->name, j + 1, tc->name);
            goto fail;
        }
        csv_fill_numeric(p, j, (float)(sum / (double)n));
    }
    if (p->target >= 0)
        t->task = t->cols[p->target].kind == CG_COLUMN_CATEGORICAL ? CG_TASK_CLASSIFICATION
                                                                   : CG_TASK_REGRESSION;
    /* Give back the growth slack. */
    float *v = realloc(p->vals, (size_t)p->n_rows * (size_t)p->n_cols * sizeof(float));
    t->values = v ? v : p->vals;
    p->vals = NULL;
    t->n_rows = p->n_rows;
    *out = t;
    return CG_OK;
fail:
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
}

/* ------------------------------------------------------------------ API -- */

CG_API struct cg_csv_options cg_csv_options_default(void)
{
    struct cg_csv_options o = {.delimiter = ',', .target = NULL, .task = CG_TASK_AUTO,
                               .missing = CG_MISSING_ERROR, .fill_value = 0.0f,
                               .reject_categorical = false};
    return o;
}

CG_API cg_status cg_csv_read_stream(FILE *f, const char *name, const struct cg_csv_options *opts,
                                    struct cg_table **out)
{
    if (out) *out = NULL;
    if (!f || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_csv_read_stream: NULL argument");
    struct parser *p = calloc(1, sizeof *p);
    if (!p) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_csv_read: out of memory");
    p->f = f;
    p->name = name ? name : "(stream)";
    p->o = opts ? *opts : cg_csv_options_default();
    if (!p->o.delimiter) p->o.delimiter = ',';
    p->line = 1;
    cg_status st;
    if (p->o.delimiter == '"' || p->o.delimiter == '\n' || p->o.delimiter == '\r')
        st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                       "cg_csv_read: the delimiter cannot be a quote or a line end");
    else if ((unsigned)p->o.missing > CG_MISSING_FILL_CONSTANT ||
             (unsigned)p->o.task > CG_TASK_CLASSIFICATION)
        st = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_csv_read: bad option value");
    else if ((st = csv_header(p)) == CG_OK && (st = csv_rows(p)) == CG_OK)
        st = csv_finish(p, out);
    csv_parser_free(p);
    free(p);
    return st;
}

CG_API cg_status cg_csv_read(const char *path, const struct cg_csv_options *opts,
                             struct cg_table **out)
{
    if (out) *out = NULL;
    if (!path || !out)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_csv_read: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return cg__error(NULL, CG_STATUS_IO_ERROR, "%s: cannot open: %s", path, strerror(errno));
    cg_status st = cg_csv_read_stream(f, path, opts, out);
    fclose(f);
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
    free(t);
}

CG_API int cg_table_column(const struct cg_table *t, const char *name)
{
    if (!t || !name) return -1;
    for (int j = 0; j < t->n_cols; j++)
        if (strcmp(t->cols[j].name, name) == 0) return j;
    return -1;
}
