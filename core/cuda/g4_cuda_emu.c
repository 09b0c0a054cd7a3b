/* g4_cuda_emu — g4_cuda.h on the host, for tests only: "device memory" is
 * host memory and each kernel is its CPU twin (the _ref functions), run at
 * once. It exists so the device forward pass (core/model/g4_forward_cuda.c:
 * what goes to which buffer, strides, the cache pointer tables, the MoE
 * grouping, rows copied in and out of caches) is checked on machines
 * without a GPU, against the CPU path, by the same test a GPU runs
 * (tests/unit/test_cuda_model.c in the g4_unit_emu runner). It says it is
 * an emulation (device name "host emulation"); the kernels' own numbers are
 * checked on a GPU (cuda_mm, cuda_ops). Matrix products are the CPU's
 * (g4_matmul); attention is the exact two-pass formula in double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_act.h"
#include "g4_alloc.h"
#include "g4_cuda.h"
#include "g4_dot.h"
#include "g4_dtype.h"
#include "g4_matmul.h"
#include "g4_norm.h"
#include "g4_rope.h"

struct g4_cu {
    int dev;
};

int g4_cu_available(void) { return 1; }
int g4_cu_device_count(void) { return 1; }
int g4_cu_device_info(int dev, char *name, size_t name_len, size_t *free_bytes, size_t *total_bytes, g4_err_t *err)
{
    if (dev != 0) return g4_err_set(err, G4_ERR_UNAVAILABLE, "cuda:%d: no such device (the host emulation has one)", dev);
    if (name && name_len) snprintf(name, name_len, "host emulation");
    if (free_bytes) *free_bytes = (size_t)64 << 30;
    if (total_bytes) *total_bytes = (size_t)64 << 30;
    return G4_OK;
}

g4_cu_t *g4_cu_open(int dev, g4_err_t *err)
{
    if (dev != 0) {
        g4_err_set(err, G4_ERR_UNAVAILABLE, "cuda:%d: no such device (the host emulation has one)", dev);
        return NULL;
    }
    g4_cu_t *cu = g4_calloc(1, sizeof *cu);
    if (!cu) g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    return cu;
}
void g4_cu_close(g4_cu_t **cu)
{
    if (cu) g4_free(*cu), *cu = NULL;
}
int g4_cu_device(const g4_cu_t *cu) { return cu ? cu->dev : -1; }
int g4_cu_sync(g4_cu_t *cu, g4_err_t *err) { return G4_OK; }
void *g4_cu_alloc(g4_cu_t *cu, size_t n) { return g4_calloc(1, n ? n : 1); }
void g4_cu_free(g4_cu_t *cu, void *d) { g4_free(d); }
void *g4_cu_host_alloc(size_t n) { return g4_malloc(n ? n : 1); }
void g4_cu_host_free(void *h) { g4_free(h); }
int g4_cu_h2d(g4_cu_t *cu, void *d, const void *h, size_t n) { return memmove(d, h, n), G4_OK; }
int g4_cu_d2h(g4_cu_t *cu, void *h, const void *d, size_t n) { return memmove(h, d, n), G4_OK; }
int g4_cu_d2d(g4_cu_t *cu, void *d, const void *s, size_t n) { return memmove(d, s, n), G4_OK; }

int g4_cu_type_ok(g4_dtype_t t)
{
    switch (t) {
    case G4_DTYPE_F32: case G4_DTYPE_F16: case G4_DTYPE_BF16: case G4_DTYPE_Q4_0: case G4_DTYPE_Q4_1:
    case G4_DTYPE_Q5_0: case G4_DTYPE_Q5_1: case G4_DTYPE_Q8_0: case G4_DTYPE_Q4_K: case G4_DTYPE_Q5_K:
    case G4_DTYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

int g4_cu_matmul(g4_cu_t *cu, g4_dtype_t t, const void *dW, size_t row_bytes, int64_t K, int64_t N, const float *dX,
                 int64_t ldx, int64_t T, float *dY, int64_t ldy, g4_err_t *err)
{
    if (!g4_cu_type_ok(t)) return g4_err_set(err, G4_ERR_RANGE, "emulated matmul: type %s", g4_dtype_name(t));
    /* the CPU's own product: activations converted to the weight type's
     * format, block sums as the CPU's (the GPU kernels' arithmetic up to
     * the order of the blocks' sum) */
    g4_tensor_t W = {.data = (void *)dW, .dtype = t, .n_dims = 2, .ne = {K, N, 1, 1},
                     .nb = {0, row_bytes, row_bytes * (uint64_t)N, row_bytes * (uint64_t)N}};
    void *scratch = g4_malloc_aligned(g4_matmul_scratch_bytes(t, K, T) + 64, 64);
    if (!scratch) return g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    const int rc = g4_matmul(&W, 0, N, dX, ldx, T, dY, ldy, scratch);
    g4_free_aligned(scratch);
    return rc ? g4_err_set(err, rc, "emulated matmul failed") : G4_OK;
}

int g4_cu_rmsnorm(g4_cu_t *cu, const float *dx, int64_t ldx, const float *dw, float *dy, int64_t ldy, int64_t n,
                  int64_t R, float eps)
{
    for (int64_t r = 0; r < R; r++) g4_rmsnorm_ref(dx + r * ldx, dw, dy + r * ldy, n, eps);
    return G4_OK;
}

int g4_cu_add_rms(g4_cu_t *cu, float *dx, int64_t ldx, const float *dy, int64_t ldy, const float *dw, int64_t n,
                  int64_t R, float eps)
{
    float *t = g4_malloc((size_t)n * 4);
    if (!t) return G4_ERR_NOMEM;
    for (int64_t r = 0; r < R; r++) {
        if (dw) g4_rmsnorm_ref(dy + r * ldy, dw, t, n, eps);
        else memcpy(t, dy + r * ldy, (size_t)n * 4);
        for (int64_t i = 0; i < n; i++) dx[r * ldx + i] += t[i];
    }
    g4_free(t);
    return G4_OK;
}

int g4_cu_scale(g4_cu_t *cu, float *dx, int64_t n, float s)
{
    for (int64_t i = 0; i < n; i++) dx[i] *= s;
    return G4_OK;
}

int g4_cu_softcap(g4_cu_t *cu, float *dx, int64_t n, float cap)
{
    g4_softcap(dx, n, cap);
    return G4_OK;
}

int g4_cu_geglu(g4_cu_t *cu, const float *dx, const float *dg, float *dy, int64_t n)
{
    if (dg) g4_geglu_ref(dx, dg, dy, n);
    else g4_gelu_ref(dx, dy, n);
    return G4_OK;
}

int g4_cu_mul(g4_cu_t *cu, const float *dx, int64_t ldx, const float *dg, int64_t ldg, float *dy, int64_t ldy,
              int64_t n, int64_t R)
{
    for (int64_t r = 0; r < R; r++)
        for (int64_t i = 0; i < n; i++) dy[r * ldy + i] = dx[r * ldx + i] * dg[r * ldg + i];
    return G4_OK;
}

int g4_cu_rope(g4_cu_t *cu, float *dx, int64_t ld, int64_t T, int n_heads, int hd, int n_rot, const int32_t *dpos,
               float base, const float *dff)
{
    for (int64_t t = 0; t < T; t++) g4_rope_ref(dx + t * ld, n_heads, hd, n_rot, dpos[t], base, dff);
    return G4_OK;
}

int g4_cu_kv_store(g4_cu_t *cu, void *const *ddst, int cells, int is_f16, const float *dsrc, int64_t ld, int64_t n,
                   int64_t T, const int32_t *dpos)
{
    for (int64_t t = 0; t < T; t++) {
        uint8_t *row = (uint8_t *)ddst[t] + (size_t)(dpos[t] % cells) * (size_t)n * (is_f16 ? 2 : 4);
        for (int64_t i = 0; i < n; i++) {
            if (is_f16) ((g4_fp16_t *)row)[i] = g4_fp32_to_fp16(dsrc[t * ld + i]);
            else ((float *)row)[i] = dsrc[t * ld + i];
        }
    }
    return G4_OK;
}

static double s_kv(const uint8_t *row, int is_f16, int d)
{
    return is_f16 ? g4_fp16_to_fp32(((const g4_fp16_t *)row)[d]) : ((const float *)row)[d];
}

int g4_cu_attention(g4_cu_t *cu, const float *dq, int64_t ldq, int64_t T, int n_head, int n_kv, int hd,
                    const void *const *dK, const void *const *dV, int cells, int is_f16, const int32_t *dlo,
                    const int32_t *dhi, float *dout, int64_t ldo, g4_err_t *err)
{
    const size_t es = is_f16 ? 2 : 4, rb = (size_t)n_kv * hd * es;
    double *acc = g4_malloc((size_t)hd * sizeof *acc);
    float *o = g4_malloc((size_t)T * n_head * hd * 4);
    if (!acc || !o) return g4_free(acc), g4_free(o), G4_ERR_NOMEM;
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < n_head; h++) {
            const float *q = dq + t * ldq + (size_t)h * hd;
            const size_t off = (size_t)(h / (n_head / n_kv)) * hd * es;
            double M = -INFINITY, S = 0;
            for (int p = dlo[t]; p <= dhi[t]; p++) {
                const uint8_t *k = (const uint8_t *)dK[t] + (size_t)(p % cells) * rb + off;
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)q[d] * s_kv(k, is_f16, d);
                M = s > M ? s : M;
            }
            for (int d = 0; d < hd; d++) acc[d] = 0;
            for (int p = dlo[t]; p <= dhi[t]; p++) {
                const uint8_t *k = (const uint8_t *)dK[t] + (size_t)(p % cells) * rb + off;
                const uint8_t *v = (const uint8_t *)dV[t] + (size_t)(p % cells) * rb + off;
                double s = 0;
                for (int d = 0; d < hd; d++) s += (double)q[d] * s_kv(k, is_f16, d);
                const double w = exp(s - M);
                S += w;
                for (int d = 0; d < hd; d++) acc[d] += w * s_kv(v, is_f16, d);
            }
            for (int d = 0; d < hd; d++) o[((size_t)t * n_head + h) * hd + d] = S > 0 ? (float)(acc[d] / S) : 0.0f;
        }
    for (int64_t t = 0; t < T; t++) memcpy(dout + t * ldo, o + (size_t)t * n_head * hd, (size_t)n_head * hd * 4);
    g4_free(acc), g4_free(o);
    return G4_OK;
}

/* g4_cu_attention_rows: the CPU kernels' arithmetic (core/model/g4_attn.c:
 * g4_attn_f16_g and g4_attn_f32), written again in plain C since the
 * emulation links nothing of core/model: the same operations in the same
 * order, so the same bits (the F16 dot summed as the row's `dot` says). */
static float s_rows_dot16(const g4_fp16_t *k, const g4_fp16_t *q, int hd, int dot)
{
    if (dot == G4_CU_DOT_SCALAR) {
        double s = 0;
        for (int d = 0; d < hd; d++) s += (double)(g4_fp16_to_fp32(k[d]) * g4_fp16_to_fp32(q[d]));
        return (float)s;
    }
    float c[32] = {0};
    for (int d0 = 0; d0 < hd; d0 += 32)
        for (int l = 0; l < 32; l++) c[l] = fmaf(g4_fp16_to_fp32(k[d0 + l]), g4_fp16_to_fp32(q[d0 + l]), c[l]);
    if (dot == G4_CU_DOT_AVX2) {
        for (int l = 0; l < 8; l++) c[l] = (c[l] + c[l + 8]) + (c[l + 16] + c[l + 24]);
    } else {
        for (int l = 0; l < 16; l++) c[l] = c[l] + c[l + 16];
        for (int l = 0; l < 8; l++) c[l] = c[l] + c[l + 8];
    }
    for (int l = 0; l < 4; l++) c[l] = c[l] + c[l + 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

static int s_rows_pos(const g4_cu_attn_row_t *R, int i) { return R->view ? R->view[i] : i; }
static int s_rows_sees(const g4_cu_attn_row_t *R, int p) { return p >= 0 && p >= R->lo && p <= R->hi; }

/* one (row, head) as g4_attn_f16_g: k, v the KV head's rows (row_bytes apart) */
static void s_rows_single(const g4_cu_attn_row_t *R, const float *q, const uint8_t *K, const uint8_t *V, size_t rb, int hd,
                          int cells, g4_fp16_t *qh, g4_fp16_t *acc, float *out)
{
    for (int d = 0; d < hd; d++) qh[d] = g4_fp32_to_fp16(q[d]);
    const int nv = R->n_view > 0 ? R->n_view : 0;
    int chunk = nv, nch = 1;
    if (R->splits > 1 && nv >= G4_CU_ATTN_SPLIT_MIN) chunk = (nv + R->splits - 1) / R->splits, nch = (nv + chunk - 1) / chunk;
    float Mf = -INFINITY, Sf = 0.0f;
    for (int d = 0; d < hd; d++) out[d] = 0.0f;
    for (int c = 0; c < nch; c++) {
        const int b1 = (c + 1) * chunk < nv ? (c + 1) * chunk : nv;
        float M = -INFINITY, S = 0.0f;
        memset(acc, 0, (size_t)hd * sizeof *acc);
        for (int i = c * chunk; i < b1; i++) {
            const int p = s_rows_pos(R, i);
            if (!s_rows_sees(R, p)) continue;
            const g4_fp16_t *k = (const g4_fp16_t *)(K + (size_t)(p % cells) * rb);
            const g4_fp16_t *v = (const g4_fp16_t *)(V + (size_t)(p % cells) * rb);
            const float s = s_rows_dot16(k, qh, hd, R->dot);
            float ms = 1.0f, vs = 1.0f;
            if (s > M) {
                const float Mold = M;
                M = s;
                ms = expf(Mold - M);
                for (int d = 0; d < hd; d++) acc[d] = g4_fp32_to_fp16(g4_fp16_to_fp32(acc[d]) * ms);
            } else {
                vs = expf(s - M);
            }
            for (int d = 0; d < hd; d++) acc[d] = g4_fp32_to_fp16(fmaf(g4_fp16_to_fp32(v[d]), vs, g4_fp16_to_fp32(acc[d])));
            S = S * ms + vs;
        }
        if (nch == 1) {
            const float inv = S == 0.0f ? 0.0f : 1.0f / S;
            for (int d = 0; d < hd; d++) out[d] = g4_fp16_to_fp32(acc[d]) * inv;
            return;
        }
        if (S == 0.0f) continue;
        const float Mn = fmaxf(Mf, M), so = expf(Mf - Mn), sn = expf(M - Mn);
        for (int d = 0; d < hd; d++) out[d] = out[d] * so + g4_fp16_to_fp32(acc[d]) * sn;
        Sf = Sf * so + S * sn;
        Mf = Mn;
    }
    if (Sf != 0.0f) {
        const float inv = 1.0f / Sf;
        for (int d = 0; d < hd; d++) out[d] *= inv;
    }
}

static float s_rows_elem(const uint8_t *row, int is_f16, int d)
{
    return is_f16 ? g4_fp16_to_fp32(((const g4_fp16_t *)row)[d]) : ((const float *)row)[d];
}

/* one (row, head) as g4_attn_f32 */
static void s_rows_f32(const g4_cu_attn_row_t *R, const float *q, const uint8_t *K, const uint8_t *V, size_t rb, int hd,
                       int cells, int is_f16, float *out)
{
    enum { TK = G4_CU_ATTN_TILE_KV };
    const int nv = R->n_view > 0 ? R->n_view : 0;
    float M = -INFINITY, S = 0.0f, x[TK];
    for (int d = 0; d < hd; d++) out[d] = 0.0f;
    for (int c0 = 0; c0 < nv; c0 += TK) {
        const int nc = nv - c0 < TK ? nv - c0 : TK;
        float tmax = -INFINITY;
        for (int j = 0; j < TK; j++) {
            const int p = j < nc ? s_rows_pos(R, c0 + j) : -1;
            x[j] = -INFINITY;
            if (s_rows_sees(R, p)) {
                const uint8_t *k = K + (size_t)(p % cells) * rb;
                float a = 0.0f;
                for (int d = 0; d < hd; d++) a = fmaf(q[d], s_rows_elem(k, is_f16, d), a);
                x[j] = a;
            }
            tmax = fmaxf(tmax, x[j]);
        }
        if (tmax == -INFINITY) continue;
        const float Mn = fmaxf(M, tmax);
        if (Mn > M) {
            const float ms = expf(M - Mn);
            for (int d = 0; d < hd; d++) out[d] *= ms;
            S *= ms;
        }
        M = Mn;
        double sum = 0; /* ggml_vec_soft_max_f32: groups of 16 reduced as _mm512_reduce_add_ps, added in double */
        for (int i = 0; i < TK; i += 16) {
            float t3[8], t6[4];
            for (int j = 0; j < 16; j++) x[i + j] = expf(x[i + j] - Mn);
            for (int j = 0; j < 8; j++) t3[j] = x[i + 8 + j] + x[i + j];
            for (int j = 0; j < 4; j++) t6[j] = t3[4 + j] + t3[j];
            sum += (double)((t6[0] + t6[2]) + (t6[1] + t6[3]));
        }
        S = (float)((double)S + sum);
        for (int d = 0; d < hd; d++) {
            float a = out[d];
            for (int j = 0; j < nc; j++) {
                const int p = s_rows_pos(R, c0 + j);
                if (s_rows_sees(R, p)) a = fmaf(x[j], s_rows_elem(V + (size_t)(p % cells) * rb, is_f16, d), a);
            }
            out[d] = a;
        }
    }
    const float inv = S == 0.0f ? 0.0f : 1.0f / S;
    for (int d = 0; d < hd; d++) out[d] *= inv;
}

int g4_cu_attention_rows(g4_cu_t *cu, const float *dq, int64_t ldq, int64_t T, int n_head, int n_kv, int hd,
                         const g4_cu_attn_row_t *drows, int cells, int is_f16, float *dout, int64_t ldo, g4_err_t *err)
{
    if (T < 0 || n_head <= 0 || n_kv <= 0 || n_head % n_kv || hd < 32 || hd > 512 || hd % 32 || cells <= 0)
        return g4_err_set(err, G4_ERR_RANGE, "emulated attention (CPU order): unsupported shape (%d heads, %d KV heads, head size %d)",
                          n_head, n_kv, hd);
    const size_t es = is_f16 ? 2 : 4, rb = (size_t)n_kv * hd * es;
    g4_fp16_t *qh = g4_malloc((size_t)hd * 2 * sizeof *qh);
    float *o = g4_malloc((size_t)(T ? T : 1) * n_head * hd * sizeof *o); /* (dout may be dq) */
    if (!qh || !o) return g4_free(qh), g4_free(o), g4_err_set(err, G4_ERR_NOMEM, "out of memory");
    for (int64_t t = 0; t < T; t++)
        for (int h = 0; h < n_head; h++) {
            const g4_cu_attn_row_t *R = &drows[t];
            const size_t off = (size_t)(h / (n_head / n_kv)) * hd * es;
            const uint8_t *K = (const uint8_t *)R->K + off, *V = (const uint8_t *)R->V + off;
            const float *q = dq + t * ldq + (size_t)h * hd;
            float *out = o + ((size_t)t * n_head + h) * hd;
            if (is_f16 && R->single) s_rows_single(R, q, K, V, rb, hd, cells, qh, qh + hd, out);
            else s_rows_f32(R, q, K, V, rb, hd, cells, is_f16, out);
        }
    for (int64_t t = 0; t < T; t++) memcpy(dout + t * ldo, o + (size_t)t * n_head * hd, (size_t)n_head * hd * sizeof *o);
    g4_free(qh), g4_free(o);
    return G4_OK;
}

int g4_cu_moe_combine(g4_cu_t *cu, const float *dd, const float *dw, const int32_t *dsel, const float *dscale,
                      float *dy, int64_t n, int64_t T, int K)
{
    for (int64_t t = 0; t < T; t++)
        for (int k = 0; k < K; k++) {
            const float *d = dd + (t * K + k) * n, wk = dw[t * K + k];
            const float es = dscale ? dscale[dsel[t * K + k]] : 1.0f;
            for (int64_t i = 0; i < n; i++) {
                float v = d[i];
                if (dscale) v *= es;
                v *= wk;
                dy[t * n + i] = k == 0 ? v : dy[t * n + i] + v;
            }
        }
    return G4_OK;
}

int g4_cu_gather(g4_cu_t *cu, const float *dx, int64_t ldx, const int32_t *didx, float *dy, int64_t ldy, int64_t n,
                 int64_t R)
{
    for (int64_t i = 0; i < R; i++) memmove(dy + i * ldy, dx + (int64_t)didx[i] * ldx, (size_t)n * 4);
    return G4_OK;
}

int g4_cu_scatter(g4_cu_t *cu, const float *dx, int64_t ldx, const int32_t *didx, float *dy, int64_t ldy, int64_t n,
                  int64_t R)
{
    for (int64_t i = 0; i < R; i++) memmove(dy + (int64_t)didx[i] * ldy, dx + i * ldx, (size_t)n * 4);
    return G4_OK;
}

int g4_cu_dequant_row_host(g4_dtype_t t, const void *row, float *out, int64_t K)
{
    return g4_dequant_row(t, row, out, K) ? G4_ERR_RANGE : G4_OK;
}

/* the default matmul path's test hooks (g4_cuda.h): here the CPU's own
 * functions, which the CUDA kernels reproduce */
static const g4_type_ops_t *s_hook_ops(g4_dtype_t t, int64_t K)
{
    const g4_type_ops_t *ops = g4_cu_type_ok(t) ? g4_type_ops(t) : NULL;
    if (!ops || K < 0 || K % g4_dtype_traits(t)->block_size || K % g4_dtype_traits(ops->act_type)->block_size) return NULL;
    return ops;
}

int g4_cu_quantize_act_host(g4_dtype_t t, const float *x, void *out, int64_t K)
{
    const g4_type_ops_t *ops = s_hook_ops(t, K);
    if (!ops) return G4_ERR_RANGE;
    ops->from_float_ref(x, out, K);
    return G4_OK;
}

int g4_cu_block_dots_host(g4_dtype_t t, const void *w_row, const void *act, int64_t K, float *terms)
{
    const g4_type_ops_t *ops = s_hook_ops(t, K);
    if (!ops || t == G4_DTYPE_F32 || t == G4_DTYPE_F16 || t == G4_DTYPE_BF16) return G4_ERR_RANGE;
    const int64_t qk = g4_dtype_traits(t)->block_size;
    const size_t wb = g4_dtype_traits(t)->type_size, ab = (size_t)g4_dtype_row_bytes(ops->act_type, (uint64_t)qk);
    for (int64_t b = 0; b < K / qk; b++)
        ops->vec_dot_ref(qk, &terms[b], (const uint8_t *)w_row + (size_t)b * wb, (const uint8_t *)act + (size_t)b * ab);
    return G4_OK;
}

int g4_cu_matmul_host(g4_dtype_t t, const void *W, size_t row_bytes, int64_t K, int64_t N, const float *X, int64_t ldx,
                      int64_t T, float *Y, int64_t ldy)
{
    if (!s_hook_ops(t, K) || K == 0 || N < 0 || T < 0) return G4_ERR_RANGE;
    if (N == 0 || T == 0) return G4_OK;
    g4_tensor_t Wt = {.data = (void *)W, .dtype = t, .n_dims = 2, .ne = {K, N, 1, 1},
                      .nb = {0, row_bytes, row_bytes * (uint64_t)N, row_bytes * (uint64_t)N}};
    void *scratch = g4_malloc_aligned(g4_matmul_scratch_bytes(t, K, T) + 64, 64);
    if (!scratch) return G4_ERR_NOMEM;
    const int rc = g4_matmul_ref(&Wt, 0, N, X, ldx, T, Y, ldy, scratch);
    g4_free_aligned(scratch);
    return rc ? G4_ERR_RANGE : G4_OK;
}

/* graphs: the emulation records nothing (each call runs at once), so a
 * capture always breaks and the caller runs the work plainly */
int g4_cu_capture_begin(g4_cu_t *cu, g4_err_t *err)
{
    return g4_err_set(err, G4_ERR_STATE, "the host emulation has no graphs");
}
int g4_cu_capture_end(g4_cu_t *cu, g4_cu_graph_t **g, g4_err_t *err)
{
    *g = NULL;
    return G4_OK;
}
int g4_cu_graph_launch(g4_cu_t *cu, g4_cu_graph_t *g, g4_err_t *err)
{
    return g4_err_set(err, G4_ERR_STATE, "the host emulation has no graphs");
}
void g4_cu_graph_free(g4_cu_graph_t **g) { (void)g; }
uint64_t g4_cu_ws_epoch(const g4_cu_t *cu) { return 0; }
