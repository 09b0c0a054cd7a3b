/* g4 bench -m MODEL.gguf [-p 512] [-n 128] [-t THREADS] [--reps 3] [--warmup 1] [--shards N | --in-process] [--mmap]
 *          [--json]
 *
 * Prefill and decode tokens/s (medians of --reps runs of a random prompt of -p
 * tokens and -n greedy tokens, end-of-generation ignored, after --warmup
 * untimed runs — as llama.cpp's benchmark does), time to first token,
 * time to ready (model mapped and context made, or the whole stack registered),
 * the time until the weights settled (copied to huge pages, or with --mmap
 * faulted in: timed runs start after it), and peak RSS per process. By default the request goes through the daemons
 * (an embedded stack with --shards N, or the one `g4 up` started); --in-process
 * runs the decoder here. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "cli_args.h"
#include "cli_generate.h"
#include "cli_stack.h"
#include "g4_alloc.h"
#include "g4_clock.h"
#include "g4_matmul.h"
#include "g4_model.h"
#include "g4_sampler.h"
#include "g4_wire.h"

typedef struct bench_run {
    double prefill_tps, decode_tps, ttft_ms;
    int n_drafted, n_accepted; /* speculative decoding */
} bench_run_t;

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, s_cmp);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

static double s_rss_mb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    double mb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) mb = atof(line + 6) / 1024.0;
    fclose(f);
    return mb;
}

static int32_t *s_prompt(int n, int n_vocab, uint64_t seed)
{
    int32_t *ids = g4_malloc((size_t)n * sizeof *ids);
    if (!ids) return NULL;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    ids[0] = 2; /* <bos> */
    for (int i = 1; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = 300 + (int32_t)(x % (uint64_t)(n_vocab > 12300 ? 12000 : n_vocab - 300));
    }
    return ids;
}

static int s_in_process(const char *model, int np, int ng, int warmup, int reps, int kv_type, int mmap_only, int gpu,
                        const char *draft, cli_spec_t *spec, bench_run_t *runs, double *ready_ms, double *weights_ms)
{
    const uint64_t t0 = g4_clock_mono_ns();
    g4_err_t err;
    g4_model_t *m = g4_model_load(model, 0, -1, &err);
    if (!m) {
        cli_error("%s", err.msg);
        return 1;
    }
    const g4_hparams_t *hp = g4_model_hparams(m);
    g4_ctx_params_t cp = {.n_ctx = np + ng + 1, .n_ubatch = 512, .n_seq_max = 1, .kv_type = kv_type, .gpu = gpu};
    g4_ctx_t *c = g4_ctx_new(m, &cp, &err);
    if (c && draft && cli_spec_load(draft, m, cp.n_ctx, kv_type, spec)) {
        g4_ctx_destroy(&c);
        g4_model_destroy(&m);
        return 1;
    }
    *ready_ms = (double)(g4_clock_mono_ns() - t0) / 1e6;
    /* timed runs start once the weights sit where they stay (g4_model_warm) */
    if (!gpu) g4_model_warm(m, mmap_only ? G4_WEIGHTS_MAP : G4_WEIGHTS_COPY); /* (a GPU has its copy) */
    g4_model_warmed(m, 1, NULL);
    if (spec->draft) g4_model_warmed(spec->draft, 1, NULL);
    *weights_ms = (double)(g4_clock_mono_ns() - t0) / 1e6;
    g4_sampler_params_t sp;
    g4_sampler_params_default(&sp);
    sp.temp = 0;
    int rc = !c;
    if (rc) cli_error("%s", err.msg);
    for (int k = 0; !rc && k < warmup + reps; k++) {
        const int r = k - warmup; /* < 0: an untimed warm-up run */
        int32_t *ids = s_prompt(np, (int)hp->n_vocab, (uint64_t)k + 1);
        g4_sampler_t *smp = g4_sampler_new(&sp, (int)hp->n_vocab, &err);
        if (!ids || !smp) {
            rc = 1;
            g4_free(ids);
            g4_sampler_destroy(&smp);
            break;
        }
        const cli_local_req_t req = {.ids = ids, .n_ids = np, .n_predict = ng, .ignore_eos = 1, .spec = draft ? spec : NULL};
        cli_local_out_t o;
        rc = cli_generate_local(m, c, smp, &req, NULL, &o, &err);
        if (rc) cli_error("%s", err.msg);
        if (r >= 0) { /* the first id comes with the prefill (as llama.cpp times it) */
            runs[r].prefill_tps = np / ((double)(o.t_first - o.t_start) / 1e9);
            runs[r].ttft_ms = (double)(o.t_first - o.t_start) / 1e6;
            runs[r].decode_tps = ng > 1 ? (ng - 1) / ((double)(o.t_end - o.t_first) / 1e9) : 0;
            runs[r].n_drafted = o.n_drafted, runs[r].n_accepted = o.n_accepted;
        }
        g4_sampler_destroy(&smp);
        g4_free(ids);
    }
    cli_spec_free(spec);
    g4_ctx_destroy(&c);
    g4_model_destroy(&m);
    return rc;
}

/* Waits until every shard of the stack says its weights are ready (the
 * heartbeat counter weights_ready, see shardd), at most timeout_s. */
static void s_wait_weights(const char *ep, int timeout_s)
{
    const uint64_t t0 = g4_clock_mono_ns();
    while ((g4_clock_mono_ns() - t0) / 1000000000ull < (uint64_t)timeout_s) {
        G4__V1__Envelope *owner;
        G4__V1__StatusReply *r = g4_client_status(ep, 1000, &owner);
        int pending = !r;
        for (size_t i = 0; r && i < r->n_daemons; i++) {
            const G4__V1__DaemonStatus *d = r->daemons[i];
            if (d->role != G4__V1__ROLE__ROLE_SHARD) continue;
            int ready = 0;
            for (size_t k = 0; k < d->n_counters; k++)
                if (d->counters[k]->name && !strcmp(d->counters[k]->name, "weights_ready")) ready = d->counters[k]->value != 0;
            pending |= !ready;
        }
        if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
        if (!pending) return;
        usleep(100000);
    }
    cli_error("warning: the shards' weights were not ready after %d s; measuring anyway", timeout_s);
}

typedef struct s_tt {
    uint64_t t_send, t_first;
} s_tt_t;

static void s_first(void *user, const G4__V1__TokenEvent *t)
{
    (void)t;
    s_tt_t *x = user;
    if (!x->t_first) x->t_first = g4_clock_mono_ns();
}

int cli_bench(int argc, char **argv)
{
    const char *model = NULL;
    int np = 512, ng = 128, threads = 0, reps = 3, warmup = 1, shards = 0, in_process = 0, json = 0, kv_type = 0, mmap_only = 0;
    const char *draft = NULL, *devices = NULL;
    cli_spec_t spec = {.n_max = 3};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) model = v, i++;
        else if ((!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) && v) np = atoi(v), i++;
        else if ((!strcmp(a, "-n") || !strcmp(a, "--n-gen")) && v) ng = atoi(v), i++;
        else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--reps") && v) reps = atoi(v), i++;
        else if (!strcmp(a, "--warmup") && v) warmup = atoi(v), i++;
        else if (!strcmp(a, "--shards") && v) shards = atoi(v), i++;
        else if (!strcmp(a, "--devices") && v) devices = v, i++;
        else if (!strcmp(a, "--in-process")) in_process = 1;
        else if (!strcmp(a, "--draft-model") && v) draft = v, i++;
        else if (!strcmp(a, "--draft-max") && v) spec.n_max = atoi(v), i++;
        else if (!strcmp(a, "--draft-min") && v) spec.n_min = atoi(v), i++;
        else if (!strcmp(a, "--draft-p-min") && v) spec.p_min = (float)atof(v), i++;
        else if (!strcmp(a, "--kv-f32")) kv_type = G4_KV_F32;
        else if ((!strcmp(a, "--kv-type") || !strcmp(a, "-ctk") || !strcmp(a, "-ctv")) && v) {
            if ((kv_type = g4_kv_type_from_name(v)) < 0) {
                cli_error("--kv-type must be f16, f32 or q8_0, not '%s'", v);
                return 2;
            }
            i++;
        }
        else if (!strcmp(a, "--mmap")) mmap_only = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else return cli_bad_option("bench", a);
    }
    if (!model || np < 1 || np > 512 * 64 || ng < 1 || reps < 1 || reps > 100 || warmup < 0 || warmup > 100) {
        cli_error("usage: g4 bench -m MODEL.gguf [-p 512] [-n 128] ... (-p 1..32768, -n >= 1, --reps 1..100)");
        return 2;
    }
    if (draft && cli_check_draft(draft)) return 1;
    bench_run_t *runs = g4_calloc((size_t)reps, sizeof *runs);
    double ready_ms = 0, weights_ms = 0;
    int rc = 0;
    cJSON *procs = cJSON_CreateArray();
    if (in_process) {
        if (threads > 0) g4_kernels_set_threads(threads);
        const int gpu = devices ? g4_device_from_name(devices) : 0;
        if (gpu < 0) {
            cli_error("--devices %s: an in-process bench takes one device, cpu or cuda:N", devices);
            g4_free(runs);
            cJSON_Delete(procs);
            return 2;
        }
        rc = s_in_process(model, np, ng, warmup, reps, kv_type, mmap_only, gpu, draft, &spec, runs, &ready_ms, &weights_ms);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", "g4");
        cJSON_AddNumberToObject(p, "peak_rss_mb", (double)ru.ru_maxrss / 1024.0);
        cJSON_AddItemToArray(procs, p);
    } else {
        cli_stack_t st;
        int own = 0;
        char ep[300];
        cli_stack_opts_t o = {.model = model, .n_shards = shards, .threads = threads, .n_slots = 2, .kv_type = kv_type, .mmap = mmap_only,
                              .n_ctx = np + ng + 8, .devices = devices, .draft_model = draft, .draft_max = spec.n_max,
                              .draft_min = spec.n_min, .draft_p_min = spec.p_min};
        const uint64_t t0 = g4_clock_mono_ns();
        if (cli_stack_acquire(&o, &st, &own, ep, sizeof ep)) {
            g4_free(runs);
            cJSON_Delete(procs);
            return 1;
        }
        ready_ms = (double)(g4_clock_mono_ns() - t0) / 1e6;
        s_wait_weights(ep, 600);
        weights_ms = (double)(g4_clock_mono_ns() - t0) / 1e6;
        g4_err_t err;
        g4_gguf_t *g = g4_gguf_open(model, &err);
        uint32_t n_vocab = 0;
        if (g) {
            g4_gguf_value_t v;
            if (!g4_gguf_get_arr(g, "tokenizer.ggml.tokens", &v, &err)) n_vocab = (uint32_t)v.arr_n;
            g4_gguf_destroy(&g);
        }
        g4_sampler_params_t greedy; /* the sampler's defaults, temperature 0 */
        g4_sampler_params_default(&greedy);
        greedy.temp = 0;
        for (int k = 0; !rc && k < warmup + reps; k++) {
            const int r = k - warmup; /* < 0: an untimed warm-up run */
            int32_t *ids = s_prompt(np, n_vocab ? (int)n_vocab : 262144, (uint64_t)k + 1);
            G4__V1__GenerateRequest req = G4__V1__GENERATE_REQUEST__INIT;
            G4__V1__SamplingParams sp;
            g4_client_sampling(&greedy, 0, &sp);
            G4__V1__PromptIds pi = G4__V1__PROMPT_IDS__INIT;
            pi.ids = ids, pi.n_ids = (size_t)np;
            req.prompt_case = G4__V1__GENERATE_REQUEST__PROMPT_IDS;
            req.ids = &pi;
            req.sampling = &sp;
            req.max_tokens = ng;
            req.ignore_eos = 1;
            s_tt_t tt = {g4_clock_mono_ns(), 0};
            g4_client_cb_t cb = {.on_token = s_first, .user = &tt};
            G4__V1__Envelope *done = NULL;
            rc = cli_generate(ep, &req, &cb, 0, &done);
            if (!rc && r < 0) {
                g4__v1__envelope__free_unpacked(done, NULL);
            } else if (!rc) {
                G4__V1__Usage *u = done->event->done->usage;
                runs[r].prefill_tps = u && u->prefill_ms > 0 ? np / (u->prefill_ms / 1e3) : 0;
                runs[r].decode_tps = u && u->decode_ms > 0 ? (ng - 1) / (u->decode_ms / 1e3) : 0;
                runs[r].ttft_ms = tt.t_first ? (double)(tt.t_first - tt.t_send) / 1e6 : 0;
                if (u) runs[r].n_drafted = u->draft_tokens, runs[r].n_accepted = u->draft_accepted;
                g4__v1__envelope__free_unpacked(done, NULL);
            }
            g4_free(ids);
        }
        if (own) {
            for (int i = 0; i < st.n; i++) {
                cJSON *p = cJSON_CreateObject();
                cJSON_AddStringToObject(p, "name", st.name[i]);
                cJSON_AddNumberToObject(p, "peak_rss_mb", s_rss_mb(st.pid[i]));
                cJSON_AddItemToArray(procs, p);
            }
            cli_stack_stop(&st);
        }
    }
    if (rc) {
        g4_free(runs);
        cJSON_Delete(procs);
        return 1;
    }
    double *v = g4_malloc((size_t)reps * sizeof *v);
    double med[3];
    for (int k = 0; k < 3; k++) {
        for (int r = 0; r < reps; r++) v[r] = k == 0 ? runs[r].prefill_tps : k == 1 ? runs[r].decode_tps : runs[r].ttft_ms;
        med[k] = s_median(v, reps);
    }
    int n_drafted = 0, n_accepted = 0; /* over the timed runs */
    for (int r = 0; r < reps; r++) n_drafted += runs[r].n_drafted, n_accepted += runs[r].n_accepted;
    const double acceptance = n_drafted ? (double)n_accepted / n_drafted : 0;
    double peak = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, procs)
    {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(p, "peak_rss_mb");
        if (x->valuedouble > peak) peak = x->valuedouble;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "model", model);
        cJSON_AddStringToObject(j, "mode", in_process ? "in-process" : "stack");
        if (!in_process) {
            int ns = 0;
            cJSON_ArrayForEach(p, procs)
            {
                const cJSON *nm = cJSON_GetObjectItemCaseSensitive(p, "name");
                ns += cJSON_IsString(nm) && !strncmp(nm->valuestring, "shard", 5);
            }
            if (ns) cJSON_AddNumberToObject(j, "shards", ns);
        }
        cJSON_AddNumberToObject(j, "n_prompt", np);
        cJSON_AddNumberToObject(j, "n_gen", ng);
        cJSON_AddNumberToObject(j, "threads", threads > 0 ? threads : g4_kernels_threads());
        cJSON_AddNumberToObject(j, "reps", reps);
        cJSON_AddNumberToObject(j, "warmup", warmup);
        cJSON_AddNumberToObject(j, "prefill_tps", med[0]);
        cJSON_AddNumberToObject(j, "decode_tps", med[1]);
        cJSON_AddNumberToObject(j, "ttft_ms", med[2]);
        if (draft) {
            cJSON_AddStringToObject(j, "draft_model", draft);
            cJSON_AddNumberToObject(j, "draft_max", spec.n_max);
            cJSON_AddNumberToObject(j, "draft_n", n_drafted);
            cJSON_AddNumberToObject(j, "draft_n_accepted", n_accepted);
            cJSON_AddNumberToObject(j, "draft_acceptance", acceptance);
        }
        cJSON_AddNumberToObject(j, "ready_ms", ready_ms);
        cJSON_AddNumberToObject(j, "weights_ready_ms", weights_ms);
        cJSON_AddNumberToObject(j, "peak_rss_mb", peak);
        cJSON_AddItemToObject(j, "processes", procs);
        char *s = cJSON_PrintUnformatted(j);
        puts(s);
        cJSON_free(s);
        cJSON_Delete(j);
    } else {
        printf("%s (%s): prompt %d, generate %d, %d reps\n", model, in_process ? "in-process" : "stack", np, ng, reps);
        printf("  prefill %.1f tok/s   decode %.2f tok/s   time to first token %.0f ms   ready in %.0f ms"
               "   weights settled in %.0f ms\n", med[0], med[1], med[2], ready_ms, weights_ms);
        if (draft)
            printf("  speculative: %s, draft-max %d: %d drafted, %d accepted, acceptance %.2f -> decode %.2f tok/s\n",
                   draft, spec.n_max, n_drafted, n_accepted, acceptance, med[1]);
        cJSON_ArrayForEach(p, procs) printf("  %-12s peak RSS %.0f MB\n", cJSON_GetObjectItemCaseSensitive(p, "name")->valuestring,
                                            cJSON_GetObjectItemCaseSensitive(p, "peak_rss_mb")->valuedouble);
        cJSON_Delete(procs);
    }
    g4_free(v);
    g4_free(runs);
    return 0;
}
