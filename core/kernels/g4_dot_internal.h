/* Internal: the per-ISA kernel tables filled by g4_dot_x86.c. */
#ifndef G4_DOT_INTERNAL_H
#define G4_DOT_INTERNAL_H

#include "g4_dot.h"

typedef struct g4_dot_simd {
    g4_vec_dot_fn dot[G4_DTYPE_COUNT];
    g4_from_float_fn from_float[G4_DTYPE_COUNT]; /* indexed by activation type */
    g4_vec_dot4_fn dot4[G4_DTYPE_COUNT];
    g4_vec_dot4x2_fn dot4x2[G4_DTYPE_COUNT];
    g4_vec_dot4x2_fn dot4x4[G4_DTYPE_COUNT];
    g4_vec_dot4x2_fn dot8x4[G4_DTYPE_COUNT];
    g4_vec_dot4x2_fn dot1x4[G4_DTYPE_COUNT];
    void (*f16_scale)(uint16_t *acc, float s, int64_t n);
    void (*f16_mad)(uint16_t *acc, const uint16_t *v, float s, int64_t n);
    /* G F16 dot products sharing w, each the bits of dot[G4_DTYPE_F16] */
    void (*f16_dot_g)(int64_t n, float *s, const uint16_t *w, const uint16_t *a, int64_t as, int G);
} g4_dot_simd_t;

/* Fill `t` with what AVX2 (+FMA, F16C) provides; NULL entries keep the scalar one. */
void g4_dot_fill_avx2(g4_dot_simd_t *t);
/* Same for AVX-512 (F, BW, VL; VNNI/BF16 where present). */
void g4_dot_fill_avx512(g4_dot_simd_t *t, int has_vnni, int has_bf16);

#endif
