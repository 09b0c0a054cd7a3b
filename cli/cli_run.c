/* g4 run --in-process -m MODEL.gguf (-p TEXT | -f FILE | --prompt-ids 2,9259,…) [-n N]
 *        [--raw] [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S]
 *        [--repeat-penalty R] [--logprobs K] [--threads N] [--ctx N] [--kv-f32] [--mmap] [--json]
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
#include "cli_args.h"
#include "cli_generate.h"
#include "cli_progress.h"
#include "enc_encode.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_matmul.h"
#include "g4_model.h"
#include "g4_sampler.h"
#include "cli_stack.h"
#include "tok_chat.h"
#include "tokd_service.h"
#include "tok_stream.h"
#include "tok_vocab.h"

/* --devices: where the layers run (cuda:0,cuda:1,cpu); NULL: the CPU */
static const char *s_devices;

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

/* The JSON both modes print: {"prompt_ids", "ids", "text", "finish_reason",
 * "timings": {prefill_ms, decode_ms, prefill_tps, decode_tps}, "logprobs"} */
static void s_print_json(const int32_t *prompt_ids, int n_prompt, const int32_t *out_ids, int n_out, const char *text,
                         size_t text_len, const char *finish, double prefill_ms, double decode_ms, int logprobs,
                         const g4_logprob_t *lps, const cli_local_out_t *spec)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *pa = cJSON_AddArrayToObject(root, "prompt_ids");
    for (int i = 0; i < n_prompt; i++) cJSON_AddItemToArray(pa, cJSON_CreateNumber(prompt_ids[i]));
    cJSON *ia = cJSON_AddArrayToObject(root, "ids");
    for (int i = 0; i < n_out; i++) cJSON_AddItemToArray(ia, cJSON_CreateNumber(out_ids[i]));
    char *quoted = cli_json_quote(text ? text : "", text ? text_len : 0);
    if (quoted) cJSON_AddRawToObject(root, "text", quoted);
    g4_free(quoted);
    cJSON_AddStringToObject(root, "finish_reason", finish);
    cJSON *tm = cJSON_AddObjectToObject(root, "timings");
    cJSON_AddNumberToObject(tm, "prefill_ms", prefill_ms);
    cJSON_AddNumberToObject(tm, "decode_ms", decode_ms);
    cJSON_AddNumberToObject(tm, "prefill_tps", prefill_ms > 0 ? n_prompt / (prefill_ms / 1e3) : 0);
    /* decode steps = generated ids after the first (which comes from the prefill) */
    cJSON_AddNumberToObject(tm, "decode_tps", n_out > 1 && decode_ms > 0 ? (n_out - 1) / (decode_ms / 1e3) : 0);
    if (spec) { /* speculative decoding: llama-server's names, plus the rate and the passes */
        cJSON_AddNumberToObject(tm, "draft_n", spec->n_drafted);
        cJSON_AddNumberToObject(tm, "draft_n_accepted", spec->n_accepted);
        cJSON_AddNumberToObject(tm, "draft_acceptance", spec->n_drafted ? (double)spec->n_accepted / spec->n_drafted : 0);
        cJSON_AddNumberToObject(tm, "draft_passes", spec->n_verify);
    }
    if (logprobs) {
        cJSON *la = cJSON_AddArrayToObject(root, "logprobs");
        for (int i = 0; i < n_out; i++) {
            cJSON *pos_o = cJSON_CreateObject();
            cJSON_AddNumberToObject(pos_o, "id", out_ids[i]);
            cJSON *top = cJSON_AddArrayToObject(pos_o, "top");
            for (int k = 0; k < logprobs; k++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddNumberToObject(e, "id", lps[(size_t)i * logprobs + k].id);
                cJSON_AddNumberToObject(e, "logprob", lps[(size_t)i * logprobs + k].logprob);
                cJSON_AddItemToArray(top, e);
            }
            cJSON_AddItemToArray(la, pos_o);
        }
    }
    char *js = cJSON_PrintUnformatted(root);
    if (js) puts(js);
    cJSON_free(js);
    cJSON_Delete(root);
}

/* media given on the command line, in order */
typedef struct s_media {
    int n;
    int kind[64]; /* ENC_KIND_* */
    const char *file[64];
    enc_opts_t opts;
    const char *mmproj;
} s_media_t;
static s_media_t s_med;
static int s_verbose; /* --verbose: the timing summary even when stderr is not a terminal */

/* A --raw prompt with media but no placeholders gets them in front. */
static char *s_raw_prompt(const char *prompt)
{
    if (!s_med.n || strstr(prompt, "<|image|>") || strstr(prompt, "<|audio|>")) return g4_strdup(prompt);
    size_t n = strlen(prompt) + (size_t)s_med.n * 10 + 1;
    char *r = g4_malloc(n);
    if (!r) return NULL;
    r[0] = 0;
    for (int i = 0; i < s_med.n; i++) strcat(r, s_med.kind[i] == G4_MEDIA_IMAGE ? "<|image|>" : "<|audio|>");
    strcat(r, prompt);
    return r;
}

/* The conversation a plain prompt becomes without --raw. */

static char *s_chat_json(const char *prompt, const char *system)
{
    cJSON *c = cJSON_CreateObject(), *msgs = cJSON_AddArrayToObject(c, "messages");
    if (system) {
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "system");
        cJSON_AddStringToObject(m, "content", system);
        cJSON_AddItemToArray(msgs, m);
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    if (s_med.n) { /* the media first, then the text: <|image|>…Describe. */
        cJSON *parts = cJSON_AddArrayToObject(m, "content");
        for (int i = 0; i < s_med.n; i++) {
            cJSON *pt = cJSON_CreateObject();
            cJSON_AddStringToObject(pt, "type", s_med.kind[i] == G4_MEDIA_IMAGE ? "image" : "audio");
            cJSON_AddItemToArray(parts, pt);
        }
        cJSON *pt = cJSON_CreateObject();
        cJSON_AddStringToObject(pt, "type", "text");
        cJSON_AddStringToObject(pt, "text", prompt);
        cJSON_AddItemToArray(parts, pt);
    } else {
        cJSON_AddStringToObject(m, "content", prompt);
    }
    cJSON_AddItemToArray(msgs, m);
    cJSON_AddBoolToObject(c, "add_generation_prompt", 1);
    cJSON_AddStringToObject(c, "bos_token", "<bos>");
    char *s = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    return s;
}

static int s_run_stack(const char *model, const char *prompt, int raw, const char *system, const int32_t *ids,
                       int n_ids, const g4_sampler_params_t *sp, int n_predict, int logprobs, int json, int n_shards,
                       int threads, int n_ctx, int kv_type, int mmap_only, const char *tmpl, int ignore_eos,
                       const char *sched_ep, const char **stops, int n_stop, double timeout_s, const char *draft_path,
                       const cli_spec_t *spec);

/* ---- in this process ---------------------------------------------------------------- */

/* What the in-process run keeps while cli_generate_local runs. */
typedef struct s_local {
    const tok_vocab_t *vocab;
    int json, logprobs;
    int32_t *ids; /* sampled */
    g4_logprob_t *lps;
    int n_out;
    tok_stream_t stream; /* the text so far (not with --json) */
    char *stream_buf;
    size_t stream_len;
    cli_progress_t prog;
    int n_prompt, n_layer, off, nc, layers, decoding;
} s_local_t;

/* prefill progress: rows of the chunks done plus the share of the current
 * chunk's layers (the model calls this after each layer) */
static void s_prefill_layer(void *user)
{
    s_local_t *p = user;
    if (p->decoding) return;
    p->layers++;
    cli_progress_update(&p->prog, p->off + (double)p->nc * p->layers / (p->n_layer ? p->n_layer : 1), p->n_prompt);
}

static void s_local_chunk(void *user, int off, int n)
{
    s_local_t *p = user;
    p->off = off, p->nc = n, p->layers = 0;
}

static void s_local_token(void *user, int32_t id, const g4_logprob_t *top, int eog)
{
    s_local_t *p = user;
    if (!p->decoding) p->decoding = 1, cli_progress_clear(&p->prog); /* the prefill is over */
    if (top) memcpy(p->lps + (size_t)p->n_out * p->logprobs, top, (size_t)p->logprobs * sizeof *top);
    p->ids[p->n_out++] = id;
    if (p->json || eog) return;
    size_t before = p->stream_len;
    if (tok_stream_feed(p->vocab, &p->stream, id, &p->stream_buf, &p->stream_len) > 0)
        fwrite(p->stream_buf + before, 1, p->stream_len - before, stdout), fflush(stdout);
}

/* The prompt as ids: raw (media placeholders in front) or one user turn of
 * the chat template (the tokenizer adds BOS itself). 0, or 1 with the error printed. */
static int s_tokenize_local(g4_model_t *m, const tok_vocab_t *vocab, const char *prompt, int raw, const char *system,
                            const char *tmpl, int32_t **ids, int *n)
{
    g4_err_t err;
    const char *ptext = prompt;
    size_t plen = strlen(prompt);
    char *rendered = NULL;
    if (raw && s_med.n) {
        rendered = s_raw_prompt(prompt);
        ptext = rendered;
        plen = rendered ? strlen(rendered) : 0;
    }
    if (!raw) {
        tj_template_t *t = tmpl ? tok_chat_template_file(tmpl, &err) : tok_chat_template_gguf(g4_model_gguf(m), &err);
        char *cj = t ? s_chat_json(prompt, system) : NULL;
        cJSON *conv = cj ? cJSON_Parse(cj) : NULL;
        rendered = conv ? tok_chat_render(t, conv, &plen, &err) : NULL;
        cJSON_Delete(conv);
        cJSON_free(cj);
        tj_free(&t);
        if (!rendered) {
            cli_error("%s (use --raw for a prompt without the chat template)", err.msg);
            return 1;
        }
        ptext = rendered;
        if (plen >= 5 && !memcmp(ptext, "<bos>", 5)) ptext += 5, plen -= 5;
    }
    int trc = tok_vocab_tokenize(vocab, ptext, plen, 1, 1, ids, n, &err);
    g4_free(rendered);
    if (trc) cli_error("%s", err.msg);
    return trc ? 1 : 0;
}

/* In-process media: encode each file and splice its soft tokens in where its
 * placeholder is (g4_media_splice, as schedulerd does). *embd gets the
 * soft-token rows in prompt order. */
static int s_splice_media(const tok_vocab_t *vocab, int H, int32_t **ids, int *n, int8_t **flags, float **embd)
{
    int32_t mid[6];
    tokd_media_ids(vocab, mid);
    g4_err_t err;
    if (g4_media_check(*ids, *n, mid, s_med.kind, s_med.n, &err)) { /* before encoding anything */
        cli_error("%s", err.msg);
        return 1;
    }
    enc_model_t *em = enc_model_load(s_med.mmproj, &err);
    if (!em) {
        cli_error("%s", err.msg);
        return 1;
    }
    float *emb[64] = {0};
    int nt[64] = {0}, order[64], total = *n, rows = 0, rc = 1;
    for (int i = 0; i < s_med.n; i++) {
        size_t len;
        char *data = cli_read_file(s_med.file[i], &len);
        int ne;
        if (!data) {
            cli_error("%s: %s", s_med.file[i], strerror(errno));
            goto out;
        }
        int erc = enc_encode(em, s_med.kind[i], (const uint8_t *)data, len, &s_med.opts, &emb[i], &nt[i], &ne, &err);
        g4_free(data);
        if (erc) {
            cli_error("%s: %s", s_med.file[i], err.msg);
            goto out;
        }
        if (ne != H) {
            cli_error("%s: the projector makes width %d, the model has %d", s_med.mmproj, ne, H);
            goto out;
        }
        total += nt[i] + 1, rows += nt[i];
    }
    int32_t *t2 = g4_malloc((size_t)total * sizeof *t2);
    int8_t *f2 = g4_malloc((size_t)total);
    float *e2 = g4_malloc((size_t)rows * H * sizeof(float) + 1);
    const int k = t2 && f2 && e2 ? g4_media_splice(*ids, *n, mid, s_med.kind, nt, s_med.n, g4_media_bidir(H), t2, f2,
                                                   order, &err)
                                 : g4_err_set(&err, G4_ERR_NOMEM, "out of memory");
    if (k < 0) {
        cli_error("%s", err.msg);
        g4_free(t2), g4_free(f2), g4_free(e2);
        goto out;
    }
    for (int j = 0, r = 0; j < s_med.n; r += nt[order[j]], j++)
        memcpy(e2 + (size_t)r * H, emb[order[j]], (size_t)nt[order[j]] * H * sizeof(float));
    g4_free(*ids);
    *ids = t2, *n = k, *flags = f2, *embd = e2;
    rc = 0;
out:
    for (int i = 0; i < s_med.n; i++) free(emb[i]);
    enc_model_destroy(&em);
    return rc;
}

int cli_run(int argc, char **argv)
{
    const char *model = NULL, *prompt = NULL, *file = NULL, *ids_arg = NULL, *system = NULL, *tmpl = NULL;
    int n_shards = 0, ignore_eos = 0;
    const char *sched_ep = NULL, *stops[16];
    int n_stop = 0;
    double timeout_s = 0;
    int n_predict = -1, json = 0, raw = 0, logprobs = 0, threads = 0, n_ctx = 0, kv_type = 0, mmap_only = 0, in_process = 0;
    const char *draft_path = NULL;
    cli_spec_t spec = {.n_max = 3}; /* llama.cpp's defaults: 3 drafted, no minimum, no p-min */
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
        else if (OPT("--system")) system = v;
        else if (OPT("--template")) tmpl = v;
        else if (OPT("--shards")) n_shards = atoi(v);
        else if (OPT("--devices")) s_devices = v;
        else if (OPT("--scheduler")) sched_ep = v;
        else if (OPT("--stop")) {
            if (n_stop < 16) stops[n_stop++] = v;
        } else if (OPT("--timeout")) timeout_s = atof(v);
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
        else if (OPT("--draft-model")) draft_path = v;
        else if (OPT("--draft-max")) spec.n_max = atoi(v), spec.max_given = 1;
        else if (OPT("--draft-min")) spec.n_min = atoi(v);
        else if (OPT("--draft-p-min")) spec.p_min = (float)atof(v);
        else if (OPT("--threads") || OPT("-t")) threads = atoi(v);
        else if (OPT("--ctx") || OPT("-c")) n_ctx = atoi(v);
        else if (OPT("--mmproj")) s_med.mmproj = v;
        else if (OPT("--image") || OPT("--audio")) {
            if (s_med.n == 64) {
                cli_error("at most 64 media");
                return 2;
            }
            s_med.kind[s_med.n] = a[2] == 'i' ? G4_MEDIA_IMAGE : G4_MEDIA_AUDIO;
            s_med.file[s_med.n++] = v;
        } else if (OPT("--image-min-tokens")) s_med.opts.image_min_tokens = atoi(v);
        else if (OPT("--image-max-tokens")) s_med.opts.image_max_tokens = atoi(v);
        else if (!strcmp(a, "--kv-f32")) kv_type = G4_KV_F32;
        else if (OPT("--kv-type") || OPT("-ctk") || OPT("-ctv")) {
            if ((kv_type = g4_kv_type_from_name(v)) < 0) {
                cli_error("--kv-type must be f16, f32 or q8_0, not '%s'", v);
                return 2;
            }
        }
        else if (!strcmp(a, "--mmap")) mmap_only = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (!strcmp(a, "--raw")) raw = 1;
        else if (!strcmp(a, "--in-process")) in_process = 1;
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = 1;
        else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) s_verbose = 1;
        else return cli_bad_option("run", a);
#undef OPT
    }
    if (!model && !in_process && !sched_ep) {
        char d[256], e[300];
        if (cli_stack_find(d, sizeof d, e, sizeof e)) {
            cli_error("no stack is up: give the model with -m (or --scheduler EP)");
            return 2;
        }
    }
    if ((!model && in_process) || (!prompt && !file && !ids_arg)) {
        cli_error("usage: g4 run -m MODEL.gguf (-p TEXT | -f FILE | --prompt-ids IDS) [-n N] [--json] (see --help)");
        return 2;
    }
    if (s_med.n && !s_med.mmproj && !sched_ep) {
        cli_error("--image / --audio need the projector: --mmproj MMPROJ.gguf");
        return 2;
    }
    if (n_predict == 0) n_predict = -1; /* -n 0 meant "unlimited" on the stack: one meaning on both paths */
    if (!sched_ep && model && cli_check_files(model, s_med.mmproj)) return 1; /* before a daemon starts */
    if (!sched_ep && model && cli_plan_check_fits(model, n_shards, n_ctx)) return 1; /* (no -m: the stack that is up) */
    if (draft_path && cli_check_draft(draft_path)) return 1;
    if (!in_process) {
        char *ftext = NULL;
        int32_t *ids = NULL;
        int n_ids = 0;
        if (file && !(ftext = cli_read_file(file, NULL))) {
            cli_error("%s: %s", file, strerror(errno));
            return 1;
        }
        if (ids_arg && (s_parse_ids(ids_arg, &ids, &n_ids) || n_ids == 0)) {
            cli_error("--prompt-ids needs a comma-separated list of token ids");
            g4_free(ftext);
            return 2;
        }
        int r = s_run_stack(model, ftext ? ftext : prompt, raw, system, ids, n_ids, &sp, n_predict, logprobs, json,
                            n_shards, threads, n_ctx, kv_type, mmap_only, tmpl, ignore_eos, sched_ep, stops, n_stop, timeout_s,
                            draft_path, &spec);
        g4_free(ftext);
        g4_free(ids);
        return r;
    }
    if (threads > 0) g4_kernels_set_threads(threads);
    g4_err_t err;
    int rc = 1;
    g4_model_t *m = g4_model_load(model, 0, -1, &err);
    if (!m) {
        cli_error("%s", err.msg);
        return 1;
    }
    /* one device in process: cpu, or a GPU (the weights go to its memory) */
    const int gpu = s_devices ? g4_device_from_name(s_devices) : 0;
    if (gpu < 0) {
        cli_error("--devices %s: an in-process run takes one device, cpu or cuda:N (several: leave out --in-process)",
                  s_devices);
        g4_model_destroy(&m);
        return 2;
    }
    if (!gpu) g4_model_warm(m, mmap_only ? G4_WEIGHTS_MAP : G4_WEIGHTS_COPY);
    const g4_hparams_t *hp = g4_model_hparams(m);
    tok_vocab_t *vocab = tok_vocab_load(g4_model_gguf(m), &err);
    g4_ctx_t *ctx = NULL;
    g4_sampler_t *smp = NULL;
    int32_t *prompt_ids = NULL;
    char *text_buf = NULL, *file_text = NULL;
    int n_prompt = 0;
    int8_t *flags = NULL;
    float *embd = NULL;
    s_local_t lo = {.vocab = vocab, .json = json, .logprobs = logprobs};
    int spec_on = 0;
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
        if (s_tokenize_local(m, vocab, prompt, raw, system, tmpl, &prompt_ids, &n_prompt)) goto done;
    }
    if (s_med.n && s_splice_media(vocab, (int)hp->n_embd, &prompt_ids, &n_prompt, &flags, &embd)) goto done;
    for (int i = 0; i < n_prompt; i++)
        if (!(flags && (flags[i] & G4_ROW_EMBD)) && (prompt_ids[i] < 0 || (uint32_t)prompt_ids[i] >= hp->n_vocab)) {
            cli_error("prompt id %d is outside the vocabulary (%u)", prompt_ids[i], hp->n_vocab);
            goto done;
        }
    /* -n -1: until the end of the turn, bounded by the context (--ctx, else the plan's) as on the stack */
    const int bounded = n_predict < 0;
    if (bounded) n_predict = (n_ctx > 0 ? n_ctx : CLI_PLAN_CTX) - n_prompt;
    if (n_predict < 1) {
        cli_error("the prompt (%d tokens) fills the context (%d): give a larger --ctx", n_prompt, n_ctx > 0 ? n_ctx : CLI_PLAN_CTX);
        goto done;
    }
    g4_ctx_params_t cp = {.n_ctx = n_ctx > 0 ? n_ctx : n_prompt + n_predict + 1, .n_ubatch = 512, .n_seq_max = 1,
                          .kv_type = kv_type, .gpu = gpu};
    ctx = g4_ctx_new(m, &cp, &err);
    if (ctx && draft_path && cli_spec_load(draft_path, m, cp.n_ctx, kv_type, &spec)) goto done;
    spec_on = draft_path != NULL;
    smp = ctx ? g4_sampler_new(&sp, (int)hp->n_vocab, &err) : NULL;
    lo.ids = g4_malloc((size_t)(n_predict + 1) * sizeof *lo.ids);
    lo.lps = g4_malloc((size_t)(logprobs ? logprobs : 1) * (size_t)(n_predict + 1) * sizeof *lo.lps);
    if (!ctx || !smp || !lo.ids || !lo.lps) {
        cli_error("%s", ctx && smp ? "out of memory" : err.msg);
        goto done;
    }
    lo.n_prompt = n_prompt, lo.n_layer = (int)hp->n_layer;
    cli_progress_init(&lo.prog, "prefill", "tokens", !json);
    g4_ctx_on_layer(ctx, s_prefill_layer, &lo);
    tok_stream_init(&lo.stream, 0);
    const cli_local_req_t req = {prompt_ids, n_prompt, flags, embd, n_predict, ignore_eos, logprobs,
                                 spec_on ? &spec : NULL};
    const cli_local_cb_t cb = {s_local_chunk, s_local_token, &lo};
    cli_local_out_t out;
    const int grc = cli_generate_local(m, ctx, smp, &req, &cb, &out, &err);
    g4_ctx_on_layer(ctx, NULL, NULL);
    cli_progress_clear(&lo.prog);
    if (grc) {
        cli_error("%s", err.msg);
        goto done;
    }
    const double prefill_ms = (double)(out.t_prefilled - out.t_start) / 1e6;
    const double decode_ms = (double)(out.t_end - out.t_prefilled) / 1e6;
    if (!json) cli_progress_summary(n_prompt, out.n_out, prefill_ms, decode_ms, s_verbose);
    if (!json && spec_on && (s_verbose || out.n_drafted))
        fprintf(stderr, "draft: %d drafted, %d accepted (%.2f) in %d passes\n", out.n_drafted, out.n_accepted,
                out.n_drafted ? (double)out.n_accepted / out.n_drafted : 0.0, out.n_verify);
    if (bounded && !strcmp(out.finish, "length"))
        fprintf(stderr, "note: the context (%d positions) ended the reply; a longer one: --ctx N\n", (int)cp.n_ctx);
    if (!json) {
        size_t before = lo.stream_len;
        if (tok_stream_flush(&lo.stream, &lo.stream_buf, &lo.stream_len) > 0)
            fwrite(lo.stream_buf + before, 1, lo.stream_len - before, stdout);
        fputc('\n', stdout);
        rc = 0;
        goto done;
    }
    {
        size_t text_len = 0;
        text_buf = tok_detokenize_text(vocab, lo.ids, out.n_out, 0, &text_len);
        s_print_json(prompt_ids, n_prompt, lo.ids, out.n_out, text_buf, text_len, out.finish, prefill_ms, decode_ms,
                     logprobs, lo.lps, spec_on ? &out : NULL);
        rc = 0;
    }
done:
    g4_free(flags);
    g4_free(embd);
    g4_free(text_buf);
    g4_free(lo.stream_buf);
    g4_free(file_text);
    g4_free(prompt_ids);
    g4_free(lo.ids);
    g4_free(lo.lps);
    g4_sampler_destroy(&smp);
    cli_spec_free(&spec);
    g4_ctx_destroy(&ctx);
    tok_vocab_destroy(&vocab);
    g4_model_destroy(&m);
    return rc;
}

/* ---- the request through the daemons ---------------------------------------------- */

typedef struct s_stream_ctx {
    cli_progress_t prog;
    int json, logprobs;
    int32_t *prompt_ids;
    int n_prompt;
    g4_logprob_t *lps;
    int n_tok, cap;
} s_stream_ctx_t;

static void s_on_started(void *user, const int32_t *ids, size_t n)
{
    s_stream_ctx_t *c = user;
    g4_free(c->prompt_ids);
    c->prompt_ids = g4_malloc((n + 1) * sizeof *ids);
    if (c->prompt_ids) memcpy(c->prompt_ids, ids, n * sizeof *ids), c->n_prompt = (int)n;
}

static void s_on_progress(void *user, const G4__V1__Progress *p)
{
    s_stream_ctx_t *c = user;
    cli_progress_update(&c->prog, p->prompt_done, p->prompt_total);
}

static void s_on_token(void *user, const G4__V1__TokenEvent *t)
{
    s_stream_ctx_t *c = user;
    cli_progress_clear(&c->prog);
    if (!c->json && t->text.len) {
        fwrite(t->text.data, 1, t->text.len, stdout);
        fflush(stdout);
    }
    if (c->logprobs > 0) {
        if ((c->n_tok + 1) * c->logprobs > c->cap) {
            int cap = (c->n_tok * 2 + 16) * c->logprobs;
            g4_logprob_t *nl = g4_realloc(c->lps, (size_t)cap * sizeof *nl);
            if (!nl) return;
            c->lps = nl, c->cap = cap;
        }
        for (int k = 0; k < c->logprobs; k++) {
            g4_logprob_t *o = &c->lps[(size_t)c->n_tok * (size_t)c->logprobs + (size_t)k];
            o->id = (size_t)k < t->n_top ? t->top[k]->id : -1;
            o->logprob = (size_t)k < t->n_top ? t->top[k]->logprob : 0;
        }
    }
    c->n_tok++;
}

static int s_run_stack(const char *model, const char *prompt, int raw, const char *system, const int32_t *ids,
                       int n_ids, const g4_sampler_params_t *sp, int n_predict, int logprobs, int json, int n_shards,
                       int threads, int n_ctx, int kv_type, int mmap_only, const char *tmpl, int ignore_eos,
                       const char *sched_ep, const char **stops, int n_stop, double timeout_s, const char *draft_path,
                       const cli_spec_t *spec)
{
    char ep[300];
    cli_stack_t st;
    int own = 0;
    cli_stack_opts_t o = {.model = model, .template_path = tmpl, .n_shards = n_shards, .threads = threads,
                          .n_ctx = n_ctx, .n_slots = 4, .kv_type = kv_type, .mmap = mmap_only,
                          .mmproj = s_med.mmproj, .devices = s_devices, .draft_model = draft_path, .draft_max = spec->n_max,
                          .draft_min = spec->n_min, .draft_p_min = spec->p_min};
    if (sched_ep) snprintf(ep, sizeof ep, "%s", sched_ep); /* a stack anywhere: tcp://host:port */
    else if (cli_stack_acquire(&o, &st, &own, ep, sizeof ep)) return 1;
    G4__V1__GenerateRequest req = G4__V1__GENERATE_REQUEST__INIT;
    G4__V1__SamplingParams p;
    G4__V1__PromptIds pi = G4__V1__PROMPT_IDS__INIT;
    char *chat = NULL, *raw_text = NULL;
    G4__V1__Media med[64], *medp[64];
    char *mdata[64] = {0};
    for (int i = 0; i < s_med.n; i++) {
        size_t len = 0;
        if (!(mdata[i] = cli_read_file(s_med.file[i], &len))) {
            cli_error("%s: %s", s_med.file[i], strerror(errno));
            for (int k = 0; k < i; k++) g4_free(mdata[k]);
            if (own) cli_stack_stop(&st);
            return 1;
        }
        g4__v1__media__init(&med[i]);
        med[i].kind = s_med.kind[i] == G4_MEDIA_IMAGE ? G4__V1__MEDIA_KIND__MEDIA_IMAGE : G4__V1__MEDIA_KIND__MEDIA_AUDIO;
        med[i].data.data = (uint8_t *)mdata[i], med[i].data.len = len;
        med[i].image_min_tokens = s_med.opts.image_min_tokens, med[i].image_max_tokens = s_med.opts.image_max_tokens;
        medp[i] = &med[i];
    }
    req.media = medp, req.n_media = (size_t)s_med.n;
    g4_client_sampling(sp, logprobs, &p);
    if (spec->max_given) p.draft_max = spec->n_max > 0 ? spec->n_max : -1; /* (0: this request drafts nothing) */
    req.sampling = &p;
    req.max_tokens = n_predict > 0 ? n_predict : 0; /* 0: until the end of the turn or of the context */
    req.ignore_eos = ignore_eos;
    ProtobufCBinaryData stop_bin[16];
    for (int i = 0; i < n_stop; i++) stop_bin[i].data = (uint8_t *)stops[i], stop_bin[i].len = strlen(stops[i]);
    req.stop = stop_bin, req.n_stop = (size_t)n_stop;
    if (ids) {
        pi.ids = (int32_t *)ids, pi.n_ids = (size_t)n_ids;
        req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_IDS;
        req.ids = &pi;
    } else if (raw) {
        raw_text = s_raw_prompt(prompt);
        req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_TEXT;
        req.text.data = (uint8_t *)raw_text, req.text.len = raw_text ? strlen(raw_text) : 0;
    } else {
        chat = s_chat_json(prompt, system);
        req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_CHAT_JSON;
        req.chat_json = chat;
    }
    int rc = 0;
    s_stream_ctx_t sc = {.json = json, .logprobs = logprobs};
    cli_progress_init(&sc.prog, "prefill", "tokens", !json);
    g4_client_cb_t cb = {.on_started = s_on_started, .on_token = s_on_token, .on_progress = s_on_progress, .user = &sc};
    G4__V1__Envelope *done = NULL;
    rc = cli_generate(ep, &req, &cb, timeout_s > 0 ? (uint64_t)(timeout_s * 1000) : 0, &done);
    cli_progress_clear(&sc.prog);
    if (rc && own && !cli_stack_interrupted()) {
        fprintf(stderr, "the daemons' last words:\n");
        cli_stack_print_logs(&st);
    }
    if (rc == 0) {
        G4__V1__Done *d = done->event->done;
        if (!json) {
            fputc('\n', stdout);
            if (d->usage)
                cli_progress_summary(d->usage->prompt_tokens, d->usage->completion_tokens, d->usage->prefill_ms,
                                     d->usage->decode_ms, s_verbose);
            if (d->usage && draft_path && (s_verbose || d->usage->draft_tokens))
                fprintf(stderr, "draft: %d drafted, %d accepted (%.2f) in %d passes\n", d->usage->draft_tokens,
                        d->usage->draft_accepted,
                        d->usage->draft_tokens ? (double)d->usage->draft_accepted / d->usage->draft_tokens : 0.0,
                        d->usage->draft_passes);
            if (!req.max_tokens && d->finish_reason && !strcmp(d->finish_reason, "length"))
                fprintf(stderr, "note: the context ended the reply; a longer one: --ctx N\n");
        } else {
            /* the prompt ids came in the started event; the done event has the rest */
            const int n_out = (int)d->n_ids;
            cli_local_out_t so = {0}; /* speculative decoding: the counts the stack measured */
            if (d->usage)
                so.n_drafted = d->usage->draft_tokens, so.n_accepted = d->usage->draft_accepted,
                so.n_verify = d->usage->draft_passes;
            s_print_json(sc.prompt_ids, sc.n_prompt, d->ids, n_out, (const char *)d->text.data, d->text.len,
                         d->finish_reason, d->usage ? d->usage->prefill_ms : 0, d->usage ? d->usage->decode_ms : 0,
                         sc.n_tok >= n_out ? logprobs : 0, sc.lps,
                         d->usage && (draft_path || d->usage->draft_passes) ? &so : NULL);
        }
        g4__v1__envelope__free_unpacked(done, NULL);
    }
    cJSON_free(chat);
    g4_free(raw_text);
    for (int i = 0; i < s_med.n; i++) g4_free(mdata[i]);
    g4_free(sc.prompt_ids);
    g4_free(sc.lps);
    if (own) cli_stack_stop(&st);
    return rc;
}
