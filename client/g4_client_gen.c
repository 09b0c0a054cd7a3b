/* g4_client_gen — one request's events, and the blocking loop over them; see
 * g4_client.h. The resubmit after silence lives here only: the CLI and the
 * gateway both carry a request over a restarted scheduler through it. */
#include "g4_client.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "g4_alloc.h"

int g4_client_gen_start(g4_client_gen_t *g, void *sock, const char *ep, uint64_t id, uint64_t deadline_ms,
                        const G4__V1__GenerateRequest *req)
{
    memset(g, 0, sizeof *g);
    g->sock = sock, g->ep = ep, g->id = id, g->deadline_ms = deadline_ms;
    g->t_start_ms = g4_wire_now_ms();
    /* packed: the caller's request (its media, its prompt) may go before a resubmit */
    g->req_len = g4__v1__generate_request__get_packed_size(req);
    g->req_buf = g4_malloc(g->req_len ? g->req_len : 1);
    if (!g->req_buf) return g4_err_set(&g->err, G4_ERR_UNAVAILABLE, "out of memory"), -1;
    g4__v1__generate_request__pack(req, g->req_buf);
    if (g4_client_send_generate(sock, id, deadline_ms, req, &g->err)) {
        g->err.code = G4_ERR_UNAVAILABLE;
        return -1;
    }
    return 0;
}

void g4_client_gen_fini(g4_client_gen_t *g)
{
    g4_free(g->req_buf), g->req_buf = NULL;
    g4_free(g->ids), g->ids = NULL;
    g->n_ids = g->cap_ids = 0;
}

/* The request again with the ids streamed so far, on the next id, within
 * what is left of the deadline. */
static int s_resend(g4_client_gen_t *g)
{
    G4__V1__GenerateRequest *req = g4__v1__generate_request__unpack(NULL, g->req_len, g->req_buf);
    if (!req) return g4_err_set(&g->err, G4_ERR_UNAVAILABLE, "the request could not be read back"), -1;
    G4__V1__GenerateRequest again = *req; /* the same prompt and media, then what was generated */
    again.resume_ids = g->ids, again.n_resume_ids = g->n_ids;
    const uint64_t used = g4_wire_now_ms() - g->t_start_ms;
    const uint64_t left = g->deadline_ms ? (g->deadline_ms > used ? g->deadline_ms - used : 1) : 0;
    const int rc = g4_client_send_generate(g->sock, ++g->id, left, &again, &g->err);
    g4__v1__generate_request__free_unpacked(req, NULL);
    if (rc) g->err.code = G4_ERR_UNAVAILABLE;
    return rc ? -1 : 0;
}

static void s_keep_id(g4_client_gen_t *g, int32_t id)
{
    if (g->n_ids == g->cap_ids) {
        const size_t cap = g->cap_ids * 2 + 64;
        int32_t *n = g4_realloc(g->ids, cap * sizeof *n);
        if (n) g->ids = n, g->cap_ids = cap;
    }
    if (g->n_ids < g->cap_ids) g->ids[g->n_ids++] = id;
}

g4_client_ev_t g4_client_gen_next(g4_client_gen_t *g, g4_msg_t *m)
{
    memset(m, 0, sizeof *m); /* (g4_msg_close on an event-less return is safe) */
    if (g->resend) {
        g->resend = 0;
        if (s_resend(g)) return G4_CLIENT_EV_ERROR;
    }
    for (;;) {
        g4_err_t err;
        const int r = g4_wire_recv(g->sock, 0, m, G4_CLIENT_SILENCE_MS, &err);
        if (g->interrupted && g->interrupted()) { /* (a signal ends the wait like a silence) */
            g4_msg_close(m);
            g4_client_send_cancel(g->sock, g->id);
            g4_err_set(&g->err, G4_ERR_CANCELLED, "interrupted (%zu tokens generated)", g->n_ids);
            return G4_CLIENT_EV_INTERRUPTED;
        }
        if (r == G4_ERR_TIMEOUT) {
            if (g->resubmits == G4_CLIENT_MAX_RESUBMITS) {
                if (g->ep) g4_err_set(&g->err, G4_ERR_UNAVAILABLE, "the scheduler at %s stopped answering", g->ep);
                else g4_err_set(&g->err, G4_ERR_UNAVAILABLE, "the scheduler stopped answering");
                return G4_CLIENT_EV_ERROR;
            }
            g4_client_send_cancel(g->sock, g->id); /* (in case it was only slow) */
            g->resubmits++;
            g->resend = 1;
            return G4_CLIENT_EV_RESUBMIT;
        }
        if (r) {
            g4_msg_close(m);
            g4_err_set(&g->err, G4_ERR_UNAVAILABLE, "%s", err.msg);
            return G4_CLIENT_EV_ERROR;
        }
        const G4__V1__Envelope *e = m->env;
        if (e->header->request_id != g->id) {
            g4_msg_close(m);
            continue;
        }
        if (e->body_case == G4__V1__ENVELOPE__BODY_ERROR) {
            g4_err_set(&g->err, g4_wire_g4code((int)e->error->code), "%s", e->error->message);
            return G4_CLIENT_EV_ERROR;
        }
        if (e->body_case != G4__V1__ENVELOPE__BODY_EVENT) return G4_CLIENT_EV_OTHER;
        const G4__V1__GenerateEvent *ev = e->event;
        switch (ev->event_case) {
        case G4__V1__GENERATE_EVENT__EVENT_STARTED:
            if (g->started) return G4_CLIENT_EV_OTHER; /* (a resumed request starts again) */
            g->started = 1;
            return G4_CLIENT_EV_STARTED;
        case G4__V1__GENERATE_EVENT__EVENT_TOKEN: s_keep_id(g, ev->token->id); return G4_CLIENT_EV_TOKEN;
        case G4__V1__GENERATE_EVENT__EVENT_PROGRESS: return G4_CLIENT_EV_PROGRESS;
        case G4__V1__GENERATE_EVENT__EVENT_NOTICE:
            return ev->notice->message ? G4_CLIENT_EV_NOTICE : G4_CLIENT_EV_OTHER;
        case G4__V1__GENERATE_EVENT__EVENT_DONE: return G4_CLIENT_EV_DONE;
        case G4__V1__GENERATE_EVENT__EVENT_ERROR:
            g4_err_set(&g->err, g4_wire_g4code((int)ev->error->code), "%s", ev->error->message);
            return G4_CLIENT_EV_ERROR;
        default: return G4_CLIENT_EV_OTHER;
        }
    }
}

int g4_client_generate(const char *ep, const G4__V1__GenerateRequest *req, uint64_t deadline_ms,
                       const g4_client_cb_t *cb, G4__V1__Envelope **done_env, g4_err_t *err)
{
    static const g4_client_cb_t none = {0};
    if (!cb) cb = &none;
    *done_env = NULL;
    void *z = g4_client_ctx_new(err);
    void *s = z ? g4_client_connect(z, ep, err) : NULL;
    int rc = -1;
    g4_client_gen_t g;
    memset(&g, 0, sizeof g);
    if (!s) goto out;
    const uint64_t id = ((uint64_t)getpid() << 20) ^ g4_wire_now_ms();
    if (g4_client_gen_start(&g, s, ep, id, deadline_ms, req)) {
        *err = g.err;
        goto out;
    }
    g.interrupted = cb->interrupted;
    for (;;) {
        g4_msg_t m;
        const g4_client_ev_t k = g4_client_gen_next(&g, &m);
        const G4__V1__GenerateEvent *ev = m.env ? m.env->event : NULL;
        if (k == G4_CLIENT_EV_ERROR || k == G4_CLIENT_EV_INTERRUPTED) {
            g4_msg_close(&m);
            *err = g.err;
            break;
        }
        if (k == G4_CLIENT_EV_DONE) {
            *done_env = m.env;
            m.env = NULL;
            g4_msg_close(&m);
            rc = 0;
            break;
        }
        if (k == G4_CLIENT_EV_STARTED && cb->on_started)
            cb->on_started(cb->user, ev->started->prompt_ids, ev->started->n_prompt_ids);
        else if (k == G4_CLIENT_EV_TOKEN && cb->on_token) cb->on_token(cb->user, ev->token);
        else if (k == G4_CLIENT_EV_PROGRESS && cb->on_progress) cb->on_progress(cb->user, ev->progress);
        else if (k == G4_CLIENT_EV_NOTICE && cb->on_notice) cb->on_notice(cb->user, ev->notice->message);
        else if (k == G4_CLIENT_EV_RESUBMIT && cb->on_resubmit) cb->on_resubmit(cb->user, ep, g.n_ids);
        g4_msg_close(&m);
    }
out:
    g4_client_gen_fini(&g);
    if (s) zmq_close(s);
    if (z) zmq_ctx_term(z);
    return rc;
}
