/* sched — see sched.h. */
#include "sched.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "g4_media.h"

#define MAX_DAEMONS 64
#define MAX_CHAIN 32
#define MAX_BATCHES 64
#define KEEPALIVE_MS 1000
#define PROGRESS_MS 500 /* a prefilling request hears how far it is this often */

enum { D_FREE, D_READY, D_DRAINING, D_GONE };
enum { R_FREE, R_CHAT, R_TOKENIZE, R_QUEUED, R_RUNNING, R_FINISHING, R_ENCODING };
#define MAX_MEDIA 63
#define ROW_EMBD G4_ROW_EMBD
#define ROW_BIDIR G4_ROW_BIDIR
enum { CALL_RENDER = 1, CALL_TOKENIZE = 2, CALL_DETOK = 3, CALL_ENCODE = 4 };

typedef struct drec {
    int state;
    G4__V1__Role role;
    char name[96], endpoint[256], model[512], backend[32], host[64], digest[32];
    int pid, layer_begin, layer_end, n_layer, n_slots, n_vocab, n_ctx;
    uint8_t route[256];
    size_t route_len;
    uint64_t registered_ms, last_seen_ms;
    void *sock; /* PUSH (shard) or DEALER (tokenizer) */
    int outstanding; /* tokenizer / encoder calls in flight */
    int32_t media_ids[6]; /* tokenizer: <|image|> <|image> <image|> <|audio|> <|audio> <audio|> */
    int n_embd, has_vision, has_audio; /* encoder */
    int n_counters;
    char counter_names[16][32];
    uint64_t counter_values[16];
    /* what it computes, from its heartbeats: a busy stage is alive as long as
     * it heartbeats; one busy without progress for stuck_after is "stuck" */
    G4__V1__Work work;
    uint64_t progress_ms; /* when work.progress last changed */
    int stuck;
    uint32_t restarts; /* registrations of this name by a new process */
} drec_t;

typedef struct media {
    int kind; /* G4__V1__MEDIA_KIND__* */
    uint8_t *data;
    size_t len;
    int min_tokens, max_tokens;
    float *emb; /* [n_tokens][n_embd] once encoded */
    int n_tokens, n_embd;
} media_t;

typedef struct req {
    int state;
    uint64_t id, client_req_id;
    uint8_t client[256];
    size_t client_len;
    G4__V1__SamplingParams sp;
    int max_tokens, ignore_eos;
    char **stop;
    size_t *stop_len;
    int n_stop;
    char *chat_json;
    uint8_t *text_prompt;
    size_t text_prompt_len;
    int32_t *tok;
    int n_tok, cap_tok, n_prompt, n_fed;
    int slot;
    uint64_t in_flight; /* batch id */
    int replay;         /* the pipeline changed: feed everything again from position 0 */
    int detok_tok;      /* tokenizer record index of the outstanding call, -1 none */
    int n_detok_sent, n_detok_done;
    int n_quiet;        /* generated ids resumed from a lost scheduler: detokenized, not sent again */
    int32_t *resume;    /* those ids, until the prompt is ready (then they follow it in tok) */
    uint8_t dstate[4];
    size_t dstate_len;
    char *out;          /* text emitted so far */
    size_t out_len;
    char *held;         /* text held back (could start a stop string) */
    size_t held_len;
    G4__V1__TopLogprob *tops; /* per generated token: sp.logprobs entries */
    int cap_tops;
    const char *finish; /* decided finish reason, NULL while running */
    int stop_hit;       /* a stop string matched */
    uint64_t t_arrive, t_start, t_first, t_end, last_event_ms, deadline_ms;
    media_t *media;  /* images / audio of the request, in placeholder order */
    int n_media, n_enc_sent, n_encoded, enc_rec;
    /* self-healing: a tokenizer / encoder call lost with its daemon waits for a
     * new one (call_lost: the kind, CALL_ENCODE for the encoder); a request
     * whose stage was lost is parked and re-prefilled on the new pipeline */
    int call_lost, tok_add_bos;
    uint64_t lost_ms, parked_ms;
    int32_t mid[6];  /* placeholder / bracket ids (see g4_media_check) */
    int8_t *rflag;   /* [n_prompt] ROW_* flags once the soft tokens are spliced in */
    float *embd;     /* rows with ROW_EMBD, in prompt order, [n][n_embd] */
    int n_embd;
} req_t;

typedef struct batch {
    uint64_t id;
    int n_req;
    int *reqs;      /* request indices */
    int *rows_fed;  /* rows each request contributed */
    int *first_pos; /* position of each request's first row */
    int *sample_pos; /* position of each request's first sampled row */
    uint64_t stages; /* daemons (bit per record) the batch goes through */
    uint64_t sent_ms;
    double frac;     /* share of the layers it has been through (stages' heartbeats) */
} batch_t;

struct sched {
    sched_params_t p;
    void *zctx, *router, *results;
    char results_ep[256];
    drec_t d[MAX_DAEMONS];
    int chain[MAX_CHAIN], n_chain, n_layer;
    int n_slots, n_ctx;
    uint8_t *slot_used;
    uint32_t *release; /* slots to release with the next batch */
    int n_release;
    req_t *r;
    int n_r, cap_r;
    batch_t b[MAX_BATCHES];
    int n_b;
    uint64_t next_id, next_batch;
    int rr; /* round-robin start */
    int draining;
    uint64_t n_done, n_failed, n_migrated;
    char model[512];
    uint64_t chain_lost_ms;
    uint64_t epoch; /* this scheduler's start (realtime ms): its batches and slots */
    /* the rows of the batch being formed (n_ubatch each; no allocation per step) */
    int32_t *bt_tok, *bt_pos;
    uint32_t *bt_slot, *bt_srows;
    int8_t *bt_flags;
    float *bt_embd;
    size_t bt_embd_cap;         /* floats */
    G4__V1__SeqParams *bt_sps;  /* params of slots starting in the batch */
    G4__V1__SeqParams **bt_spp;
    int bt_cap_r;
};

static uint64_t s_now(void) { return g4_wire_now_ms(); }

/* ---- client events ---------------------------------------------------------- */

static int s_send_event(sched_t *s, req_t *q, G4__V1__GenerateEvent *ev)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    h.request_id = q->client_req_id;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_EVENT;
    env.event = ev;
    g4_err_t err;
    q->last_event_ms = s_now();
    return g4_wire_send(s->router, q->client, q->client_len, &env, NULL, NULL, 0, 1, &err);
}

static void s_req_free(sched_t *s, req_t *q);

/* A call that could not go out or was lost with its daemon (no tokenizer /
 * encoder: one is being restarted) waits for one; s_retry_calls sends it again. */
static void s_call_lost(req_t *q, int kind)
{
    q->call_lost = kind;
    if (!q->lost_ms) q->lost_ms = s_now();
}

static void s_release_slot(sched_t *s, req_t *q)
{
    if (q->slot < 0) return;
    /* the shards drop the slot's cache when the next batch passes (in order
     * with the data: a release can never overtake the slot's next use) */
    if (s->n_release < s->n_slots && s->release) s->release[s->n_release++] = (uint32_t)q->slot;
    s->slot_used[q->slot] = 0;
    q->slot = -1;
}

/* Ends a request with an error event (exactly once). */
static void s_fail(sched_t *s, req_t *q, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void s_fail(sched_t *s, req_t *q, int code, const char *fmt, ...)
{
    char msg[G4_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Error e = G4__V1__ERROR__INIT;
    e.code = (G4__V1__ErrorCode)g4_wire_code(code);
    e.message = msg;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_ERROR;
    ev.error = &e;
    s_send_event(s, q, &ev);
    g4_log_info("sched", "request %llu failed: %s", (unsigned long long)q->client_req_id, msg);
    s->n_failed++;
    s_req_free(s, q);
}

static void s_done(sched_t *s, req_t *q)
{
    q->t_end = s_now();
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Done d = G4__V1__DONE__INIT;
    G4__V1__Usage u = G4__V1__USAGE__INIT;
    d.finish_reason = (char *)q->finish;
    d.ids = q->tok + q->n_prompt, d.n_ids = (size_t)(q->n_tok - q->n_prompt);
    d.text.data = (uint8_t *)q->out, d.text.len = q->out_len;
    u.prompt_tokens = q->n_prompt;
    u.completion_tokens = q->n_tok - q->n_prompt;
    u.queue_ms = q->t_start ? (double)(q->t_start - q->t_arrive) : 0;
    u.prefill_ms = q->t_first ? (double)(q->t_first - q->t_start) : 0;
    u.decode_ms = q->t_first ? (double)(q->t_end - q->t_first) : 0;
    d.usage = &u;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_DONE;
    ev.done = &d;
    s_send_event(s, q, &ev);
    s->n_done++;
    s_req_free(s, q);
}

static void s_req_free(sched_t *s, req_t *q)
{
    /* a request with a batch in flight keeps its slot until the batch returns */
    if (q->in_flight) {
        q->state = R_FINISHING;
        q->finish = q->finish ? q->finish : "cancelled";
        q->client_len = 0; /* nothing more goes out */
        return;
    }
    s_release_slot(s, q);
    for (int i = 0; i < q->n_stop; i++) g4_free(q->stop[i]);
    g4_free(q->stop), g4_free(q->stop_len), g4_free(q->chat_json), g4_free(q->text_prompt);
    g4_free(q->tok), g4_free(q->out), g4_free(q->held), g4_free(q->tops);
    for (int i = 0; i < q->n_media; i++) g4_free(q->media[i].data), g4_free(q->media[i].emb);
    g4_free(q->media), g4_free(q->rflag), g4_free(q->embd), g4_free(q->resume);
    if (q->state == R_ENCODING && q->enc_rec >= 0 && s->d[q->enc_rec].outstanding > 0)
        s->d[q->enc_rec].outstanding -= q->n_enc_sent - q->n_encoded;
    if (q->detok_tok >= 0 && s->d[q->detok_tok].outstanding > 0) s->d[q->detok_tok].outstanding--;
    memset(q, 0, sizeof *q);
    q->state = R_FREE;
    q->slot = -1;
    q->detok_tok = -1;
}

/* ---- daemons ------------------------------------------------------------------- */

static int s_find_daemon(sched_t *s, const char *name)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state != D_FREE && !strcmp(s->d[i].name, name)) return i;
    return -1;
}

static int s_tokenizer(sched_t *s)
{
    /* the newest ready tokenizer gets new work */
    int best = -1;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_TOKENIZER)
            if (best < 0 || s->d[i].registered_ms >= s->d[best].registered_ms) best = i;
    return best;
}

/* The forward chain: from layer 0, the newest ready shard starting where the
 * previous one ends. */
static void s_build_chain(sched_t *s)
{
    int old_n = s->n_chain, old_chain[MAX_CHAIN];
    memcpy(old_chain, s->chain, sizeof old_chain);
    s->n_chain = 0;
    int at = 0, n_layer = 0;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_SHARD) n_layer = s->d[i].n_layer;
    while (n_layer && at < n_layer && s->n_chain < MAX_CHAIN) {
        int best = -1;
        for (int i = 0; i < MAX_DAEMONS; i++)
            if (s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_SHARD && s->d[i].layer_begin == at &&
                s->d[i].layer_end > at)
                if (best < 0 || s->d[i].registered_ms >= s->d[best].registered_ms) best = i;
        if (best < 0) break;
        s->chain[s->n_chain++] = best;
        at = s->d[best].layer_end;
    }
    if (!n_layer || at != n_layer) s->n_chain = 0;
    s->n_layer = n_layer;
    if (s->n_chain) {
        int slots = 1 << 30, ctx = 1 << 30;
        for (int i = 0; i < s->n_chain; i++) {
            if (s->d[s->chain[i]].n_slots < slots) slots = s->d[s->chain[i]].n_slots;
            if (s->d[s->chain[i]].n_ctx > 0 && s->d[s->chain[i]].n_ctx < ctx) ctx = s->d[s->chain[i]].n_ctx;
        }
        s->n_ctx = ctx;
        if (slots != s->n_slots) {
            uint8_t *nu = g4_calloc((size_t)slots, 1);
            uint32_t *nr = g4_calloc((size_t)slots, sizeof *nr);
            if (nu && nr) {
                g4_free(s->release);
                s->release = nr;
                s->n_release = 0;
                for (int i = 0; i < slots && i < s->n_slots; i++) nu[i] = s->slot_used[i];
                g4_free(s->slot_used);
                s->slot_used = nu;
                s->n_slots = slots;
            } else {
                g4_free(nu), g4_free(nr);
            }
        }
    }
    int changed = s->n_chain != old_n;
    for (int i = 0; !changed && i < s->n_chain; i++) changed = s->chain[i] != old_chain[i];
    if (changed && s->n_chain && old_n) {
        /* a stage was replaced (g4 swap): the new daemon has none of the
         * sequences, so every running request is fed again from position 0 */
        int n = 0;
        for (int i = 0; i < s->n_r; i++) {
            req_t *q = &s->r[i];
            if (q->state != R_RUNNING) continue;
            if (q->in_flight) q->replay = 1;
            else q->n_fed = 0;
            n++;
        }
        g4_log_info("sched", "pipeline changed: %d stage(s); %d running request(s) re-prefilled", s->n_chain, n);
    }
    if (s->n_chain && !old_n) {
        g4_log_info("sched", "pipeline complete: %d stage(s) over %d layers", s->n_chain, s->n_layer);
        s->chain_lost_ms = 0;
    } else if (!s->n_chain && old_n) {
        s->chain_lost_ms = s_now();
    }
}

/* A stage of the pipeline is lost: every batch in flight is lost with it.
 * Running requests are parked (no error): they keep their tokens and slots
 * and are fed again from position 0 once a pipeline covers every layer (a
 * restarted shard, a standby, another chain); only when none does within
 * park_timeout_ms do they fail (s_timers). With migration off they fail now. */
static void s_park_running(sched_t *s, const char *why)
{
    for (int i = 0; i < s->n_b; i++) g4_free(s->b[i].reqs), g4_free(s->b[i].rows_fed), g4_free(s->b[i].first_pos), g4_free(s->b[i].sample_pos);
    s->n_b = 0;
    /* a new epoch: every request is fed again from position 0, so the shards
     * forget every slot at the first new batch and drop the lost batches that
     * still travel (or wait in a socket queue for a restarted shard) */
    s->epoch++;
    int n = 0;
    for (int i = 0; i < s->n_r; i++) {
        req_t *q = &s->r[i];
        q->in_flight = 0;
        if (q->state == R_FINISHING) {
            s_req_free(s, q);
        } else if (q->state == R_RUNNING && s->p.no_migrate) {
            s_fail(s, q, G4_ERR_UNAVAILABLE, "%s", why);
        } else if (q->state == R_RUNNING) {
            q->n_fed = 0, q->replay = 0;
            if (!q->parked_ms) q->parked_ms = s_now();
            n++;
            G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
            G4__V1__Notice no = G4__V1__NOTICE__INIT;
            char msg[512];
            snprintf(msg, sizeof msg, "%s; the request waits for a replacement (up to %.0f s) and resumes", why,
                     s->p.park_timeout_ms / 1000.0);
            no.message = msg;
            ev.event_case = G4__V1__GENERATE_EVENT__EVENT_NOTICE;
            ev.notice = &no;
            s_send_event(s, q, &ev);
        }
    }
    if (n) g4_log_info("sched", "%d running request(s) parked until the pipeline is whole again (%s)", n, why);
}

static void s_daemon_gone(sched_t *s, int i, const char *why)
{
    drec_t *d = &s->d[i];
    g4_log_warn("sched", "%s (%s, pid %d) %s", d->name, d->endpoint, d->pid, why);
    int in_chain = 0;
    for (int k = 0; k < s->n_chain; k++) in_chain |= s->chain[k] == i;
    d->state = D_GONE;
    if (d->sock) zmq_close(d->sock);
    d->sock = NULL;
    if (d->role == G4__V1__ROLE__ROLE_SHARD && in_chain) {
        char msg[400];
        snprintf(msg, sizeof msg, "shard %s (layers %d-%d) %s; the request's state on it is lost", d->name,
                 d->layer_begin, d->layer_end, why);
        s_park_running(s, msg);
        if (s->p.no_migrate) /* the surviving shards forget every slot (the replacement starts empty) */
            for (int k = 0; k < s->n_slots; k++) s->slot_used[k] = 0;
    }
    /* calls in flight on a lost tokenizer / encoder go to the next one (they
     * are stateless: the detokenizer state travels with each call; media
     * already encoded are kept) */
    if (d->role == G4__V1__ROLE__ROLE_TOKENIZER) {
        for (int k = 0; k < s->n_r; k++) {
            req_t *q = &s->r[k];
            if (q->state == R_FREE || q->state == R_FINISHING || q->detok_tok != i) continue;
            q->detok_tok = -1;
            if (q->n_detok_sent > q->n_detok_done) q->n_detok_sent = q->n_detok_done;
            s_call_lost(q, q->state == R_CHAT ? CALL_RENDER : q->state == R_TOKENIZE ? CALL_TOKENIZE : CALL_DETOK);
        }
    }
    if (d->role == G4__V1__ROLE__ROLE_ENCODER)
        for (int k = 0; k < s->n_r; k++)
            if (s->r[k].state == R_ENCODING && s->r[k].enc_rec == i) {
                s->r[k].enc_rec = -1;
                s_call_lost(&s->r[k], CALL_ENCODE);
            }
    s_build_chain(s);
}

static void s_register(sched_t *s, g4_msg_t *m)
{
    G4__V1__Register *r = m->env->register_;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__RegisterReply rep = G4__V1__REGISTER_REPLY__INIT;
    env.body_case = G4__V1__ENVELOPE__BODY_REGISTER_REPLY;
    env.register_reply = &rep;
    g4_err_t err;
    const char *why = NULL;
    if (!r->name || !*r->name || !r->endpoint || !*r->endpoint) why = "a name and an endpoint are needed";
    else if (r->role == G4__V1__ROLE__ROLE_SHARD &&
             (r->layer_begin < 0 || r->layer_end <= r->layer_begin || r->layer_end > r->n_layer || r->n_slots <= 0))
        why = "bad layer range";
    else if (r->role != G4__V1__ROLE__ROLE_SHARD && r->role != G4__V1__ROLE__ROLE_TOKENIZER &&
             r->role != G4__V1__ROLE__ROLE_ENCODER)
        why = "unknown role";
    if (!why && r->role == G4__V1__ROLE__ROLE_SHARD)
        for (int i = 0; i < MAX_DAEMONS; i++)
            if (s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_SHARD && s->d[i].n_layer != r->n_layer &&
                strcmp(s->d[i].name, r->name))
                why = "layer count differs from the shards already registered (another model?)";
    if (why) {
        rep.accepted = 0, rep.reason = (char *)why;
        g4_wire_send(s->router, m->route, m->route_len, &env, NULL, NULL, 0, 1, &err);
        g4_log_warn("sched", "refused registration of %s: %s", r->name ? r->name : "?", why);
        return;
    }
    int i = s_find_daemon(s, r->name);
    if (i >= 0 && s->d[i].state != D_GONE && s->d[i].pid != r->pid) {
        /* same name, new process: the old one is gone */
        s_daemon_gone(s, i, "was replaced by a new process of the same name");
    }
    if (i < 0 || s->d[i].state == D_GONE) {
        if (i < 0)
            for (int k = 0; k < MAX_DAEMONS; k++)
                if (s->d[k].state == D_FREE || s->d[k].state == D_GONE) {
                    i = k;
                    break;
                }
        if (i < 0) {
            rep.accepted = 0, rep.reason = "too many daemons";
            g4_wire_send(s->router, m->route, m->route_len, &env, NULL, NULL, 0, 1, &err);
            return;
        }
        if (s->d[i].sock) zmq_close(s->d[i].sock);
        /* a new process under a known name: a restart (a supervisor's, a swap's) */
        const uint32_t restarts = s->d[i].state == D_GONE && !strcmp(s->d[i].name, r->name)
                                      ? s->d[i].restarts + (s->d[i].pid != r->pid) : 0;
        memset(&s->d[i], 0, sizeof s->d[i]);
        s->d[i].restarts = restarts;
    }
    drec_t *d = &s->d[i];
    int fresh = d->state != D_READY;
    d->role = r->role;
    snprintf(d->name, sizeof d->name, "%s", r->name);
    snprintf(d->endpoint, sizeof d->endpoint, "%s", r->endpoint);
    snprintf(d->model, sizeof d->model, "%s", r->model ? r->model : "");
    snprintf(d->backend, sizeof d->backend, "%s", r->backend ? r->backend : "");
    snprintf(d->host, sizeof d->host, "%s", r->host ? r->host : "");
    snprintf(d->digest, sizeof d->digest, "%s", r->model_digest ? r->model_digest : "");
    d->pid = r->pid, d->layer_begin = r->layer_begin, d->layer_end = r->layer_end, d->n_layer = r->n_layer;
    d->n_slots = r->n_slots, d->n_vocab = r->n_vocab, d->n_ctx = r->n_ctx;
    for (int k = 0; k < 6; k++) d->media_ids[k] = k < (int)r->n_media_ids ? r->media_ids[k] : -1;
    d->n_embd = r->n_embd, d->has_vision = r->has_vision, d->has_audio = r->has_audio;
    memcpy(d->route, m->route, m->route_len);
    d->route_len = m->route_len;
    d->last_seen_ms = s_now();
    if (fresh) {
        d->registered_ms = d->last_seen_ms;
        d->sock = g4_wire_socket(s->zctx, r->role == G4__V1__ROLE__ROLE_SHARD ? ZMQ_PUSH : ZMQ_DEALER, &err);
        if (d->sock && g4_wire_connect(d->sock, d->endpoint, &err)) zmq_close(d->sock), d->sock = NULL;
        if (!d->sock) {
            rep.accepted = 0, rep.reason = err.msg;
            g4_wire_send(s->router, m->route, m->route_len, &env, NULL, NULL, 0, 1, &err);
            d->state = D_FREE;
            return;
        }
        if (r->role == G4__V1__ROLE__ROLE_SHARD && r->model) snprintf(s->model, sizeof s->model, "%s", r->model);
        g4_log_info("sched", "registered %s: %s pid %d at %s%s", d->name,
                    r->role == G4__V1__ROLE__ROLE_SHARD ? "shard" : r->role == G4__V1__ROLE__ROLE_TOKENIZER ? "tokenizer" : "encoder",
                    d->pid, d->endpoint, "");
    }
    d->state = D_READY;
    rep.accepted = 1;
    g4_wire_send(s->router, m->route, m->route_len, &env, NULL, NULL, 0, 1, &err);
    s_build_chain(s);
}

/* ---- tokenizer calls --------------------------------------------------------------- */

static uint64_t s_call_id(req_t *q, int kind) { return q->id * 4 + (uint64_t)kind; }

static int s_call(sched_t *s, req_t *q, int kind, G4__V1__Envelope *env)
{
    int t = s_tokenizer(s);
    if (t < 0) return G4_ERR_UNAVAILABLE;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    h.request_id = s_call_id(q, kind);
    env->header = &h;
    g4_err_t err;
    int rc = g4_wire_send(s->d[t].sock, NULL, 0, env, NULL, NULL, 0, 1, &err);
    env->header = NULL;
    if (rc) return rc;
    q->detok_tok = t;
    q->call_lost = 0, q->lost_ms = 0;
    s->d[t].outstanding++;
    return G4_OK;
}

static void s_tokenize(sched_t *s, req_t *q, const uint8_t *text, size_t len, int add_bos)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__TokenizeRequest tr = G4__V1__TOKENIZE_REQUEST__INIT;
    if (text != q->text_prompt) { /* kept until tokenized: a lost call is sent again */
        g4_free(q->text_prompt);
        q->text_prompt = g4_malloc(len + 1);
        if (!q->text_prompt) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
        if (len) memcpy(q->text_prompt, text, len);
        q->text_prompt_len = len;
    }
    q->tok_add_bos = add_bos;
    tr.text.data = q->text_prompt, tr.text.len = len;
    tr.add_bos = add_bos;
    tr.parse_special = 1;
    env.body_case = G4__V1__ENVELOPE__BODY_TOKENIZE;
    env.tokenize = &tr;
    q->state = R_TOKENIZE;
    if (s_call(s, q, CALL_TOKENIZE, &env)) s_call_lost(q, CALL_TOKENIZE);
}

static void s_render(sched_t *s, req_t *q)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__RenderChatRequest rr = G4__V1__RENDER_CHAT_REQUEST__INIT;
    rr.conversation_json = q->chat_json;
    env.body_case = G4__V1__ENVELOPE__BODY_RENDER_CHAT;
    env.render_chat = &rr;
    q->state = R_CHAT;
    if (s_call(s, q, CALL_RENDER, &env)) s_call_lost(q, CALL_RENDER);
}

static void s_send_detok(sched_t *s, req_t *q)
{
    const int n_gen = q->n_tok - q->n_prompt;
    if (q->detok_tok >= 0 || q->n_detok_sent >= n_gen) return;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__DetokenizeRequest dr = G4__V1__DETOKENIZE_REQUEST__INIT;
    dr.ids = q->tok + q->n_prompt + q->n_detok_sent;
    dr.n_ids = (size_t)(n_gen - q->n_detok_sent);
    dr.state.data = q->dstate, dr.state.len = q->dstate_len;
    dr.finish = q->finish != NULL; /* the last ids: flush held bytes with them */
    env.body_case = G4__V1__ENVELOPE__BODY_DETOKENIZE;
    env.detokenize = &dr;
    if (s_call(s, q, CALL_DETOK, &env)) {
        s_call_lost(q, CALL_DETOK);
        return;
    }
    q->n_detok_sent = n_gen;
}

static void s_append(char **buf, size_t *len, const void *p, size_t n)
{
    char *nb = g4_realloc(*buf, *len + n + 1);
    if (!nb) return;
    if (n) memcpy(nb + *len, p, n);
    *len += n;
    nb[*len] = 0;
    *buf = nb;
}

/* Text of one token through the stop-string filter: returns the part that
 * may go out now; sets q->finish = "stop" when a stop string is complete. */
static void s_filter_stop(req_t *q, const uint8_t *chunk, size_t n, int last, char **emit, size_t *emit_len)
{
    s_append(&q->held, &q->held_len, chunk, n);
    *emit = NULL, *emit_len = 0;
    if (!q->held) return;
    size_t cut = q->held_len, keep = 0;
    for (int i = 0; i < q->n_stop; i++) {
        const char *hit = memmem(q->held, q->held_len, q->stop[i], q->stop_len[i]);
        if (hit && (size_t)(hit - q->held) < cut) cut = (size_t)(hit - q->held), q->finish = "stop", q->stop_hit = 1;
    }
    if (!q->stop_hit && !last) {
        /* hold back a tail that could still become a stop string */
        for (int i = 0; i < q->n_stop; i++)
            for (size_t k = q->stop_len[i] - 1; k > keep; k--)
                if (k <= q->held_len && !memcmp(q->held + q->held_len - k, q->stop[i], k)) {
                    keep = k;
                    break;
                }
        cut = q->held_len - keep;
    }
    *emit = q->held, *emit_len = cut;
}

static void s_on_detok(sched_t *s, req_t *q, G4__V1__DetokenizeReply *r)
{
    const int n_gen = q->n_tok - q->n_prompt;
    const int first = q->n_detok_done;
    const size_t n_ids = (size_t)(q->n_detok_sent - first);
    if (r->state.len <= sizeof q->dstate) {
        if (r->state.len) memcpy(q->dstate, r->state.data, r->state.len);
        q->dstate_len = r->state.len;
    }
    for (size_t i = 0; i < n_ids && i < r->n_chunks; i++) {
        const int gi = first + (int)i;
        const int is_last = q->finish && gi == n_gen - 1;
        /* with finish, the reply carries one more chunk: what was held */
        char *flushed = NULL;
        size_t fl = 0;
        s_append(&flushed, &fl, r->chunks[i].data, r->chunks[i].len);
        if (is_last && r->n_chunks > n_ids) s_append(&flushed, &fl, r->chunks[n_ids].data, r->chunks[n_ids].len);
        char *emit;
        size_t elen;
        s_filter_stop(q, (const uint8_t *)(flushed ? flushed : ""), fl, is_last, &emit, &elen);
        g4_free(flushed);
        G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
        G4__V1__TokenEvent te = G4__V1__TOKEN_EVENT__INIT;
        G4__V1__TopLogprob *tp[64];
        te.id = q->tok[q->n_prompt + gi];
        te.text.data = (uint8_t *)emit, te.text.len = elen;
        if (q->sp.logprobs > 0 && q->tops) {
            for (int k = 0; k < q->sp.logprobs && k < 64; k++) tp[k] = &q->tops[(size_t)gi * (size_t)q->sp.logprobs + (size_t)k];
            te.top = tp, te.n_top = (size_t)(q->sp.logprobs < 64 ? q->sp.logprobs : 64);
        }
        ev.event_case = G4__V1__GENERATE_EVENT__EVENT_TOKEN;
        ev.token = &te;
        s_append(&q->out, &q->out_len, emit, elen);
        const int send_rc = gi < q->n_quiet ? 0 : s_send_event(s, q, &ev);
        /* drop what went out from the held buffer (after the event: its text points there) */
        if (q->held) {
            memmove(q->held, q->held + elen, q->held_len - elen);
            q->held_len -= elen;
        }
        if (send_rc && q->client_len) {
            g4_log_info("sched", "client of request %llu is gone: cancelled", (unsigned long long)q->client_req_id);
            q->finish = "cancelled";
            s_req_free(s, q);
            return;
        }
        q->n_detok_done = gi + 1;
        if (q->stop_hit) {
            /* a stop string matched: it and everything after it are dropped */
            q->held_len = 0;
            q->n_tok = q->n_prompt + gi + 1;
            s_done(s, q);
            return;
        }
    }
    if (q->finish && q->n_detok_done >= q->n_tok - q->n_prompt) {
        s_done(s, q);
        return;
    }
    s_send_detok(s, q);
}

static void s_started(sched_t *s, req_t *q)
{
    q->state = R_QUEUED;
    if (q->resume) {
        /* the ids a lost scheduler generated follow the prompt: fed again like
         * a request parked after a lost stage (the rows from the last prompt
         * row on are sampled with the same draws and checked), not sent again */
        int32_t *nt = g4_realloc(q->tok, (size_t)(q->n_tok + q->n_quiet + 64) * sizeof *nt);
        if (!nt) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
        memcpy(nt + q->n_tok, q->resume, (size_t)q->n_quiet * sizeof *nt);
        q->tok = nt, q->n_tok += q->n_quiet, q->cap_tok = q->n_tok + 64;
        g4_free(q->resume);
        q->resume = NULL;
        g4_log_info("sched", "request %llu resumes a lost scheduler's: %d prompt + %d generated ids",
                    (unsigned long long)q->client_req_id, q->n_prompt, q->n_quiet);
    }
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Started st = G4__V1__STARTED__INIT;
    st.prompt_ids = q->tok, st.n_prompt_ids = (size_t)q->n_prompt;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_STARTED;
    ev.started = &st;
    s_send_event(s, q, &ev);
}

/* the newest ready encoder (a swapped-in one takes over) */
static int s_encoder(sched_t *s)
{
    int best = -1;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_ENCODER && s->d[i].sock &&
            (best < 0 || s->d[i].registered_ms >= s->d[best].registered_ms))
            best = i;
    return best;
}

/* the prompt's ids are known: encode its media, or queue it */
static void s_send_media(sched_t *s, req_t *q);

static void s_prompt_ready(sched_t *s, req_t *q)
{
    if (!q->n_media) return s_started(s, q);
    /* the placeholder ids of the tokenizer that made these ids */
    const int ti = s_tokenizer(s);
    if (ti < 0) return s_fail(s, q, G4_ERR_UNAVAILABLE, "no tokenizer is running");
    memcpy(q->mid, s->d[ti].media_ids, sizeof q->mid);
    int kind[MAX_MEDIA], n_img = 0, n_aud = 0;
    for (int i = 0; i < q->n_media; i++) {
        kind[i] = q->media[i].kind; /* G4__V1__MEDIA_KIND__MEDIA_* == G4_MEDIA_* */
        n_img += kind[i] == G4_MEDIA_IMAGE, n_aud += kind[i] == G4_MEDIA_AUDIO;
    }
    g4_err_t err;
    if (g4_media_check(q->tok, q->n_prompt, q->mid, kind, q->n_media, &err)) return s_fail(s, q, err.code, "%s", err.msg);
    q->state = R_ENCODING;
    q->n_encoded = q->n_enc_sent = 0;
    s_send_media(s, q);
}

/* Sends the request's media that have no embeddings yet to the newest encoder
 * (again after an encoder was lost: the embeddings received are kept). */
static void s_send_media(sched_t *s, req_t *q)
{
    int n_img = 0, n_aud = 0;
    for (int i = 0; i < q->n_media; i++)
        if (!q->media[i].emb) n_img += q->media[i].kind == G4_MEDIA_IMAGE, n_aud += q->media[i].kind == G4_MEDIA_AUDIO;
    g4_err_t err;
    const int e = s_encoder(s);
    if (e < 0) {
        if (!q->call_lost) q->enc_rec = -1;
        return s_call_lost(q, CALL_ENCODE); /* none yet, or one being restarted */
    }
    if ((n_img && !s->d[e].has_vision) || (n_aud && !s->d[e].has_audio))
        return s_fail(s, q, G4_ERR_RANGE, "encoder %s has no %s tower", s->d[e].name, n_img && !s->d[e].has_vision ? "vision" : "audio");
    q->enc_rec = e;
    q->call_lost = 0, q->lost_ms = 0;
    q->n_enc_sent = q->n_encoded;
    for (int i = 0; i < q->n_media; i++) {
        if (q->media[i].emb) continue;
        G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
        G4__V1__Header h = G4__V1__HEADER__INIT;
        G4__V1__EncodeRequest er = G4__V1__ENCODE_REQUEST__INIT;
        h.request_id = q->id * 64 + (uint64_t)i;
        env.header = &h;
        er.kind = q->media[i].kind;
        er.image_min_tokens = q->media[i].min_tokens, er.image_max_tokens = q->media[i].max_tokens;
        env.body_case = G4__V1__ENVELOPE__BODY_ENCODE;
        env.encode = &er;
        const void *raw[1] = {q->media[i].data};
        size_t raw_len[1] = {q->media[i].len};
        if (g4_wire_send(s->d[e].sock, NULL, 0, &env, raw, raw_len, 1, 1, &err))
            return s_call_lost(q, CALL_ENCODE);
        s->d[e].outstanding++;
        q->n_enc_sent++;
    }
}

/* every medium is encoded: replace each placeholder by <|image> N soft tokens <image|> */
static void s_splice(sched_t *s, req_t *q)
{
    int kind[MAX_MEDIA], n_tok[MAX_MEDIA], order[MAX_MEDIA], n = q->n_prompt, n_rows = 0;
    const int H = q->media[0].n_embd;
    for (int i = 0; i < q->n_media; i++) {
        if (q->media[i].n_embd != H) return s_fail(s, q, G4_ERR_FORMAT, "media embeddings of different widths");
        kind[i] = q->media[i].kind, n_tok[i] = q->media[i].n_tokens;
        n += n_tok[i] + 1, n_rows += n_tok[i];
    }
    int32_t *tok = g4_malloc((size_t)(n + 64) * sizeof *tok);
    int8_t *fl = g4_malloc((size_t)n);
    float *embd = g4_malloc((size_t)n_rows * H * sizeof(float));
    g4_err_t err;
    const int k = tok && fl && embd ? g4_media_splice(q->tok, q->n_prompt, q->mid, kind, n_tok, q->n_media,
                                                      g4_media_bidir(H), tok, fl, order, &err)
                                    : g4_err_set(&err, G4_ERR_NOMEM, "out of memory");
    if (k < 0) {
        g4_free(tok), g4_free(fl), g4_free(embd);
        return s_fail(s, q, err.code, "%s", err.msg);
    }
    /* soft-token rows in prompt order: the media in placeholder order */
    for (int j = 0, r = 0; j < q->n_media; r += q->media[order[j]].n_tokens, j++)
        memcpy(embd + (size_t)r * H, q->media[order[j]].emb, (size_t)q->media[order[j]].n_tokens * H * sizeof(float));
    g4_free(q->tok);
    q->tok = tok, q->n_tok = q->n_prompt = k, q->cap_tok = n + 64;
    q->rflag = fl, q->embd = embd, q->n_embd = H;
    for (int i = 0; i < q->n_media; i++) {
        g4_free(q->media[i].data), g4_free(q->media[i].emb);
        q->media[i].data = NULL, q->media[i].emb = NULL;
    }
    s_started(s, q);
}

static void s_on_encoder_reply(sched_t *s, int ei, g4_msg_t *m)
{
    if (s->d[ei].outstanding > 0) s->d[ei].outstanding--;
    const uint64_t cid = m->env->header ? m->env->header->request_id : 0;
    req_t *q = NULL;
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state == R_ENCODING && s->r[i].id == cid / 64) q = &s->r[i];
    const int mi = (int)(cid % 64);
    if (!q || mi >= q->n_media || q->media[mi].emb) return;
    G4__V1__Envelope *e = m->env;
    if (e->body_case == G4__V1__ENVELOPE__BODY_ERROR)
        return s_fail(s, q, g4_wire_g4code((int)e->error->code), "medium %d: %s", mi + 1, e->error->message);
    size_t len = 0;
    const void *raw = g4_msg_raw(m, 0, &len);
    G4__V1__EncodeReply *r = e->encode_reply;
    if (e->body_case != G4__V1__ENVELOPE__BODY_ENCODE_REPLY || !r || r->n_tokens <= 0 || r->n_embd <= 0 || !raw ||
        len != (size_t)r->n_tokens * r->n_embd * sizeof(float))
        return s_fail(s, q, G4_ERR_PROTO, "malformed reply from encoder %s", s->d[ei].name);
    q->media[mi].emb = g4_malloc(len);
    if (!q->media[mi].emb) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
    memcpy(q->media[mi].emb, raw, len);
    q->media[mi].n_tokens = r->n_tokens, q->media[mi].n_embd = r->n_embd;
    if (++q->n_encoded == q->n_media) s_splice(s, q);
}

static void s_on_tokenizer_reply(sched_t *s, int ti, g4_msg_t *m)
{
    if (s->d[ti].outstanding > 0) s->d[ti].outstanding--;
    const uint64_t cid = m->env->header->request_id;
    req_t *q = NULL;
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state != R_FREE && s->r[i].id == cid / 4) q = &s->r[i];
    if (!q || q->state == R_FINISHING) {
        if (q && q->detok_tok == ti) q->detok_tok = -1;
        return;
    }
    q->detok_tok = -1;
    const int kind = (int)(cid % 4);
    G4__V1__Envelope *e = m->env;
    if (q->finish && kind != CALL_DETOK) { /* cancelled while being tokenized */
        s_done(s, q);
        return;
    }
    if (e->body_case == G4__V1__ENVELOPE__BODY_ERROR) {
        s_fail(s, q, g4_wire_g4code((int)e->error->code), "tokenizer: %s", e->error->message);
        return;
    }
    if (kind == CALL_RENDER && e->body_case == G4__V1__ENVELOPE__BODY_RENDER_CHAT_REPLY) {
        /* the rendered prompt starts with the BOS text; the tokenizer adds BOS itself */
        const uint8_t *p = e->render_chat_reply->prompt.data;
        size_t n = e->render_chat_reply->prompt.len;
        if (n >= 5 && !memcmp(p, "<bos>", 5)) p += 5, n -= 5;
        s_tokenize(s, q, p, n, 1);
    } else if (kind == CALL_TOKENIZE && e->body_case == G4__V1__ENVELOPE__BODY_TOKENIZE_REPLY) {
        G4__V1__TokenizeReply *t = e->tokenize_reply;
        q->tok = g4_malloc((t->n_ids + 64) * sizeof *q->tok);
        if (!q->tok) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
        memcpy(q->tok, t->ids, t->n_ids * sizeof *q->tok);
        q->n_tok = q->n_prompt = (int)t->n_ids;
        q->cap_tok = (int)t->n_ids + 64;
        if (!q->n_tok) return s_fail(s, q, G4_ERR_RANGE, "the prompt is empty");
        s_prompt_ready(s, q);
    } else if (kind == CALL_DETOK && e->body_case == G4__V1__ENVELOPE__BODY_DETOKENIZE_REPLY) {
        s_on_detok(s, q, e->detokenize_reply);
    } else {
        s_fail(s, q, G4_ERR_PROTO, "unexpected reply from the tokenizer");
    }
}

/* ---- client requests ------------------------------------------------------------------ */

static req_t *s_new_req(sched_t *s)
{
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state == R_FREE) return &s->r[i];
    if (s->n_r == s->cap_r) {
        int cap = s->cap_r ? s->cap_r * 2 : 64;
        req_t *nr = g4_realloc(s->r, (size_t)cap * sizeof *nr);
        if (!nr) return NULL;
        s->r = nr, s->cap_r = cap;
    }
    req_t *q = &s->r[s->n_r++];
    memset(q, 0, sizeof *q);
    q->slot = -1;
    q->detok_tok = -1;
    return q;
}

static int s_active(sched_t *s)
{
    int n = 0;
    for (int i = 0; i < s->n_r; i++) n += s->r[i].state != R_FREE;
    return n;
}

static void s_generate(sched_t *s, g4_msg_t *m)
{
    G4__V1__GenerateRequest *g = m->env->generate;
    const uint64_t rid = m->env->header->request_id;
    if (s->draining) {
        g4_wire_send_error(s->router, m->route, m->route_len, rid, G4_ERR_UNAVAILABLE, "the scheduler is shutting down");
        return;
    }
    if (s_active(s) >= s->p.max_queue) {
        g4_wire_send_error(s->router, m->route, m->route_len, rid, G4_ERR_AGAIN, "too many requests (%d queued)",
                           s->p.max_queue);
        return;
    }
    req_t *q = s_new_req(s);
    if (!q) {
        g4_wire_send_error(s->router, m->route, m->route_len, rid, G4_ERR_NOMEM, "out of memory");
        return;
    }
    q->id = ++s->next_id;
    q->client_req_id = rid;
    memcpy(q->client, m->route, m->route_len);
    q->client_len = m->route_len;
    q->t_arrive = q->last_event_ms = s_now();
    q->deadline_ms = m->env->header->deadline_ms ? q->t_arrive + m->env->header->deadline_ms : 0;
    if (g->sampling) {
        q->sp = *g->sampling;
        q->sp.base.descriptor = &g4__v1__sampling_params__descriptor;
    } else {
        G4__V1__SamplingParams d = G4__V1__SAMPLING_PARAMS__INIT;
        d.temperature = 0;
        q->sp = d;
    }
    if (q->sp.logprobs < 0) q->sp.logprobs = 0;
    if (q->sp.logprobs > 64) q->sp.logprobs = 64;
    q->max_tokens = g->max_tokens;
    q->ignore_eos = g->ignore_eos;
    if (g->n_stop) {
        q->stop = g4_calloc(g->n_stop, sizeof *q->stop);
        q->stop_len = g4_calloc(g->n_stop, sizeof *q->stop_len);
        for (size_t i = 0; q->stop && q->stop_len && i < g->n_stop; i++)
            if (g->stop[i].len) {
                q->stop[q->n_stop] = g4_strndup((const char *)g->stop[i].data, g->stop[i].len);
                q->stop_len[q->n_stop++] = g->stop[i].len;
            }
    }
    if (g->n_resume_ids) { /* a lost scheduler's request: they follow the prompt (s_started) */
        q->resume = g4_malloc(g->n_resume_ids * sizeof *q->resume);
        if (!q->resume) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
        memcpy(q->resume, g->resume_ids, g->n_resume_ids * sizeof *q->resume);
        q->n_quiet = (int)g->n_resume_ids;
    }
    if (g->n_media > MAX_MEDIA) return s_fail(s, q, G4_ERR_RANGE, "more than %d media in one request", MAX_MEDIA);
    if (g->n_media) {
        q->media = g4_calloc(g->n_media, sizeof *q->media);
        if (!q->media) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
        for (size_t i = 0; i < g->n_media; i++) {
            G4__V1__Media *md = g->media[i];
            media_t *mm = &q->media[q->n_media++];
            mm->kind = md ? md->kind : 0;
            if (!md || (md->kind != G4__V1__MEDIA_KIND__MEDIA_IMAGE && md->kind != G4__V1__MEDIA_KIND__MEDIA_AUDIO))
                return s_fail(s, q, G4_ERR_RANGE, "medium %zu has no kind (image or audio)", i + 1);
            if (!md->data.len) return s_fail(s, q, G4_ERR_FORMAT, "medium %zu is empty", i + 1);
            mm->data = g4_malloc(md->data.len);
            if (!mm->data) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
            memcpy(mm->data, md->data.data, md->data.len);
            mm->len = md->data.len;
            mm->min_tokens = md->image_min_tokens, mm->max_tokens = md->image_max_tokens;
        }
    }
    switch (g->prompt_case) {
    case G4__V1__GENERATE_REQUEST__PROMPT_IDS: {
        G4__V1__PromptIds *p = g->ids;
        if (!p || !p->n_ids) return s_fail(s, q, G4_ERR_RANGE, "the prompt is empty");
        q->tok = g4_malloc((p->n_ids + 64) * sizeof *q->tok);
        if (!q->tok) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
        memcpy(q->tok, p->ids, p->n_ids * sizeof *q->tok);
        q->n_tok = q->n_prompt = (int)p->n_ids;
        q->cap_tok = (int)p->n_ids + 64;
        s_prompt_ready(s, q);
        break;
    }
    case G4__V1__GENERATE_REQUEST__PROMPT_TEXT:
        s_tokenize(s, q, g->text.data, g->text.len, 1);
        break;
    case G4__V1__GENERATE_REQUEST__PROMPT_CHAT_JSON:
        q->chat_json = g4_strndup(g->chat_json ? g->chat_json : "", g->chat_json ? strlen(g->chat_json) : 0);
        if (!q->chat_json) return s_fail(s, q, G4_ERR_NOMEM, "out of memory");
        s_render(s, q);
        break;
    default:
        s_fail(s, q, G4_ERR_PROTO, "the request has no prompt");
    }
}

static void s_cancel(sched_t *s, g4_msg_t *m)
{
    const uint64_t rid = m->env->header->request_id;
    for (int i = 0; i < s->n_r; i++) {
        req_t *q = &s->r[i];
        if (q->state == R_FREE || q->state == R_FINISHING || q->client_req_id != rid || q->client_len != m->route_len ||
            memcmp(q->client, m->route, m->route_len))
            continue;
        q->finish = "cancelled";
        if (q->detok_tok < 0 && q->n_tok >= q->n_prompt) {
            q->n_tok = q->n_prompt + q->n_detok_done;
            s_done(s, q);
        }
    }
}

static void s_status(sched_t *s, g4_msg_t *m)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    G4__V1__StatusReply rep = G4__V1__STATUS_REPLY__INIT;
    G4__V1__DaemonStatus ds[MAX_DAEMONS], *dp[MAX_DAEMONS];
    G4__V1__Work wk[MAX_DAEMONS];
    G4__V1__Counter cs[MAX_DAEMONS][16], *cp[MAX_DAEMONS][16];
    const uint64_t now = s_now();
    size_t n = 0;
    for (int i = 0; i < MAX_DAEMONS; i++) {
        drec_t *d = &s->d[i];
        if (d->state == D_FREE) continue;
        g4__v1__daemon_status__init(&ds[n]);
        ds[n].role = d->role;
        ds[n].name = d->name, ds[n].pid = d->pid, ds[n].endpoint = d->endpoint;
        ds[n].layer_begin = d->layer_begin, ds[n].layer_end = d->layer_end;
        int in_chain = 0, tok_new = s_tokenizer(s) == i;
        for (int c = 0; c < s->n_chain; c++) in_chain |= s->chain[c] == i;
        uint32_t fl = 0;
        for (int b = 0; b < s->n_b; b++) fl += (s->b[b].stages >> i) & 1;
        if (d->role != G4__V1__ROLE__ROLE_SHARD) fl = (uint32_t)d->outstanding;
        for (int c = 0; c < d->n_counters; c++) {
            g4__v1__counter__init(&cs[n][c]);
            cs[n][c].name = d->counter_names[c], cs[n][c].value = d->counter_values[c];
            cp[n][c] = &cs[n][c];
        }
        ds[n].counters = cp[n], ds[n].n_counters = (size_t)d->n_counters;
        ds[n].in_flight = fl;
        ds[n].state = d->state == D_GONE ? "gone"
                      : d->state == D_DRAINING ? "draining"
                      : (d->role == G4__V1__ROLE__ROLE_SHARD && !in_chain) ||
                                (d->role == G4__V1__ROLE__ROLE_TOKENIZER && !tok_new)
                          ? "standby"
                          : "ready";
        ds[n].uptime_s = (double)(now - d->registered_ms) / 1000.0;
        g4__v1__work__init(&wk[n]);
        if (d->work.base.descriptor) wk[n] = d->work; /* (zero until the first heartbeat) */
        if (wk[n].batch_id) wk[n].elapsed_ms += now - d->last_seen_ms;
        ds[n].work = &wk[n];
        ds[n].activity = d->state == D_GONE ? "" : d->stuck ? "stuck" : d->work.batch_id ? "busy" : "idle";
        ds[n].last_seen_ms = (double)(now - d->last_seen_ms);
        ds[n].restarts = d->restarts;
        ds[n].model = d->model, ds[n].backend = d->backend, ds[n].host = d->host;
        dp[n] = &ds[n];
        n++;
    }
    rep.daemons = dp, rep.n_daemons = n;
    rep.ready = s->n_chain > 0 && s_tokenizer(s) >= 0;
    int act = 0, que = 0;
    for (int i = 0; i < s->n_r; i++) {
        act += s->r[i].state == R_RUNNING;
        que += s->r[i].state == R_QUEUED || s->r[i].state == R_CHAT || s->r[i].state == R_TOKENIZE ||
               s->r[i].state == R_ENCODING;
    }
    rep.active_requests = act, rep.queued_requests = que;
    rep.model = s->model, rep.n_layer = s->n_layer;
    rep.requests_done = s->n_done, rep.requests_failed = s->n_failed;
    rep.requests_migrated = s->n_migrated;
    h.request_id = m->env->header->request_id;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_STATUS_REPLY;
    env.status_reply = &rep;
    g4_err_t err;
    g4_wire_send(s->router, m->route, m->route_len, &env, NULL, NULL, 0, 1, &err);
}

/* The stuck threshold of a stage: long above any batch it has run. */
static uint64_t s_stuck_after(const sched_t *s, const drec_t *d)
{
    const uint64_t k = 20 * d->work.last_batch_ms;
    return k > (uint64_t)s->p.stuck_after_ms ? k : (uint64_t)s->p.stuck_after_ms;
}

static void s_heartbeat(sched_t *s, drec_t *d, const G4__V1__Heartbeat *hb)
{
    const uint64_t now = s_now();
    d->last_seen_ms = now;
    d->n_counters = 0;
    for (size_t c = 0; c < hb->n_counters && c < 16; c++)
        if (hb->counters[c] && hb->counters[c]->name) {
            snprintf(d->counter_names[d->n_counters], sizeof d->counter_names[0], "%s", hb->counters[c]->name);
            d->counter_values[d->n_counters++] = hb->counters[c]->value;
        }
    G4__V1__Work w = G4__V1__WORK__INIT;
    if (hb->work) w = *hb->work;
    if (w.progress != d->work.progress || !w.batch_id || !d->progress_ms) d->progress_ms = now;
    d->work = w;
    if (d->stuck && now - d->progress_ms < s_stuck_after(s, d)) {
        d->stuck = 0;
        g4_log_info("sched", "%s makes progress again", d->name);
    }
}

/* Stages busy without progress for their stuck threshold are reported (not
 * failed: a slow stage is not a dead one; a dead one stops heartbeating). */
static void s_check_stuck(sched_t *s, drec_t *d, uint64_t now)
{
    if (d->stuck || !d->work.batch_id || now - d->progress_ms < s_stuck_after(s, d)) return;
    d->stuck = 1;
    g4_log_warn("sched", "%s is stuck: batch %llu (%u rows) has made no progress for %.0f s (layer %u of %u)", d->name,
                (unsigned long long)d->work.batch_id, d->work.rows, (now - d->progress_ms) / 1000.0, d->work.steps_done,
                d->work.steps_total);
}

static void s_on_router(sched_t *s)
{
    for (int k = 0; k < 512; k++) {
        g4_msg_t m;
        g4_err_t err;
        int rc = g4_wire_recv(s->router, 1, &m, -1, &err);
        if (rc == G4_ERR_TIMEOUT) break;
        if (rc) {
            if (m.route_len)
                g4_wire_send_error(s->router, m.route, m.route_len, m.env && m.env->header ? m.env->header->request_id : 0,
                                   rc, "%s", err.msg);
            g4_msg_close(&m);
            continue;
        }
        switch (m.env->body_case) {
        case G4__V1__ENVELOPE__BODY_GENERATE: s_generate(s, &m); break;
        case G4__V1__ENVELOPE__BODY_CANCEL: s_cancel(s, &m); break;
        case G4__V1__ENVELOPE__BODY_STATUS: s_status(s, &m); break;
        case G4__V1__ENVELOPE__BODY_REGISTER: s_register(s, &m); break;
        case G4__V1__ENVELOPE__BODY_HEARTBEAT: {
            int i = m.env->heartbeat->name ? s_find_daemon(s, m.env->heartbeat->name) : -1;
            if (i >= 0 && s->d[i].state != D_GONE && s->d[i].route_len == m.route_len &&
                !memcmp(s->d[i].route, m.route, m.route_len)) {
                s_heartbeat(s, &s->d[i], m.env->heartbeat);
            } else { /* we do not know it (we restarted, or declared it gone): ask it to register */
                G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
                G4__V1__RegisterReply rep = G4__V1__REGISTER_REPLY__INIT;
                rep.accepted = 0, rep.reason = "unknown: register again";
                env.body_case = G4__V1__ENVELOPE__BODY_REGISTER_REPLY;
                env.register_reply = &rep;
                g4_wire_send(s->router, m.route, m.route_len, &env, NULL, NULL, 0, 1, &err);
            }
            break;
        }
        default:
            g4_wire_send_error(s->router, m.route, m.route_len, m.env->header->request_id, G4_ERR_PROTO,
                               "schedulerd does not serve this message");
        }
        g4_msg_close(&m);
    }
}

/* ---- batches ----------------------------------------------------------------------------- */

static int s_push_tok(req_t *q, int32_t id)
{
    if (q->n_tok == q->cap_tok) {
        int cap = q->cap_tok * 2 + 16;
        int32_t *nt = g4_realloc(q->tok, (size_t)cap * sizeof *nt);
        if (!nt) return -1;
        q->tok = nt, q->cap_tok = cap;
    }
    q->tok[q->n_tok++] = id;
    return 0;
}

static void s_on_result(sched_t *s, g4_msg_t *m)
{
    G4__V1__ForwardResult *r = m->env->forward_result;
    int bi = -1;
    for (int i = 0; i < s->n_b; i++)
        if (s->b[i].id == r->batch_id) bi = i;
    if (bi < 0) return; /* a batch of a pipeline that is gone */
    batch_t b = s->b[bi];
    s->b[bi] = s->b[--s->n_b];
    if (r->error) {
        g4_free(b.first_pos), g4_free(b.sample_pos);
        char msg[G4_ERR_MSG_MAX];
        snprintf(msg, sizeof msg, "%s", r->error->message ? r->error->message : "forward failed");
        for (int i = 0; i < b.n_req; i++) {
            req_t *q = &s->r[b.reqs[i]];
            q->in_flight = 0;
            if (q->state == R_FINISHING) s_req_free(s, q);
            else if (q->state == R_RUNNING) s_fail(s, q, g4_wire_g4code((int)r->error->code), "%s", msg);
        }
        g4_free(b.reqs), g4_free(b.rows_fed);
        return;
    }
    int *seen = g4_calloc((size_t)b.n_req + 1, sizeof *seen);
    for (int i = 0; i < b.n_req; i++) {
        req_t *q = &s->r[b.reqs[i]];
        q->in_flight = 0;
        if (q->replay) { /* the pipeline changed while this batch was out: start over */
            q->n_fed = 0;
            q->replay = 0;
            b.rows_fed[i] = -1;
        } else {
            q->n_fed += b.rows_fed[i];
        }
        if (q->state == R_FINISHING) s_req_free(s, q);
    }
    for (size_t t = 0; t < r->n_tokens; t++) {
        G4__V1__SampledToken *st = r->tokens[t];
        req_t *q = NULL;
        int qi = -1;
        for (int i = 0; i < b.n_req; i++)
            if (s->r[b.reqs[i]].slot == (int)st->slot && s->r[b.reqs[i]].state == R_RUNNING) q = &s->r[b.reqs[i]], qi = i;
        if (!q || q->finish || !seen || b.rows_fed[qi] < 0) continue;
        /* the sample of the row at position p predicts token p + 1; rows
         * replayed after a pipeline change predict tokens already known */
        const int pos = b.sample_pos[qi] + seen[qi]++;
        if (pos + 1 < q->n_tok) {
            if (q->tok[pos + 1] != st->id)
                g4_log_warn("sched", "request %llu: replay sampled %d at position %d where %d was sampled before",
                            (unsigned long long)q->client_req_id, st->id, pos + 1, q->tok[pos + 1]);
            continue;
        }
        if (!q->t_first) q->t_first = s_now();
        if (s_push_tok(q, st->id)) {
            s_fail(s, q, G4_ERR_NOMEM, "out of memory");
            continue;
        }
        const int n_gen = q->n_tok - q->n_prompt;
        if (q->sp.logprobs > 0) {
            if (n_gen * q->sp.logprobs > q->cap_tops) {
                int cap = (n_gen * 2 + 16) * q->sp.logprobs;
                G4__V1__TopLogprob *nt = g4_realloc(q->tops, (size_t)cap * sizeof *nt);
                if (nt) q->tops = nt, q->cap_tops = cap;
            }
            if (q->tops && n_gen * q->sp.logprobs <= q->cap_tops)
                for (int k = 0; k < q->sp.logprobs; k++) {
                    G4__V1__TopLogprob *tl = &q->tops[(size_t)(n_gen - 1) * (size_t)q->sp.logprobs + (size_t)k];
                    g4__v1__top_logprob__init(tl);
                    if ((size_t)k < st->n_top) tl->id = st->top[k]->id, tl->logprob = st->top[k]->logprob;
                }
        }
        if (st->eog && !q->ignore_eos) q->finish = "stop";
        else if (q->max_tokens > 0 && n_gen >= q->max_tokens) q->finish = "length";
        else if (s->n_ctx > 0 && q->n_tok >= s->n_ctx) q->finish = "length"; /* the context is full */
        s_send_detok(s, q);
    }
    g4_free(seen);
    g4_free(b.reqs), g4_free(b.rows_fed), g4_free(b.first_pos), g4_free(b.sample_pos);
}

static int s_slot_alloc(sched_t *s)
{
    for (int i = 0; i < s->n_slots; i++)
        if (!s->slot_used[i]) {
            s->slot_used[i] = 1;
            return i;
        }
    return -1;
}

static void s_schedule(sched_t *s)
{
    if (!s->n_chain) return;
    /* admit queued requests into free slots, oldest first */
    for (;;) {
        req_t *oldest = NULL;
        for (int i = 0; i < s->n_r; i++)
            if (s->r[i].state == R_QUEUED && (!oldest || s->r[i].id < oldest->id)) oldest = &s->r[i];
        if (!oldest) break;
        if (s->n_ctx > 0 && oldest->n_tok >= s->n_ctx) {
            s_fail(s, oldest, G4_ERR_RANGE, "the prompt has %d tokens; the context holds %d", oldest->n_tok, s->n_ctx);
            continue;
        }
        int sl = s_slot_alloc(s);
        if (sl < 0) break;
        oldest->slot = sl;
        oldest->state = R_RUNNING;
        oldest->t_start = s_now();
    }
    int n_running = 0;
    for (int i = 0; i < s->n_r; i++) n_running += s->r[i].state == R_RUNNING && !s->r[i].finish;
    const int max_seqs = n_running ? (n_running + s->n_chain - 1) / s->n_chain : 1;
    while (s->n_b < s->n_chain && s->n_b < MAX_BATCHES) {
        if (s->bt_cap_r < s->n_r + 1) {
            G4__V1__SeqParams *nsp = g4_realloc(s->bt_sps, (size_t)(s->n_r + 1) * sizeof *nsp);
            if (nsp) s->bt_sps = nsp;
            G4__V1__SeqParams **npp = g4_realloc(s->bt_spp, (size_t)(s->n_r + 1) * sizeof *npp);
            if (npp) s->bt_spp = npp;
            if (!nsp || !npp) return;
            s->bt_cap_r = s->n_r + 1;
        }
        int32_t *tokens = s->bt_tok, *pos = s->bt_pos;
        uint32_t *slot = s->bt_slot, *srows = s->bt_srows;
        int8_t *rflags = s->bt_flags;
        G4__V1__SeqParams *sps = s->bt_sps, **spp = s->bt_spp;
        /* the batch record keeps these until its result comes back */
        int *reqs = g4_malloc((size_t)(s->n_r + 1) * sizeof *reqs), *fed = g4_malloc((size_t)(s->n_r + 1) * sizeof *fed);
        int *fpos = g4_malloc((size_t)(s->n_r + 1) * sizeof *fpos), *spos_v = g4_malloc((size_t)(s->n_r + 1) * sizeof *spos_v);
        if (!reqs || !fed || !fpos || !spos_v) {
            g4_free(reqs), g4_free(fed), g4_free(fpos), g4_free(spos_v);
            return;
        }
        int rows = 0, n_req = 0, n_s = 0, n_p = 0, n_erows = 0, n_embd_h = 0, any_flag = 0;
        memset(rflags, 0, (size_t)s->p.n_ubatch);
        for (int k = 0; k < s->n_r && n_req < max_seqs; k++) {
            const int i = (s->rr + k) % s->n_r;
            req_t *q = &s->r[i];
            if (q->state != R_RUNNING || q->in_flight || q->finish) continue;
            if (q->n_fed >= q->n_tok) continue;
            if (q->parked_ms) { /* a parked request goes on on the new pipeline */
                g4_log_info("sched", "request %llu resumes after %.1f s: %d tokens fed again",
                            (unsigned long long)q->client_req_id, (s_now() - q->parked_ms) / 1000.0, q->n_tok);
                q->parked_ms = 0;
                s->n_migrated++;
            }
            /* rows in the chunks the request was first fed in: the prompt in
             * pieces of n_ubatch; generated tokens one per step, or up to 63
             * when replayed (fewer than 64 rows of one sequence use the same
             * attention kernel as one row, so the numbers are the same) */
            int need;
            if (q->n_fed < q->n_prompt) need = g4_prefill_chunk(q->rflag, q->n_fed, q->n_prompt, s->p.n_ubatch);
            else need = q->n_tok - q->n_fed < 63 ? q->n_tok - q->n_fed : 63;
            if (rows + need > s->p.n_ubatch) continue;
            int spos = -1;
            if (q->rflag && q->n_fed < q->n_prompt) {
                /* soft-token rows: flags, and their embeddings (prompt order) into the frame */
                int e0 = 0, ne = 0;
                for (int p = 0; p < q->n_fed; p++) e0 += (q->rflag[p] & ROW_EMBD) != 0;
                for (int j = 0; j < need && q->n_fed + j < q->n_prompt; j++) ne += (q->rflag[q->n_fed + j] & ROW_EMBD) != 0;
                if (ne) {
                    if (n_embd_h && n_embd_h != q->n_embd) continue; /* (one width per model) */
                    const size_t want_f = (size_t)(n_erows + ne) * q->n_embd;
                    if (want_f > s->bt_embd_cap) {
                        float *nb = g4_realloc(s->bt_embd, want_f * sizeof(float));
                        if (!nb) continue;
                        s->bt_embd = nb, s->bt_embd_cap = want_f;
                    }
                    memcpy(s->bt_embd + (size_t)n_erows * q->n_embd, q->embd + (size_t)e0 * q->n_embd,
                           (size_t)ne * q->n_embd * sizeof(float));
                    n_erows += ne, n_embd_h = q->n_embd;
                }
                for (int j = 0; j < need && q->n_fed + j < q->n_prompt; j++) rflags[rows + j] = q->rflag[q->n_fed + j];
                any_flag = 1;
            }
            for (int j = 0; j < need; j++) {
                const int p = q->n_fed + j;
                tokens[rows + j] = q->tok[p];
                pos[rows + j] = p;
                slot[rows + j] = (uint32_t)q->slot;
                if (p >= q->n_prompt - 1) { /* every row from the last prompt row on was sampled */
                    if (spos < 0) spos = p;
                    srows[n_s++] = (uint32_t)(rows + j);
                }
            }
            if (q->n_fed == 0) {
                g4__v1__seq_params__init(&sps[n_p]);
                sps[n_p].slot = (uint32_t)q->slot;
                sps[n_p].sampling = &q->sp;
                spp[n_p] = &sps[n_p];
                n_p++;
            }
            fpos[n_req] = q->n_fed, spos_v[n_req] = spos;
            rows += need;
            reqs[n_req] = i, fed[n_req] = need;
            n_req++;
            q->in_flight = s->next_batch + 1;
        }
        if (n_req) s->rr = (s->rr + 1) % (s->n_r ? s->n_r : 1);
        if (!rows) {
            g4_free(reqs), g4_free(fed), g4_free(fpos), g4_free(spos_v);
            return;
        }
        const uint64_t bid = ++s->next_batch;
        char *route[MAX_CHAIN + 1];
        for (int c = 1; c < s->n_chain; c++) route[c - 1] = s->d[s->chain[c]].endpoint;
        route[s->n_chain - 1] = s->results_ep;
        G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
        G4__V1__ForwardBatch fb = G4__V1__FORWARD_BATCH__INIT;
        fb.batch_id = bid;
        fb.epoch = s->epoch;
        fb.route = route, fb.n_route = (size_t)s->n_chain;
        fb.tokens = tokens, fb.n_tokens = (size_t)rows;
        fb.pos = pos, fb.n_pos = (size_t)rows;
        fb.slot = slot, fb.n_slot = (size_t)rows;
        fb.sample_rows = srows, fb.n_sample_rows = (size_t)n_s;
        fb.params = spp, fb.n_params = (size_t)n_p;
        /* a slot reused in this batch restarts at position 0 anyway; the rest are dropped */
        fb.release = s->release, fb.n_release = (size_t)s->n_release;
        G4__V1__TensorDesc ed = G4__V1__TENSOR_DESC__INIT;
        uint64_t eshape[2] = {(uint64_t)n_erows, (uint64_t)n_embd_h};
        const void *eraw[1] = {s->bt_embd};
        size_t eraw_len[1] = {(size_t)n_erows * n_embd_h * sizeof(float)};
        if (any_flag) {
            fb.row_flags.data = (uint8_t *)rflags, fb.row_flags.len = (size_t)rows;
            if (n_erows) {
                ed.dtype = G4__V1__DTYPE__DTYPE_F32, ed.shape = eshape, ed.n_shape = 2;
                fb.embd = &ed;
            }
        }
        env.body_case = G4__V1__ENVELOPE__BODY_FORWARD;
        env.forward = &fb;
        g4_err_t err;
        int rc = g4_wire_send(s->d[s->chain[0]].sock, NULL, 0, &env, n_erows ? eraw : NULL, n_erows ? eraw_len : NULL,
                              n_erows ? 1 : 0, 1, &err);
        if (!rc) s->n_release = 0;
        if (rc) {
            for (int i = 0; i < n_req; i++) {
                s->r[reqs[i]].in_flight = 0;
                s_fail(s, &s->r[reqs[i]], rc, "could not reach shard %s: %s", s->d[s->chain[0]].name, err.msg);
            }
            g4_free(reqs), g4_free(fed), g4_free(fpos), g4_free(spos_v);
            return;
        }
        batch_t *b = &s->b[s->n_b++];
        b->id = bid, b->n_req = n_req, b->reqs = reqs, b->rows_fed = fed, b->sent_ms = s_now(), b->frac = 0;
        b->first_pos = fpos, b->sample_pos = spos_v;
        b->stages = 0;
        for (int c = 0; c < s->n_chain; c++) b->stages |= 1ull << s->chain[c];
    }
}

/* ---- housekeeping -------------------------------------------------------------------------- */

/* How far batch b is through the layers, from what the stages of the chain
 * said they compute (monotonic: a batch between stages keeps its share). */
static double s_batch_frac(sched_t *s, batch_t *b)
{
    for (int c = 0; c < s->n_chain && s->n_layer > 0; c++) {
        const drec_t *d = &s->d[s->chain[c]];
        if (d->work.batch_id != b->id) continue;
        double in = d->work.steps_total ? (double)d->work.steps_done / d->work.steps_total : 0;
        double f = (d->layer_begin + in * (d->layer_end - d->layer_begin)) / s->n_layer;
        if (f > b->frac) b->frac = f;
    }
    return b->frac;
}

/* Prompt rows computed so far: whole chunks, plus the share of the chunk in flight. */
static void s_send_progress(sched_t *s, req_t *q, uint64_t now)
{
    double done = q->n_fed;
    for (int i = 0; i < s->n_b; i++) {
        if (s->b[i].id != q->in_flight) continue;
        for (int k = 0; k < s->b[i].n_req; k++)
            if (&s->r[s->b[i].reqs[k]] == q) done += s->b[i].rows_fed[k] * s_batch_frac(s, &s->b[i]);
    }
    G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
    G4__V1__Progress pr = G4__V1__PROGRESS__INIT;
    pr.prompt_done = (int32_t)done;
    pr.prompt_total = q->n_prompt;
    pr.elapsed_ms = q->t_start && now > q->t_start ? (double)(now - q->t_start) : 0;
    ev.event_case = G4__V1__GENERATE_EVENT__EVENT_PROGRESS;
    ev.progress = &pr;
    if (s_send_event(s, q, &ev) && q->client_len) {
        q->finish = "cancelled";
        s_req_free(s, q);
    }
}

/* "layers 3-6": the layers no ready shard covers from layer 0 on */
static void s_missing_layers(sched_t *s, char *buf, size_t size)
{
    int n_layer = s->n_layer;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].role == G4__V1__ROLE__ROLE_SHARD && s->d[i].state != D_FREE && s->d[i].n_layer > n_layer)
            n_layer = s->d[i].n_layer;
    size_t n = 0;
    buf[0] = 0;
    for (int l = 0; l < n_layer;) {
        int covered = 0;
        for (int i = 0; i < MAX_DAEMONS && !covered; i++)
            covered = s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_SHARD && s->d[i].layer_begin <= l &&
                      l < s->d[i].layer_end;
        if (covered) {
            l++;
            continue;
        }
        int e = l + 1;
        for (int stop = 0; e < n_layer && !stop; e += !stop) {
            for (int i = 0; i < MAX_DAEMONS && !stop; i++)
                stop = s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_SHARD && s->d[i].layer_begin <= e &&
                       e < s->d[i].layer_end;
        }
        n += (size_t)snprintf(buf + n, n < size ? size - n : 0, "%s%d-%d", n ? ", " : "layers ", l, e);
        l = e;
    }
    if (!n) snprintf(buf, size, "no layers");
}

/* Calls that lost their tokenizer / encoder go out again once there is one. */
static void s_retry_calls(sched_t *s, req_t *q)
{
    const int kind = q->call_lost;
    const uint64_t lost_ms = q->lost_ms;
    if (kind == CALL_ENCODE) return s_encoder(s) >= 0 ? s_send_media(s, q) : (void)0;
    if (s_tokenizer(s) < 0) return;
    if (kind == CALL_RENDER) s_render(s, q);
    else if (kind == CALL_TOKENIZE) s_tokenize(s, q, q->text_prompt, q->text_prompt_len, q->tok_add_bos);
    else if (kind == CALL_DETOK) s_send_detok(s, q);
    if (!q->call_lost) g4_log_info("sched", "request %llu: its %s call went to the new %s after %.1f s",
                                   (unsigned long long)q->client_req_id, kind == CALL_DETOK ? "detokenize" : "prompt",
                                   "tokenizer", (s_now() - lost_ms) / 1000.0);
}

static void s_timers(sched_t *s)
{
    const uint64_t now = s_now();
    for (int i = 0; i < MAX_DAEMONS; i++) {
        drec_t *d = &s->d[i];
        if ((d->state == D_READY || d->state == D_DRAINING) && now - d->last_seen_ms > (uint64_t)s->p.heartbeat_timeout_ms)
            s_daemon_gone(s, i, "stopped sending heartbeats");
        else if (d->state == D_READY || d->state == D_DRAINING)
            s_check_stuck(s, d, now);
    }
    for (int i = 0; i < s->n_r; i++) {
        req_t *q = &s->r[i];
        if (q->state == R_FREE || q->state == R_FINISHING) continue;
        if (q->deadline_ms && now > q->deadline_ms) {
            s_fail(s, q, G4_ERR_TIMEOUT, "deadline exceeded");
            continue;
        }
        const uint64_t wait_ms = (uint64_t)s->p.park_timeout_ms;
        if (q->call_lost) {
            s_retry_calls(s, q);
            if (q->state == R_FREE || q->state == R_FINISHING) continue;
            if (q->call_lost && now - q->lost_ms > wait_ms) {
                s_fail(s, q, G4_ERR_UNAVAILABLE, "no %s came back within %.0f s",
                       q->call_lost == CALL_ENCODE ? "encoder" : "tokenizer", wait_ms / 1000.0);
                continue;
            }
        }
        if ((q->state == R_QUEUED || (q->state == R_RUNNING && q->parked_ms)) && !s->n_chain && s->chain_lost_ms &&
            now - (q->parked_ms ? q->parked_ms : q->t_arrive) > wait_ms && now - s->chain_lost_ms > wait_ms) {
            char miss[256];
            s_missing_layers(s, miss, sizeof miss);
            s_fail(s, q, G4_ERR_UNAVAILABLE, "no shard came back for %s within %.0f s", miss, wait_ms / 1000.0);
            continue;
        }
        if (q->state == R_RUNNING && q->n_fed < q->n_prompt && !q->finish && now - q->last_event_ms >= PROGRESS_MS) {
            s_send_progress(s, q, now);
        } else if (now - q->last_event_ms >= KEEPALIVE_MS) {
            G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
            G4__V1__Keepalive ka = G4__V1__KEEPALIVE__INIT;
            ev.event_case = G4__V1__GENERATE_EVENT__EVENT_KEEPALIVE;
            ev.keepalive = &ka;
            if (s_send_event(s, q, &ev) && q->client_len) {
                q->finish = "cancelled";
                s_req_free(s, q);
            }
        }
    }
}

sched_t *sched_new(void *zctx, const sched_params_t *p, g4_err_t *err)
{
    sched_t *s = g4_calloc(1, sizeof *s);
    if (!s) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->p = *p;
    if (s->p.n_ubatch <= 0) s->p.n_ubatch = 512;
    if (s->p.max_queue <= 0) s->p.max_queue = 1024;
    if (s->p.heartbeat_timeout_ms <= 0) s->p.heartbeat_timeout_ms = 1500;
    if (s->p.stuck_after_ms <= 0) s->p.stuck_after_ms = 120000;
    if (s->p.park_timeout_ms <= 0) s->p.park_timeout_ms = 30000;
    s->zctx = zctx;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->epoch = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    /* batch ids unique across restarts: a result of a lost scheduler's batch
     * that reaches this one matches none of its own */
    s->next_batch = s->epoch << 16;
    const size_t U = (size_t)s->p.n_ubatch;
    s->bt_tok = g4_malloc(U * sizeof *s->bt_tok), s->bt_pos = g4_malloc(U * sizeof *s->bt_pos);
    s->bt_slot = g4_malloc(U * sizeof *s->bt_slot), s->bt_srows = g4_malloc(U * sizeof *s->bt_srows);
    s->bt_flags = g4_malloc(U);
    if (!s->bt_tok || !s->bt_pos || !s->bt_slot || !s->bt_srows || !s->bt_flags) {
        g4_err_set(err, G4_ERR_NOMEM, "out of memory");
        sched_free(&s);
        return NULL;
    }
    snprintf(s->results_ep, sizeof s->results_ep, "%s", p->results);
    s->router = g4_wire_socket(zctx, ZMQ_ROUTER, err);
    s->results = g4_wire_socket(zctx, ZMQ_PULL, err);
    if (!s->router || !s->results || g4_wire_bind(s->router, p->listen, err) || g4_wire_bind(s->results, p->results, err)) {
        sched_free(&s);
        return NULL;
    }
    return s;
}

void sched_free(sched_t **sp)
{
    sched_t *s = *sp;
    if (!s) return;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].sock) zmq_close(s->d[i].sock);
    for (int i = 0; i < s->n_r; i++)
        if (s->r[i].state != R_FREE) s->r[i].in_flight = 0, s_req_free(s, &s->r[i]);
    for (int i = 0; i < s->n_b; i++) g4_free(s->b[i].reqs), g4_free(s->b[i].rows_fed), g4_free(s->b[i].first_pos), g4_free(s->b[i].sample_pos);
    if (s->router) zmq_close(s->router);
    if (s->results) zmq_close(s->results);
    g4_free(s->r), g4_free(s->slot_used), g4_free(s->release);
    g4_free(s->bt_tok), g4_free(s->bt_pos), g4_free(s->bt_slot), g4_free(s->bt_srows), g4_free(s->bt_flags);
    g4_free(s->bt_embd), g4_free(s->bt_sps), g4_free(s->bt_spp);
    g4_free(s);
    *sp = NULL;
}

void sched_poll(sched_t *s, int timeout_ms)
{
    zmq_pollitem_t it[2 + MAX_DAEMONS];
    int map[2 + MAX_DAEMONS], n = 0;
    it[n] = (zmq_pollitem_t){s->router, 0, ZMQ_POLLIN, 0}, map[n++] = -1;
    it[n] = (zmq_pollitem_t){s->results, 0, ZMQ_POLLIN, 0}, map[n++] = -2;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].sock && s->d[i].role != G4__V1__ROLE__ROLE_SHARD && s->d[i].state != D_FREE)
            it[n] = (zmq_pollitem_t){s->d[i].sock, 0, ZMQ_POLLIN, 0}, map[n++] = i;
    int r = zmq_poll(it, n, timeout_ms);
    if (r > 0) {
        for (int k = 0; k < n; k++) {
            if (!(it[k].revents & ZMQ_POLLIN)) continue;
            if (map[k] == -1) {
                s_on_router(s);
            } else if (map[k] == -2) {
                for (int j = 0; j < 256; j++) {
                    g4_msg_t m;
                    g4_err_t err;
                    int rc = g4_wire_recv(s->results, 0, &m, -1, &err);
                    if (rc == G4_ERR_TIMEOUT) break;
                    if (rc == G4_OK && m.env->body_case == G4__V1__ENVELOPE__BODY_FORWARD_RESULT) s_on_result(s, &m);
                    else if (rc != G4_OK) g4_log_warn("sched", "result socket: %s", err.msg);
                    g4_msg_close(&m);
                }
            } else if (s->d[map[k]].sock) {
                for (int j = 0; j < 256 && s->d[map[k]].sock; j++) {
                    g4_msg_t m;
                    g4_err_t err;
                    int rc = g4_wire_recv(s->d[map[k]].sock, 0, &m, -1, &err);
                    if (rc == G4_ERR_TIMEOUT) break;
                    if (rc == G4_OK && s->d[map[k]].role == G4__V1__ROLE__ROLE_ENCODER) s_on_encoder_reply(s, map[k], &m);
                    else if (rc == G4_OK) s_on_tokenizer_reply(s, map[k], &m);
                    g4_msg_close(&m);
                }
            }
        }
    }
    s_timers(s);
    s_schedule(s);
}

int sched_drain(sched_t *s)
{
    s->draining = 1;
    int busy = 0;
    for (int i = 0; i < s->n_r; i++) busy |= s->r[i].state != R_FREE;
    if (busy && !s->n_chain) {
        /* nothing can finish them: fail what is left */
        for (int i = 0; i < s->n_r; i++)
            if (s->r[i].state != R_FREE && s->r[i].state != R_FINISHING)
                s_fail(s, &s->r[i], G4_ERR_UNAVAILABLE, "the scheduler is shutting down");
        return 1;
    }
    return !busy;
}
