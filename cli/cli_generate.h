/* cli_generate — the two ways the g4 command generates:
 *   cli_generate        one request through a scheduler (client/g4_client),
 *                       with the CLI's notes and errors on stderr and SIGINT
 *                       cancelling it (g4 run, g4 chat, g4 bench)
 *   cli_generate_local  the decoder in this process: chunked prefill, then
 *                       one token at a time (g4 run --in-process, g4 bench
 *                       --in-process) */
#ifndef CLI_GENERATE_H
#define CLI_GENERATE_H

#include <stdint.h>

#include "g4_client.h"
#include "g4_model.h"
#include "g4_sampler.h"

/* Streams req through the scheduler at ep (deadline_ms from now, 0: none).
 * cb's on_notice, on_resubmit and interrupted are the CLI's own (notes on
 * stderr, cli_stack_interrupted). 0 with *done_env (caller frees it with
 * g4__v1__envelope__free_unpacked), or 1 with the error printed. */
int cli_generate(const char *ep, const G4__V1__GenerateRequest *req, const g4_client_cb_t *cb, uint64_t deadline_ms,
                 G4__V1__Envelope **done_env);
/* The same with the error left in *err (its code says what to do: g4 chat
 * drops old turns on G4_ERR_RANGE); 0 or the error's code. */
int cli_generate_err(const char *ep, const G4__V1__GenerateRequest *req, const g4_client_cb_t *cb,
                     uint64_t deadline_ms, G4__V1__Envelope **done_env, g4_err_t *err);

typedef struct cli_local_req {
    const int32_t *ids;  /* prompt rows (a soft-token row's id is a placeholder) */
    int n_ids;
    const int8_t *flags; /* G4_ROW_* per row (NULL: all text) */
    const float *embd;   /* soft-token rows in prompt order (NULL: none) */
    int n_predict, ignore_eos;
    int logprobs;        /* top-k log-probabilities per generated token (0: none) */
    const struct cli_spec *spec; /* speculative decoding (cli_spec.c); NULL: one token per step */
} cli_local_req_t;

typedef struct cli_local_cb {
    /* before each prefill chunk of rows [off, off + n) */
    void (*on_chunk)(void *user, int off, int n);
    /* each sampled id; top: its logprobs (NULL with logprobs 0); eog: the
     * end-of-generation id that ends the answer (not with ignore_eos) */
    void (*on_token)(void *user, int32_t id, const g4_logprob_t *top, int eog);
    void *user;
} cli_local_cb_t;

typedef struct cli_local_out {
    int n_out;            /* ids sampled */
    const char *finish;   /* "stop" (an end-of-generation id) or "length" */
    /* g4_clock_mono_ns: before the prefill, after it, after the first id, at the end */
    uint64_t t_start, t_prefilled, t_first, t_end;
    /* speculative decoding: tokens drafted and sent for verification, those
     * accepted, verification passes (plain steps not counted) */
    int n_drafted, n_accepted, n_verify;
} cli_local_out_t;

/* Prefills the prompt on a new sequence of ctx in the scheduler's chunks
 * (logits of the last row only; the text rows go into smp's penalties), then
 * samples n_predict ids, each fed back but the last. The sequence is released
 * at the end. 0, or an error with err. */
int cli_generate_local(const g4_model_t *m, g4_ctx_t *ctx, g4_sampler_t *smp, const cli_local_req_t *r,
                       const cli_local_cb_t *cb, cli_local_out_t *out, g4_err_t *err);

/* The prefill of cli_generate_local on sequence seq: the prompt's text rows
 * into smp's penalties, the rows in the scheduler's chunks, the last row's
 * logits [n_vocab] and (hidden != NULL) its final hidden state [H]; sets
 * out->t_start and t_prefilled. 0, or an error with err. */
int cli_local_prefill(const g4_model_t *m, g4_ctx_t *ctx, g4_sampler_t *smp, const cli_local_req_t *r,
                      const cli_local_cb_t *cb, int seq, float *logits, float *hidden, cli_local_out_t *out,
                      g4_err_t *err);

/* ---- speculative decoding (cli_spec.c) ---------------------------------------------- */

typedef struct g4_draft g4_draft_t;

/* llama.cpp's defaults: --draft-max 3, --draft-min 0, --draft-p-min 0 */
typedef struct cli_spec {
    g4_draft_t *assistant; /* a gemma4-assistant for the target, or            */
    g4_model_t *draft;     /* a separate Gemma 4 draft model (same vocabulary) */
    g4_ctx_t *draft_ctx;   /* its context (one sequence)                       */
    int n_max, n_min;      /* tokens drafted per pass at most; fewer: a plain step */
    float p_min;           /* drafting stops below this probability (top 10)  */
    int max_given;         /* --draft-max was given: a request to a stack asks for it (0: none) */
} cli_spec_t;

/* cli_generate_local with speculation (r->spec): each pass drafts up to n_max
 * ids after the last sampled one, runs the 1 + k rows through the target as
 * one forward call (each row as the decode step it stands for:
 * G4_ROW_STEP), keeps the longest prefix the sampler confirms (greedy: the
 * ids plain decoding samples; temperature: accepted with min(1, p/q), else
 * one id drawn from norm(max(0, p - q)), so the distribution is unchanged),
 * and rewinds the target to it (g4_draft_rewind) and the draft model to it. */
int cli_generate_spec(const g4_model_t *m, g4_ctx_t *ctx, g4_sampler_t *smp, const cli_local_req_t *r,
                      const cli_local_cb_t *cb, cli_local_out_t *out, g4_err_t *err);

/* --draft-model: loads PATH as the assistant of m (gemma4-assistant) or a
 * separate draft model with a context of n_ctx positions, into *sp (n_max,
 * n_min, p_min kept). 0, or 1 with the error printed. */
int cli_spec_load(const char *path, g4_model_t *m, int n_ctx, int kv_type, cli_spec_t *sp);
void cli_spec_free(cli_spec_t *sp);

#endif
