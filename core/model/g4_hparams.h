/* g4_hparams — a Gemma 4 model's hyper-parameters, read from the GGUF's
 * `gemma4.*` keys (docs: gemma4-model.md §1). Reads keys only: no tensor data
 * is touched, so `g4 plan` and the stack's layer split can size a model
 * without loading it. Used by g4_model (load) and the command line. */
#ifndef G4_HPARAMS_H
#define G4_HPARAMS_H

#include <stdint.h>

#include "g4_err.h"
#include "g4_gguf.h"

#define G4_MAX_LAYERS 512

typedef struct g4_hparams {
    uint32_t n_layer, n_embd, n_head, n_vocab, n_ctx_train;
    uint32_t n_head_kv[G4_MAX_LAYERS];
    uint32_t n_ff[G4_MAX_LAYERS];
    uint8_t is_swa[G4_MAX_LAYERS];
    uint32_t hd_full, hd_swa;         /* head dims of full / sliding layers */
    uint32_t n_rot_full, n_rot_swa;
    float rope_base_full, rope_base_swa;
    float eps, softcap;
    uint32_t n_swa;                   /* sliding window (tokens, incl. self) */
    uint32_t n_kv_shared, n_layer_kv; /* layers >= n_layer_kv reuse caches  */
    uint32_t ple_dim;                 /* per-layer input width D (0: none)  */
    uint32_t n_expert, n_expert_used, n_ff_exp;
    uint32_t bos_id, eos_id;
    uint32_t n_eog;
    int32_t eog_ids[8];               /* end-of-generation ids                */
} g4_hparams_t;

/* Fills *hp from the keys of a gemma4 GGUF (borrowed). Refuses another
 * architecture and any missing or inconsistent key with a message naming it.
 * n_vocab and the end-of-generation ids come from tensors and the vocabulary:
 * g4_model_load fills them; here they stay 0. */
int g4_hparams_read(const g4_gguf_t *g, g4_hparams_t *hp, g4_err_t *err);

/* Layer whose KV cache layer l attends to: l itself, or for the last
 * n_kv_shared layers the last own-KV layer of the same kind (sliding / full). */
int g4_hparams_kv_source(const g4_hparams_t *hp, int l);

/* What a model's pieces take, in bytes, from the GGUF's tensor directory and
 * *hp (no tensor data is read): the input of placement (g4_plan). KV caches
 * are F16 for n_slots sequences of n_ctx positions; sliding layers hold
 * n_swa + n_ubatch cells; a layer that reuses another's cache has none. */
typedef struct g4_footprint {
    uint64_t layer_weight_bytes[G4_MAX_LAYERS]; /* tensors blk.L.*             */
    uint64_t layer_kv_bytes[G4_MAX_LAYERS];
    int kv_source[G4_MAX_LAYERS];               /* g4_hparams_kv_source        */
    uint64_t embd_bytes;                        /* token / per-layer embeddings, rope_freqs */
    uint64_t head_bytes;                        /* output norm + LM head       */
    uint64_t tied_bytes;                        /* of head: the token embedding it reuses */
    uint64_t stage_bytes;                       /* what every stage holds besides: its
                                                 * compute scratch for n_ubatch rows
                                                 * and the GGUF's metadata (vocabulary) */
} g4_footprint_t;

void g4_hparams_footprint(const g4_gguf_t *g, const g4_hparams_t *hp, int n_ctx, int n_slots, int n_ubatch,
                          g4_footprint_t *out);

#endif
