/* shardd --model M.gguf --layers A-B --listen EP [--scheduler EP] [--advertise EP] [--threads N]
 *        [--numa-node K | --cpuset LIST] [--slots N] [--ctx N] [--ubatch N] [--kv-f32] [--mmap] [--name NAME]
 * One stage of the forward chain: layers [A, B) of the model. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_daemon.h"
#include "g4_matmul.h"
#include "g4_log.h"
#include "g4_topo.h"
#include "shard_service.h"

static const char s_usage[] =
    "usage: shardd --model M.gguf --layers A-B --listen EP [--scheduler EP] [--threads N]\n"
    "              [--numa-node K | --cpuset LIST] [--slots N] [--ctx N] [--ubatch N] [--kv-f32] [--mmap] [--name NAME]\n"
    "  --layers A-B   layers [A, B) (B may be 'end')\n"
    "  --numa-node K  run on NUMA node K's cores and bind memory there\n"
    "  --cpuset LIST  run on these cores (e.g. 0-7,16-23)\n"
    "  --mmap         compute from the file's mapping (default: copy the weights to huge pages in the background)\n"
    "  --min-forward-ms N  fault injection for tests: every forward pass lasts at least N ms\n"
    "                 (default: $G4_SHARD_MIN_FORWARD_MS)\n";

/* Pins the process (and so its OpenMP threads) through g4_topo; returns the
 * number of cores in the set, 0 when not pinned, -1 when the node or the
 * core list asked for does not exist. */
static int s_pin(int numa_node, const char *cpuset)
{
    if (numa_node < 0 && !cpuset) return 0;
    g4_topo_t *topo = g4_topo_load(NULL, NULL);
    if (!topo) return 0;
    g4_err_t err;
    char cores[256];
    int mem = 1;
    const int n = numa_node >= 0 ? g4_topo_bind_node(topo, numa_node, &mem, cores, sizeof cores, &err)
                                 : g4_topo_bind_cores(topo, cpuset, cores, sizeof cores, &err);
    if (numa_node >= 0 && n != G4_ERR_RANGE && !mem) g4_log_warn("shardd", "could not bind memory to NUMA node %d", numa_node);
    g4_topo_destroy(&topo);
    if (n == G4_ERR_RANGE) {
        g4_log_error("shardd", "%s", err.msg);
        return -1;
    }
    if (n < 0) {
        g4_log_warn("shardd", "%s", err.msg);
        return 0;
    }
    g4_log_info("shardd", "pinned to cores %s", cores);
    return n;
}

/* Moves the weights the shard multiplies with onto its NUMA node's memory:
 * their copy (g4_model_warm, COPY), or the file's pages, which sit wherever
 * the page cache put them (MAP). The KV cache and buffers allocated later
 * follow the process binding set by s_pin. */
static void s_bind_weights(int numa_node, const g4_model_t *m)
{
    g4_topo_t *topo = numa_node >= 0 ? g4_topo_load(NULL, NULL) : NULL;
    if (!topo) return;
    const int have_node = numa_node < g4_topo_n_nodes(topo);
    uint64_t bound = 0, failed = 0;
    const void *p;
    size_t n;
    const int copy = g4_model_weights_copy(m, &p, &n);
    for (int i = 0; have_node && (copy ? i == 0 : g4_model_weights(m, i, &p, &n)); i++) {
        if (g4_topo_bind_memory(topo, numa_node, p, n) == G4_OK) bound += n;
        else failed += n;
    }
    if (failed)
        g4_log_warn("shardd", "could not move %.1f MB of weights to NUMA node %d (%.1f MB moved)", failed / 1e6,
                    numa_node, bound / 1e6);
    else if (have_node)
        g4_log_info("shardd", "weights bound to NUMA node %d: %.1f MB", numa_node, bound / 1e6);
    g4_topo_destroy(&topo);
}

int main(int argc, char **argv)
{
    g4_log_set_level(G4_LOG_INFO); /* daemons say what they do; --log-level changes it */
    const char *model = NULL, *layers = NULL, *listen = NULL, *sched = NULL, *advertise = NULL, *cpuset = NULL;
    char name_buf[64];
    const char *name = NULL;
    int threads = 0, numa = -1, mmap_only = 0;
    shard_params_t p = {0};
    p.end = -1;
    const char *stretch = getenv("G4_SHARD_MIN_FORWARD_MS"); /* reaches shards a g4 command starts */
    if (stretch) p.min_forward_ms = atoi(stretch);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if ((!strcmp(a, "--model") || !strcmp(a, "-m")) && v) model = v, i++;
        else if (!strcmp(a, "--layers") && v) layers = v, i++;
        else if (!strcmp(a, "--listen") && v) listen = v, i++;
        else if (!strcmp(a, "--scheduler") && v) sched = v, i++;
        else if (!strcmp(a, "--advertise") && v) advertise = v, i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--numa-node") && v) numa = atoi(v), i++;
        else if (!strcmp(a, "--cpuset") && v) cpuset = v, i++;
        else if (!strcmp(a, "--slots") && v) p.n_slots = atoi(v), i++;
        else if (!strcmp(a, "--ctx") && v) p.n_ctx = atoi(v), i++;
        else if (!strcmp(a, "--ubatch") && v) p.n_ubatch = atoi(v), i++;
        else if (!strcmp(a, "--kv-f32")) p.kv_f32 = 1;
        else if (!strcmp(a, "--mmap")) mmap_only = 1;
        else if (!strcmp(a, "--min-forward-ms") && v) p.min_forward_ms = atoi(v), i++;
        else if (!strcmp(a, "--name") && v) name = v, i++;
        else if (g4_daemon_log_opt(a, v)) i++;
        else {
            fputs(s_usage, strcmp(a, "--help") ? stderr : stdout);
            return strcmp(a, "--help") ? 2 : 0;
        }
    }
    if (!model || !listen) {
        fputs(s_usage, stderr);
        return 2;
    }
    if (layers) {
        char *end;
        p.begin = (int)strtol(layers, &end, 10);
        if (*end != '-' && *end != ':') {
            fprintf(stderr, "shardd: --layers wants A-B, got '%s'\n", layers);
            return 2;
        }
        p.end = !strcmp(end + 1, "end") ? -1 : (int)strtol(end + 1, NULL, 10);
    }
    g4_log_set_ident("shardd");
    g4_daemon_signals();
    const int pinned = s_pin(numa, cpuset);
    if (pinned < 0) return 1;
    if (threads <= 0) threads = pinned > 0 ? pinned : omp_get_num_procs();
    g4_kernels_set_threads(threads);
    if (!name) {
        if (p.end < 0) snprintf(name_buf, sizeof name_buf, "shard-%d-end-%d", p.begin, (int)getpid());
        else snprintf(name_buf, sizeof name_buf, "shard-%d-%d-%d", p.begin, p.end, (int)getpid());
        name = name_buf;
    }
    p.model_path = model, p.name = name;
    g4_err_t err;
    void *zctx = zmq_ctx_new();
    if (g4_wire_security_init(zctx, 1, &err)) {
        g4_log_error("shardd", "%s", err.msg);
        return 1;
    }
    shard_t s;
    if (shard_init(&s, zctx, &p, &err)) {
        g4_log_error("shardd", "%s", err.msg);
        return 1;
    }
    const g4_weights_mode_t wmode = g4_model_warm(s.model, mmap_only ? G4_WEIGHTS_MAP : G4_WEIGHTS_COPY);
    s_bind_weights(numa, s.model);
    void *data = g4_wire_socket(zctx, ZMQ_PULL, &err);
    if (!data || g4_wire_bind(data, listen, &err)) {
        g4_log_error("shardd", "%s", err.msg);
        return 1;
    }
    char host[64] = "", digest[24];
    gethostname(host, sizeof host - 1);
    snprintf(digest, sizeof digest, "%016llx", (unsigned long long)g4_gguf_digest(g4_model_gguf(s.model)));
    G4__V1__Register reg = G4__V1__REGISTER__INIT;
    reg.role = G4__V1__ROLE__ROLE_SHARD;
    reg.name = (char *)name;
    reg.pid = (int)getpid();
    reg.endpoint = (char *)(advertise ? advertise : listen); /* where others connect */
    reg.model = (char *)model;
    reg.model_digest = digest;
    reg.layer_begin = s.begin, reg.layer_end = s.end;
    reg.n_layer = (int)s.hp->n_layer;
    reg.backend = "cpu";
    reg.n_slots = s.n_slots;
    reg.n_ctx = g4_ctx_n_ctx(s.ctx);
    reg.n_vocab = (int)s.hp->n_vocab;
    reg.host = host;
    g4_daemon_t d;
    if (g4_daemon_init(&d, zctx, sched, &reg, &err)) {
        g4_log_error("shardd", "%s", err.msg);
        return 1;
    }
    g4_log_info("shardd", "%s: layers %d-%d of %u on %s, %d threads, %d slots, weights %s", model, s.begin, s.end,
                s.hp->n_layer, listen, threads, s.n_slots, wmode == G4_WEIGHTS_COPY ? "being copied" : "mapped");
    /* heartbeat counters: batches, and when the weights are ready (g4 bench waits for it) */
    enum { C_BATCHES, C_ERRORS, C_WEIGHTS_READY, C_WEIGHTS_MS, C_N };
    static const char *const cnames[C_N] = {"batches", "errors", "weights_ready", "weights_ready_ms"};
    d.n_counters = C_N;
    for (int i = 0; i < C_N; i++) d.counter_names[i] = cnames[i];
    s.work = &d.work; /* the worker publishes its batch and layer progress there */
    if (shard_worker_start(&s, data, &err)) {
        g4_log_error("shardd", "%s", err.msg);
        return 1;
    }
    /* this thread only heartbeats and takes control messages: a forward pass
     * of any length never silences the shard */
    int warm_logged = 0;
    while (!g4_daemon_stop) {
        zmq_pollitem_t it[1] = {{d.ctl, 0, ZMQ_POLLIN, 0}};
        int n = d.ctl ? zmq_poll(it, 1, G4_HEARTBEAT_MS / 2) : (usleep(G4_HEARTBEAT_MS * 500), 0);
        if (n > 0 && (it[0].revents & ZMQ_POLLIN)) {
            g4_msg_t m;
            if (g4_wire_recv(d.ctl, 0, &m, -1, &err) == G4_OK && !g4_daemon_handle(&d, &m) &&
                m.env->body_case == G4__V1__ENVELOPE__BODY_RELEASE)
                shard_worker_release(&s, m.env->release->slots, m.env->release->n_slots);
            g4_msg_close(&m);
        }
        if (!warm_logged && atomic_load(&s.weights_ready)) {
            warm_logged = 1;
            g4_log_info("shardd", "weights %s in %llu ms", wmode == G4_WEIGHTS_COPY ? "copied to huge pages" : "mapped in",
                        (unsigned long long)atomic_load(&s.weights_ready_ms));
            d.counter_values[C_WEIGHTS_READY] = 1;
            d.counter_values[C_WEIGHTS_MS] = atomic_load(&s.weights_ready_ms);
        }
        d.counter_values[C_BATCHES] = atomic_load(&s.batches_pub);
        d.counter_values[C_ERRORS] = atomic_load(&s.errors_pub);
        g4_daemon_tick(&d);
    }
    shard_worker_stop(&s);
    g4_log_info("shardd", "stopping after %llu batches (%llu errors)", (unsigned long long)s.n_batches,
                (unsigned long long)s.n_errors);
    g4_daemon_close(&d);
    zmq_close(data);
    shard_free(&s);
    zmq_ctx_term(zctx);
    return 0;
}
