/* g4_draft — what speculative decoding needs from core/model besides the
 * target's forward pass:
 *
 *   the assistant   a `gemma4-assistant` GGUF (Gemma 4's multi-token
 *                   prediction drafter, llama.cpp src/models/gemma4-assistant.cpp):
 *                   a few Q-only layers that read the target's token
 *                   embeddings and attend to the target's KV cache of its
 *                   last sliding and last full layer; each step turns
 *                   (token, the hidden state that predicted it) into the
 *                   logits of the next token and the next hidden state
 *   the rewind      after a verification pass of 1 + k rows (G4_ROW_STEP),
 *                   the target sequence set back to what plain decoding of
 *                   the accepted rows would have left: its length and
 *                   llama.cpp's cache layout (g4_kv_view_step) replayed row
 *                   by row, so later steps' split-KV views stay the same
 *
 * A separate draft model is an ordinary g4_model (same vocabulary); the loop
 * that drafts, verifies and accepts is the caller's (cli/cli_spec.c). */
#ifndef G4_DRAFT_H
#define G4_DRAFT_H

#include <stdint.h>

#include "g4_err.h"
#include "g4_model.h"

/* ---- the assistant (gemma4-assistant) ------------------------------------ */

typedef struct g4_draft g4_draft_t;

/* 1 when the GGUF's architecture is gemma4-assistant. */
int g4_draft_is_assistant(const g4_gguf_t *g);

/* Loads an assistant for target (a whole model, or a range ending at its last
 * layer that holds the caches of the layers the assistant reads; borrowed: it must outlive the
 * assistant). Refuses a file whose backbone width, head sizes or vocabulary do
 * not match the target's, with a message naming what differs. */
g4_draft_t *g4_draft_load(const char *path, const g4_model_t *target, g4_err_t *err);
void g4_draft_destroy(g4_draft_t **d);
int g4_draft_n_vocab(const g4_draft_t *d);

/* The target's hidden state the assistant takes (llama.cpp's h_nextn): the
 * output-normed final hidden state, h = rms(x)·output_norm, x: [H] f32 as
 * g4_ctx_forward's hidden_out gives it. h: [H]. */
void g4_draft_target_h(const g4_model_t *target, const float *x, float *h);

/* One assistant step at position pos (every step of a round uses the
 * position of the first drafted token, as llama.cpp does): token tok (its
 * target embedding), h_in [H] the hidden state that predicted it; attends to
 * seq's target cache, positions < pos only (rows fed after pos are never
 * seen). logits [n_vocab], h_out [H] (may alias h_in). F16 and F32 caches. */
int g4_draft_step(g4_draft_t *d, g4_ctx_t *tctx, int seq, int32_t tok, const float *h_in, int pos, float *logits,
                  float *h_out, g4_err_t *err);

/* A drafter's pick: the most likely id of logits x[n] and, in *p_top, its
 * probability among the 10 most likely (llama.cpp's drafter: top-k 10, then
 * the candidates' softmax; --draft-p-min compares against it). */
int32_t g4_draft_top10(const float *x, int n, float *p_top);

/* ---- the rewind after verification ---------------------------------------- */

/* What a sequence was before a verification pass: its length and llama.cpp's
 * sliding-cache layout. Zero it once; marking again reuses its buffer;
 * g4_draft_unmark frees it. */
typedef struct g4_draft_mark {
    int n_past, lhead;
    int32_t *lcell;
    int n_lcell;
} g4_draft_mark_t;

int g4_draft_mark(g4_ctx_t *c, int seq, g4_draft_mark_t *mk, g4_err_t *err);
/* Keeps the first n_rows rows fed since the mark: the length becomes
 * mk->n_past + n_rows, the layout the mark's, then each kept row placed
 * again one at a time as a decode step places it. The cache rows past the
 * kept ones stay as written; attention never reads them (they lie after every
 * later query until overwritten). */
int g4_draft_rewind(g4_ctx_t *c, int seq, const g4_draft_mark_t *mk, int n_rows, g4_err_t *err);
void g4_draft_unmark(g4_draft_mark_t *mk);

#endif
