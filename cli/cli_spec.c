/* cli_spec — speculative decoding in this process (g4 run --in-process,
 * g4 bench --in-process with --draft-model; see cli_generate.h).
 *
 * One pass, after the last sampled id at position P:
 *   draft   up to k ids: the assistant (each step at position P, reading the
 *           target's cache and the hidden state that predicted the previous
 *           id) or the draft model (fed what it lacks, then one id per step);
 *           stop below --draft-p-min (the top id's probability among the 10
 *           most likely, as llama.cpp's drafter); fewer than --draft-min: none
 *   verify  [id, d1..dk] at P..P+k through the target in ONE forward call,
 *           every row flagged G4_ROW_STEP: each computes what its own decode
 *           step would (split-KV attention, the cache layout of its step)
 *   accept  row i confirms d(i+1) when the sampler agrees (greedy: the same
 *           argmax), the first row that does not gives the next id, a pass
 *           that keeps all k gives the (k+1)-th from the last row
 *   rewind  the target to the kept rows (g4_draft_rewind: length, and the
 *           layout replayed as if the rejected rows had never been fed); the
 *           draft model's sequence to what the kept ids confirm
 * Greedy output is therefore the ids plain decoding gives, for any draft. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_generate.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_draft.h"

typedef struct s_spec {
    const g4_model_t *m;
    g4_ctx_t *ctx;
    g4_sampler_t *smp, *dsmp; /* dsmp: the draft's distribution q (temperature) */
    const cli_local_req_t *r;
    const cli_local_cb_t *cb;
    cli_local_out_t *out;
    const cli_spec_t *sp;
    int seq, dseq, V, H, greedy, d_past;
    int32_t *hist; /* the prompt's ids, then every sampled id: hist[p] sits at position p */
    int n_hist;
    float *logits; /* [(n_max + 1) V] */
    float *hid;    /* [n_max + 1][H] the target's final hidden rows (assistant) */
    float *h;      /* [H] the hidden state that predicted the last id (assistant) */
    float *dlog;   /* [V] a draft step's logits */
    float *q;      /* [n_max][V] the draft's distributions (temperature) */
    float *p;      /* [V] the target's */
    int32_t *drafts;
    g4_logprob_t *top;
    int32_t *dpos, *dseq_rows; /* the draft model's rows (as many as hist holds) */
    int8_t *dwant;
    g4_draft_mark_t mk;        /* the target before a verification pass (its buffer reused) */
} s_spec_t;

/* an id sampled: counted, into the penalties, to the caller; 1: stop here */
static int s_emit(s_spec_t *S, int32_t id)
{
    cli_local_out_t *out = S->out;
    if (!out->n_out++) out->t_first = g4_clock_mono_ns();
    g4_sampler_accept(S->smp, id);
    S->hist[S->n_hist++] = id;
    const int eog = !S->r->ignore_eos && g4_model_is_eog(S->m, id);
    if (S->cb && S->cb->on_token) S->cb->on_token(S->cb->user, id, S->r->logprobs ? S->top : NULL, eog);
    if (eog) out->finish = "stop";
    return eog || out->n_out == S->r->n_predict;
}

/* the top-logprobs of a row before sampling changes it */
static void s_top(s_spec_t *S, const float *row)
{
    if (S->r->logprobs) g4_top_logprobs(row, S->V, S->r->logprobs, S->top);
}


/* picks draft i from S->dlog; -1 below p_min */
static int32_t s_pick(s_spec_t *S, int i)
{
    float p_top;
    const int32_t best = g4_draft_top10(S->dlog, S->V, &p_top);
    if (p_top < S->sp->p_min) return -1;
    if (S->greedy) return best;
    float *q = S->q + (size_t)i * S->V;
    g4_sampler_probs(S->dsmp, S->dlog, q);
    return g4_sampler_draw(S->dsmp, q);
}

/* the draft model's logits after feeding hist[d_past .. upto] */
static int s_dfeed(s_spec_t *S, int upto, g4_err_t *err)
{
    const int n = upto + 1 - S->d_past;
    for (int i = 0; i < n; i++) S->dpos[i] = S->d_past + i, S->dseq_rows[i] = S->dseq, S->dwant[i] = i == n - 1;
    g4_batch_t b = {n, S->hist + S->d_past, NULL, S->dpos, S->dseq_rows, S->dwant, NULL};
    const int rc = g4_ctx_forward(S->sp->draft_ctx, &b, NULL, NULL, NULL, S->dlog, err);
    if (!rc) S->d_past = upto + 1;
    return rc;
}

/* up to kcap drafts after id (at position P) into S->drafts; their count, or
 * a negative error */
static int s_draft(s_spec_t *S, int32_t id, int P, int kcap, g4_err_t *err)
{
    int k = 0, rc = G4_OK;
    if (S->sp->assistant) {
        float *h = S->hid; /* scratch: the verification overwrites it */
        memcpy(h, S->h, (size_t)S->H * sizeof *h);
        for (int32_t tok = id; k < kcap; k++) {
            if ((rc = g4_draft_step(S->sp->assistant, S->ctx, S->seq, tok, h, P, S->dlog, h, err))) return rc;
            if ((tok = s_pick(S, k)) < 0) break;
            S->drafts[k] = tok;
        }
        return k;
    }
    if ((rc = s_dfeed(S, P, err))) return rc;
    for (; k < kcap; k++) {
        const int32_t tok = s_pick(S, k);
        if (tok < 0) break;
        S->drafts[k] = tok;
        if (k + 1 == kcap) {
            k++;
            break;
        }
        S->hist[P + 1 + k] = tok; /* fed past the confirmed ids; overwritten as ids are sampled */
        if ((rc = s_dfeed(S, P + 1 + k, err))) return rc;
    }
    return k;
}

/* the rows [id, drafts[0, k)) at P.. through the target; the kept ones' count */
static int s_verify(s_spec_t *S, int32_t id, int P, int k, int *stop, g4_err_t *err)
{
    int32_t tok[k + 1], pos[k + 1], sq[k + 1];
    int8_t fl[k + 1];
    for (int i = 0; i <= k; i++) {
        tok[i] = i ? S->drafts[i - 1] : id, pos[i] = P + i, sq[i] = S->seq;
        fl[i] = k ? G4_ROW_STEP : 0; /* one row alone is a decode step anyway */
    }
    int rc = g4_draft_mark(S->ctx, S->seq, &S->mk, err);
    g4_batch_t b = {k + 1, tok, NULL, pos, sq, NULL, fl};
    if (!rc) rc = g4_ctx_forward(S->ctx, &b, NULL, NULL, S->sp->assistant ? S->hid : NULL, S->logits, err);
    int j = 0; /* drafts accepted */
    for (int i = 0; !rc && i <= k; i++) {
        float *row = S->logits + (size_t)i * S->V;
        s_top(S, row);
        if (i == k) { /* every draft kept (or none made): the next id from the last row */
            *stop = s_emit(S, g4_sampler_sample(S->smp, row));
            break;
        }
        const int32_t d = S->drafts[i];
        int32_t t;
        if (S->greedy) {
            t = g4_sampler_sample(S->smp, row);
        } else { /* accept d with min(1, p/q), else draw from norm(max(0, p - q)) */
            const float *q = S->q + (size_t)i * S->V;
            g4_sampler_probs(S->smp, row, S->p);
            if (g4_sampler_uniform(S->smp) * q[d] < S->p[d]) {
                t = d;
            } else {
                for (int v = 0; v < S->V; v++) S->p[v] = S->p[v] > q[v] ? S->p[v] - q[v] : 0;
                t = g4_sampler_draw(S->smp, S->p);
            }
        }
        *stop = s_emit(S, t);
        if (t != d) break;
        j++;
        if (*stop) break;
    }
    if (!rc && k) {
        rc = g4_draft_rewind(S->ctx, S->seq, &S->mk, j + 1, err);
        S->out->n_verify++, S->out->n_drafted += k, S->out->n_accepted += j;
    }
    return rc ? rc : j + 1;
}

int cli_generate_spec(const g4_model_t *m, g4_ctx_t *ctx, g4_sampler_t *smp, const cli_local_req_t *r,
                      const cli_local_cb_t *cb, cli_local_out_t *out, g4_err_t *err)
{
    const cli_spec_t *sp = r->spec;
    const g4_hparams_t *hp = g4_model_hparams(m);
    s_spec_t S = {.m = m, .ctx = ctx, .smp = smp, .r = r, .cb = cb, .out = out, .sp = sp, .dseq = -1,
                  .V = (int)hp->n_vocab, .H = (int)hp->n_embd};
    const int n_max = sp->n_max > 0 ? sp->n_max : 0;
    memset(out, 0, sizeof *out);
    out->finish = "length";
    if (!sp->assistant && (!sp->draft || !sp->draft_ctx))
        return g4_err_set(err, G4_ERR_STATE, "speculative decoding without a draft");
    if (sp->draft && r->flags) return g4_err_set(err, G4_ERR_STATE, "a draft model does not take media prompts");
    const g4_sampler_params_t *params = g4_sampler_params(smp);
    S.greedy = params->temp <= 0;
    if (!S.greedy) {
        g4_sampler_params_t dp = *params; /* the draft's own: no penalties, its own stream */
        dp.repeat_penalty = 1, dp.presence_penalty = dp.frequency_penalty = 0, dp.seed ^= 0x5bd1e995u;
        if (!(S.dsmp = g4_sampler_new(&dp, S.V, err))) return err->code;
    }
    S.seq = g4_seq_new(ctx, err);
    if (S.seq < 0) {
        g4_sampler_destroy(&S.dsmp);
        return err->code;
    }
    const size_t V = (size_t)S.V, H = (size_t)S.H;
    const size_t n_rows = (size_t)r->n_ids + (size_t)r->n_predict + (size_t)n_max + 2;
    S.hist = g4_malloc(n_rows * sizeof *S.hist);
    S.dpos = g4_malloc(n_rows * sizeof *S.dpos), S.dseq_rows = g4_malloc(n_rows * sizeof *S.dseq_rows);
    S.dwant = g4_malloc(n_rows);
    S.logits = g4_malloc((size_t)(n_max + 1) * V * sizeof *S.logits);
    S.hid = g4_malloc((size_t)(n_max + 1) * H * sizeof *S.hid);
    S.h = g4_malloc(H * sizeof *S.h);
    S.dlog = g4_malloc(V * sizeof *S.dlog);
    S.q = S.greedy ? NULL : g4_malloc((size_t)(n_max ? n_max : 1) * V * sizeof *S.q);
    S.p = g4_malloc(V * sizeof *S.p);
    S.drafts = g4_malloc((size_t)(n_max + 1) * sizeof *S.drafts);
    S.top = g4_malloc((size_t)(r->logprobs ? r->logprobs : 1) * sizeof *S.top);
    int rc = S.hist && S.logits && S.hid && S.h && S.dlog && (S.q || S.greedy) && S.p && S.drafts && S.top && S.dpos &&
                     S.dseq_rows && S.dwant
                 ? G4_OK
                 : g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    if (!rc) rc = cli_local_prefill(m, ctx, smp, r, cb, S.seq, S.logits, sp->assistant ? S.hid : NULL, out, err);
    if (!rc) {
        memcpy(S.hist, r->ids, (size_t)r->n_ids * sizeof *S.hist);
        S.n_hist = r->n_ids;
        if (sp->assistant) g4_draft_target_h(m, S.hid, S.h);
    }
    if (!rc && sp->draft) { /* the draft model takes the prompt too (its time counts as prefill) */
        S.dseq = g4_seq_new(sp->draft_ctx, err);
        rc = S.dseq < 0 ? err->code : r->n_ids > 1 ? s_dfeed(&S, r->n_ids - 2, err) : G4_OK;
        out->t_prefilled = g4_clock_mono_ns();
    }
    int stop = 0;
    if (!rc && r->n_predict > 0) {
        s_top(&S, S.logits);
        stop = s_emit(&S, g4_sampler_sample(smp, S.logits));
    }
    const int n_ctx = g4_ctx_n_ctx(ctx);
    while (!rc && !stop) {
        const int32_t id = S.hist[S.n_hist - 1];
        const int P = g4_seq_n_past(ctx, S.seq);
        int kcap = n_max, k = 0;
        if (r->n_predict - out->n_out - 1 < kcap) kcap = r->n_predict - out->n_out - 1;
        if (n_ctx - P - 1 < kcap) kcap = n_ctx - P - 1;
        if (kcap > 0 && (k = s_draft(&S, id, P, kcap, err)) < 0) {
            rc = k;
            break;
        }
        if (k < sp->n_min) k = 0;
        const int kept = s_verify(&S, id, P, k, &stop, err);
        if (kept < 0) {
            rc = kept;
            break;
        }
        if (sp->assistant) g4_draft_target_h(m, S.hid + (size_t)(kept - 1) * H, S.h);
        if (sp->draft && S.d_past > P + kept) { /* drafts past the kept rows leave the draft model */
            if ((rc = g4_seq_truncate(sp->draft_ctx, S.dseq, P + kept, err))) break;
            S.d_past = P + kept;
        }
    }
    out->t_end = g4_clock_mono_ns();
    g4_seq_release(ctx, S.seq);
    if (S.dseq >= 0) g4_seq_release(sp->draft_ctx, S.dseq);
    g4_sampler_destroy(&S.dsmp);
    g4_free(S.dpos), g4_free(S.dseq_rows), g4_free(S.dwant);
    g4_draft_unmark(&S.mk);
    g4_free(S.hist), g4_free(S.logits), g4_free(S.hid), g4_free(S.h), g4_free(S.dlog), g4_free(S.q), g4_free(S.p);
    g4_free(S.drafts), g4_free(S.top);
    return rc;
}

/* ---- loading ------------------------------------------------------------------------- */

int cli_spec_load(const char *path, g4_model_t *m, int n_ctx, int kv_type, cli_spec_t *sp)
{
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    if (!g) {
        cli_error("%s", err.msg);
        return 1;
    }
    const int assistant = g4_draft_is_assistant(g);
    g4_gguf_destroy(&g);
    if (assistant) {
        if (kv_type == G4_KV_Q8_0) {
            cli_error("the assistant reads the target's KV cache as F16 or F32, not q8_0 (--kv-type)");
            return 1;
        }
        if (!(sp->assistant = g4_draft_load(path, m, &err))) {
            cli_error("%s", err.msg);
            return 1;
        }
        return 0;
    }
    if (!(sp->draft = g4_model_load(path, 0, -1, &err))) {
        cli_error("%s", err.msg);
        return 1;
    }
    if (g4_model_hparams(sp->draft)->n_vocab != g4_model_hparams(m)->n_vocab) {
        cli_error("%s: a vocabulary of %u tokens, the model's has %u", path, g4_model_hparams(sp->draft)->n_vocab,
                  g4_model_hparams(m)->n_vocab);
        cli_spec_free(sp);
        return 1;
    }
    g4_model_warm(sp->draft, G4_WEIGHTS_MAP);
    g4_ctx_params_t cp = {.n_ctx = n_ctx, .n_ubatch = 512, .n_seq_max = 1, .kv_type = kv_type};
    if (!(sp->draft_ctx = g4_ctx_new(sp->draft, &cp, &err))) {
        cli_error("%s", err.msg);
        cli_spec_free(sp);
        return 1;
    }
    return 0;
}

void cli_spec_free(cli_spec_t *sp)
{
    g4_draft_destroy(&sp->assistant);
    g4_ctx_destroy(&sp->draft_ctx);
    g4_model_destroy(&sp->draft);
}
