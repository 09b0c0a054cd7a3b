/* g4_rope — rotary position embedding, NEOX pairing (i, i + n_rot/2), with
 * an optional frequency-factor table, as ggml's CPU rope computes it: the
 * angle is built by repeated f32 multiplication theta *= base^(-2/n_rot)
 * (not pow per index), divided by ff[i], and cosf/sinf are used. */
#ifndef G4_ROPE_H
#define G4_ROPE_H

#include <stdint.h>

/* Angle cache for one position: cs[2i] = cos, cs[2i+1] = sin for i < n_rot/2.
 * ff may be NULL (all ones). */
void g4_rope_cache(float *cs, int64_t pos, int hd, int n_rot, float base, const float *ff);
/* Rotates n_heads heads of hd floats (contiguous) in place with the cache;
 * only the first n_rot dims of each head rotate. */
void g4_rope_apply(float *x, int n_heads, int hd, int n_rot, const float *cs);
/* Plain twin: computes the angles itself. */
void g4_rope_ref(float *x, int n_heads, int hd, int n_rot, int64_t pos, float base, const float *ff);

#endif
