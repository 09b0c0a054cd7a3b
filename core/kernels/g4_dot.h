/* g4_dot — weight-row × activation-row dot products, paired the way
 * llama.cpp's CPU backend pairs them (docs/gguf-quant-formats):
 *
 *   weight       activation row converted to   accumulation
 *   F32          F32                           f32
 *   F16          F16 (RNE)                     f32
 *   BF16         BF16 (RNE)                    f32
 *   Q8_0 Q4_0 Q5_0   Q8_0 (x86 rule: 127/amax, ties to even)   int per block
 *   Q4_1 Q5_1        Q8_1 (x86 rule, s = d·Σq)                 int per block
 *   Q4_K Q5_K Q6_K   Q8_K (-127/max, nearest even)             int per sub-block
 *
 * Each operation has a plain scalar `_ref` twin (g4_type_ops_t.*_ref) that
 * tests compare the fast one against. The fast pointers are chosen once at
 * run time from the CPU's features (AVX-512 / AVX2 / scalar). */
#ifndef G4_DOT_H
#define G4_DOT_H

#include <stdint.h>

#include "g4_dtype.h"

/* s = dot(weight row w, activation row a) over n elements. */
typedef void (*g4_vec_dot_fn)(int64_t n, float *s, const void *w, const void *a);
/* s[t*s_stride] = dot(w, a + t*a_stride) for t = 0..3, bit-identical to four
 * vec_dot calls (the weight row is read once for four activation rows). */
typedef void (*g4_vec_dot4_fn)(int64_t n, float *s, int64_t s_stride, const void *w, const void *a, int64_t a_stride);
/* The same for two weight rows (w, w + w_stride): s[t*s_stride + j], j = 0, 1. */
typedef void (*g4_vec_dot4x2_fn)(int64_t n, float *s, int64_t s_stride, const void *w, int64_t w_stride, const void *a,
                                 int64_t a_stride);
/* Converts n floats into the activation type. */
typedef void (*g4_from_float_fn)(const float *x, void *y, int64_t n);

typedef struct g4_type_ops {
    g4_dtype_t act_type;            /* activation type paired with this weight type */
    g4_from_float_fn from_float;    /* fast, dispatched                              */
    g4_from_float_fn from_float_ref;
    g4_vec_dot_fn vec_dot;          /* fast, dispatched                              */
    g4_vec_dot_fn vec_dot_ref;
    g4_vec_dot4_fn vec_dot4;        /* NULL: use vec_dot four times                  */
    g4_vec_dot4x2_fn vec_dot4x2;    /* NULL: use vec_dot4 twice                      */
    g4_vec_dot4x2_fn vec_dot4x4;    /* four weight rows (same signature, 4 rows)     */
    g4_vec_dot4x2_fn vec_dot8x4;    /* four weight rows x eight activation rows      */
    g4_vec_dot4x2_fn vec_dot1x4;    /* four weight rows x one activation row (s[j])  */
} g4_type_ops_t;

/* Ops for weights of type t, or NULL if g4 cannot multiply with it. */
const g4_type_ops_t *g4_type_ops(uint32_t t);

/* Detects the CPU (idempotent, thread-safe); the env var G4_ISA=scalar|avx2|avx512
 * caps what is used. Called by g4_type_ops() on first use. */
void g4_kernels_init(void);
/* "avx512", "avx2" or "scalar": the widest instruction set in use. */
const char *g4_kernels_isa(void);

/* F16 accumulators as ggml's flash attention keeps them (every result rounded
 * to F16, nearest even): acc = f16(acc * s); acc = f16(fma(v, s, acc)).
 * Exact: the SIMD versions give the same bits as the scalar ones. */
void g4_f16_scale(uint16_t *acc, float s, int64_t n);
void g4_f16_mad(uint16_t *acc, const uint16_t *v, float s, int64_t n);

/* s[g] = the F16 vec_dot of row w with row a + g·as, g = 0..G-1: exactly
 * the bits of G vec_dot calls, w read once (attention: the query heads that
 * share a KV head, over one cached K row). */
void g4_dot_f16_g(int64_t n, float *s, const uint16_t *w, const uint16_t *a, int64_t as, int G);

/* Activation quantizers, scalar twins of the x86 SIMD code. */
void g4_quant_q8_0_x86_ref(const float *x, void *y, int64_t n);
void g4_quant_q8_1_x86_ref(const float *x, void *y, int64_t n);

#endif
