/* g4_gguf_write — builds a GGUF v3 file: metadata, tensor infos, aligned data.
 *
 * Used by tests (synthetic models, hostile files), benchmarks and the
 * quantizer. Metadata is encoded as it is added; tensor data pointers are
 * borrowed until g4_gguf_writer_write() returns. Tensor order and key order
 * are the order of the add calls. */
#ifndef G4_GGUF_WRITE_H
#define G4_GGUF_WRITE_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

#include "g4_err.h"
#include "g4_gguf.h"

typedef struct g4_gguf_writer g4_gguf_writer_t;

g4_gguf_writer_t *g4_gguf_writer_new(g4_err_t *err);
void g4_gguf_writer_destroy(g4_gguf_writer_t **w);

/* Alignment of tensor data (default 32); also written as general.alignment
 * when it differs from 32. */
int g4_gguf_writer_set_alignment(g4_gguf_writer_t *w, uint32_t alignment);

int g4_gguf_writer_add_u32(g4_gguf_writer_t *w, const char *key, uint32_t v);
int g4_gguf_writer_add_i32(g4_gguf_writer_t *w, const char *key, int32_t v);
int g4_gguf_writer_add_u64(g4_gguf_writer_t *w, const char *key, uint64_t v);
int g4_gguf_writer_add_f32(g4_gguf_writer_t *w, const char *key, float v);
int g4_gguf_writer_add_bool(g4_gguf_writer_t *w, const char *key, int v);
int g4_gguf_writer_add_str(g4_gguf_writer_t *w, const char *key, const char *s);
/* Array of fixed-size elements (elem_type not STRING/ARRAY), n elements at data. */
int g4_gguf_writer_add_arr(g4_gguf_writer_t *w, const char *key, g4_gguf_type_t elem_type, const void *data,
                           uint64_t n);
int g4_gguf_writer_add_arr_str(g4_gguf_writer_t *w, const char *key, const char *const *strs, uint64_t n);
/* A value given as its raw encoding (what g4_gguf_kv_raw returns). */
int g4_gguf_writer_add_raw(g4_gguf_writer_t *w, const char *key, g4_gguf_type_t type, const void *data,
                           uint64_t len);

/* Adds a tensor; data (g4_dtype_row_bytes(dtype, ne[0]) * rows bytes) is
 * borrowed until write returns. */
int g4_gguf_writer_add_tensor(g4_gguf_writer_t *w, const char *name, g4_dtype_t dtype, int n_dims,
                              const int64_t *ne, const void *data);

/* Writes the file. */
int g4_gguf_writer_write(g4_gguf_writer_t *w, const char *path, g4_err_t *err);
/* Streaming: writes everything before the tensor data (header, metadata,
 * tensor infos, padding) to f; tensor data pointers are not read and may be
 * NULL. The caller then writes each tensor's bytes in add order, each
 * followed by zeros up to a multiple of the alignment (what g4_gguf_writer_write
 * does), so files of any size need no memory for their data. */
int g4_gguf_writer_write_header(g4_gguf_writer_t *w, FILE *f, g4_err_t *err);
/* Returns the file image in a new buffer (caller g4_free()s *out). */
int g4_gguf_writer_write_mem(g4_gguf_writer_t *w, uint8_t **out, size_t *size, g4_err_t *err);

#endif
