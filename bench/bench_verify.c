/* bench_verify — what a speculative pass costs against a plain decode step,
 * on one model in this process:
 *
 *   bench_verify -m MODEL.gguf [-p 512] [-k 4] [--reps 8] [--draft ASSISTANT.gguf] [-t THREADS]
 *
 * After a prompt of -p random ids: the median time of a plain decode step (one
 * row), of a verification pass of 1 + k rows (G4_ROW_STEP, every row's logits)
 * with the rewind to one kept row, and (--draft) of one assistant step; each
 * measured --reps times at the same position (the sequence rewound between),
 * alternating so a busy machine weighs on all alike. Prints one JSON line
 * with the times and the speed-up speculation would give at acceptance
 * 0.6 / 0.8 / 0.9 (per drafted id, independent): E[ids per pass] =
 * (1 - a^(k+1)) / (1 - a), cost per pass = verify + k draft steps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_draft.h"
#include "g4_matmul.h"
#include "g4_model.h"

static int s_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double s_ms(uint64_t t0) { return (double)(g4_clock_mono_ns() - t0) / 1e6; }

int main(int argc, char **argv)
{
    const char *model = NULL, *draft = NULL;
    int np = 512, k = 4, reps = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m")) model = argv[i + 1];
        else if (!strcmp(argv[i], "-p")) np = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-k")) k = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--draft")) draft = argv[i + 1];
        else if (!strcmp(argv[i], "-t")) g4_kernels_set_threads(atoi(argv[i + 1]));
    }
    if (!model || np < 1 || k < 1 || k > 64 || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: bench_verify -m MODEL.gguf [-p 512] [-k 4] [--reps 8] [--draft ASSISTANT.gguf] [-t N]\n");
        return 2;
    }
    g4_err_t err;
    g4_model_t *m = g4_model_load(model, 0, -1, &err);
    if (!m) {
        fprintf(stderr, "bench_verify: %s\n", err.msg);
        return 1;
    }
    g4_model_warm(m, G4_WEIGHTS_COPY);
    g4_model_warmed(m, 1, NULL);
    const g4_hparams_t *hp = g4_model_hparams(m);
    const int V = (int)hp->n_vocab, H = (int)hp->n_embd;
    g4_ctx_params_t cp = {.n_ctx = np + k + 8, .n_ubatch = 512, .n_seq_max = 1};
    g4_ctx_t *c = g4_ctx_new(m, &cp, &err);
    g4_draft_t *d = c && draft ? g4_draft_load(draft, m, &err) : NULL;
    const int seq = c ? g4_seq_new(c, &err) : -1;
    int32_t *ids = g4_malloc((size_t)(np + k + 1) * sizeof *ids), *pos = g4_malloc((size_t)(np + k + 1) * sizeof *pos);
    int32_t *sq = g4_malloc((size_t)(np + k + 1) * sizeof *sq);
    int8_t *fl = g4_malloc((size_t)k + 1);
    float *logits = g4_malloc((size_t)(k + 1) * V * sizeof *logits), *h = g4_malloc((size_t)(k + 1) * H * sizeof *h);
    double *t_step = g4_malloc((size_t)reps * sizeof(double)), *t_ver = g4_malloc((size_t)reps * sizeof(double));
    double *t_draft = g4_malloc((size_t)reps * sizeof(double));
    if (!c || (draft && !d) || seq < 0 || !ids || !pos || !sq || !fl || !logits || !h || !t_step || !t_ver || !t_draft) {
        fprintf(stderr, "bench_verify: %s\n", err.msg);
        return 1;
    }
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < np + k + 1; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = i ? 300 + (int32_t)(x % (uint64_t)(V > 12300 ? 12000 : V - 300)) : 2;
        pos[i] = i, sq[i] = seq;
    }
    for (int i = 0; i <= k; i++) fl[i] = G4_ROW_STEP;
    const uint64_t t0 = g4_clock_mono_ns();
    for (int off = 0; off < np; off += 512) {
        g4_batch_t b = {np - off < 512 ? np - off : 512, ids + off, NULL, pos + off, sq + off, NULL, NULL};
        int8_t want[512] = {0};
        b.want_logits = want;
        if (g4_ctx_forward(c, &b, NULL, NULL, NULL, logits, &err)) {
            fprintf(stderr, "bench_verify: %s\n", err.msg);
            return 1;
        }
    }
    const double prefill_ms = s_ms(t0);
    for (int r = -1; r < reps; r++) { /* r = -1: untimed */
        g4_draft_mark_t mk;
        g4_draft_mark(c, seq, &mk, &err);
        g4_batch_t one = {1, ids + np, NULL, pos + np, sq + np, NULL, NULL};
        uint64_t t = g4_clock_mono_ns();
        g4_ctx_forward(c, &one, NULL, NULL, NULL, logits, &err);
        if (r >= 0) t_step[r] = s_ms(t);
        g4_draft_rewind(c, seq, &mk, 0, &err);
        g4_batch_t ver = {k + 1, ids + np, NULL, pos + np, sq + np, NULL, fl};
        t = g4_clock_mono_ns();
        g4_ctx_forward(c, &ver, NULL, NULL, h, logits, &err);
        g4_draft_rewind(c, seq, &mk, 1, &err);
        if (r >= 0) t_ver[r] = s_ms(t);
        g4_draft_rewind(c, seq, &mk, 0, &err);
        g4_draft_unmark(&mk);
        if (d) {
            g4_draft_target_h(m, h, h);
            t = g4_clock_mono_ns();
            g4_draft_step(d, c, seq, ids[np], h, np, logits, h, &err);
            if (r >= 0) t_draft[r] = s_ms(t);
        }
    }
    const double step = s_median(t_step, reps), ver = s_median(t_ver, reps), dstep = d ? s_median(t_draft, reps) : 0;
    printf("{\"model\": \"%s\", \"n_prompt\": %d, \"k\": %d, \"reps\": %d, \"threads\": %d, \"prefill_ms\": %.1f, "
           "\"step_ms\": %.2f, \"verify_ms\": %.2f, \"verify_over_step\": %.3f, \"draft_step_ms\": %.3f, \"speedup\": {",
           model, np, k, reps, g4_kernels_threads(), prefill_ms, step, ver, ver / step, dstep);
    const double acc[3] = {0.6, 0.8, 0.9};
    for (int i = 0; i < 3; i++) {
        double a = acc[i], e = 0, p = 1;
        for (int j = 0; j <= k; j++) e += p, p *= a; /* 1 + a + ... + a^k */
        printf("%s\"%.1f\": %.2f", i ? ", " : "", a, e * step / (ver + k * dstep));
    }
    printf("}}\n");
    g4_draft_destroy(&d);
    g4_ctx_destroy(&c);
    g4_model_destroy(&m);
    g4_free(ids), g4_free(pos), g4_free(sq), g4_free(fl), g4_free(logits), g4_free(h);
    g4_free(t_step), g4_free(t_ver), g4_free(t_draft);
    return 0;
}
