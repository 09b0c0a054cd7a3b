/* shardd — one stage of the forward chain: layers [A, B) of the model
 * (shard_service). Life: options -> pin to the node's cores (shard_place) ->
 * load the layers, ready the weights on the node -> bind the data socket ->
 * register -> the worker computes, this thread heartbeats (shard_daemon_run)
 * -> SIGTERM -> stop, exit 0. `shardd --help` lists the options. */
#include <omp.h>
#include <stddef.h>
#include <stdio.h>

#include "g4_daemon.h"
#include "g4_log.h"
#include "g4_matmul.h"
#include "shard_daemon.h"
#include "shard_place.h"

typedef struct shardd_cfg {
    g4_daemon_cfg_t d;
    char *model, *layers, *cpuset, *kv_type, *draft_model, *device;
    double draft_p_min;
    int64_t threads, numa_node, slots, ctx, ubatch, min_forward_ms, cache_mb, draft_max, draft_min;
    int kv_f32, mmap;
} shardd_cfg_t;

#define S_OPT(t, field) .type = t, .offset = offsetof(shardd_cfg_t, field)
static const g4_cfg_opt_t s_opts[] = {
    {"model", S_OPT(G4_CFG_STRING, model), NULL, 1, 0, 0, "the GGUF", .alias = "-m", .flags = G4_CFG_REQUIRED, .arg = "M.gguf"},
    {"layers", S_OPT(G4_CFG_STRING, layers), NULL, 1, 0, 0, "layers [A, B) (B may be 'end'; default: all)", .arg = "A-B"},
    {"threads", S_OPT(G4_CFG_INT, threads), "0", 0, 4096, 0, "compute threads (0: the pinned cores, else all)"},
    {"numa-node", S_OPT(G4_CFG_INT, numa_node), "-1", -1, 4096, 0, "run on NUMA node K's cores, memory bound there", .arg = "K"},
    {"device", S_OPT(G4_CFG_STRING, device), "cpu", 1, 0, 0,
     "compute on: cpu, or cuda:N (the layers' weights and caches in GPU N's memory)", .arg = "D"},
    {"cpuset", S_OPT(G4_CFG_STRING, cpuset), NULL, 1, 0, 0, "run on these cores (e.g. 0-7,16-23)", .arg = "LIST"},
    {"slots", S_OPT(G4_CFG_INT, slots), "16", 1, 1 << 16, 0, "sequences held at once"},
    {"ctx", S_OPT(G4_CFG_INT, ctx), "0", 0, 1 << 24, 0, "positions per sequence (0: the model's)"},
    {"ubatch", S_OPT(G4_CFG_INT, ubatch), "512", 1, 1 << 20, 0, "rows per batch at most"},
    {"kv-type", S_OPT(G4_CFG_STRING, kv_type), "f16", 1, 0, 0, "KV cache type: f16, f32 or q8_0 (llama.cpp's -ctk/-ctv)", .arg = "T"},
    {"kv-f32", S_OPT(G4_CFG_BOOL, kv_f32), NULL, 1, 0, 0, "the same as --kv-type f32"},
    {"cache-mb", S_OPT(G4_CFG_INT, cache_mb), "-1", -1, 1ll << 40, 0,
     "prefix cache budget in MiB (0: none; -1: a quarter of the memory available at start)", .arg = "N"},
    {"draft-model", S_OPT(G4_CFG_STRING, draft_model), NULL, 1, 0, 0,
     "speculative decoding (the stage with the last layer): a gemma4-assistant GGUF for the model, or a draft model "
     "with its vocabulary", .alias = "-md", .arg = "D.gguf"},
    {"draft-max", S_OPT(G4_CFG_INT, draft_max), "3", 0, 64, 0, "ids drafted per step at most (llama.cpp's default 3)"},
    {"draft-min", S_OPT(G4_CFG_INT, draft_min), "0", 0, 64, 0, "fewer drafted ids than this: none"},
    {"draft-p-min", S_OPT(G4_CFG_DOUBLE, draft_p_min), "0", 0, 1, 0,
     "stop drafting below this probability of the drafter's top id", .arg = "P"},
    {"mmap", S_OPT(G4_CFG_BOOL, mmap), NULL, 1, 0, 0,
     "compute from the file's mapping (default: copy the weights to huge pages in the background)"},
    {"min-forward-ms", S_OPT(G4_CFG_INT, min_forward_ms), "0", 0, 1 << 30, 0,
     "fault injection for tests: every forward pass lasts at least N ms", .env = "G4_SHARD_MIN_FORWARD_MS"},
};
static const g4_daemon_spec_t s_spec = {
    .prog = "shardd",
    .about = "One stage of the forward chain: layers [A, B) of a Gemma 4 model.",
    .opts = s_opts, .n_opts = sizeof s_opts / sizeof s_opts[0],
    .common_offset = offsetof(shardd_cfg_t, d), .registers = 1,
};

int main(int argc, char **argv)
{
    shardd_cfg_t c;
    g4_daemon_opts_t o;
    const int usage = g4_daemon_configure(&o, &s_spec, &c, argc, argv);
    if (usage >= 0) return usage;
    char name[64];
    shard_params_t p = {.model_path = c.model, .n_slots = (int)c.slots, .n_ctx = (int)c.ctx,
                        .n_ubatch = (int)c.ubatch, .kv_type = c.kv_f32 ? G4_KV_F32 : g4_kv_type_from_name(c.kv_type),
                        .min_forward_ms = (int)c.min_forward_ms, .cache_mb = c.cache_mb,
                        .spec = {.path = c.draft_model, .n_max = (int)c.draft_max, .n_min = (int)c.draft_min,
                                 .p_min = (float)c.draft_p_min}};
    if ((p.gpu = g4_device_from_name(c.device)) < 0) {
        fprintf(stderr, "shardd: --device must be cpu or cuda:N, not '%s'\n", c.device);
        g4_daemon_opts_fini(&o);
        return 2;
    }
    if (p.kv_type < 0) {
        fprintf(stderr, "shardd: --kv-type must be f16, f32 or q8_0, not '%s'\n", c.kv_type);
        g4_daemon_opts_fini(&o);
        return 2;
    }
    if (shard_place_layers(c.layers, &p.begin, &p.end, name, sizeof name)) {
        fprintf(stderr, "shardd: --layers wants A-B, got '%s'\n", c.layers);
        g4_daemon_opts_fini(&o);
        return 2;
    }
    g4_daemon_signals();
    const int pinned = shard_place_pin((int)c.numa_node, c.cpuset);
    if (pinned < 0) goto out; /* (shard_place_pin said why) */
    const int threads = c.threads > 0 ? (int)c.threads : pinned > 0 ? pinned : omp_get_num_procs();
    g4_kernels_set_threads(threads);
    p.name = c.d.name ? c.d.name : name;
    g4_err_t err;
    void *zctx = zmq_ctx_new(), *data = NULL;
    shard_t s;
    if (g4_wire_security_init(zctx, 1, &err) || shard_init(&s, zctx, &p, &err)) goto fail;
    /* on a GPU the weights are in device memory already (shard_init): no host copy */
    const g4_weights_mode_t wmode = p.gpu ? G4_WEIGHTS_MAP : g4_model_warm(s.model, c.mmap ? G4_WEIGHTS_MAP : G4_WEIGHTS_COPY);
    if (!p.gpu) shard_place_bind_weights((int)c.numa_node, s.model);
    s.check_route = c.d.scheduler != NULL; /* forwards only along the chains the scheduler sends */
    if (!(data = g4_wire_socket(zctx, ZMQ_PULL, &err))) goto fail;
    g4_wire_set_maxmsg(data, shard_max_frame(&s)); /* the largest frame a batch of --ubatch rows has */
    if (g4_wire_bind(data, c.d.listen, &err)) goto fail;
    const g4_daemon_info_t info = {.role = G4__V1__ROLE__ROLE_SHARD, .name = p.name, .model = c.model,
                                   .digest = g4_gguf_digest(g4_model_gguf(s.model)), .layer_begin = s.begin,
                                   .layer_end = s.end, .n_layer = (int)s.hp->n_layer, .n_slots = s.n_slots,
                                   .n_ctx = g4_ctx_n_ctx(s.ctx), .n_vocab = (int)s.hp->n_vocab,
                                   .cache_budget = shard_store_budget(s.store), .cache_row = s.cache_cost.row,
                                   .cache_fixed = s.cache_cost.fixed,
                                   .draft = s.spec ? shard_spec_kind(s.spec) : NULL,
                                   .draft_max = s.spec ? shard_spec_max(s.spec) : 0};
    g4_daemon_t d;
    if (g4_daemon_register(&d, zctx, &c.d, &info, &err)) goto fail;
    g4_log_info("shardd", "%s: layers %d-%d of %u on %s, %s, %d threads, %d slots, weights %s%s%s", c.model, s.begin, s.end,
                s.hp->n_layer, c.d.listen, c.device, threads, s.n_slots,
                p.gpu ? "in GPU memory" : wmode == G4_WEIGHTS_COPY ? "being copied" : "mapped",
                s.spec ? ", drafting with " : "", s.spec ? c.draft_model : "");
    s.work = &d.work; /* the worker publishes its batch and layer progress there */
    if (shard_worker_start(&s, data, &err)) goto fail;
    shard_daemon_run(&s, &d, wmode); /* until SIGTERM */
    shard_worker_stop(&s);
    g4_log_info("shardd", "stopping after %llu batches (%llu errors)", (unsigned long long)s.n_batches,
                (unsigned long long)s.n_errors);
    g4_daemon_close(&d);
    zmq_close(data);
    shard_free(&s);
    zmq_ctx_term(zctx);
    g4_daemon_opts_fini(&o);
    return 0;
fail:
    g4_log_error("shardd", "%s", err.msg);
out:
    g4_daemon_opts_fini(&o);
    return 1;
}
