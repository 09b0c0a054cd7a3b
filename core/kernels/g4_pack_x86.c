/* g4_pack_x86 — AVX-512 VNNI kernels for packed matrices (g4_pack.h).
 *
 * Every kernel multiplies one group of 16 weight rows (a row per 32-bit
 * lane) with T <= 4 activation rows: vpdpbusd of four weight bytes per lane
 * with one broadcast activation word, so a 64-byte vector does 64
 * multiply-adds and no horizontal sums are needed. Per block the integer
 * sums are those of the scalar reference (exact, any order); the float
 * operations that follow are the reference's, lane by lane, in its order:
 * the same bits. */
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "g4_pack.h"

#if defined(__x86_64__)

#define VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))
#define INL inline __attribute__((always_inline))

/* Software prefetch of the bytes PF ahead of the block being multiplied: a
 * decode streams each matrix once, and the hardware prefetcher alone leaves
 * a packed stream well below the row-major kernels' (which prefetch the
 * next rows the same way). */
static int s_pf = 6144; /* $G4_PACK_PF overrides (tuning) */
static INL void s_prefetch(const uint8_t *p, int n)
{
    for (int o = 0; o < n; o += 64) _mm_prefetch((const char *)p + s_pf + o, _MM_HINT_T0);
}

static INL int32_t s_w32(const void *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* ---- Q8_0 ------------------------------------------------------------- */

/* aux[8b + g] = -128 · Σ_k a_{4g+k} over activation block b, word g */
static void s_prep_q8_0(int64_t K, const void *va, int32_t *aux)
{
    const g4_block_q8_0 *a = va;
    for (int64_t b = 0; b < K / 32; b++)
        _Pragma("GCC unroll 16") for (int g = 0; g < 8; g++)
            aux[8 * b + g] = -128 * (a[b].qs[4 * g] + a[b].qs[4 * g + 1] + a[b].qs[4 * g + 2] + a[b].qs[4 * g + 3]);
}

/* The row-major kernels (s_dot_q8_0_vnni and its batch twins) keep eight
 * f32 lanes per row, lane g = Σ over blocks of fma(dw·da, p_g, lane g) with
 * p_g the integer sum of the block's bytes 4g..4g+3, and end with
 * s_hsum_ps: ((l0+l4)+(l2+l6)) + ((l1+l5)+(l3+l7)). Here lane g is a
 * register of its own (16 rows), p_g one vpdpbusd started at -128·Σa. */
VNNI static INL void s_q8_0(int64_t K, const uint8_t *w, const uint8_t *A, int64_t as, const int32_t *aux,
                            int64_t auxs, const int T, const int pf, float *y, int64_t ldy)
{
    const int64_t nb = K / 32;
    __m512 acc[2][8];
    _Pragma("GCC unroll 16") for (int t = 0; t < T; t++)
        _Pragma("GCC unroll 16") for (int g = 0; g < 8; g++) acc[t][g] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++, w += 16 * 34) {
        if (pf) s_prefetch(w, 16 * 34);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w));
        const g4_block_q8_0 *a[2];
        __m512 d[2];
        _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) {
            a[t] = (const g4_block_q8_0 *)(A + t * as) + b;
            d[t] = _mm512_mul_ps(dw, _mm512_set1_ps(_cvtsh_ss(a[t]->d)));
        }
        _Pragma("GCC unroll 16") for (int g = 0; g < 8; g++) {
            const __m512i q = _mm512_loadu_si512((const void *)(w + 32 + 64 * g));
            _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) {
                const __m512i p = _mm512_dpbusd_epi32(_mm512_set1_epi32(aux[t * auxs + 8 * b + g]), q,
                                                      _mm512_set1_epi32(s_w32(a[t]->qs + 4 * g)));
                acc[t][g] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(p), acc[t][g]);
            }
        }
    }
    _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) {
        const __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][4]), _mm512_add_ps(acc[t][2], acc[t][6])),
                                       _mm512_add_ps(_mm512_add_ps(acc[t][1], acc[t][5]), _mm512_add_ps(acc[t][3], acc[t][7])));
        _mm512_storeu_ps(y + t * ldy, s);
    }
}

VNNI static void s_gemm_q8_0(int64_t K, const void *w, const void *a, int64_t as, const int32_t *aux, int64_t auxs,
                             int T, int first, float *y, int64_t ldy)
{
    const uint8_t *A = a;
    _Pragma("GCC unroll 16") for (int t = 0; t < T; t += 2, A += 2 * as, aux += 2 * auxs, y += 2 * ldy) {
        if (T - t >= 2) s_q8_0(K, w, A, as, aux, auxs, 2, first && t == 0, y, ldy);
        else s_q8_0(K, w, A, as, aux, auxs, 1, first && t == 0, y, ldy);
    }
}

/* ---- Q4_K ------------------------------------------------------------- */

/* reference (s_dot_kq_block): sumi = Σ_j sc_j·Σ q·a over sub-block j,
 * mins = Σ_g bsums_g·m_{g/2}; sumf += d·ad·sumi - dmin·ad·mins */
VNNI static INL void s_q4_K(int64_t K, const uint8_t *w, const uint8_t *A, int64_t as, const int T, const int pf,
                            float *y, int64_t ldy)
{
    const int64_t nb = K / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi32(0x3F), m4d = _mm512_set1_epi32(0x0F),
                  m2 = _mm512_set1_epi32(0x30);
    __m512 sumf[4];
    for (int t = 0; t < T; t++) sumf[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += 16 * 144) {
        if (pf) s_prefetch(w, 16 * 144);
        const g4_block_q8_K *a[4];
        for (int t = 0; t < T; t++) a[t] = (const g4_block_q8_K *)(A + t * as) + i;
        const __m512i u0 = _mm512_loadu_si512((const void *)(w + 64)), u1 = _mm512_loadu_si512((const void *)(w + 128)),
                      u2 = _mm512_loadu_si512((const void *)(w + 192));
        __m512i sumi[4], mins[4];
        for (int t = 0; t < T; t++) sumi[t] = mins[t] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            /* scales and mins of sub-blocks 2c, 2c+1 (get_scale_min_k4) */
            __m512i sc[2], mn[2];
            for (int h = 0; h < 2; h++) {
                const int j = 2 * c + h;
                if (j < 4) {
                    sc[h] = _mm512_and_si512(_mm512_srli_epi32(u0, 8 * j), m6);
                    mn[h] = _mm512_and_si512(_mm512_srli_epi32(u1, 8 * j), m6);
                } else {
                    const int s = 8 * (j - 4);
                    sc[h] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, s), m4d),
                                            _mm512_and_si512(_mm512_srli_epi32(u0, s + 2), m2));
                    mn[h] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, s + 4), m4d),
                                            _mm512_and_si512(_mm512_srli_epi32(u1, s + 2), m2));
                }
            }
            __m512i lo[4], hi[4];
            for (int t = 0; t < T; t++) lo[t] = hi[t] = _mm512_setzero_si512();
            const uint8_t *q = w + 256 + 512 * c;
            for (int g = 0; g < 8; g++) {
                const __m512i raw = _mm512_loadu_si512((const void *)(q + 64 * g));
                const __m512i wl = _mm512_and_si512(raw, m4), wh = _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
                for (int t = 0; t < T; t++) {
                    lo[t] = _mm512_dpbusd_epi32(lo[t], wl, _mm512_set1_epi32(s_w32(a[t]->qs + 64 * c + 4 * g)));
                    hi[t] = _mm512_dpbusd_epi32(hi[t], wh, _mm512_set1_epi32(s_w32(a[t]->qs + 64 * c + 32 + 4 * g)));
                }
            }
            /* mins: m_j duplicated in both 16-bit halves, times the pair
             * (bsums[2j], bsums[2j+1]) */
            const __m512i mm0 = _mm512_or_si512(mn[0], _mm512_slli_epi32(mn[0], 16));
            const __m512i mm1 = _mm512_or_si512(mn[1], _mm512_slli_epi32(mn[1], 16));
            for (int t = 0; t < T; t++) {
                sumi[t] = _mm512_add_epi32(sumi[t], _mm512_add_epi32(_mm512_mullo_epi32(lo[t], sc[0]),
                                                                     _mm512_mullo_epi32(hi[t], sc[1])));
                mins[t] = _mm512_dpwssd_epi32(mins[t], mm0, _mm512_set1_epi32(s_w32(a[t]->bsums + 4 * c)));
                mins[t] = _mm512_dpwssd_epi32(mins[t], mm1, _mm512_set1_epi32(s_w32(a[t]->bsums + 4 * c + 2)));
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w));
        const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + 32)));
        for (int t = 0; t < T; t++) {
            const __m512 ad = _mm512_set1_ps(a[t]->d);
            const __m512 p = _mm512_mul_ps(_mm512_mul_ps(d, ad), _mm512_cvtepi32_ps(sumi[t]));
            const __m512 n = _mm512_mul_ps(_mm512_mul_ps(dm, ad), _mm512_cvtepi32_ps(mins[t]));
            sumf[t] = _mm512_add_ps(sumf[t], _mm512_sub_ps(p, n));
        }
    }
    for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy, sumf[t]);
}

VNNI static void s_gemm_q4_K(int64_t K, const void *w, const void *a, int64_t as, const int32_t *aux, int64_t auxs,
                             int T, int first, float *y, int64_t ldy)
{
    (void)aux, (void)auxs;
    switch (T) {
    case 1: s_q4_K(K, w, a, as, 1, first, y, ldy); break;
    case 2: s_q4_K(K, w, a, as, 2, first, y, ldy); break;
    case 3: s_q4_K(K, w, a, as, 3, first, y, ldy); break;
    default: s_q4_K(K, w, a, as, 4, first, y, ldy); break;
    }
}

/* ---- Q6_K ------------------------------------------------------------- */

/* reference (s_dot_q6_K): sumi = Σ_j sc_j·Σ (q - 32)·a over the 16-element
 * sub-block j = Σ_j sc_j·Σ q·a - 32·Σ_j sc_j·bsums_j; sumf += d·ad·sumi.
 * Half h, quarter k of it: bytes ql[64h + 4g..] (word A), ql[64h + 32 + 4g..]
 * (B), qh[32h + 4g..] (C), g = 4k..4k+3, hold four sub-blocks' values:
 * q1 = A lo | C bits 0-1, q2 = B lo | C 2-3, q3 = A hi | C 4-5, q4 = B hi | C 6-7,
 * sub-blocks 8h + k + 0, 2, 4, 6, at activation bytes 128h + 0, 32, 64, 96 (+ 4g) */
VNNI static INL void s_q6_K(int64_t K, const uint8_t *w, const uint8_t *A, int64_t as, const int T, const int pf,
                            float *y, int64_t ldy)
{
    const int64_t nb = K / 256;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    __m512 sumf[4];
    _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) sumf[t] = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; i++, w += 16 * 210) {
        if (pf) s_prefetch(w, 16 * 210);
        const g4_block_q8_K *a[4];
        _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) a[t] = (const g4_block_q8_K *)(A + t * as) + i;
        __m512i sumi[4], corr[4];
        _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) sumi[t] = corr[t] = _mm512_setzero_si512();
        /* scale pairs (sc_2p, sc_2p+1) as int16 halves of each lane */
        __m512i sp[8];
        _Pragma("GCC unroll 16") for (int p = 0; p < 8; p++) {
            sp[p] = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(w + 32 + 32 * p)));
            _Pragma("GCC unroll 16") for (int t = 0; t < T; t++)
                corr[t] = _mm512_dpwssd_epi32(corr[t], sp[p], _mm512_set1_epi32(s_w32(a[t]->bsums + 2 * p)));
        }
        _Pragma("GCC unroll 16") for (int h = 0; h < 2; h++)
            _Pragma("GCC unroll 16") for (int k = 0; k < 2; k++)
                _Pragma("GCC unroll 16") for (int ab = 0; ab < 2; ab++) { /* word A: q1, q3; word B: q2, q4 */
                    __m512i x[4], z[4];
                    _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) x[t] = z[t] = _mm512_setzero_si512();
                    _Pragma("GCC unroll 16") for (int g = 4 * k; g < 4 * k + 4; g++) {
                        const __m512i l = _mm512_loadu_si512((const void *)(w + 288 + 64 * (16 * h + 8 * ab + g)));
                        const __m512i c = _mm512_loadu_si512((const void *)(w + 2336 + 64 * (8 * h + g)));
                        /* high bits for the low nibble (q1 / q2) and the high one (q3 / q4) */
                        const __m512i cl = _mm512_and_si512(ab ? _mm512_slli_epi16(c, 2) : _mm512_slli_epi16(c, 4), m30);
                        const __m512i ch = _mm512_and_si512(ab ? _mm512_srli_epi16(c, 2) : c, m30);
                        const __m512i ql = _mm512_ternarylogic_epi64(m4, l, cl, 0xCA);
                        const __m512i qh = _mm512_ternarylogic_epi64(m4, _mm512_srli_epi16(l, 4), ch, 0xCA);
                        _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) {
                            const int8_t *q8 = a[t]->qs + 128 * h + 32 * ab + 4 * g;
                            x[t] = _mm512_dpbusd_epi32(x[t], ql, _mm512_set1_epi32(s_w32(q8)));
                            z[t] = _mm512_dpbusd_epi32(z[t], qh, _mm512_set1_epi32(s_w32(q8 + 64)));
                        }
                    }
                    /* sub-blocks jx = 8h + k + 2ab, jz = jx + 4: pairs p = jx/2, jz/2, half k */
                    const int jx = 8 * h + k + 2 * ab, jz = jx + 4;
                    const __m512i sx = k ? _mm512_srai_epi32(sp[jx / 2], 16) : _mm512_srai_epi32(_mm512_slli_epi32(sp[jx / 2], 16), 16);
                    const __m512i sz = k ? _mm512_srai_epi32(sp[jz / 2], 16) : _mm512_srai_epi32(_mm512_slli_epi32(sp[jz / 2], 16), 16);
                    _Pragma("GCC unroll 16") for (int t = 0; t < T; t++)
                        sumi[t] = _mm512_add_epi32(sumi[t], _mm512_add_epi32(_mm512_mullo_epi32(x[t], sx), _mm512_mullo_epi32(z[t], sz)));
                }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)w));
        _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) {
            const __m512i tot = _mm512_sub_epi32(sumi[t], _mm512_slli_epi32(corr[t], 5));
            sumf[t] = _mm512_add_ps(sumf[t], _mm512_mul_ps(_mm512_mul_ps(d, _mm512_set1_ps(a[t]->d)), _mm512_cvtepi32_ps(tot)));
        }
    }
    _Pragma("GCC unroll 16") for (int t = 0; t < T; t++) _mm512_storeu_ps(y + t * ldy, sumf[t]);
}

VNNI static void s_gemm_q6_K(int64_t K, const void *w, const void *a, int64_t as, const int32_t *aux, int64_t auxs,
                             int T, int first, float *y, int64_t ldy)
{
    (void)aux, (void)auxs;
    switch (T) {
    case 1: s_q6_K(K, w, a, as, 1, first, y, ldy); break;
    case 2: s_q6_K(K, w, a, as, 2, first, y, ldy); break;
    case 3: s_q6_K(K, w, a, as, 3, first, y, ldy); break;
    default: s_q6_K(K, w, a, as, 4, first, y, ldy); break;
    }
}

/* ---- dispatch --------------------------------------------------------- */

void g4_pack_fill_x86(g4_pack_ops_t ops[G4_DTYPE_COUNT])
{
    const char *cap = getenv("G4_ISA"); /* the row-major kernels' cap holds here too */
    if (cap && strcmp(cap, "avx512") != 0) return;
    if (getenv("G4_PACK_PF")) s_pf = atoi(getenv("G4_PACK_PF"));
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("f16c"))
        return;
    ops[G4_DTYPE_Q8_0] = (g4_pack_ops_t){.gemm = s_gemm_q8_0, .prep = s_prep_q8_0, .aux_per_block = 8};
    ops[G4_DTYPE_Q4_K] = (g4_pack_ops_t){.gemm = s_gemm_q4_K};
    ops[G4_DTYPE_Q6_K] = (g4_pack_ops_t){.gemm = s_gemm_q6_K};
}

#else
void g4_pack_fill_x86(g4_pack_ops_t ops[G4_DTYPE_COUNT]) { (void)ops; }
#endif
