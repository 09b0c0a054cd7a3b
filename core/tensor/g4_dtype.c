/* g4_dtype — type traits and row dequantization (reference).
 *
 * Dequantization follows docs/gguf-quant-formats exactly (and so llama.cpp's
 * dequantize_row_* and gguf-py). The quantizers (g4_quant_row) are in
 * g4_quant.c. */
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
