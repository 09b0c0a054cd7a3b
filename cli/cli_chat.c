/* g4 chat-template -m MODEL.gguf [--template T.jinja] (-f CONVERSATION.json | -p JSON)
 *   prints exactly the prompt the template renders (no newline added).
 * g4 parse-output [-f FILE | -p TEXT]
 *   splits generated text into thought, answer and tool calls (JSON). */
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

/* ---- g4 chat: an interactive conversation on the stack ------------------------------ */

#include <stdlib.h>

#include "cli_generate.h"
#include "cli_stack.h"

typedef struct s_chat_stream {
    char *text;
    size_t len;
    cli_progress_t prog;
} s_chat_stream_t;

static void s_chat_progress(void *user, const G4__V1__Progress *p)
{
    s_chat_stream_t *c = user;
    cli_progress_update(&c->prog, p->prompt_done, p->prompt_total);
}

static void s_chat_token(void *user, const G4__V1__TokenEvent *t)
{
    s_chat_stream_t *c = user;
    cli_progress_clear(&c->prog);
    if (!t->text.len) return;
    fwrite(t->text.data, 1, t->text.len, stdout);
    fflush(stdout);
    char *nb = g4_realloc(c->text, c->len + t->text.len + 1);
    if (!nb) return;
    memcpy(nb + c->len, t->text.data, t->text.len);
    c->len += t->text.len;
    nb[c->len] = 0;
    c->text = nb;
}

int cli_chat(int argc, char **argv)
{
    cli_stack_opts_t o = {0};
    const char *system = NULL;
    int think = 0, n_predict = 512;
    g4_sampler_params_t sp; /* the sampler's defaults; seed 0 unless --seed */
    g4_sampler_params_default(&sp);
    sp.seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) o.model = v, i++;
        else if (!strcmp(a, "--system") && v) system = v, i++;
        else if (!strcmp(a, "--think")) think = 1;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--n-predict")) && v) n_predict = atoi(v), i++;
        else if (!strcmp(a, "--temp") && v) sp.temp = (float)atof(v), i++;
        else if (!strcmp(a, "--top-k") && v) sp.top_k = atoi(v), i++;
        else if (!strcmp(a, "--top-p") && v) sp.top_p = (float)atof(v), i++;
        else if (!strcmp(a, "--min-p") && v) sp.min_p = (float)atof(v), i++;
        else if (!strcmp(a, "--seed") && v) sp.seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--shards") && v) o.n_shards = atoi(v), i++;
        else if ((!strcmp(a, "--threads") || !strcmp(a, "-t")) && v) o.threads = atoi(v), i++;
        else if ((!strcmp(a, "--ctx") || !strcmp(a, "-c")) && v) o.n_ctx = atoi(v), i++;
        else if (!strcmp(a, "--template") && v) o.template_path = v, i++;
        else return cli_bad_option("chat", a);
    }
    cli_stack_t st;
    int own = 0;
    char ep[300];
    o.n_slots = 2;
    if (cli_stack_acquire(&o, &st, &own, ep, sizeof ep)) return 1;
    cJSON *conv = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(conv, "messages");
    cJSON_AddBoolToObject(conv, "add_generation_prompt", 1);
    cJSON_AddBoolToObject(conv, "enable_thinking", think);
    cJSON_AddStringToObject(conv, "bos_token", "<bos>");
    if (system) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", system);
        cJSON_AddItemToArray(msgs, m);
    }
    const int tty = isatty(0);
    char line[65536];
    int rc = 0;
    for (;;) {
        if (tty) fputs("> ", stdout), fflush(stdout);
        if (!fgets(line, sizeof line, stdin)) break;
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!n) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            while (cJSON_GetArraySize(msgs) > (system ? 1 : 0)) cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
            puts("(history cleared)");
            continue;
        }
        cJSON *u = cJSON_CreateObject();
        cJSON_AddStringToObject(u, "role", "user");
        cJSON_AddStringToObject(u, "content", line);
        cJSON_AddItemToArray(msgs, u);
        char *js = cJSON_PrintUnformatted(conv);
        G4__V1__GenerateRequest req = G4__V1__GENERATE_REQUEST__INIT;
        req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_CHAT_JSON;
        req.chat_json = js;
        G4__V1__SamplingParams wsp;
        g4_client_sampling(&sp, 0, &wsp);
        req.sampling = &wsp;
        req.max_tokens = n_predict;
        s_chat_stream_t cs = {0};
        cli_progress_init(&cs.prog, "prefill", "tokens", 1);
        g4_client_cb_t cb = {.on_token = s_chat_token, .on_progress = s_chat_progress, .user = &cs};
        G4__V1__Envelope *done = NULL;
        int r = cli_generate(ep, &req, &cb, 0, &done);
        cli_progress_clear(&cs.prog);
        cJSON_free(js);
        fputc('\n', stdout);
        if (r) {
            cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1);
            rc = 1;
            if (!tty) break;
            continue;
        }
        g4__v1__envelope__free_unpacked(done, NULL);
        cJSON *a = cJSON_CreateObject();
        cJSON_AddStringToObject(a, "role", "assistant");
        cJSON_AddStringToObject(a, "content", cs.text ? cs.text : "");
        cJSON_AddItemToArray(msgs, a);
        g4_free(cs.text);
        if (sp.seed) sp.seed++; /* a fixed seed stays reproducible, turns differ */
    }
    cJSON_Delete(conv);
    if (own) cli_stack_stop(&st);
    return rc;
}
