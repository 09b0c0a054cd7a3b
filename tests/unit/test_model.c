/* Tests of core/model on the shared test models: layer ranges run back to
 * back are bit-identical to the whole model (dense and E with PLE + KV
 * sharing), sequences fork / truncate, and bad models are refused with a
 * message naming the key or tensor. */
#include <math.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_gguf.h"
#include "g4_gguf_write.h"
#include "g4_model.h"
#include "g4_pack.h"
#include "g4_test.h"

static int s_range_check(const char *td, const char *name, int split)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", td, name);
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    REQUIRE(g);
    g4_model_t *whole = g4_model_load_gguf(g, 0, -1, &err), *a = g4_model_load_gguf(g, 0, split, &err),
               *b = g4_model_load_gguf(g, split, -1, &err);
    REQUIRE(whole && a && b);
    const g4_hparams_t *hp = g4_model_hparams(whole);
    g4_ctx_params_t cp = {.n_ctx = 64, .n_ubatch = 32};
    g4_ctx_t *cw = g4_ctx_new(whole, &cp, &err), *ca = g4_ctx_new(a, &cp, &err), *cb = g4_ctx_new(b, &cp, &err);
    REQUIRE(cw && ca && cb);
    int sw = g4_seq_new(cw, &err), sa = g4_seq_new(ca, &err), sb = g4_seq_new(cb, &err);
    REQUIRE(sw >= 0 && sa >= 0 && sb >= 0);
    const int T = 20, H = (int)hp->n_embd, PW = (int)(hp->n_layer * hp->ple_dim);
    int32_t tok[20], pos[20], seqw[20], seqa[20], seqb[20];
    for (int i = 0; i < T; i++) tok[i] = 2 + (i * 131) % 12000, pos[i] = i, seqw[i] = sw, seqa[i] = sa, seqb[i] = sb;
    float *l1 = g4_malloc((size_t)T * hp->n_vocab * 4), *l2 = g4_malloc((size_t)T * hp->n_vocab * 4);
    float *hid = g4_malloc((size_t)T * H * 4), *ple = g4_malloc((size_t)T * (PW ? PW : 1) * 4);
    uint8_t *kv = g4_malloc(g4_ctx_kv_export_bytes(ca, T) + 1);
    REQUIRE(l1 && l2 && hid && ple && kv);
    /* prefill 20 rows, then 3 single-row decodes */
    g4_batch_t bw = {T, tok, NULL, pos, seqw, NULL, NULL}, ba = {T, tok, NULL, pos, seqa, NULL, NULL}, bb = {T, tok, NULL, pos, seqb, NULL, NULL};
    REQUIRE(g4_ctx_forward(cw, &bw, NULL, NULL, NULL, l1, &err) == 0);
    REQUIRE(g4_ctx_forward(ca, &ba, NULL, ple, hid, NULL, &err) == 0);
    /* K/V rows of source layers on the first range for KV-sharing layers on the second */
    size_t kvn = g4_ctx_kv_export(ca, &ba, kv);
    REQUIRE(g4_ctx_kv_import(cb, &bb, kv, kvn, &err) == 0);
    REQUIRE(g4_ctx_forward(cb, &bb, hid, ple, NULL, l2, &err) == 0);
    CHECKF(memcmp(l1, l2, (size_t)T * hp->n_vocab * 4) == 0, "%s: split at %d differs in prefill", name, split);
    for (int s = 0; s < 3; s++) {
        int32_t t1 = 100 + s, p1 = T + s;
        g4_batch_t dw = {1, &t1, NULL, &p1, &sw, NULL, NULL}, da = {1, &t1, NULL, &p1, &sa, NULL, NULL}, db = {1, &t1, NULL, &p1, &sb, NULL, NULL};
        REQUIRE(g4_ctx_forward(cw, &dw, NULL, NULL, NULL, l1, &err) == 0);
        REQUIRE(g4_ctx_forward(ca, &da, NULL, ple, hid, NULL, &err) == 0);
        kvn = g4_ctx_kv_export(ca, &da, kv);
        REQUIRE(g4_ctx_kv_import(cb, &db, kv, kvn, &err) == 0);
        REQUIRE(g4_ctx_forward(cb, &db, hid, ple, NULL, l2, &err) == 0);
        CHECKF(memcmp(l1, l2, hp->n_vocab * 4) == 0, "%s: split at %d differs in decode %d", name, split, s);
    }
    /* fork: the fork continues exactly like the original */
    int f = g4_seq_fork(cw, sw, &err);
    REQUIRE(f >= 0);
    CHECK(g4_seq_n_past(cw, f) == T + 3);
    int32_t t2 = 77, p2 = T + 3;
    g4_batch_t d1 = {1, &t2, NULL, &p2, &sw, NULL, NULL}, d2 = {1, &t2, NULL, &p2, &f, NULL, NULL};
    REQUIRE(g4_ctx_forward(cw, &d1, NULL, NULL, NULL, l1, &err) == 0);
    REQUIRE(g4_ctx_forward(cw, &d2, NULL, NULL, NULL, l2, &err) == 0);
    CHECK(memcmp(l1, l2, hp->n_vocab * 4) == 0);
    /* truncate and redo gives the same logits again */
    REQUIRE(g4_seq_truncate(cw, f, T + 3, &err) == 0);
    REQUIRE(g4_ctx_forward(cw, &d2, NULL, NULL, NULL, l2, &err) == 0);
    CHECK(memcmp(l1, l2, hp->n_vocab * 4) == 0);
    /* a position that does not continue the sequence is refused */
    int32_t bad = 5;
    g4_batch_t d3 = {1, &t2, NULL, &bad, &f, NULL, NULL};
    CHECK(g4_ctx_forward(cw, &d3, NULL, NULL, NULL, l2, &err) == G4_ERR_RANGE);
    int32_t badtok = 1 << 30, p3 = g4_seq_n_past(cw, f);
    g4_batch_t d4 = {1, &badtok, NULL, &p3, &f, NULL, NULL};
    CHECK(g4_ctx_forward(cw, &d4, NULL, NULL, NULL, l2, &err) == G4_ERR_RANGE && strstr(err.msg, "vocabulary"));
    g4_free(l1);
    g4_free(l2);
    g4_free(hid);
    g4_free(ple);
    g4_free(kv);
    g4_ctx_destroy(&cw);
    g4_ctx_destroy(&ca);
    g4_ctx_destroy(&cb);
    g4_model_destroy(&whole);
    g4_model_destroy(&a);
    g4_model_destroy(&b);
    g4_gguf_destroy(&g);
    return 0;
}

/* Rewrites src with one key or tensor changed; returns the load error. */
/* Soft-token rows: an embedding row equal to the token's scaled embedding gives
 * the token's numbers; BIDIR rows see the later rows of their run on sliding
 * layers (rows before the run are unchanged, the run's first row changes). */
static int s_softtoken_check(const char *td)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/dense-f32.gguf", td);
    g4_err_t err;
    g4_model_t *m = g4_model_load(path, 0, -1, &err);
    REQUIRE(m);
    const g4_hparams_t *hp = g4_model_hparams(m);
    const int T = 14, H = (int)hp->n_embd, V = (int)hp->n_vocab;
    g4_gguf_t *g = g4_model_gguf(m);
    g4_tensor_t te;
    g4_gguf_tensor(g, g4_gguf_find_tensor(g, "token_embd.weight"), &te);
    REQUIRE(te.dtype == G4_DTYPE_F32);
    g4_ctx_params_t cp = {.n_ctx = 64, .n_ubatch = 32};
    g4_ctx_t *c = g4_ctx_new(m, &cp, &err);
    REQUIRE(c);
    int32_t tok[14], pos[14], sq[14];
    int8_t fl[14];
    float *embd = g4_malloc((size_t)T * H * 4), *l1 = g4_malloc((size_t)T * V * 4), *l2 = g4_malloc((size_t)T * V * 4);
    REQUIRE(embd && l1 && l2);
    for (int i = 0; i < T; i++) {
        tok[i] = 2 + (i * 211) % 12000, pos[i] = i;
        const float *r = (const float *)g4_tensor_row(&te, tok[i]);
        for (int k = 0; k < H; k++) embd[(size_t)i * H + k] = r[k] * sqrtf((float)H);
    }
    for (int pass = 0; pass < 3; pass++) {
        int s = g4_seq_new(c, &err);
        REQUIRE(s >= 0);
        for (int i = 0; i < T; i++) {
            sq[i] = s;
            fl[i] = (pass >= 1 && i >= 5 && i < 12) ? G4_ROW_EMBD : 0;
            if (pass == 2 && fl[i]) fl[i] |= G4_ROW_BIDIR;
        }
        int32_t t2[14];
        for (int i = 0; i < T; i++) t2[i] = fl[i] ? -1 : tok[i];
        g4_batch_t b = {T, t2, pass ? embd + (size_t)5 * H : NULL, pos, sq, NULL, pass ? fl : NULL}; /* rows 5..11, in order */
        REQUIRE(g4_ctx_forward(c, &b, NULL, NULL, NULL, pass == 0 ? l1 : l2, &err) == 0);
        if (pass == 1) CHECKF(memcmp(l1, l2, (size_t)T * V * 4) == 0, "soft-token rows differ from their tokens");
        if (pass == 2) {
            CHECK(memcmp(l1, l2, (size_t)5 * V * 4) == 0);
            CHECK(memcmp(l1 + (size_t)5 * V, l2 + (size_t)5 * V, (size_t)V * 4) != 0);
        }
        g4_seq_release(c, s);
    }
    /* the same soft-token batch through a context of 8-row ubatches: the
     * pieces find their soft-token rows (5..7, then 8..11) */
    g4_ctx_params_t cp8 = {.n_ctx = 64, .n_ubatch = 8};
    g4_ctx_t *c8 = g4_ctx_new(m, &cp8, &err);
    REQUIRE(c8);
    int s8 = g4_seq_new(c8, &err);
    REQUIRE(s8 >= 0);
    int32_t t8[14];
    for (int i = 0; i < T; i++) sq[i] = s8, fl[i] = (i >= 5 && i < 12) ? G4_ROW_EMBD : 0, t8[i] = fl[i] ? -1 : tok[i];
    g4_batch_t b8 = {T, t8, embd + (size_t)5 * H, pos, sq, NULL, fl};
    REQUIRE(g4_ctx_forward(c8, &b8, NULL, NULL, NULL, l2, &err) == 0);
    CHECKF(memcmp(l1, l2, (size_t)T * V * 4) == 0, "soft-token rows split over ubatches differ from their tokens");
    g4_ctx_destroy(&c8);
    g4_free(embd), g4_free(l1), g4_free(l2);
    g4_ctx_destroy(&c);
    g4_model_destroy(&m);
    return 0;
}

static int s_bad(const char *src, const char *drop_key, const char *drop_tensor, const char *arch, g4_err_t *err)
{
    g4_err_t e2;
    g4_gguf_t *g = g4_gguf_open(src, &e2);
    if (!g) return -1;
    g4_gguf_writer_t *w = g4_gguf_writer_new(&e2);
    for (int64_t i = 0; i < g4_gguf_n_kv(g); i++) {
        const char *k = g4_gguf_key(g, i);
        if (drop_key && !strcmp(k, drop_key)) continue;
        if (arch && !strcmp(k, "general.architecture")) {
            g4_gguf_writer_add_str(w, k, arch);
            continue;
        }
        const void *d;
        uint64_t n;
        g4_gguf_type_t t = g4_gguf_kv_raw(g, i, &d, &n);
        g4_gguf_writer_add_raw(w, k, t, d, n);
    }
    for (int64_t i = 0; i < g4_gguf_n_tensors(g); i++) {
        g4_tensor_t t;
        g4_gguf_tensor(g, i, &t);
        if (drop_tensor && !strcmp(t.name, drop_tensor)) continue;
        g4_gguf_writer_add_tensor(w, t.name, t.dtype, t.n_dims, t.ne, t.data);
    }
    uint8_t *img;
    size_t size;
    int rc = g4_gguf_writer_write_mem(w, &img, &size, &e2);
    g4_gguf_writer_destroy(&w);
    g4_gguf_destroy(&g);
    if (rc) return rc;
    g4_gguf_t *g2 = g4_gguf_open_mem(img, size, "bad.gguf", err);
    g4_model_t *m = g2 ? g4_model_load_gguf(g2, 0, -1, err) : NULL;
    rc = m ? 0 : err->code;
    g4_model_destroy(&m);
    g4_gguf_destroy(&g2);
    g4_free(img);
    return rc;
}

/* Weights copied to anonymous memory (g4_model_warm COPY): every matrix ends
 * up in the copy (packed where the CPU has the kernels), the file's pages
 * leave the process, and the logits are the
 * bits of the mapped model — before, while and after the copy is taken. */
static int s_weights_check(const char *td, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/%s", td, name);
    g4_err_t err;
    g4_model_t *a = g4_model_load(path, 0, -1, &err), *b = g4_model_load(path, 0, -1, &err);
    REQUIRE(a && b);
    const int T = 9, V = (int)g4_model_hparams(a)->n_vocab;
    g4_ctx_params_t cp = {.n_ctx = 32, .n_ubatch = 16};
    g4_ctx_t *ca = g4_ctx_new(a, &cp, &err), *cb = g4_ctx_new(b, &cp, &err);
    float *la = g4_malloc((size_t)T * V * 4), *lb = g4_malloc((size_t)T * V * 4);
    REQUIRE(ca && cb && la && lb);
    CHECK(g4_model_warm(a, G4_WEIGHTS_MAP) == G4_WEIGHTS_MAP);
    CHECK(g4_model_warm(b, G4_WEIGHTS_COPY) == G4_WEIGHTS_COPY);
    int32_t tok[9], pos[9], sq[9];
    for (int pass = 0; pass < 3; pass++) {
        if (pass == 2) {
            double ms = -1;
            CHECK(g4_model_warmed(b, 1, &ms) == 1 && ms > 0);
            const void *base, *p;
            size_t len, n;
            REQUIRE(g4_model_weights_copy(b, &base, &len));
            int inside = 0, total = 0;
            for (int i = 0; g4_model_weights(b, i, &p, &n); i++, total++)
                inside += (const char *)p >= (const char *)base && (const char *)p + n <= (const char *)base + len;
            CHECKF(total > 0 && inside == total, "%s: %d of %d weight ranges in the copy", name, inside, total);
            /* with the VNNI kernels, the layers' matrices are packed (the
             * logits below: the same bits as the mapping's row-major ones) */
            if (g4_pack_ops(G4_DTYPE_Q8_0))
                CHECKF(g4_model_weights_packed(b) > 0, "%s: no matrix of the copy was packed", name);
        }
        int sa = g4_seq_new(ca, &err), sb = g4_seq_new(cb, &err);
        REQUIRE(sa >= 0 && sb >= 0);
        for (int i = 0; i < T; i++) tok[i] = 2 + (i * 389 + pass * 17) % 9000, pos[i] = i, sq[i] = sa;
        g4_batch_t ba = {T, tok, NULL, pos, sq, NULL, NULL};
        REQUIRE(g4_ctx_forward(ca, &ba, NULL, NULL, NULL, la, &err) == 0);
        for (int i = 0; i < T; i++) sq[i] = sb;
        g4_batch_t bb = {T, tok, NULL, pos, sq, NULL, NULL};
        REQUIRE(g4_ctx_forward(cb, &bb, NULL, NULL, NULL, lb, &err) == 0);
        CHECKF(memcmp(la, lb, (size_t)T * V * 4) == 0, "%s pass %d: logits from the copied weights differ", name, pass);
        g4_seq_release(ca, sa);
        g4_seq_release(cb, sb);
    }
    g4_free(la), g4_free(lb);
    g4_ctx_destroy(&ca), g4_ctx_destroy(&cb);
    g4_model_destroy(&a), g4_model_destroy(&b);
    return 0;
}

/* Decode steps fed again in one call (G4_ROW_STEP, as after a pipeline
 * change) give the logits bit for bit of the one-row calls they were, past
 * 512 cached positions (split-KV decode, 2 splits) and with the sliding cache
 * wrapped (window 16, ubatch 64: 256 cells); without the flag they do not. */
static int s_replay_check(const char *td)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/models/dense-f32.gguf", td);
    g4_err_t err;
    g4_model_t *m = g4_model_load(path, 0, -1, &err);
    REQUIRE(m);
    enum { NP = 520, NG = 60 };
    const int V = (int)g4_model_hparams(m)->n_vocab;
    g4_ctx_params_t cp = {.n_ctx = 1024, .n_ubatch = 64, .attn_splits = 2};
    g4_ctx_t *c = g4_ctx_new(m, &cp, &err);
    float *l1 = g4_malloc((size_t)NG * V * 4), *l2 = g4_malloc((size_t)NG * V * 4);
    int32_t *tok = g4_malloc((NP + NG) * 4), *pos = g4_malloc((NP + NG) * 4), *sq = g4_malloc((NP + NG) * 4);
    int8_t *fl = g4_malloc(NP + NG);
    REQUIRE(c && l1 && l2 && tok && pos && sq && fl);
    uint64_t rng = 7;
    for (int i = 0; i < NP + NG; i++) tok[i] = 2 + (int)(g4_test_rand(&rng) % 1000), pos[i] = i;
    double diff_noflag = 0;
    for (int pass = 0; pass < 3; pass++) {
        const int s = g4_seq_new(c, &err);
        REQUIRE(s >= 0);
        for (int i = 0; i < NP + NG; i++) sq[i] = s;
        for (int at = 0; at < NP; at += 64) {
            g4_batch_t b = {NP - at < 64 ? NP - at : 64, tok + at, NULL, pos + at, sq + at, NULL, NULL};
            REQUIRE(g4_ctx_forward(c, &b, NULL, NULL, NULL, NULL, &err) == 0);
        }
        if (pass == 0) { /* one row per call, as decoding */
            for (int i = 0; i < NG; i++) {
                g4_batch_t b = {1, tok + NP + i, NULL, pos + NP + i, sq + NP + i, NULL, NULL};
                REQUIRE(g4_ctx_forward(c, &b, NULL, NULL, NULL, l1 + (size_t)i * V, &err) == 0);
            }
        } else { /* all of them in one call, marked (pass 1) or not (pass 2) */
            for (int i = 0; i < NG; i++) fl[i] = pass == 1 ? G4_ROW_STEP : 0;
            g4_batch_t b = {NG, tok + NP, NULL, pos + NP, sq + NP, NULL, fl};
            REQUIRE(g4_ctx_forward(c, &b, NULL, NULL, NULL, l2, &err) == 0);
            if (pass == 1) CHECKF(!memcmp(l1, l2, (size_t)NG * V * 4), "%s", "steps fed again differ from the steps");
            else
                for (size_t i = 0; i < (size_t)NG * V; i++) diff_noflag = fmax(diff_noflag, fabs(l1[i] - l2[i]));
        }
        g4_seq_release(c, s);
    }
    CHECKF(diff_noflag > 0, "%s", "the same rows without G4_ROW_STEP should take the other kernels");
    g4_free(l1), g4_free(l2), g4_free(tok), g4_free(pos), g4_free(sq), g4_free(fl);
    g4_ctx_destroy(&c);
    g4_model_destroy(&m);
    return 0;
}

int test_model(void)
{
    const char *td = g4_test_testdata();
    if (!td) return G4_TEST_SKIP;
    s_range_check(td, "dense-f32.gguf", 2);
    s_range_check(td, "dense256-q4_k_m.gguf", 1);
    s_range_check(td, "e-q8_0.gguf", 1);
    s_range_check(td, "e-q8_0.gguf", 4); /* layers 4, 5 read the caches of 1, 2: rows shipped across */
    s_range_check(td, "e-f32.gguf", 2);
    s_range_check(td, "moe-q8_0.gguf", 3);
    s_softtoken_check(td);
    s_replay_check(td);
    s_weights_check(td, "dense256-q4_k_m.gguf");
    s_weights_check(td, "moe-q8_0.gguf");
    s_weights_check(td, "e-q8_0.gguf");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/e-q8_0.gguf", td);
    g4_err_t err;
    g4_model_t *m = g4_model_load(path, 4, -1, &err); /* layers 4, 5 share caches of 1, 2 */
    CHECK(m && g4_model_kv_imported(m, 1) && g4_model_kv_imported(m, 2) && !g4_model_kv_imported(m, 3));
    g4_model_destroy(&m);
    snprintf(path, sizeof path, "%s/models/dense-q8_0.gguf", td);
    CHECK(s_bad(path, NULL, NULL, "llama", &err) == G4_ERR_FORMAT && strstr(err.msg, "'llama'"));
    CHECK(s_bad(path, "gemma4.attention.sliding_window", NULL, NULL, &err) == G4_ERR_FORMAT &&
          strstr(err.msg, "gemma4.attention.sliding_window"));
    CHECK(s_bad(path, "gemma4.attention.key_length_swa", NULL, NULL, &err) == G4_ERR_FORMAT &&
          strstr(err.msg, "key_length_swa"));
    CHECK(s_bad(path, NULL, "blk.1.ffn_up.weight", NULL, &err) == G4_ERR_FORMAT && strstr(err.msg, "blk.1.ffn_up.weight"));
    CHECK(s_bad(path, NULL, "blk.2.attn_k.weight", NULL, &err) == G4_ERR_FORMAT && strstr(err.msg, "blk.2.attn_k.weight"));
    CHECK(s_bad(path, NULL, "token_embd.weight", NULL, &err) == G4_ERR_FORMAT && strstr(err.msg, "token_embd.weight"));
    CHECKF(s_bad(path, "gemma4.attention.sliding_window_pattern", NULL, NULL, &err) == G4_ERR_FORMAT, "%s", err.msg);
    return 0;
}
