/* gw_reply — HTTP responses of the gateway: bytes, JSON, OpenAI's error
 * shape, and which HTTP status a scheduler's error code becomes. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "g4_alloc.h"
#include "gw_internal.h"

void gw_append(char **b, size_t *n, const void *p, size_t k)
{
    char *nb = g4_realloc(*b, *n + k + 1);
    if (!nb) return;
    if (k) memcpy(nb + *n, p, k);
    *n += k;
    nb[*n] = 0;
    *b = nb;
}

enum MHD_Result gw_reply_send(struct MHD_Connection *c, unsigned status, const char *type, const char *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

enum MHD_Result gw_reply_json(gw_server_t *sv, struct MHD_Connection *c, unsigned status, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    enum MHD_Result r = gw_reply_send(c, status, "application/json", s, strlen(s));
    cJSON_free(s);
    cJSON_Delete(j);
    if (status >= 500) atomic_fetch_add(&sv->m.n_req_5xx, 1);
    else if (status >= 400) atomic_fetch_add(&sv->m.n_req_4xx, 1);
    return r;
}

enum MHD_Result gw_reply_error(gw_server_t *sv, struct MHD_Connection *c, unsigned status, const char *type,
                               const char *param, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", type);
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    atomic_fetch_add(&sv->m.n_req_err, 1);
    return gw_reply_json(sv, c, status, j);
}

unsigned gw_reply_status_of(int code)
{
    switch (code) {
    case G4_ERR_AGAIN: return 429;
    case G4_ERR_UNAVAILABLE: return 503;
    case G4_ERR_TIMEOUT: return 504;
    case G4_ERR_RANGE: case G4_ERR_FORMAT: case G4_ERR_PROTO: return 400;
    default: return 500;
    }
}
