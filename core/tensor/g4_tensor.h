/* g4_tensor — a tensor view: pointer, type, shape and byte strides.
 *
 * Views never own memory; the header of whoever hands one out says what it
 * points into (a GGUF mapping, an arena) and how long that lives. Shapes use
 * ggml order: ne[0] is the fastest-varying dimension (a row), so a weight
 * matrix with ne = [K, N] is N rows of K elements. */
#ifndef G4_TENSOR_H
#define G4_TENSOR_H

#include <stdint.h>

#include "g4_dtype.h"

#define G4_MAX_DIMS 4

typedef struct g4_tensor {
    const char *name;       /* borrowed, may be NULL                         */
    void *data;             /* borrowed                                      */
    g4_dtype_t dtype;
    int n_dims;
    int64_t ne[G4_MAX_DIMS]; /* elements per dimension (unused dims are 1)   */
    uint64_t nb[G4_MAX_DIMS]; /* bytes per step in each dimension; nb[0] is
                                 bytes per block, nb[1] the row stride       */
    uint64_t n_bytes;       /* total bytes                                   */
    int packed;             /* rows interleaved in groups of 16 (g4_pack.h):
                               only g4_matmul may read such a tensor         */
} g4_tensor_t;

static inline int64_t g4_tensor_nrows(const g4_tensor_t *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }
static inline int64_t g4_tensor_nelements(const g4_tensor_t *t) { return t->ne[0] * g4_tensor_nrows(t); }
/* Pointer to row r (counting all dims above 0 as rows). */
static inline void *g4_tensor_row(const g4_tensor_t *t, int64_t r) { return (uint8_t *)t->data + (uint64_t)r * t->nb[1]; }

#endif
