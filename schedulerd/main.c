/* schedulerd --listen EP --results EP [--ubatch N] [--max-queue N] [--heartbeat-timeout MS]
 * Admits requests, batches them through the shard pipeline, streams tokens
 * back; see sched.h. SIGTERM drains: no new requests, the running ones finish. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "g4_daemon.h"
#include "g4_log.h"
#include "sched.h"

static const char s_usage[] =
    "usage: schedulerd --listen EP --results EP [--ubatch N] [--max-queue N] [--heartbeat-timeout MS]\n"
    "                  [--stuck-after MS] [--park-timeout MS] [--no-migrate]\n"
    "  --heartbeat-timeout MS  a daemon silent this long is gone (default 1500)\n"
    "  --stuck-after MS  report a stage busy without progress this long (and 20x its last batch)\n"
    "                   (default $G4_STUCK_AFTER_MS or 120000)\n"
    "  --park-timeout MS  requests of a lost stage wait this long for a replacement, then fail\n"
    "                   naming the missing layers (default $G4_PARK_TIMEOUT_MS or 30000)\n"
    "  --no-migrate     fail the requests of a lost stage at once ($G4_NO_MIGRATE=1)\n"
    "  --listen EP    clients and daemons connect here (ROUTER)\n"
    "  --results EP   the last shard pushes sampled tokens here\n";

int main(int argc, char **argv)
{
    g4_log_set_level(G4_LOG_INFO); /* daemons say what they do; --log-level changes it */
    sched_params_t p = {0};
    /* (environment variables reach a scheduler a g4 command starts) */
    const char *stuck = getenv("G4_STUCK_AFTER_MS"), *park = getenv("G4_PARK_TIMEOUT_MS"), *nm = getenv("G4_NO_MIGRATE");
    if (stuck) p.stuck_after_ms = atoi(stuck);
    if (park) p.park_timeout_ms = atoi(park);
    if (nm && *nm && strcmp(nm, "0")) p.no_migrate = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--listen") && v) p.listen = v, i++;
        else if (!strcmp(a, "--results") && v) p.results = v, i++;
        else if (!strcmp(a, "--ubatch") && v) p.n_ubatch = atoi(v), i++;
        else if (!strcmp(a, "--max-queue") && v) p.max_queue = atoi(v), i++;
        else if (!strcmp(a, "--heartbeat-timeout") && v) p.heartbeat_timeout_ms = atoi(v), i++;
        else if (!strcmp(a, "--stuck-after") && v) p.stuck_after_ms = atoi(v), i++;
        else if (!strcmp(a, "--park-timeout") && v) p.park_timeout_ms = atoi(v), i++;
        else if (!strcmp(a, "--no-migrate")) p.no_migrate = 1;
        else if (g4_daemon_log_opt(a, v)) i++;
        else {
            fputs(s_usage, strcmp(a, "--help") ? stderr : stdout);
            return strcmp(a, "--help") ? 2 : 0;
        }
    }
    if (!p.listen || !p.results) {
        fputs(s_usage, stderr);
        return 2;
    }
    g4_log_set_ident("schedulerd");
    g4_daemon_signals();
    g4_err_t err;
    void *zctx = zmq_ctx_new();
    if (g4_wire_security_init(zctx, 1, &err)) {
        g4_log_error("schedulerd", "%s", err.msg);
        return 1;
    }
    sched_t *s = sched_new(zctx, &p, &err);
    if (!s) {
        g4_log_error("schedulerd", "%s", err.msg);
        return 1;
    }
    g4_log_info("schedulerd", "listening on %s, results on %s", p.listen, p.results);
    while (!g4_daemon_stop) sched_poll(s, 20);
    g4_log_info("schedulerd", "draining");
    const uint64_t t0 = g4_wire_now_ms();
    while (!sched_drain(s) && g4_wire_now_ms() - t0 < 60000) sched_poll(s, 20);
    sched_free(&s);
    zmq_ctx_term(zctx);
    return 0;
}
