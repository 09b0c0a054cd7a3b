/* g4_norm — see g4_norm.h. */
#include "g4_norm.h"

#include <immintrin.h>
#include <math.h>

void g4_rmsnorm_ref(const float *x, const float *w, float *y, int64_t n, float eps)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    for (int64_t i = 0; i < n; i++) {
        const float v = x[i] * scale;
        y[i] = w ? v * w[i] : v;
    }
}

__attribute__((target("avx2,fma"))) static double s_sumsq_avx2(const float *x, int64_t n, int64_t *done)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 sq = _mm256_mul_ps(v, v); /* squares in f32, as the reference */
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(sq)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    *done = i;
    return (t[0] + t[1]) + (t[2] + t[3]);
}

void g4_rmsnorm(const float *x, const float *w, float *y, int64_t n, float eps)
{
    int64_t i = 0;
    double sum = 0.0;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2")) sum = s_sumsq_avx2(x, n, &i);
#endif
    for (; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (w)
        for (i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
    else
        for (i = 0; i < n; i++) y[i] = x[i] * scale;
}
