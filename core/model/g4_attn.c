/* g4_attn — see g4_attn.h. Mirrors ggml-cpu's ggml_compute_forward_flash_attn_ext_f16
 * (one query row, F16 V accumulator) and its tiled f32 path. */
#include "g4_attn.h"

#include <math.h>
#include <string.h>

#include "g4_dot.h"
#include "g4_dtype.h"

void g4_attn_f16(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                 int cells, float *out, uint8_t *buf)
{
    const g4_type_ops_t *f16 = g4_type_ops(G4_DTYPE_F16);
    g4_fp16_t *qh = (g4_fp16_t *)buf, *acc = qh + hd;
    f16->from_float(q, qh, hd);
    memset(acc, 0, (size_t)hd * 2);
    float S = 0.0f, M = -INFINITY;
    for (int p = lo; p <= hi; p++) {
        const int cell = p % cells;
        float s;
        f16->vec_dot(hd, &s, K + (size_t)cell * row_bytes, qh);
        const g4_fp16_t *v = (const g4_fp16_t *)(V + (size_t)cell * row_bytes);
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            const float Mold = M;
            M = s;
            ms = expf(Mold - M);
            g4_f16_scale(acc, ms, hd);
        } else {
            vs = expf(s - M);
        }
        g4_f16_mad(acc, v, vs, hd);
        S = S * ms + vs;
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int d = 0; d < hd; d++) out[d] = g4_fp16_to_fp32(acc[d]) * inv;
}

void g4_attn_f32(const float *q, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes, int is_f16, int hd,
                 int lo, int hi, int cells, float *out, uint8_t *buf)
{
    const int np = hi - lo + 1;
    float *sc = (float *)buf, M[G4_ATTN_GMAX], S[G4_ATTN_GMAX], w[G4_ATTN_GMAX];
    for (int g = 0; g < G; g++) M[g] = -INFINITY, S[g] = 0;
    for (int p = lo; p <= hi; p++) {
        const uint8_t *kr = K + (size_t)(p % cells) * row_bytes;
        if (is_f16) g4_dot_f16_f32_g((const uint16_t *)kr, q, hd, G, w, hd);
        else
            for (int g = 0; g < G; g++) w[g] = g4_dot_f32_f32((const float *)kr, q + (size_t)g * hd, hd);
        for (int g = 0; g < G; g++) {
            sc[(size_t)g * np + (p - lo)] = w[g];
            if (w[g] > M[g]) M[g] = w[g];
        }
    }
    for (int g = 0; g < G; g++) {
        float *sg = sc + (size_t)g * np;
        for (int p = 0; p < np; p++) {
            sg[p] = expf(sg[p] - M[g]);
            S[g] += sg[p];
        }
    }
    memset(out, 0, (size_t)G * hd * sizeof *out);
    for (int p = lo; p <= hi; p++) {
        const uint8_t *vr = V + (size_t)(p % cells) * row_bytes;
        for (int g = 0; g < G; g++) w[g] = sc[(size_t)g * np + (p - lo)];
        if (is_f16) g4_axpy_f16_g(out, hd, w, G, (const uint16_t *)vr, hd);
        else
            for (int g = 0; g < G; g++) g4_axpy_f32(out + (size_t)g * hd, w[g], (const float *)vr, hd);
    }
    for (int g = 0; g < G; g++) {
        const float inv = S[g] == 0.0f ? 0.0f : 1.0f / S[g];
        for (int d = 0; d < hd; d++) out[(size_t)g * hd + d] *= inv;
    }
}

void g4_attn_ref(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int is_f16, int hd, int lo,
                 int hi, int cells, float *out)
{
    double M = -INFINITY, S = 0;
    for (int p = lo; p <= hi; p++) {
        const uint8_t *kr = K + (size_t)(p % cells) * row_bytes;
        double s = 0;
        for (int d = 0; d < hd; d++)
            s += (double)q[d] * (is_f16 ? g4_fp16_to_fp32(((const g4_fp16_t *)kr)[d]) : ((const float *)kr)[d]);
        if (s > M) M = s;
    }
    for (int d = 0; d < hd; d++) out[d] = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int p = lo; p <= hi; p++) {
            const uint8_t *kr = K + (size_t)(p % cells) * row_bytes, *vr = V + (size_t)(p % cells) * row_bytes;
            double s = 0;
            for (int d = 0; d < hd; d++)
                s += (double)q[d] * (is_f16 ? g4_fp16_to_fp32(((const g4_fp16_t *)kr)[d]) : ((const float *)kr)[d]);
            const double w = exp(s - M);
            if (pass == 0) {
                S += w;
                continue;
            }
            for (int d = 0; d < hd; d++)
                out[d] += (float)(w / S * (is_f16 ? g4_fp16_to_fp32(((const g4_fp16_t *)vr)[d]) : ((const float *)vr)[d]));
        }
}
