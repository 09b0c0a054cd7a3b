/* g4 chat-template -m MODEL.gguf [--template T.jinja] (-f CONVERSATION.json | -p JSON)
 *   prints exactly the prompt the template renders (no newline added).
 * g4 parse-output [-f FILE | -p TEXT]
 *   splits generated text into thought, answer and tool calls (JSON). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "g4_alloc.h"
#include "g4_gguf.h"
#include "tok_chat.h"

static const char s_usage[] =
    "usage: g4 chat-template (-m MODEL.gguf | --template T.jinja) (-f CONVERSATION.json | -p JSON)\n"
    "  CONVERSATION: {\"messages\": [...], \"tools\": [...], \"add_generation_prompt\": true,\n"
    "                 \"enable_thinking\": false, \"bos_token\": \"<bos>\"}";

int cli_chat_template(int argc, char **argv)
{
    const char *model = NULL, *tmpl = NULL, *file = NULL, *text = NULL;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--template") && i + 1 < argc) tmpl = argv[++i];
        else if ((!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) && i + 1 < argc) file = argv[++i];
        else if ((!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            puts(s_usage);
            return 0;
        } else {
            cli_error("%s", s_usage);
            return 2;
        }
    }
    if ((!model && !tmpl) || (!file && !text)) {
        cli_error("%s", s_usage);
        return 2;
    }
    char *buf = NULL;
    size_t len = 0;
    if (file && !(buf = cli_read_file(file, &len))) {
        cli_error("%s: %s", file, strerror(errno));
        return 1;
    }
    const char *end = NULL;
    cJSON *conv = cJSON_ParseWithOpts(buf ? buf : text, &end, 1);
    g4_free(buf);
    if (!conv) {
        cli_error("%s: not valid JSON", file ? file : "-p");
        return 1;
    }
    g4_err_t err;
    tj_template_t *t = NULL;
    if (tmpl) {
        t = tok_chat_template_file(tmpl, &err);
    } else {
        g4_gguf_t *g = g4_gguf_open(model, &err);
        if (g) {
            t = tok_chat_template_gguf(g, &err);
            g4_gguf_destroy(&g);
        }
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
        else {
            cli_error("usage: g4 parse-output (-f FILE | -p TEXT)");
            return 2;
        }
    }
    if (!file && !text) {
        cli_error("usage: g4 parse-output (-f FILE | -p TEXT)");
        return 2;
    }
    size_t len = text ? strlen(text) : 0;
    char *buf = NULL;
    if (file && !(buf = cli_read_file(file, &len))) {
        cli_error("%s: %s", file, strerror(errno));
        return 1;
    }
    g4_err_t err;
    cJSON *out = tok_chat_parse_output(buf ? buf : text, len, &err);
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
