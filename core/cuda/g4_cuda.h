/* g4_cuda — the CUDA backend's device layer: one device and its stream,
 * device memory, and the kernels of a Gemma 4 layer, as C functions the
 * model's device forward pass (core/model/g4_forward_cuda.c) calls in order.
 *
 * Every kernel function enqueues on the handle's stream and returns at once
 * (G4_OK, or a G4_ERR_* with the message in err when the launch itself is
 * refused: an unsupported type or shape); g4_cu_sync waits and reports the
 * first asynchronous failure. Pointers named d* are device memory; all
 * activations are f32 rows with a leading dimension (floats between rows).
 *
 * The numbers follow the CPU twins (the _ref functions of core/kernels, g4_attn_ref) within
 * float tolerance; matrix products take the CPU's arithmetic itself (the
 * activations quantized like the CPU's, exact block sums, the same float
 * expression per block: see G4_CUDA_MM near the end). GELU is the tanh formula rounded
 * through f16 like the CPU's table; attention is flash-style (online softmax
 * in f32) over an F16 or F32 cache.
 *
 * Built only when CMake finds nvcc (G4_CUDA); without it g4_cu_available()
 * is the only function and says 0 (g4_cuda_none.c). */
#ifndef G4_CUDA_H
#define G4_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "g4_dtype.h"
#include "g4_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct g4_cu g4_cu_t;

/* 1 when this build has the CUDA backend. */
int g4_cu_available(void);
/* Devices the runtime sees (0 without a driver or a device). */
int g4_cu_device_count(void);
/* Device dev's name, free and total memory: G4_OK, or an error (no such device). */
int g4_cu_device_info(int dev, char *name, size_t name_len, size_t *free_bytes, size_t *total_bytes, g4_err_t *err);

/* Opens device dev (cudaSetDevice on the calling thread, a non-blocking
 * stream, a few MiB of workspace). NULL and err when it cannot. */
g4_cu_t *g4_cu_open(int dev, g4_err_t *err);
void g4_cu_close(g4_cu_t **cu);
int g4_cu_device(const g4_cu_t *cu);
/* Waits for the stream; the first asynchronous error since the last sync. */
int g4_cu_sync(g4_cu_t *cu, g4_err_t *err);

/* Device memory (cudaMalloc, zeroed); NULL when out of memory. */
void *g4_cu_alloc(g4_cu_t *cu, size_t n);
void g4_cu_free(g4_cu_t *cu, void *d);
/* Host memory pinned for fast copies (cudaMallocHost); NULL on failure. */
void *g4_cu_host_alloc(size_t n);
void g4_cu_host_free(void *h);
/* Copies on the stream (async; a pageable host buffer makes them
 * effectively synchronous). */
int g4_cu_h2d(g4_cu_t *cu, void *d, const void *h, size_t n);
int g4_cu_d2h(g4_cu_t *cu, void *h, const void *d, size_t n);
int g4_cu_d2d(g4_cu_t *cu, void *d, const void *s, size_t n);

/* CUDA graphs: the kernels a decode step enqueues, recorded once and
 * replayed with one launch. Between begin and end nothing runs: the calls
 * only record (their arguments must stay valid: device buffers whose
 * contents the caller refreshes before each launch). end gives the graph,
 * or *g = NULL when the capture broke (a call needed to grow the workspace
 * or to wait): then nothing ran and the work must be enqueued again, plainly.
 * A graph is valid while g4_cu_ws_epoch is what it was at the capture (the
 * workspace has not moved). */
typedef struct g4_cu_graph g4_cu_graph_t;
int g4_cu_capture_begin(g4_cu_t *cu, g4_err_t *err);
int g4_cu_capture_end(g4_cu_t *cu, g4_cu_graph_t **g, g4_err_t *err);
int g4_cu_graph_launch(g4_cu_t *cu, g4_cu_graph_t *g, g4_err_t *err);
void g4_cu_graph_free(g4_cu_graph_t **g);
uint64_t g4_cu_ws_epoch(const g4_cu_t *cu);

/* 1 when g4_cu_matmul can multiply with weights of type t. */
int g4_cu_type_ok(g4_dtype_t t);

/* Y[t*ldy + n] = dot(row n of W, X[t*ldx ..]) for t < T, n < N.
 * dW: N rows of K elements of type t, `row_bytes` apart (the GGUF layout:
 * row_bytes = K / block size * block bytes). K a multiple of the type's
 * block size. T small (<= 8): matrix × vector kernels; larger: tensor cores.
 * Uses the workspace (X in the weight type's activation format: about
 * T·K bytes, or T·K·2-4 for the float types). See G4_CUDA_MM below. */
int g4_cu_matmul(g4_cu_t *cu, g4_dtype_t t, const void *dW, size_t row_bytes, int64_t K, int64_t N, const float *dX,
                 int64_t ldx, int64_t T, float *dY, int64_t ldy, g4_err_t *err);

/* y[r] = rms(x[r])·w for rows r < R of n (w NULL: none); y may be x. The
 * sum of squares in f32 per element, accumulated in double like g4_rmsnorm_ref. */
int g4_cu_rmsnorm(g4_cu_t *cu, const float *dx, int64_t ldx, const float *dw, float *dy, int64_t ldy, int64_t n,
                  int64_t R, float eps);
/* x[r] += y[r] (rows of n); with dw: x[r] += rms(y[r])·w (post-norm and
 * residual in one, rms as g4_cu_rmsnorm). y may not alias x. */
int g4_cu_add_rms(g4_cu_t *cu, float *dx, int64_t ldx, const float *dy, int64_t ldy, const float *dw, int64_t n,
                  int64_t R, float eps);
/* x[i] *= s over n contiguous floats. */
int g4_cu_scale(g4_cu_t *cu, float *dx, int64_t n, float s);
/* x[i] = cap·tanh(x[i]/cap) over n. */
int g4_cu_softcap(g4_cu_t *cu, float *dx, int64_t n, float cap);
/* y[i] = gelu(x[i])·g[i] (g NULL: gelu alone), the CPU's f16-table GELU
 * (g4_geglu_ref / g4_gelu_ref). y may be x. */
int g4_cu_geglu(g4_cu_t *cu, const float *dx, const float *dg, float *dy, int64_t n);
/* y[i] = x[i]·g[i] over rows: y[r*ldy + i] = x[r*ldx + i]·g[r*ldg + i], i < n. */
int g4_cu_mul(g4_cu_t *cu, const float *dx, int64_t ldx, const float *dg, int64_t ldg, float *dy, int64_t ldy,
              int64_t n, int64_t R);

/* NEOX RoPE in place on T rows of n_heads heads of hd (row stride ld):
 * the first n_rot dims of each head rotate in pairs (i, i + n_rot/2) by
 * pos[t]·base^(-2i/n_rot) / ff[i] (ff NULL: 1), as g4_rope_ref. dpos: device int32[T]. */
int g4_cu_rope(g4_cu_t *cu, float *dx, int64_t ld, int64_t T, int n_heads, int hd, int n_rot, const int32_t *dpos,
               float base, const float *dff);

/* Writes T rows of n floats (row stride ld) into a cache of `cells` rows of
 * n elements (F16: g4 rounding to nearest even; F32: as is) at row
 * pos[t] % cells of the cache dcache[t] (device pointers, one per row, so
 * the rows of several sequences go in one launch): ddst: device void*[T]. */
int g4_cu_kv_store(g4_cu_t *cu, void *const *ddst, int cells, int is_f16, const float *dsrc, int64_t ld, int64_t n,
                   int64_t T, const int32_t *dpos);

/* Attention of T query rows over their sequences' caches, flash-style:
 * out[t, h] = Σ_p softmax_p(q[t,h]·K[p]) V[p] over positions p in
 * [lo[t], hi[t]] (scale 1, no mask beyond the range), K/V row p at cell
 * p % cells; query head h reads KV head h / (n_head / n_kv).
 *   dq      [T][n_head*hd] (row stride ldq)
 *   dK, dV  device void*[T]: the row's sequence's cache base (cells rows of
 *           n_kv*hd elements, F16 or F32)
 *   dlo, dhi device int32[T]
 *   dout    [T][n_head*hd] (row stride ldo)
 * Long ranges are split across blocks and combined (flash-decoding). */
int g4_cu_attention(g4_cu_t *cu, const float *dq, int64_t ldq, int64_t T, int n_head, int n_kv, int hd,
                    const void *const *dK, const void *const *dV, int cells, int is_f16, const int32_t *dlo,
                    const int32_t *dhi, float *dout, int64_t ldo, g4_err_t *err);

/* Attention as the CPU path computes it (core/model/g4_attn.h), row by row:
 * the cells of the row's view in its order, the same roundings, so the GPU
 * follows the CPU bit for bit (g4_cuda_ops.cu lists what is matched). */
#define G4_CU_ATTN_TILE_KV 64    /* = G4_ATTN_TILE_KV (core/model/g4_attn.h): cells per tile of g4_attn_f32 */
#define G4_CU_ATTN_SPLIT_MIN 512 /* = G4_ATTN_SPLIT_MIN (core/model/g4_attn.h): views that g4_attn_f16 splits */
/* How the CPU sums an F16 q·k over hd in g4_attn_f16 (g4_dot_f16_g, chosen
 * by g4_kernels_isa()): "avx512" (also what a zeroed descriptor says),
 * "avx2", "scalar" (any other machine too: the products summed in double). */
enum { G4_CU_DOT_AVX512 = 0, G4_CU_DOT_AVX2 = 1, G4_CU_DOT_SCALAR = 2 };
typedef struct g4_cu_attn_row {
    const void *K, *V;     /* the row's sequence's cache of this layer: `cells` rows of n_kv*hd elements */
    const int32_t *view;   /* device: cell i of the view holds position view[i] (-1: empty); NULL: position i */
    int32_t n_view;        /* cells of the view                                                          */
    int32_t lo, hi;        /* positions the row sees                                                      */
    int32_t single;        /* 1: g4_attn_f16's arithmetic (F16 cache only), 0: g4_attn_f32's              */
    int32_t splits;        /* single: chunks (used when n_view >= G4_ATTN_SPLIT_MIN, else 1)              */
    int32_t dot;           /* single: G4_CU_DOT_* of the CPU to follow                                     */
} g4_cu_attn_row_t;
/* T query rows, row t described by drows[t] (device memory, read by the
 * kernels: it, the views and the caches must stay valid until they ran).
 * A view cell holding position p (>= 0, in [lo, hi]) reads cache row
 * p % cells; query head h uses KV head h / (n_head / n_kv); q of row t head
 * h at dq + t*ldq + h*hd, its output likewise at dout (which may be dq with
 * the same ld). Per row the output has the bits of g4_attn_f16_g (single)
 * or of g4_attn_f32 (one row of its call: the same for any rows beside it)
 * on the CPU whose expf (glibc's) and dot order (dot) it follows. single
 * with an F32 cache (is_f16 0) is served as single 0. hd: a multiple of 32
 * up to 512; cache bases 16-byte aligned for the fast copies. */
int g4_cu_attention_rows(g4_cu_t *cu, const float *dq, int64_t ldq, int64_t T, int n_head, int n_kv, int hd,
                         const g4_cu_attn_row_t *drows, int cells, int is_f16, float *dout, int64_t ldo, g4_err_t *err);

/* MoE: y[t] (rows of n) = Σ_k w[t,k]·s[e_tk]·d[t*K + k] summed over k in
 * order (s NULL: 1); d: [T*K][n] the experts' outputs. */
int g4_cu_moe_combine(g4_cu_t *cu, const float *dd, const float *dw, const int32_t *dsel, const float *dscale,
                      float *dy, int64_t n, int64_t T, int K);
/* Gathers rows: y[i] = x[idx[i]] (rows of n, strides ldx / ldy), i < R. */
int g4_cu_gather(g4_cu_t *cu, const float *dx, int64_t ldx, const int32_t *didx, float *dy, int64_t ldy, int64_t n,
                 int64_t R);
/* Scatters rows: y[idx[i]] = x[i], i < R. */
int g4_cu_scatter(g4_cu_t *cu, const float *dx, int64_t ldx, const int32_t *didx, float *dy, int64_t ldy, int64_t n,
                  int64_t R);

/* Test hook (no device needed): dequantizes one row of K elements of type
 * t on the host with the code g4_cu_matmul's kernels use (g4_cuda_quant.cuh),
 * in the CPU's arithmetic (bit-identical to g4_dequant_row). G4_OK, or
 * G4_ERR_RANGE for a type g4_cu_type_ok refuses or K not whole blocks. */
int g4_cu_dequant_row_host(g4_dtype_t t, const void *row, float *out, int64_t K);

/* g4_cu_matmul's numbers. By default they are the CPU's (g4_matmul_ref):
 * X is first converted to the weight type's activation format exactly as
 * the CPU's from_float does (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1,
 * Q8_K for Q4_K/Q5_K/Q6_K, F16/BF16/F32 for the float types), each block's
 * integer dot product is exact, its term is the CPU _ref's float expression
 * and the terms are added in the CPU's order: g4_matmul_ref's bits, for all
 * T. Float weights sum w·a in double like the CPU (T <= 8: per-lane partial
 * double sums, the same f32 in practice).
 * G4_CUDA_MM=fast in the environment (read at the first call) selects the
 * earlier kernels instead: unquantized f32 activations times weights
 * dequantized to f32 (T <= 8) or f16 on the tensor cores (T > 8): within
 * ~1e-3 of the exact product, not the CPU's numbers (for speed comparisons).
 *
 * Test hooks for that path (no device needed; each runs the kernels' own
 * code on the host, thread by thread; G4_OK, or G4_ERR_RANGE for a type
 * g4_cu_type_ok refuses or K not whole blocks, G4_ERR_NOMEM):
 *   g4_cu_quantize_act_host  one row of K floats in the activation format of
 *       weight type t, as the CPU's block array (what from_float_ref writes:
 *       g4_block_q8_0 / _q8_1 / _q8_K, f16 / bf16 bits, floats);
 *   g4_cu_block_dots_host  (quantized t only) terms[b] = block b's term of the
 *       dot of a weight row with an activation row in that format, as the
 *       matrix × vector kernels compute it (the CPU's vec_dot_ref over that
 *       one block gives the same bits);
 *   g4_cu_matmul_host  g4_cu_matmul on host memory, the default path. */
int g4_cu_quantize_act_host(g4_dtype_t t, const float *x, void *out, int64_t K);
int g4_cu_block_dots_host(g4_dtype_t t, const void *w_row, const void *act, int64_t K, float *terms);
int g4_cu_matmul_host(g4_dtype_t t, const void *W, size_t row_bytes, int64_t K, int64_t N, const float *X, int64_t ldx,
                      int64_t T, float *Y, int64_t ldy);

#ifdef __cplusplus
}
#endif

#endif
