/* cli_util — small helpers shared by subcommands: errors (and their --json
 * form), number formatting, files, JSON strings. */
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "cli_progress.h"
#include "cli_stack.h"
#include "g4_alloc.h"

/* ---- errors ------------------------------------------------------------------------------ */

static int s_json_errors;      /* --json: failures also as an object on stdout */
static int s_json_reported;    /* the command put its error in its own reply */
static char s_first_error[512]; /* the first cli_error of this run */

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char msg[sizeof s_first_error];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cli_progress_clear_any();
    fprintf(stderr, "error: %s\n", msg);
    if (!s_first_error[0]) snprintf(s_first_error, sizeof s_first_error, "%s", msg);
}

void cli_json_errors_on(void) { s_json_errors = 1; }

static cJSON *s_error_object(const char *msg, int exit_code)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "message", s_first_error[0] ? s_first_error : msg);
    cJSON_AddStringToObject(e, "type", cli_stack_interrupted() ? "interrupted" : exit_code == 2 ? "usage" : "failure");
    cJSON_AddNumberToObject(e, "code", exit_code);
    return e;
}

void cli_json_add_error(cJSON *obj, const char *msg, int exit_code)
{
    if (!s_first_error[0]) cli_error("%s", msg); /* the line on stderr as well */
    cJSON_AddItemToObject(obj, "error", s_error_object(msg, exit_code));
    s_json_reported = 1;
}

void cli_json_finish(const char *cmd, int rc)
{
    if (!s_json_errors || !rc || s_json_reported) return;
    char msg[96];
    snprintf(msg, sizeof msg, "g4 %s failed (exit status %d)", cmd, rc);
    cJSON *j = cJSON_CreateObject();
    cli_json_add_error(j, msg, rc);
    char *s = cJSON_PrintUnformatted(j);
    if (s) puts(s);
    fflush(stdout);
    cJSON_free(s);
    cJSON_Delete(j);
}

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
