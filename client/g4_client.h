/* g4_client — what a program needs to talk to a running scheduler: the g4
 * command (run, chat, bench, status) and the HTTP gateway use it; the daemons
 * do not (they speak g4_wire directly). Not a stack manager: finding or
 * starting daemons is cli/cli_stack.c.
 *
 * Map of the library:
 *   g4_client.c      a ZeroMQ context with CURVE set up, a DEALER to the
 *                    scheduler, the GenerateRequest / CancelRequest senders,
 *                    StatusRequest → StatusReply, sampling params → wire
 *   g4_client_gen.c  one request's events (poll: g4_client_gen_next) with the
 *                    resubmit after silence that carries a request over a
 *                    restarted scheduler, and the blocking loop with
 *                    callbacks on top of it (g4_client_generate)
 *
 * Threads: nothing here is shared between requests but the ZeroMQ context a
 * caller passes in; one g4_client_gen_t and its socket belong to one thread
 * at a time (the gateway's connection threads each have their own). */
#ifndef G4_CLIENT_H
#define G4_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "g4/v1/envelope.pb-c.h"
#include "g4_err.h"
#include "g4_sampler.h"
#include "g4_wire.h"

/* ---- connection (g4_client.c) ---- */

/* A ZeroMQ context ready for CURVE on tcp:// (g4_wire_security_init, client
 * side). NULL with err; the caller ends it with zmq_ctx_term. */
void *g4_client_ctx_new(g4_err_t *err);
/* A DEALER on zctx connected to the scheduler at ep; NULL with err. The
 * caller closes it (zmq_close). */
void *g4_client_connect(void *zctx, const char *ep, g4_err_t *err);
/* Sends req as request `id` (deadline_ms from now, 0: none). 0 or an error. */
int g4_client_send_generate(void *sock, uint64_t id, uint64_t deadline_ms, const G4__V1__GenerateRequest *req,
                            g4_err_t *err);
/* Asks the scheduler to drop request `id` (best effort, no answer). */
void g4_client_send_cancel(void *sock, uint64_t id);
/* Asks a scheduler for its status on a context and socket of its own; NULL
 * when it does not answer in timeout_ms. The reply lives in *owner (caller
 * frees it with g4__v1__envelope__free_unpacked; NULL when there is none). */
G4__V1__StatusReply *g4_client_status(const char *ep, int timeout_ms, G4__V1__Envelope **owner);
/* An encoderd has registered with the scheduler and is ready. */
int g4_client_encoder_ready(const G4__V1__StatusReply *r);
/* The sampler's parameters as the wire carries them (logprobs: top-k log
 * probabilities per token, 0: none). */
void g4_client_sampling(const g4_sampler_params_t *sp, int logprobs, G4__V1__SamplingParams *out);

/* ---- one request (g4_client_gen.c) ---- */

/* What g4_client_gen_next saw. */
typedef enum g4_client_ev {
    G4_CLIENT_EV_ERROR = -1,   /* the request ended with an error: g->err */
    G4_CLIENT_EV_OTHER = 0,    /* nothing for the caller (keepalive, a second Started) */
    G4_CLIENT_EV_TOKEN = 1,    /* m->env->event->token */
    G4_CLIENT_EV_DONE = 2,     /* m->env->event->done: the last event */
    G4_CLIENT_EV_STARTED,      /* m->env->event->started (once, even over resubmits) */
    G4_CLIENT_EV_PROGRESS,     /* m->env->event->progress (prefill) */
    G4_CLIENT_EV_NOTICE,       /* m->env->event->notice */
    G4_CLIENT_EV_RESUBMIT,     /* the scheduler was silent: the next call sends the request again */
    G4_CLIENT_EV_INTERRUPTED,  /* g->interrupted() said so; the request was cancelled */
} g4_client_ev_t;

/* The scheduler sends a keepalive every second; this long without anything
 * means it is gone (a restarted one gets the request again). */
#define G4_CLIENT_SILENCE_MS 4000
#define G4_CLIENT_MAX_RESUBMITS 8

typedef struct g4_client_gen {
    void *sock;          /* borrowed DEALER (g4_client_connect) */
    const char *ep;      /* borrowed, for messages (NULL: not named) */
    uint64_t id;         /* the request's id now: a resubmit takes the next one */
    uint64_t t_start_ms, deadline_ms;
    uint8_t *req_buf;    /* the request packed: it is sent again from here */
    size_t req_len;
    int32_t *ids;        /* ids streamed so far (the resume_ids of a resubmit) */
    size_t n_ids, cap_ids;
    int started, resubmits, resend;
    /* polled after each receive (NULL: never): a SIGINT in the CLI; set it
     * after g4_client_gen_start */
    int (*interrupted)(void);
    g4_err_t err;        /* why, after G4_CLIENT_EV_ERROR or a failed start */
} g4_client_gen_t;

/* Sends req (copied: the caller's may go) as request `id` on sock. 0, or -1
 * with g->err (code G4_ERR_UNAVAILABLE). g4_client_gen_fini in both cases. */
int g4_client_gen_start(g4_client_gen_t *g, void *sock, const char *ep, uint64_t id, uint64_t deadline_ms,
                        const G4__V1__GenerateRequest *req);
/* Waits for the request's next event. m holds the message (the caller closes
 * it with g4_msg_close, or takes m->env); ids of other requests are skipped.
 * After a silence of G4_CLIENT_SILENCE_MS it cancels the old id and returns
 * G4_CLIENT_EV_RESUBMIT; the next call sends the same prompt and media with
 * the ids streamed so far as resume_ids, which a restarted scheduler feeds
 * again after the prompt without sending their text twice (the same draws:
 * the output goes on exactly as it would have). G4_CLIENT_MAX_RESUBMITS of
 * them, then an error. */
g4_client_ev_t g4_client_gen_next(g4_client_gen_t *g, g4_msg_t *m);
void g4_client_gen_fini(g4_client_gen_t *g);

/* ---- the blocking loop (g4_client_gen.c) ---- */

/* Callbacks may be NULL. */
typedef struct g4_client_cb {
    void (*on_started)(void *user, const int32_t *ids, size_t n);
    void (*on_token)(void *user, const G4__V1__TokenEvent *t);
    /* prompt tokens computed so far, about twice a second during a prefill */
    void (*on_progress)(void *user, const G4__V1__Progress *p);
    void (*on_notice)(void *user, const char *message);
    /* the scheduler at ep is silent: the request goes again (n_done ids streamed) */
    void (*on_resubmit)(void *user, const char *ep, size_t n_done);
    int (*interrupted)(void);
    void *user;
} g4_client_cb_t;

/* Streams one request through the scheduler at ep on a context of its own.
 * 0 with *done_env (the Done event's envelope: caller frees it with
 * g4__v1__envelope__free_unpacked), or -1 with err. */
int g4_client_generate(const char *ep, const G4__V1__GenerateRequest *req, uint64_t deadline_ms,
                       const g4_client_cb_t *cb, G4__V1__Envelope **done_env, g4_err_t *err);

#endif
