/* g4_model — the Gemma 4 text decoder on CPU (31B dense, 26B-A4B MoE, E2B/E4B).
 *
 * Computation (docs: gemma4-model.md §2), per ubatch of T rows (token, pos, seq):
 *   x = embed(tokens)·sqrt(H)            (soft tokens: as given, no scale)
 *   ple = per-layer inputs (E models)
 *   for each layer l in [begin, end):
 *     a = rms(x)·attn_norm;  q = rope(rms_h(a·Wq)·q_norm)
 *     own KV:  k = rope(rms_h(a·Wk)·k_norm), v = rms_h(Wv ? a·Wv : a·Wk)  -> cache (F16)
 *     o = attention(q, cache of l or its source layer, causal / sliding mask)
 *     x += rms(o·Wo)·post_attn_norm
 *     x += FFN (GeGLU; MoE: dense branch + routed experts)
 *     x += rms(Wproj·(gelu(Winp_gate·x)·ple_l))·post_norm     (E models)
 *     x *= layer_output_scale
 *   logits = softcap(rms(x)·output_norm · token_embdᵀ)
 * Rounding follows llama.cpp's CPU backend (§8): F16 KV cache, F16 GELU table,
 * activation quantization per weight type, the flash-attention kernels
 * (single-query with F16 accumulator below 64 rows, f32 above).
 *
 * Weights are views into the mmap'd GGUF (norm vectors are converted to f32
 * at load, a few KB). A model may hold only layers [begin, end): the first
 * range embeds, the last owns the output head; ranges pass hidden states.
 * Not here: tokenizer (tokenizerd), sampling (g4_sampler), sockets, the
 * prompt's media splicing and chunking (core/batch/g4_media.h).
 * Files: g4_hparams (keys), g4_model (weights), g4_warm (warm copy), g4_kv
 * (sequences, caches), g4_attn (attention kernels + _ref), g4_forward (the
 * pass); their shared structs in g4_model_internal.h. */
#ifndef G4_MODEL_H
#define G4_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "g4_err.h"
#include "g4_gguf.h"
#include "g4_hparams.h"
#include "g4_media.h" /* row flags G4_ROW_*; media helpers (their home: core/batch) */

typedef struct g4_model g4_model_t;

/* Loads layers [begin, end) of a gemma4 GGUF (end = -1: to the last layer).
 * Refuses other architectures and any missing/inconsistent key or tensor
 * with a message naming it. Caller destroys. */
g4_model_t *g4_model_load(const char *path, int layer_begin, int layer_end, g4_err_t *err);
/* Same on an already-open file (borrowed: must outlive the model). */
g4_model_t *g4_model_load_gguf(g4_gguf_t *gguf, int layer_begin, int layer_end, g4_err_t *err);
void g4_model_destroy(g4_model_t **m);
/* Where the weights are read from while computing (g4_model_warm). */
typedef enum {
    G4_WEIGHTS_MAP,  /* the file's mapping, its pages faulted in up front  */
    G4_WEIGHTS_COPY, /* anonymous huge-page memory, the file pages dropped */
} g4_weights_mode_t;
/* Starts a background thread that readies the weights (once per model) and
 * returns the mode it runs in. MAP faults the mapped pages in. COPY copies
 * each weight matrix into anonymous memory with transparent huge pages (on
 * the NUMA node the process is bound to), and g4_ctx_forward switches each
 * matrix to its copy between passes; it falls back to MAP when the copy would
 * not leave an eighth of the available memory free. The model computes from
 * the start either way: the results are the same bits. */
g4_weights_mode_t g4_model_warm(g4_model_t *m, g4_weights_mode_t mode);
/* 1 when the thread has finished (wait: blocks until it has, then switches
 * to the copies); *ms (may be NULL): its time, 0 while it runs or when it
 * never started. */
int g4_model_warmed(g4_model_t *m, int wait, double *ms);
/* The anonymous memory of the copies (COPY mode): 1 and *p, *n, else 0. */
int g4_model_weights_copy(const g4_model_t *m, const void **p, size_t *n);
/* The i-th range of weights the model multiplies with (each matrix of its
 * layers, the LM head on the last stage): 1 and *p, *n, or 0 past the end.
 * shardd binds them to its NUMA node. */
int g4_model_weights(const g4_model_t *m, int i, const void **p, size_t *n);
/* How many of those matrices the copy holds packed (core/kernels/g4_pack.h)
 * and in use, after g4_model_warmed. */
int g4_model_weights_packed(const g4_model_t *m);
const g4_hparams_t *g4_model_hparams(const g4_model_t *m);
g4_gguf_t *g4_model_gguf(const g4_model_t *m);
void g4_model_range(const g4_model_t *m, int *begin, int *end);
/* Layer of the src KV cache for layer l (l itself when it computes its own). */
int g4_model_kv_source(const g4_model_t *m, int l);
int g4_model_is_eog(const g4_model_t *m, int32_t id);
/* Layer l (outside the range) is the KV source of a layer in the range: its
 * K/V rows come from the stage that runs it. */
int g4_model_kv_imported(const g4_model_t *m, int l);
/* Layer l (in the range) is the KV source of a layer after the range. */
int g4_model_kv_exported(const g4_model_t *m, int l);

/* ---- inference context: KV caches of sequences, scratch ------------------ */

typedef struct g4_ctx g4_ctx_t;

/* KV cache element types (llama.cpp's -ctk/-ctv): F16 (its default), F32,
 * Q8_0 (blocks of 32 with an F16 scale; as llama.cpp, K, Q and V rotated by
 * Walsh-Hadamard transforms first, and the output rotated back). */
enum { G4_KV_F16 = 0, G4_KV_F32 = 1, G4_KV_Q8_0 = 2 };
/* "f16", "f32", "q8_0" (case-insensitive) -> G4_KV_*, or -1 */
int g4_kv_type_from_name(const char *name);
const char *g4_kv_type_name(int kv_type);

typedef struct g4_ctx_params {
    int n_ctx;      /* max positions per sequence (full layers); 0: min(train, 4096) */
    int n_ubatch;   /* max rows per forward call (default 512)                     */
    int n_seq_max;  /* max live sequences (default 8)                              */
    int kv_type;    /* G4_KV_*: the cache's element type (default F16, as llama.cpp) */
    int attn_splits; /* KV chunks of a one-row decode over >= 512 cells: llama.cpp
                      * uses one per thread, so its numbers depend on its thread
                      * count; 0: $G4_ATTN_SPLITS, else g4_cpu_math_cores() (the
                      * thread count llama.cpp starts with on this machine)   */
    int gpu;        /* 0: compute on the CPU; N + 1: on CUDA device N (core/cuda):
                     * the range's weights are uploaded once, the caches live in
                     * device memory, an F16 or F32 cache (g4_forward_cuda.c) */
} g4_ctx_params_t;

/* "cpu" -> 0, "cuda:N" (or "cuda": N = 0) -> N + 1 (g4_ctx_params.gpu), -1
 * when neither; g4_device_name writes the name back ("cpu", "cuda:0"). */
int g4_device_from_name(const char *name);
const char *g4_device_name(int gpu, char *buf, size_t n);

g4_ctx_t *g4_ctx_new(g4_model_t *m, const g4_ctx_params_t *p, g4_err_t *err);
void g4_ctx_destroy(g4_ctx_t **c);

/* Sequences: returns a new id >= 0, or a negative G4_ERR_*. */
int g4_seq_new(g4_ctx_t *c, g4_err_t *err);
int g4_seq_fork(g4_ctx_t *c, int src, g4_err_t *err);
/* Keeps positions [0, n_keep); the next token goes at n_keep. */
int g4_seq_truncate(g4_ctx_t *c, int seq, int n_keep, g4_err_t *err);
void g4_seq_release(g4_ctx_t *c, int seq);
int g4_seq_n_past(const g4_ctx_t *c, int seq); /* next position */
int g4_ctx_n_ctx(const g4_ctx_t *c);            /* positions a sequence can hold */

/* One forward call over n rows. Each row: token (or embd row when embd !=
 * NULL), position, sequence. Positions of a sequence must continue it.
 *  hidden_in  [n][H] f32: input when the model does not start at layer 0
 *  ple_io     [n][n_layer*D] f32 (E models): output of the first range,
 *             input of later ones (may be NULL for a whole model)
 *  hidden_out [n][H] f32: output when the model does not end at the last layer
 *  logits     [n_out][n_vocab] f32 for rows with want_logits[i] (all if NULL),
 *             in row order, when the model ends at the last layer */
typedef struct g4_batch {
    int n;
    const int32_t *tokens;
    const float *embd;
    const int32_t *pos;
    const int32_t *seq;
    const int8_t *want_logits;
    /* per-row flags (NULL: none; then embd != NULL means every row is an
     * embedding row): bit 0 (G4_ROW_EMBD) the row is a soft token: its input
     * is the next row of embd (embd holds the soft-token rows only, in row
     * order; no sqrt(H) scale, per-layer input of token 0); bit 1
     * (G4_ROW_BIDIR) on sliding-window layers the row also sees the later rows
     * of the adjacent run of BIDIR rows of its sequence in this call */
    const int8_t *flags;
} g4_batch_t;

/* fn(user) is called on the calling thread after each layer of every forward
 * call (a daemon's progress for its heartbeats); NULL: none. */
void g4_ctx_on_layer(g4_ctx_t *c, void (*fn)(void *user), void *user);

int g4_ctx_forward(g4_ctx_t *c, const g4_batch_t *b, const float *hidden_in, float *ple_io, float *hidden_out,
                   float *logits, g4_err_t *err);

/* K/V rows of the layers this range exports, for the batch's rows (after
 * g4_ctx_forward), as sections later stages pass on and import before their
 * forward. Byte-exact: the cache contents are copied, not recomputed. */
size_t g4_ctx_kv_export_bytes(const g4_ctx_t *c, int n_rows);
size_t g4_ctx_kv_export(const g4_ctx_t *c, const g4_batch_t *b, void *out);
int g4_ctx_kv_import(g4_ctx_t *c, const g4_batch_t *b, const void *in, size_t len, g4_err_t *err);

#endif
