/* enc_media — media bytes to what the towers read, as llama.cpp's mtmd
 * prepares them.
 *
 * Images: decoded with stb_image to 8-bit RGB (alpha dropped), resized to a
 * multiple of patch*merge inside the soft-token budget (70..1120 by default)
 * keeping the aspect ratio, with Pillow's bicubic resampling and black
 * letterbox bars.
 * Audio: WAV (PCM 8/16/24/32-bit, float 32/64, any rate and channel count)
 * and MP3 (libmpg123), mixed to mono, resampled to 16 kHz the way miniaudio's
 * linear resampler does (4th-order low-pass), cut into 30 s chunks, and
 * turned into 128-bin log-mel features. */
#ifndef ENC_MEDIA_H
#define ENC_MEDIA_H

#include <stddef.h>
#include <stdint.h>

#include "g4_err.h"

/* Limits on what is decoded at all (defaults; enc_media_set_limits changes them). */
#define ENC_MAX_IMAGE_PIXELS (32LL * 1024 * 1024)
#define ENC_MAX_AUDIO_SECONDS 300
#define ENC_MIN_AUDIO_RATE 8000   /* Hz: below is not speech a model was trained on (a 1 Hz header is an attack) */
#define ENC_MAX_AUDIO_RATE 192000

/* Process-wide limits (0 keeps one): image pixels, audio seconds. */
void enc_media_set_limits(long long max_pixels, int max_audio_s);

/* ---- images ---------------------------------------------------------------- */
int enc_image_decode(const uint8_t *data, size_t len, uint8_t **rgb, int *w, int *h, g4_err_t *err);
/* Releases what enc_image_decode returned. */
void enc_image_free(uint8_t *rgb);
/* Target size for an image of w×h: multiples of align, within
 * [min_tokens, max_tokens] soft tokens of align² pixels each. */
void enc_image_target(int w, int h, int align, int min_tokens, int max_tokens, int *tw, int *th);
/* Letterboxed bicubic resize to tw×th (a copy when the size is unchanged). */
int enc_image_letterbox(const uint8_t *rgb, int w, int h, int tw, int th, uint8_t **out, g4_err_t *err);
/* Pillow-style bicubic resize to exactly tw×th. */
int enc_image_resize(const uint8_t *rgb, int w, int h, int tw, int th, uint8_t **out, g4_err_t *err);

/* ---- audio ----------------------------------------------------------------- */
/* Decodes WAV or MP3 to mono float PCM at 16 kHz (malloc'd). */
int enc_audio_decode(const uint8_t *data, size_t len, float **pcm, size_t *n, g4_err_t *err);
/* miniaudio-compatible linear resampling of mono PCM. */
int enc_audio_resample(const float *in, size_t n_in, uint32_t rate_in, uint32_t rate_out, float **out, size_t *n_out);
/* Log-mel features of one chunk (≤ 480000 samples): [n_frames][n_mel], malloc'd. */
int enc_audio_mel(const float *pcm, size_t n, int n_mel, float **mel, int *n_frames, g4_err_t *err);

#define ENC_AUDIO_RATE 16000
#define ENC_AUDIO_CHUNK (30 * ENC_AUDIO_RATE)

#endif
