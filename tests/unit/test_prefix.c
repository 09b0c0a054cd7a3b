/* Tests of the prefix cache's model side (core/model/g4_prefix.c): a prompt
 * B restored from the chunks prompt A saved, at every block boundary of
 * their shared prefix and at the chunk boundaries, computes bit-identical
 * logits — every row after the restore, then decode steps — to a cold
 * prefill of B in the same ubatches. Dense, MoE and E models (KV sharing, and
 * a range that imports the caches of its KV-sharing layers), sliding windows
 * of several sizes (shorter and longer than a ubatch), ubatches that take the
 * tiled and the single-query attention kernels, F16 and Q8_0 caches. */
#include <string.h>

#include "g4_alloc.h"
#include "g4_model.h"
#include "g4_prefix.h"
#include "g4_test.h"

enum { MAXC = 64 };

/* one range [begin, end) of a model and its context */
typedef struct stage {
    g4_model_t *m;
    g4_ctx_t *c;
} stage_t;

typedef struct run {
    stage_t st[2];
    int n_st, V, H, PW;
    float *hid, *ple;
    uint8_t *kv;
} run_t;

/* feeds rows [p0, p1) of tok to sequence `seq` of every stage (as one call);
 * logits of every row into lg ([p1 - p0][V]), the last stage's */
static int s_feed(run_t *r, int seq, const int32_t *tok, int p0, int p1, float *lg, int step)
{
    const int n = p1 - p0;
    int32_t pos[512], sq[512];
    int8_t fl[512];
    for (int i = 0; i < n; i++) pos[i] = p0 + i, sq[i] = seq, fl[i] = step ? G4_ROW_STEP : 0;
    g4_err_t err;
    for (int k = 0; k < r->n_st; k++) {
        g4_batch_t b = {n, tok + p0, NULL, pos, sq, NULL, fl};
        const int last = k == r->n_st - 1;
        if (k > 0 && r->kv) {
            size_t kvn = g4_ctx_kv_export(r->st[k - 1].c, &b, r->kv);
            if (g4_ctx_kv_import(r->st[k].c, &b, r->kv, kvn, &err)) return -1;
        }
        if (g4_ctx_forward(r->st[k].c, &b, k ? r->hid : NULL, r->PW ? r->ple : NULL, last ? NULL : r->hid,
                           last ? lg : NULL, &err)) {
            fprintf(stderr, "forward: %s\n", err.msg);
            return -1;
        }
    }
    return 0;
}

/* ubatch class: the attention kernel a ubatch of n rows of one sequence takes */
static int s_class(int n) { return n == 1 ? 0 : n < 64 ? 1 : 2; }

/* P shared tokens, A is NA long, B NB (0: from U) */
static int s_prefix_case(const char *td, const char *name, int split, int n_swa, int U, int kv_type, int P_, int NA_, int NB_)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", td, name);
    g4_err_t err;
    run_t r = {0};
    r.n_st = split ? 2 : 1;
    for (int k = 0; k < r.n_st; k++) {
        r.st[k].m = g4_model_load(path, k ? split : 0, split && !k ? split : -1, &err);
        REQUIRE(r.st[k].m);
        /* the window is the model's; any size is a valid model */
        if (n_swa) ((g4_hparams_t *)g4_model_hparams(r.st[k].m))->n_swa = (uint32_t)n_swa;
        g4_ctx_params_t cp = {.n_ctx = 1024, .n_ubatch = U, .n_seq_max = 4, .kv_type = kv_type, .attn_splits = 3};
        r.st[k].c = g4_ctx_new(r.st[k].m, &cp, &err);
        REQUIRE(r.st[k].c);
    }
    const g4_hparams_t *hp = g4_model_hparams(r.st[0].m);
    r.V = (int)hp->n_vocab, r.H = (int)hp->n_embd, r.PW = (int)(hp->n_layer * hp->ple_dim);
    r.hid = g4_malloc((size_t)U * r.H * 4), r.ple = g4_malloc((size_t)U * (r.PW ? r.PW : 1) * 4);
    if (split) r.kv = g4_malloc(g4_ctx_kv_export_bytes(r.st[0].c, U) + 1);
    /* A and B share P tokens; A is NA long, B is NB */
    const int P = P_ ? P_ : 3 * U + U / 2 + 5, NA = NA_ ? NA_ : P + U / 3 + 9, NB = NB_ ? NB_ : P + 2 * U + 3, NG = 6;
    int32_t *ta = g4_malloc(NA * 4), *tb = g4_malloc((NB + NG) * 4);
    const int NL = NA + 1 > NB + NG ? NA + 1 : NB + NG; /* (A's logits land in cold first) */
    float *cold = g4_malloc((size_t)NL * r.V * 4), *warm = g4_malloc((size_t)NL * r.V * 4);
    REQUIRE(r.hid && r.ple && ta && tb && cold && warm);
    uint64_t rng = 11u + (uint64_t)U * 7u + (uint64_t)n_swa;
    for (int i = 0; i < NB + NG; i++) tb[i] = 2 + (int)(g4_test_rand(&rng) % 3000);
    for (int i = 0; i < NA; i++) ta[i] = i < P ? tb[i] : 2 + (int)(g4_test_rand(&rng) % 3000);
    /* A cold, in ubatches of U; every chunk kept */
    g4_kv_chunk_t *ch[2][MAXC];
    int nch = 0;
    int sa[2];
    for (int k = 0; k < r.n_st; k++) sa[k] = g4_seq_new(r.st[k].c, &err);
    REQUIRE(sa[0] >= 0 && (!split || sa[1] >= 0));
    for (int p = 0; p < NA; p += U) {
        const int e = p + U < NA ? p + U : NA;
        REQUIRE(s_feed(&r, sa[0], ta, p, e, cold, 0) == 0);
        for (int k = 0; k < r.n_st; k++) {
            ch[k][nch] = g4_ctx_chunk_save(r.st[k].c, sa[k], p, e, &err);
            CHECKF(ch[k][nch] != NULL, "save: %s", err.msg);
            if (!ch[k][nch]) return 0;
        }
        nch++;
    }
    for (int k = 0; k < r.n_st; k++) g4_seq_release(r.st[k].c, sa[k]);
    /* B cold: chunks of U from 0, then NG decode steps */
    int sb[2];
    for (int k = 0; k < r.n_st; k++) sb[k] = g4_seq_new(r.st[k].c, &err);
    for (int p = 0; p < NB; p += U) REQUIRE(s_feed(&r, sb[0], tb, p, p + U < NB ? p + U : NB, cold + (size_t)p * r.V, 0) == 0);
    for (int i = 0; i < NG; i++) REQUIRE(s_feed(&r, sb[0], tb, NB + i, NB + i + 1, cold + (size_t)(NB + i) * r.V, 1) == 0);
    for (int k = 0; k < r.n_st; k++) g4_seq_release(r.st[k].c, sb[k]);
    /* B restored at L: every 16th position of the shared prefix, and P */
    int tested = 0;
    const int step = P > 400 ? 64 : 16;
    for (int L = step; L <= P; L = L + step > P && L != P ? P : L + step) {
        /* the saved chunk holding L (the later one when L ends one and starts the next) */
        int x = L / U < nch ? L / U : nch - 1;
        int xb, xe;
        g4_kv_chunk_info(ch[0][x], &xb, &xe, NULL);
        if (L > xe) continue;
        const int vstart = L % U ? L / U * U : L;
        const int cold_n = (vstart + U < NB ? vstart + U : NB) - vstart;
        if (vstart < L && s_class(xe - xb) != s_class(cold_n)) continue; /* (the scheduler restores less there) */
        for (int k = 0; k < r.n_st; k++) {
            sb[k] = g4_seq_new(r.st[k].c, &err);
            int rc = g4_ctx_chunk_restore(r.st[k].c, sb[k], ch[k], x + 1, L, vstart, &err);
            CHECKF(rc == 0, "restore at %d: %s", L, err.msg);
            if (rc) return 0;
        }
        memset(warm, 0, (size_t)(NB + NG) * r.V * 4);
        for (int p = L; p < NB;) {
            const int e = p == L ? (vstart + U < NB ? vstart + U : NB) : (p + U < NB ? p + U : NB);
            REQUIRE(s_feed(&r, sb[0], tb, p, e, warm + (size_t)p * r.V, 0) == 0);
            p = e;
        }
        for (int i = 0; i < NG; i++) REQUIRE(s_feed(&r, sb[0], tb, NB + i, NB + i + 1, warm + (size_t)(NB + i) * r.V, 1) == 0);
        const size_t from = (size_t)L * r.V, len = (size_t)(NB + NG - L) * r.V;
        CHECKF(!memcmp(cold + from, warm + from, len * 4), "%s split %d window %d ubatch %d kv %d: restored at %d differs",
               name, split, n_swa, U, kv_type, L);
        for (int k = 0; k < r.n_st; k++) g4_seq_release(r.st[k].c, sb[k]);
        tested++;
    }
    CHECKF(tested >= 4, "%s: only %d restore points tested", name, tested);
    /* a restore that cannot be exact is refused */
    for (int k = 0; k < 1; k++) {
        const int s = g4_seq_new(r.st[k].c, &err);
        CHECK(g4_ctx_chunk_restore(r.st[k].c, s, ch[k] + 1, 1, U + 1, U + 1, &err) != 0); /* not from 0 */
        CHECK(g4_ctx_chunk_restore(r.st[k].c, s, ch[k], 2, U + 3, U + 2, &err) != 0);    /* ubatch start inside */
        CHECK(g4_ctx_chunk_restore(r.st[k].c, s, ch[k], 1, U + 3, U, &err) != 0);        /* past the chunk */
        g4_seq_release(r.st[k].c, s);
    }
    for (int k = 0; k < r.n_st; k++) {
        for (int i = 0; i < nch; i++) g4_kv_chunk_free(&ch[k][i]);
        g4_ctx_destroy(&r.st[k].c);
        g4_model_destroy(&r.st[k].m);
    }
    g4_free(r.hid), g4_free(r.ple), g4_free(r.kv), g4_free(ta), g4_free(tb), g4_free(cold), g4_free(warm);
    return 0;
}

static int s_prefix_check(const char *td, const char *name, int split, int n_swa, int U, int kv_type)
{
    return s_prefix_case(td, name, split, n_swa, U, kv_type, 0, 0, 0);
}

int test_prefix(void)
{
    const char *td = g4_test_testdata();
    if (!td) return G4_TEST_SKIP;
    /* windows shorter and longer than the ubatch; ubatches of the tiled kernel (64) and of the single-query one (32) */
    s_prefix_check(td, "dense-f32.gguf", 0, 0, 64, G4_KV_F16);
    s_prefix_check(td, "dense-f32.gguf", 0, 100, 64, G4_KV_F16);
    s_prefix_check(td, "dense-f32.gguf", 0, 40, 32, G4_KV_F16);
    s_prefix_check(td, "dense-q8_0.gguf", 0, 200, 64, G4_KV_Q8_0);
    s_prefix_check(td, "dense-q8_0.gguf", 0, 70, 64, G4_KV_F32);
    s_prefix_check(td, "moe-q8_0.gguf", 0, 64, 64, G4_KV_F16);
    s_prefix_check(td, "e-q8_0.gguf", 0, 0, 64, G4_KV_F16);
    s_prefix_check(td, "e-q8_0.gguf", 0, 130, 32, G4_KV_F16);
    s_prefix_check(td, "e-q8_0.gguf", 4, 90, 64, G4_KV_F16); /* layers 4, 5 on the second range share 1, 2's caches */
    s_prefix_check(td, "e-f32.gguf", 2, 50, 64, G4_KV_F16);
    /* ubatches of several attention row blocks; B's ubatch shorter than the chunk it restores from */
    s_prefix_case(td, "dense-f32.gguf", 0, 0, 512, G4_KV_F16, 300, 700, 387);
    s_prefix_case(td, "dense-f32.gguf", 0, 0, 512, G4_KV_F16, 500, 540, 900);
    return 0;
}
