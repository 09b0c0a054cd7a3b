/* g4 chat-template -m MODEL.gguf [--template T.jinja] (-f CONVERSATION.json | -p JSON)
 *   prints exactly the prompt the template renders (no newline added).
 * g4 parse-output [-f FILE | -p TEXT]
 *   splits generated text into thought, answer and tool calls (JSON).
 * (g4 chat itself: cli_chat_session.c) */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_args.h"
#include "cli_progress.h"
#include "g4_alloc.h"
#include "g4_gguf.h"
#include "tok_chat.h"

int cli_chat_template(int argc, char **argv)
{
    const char *model = NULL, *tmpl = NULL, *file = NULL, *text = NULL;
    int openai = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--openai")) openai = 1;
        else if (!strcmp(argv[i], "--template") && i + 1 < argc) tmpl = argv[++i];
        else if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc) file = argv[++i];
        else if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) text = argv[++i];
        else return cli_bad_option("chat-template", argv[i]);
    }
    if ((!model && !tmpl) || (!file && !text)) {
        cli_error("give the template (-m MODEL.gguf or --template T.jinja) and the conversation (-f FILE or -p JSON)");
        return 2;
    }
    char *buf;
    size_t len;
    const char *in = cli_input(file, text, &len, &buf);
    if (!in) return 1;
    const char *end = NULL;
    cJSON *conv = cJSON_ParseWithOpts(in, &end, 1);
    g4_free(buf);
    if (!conv) {
        cli_error("%s: not valid JSON", file ? file : "-p");
        return 1;
    }
    g4_err_t err;
    tj_template_t *t = NULL;
    int native = 1;
    if (tmpl) {
        t = tok_chat_template_file(tmpl, &err);
        size_t sl;
        char *src = openai ? cli_read_file(tmpl, &sl) : NULL;
        if (src) native = tok_chat_source_native_tools(src, sl);
        g4_free(src);
    } else {
        g4_gguf_t *g = g4_gguf_open(model, &err);
        if (g) {
            t = tok_chat_template_gguf(g, &err);
            const char *src;
            uint64_t sl;
            if (openai && !g4_gguf_get_str(g, "tokenizer.chat_template", &src, &sl, &err))
                native = tok_chat_source_native_tools(src, (size_t)sl);
            g4_gguf_destroy(&g);
        }
    }
    if (openai && !native) {
        cJSON *f = tok_chat_fold_tool_responses(conv);
        cJSON_Delete(conv);
        conv = f;
    }
    int rc = 1;
    if (t) {
        size_t n;
        char *out = tok_chat_render(t, conv, &n, &err);
        if (out) {
            fwrite(out, 1, n, stdout);
            rc = 0;
            g4_free(out);
        }
        tj_free(&t);
    }
    if (rc) cli_error("%s", err.msg);
    cJSON_Delete(conv);
    return rc;
}

int cli_parse_output(int argc, char **argv)
{
    const char *file = NULL, *text = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc) file = argv[++i];
        else if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) text = argv[++i];
        else return cli_bad_option("parse-output", argv[i]);
    }
    if (!file && !text) {
        cli_error("usage: g4 parse-output (-f FILE | -p TEXT)");
        return 2;
    }
    size_t len;
    char *buf;
    const char *in = cli_input(file, text, &len, &buf);
    if (!in) return 1;
    g4_err_t err;
    cJSON *out = tok_chat_parse_output(in, len, &err);
    g4_free(buf);
    if (!out) {
        cli_error("%s", err.msg);
        return 1;
    }
    char *s = cJSON_PrintUnformatted(out);
    puts(s);
    cJSON_free(s);
    cJSON_Delete(out);
    return 0;
}
