/* g4 chat — a conversation on the stack, as Ollama's and llama-cli's feel:
 *
 *   input     one turn per line; a line """ opens a multi-line turn that the
 *             next line ending in """ closes; on a terminal, line editing and
 *             history by libedit (Debian's libedit)
 *   commands  /help /reset /save FILE /load FILE /exit (/quit, /bye); any other
 *             /word is refused, never sent to the model
 *   Ctrl-C    stops the reply (what came stays in the history), the prompt
 *             comes back; a second Ctrl-C during the same reply exits
 *   history   every turn goes into every prompt; when the scheduler says the
 *             prompt outgrows the context, the oldest turns are dropped (with
 *             a note) and the turn is sent again
 *
 * The embedded stack (cli_stack) is started once and stopped at the end. */
#include <cjson/cJSON.h>
#include <editline/readline.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_args.h"
#include "cli_generate.h"
#include "cli_progress.h"
#include "cli_stack.h"
#include "g4_alloc.h"

typedef struct s_reply {
    char *text;
    size_t len;
    cli_progress_t prog;
} s_reply_t;

static void s_append(char **b, size_t *n, const void *p, size_t k)
{
    char *nb = g4_realloc(*b, *n + k + 1);
    if (!nb) return;
    memcpy(nb + *n, p, k);
    *n += k;
    nb[*n] = 0;
    *b = nb;
}

static void s_on_progress(void *user, const G4__V1__Progress *p)
{
    s_reply_t *c = user;
    cli_progress_update(&c->prog, p->prompt_done, p->prompt_total);
}

static void s_on_token(void *user, const G4__V1__TokenEvent *t)
{
    s_reply_t *c = user;
    cli_progress_clear(&c->prog);
    if (!t->text.len) return;
    fwrite(t->text.data, 1, t->text.len, stdout);
    fflush(stdout);
    s_append(&c->text, &c->len, t->text.data, t->text.len);
}

/* ---- input ---------------------------------------------------------------------------- */

/* One line without its newline (caller frees), NULL at the end of input. */
static char *s_line(int tty, const char *prompt)
{
    if (tty) {
        char *l = readline(prompt);
        if (l && *l) add_history(l);
        return l;
    }
    char buf[65536];
    if (!fgets(buf, sizeof buf, stdin)) return NULL;
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    return strdup(buf);
}

/* One turn (caller frees): a line, or the lines from one that starts with
 * """ to one that ends with """ (joined by newlines, the quotes left out). */
static char *s_turn(int tty)
{
    char *l = s_line(tty, "> ");
    if (!l || strncmp(l, "\"\"\"", 3)) return l;
    char *text = NULL, *cur = l;
    size_t len = 0;
    for (const char *part = l + 3;;) {
        size_t n = strlen(part);
        const int closes = n >= 3 && !strcmp(part + n - 3, "\"\"\"");
        if (closes) n -= 3;
        if (text) s_append(&text, &len, "\n", 1);
        if (text || n || cur != l) s_append(&text, &len, part, n);
        free(cur);
        if (closes || !(cur = s_line(tty, ". "))) break;
        part = cur;
    }
    return text ? text : g4_strdup("");
}

/* ---- the conversation ------------------------------------------------------------------- */

static const char s_help[] = "/help            this text\n"
                             "/reset           forget the conversation (the system turn stays)\n"
                             "/save FILE       write the conversation as JSON\n"
                             "/load FILE       read a conversation written by /save\n"
                             "/exit            end (also /quit, /bye, Ctrl-D)\n"
                             "\"\"\"             opens and closes a turn of several lines\n"
                             "Ctrl-C           stops the reply; twice exits";

static void s_add(cJSON *msgs, const char *role, const char *content)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    cJSON_AddItemToArray(msgs, m);
}

/* drops the oldest user turn and what followed it up to the next user turn;
 * 0 when there is nothing older than the last turn to drop */
static int s_drop_oldest(cJSON *msgs, int first)
{
    const int n = cJSON_GetArraySize(msgs);
    int end = first + 1;
    while (end < n && strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, end), "role")->valuestring, "user")) end++;
    if (end >= n) return 0;
    for (int i = first; i < end; i++) cJSON_DeleteItemFromArray(msgs, first);
    return 1;
}

/* /save, /load: the messages array as JSON */
static void s_save(const cJSON *msgs, const char *path)
{
    char *js = cJSON_Print(msgs);
    FILE *f = js ? fopen(path, "w") : NULL;
    if (f && fputs(js, f) >= 0 && fclose(f) == 0) printf("(saved %d messages to %s)\n", cJSON_GetArraySize(msgs), path);
    else cli_error("%s: %s", path, strerror(errno));
    cJSON_free(js);
}

static cJSON *s_load(const char *path)
{
    char *buf = cli_read_file(path, NULL);
    cJSON *m = buf ? cJSON_Parse(buf) : NULL;
    g4_free(buf);
    if (!cJSON_IsArray(m)) {
        cli_error("%s: %s", path, buf ? "not a conversation saved by /save" : strerror(errno));
        cJSON_Delete(m);
        return NULL;
    }
    return m;
}

int cli_chat(int argc, char **argv)
{
    cli_stack_opts_t o = {0};
    const char *system = NULL;
    int think = 0, n_predict = -1;
    g4_sampler_params_t sp; /* the sampler's defaults; seed 0 unless --seed */
    g4_sampler_params_default(&sp);
    sp.seed = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int took;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) o.model = v, i++;
        else if (!strcmp(a, "--system") && v) system = v, i++;
        else if (!strcmp(a, "--think")) think = 1;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--n-predict")) && v) n_predict = atoi(v), i++;
        else if (!strcmp(a, "--temp") && v) sp.temp = (float)atof(v), i++;
        else if (!strcmp(a, "--top-k") && v) sp.top_k = atoi(v), i++;
        else if (!strcmp(a, "--top-p") && v) sp.top_p = (float)atof(v), i++;
        else if (!strcmp(a, "--min-p") && v) sp.min_p = (float)atof(v), i++;
        else if (!strcmp(a, "--seed") && v) sp.seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--repeat-penalty") && v) sp.repeat_penalty = (float)atof(v), i++;
        else if (!strcmp(a, "--repeat-last-n") && v) sp.repeat_last_n = atoi(v), i++;
        else if (!strcmp(a, "--presence-penalty") && v) sp.presence_penalty = (float)atof(v), i++;
        else if (!strcmp(a, "--frequency-penalty") && v) sp.frequency_penalty = (float)atof(v), i++;
        else if ((took = cli_stack_opt(&o, a, v))) i += took - 1;
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
    if (system) s_add(msgs, "system", system);
    const int first = system ? 1 : 0; /* the first turn that may be dropped */
    const int tty = isatty(0);
    if (tty) printf("(g4 chat: /help for commands, \"\"\" for several lines, Ctrl-C stops a reply)\n");
    int rc = 0;
    for (char *line; (line = s_turn(tty));) {
        if (line[0] == '/' && line[1] != '/') {
            char cmd[32] = "", arg[4096] = "";
            sscanf(line, "%31s %4095[^\n]", cmd, arg);
            if (!strcmp(cmd, "/exit") || !strcmp(cmd, "/quit") || !strcmp(cmd, "/bye")) {
                free(line);
                break;
            }
            if (!strcmp(cmd, "/help") || !strcmp(cmd, "/?")) puts(s_help);
            else if (!strcmp(cmd, "/reset")) {
                while (cJSON_GetArraySize(msgs) > first) cJSON_DeleteItemFromArray(msgs, first);
                puts("(history cleared)");
            } else if (!strcmp(cmd, "/save") && *arg) s_save(msgs, arg);
            else if (!strcmp(cmd, "/load") && *arg) {
                cJSON *m = s_load(arg);
                if (m) {
                    cJSON_ReplaceItemInObject(conv, "messages", m);
                    msgs = m;
                    printf("(loaded %d messages from %s)\n", cJSON_GetArraySize(msgs), arg);
                }
            } else {
                cli_error("unknown command '%s' (or it needs a FILE); /help lists them", cmd);
            }
            free(line);
            continue;
        }
        if (!*line) {
            free(line);
            continue;
        }
        s_add(msgs, "user", line[0] == '/' ? line + 1 : line); /* "//x" sends "/x" */
        free(line);
        s_reply_t cs = {0};
        G4__V1__Envelope *done = NULL;
        g4_err_t err;
        int r;
        for (;;) {
            char *js = cJSON_PrintUnformatted(conv);
            G4__V1__GenerateRequest req = G4__V1__GENERATE_REQUEST__INIT;
            req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_CHAT_JSON;
            req.chat_json = js;
            G4__V1__SamplingParams wsp;
            g4_client_sampling(&sp, 0, &wsp);
            req.sampling = &wsp;
            req.max_tokens = n_predict > 0 ? n_predict : 0; /* 0: until the end of the turn or of the context */
            cli_progress_init(&cs.prog, "prefill", "tokens", 1);
            g4_client_cb_t cb = {.on_token = s_on_token, .on_progress = s_on_progress, .user = &cs};
            r = cli_generate_err(ep, &req, &cb, 0, &done, &err);
            cli_progress_clear(&cs.prog);
            cJSON_free(js);
            if (r != G4_ERR_RANGE || cs.len || !s_drop_oldest(msgs, first)) break;
            fprintf(stderr, "note: the conversation outgrew the context; its oldest turn was dropped\n");
        }
        fputc('\n', stdout);
        const int stopped = r && cli_stack_interrupted();
        if (r == 0) {
            const G4__V1__Done *d = done->event->done;
            if (d->usage)
                cli_progress_summary(d->usage->prompt_tokens, d->usage->completion_tokens, d->usage->prefill_ms,
                                     d->usage->decode_ms, 0);
            if (d->finish_reason && !strcmp(d->finish_reason, "length") && n_predict <= 0)
                fprintf(stderr, "note: the context ended the reply (a longer one: --ctx N)\n");
            g4__v1__envelope__free_unpacked(done, NULL);
        } else if (stopped) {
            cli_stack_interrupt_clear(); /* the reply stopped; the conversation goes on */
            fprintf(stderr, "(stopped)\n");
        } else {
            cli_error("%s", err.msg);
            rc = 1;
        }
        if (r == 0 || stopped) s_add(msgs, "assistant", cs.text ? cs.text : ""); /* a stopped reply: what came */
        else cJSON_DeleteItemFromArray(msgs, cJSON_GetArraySize(msgs) - 1); /* the turn failed: not kept */
        g4_free(cs.text);
        if (rc && !tty) break;
        if (sp.seed) sp.seed++; /* a fixed seed stays reproducible, turns differ */
    }
    cJSON_Delete(conv);
    if (own) cli_stack_stop(&st);
    return rc;
}
