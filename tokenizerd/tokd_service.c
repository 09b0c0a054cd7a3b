/* tokd_service — see tokd_service.h. */
#include "tokd_service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "tok_stream.h"

static int s_valid_utf8(const uint8_t *s, size_t n)
{
    char *tmp = g4_malloc(n * 3 + 1);
    if (!tmp) return 0;
    size_t k = tok_utf8_clean((const char *)s, n, tmp);
    int ok = k == n && memcmp(tmp, s, n) == 0;
    g4_free(tmp);
    return ok;
}

static void s_reply(void *sock, g4_msg_t *m, G4__V1__Envelope *env)
{
    G4__V1__Header h = G4__V1__HEADER__INIT;
    h.request_id = m->env->header->request_id;
    env->header = &h;
    g4_err_t err;
    if (g4_wire_send(sock, m->route, m->route_len, env, NULL, NULL, 0, 1, &err))
        g4_log_warn("tokenizerd", "reply to request %llu: %s", (unsigned long long)h.request_id, err.msg);
}

static void s_error(tokd_t *t, void *sock, g4_msg_t *m, int code, const char *msg)
{
    t->n_errors++;
    g4_wire_send_error(sock, m->route, m->route_len, m->env && m->env->header ? m->env->header->request_id : 0,
                       code, "%s", msg);
}

static size_t s_max_text(const tokd_t *t) { return t->max_text ? t->max_text : TOKD_MAX_TEXT; }

/* bounded work: a call over the input limit is refused before any work */
static int s_too_long(tokd_t *t, void *sock, g4_msg_t *m, size_t len)
{
    if (len <= s_max_text(t)) return 0;
    char msg[160];
    snprintf(msg, sizeof msg, "text of %zu bytes: the tokenizer takes at most %zu (--max-input-bytes)", len, s_max_text(t));
    s_error(t, sock, m, G4_ERR_RANGE, msg);
    return 1;
}

static void s_tokenize(tokd_t *t, void *sock, g4_msg_t *m)
{
    G4__V1__TokenizeRequest *r = m->env->tokenize;
    if (s_too_long(t, sock, m, r->text.len)) return;
    if (!s_valid_utf8(r->text.data, r->text.len)) return s_error(t, sock, m, G4_ERR_FORMAT, "text is not valid UTF-8");
    int32_t *ids = NULL;
    int n = 0;
    g4_err_t err;
    if (tok_vocab_tokenize(t->vocab, (const char *)r->text.data, r->text.len, r->add_bos, r->parse_special, &ids, &n,
                           &err))
        return s_error(t, sock, m, err.code, err.msg);
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__TokenizeReply rep = G4__V1__TOKENIZE_REPLY__INIT;
    rep.ids = ids, rep.n_ids = (size_t)n;
    env.body_case = G4__V1__ENVELOPE__BODY_TOKENIZE_REPLY;
    env.tokenize_reply = &rep;
    s_reply(sock, m, &env);
    g4_free(ids);
}

static void s_detokenize(tokd_t *t, void *sock, g4_msg_t *m)
{
    G4__V1__DetokenizeRequest *r = m->env->detokenize;
    if (r->state.len > 4 || r->n_ids > TOKD_MAX_IDS)
        return s_error(t, sock, m, G4_ERR_RANGE, "detokenize: state longer than 4 bytes or too many ids");
    for (size_t i = 0; i < r->n_ids; i++)
        if (r->ids[i] < 0 || r->ids[i] >= tok_vocab_size(t->vocab)) {
            char msg[96];
            snprintf(msg, sizeof msg, "token id %d is outside the vocabulary (%d)", r->ids[i], tok_vocab_size(t->vocab));
            return s_error(t, sock, m, G4_ERR_RANGE, msg);
        }
    tok_stream_t st;
    tok_stream_init(&st, r->special);
    if (r->state.len) memcpy(st.pend, r->state.data, r->state.len);
    st.n_pend = (int)r->state.len;
    size_t n_chunks = r->n_ids + (r->finish ? 1 : 0);
    ProtobufCBinaryData *chunks = g4_calloc(n_chunks + 1, sizeof *chunks);
    size_t *offs = g4_calloc(n_chunks + 2, sizeof *offs);
    char *buf = NULL;
    size_t len = 0;
    int ok = chunks && offs;
    for (size_t i = 0; ok && i < n_chunks; i++) {
        offs[i] = len;
        long rc = i < r->n_ids ? tok_stream_feed(t->vocab, &st, r->ids[i], &buf, &len) : tok_stream_flush(&st, &buf, &len);
        ok = rc >= 0;
    }
    if (!ok) {
        g4_free(chunks), g4_free(offs), g4_free(buf);
        return s_error(t, sock, m, G4_ERR_NOMEM, "detokenize: out of memory");
    }
    offs[n_chunks] = len;
    for (size_t i = 0; i < n_chunks; i++) {
        chunks[i].data = (uint8_t *)(buf ? buf + offs[i] : NULL);
        chunks[i].len = offs[i + 1] - offs[i];
    }
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__DetokenizeReply rep = G4__V1__DETOKENIZE_REPLY__INIT;
    rep.chunks = chunks, rep.n_chunks = n_chunks;
    rep.state.data = (uint8_t *)st.pend, rep.state.len = (size_t)st.n_pend;
    env.body_case = G4__V1__ENVELOPE__BODY_DETOKENIZE_REPLY;
    env.detokenize_reply = &rep;
    s_reply(sock, m, &env);
    g4_free(chunks), g4_free(offs), g4_free(buf);
}

static void s_render(tokd_t *t, void *sock, g4_msg_t *m)
{
    if (!t->tmpl) return s_error(t, sock, m, G4_ERR_UNAVAILABLE, "the model has no chat template (start tokenizerd with --template)");
    const char *js = m->env->render_chat->conversation_json;
    if (!js) return s_error(t, sock, m, G4_ERR_RANGE, "conversation missing");
    if (s_too_long(t, sock, m, strlen(js))) return;
    cJSON *conv = cJSON_Parse(js);
    if (!conv) return s_error(t, sock, m, G4_ERR_FORMAT, "conversation is not valid JSON");
    const cJSON *msgs = cJSON_IsArray(conv) ? conv : cJSON_GetObjectItemCaseSensitive(conv, "messages");
    const int max_msgs = t->max_messages > 0 ? t->max_messages : 1024, n_msgs = cJSON_GetArraySize(msgs);
    if (n_msgs > max_msgs) {
        cJSON_Delete(conv);
        char msg[128];
        snprintf(msg, sizeof msg, "%d messages: a conversation has at most %d (--max-messages)", n_msgs, max_msgs);
        return s_error(t, sock, m, G4_ERR_RANGE, msg);
    }
    if (!t->native_tools) { /* OpenAI role:"tool" messages, as llama.cpp rewrites them for older templates */
        cJSON *f = tok_chat_fold_tool_responses(conv);
        cJSON_Delete(conv);
        conv = f;
    }
    g4_err_t err;
    size_t n;
    char *out = tok_chat_render(t->tmpl, conv, &n, &err);
    cJSON_Delete(conv);
    if (!out) return s_error(t, sock, m, err.code, err.msg);
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__RenderChatReply rep = G4__V1__RENDER_CHAT_REPLY__INIT;
    rep.prompt.data = (uint8_t *)out, rep.prompt.len = n;
    env.body_case = G4__V1__ENVELOPE__BODY_RENDER_CHAT_REPLY;
    env.render_chat_reply = &rep;
    s_reply(sock, m, &env);
    g4_free(out);
}

static void s_parse(tokd_t *t, void *sock, g4_msg_t *m)
{
    G4__V1__ParseOutputRequest *r = m->env->parse_output;
    if (s_too_long(t, sock, m, r->text.len)) return;
    g4_err_t err;
    cJSON *j = tok_chat_parse_output((const char *)r->text.data, r->text.len, &err);
    if (!j) return s_error(t, sock, m, err.code, err.msg);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__ParseOutputReply rep = G4__V1__PARSE_OUTPUT_REPLY__INIT;
    rep.json = s;
    env.body_case = G4__V1__ENVELOPE__BODY_PARSE_OUTPUT_REPLY;
    env.parse_output_reply = &rep;
    s_reply(sock, m, &env);
    cJSON_free(s);
}

void tokd_media_ids(const tok_vocab_t *v, int32_t out[6])
{
    static const char *const names[6] = {"<|image|>", "<|image>", "<image|>", "<|audio|>", "<|audio>", "<audio|>"};
    for (int i = 0; i < 6; i++) {
        int32_t *ids = NULL;
        int n = 0;
        g4_err_t err;
        out[i] = -1;
        if (!tok_vocab_tokenize(v, names[i], strlen(names[i]), 0, 1, &ids, &n, &err) && n == 1) out[i] = ids[0];
        g4_free(ids);
    }
}

static void s_info(tokd_t *t, void *sock, g4_msg_t *m)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__InfoReply rep = G4__V1__INFO_REPLY__INIT;
    rep.vocab_size = tok_vocab_size(t->vocab);
    rep.bos_id = tok_vocab_bos(t->vocab);
    rep.model_digest = t->digest;
    rep.has_chat_template = t->tmpl != NULL;
    int32_t mi[6];
    tokd_media_ids(t->vocab, mi);
    rep.image_token_id = mi[0], rep.boi_id = mi[1], rep.eoi_id = mi[2];
    rep.audio_token_id = mi[3], rep.boa_id = mi[4], rep.eoa_id = mi[5];
    env.body_case = G4__V1__ENVELOPE__BODY_INFO_REPLY;
    env.info_reply = &rep;
    s_reply(sock, m, &env);
}

void tokd_handle(tokd_t *t, void *sock, g4_msg_t *m)
{
    t->n_requests++;
    switch (m->env->body_case) {
    case G4__V1__ENVELOPE__BODY_TOKENIZE: s_tokenize(t, sock, m); break;
    case G4__V1__ENVELOPE__BODY_DETOKENIZE: s_detokenize(t, sock, m); break;
    case G4__V1__ENVELOPE__BODY_RENDER_CHAT: s_render(t, sock, m); break;
    case G4__V1__ENVELOPE__BODY_PARSE_OUTPUT: s_parse(t, sock, m); break;
    case G4__V1__ENVELOPE__BODY_INFO: s_info(t, sock, m); break;
    default: s_error(t, sock, m, G4_ERR_PROTO, "tokenizerd does not serve this message"); break;
    }
}

/* ---- the daemon around the handler ------------------------------------------------ */

/* does the template fold role:"tool" messages itself? (its source: the file
 * or the GGUF's key) */
static int s_native_tools(const g4_gguf_t *g, const char *tmpl)
{
    const char *src = NULL;
    uint64_t n = 0;
    char *file = NULL;
    if (tmpl) {
        FILE *f = fopen(tmpl, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, 0, SEEK_SET);
            file = sz > 0 ? malloc((size_t)sz) : NULL;
            if (file && fread(file, 1, (size_t)sz, f) == (size_t)sz) src = file, n = (uint64_t)sz;
            fclose(f);
        }
    } else {
        g4_err_t err;
        g4_gguf_get_str(g, "tokenizer.chat_template", &src, &n, &err);
    }
    const int native = src && tok_chat_source_native_tools(src, (size_t)n);
    free(file);
    return native;
}

int tokd_open(tokd_t *t, const char *model, const char *tmpl, g4_err_t *err)
{
    memset(t, 0, sizeof *t);
    t->gguf = g4_gguf_open(model, err);
    if (!t->gguf || !(t->vocab = tok_vocab_load(t->gguf, err))) return err->code;
    t->tmpl = tmpl ? tok_chat_template_file(tmpl, err) : tok_chat_template_gguf(t->gguf, err);
    if (!t->tmpl && tmpl) return err->code;
    if (!t->tmpl) g4_log_warn("tokenizerd", "%s: chat requests will be refused", err->msg);
    if (t->tmpl) t->native_tools = s_native_tools(t->gguf, tmpl);
    snprintf(t->digest, sizeof t->digest, "%016llx", (unsigned long long)g4_gguf_digest(t->gguf));
    return G4_OK;
}

void tokd_close(tokd_t *t)
{
    tj_free(&t->tmpl);
    tok_vocab_destroy(&t->vocab);
    g4_gguf_destroy(&t->gguf);
}

static void s_handle_call(void *user, void *sock, g4_msg_t *m)
{
    tokd_t *t = user;
    if (t->work) g4_daemon_work_begin(t->work, ++t->n_calls, 1, 0);
    tokd_handle(t, sock, m);
    if (t->work) g4_daemon_work_end(t->work);
}

void tokd_serve(void *user, void *sock)
{
    tokd_t *t = user;
    g4_daemon_serve_burst(sock, 256, s_handle_call, t, &t->n_errors);
}
