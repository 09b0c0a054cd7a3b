/* cli_args — what the flags of every subcommand share, applied by main.c
 * before a subcommand parses its own (cli_args.c), and each command's --help
 * text (cli_help.c).
 *
 * The subcommands keep their own small parsers (strcmp chains); what must mean
 * the same everywhere is done once here: --flag=value, llama.cpp's spellings,
 * GPU-only flags explained, numbers checked against one table, "did you mean". */
#ifndef CLI_ARGS_H
#define CLI_ARGS_H

typedef struct cli_help {
    const char *cmd;
    const char *text; /* usage line, then one line per option with its default */
} cli_help_t;

/* The --help text of cmd, NULL for an unknown command. */
const cli_help_t *cli_help_find(const char *cmd);

/* Rewrites cmd's arguments (argv[0] is the command's name) into the form its
 * parser reads: "--flag=value" split in two, llama.cpp's spellings mapped to
 * g4's (--ctx-size -> --ctx, -s -> --seed, --n-predict -> -n, -s -1 -> the
 * random seed), GPU-only flags (-ngl N, --main-gpu N, ...) dropped with a note,
 * and the value of every numeric option checked (type and range). Returns 0
 * with *argv replaced (memory kept until exit), or 2 after printing why. */
int cli_args_normalize(const char *cmd, int *argc, char ***argv);

/* "error: unknown option 'X' for g4 CMD (did you mean '--Y'?)" on stderr,
 * the suggestion taken from the options cmd's --help names. Returns 2. */
int cli_bad_option(const char *cmd, const char *opt);

/* The closest of n words to w within an edit distance of 2 (also a word w
 * is a prefix of), else NULL. */
const char *cli_closest(const char *w, const char *const *words, int n);

#endif
