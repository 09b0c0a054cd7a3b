/* g4_cfg — see g4_cfg.h. */
#include "g4_cfg.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"

static const g4_cfg_opt_t *s_find(const g4_cfg_opt_t *opts, size_t n, const char *key, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, key, len) == 0) return &opts[i];
    return NULL;
}

static const g4_cfg_opt_t *s_find_alias(const g4_cfg_opt_t *opts, size_t n, const char *arg)
{
    for (size_t i = 0; i < n; i++)
        if (opts[i].alias && !strcmp(opts[i].alias, arg)) return &opts[i];
    return NULL;
}

static int s_apply(const g4_cfg_opt_t *o, void *base, const char *v, g4_err_t *err)
{
    char *field = (char *)base + o->offset;
    char *end = NULL;
    switch (o->type) {
    case G4_CFG_BOOL: {
        int b;
        if (!v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
            b = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
            b = 0;
        else
            return g4_err_set(err, G4_ERR_RANGE, "option %s: '%s' is not a boolean", o->name, v);
        *(int *)field = b;
        return G4_OK;
    }
    case G4_CFG_INT: {
        if (!v || !*v) return g4_err_set(err, G4_ERR_RANGE, "option %s needs a value", o->name);
        errno = 0;
        long long x = strtoll(v, &end, 0);
        if (errno || *end) return g4_err_set(err, G4_ERR_RANGE, "option %s: '%s' is not an integer", o->name, v);
        if (o->min <= o->max && ((double)x < o->min || (double)x > o->max))
            return g4_err_set(err, G4_ERR_RANGE, "option %s: %lld is outside [%.0f, %.0f]", o->name, x, o->min, o->max);
        *(int64_t *)field = x;
        return G4_OK;
    }
    case G4_CFG_DOUBLE: {
        if (!v || !*v) return g4_err_set(err, G4_ERR_RANGE, "option %s needs a value", o->name);
        errno = 0;
        double x = strtod(v, &end);
        if (errno || *end || x != x) return g4_err_set(err, G4_ERR_RANGE, "option %s: '%s' is not a number", o->name, v);
        if (o->min <= o->max && (x < o->min || x > o->max))
            return g4_err_set(err, G4_ERR_RANGE, "option %s: %g is outside [%g, %g]", o->name, x, o->min, o->max);
        *(double *)field = x;
        return G4_OK;
    }
    case G4_CFG_STRING: {
        char **s = (char **)field;
        char *d = NULL;
        if (v) {
            d = g4_strdup(v);
            if (!d) return g4_err_set(err, G4_ERR_NOMEM, "option %s: out of memory", o->name);
        }
        g4_free(*s);
        *s = d;
        return G4_OK;
    }
    }
    return g4_err_set(err, G4_ERR_RANGE, "option %s: bad type", o->name);
}

int g4_cfg_defaults(const g4_cfg_opt_t *opts, size_t n, void *base, g4_err_t *err)
{
    for (size_t i = 0; i < n; i++) { /* every field known before any is set (the struct may be fresh memory) */
        char *field = (char *)base + opts[i].offset;
        switch (opts[i].type) {
        case G4_CFG_BOOL: *(int *)field = 0; break;
        case G4_CFG_INT: *(int64_t *)field = 0; break;
        case G4_CFG_DOUBLE: *(double *)field = 0; break;
        case G4_CFG_STRING: *(char **)field = NULL; break;
        }
    }
    for (size_t i = 0; i < n; i++) {
        int rc = opts[i].def ? s_apply(&opts[i], base, opts[i].def, err) : G4_OK;
        if (rc) return rc;
    }
    return G4_OK;
}

int g4_cfg_load_env(const g4_cfg_opt_t *opts, size_t n, void *base, g4_err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = opts[i].env ? getenv(opts[i].env) : NULL;
        if (!v || !*v) continue;
        /* a switch in the environment is on unless it says off, as the
         * daemons read these variables before the table existed */
        if (opts[i].type == G4_CFG_BOOL && strcmp(v, "0") && strcmp(v, "false") && strcmp(v, "no") && strcmp(v, "off"))
            v = "1";
        g4_err_t e2;
        if (s_apply(&opts[i], base, v, &e2)) return g4_err_set(err, e2.code, "$%s: %s", opts[i].env, e2.msg);
    }
    return G4_OK;
}

int g4_cfg_set(const g4_cfg_opt_t *opts, size_t n, void *base, const char *key, const char *value,
               g4_err_t *err)
{
    const g4_cfg_opt_t *o = s_find(opts, n, key, strlen(key));
    if (!o) return g4_err_set(err, G4_ERR_RANGE, "unknown option '%s'", key);
    return s_apply(o, base, value, err);
}

int g4_cfg_load_file(const g4_cfg_opt_t *opts, size_t n, void *base, const char *path, g4_err_t *err)
{
    FILE *f = fopen(path, "r");
    if (!f) return g4_err_set(err, G4_ERR_IO, "%s: %s", path, strerror(errno));
    char line[4096];
    int lineno = 0, rc = G4_OK;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *p = line;
        while (isspace((unsigned char)*p)) p++;
        if (*p == '#' || *p == '\0') continue;
        char *e = p + strlen(p);
        while (e > p && isspace((unsigned char)e[-1])) *--e = '\0';
        char *key = p;
        while (*p && !isspace((unsigned char)*p)) p++;
        if (*p) *p++ = '\0';
        while (isspace((unsigned char)*p)) p++;
        g4_err_t e2;
        const g4_cfg_opt_t *o = s_find(opts, n, key, strlen(key));
        if (o && (o->flags & G4_CFG_ARGV_ONLY)) rc = g4_err_set(&e2, G4_ERR_RANGE, "'%s' is a flag, not a setting", key);
        else rc = g4_cfg_set(opts, n, base, key, *p ? p : NULL, &e2);
        if (rc) {
            g4_err_set(err, rc, "%s:%d: %s", path, lineno, e2.msg);
            break;
        }
    }
    fclose(f);
    return rc;
}

int g4_cfg_parse_args(const g4_cfg_opt_t *opts, size_t n, void *base, int argc, char **argv, int first,
                      const char **pos, int *n_pos, g4_err_t *err)
{
    int max_pos = n_pos ? *n_pos : 0, np = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        const g4_cfg_opt_t *al = s_find_alias(opts, n, a);
        if (al) {
            if (al->type != G4_CFG_BOOL && i + 1 >= argc)
                return g4_err_set(err, G4_ERR_RANGE, "option %s needs a value", a);
            int rc = s_apply(al, base, al->type == G4_CFG_BOOL ? NULL : argv[++i], err);
            if (rc) return rc;
            continue;
        }
        if (a[0] != '-' || a[1] != '-' || a[2] == '\0') {
            if (np >= max_pos) return g4_err_set(err, G4_ERR_RANGE, "unexpected argument '%s'", a);
            pos[np++] = a;
            continue;
        }
        const char *key = a + 2;
        const char *eq = strchr(key, '=');
        size_t klen = eq ? (size_t)(eq - key) : strlen(key);
        const g4_cfg_opt_t *o = s_find(opts, n, key, klen);
        if (!o && klen > 3 && !strncmp(key, "no-", 3)) {
            o = s_find(opts, n, key + 3, klen - 3);
            if (o && o->type == G4_CFG_BOOL && !eq) {
                *(int *)((char *)base + o->offset) = 0;
                continue;
            }
            o = NULL;
        }
        if (!o) return g4_err_set(err, G4_ERR_RANGE, "unknown option '--%.*s'", (int)klen, key);
        const char *v = NULL;
        if (eq) v = eq + 1;
        else if (o->type != G4_CFG_BOOL) {
            if (i + 1 >= argc) return g4_err_set(err, G4_ERR_RANGE, "option --%s needs a value", o->name);
            v = argv[++i];
        }
        int rc = s_apply(o, base, v, err);
        if (rc) return rc;
    }
    if (n_pos) *n_pos = np;
    return G4_OK;
}

int g4_cfg_load(const g4_cfg_opt_t *opts, size_t n, void *base, int argc, char **argv, const char *file_key,
                g4_err_t *err)
{
    int rc = g4_cfg_defaults(opts, n, base, err);
    if (!rc) rc = g4_cfg_load_env(opts, n, base, err);
    if (!rc) rc = g4_cfg_parse_args(opts, n, base, argc, argv, 1, NULL, NULL, err);
    if (rc || !file_key) return rc;
    const g4_cfg_opt_t *f = s_find(opts, n, file_key, strlen(file_key));
    const char *path = f && f->type == G4_CFG_STRING ? *(char **)((char *)base + f->offset) : NULL;
    if (!path) return G4_OK;
    rc = g4_cfg_load_file(opts, n, base, path, err);
    return rc ? rc : g4_cfg_parse_args(opts, n, base, argc, argv, 1, NULL, NULL, err);
}

int g4_cfg_check(const g4_cfg_opt_t *opts, size_t n, const void *base, g4_err_t *err)
{
    for (size_t i = 0; i < n; i++)
        if ((opts[i].flags & G4_CFG_REQUIRED) && opts[i].type == G4_CFG_STRING &&
            !*(char *const *)((const char *)base + opts[i].offset))
            return g4_err_set(err, G4_ERR_RANGE, "--%s is required", opts[i].name);
    return G4_OK;
}

void g4_cfg_print_help(const g4_cfg_opt_t *opts, size_t n, FILE *out)
{
    static const char *const tn[] = {"", "N", "X", "S"};
    for (size_t i = 0; i < n; i++) {
        const g4_cfg_opt_t *o = &opts[i];
        char left[64];
        snprintf(left, sizeof left, "%s%s--%s %s", o->alias ? o->alias : "", o->alias ? ", " : "    ", o->name,
                 o->arg ? o->arg : tn[o->type]);
        fprintf(out, "  %-26s %s", left, o->help ? o->help : "");
        if (o->flags & G4_CFG_REQUIRED) fputs(" (required)", out);
        if (o->def) fprintf(out, " (default %s)", o->def);
        if (o->env) fprintf(out, " [$%s]", o->env);
        fputc('\n', out);
    }
}

void g4_cfg_print(const g4_cfg_opt_t *opts, size_t n, const void *base, FILE *out)
{
    for (size_t i = 0; i < n; i++) {
        const char *field = (const char *)base + opts[i].offset;
        if (opts[i].flags & G4_CFG_ARGV_ONLY) continue;
        switch (opts[i].type) {
        case G4_CFG_BOOL: fprintf(out, "%s %s\n", opts[i].name, *(const int *)field ? "true" : "false"); break;
        case G4_CFG_INT: fprintf(out, "%s %lld\n", opts[i].name, (long long)*(const int64_t *)field); break;
        case G4_CFG_DOUBLE: fprintf(out, "%s %.17g\n", opts[i].name, *(const double *)field); break;
        case G4_CFG_STRING: {
            const char *s = *(char *const *)field;
            if (s) fprintf(out, "%s %s\n", opts[i].name, s);
            else fprintf(out, "# %s (unset)\n", opts[i].name);
            break;
        }
        }
    }
}

void g4_cfg_fini(const g4_cfg_opt_t *opts, size_t n, void *base)
{
    for (size_t i = 0; i < n; i++) {
        if (opts[i].type == G4_CFG_STRING) {
            char **s = (char **)((char *)base + opts[i].offset);
            g4_free(*s);
            *s = NULL;
        }
    }
}
