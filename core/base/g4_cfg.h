/* g4_cfg — options declared once in a table, parsed from the environment,
 * files and flags.
 *
 * A program declares its options as an array of g4_cfg_opt_t (name, type,
 * default, bounds, help, offset of the field in its config struct, and
 * optionally an environment variable, a short alias and flags). From that
 * one table come: defaults, environment overrides, `key value` config files
 * (# comments), `--key value` / `--key=value` flags, --help text,
 * --print-config, and validation (types, bounds, required options).
 * Later sources win: defaults < environment < file < flags (g4_cfg_load).
 * Unknown keys are errors.
 *
 * Map: the table (g4_cfg_opt_t) — one source at a time (defaults, env, set,
 * file, args) — all sources in order (g4_cfg_load) — checks — output (help,
 * print) — fini. Used by every daemon through g4_daemon_configure. */
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

enum {
    G4_CFG_REQUIRED = 1u << 0,  /* g4_cfg_check fails while a string option is unset */
    G4_CFG_ARGV_ONLY = 1u << 1, /* a command, not configuration (--help, --config):
                                   refused in files, left out of g4_cfg_print */
};

typedef struct g4_cfg_opt {
    const char *name;    /* "listen", "threads" — same in file and as --name */
    g4_cfg_type_t type;
    size_t offset;       /* offsetof(struct, field) */
    const char *def;     /* default as text, NULL = none (string NULL / 0) */
    double min, max;     /* bounds for INT/DOUBLE (min > max: unbounded) */
    int reloadable;      /* may change on SIGHUP */
    const char *help;
    const char *env;     /* environment variable that overrides the default, NULL = none
                            (for programs whose parent passes settings down that way) */
    const char *alias;   /* a short flag, e.g. "-m" (takes its value as the next argument) */
    unsigned flags;      /* G4_CFG_REQUIRED, G4_CFG_ARGV_ONLY */
    const char *arg;     /* the value's name in --help ("EP", "MS"); NULL: N, X or S by type */
} g4_cfg_opt_t;

/* ---- one source at a time ------------------------------------------------ */

/* Applies every default to the struct at `base`, which may be uninitialised:
 * string fields are not freed first (g4_cfg_fini before reusing a struct). */
int g4_cfg_defaults(const g4_cfg_opt_t *opts, size_t n_opts, void *base, g4_err_t *err);
/* Applies the options whose `env` variable is set and not empty. A boolean
 * variable is true unless it reads 0, false, no or off (so G4_X=1 and G4_X=yes
 * both turn it on). Errors name the variable. */
int g4_cfg_load_env(const g4_cfg_opt_t *opts, size_t n_opts, void *base, g4_err_t *err);
/* Sets one option from text, validating type and bounds. */
int g4_cfg_set(const g4_cfg_opt_t *opts, size_t n_opts, void *base, const char *key,
               const char *value, g4_err_t *err);
/* Reads `key value` lines (# comments, blank lines ignored); G4_CFG_ARGV_ONLY
 * keys are refused. */
int g4_cfg_load_file(const g4_cfg_opt_t *opts, size_t n_opts, void *base, const char *path,
                     g4_err_t *err);
/* Parses argv[first..argc): --key value, --key=value, --flag (bools), --no-flag,
 * and aliases (-m value). Positional arguments are collected into pos[] (up to
 * *n_pos in, count out); pos may be NULL when none are allowed. */
int g4_cfg_parse_args(const g4_cfg_opt_t *opts, size_t n_opts, void *base, int argc,
                      char **argv, int first, const char **pos, int *n_pos, g4_err_t *err);

/* ---- all sources ------------------------------------------------------------ */

/* Starts with g4_cfg_defaults (so: g4_cfg_fini before loading into a used
 * struct), then: defaults < environment < the file named by the string option `file_key`
 * (when set, by any source; NULL: no file option) < argv[1..argc). Flags win
 * over the file although the file's name is itself a flag: argv is parsed
 * once to find it and again after the file. */
int g4_cfg_load(const g4_cfg_opt_t *opts, size_t n_opts, void *base, int argc, char **argv,
                const char *file_key, g4_err_t *err);
/* Fails naming the first G4_CFG_REQUIRED option that is still unset. */
int g4_cfg_check(const g4_cfg_opt_t *opts, size_t n_opts, const void *base, g4_err_t *err);

/* ---- output ------------------------------------------------------------------ */

/* One line per option: flag, alias, help, default and environment variable. */
void g4_cfg_print_help(const g4_cfg_opt_t *opts, size_t n_opts, FILE *out);
/* The configuration in effect as `key value` lines a file could hold. */
void g4_cfg_print(const g4_cfg_opt_t *opts, size_t n_opts, const void *base, FILE *out);
/* Frees string fields. */
void g4_cfg_fini(const g4_cfg_opt_t *opts, size_t n_opts, void *base);

#endif
