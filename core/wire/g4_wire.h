/* g4_wire — ZeroMQ + protobuf helpers every daemon uses.
 *
 * A message on a g4 socket is: [routing id frame (ROUTER sockets only)]
 * Envelope frame, then zero or more raw tensor frames the envelope describes.
 * Sockets are created with a message-size limit, high-water marks and a short
 * linger. A malformed frame (not an Envelope, wrong protocol version) is
 * reported as G4_ERR_PROTO with the route kept, so the receiver can answer
 * with an error where a reply is possible. */
#ifndef G4_WIRE_H
#define G4_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "g4/v1/envelope.pb-c.h"
#include "g4_err.h"

#define G4_WIRE_VERSION 1
#define G4_WIRE_MAX_RAW 4
#define G4_WIRE_MAX_MSG (64LL << 20) /* bytes per frame, default (g4_wire_set_maxmsg raises it per socket) */
#define G4_WIRE_HWM 2000             /* messages queued per peer and direction (was 10,000) */
#define G4_WIRE_SNDTIMEO_MS 5000     /* a blocking send gives up after this (G4_ERR_AGAIN) */

typedef struct g4_msg {
    uint8_t route[256];
    size_t route_len; /* 0: no routing frame */
    char user_id[48]; /* the peer's authenticated identity ("daemon:KEY", "client:KEY"); "" without CURVE */
    G4__V1__Envelope *env;
    zmq_msg_t raw[G4_WIRE_MAX_RAW];
    int n_raw;
} g4_msg_t;

/* New socket with g4's options (type: ZMQ_ROUTER, ZMQ_DEALER, ZMQ_PUSH, ZMQ_PULL):
 * linger 100 ms, HWM G4_WIRE_HWM, max message size G4_WIRE_MAX_MSG, send
 * timeout G4_WIRE_SNDTIMEO_MS (nothing blocks forever), ROUTER_MANDATORY on routers.
 * ZMQ_IMMEDIATE stays off: a message sent before the peer is connected (a
 * daemon starting or restarting) waits in the queue instead of failing. */
void *g4_wire_socket(void *zctx, int type, g4_err_t *err);
/* The largest frame this socket accepts (a data socket sized from its batch). */
void g4_wire_set_maxmsg(void *sock, int64_t bytes);
/* bind / connect with a one-line error naming the endpoint. A tcp:// endpoint
 * that is not loopback is refused without CURVE keys unless the process runs
 * --insecure (g4_wire_set_insecure; then it is logged loudly once). A bound
 * tcp:// socket under CURVE accepts only daemon keys (G4_WIRE_PEERS_DAEMONS)
 * unless g4_wire_bind_peers says clients may connect too. */
int g4_wire_bind(void *sock, const char *ep, g4_err_t *err);
enum { G4_WIRE_PEERS_DAEMONS = 0, G4_WIRE_PEERS_CLIENTS = 1 };
int g4_wire_bind_peers(void *sock, const char *ep, int peers, g4_err_t *err);
int g4_wire_connect(void *sock, const char *ep, g4_err_t *err);

/* Receives one whole message (call when the socket is readable, or with
 * timeout_ms >= 0 to wait; returns G4_ERR_TIMEOUT when nothing came).
 * router: the socket is a ROUTER (first frame is the peer's id). */
int g4_wire_recv(void *sock, int router, g4_msg_t *m, int timeout_ms, g4_err_t *err);
void g4_msg_close(g4_msg_t *m);
static inline const void *g4_msg_raw(g4_msg_t *m, int i, size_t *len)
{
    if (i >= m->n_raw) return NULL;
    if (len) *len = zmq_msg_size(&m->raw[i]);
    return zmq_msg_data(&m->raw[i]);
}

/* Sends an envelope (its header's version is set here) and n_raw raw frames.
 * route/route_len: the peer on a ROUTER socket (NULL, 0 otherwise).
 * nonblock: fail with G4_ERR_AGAIN instead of waiting at the high-water mark. */
int g4_wire_send(void *sock, const void *route, size_t route_len, G4__V1__Envelope *env, const void *const *raw,
                 const size_t *raw_len, int n_raw, int nonblock, g4_err_t *err);

/* An Error envelope for request_id. */
int g4_wire_send_error(void *sock, const void *route, size_t route_len, uint64_t request_id, int code,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* g4 error code <-> protocol error code */
int g4_wire_code(int g4_code);
int g4_wire_g4code(int wire_code);

/* CURVE on tcp:// endpoints when G4_CURVE_KEYS or G4_CURVE_SECRET is set (see g4_curve.c):
 * call once per ZeroMQ context before binding or connecting (serve: the
 * context binds, so it gets the ZAP handler that checks client keys); bind and
 * connect then secure tcp:// sockets themselves. Errors: unreadable keys. */
int g4_wire_security_init(void *zctx, int serve, g4_err_t *err);
int g4_wire_curve_on(void);
void g4_wire_curve_server(void *sock, int peers);
void g4_wire_curve_client(void *sock);
/* 1: the endpoint is loopback (127.0.0.0/8, ::1, localhost) or not tcp:// */
int g4_wire_ep_local(const char *ep);
/* --insecure: non-loopback tcp:// without keys is allowed (and warned about). */
void g4_wire_set_insecure(int on);
/* 1 once this process bound or connected a non-loopback tcp:// endpoint without CURVE */
int g4_wire_insecure_used(void);
/* The peer of m is a daemon: CURVE off (no identity to check), or its key is a daemon key. */
int g4_wire_peer_is_daemon(const g4_msg_t *m);
/* Fills n random bytes (getrandom; a clock-seeded fallback). */
void g4_wire_random(void *buf, size_t n);

/* Milliseconds on a monotonic clock. */
uint64_t g4_wire_now_ms(void);

#endif
