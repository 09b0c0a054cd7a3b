/* g4_client — the connection to a scheduler and the small messages (generate,
 * cancel, status); see g4_client.h. */
#include "g4_client.h"

#include <string.h>
#include <zmq.h>

void *g4_client_ctx_new(g4_err_t *err)
{
    void *z = zmq_ctx_new();
    if (!z) {
        g4_err_set(err, G4_ERR_NOMEM, "zmq_ctx_new failed");
        return NULL;
    }
    if (g4_wire_security_init(z, 0, err)) {
        zmq_ctx_term(z);
        return NULL;
    }
    return z;
}

void *g4_client_connect(void *zctx, const char *ep, g4_err_t *err)
{
    void *s = g4_wire_socket(zctx, ZMQ_DEALER, err);
    if (s && g4_wire_connect(s, ep, err)) {
        zmq_close(s);
        return NULL;
    }
    return s;
}

int g4_client_send_generate(void *sock, uint64_t id, uint64_t deadline_ms, const G4__V1__GenerateRequest *req,
                            g4_err_t *err)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    h.request_id = id;
    h.deadline_ms = deadline_ms;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_GENERATE;
    env.generate = (G4__V1__GenerateRequest *)req; /* only packed */
    return g4_wire_send(sock, NULL, 0, &env, NULL, NULL, 0, 0, err);
}

void g4_client_send_cancel(void *sock, uint64_t id)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    G4__V1__CancelRequest c = G4__V1__CANCEL_REQUEST__INIT;
    h.request_id = id;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_CANCEL;
    env.cancel = &c;
    g4_err_t err;
    g4_wire_send(sock, NULL, 0, &env, NULL, NULL, 0, 0, &err);
}

G4__V1__StatusReply *g4_client_status(const char *ep, int timeout_ms, G4__V1__Envelope **owner)
{
    *owner = NULL;
    g4_err_t err;
    void *z = g4_client_ctx_new(&err);
    void *s = z ? g4_client_connect(z, ep, &err) : NULL;
    G4__V1__StatusReply *rep = NULL;
    if (s) {
        G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
        G4__V1__StatusRequest sr = G4__V1__STATUS_REQUEST__INIT;
        G4__V1__Header h = G4__V1__HEADER__INIT;
        h.request_id = 1;
        env.header = &h;
        env.body_case = G4__V1__ENVELOPE__BODY_STATUS;
        env.status = &sr;
        /* nonblocking: a scheduler that is not there fails at once, not at the HWM */
        if (!g4_wire_send(s, NULL, 0, &env, NULL, NULL, 0, 1, &err)) {
            g4_msg_t m;
            if (g4_wire_recv(s, 0, &m, timeout_ms, &err) == G4_OK &&
                m.env->body_case == G4__V1__ENVELOPE__BODY_STATUS_REPLY) {
                rep = m.env->status_reply;
                *owner = m.env;
                m.env = NULL;
            }
            g4_msg_close(&m);
        }
        zmq_close(s);
    }
    if (z) zmq_ctx_term(z);
    return rep;
}

int g4_client_encoder_ready(const G4__V1__StatusReply *r)
{
    for (size_t k = 0; k < r->n_daemons; k++)
        if (r->daemons[k]->role == G4__V1__ROLE__ROLE_ENCODER && r->daemons[k]->state &&
            !strcmp(r->daemons[k]->state, "ready"))
            return 1;
    return 0;
}

void g4_client_sampling(const g4_sampler_params_t *sp, int logprobs, G4__V1__SamplingParams *out)
{
    g4__v1__sampling_params__init(out);
    out->temperature = sp->temp, out->top_k = sp->top_k, out->top_p = sp->top_p, out->min_p = sp->min_p;
    out->repeat_penalty = sp->repeat_penalty, out->repeat_last_n = sp->repeat_last_n;
    out->presence_penalty = sp->presence_penalty, out->frequency_penalty = sp->frequency_penalty;
    out->seed = sp->seed, out->logprobs = logprobs;
}
