/* gw_internal — what the gateway's files share (gw.h is the public side).
 * One gw_server_t per `g4 serve`; one gw_gen_t per completion, owned by the
 * connection's thread (or by the response while it streams). */
#ifndef GW_INTERNAL_H
#define GW_INTERNAL_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "g4_client.h"
#include "gw.h"

/* ---- counters (gw_metrics.c) ---- */

#define GW_LAT_BUCKETS 8
typedef struct gw_metrics {
    atomic_ullong n_req, n_req_ok, n_req_err, n_req_4xx, n_req_5xx, n_prompt_tok, n_gen_tok, n_streams;
    atomic_ullong lat_count, lat_sum_ms, lat_bucket[GW_LAT_BUCKETS];
    atomic_int active;
} gw_metrics_t;

typedef struct gw_watch gw_watch_t;

struct gw_server {
    char sched_ep[300];
    char model_id[256];
    const char *api_key; /* NULL: none; borrowed (gw_opts_t) */
    void *zctx;        /* every connection's DEALER lives on it */
    struct MHD_Daemon *mhd;
    gw_metrics_t m;
    /* slow clients (gw_conn.c): open connections and when their request began */
    int request_timeout_s, watch_stop;
    gw_watch_t *watch;
    pthread_mutex_t watch_mu;
    pthread_cond_t watch_cv;
    pthread_t watch_thread;
};

/* ---- around a connection (gw_conn.c) ---- */

/* 1 when the Authorization header is "Bearer <want>" (constant time). */
int gw_conn_key_ok(const char *want, const char *auth);
/* MHD_OPTION_NOTIFY_CONNECTION: puts connections on the watchdog's list and takes them off. */
void gw_conn_notify(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe);
/* The connection's request has fully arrived (1) / a new one begins (0). */
void gw_conn_arrived(gw_server_t *sv, struct MHD_Connection *c, int arrived);
/* The thread that drops connections whose request takes over request_timeout_s to arrive. */
int gw_conn_watch_start(gw_server_t *sv);
void gw_conn_watch_stop(gw_server_t *sv);
/* The access log: one line per request on stderr (client, method, path,
 * status, tokens, milliseconds), from what the connection's thread noted. */
void gw_access_begin(void);
void gw_access_status(unsigned status);
void gw_access_tokens(int n_prompt, int n_gen);
void gw_access_log(struct MHD_Connection *c, const char *method, const char *url);

/* ---- GET / (gw_page.c): the chat page ---- */
enum MHD_Result gw_page_reply(struct MHD_Connection *c);

/* ---- responses (gw_reply.c) ---- */

/* Appends p[0..k) to the growing buffer *b of *n bytes (kept NUL-terminated). */
void gw_append(char **b, size_t *n, const void *p, size_t k);
enum MHD_Result gw_reply_send(struct MHD_Connection *c, unsigned status, const char *type, const char *body, size_t len);
/* Sends j (deleted here) and counts 4xx / 5xx. */
enum MHD_Result gw_reply_json(gw_server_t *sv, struct MHD_Connection *c, unsigned status, cJSON *j);
/* OpenAI's error shape: {"error": {message, type, param, code}}. */
enum MHD_Result gw_reply_error(gw_server_t *sv, struct MHD_Connection *c, unsigned status, const char *type,
                               const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* A scheduler's error code (G4_ERR_*) as an HTTP status. */
unsigned gw_reply_status_of(int code);

/* ---- request parsing (gw_params.c) ---- */

#define GW_MAX_STOP 16
#define GW_MAX_MEDIA 16
typedef struct gw_params {
    G4__V1__SamplingParams sp;
    int max_tokens, stream, logprobs, top_logprobs, think, ignore_eos;
    char *stops[GW_MAX_STOP]; /* borrowed from the body */
    int n_stop;
    /* images / audio of the messages, in order (decoded from base64) */
    G4__V1__Media media[GW_MAX_MEDIA], *mediap[GW_MAX_MEDIA];
    uint8_t *mbuf[GW_MAX_MEDIA];
    int n_media;
} gw_params_t;

/* Fills p from the body; NULL, or an error message (the parameter's name in *param). */
const char *gw_params_parse(const cJSON *body, gw_params_t *p, const char **param);
/* OpenAI messages → the chat template's conversation (media parts decoded
 * into p); NULL with why and param. Caller cJSON_Deletes it. */
cJSON *gw_params_conversation(const cJSON *body, gw_params_t *p, const char **why, const char **param);
void gw_params_free(gw_params_t *p);

/* ---- one completion (gw_gen.c) ---- */

typedef struct gw_gen {
    gw_server_t *sv;
    void *sock;
    g4_client_gen_t req; /* the request's events, resubmits included */
    int chat, stream, done, failed, sent_role, sent_done_marker, logprobs, top_logprobs;
    char id[48];
    long created;
    /* accumulated output */
    char *text;
    size_t text_len;
    int n_prompt, n_gen, n_cached; /* n_cached: prompt tokens from the prefix cache */
    const char *finish;
    /* what the stream has sent of the parsed parts */
    size_t sent_content, sent_reasoning;
    /* pending SSE bytes */
    char *out;
    size_t out_len, out_off;
    cJSON *lp_content; /* logprobs entries */
    uint64_t t0;
} gw_gen_t;

/* POST /v1/chat/completions (chat) or /v1/completions: the whole answer, or
 * a stream (gw_stream.c) once the first event says the request was taken. */
enum MHD_Result gw_gen_handle(gw_server_t *sv, struct MHD_Connection *c, const char *body, size_t len, int chat);
/* Waits for the next event: 1 token, 2 done, 0 other, -1 error (g->req.err). */
int gw_gen_next(gw_gen_t *g);
/* Ends g (its socket, buffers) and gives its slot back; frees g. */
void gw_gen_end(gw_gen_t *g);
/* The final message of a chat completion: content, reasoning, tool calls
 * (*finish becomes "tool_calls" when there are some). */
cJSON *gw_gen_chat_message(const gw_gen_t *g, const char **finish);
cJSON *gw_gen_usage(const gw_gen_t *g);
/* A response object {id, object, created, model, choices: [{index: 0}]};
 * *choice is the choice to fill. */
cJSON *gw_gen_object(const gw_gen_t *g, const char *object, cJSON **choice);

/* ---- streaming (gw_stream.c) ---- */

/* Queues the SSE chunk for what the output gained (final: the last one, with usage). */
void gw_stream_progress(gw_gen_t *g, int final);
/* The streaming response for g (it owns g from now on). */
struct MHD_Response *gw_stream_response(gw_gen_t *g);

/* ---- metrics (gw_metrics.c) ---- */

/* A completion ended well: tokens, latency. */
void gw_metrics_done(gw_metrics_t *m, const gw_gen_t *g);
/* GET /metrics: the gateway's counters and the scheduler's status. */
enum MHD_Result gw_metrics_reply(gw_server_t *sv, struct MHD_Connection *c);

#endif
