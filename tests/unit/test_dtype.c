/* Tests of core/tensor/g4_dtype: conversions and row (de)quantization. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_dtype.h"
#include "g4_gguf.h"
#include "g4_test.h"

__attribute__((target("f16c"))) static uint16_t s_hw_fp16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

int test_dtype(void)
{
    /* every fp16 value converts exactly and back */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = g4_fp16_to_fp32((g4_fp16_t)h);
        if (isnan(f)) continue;
        if (g4_fp32_to_fp16(f) != h) bad++;
    }
    CHECKF(bad == 0, "%d fp16 values do not round-trip", bad);
    /* fp32 -> fp16 rounding equals the F16C instruction on random and edge values */
    if (__builtin_cpu_supports("f16c")) {
        uint64_t s = 1;
        bad = 0;
        for (int i = 0; i < 2000000; i++) {
            uint32_t bits = (uint32_t)g4_test_rand(&s);
            float f = g4_f32_from_bits(bits);
            if (isnan(f)) continue;
            if (g4_fp32_to_fp16(f) != s_hw_fp16(f)) bad++;
        }
        const float edge[] = {65504.f, 65520.f, 65519.99f, 6.1035156e-05f, 5.9604645e-08f, 2.9802322e-08f, -0.0f, 1e-40f};
        for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) bad += g4_fp32_to_fp16(edge[i]) != s_hw_fp16(edge[i]);
        CHECKF(bad == 0, "%d fp32->fp16 conversions differ from F16C", bad);
    }
    /* bf16 round to nearest even, NaN stays NaN */
    CHECK(g4_fp32_to_bf16(1.0f) == 0x3f80);
    CHECK(g4_fp32_to_bf16(g4_f32_from_bits(0x3f808000u)) == 0x3f80); /* tie -> even */
    CHECK(g4_fp32_to_bf16(g4_f32_from_bits(0x3f818000u)) == 0x3f82); /* tie -> even (up) */
    CHECK(isnan(g4_bf16_to_fp32(g4_fp32_to_bf16(NAN))));
    /* traits */
    CHECK(g4_dtype_row_bytes(G4_DTYPE_Q4_K, 512) == 288);
    CHECK(g4_dtype_row_bytes(G4_DTYPE_Q4_0, 33) == 0);
    CHECK(g4_dtype_traits(4) == NULL && g4_dtype_traits(99) == NULL);
    CHECK(g4_dtype_from_name("q6_k") == G4_DTYPE_Q6_K && g4_dtype_from_name("bf16") == G4_DTYPE_BF16);
    return 0;
}

/* Our quantizers against gguf-py (simple formats: bit-exact), dequantization
 * of llama.cpp-made K-quant blocks against gguf-py (1e-6 relative), and the
 * error of our own K-quant quantizers. */
int test_quant(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/quant_ref.gguf", g4_test_datadir());
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    REQUIRE(g != NULL);
    g4_tensor_t in;
    REQUIRE(g4_gguf_find_tensor(g, "input") >= 0);
    g4_gguf_tensor(g, g4_gguf_find_tensor(g, "input"), &in);
    const int64_t n = g4_tensor_nelements(&in);
    const float *x = in.data;
    static const char *simple[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"};
    uint8_t *buf = g4_malloc((size_t)n * 4);
    float *deq = g4_malloc((size_t)n * 4), *deq2 = g4_malloc((size_t)n * 4);
    REQUIRE(buf && deq && deq2);
    for (int k = 0; k < 5; k++) {
        char name[64];
        snprintf(name, sizeof name, "input.%s", simple[k]);
        int64_t idx = g4_gguf_find_tensor(g, name);
        REQUIRE(idx >= 0);
        g4_tensor_t q;
        g4_gguf_tensor(g, idx, &q);
        REQUIRE(g4_quant_row(q.dtype, x, buf, n) == 0);
        CHECKF(memcmp(buf, q.data, q.n_bytes) == 0, "%s quantization differs from gguf-py", simple[k]);
        /* dequantization of the reference bytes equals dequantization of ours */
        g4_dequant_row(q.dtype, q.data, deq, n);
        g4_dequant_row(q.dtype, buf, deq2, n);
        CHECK(memcmp(deq, deq2, (size_t)n * 4) == 0);
    }
    static const char *kq[] = {"Q4_K", "Q5_K", "Q6_K"};
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "kq.%s", kq[k]);
        g4_tensor_t q, ref;
        int64_t i1 = g4_gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "kq.%s.deq", kq[k]);
        int64_t i2 = g4_gguf_find_tensor(g, name);
        REQUIRE(i1 >= 0 && i2 >= 0);
        g4_gguf_tensor(g, i1, &q);
        g4_gguf_tensor(g, i2, &ref);
        const int64_t m = g4_tensor_nelements(&q);
        g4_dequant_row(q.dtype, q.data, deq, m);
        const float *r = ref.data;
        double worst = 0;
        for (int64_t i = 0; i < m; i++) {
            double e = fabs((double)deq[i] - r[i]) / fmax(fabs(r[i]), 1e-30);
            if (deq[i] != r[i] && e > worst) worst = e;
        }
        CHECKF(worst <= 1e-6, "%s dequantization off by %g relative", kq[k], worst);
    }
    /* our K-quant quantizers: relative RMS error within what the format allows */
    static const struct { g4_dtype_t t; double max_rel_rms; } kqe[] = {
        {G4_DTYPE_Q4_K, 0.12}, {G4_DTYPE_Q5_K, 0.06}, {G4_DTYPE_Q6_K, 0.03}, {G4_DTYPE_Q8_0, 0.01}, {G4_DTYPE_Q4_0, 0.15}};
    for (size_t k = 0; k < sizeof kqe / sizeof kqe[0]; k++) {
        REQUIRE(g4_quant_row(kqe[k].t, x, buf, n) == 0);
        g4_dequant_row(kqe[k].t, buf, deq, n);
        for (int64_t row = 0; row < n / 256; row++) {
            double se = 0, s2 = 0;
            for (int64_t i = row * 256; i < row * 256 + 256; i++) {
                se += ((double)deq[i] - x[i]) * ((double)deq[i] - x[i]);
                s2 += (double)x[i] * x[i];
            }
            if (s2 == 0) {
                CHECK(se == 0);
                continue;
            }
            CHECKF(sqrt(se / s2) <= kqe[k].max_rel_rms, "%s row %lld relative RMS error %.4f", g4_dtype_name(kqe[k].t),
                   (long long)row, sqrt(se / s2));
        }
    }
    g4_free(buf);
    g4_free(deq);
    g4_free(deq2);
    g4_gguf_destroy(&g);
    return 0;
}
