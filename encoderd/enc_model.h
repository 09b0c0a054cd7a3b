/* enc_model — the Gemma 4 multimodal towers of an mmproj GGUF, on the CPU.
 *
 * Vision (`gemma4v`): a ViT over 16×16 patches with a learned 2-D position
 * table and 2-D RoPE, 3×3 average pooling and a projection into the text
 * embedding space. Audio (`gemma4a`, E2B/E4B): two stride-2 convolutions
 * over the log-mel features, a conformer stack with chunked local attention
 * and relative positions, and a projection. One file may hold both.
 *
 * The numbers follow llama.cpp's CPU backend (tools/mtmd) where it rounds:
 * convolutions go through an F16 im2col (inputs and kernels rounded to f16),
 * quick-GELU through an f16 table, F16 weights round their activations. */
#ifndef ENC_MODEL_H
#define ENC_MODEL_H

#include <stdint.h>

#include "g4_err.h"
#include "g4_gguf.h"

typedef struct enc_model enc_model_t;

typedef struct enc_info {
    int has_vision, has_audio;
    int v_n_embd, v_n_layer, v_n_head, v_patch, v_merge, v_proj_dim;
    int a_n_embd, a_n_layer, a_n_head, a_n_mel, a_proj_dim;
} enc_info_t;

/* Loads an mmproj GGUF (general.architecture "clip"); refuses projector types
 * other than gemma4v / gemma4a by name, and any missing tensor. */
enc_model_t *enc_model_load(const char *path, g4_err_t *err);
void enc_model_destroy(enc_model_t **m);
/* What enc_model_load would check of the file's header, without loading the
 * towers: info gets has_vision / has_audio and the projections' widths
 * (v_proj_dim, a_proj_dim; 0 where the tensor is absent). 0, or the error. */
int enc_model_probe(const char *path, enc_info_t *info, g4_err_t *err);
const enc_info_t *enc_model_info(const enc_model_t *m);
uint64_t enc_model_digest(const enc_model_t *m);

/* Image: RGB8 pixels [h][w][3] already resized to a multiple of patch*merge
 * on both sides (enc_media.h). Returns a malloc'd [n_tokens][proj_dim]. */
int enc_vision_encode(const enc_model_t *m, const uint8_t *rgb, int w, int h, float **out, int *n_tokens,
                      g4_err_t *err);

/* Audio: log-mel features [n_frames][n_mel] of one chunk (≤ 30 s).
 * Returns a malloc'd [n_tokens][proj_dim]. */
int enc_audio_encode(const enc_model_t *m, const float *mel, int n_frames, float **out, int *n_tokens,
                     g4_err_t *err);

#endif
