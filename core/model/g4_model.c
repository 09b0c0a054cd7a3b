/* g4_model — the model object: a gemma4 GGUF's layers [begin, end) as
 * weights ready to compute with. Matrices are views into the mapped file
 * (checked against the shapes the hyper-parameters imply, and against the
 * types the kernels can compute with); norm vectors and scales are copied to
 * f32 at load (a few KB). Each matrix is noted for g4_warm. Not here: the
 * key reading (g4_hparams.c), readying the weights (g4_warm.c), any
 * computation (g4_forward.c). Tensor names are llama.cpp's (LLM_TENSOR_*
 * of LLM_ARCH_GEMMA4). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_dot.h"
#include "g4_model_internal.h"

static int g4_type_ops_ok(g4_dtype_t t) { return g4_type_ops(t) != NULL; }

static int s_tensor(g4_model_t *m, const char *name, int required, int n_dims, const int64_t *ne, g4_tensor_t *out,
                    g4_err_t *err)
{
    int64_t i = g4_gguf_find_tensor(m->gguf, name);
    if (i < 0) {
        memset(out, 0, sizeof *out);
        if (required) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor '%s'", g4_gguf_path(m->gguf), name);
        return 1;
    }
    g4_gguf_tensor(m->gguf, i, out);
    for (int d = 0; d < 4; d++) {
        const int64_t want = d < n_dims ? ne[d] : 1;
        if (want >= 0 && out->ne[d] != want)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld, %lld], expected [%lld, %lld, %lld]",
                              g4_gguf_path(m->gguf), name, (long long)out->ne[0], (long long)out->ne[1],
                              (long long)out->ne[2], (long long)(n_dims > 0 ? ne[0] : 1),
                              (long long)(n_dims > 1 ? ne[1] : 1), (long long)(n_dims > 2 ? ne[2] : 1));
    }
    if (n_dims >= 2 && !g4_type_ops_ok(out->dtype))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has type %s, which g4 cannot compute with",
                          g4_gguf_path(m->gguf), name, g4_dtype_name(out->dtype));
    /* the LM head goes last (used last); per-layer embeddings are looked up by row */
    if (n_dims >= 2 && strcmp(name, "per_layer_token_embd.weight") && strcmp(name, "output.weight")) g4_warm_note(m, out);
    return G4_OK;
}

/* a 1-D tensor of n values as a f32 copy */
static int s_vec(g4_model_t *m, const char *name, int required, int64_t n, float **out, g4_err_t *err)
{
    g4_tensor_t t;
    int64_t ne[1] = {n};
    *out = NULL;
    int rc = s_tensor(m, name, required, 1, ne, &t, err);
    if (rc) return rc < 0 ? rc : G4_OK;
    if (!g4_dtype_traits(t.dtype)->computable || t.dtype == G4_DTYPE_Q8_K || t.dtype == G4_DTYPE_Q8_1)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has type %s, expected F32", g4_gguf_path(m->gguf), name,
                          g4_dtype_name(t.dtype));
    float *v = g4_malloc((size_t)n * sizeof(float));
    if (!v) return g4_err_set(err, G4_ERR_NOMEM, "out of memory loading '%s'", name);
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        float **o = g4_realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) {
            g4_free(v);
            return g4_err_set(err, G4_ERR_NOMEM, "out of memory loading '%s'", name);
        }
        m->owned = o;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = v;
    g4_dequant_row(t.dtype, t.data, v, n);
    *out = v;
    return G4_OK;
}

#define TN(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)

static int s_load_layer(g4_model_t *m, int l, g4_err_t *err)
{
    const g4_hparams_t *hp = &m->hp;
    g4_layer_t *L = &m->layers[l];
    char nm[128];
    const int64_t H = hp->n_embd, hd = hp->is_swa[l] ? hp->hd_swa : hp->hd_full;
    const int64_t nq = (int64_t)hp->n_head * hd, nkv = (int64_t)hp->n_head_kv[l] * hd, ff = hp->n_ff[l];
    int rc;
    const int own_kv = l < (int)hp->n_layer_kv;
    if ((rc = s_vec(m, TN("blk.%d.attn_norm.weight", l), 1, H, &L->attn_norm, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.attn_q.weight", l), 1, 2, (int64_t[]){H, nq}, &L->wq, err))) return rc;
    rc = s_tensor(m, TN("blk.%d.attn_k.weight", l), own_kv, 2, (int64_t[]){H, nkv}, &L->wk, err);
    if (rc < 0) return rc;
    L->has_wk = rc == 0;
    rc = s_tensor(m, TN("blk.%d.attn_v.weight", l), 0, 2, (int64_t[]){H, nkv}, &L->wv, err);
    if (rc < 0) return rc;
    L->has_wv = rc == 0;
    if ((rc = s_tensor(m, TN("blk.%d.attn_output.weight", l), 1, 2, (int64_t[]){nq, H}, &L->wo, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.attn_q_norm.weight", l), 1, hd, &L->q_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.attn_k_norm.weight", l), own_kv, hd, &L->k_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.post_attention_norm.weight", l), 1, H, &L->post_attn_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.ffn_norm.weight", l), 1, H, &L->ffn_norm, err))) return rc;
    if ((rc = s_vec(m, TN("blk.%d.post_ffw_norm.weight", l), 1, H, &L->post_ffw_norm, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.ffn_gate.weight", l), 1, 2, (int64_t[]){H, ff}, &L->gate, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.ffn_up.weight", l), 1, 2, (int64_t[]){H, ff}, &L->up, err))) return rc;
    if ((rc = s_tensor(m, TN("blk.%d.ffn_down.weight", l), 1, 2, (int64_t[]){ff, H}, &L->down, err))) return rc;
    float *sc = NULL;
    if ((rc = s_vec(m, TN("blk.%d.layer_output_scale.weight", l), 0, 1, &sc, err))) return rc;
    L->has_out_scale = sc != NULL;
    L->out_scale = sc ? sc[0] : 1.0f;
    if (own_kv && !L->has_wk)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'blk.%d.attn_k.weight'", g4_gguf_path(m->gguf), l);
    if (hp->n_expert) {
        const int64_t E = hp->n_expert, fe = hp->n_ff_exp;
        if ((rc = s_tensor(m, TN("blk.%d.ffn_gate_inp.weight", l), 1, 2, (int64_t[]){H, E}, &L->gate_inp, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.ffn_gate_inp.scale", l), 1, H, &L->gate_inp_scale, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.pre_ffw_norm_2.weight", l), 1, H, &L->pre_ffw_norm_2, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.post_ffw_norm_1.weight", l), 1, H, &L->post_ffw_norm_1, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.post_ffw_norm_2.weight", l), 1, H, &L->post_ffw_norm_2, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.ffn_down_exps.scale", l), 0, E, &L->down_exps_scale, err))) return rc;
        rc = s_tensor(m, TN("blk.%d.ffn_gate_up_exps.weight", l), 0, 3, (int64_t[]){H, 2 * fe, E}, &L->gate_up_exps, err);
        if (rc < 0) return rc;
        L->fused_gate_up = rc == 0;
        if (!L->fused_gate_up) {
            if ((rc = s_tensor(m, TN("blk.%d.ffn_gate_exps.weight", l), 1, 3, (int64_t[]){H, fe, E}, &L->gate_exps, err)))
                return rc;
            if ((rc = s_tensor(m, TN("blk.%d.ffn_up_exps.weight", l), 1, 3, (int64_t[]){H, fe, E}, &L->up_exps, err)))
                return rc;
        }
        if ((rc = s_tensor(m, TN("blk.%d.ffn_down_exps.weight", l), 1, 3, (int64_t[]){fe, H, E}, &L->down_exps, err)))
            return rc;
    }
    if (hp->ple_dim) {
        const int64_t D = hp->ple_dim;
        if ((rc = s_tensor(m, TN("blk.%d.inp_gate.weight", l), 1, 2, (int64_t[]){H, D}, &L->inp_gate, err))) return rc;
        if ((rc = s_tensor(m, TN("blk.%d.proj.weight", l), 1, 2, (int64_t[]){D, H}, &L->proj, err))) return rc;
        if ((rc = s_vec(m, TN("blk.%d.post_norm.weight", l), 1, H, &L->post_norm, err))) return rc;
    }
    return G4_OK;
}

g4_model_t *g4_model_load_gguf(g4_gguf_t *gguf, int begin, int end, g4_err_t *err)
{
    g4_model_t *m = g4_calloc(1, sizeof *m);
    if (!m) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->gguf = gguf;
    pthread_mutex_init(&m->adopt_mu, NULL);
    if (g4_hparams_read(gguf, &m->hp, err)) goto fail;
    g4_hparams_t *hp = &m->hp;
    if (end < 0) end = (int)hp->n_layer;
    if (begin < 0 || begin >= end || end > (int)hp->n_layer) {
        g4_err_set(err, G4_ERR_RANGE, "layer range [%d, %d) is outside the model's %u layers", begin, end, hp->n_layer);
        goto fail;
    }
    m->begin = begin;
    m->end = end;
    /* a KV-shared layer whose source layer runs on an earlier stage gets the
     * source's K/V rows from that stage (g4_ctx_kv_export / g4_ctx_kv_import) */
    const int64_t H = hp->n_embd;
    int64_t ti = g4_gguf_find_tensor(gguf, "token_embd.weight");
    if (ti < 0) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'token_embd.weight'", g4_gguf_path(gguf));
        goto fail;
    }
    g4_gguf_tensor(gguf, ti, &m->tok_embd);
    hp->n_vocab = (uint32_t)m->tok_embd.ne[1];
    if (m->tok_embd.ne[0] != H || m->tok_embd.ne[2] != 1) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: tensor 'token_embd.weight' has width %lld, expected %lld", g4_gguf_path(gguf),
                   (long long)m->tok_embd.ne[0], (long long)H);
        goto fail;
    }
    if (!g4_type_ops_ok(m->tok_embd.dtype)) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: tensor 'token_embd.weight' has type %s, which g4 cannot compute with",
                   g4_gguf_path(gguf), g4_dtype_name(m->tok_embd.dtype));
        goto fail;
    }
    const int64_t nvoc = hp->n_vocab;
    if (end == (int)hp->n_layer) {
        int rc = s_tensor(m, "output.weight", 0, 2, (int64_t[]){H, nvoc}, &m->output, err);
        if (rc < 0) goto fail;
        if (rc) m->output = m->tok_embd; /* tied */
        if (s_vec(m, "output_norm.weight", 1, H, &m->output_norm, err)) goto fail;
    }
    {
        g4_tensor_t rf;
        int64_t ne[1] = {-1};
        int rc = s_tensor(m, "rope_freqs.weight", 0, 1, ne, &rf, err);
        if (rc < 0) goto fail;
        if (rc == 0) {
            if (rf.ne[0] * 2 < hp->n_rot_full) {
                g4_err_set(err, G4_ERR_FORMAT, "%s: tensor 'rope_freqs.weight' has %lld entries, need %u",
                           g4_gguf_path(gguf), (long long)rf.ne[0], hp->n_rot_full / 2);
                goto fail;
            }
            if (s_vec(m, "rope_freqs.weight", 1, rf.ne[0], &m->rope_freqs, err)) goto fail;
            m->n_rope_freqs = (int)rf.ne[0];
        }
    }
    if (hp->ple_dim && begin == 0) {
        const int64_t W = (int64_t)hp->n_layer * hp->ple_dim;
        if (s_tensor(m, "per_layer_token_embd.weight", 1, 2, (int64_t[]){W, nvoc}, &m->ple_tok_embd, err)) goto fail;
        if (s_tensor(m, "per_layer_model_proj.weight", 1, 2, (int64_t[]){H, W}, &m->ple_proj, err)) goto fail;
        if (s_vec(m, "per_layer_proj_norm.weight", 1, hp->ple_dim, &m->ple_proj_norm, err)) goto fail;
    }
    m->layers = g4_calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = begin; l < end; l++)
        if (s_load_layer(m, l, err)) goto fail;
    /* end-of-generation ids: <eos>, <turn|>, <|tool_response> when the vocabulary has them */
    hp->eog_ids[hp->n_eog++] = (int32_t)hp->eos_id;
    g4_gguf_value_t toks;
    if (g4_gguf_find_key(gguf, "tokenizer.ggml.tokens") >= 0 && !g4_gguf_get_arr(gguf, "tokenizer.ggml.tokens", &toks, NULL)) {
        static const char *const eog[] = {"<turn|>", "<|tool_response>"};
        for (uint64_t i = 0; i < toks.arr_n && i < 4096; i++) {
            g4_gguf_value_t e;
            g4_gguf_arr_get(gguf, &toks, i, &e);
            for (int k = 0; k < 2; k++)
                if (e.type == G4_GGUF_STRING && e.str_len == strlen(eog[k]) && !memcmp(e.str, eog[k], e.str_len) &&
                    hp->n_eog < 8)
                    hp->eog_ids[hp->n_eog++] = (int32_t)i;
        }
    }
    if (m->end == (int)hp->n_layer) g4_warm_note(m, &m->output);
    return m;
fail:
    g4_model_destroy(&m);
    return NULL;
}

g4_model_t *g4_model_load(const char *path, int begin, int end, g4_err_t *err)
{
    g4_gguf_t *g = g4_gguf_open(path, err);
    if (!g) return NULL;
    g4_model_t *m = g4_model_load_gguf(g, begin, end, err);
    if (!m) {
        g4_gguf_destroy(&g);
        return NULL;
    }
    m->owns_gguf = 1;
    return m;
}

void g4_model_destroy(g4_model_t **pm)
{
    g4_model_t *m = pm ? *pm : NULL;
    if (!m) return;
    g4_warm_fini(m);
    for (int i = 0; i < m->n_owned; i++) g4_free(m->owned[i]);
    g4_free(m->owned);
    g4_free(m->layers);
    if (m->owns_gguf) g4_gguf_destroy(&m->gguf);
    g4_free(m);
    *pm = NULL;
}

const g4_hparams_t *g4_model_hparams(const g4_model_t *m) { return &m->hp; }

g4_gguf_t *g4_model_gguf(const g4_model_t *m) { return m->gguf; }
void g4_model_range(const g4_model_t *m, int *b, int *e)
{
    *b = m->begin;
    *e = m->end;
}

int g4_model_kv_imported(const g4_model_t *m, int l)
{
    if (l >= m->begin) return 0;
    for (int k = m->begin; k < m->end; k++)
        if (g4_model_kv_source(m, k) == l) return 1;
    return 0;
}

int g4_model_kv_exported(const g4_model_t *m, int l)
{
    if (l < m->begin || l >= m->end) return 0;
    for (int k = m->end; k < (int)m->hp.n_layer; k++)
        if (g4_model_kv_source(m, k) == l) return 1;
    return 0;
}

int g4_model_kv_source(const g4_model_t *m, int l) { return g4_hparams_kv_source(&m->hp, l); }

int g4_model_is_eog(const g4_model_t *m, int32_t id)
{
    for (uint32_t i = 0; i < m->hp.n_eog; i++)
        if (m->hp.eog_ids[i] == id) return 1;
    return 0;
}
