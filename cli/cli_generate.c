/* cli_generate — see cli_generate.h. */
#include "cli_generate.h"

#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cli_progress.h"
#include "cli_stack.h"
#include "g4_alloc.h"
#include "g4_clock.h"

/* ---- through the scheduler ---------------------------------------------------------- */

static void s_notice(void *user, const char *message)
{
    (void)user;
    cli_progress_clear_any();
    fprintf(stderr, "note: %s\n", message);
}

static void s_resubmit(void *user, const char *ep, size_t n_done)
{
    (void)user;
    cli_progress_clear_any();
    fprintf(stderr, "note: the scheduler at %s is not answering; sending the request again (%zu tokens done)\n", ep,
            n_done);
}

int cli_generate(const char *ep, const G4__V1__GenerateRequest *req, const g4_client_cb_t *cb, uint64_t deadline_ms,
                 G4__V1__Envelope **done_env)
{
    g4_err_t err;
    if (cli_generate_err(ep, req, cb, deadline_ms, done_env, &err)) {
        cli_error("%s", err.msg);
        return 1;
    }
    return 0;
}

int cli_generate_err(const char *ep, const G4__V1__GenerateRequest *req, const g4_client_cb_t *cb,
                     uint64_t deadline_ms, G4__V1__Envelope **done_env, g4_err_t *err)
{
    g4_client_cb_t c = {0};
    if (cb) c = *cb;
    c.on_notice = s_notice, c.on_resubmit = s_resubmit, c.interrupted = cli_stack_interrupted;
    return g4_client_generate(ep, req, deadline_ms, &c, done_env, err) ? (err->code ? err->code : G4_ERR_STATE) : 0;
}

/* ---- in this process ---------------------------------------------------------------- */

int cli_local_prefill(const g4_model_t *m, g4_ctx_t *ctx, g4_sampler_t *smp, const cli_local_req_t *r,
                      const cli_local_cb_t *cb, int seq, float *logits, float *hidden, cli_local_out_t *out,
                      g4_err_t *err)
{
    const g4_hparams_t *hp = g4_model_hparams(m);
    const int n = r->n_ids, H = (int)hp->n_embd;
    int32_t *pos = g4_malloc((size_t)n * sizeof *pos), *seqv = g4_malloc((size_t)n * sizeof *seqv);
    int8_t *want = g4_calloc((size_t)n, 1);
    float *hid = hidden ? g4_malloc((size_t)(n < 512 ? n : 512) * H * sizeof *hid) : NULL;
    int rc = pos && seqv && want && (hid || !hidden) ? G4_OK : g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    for (int i = 0; !rc && i < n; i++) {
        pos[i] = i, seqv[i] = seq;
        if (!(r->flags && (r->flags[i] & G4_ROW_EMBD))) g4_sampler_accept(smp, r->ids[i]);
    }
    if (!rc && n > 0) want[n - 1] = 1; /* logits of the last row only */
    out->t_start = g4_clock_mono_ns();
    /* the scheduler's chunks (g4_prefill_chunk): both compute the same */
    for (int off = 0, e_off = 0; !rc && off < n;) {
        const int nc = g4_prefill_chunk(r->flags, off, n, 512);
        if (cb && cb->on_chunk) cb->on_chunk(cb->user, off, nc);
        g4_batch_t b = {nc, r->ids + off, r->embd ? r->embd + (size_t)e_off * hp->n_embd : NULL, pos + off, seqv + off,
                        want + off, r->flags ? r->flags + off : NULL};
        rc = g4_ctx_forward(ctx, &b, NULL, NULL, hid, logits, err);
        if (!rc && hid && off + nc == n) memcpy(hidden, hid + (size_t)(nc - 1) * H, (size_t)H * sizeof *hid);
        for (int i = off; r->flags && i < off + nc; i++) e_off += (r->flags[i] & G4_ROW_EMBD) != 0;
        off += nc;
    }
    out->t_prefilled = g4_clock_mono_ns();
    g4_free(pos), g4_free(seqv), g4_free(want), g4_free(hid);
    return rc;
}

int cli_generate_local(const g4_model_t *m, g4_ctx_t *ctx, g4_sampler_t *smp, const cli_local_req_t *r,
                       const cli_local_cb_t *cb, cli_local_out_t *out, g4_err_t *err)
{
    if (r->spec) return cli_generate_spec(m, ctx, smp, r, cb, out, err);
    const g4_hparams_t *hp = g4_model_hparams(m);
    const int n_vocab = (int)hp->n_vocab, k = r->logprobs;
    memset(out, 0, sizeof *out);
    out->finish = "length";
    int seq = g4_seq_new(ctx, err);
    if (seq < 0) return err->code;
    float *logits = g4_malloc((size_t)n_vocab * sizeof *logits);
    g4_logprob_t *top = g4_malloc((size_t)(k ? k : 1) * sizeof *top);
    int rc = logits && top ? G4_OK : g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    if (!rc) rc = cli_local_prefill(m, ctx, smp, r, cb, seq, logits, NULL, out, err);
    while (!rc && out->n_out < r->n_predict) {
        if (k) g4_top_logprobs(logits, n_vocab, k, top); /* (sampling changes the row) */
        const int32_t id = g4_sampler_sample(smp, logits);
        if (!out->n_out++) out->t_first = g4_clock_mono_ns();
        g4_sampler_accept(smp, id);
        const int eog = !r->ignore_eos && g4_model_is_eog(m, id);
        if (cb && cb->on_token) cb->on_token(cb->user, id, k ? top : NULL, eog);
        if (eog) {
            out->finish = "stop";
            break;
        }
        if (out->n_out == r->n_predict) break;
        int32_t p1 = g4_seq_n_past(ctx, seq);
        g4_batch_t d = {1, &id, NULL, &p1, &seq, NULL, NULL};
        rc = g4_ctx_forward(ctx, &d, NULL, NULL, NULL, logits, err);
    }
    out->t_end = g4_clock_mono_ns();
    g4_seq_release(ctx, seq);
    g4_free(logits), g4_free(top);
    return rc;
}
