/* sched_req — a request's life in schedulerd, from GenerateRequest to its one
 * end. A text or chat prompt goes to tokenizerd (render, then tokenize); ids
 * with media go to sched_media; a complete prompt gets Started and waits for
 * a slot (s_schedule, sched.c). Every request ends exactly once: done, or an
 * error event (deadline, lost pipeline past park_timeout_ms, a failed call);
 * one whose batch is still out stays R_FINISHING until the batch returns.
 *
 *   sched_req_generate        admission: limits, sampling, stop strings,
 *                             media, resume_ids, the prompt → its first call
 *   sched_req_render / _tokenize / sched_req_on_tokenizer   tokenizer calls
 *   sched_req_started         Started; the request is queued
 *   sched_req_done / _fail    the end (exactly one event), sched_req_free
 *   sched_req_cancel          Cancel from the client
 *   sched_req_timers          deadlines, lost calls, park timeouts, keepalives */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "g4_media.h"
#include "sched_internal.h"

/* ---- events and the end of a request ---------------------------------------------- */

int sched_req_event(sched_t *s, req_t *q, G4__V1__GenerateEvent *ev)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    h.request_id = q->client_req_id;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_EVENT;
    env.event = ev;
    g4_err_t err;
    q->last_event_ms = sched_now();
    return g4_wire_send(s->router, q->client, q->client_len, &env, NULL, NULL, 0, 1, &err);
}

/* A call that could not go out or was lost with its daemon (no tokenizer /
 * encoder: one is being restarted) waits for one; sched_peers_retry_calls sends it again. */
void sched_req_call_lost(req_t *q, int kind)
{
    q->call_lost = kind;
    if (!q->lost_ms) q->lost_ms = sched_now();
}

static void s_release_slot(sched_t *s, req_t *q)
{
    if (q->slot < 0) return;
    /* the shards drop the slot's cache when the next batch passes (in order
     * with the data: a release can never overtake the slot's next use) */
    if (s->n_release < s->n_slots && s->release) s->release[s->n_release++] = (uint32_t)q->slot;
    s->slot_used[q->slot] = 0;
    q->slot = -1;
}

void sched_req_fail(sched_t *s, req_t *q, int code, const char *fmt, ...)
{
    char msg[G4_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Error e = G4__V1__ERROR__INIT;
    e.code = (G4__V1__ErrorCode)g4_wire_code(code);
    e.message = msg;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_ERROR;
    ev.error = &e;
    sched_req_event(s, q, &ev);
    g4_log_info("sched", "request %llu failed: %s", (unsigned long long)q->client_req_id, msg);
    s->n_failed++;
    sched_req_free(s, q);
}

void sched_req_done(sched_t *s, req_t *q)
{
    q->t_end = sched_now();
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Done d = G4__V1__DONE__INIT;
    G4__V1__Usage u = G4__V1__USAGE__INIT;
    d.finish_reason = (char *)q->finish;
    d.ids = q->tok + q->n_prompt, d.n_ids = (size_t)(q->n_tok - q->n_prompt);
    d.text.data = (uint8_t *)q->out, d.text.len = q->out_len;
    u.prompt_tokens = q->n_prompt;
    u.completion_tokens = q->n_tok - q->n_prompt;
    u.queue_ms = q->t_start ? (double)(q->t_start - q->t_arrive) : 0;
    u.prefill_ms = q->t_first ? (double)(q->t_first - q->t_start) : 0;
    u.decode_ms = q->t_first ? (double)(q->t_end - q->t_first) : 0;
    u.cached_tokens = q->cached;
    u.draft_tokens = q->n_drafted, u.draft_accepted = q->n_accepted, u.draft_passes = q->n_passes;
    d.usage = &u;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_DONE;
    ev.done = &d;
    sched_req_event(s, q, &ev);
    s->n_done++;
    sched_req_free(s, q);
}

void sched_req_free(sched_t *s, req_t *q)
{
    /* a request with a batch in flight keeps its slot until the batch returns */
    if (q->in_flight) {
        q->state = R_FINISHING;
        q->finish = q->finish ? q->finish : "cancelled";
        q->client_len = 0; /* nothing more goes out */
        return;
    }
    s_release_slot(s, q);
    for (int i = 0; i < q->n_stop; i++) g4_free(q->stop[i]);
    g4_free(q->stop), g4_free(q->stop_len), g4_free(q->chat_json), g4_free(q->text_prompt);
    g4_free(q->tok), g4_free(q->out), g4_free(q->held), g4_free(q->tops);
    for (int i = 0; i < q->n_media; i++) g4_free(q->media[i].data), g4_free(q->media[i].emb);
    g4_free(q->media), g4_free(q->rflag), g4_free(q->embd), g4_free(q->resume);
    sched_cache_req_free(q);
    if (q->state == R_ENCODING && q->enc_rec >= 0 && s->d[q->enc_rec].outstanding > 0)
        s->d[q->enc_rec].outstanding -= q->n_enc_sent - q->n_encoded;
    if (q->detok_tok >= 0 && s->d[q->detok_tok].outstanding > 0) s->d[q->detok_tok].outstanding--;
    memset(q, 0, sizeof *q);
    q->state = R_FREE;
    q->slot = -1;
    q->detok_tok = -1;
}

void sched_req_client_gone(sched_t *s, req_t *q)
{
    q->finish = "cancelled";
    sched_req_free(s, q);
}

/* ---- tokenizer calls ------------------------------------------------------------------ */

/* a call's id: the request and the kind (the reply finds both) */
static uint64_t s_call_id(req_t *q, int kind) { return q->id * 4 + (uint64_t)kind; }

int sched_req_call(sched_t *s, req_t *q, int kind, G4__V1__Envelope *env)
{
    int t = sched_peers_tokenizer(s);
    if (t < 0) return G4_ERR_UNAVAILABLE;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    h.request_id = s_call_id(q, kind);
    env->header = &h;
    g4_err_t err;
    int rc = g4_wire_send(s->d[t].sock, NULL, 0, env, NULL, NULL, 0, 1, &err);
    env->header = NULL;
    if (rc) return rc;
    q->detok_tok = t;
    q->call_lost = 0, q->lost_ms = 0;
    s->d[t].outstanding++;
    return G4_OK;
}

void sched_req_tokenize(sched_t *s, req_t *q, const uint8_t *text, size_t len, int add_bos)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__TokenizeRequest tr = G4__V1__TOKENIZE_REQUEST__INIT;
    if (text != q->text_prompt) { /* kept until tokenized: a lost call is sent again */
        g4_free(q->text_prompt);
        q->text_prompt = g4_malloc(len + 1);
        if (!q->text_prompt) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory");
        if (len) memcpy(q->text_prompt, text, len);
        q->text_prompt_len = len;
    }
    q->tok_add_bos = add_bos;
    tr.text.data = q->text_prompt, tr.text.len = len;
    tr.add_bos = add_bos;
    tr.parse_special = 1;
    env.body_case = G4__V1__ENVELOPE__BODY_TOKENIZE;
    env.tokenize = &tr;
    q->state = R_TOKENIZE;
    if (sched_req_call(s, q, CALL_TOKENIZE, &env)) sched_req_call_lost(q, CALL_TOKENIZE);
}

void sched_req_render(sched_t *s, req_t *q)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__RenderChatRequest rr = G4__V1__RENDER_CHAT_REQUEST__INIT;
    rr.conversation_json = q->chat_json;
    env.body_case = G4__V1__ENVELOPE__BODY_RENDER_CHAT;
    env.render_chat = &rr;
    q->state = R_CHAT;
    if (sched_req_call(s, q, CALL_RENDER, &env)) sched_req_call_lost(q, CALL_RENDER);
}

/* q->tok = a copy of ids (room for 64 more), the prompt */
static int s_set_prompt(sched_t *s, req_t *q, const int32_t *ids, size_t n_ids)
{
    q->tok = g4_malloc((n_ids + 64) * sizeof *q->tok);
    if (!q->tok) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory"), -1;
    memcpy(q->tok, ids, n_ids * sizeof *q->tok);
    q->n_tok = q->n_prompt = (int)n_ids;
    q->cap_tok = (int)n_ids + 64;
    return 0;
}

void sched_req_on_tokenizer(sched_t *s, int ti, g4_msg_t *m)
{
    if (s->d[ti].outstanding > 0) s->d[ti].outstanding--;
    const uint64_t cid = m->env->header->request_id;
    req_t *q = NULL;
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state != R_FREE && s->r[i].id == cid / 4) q = &s->r[i];
    if (!q || q->state == R_FINISHING) {
        if (q && q->detok_tok == ti) q->detok_tok = -1;
        return;
    }
    q->detok_tok = -1;
    const int kind = (int)(cid % 4);
    G4__V1__Envelope *e = m->env;
    if (q->finish && kind != CALL_DETOK) { /* cancelled while being tokenized */
        sched_req_done(s, q);
        return;
    }
    if (e->body_case == G4__V1__ENVELOPE__BODY_ERROR) {
        sched_req_fail(s, q, g4_wire_g4code((int)e->error->code), "tokenizer: %s", e->error->message);
        return;
    }
    if (kind == CALL_RENDER && e->body_case == G4__V1__ENVELOPE__BODY_RENDER_CHAT_REPLY) {
        /* the rendered prompt starts with the BOS text; the tokenizer adds BOS itself */
        const uint8_t *p = e->render_chat_reply->prompt.data;
        size_t n = e->render_chat_reply->prompt.len;
        if (n >= 5 && !memcmp(p, "<bos>", 5)) p += 5, n -= 5;
        sched_req_tokenize(s, q, p, n, 1);
    } else if (kind == CALL_TOKENIZE && e->body_case == G4__V1__ENVELOPE__BODY_TOKENIZE_REPLY) {
        G4__V1__TokenizeReply *t = e->tokenize_reply;
        if (s_set_prompt(s, q, t->ids, t->n_ids)) return;
        if (!q->n_tok) return sched_req_fail(s, q, G4_ERR_RANGE, "the prompt is empty");
        sched_media_prompt_ready(s, q);
    } else if (kind == CALL_DETOK && e->body_case == G4__V1__ENVELOPE__BODY_DETOKENIZE_REPLY) {
        sched_text_on_detok(s, q, e->detokenize_reply);
    } else {
        sched_req_fail(s, q, G4_ERR_PROTO, "unexpected reply from the tokenizer");
    }
}

void sched_req_started(sched_t *s, req_t *q)
{
    q->state = R_QUEUED;
    if (q->resume) {
        /* the ids a lost scheduler generated follow the prompt: fed again like
         * a request parked after a lost stage (the rows from the last prompt
         * row on are sampled with the same draws and checked), not sent again */
        int32_t *nt = g4_realloc(q->tok, (size_t)(q->n_tok + q->n_quiet + 64) * sizeof *nt);
        if (!nt) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory");
        memcpy(nt + q->n_tok, q->resume, (size_t)q->n_quiet * sizeof *nt);
        q->tok = nt, q->n_tok += q->n_quiet, q->cap_tok = q->n_tok + 64;
        g4_free(q->resume);
        q->resume = NULL;
        g4_log_info("sched", "request %llu resumes a lost scheduler's: %d prompt + %d generated ids",
                    (unsigned long long)q->client_req_id, q->n_prompt, q->n_quiet);
    }
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Started st = G4__V1__STARTED__INIT;
    st.prompt_ids = q->tok, st.n_prompt_ids = (size_t)q->n_prompt;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_STARTED;
    ev.started = &st;
    sched_req_event(s, q, &ev);
}

/* ---- admission ----------------------------------------------------------------------- */

int sched_req_check_ids(sched_t *s, req_t *q)
{
    int n_vocab = s->n_vocab;
    const int t = sched_peers_tokenizer(s);
    if (!n_vocab && t >= 0) n_vocab = s->d[t].n_vocab;
    if (n_vocab <= 0) return 0; /* not known yet: checked again when the request gets a slot */
    for (int i = 0; i < q->n_tok; i++) {
        if (q->rflag && i < q->n_prompt && (q->rflag[i] & G4_ROW_EMBD)) continue;
        if (q->tok[i] < 0 || q->tok[i] >= n_vocab) {
            sched_req_fail(s, q, G4_ERR_RANGE, "token id %d at position %d is outside the vocabulary (%d ids)", q->tok[i],
                           i, n_vocab);
            return -1;
        }
    }
    if (q->resume)
        for (int i = 0; i < q->n_quiet; i++)
            if (q->resume[i] < 0 || q->resume[i] >= n_vocab) {
                sched_req_fail(s, q, G4_ERR_RANGE, "resumed id %d is outside the vocabulary (%d ids)", q->resume[i], n_vocab);
                return -1;
            }
    return 0;
}

static req_t *s_new_req(sched_t *s)
{
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state == R_FREE) return &s->r[i];
    if (s->n_r == s->cap_r) {
        int cap = s->cap_r ? s->cap_r * 2 : 64;
        req_t *nr = g4_realloc(s->r, (size_t)cap * sizeof *nr);
        if (!nr) return NULL;
        s->r = nr, s->cap_r = cap;
    }
    req_t *q = &s->r[s->n_r++];
    memset(q, 0, sizeof *q);
    q->slot = -1;
    q->detok_tok = -1;
    return q;
}

static int s_active(sched_t *s)
{
    int n = 0;
    for (int i = 0; i < s->n_r; i++) n += s->r[i].state != R_FREE;
    return n;
}

/* The request's options: sampling, limits, stop strings, resumed ids. */
static int s_options(sched_t *s, req_t *q, const G4__V1__GenerateRequest *g)
{
    if (g->sampling) {
        q->sp = *g->sampling;
        q->sp.base.descriptor = &g4__v1__sampling_params__descriptor;
    } else {
        G4__V1__SamplingParams d = G4__V1__SAMPLING_PARAMS__INIT;
        d.temperature = 0;
        q->sp = d;
    }
    if (q->sp.logprobs < 0) q->sp.logprobs = 0;
    if (q->sp.logprobs > 64) q->sp.logprobs = 64;
    q->max_tokens = g->max_tokens;
    q->ignore_eos = g->ignore_eos;
    size_t stop_bytes = 0;
    for (size_t i = 0; i < g->n_stop; i++) stop_bytes += g->stop[i].len;
    if (g->n_stop > (size_t)s->p.max_stop || stop_bytes > (size_t)s->p.max_stop_bytes)
        return sched_req_fail(s, q, G4_ERR_RANGE, "%zu stop strings of %zu bytes: at most %d of %d bytes together",
                              g->n_stop, stop_bytes, s->p.max_stop, s->p.max_stop_bytes), -1;
    if (g->n_resume_ids > (size_t)1 << 24)
        return sched_req_fail(s, q, G4_ERR_RANGE, "%zu resumed ids", g->n_resume_ids), -1;
    if (g->n_stop) {
        q->stop = g4_calloc(g->n_stop, sizeof *q->stop);
        q->stop_len = g4_calloc(g->n_stop, sizeof *q->stop_len);
        for (size_t i = 0; q->stop && q->stop_len && i < g->n_stop; i++)
            if (g->stop[i].len) {
                q->stop[q->n_stop] = g4_strndup((const char *)g->stop[i].data, g->stop[i].len);
                q->stop_len[q->n_stop++] = g->stop[i].len;
            }
    }
    if (g->n_resume_ids) { /* a lost scheduler's request: they follow the prompt (sched_req_started) */
        q->resume = g4_malloc(g->n_resume_ids * sizeof *q->resume);
        if (!q->resume) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory"), -1;
        memcpy(q->resume, g->resume_ids, g->n_resume_ids * sizeof *q->resume);
        q->n_quiet = (int)g->n_resume_ids;
    }
    return 0;
}

/* The request's images and audio, copied (encoded once the prompt is known). */
static int s_media(sched_t *s, req_t *q, const G4__V1__GenerateRequest *g)
{
    if (g->n_media > MAX_MEDIA) return sched_req_fail(s, q, G4_ERR_RANGE, "more than %d media in one request", MAX_MEDIA), -1;
    if (!g->n_media) return 0;
    q->media = g4_calloc(g->n_media, sizeof *q->media);
    if (!q->media) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory"), -1;
    for (size_t i = 0; i < g->n_media; i++) {
        G4__V1__Media *md = g->media[i];
        media_t *mm = &q->media[q->n_media++];
        mm->kind = md ? md->kind : 0;
        if (!md || (md->kind != G4__V1__MEDIA_KIND__MEDIA_IMAGE && md->kind != G4__V1__MEDIA_KIND__MEDIA_AUDIO))
            return sched_req_fail(s, q, G4_ERR_RANGE, "medium %zu has no kind (image or audio)", i + 1), -1;
        if (!md->data.len) return sched_req_fail(s, q, G4_ERR_FORMAT, "medium %zu is empty", i + 1), -1;
        mm->data = g4_malloc(md->data.len);
        if (!mm->data) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory"), -1;
        memcpy(mm->data, md->data.data, md->data.len);
        mm->len = md->data.len;
        mm->min_tokens = md->image_min_tokens, mm->max_tokens = md->image_max_tokens;
    }
    return 0;
}

void sched_req_generate(sched_t *s, g4_msg_t *m)
{
    G4__V1__GenerateRequest *g = m->env->generate;
    const uint64_t rid = m->env->header->request_id;
    if (s->draining) {
        g4_wire_send_error(s->router, m->route, m->route_len, rid, G4_ERR_UNAVAILABLE, "the scheduler is shutting down");
        return;
    }
    if (s_active(s) >= s->p.max_queue) {
        g4_wire_send_error(s->router, m->route, m->route_len, rid, G4_ERR_AGAIN, "too many requests (%d queued)",
                           s->p.max_queue);
        return;
    }
    req_t *q = s_new_req(s);
    if (!q) {
        g4_wire_send_error(s->router, m->route, m->route_len, rid, G4_ERR_NOMEM, "out of memory");
        return;
    }
    q->id = ++s->next_id;
    q->client_req_id = rid;
    memcpy(q->client, m->route, m->route_len);
    q->client_len = m->route_len;
    q->t_arrive = q->last_event_ms = sched_now();
    q->deadline_ms = m->env->header->deadline_ms ? q->t_arrive + m->env->header->deadline_ms : 0;
    if (s_options(s, q, g) || s_media(s, q, g)) return;
    switch (g->prompt_case) {
    case G4__V1__GENERATE_REQUEST__PROMPT_IDS: {
        G4__V1__PromptIds *p = g->ids;
        if (!p || !p->n_ids) return sched_req_fail(s, q, G4_ERR_RANGE, "the prompt is empty");
        if (s->n_ctx > 0 && p->n_ids > (size_t)s->n_ctx)
            return sched_req_fail(s, q, G4_ERR_RANGE, "the prompt has %zu tokens; the context holds %d", p->n_ids, s->n_ctx);
        if (s_set_prompt(s, q, p->ids, p->n_ids) || sched_req_check_ids(s, q)) return;
        sched_media_prompt_ready(s, q);
        break;
    }
    case G4__V1__GENERATE_REQUEST__PROMPT_TEXT:
        sched_req_tokenize(s, q, g->text.data, g->text.len, 1);
        break;
    case G4__V1__GENERATE_REQUEST__PROMPT_CHAT_JSON:
        q->chat_json = g4_strndup(g->chat_json ? g->chat_json : "", g->chat_json ? strlen(g->chat_json) : 0);
        if (!q->chat_json) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory");
        sched_req_render(s, q);
        break;
    default:
        sched_req_fail(s, q, G4_ERR_PROTO, "the request has no prompt");
    }
}

void sched_req_cancel(sched_t *s, g4_msg_t *m)
{
    const uint64_t rid = m->env->header->request_id;
    for (int i = 0; i < s->n_r; i++) {
        req_t *q = &s->r[i];
        if (q->state == R_FREE || q->state == R_FINISHING || q->client_req_id != rid || q->client_len != m->route_len ||
            memcmp(q->client, m->route, m->route_len))
            continue;
        q->finish = "cancelled";
        if (q->detok_tok < 0 && q->n_tok >= q->n_prompt) {
            q->n_tok = q->n_prompt + q->n_detok_done;
            sched_req_done(s, q);
        }
    }
}

/* ---- timers -------------------------------------------------------------------------- */

/* Ends q when its deadline or a wait (a lost call, a lost pipeline) is past; 1 if it ended. */
static int s_expired(sched_t *s, req_t *q, uint64_t now)
{
    if (q->deadline_ms && now > q->deadline_ms) {
        sched_req_fail(s, q, G4_ERR_TIMEOUT, "deadline exceeded");
        return 1;
    }
    const uint64_t wait_ms = (uint64_t)s->p.park_timeout_ms;
    if (q->call_lost) {
        sched_peers_retry_calls(s, q);
        if (q->state == R_FREE || q->state == R_FINISHING) return 1;
        if (q->call_lost && now - q->lost_ms > wait_ms) {
            sched_req_fail(s, q, G4_ERR_UNAVAILABLE, "no %s came back within %.0f s",
                           q->call_lost == CALL_ENCODE ? "encoder" : "tokenizer", wait_ms / 1000.0);
            return 1;
        }
    }
    if ((q->state == R_QUEUED || (q->state == R_RUNNING && q->parked_ms)) && !s->n_chain && s->chain_lost_ms &&
        now - (q->parked_ms ? q->parked_ms : q->t_arrive) > wait_ms && now - s->chain_lost_ms > wait_ms) {
        char miss[256];
        sched_peers_missing_layers(s, miss, sizeof miss);
        sched_req_fail(s, q, G4_ERR_UNAVAILABLE, "no shard came back for %s within %.0f s", miss, wait_ms / 1000.0);
        return 1;
    }
    return 0;
}

void sched_req_timers(sched_t *s, uint64_t now)
{
    for (int i = 0; i < s->n_r; i++) {
        req_t *q = &s->r[i];
        if (q->state == R_FREE || q->state == R_FINISHING) continue;
        if (s_expired(s, q, now)) continue;
        if (q->state == R_RUNNING && q->n_fed < q->n_prompt && !q->finish && now - q->last_event_ms >= PROGRESS_MS) {
            sched_text_progress(s, q, now);
        } else if (now - q->last_event_ms >= KEEPALIVE_MS) {
            G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
            G4__V1__Keepalive ka = G4__V1__KEEPALIVE__INIT;
            ev.event_case = G4__V1__GENERATE_EVENT__EVENT_KEEPALIVE;
            ev.keepalive = &ka;
            if (sched_req_event(s, q, &ev) && q->client_len) sched_req_client_gone(s, q);
        }
    }
}
