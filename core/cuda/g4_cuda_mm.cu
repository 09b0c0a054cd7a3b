/* g4_cuda_mm — g4_cu_matmul (g4_cuda.h): Y = X · Wᵀ with quantized weights.
 *
 * Two paths. The default computes what the CPU computes (g4_matmul_ref):
 *
 *   1. k_act_*: the T activation rows are converted, in the workspace, to
 *      the weight type's activation format, bit for bit as the CPU's
 *      from_float (g4_dot.c, g4_quant.c): Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for
 *      Q4_1/Q5_1 (d = amax/127, q = nearbyint(x·127/amax), d and s = d·Σq
 *      as f16), Q8_K for Q4_K/Q5_K/Q6_K (iscale = -127/max with max the
 *      first x of largest |x|, the 1.5·2^23 rounding, bsums, d = 1/iscale
 *      in f32), F16 / BF16 (round to nearest even) for F16 / BF16 weights,
 *      F32 as is.
 *   2. per weight block, the exact integer dot product with the activation
 *      block, combined with the scales in the float expression of the
 *      CPU's _ref dot, operand for operand, each operation rounded once
 *      (g4_cuda_quant.cuh: g4f_*):
 *        Q4_0 Q5_0 Q8_0   sumi * (dw * da)
 *        Q4_1 Q5_1        (dw * da) * sumi + mw * sa
 *        Q4_K Q5_K        d * da * sumi - dmin * da * mins
 *        Q6_K             d * da * sumi
 *      with sumi, mins the exact sums converted to f32 (round to nearest);
 *      the terms are added in f32 from 0. Float weights: Σ (double)(w·a)
 *      with w·a an f32 product, rounded to f32 at the end.
 *
 *   T <= 8 (decode): k_mvq, one warp per weight row reading the blocks
 *   with the f32 path's 16-byte unit loads; dp4a for the integer sums (the
 *   8 units of a K-quant block add theirs by shuffles); the blocks' terms
 *   go through shared memory and lane t adds row t's terms one after
 *   another in block order: the CPU's order, so the result is
 *   g4_matmul_ref's to the bit. Float weights: k_mvf, each lane sums its
 *   share in double, the warp adds the lanes' doubles, one rounding to f32
 *   (the CPU's f32 unless its sequential double sum and this one, a few
 *   double ulps apart, straddle an f32 rounding boundary).
 *   T > 8 (prefill): k_mmq, int8 tensor cores (mma.m16n8k32 s8): a 64 × 128
 *   tile of (weight rows × activation rows) per 256 threads, the weights
 *   decoded to int8 in shared memory once per tile and step; every
 *   (row, column) adds its blocks' terms in block order from 0: again
 *   g4_matmul_ref's bits. Float weights: k_mmf, double sums on the CUDA
 *   cores, k in order: also the CPU's bits.
 *   (g4_matmul, the CPU's SIMD path, is g4_matmul_ref to the bit for Q4_K,
 *   Q6_K, Q5_0 and Q5_1; its AVX2 / AVX-512 dots for the other types round
 *   differently, by an ulp or so.)
 *   Speed (estimates, not measured): T = 1 streams the weights as the f32
 *   path does (int8 activations: a quarter of its L1 traffic); at T = 8 the
 *   per-row work (8 activation rows' loads, shuffles, terms) makes it 1.5-2x
 *   slower than the weights' bandwidth. k_mmq is bound by shared memory
 *   (fragment loads: the K-quants multiply two planes) at about 3000 cycles
 *   per 64 × 128 × 256 step: ~350 int8 TOPS on an H100/H200 at best.
 *
 * G4_CUDA_MM=fast (read once) takes the earlier kernels instead: f32
 * activations, each weight dequantized to f32 and summed in f32 (T <= 8), or
 * dequantized to f16 and multiplied on f16 tensor cores (T > 8). Faster,
 * close to the exact product, but not the CPU's numbers: on small random
 * models the greedy ids then differ from the CPU path's. In detail:
 *
 * T <= 8 (decode, speculative verify): matrix × vector, k_mv<type, T>.
 *   One warp per weight row, 4 rows (warps) per 128-thread block. Lane l
 *   takes the row's units l, l+32, ... (a unit: 32 weights, g4_cuda_quant.cuh;
 *   for Q4_K the lanes 8b..8b+7 of a pass read block b's 16-byte header and
 *   its 128 quant bytes as eight 16-byte loads, so a warp streams four whole
 *   blocks, 576 contiguous bytes, per pass). The next unit's loads are issued
 *   before the current one is decoded. Each weight becomes an f32 once
 *   (one byte permute + one FMA) and meets all T activation rows, read as
 *   float4 through the read-only cache (K up to ~22k floats × 8 rows does
 *   not fit shared memory; the rows of a block's four warps hit the same
 *   lines in L1). f32 sums, xor-shuffle reduction, lane t stores row t.
 *
 * T > 8 (prefill): tensor cores (nvcuda::wmma 16×16×16, f16 in, f32 sums).
 *   k_x2h first writes X as f16 into the workspace, each row multiplied by
 *   2^s[t] chosen so its max |x| lands in [2^13, 2^14) (huge rows stay
 *   finite, small ones keep their bits); the output is multiplied by
 *   2^-s[t] when stored. k_mm<type>: a 256-thread block computes a tile of
 *   128 activation rows × 128 weight rows; K in steps of BK = 64 (128 for
 *   Q6_K, whose units span 128 columns). Per step every thread decodes
 *   BK/64 units of the weight tile (f32 -> f16) into shared memory and the
 *   X tile comes in by cp.async (16 bytes, zero-filled outside T and K);
 *   two shared-memory stages: while the warps multiply step s, the loads of
 *   step s+1 (weights into registers, X by cp.async) are in flight and the
 *   weights are decoded after the MMAs. 8 warps as 4 (activation rows: 32
 *   each) × 2 (weight rows: 64 each): 2 × 4 accumulator fragments per warp.
 *   Stores go through a per-warp 16×16 staging tile, bounds-checked.
 *   Shared memory 72 KiB (BK = 64: two blocks per SM, registers capped at
 *   128) or 136 KiB (Q6_K: one). Every weight passes through f16 here: F32
 *   or BF16 weights beyond ±65504 would become inf (none in practice).
 *
 * Float weights (F32/F16/BF16) whose rows are not 16-byte aligned or whose
 * K is not a multiple of 32 take k_mv_elem (scalar loads; T > 8 in chunks of
 * 8). X rows that are not 16-byte aligned for the matrix × vector kernels
 * are first copied (packed) into the workspace.
 *
 * Everything is enqueued on cu->stream; nothing here waits, except what
 * g4_cu_ws does when the workspace grows. The host hooks at the end
 * (g4_cu_quantize_act_host, g4_cu_block_dots_host, g4_cu_matmul_host) run
 * the default path's kernels on the host, thread by thread, for the tests. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "g4_dtype.h"
#include "g4_err.h"
}

#include <mma.h>

#include "g4_cuda_internal.cuh"
#include "g4_cuda_quant.cuh"

extern "C" int g4_cu_dequant_row_host(g4_dtype_t t, const void *row, float *out, int64_t K);

/* ====================================================================== */
/* shared pieces (host and device, so the host can run them as a check)   */
/* ====================================================================== */

G4Q_HD float4 g4m_ldx4(const float *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const float4 *)p);
#else
    float4 v;
    memcpy(&v, p, 16);
    return v;
#endif
}

G4Q_HD uint32_t g4m_pack2(float a, float b)
{
    const __half2 h = __floats2half2_rn(a, b);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}

/* Lane `lane` of the warp that owns weight row wr (nunits units): its share
 * of the T dot products, in acc[0..T-1]. */
template <int TY, int T>
G4Q_HD void g4m_mv_lane(const uint8_t *wr, int nunits, const float *X, int64_t ldx, int lane, float *acc)
{
    typedef g4q_tr<TY> Tr;
    enum { NP = T == 1 ? 4 : (T <= 3 ? 2 : 1) }; /* independent partial sums per row */
    float part[NP][T];
#pragma unroll
    for (int p = 0; p < NP; p++)
#pragma unroll
        for (int t = 0; t < T; t++) part[p][t] = 0.f;
    int u = lane;
    if (u < nunits) {
        typename Tr::raw cur, nxt;
        Tr::load(wr + (size_t)(u / Tr::UPB) * Tr::BB, u % Tr::UPB, cur);
        for (;;) {
            const int un = u + 32;
            const bool more = un < nunits;
            if (more) Tr::load(wr + (size_t)(un / Tr::UPB) * Tr::BB, un % Tr::UPB, nxt);
            const int uu = u % Tr::UPB;
            float w[32];
            Tr::template decode<false>(cur, uu, w);
            const float *xb = X + (size_t)(u / Tr::UPB) * Tr::QK;
#pragma unroll
            for (int r = 0; r < 4; r++) {
                const int p = Tr::pos(uu, r);
#pragma unroll
                for (int t = 0; t < T; t++) {
                    const float4 x0 = g4m_ldx4(xb + t * ldx + p), x1 = g4m_ldx4(xb + t * ldx + p + 4);
                    float s = part[r % NP][t];
                    s = fmaf(w[8 * r + 0], x0.x, s);
                    s = fmaf(w[8 * r + 1], x0.y, s);
                    s = fmaf(w[8 * r + 2], x0.z, s);
                    s = fmaf(w[8 * r + 3], x0.w, s);
                    s = fmaf(w[8 * r + 4], x1.x, s);
                    s = fmaf(w[8 * r + 5], x1.y, s);
                    s = fmaf(w[8 * r + 6], x1.z, s);
                    s = fmaf(w[8 * r + 7], x1.w, s);
                    part[r % NP][t] = s;
                }
            }
            if (!more) break;
            cur = nxt;
            u = un;
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float s = part[0][t];
#pragma unroll
        for (int p = 1; p < NP; p++) s += part[p][t];
        acc[t] = s;
    }
}

/* The tensor-core tile's geometry for weight type TY. */
#define G4M_BM 128 /* weight rows per block     */
#define G4M_BN 128 /* activation rows per block */
#define G4M_THREADS 256

template <int TY> struct g4m_cfg {
    enum {
        BK = g4q_tr<TY>::SPAN > 64 ? g4q_tr<TY>::SPAN : 64, /* K per step                    */
        UPS = BK / 32,                                        /* units per weight row per step */
        UPT = G4M_BM * UPS / G4M_THREADS,                     /* units per thread per step     */
        LDS = BK + 8,                                         /* smem row pitch (halves)       */
        STAGE = (G4M_BN + G4M_BM) * LDS,                      /* halves per stage              */
        SMEM = 2 * STAGE * 2,                                 /* bytes                         */
        /* blocks per SM the registers are sized for: two where two fit in
         * shared memory (BK = 64: 72 KiB each) and the raw unit is small */
        MINB = SMEM <= 100 * 1024 && TY != G4_DTYPE_F32 ? 2 : 1,
    };
};

/* Thread `tid`'s m-th unit of the weight tile: row (in the tile) and unit
 * index within the step. */
template <int TY> G4Q_HD void g4m_tile_slot(int tid, int m, int *row, int *ju)
{
    const int j = tid + G4M_THREADS * m;
    *row = j / g4m_cfg<TY>::UPS;
    *ju = j % g4m_cfg<TY>::UPS;
}

/* Writes one unit of the weight tile as f16 into the tile row `dst` (step
 * step): unit g of the row (g4q_tr order), zeros when !valid. */
template <int TY>
G4Q_HD void g4m_tile_store(const typename g4q_tr<TY>::raw &a, int g, int step, bool valid, __half *dst)
{
    typedef g4q_tr<TY> Tr;
    const int uu = g % Tr::UPB;
    const int kb = (g / Tr::UPB) * Tr::QK - step * g4m_cfg<TY>::BK; /* block start in the step */
    float w[32];
    if (valid) Tr::template decode<false>(a, uu, w);
    else
        for (int i = 0; i < 32; i++) w[i] = 0.f;
#pragma unroll
    for (int r = 0; r < 4; r++) {
        uint4 v;
        v.x = g4m_pack2(w[8 * r + 0], w[8 * r + 1]);
        v.y = g4m_pack2(w[8 * r + 2], w[8 * r + 3]);
        v.z = g4m_pack2(w[8 * r + 4], w[8 * r + 5]);
        v.w = g4m_pack2(w[8 * r + 6], w[8 * r + 7]);
#ifdef __CUDA_ARCH__
        *(uint4 *)(dst + kb + Tr::pos(uu, r)) = v;
#else
        memcpy(dst + kb + Tr::pos(uu, r), &v, 16);
#endif
    }
}

/* The row scale of k_x2h: x·2^s has its max |x| in [2^13, 2^14); 0 for a
 * row of zeros or one with inf (NaN is ignored by the max). */
G4Q_HD int g4m_row_shift(float amax)
{
    if (!(amax > 0.f) || !(amax <= 3.402823466e38f)) return 0;
    int e;
    frexpf(amax, &e);
    return 14 - e;
}

/* ====================================================================== */
/* host: the check                                                        */
/* ====================================================================== */

template <int TY> static int s_deq_host(const uint8_t *p, float *out, int64_t K)
{
    typedef g4q_tr<TY> Tr;
    const bool flt = TY == G4_DTYPE_F32 || TY == G4_DTYPE_F16 || TY == G4_DTYPE_BF16;
    if (K < 0 || (!flt && K % Tr::QK)) return G4_ERR_RANGE;
    const int64_t nb = K / Tr::QK;
    for (int64_t b = 0; b < nb; b++)
        for (int u = 0; u < Tr::UPB; u++) {
            float w[32];
            g4q_unit<TY, true>(p + (size_t)b * Tr::BB, u, w);
            for (int r = 0; r < 4; r++)
                for (int i = 0; i < 8; i++) out[b * Tr::QK + Tr::pos(u, r) + i] = w[8 * r + i];
        }
    for (int64_t k = nb * Tr::QK; k < K; k++) out[k] = g4q_elem(TY, p, k);
    return G4_OK;
}

extern "C" int g4_cu_dequant_row_host(g4_dtype_t t, const void *row, float *out, int64_t K)
{
    const uint8_t *p = (const uint8_t *)row;
    switch (t) {
    case G4_DTYPE_F32: return s_deq_host<G4_DTYPE_F32>(p, out, K);
    case G4_DTYPE_F16: return s_deq_host<G4_DTYPE_F16>(p, out, K);
    case G4_DTYPE_BF16: return s_deq_host<G4_DTYPE_BF16>(p, out, K);
    case G4_DTYPE_Q4_0: return s_deq_host<G4_DTYPE_Q4_0>(p, out, K);
    case G4_DTYPE_Q4_1: return s_deq_host<G4_DTYPE_Q4_1>(p, out, K);
    case G4_DTYPE_Q5_0: return s_deq_host<G4_DTYPE_Q5_0>(p, out, K);
    case G4_DTYPE_Q5_1: return s_deq_host<G4_DTYPE_Q5_1>(p, out, K);
    case G4_DTYPE_Q8_0: return s_deq_host<G4_DTYPE_Q8_0>(p, out, K);
    case G4_DTYPE_Q4_K: return s_deq_host<G4_DTYPE_Q4_K>(p, out, K);
    case G4_DTYPE_Q5_K: return s_deq_host<G4_DTYPE_Q5_K>(p, out, K);
    case G4_DTYPE_Q6_K: return s_deq_host<G4_DTYPE_Q6_K>(p, out, K);
    default: return G4_ERR_RANGE;
    }
}

/* ====================================================================== */
/* kernels                                                                */
/* ====================================================================== */

#define G4M_MV_WARPS 4

template <int TY, int T>
__global__ void __launch_bounds__(G4M_MV_WARPS * 32)
    k_mv(const uint8_t *__restrict__ W, size_t row_bytes, int64_t N, int nunits, const float *__restrict__ X,
         int64_t ldx, float *__restrict__ Y, int64_t ldy)
{
    const int64_t row = (int64_t)blockIdx.x * G4M_MV_WARPS + (threadIdx.x >> 5);
    if (row >= N) return; /* the whole warp */
    const int lane = threadIdx.x & 31;
    float acc[T];
    g4m_mv_lane<TY, T>(W + (size_t)row * row_bytes, nunits, X, ldx, lane, acc);
#pragma unroll
    for (int t = 0; t < T; t++) {
        float v = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
        acc[t] = v;
    }
#pragma unroll
    for (int t = 0; t < T; t++)
        if (lane == t) Y[t * ldy + row] = acc[t];
}

/* Float weights at any alignment, any K: one warp per row, scalar loads. */
template <int T>
__global__ void __launch_bounds__(G4M_MV_WARPS * 32)
    k_mv_elem(int ty, const uint8_t *__restrict__ W, size_t row_bytes, int64_t K, int64_t N,
              const float *__restrict__ X, int64_t ldx, float *__restrict__ Y, int64_t ldy)
{
    const int64_t row = (int64_t)blockIdx.x * G4M_MV_WARPS + (threadIdx.x >> 5);
    if (row >= N) return;
    const int lane = threadIdx.x & 31;
    const uint8_t *wr = W + (size_t)row * row_bytes;
    float acc[T];
#pragma unroll
    for (int t = 0; t < T; t++) acc[t] = 0.f;
    for (int64_t k = lane; k < K; k += 32) {
        const float w = g4q_elem(ty, wr, k);
#pragma unroll
        for (int t = 0; t < T; t++) acc[t] = fmaf(w, __ldg(X + t * ldx + k), acc[t]);
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        float v = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
        acc[t] = v;
    }
#pragma unroll
    for (int t = 0; t < T; t++)
        if (lane == t) Y[t * ldy + row] = acc[t];
}

/* X (T rows of K, stride ldx) -> Xh [T][K] f16 scaled by 2^sh[t]; one block per row. */
__global__ void __launch_bounds__(256) k_x2h(const float *__restrict__ X, int64_t ldx, int K, __half *__restrict__ Xh,
                                             int *__restrict__ sh)
{
    __shared__ float red[32];
    __shared__ int s_sh;
    const float *x = X + (int64_t)blockIdx.x * ldx;
    __half *y = Xh + (int64_t)blockIdx.x * K;
    float m = 0.f;
    for (int k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, fabsf(x[k]));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        m = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0.f;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xFFFFFFFFu, m, o));
        if (threadIdx.x == 0) {
            s_sh = g4m_row_shift(m);
            sh[blockIdx.x] = s_sh;
        }
    }
    __syncthreads();
    const int s = s_sh;
    for (int k = threadIdx.x; k < K; k += blockDim.x) y[k] = __float2half_rn(ldexpf(x[k], s));
}

__device__ __forceinline__ void g4m_cp_async16(void *smem, const void *gmem, int src_bytes)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void g4m_cp_async_commit(void) { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void g4m_cp_async_wait_all(void) { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

/* Y[t, n] = 2^-sh[t] · Σ_k Xh[t, k] · W[n, k] for the block's 128 × 128 tile.
 * blockIdx.x: activation tile (fast: the blocks sharing a weight tile run
 * together and find it in L2), blockIdx.y: weight tile. */
template <int TY>
__global__ void __launch_bounds__(G4M_THREADS, g4m_cfg<TY>::MINB)
    k_mm(const uint8_t *__restrict__ W, size_t row_bytes, int64_t N, int K, const __half *__restrict__ Xh,
         const int *__restrict__ sh, int64_t T, float *__restrict__ Y, int64_t ldy)
{
    using namespace nvcuda;
    typedef g4q_tr<TY> Tr;
    typedef g4m_cfg<TY> C;
    extern __shared__ __align__(128) unsigned char g4m_smem[];
    __half *const sm = (__half *)g4m_smem;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wt = warp >> 1, wn = warp & 1;
    const int64_t t0 = (int64_t)blockIdx.x * G4M_BN, n0 = (int64_t)blockIdx.y * G4M_BM;
    const int nunits = K / 32, nsteps = (K + C::BK - 1) / C::BK;

    /* this thread's units of the weight tile */
    const uint8_t *wrow[C::UPT];
    int trow[C::UPT], tju[C::UPT];
    bool rok[C::UPT];
#pragma unroll
    for (int m = 0; m < C::UPT; m++) {
        g4m_tile_slot<TY>(tid, m, &trow[m], &tju[m]);
        rok[m] = n0 + trow[m] < N;
        wrow[m] = W + (size_t)(rok[m] ? n0 + trow[m] : 0) * row_bytes;
    }
    typename Tr::raw raw[C::UPT];

    auto load_w = [&](int step) {
#pragma unroll
        for (int m = 0; m < C::UPT; m++) {
            const int g = step * C::UPS + tju[m];
            if (rok[m] && g < nunits) Tr::load(wrow[m] + (size_t)(g / Tr::UPB) * Tr::BB, g % Tr::UPB, raw[m]);
        }
    };
    auto store_w = [&](int step, int buf) {
        __half *B = sm + buf * C::STAGE + G4M_BN * C::LDS;
#pragma unroll
        for (int m = 0; m < C::UPT; m++) {
            const int g = step * C::UPS + tju[m];
            g4m_tile_store<TY>(raw[m], g, step, rok[m] && g < nunits, B + trow[m] * C::LDS);
        }
    };
    auto load_x = [&](int step, int buf) {
        __half *A = sm + buf * C::STAGE;
        enum { CPR = C::BK / 8 }; /* 16-byte chunks per row */
#pragma unroll
        for (int c = tid; c < G4M_BN * CPR; c += G4M_THREADS) {
            const int r = c / CPR, col = (c % CPR) * 8;
            const int64_t t = t0 + r;
            const int k = step * C::BK + col;
            const bool ok = t < T && k < K;
            g4m_cp_async16(A + r * C::LDS + col, ok ? (const void *)(Xh + t * K + k) : (const void *)Xh, ok ? 16 : 0);
        }
        g4m_cp_async_commit();
    };

    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) wmma::fill_fragment(acc[i][j], 0.f);

    load_x(0, 0);
    load_w(0);
    store_w(0, 0);
    g4m_cp_async_wait_all();
    __syncthreads();

    for (int s = 0; s < nsteps; s++) {
        const int cur = s & 1;
        const bool more = s + 1 < nsteps;
        if (more) {
            load_x(s + 1, cur ^ 1);
            load_w(s + 1);
        }
        const __half *A = sm + cur * C::STAGE, *B = A + G4M_BN * C::LDS;
#pragma unroll
        for (int kk = 0; kk < C::BK; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> fa[2];
#pragma unroll
            for (int i = 0; i < 2; i++) wmma::load_matrix_sync(fa[i], A + (wt * 32 + i * 16) * C::LDS + kk, C::LDS);
#pragma unroll
            for (int j = 0; j < 4; j++) {
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::col_major> fb;
                wmma::load_matrix_sync(fb, B + (wn * 64 + j * 16) * C::LDS + kk, C::LDS);
#pragma unroll
                for (int i = 0; i < 2; i++) wmma::mma_sync(acc[i][j], fa[i], fb, acc[i][j]);
            }
        }
        if (more) {
            store_w(s + 1, cur ^ 1);
            g4m_cp_async_wait_all();
        }
        __syncthreads();
    }

    /* epilogue: each warp stages one 16×16 fragment at a time */
    float *stg = (float *)g4m_smem + warp * 256;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            wmma::store_matrix_sync(stg, acc[i][j], 16, wmma::mem_row_major);
            __syncwarp();
#pragma unroll
            for (int e = lane; e < 256; e += 32) {
                const int64_t t = t0 + wt * 32 + i * 16 + (e >> 4), n = n0 + wn * 64 + j * 16 + (e & 15);
                if (t < T && n < N) Y[t * ldy + n] = ldexpf(stg[e], -__ldg(sh + t));
            }
            __syncwarp();
        }
}
/* ====================================================================== */
/* the CPU's arithmetic (the default path)                                */
/* ====================================================================== */

/* ---- activation rows in the weight type's format ---------------------- */

/* T rows of K in the workspace, in the activation format of the weight type
 * (g4a_format), as planes (the CPU holds the same numbers as an array of
 * blocks; g4_cu_quantize_act_host writes that layout):
 *   Q8_0  qs [T][K] int8, h [T][nb] f16 bits of d
 *   Q8_1  qs, h (d), s [T][nb] f16 bits of s
 *   Q8_K  qs, f [T][nb] f32 d, bs [T][nb][16] int16 bsums
 *   F16 / BF16  h [T][K] bits;  F32  f [T][K]
 * nb = K/32 (Q8_0, Q8_1) or K/256 (Q8_K); qs rows are K bytes apart (16-byte
 * aligned: K is whole blocks); every plane starts on 256 bytes. */
struct g4a_rows {
    int8_t *qs;
    uint16_t *h;
    uint16_t *s;
    float *f;
    int16_t *bs;
    int64_t K, nb;
};

static size_t s_al256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Bytes of the planes of T rows; with base, lays them out there into *r. */
static size_t g4a_layout(int fmt, int64_t K, int64_t T, uint8_t *base, g4a_rows *r)
{
    g4a_rows z;
    memset(&z, 0, sizeof z);
    const size_t tk = (size_t)T * (size_t)K;
    size_t off = 0;
    z.K = K;
    z.nb = fmt == G4_DTYPE_Q8_K ? K / 256 : (fmt == G4_DTYPE_Q8_0 || fmt == G4_DTYPE_Q8_1 ? K / 32 : K);
    const size_t tnb = (size_t)T * (size_t)z.nb;
#define G4A_PLANE(field, type, count)                                                                            \
    do {                                                                                                        \
        if (base) z.field = (type *)(base + off);                                                               \
        off += s_al256((count) * sizeof(type));                                                                 \
    } while (0)
    switch (fmt) {
    case G4_DTYPE_Q8_0: G4A_PLANE(qs, int8_t, tk); G4A_PLANE(h, uint16_t, tnb); break;
    case G4_DTYPE_Q8_1:
        G4A_PLANE(qs, int8_t, tk);
        G4A_PLANE(h, uint16_t, tnb);
        G4A_PLANE(s, uint16_t, tnb);
        break;
    case G4_DTYPE_Q8_K:
        G4A_PLANE(qs, int8_t, tk);
        G4A_PLANE(f, float, tnb);
        G4A_PLANE(bs, int16_t, tnb * 16);
        break;
    case G4_DTYPE_F16:
    case G4_DTYPE_BF16: G4A_PLANE(h, uint16_t, tk); break;
    default: G4A_PLANE(f, float, tk); break;
    }
#undef G4A_PLANE
    if (r) *r = z;
    return off;
}

/* value k of row t of a float-format plane, as f32 (exact) */
template <int FMT> G4Q_HD float g4a_flt(const g4a_rows &A, int64_t t, int64_t k)
{
    if (FMT == G4_DTYPE_F32) {
#ifdef __CUDA_ARCH__
        return __ldg(A.f + t * A.K + k);
#else
        return A.f[t * A.K + k];
#endif
    }
    const uint32_t h = g4q_ld16((const uint8_t *)(A.h + t * A.K + k));
    return FMT == G4_DTYPE_F16 ? g4q_h2f(h) : g4q_f32(h << 16);
}

/* values k0 .. k0+31 of row t of a float-format plane as f32 (k0 and K
 * multiples of 32: 16-byte loads) */
template <int FMT> G4Q_HD void g4a_flt32(const g4a_rows &A, int64_t t, int64_t k0, float *a)
{
    if (FMT == G4_DTYPE_F32) {
        const uint8_t *p = (const uint8_t *)(A.f + t * A.K + k0);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const uint4 v = g4q_ld128(p + 16 * i);
            a[4 * i] = g4q_f32(v.x), a[4 * i + 1] = g4q_f32(v.y), a[4 * i + 2] = g4q_f32(v.z), a[4 * i + 3] = g4q_f32(v.w);
        }
        return;
    }
    const uint8_t *p = (const uint8_t *)(A.h + t * A.K + k0);
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint4 v = g4q_ld128(p + 16 * i);
        const uint32_t q[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            a[8 * i + 2 * j] = FMT == G4_DTYPE_F16 ? g4q_h2f(q[j] & 0xFFFFu) : g4q_f32(q[j] << 16);
            a[8 * i + 2 * j + 1] = FMT == G4_DTYPE_F16 ? g4q_h2f(q[j] >> 16) : g4q_f32(q[j] & 0xFFFF0000u);
        }
    }
}

#define G4A_WARPS 8

/* Q8_0 / Q8_1: one warp per block of 32, lane i has element i. */
template <bool Q81>
__global__ void __launch_bounds__(G4A_WARPS * 32) k_act_q8(const float *__restrict__ X, int64_t ldx, int64_t T, g4a_rows A)
{
    const int64_t b = (int64_t)blockIdx.x * G4A_WARPS + (threadIdx.x >> 5);
    if (b >= A.nb) return;
    const int lane = threadIdx.x & 31;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        const float x = X[t * ldx + b * 32 + lane];
        float amax = fmaxf(0.f, fabsf(x)); /* the CPU's fmaxf from 0 */
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xFFFFFFFFu, amax, o));
        float d, id;
        g4a_q8_scale(amax, &d, &id);
        const int q = g4a_q8_elem(x, id);
        A.qs[t * A.K + b * 32 + lane] = (int8_t)q;
        if (Q81) {
            int s = q;
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, o);
            if (lane == 0) A.s[t * A.nb + b] = (uint16_t)g4a_q8_1_s(d, s);
        }
        if (lane == 0) A.h[t * A.nb + b] = (uint16_t)g4x_f2h(d);
    }
}

/* Q8_K: one warp per block of 256, lane l has elements 8l .. 8l+7. */
__global__ void __launch_bounds__(G4A_WARPS * 32) k_act_qk(const float *__restrict__ X, int64_t ldx, int64_t T, g4a_rows A)
{
    const int64_t b = (int64_t)blockIdx.x * G4A_WARPS + (threadIdx.x >> 5);
    if (b >= A.nb) return;
    const int lane = threadIdx.x & 31;
    for (int64_t t = blockIdx.y; t < T; t += gridDim.y) {
        const float *x = X + t * ldx + b * 256 + 8 * lane;
        float v[8];
        g4a_kmax m = g4a_kmax_init();
#pragma unroll
        for (int i = 0; i < 8; i++) {
            v[i] = x[i];
            g4a_kmax_step(m, v[i], 8 * lane + i);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            g4a_kmax p;
            p.amax = __shfl_xor_sync(0xFFFFFFFFu, m.amax, o);
            p.max = __shfl_xor_sync(0xFFFFFFFFu, m.max, o);
            p.idx = __shfl_xor_sync(0xFFFFFFFFu, m.idx, o);
            m = g4a_kmax_join(m, p);
        }
        int8_t *qs = A.qs + t * A.K + b * 256 + 8 * lane;
        int16_t *bs = A.bs + (t * A.nb + b) * 16;
        if (m.amax == 0.f) { /* the same in every lane */
            *(uint2 *)qs = make_uint2(0, 0);
            if (!(lane & 1)) bs[lane >> 1] = 0;
            if (lane == 0) A.f[t * A.nb + b] = 0.f;
            continue;
        }
        const float iscale = g4a_qk_iscale(m.max);
        uint32_t w0 = 0, w1 = 0;
        int sum = 0;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int q = g4a_qk_elem(v[i], iscale);
            sum += q;
            if (i < 4) w0 |= ((uint32_t)q & 0xFFu) << (8 * i);
            else w1 |= ((uint32_t)q & 0xFFu) << (8 * (i - 4));
        }
        *(uint2 *)qs = make_uint2(w0, w1);
        sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
        if (!(lane & 1)) bs[lane >> 1] = (int16_t)sum;
        if (lane == 0) A.f[t * A.nb + b] = g4a_qk_d(iscale);
    }
}

/* F16 / BF16 / F32: element by element */
template <int FMT> __global__ void __launch_bounds__(256) k_act_flt(const float *__restrict__ X, int64_t ldx, int64_t T, g4a_rows A)
{
    const int64_t n = T * A.K;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / A.K, k = i - t * A.K;
        const float x = X[t * ldx + k];
        if (FMT == G4_DTYPE_F16) A.h[i] = (uint16_t)g4x_f2h(x);
        else if (FMT == G4_DTYPE_BF16) A.h[i] = (uint16_t)g4x_f2bf(x);
        else A.f[i] = x;
    }
}

/* ---- per unit and per block (the matrix × vector kernels, the host check) */

/* p 8-byte aligned */
G4Q_HD uint2 g4q_ld64(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return __ldg((const uint2 *)p);
#else
    uint2 v;
    memcpy(&v, p, 8);
    return v;
#endif
}

/* The integer sums of unit uu against the activation block at qs (its
 * QK int8) and bs (Q8_K: its 16 bsums): isum = Σ_r sc[r]·Σ q·a, and for
 * Q4_K/Q5_K imin = m0·bsums[g0] + m1·bsums[g1], the bsums of the unit's
 * two runs of 16 (their sum over a block's units is the _ref's mins). */
template <int TY>
G4Q_HD void g4k_unit_ints(const g4k_unit &v, int uu, const int8_t *qs, const int16_t *bs, int *isum, int *imin)
{
    typedef g4q_tr<TY> Tr;
    uint32_t a[8];
#pragma unroll
    for (int r = 0; r < 4; r++) {
        const uint2 w = g4q_ld64((const uint8_t *)qs + Tr::pos(uu, r));
        a[2 * r] = w.x, a[2 * r + 1] = w.y;
    }
    *isum = g4k_unit_dot(v, a);
    *imin = 0;
    if (TY == G4_DTYPE_Q4_K || TY == G4_DTYPE_Q5_K) {
        const int g0 = Tr::pos(uu, 0) >> 4, g1 = Tr::pos(uu, 2) >> 4;
        *imin = v.m[0] * (int)(int16_t)g4q_ld16((const uint8_t *)(bs + g0)) +
                v.m[1] * (int)(int16_t)g4q_ld16((const uint8_t *)(bs + g1));
    }
}

/* The block's term of the _ref dot from its exact sums: v0 a view of the
 * block (its scales), da the activation block's d (as f32), sa its s (Q8_1). */
template <int TY> G4Q_HD float g4k_block_term(int isum, int imin, const g4k_unit &v0, float da, float sa)
{
    if (TY == G4_DTYPE_Q4_K || TY == G4_DTYPE_Q5_K) return g4f_kq(g4x_i2f(isum), g4x_i2f(imin), v0.d, v0.dm, da);
    if (TY == G4_DTYPE_Q6_K) return g4f_q6_k(g4x_i2f(isum), v0.d, da);
    if (TY == G4_DTYPE_Q4_1 || TY == G4_DTYPE_Q5_1) return g4f_q8_1(g4x_i2f(isum), v0.d, da, v0.dm, sa);
    return g4f_q8_0(g4x_i2f(isum), v0.d, da);
}

/* activation block b of row t: its int8, its bsums, d and s as f32 */
template <int TY> G4Q_HD void g4k_act_block(const g4a_rows &A, int64_t t, int64_t b, const int8_t **qs, const int16_t **bs,
                                            float *da, float *sa)
{
    typedef g4q_tr<TY> Tr;
    *qs = A.qs + t * A.K + b * Tr::QK;
    *bs = NULL;
    *sa = 0.f;
    if (Tr::QK == 256) {
        *bs = A.bs + (t * A.nb + b) * 16;
#ifdef __CUDA_ARCH__
        *da = __ldg(A.f + t * A.nb + b);
#else
        *da = A.f[t * A.nb + b];
#endif
    } else {
        *da = g4q_h2f(g4q_ld16((const uint8_t *)(A.h + t * A.nb + b)));
        if (TY == G4_DTYPE_Q4_1 || TY == G4_DTYPE_Q5_1) *sa = g4q_h2f(g4q_ld16((const uint8_t *)(A.s + t * A.nb + b)));
    }
}

/* double += float product, rounded once each like the CPU's
 * sum += (double)(w * a) */
G4Q_HD double g4x_dacc(double acc, float w, float a)
{
#ifdef __CUDA_ARCH__
    return __dadd_rn(acc, (double)__fmul_rn(w, a));
#else
    return acc + (double)(w * a);
#endif
}
G4Q_HD double g4x_dadd(double a, double b)
{
#ifdef __CUDA_ARCH__
    return __dadd_rn(a, b);
#else
    return a + b;
#endif
}

/* ---- matrix × vector (T <= 8) ------------------------------------------ */

#define G4K_MV_WARPS 4

/* One warp per weight row. Lane l takes the row's units l, l+32, ... (as the
 * f32 path: 16-byte loads; a pass over 32 units reads 32 blocks of 32, or
 * four K-quant blocks, contiguous), the next pass's weights loaded before
 * this one is used. Per unit and activation row: dp4a sums with the
 * integer scales; the units of a block (8 lanes for the K-quants) add
 * theirs with shuffles (exact), and the block's first lane computes the
 * block's term (g4k_block_term) for each activation row into shared memory.
 * Then lane t adds the pass's terms of row t to its f32 sum one after
 * another, in block order: a row's terms are added exactly as the CPU's
 * loop adds them (sumf += term from 0), so the result is g4_matmul_ref's
 * to the bit. The chain costs one add per block and is the same for every
 * T (the lanes run the T rows' chains side by side). */
template <int TY, int T>
__global__ void __launch_bounds__(G4K_MV_WARPS * 32)
    k_mvq(const uint8_t *__restrict__ W, size_t row_bytes, int64_t N, int nunits, g4a_rows A, float *__restrict__ Y,
          int64_t ldy)
{
    typedef g4q_tr<TY> Tr;
    __shared__ __align__(16) float s_terms[G4K_MV_WARPS][T][36]; /* 36: the T lanes' rows in distinct banks */
    const int64_t row = (int64_t)blockIdx.x * G4K_MV_WARPS + (threadIdx.x >> 5);
    if (row >= N) return; /* the whole warp */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint8_t *wr = W + (size_t)row * row_bytes;
    float acc = 0.f; /* lane t < T: row t's sum */
    typename Tr::raw cur = {}, nxt = {};
    int u = lane;
    if (u < nunits) Tr::load(wr + (size_t)(u / Tr::UPB) * Tr::BB, u % Tr::UPB, cur);
    for (int u0 = 0; u0 < nunits; u0 += 32, u += 32) {
        const bool on = u < nunits;
        if (u + 32 < nunits) Tr::load(wr + (size_t)((u + 32) / Tr::UPB) * Tr::BB, (u + 32) % Tr::UPB, nxt);
        const int uu = u % Tr::UPB;
        const int64_t b = u / Tr::UPB;
        g4k_unit v;
        g4k_view<TY>(cur, uu, v);
#pragma unroll
        for (int t = 0; t < T; t++) {
            int is = 0, im = 0;
            const int8_t *qs;
            const int16_t *bs;
            float da = 0.f, sa = 0.f;
            if (on) {
                g4k_act_block<TY>(A, t, b, &qs, &bs, &da, &sa);
                g4k_unit_ints<TY>(v, uu, qs, bs, &is, &im);
            }
            if (Tr::UPB > 1) {
#pragma unroll
                for (int o = 1; o < Tr::UPB; o <<= 1) {
                    is += __shfl_xor_sync(0xFFFFFFFFu, is, o);
                    if (TY == G4_DTYPE_Q4_K || TY == G4_DTYPE_Q5_K) im += __shfl_xor_sync(0xFFFFFFFFu, im, o);
                }
            }
            if (on && uu == 0) s_terms[warp][t][lane / Tr::UPB] = g4k_block_term<TY>(is, im, v, da, sa);
        }
        __syncwarp();
        const int nblk = ((nunits - u0 < 32 ? nunits - u0 : 32) + Tr::UPB - 1) / Tr::UPB;
        if (lane < T) {
            const float *tr = s_terms[warp][lane];
            if (nblk == 32 / Tr::UPB) {
#pragma unroll
                for (int j = 0; j < 32 / Tr::UPB; j += 4) {
                    const float4 q = *(const float4 *)(tr + j);
                    acc = g4x_add(acc, q.x);
                    acc = g4x_add(acc, q.y);
                    acc = g4x_add(acc, q.z);
                    acc = g4x_add(acc, q.w);
                }
            } else
                for (int j = 0; j < nblk; j++) acc = g4x_add(acc, tr[j]);
        }
        __syncwarp();
        cur = nxt;
    }
    if (lane < T) Y[lane * ldy + row] = acc;
}

/* Float weights: the CPU sums w·a (an f32 product: exact for F16 and BF16)
 * in double. One warp per row; UNITS: rows 16-byte aligned and K whole 32s,
 * lane l takes the units l, l+32, ... (16-byte loads); else element k goes
 * to lane k % 32. Lane sums in double, then the xor-shuffle sum in double,
 * rounded to f32 once. */
template <int TY, int T, bool UNITS>
__global__ void __launch_bounds__(G4K_MV_WARPS * 32)
    k_mvf(const uint8_t *__restrict__ W, size_t row_bytes, int64_t K, int64_t N, g4a_rows A, float *__restrict__ Y,
          int64_t ldy)
{
    typedef g4q_tr<TY> Tr;
    const int64_t row = (int64_t)blockIdx.x * G4K_MV_WARPS + (threadIdx.x >> 5);
    if (row >= N) return;
    const int lane = threadIdx.x & 31;
    const uint8_t *wr = W + (size_t)row * row_bytes;
    double acc[T];
#pragma unroll
    for (int t = 0; t < T; t++) acc[t] = 0.0;
    if (UNITS) {
        const int nunits = (int)(K / 32);
        for (int u = lane; u < nunits; u += 32) {
            typename Tr::raw raw;
            Tr::load(wr + (size_t)u * Tr::BB, 0, raw);
            float w[32];
            Tr::template decode<false>(raw, 0, w); /* exact for the float types */
#pragma unroll
            for (int t = 0; t < T; t++) {
                float x[32];
                g4a_flt32<TY>(A, t, (int64_t)u * 32, x);
#pragma unroll
                for (int e = 0; e < 32; e++) acc[t] = g4x_dacc(acc[t], w[e], x[e]);
            }
        }
    } else {
        for (int64_t k = lane; k < K; k += 32) {
            const float w = g4q_elem(TY, wr, k);
#pragma unroll
            for (int t = 0; t < T; t++) acc[t] = g4x_dacc(acc[t], w, g4a_flt<TY>(A, t, k));
        }
    }
#pragma unroll
    for (int t = 0; t < T; t++) {
        double s = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s = g4x_dadd(s, __shfl_xor_sync(0xFFFFFFFFu, s, o));
        acc[t] = s;
    }
#pragma unroll
    for (int t = 0; t < T; t++)
        if (lane == t) Y[t * ldy + row] = __double2float_rn(acc[t]);
}

/* ---- matrix × matrix (T > 8): int8 tensor cores ------------------------
 * k_mmq<TY>: 256 threads, a tile of BM = 64 weight rows × BN = 128
 * activation rows, K in steps of 256 (a K-quant block, or eight 32-blocks).
 * Per step the weights are decoded to int8 in shared memory and the
 * activations' int8 come in by cp.async (two stages: the next step's loads
 * are in flight while the warps multiply).
 *   32-blocks: one plane of q (as the _ref's: q-8, q-16, q, int8); each
 *     mma.m16n8k32 (s8·s8 -> s32) covers exactly one block, so it gives the
 *     block's sumi for 16 × 8 (row, col); then per (row, col) the _ref's
 *     term, added in block order to the f32 sum.
 *   K-quants: the block's sumi = Σ_e sc(e)·q(e)·a(e): w = sc·q (|w| <= 4096)
 *     is split into two int8 planes, hi = w >> 6 and lo = w & 63, each summed
 *     over the whole block by the mma (|Σ| < 2^22), sumi = 64·hi + lo; the
 *     mins Σ_j m_j·(bsums[2j] + bsums[2j+1]) by one f16 mma.m16n8k16 per
 *     block (m_j <= 63 and the activation sums split in (S & 63, S - (S & 63))
 *     are exact in f16, the products and sums < 2^22 exact in f32); then the
 *     _ref's term, added in block order.
 * So each (row, col) adds the CPU's terms in the CPU's order: the result is
 * g4_matmul_ref's to the bit (given the hardware computes the int and the
 * small-integer f16 sums exactly, which they are).
 * The k index inside a block is permuted (thread tq's 8 bytes at 8·tq of a
 * 32-byte slice feed both its a0/a2 and its b0/b1): the integer sums do not
 * depend on the order.
 * Warps: 2 (weight rows: 32 each) × 4 (activation rows: 32 each), 2 × 4
 * m16n8 tiles per warp. Shared memory per stage: planes (pitch 288 bytes:
 * the 8-byte fragment loads are free of bank conflicts), 80 bytes of scales
 * per row and per column. */

#define G4P_THREADS 256

template <int TY> struct g4p_cfg {
    typedef g4q_tr<TY> Tr;
    enum {
        KQ = Tr::QK == 256,
        MINS = TY == G4_DTYPE_Q4_K || TY == G4_DTYPE_Q5_K,
        Q81 = TY == G4_DTYPE_Q4_1 || TY == G4_DTYPE_Q5_1,
        BM = 64,
        BN = 128,
        PITCH = 288,
        NPL = KQ ? 2 : 1,
        SROW = 80,
        OFF_X = NPL * BM * PITCH,
        OFF_WS = OFF_X + BN * PITCH,
        OFF_XS = OFF_WS + BM * SROW,
        STAGE = OFF_XS + BN * SROW,
        SMEM = 2 * STAGE,
    };
};

/* shared-memory accessors (host: the emulation's plain memory) */
G4Q_HD uint32_t g4p_lds32(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return *(const uint32_t *)p;
#else
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
#endif
}
G4Q_HD float g4p_ldsf(const uint8_t *p) { return g4q_f32(g4p_lds32(p)); }
G4Q_HD uint2 g4p_lds64(const uint8_t *p)
{
#ifdef __CUDA_ARCH__
    return *(const uint2 *)p;
#else
    uint2 v;
    memcpy(&v, p, 8);
    return v;
#endif
}
G4Q_HD void g4p_sts32(uint8_t *p, uint32_t v)
{
#ifdef __CUDA_ARCH__
    *(uint32_t *)p = v;
#else
    memcpy(p, &v, 4);
#endif
}
G4Q_HD void g4p_sts64(uint8_t *p, uint32_t x, uint32_t y)
{
#ifdef __CUDA_ARCH__
    *(uint2 *)p = make_uint2(x, y);
#else
    memcpy(p, &x, 4);
    memcpy(p + 4, &y, 4);
#endif
}
G4Q_HD uint32_t g4p_h2(int a, int b) { return g4x_f2h(g4x_i2f(a)) | (g4x_f2h(g4x_i2f(b)) << 16); }

/* The two int8 planes of a K-quant unit: w = sc·q per element (packed in
 * 16-bit lanes: even and odd bytes), hi = w >> 6, lo = w & 63. Q6_K's
 * w + 4096 >= 0 is what is split (hi + 64: 64 taken off per byte). */
template <int TY> G4Q_HD void g4k_planes(const g4k_unit &v, uint32_t hi[8], uint32_t lo[8])
{
#pragma unroll
    for (int w = 0; w < 8; w++) {
        const int s = v.sc[w >> 1];
        uint32_t q = v.q[w], c = 0;
        if (TY == G4_DTYPE_Q6_K) {
            q = g4k_vsub4(q, 0xE0E0E0E0u); /* q - 32 + 32: the 6-bit q, 0..63 */
            c = (uint32_t)(4096 - 32 * s) * 0x00010001u;
        }
        const uint32_t e = (q & 0x00FF00FFu) * (uint32_t)s + c, o = ((q >> 8) & 0x00FF00FFu) * (uint32_t)s + c;
        uint32_t h = ((e >> 6) & 0x00FF00FFu) | (((o >> 6) & 0x00FF00FFu) << 8);
        const uint32_t l = (e & 0x003F003Fu) | ((o & 0x003F003Fu) << 8);
        if (TY == G4_DTYPE_Q6_K) h = g4k_vsub4(h, 0x40404040u);
        hi[w] = h;
        lo[w] = l;
    }
}

/* The weight units of thread tid for step `step`: row tid/4 of the tile,
 * units 2(tid%4), 2(tid%4)+1 of the step's 8 (32-blocks: blocks; K-quants:
 * units of the one block). */
template <int TY>
G4Q_HD void g4p_load_w(const uint8_t *W, size_t rb, int64_t N, int nunits, int64_t n0, int step, int tid,
                       typename g4q_tr<TY>::raw raw[2], bool ok[2])
{
    typedef g4q_tr<TY> Tr;
    const int row = tid >> 2, j = tid & 3;
#pragma unroll
    for (int e = 0; e < 2; e++) {
        const int gu = step * 8 + 2 * j + e;
        ok[e] = n0 + row < N && gu < nunits;
        if (ok[e]) Tr::load(W + (size_t)(n0 + row) * rb + (size_t)(gu / Tr::UPB) * Tr::BB, gu % Tr::UPB, raw[e]);
    }
}

template <int TY>
G4Q_HD void g4p_store_w(const typename g4q_tr<TY>::raw raw[2], const bool ok[2], int step, int tid, uint8_t *st)
{
    typedef g4q_tr<TY> Tr;
    typedef g4p_cfg<TY> C;
    const int row = tid >> 2, j = tid & 3;
    uint8_t *ws = st + C::OFF_WS + row * C::SROW;
#pragma unroll
    for (int e = 0; e < 2; e++) {
        const int gu = step * 8 + 2 * j + e, uu = gu % Tr::UPB;
        g4k_unit v;
        if (ok[e]) g4k_view<TY>(raw[e], uu, v);
        else {
#pragma unroll
            for (int w = 0; w < 8; w++) v.q[w] = 0;
#pragma unroll
            for (int r = 0; r < 4; r++) v.sc[r] = 0;
            v.m[0] = v.m[1] = 0;
            v.d = v.dm = 0.f;
        }
        if (C::KQ) {
            uint32_t hi[8], lo[8];
            g4k_planes<TY>(v, hi, lo);
            uint8_t *ph = st + row * C::PITCH, *pl = st + (C::BM + row) * C::PITCH;
#pragma unroll
            for (int r = 0; r < 4; r++) {
                g4p_sts64(ph + Tr::pos(uu, r), hi[2 * r], hi[2 * r + 1]);
                g4p_sts64(pl + Tr::pos(uu, r), lo[2 * r], lo[2 * r + 1]);
            }
            if (e == 0) {
                if (C::MINS) g4p_sts32(ws + 16 + 4 * j, g4p_h2(v.m[0], v.m[1])); /* m of sub-blocks 2j, 2j+1 */
                if (j == 0) {
                    g4p_sts32(ws, g4x_bits(v.d));
                    g4p_sts32(ws + 4, g4x_bits(v.dm));
                }
            }
        } else {
            const int s = 2 * j + e; /* block of the step */
            uint8_t *p = st + row * C::PITCH + 32 * s;
#pragma unroll
            for (int w = 0; w < 8; w += 2) g4p_sts64(p + 4 * w, v.q[w], v.q[w + 1]);
            g4p_sts32(ws + 4 * s, g4x_bits(v.d));
            g4p_sts32(ws + 32 + 4 * s, g4x_bits(v.dm));
        }
    }
}

/* 16-byte chunk c of the step's activation tile: where from (ok: inside T
 * and K; else zeros) and where to (offset in the stage). */
template <int TY>
G4Q_HD bool g4p_x_chunk(const g4a_rows &A, int64_t T, int64_t t0, int step, int c, const int8_t **src, int *dst)
{
    typedef g4p_cfg<TY> C;
    const int col = c >> 4, off = (c & 15) * 16;
    const int64_t k = (int64_t)step * 256 + off;
    const bool ok = t0 + col < T && k < A.K;
    *src = ok ? A.qs + (t0 + col) * A.K + k : A.qs;
    *dst = C::OFF_X + col * C::PITCH + off;
    return ok;
}

/* The activation scales of the step, thread tid: column tid/2, half tid%2:
 * K-quants: bsums 8h .. 8h+7 (and d); 32-blocks: blocks 4h .. 4h+3 (d, s). */
template <int TY> G4Q_HD void g4p_load_xs(const g4a_rows &A, int64_t T, int64_t t0, int step, int tid, uint32_t r[5])
{
    typedef g4p_cfg<TY> C;
    const int col = tid >> 1, h = tid & 1;
    const int64_t t = t0 + col;
    const bool ok = t < T;
#pragma unroll
    for (int i = 0; i < 5; i++) r[i] = 0;
    if (C::KQ) {
        if (ok) {
            const uint4 v = g4q_ld128((const uint8_t *)(A.bs + (t * A.nb + step) * 16 + 8 * h));
            r[0] = v.x, r[1] = v.y, r[2] = v.z, r[3] = v.w;
            r[4] = g4x_bits(A.f[t * A.nb + step]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int64_t b = (int64_t)step * 8 + 4 * h + i;
            if (ok && b < A.nb) {
                r[i] = g4q_ld16((const uint8_t *)(A.h + t * A.nb + b));
                if (C::Q81) r[i] |= g4q_ld16((const uint8_t *)(A.s + t * A.nb + b)) << 16;
            }
        }
    }
}

template <int TY> G4Q_HD void g4p_store_xs(const uint32_t r[5], int tid, uint8_t *st)
{
    typedef g4p_cfg<TY> C;
    const int col = tid >> 1, h = tid & 1;
    uint8_t *xs = st + C::OFF_XS + col * C::SROW;
    if (C::KQ) {
        /* S_j = bsums[2j] + bsums[2j+1] for j = 4h .. 4h+3, as (S & 63, S - (S & 63)) */
        int S[4];
#pragma unroll
        for (int i = 0; i < 4; i++) S[i] = (int)(int16_t)(r[i] & 0xFFFFu) + (int)(int16_t)(r[i] >> 16);
#pragma unroll
        for (int p = 0; p < 2; p++) {
            const int a = S[2 * p], b = S[2 * p + 1];
            g4p_sts32(xs + 16 + 4 * (2 * h + p), g4p_h2(a & 63, b & 63));
            g4p_sts32(xs + 32 + 4 * (2 * h + p), g4p_h2(a - (a & 63), b - (b & 63)));
        }
        if (h == 0) g4p_sts32(xs, r[4]);
    } else {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            g4p_sts32(xs + 4 * (4 * h + i), g4x_bits(g4q_h2f(r[i] & 0xFFFFu)));
            g4p_sts32(xs + 32 + 4 * (4 * h + i), g4x_bits(g4q_h2f(r[i] >> 16)));
        }
    }
}

/* mma fragments (PTX ISA, mma.m16n8k32 .s8: a0 = row g k 4tq.., a1 = row
 * g+8, a2 = row g k 16+4tq.., a3 = row g+8; b0 = k 4tq.. col g, b1 = k
 * 16+4tq..; c0, c1 = row g cols 2tq, 2tq+1, c2, c3 = row g+8), g = lane/4,
 * tq = lane%4. Thread tq's k 4tq.. and 16+4tq.. are bytes 8tq .. 8tq+7 of
 * the 32-byte slice, for A and B alike. */
template <int TY> G4Q_HD void g4p_frag_a(const uint8_t *plane, int row0, int s, int lane, uint32_t a[4])
{
    typedef g4p_cfg<TY> C;
    const uint8_t *p = plane + (row0 + (lane >> 2)) * C::PITCH + 32 * s + 8 * (lane & 3);
    const uint2 v0 = g4p_lds64(p), v1 = g4p_lds64(p + 8 * C::PITCH);
    a[0] = v0.x, a[2] = v0.y, a[1] = v1.x, a[3] = v1.y;
}
template <int TY> G4Q_HD void g4p_frag_b(const uint8_t *st, int col0, int s, int lane, uint32_t b[2])
{
    typedef g4p_cfg<TY> C;
    const uint2 v = g4p_lds64(st + C::OFF_X + (col0 + (lane >> 2)) * C::PITCH + 32 * s + 8 * (lane & 3));
    b[0] = v.x, b[1] = v.y;
}
/* the mins' f16 m16n8k16 (a0 = row g k 2tq, 2tq+1; a1 = row g+8; a2, a3 =
 * the same at k + 8; b0 = k 2tq, 2tq+1 col g, b1 = k + 8): A[row][k] =
 * m_(k%8), B[k][col] = S_(k%8) & 63 (k < 8) or the rest (k >= 8) */
template <int TY> G4Q_HD void g4p_frag_am(const uint8_t *st, int row0, int lane, uint32_t a[4])
{
    typedef g4p_cfg<TY> C;
    const uint8_t *p = st + C::OFF_WS + (row0 + (lane >> 2)) * C::SROW + 16 + 4 * (lane & 3);
    a[0] = a[2] = g4p_lds32(p);
    a[1] = a[3] = g4p_lds32(p + 8 * C::SROW);
}
template <int TY> G4Q_HD void g4p_frag_bm(const uint8_t *st, int col0, int lane, uint32_t b[2])
{
    typedef g4p_cfg<TY> C;
    const uint8_t *p = st + C::OFF_XS + (col0 + (lane >> 2)) * C::SROW + 4 * (lane & 3);
    b[0] = g4p_lds32(p + 16);
    b[1] = g4p_lds32(p + 32);
}

/* The K-quant block's terms for tile (i, j) of the warp, added to acc. */
template <int TY>
G4Q_HD void g4p_epi_k(const uint8_t *st, int row0, int col0, int lane, const int hi[4], const int lo[4], const float mins[4],
                      float acc[4])
{
    typedef g4p_cfg<TY> C;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int row = row0 + (lane >> 2) + 8 * (e >> 1), col = col0 + 2 * (lane & 3) + (e & 1);
        const uint8_t *ws = st + C::OFF_WS + row * C::SROW, *xs = st + C::OFF_XS + col * C::SROW;
        const float sumi = g4x_fma(g4x_i2f_small(hi[e]), 64.f, g4x_i2f_small(lo[e])); /* (float)(64hi + lo) */
        const float t = C::MINS ? g4f_kq(sumi, mins[e], g4p_ldsf(ws), g4p_ldsf(ws + 4), g4p_ldsf(xs))
                                : g4f_q6_k(sumi, g4p_ldsf(ws), g4p_ldsf(xs));
        acc[e] = g4x_add(acc[e], t);
    }
}

/* The 32-block s's terms for tile (i, j), added to acc. */
template <int TY>
G4Q_HD void g4p_epi_b(const uint8_t *st, int row0, int col0, int s, int lane, const int c[4], float acc[4])
{
    typedef g4p_cfg<TY> C;
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int row = row0 + (lane >> 2) + 8 * (e >> 1), col = col0 + 2 * (lane & 3) + (e & 1);
        const uint8_t *ws = st + C::OFF_WS + row * C::SROW, *xs = st + C::OFF_XS + col * C::SROW;
        const float sumi = g4x_i2f_small(c[e]);
        const float t = C::Q81 ? g4f_q8_1(sumi, g4p_ldsf(ws + 4 * s), g4p_ldsf(xs + 4 * s), g4p_ldsf(ws + 32 + 4 * s),
                                          g4p_ldsf(xs + 32 + 4 * s))
                               : g4f_q8_0(sumi, g4p_ldsf(ws + 4 * s), g4p_ldsf(xs + 4 * s));
        acc[e] = g4x_add(acc[e], t);
    }
}

/* Y for tile (i, j) of the warp */
G4Q_HD void g4p_store_y(float *Y, int64_t ldy, int64_t N, int64_t T, int64_t n0, int64_t t0, int row0, int col0, int lane,
                        const float acc[4])
{
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int64_t n = n0 + row0 + (lane >> 2) + 8 * (e >> 1), t = t0 + col0 + 2 * (lane & 3) + (e & 1);
        if (n < N && t < T) Y[t * ldy + n] = acc[e];
    }
}

__device__ __forceinline__ void g4p_mma_s8(int c[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
/* d += A·B (the caller zeroes d) */
__device__ __forceinline__ void g4p_mma_f16(float d[4], const uint32_t a[4], const uint32_t b[2])
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
                 "{%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

__device__ __forceinline__ void g4p_cp16(void *smem, const void *gmem, int src_bytes)
{
    const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes));
}

/* blockIdx.x: activation tile (fast: the blocks of one weight tile run
 * together and share it through L2), blockIdx.y: weight tile */
template <int TY>
__global__ void __launch_bounds__(G4P_THREADS, 1)
    k_mmq(const uint8_t *__restrict__ W, size_t rb, int64_t N, int nunits, g4a_rows A, int64_t T, float *__restrict__ Y,
          int64_t ldy)
{
    typedef g4q_tr<TY> Tr;
    typedef g4p_cfg<TY> C;
    extern __shared__ __align__(128) unsigned char g4p_smem[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int wm = warp & 1, wn = warp >> 1;
    const int64_t t0 = (int64_t)blockIdx.x * C::BN, n0 = (int64_t)blockIdx.y * C::BM;
    const int nsteps = (nunits + 7) / 8;

    typename Tr::raw raw[2];
    bool ok[2];
    uint32_t xr[5];
    float acc[2][4][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.f;

    auto load_x = [&](int step, uint8_t *st) {
#pragma unroll
        for (int c = tid; c < C::BN * 16; c += G4P_THREADS) {
            const int8_t *src;
            int dst;
            const bool in = g4p_x_chunk<TY>(A, T, t0, step, c, &src, &dst);
            g4p_cp16(st + dst, src, in ? 16 : 0);
        }
        asm volatile("cp.async.commit_group;\n" ::);
    };

    uint8_t *const sm0 = g4p_smem, *const sm1 = g4p_smem + C::STAGE;
    load_x(0, sm0);
    g4p_load_w<TY>(W, rb, N, nunits, n0, 0, tid, raw, ok);
    g4p_load_xs<TY>(A, T, t0, 0, tid, xr);
    g4p_store_w<TY>(raw, ok, 0, tid, sm0);
    g4p_store_xs<TY>(xr, tid, sm0);
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();

    for (int s = 0; s < nsteps; s++) {
        uint8_t *const cur = (s & 1) ? sm1 : sm0, *const nxt = (s & 1) ? sm0 : sm1;
        const bool more = s + 1 < nsteps;
        if (more) {
            load_x(s + 1, nxt);
            g4p_load_w<TY>(W, rb, N, nunits, n0, s + 1, tid, raw, ok);
            g4p_load_xs<TY>(A, T, t0, s + 1, tid, xr);
        }
        if (C::KQ) {
            int hi[2][4][4], lo[2][4][4];
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) hi[i][j][e] = lo[i][j][e] = 0;
#pragma unroll
            for (int sl = 0; sl < 8; sl++) {
                uint32_t ah[2][4], al[2][4], b[4][2];
#pragma unroll
                for (int i = 0; i < 2; i++) {
                    g4p_frag_a<TY>(cur, wm * 32 + 16 * i, sl, lane, ah[i]);
                    g4p_frag_a<TY>(cur + C::BM * C::PITCH, wm * 32 + 16 * i, sl, lane, al[i]);
                }
#pragma unroll
                for (int j = 0; j < 4; j++) g4p_frag_b<TY>(cur, wn * 32 + 8 * j, sl, lane, b[j]);
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        g4p_mma_s8(hi[i][j], ah[i], b[j]);
                        g4p_mma_s8(lo[i][j], al[i], b[j]);
                    }
            }
#pragma unroll
            for (int i = 0; i < 2; i++) {
                uint32_t am[4];
                if (C::MINS) g4p_frag_am<TY>(cur, wm * 32 + 16 * i, lane, am);
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    float mins[4] = {0.f, 0.f, 0.f, 0.f};
                    if (C::MINS) {
                        uint32_t bm[2];
                        g4p_frag_bm<TY>(cur, wn * 32 + 8 * j, lane, bm);
                        g4p_mma_f16(mins, am, bm);
                    }
                    g4p_epi_k<TY>(cur, wm * 32 + 16 * i, wn * 32 + 8 * j, lane, hi[i][j], lo[i][j], mins, acc[i][j]);
                }
            }
        } else {
#pragma unroll
            for (int sl = 0; sl < 8; sl++) {
                if (s * 8 + sl >= nunits) break; /* past K (the whole block) */
                uint32_t a[2][4], b[4][2];
#pragma unroll
                for (int i = 0; i < 2; i++) g4p_frag_a<TY>(cur, wm * 32 + 16 * i, sl, lane, a[i]);
#pragma unroll
                for (int j = 0; j < 4; j++) g4p_frag_b<TY>(cur, wn * 32 + 8 * j, sl, lane, b[j]);
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) {
                        int c[4] = {0, 0, 0, 0};
                        g4p_mma_s8(c, a[i], b[j]);
                        g4p_epi_b<TY>(cur, wm * 32 + 16 * i, wn * 32 + 8 * j, sl, lane, c, acc[i][j]);
                    }
            }
        }
        if (more) {
            g4p_store_w<TY>(raw, ok, s + 1, tid, nxt);
            g4p_store_xs<TY>(xr, tid, nxt);
            asm volatile("cp.async.wait_group 0;\n" ::: "memory");
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) g4p_store_y(Y, ldy, N, T, n0, t0, wm * 32 + 16 * i, wn * 32 + 8 * j, lane, acc[i][j]);
}

/* ---- matrix × matrix, float weights: double sums on the CUDA cores -------
 * A 64 × 64 tile per 256 threads, K in steps of 32 through shared memory
 * (f32, k-major, padded); thread (tx, ty) = (tid % 16, tid / 16) owns rows
 * tx + 16a and columns ty + 16b (a, b < 4). Each output sums k in order from
 * 0, the CPU's order: g4_matmul_ref's result to the bit. */
#define G4F_TILE 64
#define G4F_KS 32

template <int TY>
G4Q_HD void g4f_load_tile(const uint8_t *W, size_t rb, int64_t N, int64_t K, const g4a_rows &A, int64_t T, int64_t n0,
                          int64_t t0, int64_t k0, int tid, float (*Ws)[G4F_TILE + 1], float (*Xs)[G4F_TILE + 1])
{
#pragma unroll
    for (int i = 0; i < G4F_TILE * G4F_KS / G4P_THREADS; i++) {
        const int e = tid + G4P_THREADS * i, r = e / G4F_KS, kk = e % G4F_KS;
        const int64_t k = k0 + kk;
        Ws[kk][r] = n0 + r < N && k < K ? g4q_elem(TY, W + (size_t)(n0 + r) * rb, k) : 0.f;
        Xs[kk][r] = t0 + r < T && k < K ? g4a_flt<TY>(A, t0 + r, k) : 0.f;
    }
}

template <int TY>
G4Q_HD void g4f_tile_step(int tid, const float (*Ws)[G4F_TILE + 1], const float (*Xs)[G4F_TILE + 1], double acc[4][4])
{
    const int tx = tid & 15, ty = tid >> 4;
    for (int kk = 0; kk < G4F_KS; kk++) {
        float w[4], x[4];
#pragma unroll
        for (int a = 0; a < 4; a++) w[a] = Ws[kk][tx + 16 * a];
#pragma unroll
        for (int b = 0; b < 4; b++) x[b] = Xs[kk][ty + 16 * b];
#pragma unroll
        for (int a = 0; a < 4; a++)
#pragma unroll
            for (int b = 0; b < 4; b++) acc[a][b] = g4x_dacc(acc[a][b], w[a], x[b]);
    }
}

G4Q_HD void g4f_store_tile(float *Y, int64_t ldy, int64_t N, int64_t T, int64_t n0, int64_t t0, int tid, const double acc[4][4])
{
    const int tx = tid & 15, ty = tid >> 4;
#pragma unroll
    for (int a = 0; a < 4; a++)
#pragma unroll
        for (int b = 0; b < 4; b++) {
            const int64_t n = n0 + tx + 16 * a, t = t0 + ty + 16 * b;
#ifdef __CUDA_ARCH__
            if (n < N && t < T) Y[t * ldy + n] = __double2float_rn(acc[a][b]);
#else
            if (n < N && t < T) Y[t * ldy + n] = (float)acc[a][b];
#endif
        }
}

template <int TY>
__global__ void __launch_bounds__(G4P_THREADS)
    k_mmf(const uint8_t *__restrict__ W, size_t rb, int64_t N, int64_t K, g4a_rows A, int64_t T, float *__restrict__ Y,
          int64_t ldy)
{
    __shared__ float Ws[G4F_KS][G4F_TILE + 1], Xs[G4F_KS][G4F_TILE + 1];
    const int tid = threadIdx.x;
    const int64_t t0 = (int64_t)blockIdx.x * G4F_TILE, n0 = (int64_t)blockIdx.y * G4F_TILE;
    double acc[4][4];
#pragma unroll
    for (int a = 0; a < 4; a++)
#pragma unroll
        for (int b = 0; b < 4; b++) acc[a][b] = 0.0;
    for (int64_t k0 = 0; k0 < K; k0 += G4F_KS) {
        g4f_load_tile<TY>(W, rb, N, K, A, T, n0, t0, k0, tid, Ws, Xs);
        __syncthreads();
        g4f_tile_step<TY>(tid, Ws, Xs, acc);
        __syncthreads();
    }
    g4f_store_tile(Y, ldy, N, T, n0, t0, tid, acc);
}

/* ====================================================================== */
/* dispatch                                                               */
/* ====================================================================== */

extern "C" int g4_cu_type_ok(g4_dtype_t t)
{
    switch (t) {
    case G4_DTYPE_F32:
    case G4_DTYPE_F16:
    case G4_DTYPE_BF16:
    case G4_DTYPE_Q4_0:
    case G4_DTYPE_Q4_1:
    case G4_DTYPE_Q5_0:
    case G4_DTYPE_Q5_1:
    case G4_DTYPE_Q8_0:
    case G4_DTYPE_Q4_K:
    case G4_DTYPE_Q5_K:
    case G4_DTYPE_Q6_K: return 1;
    default: return 0;
    }
}

typedef struct {
    g4_cu_t *cu;
    const uint8_t *W;
    size_t row_bytes;
    int64_t K, N;
    const float *X;
    int64_t ldx, T;
    float *Y;
    int64_t ldy;
    g4_err_t *err;
} g4m_args_t;

static int s_ws_fail(g4m_args_t *a, size_t n)
{
    return g4_err_set(a->err, G4_ERR_NOMEM, "cuda matmul: no %zu bytes of device workspace", n);
}

template <int TY, int T> static void s_launch_mv(const g4m_args_t *a, const float *X, int64_t ldx)
{
    k_mv<TY, T><<<g4_cu_blocks(a->N, G4M_MV_WARPS), G4M_MV_WARPS * 32, 0, a->cu->stream>>>(
        a->W, a->row_bytes, a->N, (int)(a->K / 32), X, ldx, a->Y, a->ldy);
}

template <int T> static void s_launch_elem(const g4m_args_t *a, int ty, const float *X, float *Y)
{
    k_mv_elem<T><<<g4_cu_blocks(a->N, G4M_MV_WARPS), G4M_MV_WARPS * 32, 0, a->cu->stream>>>(
        ty, a->W, a->row_bytes, a->K, a->N, X, a->ldx, Y, a->ldy);
}

/* float weights the unit kernels cannot read: T in chunks of up to 8 */
static int s_run_elem(g4m_args_t *a, int ty)
{
    for (int64_t t0 = 0; t0 < a->T; t0 += 8) {
        const int n = a->T - t0 < 8 ? (int)(a->T - t0) : 8;
        const float *X = a->X + t0 * a->ldx;
        float *Y = a->Y + t0 * a->ldy;
        switch (n) {
        case 1: s_launch_elem<1>(a, ty, X, Y); break;
        case 2: s_launch_elem<2>(a, ty, X, Y); break;
        case 3: s_launch_elem<3>(a, ty, X, Y); break;
        case 4: s_launch_elem<4>(a, ty, X, Y); break;
        case 5: s_launch_elem<5>(a, ty, X, Y); break;
        case 6: s_launch_elem<6>(a, ty, X, Y); break;
        case 7: s_launch_elem<7>(a, ty, X, Y); break;
        default: s_launch_elem<8>(a, ty, X, Y); break;
        }
    }
    return g4_cu_check_launch(a->err, "cuda matmul (float rows)");
}

template <int TY> static int s_run(g4m_args_t *a)
{
    if (a->T <= 8) {
        const float *X = a->X;
        int64_t ldx = a->ldx;
        if (((uintptr_t)X & 15) || (a->T > 1 && (ldx & 3))) { /* float4 loads: pack the rows */
            const size_t n = (size_t)a->T * (size_t)a->K * 4;
            float *ws = (float *)g4_cu_ws(a->cu, n);
            if (!ws) return s_ws_fail(a, n);
            const cudaError_t e = cudaMemcpy2DAsync(ws, (size_t)a->K * 4, X, (size_t)(a->T > 1 ? ldx : a->K) * 4,
                                                    (size_t)a->K * 4, (size_t)a->T, cudaMemcpyDeviceToDevice,
                                                    a->cu->stream);
            if (e != cudaSuccess)
                return g4_err_set(a->err, G4_ERR_RANGE, "cuda matmul: packing X: %s", cudaGetErrorString(e));
            X = ws;
            ldx = a->K;
        }
        switch (a->T) {
        case 1: s_launch_mv<TY, 1>(a, X, ldx); break;
        case 2: s_launch_mv<TY, 2>(a, X, ldx); break;
        case 3: s_launch_mv<TY, 3>(a, X, ldx); break;
        case 4: s_launch_mv<TY, 4>(a, X, ldx); break;
        case 5: s_launch_mv<TY, 5>(a, X, ldx); break;
        case 6: s_launch_mv<TY, 6>(a, X, ldx); break;
        case 7: s_launch_mv<TY, 7>(a, X, ldx); break;
        default: s_launch_mv<TY, 8>(a, X, ldx); break;
        }
        return g4_cu_check_launch(a->err, "cuda matmul (matrix x vector)");
    }

    typedef g4m_cfg<TY> C;
    if ((size_t)C::SMEM > a->cu->smem_optin)
        return g4_err_set(a->err, G4_ERR_RANGE, "cuda matmul: %d bytes of shared memory per block, the device has %zu",
                          (int)C::SMEM, a->cu->smem_optin);
    const size_t xh_bytes = ((size_t)a->T * (size_t)a->K * 2 + 255) & ~(size_t)255;
    const size_t n = xh_bytes + (size_t)a->T * 4;
    uint8_t *ws = (uint8_t *)g4_cu_ws(a->cu, n);
    if (!ws) return s_ws_fail(a, n);
    __half *Xh = (__half *)ws;
    int *sh = (int *)(ws + xh_bytes);
    k_x2h<<<(unsigned)a->T, 256, 0, a->cu->stream>>>(a->X, a->ldx, (int)a->K, Xh, sh);
    int rc = g4_cu_check_launch(a->err, "cuda matmul (f16 activations)");
    if (rc) return rc;
    cudaError_t e = cudaFuncSetAttribute(k_mm<TY>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM);
    if (e != cudaSuccess)
        return g4_err_set(a->err, G4_ERR_RANGE, "cuda matmul: shared memory opt-in: %s", cudaGetErrorString(e));
    const int64_t tiles_t = (a->T + G4M_BN - 1) / G4M_BN;
    const int64_t max_y = 65535; /* gridDim.y limit: weight tiles per launch */
    for (int64_t r0 = 0; r0 < a->N; r0 += max_y * G4M_BM) {
        const int64_t nr = a->N - r0 < max_y * G4M_BM ? a->N - r0 : max_y * G4M_BM;
        const dim3 grid((unsigned)tiles_t, (unsigned)((nr + G4M_BM - 1) / G4M_BM));
        k_mm<TY><<<grid, G4M_THREADS, C::SMEM, a->cu->stream>>>(a->W + (size_t)r0 * a->row_bytes, a->row_bytes, nr,
                                                                 (int)a->K, Xh, sh, a->T, a->Y + r0, a->ldy);
        rc = g4_cu_check_launch(a->err, "cuda matmul (tensor cores)");
        if (rc) return rc;
    }
    return G4_OK;
}


/* ====================================================================== */
/* host: the default path's kernels run on the host (test hooks)          */
/* ====================================================================== */
/* Each kernel's lanes (threads) one after another, calling the same
 * __host__ __device__ functions in the same order; shuffles as their
 * butterflies, the mma instructions from the PTX ISA's fragment layouts. */

/* lanes' values after a xor-butterfly over offsets o0 .. 1 (all lanes end equal) */
template <typename V, typename F> static void s_emu_butterfly(V *v, int o0, F op)
{
    V nv[32];
    for (int o = o0; o > 0; o >>= 1) {
        for (int l = 0; l < 32; l++) nv[l] = op(v[l], v[l ^ o]);
        for (int l = 0; l < 32; l++) v[l] = nv[l];
    }
}

/* k_act_q8 / k_act_qk / k_act_flt */
static void s_host_act(int fmt, const float *X, int64_t ldx, int64_t T, const g4a_rows &A)
{
    for (int64_t t = 0; t < T; t++) {
        const float *x = X + t * ldx;
        if (fmt == G4_DTYPE_Q8_0 || fmt == G4_DTYPE_Q8_1) {
            for (int64_t b = 0; b < A.nb; b++) {
                float am[32];
                for (int l = 0; l < 32; l++) am[l] = fmaxf(0.f, fabsf(x[b * 32 + l]));
                s_emu_butterfly(am, 16, [](float a, float c) { return fmaxf(a, c); });
                float d, id;
                g4a_q8_scale(am[0], &d, &id);
                int q[32];
                for (int l = 0; l < 32; l++) {
                    q[l] = g4a_q8_elem(x[b * 32 + l], id);
                    A.qs[t * A.K + b * 32 + l] = (int8_t)q[l];
                }
                if (fmt == G4_DTYPE_Q8_1) {
                    s_emu_butterfly(q, 16, [](int a, int c) { return a + c; });
                    A.s[t * A.nb + b] = (uint16_t)g4a_q8_1_s(d, q[0]);
                }
                A.h[t * A.nb + b] = (uint16_t)g4x_f2h(d);
            }
        } else if (fmt == G4_DTYPE_Q8_K) {
            for (int64_t b = 0; b < A.nb; b++) {
                const float *xb = x + b * 256;
                g4a_kmax m[32];
                for (int l = 0; l < 32; l++) {
                    m[l] = g4a_kmax_init();
                    for (int i = 0; i < 8; i++) g4a_kmax_step(m[l], xb[8 * l + i], 8 * l + i);
                }
                s_emu_butterfly(m, 16, [](const g4a_kmax &a, const g4a_kmax &c) { return g4a_kmax_join(a, c); });
                int8_t *qs = A.qs + t * A.K + b * 256;
                int16_t *bs = A.bs + (t * A.nb + b) * 16;
                if (m[0].amax == 0.f) {
                    memset(qs, 0, 256);
                    memset(bs, 0, 32);
                    A.f[t * A.nb + b] = 0.f;
                    continue;
                }
                const float iscale = g4a_qk_iscale(m[0].max);
                int sum[32];
                for (int l = 0; l < 32; l++) {
                    sum[l] = 0;
                    for (int i = 0; i < 8; i++) {
                        const int q = g4a_qk_elem(xb[8 * l + i], iscale);
                        qs[8 * l + i] = (int8_t)q;
                        sum[l] += q;
                    }
                }
                for (int l = 0; l < 32; l += 2) bs[l >> 1] = (int16_t)(sum[l] + sum[l + 1]);
                A.f[t * A.nb + b] = g4a_qk_d(iscale);
            }
        } else {
            for (int64_t k = 0; k < A.K; k++) {
                if (fmt == G4_DTYPE_F16) A.h[t * A.K + k] = (uint16_t)g4x_f2h(x[k]);
                else if (fmt == G4_DTYPE_BF16) A.h[t * A.K + k] = (uint16_t)g4x_f2bf(x[k]);
                else A.f[t * A.K + k] = x[k];
            }
        }
    }
}

/* k_mvq */
template <int TY>
static void s_host_mvq(const uint8_t *W, size_t rb, int64_t N, int nunits, const g4a_rows &A, int T, float *Y, int64_t ldy)
{
    typedef g4q_tr<TY> Tr;
    for (int64_t row = 0; row < N; row++) {
        const uint8_t *wr = W + (size_t)row * rb;
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        for (int u0 = 0; u0 < nunits; u0 += 32) {
            g4k_unit v[32];
            int is[8][32], im[8][32];
            float terms[8][32];
            for (int l = 0; l < 32; l++) {
                const int u = u0 + l, uu = u % Tr::UPB;
                typename Tr::raw raw = {};
                if (u < nunits) Tr::load(wr + (size_t)(u / Tr::UPB) * Tr::BB, uu, raw);
                g4k_view<TY>(raw, uu, v[l]);
                for (int t = 0; t < T; t++) {
                    is[t][l] = im[t][l] = 0;
                    if (u < nunits) {
                        const int8_t *qs;
                        const int16_t *bs;
                        float da, sa;
                        g4k_act_block<TY>(A, t, u / Tr::UPB, &qs, &bs, &da, &sa);
                        g4k_unit_ints<TY>(v[l], uu, qs, bs, &is[t][l], &im[t][l]);
                    }
                }
            }
            /* the shuffles over each group of UPB lanes (exact integer sums) */
            if (Tr::UPB > 1)
                for (int t = 0; t < T; t++) {
                    s_emu_butterfly(is[t], Tr::UPB / 2, [](int a, int c) { return a + c; });
                    s_emu_butterfly(im[t], Tr::UPB / 2, [](int a, int c) { return a + c; });
                }
            for (int l = 0; l < 32; l++) {
                const int u = u0 + l;
                if (u >= nunits || u % Tr::UPB) continue;
                for (int t = 0; t < T; t++) {
                    const int8_t *qs;
                    const int16_t *bs;
                    float da, sa;
                    g4k_act_block<TY>(A, t, u / Tr::UPB, &qs, &bs, &da, &sa);
                    terms[t][l / Tr::UPB] = g4k_block_term<TY>(is[t][l], im[t][l], v[l], da, sa);
                }
            }
            const int nblk = ((nunits - u0 < 32 ? nunits - u0 : 32) + Tr::UPB - 1) / Tr::UPB;
            for (int t = 0; t < T; t++)
                for (int j = 0; j < nblk; j++) acc[t] = g4x_add(acc[t], terms[t][j]);
        }
        for (int t = 0; t < T; t++) Y[t * ldy + row] = acc[t];
    }
}

/* k_mvf */
template <int TY>
static void s_host_mvf(const uint8_t *W, size_t rb, int64_t K, int64_t N, const g4a_rows &A, int T, float *Y, int64_t ldy,
                       bool units)
{
    typedef g4q_tr<TY> Tr;
    for (int64_t row = 0; row < N; row++) {
        const uint8_t *wr = W + (size_t)row * rb;
        double acc[8][32];
        for (int l = 0; l < 32; l++) {
            for (int t = 0; t < T; t++) acc[t][l] = 0.0;
            if (units) {
                for (int u = l; u < (int)(K / 32); u += 32) {
                    typename Tr::raw raw;
                    Tr::load(wr + (size_t)u * Tr::BB, 0, raw);
                    float w[32];
                    Tr::template decode<false>(raw, 0, w);
                    for (int t = 0; t < T; t++) {
                        float x[32];
                        g4a_flt32<TY>(A, t, (int64_t)u * 32, x);
                        for (int e = 0; e < 32; e++) acc[t][l] = g4x_dacc(acc[t][l], w[e], x[e]);
                    }
                }
            } else {
                for (int64_t k = l; k < K; k += 32) {
                    const float w = g4q_elem(TY, wr, k);
                    for (int t = 0; t < T; t++) acc[t][l] = g4x_dacc(acc[t][l], w, g4a_flt<TY>(A, t, k));
                }
            }
        }
        for (int t = 0; t < T; t++) {
            s_emu_butterfly(acc[t], 16, [](double a, double c) { return g4x_dadd(a, c); });
            Y[t * ldy + row] = (float)acc[t][0];
        }
    }
}

/* mma.m16n8k32 .s8 (c += A·B) and mma.m16n8k16 .f16 -> .f32 (d = A·B), from
 * the 32 lanes' registers */
static void s_emu_mma_s8(int c[32][4], const uint32_t a[32][4], const uint32_t b[32][2])
{
    int A[16][32], B[32][8];
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, tq = l & 3;
        for (int i = 0; i < 4; i++) {
            A[g][4 * tq + i] = (int8_t)(a[l][0] >> (8 * i));
            A[g + 8][4 * tq + i] = (int8_t)(a[l][1] >> (8 * i));
            A[g][16 + 4 * tq + i] = (int8_t)(a[l][2] >> (8 * i));
            A[g + 8][16 + 4 * tq + i] = (int8_t)(a[l][3] >> (8 * i));
            B[4 * tq + i][g] = (int8_t)(b[l][0] >> (8 * i));
            B[16 + 4 * tq + i][g] = (int8_t)(b[l][1] >> (8 * i));
        }
    }
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, tq = l & 3;
        for (int e = 0; e < 4; e++) {
            const int m = g + 8 * (e >> 1), n = 2 * tq + (e & 1);
            int s = 0;
            for (int k = 0; k < 32; k++) s += A[m][k] * B[k][n];
            c[l][e] += s;
        }
    }
}

static void s_emu_mma_f16(float d[32][4], const uint32_t a[32][4], const uint32_t b[32][2])
{
    float A[16][16], B[16][8];
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, tq = l & 3;
        for (int i = 0; i < 2; i++) {
            A[g][2 * tq + i] = g4q_h2f(a[l][0] >> (16 * i));
            A[g + 8][2 * tq + i] = g4q_h2f(a[l][1] >> (16 * i));
            A[g][8 + 2 * tq + i] = g4q_h2f(a[l][2] >> (16 * i));
            A[g + 8][8 + 2 * tq + i] = g4q_h2f(a[l][3] >> (16 * i));
            B[2 * tq + i][g] = g4q_h2f(b[l][0] >> (16 * i));
            B[8 + 2 * tq + i][g] = g4q_h2f(b[l][1] >> (16 * i));
        }
    }
    for (int l = 0; l < 32; l++) {
        const int g = l >> 2, tq = l & 3;
        for (int e = 0; e < 4; e++) {
            const int m = g + 8 * (e >> 1), n = 2 * tq + (e & 1);
            double s = 0;
            for (int k = 0; k < 16; k++) s += (double)A[m][k] * B[k][n];
            d[l][e] = (float)s;
        }
    }
}

/* k_mmq, one tile after another (one stage: the pipelining changes no number) */
template <int TY>
static int s_host_mmq(const uint8_t *W, size_t rb, int64_t N, int nunits, const g4a_rows &A, int64_t T, float *Y, int64_t ldy)
{
    typedef g4q_tr<TY> Tr;
    typedef g4p_cfg<TY> C;
    uint8_t *st = (uint8_t *)malloc(C::STAGE);
    struct lanes {
        float acc[32][2][4][4];
        int hi[32][2][4][4], lo[32][2][4][4];
    };
    lanes *L = (lanes *)malloc(sizeof(lanes) * 8);
    if (!st || !L) {
        free(st), free(L);
        return G4_ERR_NOMEM;
    }
    const int nsteps = (nunits + 7) / 8;
    for (int64_t n0 = 0; n0 < N; n0 += C::BM)
        for (int64_t t0 = 0; t0 < T; t0 += C::BN) {
            memset(L, 0, sizeof(lanes) * 8);
            for (int s = 0; s < nsteps; s++) {
                memset(st, 0x5A, C::STAGE); /* what the kernel does not write must not matter */
                for (int tid = 0; tid < G4P_THREADS; tid++) {
                    typename Tr::raw raw[2];
                    bool ok[2];
                    uint32_t xr[5];
                    g4p_load_w<TY>(W, rb, N, nunits, n0, s, tid, raw, ok);
                    g4p_load_xs<TY>(A, T, t0, s, tid, xr);
                    g4p_store_w<TY>(raw, ok, s, tid, st);
                    g4p_store_xs<TY>(xr, tid, st);
                }
                for (int c = 0; c < C::BN * 16; c++) {
                    const int8_t *src;
                    int dst;
                    if (g4p_x_chunk<TY>(A, T, t0, s, c, &src, &dst)) memcpy(st + dst, src, 16);
                    else memset(st + dst, 0, 16);
                }
                for (int warp = 0; warp < 8; warp++) {
                    const int wm = warp & 1, wn = warp >> 1;
                    lanes &w = L[warp];
                    static uint32_t a[2][2][32][4], b[4][32][2];
                    if (C::KQ) {
                        memset(w.hi, 0, sizeof w.hi);
                        memset(w.lo, 0, sizeof w.lo);
                        for (int sl = 0; sl < 8; sl++) {
                            for (int l = 0; l < 32; l++) {
                                for (int i = 0; i < 2; i++) {
                                    g4p_frag_a<TY>(st, wm * 32 + 16 * i, sl, l, a[0][i][l]);
                                    g4p_frag_a<TY>(st + C::BM * C::PITCH, wm * 32 + 16 * i, sl, l, a[1][i][l]);
                                }
                                for (int j = 0; j < 4; j++) g4p_frag_b<TY>(st, wn * 32 + 8 * j, sl, l, b[j][l]);
                            }
                            for (int i = 0; i < 2; i++)
                                for (int j = 0; j < 4; j++) {
                                    int ch[32][4], cl[32][4];
                                    for (int l = 0; l < 32; l++)
                                        for (int e = 0; e < 4; e++) ch[l][e] = w.hi[l][i][j][e], cl[l][e] = w.lo[l][i][j][e];
                                    s_emu_mma_s8(ch, a[0][i], b[j]);
                                    s_emu_mma_s8(cl, a[1][i], b[j]);
                                    for (int l = 0; l < 32; l++)
                                        for (int e = 0; e < 4; e++) w.hi[l][i][j][e] = ch[l][e], w.lo[l][i][j][e] = cl[l][e];
                                }
                        }
                        for (int i = 0; i < 2; i++)
                            for (int j = 0; j < 4; j++) {
                                float mins[32][4];
                                memset(mins, 0, sizeof mins);
                                if (C::MINS) {
                                    uint32_t am[32][4], bm[32][2];
                                    for (int l = 0; l < 32; l++) {
                                        g4p_frag_am<TY>(st, wm * 32 + 16 * i, l, am[l]);
                                        g4p_frag_bm<TY>(st, wn * 32 + 8 * j, l, bm[l]);
                                    }
                                    s_emu_mma_f16(mins, am, bm);
                                }
                                for (int l = 0; l < 32; l++)
                                    g4p_epi_k<TY>(st, wm * 32 + 16 * i, wn * 32 + 8 * j, l, w.hi[l][i][j], w.lo[l][i][j],
                                                  mins[l], w.acc[l][i][j]);
                            }
                    } else {
                        for (int sl = 0; sl < 8; sl++) {
                            if (s * 8 + sl >= nunits) break;
                            for (int l = 0; l < 32; l++) {
                                for (int i = 0; i < 2; i++) g4p_frag_a<TY>(st, wm * 32 + 16 * i, sl, l, a[0][i][l]);
                                for (int j = 0; j < 4; j++) g4p_frag_b<TY>(st, wn * 32 + 8 * j, sl, l, b[j][l]);
                            }
                            for (int i = 0; i < 2; i++)
                                for (int j = 0; j < 4; j++) {
                                    int c[32][4];
                                    memset(c, 0, sizeof c);
                                    s_emu_mma_s8(c, a[0][i], b[j]);
                                    for (int l = 0; l < 32; l++)
                                        g4p_epi_b<TY>(st, wm * 32 + 16 * i, wn * 32 + 8 * j, sl, l, c[l], w.acc[l][i][j]);
                                }
                        }
                    }
                }
            }
            for (int warp = 0; warp < 8; warp++)
                for (int l = 0; l < 32; l++)
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 4; j++)
                            g4p_store_y(Y, ldy, N, T, n0, t0, (warp & 1) * 32 + 16 * i, (warp >> 1) * 32 + 8 * j, l,
                                        L[warp].acc[l][i][j]);
        }
    free(st);
    free(L);
    return G4_OK;
}

/* k_mmf */
template <int TY>
static int s_host_mmf(const uint8_t *W, size_t rb, int64_t N, int64_t K, const g4a_rows &A, int64_t T, float *Y, int64_t ldy)
{
    static float Ws[G4F_KS][G4F_TILE + 1], Xs[G4F_KS][G4F_TILE + 1];
    double (*acc)[4][4] = (double (*)[4][4])malloc(sizeof(double) * 16 * G4P_THREADS);
    if (!acc) return G4_ERR_NOMEM;
    for (int64_t n0 = 0; n0 < N; n0 += G4F_TILE)
        for (int64_t t0 = 0; t0 < T; t0 += G4F_TILE) {
            memset(acc, 0, sizeof(double) * 16 * G4P_THREADS);
            for (int64_t k0 = 0; k0 < K; k0 += G4F_KS) {
                for (int tid = 0; tid < G4P_THREADS; tid++) g4f_load_tile<TY>(W, rb, N, K, A, T, n0, t0, k0, tid, Ws, Xs);
                for (int tid = 0; tid < G4P_THREADS; tid++) g4f_tile_step<TY>(tid, Ws, Xs, acc[tid]);
            }
            for (int tid = 0; tid < G4P_THREADS; tid++) g4f_store_tile(Y, ldy, N, T, n0, t0, tid, acc[tid]);
        }
    free(acc);
    return G4_OK;
}

/* the block size of t's activation format (1: the float formats) */
static int64_t s_act_qk(int fmt) { return fmt == G4_DTYPE_Q8_K ? 256 : (fmt == G4_DTYPE_Q8_0 || fmt == G4_DTYPE_Q8_1 ? 32 : 1); }

extern "C" int g4_cu_type_ok(g4_dtype_t t);

extern "C" int g4_cu_quantize_act_host(g4_dtype_t t, const float *x, void *out, int64_t K)
{
    if (!g4_cu_type_ok(t) || K < 0) return G4_ERR_RANGE;
    const int fmt = g4a_format(t);
    const int64_t qk = s_act_qk(fmt);
    if (K % qk || (qk > 1 && K % g4_dtype_traits(t)->block_size)) return G4_ERR_RANGE;
    g4a_rows A;
    const size_t n = g4a_layout(fmt, K, 1, NULL, NULL);
    uint8_t *buf = (uint8_t *)aligned_alloc(256, n ? n : 256);
    if (!buf) return G4_ERR_NOMEM;
    g4a_layout(fmt, K, 1, buf, &A);
    s_host_act(fmt, x, K, 1, A);
    uint8_t *o = (uint8_t *)out;
    for (int64_t b = 0; b < (qk > 1 ? K / qk : 0); b++) {
        if (fmt == G4_DTYPE_Q8_0) {
            g4_block_q8_0 blk;
            blk.d = A.h[b];
            memcpy(blk.qs, A.qs + b * 32, 32);
            memcpy(o + b * sizeof blk, &blk, sizeof blk);
        } else if (fmt == G4_DTYPE_Q8_1) {
            g4_block_q8_1 blk;
            blk.d = A.h[b], blk.s = A.s[b];
            memcpy(blk.qs, A.qs + b * 32, 32);
            memcpy(o + b * sizeof blk, &blk, sizeof blk);
        } else {
            g4_block_q8_K blk;
            blk.d = A.f[b];
            memcpy(blk.qs, A.qs + b * 256, 256);
            memcpy(blk.bsums, A.bs + b * 16, 32);
            memcpy(o + b * sizeof blk, &blk, sizeof blk);
        }
    }
    if (fmt == G4_DTYPE_F16 || fmt == G4_DTYPE_BF16) memcpy(o, A.h, (size_t)K * 2);
    else if (fmt == G4_DTYPE_F32) memcpy(o, A.f, (size_t)K * 4);
    free(buf);
    return G4_OK;
}

template <int TY> static void s_host_block_dots(const uint8_t *w, const uint8_t *act, int64_t nb, float *terms)
{
    typedef g4q_tr<TY> Tr;
    const int fmt = g4a_format(TY);
    const size_t ab = fmt == G4_DTYPE_Q8_K ? sizeof(g4_block_q8_K) : (fmt == G4_DTYPE_Q8_1 ? sizeof(g4_block_q8_1) : sizeof(g4_block_q8_0));
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *ap = act + (size_t)b * ab;
        const int8_t *qs;
        const int16_t *bs = NULL;
        float da, sa = 0.f;
        if (fmt == G4_DTYPE_Q8_K) {
            memcpy(&da, ap, 4);
            qs = (const int8_t *)(ap + 4);
            bs = (const int16_t *)(ap + 4 + 256);
        } else {
            da = g4q_h2f(g4q_ld16(ap));
            if (fmt == G4_DTYPE_Q8_1) sa = g4q_h2f(g4q_ld16(ap + 2));
            qs = (const int8_t *)(ap + (fmt == G4_DTYPE_Q8_1 ? 4 : 2));
        }
        int isum = 0, imin = 0;
        g4k_unit v0;
        for (int uu = 0; uu < Tr::UPB; uu++) {
            typename Tr::raw raw;
            Tr::load(w + (size_t)b * Tr::BB, uu, raw);
            g4k_unit v;
            g4k_view<TY>(raw, uu, v);
            if (uu == 0) v0 = v;
            int is, im;
            g4k_unit_ints<TY>(v, uu, qs, bs, &is, &im);
            isum += is, imin += im;
        }
        terms[b] = g4k_block_term<TY>(isum, imin, v0, da, sa);
    }
}

extern "C" int g4_cu_block_dots_host(g4_dtype_t t, const void *w_row, const void *act, int64_t K, float *terms)
{
    if (!g4_cu_type_ok(t) || t == G4_DTYPE_F32 || t == G4_DTYPE_F16 || t == G4_DTYPE_BF16) return G4_ERR_RANGE;
    const int64_t qk = g4_dtype_traits(t)->block_size;
    if (K < 0 || K % qk) return G4_ERR_RANGE;
    const uint8_t *w = (const uint8_t *)w_row, *a = (const uint8_t *)act;
    switch (t) {
    case G4_DTYPE_Q4_0: s_host_block_dots<G4_DTYPE_Q4_0>(w, a, K / qk, terms); break;
    case G4_DTYPE_Q4_1: s_host_block_dots<G4_DTYPE_Q4_1>(w, a, K / qk, terms); break;
    case G4_DTYPE_Q5_0: s_host_block_dots<G4_DTYPE_Q5_0>(w, a, K / qk, terms); break;
    case G4_DTYPE_Q5_1: s_host_block_dots<G4_DTYPE_Q5_1>(w, a, K / qk, terms); break;
    case G4_DTYPE_Q8_0: s_host_block_dots<G4_DTYPE_Q8_0>(w, a, K / qk, terms); break;
    case G4_DTYPE_Q4_K: s_host_block_dots<G4_DTYPE_Q4_K>(w, a, K / qk, terms); break;
    case G4_DTYPE_Q5_K: s_host_block_dots<G4_DTYPE_Q5_K>(w, a, K / qk, terms); break;
    case G4_DTYPE_Q6_K: s_host_block_dots<G4_DTYPE_Q6_K>(w, a, K / qk, terms); break;
    default: return G4_ERR_RANGE;
    }
    return G4_OK;
}

template <int TY>
static int s_host_matmul(const uint8_t *W, size_t rb, int64_t K, int64_t N, const g4a_rows &A, int64_t T, float *Y, int64_t ldy)
{
    constexpr bool flt = TY == G4_DTYPE_F32 || TY == G4_DTYPE_F16 || TY == G4_DTYPE_BF16;
    if constexpr (flt) {
        if (T <= 8) s_host_mvf<TY>(W, rb, K, N, A, (int)T, Y, ldy, K % 32 == 0 && ((uintptr_t)W & 15) == 0 && rb % 16 == 0);
        else return s_host_mmf<TY>(W, rb, N, K, A, T, Y, ldy);
    } else {
        if (T <= 8) s_host_mvq<TY>(W, rb, N, (int)(K / 32), A, (int)T, Y, ldy);
        else return s_host_mmq<TY>(W, rb, N, (int)(K / 32), A, T, Y, ldy);
    }
    return G4_OK;
}

extern "C" int g4_cu_matmul_host(g4_dtype_t t, const void *W, size_t row_bytes, int64_t K, int64_t N, const float *X,
                                 int64_t ldx, int64_t T, float *Y, int64_t ldy)
{
    if (!g4_cu_type_ok(t) || K <= 0 || N < 0 || T < 0 || K % g4_dtype_traits(t)->block_size || K > INT_MAX / 2)
        return G4_ERR_RANGE;
    if (row_bytes < g4_dtype_row_bytes(t, (uint64_t)K) || (T > 1 && (ldx < K || ldy < N))) return G4_ERR_RANGE;
    if (N == 0 || T == 0) return G4_OK;
    const int fmt = g4a_format(t);
    g4a_rows A;
    const size_t n = g4a_layout(fmt, K, T, NULL, NULL);
    uint8_t *buf = (uint8_t *)aligned_alloc(256, n);
    if (!buf) return G4_ERR_NOMEM;
    g4a_layout(fmt, K, T, buf, &A);
    s_host_act(fmt, X, ldx, T, A);
    const uint8_t *w = (const uint8_t *)W;
    int rc;
    switch (t) {
    case G4_DTYPE_F32: rc = s_host_matmul<G4_DTYPE_F32>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_F16: rc = s_host_matmul<G4_DTYPE_F16>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_BF16: rc = s_host_matmul<G4_DTYPE_BF16>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q4_0: rc = s_host_matmul<G4_DTYPE_Q4_0>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q4_1: rc = s_host_matmul<G4_DTYPE_Q4_1>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q5_0: rc = s_host_matmul<G4_DTYPE_Q5_0>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q5_1: rc = s_host_matmul<G4_DTYPE_Q5_1>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q8_0: rc = s_host_matmul<G4_DTYPE_Q8_0>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q4_K: rc = s_host_matmul<G4_DTYPE_Q4_K>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q5_K: rc = s_host_matmul<G4_DTYPE_Q5_K>(w, row_bytes, K, N, A, T, Y, ldy); break;
    case G4_DTYPE_Q6_K: rc = s_host_matmul<G4_DTYPE_Q6_K>(w, row_bytes, K, N, A, T, Y, ldy); break;
    default: rc = G4_ERR_RANGE; break;
    }
    free(buf);
    return rc;
}

/* ---- the default path -------------------------------------------------- */

template <int TY, int T> static void s_launch_mvq(const g4m_args_t *a, const g4a_rows &A)
{
    k_mvq<TY, T><<<g4_cu_blocks(a->N, G4K_MV_WARPS), G4K_MV_WARPS * 32, 0, a->cu->stream>>>(
        a->W, a->row_bytes, a->N, (int)(a->K / 32), A, a->Y, a->ldy);
}

template <int TY, int T> static void s_launch_mvf(const g4m_args_t *a, const g4a_rows &A, bool units)
{
    if (units)
        k_mvf<TY, T, true><<<g4_cu_blocks(a->N, G4K_MV_WARPS), G4K_MV_WARPS * 32, 0, a->cu->stream>>>(
            a->W, a->row_bytes, a->K, a->N, A, a->Y, a->ldy);
    else
        k_mvf<TY, T, false><<<g4_cu_blocks(a->N, G4K_MV_WARPS), G4K_MV_WARPS * 32, 0, a->cu->stream>>>(
            a->W, a->row_bytes, a->K, a->N, A, a->Y, a->ldy);
}

template <int TY> static int s_run_exact(g4m_args_t *a, int aligned)
{
    constexpr bool flt = TY == G4_DTYPE_F32 || TY == G4_DTYPE_F16 || TY == G4_DTYPE_BF16;
    const int fmt = g4a_format(TY);
    g4a_rows A;
    const size_t n = g4a_layout(fmt, a->K, a->T, NULL, NULL);
    uint8_t *ws = (uint8_t *)g4_cu_ws(a->cu, n);
    if (!ws) return s_ws_fail(a, n);
    g4a_layout(fmt, a->K, a->T, ws, &A);

    /* 1. the activation rows in the weight type's format */
    const unsigned ty = (unsigned)(a->T < 65535 ? a->T : 65535);
    if (fmt == G4_DTYPE_Q8_0)
        k_act_q8<false><<<dim3(g4_cu_blocks(A.nb, G4A_WARPS), ty), G4A_WARPS * 32, 0, a->cu->stream>>>(a->X, a->ldx, a->T, A);
    else if (fmt == G4_DTYPE_Q8_1)
        k_act_q8<true><<<dim3(g4_cu_blocks(A.nb, G4A_WARPS), ty), G4A_WARPS * 32, 0, a->cu->stream>>>(a->X, a->ldx, a->T, A);
    else if (fmt == G4_DTYPE_Q8_K)
        k_act_qk<<<dim3(g4_cu_blocks(A.nb, G4A_WARPS), ty), G4A_WARPS * 32, 0, a->cu->stream>>>(a->X, a->ldx, a->T, A);
    else {
        const int64_t nel = a->T * a->K;
        const unsigned nbk = (unsigned)(nel / 256 + 1 < 4096 ? nel / 256 + 1 : 4096);
        if (fmt == G4_DTYPE_F16) k_act_flt<G4_DTYPE_F16><<<nbk, 256, 0, a->cu->stream>>>(a->X, a->ldx, a->T, A);
        else if (fmt == G4_DTYPE_BF16) k_act_flt<G4_DTYPE_BF16><<<nbk, 256, 0, a->cu->stream>>>(a->X, a->ldx, a->T, A);
        else k_act_flt<G4_DTYPE_F32><<<nbk, 256, 0, a->cu->stream>>>(a->X, a->ldx, a->T, A);
    }
    int rc = g4_cu_check_launch(a->err, "cuda matmul (activation rows)");
    if (rc) return rc;

    /* 2. the products */
    if (a->T <= 8) {
        if constexpr (flt) {
            const bool units = aligned && a->K % 32 == 0;
            switch (a->T) {
            case 1: s_launch_mvf<TY, 1>(a, A, units); break;
            case 2: s_launch_mvf<TY, 2>(a, A, units); break;
            case 3: s_launch_mvf<TY, 3>(a, A, units); break;
            case 4: s_launch_mvf<TY, 4>(a, A, units); break;
            case 5: s_launch_mvf<TY, 5>(a, A, units); break;
            case 6: s_launch_mvf<TY, 6>(a, A, units); break;
            case 7: s_launch_mvf<TY, 7>(a, A, units); break;
            default: s_launch_mvf<TY, 8>(a, A, units); break;
            }
        } else {
            switch (a->T) {
            case 1: s_launch_mvq<TY, 1>(a, A); break;
            case 2: s_launch_mvq<TY, 2>(a, A); break;
            case 3: s_launch_mvq<TY, 3>(a, A); break;
            case 4: s_launch_mvq<TY, 4>(a, A); break;
            case 5: s_launch_mvq<TY, 5>(a, A); break;
            case 6: s_launch_mvq<TY, 6>(a, A); break;
            case 7: s_launch_mvq<TY, 7>(a, A); break;
            default: s_launch_mvq<TY, 8>(a, A); break;
            }
        }
        return g4_cu_check_launch(a->err, "cuda matmul (matrix x vector)");
    }

    const int64_t max_y = 65535; /* gridDim.y: weight tiles per launch */
    if constexpr (flt) {
        const int64_t tiles_t = (a->T + G4F_TILE - 1) / G4F_TILE;
        for (int64_t r0 = 0; r0 < a->N; r0 += max_y * G4F_TILE) {
            const int64_t nr = a->N - r0 < max_y * G4F_TILE ? a->N - r0 : max_y * G4F_TILE;
            const dim3 grid((unsigned)tiles_t, (unsigned)((nr + G4F_TILE - 1) / G4F_TILE));
            k_mmf<TY><<<grid, G4P_THREADS, 0, a->cu->stream>>>(a->W + (size_t)r0 * a->row_bytes, a->row_bytes, nr, a->K, A,
                                                                a->T, a->Y + r0, a->ldy);
            rc = g4_cu_check_launch(a->err, "cuda matmul (double sums)");
            if (rc) return rc;
        }
        return G4_OK;
    } else {
    typedef g4p_cfg<TY> C;
    if ((size_t)C::SMEM > a->cu->smem_optin)
        return g4_err_set(a->err, G4_ERR_RANGE, "cuda matmul: %d bytes of shared memory per block, the device has %zu",
                          (int)C::SMEM, a->cu->smem_optin);
    cudaError_t e = cudaFuncSetAttribute(k_mmq<TY>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM);
    if (e != cudaSuccess)
        return g4_err_set(a->err, G4_ERR_RANGE, "cuda matmul: shared memory opt-in: %s", cudaGetErrorString(e));
    const int64_t tiles_t = (a->T + C::BN - 1) / C::BN;
    for (int64_t r0 = 0; r0 < a->N; r0 += max_y * C::BM) {
        const int64_t nr = a->N - r0 < max_y * C::BM ? a->N - r0 : max_y * C::BM;
        const dim3 grid((unsigned)tiles_t, (unsigned)((nr + C::BM - 1) / C::BM));
        k_mmq<TY><<<grid, G4P_THREADS, C::SMEM, a->cu->stream>>>(a->W + (size_t)r0 * a->row_bytes, a->row_bytes, nr,
                                                                  (int)(a->K / 32), A, a->T, a->Y + r0, a->ldy);
        rc = g4_cu_check_launch(a->err, "cuda matmul (int8 tensor cores)");
        if (rc) return rc;
    }
    return G4_OK;
    }
}

/* G4_CUDA_MM=fast: the f32 / f16 tensor-core kernels (read once) */
static int s_fast_mode(void)
{
    static const int fast = [] {
        const char *e = getenv("G4_CUDA_MM");
        return e && strcmp(e, "fast") == 0 ? 1 : 0;
    }();
    return fast;
}

extern "C" int g4_cu_matmul(g4_cu_t *cu, g4_dtype_t t, const void *dW, size_t row_bytes, int64_t K, int64_t N,
                            const float *dX, int64_t ldx, int64_t T, float *dY, int64_t ldy, g4_err_t *err)
{
    if (!cu) return g4_err_set(err, G4_ERR_STATE, "cuda matmul: no device");
    if (!g4_cu_type_ok(t))
        return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: weights of type %s are not supported", g4_dtype_name(t));
    const uint32_t qk = g4_dtype_traits(t)->block_size;
    if (K <= 0 || N < 0 || T < 0 || K % qk || K > INT_MAX / 2)
        return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: bad shape K=%lld N=%lld T=%lld (%s)", (long long)K,
                          (long long)N, (long long)T, g4_dtype_name(t));
    if (N == 0 || T == 0) return G4_OK;
    if (!dW || !dX || !dY) return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: NULL matrix");
    if (row_bytes < g4_dtype_row_bytes(t, (uint64_t)K))
        return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: rows of %zu bytes, %s K=%lld needs %llu", row_bytes,
                          g4_dtype_name(t), (long long)K, (unsigned long long)g4_dtype_row_bytes(t, (uint64_t)K));
    if (T > 1 && (ldx < K || ldy < N))
        return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: row strides ldx=%lld ldy=%lld below K=%lld N=%lld",
                          (long long)ldx, (long long)ldy, (long long)K, (long long)N);
    const int flt = t == G4_DTYPE_F32 || t == G4_DTYPE_F16 || t == G4_DTYPE_BF16;
    /* what the unit loads need of the rows: 16-byte loads (Q4_K, Q5_K, the
     * float types), 4-byte (Q4_1, Q5_1), 2-byte (the rest) */
    const size_t need = flt || t == G4_DTYPE_Q4_K || t == G4_DTYPE_Q5_K ? 16 : (t == G4_DTYPE_Q4_1 || t == G4_DTYPE_Q5_1 ? 4 : 2);
    const int aligned = ((uintptr_t)dW % need) == 0 && row_bytes % need == 0;
    g4m_args_t a = {cu, (const uint8_t *)dW, row_bytes, K, N, dX, ldx, T, dY, ldy, err};
    if (flt && !aligned &&
        ((uintptr_t)dW % (t == G4_DTYPE_F32 ? 4 : 2) || row_bytes % (t == G4_DTYPE_F32 ? 4 : 2)))
        return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: %s rows not aligned to their elements", g4_dtype_name(t));
    if (!flt && !aligned)
        return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: %s weights at %p, rows of %zu bytes: need %zu-byte alignment",
                          g4_dtype_name(t), dW, row_bytes, need);
    if (s_fast_mode()) {
        if (flt && (!aligned || K % 32)) return s_run_elem(&a, t);
        switch (t) {
        case G4_DTYPE_F32: return s_run<G4_DTYPE_F32>(&a);
        case G4_DTYPE_F16: return s_run<G4_DTYPE_F16>(&a);
        case G4_DTYPE_BF16: return s_run<G4_DTYPE_BF16>(&a);
        case G4_DTYPE_Q4_0: return s_run<G4_DTYPE_Q4_0>(&a);
        case G4_DTYPE_Q4_1: return s_run<G4_DTYPE_Q4_1>(&a);
        case G4_DTYPE_Q5_0: return s_run<G4_DTYPE_Q5_0>(&a);
        case G4_DTYPE_Q5_1: return s_run<G4_DTYPE_Q5_1>(&a);
        case G4_DTYPE_Q8_0: return s_run<G4_DTYPE_Q8_0>(&a);
        case G4_DTYPE_Q4_K: return s_run<G4_DTYPE_Q4_K>(&a);
        case G4_DTYPE_Q5_K: return s_run<G4_DTYPE_Q5_K>(&a);
        case G4_DTYPE_Q6_K: return s_run<G4_DTYPE_Q6_K>(&a);
        default: break;
        }
    } else {
        switch (t) {
        case G4_DTYPE_F32: return s_run_exact<G4_DTYPE_F32>(&a, aligned);
        case G4_DTYPE_F16: return s_run_exact<G4_DTYPE_F16>(&a, aligned);
        case G4_DTYPE_BF16: return s_run_exact<G4_DTYPE_BF16>(&a, aligned);
        case G4_DTYPE_Q4_0: return s_run_exact<G4_DTYPE_Q4_0>(&a, aligned);
        case G4_DTYPE_Q4_1: return s_run_exact<G4_DTYPE_Q4_1>(&a, aligned);
        case G4_DTYPE_Q5_0: return s_run_exact<G4_DTYPE_Q5_0>(&a, aligned);
        case G4_DTYPE_Q5_1: return s_run_exact<G4_DTYPE_Q5_1>(&a, aligned);
        case G4_DTYPE_Q8_0: return s_run_exact<G4_DTYPE_Q8_0>(&a, aligned);
        case G4_DTYPE_Q4_K: return s_run_exact<G4_DTYPE_Q4_K>(&a, aligned);
        case G4_DTYPE_Q5_K: return s_run_exact<G4_DTYPE_Q5_K>(&a, aligned);
        case G4_DTYPE_Q6_K: return s_run_exact<G4_DTYPE_Q6_K>(&a, aligned);
        default: break;
        }
    }
    return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: type %s", g4_dtype_name(t));
}
