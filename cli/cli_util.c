/* cli_util — small formatting helpers shared by subcommands. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "g4_alloc.h"

void cli_fmt_double(char *buf, size_t size, double v)
{
    if (isnan(v)) {
        snprintf(buf, size, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, size, v < 0 ? "-inf" : "inf");
        return;
    }
    char tmp[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v) break;
    }
    /* decide between fixed and exponent like Python's repr */
    int exp10 = v == 0 ? 0 : (int)floor(log10(fabs(v)));
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, v);
    char *e = strchr(tmp, 'e');
    if (e) exp10 = atoi(e + 1);
    if (exp10 < -4 || exp10 >= 16) {
        /* mantissa digits then e±XX */
        char mant[40];
        size_t ml = (size_t)(e - tmp);
        memcpy(mant, tmp, ml);
        mant[ml] = '\0';
        snprintf(buf, size, "%se%c%02d", mant, exp10 < 0 ? '-' : '+', abs(exp10));
    } else {
        int decimals = prec - 1 - exp10;
        if (decimals < 1) decimals = 1;
        snprintf(buf, size, "%.*f", decimals, v);
        /* trim trailing zeros beyond one decimal */
        char *dot = strchr(buf, '.');
        if (dot) {
            char *end = buf + strlen(buf) - 1;
            while (end > dot + 1 && *end == '0') *end-- = '\0';
        }
    }
}

void cli_print_pyrepr(FILE *out, const char *s, size_t n)
{
    int has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    fputc(q, out);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\') fputs("\\\\", out);
        else if (c == (unsigned char)q) fprintf(out, "\\%c", q);
        else if (c == '\n') fputs("\\n", out);
        else if (c == '\r') fputs("\\r", out);
        else if (c == '\t') fputs("\\t", out);
        else if (c < 0x20 || c == 0x7f) fprintf(out, "\\x%02x", c);
        else fputc(c, out);
    }
    fputc(q, out);
}

const char *cli_input(const char *file, const char *text, size_t *len, char **owned)
{
    *owned = NULL;
    *len = text ? strlen(text) : 0;
    if (!file) return text;
    if (!(*owned = cli_read_file(file, len))) cli_error("%s: %s", file, strerror(errno));
    return *owned;
}

char *cli_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, used = 0;
    char *b = g4_malloc(cap);
    for (size_t r; b && (r = fread(b + used, 1, cap - used - 1, f)) > 0;) {
        used += r;
        if (used + 1 == cap) {
            char *nb = g4_realloc(b, cap * 2);
            if (!nb) g4_free(b);
            b = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!b) return NULL;
    b[used] = '\0';
    if (len) *len = used;
    return b;
}

char *cli_json_quote(const char *s, size_t n)
{
    char *o = g4_malloc(n * 6 + 3);
    if (!o) return NULL;
    size_t k = 0;
    o[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') o[k++] = '\\', o[k++] = (char)c;
        else if (c == '\n') o[k++] = '\\', o[k++] = 'n';
        else if (c == '\r') o[k++] = '\\', o[k++] = 'r';
        else if (c == '\t') o[k++] = '\\', o[k++] = 't';
        else if (c < 0x20) k += (size_t)sprintf(o + k, "\\u%04x", c);
        else o[k++] = (char)c;
    }
    o[k++] = '"';
    o[k] = 0;
    return o;
}
