/* g4_dtype — type traits, row dequantization and quantization (reference).
 *
 * Dequantization follows docs/gguf-quant-formats exactly (and so llama.cpp's
 * dequantize_row_* and gguf-py). Quantizers for the weight formats are our
 * own least-squares searches in the spirit of llama.cpp's reference
 * quantizers (make_qx_quants / make_qkx2_quants); the simple formats (Q8_0,
 * Q4_0, Q4_1, Q5_0, Q5_1) and the activation format Q8_K use exactly the
 * rounding rules of llama.cpp's *_ref functions. */
#include "g4_dtype.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ====================================================================== */
/* traits                                                                 */
/* ====================================================================== */

static const g4_dtype_traits_t s_traits[G4_DTYPE_COUNT] = {
    [G4_DTYPE_F32] = {"F32", 1, 4, 1},
    [G4_DTYPE_F16] = {"F16", 1, 2, 1},
    [G4_DTYPE_Q4_0] = {"Q4_0", 32, 18, 1},
    [G4_DTYPE_Q4_1] = {"Q4_1", 32, 20, 1},
    [G4_DTYPE_Q5_0] = {"Q5_0", 32, 22, 1},
    [G4_DTYPE_Q5_1] = {"Q5_1", 32, 24, 1},
    [G4_DTYPE_Q8_0] = {"Q8_0", 32, 34, 1},
    [G4_DTYPE_Q8_1] = {"Q8_1", 32, 36, 1},
    [G4_DTYPE_Q2_K] = {"Q2_K", 256, 84, 0},
    [G4_DTYPE_Q3_K] = {"Q3_K", 256, 110, 0},
    [G4_DTYPE_Q4_K] = {"Q4_K", 256, 144, 1},
    [G4_DTYPE_Q5_K] = {"Q5_K", 256, 176, 1},
    [G4_DTYPE_Q6_K] = {"Q6_K", 256, 210, 1},
    [G4_DTYPE_Q8_K] = {"Q8_K", 256, 292, 1},
    [G4_DTYPE_IQ2_XXS] = {"IQ2_XXS", 256, 66, 0},
    [G4_DTYPE_IQ2_XS] = {"IQ2_XS", 256, 74, 0},
    [G4_DTYPE_IQ3_XXS] = {"IQ3_XXS", 256, 98, 0},
    [G4_DTYPE_IQ1_S] = {"IQ1_S", 256, 50, 0},
    [G4_DTYPE_IQ4_NL] = {"IQ4_NL", 32, 18, 0},
    [G4_DTYPE_IQ3_S] = {"IQ3_S", 256, 110, 0},
    [G4_DTYPE_IQ2_S] = {"IQ2_S", 256, 82, 0},
    [G4_DTYPE_IQ4_XS] = {"IQ4_XS", 256, 136, 0},
    [G4_DTYPE_I8] = {"I8", 1, 1, 0},
    [G4_DTYPE_I16] = {"I16", 1, 2, 0},
    [G4_DTYPE_I32] = {"I32", 1, 4, 0},
    [G4_DTYPE_I64] = {"I64", 1, 8, 0},
    [G4_DTYPE_F64] = {"F64", 1, 8, 0},
    [G4_DTYPE_IQ1_M] = {"IQ1_M", 256, 56, 0},
    [G4_DTYPE_BF16] = {"BF16", 1, 2, 1},
    [G4_DTYPE_TQ1_0] = {"TQ1_0", 256, 54, 0},
    [G4_DTYPE_TQ2_0] = {"TQ2_0", 256, 66, 0},
    [G4_DTYPE_MXFP4] = {"MXFP4", 32, 17, 0},
    [G4_DTYPE_NVFP4] = {"NVFP4", 64, 36, 0},
    [G4_DTYPE_Q1_0] = {"Q1_0", 128, 18, 0},
    [G4_DTYPE_Q2_0] = {"Q2_0", 64, 18, 0},
};

const g4_dtype_traits_t *g4_dtype_traits(uint32_t t)
{
    if (t >= G4_DTYPE_COUNT || !s_traits[t].name) return NULL;
    return &s_traits[t];
}

const char *g4_dtype_name(uint32_t t)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    return tr ? tr->name : "?";
}

int g4_dtype_from_name(const char *name)
{
    for (int t = 0; t < G4_DTYPE_COUNT; t++) {
        if (!s_traits[t].name) continue;
        const char *a = s_traits[t].name, *b = name;
        while (*a && *b && (*a == *b || (*a >= 'A' && *a <= 'Z' && *a + 32 == *b))) a++, b++;
        if (!*a && !*b) return t;
    }
    return -1;
}

uint64_t g4_dtype_row_bytes(uint32_t t, uint64_t n)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    if (!tr || n % tr->block_size) return 0;
    uint64_t nb = n / tr->block_size;
    if (nb > UINT64_MAX / tr->type_size) return 0;
    return nb * tr->type_size;
}

/* ====================================================================== */
/* dequantization                                                         */
/* ====================================================================== */

static void s_deq_q8_0(const g4_block_q8_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = g4_fp16_to_fp32(b[i].d);
        for (int j = 0; j < 32; j++) y[j] = b[i].qs[j] * d;
    }
}

static void s_deq_q4_0(const g4_block_q4_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = g4_fp16_to_fp32(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((b[i].qs[j] & 0x0F) - 8) * d;
            y[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void s_deq_q4_1(const g4_block_q4_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = g4_fp16_to_fp32(b[i].d), m = g4_fp16_to_fp32(b[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (b[i].qs[j] & 0x0F) * d + m;
            y[j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void s_deq_q5_0(const g4_block_q5_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = g4_fp16_to_fp32(b[i].d);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int x0 = ((b[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
            const int x1 = ((b[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
            y[j] = x0 * d;
            y[j + 16] = x1 * d;
        }
    }
}

static void s_deq_q5_1(const g4_block_q5_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = g4_fp16_to_fp32(b[i].d), m = g4_fp16_to_fp32(b[i].m);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < 16; j++) {
            const int x0 = (b[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
            const int x1 = (b[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
            y[j] = x0 * d + m;
            y[j + 16] = x1 * d + m;
        }
    }
}

static void s_deq_q8_1(const g4_block_q8_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = g4_fp16_to_fp32(b[i].d);
        for (int j = 0; j < 32; j++) y[j] = b[i].qs[j] * d;
    }
}

static void s_deq_q4_K(const g4_block_q4_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(b[i].d), dmin = g4_fp16_to_fp32(b[i].dmin);
        const uint8_t *q = b[i].qs;
        for (int c = 0, is = 0; c < 4; c++, q += 32, is += 2) {
            uint8_t sc, m;
            g4_kq_scale_min(is, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            g4_kq_scale_min(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void s_deq_q5_K(const g4_block_q5_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(b[i].d), dmin = g4_fp16_to_fp32(b[i].dmin);
        const uint8_t *ql = b[i].qs, *qh = b[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int c = 0, is = 0; c < 4; c++, ql += 32, is += 2, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            g4_kq_scale_min(is, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            g4_kq_scale_min(is + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

static void s_deq_q6_K(const g4_block_q6_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++) {
        const float d = g4_fp16_to_fp32(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is + 0] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

static void s_deq_q8_K(const g4_block_q8_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 256)
        for (int j = 0; j < 256; j++) y[j] = b[i].d * b[i].qs[j];
}

int g4_dequant_row(uint32_t t, const void *src, float *dst, int64_t n)
{
    const g4_dtype_traits_t *tr = g4_dtype_traits(t);
    if (!tr || !tr->computable || n < 0 || n % tr->block_size) return -1;
    const int64_t nb = n / tr->block_size;
    switch ((g4_dtype_t)t) {
    case G4_DTYPE_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case G4_DTYPE_F16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) {
            g4_fp16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = g4_fp16_to_fp32(h);
        }
        return 0;
    }
    case G4_DTYPE_BF16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) {
            g4_bf16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = g4_bf16_to_fp32(h);
        }
        return 0;
    }
    case G4_DTYPE_Q8_0: s_deq_q8_0(src, dst, nb); return 0;
    case G4_DTYPE_Q8_1: s_deq_q8_1(src, dst, nb); return 0;
    case G4_DTYPE_Q4_0: s_deq_q4_0(src, dst, nb); return 0;
    case G4_DTYPE_Q4_1: s_deq_q4_1(src, dst, nb); return 0;
    case G4_DTYPE_Q5_0: s_deq_q5_0(src, dst, nb); return 0;
    case G4_DTYPE_Q5_1: s_deq_q5_1(src, dst, nb); return 0;
    case G4_DTYPE_Q4_K: s_deq_q4_K(src, dst, nb); return 0;
    case G4_DTYPE_Q5_K: s_deq_q5_K(src, dst, nb); return 0;
    case G4_DTYPE_Q6_K: s_deq_q6_K(src, dst, nb); return 0;
    case G4_DTYPE_Q8_K: s_deq_q8_K(src, dst, nb); return 0;
    default: return -1;
    }
}

/* ====================================================================== */
/* quantization                                                           */
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

static void s_q_q4_0(const float *x, g4_block_q4_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
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

static void s_q_q5_0(const float *x, g4_block_q5_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)(x[j] * id + 16.5f), b = (int8_t)(x[j + 16] * id + 16.5f);
            if (a > 31) a = 31;
            if (b > 31) b = 31;
            y[i].qs[j] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
            qh |= ((uint32_t)(a & 0x10) >> 4) << j;
            qh |= ((uint32_t)(b & 0x10) >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
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
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            int a = (int8_t)((x[j] - min) * id + 0.5f), b = (int8_t)((x[j + 16] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((a & 0xF) | ((b & 0xF) << 4));
            qh |= ((uint32_t)(a & 0x10) >> 4) << j;
            qh |= ((uint32_t)(b & 0x10) >> 4) << (j + 16);
        }
        memcpy(y[i].qh, &qh, 4);
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

/* Weighted least-squares fit of x ≈ scale*L - min with L in [0, nmax],
 * searching a few candidate scales around (max-min)/nmax. Returns scale,
 * *the_min receives min (>= 0). Our own version of the asymmetric search. */
static float s_fit_asym(int n, int nmax, const float *x, const float *w, uint8_t *L, float *the_min)
{
    float min = x[0], max = x[0], sum_w = w[0], sum_x = w[0] * x[0];
    for (int i = 1; i < n; i++) {
        min = fminf(min, x[i]);
        max = fmaxf(max, x[i]);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best = 0;
    for (int i = 0; i < n; i++) {
        int l = s_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
        float diff = scale * L[i] + min - x[i];
        best += w[i] * diff * diff;
    }
    uint8_t Laux[256];
    for (int is = 0; is <= 20; is++) {
        float isc = (-1.0f + 0.1f * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = s_nearest_int(isc * (x[i] - min));
            l = l < 0 ? 0 : l > nmax ? nmax : l;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D <= 0) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0) {
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float mad = 0;
        for (int i = 0; i < n; i++) {
            float diff = this_scale * Laux[i] + this_min - x[i];
            mad += w[i] * diff * diff;
        }
        if (mad < best) {
            memcpy(L, Laux, (size_t)n);
            best = mad;
            scale = this_scale;
            min = this_min;
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric fit x ≈ scale*L, L in [-nmax, nmax-1], weights x^2; returns scale
 * and leaves L+nmax in L. */
static float s_fit_sym(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-30f) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float best_scale = 0, best = -1;
    for (int is = -9; is <= 9; is++) {
        float iscale = -(nmax + 0.1f * is) / max;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = s_nearest_int(iscale * x[i]);
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            best = sumlx * sumlx / suml2;
            best_scale = sumlx / suml2;
            for (int i = 0; i < n; i++) {
                int l = s_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l);
            }
        }
    }
    return best_scale;
}

static void s_pack_scale_min(uint8_t *q, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* Q4_K (nmax 15) and Q5_K (nmax 31): 8 sub-blocks of 32 with 6-bit scale/min. */
static void s_q_kq(const float *x, void *yv, int64_t nb, int nmax)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        uint8_t L[256];
        float scales[8], mins[8], w[32];
        float sum_x2 = 0;
        for (int l = 0; l < 256; l++) sum_x2 += x[l] * x[l];
        const float av_x = sqrtf(sum_x2 / 256);
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(x[32 * j + l]);
            scales[j] = s_fit_asym(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j]);
            max_scale = fmaxf(max_scale, scales[j]);
            max_min = fmaxf(max_min, mins[j]);
        }
        uint8_t sc[12] = {0};
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        uint8_t ls[8], lm[8];
        for (int j = 0; j < 8; j++) {
            int a = s_nearest_int(inv_scale * scales[j]), b = s_nearest_int(inv_min * mins[j]);
            ls[j] = (uint8_t)(a > 63 ? 63 : a < 0 ? 0 : a);
            lm[j] = (uint8_t)(b > 63 ? 63 : b < 0 ? 0 : b);
            s_pack_scale_min(sc, j, ls[j], lm[j]);
        }
        const g4_fp16_t dh = g4_fp32_to_fp16(max_scale / 63.f), mh = g4_fp32_to_fp16(max_min / 63.f);
        const float d = g4_fp16_to_fp32(dh), dmin = g4_fp16_to_fp32(mh);
        for (int j = 0; j < 8; j++) {
            const float d1 = d * ls[j], dm = dmin * lm[j];
            for (int l = 0; l < 32; l++) {
                int q = d1 ? s_nearest_int((x[32 * j + l] + dm) / d1) : 0;
                L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
            }
        }
        if (nmax == 15) {
            g4_block_q4_K *y = (g4_block_q4_K *)yv + i;
            y->d = dh;
            y->dmin = mh;
            memcpy(y->scales, sc, 12);
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++)
                    y->qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
        } else {
            g4_block_q5_K *y = (g4_block_q5_K *)yv + i;
            y->d = dh;
            y->dmin = mh;
            memcpy(y->scales, sc, 12);
            memset(y->qh, 0, 32);
            for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++) {
                    const int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                    y->qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
                    if (lo & 16) y->qh[l] |= (uint8_t)(1u << (2 * c));
                    if (hi & 16) y->qh[l] |= (uint8_t)(1u << (2 * c + 1));
                }
        }
    }
}

static void s_q_q6_K(const float *x, g4_block_q6_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 256) {
        int8_t L[256];
        float scales[16], max_scale = 0, max_abs = 0;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = s_fit_sym(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs) max_abs = fabsf(scales[ib]), max_scale = scales[ib];
        }
        memset(&y[i], 0, sizeof y[i]);
        if (max_abs < 1e-30f) continue;
        const float iscale = -128.f / max_scale;
        y[i].d = g4_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < 16; ib++) {
            int s = s_nearest_int(iscale * scales[ib]);
            y[i].scales[ib] = (int8_t)(s > 127 ? 127 : s < -128 ? -128 : s);
        }
        const float d = g4_fp16_to_fp32(y[i].d);
        uint8_t U[256];
        for (int ib = 0; ib < 16; ib++) {
            const float dd = d * y[i].scales[ib];
            for (int l = 0; l < 16; l++) {
                int q = dd ? s_nearest_int(x[16 * ib + l] / dd) : 0;
                q = q < -32 ? -32 : q > 31 ? 31 : q;
                U[16 * ib + l] = (uint8_t)(q + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int h = 0; h < 256; h += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = U[h + l], q2 = U[h + l + 32], q3 = U[h + l + 64], q4 = U[h + l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
    }
}

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
    case G4_DTYPE_Q4_K: s_q_kq(src, dst, nb, 15); return 0;
    case G4_DTYPE_Q5_K: s_q_kq(src, dst, nb, 31); return 0;
    case G4_DTYPE_Q6_K: s_q_q6_K(src, dst, nb); return 0;
    case G4_DTYPE_Q8_K: s_q_q8_K(src, dst, nb); return 0;
    default: return -1;
    }
}
