/* g4_wire — see g4_wire.h. */
#include "g4_wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "g4_alloc.h"
#include "g4_log.h"

void *g4_wire_socket(void *zctx, int type, g4_err_t *err)
{
    void *s = zmq_socket(zctx, type);
    if (!s) {
        g4_err_set(err, G4_ERR_IO, "zmq_socket: %s", zmq_strerror(errno));
        return NULL;
    }
    int linger = 100, hwm = G4_WIRE_HWM, sndtimeo = G4_WIRE_SNDTIMEO_MS;
    int64_t maxmsg = G4_WIRE_MAX_MSG;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (type == ZMQ_ROUTER) {
        int mandatory = 1; /* a send to a peer that left fails instead of vanishing */
        zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &mandatory, sizeof mandatory);
    }
    return s;
}

void g4_wire_set_maxmsg(void *sock, int64_t bytes) { zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &bytes, sizeof bytes); }

/* ---- authenticated by default: non-loopback tcp:// needs CURVE ------------------------ */

static int s_insecure = -1; /* -1: not set, G4_INSECURE decides */
static int s_insecure_used;

void g4_wire_set_insecure(int on) { s_insecure = on != 0; }
int g4_wire_insecure_used(void) { return s_insecure_used; }

int g4_wire_ep_local(const char *ep)
{
    if (strncmp(ep, "tcp://", 6)) return 1; /* ipc://, inproc:// rely on the file system */
    const char *h = ep + 6, *semi = strchr(h, ';');
    if (semi) h = semi + 1; /* "tcp://src;dst": the destination counts */
    if (!strncmp(h, "127.", 4) || !strncmp(h, "localhost:", 10) || !strncmp(h, "[::1]:", 6) || !strncmp(h, "::1:", 4))
        return 1;
    return 0;
}

static int s_insecure_on(void)
{
    if (s_insecure < 0) {
        const char *e = getenv("G4_INSECURE");
        s_insecure = e && *e && strcmp(e, "0");
    }
    return s_insecure;
}

/* Non-loopback tcp:// without keys: refused, or allowed loudly under --insecure. */
static int s_check_open(const char *what, const char *ep, g4_err_t *err)
{
    if (g4_wire_curve_on() || g4_wire_ep_local(ep)) return G4_OK;
    if (!s_insecure_on())
        return g4_err_set(err, G4_ERR_STATE,
                          "%s %s: not a loopback address, and no CURVE keys are set: anyone who can reach it could "
                          "join or drive the stack. Make keys with `g4 keygen DIR` and set G4_CURVE_KEYS=DIR, or pass "
                          "--insecure (G4_INSECURE=1) to run open",
                          what, ep);
    if (!s_insecure_used)
        g4_log_warn("wire", "INSECURE: %s %s without CURVE (--insecure): anyone who can reach this endpoint can "
                    "register daemons, send results and read prompts", what, ep);
    s_insecure_used = 1;
    return G4_OK;
}

int g4_wire_bind_peers(void *sock, const char *ep, int peers, g4_err_t *err)
{
    if (s_check_open("bind", ep, err)) return err ? err->code : G4_ERR_STATE;
    if (g4_wire_curve_on() && !strncmp(ep, "tcp://", 6)) g4_wire_curve_server(sock, peers);
    if (zmq_bind(sock, ep) != 0) return g4_err_set(err, G4_ERR_IO, "bind %s: %s", ep, zmq_strerror(errno));
    return G4_OK;
}

int g4_wire_bind(void *sock, const char *ep, g4_err_t *err)
{
    return g4_wire_bind_peers(sock, ep, G4_WIRE_PEERS_DAEMONS, err);
}

int g4_wire_connect(void *sock, const char *ep, g4_err_t *err)
{
    if (s_check_open("connect", ep, err)) return err ? err->code : G4_ERR_STATE;
    if (g4_wire_curve_on() && !strncmp(ep, "tcp://", 6)) g4_wire_curve_client(sock);
    if (zmq_connect(sock, ep) != 0) return g4_err_set(err, G4_ERR_IO, "connect %s: %s", ep, zmq_strerror(errno));
    return G4_OK;
}

int g4_wire_peer_is_daemon(const g4_msg_t *m)
{
    return !g4_wire_curve_on() || !m->user_id[0] || !strncmp(m->user_id, "daemon:", 7);
}

void g4_wire_random(void *buf, size_t n)
{
    uint8_t *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    if (got == n) return;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)buf;
    for (size_t i = got; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

static void s_drain(void *sock)
{
    int more = 1;
    size_t sz = sizeof more;
    while (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t f;
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, 0) < 0) {
            zmq_msg_close(&f);
            break;
        }
        zmq_msg_close(&f);
    }
}

int g4_wire_recv(void *sock, int router, g4_msg_t *m, int timeout_ms, g4_err_t *err)
{
    memset(m, 0, sizeof *m);
    if (timeout_ms >= 0) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        int r = zmq_poll(&it, 1, timeout_ms);
        if (r <= 0) return g4_err_set(err, G4_ERR_TIMEOUT, "no message within %d ms", timeout_ms);
    }
    zmq_msg_t f;
    int more;
    size_t sz = sizeof more;
    if (router) {
        zmq_msg_init(&f);
        if (zmq_msg_recv(&f, sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f);
            return g4_err_set(err, errno == EAGAIN ? G4_ERR_TIMEOUT : G4_ERR_IO, "recv: %s", zmq_strerror(errno));
        }
        size_t n = zmq_msg_size(&f);
        if (n > sizeof m->route) n = sizeof m->route;
        memcpy(m->route, zmq_msg_data(&f), n);
        m->route_len = n;
        zmq_msg_close(&f);
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
        if (!more) return g4_err_set(err, G4_ERR_PROTO, "message with a routing frame only");
    }
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, sock, router ? 0 : ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f);
        return g4_err_set(err, errno == EAGAIN ? G4_ERR_TIMEOUT : G4_ERR_IO, "recv: %s", zmq_strerror(errno));
    }
    const char *uid = zmq_msg_gets(&f, "User-Id");
    if (uid) snprintf(m->user_id, sizeof m->user_id, "%s", uid);
    m->env = g4__v1__envelope__unpack(NULL, zmq_msg_size(&f), zmq_msg_data(&f));
    size_t flen = zmq_msg_size(&f);
    zmq_msg_close(&f);
    sz = sizeof more;
    zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    while (more) {
        if (m->n_raw == G4_WIRE_MAX_RAW) {
            s_drain(sock);
            g4_msg_close(m);
            return g4_err_set(err, G4_ERR_PROTO, "more than %d raw frames", G4_WIRE_MAX_RAW);
        }
        zmq_msg_init(&m->raw[m->n_raw]);
        if (zmq_msg_recv(&m->raw[m->n_raw], sock, 0) < 0) {
            zmq_msg_close(&m->raw[m->n_raw]);
            g4_msg_close(m);
            return g4_err_set(err, G4_ERR_IO, "recv: %s", zmq_strerror(errno));
        }
        m->n_raw++;
        zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &sz);
    }
    if (!m->env) return g4_err_set(err, G4_ERR_PROTO, "a %zu-byte frame that is not a g4.v1.Envelope", flen);
    if (!m->env->header || m->env->header->version != G4_WIRE_VERSION)
        return g4_err_set(err, G4_ERR_PROTO, "protocol version %u, this daemon speaks %d",
                          m->env->header ? m->env->header->version : 0, G4_WIRE_VERSION);
    return G4_OK;
}

void g4_msg_close(g4_msg_t *m)
{
    if (m->env) g4__v1__envelope__free_unpacked(m->env, NULL);
    m->env = NULL;
    for (int i = 0; i < m->n_raw; i++) zmq_msg_close(&m->raw[i]);
    m->n_raw = 0;
}

int g4_wire_send(void *sock, const void *route, size_t route_len, G4__V1__Envelope *env, const void *const *raw,
                 const size_t *raw_len, int n_raw, int nonblock, g4_err_t *err)
{
    G4__V1__Header h = G4__V1__HEADER__INIT;
    if (!env->header) env->header = &h;
    env->header->version = G4_WIRE_VERSION;
    size_t n = g4__v1__envelope__get_packed_size(env);
    uint8_t stackbuf[1024];
    uint8_t *buf = n <= sizeof stackbuf ? stackbuf : g4_malloc(n);
    if (!buf) {
        if (env->header == &h) env->header = NULL;
        return g4_err_set(err, G4_ERR_NOMEM, "send: out of memory (%zu bytes)", n);
    }
    g4__v1__envelope__pack(env, buf);
    if (env->header == &h) env->header = NULL;
    const int fl = nonblock ? ZMQ_DONTWAIT : 0;
    int rc = G4_OK;
    if (route && zmq_send(sock, route, route_len, fl | ZMQ_SNDMORE) < 0) goto fail;
    if (zmq_send(sock, buf, n, fl | (n_raw ? ZMQ_SNDMORE : 0)) < 0) goto fail;
    for (int i = 0; i < n_raw; i++)
        if (zmq_send(sock, raw[i], raw_len[i], (i + 1 < n_raw ? ZMQ_SNDMORE : 0)) < 0) goto fail;
    goto out;
fail:
    rc = g4_err_set(err, errno == EAGAIN ? G4_ERR_AGAIN : errno == EHOSTUNREACH ? G4_ERR_UNAVAILABLE : G4_ERR_IO,
                    "send: %s", zmq_strerror(errno));
out:
    if (buf != stackbuf) g4_free(buf);
    return rc;
}

int g4_wire_code(int g4_code) { return g4_code < 0 ? -g4_code : g4_code; }
int g4_wire_g4code(int wire_code) { return wire_code > 0 ? -wire_code : wire_code; }

int g4_wire_send_error(void *sock, const void *route, size_t route_len, uint64_t request_id, int code,
                       const char *fmt, ...)
{
    char msg[G4_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    G4__V1__Error e = G4__V1__ERROR__INIT;
    h.request_id = request_id;
    e.code = (G4__V1__ErrorCode)g4_wire_code(code);
    e.message = msg;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_ERROR;
    env.error = &e;
    g4_err_t err;
    return g4_wire_send(sock, route, route_len, &env, NULL, NULL, 0, 1, &err);
}

uint64_t g4_wire_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
