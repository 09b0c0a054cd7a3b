/* shard_spec — speculative decoding on the last stage of the chain.
 *
 * The stage that samples also drafts: after the last id a slot sampled in a
 * batch, its drafter proposes up to draft_max ids (the assistant, reading the
 * target's token embeddings, the hidden state that predicted the id and this
 * stage's KV of the target's last sliding and full layers; or a separate
 * draft model with a sequence per slot, fed the slot's ids). The proposals go
 * back with the result; the scheduler sends them in the slot's next batch as
 * rows [id, d1..dk] (G4_ROW_STEP, drafts G4_ROW_DRAFT), every stage runs them
 * as one pass, and the sampling loop in shard_service.c keeps the rows up to
 * the first draft the slot's sampler does not confirm (greedy: the argmax;
 * with temperature the standard rejection rule, min(1, p/q), against the
 * distributions q kept here). Every stage then forgets the rows past the kept
 * ones (g4_draft_rewind), the last at once, the others when the slot's next
 * rows arrive.
 *
 * Greedy output is the ids plain decoding gives, whatever is drafted; the
 * random stream of a seeded slot is consumed as `g4 run --in-process` with
 * the same drafter consumes it (cli/cli_spec.c), so both give the same ids. */
#ifndef SHARD_SPEC_H
#define SHARD_SPEC_H

#include <stdint.h>

#include "g4_draft.h"
#include "g4_model.h"
#include "g4_sampler.h"

typedef struct shard_spec_params {
    const char *path; /* a gemma4-assistant GGUF, or a draft model with the target's vocabulary */
    int n_max, n_min; /* ids drafted per step at most; fewer than n_min: none */
    float p_min;      /* stop drafting below this probability of the top id (among the 10 most likely) */
} shard_spec_params_t;

typedef struct shard_spec shard_spec_t;

/* The drafter for a stage ending at the target's last layer (target and tctx
 * borrowed), n_slots sequences of n_ctx positions. */
shard_spec_t *shard_spec_new(const shard_spec_params_t *p, const g4_model_t *target, g4_ctx_t *tctx, int n_slots,
                             int kv_type, g4_err_t *err);
void shard_spec_free(shard_spec_t **sp);
const char *shard_spec_kind(const shard_spec_t *sp); /* "assistant" or "model" */
int shard_spec_max(const shard_spec_t *sp);

/* A slot starts afresh (released, restarted at position 0, restored). */
void shard_spec_slot_reset(shard_spec_t *sp, int slot);
/* The slot's sampling parameters (as its target sampler's) and its draft cap
 * (0: the stage's; < 0: none). */
int shard_spec_slot_params(shard_spec_t *sp, int slot, const g4_sampler_params_t *p, int draft_max, g4_err_t *err);
/* Ids at positions (a batch's rows of the slot; soft-token rows: flags with
 * G4_ROW_EMBD, after which a draft model cannot follow the slot). */
void shard_spec_slot_ids(shard_spec_t *sp, int slot, const int32_t *tok, const int32_t *pos, const int8_t *flags,
                         int n);
/* The distribution the drafter drew the draft `tok` at position pos from
 * (temperature), NULL when it did not propose it. */
const float *shard_spec_q(const shard_spec_t *sp, int slot, int pos, int32_t tok);
/* Drafts after id, sampled at position P (the slot's target sequence holds
 * [0, P)): x the target's final hidden row that predicted id (before the
 * output norm). Writes up to cap ids to out; returns their count (0: none),
 * or a negative error. */
int shard_spec_draft(shard_spec_t *sp, int slot, int seq, int32_t id, int P, const float *x, int cap, int32_t *out,
                     g4_err_t *err);

/* counters: ids drafted, accepted, verification passes */
typedef struct shard_spec_stats {
    uint64_t drafted, accepted, passes;
} shard_spec_stats_t;

#endif
