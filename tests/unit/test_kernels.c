/* Tests of core/kernels: each fast kernel against its scalar `_ref` twin on
 * random and edge inputs, with the tolerance stated per check and the
 * largest difference printed. */
#include <math.h>
#include <string.h>

#include "g4_act.h"
#include "g4_alloc.h"
#include "g4_dot.h"
#include "g4_err.h"
#include "g4_matmul.h"
#include "g4_norm.h"
#include "g4_pack.h"
#include "g4_rope.h"
#include "g4_test.h"

static const g4_dtype_t s_types[] = {G4_DTYPE_F32, G4_DTYPE_F16, G4_DTYPE_BF16, G4_DTYPE_Q8_0, G4_DTYPE_Q4_0,
                                     G4_DTYPE_Q4_1, G4_DTYPE_Q5_0, G4_DTYPE_Q5_1, G4_DTYPE_Q4_K, G4_DTYPE_Q5_K,
                                     G4_DTYPE_Q6_K};

int test_kernels(void)
{
    printf("kernels: isa %s\n", g4_kernels_isa());
    uint64_t rs = 7;
    const int64_t Ks[] = {256, 512, 2816, 5376};
    float *x = g4_malloc(5376 * 4), *wf = g4_malloc(5376 * 4);
    uint8_t *wq = g4_malloc(5376 * 4), *aq = g4_malloc(5376 * 4), *aq2 = g4_malloc(5376 * 4);
    REQUIRE(x && wf && wq && aq && aq2);
    for (size_t ti = 0; ti < sizeof s_types / sizeof s_types[0]; ti++) {
        const g4_dtype_t t = s_types[ti];
        const g4_type_ops_t *ops = g4_type_ops(t);
        REQUIRE(ops != NULL);
        double worst = 0;
        for (size_t ki = 0; ki < 4; ki++) {
            const int64_t K = Ks[ki];
            for (int rep = 0; rep < 8; rep++) {
                for (int64_t i = 0; i < K; i++) {
                    x[i] = g4_test_randn(&rs) * (rep == 3 ? 100.f : 1.f);
                    wf[i] = g4_test_randn(&rs) * 0.05f;
                }
                if (rep == 5) memset(x, 0, 256 * 4); /* an all-zero block */
                if (rep == 6) /* values that land on .5 after scaling */
                    for (int64_t i = 0; i < K; i++) x[i] = (float)((int)(g4_test_rand(&rs) % 255) - 127) * 0.5f;
                REQUIRE(g4_quant_row(t, wf, wq, K) == 0);
                ops->from_float(x, aq, K);
                ops->from_float_ref(x, aq2, K);
                const uint64_t ab = g4_dtype_row_bytes(ops->act_type, (uint64_t)K);
                CHECKF(memcmp(aq, aq2, ab) == 0, "%s: fast activation conversion differs from ref (K=%lld rep=%d)",
                       g4_dtype_name(t), (long long)K, rep);
                float s_fast, s_ref;
                ops->vec_dot(K, &s_fast, wq, aq);
                ops->vec_dot_ref(K, &s_ref, wq, aq);
                /* tolerance: f32 summation order only */
                double mag = 0;
                for (int64_t i = 0; i < K; i++) mag += fabs((double)x[i] * wf[i]);
                const double e = fabs((double)s_fast - s_ref) / (mag + 1e-30);
                if (e > worst) worst = e;
                /* Q4_K and Q6_K: exact integer sums per super-block, then the
                 * ref's float order: the same bits on every ISA */
                if (t == G4_DTYPE_Q4_K || t == G4_DTYPE_Q6_K)
                    CHECKF(s_fast == s_ref, "%s: fast %.9g != ref %.9g (K=%lld rep=%d)", g4_dtype_name(t), s_fast,
                           s_ref, (long long)K, rep);
            }
        }
        printf("  dot %-5s max rel diff fast vs ref %.2e\n", g4_dtype_name(t), worst);
        CHECKF(worst < 2e-6, "%s dot: %.3e", g4_dtype_name(t), worst);
    }
    /* the x86 Q8_0 rule: ties to even, id = 127/amax */
    {
        float v[32];
        for (int i = 0; i < 32; i++) v[i] = (float)(i - 16) * 0.5f; /* amax 8 -> id 15.875 */
        v[31] = 127.f;                                             /* amax 127 -> id 1: x.5 ties */
        g4_block_q8_0 b;
        g4_quant_q8_0_x86_ref(v, &b, 32);
        CHECK(b.qs[0] == -8 && b.qs[1] == -8 /* -7.5 -> -8 (even) */ && b.qs[3] == -6 /* -6.5 -> -6 */);
    }
    /* rmsnorm */
    {
        double worst = 0;
        for (int64_t n = 1; n < 700; n += 37) {
            float *y1 = g4_malloc((size_t)n * 4), *y2 = g4_malloc((size_t)n * 4);
            for (int64_t i = 0; i < n; i++) x[i] = g4_test_randn(&rs), wf[i] = g4_test_randn(&rs);
            g4_rmsnorm(x, wf, y1, n, 1e-6f);
            g4_rmsnorm_ref(x, wf, y2, n, 1e-6f);
            for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)y1[i] - y2[i]) / (fabs(y2[i]) + 1e-30));
            g4_free(y1);
            g4_free(y2);
        }
        printf("  rmsnorm max rel diff %.2e\n", worst);
        CHECK(worst < 1e-6);
    }
    /* gelu table: every f16 input, exact */
    {
        int bad = 0;
        for (uint32_t h = 0; h < 65536; h++) {
            float in = g4_fp16_to_fp32((g4_fp16_t)h), a, b;
            if (isnan(in)) continue;
            g4_gelu(&in, &a, 1);
            g4_gelu_ref(&in, &b, 1);
            if (a != b) bad++;
        }
        CHECKF(bad == 0, "%d gelu table entries differ", bad);
        float in[4] = {-10.f, -9.99f, 10.f, 3.0f}, out[4];
        g4_gelu(in, out, 4);
        CHECK(out[0] == 0.0f && out[2] == 10.f && fabsf(out[3] - 2.9964f) < 2e-3f);
    }
    /* rope: cache + apply equals the twin, and the 1e30 factor leaves dims unrotated */
    {
        const int hd = 64, nh = 3;
        float ff[32], cs[64], a[192], b[192];
        for (int i = 0; i < 32; i++) ff[i] = i < 8 ? 1.0f : 1e30f;
        for (int i = 0; i < nh * hd; i++) a[i] = b[i] = g4_test_randn(&rs);
        g4_rope_cache(cs, 1234, hd, hd, 1e6f, ff);
        g4_rope_apply(a, nh, hd, hd, cs);
        g4_rope_ref(b, nh, hd, hd, 1234, 1e6f, ff);
        CHECK(memcmp(a, b, sizeof a) == 0);
        float c[192];
        memcpy(c, b, sizeof c);
        g4_rope_ref(c, nh, hd, hd, 0, 1e6f, ff); /* position 0 is the identity */
        CHECK(memcmp(c, b, sizeof c) == 0);
    }
    /* softmax */
    {
        float v[5] = {1.f, -INFINITY, 2.f, 3.f, -1.f};
        g4_softmax(v, 5);
        CHECK(v[1] == 0.f && fabs(v[0] + v[2] + v[3] + v[4] - 1.0) < 1e-6 && v[3] > v[2]);
    }
    g4_free(x);
    g4_free(wf);
    g4_free(wq);
    g4_free(aq);
    g4_free(aq2);
    return 0;
}

/* the attention helpers: F16 accumulators exactly as the scalar formulas */
static int s_check_f16acc(void)
{
    uint64_t rs = 5;
    enum { N = 203 };
    uint16_t acc[N], acc2[N], v[N];
    for (int rep = 0; rep < 20; rep++) {
        const float sc = rep == 0 ? 1.0f : fabsf(g4_test_randn(&rs));
        for (int i = 0; i < N; i++) {
            acc[i] = acc2[i] = g4_fp32_to_fp16(g4_test_randn(&rs) * (rep % 3 == 0 ? 1000.0f : 1.0f));
            v[i] = g4_fp32_to_fp16(g4_test_randn(&rs) * 40.0f);
        }
        g4_f16_mad(acc, v, sc, N);
        for (int i = 0; i < N; i++)
            acc2[i] = g4_fp32_to_fp16(fmaf(g4_fp16_to_fp32(v[i]), sc, g4_fp16_to_fp32(acc2[i])));
        CHECK(memcmp(acc, acc2, sizeof acc) == 0);
        g4_f16_scale(acc, sc * 0.5f, N);
        for (int i = 0; i < N; i++) acc2[i] = g4_fp32_to_fp16(g4_fp16_to_fp32(acc2[i]) * (sc * 0.5f));
        CHECK(memcmp(acc, acc2, sizeof acc) == 0);
    }
    return 0;
}

/* packed matrices (g4_pack.h): the same bits as the row-major matrix, in
 * every batch size and row slice, and the layout round-trips */
static int s_check_packed(void)
{
    static const g4_dtype_t types[] = {G4_DTYPE_Q8_0, G4_DTYPE_Q4_K, G4_DTYPE_Q6_K};
    const int64_t K = 768, N = 48, TMAX = 19;
    const int64_t Ts[] = {1, 2, 3, 4, 5, 7, 8, 9, 19};
    uint64_t rs = 23;
    float *wf = g4_malloc((size_t)(K * N) * 4), *X = g4_malloc((size_t)(K * TMAX) * 4);
    float *Y1 = g4_malloc((size_t)((N + 3) * TMAX) * 4), *Y2 = g4_malloc((size_t)((N + 3) * TMAX) * 4);
    uint8_t *wq = g4_malloc((size_t)(K * N) * 4), *wp = g4_malloc((size_t)(K * N) * 4), *row = g4_malloc((size_t)K * 4);
    REQUIRE(wf && X && Y1 && Y2 && wq && wp && row);
    for (int64_t i = 0; i < K * N; i++) wf[i] = g4_test_randn(&rs) * (i % 97 == 0 ? 0.5f : 0.05f);
    for (int64_t i = 0; i < K * TMAX; i++) X[i] = g4_test_randn(&rs) * (i % 61 == 0 ? 8.0f : 1.0f);
    int tested = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const g4_dtype_t t = types[ti];
        if (!g4_pack_able(t, K, N)) continue;
        tested++;
        const uint64_t rb = g4_dtype_row_bytes(t, K);
        for (int64_t r = 0; r < N; r++) g4_quant_row(t, wf + r * K, wq + r * rb, K);
        g4_pack_rows(t, K, wq, rb, N / G4_PACK_ROWS, wp);
        int same = 1;
        for (int64_t r = 0; r < N; r++) {
            g4_pack_unpack_row(t, K, wp, r, row);
            same &= memcmp(row, wq + r * rb, rb) == 0;
        }
        CHECKF(same, "%s: a packed row does not unpack to itself", g4_dtype_name(t));
        g4_tensor_t W = {.name = "w", .data = wq, .dtype = t, .n_dims = 2, .ne = {K, N, 1, 1}};
        W.nb[0] = g4_dtype_traits(t)->type_size;
        W.nb[1] = rb;
        W.nb[2] = W.nb[3] = rb * N;
        g4_tensor_t P = W;
        P.data = wp, P.packed = 1;
        void *scr = g4_malloc_aligned(g4_matmul_scratch_bytes(t, K, TMAX) + 64, 64);
        REQUIRE(scr);
        static const int64_t slices[][2] = {{0, 48}, {16, 16}, {5, 30}, {33, 1}, {17, 31}};
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++)
            for (size_t sl = 0; sl < sizeof slices / sizeof slices[0]; sl++) {
                const int64_t T = Ts[k], r0 = slices[sl][0], nr = slices[sl][1];
                memset(Y1, 0, (size_t)((N + 3) * TMAX) * 4), memset(Y2, 0, (size_t)((N + 3) * TMAX) * 4);
                REQUIRE(g4_matmul(&W, r0, nr, X, K, T, Y1, nr + 3, scr) == 0);
                REQUIRE(g4_matmul(&P, r0, nr, X, K, T, Y2, nr + 3, scr) == 0);
                CHECKF(memcmp(Y1, Y2, (size_t)((N + 3) * TMAX) * 4) == 0, "%s packed: T=%lld rows %lld+%lld differ",
                       g4_dtype_name(t), (long long)T, (long long)r0, (long long)nr);
            }
        g4_free_aligned(scr);
    }
    if (!tested) printf("matmul: packed kernels not available on this CPU (no AVX-512 VNNI): packed layout not tested\n");
    g4_free(wf), g4_free(X), g4_free(Y1), g4_free(Y2), g4_free(wq), g4_free(wp), g4_free(row);
    return 0;
}

int test_matmul(void)
{
    if (s_check_f16acc()) return 1;
    if (s_check_packed()) return 1;
    uint64_t rs = 11;
    const int64_t K = 512, N = 67;
    const int64_t Ts[] = {1, 3, 5, 13, 17}; /* (2..7 rows: the small-batch kernels, also after 8) */
    float *wf = g4_malloc((size_t)(K * N) * 4), *X = g4_malloc((size_t)(K * 17) * 4);
    float *Y1 = g4_malloc((size_t)(N * 17) * 4), *Y2 = g4_malloc((size_t)(N * 17) * 4);
    uint8_t *wq = g4_malloc((size_t)(K * N) * 4);
    REQUIRE(wf && X && Y1 && Y2 && wq);
    for (int64_t i = 0; i < K * N; i++) wf[i] = g4_test_randn(&rs) * 0.05f;
    for (int64_t i = 0; i < K * 17; i++) X[i] = g4_test_randn(&rs);
    for (size_t ti = 0; ti < sizeof s_types / sizeof s_types[0]; ti++) {
        const g4_dtype_t t = s_types[ti];
        for (int64_t r = 0; r < N; r++) g4_quant_row(t, wf + r * K, wq + r * g4_dtype_row_bytes(t, K), K);
        g4_tensor_t W = {.name = "w", .data = wq, .dtype = t, .n_dims = 2, .ne = {K, N, 1, 1}};
        W.nb[0] = g4_dtype_traits(t)->type_size;
        W.nb[1] = g4_dtype_row_bytes(t, K);
        W.nb[2] = W.nb[3] = W.nb[1] * N;
        for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++) {
            const int64_t T = Ts[k];
            void *scr = g4_malloc_aligned(g4_matmul_scratch_bytes(t, K, T) + 64, 64);
            REQUIRE(scr);
            REQUIRE(g4_matmul(&W, 0, -1, X, K, T, Y1, N, scr) == 0);
            REQUIRE(g4_matmul_ref(&W, 0, -1, X, K, T, Y2, N, scr) == 0);
            double worst = 0;
            for (int64_t i = 0; i < N * T; i++) worst = fmax(worst, fabs((double)Y1[i] - Y2[i]));
            CHECKF(worst < 1e-4, "%s T=%lld max abs diff %.3e", g4_dtype_name(t), (long long)T, worst);
            /* batch invariance: each row computes exactly what it computes alone */
            float one[67];
            for (int64_t tt = 0; tt < T; tt++) {
                REQUIRE(g4_matmul(&W, 0, -1, X + tt * K, K, 1, one, N, scr) == 0);
                int same = 1;
                for (int64_t r = 0; r < N; r++) same &= one[r] == Y1[tt * N + r];
                CHECKF(same, "%s: row %lld of a %lld-row batch differs from the row alone", g4_dtype_name(t),
                       (long long)tt, (long long)T);
            }
            /* a slice of rows gives the same numbers */
            REQUIRE(g4_matmul(&W, 10, 20, X, K, T, Y1, 20, scr) == 0);
            for (int64_t tt = 0; tt < T; tt++)
                for (int64_t r = 0; r < 20; r++) CHECK(fabsf(Y1[tt * 20 + r] - Y2[tt * N + 10 + r]) < 1e-4f);
            g4_free_aligned(scr);
        }
    }
    g4_tensor_t bad = {.dtype = G4_DTYPE_Q2_K, .ne = {256, 1, 1, 1}};
    CHECK(g4_matmul(&bad, 0, -1, X, K, 1, Y1, 1, NULL) == G4_ERR_RANGE);
    g4_free(wf);
    g4_free(X);
    g4_free(Y1);
    g4_free(Y2);
    g4_free(wq);
    return 0;
}
