/* g4_media — see g4_media.h. */
#include "g4_media.h"

int g4_media_check(const int32_t *ids, int n, const int32_t mid[6], const int *kind, int n_media, g4_err_t *err)
{
    int n_img = 0, n_aud = 0, p_img = 0, p_aud = 0;
    for (int i = 0; i < n_media; i++) n_img += kind[i] == G4_MEDIA_IMAGE, n_aud += kind[i] == G4_MEDIA_AUDIO;
    for (int p = 0; p < n; p++) {
        p_img += mid[0] >= 0 && ids[p] == mid[0];
        p_aud += mid[3] >= 0 && ids[p] == mid[3];
    }
    if ((n_img && (mid[1] < 0 || mid[2] < 0)) || (n_aud && (mid[4] < 0 || mid[5] < 0)))
        return g4_err_set(err, G4_ERR_RANGE, "the vocabulary has no <|image> / <|audio> brackets for media");
    if (p_img != n_img || p_aud != n_aud || n_img + n_aud != n_media)
        return g4_err_set(err, G4_ERR_RANGE,
                          "the prompt has %d <|image|> and %d <|audio|> placeholders for %d image(s) and %d audio clip(s)",
                          p_img, p_aud, n_img, n_aud);
    return G4_OK;
}

int g4_media_splice(const int32_t *ids, int n, const int32_t mid[6], const int *kind, const int *n_tok, int n_media,
                    int bidir, int32_t *out, int8_t *flags, int *order, g4_err_t *err)
{
    int rc = g4_media_check(ids, n, mid, kind, n_media, err);
    if (rc) return rc;
    int k = 0, j = 0, next[3] = {0, 0, 0};
    for (int p = 0; p < n; p++) {
        const int kd = mid[0] >= 0 && ids[p] == mid[0] ? G4_MEDIA_IMAGE : mid[3] >= 0 && ids[p] == mid[3] ? G4_MEDIA_AUDIO : 0;
        if (!kd) {
            flags[k] = 0;
            out[k++] = ids[p];
            continue;
        }
        int mi = next[kd];
        while (kind[mi] != kd) mi++; /* exists: the counts matched */
        next[kd] = mi + 1;
        order[j++] = mi;
        const int8_t f = G4_ROW_EMBD | (kd == G4_MEDIA_IMAGE && bidir ? G4_ROW_BIDIR : 0);
        flags[k] = 0;
        out[k++] = kd == G4_MEDIA_IMAGE ? mid[1] : mid[4];
        for (int t = 0; t < n_tok[mi]; t++) flags[k] = f, out[k++] = -1;
        flags[k] = 0;
        out[k++] = kd == G4_MEDIA_IMAGE ? mid[2] : mid[5];
    }
    return k;
}
