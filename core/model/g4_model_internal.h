/* g4_model_internal — the structs the pieces of core/model share, and the
 * few functions one piece offers another. Not an API: only core/model's .c
 * files include it; everything else goes through g4_model.h.
 *
 *   g4_hparams.c  hyper-parameters from the GGUF keys
 *   g4_model.c    the model: weights as views into the file, layer ranges
 *   g4_warm.c     readying the weights: prefault or huge-page copy
 *   g4_kv.c       sequences and their KV caches, K/V rows between stages
 *   g4_attn.c     attention of one query row over a cache (+ g4_attn_ref)
 *   g4_forward.c  the context (run state) and the forward pass
 */
#ifndef G4_MODEL_INTERNAL_H
#define G4_MODEL_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "g4_model.h"
#include "g4_tensor.h"

/* ---- the model (g4_model.c, g4_warm.c) ----------------------------------- */

/* One decoder layer's weights: matrices are views into the mapped file (or,
 * once g4_warm has switched them, into the huge-page copy); norm vectors are
 * f32 copies of n_embd (head_dim for q/k norms) values. */
typedef struct g4_layer {
    g4_tensor_t wq, wk, wv, wo, gate, up, down; /* [H, n_head*hd] [H, n_kv*hd] x2 [n_head*hd, H] [H, ff] x2 [ff, H] */
    int has_wk, has_wv;
    float *attn_norm, *q_norm, *k_norm, *post_attn_norm, *ffn_norm, *post_ffw_norm;
    float out_scale;
    int has_out_scale;
    /* MoE */
    g4_tensor_t gate_inp, gate_up_exps, gate_exps, up_exps, down_exps; /* [H, E]  [H, 2fe, E]  [H, fe, E] x2  [fe, H, E] */
    int fused_gate_up;
    float *gate_inp_scale, *pre_ffw_norm_2, *post_ffw_norm_1, *post_ffw_norm_2, *down_exps_scale;
    /* PLE */
    g4_tensor_t inp_gate, proj; /* [H, D]  [D, H] */
    float *post_norm;
} g4_layer_t;

/* A matrix the model multiplies with, noted at load for g4_model_warm. */
typedef struct g4_weight_range {
    const uint8_t *p;              /* the file's bytes                     */
    size_t n;
    const g4_tensor_t *t;          /* the matrix (its data: file or copy)  */
    _Atomic(const uint8_t *) copy; /* the copy, once complete (COPY mode) */
    int packed;                    /* the copy is packed (g4_pack.h)       */
} g4_weight_range_t;

struct g4_model {
    g4_gguf_t *gguf;
    int owns_gguf;
    g4_hparams_t hp;
    int begin, end;
    g4_tensor_t tok_embd, output, ple_tok_embd, ple_proj; /* [H, V]  [H, V]  [n_layer*D, V]  [H, n_layer*D] */
    float *output_norm, *rope_freqs, *ple_proj_norm;
    int n_rope_freqs;
    g4_layer_t *layers; /* [n_layer], only [begin, end) filled */
    float **owned;      /* f32 copies of small vectors */
    int n_owned, cap_owned;
    /* weight ranges this model multiplies with; a background thread started
     * by g4_model_warm maps them in or copies them (g4_warm.c) */
    g4_weight_range_t *pf;
    int n_pf, cap_pf;
    pthread_t pf_thread;
    int pf_running;
    atomic_int pf_stop;
    atomic_int pf_done;     /* the thread has finished                      */
    int n_adopted;          /* ranges whose tensors point at their copy     */
    pthread_mutex_t adopt_mu;
    g4_weights_mode_t mode; /* what g4_model_warm chose                     */
    uint8_t *copy_base;     /* anonymous memory of the copies               */
    size_t copy_bytes;
    uint64_t warm_ns;       /* from g4_model_warm to the thread's end       */
};

/* g4_warm.c: a matrix is read whole on every forward pass: note it (load). */
void g4_warm_note(g4_model_t *m, const g4_tensor_t *t);
/* g4_warm.c: between forward passes, point the tensors at the copies
 * finished so far (COPY mode; nothing otherwise). */
void g4_warm_adopt(g4_model_t *m);
/* g4_warm.c: stops the thread, frees the copy and the range list (destroy). */
void g4_warm_fini(g4_model_t *m);

/* ---- the context (g4_forward.c, g4_kv.c) --------------------------------- */

/* A sequence: its next position and its caches. k[l], v[l]:
 * [cells(l)][n_head_kv(l) * hd(l)] F16, f32 or Q8_0 (kv_type); full layers
 * hold n_ctx cells, sliding ones a ring of n_swa + n_ubatch cells indexed by
 * position % cells. NULL for layers the range neither runs nor imports. */
typedef struct g4_seq {
    int used;
    int n_past;    /* next position                                  */
    void **k, **v; /* [n_layer] cache per own-KV layer in the range   */
    /* llama.cpp's cache of this sequence as if it ran alone (g4_kv_view_step):
     * which position each cell of its sliding-window cache holds, and the
     * views the attention of the current ubatch walks */
    int32_t *lcell; /* [n_lcell] position in each cell, -1 empty      */
    int lhead;      /* where llama.cpp's next slot search starts       */
    int nkv_full, nkv_swa; /* view sizes for this ubatch               */
    /* the prefix cache (g4_prefix.c): the layout before the last ubatch of
     * prompt rows and that ubatch's first position (-1: the last ubatch was
     * decode steps), what a saved chunk keeps; and, after a restore inside a
     * chunk, the first position of the ubatch a cold run would have been in
     * (-1: none): the next ubatch is laid out and sized as if it began there */
    int32_t *lcell0;
    int lhead0, start0, vhead;
} g4_seq_t;

struct g4_ctx {
    g4_model_t *m;
    g4_ctx_params_t p;
    int n_ctx, n_ring;          /* cells of full / sliding caches          */
    int n_lcell;                /* cells of llama.cpp's sliding cache      */
    int attn_splits;            /* KV chunks of a one-row decode (g4_attn_f16) */
    size_t kv_elem;             /* 2 (f16) or 4 (f32); Q8_0: 0              */
    int kv_type;                /* G4_KV_*                                 */
    int rot_k[2], rot_v[2];     /* Q8_0: Walsh-Hadamard block sizes of K (and Q) and V
                                 * for the full [0] and sliding [1] caches, 0: none */
    int simd_step;              /* Q8_0: elements ggml_vec_mad_f32 fuses (its SIMD step) */
    g4_seq_t *seqs;             /* [n_seq_max]                             */
    int *seq_rows;              /* rows of each sequence in the current batch */
    int *seq_extra;             /* rows a restored sequence's ubatch counts before its own (g4_prefix.c) */
    /* scratch for T <= n_ubatch rows, f32, allocated once (g4_ctx_new) */
    float *x, *a;               /* [T, H] residual stream, normed input    */
    float *q, *k, *v, *o;       /* [T, n_head*hd] [T, n_kv*hd] x2 [T, n_head*hd] */
    float *t1;                  /* [T, H] a block's output                 */
    float *fg, *fu;             /* [T, ff] gate, up                        */
    float *ple, *tok_ple;       /* [T, n_layer*D] per-layer inputs, [n_layer*D] */
    float *moe_in, *moe_acc, *moe_g, *moe_d, *moe_probs; /* [T, H] [T, H] [2fe] [H] [T, E] */
    int32_t *moe_sel;           /* [T, K] chosen experts                   */
    float *moe_w;               /* [T, K] their weights                    */
    void *mm_scratch;           /* g4_matmul's quantized activations       */
    size_t mm_scratch_bytes;
    /* per-thread attention buffers */
    int n_thr;
    uint8_t *attn_buf;
    size_t attn_buf_stride;
    float *rope_cs;  /* [n_ubatch][hd_max] cos/sin cache */
    int32_t *row_hi; /* [n_ubatch] last position a row sees on sliding layers */
    int32_t *row_pos; /* [n_ubatch] scratch: one sequence's positions in a ubatch */
    int32_t *blk_t0, *blk_n; /* [n_ubatch] the attention's row blocks */
    int32_t *row_view;  /* [n_ubatch][n_lcell] the sliding view of each G4_ROW_STEP row */
    int32_t *row_nkv;   /* [n_ubatch][2] its view sizes: full, sliding */
    void (*on_layer)(void *user); /* g4_ctx_on_layer */
    void *on_layer_user;
    struct g4_fwd_dev *dev;     /* the device pass's state (p.gpu > 0), else NULL */
};

/* ---- the device pass (g4_forward_cuda.c) ------------------------------------ */

/* Readies c for computing on CUDA device c->p.gpu - 1: uploads the range's
 * weights, allocates the device scratch. G4_OK or an error naming why (no
 * CUDA in this build, no such device, a weight type the GPU kernels lack,
 * device memory). */
int g4_fwd_dev_new(g4_ctx_t *c, g4_err_t *err);
void g4_fwd_dev_free(g4_ctx_t *c);
/* The layers of one ubatch (already checked and laid out by g4_ctx_forward)
 * on the device: input rows (embedded on the host, or hidden_in), the range's
 * layers, then hidden_out or the logits. */
int g4_fwd_dev_forward(g4_ctx_t *c, const g4_batch_t *b, int T, const float *hidden_in, float *ple_io,
                       float *hidden_out, float *logits, g4_err_t *err);
/* g4_forward.c: the host's half of the input rows: x = embed(tokens)·sqrt(H)
 * (soft tokens as given) and, for E models, the per-layer inputs, into c->x
 * and c->ple. */
void g4_fwd_embed(g4_ctx_t *c, const g4_batch_t *b, int T);
/* g4_forward.c: the router's choice for T rows of c->moe_probs (logits,
 * softmaxed in place): c->moe_sel, c->moe_w. */
void g4_fwd_moe_route(g4_ctx_t *c, int T);

/* Cache memory: host memory, or device memory when the context computes on a
 * GPU. alloc: zeroed, NULL when out of memory. copy: n bytes, each side host
 * (0) or cache (1) memory; complete when it returns. */
void *g4_kv_mem_alloc(const g4_ctx_t *c, size_t n);
void g4_kv_mem_free(const g4_ctx_t *c, void *p);
void g4_kv_mem_copy(const g4_ctx_t *c, void *dst, int dst_cache, const void *src, int src_cache, size_t n);

/* bytes of one head's K (or V) in the cache */
static inline size_t g4_kv_head_bytes(const g4_ctx_t *c, int hd)
{
    return c->kv_type == G4_KV_Q8_0 ? (size_t)hd / 32 * 34 : (size_t)hd * c->kv_elem;
}

/* bytes of one K (or V) row of layer l's cache */
static inline size_t g4_kv_row_bytes(const g4_ctx_t *c, int l)
{
    const g4_hparams_t *hp = &c->m->hp;
    const int hd = (int)(hp->is_swa[l] ? hp->hd_swa : hp->hd_full);
    return (size_t)hp->n_head_kv[l] * g4_kv_head_bytes(c, hd);
}

/* cells of layer l's cache: a ring on sliding layers */
static inline int g4_kv_cells(const g4_ctx_t *c, int l) { return c->m->hp.is_swa[l] ? c->n_ring : c->n_ctx; }

/* g4_kv.c: llama.cpp's placement of one ubatch's rows of sequence s
 * (positions pos[0..n), in order) in its caches: the sliding cache's slot
 * search and reuse (find_slot / apply_ubatch), then the view sizes n_kv of
 * both caches (used cells rounded up to 256) into s->nkv_full / nkv_swa. */
void g4_kv_view_step(const g4_ctx_t *c, g4_seq_t *s, const int32_t *pos, int n);

/* g4_kv.c: x[0, n) through llama.cpp's Walsh-Hadamard rotation in blocks of
 * nb (a power of two): each block scaled by 1/sqrt(nb), then butterflies
 * (u + v, u - v) of span 1, 2, ... nb/2 (ggml's fwht) */
void g4_kv_rotate(float *x, int64_t n, int nb);

/* g4_kv.c: the live sequence id, or NULL */
g4_seq_t *g4_kv_seq(g4_ctx_t *c, int id);
/* g4_kv.c: frees a sequence's caches and marks it unused */
void g4_kv_seq_free(g4_ctx_t *c, g4_seq_t *s);
/* g4_kv.c: writes n values of src ([n] f32) at position pos of a cache */
void g4_kv_store(const g4_ctx_t *c, void *cache, int cells, const float *src, int64_t n, int pos);

#endif
