/* sched_text — the way out of schedulerd: generated ids through tokenizerd's
 * incremental detokenizer (one call per request out at a time; its state
 * travels with each call, so any tokenizer can take the next one), the text
 * through the stop-string filter, token events to the client; and the
 * Progress events of a prefilling request.
 *
 *   sched_text_stop_hold   pure: how much may go out, did a stop string match
 *   sched_text_send_detok  ids not yet detokenized → DetokenizeRequest
 *   sched_text_on_detok    the reply → TokenEvents; done at a stop or the end
 *   sched_text_progress    prompt rows computed, from the stages' heartbeats */
#include "sched_text.h"

#include <string.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "sched_internal.h"

size_t sched_text_stop_hold(const char *text, size_t len, char *const *stop, const size_t *stop_len, int n_stop,
                            int last, int *matched)
{
    size_t cut = len, keep = 0;
    *matched = 0;
    for (int i = 0; i < n_stop; i++) {
        if (!stop_len[i]) continue;
        const char *hit = memmem(text, len, stop[i], stop_len[i]);
        if (hit && (size_t)(hit - text) < cut) cut = (size_t)(hit - text), *matched = 1;
    }
    if (*matched || last) return cut;
    /* hold back the longest tail that could still become a stop string */
    for (int i = 0; i < n_stop; i++)
        for (size_t k = stop_len[i] ? stop_len[i] - 1 : 0; k > keep; k--)
            if (k <= len && !memcmp(text + len - k, stop[i], k)) {
                keep = k;
                break;
            }
    return len - keep;
}

static void s_append(char **buf, size_t *len, const void *p, size_t n)
{
    char *nb = g4_realloc(*buf, *len + n + 1);
    if (!nb) return;
    if (n) memcpy(nb + *len, p, n);
    *len += n;
    nb[*len] = 0;
    *buf = nb;
}

/* Text of one token through the stop-string filter: returns the part that
 * may go out now; sets q->finish = "stop" when a stop string is complete. */
static void s_filter_stop(req_t *q, const uint8_t *chunk, size_t n, int last, char **emit, size_t *emit_len)
{
    s_append(&q->held, &q->held_len, chunk, n);
    *emit = NULL, *emit_len = 0;
    if (!q->held) return;
    int matched;
    const size_t cut = sched_text_stop_hold(q->held, q->held_len, q->stop, q->stop_len, q->n_stop, last, &matched);
    if (matched) q->finish = "stop", q->stop_hit = 1;
    *emit = q->held, *emit_len = cut;
}

void sched_text_send_detok(sched_t *s, req_t *q)
{
    const int n_gen = q->n_tok - q->n_prompt;
    if (q->detok_tok >= 0 || q->n_detok_sent >= n_gen) return;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__DetokenizeRequest dr = G4__V1__DETOKENIZE_REQUEST__INIT;
    dr.ids = q->tok + q->n_prompt + q->n_detok_sent;
    dr.n_ids = (size_t)(n_gen - q->n_detok_sent);
    dr.state.data = q->dstate, dr.state.len = q->dstate_len;
    dr.finish = q->finish != NULL; /* the last ids: flush held bytes with them */
    env.body_case = G4__V1__ENVELOPE__BODY_DETOKENIZE;
    env.detokenize = &dr;
    if (sched_req_call(s, q, CALL_DETOK, &env)) {
        sched_req_call_lost(q, CALL_DETOK);
        return;
    }
    q->n_detok_sent = n_gen;
}

void sched_text_on_detok(sched_t *s, req_t *q, G4__V1__DetokenizeReply *r)
{
    const int n_gen = q->n_tok - q->n_prompt;
    const int first = q->n_detok_done;
    const size_t n_ids = (size_t)(q->n_detok_sent - first);
    if (r->state.len <= sizeof q->dstate) {
        if (r->state.len) memcpy(q->dstate, r->state.data, r->state.len);
        q->dstate_len = r->state.len;
    }
    for (size_t i = 0; i < n_ids && i < r->n_chunks; i++) {
        const int gi = first + (int)i;
        const int is_last = q->finish && gi == n_gen - 1;
        /* with finish, the reply carries one more chunk: what was held */
        char *flushed = NULL;
        size_t fl = 0;
        s_append(&flushed, &fl, r->chunks[i].data, r->chunks[i].len);
        if (is_last && r->n_chunks > n_ids) s_append(&flushed, &fl, r->chunks[n_ids].data, r->chunks[n_ids].len);
        char *emit;
        size_t elen;
        s_filter_stop(q, (const uint8_t *)(flushed ? flushed : ""), fl, is_last, &emit, &elen);
        g4_free(flushed);
        G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
        G4__V1__TokenEvent te = G4__V1__TOKEN_EVENT__INIT;
        G4__V1__TopLogprob *tp[64];
        te.id = q->tok[q->n_prompt + gi];
        te.text.data = (uint8_t *)emit, te.text.len = elen;
        if (q->sp.logprobs > 0 && q->tops) {
            for (int k = 0; k < q->sp.logprobs && k < 64; k++) tp[k] = &q->tops[(size_t)gi * (size_t)q->sp.logprobs + (size_t)k];
            te.top = tp, te.n_top = (size_t)(q->sp.logprobs < 64 ? q->sp.logprobs : 64);
        }
        ev.event_case = G4__V1__GENERATE_EVENT__EVENT_TOKEN;
        ev.token = &te;
        s_append(&q->out, &q->out_len, emit, elen);
        const int send_rc = gi < q->n_quiet ? 0 : sched_req_event(s, q, &ev);
        /* drop what went out from the held buffer (after the event: its text points there) */
        if (q->held) {
            memmove(q->held, q->held + elen, q->held_len - elen);
            q->held_len -= elen;
        }
        if (send_rc && q->client_len) {
            g4_log_info("sched", "client of request %llu is gone: cancelled", (unsigned long long)q->client_req_id);
            sched_req_client_gone(s, q);
            return;
        }
        q->n_detok_done = gi + 1;
        if (q->stop_hit) {
            /* a stop string matched: it and everything after it are dropped */
            q->held_len = 0;
            q->n_tok = q->n_prompt + gi + 1;
            sched_req_done(s, q);
            return;
        }
    }
    if (q->finish && q->n_detok_done >= q->n_tok - q->n_prompt) {
        sched_req_done(s, q);
        return;
    }
    sched_text_send_detok(s, q);
}

/* How far batch b is through the layers, from what the stages of the chain
 * said they compute (monotonic: a batch between stages keeps its share). */
static double s_batch_frac(sched_t *s, batch_t *b)
{
    for (int c = 0; c < s->n_chain && s->n_layer > 0; c++) {
        const drec_t *d = &s->d[s->chain[c]];
        if (d->work.batch_id != b->id) continue;
        double in = d->work.steps_total ? (double)d->work.steps_done / d->work.steps_total : 0;
        double f = (d->layer_begin + in * (d->layer_end - d->layer_begin)) / s->n_layer;
        if (f > b->frac) b->frac = f;
    }
    return b->frac;
}

void sched_text_progress(sched_t *s, req_t *q, uint64_t now)
{
    double done = q->n_fed;
    for (int i = 0; i < s->n_b; i++) {
        if (s->b[i].id != q->in_flight) continue;
        for (int k = 0; k < s->b[i].n_req; k++)
            if (&s->r[s->b[i].reqs[k]] == q) done += s->b[i].rows_fed[k] * s_batch_frac(s, &s->b[i]);
    }
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Progress pr = G4__V1__PROGRESS__INIT;
    pr.prompt_done = (int32_t)done;
    pr.prompt_total = q->n_prompt;
    pr.elapsed_ms = q->t_start && now > q->t_start ? (double)(now - q->t_start) : 0;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_PROGRESS;
    ev.progress = &pr;
    if (sched_req_event(s, q, &ev) && q->client_len) sched_req_client_gone(s, q);
}
