/* g4_hparams — hyper-parameters from the GGUF keys (see g4_hparams.h).
 * Mirrors llama.cpp's llm_load_hparams for LLM_ARCH_GEMMA4: the same keys,
 * the same defaults where a key is optional; then the consistency checks a
 * hostile file must pass before any size is computed from it. */
#include "g4_hparams.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY(k) (snprintf(key, sizeof key, "%s.%s", arch, k), key)

/* u32 or per-layer array of integers; def used when the key is absent (def < 0: required) */
static int s_layer_u32(const g4_gguf_t *g, const char *key, uint32_t n_layer, int64_t def, uint32_t *out,
                       g4_err_t *err)
{
    int64_t i = g4_gguf_find_key(g, key);
    if (i < 0) {
        if (def < 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing key '%s'", g4_gguf_path(g), key);
        for (uint32_t l = 0; l < n_layer; l++) out[l] = (uint32_t)def;
        return G4_OK;
    }
    g4_gguf_value_t v;
    g4_gguf_kv_value(g, i, &v);
    if (v.type == G4_GGUF_ARRAY) {
        if (v.arr_n != n_layer)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' has %llu entries, expected one per layer (%u)",
                              g4_gguf_path(g), key, (unsigned long long)v.arr_n, n_layer);
        for (uint32_t l = 0; l < n_layer; l++) {
            g4_gguf_value_t e;
            int64_t x;
            g4_gguf_arr_get(g, &v, l, &e);
            if (g4_gguf_value_as_i64(&e, &x) || e.type == G4_GGUF_BOOL || x < 0 || x > UINT32_MAX)
                return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' entry %u is not a non-negative integer",
                                  g4_gguf_path(g), key, l);
            out[l] = (uint32_t)x;
        }
        return G4_OK;
    }
    uint32_t x;
    int rc = g4_gguf_get_u32(g, key, &x, err);
    if (rc) return rc;
    for (uint32_t l = 0; l < n_layer; l++) out[l] = x;
    return G4_OK;
}

static int s_opt_u32(const g4_gguf_t *g, const char *key, uint32_t def, uint32_t *out, g4_err_t *err)
{
    if (g4_gguf_find_key(g, key) < 0) {
        *out = def;
        return G4_OK;
    }
    return g4_gguf_get_u32(g, key, out, err);
}

static int s_opt_f32(const g4_gguf_t *g, const char *key, float def, float *out, g4_err_t *err)
{
    if (g4_gguf_find_key(g, key) < 0) {
        *out = def;
        return G4_OK;
    }
    return g4_gguf_get_f32(g, key, out, err);
}

int g4_hparams_read(const g4_gguf_t *g, g4_hparams_t *hp, g4_err_t *err)
{
    const char *path = g4_gguf_path(g);
    const char *as;
    uint64_t alen;
    int rc = g4_gguf_get_str(g, "general.architecture", &as, &alen, err);
    if (rc) return rc;
    if (alen != 6 || memcmp(as, "gemma4", 6) != 0)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: architecture '%.*s' is not supported (g4 runs 'gemma4')", path,
                          (int)(alen > 64 ? 64 : alen), as);
    const char *arch = "gemma4";
    char key[256];
    memset(hp, 0, sizeof *hp);
    if ((rc = g4_gguf_get_u32(g, KEY("context_length"), &hp->n_ctx_train, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("embedding_length"), &hp->n_embd, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("block_count"), &hp->n_layer, err))) return rc;
    if (hp->n_layer == 0 || hp->n_layer > G4_MAX_LAYERS)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' = %u is outside [1, %d]", path, KEY("block_count"),
                          hp->n_layer, G4_MAX_LAYERS);
    if (hp->n_embd == 0 || hp->n_embd > (1u << 20))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' = %u is not a sane width", path, KEY("embedding_length"),
                          hp->n_embd);
    uint32_t tmp[G4_MAX_LAYERS];
    if ((rc = s_layer_u32(g, KEY("attention.head_count"), hp->n_layer, -1, tmp, err))) return rc;
    hp->n_head = tmp[0];
    for (uint32_t l = 1; l < hp->n_layer; l++)
        if (tmp[l] != hp->n_head)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' varies per layer, which gemma4 does not use", path,
                              KEY("attention.head_count"));
    if (hp->n_head == 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' is 0", path, KEY("attention.head_count"));
    if ((rc = s_layer_u32(g, KEY("attention.head_count_kv"), hp->n_layer, hp->n_head, hp->n_head_kv, err))) return rc;
    if ((rc = s_layer_u32(g, KEY("feed_forward_length"), hp->n_layer, 0, hp->n_ff, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("attention.key_length"), hp->n_embd / hp->n_head, &hp->hd_full, err))) return rc;
    uint32_t vlen, vlen_swa;
    if ((rc = s_opt_u32(g, KEY("attention.value_length"), hp->hd_full, &vlen, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("attention.key_length_swa"), &hp->hd_swa, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("attention.value_length_swa"), hp->hd_swa, &vlen_swa, err))) return rc;
    if (vlen != hp->hd_full || vlen_swa != hp->hd_swa)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key and value head sizes differ (%u/%u, %u/%u)", path, hp->hd_full,
                          vlen, hp->hd_swa, vlen_swa);
    if ((rc = s_opt_u32(g, KEY("rope.dimension_count"), hp->hd_full, &hp->n_rot_full, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("rope.dimension_count_swa"), hp->n_rot_full, &hp->n_rot_swa, err))) return rc;
    if ((rc = s_opt_f32(g, KEY("rope.freq_base"), 10000.f, &hp->rope_base_full, err))) return rc;
    if ((rc = s_opt_f32(g, KEY("rope.freq_base_swa"), 10000.f, &hp->rope_base_swa, err))) return rc;
    if ((rc = g4_gguf_get_f32(g, KEY("attention.layer_norm_rms_epsilon"), &hp->eps, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("attention.sliding_window"), &hp->n_swa, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("attention.shared_kv_layers"), 0, &hp->n_kv_shared, err))) return rc;
    if ((rc = g4_gguf_get_u32(g, KEY("embedding_length_per_layer_input"), &hp->ple_dim, err))) return rc;
    if ((rc = s_opt_u32(g, KEY("expert_count"), 0, &hp->n_expert, err))) return rc;
    if (hp->n_expert) {
        if ((rc = s_layer_u32(g, KEY("expert_used_count"), hp->n_layer, -1, tmp, err))) return rc;
        hp->n_expert_used = tmp[0];
        if ((rc = s_layer_u32(g, KEY("expert_feed_forward_length"), hp->n_layer, -1, tmp, err))) return rc;
        hp->n_ff_exp = tmp[0];
        if (hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert || hp->n_expert > 4096)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: expert_used_count %u / expert_count %u are inconsistent", path,
                              hp->n_expert_used, hp->n_expert);
    }
    if ((rc = s_opt_f32(g, KEY("final_logit_softcapping"), 30.0f, &hp->softcap, err))) return rc;
    /* sliding pattern: bool per layer */
    g4_gguf_value_t pat;
    if ((rc = g4_gguf_get_arr(g, KEY("attention.sliding_window_pattern"), &pat, err))) return rc;
    if (pat.arr_n != hp->n_layer)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' has %llu entries, expected %u", path,
                          KEY("attention.sliding_window_pattern"), (unsigned long long)pat.arr_n, hp->n_layer);
    int any_swa = 0;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        g4_gguf_value_t e;
        g4_gguf_arr_get(g, &pat, l, &e);
        if (e.type != G4_GGUF_BOOL)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' must be an array of BOOL", path,
                              KEY("attention.sliding_window_pattern"));
        hp->is_swa[l] = (uint8_t)e.v.u;
        any_swa |= hp->is_swa[l];
    }
    /* consistency */
    if (!any_swa) return g4_err_set(err, G4_ERR_FORMAT, "%s: no sliding-window layer in the pattern", path);
    if (hp->n_swa == 0) return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' is 0", path, KEY("attention.sliding_window"));
    if (hp->n_kv_shared >= hp->n_layer)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' = %u leaves no layer with its own KV", path,
                          KEY("attention.shared_kv_layers"), hp->n_kv_shared);
    hp->n_layer_kv = hp->n_layer - hp->n_kv_shared;
    if (hp->n_kv_shared && (hp->n_layer_kv < 2 || !hp->is_swa[hp->n_layer_kv - 2] || hp->is_swa[hp->n_layer_kv - 1]))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: with shared KV layers, layer %u must be sliding and %u full", path,
                          hp->n_layer_kv - 2, hp->n_layer_kv - 1);
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        const uint32_t hd = hp->is_swa[l] ? hp->hd_swa : hp->hd_full;
        if (hd == 0 || hd > 4096 || hd % 2)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: head size %u of layer %u is not usable", path, hd, l);
        if (hp->n_head_kv[l] == 0 || hp->n_head % hp->n_head_kv[l])
            return g4_err_set(err, G4_ERR_FORMAT, "%s: layer %u: %u KV heads do not divide %u heads", path, l,
                              hp->n_head_kv[l], hp->n_head);
        if (hp->n_ff[l] == 0 && !hp->n_expert)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: layer %u: feed_forward_length is 0", path, l);
    }
    if (hp->n_rot_full > hp->hd_full || hp->n_rot_swa > hp->hd_swa || hp->n_rot_full % 2 || hp->n_rot_swa % 2)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: rope dimension counts (%u, %u) exceed the head sizes (%u, %u)", path,
                          hp->n_rot_full, hp->n_rot_swa, hp->hd_full, hp->hd_swa);
    /* tokenizer ids */
    hp->bos_id = 2;
    hp->eos_id = 1;
    s_opt_u32(g, "tokenizer.ggml.bos_token_id", 2, &hp->bos_id, NULL);
    s_opt_u32(g, "tokenizer.ggml.eos_token_id", 1, &hp->eos_id, NULL);
    return G4_OK;
}

int g4_hparams_kv_source(const g4_hparams_t *hp, int l)
{
    if (l < (int)hp->n_layer_kv) return l;
    return hp->is_swa[l] ? (int)hp->n_layer_kv - 2 : (int)hp->n_layer_kv - 1;
}

void g4_hparams_footprint(const g4_gguf_t *g, const g4_hparams_t *hp, int n_ctx, int n_slots, int n_ubatch,
                          g4_footprint_t *out)
{
    const int L = (int)hp->n_layer;
    memset(out, 0, sizeof *out);
    int tied = 1;
    for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        const int l = t.name && !strncmp(t.name, "blk.", 4) ? atoi(t.name + 4) : -1;
        if (l >= 0 && l < L) out->layer_weight_bytes[l] += t.n_bytes;
        else if (t.name && !strcmp(t.name, "output.weight")) out->head_bytes += t.n_bytes, tied = 0;
        else if (t.name && !strcmp(t.name, "output_norm.weight")) out->head_bytes += t.n_bytes;
        else out->embd_bytes += t.n_bytes; /* token_embd, per-layer embeddings, rope_freqs */
    }
    if (tied) { /* the LM head reads the embedding matrix */
        const int64_t i = g4_gguf_find_tensor(g, "token_embd.weight");
        if (i >= 0) {
            g4_tensor_t t;
            g4_gguf_tensor(g, i, &t);
            out->head_bytes += t.n_bytes, out->tied_bytes = t.n_bytes;
        }
    }
    /* the run state g4_ctx_new allocates for n_ubatch rows (g4_forward.c):
     * [T, H] x3, [T, n_head*hd] x2, [T, n_kv*hd] x2, [T, ff] x2, [T, PLE],
     * the matmul scratch [T, widest input] (4 bytes an element at most) and
     * the sliding view of each row; plus the GGUF's header, which the
     * tokenizer and the loader read whole */
    {
        uint64_t hd = hp->hd_full > hp->hd_swa ? hp->hd_full : hp->hd_swa, nkv = 0, ff = 0;
        for (int l = 0; l < L; l++) {
            if (hp->n_head_kv[l] > nkv) nkv = hp->n_head_kv[l];
            if (hp->n_ff[l] > ff) ff = hp->n_ff[l];
        }
        const uint64_t T = (uint64_t)(n_ubatch > 0 ? n_ubatch : 512), H = hp->n_embd, nq = hp->n_head * hd;
        uint64_t kmax = H > nq ? H : nq;
        if (ff > kmax) kmax = ff;
        if (hp->n_ff_exp > kmax) kmax = hp->n_ff_exp;
        const uint64_t per_row = 3 * H + 2 * nq + 2 * nkv * hd + 2 * ff + (uint64_t)L * hp->ple_dim + kmax + hp->n_swa + T;
        out->stage_bytes = 4 * T * per_row + g4_gguf_data_offset(g);
    }
    for (int l = 0; l < L; l++) {
        out->kv_source[l] = g4_hparams_kv_source(hp, l);
        if (out->kv_source[l] != l) continue; /* reuses another layer's cache */
        const uint64_t hd = hp->is_swa[l] ? hp->hd_swa : hp->hd_full;
        uint64_t cells = (uint64_t)n_ctx;
        if (hp->is_swa[l] && hp->n_swa + (uint64_t)n_ubatch < cells) cells = hp->n_swa + (uint64_t)n_ubatch;
        out->layer_kv_bytes[l] = cells * hp->n_head_kv[l] * hd * 2 /* K, V */ * 2 /* F16 */ * (uint64_t)n_slots;
    }
}
