/* g4_prefix — the model side of the prefix cache: chunks of a sequence's KV
 * caches copied out after a prompt ubatch, and copied into a new sequence
 * so that it starts at a cached prefix instead of position 0.
 *
 * A chunk is one ubatch of prompt rows, positions [begin, end), as a cold run
 * computes it (the scheduler feeds prompts in the same ubatches from position
 * 0 whatever is cached, so a chunk of one prompt is the chunk of any prompt
 * sharing its rows). It keeps the chunk's rows of every layer (full and
 * sliding-window) and llama.cpp's cache layout before it (the order attention
 * visits cells in). A sequence restored at n_keep takes the full layers' rows
 * [0, n_keep) and the sliding layers' window before n_keep from the chunks,
 * and the layout from the chunk holding n_keep; restored inside that chunk, it
 * lays the chunk's cached rows out again before its next ubatch and counts
 * them in it (the kernel a ubatch takes depends on its rows), so every logit
 * after a restore is bit-identical to a cold prefill of the same prompt:
 * tests/unit/test_prefix.c.
 *
 * Every layer whose cache the range holds is kept (its own and, on later
 * stages of E models, the imported sources of KV-sharing layers). No global
 * state: the store and its budget are the caller's (shardd). */
#ifndef G4_PREFIX_H
#define G4_PREFIX_H

#include <stddef.h>

#include "g4_model.h"

typedef struct g4_kv_chunk g4_kv_chunk_t;

/* The accounting of a chunk (what g4_ctx_chunk_bytes adds up): bytes per
 * position of the layers this range keeps caches of, and the fixed part (the
 * layout and the record). */
typedef struct g4_chunk_cost {
    size_t row, fixed;
} g4_chunk_cost_t;
void g4_ctx_chunk_cost(const g4_ctx_t *c, g4_chunk_cost_t *out);
/* fixed + (end - begin) row */
size_t g4_ctx_chunk_bytes(const g4_ctx_t *c, int begin, int end);

/* Copies positions [begin, end) of sequence seq out: its last ubatch must
 * have been these prompt rows (the layout before them is kept). */
g4_kv_chunk_t *g4_ctx_chunk_save(g4_ctx_t *c, int seq, int begin, int end, g4_err_t *err);
void g4_kv_chunk_free(g4_kv_chunk_t **ch);
/* Its positions and accounted bytes. */
void g4_kv_chunk_info(const g4_kv_chunk_t *ch, int *begin, int *end, size_t *bytes);

/* Sequence seq (new, or dropped to nothing: its n_past must be 0) takes
 * positions [0, n_keep) from chunks[0..n) (contiguous from 0; the last one
 * holds n_keep, begin <= n_keep <= end). vstart: the first position of the ubatch a cold
 * run computes position n_keep in — n_keep itself when a ubatch starts there,
 * else the last chunk's begin. */
int g4_ctx_chunk_restore(g4_ctx_t *c, int seq, g4_kv_chunk_t *const *chunks, int n, int n_keep, int vstart,
                         g4_err_t *err);

#endif
