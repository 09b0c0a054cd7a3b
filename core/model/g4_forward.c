/* g4_forward — the run state of a model (g4_ctx: caches of its sequences,
 * scratch sized once from the hyper-parameters) and the forward pass, in
 * reading order, llama2.c-style:
 *
 *   g4_ctx_forward(batch of T rows: token | soft token, pos, seq)
 *     s_embed      x = embed(tokens)·sqrt(H); ple = per-layer inputs (E)
 *     for l in [begin, end):  s_layer
 *       s_attention  x += rms(attention(rope(q), cache)·Wo)·post_attn_norm
 *       s_ffn        x += rms(GeGLU(rms(x)) [+ s_moe experts])·post_ffw_norm
 *       s_ple        x += rms(Wproj·(gelu(Wgate·x)·ple_l))·post_norm   (E)
 *       x *= layer_output_scale
 *     logits = softcap(rms(x)·output_norm · Woutᵀ)     (last range only)
 *
 * Rounding follows llama.cpp's CPU backend (gemma4-model.md §8). Mirrors
 * llama.cpp src/models/gemma4.cpp. Not here: weights (g4_model.c), the
 * caches' bookkeeping (g4_kv.c), the attention kernels (g4_attn.c). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "g4_act.h"
#include "g4_alloc.h"
#include "g4_attn.h"
#include "g4_dot.h"
#include "g4_matmul.h"
#include "g4_model_internal.h"
#include "g4_norm.h"
#include "g4_rope.h"

/* ====================================================================== */
/* run state                                                              */
/* ====================================================================== */

g4_ctx_t *g4_ctx_new(g4_model_t *m, const g4_ctx_params_t *pp, g4_err_t *err)
{
    const g4_hparams_t *hp = &m->hp;
    g4_ctx_t *c = g4_calloc(1, sizeof *c);
    if (!c) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->m = m;
    if (pp) c->p = *pp;
    if (c->p.n_ubatch <= 0) c->p.n_ubatch = 512;
    if (c->p.n_seq_max <= 0) c->p.n_seq_max = 8;
    c->n_ctx = c->p.n_ctx > 0 ? c->p.n_ctx : (hp->n_ctx_train < 4096 ? (int)hp->n_ctx_train : 4096);
    c->p.n_ctx = c->n_ctx;
    c->n_ring = (int)hp->n_swa + c->p.n_ubatch;
    if (c->n_ring > c->n_ctx) c->n_ring = c->n_ctx;
    c->kv_type = c->p.kv_type;
    if (c->kv_type < G4_KV_F16 || c->kv_type > G4_KV_Q8_0) {
        g4_err_set(err, G4_ERR_RANGE, "unknown KV cache type %d", c->kv_type);
        g4_free(c);
        return NULL;
    }
    if (c->kv_type == G4_KV_Q8_0 && (hp->hd_full % 32 || hp->hd_swa % 32)) {
        g4_err_set(err, G4_ERR_RANGE, "a q8_0 KV cache needs head sizes that are multiples of 32 (%u, %u)",
                   hp->hd_full, hp->hd_swa);
        g4_free(c);
        return NULL;
    }
    c->p.kv_type = c->kv_type;
    c->kv_elem = c->kv_type == G4_KV_F32 ? 4 : c->kv_type == G4_KV_F16 ? 2 : 0;
    if (c->kv_type == G4_KV_Q8_0) {
        /* llama.cpp rotates K (with Q) of each cache by the largest power of two
         * >= 64 dividing its layers' head size, V by 64, when layer 0's head
         * size is a multiple of 64 */
        const int hd0 = (int)(hp->is_swa[0] ? hp->hd_swa : hp->hd_full);
        for (int kind = 0; kind < 2 && hd0 % 64 == 0; kind++) {
            const int hdk = (int)(kind ? hp->hd_swa : hp->hd_full);
            int nrot = 64;
            do nrot *= 2;
            while (hdk % nrot == 0);
            c->rot_k[kind] = nrot / 2, c->rot_v[kind] = 64;
        }
        g4_kernels_init();
        c->simd_step = !strcmp(g4_kernels_isa(), "avx512") ? 64 : !strcmp(g4_kernels_isa(), "avx2") ? 32 : 0;
    }
    /* llama.cpp's sliding cache: n_swa + its ubatch cells, rounded up to 256.
     * Its ubatch is ours + 1: node-llama-cpp (the oracle, and the engine of
     * many applications) sizes llama.cpp's batch one row larger than the
     * batches it feeds when the model has sliding layers.
     * $G4_LLAMA_SWA_CELLS sets the cache size outright (llama-server: n_swa +
     * its -ub, rounded up to 256). */
    for (uint32_t l = 0; l < hp->n_layer && hp->n_swa; l++)
        if (hp->is_swa[l]) {
            const int kv_size = (c->n_ctx + 255) / 256 * 256, want = (int)hp->n_swa + c->p.n_ubatch + 1;
            c->n_lcell = ((want < kv_size ? want : kv_size) + 255) / 256 * 256;
            const char *e = getenv("G4_LLAMA_SWA_CELLS");
            if (e && atoi(e) > 0) c->n_lcell = atoi(e);
            break;
        }
    c->attn_splits = c->p.attn_splits;
    if (c->attn_splits <= 0) {
        const char *e = getenv("G4_ATTN_SPLITS");
        c->attn_splits = e && atoi(e) > 0 ? atoi(e) : g4_cpu_math_cores();
    }
    c->p.attn_splits = c->attn_splits;
    c->seqs = g4_calloc((size_t)c->p.n_seq_max, sizeof *c->seqs);
    c->seq_rows = g4_calloc((size_t)c->p.n_seq_max, sizeof *c->seq_rows);
    c->seq_extra = g4_calloc((size_t)c->p.n_seq_max, sizeof *c->seq_extra);
    const size_t T = (size_t)c->p.n_ubatch, H = hp->n_embd;
    size_t hd_max = hp->hd_full > hp->hd_swa ? hp->hd_full : hp->hd_swa, nkv_max = 0, ff_max = 0;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        if (hp->n_head_kv[l] > nkv_max) nkv_max = hp->n_head_kv[l];
        if (hp->n_ff[l] > ff_max) ff_max = hp->n_ff[l];
    }
    const size_t nq = hp->n_head * hd_max, nkv = nkv_max * hd_max, PW = (size_t)hp->n_layer * hp->ple_dim;
    size_t kmax = H > nq ? H : nq;
    if (ff_max > kmax) kmax = ff_max;
    if (hp->n_ff_exp > kmax) kmax = hp->n_ff_exp;
    c->x = g4_malloc(T * H * 4);
    c->a = g4_malloc(T * H * 4);
    c->q = g4_malloc(T * nq * 4);
    c->k = g4_malloc(T * nkv * 4);
    c->v = g4_malloc(T * nkv * 4);
    c->o = g4_malloc(T * nq * 4);
    c->t1 = g4_malloc(T * H * 4);
    c->fg = g4_malloc(T * (ff_max ? ff_max : 1) * 4);
    c->fu = g4_malloc(T * (ff_max ? ff_max : 1) * 4);
    c->ple = g4_malloc(T * (PW ? PW : 1) * 4);
    c->tok_ple = g4_malloc((PW ? PW : 1) * 4);
    c->rope_cs = g4_malloc(T * hd_max * 4);
    c->row_hi = g4_malloc(T * sizeof *c->row_hi);
    c->row_pos = g4_malloc(2 * T * sizeof *c->row_pos); /* a ubatch, and a restored chunk's rows before it */
    c->blk_t0 = g4_malloc(T * sizeof *c->blk_t0);
    c->blk_n = g4_malloc(T * sizeof *c->blk_n);
    c->row_nkv = g4_malloc(2 * T * sizeof *c->row_nkv);
    c->row_view = g4_malloc(T * (size_t)(c->n_lcell ? c->n_lcell : 1) * sizeof *c->row_view);
    if (hp->n_expert) {
        const size_t E = hp->n_expert, K = hp->n_expert_used, fe = hp->n_ff_exp;
        c->moe_in = g4_malloc(T * H * 4);
        c->moe_acc = g4_malloc(T * H * 4);
        c->moe_g = g4_malloc(T * 2 * fe * 4);
        c->moe_d = g4_malloc(T * H * 4);
        c->moe_probs = g4_malloc(T * E * 4);
        c->moe_sel = g4_malloc(T * K * sizeof(int32_t));
        c->moe_w = g4_malloc(T * K * 4);
    }
    c->mm_scratch_bytes = T * (kmax * 4 + 1024) + 4096;
    c->mm_scratch = g4_malloc_aligned(c->mm_scratch_bytes, 64);
    c->n_thr = omp_get_max_threads();
    /* scores of the query heads sharing a KV head (g4_attn_f32) */
    uint32_t nkv_min = hp->n_head;
    for (uint32_t l = 0; l < hp->n_layer; l++)
        if (hp->n_head_kv[l] && hp->n_head_kv[l] < nkv_min) nkv_min = hp->n_head_kv[l];
    const size_t grp_max = nkv_min ? hp->n_head / nkv_min : 1;
    /* g4_attn_f16: 12 hd bytes; g4_attn_q8: 5 hd + 64; g4_attn_f32: its tiles */
    size_t abuf = g4_attn_f32_buf_bytes((int)(grp_max <= G4_ATTN_GMAX ? grp_max : 1), (int)hd_max);
    if (abuf < 12 * hd_max + 64) abuf = 12 * hd_max + 64;
    if (abuf < g4_attn_f16_buf_bytes((int)(grp_max <= G4_ATTN_GMAX ? grp_max : 1), (int)hd_max))
        abuf = g4_attn_f16_buf_bytes((int)(grp_max <= G4_ATTN_GMAX ? grp_max : 1), (int)hd_max);
    c->attn_buf_stride = (abuf + 256 + 63) & ~(size_t)63;
    c->attn_buf = g4_malloc_aligned(c->attn_buf_stride * (size_t)c->n_thr, 64);
    if (!c->seqs || !c->seq_rows || !c->seq_extra || !c->x || !c->a || !c->q || !c->k || !c->v || !c->o || !c->t1 || !c->fg || !c->fu || !c->ple ||
        !c->tok_ple || !c->rope_cs || !c->row_hi || !c->row_pos || !c->blk_t0 || !c->blk_n || !c->row_nkv || !c->row_view || !c->mm_scratch || !c->attn_buf ||
        (hp->n_expert && (!c->moe_in || !c->moe_acc || !c->moe_g || !c->moe_d || !c->moe_probs || !c->moe_sel ||
                          !c->moe_w))) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory allocating the context (%d rows)", c->p.n_ubatch);
        g4_ctx_destroy(&c);
        return NULL;
    }
    if (c->p.gpu > 0 && g4_fwd_dev_new(c, err)) {
        g4_ctx_destroy(&c);
        return NULL;
    }
    return c;
}

void g4_ctx_destroy(g4_ctx_t **pc)
{
    g4_ctx_t *c = pc ? *pc : NULL;
    if (!c) return;
    if (c->seqs)
        for (int i = 0; i < c->p.n_seq_max; i++) g4_kv_seq_free(c, &c->seqs[i]);
    g4_fwd_dev_free(c); /* after the caches: they may be its memory */
    g4_free(c->seqs);
    g4_free(c->seq_rows);
    g4_free(c->seq_extra);
    float *bufs[] = {c->x, c->a, c->q, c->k, c->v, c->o, c->t1, c->fg, c->fu, c->ple, c->tok_ple,
                     c->rope_cs, c->moe_in, c->moe_acc, c->moe_g, c->moe_d, c->moe_probs, c->moe_w};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) g4_free(bufs[i]);
    g4_free(c->moe_sel);
    g4_free(c->row_hi);
    g4_free(c->row_pos);
    g4_free(c->blk_t0);
    g4_free(c->blk_n);
    g4_free(c->row_nkv);
    g4_free(c->row_view);
    g4_free_aligned(c->mm_scratch);
    g4_free_aligned(c->attn_buf);
    g4_free(c);
    *pc = NULL;
}

void g4_ctx_on_layer(g4_ctx_t *c, void (*fn)(void *user), void *user)
{
    c->on_layer = fn;
    c->on_layer_user = user;
}

int g4_ctx_n_ctx(const g4_ctx_t *c) { return c->n_ctx; }

/* ====================================================================== */
/* forward pass                                                           */
/* ====================================================================== */

static int s_mm(g4_ctx_t *c, const g4_tensor_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx,
                int64_t T, float *Y, int64_t ldy)
{
    return g4_matmul(W, row0, nrows, X, ldx, T, Y, ldy, c->mm_scratch);
}

/* x = embed(tokens)·sqrt(H), soft-token rows as given; E models: the
 * per-layer inputs ple = (rms(x·Wple_proj/sqrt(H))·norm + tok_ple·sqrt(D))/sqrt(2) */
void g4_fwd_embed(g4_ctx_t *c, const g4_batch_t *b, int T)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    const int H = (int)hp->n_embd;
    const float scale = sqrtf((float)H);
    for (int t = 0, k = 0; t < T; t++) {
        float *xt = c->x + (size_t)t * H;
        if (b->embd && (!b->flags || (b->flags[t] & G4_ROW_EMBD))) {
            memcpy(xt, b->embd + (size_t)(k++) * H, (size_t)H * 4); /* soft-token rows in order */
        } else {
            g4_dequant_row(m->tok_embd.dtype, g4_tensor_row(&m->tok_embd, b->tokens[t]), xt, H);
            for (int i = 0; i < H; i++) xt[i] *= scale;
        }
    }
    if (!hp->ple_dim) return;
    const int D = (int)hp->ple_dim, PW = (int)hp->n_layer * D;
    const float sD = sqrtf((float)D), inv_h = 1.0f / sqrtf((float)H), inv_2 = 1.0f / sqrtf(2.0f);
    s_mm(c, &m->ple_proj, 0, -1, c->x, H, T, c->ple, PW);
    for (int t = 0; t < T; t++) {
        float *p = c->ple + (size_t)t * PW;
        const int32_t id = b->embd && (!b->flags || (b->flags[t] & G4_ROW_EMBD)) ? 0 : b->tokens[t];
        g4_dequant_row(m->ple_tok_embd.dtype, g4_tensor_row(&m->ple_tok_embd, id), c->tok_ple, PW);
        for (int i = 0; i < PW; i++) p[i] *= inv_h;
        for (int l = 0; l < (int)hp->n_layer; l++) g4_rmsnorm(p + l * D, m->ple_proj_norm, p + l * D, D, hp->eps);
        for (int i = 0; i < PW; i++) p[i] = (p[i] + c->tok_ple[i] * sD) * inv_2;
    }
}

/* x += rms(attention(q, cache)·Wo)·post_attn_norm, with
 * q = rope(rms_h(a·Wq)·q_norm), a = rms(x)·attn_norm; a layer with its own
 * cache first writes k = rope(rms_h(a·Wk)·k_norm), v = rms_h(Wv ? a·Wv : a·Wk)
 * into it (F16), a KV-sharing layer reads its source layer's. */
static void s_attention(g4_ctx_t *c, int l, const g4_batch_t *b, int T)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    const g4_layer_t *L = &m->layers[l];
    const int H = (int)hp->n_embd, swa = hp->is_swa[l];
    const int hd = (int)(swa ? hp->hd_swa : hp->hd_full), nh = (int)hp->n_head, nkv = (int)hp->n_head_kv[l];
    const int n_rot = (int)(swa ? hp->n_rot_swa : hp->n_rot_full);
    const float base = swa ? hp->rope_base_swa : hp->rope_base_full;
    const float *ff = swa ? NULL : m->rope_freqs;
    const int nq = nh * hd, nkvd = nkv * hd;
    float *x = c->x, *a = c->a;

    for (int t = 0; t < T; t++) g4_rmsnorm(x + (size_t)t * H, L->attn_norm, a + (size_t)t * H, H, hp->eps);
    s_mm(c, &L->wq, 0, -1, a, H, T, c->q, nq);
    for (int t = 0; t < T; t++) g4_rope_cache(c->rope_cs + (size_t)t * hd, b->pos[t], hd, n_rot, base, ff);
    for (int t = 0; t < T; t++) {
        float *qt = c->q + (size_t)t * nq;
        for (int h = 0; h < nh; h++) g4_rmsnorm(qt + h * hd, L->q_norm, qt + h * hd, hd, hp->eps);
        g4_rope_apply(qt, nh, hd, n_rot, c->rope_cs + (size_t)t * hd);
        if (c->rot_k[swa]) g4_kv_rotate(qt, nq, c->rot_k[swa]); /* Q8_0 cache: Q as K */
    }
    const int src = g4_model_kv_source(m, l);
    if (src == l) {
        s_mm(c, &L->wk, 0, -1, a, H, T, c->k, nkvd);
        if (L->has_wv) s_mm(c, &L->wv, 0, -1, a, H, T, c->v, nkvd);
        else memcpy(c->v, c->k, (size_t)T * nkvd * 4); /* K = V: the raw projection */
        for (int t = 0; t < T; t++) {
            float *kt = c->k + (size_t)t * nkvd, *vt = c->v + (size_t)t * nkvd;
            for (int h = 0; h < nkv; h++) {
                g4_rmsnorm(kt + h * hd, L->k_norm, kt + h * hd, hd, hp->eps);
                g4_rmsnorm(vt + h * hd, NULL, vt + h * hd, hd, hp->eps);
            }
            g4_rope_apply(kt, nkv, hd, n_rot, c->rope_cs + (size_t)t * hd);
            if (c->rot_k[swa]) g4_kv_rotate(kt, nkvd, c->rot_k[swa]);
            if (c->rot_v[swa]) g4_kv_rotate(vt, nkvd, c->rot_v[swa]);
            g4_seq_t *s = &c->seqs[b->seq[t]];
            g4_kv_store(c, s->k[l], g4_kv_cells(c, l), kt, nkvd, b->pos[t]);
            g4_kv_store(c, s->v[l], g4_kv_cells(c, l), vt, nkvd, b->pos[t]);
        }
    }
    /* attention */
    /* llama.cpp picks its attention kernel by the rows in the batch; g4 picks
     * it per sequence (its own rows), so a sequence computes the same numbers
     * whatever other sequences share the batch */
    const int cells = g4_kv_cells(c, src);
    for (int t = 0; t < T; t++) c->seq_rows[b->seq[t]] = c->seq_extra[b->seq[t]];
    for (int t = 0; t < T; t++) c->seq_rows[b->seq[t]]++;
    const size_t row_bytes = g4_kv_row_bytes(c, src);
    const int grp = nh / nkv;
    const int f16 = c->kv_elem == 2, q8 = c->kv_type == G4_KV_Q8_0;
    /* an item is the G query heads of one KV head (fewer when single-query
     * rows would otherwise leave threads idle; one with a Q8_0 cache) */
    /* a row of a one-row call (or fed again as one: G4_ROW_STEP) */
#define ROW_STEP(t) (c->seq_rows[b->seq[t]] == 1 || (b->flags && (b->flags[t] & G4_ROW_STEP)))
    int G = grp <= G4_ATTN_GMAX ? grp : 1, single = 0;
    for (int t = 0; t < T && G > 1; t++) {
        if (q8) G = 1;
        else if (f16 && (c->seq_rows[b->seq[t]] < 64 || ROW_STEP(t))) single = 1;
    }
    /* single-query rows: the group shares each K/V row read (g4_attn_f16_g),
     * but is made smaller while it would leave threads without a head */
    if (single) {
        const int nt = g4_kernels_threads();
        while (G > 1 && (nh / G < nt || grp % G)) G--;
    }
    const int nhg = nh / G;
    /* blocks of rows: a row alone (single-query kernel), or up to
     * G4_ATTN_TILE_Q consecutive rows of one sequence (tiled kernel: each K/V
     * tile is widened once for all of them) */
    int nblk = 0;
    for (int t = 0; t < T;) {
        int n = 1;
        if (!q8 && (!f16 || c->seq_rows[b->seq[t]] >= 64) && !ROW_STEP(t))
            while (t + n < T && n < G4_ATTN_TILE_Q && b->seq[t + n] == b->seq[t] && !ROW_STEP(t + n)) n++;
        c->blk_t0[nblk] = t, c->blk_n[nblk++] = n;
        t += n;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(nblk * nhg > 1 ? g4_kernels_threads() : 1)
    for (int i = 0; i < nblk * nhg; i++) {
        const int t0 = c->blk_t0[i / nhg], nr = c->blk_n[i / nhg], h = (i % nhg) * G, kh = h / grp;
        g4_seq_t *s = &c->seqs[b->seq[t0]];
        int lo[G4_ATTN_TILE_Q], hi[G4_ATTN_TILE_Q];
        for (int r = 0; r < nr; r++) {
            const int p1 = b->pos[t0 + r];
            hi[r] = swa ? c->row_hi[t0 + r] : p1;
            lo[r] = swa ? (p1 - (int)hp->n_swa + 1 > 0 ? p1 - (int)hp->n_swa + 1 : 0) : 0;
        }
        const uint8_t *K = (const uint8_t *)s->k[src] + (size_t)kh * g4_kv_head_bytes(c, hd);
        const uint8_t *V = (const uint8_t *)s->v[src] + (size_t)kh * g4_kv_head_bytes(c, hd);
        uint8_t *buf = c->attn_buf + c->attn_buf_stride * (size_t)omp_get_thread_num();
        const float *qv = c->q + (size_t)t0 * nq + (size_t)h * hd;
        float *out = c->o + (size_t)t0 * nq + (size_t)h * hd;
        const int step = ROW_STEP(t0), fed_again = step && c->seq_rows[b->seq[t0]] > 1;
        const g4_attn_view_t vw = fed_again ? (g4_attn_view_t){swa && c->n_lcell ? c->row_view + (size_t)t0 * c->n_lcell : NULL,
                                                              c->row_nkv[2 * t0 + swa], cells}
                                            : (g4_attn_view_t){swa ? s->lcell : NULL, swa ? s->nkv_swa : s->nkv_full, cells};
        if (q8) { /* a quantized cache: the single-query kernel for every row */
            for (int g = 0; g < G; g++)
                g4_attn_q8(qv + (size_t)g * hd, K, V, row_bytes, hd, lo[0], hi[0], &vw, c->simd_step,
                           out + (size_t)g * hd, buf);
        } else if (f16 && (c->seq_rows[b->seq[t0]] < 64 || step)) {
            /* the split-KV path serves a one-row call (a decode step) */
            const int splits = step ? c->attn_splits : 1;
            g4_attn_f16_g(qv, G, K, V, row_bytes, hd, lo[0], hi[0], &vw, splits, out, buf);
        } else {
            g4_attn_f32(qv, (size_t)nq, nr, G, K, V, row_bytes, f16, hd, lo, hi, &vw, out, (size_t)nq, buf);
        }
    }
#undef ROW_STEP
    if (c->rot_v[swa])
        for (int t = 0; t < T; t++) g4_kv_rotate(c->o + (size_t)t * nq, nq, c->rot_v[swa]); /* back from V's rotation */
    s_mm(c, &L->wo, 0, -1, c->o, nq, T, c->t1, H);
    for (int t = 0; t < T; t++) {
        float *r = c->t1 + (size_t)t * H, *xt = x + (size_t)t * H;
        g4_rmsnorm(r, L->post_attn_norm, r, H, hp->eps);
        for (int i = 0; i < H; i++) xt[i] += r[i]; /* x is now h1 */
    }
}

/* routed experts of a MoE layer (26B-A4B): router softmax, top-K by
 * probability renormalised, each token's experts summed in selection order;
 * out = rms(Σ)·post_ffw_norm_2. Mirrors llama.cpp's build_moe_ffn. */
static void s_moe(g4_ctx_t *c, const g4_layer_t *L, int T, const float *h1, float *out)
{
    const g4_hparams_t *hp = &c->m->hp;
    const int H = (int)hp->n_embd, E = (int)hp->n_expert, K = (int)hp->n_expert_used, fe = (int)hp->n_ff_exp;
    const float inv_sqrt_h = 1.0f / sqrtf((float)H);
    /* router on h1 (weightless rms, 1/sqrt(H), learned scale) */
    for (int t = 0; t < T; t++) {
        float *r = c->a + (size_t)t * H;
        g4_rmsnorm(h1 + (size_t)t * H, NULL, r, H, hp->eps);
        for (int i = 0; i < H; i++) r[i] = (r[i] * inv_sqrt_h) * L->gate_inp_scale[i];
    }
    s_mm(c, &L->gate_inp, 0, -1, c->a, H, T, c->moe_probs, E);
    g4_fwd_moe_route(c, T);
    /* experts: input e_in = rms(h1)·pre_ffw_norm_2, grouped by expert */
    for (int t = 0; t < T; t++) g4_rmsnorm(h1 + (size_t)t * H, L->pre_ffw_norm_2, c->moe_in + (size_t)t * H, H, hp->eps);
    /* per token, accumulate expert outputs in selection order */
    float *acc = c->moe_acc;
    for (int t = 0; t < T; t++) {
        for (int k = 0; k < K; k++) {
            const int e = c->moe_sel[t * K + k];
            const float *xin = c->moe_in + (size_t)t * H;
            float *g = c->moe_g, *u = c->moe_g + fe;
            if (L->fused_gate_up) {
                s_mm(c, &L->gate_up_exps, (int64_t)e * 2 * fe, 2 * fe, xin, H, 1, g, 2 * fe);
            } else {
                s_mm(c, &L->gate_exps, (int64_t)e * fe, fe, xin, H, 1, g, fe);
                s_mm(c, &L->up_exps, (int64_t)e * fe, fe, xin, H, 1, u, fe);
            }
            g4_geglu(g, u, g, fe);
            float *d = c->moe_d;
            s_mm(c, &L->down_exps, (int64_t)e * H, H, g, fe, 1, d, H);
            const float es = L->down_exps_scale ? L->down_exps_scale[e] : 1.0f, wk = c->moe_w[t * K + k];
            float *o = acc + (size_t)t * H;
            for (int i = 0; i < H; i++) {
                float vv = d[i];
                if (L->down_exps_scale) vv *= es;
                vv *= wk;
                o[i] = k == 0 ? vv : o[i] + vv;
            }
        }
    }
    /* out may alias moe_in: every expert input has been consumed */
    for (int t = 0; t < T; t++) g4_rmsnorm(acc + (size_t)t * H, L->post_ffw_norm_2, out + (size_t)t * H, H, hp->eps);
}

/* the router: softmax of each row's expert logits, the top K by probability
 * (the first on ties), their weights renormalised */
void g4_fwd_moe_route(g4_ctx_t *c, int T)
{
    const g4_hparams_t *hp = &c->m->hp;
    const int E = (int)hp->n_expert, K = (int)hp->n_expert_used;
    for (int t = 0; t < T; t++) {
        float *pr = c->moe_probs + (size_t)t * E;
        g4_softmax(pr, E);
        int32_t *sel = c->moe_sel + (size_t)t * K;
        float *w = c->moe_w + (size_t)t * K, sum = 0;
        for (int k = 0; k < K; k++) {
            int best = -1;
            for (int e = 0; e < E; e++) {
                int taken = 0;
                for (int j = 0; j < k; j++) taken |= sel[j] == e;
                if (!taken && (best < 0 || pr[e] > pr[best])) best = e;
            }
            sel[k] = best;
            w[k] = pr[best];
            sum += w[k];
        }
        if (sum < 6.103515625e-5f) sum = 6.103515625e-5f;
        for (int k = 0; k < K; k++) w[k] /= sum;
    }
}

/* x += rms(FFN(rms(x)·ffn_norm))·post_ffw_norm: GeGLU; on MoE models the
 * dense branch (post_ffw_norm_1) plus the routed experts (s_moe). */
static void s_ffn(g4_ctx_t *c, int l, int T)
{
    const g4_hparams_t *hp = &c->m->hp;
    const g4_layer_t *L = &c->m->layers[l];
    const int H = (int)hp->n_embd;
    float *x = c->x, *a = c->a;
    const int ff_n = (int)hp->n_ff[l];
    for (int t = 0; t < T; t++) g4_rmsnorm(x + (size_t)t * H, L->ffn_norm, a + (size_t)t * H, H, hp->eps);
    s_mm(c, &L->gate, 0, -1, a, H, T, c->fg, ff_n);
    s_mm(c, &L->up, 0, -1, a, H, T, c->fu, ff_n);
    g4_geglu(c->fg, c->fu, c->fg, (int64_t)T * ff_n);
    s_mm(c, &L->down, 0, -1, c->fg, ff_n, T, c->t1, H);
    if (hp->n_expert) {
        for (int t = 0; t < T; t++) g4_rmsnorm(c->t1 + (size_t)t * H, L->post_ffw_norm_1, c->t1 + (size_t)t * H, H, hp->eps);
        s_moe(c, L, T, x, c->moe_in); /* f2 = rms(Σ experts)·post_ffw_norm_2 */
    }
    for (int t = 0; t < T; t++) {
        float *f = c->t1 + (size_t)t * H, *xt = x + (size_t)t * H;
        if (hp->n_expert) {
            const float *f2 = c->moe_in + (size_t)t * H;
            for (int i = 0; i < H; i++) f[i] = f[i] + f2[i];
        }
        g4_rmsnorm(f, L->post_ffw_norm, f, H, hp->eps);
        for (int i = 0; i < H; i++) xt[i] += f[i];
    }
}

/* E models: x += rms(Wproj·(gelu(Winp_gate·x)·ple_l))·post_norm */
static void s_ple(g4_ctx_t *c, int l, int T)
{
    const g4_hparams_t *hp = &c->m->hp;
    const g4_layer_t *L = &c->m->layers[l];
    const int H = (int)hp->n_embd;
    float *x = c->x;
    const int D = (int)hp->ple_dim, PW = (int)hp->n_layer * D;
    s_mm(c, &L->inp_gate, 0, -1, x, H, T, c->fg, D);
    g4_gelu(c->fg, c->fg, (int64_t)T * D);
    for (int t = 0; t < T; t++) {
        float *g = c->fg + (size_t)t * D;
        const float *pl = c->ple + (size_t)t * PW + (size_t)l * D;
        for (int i = 0; i < D; i++) g[i] *= pl[i];
    }
    s_mm(c, &L->proj, 0, -1, c->fg, D, T, c->t1, H);
    for (int t = 0; t < T; t++) {
        float *r = c->t1 + (size_t)t * H, *xt = x + (size_t)t * H;
        g4_rmsnorm(r, L->post_norm, r, H, hp->eps);
        for (int i = 0; i < H; i++) xt[i] += r[i];
    }
}

/* one decoder layer over the T rows of c->x */
static void s_layer(g4_ctx_t *c, int l, const g4_batch_t *b, int T)
{
    const g4_hparams_t *hp = &c->m->hp;
    const g4_layer_t *L = &c->m->layers[l];
    s_attention(c, l, b, T);
    s_ffn(c, l, T);
    if (hp->ple_dim) s_ple(c, l, T);
    if (L->has_out_scale)
        for (size_t i = 0; i < (size_t)T * hp->n_embd; i++) c->x[i] *= L->out_scale;
}

/* The forward pass over one batch: ubatches in turn; rows checked, embedded
 * (or taken from the previous stage), each layer of the range, then hidden
 * states out or the final norm, LM head and soft-cap. */
int g4_ctx_forward(g4_ctx_t *c, const g4_batch_t *b, const float *hidden_in, float *ple_io, float *hidden_out,
                   float *logits, g4_err_t *err)
{
    const g4_model_t *m = c->m;
    const g4_hparams_t *hp = &m->hp;
    const int H = (int)hp->n_embd, PW = (int)(hp->n_layer * hp->ple_dim);
    if (b->n <= 0) return G4_OK;
    g4_warm_adopt(c->m);
    if (b->n > c->p.n_ubatch) {
        /* split into ubatches, keeping logits in row order */
        int done = 0, n_out = 0;
        while (done < b->n) {
            const int n = b->n - done < c->p.n_ubatch ? b->n - done : c->p.n_ubatch;
            int e_done = done; /* soft-token rows before this piece */
            if (b->flags) {
                e_done = 0;
                for (int i = 0; i < done; i++) e_done += (b->flags[i] & G4_ROW_EMBD) != 0;
            }
            g4_batch_t sub = {n, b->tokens ? b->tokens + done : NULL, b->embd ? b->embd + (size_t)e_done * H : NULL,
                              b->pos + done, b->seq + done, b->want_logits ? b->want_logits + done : NULL,
                              b->flags ? b->flags + done : NULL};
            int rc = g4_ctx_forward(c, &sub, hidden_in ? hidden_in + (size_t)done * H : NULL,
                                    ple_io ? ple_io + (size_t)done * PW : NULL,
                                    hidden_out ? hidden_out + (size_t)done * H : NULL,
                                    logits ? logits + (size_t)n_out * hp->n_vocab : NULL, err);
            if (rc) return rc;
            for (int i = 0; i < n; i++) n_out += !sub.want_logits || sub.want_logits[i];
            done += n;
        }
        return G4_OK;
    }
    const int T = b->n;
    /* validate rows: known sequences, positions continue each sequence in order */
    for (int t = 0; t < T; t++) {
        g4_seq_t *s = g4_kv_seq(c, b->seq[t]);
        if (!s) return g4_err_set(err, G4_ERR_RANGE, "row %d: no sequence %d", t, b->seq[t]);
        const int is_embd = b->embd && (!b->flags || (b->flags[t] & G4_ROW_EMBD));
        if (!is_embd && m->begin == 0 && (b->tokens[t] < 0 || (uint32_t)b->tokens[t] >= hp->n_vocab))
            return g4_err_set(err, G4_ERR_RANGE, "row %d: token id %d is outside the vocabulary (%u)", t, b->tokens[t],
                              hp->n_vocab);
        int expect = s->n_past;
        for (int u = 0; u < t; u++) expect += b->seq[u] == b->seq[t];
        if (b->pos[t] != expect)
            return g4_err_set(err, G4_ERR_RANGE, "row %d: position %d does not continue sequence %d (next is %d)", t,
                              b->pos[t], b->seq[t], expect);
        if (b->pos[t] >= c->n_ctx)
            return g4_err_set(err, G4_ERR_RANGE, "sequence %d is full (%d positions)", b->seq[t], c->n_ctx);
    }
    /* last position each row sees: itself, or the end of its run of
     * bidirectional rows (same sequence, consecutive positions) */
    for (int t = T - 1; t >= 0; t--) {
        c->row_hi[t] = b->pos[t];
        if (b->flags && (b->flags[t] & G4_ROW_BIDIR) && t + 1 < T && (b->flags[t + 1] & G4_ROW_BIDIR) &&
            b->seq[t + 1] == b->seq[t] && b->pos[t + 1] == b->pos[t] + 1)
            c->row_hi[t] = c->row_hi[t + 1];
    }
    /* where llama.cpp would put these rows: the order attention visits them in */
    for (int t = 0; t < T; t++) {
        int first = 1;
        for (int u = 0; u < t && first; u++) first = b->seq[u] != b->seq[t];
        if (!first) continue;
        g4_seq_t *s = &c->seqs[b->seq[t]];
        if (b->flags && (b->flags[t] & G4_ROW_STEP)) {
            /* decode steps fed again: placed one at a time, each row with the
             * view it had then */
            s->start0 = s->vhead = -1;
            for (int u = t; u < T; u++) {
                if (b->seq[u] != b->seq[t]) continue;
                g4_kv_view_step(c, s, &b->pos[u], 1);
                if (c->n_lcell) memcpy(c->row_view + (size_t)u * c->n_lcell, s->lcell, (size_t)c->n_lcell * 4);
                c->row_nkv[2 * u] = s->nkv_full, c->row_nkv[2 * u + 1] = s->nkv_swa;
            }
            continue;
        }
        /* prompt rows: the layout before them is what a saved chunk keeps
         * (g4_prefix.c); a sequence restored inside a chunk lays out the
         * chunk's cached rows first, as the cold run placed them with these */
        int32_t *pos = (int32_t *)c->row_pos;
        int n = 0;
        if (s->vhead >= 0 && s->n_past - s->vhead <= c->p.n_ubatch)
            for (int p = s->vhead; p < s->n_past; p++) pos[n++] = p;
        c->seq_extra[b->seq[t]] = n;
        for (int u = t; u < T; u++)
            if (b->seq[u] == b->seq[t]) pos[n++] = b->pos[u];
        if (c->n_lcell) memcpy(s->lcell0, s->lcell, (size_t)c->n_lcell * sizeof *s->lcell0);
        s->lhead0 = s->lhead, s->start0 = pos[0], s->vhead = -1;
        g4_kv_view_step(c, s, pos, n);
    }
    if (c->dev) { /* the layers on the GPU (g4_forward_cuda.c) */
        const int rc = g4_fwd_dev_forward(c, b, T, hidden_in, ple_io, hidden_out, logits, err);
        for (int t = 0; t < T; t++) {
            g4_seq_t *s = &c->seqs[b->seq[t]];
            if (!rc && b->pos[t] + 1 > s->n_past) s->n_past = b->pos[t] + 1;
            c->seq_extra[b->seq[t]] = 0;
        }
        return rc;
    }
    if (m->begin == 0) {
        g4_fwd_embed(c, b, T);
        if (ple_io && PW) memcpy(ple_io, c->ple, (size_t)T * PW * 4);
    } else {
        if (!hidden_in) return g4_err_set(err, G4_ERR_RANGE, "layers from %d need hidden states as input", m->begin);
        memcpy(c->x, hidden_in, (size_t)T * H * 4);
        if (PW) {
            if (!ple_io) return g4_err_set(err, G4_ERR_RANGE, "layers from %d need per-layer inputs", m->begin);
            memcpy(c->ple, ple_io, (size_t)T * PW * 4);
        }
    }
    for (int l = m->begin; l < m->end; l++) {
        s_layer(c, l, b, T);
        if (c->on_layer) c->on_layer(c->on_layer_user);
    }
    for (int t = 0; t < T; t++) {
        g4_seq_t *s = &c->seqs[b->seq[t]];
        if (b->pos[t] + 1 > s->n_past) s->n_past = b->pos[t] + 1;
        c->seq_extra[b->seq[t]] = 0;
    }
    if (m->end < (int)hp->n_layer) {
        if (!hidden_out) return g4_err_set(err, G4_ERR_RANGE, "layers up to %d must hand on hidden states", m->end);
        memcpy(hidden_out, c->x, (size_t)T * H * 4);
        return G4_OK;
    }
    if (hidden_out) memcpy(hidden_out, c->x, (size_t)T * H * 4);
    if (!logits) return G4_OK;
    int n_out = 0;
    for (int t = 0; t < T; t++) {
        if (b->want_logits && !b->want_logits[t]) continue;
        g4_rmsnorm(c->x + (size_t)t * H, m->output_norm, c->a + (size_t)n_out * H, H, hp->eps);
        n_out++;
    }
    s_mm(c, &m->output, 0, -1, c->a, H, n_out, logits, hp->n_vocab);
    if (hp->softcap > 0) g4_softcap(logits, (int64_t)n_out * hp->n_vocab, hp->softcap);
    return G4_OK;
}
