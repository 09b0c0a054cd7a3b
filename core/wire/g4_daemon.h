/* g4_daemon — what every daemon does besides its service: stop on SIGTERM /
 * SIGINT, register with schedulerd and heartbeat every 500 ms over a DEALER
 * on the scheduler's control endpoint (re-registering when the scheduler
 * does not know it, e.g. after the scheduler restarted). */
#ifndef G4_DAEMON_H
#define G4_DAEMON_H

#include <signal.h>
#include <stdint.h>

#include "g4_wire.h"

#define G4_HEARTBEAT_MS 500

extern volatile sig_atomic_t g4_daemon_stop; /* set by SIGTERM / SIGINT */
void g4_daemon_signals(void);

typedef struct g4_daemon {
    void *zctx, *ctl; /* ctl: DEALER to the scheduler (NULL: standalone) */
    G4__V1__Register reg;
    uint64_t last_hb_ms;
    /* metrics sent with every heartbeat (names borrowed; values updated by the daemon) */
    int n_counters;
    const char *counter_names[16];
    uint64_t counter_values[16];
} g4_daemon_t;

/* reg's strings are borrowed and must stay valid. sched_ep may be NULL. */
int g4_daemon_init(g4_daemon_t *d, void *zctx, const char *sched_ep, const G4__V1__Register *reg, g4_err_t *err);
/* Heartbeat when due. */
void g4_daemon_tick(g4_daemon_t *d);
/* Handles a message that came on the control socket; returns 1 if it was a
 * control message handled here (register reply, shutdown), else 0. */
int g4_daemon_handle(g4_daemon_t *d, g4_msg_t *m);
void g4_daemon_close(g4_daemon_t *d);
/* Receives and handles one message from the control socket (when readable). */
void g4_daemon_poll_ctl(g4_daemon_t *d);

/* A socket of `type` bound to ep, on a context whose security (CURVE) is set
 * up for serving. */
void *g4_daemon_listen(void *zctx, int type, const char *ep, g4_err_t *err);
/* Up to `max` waiting requests of a ROUTER socket to fn (a burst, then the
 * caller's heartbeats get their turn); a malformed one is counted in
 * *n_errors (may be NULL) and answered with an error where it can be. */
void g4_daemon_serve_burst(void *sock, int max, void (*fn)(void *user, void *sock, g4_msg_t *m), void *user,
                           uint64_t *n_errors);
/* "--log-level LEVEL": applies it and returns 1 (the caller skips v). */
int g4_daemon_log_opt(const char *a, const char *v);


#endif
