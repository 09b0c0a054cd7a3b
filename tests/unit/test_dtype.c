/* Tests of core/tensor/g4_dtype: conversions and row (de)quantization. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "g4_dtype.h"
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
