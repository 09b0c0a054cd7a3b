/* g4_cuda_ops — the CUDA backend's layer kernels other than the matrix
 * products (g4_cuda.h): RMS norm (alone and fused with the residual add),
 * scale, soft-cap, GeGLU, products, NEOX RoPE, the KV-cache row write,
 * attention, the MoE combine, row gather / scatter.
 *
 * Each follows its CPU twin's arithmetic where that is cheap: products and
 * sums written with __fmul_rn / __fadd_rn where the twin rounds each step
 * (nvcc would otherwise fuse them), the RMS sum of squares in double, RoPE's
 * angles from the host's powf and the twin's chain of products, GELU through
 * the same f16 roundings. No fast-math anywhere (sinf of a 30000-radian
 * angle needs the full argument reduction).
 *
 * Attention (g4_cu_attention) is flash-style on the CUDA cores, f32 scores:
 *   - a block (1..4 warps) owns up to 16 query vectors that share one KV
 *     head: a tile of rows (prefill: rows of one sequence) × the KV head's
 *     query heads, or one row × its heads when the tile's rows use different
 *     caches (a decode batch: each block then takes one row, the other
 *     blocks of the tile exit at once). Each warp owns QW (1, 2 or 4)
 *     query vectors.
 *   - the block walks its positions in tiles of 32: the 32 K rows and 32 V
 *     rows are copied to shared memory with cp.async (K rows padded 16 bytes
 *     so that lane j reading row j is free of bank conflicts); each lane
 *     scores one position against the warp's query vectors (q in shared
 *     memory, read as broadcasts), the warp updates its online softmax
 *     (max and rescale in f32), writes the weights to shared memory, then
 *     each lane accumulates hd/32 output dimensions of Σ p·V.
 *   - long ranges are split over blockIdx.z (flash-decoding): the union of
 *     the block's rows' ranges is cut into S chunks of at least 256
 *     positions (a multiple of 32); each block leaves (max, sum,
 *     unnormalised Σ p·V) in the workspace and k_attn_combine merges them.
 *     S is chosen so that about 4 blocks per multiprocessor run.
 *   - shared memory: 32 padded K rows + 32 V rows + the block's q vectors
 *     (f32) + the warps' weights: 99 KiB at hd 512 with an F16 cache, 49 KiB
 *     at hd 256 (the H100 allows 227 KiB; with less, fewer query vectors
 *     per block, and a clean G4_ERR_RANGE when even one does not fit, e.g.
 *     an F32 cache of hd 512 on a 99 KiB GPU).
 * The cache's row p of a sequence is cell p % cells; per-row cache bases
 * should be 16-byte aligned for the asynchronous copies (any cudaMalloc'd
 * base is; others take a slower element-wise copy). A block reads only
 * positions in the union of its rows' ranges; a row's weight for a
 * position outside its own range is exactly 0, so that position's V adds
 * nothing unless it holds inf or NaN (0·inf). dout may be dq (same ld):
 * every q is read before the output that overwrites it is written.
 *
 * g4_cu_attention_rows is attention in the CPU path's own arithmetic
 * (core/model/g4_attn.c), bit for bit: see its section below. */
#include <math.h>
#include <stdint.h>

/* (the C headers have no extern "C" of their own) */
extern "C" {
#include "g4_dtype.h"
#include "g4_err.h"
}
#include "g4_cuda_internal.cuh"

#define G4_CU_THREADS 256

/* ====================================================================== */
/* small device helpers                                                   */
/* ====================================================================== */

static __device__ __forceinline__ float s_warp_max(float v)
{
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static __device__ __forceinline__ float s_warp_sum(float v)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ double s_warp_sum_d(double v)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* the sum over the block (blockDim.x a multiple of 32), to every thread;
 * red: 33 doubles of shared memory */
static __device__ double s_block_sum_d(double v, double *red)
{
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    v = s_warp_sum_d(v);
    if (lane == 0) red[w] = v;
    __syncthreads();
    if (w == 0) {
        double t = lane < nw ? red[lane] : 0.0;
        t = s_warp_sum_d(t);
        if (lane == 0) red[32] = t;
    }
    __syncthreads();
    const double r = red[32];
    __syncthreads(); /* (red is the next row's) */
    return r;
}

/* grid for rows × columns: x over the columns (grid-stride), y over the rows */
static dim3 s_grid_rows(int64_t n, int64_t R)
{
    int64_t gx = (n + G4_CU_THREADS - 1) / G4_CU_THREADS, gy = R;
    if (gx > 1024) gx = 1024;
    if (gy > 65535) gy = 65535;
    return dim3((unsigned)(gx > 0 ? gx : 1), (unsigned)(gy > 0 ? gy : 1), 1);
}

static unsigned s_grid_1d(int64_t n)
{
    int64_t g = (n + G4_CU_THREADS - 1) / G4_CU_THREADS;
    if (g > 65535) g = 65535;
    return (unsigned)(g > 0 ? g : 1);
}

#define S_ROWS_LOOP(r, R) for (int64_t r = blockIdx.y; r < (R); r += gridDim.y)
#define S_COLS_LOOP(i, n) for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)gridDim.x * blockDim.x)

/* ====================================================================== */
/* norms, element-wise                                                    */
/* ====================================================================== */

/* one block per row: y = (x·scale)·w, or with add: y += (x·scale)·w */
__global__ void __launch_bounds__(G4_CU_THREADS) k_rmsnorm(const float *x, int64_t ldx, const float *w, float *y,
                                                           int64_t ldy, int64_t n, int64_t R, float eps, int add)
{
    __shared__ double red[33];
    for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
        const float *xr = x + r * ldx;
        float *yr = y + r * ldy;
        double s = 0.0;
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = xr[i];
            s += (double)__fmul_rn(v, v); /* each square in f32, as g4_rmsnorm_ref */
        }
        s = s_block_sum_d(s, red);
        const float mean = (float)(s / (double)n);
        const float scale = 1.0f / sqrtf(mean + eps);
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            float v = __fmul_rn(xr[i], scale);
            if (w) v = __fmul_rn(v, w[i]);
            yr[i] = add ? __fadd_rn(yr[i], v) : v;
        }
    }
}

__global__ void k_add(float *x, int64_t ldx, const float *y, int64_t ldy, int64_t n, int64_t R)
{
    S_ROWS_LOOP(r, R)
    S_COLS_LOOP(i, n) x[r * ldx + i] = __fadd_rn(x[r * ldx + i], y[r * ldy + i]);
}

__global__ void k_scale(float *x, int64_t n, float s)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(x[i], s);
}

__global__ void k_softcap(float *x, int64_t n, float cap, float inv)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __fmul_rn(cap, tanhf(__fmul_rn(x[i], inv)));
}

/* g4_gelu_ref: x rounded to f16, the tanh formula in f32 step by step,
 * the result rounded to f16; x <= -10: 0, x >= 10: x */
static __device__ __forceinline__ float s_gelu(float x)
{
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    const float GELU_COEF_A = 0.044715f;
    const float SQRT_2_OVER_PI = 0.79788456080286535587989211986876f;
    const float h = __half2float(__float2half_rn(x));
    const float in = __fmul_rn(__fmul_rn(SQRT_2_OVER_PI, h), __fadd_rn(1.0f, __fmul_rn(__fmul_rn(GELU_COEF_A, h), h)));
    const float g = __fmul_rn(__fmul_rn(0.5f, h), __fadd_rn(1.0f, tanhf(in)));
    return __half2float(__float2half_rn(g));
}

__global__ void k_geglu(const float *x, const float *g, float *y, int64_t n)
{
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float xi = x[i];
        if (!g) {
            y[i] = s_gelu(xi);
            continue;
        }
        const float gi = g[i];
        y[i] = xi <= -10.0f ? 0.0f : xi >= 10.0f ? __fmul_rn(xi, gi) : __fmul_rn(s_gelu(xi), gi);
    }
}

__global__ void k_mul(const float *x, int64_t ldx, const float *g, int64_t ldg, float *y, int64_t ldy, int64_t n,
                      int64_t R)
{
    S_ROWS_LOOP(r, R)
    S_COLS_LOOP(i, n) y[r * ldy + i] = __fmul_rn(x[r * ldx + i], g[r * ldg + i]);
}

/* ====================================================================== */
/* RoPE, KV store                                                         */
/* ====================================================================== */

/* one block per row: thread 0 walks the angle chain theta *= theta_scale of
 * g4_rope_ref (the same products, so the same angles at any position), the
 * block takes cos / sin once per pair index, then rotates every head */
__global__ void k_rope(float *x, int64_t ld, int64_t T, int n_heads, int hd, int half, const int32_t *pos,
                       float theta_scale, const float *ff)
{
    extern __shared__ __align__(16) unsigned char g4_dsmem[];
    float *cs = (float *)g4_dsmem; /* [half][2] */
    for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
        if (threadIdx.x == 0) {
            float theta = (float)pos[t];
            for (int i = 0; i < half; i++) {
                cs[2 * i] = theta;
                theta = __fmul_rn(theta, theta_scale);
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < half; i += blockDim.x) {
            const float th = ff ? __fdiv_rn(cs[2 * i], ff[i]) : cs[2 * i];
            cs[2 * i] = cosf(th);
            cs[2 * i + 1] = sinf(th);
        }
        __syncthreads();
        float *xr = x + t * ld;
        const int np = n_heads * half;
        for (int k = threadIdx.x; k < np; k += blockDim.x) {
            const int h = k / half, i = k - h * half;
            float *v = xr + (int64_t)h * hd;
            const float c = cs[2 * i], s = cs[2 * i + 1], x0 = v[i], x1 = v[i + half];
            v[i] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
            v[i + half] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
        }
        __syncthreads(); /* (cs is the next row's) */
    }
}

__global__ void k_kv_store(void *const *dst, int cells, int is_f16, const float *src, int64_t ld, int64_t n, int64_t T,
                           const int32_t *pos)
{
    S_ROWS_LOOP(t, T)
    {
        const int32_t p = pos[t];
        if (p < 0) continue;
        const int64_t off = (int64_t)(p % cells) * n;
        const float *sr = src + t * ld;
        if (is_f16) {
            __half *d = (__half *)dst[t] + off;
            S_COLS_LOOP(i, n) d[i] = __float2half_rn(sr[i]);
        } else {
            float *d = (float *)dst[t] + off;
            S_COLS_LOOP(i, n) d[i] = sr[i];
        }
    }
}

/* ====================================================================== */
/* MoE combine, gather, scatter                                           */
/* ====================================================================== */

/* s_moe's order: o = d·es, ·w, summed over k in order */
__global__ void k_moe_combine(const float *d, const float *w, const int32_t *sel, const float *scale, float *y,
                              int64_t n, int64_t T, int K)
{
    S_ROWS_LOOP(t, T)
    S_COLS_LOOP(i, n)
    {
        float o = 0.0f;
        for (int k = 0; k < K; k++) {
            float vv = d[(t * K + k) * n + i];
            if (scale) vv = __fmul_rn(vv, scale[sel[t * K + k]]);
            vv = __fmul_rn(vv, w[t * K + k]);
            o = k == 0 ? vv : __fadd_rn(o, vv);
        }
        y[t * n + i] = o;
    }
}

__global__ void k_gather(const float *x, int64_t ldx, const int32_t *idx, float *y, int64_t ldy, int64_t n, int64_t R)
{
    S_ROWS_LOOP(r, R)
    {
        const int32_t j = idx[r];
        if (j < 0) continue;
        S_COLS_LOOP(i, n) y[r * ldy + i] = x[(int64_t)j * ldx + i];
    }
}

__global__ void k_scatter(const float *x, int64_t ldx, const int32_t *idx, float *y, int64_t ldy, int64_t n, int64_t R)
{
    S_ROWS_LOOP(r, R)
    {
        const int32_t j = idx[r];
        if (j < 0) continue;
        S_COLS_LOOP(i, n) y[(int64_t)j * ldy + i] = x[r * ldx + i];
    }
}

/* ====================================================================== */
/* attention                                                              */
/* ====================================================================== */

#define ATT_TK 32     /* positions per tile: one per lane when scoring */
#define ATT_NQ 16     /* query vectors per block at most (4 warps × 4) */
#define ATT_CHUNK 256 /* positions per split at least */
#define ATT_SMAX 64   /* splits at most */

struct att_args {
    const float *q;
    int64_t ldq;
    float *out;
    int64_t ldo;
    const void *const *K;
    const void *const *V;
    const int32_t *lo;
    const int32_t *hi;
    float *part; /* S > 1: [S][T][n_head][hd] unnormalised Σ p·V */
    float *ml;   /* S > 1: [S][T][n_head][2] max, sum */
    int T, n_head, n_kv, G, hd, cells;
    int RT;     /* rows per tile                        */
    int GH;     /* query heads per block (of G)         */
    int n_hsub; /* ceil(G / GH)                         */
    int S;      /* splits of the range                  */
    int kstride, vstride; /* bytes per K / V row in shared memory */
};

/* 16 bytes global → shared: asynchronous where the address allows */
static __device__ __forceinline__ void s_cp16(void *dst, const void *src, bool al16)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (al16) {
        const unsigned sa = (unsigned)__cvta_generic_to_shared(dst);
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa), "l"(src) : "memory");
        return;
    }
#endif
    if (al16) {
        *(uint4 *)dst = *(const uint4 *)src;
    } else { /* (cache elements are at least 2-byte aligned) */
        const unsigned short *s = (const unsigned short *)src;
        unsigned short *d = (unsigned short *)dst;
        for (int i = 0; i < 8; i++) d[i] = s[i];
    }
}

static __device__ __forceinline__ void s_cp_commit(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N> static __device__ __forceinline__ void s_cp_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

/* 8 cache elements from shared memory (16-byte aligned), widened */
template <bool F16> static __device__ __forceinline__ void s_load8(const unsigned char *p, float *f)
{
    if (F16) {
        const uint4 r = *(const uint4 *)p;
        const unsigned u[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            __half2 h;
            memcpy(&h, &u[i], 4);
            const float2 v = __half22float2(h);
            f[2 * i] = v.x, f[2 * i + 1] = v.y;
        }
    } else {
        const float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
        f[0] = a.x, f[1] = a.y, f[2] = a.z, f[3] = a.w, f[4] = b.x, f[5] = b.y, f[6] = b.z, f[7] = b.w;
    }
}

/* The output dimension that lane's e-th accumulator holds: VEC: 16-byte
 * vectors (VW elements) lane by lane, E/VW of them; otherwise d = e·32 + lane. */
template <bool VEC, bool F16> static __device__ __forceinline__ int s_dmap(int e, int lane)
{
    constexpr int VW = F16 ? 8 : 4;
    return VEC ? (e / VW) * 32 * VW + lane * VW + (e % VW) : e * 32 + lane;
}

/* lane's elements of one V row in shared memory, widened */
template <int EM, bool VEC, bool F16>
static __device__ __forceinline__ void s_loadv(const unsigned char *row, int lane, int E, float *v)
{
    if (VEC) {
        constexpr int VW = F16 ? 8 : 4;
#pragma unroll
        for (int c = 0; c < EM / VW; c++) {
            const unsigned char *p = row + (size_t)(c * 32 * VW + lane * VW) * (F16 ? 2 : 4);
            if (F16) {
                s_load8<true>(p, v + c * VW);
            } else {
                const float4 a = *(const float4 *)p;
                v[c * 4] = a.x, v[c * 4 + 1] = a.y, v[c * 4 + 2] = a.z, v[c * 4 + 3] = a.w;
            }
        }
    } else {
#pragma unroll
        for (int e = 0; e < EM; e++) {
            if (e < E)
                v[e] = F16 ? __half2float(((const __half *)row)[e * 32 + lane]) : ((const float *)row)[e * 32 + lane];
            else
                v[e] = 0.0f;
        }
    }
}

/* See the file comment. EM: accumulators per lane and query vector (VEC:
 * exactly hd/32, with hd 256 or 512; else at least hd/32). QW: query vectors
 * per warp. blockDim.x = 32 × warps (1..4). */
template <int EM, bool VEC, bool F16, int QW> __global__ void __launch_bounds__(128, 2) k_attn(const att_args a)
{
    extern __shared__ __align__(16) unsigned char g4_dsmem[];
    constexpr int ES = F16 ? 2 : 4;
    const int hd = a.hd, E = VEC ? EM : hd >> 5;
    const int NW = blockDim.x >> 5, w = threadIdx.x >> 5, lane = threadIdx.x & 31;

    /* which tile, which row of it (when its rows use different caches), which heads */
    const int nbt = a.RT * a.n_hsub;
    const int rt = blockIdx.x / nbt, rem = blockIdx.x - rt * nbt;
    const int kk = rem / a.n_hsub, hs = rem - kk * a.n_hsub;
    const int kh = blockIdx.y, s = blockIdx.z;
    const int t0 = rt * a.RT;
    if (t0 >= a.T) return;
    const int ntile = min(a.RT, a.T - t0);
    const void *kb = a.K[t0], *vb = a.V[t0];
    bool uni = true;
    for (int r = 1; r < ntile; r++) uni = uni && a.K[t0 + r] == kb && a.V[t0 + r] == vb;
    int ta, nrows;
    if (uni) {
        if (kk) return; /* block 0 of the tile takes all its rows */
        ta = t0, nrows = ntile;
    } else {
        if (kk >= ntile) return;
        ta = t0 + kk, nrows = 1;
        kb = a.K[ta], vb = a.V[ta];
    }
    const int g0 = hs * a.GH, ngh = min(a.GH, a.G - g0);
    const int nqv = nrows * ngh; /* v = row · ngh + head */

    unsigned char *Ks = g4_dsmem;
    unsigned char *Vs = Ks + ATT_TK * a.kstride;
    float *Qs = (float *)(Vs + ATT_TK * a.vstride); /* [NW·QW][hd] */
    float *Ps = Qs + NW * QW * hd;                  /* [NW·QW][32] */

    for (int idx = threadIdx.x; idx < nqv * hd; idx += blockDim.x) {
        const int v = idx / hd, d = idx - v * hd, rl = v / ngh, gl = v - rl * ngh;
        Qs[idx] = a.q[(int64_t)(ta + rl) * a.ldq + (int64_t)(kh * a.G + g0 + gl) * hd + d];
    }

    /* the union of the rows' ranges, this split's chunk of it */
    int L = INT32_MAX, H = -1;
    for (int r = 0; r < nrows; r++) {
        const int lo = max(a.lo[ta + r], 0), hi = a.hi[ta + r];
        if (lo <= hi) L = min(L, lo), H = max(H, hi);
    }
    int64_t cs = 0, ce = -1; /* (32-bit divisions: the 64-bit ones are calls) */
    if (H >= L) {
        unsigned chunk = ((unsigned)(H - L) + (unsigned)a.S) / (unsigned)a.S;
        chunk = (chunk + ATT_TK - 1) / ATT_TK * ATT_TK;
        if (chunk < ATT_CHUNK) chunk = ATT_CHUNK;
        cs = L + (int64_t)s * chunk;
        ce = min((int64_t)H, cs + chunk - 1);
    }

    float acc[QW][EM], m[QW], l[QW];
    int plo[QW], phi[QW];
    unsigned act = 0;
#pragma unroll
    for (int i = 0; i < QW; i++) {
        const int v = w * QW + i;
        m[i] = -INFINITY, l[i] = 0.0f, plo[i] = 1, phi[i] = 0;
#pragma unroll
        for (int e = 0; e < EM; e++) acc[i][e] = 0.0f;
        if (v < nqv) {
            const int t = ta + v / ngh;
            act |= 1u << i;
            plo[i] = max(a.lo[t], 0), phi[i] = a.hi[t];
        }
    }

    const int CPR = hd * ES / 16; /* 16-byte pieces per row */
    const int64_t row_bytes = (int64_t)a.n_kv * hd * ES, head_off = (int64_t)kh * hd * ES;
    const bool al16 = ((((uintptr_t)kb) | ((uintptr_t)vb)) & 15) == 0;
    for (int64_t tb = cs; tb <= ce; tb += ATT_TK) {
        const int jn = (int)min((int64_t)ATT_TK, ce - tb + 1);
        __syncthreads(); /* the last tile's K, V, P are read; (first: Qs written) */
        for (int j = w; j < jn; j += NW) {
            const unsigned char *src = (const unsigned char *)kb + (int64_t)((unsigned)(tb + j) % (unsigned)a.cells) * row_bytes + head_off;
            unsigned char *dst = Ks + j * a.kstride;
            for (int c = lane; c < CPR; c += 32) s_cp16(dst + c * 16, src + c * 16, al16);
        }
        s_cp_commit();
        for (int j = w; j < ATT_TK; j += NW) {
            unsigned char *dst = Vs + j * a.vstride;
            if (j < jn) {
                const unsigned char *src = (const unsigned char *)vb + (int64_t)((unsigned)(tb + j) % (unsigned)a.cells) * row_bytes + head_off;
                for (int c = lane; c < CPR; c += 32) s_cp16(dst + c * 16, src + c * 16, al16);
            } else { /* past the chunk: weight 0 times a zero row */
                for (int c = lane; c < CPR; c += 32) *(uint4 *)(dst + c * 16) = make_uint4(0, 0, 0, 0);
            }
        }
        s_cp_commit();
        s_cp_wait<1>(); /* this thread's K pieces */
        __syncthreads();

        /* scores: lane j against position tb + j */
        if (act) {
            float sc[QW];
#pragma unroll
            for (int i = 0; i < QW; i++) sc[i] = 0.0f;
            const unsigned char *kr = Ks + lane * a.kstride;
            const float *qw = Qs + w * QW * hd;
#pragma unroll 2
            for (int d = 0; d < hd; d += 8) {
                float kf[8];
                s_load8<F16>(kr + d * ES, kf);
#pragma unroll
                for (int i = 0; i < QW; i++) {
                    const float4 q0 = *(const float4 *)(qw + i * hd + d), q1 = *(const float4 *)(qw + i * hd + d + 4);
                    float x = sc[i];
                    x = fmaf(q0.x, kf[0], x), x = fmaf(q0.y, kf[1], x), x = fmaf(q0.z, kf[2], x);
                    x = fmaf(q0.w, kf[3], x), x = fmaf(q1.x, kf[4], x), x = fmaf(q1.y, kf[5], x);
                    x = fmaf(q1.z, kf[6], x), x = fmaf(q1.w, kf[7], x);
                    sc[i] = x;
                }
            }
            const int64_t p = tb + lane;
#pragma unroll
            for (int i = 0; i < QW; i++) {
                float pj = 0.0f;
                if (act >> i & 1) { /* (uniform over the warp) */
                    const bool ok = lane < jn && p >= plo[i] && p <= phi[i];
                    const float sv = ok ? sc[i] : -INFINITY;
                    const float mt = s_warp_max(sv);
                    if (mt != -INFINITY) {
                        const float mn = fmaxf(m[i], mt), f = expf(m[i] - mn); /* (m = -inf: f = 0) */
                        pj = ok ? expf(sv - mn) : 0.0f;
                        l[i] = l[i] * f + pj; /* each lane its own positions' share */
                        if (f != 1.0f) {
#pragma unroll
                            for (int e = 0; e < EM; e++) acc[i][e] *= f;
                        }
                        m[i] = mn;
                    }
                }
                Ps[(w * QW + i) * ATT_TK + lane] = pj;
            }
        }
        s_cp_wait<0>(); /* this thread's V pieces */
        __syncthreads();

        /* Σ p·V: lane's hd/32 dimensions */
        if (act) {
            const float *P = Ps + w * QW * ATT_TK;
#pragma unroll 1
            for (int j = 0; j < ATT_TK; j += 4) {
                float4 p4[QW];
#pragma unroll
                for (int i = 0; i < QW; i++) p4[i] = *(const float4 *)(P + i * ATT_TK + j);
#pragma unroll
                for (int jj = 0; jj < 4; jj++) {
                    float vv[EM];
                    s_loadv<EM, VEC, F16>(Vs + (j + jj) * a.vstride, lane, E, vv);
#pragma unroll
                    for (int i = 0; i < QW; i++) {
                        const float pw = jj == 0 ? p4[i].x : jj == 1 ? p4[i].y : jj == 2 ? p4[i].z : p4[i].w;
#pragma unroll
                        for (int e = 0; e < EM; e++)
                            if (VEC || e < E) acc[i][e] = fmaf(pw, vv[e], acc[i][e]);
                    }
                }
            }
        }
    }

#pragma unroll
    for (int i = 0; i < QW; i++) {
        if (!(act >> i & 1)) continue; /* (uniform over the warp) */
        const int v = w * QW + i, t = ta + v / ngh, h = kh * a.G + g0 + v % ngh;
        const float Ls = s_warp_sum(l[i]);
        if (a.S == 1) {
            const float inv = Ls == 0.0f ? 0.0f : 1.0f / Ls;
            float *o = a.out + (int64_t)t * a.ldo + (int64_t)h * hd;
#pragma unroll
            for (int e = 0; e < EM; e++)
                if (VEC || e < E) o[s_dmap<VEC, F16>(e, lane)] = acc[i][e] * inv;
        } else {
            const int64_t slot = ((int64_t)s * a.T + t) * a.n_head + h;
            float *o = a.part + slot * hd;
#pragma unroll
            for (int e = 0; e < EM; e++)
                if (VEC || e < E) o[s_dmap<VEC, F16>(e, lane)] = acc[i][e];
            if (lane == 0) a.ml[2 * slot] = m[i], a.ml[2 * slot + 1] = Ls;
        }
    }
}

/* one block per (row, head): the splits' partials merged (empty ones skipped) */
__global__ void k_attn_combine(const float *part, const float *ml, int S, int T, int n_head, int hd, float *out,
                               int64_t ldo)
{
    __shared__ float wt[ATT_SMAX];
    __shared__ float Lsh;
    const int th = blockIdx.x, t = th / n_head, h = th - t * n_head;
    if (threadIdx.x < 32) {
        const int lane = threadIdx.x;
        float M = -INFINITY;
        for (int s = lane; s < S; s += 32) {
            const int64_t slot = ((int64_t)s * T + t) * n_head + h;
            if (ml[2 * slot + 1] > 0.0f) M = fmaxf(M, ml[2 * slot]);
        }
        M = s_warp_max(M);
        float Ls = 0.0f;
        for (int s = lane; s < S; s += 32) {
            const int64_t slot = ((int64_t)s * T + t) * n_head + h;
            const float ls = ml[2 * slot + 1];
            const float f = ls > 0.0f ? expf(ml[2 * slot] - M) : 0.0f;
            wt[s] = f;
            Ls += ls * f;
        }
        Ls = s_warp_sum(Ls);
        if (lane == 0) Lsh = Ls;
    }
    __syncthreads();
    const float inv = Lsh > 0.0f ? 1.0f / Lsh : 0.0f;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < S; s++)
            if (wt[s] != 0.0f) o = fmaf(wt[s], part[(((int64_t)s * T + t) * n_head + h) * hd + d], o);
        out[(int64_t)t * ldo + (int64_t)h * hd + d] = o * inv;
    }
}

typedef void (*s_att_kern_t)(att_args);

template <int EM, bool VEC, bool F16> static s_att_kern_t s_att_pick_qw(int qw)
{
    return qw == 1 ? k_attn<EM, VEC, F16, 1> : qw == 2 ? k_attn<EM, VEC, F16, 2> : k_attn<EM, VEC, F16, 4>;
}

static s_att_kern_t s_att_kernel(int hd, int f16, int qw)
{
    if (hd == 256) return f16 ? s_att_pick_qw<8, true, true>(qw) : s_att_pick_qw<8, true, false>(qw);
    if (hd == 512) return f16 ? s_att_pick_qw<16, true, true>(qw) : s_att_pick_qw<16, true, false>(qw);
    return f16 ? s_att_pick_qw<16, false, true>(qw) : s_att_pick_qw<16, false, false>(qw);
}

/* ====================================================================== */
/* attention in the CPU's order (g4_cu_attention_rows)                    */
/* ====================================================================== */

/* g4_cu_attention_rows reproduces core/model/g4_attn.c's two kernels row by
 * row, bit for bit (given the CPU's expf and F16 dot order, see below):
 *
 * single (g4_attn_f16_g, an F16 cache): q rounded to f16 (nearest even);
 * per cell of the view in order, skipped unless its position p (>= 0) is in
 * [lo, hi]: s = q·k, f16·f16 products summed as g4_dot_f16_g sums them (dot:
 * AVX-512: 32 fused multiply-add chains over d ≡ lane (mod 32), reduced
 * 16/8/4/2/1 as _mm512_reduce_add_ps; AVX2: the same 32 chains reduced
 * 8/16/4/2/1 as s_hsum_ps; scalar: the exact products summed in double in
 * order); s > M: M = s, ms = expf(Mold − M), acc = f16(acc·ms) (the product
 * rounded to f32, then to f16), vs = 1; else vs = expf(s − M); acc =
 * f16(fmaf(v, vs, acc)); S = S·ms + vs (two roundings). Split rows (splits
 * > 1, n_view >= G4_CU_ATTN_SPLIT_MIN): chunks of ceil(n_view / splits)
 * cells, each from M = −inf, S = 0, acc = 0, then folded in chunk order
 * (empty ones skipped): Mn = fmaxf(Mf, M), so = expf(Mf − Mn), sn =
 * expf(M − Mn), o = o·so + acc·sn, Sf = Sf·so + S·sn, and o·(1/Sf) when Sf
 * != 0; an unsplit row: acc·(S == 0 ? 0 : 1/S).
 *
 * f32 (g4_attn_f32, F16 or F32 cache): the view in tiles of
 * G4_CU_ATTN_TILE_KV cells; per tile each score one fused multiply-add
 * chain over d = 0..hd−1 from 0 (q as is, k widened), cells outside [lo,
 * hi] (and past the view) −inf; tmax = max (a tile whose max is −inf changes
 * nothing); Mn = fmaxf(M, tmax), Mn > M: o·= ms, S·= ms with ms =
 * expf(M − Mn); w = expf(x − Mn) for the 64 cells, their sum in groups of
 * 16 reduced 8/4/2/1 (ggml_vec_soft_max_f32's AVX-512 sum), the groups
 * added in double, S = (float)((double)S + sum); o[d] = one fmaf chain over
 * the tile's visible cells in order; finally o·(S == 0 ? 0 : 1/S). A row
 * alone gives the bits it has in a CPU call of several rows (the call's
 * shared tiles only decide which K rows are widened for masked cells).
 *
 * expf is glibc's (the x86-64 FMA build of sysdeps/ieee754/flt-32/e_expf.c,
 * the one the CPU path calls): s_expf_cpu has its bits on all 2^32 inputs
 * (checked on the host against glibc 2.36). Every other step is one IEEE
 * operation written with an _rn intrinsic, so nvcc fuses nothing.
 *
 * On the GPU: a block per (row, KV head, group of W query heads of it,
 * chunk slot z), one warp per query head; the block copies the K and V rows
 * of 32 cells (the sub-tile: only cells the row sees) to shared memory, so
 * the W heads read each row once. Scores: lane j scores cell j alone (the
 * chains above are sequential: a lane runs them all, no shuffles), so a
 * sub-tile's 32 scores are computed at once. Single: the running max before
 * each cell is a prefix max over the lanes, each lane evaluates its cell's
 * expf, then the warp walks the 32 cells in order updating the f16
 * accumulator (lane: elements d ≡ lane mod 32) and S. f32: two sub-tiles
 * make a tile; the weights' group sums by shuffles within 16 lanes.
 * Chunks of a split row run in parallel blocks (z < chunks, when chunks <=
 * CH slots) leaving (acc, M, S) in the workspace, and k_attn_rows_merge
 * folds them in order; with more chunks than slots block z = 0 folds them
 * itself, one after the other (the same operations). CH is at most 64 and
 * bounded by a workspace budget; the rows' descriptors stay on the device,
 * so every block first reads its row's and exits when it has no work. */

#define AR_SUB 32                /* cells per shared-memory sub-tile (one per lane) */
#define AR_SLOTS 64              /* chunk slots of a launch at most */
#define AR_WMAX 16               /* query heads (warps) per block at most */
#define AR_WS_BUDGET (64u << 20) /* workspace bytes for chunk partials at most */
#define AR_WSCR 192              /* per-warp scratch floats besides q: weights 64, ms 32, vs 32, flags 64 */

struct ar_args {
    const float *q;
    int64_t ldq;
    float *out;
    int64_t ldo;
    const g4_cu_attn_row_t *rows;
    float *part; /* CH > 1: [T][n_head][CH][hd] chunk sums (the f16 accumulator widened) */
    float *ml;   /* CH > 1: [T][n_head][CH][2] chunk max, sum */
    int T, n_head, n_kv, G, W, n_hg, hd, cells, is_f16, CH;
    int rstride; /* bytes per cache row in shared memory (hd·es + 16: lane j reading row j is conflict-free) */
};

static __device__ __forceinline__ uint32_t s_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static __device__ __forceinline__ uint64_t s_f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}
static __device__ __forceinline__ double s_f64_from(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* glibc's __exp2f_data.tab: 2^(i/32) − (i << 47), as bits */
static __device__ const uint64_t s_exp2f_tab[32] = {
    0x3ff0000000000000ull, 0x3fefd9b0d3158574ull, 0x3fefb5586cf9890full, 0x3fef9301d0125b51ull, 0x3fef72b83c7d517bull,
    0x3fef54873168b9aaull, 0x3fef387a6e756238ull, 0x3fef1e9df51fdee1ull, 0x3fef06fe0a31b715ull, 0x3feef1a7373aa9cbull,
    0x3feedea64c123422ull, 0x3feece086061892dull, 0x3feebfdad5362a27ull, 0x3feeb42b569d4f82ull, 0x3feeab07dd485429ull,
    0x3feea47eb03a5585ull, 0x3feea09e667f3bcdull, 0x3fee9f75e8ec5f74ull, 0x3feea11473eb0187ull, 0x3feea589994cce13ull,
    0x3feeace5422aa0dbull, 0x3feeb737b0cdc5e5ull, 0x3feec49182a3f090ull, 0x3feed503b23e255dull, 0x3feee89f995ad3adull,
    0x3feeff76f2fb5e47ull, 0x3fef199bdd85529cull, 0x3fef3720dcef9069ull, 0x3fef5818dcfba487ull, 0x3fef7c97337b9b5full,
    0x3fefa4afa2a490daull, 0x3fefd0765b6e4540ull};

/* expf as glibc computes it on x86-64 with FMA (__expf_fma): k = round(x·32/ln2),
 * 2^(k/32) from the table, a cubic in double, one rounding to float; the
 * special cases of its slow path (−inf, inf/NaN, overflow, underflow) */
static __device__ __forceinline__ float s_expf_cpu(float x)
{
    const uint32_t ix = s_f32_bits(x), top = (ix >> 20) & 0x7ffu;
    if (top >= 0x42bu) { /* |x| >= 88, or inf / NaN */
        if (ix == 0xff800000u) return 0.0f;
        if (top >= 0x7f8u) return __fadd_rn(x, x);
        if (x > 0x1.62e42ep6f) return INFINITY;
        if (x < -0x1.9fe368p6f) return 0.0f;
        if (x < -0x1.9d1d9ep6f) return 0x1p-149f; /* __math_may_uflowf: 0x1.4p-75f squared */
    }
    const double InvLn2N = s_f64_from(0x40471547652b82feull), Shift = s_f64_from(0x4338000000000000ull);
    const double C0 = s_f64_from(0x3ebc6af84b912394ull), C1 = s_f64_from(0x3f2ebfce50fac4f3ull),
                 C2 = s_f64_from(0x3f962e42ff0c52d6ull);
    const double xd = (double)x;
    double kd = __fma_rn(InvLn2N, xd, Shift);
    const uint64_t ki = s_f64_bits(kd);
    kd = __dsub_rn(kd, Shift);
    const double r = __fma_rn(InvLn2N, xd, -kd);
    const double s = s_f64_from(s_exp2f_tab[ki & 31] + (ki << 47));
    const double z = __fma_rn(C0, r, C1), r2 = __dmul_rn(r, r);
    double y = __fma_rn(C2, r, 1.0);
    y = __fma_rn(z, r2, y);
    return __double2float_rn(__dmul_rn(y, s));
}

/* a float rounded through f16 (nearest even) */
static __device__ __forceinline__ float s_r16(float x) { return __half2float(__float2half_rn(x)); }

/* q·k of an F16 row (shared memory, 16-byte aligned) with q (f16 values
 * as floats), summed as the CPU's g4_dot_f16_g (dot: G4_CU_DOT_*); hd % 32 == 0 */
static __device__ float s_dot16_cpu(const unsigned char *krow, const float *q, int hd, int dot)
{
    const __half *k = (const __half *)krow;
    if (dot == G4_CU_DOT_SCALAR) { /* s_dot_f16: the exact products added in double in order */
        double s = 0.0;
        for (int d = 0; d < hd; d++) s = __dadd_rn(s, (double)__fmul_rn(__half2float(k[d]), q[d]));
        return __double2float_rn(s);
    }
    float c[32];
#pragma unroll
    for (int l = 0; l < 32; l++) c[l] = 0.0f;
    for (int d0 = 0; d0 < hd; d0 += 32) {
#pragma unroll
        for (int v = 0; v < 4; v++) {
            float kf[8];
            s_load8<true>(krow + (size_t)(d0 + 8 * v) * 2, kf);
            const float4 qa = *(const float4 *)(q + d0 + 8 * v), qb = *(const float4 *)(q + d0 + 8 * v + 4);
            const float qf[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
            for (int i = 0; i < 8; i++) c[8 * v + i] = __fmaf_rn(kf[i], qf[i], c[8 * v + i]);
        }
    }
    if (dot == G4_CU_DOT_AVX2) { /* (acc0 + acc1) + (acc2 + acc3), then s_hsum_ps */
#pragma unroll
        for (int l = 0; l < 8; l++) c[l] = __fadd_rn(__fadd_rn(c[l], c[l + 8]), __fadd_rn(c[l + 16], c[l + 24]));
    } else { /* acc0 + acc1, then _mm512_reduce_add_ps's 256- and 128-bit halves */
#pragma unroll
        for (int l = 0; l < 16; l++) c[l] = __fadd_rn(c[l], c[l + 16]);
#pragma unroll
        for (int l = 0; l < 8; l++) c[l] = __fadd_rn(c[l], c[l + 8]);
    }
#pragma unroll
    for (int l = 0; l < 4; l++) c[l] = __fadd_rn(c[l], c[l + 4]);
    return __fadd_rn(__fadd_rn(c[0], c[2]), __fadd_rn(c[1], c[3]));
}

/* q·k of a cache row (shared memory) with f32 q: one fused multiply-add
 * chain over d from 0 (g4_attn_f32's scores) */
template <bool F16> static __device__ __forceinline__ float s_dot_chain(const unsigned char *krow, const float *q, int hd)
{
    float a = 0.0f;
    for (int d = 0; d < hd; d += 8) {
        float kf[8];
        s_load8<F16>(krow + (size_t)d * (F16 ? 2 : 4), kf);
        const float4 qa = *(const float4 *)(q + d), qb = *(const float4 *)(q + d + 4);
        a = __fmaf_rn(qa.x, kf[0], a), a = __fmaf_rn(qa.y, kf[1], a), a = __fmaf_rn(qa.z, kf[2], a);
        a = __fmaf_rn(qa.w, kf[3], a), a = __fmaf_rn(qb.x, kf[4], a), a = __fmaf_rn(qb.y, kf[5], a);
        a = __fmaf_rn(qb.z, kf[6], a), a = __fmaf_rn(qb.w, kf[7], a);
    }
    return a;
}

/* the position cell i of the row's view holds (-1: empty) */
static __device__ __forceinline__ int s_ar_pos(const g4_cu_attn_row_t &R, int i) { return R.view ? R.view[i] : i; }
static __device__ __forceinline__ bool s_ar_sees(const g4_cu_attn_row_t &R, int p) { return p >= 0 && p >= R.lo && p <= R.hi; }

/* the block copies the rows of view cells [c0, c0 + n) (n <= AR_SUB) the row
 * sees from src (cache base + the KV head's offset) to dst (row j at j·rstride) */
static __device__ __forceinline__ void s_ar_load(unsigned char *dst, const unsigned char *src, const g4_cu_attn_row_t &R,
                                                 int c0, int n, size_t rowb, int bytes, int cells, int rstride, bool al16)
{
    const int pieces = bytes >> 4;
    for (int i = threadIdx.x; i < n * pieces; i += blockDim.x) {
        const int j = i / pieces, pc = i - j * pieces, p = s_ar_pos(R, c0 + j);
        if (!s_ar_sees(R, p)) continue;
        const unsigned char *s = src + (size_t)(p % cells) * rowb + (size_t)pc * 16;
        unsigned char *d = dst + (size_t)j * rstride + (size_t)pc * 16;
        if (al16) {
            *(uint4 *)d = *(const uint4 *)s;
        } else { /* (cache elements are at least 2-byte aligned) */
            const unsigned short *s2 = (const unsigned short *)s;
            unsigned short *d2 = (unsigned short *)d;
            for (int k = 0; k < 8; k++) d2[k] = s2[k];
        }
    }
}

/* the number of chunks of a row, and their size (1 and n_view when not split) */
static __device__ __forceinline__ int s_ar_chunks(const g4_cu_attn_row_t &R, bool single, int *chunk)
{
    const int nv = R.n_view > 0 ? R.n_view : 0;
    *chunk = nv;
    if (!single || R.splits <= 1 || nv < G4_CU_ATTN_SPLIT_MIN) return 1;
    *chunk = (nv + R.splits - 1) / R.splits;
    return (nv + *chunk - 1) / *chunk;
}

/* See above. EM: output elements per lane at most (hd / 32 <= EM). blockDim.x = 32·W. */
template <int EM, bool F16> __global__ void __launch_bounds__(AR_WMAX * 32) k_attn_rows(const ar_args a)
{
    extern __shared__ __align__(16) unsigned char g4_dsmem[];
    constexpr int ES = F16 ? 2 : 4;
    const unsigned FULL = 0xffffffffu;
    const int hd = a.hd, E = hd >> 5, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int t = blockIdx.x, kh = blockIdx.y / a.n_hg, hg = blockIdx.y - kh * a.n_hg, z = blockIdx.z;
    const int h = kh * a.G + hg * a.W + w;
    const g4_cu_attn_row_t R = a.rows[t];
    const bool single = F16 && R.single;
    const int nv = R.n_view > 0 ? R.n_view : 0;
    int chunk;
    const int nch = s_ar_chunks(R, single, &chunk);
    /* what this block does: chunk z into slot z (1 < nch <= CH), or all of the row (z = 0) */
    const bool slot = nch > 1 && nch <= a.CH;
    if (slot ? z >= nch : z != 0) return;

    unsigned char *kb = g4_dsmem, *vb = kb + (size_t)AR_SUB * a.rstride;
    float *wq = (float *)(vb + (size_t)AR_SUB * a.rstride) + (size_t)w * (hd + AR_WSCR);
    float *wt = wq + hd, *wms = wt + 64, *wvs = wms + 32;
    int *wfl = (int *)(wvs + 32);
    const float *qg = a.q + (int64_t)t * a.ldq + (int64_t)h * hd;
    for (int d = lane; d < hd; d += 32) wq[d] = single ? s_r16(qg[d]) : qg[d];
    __syncwarp();

    const size_t rowb = (size_t)a.n_kv * hd * ES, hoff = (size_t)kh * hd * ES;
    const unsigned char *Kg = (const unsigned char *)R.K + hoff, *Vg = (const unsigned char *)R.V + hoff;
    const bool al16 = !(((uintptr_t)Kg | (uintptr_t)Vg | (uintptr_t)rowb) & 15);
    const int bytes = hd * ES;
    float *og = a.out + (int64_t)t * a.ldo + (int64_t)h * hd;

    if (single) {
        float o[EM], Mf = -INFINITY, Sf = 0.0f;
#pragma unroll
        for (int e = 0; e < EM; e++) o[e] = 0.0f;
        for (int c = slot ? z : 0; c < (slot ? z + 1 : nch); c++) {
            const int b0 = c * chunk, b1 = min(nv, b0 + chunk);
            float acc[EM], M = -INFINITY, S = 0.0f;
#pragma unroll
            for (int e = 0; e < EM; e++) acc[e] = 0.0f;
            for (int s0 = b0; s0 < b1; s0 += AR_SUB) {
                const int n = min(AR_SUB, b1 - s0);
                const bool vis = lane < n && s_ar_sees(R, s_ar_pos(R, s0 + lane));
                if (!__any_sync(FULL, vis)) continue; /* (the same in every warp) */
                s_ar_load(kb, Kg, R, s0, n, rowb, bytes, a.cells, a.rstride, al16);
                s_ar_load(vb, Vg, R, s0, n, rowb, bytes, a.cells, a.rstride, al16);
                __syncthreads();
                const float sc = vis ? s_dot16_cpu(kb + (size_t)lane * a.rstride, wq, hd, R.dot) : -INFINITY;
                /* the running max before each cell: a prefix max (fmaxf drops
                 * NaN scores, which never become the CPU's max either) */
                float x = sc;
#pragma unroll
                for (int of = 1; of < 32; of <<= 1) {
                    const float y = __shfl_up_sync(FULL, x, of);
                    if (lane >= of) x = fmaxf(x, y);
                }
                const float xb = __shfl_up_sync(FULL, x, 1), Mt = __shfl_sync(FULL, x, 31);
                const float Mb = lane ? fmaxf(M, xb) : M;
                int fl = 0;
                float ms = 1.0f, vs = 1.0f;
                if (vis) {
                    if (sc > Mb) fl = 2, ms = s_expf_cpu(__fsub_rn(Mb, sc));
                    else fl = 1, vs = s_expf_cpu(__fsub_rn(sc, Mb));
                }
                wms[lane] = ms, wvs[lane] = vs, wfl[lane] = fl;
                __syncwarp();
                for (int j = 0; j < n; j++) {
                    const int f = wfl[j];
                    if (!f) continue;
                    const float mj = wms[j], vj = wvs[j];
                    const __half *vr = (const __half *)(vb + (size_t)j * a.rstride);
#pragma unroll
                    for (int e = 0; e < EM; e++)
                        if (e < E) {
                            if (f == 2) acc[e] = s_r16(__fmul_rn(acc[e], mj));
                            acc[e] = s_r16(__fmaf_rn(__half2float(vr[e * 32 + lane]), vj, acc[e]));
                        }
                    S = __fadd_rn(__fmul_rn(S, mj), vj);
                }
                M = fmaxf(M, Mt);
                __syncthreads(); /* (kb, vb and the warp's scratch are the next sub-tile's) */
            }
            if (slot) { /* the chunk's partial, for k_attn_rows_merge */
                const int64_t sl = ((int64_t)t * a.n_head + h) * a.CH + c;
#pragma unroll
                for (int e = 0; e < EM; e++)
                    if (e < E) a.part[sl * hd + e * 32 + lane] = acc[e];
                if (lane == 0) a.ml[2 * sl] = M, a.ml[2 * sl + 1] = S;
            } else if (nch == 1) {
                const float inv = S == 0.0f ? 0.0f : __fdiv_rn(1.0f, S);
#pragma unroll
                for (int e = 0; e < EM; e++)
                    if (e < E) og[e * 32 + lane] = __fmul_rn(acc[e], inv);
            } else if (S != 0.0f) { /* ggml_flash_attn_ext_reduce_partials, chunk by chunk */
                const float Mn = fmaxf(Mf, M), so = s_expf_cpu(__fsub_rn(Mf, Mn)), sn = s_expf_cpu(__fsub_rn(M, Mn));
#pragma unroll
                for (int e = 0; e < EM; e++) o[e] = __fadd_rn(__fmul_rn(o[e], so), __fmul_rn(acc[e], sn));
                Sf = __fadd_rn(__fmul_rn(Sf, so), __fmul_rn(S, sn));
                Mf = Mn;
            }
        }
        if (!slot && nch > 1) {
            const float inv = Sf != 0.0f ? __fdiv_rn(1.0f, Sf) : 1.0f;
#pragma unroll
            for (int e = 0; e < EM; e++)
                if (e < E) og[e * 32 + lane] = Sf != 0.0f ? __fmul_rn(o[e], inv) : o[e];
        }
        return;
    }

    /* g4_attn_f32: tiles of G4_CU_ATTN_TILE_KV cells, two sub-tiles each */
    float o[EM], M = -INFINITY, S = 0.0f;
#pragma unroll
    for (int e = 0; e < EM; e++) o[e] = 0.0f;
    for (int c0 = 0; c0 < nv; c0 += G4_CU_ATTN_TILE_KV) {
        const int nc = min(G4_CU_ATTN_TILE_KV, nv - c0), n0 = min(AR_SUB, nc), n1 = nc - n0;
        const bool vis0 = lane < n0 && s_ar_sees(R, s_ar_pos(R, c0 + lane));
        const bool vis1 = lane < n1 && s_ar_sees(R, s_ar_pos(R, c0 + AR_SUB + lane));
        if (!__any_sync(FULL, vis0 || vis1)) continue; /* nothing seen: no update (the same in every warp) */
        s_ar_load(kb, Kg, R, c0, n0, rowb, bytes, a.cells, a.rstride, al16);
        s_ar_load(vb, Vg, R, c0, n0, rowb, bytes, a.cells, a.rstride, al16);
        __syncthreads();
        const float x0 = vis0 ? s_dot_chain<F16>(kb + (size_t)lane * a.rstride, wq, hd) : -INFINITY;
        float x1 = -INFINITY;
        if (n1 > 0) {
            __syncthreads();
            s_ar_load(kb, Kg, R, c0 + AR_SUB, n1, rowb, bytes, a.cells, a.rstride, al16);
            __syncthreads();
            if (vis1) x1 = s_dot_chain<F16>(kb + (size_t)lane * a.rstride, wq, hd);
        }
        /* the tile's max, exp and sum (ggml_vec_soft_max_f32) */
        float tmax = fmaxf(fmaxf(-INFINITY, x0), x1); /* (NaN scores dropped, as the CPU's fmaxf from −inf) */
#pragma unroll
        for (int of = 16; of; of >>= 1) tmax = fmaxf(tmax, __shfl_xor_sync(FULL, tmax, of));
        const bool upd = tmax != -INFINITY; /* (the same in all lanes) */
        float w0 = 0.0f, w1 = 0.0f, Mn = M;
        if (upd) {
            Mn = fmaxf(M, tmax);
            if (Mn > M) {
                const float ms = s_expf_cpu(__fsub_rn(M, Mn));
#pragma unroll
                for (int e = 0; e < EM; e++) o[e] = __fmul_rn(o[e], ms);
                S = __fmul_rn(S, ms);
            }
            M = Mn;
            w0 = s_expf_cpu(__fsub_rn(x0, Mn)), w1 = s_expf_cpu(__fsub_rn(x1, Mn));
        }
        float g0 = w0, g1 = w1; /* sums of 16 cells: lanes 0-15 and 16-31 of each half */
#pragma unroll
        for (int of = 8; of; of >>= 1) {
            g0 = __fadd_rn(g0, __shfl_xor_sync(FULL, g0, of));
            g1 = __fadd_rn(g1, __shfl_xor_sync(FULL, g1, of));
        }
        const float ga = __shfl_sync(FULL, g0, 0), gb = __shfl_sync(FULL, g0, 16), gc = __shfl_sync(FULL, g1, 0),
                    gd = __shfl_sync(FULL, g1, 16);
        if (upd) {
            double sum = 0.0;
            sum = __dadd_rn(sum, (double)ga), sum = __dadd_rn(sum, (double)gb);
            sum = __dadd_rn(sum, (double)gc), sum = __dadd_rn(sum, (double)gd);
            S = __double2float_rn(__dadd_rn((double)S, sum));
        }
        wt[lane] = w0, wt[AR_SUB + lane] = w1;
        wfl[lane] = vis0, wfl[AR_SUB + lane] = vis1;
        __syncwarp();
        /* Σ w·V: one fused multiply-add chain per output over the seen cells, in order */
        for (int half = 0; half < 2; half++) {
            const int nh = half ? n1 : n0;
            if (nh <= 0) break;
            if (half) {
                __syncthreads();
                s_ar_load(vb, Vg, R, c0 + AR_SUB, n1, rowb, bytes, a.cells, a.rstride, al16);
                __syncthreads();
            }
            if (!upd) continue;
            for (int j = 0; j < nh; j++) {
                if (!wfl[half * AR_SUB + j]) continue;
                const float wj = wt[half * AR_SUB + j];
                const unsigned char *vr = vb + (size_t)j * a.rstride;
#pragma unroll
                for (int e = 0; e < EM; e++)
                    if (e < E) {
                        const float v = F16 ? __half2float(((const __half *)vr)[e * 32 + lane])
                                            : ((const float *)vr)[e * 32 + lane];
                        o[e] = __fmaf_rn(wj, v, o[e]);
                    }
            }
        }
        __syncthreads(); /* (kb, vb and the warp's scratch are the next tile's) */
    }
    const float inv = S == 0.0f ? 0.0f : __fdiv_rn(1.0f, S);
#pragma unroll
    for (int e = 0; e < EM; e++)
        if (e < E) og[e * 32 + lane] = __fmul_rn(o[e], inv);
}

/* one block per (row, query head) of a row whose chunks went to slots: the
 * partials folded in chunk order (empty ones skipped), as g4_attn_f16_g */
__global__ void k_attn_rows_merge(const ar_args a)
{
    const int t = blockIdx.x / a.n_head, h = blockIdx.x - t * a.n_head;
    const g4_cu_attn_row_t R = a.rows[t];
    int chunk;
    const int nch = s_ar_chunks(R, a.is_f16 && R.single, &chunk);
    if (nch <= 1 || nch > a.CH) return;
    const int64_t s0 = ((int64_t)t * a.n_head + h) * a.CH;
    float *og = a.out + (int64_t)t * a.ldo + (int64_t)h * a.hd;
    for (int d = threadIdx.x; d < a.hd; d += blockDim.x) {
        float o = 0.0f, Mf = -INFINITY, Sf = 0.0f;
        for (int c = 0; c < nch; c++) {
            const float M = a.ml[2 * (s0 + c)], S = a.ml[2 * (s0 + c) + 1];
            if (S == 0.0f) continue;
            const float Mn = fmaxf(Mf, M), so = s_expf_cpu(__fsub_rn(Mf, Mn)), sn = s_expf_cpu(__fsub_rn(M, Mn));
            o = __fadd_rn(__fmul_rn(o, so), __fmul_rn(a.part[(s0 + c) * a.hd + d], sn));
            Sf = __fadd_rn(__fmul_rn(Sf, so), __fmul_rn(S, sn));
            Mf = Mn;
        }
        og[d] = Sf != 0.0f ? __fmul_rn(o, __fdiv_rn(1.0f, Sf)) : o;
    }
}

typedef void (*s_ar_kern_t)(ar_args);

static s_ar_kern_t s_ar_kernel(int hd, int f16)
{
    if (hd <= 256) return f16 ? k_attn_rows<8, true> : k_attn_rows<8, false>;
    return f16 ? k_attn_rows<16, true> : k_attn_rows<16, false>;
}

/* ====================================================================== */
/* the C API                                                              */
/* ====================================================================== */

extern "C" {

int g4_cu_rmsnorm(g4_cu_t *cu, const float *dx, int64_t ldx, const float *dw, float *dy, int64_t ldy, int64_t n,
                  int64_t R, float eps)
{
    if (n < 0 || R < 0) return G4_ERR_RANGE;
    if (!n || !R) return G4_OK;
    const unsigned g = (unsigned)(R < 65535 * 16 ? R : 65535 * 16);
    k_rmsnorm<<<g, G4_CU_THREADS, 0, cu->stream>>>(dx, ldx, dw, dy, ldy, n, R, eps, 0);
    return g4_cu_check_launch(NULL, "rmsnorm");
}

int g4_cu_add_rms(g4_cu_t *cu, float *dx, int64_t ldx, const float *dy, int64_t ldy, const float *dw, int64_t n,
                  int64_t R, float eps)
{
    if (n < 0 || R < 0) return G4_ERR_RANGE;
    if (!n || !R) return G4_OK;
    if (dw) {
        const unsigned g = (unsigned)(R < 65535 * 16 ? R : 65535 * 16);
        k_rmsnorm<<<g, G4_CU_THREADS, 0, cu->stream>>>(dy, ldy, dw, dx, ldx, n, R, eps, 1);
    } else {
        k_add<<<s_grid_rows(n, R), G4_CU_THREADS, 0, cu->stream>>>(dx, ldx, dy, ldy, n, R);
    }
    return g4_cu_check_launch(NULL, "add_rms");
}

int g4_cu_scale(g4_cu_t *cu, float *dx, int64_t n, float s)
{
    if (n < 0) return G4_ERR_RANGE;
    if (!n) return G4_OK;
    k_scale<<<s_grid_1d(n), G4_CU_THREADS, 0, cu->stream>>>(dx, n, s);
    return g4_cu_check_launch(NULL, "scale");
}

int g4_cu_softcap(g4_cu_t *cu, float *dx, int64_t n, float cap)
{
    if (n < 0) return G4_ERR_RANGE;
    if (!n) return G4_OK;
    k_softcap<<<s_grid_1d(n), G4_CU_THREADS, 0, cu->stream>>>(dx, n, cap, 1.0f / cap);
    return g4_cu_check_launch(NULL, "softcap");
}

int g4_cu_geglu(g4_cu_t *cu, const float *dx, const float *dg, float *dy, int64_t n)
{
    if (n < 0) return G4_ERR_RANGE;
    if (!n) return G4_OK;
    k_geglu<<<s_grid_1d(n), G4_CU_THREADS, 0, cu->stream>>>(dx, dg, dy, n);
    return g4_cu_check_launch(NULL, "geglu");
}

int g4_cu_mul(g4_cu_t *cu, const float *dx, int64_t ldx, const float *dg, int64_t ldg, float *dy, int64_t ldy,
              int64_t n, int64_t R)
{
    if (n < 0 || R < 0) return G4_ERR_RANGE;
    if (!n || !R) return G4_OK;
    k_mul<<<s_grid_rows(n, R), G4_CU_THREADS, 0, cu->stream>>>(dx, ldx, dg, ldg, dy, ldy, n, R);
    return g4_cu_check_launch(NULL, "mul");
}

int g4_cu_rope(g4_cu_t *cu, float *dx, int64_t ld, int64_t T, int n_heads, int hd, int n_rot, const int32_t *dpos,
               float base, const float *dff)
{
    if (T < 0 || n_heads < 0 || n_rot < 0 || (n_rot & 1) || n_rot > hd || n_rot > 8192 ||
        (int64_t)n_heads * hd > INT32_MAX)
        return G4_ERR_RANGE;
    if (!T || !n_heads || !n_rot) return G4_OK;
    const float theta_scale = powf(base, -2.0f / (float)n_rot); /* the host's powf, as g4_rope_ref */
    const unsigned g = (unsigned)(T < 65535 * 16 ? T : 65535 * 16);
    k_rope<<<g, G4_CU_THREADS, (size_t)n_rot * sizeof(float), cu->stream>>>(dx, ld, T, n_heads, hd, n_rot / 2, dpos,
                                                                           theta_scale, dff);
    return g4_cu_check_launch(NULL, "rope");
}

int g4_cu_kv_store(g4_cu_t *cu, void *const *ddst, int cells, int is_f16, const float *dsrc, int64_t ld, int64_t n,
                   int64_t T, const int32_t *dpos)
{
    if (cells <= 0 || n < 0 || T < 0) return G4_ERR_RANGE;
    if (!n || !T) return G4_OK;
    k_kv_store<<<s_grid_rows(n, T), G4_CU_THREADS, 0, cu->stream>>>(ddst, cells, is_f16, dsrc, ld, n, T, dpos);
    return g4_cu_check_launch(NULL, "kv_store");
}

int g4_cu_attention(g4_cu_t *cu, const float *dq, int64_t ldq, int64_t T, int n_head, int n_kv, int hd,
                    const void *const *dK, const void *const *dV, int cells, int is_f16, const int32_t *dlo,
                    const int32_t *dhi, float *dout, int64_t ldo, g4_err_t *err)
{
    if (T < 0 || T > INT32_MAX / 64 || n_head <= 0 || n_kv <= 0 || n_head % n_kv || n_kv > 65535 || hd < 32 ||
        hd > 512 || hd % 32 || cells <= 0)
        return g4_err_set(err, G4_ERR_RANGE,
                          "cuda:%d: attention: unsupported shape (T %lld, %d heads, %d KV heads, head size %d, %d cells)",
                          cu->dev, (long long)T, n_head, n_kv, hd, cells);
    if (!T) return G4_OK;
    const int G = n_head / n_kv, es = is_f16 ? 2 : 4;
    att_args a;
    a.q = dq, a.ldq = ldq, a.out = dout, a.ldo = ldo, a.K = dK, a.V = dV, a.lo = dlo, a.hi = dhi;
    a.part = NULL, a.ml = NULL;
    a.T = (int)T, a.n_head = n_head, a.n_kv = n_kv, a.G = G, a.hd = hd, a.cells = cells;
    a.kstride = hd * es + 16, a.vstride = hd * es;
    /* query vectors per block: 16, fewer when shared memory is short */
    int nq = ATT_NQ, qw = 4, nw = 4;
    size_t smem = 0;
    for (;;) {
        a.GH = G < nq ? G : nq;
        a.n_hsub = (G + a.GH - 1) / a.GH;
        a.RT = T > 1 ? (nq / a.GH > 1 ? nq / a.GH : 1) : 1;
        if (a.RT > T) a.RT = (int)T;
        const int nqb = a.RT * a.GH;
        qw = nqb >= 4 ? 4 : nqb == 3 ? 4 : nqb;
        nw = (nqb + qw - 1) / qw;
        smem = (size_t)ATT_TK * (a.kstride + a.vstride) + (size_t)nw * qw * (hd + ATT_TK) * sizeof(float);
        if (smem <= cu->smem_optin || nq == 1) break;
        nq /= 2;
    }
    if (smem > cu->smem_optin)
        return g4_err_set(err, G4_ERR_RANGE,
                          "cuda:%d: attention with heads of %d needs %zu bytes of shared memory per block, the device allows %zu",
                          cu->dev, hd, smem, cu->smem_optin);
    const int64_t n_rt = (T + a.RT - 1) / a.RT;
    /* splits: about 4 blocks per multiprocessor (counting the blocks that
     * work when each tile's rows share a cache), at least 256 positions each */
    const int64_t base = n_rt * a.n_hsub * n_kv, target = 4 * (int64_t)cu->n_sm;
    int64_t S = 1;
    if (base < target) {
        S = (target + base - 1) / base;
        const int64_t smax = (cells + ATT_CHUNK - 1) / ATT_CHUNK;
        if (S > smax) S = smax;
        if (S > ATT_SMAX) S = ATT_SMAX;
        if (S < 1) S = 1;
    }
    if (S > 1) {
        const size_t nv = (size_t)S * (size_t)T * (size_t)n_head;
        float *ws = (float *)g4_cu_ws(cu, nv * (size_t)(hd + 2) * sizeof(float));
        if (ws) a.part = ws, a.ml = ws + nv * (size_t)hd;
        else S = 1; /* (no room for the partials: one block per range) */
    }
    a.S = (int)S;
    const s_att_kern_t kern = s_att_kernel(hd, is_f16, qw);
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return g4_err_set(err, G4_ERR_RANGE, "cuda:%d: attention: %zu bytes of shared memory refused: %s", cu->dev,
                              smem, cudaGetErrorString(e));
        }
    }
    const dim3 grid((unsigned)(n_rt * a.RT * a.n_hsub), (unsigned)n_kv, (unsigned)S);
    kern<<<grid, nw * 32, smem, cu->stream>>>(a);
    int rc = g4_cu_check_launch(err, "attention");
    if (rc || S == 1) return rc;
    k_attn_combine<<<(unsigned)(T * n_head), 128, 0, cu->stream>>>(a.part, a.ml, a.S, a.T, n_head, hd, dout, ldo);
    return g4_cu_check_launch(err, "attention (combine)");
}

int g4_cu_attention_rows(g4_cu_t *cu, const float *dq, int64_t ldq, int64_t T, int n_head, int n_kv, int hd,
                         const g4_cu_attn_row_t *drows, int cells, int is_f16, float *dout, int64_t ldo, g4_err_t *err)
{
    if (T < 0 || n_head <= 0 || T * n_head > INT32_MAX || n_kv <= 0 || n_head % n_kv || hd < 32 || hd > 512 ||
        hd % 32 || cells <= 0)
        return g4_err_set(err, G4_ERR_RANGE,
                          "cuda:%d: attention (CPU order): unsupported shape (T %lld, %d heads, %d KV heads, head size %d, "
                          "%d cells)",
                          cu->dev, (long long)T, n_head, n_kv, hd, cells);
    if (!T) return G4_OK;
    const int G = n_head / n_kv, es = is_f16 ? 2 : 4;
    ar_args a;
    a.q = dq, a.ldq = ldq, a.out = dout, a.ldo = ldo, a.rows = drows, a.part = NULL, a.ml = NULL;
    a.T = (int)T, a.n_head = n_head, a.n_kv = n_kv, a.G = G, a.hd = hd, a.cells = cells, a.is_f16 = is_f16 ? 1 : 0;
    a.rstride = hd * es + 16;
    /* query heads per block: the largest divisor of G up to AR_WMAX whose
     * shared memory fits (two sub-tiles of rows + each warp's q and scratch) */
    const size_t tiles = (size_t)2 * AR_SUB * a.rstride;
    int W = 0;
    size_t smem = 0;
    for (int wc = G < AR_WMAX ? G : AR_WMAX; wc >= 1; wc--) {
        if (G % wc) continue;
        smem = tiles + (size_t)wc * (hd + AR_WSCR) * sizeof(float);
        if (smem <= cu->smem_optin) {
            W = wc;
            break;
        }
    }
    if (!W)
        return g4_err_set(err, G4_ERR_RANGE,
                          "cuda:%d: attention (CPU order) with heads of %d needs %zu bytes of shared memory per block, "
                          "the device allows %zu",
                          cu->dev, hd, smem, cu->smem_optin);
    a.W = W, a.n_hg = G / W;
    if ((int64_t)n_kv * a.n_hg > 65535)
        return g4_err_set(err, G4_ERR_RANGE, "cuda:%d: attention (CPU order): %d KV heads of %d groups", cu->dev, n_kv,
                          a.n_hg);
    /* chunk slots for split rows (F16 caches only), within the workspace budget;
     * a row with more chunks than slots is folded by one block */
    const size_t per_slot = (size_t)T * (size_t)n_head * (size_t)(hd + 2) * sizeof(float);
    int64_t CH = is_f16 ? (int64_t)(AR_WS_BUDGET / per_slot) : 1;
    if (CH > AR_SLOTS) CH = AR_SLOTS;
    if (CH < 2) CH = 1;
    if (CH > 1) {
        float *ws = (float *)g4_cu_ws(cu, per_slot * (size_t)CH);
        if (ws) a.part = ws, a.ml = ws + (size_t)T * n_head * CH * hd;
        else CH = 1; /* (no room: every split row folded by one block) */
    }
    a.CH = (int)CH;
    const s_ar_kern_t kern = s_ar_kernel(hd, is_f16);
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) {
            (void)cudaGetLastError();
            return g4_err_set(err, G4_ERR_RANGE, "cuda:%d: attention (CPU order): %zu bytes of shared memory refused: %s",
                              cu->dev, smem, cudaGetErrorString(e));
        }
    }
    const dim3 grid((unsigned)T, (unsigned)(n_kv * a.n_hg), (unsigned)CH);
    kern<<<grid, W * 32, smem, cu->stream>>>(a);
    int rc = g4_cu_check_launch(err, "attention (CPU order)");
    if (rc || CH == 1) return rc;
    k_attn_rows_merge<<<(unsigned)(T * n_head), 128, 0, cu->stream>>>(a);
    return g4_cu_check_launch(err, "attention (CPU order, merge)");
}

int g4_cu_moe_combine(g4_cu_t *cu, const float *dd, const float *dw, const int32_t *dsel, const float *dscale,
                      float *dy, int64_t n, int64_t T, int K)
{
    if (n < 0 || T < 0 || K < 0) return G4_ERR_RANGE;
    if (!n || !T) return G4_OK;
    k_moe_combine<<<s_grid_rows(n, T), G4_CU_THREADS, 0, cu->stream>>>(dd, dw, dsel, dscale, dy, n, T, K);
    return g4_cu_check_launch(NULL, "moe_combine");
}

int g4_cu_gather(g4_cu_t *cu, const float *dx, int64_t ldx, const int32_t *didx, float *dy, int64_t ldy, int64_t n,
                 int64_t R)
{
    if (n < 0 || R < 0) return G4_ERR_RANGE;
    if (!n || !R) return G4_OK;
    k_gather<<<s_grid_rows(n, R), G4_CU_THREADS, 0, cu->stream>>>(dx, ldx, didx, dy, ldy, n, R);
    return g4_cu_check_launch(NULL, "gather");
}

int g4_cu_scatter(g4_cu_t *cu, const float *dx, int64_t ldx, const int32_t *didx, float *dy, int64_t ldy, int64_t n,
                  int64_t R)
{
    if (n < 0 || R < 0) return G4_ERR_RANGE;
    if (!n || !R) return G4_OK;
    k_scatter<<<s_grid_rows(n, R), G4_CU_THREADS, 0, cu->stream>>>(dx, ldx, didx, dy, ldy, n, R);
    return g4_cu_check_launch(NULL, "scatter");
}

} /* extern "C" */
