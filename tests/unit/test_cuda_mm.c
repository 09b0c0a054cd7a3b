/* Tests of the CUDA matmul (core/cuda/g4_cuda_mm.cu):
 *   cuda_quant  no device needed: the kernels' weight decoding, run on the
 *               host (g4_cu_dequant_row_host), gives g4_dequant_row's bits
 *               for every type the backend takes, on quantized rows and on
 *               rows of random bytes (every bit of every field);
 *   cuda_mm     on a device: g4_cu_matmul against the product of the CPU's
 *               dequantized weights with X in double (the f32 kernels for
 *               T <= 8: 1e-3 of the row's max |y|; the f16 tensor cores:
 *               4e-3), and against g4_matmul_ref (which also quantizes X:
 *               a looser bound); a row of 1e6s, a row of 1e-6s, stores
 *               only inside N, unaligned X, a row slice at an odd row.
 * Both skip (77) in a build without the CUDA backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_cuda.h"
#include "g4_dtype.h"
#include "g4_err.h"
#include "g4_matmul.h"
#include "g4_quant.h"
#include "g4_tensor.h"
#include "g4_test.h"

#ifdef G4_HAVE_CUDA

/* every type id; the tests take those g4_cu_type_ok accepts */
static int s_ok_types(g4_dtype_t *out)
{
    int n = 0;
    for (int t = 0; t < G4_DTYPE_COUNT; t++)
        if (g4_dtype_traits((uint32_t)t) && g4_cu_type_ok((g4_dtype_t)t)) out[n++] = (g4_dtype_t)t;
    return n;
}

/* bits equal, or both NaN */
static int s_same(float a, float b)
{
    if (a != a && b != b) return 1;
    uint32_t x, y;
    memcpy(&x, &a, 4);
    memcpy(&y, &b, 4);
    return x == y;
}

#endif

int test_cuda_quant(void)
{
#ifndef G4_HAVE_CUDA
    printf("SKIP: built without the CUDA backend\n");
    return G4_TEST_SKIP;
#else
    g4_dtype_t types[G4_DTYPE_COUNT];
    const int nt = s_ok_types(types);
    /* what the kernels must take: everything a Gemma GGUF's matrices use */
    const g4_dtype_t need[] = {G4_DTYPE_F32,  G4_DTYPE_F16,  G4_DTYPE_BF16, G4_DTYPE_Q4_0, G4_DTYPE_Q8_0,
                               G4_DTYPE_Q4_K, G4_DTYPE_Q5_K, G4_DTYPE_Q6_K, G4_DTYPE_Q4_1, G4_DTYPE_Q5_0,
                               G4_DTYPE_Q5_1};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        CHECKF(g4_cu_type_ok(need[i]), "%s not taken", g4_dtype_name(need[i]));
    CHECK(!g4_cu_type_ok(G4_DTYPE_Q2_K) && !g4_cu_type_ok(G4_DTYPE_IQ4_XS) && !g4_cu_type_ok(G4_DTYPE_I32));

    uint64_t rs = 29;
    const int64_t KMAX = 4096, R = 7;
    float *wf = g4_malloc((size_t)(KMAX * R) * 4), *ref = g4_malloc((size_t)KMAX * 4),
          *got = g4_malloc((size_t)KMAX * 4);
    uint8_t *wq = g4_malloc((size_t)(KMAX * R) * 4 + 64);
    REQUIRE(wf && ref && got && wq);
    for (int ti = 0; ti < nt; ti++) {
        const g4_dtype_t t = types[ti];
        const int64_t qk = g4_dtype_traits(t)->block_size;
        int64_t Ks[6];
        int nk = 0;
        if (qk == 1) {
            Ks[nk++] = 1, Ks[nk++] = 7, Ks[nk++] = 33, Ks[nk++] = 96, Ks[nk++] = 1000, Ks[nk++] = 4096;
        } else if (qk == 32) {
            Ks[nk++] = 32, Ks[nk++] = 96, Ks[nk++] = 224, Ks[nk++] = 704, Ks[nk++] = 4064;
        } else {
            Ks[nk++] = 256, Ks[nk++] = 768, Ks[nk++] = 2816, Ks[nk++] = 4096;
        }
        long n_rows = 0, n_bad = 0;
        for (int ki = 0; ki < nk; ki++) {
            const int64_t K = Ks[ki];
            const uint64_t rb = g4_dtype_row_bytes(t, (uint64_t)K);
            REQUIRE(rb > 0);
            for (int mode = 0; mode < 2; mode++) {
                if (mode == 0) { /* quantized floats: each row its own scale, a zero block, an outlier */
                    for (int64_t r = 0; r < R; r++) {
                        const float sc = r == 0 ? 1.f : (r == 1 ? 0.05f : (r == 2 ? 1e-4f : (r == 3 ? 300.f : 0.02f)));
                        for (int64_t i = 0; i < K; i++) wf[r * K + i] = g4_test_randn(&rs) * sc;
                        if (r == 4) memset(wf + r * K, 0, (size_t)(K < 32 ? K : 32) * 4);
                        if (r == 5) wf[r * K + K / 2] = 40.f;
                        if (r == 6)
                            for (int64_t i = 0; i < K; i++) wf[r * K + i] = fabsf(wf[r * K + i]) + 0.01f;
                    }
                    REQUIRE(g4_quant_rows(t, wf, wq, R, K) == 0);
                } else { /* random bytes */
                    for (uint64_t i = 0; i < rb * (uint64_t)R; i++) wq[i] = (uint8_t)g4_test_rand(&rs);
                }
                for (int64_t r = 0; r < R; r++) {
                    const uint8_t *row = wq + (uint64_t)r * rb; /* rows at their GGUF offsets (Q6_K: 2 mod 4) */
                    REQUIRE(g4_dequant_row(t, row, ref, K) == 0);
                    for (int64_t i = 0; i < K; i++) got[i] = -12345.f;
                    REQUIRE(g4_cu_dequant_row_host(t, row, got, K) == G4_OK);
                    int64_t first = -1;
                    for (int64_t i = 0; i < K && first < 0; i++)
                        if (!s_same(ref[i], got[i])) first = i;
                    n_rows++;
                    if (first >= 0) {
                        n_bad++;
                        if (n_bad <= 5)
                            fprintf(stderr, "  %s K=%lld row %lld (%s): element %lld: cpu %.9g, cuda host %.9g\n",
                                    g4_dtype_name(t), (long long)K, (long long)r, mode ? "random bytes" : "quantized",
                                    (long long)first, ref[first], got[first]);
                    }
                }
            }
        }
        printf("  %-5s %ld rows (%d sizes, quantized and random bytes): %ld differ from g4_dequant_row\n",
               g4_dtype_name(t), n_rows, nk, n_bad);
        CHECKF(n_bad == 0, "%s: %ld rows differ", g4_dtype_name(t), n_bad);
        /* K not whole blocks */
        if (qk > 1) CHECK(g4_cu_dequant_row_host(t, wq, got, qk + 1) == G4_ERR_RANGE);
    }
    CHECK(g4_cu_dequant_row_host(G4_DTYPE_Q2_K, wq, got, 256) == G4_ERR_RANGE);
    CHECK(g4_cu_dequant_row_host(G4_DTYPE_Q8_K, wq, got, 256) == G4_ERR_RANGE);
    g4_free(wf);
    g4_free(ref);
    g4_free(got);
    g4_free(wq);
    return 0;
#endif
}

#ifdef G4_HAVE_CUDA

/* worst |y - ref| / (tol·max_n |ref[t]| + 1e-4·min(1, max_n |ref[t]|)) over
 * the T × N outputs (<= 1 passes); Y rows ldy apart, ref rows ldr apart.
 * Reference values that are not finite are skipped (g4_matmul_ref turns
 * the 1e6 row into infs when it converts X to F16). */
static double s_worst(const float *Y, int64_t ldy, const double *ref, int64_t ldr, int64_t N, int64_t T, double tol,
                      int *nonfinite)
{
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        double m = 0;
        for (int64_t n = 0; n < N; n++)
            if (isfinite(ref[t * ldr + n])) m = fmax(m, fabs(ref[t * ldr + n]));
        const double bound = tol * m + 1e-4 * fmin(1.0, m) + 1e-30;
        for (int64_t n = 0; n < N; n++) {
            const float y = Y[t * ldy + n];
            if (!isfinite(y)) {
                (*nonfinite)++;
                worst = INFINITY;
                continue;
            }
            if (isfinite(ref[t * ldr + n])) worst = fmax(worst, fabs(y - ref[t * ldr + n]) / bound);
        }
    }
    return worst;
}

/* optional: G4_CUDA_MM_BENCH=1 times the 31B shapes (Q4_K and Q6_K) */
static void s_bench(g4_cu_t *cu)
{
    const struct {
        g4_dtype_t t;
        int64_t K, N;
    } sh[] = {{G4_DTYPE_Q4_K, 5376, 21504}, {G4_DTYPE_Q6_K, 21504, 5376}, {G4_DTYPE_Q8_0, 5376, 21504},
              {G4_DTYPE_F16, 5376, 8192}};
    g4_err_t err = {0};
    for (size_t s = 0; s < sizeof sh / sizeof sh[0]; s++) {
        const g4_dtype_t t = sh[s].t;
        const int64_t K = sh[s].K, N = sh[s].N, TM = 512;
        const uint64_t rb = g4_dtype_row_bytes(t, (uint64_t)K);
        uint8_t *hw = g4_malloc(rb * (uint64_t)N);
        float *hx = g4_malloc((size_t)(K * TM) * 4);
        if (!hw || !hx) return;
        uint64_t rs = 5;
        float *row = g4_malloc((size_t)K * 4);
        for (int64_t n = 0; n < N; n++) {
            for (int64_t k = 0; k < K; k++) row[k] = g4_test_randn(&rs) * 0.05f;
            g4_quant_row(t, row, hw + (uint64_t)n * rb, K);
        }
        for (int64_t i = 0; i < K * TM; i++) hx[i] = g4_test_randn(&rs);
        void *dW = g4_cu_alloc(cu, rb * (uint64_t)N);
        float *dX = g4_cu_alloc(cu, (size_t)(K * TM) * 4), *dY = g4_cu_alloc(cu, (size_t)(N * TM) * 4);
        if (dW && dX && dY && g4_cu_h2d(cu, dW, hw, rb * (uint64_t)N) == 0 &&
            g4_cu_h2d(cu, dX, hx, (size_t)(K * TM) * 4) == 0 && g4_cu_sync(cu, &err) == 0) {
            const int64_t Ts[] = {1, 2, 8, TM};
            for (size_t ti = 0; ti < 4; ti++) {
                const int64_t T = Ts[ti];
                const int it = T > 8 ? 10 : 50;
                g4_cu_matmul(cu, t, dW, rb, K, N, dX, K, T, dY, N, &err); /* warm up */
                g4_cu_sync(cu, &err);
                const double t0 = g4_clock_mono_s();
                for (int i = 0; i < it; i++) g4_cu_matmul(cu, t, dW, rb, K, N, dX, K, T, dY, N, &err);
                const int rc = g4_cu_sync(cu, &err);
                const double dt = (g4_clock_mono_s() - t0) / it;
                printf("  bench %-5s K=%lld N=%lld T=%-3lld %8.1f us  %7.1f GB/s of weights  %7.1f TFLOPS%s\n",
                       g4_dtype_name(t), (long long)K, (long long)N, (long long)T, dt * 1e6,
                       (double)rb * (double)N / dt * 1e-9, 2.0 * (double)K * (double)N * (double)T / dt * 1e-12,
                       rc ? " (FAILED)" : "");
            }
        }
        g4_cu_free(cu, dW);
        g4_cu_free(cu, dX);
        g4_cu_free(cu, dY);
        g4_free(hw);
        g4_free(hx);
        g4_free(row);
    }
}

#endif

int test_cuda_mm(void)
{
#ifndef G4_HAVE_CUDA
    printf("SKIP: built without the CUDA backend\n");
    return G4_TEST_SKIP;
#else
    if (g4_cu_device_count() == 0) {
        printf("SKIP: no CUDA device (no driver, or no GPU visible)\n");
        return G4_TEST_SKIP;
    }
    g4_err_t err = {0};
    g4_cu_t *cu = g4_cu_open(0, &err);
    if (!cu) fprintf(stderr, "g4_cu_open: %s\n", err.msg);
    REQUIRE(cu);
    {
        char name[256] = "";
        size_t fr = 0, tot = 0;
        g4_cu_device_info(0, name, sizeof name, &fr, &tot, &err);
        printf("cuda_mm: device 0: %s\n", name);
    }
    g4_dtype_t types[G4_DTYPE_COUNT];
    const int nt = s_ok_types(types);
    const int64_t NMAX = 300, TMAX = 130, Ns[] = {1, 7, 33, 300}, Ts[] = {1, 2, 3, 5, 8, 9, 17, 64, 130};
    const int64_t LDY = NMAX + 3;
    uint64_t rs = 41;
    for (int ti = 0; ti < nt; ti++) {
        const g4_dtype_t t = types[ti];
        const int64_t qk = g4_dtype_traits(t)->block_size;
        int64_t Ks[4];
        int nk = 0;
        if (qk == 1) Ks[nk++] = 32, Ks[nk++] = 96, Ks[nk++] = 40 /* not 32s: the scalar kernel */, Ks[nk++] = 1344;
        else if (qk == 32) Ks[nk++] = 32, Ks[nk++] = 96, Ks[nk++] = 704;
        else Ks[nk++] = 256, Ks[nk++] = 768, Ks[nk++] = 2816;
        double worst_mv = 0, worst_tc = 0, worst_cpu = 0;
        int nonfinite = 0, outside = 0, calls = 0;
        for (int ki = 0; ki < nk; ki++) {
            const int64_t K = Ks[ki], LDX = K + 4;
            const uint64_t rb = g4_dtype_row_bytes(t, (uint64_t)K);
            float *wf = g4_malloc((size_t)(K * NMAX) * 4), *wd = g4_malloc((size_t)(K * NMAX) * 4);
            float *X = g4_malloc((size_t)(LDX * TMAX) * 4 + 16), *Y = g4_malloc((size_t)(LDY * TMAX) * 4);
            float *Yc = g4_malloc((size_t)(NMAX * TMAX) * 4);
            double *ref = g4_malloc((size_t)(NMAX * TMAX) * 8);
            uint8_t *wq = g4_malloc(rb * NMAX);
            REQUIRE(wf && wd && X && Y && Yc && ref && wq);
            for (int64_t i = 0; i < K * NMAX; i++) wf[i] = g4_test_randn(&rs) * 0.05f;
            REQUIRE(g4_quant_rows(t, wf, wq, NMAX, K) == 0);
            for (int64_t n = 0; n < NMAX; n++) REQUIRE(g4_dequant_row(t, wq + (uint64_t)n * rb, wd + n * K, K) == 0);
            for (int64_t i = 0; i < LDX * TMAX + 4; i++) X[i] = g4_test_randn(&rs);
            for (int64_t k = 0; k < K; k++) X[5 * LDX + k] *= 1e6f;  /* a huge row */
            for (int64_t k = 0; k < K; k++) X[6 * LDX + k] *= 1e-6f; /* a tiny one  */
            for (int64_t tt = 0; tt < TMAX; tt++)
                for (int64_t n = 0; n < NMAX; n++) {
                    double s = 0;
                    for (int64_t k = 0; k < K; k++) s += (double)wd[n * K + k] * X[tt * LDX + k];
                    ref[tt * NMAX + n] = s;
                }
            void *dW = g4_cu_alloc(cu, rb * NMAX);
            float *dX = g4_cu_alloc(cu, (size_t)(LDX * TMAX) * 4 + 16), *dY = g4_cu_alloc(cu, (size_t)(LDY * TMAX) * 4);
            REQUIRE(dW && dX && dY);
            REQUIRE(g4_cu_h2d(cu, dW, wq, rb * NMAX) == 0);
            REQUIRE(g4_cu_h2d(cu, dX, X, (size_t)(LDX * TMAX) * 4 + 16) == 0);
            for (size_t ni = 0; ni < sizeof Ns / sizeof Ns[0]; ni++) {
                const int64_t N = Ns[ni];
                for (size_t tj = 0; tj < sizeof Ts / sizeof Ts[0]; tj++) {
                    const int64_t T = Ts[tj];
                    memset(Y, 0xFF, (size_t)(LDY * T) * 4); /* NaN: what must stay */
                    REQUIRE(g4_cu_h2d(cu, dY, Y, (size_t)(LDY * T) * 4) == 0);
                    const int rc = g4_cu_matmul(cu, t, dW, rb, K, N, dX, LDX, T, dY, LDY, &err);
                    CHECKF(rc == 0, "%s K=%lld N=%lld T=%lld: %s", g4_dtype_name(t), (long long)K, (long long)N,
                           (long long)T, err.msg);
                    REQUIRE(g4_cu_d2h(cu, Y, dY, (size_t)(LDY * T) * 4) == 0);
                    const int src = g4_cu_sync(cu, &err);
                    CHECKF(src == 0, "%s K=%lld N=%lld T=%lld: %s", g4_dtype_name(t), (long long)K, (long long)N,
                           (long long)T, err.msg);
                    if (rc || src) continue;
                    calls++;
                    const double w = s_worst(Y, LDY, ref, NMAX, N, T, T <= 8 ? 1e-3 : 4e-3, &nonfinite);
                    if (T <= 8) worst_mv = fmax(worst_mv, w);
                    else worst_tc = fmax(worst_tc, w);
                    CHECKF(w <= 1.0, "%s K=%lld N=%lld T=%lld: error %.2f x the bound", g4_dtype_name(t),
                           (long long)K, (long long)N, (long long)T, w);
                    for (int64_t tt = 0; tt < T; tt++)
                        for (int64_t n = N; n < LDY; n++) {
                            uint32_t u;
                            memcpy(&u, &Y[tt * LDY + n], 4);
                            outside += u != 0xFFFFFFFFu;
                        }
                    /* the CPU's g4_matmul_ref (X quantized to the weight's activation type) */
                    if (N == 33 && (T == 1 || T == 17)) {
                        g4_tensor_t W = {.name = "w", .data = wq, .dtype = t, .n_dims = 2, .ne = {K, NMAX, 1, 1}};
                        W.nb[0] = g4_dtype_traits(t)->type_size;
                        W.nb[1] = rb;
                        W.nb[2] = W.nb[3] = rb * NMAX;
                        void *scr = g4_malloc_aligned(g4_matmul_scratch_bytes(t, K, T) + 64, 64);
                        REQUIRE(scr);
                        REQUIRE(g4_matmul_ref(&W, 0, N, X, LDX, T, Yc, N, scr) == 0);
                        g4_free_aligned(scr);
                        double *rc2 = g4_malloc((size_t)(N * T) * 8);
                        REQUIRE(rc2);
                        for (int64_t i = 0; i < N * T; i++) rc2[i] = Yc[i];
                        const double wc = s_worst(Y, LDY, rc2, N, N, T, 3e-2, &nonfinite);
                        worst_cpu = fmax(worst_cpu, wc);
                        CHECKF(wc <= 1.0, "%s K=%lld N=%lld T=%lld vs g4_matmul_ref: %.2f x the bound",
                               g4_dtype_name(t), (long long)K, (long long)N, (long long)T, wc);
                        g4_free(rc2);
                    }
                }
            }
            /* X not 16-byte aligned (packed into the workspace) and a slice from row 1 (Q6_K: 2 mod 4) */
            {
                const int64_t N = 33;
                const int64_t Tsl[] = {1, 3, 8, 17};
                for (int i = 0; i < 4; i++) {
                    const int64_t T = Tsl[i];
                    const int rc = g4_cu_matmul(cu, t, (uint8_t *)dW + rb, rb, K, N, dX + 1, LDX, T, dY, LDY, &err);
                    CHECKF(rc == 0, "%s unaligned X T=%lld: %s", g4_dtype_name(t), (long long)T, err.msg);
                    REQUIRE(g4_cu_d2h(cu, Y, dY, (size_t)(LDY * T) * 4) == 0);
                    REQUIRE(g4_cu_sync(cu, &err) == 0);
                    /* reference for X shifted by one float, weights from row 1 */
                    double *r1 = g4_malloc((size_t)(N * T) * 8);
                    REQUIRE(r1);
                    for (int64_t tt = 0; tt < T; tt++)
                        for (int64_t n = 0; n < N; n++) {
                            double s = 0;
                            for (int64_t k = 0; k < K; k++) s += (double)wd[(n + 1) * K + k] * X[tt * LDX + k + 1];
                            r1[tt * N + n] = s;
                        }
                    const double w = s_worst(Y, LDY, r1, N, N, T, T <= 8 ? 1e-3 : 4e-3, &nonfinite);
                    CHECKF(w <= 1.0, "%s K=%lld unaligned X, rows from 1, T=%lld: %.2f x the bound",
                           g4_dtype_name(t), (long long)K, (long long)T, w);
                    g4_free(r1);
                }
            }
            g4_cu_free(cu, dW);
            g4_cu_free(cu, dX);
            g4_cu_free(cu, dY);
            g4_free(wf);
            g4_free(wd);
            g4_free(X);
            g4_free(Y);
            g4_free(Yc);
            g4_free(ref);
            g4_free(wq);
        }
        printf("  %-5s %3d calls: worst error / bound: f32 kernels %.3f, tensor cores %.3f, vs g4_matmul_ref %.3f\n",
               g4_dtype_name(t), calls, worst_mv, worst_tc, worst_cpu);
        CHECKF(nonfinite == 0, "%s: %d outputs not finite", g4_dtype_name(t), nonfinite);
        CHECKF(outside == 0, "%s: %d stores outside the N columns", g4_dtype_name(t), outside);
    }
    /* refused: a type without kernels, K not whole blocks */
    CHECK(g4_cu_matmul(cu, G4_DTYPE_Q2_K, NULL, 84, 256, 1, NULL, 256, 1, NULL, 1, &err) == G4_ERR_RANGE);
    CHECK(g4_cu_matmul(cu, G4_DTYPE_Q4_K, NULL, 144, 200, 1, NULL, 200, 1, NULL, 1, &err) == G4_ERR_RANGE);
    const char *b = getenv("G4_CUDA_MM_BENCH");
    if (b && *b && *b != '0') s_bench(cu);
    g4_cu_close(&cu);
    return 0;
#endif
}
