/* g4 run --in-process -m MODEL.gguf (-p TEXT | -f FILE | --prompt-ids 2,9259,…) [-n N]
 *        [--raw] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
 *        [--repeat-penalty R] [--logprobs K] [--threads N] [--ctx N] [--kv-f32] [--json]
 *
 * Runs the decoder in this process (no daemons): prefill the prompt, then
 * sample one token at a time until N tokens or an end-of-generation id.
 * --json prints {"prompt_ids":[…],"ids":[…],"text":"…","finish_reason":"stop|length"}
 * (+ "logprobs": per generated position the top-K {id, logprob}). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_matmul.h"
#include "g4_model.h"
#include "g4_sampler.h"
#include "tok_stream.h"
#include "tok_vocab.h"

static int s_parse_ids(const char *s, int32_t **out, int *n)
{
    int cap = 16, k = 0;
    int32_t *v = g4_malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    while (*s) {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (end == s || errno || x < 0 || x > INT32_MAX) {
            g4_free(v);
            return -1;
        }
        if (k == cap) {
            cap *= 2;
            int32_t *nv = g4_realloc(v, (size_t)cap * sizeof *v);
            if (!nv) {
                g4_free(v);
                return -1;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        s = end;
        while (*s == ',' || *s == ' ') s++;
    }
    *out = v;
    *n = k;
    return 0;
}

typedef struct s_lp {
    int32_t id;
    float lp;
} s_lp_t;

static void s_top_logprobs(const float *logits, int n_vocab, int k, s_lp_t *out)
{
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > max) max = logits[i];
    double sum = 0;
    for (int i = 0; i < n_vocab; i++) sum += exp((double)logits[i] - max);
    const double lse = max + log(sum);
    for (int j = 0; j < k; j++) out[j] = (s_lp_t){-1, -INFINITY};
    for (int i = 0; i < n_vocab; i++) {
        float lp = (float)(logits[i] - lse);
        if (lp <= out[k - 1].lp) continue;
        int j = k - 1;
        while (j > 0 && out[j - 1].lp < lp) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = (s_lp_t){i, lp};
    }
}

int cli_run(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *file = NULL, *ids_arg = NULL;
    int n_predict = 32, json = 0, raw = 0, logprobs = 0, threads = 0, n_ctx = 0, kv_f32 = 0, in_process = 0;
    g4_sampler_params_t sp;
    g4_sampler_params_default(&sp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(s) (!strcmp(a, s) && v && (i++, 1))
        if (OPT("-m") || OPT("--model")) model = v;
        else if (OPT("-p") || OPT("--prompt")) prompt = v;
        else if (OPT("-f") || OPT("--file")) file = v;
        else if (OPT("--prompt-ids")) ids_arg = v;
        else if (OPT("-n") || OPT("--n-predict")) n_predict = atoi(v);
        else if (OPT("--temp")) sp.temp = (float)atof(v);
        else if (OPT("--top-k")) sp.top_k = atoi(v);
        else if (OPT("--top-p")) sp.top_p = (float)atof(v);
        else if (OPT("--min-p")) sp.min_p = (float)atof(v);
        else if (OPT("--seed")) sp.seed = strtoull(v, NULL, 10);
        else if (OPT("--repeat-penalty")) sp.repeat_penalty = (float)atof(v);
        else if (OPT("--repeat-last-n")) sp.repeat_last_n = atoi(v);
        else if (OPT("--presence-penalty")) sp.presence_penalty = (float)atof(v);
        else if (OPT("--frequency-penalty")) sp.frequency_penalty = (float)atof(v);
        else if (OPT("--logprobs")) logprobs = atoi(v);
        else if (OPT("--threads") || OPT("-t")) threads = atoi(v);
        else if (OPT("--ctx") || OPT("-c")) n_ctx = atoi(v);
        else if (!strcmp(a, "--kv-f32")) kv_f32 = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--raw")) raw = 1;
        else if (!strcmp(a, "--in-process")) in_process = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            printf("usage: g4 run --in-process -m MODEL.gguf (-p TEXT | -f FILE | --prompt-ids IDS) [-n N] [--raw]\n"
                   "              [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [--repeat-penalty R]\n"
                   "              [--logprobs K] [--threads N] [--ctx N] [--kv-f32] [--json]\n");
            return 0;
        } else {
            cli_error("unknown or incomplete option '%s' (see g4 run --help)", a);
            return 2;
        }
#undef OPT
    }
    (void)in_process; /* the daemon pipeline is not built yet: run always runs in this process */
    if (!model || (!prompt && !file && !ids_arg)) {
        cli_error("usage: g4 run --in-process -m MODEL.gguf (-p TEXT | -f FILE | --prompt-ids IDS) [-n N] [--json]");
        return 2;
    }
    if (logprobs < 0 || logprobs > 100 || n_predict < 0) {
        cli_error("--logprobs must be in [0, 100] and -n non-negative");
        return 2;
    }
    if (threads > 0) g4_kernels_set_threads(threads);
    g4_err_t err;
    int rc = 1;
    g4_model_t *m = g4_model_load(model, 0, -1, &err);
    if (!m) {
        cli_error("%s", err.msg);
        return 1;
    }
    const g4_hparams_t *hp = g4_model_hparams(m);
    tok_vocab_t *vocab = tok_vocab_load(g4_model_gguf(m), &err);
    g4_ctx_t *ctx = NULL;
    g4_sampler_t *smp = NULL;
    int32_t *prompt_ids = NULL, *out_ids = NULL, *pos = NULL, *seqv = NULL;
    float *logits = NULL;
    s_lp_t *lps = NULL;
    char *text_buf = NULL, *file_text = NULL;
    char *stream_buf = NULL;
    size_t stream_len = 0;
    tok_stream_t stream;
    int n_prompt = 0, n_out = 0;
    const char *finish = "length";
    if (!vocab) {
        cli_error("%s", err.msg);
        goto done;
    }
    if (ids_arg) {
        if (s_parse_ids(ids_arg, &prompt_ids, &n_prompt) || n_prompt == 0) {
            cli_error("--prompt-ids needs a comma-separated list of token ids");
            rc = 2;
            goto done;
        }
    } else {
        if (file) {
            file_text = cli_read_file(file, NULL);
            if (!file_text) {
                cli_error("%s: %s", file, strerror(errno));
                goto done;
            }
            prompt = file_text;
        }
        (void)raw; /* chat templating comes with tokenizerd; --raw is the only mode here */
        if (tok_vocab_tokenize(vocab, prompt, strlen(prompt), 1, 1, &prompt_ids, &n_prompt, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
    }
    for (int i = 0; i < n_prompt; i++)
        if (prompt_ids[i] < 0 || (uint32_t)prompt_ids[i] >= hp->n_vocab) {
            cli_error("prompt id %d is outside the vocabulary (%u)", prompt_ids[i], hp->n_vocab);
            goto done;
        }
    g4_ctx_params_t cp = {.n_ctx = n_ctx > 0 ? n_ctx : n_prompt + n_predict + 1, .n_ubatch = 512, .n_seq_max = 1,
                          .kv_f32 = kv_f32};
    ctx = g4_ctx_new(m, &cp, &err);
    smp = ctx ? g4_sampler_new(&sp, (int)hp->n_vocab, &err) : NULL;
    out_ids = g4_malloc((size_t)(n_predict + 1) * sizeof *out_ids);
    pos = g4_malloc((size_t)n_prompt * sizeof *pos);
    seqv = g4_calloc((size_t)n_prompt, sizeof *seqv);
    logits = g4_malloc((size_t)hp->n_vocab * sizeof *logits);
    lps = g4_malloc((size_t)(logprobs ? logprobs : 1) * (size_t)(n_predict + 1) * sizeof *lps);
    if (!ctx || !smp || !out_ids || !pos || !seqv || !logits || !lps) {
        cli_error("%s", ctx && smp ? "out of memory" : err.msg);
        goto done;
    }
    int seq = g4_seq_new(ctx, &err);
    if (seq < 0) {
        cli_error("%s", err.msg);
        goto done;
    }
    for (int i = 0; i < n_prompt; i++) pos[i] = i, seqv[i] = seq, g4_sampler_accept(smp, prompt_ids[i]);
    /* prefill: logits of the last row only */
    int8_t *want = g4_calloc((size_t)n_prompt, 1);
    if (!want) goto done;
    want[n_prompt - 1] = 1;
    g4_batch_t b = {n_prompt, prompt_ids, NULL, pos, seqv, want};
    const uint64_t t_start = g4_clock_mono_ns();
    int frc = g4_ctx_forward(ctx, &b, NULL, NULL, NULL, logits, &err);
    g4_free(want);
    if (frc) {
        cli_error("%s", err.msg);
        goto done;
    }
    const uint64_t t_prefill = g4_clock_mono_ns();
    tok_stream_init(&stream, 0);
    for (n_out = 0; n_out < n_predict;) {
        if (logprobs) s_top_logprobs(logits, (int)hp->n_vocab, logprobs, lps + (size_t)n_out * logprobs);
        const int32_t id = g4_sampler_sample(smp, logits);
        out_ids[n_out++] = id;
        g4_sampler_accept(smp, id);
        if (g4_model_is_eog(m, id)) {
            finish = "stop";
            break;
        }
        if (!json) {
            size_t before = stream_len;
            if (tok_stream_feed(vocab, &stream, id, &stream_buf, &stream_len) > 0)
                fwrite(stream_buf + before, 1, stream_len - before, stdout), fflush(stdout);
        }
        if (n_out == n_predict) break;
        int32_t p1 = g4_seq_n_past(ctx, seq);
        g4_batch_t d = {1, &id, NULL, &p1, &seq, NULL};
        if (g4_ctx_forward(ctx, &d, NULL, NULL, NULL, logits, &err)) {
            cli_error("%s", err.msg);
            goto done;
        }
    }
    const uint64_t t_end = g4_clock_mono_ns();
    const double prefill_ms = (double)(t_prefill - t_start) / 1e6, decode_ms = (double)(t_end - t_prefill) / 1e6;
    if (!json) {
        size_t before = stream_len;
        if (tok_stream_flush(&stream, &stream_buf, &stream_len) > 0)
            fwrite(stream_buf + before, 1, stream_len - before, stdout);
        fputc('\n', stdout);
        rc = 0;
        goto done;
    }
    {
        size_t text_len = 0;
        text_buf = tok_detokenize_text(vocab, out_ids, n_out, 0, &text_len);
        cJSON *root = cJSON_CreateObject();
        cJSON *pa = cJSON_AddArrayToObject(root, "prompt_ids");
        for (int i = 0; i < n_prompt; i++) cJSON_AddItemToArray(pa, cJSON_CreateNumber(prompt_ids[i]));
        cJSON *ia = cJSON_AddArrayToObject(root, "ids");
        for (int i = 0; i < n_out; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(out_ids[i]));
        char *quoted = cli_json_quote(text_buf ? text_buf : "", text_buf ? text_len : 0);
        if (quoted) cJSON_AddRawToObject(root, "text", quoted);
        g4_free(quoted);
        cJSON_AddStringToObject(root, "finish_reason", finish);
        cJSON *tm = cJSON_AddObjectToObject(root, "timings");
        cJSON_AddNumberToObject(tm, "prefill_ms", prefill_ms);
        cJSON_AddNumberToObject(tm, "decode_ms", decode_ms);
        cJSON_AddNumberToObject(tm, "prefill_tps", prefill_ms > 0 ? n_prompt / (prefill_ms / 1e3) : 0);
        /* decode steps = generated ids after the first (which comes from the prefill) */
        cJSON_AddNumberToObject(tm, "decode_tps", n_out > 1 && decode_ms > 0 ? (n_out - 1) / (decode_ms / 1e3) : 0);
        if (logprobs) {
            cJSON *la = cJSON_AddArrayToObject(root, "logprobs");
            for (int i = 0; i < n_out; i++) {
                cJSON *pos_o = cJSON_CreateObject();
                cJSON_AddNumberToObject(pos_o, "id", out_ids[i]);
                cJSON *top = cJSON_AddArrayToObject(pos_o, "top");
                for (int k = 0; k < logprobs; k++) {
                    cJSON *e = cJSON_CreateObject();
                    cJSON_AddNumberToObject(e, "id", lps[(size_t)i * logprobs + k].id);
                    cJSON_AddNumberToObject(e, "logprob", lps[(size_t)i * logprobs + k].lp);
                    cJSON_AddItemToArray(top, e);
                }
                cJSON_AddItemToArray(la, pos_o);
            }
        }
        char *s = cJSON_PrintUnformatted(root);
        if (s) puts(s);
        cJSON_free(s);
        cJSON_Delete(root);
        rc = 0;
    }
done:
    g4_free(text_buf);
    g4_free(stream_buf);
    g4_free(file_text);
    g4_free(prompt_ids);
    g4_free(out_ids);
    g4_free(pos);
    g4_free(seqv);
    g4_free(logits);
    g4_free(lps);
    g4_sampler_destroy(&smp);
    g4_ctx_destroy(&ctx);
    tok_vocab_destroy(&vocab);
    g4_model_destroy(&m);
    return rc;
}
