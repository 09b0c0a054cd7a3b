/* g4 up -m MODEL.gguf [--shards N] [--threads N] [--ctx N] [--slots N] [--kv-f32] [--mmap] [--template T]
 * g4 status [--json] [--scheduler EP]
 * g4 down
 * A persistent local stack: `up` starts the daemons detached and records them
 * in the run directory ($G4_RUN_DIR, default /tmp/g4-UID); `run` and `chat`
 * use it while it is up; `down` stops it (SIGTERM: the scheduler drains). */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "cli_args.h"
#include "cli_stack.h"
#include "g4_alloc.h"
#include "g4_client.h"
#include "g4_log.h"
#include "g4_wire.h"

static const char *s_role(G4__V1__Role r)
{
    switch (r) {
    case G4__V1__ROLE__ROLE_TOKENIZER: return "tokenizer";
    case G4__V1__ROLE__ROLE_SHARD: return "shard";
    case G4__V1__ROLE__ROLE_ENCODER: return "encoder";
    case G4__V1__ROLE__ROLE_SCHEDULER: return "scheduler";
    default: return "unknown";
    }
}

/* "busy: batch 7, 512 rows, layer 3/8, 41.2 s", "idle", "stuck: ...". */
static void s_activity(const G4__V1__DaemonStatus *d, char *buf, size_t size)
{
    const char *a = d->activity && *d->activity ? d->activity : "-";
    const G4__V1__Work *w = d->work;
    if (!w || !w->batch_id) {
        snprintf(buf, size, "%s", a);
    } else if (w->steps_total) {
        snprintf(buf, size, "%s: %u rows, layer %u/%u, %.1fs", a, w->rows, w->steps_done, w->steps_total,
                 w->elapsed_ms / 1000.0);
    } else {
        snprintf(buf, size, "%s: %u rows, %.1fs", a, w->rows, w->elapsed_ms / 1000.0);
    }
}

/* The resident memory of pid when it runs on this host (/proc/PID/status), else 0. */
static uint64_t s_rss_bytes(int pid, const char *host)
{
    char here[64] = "", path[64], line[256];
    gethostname(here, sizeof here - 1);
    if (pid <= 0 || (host && *host && strcmp(host, here))) return 0;
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    return (uint64_t)kb * 1024;
}

/* DIR/NAME.log of a stack on ipc:// sockets in DIR (where cli_stack puts
 * each daemon's log), "" when the scheduler is elsewhere or there is none. */
static void s_log_path(const char *sched_ep, const char *name, char *out, size_t size)
{
    out[0] = 0;
    const char *slash = strrchr(sched_ep, '/');
    if (strncmp(sched_ep, "ipc://", 6) || !slash || slash < sched_ep + 6) return;
    snprintf(out, size, "%.*s/%s.log", (int)(slash - sched_ep - 6), sched_ep + 6, name);
    if (access(out, R_OK)) out[0] = 0;
}

static void s_fmt_mib(uint64_t bytes, char *buf, size_t size)
{
    if (bytes) snprintf(buf, size, "%.1fM", (double)bytes / (1 << 20));
    else snprintf(buf, size, "-");
}

/* "scheduler": the scheduler itself, as its StatusReply describes it */
static cJSON *s_scheduler_json(const char *ep, const G4__V1__StatusReply *r)
{
    char log[600];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "role", "scheduler");
    cJSON_AddStringToObject(o, "name", "schedulerd");
    cJSON_AddStringToObject(o, "endpoint", ep);
    cJSON_AddNumberToObject(o, "pid", r->pid);
    cJSON_AddStringToObject(o, "host", r->host ? r->host : "");
    cJSON_AddStringToObject(o, "state", r->ready ? "ready" : "not ready");
    cJSON_AddNumberToObject(o, "uptime_s", r->uptime_s);
    cJSON_AddNumberToObject(o, "active_requests", r->active_requests);
    cJSON_AddNumberToObject(o, "queued_requests", r->queued_requests);
    cJSON_AddNumberToObject(o, "n_slots", r->n_slots);
    cJSON_AddNumberToObject(o, "slots_used", r->slots_used);
    cJSON_AddNumberToObject(o, "n_ctx", r->n_ctx);
    cJSON_AddNumberToObject(o, "batches_timed_out", (double)r->batches_timed_out);
    cJSON_AddNumberToObject(o, "refused", (double)r->refused);
    cJSON_AddNumberToObject(o, "rss_bytes", (double)s_rss_bytes(r->pid, r->host));
    s_log_path(ep, "schedulerd", log, sizeof log);
    cJSON_AddStringToObject(o, "log", log);
    return o;
}

static cJSON *s_daemon_json(const char *ep, const G4__V1__DaemonStatus *d)
{
    char log[600];
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "role", s_role(d->role));
    cJSON_AddStringToObject(e, "name", d->name);
    cJSON_AddNumberToObject(e, "pid", d->pid);
    cJSON_AddStringToObject(e, "endpoint", d->endpoint);
    if (d->role == G4__V1__ROLE__ROLE_SHARD) {
        cJSON *l = cJSON_AddArrayToObject(e, "layers");
        cJSON_AddItemToArray(l, cJSON_CreateNumber(d->layer_begin));
        cJSON_AddItemToArray(l, cJSON_CreateNumber(d->layer_end));
    }
    cJSON_AddStringToObject(e, "state", d->state);
    cJSON_AddStringToObject(e, "activity", d->activity ? d->activity : "");
    cJSON_AddNumberToObject(e, "uptime_s", d->uptime_s);
    cJSON_AddNumberToObject(e, "last_seen_ms", d->last_seen_ms);
    cJSON_AddNumberToObject(e, "restarts", d->restarts);
    cJSON_AddNumberToObject(e, "in_flight", d->in_flight);
    if (d->work) {
        const G4__V1__Work *w = d->work;
        cJSON *o = cJSON_AddObjectToObject(e, "work");
        cJSON_AddNumberToObject(o, "batch_id", (double)w->batch_id);
        cJSON_AddNumberToObject(o, "rows", w->rows);
        cJSON_AddNumberToObject(o, "elapsed_ms", (double)w->elapsed_ms);
        cJSON_AddNumberToObject(o, "steps_done", w->steps_done);
        cJSON_AddNumberToObject(o, "steps_total", w->steps_total);
        cJSON_AddNumberToObject(o, "last_batch_ms", (double)w->last_batch_ms);
        cJSON_AddNumberToObject(o, "batches", (double)w->batches);
    }
    if (d->n_counters) {
        cJSON *c = cJSON_AddObjectToObject(e, "counters");
        for (size_t k = 0; k < d->n_counters; k++)
            if (d->counters[k]->name) cJSON_AddNumberToObject(c, d->counters[k]->name, (double)d->counters[k]->value);
    }
    cJSON_AddStringToObject(e, "backend", d->backend);
    cJSON_AddStringToObject(e, "host", d->host);
    cJSON_AddNumberToObject(e, "rss_bytes", (double)s_rss_bytes(d->pid, d->host));
    s_log_path(ep, d->name, log, sizeof log);
    cJSON_AddStringToObject(e, "log", log);
    return e;
}

static void s_status_json(const char *ep, const G4__V1__StatusReply *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "up", 1);
    cJSON_AddBoolToObject(j, "ready", r->ready);
    cJSON_AddItemToObject(j, "scheduler", s_scheduler_json(ep, r));
    cJSON_AddStringToObject(j, "model", r->model ? r->model : "");
    cJSON_AddNumberToObject(j, "n_layer", r->n_layer);
    cJSON_AddNumberToObject(j, "active_requests", r->active_requests);
    cJSON_AddNumberToObject(j, "queued_requests", r->queued_requests);
    cJSON_AddNumberToObject(j, "requests_done", (double)r->requests_done);
    cJSON_AddNumberToObject(j, "requests_failed", (double)r->requests_failed);
    cJSON_AddNumberToObject(j, "requests_migrated", (double)r->requests_migrated);
    cJSON_AddBoolToObject(j, "insecure", r->insecure);
    if (r->prefix_cache) {
        const G4__V1__PrefixCacheStatus *pc = r->prefix_cache;
        cJSON *p = cJSON_AddObjectToObject(j, "prefix_cache");
        cJSON_AddBoolToObject(p, "enabled", pc->enabled);
        cJSON_AddNumberToObject(p, "hits", (double)pc->hits);
        cJSON_AddNumberToObject(p, "misses", (double)pc->misses);
        cJSON_AddNumberToObject(p, "tokens_reused", (double)pc->tokens_reused);
        cJSON_AddNumberToObject(p, "tokens_computed", (double)pc->tokens_computed);
        cJSON_AddNumberToObject(p, "chunks", (double)pc->chunks);
        cJSON_AddNumberToObject(p, "bytes", (double)pc->bytes);
        cJSON_AddNumberToObject(p, "budget", (double)pc->budget);
        cJSON_AddNumberToObject(p, "evictions", (double)pc->evictions);
    }
    cJSON *a = cJSON_AddArrayToObject(j, "daemons"); /* the scheduler's peers (the scheduler is above) */
    for (size_t i = 0; i < r->n_daemons; i++) cJSON_AddItemToArray(a, s_daemon_json(ep, r->daemons[i]));
    char *s = cJSON_PrintUnformatted(j);
    puts(s);
    cJSON_free(s);
    cJSON_Delete(j);
}

static void s_status_text(const char *ep, const G4__V1__StatusReply *r)
{
    char mem[32], log[600];
    printf("model %s (%d layers): %s; %d running, %d queued, %llu done, %llu failed, %llu migrated\n", r->model,
           r->n_layer, r->ready ? "ready" : "not ready", r->active_requests, r->queued_requests,
           (unsigned long long)r->requests_done, (unsigned long long)r->requests_failed,
           (unsigned long long)r->requests_migrated);
    if (r->prefix_cache && r->prefix_cache->enabled) {
        const G4__V1__PrefixCacheStatus *pc = r->prefix_cache;
        printf("prefix cache: %llu hits, %llu misses, %llu prompt tokens reused, %llu computed; %llu chunks, %.1f of %.1f MiB\n",
               (unsigned long long)pc->hits, (unsigned long long)pc->misses, (unsigned long long)pc->tokens_reused,
               (unsigned long long)pc->tokens_computed, (unsigned long long)pc->chunks, pc->bytes / 1048576.0,
               pc->budget / 1048576.0);
    }
    if (r->insecure)
        printf("WARNING: INSECURE: a daemon runs on a non-loopback tcp:// endpoint without CURVE (--insecure): "
               "anyone who reaches it can join the pipeline and read prompts (g4 keygen, docs/security.md)\n");
    printf("%-10s %-16s %8s %-9s %-9s %9s %8s %8s  %-34s %s\n", "ROLE", "NAME", "PID", "LAYERS", "STATE", "UPTIME",
           "RESTARTS", "MEM", "ACTIVITY", "ENDPOINT");
    /* the scheduler first: its activity is the requests and slots it holds */
    char act[96];
    snprintf(act, sizeof act, "%d running, %d queued, slots %u/%u", r->active_requests, r->queued_requests,
             r->slots_used, r->n_slots);
    s_fmt_mib(s_rss_bytes(r->pid, r->host), mem, sizeof mem);
    printf("%-10s %-16s %8d %-9s %-9s %8.1fs %8s %8s  %-34s %s\n", "scheduler", "schedulerd", r->pid, "-",
           r->ready ? "ready" : "waiting", r->uptime_s, "-", mem, act, ep);
    for (size_t i = 0; i < r->n_daemons; i++) {
        G4__V1__DaemonStatus *d = r->daemons[i];
        char layers[32] = "-";
        if (d->role == G4__V1__ROLE__ROLE_SHARD) snprintf(layers, sizeof layers, "%d-%d", d->layer_begin, d->layer_end);
        s_activity(d, act, sizeof act);
        s_fmt_mib(s_rss_bytes(d->pid, d->host), mem, sizeof mem);
        printf("%-10s %-16s %8d %-9s %-9s %8.1fs %8u %8s  %-34s %s\n", s_role(d->role), d->name, d->pid, layers, d->state,
               d->uptime_s, d->restarts, mem, act, d->endpoint);
    }
    s_log_path(ep, "schedulerd", log, sizeof log);
    if (log[0]) printf("logs: %.*s/NAME.log\n", (int)(strlen(log) - strlen("/schedulerd.log")), log);
}

/* Nothing answers: {"up": false, "daemons": [], "error": ...} or the line; exit 1. */
static int s_status_down(int json, const char *ep, const char *msg)
{
    if (!json) {
        printf("%s\n", msg);
        return 1;
    }
    cJSON *j = cJSON_CreateObject();
    cJSON_AddBoolToObject(j, "up", 0);
    if (ep) cJSON_AddStringToObject(cJSON_AddObjectToObject(j, "scheduler"), "endpoint", ep);
    cJSON_AddArrayToObject(j, "daemons");
    cli_json_add_error(j, msg, 1);
    char *s = cJSON_PrintUnformatted(j);
    puts(s);
    cJSON_free(s);
    cJSON_Delete(j);
    return 1;
}

int cli_status(int argc, char **argv)
{
    int json = 0;
    const char *ep_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--scheduler") && i + 1 < argc) ep_arg = argv[++i];
        else return cli_bad_option("status", argv[i]);
    }
    char dir[256], ep[300];
    if (ep_arg) snprintf(ep, sizeof ep, "%s", ep_arg);
    else if (cli_stack_find(dir, sizeof dir, ep, sizeof ep) && cli_stack_find_embedded(ep, sizeof ep)) {
        char msg[400];
        snprintf(msg, sizeof msg, "no stack is up (run directory %s)", cli_run_dir(dir, sizeof dir));
        return s_status_down(json, NULL, msg);
    }
    G4__V1__Envelope *owner;
    G4__V1__StatusReply *r = g4_client_status(ep, 2000, &owner);
    if (!r) {
        if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
        char msg[400];
        snprintf(msg, sizeof msg, "the scheduler at %s does not answer", ep);
        return s_status_down(json, ep, msg);
    }
    if (json) s_status_json(ep, r);
    else s_status_text(ep, r);
    g4__v1__envelope__free_unpacked(owner, NULL);
    return 0;
}

int cli_up(int argc, char **argv)
{
    cli_stack_opts_t o = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int took;
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && v) o.model = v, i++;
        else if ((took = cli_stack_opt(&o, a, v))) i += took - 1;
        else return cli_bad_option("up", a);
    }
    if (!o.model) {
        cli_error("usage: g4 up -m MODEL.gguf [--shards N] ...");
        return 2;
    }
    char dir[256], ep[300];
    if (cli_stack_find(dir, sizeof dir, ep, sizeof ep) == 0) {
        G4__V1__Envelope *owner;
        G4__V1__StatusReply *r = g4_client_status(ep, 1000, &owner);
        if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
        if (r) {
            cli_error("a stack is already up in %s (g4 down first)", dir);
            return 1;
        }
    }
    char abs_model[4096];
    if (!realpath(o.model, abs_model)) {
        cli_error("%s: %s", o.model, strerror(errno));
        return 1;
    }
    o.model = abs_model;
    if (o.n_slots <= 0) o.n_slots = 32;
    o.detach = 1;
    o.run_dir = cli_run_dir(dir, sizeof dir);
    /* a supervisor process of its own session starts the daemons (its
     * children: it restarts one that dies) and tells this one when the stack
     * is ready; g4 down stops it and it stops the daemons */
    int ready_pipe[2];
    if (pipe(ready_pipe)) {
        cli_error("pipe: %s", strerror(errno));
        return 1;
    }
    fflush(stdout), fflush(stderr);
    const pid_t sup = fork();
    if (sup < 0) {
        cli_error("fork: %s", strerror(errno));
        return 1;
    }
    if (sup == 0) {
        close(ready_pipe[0]);
        setsid();
        cli_stack_t st;
        char ok = 1;
        if (cli_stack_start(&st, &o) == 0 && cli_stack_wait_ready(&st, 120000) == 0) {
            printf("stack up: %d daemons, scheduler %s (g4 status, g4 down)\n", st.n, st.sched_ep);
            ok = 0;
        } else {
            cli_stack_stop(&st);
        }
        fflush(stdout), fflush(stderr);
        char log[300];
        snprintf(log, sizeof log, "%s/supervisor.log", dir);
        const int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600), devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, 0);
        if (fd >= 0) dup2(fd, 1), dup2(fd, 2);
        g4_log_set_ident("g4-supervise");
        g4_log_set_level(G4_LOG_INFO); /* its log says what it does, as the daemons' do */
        if (write(ready_pipe[1], &ok, 1) != 1 || ok) _exit(1);
        close(ready_pipe[1]);
        _exit(cli_stack_supervise_loop(&st, &o));
    }
    close(ready_pipe[1]);
    char ok = 1;
    if (read(ready_pipe[0], &ok, 1) != 1) ok = 1;
    close(ready_pipe[0]);
    if (ok) {
        waitpid(sup, NULL, 0);
        char path[300];
        snprintf(path, sizeof path, "%s/stack.json", dir);
        unlink(path);
        return 1;
    }
    return 0;
}

int cli_down(int argc, char **argv)
{
    (void)argv;
    if (argc > 1) {
        cli_error("usage: g4 down");
        return 2;
    }
    char dir[256], path[300];
    cli_run_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/stack.json", dir);
    size_t len;
    char *buf = cli_read_file(path, &len);
    if (!buf) {
        printf("no stack is up\n");
        return 0;
    }
    cJSON *j = cJSON_Parse(buf);
    g4_free(buf);
    if (cli_run_dir_check(dir)) {
        cJSON_Delete(j);
        return 1;
    }
    /* only processes the file recorded, still running the program it
     * recorded, started when it recorded (not a reused or a planted pid) */
    const cJSON *sup_start = j ? cJSON_GetObjectItemCaseSensitive(j, "supervisor_start") : NULL;
    /* the supervisor stops the daemons it supervises (shards and tokenizer,
     * then the scheduler, which drains) and exits */
    const cJSON *sup = j ? cJSON_GetObjectItemCaseSensitive(j, "supervisor") : NULL;
    if (cJSON_IsNumber(sup) && cJSON_IsNumber(sup_start) &&
        cli_proc_is_recorded(sup->valueint, "g4", (unsigned long long)sup_start->valuedouble) &&
        kill((pid_t)sup->valueint, SIGTERM) == 0) {
        const uint64_t t0 = g4_wire_now_ms();
        while (kill((pid_t)sup->valueint, 0) == 0 && g4_wire_now_ms() - t0 < 70000) usleep(20000);
    }
    const cJSON *d = j ? cJSON_GetObjectItemCaseSensitive(j, "daemons") : NULL;
    pid_t pids[CLI_STACK_MAX];
    int n = 0, n_listed = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, d)
    {
        /* only pids that still are g4 daemons (a pid may have been reused since) */
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "pid"), *t = cJSON_GetObjectItemCaseSensitive(e, "start");
        n_listed += cJSON_IsNumber(p);
        if (cJSON_IsNumber(p) && cJSON_IsNumber(t) && n < CLI_STACK_MAX &&
            cli_proc_is_recorded(p->valueint, NULL, (unsigned long long)t->valuedouble))
            pids[n++] = (pid_t)p->valuedouble;
    }
    cJSON_Delete(j);
    /* shards and tokenizer first, the scheduler (first in the file) last so it drains */
    for (int i = n - 1; i >= 1; i--) kill(pids[i], SIGTERM);
    if (n) kill(pids[0], SIGTERM);
    const uint64_t t0 = g4_wire_now_ms();
    for (int i = 0; i < n; i++)
        while (kill(pids[i], 0) == 0 && g4_wire_now_ms() - t0 < 10000) usleep(20000);
    for (int i = 0; i < n; i++)
        if (kill(pids[i], 0) == 0) kill(pids[i], SIGKILL);
    /* daemons the stack file does not list (swapped in, restarted by hand)
     * that still serve on this run directory's sockets */
    const int strays = cli_stack_stop_strays(dir);
    unlink(path);
    /* (the supervisor, when there is one, has stopped the listed daemons already) */
    printf("stack down (%d daemons stopped)\n", n_listed + strays);
    return 0;
}

/* g4 swap NAME [--bin PATH] [--listen EP]
 * Replaces a running daemon with a new process of the same command line (or
 * another build with --bin), under the same name: starts it with --replaces
 * OLD_PID (the scheduler lets both hold the name), waits until the scheduler
 * routes new work to it, waits until the old one has nothing in flight, then
 * stops the old one. Running requests are re-prefilled on the new pipeline,
 * so none fails. */

/* The daemon called name with pid (0: the one in state "ready"). */
static G4__V1__DaemonStatus *s_find(G4__V1__StatusReply *r, const char *name, int pid)
{
    for (size_t i = 0; r && i < r->n_daemons; i++)
        if (!strcmp(r->daemons[i]->name, name) && (pid ? r->daemons[i]->pid == pid : !strcmp(r->daemons[i]->state, "ready")))
            return r->daemons[i];
    return NULL;
}

/* The replacement's endpoint: --listen, else the old ipc:// path with a new
 * generation suffix (".N" of an earlier swap replaced). 0, or 2 after saying why. */
static int s_swap_endpoint(const char *name, const char *old_ep, const char *listen, char *out, size_t size)
{
    if (listen) {
        snprintf(out, size, "%s", listen);
        return 0;
    }
    if (strncmp(old_ep, "ipc://", 6)) {
        cli_error("%s listens on %s: give the replacement's endpoint with --listen", name, old_ep);
        return 2;
    }
    size_t n = strlen(old_ep);
    const char *dot = strrchr(old_ep, '.');
    if (dot && dot[1] && strspn(dot + 1, "0123456789") == strlen(dot + 1) && dot > strrchr(old_ep, '/')) n = (size_t)(dot - old_ep);
    snprintf(out, size, "%.*s.%u", (int)(n < 240 ? n : 240), old_ep, (unsigned)(g4_wire_now_ms() % 100000));
    return 0;
}

/* The old daemon's command line (args[0] its binary; strings in *owned) with
 * the new endpoint and --replaces old_pid; NULL after saying why. */
static char **s_swap_args(int old_pid, const char *new_ep, char *replaces, char **owned, char **args, int max)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", old_pid);
    size_t len;
    if (!(*owned = cli_read_file(path, &len))) {
        cli_error("cannot read %s: the daemon runs on another host? (%s)", path, strerror(errno));
        return NULL;
    }
    int n = 0, has_replaces = 0;
    for (size_t off = 0; off < len && n < max - 3; off += strlen(*owned + off) + 1) args[n++] = *owned + off;
    for (int i = 1; i + 1 < n; i++) {
        if (!strcmp(args[i], "--listen")) args[i + 1] = (char *)new_ep;
        if (!strcmp(args[i], "--replaces")) args[i + 1] = replaces, has_replaces = 1; /* (a swapped-in one) */
    }
    if (!has_replaces) args[n++] = "--replaces", args[n++] = replaces;
    args[n] = NULL;
    return args;
}

/* The environment of old_pid (OMP_WAIT_POLICY of shards sharing cores, CURVE
 * keys, a topology file...): the replacement runs as the daemon it replaces. */
static void s_swap_environ(int old_pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", old_pid);
    size_t env_len;
    char *envs = cli_read_file(path, &env_len);
    for (size_t off = 0; envs && off < env_len; off += strlen(envs + off) + 1) {
        char *eq = strchr(envs + off, '=');
        if (!eq) continue;
        *eq = 0;
        setenv(envs + off, eq + 1, 1);
        *eq = '=';
    }
    g4_free(envs);
}

/* Until the scheduler routes new work to new_pid and old_pid has nothing in
 * flight: 0, or 1 after saying why. */
static int s_swap_wait(const char *ep, const char *dir, const char *name, int old_pid, int new_pid)
{
    const uint64_t t0 = g4_wire_now_ms();
    int phase = 0;
    while (g4_wire_now_ms() - t0 < 60000) {
        G4__V1__Envelope *owner;
        G4__V1__StatusReply *r = g4_client_status(ep, 1000, &owner);
        G4__V1__DaemonStatus *nd = s_find(r, name, new_pid), *od = s_find(r, name, old_pid);
        /* (an old encoder stays "ready": new calls go to the newest one anyway) */
        if (phase == 0 && nd && !strcmp(nd->state, "ready") &&
            (!od || strcmp(od->state, "ready") || od->role == G4__V1__ROLE__ROLE_ENCODER))
            phase = 1;
        const int done = phase == 1 && (!od || od->in_flight == 0);
        if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
        if (done) return 0;
        if (kill(new_pid, 0) != 0) {
            cli_error("the replacement exited; see %s/%s.log", dir, name);
            return 1;
        }
        usleep(20000);
    }
    cli_error("the replacement of %s did not take over within 60 s (still running as pid %d)", name, new_pid);
    return 1;
}

/* RUN_DIR/stack.json lists the new process where it listed the old one. */
static void s_swap_record(const char *dir, int old_pid, int new_pid)
{
    char sp[300];
    snprintf(sp, sizeof sp, "%s/stack.json", dir);
    char *buf = cli_read_file(sp, NULL);
    cJSON *j = buf ? cJSON_Parse(buf) : NULL;
    g4_free(buf);
    cJSON *d = j ? cJSON_GetObjectItemCaseSensitive(j, "daemons") : NULL, *e;
    cJSON_ArrayForEach(e, d)
    {
        cJSON *p = cJSON_GetObjectItemCaseSensitive(e, "pid");
        if (cJSON_IsNumber(p) && (int)p->valuedouble == old_pid) {
            cJSON_SetNumberValue(p, new_pid);
            cJSON_ReplaceItemInObject(e, "start", cJSON_CreateNumber((double)cli_proc_start(new_pid)));
        }
    }
    char *s = j ? cJSON_Print(j) : NULL;
    char tmp[310];
    snprintf(tmp, sizeof tmp, "%s.tmp", sp);
    FILE *f = s ? fopen(tmp, "w") : NULL;
    if (f) fputs(s, f), fclose(f), rename(tmp, sp);
    cJSON_free(s);
    cJSON_Delete(j);
}

int cli_swap(int argc, char **argv)
{
    const char *name = NULL, *bin = NULL, *listen = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--bin") && v) bin = v, i++;
        else if (!strcmp(a, "--listen") && v) listen = v, i++;
        else if (a[0] != '-' && !name) name = a;
        else return cli_bad_option("swap", a);
    }
    if (!name) {
        cli_error("usage: g4 swap NAME [--bin PATH] [--listen EP]");
        return 2;
    }
    char dir[256], ep[300];
    if (cli_stack_find(dir, sizeof dir, ep, sizeof ep)) {
        cli_error("no stack is up (g4 up first)");
        return 1;
    }
    G4__V1__Envelope *owner;
    G4__V1__StatusReply *r = g4_client_status(ep, 2000, &owner);
    G4__V1__DaemonStatus *old = s_find(r, name, 0);
    if (!old) {
        cli_error("no ready daemon named '%s' (see g4 status)", name);
        if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
        return 1;
    }
    const pid_t old_pid = old->pid;
    char old_ep[256], new_ep[300], replaces[16];
    snprintf(old_ep, sizeof old_ep, "%s", old->endpoint);
    g4__v1__envelope__free_unpacked(owner, NULL);
    /* the pid the scheduler reports is re-run below: it must be a g4 daemon
     * binary (not whatever registered under that pid) */
    if (!cli_proc_is_g4(old_pid, NULL)) {
        cli_error("pid %d of '%s' is not a g4 daemon here: not swapping it", (int)old_pid, name);
        return 1;
    }
    int rc = s_swap_endpoint(name, old_ep, listen, new_ep, sizeof new_ep);
    if (rc) return rc;
    snprintf(replaces, sizeof replaces, "%d", (int)old_pid);
    char *cmd = NULL, *args[64];
    if (!s_swap_args(old_pid, new_ep, replaces, &cmd, args, 64)) return 1;
    s_swap_environ(old_pid);
    cli_stack_t st;
    memset(&st, 0, sizeof st);
    snprintf(st.dir, sizeof st.dir, "%.199s", dir);
    const char *binary = bin ? bin : args[0];
    rc = cli_stack_spawn(&st, binary, name, args + 1, 1);
    g4_free(cmd);
    if (rc) {
        cli_error("could not start %s", binary);
        return 1;
    }
    const pid_t new_pid = st.pid[0];
    cli_stack_forget(&st); /* it runs on its own */
    const uint64_t t0 = g4_wire_now_ms();
    if (s_swap_wait(ep, dir, name, (int)old_pid, (int)new_pid)) return 1;
    kill(old_pid, SIGTERM);
    const uint64_t t1 = g4_wire_now_ms();
    while (kill(old_pid, 0) == 0 && g4_wire_now_ms() - t1 < 10000) usleep(20000);
    if (kill(old_pid, 0) == 0) kill(old_pid, SIGKILL);
    const size_t dl = strlen(dir); /* its socket file, which ZeroMQ leaves behind */
    if (!strncmp(old_ep, "ipc://", 6) && !strncmp(old_ep + 6, dir, dl) && old_ep[6 + dl] == '/') unlink(old_ep + 6);
    s_swap_record(dir, (int)old_pid, (int)new_pid);
    printf("swapped %s: pid %d for pid %d in %.1f s\n", name, (int)old_pid, (int)new_pid,
           (double)(g4_wire_now_ms() - t0) / 1000.0);
    return 0;
}
