/* enc_model — see enc_model.h: loading an mmproj GGUF into the towers'
 * weights (vision, then audio), and the compute helpers both towers share.
 * The towers' forward passes are enc_vision.c and enc_audio.c. */
#include "enc_model_internal.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_dot.h"
#include "g4_matmul.h"
#include "g4_norm.h"

/* ---- loading -------------------------------------------------------------- */

static void *s_own(enc_model_t *m, size_t bytes)
{
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **o = realloc(m->owned, (size_t)cap * sizeof *o);
        if (!o) return NULL;
        m->owned = o;
        m->cap_owned = cap;
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (p) m->owned[m->n_owned++] = p;
    return p;
}

static int s_find(enc_model_t *m, const char *name, g4_tensor_t *t)
{
    int64_t i = g4_gguf_find_tensor(m->g, name);
    if (i < 0) return 0;
    g4_gguf_tensor(m->g, i, t);
    return 1;
}

/* a float vector of exactly n elements (any float type), owned */
static int s_vec(enc_model_t *m, const char *name, int64_t n, int required, float **out, g4_err_t *err)
{
    g4_tensor_t t;
    *out = NULL;
    if (!s_find(m, name, &t)) {
        if (!required) return G4_OK;
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor '%s'", g4_gguf_path(m->g), name);
    }
    if (g4_tensor_nelements(&t) != n || (t.dtype != G4_DTYPE_F32 && t.dtype != G4_DTYPE_F16 && t.dtype != G4_DTYPE_BF16))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has %lld elements of type %s, expected %lld floats",
                          g4_gguf_path(m->g), name, (long long)g4_tensor_nelements(&t), g4_dtype_name(t.dtype),
                          (long long)n);
    float *v = s_own(m, (size_t)n * 4);
    if (!v) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    g4_dequant_row(t.dtype, t.data, v, n);
    *out = v;
    return G4_OK;
}

static int s_scalar(enc_model_t *m, const char *name, float *out)
{
    g4_tensor_t t;
    if (!s_find(m, name, &t) || g4_tensor_nelements(&t) != 1) return 0;
    g4_dequant_row(t.dtype, t.data, out, 1);
    return 1;
}

/* matrix `<base>.weight` with ne = [K, N] and its optional clamp scalars */
static int s_lin_load(enc_model_t *m, const char *base, int64_t K, int64_t N, int required, lin_t *l, g4_err_t *err)
{
    char name[160];
    memset(l, 0, sizeof *l);
    snprintf(name, sizeof name, "%s.weight", base);
    if (!s_find(m, name, &l->w)) {
        if (!required) return G4_OK;
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor '%s'", g4_gguf_path(m->g), name);
    }
    if (l->w.ne[0] != K || g4_tensor_nrows(&l->w) != N)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' is %lldx%lld, expected %lldx%lld", g4_gguf_path(m->g),
                          name, (long long)l->w.ne[0], (long long)g4_tensor_nrows(&l->w), (long long)K, (long long)N);
    if (!g4_type_ops(l->w.dtype))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' has type %s, which g4 cannot compute with",
                          g4_gguf_path(m->g), name, g4_dtype_name(l->w.dtype));
    l->present = 1;
    l->imin = -FLT_MAX;
    l->imax = FLT_MAX;
    l->omin = -FLT_MAX;
    l->omax = FLT_MAX;
    static const char *const sfx[4] = {"input_min", "input_max", "output_min", "output_max"};
    float *dst[4] = {&l->imin, &l->imax, &l->omin, &l->omax};
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s.%s", base, sfx[i]);
        if (s_scalar(m, name, dst[i])) l->clamp = 1;
    }
    return G4_OK;
}

/* conv kernel ne = [kw, kh, cin, cout] as an f16 matrix [cout][cin*kh*kw]
 * (ggml's conv_2d multiplies an F16 im2col with the kernel rounded to f16) */
static int s_conv16(enc_model_t *m, const char *name, int kw, int kh, int cin, int cout, g4_tensor_t *out,
                    g4_err_t *err)
{
    g4_tensor_t t;
    if (!s_find(m, name, &t))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor '%s'", g4_gguf_path(m->g), name);
    if (t.ne[0] != kw || t.ne[1] != kh || t.ne[2] != cin || t.ne[3] != cout ||
        (t.dtype != G4_DTYPE_F32 && t.dtype != G4_DTYPE_F16 && t.dtype != G4_DTYPE_BF16))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: tensor '%s' is not a [%d,%d,%d,%d] float kernel",
                          g4_gguf_path(m->g), name, kw, kh, cin, cout);
    const int64_t K = (int64_t)kw * kh * cin;
    float *row = malloc((size_t)K * 4);
    uint16_t *d = s_own(m, (size_t)K * cout * 2);
    if (!row || !d) {
        free(row);
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    }
    const uint64_t rb = g4_dtype_row_bytes(t.dtype, (uint64_t)K);
    for (int o = 0; o < cout; o++) {
        g4_dequant_row(t.dtype, (const uint8_t *)t.data + rb * (uint64_t)o, row, K);
        for (int64_t i = 0; i < K; i++) d[(int64_t)o * K + i] = g4_fp32_to_fp16(row[i]);
    }
    free(row);
    memset(out, 0, sizeof *out);
    out->name = NULL; /* name is the caller's buffer */
    out->data = d;
    out->dtype = G4_DTYPE_F16;
    out->n_dims = 2;
    out->ne[0] = K;
    out->ne[1] = cout;
    out->ne[2] = out->ne[3] = 1;
    out->nb[0] = 2;
    out->nb[1] = (uint64_t)K * 2;
    out->nb[2] = out->nb[3] = out->nb[1] * (uint64_t)cout;
    out->n_bytes = out->nb[2];
    return G4_OK;
}

static int s_u32(enc_model_t *m, const char *key, int required, int def, int *out, g4_err_t *err)
{
    int64_t i = g4_gguf_find_key(m->g, key);
    if (i < 0) {
        if (required) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing key '%s'", g4_gguf_path(m->g), key);
        *out = def;
        return G4_OK;
    }
    g4_gguf_value_t v;
    int64_t x;
    g4_gguf_kv_value(m->g, i, &v);
    if (g4_gguf_value_as_i64(&v, &x) || x <= 0 || x > (1 << 20))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: key '%s' is not a sensible count", g4_gguf_path(m->g), key);
    *out = (int)x;
    return G4_OK;
}

static int s_bool(enc_model_t *m, const char *key)
{
    int b = 0;
    if (g4_gguf_find_key(m->g, key) < 0) return 0;
    if (g4_gguf_get_bool(m->g, key, &b, NULL)) return 0;
    return b;
}

static void s_f32_arr(enc_model_t *m, const char *key, float *out, int n)
{
    g4_gguf_value_t arr;
    if (g4_gguf_find_key(m->g, key) < 0 || g4_gguf_get_arr(m->g, key, &arr, NULL)) return;
    if (arr.arr_n != (uint64_t)n) return;
    for (int i = 0; i < n; i++) {
        g4_gguf_value_t e;
        double d;
        g4_gguf_arr_get(m->g, &arr, (uint64_t)i, &e);
        if (!g4_gguf_value_as_f64(&e, &d)) out[i] = (float)d;
    }
}

/* per-block tensors "<pfx>.blk.<l>.<nm>" into block B (pfx "v" or "a") */
#define LIN(field, nm, K, N)                                                                                           \
    do {                                                                                                               \
        snprintf(b, sizeof b, "%s.blk.%d.%s", pfx, l, nm);                                                            \
        if ((rc = s_lin_load(m, b, K, N, 1, &B->field, err))) return rc;                                              \
    } while (0)
#define VEC(field, nm, len, req)                                                                                       \
    do {                                                                                                               \
        snprintf(n, sizeof n, "%s.blk.%d.%s.weight", pfx, l, nm);                                                     \
        if ((rc = s_vec(m, n, len, req, &B->field, err))) return rc;                                                  \
    } while (0)

static int s_load_vision(enc_model_t *m, g4_err_t *err)
{
    enc_info_t *in = &m->info;
    int rc, H, L, NH, FF, P, hd;
    if ((rc = s_u32(m, "clip.vision.embedding_length", 1, 0, &in->v_n_embd, err))) return rc;
    if ((rc = s_u32(m, "clip.vision.block_count", 1, 0, &in->v_n_layer, err))) return rc;
    if ((rc = s_u32(m, "clip.vision.attention.head_count", 1, 0, &in->v_n_head, err))) return rc;
    if ((rc = s_u32(m, "clip.vision.feed_forward_length", 1, 0, &FF, err))) return rc;
    if ((rc = s_u32(m, "clip.vision.patch_size", 0, 16, &in->v_patch, err))) return rc;
    if ((rc = s_u32(m, "clip.vision.projector.scale_factor", 0, 3, &in->v_merge, err))) return rc;
    H = in->v_n_embd;
    L = in->v_n_layer;
    NH = in->v_n_head;
    P = in->v_patch;
    if ((rc = s_u32(m, "clip.vision.attention.head_dim", 0, H / NH, &hd, err))) return rc;
    if (hd * NH != H || hd % 4)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: vision heads %d x %d do not make width %d (2-D RoPE needs a head "
                          "dim divisible by 4)", g4_gguf_path(m->g), NH, hd, H);
    m->v_hd = hd;
    m->v_eps = ENC_EPS;
    if (g4_gguf_find_key(m->g, "clip.vision.attention.layer_norm_epsilon") >= 0)
        g4_gguf_get_f32(m->g, "clip.vision.attention.layer_norm_epsilon", &m->v_eps, NULL);
    m->v_rope_base = 100.0f;
    m->v_act = s_bool(m, "clip.use_gelu") ? 1 : s_bool(m, "clip.use_silu") ? 2 : 0;
    for (int c = 0; c < 3; c++) {
        m->v_mean[c] = 0.0f;
        m->v_std[c] = 1.0f;
    }
    s_f32_arr(m, "clip.vision.image_mean", m->v_mean, 3);
    s_f32_arr(m, "clip.vision.image_std", m->v_std, 3);
    if ((rc = s_conv16(m, "v.patch_embd.weight", P, P, 3, H, &m->v_patch16, err))) return rc;
    g4_tensor_t pos;
    if (!s_find(m, "v.position_embd.weight", &pos))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'v.position_embd.weight'", g4_gguf_path(m->g));
    if (pos.ne[0] != H || pos.ne[2] != 2 || pos.ne[1] < 1)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: 'v.position_embd.weight' is not [%d, n, 2]", g4_gguf_path(m->g), H);
    m->v_pos_size = (int)pos.ne[1];
    if ((rc = s_vec(m, "v.position_embd.weight", (int64_t)H * m->v_pos_size * 2, 1, &m->v_pos, err))) return rc;
    m->vb = s_own(m, sizeof(vblk_t) * (size_t)L);
    if (!m->vb) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    char b[128], n[160];
    const char *pfx = "v";
    for (int l = 0; l < L; l++) {
        vblk_t *B = &m->vb[l];
        LIN(q, "attn_q", H, H);
        LIN(k, "attn_k", H, H);
        LIN(v, "attn_v", H, H);
        LIN(o, "attn_out", H, H);
        LIN(gate, "ffn_gate", H, FF);
        LIN(up, "ffn_up", H, FF);
        LIN(down, "ffn_down", FF, H);
        VEC(ln1, "ln1", H, 1);
        VEC(ln2, "ln2", H, 1);
        VEC(q_norm, "attn_q_norm", hd, 0);
        VEC(k_norm, "attn_k_norm", hd, 0);
        VEC(attn_post, "attn_post_norm", H, 0);
        VEC(ffn_post, "ffn_post_norm", H, 0);
        snprintf(n, sizeof n, "v.blk.%d.out_scale.weight", l);
        B->has_out_scale = s_scalar(m, n, &B->out_scale);
    }
    if ((rc = s_vec(m, "v.std_bias", H, 0, &m->v_std_bias, err))) return rc;
    if ((rc = s_vec(m, "v.std_scale", H, 0, &m->v_std_scale, err))) return rc;
    g4_tensor_t pw;
    if (!s_find(m, "mm.input_projection.weight", &pw))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'mm.input_projection.weight'", g4_gguf_path(m->g));
    in->v_proj_dim = (int)g4_tensor_nrows(&pw);
    if ((rc = s_lin_load(m, "mm.input_projection", H, in->v_proj_dim, 1, &m->v_proj, err))) return rc;
    int pd = 0;
    if (!s_u32(m, "clip.vision.projection_dim", 0, in->v_proj_dim, &pd, NULL) && pd != in->v_proj_dim)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: clip.vision.projection_dim %d but the projection makes %d",
                          g4_gguf_path(m->g), pd, in->v_proj_dim);
    return G4_OK;
}

static int s_load_audio(enc_model_t *m, g4_err_t *err)
{
    enc_info_t *in = &m->info;
    int rc, H, FF;
    if ((rc = s_u32(m, "clip.audio.embedding_length", 1, 0, &in->a_n_embd, err))) return rc;
    if ((rc = s_u32(m, "clip.audio.block_count", 1, 0, &in->a_n_layer, err))) return rc;
    if ((rc = s_u32(m, "clip.audio.attention.head_count", 1, 0, &in->a_n_head, err))) return rc;
    if ((rc = s_u32(m, "clip.audio.feed_forward_length", 1, 0, &FF, err))) return rc;
    if ((rc = s_u32(m, "clip.audio.num_mel_bins", 0, 128, &in->a_n_mel, err))) return rc;
    H = in->a_n_embd;
    if (H % in->a_n_head || (H / in->a_n_head) % 2 || H % 2)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: audio width %d and %d heads do not fit", g4_gguf_path(m->g), H,
                          in->a_n_head);
    m->a_hd = H / in->a_n_head;
    g4_tensor_t t;
    for (int i = 0; i < 2; i++) {
        char n[64];
        snprintf(n, sizeof n, "a.conv1d.%d.weight", i);
        if (!s_find(m, n, &t)) return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor '%s'", g4_gguf_path(m->g), n);
        const int cin = i == 0 ? 1 : m->a_c0;
        if (t.ne[0] != 3 || t.ne[1] != 3 || t.ne[2] != cin)
            return g4_err_set(err, G4_ERR_FORMAT, "%s: '%s' is not a [3,3,%d,C] kernel", g4_gguf_path(m->g), n, cin);
        if (i == 0) m->a_c0 = (int)t.ne[3];
        else m->a_c1 = (int)t.ne[3];
        if ((rc = s_conv16(m, n, 3, 3, cin, (int)t.ne[3], &m->a_conv16[i], err))) return rc;
        snprintf(n, sizeof n, "a.conv1d.%d.norm.weight", i);
        if ((rc = s_vec(m, n, t.ne[3], 0, &m->a_conv_norm[i], err))) return rc;
    }
    const int F2 = ((in->a_n_mel - 1) / 2 + 1 - 1) / 2 + 1;
    if ((rc = s_lin_load(m, "a.input_projection", (int64_t)F2 * m->a_c1, H, 1, &m->a_inp, err))) return rc;
    m->ab = s_own(m, sizeof(ablk_t) * (size_t)in->a_n_layer);
    if (!m->ab) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    char b[128], n[160];
    const char *pfx = "a";
    for (int l = 0; l < in->a_n_layer; l++) {
        ablk_t *B = &m->ab[l];
        LIN(ffn_up, "ffn_up", H, FF);
        LIN(ffn_down, "ffn_down", FF, H);
        LIN(q, "attn_q", H, H);
        LIN(k, "attn_k", H, H);
        LIN(v, "attn_v", H, H);
        LIN(k_rel, "attn_k_rel", H, H);
        LIN(o, "attn_out", H, H);
        LIN(pw1, "conv_pw1", H, 2 * H);
        LIN(pw2, "conv_pw2", H, H);
        LIN(ffn_up_1, "ffn_up_1", H, FF);
        LIN(ffn_down_1, "ffn_down_1", FF, H);
        VEC(ffn_norm, "ffn_norm", H, 1);
        VEC(ffn_post, "ffn_post_norm", H, 0);
        VEC(attn_pre, "attn_pre_norm", H, 0);
        VEC(per_dim_scale, "per_dim_scale", m->a_hd, 0);
        VEC(per_dim_k_scale, "per_dim_k_scale", m->a_hd, 0);
        VEC(attn_post, "attn_post_norm", H, 0);
        VEC(conv_norm, "conv_norm", H, 0); /* before the convolution module (names swapped in GGUF) */
        VEC(norm_conv, "norm_conv", H, 0); /* after the depthwise convolution */
        VEC(conv_dw, "conv_dw", (int64_t)H * 5, 1);
        VEC(ffn_norm_1, "ffn_norm_1", H, 1);
        VEC(ffn_post_1, "ffn_post_norm_1", H, 0);
        VEC(ln2, "ln2", H, 0);
    }
    if (!s_find(m, "a.pre_encode.out.weight", &t))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'a.pre_encode.out.weight'", g4_gguf_path(m->g));
    const int O = (int)g4_tensor_nrows(&t);
    if ((rc = s_lin_load(m, "a.pre_encode.out", H, O, 1, &m->a_out, err))) return rc;
    if ((rc = s_vec(m, "a.pre_encode.out.bias", O, 0, &m->a_out_b, err))) return rc;
    if ((rc = s_vec(m, "mm.a.soft_emb_norm.weight", O, 0, &m->a_soft_norm, err))) return rc;
    if (!s_find(m, "mm.a.input_projection.weight", &t))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: missing tensor 'mm.a.input_projection.weight'", g4_gguf_path(m->g));
    in->a_proj_dim = (int)g4_tensor_nrows(&t);
    if ((rc = s_lin_load(m, "mm.a.input_projection", O, in->a_proj_dim, 1, &m->a_proj, err))) return rc;
    return G4_OK;
}

#undef LIN
#undef VEC

static int s_proj_type(enc_model_t *m, const char *key, char *out, size_t cap)
{
    const char *s;
    uint64_t len;
    out[0] = 0;
    if (g4_gguf_find_key(m->g, key) < 0 || g4_gguf_get_str(m->g, key, &s, &len, NULL)) return 0;
    if (len >= cap) len = cap - 1;
    memcpy(out, s, len);
    out[len] = 0;
    return 1;
}

/* The header of an mmproj: a "clip" file with a gemma4v and / or gemma4a
 * projector (sets has_vision / has_audio). 0, or the error. */
static int s_check_header(enc_model_t *m, const char *path, g4_err_t *err)
{
    const char *arch;
    uint64_t alen;
    int rc = g4_gguf_get_str(m->g, "general.architecture", &arch, &alen, err);
    if (rc) return rc;
    if (alen != 4 || memcmp(arch, "clip", 4))
        return g4_err_set(err, G4_ERR_FORMAT, "%s: architecture '%.*s' is not a projector (mmproj) file, expected 'clip'",
                          path, (int)(alen > 64 ? 64 : alen), arch);
    char pt[64];
    /* older files have a single clip.projector_type for the vision tower */
    if (!s_proj_type(m, "clip.vision.projector_type", pt, sizeof pt)) s_proj_type(m, "clip.projector_type", pt, sizeof pt);
    if (pt[0]) {
        if (strcmp(pt, "gemma4v"))
            return g4_err_set(err, G4_ERR_FORMAT, "%s: vision projector type '%s' is not supported (g4 runs 'gemma4v')",
                              path, pt);
        m->info.has_vision = 1;
    }
    if (s_proj_type(m, "clip.audio.projector_type", pt, sizeof pt)) {
        if (strcmp(pt, "gemma4a"))
            return g4_err_set(err, G4_ERR_FORMAT, "%s: audio projector type '%s' is not supported (g4 runs 'gemma4a')",
                              path, pt);
        m->info.has_audio = 1;
    }
    if (!m->info.has_vision && !m->info.has_audio)
        return g4_err_set(err, G4_ERR_FORMAT, "%s: no gemma4v or gemma4a projector in this file", path);
    return G4_OK;
}

enc_model_t *enc_model_load(const char *path, g4_err_t *err)
{
    enc_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->g = g4_gguf_open(path, err);
    if (!m->g || s_check_header(m, path, err)) goto fail;
    if (m->info.has_vision && s_load_vision(m, err)) goto fail;
    if (m->info.has_audio && s_load_audio(m, err)) goto fail;
    return m;
fail:
    enc_model_destroy(&m);
    return NULL;
}

int enc_model_probe(const char *path, enc_info_t *info, g4_err_t *err)
{
    enc_model_t m = {0};
    memset(info, 0, sizeof *info);
    if (!(m.g = g4_gguf_open(path, err))) return err ? err->code : G4_ERR_IO;
    int rc = s_check_header(&m, path, err);
    g4_tensor_t t;
    if (!rc && m.info.has_vision && s_find(&m, "mm.input_projection.weight", &t)) m.info.v_proj_dim = (int)g4_tensor_nrows(&t);
    if (!rc && m.info.has_audio && s_find(&m, "mm.a.input_projection.weight", &t)) m.info.a_proj_dim = (int)g4_tensor_nrows(&t);
    *info = m.info;
    g4_gguf_destroy(&m.g);
    return rc;
}

void enc_model_destroy(enc_model_t **mp)
{
    if (!mp || !*mp) return;
    enc_model_t *m = *mp;
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    g4_gguf_destroy(&m->g);
    free(m);
    *mp = NULL;
}

const enc_info_t *enc_model_info(const enc_model_t *m) { return &m->info; }
uint64_t enc_model_digest(const enc_model_t *m) { return g4_gguf_digest(m->g); }

/* ---- compute helpers --------------------------------------------------------- */

int enc_model_lin(const lin_t *l, const float *X, int64_t T, float *Y)
{
    const int64_t K = l->w.ne[0], N = g4_tensor_nrows(&l->w);
    const float *in = X;
    float *tmp = NULL;
    if (l->clamp) {
        tmp = malloc((size_t)(T * K) * 4);
        if (!tmp) return G4_ERR_NOMEM;
#pragma omp parallel for if (T * K > 65536)
        for (int64_t i = 0; i < T * K; i++) tmp[i] = fminf(fmaxf(X[i], l->imin), l->imax);
        in = tmp;
    }
    size_t sb = g4_matmul_scratch_bytes(l->w.dtype, K, T);
    void *scratch = aligned_alloc(64, (sb + 63) & ~(size_t)63);
    if (!scratch) {
        free(tmp);
        return G4_ERR_NOMEM;
    }
    int rc = g4_matmul(&l->w, 0, -1, in, K, T, Y, N, scratch);
    free(scratch);
    free(tmp);
    if (rc) return rc;
    if (l->clamp) {
#pragma omp parallel for if (T * N > 65536)
        for (int64_t i = 0; i < T * N; i++) Y[i] = fminf(fmaxf(Y[i], l->omin), l->omax);
    }
    return G4_OK;
}

void enc_model_rms_rows(float *x, const float *w, int64_t T, int64_t n, float eps)
{
#pragma omp parallel for if (T > 16)
    for (int64_t t = 0; t < T; t++) g4_rmsnorm(x + t * n, w, x + t * n, n, eps);
}
