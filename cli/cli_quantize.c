/* g4 quantize IN.gguf OUT.gguf TYPE [--threads N] [--json]
 *
 * What llama.cpp's llama-quantize does without an importance matrix, with the
 * same result: tensors in llama.cpp's order (g4_quant_tensor_cmp), each
 * tensor's type from the mix (g4_quant_mix_type: norms, 1-D tensors and the
 * router stay as they are, the tied embedding gets Q6_K, attn_v / ffn_down
 * get more bits in some layers, rows that are not whole blocks fall back),
 * the bytes of ggml's reference quantizers (g4_quant_rows), every metadata key
 * copied in order, then general.quantization_version and general.file_type
 * moved to the end as gguf_set_val_u32 does. Inputs F32 / F16 / BF16;
 * tensors already quantized are copied when the mix keeps them and refused
 * when it would requantize them.
 *
 * Streams: the header first, then one slab of rows at a time, converted by
 * --threads pthreads over rows, so memory stays at a few slabs whatever the
 * file size. Progress on stderr when it is a terminal; one summary line. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_args.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_gguf.h"
#include "g4_gguf_write.h"
#include "g4_quant.h"

#define S_SLAB_ELEMS (1 << 24) /* floats converted per slab (64 MiB of f32) */
#define S_MAX_THREADS 256

typedef struct s_job {
    const uint8_t *src; /* [n_rows] rows of src_type          */
    uint8_t *dst;       /* [n_rows] rows of dst_type          */
    uint32_t src_type, dst_type;
    int64_t n_rows, n_per_row;
    int n_threads;
    float *scratch[S_MAX_THREADS]; /* [n_per_row] f32 each   */
    int failed;
} s_job_t;

typedef struct s_worker {
    s_job_t *job;
    int ith;
} s_worker_t;

static void *s_work(void *arg)
{
    const s_worker_t *wk = arg;
    s_job_t *job = wk->job;
    const uint64_t sb = g4_dtype_row_bytes(job->src_type, (uint64_t)job->n_per_row);
    const uint64_t db = g4_dtype_row_bytes(job->dst_type, (uint64_t)job->n_per_row);
    const int64_t per = (job->n_rows + job->n_threads - 1) / job->n_threads;
    const int64_t r0 = wk->ith * per, r1 = r0 + per < job->n_rows ? r0 + per : job->n_rows;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = (const float *)(job->src + (uint64_t)r * sb);
        if (job->src_type != G4_DTYPE_F32) {
            if (g4_dequant_row(job->src_type, job->src + (uint64_t)r * sb, job->scratch[wk->ith], job->n_per_row)) {
                job->failed = 1;
                return NULL;
            }
            x = job->scratch[wk->ith];
        }
        if (g4_quant_row(job->dst_type, x, job->dst + (uint64_t)r * db, job->n_per_row)) {
            job->failed = 1;
            return NULL;
        }
    }
    return NULL;
}

/* Converts n_rows rows with the job's threads (the calling thread is one of them). */
static int s_convert(s_job_t *job)
{
    pthread_t th[S_MAX_THREADS];
    s_worker_t wk[S_MAX_THREADS];
    int n_started = 0;
    job->failed = 0;
    for (int i = 1; i < job->n_threads; i++) {
        wk[i] = (s_worker_t){job, i};
        if (pthread_create(&th[i], NULL, s_work, &wk[i]) != 0) break;
        n_started = i;
    }
    wk[0] = (s_worker_t){job, 0};
    s_work(&wk[0]);
    for (int i = 1; i <= n_started; i++) pthread_join(th[i], NULL);
    if (n_started != job->n_threads - 1) {
        /* rows of threads that did not start: do them here */
        for (int i = n_started + 1; i < job->n_threads; i++) {
            wk[i] = (s_worker_t){job, i};
            s_work(&wk[i]);
        }
    }
    return job->failed ? -1 : 0;
}

static int s_is_float_type(uint32_t t) { return t == G4_DTYPE_F32 || t == G4_DTYPE_F16 || t == G4_DTYPE_BF16; }

typedef struct s_order {
    const char *name;
    int64_t index;
} s_order_t;

static int s_order_cmp(const void *a, const void *b)
{
    return g4_quant_tensor_cmp(((const s_order_t *)a)->name, ((const s_order_t *)b)->name);
}

static void s_progress(int64_t done, int64_t total, double bytes, double total_bytes, double secs)
{
    const double mbs = secs > 0 ? bytes / 1e6 / secs : 0;
    const double eta = bytes > 0 ? secs * (total_bytes - bytes) / bytes : 0;
    fprintf(stderr, "\r[%4" PRId64 "/%4" PRId64 "] %8.0f / %.0f MB  %7.1f MB/s  ETA %5.0f s ", done, total, bytes / 1e6,
            total_bytes / 1e6, mbs, eta);
}

int cli_quantize(int argc, char **argv)
{
    const char *pos[3] = {0};
    int n_pos = 0, n_threads = (int)sysconf(_SC_NPROCESSORS_ONLN), json = 0;
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "--threads") || !strcmp(argv[i], "-t")) && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_bad_option("quantize", argv[i]);
        } else if (n_pos < 3) pos[n_pos++] = argv[i];
        else {
            cli_error("unexpected argument '%s' (see g4 quantize --help)", argv[i]);
            return 2;
        }
    }
    if (n_pos != 3) {
        cli_error("usage: g4 quantize IN.gguf OUT.gguf TYPE (see g4 quantize --help)");
        return 2;
    }
    const int mix = g4_quant_mix_from_name(pos[2]);
    if (mix < 0) {
        cli_error("quantize: unknown type '%s' (see g4 quantize --help)", pos[2]);
        return 2;
    }
    if (n_threads < 1) n_threads = 1;
    if (n_threads > S_MAX_THREADS) n_threads = S_MAX_THREADS;
    const double t0 = g4_clock_mono_s();

    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(pos[0], &err);
    if (!g) {
        cli_error("%s", err.msg);
        return 1;
    }
    int rc = 1, created = 0;
    FILE *f = NULL;
    g4_gguf_writer_t *w = NULL;
    uint8_t *slab = NULL;
    s_job_t job = {0};
    const int64_t n_t = g4_gguf_n_tensors(g);
    s_order_t *order = g4_calloc((size_t)n_t + 1, sizeof *order);
    const char **names = g4_calloc((size_t)n_t + 1, sizeof *names);
    uint32_t *types = g4_calloc((size_t)n_t + 1, sizeof *types);
    if (!order || !names || !types) goto nomem;

    /* block_count of the architecture, for the per-layer rules */
    const char *arch = NULL;
    uint64_t arch_len = 0;
    uint32_t n_layer = 0;
    char key[256];
    if (g4_gguf_get_str(g, "general.architecture", &arch, &arch_len, &err) == G4_OK && arch_len < 128) {
        snprintf(key, sizeof key, "%.*s.block_count", (int)arch_len, arch);
        if (g4_gguf_get_u32(g, key, &n_layer, &err) != G4_OK) n_layer = 0;
    }
    for (int64_t i = 0; i < n_t; i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        order[i] = (s_order_t){t.name, i};
        names[i] = t.name;
    }
    qsort(order, (size_t)n_t, sizeof *order, s_order_cmp);
    g4_quant_mix_state_t st;
    g4_quant_mix_begin(&st, (g4_quant_mix_t)mix, (int)n_layer, names, n_t);

    /* types, and the refusal to requantize, before anything is written */
    uint64_t in_bytes = 0, max_rows_elems = 0;
    int n_quantized = 0;
    for (int64_t k = 0; k < n_t; k++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, order[k].index, &t);
        const uint32_t nt = g4_quant_mix_type(&st, t.name, t.n_dims, t.ne[0], t.dtype);
        if (nt != t.dtype && !s_is_float_type(t.dtype)) {
            cli_error("quantize: %s is %s; requantizing is not supported (quantize from an F32, F16 or BF16 file)",
                      t.name, g4_dtype_name(t.dtype));
            goto out;
        }
        types[k] = nt;
        in_bytes += t.n_bytes;
        if (nt != t.dtype) {
            n_quantized++;
            if ((uint64_t)t.ne[0] > max_rows_elems) max_rows_elems = (uint64_t)t.ne[0];
        }
    }

    /* metadata: every key in order, then the two llama-quantize sets */
    w = g4_gguf_writer_new(&err);
    if (!w) goto fail;
    const uint32_t align = g4_gguf_alignment(g);
    if (align != 32 && g4_gguf_writer_set_alignment(w, align) != G4_OK) goto nomem;
    for (int64_t i = 0; i < g4_gguf_n_kv(g); i++) {
        const char *k = g4_gguf_key(g, i);
        if (!strcmp(k, "general.quantization_version") || !strcmp(k, "general.file_type") ||
            !strcmp(k, "general.alignment"))
            continue;
        const void *data;
        uint64_t len;
        g4_gguf_type_t ty = g4_gguf_kv_raw(g, i, &data, &len);
        if (g4_gguf_writer_add_raw(w, k, ty, data, len) != G4_OK) goto nomem;
    }
    if (g4_gguf_writer_add_u32(w, "general.quantization_version", 2) != G4_OK ||
        g4_gguf_writer_add_u32(w, "general.file_type", g4_quant_mix_ftype((g4_quant_mix_t)mix)) != G4_OK)
        goto nomem;
    for (int64_t k = 0; k < n_t; k++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, order[k].index, &t);
        if (g4_gguf_writer_add_tensor(w, t.name, (g4_dtype_t)types[k], t.n_dims, t.ne, NULL) != G4_OK) goto nomem;
    }
    f = fopen(pos[1], "wb");
    if (!f) {
        cli_error("%s: %s", pos[1], strerror(errno));
        goto out;
    }
    created = 1;
    if (g4_gguf_writer_write_header(w, f, &err) != G4_OK) goto fail;

    /* tensor data, one slab of rows at a time */
    const size_t slab_cap = (size_t)S_SLAB_ELEMS * 4 + (size_t)max_rows_elems * 4;
    if (n_quantized) {
        slab = g4_malloc(slab_cap);
        if (!slab) goto nomem;
        job.n_threads = n_threads;
        for (int i = 0; i < n_threads; i++) {
            job.scratch[i] = g4_malloc((size_t)max_rows_elems * 4);
            if (!job.scratch[i]) goto nomem;
        }
    }
    const int tty = isatty(2);
    static const uint8_t zeros[64] = {0};
    uint64_t out_bytes = 0, done_bytes = 0;
    double last_print = 0;
    for (int64_t k = 0; k < n_t; k++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, order[k].index, &t);
        const uint32_t nt = types[k];
        uint64_t written = 0;
        if (nt == t.dtype) {
            if (fwrite(t.data, 1, t.n_bytes, f) != t.n_bytes) goto io;
            written = t.n_bytes;
        } else {
            const int64_t n_per_row = t.ne[0], n_rows = g4_tensor_nrows(&t);
            const uint64_t sb = g4_dtype_row_bytes(t.dtype, (uint64_t)n_per_row);
            const uint64_t db = g4_dtype_row_bytes(nt, (uint64_t)n_per_row);
            int64_t step = S_SLAB_ELEMS / n_per_row;
            if (step < 1) step = 1;
            for (int64_t r = 0; r < n_rows; r += step) {
                job.src = (const uint8_t *)t.data + (uint64_t)r * sb;
                job.dst = slab;
                job.src_type = t.dtype;
                job.dst_type = nt;
                job.n_rows = r + step < n_rows ? step : n_rows - r;
                job.n_per_row = n_per_row;
                if (s_convert(&job)) {
                    cli_error("quantize: %s: cannot convert %s to %s", t.name, g4_dtype_name(t.dtype),
                              g4_dtype_name(nt));
                    goto out;
                }
                if (fwrite(slab, 1, (size_t)(db * (uint64_t)job.n_rows), f) != db * (uint64_t)job.n_rows) goto io;
                written += db * (uint64_t)job.n_rows;
                const double now = g4_clock_mono_s();
                if (tty && now - last_print > 0.25) {
                    s_progress(k, n_t, (double)(done_bytes + sb * (uint64_t)(r + job.n_rows)), (double)in_bytes,
                               now - t0);
                    last_print = now;
                }
            }
        }
        for (uint64_t pad = (align - written % align) % align; pad;) {
            const uint64_t c = pad < sizeof zeros ? pad : sizeof zeros;
            if (fwrite(zeros, 1, c, f) != c) goto io;
            pad -= c;
        }
        out_bytes += written;
        done_bytes += t.n_bytes;
        if (tty) s_progress(k + 1, n_t, (double)done_bytes, (double)in_bytes, g4_clock_mono_s() - t0);
    }
    if (fclose(f) != 0) {
        f = NULL;
        goto io;
    }
    f = NULL;
    const double secs = g4_clock_mono_s() - t0;
    if (tty) fputc('\n', stderr);
    fprintf(stderr,
            "quantize: %s -> %s %s: %" PRId64 " tensors (%d converted, %d fallback), %.1f MB -> %.1f MB, %.2f s, "
            "%.1f MB/s, %d threads\n",
            pos[0], pos[1], g4_quant_mix_name((g4_quant_mix_t)mix), n_t, n_quantized, st.n_fallback, in_bytes / 1e6,
            out_bytes / 1e6, secs, secs > 0 ? in_bytes / 1e6 / secs : 0, n_threads);
    if (json) {
        int counts[G4_DTYPE_COUNT] = {0};
        for (int64_t k = 0; k < n_t; k++) counts[types[k]]++;
        printf("{\"in\":\"%s\",\"out\":\"%s\",\"type\":\"%s\",\"file_type\":%u,\"n_tensors\":%" PRId64
               ",\"n_converted\":%d,\"n_fallback\":%d,\"in_bytes\":%" PRIu64 ",\"out_tensor_bytes\":%" PRIu64
               ",\"seconds\":%.3f,\"threads\":%d,\"tensor_types\":{",
               pos[0], pos[1], g4_quant_mix_name((g4_quant_mix_t)mix), g4_quant_mix_ftype((g4_quant_mix_t)mix), n_t,
               n_quantized, st.n_fallback, in_bytes, out_bytes, secs, n_threads);
        int first = 1;
        for (int d = 0; d < G4_DTYPE_COUNT; d++)
            if (counts[d]) printf("%s\"%s\":%d", first ? "" : ",", g4_dtype_name((uint32_t)d), counts[d]), first = 0;
        printf("}}\n");
    }
    rc = 0;
    goto out;
io:
    cli_error("%s: write failed: %s", pos[1], strerror(errno));
    goto out;
nomem:
    cli_error("quantize: out of memory");
    goto out;
fail:
    cli_error("%s", err.msg);
out:
    if (f) fclose(f);
    if (rc && created) unlink(pos[1]);
    for (int i = 0; i < S_MAX_THREADS; i++) g4_free(job.scratch[i]);
    g4_free(slab);
    g4_gguf_writer_destroy(&w);
    g4_free(order);
    g4_free(names);
    g4_free(types);
    g4_gguf_destroy(&g);
    return rc;
}
