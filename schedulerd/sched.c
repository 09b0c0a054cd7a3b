/* sched — schedulerd's loop (see schedulerd.h): the sockets, the dispatch of every
 * message to the piece that handles it, and the forward path both ways:
 * s_schedule forms micro-batches (sched_batch.c decides; this file sends the
 * ForwardBatch) and s_on_result takes the sampled ids back.
 *
 *   sched_new / sched_free     sockets, scratch for the rows of one batch
 *   sched_poll                 one turn: ROUTER, results PULL, tokenizer and
 *                              encoder DEALERs; then timers and s_schedule
 *   sched_drain                stop admitting; done when nothing is in flight
 *
 * The rest is in sched_peers.c, sched_req.c, sched_text.c, sched_media.c
 * (see sched_internal.h for the map). */
#include "schedulerd.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "sched_internal.h"

/* ---- messages ------------------------------------------------------------------------- */

static void s_on_router(sched_t *s)
{
    for (int k = 0; k < 512; k++) {
        g4_msg_t m;
        g4_err_t err;
        int rc = g4_wire_recv(s->router, 1, &m, -1, &err);
        if (rc == G4_ERR_TIMEOUT) break;
        if (rc) {
            if (m.route_len)
                g4_wire_send_error(s->router, m.route, m.route_len, m.env && m.env->header ? m.env->header->request_id : 0,
                                   rc, "%s", err.msg);
            g4_msg_close(&m);
            continue;
        }
        const int daemon_msg = m.env->body_case == G4__V1__ENVELOPE__BODY_REGISTER ||
                               m.env->body_case == G4__V1__ENVELOPE__BODY_HEARTBEAT;
        if (daemon_msg && !g4_wire_peer_is_daemon(&m)) { /* a client key may submit requests, nothing more */
            if (m.env->body_case == G4__V1__ENVELOPE__BODY_REGISTER) sched_peers_refuse_register(s, &m, "refused: not a daemon key");
            sched_refuse(s, &m, "a Register or Heartbeat from a client key");
            g4_msg_close(&m);
            continue;
        }
        switch (m.env->body_case) {
        case G4__V1__ENVELOPE__BODY_GENERATE: sched_req_generate(s, &m); break;
        case G4__V1__ENVELOPE__BODY_CANCEL: sched_req_cancel(s, &m); break;
        case G4__V1__ENVELOPE__BODY_STATUS: sched_peers_status(s, &m); break;
        case G4__V1__ENVELOPE__BODY_REGISTER: sched_peers_register(s, &m); break;
        case G4__V1__ENVELOPE__BODY_HEARTBEAT: sched_peers_heartbeat(s, &m); break;
        default:
            g4_wire_send_error(s->router, m.route, m.route_len, m.env->header->request_id, G4_ERR_PROTO,
                               "schedulerd does not serve this message");
        }
        g4_msg_close(&m);
    }
}

/* ---- results: the sampled ids come back ------------------------------------------------ */

static void s_batch_free(batch_t *b)
{
    g4_free(b->reqs), g4_free(b->rows_fed), g4_free(b->first_pos), g4_free(b->sample_pos);
    g4_free(b->px_save), g4_free(b->px_save_id), g4_free(b->px_restored), g4_free(b->n_draft);
    b->reqs = b->rows_fed = b->first_pos = b->sample_pos = b->px_save = b->n_draft = NULL;
    b->px_save_id = NULL, b->px_restored = NULL;
}

static int s_push_tok(req_t *q, int32_t id)
{
    if (q->n_tok == q->cap_tok) {
        int cap = q->cap_tok * 2 + 16;
        int32_t *nt = g4_realloc(q->tok, (size_t)cap * sizeof *nt);
        if (!nt) return -1;
        q->tok = nt, q->cap_tok = cap;
    }
    q->tok[q->n_tok++] = id;
    return 0;
}

void sched_refuse(sched_t *s, g4_msg_t *m, const char *what)
{
    static uint64_t last_ms;
    s->n_refused++;
    const uint64_t now = sched_now();
    if (now - last_ms >= 1000) { /* a flood is one line a second */
        last_ms = now;
        g4_log_warn("sched", "refused %s (peer %s; %llu refused so far)", what, m->user_id[0] ? m->user_id : "without CURVE",
                    (unsigned long long)s->n_refused);
    }
    if (m->route_len && m->env && m->env->body_case != G4__V1__ENVELOPE__BODY_REGISTER) /* (a Register got its reply) */
        g4_wire_send_error(s->router, m->route, m->route_len, m->env && m->env->header ? m->env->header->request_id : 0,
                           G4_ERR_STATE, "refused: %s", what);
}

/* The slot's error in r->failed, NULL when the slot ran. */
static const G4__V1__SlotError *s_slot_error(const G4__V1__ForwardResult *r, int slot)
{
    for (size_t k = 0; k < r->n_failed; k++)
        if (r->failed[k] && (int)r->failed[k]->slot == slot) return r->failed[k];
    return NULL;
}

static void s_on_result(sched_t *s, g4_msg_t *m)
{
    G4__V1__ForwardResult *r = m->env->forward_result;
    int bi = -1;
    for (int i = 0; i < s->n_b; i++)
        if (s->b[i].id == r->batch_id) bi = i;
    if (bi < 0) return; /* a batch of a pipeline that is gone (or a guess: ids are random) */
    /* only the chain's last stage sends the result (by its authenticated key) */
    const drec_t *last = &s->d[s->b[bi].last_stage];
    if (m->user_id[0] && (strncmp(m->user_id, "daemon:", 7) || (last->user_id[0] && strcmp(last->user_id, m->user_id))))
        return sched_refuse(s, m, "a ForwardResult from a peer that is not the chain's last stage");
    batch_t b = s->b[bi];
    s->b[bi] = s->b[--s->n_b];
    if (r->error) {
        char msg[G4_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", r->error->message ? r->error->message : "forward failed");
        for (int i = 0; i < b.n_req; i++) {
            req_t *q = &s->r[b.reqs[i]];
            q->in_flight = 0;
            sched_cache_result(s, &b, i, 0, NULL, 0);
            if (q->state == R_FINISHING) sched_req_free(s, q);
            else if (q->state == R_RUNNING) sched_req_fail(s, q, g4_wire_g4code((int)r->error->code), "%s", msg);
        }
        s_batch_free(&b);
        return;
    }
    int *seen = g4_calloc((size_t)b.n_req + 1, sizeof *seen);
    for (int i = 0; i < b.n_req; i++) {
        req_t *q = &s->r[b.reqs[i]];
        q->in_flight = 0;
        const G4__V1__SlotError *se = q->state == R_RUNNING ? s_slot_error(r, q->slot) : NULL;
        sched_cache_result(s, &b, i, !se && !q->replay, r->cache_lost, r->n_cache_lost);
        if (se && b.px_restored[i]) { /* a stage could not restore its prefix: computed from position 0 instead */
            g4_log_warn("sched", "request %llu: %s; its prompt is computed from the start",
                        (unsigned long long)q->client_req_id, se->error && se->error->message ? se->error->message : "restore failed");
            q->n_fed = 0;
            sched_cache_req_restart(q, 1);
            b.rows_fed[i] = -1;
            if (q->state == R_FINISHING) sched_req_free(s, q);
            continue;
        }
        if (se) { /* a shard refused this sequence: it alone fails, its batch-mates go on */
            sched_req_fail(s, q, se->error ? g4_wire_g4code((int)se->error->code) : G4_ERR_RANGE, "%s",
                           se->error && se->error->message ? se->error->message : "a shard refused the sequence");
            continue;
        }
        if (q->replay) { /* the pipeline changed while this batch was out: start over */
            q->n_fed = 0;
            q->replay = 0;
            sched_cache_req_restart(q, 0);
            b.rows_fed[i] = -1;
        } else if (!b.n_draft[i]) {
            q->n_fed += b.rows_fed[i];
        } /* (a verification pass: the rows its sampled ids confirm, below) */
        if (q->state == R_FINISHING) sched_req_free(s, q);
    }
    for (size_t t = 0; t < r->n_tokens; t++) {
        G4__V1__SampledToken *st = r->tokens[t];
        req_t *q = NULL;
        int qi = -1;
        for (int i = 0; i < b.n_req; i++)
            if (s->r[b.reqs[i]].slot == (int)st->slot && s->r[b.reqs[i]].state == R_RUNNING) q = &s->r[b.reqs[i]], qi = i;
        if (!q || q->finish || !seen || b.rows_fed[qi] < 0) continue;
        /* the sample of the row at position p predicts token p + 1; rows
         * replayed after a pipeline change predict tokens already known */
        const int pos = b.sample_pos[qi] + seen[qi]++;
        if (pos + 1 < q->n_tok) {
            if (q->tok[pos + 1] != st->id)
                g4_log_warn("sched", "request %llu: replay sampled %d at position %d where %d was sampled before",
                            (unsigned long long)q->client_req_id, st->id, pos + 1, q->tok[pos + 1]);
            continue;
        }
        if (!q->t_first) q->t_first = sched_now();
        if (s_push_tok(q, st->id)) {
            sched_req_fail(s, q, G4_ERR_NOMEM, "out of memory");
            continue;
        }
        /* ids drafted after it: its next step verifies them (within what the request may still produce) */
        int nd = (int)(st->n_draft < 64 ? st->n_draft : 64);
        if (q->max_tokens > 0 && nd > q->max_tokens - (q->n_tok - q->n_prompt) - 1)
            nd = q->max_tokens - (q->n_tok - q->n_prompt) - 1;
        if (s->n_ctx > 0 && nd > s->n_ctx - q->n_tok - 1) nd = s->n_ctx - q->n_tok - 1;
        q->n_draft = nd > 0 ? nd : 0, q->draft_pos = q->n_tok;
        if (nd > 0) memcpy(q->draft, st->draft, (size_t)nd * sizeof *q->draft);
        const int n_gen = q->n_tok - q->n_prompt;
        if (q->sp.logprobs > 0) {
            if (n_gen * q->sp.logprobs > q->cap_tops) {
                int cap = (n_gen * 2 + 16) * q->sp.logprobs;
                G4__V1__TopLogprob *nt = g4_realloc(q->tops, (size_t)cap * sizeof *nt);
                if (nt) q->tops = nt, q->cap_tops = cap;
            }
            if (q->tops && n_gen * q->sp.logprobs <= q->cap_tops)
                for (int k = 0; k < q->sp.logprobs; k++) {
                    G4__V1__TopLogprob *tl = &q->tops[(size_t)(n_gen - 1) * (size_t)q->sp.logprobs + (size_t)k];
                    g4__v1__top_logprob__init(tl);
                    if ((size_t)k < st->n_top) tl->id = st->top[k]->id, tl->logprob = st->top[k]->logprob;
                }
        }
        if (st->eog && !q->ignore_eos) q->finish = "stop";
        else if (q->max_tokens > 0 && n_gen >= q->max_tokens) q->finish = "length";
        else if (s->n_ctx > 0 && q->n_tok >= s->n_ctx) q->finish = "length"; /* the context is full */
        sched_text_send_detok(s, q);
    }
    /* a verification pass keeps the rows up to the last id sampled for it: the pipeline holds those */
    for (int i = 0; i < b.n_req && seen; i++) {
        req_t *q = &s->r[b.reqs[i]];
        if (!b.n_draft[i] || b.rows_fed[i] < 0 || q->state != R_RUNNING) continue;
        q->n_fed = b.first_pos[i] + (seen[i] ? seen[i] : 1);
        q->n_passes++, q->n_drafted += b.n_draft[i], q->n_accepted += seen[i] > 1 ? seen[i] - 1 : 0;
    }
    g4_free(seen);
    s_batch_free(&b);
}

/* ---- batches: the former decides (sched_batch.c), this sends --------------------------- */

void sched_forget_batches(sched_t *s)
{
    for (int i = 0; i < s->n_b; i++) s_batch_free(&s->b[i]);
    s->n_b = 0;
}

/* The per-request scratch of the former: n_r + 1 entries each. */
static int s_grow_scratch(sched_t *s)
{
    if (s->bt_cap_r >= s->n_r + 1) return 0;
    const size_t n = (size_t)s->n_r + 1;
    G4__V1__SeqParams *nsp = g4_realloc(s->bt_sps, n * sizeof *nsp);
    if (nsp) s->bt_sps = nsp;
    G4__V1__SeqParams **npp = g4_realloc(s->bt_spp, n * sizeof *npp);
    if (npp) s->bt_spp = npp;
    sched_seq_t *nsq = g4_realloc(s->bt_seq, n * sizeof *nsq);
    if (nsq) s->bt_seq = nsq;
    sched_admit_t *nad = g4_realloc(s->bt_admit, n * sizeof *nad);
    if (nad) s->bt_admit = nad;
    sched_pick_t *npk = g4_realloc(s->bt_pick, n * sizeof *npk);
    if (npk) s->bt_pick = npk;
    if (!nsp || !npp || !nsq || !nad || !npk) return -1;
    s->bt_cap_r = (int)n;
    return 0;
}

/* The requests as the batch former sees them. */
static void s_seq_view(sched_t *s)
{
    for (int i = 0; i < s->n_r; i++) {
        const req_t *q = &s->r[i];
        s->bt_seq[i] = (sched_seq_t){
            .state = q->state == R_QUEUED                 ? SCHED_SEQ_QUEUED
                     : q->state == R_RUNNING && !q->finish ? SCHED_SEQ_RUNNING
                                                           : SCHED_SEQ_OTHER,
            .in_flight = q->in_flight != 0,
            .order = q->id,
            .slot = q->slot,
            .n_prompt = q->n_prompt,
            .n_tok = q->n_tok,
            .n_fed = q->n_fed,
            .tok = q->tok,
            .rflag = q->rflag,
            .n_embd = q->n_embd,
            .vrows = q->vrows,
            /* drafts after its last id, while that id is the next to feed */
            .draft = q->draft,
            .n_draft = q->n_draft && q->draft_pos == q->n_tok && q->n_fed == q->n_tok - 1 ? q->n_draft : 0,
        };
        sched_cache_lookup(s, &s->r[i], &s->bt_seq[i]);
    }
}

/* Queued requests into free slots, oldest first. */
static void s_admit(sched_t *s)
{
    s_seq_view(s);
    const int n = sched_batch_admit(s->bt_seq, s->n_r, s->slot_used, s->n_slots, s->n_ctx, s->bt_admit);
    for (int k = 0; k < n; k++) {
        req_t *q = &s->r[s->bt_admit[k].seq];
        const int sl = s->bt_admit[k].slot;
        if (sched_req_check_ids(s, q)) continue; /* (a pipeline of another vocabulary since it was queued) */
        if (sl < 0) {
            sched_req_fail(s, q, G4_ERR_RANGE, "the prompt has %d tokens; the context holds %d", q->n_tok, s->n_ctx);
            continue;
        }
        s->slot_used[sl] = 1;
        q->slot = sl;
        q->state = R_RUNNING;
        q->t_start = sched_now();
    }
}

/* The soft-token rows of the picked requests, in batch order, into bt_embd. */
static int s_gather_embd(sched_t *s, const sched_rows_t *rows, int n_pick)
{
    const size_t H = (size_t)rows->n_embd, want_f = (size_t)rows->n_embd_rows * H;
    if (want_f > s->bt_embd_cap) {
        float *nb = g4_realloc(s->bt_embd, want_f * sizeof(float));
        if (!nb) return -1;
        s->bt_embd = nb, s->bt_embd_cap = want_f;
    }
    size_t at = 0;
    for (int k = 0; k < n_pick; k++) {
        const sched_pick_t *pk = &s->bt_pick[k];
        if (!pk->n_embd_rows) continue;
        memcpy(s->bt_embd + at * H, s->r[pk->seq].embd + (size_t)pk->embd_first * H, (size_t)pk->n_embd_rows * H * sizeof(float));
        at += (size_t)pk->n_embd_rows;
    }
    return 0;
}

/* Forms one micro-batch and sends it to the first stage; nonzero when no more can go out now. */
static int s_send_batch(sched_t *s, int max_seqs)
{
    sched_rows_t rows = {.tok = s->bt_tok, .pos = s->bt_pos, .slot = s->bt_slot, .sample = s->bt_srows, .flags = s->bt_flags};
    const int n_req = sched_batch_form(s->bt_seq, s->n_r, s->rr, max_seqs, s->p.n_ubatch, s->bt_pick, &rows);
    if (n_req) s->rr = (s->rr + 1) % s->n_r;
    if (!rows.n_rows) return 1;
    if (rows.n_embd_rows && s_gather_embd(s, &rows, n_req)) return 1;
    /* the batch record keeps these until its result comes back */
    batch_t nb = {0};
    nb.reqs = g4_malloc((size_t)n_req * sizeof *nb.reqs), nb.rows_fed = g4_malloc((size_t)n_req * sizeof *nb.rows_fed);
    nb.first_pos = g4_malloc((size_t)n_req * sizeof *nb.first_pos), nb.sample_pos = g4_malloc((size_t)n_req * sizeof *nb.sample_pos);
    nb.px_save = g4_malloc((size_t)n_req * sizeof *nb.px_save), nb.px_save_id = g4_malloc((size_t)n_req * sizeof *nb.px_save_id);
    nb.px_restored = g4_calloc((size_t)n_req, 1);
    nb.n_draft = g4_calloc((size_t)n_req, sizeof *nb.n_draft);
    if (!nb.reqs || !nb.rows_fed || !nb.first_pos || !nb.sample_pos || !nb.px_save || !nb.px_save_id || !nb.px_restored ||
        !nb.n_draft) {
        s_batch_free(&nb);
        return 1;
    }
    int *reqs = nb.reqs, *fed = nb.rows_fed, *fpos = nb.first_pos, *spos = nb.sample_pos;
    nb.n_req = n_req;
    /* batch ids are random: a result cannot be forged by counting */
    uint64_t bid = 0;
    for (int again = 1; again;) {
        g4_wire_random(&bid, sizeof bid);
        again = bid == 0;
        for (int i = 0; i < s->n_b && !again; i++) again = s->b[i].id == bid;
    }
    int n_p = 0;
    for (int k = 0; k < n_req; k++) {
        const sched_pick_t *pk = &s->bt_pick[k];
        req_t *q = &s->r[pk->seq];
        if (q->parked_ms) { /* a parked request goes on on the new pipeline */
            g4_log_info("sched", "request %llu resumes after %.1f s: %d tokens fed again",
                        (unsigned long long)q->client_req_id, (sched_now() - q->parked_ms) / 1000.0, q->n_tok);
            q->parked_ms = 0;
            s->n_migrated++;
        }
        if (pk->first_pos == 0 || (s->px_on && q->px_phase == PX_LOOKUP && q->n_fed > 0)) {
            /* the slot starts (at 0, or from the prefix cache): its sampling parameters go along */
            g4__v1__seq_params__init(&s->bt_sps[n_p]);
            s->bt_sps[n_p].slot = (uint32_t)q->slot;
            s->bt_sps[n_p].sampling = &q->sp;
            s->bt_spp[n_p] = &s->bt_sps[n_p];
            n_p++;
        }
        reqs[k] = pk->seq, fed[k] = pk->n_rows, fpos[k] = pk->first_pos, spos[k] = pk->sample_pos;
        nb.n_draft[k] = pk->first_pos + pk->n_rows > q->n_tok ? pk->first_pos + pk->n_rows - q->n_tok : 0;
        q->n_draft = 0; /* (verified by this batch, or not worth keeping) */
        q->in_flight = bid;
        s->bt_seq[pk->seq].in_flight = 1;
    }
    char *route[MAX_CHAIN + 1];
    for (int c = 1; c < s->n_chain; c++) route[c - 1] = s->d[s->chain[c]].endpoint;
    route[s->n_chain - 1] = s->results_ep;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__ForwardBatch fb = G4__V1__FORWARD_BATCH__INIT;
    fb.batch_id = bid;
    fb.epoch = s->epoch;
    fb.route = route, fb.n_route = (size_t)s->n_chain;
    fb.tokens = rows.tok, fb.n_tokens = (size_t)rows.n_rows;
    fb.pos = rows.pos, fb.n_pos = (size_t)rows.n_rows;
    fb.slot = rows.slot, fb.n_slot = (size_t)rows.n_rows;
    fb.sample_rows = rows.sample, fb.n_sample_rows = (size_t)rows.n_sample;
    fb.params = s->bt_spp, fb.n_params = (size_t)n_p;
    /* a slot reused in this batch restarts at position 0 anyway; the rest are dropped */
    fb.release = s->release, fb.n_release = (size_t)s->n_release;
    /* a drafting last stage proposes no more than a request may still produce */
    G4__V1__SlotBudget *bud = NULL, **budp = NULL;
    if (s->d[s->chain[s->n_chain - 1]].draft[0]) {
        bud = g4_calloc((size_t)n_req + 1, sizeof *bud), budp = g4_calloc((size_t)n_req + 1, sizeof *budp);
        for (int k = 0; bud && budp && k < n_req; k++) {
            const req_t *q = &s->r[reqs[k]];
            if (q->max_tokens <= 0 || spos[k] < 0) continue;
            g4__v1__slot_budget__init(&bud[fb.n_remaining]);
            bud[fb.n_remaining].slot = (uint32_t)q->slot;
            bud[fb.n_remaining].n = q->max_tokens - (q->n_tok - q->n_prompt);
            budp[fb.n_remaining] = &bud[fb.n_remaining];
            fb.n_remaining++;
        }
        fb.remaining = budp;
    }
    G4__V1__TensorDesc ed = G4__V1__TENSOR_DESC__INIT;
    const int n_erows = rows.n_embd_rows;
    uint64_t eshape[2] = {(uint64_t)n_erows, (uint64_t)rows.n_embd};
    const void *eraw[1] = {s->bt_embd};
    size_t eraw_len[1] = {(size_t)n_erows * rows.n_embd * sizeof(float)};
    if (rows.has_flags) {
        fb.row_flags.data = (uint8_t *)rows.flags, fb.row_flags.len = (size_t)rows.n_rows;
        if (n_erows) {
            ed.dtype = G4__V1__DTYPE__DTYPE_F32, ed.shape = eshape, ed.n_shape = 2;
            fb.embd = &ed;
        }
    }
    env.body_case = G4__V1__ENVELOPE__BODY_FORWARD;
    env.forward = &fb;
    sched_cache_mem_t *cmem = sched_cache_orders(s, &nb, &fb); /* the prefix cache's orders go along */
    g4_err_t err;
    int rc = g4_wire_send(s->d[s->chain[0]].sock, NULL, 0, &env, n_erows ? eraw : NULL, n_erows ? eraw_len : NULL,
                          n_erows ? 1 : 0, 1, &err);
    sched_cache_orders_free(&cmem);
    g4_free(bud), g4_free(budp);
    if (rc) {
        for (int i = 0; i < n_req; i++) {
            s->r[reqs[i]].in_flight = 0;
            sched_cache_result(s, &nb, i, 0, NULL, 0);
            sched_req_fail(s, &s->r[reqs[i]], rc, "could not reach shard %s: %s", s->d[s->chain[0]].name, err.msg);
        }
        s_batch_free(&nb);
        return 1;
    }
    s->n_release = 0, s->n_px_drop = 0;
    batch_t *b = &s->b[s->n_b++];
    *b = nb;
    b->id = bid, b->sent_ms = b->alive_ms = sched_now(), b->frac = 0;
    b->last_stage = s->chain[s->n_chain - 1];
    b->stages = 0;
    for (int c = 0; c < s->n_chain; c++) b->stages |= 1ull << s->chain[c];
    return 0;
}

/* Admits queued requests, then sends up to one micro-batch per stage, each
 * with its own requests, so that every stage has work. */
static void s_schedule(sched_t *s)
{
    if (!s->n_chain || s_grow_scratch(s)) return;
    s_admit(s);
    s_seq_view(s);
    int n_running = 0;
    for (int i = 0; i < s->n_r; i++) n_running += s->bt_seq[i].state == SCHED_SEQ_RUNNING;
    const int max_seqs = sched_batch_max_seqs(n_running, s->n_chain);
    while (s->n_b < s->n_chain && s->n_b < MAX_BATCHES) {
        if (s_send_batch(s, max_seqs)) break;
        s_seq_view(s); /* (prefix lookups see the chunks the batch just sent is computing) */
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

sched_t *sched_new(void *zctx, const sched_params_t *p, g4_err_t *err)
{
    sched_t *s = g4_calloc(1, sizeof *s);
    if (!s) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->p = *p;
    if (s->p.n_ubatch <= 0) s->p.n_ubatch = 512;
    if (s->p.max_queue <= 0) s->p.max_queue = 1024;
    if (s->p.heartbeat_timeout_ms <= 0) s->p.heartbeat_timeout_ms = 1500;
    if (s->p.stuck_after_ms <= 0) s->p.stuck_after_ms = 120000;
    if (s->p.park_timeout_ms <= 0) s->p.park_timeout_ms = 30000;
    if (s->p.batch_timeout_ms <= 0) s->p.batch_timeout_ms = 30000;
    if (s->p.max_stop <= 0) s->p.max_stop = 16;
    if (s->p.max_stop_bytes <= 0) s->p.max_stop_bytes = 4096;
    s->zctx = zctx;
    s->started_ms = sched_now();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->epoch = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    /* batch ids unique across restarts: a result of a lost scheduler's batch
     * that reaches this one matches none of its own */
    s->next_batch = s->epoch << 16;
    const size_t U = (size_t)s->p.n_ubatch;
    s->bt_tok = g4_malloc(U * sizeof *s->bt_tok), s->bt_pos = g4_malloc(U * sizeof *s->bt_pos);
    s->bt_slot = g4_malloc(U * sizeof *s->bt_slot), s->bt_srows = g4_malloc(U * sizeof *s->bt_srows);
    s->bt_flags = g4_malloc(U);
    if (!s->bt_tok || !s->bt_pos || !s->bt_slot || !s->bt_srows || !s->bt_flags) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        sched_free(&s);
        return NULL;
    }
    snprintf(s->results_ep, sizeof s->results_ep, "%s", p->results);
    s->router = g4_wire_socket(zctx, ZMQ_ROUTER, err);
    s->results = g4_wire_socket(zctx, ZMQ_PULL, err);
    if (s->results) /* results: n_ubatch sampled rows with up to 64 log-probs each, and error text */
        g4_wire_set_maxmsg(s->results, (int64_t)s->p.n_ubatch * 64 * 16 + (1 << 20));
    if (!s->router || !s->results || g4_wire_bind_peers(s->router, p->listen, G4_WIRE_PEERS_CLIENTS, err) ||
        g4_wire_bind(s->results, p->results, err)) {
        sched_free(&s);
        return NULL;
    }
    return s;
}

void sched_free(sched_t **sp)
{
    sched_t *s = *sp;
    if (!s) return;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].sock) zmq_close(s->d[i].sock);
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state != R_FREE) s->r[i].in_flight = 0, sched_req_free(s, &s->r[i]);
    sched_forget_batches(s);
    if (s->router) zmq_close(s->router);
    if (s->results) zmq_close(s->results);
    g4_free(s->r), g4_free(s->slot_used), g4_free(s->release);
    g4_free(s->bt_tok), g4_free(s->bt_pos), g4_free(s->bt_slot), g4_free(s->bt_srows), g4_free(s->bt_flags);
    g4_free(s->bt_embd), g4_free(s->bt_sps), g4_free(s->bt_spp);
    g4_free(s->bt_seq), g4_free(s->bt_admit), g4_free(s->bt_pick);
    spx_fini(&s->px);
    g4_free(s->px_drop);
    g4_free(s);
    *sp = NULL;
}

/* Results from the last shard (the PULL socket). */
static void s_on_results(sched_t *s)
{
    for (int j = 0; j < 256; j++) {
        g4_msg_t m;
        g4_err_t err;
        int rc = g4_wire_recv(s->results, 0, &m, -1, &err);
        if (rc == G4_ERR_TIMEOUT) break;
        if (rc == G4_OK && m.env->body_case == G4__V1__ENVELOPE__BODY_FORWARD_RESULT) s_on_result(s, &m);
        else if (rc != G4_OK) g4_log_warn("sched", "result socket: %s", err.msg);
        g4_msg_close(&m);
    }
}

/* Replies of tokenizer / encoder i (its DEALER). */
static void s_on_daemon(sched_t *s, int i)
{
    for (int j = 0; j < 256 && s->d[i].sock; j++) {
        g4_msg_t m;
        g4_err_t err;
        int rc = g4_wire_recv(s->d[i].sock, 0, &m, -1, &err);
        if (rc == G4_ERR_TIMEOUT) break;
        if (rc == G4_OK && s->d[i].role == G4__V1__ROLE__ROLE_ENCODER) sched_media_on_reply(s, i, &m);
        else if (rc == G4_OK) sched_req_on_tokenizer(s, i, &m);
        g4_msg_close(&m);
    }
}

/* A batch that never comes back (a stage dropped it, a frame was lost) is a
 * lost stage: its requests are parked and fed again. It is alive while a
 * stage of its chain works on it or on a batch sent before it (it may wait
 * in that stage's queue). */
static void s_batch_timers(sched_t *s, uint64_t now)
{
    for (int i = 0; i < s->n_b; i++) {
        batch_t *b = &s->b[i];
        for (int k = 0; k < MAX_DAEMONS; k++) {
            if (!((b->stages >> k) & 1) || !s->d[k].work.batch_id) continue;
            for (int j = 0; j < s->n_b; j++)
                if (s->b[j].id == s->d[k].work.batch_id && s->b[j].sent_ms <= b->sent_ms) b->alive_ms = now;
        }
        if (now - b->alive_ms <= (uint64_t)s->p.batch_timeout_ms) continue;
        char why[256];
        snprintf(why, sizeof why, "batch %016llx did not come back within %.0f s", (unsigned long long)b->id,
                 s->p.batch_timeout_ms / 1000.0);
        g4_log_warn("sched", "%s: treated as a lost stage", why);
        s->n_batch_timeouts++;
        sched_peers_park(s, why);
        return;
    }
}

void sched_poll(sched_t *s, int timeout_ms)
{
    zmq_pollitem_t it[2 + MAX_DAEMONS];
    int map[2 + MAX_DAEMONS], n = 0;
    it[n] = (zmq_pollitem_t){s->router, 0, ZMQ_POLLIN, 0}, map[n++] = -1;
    it[n] = (zmq_pollitem_t){s->results, 0, ZMQ_POLLIN, 0}, map[n++] = -2;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].sock && s->d[i].role != G4__V1__ROLE__ROLE_SHARD && s->d[i].state != D_FREE)
            it[n] = (zmq_pollitem_t){s->d[i].sock, 0, ZMQ_POLLIN, 0}, map[n++] = i;
    if (zmq_poll(it, n, timeout_ms) > 0)
        for (int k = 0; k < n; k++) {
            if (!(it[k].revents & ZMQ_POLLIN)) continue;
            if (map[k] == -1) s_on_router(s);
            else if (map[k] == -2) s_on_results(s);
            else if (s->d[map[k]].sock) s_on_daemon(s, map[k]);
        }
    const uint64_t now = sched_now();
    sched_peers_timers(s, now);
    s_batch_timers(s, now);
    sched_req_timers(s, now);
    s_schedule(s);
}

int sched_drain(sched_t *s)
{
    s->draining = 1;
    int busy = 0;
    for (int i = 0; i < s->n_r; i++) busy |= s->r[i].state != R_FREE;
    if (busy && !s->n_chain) {
        /* nothing can finish them: fail what is left */
        for (int i = 0; i < s->n_r; i++)
            if (s->r[i].state != R_FREE && s->r[i].state != R_FINISHING)
                sched_req_fail(s, &s->r[i], G4_ERR_UNAVAILABLE, "the scheduler is shutting down");
        return 1;
    }
    return !busy;
}
