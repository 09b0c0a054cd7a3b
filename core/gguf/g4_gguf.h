/* g4_gguf — a checked GGUF reader (v2 and v3, little-endian).
 *
 * g4_gguf_open() maps the file read-only and validates every byte it will
 * later hand out: header, each metadata value (all 13 types, nested arrays),
 * tensor infos, alignment, and that every tensor's data lies inside the file,
 * aligned, without overlapping another. All counts, lengths, dimension
 * products and offsets use checked 64-bit arithmetic and are bounded by the
 * bytes that remain, so a hostile file yields one error line
 * ("FILE: offset N: what") and never a crash, a hang or a huge allocation.
 *
 * Afterwards the accessors cannot fail on structure: keys and tensors are
 * found by hash, values are decoded from already-validated positions.
 * Strings point into the mapping and are NOT NUL-terminated (ptr + len).
 * Everything borrowed from a g4_gguf_t is valid while it is open.
 * Not here: what the keys mean for a model (core/model/g4_hparams). */
#ifndef G4_GGUF_H
#define G4_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "g4_err.h"
#include "g4_tensor.h"

typedef struct g4_gguf g4_gguf_t;

typedef enum g4_gguf_type {
    G4_GGUF_U8 = 0,
    G4_GGUF_I8 = 1,
    G4_GGUF_U16 = 2,
    G4_GGUF_I16 = 3,
    G4_GGUF_U32 = 4,
    G4_GGUF_I32 = 5,
    G4_GGUF_F32 = 6,
    G4_GGUF_BOOL = 7,
    G4_GGUF_STRING = 8,
    G4_GGUF_ARRAY = 9,
    G4_GGUF_U64 = 10,
    G4_GGUF_I64 = 11,
    G4_GGUF_F64 = 12,
    G4_GGUF_TYPE_COUNT = 13,
} g4_gguf_type_t;

/* A decoded metadata value. For arrays, elements are read with
 * g4_gguf_arr_get(). Strings are ptr+len into the mapping. */
typedef struct g4_gguf_value {
    g4_gguf_type_t type;
    union {
        uint64_t u;  /* U8 U16 U32 U64 BOOL */
        int64_t i;   /* I8 I16 I32 I64      */
        double f;    /* F32 F64             */
    } v;
    const char *str; /* STRING */
    uint64_t str_len;
    /* ARRAY */
    g4_gguf_type_t arr_type;
    uint64_t arr_n;
    const void *arr_data; /* first element in the mapping (fixed-size elems) */
    uint32_t arr_index;   /* internal: index of the element-offset table     */
} g4_gguf_value_t;

/* Limits the reader enforces (documented so writers can respect them). */
#define G4_GGUF_MAX_ALIGNMENT (1u << 20)
#define G4_GGUF_MIN_ALIGNMENT 8u
#define G4_GGUF_MAX_NAME 256      /* tensor name bytes (llama.cpp: 63) */
#define G4_GGUF_MAX_KEY 65535
#define G4_GGUF_MAX_DEPTH 8       /* nesting of arrays */

/* Maps and validates `path`. NULL + err on failure; caller destroys. */
g4_gguf_t *g4_gguf_open(const char *path, g4_err_t *err);
/* Validates an in-memory image (borrowed; must outlive the handle).
 * `name` is used in error messages. */
g4_gguf_t *g4_gguf_open_mem(const void *data, size_t size, const char *name, g4_err_t *err);
void g4_gguf_destroy(g4_gguf_t **g);

const char *g4_gguf_path(const g4_gguf_t *g);
uint32_t g4_gguf_version(const g4_gguf_t *g);
uint64_t g4_gguf_file_size(const g4_gguf_t *g);
uint32_t g4_gguf_alignment(const g4_gguf_t *g);
uint64_t g4_gguf_data_offset(const g4_gguf_t *g); /* start of the tensor data section */
uint64_t g4_gguf_digest(const g4_gguf_t *g);   /* hash of metadata + tensor table + size */
const void *g4_gguf_base(const g4_gguf_t *g);      /* start of the mapping */

/* ---- metadata ---------------------------------------------------------- */
int64_t g4_gguf_n_kv(const g4_gguf_t *g);
const char *g4_gguf_key(const g4_gguf_t *g, int64_t i);   /* NUL-terminated copy */
void g4_gguf_kv_value(const g4_gguf_t *g, int64_t i, g4_gguf_value_t *out);
int64_t g4_gguf_find_key(const g4_gguf_t *g, const char *key); /* -1 if absent */
/* The encoded bytes of value i (as in the file, after the type field);
 * returns its type. Used to copy metadata between files. */
g4_gguf_type_t g4_gguf_kv_raw(const g4_gguf_t *g, int64_t i, const void **data, uint64_t *len);
const char *g4_gguf_type_name(g4_gguf_type_t t);

/* Element i of an array value. */
void g4_gguf_arr_get(const g4_gguf_t *g, const g4_gguf_value_t *arr, uint64_t i, g4_gguf_value_t *out);

/* Typed getters. Integers of any width convert when the value fits; floats
 * accept F32/F64. Missing key or wrong type -> G4_ERR_FORMAT with a message
 * naming the file and key. */
int g4_gguf_get_u32(const g4_gguf_t *g, const char *key, uint32_t *out, g4_err_t *err);
int g4_gguf_get_u64(const g4_gguf_t *g, const char *key, uint64_t *out, g4_err_t *err);
int g4_gguf_get_i64(const g4_gguf_t *g, const char *key, int64_t *out, g4_err_t *err);
int g4_gguf_get_f32(const g4_gguf_t *g, const char *key, float *out, g4_err_t *err);
int g4_gguf_get_bool(const g4_gguf_t *g, const char *key, int *out, g4_err_t *err);
int g4_gguf_get_str(const g4_gguf_t *g, const char *key, const char **s, uint64_t *len, g4_err_t *err);
int g4_gguf_get_arr(const g4_gguf_t *g, const char *key, g4_gguf_value_t *out, g4_err_t *err);
/* Numeric value of a scalar integer/bool/float value (arrays/strings: -1). */
int g4_gguf_value_as_i64(const g4_gguf_value_t *v, int64_t *out);
int g4_gguf_value_as_f64(const g4_gguf_value_t *v, double *out);

/* ---- tensors ----------------------------------------------------------- */
int64_t g4_gguf_n_tensors(const g4_gguf_t *g);
/* View of tensor i (data points into the mapping). */
void g4_gguf_tensor(const g4_gguf_t *g, int64_t i, g4_tensor_t *out);
/* Offset of tensor i's data relative to the data section. */
uint64_t g4_gguf_tensor_offset(const g4_gguf_t *g, int64_t i);
int64_t g4_gguf_find_tensor(const g4_gguf_t *g, const char *name); /* -1 if absent */

#endif
