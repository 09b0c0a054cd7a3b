/* g4_daemon — what every daemon does besides its service: read its options
 * (its own table plus the common one: --listen, --scheduler, --log-level,
 * --config, --help ...), stop on SIGTERM / SIGINT, register with schedulerd
 * and heartbeat every 500 ms over a DEALER on the scheduler's control
 * endpoint (re-registering when the scheduler does not know it, e.g. after
 * the scheduler restarted).
 *
 * Map: options (g4_daemon_cfg_t, g4_daemon_configure) — signals — work
 * published by the worker — registration and heartbeats (g4_daemon_t) —
 * the worker thread (g4_worker_t) — serving helpers.
 *
 * Liveness is kept apart from work: the thread that heartbeats never
 * computes. A daemon whose requests can take long (a shard's forward pass)
 * computes on a worker thread and publishes what it is doing in a
 * g4_daemon_work_t, which every heartbeat carries (batch, rows, layers done,
 * time in the batch, a progress count), so the scheduler can tell a long
 * batch from a dead or stuck daemon. */
#ifndef G4_DAEMON_H
#define G4_DAEMON_H

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>

#include "g4_cfg.h"
#include "g4_wire.h"

#define G4_HEARTBEAT_MS 500
/* a Register unanswered this long: the control connection is made anew */
#define G4_REGISTER_ANSWER_MS 1500

/* ---- options ------------------------------------------------------------------
 * A daemon's config struct holds a g4_daemon_cfg_t; its own table and the
 * common table (g4_daemon.c) are joined into one for parsing, --help and
 * --print-config. */

typedef struct g4_daemon_cfg {
    char *listen;            /* --listen EP: where it serves (required) */
    char *scheduler;         /* --scheduler EP: registers there (NULL: standalone) */
    char *advertise;         /* --advertise EP: the endpoint others connect to (NULL: listen) */
    char *name;              /* --name: unique per daemon */
    int64_t replaces;        /* --replaces PID: g4 swap's replacement of the live holder of --name (0: none) */
    char *log_level;         /* --log-level error|warn|info|debug */
    char *config;            /* --config FILE: `key value` lines, before the flags */
    int insecure;            /* --insecure: non-loopback tcp:// without CURVE keys (warned loudly) */
    int help, print_config, check_config;
} g4_daemon_cfg_t;

typedef struct g4_daemon_spec {
    const char *prog;          /* "shardd": log ident, --help */
    const char *about;         /* one line for --help */
    const g4_cfg_opt_t *opts;  /* the daemon's own options (fields of its config struct) */
    size_t n_opts;
    size_t common_offset;      /* offsetof(config struct, its g4_daemon_cfg_t) */
    int registers;             /* takes --scheduler, --advertise, --name, --replaces (all but schedulerd) */
    const char *name;          /* default of --name (NULL: none, the daemon makes one up) */
} g4_daemon_spec_t;

#define G4_DAEMON_MAX_OPTS 48

/* The joined table, kept for g4_daemon_opts_fini. */
typedef struct g4_daemon_opts {
    g4_cfg_opt_t opt[G4_DAEMON_MAX_OPTS];
    size_t n;
    void *cfg;
} g4_daemon_opts_t;

/* Reads the configuration into *cfg: defaults < environment < --config FILE <
 * flags (g4_cfg_load), checks required options, applies --log-level and the
 * log ident. Answers --help, --print-config and --check-config. Returns -1
 * when the daemon should start (then g4_daemon_opts_fini(o) frees the
 * strings at the end), else the exit code (0 after --help and the like, 2
 * for a usage or configuration error, said on stderr), all freed. */
int g4_daemon_configure(g4_daemon_opts_t *o, const g4_daemon_spec_t *spec, void *cfg, int argc, char **argv);
void g4_daemon_opts_fini(g4_daemon_opts_t *o);

extern volatile sig_atomic_t g4_daemon_stop; /* set by SIGTERM / SIGINT */
void g4_daemon_signals(void);

/* What the worker computes; written by the worker, read by the heartbeat
 * (atomics, no lock). All zero: idle, nothing done yet. */
typedef struct g4_daemon_work {
    _Atomic uint64_t batch_id;      /* 0: idle */
    _Atomic uint32_t rows;
    _Atomic uint64_t start_ms;      /* g4_wire_now_ms() when the batch began */
    _Atomic uint32_t steps_done, steps_total;
    _Atomic uint64_t progress;      /* +1 per step, never reset */
    _Atomic uint64_t last_batch_ms, batches;
} g4_daemon_work_t;

/* The worker starts batch `id` (non-zero) of `rows` rows in `steps_total` steps. */
void g4_daemon_work_begin(g4_daemon_work_t *w, uint64_t id, uint32_t rows, uint32_t steps_total);
/* One step done (callable from the computing thread, e.g. after each layer). */
void g4_daemon_work_step(g4_daemon_work_t *w);
/* The batch is over (done or failed): idle again. */
void g4_daemon_work_end(g4_daemon_work_t *w);
/* Fills hb-ready fields from w as of now_ms. */
void g4_daemon_work_read(g4_daemon_work_t *w, uint64_t now_ms, G4__V1__Work *out);

/* What a daemon says about itself when it registers, besides what its
 * common options say (name, endpoint). Zero where a role has nothing to say. */
typedef struct g4_daemon_info {
    G4__V1__Role role;
    const char *name;         /* NULL: --name */
    const char *model;        /* path of the GGUF it serves (borrowed) */
    uint64_t digest;          /* g4_gguf_digest of it */
    int layer_begin, layer_end, n_layer, n_slots, n_ctx; /* shards */
    int n_vocab;              /* shards, tokenizer */
    const int32_t *media_ids; /* tokenizer: 6 ids (copied) */
    int n_embd, has_vision, has_audio; /* encoder */
    /* shards: the prefix cache's budget and accounting (Register.cache_*) */
    uint64_t cache_budget, cache_row, cache_fixed;
    const char *draft;        /* shards: the drafter after sampling (Register.draft; NULL none) */
    int draft_max;
} g4_daemon_info_t;

typedef struct g4_daemon {
    void *zctx, *ctl; /* ctl: DEALER to the scheduler (NULL: standalone) */
    g4_daemon_work_t work; /* published by the worker thread, sent with each heartbeat */
    G4__V1__Register reg;     /* its strings point into c, info or the buffers below */
    char host[64], digest[24];
    int32_t media_ids[6];
    uint64_t last_hb_ms;
    const char *sched_ep;     /* --scheduler (borrowed) */
    /* registration is a state, not a message: until the scheduler accepts a
     * Register, one goes out at every heartbeat time (a Register lost with a
     * scheduler that died, dropped from a queue full of heartbeats for one
     * that was away, or answered "retry: ..." is sent again) */
    int registered;           /* an accepted RegisterReply since the last Register */
    int reregister;           /* the scheduler said "retry: ..." (logged once) */
    uint64_t unregistered_ms; /* since when a Register waits for an answer (0: registered) */
    int n_reconnects;         /* control sockets made anew (an unanswered Register) */
    /* metrics sent with every heartbeat (names borrowed; values updated by the daemon) */
    int n_counters;
    const char *counter_names[16];
    uint64_t counter_values[16];
} g4_daemon_t;

/* The worker thread of a daemon: it owns the service socket and does all the
 * work; the thread that called g4_worker_start keeps heartbeating and hands
 * it notes (e.g. a shard's slot releases) through an inproc pipe. */
typedef struct g4_worker {
    void (*on_ready)(void *user, void *sock);                  /* sock is readable */
    void (*on_note)(void *user, const void *data, size_t len); /* may be NULL */
    void (*on_tick)(void *user);                               /* each turn (>= 4 a second); may be NULL */
    void *user;
    /* private */
    void *zctx, *sock, *pipe;
    char pipe_ep[64];
    struct g4_worker_thread *thread; /* (no pthread.h here: schedulerd has a sched.h of its own) */
} g4_worker_t;

/* Starts the thread; it takes sock (bound; the caller no longer touches it).
 * Set on_ready (and on_note, on_tick, user) first. */
int g4_worker_start(g4_worker_t *w, void *zctx, void *sock, g4_err_t *err);
/* From the starting thread: on_note(data, len) runs on the worker, in order
 * with its work (len > 0). */
void g4_worker_note(g4_worker_t *w, const void *data, size_t len);
/* Stops the worker after what it is doing and joins it. */
void g4_worker_stop(g4_worker_t *w);

/* Builds the daemon's Register (role, name, pid, host, backend "cpu", the
 * endpoint others connect to: --advertise, else --listen; then info) and,
 * with --scheduler, connects and registers. c and info->model are borrowed
 * and must outlive d. */
int g4_daemon_register(g4_daemon_t *d, void *zctx, const g4_daemon_cfg_t *c, const g4_daemon_info_t *info,
                       g4_err_t *err);
/* Heartbeat when due. */
void g4_daemon_tick(g4_daemon_t *d);
/* Handles a message that came on the control socket; returns 1 if it was a
 * control message handled here (register reply, shutdown), else 0. */
int g4_daemon_handle(g4_daemon_t *d, g4_msg_t *m);
void g4_daemon_close(g4_daemon_t *d);
/* Receives and handles one message from the control socket (when readable). */
void g4_daemon_poll_ctl(g4_daemon_t *d);
/* Waits up to timeout_ms for a control message (sleeps when standalone) and
 * handles it if it is one of g4_daemon_handle's; returns 1 and fills *m with
 * any other (the caller closes it), else 0. */
int g4_daemon_wait(g4_daemon_t *d, int timeout_ms, g4_msg_t *m);

/* A socket of `type` bound to ep, on a context whose security (CURVE) is set
 * up for serving; peers: G4_WIRE_PEERS_DAEMONS or G4_WIRE_PEERS_CLIENTS (who
 * may connect under CURVE). */
void *g4_daemon_listen(void *zctx, int type, const char *ep, int peers, g4_err_t *err);
/* Up to `max` waiting requests of a ROUTER socket to fn (a burst, then the
 * caller's heartbeats get their turn); a malformed one is counted in
 * *n_errors (may be NULL) and answered with an error where it can be. */
void g4_daemon_serve_burst(void *sock, int max, void (*fn)(void *user, void *sock, g4_msg_t *m), void *user,
                           uint64_t *n_errors);

#endif
