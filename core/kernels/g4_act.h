/* g4_act — activations and softmax as llama.cpp's CPU backend computes them.
 *
 * GELU (tanh form) goes through an F16 table on the CPU backend: for
 * -10 < x < 10 the input is rounded to f16 and the f16-rounded gelu of that
 * value is returned; x <= -10 gives 0, x >= 10 gives x. GeGLU multiplies the
 * table value by the up projection in f32 (unrounded). */
#ifndef G4_ACT_H
#define G4_ACT_H

#include <stdint.h>

/* The exact tanh formula in f32 (what the table is built from). */
float g4_gelu_f32(float x);
/* y = gelu(x) (table semantics). y may equal x. */
void g4_gelu(const float *x, float *y, int64_t n);
void g4_gelu_ref(const float *x, float *y, int64_t n);
/* y = gelu(x) * g (table semantics). y may equal x or g. */
void g4_geglu(const float *x, const float *g, float *y, int64_t n);
void g4_geglu_ref(const float *x, const float *g, float *y, int64_t n);
/* quick GELU x*sigmoid(1.702x) and SiLU x*sigmoid(x), plain f32. */
void g4_gelu_quick(const float *x, float *y, int64_t n);
void g4_silu(const float *x, float *y, int64_t n);

/* In-place softmax: f32 exp(x - max), sum in double, scaled by 1/sum.
 * -INFINITY entries give 0. */
void g4_softmax(float *x, int64_t n);
void g4_softmax_ref(float *x, int64_t n);

/* y = cap * tanh(x * (1/cap)) in place. */
void g4_softcap(float *x, int64_t n, float cap);

#endif
