/* libFuzzer target: the media decoders encoderd runs on untrusted bytes —
 * stb_image + the resize rule + letterbox, and WAV / MP3 decoding with
 * resampling and log-mel features. Any crash, leak or UB is a finding. */
#include <stdint.h>
#include <stdlib.h>

#include "enc_media.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    g4_err_t err;
    uint8_t *rgb = NULL, *pre = NULL;
    int w, h, tw, th;
    if (!enc_image_decode(data, size, &rgb, &w, &h, &err)) {
        enc_image_target(w, h, 48, 70, 1120, &tw, &th);
        if ((long long)tw * th <= 4LL * 1024 * 1024 && !enc_image_letterbox(rgb, w, h, tw, th, &pre, &err)) free(pre);
        enc_image_free(rgb);
    }
    float *pcm = NULL;
    size_t n = 0;
    if (!enc_audio_decode(data, size, &pcm, &n, &err)) {
        float *mel = NULL;
        int nf = 0;
        const size_t cl = n < ENC_AUDIO_CHUNK ? n : ENC_AUDIO_CHUNK;
        if (cl && cl <= 16000 * 5 && !enc_audio_mel(pcm, cl, 128, &mel, &nf, &err)) free(mel);
        free(pcm);
    }
    return 0;
}
