/* enc_model_internal — what the tower files share: the weights as loaded
 * (struct enc_model, one ClippableLinear lin_t, a vision / audio block) and
 * the compute helpers both towers use. Only encoderd's enc_model.c (loading,
 * helpers), enc_vision.c and enc_audio.c include it; everything else uses
 * enc_model.h. */
#ifndef ENC_MODEL_INTERNAL_H
#define ENC_MODEL_INTERNAL_H

#include <math.h>
#include <stdint.h>

#include "enc_model.h"
#include "g4_dtype.h"
#include "g4_tensor.h"

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

/* ---- compute helpers (enc_model.c) -------------------------------------------- */

/* Y[T][N] = clamp(W · clamp(X)) for a ClippableLinear; G4_OK or G4_ERR_NOMEM */
int enc_model_lin(const lin_t *l, const float *X, int64_t T, float *Y);
/* per-row RMS norm of T rows of n, in place (w may be NULL) */
void enc_model_rms_rows(float *x, const float *w, int64_t T, int64_t n, float eps);

/* quick GELU as ggml's CPU backend: f16 table lookup (input and result in f16) */
static inline float enc_model_gelu_quick_f16(float x)
{
    const float h = g4_round_fp16(x);
    return g4_round_fp16(h * (1.0f / (1.0f + expf(-1.702f * h))));
}

static inline float enc_model_silu(float x) { return x / (1.0f + expf(-x)); }

#endif
