/* g4_quant — row quantizers with llama.cpp's bytes, and the per-tensor type
 * choice of llama-quantize's mixes (see g4_quant.h).
 *
 * Every quantizer mirrors one reference function of llama.cpp's
 * ggml/src/ggml-quants.c, statement for statement where the float operations
 * matter (the order of sums, where a value is rounded to fp16), because the
 * goal is the same bytes, not merely the same quality:
 *   Q8_0 quantize_row_q8_0_ref     Q4_0 quantize_row_q4_0_ref
 *   Q4_1 quantize_row_q4_1_ref     Q5_0 quantize_row_q5_0_ref
 *   Q5_1 quantize_row_q5_1_ref     Q8_K quantize_row_q8_K_ref
 *   Q4_K quantize_row_q4_K_ref  (make_qkx2_quants, 21 candidate scales)
 *   Q5_K quantize_row_q5_K_ref  (make_qkx2_quants, 16 candidate scales)
 *   Q6_K quantize_row_q6_K_ref  (make_qx_quants, rmse_type 1)
 * which is what llama-quantize calls when no importance matrix is given
 * (quantize_q4_K etc. fall through to the _ref functions). The file is built
 * with -ffp-contract=off so no multiply-add is fused (ggml's reference code is
 * compiled without FMA contraction either). */
#include "g4_quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* simple formats and activations                                         */
/* ====================================================================== */

/* round half to even via the float magic-number trick (llama.cpp nearest_int) */
static inline int s_nearest_int(float fval)
{
    float val = fval + 12582912.f;
    int i;
    memcpy(&i, &val, sizeof(int));
    return (i & 0x007fffff) - 0x00400000;
}

static void s_q_q8_0(const float *x, g4_block_q8_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

static void s_q_q8_1(const float *x, g4_block_q8_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = g4_fp32_to_fp16(sum * d);
    }
}

/* the value of largest magnitude, with its sign (the first one on ties) */
static float s_absmax_signed(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
    return max;
}

static void s_q_q4_0(const float *x, g4_block_q4_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float max = s_absmax_signed(x, 32);
        const float d = max / -8, id = d ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[j + 16] * id + 8.5f);
            if (a > 15) a = 15;
            if (b > 15) b = 15;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

static void s_q_q4_1(const float *x, g4_block_q4_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min = INFINITY, max = -INFINITY;
        for (int j = 0; j < 32; j++) min = fminf(min, x[j]), max = fmaxf(max, x[j]);
        const float d = (max - min) / 15, id = d ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        y[i].m = g4_fp32_to_fp16(min);
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)((x[j] - min) * id + 0.5f), b = (int8_t)((x[j + 16] - min) * id + 0.5f);
            if (a > 15) a = 15;
            if (b > 15) b = 15;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

/* Q5_0 / Q5_1 packing: low nibbles of q[j] and q[j+16] share byte j, the
 * fifth bits go to bit j of qh (little-endian u32). */
static void s_pack_q5(const int *q, uint8_t qs[16], uint8_t qh_out[4])
{
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | ((q[j + 16] & 0xF) << 4));
        qh |= ((uint32_t)(q[j] & 0x10) >> 4) << j;
        qh |= ((uint32_t)(q[j + 16] & 0x10) >> 4) << (j + 16);
    }
    memcpy(qh_out, &qh, 4);
}

static void s_q_q5_0(const float *x, g4_block_q5_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        const float max = s_absmax_signed(x, 32);
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        int q[32];
        for (int j = 0; j < 32; j++) {
            q[j] = (int8_t)(x[j] * id + 16.5f);
            if (q[j] > 31) q[j] = 31;
        }
        s_pack_q5(q, y[i].qs, y[i].qh);
    }
}

static void s_q_q5_1(const float *x, g4_block_q5_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float min = INFINITY, max = -INFINITY;
        for (int j = 0; j < 32; j++) min = fminf(min, x[j]), max = fmaxf(max, x[j]);
        const float d = (max - min) / 31, id = d ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        y[i].m = g4_fp32_to_fp16(min);
        int q[32];
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        s_pack_q5(q, y[i].qs, y[i].qh);
    }
}

/* Q8_K activation quantization: exactly quantize_row_q8_K_ref. */
static void s_q_q8_K(const float *x, g4_block_q8_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float max = 0, amax = 0;
        for (int j = 0; j < 256; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        if (!amax) {
            y[i].d = 0;
            memset(y[i].qs, 0, 256);
            memset(y[i].bsums, 0, sizeof y[i].bsums);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < 256; j++) {
            int v = s_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

/* ====================================================================== */
/* K-quants                                                               */
/* ====================================================================== */

#define S_GROUP_MAX_EPS 1e-15f

/* make_qkx2_quants: x ~= scale * L - the_min with L in [0, nmax]; weighted
 * least squares over nstep+1 candidate inverse scales. */
static float s_make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                                uint8_t *Laux, float rmin, float rdelta, int nstep)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = s_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        diff = diff * diff;
        float w = weights[i];
        best_error += w * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = s_nearest_int(iscale * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = diff * diff;
                float w = weights[i];
                cur_error += w * diff;
            }
            if (cur_error < best_error) {
                for (int i = 0; i < n; ++i) L[i] = Laux[i];
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* make_qx_quants with rmse_type 1 and no importance weights: x ~= scale * l,
 * l in [-nmax, nmax-1], weights x^2; L receives l + nmax. */
static float s_make_qx_quants(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < S_GROUP_MAX_EPS) {
        for (int i = 0; i < n; ++i) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = s_nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int l = s_nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = s_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + (l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* The 8 sub-block scales and mins of one Q4_K / Q5_K super-block: fit each
 * sub-block of 32 (nmax 15 or 31), pack the 6-bit scales, then requantize
 * every sub-block with the packed fp16 values (quantize_row_q{4,5}_K_ref). */
static void s_kq_fit(const float *x, int nmax, float rmin, int nstep, uint8_t *L, uint8_t scales_out[12],
                     g4_fp16_t *d_out, g4_fp16_t *dmin_out)
{
    uint8_t Laux[32];
    float weights[32], mins[8], scales[8];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = s_make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales_out, 0, 12);
    for (int j = 0; j < 8; ++j) {
        uint8_t ls = (uint8_t)s_nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)s_nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            scales_out[j] = ls;
            scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j - 0] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = g4_fp32_to_fp16(max_scale / 63.f);
    *dmin_out = g4_fp32_to_fp16(max_min / 63.f);
    for (int j = 0; j < 8; ++j) {
        uint8_t sc, m;
        g4_kq_scale_min(j, scales_out, &sc, &m);
        const float d = g4_fp16_to_fp32(*d_out) * sc;
        if (!d) continue; /* keeps the fit's L, as the reference does */
        const float dm = g4_fp16_to_fp32(*dmin_out) * m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = s_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        }
    }
}

static void s_q_q4_K(const float *x, g4_block_q4_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        uint8_t L[256];
        s_kq_fit(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < 256; j += 64, q += 32)
            for (int l = 0; l < 32; ++l) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void s_q_q5_K(const float *x, g4_block_q5_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        uint8_t L[256];
        s_kq_fit(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        uint8_t *qh = y[i].qh, *ql = y[i].qs;
        memset(qh, 0, 32);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < 256; n += 64) {
            for (int j = 0; j < 32; ++j) {
                int l1 = L[n + j];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[j] |= m1;
                }
                int l2 = L[n + j + 32];
                if (l2 > 15) {
                    l2 -= 16;
                    qh[j] |= m2;
                }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
            m1 = (uint8_t)(m1 << 2);
            m2 = (uint8_t)(m2 << 2);
            ql += 32;
        }
    }
}

static void s_q_q6_K(const float *x, g4_block_q6_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        int8_t L[256];
        float scales[16], max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < 16; ++ib) {
            const float scale = s_make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            const float abs_scale = fabsf(scale);
            if (abs_scale > max_abs_scale) {
                max_abs_scale = abs_scale;
                max_scale = scale;
            }
        }
        if (max_abs_scale < S_GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        float iscale = -128.f / max_scale;
        y[i].d = g4_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < 16; ++ib) {
            int s = s_nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(s < 127 ? s : 127);
        }
        for (int j = 0; j < 16; ++j) {
            float d = g4_fp16_to_fp32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = s_nearest_int(x[16 * j + ii] / d);
                l = l < -32 ? -32 : l > 31 ? 31 : l;
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < 256; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; ++l) {
                const uint8_t q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l + 0] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                  ((L[j + l + 96] >> 4) << 6));
            }
    }
}

/* ====================================================================== */
/* rows                                                                   */
/* ====================================================================== */

int g4_quant_row(uint32_t t, const float *src, void *dst, int64_t n)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    if (!tr || n < 0 || n % tr->block_size) return -1;
    const int64_t nb = n / tr->block_size;
    switch ((g4_dtype_t)t) {
    case G4_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case G4_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            g4_fp16_t h = g4_fp32_to_fp16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
        return 0;
    case G4_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            g4_bf16_t h = g4_fp32_to_bf16(src[i]);
            memcpy((uint8_t *)dst + 2 * i, &h, 2);
        }
        return 0;
    case G4_DTYPE_Q8_0: s_q_q8_0(src, dst, nb); return 0;
    case G4_DTYPE_Q8_1: s_q_q8_1(src, dst, nb); return 0;
    case G4_DTYPE_Q4_0: s_q_q4_0(src, dst, nb); return 0;
    case G4_DTYPE_Q4_1: s_q_q4_1(src, dst, nb); return 0;
    case G4_DTYPE_Q5_0: s_q_q5_0(src, dst, nb); return 0;
    case G4_DTYPE_Q5_1: s_q_q5_1(src, dst, nb); return 0;
    case G4_DTYPE_Q4_K: s_q_q4_K(src, dst, nb); return 0;
    case G4_DTYPE_Q5_K: s_q_q5_K(src, dst, nb); return 0;
    case G4_DTYPE_Q6_K: s_q_q6_K(src, dst, nb); return 0;
    case G4_DTYPE_Q8_K: s_q_q8_K(src, dst, nb); return 0;
    default: return -1;
    }
}

int g4_quant_rows(uint32_t t, const float *src, void *dst, int64_t n_rows, int64_t n_per_row)
{
    const uint64_t rb = g4_dtype_row_bytes(t, (uint64_t)n_per_row);
    if (!rb || n_rows < 0) return -1;
    for (int64_t r = 0; r < n_rows; r++)
        if (g4_quant_row(t, src + r * n_per_row, (uint8_t *)dst + (uint64_t)r * rb, n_per_row)) return -1;
    return 0;
}

/* ====================================================================== */
/* mixes: llama_tensor_get_type for gemma4                                */
/* ====================================================================== */

static const struct {
    const char *name;
    uint32_t base;  /* default_type of the llama_ftype */
    uint32_t ftype; /* llama_ftype                     */
    int pure;       /* every tensor the base type      */
} s_mixes[G4_QUANT_MIX_COUNT] = {
    [G4_QUANT_MIX_F32] = {"F32", G4_DTYPE_F32, 0, 0},
    [G4_QUANT_MIX_F16] = {"F16", G4_DTYPE_F16, 1, 0},
    [G4_QUANT_MIX_BF16] = {"BF16", G4_DTYPE_BF16, 32, 0},
    [G4_QUANT_MIX_Q8_0] = {"Q8_0", G4_DTYPE_Q8_0, 7, 0},
    [G4_QUANT_MIX_Q4_0] = {"Q4_0", G4_DTYPE_Q4_0, 2, 0},
    [G4_QUANT_MIX_Q4_1] = {"Q4_1", G4_DTYPE_Q4_1, 3, 0},
    [G4_QUANT_MIX_Q5_0] = {"Q5_0", G4_DTYPE_Q5_0, 8, 0},
    [G4_QUANT_MIX_Q5_1] = {"Q5_1", G4_DTYPE_Q5_1, 9, 0},
    [G4_QUANT_MIX_Q4_K] = {"Q4_K", G4_DTYPE_Q4_K, 15, 1},
    [G4_QUANT_MIX_Q5_K] = {"Q5_K", G4_DTYPE_Q5_K, 17, 1},
    [G4_QUANT_MIX_Q6_K] = {"Q6_K", G4_DTYPE_Q6_K, 18, 0},
    [G4_QUANT_MIX_Q4_K_S] = {"Q4_K_S", G4_DTYPE_Q4_K, 14, 0},
    [G4_QUANT_MIX_Q4_K_M] = {"Q4_K_M", G4_DTYPE_Q4_K, 15, 0},
    [G4_QUANT_MIX_Q5_K_S] = {"Q5_K_S", G4_DTYPE_Q5_K, 16, 0},
    [G4_QUANT_MIX_Q5_K_M] = {"Q5_K_M", G4_DTYPE_Q5_K, 17, 0},
};

int g4_quant_mix_from_name(const char *name)
{
    for (int i = 0; i < G4_QUANT_MIX_COUNT; i++) {
        const char *a = s_mixes[i].name, *b = name;
        while (*a && *b && *a == (*b >= 'a' && *b <= 'z' ? *b - 32 : *b)) a++, b++;
        if (!*a && !*b) return i;
    }
    return -1;
}

const char *g4_quant_mix_name(g4_quant_mix_t mix) { return mix < G4_QUANT_MIX_COUNT ? s_mixes[mix].name : "?"; }
uint32_t g4_quant_mix_ftype(g4_quant_mix_t mix) { return s_mixes[mix].ftype; }
uint32_t g4_quant_mix_base_type(g4_quant_mix_t mix) { return s_mixes[mix].base; }

static int s_contains(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static int s_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !memcmp(s + n - m, suffix, m);
}

static int s_is_quantized(uint32_t t)
{
    return t != G4_DTYPE_F32 && t != G4_DTYPE_F16 && t != G4_DTYPE_BF16 && t != G4_DTYPE_F64 && t != G4_DTYPE_I8 &&
           t != G4_DTYPE_I16 && t != G4_DTYPE_I32 && t != G4_DTYPE_I64;
}

static int s_layer_of(const char *name)
{
    int il = -1;
    if (sscanf(name, "blk.%d.", &il) != 1) il = -1;
    return il;
}

/* llama.cpp's use_more_bits: the first and last eighth and every third layer between */
static int s_use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* tensor_allows_quantization, the parts that can match a gemma4 file */
static int s_allows_quantization(const char *name, int n_dims)
{
    if (n_dims < 2) return 0;
    if (!s_ends_with(name, "weight")) return 0;
    static const char *const never[] = {"_norm.weight", "ffn_gate_inp.weight", "altup", "laurel",
                                        "per_layer_model_proj", ".position_embd", ".patch_embd"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (s_contains(name, never[i])) return 0;
    return 1;
}

void g4_quant_mix_begin(g4_quant_mix_state_t *st, g4_quant_mix_t mix, int n_layer, const char *const *names,
                        int64_t n_names)
{
    memset(st, 0, sizeof *st);
    st->mix = mix;
    st->n_layer = n_layer;
    st->tied = 1;
    for (int64_t i = 0; i < n_names; i++) {
        if (s_contains(names[i], "attn_v.weight") || s_contains(names[i], "attn_qkv.weight") ||
            s_contains(names[i], "attn_kv_b.weight"))
            st->n_attn_v++;
        if (!strcmp(names[i], "output.weight")) st->tied = 0;
    }
}

/* tensor_type_fallback */
static uint32_t s_fallback(g4_quant_mix_state_t *st, int64_t ne0, uint32_t t)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    if (ne0 % tr->block_size == 0) return t;
    st->n_fallback++;
    uint32_t r = t == G4_DTYPE_Q4_K ? G4_DTYPE_Q5_0 : t == G4_DTYPE_Q5_K ? G4_DTYPE_Q5_1
               : t == G4_DTYPE_Q6_K ? G4_DTYPE_Q8_0 : t;
    if (ne0 % g4_dtype_traits(r)->block_size) r = G4_DTYPE_F16;
    return r;
}

uint32_t g4_quant_mix_type(g4_quant_mix_state_t *st, const char *name, int n_dims, int64_t ne0, uint32_t src_type)
{
    if (!s_allows_quantization(name, n_dims)) return src_type;
    const g4_quant_mix_t mix = st->mix;
    uint32_t t = s_mixes[mix].base;
    if (!s_is_quantized(t)) return t;
    if (s_mixes[mix].pure) return s_fallback(st, ne0, t);
    const int is_output = !strcmp(name, "output.weight");
    const int is_tok = !strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight");
    const int is_attn_v = s_contains(name, "attn_v.weight") || s_contains(name, "attn_qkv.weight") ||
                          s_contains(name, "attn_kv_b.weight");
    if (is_output || (st->tied && is_tok)) {
        /* the tied LM head: Q6_K unless the mix is Q8_0 or the row is not whole blocks */
        if (ne0 % g4_dtype_traits(t)->block_size) t = G4_DTYPE_Q8_0;
        else if (t != G4_DTYPE_Q8_0) t = G4_DTYPE_Q6_K;
    } else if (is_tok) {
        /* untied token embeddings keep the base type for these mixes */
    } else if (is_attn_v) {
        if ((mix == G4_QUANT_MIX_Q4_K_M || mix == G4_QUANT_MIX_Q5_K_M) && s_use_more_bits(st->i_attn_v, st->n_attn_v))
            t = G4_DTYPE_Q6_K;
        else if (mix == G4_QUANT_MIX_Q4_K_S && st->i_attn_v < 4)
            t = G4_DTYPE_Q5_K;
        st->i_attn_v++;
    } else if (s_contains(name, "ffn_down")) {
        /* llama.cpp counts ffn_down tensors (dense) or parses blk.N (MoE); both
         * give the layer index in its tensor order */
        const int il = s_layer_of(name), n = st->n_layer;
        if ((mix == G4_QUANT_MIX_Q4_K_M || mix == G4_QUANT_MIX_Q5_K_M) && s_use_more_bits(il, n))
            t = G4_DTYPE_Q6_K;
        else if (mix == G4_QUANT_MIX_Q4_K_S && il < n / 8)
            t = G4_DTYPE_Q5_K;
    }
    return s_fallback(st, ne0, t);
}

int g4_quant_tensor_cmp(const char *a, const char *b)
{
    const int la = s_layer_of(a), lb = s_layer_of(b);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}
