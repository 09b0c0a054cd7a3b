/* bench_matvec — weight bytes streamed per second by matrix × vector (decode)
 * for every weight type, against the machine's measured read bandwidth.
 *
 *   bench_matvec [--threads N] [--mb SIZE_MB] [--reps R]
 *
 * Each type's matrix (width 5376, the 31B hidden size) holds about SIZE_MB of
 * weights, far more than the caches, so this measures DRAM
 * streaming. Read bandwidth: the same threads streaming a buffer of the same
 * size through the F32 dot kernel.
 * Prints one line per type and a JSON summary line. Medians of R reps. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_dot.h"
#include "g4_matmul.h"
#include "g4_pack.h"

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    return v[n / 2];
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 7;
    double mb = 512;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mb") && i + 1 < argc) mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_matvec [--threads N] [--mb SIZE_MB] [--reps R]\n");
            return 2;
        }
    }
    if (threads > 0) g4_kernels_set_threads(threads);
    threads = g4_kernels_threads();
    const size_t bytes = (size_t)(mb * 1048576.0);

    /* read bandwidth */
    uint64_t *buf = g4_malloc_aligned(bytes, 64);
    if (!buf) return 1;
    memset(buf, 1, bytes);
    double bw[64];
    /* each thread streams its slice once through the widest F32 dot kernel
     * (dot of the slice with itself reads every byte once) */
    const g4_type_ops_t *f32 = g4_type_ops(G4_DTYPE_F32);
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = g4_clock_mono_ns();
        float sink = 0;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
        {
            const int64_t n = (int64_t)(bytes / 4), nt = omp_get_num_threads(), it = omp_get_thread_num();
            const int64_t a = n * it / nt, b = n * (it + 1) / nt;
            float s;
            f32->vec_dot(b - a, &s, (const float *)buf + a, (const float *)buf + a);
            sink += s;
        }
        double s = (double)(g4_clock_mono_ns() - t0) * 1e-9;
        bw[r] = (double)bytes / s / 1e9;
        if (sink == 42.f) puts("");
    }
    const double read_gbs = s_median(bw, reps);
    g4_free_aligned(buf);
    printf("isa %s, threads %d, buffer %.0f MiB, read bandwidth %.1f GB/s\n", g4_kernels_isa(), threads, mb, read_gbs);

    static const g4_dtype_t types[] = {G4_DTYPE_F32, G4_DTYPE_F16, G4_DTYPE_BF16, G4_DTYPE_Q8_0, G4_DTYPE_Q4_0,
                                       G4_DTYPE_Q4_1, G4_DTYPE_Q5_0, G4_DTYPE_Q5_1, G4_DTYPE_Q4_K, G4_DTYPE_Q5_K,
                                       G4_DTYPE_Q6_K};
    const int64_t K = 5376; /* the 31B width */
    printf("{\"read_gbs\":%.2f,\"threads\":%d,\"isa\":\"%s\",\"types\":{", read_gbs, threads, g4_kernels_isa());
    fflush(stdout);
    char line[8192] = "";
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const g4_dtype_t t = types[ti];
        const uint64_t rowb = g4_dtype_row_bytes(t, K);
        const int64_t N = (int64_t)(bytes / rowb);
        uint8_t *w = g4_malloc_aligned((size_t)rowb * (size_t)N, 64);
        float *x = g4_malloc((size_t)K * 4), *y = g4_malloc((size_t)N * 4), *row = g4_malloc((size_t)K * 4);
        void *scr = g4_malloc_aligned(g4_matmul_scratch_bytes(t, K, 1) + 64, 64);
        if (!w || !x || !y || !row || !scr) return 1;
        for (int64_t k = 0; k < K; k++) x[k] = (float)((k * 7919) % 1000) / 1000.f - 0.5f, row[k] = x[k] * 0.01f;
        uint8_t *qrow = g4_malloc((size_t)rowb);
        g4_quant_row(t, row, qrow, K);
#pragma omp parallel for num_threads(threads) schedule(static)
        for (int64_t r = 0; r < N; r++) memcpy(w + (uint64_t)r * rowb, qrow, rowb);
        g4_tensor_t W = {.name = "w", .data = w, .dtype = t, .n_dims = 2, .ne = {K, N, 1, 1}};
        W.nb[0] = g4_dtype_traits(t)->type_size;
        W.nb[1] = rowb;
        double gbs[64];
        g4_matmul(&W, 0, -1, x, K, 1, y, N, scr); /* warm-up */
        for (int r = 0; r < reps; r++) {
            uint64_t t0 = g4_clock_mono_ns();
            g4_matmul(&W, 0, -1, x, K, 1, y, N, scr);
            gbs[r] = (double)rowb * (double)N / ((double)(g4_clock_mono_ns() - t0) * 1e-9) / 1e9;
        }
        const double med = s_median(gbs, reps);
        char item[160];
        snprintf(item, sizeof item, "%s\"%s\":{\"gbs\":%.2f,\"of_read\":%.3f}", ti ? "," : "", g4_dtype_name(t), med,
                 med / read_gbs);
        strcat(line, item);
        fprintf(stderr, "  %-5s %7.2f GB/s  %5.1f%% of read bandwidth\n", g4_dtype_name(t), med, 100 * med / read_gbs);
        /* the same matrix packed (g4_pack.h), as the model's weight copy holds it */
        const int64_t NP = N / G4_PACK_ROWS * G4_PACK_ROWS;
        uint8_t *wp = g4_pack_able(t, K, NP) ? g4_malloc_aligned((size_t)rowb * (size_t)NP, 64) : NULL;
        if (wp) {
            g4_pack_rows(t, K, w, rowb, NP / G4_PACK_ROWS, wp);
            g4_tensor_t P = W;
            P.data = wp, P.packed = 1, P.ne[1] = NP;
            g4_matmul(&P, 0, -1, x, K, 1, y, NP, scr);
            for (int r = 0; r < reps; r++) {
                uint64_t t0 = g4_clock_mono_ns();
                g4_matmul(&P, 0, -1, x, K, 1, y, NP, scr);
                gbs[r] = (double)rowb * (double)NP / ((double)(g4_clock_mono_ns() - t0) * 1e-9) / 1e9;
            }
            const double pm = s_median(gbs, reps);
            snprintf(item, sizeof item, ",\"%s_packed\":{\"gbs\":%.2f,\"of_read\":%.3f}", g4_dtype_name(t), pm,
                     pm / read_gbs);
            strcat(line, item);
            fprintf(stderr, "  %-5s %7.2f GB/s  %5.1f%% of read bandwidth (packed)\n", g4_dtype_name(t), pm,
                    100 * pm / read_gbs);
            g4_free_aligned(wp);
        }
        g4_free_aligned(w);
        g4_free_aligned(scr);
        g4_free(x);
        g4_free(y);
        g4_free(row);
        g4_free(qrow);
    }
    printf("%s}}\n", line);
    return 0;
}
