/* cli_args — see cli_args.h. One pass over a subcommand's arguments before
 * its own parser sees them: the commands' parsers read values with atoi /
 * atof, which take "abc" as 0, so every numeric option is checked here, from
 * one table, with the same words on every command. */
#include "cli_args.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "g4_alloc.h"

/* ---- numbers --------------------------------------------------------------------------- */

typedef enum { S_INT, S_REAL, S_SEED } s_kind_t;

typedef struct s_num {
    const char *cmds;  /* space-separated commands, "*": all */
    const char *flags; /* space-separated spellings */
    s_kind_t kind;
    double lo, hi;
} s_num_t;

static const s_num_t s_nums[] = {
    {"run chat", "-n --n-predict", S_INT, -1, 1 << 30},
    {"bench", "-n --n-gen", S_INT, 1, 1 << 20},
    {"bench", "-p --n-prompt", S_INT, 1, 32768},
    {"bench", "--reps", S_INT, 1, 100},
    {"bench", "--warmup", S_INT, 0, 100},
    {"run chat", "--temp", S_REAL, 0, 100},
    {"run chat", "--top-k", S_INT, 0, 1 << 24},
    {"run chat", "--top-p --min-p", S_REAL, 0, 1},
    {"run chat", "--seed", S_SEED, 0, 0},
    {"run chat", "--repeat-penalty", S_REAL, 0, 100},
    {"run chat", "--repeat-last-n", S_INT, -1, 1 << 24},
    {"run chat", "--presence-penalty --frequency-penalty", S_REAL, -2, 2},
    {"run", "--logprobs", S_INT, 0, 100},
    {"run bench", "--draft-max --draft-min", S_INT, 0, 256},
    {"run bench", "--draft-p-min", S_REAL, 0, 1},
    {"run", "--timeout", S_REAL, 0, 1e9},
    {"*", "-t --threads", S_INT, 0, 4096},
    {"run chat up serve plan", "-c --ctx", S_INT, 0, 1 << 24},
    {"run chat up serve bench plan", "--shards", S_INT, 0, 28},
    {"up serve plan", "--slots", S_INT, 1, 4096},
    {"serve", "--port", S_INT, 1, 65535},
    {"serve", "--max-conn-per-ip", S_INT, 1, 100000},
    {"serve", "--request-timeout", S_INT, 1, 86400},
    {"run encode", "--image-min-tokens --image-max-tokens", S_INT, 0, 1 << 20},
    {"inspect", "--values", S_INT, 0, 9e15},
};

/* word is one of the space-separated words of list ("*" matches all) */
static int s_in(const char *list, const char *word)
{
    if (!strcmp(list, "*")) return 1;
    const size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n])) return 1;
    return 0;
}

static const s_num_t *s_num_find(const char *cmd, const char *flag)
{
    for (size_t i = 0; i < sizeof s_nums / sizeof s_nums[0]; i++)
        if (s_in(s_nums[i].cmds, cmd) && s_in(s_nums[i].flags, flag)) return &s_nums[i];
    return NULL;
}

/* 0, or 2 after saying what is wrong with "flag v" */
static int s_check_num(const s_num_t *n, const char *flag, const char *v)
{
    char *end;
    errno = 0;
    const double x = n->kind == S_REAL ? strtod(v, &end) : (double)strtoll(v, &end, 10);
    if (n->kind == S_SEED) {
        errno = 0;
        if (!strcmp(v, "-1")) return 0; /* llama.cpp's "random" */
        (void)strtoull(v, &end, 10);
        if (end == v || *end || errno || v[0] == '-') {
            cli_error("%s '%s': a seed is a whole number from 0 to 2^64-1 (-1: random)", flag, v);
            return 2;
        }
        return 0;
    }
    if (end == v || *end || errno || !isfinite(x)) {
        cli_error("%s '%s': not %s", flag, v, n->kind == S_INT ? "a whole number" : "a number");
        return 2;
    }
    if (x < n->lo || x > n->hi) {
        cli_error("%s %s: must be from %.10g to %.10g", flag, v, n->lo, n->hi);
        return 2;
    }
    return 0;
}

/* ---- spellings ------------------------------------------------------------------------- */

/* llama.cpp's names of options g4 has under another name */
static const char *const s_alias[][2] = {
    {"--ctx-size", "--ctx"},
    {"-s", "--seed"},
    {"--n-predict", "-n"},
    /* speculative decoding: llama.cpp's old and new spellings */
    {"-md", "--draft-model"},
    {"--model-draft", "--draft-model"},
    {"--spec-draft-model", "--draft-model"},
    {"--draft", "--draft-max"},
    {"--draft-n", "--draft-max"},
    {"--spec-draft-n-max", "--draft-max"},
    {"--draft-n-min", "--draft-min"},
    {"--spec-draft-n-min", "--draft-min"},
    {"--spec-draft-p-min", "--draft-p-min"},
    /* llama.cpp's device list (-dev CUDA0,CUDA1): g4's --devices takes its names too */
    {"-dev", "--devices"},
    {"--device", "--devices"},
};

/* llama.cpp's GPU options: a user coming from llama-cli types them by habit */
static const char *const s_gpu_val[] = {"-ngl", "--gpu-layers", "--n-gpu-layers", "-mg", "--main-gpu", "-sm",
                                        "--split-mode", "-ts", "--tensor-split"};

/* options whose value is free text (it may start with '-' or hold '=') */
static const char s_text_opts[] = "-p --prompt --system --stop -f --file --template --api-key";

static int s_is_gpu(const char *a)
{
    for (size_t i = 0; i < sizeof s_gpu_val / sizeof s_gpu_val[0]; i++)
        if (!strcmp(a, s_gpu_val[i])) return 1;
    return 0;
}

static char **s_argv; /* the rewritten arguments, kept until exit */

int cli_args_normalize(const char *cmd, int *argc, char ***argv)
{
    const int n = *argc;
    char **in = *argv;
    s_argv = g4_calloc((size_t)n * 2 + 1, sizeof *s_argv);
    if (!s_argv) return 1;
    int k = 0;
    s_argv[k++] = in[0];
    for (int i = 1; i < n; i++) {
        const char *a = in[i], *v = NULL; /* v: a value given as --flag=value */
        char *name = NULL;
        if (s_in(s_text_opts, in[i - 1]) && !(!strcmp(cmd, "bench") && !strcmp(in[i - 1], "-p"))) {
            s_argv[k++] = in[i]; /* free text, whatever it looks like */
            continue;
        }
        const char *eq = strchr(a, '=');
        if (!strncmp(a, "--", 2) && eq && eq > a + 2) {
            if (!(name = g4_strndup(a, (size_t)(eq - a)))) return 1;
            a = name, v = eq + 1;
        }
        for (size_t j = 0; j < sizeof s_alias / sizeof s_alias[0]; j++)
            if (!strcmp(a, s_alias[j][0])) a = s_alias[j][1];
        if (name && a != name) g4_free(name), name = NULL; /* (an alias took its place) */
        if (s_is_gpu(a) || !strcmp(a, "-fa") || !strcmp(a, "--flash-attn")) {
            const char *next = i + 1 < n ? in[i + 1] : "";
            if (!v && ((s_is_gpu(a) && i + 1 < n) || !strcmp(next, "on") || !strcmp(next, "off") || !strcmp(next, "auto")))
                v = next, i++;
            fprintf(stderr, "note: %s%s%s ignored: --devices cuda:0,... says where the layers go (g4 plan --devices "
                            "shows it)\n", a, v ? " " : "", v ? v : "");
            g4_free(name);
            continue;
        }
        s_argv[k++] = (char *)a;
        const s_num_t *num = s_num_find(cmd, a);
        if (num && !v) {
            if (i + 1 >= n) {
                cli_error("%s needs a value (see g4 %s --help)", a, cmd);
                return 2;
            }
            v = in[++i];
        }
        if (num && s_check_num(num, a, v)) return 2;
        if (num && num->kind == S_SEED && !strcmp(v, "-1")) v = "4294967295";
        if (v) s_argv[k++] = (char *)v;
    }
    s_argv[k] = NULL;
    *argc = k, *argv = s_argv;
    return 0;
}

/* ---- did you mean ---------------------------------------------------------------------- */

static int s_distance(const char *a, const char *b)
{
    const size_t la = strlen(a), lb = strlen(b);
    if (la > 40 || lb > 40) return 99;
    int row[41];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) { /* Levenshtein, one row */
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            const int up = row[j];
            int d = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < d) d = up + 1;
            if (row[j - 1] + 1 < d) d = row[j - 1] + 1;
            row[j] = d, diag = up;
        }
    }
    return row[lb];
}

const char *cli_closest(const char *w, const char *const *words, int n)
{
    const char *best = NULL;
    int best_d = 3;
    for (int i = 0; i < n; i++) {
        const int d = strlen(w) >= 3 && !strncmp(words[i], w, strlen(w)) ? 1 : s_distance(w, words[i]);
        if (d < best_d) best_d = d, best = words[i];
    }
    return best;
}

int cli_bad_option(const char *cmd, const char *opt)
{
    const cli_help_t *h = cli_help_find(cmd);
    char words[128][32];
    const char *wp[128];
    int n = 0;
    /* the options the help text names: "-x" or "--word" after a space, '[', '(', '|' or ',' */
    for (const char *p = h ? h->text : ""; *p && n < 128; p++) {
        if (*p != '-' || (p > h->text && !strchr(" [(|,", p[-1]))) continue;
        size_t len = strspn(p, "-abcdefghijklmnopqrstuvwxyz0123456789");
        if (len < 2 || len >= sizeof words[0] || p[1] == ' ') continue;
        memcpy(words[n], p, len), words[n][len] = 0;
        wp[n] = words[n], n++;
        p += len - 1;
    }
    const char *near = cli_closest(opt, wp, n);
    if (near) cli_error("unknown option '%s' for g4 %s (did you mean '%s'?)", opt, cmd, near);
    else cli_error("unknown option '%s' for g4 %s (see g4 %s --help)", opt, cmd, cmd);
    return 2;
}
