/* Tests of the CUDA backend's layer kernels (core/cuda/g4_cuda_ops.cu)
 * against their CPU twins on random inputs of odd sizes and strides:
 * RMS norm (n = 1..5376, in place, fused with the residual add), scale,
 * soft-cap, GELU / GeGLU around ±10 and 0, products, NEOX RoPE (with and
 * without frequency factors, n_rot < hd, positions up to 123457), the KV
 * row write (F16 rounding, ring cells), attention (heads of 256 and 512 and
 * generic sizes, 1 to 32 query heads per KV head, F16 and F32 caches,
 * ranges of 1, 100 and 3000 positions, ring wrap-around, 37 rows of nine
 * sequences in one call, empty ranges, output over the query), the MoE
 * combine, row gather / scatter. Tolerance: relative 1e-4 (GELU: or one f16
 * step, since CUDA's tanhf and libm's may round an ulp apart before the f16
 * rounding), attention 1e-3 of the output vector's largest element against
 * g4_attn_ref (double). Attention in the CPU's order (g4_cu_attention_rows)
 * against the CPU kernels themselves (g4_attn_f16_g, g4_attn_f32) on rows
 * of both kinds in one call: views in cache order, wrapped rings with empty
 * cells, scattered positions, lo > 0, splits 1, 4, 64 and 100 (folded by
 * one block), heads of 96, 256 and 512, 1 to 8 query heads per KV head, F16
 * and F32 caches; tolerance 1e-5 of the largest output (f32 kernel) or one
 * f16 step of the output (single-query kernel), the bit-identical share
 * printed (the emulation gives all). SKIP without the backend or a device.
 *
 * test_cuda_none runs everywhere: the device count without a crash, and
 * without a device g4_cu_open fails cleanly with a message. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "g4_act.h"
#include "g4_attn.h"
#include "g4_cuda.h"
#include "g4_dot.h"
#include "g4_dtype.h"
#include "g4_norm.h"
#include "g4_rope.h"
#include "g4_test.h"

int test_cuda_none(void)
{
    const int n = g4_cu_device_count();
    CHECK(n >= 0);
    char name[128] = "";
    size_t fr = 0, tot = 0;
    g4_err_t err;
    if (!g4_cu_available()) {
        CHECK(n == 0);
        g4_err_clear(&err);
        CHECK(g4_cu_device_info(0, name, sizeof name, &fr, &tot, &err) != G4_OK && err.msg[0]);
        return 0;
    }
#ifdef G4_HAVE_CUDA
    g4_err_clear(&err);
    CHECK(g4_cu_open(-1, &err) == NULL && err.code != G4_OK && err.msg[0]);
    g4_err_clear(&err);
    CHECK(g4_cu_open(n, &err) == NULL && err.code != G4_OK && err.msg[0]); /* one past the last */
    g4_err_clear(&err);
    CHECK(g4_cu_device_info(n, name, sizeof name, &fr, &tot, &err) != G4_OK && err.msg[0]);
    if (n == 0) {
        printf("  no device: %s\n", err.msg);
        return 0;
    }
    g4_err_clear(&err);
    CHECKF(g4_cu_device_info(0, name, sizeof name, &fr, &tot, &err) == G4_OK && name[0] && tot > 0 && fr <= tot, "%s",
           err.msg);
    g4_cu_t *cu = g4_cu_open(0, &err);
    CHECKF(cu != NULL, "%s", err.msg);
    if (cu) {
        CHECK(g4_cu_device(cu) == 0);
        CHECK(g4_cu_sync(cu, &err) == G4_OK);
        g4_cu_close(&cu);
        CHECK(cu == NULL);
    }
#endif
    return 0;
}

#ifndef G4_HAVE_CUDA
int test_cuda_ops(void)
{
    printf("SKIP: built without the CUDA backend\n");
    return G4_TEST_SKIP;
}
#else

static g4_cu_t *s_cu;

/* device copy of n bytes of h (NULL h: zeroed) */
static void *s_up(const void *h, size_t n)
{
    void *d = g4_cu_alloc(s_cu, n);
    if (d && h) CHECK(g4_cu_h2d(s_cu, d, h, n) == G4_OK);
    return d;
}

static void s_down(void *h, const void *d, size_t n)
{
    g4_err_t err;
    CHECK(g4_cu_d2h(s_cu, h, d, n) == G4_OK);
    CHECKF(g4_cu_sync(s_cu, &err) == G4_OK, "%s", err.msg);
}

static void s_rand(float *x, size_t n, float scale, uint64_t *rng)
{
    for (size_t i = 0; i < n; i++) x[i] = scale * g4_test_randn(rng);
}

/* |got - ref| <= rtol·|ref| + atol everywhere: the number of misses (printed) */
static int s_close(const char *what, const float *got, const float *ref, size_t n, double rtol, double atol)
{
    int bad = 0;
    double worst = 0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - ref[i]), lim = rtol * fabs(ref[i]) + atol;
        if (!(d <= lim)) {
            if (!bad || d - lim > worst) worst = d - lim, wi = i;
            bad++;
        }
    }
    CHECKF(!bad, "%s: %d of %zu differ; worst at %zu: %.9g, CPU %.9g", what, bad, n, wi, got[wi], ref[wi]);
    return bad;
}

static void s_rmsnorm(uint64_t *rng)
{
    static const int ns[] = {1, 2, 3, 7, 31, 32, 33, 100, 255, 256, 257, 1000, 2048, 2816, 4097, 5376};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        const int n = ns[k], R = 3, ldx = n + 3, ldy = n + 5, inplace = k % 4 == 3;
        const float eps = 1e-6f;
        float *x = malloc(sizeof(float) * R * ldx), *w = malloc(sizeof(float) * n);
        float *y = malloc(sizeof(float) * R * ldy), *ref = malloc(sizeof(float) * R * n), *got = malloc(sizeof(float) * R * n);
        s_rand(x, (size_t)R * ldx, 3.0f, rng);
        s_rand(w, n, 1.0f, rng);
        const float *wp = k % 2 ? w : NULL;
        for (int r = 0; r < R; r++) g4_rmsnorm_ref(x + r * ldx, wp, ref + r * n, n, eps);
        float *dx = s_up(x, sizeof(float) * R * ldx), *dw = s_up(w, sizeof(float) * n);
        float *dy = inplace ? dx : s_up(NULL, sizeof(float) * R * ldy);
        const int ld_out = inplace ? ldx : ldy;
        CHECK(g4_cu_rmsnorm(s_cu, dx, ldx, wp ? dw : NULL, dy, ld_out, n, R, eps) == G4_OK);
        s_down(y, dy, sizeof(float) * R * ld_out);
        for (int r = 0; r < R; r++) memcpy(got + r * n, y + r * ld_out, sizeof(float) * n);
        char what[64];
        snprintf(what, sizeof what, "rmsnorm n=%d%s%s", n, wp ? " w" : "", inplace ? " in place" : "");
        s_close(what, got, ref, (size_t)R * n, 1e-4, 1e-6);
        if (!inplace) g4_cu_free(s_cu, dy);
        g4_cu_free(s_cu, dx), g4_cu_free(s_cu, dw);
        free(x), free(w), free(y), free(ref), free(got);
    }
    /* x += rms(y)·w, and x += y */
    for (int with_w = 0; with_w < 2; with_w++) {
        const int n = 3001, R = 4, ldx = n + 1, ldy = n + 7;
        float *x = malloc(sizeof(float) * R * ldx), *y = malloc(sizeof(float) * R * ldy), *w = malloc(sizeof(float) * n);
        float *ref = malloc(sizeof(float) * R * ldx), *got = malloc(sizeof(float) * R * ldx), *t = malloc(sizeof(float) * n);
        s_rand(x, (size_t)R * ldx, 1.0f, rng);
        s_rand(y, (size_t)R * ldy, 5.0f, rng);
        s_rand(w, n, 1.0f, rng);
        memcpy(ref, x, sizeof(float) * R * ldx);
        for (int r = 0; r < R; r++) {
            if (with_w) g4_rmsnorm_ref(y + r * ldy, w, t, n, 1e-6f);
            else memcpy(t, y + r * ldy, sizeof(float) * n);
            for (int i = 0; i < n; i++) ref[r * ldx + i] += t[i];
        }
        float *dx = s_up(x, sizeof(float) * R * ldx), *dy = s_up(y, sizeof(float) * R * ldy), *dw = s_up(w, sizeof(float) * n);
        CHECK(g4_cu_add_rms(s_cu, dx, ldx, dy, ldy, with_w ? dw : NULL, n, R, 1e-6f) == G4_OK);
        s_down(got, dx, sizeof(float) * R * ldx);
        s_close(with_w ? "add_rms" : "add_rms (no weight: add)", got, ref, (size_t)R * ldx, 1e-4, 1e-6);
        g4_cu_free(s_cu, dx), g4_cu_free(s_cu, dy), g4_cu_free(s_cu, dw);
        free(x), free(y), free(w), free(ref), free(got), free(t);
    }
}

static void s_elementwise(uint64_t *rng)
{
    /* scale, softcap */
    {
        const int n = 262147;
        float *x = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
        s_rand(x, n, 40.0f, rng);
        float *dx = s_up(x, sizeof(float) * n);
        CHECK(g4_cu_softcap(s_cu, dx, n, 30.0f) == G4_OK);
        s_down(got, dx, sizeof(float) * n);
        memcpy(ref, x, sizeof(float) * n);
        g4_softcap(ref, n, 30.0f);
        s_close("softcap", got, ref, n, 1e-4, 1e-5);
        CHECK(g4_cu_scale(s_cu, dx, 10007, 0.37f) == G4_OK);
        s_down(got, dx, sizeof(float) * n);
        for (int i = 0; i < n; i++) ref[i] = i < 10007 ? ref[i] * 0.37f : ref[i];
        s_close("scale", got, ref, n, 1e-6, 0);
        g4_cu_free(s_cu, dx);
        free(x), free(ref), free(got);
    }
    /* GELU and GeGLU: the cut-offs, around 0, f16 subnormals, random */
    {
        static const float sp[] = {-10.001f, -10.0f, -9.999f, -9.99f, -5.0f, -1.0f, -1e-3f, -1e-5f, -6e-8f, -0.0f, 0.0f,
                                   1e-8f,    6e-8f,  3e-7f,   1e-5f,  1e-3f, 0.5f,  1.0f,   3.0f,  9.99f, 9.999f, 10.0f,
                                   10.001f,  70000.0f, -70000.0f};
        const int nsp = (int)(sizeof sp / sizeof sp[0]), n = 6007;
        float *x = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n);
        float *got = malloc(sizeof(float) * n), *gl = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++)
            x[i] = i < nsp ? sp[i] : i % 3 ? 12.0f * g4_test_randf(rng) : 1e-3f * g4_test_randn(rng);
        s_rand(g, n, 1.0f, rng);
        float *dx = s_up(x, sizeof(float) * n), *dg = s_up(g, sizeof(float) * n), *dy = s_up(NULL, sizeof(float) * n);
        g4_gelu_ref(x, gl, n);
        for (int with_g = 0; with_g < 2; with_g++) {
            if (with_g) g4_geglu_ref(x, g, ref, n);
            else memcpy(ref, gl, sizeof(float) * n);
            CHECK(g4_cu_geglu(s_cu, dx, with_g ? dg : NULL, dy, n) == G4_OK);
            s_down(got, dy, sizeof(float) * n);
            int bad = 0, steps = 0;
            for (int i = 0; i < n; i++) {
                const double d = fabs((double)got[i] - ref[i]);
                if (d <= 1e-4 * fabs(ref[i]) + 1e-30) continue;
                /* one f16 step of the GELU value (times g) is the tanhf ulp showing through */
                const int table = x[i] > -10.0f && x[i] < 10.0f;
                const g4_fp16_t h = g4_fp32_to_fp16(fabsf(gl[i]));
                const double step = (double)g4_fp16_to_fp32((g4_fp16_t)(h + 1)) - g4_fp16_to_fp32(h);
                if (table && d <= step * (with_g ? fabs(g[i]) : 1.0) * 1.001) {
                    steps++;
                    continue;
                }
                if (!bad) fprintf(stderr, "  gelu x=%.9g g=%.9g: GPU %.9g CPU %.9g\n", x[i], g[i], got[i], ref[i]);
                bad++;
            }
            CHECKF(!bad && steps <= n / 100, "%s: %d differ, %d by one f16 step", with_g ? "geglu" : "gelu", bad, steps);
        }
        /* in place */
        CHECK(g4_cu_geglu(s_cu, dx, dg, dx, n) == G4_OK);
        s_down(got, dx, sizeof(float) * n);
        int same = 0;
        for (int i = 0; i < n; i++) same += fabs((double)got[i] - ref[i]) <= 1e-2 * fabs(ref[i]) + 1e-6;
        CHECKF(same == n, "geglu in place: %d of %d", same, n);
        g4_cu_free(s_cu, dx), g4_cu_free(s_cu, dg), g4_cu_free(s_cu, dy);
        free(x), free(g), free(ref), free(got), free(gl);
    }
    /* mul over strided rows */
    {
        const int n = 1001, R = 3, ldx = 1003, ldg = 1010, ldy = 1001;
        float *x = malloc(sizeof(float) * R * ldx), *g = malloc(sizeof(float) * R * ldg);
        float *ref = malloc(sizeof(float) * R * ldy), *got = malloc(sizeof(float) * R * ldy);
        s_rand(x, (size_t)R * ldx, 2.0f, rng), s_rand(g, (size_t)R * ldg, 2.0f, rng);
        for (int r = 0; r < R; r++)
            for (int i = 0; i < n; i++) ref[r * ldy + i] = x[r * ldx + i] * g[r * ldg + i];
        float *dx = s_up(x, sizeof(float) * R * ldx), *dg = s_up(g, sizeof(float) * R * ldg), *dy = s_up(NULL, sizeof(float) * R * ldy);
        CHECK(g4_cu_mul(s_cu, dx, ldx, dg, ldg, dy, ldy, n, R) == G4_OK);
        s_down(got, dy, sizeof(float) * R * ldy);
        s_close("mul", got, ref, (size_t)R * ldy, 1e-7, 0);
        g4_cu_free(s_cu, dx), g4_cu_free(s_cu, dg), g4_cu_free(s_cu, dy);
        free(x), free(g), free(ref), free(got);
    }
}

static void s_rope(uint64_t *rng)
{
    static const struct {
        int hd, n_rot, ff;
        float base;
    } cs[] = {{256, 256, 0, 10000.0f}, {256, 64, 0, 1000000.0f}, {256, 256, 1, 1000000.0f}, {512, 128, 1, 1000000.0f},
              {512, 512, 0, 10000.0f}};
    static const int32_t pos[] = {0, 1, 17, 1000, 30000, 123457};
    const int T = 6, nh = 3;
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int hd = cs[c].hd, n_rot = cs[c].n_rot, ld = nh * hd + 5;
        float *x = malloc(sizeof(float) * T * ld), *ref = malloc(sizeof(float) * T * ld), *got = malloc(sizeof(float) * T * ld);
        float ff[256] = {0};
        for (int i = 0; i < n_rot / 2; i++) ff[i] = 1.0f + 7.0f * (0.5f + 0.5f * g4_test_randf(rng));
        for (int i = 0; i < T * ld; i++) x[i] = g4_test_randf(rng);
        memcpy(ref, x, sizeof(float) * T * ld);
        for (int t = 0; t < T; t++) g4_rope_ref(ref + t * ld, nh, hd, n_rot, pos[t], cs[c].base, cs[c].ff ? ff : NULL);
        float *dx = s_up(x, sizeof(float) * T * ld), *dff = s_up(ff, sizeof ff);
        int32_t *dpos = s_up(pos, sizeof pos);
        CHECK(g4_cu_rope(s_cu, dx, ld, T, nh, hd, n_rot, dpos, cs[c].base, cs[c].ff ? dff : NULL) == G4_OK);
        s_down(got, dx, sizeof(float) * T * ld);
        char what[96];
        snprintf(what, sizeof what, "rope hd=%d n_rot=%d%s base=%g", hd, n_rot, cs[c].ff ? " ff" : "", cs[c].base);
        s_close(what, got, ref, (size_t)T * ld, 1e-4, 2e-5);
        int same = 1; /* dims past n_rot and the padding: untouched */
        for (int t = 0; t < T; t++)
            for (int i = 0; i < ld; i++)
                if (i >= nh * hd || i % hd >= n_rot) same &= got[t * ld + i] == x[t * ld + i];
        CHECKF(same, "%s: dimensions past n_rot changed", what);
        g4_cu_free(s_cu, dx), g4_cu_free(s_cu, dff), g4_cu_free(s_cu, dpos);
        free(x), free(ref), free(got);
    }
}

static void s_kv_store(uint64_t *rng)
{
    enum { N = 192, CELLS = 7, T = 5, LD = N + 3 };
    /* rows 0-2 into cache A, 3-4 into cache B; positions wrap the ring */
    static const int32_t pos[T] = {3, 9, 13, 1, 12};
    for (int f16 = 0; f16 < 2; f16++) {
        const size_t es = f16 ? 2 : 4, bytes = (size_t)CELLS * N * es;
        float src[T * LD];
        for (int i = 0; i < T * LD; i++) src[i] = g4_test_randn(rng);
        src[0] = 70000.0f, src[1] = -1e-7f, src[2] = 1.0f + 1.0f / 2048.0f, src[3] = 1.0f + 3.0f / 2048.0f;
        uint8_t *ca = calloc(1, bytes), *cb = calloc(1, bytes), *ga = malloc(bytes), *gb = malloc(bytes);
        for (int t = 0; t < T; t++) {
            uint8_t *row = (t < 3 ? ca : cb) + (size_t)(pos[t] % CELLS) * N * es;
            for (int i = 0; i < N; i++) {
                if (f16) ((g4_fp16_t *)row)[i] = g4_fp32_to_fp16(src[t * LD + i]);
                else ((float *)row)[i] = src[t * LD + i];
            }
        }
        void *da = s_up(NULL, bytes), *db = s_up(NULL, bytes);
        void *ptrs[T] = {da, da, da, db, db};
        void **dptrs = s_up(ptrs, sizeof ptrs);
        float *dsrc = s_up(src, sizeof src);
        int32_t *dpos = s_up(pos, sizeof pos);
        CHECK(g4_cu_kv_store(s_cu, dptrs, CELLS, f16, dsrc, LD, N, T, dpos) == G4_OK);
        s_down(ga, da, bytes), s_down(gb, db, bytes);
        CHECKF(!memcmp(ga, ca, bytes) && !memcmp(gb, cb, bytes), "kv_store %s: cache bytes differ", f16 ? "F16" : "F32");
        g4_cu_free(s_cu, da), g4_cu_free(s_cu, db), g4_cu_free(s_cu, dptrs), g4_cu_free(s_cu, dsrc), g4_cu_free(s_cu, dpos);
        free(ca), free(cb), free(ga), free(gb);
    }
}

/* One attention call: T rows, row t of sequence seq[t] (nseq caches of
 * `cells` rows), range [lo[t], hi[t]]; inplace: the output over q. */
static void s_attn_case(const char *what, int T, int n_head, int n_kv, int hd, int is_f16, int cells, int nseq,
                        const int *seq, const int32_t *lo, const int32_t *hi, int inplace, uint64_t *rng)
{
    const int G = n_head / n_kv;
    const size_t es = is_f16 ? 2 : 4, row_bytes = (size_t)n_kv * hd * es, cache_bytes = row_bytes * cells;
    const int ldq = n_head * hd + 3, ldo = inplace ? ldq : n_head * hd + 1;
    uint8_t **K = malloc(sizeof *K * nseq), **V = malloc(sizeof *V * nseq);
    void **dK = malloc(sizeof *dK * nseq), **dV = malloc(sizeof *dV * nseq);
    for (int s = 0; s < nseq; s++) {
        K[s] = malloc(cache_bytes), V[s] = malloc(cache_bytes);
        for (size_t i = 0; i < (size_t)cells * n_kv * hd; i++) {
            const float k = g4_test_randf(rng), v = g4_test_randf(rng);
            if (is_f16) ((g4_fp16_t *)K[s])[i] = g4_fp32_to_fp16(k), ((g4_fp16_t *)V[s])[i] = g4_fp32_to_fp16(v);
            else ((float *)K[s])[i] = k, ((float *)V[s])[i] = v;
        }
        dK[s] = s_up(K[s], cache_bytes), dV[s] = s_up(V[s], cache_bytes);
    }
    float *q = malloc(sizeof(float) * T * ldq), *ref = malloc(sizeof(float) * T * n_head * hd);
    float *got = malloc(sizeof(float) * T * ldo);
    s_rand(q, (size_t)T * ldq, 0.3f, rng);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_head; h++) {
            const size_t off = (size_t)(h / G) * hd * es;
            g4_attn_ref(q + (size_t)t * ldq + (size_t)h * hd, K[seq[t]] + off, V[seq[t]] + off, row_bytes, is_f16, hd, lo[t],
                        hi[t], cells, ref + ((size_t)t * n_head + h) * hd);
        }
    const void **pk = malloc(sizeof *pk * T), **pv = malloc(sizeof *pv * T);
    for (int t = 0; t < T; t++) pk[t] = dK[seq[t]], pv[t] = dV[seq[t]];
    float *dq = s_up(q, sizeof(float) * T * ldq), *dout = inplace ? dq : s_up(NULL, sizeof(float) * T * ldo);
    const void **dpk = s_up(pk, sizeof *pk * T), **dpv = s_up(pv, sizeof *pv * T);
    int32_t *dlo = s_up(lo, sizeof(int32_t) * T), *dhi = s_up(hi, sizeof(int32_t) * T);
    g4_err_t err;
    g4_err_clear(&err);
    const int rc = g4_cu_attention(s_cu, dq, ldq, T, n_head, n_kv, hd, (const void *const *)dpk, (const void *const *)dpv,
                                   cells, is_f16, dlo, dhi, dout, ldo, &err);
    CHECKF(rc == G4_OK, "%s: %s", what, err.msg);
    s_down(got, dout, sizeof(float) * T * ldo);
    double worst = 0;
    int bad = 0, wt = 0, wh = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_head; h++) {
            const float *r = ref + ((size_t)t * n_head + h) * hd, *g = got + (size_t)t * ldo + (size_t)h * hd;
            double mx = 0, md = 0;
            for (int d = 0; d < hd; d++) mx = fmax(mx, fabs(r[d])), md = fmax(md, fabs((double)g[d] - r[d]));
            const double e = md / (mx > 1e-6 ? mx : 1e-6);
            if (!(e <= 1e-3)) bad++;
            if (!(e <= worst)) worst = e, wt = t, wh = h;
        }
    printf("  attention %s: largest difference %.2e of the row's largest output\n", what, worst);
    CHECKF(!bad, "attention %s: %d of %d (row, head) outputs off; worst %.3g at row %d head %d", what, bad, T * n_head,
           worst, wt, wh);
    for (int s = 0; s < nseq; s++) g4_cu_free(s_cu, dK[s]), g4_cu_free(s_cu, dV[s]), free(K[s]), free(V[s]);
    if (!inplace) g4_cu_free(s_cu, dout);
    g4_cu_free(s_cu, dq), g4_cu_free(s_cu, (void *)dpk), g4_cu_free(s_cu, (void *)dpv), g4_cu_free(s_cu, dlo);
    g4_cu_free(s_cu, dhi);
    free(K), free(V), free(dK), free(dV), free(q), free(ref), free(got), free((void *)pk), free((void *)pv);
}

static void s_attention(uint64_t *rng)
{
    const int z = 0;
    int32_t lo[40], hi[40];
    int seq[40];
    /* one row: ranges of 1, 100, 3000 (split), ring wrap-around */
    lo[0] = 5, hi[0] = 5;
    s_attn_case("hd 256 G1 F16 range 1", 1, 8, 8, 256, 1, 64, 1, &z, lo, hi, 0, rng);
    lo[0] = 0, hi[0] = 99;
    s_attn_case("hd 512 G2 F32 range 100", 1, 4, 2, 512, 0, 128, 1, &z, lo, hi, 0, rng);
    lo[0] = 100, hi[0] = 3099;
    s_attn_case("hd 256 G8 F16 range 3000", 1, 16, 2, 256, 1, 4096, 1, &z, lo, hi, 0, rng);
    s_attn_case("hd 256 G8 F16 range 3000 over q", 1, 16, 2, 256, 1, 4096, 1, &z, lo, hi, 1, rng);
    lo[0] = 2001, hi[0] = 5000; /* cells 3072: wraps */
    s_attn_case("hd 512 G8 F16 ring 3000", 1, 8, 1, 512, 1, 3072, 1, &z, lo, hi, 0, rng);
    lo[0] = 1600, hi[0] = 2500; /* cells 1000: wraps */
    s_attn_case("hd 256 G2 F32 ring 901", 1, 4, 2, 256, 0, 1000, 1, &z, lo, hi, 0, rng);
    lo[0] = 7, hi[0] = 6;
    s_attn_case("hd 256 G2 F16 empty", 1, 4, 2, 256, 1, 64, 1, &z, lo, hi, 0, rng);

    /* 37 rows: a prompt of 20 (causal from 0), 10 of a sliding window,
     * 7 single rows of their own sequences */
    static const int32_t one_lo[7] = {7, 50, 0, 10, 4095, 3000, 1}, one_hi[7] = {7, 149, 2999, 9, 4095, 4000, 1};
    for (int t = 0; t < 37; t++) {
        if (t < 20) seq[t] = 0, lo[t] = 0, hi[t] = 1000 + t;
        else if (t < 30) seq[t] = 1, hi[t] = 2990 + (t - 20), lo[t] = hi[t] - 511;
        else seq[t] = 2 + (t - 30), lo[t] = one_lo[t - 30], hi[t] = one_hi[t - 30];
    }
    s_attn_case("37 rows hd 512 G2 F16", 37, 4, 2, 512, 1, 4096, 9, seq, lo, hi, 0, rng);
    s_attn_case("37 rows hd 256 G8 F32", 37, 16, 2, 256, 0, 4096, 9, seq, lo, hi, 0, rng);
    s_attn_case("37 rows hd 256 G1 F16 over q", 37, 4, 4, 256, 1, 4096, 9, seq, lo, hi, 1, rng);
    /* a sliding window of 256 in a ring of 300 cells, 37 rows of one sequence */
    for (int t = 0; t < 37; t++) seq[t] = 0, hi[t] = 1000 + t, lo[t] = hi[t] - 255;
    s_attn_case("37 rows ring hd 256 G1 F16", 37, 2, 2, 256, 1, 300, 1, seq, lo, hi, 0, rng);
    /* head sizes other than 256 / 512; more query heads than a block holds */
    for (int t = 0; t < 5; t++) seq[t] = 0, lo[t] = 0, hi[t] = 300 + t;
    s_attn_case("hd 96 G3 F16", 5, 6, 2, 96, 1, 512, 1, seq, lo, hi, 0, rng);
    lo[0] = 0, hi[0] = 699;
    s_attn_case("hd 128 G4 F32 range 700", 1, 8, 2, 128, 0, 1024, 1, &z, lo, hi, 0, rng);
    for (int t = 0; t < 2; t++) seq[t] = 0, lo[t] = 3 * t, hi[t] = 40 + 200 * t;
    s_attn_case("hd 64 G32 F16", 2, 32, 1, 64, 1, 512, 1, seq, lo, hi, 0, rng);
    lo[0] = 0, hi[0] = 400;
    s_attn_case("hd 32 G1 F32", 1, 3, 3, 32, 0, 512, 1, &z, lo, hi, 0, rng);
    /* shapes it refuses */
    g4_err_t err;
    g4_err_clear(&err);
    CHECK(g4_cu_attention(s_cu, NULL, 0, 1, 4, 3, 256, NULL, NULL, 64, 1, NULL, NULL, NULL, 0, &err) == G4_ERR_RANGE &&
          err.msg[0]);
    CHECK(g4_cu_attention(s_cu, NULL, 0, 1, 4, 2, 100, NULL, NULL, 64, 1, NULL, NULL, NULL, 0, &err) == G4_ERR_RANGE);
    CHECK(g4_cu_attention(s_cu, NULL, 0, 1, 4, 2, 1024, NULL, NULL, 64, 1, NULL, NULL, NULL, 0, &err) == G4_ERR_RANGE);
}

/* g4_cu_attention_rows against the CPU kernels it follows (g4_attn_f16_g for
 * single rows, g4_attn_f32 for the others, called as core/model/g4_forward.c
 * calls them: G query heads per KV head, consecutive rows of one sequence
 * and view in one g4_attn_f32 call). A row: its sequence's cache, its view
 * (index into views: NULL pos = cache order), [lo, hi], kind, splits. */
typedef struct {
    int seq, view, lo, hi, single, splits;
} s_ar_row_t;

/* the spacing of f16 numbers at |x| (subnormal: 2^-24) */
static double s_f16_ulp(double x)
{
    x = fabs(x);
    return x < 0x1p-14 ? 0x1p-24 : ldexp(1.0, ilogb(x) - 10);
}

static void s_attn_rows_case(const char *what, int n_head, int n_kv, int hd, int is_f16, int cells, int nseq,
                             const g4_attn_view_t *views, int nviews, const s_ar_row_t *rows, int T, int inplace,
                             uint64_t *rng)
{
    const int G = n_head / n_kv;
    const size_t es = is_f16 ? 2 : 4, row_bytes = (size_t)n_kv * hd * es, cache_bytes = row_bytes * cells;
    const int ldq = n_head * hd + 5, ldo = inplace ? ldq : n_head * hd + 3;
    const char *isa = g4_kernels_isa();
    const int dot = !strcmp(isa, "avx512") ? G4_CU_DOT_AVX512 : !strcmp(isa, "avx2") ? G4_CU_DOT_AVX2 : G4_CU_DOT_SCALAR;
    uint8_t **K = malloc(sizeof *K * nseq), **V = malloc(sizeof *V * nseq);
    void **dK = malloc(sizeof *dK * nseq), **dV = malloc(sizeof *dV * nseq);
    for (int s = 0; s < nseq; s++) {
        K[s] = malloc(cache_bytes), V[s] = malloc(cache_bytes);
        for (size_t i = 0; i < (size_t)cells * n_kv * hd; i++) {
            const float k = g4_test_randf(rng), v = g4_test_randf(rng);
            if (is_f16) ((g4_fp16_t *)K[s])[i] = g4_fp32_to_fp16(k), ((g4_fp16_t *)V[s])[i] = g4_fp32_to_fp16(v);
            else ((float *)K[s])[i] = k, ((float *)V[s])[i] = v;
        }
        dK[s] = s_up(K[s], cache_bytes), dV[s] = s_up(V[s], cache_bytes);
    }
    int32_t **dview = malloc(sizeof *dview * nviews);
    for (int v = 0; v < nviews; v++)
        dview[v] = views[v].pos ? s_up(views[v].pos, sizeof(int32_t) * views[v].n_kv) : NULL;
    float *q = malloc(sizeof(float) * T * ldq), *ref = malloc(sizeof(float) * T * ldq);
    float *got = malloc(sizeof(float) * T * (ldq > ldo ? ldq : ldo));
    s_rand(q, (size_t)T * ldq, 0.3f, rng);
    /* the CPU: single rows alone, the others in runs of one sequence and view */
    size_t bb = g4_attn_f32_buf_bytes(G, hd);
    if (bb < g4_attn_f16_buf_bytes(G, hd)) bb = g4_attn_f16_buf_bytes(G, hd);
    uint8_t *buf = malloc(bb);
    for (int t = 0; t < T;) {
        const s_ar_row_t *r = &rows[t];
        int nr = 1;
        if (!(r->single && is_f16))
            while (t + nr < T && nr < G4_ATTN_TILE_Q && !(rows[t + nr].single && is_f16) && rows[t + nr].seq == r->seq &&
                   rows[t + nr].view == r->view)
                nr++;
        const g4_attn_view_t vw = {views[r->view].pos, views[r->view].n_kv, cells};
        int lo[G4_ATTN_TILE_Q], hi[G4_ATTN_TILE_Q];
        for (int i = 0; i < nr; i++) lo[i] = rows[t + i].lo, hi[i] = rows[t + i].hi;
        for (int kh = 0; kh < n_kv; kh++) {
            const size_t off = (size_t)kh * hd * es;
            const float *qk = q + (size_t)t * ldq + (size_t)kh * G * hd;
            float *ok = ref + (size_t)t * ldq + (size_t)kh * G * hd;
            if (nr == 1 && r->single && is_f16)
                g4_attn_f16_g(qk, G, K[r->seq] + off, V[r->seq] + off, row_bytes, hd, r->lo, r->hi, &vw, r->splits, ok, buf);
            else
                g4_attn_f32(qk, (size_t)ldq, nr, G, K[r->seq] + off, V[r->seq] + off, row_bytes, is_f16, hd, lo, hi, &vw, ok,
                            (size_t)ldq, buf);
        }
        t += nr;
    }
    g4_cu_attn_row_t *desc = calloc((size_t)T, sizeof *desc);
    for (int t = 0; t < T; t++) {
        const s_ar_row_t *r = &rows[t];
        desc[t] = (g4_cu_attn_row_t){dK[r->seq], dV[r->seq], dview[r->view], views[r->view].n_kv, r->lo, r->hi,
                                     r->single, r->splits, dot};
    }
    float *dq = s_up(q, sizeof(float) * T * ldq), *dout = inplace ? dq : s_up(NULL, sizeof(float) * T * ldo);
    g4_cu_attn_row_t *drows = s_up(desc, sizeof *desc * T);
    g4_err_t err;
    g4_err_clear(&err);
    const int rc = g4_cu_attention_rows(s_cu, dq, ldq, T, n_head, n_kv, hd, drows, cells, is_f16, dout, ldo, &err);
    CHECKF(rc == G4_OK, "%s: %s", what, err.msg);
    s_down(got, dout, sizeof(float) * T * ldo);
    long bad = 0, same = 0, n = 0;
    double worst = 0;
    int wt = 0, wh = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < n_head; h++) {
            const float *rf = ref + (size_t)t * ldq + (size_t)h * hd, *g = got + (size_t)t * ldo + (size_t)h * hd;
            const int f16row = rows[t].single && is_f16;
            double mx = 0;
            for (int d = 0; d < hd; d++) mx = fmax(mx, fabs(rf[d]));
            for (int d = 0; d < hd; d++) {
                const double dd = fabs((double)g[d] - rf[d]), lim = f16row ? s_f16_ulp(rf[d]) : 1e-5 * mx;
                n++, same += !memcmp(&g[d], &rf[d], 4);
                if (!(dd <= lim)) bad++;
                if (!(dd / (lim > 0 ? lim : 1e-30) <= worst)) worst = dd / (lim > 0 ? lim : 1e-30), wt = t, wh = h;
            }
        }
    printf("  attention (CPU order) %s, dot %s: %ld of %ld outputs bit-identical, worst %.3g of the tolerance\n", what,
           isa, same, n, worst);
    CHECKF(!bad, "attention (CPU order) %s: %ld of %ld outputs off; worst %.3g of the tolerance at row %d head %d", what,
           bad, n, worst, wt, wh);
    for (int s = 0; s < nseq; s++) g4_cu_free(s_cu, dK[s]), g4_cu_free(s_cu, dV[s]), free(K[s]), free(V[s]);
    for (int v = 0; v < nviews; v++)
        if (dview[v]) g4_cu_free(s_cu, dview[v]);
    if (!inplace) g4_cu_free(s_cu, dout);
    g4_cu_free(s_cu, dq), g4_cu_free(s_cu, drows);
    free(K), free(V), free(dK), free(dV), free(dview), free(q), free(ref), free(got), free(buf), free(desc);
}

static void s_attention_rows(uint64_t *rng)
{
    enum { NV = 1400, CELLS = 1024 };
    /* views: cache order (NULL: positions 0..n-1, beyond `cells` wrapping the
     * ring), and llama.cpp-like ones: a ring of 1000 cells holding positions
     * 1500..2499 with its start mid-way, 40 empty cells; positions scattered
     * over a view larger than the cache with empty cells */
    static int32_t ring[1000], scat[NV];
    for (int i = 0; i < 1000; i++) ring[i] = 1500 + (i + 1000 - 377) % 1000;
    for (int i = 0; i < 40; i++) ring[(i * 23 + 5) % 1000] = -1;
    for (int i = 0; i < NV; i++) scat[i] = -1;
    for (int p = 0; p < 900; p++) scat[(p * 37 + 11) % NV] = p;
    const g4_attn_view_t views[] = {{NULL, 700, CELLS}, {NULL, 1100, CELLS}, {ring, 1000, CELLS}, {scat, NV, CELLS},
                                    {NULL, 300, CELLS}};
    /* F16 caches: single rows (split and not, and folded: 100 chunks), a
     * prompt of f32 rows (causal), a window (lo > 0), a row that sees nothing */
    const s_ar_row_t mix[] = {
        {0, 0, 0, 699, 1, 1},     {0, 0, 0, 699, 1, 4},      {1, 2, 1600, 2499, 1, 4},  {1, 2, 1500, 2200, 1, 1},
        {0, 1, 200, 1099, 1, 4},  {2, 3, 0, 899, 1, 4},      {2, 3, 300, 700, 1, 100},  {0, 4, 0, 299, 1, 4},
        {1, 2, 1500, 1530, 0, 1}, {1, 2, 1500, 1531, 0, 1},  {1, 2, 1502, 1900, 0, 1},  {1, 2, 1980, 2499, 0, 1},
        {2, 3, 0, 10, 0, 1},      {2, 3, 5, 600, 0, 1},      {2, 3, 0, 899, 0, 1},      {0, 1, 300, 1099, 0, 1},
        {0, 0, 40, 600, 0, 1},    {0, 0, 7, 6, 1, 4},        {0, 0, 7, 6, 0, 1},        {1, 2, 0, 1400, 1, 4},
    };
    const int nmix = (int)(sizeof mix / sizeof *mix);
    s_attn_rows_case("hd 256 G8 F16", 16, 2, 256, 1, CELLS, 3, views, 5, mix, nmix, 0, rng);
    s_attn_rows_case("hd 512 G2 F16", 4, 2, 512, 1, CELLS, 3, views, 5, mix, nmix, 0, rng);
    s_attn_rows_case("hd 512 G1 F16 over q", 2, 2, 512, 1, CELLS, 3, views, 5, mix, nmix, 1, rng);
    s_attn_rows_case("hd 256 G1 F32", 3, 3, 256, 0, CELLS, 3, views, 5, mix, nmix, 0, rng);
    s_attn_rows_case("hd 512 G8 F32", 8, 1, 512, 0, CELLS, 3, views, 5, mix, nmix, 0, rng);
    s_attn_rows_case("hd 96 G3 F16", 6, 2, 96, 1, CELLS, 3, views, 5, mix, nmix, 0, rng);
    /* a long decode step: 4 chunks of 1024 cells in parallel, and 64 */
    {
        static int32_t big[4096];
        for (int i = 0; i < 4096; i++) big[i] = i % 5 == 3 ? -1 : i;
        const g4_attn_view_t bv[] = {{big, 4096, 4096}};
        const s_ar_row_t one[] = {{0, 0, 100, 4095, 1, 4}, {0, 0, 0, 4095, 1, 64}, {0, 0, 0, 4095, 0, 1}};
        s_attn_rows_case("hd 256 G8 F16 4096 cells", 8, 1, 256, 1, 4096, 1, bv, 1, one, 3, 0, rng);
    }
    /* shapes it refuses */
    g4_err_t err;
    g4_err_clear(&err);
    CHECK(g4_cu_attention_rows(s_cu, NULL, 0, 1, 4, 3, 256, NULL, 64, 1, NULL, 0, &err) == G4_ERR_RANGE && err.msg[0]);
    CHECK(g4_cu_attention_rows(s_cu, NULL, 0, 1, 4, 2, 100, NULL, 64, 1, NULL, 0, &err) == G4_ERR_RANGE);
    CHECK(g4_cu_attention_rows(s_cu, NULL, 0, 1, 4, 2, 1024, NULL, 64, 1, NULL, 0, &err) == G4_ERR_RANGE);
}

static void s_moe_gather(uint64_t *rng)
{
    /* moe_combine: y[t] = Σ_k (d·s[e])·w in k order */
    for (int with_s = 0; with_s < 2; with_s++) {
        enum { T = 3, K = 4, NE = 8, N = 1001 };
        float *d = malloc(sizeof(float) * T * K * N), w[T * K], sc[NE], *ref = malloc(sizeof(float) * T * N);
        float *got = malloc(sizeof(float) * T * N);
        int32_t sel[T * K];
        s_rand(d, (size_t)T * K * N, 1.0f, rng);
        for (int i = 0; i < NE; i++) sc[i] = 0.5f + g4_test_randf(rng);
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++) sel[t * K + k] = (t + 3 * k) % NE, w[t * K + k] = 0.5f * (1.0f + g4_test_randf(rng));
        for (int t = 0; t < T; t++)
            for (int i = 0; i < N; i++) {
                float o = 0;
                for (int k = 0; k < K; k++) {
                    float vv = d[((size_t)t * K + k) * N + i];
                    if (with_s) vv *= sc[sel[t * K + k]];
                    vv *= w[t * K + k];
                    o = k == 0 ? vv : o + vv;
                }
                ref[t * N + i] = o;
            }
        float *dd = s_up(d, sizeof(float) * T * K * N), *dw = s_up(w, sizeof w), *ds = s_up(sc, sizeof sc);
        int32_t *dsel = s_up(sel, sizeof sel);
        float *dy = s_up(NULL, sizeof(float) * T * N);
        CHECK(g4_cu_moe_combine(s_cu, dd, dw, dsel, with_s ? ds : NULL, dy, N, T, K) == G4_OK);
        s_down(got, dy, sizeof(float) * T * N);
        s_close(with_s ? "moe_combine (scales)" : "moe_combine", got, ref, (size_t)T * N, 1e-6, 0);
        g4_cu_free(s_cu, dd), g4_cu_free(s_cu, dw), g4_cu_free(s_cu, ds), g4_cu_free(s_cu, dsel), g4_cu_free(s_cu, dy);
        free(d), free(ref), free(got);
    }
    /* gather rows by index, scatter them back */
    {
        enum { R = 5, N = 77, LDX = 80, LDY = 90 };
        static const int32_t idx[R] = {3, 0, 5, 1, 2};
        float x[6 * LDX], g[R * LDY], back[6 * LDX];
        s_rand(x, 6 * LDX, 1.0f, rng);
        float *dx = s_up(x, sizeof x), *dg = s_up(NULL, sizeof g), *db = s_up(NULL, sizeof back);
        int32_t *di = s_up(idx, sizeof idx);
        CHECK(g4_cu_gather(s_cu, dx, LDX, di, dg, LDY, N, R) == G4_OK);
        CHECK(g4_cu_scatter(s_cu, dg, LDY, di, db, LDX, N, R) == G4_OK);
        s_down(g, dg, sizeof g), s_down(back, db, sizeof back);
        int ok = 1;
        for (int r = 0; r < R; r++)
            for (int i = 0; i < LDY; i++) ok &= g[r * LDY + i] == (i < N ? x[idx[r] * LDX + i] : 0.0f);
        CHECKF(ok, "gather: rows differ");
        ok = 1;
        for (int r = 0; r < 6; r++)
            for (int i = 0; i < LDX; i++) ok &= back[r * LDX + i] == (r != 4 && i < N ? x[r * LDX + i] : 0.0f);
        CHECKF(ok, "scatter: rows differ");
        g4_cu_free(s_cu, dx), g4_cu_free(s_cu, dg), g4_cu_free(s_cu, db), g4_cu_free(s_cu, di);
    }
}

int test_cuda_ops(void)
{
    if (!g4_cu_available()) {
        printf("SKIP: built without the CUDA backend\n");
        return G4_TEST_SKIP;
    }
    if (g4_cu_device_count() == 0) {
        g4_err_t err;
        g4_err_clear(&err);
        g4_cu_device_info(0, NULL, 0, NULL, NULL, &err);
        printf("SKIP: no CUDA device (%s)\n", err.msg);
        return G4_TEST_SKIP;
    }
    g4_err_t err;
    s_cu = g4_cu_open(0, &err);
    if (!s_cu) {
        CHECKF(0, "g4_cu_open: %s", err.msg);
        return 1;
    }
    uint64_t rng = 20260501;
    s_rmsnorm(&rng);
    s_elementwise(&rng);
    s_rope(&rng);
    s_kv_store(&rng);
    s_attention(&rng);
    s_attention_rows(&rng);
    s_moe_gather(&rng);
    CHECKF(g4_cu_sync(s_cu, &err) == G4_OK, "%s", err.msg);
    g4_cu_close(&s_cu);
    return 0;
}
#endif
