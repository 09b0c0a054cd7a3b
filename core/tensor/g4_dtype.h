/* g4_dtype — tensor element types, their block formats and conversions.
 *
 * Type ids are ggml's (they are what GGUF files store). Every id a GGUF may
 * carry has traits (block size, bytes per block) so the reader can validate
 * any file; `computable` says whether g4 has kernels for it (dequantize, dot).
 * Block layouts follow docs/gguf-quant-formats (llama.cpp ggml-common.h).
 * Not here: matrix kernels (core/kernels), tensor views (g4_tensor.h). */
#ifndef G4_DTYPE_H
#define G4_DTYPE_H

#include <stdint.h>
#include <string.h>

typedef enum g4_dtype {
    G4_DTYPE_F32 = 0,
    G4_DTYPE_F16 = 1,
    G4_DTYPE_Q4_0 = 2,
    G4_DTYPE_Q4_1 = 3,
    G4_DTYPE_Q5_0 = 6,
    G4_DTYPE_Q5_1 = 7,
    G4_DTYPE_Q8_0 = 8,
    G4_DTYPE_Q8_1 = 9,
    G4_DTYPE_Q2_K = 10,
    G4_DTYPE_Q3_K = 11,
    G4_DTYPE_Q4_K = 12,
    G4_DTYPE_Q5_K = 13,
    G4_DTYPE_Q6_K = 14,
    G4_DTYPE_Q8_K = 15,
    G4_DTYPE_IQ2_XXS = 16,
    G4_DTYPE_IQ2_XS = 17,
    G4_DTYPE_IQ3_XXS = 18,
    G4_DTYPE_IQ1_S = 19,
    G4_DTYPE_IQ4_NL = 20,
    G4_DTYPE_IQ3_S = 21,
    G4_DTYPE_IQ2_S = 22,
    G4_DTYPE_IQ4_XS = 23,
    G4_DTYPE_I8 = 24,
    G4_DTYPE_I16 = 25,
    G4_DTYPE_I32 = 26,
    G4_DTYPE_I64 = 27,
    G4_DTYPE_F64 = 28,
    G4_DTYPE_IQ1_M = 29,
    G4_DTYPE_BF16 = 30,
    G4_DTYPE_TQ1_0 = 34,
    G4_DTYPE_TQ2_0 = 35,
    G4_DTYPE_MXFP4 = 39,
    G4_DTYPE_NVFP4 = 40,
    G4_DTYPE_Q1_0 = 41,
    G4_DTYPE_Q2_0 = 42,
    G4_DTYPE_COUNT = 43,
} g4_dtype_t;

#define G4_QK_K 256

typedef struct g4_dtype_traits {
    const char *name;    /* "Q4_K"; NULL for ids that are not valid types */
    uint32_t block_size; /* elements per block (1 for scalar types)        */
    uint32_t type_size;  /* bytes per block                                */
    int computable;      /* g4 can dequantize it and use it in matmuls     */
} g4_dtype_traits_t;

/* Traits of a type id, or NULL if `t` is not a known ggml type. */
const g4_dtype_traits_t *g4_dtype_traits(uint32_t t);
/* Name, or "?" for an unknown id. */
const char *g4_dtype_name(uint32_t t);
/* Parses a name ("q8_0", "Q4_K", "bf16"); returns -1 if unknown. */
int g4_dtype_from_name(const char *name);

/* Bytes for a row of n elements; 0 if n is not a whole number of blocks or
 * the type is unknown. */
uint64_t g4_dtype_row_bytes(uint32_t t, uint64_t n);

/* ---- scalar conversions ------------------------------------------------ */

typedef uint16_t g4_fp16_t;
typedef uint16_t g4_bf16_t;

static inline uint32_t g4_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float g4_f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* IEEE binary16 -> binary32, exact. */
static inline float g4_fp16_to_fp32(g4_fp16_t h)
{
    const uint32_t w = (uint32_t)h << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    const float normalized = g4_f32_from_bits((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
    const float denormalized = g4_f32_from_bits((two_w >> 17) | (126u << 23)) - 0.5f;
    const uint32_t r = sign | (two_w < (1u << 27) ? g4_f32_bits(denormalized) : g4_f32_bits(normalized));
    return g4_f32_from_bits(r);
}

/* binary32 -> binary16, round to nearest even, overflow to inf, NaN kept. */
static inline g4_fp16_t g4_fp32_to_fp16(float f)
{
    float base = (__builtin_fabsf(f) * 0x1.0p+112f) * 0x1.0p-110f;
    const uint32_t w = g4_f32_bits(f);
    const uint32_t shl1_w = w + w;
    const uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = g4_f32_from_bits((bias >> 1) + 0x07800000u) + base;
    const uint32_t bits = g4_f32_bits(base);
    const uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    const uint32_t mantissa_bits = bits & 0x00000FFFu;
    const uint32_t nonsign = exp_bits + mantissa_bits;
    return (g4_fp16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

static inline float g4_bf16_to_fp32(g4_bf16_t h) { return g4_f32_from_bits((uint32_t)h << 16); }

/* binary32 -> bfloat16, round to nearest even; NaN stays a quiet NaN. */
static inline g4_bf16_t g4_fp32_to_bf16(float f)
{
    uint32_t u = g4_f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (g4_bf16_t)((u >> 16) | 64);
    return (g4_bf16_t)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* Rounds a float through f16 and back. */
static inline float g4_round_fp16(float f) { return g4_fp16_to_fp32(g4_fp32_to_fp16(f)); }

/* ---- block formats (little-endian, packed as in GGUF) ------------------ */

typedef struct { g4_fp16_t d; int8_t qs[32]; } g4_block_q8_0;                        /* 34  */
typedef struct { g4_fp16_t d; g4_fp16_t s; int8_t qs[32]; } g4_block_q8_1;           /* 36  */
typedef struct { g4_fp16_t d; uint8_t qs[16]; } g4_block_q4_0;                       /* 18  */
typedef struct { g4_fp16_t d; g4_fp16_t m; uint8_t qs[16]; } g4_block_q4_1;          /* 20  */
typedef struct { g4_fp16_t d; uint8_t qh[4]; uint8_t qs[16]; } g4_block_q5_0;        /* 22  */
typedef struct { g4_fp16_t d; g4_fp16_t m; uint8_t qh[4]; uint8_t qs[16]; } g4_block_q5_1; /* 24 */
typedef struct { g4_fp16_t d; g4_fp16_t dmin; uint8_t scales[12]; uint8_t qs[128]; } g4_block_q4_K; /* 144 */
typedef struct {
    g4_fp16_t d;
    g4_fp16_t dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
} g4_block_q5_K; /* 176 */
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; g4_fp16_t d; } g4_block_q6_K; /* 210 */
typedef struct { float d; int8_t qs[256]; int16_t bsums[16]; } g4_block_q8_K;        /* 292 */

/* ---- rows: dequantize and quantize (plain scalar reference code) ------- */

/* Dequantizes n elements (a whole number of blocks) of type t from src into
 * dst. Returns 0, or -1 if t is not computable or n is not whole blocks. */
int g4_dequant_row(uint32_t t, const void *src, float *dst, int64_t n);

/* Quantizes n floats into type t (F32, F16, BF16, Q8_0, Q8_1, Q4_0, Q4_1,
 * Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, Q8_K): the same bytes as llama.cpp's
 * quantize_row_*_ref (Q8_0/Q8_1 with the C reference rounding: 1/d, ties away
 * from zero). Defined in g4_quant.c, which also has the mixes.
 * Returns 0, or -1 if unsupported / not whole blocks. */
int g4_quant_row(uint32_t t, const float *src, void *dst, int64_t n);

/* Unpacks the 6-bit (scale, min) of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void g4_kq_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

#endif
