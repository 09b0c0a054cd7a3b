/* g4_daemon — see g4_daemon.h. */
#include "g4_daemon.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_log.h"

/* ---- options ------------------------------------------------------------------ */

#define S_OPT(field) .type = G4_CFG_STRING, .offset = offsetof(g4_daemon_cfg_t, field)
#define S_FLAG(field) .type = G4_CFG_BOOL, .offset = offsetof(g4_daemon_cfg_t, field)

/* every daemon's; the first S_N_PEER only for those that register */
static const g4_cfg_opt_t s_common[] = {
    {"scheduler", S_OPT(scheduler), NULL, 1, 0, 0, "register with the scheduler's control endpoint EP", .arg = "EP"},
    {"advertise", S_OPT(advertise), NULL, 1, 0, 0, "the endpoint others connect to (default: --listen)", .arg = "EP"},
    {"name", S_OPT(name), NULL, 1, 0, 0, "unique name of this daemon", .arg = "NAME"},
    {"replaces", .type = G4_CFG_INT, .offset = offsetof(g4_daemon_cfg_t, replaces), "0", 0, 1 << 30, 0,
     "take over --name from the live daemon with this pid (g4 swap); both serve until it stops",
     .flags = G4_CFG_ARGV_ONLY, .arg = "PID"},
    {"listen", S_OPT(listen), NULL, 1, 0, 0, "serve here: ipc://PATH or tcp://HOST:PORT", .flags = G4_CFG_REQUIRED, .arg = "EP"},
    {"log-level", S_OPT(log_level), "info", 1, 0, 1, "error, warn, info or debug", .arg = "LEVEL"},
    {"insecure", S_FLAG(insecure), NULL, 1, 0, 0,
     "allow a non-loopback tcp:// endpoint without CURVE keys (anyone who reaches it owns the stack)",
     .env = "G4_INSECURE"},
    {"config", S_OPT(config), NULL, 1, 0, 0, "read `key value` lines from FILE (flags win)", .flags = G4_CFG_ARGV_ONLY,
     .arg = "FILE"},
    {"print-config", S_FLAG(print_config), NULL, 1, 0, 0, "print the configuration and exit", .flags = G4_CFG_ARGV_ONLY},
    {"check-config", S_FLAG(check_config), NULL, 1, 0, 0, "validate the configuration and exit", .flags = G4_CFG_ARGV_ONLY},
    {"help", S_FLAG(help), NULL, 1, 0, 0, "print this and exit", .flags = G4_CFG_ARGV_ONLY},
};
enum { S_N_PEER = 4, S_N_COMMON = sizeof s_common / sizeof s_common[0] };

static void s_help(const g4_daemon_spec_t *spec, const g4_daemon_opts_t *o, FILE *out)
{
    fprintf(out, "usage: %s [options]\n%s\n", spec->prog, spec->about);
    g4_cfg_print_help(o->opt, o->n, out);
}

int g4_daemon_configure(g4_daemon_opts_t *o, const g4_daemon_spec_t *spec, void *cfg, int argc, char **argv)
{
    g4_log_set_level(G4_LOG_INFO); /* daemons say what they do; --log-level changes it */
    g4_log_set_ident(spec->prog);
    o->cfg = cfg, o->n = 0;
    for (size_t i = 0; i < spec->n_opts && o->n < G4_DAEMON_MAX_OPTS; i++) o->opt[o->n++] = spec->opts[i];
    for (size_t i = spec->registers ? 0 : S_N_PEER; i < S_N_COMMON && o->n < G4_DAEMON_MAX_OPTS; i++) {
        g4_cfg_opt_t c = s_common[i];
        c.offset += spec->common_offset; /* the common fields sit inside the daemon's struct */
        if (!strcmp(c.name, "name")) c.def = spec->name;
        o->opt[o->n++] = c;
    }
    const g4_daemon_cfg_t *d = (const g4_daemon_cfg_t *)((const char *)cfg + spec->common_offset);
    g4_err_t err;
    g4_log_level_t level = G4_LOG_INFO;
    int rc = g4_cfg_load(o->opt, o->n, cfg, argc, argv, "config", &err);
    if (!rc && d->help) {
        s_help(spec, o, stdout);
        g4_daemon_opts_fini(o);
        return 0;
    }
    if (!rc) rc = g4_cfg_check(o->opt, o->n, cfg, &err);
    if (!rc && g4_log_parse_level(d->log_level, &level))
        rc = g4_err_set(&err, G4_ERR_RANGE, "--log-level: '%s' is not error, warn, info or debug", d->log_level);
    if (rc) {
        fprintf(stderr, "%s: %s (%s --help lists the options)\n", spec->prog, err.msg, spec->prog);
        g4_daemon_opts_fini(o);
        return 2;
    }
    g4_log_set_level(level);
    g4_wire_set_insecure(d->insecure);
    if (d->print_config) g4_cfg_print(o->opt, o->n, cfg, stdout);
    if (d->print_config || d->check_config) {
        g4_daemon_opts_fini(o);
        return 0;
    }
    return -1;
}

void g4_daemon_opts_fini(g4_daemon_opts_t *o)
{
    if (o->cfg) g4_cfg_fini(o->opt, o->n, o->cfg);
    o->cfg = NULL;
}

/* ---- signals ------------------------------------------------------------------ */

volatile sig_atomic_t g4_daemon_stop = 0;

static void s_on_signal(int sig)
{
    (void)sig;
    g4_daemon_stop = 1;
}

void g4_daemon_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---- registration and heartbeats ---------------------------------------------- */

/* The control socket: a DEALER to the scheduler. A Register waits in its queue
 * until the scheduler is there (g4_wire_socket leaves ZMQ_IMMEDIATE off). */
static int s_ctl_open(g4_daemon_t *d, g4_err_t *err)
{
    d->ctl = g4_wire_socket(d->zctx, ZMQ_DEALER, err);
    if (!d->ctl) return err->code;
    int hwm = 4; /* heartbeats do not pile up while the scheduler is away */
    zmq_setsockopt(d->ctl, ZMQ_SNDHWM, &hwm, sizeof hwm);
    const int rc = g4_wire_connect(d->ctl, d->sched_ep, err);
    if (rc) {
        zmq_close(d->ctl);
        d->ctl = NULL;
    }
    return rc;
}

/* A control socket made anew: what its queue holds (heartbeats for a
 * scheduler that went away) is dropped, the connection is a fresh one, and the
 * scheduler knows it by a new route (the Register that follows tells it). */
static void s_ctl_reopen(g4_daemon_t *d, const char *why)
{
    int linger = 0;
    zmq_setsockopt(d->ctl, ZMQ_LINGER, &linger, sizeof linger);
    zmq_close(d->ctl);
    d->ctl = NULL;
    g4_err_t err;
    if (s_ctl_open(d, &err)) g4_log_warn("daemon", "scheduler: %s", err.msg);
    else if (!d->n_reconnects++ || d->n_reconnects % 20 == 0) /* (a scheduler away for long: a line now and then) */
        g4_log_warn("daemon", "scheduler: %s: control connection to %s made anew (%d)", why, d->sched_ep, d->n_reconnects);
}

static void s_register(g4_daemon_t *d)
{
    const uint64_t now = g4_wire_now_ms();
    d->registered = 0;
    if (!d->unregistered_ms) d->unregistered_ms = now;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    env.body_case = G4__V1__ENVELOPE__BODY_REGISTER;
    env.register_ = &d->reg;
    g4_err_t err;
    int rc = d->ctl ? g4_wire_send(d->ctl, NULL, 0, &env, NULL, NULL, 0, 1, &err) : G4_ERR_AGAIN;
    if (rc == G4_ERR_AGAIN || !d->ctl) { /* the queue is full of heartbeats nobody read */
        s_ctl_reopen(d, "the Register found the queue full");
        rc = d->ctl ? g4_wire_send(d->ctl, NULL, 0, &env, NULL, NULL, 0, 1, &err) : G4_OK;
    }
    if (rc && err.code != G4_ERR_AGAIN) g4_log_warn("daemon", "register: %s", err.msg);
}

int g4_daemon_register(g4_daemon_t *d, void *zctx, const g4_daemon_cfg_t *c, const g4_daemon_info_t *info,
                       g4_err_t *err)
{
    memset(d, 0, sizeof *d);
    d->zctx = zctx;
    gethostname(d->host, sizeof d->host - 1);
    snprintf(d->digest, sizeof d->digest, "%016llx", (unsigned long long)info->digest);
    G4__V1__Register *r = &d->reg;
    g4__v1__register__init(r);
    r->role = info->role;
    r->name = (char *)(info->name ? info->name : c->name);
    r->pid = (int)getpid();
    r->replaces_pid = (int32_t)c->replaces;
    r->endpoint = (char *)(c->advertise ? c->advertise : c->listen); /* where others connect */
    r->model = (char *)info->model;
    r->model_digest = d->digest;
    r->backend = "cpu";
    r->host = d->host;
    r->layer_begin = info->layer_begin, r->layer_end = info->layer_end, r->n_layer = info->n_layer;
    r->n_slots = info->n_slots, r->n_ctx = info->n_ctx, r->n_vocab = info->n_vocab;
    r->cache_budget = info->cache_budget, r->cache_row = info->cache_row, r->cache_fixed = info->cache_fixed;
    r->draft = (char *)(info->draft ? info->draft : ""), r->draft_max = info->draft_max;
    if (info->media_ids) {
        memcpy(d->media_ids, info->media_ids, sizeof d->media_ids);
        r->media_ids = d->media_ids, r->n_media_ids = 6;
    }
    r->n_embd = info->n_embd, r->has_vision = info->has_vision, r->has_audio = info->has_audio;
    d->sched_ep = c->scheduler;
    if (!d->sched_ep) return G4_OK;
    int rc = s_ctl_open(d, err);
    if (rc) return rc;
    r->insecure = g4_wire_insecure_used(); /* (after its own bind and this connect) */
    s_register(d);
    d->last_hb_ms = g4_wire_now_ms();
    return G4_OK;
}

void g4_daemon_tick(g4_daemon_t *d)
{
    if (!d->ctl) return;
    uint64_t now = g4_wire_now_ms();
    if (now - d->last_hb_ms < G4_HEARTBEAT_MS) return;
    d->last_hb_ms = now;
    if (!d->registered) { /* not accepted yet: the Register again, in place of a heartbeat */
        /* no answer at all (not even "retry") for a while: the connection
         * may hold a Register that will never be read (a scheduler killed
         * while it came in) behind a full queue; start it afresh */
        if (now - d->unregistered_ms > G4_REGISTER_ANSWER_MS) {
            s_ctl_reopen(d, "no answer to the Register");
            d->unregistered_ms = now;
        }
        s_register(d);
        return;
    }
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Heartbeat hb = G4__V1__HEARTBEAT__INIT;
    hb.name = d->reg.name;
    G4__V1__Counter cs[16], *cp[16];
    for (int i = 0; i < d->n_counters && i < 16; i++) {
        g4__v1__counter__init(&cs[i]);
        cs[i].name = (char *)d->counter_names[i];
        cs[i].value = d->counter_values[i];
        cp[i] = &cs[i];
    }
    hb.counters = cp;
    hb.n_counters = (size_t)(d->n_counters < 16 ? d->n_counters : 16);
    G4__V1__Work w;
    g4_daemon_work_read(&d->work, now, &w);
    hb.work = &w;
    env.body_case = G4__V1__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    g4_err_t err;
    g4_wire_send(d->ctl, NULL, 0, &env, NULL, NULL, 0, 1, &err);
}

void g4_daemon_work_begin(g4_daemon_work_t *w, uint64_t id, uint32_t rows, uint32_t steps_total)
{
    atomic_store(&w->steps_done, 0);
    atomic_store(&w->steps_total, steps_total);
    atomic_store(&w->rows, rows);
    atomic_store(&w->start_ms, g4_wire_now_ms());
    atomic_store(&w->batch_id, id ? id : 1);
    atomic_fetch_add(&w->progress, 1); /* taking a batch is progress too */
}

void g4_daemon_work_step(g4_daemon_work_t *w)
{
    atomic_fetch_add(&w->steps_done, 1);
    atomic_fetch_add(&w->progress, 1);
}

void g4_daemon_work_end(g4_daemon_work_t *w)
{
    if (!atomic_load(&w->batch_id)) return;
    atomic_store(&w->last_batch_ms, g4_wire_now_ms() - atomic_load(&w->start_ms));
    atomic_fetch_add(&w->batches, 1);
    atomic_fetch_add(&w->progress, 1);
    atomic_store(&w->batch_id, 0);
}

void g4_daemon_work_read(g4_daemon_work_t *w, uint64_t now_ms, G4__V1__Work *out)
{
    g4__v1__work__init(out);
    out->batch_id = atomic_load(&w->batch_id);
    out->progress = atomic_load(&w->progress);
    out->last_batch_ms = atomic_load(&w->last_batch_ms);
    out->batches = atomic_load(&w->batches);
    if (!out->batch_id) return;
    out->rows = atomic_load(&w->rows);
    const uint64_t t0 = atomic_load(&w->start_ms);
    out->elapsed_ms = now_ms > t0 ? now_ms - t0 : 0;
    out->steps_done = atomic_load(&w->steps_done);
    out->steps_total = atomic_load(&w->steps_total);
}

int g4_daemon_handle(g4_daemon_t *d, g4_msg_t *m)
{
    if (!m->env) return 0;
    switch (m->env->body_case) {
    case G4__V1__ENVELOPE__BODY_REGISTER_REPLY:
        if (m->env->register_reply->accepted) {
            if (d->reregister) g4_log_info("daemon", "scheduler: registered");
            d->registered = 1, d->reregister = 0, d->unregistered_ms = 0;
        } else {
            const char *why = m->env->register_reply->reason;
            if (why && !strncmp(why, "unknown", 7)) {
                s_register(d); /* the scheduler restarted and forgot us */
            } else if (why && !strncmp(why, "retry", 5)) {
                if (!d->reregister) g4_log_warn("daemon", "scheduler: %s", why);
                d->reregister = 1; /* answered: the Register goes again at the next heartbeat */
                d->registered = 0, d->unregistered_ms = g4_wire_now_ms();
            } else {
                g4_log_error("daemon", "scheduler refused registration: %s", why ? why : "");
                g4_daemon_stop = 1;
            }
        }
        return 1;
    case G4__V1__ENVELOPE__BODY_SHUTDOWN:
        g4_log_info("daemon", "shutdown requested by the scheduler");
        g4_daemon_stop = 1;
        return 1;
    default:
        return 0;
    }
}

void g4_daemon_close(g4_daemon_t *d)
{
    if (d->ctl) zmq_close(d->ctl);
    d->ctl = NULL;
}

void g4_daemon_poll_ctl(g4_daemon_t *d)
{
    g4_msg_t m;
    g4_err_t err;
    if (d->ctl && g4_wire_recv(d->ctl, 0, &m, -1, &err) == G4_OK) g4_daemon_handle(d, &m);
    g4_msg_close(&m);
}

int g4_daemon_wait(g4_daemon_t *d, int timeout_ms, g4_msg_t *m)
{
    if (!d->ctl) {
        usleep((useconds_t)timeout_ms * 1000);
        return 0;
    }
    zmq_pollitem_t it[1] = {{d->ctl, 0, ZMQ_POLLIN, 0}};
    g4_err_t err;
    if (zmq_poll(it, 1, timeout_ms) <= 0) return 0;
    if (g4_wire_recv(d->ctl, 0, m, -1, &err) == G4_OK && !g4_daemon_handle(d, m)) return 1;
    g4_msg_close(m);
    return 0;
}

/* ---- serving ------------------------------------------------------------------ */

void *g4_daemon_listen(void *zctx, int type, const char *ep, int peers, g4_err_t *err)
{
    if (g4_wire_security_init(zctx, 1, err)) return NULL;
    void *sock = g4_wire_socket(zctx, type, err);
    if (sock && g4_wire_bind_peers(sock, ep, peers, err)) {
        zmq_close(sock);
        return NULL;
    }
    return sock;
}

void g4_daemon_serve_burst(void *sock, int max, void (*fn)(void *user, void *sock, g4_msg_t *m), void *user,
                           uint64_t *n_errors)
{
    for (int k = 0; k < max; k++) {
        g4_msg_t m;
        g4_err_t err;
        int rc = g4_wire_recv(sock, 1, &m, -1, &err);
        if (rc == G4_ERR_TIMEOUT) break;
        if (rc == G4_OK) {
            fn(user, sock, &m);
        } else if (m.route_len) {
            if (n_errors) (*n_errors)++;
            g4_wire_send_error(sock, m.route, m.route_len, m.env && m.env->header ? m.env->header->request_id : 0, rc,
                               "%s", err.msg);
        }
        g4_msg_close(&m);
    }
}

/* ---- the worker thread ------------------------------------------------------------
 * pipe frames: [] = stop, anything else = a note. */

struct g4_worker_thread {
    pthread_t th;
};

static void *s_worker(void *arg)
{
    g4_worker_t *w = arg;
    void *pipe = zmq_socket(w->zctx, ZMQ_PAIR);
    if (!pipe || zmq_connect(pipe, w->pipe_ep)) {
        g4_log_error("daemon", "worker: cannot open its pipe: %s", zmq_strerror(zmq_errno()));
        if (pipe) zmq_close(pipe);
        return NULL;
    }
    for (;;) {
        zmq_pollitem_t it[2] = {{w->sock, 0, ZMQ_POLLIN, 0}, {pipe, 0, ZMQ_POLLIN, 0}};
        const int n = zmq_poll(it, 2, 250);
        if (n > 0 && (it[1].revents & ZMQ_POLLIN)) {
            zmq_msg_t msg;
            zmq_msg_init(&msg);
            const int len = zmq_msg_recv(&msg, pipe, 0);
            if (len == 0) {
                zmq_msg_close(&msg);
                break;
            }
            if (len > 0 && w->on_note) w->on_note(w->user, zmq_msg_data(&msg), (size_t)len);
            zmq_msg_close(&msg);
        }
        if (n > 0 && (it[0].revents & ZMQ_POLLIN)) w->on_ready(w->user, w->sock);
        if (w->on_tick) w->on_tick(w->user);
    }
    zmq_close(pipe);
    return NULL;
}

int g4_worker_start(g4_worker_t *w, void *zctx, void *sock, g4_err_t *err)
{
    static atomic_int s_seq;
    snprintf(w->pipe_ep, sizeof w->pipe_ep, "inproc://g4-worker-%d", atomic_fetch_add(&s_seq, 1));
    w->zctx = zctx, w->sock = sock;
    w->pipe = zmq_socket(zctx, ZMQ_PAIR);
    if (!w->pipe || zmq_bind(w->pipe, w->pipe_ep))
        return g4_err_set(err, G4_ERR_IO, "worker pipe: %s", zmq_strerror(zmq_errno()));
    w->thread = calloc(1, sizeof *w->thread);
    if (!w->thread || pthread_create(&w->thread->th, NULL, s_worker, w)) {
        free(w->thread);
        w->thread = NULL;
        return g4_err_set(err, G4_ERR_NOMEM, "no worker thread");
    }
    return G4_OK;
}

void g4_worker_note(g4_worker_t *w, const void *data, size_t len)
{
    if (len && w->pipe) zmq_send(w->pipe, data, len, 0);
}

void g4_worker_stop(g4_worker_t *w)
{
    if (w->thread) {
        zmq_send(w->pipe, "", 0, 0);
        pthread_join(w->thread->th, NULL);
        free(w->thread);
        w->thread = NULL;
    }
    if (w->pipe) zmq_close(w->pipe);
    w->pipe = NULL;
}
