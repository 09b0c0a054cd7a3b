/* sched_media — a request's images and audio: once its prompt ids are known,
 * the placeholders are checked (g4_media_check), each medium goes to the
 * newest encoderd, and when every one has its embeddings the placeholders
 * are replaced by soft-token rows (g4_media_splice) and the request is
 * queued. An encoder lost mid-way: the media without embeddings go to the
 * next one (sched_peers_retry_calls); the embeddings received are kept.
 *
 *   sched_media_prompt_ready  placeholders checked → encode, or queue
 *   sched_media_send          EncodeRequests for the media still missing
 *   sched_media_on_reply      an EncodeReply; the last one splices (s_splice) */
#include <string.h>

#include "g4_alloc.h"
#include "g4_media.h"
#include "sched_internal.h"

void sched_media_prompt_ready(sched_t *s, req_t *q)
{
    if (!q->n_media) return sched_req_started(s, q);
    /* the placeholder ids of the tokenizer that made these ids */
    const int ti = sched_peers_tokenizer(s);
    if (ti < 0) return sched_req_fail(s, q, G4_ERR_UNAVAILABLE, "no tokenizer is running");
    memcpy(q->mid, s->d[ti].media_ids, sizeof q->mid);
    int kind[MAX_MEDIA];
    for (int i = 0; i < q->n_media; i++) kind[i] = q->media[i].kind; /* G4__V1__MEDIA_KIND__MEDIA_* == G4_MEDIA_* */
    g4_err_t err;
    if (g4_media_check(q->tok, q->n_prompt, q->mid, kind, q->n_media, &err))
        return sched_req_fail(s, q, err.code, "%s", err.msg);
    q->state = R_ENCODING;
    q->n_encoded = q->n_enc_sent = 0;
    sched_media_send(s, q);
}

void sched_media_send(sched_t *s, req_t *q)
{
    int n_img = 0, n_aud = 0;
    for (int i = 0; i < q->n_media; i++)
        if (!q->media[i].emb) n_img += q->media[i].kind == G4_MEDIA_IMAGE, n_aud += q->media[i].kind == G4_MEDIA_AUDIO;
    g4_err_t err;
    const int e = sched_peers_encoder(s);
    if (e < 0) {
        if (!q->call_lost) q->enc_rec = -1;
        return sched_req_call_lost(q, CALL_ENCODE); /* none yet, or one being restarted */
    }
    if ((n_img && !s->d[e].has_vision) || (n_aud && !s->d[e].has_audio))
        return sched_req_fail(s, q, G4_ERR_RANGE, "encoder %s has no %s tower", s->d[e].name,
                              n_img && !s->d[e].has_vision ? "vision" : "audio");
    q->enc_rec = e;
    q->call_lost = 0, q->lost_ms = 0;
    q->n_enc_sent = q->n_encoded;
    for (int i = 0; i < q->n_media; i++) {
        if (q->media[i].emb) continue;
        G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
        G4__V1__Header h = G4__V1__HEADER__INIT;
        G4__V1__EncodeRequest er = G4__V1__ENCODE_REQUEST__INIT;
        h.request_id = q->id * 64 + (uint64_t)i; /* the reply finds request and medium */
        env.header = &h;
        er.kind = q->media[i].kind;
        er.image_min_tokens = q->media[i].min_tokens, er.image_max_tokens = q->media[i].max_tokens;
        env.body_case = G4__V1__ENVELOPE__BODY_ENCODE;
        env.encode = &er;
        const void *raw[1] = {q->media[i].data};
        size_t raw_len[1] = {q->media[i].len};
        if (g4_wire_send(s->d[e].sock, NULL, 0, &env, raw, raw_len, 1, 1, &err))
            return sched_req_call_lost(q, CALL_ENCODE);
        s->d[e].outstanding++;
        q->n_enc_sent++;
    }
}

/* every medium is encoded: replace each placeholder by <|image> N soft tokens <image|> */
static void s_splice(sched_t *s, req_t *q)
{
    int kind[MAX_MEDIA], n_tok[MAX_MEDIA], order[MAX_MEDIA], n = q->n_prompt, n_rows = 0;
    const int H = q->media[0].n_embd;
    for (int i = 0; i < q->n_media; i++) {
        if (q->media[i].n_embd != H) return sched_req_fail(s, q, G4_ERR_FORMAT, "media embeddings of different widths");
        kind[i] = q->media[i].kind, n_tok[i] = q->media[i].n_tokens;
        n += n_tok[i] + 1, n_rows += n_tok[i];
    }
    int32_t *tok = g4_malloc((size_t)(n + 64) * sizeof *tok);
    int8_t *fl = g4_malloc((size_t)n);
    float *embd = g4_malloc((size_t)n_rows * H * sizeof(float));
    g4_err_t err;
    const int k = tok && fl && embd ? g4_media_splice(q->tok, q->n_prompt, q->mid, kind, n_tok, q->n_media,
                                                      g4_media_bidir(H), tok, fl, order, &err)
                                    : g4_err_set(&err, G4_ERR_NOMEM, "out of memory");
    if (k < 0) {
        g4_free(tok), g4_free(fl), g4_free(embd);
        return sched_req_fail(s, q, err.code, "%s", err.msg);
    }
    /* soft-token rows in prompt order: the media in placeholder order */
    for (int j = 0, r = 0; j < q->n_media; r += q->media[order[j]].n_tokens, j++)
        memcpy(embd + (size_t)r * H, q->media[order[j]].emb, (size_t)q->media[order[j]].n_tokens * H * sizeof(float));
    g4_free(q->tok);
    q->tok = tok, q->n_tok = q->n_prompt = k, q->cap_tok = n + 64;
    q->rflag = fl, q->embd = embd, q->n_embd = H;
    for (int i = 0; i < q->n_media; i++) {
        g4_free(q->media[i].data), g4_free(q->media[i].emb);
        q->media[i].data = NULL, q->media[i].emb = NULL;
    }
    sched_req_started(s, q);
}

void sched_media_on_reply(sched_t *s, int ei, g4_msg_t *m)
{
    if (s->d[ei].outstanding > 0) s->d[ei].outstanding--;
    const uint64_t cid = m->env->header ? m->env->header->request_id : 0;
    req_t *q = NULL;
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state == R_ENCODING && s->r[i].id == cid / 64) q = &s->r[i];
    const int mi = (int)(cid % 64);
    if (!q || mi >= q->n_media || q->media[mi].emb) return;
    G4__V1__Envelope *e = m->env;
    if (e->body_case == G4__V1__ENVELOPE__BODY_ERROR)
        return sched_req_fail(s, q, g4_wire_g4code((int)e->error->code), "medium %d: %s", mi + 1, e->error->message);
    size_t len = 0;
    const void *raw = g4_msg_raw(m, 0, &len);
    G4__V1__EncodeReply *r = e->encode_reply;
    if (e->body_case != G4__V1__ENVELOPE__BODY_ENCODE_REPLY || !r || r->n_tokens <= 0 || r->n_embd <= 0 || !raw ||
        len != (size_t)r->n_tokens * r->n_embd * sizeof(float))
        return sched_req_fail(s, q, G4_ERR_PROTO, "malformed reply from encoder %s", s->d[ei].name);
    q->media[mi].emb = g4_malloc(len);
    if (!q->media[mi].emb) return sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory");
    memcpy(q->media[mi].emb, raw, len);
    q->media[mi].n_tokens = r->n_tokens, q->media[mi].n_embd = r->n_embd;
    if (++q->n_encoded == q->n_media) s_splice(s, q);
}
