/*
 * tests/fuzz/fuzz_common.c — the private scratch folder and file writer of
 * the fuzz targets (fuzz.h).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fuzz.h"

static char dir[256];

static void remove_dir(void)
{
    /* Only the names fuzz_file and the targets use. */
    static const char *const names[] = {"in0", "in1", "in2", "in3", "out.safetensors", NULL};
    char p[320];
    for (int i = 0; names[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
}

const char *fuzz_dir(void)
{
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(dir, sizeof dir, "%s/clgrad-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
    }
    return dir;
}

const char *fuzz_file(int slot, const char *name, const uint8_t *data, size_t n, int gz)
{
    static char paths[4][320];
    (void)name;
    snprintf(paths[slot], sizeof paths[slot], "%s/in%d", fuzz_dir(), slot);
    if (gz) {
        gzFile g = gzopen(paths[slot], "wb");
        if (!g || (n && gzwrite(g, data, (unsigned)n) != (int)n) || gzclose(g) != Z_OK) {
            fprintf(stderr, "fuzz: cannot write %s\n", paths[slot]);
            abort();
        }
        return paths[slot];
    }
    FILE *f = fopen(paths[slot], "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "fuzz: cannot write %s\n", paths[slot]);
        abort();
    }
    return paths[slot];
}

bool fuzz_utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    for (size_t i = 0; s[i];) {
        unsigned c = s[i], len, cp, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return false;
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}
