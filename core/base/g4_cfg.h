/* g4_cfg — options declared once in a table, parsed from files and flags.
 *
 * A program declares its options as an array of g4_cfg_opt_t (name, type,
 * default, bounds, help, offset of the field in its config struct). From that
 * one table come: defaults, `key value` config files (# comments), `--key value`
 * / `--key=value` flags, --help text, --print-config, and validation.
 * Later sources win: defaults < file < flags. Unknown keys are errors. */
#ifndef G4_CFG_H
#define G4_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "g4_err.h"

typedef enum g4_cfg_type {
    G4_CFG_BOOL,   /* int field: 0/1; a flag without value means true */
    G4_CFG_INT,    /* int64_t field */
    G4_CFG_DOUBLE, /* double field */
    G4_CFG_STRING, /* char * field, owned by the config (g4_cfg_fini frees) */
} g4_cfg_type_t;

typedef struct g4_cfg_opt {
    const char *name;    /* "listen", "threads" — same in file and as --name */
    g4_cfg_type_t type;
    size_t offset;       /* offsetof(struct, field) */
    const char *def;     /* default as text, NULL = none (string NULL / 0) */
    double min, max;     /* bounds for INT/DOUBLE (min > max: unbounded) */
    int reloadable;      /* may change on SIGHUP */
    const char *help;
} g4_cfg_opt_t;

/* Applies every default to the struct at `base`. */
int g4_cfg_defaults(const g4_cfg_opt_t *opts, size_t n_opts, void *base, g4_err_t *err);
/* Sets one option from text, validating type and bounds. */
int g4_cfg_set(const g4_cfg_opt_t *opts, size_t n_opts, void *base, const char *key,
               const char *value, g4_err_t *err);
/* Reads `key value` lines (# comments, blank lines ignored). */
int g4_cfg_load_file(const g4_cfg_opt_t *opts, size_t n_opts, void *base, const char *path,
                     g4_err_t *err);
/* Parses argv[first..argc): --key value, --key=value, --flag (bools), --no-flag.
 * Positional arguments are collected into pos[] (up to *n_pos in, count out). */
int g4_cfg_parse_args(const g4_cfg_opt_t *opts, size_t n_opts, void *base, int argc,
                      char **argv, int first, const char **pos, int *n_pos, g4_err_t *err);
void g4_cfg_print_help(const g4_cfg_opt_t *opts, size_t n_opts, FILE *out);
void g4_cfg_print(const g4_cfg_opt_t *opts, size_t n_opts, const void *base, FILE *out);
/* Frees string fields. */
void g4_cfg_fini(const g4_cfg_opt_t *opts, size_t n_opts, void *base);

#endif
