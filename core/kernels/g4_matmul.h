/* g4_matmul — Y = X · Wᵀ for any computable weight type, with OpenMP.
 *
 * W is a weight tensor with ne = [K, N] (N rows of K); X holds T activation
 * rows of K floats; Y receives T rows of N floats. The activation rows are
 * first converted to the weight type's activation format (g4_dot.h), once
 * per call, into caller-provided scratch: the decode loop allocates nothing.
 * T = 1 is matrix × vector (decode, streams W once); T > 1 is matrix ×
 * matrix (prefill), tiled so a block of W rows stays in cache while every
 * activation row passes over it. */
#ifndef G4_MATMUL_H
#define G4_MATMUL_H

#include <stddef.h>
#include <stdint.h>

#include "g4_tensor.h"

/* Threads used by kernels (default: OpenMP's default). n <= 0 resets. */
void g4_kernels_set_threads(int n);
int g4_kernels_threads(void);
/* The thread count llama.cpp starts with on this machine (its
 * cpu_get_num_math on a non-hybrid x86: one per physical core, hyper-threads
 * counted once, from /sys; the online CPUs when that cannot be read). Numbers
 * that depend on llama.cpp's thread count (its split-KV decode) use it. */
int g4_cpu_math_cores(void);

/* Bytes of scratch g4_matmul needs for T rows against weights of type t with rows of K. */
size_t g4_matmul_scratch_bytes(g4_dtype_t t, int64_t K, int64_t T);

/* Y[t*ldy + n] = dot(row n of W, X[t*ldx ..]), t < T, n < N.
 * `rows` (if not NULL) restricts to weight rows [row0, row0+nrows) — used for
 * a slice of a stacked tensor (experts) — and Y's columns are relative.
 * scratch: at least g4_matmul_scratch_bytes() bytes, 64-byte aligned.
 * Returns G4_OK or G4_ERR_RANGE for an unsupported type / bad shape. */
int g4_matmul(const g4_tensor_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx, int64_t T,
              float *Y, int64_t ldy, void *scratch);

/* Plain scalar twin: dequantizes with the ref dot products, single thread. */
int g4_matmul_ref(const g4_tensor_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx, int64_t T,
                  float *Y, int64_t ldy, void *scratch);

#endif
