/* g4_pack — weight matrices with their rows interleaved in groups of 16, for
 * the integer dot-product instructions (AVX-512 VNNI vpdpbusd).
 *
 * In a packed matrix the 16 rows of a group are stored block by block
 * (GGUF block i of all 16 rows, then block i + 1, ...), and inside a block
 * every field is laid out "16 rows side by side": one 64-byte vector holds
 * four consecutive quant bytes of each of the 16 rows, so one vpdpbusd with
 * a broadcast activation word multiplies 16 rows at once and leaves each
 * row's sum in its own 32-bit lane. A group takes exactly the bytes of its
 * 16 rows (same size as the GGUF), so the model's weight copy can be packed
 * in place of being copied.
 *
 * Packed kernels compute, for each row, the exact integer sums of the
 * scalar reference (g4_dot.c) per block and then its float operations in its
 * order, so a packed matrix gives the same bits as the row-major one.
 *
 * Only g4_matmul reads a packed tensor (g4_tensor_t.packed); the model packs
 * only matrices used for nothing else (g4_warm.c). */
#ifndef G4_PACK_H
#define G4_PACK_H

#include <stdint.h>

#include "g4_dtype.h"

#define G4_PACK_ROWS 16

/* A packed group times up to 4 activation rows (converted to the weight's
 * activation type, g4_type_ops_t.act_type):
 *   y[t*ldy + r] = dot(row r of the group, activation row t),
 *   r = 0..15, t = 0..T-1, T = 1..4.
 * aux: per activation row what g4_pack_ops_t.prep made of it (stride in
 * int32s), NULL when the type has no prep. first: the first pass over this
 * group (it comes from memory: the kernel prefetches ahead), else it was
 * just read and sits in the cache. */
typedef void (*g4_pack_gemm_fn)(int64_t K, const void *w, const void *a, int64_t a_stride, const int32_t *aux,
                                int64_t aux_stride, int T, int first, float *y, int64_t ldy);
/* per converted activation row: the int32s the kernel needs besides it */
typedef void (*g4_pack_prep_fn)(int64_t K, const void *a, int32_t *aux);

typedef struct g4_pack_ops {
    g4_pack_gemm_fn gemm;
    g4_pack_prep_fn prep; /* NULL: none                          */
    int64_t aux_per_block; /* int32s of aux per weight block     */
} g4_pack_ops_t;

/* The packed kernels for weight type t on this CPU, or NULL (then g4 never
 * packs such a matrix). $G4_NO_PACK set: NULL for every type. */
const g4_pack_ops_t *g4_pack_ops(uint32_t t);

/* Whether an N x K matrix of type t can be packed here: kernels exist and
 * N is a whole number of groups. */
int g4_pack_able(uint32_t t, int64_t K, int64_t N);

/* Packs n_groups groups (16 rows each, row stride `stride` bytes in src)
 * into dst (n_groups * 16 * row_bytes bytes). Plain byte moves. */
void g4_pack_rows(uint32_t t, int64_t K, const void *src, uint64_t stride, int64_t n_groups, void *dst);

/* The inverse for one row (tests, and anything that must read a row). */
void g4_pack_unpack_row(uint32_t t, int64_t K, const void *packed, int64_t row, void *dst);

/* Filled by g4_dot_x86.c's AVX-512 VNNI part. */
void g4_pack_fill_x86(g4_pack_ops_t ops[G4_DTYPE_COUNT]);

#endif
