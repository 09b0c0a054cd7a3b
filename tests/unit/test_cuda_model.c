/* The model on a GPU against the CPU (core/model/g4_forward_cuda.c): on
 * every test model a prompt, then decode steps. Teacher-forced (both fed the
 * CPU's greedy ids) each step's logits must agree: relative L2 difference
 * under 2 %, and the GPU's top id among the CPU's best three (the test
 * models are random and chaotic: the GPU's kernels follow the CPU's
 * arithmetic, but a 1e-5 difference after a few layers can flip a near
 * tie); free-running, the greedy ids are printed against the CPU's and, with
 * G4_CUDA_STRICT=1 (tests/cuda/device-check.sh), must be equal. The model
 * split GPU + CPU, CPU + GPU and GPU + GPU (two contexts on one device, as
 * two shards) with hidden states and K/V rows handed on; forks and the
 * prefix cache's save and restore copy device rows. Runs on a GPU, or on the
 * host emulation of the CUDA API (g4_unit_emu: the device pass's buffers,
 * strides, tables and copies, with each kernel its CPU twin); SKIP without
 * either. */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_cuda.h"
#include "g4_model.h"
#include "g4_prefix.h"
#include "g4_test.h"

#define S_PROMPT 40
#define S_STEPS 12

/* a chain of one or two stages (contexts), each on the CPU or a GPU */
typedef struct {
    g4_model_t *m[2];
    g4_ctx_t *c[2];
    int seq[2];
    int n;
} s_chain_t;

static int s_argmax(const float *l, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[b]) b = i;
    return b;
}

/* the prompt, then S_STEPS decode steps: forced[step] (or, when forced is
 * NULL, the greedy id of the step before) fed; ids[step] the greedy id of
 * each step's logits, lg[step] (may be NULL) the logits */
static int s_run(s_chain_t *ch, const g4_hparams_t *hp, const int32_t *forced, int32_t *ids, float *lg_all, g4_err_t *err)
{
    const int H = (int)hp->n_embd, PW = (int)(hp->n_layer * hp->ple_dim), V = (int)hp->n_vocab;
    int32_t tok[S_PROMPT], pos[S_PROMPT], sq[2][S_PROMPT];
    for (int i = 0; i < S_PROMPT; i++) {
        tok[i] = i ? 300 + (i * 7919) % 9000 : 2, pos[i] = i;
        for (int s = 0; s < ch->n; s++) sq[s][i] = ch->seq[s];
    }
    float *hid = g4_malloc((size_t)S_PROMPT * H * 4), *ple = g4_malloc((size_t)S_PROMPT * (PW ? PW : 1) * 4);
    float *lg = g4_malloc((size_t)V * 4);
    uint8_t *kv = ch->n > 1 ? g4_malloc(g4_ctx_kv_export_bytes(ch->c[0], S_PROMPT) + 1) : NULL;
    int rc = !hid || !ple || !lg || (ch->n > 1 && !kv);
    int8_t want[S_PROMPT] = {0};
    want[S_PROMPT - 1] = 1;
    for (int step = 0; !rc && step <= S_STEPS; step++) {
        const int T = step ? 1 : S_PROMPT;
        int32_t t1 = step ? (forced ? forced[step - 1] : ids[step - 1]) : 0, p1 = S_PROMPT + step - 1;
        for (int s = 0; !rc && s < ch->n; s++) {
            g4_batch_t b = {T, step ? &t1 : tok, NULL, step ? &p1 : pos, step ? &ch->seq[s] : sq[s], step ? NULL : want, NULL};
            const int last = s == ch->n - 1;
            if (s > 0) {
                const size_t kvn = g4_ctx_kv_export(ch->c[0], &b, kv);
                rc = g4_ctx_kv_import(ch->c[s], &b, kv, kvn, err);
            }
            if (!rc) rc = g4_ctx_forward(ch->c[s], &b, s ? hid : NULL, PW ? ple : NULL, last ? NULL : hid, last ? lg : NULL, err);
        }
        if (rc) break;
        if (lg_all) memcpy(lg_all + (size_t)step * V, lg, (size_t)V * 4);
        ids[step] = s_argmax(lg, V);
    }
    g4_free(hid), g4_free(ple), g4_free(lg), g4_free(kv);
    return rc;
}

/* stages at split (0: one) on devices gpu0, gpu1 (0: CPU, N + 1: cuda:N) */
static int s_chain(s_chain_t *ch, g4_gguf_t *g, int split, int gpu0, int gpu1, g4_err_t *err)
{
    memset(ch, 0, sizeof *ch);
    ch->n = split ? 2 : 1;
    for (int s = 0; s < ch->n; s++) {
        const int b = s ? split : 0, e = split && !s ? split : -1;
        if (!(ch->m[s] = g4_model_load_gguf(g, b, e, err))) return 1;
        g4_ctx_params_t cp = {.n_ctx = 128, .n_ubatch = 64, .n_seq_max = 2, .gpu = s ? gpu1 : gpu0};
        if (!(ch->c[s] = g4_ctx_new(ch->m[s], &cp, err))) return 1;
        if ((ch->seq[s] = g4_seq_new(ch->c[s], err)) < 0) return 1;
    }
    return 0;
}

static void s_chain_free(s_chain_t *ch)
{
    for (int s = 0; s < 2; s++) g4_ctx_destroy(&ch->c[s]), g4_model_destroy(&ch->m[s]);
}

static int s_model_check(const char *td, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", td, name);
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    if (!g) {
        printf("  %s: not found, skipped\n", name);
        return 0;
    }
    const int strict = getenv("G4_CUDA_STRICT") && atoi(getenv("G4_CUDA_STRICT"));
    s_chain_t cpu, gpu;
    REQUIRE(!s_chain(&cpu, g, 0, 0, 0, &err));
    const g4_hparams_t hp = *g4_model_hparams(cpu.m[0]);
    const int L = (int)hp.n_layer, V = (int)hp.n_vocab, NS = S_STEPS + 1;
    int32_t ref[S_STEPS + 1], got[S_STEPS + 1], free_ids[S_STEPS + 1];
    float *l_ref = g4_malloc((size_t)NS * V * 4), *l_got = g4_malloc((size_t)NS * V * 4);
    REQUIRE(l_ref && l_got);
    REQUIRE(!s_run(&cpu, &hp, NULL, ref, l_ref, &err));
    s_chain_free(&cpu);
    /* the whole model on the GPU, then split GPU + CPU, CPU + GPU, GPU + GPU (one device, two contexts) */
    static const char *const cname[4] = {"gpu", "gpu+cpu", "cpu+gpu", "gpu+gpu"};
    const int cfg[4][3] = {{0, 1, 0}, {L / 2, 1, 0}, {L / 2, 0, 1}, {L / 2, 1, 1}};
    for (int k = 0; k < 4; k++) {
        int rc = s_chain(&gpu, g, cfg[k][0], cfg[k][1], cfg[k][2], &err);
        if (!rc) rc = s_run(&gpu, &hp, ref, got, l_got, &err); /* teacher-forced */
        CHECKF(!rc, "%s %s: %s", name, cname[k], err.msg);
        s_chain_free(&gpu);
        if (rc) continue;
        double worst_rel = 0, worst_abs = 0;
        int worst_rank = 0;
        for (int st = 0; st < NS; st++) {
            const float *c = l_ref + (size_t)st * V, *q = l_got + (size_t)st * V;
            double mean = 0, num = 0, den = 0;
            for (int i = 0; i < V; i++) mean += c[i];
            mean /= V;
            for (int i = 0; i < V; i++) {
                num += ((double)q[i] - c[i]) * ((double)q[i] - c[i]), den += (c[i] - mean) * (c[i] - mean);
                worst_abs = fabs((double)q[i] - c[i]) > worst_abs ? fabs((double)q[i] - c[i]) : worst_abs;
            }
            const double rel = sqrt(num / (den > 0 ? den : 1));
            int rank = 0; /* the CPU's ids above the GPU's choice */
            for (int i = 0; i < V; i++) rank += c[i] > c[got[st]];
            worst_rel = rel > worst_rel ? rel : worst_rel, worst_rank = rank > worst_rank ? rank : worst_rank;
        }
        /* free-running greedy ids */
        int same = 1;
        if (!s_chain(&gpu, g, cfg[k][0], cfg[k][1], cfg[k][2], &err) && !s_run(&gpu, &hp, NULL, free_ids, NULL, &err))
            for (int i = 0; i < NS; i++) same &= free_ids[i] == ref[i];
        else
            same = -1;
        s_chain_free(&gpu);
        printf("  %-22s %-8s logits: max diff %.3g, relative L2 %.2g; top id rank %d; greedy ids %s\n", name, cname[k],
               worst_abs, worst_rel, worst_rank, same == 1 ? "same" : same == 0 ? "DIFFER" : "failed");
        CHECKF(worst_rel <= 0.02 && worst_rank <= 2, "%s %s: logits off the CPU's (relative %g, rank %d)", name, cname[k],
               worst_rel, worst_rank);
        CHECKF(same >= 0, "%s %s: free run failed", name, cname[k]);
        if (strict) CHECKF(same == 1, "%s %s: greedy ids differ from the CPU's", name, cname[k]);
    }
    g4_free(l_ref), g4_free(l_got);
    g4_gguf_destroy(&g);
    return 0;
}

/* fork and the prefix cache on the device: a forked sequence and one
 * restored from saved chunks continue exactly like the original */
static int s_rows_check(const char *td)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/dense-f16.gguf", td);
    g4_err_t err;
    g4_model_t *m = g4_model_load(path, 0, -1, &err);
    if (!m) return 0;
    const int V = (int)g4_model_hparams(m)->n_vocab;
    g4_ctx_params_t cp = {.n_ctx = 128, .n_ubatch = 32, .n_seq_max = 4, .gpu = 1};
    g4_ctx_t *c = g4_ctx_new(m, &cp, &err);
    REQUIRE(c);
    const int s = g4_seq_new(c, &err);
    int32_t tok[32], pos[32], sq[32];
    for (int i = 0; i < 32; i++) tok[i] = 2 + (i * 131) % 9000, pos[i] = i, sq[i] = s;
    float *l1 = g4_malloc((size_t)32 * V * 4), *l2 = g4_malloc((size_t)32 * V * 4);
    g4_batch_t b = {32, tok, NULL, pos, sq, NULL, NULL};
    REQUIRE(g4_ctx_forward(c, &b, NULL, NULL, NULL, l1, &err) == 0);
    g4_kv_chunk_t *chunk = g4_ctx_chunk_save(c, s, 0, 32, &err);
    REQUIRE(chunk);
    const int f = g4_seq_fork(c, s, &err), r = g4_seq_new(c, &err);
    REQUIRE(f >= 0 && r >= 0);
    REQUIRE(g4_ctx_chunk_restore(c, r, &chunk, 1, 32, 32, &err) == 0);
    int32_t t1 = 777, p1 = 32;
    const int ids[3] = {s, f, r};
    for (int k = 0; k < 3; k++) {
        g4_batch_t d = {1, &t1, NULL, &p1, &ids[k], NULL, NULL};
        REQUIRE(g4_ctx_forward(c, &d, NULL, NULL, NULL, k ? l2 : l1, &err) == 0);
        if (k) CHECKF(!memcmp(l1, l2, (size_t)V * 4), "%s continues differently on the GPU", k == 1 ? "a fork" : "a restore");
    }
    g4_kv_chunk_free(&chunk);
    g4_free(l1), g4_free(l2);
    g4_ctx_destroy(&c);
    g4_model_destroy(&m);
    return 0;
}

int test_cuda_model(void)
{
    if (!g4_cu_available()) {
        printf("SKIP: built without the CUDA backend\n");
        return G4_TEST_SKIP;
    }
#ifdef G4_UNIT_EMU
    printf("the device pass on the host emulation of the CUDA API (each kernel its CPU twin)\n");
#endif
    if (g4_cu_device_count() == 0) {
        printf("SKIP: no CUDA device (the GPU checks run on a machine with one)\n");
        return G4_TEST_SKIP;
    }
    const char *td = g4_test_testdata();
    if (!td) return G4_TEST_SKIP;
    static const char *const models[] = {"dense-f32.gguf",       "dense-f16.gguf",    "dense-bf16.gguf",    "dense-q8_0.gguf",
                                         "dense-q4_0.gguf",      "dense256-q4_k.gguf", "dense256-q4_k_m.gguf", "dense256-q6_k.gguf",
                                         "dense-kv-f32.gguf",    "e-f32.gguf",        "e-q8_0.gguf",        "moe-f32.gguf",
                                         "moe-q8_0.gguf"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) s_model_check(td, models[i]);
    s_rows_check(td);
    return g4_test_failures;
}
