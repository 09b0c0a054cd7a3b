/* g4_cuda_mm — g4_cu_matmul (g4_cuda.h): Y = X · Wᵀ with quantized weights.
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
 * g4_cu_ws does when the workspace grows. */
#include <limits.h>
#include <stdint.h>
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
    if (flt && (!aligned || K % 32)) {
        if ((uintptr_t)dW % (t == G4_DTYPE_F32 ? 4 : 2) || row_bytes % (t == G4_DTYPE_F32 ? 4 : 2))
            return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: %s rows not aligned to their elements", g4_dtype_name(t));
        return s_run_elem(&a, t);
    }
    if (!aligned)
        return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: %s weights at %p, rows of %zu bytes: need %zu-byte alignment",
                          g4_dtype_name(t), dW, row_bytes, need);
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
    default: return g4_err_set(err, G4_ERR_RANGE, "cuda matmul: type %s", g4_dtype_name(t));
    }
}
