/* g4_cuda_quant — the weight formats of g4_cu_matmul as __host__ __device__
 * code: one "unit" (32 weights of one row) at a time, shared by the
 * matrix × vector kernels, the tensor-core tile loader and the host check
 * (g4_cu_dequant_row_host, tests/unit/test_cuda_mm.c). Not an API: only
 * core/cuda/*.cu include it.
 *
 * A unit is what one thread turns into 32 floats from a few wide loads:
 *
 *   type        block  bytes  units  unit u covers (4 runs of 8, block-relative)
 *   F32 F16 BF16  32 (*)  128/64  1    0, 8, 16, 24   (*) virtual blocks of 32
 *   Q4_0 .. Q8_0  32    18..34  1    0, 8, 16, 24
 *   Q4_K Q5_K    256           8    c = u/2, l0 = 16(u%2):
 *                                   64c+l0, 64c+l0+8 (sub-block 2c, low nibbles)
 *                                   64c+32+l0, +8    (sub-block 2c+1, high nibbles)
 *   Q6_K         256           8    h = u/4, l0 = 8(u%4): 128h+l0 + 32r, r = 0..3
 *
 * The w[8r + i] of a unit is element pos(u, r) + i of its block. Units of a
 * block in order tile it in contiguous spans (SPAN elements: 32 for the
 * 32-blocks, 64 for Q4_K/Q5_K (units 2c, 2c+1), 128 for Q6_K (units 4h..4h+3)),
 * which is what the tensor-core kernel's K steps follow.
 *
 * Two ways to finish a unit (template flag EXACT):
 *   EXACT  the CPU's arithmetic, operation for operation (g4_dtype.c), so
 *          a row dequantized on the host is bit-identical to g4_dequant_row
 *          (both compiled without FMA contraction: g4_dtype.c is ISO C11,
 *          and the host side of nvcc targets baseline x86-64);
 *   fast   (the kernels) each quant q becomes the float v = 0.5 + q/256
 *          with one byte permute (q in mantissa bits 16..21 under
 *          0x3F000000) and w = fma(256·s, v, -(128·s + o)): one FMA per
 *          weight (Q8_0: 2^23 + (q ^ 0x80) by permute, minus 2^23 + 128,
 *          times d). The same value as EXACT for Q4_0, Q5_0, Q8_0, Q6_K and
 *          the float types (zero may come out +0 where the CPU has -0); for
 *          Q4_K/Q5_K/Q4_1/Q5_1 the constant 128·s + o is rounded once when
 *          its two terms are far apart in magnitude: an error of at most
 *          2^-24·|128·s + o| <= 18·2^-24 (~1e-6) of the sub-block's largest
 *          |weight|.
 *
 * Loads: 16-byte (Q4_K, Q5_K, the float types: 16-byte aligned rows),
 * 4-byte (Q4_1, Q5_1), and for the 2-byte aligned blocks (Q4_0, Q5_0, Q8_0,
 * Q6_K) aligned 4-byte words funnel-shifted into place (g4q_a2_load).
 * On the host the loads are memcpys of the same addresses. */
#ifndef G4_CUDA_QUANT_CUH
#define G4_CUDA_QUANT_CUH

#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

extern "C" {
#include "g4_dtype.h"
}

#define G4Q_HD __host__ __device__ __forceinline__

/* ---- bits, loads ---------------------------------------------------------- */

G4Q_HD float g4q_f32(uint32_t u)
{
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* IEEE binary16 (low 16 bits of h) -> f32, exact; the host uses g4's own
 * converter so the host check is the CPU's bits. */
G4Q_HD float g4q_h2f(uint32_t h)
{
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half((unsigned short)(h & 0xFFFFu)));
#else
    return g4_fp16_to_fp32((g4_fp16_t)(h & 0xFFFFu));
#endif
}

/* p 16-byte aligned */
G4Q_HD uint4 g4q_ld128(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const uint4 *)p);
#else
    uint4 v;
    memcpy(&v, p, 16);
    return v;
#endif
}

/* p 4-byte aligned */
G4Q_HD uint32_t g4q_ld32(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned int *)p);
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}

/* p 2-byte aligned */
G4Q_HD uint32_t g4q_ld16(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const unsigned short *)p);
#else
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
#endif
}

/* NW little-endian words from a 2-byte aligned p, in two steps so the loads
 * can be issued early and the shifts done when the data is needed:
 * g4q_a2_load reads the aligned words around p (when p is 2 mod 4: the
 * word holding p's first two bytes, NW-1 whole words, and the last two
 * bytes as a 16-bit load, so nothing past p + 4·NW is read; the two bytes
 * before p belong to the same aligned word as p), g4q_a2_get shifts them
 * into place. The host runs the same steps (any odd host address: a copy). */
template <int NW> struct g4q_a2 {
    uint32_t w[NW + 1];
    uint32_t sh; /* 0 or 16 */
};

template <int NW> G4Q_HD void g4q_a2_load(const uint8_t *p, g4q_a2<NW> &a)
{
    const uintptr_t ip = (uintptr_t)p;
#ifndef __CUDA_ARCH__
    if (ip & 1) {
        memcpy(a.w, p, 4 * NW);
        a.w[NW] = 0;
        a.sh = 0;
        return;
    }
#endif
    const uint8_t *b = (const uint8_t *)(ip & ~(uintptr_t)3);
    a.sh = (uint32_t)(ip & 2) * 8;
#pragma unroll
    for (int i = 0; i < NW; i++) a.w[i] = g4q_ld32(b + 4 * i);
    a.w[NW] = g4q_ld16(b + 4 * (a.sh ? NW : NW - 1));
}

template <int NW> G4Q_HD uint32_t g4q_a2_get(const g4q_a2<NW> &a, int i)
{
#ifdef __CUDA_ARCH__
    return __funnelshift_r(a.w[i], a.w[i + 1], a.sh);
#else
    return (uint32_t)((((uint64_t)a.w[i + 1] << 32) | a.w[i]) >> a.sh);
#endif
}

/* PRMT: byte n of the result is byte (s >> 4n) & 7 of y:x (the host
 * emulates it, so the host check runs the kernels' selectors). */
G4Q_HD uint32_t g4q_perm(uint32_t x, uint32_t y, uint32_t s)
{
#ifdef __CUDA_ARCH__
    return __byte_perm(x, y, s);
#else
    const uint64_t v = ((uint64_t)y << 32) | x;
    uint32_t r = 0;
    for (int n = 0; n < 4; n++) r |= (uint32_t)((v >> (8 * ((s >> (4 * n)) & 7))) & 0xFF) << (8 * n);
    return r;
#endif
}

/* Byte i (0..3, a constant after unrolling) of x, < 0x80, as the float
 * 0.5 + x_i/256: bits 0x3F000000 | x_i << 16 (one PRMT). */
G4Q_HD float g4q_bias(uint32_t x, int i) { return g4q_f32(g4q_perm(x, 0x3F000000u, 0x7044u | ((uint32_t)i << 8))); }

/* Byte i of x (any value) as the float 2^23 + x_i. */
G4Q_HD float g4q_magic(uint32_t x, int i) { return g4q_f32(g4q_perm(x, 0x4B000000u, 0x7440u | (uint32_t)i)); }

G4Q_HD uint32_t g4q_byte(uint32_t x, int i) { return (x >> (8 * i)) & 0xFFu; }

/* Bits 0..3 of n spread to bit 4 of bytes 0..3 (b_i -> bit 8i+4). */
G4Q_HD uint32_t g4q_spread4(uint32_t n) { return ((n * 0x00204081u) & 0x01010101u) << 4; }

/* g4_kq_scale_min of the sub-blocks 2c and 2c+1 (c = 0..3) of a Q4_K/Q5_K
 * block whose scales[12] are the words s0, s1, s2: all four bytes of each
 * case at once, then a select (no branch: the lanes of a warp have
 * different c). Byte k of the words below is sub-block (k or 4 + k)'s value. */
G4Q_HD void g4q_scale_min2(uint32_t s0, uint32_t s1, uint32_t s2, int c, uint32_t *sc0, uint32_t *m0,
                           uint32_t *sc1, uint32_t *m1)
{
    const uint32_t sc_lo = s0 & 0x3F3F3F3Fu, m_lo = s1 & 0x3F3F3F3Fu;
    const uint32_t sc_hi = (s2 & 0x0F0F0F0Fu) | ((s0 >> 2) & 0x30303030u);
    const uint32_t m_hi = ((s2 >> 4) & 0x0F0F0F0Fu) | ((s1 >> 2) & 0x30303030u);
    const uint32_t sc = c >= 2 ? sc_hi : sc_lo, m = c >= 2 ? m_hi : m_lo;
    const int sh = 16 * (c & 1); /* byte 2(c & 1) */
    *sc0 = (sc >> sh) & 0xFFu;
    *sc1 = (sc >> (sh + 8)) & 0xFFu;
    *m0 = (m >> sh) & 0xFFu;
    *m1 = (m >> (sh + 8)) & 0xFFu;
}

/* ---- per type ---------------------------------------------------------------
 * g4q_tr<TY>: QK elements per block (32 for the float types' virtual
 * blocks), BB bytes per block, UPB units per block, SPAN (see above),
 * pos(u, r), and raw/load/decode: load issues the global loads of unit u of
 * the block at p, decode<EXACT> finishes the 32 floats. */

template <int TY> struct g4q_tr;

template <> struct g4q_tr<G4_DTYPE_F32> {
    enum { QK = 32, BB = 128, UPB = 1, SPAN = 32 };
    struct raw { uint4 v[8]; };
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
#pragma unroll
        for (int i = 0; i < 8; i++) a.v[i] = g4q_ld128(p + 16 * i);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
#pragma unroll
        for (int i = 0; i < 8; i++) {
            w[4 * i + 0] = g4q_f32(a.v[i].x);
            w[4 * i + 1] = g4q_f32(a.v[i].y);
            w[4 * i + 2] = g4q_f32(a.v[i].z);
            w[4 * i + 3] = g4q_f32(a.v[i].w);
        }
    }
};

template <> struct g4q_tr<G4_DTYPE_F16> {
    enum { QK = 32, BB = 64, UPB = 1, SPAN = 32 };
    struct raw { uint4 v[4]; };
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
#pragma unroll
        for (int i = 0; i < 4; i++) a.v[i] = g4q_ld128(p + 16 * i);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t q[4] = {a.v[i].x, a.v[i].y, a.v[i].z, a.v[i].w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                w[8 * i + 2 * j] = g4q_h2f(q[j]);
                w[8 * i + 2 * j + 1] = g4q_h2f(q[j] >> 16);
            }
        }
    }
};

template <> struct g4q_tr<G4_DTYPE_BF16> {
    enum { QK = 32, BB = 64, UPB = 1, SPAN = 32 };
    struct raw { uint4 v[4]; };
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
#pragma unroll
        for (int i = 0; i < 4; i++) a.v[i] = g4q_ld128(p + 16 * i);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t q[4] = {a.v[i].x, a.v[i].y, a.v[i].z, a.v[i].w};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                w[8 * i + 2 * j] = g4q_f32(q[j] << 16);
                w[8 * i + 2 * j + 1] = g4q_f32(q[j] & 0xFFFF0000u);
            }
        }
    }
};

/* Q4_0: d (f16), qs[16]; low nibbles elements 0..15, high 16..31; (q - 8)·d */
template <> struct g4q_tr<G4_DTYPE_Q4_0> {
    enum { QK = 32, BB = 18, UPB = 1, SPAN = 32 };
    struct raw { uint32_t d; g4q_a2<4> qs; };
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        a.d = g4q_ld16(p);
        g4q_a2_load<4>(p + 2, a.qs);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.d);
        const float A = 256.f * d, B = -136.f * d;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t q = g4q_a2_get<4>(a.qs, k), lo = q & 0x0F0F0F0Fu, hi = (q >> 4) & 0x0F0F0F0Fu;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (EXACT) {
                    w[4 * k + i] = (float)((int)g4q_byte(lo, i) - 8) * d;
                    w[16 + 4 * k + i] = (float)((int)g4q_byte(hi, i) - 8) * d;
                } else {
                    w[4 * k + i] = fmaf(A, g4q_bias(lo, i), B);
                    w[16 + 4 * k + i] = fmaf(A, g4q_bias(hi, i), B);
                }
            }
        }
    }
};

/* Q4_1: d, m (f16), qs[16]; q·d + m */
template <> struct g4q_tr<G4_DTYPE_Q4_1> {
    enum { QK = 32, BB = 20, UPB = 1, SPAN = 32 };
    struct raw { uint32_t dm, qs[4]; };
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        a.dm = g4q_ld32(p);
#pragma unroll
        for (int k = 0; k < 4; k++) a.qs[k] = g4q_ld32(p + 4 + 4 * k);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.dm), m = g4q_h2f(a.dm >> 16);
        const float A = 256.f * d, B = m - 128.f * d;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t lo = a.qs[k] & 0x0F0F0F0Fu, hi = (a.qs[k] >> 4) & 0x0F0F0F0Fu;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (EXACT) {
                    w[4 * k + i] = (float)(int)g4q_byte(lo, i) * d + m;
                    w[16 + 4 * k + i] = (float)(int)g4q_byte(hi, i) * d + m;
                } else {
                    w[4 * k + i] = fmaf(A, g4q_bias(lo, i), B);
                    w[16 + 4 * k + i] = fmaf(A, g4q_bias(hi, i), B);
                }
            }
        }
    }
};

/* Q5_0: d, qh (bit j: 5th bit of element j), qs[16]; (q - 16)·d */
template <> struct g4q_tr<G4_DTYPE_Q5_0> {
    enum { QK = 32, BB = 22, UPB = 1, SPAN = 32 };
    struct raw { uint32_t d; g4q_a2<5> q; }; /* q: qh, qs[0..3] */
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        a.d = g4q_ld16(p);
        g4q_a2_load<5>(p + 2, a.q);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.d);
        const float A = 256.f * d, B = -144.f * d;
        const uint32_t qh = g4q_a2_get<5>(a.q, 0);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t q = g4q_a2_get<5>(a.q, 1 + k);
            const uint32_t lo = (q & 0x0F0F0F0Fu) | g4q_spread4((qh >> (4 * k)) & 0xF);
            const uint32_t hi = ((q >> 4) & 0x0F0F0F0Fu) | g4q_spread4((qh >> (16 + 4 * k)) & 0xF);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (EXACT) {
                    w[4 * k + i] = (float)((int)g4q_byte(lo, i) - 16) * d;
                    w[16 + 4 * k + i] = (float)((int)g4q_byte(hi, i) - 16) * d;
                } else {
                    w[4 * k + i] = fmaf(A, g4q_bias(lo, i), B);
                    w[16 + 4 * k + i] = fmaf(A, g4q_bias(hi, i), B);
                }
            }
        }
    }
};

/* Q5_1: d, m, qh, qs[16]; q·d + m */
template <> struct g4q_tr<G4_DTYPE_Q5_1> {
    enum { QK = 32, BB = 24, UPB = 1, SPAN = 32 };
    struct raw { uint32_t dm, qh, qs[4]; };
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        a.dm = g4q_ld32(p);
        a.qh = g4q_ld32(p + 4);
#pragma unroll
        for (int k = 0; k < 4; k++) a.qs[k] = g4q_ld32(p + 8 + 4 * k);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.dm), m = g4q_h2f(a.dm >> 16);
        const float A = 256.f * d, B = m - 128.f * d;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t lo = (a.qs[k] & 0x0F0F0F0Fu) | g4q_spread4((a.qh >> (4 * k)) & 0xF);
            const uint32_t hi = ((a.qs[k] >> 4) & 0x0F0F0F0Fu) | g4q_spread4((a.qh >> (16 + 4 * k)) & 0xF);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (EXACT) {
                    w[4 * k + i] = (float)(int)g4q_byte(lo, i) * d + m;
                    w[16 + 4 * k + i] = (float)(int)g4q_byte(hi, i) * d + m;
                } else {
                    w[4 * k + i] = fmaf(A, g4q_bias(lo, i), B);
                    w[16 + 4 * k + i] = fmaf(A, g4q_bias(hi, i), B);
                }
            }
        }
    }
};

/* Q8_0: d, qs[32] int8; q·d (fast: 2^23 + (q ^ 0x80) - (2^23 + 128), exact) */
template <> struct g4q_tr<G4_DTYPE_Q8_0> {
    enum { QK = 32, BB = 34, UPB = 1, SPAN = 32 };
    struct raw { uint32_t d; g4q_a2<8> qs; };
    static G4Q_HD int pos(int u, int r) { return 8 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        a.d = g4q_ld16(p);
        g4q_a2_load<8>(p + 2, a.qs);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.d);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const uint32_t q = g4q_a2_get<8>(a.qs, k);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (EXACT) w[4 * k + i] = (float)(int8_t)g4q_byte(q, i) * d;
                else w[4 * k + i] = (g4q_magic(q ^ 0x80808080u, i) - 8388736.f) * d;
            }
        }
    }
};

/* Q4_K: d, dmin, scales[12], qs[128]; unit u: qs[16u .. 16u+15] */
template <> struct g4q_tr<G4_DTYPE_Q4_K> {
    enum { QK = 256, BB = 144, UPB = 8, SPAN = 64 };
    struct raw { uint4 h, q; };
    static G4Q_HD int pos(int u, int r) { return 64 * (u >> 1) + 16 * (u & 1) + 8 * (r & 1) + 32 * (r >> 1); }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        a.h = g4q_ld128(p);
        a.q = g4q_ld128(p + 16 + 16 * u);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.h.x), dmin = g4q_h2f(a.h.x >> 16);
        uint32_t sc0, m0, sc1, m1;
        g4q_scale_min2(a.h.y, a.h.z, a.h.w, u >> 1, &sc0, &m0, &sc1, &m1);
        const float d1 = d * (float)sc0, mm1 = dmin * (float)m0;
        const float d2 = d * (float)sc1, mm2 = dmin * (float)m1;
        const float A1 = 256.f * d1, B1 = -(128.f * d1 + mm1), A2 = 256.f * d2, B2 = -(128.f * d2 + mm2);
        const uint32_t q[4] = {a.q.x, a.q.y, a.q.z, a.q.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t lo = q[k] & 0x0F0F0F0Fu, hi = (q[k] >> 4) & 0x0F0F0F0Fu;
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (EXACT) {
                    w[4 * k + i] = d1 * (float)(int)g4q_byte(lo, i) - mm1;
                    w[16 + 4 * k + i] = d2 * (float)(int)g4q_byte(hi, i) - mm2;
                } else {
                    w[4 * k + i] = fmaf(A1, g4q_bias(lo, i), B1);
                    w[16 + 4 * k + i] = fmaf(A2, g4q_bias(hi, i), B2);
                }
            }
        }
    }
};

/* Q5_K: d, dmin, scales[12], qh[32], qs[128]; unit u: qs[16u ..], qh[16(u%2) ..]
 * bit 2c (low) / 2c+1 (high) */
template <> struct g4q_tr<G4_DTYPE_Q5_K> {
    enum { QK = 256, BB = 176, UPB = 8, SPAN = 64 };
    struct raw { uint4 h, qh, q; };
    static G4Q_HD int pos(int u, int r) { return 64 * (u >> 1) + 16 * (u & 1) + 8 * (r & 1) + 32 * (r >> 1); }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        a.h = g4q_ld128(p);
        a.qh = g4q_ld128(p + 16 + 16 * (u & 1));
        a.q = g4q_ld128(p + 48 + 16 * u);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.h.x), dmin = g4q_h2f(a.h.x >> 16);
        const int j = 2 * (u >> 1);
        uint32_t sc0, m0, sc1, m1;
        g4q_scale_min2(a.h.y, a.h.z, a.h.w, u >> 1, &sc0, &m0, &sc1, &m1);
        const float d1 = d * (float)sc0, mm1 = dmin * (float)m0;
        const float d2 = d * (float)sc1, mm2 = dmin * (float)m1;
        const float A1 = 256.f * d1, B1 = -(128.f * d1 + mm1), A2 = 256.f * d2, B2 = -(128.f * d2 + mm2);
        const uint32_t q[4] = {a.q.x, a.q.y, a.q.z, a.q.w}, qh[4] = {a.qh.x, a.qh.y, a.qh.z, a.qh.w};
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t lo = (q[k] & 0x0F0F0F0Fu) | (((qh[k] >> j) & 0x01010101u) << 4);
            const uint32_t hi = ((q[k] >> 4) & 0x0F0F0F0Fu) | (((qh[k] >> (j + 1)) & 0x01010101u) << 4);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                if (EXACT) {
                    w[4 * k + i] = d1 * (float)(int)g4q_byte(lo, i) - mm1;
                    w[16 + 4 * k + i] = d2 * (float)(int)g4q_byte(hi, i) - mm2;
                } else {
                    w[4 * k + i] = fmaf(A1, g4q_bias(lo, i), B1);
                    w[16 + 4 * k + i] = fmaf(A2, g4q_bias(hi, i), B2);
                }
            }
        }
    }
};

/* Q6_K: ql[128], qh[64], scales[16] int8, d (f16, at 208); unit u: half
 * h = u/4, l = l0..l0+7 with l0 = 8(u%4): q1..q4 of g4_dtype.c's loop */
template <> struct g4q_tr<G4_DTYPE_Q6_K> {
    enum { QK = 256, BB = 210, UPB = 8, SPAN = 128 };
    struct raw { g4q_a2<2> qa, qb, qh, sc; uint32_t d; };
    static G4Q_HD int pos(int u, int r) { return 128 * (u >> 2) + 8 * (u & 3) + 32 * r; }
    static G4Q_HD void load(const uint8_t *p, int u, raw &a)
    {
        const int h = u >> 2, l0 = 8 * (u & 3);
        g4q_a2_load<2>(p + 64 * h + l0, a.qa);
        g4q_a2_load<2>(p + 64 * h + 32 + l0, a.qb);
        g4q_a2_load<2>(p + 128 + 32 * h + l0, a.qh);
        g4q_a2_load<2>(p + 192 + 8 * h, a.sc);
        a.d = g4q_ld16(p + 208);
    }
    template <bool EXACT> static G4Q_HD void decode(const raw &a, int u, float *w)
    {
        const float d = g4q_h2f(a.d);
        const int is = (u & 3) >> 1; /* l0 / 16 */
        const uint32_t s0 = g4q_a2_get<2>(a.sc, 0), s1 = g4q_a2_get<2>(a.sc, 1);
        float D[4];
#pragma unroll
        for (int r = 0; r < 4; r++) { /* sc[is + 2r]: byte is + 2r of s0:s1 */
            const uint32_t s = r < 2 ? s0 : s1;
            D[r] = d * (float)(int8_t)g4q_byte(s, (is + 2 * r) & 3);
        }
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const uint32_t qa = g4q_a2_get<2>(a.qa, k), qb = g4q_a2_get<2>(a.qb, k), qh = g4q_a2_get<2>(a.qh, k);
            const uint32_t q[4] = {(qa & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4),
                                   (qb & 0x0F0F0F0Fu) | (((qh >> 2) & 0x03030303u) << 4),
                                   ((qa >> 4) & 0x0F0F0F0Fu) | (((qh >> 4) & 0x03030303u) << 4),
                                   ((qb >> 4) & 0x0F0F0F0Fu) | (((qh >> 6) & 0x03030303u) << 4)};
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    if (EXACT) w[8 * r + 4 * k + i] = D[r] * (float)((int)g4q_byte(q[r], i) - 32);
                    else w[8 * r + 4 * k + i] = fmaf(256.f * D[r], g4q_bias(q[r], i), -160.f * D[r]);
                }
        }
    }
};

/* One unit start to finish (the host check, the generic paths). */
template <int TY, bool EXACT> G4Q_HD void g4q_unit(const uint8_t *blk, int u, float *w)
{
    typename g4q_tr<TY>::raw a;
    g4q_tr<TY>::load(blk, u, a);
    g4q_tr<TY>::template decode<EXACT>(a, u, w);
}

/* Element k of a float-type row (any alignment the type allows). */
G4Q_HD float g4q_elem(int ty, const uint8_t *row, int64_t k)
{
    if (ty == G4_DTYPE_F32) {
#ifdef __CUDA_ARCH__
        return __ldg((const float *)row + k);
#else
        float f;
        memcpy(&f, row + 4 * k, 4);
        return f;
#endif
    }
    const uint32_t h = g4q_ld16(row + 2 * k);
    return ty == G4_DTYPE_F16 ? g4q_h2f(h) : g4q_f32(h << 16);
}


/* ==========================================================================
 * The CPU's arithmetic (g4_cu_matmul's default path; g4_cuda_mm.cu)
 *
 * The CPU multiplies a row of weights of type t with an activation row by
 * first converting the row to t's activation format (g4_type_ops: Q8_0 for
 * Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for Q4_K/Q5_K/Q6_K, F16, BF16,
 * F32 for the float types) and then, per block, an exact integer dot
 * product combined with the two rows' scales in a fixed float expression
 * (core/kernels/g4_dot.c, the _ref functions). Here are the same steps as
 * __host__ __device__ code: the conversion (g4a_*), the weights of a unit
 * as 8-bit integers with their integer scales (g4k_view), and the per-block
 * float expressions (g4f_*).
 *
 * Every float operation is one IEEE operation rounded to nearest, never
 * contracted into an FMA: on the device through the _rn intrinsics (which
 * nvcc never fuses), on the host as plain operators (the host compiler
 * targets baseline x86-64, which has no FMA instruction; the CPU's C code
 * is ISO C11, -ffp-contract=off). g4x_fma is the one deliberate FMA: it
 * rounds a sum that is exact before rounding (an int split in two), so it
 * gives what (float)int gives.
 * ======================================================================== */

#include <limits.h>
#include <math.h>

G4Q_HD float g4x_mul(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
G4Q_HD float g4x_add(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
G4Q_HD float g4x_sub(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}
G4Q_HD float g4x_div(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}
G4Q_HD float g4x_fma(float a, float b, float c)
{
#ifdef __CUDA_ARCH__
    return __fmaf_rn(a, b, c);
#else
    return fmaf(a, b, c);
#endif
}
/* (float)i, rounded to nearest like C's conversion */
G4Q_HD float g4x_i2f(int i)
{
#ifdef __CUDA_ARCH__
    return __int2float_rn(i);
#else
    return (float)i;
#endif
}
G4Q_HD uint32_t g4x_bits(float f)
{
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
#endif
}
/* (float)i for |i| < 2^22, exactly: 1.5·2^23 + i has ulp 1 (two integer and
 * float operations instead of one quarter-rate conversion) */
G4Q_HD float g4x_i2f_small(int i) { return g4x_sub(g4q_f32(0x4B400000u + (uint32_t)i), 12582912.f); }

/* g4_fp32_to_fp16 (g4_dtype.h) operation for operation: round to nearest
 * even, overflow to inf, NaN to sign | 0x7E00 */
G4Q_HD uint32_t g4x_f2h(float f)
{
    float base = g4x_mul(g4x_mul(fabsf(f), 0x1.0p+112f), 0x1.0p-110f);
    const uint32_t w = g4x_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = g4x_add(g4q_f32((bias >> 1) + 0x07800000u), base);
    const uint32_t bits = g4x_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign);
}

/* g4_fp32_to_bf16: round to nearest even, NaN quiet */
G4Q_HD uint32_t g4x_f2bf(float f)
{
    const uint32_t u = g4x_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return ((u >> 16) | 64) & 0xFFFFu;
    return ((u + (0x7fffu + ((u >> 16) & 1))) >> 16) & 0xFFFFu;
}

/* The NaN an x86 SSE operation on a and b returns when its result is NaN:
 * the first NaN operand, quieted, or the "default NaN" 0xFFC00000 for an
 * invalid operation (inf·0, inf - inf). The GPU returns 0x7FFFFFFF
 * instead; the activation conversion (whose bits the CPU then reads as
 * integers: Q8_K's nearest(), Q8_1's s) follows x86. */
G4Q_HD float g4x_nan_x86(float a, float b)
{
    if (a != a) return g4q_f32(g4x_bits(a) | 0x00400000u);
    if (b != b) return g4q_f32(g4x_bits(b) | 0x00400000u);
    return g4q_f32(0xFFC00000u);
}
G4Q_HD float g4x_mul_x86(float a, float b)
{
    float r = g4x_mul(a, b);
#ifdef __CUDA_ARCH__
    if (r != r) r = g4x_nan_x86(a, b);
#endif
    return r;
}
G4Q_HD float g4x_add_x86(float a, float b)
{
    float r = g4x_add(a, b);
#ifdef __CUDA_ARCH__
    if (r != r) r = g4x_nan_x86(a, b);
#endif
    return r;
}

/* (int)v of x86's cvttss2si for a v that is already an integer or not
 * finite: INT_MIN outside int's range and for NaN (the GPU's conversion
 * would saturate instead) */
G4Q_HD int g4x_cvt_x86(float v)
{
    if (!(v >= -2147483648.f && v < 2147483648.f)) return INT_MIN;
    return (int)v;
}

G4Q_HD float g4x_rint(float v)
{
#ifdef __CUDA_ARCH__
    return rintf(v);
#else
    return nearbyintf(v); /* round to nearest even: the default mode */
#endif
}

/* ---- activation conversion (g4_dot.c, g4_quant.c) -------------------------
 * Q8_0 / Q8_1 (g4_quant_q8_0_x86_ref, g4_quant_q8_1_x86_ref): per 32
 * values amax = max |x| (NaN ignored: fmaxf), d = amax/127, id = 127/amax
 * (0 when amax is 0), q = (int8)(int)nearbyint(x·id), d stored as f16;
 * Q8_1 also s = f16(d·(float)Σq). */
G4Q_HD void g4a_q8_scale(float amax, float *d, float *id)
{
    *d = g4x_div(amax, 127.f);
    *id = amax != 0.0f ? g4x_div(127.f, amax) : 0.0f;
}
G4Q_HD int g4a_q8_elem(float x, float id) { return (int)(int8_t)g4x_cvt_x86(g4x_rint(g4x_mul(x, id))); }
G4Q_HD uint32_t g4a_q8_1_s(float d, int sum) { return g4x_f2h(g4x_mul_x86(d, g4x_i2f(sum))); }

/* Q8_K (quantize_row_q8_K_ref): per 256 values the first x of largest |x|
 * (strictly greater: NaN never wins) is `max`; all zero (amax 0): d = 0,
 * q = 0; else iscale = -127/max, q = min(127, nearest(iscale·x)) with
 * nearest() the 1.5·2^23 trick, bsums[g] = Σ q over 16, d = 1/iscale (f32). */
struct g4a_kmax {
    float amax, max;
    int idx;
};
G4Q_HD g4a_kmax g4a_kmax_init(void)
{
    g4a_kmax m;
    m.amax = 0.f, m.max = 0.f, m.idx = INT_MAX;
    return m;
}
/* element idx (taken in increasing order within one partial) */
G4Q_HD void g4a_kmax_step(g4a_kmax &m, float x, int idx)
{
    if (fabsf(x) > m.amax) m.amax = fabsf(x), m.max = x, m.idx = idx;
}
/* two partials over disjoint elements: the larger |x|, the first on a tie;
 * the same result as one pass in order over the union */
G4Q_HD g4a_kmax g4a_kmax_join(const g4a_kmax &a, const g4a_kmax &b)
{
    if (b.amax > a.amax || (b.amax == a.amax && b.idx < a.idx)) return b;
    return a;
}
G4Q_HD float g4a_qk_iscale(float max) { return g4x_div(-127.f, max); }
G4Q_HD int g4a_qk_elem(float x, float iscale)
{
    const float val = g4x_add_x86(g4x_mul_x86(iscale, x), 12582912.f);
    const int v = (int)(g4x_bits(val) & 0x007fffffu) - 0x00400000;
    return (int)(int8_t)(v < 127 ? v : 127);
}
G4Q_HD float g4a_qk_d(float iscale) { return g4x_div(1.f, iscale); }

/* ---- weights as integers --------------------------------------------------
 * g4k_view<TY>: unit u of a block (g4q_tr's units: 4 runs of 8 weights,
 * run r at element pos(u, r) of the block) as 8-bit integers, q[2r + h]
 * holding elements pos(u, r) + 4h .. + 3 (byte i: element + i), with the
 * integer scale of each run and the block's float scales:
 *   Q4_0 q - 8, Q5_0 q - 16, Q8_0 q (int8), Q4_1 / Q5_1 q (0..31): sc 1,
 *     d = d, dm = m (the _1 types);
 *   Q4_K / Q5_K q (0..31), sc of runs 0, 1 = sub-block 2c's 6-bit scale,
 *     runs 2, 3 = sub-block 2c+1's; m[0], m[1] their 6-bit mins; d, dm = dmin;
 *   Q6_K q - 32 (-32..31), sc[r] = the int8 scale of run r's 16-element
 *     sub-block; d.
 * The block's integer dot with 8-bit activations a is Σ_r sc[r]·Σ q·a over
 * its units: what the _ref functions sum, grouped differently (exact). */
struct g4k_unit {
    uint32_t q[8];
    int sc[4];
    int m[2];
    float d, dm;
};

/* per-byte a - b, wrapping (__vsub4) */
G4Q_HD uint32_t g4k_vsub4(uint32_t a, uint32_t b)
{
#ifdef __CUDA_ARCH__
    return __vsub4(a, b);
#else
    uint32_t r = 0;
    for (int i = 0; i < 4; i++) r |= (((a >> (8 * i)) - (b >> (8 * i))) & 0xFFu) << (8 * i);
    return r;
#endif
}

/* c + Σ of the four signed byte products of a and b (__dp4a) */
G4Q_HD int g4k_dp4a(uint32_t a, uint32_t b, int c)
{
#ifdef __CUDA_ARCH__
    return __dp4a((int)a, (int)b, c);
#else
    for (int i = 0; i < 4; i++) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
#endif
}

template <int TY> G4Q_HD void g4k_view(const typename g4q_tr<TY>::raw &a, int u, g4k_unit &v);

template <> G4Q_HD void g4k_view<G4_DTYPE_Q4_0>(const g4q_tr<G4_DTYPE_Q4_0>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.d), v.dm = 0.f;
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const uint32_t q = g4q_a2_get<4>(a.qs, k);
        v.q[k] = g4k_vsub4(q & 0x0F0F0F0Fu, 0x08080808u);
        v.q[4 + k] = g4k_vsub4((q >> 4) & 0x0F0F0F0Fu, 0x08080808u);
    }
#pragma unroll
    for (int r = 0; r < 4; r++) v.sc[r] = 1;
    v.m[0] = v.m[1] = 0;
}

template <> G4Q_HD void g4k_view<G4_DTYPE_Q4_1>(const g4q_tr<G4_DTYPE_Q4_1>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.dm), v.dm = g4q_h2f(a.dm >> 16);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v.q[k] = a.qs[k] & 0x0F0F0F0Fu;
        v.q[4 + k] = (a.qs[k] >> 4) & 0x0F0F0F0Fu;
    }
#pragma unroll
    for (int r = 0; r < 4; r++) v.sc[r] = 1;
    v.m[0] = v.m[1] = 0;
}

template <> G4Q_HD void g4k_view<G4_DTYPE_Q5_0>(const g4q_tr<G4_DTYPE_Q5_0>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.d), v.dm = 0.f;
    const uint32_t qh = g4q_a2_get<5>(a.q, 0);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        const uint32_t q = g4q_a2_get<5>(a.q, 1 + k);
        v.q[k] = g4k_vsub4((q & 0x0F0F0F0Fu) | g4q_spread4((qh >> (4 * k)) & 0xF), 0x10101010u);
        v.q[4 + k] = g4k_vsub4(((q >> 4) & 0x0F0F0F0Fu) | g4q_spread4((qh >> (16 + 4 * k)) & 0xF), 0x10101010u);
    }
#pragma unroll
    for (int r = 0; r < 4; r++) v.sc[r] = 1;
    v.m[0] = v.m[1] = 0;
}

template <> G4Q_HD void g4k_view<G4_DTYPE_Q5_1>(const g4q_tr<G4_DTYPE_Q5_1>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.dm), v.dm = g4q_h2f(a.dm >> 16);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v.q[k] = (a.qs[k] & 0x0F0F0F0Fu) | g4q_spread4((a.qh >> (4 * k)) & 0xF);
        v.q[4 + k] = ((a.qs[k] >> 4) & 0x0F0F0F0Fu) | g4q_spread4((a.qh >> (16 + 4 * k)) & 0xF);
    }
#pragma unroll
    for (int r = 0; r < 4; r++) v.sc[r] = 1;
    v.m[0] = v.m[1] = 0;
}

template <> G4Q_HD void g4k_view<G4_DTYPE_Q8_0>(const g4q_tr<G4_DTYPE_Q8_0>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.d), v.dm = 0.f;
#pragma unroll
    for (int k = 0; k < 8; k++) v.q[k] = g4q_a2_get<8>(a.qs, k);
#pragma unroll
    for (int r = 0; r < 4; r++) v.sc[r] = 1;
    v.m[0] = v.m[1] = 0;
}

template <> G4Q_HD void g4k_view<G4_DTYPE_Q4_K>(const g4q_tr<G4_DTYPE_Q4_K>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.h.x), v.dm = g4q_h2f(a.h.x >> 16);
    uint32_t sc0, m0, sc1, m1;
    g4q_scale_min2(a.h.y, a.h.z, a.h.w, u >> 1, &sc0, &m0, &sc1, &m1);
    v.sc[0] = v.sc[1] = (int)sc0, v.sc[2] = v.sc[3] = (int)sc1;
    v.m[0] = (int)m0, v.m[1] = (int)m1;
    const uint32_t q[4] = {a.q.x, a.q.y, a.q.z, a.q.w};
    /* runs 0, 1: elements 64c + 16(u&1) + 0..15 = low nibbles of q[0..3];
     * runs 2, 3: the same + 32 = the high nibbles */
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v.q[k] = q[k] & 0x0F0F0F0Fu;
        v.q[4 + k] = (q[k] >> 4) & 0x0F0F0F0Fu;
    }
}

template <> G4Q_HD void g4k_view<G4_DTYPE_Q5_K>(const g4q_tr<G4_DTYPE_Q5_K>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.h.x), v.dm = g4q_h2f(a.h.x >> 16);
    const int j = 2 * (u >> 1);
    uint32_t sc0, m0, sc1, m1;
    g4q_scale_min2(a.h.y, a.h.z, a.h.w, u >> 1, &sc0, &m0, &sc1, &m1);
    v.sc[0] = v.sc[1] = (int)sc0, v.sc[2] = v.sc[3] = (int)sc1;
    v.m[0] = (int)m0, v.m[1] = (int)m1;
    const uint32_t q[4] = {a.q.x, a.q.y, a.q.z, a.q.w}, qh[4] = {a.qh.x, a.qh.y, a.qh.z, a.qh.w};
#pragma unroll
    for (int k = 0; k < 4; k++) {
        v.q[k] = (q[k] & 0x0F0F0F0Fu) | (((qh[k] >> j) & 0x01010101u) << 4);
        v.q[4 + k] = ((q[k] >> 4) & 0x0F0F0F0Fu) | (((qh[k] >> (j + 1)) & 0x01010101u) << 4);
    }
}

template <> G4Q_HD void g4k_view<G4_DTYPE_Q6_K>(const g4q_tr<G4_DTYPE_Q6_K>::raw &a, int u, g4k_unit &v)
{
    v.d = g4q_h2f(a.d), v.dm = 0.f;
    const int is = (u & 3) >> 1;
    const uint32_t s0 = g4q_a2_get<2>(a.sc, 0), s1 = g4q_a2_get<2>(a.sc, 1);
#pragma unroll
    for (int r = 0; r < 4; r++) v.sc[r] = (int)(int8_t)g4q_byte(r < 2 ? s0 : s1, (is + 2 * r) & 3);
    v.m[0] = v.m[1] = 0;
#pragma unroll
    for (int k = 0; k < 2; k++) {
        const uint32_t qa = g4q_a2_get<2>(a.qa, k), qb = g4q_a2_get<2>(a.qb, k), qh = g4q_a2_get<2>(a.qh, k);
        v.q[0 + k] = g4k_vsub4((qa & 0x0F0F0F0Fu) | ((qh & 0x03030303u) << 4), 0x20202020u);
        v.q[2 + k] = g4k_vsub4((qb & 0x0F0F0F0Fu) | (((qh >> 2) & 0x03030303u) << 4), 0x20202020u);
        v.q[4 + k] = g4k_vsub4(((qa >> 4) & 0x0F0F0F0Fu) | (((qh >> 4) & 0x03030303u) << 4), 0x20202020u);
        v.q[6 + k] = g4k_vsub4(((qb >> 4) & 0x0F0F0F0Fu) | (((qh >> 6) & 0x03030303u) << 4), 0x20202020u);
    }
}

/* Σ_r sc[r]·Σ q·a of one unit against its activation bytes a[2r + h]
 * (elements pos(u, r) + 4h ..), exact */
G4Q_HD int g4k_unit_dot(const g4k_unit &v, const uint32_t a[8])
{
    int s = 0;
#pragma unroll
    for (int r = 0; r < 4; r++) s += v.sc[r] * g4k_dp4a(v.q[2 * r + 1], a[2 * r + 1], g4k_dp4a(v.q[2 * r], a[2 * r], 0));
    return s;
}

/* ---- the per-block float expressions of the _ref dots --------------------
 * sumi, mins: the block's exact integer sums; (float) conversions round to
 * nearest as C's do. */
/* Q4_0 Q5_0 Q8_0: sumi * (dw * da) */
G4Q_HD float g4f_q8_0(float sumi_f, float dw, float da) { return g4x_mul(sumi_f, g4x_mul(dw, da)); }
/* Q4_1 Q5_1: (dw * da) * sumi + mw * sa */
G4Q_HD float g4f_q8_1(float sumi_f, float dw, float da, float mw, float sa)
{
    return g4x_add(g4x_mul(g4x_mul(dw, da), sumi_f), g4x_mul(mw, sa));
}
/* Q4_K Q5_K: d * ad * sumi - dmin * ad * mins */
G4Q_HD float g4f_kq(float sumi_f, float mins_f, float d, float dmin, float ad)
{
    return g4x_sub(g4x_mul(g4x_mul(d, ad), sumi_f), g4x_mul(g4x_mul(dmin, ad), mins_f));
}
/* Q6_K: d * ad * sumi */
G4Q_HD float g4f_q6_k(float sumi_f, float d, float ad) { return g4x_mul(g4x_mul(d, ad), sumi_f); }

/* which activation format the weight type pairs with (g4_type_ops) */
G4Q_HD int g4a_format(int ty)
{
    switch (ty) {
    case G4_DTYPE_Q4_0:
    case G4_DTYPE_Q5_0:
    case G4_DTYPE_Q8_0: return G4_DTYPE_Q8_0;
    case G4_DTYPE_Q4_1:
    case G4_DTYPE_Q5_1: return G4_DTYPE_Q8_1;
    case G4_DTYPE_Q4_K:
    case G4_DTYPE_Q5_K:
    case G4_DTYPE_Q6_K: return G4_DTYPE_Q8_K;
    default: return ty; /* F32, F16, BF16 */
    }
}

#endif
