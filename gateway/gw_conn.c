/* gw_conn — what the gateway does around a connection, before and after a
 * route runs: the listening socket (bound before the stack loads, so a busy
 * port fails at once), the API key (checked from the headers, in constant
 * time), the watchdog that drops clients too slow to send their request, and
 * the access log line of each request.
 *
 * Not here: routing and replies (gw_server.c, gw_reply.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "g4_alloc.h"
#include "g4_clock.h"
#include "gw_internal.h"

/* ---- the listening socket -------------------------------------------------------------- */

int gw_listen(const char *host, int port, g4_err_t *err)
{
    if (port < 1 || port > 65535) return g4_err_set(err, G4_ERR_RANGE, "--port %d: must be from 1 to 65535", port), -1;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const int gai = getaddrinfo(host, ps, &hints, &res);
    if (gai) return g4_err_set(err, G4_ERR_RANGE, "--host %s: %s", host, gai_strerror(gai)), -1;
    int fd = -1, why = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        /* SO_REUSEADDR (a restart binds while old connections sit in TIME_WAIT)
         * but never SO_REUSEPORT: a second server on the port must fail, not
         * share the requests with the first */
        const int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 256)) why = errno, close(fd), fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        g4_err_set(err, G4_ERR_IO, "cannot listen on %s port %d: %s%s", host, port, strerror(why),
                   why == EADDRINUSE ? " (another server runs there? see --port)" : "");
    return fd;
}

/* ---- the API key ----------------------------------------------------------------------- */

int gw_conn_key_ok(const char *want, const char *auth)
{
    if (!auth || strncmp(auth, "Bearer ", 7)) return 0;
    /* both sides hashed first: sodium_memcmp takes equal lengths, and the
     * time taken then tells nothing about the key's length either */
    unsigned char a[32], b[32];
    crypto_generichash(a, sizeof a, (const unsigned char *)want, strlen(want), NULL, 0);
    crypto_generichash(b, sizeof b, (const unsigned char *)auth + 7, strlen(auth + 7), NULL, 0);
    return sodium_memcmp(a, b, sizeof a) == 0;
}

/* ---- slow clients ------------------------------------------------------------------------
 * microhttpd's timeout is an idle one: a byte every few seconds holds a
 * connection (and its thread) forever. Each connection is on a list with the
 * time its current request began; a thread shuts down the socket of any whose
 * request has not fully arrived within request_timeout_s, which ends it in
 * microhttpd's own thread. The list's lock is held when microhttpd reports a
 * connection closed, so a socket is never shut after its descriptor is reused. */

struct gw_watch {
    int fd;
    int arrived; /* the request is in: the reply may take as long as it takes */
    uint64_t t0_ms;
    struct gw_watch *prev, *next;
};

void gw_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe)
{
    gw_server_t *sv = cls;
    pthread_mutex_lock(&sv->watch_mu);
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        gw_watch_t *w = g4_calloc(1, sizeof *w);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (w && ci) {
            w->fd = ci->connect_fd, w->t0_ms = g4_wire_now_ms();
            w->next = sv->watch;
            if (sv->watch) sv->watch->prev = w;
            sv->watch = w;
        } else {
            g4_free(w), w = NULL;
        }
        *socket_context = w;
    } else if (*socket_context) {
        gw_watch_t *w = *socket_context;
        if (w->prev) w->prev->next = w->next;
        else sv->watch = w->next;
        if (w->next) w->next->prev = w->prev;
        g4_free(w);
        *socket_context = NULL;
    }
    pthread_mutex_unlock(&sv->watch_mu);
}

static gw_watch_t *s_watch_of(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

void gw_conn_arrived(gw_server_t *sv, struct MHD_Connection *c, int arrived)
{
    gw_watch_t *w = s_watch_of(c);
    if (!w) return;
    pthread_mutex_lock(&sv->watch_mu);
    w->arrived = arrived;
    if (!arrived) w->t0_ms = g4_wire_now_ms(); /* the next request on a kept-alive connection */
    pthread_mutex_unlock(&sv->watch_mu);
}

static void *s_watchdog(void *arg)
{
    gw_server_t *sv = arg;
    pthread_mutex_lock(&sv->watch_mu);
    while (!sv->watch_stop) {
        const uint64_t now = g4_wire_now_ms();
        for (gw_watch_t *w = sv->watch; w; w = w->next)
            if (!w->arrived && w->fd >= 0 && now - w->t0_ms > (uint64_t)sv->request_timeout_s * 1000) {
                shutdown(w->fd, SHUT_RDWR);
                w->fd = -1; /* once */
                atomic_fetch_add(&sv->m.n_req_4xx, 1);
            }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&sv->watch_cv, &sv->watch_mu, &ts);
    }
    pthread_mutex_unlock(&sv->watch_mu);
    return NULL;
}

int gw_conn_watch_start(gw_server_t *sv)
{
    pthread_mutex_init(&sv->watch_mu, NULL);
    pthread_cond_init(&sv->watch_cv, NULL);
    return pthread_create(&sv->watch_thread, NULL, s_watchdog, sv);
}

void gw_conn_watch_stop(gw_server_t *sv)
{
    pthread_mutex_lock(&sv->watch_mu);
    sv->watch_stop = 1;
    pthread_cond_signal(&sv->watch_cv);
    pthread_mutex_unlock(&sv->watch_mu);
    pthread_join(sv->watch_thread, NULL);
    pthread_cond_destroy(&sv->watch_cv);
    pthread_mutex_destroy(&sv->watch_mu);
}

/* ---- the access log ----------------------------------------------------------------------
 * Each connection has its own thread (MHD_USE_THREAD_PER_CONNECTION), and the
 * status, the tokens and the end of a request are all seen on it. */

static _Thread_local struct {
    unsigned status;
    long long n_prompt, n_gen;
    uint64_t t0_ns;
} s_acc;

void gw_access_begin(void) { s_acc.status = 0, s_acc.n_prompt = s_acc.n_gen = -1, s_acc.t0_ns = g4_clock_mono_ns(); }
void gw_access_status(unsigned status) { s_acc.status = status; }
void gw_access_tokens(int n_prompt, int n_gen) { s_acc.n_prompt = n_prompt, s_acc.n_gen = n_gen; }

void gw_access_log(struct MHD_Connection *c, const char *method, const char *url)
{
    char who[INET6_ADDRSTRLEN] = "?", when[32], tok[64] = "";
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ci->client_addr)->sin_addr, who, sizeof who);
    else if (ci && ci->client_addr && ci->client_addr->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ci->client_addr)->sin6_addr, who, sizeof who);
    const time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    if (s_acc.n_prompt >= 0) snprintf(tok, sizeof tok, " tokens=%lld+%lld", s_acc.n_prompt, s_acc.n_gen);
    fprintf(stderr, "%s g4 serve: %s %s %s %u%s %.1f ms\n", when, who, method, url, s_acc.status, tok,
            (double)(g4_clock_mono_ns() - s_acc.t0_ns) / 1e6);
}
