/*
 * src/io/safetensors.c — the safetensors file format: a strict reader, an
 * atomic writer, and the small JSON parser the header needs.
 *
 * Format (huggingface.co/docs/safetensors, "Format"; the reference is the
 * Rust crate's safetensors/src/tensor.rs): u64 little-endian N, N bytes of
 * UTF-8 JSON, then the byte buffer. The JSON is one object: an optional
 * "__metadata__" object of string -> string, and per tensor
 * {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]} with
 * offsets relative to the buffer. The reader checks what the Rust crate's
 * `validate` checks (sorted offsets tile the buffer exactly, sizes match
 * shapes) and more (duplicate keys, unknown fields, strict JSON and UTF-8),
 * all before reading any tensor data.
 *
 * The JSON parser is schema-driven rather than a DOM: it accepts exactly
 * the JSON grammar (RFC 8259) but only the shapes of values the format
 * allows, so its memory is proportional to the number of tensors, never to
 * what a hostile header nests.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/internal.h"
#include "io-impl.h"

/* ---- JSON strings ----------------------------------------------------------- */

void cg__sb_json_string(struct cg__sb *b, const char *s)
{
    cg__sb_putn(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = {'\\', (char)*c};
            cg__sb_putn(b, e, 2);
        } else if (*c < 0x20) {
            cg__sb_printf(b, "\\u%04x", *c);
        } else {
            cg__sb_putn(b, (const char *)c, 1);
        }
    }
    cg__sb_putn(b, "\"", 1);
}

/* ---- the JSON lexer ------------------------------------------------------- */

struct jp {
    const char *s;
    size_t n, i;
    char err[512];
};

static bool jp_fail(struct jp *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool jp_fail(struct jp *p, const char *fmt, ...)
{
    if (p->err[0]) return false;   /* keep the first, innermost reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return false;
}

static void jp_ws(struct jp *p)
{
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' ||
                           p->s[p->i] == '\r'))
        p->i++;
}

/* A short printable description of the byte at the cursor. */
static const char *jp_here(const struct jp *p, char *buf, size_t len)
{
    if (p->i >= p->n) return "the end of the header";
    unsigned char c = (unsigned char)p->s[p->i];
    if (c >= 0x20 && c < 0x7f) snprintf(buf, len, "'%c'", c);
    else snprintf(buf, len, "byte 0x%02x", c);
    return buf;
}

static bool jp_expect(struct jp *p, char c, const char *what)
{
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == c) {
        p->i++;
        return true;
    }
    char buf[32];
    return jp_fail(p, "invalid JSON at byte %zu: expected %s, found %s", p->i, what,
                   jp_here(p, buf, sizeof buf));
}

/* After an element of an object or array: true and *more for ',', true and
 * !*more for the closing bracket. */
static bool jp_next(struct jp *p, char close, bool *more)
{
    jp_ws(p);
    if (p->i < p->n && p->s[p->i] == ',') {
        p->i++;
        *more = true;
        return true;
    }
    if (p->i < p->n && p->s[p->i] == close) {
        p->i++;
        *more = false;
        return true;
    }
    char buf[32];
    return jp_fail(p, "invalid JSON at byte %zu: expected ',' or '%c', found %s", p->i, close,
                   jp_here(p, buf, sizeof buf));
}

/* True if the next token starts with c (skipping whitespace). */
static bool jp_peek(struct jp *p, char c)
{
    jp_ws(p);
    return p->i < p->n && p->s[p->i] == c;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool jp_hex4(struct jp *p, unsigned *out)
{
    if (p->n - p->i < 4) return jp_fail(p, "invalid JSON at byte %zu: truncated \\u escape", p->i);
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p->s[p->i + (size_t)k]);
        if (h < 0) return jp_fail(p, "invalid JSON at byte %zu: bad \\u escape", p->i);
        v = v * 16 + (unsigned)h;
    }
    p->i += 4;
    *out = v;
    return true;
}

static size_t utf8_put(char *d, unsigned cp)
{
    if (cp < 0x80) { d[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        d[0] = (char)(0xC0 | (cp >> 6));
        d[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (char)(0xE0 | (cp >> 12));
        d[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (char)(0xF0 | (cp >> 18));
    d[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the valid UTF-8 sequence at s (n bytes left), 0 if invalid
 * (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n < len) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

bool cg__utf8_valid(const char *s, size_t *bad)
{
    size_t n = strlen(s), at = 0;
    while (at < n) {
        size_t len = utf8_len((const unsigned char *)s + at, n - at);
        if (!len) break;
        at += len;
    }
    if (bad) *bad = at;
    return at == n;
}

/* A JSON string into a new NUL-terminated buffer. Escapes never make the
 * decoded text longer than the raw one, so one allocation of the raw
 * length suffices. */
static bool jp_string(struct jp *p, char **out)
{
    *out = NULL;
    if (!jp_expect(p, '"', "a string")) return false;
    size_t start = p->i, end = start;
    while (end < p->n && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->n)
        return jp_fail(p, "invalid JSON at byte %zu: unterminated string", start - 1);
    char *d = malloc(end - start + 1);
    if (!d) return jp_fail(p, "out of host memory for a %zu-byte string", end - start);
    size_t k = 0;
    while (p->i < end) {
        unsigned char c = (unsigned char)p->s[p->i];
        if (c < 0x20) {
            free(d);
            return jp_fail(p, "invalid JSON at byte %zu: control character 0x%02x in a string",
                           p->i, c);
        }
        if (c >= 0x80) {
            size_t len = utf8_len((const unsigned char *)p->s + p->i, end - p->i);
            if (!len) {
                free(d);
                return jp_fail(p, "invalid UTF-8 at byte %zu", p->i);
            }
            memcpy(d + k, p->s + p->i, len);
            k += len;
            p->i += len;
            continue;
        }
        p->i++;
        if (c != '\\') {
            d[k++] = (char)c;
            continue;
        }
        char e = p->s[p->i++];
        unsigned cp;
        switch (e) {
        case '"': d[k++] = '"'; break;
        case '\\': d[k++] = '\\'; break;
        case '/': d[k++] = '/'; break;
        case 'b': d[k++] = '\b'; break;
        case 'f': d[k++] = '\f'; break;
        case 'n': d[k++] = '\n'; break;
        case 'r': d[k++] = '\r'; break;
        case 't': d[k++] = '\t'; break;
        case 'u':
            if (!jp_hex4(p, &cp)) break;
            if (cp >= 0xD800 && cp <= 0xDBFF) {   /* a surrogate pair */
                unsigned lo;
                if (p->i + 2 > end || p->s[p->i] != '\\' || p->s[p->i + 1] != 'u') {
                    jp_fail(p, "invalid JSON at byte %zu: unpaired surrogate", p->i);
                    break;
                }
                p->i += 2;
                if (!jp_hex4(p, &lo)) break;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    jp_fail(p, "invalid JSON at byte %zu: unpaired surrogate", p->i);
                    break;
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                jp_fail(p, "invalid JSON at byte %zu: unpaired surrogate", p->i);
                break;
            } else if (cp == 0) {
                jp_fail(p, "\\u0000 in a string at byte %zu is not supported", p->i);
                break;
            }
            k += utf8_put(d + k, cp);
            break;
        default:
            jp_fail(p, "invalid JSON at byte %zu: bad escape '\\%c'", p->i - 1,
                    e >= 0x20 && e < 0x7f ? e : '?');
        }
        if (p->err[0]) {
            free(d);
            return false;
        }
    }
    p->i = end + 1;
    d[k] = '\0';
    *out = d;
    return true;
}

/* A JSON number that must be a non-negative integer (no sign, fraction or
 * exponent) no larger than INT64_MAX. */
static bool jp_uint(struct jp *p, const char *what, int64_t *out)
{
    jp_ws(p);
    size_t start = p->i, i = p->i;
    if (i < p->n && p->s[i] == '-') i++;
    size_t digits = i;
    while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
    if (i == digits) {
        char buf[32];
        return jp_fail(p, "invalid JSON at byte %zu: expected %s (a number), found %s", start,
                       what, jp_here(p, buf, sizeof buf));
    }
    if (p->s[digits] == '0' && i - digits > 1)
        return jp_fail(p, "invalid JSON at byte %zu: number with a leading zero", start);
    bool integer = p->s[start] != '-';
    if (i < p->n && p->s[i] == '.') {
        integer = false;
        size_t f = ++i;
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
        if (i == f) return jp_fail(p, "invalid JSON at byte %zu: digits expected after '.'", f);
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integer = false;
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
        size_t f = i;
        while (i < p->n && p->s[i] >= '0' && p->s[i] <= '9') i++;
        if (i == f) return jp_fail(p, "invalid JSON at byte %zu: digits expected in exponent", f);
    }
    if (!integer)
        return jp_fail(p, "%s at byte %zu is %.*s, not a non-negative integer", what, start,
                       (int)(i - start < 40 ? i - start : 40), p->s + start);
    int64_t v = 0;
    for (size_t k = digits; k < i; k++) {
        int dg = p->s[k] - '0';
        if (v > (INT64_MAX - dg) / 10)
            return jp_fail(p, "%s at byte %zu is too large", what, start);
        v = v * 10 + dg;
    }
    p->i = i;
    *out = v;
    return true;
}

/* Rejects duplicates among n names (O(n log n): a hostile header with
 * millions of keys must not take O(n^2)). */
static int cmp_name_ptr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *find_duplicate(char **names, size_t n)
{
    if (n < 2) return NULL;
    char **s = malloc(n * sizeof *s);
    if (!s) return NULL;   /* caller has no memory either; skip the check */
    memcpy(s, names, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_name_ptr);
    const char *dup = NULL;
    for (size_t i = 1; i < n && !dup; i++)
        if (strcmp(s[i - 1], s[i]) == 0) dup = s[i];
    free(s);
    return dup;
}

bool cg__json_string_array(const char *s, char ***out, int *n, char *err, size_t errlen)
{
    struct jp p = {.s = s, .n = strlen(s)};
    char **v = NULL;
    int count = 0, cap = 0;
    bool ok = jp_expect(&p, '[', "'['");
    bool more = ok && !jp_peek(&p, ']');
    if (ok && !more) p.i++;
    while (ok && more) {
        if (count == cap) {
            cap = cap ? 2 * cap : 8;
            char **nv = realloc(v, (size_t)cap * sizeof *nv);
            if (!nv) {
                ok = jp_fail(&p, "out of host memory");
                break;
            }
            v = nv;
        }
        ok = jp_string(&p, &v[count]);
        if (ok) count++;
        ok = ok && jp_next(&p, ']', &more);
    }
    jp_ws(&p);
    if (ok && p.i != p.n) ok = jp_fail(&p, "trailing characters at byte %zu", p.i);
    if (!ok) {
        snprintf(err, errlen, "%s", p.err);
        for (int i = 0; i < count; i++) free(v[i]);
        free(v);
        return false;
    }
    *out = v;
    *n = count;
    return true;
}

/* ---- dtypes --------------------------------------------------------------- */

enum st_dtype { DT_F32, DT_F64, DT_F16, DT_BF16, DT_I64, DT_OTHER };

static const struct {
    const char *name;
    int size;
    enum st_dtype dt;
} dtypes[] = {
    {"F32", 4, DT_F32}, {"F64", 8, DT_F64}, {"F16", 2, DT_F16}, {"BF16", 2, DT_BF16},
    /* known to the format, not readable as float32 here */
    {"BOOL", 1, DT_OTHER}, {"U8", 1, DT_OTHER}, {"I8", 1, DT_OTHER},
    {"F8_E5M2", 1, DT_OTHER}, {"F8_E4M3", 1, DT_OTHER}, {"F8_E8M0", 1, DT_OTHER},
    {"I16", 2, DT_OTHER}, {"U16", 2, DT_OTHER}, {"I32", 4, DT_OTHER}, {"U32", 4, DT_OTHER},
    {"U64", 8, DT_OTHER}, {"C64", 8, DT_OTHER},
    /* PyTorch's state_dict holds I64 counters (BatchNorm's num_batches_tracked):
     * read when every value is exact in float32 (|v| <= 2^24) */
    {"I64", 8, DT_I64},
};

static float f16_to_f32(uint16_t h)
{
    /* IEEE 754 binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    uint32_t bits;
    if (e == 0) {
        float v = (float)m * 0x1p-24f;          /* zero or subnormal, exact */
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else if (e == 31) {
        bits = sign | 0x7F800000u | (m << 13);  /* inf / nan */
    } else {
        bits = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static bool host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

static void bswap_bytes(unsigned char *p, int size)
{
    for (int i = 0; i < size / 2; i++) {
        unsigned char t = p[i];
        p[i] = p[size - 1 - i];
        p[size - 1 - i] = t;
    }
}

/* ---- the set of tensors --------------------------------------------------- */

cg_status cg_safetensors_create(struct cg_safetensors **out)
{
    if (!out) return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_safetensors_create: out is NULL");
    *out = calloc(1, sizeof **out);
    if (!*out) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "cg_safetensors_create: out of host memory");
    return CG_OK;
}

void cg_safetensors_free(struct cg_safetensors *st)
{
    if (!st) return;
    for (int i = 0; i < st->n_tensors; i++) {
        free(st->tensors[i].name);
        free(st->tensors[i].data);
    }
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta[i].key);
        free(st->meta[i].value);
    }
    free(st->tensors);
    free(st->meta);
    free(st);
}

const struct cg_st_tensor *cg_safetensors_find(const struct cg_safetensors *st, const char *name)
{
    for (int i = 0; st && name && i < st->n_tensors; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *cg_safetensors_meta(const struct cg_safetensors *st, const char *key)
{
    for (int i = 0; st && key && i < st->n_meta; i++)
        if (strcmp(st->meta[i].key, key) == 0) return st->meta[i].value;
    return NULL;
}

/* numel of a shape, false on a negative dim or overflow past INT64_MAX. */
static bool shape_numel(int ndim, const int64_t *shape, int64_t *numel)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(n, shape[d], &n)) return false;
    }
    *numel = n;
    return true;
}

cg_status cg_safetensors_add(struct cg_safetensors *st, const char *name, int ndim,
                             const int64_t *shape, const float *data)
{
    const char *fn = "cg_safetensors_add";
    if (!st || !name)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: NULL set or name", fn);
    if (!*name || strcmp(name, "__metadata__") == 0)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: invalid tensor name \"%s\"",
                         fn, name);
    if (ndim < 0 || ndim > CG_MAX_DIMS || (ndim > 0 && !shape))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s(%s): %d dims (0 to %d allowed)", fn, name, ndim, CG_MAX_DIMS);
    int64_t numel;
    if (!shape_numel(ndim, shape, &numel) || numel > INT64_MAX / 8)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s(%s): invalid or too large shape", fn, name);
    if (cg_safetensors_find(st, name))
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "%s: tensor \"%s\" is already in the set", fn, name);
    struct cg_st_tensor *ts = realloc(st->tensors, (size_t)(st->n_tensors + 1) * sizeof *ts);
    if (!ts) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", fn);
    st->tensors = ts;
    struct cg_st_tensor *t = &ts[st->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = calloc((size_t)numel + 1, sizeof(float));
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "%s(%s): out of host memory for %lld floats", fn, name,
                         (long long)numel);
    }
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->numel = numel;
    if (data && numel > 0) memcpy(t->data, data, (size_t)numel * sizeof(float));
    st->n_tensors++;
    return CG_OK;
}

cg_status cg_safetensors_set_meta(struct cg_safetensors *st, const char *key, const char *value)
{
    const char *fn = "cg_safetensors_set_meta";
    if (!st || !key || !value)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "%s: NULL argument", fn);
    char *v = strdup(value);
    if (!v) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", fn);
    for (int i = 0; i < st->n_meta; i++) {
        if (strcmp(st->meta[i].key, key) == 0) {
            free(st->meta[i].value);
            st->meta[i].value = v;
            return CG_OK;
        }
    }
    char *k = strdup(key);
    struct cg_st_meta *m = realloc(st->meta, (size_t)(st->n_meta + 1) * sizeof *m);
    if (m) st->meta = m;
    if (!k || !m) {
        free(k);
        free(v);
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", fn);
    }
    st->meta[st->n_meta].key = k;
    st->meta[st->n_meta].value = v;
    st->n_meta++;
    return CG_OK;
}

/* ---- reading -------------------------------------------------------------- */

/* A tensor entry as the header describes it. */
struct entry {
    char *name;
    int dtype;                 /* index into dtypes[] */
    int ndim;
    int64_t shape[CG_MAX_DIMS];
    int64_t begin, end;
};

struct header {
    struct entry *e;
    size_t n, cap;
    struct cg_st_meta *meta;
    size_t n_meta, cap_meta;
    bool has_meta;
};

static void header_free(struct header *h)
{
    for (size_t i = 0; i < h->n; i++) free(h->e[i].name);
    for (size_t i = 0; i < h->n_meta; i++) {
        free(h->meta[i].key);
        free(h->meta[i].value);
    }
    free(h->e);
    free(h->meta);
}

static bool parse_meta(struct jp *p, struct header *h)
{
    if (h->has_meta) return jp_fail(p, "duplicate key \"__metadata__\"");
    h->has_meta = true;
    if (!jp_peek(p, '{')) return jp_fail(p, "\"__metadata__\" is not an object");
    p->i++;
    if (jp_peek(p, '}')) {
        p->i++;
        return true;
    }
    for (bool more = true; more;) {
        char *k, *v;
        if (!jp_string(p, &k)) return false;
        if (!jp_expect(p, ':', "':'")) {
            free(k);
            return false;
        }
        if (!jp_peek(p, '"')) {
            jp_fail(p, "metadata value of \"%.64s\" is not a string", k);
            free(k);
            return false;
        }
        if (!jp_string(p, &v)) {
            free(k);
            return false;
        }
        if (h->n_meta == h->cap_meta) {
            size_t cap = h->cap_meta ? 2 * h->cap_meta : 8;
            struct cg_st_meta *m = realloc(h->meta, cap * sizeof *m);
            if (!m) {
                free(k);
                free(v);
                return jp_fail(p, "out of host memory");
            }
            h->meta = m;
            h->cap_meta = cap;
        }
        h->meta[h->n_meta].key = k;
        h->meta[h->n_meta].value = v;
        h->n_meta++;
        if (!jp_next(p, '}', &more)) return false;
    }
    return true;
}

static bool parse_dims(struct jp *p, struct entry *e, bool offsets)
{
    const char *field = offsets ? "data_offsets" : "shape";
    if (!jp_peek(p, '['))
        return jp_fail(p, "tensor \"%.64s\": \"%s\" is not an array", e->name, field);
    p->i++;
    int64_t v[CG_MAX_DIMS + 1];
    int n = 0;
    bool more = !jp_peek(p, ']');
    if (!more) p->i++;
    while (more) {
        int64_t x = 0;
        char what[128];
        snprintf(what, sizeof what, "tensor \"%.64s\": %s value", e->name, field);
        if (!jp_uint(p, what, &x)) return false;
        if (n == CG_MAX_DIMS && !offsets)
            return jp_fail(p, "tensor \"%.64s\": shape has more than %d dims, clgrad's limit",
                           e->name, CG_MAX_DIMS);
        if (n == 2 && offsets)
            return jp_fail(p, "tensor \"%.64s\": data_offsets has more than 2 values", e->name);
        v[n++] = x;
        if (!jp_next(p, ']', &more)) return false;
    }
    if (offsets) {
        if (n != 2)
            return jp_fail(p, "tensor \"%.64s\": data_offsets has %d values, not 2 [begin, end]",
                           e->name, n);
        e->begin = v[0];
        e->end = v[1];
    } else {
        e->ndim = n;
        memcpy(e->shape, v, (size_t)n * sizeof *v);
    }
    return true;
}

static bool parse_tensor(struct jp *p, struct entry *e)
{
    if (!jp_peek(p, '{'))
        return jp_fail(p, "tensor \"%.64s\": its value is not an object", e->name);
    p->i++;
    bool seen[3] = {false, false, false};
    static const char *const fields[3] = {"dtype", "shape", "data_offsets"};
    bool more = !jp_peek(p, '}');
    if (!more) p->i++;
    while (more) {
        char *k;
        if (!jp_string(p, &k)) return false;
        int f = -1;
        for (int i = 0; i < 3; i++)
            if (strcmp(k, fields[i]) == 0) f = i;
        if (f < 0) {
            jp_fail(p, "tensor \"%.64s\": unknown field \"%.64s\"", e->name, k);
            free(k);
            return false;
        }
        free(k);
        if (seen[f])
            return jp_fail(p, "tensor \"%.64s\": duplicate field \"%s\"", e->name, fields[f]);
        seen[f] = true;
        if (!jp_expect(p, ':', "':'")) return false;
        if (f == 0) {
            char *dt;
            if (!jp_peek(p, '"'))
                return jp_fail(p, "tensor \"%.64s\": dtype is not a string", e->name);
            if (!jp_string(p, &dt)) return false;
            e->dtype = -1;
            for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
                if (strcmp(dt, dtypes[i].name) == 0) e->dtype = (int)i;
            if (e->dtype < 0) {
                jp_fail(p, "tensor \"%.64s\": unknown dtype \"%.32s\"", e->name, dt);
            } else if (dtypes[e->dtype].dt == DT_OTHER) {
                jp_fail(p, "tensor \"%.64s\": unsupported dtype %s (clgrad reads F32, F16, "
                        "BF16, F64 and I64)", e->name, dt);
            }
            free(dt);
            if (p->err[0]) return false;
        } else if (!parse_dims(p, e, f == 2)) {
            return false;
        }
        if (!jp_next(p, '}', &more)) return false;
    }
    for (int i = 0; i < 3; i++)
        if (!seen[i]) return jp_fail(p, "tensor \"%.64s\": missing field \"%s\"", e->name, fields[i]);
    return true;
}

static bool parse_header(struct jp *p, struct header *h)
{
    jp_ws(p);
    if (p->i >= p->n) return jp_fail(p, "the header is empty");
    if (p->s[p->i] != '{') {
        char c = p->s[p->i];
        if (c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' ||
            c == 'f' || c == 'n')
            return jp_fail(p, "the header is not a JSON object");
        return jp_expect(p, '{', "'{'");
    }
    p->i++;
    bool more = !jp_peek(p, '}');
    if (!more) p->i++;
    while (more) {
        char *k;
        if (!jp_string(p, &k)) return false;
        if (!jp_expect(p, ':', "':'")) {
            free(k);
            return false;
        }
        if (strcmp(k, "__metadata__") == 0) {
            free(k);
            if (!parse_meta(p, h)) return false;
        } else {
            if (!*k) {
                free(k);
                return jp_fail(p, "a tensor has an empty name");
            }
            if (h->n == h->cap) {
                size_t cap = h->cap ? 2 * h->cap : 16;
                struct entry *ne = realloc(h->e, cap * sizeof *ne);
                if (!ne) {
                    free(k);
                    return jp_fail(p, "out of host memory");
                }
                h->e = ne;
                h->cap = cap;
            }
            struct entry *e = &h->e[h->n++];
            memset(e, 0, sizeof *e);
            e->name = k;
            if (!parse_tensor(p, e)) return false;
        }
        if (!jp_next(p, '}', &more)) return false;
    }
    jp_ws(p);
    if (p->i != p->n)
        return jp_fail(p, "invalid JSON at byte %zu: trailing characters after the object", p->i);
    return true;
}

static int cmp_entry_offset(const void *a, const void *b)
{
    const struct entry *x = *(const struct entry *const *)a, *y = *(const struct entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static void shape_text(const struct entry *e, char *buf, size_t len)
{
    cg__shape_str(e->ndim, e->shape, buf, len);
}

/* Names, sizes and offsets: all checks that need no tensor data. Returns
 * the entries sorted by offset in *order. */
static cg_status validate(const char *path, struct header *h, int64_t buflen,
                          struct entry ***order)
{
    *order = NULL;
    char **names = malloc((h->n + h->n_meta + 1) * sizeof *names);
    if (!names) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", path);
    for (size_t i = 0; i < h->n; i++) names[i] = h->e[i].name;
    const char *dup = find_duplicate(names, h->n);
    if (dup) {
        cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: duplicate tensor name \"%.200s\"", path, dup);
        free(names);
        return CG_STATUS_PARSE_ERROR;
    }
    for (size_t i = 0; i < h->n_meta; i++) names[i] = h->meta[i].key;
    dup = find_duplicate(names, h->n_meta);
    free(names);
    if (dup)
        return cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: duplicate metadata key \"%.200s\"",
                         path, dup);

    for (size_t i = 0; i < h->n; i++) {
        struct entry *e = &h->e[i];
        char s[128];
        shape_text(e, s, sizeof s);
        int64_t numel, bytes;
        if (!shape_numel(e->ndim, e->shape, &numel) ||
            __builtin_mul_overflow(numel, (int64_t)dtypes[e->dtype].size, &bytes))
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: tensor \"%.200s\": shape %s is too large", path, e->name, s);
        if (e->begin > e->end)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: tensor \"%.200s\": data_offsets [%lld, %lld] end before they "
                             "begin", path, e->name, (long long)e->begin, (long long)e->end);
        if (e->end - e->begin != bytes)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: tensor \"%.200s\": shape %s %s needs %lld bytes but "
                             "data_offsets [%lld, %lld] hold %lld", path, e->name, s,
                             dtypes[e->dtype].name, (long long)bytes, (long long)e->begin,
                             (long long)e->end, (long long)(e->end - e->begin));
        if (e->end > buflen)
            return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                             "%s: tensor \"%.200s\": data_offsets [%lld, %lld] are out of "
                             "range: the data buffer holds %lld bytes (truncated file?)",
                             path, e->name, (long long)e->begin, (long long)e->end,
                             (long long)buflen);
    }

    struct entry **o = malloc((h->n + 1) * sizeof *o);
    if (!o) return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", path);
    for (size_t i = 0; i < h->n; i++) o[i] = &h->e[i];
    qsort(o, h->n, sizeof *o, cmp_entry_offset);
    int64_t covered = 0;
    for (size_t i = 0; i < h->n; i++) {
        if (o[i]->begin < covered) {
            cg__error(NULL, CG_STATUS_PARSE_ERROR,
                      "%s: tensors \"%.200s\" [%lld, %lld] and \"%.200s\" [%lld, %lld] overlap",
                      path, o[i - 1]->name, (long long)o[i - 1]->begin, (long long)o[i - 1]->end,
                      o[i]->name, (long long)o[i]->begin, (long long)o[i]->end);
            free(o);
            return CG_STATUS_PARSE_ERROR;
        }
        if (o[i]->begin > covered) {
            cg__error(NULL, CG_STATUS_PARSE_ERROR,
                      "%s: bytes [%lld, %lld) of the data buffer belong to no tensor (before "
                      "\"%.200s\")", path, (long long)covered, (long long)o[i]->begin, o[i]->name);
            free(o);
            return CG_STATUS_PARSE_ERROR;
        }
        covered = o[i]->end;
    }
    if (covered != buflen) {
        free(o);
        return cg__error(NULL, CG_STATUS_PARSE_ERROR,
                         "%s: the data buffer holds %lld bytes but the tensors cover %lld "
                         "(trailing bytes after the last tensor)", path, (long long)buflen,
                         (long long)covered);
    }
    *order = o;
    return CG_OK;
}

static bool read_full(int fd, void *buf, size_t n, off_t at)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t k = pread(fd, p, n, at);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO;   /* the file shrank under us */
            return false;
        }
        p += k;
        n -= (size_t)k;
        at += k;
    }
    return true;
}

/* Reads one tensor's bytes (already validated) and converts to float32. */
static cg_status read_tensor(int fd, const char *path, off_t base, const struct entry *e,
                             const char *name, struct cg_st_tensor *t)
{
    int size = dtypes[e->dtype].size;
    enum st_dtype dt = dtypes[e->dtype].dt;
    int64_t numel = (e->end - e->begin) / size;
    t->data = malloc((size_t)numel * sizeof(float) + 1);
    if (!t->data)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "%s: tensor \"%.200s\": out of host memory for %lld floats", path,
                         name, (long long)numel);
    bool le = host_is_little_endian();
    if (dt == DT_F32) {
        if (!read_full(fd, t->data, (size_t)numel * 4, base + e->begin)) goto io_error;
        if (!le)
            for (int64_t i = 0; i < numel; i++) bswap_bytes((unsigned char *)&t->data[i], 4);
        return CG_OK;
    }
    /* Other dtypes: through a bounded staging buffer. */
    enum { CHUNK = 1 << 16 };
    unsigned char *buf = malloc((size_t)CHUNK * (size_t)size);
    if (!buf)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", path);
    for (int64_t i0 = 0; i0 < numel; i0 += CHUNK) {
        int64_t m = numel - i0 < CHUNK ? numel - i0 : CHUNK;
        if (!read_full(fd, buf, (size_t)(m * size), base + e->begin + i0 * size)) {
            free(buf);
            goto io_error;
        }
        for (int64_t i = 0; i < m; i++) {
            unsigned char *b = buf + i * size;
            if (!le) bswap_bytes(b, size);
            uint16_t h16;
            double d;
            uint32_t bits;
            switch (dt) {
            case DT_F64:
                memcpy(&d, b, 8);
                t->data[i0 + i] = (float)d;
                break;
            case DT_F16:
                memcpy(&h16, b, 2);
                t->data[i0 + i] = f16_to_f32(h16);
                break;
            case DT_BF16:   /* the top half of a float32 */
                memcpy(&h16, b, 2);
                bits = (uint32_t)h16 << 16;
                memcpy(&t->data[i0 + i], &bits, 4);
                break;
            case DT_I64: {
                int64_t v;
                memcpy(&v, b, 8);
                if (v > (1 << 24) || v < -(1 << 24)) {
                    free(buf);
                    return cg__error(NULL, CG_STATUS_UNSUPPORTED,
                                     "%s: tensor \"%.200s\": I64 value %lld at %lld is not "
                                     "exact as float32", path, e->name, (long long)v,
                                     (long long)(i0 + i));
                }
                t->data[i0 + i] = (float)v;
                break;
            }
            default:
                break;
            }
        }
    }
    free(buf);
    return CG_OK;
io_error:
    return cg__error(NULL, CG_STATUS_IO_ERROR, "%s: reading tensor \"%.200s\": %s", path,
                     name, strerror(errno));
}

cg_status cg__safetensors_read_checked(const char *path, cg__st_check_fn check, void *user,
                                       struct cg_safetensors **out)
{
    if (!out || !path)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_safetensors_read: NULL argument");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) return cg__error(NULL, CG_STATUS_IO_ERROR, "%s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int err = errno;
        close(fd);
        return cg__error(NULL, CG_STATUS_IO_ERROR, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return cg__error(NULL, CG_STATUS_IO_ERROR, "%s: %s", path,
                         S_ISDIR(sb.st_mode) ? "is a folder" : "is not a regular file");
    }
    int64_t size = (int64_t)sb.st_size;
    cg_status st = CG_OK;
    struct header h;
    memset(&h, 0, sizeof h);
    struct entry **order = NULL;
    char *json = NULL;
    bool *want = NULL;
    struct cg_safetensors *res = NULL;
    unsigned char lenb[8];

    if (size < 8) {
        st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                       "%s: truncated: the file is %lld bytes, too short for the 8-byte header "
                       "length", path, (long long)size);
        goto done;
    }
    if (!read_full(fd, lenb, 8, 0)) {
        st = cg__error(NULL, CG_STATUS_IO_ERROR, "%s: %s", path, strerror(errno));
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    /* Both limits before any allocation. */
    if (hlen > CG_SAFETENSORS_MAX_HEADER) {
        st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                       "%s: header length %llu is over the %u-byte limit", path,
                       (unsigned long long)hlen, CG_SAFETENSORS_MAX_HEADER);
        goto done;
    }
    if (hlen > (uint64_t)(size - 8)) {
        st = cg__error(NULL, CG_STATUS_PARSE_ERROR,
                       "%s: header length %llu runs past the end of the file (%lld bytes; "
                       "truncated?)", path, (unsigned long long)hlen, (long long)size);
        goto done;
    }
    json = malloc((size_t)hlen + 1);
    if (!json) {
        st = cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory for the header",
                       path);
        goto done;
    }
    if (!read_full(fd, json, (size_t)hlen, 8)) {
        st = cg__error(NULL, CG_STATUS_IO_ERROR, "%s: %s", path, strerror(errno));
        goto done;
    }
    json[hlen] = '\0';
    struct jp p = {.s = json, .n = (size_t)hlen};
    if (!parse_header(&p, &h)) {
        st = cg__error(NULL, strstr(p.err, "out of host memory") ? CG_STATUS_OUT_OF_MEMORY
                                                                  : CG_STATUS_PARSE_ERROR,
                       "%s: invalid safetensors header: %s", path, p.err);
        goto done;
    }
    int64_t buflen = size - 8 - (int64_t)hlen;
    st = validate(path, &h, buflen, &order);
    if (st != CG_OK) goto done;
    if (h.n > (size_t)INT32_MAX || h.n_meta > (size_t)INT32_MAX) {
        st = cg__error(NULL, CG_STATUS_PARSE_ERROR, "%s: too many entries", path);
        goto done;
    }

    /* The set without data first, in offset order (the file is read front
     * to back): names, shapes and metadata, for the caller's check. */
    res = calloc(1, sizeof *res);
    if (res) res->tensors = calloc(h.n + 1, sizeof *res->tensors);
    want = malloc((h.n + 1) * sizeof *want);
    if (!res || !res->tensors || !want) {
        st = cg__error(NULL, CG_STATUS_OUT_OF_MEMORY, "%s: out of host memory", path);
        goto done;
    }
    for (size_t i = 0; i < h.n; i++) {
        struct cg_st_tensor *t = &res->tensors[i];
        t->ndim = order[i]->ndim;
        memcpy(t->shape, order[i]->shape, sizeof t->shape);
        shape_numel(t->ndim, t->shape, &t->numel);
        t->name = order[i]->name;      /* moved */
        order[i]->name = NULL;
        res->n_tensors++;
        want[i] = true;
    }
    res->meta = h.meta;                /* moved */
    res->n_meta = (int)h.n_meta;
    h.meta = NULL;
    h.n_meta = 0;
    if (check && (st = check(user, res, want)) != CG_OK) goto done;

    /* Then the data of the tensors wanted; the others leave the set. */
    for (size_t i = 0; i < h.n; i++) {
        struct cg_st_tensor *t = &res->tensors[i];
        if (!want[i]) {
            free(t->name);
            t->name = NULL;
            continue;
        }
        st = read_tensor(fd, path, (off_t)(8 + hlen), order[i], t->name, t);
        if (st != CG_OK) goto done;
    }
    int kept = 0;
    for (size_t i = 0; i < h.n; i++)
        if (want[i]) res->tensors[kept++] = res->tensors[i];
    res->n_tensors = kept;
done:
    if (st != CG_OK) {
        cg_safetensors_free(res);
        res = NULL;
    }
    free(want);
    free(order);
    header_free(&h);
    free(json);
    close(fd);
    *out = res;
    return st;
}

cg_status cg_safetensors_read(const char *path, struct cg_safetensors **out)
{
    return cg__safetensors_read_checked(path, NULL, NULL, out);
}

/* ---- writing -------------------------------------------------------------- */

/* The JSON header, padded with spaces to a multiple of 8 bytes so that the
 * data buffer starts 8-aligned (the format's recommendation). */
static cg_status build_header(const struct cg_safetensors *st, struct cg__sb *b)
{
    cg__sb_puts(b, "{");
    bool first = true;
    if (st->n_meta > 0) {
        cg__sb_puts(b, "\"__metadata__\":{");
        for (int i = 0; i < st->n_meta; i++) {
            if (i) cg__sb_puts(b, ",");
            cg__sb_json_string(b, st->meta[i].key);
            cg__sb_puts(b, ":");
            cg__sb_json_string(b, st->meta[i].value);
        }
        cg__sb_puts(b, "}");
        first = false;
    }
    int64_t off = 0;
    for (int i = 0; i < st->n_tensors; i++) {
        const struct cg_st_tensor *t = &st->tensors[i];
        if (!first) cg__sb_puts(b, ",");
        first = false;
        cg__sb_json_string(b, t->name);
        cg__sb_puts(b, ":{\"dtype\":\"F32\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) cg__sb_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        cg__sb_printf(b, "],\"data_offsets\":[%lld,%lld]}", (long long)off,
                      (long long)(off + 4 * t->numel));
        off += 4 * t->numel;
    }
    cg__sb_puts(b, "}");
    while (!b->oom && b->n % 8 != 0) cg__sb_puts(b, " ");
    if (b->oom)
        return cg__error(NULL, CG_STATUS_OUT_OF_MEMORY,
                         "cg_safetensors_write: out of host memory for the header");
    if (b->n > CG_SAFETENSORS_MAX_HEADER)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                         "cg_safetensors_write: the header would be %zu bytes, over the %u-byte "
                         "limit readers accept", b->n, CG_SAFETENSORS_MAX_HEADER);
    return CG_OK;
}

static bool write_body(FILE *f, const char *header, size_t hlen,
                       const struct cg_safetensors *st)
{
    unsigned char lenb[8];
    uint64_t n = hlen;
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(n >> (8 * i));
    if (fwrite(lenb, 1, 8, f) != 8 || fwrite(header, 1, hlen, f) != hlen) return false;
    bool le = host_is_little_endian();
    for (int i = 0; i < st->n_tensors; i++) {
        const struct cg_st_tensor *t = &st->tensors[i];
        if (le) {
            if (fwrite(t->data, sizeof(float), (size_t)t->numel, f) != (size_t)t->numel)
                return false;
            continue;
        }
        for (int64_t k = 0; k < t->numel; k++) {
            unsigned char b[4];
            memcpy(b, &t->data[k], 4);
            bswap_bytes(b, 4);
            if (fwrite(b, 1, 4, f) != 4) return false;
        }
    }
    return true;
}

/* Syncs the folder holding a renamed file, so that the rename itself
 * survives a power cut (fsync(2): "Calling fsync() does not necessarily
 * ensure that the entry in the directory containing the file has also
 * reached disk"). File systems that cannot sync a folder say EINVAL. */
static int sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int err = 0;
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP) err = errno;
    close(fd);
    return err;
}

/* Parses the header about to be written as a reader will (grammar, UTF-8,
 * names, shapes, offsets against the data that will follow). */
static cg_status check_own_header(const char *path, const struct cg_safetensors *st,
                                  const struct cg__sb *hb)
{
    struct jp p = {.s = hb->p, .n = hb->n};
    struct header h;
    memset(&h, 0, sizeof h);
    struct entry **order = NULL;
    int64_t buflen = 0;
    for (int i = 0; i < st->n_tensors; i++) buflen += 4 * st->tensors[i].numel;
    cg_status r = CG_OK;
    if (!parse_header(&p, &h))
        r = cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                      "cg_safetensors_write(%s): the header would not read back (%s); nothing "
                      "was written", path, p.err);
    else if ((r = validate(path, &h, buflen, &order)) != CG_OK)
        r = cg__error(NULL, r, "cg_safetensors_write: the header would not read back: %s; "
                      "nothing was written", cg_last_error(NULL));
    free(order);
    header_free(&h);
    return r;
}

/* Removes ".BASE.tmp-PID-N" files in dir left by saves of processes that
 * no longer run (a crash or a kill during a save; issue 17 item 10). A
 * live PID (or one we may not signal: EPERM) keeps its file, as do our
 * own. PIDs are those of this machine's PID namespace: a folder shared
 * with other machines or containers may hold a live save under a PID that
 * is free here, so only files older than a minute are removed. */
static void remove_stale_temps(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t bl = strlen(base);
    time_t now = time(NULL);
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *n = de->d_name;
        if (n[0] != '.' || strncmp(n + 1, base, bl) != 0 || strncmp(n + 1 + bl, ".tmp-", 5) != 0)
            continue;
        const char *s = n + 1 + bl + 5, *c;
        for (c = s; *c >= '0' && *c <= '9'; c++) {}
        if (c == s || c - s > 9 || *c != '-') continue;
        const char *cnt = c + 1;
        for (c = cnt; *c >= '0' && *c <= '9'; c++) {}
        if (c == cnt || *c) continue;
        long pid = strtol(s, NULL, 10);
        if (pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat sb;
        if (fstatat(dirfd(d), n, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
            now - sb.st_mtime < 60)
            continue;
        unlinkat(dirfd(d), n, 0);
    }
    closedir(d);
}

cg_status cg_safetensors_write(const char *path, const struct cg_safetensors *st)
{
    if (!path || !st)
        return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT, "cg_safetensors_write: NULL argument");
    for (int i = 0; i < st->n_tensors; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(st->tensors[i].name, st->tensors[j].name) == 0)
                return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                                 "cg_safetensors_write(%s): duplicate tensor name \"%s\"", path,
                                 st->tensors[i].name);
    /* Never write what the reader rejects (issue 17 item 1): every string
     * valid UTF-8 first, for a message naming the key; then the header
     * itself goes through the reader's parser and checks before any file
     * is touched. */
    for (int i = 0; i < st->n_tensors + 2 * st->n_meta; i++) {
        const char *str = i < st->n_tensors ? st->tensors[i].name
                          : (i - st->n_tensors) % 2 ? st->meta[(i - st->n_tensors) / 2].value
                                                    : st->meta[(i - st->n_tensors) / 2].key;
        const char *what = i < st->n_tensors ? "tensor name"
                           : (i - st->n_tensors) % 2 ? "value of metadata" : "metadata key";
        const char *owner = i < st->n_tensors ? str : st->meta[(i - st->n_tensors) / 2].key;
        size_t at;
        if (!cg__utf8_valid(str, &at))
            return cg__error(NULL, CG_STATUS_INVALID_ARGUMENT,
                             "cg_safetensors_write(%s): the %s \"%.100s\" is not valid UTF-8 "
                             "(byte 0x%02x at byte %zu), which readers reject; nothing was "
                             "written", path, what, owner, (unsigned char)str[at], at + 1);
    }
    struct cg__sb hb = {0};
    cg_status s = build_header(st, &hb);
    if (s == CG_OK) s = check_own_header(path, st, &hb);
    if (s != CG_OK) {
        free(hb.p);
        return s;
    }

    /* The temporary file lives in the destination's folder, so that
     * rename(2) replaces the destination atomically (same file system). */
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    size_t tlen = strlen(path) + 64;
    char *tmp = malloc(tlen);
    if (!*base || !tmp) {
        free(tmp);
        free(hb.p);
        return cg__error(NULL, *base ? CG_STATUS_OUT_OF_MEMORY : CG_STATUS_INVALID_ARGUMENT,
                         "cg_safetensors_write: %s: %s", path,
                         *base ? "out of host memory" : "the path names a folder, not a file");
    }
    remove_stale_temps(dir, base);
    static _Atomic unsigned counter;
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, tlen, "%s/.%s.tmp-%ld-%u", dir, base, (long)getpid(), counter++);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        s = cg__error(NULL, CG_STATUS_IO_ERROR, "%s: cannot create the temporary file %s: %s",
                      path, tmp, strerror(errno));
        free(tmp);
        free(hb.p);
        return s;
    }
    FILE *f = fdopen(fd, "wb");
    const char *step = "write";
    bool ok = f != NULL;
    if (!f) close(fd);
    ok = ok && write_body(f, hb.p, hb.n, st);
    if (ok && fflush(f) != 0) ok = false;
    if (ok && fsync(fileno(f)) != 0) {
        step = "fsync";
        ok = false;
    }
    int err = ok ? 0 : errno;
    if (f && fclose(f) != 0 && ok) {
        step = "close";
        ok = false;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        step = "rename";
        ok = false;
        err = errno;
    }
    if (!ok) {
        unlink(tmp);   /* the previous file at path is untouched */
        s = cg__error(NULL, CG_STATUS_IO_ERROR,
                      "%s: %s of the temporary file failed: %s (the previous file, if any, is "
                      "unchanged)", path, step, strerror(err ? err : EIO));
    } else if ((err = sync_dir(dir)) != 0) {
        s = cg__error(NULL, CG_STATUS_IO_ERROR, "%s: written, but syncing its folder %s failed: %s",
                      path, dir, strerror(err));
    }
    free(tmp);
    free(hb.p);
    return s;
}
