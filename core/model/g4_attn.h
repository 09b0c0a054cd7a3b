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
/* llama.cpp's CPU flash attention: cells per KV tile of the tiled kernel, and
 * the view size from which a single-row ubatch reduces the KV in chunks */
#define G4_ATTN_TILE_KV 64
#define G4_ATTN_TILE_Q 64
#define G4_ATTN_SPLIT_MIN 512

/* The cells a row visits, as llama.cpp's cache lays them out: cell i of the
 * view [0, n_kv) holds position pos[i] (-1: empty), or position i when pos is
 * NULL (a full layer's cache, never reused). g4 itself keeps position p at
 * row p % ring of its cache; the view only orders the visits and draws the
 * chunk and tile boundaries that decide the roundings. A row sees the
 * positions in [lo, hi]. */
typedef struct g4_attn_view {
    const int32_t *pos;
    int n_kv;
    int ring;
} g4_attn_view_t;

/* One query row (q: [hd] f32), the single-query flash-attention kernel of
 * ggml's CPU backend for an F16 cache: Q rounded to F16, f16·f16 scores
 * accumulated in f32, cells visited in view order, online softmax with the
 * running Σ softmax·V kept in an F16 buffer. With splits > 1 and a view of
 * G4_ATTN_SPLIT_MIN cells or more (llama.cpp: a ubatch of one row), the view
 * is cut into `splits` contiguous chunks of ceil(n_kv/splits) cells, each
 * reduced alone, and the chunks' (max, sum, f32 partial) merged in f32 in
 * chunk order — the split-KV decode path, whose numbers depend on its thread
 * count. out: [hd] f32. buf: 12 * hd bytes of scratch. */
void g4_attn_f16(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                 const g4_attn_view_t *vw, int splits, float *out, uint8_t *buf);
/* The same for G (<= G4_ATTN_GMAX) query heads that share this K/V (head g:
 * q + g·hd, out + g·hd): for each head the bits of g4_attn_f16, each K and V
 * row read once for all of them (a decode step reads the cache once per KV
 * head, not once per query head). buf: g4_attn_f16_buf_bytes(G, hd). */
void g4_attn_f16_g(const float *q, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                   const g4_attn_view_t *vw, int splits, float *out, uint8_t *buf);
size_t g4_attn_f16_buf_bytes(int G, int hd);

/* nr query rows (<= G4_ATTN_TILE_Q) of one sequence, each with the G query
 * heads that share a KV head (row r head g: q + r * q_stride + g * hd; out
 * likewise with out_stride), the tiled kernel's arithmetic (ubatches of >= 64
 * rows, F32 or F16 cache): the view in tiles of G4_ATTN_TILE_KV cells, the
 * K tile widened once for all rows; per row and tile, scores as one fused
 * multiply-add chain over the head dimension, the tile's max, exp, Σ
 * (rescaled when the max grows), then Σ softmax·V as one fused multiply-add
 * chain per output over the tile's cells. Row r sees positions [lo[r],
 * hi[r]]. is_f16: the cache holds F16. buf: g4_attn_f32_buf_bytes(G, hd). */
void g4_attn_f32(const float *q, size_t q_stride, int nr, int G, const uint8_t *K, const uint8_t *V, size_t row_bytes,
                 int is_f16, int hd, const int *lo, const int *hi, const g4_attn_view_t *vw, float *out,
                 size_t out_stride, uint8_t *buf);
size_t g4_attn_f32_buf_bytes(int G, int hd);

/* One query row (q: [hd] f32, hd a multiple of 32) over a Q8_0 cache (rows
 * of row_bytes, a head's K and V in hd/32 blocks of 34 bytes), the
 * single-query kernel ggml's CPU backend runs for every row of a quantized
 * cache (no split, no tiles): Q quantized to Q8_0, Q8_0 x Q8_0 scores, cells
 * in view order, online softmax with V dequantized and Σ softmax·V kept in
 * f32 (fused multiply-adds over the first hd rounded down to simd_step
 * elements, as ggml_vec_mad_f32). out: [hd] f32. buf: 4 * hd + hd + 64 bytes. */
void g4_attn_q8(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int hd, int lo, int hi,
                const g4_attn_view_t *vw, int simd_step, float *out, uint8_t *buf);

/* The plain twin: one query row, scores and softmax in double, the textbook
 * two-pass formula over the positions [lo, hi] (view order does not matter).
 * No rounding is shared with the kernels above: tests state a tolerance (F16
 * cache: the kernels round Q, and g4_attn_f16 its sum). */
void g4_attn_ref(const float *q, const uint8_t *K, const uint8_t *V, size_t row_bytes, int is_f16, int hd, int lo,
                 int hi, int cells, float *out);

#endif
