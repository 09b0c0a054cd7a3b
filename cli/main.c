/* g4 — the command line: inspect, run, chat, tokenize, serve, ... */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_args.h"
#include "g4_log.h"

typedef struct cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *help;
} cli_cmd_t;

static const cli_cmd_t s_cmds[] = {
    {"inspect", cli_inspect, "print a GGUF file's metadata and tensor table"},
    {"quantize", cli_quantize, "convert an F32/F16/BF16 GGUF to Q4_K_M, Q8_0, ... as llama-quantize does"},
    {"run", cli_run, "generate text from a prompt (--in-process: without daemons)"},
    {"tokenize", cli_tokenize, "print the token ids of a text"},
    {"detokenize", cli_detokenize, "print the text of token ids"},
    {"serve", cli_serve, "an OpenAI-compatible HTTP server (/v1/chat/completions, ...)"},
    {"chat", cli_chat, "talk with the model (history, streaming)"},
    {"bench", cli_bench, "prefill / decode tokens/s, time to first token, peak RSS"},
    {"plan", cli_plan, "show where the model's layers would go on this machine"},
    {"up", cli_up, "start a persistent local stack of daemons"},
    {"status", cli_status, "show the daemons of the stack (--json)"},
    {"down", cli_down, "stop the persistent stack"},
    {"keygen", cli_keygen, "make the CURVE key set (daemon and client keys) for tcp:// endpoints"},
    {"swap", cli_swap, "replace a running daemon with a new process, without failing requests"},
    {"encode", cli_encode, "run the vision / audio tower on media files, write the embeddings"},
    {"chat-template", cli_chat_template, "print the prompt a conversation renders to"},
    {"parse-output", cli_parse_output, "split generated text into thought, answer and tool calls"},
};


/* flag is among a command's arguments (argv[2..]), not as the value of -p TEXT */
static int s_has_flag(int argc, char **argv, const char *flag)
{
    for (int k = 2; k < argc; k++)
        if (!strcmp(argv[k], flag) && !(k > 2 && (!strcmp(argv[k - 1], "-p") || !strcmp(argv[k - 1], "--prompt"))))
            return 1;
    return 0;
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: g4 COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++)
        fprintf(out, "  %-14s %s\n", s_cmds[i].name, s_cmds[i].help);
    fprintf(out, "\n'g4 COMMAND --help' shows a command's options.\n");
}

int main(int argc, char **argv)
{
    g4_log_set_ident("g4");
    if (argc < 2) {
        s_usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        s_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("g4 0.1.0\n");
        return 0;
    }
    const char *names[sizeof s_cmds / sizeof s_cmds[0]];
    for (size_t i = 0; i < sizeof s_cmds / sizeof s_cmds[0]; i++) {
        names[i] = s_cmds[i].name;
        if (strcmp(argv[1], s_cmds[i].name)) continue;
        /* --help anywhere (not as the value of a text option): the command's
         * text from cli_help.c, on stdout, before anything is checked */
        if (s_has_flag(argc, argv, "--help") || s_has_flag(argc, argv, "-h")) {
            fputs(cli_help_find(s_cmds[i].name)->text, stdout);
            return 0;
        }
        if (s_has_flag(argc, argv, "--json")) cli_json_errors_on();
        int n = argc - 1;
        char **args = argv + 1;
        int rc = cli_args_normalize(s_cmds[i].name, &n, &args);
        if (!rc) rc = s_cmds[i].fn(n, args);
        cli_json_finish(s_cmds[i].name, rc);
        return rc;
    }
    const char *near = cli_closest(argv[1], names, (int)(sizeof names / sizeof names[0]));
    if (near) cli_error("unknown command '%s' (did you mean '%s'?)", argv[1], near);
    else cli_error("unknown command '%s' (see g4 --help)", argv[1]);
    return 2;
}
