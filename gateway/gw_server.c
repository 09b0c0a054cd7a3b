/* gw_server — the gateway's HTTP side: microhttpd with a thread per
 * connection, the body gathered (at most GW_MAX_BODY), the API key checked,
 * each route sent to its file; /v1/models and /health are answered here. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <zmq.h>

#include "g4_alloc.h"
#include "gw_internal.h"

#define GW_MAX_BODY (32u << 20)

/* one HTTP request's body as it arrives */
typedef struct s_conn {
    char *body;
    size_t len;
    int too_big;
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
        return MHD_YES;
    }
    if (*upload_size) {
        if (cn->len + *upload_size > GW_MAX_BODY) cn->too_big = 1;
        else gw_append(&cn->body, &cn->len, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&sv->m.n_req, 1);
    if (sv->api_key && strcmp(url, "/health")) {
        const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!auth || strncmp(auth, "Bearer ", 7) || strcmp(auth + 7, sv->api_key))
            return gw_reply_error(sv, c, 401, "invalid_request_error", NULL,
                                  "a valid API key is required (Authorization: Bearer KEY)");
    }
    if (cn->too_big) return gw_reply_error(sv, c, 413, "invalid_request_error", NULL, "the body is larger than 32 MiB");
    const int get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    const int gets = !strcmp(url, "/health") || !strcmp(url, "/metrics") || !strcmp(url, "/v1/models");
    if (gets && !get) return gw_reply_error(sv, c, 405, "invalid_request_error", NULL, "use GET");
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
    (void)cls, (void)c, (void)t;
    s_conn_t *cn = *con_cls;
    if (cn) g4_free(cn->body), g4_free(cn);
    *con_cls = NULL;
}

gw_server_t *gw_server_start(const gw_opts_t *o, g4_err_t *err)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, o->host, &addr.sin_addr) != 1) {
        g4_err_set(err, G4_ERR_RANGE, "--host must be an IPv4 address, got '%s'", o->host);
        return NULL;
    }
    gw_server_t *sv = g4_calloc(1, sizeof *sv);
    if (!sv) return g4_err_set(err, G4_ERR_NOMEM, "out of memory"), NULL;
    snprintf(sv->sched_ep, sizeof sv->sched_ep, "%s", o->sched_ep);
    snprintf(sv->model_id, sizeof sv->model_id, "%s", o->model_id);
    sv->api_key = o->api_key && *o->api_key ? o->api_key : NULL;
    if (!(sv->zctx = g4_client_ctx_new(err))) {
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
    sv->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, (uint16_t)o->port, NULL, NULL,
        s_handler, sv, MHD_OPTION_NOTIFY_COMPLETED, s_completed, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)20000, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(512 * 1024), MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024),
        MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned)1, MHD_OPTION_END);
    if (!sv->mhd) {
        g4_err_set(err, G4_ERR_IO, "cannot listen on %s:%d", o->host, o->port);
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
    zmq_ctx_term(sv->zctx);
    g4_free(sv);
    *s = NULL;
}
