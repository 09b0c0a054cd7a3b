/* g4_make_model — writes a Gemma 4 GGUF of the real shapes with random weights.
 *
 *   g4_make_model --preset e2b|e4b|26b-a4b|31b [--n-layer N] [--type Q4_K_M] [--seed S]
 *                 [--vocab ggml-vocab-gemma-4.gguf] -o OUT.gguf [--threads N]
 *                 [--n-embd E] [--n-ff F] [--n-head H] [--n-head-kv K] [--n-head-kv-full K]
 *                 [--n-ff-exp F] [--layer-types SSSSSF]
 *                 [--sliding-window W] [--ctx-train C]
 *
 * Shapes and keys follow docs of the model family (gemma4-model.md §1) and what
 * the oracle's make_model.py writes (so llama.cpp's gemma4 loader accepts the
 * file): widths, heads, KV heads per layer type, head sizes 256 / 512,
 * proportional RoPE (rope_freqs: 1.0 for a quarter of the full head's pairs,
 * 1e30 after), PLE and KV sharing for the E models, the double-wide MLP of E2B's
 * shared layers, 128 experts for 26B-A4B, K=V full layers for 26B and 31B; every
 * tokenizer.* key is copied byte for byte from the vocabulary GGUF. The layer
 * pattern is the real one cut to N layers; with N >= 2 at least one layer is
 * full, the last layer of the cut when the real pattern has none there.
 *
 * Weights (make_model.py's scheme, deterministic per --seed and tensor name):
 * linear N(0, 1/fan_in), token_embd N(0, 0.02), PLE table N(0, 1/256), norm
 * gains 1 +- 10 %, q/k norms 1.2 hd^-1/4, post-norm gains and output_norm picked
 * so the tied LM head does not echo its input, layer_output_scale U(0.6, 1),
 * router scale sqrt(E). 1-D tensors, norms and the router are F32 always.
 *
 * Quantized types: the per-tensor types are the mix's (g4_quant_mix_type, the
 * rules `g4 quantize` uses) but the blocks are NOT made by quantizing floats --
 * that costs ~30 s per GB of Q4_K on this machine. Each block is filled
 * directly: uniform random quants and scales chosen so the values have the
 * tensor's target std and mean ~0 (Q4_K/Q5_K: min = the middle of the quant
 * range; Q6_K/Q8_0/Q4_0/Q5_0: symmetric). F32/F16/BF16 hold normal floats.
 * Measured (2 cores): 31B-shaped 6 layers Q4_K_M, see tests/tools/README.md.
 *
 * The file is streamed (header, then each tensor made by --threads threads in
 * slabs), so memory is a few slabs whatever the size. Prints one JSON line. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "g4_gguf.h"
#include "g4_gguf_write.h"
#include "g4_quant.h"

/* ====================================================================== */
/* shapes                                                                 */
/* ====================================================================== */

typedef struct s_cfg {
    const char *preset;
    int n_layer, n_embd, n_head, n_head_kv, n_head_kv_full, head_dim, head_dim_full;
    int n_ff, n_expert, n_expert_used, n_ff_exp, n_embd_per_layer, n_shared_kv, double_wide, k_eq_v;
    int sliding_window, pattern; /* pattern: every p-th layer is full (HF convention) */
    int ctx_train;
    char layer_types[1024];      /* 'S' / 'F' per layer */
} s_cfg_t;

static const s_cfg_t s_presets[] = {
    /*         n_layer embd  head kv kvF hd  hdF  n_ff  exp used ffe  ple shared dw keqv  swa  pat ctx */
    {"e2b", 35, 1536, 8, 1, 1, 256, 512, 6144, 0, 0, 0, 256, 20, 1, 0, 512, 5, 131072, ""},
    {"e4b", 42, 2560, 8, 2, 2, 256, 512, 10240, 0, 0, 0, 256, 18, 0, 0, 512, 6, 131072, ""},
    {"26b-a4b", 30, 2816, 16, 8, 2, 256, 512, 2112, 128, 8, 704, 0, 0, 0, 1, 1024, 6, 262144, ""},
    {"31b", 60, 5376, 32, 16, 4, 256, 512, 21504, 0, 0, 0, 0, 0, 0, 1, 1024, 6, 262144, ""},
};

static int s_is_swa(const s_cfg_t *c, int il) { return c->layer_types[il] == 'S'; }
static int s_kv_from(const s_cfg_t *c) { return c->n_layer - c->n_shared_kv; }
static int s_hd(const s_cfg_t *c, int il) { return s_is_swa(c, il) ? c->head_dim : c->head_dim_full; }
static int s_nkv(const s_cfg_t *c, int il) { return s_is_swa(c, il) ? c->n_head_kv : c->n_head_kv_full; }
static int s_n_ff(const s_cfg_t *c, int il)
{
    return c->double_wide && c->n_shared_kv && il >= s_kv_from(c) ? 2 * c->n_ff : c->n_ff;
}

/* ====================================================================== */
/* random numbers: splitmix64 seeded per (seed, tensor, slab)            */
/* ====================================================================== */

static uint64_t s_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct s_rng { uint64_t s; } s_rng_t;
static inline uint64_t s_next(s_rng_t *r) { return s_mix64(r->s += 0x9e3779b97f4a7c15ull); }
static inline float s_unif(s_rng_t *r) { return (float)((s_next(r) >> 40) * 0x1.0p-24); } /* [0,1) */
/* approximately normal: sum of 4 uniforms, scaled to unit variance (fast, bounded tails) */
static inline float s_normal(s_rng_t *r)
{
    const uint64_t u = s_next(r);
    const float s = (float)(u & 0xFFFF) + (float)((u >> 16) & 0xFFFF) + (float)((u >> 32) & 0xFFFF) +
                    (float)(u >> 48);
    return (s * (1.0f / 65536.0f) - 2.0f) * 1.7320508f;
}

static uint64_t s_hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* ====================================================================== */
/* tensors                                                                */
/* ====================================================================== */

typedef enum { S_INIT_NORMAL, S_INIT_GAIN, S_INIT_UNIFORM, S_INIT_ROPE } s_init_t;

typedef struct s_tspec {
    char name[96];
    int n_dims;
    int64_t ne[3];
    s_init_t init;
    float a, b;     /* normal: std; gain: mean; uniform: lo, hi */
    int keep_f32;   /* always F32 (norms, 1-D, router)          */
    uint32_t type;  /* chosen output type                       */
} s_tspec_t;

typedef struct s_list {
    s_tspec_t *t;
    int n, cap;
} s_list_t;

static s_tspec_t *s_add(s_list_t *l, const char *name, int n_dims, int64_t ne0, int64_t ne1, int64_t ne2, s_init_t init,
                        float a, float b)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->t = realloc(l->t, (size_t)l->cap * sizeof *l->t);
        if (!l->t) abort();
    }
    s_tspec_t *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->n_dims = n_dims;
    t->ne[0] = ne0, t->ne[1] = ne1, t->ne[2] = ne2;
    t->init = init, t->a = a, t->b = b;
    t->keep_f32 = n_dims == 1;
    return t;
}

static void s_build(const s_cfg_t *c, int64_t n_vocab, float post_gain, float out_gain, s_list_t *l)
{
    const int E = c->n_embd;
    char nm[96];
    s_add(l, "token_embd.weight", 2, E, n_vocab, 1, S_INIT_NORMAL, 0.02f, 0);
    if (strchr(c->layer_types, 'F')) s_add(l, "rope_freqs.weight", 1, c->head_dim_full / 2, 1, 1, S_INIT_ROPE, 0, 0);
    s_add(l, "output_norm.weight", 1, E, 1, 1, S_INIT_GAIN, out_gain, 0);
    if (c->n_embd_per_layer) {
        const int64_t P = (int64_t)c->n_embd_per_layer * c->n_layer;
        s_add(l, "per_layer_token_embd.weight", 2, P, n_vocab, 1, S_INIT_NORMAL,
              1.0f / sqrtf((float)c->n_embd_per_layer), 0);
        s_add(l, "per_layer_model_proj.weight", 2, E, P, 1, S_INIT_NORMAL, 1.0f / sqrtf((float)E), 0)->keep_f32 = 1;
        s_add(l, "per_layer_proj_norm.weight", 1, c->n_embd_per_layer, 1, 1, S_INIT_GAIN, 1, 0);
    }
#define S_ADD(suffix, ...) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), s_add(l, nm, __VA_ARGS__))
#define S_LIN(suffix, in, out, n3) S_ADD(suffix, (n3) > 1 ? 3 : 2, in, out, n3, S_INIT_NORMAL, 1.0f / sqrtf((float)(in)), 0)
    for (int il = 0; il < c->n_layer; il++) {
        const int hd = s_hd(c, il), nkv = s_nkv(c, il), H = c->n_head, F = s_n_ff(c, il);
        const int has_kv = il < s_kv_from(c);
        const float qk = 1.2f * powf((float)hd, -0.25f);
        S_ADD("attn_norm.weight", 1, E, 1, 1, S_INIT_GAIN, 1, 0);
        S_LIN("attn_q.weight", E, H * hd, 1);
        if (has_kv) {
            S_LIN("attn_k.weight", E, nkv * hd, 1);
            if (!(c->k_eq_v && !s_is_swa(c, il))) S_LIN("attn_v.weight", E, nkv * hd, 1);
        }
        S_LIN("attn_output.weight", H * hd, E, 1);
        S_ADD("attn_q_norm.weight", 1, hd, 1, 1, S_INIT_GAIN, qk, 0);
        if (has_kv) S_ADD("attn_k_norm.weight", 1, hd, 1, 1, S_INIT_GAIN, qk, 0);
        S_ADD("post_attention_norm.weight", 1, E, 1, 1, S_INIT_GAIN, post_gain, 0);
        S_ADD("layer_output_scale.weight", 1, 1, 1, 1, S_INIT_UNIFORM, 0.6f, 1.0f);
        S_ADD("ffn_norm.weight", 1, E, 1, 1, S_INIT_GAIN, 1, 0);
        S_LIN("ffn_gate.weight", E, F, 1);
        S_LIN("ffn_up.weight", E, F, 1);
        S_LIN("ffn_down.weight", F, E, 1);
        S_ADD("post_ffw_norm.weight", 1, E, 1, 1, S_INIT_GAIN, post_gain, 0);
        if (c->n_expert) {
            const int X = c->n_expert, FE = c->n_ff_exp;
            S_ADD("ffn_gate_inp.weight", 2, E, X, 1, S_INIT_NORMAL, 2.0f / sqrtf((float)E), 0)->keep_f32 = 1;
            S_ADD("ffn_gate_inp.scale", 1, E, 1, 1, S_INIT_GAIN, sqrtf((float)E), 0);
            S_ADD("pre_ffw_norm_2.weight", 1, E, 1, 1, S_INIT_GAIN, 1, 0);
            S_ADD("post_ffw_norm_1.weight", 1, E, 1, 1, S_INIT_GAIN, post_gain, 0);
            S_ADD("post_ffw_norm_2.weight", 1, E, 1, 1, S_INIT_GAIN, post_gain, 0);
            S_LIN("ffn_gate_up_exps.weight", E, 2 * FE, X);
            S_LIN("ffn_down_exps.weight", FE, E, X);
            S_ADD("ffn_down_exps.scale", 1, X, 1, 1, S_INIT_UNIFORM, 0.5f, 1.5f);
        }
        if (c->n_embd_per_layer) {
            S_LIN("inp_gate.weight", E, c->n_embd_per_layer, 1);
            S_LIN("proj.weight", c->n_embd_per_layer, E, 1);
            S_ADD("post_norm.weight", 1, E, 1, 1, S_INIT_GAIN, post_gain, 0);
        }
    }
#undef S_LIN
#undef S_ADD
}

/* ====================================================================== */
/* filling blocks                                                         */
/* ====================================================================== */

static void s_put_f16(uint8_t *p, float f)
{
    const g4_fp16_t h = g4_fp32_to_fp16(f);
    memcpy(p, &h, 2);
}

/* n_rows rows of ne0 values of type t with std `sd` (S_INIT_NORMAL tensors). */
static void s_fill_rows(uint32_t t, uint8_t *dst, int64_t n_rows, int64_t ne0, float sd, s_rng_t *r)
{
    const uint64_t n = (uint64_t)n_rows * (uint64_t)ne0;
    const uint64_t nb = n / (t == G4_DTYPE_F32 || t == G4_DTYPE_F16 || t == G4_DTYPE_BF16 ? 1 : g4_dtype_traits(t)->block_size);
    switch (t) {
    case G4_DTYPE_F32:
        for (uint64_t i = 0; i < n; i++) {
            const float v = sd * s_normal(r);
            memcpy(dst + 4 * i, &v, 4);
        }
        return;
    case G4_DTYPE_F16:
        for (uint64_t i = 0; i < n; i++) s_put_f16(dst + 2 * i, sd * s_normal(r));
        return;
    case G4_DTYPE_BF16:
        for (uint64_t i = 0; i < n; i++) {
            const g4_bf16_t h = g4_fp32_to_bf16(sd * s_normal(r));
            memcpy(dst + 2 * i, &h, 2);
        }
        return;
    default: break;
    }
    const uint32_t bs = g4_dtype_traits(t)->type_size;
    for (uint64_t b = 0; b < nb; b++) {
        uint8_t *y = dst + b * bs;
        /* quants: random bytes; then the scales */
        for (uint32_t k = 0; k < bs; k += 8) {
            const uint64_t u = s_next(r);
            memcpy(y + k, &u, bs - k < 8 ? bs - k : 8);
        }
        switch (t) {
        case G4_DTYPE_Q8_0: /* q uniform in [-128,127]: std 73.9 */
            s_put_f16(y, sd / 73.9f);
            break;
        case G4_DTYPE_Q4_0: s_put_f16(y, sd / 4.61f); break;  /* (q-8), q in 0..15: std 4.61 */
        case G4_DTYPE_Q5_0: s_put_f16(y, sd / 9.23f); break;  /* (q-16), q in 0..31       */
        case G4_DTYPE_Q4_1:
        case G4_DTYPE_Q5_1: {
            const float d = sd / (t == G4_DTYPE_Q4_1 ? 4.61f : 9.23f);
            s_put_f16(y, d);
            s_put_f16(y + 2, -d * (t == G4_DTYPE_Q4_1 ? 7.5f : 15.5f));
            break;
        }
        case G4_DTYPE_Q4_K:
        case G4_DTYPE_Q5_K: {
            /* x = d*sc*q - dmin*m with m = sc and dmin = d * mid: mean 0 */
            const float spread = t == G4_DTYPE_Q4_K ? 4.61f : 9.23f, mid = t == G4_DTYPE_Q4_K ? 7.5f : 15.5f;
            uint8_t sc[8];
            float s2 = 0;
            for (int j = 0; j < 8; j++) {
                sc[j] = (uint8_t)(40 + (y[16 + j] & 15) + (y[24 + j] & 7)); /* 40..62 */
                s2 += (float)sc[j] * sc[j];
            }
            const float d = sd / (spread * sqrtf(s2 / 8));
            s_put_f16(y, d);
            s_put_f16(y + 2, d * mid);
            memset(y + 4, 0, 12);
            for (int j = 0; j < 8; j++) {
                if (j < 4) {
                    y[4 + j] = sc[j];
                    y[4 + j + 4] = sc[j];
                } else {
                    y[4 + j + 4] = (uint8_t)((sc[j] & 0xF) | ((sc[j] & 0xF) << 4));
                    y[4 + j - 4] |= (uint8_t)((sc[j] >> 4) << 6);
                    y[4 + j] |= (uint8_t)((sc[j] >> 4) << 6);
                }
            }
            break;
        }
        case G4_DTYPE_Q6_K: {
            /* x = d*sc*(q-32), q in 0..63 (std 18.5), scales 64..127 */
            float s2 = 0;
            int8_t *scales = (int8_t *)(y + 192);
            for (int j = 0; j < 16; j++) {
                scales[j] = (int8_t)(64 + (y[j] & 63));
                s2 += (float)scales[j] * scales[j];
            }
            s_put_f16(y + 208, sd / (18.5f * sqrtf(s2 / 16)));
            break;
        }
        default: abort();
        }
    }
}

/* ====================================================================== */
/* threads                                                                */
/* ====================================================================== */

typedef struct s_job {
    uint32_t type;
    uint8_t *dst;
    int64_t row0, n_rows, ne0;
    float sd;
    uint64_t seed;
    int n_threads;
} s_job_t;

typedef struct s_wk { s_job_t *job; int ith; } s_wk_t;

/* rows are cut in groups of S_ROW_GROUP, each seeded from (tensor seed, group):
 * the values do not depend on --threads */
#define S_ROW_GROUP 64

static void *s_work(void *arg)
{
    const s_wk_t *wk = arg;
    const s_job_t *j = wk->job;
    const uint64_t rb = g4_dtype_row_bytes(j->type, (uint64_t)j->ne0);
    const int64_t n_groups = (j->n_rows + S_ROW_GROUP - 1) / S_ROW_GROUP;
    for (int64_t gidx = wk->ith; gidx < n_groups; gidx += j->n_threads) {
        const int64_t r0 = gidx * S_ROW_GROUP;
        const int64_t n = r0 + S_ROW_GROUP <= j->n_rows ? S_ROW_GROUP : j->n_rows - r0;
        s_rng_t r = {s_mix64(j->seed ^ (uint64_t)(j->row0 + r0) * 0x2545F4914F6CDD1Dull)};
        s_fill_rows(j->type, j->dst + (uint64_t)r0 * rb, n, j->ne0, j->sd, &r);
    }
    return NULL;
}

static void s_run(s_job_t *job)
{
    pthread_t th[64];
    s_wk_t wk[64];
    int n = job->n_threads > 64 ? 64 : job->n_threads, started = 1;
    job->n_threads = n;
    for (int i = 1; i < n; i++) {
        wk[i] = (s_wk_t){job, i};
        if (pthread_create(&th[i], NULL, s_work, &wk[i])) break;
        started = i + 1;
    }
    wk[0] = (s_wk_t){job, 0};
    s_work(&wk[0]);
    for (int i = 1; i < started; i++) pthread_join(th[i], NULL);
    for (int i = started; i < n; i++) {
        wk[i] = (s_wk_t){job, i};
        s_work(&wk[i]);
    }
}

/* ====================================================================== */
/* --assistant-for: a gemma4-assistant (MTP drafter) for a target         */
/* ====================================================================== */

/* the target's keys the assistant must match */
typedef struct s_target {
    uint32_t n_embd, n_layer, hd_full, hd_swa, swa, ctx, shared;
    uint32_t nkv[1000];
    uint8_t is_swa[1000];
    float base_full, base_swa;
} s_target_t;

static int s_target_read(g4_gguf_t *g, s_target_t *t, g4_err_t *err)
{
    memset(t, 0, sizeof *t);
    if (g4_gguf_get_u32(g, "gemma4.embedding_length", &t->n_embd, err) ||
        g4_gguf_get_u32(g, "gemma4.block_count", &t->n_layer, err) ||
        g4_gguf_get_u32(g, "gemma4.attention.key_length", &t->hd_full, err) ||
        g4_gguf_get_u32(g, "gemma4.attention.key_length_swa", &t->hd_swa, err) ||
        g4_gguf_get_u32(g, "gemma4.attention.sliding_window", &t->swa, err) ||
        g4_gguf_get_u32(g, "gemma4.context_length", &t->ctx, err) ||
        g4_gguf_get_f32(g, "gemma4.rope.freq_base", &t->base_full, err) ||
        g4_gguf_get_f32(g, "gemma4.rope.freq_base_swa", &t->base_swa, err))
        return -1;
    if (t->n_layer < 2 || t->n_layer > 1000) return g4_err_set(err, G4_ERR_FORMAT, "the target has %u layers", t->n_layer);
    if (g4_gguf_find_key(g, "gemma4.attention.shared_kv_layers") >= 0 &&
        g4_gguf_get_u32(g, "gemma4.attention.shared_kv_layers", &t->shared, err))
        return -1;
    g4_gguf_value_t v, e;
    if (g4_gguf_get_arr(g, "gemma4.attention.sliding_window_pattern", &v, err)) return -1;
    for (uint32_t l = 0; l < t->n_layer && l < v.arr_n; l++) g4_gguf_arr_get(g, &v, l, &e), t->is_swa[l] = (uint8_t)e.v.u;
    const int64_t ki = g4_gguf_find_key(g, "gemma4.attention.head_count_kv");
    if (ki < 0) return g4_err_set(err, G4_ERR_FORMAT, "the target has no attention.head_count_kv");
    g4_gguf_kv_value(g, ki, &v);
    for (uint32_t l = 0; l < t->n_layer; l++) {
        int64_t x = 0;
        if (v.type == G4_GGUF_ARRAY) g4_gguf_arr_get(g, &v, l, &e), g4_gguf_value_as_i64(&e, &x);
        else g4_gguf_value_as_i64(&v, &x);
        t->nkv[l] = (uint32_t)x;
    }
    return 0;
}

/* layer of the cache target layer l reads (KV sharing) */
static int s_target_src(const s_target_t *t, int l)
{
    const int from = (int)(t->n_layer - t->shared);
    return l < from ? l : t->is_swa[l] ? from - 2 : from - 1;
}

static void s_build_assistant(const s_cfg_t *c, const s_target_t *t, int64_t n_vocab, s_list_t *l)
{
    const int E = c->n_embd, Hb = (int)t->n_embd;
    char nm[96];
    const float post_gain = 1.0f, out_gain = 4.0f / (0.02f * sqrtf((float)E));
    s_add(l, "token_embd.weight", 2, E, n_vocab, 1, S_INIT_NORMAL, 0.02f, 0);
    if (strchr(c->layer_types, 'F')) s_add(l, "rope_freqs.weight", 1, (int64_t)t->hd_full / 2, 1, 1, S_INIT_ROPE, 0, 0);
    s_add(l, "output_norm.weight", 1, E, 1, 1, S_INIT_GAIN, out_gain, 0);
    s_add(l, "nextn.pre_projection.weight", 2, 2 * (int64_t)Hb, E, 1, S_INIT_NORMAL, 1.0f / sqrtf(2.0f * Hb), 0);
    s_add(l, "nextn.post_projection.weight", 2, E, Hb, 1, S_INIT_NORMAL, 1.0f / sqrtf((float)E), 0);
#define S_ADD(suffix, ...) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), s_add(l, nm, __VA_ARGS__))
#define S_LIN(suffix, in, out) S_ADD(suffix, 2, in, out, 1, S_INIT_NORMAL, 1.0f / sqrtf((float)(in)), 0)
    for (int il = 0; il < c->n_layer; il++) {
        const int hd = (int)(s_is_swa(c, il) ? t->hd_swa : t->hd_full), H = c->n_head, F = c->n_ff;
        S_ADD("attn_norm.weight", 1, E, 1, 1, S_INIT_GAIN, 1, 0);
        S_LIN("attn_q.weight", E, H * hd);
        S_LIN("attn_output.weight", H * hd, E);
        S_ADD("attn_q_norm.weight", 1, hd, 1, 1, S_INIT_GAIN, 1.2f * powf((float)hd, -0.25f), 0);
        S_ADD("post_attention_norm.weight", 1, E, 1, 1, S_INIT_GAIN, post_gain, 0);
        S_ADD("layer_output_scale.weight", 1, 1, 1, 1, S_INIT_UNIFORM, 0.6f, 1.0f);
        S_ADD("ffn_norm.weight", 1, E, 1, 1, S_INIT_GAIN, 1, 0);
        S_LIN("ffn_gate.weight", E, F);
        S_LIN("ffn_up.weight", E, F);
        S_LIN("ffn_down.weight", F, E);
        S_ADD("post_ffw_norm.weight", 1, E, 1, 1, S_INIT_GAIN, post_gain, 0);
    }
#undef S_LIN
#undef S_ADD
}

/* the assistant's keys: gemma4's as Gemma4AssistantModel converts them
 * (llama.cpp conversion/gemma.py), embedding_length_out = the target's width,
 * every layer drafting, the KV head counts of the target layers it reads */
static void s_assistant_keys(g4_gguf_writer_t *w, const s_cfg_t *c, const s_target_t *t)
{
    const int src_swa = s_target_src(t, (int)t->n_layer - 2), src_full = s_target_src(t, (int)t->n_layer - 1);
    int32_t kv[1000];
    uint8_t pat[1000];
    for (int il = 0; il < c->n_layer; il++)
        pat[il] = (uint8_t)s_is_swa(c, il), kv[il] = (int32_t)t->nkv[pat[il] ? src_swa : src_full];
#define K(k) "gemma4-assistant." k
    g4_gguf_writer_add_u32(w, K("context_length"), t->ctx);
    g4_gguf_writer_add_u32(w, K("embedding_length"), (uint32_t)c->n_embd);
    g4_gguf_writer_add_u32(w, K("embedding_length_out"), t->n_embd);
    g4_gguf_writer_add_u32(w, K("block_count"), (uint32_t)c->n_layer);
    g4_gguf_writer_add_u32(w, K("nextn_predict_layers"), (uint32_t)c->n_layer);
    g4_gguf_writer_add_u32(w, K("feed_forward_length"), (uint32_t)c->n_ff);
    g4_gguf_writer_add_u32(w, K("attention.head_count"), (uint32_t)c->n_head);
    g4_gguf_writer_add_arr(w, K("attention.head_count_kv"), G4_GGUF_I32, kv, (uint64_t)c->n_layer);
    g4_gguf_writer_add_f32(w, K("rope.freq_base"), t->base_full);
    g4_gguf_writer_add_f32(w, K("rope.freq_base_swa"), t->base_swa);
    g4_gguf_writer_add_f32(w, K("attention.layer_norm_rms_epsilon"), 1e-6f);
    g4_gguf_writer_add_u32(w, K("attention.key_length"), t->hd_full);
    g4_gguf_writer_add_u32(w, K("attention.value_length"), t->hd_full);
    g4_gguf_writer_add_u32(w, K("attention.key_length_swa"), t->hd_swa);
    g4_gguf_writer_add_u32(w, K("attention.value_length_swa"), t->hd_swa);
    g4_gguf_writer_add_u32(w, K("attention.sliding_window"), t->swa);
    g4_gguf_writer_add_arr(w, K("attention.sliding_window_pattern"), G4_GGUF_BOOL, pat, (uint64_t)c->n_layer);
    g4_gguf_writer_add_u32(w, K("rope.dimension_count"), t->hd_full);
    g4_gguf_writer_add_u32(w, K("rope.dimension_count_swa"), t->hd_swa);
    g4_gguf_writer_add_u32(w, K("embedding_length_per_layer_input"), 0);
#undef K
}

/* every tensor's data, one slab at a time (sparse: holes of its size);
 * counts[type] and *n_params add up what was written. 0, or -1 on a write error */
static int s_write_tensors(FILE *f, const s_list_t *l, uint64_t seed, int sparse, int n_threads, int hd_full,
                           int *counts, uint64_t *n_params)
{
    const size_t slab_bytes = (size_t)64 << 20;
    uint8_t *slab = malloc(slab_bytes);
    if (!slab) return -1;
    for (int i = 0; i < l->n; i++) {
        const s_tspec_t *t = &l->t[i];
        const int64_t ne0 = t->ne[0], n_rows = t->ne[1] * t->ne[2];
        const uint64_t rb = g4_dtype_row_bytes(t->type, (uint64_t)ne0);
        const uint64_t tseed = s_mix64(seed * 0x9E3779B97F4A7C15ull ^ s_hash_name(t->name));
        counts[t->type]++;
        *n_params += (uint64_t)ne0 * (uint64_t)n_rows;
        if (sparse) { /* a hole where the data goes: the directory is all that is read */
            const uint64_t nb = rb * (uint64_t)n_rows;
            if (fseeko(f, (off_t)(nb + (32 - nb % 32) % 32), SEEK_CUR)) goto io;
            continue;
        }
        if (t->init != S_INIT_NORMAL) { /* small F32 vectors */
            s_rng_t r = {tseed};
            float *x = (float *)slab;
            for (int64_t k = 0; k < ne0; k++) {
                if (t->init == S_INIT_GAIN) x[k] = t->a * (1.0f + 0.1f * s_normal(&r));
                else if (t->init == S_INIT_UNIFORM) x[k] = t->a + (t->b - t->a) * s_unif(&r);
                else x[k] = k < hd_full / 8 ? 1.0f : 1e30f; /* rope_freqs: a quarter of the pairs rotate */
            }
        } else {
            int64_t step = (int64_t)(slab_bytes / rb) / S_ROW_GROUP * S_ROW_GROUP;
            if (step < S_ROW_GROUP) step = S_ROW_GROUP;
            for (int64_t r0 = 0; r0 < n_rows; r0 += step) {
                s_job_t job = {t->type, slab, r0, r0 + step <= n_rows ? step : n_rows - r0, ne0, t->a, tseed, n_threads};
                s_run(&job);
                if (fwrite(slab, 1, (size_t)(rb * (uint64_t)job.n_rows), f) != rb * (uint64_t)job.n_rows) goto io;
            }
        }
        const uint64_t nbytes = rb * (uint64_t)n_rows;
        if (t->init != S_INIT_NORMAL && fwrite(slab, 1, (size_t)nbytes, f) != nbytes) goto io;
        static const uint8_t zeros[32] = {0};
        const uint64_t pad = (32 - nbytes % 32) % 32;
        if (pad && fwrite(zeros, 1, (size_t)pad, f) != pad) goto io;
    }
    free(slab);
    return 0;
io:
    free(slab);
    return -1;
}

/* ====================================================================== */
/* main                                                                   */
/* ====================================================================== */

static int s_usage(FILE *out)
{
    fprintf(out,
            "usage: g4_make_model (--preset e2b|e4b|26b-a4b|31b | --assistant-for TARGET.gguf) -o OUT.gguf\n"
            "         [--n-layer N] [--type T] [--seed S]\n"
            "         [--vocab VOCAB.gguf] [--threads N] [--n-embd E] [--n-ff F] [--n-head H] [--n-head-kv K]\n"
            "         [--n-head-kv-full K] [--n-ff-exp F]\n"
            "         [--layer-types SSSSSF] [--sliding-window W] [--ctx-train C] [--sparse 1]\n"
            "  --assistant-for TARGET.gguf: a gemma4-assistant (multi-token prediction drafter) for TARGET:\n"
            "    its head sizes, KV heads and tokenizer; 4 layers SSSF of width 256, 4 heads, n_ff 1024\n"
            "    unless --n-layer / --layer-types / --n-embd / --n-head / --n-ff say otherwise\n"
            "  --sparse 1: no tensor data, holes of its size (the real shapes for g4 plan / inspect in no disk)\n"
            "  T: Q4_K_M (default) Q4_K_S Q5_K_M Q5_K_S Q6_K Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K F16 BF16 F32\n");
    return out == stdout ? 0 : 2;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int s_order_cmp(const void *a, const void *b)
{
    return g4_quant_tensor_cmp(((const s_tspec_t *)a)->name, ((const s_tspec_t *)b)->name);
}

int main(int argc, char **argv)
{
    const char *preset = NULL, *out = NULL, *type_name = "Q4_K_M", *layer_types = NULL;
    const char *vocab = G4_DEFAULT_VOCAB, *assistant_for = NULL;
    int n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, n_head_kv_full = 0, n_ff_exp = 0, swa = 0,
        ctx = 0;
    int n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    uint64_t seed = 0;
    int sparse = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return s_usage(stdout);
        if (!v) return s_usage(stderr);
        if (!strcmp(a, "--preset")) preset = v;
        else if (!strcmp(a, "--assistant-for")) assistant_for = v;
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--type")) type_name = v;
        else if (!strcmp(a, "--vocab")) vocab = v;
        else if (!strcmp(a, "--layer-types")) layer_types = v;
        else if (!strcmp(a, "--n-layer")) n_layer = atoi(v);
        else if (!strcmp(a, "--n-embd")) n_embd = atoi(v);
        else if (!strcmp(a, "--n-ff")) n_ff = atoi(v);
        else if (!strcmp(a, "--n-head")) n_head = atoi(v);
        else if (!strcmp(a, "--n-head-kv")) n_head_kv = atoi(v);
        else if (!strcmp(a, "--n-head-kv-full")) n_head_kv_full = atoi(v);
        else if (!strcmp(a, "--n-ff-exp")) n_ff_exp = atoi(v);
        else if (!strcmp(a, "--sliding-window")) swa = atoi(v);
        else if (!strcmp(a, "--ctx-train")) ctx = atoi(v);
        else if (!strcmp(a, "--threads")) n_threads = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--sparse")) sparse = !strcmp(v, "1") || !strcmp(v, "yes");
        else {
            fprintf(stderr, "g4_make_model: unknown option %s\n", a);
            return s_usage(stderr);
        }
        i++;
    }
    if ((!preset && !assistant_for) || !out) return s_usage(stderr);
    s_cfg_t c;
    int found = 0;
    /* an assistant: 4 layers S S S F of width 256, 4 heads, n_ff 1024 unless given */
    const s_cfg_t s_assistant = {"assistant", 4, 256, 4, 1, 1, 0, 0, 1024, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, ""};
    s_target_t tgt;
    if (assistant_for) {
        g4_err_t terr;
        g4_gguf_t *tg = g4_gguf_open(assistant_for, &terr);
        if (!tg || s_target_read(tg, &tgt, &terr)) {
            fprintf(stderr, "g4_make_model: %s: %s\n", assistant_for, terr.msg);
            return 1;
        }
        g4_gguf_destroy(&tg);
        c = s_assistant, found = 1, vocab = assistant_for; /* the target's tokenizer */
    }
    for (size_t i = 0; preset && !assistant_for && i < sizeof s_presets / sizeof s_presets[0]; i++)
        if (!strcmp(preset, s_presets[i].preset)) c = s_presets[i], found = 1;
    if (!found) {
        fprintf(stderr, "g4_make_model: unknown preset %s\n", preset);
        return 2;
    }
    const int mix = g4_quant_mix_from_name(type_name);
    if (mix < 0) {
        fprintf(stderr, "g4_make_model: unknown --type %s\n", type_name);
        return 2;
    }
    if (n_threads < 1) n_threads = 1;
    const int n_layer_real = c.n_layer;
    if (layer_types && !n_layer) n_layer = (int)strlen(layer_types);
    if (n_layer) c.n_layer = n_layer;
    if (c.n_layer < 1 || c.n_layer > 1000) return s_usage(stderr);
    if (n_embd) c.n_embd = n_embd;
    if (n_ff) c.n_ff = n_ff;
    if (n_head) c.n_head = n_head;
    if (n_head_kv) c.n_head_kv = n_head_kv;
    if (n_head_kv_full) c.n_head_kv_full = n_head_kv_full;
    if (c.n_head < 1 || c.n_head_kv < 1 || c.n_head_kv_full < 1) return s_usage(stderr);
    /* fewer query heads than the preset's KV heads: the largest count that divides */
    while (c.n_head % c.n_head_kv) c.n_head_kv--;
    while (c.n_head % c.n_head_kv_full) c.n_head_kv_full--;
    if (n_ff_exp) c.n_ff_exp = n_ff_exp;
    if (swa) c.sliding_window = swa;
    if (ctx) c.ctx_train = ctx;
    /* layer pattern: the real one cut to n_layer layers */
    if (layer_types) {
        if ((int)strlen(layer_types) != c.n_layer || strspn(layer_types, "SF") != strlen(layer_types)) {
            fprintf(stderr, "g4_make_model: --layer-types needs %d letters S / F\n", c.n_layer);
            return 2;
        }
        snprintf(c.layer_types, sizeof c.layer_types, "%s", layer_types);
    } else {
        for (int il = 0; il < c.n_layer; il++) c.layer_types[il] = il % c.pattern == c.pattern - 1 ? 'F' : 'S';
        c.layer_types[c.n_layer] = 0;
        if (c.n_layer >= 2 && !strchr(c.layer_types, 'F')) c.layer_types[c.n_layer - 1] = 'F';
    }
    if (!strchr(c.layer_types, 'S')) {
        fprintf(stderr, "g4_make_model: llama.cpp's gemma4 needs at least one sliding layer\n");
        return 2;
    }
    /* KV sharing: the real share of the layers, kept only where llama.cpp's
     * rule holds (layer kv_from-2 sliding, kv_from-1 full) */
    if (c.n_shared_kv) {
        int shared = (int)((double)c.n_shared_kv * c.n_layer / n_layer_real);
        for (; shared > 0; shared--) {
            const int from = c.n_layer - shared;
            if (from >= 2 && c.layer_types[from - 2] == 'S' && c.layer_types[from - 1] == 'F') break;
        }
        c.n_shared_kv = shared;
    }

    const double t0 = s_now();
    g4_err_t err;
    g4_gguf_t *v = g4_gguf_open(vocab, &err);
    if (!v) {
        fprintf(stderr, "g4_make_model: %s\n", err.msg);
        return 1;
    }
    g4_gguf_value_t toks;
    if (g4_gguf_get_arr(v, "tokenizer.ggml.tokens", &toks, &err) != G4_OK) {
        fprintf(stderr, "g4_make_model: %s\n", err.msg);
        return 1;
    }
    const int64_t n_vocab = (int64_t)toks.arr_n;

    /* gains (make_model.py): post-norm so the residual stream outweighs the
     * scaled embedding; output_norm so the logit std is ~4 */
    const float embd_std = 0.02f;
    float post_gain = embd_std * c.n_embd / (0.06f * sqrtf(2.0f * c.n_layer));
    if (post_gain < 1) post_gain = 1;
    const float out_gain = 4.0f / (embd_std * sqrtf((float)c.n_embd));

    s_list_t l = {0};
    if (assistant_for) s_build_assistant(&c, &tgt, n_vocab, &l);
    else s_build(&c, n_vocab, post_gain, out_gain, &l);
    qsort(l.t, (size_t)l.n, sizeof *l.t, s_order_cmp);
    const char **names = calloc((size_t)l.n, sizeof *names);
    for (int i = 0; i < l.n; i++) names[i] = l.t[i].name;
    g4_quant_mix_state_t st;
    g4_quant_mix_begin(&st, (g4_quant_mix_t)mix, c.n_layer, names, l.n);
    for (int i = 0; i < l.n; i++) {
        s_tspec_t *t = &l.t[i];
        t->type = t->keep_f32 ? G4_DTYPE_F32 : g4_quant_mix_type(&st, t->name, t->n_dims, t->ne[0], G4_DTYPE_F32);
    }
    free(names);

    /* metadata: make_model.py's keys, then the vocabulary's tokenizer.* */
    g4_gguf_writer_t *w = g4_gguf_writer_new(&err);
    if (!w) return 1;
    char name[256], cfg[2048];
    g4_gguf_writer_add_str(w, "general.architecture", assistant_for ? "gemma4-assistant" : "gemma4");
    g4_gguf_writer_add_str(w, "general.type", "model");
    snprintf(name, sizeof name, "synthetic-gemma4-%s-L%d-E%d-seed%" PRIu64, c.preset, c.n_layer, c.n_embd, seed);
    g4_gguf_writer_add_str(w, "general.name", name);
    g4_gguf_writer_add_u32(w, "general.file_type", g4_quant_mix_ftype((g4_quant_mix_t)mix));
    g4_gguf_writer_add_u32(w, "general.quantization_version", 2);
    if (assistant_for) {
        s_assistant_keys(w, &c, &tgt);
        goto keys_done;
    }
    g4_gguf_writer_add_u32(w, "gemma4.context_length", (uint32_t)c.ctx_train);
    g4_gguf_writer_add_u32(w, "gemma4.embedding_length", (uint32_t)c.n_embd);
    g4_gguf_writer_add_u32(w, "gemma4.block_count", (uint32_t)c.n_layer);
    int32_t ff[1000], kv[1000];
    uint8_t swa_pat[1000];
    int ff_same = 1;
    for (int il = 0; il < c.n_layer; il++) {
        ff[il] = s_n_ff(&c, il);
        kv[il] = s_nkv(&c, il);
        swa_pat[il] = s_is_swa(&c, il);
        ff_same &= ff[il] == ff[0];
    }
    if (ff_same) g4_gguf_writer_add_u32(w, "gemma4.feed_forward_length", (uint32_t)ff[0]);
    else g4_gguf_writer_add_arr(w, "gemma4.feed_forward_length", G4_GGUF_I32, ff, (uint64_t)c.n_layer);
    g4_gguf_writer_add_u32(w, "gemma4.attention.head_count", (uint32_t)c.n_head);
    if (c.n_head_kv == c.n_head_kv_full) g4_gguf_writer_add_u32(w, "gemma4.attention.head_count_kv", (uint32_t)kv[0]);
    else g4_gguf_writer_add_arr(w, "gemma4.attention.head_count_kv", G4_GGUF_I32, kv, (uint64_t)c.n_layer);
    g4_gguf_writer_add_f32(w, "gemma4.rope.freq_base", 1000000.0f);
    g4_gguf_writer_add_f32(w, "gemma4.rope.freq_base_swa", 10000.0f);
    g4_gguf_writer_add_f32(w, "gemma4.attention.layer_norm_rms_epsilon", 1e-6f);
    g4_gguf_writer_add_u32(w, "gemma4.attention.key_length", (uint32_t)c.head_dim_full);
    g4_gguf_writer_add_u32(w, "gemma4.attention.value_length", (uint32_t)c.head_dim_full);
    g4_gguf_writer_add_u32(w, "gemma4.attention.key_length_swa", (uint32_t)c.head_dim);
    g4_gguf_writer_add_u32(w, "gemma4.attention.value_length_swa", (uint32_t)c.head_dim);
    g4_gguf_writer_add_f32(w, "gemma4.final_logit_softcapping", 30.0f);
    g4_gguf_writer_add_u32(w, "gemma4.attention.sliding_window", (uint32_t)c.sliding_window);
    g4_gguf_writer_add_u32(w, "gemma4.attention.shared_kv_layers", (uint32_t)c.n_shared_kv);
    g4_gguf_writer_add_u32(w, "gemma4.embedding_length_per_layer_input", (uint32_t)c.n_embd_per_layer);
    g4_gguf_writer_add_arr(w, "gemma4.attention.sliding_window_pattern", G4_GGUF_BOOL, swa_pat, (uint64_t)c.n_layer);
    g4_gguf_writer_add_u32(w, "gemma4.rope.dimension_count", (uint32_t)c.head_dim_full);
    g4_gguf_writer_add_u32(w, "gemma4.rope.dimension_count_swa", (uint32_t)c.head_dim);
    if (c.n_expert) {
        g4_gguf_writer_add_u32(w, "gemma4.expert_count", (uint32_t)c.n_expert);
        g4_gguf_writer_add_u32(w, "gemma4.expert_used_count", (uint32_t)c.n_expert_used);
        g4_gguf_writer_add_u32(w, "gemma4.expert_feed_forward_length", (uint32_t)c.n_ff_exp);
    }
keys_done:
    snprintf(cfg, sizeof cfg,
             "{\"generator\": \"g4_make_model\", \"preset\": \"%s\", \"seed\": %" PRIu64 ", \"type\": \"%s\", "
             "\"layer_types\": \"%s\", \"n_embd\": %d, \"n_ff\": %d, \"n_head\": %d, \"shared_kv_layers\": %d, "
             "\"post_gain\": %.6g, \"out_gain\": %.6g}",
             c.preset, seed, g4_quant_mix_name((g4_quant_mix_t)mix), c.layer_types, c.n_embd, c.n_ff, c.n_head,
             c.n_shared_kv, post_gain, out_gain);
    g4_gguf_writer_add_str(w, "synthetic.config", cfg);
    for (int64_t i = 0; i < g4_gguf_n_kv(v); i++) {
        const char *k = g4_gguf_key(v, i);
        if (strncmp(k, "tokenizer.", 10)) continue;
        const void *data;
        uint64_t len;
        const g4_gguf_type_t ty = g4_gguf_kv_raw(v, i, &data, &len);
        if (g4_gguf_writer_add_raw(w, k, ty, data, len) != G4_OK) return 1;
    }
    for (int i = 0; i < l.n; i++)
        if (g4_gguf_writer_add_tensor(w, l.t[i].name, (g4_dtype_t)l.t[i].type, l.t[i].n_dims, l.t[i].ne, NULL)) {
            fprintf(stderr, "g4_make_model: %s: row of %" PRId64 " is not whole %s blocks\n", l.t[i].name, l.t[i].ne[0],
                    g4_dtype_name(l.t[i].type));
            return 1;
        }
    FILE *f = fopen(out, "wb");
    if (!f) {
        fprintf(stderr, "g4_make_model: %s: %s\n", out, strerror(errno));
        return 1;
    }
    if (g4_gguf_writer_write_header(w, f, &err) != G4_OK) {
        fprintf(stderr, "g4_make_model: %s\n", err.msg);
        return 1;
    }

    int counts[G4_DTYPE_COUNT] = {0};
    uint64_t n_params = 0;
    if (s_write_tensors(f, &l, seed, sparse, n_threads, c.head_dim_full, counts, &n_params)) goto io;
    if (sparse && (fflush(f) || ftruncate(fileno(f), ftello(f)))) goto io; /* the holes up to the end */
    if (fclose(f) != 0) goto io;
    f = NULL;
    long bytes = 0;
    {
        FILE *g = fopen(out, "rb");
        if (g) {
            fseek(g, 0, SEEK_END);
            bytes = ftell(g);
            fclose(g);
        }
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("{\"path\": \"%s\", \"bytes\": %ld, \"preset\": \"%s\", \"type\": \"%s\", \"n_layer\": %d, "
           "\"layer_types\": \"%s\", \"shared_kv_layers\": %d, \"n_params\": %" PRIu64 ", \"n_tensors\": %d, "
           "\"tensor_types\": {",
           out, bytes, c.preset, g4_quant_mix_name((g4_quant_mix_t)mix), c.n_layer, c.layer_types, c.n_shared_kv,
           n_params, l.n);
    int first = 1;
    for (int d = 0; d < G4_DTYPE_COUNT; d++)
        if (counts[d]) printf("%s\"%s\": %d", first ? "" : ", ", g4_dtype_name((uint32_t)d), counts[d]), first = 0;
    printf("}, \"threads\": %d, \"peak_rss_mb\": %ld, \"seconds\": %.2f}\n", n_threads, ru.ru_maxrss / 1024,
           s_now() - t0);
    free(l.t);
    g4_gguf_writer_destroy(&w);
    g4_gguf_destroy(&v);
    return 0;
io:
    fprintf(stderr, "g4_make_model: %s: write failed: %s\n", out, strerror(errno));
    if (f) fclose(f);
    return 1;
}
