/* g4_rope — see g4_rope.h (mirrors ggml_rope_cache_init + rotate_pairs). */
#include "g4_rope.h"

#include <math.h>

void g4_rope_cache(float *cs, int64_t pos, int hd, int n_rot, float base, const float *ff)
{
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    float theta = (float)pos;
    for (int i0 = 0; i0 < n_rot; i0 += 2) {
        const float f = ff ? ff[i0 / 2] : 1.0f;
        const float t = 1.0f * (theta / f); /* freq_scale = 1, ext_factor = 0 */
        cs[i0] = cosf(t);
        cs[i0 + 1] = sinf(t);
        theta *= theta_scale;
    }
}

void g4_rope_apply(float *x, int n_heads, int hd, int n_rot, const float *cs)
{
    const int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * hd;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
        }
    }
}

void g4_rope_ref(float *x, int n_heads, int hd, int n_rot, int64_t pos, float base, const float *ff)
{
    const int half = n_rot / 2;
    const float theta_scale = powf(base, -2.0f / (float)n_rot);
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (int64_t)h * hd;
        float theta = (float)pos;
        for (int i = 0; i < half; i++) {
            const float t = theta / (ff ? ff[i] : 1.0f);
            const float c = cosf(t), s = sinf(t);
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
            theta *= theta_scale;
        }
    }
}
