/* g4_norm — RMS normalisation as llama.cpp's CPU backend computes it:
 * squares in f32 summed in double, scale = 1/sqrtf((float)(sum/n) + eps),
 * y = (x·scale)·w (the weight multiply is a separate f32 rounding step). */
#ifndef G4_NORM_H
#define G4_NORM_H

#include <stdint.h>

/* y[i] = x[i]*scale*(w ? w[i] : 1); y may equal x. */
void g4_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps);
void g4_rmsnorm_ref(const float *x, const float *w, float *y, int64_t n, float eps);

#endif
