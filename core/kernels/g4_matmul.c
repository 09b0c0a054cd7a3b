/* g4_matmul — see g4_matmul.h.
 *
 * Work split: the N output rows are cut into contiguous per-thread ranges
 * (each thread streams its own part of W exactly once). Inside a range,
 * blocks of G4_MM_ROWS weight rows are multiplied with all T activation rows
 * before moving on, so in prefill a block of W is read from DRAM once and
 * reused T times from cache. */
#include "g4_matmul.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "g4_dot.h"
#include "g4_err.h"
#include "g4_pack.h"

#define G4_MM_ROWS 16

static int s_threads = 0;

void g4_kernels_set_threads(int n) { s_threads = n > 0 ? n : 0; }
int g4_kernels_threads(void) { return s_threads > 0 ? s_threads : omp_get_max_threads(); }

int g4_cpu_math_cores(void)
{
    /* distinct thread_siblings sets: one per physical core */
    enum { MAXC = 1024 };
    static char seen[MAXC][64];
    int n = 0;
    for (int cpu = 0; cpu < MAXC; cpu++) {
        char path[96], sib[64] = "";
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/thread_siblings", cpu);
        FILE *f = fopen(path, "r");
        if (!f) {
            if (cpu == 0) break;
            continue; /* offline CPUs leave holes */
        }
        if (!fgets(sib, sizeof sib, f)) sib[0] = 0;
        fclose(f);
        int dup = 0;
        for (int i = 0; i < n && !dup; i++) dup = !strcmp(seen[i], sib);
        if (!dup && n < MAXC) snprintf(seen[n++], sizeof seen[0], "%s", sib);
    }
    if (n > 0) return n;
    const long on = sysconf(_SC_NPROCESSORS_ONLN);
    return on > 0 ? (int)on : 1;
}

/* int32s of a packed kernel's per-row aux, rounded to 64 bytes */
static int64_t s_aux_stride(g4_dtype_t t, int64_t K, const g4_pack_ops_t *pk)
{
    const int64_t n = K / (int64_t)g4_dtype_traits(t)->block_size * pk->aux_per_block;
    return (n + 15) & ~(int64_t)15;
}

size_t g4_matmul_scratch_bytes(g4_dtype_t t, int64_t K, int64_t T)
{
    const g4_type_ops_t *ops = g4_type_ops(t);
    if (!ops) return 0;
    uint64_t row = g4_dtype_row_bytes(ops->act_type, (uint64_t)K);
    uint64_t n = ((row + 63) & ~(uint64_t)63) * (uint64_t)T;
    const g4_pack_ops_t *pk = g4_pack_ops(t);
    if (pk && pk->prep) n += (uint64_t)T * s_aux_stride(t, K, pk) * 4 + 64;
    return (size_t)n;
}

static int s_check(const g4_tensor_t *W, int64_t row0, int64_t *nrows, const g4_type_ops_t **ops)
{
    *ops = g4_type_ops(W->dtype);
    if (!*ops) return G4_ERR_RANGE;
    const int64_t N = g4_tensor_nrows(W);
    if (*nrows < 0) *nrows = N - row0;
    if (row0 < 0 || row0 + *nrows > N) return G4_ERR_RANGE;
    return G4_OK;
}

/* W packed (g4_pack.h): groups of 16 rows split among the threads, each
 * group times four activation rows per kernel call (the group's weights stay
 * in the cache for all of them); a group only partly inside the asked rows
 * goes through a small tile */
static int s_matmul_packed(const g4_tensor_t *W, const g4_type_ops_t *ops, int64_t row0, int64_t nrows,
                           const float *X, int64_t ldx, int64_t T, float *Y, int64_t ldy, void *scratch)
{
    const g4_pack_ops_t *pk = g4_pack_ops(W->dtype);
    if (!pk) return G4_ERR_RANGE;
    const int64_t K = W->ne[0];
    const uint64_t arow = (g4_dtype_row_bytes(ops->act_type, (uint64_t)K) + 63) & ~(uint64_t)63;
    const int64_t auxs = pk->prep ? s_aux_stride(W->dtype, K, pk) : 0;
    int32_t *aux = pk->prep ? (int32_t *)(((uintptr_t)scratch + arow * (uint64_t)T + 63) & ~(uintptr_t)63) : NULL;
    const uint64_t gbytes = (uint64_t)G4_PACK_ROWS * W->nb[1];
    const int64_t g0 = row0 / G4_PACK_ROWS, g1 = (row0 + nrows + G4_PACK_ROWS - 1) / G4_PACK_ROWS;
    const int nth = T * nrows * K < 4096 ? 1 : g4_kernels_threads();

#pragma omp parallel num_threads(nth)
    {
        const int ith = omp_get_thread_num(), nt = omp_get_num_threads();
        for (int64_t t = ith; t < T; t += nt) {
            uint8_t *a = (uint8_t *)scratch + (uint64_t)t * arow;
            ops->from_float(X + t * ldx, a, K);
            if (aux) pk->prep(K, a, aux + t * auxs);
        }
#pragma omp barrier
        const int64_t ng = g1 - g0, gb = g0 + ng * ith / nt, ge = g0 + ng * (ith + 1) / nt;
        float tile[4 * G4_PACK_ROWS];
        for (int64_t g = gb; g < ge; g++) {
            const uint8_t *w = (const uint8_t *)W->data + (uint64_t)g * gbytes;
            const int64_t r0 = g * G4_PACK_ROWS, lo = r0 < row0 ? row0 - r0 : 0,
                          hi = r0 + G4_PACK_ROWS > row0 + nrows ? row0 + nrows - r0 : G4_PACK_ROWS;
            const int whole = lo == 0 && hi == G4_PACK_ROWS;
            for (int64_t t = 0; t < T; t += 4) {
                const int n = T - t < 4 ? (int)(T - t) : 4;
                const uint8_t *a = (const uint8_t *)scratch + (uint64_t)t * arow;
                if (whole) {
                    pk->gemm(K, w, a, (int64_t)arow, aux ? aux + t * auxs : NULL, auxs, n, t == 0, Y + t * ldy + (r0 - row0), ldy);
                    continue;
                }
                pk->gemm(K, w, a, (int64_t)arow, aux ? aux + t * auxs : NULL, auxs, n, t == 0, tile, G4_PACK_ROWS);
                for (int i = 0; i < n; i++)
                    memcpy(Y + (t + i) * ldy + (r0 + lo - row0), tile + i * G4_PACK_ROWS + lo, (size_t)(hi - lo) * 4);
            }
        }
    }
    return G4_OK;
}

static int s_matmul(const g4_tensor_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx, int64_t T,
                    float *Y, int64_t ldy, void *scratch, int ref)
{
    const g4_type_ops_t *ops;
    int rc = s_check(W, row0, &nrows, &ops);
    if (rc) return rc;
    if (W->packed) return s_matmul_packed(W, ops, row0, nrows, X, ldx, T, Y, ldy, scratch);
    const int64_t K = W->ne[0];
    const uint64_t arow = (g4_dtype_row_bytes(ops->act_type, (uint64_t)K) + 63) & ~(uint64_t)63;
    const g4_vec_dot_fn dot = ref ? ops->vec_dot_ref : ops->vec_dot;
    const g4_from_float_fn conv = ref ? ops->from_float_ref : ops->from_float;
    const g4_vec_dot4_fn dot4 = ref ? NULL : ops->vec_dot4;
    const g4_vec_dot4x2_fn dot4x2 = ref ? NULL : ops->vec_dot4x2;
    const g4_vec_dot4x2_fn dot4x4 = ref ? NULL : ops->vec_dot4x4;
    const g4_vec_dot4x2_fn dot8x4 = ref || !ops->vec_dot4 ? NULL : ops->vec_dot8x4;
    const g4_vec_dot4x2_fn dot1x4 = ref ? NULL : ops->vec_dot1x4;
    const uint8_t *wbase = (const uint8_t *)W->data + (uint64_t)row0 * W->nb[1];
    const uint64_t wstride = W->nb[1];
    const int nth = ref ? 1 : (T * nrows * K < 4096 ? 1 : g4_kernels_threads());

#pragma omp parallel num_threads(nth)
    {
        const int ith = omp_get_thread_num(), nt = omp_get_num_threads();
        /* 1. convert activations (rows split among threads) */
        if (ops->act_type != G4_DTYPE_F32 || ldx != K) {
            for (int64_t t = ith; t < T; t += nt) conv(X + t * ldx, (uint8_t *)scratch + (uint64_t)t * arow, K);
        }
#pragma omp barrier
        const uint8_t *A = (ops->act_type == G4_DTYPE_F32 && ldx == K) ? (const uint8_t *)X : (const uint8_t *)scratch;
        const uint64_t astride = (ops->act_type == G4_DTYPE_F32 && ldx == K) ? (uint64_t)K * 4 : arow;
        /* 2. this thread's rows, in blocks */
        const int64_t r_begin = nrows * ith / nt, r_end = nrows * (ith + 1) / nt;
        for (int64_t r0 = r_begin; r0 < r_end; r0 += G4_MM_ROWS) {
            const int64_t r1 = r0 + G4_MM_ROWS < r_end ? r0 + G4_MM_ROWS : r_end;
            int64_t t = 0;
            if (dot8x4) /* eight activation rows x four weight rows per pass */
                for (; t + 8 <= T; t += 8) {
                    const uint8_t *a = A + (uint64_t)t * astride;
                    float *y = Y + t * ldy;
                    int64_t r = r0;
                    for (; r + 4 <= r1; r += 4)
                        dot8x4(K, &y[r], ldy, wbase + (uint64_t)r * wstride, (int64_t)wstride, a, (int64_t)astride);
                    for (; r < r1; r++) {
                        dot4(K, &y[r], ldy, wbase + (uint64_t)r * wstride, a, (int64_t)astride);
                        dot4(K, &y[r + 4 * ldy], ldy, wbase + (uint64_t)r * wstride, a + 4 * astride, (int64_t)astride);
                    }
                }
            if (dot4) /* four activation rows per pass over a weight row */
                for (; t + 4 <= T; t += 4) {
                    const uint8_t *a = A + (uint64_t)t * astride;
                    float *y = Y + t * ldy;
                    int64_t r = r0;
                    if (dot4x4)
                        for (; r + 4 <= r1; r += 4)
                            dot4x4(K, &y[r], ldy, wbase + (uint64_t)r * wstride, (int64_t)wstride, a, (int64_t)astride);
                    if (dot4x2)
                        for (; r + 2 <= r1; r += 2)
                            dot4x2(K, &y[r], ldy, wbase + (uint64_t)r * wstride, (int64_t)wstride, a, (int64_t)astride);
                    for (; r < r1; r++) dot4(K, &y[r], ldy, wbase + (uint64_t)r * wstride, a, (int64_t)astride);
                }
            for (; t < T; t++) {
                const uint8_t *a = A + (uint64_t)t * astride;
                float *y = Y + t * ldy;
                int64_t r = r0;
                if (dot1x4) /* four weight rows per pass (decode) */
                    for (; r + 4 <= r1; r += 4) dot1x4(K, &y[r], 1, wbase + (uint64_t)r * wstride, (int64_t)wstride, a, 0);
                for (; r < r1; r++) dot(K, &y[r], wbase + (uint64_t)r * wstride, a);
            }
        }
    }
    return G4_OK;
}

int g4_matmul(const g4_tensor_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx, int64_t T, float *Y,
              int64_t ldy, void *scratch)
{
    return s_matmul(W, row0, nrows, X, ldx, T, Y, ldy, scratch, 0);
}

int g4_matmul_ref(const g4_tensor_t *W, int64_t row0, int64_t nrows, const float *X, int64_t ldx, int64_t T,
                  float *Y, int64_t ldy, void *scratch)
{
    return s_matmul(W, row0, nrows, X, ldx, T, Y, ldy, scratch, 1);
}
