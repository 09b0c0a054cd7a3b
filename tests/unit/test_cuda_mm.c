/* Tests of the CUDA matmul (core/cuda/g4_cuda_mm.cu):
 *   cuda_quant  no device needed: the kernels' code run on the host.
 *               (1) the weight decoding (g4_cu_dequant_row_host) gives
 *               g4_dequant_row's bits for every type the backend takes, on
 *               quantized rows and on rows of random bytes;
 *               (2) the activation conversion (g4_cu_quantize_act_host)
 *               gives the CPU's from_float_ref bytes: random rows, huge,
 *               tiny, subnormal, zero and -0 rows, ties (x·127/amax on .5,
 *               Q8_K's first max of equal |x|), infs and NaNs;
 *               (3) each block's term (g4_cu_block_dots_host, the matrix ×
 *               vector kernels' per-unit code) equals the CPU's vec_dot_ref
 *               over that block, bit for bit;
 *               (4) the whole default path (g4_cu_matmul_host: the
 *               kernels thread by thread, the mma instructions emulated from
 *               their PTX fragment layouts) against g4_matmul_ref: the same
 *               bits (float weights with T <= 8, whose lanes add partial
 *               double sums: within 1e-5 of the row's max |y| + 1e-6).
 *   cuda_mm     on a device: g4_cu_matmul. Default path: against
 *               g4_matmul_ref, per row |gpu - ref| <= 1e-5·max|ref| + 1e-6
 *               for all T, and against g4_cu_matmul_host (the same code on
 *               the host: the same bits expected); rows of 1e6s, 1e-6s, a
 *               NaN and an inf in X, stores only inside N, unaligned X, a
 *               row slice at an odd row. With G4_CUDA_MM=fast: the earlier
 *               kernels against the product of the dequantized weights with X
 *               in double (1e-3 of the row's max |y| for T <= 8, 4e-3 on the
 *               f16 tensor cores) and against g4_matmul_ref (3e-2).
 * Both skip (77) in a build without the CUDA backend. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_cuda.h"
#include "g4_dot.h"
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

static int s_is_float_type(g4_dtype_t t) { return t == G4_DTYPE_F32 || t == G4_DTYPE_F16 || t == G4_DTYPE_BF16; }

/* W as a g4_tensor of N rows (for g4_matmul_ref) */
static g4_tensor_t s_tensor(g4_dtype_t t, const void *w, int64_t K, int64_t N, uint64_t rb)
{
    g4_tensor_t W = {.name = "w", .data = (void *)w, .dtype = t, .n_dims = 2, .ne = {K, N, 1, 1}};
    W.nb[0] = g4_dtype_traits(t)->type_size;
    W.nb[1] = rb;
    W.nb[2] = W.nb[3] = rb * (uint64_t)N;
    return W;
}

/* Y = g4_matmul_ref(W, X) (ldy apart) */
static int s_ref(g4_dtype_t t, const void *w, uint64_t rb, int64_t K, int64_t N, const float *X, int64_t ldx, int64_t T,
                 float *Y, int64_t ldy)
{
    g4_tensor_t W = s_tensor(t, w, K, N, rb);
    void *scr = g4_malloc_aligned(g4_matmul_scratch_bytes(t, K, T) + 64, 64);
    if (!scr) return -1;
    const int rc = g4_matmul_ref(&W, 0, N, X, ldx, T, Y, ldy, scr);
    g4_free_aligned(scr);
    return rc;
}

/* worst over rows t < T of max_n |y - ref| / (1e-5·max_n |ref| + 1e-6) (<= 1
 * passes; outputs the CPU has as NaN or inf must be the same there), and
 * the count of outputs whose bits differ */
static double s_worst_ref(const float *Y, int64_t ldy, const float *R, int64_t ldr, int64_t N, int64_t T, long *nbits)
{
    double worst = 0;
    for (int64_t t = 0; t < T; t++) {
        double m = 0;
        for (int64_t n = 0; n < N; n++)
            if (isfinite(R[t * ldr + n])) m = fmax(m, fabs(R[t * ldr + n]));
        const double bound = 1e-5 * m + 1e-6;
        for (int64_t n = 0; n < N; n++) {
            const float y = Y[t * ldy + n], r = R[t * ldr + n];
            if (!s_same(y, r)) (*nbits)++;
            if (!isfinite(r) || !isfinite(y)) {
                if (!s_same(y, r) && !(y == r)) worst = INFINITY;
                continue;
            }
            worst = fmax(worst, fabs((double)y - r) / bound);
        }
    }
    return worst;
}

/* one row of X in mode m (ties: the row's |max| is 127 and the rest k + 0.5) */
static void s_act_row(float *x, int64_t K, int mode, uint64_t *rs)
{
    static const float sc[] = {1.f, 1e6f, 1e-6f, 1e-39f, 3e30f};
    for (int64_t i = 0; i < K; i++) x[i] = g4_test_randn(rs) * (mode < 5 ? sc[mode] : 1.f);
    if (mode == 5) /* zeros, some -0, one block of zeros and a lone value */
        for (int64_t i = 0; i < K; i++) x[i] = (i % 3 == 0) ? -0.0f : (i < K / 2 ? 0.f : (i % 97 == 5 ? 1e-3f : 0.f));
    if (mode == 6) /* ties: amax 127 (d = 1, id = 1; Q8_K iscale -1 or 1), halves */
        for (int64_t i = 0; i < K; i++) {
            const int k = (int)(g4_test_rand(rs) % 253) - 126;
            x[i] = (i % 32 == 7) ? 127.f : (i % 32 == 3 ? -127.f : (float)k + (k < 0 ? -0.5f : 0.5f));
        }
    if (mode == 7) /* not finite: an inf, a NaN, -inf in some blocks */
        for (int64_t i = 0; i < K; i++) {
            if (i % 300 == 17) x[i] = INFINITY;
            if (i % 300 == 101) x[i] = NAN;
            if (i % 700 == 333) x[i] = -INFINITY;
        }
}
#define S_ACT_MODES 8

#endif

#ifdef G4_HAVE_CUDA
/* (1) the weight decoding */
static void s_quant_dequant(const g4_dtype_t *types, int nt)
{
    uint64_t rs = 29;
    const int64_t KMAX = 4096, R = 7;
    float *wf = g4_malloc((size_t)(KMAX * R) * 4), *ref = g4_malloc((size_t)KMAX * 4),
          *got = g4_malloc((size_t)KMAX * 4);
    uint8_t *wq = g4_malloc((size_t)(KMAX * R) * 4 + 64);
    if (!(wf && ref && got && wq)) {
        CHECK(!"out of memory");
        return;
    }
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
                    g4_quant_rows(t, wf, wq, R, K);
                } else { /* random bytes */
                    for (uint64_t i = 0; i < rb * (uint64_t)R; i++) wq[i] = (uint8_t)g4_test_rand(&rs);
                }
                for (int64_t r = 0; r < R; r++) {
                    const uint8_t *row = wq + (uint64_t)r * rb; /* rows at their GGUF offsets (Q6_K: 2 mod 4) */
                    if (g4_dequant_row(t, row, ref, K) != 0) continue;
                    for (int64_t i = 0; i < K; i++) got[i] = -12345.f;
                    CHECK(g4_cu_dequant_row_host(t, row, got, K) == G4_OK);
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
        printf("  %-5s dequant: %ld rows (%d sizes, quantized and random bytes): %ld differ from g4_dequant_row\n",
               g4_dtype_name(t), n_rows, nk, n_bad);
        CHECKF(n_bad == 0, "%s: %ld rows differ", g4_dtype_name(t), n_bad);
        if (qk > 1) CHECK(g4_cu_dequant_row_host(t, wq, got, qk + 1) == G4_ERR_RANGE); /* K not whole blocks */
    }
    CHECK(g4_cu_dequant_row_host(G4_DTYPE_Q2_K, wq, got, 256) == G4_ERR_RANGE);
    CHECK(g4_cu_dequant_row_host(G4_DTYPE_Q8_K, wq, got, 256) == G4_ERR_RANGE);
    g4_free(wf);
    g4_free(ref);
    g4_free(got);
    g4_free(wq);
}

/* (2) the activation conversion against from_float_ref (and, informative,
 * the SIMD from_float g4_matmul uses) */
static void s_quant_act(const g4_dtype_t *types, int nt)
{
    uint64_t rs = 31;
    const int64_t KMAX = 4096;
    float *x = g4_malloc((size_t)KMAX * 4);
    uint8_t *cpu = g4_malloc((size_t)KMAX * 4 + 64), *simd = g4_malloc((size_t)KMAX * 4 + 64),
            *got = g4_malloc((size_t)KMAX * 4 + 64);
    if (!(x && cpu && simd && got)) {
        CHECK(!"out of memory");
        return;
    }
    for (int ti = 0; ti < nt; ti++) {
        const g4_dtype_t t = types[ti];
        const g4_type_ops_t *ops = g4_type_ops(t);
        if (!ops) continue;
        const int64_t qk = g4_dtype_traits(ops->act_type)->block_size;
        const int64_t Ks[3] = {qk == 1 ? 7 : qk, qk == 1 ? 1000 : 4 * qk, qk == 256 ? 4096 : 4064};
        long rows = 0, bad = 0, simd_diff = 0;
        for (int ki = 0; ki < 3; ki++) {
            const int64_t K = Ks[ki];
            const size_t bytes = (size_t)g4_dtype_row_bytes(ops->act_type, (uint64_t)K);
            for (int mode = 0; mode < S_ACT_MODES; mode++)
                for (int rep = 0; rep < 3; rep++) {
                    s_act_row(x, K, mode, &rs);
                    memset(cpu, 0xA5, bytes);
                    memset(got, 0x5A, bytes);
                    ops->from_float_ref(x, cpu, K);
                    memcpy(simd, cpu, bytes);
                    ops->from_float(x, simd, K);
                    CHECK(g4_cu_quantize_act_host(t, x, got, K) == G4_OK);
                    rows++;
                    if (memcmp(cpu, got, bytes)) {
                        size_t i = 0;
                        while (cpu[i] == got[i]) i++;
                        if (bad++ < 5)
                            fprintf(stderr, "  %s -> %s K=%lld mode %d: byte %zu of %zu: cpu %02x, cuda host %02x\n",
                                    g4_dtype_name(t), g4_dtype_name(ops->act_type), (long long)K, mode, i, bytes, cpu[i],
                                    got[i]);
                    }
                    if (mode != 7 && memcmp(simd, cpu, bytes)) simd_diff++;
                }
        }
        printf("  %-5s activations as %-4s: %ld rows (%d kinds, ties, -0, inf, NaN): %ld differ from from_float_ref "
               "(%ld finite rows where the CPU's SIMD from_float differs from its ref)\n",
               g4_dtype_name(t), g4_dtype_name(ops->act_type), rows, S_ACT_MODES, bad, simd_diff);
        CHECKF(bad == 0, "%s: %ld activation rows differ from the CPU's", g4_dtype_name(t), bad);
        if (qk > 1) CHECK(g4_cu_quantize_act_host(t, x, got, qk + (qk == 256 ? 32 : 1)) == G4_ERR_RANGE);
    }
    CHECK(g4_cu_quantize_act_host(G4_DTYPE_Q2_K, x, got, 256) == G4_ERR_RANGE);
    g4_free(x);
    g4_free(cpu);
    g4_free(simd);
    g4_free(got);
}

/* (3) per block: the kernels' term against vec_dot_ref over the one block */
static void s_quant_blocks(const g4_dtype_t *types, int nt)
{
    uint64_t rs = 37;
    const int64_t K = 4096, R = 6;
    float *wf = g4_malloc((size_t)K * 4), *x = g4_malloc((size_t)K * 4), *terms = g4_malloc((size_t)K * 4);
    uint8_t *wq = g4_malloc((size_t)K * 4 + 64), *act = g4_malloc((size_t)K * 4 + 64);
    if (!(wf && x && terms && wq && act)) {
        CHECK(!"out of memory");
        return;
    }
    for (int ti = 0; ti < nt; ti++) {
        const g4_dtype_t t = types[ti];
        if (s_is_float_type(t)) {
            CHECK(g4_cu_block_dots_host(t, wq, act, 32, terms) == G4_ERR_RANGE);
            continue;
        }
        const g4_type_ops_t *ops = g4_type_ops(t);
        const int64_t qk = g4_dtype_traits(t)->block_size, nb = K / qk;
        const size_t wb = g4_dtype_traits(t)->type_size, ab = (size_t)g4_dtype_row_bytes(ops->act_type, (uint64_t)qk);
        long blocks = 0, bad = 0;
        for (int64_t r = 0; r < 2 * R; r++) {
            if (r < R) { /* quantized weights of a few scales */
                const float sc = r == 0 ? 1.f : (r == 1 ? 0.05f : (r == 2 ? 1e-4f : (r == 3 ? 300.f : 0.02f)));
                for (int64_t i = 0; i < K; i++) wf[i] = g4_test_randn(&rs) * sc;
                if (r == 5)
                    for (int64_t i = 0; i < K; i++) wf[i] = fabsf(wf[i]) + 0.01f;
                g4_quant_row(t, wf, wq, K);
            } else /* random bytes: every field, any scale */
                for (size_t i = 0; i < wb * (size_t)nb; i++) wq[i] = (uint8_t)g4_test_rand(&rs);
            for (int mode = 0; mode < S_ACT_MODES; mode++) {
                s_act_row(x, K, mode, &rs);
                ops->from_float_ref(x, act, K);
                for (int64_t b = 0; b < nb; b++) terms[b] = -12345.f;
                CHECK(g4_cu_block_dots_host(t, wq, act, K, terms) == G4_OK);
                for (int64_t b = 0; b < nb; b++) {
                    float s = 0.f;
                    ops->vec_dot_ref(qk, &s, wq + (size_t)b * wb, act + (size_t)b * ab); /* s = 0 + term */
                    blocks++;
                    if (!(s == terms[b] || (s != s && terms[b] != terms[b]))) {
                        if (bad++ < 5)
                            fprintf(stderr, "  %s block %lld (weights %s, activations mode %d): cpu %.9g, cuda host %.9g\n",
                                    g4_dtype_name(t), (long long)b, r < R ? "quantized" : "random bytes", mode, s,
                                    terms[b]);
                    }
                }
            }
        }
        printf("  %-5s block terms: %ld blocks: %ld differ from vec_dot_ref\n", g4_dtype_name(t), blocks, bad);
        CHECKF(bad == 0, "%s: %ld block terms differ", g4_dtype_name(t), bad);
        CHECK(g4_cu_block_dots_host(t, wq, act, qk + 16, terms) == G4_ERR_RANGE); /* not whole blocks */
    }
    g4_free(wf);
    g4_free(x);
    g4_free(terms);
    g4_free(wq);
    g4_free(act);
}

/* (4) the whole default path on the host against g4_matmul_ref */
static void s_quant_matmul(const g4_dtype_t *types, int nt)
{
    uint64_t rs = 43;
    const int64_t N = 70, TMAX = 130, LDY = N + 5;
    for (int ti = 0; ti < nt; ti++) {
        const g4_dtype_t t = types[ti];
        const int64_t qk = g4_dtype_traits(t)->block_size;
        int64_t Ks[2];
        if (qk == 1) Ks[0] = 40, Ks[1] = 704; /* 40: not whole 32s (element loads) */
        else if (qk == 32) Ks[0] = 96, Ks[1] = 704;
        else Ks[0] = 768, Ks[1] = 2048;
        double worst_mv = 0, worst_mm = 0;
        long bits_mv = 0, bits_mm = 0, outs_mv = 0, outs_mm = 0;
        for (int ki = 0; ki < 2; ki++) {
            const int64_t K = Ks[ki], LDX = K + 3;
            const uint64_t rb = g4_dtype_row_bytes(t, (uint64_t)K);
            float *wf = g4_malloc((size_t)(K * N) * 4), *X = g4_malloc((size_t)(LDX * TMAX) * 4);
            float *Y = g4_malloc((size_t)(LDY * TMAX) * 4), *R = g4_malloc((size_t)(N * TMAX) * 4);
            uint8_t *wq = g4_malloc(rb * (uint64_t)N + 64);
            if (!(wf && X && Y && R && wq)) {
                CHECK(!"out of memory");
                return;
            }
            for (int64_t i = 0; i < K * N; i++) wf[i] = g4_test_randn(&rs) * 0.05f;
            g4_quant_rows(t, wf, wq, N, K);
            for (int64_t i = 0; i < LDX * TMAX; i++) X[i] = g4_test_randn(&rs);
            for (int64_t k = 0; k < K; k++) X[5 * LDX + k] *= 1e6f, X[6 * LDX + k] *= 1e-6f, X[2 * LDX + k] = 0.f;
            X[9 * LDX + K / 3] = NAN;      /* a NaN in a prefill row: the CPU's Q8 formats take it as 0 */
            X[3 * LDX + K / 2] = INFINITY; /* an inf in a decode row */
            const int64_t Ts[] = {1, 3, 8, 9, 40, TMAX};
            for (int ri = 0; ri < 6; ri++) {
                const int64_t T = Ts[ri];
                if (s_ref(t, wq, rb, K, N, X, LDX, T, R, N) != 0) {
                    CHECK(!"g4_matmul_ref failed");
                    continue;
                }
                for (int64_t i = 0; i < LDY * T; i++) Y[i] = -777.f;
                CHECK(g4_cu_matmul_host(t, wq, rb, K, N, X, LDX, T, Y, LDY) == G4_OK);
                long nb = 0;
                const double w = s_worst_ref(Y, LDY, R, N, N, T, &nb);
                if (T <= 8) worst_mv = fmax(worst_mv, w), bits_mv += nb, outs_mv += N * T;
                else worst_mm = fmax(worst_mm, w), bits_mm += nb, outs_mm += N * T;
                CHECKF(w <= 1.0, "%s K=%lld T=%lld: host run of the kernels vs g4_matmul_ref: %.3g x the bound",
                       g4_dtype_name(t), (long long)K, (long long)T, w);
                /* the same bits (float weights, T <= 8: the lanes' partial double sums, the same f32
                 * unless they and the CPU's straddle an f32 rounding boundary: not required) */
                if (T > 8 || !s_is_float_type(t))
                    CHECKF(nb == 0, "%s K=%lld T=%lld: %ld outputs not g4_matmul_ref's bits", g4_dtype_name(t), (long long)K,
                           (long long)T, nb);
            }
            /* float weights at an odd 2-byte offset (the element loads) */
            if (s_is_float_type(t) && t != G4_DTYPE_F32) {
                uint8_t *w2 = g4_malloc(rb * (uint64_t)N + 64);
                if (w2) {
                    memcpy(w2 + 2, wq, rb * (uint64_t)N);
                    for (int ri = 0; ri < 2; ri++) {
                        const int64_t T = ri ? 17 : 3;
                        long nb = 0;
                        s_ref(t, wq, rb, K, N, X, LDX, T, R, N);
                        CHECK(g4_cu_matmul_host(t, w2 + 2, rb, K, N, X, LDX, T, Y, LDY) == G4_OK);
                        const double w = s_worst_ref(Y, LDY, R, N, N, T, &nb);
                        CHECKF(w <= 1.0, "%s unaligned rows T=%lld: %.3g x the bound", g4_dtype_name(t), (long long)T, w);
                    }
                    g4_free(w2);
                }
            }
            g4_free(wf);
            g4_free(X);
            g4_free(Y);
            g4_free(R);
            g4_free(wq);
        }
        printf("  %-5s host run of the kernels vs g4_matmul_ref: T <= 8 worst %.3f of the bound, %ld of %ld outputs "
               "not the same bits; T > 8 worst %.3f, %ld of %ld not the same bits\n",
               g4_dtype_name(t), worst_mv, bits_mv, outs_mv, worst_mm, bits_mm, outs_mm);
    }
    float y = 0.f, xx = 0.f;
    CHECK(g4_cu_matmul_host(G4_DTYPE_Q4_K, &y, 144, 200, 1, &xx, 200, 1, &y, 1) == G4_ERR_RANGE);
    CHECK(g4_cu_matmul_host(G4_DTYPE_Q2_K, &y, 84, 256, 1, &xx, 256, 1, &y, 1) == G4_ERR_RANGE);
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
    s_quant_dequant(types, nt);
    s_quant_act(types, nt);
    s_quant_blocks(types, nt);
    s_quant_matmul(types, nt);
    return 0;
#endif
}

#ifdef G4_HAVE_CUDA

/* the fast path's bound: worst |y - ref| / (tol·max_n |ref[t]| + 1e-4·min(1,
 * max_n |ref[t]|)) over the T × N outputs (<= 1 passes); reference values
 * that are not finite are skipped */
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
            if (!isfinite(ref[t * ldr + n])) continue;
            if (!isfinite(y)) {
                (*nonfinite)++;
                worst = INFINITY;
                continue;
            }
            worst = fmax(worst, fabs(y - ref[t * ldr + n]) / bound);
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
        float *row = g4_malloc((size_t)K * 4);
        if (!hw || !hx || !row) {
            g4_free(hw), g4_free(hx), g4_free(row);
            return;
        }
        uint64_t rs = 5;
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
    const char *mm = getenv("G4_CUDA_MM");
    const int fast = mm && strcmp(mm, "fast") == 0;
    {
        char name[256] = "";
        size_t fr = 0, tot = 0;
        g4_cu_device_info(0, name, sizeof name, &fr, &tot, &err);
        printf("cuda_mm: device 0: %s; %s path\n", name, fast ? "the fast (G4_CUDA_MM=fast)" : "the default (the CPU's arithmetic)");
    }
    g4_dtype_t types[G4_DTYPE_COUNT];
    const int nt = s_ok_types(types);
    const int64_t NMAX = 300, TMAX = 130, Ns[] = {1, 7, 33, 300}, Ts[] = {1, 2, 3, 5, 8, 9, 17, 64, 130};
    const int64_t LDY = NMAX + 3, NE = 70; /* NE: rows checked against the host run of the kernels */
    uint64_t rs = 41;
    for (int ti = 0; ti < nt; ti++) {
        const g4_dtype_t t = types[ti];
        const int64_t qk = g4_dtype_traits(t)->block_size;
        int64_t Ks[4];
        int nk = 0;
        if (qk == 1) Ks[nk++] = 32, Ks[nk++] = 96, Ks[nk++] = 40 /* not 32s: the element loads */, Ks[nk++] = 1344;
        else if (qk == 32) Ks[nk++] = 32, Ks[nk++] = 96, Ks[nk++] = 704;
        else Ks[nk++] = 256, Ks[nk++] = 768, Ks[nk++] = 2816;
        double worst_mv = 0, worst_tc = 0, worst_cpu = 0;
        long bits_mv = 0, bits_tc = 0, outs_mv = 0, outs_tc = 0, emu_diff = 0;
        int nonfinite = 0, outside = 0, calls = 0;
        for (int ki = 0; ki < nk; ki++) {
            const int64_t K = Ks[ki], LDX = K + 4;
            const uint64_t rb = g4_dtype_row_bytes(t, (uint64_t)K);
            float *wf = g4_malloc((size_t)(K * NMAX) * 4), *wd = g4_malloc((size_t)(K * NMAX) * 4);
            float *X = g4_malloc((size_t)(LDX * TMAX) * 4 + 16), *Y = g4_malloc((size_t)(LDY * TMAX) * 4);
            float *Yc = g4_malloc((size_t)(NMAX * TMAX) * 4), *Ye8 = g4_malloc((size_t)(NE * 8) * 4),
                  *Ye = g4_malloc((size_t)(NE * TMAX) * 4);
            double *ref = g4_malloc((size_t)(NMAX * TMAX) * 8);
            uint8_t *wq = g4_malloc(rb * NMAX);
            REQUIRE(wf && wd && X && Y && Yc && Ye8 && Ye && ref && wq);
            for (int64_t i = 0; i < K * NMAX; i++) wf[i] = g4_test_randn(&rs) * 0.05f;
            REQUIRE(g4_quant_rows(t, wf, wq, NMAX, K) == 0);
            for (int64_t n = 0; n < NMAX; n++) REQUIRE(g4_dequant_row(t, wq + (uint64_t)n * rb, wd + n * K, K) == 0);
            for (int64_t i = 0; i < LDX * TMAX + 4; i++) X[i] = g4_test_randn(&rs);
            for (int64_t k = 0; k < K; k++) X[5 * LDX + k] *= 1e6f;  /* a huge row */
            for (int64_t k = 0; k < K; k++) X[6 * LDX + k] *= 1e-6f; /* a tiny one  */
            if (!fast) {
                X[10 * LDX + K / 3] = NAN;     /* the CPU's Q8 formats take a NaN as 0 (q from its bits) */
                X[4 * LDX + K / 2] = INFINITY; /* an inf: NaN outputs, the CPU's and the GPU's */
            }
            if (fast)
                for (int64_t tt = 0; tt < TMAX; tt++)
                    for (int64_t n = 0; n < NMAX; n++) {
                        double s = 0;
                        for (int64_t k = 0; k < K; k++) s += (double)wd[n * K + k] * X[tt * LDX + k];
                        ref[tt * NMAX + n] = s;
                    }
            /* the CPU's g4_matmul_ref over all rows once (each output depends on its row and column only) */
            REQUIRE(s_ref(t, wq, rb, K, NMAX, X, LDX, TMAX, Yc, NMAX) == 0);
            /* the host run of the kernels: matrix × vector (8 rows) and tensor-core tiles (all) */
            if (!fast) {
                REQUIRE(g4_cu_matmul_host(t, wq, rb, K, NE, X, LDX, 8, Ye8, NE) == 0);
                REQUIRE(g4_cu_matmul_host(t, wq, rb, K, NE, X, LDX, TMAX, Ye, NE) == 0);
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
                    for (int64_t tt = 0; tt < T; tt++)
                        for (int64_t n = N; n < LDY; n++) {
                            uint32_t u;
                            memcpy(&u, &Y[tt * LDY + n], 4);
                            outside += u != 0xFFFFFFFFu;
                        }
                    if (fast) {
                        const double w = s_worst(Y, LDY, ref, NMAX, N, T, T <= 8 ? 1e-3 : 4e-3, &nonfinite);
                        if (T <= 8) worst_mv = fmax(worst_mv, w);
                        else worst_tc = fmax(worst_tc, w);
                        CHECKF(w <= 1.0, "%s K=%lld N=%lld T=%lld: error %.2f x the bound", g4_dtype_name(t),
                               (long long)K, (long long)N, (long long)T, w);
                        double *rc2 = g4_malloc((size_t)(N * T) * 8);
                        REQUIRE(rc2);
                        for (int64_t tt = 0; tt < T; tt++)
                            for (int64_t n = 0; n < N; n++) rc2[tt * N + n] = Yc[tt * NMAX + n];
                        const double wc = s_worst(Y, LDY, rc2, N, N, T, 3e-2, &nonfinite);
                        worst_cpu = fmax(worst_cpu, wc);
                        CHECKF(wc <= 1.0, "%s K=%lld N=%lld T=%lld vs g4_matmul_ref: %.2f x the bound",
                               g4_dtype_name(t), (long long)K, (long long)N, (long long)T, wc);
                        g4_free(rc2);
                        continue;
                    }
                    long nb = 0;
                    const double w = s_worst_ref(Y, LDY, Yc, NMAX, N, T, &nb);
                    if (T <= 8) worst_mv = fmax(worst_mv, w), bits_mv += nb, outs_mv += N * T;
                    else worst_tc = fmax(worst_tc, w), bits_tc += nb, outs_tc += N * T;
                    CHECKF(w <= 1.0, "%s K=%lld N=%lld T=%lld vs g4_matmul_ref: %.3g x the bound (1e-5 max|y| + 1e-6)",
                           g4_dtype_name(t), (long long)K, (long long)N, (long long)T, w);
                    /* the same code on the host: the same bits */
                    const float *E = T <= 8 ? Ye8 : Ye;
                    long ne = 0;
                    for (int64_t tt = 0; tt < T; tt++)
                        for (int64_t n = 0; n < (N < NE ? N : NE); n++) ne += !s_same(Y[tt * LDY + n], E[tt * NE + n]);
                    emu_diff += ne;
                    CHECKF(ne == 0, "%s K=%lld N=%lld T=%lld: %ld outputs differ from the host run of the same kernels",
                           g4_dtype_name(t), (long long)K, (long long)N, (long long)T, ne);
                }
            }
            /* X not 16-byte aligned (the fast path packs it) and a slice from row 1 (Q6_K: 2 mod 4) */
            {
                const int64_t N = 33;
                const int64_t Tsl[] = {1, 3, 8, 17};
                float *R1 = g4_malloc((size_t)(N * 17) * 4);
                REQUIRE(R1);
                for (int i = 0; i < 4; i++) {
                    const int64_t T = Tsl[i];
                    const int rc = g4_cu_matmul(cu, t, (uint8_t *)dW + rb, rb, K, N, dX + 1, LDX, T, dY, LDY, &err);
                    CHECKF(rc == 0, "%s unaligned X T=%lld: %s", g4_dtype_name(t), (long long)T, err.msg);
                    REQUIRE(g4_cu_d2h(cu, Y, dY, (size_t)(LDY * T) * 4) == 0);
                    REQUIRE(g4_cu_sync(cu, &err) == 0);
                    if (fast) {
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
                    } else {
                        REQUIRE(s_ref(t, wq + rb, rb, K, N, X + 1, LDX, T, R1, N) == 0);
                        long nb = 0;
                        const double w = s_worst_ref(Y, LDY, R1, N, N, T, &nb);
                        CHECKF(w <= 1.0, "%s K=%lld unaligned X, rows from 1, T=%lld vs g4_matmul_ref: %.3g x the bound",
                               g4_dtype_name(t), (long long)K, (long long)T, w);
                    }
                }
                g4_free(R1);
            }
            g4_cu_free(cu, dW);
            g4_cu_free(cu, dX);
            g4_cu_free(cu, dY);
            g4_free(wf);
            g4_free(wd);
            g4_free(X);
            g4_free(Y);
            g4_free(Yc);
            g4_free(Ye8);
            g4_free(Ye);
            g4_free(ref);
            g4_free(wq);
        }
        if (fast)
            printf("  %-5s %3d calls: worst error / bound: f32 kernels %.3f, tensor cores %.3f, vs g4_matmul_ref %.3f\n",
                   g4_dtype_name(t), calls, worst_mv, worst_tc, worst_cpu);
        else
            printf("  %-5s %3d calls vs g4_matmul_ref: T <= 8 worst %.3f of the bound, %ld of %ld outputs not the same "
                   "bits; T > 8 worst %.3f, %ld of %ld not the same bits; %ld differ from the host run\n",
                   g4_dtype_name(t), calls, worst_mv, bits_mv, outs_mv, worst_tc, bits_tc, outs_tc, emu_diff);
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
