/* g4_dot_x86 — AVX2 and AVX-512 versions of the dot products and activation
 * quantizers in g4_dot.c. Each function is compiled for its ISA with a
 * target attribute and only called after the CPU was checked, so the rest
 * of the library stays portable x86-64. Integer results are identical to the
 * scalar twins; only the f32 summation order differs. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "g4_dot_internal.h"

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))
#define AVX512VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

/* ====================================================================== */
/* AVX2 helpers                                                           */
/* ====================================================================== */

/* F16C: the same exact conversion as g4_fp16_to_fp32, one instruction */
AVX2 static inline float s_f16(uint16_t h) { return _cvtsh_ss(h); }

AVX2 static inline float s_hsum_ps(__m256 x)
{
    __m128 r = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    r = _mm_add_ps(r, _mm_movehl_ps(r, r));
    r = _mm_add_ss(r, _mm_movehdup_ps(r));
    return _mm_cvtss_f32(r);
}

AVX2 static inline int s_hsum_i32(__m256i x)
{
    __m128i r = _mm_add_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(1, 0, 3, 2)));
    r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(r);
}

/* Σ x_i*y_i for 32 signed int8 pairs, as 8 int32 lanes. |x|,|y| <= 127 except
 * that x may be -128 (its sign moves onto y). */
AVX2 static inline __m256i s_dot_i8(__m256i x, __m256i y)
{
    const __m256i ax = _mm256_sign_epi8(x, x);
    const __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

AVX2 static inline __m256i s_unpack_q4(const uint8_t *qs)
{
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}

/* ====================================================================== */
/* AVX2 kernels                                                           */
/* ====================================================================== */

AVX2 static void s_dot_f32(int64_t n, float *s, const void *vw, const void *va)
{
    const float *w = vw, *a = va;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(a + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(a + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
    float sum = s_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += w[i] * a[i];
    *s = sum;
}

AVX2 static void s_dot_f16(int64_t n, float *s, const void *vw, const void *va)
{
    const uint16_t *w = vw, *a = va;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
#define LD(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(LD(w + i), LD(a + i), acc0);
        acc1 = _mm256_fmadd_ps(LD(w + i + 8), LD(a + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(LD(w + i + 16), LD(a + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(LD(w + i + 24), LD(a + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(LD(w + i), LD(a + i), acc0);
#undef LD
    float sum = s_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += s_f16(w[i]) * s_f16(a[i]);
    *s = sum;
}

AVX2 static inline __m256 s_ld_bf16(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AVX2 static void s_dot_bf16(int64_t n, float *s, const void *vw, const void *va)
{
    const uint16_t *w = vw, *a = va;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
           acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(s_ld_bf16(w + i), s_ld_bf16(a + i), acc0);
        acc1 = _mm256_fmadd_ps(s_ld_bf16(w + i + 8), s_ld_bf16(a + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(s_ld_bf16(w + i + 16), s_ld_bf16(a + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(s_ld_bf16(w + i + 24), s_ld_bf16(a + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(s_ld_bf16(w + i), s_ld_bf16(a + i), acc0);
    float sum = s_hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += g4_bf16_to_fp32(w[i]) * g4_bf16_to_fp32(a[i]);
    *s = sum;
}

/* four activation rows against one weight row: the same operations per
 * (row, block) as s_dot_q8_0, so the same results */
AVX2 static void s_dot4_q8_0(int64_t n, float *s, int64_t ss, const void *vw, const void *va, int64_t as)
{
    const g4_block_q8_0 *w = vw;
    const g4_block_q8_0 *a0 = va, *a1 = (const void *)((const uint8_t *)va + as);
    const g4_block_q8_0 *a2 = (const void *)((const uint8_t *)va + 2 * as), *a3 = (const void *)((const uint8_t *)va + 3 * as);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < n / 32; i++) {
        const float dw = s_f16(w[i].d);
        const __m256i x = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i ax = _mm256_sign_epi8(x, x);
#define G4_Q8_STEP(c, a)                                                                                          \
        {                                                                                                       \
            const __m256 d = _mm256_set1_ps(dw * s_f16(a[i].d));                                      \
            const __m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);                                     \
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(y, x)), ones);        \
            c = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), c);                                                   \
        }
        G4_Q8_STEP(c0, a0) G4_Q8_STEP(c1, a1) G4_Q8_STEP(c2, a2) G4_Q8_STEP(c3, a3)
#undef G4_Q8_STEP
    }
    s[0] = s_hsum_ps(c0), s[ss] = s_hsum_ps(c1), s[2 * ss] = s_hsum_ps(c2), s[3 * ss] = s_hsum_ps(c3);
}

AVX2 static void s_f16_scale(uint16_t *acc, float sc, int64_t n)
{
    const __m256 vs = _mm256_set1_ps(sc);
    int64_t d = 0;
    for (; d + 8 <= n; d += 8) {
        const __m256 a = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + d))), vs);
        _mm_storeu_si128((__m128i *)(acc + d), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; d < n; d++) acc[d] = _cvtss_sh(s_f16(acc[d]) * sc, _MM_FROUND_TO_NEAREST_INT);
}

AVX2 static void s_f16_mad(uint16_t *acc, const uint16_t *v, float sc, int64_t n)
{
    const __m256 vs = _mm256_set1_ps(sc);
    int64_t d = 0;
    for (; d + 8 <= n; d += 8) {
        const __m256 a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(v + d))), vs,
                                         _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(acc + d))));
        _mm_storeu_si128((__m128i *)(acc + d), _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; d < n; d++) acc[d] = _cvtss_sh(fmaf(s_f16(v[d]), sc, s_f16(acc[d])), _MM_FROUND_TO_NEAREST_INT);
}

AVX2 static void s_dot_q8_0(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q8_0 *w = vw, *a = va;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256 d = _mm256_set1_ps(s_f16(w[i].d) * s_f16(a[i].d));
        const __m256i x = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s_dot_i8(x, y)), acc);
    }
    *s = s_hsum_ps(acc);
}

AVX2 static void s_dot_q4_0(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_0 *w = vw;
    const g4_block_q8_0 *a = va;
    __m256 acc = _mm256_setzero_ps();
    const __m256i off = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256 d = _mm256_set1_ps(s_f16(w[i].d) * s_f16(a[i].d));
        const __m256i x = _mm256_sub_epi8(s_unpack_q4(w[i].qs), off);
        const __m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s_dot_i8(x, y)), acc);
    }
    *s = s_hsum_ps(acc);
}

AVX2 static void s_dot_q4_1(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_1 *w = vw;
    const g4_block_q8_1 *a = va;
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256 d = _mm256_set1_ps(s_f16(w[i].d) * s_f16(a[i].d));
        summs += s_f16(w[i].m) * s_f16(a[i].s);
        const __m256i x = s_unpack_q4(w[i].qs);
        const __m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    *s = s_hsum_ps(acc) + summs;
}

/* Q4_K x Q8_K */
/* four activation rows: the weight's scales and nibbles unpacked once, each
 * row then does exactly the operations of s_dot_q4_K */
AVX2 static void s_dot4_q4_K(int64_t n, float *s, int64_t ss, const void *vw, const void *va, int64_t as)
{
    const g4_block_q4_K *w = vw;
    const g4_block_q8_K *a[4];
    for (int t = 0; t < 4; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    const __m256i m4 = _mm256_set1_epi8(0xF);
    float sumf[4] = {0, 0, 0, 0};
    for (int64_t i = 0; i < n / 256; i++) {
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) g4_kq_scale_min(j, w[i].scales, &sc[j], &m[j]);
        __m256i lo[4], hi[4], s0[4], s1[4];
        for (int c = 0; c < 4; c++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c));
            lo[c] = _mm256_and_si256(q4, m4);
            hi[c] = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            s0[c] = _mm256_set1_epi16(sc[2 * c]);
            s1[c] = _mm256_set1_epi16(sc[2 * c + 1]);
        }
        const float dmin = s_f16(w[i].dmin), dw = s_f16(w[i].d);
        for (int t = 0; t < 4; t++) {
            const g4_block_q8_K *at = &a[t][i];
            int mins = 0;
            for (int g = 0; g < 16; g++) mins += at->bsums[g] * m[g / 2];
            __m256i sumi = _mm256_setzero_si256();
            for (int c = 0; c < 4; c++) {
                const __m256i a0 = _mm256_loadu_si256((const __m256i *)(at->qs + 64 * c));
                const __m256i a1 = _mm256_loadu_si256((const __m256i *)(at->qs + 64 * c + 32));
                const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo[c], a0), s0[c]);
                const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi[c], a1), s1[c]);
                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
            }
            sumf[t] += dw * at->d * (float)s_hsum_i32(sumi) - dmin * at->d * (float)mins;
        }
    }
    for (int t = 0; t < 4; t++) s[t * ss] = sumf[t];
}

AVX2 static void s_dot_q4_K(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_K *w = vw;
    const g4_block_q8_K *a = va;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; i++) {
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) g4_kq_scale_min(j, w[i].scales, &sc[j], &m[j]);
        int mins = 0;
        for (int g = 0; g < 16; g++) mins += a[i].bsums[g] * m[g / 2];
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c));
            const __m256i lo = _mm256_and_si256(q4, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * c));
            const __m256i a1 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * c + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16(sc[2 * c]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        sumf += s_f16(w[i].d) * a[i].d * (float)s_hsum_i32(sumi) - s_f16(w[i].dmin) * a[i].d * (float)mins;
    }
    *s = sumf;
}

/* Q5_K x Q8_K */
AVX2 static void s_dot_q5_K(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q5_K *w = vw;
    const g4_block_q8_K *a = va;
    const __m256i m4 = _mm256_set1_epi8(0xF);
    __m256 acc = _mm256_setzero_ps();
    float summs = 0;
    for (int64_t i = 0; i < n / 256; i++) {
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) g4_kq_scale_min(j, w[i].scales, &sc[j], &m[j]);
        int mins = 0;
        for (int g = 0; g < 16; g++) mins += a[i].bsums[g] * m[g / 2];
        summs += s_f16(w[i].dmin) * a[i].d * (float)mins;
        const __m256i qh = _mm256_loadu_si256((const __m256i *)w[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int c = 0; c < 4; c++) {
            const __m256i q4 = _mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * c));
            const __m256i b0 = _mm256_set1_epi8((char)(1 << (2 * c)));
            const __m256i b1 = _mm256_set1_epi8((char)(1 << (2 * c + 1)));
            const __m256i h0 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0), _mm256_set1_epi8(16));
            const __m256i h1 = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1), _mm256_set1_epi8(16));
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4), h0);
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), h1);
            const __m256i a0 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * c));
            const __m256i a1 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 64 * c + 32));
            const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, a0), _mm256_set1_epi16(sc[2 * c]));
            const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, a1), _mm256_set1_epi16(sc[2 * c + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        const __m256 d = _mm256_set1_ps(s_f16(w[i].d) * a[i].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sumi), acc);
    }
    *s = s_hsum_ps(acc) - summs;
}

/* Q6_K x Q8_K: q6 - 32 = u - 32 with u in [0, 63], so Σ sc·(u-32)·a =
 * Σ sc·u·a - 32 Σ_g sc_g·bsum_g. */
/* four activation rows: the 6-bit weights unpacked once per super-block,
 * each row then does exactly the operations of s_dot_q6_K */
AVX2 static void s_dot4_q6_K(int64_t n, float *s, int64_t ss, const void *vw, const void *va, int64_t as)
{
    const g4_block_q6_K *w = vw;
    const g4_block_q8_K *a[4];
    for (int t = 0; t < 4; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / 256; i++) {
        __m256i u[2][4], scv[2][4];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qhp = w[i].qh + 32 * h;
            const int8_t *sc = w[i].scales + 8 * h;
            const __m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            u[h][0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            u[h][1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            u[h][2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            u[h][3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                      _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            for (int k = 0; k < 4; k++) scv[h][k] = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
        }
        const float dw = s_f16(w[i].d);
        for (int t = 0; t < 4; t++) {
            const g4_block_q8_K *at = &a[t][i];
            __m256i sumi = _mm256_setzero_si256();
            int corr = 0;
            for (int g = 0; g < 16; g++) corr += w[i].scales[g] * at->bsums[g];
            for (int h = 0; h < 2; h++)
                for (int k = 0; k < 4; k++) {
                    const __m256i y = _mm256_loadu_si256((const __m256i *)(at->qs + 128 * h + 32 * k));
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(u[h][k], y), scv[h][k]));
                }
            const int total = s_hsum_i32(sumi) - 32 * corr;
            acc[t] = _mm256_add_ps(acc[t], _mm256_set1_ps(dw * at->d * (float)total));
        }
    }
    for (int t = 0; t < 4; t++) s[t * ss] = _mm256_cvtss_f32(acc[t]);
}

AVX2 static void s_dot_q6_K(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q6_K *w = vw;
    const g4_block_q8_K *a = va;
    const __m256i m4 = _mm256_set1_epi8(0xF), m3 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        __m256i sumi = _mm256_setzero_si256();
        int corr = 0;
        for (int g = 0; g < 16; g++) corr += w[i].scales[g] * a[i].bsums[g];
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qhp = w[i].qh + 32 * h;
            const int8_t *sc = w[i].scales + 8 * h, *q8 = a[i].qs + 128 * h;
            const __m256i qh = _mm256_loadu_si256((const __m256i *)qhp);
            const __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            const __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
            u[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
            u[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
            u[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                const __m256i y = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
                const __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]), _mm_set1_epi16(sc[2 * k]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], y), scv));
            }
        }
        const int total = s_hsum_i32(sumi) - 32 * corr;
        acc = _mm256_add_ps(acc, _mm256_set1_ps(s_f16(w[i].d) * a[i].d * (float)total));
    }
    *s = _mm256_cvtss_f32(acc);
}

/* ---- activation quantizers ------------------------------------------- */

AVX2 static void s_from_q8_0(const float *x, void *vy, int64_t n)
{
    g4_block_q8_0 *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8), v2 = _mm256_loadu_ps(x + 16),
               v3 = _mm256_loadu_ps(x + 24);
        __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                  _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(mx, 1), _mm256_castps256_ps128(mx));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        const __m256 mul = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, mul), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        i0 = _mm256_packs_epi32(i0, i1);
        i2 = _mm256_packs_epi32(i2, i3);
        i0 = _mm256_packs_epi16(i0, i2);
        i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, i0);
    }
}

AVX2 static void s_from_f16(const float *x, void *vy, int64_t n)
{
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = g4_fp32_to_fp16(x[i]);
}

void g4_dot_fill_avx2(g4_dot_simd_t *t)
{
    t->dot[G4_DTYPE_F32] = s_dot_f32;
    t->dot[G4_DTYPE_F16] = s_dot_f16;
    t->dot[G4_DTYPE_BF16] = s_dot_bf16;
    t->dot[G4_DTYPE_Q8_0] = s_dot_q8_0;
    t->dot4[G4_DTYPE_Q8_0] = s_dot4_q8_0;
    t->dot4[G4_DTYPE_Q4_K] = s_dot4_q4_K;
    t->dot4[G4_DTYPE_Q6_K] = s_dot4_q6_K;
    t->f16_scale = s_f16_scale, t->f16_mad = s_f16_mad;
    t->dot[G4_DTYPE_Q4_0] = s_dot_q4_0;
    t->dot[G4_DTYPE_Q4_1] = s_dot_q4_1;
    t->dot[G4_DTYPE_Q4_K] = s_dot_q4_K;
    t->dot[G4_DTYPE_Q5_K] = s_dot_q5_K;
    t->dot[G4_DTYPE_Q6_K] = s_dot_q6_K;
    t->from_float[G4_DTYPE_Q8_0] = s_from_q8_0;
    t->from_float[G4_DTYPE_F16] = s_from_f16;
}

/* ====================================================================== */
/* AVX-512                                                                */
/* ====================================================================== */

/* Q8_0 x Q8_0 two blocks per 512-bit step, VNNI dpbusd on |x| and sign(y,x). */
AVX512VNNI static void s_dot4_q8_0_vnni(int64_t n, float *s, int64_t ss, const void *vw, const void *va, int64_t as)
{
    const g4_block_q8_0 *w = vw;
    const g4_block_q8_0 *a0 = va, *a1 = (const void *)((const uint8_t *)va + as);
    const g4_block_q8_0 *a2 = (const void *)((const uint8_t *)va + 2 * as), *a3 = (const void *)((const uint8_t *)va + 3 * as);
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int64_t i = 0; i < n / 32; i++) {
        const float dw = s_f16(w[i].d);
        const __m256i x = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i ax = _mm256_sign_epi8(x, x);
#define G4_Q8_STEP(c, a)                                                                                          \
        {                                                                                                       \
            const __m256 d = _mm256_set1_ps(dw * s_f16(a[i].d));                                      \
            const __m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);                                     \
            const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ax, _mm256_sign_epi8(y, x));          \
            c = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), c);                                                   \
        }
        G4_Q8_STEP(c0, a0) G4_Q8_STEP(c1, a1) G4_Q8_STEP(c2, a2) G4_Q8_STEP(c3, a3)
#undef G4_Q8_STEP
    }
    s[0] = s_hsum_ps(c0), s[ss] = s_hsum_ps(c1), s[2 * ss] = s_hsum_ps(c2), s[3 * ss] = s_hsum_ps(c3);
}

/* two weight rows x four activation rows in 512-bit registers: lanes 0-7
 * carry row 0, lanes 8-15 row 1, each with exactly the per-block operations
 * of s_dot_q8_0_vnni (so the same results, lane for lane) */
AVX512VNNI static void s_dot4x2_q8_0_vnni(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                          int64_t as)
{
    const g4_block_q8_0 *w0 = vw, *w1 = (const void *)((const uint8_t *)vw + ws);
    const g4_block_q8_0 *a[4];
    for (int t = 0; t < 4; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    __m512 c[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int64_t i = 0; i < n / 32; i++) {
        const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w0[i].qs)),
                                             _mm256_loadu_si256((const __m256i *)w1[i].qs), 1);
        const __m512i ax = _mm512_abs_epi8(x);
        const __mmask64 neg = _mm512_movepi8_mask(x);
        const __m512 dw = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(s_f16(w0[i].d))),
                                                              _mm256_castps_pd(_mm256_set1_ps(s_f16(w1[i].d))), 1));
        for (int t = 0; t < 4; t++) {
            const __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a[t][i].qs));
            const __m512i sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
            const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax, sy);
            const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(s_f16(a[t][i].d)));
            c[t] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), c[t]);
        }
    }
    for (int t = 0; t < 4; t++) {
        s[t * ss] = s_hsum_ps(_mm512_castps512_ps256(c[t]));
        s[t * ss + 1] = s_hsum_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c[t]), 1)));
    }
}

/* four weight rows x four activation rows: two 512-bit registers of two rows
 * each, the same lanes and operations as s_dot4x2_q8_0_vnni */
AVX512VNNI static void s_dot4x4_q8_0_vnni(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                          int64_t as)
{
    const g4_block_q8_0 *w[4];
    for (int r = 0; r < 4; r++) w[r] = (const void *)((const uint8_t *)vw + r * ws);
    const g4_block_q8_0 *a[4];
    for (int t = 0; t < 4; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    __m512 c[4][2];
    for (int t = 0; t < 4; t++) c[t][0] = c[t][1] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        __m512i ax[2];
        __mmask64 neg[2];
        __m512 dw[2];
        for (int h = 0; h < 2; h++) {
            const __m512i x = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[2 * h][i].qs)),
                _mm256_loadu_si256((const __m256i *)w[2 * h + 1][i].qs), 1);
            ax[h] = _mm512_abs_epi8(x);
            neg[h] = _mm512_movepi8_mask(x);
            dw[h] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(s_f16(w[2 * h][i].d))),
                                                        _mm256_castps_pd(_mm256_set1_ps(s_f16(w[2 * h + 1][i].d))), 1));
        }
        for (int t = 0; t < 4; t++) {
            const __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a[t][i].qs));
            const __m512 da = _mm512_set1_ps(s_f16(a[t][i].d));
            for (int h = 0; h < 2; h++) {
                const __m512i sy = _mm512_mask_sub_epi8(y, neg[h], _mm512_setzero_si512(), y);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax[h], sy);
                c[t][h] = _mm512_fmadd_ps(_mm512_mul_ps(dw[h], da), _mm512_cvtepi32_ps(p), c[t][h]);
            }
        }
    }
    for (int t = 0; t < 4; t++)
        for (int h = 0; h < 2; h++) {
            s[t * ss + 2 * h] = s_hsum_ps(_mm512_castps512_ps256(c[t][h]));
            s[t * ss + 2 * h + 1] = s_hsum_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c[t][h]), 1)));
        }
}

/* four weight rows x eight activation rows: the weight-side work shared by 8 */
AVX512VNNI static void s_dot8x4_q8_0_vnni(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                          int64_t as)
{
    const g4_block_q8_0 *w[4];
    for (int r = 0; r < 4; r++) w[r] = (const void *)((const uint8_t *)vw + r * ws);
    const g4_block_q8_0 *a[8];
    for (int t = 0; t < 8; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    __m512 c[8][2];
    for (int t = 0; t < 8; t++) c[t][0] = c[t][1] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        __m512i ax[2];
        __mmask64 neg[2];
        __m512 dw[2];
        for (int h = 0; h < 2; h++) {
            const __m512i x = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[2 * h][i].qs)),
                _mm256_loadu_si256((const __m256i *)w[2 * h + 1][i].qs), 1);
            ax[h] = _mm512_abs_epi8(x);
            neg[h] = _mm512_movepi8_mask(x);
            dw[h] = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(s_f16(w[2 * h][i].d))),
                                                        _mm256_castps_pd(_mm256_set1_ps(s_f16(w[2 * h + 1][i].d))), 1));
        }
        for (int t = 0; t < 8; t++) {
            const __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a[t][i].qs));
            const __m512 da = _mm512_set1_ps(s_f16(a[t][i].d));
            for (int h = 0; h < 2; h++) {
                const __m512i sy = _mm512_mask_sub_epi8(y, neg[h], _mm512_setzero_si512(), y);
                const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax[h], sy);
                c[t][h] = _mm512_fmadd_ps(_mm512_mul_ps(dw[h], da), _mm512_cvtepi32_ps(p), c[t][h]);
            }
        }
    }
    for (int t = 0; t < 8; t++)
        for (int h = 0; h < 2; h++) {
            s[t * ss + 2 * h] = s_hsum_ps(_mm512_castps512_ps256(c[t][h]));
            s[t * ss + 2 * h + 1] = s_hsum_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c[t][h]), 1)));
        }
}

/* ---- K-quants, AVX-512 VNNI ------------------------------------------ */
/* Every K-quant kernel (scalar, AVX2, AVX-512) computes per super-block the
 * exact integer sums, then sumf += (d·d_a)·sumi [- (dmin·d_a)·mins] in that
 * float order: all of them give the same bits, in any batch. */

/* the eight 6-bit scales and mins of a Q4_K/Q5_K super-block, bytes 0-7 and
 * 8-15, from one 16-byte load of the 12 packed bytes (the block goes on
 * past them). As 32-bit words u0 u1 u2 of the packed bytes:
 *   scales 0-3 = u0 & 0x3f..,  scales 4-7 = (u2 & 0x0f..) | (u0 >> 6 & 3..) << 4
 *   mins 0-3   = u1 & 0x3f..,  mins 4-7   = (u2 >> 4 & 0x0f..) | (u1 >> 6 & 3..) << 4
 * (vector code: assembling the words in memory and reloading them stalls
 * the store forwarding) */
AVX2 static inline __m128i s_kq_scales_mins(const uint8_t *q)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)q);
    const __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)); /* u0 u2 u1 u2 */
    const __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)); /* u0 u0 u1 u1 */
    const __m128i lo = _mm_and_si128(a, _mm_set1_epi8(0x3f));
    const __m128i hi = _mm_or_si128(_mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)), _mm_set1_epi8(0x0f)),
                                    _mm_and_si128(_mm_srli_epi32(b, 2), _mm_set1_epi8(0x30)));
    return _mm_blend_epi32(lo, hi, 0xA);
}

/* Σ of the 16 int32 lanes */
AVX512 static inline int s_hsum512_i32(__m512i x)
{
    const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(x), _mm512_extracti64x4_epi64(x, 1));
    return s_hsum_i32(h);
}

/* int16 lane j of the scale vector for 64 elements starting at element 64v
 * holds the scale of element 64v + 2j (Q6_K: 16 elements per scale) */
static const int16_t s_q6_scale_idx[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8, 8, 8, 8, 8, 8, 8, 8, 9, 9, 9, 9, 9, 9, 9, 9, 10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13, 14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15,
     15, 15, 15}};

/* Q6_K super-block: u[v] = the unsigned 6-bit values (q + 32) of elements
 * 64v .. 64v+63 in order, scv[v] their scales per int16 pair, and the
 * correction Σ_g sc_g·bsum_g is left to the caller (needs the activation) */
AVX512VNNI static inline void s_q6_K_unpack512(const g4_block_q6_K *b, __m512i u[4], __m512i scv[4], __m256i *sc16)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* qh bits (0,1) / (2,3) of the low / high 256 bits to bits (4,5), then (4,5) / (6,7) */
    const __m512i shl_a = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr_b = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    for (int h = 0; h < 2; h++) {
        const __m512i l = _mm512_loadu_si512((const void *)(b->ql + 64 * h));
        const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
        const __m512i ha = _mm512_and_si512(_mm512_sllv_epi16(q, shl_a), m30);
        const __m512i hb = _mm512_and_si512(_mm512_srlv_epi16(q, shr_b), m30);
        u[2 * h] = _mm512_ternarylogic_epi64(m4, l, ha, 0xCA); /* m4 ? l : ha, bit by bit */
        u[2 * h + 1] = _mm512_ternarylogic_epi64(m4, _mm512_srli_epi16(l, 4), hb, 0xCA);
    }
    *sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    const __m512i s = _mm512_castsi256_si512(*sc16);
    for (int v = 0; v < 4; v++) scv[v] = _mm512_permutexvar_epi16(_mm512_loadu_si512((const void *)s_q6_scale_idx[v]), s);
}

/* Σ sc·u·a over one super-block as int32 lanes; the caller subtracts
 * 32·Σ sc·bsum (s_q6_K_corr) */
AVX512VNNI static inline __m512i s_q6_K_sumv512(const __m512i u[4], const __m512i scv[4], const g4_block_q8_K *a)
{
    __m512i sumi = _mm512_setzero_si512();
    for (int v = 0; v < 4; v++) {
        const __m512i y = _mm512_loadu_si512((const void *)(a->qs + 64 * v));
        sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(u[v], y), scv[v]);
    }
    return sumi;
}

/* Σ_g sc_g·bsum_g as int32 lanes */
AVX512VNNI static inline __m256i s_q6_K_corr(__m256i sc16, const g4_block_q8_K *a)
{
    return _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a->bsums));
}

/* Σ sc·(u - 32)·a over one super-block, exact */
AVX512VNNI static inline int s_q6_K_sum512(const __m512i u[4], const __m512i scv[4], __m256i sc16, const g4_block_q8_K *a)
{
    return s_hsum512_i32(s_q6_K_sumv512(u, scv, a)) - 32 * s_hsum_i32(s_q6_K_corr(sc16, a));
}

AVX512VNNI static void s_dot_q6_K_512(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q6_K *w = vw;
    const g4_block_q8_K *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; i++) {
        __m512i u[4], scv[4];
        __m256i sc16;
        s_q6_K_unpack512(&w[i], u, scv, &sc16);
        const int sumi = s_q6_K_sum512(u, scv, sc16, &a[i]);
        sumf += s_f16(w[i].d) * a[i].d * (float)sumi;
    }
    *s = sumf;
}

/* Q4_K super-block: u[v] = the 4-bit values of elements 64v .. 64v+63 in
 * order (sub-blocks 2v, 2v+1), scv[v] their scales per int16 pair, mn the
 * mins per 16-element group (for the activation's bsums) */
AVX512VNNI static inline void s_q4_K_unpack512(const g4_block_q4_K *b, __m512i u[4], __m512i scv[4], __m256i *mn)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
    for (int v = 0; v < 4; v++) {
        const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qs + 32 * v)));
        u[v] = _mm512_and_si512(_mm512_srlv_epi16(q, shr), m4);
    }
    const __m128i sm = s_kq_scales_mins(b->scales);
    const __m512i sc = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(sm)); /* int16 0-7 scales, 8-15 mins */
    for (int v = 0; v < 4; v++)
        scv[v] = _mm512_permutexvar_epi16(_mm512_inserti64x4(_mm512_set1_epi16((short)(2 * v)), _mm256_set1_epi16((short)(2 * v + 1)), 1), sc);
    *mn = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm)); /* m0 m0 m1 m1 ... m7 m7 */
}

AVX512VNNI static inline __m512i s_q4_K_sum512(const __m512i u[4], const __m512i scv[4], const g4_block_q8_K *a)
{
    __m512i sumi = _mm512_setzero_si512();
    for (int v = 0; v < 4; v++) {
        const __m512i y = _mm512_loadu_si512((const void *)(a->qs + 64 * v));
        sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(u[v], y), scv[v]);
    }
    return sumi;
}

AVX512VNNI static void s_dot_q4_K_512(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_K *w = vw;
    const g4_block_q8_K *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; i++) {
        __m512i u[4], scv[4];
        __m256i mn;
        s_q4_K_unpack512(&w[i], u, scv, &mn);
        const int sumi = s_hsum512_i32(s_q4_K_sum512(u, scv, &a[i]));
        const int mins = s_hsum_i32(_mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)a[i].bsums)));
        sumf += s_f16(w[i].d) * a[i].d * (float)sumi - s_f16(w[i].dmin) * a[i].d * (float)mins;
    }
    *s = sumf;
}

/* ---- four weight rows x one activation row (decode) ------------------- */

/* Four interleaved weight streams defeat the hardware prefetcher (measured:
 * a third of the single-stream rate from DRAM). The four rows are contiguous,
 * so while block i of rows r..r+3 is multiplied, the kernel asks for the
 * same share of rows r+4..r+7 — one sequential stream a group ahead (past the
 * matrix's end a prefetch reads nothing useful and never faults). */
static inline void s_prefetch_next4(const void *vw, int64_t ws, int64_t i, size_t block)
{
    const char *p = (const char *)vw + 4 * ws + (size_t)i * 4 * block;
    for (size_t o = 0; o < 4 * block; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

/* the scale fields of four blocks, one per weight row, as four floats */
AVX512 static inline __m128 s_f16x4(const void *b0, const void *b1, const void *b2, const void *b3)
{
    uint16_t h[4];
    memcpy(&h[0], b0, 2), memcpy(&h[1], b1, 2), memcpy(&h[2], b2, 2), memcpy(&h[3], b3, 2);
    return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)h));
}

/* lane r of the result: Σ of the 16 int32 lanes of x[r], exact */
AVX512 static inline __m128i s_hsum4x512_i32(const __m512i x[4])
{
    __m256i h[4];
    for (int r = 0; r < 4; r++) h[r] = _mm256_add_epi32(_mm512_castsi512_si256(x[r]), _mm512_extracti64x4_epi64(x[r], 1));
    const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(h[0], h[1]), _mm256_hadd_epi32(h[2], h[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/* the same for 8-lane vectors */
AVX2 static inline __m128i s_hsum4x256_i32(const __m256i x[4])
{
    const __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(x[0], x[1]), _mm256_hadd_epi32(x[2], x[3]));
    return _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
}

/* Four rows' Q6_K super-block in lane r: sumf + d·(Σsumi - 32·Σcorr), the
 * scalar kernel's float operations */
AVX512 static inline __m128 s_q6_K_fold4(__m128 sumf, __m128 d, const __m512i sumi[4], const __m256i corr[4])
{
    const __m128i tot = _mm_sub_epi32(s_hsum4x512_i32(sumi), _mm_slli_epi32(s_hsum4x256_i32(corr), 5));
    return _mm_add_ps(sumf, _mm_mul_ps(d, _mm_cvtepi32_ps(tot)));
}

/* Four rows' Q4_K super-block in lane r: sumf + (d·Σsumi - dm·Σmins) */
AVX512 static inline __m128 s_q4_K_fold4(__m128 sumf, __m128 d, __m128 dm, const __m512i sumi[4], const __m256i mins[4])
{
    const __m128 p = _mm_mul_ps(d, _mm_cvtepi32_ps(s_hsum4x512_i32(sumi)));
    const __m128 q = _mm_mul_ps(dm, _mm_cvtepi32_ps(s_hsum4x256_i32(mins)));
    return _mm_add_ps(sumf, _mm_sub_ps(p, q));
}

/* Q6_K: per row the integer sums and float operations of s_dot_q6_K_512 */
AVX512VNNI static void s_dot1x4_q6_K_512(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                         int64_t as)
{
    (void)ss, (void)as;
    const g4_block_q6_K *w[4];
    for (int r = 0; r < 4; r++) w[r] = (const void *)((const uint8_t *)vw + r * ws);
    const g4_block_q8_K *a = va;
    __m128 sumf = _mm_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        s_prefetch_next4(vw, ws, i, sizeof w[0][0]);
        __m512i sumi[4];
        __m256i corr[4];
        for (int r = 0; r < 4; r++) {
            __m512i u[4], scv[4];
            __m256i sc16;
            s_q6_K_unpack512(&w[r][i], u, scv, &sc16);
            sumi[r] = s_q6_K_sumv512(u, scv, &a[i]);
            corr[r] = s_q6_K_corr(sc16, &a[i]);
        }
        const __m128 d = _mm_mul_ps(s_f16x4(&w[0][i].d, &w[1][i].d, &w[2][i].d, &w[3][i].d), _mm_set1_ps(a[i].d));
        sumf = s_q6_K_fold4(sumf, d, sumi, corr);
    }
    _mm_storeu_ps(s, sumf);
}

/* Q4_K: per row the integer sums and float operations of s_dot_q4_K_512 */
AVX512VNNI static void s_dot1x4_q4_K_512(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                         int64_t as)
{
    (void)ss, (void)as;
    const g4_block_q4_K *w[4];
    for (int r = 0; r < 4; r++) w[r] = (const void *)((const uint8_t *)vw + r * ws);
    const g4_block_q8_K *a = va;
    __m128 sumf = _mm_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        const __m256i bs = _mm256_loadu_si256((const __m256i *)a[i].bsums);
        s_prefetch_next4(vw, ws, i, sizeof w[0][0]);
        __m512i sumi[4];
        __m256i mins[4];
        for (int r = 0; r < 4; r++) {
            __m512i u[4], scv[4];
            __m256i mn;
            s_q4_K_unpack512(&w[r][i], u, scv, &mn);
            sumi[r] = s_q4_K_sum512(u, scv, &a[i]);
            mins[r] = _mm256_madd_epi16(mn, bs);
        }
        const __m128 ad = _mm_set1_ps(a[i].d);
        const __m128 d = _mm_mul_ps(s_f16x4(&w[0][i].d, &w[1][i].d, &w[2][i].d, &w[3][i].d), ad);
        const __m128 dm = _mm_mul_ps(s_f16x4(&w[0][i].dmin, &w[1][i].dmin, &w[2][i].dmin, &w[3][i].dmin), ad);
        sumf = s_q4_K_fold4(sumf, d, dm, sumi, mins);
    }
    _mm_storeu_ps(s, sumf);
}

/* Q8_0: rows (0,1) and (2,3) in two 512-bit registers, each lane with the
 * operations of s_dot_q8_0_vnni (so the same results) */
AVX512VNNI static void s_dot1x4_q8_0_vnni(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                          int64_t as)
{
    (void)ss, (void)as;
    const g4_block_q8_0 *w[4];
    for (int r = 0; r < 4; r++) w[r] = (const void *)((const uint8_t *)vw + r * ws);
    const g4_block_q8_0 *a = va;
    const __m512i lo2 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i hi2 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512 c0 = _mm512_setzero_ps(), c1 = c0;
    for (int64_t i = 0; i < n / 32; i++) {
        s_prefetch_next4(vw, ws, i, sizeof w[0][0]);
        const __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)a[i].qs));
        const __m512 d4 = _mm512_castps128_ps512(
            _mm_mul_ps(s_f16x4(&w[0][i].d, &w[1][i].d, &w[2][i].d, &w[3][i].d), _mm_set1_ps(s_f16(a[i].d))));
        const __m512i x0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[0][i].qs)),
                                              _mm256_loadu_si256((const __m256i *)w[1][i].qs), 1);
        const __m512i x1 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)w[2][i].qs)),
                                              _mm256_loadu_si256((const __m256i *)w[3][i].qs), 1);
        const __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x0),
                                               _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x0), _mm512_setzero_si512(), y));
        const __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x1),
                                               _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x1), _mm512_setzero_si512(), y));
        c0 = _mm512_fmadd_ps(_mm512_permutexvar_ps(lo2, d4), _mm512_cvtepi32_ps(p0), c0);
        c1 = _mm512_fmadd_ps(_mm512_permutexvar_ps(hi2, d4), _mm512_cvtepi32_ps(p1), c1);
    }
    s[0] = s_hsum_ps(_mm512_castps512_ps256(c0));
    s[1] = s_hsum_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c0), 1)));
    s[2] = s_hsum_ps(_mm512_castps512_ps256(c1));
    s[3] = s_hsum_ps(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c1), 1)));
}


/* ---- one weight row x four activation rows (prefill) ------------------- */

/* Q6_K: the weight unpacked once, the four rows' sums reduced together; per
 * row the integer sums and float operations of s_dot_q6_K_512 */
AVX512VNNI static void s_dot4_q6_K_512(int64_t n, float *s, int64_t ss, const void *vw, const void *va, int64_t as)
{
    const g4_block_q6_K *w = vw;
    const g4_block_q8_K *a[4];
    for (int t = 0; t < 4; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    __m128 sumf = _mm_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        __m512i u[4], scv[4], sumi[4];
        __m256i sc16, corr[4];
        s_q6_K_unpack512(&w[i], u, scv, &sc16);
        for (int t = 0; t < 4; t++) {
            sumi[t] = s_q6_K_sumv512(u, scv, &a[t][i]);
            corr[t] = s_q6_K_corr(sc16, &a[t][i]);
        }
        const __m128 d = _mm_mul_ps(_mm_set1_ps(s_f16(w[i].d)), _mm_setr_ps(a[0][i].d, a[1][i].d, a[2][i].d, a[3][i].d));
        sumf = s_q6_K_fold4(sumf, d, sumi, corr);
    }
    float r[4];
    _mm_storeu_ps(r, sumf);
    for (int t = 0; t < 4; t++) s[t * ss] = r[t];
}

/* Q4_K: the same scheme, per row the operations of s_dot_q4_K_512 */
AVX512VNNI static void s_dot4_q4_K_512(int64_t n, float *s, int64_t ss, const void *vw, const void *va, int64_t as)
{
    const g4_block_q4_K *w = vw;
    const g4_block_q8_K *a[4];
    for (int t = 0; t < 4; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    __m128 sumf = _mm_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        __m512i u[4], scv[4], sumi[4];
        __m256i mn, mins[4];
        s_q4_K_unpack512(&w[i], u, scv, &mn);
        for (int t = 0; t < 4; t++) {
            sumi[t] = s_q4_K_sum512(u, scv, &a[t][i]);
            mins[t] = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)a[t][i].bsums));
        }
        const __m128 ad = _mm_setr_ps(a[0][i].d, a[1][i].d, a[2][i].d, a[3][i].d);
        const __m128 d = _mm_mul_ps(_mm_set1_ps(s_f16(w[i].d)), ad), dm = _mm_mul_ps(_mm_set1_ps(s_f16(w[i].dmin)), ad);
        sumf = s_q4_K_fold4(sumf, d, dm, sumi, mins);
    }
    float r[4];
    _mm_storeu_ps(r, sumf);
    for (int t = 0; t < 4; t++) s[t * ss] = r[t];
}

/* Q4_K, four weight rows x eight activation rows: each weight super-block
 * unpacked once for eight rows; per row the operations of s_dot_q4_K_512 */
AVX512VNNI static void s_dot8x4_q4_K_512(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                         int64_t as)
{
    const g4_block_q8_K *a[8];
    for (int t = 0; t < 8; t++) a[t] = (const void *)((const uint8_t *)va + t * as);
    for (int r = 0; r < 4; r++) {
        const g4_block_q4_K *w = (const void *)((const uint8_t *)vw + r * ws);
        __m128 sumf[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
        for (int64_t i = 0; i < n / 256; i++) {
            __m512i u[4], scv[4], sumi[8];
            __m256i mn, mins[8];
            s_q4_K_unpack512(&w[i], u, scv, &mn);
            for (int t = 0; t < 8; t++) {
                sumi[t] = s_q4_K_sum512(u, scv, &a[t][i]);
                mins[t] = _mm256_madd_epi16(mn, _mm256_loadu_si256((const __m256i *)a[t][i].bsums));
            }
            const __m128 dw = _mm_set1_ps(s_f16(w[i].d)), dmw = _mm_set1_ps(s_f16(w[i].dmin));
            for (int h = 0; h < 2; h++) {
                const __m128 ad = _mm_setr_ps(a[4 * h][i].d, a[4 * h + 1][i].d, a[4 * h + 2][i].d, a[4 * h + 3][i].d);
                sumf[h] = s_q4_K_fold4(sumf[h], _mm_mul_ps(dw, ad), _mm_mul_ps(dmw, ad), sumi + 4 * h, mins + 4 * h);
            }
        }
        float out[8];
        _mm_storeu_ps(out, sumf[0]), _mm_storeu_ps(out + 4, sumf[1]);
        for (int t = 0; t < 8; t++) s[t * ss + r] = out[t];
    }
}

/* ---- BF16, AVX-512 ----------------------------------------------------- */
/* Per (weight row, activation row) pair every BF16 kernel below keeps one
 * 16-lane f32 accumulator: fma over 16 elements at a time in order, the
 * fixed 16-lane reduction, then the tail elements in order — the same bits
 * in any batch shape. */

AVX512 static inline __m512 s_ld16_bf16(const uint16_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

AVX512 static inline float s_bf16_finish(__m512 acc, const uint16_t *w, const uint16_t *a, int64_t i, int64_t n)
{
    float sum = _mm512_reduce_add_ps(acc);
    for (; i < n; i++) sum += g4_bf16_to_fp32(w[i]) * g4_bf16_to_fp32(a[i]);
    return sum;
}

AVX512 static void s_dot_bf16_512(int64_t n, float *s, const void *vw, const void *va)
{
    const uint16_t *w = vw, *a = va;
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) acc = _mm512_fmadd_ps(s_ld16_bf16(w + i), s_ld16_bf16(a + i), acc);
    *s = s_bf16_finish(acc, w, a, i, n);
}

/* one weight row x four activation rows */
AVX512 static void s_dot4_bf16_512(int64_t n, float *s, int64_t ss, const void *vw, const void *va, int64_t as)
{
    const uint16_t *w = vw, *a[4];
    for (int t = 0; t < 4; t++) a[t] = (const uint16_t *)((const uint8_t *)va + t * as);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 x = s_ld16_bf16(w + i);
        for (int t = 0; t < 4; t++) acc[t] = _mm512_fmadd_ps(x, s_ld16_bf16(a[t] + i), acc[t]);
    }
    for (int t = 0; t < 4; t++) s[t * ss] = s_bf16_finish(acc[t], w, a[t], i, n);
}

/* four weight rows x four activation rows: s[t*ss + r] */
AVX512 static void s_dot4x4_bf16_512(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                     int64_t as)
{
    const uint16_t *w[4], *a[4];
    for (int r = 0; r < 4; r++) w[r] = (const uint16_t *)((const uint8_t *)vw + r * ws);
    for (int t = 0; t < 4; t++) a[t] = (const uint16_t *)((const uint8_t *)va + t * as);
    __m512 acc[4][4];
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++) acc[t][r] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 x[4];
        for (int r = 0; r < 4; r++) x[r] = s_ld16_bf16(w[r] + i);
        for (int t = 0; t < 4; t++) {
            const __m512 y = s_ld16_bf16(a[t] + i);
            for (int r = 0; r < 4; r++) acc[t][r] = _mm512_fmadd_ps(x[r], y, acc[t][r]);
        }
    }
    for (int t = 0; t < 4; t++)
        for (int r = 0; r < 4; r++) s[t * ss + r] = s_bf16_finish(acc[t][r], w[r], a[t], i, n);
}

/* four weight rows x one activation row (decode): s[r] */
AVX512 static void s_dot1x4_bf16_512(int64_t n, float *s, int64_t ss, const void *vw, int64_t ws, const void *va,
                                     int64_t as)
{
    (void)ss, (void)as;
    const uint16_t *w[4], *a = va;
    for (int r = 0; r < 4; r++) w[r] = (const uint16_t *)((const uint8_t *)vw + r * ws);
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        if (!(i & 31)) s_prefetch_next4(vw, ws, i / 32, 64); /* one line of each row per 32 elements */
        const __m512 y = s_ld16_bf16(a + i);
        for (int r = 0; r < 4; r++) acc[r] = _mm512_fmadd_ps(s_ld16_bf16(w[r] + i), y, acc[r]);
    }
    for (int r = 0; r < 4; r++) s[r] = s_bf16_finish(acc[r], w[r], a, i, n);
}

AVX512VNNI static void s_dot_q8_0_vnni(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q8_0 *w = vw, *a = va;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256 d = _mm256_set1_ps(s_f16(w[i].d) * s_f16(a[i].d));
        const __m256i x = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);
        const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    *s = s_hsum_ps(acc);
}

AVX512VNNI static void s_dot_q4_0_vnni(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_0 *w = vw;
    const g4_block_q8_0 *a = va;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 32; i++) {
        const __m256 d = _mm256_set1_ps(s_f16(w[i].d) * s_f16(a[i].d));
        const __m256i x = s_unpack_q4(w[i].qs); /* 0..15; subtract 8·Σy afterwards */
        const __m256i y = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), x, y);
        const __m256i sy = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), y);
        p = _mm256_sub_epi32(p, sy);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
    }
    *s = s_hsum_ps(acc);
}

AVX512 static void s_dot_f32_512(int64_t n, float *s, const void *vw, const void *va)
{
    const float *w = vw, *a = va;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(a + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(a + i + 16), acc1);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) sum += w[i] * a[i];
    *s = sum;
}

AVX512 static void s_dot_f16_512(int64_t n, float *s, const void *vw, const void *va)
{
    const uint16_t *w = vw, *a = va;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
#define LD(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(LD(w + i), LD(a + i), acc0);
        acc1 = _mm512_fmadd_ps(LD(w + i + 16), LD(a + i + 16), acc1);
    }
#undef LD
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
    for (; i < n; i++) sum += s_f16(w[i]) * s_f16(a[i]);
    *s = sum;
}

/* the F16 accumulator updates 16 elements at a time: every element alone
 * rounds the same way, so the same bits as the AVX2 / scalar ones */
AVX512 static void s_f16_scale_512(uint16_t *acc, float sc, int64_t n)
{
    const __m512 vs = _mm512_set1_ps(sc);
    int64_t d = 0;
    for (; d + 16 <= n; d += 16) {
        const __m512 a = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(acc + d))), vs);
        _mm256_storeu_si256((__m256i *)(acc + d), _mm512_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; d < n; d++) acc[d] = _cvtss_sh(s_f16(acc[d]) * sc, _MM_FROUND_TO_NEAREST_INT);
}

AVX512 static void s_f16_mad_512(uint16_t *acc, const uint16_t *v, float sc, int64_t n)
{
    const __m512 vs = _mm512_set1_ps(sc);
    int64_t d = 0;
    for (; d + 32 <= n; d += 32) {
        const __m512 a0 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + d))), vs,
                                          _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(acc + d))));
        const __m512 a1 = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(v + d + 16))), vs,
                                          _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(acc + d + 16))));
        _mm256_storeu_si256((__m256i *)(acc + d), _mm512_cvtps_ph(a0, _MM_FROUND_TO_NEAREST_INT));
        _mm256_storeu_si256((__m256i *)(acc + d + 16), _mm512_cvtps_ph(a1, _MM_FROUND_TO_NEAREST_INT));
    }
    for (; d < n; d++) acc[d] = _cvtss_sh(fmaf(s_f16(v[d]), sc, s_f16(acc[d])), _MM_FROUND_TO_NEAREST_INT);
}

/* G dot products of one F16 row w with G rows a + g·as, each exactly
 * s_dot_f16_512's operations (the row is widened once for four of them) */
AVX512 static void s_dot_f16_g_512(int64_t n, float *s, const uint16_t *w, const uint16_t *a, int64_t as, int G)
{
    int g = 0;
#define LD(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
    for (; g + 4 <= G; g += 4) {
        __m512 c0[4], c1[4];
        for (int r = 0; r < 4; r++) c0[r] = c1[r] = _mm512_setzero_ps();
        int64_t i = 0;
        for (; i + 32 <= n; i += 32) {
            const __m512 k0 = LD(w + i), k1 = LD(w + i + 16);
            for (int r = 0; r < 4; r++) {
                const uint16_t *q = a + (g + r) * as;
                c0[r] = _mm512_fmadd_ps(k0, LD(q + i), c0[r]);
                c1[r] = _mm512_fmadd_ps(k1, LD(q + i + 16), c1[r]);
            }
        }
        for (int r = 0; r < 4; r++) {
            const uint16_t *q = a + (g + r) * as;
            float sum = _mm512_reduce_add_ps(_mm512_add_ps(c0[r], c1[r]));
            for (int64_t j = i; j < n; j++) sum += s_f16(w[j]) * s_f16(q[j]);
            s[g + r] = sum;
        }
    }
#undef LD
    for (; g < G; g++) s_dot_f16_512(n, &s[g], w, a + g * as);
}

void g4_dot_fill_avx512(g4_dot_simd_t *t, int has_vnni, int has_bf16)
{
    (void)has_bf16; /* no dpbf16: it rounds differently from the f32 FMAs */
    t->dot[G4_DTYPE_F32] = s_dot_f32_512;
    t->dot[G4_DTYPE_BF16] = s_dot_bf16_512;
    t->dot4[G4_DTYPE_BF16] = s_dot4_bf16_512;
    t->dot4x4[G4_DTYPE_BF16] = s_dot4x4_bf16_512;
    t->dot1x4[G4_DTYPE_BF16] = s_dot1x4_bf16_512;
    t->dot[G4_DTYPE_F16] = s_dot_f16_512;
    t->f16_dot_g = s_dot_f16_g_512;
    t->f16_scale = s_f16_scale_512, t->f16_mad = s_f16_mad_512;
    if (has_vnni) {
        t->dot[G4_DTYPE_Q8_0] = s_dot_q8_0_vnni;
        t->dot4[G4_DTYPE_Q8_0] = s_dot4_q8_0_vnni;
        t->dot4x2[G4_DTYPE_Q8_0] = s_dot4x2_q8_0_vnni;
        t->dot4x4[G4_DTYPE_Q8_0] = s_dot4x4_q8_0_vnni;
        t->dot8x4[G4_DTYPE_Q8_0] = s_dot8x4_q8_0_vnni;
        t->dot1x4[G4_DTYPE_Q8_0] = s_dot1x4_q8_0_vnni;
        t->dot1x4[G4_DTYPE_Q4_K] = s_dot1x4_q4_K_512;
        t->dot8x4[G4_DTYPE_Q4_K] = s_dot8x4_q4_K_512;
        t->dot1x4[G4_DTYPE_Q6_K] = s_dot1x4_q6_K_512;
        t->dot[G4_DTYPE_Q4_K] = s_dot_q4_K_512;
        t->dot4[G4_DTYPE_Q4_K] = s_dot4_q4_K_512;
        t->dot[G4_DTYPE_Q6_K] = s_dot_q6_K_512;
        t->dot4[G4_DTYPE_Q6_K] = s_dot4_q6_K_512;
        t->dot[G4_DTYPE_Q4_0] = s_dot_q4_0_vnni;
    }
}
