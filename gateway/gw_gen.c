/* gw_gen — one completion over the scheduler: the request built from the
 * body (gw_params), its events through client/g4_client (resubmitted to a
 * restarted scheduler there), the text and logprobs accumulated, and the
 * final JSON of a chat or text completion. Streaming is gw_stream.c. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "gw_internal.h"
#include "tok_chat.h"

static int s_start(gw_gen_t *g, const G4__V1__GenerateRequest *req)
{
    static atomic_ullong counter;
    const uint64_t rid = atomic_fetch_add(&counter, 1) + 1;
    snprintf(g->id, sizeof g->id, "%s-%llx%llx", g->chat ? "chatcmpl" : "cmpl", (unsigned long long)time(NULL),
             (unsigned long long)rid);
    g->created = (long)time(NULL);
    g->t0 = g4_wire_now_ms();
    g->sock = g4_client_connect(g->sv->zctx, g->sv->sched_ep, &g->req.err);
    if (!g->sock) {
        g->req.err.code = G4_ERR_UNAVAILABLE;
        return -1;
    }
    /* (no endpoint in the messages: they go to HTTP clients) */
    return g4_client_gen_start(&g->req, g->sock, NULL, rid, 0, req);
}

/* a token's logprobs entry: its own and the top ones */
static void s_logprobs(gw_gen_t *g, const G4__V1__TokenEvent *t)
{
    if (!g->lp_content) g->lp_content = cJSON_CreateArray();
    cJSON *e2 = cJSON_CreateObject();
    cJSON_AddNumberToObject(e2, "id", t->id);
    cJSON_AddNumberToObject(e2, "logprob", t->top[0]->id == t->id ? t->top[0]->logprob : -9999.0);
    cJSON *tops = cJSON_AddArrayToObject(e2, "top_logprobs");
    for (size_t k = 0; k < t->n_top && (int)k < (g->top_logprobs ? g->top_logprobs : 1); k++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", t->top[k]->id);
        cJSON_AddNumberToObject(o, "logprob", t->top[k]->logprob);
        cJSON_AddItemToArray(tops, o);
        if (t->top[k]->id == t->id) cJSON_ReplaceItemInObject(e2, "logprob", cJSON_CreateNumber(t->top[k]->logprob));
    }
    cJSON_AddItemToArray(g->lp_content, e2);
}

int gw_gen_next(gw_gen_t *g)
{
    for (;;) {
        g4_msg_t m;
        const g4_client_ev_t k = g4_client_gen_next(&g->req, &m);
        const G4__V1__GenerateEvent *ev = m.env && m.env->body_case == G4__V1__ENVELOPE__BODY_EVENT ? m.env->event : NULL;
        int r = 0;
        switch (k) {
        case G4_CLIENT_EV_ERROR:
        case G4_CLIENT_EV_INTERRUPTED: r = -1; break;
        case G4_CLIENT_EV_RESUBMIT:
            g4_log_warn("serve", "the scheduler is not answering: request %s sent again (%zu tokens done)", g->id,
                        g->req.n_ids);
            continue;
        case G4_CLIENT_EV_STARTED: g->n_prompt = (int)ev->started->n_prompt_ids; break;
        case G4_CLIENT_EV_TOKEN:
            g->n_gen++;
            gw_append(&g->text, &g->text_len, ev->token->text.data, ev->token->text.len);
            if (g->logprobs && ev->token->n_top) s_logprobs(g, ev->token);
            r = 1;
            break;
        case G4_CLIENT_EV_DONE: {
            const G4__V1__Done *d = ev->done;
            g->finish = !strcmp(d->finish_reason, "length") ? "length" : "stop";
            /* the done event's text is authoritative (held-back stop-string bytes resolved) */
            g4_free(g->text);
            g->text = NULL, g->text_len = 0;
            gw_append(&g->text, &g->text_len, d->text.data, d->text.len);
            if (!g->text) gw_append(&g->text, &g->text_len, "", 0);
            g->n_gen = (int)d->n_ids;
            if (d->usage) g->n_cached = d->usage->cached_tokens;
            g->done = 1;
            r = 2;
            break;
        }
        default: break;
        }
        g4_msg_close(&m);
        return r;
    }
}

void gw_gen_end(gw_gen_t *g)
{
    atomic_fetch_sub(&g->sv->m.active, 1);
    if (g->sock) zmq_close(g->sock);
    g4_client_gen_fini(&g->req);
    g4_free(g->text), g4_free(g->out);
    cJSON_Delete(g->lp_content);
    g4_free(g);
}

/* The final message of a chat completion: content, reasoning, tool calls. */
cJSON *gw_gen_chat_message(const gw_gen_t *g, const char **finish)
{
    g4_err_t err;
    cJSON *parsed = tok_chat_parse_output(g->text ? g->text : "", g->text_len, &err);
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "assistant");
    if (!parsed) { /* unparseable tool call: the raw text is the answer */
        cJSON_AddStringToObject(msg, "content", g->text ? g->text : "");
        return msg;
    }
    cJSON *content = cJSON_DetachItemFromObject(parsed, "content");
    cJSON *reasoning = cJSON_DetachItemFromObject(parsed, "reasoning_content");
    cJSON *calls = cJSON_DetachItemFromObject(parsed, "tool_calls");
    cJSON_AddItemToObject(msg, "content", content ? content : cJSON_CreateString(""));
    if (reasoning) cJSON_AddItemToObject(msg, "reasoning_content", reasoning);
    if (calls) {
        int k = 0;
        cJSON *c;
        cJSON_ArrayForEach(c, calls)
        {
            char id[96];
            snprintf(id, sizeof id, "call_%s_%d", g->id, k++);
            cJSON_AddStringToObject(c, "id", id);
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
            cJSON *args = fn ? cJSON_GetObjectItemCaseSensitive(fn, "arguments") : NULL;
            if (args) { /* OpenAI sends arguments as a JSON string */
                char *s = cJSON_PrintUnformatted(args);
                cJSON_ReplaceItemInObject(fn, "arguments", cJSON_CreateString(s));
                cJSON_free(s);
            }
        }
        cJSON_AddItemToObject(msg, "tool_calls", calls);
        *finish = "tool_calls";
    }
    cJSON_Delete(parsed);
    return msg;
}

cJSON *gw_gen_usage(const gw_gen_t *g)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", g->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", g->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", g->n_prompt + g->n_gen);
    cJSON *det = cJSON_AddObjectToObject(u, "prompt_tokens_details");
    if (det) cJSON_AddNumberToObject(det, "cached_tokens", g->n_cached);
    return u;
}

cJSON *gw_gen_object(const gw_gen_t *g, const char *object, cJSON **choice)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", g->id);
    cJSON_AddStringToObject(j, "object", object);
    cJSON_AddNumberToObject(j, "created", (double)g->created);
    cJSON_AddStringToObject(j, "model", g->sv->model_id);
    cJSON *choices = cJSON_AddArrayToObject(j, "choices");
    *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(*choice, "index", 0);
    cJSON_AddItemToArray(choices, *choice);
    return j;
}

static cJSON *s_final_json(const gw_gen_t *g)
{
    cJSON *ch, *j = gw_gen_object(g, g->chat ? "chat.completion" : "text_completion", &ch);
    const char *finish = g->finish;
    if (g->chat) cJSON_AddItemToObject(ch, "message", gw_gen_chat_message(g, &finish));
    else cJSON_AddStringToObject(ch, "text", g->text ? g->text : "");
    if (g->lp_content) {
        cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
        cJSON_AddItemToObject(lp, "content", cJSON_Duplicate(g->lp_content, 1));
    } else {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    cJSON_AddStringToObject(ch, "finish_reason", finish);
    cJSON_AddItemToObject(j, "usage", gw_gen_usage(g));
    return j;
}

/* What a request holds while it is built (the client copies it at the start). */
typedef struct s_built {
    G4__V1__GenerateRequest req;
    G4__V1__PromptIds pi;
    ProtobufCBinaryData stops[GW_MAX_STOP];
    char *chat_json;
    int32_t *ids;
} s_built_t;

/* The prompt of a chat (the conversation) or a completion (text or ids):
 * NULL, or why not (the parameter in *param). */
static const char *s_prompt(const cJSON *b, int chat, gw_params_t *p, s_built_t *q, const char **param)
{
    const char *why = NULL;
    if (chat) {
        cJSON *conv = gw_params_conversation(b, p, &why, param);
        if (!conv) return why;
        q->req.media = p->mediap, q->req.n_media = (size_t)p->n_media;
        q->chat_json = cJSON_PrintUnformatted(conv);
        cJSON_Delete(conv);
        q->req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_CHAT_JSON;
        q->req.chat_json = q->chat_json;
        return NULL;
    }
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(b, "prompt");
    *param = "prompt";
    if (cJSON_IsString(pr)) {
        q->req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_TEXT;
        q->req.text.data = (uint8_t *)pr->valuestring, q->req.text.len = strlen(pr->valuestring);
    } else if (cJSON_IsArray(pr) && cJSON_GetArraySize(pr) > 0 && cJSON_IsNumber(cJSON_GetArrayItem(pr, 0))) {
        int n = cJSON_GetArraySize(pr), k = 0;
        q->ids = g4_malloc((size_t)n * sizeof *q->ids);
        const cJSON *e;
        cJSON_ArrayForEach(e, pr)
        {
            if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e9)
                return "token ids must be non-negative integers";
            q->ids[k++] = (int32_t)e->valuedouble;
        }
        q->pi.ids = q->ids, q->pi.n_ids = (size_t)n;
        q->req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_IDS;
        q->req.ids = &q->pi;
    } else {
        return "'prompt' must be a string or a list of token ids";
    }
    if (p->max_tokens == 0) p->max_tokens = 16; /* OpenAI's default for completions */
    *param = NULL;
    return NULL;
}

static enum MHD_Result s_failed(gw_server_t *sv, struct MHD_Connection *c, gw_gen_t *g, const char *type)
{
    const g4_err_t *e = &g->req.err;
    enum MHD_Result ret = gw_reply_error(sv, c, gw_reply_status_of(e->code),
                                         e->code == G4_ERR_AGAIN ? "rate_limit_exceeded" : type, NULL, "%s", e->msg);
    gw_gen_end(g);
    return ret;
}

enum MHD_Result gw_gen_handle(gw_server_t *sv, struct MHD_Connection *c, const char *body, size_t len, int chat)
{
    cJSON *b = cJSON_ParseWithLength(body, len);
    if (!b || !cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return gw_reply_error(sv, c, 400, "invalid_request_error", NULL, "the body is not a JSON object");
    }
    gw_params_t p;
    const char *param = NULL, *why = gw_params_parse(b, &p, &param);
    s_built_t q = {.req = G4__V1__GENERATE_REQUEST__INIT, .pi = G4__V1__PROMPT_IDS__INIT};
    if (!why) why = s_prompt(b, chat, &p, &q, &param);
    if (why) {
        enum MHD_Result r = gw_reply_error(sv, c, 400, "invalid_request_error", param, "%s", why);
        gw_params_free(&p);
        cJSON_free(q.chat_json), g4_free(q.ids);
        cJSON_Delete(b);
        return r;
    }
    q.req.sampling = &p.sp;
    q.req.max_tokens = p.max_tokens;
    q.req.ignore_eos = p.ignore_eos;
    for (int i = 0; i < p.n_stop; i++) q.stops[i].data = (uint8_t *)p.stops[i], q.stops[i].len = strlen(p.stops[i]);
    q.req.stop = q.stops, q.req.n_stop = (size_t)p.n_stop;
    gw_gen_t *g = g4_calloc(1, sizeof *g);
    g->sv = sv, g->chat = chat, g->stream = p.stream, g->logprobs = p.logprobs, g->top_logprobs = p.top_logprobs;
    atomic_fetch_add(&sv->m.active, 1);
    int rc = s_start(g, &q.req);
    gw_params_free(&p);
    cJSON_free(q.chat_json), g4_free(q.ids);
    cJSON_Delete(b);
    if (rc) {
        g->req.err.code = G4_ERR_UNAVAILABLE;
        return s_failed(sv, c, g, "service_unavailable");
    }
    if (g->stream) {
        /* the first event tells whether the request was accepted (errors as HTTP status) */
        int r = gw_gen_next(g);
        if (r < 0) return s_failed(sv, c, g, "invalid_request_error");
        if (r == 1) gw_stream_progress(g, 0);
        else if (r == 2) gw_stream_progress(g, 1), gw_metrics_done(&sv->m, g);
        atomic_fetch_add(&sv->m.n_streams, 1);
        struct MHD_Response *resp = gw_stream_response(g);
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    for (int r = 0; r != 2;)
        if ((r = gw_gen_next(g)) < 0) return s_failed(sv, c, g, "server_error");
    gw_metrics_done(&sv->m, g);
    cJSON *j = s_final_json(g);
    gw_gen_end(g);
    return gw_reply_json(sv, c, 200, j);
}
