/* schedulerd — admits requests, batches them through the shard pipeline,
 * streams tokens back; see schedulerd.h. Life: options -> bind -> poll until
 * SIGTERM -> drain (no new requests, the running ones finish, 60 s at most)
 * -> exit 0. `schedulerd --help` lists the options. */
#include <stddef.h>
#include <stdio.h>

#include "g4_daemon.h"
#include "g4_log.h"
#include "schedulerd.h"

typedef struct schedulerd_cfg {
    g4_daemon_cfg_t d;
    char *results;
    int64_t ubatch, max_queue, heartbeat_timeout_ms, stuck_after_ms, park_timeout_ms, batch_timeout_ms;
    int64_t max_stop, max_stop_bytes;
    int no_migrate, no_prefix_cache;
} schedulerd_cfg_t;

/* the environment variables reach a scheduler that a g4 command starts */
#define S_OPT(t, field) .type = t, .offset = offsetof(schedulerd_cfg_t, field)
#define S_MS 1, 2147483647
static const g4_cfg_opt_t s_opts[] = {
    {"results", S_OPT(G4_CFG_STRING, results), NULL, 1, 0, 0, "the last shard pushes sampled tokens here (PULL)",
     .flags = G4_CFG_REQUIRED, .arg = "EP"},
    {"ubatch", S_OPT(G4_CFG_INT, ubatch), "512", 1, 1 << 20, 0, "rows per micro-batch"},
    {"max-queue", S_OPT(G4_CFG_INT, max_queue), "1024", 1, 1 << 24, 0, "requests held before refusing more"},
    {"heartbeat-timeout", S_OPT(G4_CFG_INT, heartbeat_timeout_ms), "1500", S_MS, 0, "a daemon silent this long is gone", .arg = "MS"},
    {"stuck-after", S_OPT(G4_CFG_INT, stuck_after_ms), "120000", S_MS, 0,
     "report a stage busy without progress this long (and 20x its last batch)", .env = "G4_STUCK_AFTER_MS", .arg = "MS"},
    {"park-timeout", S_OPT(G4_CFG_INT, park_timeout_ms), "30000", S_MS, 0,
     "requests of a lost stage wait this long for a replacement, then fail naming the missing layers",
     .env = "G4_PARK_TIMEOUT_MS", .arg = "MS"},
    {"batch-timeout", S_OPT(G4_CFG_INT, batch_timeout_ms), "30000", S_MS, 0,
     "a batch no stage has worked on this long is lost: its requests are fed again", .env = "G4_BATCH_TIMEOUT_MS",
     .arg = "MS"},
    {"max-stop", S_OPT(G4_CFG_INT, max_stop), "16", 1, 1 << 16, 0, "stop strings per request at most"},
    {"max-stop-bytes", S_OPT(G4_CFG_INT, max_stop_bytes), "4096", 1, 1 << 24, 0, "bytes of a request's stop strings together"},
    {"no-migrate", S_OPT(G4_CFG_BOOL, no_migrate), NULL, 1, 0, 0, "fail the requests of a lost stage at once",
     .env = "G4_NO_MIGRATE"},
    {"no-prefix-cache", S_OPT(G4_CFG_BOOL, no_prefix_cache), NULL, 1, 0, 0,
     "compute every prompt from its start (no prefix cache)", .env = "G4_NO_PREFIX_CACHE"},
};
static const g4_daemon_spec_t s_spec = {
    .prog = "schedulerd",
    .about = "Admits requests, batches them through the shard pipeline, streams tokens back. "
             "Clients and daemons connect to --listen (ROUTER).",
    .opts = s_opts, .n_opts = sizeof s_opts / sizeof s_opts[0], .common_offset = offsetof(schedulerd_cfg_t, d),
};

int main(int argc, char **argv)
{
    schedulerd_cfg_t c;
    g4_daemon_opts_t o;
    const int usage = g4_daemon_configure(&o, &s_spec, &c, argc, argv);
    if (usage >= 0) return usage;
    const sched_params_t p = {.listen = c.d.listen, .results = c.results, .n_ubatch = (int)c.ubatch,
                              .max_queue = (int)c.max_queue, .heartbeat_timeout_ms = (int)c.heartbeat_timeout_ms,
                              .park_timeout_ms = (int)c.park_timeout_ms, .no_migrate = c.no_migrate, .no_prefix_cache = c.no_prefix_cache,
                              .stuck_after_ms = (int)c.stuck_after_ms, .batch_timeout_ms = (int)c.batch_timeout_ms,
                              .max_stop = (int)c.max_stop, .max_stop_bytes = (int)c.max_stop_bytes};
    g4_daemon_signals();
    g4_err_t err;
    void *zctx = zmq_ctx_new();
    sched_t *s = NULL;
    if (g4_wire_security_init(zctx, 1, &err) || !(s = sched_new(zctx, &p, &err))) {
        g4_log_error("schedulerd", "%s", err.msg);
        g4_daemon_opts_fini(&o);
        return 1;
    }
    g4_log_info("schedulerd", "listening on %s, results on %s", p.listen, p.results);
    while (!g4_daemon_stop) sched_poll(s, 20);
    g4_log_info("schedulerd", "draining");
    const uint64_t t0 = g4_wire_now_ms();
    while (!sched_drain(s) && g4_wire_now_ms() - t0 < 60000) sched_poll(s, 20);
    sched_free(&s);
    zmq_ctx_term(zctx);
    g4_daemon_opts_fini(&o);
    return 0;
}
