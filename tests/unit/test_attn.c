/* Tests of core/model/g4_attn: the two attention kernels against their
 * g4_attn_ref twin on random caches (F16 and f32 rows, full and ring
 * windows, views in cache order and scrambled, several rows per call, 1..8
 * query heads per KV head, the split-KV decode over >= 512 cells), largest
 * difference printed. Tolerances: f32 kernel 1e-5 (summation order only);
 * F16 kernel 1e-2 (Q rounded to F16 and Σ softmax·V kept in F16, as ggml's
 * CPU kernel). And g4_kv_view_step: llama.cpp's placement of a sequence in
 * its sliding-window cache, on the case worked out by hand from its slot
 * search (window 16, ubatch 512: a 768-cell cache). */
#include <math.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_attn.h"
#include "g4_dtype.h"
#include "g4_model_internal.h"
#include "g4_test.h"

static double s_maxdiff(const float *a, const float *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static int s_view_step(void)
{
    g4_model_t m;
    g4_ctx_t c;
    g4_seq_t s;
    memset(&m, 0, sizeof m), memset(&c, 0, sizeof c), memset(&s, 0, sizeof s);
    m.hp.n_swa = 16, c.m = &m, c.n_ctx = 4096, c.n_lcell = 768;
    s.lcell = g4_malloc(768 * sizeof *s.lcell);
    int32_t *pos = g4_malloc(512 * sizeof *pos);
    REQUIRE(s.lcell && pos);
    for (int i = 0; i < 768; i++) s.lcell[i] = -1;
    /* a 1,500-token prompt in ubatches of 512, 512, 476 */
    for (int i = 0; i < 512; i++) pos[i] = i;
    g4_kv_view_step(&c, &s, pos, 512);
    CHECK(s.lcell[0] == 0 && s.lcell[511] == 511 && s.lcell[512] == -1 && s.nkv_swa == 512 && s.nkv_full == 512);
    for (int i = 0; i < 512; i++) pos[i] = 512 + i;
    g4_kv_view_step(&c, &s, pos, 512);
    /* the empty cells 512..767 first, then from cell 0 the positions out of the window */
    CHECK(s.lcell[512] == 512 && s.lcell[767] == 767 && s.lcell[0] == 768 && s.lcell[255] == 1023 && s.lcell[256] == 256);
    CHECK(s.nkv_swa == 768 && s.nkv_full == 1024);
    for (int i = 0; i < 476; i++) pos[i] = 1024 + i;
    g4_kv_view_step(&c, &s, pos, 476);
    /* from the head (256) on: positions 256..731 are out of the window */
    CHECK(s.lcell[256] == 1024 && s.lcell[731] == 1499 && s.lcell[732] == 732 && s.lcell[0] == 768);
    CHECK(s.nkv_swa == 768 && s.nkv_full == 1536);
    pos[0] = 1500;
    g4_kv_view_step(&c, &s, pos, 1);
    CHECK(s.lcell[732] == 1500 && s.nkv_full == 1536);
    g4_free(s.lcell), g4_free(pos);
    return 0;
}

/* g4_kv_rotate is the orthonormal Sylvester Hadamard matrix of llama.cpp's
 * ggml_gen_hadamard (H[i][j] = (-1)^popcount(i & j) / sqrt(n)) applied per block,
 * and its own inverse */
static int s_rotate(void)
{
    enum { N = 128, NB = 64 };
    float x[N], y[N], z[N];
    uint64_t rng = 3;
    for (int i = 0; i < N; i++) x[i] = y[i] = z[i] = g4_test_randn(&rng);
    g4_kv_rotate(y, N, NB);
    double e_mat = 0, e_inv = 0;
    for (int b = 0; b < N; b += NB)
        for (int i = 0; i < NB; i++) {
            double acc = 0;
            for (int j = 0; j < NB; j++) acc += (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * x[b + j];
            e_mat = fmax(e_mat, fabs(acc / sqrt(NB) - y[b + i]));
        }
    g4_kv_rotate(y, N, NB);
    for (int i = 0; i < N; i++) e_inv = fmax(e_inv, fabs(y[i] - z[i]));
    CHECKF(e_mat < 1e-5 && e_inv < 1e-5, "Walsh-Hadamard rotation: %g from the matrix, %g from the identity", e_mat, e_inv);
    return 0;
}

int test_attn(void)
{
    uint64_t rng = 42;
    enum { CELLS = 40, NV = 600, NR = 3 };
    const int hds[] = {64, 256};
    double max_f32 = 0, max_f16 = 0, max_split = 0;
    /* views: cache order, and the ring's positions scattered over a larger view */
    int32_t *scram = g4_malloc(NV * sizeof *scram);
    REQUIRE(scram);
    for (int i = 0; i < NV; i++) scram[i] = -1;
    for (int p = 0; p <= 60; p++) scram[(p * 37 + 11) % NV] = p;
    for (size_t ih = 0; ih < sizeof hds / sizeof *hds; ih++) {
        const int hd = hds[ih], G = 8;
        const size_t rb32 = (size_t)hd * 4, rb16 = (size_t)hd * 2;
        float *K = g4_malloc(CELLS * rb32), *V = g4_malloc(CELLS * rb32), *q = g4_malloc((size_t)NR * G * hd * 4);
        g4_fp16_t *K16 = g4_malloc(CELLS * rb16), *V16 = g4_malloc(CELLS * rb16);
        float *out = g4_malloc((size_t)NR * G * hd * 4), *ref = g4_malloc((size_t)hd * 4), *o2 = g4_malloc((size_t)hd * 4);
        const size_t bb = g4_attn_f32_buf_bytes(G, hd) > 12 * (size_t)hd ? g4_attn_f32_buf_bytes(G, hd) : 12 * (size_t)hd;
        uint8_t *buf = g4_malloc_aligned(bb, 64);
        REQUIRE(K && V && q && K16 && V16 && out && ref && o2 && buf);
        for (int i = 0; i < CELLS * hd; i++) {
            K16[i] = g4_fp32_to_fp16(g4_test_randn(&rng)), V16[i] = g4_fp32_to_fp16(g4_test_randn(&rng));
            K[i] = g4_fp16_to_fp32(K16[i]), V[i] = g4_fp16_to_fp32(V16[i]);
        }
        for (int i = 0; i < NR * G * hd; i++) q[i] = 0.3f * g4_test_randn(&rng);
        /* [lo, hi] of the first row (the others end 1 and 2 later): one
         * cell, a full prefix, a window wrapping the ring */
        const int win[][2] = {{0, 0}, {0, 31}, {22, 57}};
        for (size_t w = 0; w < sizeof win / sizeof *win; w++)
            for (int sc = 0; sc < 2; sc++) {
                const g4_attn_view_t vw = {sc ? scram : NULL, sc ? NV : 256, CELLS};
                int lo[NR], hi[NR];
                for (int r = 0; r < NR; r++) lo[r] = win[w][0], hi[r] = win[w][1] + (w ? r : 0);
                for (int is_f16 = 0; is_f16 < 2; is_f16++) {
                    const uint8_t *k = is_f16 ? (const uint8_t *)K16 : (const uint8_t *)K;
                    const uint8_t *v = is_f16 ? (const uint8_t *)V16 : (const uint8_t *)V;
                    const size_t rb = is_f16 ? rb16 : rb32;
                    for (int g = 1; g <= G; g *= 2) {
                        g4_attn_f32(q, (size_t)G * hd, NR, g, k, v, rb, is_f16, hd, lo, hi, &vw, out, (size_t)G * hd, buf);
                        for (int r = 0; r < NR; r++)
                            for (int h = 0; h < g; h++) {
                                g4_attn_ref(q + ((size_t)r * G + h) * hd, k, v, rb, is_f16, hd, lo[r], hi[r], CELLS, ref);
                                max_f32 = fmax(max_f32, s_maxdiff(out + ((size_t)r * G + h) * hd, ref, hd));
                            }
                    }
                }
                g4_attn_ref(q, (const uint8_t *)K16, (const uint8_t *)V16, rb16, 1, hd, lo[0], hi[0], CELLS, ref);
                for (int splits = 1; splits <= 4; splits++) {
                    g4_attn_f16(q, (const uint8_t *)K16, (const uint8_t *)V16, rb16, hd, lo[0], hi[0], &vw, splits, out, buf);
                    const double e = s_maxdiff(out, ref, hd);
                    if (splits == 1) max_f16 = fmax(max_f16, e);
                    else max_split = fmax(max_split, e);
                    /* under 512 cells there is no split: the same bits */
                    if (vw.n_kv < G4_ATTN_SPLIT_MIN && splits > 1) CHECK(!memcmp(out, o2, (size_t)hd * 4));
                    if (splits == 1) memcpy(o2, out, (size_t)hd * 4);
                }
            }
        g4_free(K), g4_free(V), g4_free(q), g4_free(K16), g4_free(V16), g4_free(out), g4_free(ref), g4_free(o2);
        g4_free_aligned(buf);
    }
    g4_free(scram);
    printf("attn: largest difference to g4_attn_ref: f32 kernel %.2e, F16 kernel %.2e, split F16 %.2e\n", max_f32,
           max_f16, max_split);
    CHECKF(max_f32 < 1e-5, "f32 kernel differs from the reference by %g", max_f32);
    CHECKF(max_f16 < 1e-2, "F16 kernel differs from the reference by %g", max_f16);
    CHECKF(max_split < 1e-2, "split F16 kernel differs from the reference by %g", max_split);
    s_view_step();
    s_rotate();
    return g4_test_failures;
}
