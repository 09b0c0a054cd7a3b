/* g4_dot — scalar reference dot products, activation quantizers and the
 * run-time dispatch table. SIMD versions live in g4_dot_x86.c. */
#include "g4_dot.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "g4_dot_internal.h"

#if defined(__x86_64__)
#include <cpuid.h>

/* CPUID leaf 7: ECX bit 11 = AVX512_VNNI; subleaf 1 EAX bit 5 = AVX512_BF16. */
static int s_cpuid7(int sub, int reg, int bit)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, (unsigned)sub, &a, &b, &c, &d)) return 0;
    unsigned r = reg == 0 ? a : reg == 1 ? b : reg == 2 ? c : d;
    return (int)((r >> bit) & 1);
}
static int s_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && ((c >> 29) & 1);
}
#endif

/* ====================================================================== */
/* activation quantizers                                                  */
/* ====================================================================== */

static inline int s_round_even(float x) { return (int)nearbyintf(x); }

/* The x86 AVX/AVX2 rule of quantize_row_q8_0: id = 127/amax, ties to even. */
void g4_quant_q8_0_x86_ref(const float *x, void *vy, int64_t n)
{
    g4_block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)s_round_even(x[j] * id);
    }
}

void g4_quant_q8_1_x86_ref(const float *x, void *vy, int64_t n)
{
    g4_block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.f, id = amax != 0.0f ? 127.f / amax : 0.0f;
        y[i].d = g4_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            y[i].qs[j] = (int8_t)s_round_even(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = g4_fp32_to_fp16(d * (float)sum);
    }
}

static void s_from_f32(const float *x, void *y, int64_t n) { memcpy(y, x, (size_t)n * 4); }
static void s_from_f16(const float *x, void *y, int64_t n) { g4_quant_row(G4_DTYPE_F16, x, y, n); }
static void s_from_bf16(const float *x, void *y, int64_t n) { g4_quant_row(G4_DTYPE_BF16, x, y, n); }
static void s_from_q8_K(const float *x, void *y, int64_t n) { g4_quant_row(G4_DTYPE_Q8_K, x, y, n); }

/* ====================================================================== */
/* scalar reference dot products                                          */
/* ====================================================================== */

static void s_dot_f32(int64_t n, float *s, const void *vw, const void *va)
{
    const float *w = vw, *a = va;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(w[i] * a[i]);
    *s = (float)sum;
}

static void s_dot_f16(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_fp16_t *w = vw, *a = va;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(g4_fp16_to_fp32(w[i]) * g4_fp16_to_fp32(a[i]));
    *s = (float)sum;
}

static void s_dot_bf16(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_bf16_t *w = vw, *a = va;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) sum += (double)(g4_bf16_to_fp32(w[i]) * g4_bf16_to_fp32(a[i]));
    *s = (float)sum;
}

static void s_dot_q8_0(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q8_0 *w = vw, *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 32; j++) sumi += w[i].qs[j] * a[i].qs[j];
        sumf += sumi * (g4_fp16_to_fp32(w[i].d) * g4_fp16_to_fp32(a[i].d));
    }
    *s = sumf;
}

static void s_dot_q4_0(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_0 *w = vw;
    const g4_block_q8_0 *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += ((w[i].qs[j] & 0x0F) - 8) * a[i].qs[j];
            sumi += ((w[i].qs[j] >> 4) - 8) * a[i].qs[j + 16];
        }
        sumf += sumi * (g4_fp16_to_fp32(w[i].d) * g4_fp16_to_fp32(a[i].d));
    }
    *s = sumf;
}

static void s_dot_q4_1(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_1 *w = vw;
    const g4_block_q8_1 *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            sumi += (w[i].qs[j] & 0x0F) * a[i].qs[j];
            sumi += (w[i].qs[j] >> 4) * a[i].qs[j + 16];
        }
        sumf += (g4_fp16_to_fp32(w[i].d) * g4_fp16_to_fp32(a[i].d)) * sumi +
                g4_fp16_to_fp32(w[i].m) * g4_fp16_to_fp32(a[i].s);
    }
    *s = sumf;
}

static void s_dot_q5_0(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q5_0 *w = vw;
    const g4_block_q8_0 *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int x0 = ((w[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10)) - 16;
            const int x1 = ((w[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10)) - 16;
            sumi += x0 * a[i].qs[j] + x1 * a[i].qs[j + 16];
        }
        sumf += sumi * (g4_fp16_to_fp32(w[i].d) * g4_fp16_to_fp32(a[i].d));
    }
    *s = sumf;
}

static void s_dot_q5_1(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q5_1 *w = vw;
    const g4_block_q8_1 *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 32; i++) {
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < 16; j++) {
            const int x0 = (w[i].qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
            const int x1 = (w[i].qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
            sumi += x0 * a[i].qs[j] + x1 * a[i].qs[j + 16];
        }
        sumf += (g4_fp16_to_fp32(w[i].d) * g4_fp16_to_fp32(a[i].d)) * sumi +
                g4_fp16_to_fp32(w[i].m) * g4_fp16_to_fp32(a[i].s);
    }
    *s = sumf;
}

/* Q4_K and Q5_K share the structure; hb = NULL for Q4_K. */
static float s_dot_kq_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, const g4_block_q8_K *a,
                            float d, float dmin)
{
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) g4_kq_scale_min(j, scales, &sc[j], &m[j]);
    int sumi = 0;
    for (int c = 0; c < 4; c++) {
        int lo = 0, hi = 0;
        for (int l = 0; l < 32; l++) {
            int q0 = qs[32 * c + l] & 0xF, q1 = qs[32 * c + l] >> 4;
            if (qh) {
                q0 += ((qh[l] >> (2 * c)) & 1) << 4;
                q1 += ((qh[l] >> (2 * c + 1)) & 1) << 4;
            }
            lo += q0 * a->qs[64 * c + l];
            hi += q1 * a->qs[64 * c + 32 + l];
        }
        sumi += sc[2 * c] * lo + sc[2 * c + 1] * hi;
    }
    int mins = 0;
    for (int g = 0; g < 16; g++) mins += a->bsums[g] * m[g / 2];
    return d * a->d * sumi - dmin * a->d * mins;
}

static void s_dot_q4_K(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q4_K *w = vw;
    const g4_block_q8_K *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; i++)
        sumf += s_dot_kq_block(w[i].scales, w[i].qs, NULL, &a[i], g4_fp16_to_fp32(w[i].d), g4_fp16_to_fp32(w[i].dmin));
    *s = sumf;
}

static void s_dot_q5_K(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q5_K *w = vw;
    const g4_block_q8_K *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; i++)
        sumf += s_dot_kq_block(w[i].scales, w[i].qs, w[i].qh, &a[i], g4_fp16_to_fp32(w[i].d), g4_fp16_to_fp32(w[i].dmin));
    *s = sumf;
}

static void s_dot_q6_K(int64_t n, float *s, const void *vw, const void *va)
{
    const g4_block_q6_K *w = vw;
    const g4_block_q8_K *a = va;
    float sumf = 0;
    for (int64_t i = 0; i < n / 256; i++) {
        int sumi = 0;
        for (int h = 0; h < 2; h++) {
            const uint8_t *ql = w[i].ql + 64 * h, *qh = w[i].qh + 32 * h;
            const int8_t *sc = w[i].scales + 8 * h, *q8 = a[i].qs + 128 * h;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                sumi += sc[is] * q1 * q8[l] + sc[is + 2] * q2 * q8[l + 32] + sc[is + 4] * q3 * q8[l + 64] +
                        sc[is + 6] * q4 * q8[l + 96];
            }
        }
        sumf += g4_fp16_to_fp32(w[i].d) * a[i].d * sumi;
    }
    *s = sumf;
}

/* ====================================================================== */
/* dispatch                                                               */
/* ====================================================================== */

static g4_type_ops_t s_ops[G4_DTYPE_COUNT];
static const char *s_isa = "scalar";
static pthread_once_t s_once = PTHREAD_ONCE_INIT;

static void s_f16_scale(uint16_t *acc, float s, int64_t n)
{
    for (int64_t d = 0; d < n; d++) acc[d] = g4_fp32_to_fp16(g4_fp16_to_fp32(acc[d]) * s);
}
static void s_f16_mad(uint16_t *acc, const uint16_t *v, float s, int64_t n)
{
    for (int64_t d = 0; d < n; d++) acc[d] = g4_fp32_to_fp16(fmaf(g4_fp16_to_fp32(v[d]), s, g4_fp16_to_fp32(acc[d])));
}
static void (*s_p_f16_dot_g)(int64_t, float *, const uint16_t *, const uint16_t *, int64_t, int) = NULL;
static void (*s_p_f16_scale)(uint16_t *, float, int64_t) = s_f16_scale;
static void (*s_p_f16_mad)(uint16_t *, const uint16_t *, float, int64_t) = s_f16_mad;

static void s_set(g4_dtype_t w, g4_dtype_t act, g4_from_float_fn ff, g4_vec_dot_fn dot)
{
    s_ops[w] = (g4_type_ops_t){.act_type = act, .from_float = ff, .from_float_ref = ff, .vec_dot = dot, .vec_dot_ref = dot};
}

static void s_init(void)
{
    s_set(G4_DTYPE_F32, G4_DTYPE_F32, s_from_f32, s_dot_f32);
    s_set(G4_DTYPE_F16, G4_DTYPE_F16, s_from_f16, s_dot_f16);
    s_set(G4_DTYPE_BF16, G4_DTYPE_BF16, s_from_bf16, s_dot_bf16);
    s_set(G4_DTYPE_Q8_0, G4_DTYPE_Q8_0, g4_quant_q8_0_x86_ref, s_dot_q8_0);
    s_set(G4_DTYPE_Q4_0, G4_DTYPE_Q8_0, g4_quant_q8_0_x86_ref, s_dot_q4_0);
    s_set(G4_DTYPE_Q5_0, G4_DTYPE_Q8_0, g4_quant_q8_0_x86_ref, s_dot_q5_0);
    s_set(G4_DTYPE_Q4_1, G4_DTYPE_Q8_1, g4_quant_q8_1_x86_ref, s_dot_q4_1);
    s_set(G4_DTYPE_Q5_1, G4_DTYPE_Q8_1, g4_quant_q8_1_x86_ref, s_dot_q5_1);
    s_set(G4_DTYPE_Q4_K, G4_DTYPE_Q8_K, s_from_q8_K, s_dot_q4_K);
    s_set(G4_DTYPE_Q5_K, G4_DTYPE_Q8_K, s_from_q8_K, s_dot_q5_K);
    s_set(G4_DTYPE_Q6_K, G4_DTYPE_Q8_K, s_from_q8_K, s_dot_q6_K);

#if defined(__x86_64__)
    const char *cap = getenv("G4_ISA");
    int allow512 = !cap || strcmp(cap, "avx512") == 0;
    int allow2 = !cap || strcmp(cap, "scalar") != 0;
    __builtin_cpu_init();
    g4_dot_simd_t t;
    memset(&t, 0, sizeof t);
    int have2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && s_f16c();
    int have512 = have2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl");
    if (allow2 && have2) {
        g4_dot_fill_avx2(&t);
        s_isa = "avx2";
    }
    if (allow512 && have512) {
        g4_dot_fill_avx512(&t, s_cpuid7(0, 2, 11), s_cpuid7(1, 0, 5));
        s_isa = "avx512";
    }
    if (t.f16_scale) s_p_f16_scale = t.f16_scale;
    if (t.f16_mad) s_p_f16_mad = t.f16_mad;
    if (t.f16_dot_g) s_p_f16_dot_g = t.f16_dot_g; /* filled with the F16 dot it reproduces */
    for (int w = 0; w < G4_DTYPE_COUNT; w++) {
        if (!s_ops[w].vec_dot) continue;
        if (t.dot[w]) s_ops[w].vec_dot = t.dot[w];
        s_ops[w].vec_dot4 = t.dot4[w];
        s_ops[w].vec_dot4x2 = t.dot4x2[w];
        s_ops[w].vec_dot4x4 = t.dot4x4[w];
        s_ops[w].vec_dot8x4 = t.dot8x4[w];
        s_ops[w].vec_dot1x4 = t.dot1x4[w];
        if (t.from_float[s_ops[w].act_type]) s_ops[w].from_float = t.from_float[s_ops[w].act_type];
    }
#endif
}

void g4_kernels_init(void) { pthread_once(&s_once, s_init); }

const char *g4_kernels_isa(void)
{
    g4_kernels_init();
    return s_isa;
}

const g4_type_ops_t *g4_type_ops(uint32_t t)
{
    g4_kernels_init();
    if (t >= G4_DTYPE_COUNT || !s_ops[t].vec_dot) return NULL;
    return &s_ops[t];
}

void g4_f16_scale(uint16_t *acc, float s, int64_t n)
{
    g4_kernels_init();
    s_p_f16_scale(acc, s, n);
}
void g4_f16_mad(uint16_t *acc, const uint16_t *v, float s, int64_t n)
{
    g4_kernels_init();
    s_p_f16_mad(acc, v, s, n);
}

void g4_dot_f16_g(int64_t n, float *s, const uint16_t *w, const uint16_t *a, int64_t as, int G)
{
    g4_kernels_init();
    if (s_p_f16_dot_g) {
        s_p_f16_dot_g(n, s, w, a, as, G);
        return;
    }
    const g4_vec_dot_fn dot = s_ops[G4_DTYPE_F16].vec_dot;
    for (int g = 0; g < G; g++) dot(n, &s[g], w, a + g * as);
}
