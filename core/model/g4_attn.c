/* g4_attn — see g4_attn.h. Mirrors ggml-cpu's ggml_compute_forward_flash_attn_ext_f16
 * (one query row, F16 V accumulator) and its tiled f32 path. */
#include "g4_attn.h"

#include <math.h>
#include <string.h>

#include "g4_dot.h"
#include "g4_dtype.h"

/* the position cell i of the view holds, -1 when empty */
static inline int s_cell_pos(const g4_attn_view_t *vw, int i) { return vw->pos ? vw->pos[i] : i; }

/* ggml's one_chunk kernel over cells [c0, c1) of the view, for the G query
 * heads that share this K/V (each head's operations exactly those of a run
 * alone; the K and V rows are read once for all of them): per head *M, *S
 * and the unnormalised Σ softmax·V, widened from its F16 buffer, in out
 * (head g at out + g·hd) */
static void s_f16_chunk(const g4_fp16_t *qh, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd,
                        int lo, int hi, const g4_attn_view_t *vw, int c0, int c1, g4_fp16_t *acc, float *M_out,
                        float *S_out, float *out)
{
    float S[G4_ATTN_GMAX], M[G4_ATTN_GMAX], s[G4_ATTN_GMAX];
    memset(acc, 0, (size_t)G * hd * 2);
    for (int g = 0; g < G; g++) S[g] = 0.0f, M[g] = -INFINITY;
    for (int i = c0; i < c1; i++) {
        const int p = s_cell_pos(vw, i);
        if (p < lo || p > hi) continue; /* masked (or empty): skipped, as -INFINITY is */
        const int cell = p % vw->ring;
        g4_dot_f16_g(hd, s, (const uint16_t *)(K + (size_t)cell * row_bytes), qh, hd, G);
        const g4_fp16_t *v = (const g4_fp16_t *)(V + (size_t)cell * row_bytes);
        for (int g = 0; g < G; g++) {
            g4_fp16_t *a = acc + (size_t)g * hd;
            float ms = 1.0f, vs = 1.0f;
            if (s[g] > M[g]) {
                const float Mold = M[g];
                M[g] = s[g];
                ms = expf(Mold - M[g]);
                g4_f16_scale(a, ms, hd);
            } else {
                vs = expf(s[g] - M[g]);
            }
            g4_f16_mad(a, v, vs, hd);
            S[g] = S[g] * ms + vs;
        }
    }
    for (int g = 0; g < G; g++) {
        for (int d = 0; d < hd; d++) out[(size_t)g * hd + d] = g4_fp16_to_fp32(acc[(size_t)g * hd + d]);
        M_out[g] = M[g], S_out[g] = S[g];
    }
}

size_t g4_attn_f16_buf_bytes(int G, int hd) { return (size_t)G * 8 * (size_t)hd + 64; }

void g4_attn_f16_g(const float *q, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                   const g4_attn_view_t *vw, int splits, float *out, uint8_t *buf)
{
    const g4_type_ops_t *f16 = g4_type_ops(G4_DTYPE_F16);
    g4_fp16_t *qh = (g4_fp16_t *)buf, *acc = qh + (size_t)G * hd;
    float *part = (float *)(acc + (size_t)G * hd);
    float M[G4_ATTN_GMAX], S[G4_ATTN_GMAX];
    for (int g = 0; g < G; g++) f16->from_float(q + (size_t)g * hd, qh + (size_t)g * hd, hd);
    if (splits <= 1 || vw->n_kv < G4_ATTN_SPLIT_MIN) {
        s_f16_chunk(qh, G, K, V, row_bytes, hd, lo, hi, vw, 0, vw->n_kv, acc, M, S, out);
        for (int g = 0; g < G; g++) {
            const float inv = S[g] == 0.0f ? 0.0f : 1.0f / S[g];
            for (int d = 0; d < hd; d++) out[(size_t)g * hd + d] *= inv;
        }
        return;
    }
    /* ggml_flash_attn_ext_reduce_partials: chunks merged in order, empty ones skipped */
    const int chunk = (vw->n_kv + splits - 1) / splits;
    float Mf[G4_ATTN_GMAX], Sf[G4_ATTN_GMAX];
    for (int g = 0; g < G; g++) Mf[g] = -INFINITY, Sf[g] = 0.0f;
    memset(out, 0, (size_t)G * hd * sizeof *out);
    for (int c0 = 0; c0 < vw->n_kv; c0 += chunk) {
        const int c1 = c0 + chunk < vw->n_kv ? c0 + chunk : vw->n_kv;
        s_f16_chunk(qh, G, K, V, row_bytes, hd, lo, hi, vw, c0, c1, acc, M, S, part);
        for (int g = 0; g < G; g++) {
            if (S[g] == 0.0f) continue;
            float *o = out + (size_t)g * hd;
            const float *pp = part + (size_t)g * hd;
            const float Mn = fmaxf(Mf[g], M[g]), so = expf(Mf[g] - Mn), sn = expf(M[g] - Mn);
            for (int d = 0; d < hd; d++) o[d] = o[d] * so + pp[d] * sn;
            Sf[g] = Sf[g] * so + S[g] * sn;
            Mf[g] = Mn;
        }
    }
    for (int g = 0; g < G; g++)
        if (Sf[g] != 0.0f) {
            const float inv = 1.0f / Sf[g];
            for (int d = 0; d < hd; d++) out[(size_t)g * hd + d] *= inv;
        }
}

void g4_attn_f16(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                 const g4_attn_view_t *vw, int splits, float *out, uint8_t *buf)
{
    g4_attn_f16_g(q, 1, K, V, row_bytes, hd, lo, hi, vw, splits, out, buf);
}

/* (fmaf is one instruction in the x86-64-v3 clone, a libm call per element in the baseline one: the same bits) */
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("arch=x86-64-v3", "default")))
#endif
void g4_attn_q8(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                const g4_attn_view_t *vw, int simd_step, float *out, uint8_t *buf)
{
    const g4_type_ops_t *q8 = g4_type_ops(G4_DTYPE_Q8_0);
    float *v32 = (float *)buf;
    uint8_t *qq = buf + (size_t)hd * 4;
    q8->from_float(q, qq, hd);
    const int np = simd_step > 0 ? hd / simd_step * simd_step : 0;
    memset(out, 0, (size_t)hd * sizeof *out);
    float S = 0.0f, M = -INFINITY;
    for (int i = 0; i < vw->n_kv; i++) {
        const int p = s_cell_pos(vw, i);
        if (p < lo || p > hi) continue;
        const size_t cell = (size_t)(p % vw->ring) * row_bytes;
        float s;
        q8->vec_dot(hd, &s, K + cell, qq);
        float ms = 1.0f, vs = 1.0f;
        if (s > M) {
            const float Mold = M;
            M = s;
            ms = expf(Mold - M);
            for (int d = 0; d < hd; d++) out[d] *= ms;
        } else {
            vs = expf(s - M);
        }
        const g4_block_q8_0 *vb = (const g4_block_q8_0 *)(V + cell); /* (g4_dequant_row's arithmetic, inlined) */
        for (int b = 0; b < hd / 32; b++) {
            const float d = g4_fp16_to_fp32(vb[b].d);
            for (int j = 0; j < 32; j++) v32[b * 32 + j] = vb[b].qs[j] * d;
        }
        for (int d = 0; d < np; d++) out[d] = fmaf(v32[d], vs, out[d]);
        for (int d = np; d < hd; d++) out[d] += v32[d] * vs;
        S = S * ms + vs;
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int d = 0; d < hd; d++) out[d] *= inv;
}

/* ggml_vec_soft_max_f32 over one tile row: y = exp(x - M), the sum in double
 * of 16-wide partial sums (the AVX-512 build's lanes, reduced as
 * _mm512_reduce_add_ps does) */
static double s_tile_softmax(float *x, float M)
{
    double sum = 0;
    for (int i = 0; i < G4_ATTN_TILE_KV; i += 16) {
        float l[16];
        for (int j = 0; j < 16; j++) l[j] = x[i + j] = expf(x[i + j] - M);
        float t3[8], t6[4];
        for (int j = 0; j < 8; j++) t3[j] = l[8 + j] + l[j];
        for (int j = 0; j < 4; j++) t6[j] = t3[4 + j] + t3[j];
        sum += (double)((t6[0] + t6[2]) + (t6[1] + t6[3]));
    }
    return sum;
}

/* the hot loops: plain C with fmaf (one rounding per step, so exact on any
 * machine), and on x86 with FMA the same chains with the accumulators held in
 * registers */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define G4_ATTN_X86 1
#define G4_ATTN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define G4_ATTN_CLONES
#endif

/* kq[i][j] = the chain over d of fmaf(q_i[d], kt[d][j], ·) from 0, for the
 * n query vectors q_i = q + (i / G) * q_stride + (i % G) * hd */
static void s_tile_scores_c(const float *q, size_t q_stride, int n, int G, int hd, const float *kt, float *kq)
{
    enum { TK = G4_ATTN_TILE_KV };
    for (int i = 0; i < n; i++) {
        float a[TK] = {0};
        const float *qi = q + (size_t)(i / G) * q_stride + (size_t)(i % G) * hd;
        for (int d = 0; d < hd; d++) {
            const float qd = qi[d], *kd = kt + (size_t)d * TK;
            for (int j = 0; j < TK; j++) a[j] = fmaf(qd, kd[j], a[j]);
        }
        memcpy(kq + (size_t)i * TK, a, sizeof a);
    }
}

/* o[d] = the chain over k of fmaf(w[js[k]], vt[js[k]][d], ·) from o[d] */
static void s_tile_pv_c(float *o, const float *w, const float *vt, int hd, const int *js, int nj)
{
    for (int d = 0; d < hd; d++) {
        float a = o[d];
        for (int k = 0; k < nj; k++) a = fmaf(w[js[k]], vt[(size_t)js[k] * hd + d], a);
        o[d] = a;
    }
}

#ifdef G4_ATTN_X86
__attribute__((target("avx2,fma"))) static void s_tile_scores_fma(const float *q, size_t q_stride, int n, int G,
                                                                   int hd, const float *kt, float *kq)
{
    enum { TK = G4_ATTN_TILE_KV };
    for (int i = 0; i < n; i++) {
        const float *qi = q + (size_t)(i / G) * q_stride + (size_t)(i % G) * hd;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int d = 0; d < hd; d++) {
            const __m256 qd = _mm256_broadcast_ss(qi + d);
            const float *kd = kt + (size_t)d * TK;
            a0 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 0), a0);
            a1 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 8), a1);
            a2 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 16), a2);
            a3 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 24), a3);
            a4 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 32), a4);
            a5 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 40), a5);
            a6 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 48), a6);
            a7 = _mm256_fmadd_ps(qd, _mm256_loadu_ps(kd + 56), a7);
        }
        float *o = kq + (size_t)i * TK;
        _mm256_storeu_ps(o + 0, a0), _mm256_storeu_ps(o + 8, a1), _mm256_storeu_ps(o + 16, a2);
        _mm256_storeu_ps(o + 24, a3), _mm256_storeu_ps(o + 32, a4), _mm256_storeu_ps(o + 40, a5);
        _mm256_storeu_ps(o + 48, a6), _mm256_storeu_ps(o + 56, a7);
    }
}

__attribute__((target("avx2,fma"))) static void s_tile_pv_fma(float *o, const float *w, const float *vt, int hd,
                                                               const int *js, int nj)
{
    int d = 0;
    for (; d + 32 <= hd; d += 32) {
        __m256 a0 = _mm256_loadu_ps(o + d), a1 = _mm256_loadu_ps(o + d + 8), a2 = _mm256_loadu_ps(o + d + 16),
               a3 = _mm256_loadu_ps(o + d + 24);
        for (int k = 0; k < nj; k++) {
            const __m256 wk = _mm256_broadcast_ss(w + js[k]);
            const float *v = vt + (size_t)js[k] * hd + d;
            a0 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(v + 0), a0);
            a1 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(v + 8), a1);
            a2 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(v + 16), a2);
            a3 = _mm256_fmadd_ps(wk, _mm256_loadu_ps(v + 24), a3);
        }
        _mm256_storeu_ps(o + d, a0), _mm256_storeu_ps(o + d + 8, a1);
        _mm256_storeu_ps(o + d + 16, a2), _mm256_storeu_ps(o + d + 24, a3);
    }
    if (d < hd) s_tile_pv_c(o + d, w, vt + d, hd, js, nj); /* rows keep their stride hd */
}

/* The same chains at AVX-512 width: each lane is one output element's chain,
 * so the width changes nothing but the speed; two query rows per pass over
 * the K tile. */
__attribute__((target("avx512f"))) static void s_tile_scores_512(const float *q, size_t q_stride, int n, int G,
                                                                  int hd, const float *kt, float *kq)
{
    enum { TK = G4_ATTN_TILE_KV };
    int i = 0;
    for (; i + 2 <= n; i += 2) {
        const float *q0 = q + (size_t)(i / G) * q_stride + (size_t)(i % G) * hd;
        const float *q1 = q + (size_t)((i + 1) / G) * q_stride + (size_t)((i + 1) % G) * hd;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int d = 0; d < hd; d++) {
            const float *kd = kt + (size_t)d * TK;
            const __m512 k0 = _mm512_loadu_ps(kd), k1 = _mm512_loadu_ps(kd + 16), k2 = _mm512_loadu_ps(kd + 32),
                         k3 = _mm512_loadu_ps(kd + 48);
            const __m512 x = _mm512_set1_ps(q0[d]), y = _mm512_set1_ps(q1[d]);
            a0 = _mm512_fmadd_ps(x, k0, a0), a1 = _mm512_fmadd_ps(x, k1, a1);
            a2 = _mm512_fmadd_ps(x, k2, a2), a3 = _mm512_fmadd_ps(x, k3, a3);
            b0 = _mm512_fmadd_ps(y, k0, b0), b1 = _mm512_fmadd_ps(y, k1, b1);
            b2 = _mm512_fmadd_ps(y, k2, b2), b3 = _mm512_fmadd_ps(y, k3, b3);
        }
        float *o = kq + (size_t)i * TK;
        _mm512_storeu_ps(o, a0), _mm512_storeu_ps(o + 16, a1), _mm512_storeu_ps(o + 32, a2), _mm512_storeu_ps(o + 48, a3);
        o += TK;
        _mm512_storeu_ps(o, b0), _mm512_storeu_ps(o + 16, b1), _mm512_storeu_ps(o + 32, b2), _mm512_storeu_ps(o + 48, b3);
    }
    for (; i < n; i++) {
        const float *qi = q + (size_t)(i / G) * q_stride + (size_t)(i % G) * hd;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int d = 0; d < hd; d++) {
            const float *kd = kt + (size_t)d * TK;
            const __m512 x = _mm512_set1_ps(qi[d]);
            a0 = _mm512_fmadd_ps(x, _mm512_loadu_ps(kd), a0), a1 = _mm512_fmadd_ps(x, _mm512_loadu_ps(kd + 16), a1);
            a2 = _mm512_fmadd_ps(x, _mm512_loadu_ps(kd + 32), a2), a3 = _mm512_fmadd_ps(x, _mm512_loadu_ps(kd + 48), a3);
        }
        float *o = kq + (size_t)i * TK;
        _mm512_storeu_ps(o, a0), _mm512_storeu_ps(o + 16, a1), _mm512_storeu_ps(o + 32, a2), _mm512_storeu_ps(o + 48, a3);
    }
}

__attribute__((target("avx512f"))) static void s_tile_pv_512(float *o, const float *w, const float *vt, int hd,
                                                              const int *js, int nj)
{
    int d = 0;
    for (; d + 64 <= hd; d += 64) {
        __m512 a0 = _mm512_loadu_ps(o + d), a1 = _mm512_loadu_ps(o + d + 16), a2 = _mm512_loadu_ps(o + d + 32),
               a3 = _mm512_loadu_ps(o + d + 48);
        for (int k = 0; k < nj; k++) {
            const __m512 wk = _mm512_set1_ps(w[js[k]]);
            const float *v = vt + (size_t)js[k] * hd + d;
            a0 = _mm512_fmadd_ps(wk, _mm512_loadu_ps(v), a0), a1 = _mm512_fmadd_ps(wk, _mm512_loadu_ps(v + 16), a1);
            a2 = _mm512_fmadd_ps(wk, _mm512_loadu_ps(v + 32), a2), a3 = _mm512_fmadd_ps(wk, _mm512_loadu_ps(v + 48), a3);
        }
        _mm512_storeu_ps(o + d, a0), _mm512_storeu_ps(o + d + 16, a1);
        _mm512_storeu_ps(o + d + 32, a2), _mm512_storeu_ps(o + d + 48, a3);
    }
    for (; d + 16 <= hd; d += 16) {
        __m512 a = _mm512_loadu_ps(o + d);
        for (int k = 0; k < nj; k++)
            a = _mm512_fmadd_ps(_mm512_set1_ps(w[js[k]]), _mm512_loadu_ps(vt + (size_t)js[k] * hd + d), a);
        _mm512_storeu_ps(o + d, a);
    }
    if (d < hd) s_tile_pv_c(o + d, w, vt + d, hd, js, nj); /* rows keep their stride hd */
}
#endif

/* 2: AVX-512, 1: AVX2 + FMA, 0: the C twins (G4_ISA caps it, so tests reach each) */
static int s_fma(void)
{
#ifdef G4_ATTN_X86
    /* the kernels' ISA choice (G4_ISA=scalar caps it, so tests reach the C twin) */
    static int v = -1;
    if (v < 0) {
        g4_kernels_init();
        v = strcmp(g4_kernels_isa(), "scalar") && __builtin_cpu_supports("fma");
        if (v && !strcmp(g4_kernels_isa(), "avx512") && __builtin_cpu_supports("avx512f")) v = 2;
    }
    return v;
#else
    return 0;
#endif
}

static void s_tile_scores(const float *q, size_t q_stride, int n, int G, int hd, const float *kt, float *kq)
{
#ifdef G4_ATTN_X86
    const int isa = s_fma();
    if (isa == 2) return s_tile_scores_512(q, q_stride, n, G, hd, kt, kq);
    if (isa) return s_tile_scores_fma(q, q_stride, n, G, hd, kt, kq);
#endif
    s_tile_scores_c(q, q_stride, n, G, hd, kt, kq);
}

static void s_tile_pv(float *o, const float *w, const float *vt, int hd, const int *js, int nj)
{
#ifdef G4_ATTN_X86
    const int isa = s_fma();
    if (isa == 2) return s_tile_pv_512(o, w, vt, hd, js, nj);
    if (isa) return s_tile_pv_fma(o, w, vt, hd, js, nj);
#endif
    s_tile_pv_c(o, w, vt, hd, js, nj);
}

/* a cache row widened to f32: dst[d * stride] */
G4_ATTN_CLONES static void s_widen(const uint8_t *row, int is_f16, int hd, float *dst, size_t stride)
{
    if (is_f16)
        for (int d = 0; d < hd; d++) dst[(size_t)d * stride] = g4_fp16_to_fp32(((const g4_fp16_t *)row)[d]);
    else
        for (int d = 0; d < hd; d++) dst[(size_t)d * stride] = ((const float *)row)[d];
}

size_t g4_attn_f32_buf_bytes(int G, int hd)
{
    const size_t n = (size_t)G4_ATTN_TILE_Q * G;
    return 4 * (n * G4_ATTN_TILE_KV + 2 * (size_t)hd * G4_ATTN_TILE_KV + 2 * n);
}

void g4_attn_f32(const float *q, size_t q_stride, int nr, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes,
                 int is_f16, int hd, const int *lo, const int *hi, const g4_attn_view_t *vw, float *out,
                 size_t out_stride, uint8_t *buf)
{
    enum { TK = G4_ATTN_TILE_KV };
    const int n = nr * G; /* query vectors: row r, head g at i = r * G + g */
    float *kq = (float *)buf;             /* [n][TK] scores, then weights */
    float *kt = kq + (size_t)n * TK;      /* [hd][TK] the tile's K rows, transposed */
    float *vt = kt + (size_t)hd * TK;     /* [TK][hd] the tile's V rows */
    float *M = vt + (size_t)TK * hd, *S = M + n;
    int lo_all = lo[0], hi_all = hi[0];
    for (int r = 0; r < nr; r++) {
        lo_all = lo[r] < lo_all ? lo[r] : lo_all;
        hi_all = hi[r] > hi_all ? hi[r] : hi_all;
        memset(out + (size_t)r * out_stride, 0, (size_t)G * hd * sizeof *out);
    }
    for (int i = 0; i < n; i++) M[i] = -INFINITY, S[i] = 0;
    for (int c0 = 0; c0 < vw->n_kv; c0 += TK) {
        const int nc = vw->n_kv - c0 < TK ? vw->n_kv - c0 : TK;
        int any = 0;
        for (int j = 0; j < nc && !any; j++) {
            const int p = s_cell_pos(vw, c0 + j);
            any = p >= lo_all && p <= hi_all;
        }
        if (!any) continue; /* a tile every row masks is skipped */
        /* scores: one fused multiply-add chain over the head dimension per
         * score (simd_gemm over the K tile packed transposed, [hd][TK]) */
        for (int j = 0; j < TK; j++) {
            const int p = j < nc ? s_cell_pos(vw, c0 + j) : -1;
            const int use = p >= lo_all && p <= hi_all ? p : lo_all;
            s_widen(K + (size_t)(use % vw->ring) * row_bytes, is_f16, hd, kt + j, TK);
            if (p >= lo_all && p <= hi_all) s_widen(V + (size_t)(p % vw->ring) * row_bytes, is_f16, hd, vt + (size_t)j * hd, 1);
        }
        s_tile_scores(q, q_stride, n, G, hd, kt, kq);
        for (int i = 0; i < n; i++) {
            const int r = i / G;
            float *row = kq + (size_t)i * TK, tmax = -INFINITY;
            for (int j = 0; j < TK; j++) {
                const int p = j < nc ? s_cell_pos(vw, c0 + j) : -1;
                if (p < lo[r] || p > hi[r]) row[j] = -INFINITY;
                tmax = fmaxf(tmax, row[j]);
            }
            if (tmax == -INFINITY) { /* this row sees nothing here: no update */
                memset(row, 0, TK * sizeof *row);
                continue;
            }
            const float Mn = fmaxf(M[i], tmax);
            float *oi = out + (size_t)r * out_stride + (size_t)(i % G) * hd;
            if (Mn > M[i]) {
                const float ms = expf(M[i] - Mn);
                for (int d = 0; d < hd; d++) oi[d] *= ms;
                S[i] *= ms;
            }
            M[i] = Mn;
            S[i] = (float)((double)S[i] + s_tile_softmax(row, Mn));
            /* Σ softmax·V: one fused multiply-add chain per output over the
             * tile's cells; a masked cell's weight is 0 and adds nothing */
            int js[TK], nj = 0;
            for (int j = 0; j < nc; j++) {
                const int p = s_cell_pos(vw, c0 + j);
                if (p >= lo[r] && p <= hi[r]) js[nj++] = j;
            }
            s_tile_pv(oi, row, vt, hd, js, nj);
        }
    }
    for (int i = 0; i < n; i++) {
        const float inv = S[i] == 0.0f ? 0.0f : 1.0f / S[i];
        float *oi = out + (size_t)(i / G) * out_stride + (size_t)(i % G) * hd;
        for (int d = 0; d < hd; d++) oi[d] *= inv;
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
