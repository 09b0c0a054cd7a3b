/* g4_quant — weight quantization as llama.cpp's llama-quantize does it.
 *
 * Two things live here:
 *   - the row quantizers behind g4_quant_row (declared in g4_dtype.h for its
 *     older callers): for every type llama-quantize writes without an
 *     importance matrix they produce the same bytes as ggml-quants.c's
 *     reference functions (quantize_row_q8_0_ref ... quantize_row_q6_K_ref,
 *     make_qkx2_quants, make_qx_quants); tests/unit/test_quant.c checks them
 *     against blocks made by llama.cpp's own code;
 *   - the per-tensor type choice of the quantization mixes (Q4_K_M, ...):
 *     llama.cpp's llama_tensor_get_type (src/llama-quant.cpp) for the tensors
 *     of the gemma4 architecture, used by `g4 quantize` and by the model
 *     generator (tests/tools/g4_make_model.c).
 * Not here: reading / writing files (cli/cli_quantize.c), dequantization and
 * block layouts (g4_dtype). Plain scalar code; callers thread over rows. */
#ifndef G4_QUANT_H
#define G4_QUANT_H

#include <stdint.h>

#include "g4_dtype.h"

/* Quantizes n_rows rows of n_per_row floats [n_rows, n_per_row] f32 into
 * type t (rows of g4_dtype_row_bytes(t, n_per_row) bytes). Returns 0, or -1
 * when t has no quantizer or n_per_row is not whole blocks. */
int g4_quant_rows(uint32_t t, const float *src, void *dst, int64_t n_rows, int64_t n_per_row);

/* ---- quantization mixes ------------------------------------------------- */

typedef enum g4_quant_mix {
    G4_QUANT_MIX_F32,
    G4_QUANT_MIX_F16,
    G4_QUANT_MIX_BF16,
    G4_QUANT_MIX_Q8_0,
    G4_QUANT_MIX_Q4_0,
    G4_QUANT_MIX_Q4_1,
    G4_QUANT_MIX_Q5_0,
    G4_QUANT_MIX_Q5_1,
    G4_QUANT_MIX_Q4_K,   /* every quantizable tensor Q4_K ("llama-quantize --pure Q4_K_M") */
    G4_QUANT_MIX_Q5_K,   /* every quantizable tensor Q5_K ("--pure Q5_K_M")                */
    G4_QUANT_MIX_Q6_K,
    G4_QUANT_MIX_Q4_K_S,
    G4_QUANT_MIX_Q4_K_M,
    G4_QUANT_MIX_Q5_K_S,
    G4_QUANT_MIX_Q5_K_M,
    G4_QUANT_MIX_COUNT,
} g4_quant_mix_t;

/* Parses "Q4_K_M", "q8_0", "f16", ...; -1 if unknown. */
int g4_quant_mix_from_name(const char *name);
const char *g4_quant_mix_name(g4_quant_mix_t mix);
/* llama_ftype value written as general.file_type for the mix. */
uint32_t g4_quant_mix_ftype(g4_quant_mix_t mix);
/* The mix's base tensor type (Q4_K for Q4_K_M, F16 for F16, ...). */
uint32_t g4_quant_mix_base_type(g4_quant_mix_t mix);

/* State of one file's choice: llama.cpp counts attn_v tensors over the file
 * and numbers them in tensor order (use_more_bits), and gives token
 * embeddings the output tensor's type when the file has no output.weight. */
typedef struct g4_quant_mix_state {
    g4_quant_mix_t mix;
    int n_layer;    /* block_count                              */
    int n_attn_v;   /* tensors named *attn_v.weight in the file */
    int i_attn_v;   /* attn_v tensors chosen so far             */
    int tied;       /* no output.weight                         */
    int n_fallback; /* tensors whose row length forced another type */
} g4_quant_mix_state_t;

/* Starts a file: `names` are all its tensor names (any order). */
void g4_quant_mix_begin(g4_quant_mix_state_t *st, g4_quant_mix_t mix, int n_layer, const char *const *names,
                        int64_t n_names);

/* The type tensor `name` ([ne0, ...], n_dims dimensions, stored as src_type)
 * gets under the mix. Call it once per tensor in llama.cpp's order
 * (g4_quant_tensor_cmp). Tensors llama.cpp never quantizes (1-D, norms,
 * the router ffn_gate_inp, per_layer_model_proj, names not ending in
 * "weight") keep src_type; a row that is not whole blocks of the choice
 * falls back (Q4_K->Q5_0, Q5_K->Q5_1, Q6_K->Q8_0, then F16). */
uint32_t g4_quant_mix_type(g4_quant_mix_state_t *st, const char *name, int n_dims, int64_t ne0, uint32_t src_type);

/* llama.cpp's tensor order in a quantized file (llama_model_loader's
 * weight_name_comparer): tensors outside blk.N first, then by layer, then by
 * name (strcmp). A qsort-style comparison of two names. */
int g4_quant_tensor_cmp(const char *a, const char *b);

#endif
