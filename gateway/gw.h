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
    const char *host;     /* IPv4 address to listen on */
    int port;
    const char *api_key;  /* NULL or "": none required; borrowed until gw_server_stop */
    const char *sched_ep; /* the scheduler */
    const char *model_id; /* what /v1/models and the responses name */
} gw_opts_t;

typedef struct gw_server gw_server_t;

/* Listens and serves on threads of its own until gw_server_stop. NULL with
 * err: G4_ERR_RANGE for a host that is not an IPv4 address, else why it
 * could not listen or set up its ZeroMQ context. */
gw_server_t *gw_server_start(const gw_opts_t *o, g4_err_t *err);
/* Stops listening, ends the connections' threads, frees *s, sets it NULL. */
void gw_server_stop(gw_server_t **s);

#endif
