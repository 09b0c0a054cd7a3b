/* Tests of core/tensor/g4_quant: the quantizers against gguf-py (quant_ref),
 * every quantizer against blocks made by
 * llama.cpp's own ggml_quantize_chunk (tests/data/quant_llama.gguf, see
 * make_quant_fixtures.py): same bytes, not only the same error; and the
 * per-tensor type rules of the mixes on gemma4 tensor names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_alloc.h"
#include "g4_gguf.h"
#include "g4_quant.h"
#include "g4_test.h"

/* Opens tests/data/FILE and finds its F32 tensor "input". */
static g4_gguf_t *s_open_input(const char *file, g4_tensor_t *in)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", g4_test_datadir(), file);
    g4_err_t err;
    g4_gguf_t *g = g4_gguf_open(path, &err);
    if (!g) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    const int64_t i = g4_gguf_find_tensor(g, "input");
    if (i < 0) {
        g4_gguf_destroy(&g);
        return NULL;
    }
    g4_gguf_tensor(g, i, in);
    return g;
}

/* Our quantizers against gguf-py (simple formats: bit-exact), dequantization
 * of llama.cpp-made K-quant blocks against gguf-py (1e-6 relative), and the
 * error of our own K-quant quantizers. */
int test_quant(void)
{
    g4_tensor_t in;
    g4_gguf_t *g = s_open_input("quant_ref.gguf", &in);
    REQUIRE(g != NULL);
    const int64_t n = g4_tensor_nelements(&in);
    const float *x = in.data;
    static const char *simple[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"};
    uint8_t *buf = g4_malloc((size_t)n * 4);
    float *deq = g4_malloc((size_t)n * 4), *deq2 = g4_malloc((size_t)n * 4);
    REQUIRE(buf && deq && deq2);
    for (int k = 0; k < 5; k++) {
        char name[64];
        snprintf(name, sizeof name, "input.%s", simple[k]);
        int64_t idx = g4_gguf_find_tensor(g, name);
        REQUIRE(idx >= 0);
        g4_tensor_t q;
        g4_gguf_tensor(g, idx, &q);
        REQUIRE(g4_quant_row(q.dtype, x, buf, n) == 0);
        CHECKF(memcmp(buf, q.data, q.n_bytes) == 0, "%s quantization differs from gguf-py", simple[k]);
        /* dequantization of the reference bytes equals dequantization of ours */
        g4_dequant_row(q.dtype, q.data, deq, n);
        g4_dequant_row(q.dtype, buf, deq2, n);
        CHECK(memcmp(deq, deq2, (size_t)n * 4) == 0);
    }
    static const char *kq[] = {"Q4_K", "Q5_K", "Q6_K"};
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "kq.%s", kq[k]);
        g4_tensor_t q, ref;
        int64_t i1 = g4_gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "kq.%s.deq", kq[k]);
        int64_t i2 = g4_gguf_find_tensor(g, name);
        REQUIRE(i1 >= 0 && i2 >= 0);
        g4_gguf_tensor(g, i1, &q);
        g4_gguf_tensor(g, i2, &ref);
        const int64_t m = g4_tensor_nelements(&q);
        g4_dequant_row(q.dtype, q.data, deq, m);
        const float *r = ref.data;
        double worst = 0;
        for (int64_t i = 0; i < m; i++) {
            double e = fabs((double)deq[i] - r[i]) / fmax(fabs(r[i]), 1e-30);
            if (deq[i] != r[i] && e > worst) worst = e;
        }
        CHECKF(worst <= 1e-6, "%s dequantization off by %g relative", kq[k], worst);
    }
    /* our K-quant quantizers: relative RMS error within what the format allows */
    static const struct { g4_dtype_t t; double max_rel_rms; } kqe[] = {
        {G4_DTYPE_Q4_K, 0.12}, {G4_DTYPE_Q5_K, 0.06}, {G4_DTYPE_Q6_K, 0.03}, {G4_DTYPE_Q8_0, 0.01}, {G4_DTYPE_Q4_0, 0.15}};
    for (size_t k = 0; k < sizeof kqe / sizeof kqe[0]; k++) {
        REQUIRE(g4_quant_row(kqe[k].t, x, buf, n) == 0);
        g4_dequant_row(kqe[k].t, buf, deq, n);
        for (int64_t row = 0; row < n / 256; row++) {
            double se = 0, s2 = 0;
            for (int64_t i = row * 256; i < row * 256 + 256; i++) {
                se += ((double)deq[i] - x[i]) * ((double)deq[i] - x[i]);
                s2 += (double)x[i] * x[i];
            }
            if (s2 == 0) {
                CHECK(se == 0);
                continue;
            }
            CHECKF(sqrt(se / s2) <= kqe[k].max_rel_rms, "%s row %lld relative RMS error %.4f", g4_dtype_name(kqe[k].t),
                   (long long)row, sqrt(se / s2));
        }
    }
    g4_free(buf);
    g4_free(deq);
    g4_free(deq2);
    g4_gguf_destroy(&g);
    return 0;
}

int test_quant_llama(void)
{
    g4_tensor_t in;
    g4_gguf_t *g = s_open_input("quant_llama.gguf", &in);
    REQUIRE(g != NULL);
    const int64_t n_per_row = in.ne[0], n_rows = in.ne[1];
    static const char *types[] = {"F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"};
    uint8_t *buf = g4_malloc((size_t)(n_per_row * n_rows * 4));
    REQUIRE(buf);
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        char name[64];
        snprintf(name, sizeof name, "input.%s", types[k]);
        int64_t idx = g4_gguf_find_tensor(g, name);
        REQUIRE(idx >= 0);
        g4_tensor_t q;
        g4_gguf_tensor(g, idx, &q);
        REQUIRE(q.dtype == (uint32_t)g4_dtype_from_name(types[k]));
        REQUIRE(g4_quant_rows(q.dtype, in.data, buf, n_rows, n_per_row) == 0);
        const uint64_t rb = g4_dtype_row_bytes(q.dtype, (uint64_t)n_per_row);
        int bad_rows = 0, first_bad = -1;
        for (int64_t r = 0; r < n_rows; r++)
            if (memcmp(buf + r * rb, (const uint8_t *)q.data + r * rb, rb)) {
                if (first_bad < 0) first_bad = (int)r;
                bad_rows++;
            }
        CHECKF(bad_rows == 0, "%s: %d of %lld rows differ from llama.cpp's bytes (first: row %d)", types[k], bad_rows,
               (long long)n_rows, first_bad);
    }
    g4_free(buf);
    g4_gguf_destroy(&g);

    /* the mixes: llama_tensor_get_type's choices for gemma4 names (12 layers) */
    const char *names[] = {"token_embd.weight", "blk.0.attn_v.weight", "blk.1.attn_v.weight", "blk.2.attn_v.weight",
                           "blk.3.attn_v.weight"};
    g4_quant_mix_state_t st;
    g4_quant_mix_begin(&st, G4_QUANT_MIX_Q4_K_M, 12, names, 5);
    CHECK(st.tied && st.n_attn_v == 4);
    CHECK(g4_quant_mix_type(&st, "token_embd.weight", 2, 2816, G4_DTYPE_F32) == G4_DTYPE_Q6_K);
    CHECK(g4_quant_mix_type(&st, "output_norm.weight", 1, 2816, G4_DTYPE_F32) == G4_DTYPE_F32);
    CHECK(g4_quant_mix_type(&st, "blk.0.ffn_gate_inp.weight", 2, 2816, G4_DTYPE_F32) == G4_DTYPE_F32);
    CHECK(g4_quant_mix_type(&st, "blk.0.ffn_down_exps.scale", 1, 128, G4_DTYPE_F32) == G4_DTYPE_F32);
    CHECK(g4_quant_mix_type(&st, "per_layer_model_proj.weight", 2, 1536, G4_DTYPE_BF16) == G4_DTYPE_BF16);
    /* use_more_bits(i, 4): i >= 7*4/8 or (i - 4/8) % 3 == 2 */
    CHECK(g4_quant_mix_type(&st, "blk.0.attn_v.weight", 2, 2816, G4_DTYPE_F32) == G4_DTYPE_Q4_K);
    CHECK(g4_quant_mix_type(&st, "blk.1.attn_v.weight", 2, 2816, G4_DTYPE_F32) == G4_DTYPE_Q4_K);
    CHECK(g4_quant_mix_type(&st, "blk.2.attn_v.weight", 2, 2816, G4_DTYPE_F32) == G4_DTYPE_Q6_K);
    CHECK(g4_quant_mix_type(&st, "blk.3.attn_v.weight", 2, 2816, G4_DTYPE_F32) == G4_DTYPE_Q6_K);
    /* ffn_down, 12 layers: more bits for layers < 12/8, >= 7*12/8 and 3, 6, 9 */
    static const int more[12] = {1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 1};
    for (int il = 0; il < 12; il++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", il);
        CHECKF(g4_quant_mix_type(&st, name, 2, 2816, G4_DTYPE_F32) == (more[il] ? G4_DTYPE_Q6_K : G4_DTYPE_Q4_K),
               "ffn_down layer %d", il);
    }
    /* rows that are not whole super-blocks fall back */
    CHECK(g4_quant_mix_type(&st, "blk.5.ffn_up.weight", 2, 128, G4_DTYPE_F32) == G4_DTYPE_Q5_0);
    CHECK(g4_quant_mix_type(&st, "blk.1.ffn_down.weight", 2, 2112, G4_DTYPE_F32) == G4_DTYPE_Q5_0);
    CHECK(g4_quant_mix_type(&st, "blk.0.ffn_down.weight", 2, 2112, G4_DTYPE_F32) == G4_DTYPE_Q8_0);
    CHECK(g4_quant_mix_type(&st, "blk.0.ffn_down.weight", 2, 48, G4_DTYPE_F32) == G4_DTYPE_F16);
    CHECK(st.n_fallback > 0);
    /* Q4_0: the tied embedding is Q6_K; Q8_0 keeps it Q8_0; F16 converts everything quantizable */
    g4_quant_mix_begin(&st, G4_QUANT_MIX_Q4_0, 12, names, 1);
    CHECK(g4_quant_mix_type(&st, "token_embd.weight", 2, 1536, G4_DTYPE_F32) == G4_DTYPE_Q6_K);
    CHECK(g4_quant_mix_type(&st, "token_embd.weight", 2, 96, G4_DTYPE_F32) == G4_DTYPE_Q8_0);
    CHECK(g4_quant_mix_type(&st, "blk.0.attn_q.weight", 2, 1536, G4_DTYPE_F32) == G4_DTYPE_Q4_0);
    g4_quant_mix_begin(&st, G4_QUANT_MIX_Q8_0, 12, names, 1);
    CHECK(g4_quant_mix_type(&st, "token_embd.weight", 2, 1536, G4_DTYPE_F32) == G4_DTYPE_Q8_0);
    g4_quant_mix_begin(&st, G4_QUANT_MIX_F16, 12, names, 1);
    CHECK(g4_quant_mix_type(&st, "token_embd.weight", 2, 1536, G4_DTYPE_F32) == G4_DTYPE_F16);
    CHECK(g4_quant_mix_type(&st, "blk.0.attn_norm.weight", 1, 1536, G4_DTYPE_F32) == G4_DTYPE_F32);
    g4_quant_mix_begin(&st, G4_QUANT_MIX_Q4_K, 12, names, 1); /* pure */
    CHECK(g4_quant_mix_type(&st, "token_embd.weight", 2, 1536, G4_DTYPE_F32) == G4_DTYPE_Q4_K);
    CHECK(g4_quant_mix_ftype(G4_QUANT_MIX_Q4_K_M) == 15 && g4_quant_mix_ftype(G4_QUANT_MIX_BF16) == 32);
    CHECK(g4_quant_mix_from_name("q4_k_m") == G4_QUANT_MIX_Q4_K_M && g4_quant_mix_from_name("Q4_K_X") == -1);
    /* llama.cpp's tensor order: globals, then by layer number, then by name */
    CHECK(g4_quant_tensor_cmp("token_embd.weight", "blk.0.attn_q.weight") < 0);
    CHECK(g4_quant_tensor_cmp("blk.2.ffn_up.weight", "blk.10.attn_q.weight") < 0);
    CHECK(g4_quant_tensor_cmp("blk.2.attn_q.weight", "blk.2.attn_k.weight") > 0);
    return 0;
}
