/* g4_draft — the gemma4-assistant drafter and the rewind of a verified
 * sequence (see g4_draft.h). The assistant mirrors llama.cpp's
 * src/models/gemma4-assistant.cpp, one row per step:
 *
 *   xh  = [tok_embd_target(tok)·sqrt(Hb), h_in]            (Hb: the target's width)
 *   x   = W_pre·xh
 *   for each layer (no K/V of its own: sliding layers read the target's last
 *   sliding layer's cache, full layers its last full layer's, as llama.cpp's
 *   share callback: target layers n_layer-2 and n_layer-1):
 *     q = rope(rms_h(rms(x)·attn_norm·Wq)·q_norm);  o = attention(q, target cache)
 *     x += rms(o·Wo)·post_attn_norm
 *     x += rms(GeGLU(rms(x)·ffn_norm))·post_ffw_norm;  x *= layer_output_scale
 *   n = rms(x)·output_norm;  logits = tok_embd·n (no soft-cap);  h_out = W_post·n
 *
 * Drafts only decide how many tokens a verification pass may accept, never
 * which: the attention here reads the cache in position order with one chunk
 * (llama.cpp's drafter rounds differently; acceptance, not output, can move). */
#include "g4_draft.h"

#include <math.h>
#include <stdio.h>
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

#define S_ARCH "gemma4-assistant"

typedef struct s_alayer {
    g4_tensor_t wq, wo, gate, up, down;
    float *attn_norm, *q_norm, *post_attn_norm, *ffn_norm, *post_ffw_norm;
    float out_scale;
} s_alayer_t;

struct g4_draft {
    g4_gguf_t *gguf;
    const g4_model_t *tgt;
    int n_layer, H, Hb, n_head, hd_full, hd_swa, n_rot_full, n_rot_swa, n_vocab, ff_max;
    float base_full, base_swa, eps;
    uint8_t is_swa[G4_MAX_LAYERS];
    uint32_t n_ff[G4_MAX_LAYERS];
    int src_swa, src_full; /* target layers whose caches the assistant reads */
    g4_tensor_t tok_embd, pre, post;
    float *output_norm, *rope_freqs;
    s_alayer_t *layers;
    float **owned;
    int n_owned;
    /* scratch for one row */
    float *xh, *x, *a, *q, *o, *t1, *fg, *fu, *cs;
    void *mm_scratch;
    uint8_t *attn_buf;
};

int g4_draft_is_assistant(const g4_gguf_t *g)
{
    const char *s;
    uint64_t n;
    return !g4_gguf_get_str(g, "general.architecture", &s, &n, NULL) && n == strlen(S_ARCH) && !memcmp(s, S_ARCH, n);
}

/* ---- loading --------------------------------------------------------------------------- */

static int s_u32(const g4_draft_t *d, const char *k, int64_t def, uint32_t *out, g4_err_t *err)
{
    char key[160];
    snprintf(key, sizeof key, S_ARCH ".%s", k);
    if (g4_gguf_find_key(d->gguf, key) < 0) {
        if (def < 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing key '%s'", g4_gguf_path(d->gguf), key);
        *out = (uint32_t)def;
        return G4_OK;
    }
    return g4_gguf_get_u32(d->gguf, key, out, err);
}

static int s_f32(const g4_draft_t *d, const char *k, float def, float *out, g4_err_t *err)
{
    char key[160];
    snprintf(key, sizeof key, S_ARCH ".%s", k);
    if (g4_gguf_find_key(d->gguf, key) < 0) {
        *out = def;
        return G4_OK;
    }
    return g4_gguf_get_f32(d->gguf, key, out, err);
}

/* feed_forward_length: one value or one per layer */
static int s_ff(g4_draft_t *d, g4_err_t *err)
{
    const char *key = S_ARCH ".feed_forward_length";
    const int64_t i = g4_gguf_find_key(d->gguf, key);
    if (i < 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing key '%s'", g4_gguf_path(d->gguf), key);
    g4_gguf_value_t v;
    g4_gguf_kv_value(d->gguf, i, &v);
    for (int l = 0; l < d->n_layer; l++) {
        int64_t x = 0;
        if (v.type == G4_GGUF_ARRAY) {
            g4_gguf_value_t e;
            if (v.arr_n != (uint64_t)d->n_layer)
                return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' needs one entry per layer", g4_gguf_path(d->gguf), key);
            g4_gguf_arr_get(d->gguf, &v, (uint64_t)l, &e);
            if (g4_gguf_value_as_i64(&e, &x)) x = 0;
        } else if (g4_gguf_value_as_i64(&v, &x)) {
            x = 0;
        }
        if (x <= 0 || x > (1 << 20))
            return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' is not a usable width", g4_gguf_path(d->gguf), key);
        d->n_ff[l] = (uint32_t)x;
        if ((int)x > d->ff_max) d->ff_max = (int)x;
    }
    return G4_OK;
}

static int s_tensor(g4_draft_t *d, const char *name, int64_t ne0, int64_t ne1, g4_tensor_t *out, g4_err_t *err)
{
    const int64_t i = g4_gguf_find_tensor(d->gguf, name);
    if (i < 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor '%s'", g4_gguf_path(d->gguf), name);
    g4_gguf_tensor(d->gguf, i, out);
    if (out->ne[0] != ne0 || out->ne[1] != ne1 || out->ne[2] != 1)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld]",
                          g4_gguf_path(d->gguf), name, (long long)out->ne[0], (long long)out->ne[1], (long long)ne0,
                          (long long)ne1);
    if (ne1 > 1 && !g4_type_ops(out->dtype))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has type %s, which g4 cannot compute with",
                          g4_gguf_path(d->gguf), name, g4_dtype_name(out->dtype));
    return G4_OK;
}

/* a 1-D tensor of n values as an f32 copy */
static int s_vec(g4_draft_t *d, const char *name, int64_t n, float **out, g4_err_t *err)
{
    g4_tensor_t t;
    int rc = s_tensor(d, name, n, 1, &t, err);
    if (rc) return rc;
    if (!g4_dtype_traits(t.dtype)->computable)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has type %s, expected F32", g4_gguf_path(d->gguf), name,
                          g4_dtype_name(t.dtype));
    float **o = g4_realloc(d->owned, (size_t)(d->n_owned + 1) * sizeof *o);
    if (!o) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    d->owned = o;
    if (!(*out = o[d->n_owned] = g4_malloc((size_t)n * sizeof(float)))) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    d->n_owned++;
    g4_dequant_row(t.dtype, t.data, *out, n);
    return G4_OK;
}

#define TN(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)

static int s_load_layer(g4_draft_t *d, int l, g4_err_t *err)
{
    s_alayer_t *L = &d->layers[l];
    char nm[128];
    const int64_t H = d->H, hd = d->is_swa[l] ? d->hd_swa : d->hd_full, nq = (int64_t)d->n_head * hd, ff = d->n_ff[l];
    int rc;
    float *sc;
    if ((rc = s_vec(d, TN("blk.%d.attn_norm.weight", l), H, &L->attn_norm, err))) return rc;
    if ((rc = s_tensor(d, TN("blk.%d.attn_q.weight", l), H, nq, &L->wq, err))) return rc;
    if ((rc = s_tensor(d, TN("blk.%d.attn_output.weight", l), nq, H, &L->wo, err))) return rc;
    if ((rc = s_vec(d, TN("blk.%d.attn_q_norm.weight", l), hd, &L->q_norm, err))) return rc;
    if ((rc = s_vec(d, TN("blk.%d.post_attention_norm.weight", l), H, &L->post_attn_norm, err))) return rc;
    if ((rc = s_vec(d, TN("blk.%d.layer_output_scale.weight", l), 1, &sc, err))) return rc;
    L->out_scale = sc[0];
    if ((rc = s_vec(d, TN("blk.%d.ffn_norm.weight", l), H, &L->ffn_norm, err))) return rc;
    if ((rc = s_tensor(d, TN("blk.%d.ffn_gate.weight", l), H, ff, &L->gate, err))) return rc;
    if ((rc = s_tensor(d, TN("blk.%d.ffn_up.weight", l), H, ff, &L->up, err))) return rc;
    if ((rc = s_tensor(d, TN("blk.%d.ffn_down.weight", l), ff, H, &L->down, err))) return rc;
    return s_vec(d, TN("blk.%d.post_ffw_norm.weight", l), H, &L->post_ffw_norm, err);
}

/* the keys, checked against the target whose caches the layers read */
static int s_hparams(g4_draft_t *d, g4_err_t *err)
{
    const g4_hparams_t *tp = &d->tgt->hp;
    const char *path = g4_gguf_path(d->gguf);
    uint32_t u, nl, nextn;
    int rc;
    if ((rc = s_u32(d, "embedding_length", -1, &u, err))) return rc;
    d->H = (int)u;
    if ((rc = s_u32(d, "embedding_length_out", -1, &u, err))) return rc;
    d->Hb = (int)u;
    if ((rc = s_u32(d, "block_count", -1, &nl, err))) return rc;
    if ((rc = s_u32(d, "nextn_predict_layers", nl, &nextn, err))) return rc;
    if (nl == 0 || nl > G4_MAX_LAYERS || nextn != nl)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: %u layers, %u of them drafting: g4 runs assistants made of drafting "
                          "layers only", path, nl, nextn);
    d->n_layer = (int)nl;
    if ((rc = s_u32(d, "attention.head_count", -1, &u, err))) return rc;
    d->n_head = (int)u;
    if (d->H <= 0 || d->H > (1 << 20) || d->n_head <= 0 || d->n_head > 4096)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: width %d / %d heads are not usable", path, d->H, d->n_head);
    if ((rc = s_u32(d, "attention.key_length", (int64_t)(d->H / d->n_head), &u, err))) return rc;
    d->hd_full = (int)u;
    if ((rc = s_u32(d, "attention.key_length_swa", -1, &u, err))) return rc;
    d->hd_swa = (int)u;
    if ((rc = s_u32(d, "rope.dimension_count", d->hd_full, &u, err))) return rc;
    d->n_rot_full = (int)u;
    if ((rc = s_u32(d, "rope.dimension_count_swa", d->n_rot_full, &u, err))) return rc;
    d->n_rot_swa = (int)u;
    if ((rc = s_f32(d, "rope.freq_base", 10000.f, &d->base_full, err))) return rc;
    if ((rc = s_f32(d, "rope.freq_base_swa", 10000.f, &d->base_swa, err))) return rc;
    char key[160];
    snprintf(key, sizeof key, S_ARCH ".attention.layer_norm_rms_epsilon");
    if ((rc = g4_gguf_get_f32(d->gguf, key, &d->eps, err))) return rc;
    if ((rc = s_ff(d, err))) return rc;
    g4_gguf_value_t pat;
    snprintf(key, sizeof key, S_ARCH ".attention.sliding_window_pattern");
    if ((rc = g4_gguf_get_arr(d->gguf, key, &pat, err))) return rc;
    if (pat.arr_n != nl) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' needs %u entries", path, key, nl);
    for (uint32_t l = 0; l < nl; l++) {
        g4_gguf_value_t e;
        g4_gguf_arr_get(d->gguf, &pat, l, &e);
        if (e.type != G4_GGUF_BOOL) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' must be BOOL", path, key);
        d->is_swa[l] = (uint8_t)e.v.u;
    }
    /* what the target must match */
    if (d->Hb != (int)tp->n_embd)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: drafts for a backbone of width %d, the target has %u", path, d->Hb,
                          tp->n_embd);
    if (d->hd_full != (int)tp->hd_full || d->hd_swa != (int)tp->hd_swa)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: head sizes %d / %d (full / sliding), the target's are %u / %u", path,
                          d->hd_full, d->hd_swa, tp->hd_full, tp->hd_swa);
    if (d->n_rot_full > d->hd_full || d->n_rot_swa > d->hd_swa || d->n_rot_full % 2 || d->n_rot_swa % 2)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: rope dimension counts exceed the head sizes", path);
    if (tp->n_layer < 2) return g4_err_set(err, G4_ERR_FORMAT, "%s: the target has fewer than 2 layers", path);
    d->src_swa = g4_hparams_kv_source(tp, (int)tp->n_layer - 2);
    d->src_full = g4_hparams_kv_source(tp, (int)tp->n_layer - 1);
    if (!tp->is_swa[d->src_swa] || tp->is_swa[d->src_full])
        return g4_err_set(err, G4_ERR_FORMAT, "%s: the target's last two layers must be sliding, then full", path);
    for (int l = 0; l < d->n_layer; l++) {
        const uint32_t nkv = tp->n_head_kv[d->is_swa[l] ? d->src_swa : d->src_full];
        if ((uint32_t)d->n_head % nkv)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: %d heads do not share the target's %u KV heads evenly", path,
                              d->n_head, nkv);
    }
    return G4_OK;
}

g4_draft_t *g4_draft_load(const char *path, const g4_model_t *target, g4_err_t *err)
{
    g4_draft_t *d = g4_calloc(1, sizeof *d);
    if (!d) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->tgt = target;
    if (!(d->gguf = g4_gguf_open(path, err))) goto fail;
    if (!g4_draft_is_assistant(d->gguf)) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: not a " S_ARCH " model", path);
        goto fail;
    }
    if (target->end != (int)target->hp.n_layer) {
        g4_err_set(err, G4_ERR_STATE, "an assistant drafts after the model's last layer (%u), not after layers [%d, %d)",
                   target->hp.n_layer, target->begin, target->end);
        goto fail;
    }
    if (s_hparams(d, err)) goto fail;
    /* (a stage holds the caches of its own layers, and of earlier ones it imports) */
    for (int k = 0; k < 2; k++) {
        const int src = k ? d->src_full : d->src_swa;
        if (src < target->begin && !g4_model_kv_imported(target, src)) {
            g4_err_set(err, G4_ERR_STATE, "the assistant reads the KV cache of layer %d, which layers [%d, %d) do not hold "
                       "(the stage with the last layer must also hold layers %d and %d)", src, target->begin,
                       target->end, d->src_swa, d->src_full);
            goto fail;
        }
    }
    const int64_t i = g4_gguf_find_tensor(d->gguf, "token_embd.weight");
    if (i < 0) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", path);
        goto fail;
    }
    g4_gguf_tensor(d->gguf, i, &d->tok_embd);
    d->n_vocab = (int)d->tok_embd.ne[1];
    if (d->n_vocab != (int)target->hp.n_vocab) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: a vocabulary of %d tokens, the target's has %u", path, d->n_vocab,
                   target->hp.n_vocab);
        goto fail;
    }
    if (s_tensor(d, "token_embd.weight", d->H, d->n_vocab, &d->tok_embd, err)) goto fail;
    if (s_tensor(d, "nextn.pre_projection.weight", 2 * (int64_t)d->Hb, d->H, &d->pre, err)) goto fail;
    if (s_tensor(d, "nextn.post_projection.weight", d->H, d->Hb, &d->post, err)) goto fail;
    if (s_vec(d, "output_norm.weight", d->H, &d->output_norm, err)) goto fail;
    for (int l = 0; l < d->n_layer && !d->rope_freqs; l++)
        if (!d->is_swa[l] && s_vec(d, "rope_freqs.weight", d->hd_full / 2, &d->rope_freqs, err)) goto fail;
    if (!(d->layers = g4_calloc((size_t)d->n_layer, sizeof *d->layers))) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < d->n_layer; l++)
        if (s_load_layer(d, l, err)) goto fail;
    const size_t hd = (size_t)(d->hd_full > d->hd_swa ? d->hd_full : d->hd_swa), nq = (size_t)d->n_head * hd;
    size_t kmax = 2 * (size_t)d->Hb;
    if ((size_t)d->H > kmax) kmax = (size_t)d->H;
    if (nq > kmax) kmax = nq;
    if ((size_t)d->ff_max > kmax) kmax = (size_t)d->ff_max;
    size_t abuf = g4_attn_f32_buf_bytes(1, (int)hd);
    if (abuf < 12 * hd + 64) abuf = 12 * hd + 64;
    d->xh = g4_malloc(2 * (size_t)d->Hb * 4);
    d->x = g4_malloc((size_t)d->H * 4);
    d->a = g4_malloc((size_t)d->H * 4);
    d->t1 = g4_malloc((size_t)d->H * 4);
    d->q = g4_malloc(nq * 4);
    d->o = g4_malloc(nq * 4);
    d->fg = g4_malloc((size_t)d->ff_max * 4);
    d->fu = g4_malloc((size_t)d->ff_max * 4);
    d->cs = g4_malloc(hd * 4);
    d->mm_scratch = g4_malloc_aligned(kmax * 4 + 1024 + 4096, 64);
    d->attn_buf = g4_malloc_aligned(abuf + 256, 64);
    if (!d->xh || !d->x || !d->a || !d->t1 || !d->q || !d->o || !d->fg || !d->fu || !d->cs || !d->mm_scratch ||
        !d->attn_buf) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        goto fail;
    }
    return d;
fail:
    g4_draft_destroy(&d);
    return NULL;
}

void g4_draft_destroy(g4_draft_t **pd)
{
    g4_draft_t *d = pd ? *pd : NULL;
    if (!d) return;
    for (int i = 0; i < d->n_owned; i++) g4_free(d->owned[i]);
    g4_free(d->owned);
    g4_free(d->layers);
    float *bufs[] = {d->xh, d->x, d->a, d->t1, d->q, d->o, d->fg, d->fu, d->cs};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) g4_free(bufs[i]);
    g4_free_aligned(d->mm_scratch);
    g4_free_aligned(d->attn_buf);
    g4_gguf_destroy(&d->gguf);
    g4_free(d);
    *pd = NULL;
}

int g4_draft_n_vocab(const g4_draft_t *d) { return d->n_vocab; }

void g4_draft_target_h(const g4_model_t *target, const float *x, float *h)
{
    g4_rmsnorm(x, target->output_norm, h, target->hp.n_embd, target->hp.eps);
}

/* ---- one step ---------------------------------------------------------------------------- */

static int s_mm(g4_draft_t *d, const g4_tensor_t *W, const float *X, int64_t ldx, float *Y, int64_t ldy)
{
    return g4_matmul(W, 0, -1, X, ldx, 1, Y, ldy, d->mm_scratch);
}

/* o = attention of the row's heads over the target cache of layer src, positions [lo, pos) */
static void s_attend(g4_draft_t *d, g4_ctx_t *c, g4_seq_t *s, int l, int pos)
{
    const g4_hparams_t *tp = &d->tgt->hp;
    const int swa = d->is_swa[l], src = swa ? d->src_swa : d->src_full, hd = swa ? d->hd_swa : d->hd_full;
    const int nkv = (int)tp->n_head_kv[src], grp = d->n_head / nkv, cells = g4_kv_cells(c, src);
    const int hi = pos - 1, lo = swa && pos - (int)tp->n_swa + 1 > 0 ? pos - (int)tp->n_swa + 1 : 0;
    const size_t row_bytes = g4_kv_row_bytes(c, src);
    /* sliding: llama.cpp's layout of the target's cache; full: positions in order */
    const g4_attn_view_t vw = swa && c->n_lcell ? (g4_attn_view_t){s->lcell, c->n_lcell, cells}
                                                : (g4_attn_view_t){NULL, pos, cells};
    for (int h = 0; h < d->n_head; h++) {
        const int kh = h / grp;
        const uint8_t *K = (const uint8_t *)s->k[src] + (size_t)kh * g4_kv_head_bytes(c, hd);
        const uint8_t *V = (const uint8_t *)s->v[src] + (size_t)kh * g4_kv_head_bytes(c, hd);
        const float *qh = d->q + (size_t)h * hd;
        float *out = d->o + (size_t)h * hd;
        if (hi < lo) memset(out, 0, (size_t)hd * 4); /* nothing to see (position 0) */
        else if (c->kv_elem == 2) g4_attn_f16(qh, K, V, row_bytes, hd, lo, hi, &vw, 1, out, d->attn_buf);
        else g4_attn_f32(qh, (size_t)hd, 1, 1, K, V, row_bytes, 0, hd, &lo, &hi, &vw, out, (size_t)hd, d->attn_buf);
    }
}

int g4_draft_step(g4_draft_t *d, g4_ctx_t *tctx, int seq, int32_t tok, const float *h_in, int pos, float *logits,
                  float *h_out, g4_err_t *err)
{
    g4_seq_t *s = g4_kv_seq(tctx, seq);
    if (!s) return g4_err_set(err, G4_ERR_RANGE, "no sequence %d", seq);
    if (tctx->m != d->tgt) return g4_err_set(err, G4_ERR_STATE, "the context is not the assistant's target's");
    if (tctx->kv_type == G4_KV_Q8_0)
        return g4_err_set(err, G4_ERR_STATE, "the assistant reads F16 or F32 KV caches, not q8_0");
    if (tok < 0 || tok >= d->n_vocab || pos < 0 || pos > s->n_past)
        return g4_err_set(err, G4_ERR_RANGE, "draft step: token %d at position %d (sequence at %d)", tok, pos, s->n_past);
    const int H = d->H, Hb = d->Hb;
    const g4_tensor_t *te = &d->tgt->tok_embd;
    g4_dequant_row(te->dtype, g4_tensor_row(te, tok), d->xh, Hb);
    const float sc = sqrtf((float)Hb);
    for (int i = 0; i < Hb; i++) d->xh[i] *= sc;
    memcpy(d->xh + Hb, h_in, (size_t)Hb * 4);
    s_mm(d, &d->pre, d->xh, 2 * Hb, d->x, H);
    for (int l = 0; l < d->n_layer; l++) {
        const s_alayer_t *L = &d->layers[l];
        const int swa = d->is_swa[l], hd = swa ? d->hd_swa : d->hd_full, nq = d->n_head * hd;
        const int n_rot = swa ? d->n_rot_swa : d->n_rot_full;
        g4_rmsnorm(d->x, L->attn_norm, d->a, H, d->eps);
        s_mm(d, &L->wq, d->a, H, d->q, nq);
        for (int h = 0; h < d->n_head; h++) g4_rmsnorm(d->q + h * hd, L->q_norm, d->q + h * hd, hd, d->eps);
        g4_rope_cache(d->cs, pos, hd, n_rot, swa ? d->base_swa : d->base_full, swa ? NULL : d->rope_freqs);
        g4_rope_apply(d->q, d->n_head, hd, n_rot, d->cs);
        s_attend(d, tctx, s, l, pos);
        s_mm(d, &L->wo, d->o, nq, d->t1, H);
        g4_rmsnorm(d->t1, L->post_attn_norm, d->t1, H, d->eps);
        for (int i = 0; i < H; i++) d->x[i] += d->t1[i];
        g4_rmsnorm(d->x, L->ffn_norm, d->a, H, d->eps);
        s_mm(d, &L->gate, d->a, H, d->fg, d->n_ff[l]);
        s_mm(d, &L->up, d->a, H, d->fu, d->n_ff[l]);
        g4_geglu(d->fg, d->fu, d->fg, d->n_ff[l]);
        s_mm(d, &L->down, d->fg, d->n_ff[l], d->t1, H);
        g4_rmsnorm(d->t1, L->post_ffw_norm, d->t1, H, d->eps);
        for (int i = 0; i < H; i++) d->x[i] = (d->x[i] + d->t1[i]) * L->out_scale;
    }
    g4_rmsnorm(d->x, d->output_norm, d->a, H, d->eps);
    if (logits) s_mm(d, &d->tok_embd, d->a, H, logits, d->n_vocab);
    if (h_out) s_mm(d, &d->post, d->a, H, h_out, Hb);
    return G4_OK;
}

int32_t g4_draft_top10(const float *x, int n, float *p_top)
{
    int32_t best[10] = {0};
    int nb = 0;
    for (int i = 0; i < n; i++) {
        if (nb == 10 && x[i] <= x[best[9]]) continue;
        int j = nb < 10 ? nb++ : 9;
        while (j > 0 && x[best[j - 1]] < x[i]) best[j] = best[j - 1], j--;
        best[j] = i;
    }
    double sum = 0;
    for (int j = 0; j < nb; j++) sum += exp((double)x[best[j]] - x[best[0]]);
    *p_top = (float)(1.0 / sum);
    return best[0];
}

/* ---- the rewind ------------------------------------------------------------------------ */

int g4_draft_mark(g4_ctx_t *c, int seq, g4_draft_mark_t *mk, g4_err_t *err)
{
    g4_seq_t *s = g4_kv_seq(c, seq);
    if (!s) return g4_err_set(err, G4_ERR_RANGE, "no sequence %d", seq);
    if (mk->lcell && mk->n_lcell != c->n_lcell) g4_draft_unmark(mk); /* (another context's) */
    mk->n_past = s->n_past, mk->lhead = s->lhead, mk->n_lcell = c->n_lcell;
    if (c->n_lcell) {
        if (!mk->lcell && !(mk->lcell = g4_malloc((size_t)c->n_lcell * sizeof *mk->lcell)))
            return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        memcpy(mk->lcell, s->lcell, (size_t)c->n_lcell * sizeof *mk->lcell);
    }
    return G4_OK;
}

int g4_draft_rewind(g4_ctx_t *c, int seq, const g4_draft_mark_t *mk, int n_rows, g4_err_t *err)
{
    g4_seq_t *s = g4_kv_seq(c, seq);
    if (!s) return g4_err_set(err, G4_ERR_RANGE, "no sequence %d", seq);
    if (mk->n_lcell != c->n_lcell || n_rows < 0 || mk->n_past + n_rows > s->n_past)
        return g4_err_set(err, G4_ERR_RANGE, "cannot keep %d rows after position %d (sequence at %d)", n_rows,
                          mk->n_past, s->n_past);
    int rc = g4_seq_truncate(c, seq, mk->n_past + n_rows, err);
    if (rc) return rc;
    if (c->n_lcell) memcpy(s->lcell, mk->lcell, (size_t)c->n_lcell * sizeof *s->lcell);
    s->lhead = mk->lhead;
    for (int i = 0; i < n_rows; i++) {
        const int32_t p = mk->n_past + i;
        g4_kv_view_step(c, s, &p, 1);
    }
    return G4_OK;
}

void g4_draft_unmark(g4_draft_mark_t *mk)
{
    g4_free(mk->lcell);
    memset(mk, 0, sizeof *mk);
}
