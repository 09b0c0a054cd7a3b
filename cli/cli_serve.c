/* g4 serve -m MODEL.gguf [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--shards N] [--connect EP] ...
 *
 * An OpenAI-compatible HTTP gateway (libmicrohttpd + cJSON) in front of the
 * scheduler: POST /v1/chat/completions, POST /v1/completions (both with
 * "stream": true as server-sent events), GET /v1/models, GET /health,
 * GET /metrics (Prometheus text). It runs on the embedded stack (started and
 * stopped with the server), on the stack `g4 up` started, or on any scheduler
 * with --connect. Each HTTP connection has its own thread and its own DEALER
 * to the scheduler; requests are bounded (body size, JSON depth via cJSON,
 * connection count, idle timeout). Errors use OpenAI's error shape. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <sodium.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_stack.h"
#include "g4_alloc.h"
#include "g4_log.h"
#include "g4_wire.h"
#include "tok_chat.h"

#define SERVE_MAX_BODY (32u << 20)

typedef struct serve {
    char sched_ep[300];
    char model_id[256];
    const char *api_key;
    void *zctx;
    atomic_ullong n_req, n_req_ok, n_req_err, n_req_4xx, n_req_5xx, n_prompt_tok, n_gen_tok, n_streams;
    atomic_ullong lat_count, lat_sum_ms, lat_bucket[8];
    atomic_int active;
} serve_t;

static const double s_lat_bounds[8] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
static volatile sig_atomic_t s_stop;
static void s_on_signal(int sig) { (void)sig, s_stop = 1; }

typedef struct conn {
    char *body;
    size_t len;
    int too_big;
} conn_t;

/* ---- responses -------------------------------------------------------------------------- */

static enum MHD_Result s_send(struct MHD_Connection *c, unsigned status, const char *type, char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result s_json(serve_t *sv, struct MHD_Connection *c, unsigned status, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    enum MHD_Result r = s_send(c, status, "application/json", s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(j);
    if (status >= 500) atomic_fetch_add(&sv->n_req_5xx, 1);
    else if (status >= 400) atomic_fetch_add(&sv->n_req_4xx, 1);
    return r;
}

static enum MHD_Result s_error(serve_t *sv, struct MHD_Connection *c, unsigned status, const char *type,
                               const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static enum MHD_Result s_error(serve_t *sv, struct MHD_Connection *c, unsigned status, const char *type,
                               const char *param, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    atomic_fetch_add(&sv->n_req_err, 1);
    return s_json(sv, c, status, j);
}

/* scheduler error code -> HTTP status */
static unsigned s_status_of(int code)
{
    switch (code) {
    case G4_ERR_AGAIN: return 429;
    case G4_ERR_UNAVAILABLE: return 503;
    case G4_ERR_TIMEOUT: return 504;
    case G4_ERR_RANGE: case G4_ERR_FORMAT: case G4_ERR_PROTO: return 400;
    default: return 500;
    }
}

/* ---- request parsing ---------------------------------------------------------------------- */

typedef struct gen_params {
    G4__V1__SamplingParams sp;
    int max_tokens, stream, logprobs, top_logprobs, think, ignore_eos;
    char *stops[16];
    int n_stop;
    /* images / audio of the messages, in order (decoded from base64) */
    G4__V1__Media media[16], *mediap[16];
    uint8_t *mbuf[16];
    int n_media;
} gen_params_t;

/* base64 (standard alphabet, padding optional, whitespace ignored) -> bytes */
static uint8_t *s_b64(const char *in, size_t *len)
{
    const size_t n = strlen(in), cap = n / 4 * 3 + 3;
    uint8_t *out = g4_malloc(cap + 1);
    if (!out) return NULL;
    if (sodium_base642bin(out, cap, in, n, " \t\r\n", len, NULL, sodium_base64_VARIANT_ORIGINAL) &&
        sodium_base642bin(out, cap, in, n, " \t\r\n", len, NULL, sodium_base64_VARIANT_ORIGINAL_NO_PADDING)) {
        g4_free(out);
        return NULL;
    }
    return out;
}

/* An OpenAI image_url / input_audio part -> a Media of p; NULL or why not. */
static const char *s_media_part(const cJSON *part, int image, gen_params_t *p)
{
    if (p->n_media == 16) return "at most 16 images / audio clips per request";
    const char *b64 = NULL;
    if (image) {
        const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url");
        const cJSON *url = cJSON_IsObject(iu) ? cJSON_GetObjectItemCaseSensitive(iu, "url") : iu;
        if (!cJSON_IsString(url)) return "an image_url part needs image_url.url";
        const char *u = url->valuestring, *comma = strchr(u, ',');
        if (strncmp(u, "data:", 5) || !comma || !strstr(u, ";base64"))
            return "images must be given inline as data:<type>;base64,... URLs (g4 fetches nothing)";
        b64 = comma + 1;
    } else {
        const cJSON *ia = cJSON_GetObjectItemCaseSensitive(part, "input_audio");
        const cJSON *d = cJSON_IsObject(ia) ? cJSON_GetObjectItemCaseSensitive(ia, "data") : NULL;
        if (!cJSON_IsString(d)) return "an input_audio part needs input_audio.data (base64 WAV or MP3)";
        b64 = d->valuestring;
    }
    size_t len = 0;
    uint8_t *bytes = s_b64(b64, &len);
    if (!bytes || !len) {
        g4_free(bytes);
        return "the media data is not valid base64";
    }
    G4__V1__Media *m = &p->media[p->n_media];
    g4__v1__media__init(m);
    m->kind = image ? G4__V1__MEDIA_KIND__MEDIA_IMAGE : G4__V1__MEDIA_KIND__MEDIA_AUDIO;
    m->data.data = bytes, m->data.len = len;
    p->mbuf[p->n_media] = bytes;
    p->mediap[p->n_media] = m;
    p->n_media++;
    return NULL;
}

static void s_media_free(gen_params_t *p)
{
    for (int i = 0; i < p->n_media; i++) g4_free(p->mbuf[i]);
    p->n_media = 0;
}

/* Fills params from the body; returns NULL or an error message (param name in *param). */
static const char *s_params(const cJSON *b, gen_params_t *p, const char **param)
{
    G4__V1__SamplingParams d = G4__V1__SAMPLING_PARAMS__INIT;
    p->sp = d;
    p->n_media = 0;
    p->sp.temperature = 1.0f, p->sp.top_k = 40, p->sp.top_p = 1.0f, p->sp.min_p = 0.05f;
    p->sp.repeat_penalty = 1.0f, p->sp.repeat_last_n = 64;
    p->sp.seed = (uint64_t)time(NULL) ^ (uint64_t)rand();
    p->max_tokens = 0, p->stream = 0, p->logprobs = 0, p->top_logprobs = 0, p->think = 0, p->n_stop = 0;
    p->ignore_eos = 0;
    const cJSON *v;
#define NUM(name, lo, hi, dst)                                                                                      \
    if ((v = cJSON_GetObjectItemCaseSensitive(b, name)) && !cJSON_IsNull(v)) {                                      \
        if (!cJSON_IsNumber(v) || v->valuedouble < (lo) || v->valuedouble > (hi)) {                                 \
            *param = name;                                                                                          \
            return "'" name "' must be a number in [" #lo ", " #hi "]";                                             \
        }                                                                                                           \
        dst;                                                                                                        \
    }
    NUM("temperature", 0, 2, p->sp.temperature = (float)v->valuedouble);
    NUM("top_p", 0, 1, p->sp.top_p = (float)v->valuedouble);
    NUM("top_k", 0, 1000000, p->sp.top_k = (int)v->valuedouble);
    NUM("min_p", 0, 1, p->sp.min_p = (float)v->valuedouble);
    NUM("seed", -9.2e18, 9.2e18, p->sp.seed = (uint64_t)(int64_t)v->valuedouble);
    NUM("presence_penalty", -2, 2, p->sp.presence_penalty = (float)v->valuedouble);
    NUM("frequency_penalty", -2, 2, p->sp.frequency_penalty = (float)v->valuedouble);
    NUM("repeat_penalty", 0, 10, p->sp.repeat_penalty = (float)v->valuedouble);
    NUM("max_tokens", 1, 1e9, p->max_tokens = (int)v->valuedouble);
    NUM("max_completion_tokens", 1, 1e9, p->max_tokens = (int)v->valuedouble);
    NUM("n", 1, 1, (void)0);
#undef NUM
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "stream")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v)) return *param = "stream", "'stream' must be a boolean";
        p->stream = cJSON_IsTrue(v);
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "ignore_eos")) && cJSON_IsBool(v)) p->ignore_eos = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "logprobs")) && !cJSON_IsNull(v)) {
        if (cJSON_IsBool(v)) p->logprobs = cJSON_IsTrue(v);
        else if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 20) /* completions: an int */
            p->logprobs = 1, p->top_logprobs = (int)v->valuedouble;
        else return *param = "logprobs", "'logprobs' must be a boolean (chat) or an integer in [0, 20]";
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "top_logprobs")) && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 20)
            return *param = "top_logprobs", "'top_logprobs' must be an integer in [0, 20]";
        p->top_logprobs = (int)v->valuedouble;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "stop")) && !cJSON_IsNull(v)) {
        if (cJSON_IsString(v)) {
            p->stops[p->n_stop++] = v->valuestring;
        } else if (cJSON_IsArray(v) && cJSON_GetArraySize(v) <= 16) {
            const cJSON *e;
            cJSON_ArrayForEach(e, v)
            {
                if (!cJSON_IsString(e)) return *param = "stop", "'stop' must be a string or a list of strings";
                p->stops[p->n_stop++] = e->valuestring;
            }
        } else {
            return *param = "stop", "'stop' must be a string or a list of at most 16 strings";
        }
    }
    /* thinking: chat_template_kwargs.enable_thinking (llama.cpp) or reasoning_effort != "none" */
    const cJSON *kw = cJSON_GetObjectItemCaseSensitive(b, "chat_template_kwargs");
    if (cJSON_IsObject(kw) && (v = cJSON_GetObjectItemCaseSensitive(kw, "enable_thinking")) && cJSON_IsBool(v))
        p->think = cJSON_IsTrue(v);
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "reasoning_effort")) && cJSON_IsString(v))
        p->think = strcmp(v->valuestring, "none") != 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(b, "enable_thinking")) && cJSON_IsBool(v)) p->think = cJSON_IsTrue(v);
    p->sp.logprobs = p->logprobs ? (p->top_logprobs > 0 ? p->top_logprobs : 1) : 0;
    return NULL;
}

/* OpenAI messages -> the template's conversation (tool call arguments as objects) */
static cJSON *s_conversation(const cJSON *body, gen_params_t *p, const char **why, const char **param)
{
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        *param = "messages";
        *why = "'messages' must be a non-empty list";
        return NULL;
    }
    cJSON *conv = cJSON_CreateObject(), *out = cJSON_AddArrayToObject(conv, "messages");
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        if (!cJSON_IsObject(m) || !cJSON_IsString(role)) {
            *param = "messages", *why = "each message needs a string 'role'";
            cJSON_Delete(conv);
            return NULL;
        }
        const char *r = role->valuestring;
        if (strcmp(r, "system") && strcmp(r, "developer") && strcmp(r, "user") && strcmp(r, "assistant") &&
            strcmp(r, "tool")) {
            *param = "messages", *why = "role must be system, developer, user, assistant or tool";
            cJSON_Delete(conv);
            return NULL;
        }
        cJSON *c = cJSON_Duplicate(m, 1);
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (cJSON_IsArray(content)) {
            cJSON *parts = cJSON_CreateArray();
            const cJSON *part;
            cJSON_ArrayForEach(part, content)
            {
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
                if (!cJSON_IsString(type)) continue;
                if (!strcmp(type->valuestring, "text")) {
                    cJSON_AddItemToArray(parts, cJSON_Duplicate(part, 1));
                } else if (!strcmp(type->valuestring, "image_url") || !strcmp(type->valuestring, "input_audio")) {
                    /* the template gets a bare {"type": "image"|"audio"}; the bytes go with the request */
                    const int image = !strcmp(type->valuestring, "image_url");
                    const char *w = s_media_part(part, image, p);
                    if (w) {
                        *param = "messages", *why = w;
                        cJSON_Delete(parts), cJSON_Delete(c), cJSON_Delete(conv);
                        return NULL;
                    }
                    cJSON *mp = cJSON_CreateObject();
                    cJSON_AddStringToObject(mp, "type", image ? "image" : "audio");
                    cJSON_AddItemToArray(parts, mp);
                } else if (!strcmp(type->valuestring, "image") || !strcmp(type->valuestring, "audio")) {
                    *param = "messages", *why = "give images as image_url (data: URL) and audio as input_audio parts";
                    cJSON_Delete(parts), cJSON_Delete(c), cJSON_Delete(conv);
                    return NULL;
                }
            }
            cJSON_ReplaceItemInObject(c, "content", parts);
        } else if (content && !cJSON_IsString(content) && !cJSON_IsNull(content)) {
            *param = "messages", *why = "'content' must be a string or a list of parts";
            cJSON_Delete(c), cJSON_Delete(conv);
            return NULL;
        }
        /* arguments arrive as a JSON string; templates want the object */
        cJSON *calls = cJSON_GetObjectItemCaseSensitive(c, "tool_calls"), *call;
        cJSON_ArrayForEach(call, calls)
        {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            cJSON *args = fn ? cJSON_GetObjectItemCaseSensitive(fn, "arguments") : NULL;
            if (cJSON_IsString(args)) {
                cJSON *parsed = cJSON_Parse(args->valuestring);
                if (parsed) cJSON_ReplaceItemInObject(fn, "arguments", parsed);
            }
        }
        cJSON_AddItemToArray(out, c);
    }
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
    if (cJSON_IsArray(tools) && cJSON_GetArraySize(tools)) cJSON_AddItemToObject(conv, "tools", cJSON_Duplicate(tools, 1));
    cJSON_AddBoolToObject(conv, "add_generation_prompt", 1);
    cJSON_AddBoolToObject(conv, "enable_thinking", p->think);
    cJSON_AddStringToObject(conv, "bos_token", "<bos>");
    return conv;
}

/* ---- one generation over the scheduler --------------------------------------------------------- */

typedef struct gen {
    serve_t *sv;
    void *sock;
    uint64_t rid;
    int chat, stream, done, failed, sent_role, sent_done_marker, logprobs, top_logprobs;
    char id[48];
    long created;
    /* accumulated output */
    char *text;
    size_t text_len;
    int n_prompt, n_gen;
    const char *finish;
    /* what the stream has sent of the parsed parts */
    size_t sent_content, sent_reasoning;
    /* pending SSE bytes */
    char *out;
    size_t out_len, out_off;
    cJSON *lp_content; /* logprobs entries */
    uint64_t t0;
    char errmsg[512];
    int errcode;
    /* to send the request again to a restarted scheduler (prompt ids + the ids
     * already streamed), as cli_generate does */
    uint8_t *req_buf;
    size_t req_len;
    int32_t *gen_ids;
    size_t n_gen_ids, cap_gen_ids;
    int resubmits;
} gen_t;

static void s_gen_append(char **b, size_t *n, const void *p, size_t k)
{
    char *nb = g4_realloc(*b, *n + k + 1);
    if (!nb) return;
    if (k) memcpy(nb + *n, p, k);
    *n += k;
    nb[*n] = 0;
    *b = nb;
}

static int s_gen_start(gen_t *g, G4__V1__GenerateRequest *req)
{
    g4_err_t err;
    g->sock = g4_wire_socket(g->sv->zctx, ZMQ_DEALER, &err);
    if (!g->sock || g4_wire_connect(g->sock, g->sv->sched_ep, &err)) {
        snprintf(g->errmsg, sizeof g->errmsg, "%s", err.msg);
        g->errcode = G4_ERR_UNAVAILABLE;
        return -1;
    }
    static atomic_ullong counter;
    g->rid = atomic_fetch_add(&counter, 1) + 1;
    g->req_len = g4__v1__generate_request__get_packed_size(req);
    g->req_buf = g4_malloc(g->req_len ? g->req_len : 1);
    if (g->req_buf) g4__v1__generate_request__pack(req, g->req_buf);
    snprintf(g->id, sizeof g->id, "%s-%llx%llx", g->chat ? "chatcmpl" : "cmpl", (unsigned long long)time(NULL),
             (unsigned long long)g->rid);
    g->created = (long)time(NULL);
    g->t0 = g4_wire_now_ms();
    if (cli_send_generate(g->sock, g->rid, 0, req, &err)) {
        snprintf(g->errmsg, sizeof g->errmsg, "%s", err.msg);
        g->errcode = G4_ERR_UNAVAILABLE;
        return -1;
    }
    return 0;
}

/* The scheduler is silent (lost, being restarted): the request again, with
 * the ids streamed so far. 0, or -1 when it was tried too often. */
static int s_gen_resubmit(gen_t *g)
{
    G4__V1__GenerateRequest *req = g->req_buf ? g4__v1__generate_request__unpack(NULL, g->req_len, g->req_buf) : NULL;
    if (!req || g->resubmits >= 8) {
        if (req) g4__v1__generate_request__free_unpacked(req, NULL);
        return -1;
    }
    G4__V1__GenerateRequest again = *req; /* the same prompt and media, then what was generated */
    again.resume_ids = g->gen_ids, again.n_resume_ids = g->n_gen_ids;
    g4_err_t err;
    const int rc = cli_send_generate(g->sock, ++g->rid, 0, &again, &err);
    g4__v1__generate_request__free_unpacked(req, NULL);
    g->resubmits++;
    g4_log_warn("serve", "the scheduler is not answering: request %s sent again (%zu tokens done)", g->id, g->n_gen_ids);
    return rc ? -1 : 0;
}

/* Waits for the next event; returns 1 token, 2 done, 0 other, -1 error. */
static int s_gen_next(gen_t *g, G4__V1__TokenEvent **tok_out, g4_msg_t *m)
{
    g4_err_t err;
    for (;;) {
        int r = g4_wire_recv(g->sock, 0, m, 4000, &err);
        if (r == G4_ERR_TIMEOUT && s_gen_resubmit(g) == 0) continue;
        if (r) {
            g4_msg_close(m);
            snprintf(g->errmsg, sizeof g->errmsg, "%s", r == G4_ERR_TIMEOUT ? "the scheduler stopped answering" : err.msg);
            g->errcode = G4_ERR_UNAVAILABLE;
            return -1;
        }
        G4__V1__Envelope *e = m->env;
        if (e->header->request_id != g->rid) {
            g4_msg_close(m);
            continue;
        }
        if (e->body_case == G4__V1__ENVELOPE__BODY_ERROR) {
            snprintf(g->errmsg, sizeof g->errmsg, "%s", e->error->message);
            g->errcode = g4_wire_g4code((int)e->error->code);
            return -1;
        }
        if (e->body_case != G4__V1__ENVELOPE__BODY_EVENT) return 0;
        G4__V1__GenerateEvent *ev = e->event;
        switch (ev->event_case) {
        case G4__V1__GENERATE_EVENT__EVENT_STARTED:
            g->n_prompt = (int)ev->started->n_prompt_ids;
            return 0;
        case G4__V1__GENERATE_EVENT__EVENT_TOKEN:
            if (g->n_gen_ids == g->cap_gen_ids) {
                const size_t cap = g->cap_gen_ids * 2 + 64;
                int32_t *ng = g4_realloc(g->gen_ids, cap * sizeof *ng);
                if (ng) g->gen_ids = ng, g->cap_gen_ids = cap;
            }
            if (g->n_gen_ids < g->cap_gen_ids) g->gen_ids[g->n_gen_ids++] = ev->token->id;
            *tok_out = ev->token;
            g->n_gen++;
            s_gen_append(&g->text, &g->text_len, ev->token->text.data, ev->token->text.len);
            if (g->logprobs && ev->token->n_top) {
                if (!g->lp_content) g->lp_content = cJSON_CreateArray();
                cJSON *e2 = cJSON_CreateObject();
                cJSON_AddNumberToObject(e2, "id", ev->token->id);
                cJSON_AddNumberToObject(e2, "logprob", ev->token->top[0]->id == ev->token->id ? ev->token->top[0]->logprob : -9999.0);
                cJSON *tops = cJSON_AddArrayToObject(e2, "top_logprobs");
                for (size_t k = 0; k < ev->token->n_top && (int)k < (g->top_logprobs ? g->top_logprobs : 1); k++) {
                    cJSON *t = cJSON_CreateObject();
                    cJSON_AddNumberToObject(t, "id", ev->token->top[k]->id);
                    cJSON_AddNumberToObject(t, "logprob", ev->token->top[k]->logprob);
                    cJSON_AddItemToArray(tops, t);
                    if (ev->token->top[k]->id == ev->token->id)
                        cJSON_ReplaceItemInObject(e2, "logprob", cJSON_CreateNumber(ev->token->top[k]->logprob));
                }
                cJSON_AddItemToArray(g->lp_content, e2);
            }
            return 1;
        case G4__V1__GENERATE_EVENT__EVENT_DONE: {
            G4__V1__Done *d = ev->done;
            g->finish = !strcmp(d->finish_reason, "length") ? "length" : "stop";
            /* the done event's text is authoritative (held-back stop-string bytes resolved) */
            g4_free(g->text);
            g->text = NULL, g->text_len = 0;
            s_gen_append(&g->text, &g->text_len, d->text.data, d->text.len);
            if (!g->text) s_gen_append(&g->text, &g->text_len, "", 0);
            g->n_gen = (int)d->n_ids;
            g->done = 1;
            return 2;
        }
        case G4__V1__GENERATE_EVENT__EVENT_ERROR:
            snprintf(g->errmsg, sizeof g->errmsg, "%s", ev->error->message);
            g->errcode = g4_wire_g4code((int)ev->error->code);
            return -1;
        default: return 0;
        }
    }
}

static void s_gen_free(gen_t *g)
{
    if (g->sock) zmq_close(g->sock);
    g4_free(g->text), g4_free(g->out);
    g4_free(g->req_buf), g4_free(g->gen_ids);
    cJSON_Delete(g->lp_content);
}

static void s_count_done(serve_t *sv, gen_t *g)
{
    atomic_fetch_add(&sv->n_prompt_tok, (unsigned long long)g->n_prompt);
    atomic_fetch_add(&sv->n_gen_tok, (unsigned long long)g->n_gen);
    atomic_fetch_add(&sv->n_req_ok, 1);
    const double s = (double)(g4_wire_now_ms() - g->t0) / 1000.0;
    atomic_fetch_add(&sv->lat_count, 1);
    atomic_fetch_add(&sv->lat_sum_ms, g4_wire_now_ms() - g->t0);
    for (int i = 0; i < 8; i++)
        if (s <= s_lat_bounds[i]) atomic_fetch_add(&sv->lat_bucket[i], 1);
}

/* The final message of a chat completion: content, reasoning, tool calls. */
static cJSON *s_chat_message(const gen_t *g, const char **finish)
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

static cJSON *s_usage(const gen_t *g)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", g->n_prompt);
    cJSON_AddNumberToObject(u, "completion_tokens", g->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", g->n_prompt + g->n_gen);
    return u;
}

static cJSON *s_final_json(gen_t *g)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", g->id);
    cJSON_AddStringToObject(j, "object", g->chat ? "chat.completion" : "text_completion");
    cJSON_AddNumberToObject(j, "created", (double)g->created);
    cJSON_AddStringToObject(j, "model", g->sv->model_id);
    cJSON *choices = cJSON_AddArrayToObject(j, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    const char *finish = g->finish;
    if (g->chat) cJSON_AddItemToObject(ch, "message", s_chat_message(g, &finish));
    else cJSON_AddStringToObject(ch, "text", g->text ? g->text : "");
    if (g->lp_content) {
        cJSON *lp = cJSON_AddObjectToObject(ch, "logprobs");
        cJSON_AddItemToObject(lp, "content", cJSON_Duplicate(g->lp_content, 1));
    } else {
        cJSON_AddNullToObject(ch, "logprobs");
    }
    cJSON_AddStringToObject(ch, "finish_reason", finish);
    cJSON_AddItemToArray(choices, ch);
    cJSON_AddItemToObject(j, "usage", s_usage(g));
    return j;
}

/* ---- streaming (server-sent events) -------------------------------------------------------------- */

static void s_sse(gen_t *g, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    s_gen_append(&g->out, &g->out_len, "data: ", 6);
    s_gen_append(&g->out, &g->out_len, s, strlen(s));
    s_gen_append(&g->out, &g->out_len, "\n\n", 2);
    cJSON_free(s);
    cJSON_Delete(j);
}

static cJSON *s_chunk(gen_t *g, cJSON *delta, const char *finish)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", g->id);
    cJSON_AddStringToObject(j, "object", g->chat ? "chat.completion.chunk" : "text_completion");
    cJSON_AddNumberToObject(j, "created", (double)g->created);
    cJSON_AddStringToObject(j, "model", g->sv->model_id);
    cJSON *choices = cJSON_AddArrayToObject(j, "choices"), *ch = cJSON_CreateObject();
    cJSON_AddNumberToObject(ch, "index", 0);
    if (g->chat) cJSON_AddItemToObject(ch, "delta", delta);
    else {
        cJSON *t = cJSON_GetObjectItemCaseSensitive(delta, "content");
        cJSON_AddStringToObject(ch, "text", cJSON_IsString(t) ? t->valuestring : "");
        cJSON_Delete(delta);
    }
    if (finish) cJSON_AddStringToObject(ch, "finish_reason", finish);
    else cJSON_AddNullToObject(ch, "finish_reason");
    cJSON_AddItemToArray(choices, ch);
    return j;
}

/* Emits what the parsed output gained since the last chunk (content and
 * reasoning grow append-only because markers are whole tokens). */
static void s_stream_progress(gen_t *g, int final)
{
    if (!g->chat) {
        const size_t n = g->text_len - g->sent_content;
        if (n || final) {
            cJSON *d = cJSON_CreateObject();
            char *piece = g4_strndup(g->text ? g->text + g->sent_content : "", n);
            cJSON_AddStringToObject(d, "content", piece ? piece : "");
            g4_free(piece);
            g->sent_content = g->text_len;
            cJSON *c = s_chunk(g, d, final ? g->finish : NULL);
            if (final) cJSON_AddItemToObject(c, "usage", s_usage(g));
            s_sse(g, c);
        }
        return;
    }
    g4_err_t err;
    cJSON *p = tok_chat_parse_output(g->text ? g->text : "", g->text_len, &err);
    if (!p && !final) return; /* a tool call still being written */
    const cJSON *content = p ? cJSON_GetObjectItemCaseSensitive(p, "content") : NULL;
    const cJSON *reasoning = p ? cJSON_GetObjectItemCaseSensitive(p, "reasoning_content") : NULL;
    const char *cs = cJSON_IsString(content) ? content->valuestring : (p ? "" : (g->text ? g->text : ""));
    const char *rs = cJSON_IsString(reasoning) ? reasoning->valuestring : "";
    /* content is trimmed by the parser: hold back until more text arrives unless final */
    size_t cl = strlen(cs), rl = strlen(rs);
    cJSON *delta = cJSON_CreateObject();
    int any = 0;
    if (!g->sent_role) cJSON_AddStringToObject(delta, "role", "assistant"), g->sent_role = 1, any = 1;
    if (rl > g->sent_reasoning) {
        cJSON_AddStringToObject(delta, "reasoning_content", rs + g->sent_reasoning);
        g->sent_reasoning = rl, any = 1;
    }
    if (cl > g->sent_content && !strncmp(cs, cs, g->sent_content)) {
        cJSON_AddStringToObject(delta, "content", cs + g->sent_content);
        g->sent_content = cl, any = 1;
    }
    const char *finish = NULL;
    if (final) {
        gen_t tmp = *g;
        cJSON *msg = s_chat_message(&tmp, &finish);
        cJSON *calls = cJSON_DetachItemFromObject(msg, "tool_calls");
        if (calls) {
            int k = 0;
            cJSON *c;
            cJSON_ArrayForEach(c, calls) cJSON_AddNumberToObject(c, "index", k++);
            cJSON_AddItemToObject(delta, "tool_calls", calls), any = 1;
        }
        cJSON_Delete(msg);
        if (!finish) finish = g->finish;
    }
    if (any || final) {
        cJSON *c = s_chunk(g, delta, final ? finish : NULL);
        if (final) cJSON_AddItemToObject(c, "usage", s_usage(g));
        s_sse(g, c);
    } else {
        cJSON_Delete(delta);
    }
    cJSON_Delete(p);
}

static ssize_t s_stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    gen_t *g = cls;
    while (g->out_off == g->out_len) {
        g->out_len = g->out_off = 0;
        if (g->sent_done_marker) return MHD_CONTENT_READER_END_OF_STREAM;
        if (g->done || g->failed) {
            s_gen_append(&g->out, &g->out_len, "data: [DONE]\n\n", 14);
            g->sent_done_marker = 1;
            break;
        }
        G4__V1__TokenEvent *t = NULL;
        g4_msg_t m;
        int r = s_gen_next(g, &t, &m);
        if (r < 0) {
            g->failed = 1;
            cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
            cJSON_AddStringToObject(e, "message", g->errmsg);
            cJSON_AddStringToObject(e, "type", g->errcode == G4_ERR_UNAVAILABLE ? "service_unavailable" : "server_error");
            s_sse(g, j);
            atomic_fetch_add(&g->sv->n_req_err, 1);
        } else if (r == 1) {
            s_stream_progress(g, 0);
        } else if (r == 2) {
            s_stream_progress(g, 1);
            s_count_done(g->sv, g);
        }
        g4_msg_close(&m);
    }
    size_t n = g->out_len - g->out_off < max ? g->out_len - g->out_off : max;
    memcpy(buf, g->out + g->out_off, n);
    g->out_off += n;
    return (ssize_t)n;
}

static void s_stream_free(void *cls)
{
    gen_t *g = cls;
    atomic_fetch_sub(&g->sv->active, 1);
    s_gen_free(g);
    g4_free(g);
}

/* ---- endpoints ---------------------------------------------------------------------------------- */

static enum MHD_Result s_generate(serve_t *sv, struct MHD_Connection *c, const char *body, size_t len, int chat)
{
    cJSON *b = cJSON_ParseWithLength(body, len);
    if (!b || !cJSON_IsObject(b)) {
        cJSON_Delete(b);
        return s_error(sv, c, 400, "invalid_request_error", NULL, "the body is not a JSON object");
    }
    gen_params_t p;
    const char *param = NULL, *why = s_params(b, &p, &param);
    if (why) {
        enum MHD_Result r = s_error(sv, c, 400, "invalid_request_error", param, "%s", why);
        cJSON_Delete(b);
        return r;
    }
    G4__V1__GenerateRequest req = G4__V1__GENERATE_REQUEST__INIT;
    G4__V1__PromptIds pi = G4__V1__PROMPT_IDS__INIT;
    char *chat_json = NULL;
    int32_t *ids = NULL;
    if (chat) {
        cJSON *conv = s_conversation(b, &p, &why, &param);
        if (!conv) {
            enum MHD_Result r = s_error(sv, c, 400, "invalid_request_error", param, "%s", why);
            s_media_free(&p);
            cJSON_Delete(b);
            return r;
        }
        req.media = p.mediap, req.n_media = (size_t)p.n_media;
        chat_json = cJSON_PrintUnformatted(conv);
        cJSON_Delete(conv);
        req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_CHAT_JSON;
        req.chat_json = chat_json;
    } else {
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(b, "prompt");
        if (cJSON_IsString(pr)) {
            req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_TEXT;
            req.text.data = (uint8_t *)pr->valuestring, req.text.len = strlen(pr->valuestring);
        } else if (cJSON_IsArray(pr) && cJSON_GetArraySize(pr) > 0 && cJSON_IsNumber(cJSON_GetArrayItem(pr, 0))) {
            int n = cJSON_GetArraySize(pr), k = 0;
            ids = g4_malloc((size_t)n * sizeof *ids);
            const cJSON *e;
            cJSON_ArrayForEach(e, pr)
            {
                if (!cJSON_IsNumber(e) || e->valuedouble < 0 || e->valuedouble > 1e9) {
                    g4_free(ids);
                    cJSON_Delete(b);
                    return s_error(sv, c, 400, "invalid_request_error", "prompt", "token ids must be non-negative integers");
                }
                ids[k++] = (int32_t)e->valuedouble;
            }
            pi.ids = ids, pi.n_ids = (size_t)n;
            req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_IDS;
            req.ids = &pi;
        } else {
            cJSON_Delete(b);
            return s_error(sv, c, 400, "invalid_request_error", "prompt", "'prompt' must be a string or a list of token ids");
        }
        if (p.max_tokens == 0) p.max_tokens = 16; /* OpenAI's default for completions */
    }
    req.sampling = &p.sp;
    req.max_tokens = p.max_tokens;
    req.ignore_eos = p.ignore_eos;
    ProtobufCBinaryData stops[16];
    for (int i = 0; i < p.n_stop; i++) stops[i].data = (uint8_t *)p.stops[i], stops[i].len = strlen(p.stops[i]);
    req.stop = stops, req.n_stop = (size_t)p.n_stop;
    gen_t *g = g4_calloc(1, sizeof *g);
    g->sv = sv, g->chat = chat, g->stream = p.stream, g->logprobs = p.logprobs, g->top_logprobs = p.top_logprobs;
    atomic_fetch_add(&sv->active, 1);
    int rc = s_gen_start(g, &req);
    s_media_free(&p);
    cJSON_free(chat_json);
    g4_free(ids);
    cJSON_Delete(b);
    if (rc) {
        enum MHD_Result r = s_error(sv, c, s_status_of(g->errcode), "service_unavailable", NULL, "%s", g->errmsg);
        atomic_fetch_sub(&sv->active, 1);
        s_gen_free(g), g4_free(g);
        return r;
    }
    if (p.stream) {
        /* the first event tells whether the request was accepted (errors as HTTP status) */
        G4__V1__TokenEvent *t = NULL;
        g4_msg_t m;
        int r = s_gen_next(g, &t, &m);
        if (r < 0) {
            g4_msg_close(&m);
            enum MHD_Result ret = s_error(sv, c, s_status_of(g->errcode),
                                          g->errcode == G4_ERR_AGAIN ? "rate_limit_exceeded" : "invalid_request_error",
                                          NULL, "%s", g->errmsg);
            atomic_fetch_sub(&sv->active, 1);
            s_gen_free(g), g4_free(g);
            return ret;
        }
        if (r == 1) s_stream_progress(g, 0);
        else if (r == 2) s_stream_progress(g, 1), s_count_done(sv, g);
        g4_msg_close(&m);
        atomic_fetch_add(&sv->n_streams, 1);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, s_stream_reader, g, s_stream_free);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    for (;;) {
        G4__V1__TokenEvent *t = NULL;
        g4_msg_t m;
        int r = s_gen_next(g, &t, &m);
        g4_msg_close(&m);
        if (r < 0) {
            enum MHD_Result ret = s_error(sv, c, s_status_of(g->errcode),
                                          g->errcode == G4_ERR_AGAIN ? "rate_limit_exceeded" : "server_error", NULL, "%s",
                                          g->errmsg);
            atomic_fetch_sub(&sv->active, 1);
            s_gen_free(g), g4_free(g);
            return ret;
        }
        if (r == 2) break;
    }
    s_count_done(sv, g);
    cJSON *j = s_final_json(g);
    atomic_fetch_sub(&sv->active, 1);
    s_gen_free(g), g4_free(g);
    return s_json(sv, c, 200, j);
}

static enum MHD_Result s_health(serve_t *sv, struct MHD_Connection *c)
{
    G4__V1__Envelope *owner;
    G4__V1__StatusReply *r = cli_sched_status(sv->sched_ep, 1000, &owner);
    cJSON *j = cJSON_CreateObject();
    int ok = r && r->ready;
    cJSON_AddStringToObject(j, "status", ok ? "ok" : "unavailable");
    if (r) {
        cJSON *d = cJSON_AddArrayToObject(j, "stages");
        for (size_t i = 0; i < r->n_daemons; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", r->daemons[i]->name);
            cJSON_AddStringToObject(e, "state", r->daemons[i]->state);
            cJSON_AddItemToArray(d, e);
        }
    }
    if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
    return s_json(sv, c, ok ? 200 : 503, j);
}

static enum MHD_Result s_metrics(serve_t *sv, struct MHD_Connection *c)
{
    G4__V1__Envelope *owner;
    G4__V1__StatusReply *r = cli_sched_status(sv->sched_ep, 1000, &owner);
    char *b = NULL;
    size_t n = 0;
    char line[512];
#define OUT(...) (snprintf(line, sizeof line, __VA_ARGS__), s_gen_append(&b, &n, line, strlen(line)))
    OUT("# HELP g4_http_requests_total HTTP requests by outcome.\n# TYPE g4_http_requests_total counter\n");
    OUT("g4_http_requests_total{outcome=\"ok\"} %llu\n", (unsigned long long)atomic_load(&sv->n_req_ok));
    OUT("g4_http_requests_total{outcome=\"client_error\"} %llu\n", (unsigned long long)atomic_load(&sv->n_req_4xx));
    OUT("g4_http_requests_total{outcome=\"server_error\"} %llu\n", (unsigned long long)atomic_load(&sv->n_req_5xx));
    OUT("# HELP g4_prompt_tokens_total Prompt tokens of completed requests.\n# TYPE g4_prompt_tokens_total counter\n");
    OUT("g4_prompt_tokens_total %llu\n", (unsigned long long)atomic_load(&sv->n_prompt_tok));
    OUT("# HELP g4_generated_tokens_total Generated tokens of completed requests.\n# TYPE g4_generated_tokens_total counter\n");
    OUT("g4_generated_tokens_total %llu\n", (unsigned long long)atomic_load(&sv->n_gen_tok));
    OUT("# HELP g4_streams_total Streaming responses started.\n# TYPE g4_streams_total counter\n");
    OUT("g4_streams_total %llu\n", (unsigned long long)atomic_load(&sv->n_streams));
    OUT("# HELP g4_http_active Requests being served.\n# TYPE g4_http_active gauge\ng4_http_active %d\n",
        atomic_load(&sv->active));
    OUT("# HELP g4_request_duration_seconds Time from request to last token.\n# TYPE g4_request_duration_seconds histogram\n");
    for (int i = 0; i < 8; i++)
        OUT("g4_request_duration_seconds_bucket{le=\"%g\"} %llu\n", s_lat_bounds[i],
            (unsigned long long)atomic_load(&sv->lat_bucket[i]));
    OUT("g4_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)atomic_load(&sv->lat_count));
    OUT("g4_request_duration_seconds_sum %.3f\n", (double)atomic_load(&sv->lat_sum_ms) / 1000.0);
    OUT("g4_request_duration_seconds_count %llu\n", (unsigned long long)atomic_load(&sv->lat_count));
    if (r) {
        OUT("# HELP g4_scheduler_queue_depth Requests waiting for a sequence slot.\n# TYPE g4_scheduler_queue_depth gauge\n");
        OUT("g4_scheduler_queue_depth %d\n", r->queued_requests);
        OUT("# HELP g4_scheduler_running Requests decoding.\n# TYPE g4_scheduler_running gauge\n");
        OUT("g4_scheduler_running %d\n", r->active_requests);
        OUT("# TYPE g4_scheduler_requests_total counter\n");
        OUT("g4_scheduler_requests_total{outcome=\"done\"} %llu\n", (unsigned long long)r->requests_done);
        OUT("g4_scheduler_requests_total{outcome=\"failed\"} %llu\n", (unsigned long long)r->requests_failed);
        OUT("# HELP g4_scheduler_requests_migrated_total Requests parked when a stage was lost and resumed on a new pipeline.\n"
            "# TYPE g4_scheduler_requests_migrated_total counter\n");
        OUT("g4_scheduler_requests_migrated_total %llu\n", (unsigned long long)r->requests_migrated);
        OUT("# HELP g4_stage_restarts_total Times a daemon's name registered from a new process.\n"
            "# TYPE g4_stage_restarts_total counter\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_restarts_total{name=\"%s\"} %u\n", r->daemons[i]->name, r->daemons[i]->restarts);
        OUT("# HELP g4_stage_up A pipeline daemon is registered and ready.\n# TYPE g4_stage_up gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_up{name=\"%s\",layers=\"%d-%d\"} %d\n", r->daemons[i]->name, r->daemons[i]->layer_begin,
                r->daemons[i]->layer_end, strcmp(r->daemons[i]->state, "gone") != 0);
        OUT("# HELP g4_stage_in_flight Batches or calls a daemon has not answered yet.\n# TYPE g4_stage_in_flight gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_in_flight{name=\"%s\"} %u\n", r->daemons[i]->name, r->daemons[i]->in_flight);
        OUT("# HELP g4_stage_busy A daemon is computing a batch (1), idle (0).\n# TYPE g4_stage_busy gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_busy{name=\"%s\"} %d\n", r->daemons[i]->name, r->daemons[i]->work && r->daemons[i]->work->batch_id != 0);
        OUT("# HELP g4_stage_stuck A daemon is busy without progress for longer than the stuck threshold.\n"
            "# TYPE g4_stage_stuck gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_stuck{name=\"%s\"} %d\n", r->daemons[i]->name,
                r->daemons[i]->activity && !strcmp(r->daemons[i]->activity, "stuck"));
        OUT("# HELP g4_stage_batch_seconds Time spent so far on the batch a daemon computes (0 when idle).\n"
            "# TYPE g4_stage_batch_seconds gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_batch_seconds{name=\"%s\"} %.3f\n", r->daemons[i]->name,
                r->daemons[i]->work ? r->daemons[i]->work->elapsed_ms / 1000.0 : 0.0);
        OUT("# HELP g4_stage_batch_rows Rows of the batch a daemon computes (0 when idle).\n# TYPE g4_stage_batch_rows gauge\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_batch_rows{name=\"%s\"} %u\n", r->daemons[i]->name, r->daemons[i]->work ? r->daemons[i]->work->rows : 0);
        OUT("# HELP g4_stage_batches_total Batches a daemon has computed.\n# TYPE g4_stage_batches_total counter\n");
        for (size_t i = 0; i < r->n_daemons; i++)
            OUT("g4_stage_batches_total{name=\"%s\"} %llu\n", r->daemons[i]->name,
                (unsigned long long)(r->daemons[i]->work ? r->daemons[i]->work->batches : 0));
    }
#undef OUT
    if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
    enum MHD_Result ret = s_send(c, 200, "text/plain; version=0.0.4", b ? b : (char *)"", b ? n : 0);
    g4_free(b);
    return ret;
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    serve_t *sv = cls;
    conn_t *cn = *con_cls;
    if (!cn) {
        cn = g4_calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->len + *upload_size > SERVE_MAX_BODY) cn->too_big = 1;
        else s_gen_append(&cn->body, &cn->len, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&sv->n_req, 1);
    if (sv->api_key && strcmp(url, "/health")) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, sv->api_key))
            return s_error(sv, c, 401, "invalid_request_error", NULL, "a valid API key is required (Authorization: Bearer KEY)");
    }
    if (cn->too_big) return s_error(sv, c, 413, "invalid_request_error", NULL, "the body is larger than 32 MiB");
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/health")) return get ? s_health(sv, c) : s_error(sv, c, 405, "invalid_request_error", NULL, "use GET");
    if (!strcmp(url, "/metrics")) return get ? s_metrics(sv, c) : s_error(sv, c, 405, "invalid_request_error", NULL, "use GET");
    if (!strcmp(url, "/v1/models")) {
        if (!get) return s_error(sv, c, 405, "invalid_request_error", NULL, "use GET");
        cJSON *j = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(j, "data"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "object", "list");
        cJSON_AddStringToObject(m, "id", sv->model_id);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "g4");
        cJSON_AddItemToArray(d, m);
        return s_json(sv, c, 200, j);
    }
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions")) {
        if (!post) return s_error(sv, c, 405, "invalid_request_error", NULL, "use POST");
        return s_generate(sv, c, cn->body ? cn->body : "", cn->len, url[4] == 'c' && url[5] == 'h');
    }
    return s_error(sv, c, 404, "invalid_request_error", NULL, "no route for %s %s", method, url);
}

static void s_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)cls, (void)c, (void)t;
    conn_t *cn = *con_cls;
    if (cn) g4_free(cn->body), g4_free(cn);
    *con_cls = NULL;
}

int cli_serve(int argc, char **argv)
{
    cli_stack_opts_t o = {0};
    const char *host = "127.0.0.1", *connect_ep = NULL, *api_key = getenv("G4_API_KEY");
    int port = 8080;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int took;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) o.model = v, i++;
        else if (!strcmp(a, "--host") && v) host = v, i++;
        else if (!strcmp(a, "--port") && v) port = atoi(v), i++;
        else if (!strcmp(a, "--api-key") && v) api_key = v, i++;
        else if (!strcmp(a, "--connect") && v) connect_ep = v, i++;
        else if ((took = cli_stack_opt(&o, a, v))) i += took - 1;
        else {
            cli_error("usage: g4 serve (-m MODEL.gguf | --connect EP) [--host 127.0.0.1] [--port 8080] [--api-key KEY]\n"
                      "                [--shards N] [--threads N] [--ctx N] [--slots N] [--template T.jinja] [--mmproj MMPROJ.gguf] [--kv-f32] [--mmap]");
            return 2;
        }
    }
    serve_t *sv = g4_calloc(1, sizeof *sv);
    sv->api_key = api_key && *api_key ? api_key : NULL;
    cli_stack_t st;
    int own = 0;
    if (connect_ep) {
        snprintf(sv->sched_ep, sizeof sv->sched_ep, "%s", connect_ep);
    } else {
        if (o.n_slots <= 0) o.n_slots = 16;
        if (cli_stack_acquire(&o, &st, &own, sv->sched_ep, sizeof sv->sched_ep)) {
            g4_free(sv);
            return 1;
        }
    }
    const char *base = o.model ? strrchr(o.model, '/') : NULL;
    snprintf(sv->model_id, sizeof sv->model_id, "%s", base ? base + 1 : o.model ? o.model : "g4");
    sv->zctx = zmq_ctx_new();
    g4_err_t serr;
    if (g4_wire_security_init(sv->zctx, 0, &serr)) {
        cli_error("%s", serr.msg);
        return 1;
    }
    zmq_ctx_set(sv->zctx, ZMQ_MAX_SOCKETS, 65536);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        cli_error("--host must be an IPv4 address, got '%s'", host);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl; /* one descriptor per connection: take what the system allows */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, (uint16_t)port, NULL, NULL,
        s_handler, sv, MHD_OPTION_NOTIFY_COMPLETED, s_completed, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)20000, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024), MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!d) {
        cli_error("cannot listen on %s:%d", host, port);
        if (own) cli_stack_stop(&st);
        return 1;
    }
    fprintf(stderr, "g4 serve: http://%s:%d/v1 (scheduler %s)%s\n", host, port, sv->sched_ep,
            sv->api_key ? ", API key required" : "");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    while (!s_stop) usleep(100000);
    MHD_stop_daemon(d);
    zmq_ctx_term(sv->zctx);
    if (own) cli_stack_stop(&st);
    g4_free(sv);
    return 0;
}
