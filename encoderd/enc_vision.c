/* enc_vision — the vision tower's forward pass (enc_vision_encode, declared
 * in enc_model.h): patches -> ViT blocks -> 3x3 pooling -> projection.
 * Weights and helpers: enc_model_internal.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "enc_model_internal.h"
#include "g4_act.h"
#include "g4_matmul.h"
#include "g4_norm.h"
#include "g4_rope.h"

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
        enc_model_rms_rows(a, B->ln1, n, H, m->v_eps);
        if ((rc = enc_model_lin(&B->q, a, n, q)) || (rc = enc_model_lin(&B->k, a, n, k)) || (rc = enc_model_lin(&B->v, a, n, v))) goto oom;
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
        if ((rc = enc_model_lin(&B->o, o, n, a))) goto oom;
        if (B->attn_post) enc_model_rms_rows(a, B->attn_post, n, H, m->v_eps);
#pragma omp parallel for
        for (int64_t i = 0; i < n * H; i++) x[i] = a[i] + x[i];
        memcpy(a, x, (size_t)(n * H) * 4);
        enc_model_rms_rows(a, B->ln2, n, H, m->v_eps);
        if ((rc = enc_model_lin(&B->gate, a, n, g)) || (rc = enc_model_lin(&B->up, a, n, u))) goto oom;
        if (m->v_act == 1) {
            g4_geglu(g, u, g, n * FF); /* GELU through the f16 table, times up */
        } else {
#pragma omp parallel for
            for (int64_t i = 0; i < n * FF; i++)
                g[i] = (m->v_act == 0 ? enc_model_gelu_quick_f16(g[i]) : enc_model_silu(g[i])) * u[i];
        }
        if ((rc = enc_model_lin(&B->down, g, n, a))) goto oom;
        if (B->ffn_post) enc_model_rms_rows(a, B->ffn_post, n, H, m->v_eps);
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
        enc_model_rms_rows(pooled, NULL, nt, H, m->v_eps);
        float *res = malloc((size_t)(nt * in->v_proj_dim) * 4);
        if (!res) goto oom;
        if ((rc = enc_model_lin(&m->v_proj, pooled, nt, res))) {
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
