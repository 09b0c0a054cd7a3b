/* gw — the OpenAI-compatible HTTP gateway in front of a scheduler (libmicrohttpd
 * + cJSON): POST /v1/chat/completions, POST /v1/completions (both with
 * "stream": true as server-sent events), GET /v1/models, GET /health,
 * GET /metrics (Prometheus text). Errors use OpenAI's error shape.
 *
 * `g4 serve` (cli/cli_serve.c) parses the flags, finds or starts the stack,
 * and runs this library; it is the process the deploy files call "gateway".
 * Each HTTP connection has its own thread and its own DEALER to the scheduler
 * (client/g4_client); requests are bounded (body size, JSON depth via cJSON,
 * connection count, idle timeout).
 *
 * Map of the folder:
 *   gw_server.c   listening, routing, API key, /v1/models, /health
 *   gw_reply.c    HTTP responses: JSON, OpenAI errors, scheduler code → status
 *   gw_params.c   an OpenAI body → sampling, stops, media, the conversation
 *   gw_gen.c      one completion over the scheduler and its final JSON
 *   gw_stream.c   the same as server-sent events
 *   gw_metrics.c  counters and the /metrics text */
#ifndef GW_H
#define GW_H

#include "g4_err.h"

typedef struct gw_opts {
    int listen_fd;        /* from gw_listen; the server owns it from gw_server_start on */
    int max_conn_per_ip;  /* 0: 16 */
    int request_timeout_s; /* headers and body must arrive within it; 0: 30 */
    const char *api_key;  /* NULL or "": none required; borrowed until gw_server_stop */
    const char *sched_ep; /* the scheduler */
    const char *model_id; /* what /v1/models and the responses name */
} gw_opts_t;

typedef struct gw_server gw_server_t;

/* A listening TCP socket on host (an address, IPv4 or IPv6, or a name) and
 * port, without SO_REUSEPORT: -1 with err (G4_ERR_RANGE for a bad host or
 * port, G4_ERR_IO with the reason, e.g. "Address already in use"). Called
 * before anything slow so that a busy port is reported at once. */
int gw_listen(const char *host, int port, g4_err_t *err);
/* Serves o->listen_fd on threads of its own until gw_server_stop. NULL with
 * err when its ZeroMQ context or microhttpd cannot start (the fd is closed). */
gw_server_t *gw_server_start(const gw_opts_t *o, g4_err_t *err);
/* Stops listening, ends the connections' threads, frees *s, sets it NULL. */
void gw_server_stop(gw_server_t **s);

#endif
