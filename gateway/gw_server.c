/* gw_server — the gateway's HTTP side: microhttpd with a thread per
 * connection, the API key checked from the headers (before any of the body is
 * read), the body gathered (at most GW_MAX_BODY), each route sent to its
 * file; /v1/models and /health are answered here, / is the chat page
 * (gw_page.c). Limits: connections in all and per client, header bytes, the
 * time a request may take to arrive (gw_conn.c). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zmq.h>

#include "g4_alloc.h"
#include "gw_internal.h"

#define GW_MAX_BODY (32u << 20)

/* one HTTP request's body as it arrives */
typedef struct s_conn {
    char *body;
    size_t len, cap;
    int too_big, answered;
    char method[16], url[256]; /* for the access log */
} s_conn_t;

static enum MHD_Result s_health(gw_server_t *sv, struct MHD_Connection *c)
{
    G4__V1__Envelope *owner;
    G4__V1__StatusReply *r = g4_client_status(sv->sched_ep, 1000, &owner);
    cJSON *j = cJSON_CreateObject();
    int ok = r && r->ready;
    cJSON_AddStringToObject(j, "status", ok ? "ok" : "unavailable");
    if (r) {
        cJSON *d = cJSON_AddArrayToObject(j, "stages");
        for (size_t i = 0; i < r->n_daemons; i++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", r->daemons[i]->name);
            cJSON_AddStringToObject(e, "state", r->daemons[i]->state);
            cJSON_AddItemToArray(d, e);
        }
    }
    if (owner) g4__v1__envelope__free_unpacked(owner, NULL);
    return gw_reply_json(sv, c, ok ? 200 : 503, j);
}

static enum MHD_Result s_models(gw_server_t *sv, struct MHD_Connection *c)
{
    cJSON *j = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(j, "data"), *m = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "object", "list");
    cJSON_AddStringToObject(m, "id", sv->model_id);
    cJSON_AddStringToObject(m, "object", "model");
    cJSON_AddNumberToObject(m, "created", 0);
    cJSON_AddStringToObject(m, "owned_by", "g4");
    cJSON_AddItemToArray(d, m);
    return gw_reply_json(sv, c, 200, j);
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    gw_server_t *sv = cls;
    s_conn_t *cn = *con_cls;
    if (!cn) {
        cn = g4_calloc(1, sizeof *cn);
        if (!cn) return MHD_NO;
        *con_cls = cn;
        snprintf(cn->method, sizeof cn->method, "%s", method);
        snprintf(cn->url, sizeof cn->url, "%s", url);
        gw_access_begin();
        /* the headers are in, the body is not: a request without the key is
         * answered now, and microhttpd never reads its body */
        if (sv->api_key && strcmp(url, "/health") && strcmp(url, "/") &&
            !gw_conn_key_ok(sv->api_key, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"))) {
            atomic_fetch_add(&sv->m.n_req, 1);
            cn->answered = 1;
            return gw_reply_error(sv, c, 401, "invalid_request_error", NULL,
                                  "a valid API key is required (Authorization: Bearer KEY)");
        }
        return MHD_YES;
    }
    if (cn->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->len + *upload_size > GW_MAX_BODY) {
            cn->too_big = 1;
        } else {
            if (cn->len + *upload_size + 1 > cn->cap) { /* doubling: a 32 MiB body is not copied 300 times */
                size_t cap = cn->cap ? cn->cap : 4096;
                while (cap < cn->len + *upload_size + 1) cap *= 2;
                char *nb = g4_realloc(cn->body, cap);
                if (!nb) return MHD_NO;
                cn->body = nb, cn->cap = cap;
            }
            memcpy(cn->body + cn->len, upload, *upload_size);
            cn->len += *upload_size;
            cn->body[cn->len] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&sv->m.n_req, 1);
    gw_conn_arrived(sv, c, 1);
    if (cn->too_big) return gw_reply_error(sv, c, 413, "invalid_request_error", NULL, "the body is larger than 32 MiB");
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    const int gets = !strcmp(url, "/health") || !strcmp(url, "/metrics") || !strcmp(url, "/v1/models");
    if (gets && !get) return gw_reply_error(sv, c, 405, "invalid_request_error", NULL, "use GET");
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return gw_reply_error(sv, c, 405, "invalid_request_error", NULL, "use GET");
        return gw_page_reply(c);
    }
    if (!strcmp(url, "/health")) return s_health(sv, c);
    if (!strcmp(url, "/metrics")) return gw_metrics_reply(sv, c);
    if (!strcmp(url, "/v1/models")) return s_models(sv, c);
    if (!strcmp(url, "/v1/chat/completions") || !strcmp(url, "/v1/completions")) {
        if (!post) return gw_reply_error(sv, c, 405, "invalid_request_error", NULL, "use POST");
        return gw_gen_handle(sv, c, cn->body ? cn->body : "", cn->len, url[4] == 'c' && url[5] == 'h');
    }
    return gw_reply_error(sv, c, 404, "invalid_request_error", NULL, "no route for %s %s", method, url);
}

static void s_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode t)
{
    (void)t;
    s_conn_t *cn = *con_cls;
    if (cn) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status) gw_access_status(ci->http_status);
        gw_access_log(c, cn->method, cn->url);
        gw_conn_arrived(cls, c, 0);
    }
    if (cn) g4_free(cn->body), g4_free(cn);
    *con_cls = NULL;
}

gw_server_t *gw_server_start(const gw_opts_t *o, g4_err_t *err)
{
    gw_server_t *sv = g4_calloc(1, sizeof *sv);
    if (!sv) {
        close(o->listen_fd);
        return g4_err_set(err, G4_ERR_NOMEM, "out of memory"), NULL;
    }
    snprintf(sv->sched_ep, sizeof sv->sched_ep, "%s", o->sched_ep);
    snprintf(sv->model_id, sizeof sv->model_id, "%s", o->model_id);
    sv->api_key = o->api_key && *o->api_key ? o->api_key : NULL;
    sv->request_timeout_s = o->request_timeout_s > 0 ? o->request_timeout_s : 30;
    if (!(sv->zctx = g4_client_ctx_new(err))) {
        close(o->listen_fd);
        g4_free(sv);
        return NULL;
    }
    zmq_ctx_set(sv->zctx, ZMQ_MAX_SOCKETS, 65536);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl; /* one descriptor per connection: take what the system allows */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    gw_conn_watch_start(sv);
    /* the memory limit bounds a request's header bytes (they must fit in it) */
    sv->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, s_handler, sv,
        MHD_OPTION_LISTEN_SOCKET, o->listen_fd, MHD_OPTION_NOTIFY_COMPLETED, s_completed, sv,
        MHD_OPTION_NOTIFY_CONNECTION, gw_conn_notify, sv, MHD_OPTION_CONNECTION_LIMIT, (unsigned)4096,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)(o->max_conn_per_ip > 0 ? o->max_conn_per_ip : 16),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30, MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024),
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_END);
    if (!sv->mhd) {
        g4_err_set(err, G4_ERR_IO, "the HTTP server did not start");
        close(o->listen_fd);
        gw_conn_watch_stop(sv);
        zmq_ctx_term(sv->zctx);
        g4_free(sv);
        return NULL;
    }
    return sv;
}

void gw_server_stop(gw_server_t **s)
{
    gw_server_t *sv = *s;
    if (!sv) return;
    MHD_stop_daemon(sv->mhd); /* joins the connections' threads: their sockets are closed */
    gw_conn_watch_stop(sv);
    zmq_ctx_term(sv->zctx);
    g4_free(sv);
    *s = NULL;
}
