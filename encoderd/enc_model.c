/* enc_model — see enc_model.h. */
#include "enc_model.h"

#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_act.h"
#include "g4_dot.h"
#include "g4_dtype.h"
#include "g4_matmul.h"
#include "g4_norm.h"
#include "g4_rope.h"

#define ENC_EPS 1e-6f

/* a matrix with the optional ClippableLinear bounds next to it */
typedef struct lin {
    g4_tensor_t w;
    int present, clamp;
    float imin, imax, omin, omax;
} lin_t;

typedef struct vblk {
    lin_t q, k, v, o, gate, up, down;
    float *ln1, *ln2, *q_norm, *k_norm, *attn_post, *ffn_post;
    int has_out_scale;
    float out_scale;
} vblk_t;

typedef struct ablk {
    float *ffn_norm, *ffn_post, *attn_pre, *per_dim_scale, *per_dim_k_scale, *attn_post, *conv_norm, *norm_conv;
    float *ffn_norm_1, *ffn_post_1, *ln2, *conv_dw; /* conv_dw [C][5] */
    lin_t ffn_up, ffn_down, q, k, v, k_rel, o, pw1, pw2, ffn_up_1, ffn_down_1;
} ablk_t;

struct enc_model {
    g4_gguf_t *g;
    enc_info_t info;
    void **owned;
    int n_owned, cap_owned;
    /* vision */
    int v_hd, v_pos_size, v_act; /* act: 0 quick-gelu, 1 gelu, 2 silu */
    float v_eps, v_rope_base;
    float v_mean[3], v_std[3];
    g4_tensor_t v_patch16; /* [Hv][3*P*P] f16 */
    float *v_pos;          /* [2][pos_size][Hv] */
    vblk_t *vb;
    float *v_std_bias, *v_std_scale;
    lin_t v_proj;
    /* audio */
    int a_hd, a_c0, a_c1;
    g4_tensor_t a_conv16[2]; /* [Cout][Cin*9] f16 */
    float *a_conv_norm[2];
    lin_t a_inp, a_out, a_proj;
    float *a_out_b, *a_soft_norm;
    ablk_t *ab;
};

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

enc_model_t *enc_model_load(const char *path, g4_err_t *err)
{
    enc_model_t *m = calloc(1, sizeof *m);
    if (!m) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    m->g = g4_gguf_open(path, err);
    if (!m->g) goto fail;
    const char *arch;
    uint64_t alen;
    if (g4_gguf_get_str(m->g, "general.architecture", &arch, &alen, err)) goto fail;
    if (alen != 4 || memcmp(arch, "clip", 4)) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: architecture '%.*s' is not a projector (mmproj) file, expected 'clip'",
                   path, (int)(alen > 64 ? 64 : alen), arch);
        goto fail;
    }
    char pt[64];
    /* older files have a single clip.projector_type for the vision tower */
    if (!s_proj_type(m, "clip.vision.projector_type", pt, sizeof pt)) s_proj_type(m, "clip.projector_type", pt, sizeof pt);
    if (pt[0]) {
        if (strcmp(pt, "gemma4v")) {
            g4_err_set(err, G4_ERR_FORMAT, "%s: vision projector type '%s' is not supported (g4 runs 'gemma4v')", path, pt);
            goto fail;
        }
        m->info.has_vision = 1;
    }
    if (s_proj_type(m, "clip.audio.projector_type", pt, sizeof pt)) {
        if (strcmp(pt, "gemma4a")) {
            g4_err_set(err, G4_ERR_FORMAT, "%s: audio projector type '%s' is not supported (g4 runs 'gemma4a')", path, pt);
            goto fail;
        }
        m->info.has_audio = 1;
    }
    if (!m->info.has_vision && !m->info.has_audio) {
        g4_err_set(err, G4_ERR_FORMAT, "%s: no gemma4v or gemma4a projector in this file", path);
        goto fail;
    }
    if (m->info.has_vision && s_load_vision(m, err)) goto fail;
    if (m->info.has_audio && s_load_audio(m, err)) goto fail;
    return m;
fail:
    enc_model_destroy(&m);
    return NULL;
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

/* Y[T][N] = clamp(W · clamp(X)) */
static int s_lin(const lin_t *l, const float *X, int64_t T, float *Y)
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

/* per-row RMS norm of T rows of n (w may be NULL) */
static void s_rms_rows(float *x, const float *w, int64_t T, int64_t n, float eps)
{
#pragma omp parallel for if (T > 16)
    for (int64_t t = 0; t < T; t++) g4_rmsnorm(x + t * n, w, x + t * n, n, eps);
}

/* quick GELU as ggml's CPU backend: f16 table lookup (input and result in f16) */
static float s_gelu_quick_f16(float x)
{
    const float h = g4_round_fp16(x);
    return g4_round_fp16(h * (1.0f / (1.0f + expf(-1.702f * h))));
}

static float s_silu(float x) { return x / (1.0f + expf(-x)); }

/* ---- vision -------------------------------------------------------------------- */

/* softmax(Q Kᵀ)·V for one head over all n positions; q,k,v,o have row stride ld */
static int s_attn_full(const float *q, const float *k, const float *v, float *o, int64_t n, int hd, int64_t ld)
{
    /* K and Vᵀ of this head as f32 "weights" so the scores and the weighted
     * sums run through the matmul kernel */
    float *kh = malloc((size_t)(n * hd) * 4), *vt = malloc((size_t)(n * hd) * 4);
    const int64_t QB = 128;
    float *S = malloc((size_t)(QB * n) * 4), *qb = malloc((size_t)(QB * hd) * 4), *ob = malloc((size_t)(QB * hd) * 4);
    int rc = G4_OK;
    if (!kh || !vt || !S || !qb || !ob) {
        rc = G4_ERR_NOMEM;
        goto out;
    }
    for (int64_t p = 0; p < n; p++)
        for (int d = 0; d < hd; d++) {
            kh[p * hd + d] = k[p * ld + d];
            vt[(int64_t)d * n + p] = v[p * ld + d];
        }
    g4_tensor_t K = {.dtype = G4_DTYPE_F32, .n_dims = 2, .data = kh, .ne = {hd, n, 1, 1}};
    K.nb[0] = 4;
    K.nb[1] = (uint64_t)hd * 4;
    K.nb[2] = K.nb[3] = K.nb[1] * (uint64_t)n;
    g4_tensor_t Vt = {.dtype = G4_DTYPE_F32, .n_dims = 2, .data = vt, .ne = {n, hd, 1, 1}};
    Vt.nb[0] = 4;
    Vt.nb[1] = (uint64_t)n * 4;
    Vt.nb[2] = Vt.nb[3] = Vt.nb[1] * (uint64_t)hd;
    for (int64_t q0 = 0; q0 < n; q0 += QB) {
        const int64_t nq = n - q0 < QB ? n - q0 : QB;
        for (int64_t t = 0; t < nq; t++) memcpy(qb + t * hd, q + (q0 + t) * ld, (size_t)hd * 4);
        if ((rc = g4_matmul(&K, 0, -1, qb, hd, nq, S, n, NULL))) goto out;
#pragma omp parallel for if (nq * n > 65536)
        for (int64_t t = 0; t < nq; t++) g4_softmax(S + t * n, n);
        if ((rc = g4_matmul(&Vt, 0, -1, S, n, nq, ob, hd, NULL))) goto out;
        for (int64_t t = 0; t < nq; t++) memcpy(o + (q0 + t) * ld, ob + t * hd, (size_t)hd * 4);
    }
out:
    free(kh);
    free(vt);
    free(S);
    free(qb);
    free(ob);
    return rc;
}

int enc_vision_encode(const enc_model_t *m, const uint8_t *rgb, int w, int h, float **out, int *n_tokens,
                      g4_err_t *err)
{
    const enc_info_t *in = &m->info;
    *out = NULL;
    *n_tokens = 0;
    if (!in->has_vision) return g4_err_set(err, G4_ERR_RANGE, "this projector has no vision tower");
    const int P = in->v_patch, MG = in->v_merge, H = in->v_n_embd, NH = in->v_n_head, hd = m->v_hd;
    if (w <= 0 || h <= 0 || w % (P * MG) || h % (P * MG))
        return g4_err_set(err, G4_ERR_RANGE, "image %dx%d is not a multiple of %d on both sides", w, h, P * MG);
    const int npx = w / P, npy = h / P;
    if (npx > m->v_pos_size || npy > m->v_pos_size)
        return g4_err_set(err, G4_ERR_RANGE, "image %dx%d has more patches per side than the position table (%d)", w,
                          h, m->v_pos_size);
    const int64_t n = (int64_t)npx * npy, KP = 3LL * P * P;
    const int FF = (int)g4_tensor_nrows(&m->vb[0].gate.w);
    float *x = malloc((size_t)(n * H) * 4), *a = malloc((size_t)(n * (KP > H ? KP : H)) * 4);
    float *q = malloc((size_t)(n * H) * 4), *k = malloc((size_t)(n * H) * 4), *v = malloc((size_t)(n * H) * 4);
    float *o = malloc((size_t)(n * H) * 4), *g = malloc((size_t)(n * FF) * 4), *u = malloc((size_t)(n * FF) * 4);
    float *csx = malloc((size_t)(n * hd) * 4), *csy = malloc((size_t)(n * hd) * 4);
    int rc = G4_OK;
    if (!x || !a || !q || !k || !v || !o || !g || !u || !csx || !csy) {
        rc = g4_err_set(err, G4_ERR_NOMEM, "out of memory for a %dx%d image", w, h);
        goto done;
    }
    /* im2col rows (c, ky, kx) of each patch; pixel -> (u8/255 - mean)/std -> 2x-1 */
#pragma omp parallel for
    for (int64_t p = 0; p < n; p++) {
        const int px = (int)(p % npx), py = (int)(p / npx);
        float *row = a + p * KP;
        for (int c = 0; c < 3; c++)
            for (int ky = 0; ky < P; ky++)
                for (int kx = 0; kx < P; kx++) {
                    const uint8_t u8 = rgb[((size_t)(py * P + ky) * (size_t)w + (size_t)(px * P + kx)) * 3 + c];
                    const float f = ((float)u8 / 255.0f - m->v_mean[c]) / m->v_std[c];
                    row[(c * P + ky) * P + kx] = f * 2.0f + -1.0f;
                }
    }
    {
        size_t sb = g4_matmul_scratch_bytes(G4_DTYPE_F16, KP, n);
        void *scr = aligned_alloc(64, (sb + 63) & ~(size_t)63);
        if (!scr) {
            rc = g4_err_set(err, G4_ERR_NOMEM, "out of memory");
            goto done;
        }
        rc = g4_matmul(&m->v_patch16, 0, -1, a, KP, n, x, H, scr);
        free(scr);
        if (rc) goto done;
    }
    const float *tx = m->v_pos, *ty = m->v_pos + (size_t)m->v_pos_size * H;
#pragma omp parallel for
    for (int64_t p = 0; p < n; p++) {
        const int px = (int)(p % npx), py = (int)(p / npx);
        float *r = x + p * H;
        for (int i = 0; i < H; i++) r[i] += tx[(size_t)px * H + i];
        for (int i = 0; i < H; i++) r[i] += ty[(size_t)py * H + i];
        g4_rope_cache(csx + p * hd, px, hd / 2, hd / 2, m->v_rope_base, NULL);
        g4_rope_cache(csy + p * hd, py, hd / 2, hd / 2, m->v_rope_base, NULL);
    }
    for (int l = 0; l < in->v_n_layer; l++) {
        const vblk_t *B = &m->vb[l];
        memcpy(a, x, (size_t)(n * H) * 4);
        s_rms_rows(a, B->ln1, n, H, m->v_eps);
        if ((rc = s_lin(&B->q, a, n, q)) || (rc = s_lin(&B->k, a, n, k)) || (rc = s_lin(&B->v, a, n, v))) goto oom;
#pragma omp parallel for
        for (int64_t p = 0; p < n; p++) {
            for (int hh = 0; hh < NH; hh++) {
                float *qh = q + p * H + hh * hd, *kh = k + p * H + hh * hd, *vh = v + p * H + hh * hd;
                if (B->q_norm) g4_rmsnorm(qh, B->q_norm, qh, hd, m->v_eps);
                if (B->k_norm) g4_rmsnorm(kh, B->k_norm, kh, hd, m->v_eps);
                g4_rmsnorm(vh, NULL, vh, hd, m->v_eps);
            }
            /* 2-D RoPE: first half of each head by column, second half by row */
            g4_rope_apply(q + p * H, NH, hd, hd / 2, csx + p * hd);
            g4_rope_apply(q + p * H + hd / 2, NH, hd, hd / 2, csy + p * hd);
            g4_rope_apply(k + p * H, NH, hd, hd / 2, csx + p * hd);
            g4_rope_apply(k + p * H + hd / 2, NH, hd, hd / 2, csy + p * hd);
        }
        for (int hh = 0; hh < NH; hh++)
            if ((rc = s_attn_full(q + hh * hd, k + hh * hd, v + hh * hd, o + hh * hd, n, hd, H))) goto oom;
        if ((rc = s_lin(&B->o, o, n, a))) goto oom;
        if (B->attn_post) s_rms_rows(a, B->attn_post, n, H, m->v_eps);
#pragma omp parallel for
        for (int64_t i = 0; i < n * H; i++) x[i] = a[i] + x[i];
        memcpy(a, x, (size_t)(n * H) * 4);
        s_rms_rows(a, B->ln2, n, H, m->v_eps);
        if ((rc = s_lin(&B->gate, a, n, g)) || (rc = s_lin(&B->up, a, n, u))) goto oom;
        if (m->v_act == 1) {
            g4_geglu(g, u, g, n * FF); /* GELU through the f16 table, times up */
        } else {
#pragma omp parallel for
            for (int64_t i = 0; i < n * FF; i++)
                g[i] = (m->v_act == 0 ? s_gelu_quick_f16(g[i]) : s_silu(g[i])) * u[i];
        }
        if ((rc = s_lin(&B->down, g, n, a))) goto oom;
        if (B->ffn_post) s_rms_rows(a, B->ffn_post, n, H, m->v_eps);
#pragma omp parallel for
        for (int64_t i = 0; i < n * H; i++) {
            float y = x[i] + a[i];
            x[i] = B->has_out_scale ? y * B->out_scale : y;
        }
    }
    /* 3x3 average pooling over the patch grid, token = row-major over the pooled grid */
    {
        const int ox = npx / MG, oy = npy / MG;
        const int64_t nt = (int64_t)ox * oy;
        const float sq = sqrtf((float)H);
        float *pooled = a;
#pragma omp parallel for
        for (int64_t t = 0; t < nt; t++) {
            const int tx0 = (int)(t % ox), ty0 = (int)(t / ox);
            for (int i = 0; i < H; i++) {
                float s = 0.0f;
                for (int dy = 0; dy < MG; dy++)
                    for (int dx = 0; dx < MG; dx++)
                        s += x[((int64_t)(ty0 * MG + dy) * npx + (tx0 * MG + dx)) * H + i];
                s /= (float)(MG * MG);
                s *= sq;
                if (m->v_std_bias && m->v_std_scale) s = (s - m->v_std_bias[i]) * m->v_std_scale[i];
                pooled[t * H + i] = s;
            }
        }
        s_rms_rows(pooled, NULL, nt, H, m->v_eps);
        float *res = malloc((size_t)(nt * in->v_proj_dim) * 4);
        if (!res) goto oom;
        if ((rc = s_lin(&m->v_proj, pooled, nt, res))) {
            free(res);
            goto oom;
        }
        *out = res;
        *n_tokens = (int)nt;
    }
    goto done;
oom:
    if (!rc) rc = G4_ERR_NOMEM;
    g4_err_set(err, rc, "vision tower: %s", rc == G4_ERR_NOMEM ? "out of memory" : "matrix multiply failed");
done:
    free(x);
    free(a);
    free(q);
    free(k);
    free(v);
    free(o);
    free(g);
    free(u);
    free(csx);
    free(csy);
    return rc;
}

/* ---- audio --------------------------------------------------------------------- */

/* conv2d k3 s2 p1 over an input [cin][ht][wf] (time, freq), F16 im2col;
 * returns [cout][ho][wo] after LayerNorm over channels and ReLU */
static int s_sscp(const enc_model_t *m, int i, const float *src, int cin, int ht, int wf, float **dst, int *ho,
                  int *wo)
{
    const int Ho = (ht + 2 - 3) / 2 + 1, Wo = (wf + 2 - 3) / 2 + 1;
    const int cout = (int)m->a_conv16[i].ne[1];
    const int64_t K = (int64_t)cin * 9, n = (int64_t)Ho * Wo;
    float *col = malloc((size_t)(n * K) * 4), *y = malloc((size_t)(n * cout) * 4);
    size_t sb = g4_matmul_scratch_bytes(G4_DTYPE_F16, K, n);
    void *scr = aligned_alloc(64, (sb + 63) & ~(size_t)63);
    if (!col || !y || !scr) {
        free(col);
        free(y);
        free(scr);
        return G4_ERR_NOMEM;
    }
#pragma omp parallel for
    for (int64_t p = 0; p < n; p++) {
        const int oy = (int)(p / Wo), ox = (int)(p % Wo);
        float *r = col + p * K;
        for (int c = 0; c < cin; c++)
            for (int ky = 0; ky < 3; ky++)
                for (int kx = 0; kx < 3; kx++) {
                    const int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                    r[(c * 3 + ky) * 3 + kx] =
                        (iy < 0 || iy >= ht || ix < 0 || ix >= wf) ? 0.0f : src[((int64_t)c * ht + iy) * wf + ix];
                }
    }
    int rc = g4_matmul(&m->a_conv16[i], 0, -1, col, K, n, y, cout, scr);
    free(scr);
    free(col);
    if (rc) {
        free(y);
        return rc;
    }
    float *out = malloc((size_t)(n * cout) * 4);
    if (!out) {
        free(y);
        return G4_ERR_NOMEM;
    }
    const float *nw = m->a_conv_norm[i];
#pragma omp parallel for
    for (int64_t p = 0; p < n; p++) {
        const float *r = y + p * cout;
        double s = 0.0;
        for (int c = 0; c < cout; c++) s += r[c];
        const float mean = (float)(s / cout);
        double s2 = 0.0;
        for (int c = 0; c < cout; c++) {
            const float d = r[c] - mean;
            s2 += (double)(d * d);
        }
        const float scale = 1.0f / sqrtf((float)(s2 / cout) + ENC_EPS);
        for (int c = 0; c < cout; c++) {
            float val = (r[c] - mean) * scale;
            if (nw) val *= nw[c];
            out[(int64_t)c * n + p] = val > 0.0f ? val : 0.0f;
        }
    }
    free(y);
    *dst = out;
    *ho = Ho;
    *wo = Wo;
    return G4_OK;
}

/* x += scale * postnorm(down(silu(up(norm(x))))) */
static int s_half_ffn(const float *nw, const lin_t *up, const lin_t *down, const float *post,
                      float *x, int64_t T, int H, float *a, float *f)
{
    int rc;
    const int64_t FF = g4_tensor_nrows(&up->w);
    memcpy(a, x, (size_t)(T * H) * 4);
    s_rms_rows(a, nw, T, H, ENC_EPS);
    if ((rc = s_lin(up, a, T, f))) return rc;
#pragma omp parallel for if (T * FF > 65536)
    for (int64_t i = 0; i < T * FF; i++) f[i] = s_silu(f[i]);
    if ((rc = s_lin(down, f, T, a))) return rc;
    if (post) s_rms_rows(a, post, T, H, ENC_EPS);
    for (int64_t i = 0; i < T * H; i++) x[i] = x[i] + a[i] * 0.5f;
    return G4_OK;
}

int enc_audio_encode(const enc_model_t *m, const float *mel, int n_frames, float **out, int *n_tokens, g4_err_t *err)
{
    const enc_info_t *in = &m->info;
    *out = NULL;
    *n_tokens = 0;
    if (!in->has_audio) return g4_err_set(err, G4_ERR_RANGE, "this projector has no audio tower");
    if (n_frames < 1) return g4_err_set(err, G4_ERR_RANGE, "no audio frames");
    const int H = in->a_n_embd, NH = in->a_n_head, hd = m->a_hd, NM = in->a_n_mel;
    int rc = G4_OK;
    /* features [T][mel] -> one input channel of height T (time) and width mel */
    float *s1 = NULL, *s2 = NULL;
    int h1, w1, h2, w2;
    if ((rc = s_sscp(m, 0, mel, 1, n_frames, NM, &s1, &h1, &w1))) goto nomem0;
    rc = s_sscp(m, 1, s1, m->a_c0, h1, w1, &s2, &h2, &w2);
    free(s1);
    if (rc) goto nomem0;
    const int T = h2, C1 = m->a_c1;
    const int64_t FW = (int64_t)w2 * C1;
    const int FF = (int)g4_tensor_nrows(&m->ab[0].ffn_up.w);
    const int64_t big = FW > 2 * H ? FW : 2 * H;
    float *x = malloc((size_t)T * H * 4), *a = malloc((size_t)(T * (big > FF ? big : FF)) * 4);
    float *f = malloc((size_t)(T * (FF > 2 * H ? FF : 2 * H)) * 4);
    float *q = malloc((size_t)T * H * 4), *k = malloc((size_t)T * H * 4), *v = malloc((size_t)T * H * 4);
    float *o = malloc((size_t)T * H * 4), *pe = malloc((size_t)13 * H * 4), *R = malloc((size_t)13 * H * 4);
    if (!x || !a || !f || !q || !k || !v || !o || !pe || !R) {
        rc = G4_ERR_NOMEM;
        goto done;
    }
    /* flatten [c][t][f] -> row t, feature f*C1 + c */
    for (int t = 0; t < T; t++)
        for (int fi = 0; fi < w2; fi++)
            for (int c = 0; c < C1; c++) a[(int64_t)t * FW + (int64_t)fi * C1 + c] = s2[((int64_t)c * T + t) * w2 + fi];
    free(s2);
    s2 = NULL;
    if ((rc = s_lin(&m->a_inp, a, T, x))) goto done;
    /* sinusoidal relative positions for distances 12..0 (row r = distance 12 - r) */
    {
        const int nts = H / 2;
        const float inc = logf(10000.0f) / (float)(nts - 1 > 1 ? nts - 1 : 1);
        for (int p = 0; p < 13; p++) {
            const float pos = (float)(12 - p);
            for (int i = 0; i < nts; i++) {
                const float sc = pos * expf(-(float)i * inc);
                pe[p * H + i] = sinf(sc);
                pe[p * H + i + nts] = cosf(sc);
            }
        }
    }
    const float q_scale = (1.0f / sqrtf((float)hd)) / logf(2.0f);
    const float k_scale = logf(1.0f + expf(1.0f)) / logf(2.0f);
    for (int l = 0; l < in->a_n_layer; l++) {
        const ablk_t *B = &m->ab[l];
        if ((rc = s_half_ffn(B->ffn_norm, &B->ffn_up, &B->ffn_down, B->ffn_post, x, T, H, a, f))) goto done;
        /* chunked local attention: query t sees keys t-11 .. t */
        memcpy(a, x, (size_t)T * H * 4);
        if (B->attn_pre) s_rms_rows(a, B->attn_pre, T, H, ENC_EPS);
        if ((rc = s_lin(&B->q, a, T, q)) || (rc = s_lin(&B->k, a, T, k)) || (rc = s_lin(&B->v, a, T, v))) goto done;
        if ((rc = s_lin(&B->k_rel, pe, 13, R))) goto done;
#pragma omp parallel for
        for (int t = 0; t < T; t++)
            for (int hh = 0; hh < NH; hh++) {
                float *qh = q + (int64_t)t * H + hh * hd, *kh = k + (int64_t)t * H + hh * hd;
                for (int d = 0; d < hd; d++) {
                    qh[d] *= q_scale;
                    if (B->per_dim_scale) qh[d] *= B->per_dim_scale[d];
                    kh[d] *= k_scale;
                    if (B->per_dim_k_scale) kh[d] *= B->per_dim_k_scale[d];
                }
            }
#pragma omp parallel for
        for (int t = 0; t < T; t++) {
            float sc[12];
            for (int hh = 0; hh < NH; hh++) {
                const float *qh = q + (int64_t)t * H + hh * hd;
                const int u0 = t - 11 > 0 ? t - 11 : 0, nk = t - u0 + 1;
                for (int u = u0; u <= t; u++) {
                    const float *kh = k + (int64_t)u * H + hh * hd, *rh = R + (int64_t)(12 - (t - u)) * H + hh * hd;
                    float ac = 0.0f, bd = 0.0f;
                    for (int d = 0; d < hd; d++) ac += qh[d] * kh[d];
                    for (int d = 0; d < hd; d++) bd += qh[d] * rh[d];
                    sc[u - u0] = tanhf((ac + bd) * (1.0f / 50.0f)) * 50.0f;
                }
                g4_softmax(sc, nk);
                float *oh = o + (int64_t)t * H + hh * hd;
                for (int d = 0; d < hd; d++) {
                    float s = 0.0f;
                    for (int u = u0; u <= t; u++) s += v[(int64_t)u * H + hh * hd + d] * sc[u - u0];
                    oh[d] = s;
                }
            }
        }
        if ((rc = s_lin(&B->o, o, T, a))) goto done;
        if (B->attn_post) s_rms_rows(a, B->attn_post, T, H, ENC_EPS);
        for (int64_t i = 0; i < (int64_t)T * H; i++) x[i] = x[i] + a[i];
        /* light convolution module */
        memcpy(a, x, (size_t)T * H * 4);
        if (B->conv_norm) s_rms_rows(a, B->conv_norm, T, H, ENC_EPS);
        if ((rc = s_lin(&B->pw1, a, T, f))) goto done;
#pragma omp parallel for
        for (int t = 0; t < T; t++)
            for (int c = 0; c < H; c++) {
                const float gt = f[(int64_t)t * 2 * H + H + c];
                a[(int64_t)t * H + c] = f[(int64_t)t * 2 * H + c] * (1.0f / (1.0f + expf(-gt)));
            }
#pragma omp parallel for
        for (int t = 0; t < T; t++)
            for (int c = 0; c < H; c++) {
                float s = 0.0f;
                for (int j = 0; j < 5; j++) {
                    const int tt = t - 4 + j;
                    const float xv = tt >= 0 ? a[(int64_t)tt * H + c] : 0.0f;
                    s += xv * B->conv_dw[(int64_t)c * 5 + j];
                }
                o[(int64_t)t * H + c] = s;
            }
        if (B->norm_conv) s_rms_rows(o, B->norm_conv, T, H, ENC_EPS);
        else s_rms_rows(o, NULL, T, H, ENC_EPS);
        for (int64_t i = 0; i < (int64_t)T * H; i++) o[i] = s_silu(o[i]);
        if ((rc = s_lin(&B->pw2, o, T, a))) goto done;
        for (int64_t i = 0; i < (int64_t)T * H; i++) x[i] = x[i] + a[i];
        if ((rc = s_half_ffn(B->ffn_norm_1, &B->ffn_up_1, &B->ffn_down_1, B->ffn_post_1, x, T, H, a, f))) goto done;
        if (B->ln2) s_rms_rows(x, B->ln2, T, H, ENC_EPS);
    }
    {
        const int O = (int)g4_tensor_nrows(&m->a_out.w);
        float *y = malloc((size_t)T * O * 4), *res = malloc((size_t)T * in->a_proj_dim * 4);
        if (!y || !res) {
            free(y);
            free(res);
            rc = G4_ERR_NOMEM;
            goto done;
        }
        if ((rc = s_lin(&m->a_out, x, T, y))) {
            free(y);
            free(res);
            goto done;
        }
        if (m->a_out_b)
            for (int t = 0; t < T; t++)
                for (int i = 0; i < O; i++) y[(int64_t)t * O + i] += m->a_out_b[i];
        s_rms_rows(y, m->a_soft_norm, T, O, ENC_EPS);
        rc = s_lin(&m->a_proj, y, T, res);
        free(y);
        if (rc) {
            free(res);
            goto done;
        }
        *out = res;
        *n_tokens = T;
    }
done:
    free(s2);
    free(x);
    free(a);
    free(f);
    free(q);
    free(k);
    free(v);
    free(o);
    free(pe);
    free(R);
    if (rc) return g4_err_set(err, rc, "audio tower: %s", rc == G4_ERR_NOMEM ? "out of memory" : "compute failed");
    return G4_OK;
nomem0:
    return g4_err_set(err, rc, "audio tower: %s", rc == G4_ERR_NOMEM ? "out of memory" : "compute failed");
}
