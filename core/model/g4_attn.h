/* g4_attn — attention of query rows over one sequence's KV cache of one
 * layer, on CPU: the two kernels llama.cpp's CPU backend runs (docs:
 * gemma4-model.md §8) and a plain g4_attn_ref twin the tests compare them
 * with. Gemma 4 scales nothing (q and k are RMS-normed: scale 1) and soft-caps
 * nothing here. The cache is F16 or f32 rows of row_bytes, cell p % cells
 * holding position p (a ring on sliding layers); a row attends to positions
 * [lo, hi]. Used by g4_forward.c; no state, no allocation. */
#ifndef G4_ATTN_H
#define G4_ATTN_H

#include <stddef.h>
#include <stdint.h>

/* the most query heads g4_attn_f32 serves together */
#define G4_ATTN_GMAX 64

/* One query row (q: [hd] f32) over cells [lo, hi], the single-query
 * flash-attention kernel of ggml's CPU backend for an F16 cache: Q rounded to
 * F16, f16·f16 scores accumulated in f32, cells visited in position order,
 * online softmax with the running Σ softmax·V kept in an F16 buffer.
 * out: [hd] f32. buf: 4 * hd bytes of scratch. */
void g4_attn_f16(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                 int cells, float *out, uint8_t *buf);

/* G query heads that share a KV head (q, out: [G][hd] f32), the tiled
 * kernel's arithmetic (ubatches of >= 64 rows, F32 cache): scores, max,
 * exp, Σ, then Σ softmax·V; each K and V row read once for all G heads, and
 * each head gets the bits it gets alone. is_f16: the cache holds F16.
 * buf: G * (hi - lo + 1) floats of scratch. G <= G4_ATTN_GMAX. */
void g4_attn_f32(const float *q, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes, int is_f16, int hd,
                 int lo, int hi, int cells, float *out, uint8_t *buf);

/* The plain twin: one query row, scores and softmax in double, the textbook
 * two-pass formula. No rounding is shared with the kernels above: tests state
 * a tolerance (F16 cache: the kernels round Q, and g4_attn_f16 its sum). */
void g4_attn_ref(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int is_f16, int hd, int lo,
                 int hi, int cells, float *out);

#endif
