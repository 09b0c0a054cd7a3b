/* g4_act — see g4_act.h. */
#include "g4_act.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "g4_dtype.h"
#include "g4_matmul.h"

static g4_fp16_t s_gelu_table[1 << 16];
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

float g4_gelu_f32(float x)
{
    const float GELU_COEF_A = 0.044715f;
    const float SQRT_2_OVER_PI = 0.79788456080286535587989211986876f;
    return 0.5f * x * (1.0f + tanhf(SQRT_2_OVER_PI * x * (1.0f + GELU_COEF_A * x * x)));
}

static void s_init(void)
{
    for (uint32_t i = 0; i < (1u << 16); i++) s_gelu_table[i] = g4_fp32_to_fp16(g4_gelu_f32(g4_fp16_to_fp32((g4_fp16_t)i)));
}

static inline float s_gelu_tab(float x)
{
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return g4_fp16_to_fp32(s_gelu_table[g4_fp32_to_fp16(x)]);
}

void g4_gelu(const float *x, float *y, int64_t n)
{
    pthread_once(&s_once, s_init);
    for (int64_t i = 0; i < n; i++) y[i] = s_gelu_tab(x[i]);
}

void g4_geglu(const float *x, const float *g, float *y, int64_t n)
{
    pthread_once(&s_once, s_init);
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i];
        y[i] = xi <= -10.0f ? 0.0f : xi >= 10.0f ? xi * g[i] : s_gelu_tab(xi) * g[i];
    }
}

/* The twins compute the formula directly and round like the table does. */
static inline float s_gelu_direct(float x)
{
    if (x <= -10.0f) return 0.0f;
    if (x >= 10.0f) return x;
    return g4_round_fp16(g4_gelu_f32(g4_round_fp16(x)));
}

void g4_gelu_ref(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = s_gelu_direct(x[i]);
}

void g4_geglu_ref(const float *x, const float *g, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float xi = x[i];
        y[i] = xi <= -10.0f ? 0.0f : xi >= 10.0f ? xi * g[i] : s_gelu_direct(xi) * g[i];
    }
}

void g4_gelu_quick(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] * (1.0f / (1.0f + expf(-1.702f * x[i])));
}

void g4_silu(const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = x[i] / (1.0f + expf(-x[i]));
}

void g4_softmax_ref(float *x, int64_t n)
{
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++) max = fmaxf(max, x[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float e = x[i] == -INFINITY ? 0.0f : expf(x[i] - max);
        x[i] = e;
        sum += (double)e;
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

void g4_softmax(float *x, int64_t n) { g4_softmax_ref(x, n); }

void g4_softcap(float *x, int64_t n, float cap)
{
    const float inv = 1.0f / cap;
    /* the vocabulary's logits (262144 tanhf per token): worth the threads */
#pragma omp parallel for num_threads(g4_kernels_threads()) schedule(static) if (n >= 32768)
    for (int64_t i = 0; i < n; i++) x[i] = cap * tanhf(x[i] * inv);
}
