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
 * every q is read before the output that overwrites it is written. */
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
