/* enc_encode — see enc_encode.h. */
#include "enc_encode.h"

#include <stdlib.h>
#include <string.h>

#include "enc_media.h"

static void s_limits(const enc_opts_t *o, int *lo, int *hi)
{
    *lo = o && o->image_min_tokens > 0 ? o->image_min_tokens : 70;
    *hi = o && o->image_max_tokens > 0 ? o->image_max_tokens : 1120;
    if (*hi < *lo) *hi = *lo;
}

int enc_encode(const enc_model_t *m, int kind, const uint8_t *data, size_t len, const enc_opts_t *o, float **emb,
               int *n_tokens, int *n_embd, g4_err_t *err)
{
    const enc_info_t *in = enc_model_info(m);
    int rc;
    *emb = NULL;
    *n_tokens = 0;
    *n_embd = 0;
    if (kind == G4_MEDIA_IMAGE) {
        if (!in->has_vision) return g4_err_set(err, G4_ERR_RANGE, "the projector has no vision tower");
        uint8_t *rgb, *pre;
        int w, h, tw, th, lo, hi;
        if ((rc = enc_image_decode(data, len, &rgb, &w, &h, err))) return rc;
        s_limits(o, &lo, &hi);
        const int align = in->v_patch * in->v_merge;
        enc_image_target(w, h, align, lo, hi, &tw, &th);
        rc = enc_image_letterbox(rgb, w, h, tw, th, &pre, err);
        enc_image_free(rgb);
        if (rc) return rc;
        rc = enc_vision_encode(m, pre, tw, th, emb, n_tokens, err);
        free(pre);
        if (!rc) *n_embd = in->v_proj_dim;
        return rc;
    }
    if (kind != G4_MEDIA_AUDIO) return g4_err_set(err, G4_ERR_RANGE, "unknown media kind %d", kind);
    if (!in->has_audio) return g4_err_set(err, G4_ERR_RANGE, "the projector has no audio tower");
    float *pcm;
    size_t n;
    if ((rc = enc_audio_decode(data, len, &pcm, &n, err))) return rc;
    float *all = NULL;
    int total = 0;
    const int D = in->a_proj_dim;
    /* every 30 s chunk is encoded on its own; their tokens follow each other */
    for (size_t off = 0; off < n; off += ENC_AUDIO_CHUNK) {
        const size_t cl = n - off < ENC_AUDIO_CHUNK ? n - off : ENC_AUDIO_CHUNK;
        float *mel, *e;
        int nf, nt;
        if ((rc = enc_audio_mel(pcm + off, cl, in->a_n_mel, &mel, &nf, err))) break;
        rc = enc_audio_encode(m, mel, nf, &e, &nt, err);
        free(mel);
        if (rc) break;
        float *na = realloc(all, (size_t)(total + nt) * D * 4);
        if (!na) {
            free(e);
            rc = g4_err_set(err, G4_ERR_NOMEM, "out of memory");
            break;
        }
        all = na;
        memcpy(all + (size_t)total * D, e, (size_t)nt * D * 4);
        total += nt;
        free(e);
    }
    free(pcm);
    if (rc) {
        free(all);
        return rc;
    }
    *emb = all;
    *n_tokens = total;
    *n_embd = D;
    return G4_OK;
}
