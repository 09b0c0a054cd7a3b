/* Tests of core/model/g4_attn: the two attention kernels against their
 * g4_attn_ref twin on random caches (F16 and f32 rows, full and ring
 * windows, 1..8 query heads per KV head), largest difference printed.
 * Tolerances: f32 kernel 1e-5 (summation order only); F16 kernel 1e-2
 * (Q rounded to F16 and Σ softmax·V kept in F16, as ggml's CPU kernel). */
#include <math.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_attn.h"
#include "g4_dtype.h"
#include "g4_test.h"

int test_attn(void)
{
    uint64_t rng = 42;
    const int hds[] = {64, 256}, cells = 40;
    double max_f32 = 0, max_f16 = 0;
    for (size_t ih = 0; ih < sizeof hds / sizeof *hds; ih++) {
        const int hd = hds[ih], G = 8;
        const size_t rb32 = (size_t)hd * 4, rb16 = (size_t)hd * 2;
        float *K = g4_malloc(cells * rb32), *V = g4_malloc(cells * rb32), *q = g4_malloc((size_t)G * hd * 4);
        g4_fp16_t *K16 = g4_malloc(cells * rb16), *V16 = g4_malloc(cells * rb16);
        float *out = g4_malloc((size_t)G * hd * 4), *ref = g4_malloc((size_t)hd * 4);
        uint8_t *buf = g4_malloc_aligned((size_t)G * 64 * 4 + (size_t)hd * 8 + 256, 64);
        REQUIRE(K && V && q && K16 && V16 && out && ref && buf);
        for (int i = 0; i < cells * hd; i++) {
            K16[i] = g4_fp32_to_fp16(g4_test_randn(&rng)), V16[i] = g4_fp32_to_fp16(g4_test_randn(&rng));
            K[i] = g4_fp16_to_fp32(K16[i]), V[i] = g4_fp16_to_fp32(V16[i]);
        }
        for (int i = 0; i < G * hd; i++) q[i] = 0.3f * g4_test_randn(&rng);
        /* [lo, hi]: one cell, a full prefix, a window wrapping the ring */
        const int win[][2] = {{0, 0}, {0, 31}, {25, 60}};
        for (size_t w = 0; w < sizeof win / sizeof *win; w++) {
            const int lo = win[w][0], hi = win[w][1];
            for (int is_f16 = 0; is_f16 < 2; is_f16++) {
                const uint8_t *k = is_f16 ? (const uint8_t *)K16 : (const uint8_t *)K;
                const uint8_t *v = is_f16 ? (const uint8_t *)V16 : (const uint8_t *)V;
                const size_t rb = is_f16 ? rb16 : rb32;
                for (int g = 1; g <= G; g *= 2) {
                    g4_attn_f32(q, g, k, v, rb, is_f16, hd, lo, hi, cells, out, buf);
                    for (int h = 0; h < g; h++) {
                        g4_attn_ref(q + (size_t)h * hd, k, v, rb, is_f16, hd, lo, hi, cells, ref);
                        for (int d = 0; d < hd; d++) {
                            const double e = fabs((double)out[(size_t)h * hd + d] - ref[d]);
                            if (e > max_f32) max_f32 = e;
                        }
                    }
                }
            }
            g4_attn_f16(q, (const uint8_t *)K16, (const uint8_t *)V16, rb16, hd, lo, hi, cells, out, buf);
            g4_attn_ref(q, (const uint8_t *)K16, (const uint8_t *)V16, rb16, 1, hd, lo, hi, cells, ref);
            for (int d = 0; d < hd; d++) {
                const double e = fabs((double)out[d] - ref[d]);
                if (e > max_f16) max_f16 = e;
            }
        }
        g4_free(K), g4_free(V), g4_free(q), g4_free(K16), g4_free(V16), g4_free(out), g4_free(ref);
        g4_free_aligned(buf);
    }
    printf("attn: largest difference to g4_attn_ref: f32 kernel %.2e, F16 kernel %.2e\n", max_f32, max_f16);
    CHECKF(max_f32 < 1e-5, "f32 kernel differs from the reference by %g", max_f32);
    CHECKF(max_f16 < 1e-2, "F16 kernel differs from the reference by %g", max_f16);
    return g4_test_failures;
}
