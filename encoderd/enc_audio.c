/* enc_audio — the audio tower's forward pass (enc_audio_encode, declared in
 * enc_model.h): log-mel -> two stride-2 convolutions -> conformer blocks ->
 * projection. Weights and helpers: enc_model_internal.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "enc_model_internal.h"
#include "g4_act.h"
#include "g4_matmul.h"
#include "g4_norm.h"

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
    enc_model_rms_rows(a, nw, T, H, ENC_EPS);
    if ((rc = enc_model_lin(up, a, T, f))) return rc;
#pragma omp parallel for if (T * FF > 65536)
    for (int64_t i = 0; i < T * FF; i++) f[i] = enc_model_silu(f[i]);
    if ((rc = enc_model_lin(down, f, T, a))) return rc;
    if (post) enc_model_rms_rows(a, post, T, H, ENC_EPS);
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
    if ((rc = enc_model_lin(&m->a_inp, a, T, x))) goto done;
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
        if (B->attn_pre) enc_model_rms_rows(a, B->attn_pre, T, H, ENC_EPS);
        if ((rc = enc_model_lin(&B->q, a, T, q)) || (rc = enc_model_lin(&B->k, a, T, k)) || (rc = enc_model_lin(&B->v, a, T, v))) goto done;
        if ((rc = enc_model_lin(&B->k_rel, pe, 13, R))) goto done;
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
        if ((rc = enc_model_lin(&B->o, o, T, a))) goto done;
        if (B->attn_post) enc_model_rms_rows(a, B->attn_post, T, H, ENC_EPS);
        for (int64_t i = 0; i < (int64_t)T * H; i++) x[i] = x[i] + a[i];
        /* light convolution module */
        memcpy(a, x, (size_t)T * H * 4);
        if (B->conv_norm) enc_model_rms_rows(a, B->conv_norm, T, H, ENC_EPS);
        if ((rc = enc_model_lin(&B->pw1, a, T, f))) goto done;
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
        if (B->norm_conv) enc_model_rms_rows(o, B->norm_conv, T, H, ENC_EPS);
        else enc_model_rms_rows(o, NULL, T, H, ENC_EPS);
        for (int64_t i = 0; i < (int64_t)T * H; i++) o[i] = enc_model_silu(o[i]);
        if ((rc = enc_model_lin(&B->pw2, o, T, a))) goto done;
        for (int64_t i = 0; i < (int64_t)T * H; i++) x[i] = x[i] + a[i];
        if ((rc = s_half_ffn(B->ffn_norm_1, &B->ffn_up_1, &B->ffn_down_1, B->ffn_post_1, x, T, H, a, f))) goto done;
        if (B->ln2) enc_model_rms_rows(x, B->ln2, T, H, ENC_EPS);
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
        if ((rc = enc_model_lin(&m->a_out, x, T, y))) {
            free(y);
            free(res);
            goto done;
        }
        if (m->a_out_b)
            for (int t = 0; t < T; t++)
                for (int i = 0; i < O; i++) y[(int64_t)t * O + i] += m->a_out_b[i];
        enc_model_rms_rows(y, m->a_soft_norm, T, O, ENC_EPS);
        rc = enc_model_lin(&m->a_proj, y, T, res);
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
