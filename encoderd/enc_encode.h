/* enc_encode — media bytes to soft-token embeddings: decode, preprocess,
 * run the tower. The one entry point encoderd and `g4 encode` share. */
#ifndef ENC_ENCODE_H
#define ENC_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "enc_model.h"
#include "g4_media.h" /* G4_MEDIA_IMAGE, G4_MEDIA_AUDIO */

typedef struct enc_opts {
    int image_min_tokens; /* 0: 70   */
    int image_max_tokens; /* 0: 1120 */
} enc_opts_t;

/* Returns [n_tokens][n_embd] f32 (malloc'd). */
int enc_encode(const enc_model_t *m, int kind, const uint8_t *data, size_t len, const enc_opts_t *o, float **emb,
               int *n_tokens, int *n_embd, g4_err_t *err);

#endif
