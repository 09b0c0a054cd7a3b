/* sched_peers — the daemons schedulerd knows: shards, tokenizers, encoders.
 * Each registers (name, endpoint, role, layer range) and heartbeats (its
 * counters, and the Work it computes); one silent for heartbeat_timeout_ms is
 * gone. The pipeline is the chain of ready shards covering every layer; a
 * lost stage parks the running requests until a chain is whole again (a
 * restarted shard, a standby), a lost tokenizer's / encoder's calls go to the
 * next one. A busy stage without progress is reported stuck, never failed.
 *
 *   sched_peers_register       Register → a record, a PUSH / DEALER to it
 *   sched_peers_heartbeat      Heartbeat → liveness, counters, Work, stuck
 *   s_build_chain              the forward chain from layer 0 (newest first)
 *   s_daemon_gone → sched_peers_park   a lost stage's requests wait (a lost batch too)
 *   sched_peers_retry_calls    a lost call goes out again
 *   sched_peers_timers         heartbeat timeouts, stuck stages
 *   sched_peers_status         StatusReply: every daemon, request counts */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "g4_alloc.h"
#include "g4_log.h"
#include "sched_internal.h"

/* ---- lookup ------------------------------------------------------------------------ */

int sched_peers_find(sched_t *s, const char *name)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state != D_FREE && !s->d[i].replaced && !strcmp(s->d[i].name, name)) return i;
    return -1;
}

/* The record of the process that sent m under name (during a swap two hold the name). */
static int s_find_sender(sched_t *s, const char *name, const g4_msg_t *m)
{
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state != D_FREE && !strcmp(s->d[i].name, name) && s->d[i].route_len == m->route_len &&
            !memcmp(s->d[i].route, m->route, m->route_len))
            return i;
    return -1;
}

/* the newest ready daemon of a role (a swapped-in one takes new work) */
static int s_newest(sched_t *s, G4__V1__Role role)
{
    int best = -1;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state == D_READY && s->d[i].role == role && s->d[i].sock &&
            (best < 0 || s->d[i].registered_ms >= s->d[best].registered_ms))
            best = i;
    return best;
}

int sched_peers_tokenizer(sched_t *s) { return s_newest(s, G4__V1__ROLE__ROLE_TOKENIZER); }
int sched_peers_encoder(sched_t *s) { return s_newest(s, G4__V1__ROLE__ROLE_ENCODER); }

/* ---- the pipeline -------------------------------------------------------------------- */

/* The slot table follows the chain's smallest n_slots (slots in use kept). */
static void s_resize_slots(sched_t *s, int slots)
{
    uint8_t *nu = g4_calloc((size_t)slots, 1);
    uint32_t *nr = g4_calloc((size_t)slots, sizeof *nr);
    if (!nu || !nr) {
        g4_free(nu), g4_free(nr);
        return;
    }
    g4_free(s->release);
    s->release = nr;
    s->n_release = 0;
    for (int i = 0; i < slots && i < s->n_slots; i++) nu[i] = s->slot_used[i];
    g4_free(s->slot_used);
    s->slot_used = nu;
    s->n_slots = slots;
}

/* Tells every ready shard the chain (names, endpoints, results): a shard
 * forwards only to the stage after itself in a chain it was sent. */
static void s_send_chain(sched_t *s)
{
    char *names[MAX_CHAIN], *eps[MAX_CHAIN];
    for (int c = 0; c < s->n_chain; c++) names[c] = s->d[s->chain[c]].name, eps[c] = s->d[s->chain[c]].endpoint;
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Chain ch = G4__V1__CHAIN__INIT;
    ch.epoch = s->epoch;
    ch.names = names, ch.n_names = (size_t)s->n_chain;
    ch.endpoints = eps, ch.n_endpoints = (size_t)s->n_chain;
    ch.results = s->results_ep;
    env.body_case = G4__V1__ENVELOPE__BODY_CHAIN;
    env.chain = &ch;
    g4_err_t err;
    for (int i = 0; i < MAX_DAEMONS; i++)
        if (s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_SHARD && s->d[i].route_len)
            g4_wire_send(s->router, s->d[i].route, s->d[i].route_len, &env, NULL, NULL, 0, 1, &err);
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
        s->n_vocab = s->d[s->chain[0]].n_vocab;
        if (slots != s->n_slots) s_resize_slots(s, slots);
    }
    int changed = s->n_chain != old_n;
    for (int i = 0; !changed && i < s->n_chain; i++) changed = s->chain[i] != old_chain[i];
    if (changed) sched_cache_chain(s); /* (a new stage keeps nothing yet) */
    if (changed && s->n_chain) s_send_chain(s);
    if (changed && s->n_chain && old_n) {
        /* a stage was replaced (g4 swap): the new daemon has none of the
         * sequences, so every running request is fed again from position 0 */
        int n = 0;
        for (int i = 0; i < s->n_r; i++) {
            req_t *q = &s->r[i];
            if (q->state != R_RUNNING) continue;
            if (q->in_flight) q->replay = 1;
            else q->n_fed = 0, sched_cache_req_restart(q, 0);
            n++;
        }
        g4_log_info("sched", "pipeline changed: %d stage(s); %d running request(s) re-prefilled", s->n_chain, n);
    }
    if (s->n_chain && !old_n) {
        g4_log_info("sched", "pipeline complete: %d stage(s) over %d layers", s->n_chain, s->n_layer);
        s->chain_lost_ms = 0;
    } else if (!s->n_chain && old_n) {
        s->chain_lost_ms = sched_now();
    }
}

/* ---- a daemon lost ------------------------------------------------------------------- */

/* A stage of the pipeline is lost: every batch in flight is lost with it.
 * Running requests are parked (no error): they keep their tokens and slots
 * and are fed again from position 0 once a pipeline covers every layer (a
 * restarted shard, a standby, another chain); only when none does within
 * park_timeout_ms do they fail (sched_req_timers). With migration off they fail now. */
void sched_peers_park(sched_t *s, const char *why)
{
    sched_forget_batches(s);
    /* a new epoch: every request is fed again from position 0, so the shards
     * forget every slot at the first new batch and drop the lost batches that
     * still travel (or wait in a socket queue for a restarted shard) */
    s->epoch++;
    sched_cache_chain(s); /* (the shards forget their chunks with the epoch) */
    int n = 0;
    for (int i = 0; i < s->n_r; i++) {
        req_t *q = &s->r[i];
        q->in_flight = 0;
        if (q->state == R_FINISHING) {
            sched_req_free(s, q);
        } else if (q->state == R_RUNNING && s->p.no_migrate) {
            sched_req_fail(s, q, G4_ERR_UNAVAILABLE, "%s", why);
        } else if (q->state == R_RUNNING) {
            q->n_fed = 0, q->replay = 0, q->n_draft = 0;
            sched_cache_req_restart(q, 0);
            if (!q->parked_ms) q->parked_ms = sched_now();
            n++;
            G4__V1__GenerateEvent ev = G4__V1__GENERATE_EVENT__INIT;
            G4__V1__Notice no = G4__V1__NOTICE__INIT;
            char msg[512];
            snprintf(msg, sizeof msg, "%s; the request waits for a replacement (up to %.0f s) and resumes", why,
                     s->p.park_timeout_ms / 1000.0);
            no.message = msg;
            ev.event_case = G4__V1__GENERATE_EVENT__EVENT_NOTICE;
            ev.notice = &no;
            sched_req_event(s, q, &ev);
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
        sched_peers_park(s, msg);
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
            sched_req_call_lost(q, q->state == R_CHAT       ? CALL_RENDER
                                   : q->state == R_TOKENIZE ? CALL_TOKENIZE
                                                            : CALL_DETOK);
        }
    }
    if (d->role == G4__V1__ROLE__ROLE_ENCODER)
        for (int k = 0; k < s->n_r; k++)
            if (s->r[k].state == R_ENCODING && s->r[k].enc_rec == i) {
                s->r[k].enc_rec = -1;
                sched_req_call_lost(&s->r[k], CALL_ENCODE);
            }
    s_build_chain(s);
    if (d->replaced) d->state = D_FREE; /* its name lives on in its replacement: no "gone" row */
}

void sched_peers_retry_calls(sched_t *s, req_t *q)
{
    const int kind = q->call_lost;
    const uint64_t lost_ms = q->lost_ms;
    if (kind == CALL_ENCODE) return sched_peers_encoder(s) >= 0 ? sched_media_send(s, q) : (void)0;
    if (sched_peers_tokenizer(s) < 0) return;
    if (kind == CALL_RENDER) sched_req_render(s, q);
    else if (kind == CALL_TOKENIZE) sched_req_tokenize(s, q, q->text_prompt, q->text_prompt_len, q->tok_add_bos);
    else if (kind == CALL_DETOK) sched_text_send_detok(s, q);
    if (!q->call_lost) g4_log_info("sched", "request %llu: its %s call went to the new %s after %.1f s",
                                   (unsigned long long)q->client_req_id, kind == CALL_DETOK ? "detokenize" : "prompt",
                                   "tokenizer", (sched_now() - lost_ms) / 1000.0);
}

/* ---- registration -------------------------------------------------------------------- */

static void s_reply_register(sched_t *s, g4_msg_t *m, int accepted, const char *reason)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__RegisterReply rep = G4__V1__REGISTER_REPLY__INIT;
    rep.accepted = accepted, rep.reason = (char *)reason;
    env.body_case = G4__V1__ENVELOPE__BODY_REGISTER_REPLY;
    env.register_reply = &rep;
    g4_err_t err;
    g4_wire_send(s->router, m->route, m->route_len, &env, NULL, NULL, 0, 1, &err);
}

void sched_peers_refuse_register(sched_t *s, g4_msg_t *m, const char *reason) { s_reply_register(s, m, 0, reason); }

/* Whether the process pid of this host still runs: kill(pid, 0) alone also
 * says yes for a zombie (killed, not reaped yet) and for a pid reused as a
 * thread id of another process (a daemon's pid is its thread group's). */
static int s_pid_alive(int pid)
{
    if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) return 0;
    char path[64], line[128];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1; /* (no /proc: kill's word) */
    int alive = 1;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "State:", 6) && (strchr(line, 'Z') || strchr(line, 'X'))) alive = 0;
        if (!strncmp(line, "Tgid:", 5) && atoi(line + 5) != pid) alive = 0;
    }
    fclose(f);
    return alive;
}

static const char *s_refuse(sched_t *s, const G4__V1__Register *r)
{
    if (!r->name || !*r->name || !r->endpoint || !*r->endpoint) return "a name and an endpoint are needed";
    if (r->role == G4__V1__ROLE__ROLE_SHARD &&
        (r->layer_begin < 0 || r->layer_end <= r->layer_begin || r->layer_end > r->n_layer || r->n_slots <= 0))
        return "bad layer range";
    if (r->role != G4__V1__ROLE__ROLE_SHARD && r->role != G4__V1__ROLE__ROLE_TOKENIZER &&
        r->role != G4__V1__ROLE__ROLE_ENCODER)
        return "unknown role";
    if (r->role == G4__V1__ROLE__ROLE_SHARD)
        for (int i = 0; i < MAX_DAEMONS; i++)
            if (s->d[i].state == D_READY && s->d[i].role == G4__V1__ROLE__ROLE_SHARD && s->d[i].n_layer != r->n_layer &&
                strcmp(s->d[i].name, r->name))
                return "layer count differs from the shards already registered (another model?)";
    return NULL;
}

void sched_peers_register(sched_t *s, g4_msg_t *m)
{
    G4__V1__Register *r = m->env->register_;
    g4_err_t err;
    const char *why = s_refuse(s, r);
    if (why) {
        s_reply_register(s, m, 0, why);
        g4_log_warn("sched", "refused registration of %s: %s", r->name ? r->name : "?", why);
        return;
    }
    int i = sched_peers_find(s, r->name);
    int64_t restarts = -1; /* >= 0: carried over from the process a swap replaces */
    if (i >= 0 && s->d[i].state != D_GONE) {
        /* a name is held by its identity: another key never takes it over */
        if (s->d[i].user_id[0] && strcmp(s->d[i].user_id, m->user_id)) {
            s_reply_register(s, m, 0, "the name is registered by another key");
            return sched_refuse(s, m, "a Register of a name held by another key");
        }
        /* a new process of the same name while the old one still lives (it
         * heartbeats, and on this host its pid exists) evicts nothing: it
         * waits ("retry") until the old one is gone. A restart after a crash
         * finds the old pid dead. g4 swap's replacement names the pid it
         * replaces: both hold the name until the old one stops. */
        const int same_proc = s->d[i].pid == r->pid && r->host && !strcmp(s->d[i].host, r->host);
        if (!same_proc) {
            char host[64] = "";
            gethostname(host, sizeof host - 1);
            const int here = !strcmp(s->d[i].host, host) && r->host && !strcmp(r->host, host);
            const int old_alive = here && s_pid_alive(s->d[i].pid);
            const int old_silent = sched_now() - s->d[i].last_seen_ms > 1000u;
            const int swap = r->replaces_pid && r->replaces_pid == s->d[i].pid && r->role == s->d[i].role;
            if ((old_alive || (!here && !old_silent)) && swap) {
                g4_log_info("sched", "%s: pid %d replaces pid %d (g4 swap)", r->name, r->pid, s->d[i].pid);
                s->d[i].replaced = 1;
                restarts = (int64_t)s->d[i].restarts + 1;
                i = -1;
            } else if (old_alive || (!here && !old_silent)) {
                char retry[160];
                snprintf(retry, sizeof retry, "retry: the name %s is held by a live process (pid %d)", r->name, s->d[i].pid);
                s_reply_register(s, m, 0, retry);
                return sched_refuse(s, m, "a Register of a name a live daemon holds");
            } else {
                /* same name, new process: the old one is gone */
                s_daemon_gone(s, i, "was replaced by a new process of the same name");
            }
        }
    }
    if (i < 0 || s->d[i].state == D_GONE) {
        if (i < 0)
            for (int k = 0; k < MAX_DAEMONS; k++)
                if (s->d[k].state == D_FREE || s->d[k].state == D_GONE) {
                    i = k;
                    break;
                }
        if (i < 0) return s_reply_register(s, m, 0, "too many daemons");
        if (s->d[i].sock) zmq_close(s->d[i].sock);
        /* a new process under a known name: a restart (a supervisor's, a swap's) */
        if (restarts < 0)
            restarts = s->d[i].state == D_GONE && !strcmp(s->d[i].name, r->name) ? s->d[i].restarts + (s->d[i].pid != r->pid)
                                                                                   : 0;
        memset(&s->d[i], 0, sizeof s->d[i]);
        s->d[i].restarts = (uint32_t)restarts;
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
    d->cache = (spx_stage_t){r->cache_budget, r->cache_row, r->cache_fixed};
    for (int k = 0; k < 6; k++) d->media_ids[k] = k < (int)r->n_media_ids ? r->media_ids[k] : -1;
    d->n_embd = r->n_embd, d->has_vision = r->has_vision, d->has_audio = r->has_audio;
    d->insecure = r->insecure;
    snprintf(d->draft, sizeof d->draft, "%s", r->draft ? r->draft : "");
    snprintf(d->user_id, sizeof d->user_id, "%s", m->user_id);
    memcpy(d->route, m->route, m->route_len);
    d->route_len = m->route_len;
    d->last_seen_ms = sched_now();
    if (fresh) {
        d->registered_ms = d->last_seen_ms;
        d->sock = g4_wire_socket(s->zctx, r->role == G4__V1__ROLE__ROLE_SHARD ? ZMQ_PUSH : ZMQ_DEALER, &err);
        if (d->sock && g4_wire_connect(d->sock, d->endpoint, &err)) zmq_close(d->sock), d->sock = NULL;
        if (!d->sock) {
            s_reply_register(s, m, 0, err.msg);
            d->state = D_FREE;
            return;
        }
        if (r->role == G4__V1__ROLE__ROLE_SHARD && r->model) snprintf(s->model, sizeof s->model, "%s", r->model);
        g4_log_info("sched", "registered %s: %s pid %d at %s%s", d->name,
                    r->role == G4__V1__ROLE__ROLE_SHARD ? "shard" : r->role == G4__V1__ROLE__ROLE_TOKENIZER ? "tokenizer" : "encoder",
                    d->pid, d->endpoint, "");
    }
    d->state = D_READY;
    s_reply_register(s, m, 1, NULL);
    const int n_before = s->n_chain;
    s_build_chain(s);
    if (d->role == G4__V1__ROLE__ROLE_SHARD && s->n_chain && s->n_chain == n_before) s_send_chain(s); /* (it needs the chain too) */
}

/* ---- heartbeats, liveness, stuck stages -------------------------------------------- */

/* The stuck threshold of a stage: long above any batch it has run. */
static uint64_t s_stuck_after(const sched_t *s, const drec_t *d)
{
    const uint64_t k = 20 * d->work.last_batch_ms;
    return k > (uint64_t)s->p.stuck_after_ms ? k : (uint64_t)s->p.stuck_after_ms;
}

void sched_peers_heartbeat(sched_t *s, g4_msg_t *m)
{
    const G4__V1__Heartbeat *hb = m->env->heartbeat;
    const int i = hb->name ? s_find_sender(s, hb->name, m) : -1;
    if (i < 0 || s->d[i].state == D_GONE) {
        /* we do not know it (we restarted, or declared it gone): ask it to register */
        return s_reply_register(s, m, 0, "unknown: register again");
    }
    drec_t *d = &s->d[i];
    const uint64_t now = sched_now();
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

void sched_peers_timers(sched_t *s, uint64_t now)
{
    for (int i = 0; i < MAX_DAEMONS; i++) {
        drec_t *d = &s->d[i];
        if ((d->state == D_READY || d->state == D_DRAINING) && now - d->last_seen_ms > (uint64_t)s->p.heartbeat_timeout_ms)
            s_daemon_gone(s, i, "stopped sending heartbeats");
        else if (d->state == D_READY || d->state == D_DRAINING)
            s_check_stuck(s, d, now);
    }
}

void sched_peers_missing_layers(sched_t *s, char *buf, size_t size)
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

/* ---- Status ------------------------------------------------------------------------- */

static const char *s_state_name(sched_t *s, int i)
{
    const drec_t *d = &s->d[i];
    if (d->state == D_GONE) return "gone";
    if (d->state == D_DRAINING) return "draining";
    int in_chain = 0;
    for (int c = 0; c < s->n_chain; c++) in_chain |= s->chain[c] == i;
    if ((d->role == G4__V1__ROLE__ROLE_SHARD && !in_chain) ||
        (d->role == G4__V1__ROLE__ROLE_TOKENIZER && sched_peers_tokenizer(s) != i))
        return "standby";
    return "ready";
}

void sched_peers_status(sched_t *s, g4_msg_t *m)
{
    G4__V1__Envelope env = G4__V1__ENVELOPE__INIT;
    G4__V1__Header h = G4__V1__HEADER__INIT;
    G4__V1__StatusReply rep = G4__V1__STATUS_REPLY__INIT;
    G4__V1__DaemonStatus ds[MAX_DAEMONS], *dp[MAX_DAEMONS];
    G4__V1__Work wk[MAX_DAEMONS];
    G4__V1__Counter cs[MAX_DAEMONS][16], *cp[MAX_DAEMONS][16];
    const uint64_t now = sched_now();
    size_t n = 0;
    for (int i = 0; i < MAX_DAEMONS; i++) {
        drec_t *d = &s->d[i];
        if (d->state == D_FREE) continue;
        g4__v1__daemon_status__init(&ds[n]);
        ds[n].role = d->role;
        ds[n].name = d->name, ds[n].pid = d->pid, ds[n].endpoint = d->endpoint;
        ds[n].layer_begin = d->layer_begin, ds[n].layer_end = d->layer_end;
        /* in flight: a shard's batches, a tokenizer's / encoder's calls */
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
        ds[n].state = (char *)s_state_name(s, i);
        ds[n].uptime_s = (double)(now - d->registered_ms) / 1000.0;
        g4__v1__work__init(&wk[n]);
        if (d->work.base.descriptor) wk[n] = d->work; /* (zero until the first heartbeat) */
        if (wk[n].batch_id) wk[n].elapsed_ms += now - d->last_seen_ms;
        ds[n].work = &wk[n];
        ds[n].activity = d->state == D_GONE ? "" : d->stuck ? "stuck" : d->work.batch_id ? "busy" : "idle";
        ds[n].last_seen_ms = (double)(now - d->last_seen_ms);
        ds[n].restarts = d->restarts;
        ds[n].insecure = d->insecure;
        rep.insecure |= d->insecure && d->state != D_GONE;
        ds[n].model = d->model, ds[n].backend = d->backend, ds[n].host = d->host;
        dp[n] = &ds[n];
        n++;
    }
    rep.daemons = dp, rep.n_daemons = n;
    rep.ready = s->n_chain > 0 && sched_peers_tokenizer(s) >= 0;
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
    rep.insecure |= g4_wire_insecure_used();
    rep.batches_timed_out = s->n_batch_timeouts;
    rep.refused = s->n_refused;
    G4__V1__PrefixCacheStatus pcs = G4__V1__PREFIX_CACHE_STATUS__INIT;
    sched_cache_status(s, &pcs);
    rep.prefix_cache = &pcs;
    /* the scheduler itself */
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    rep.pid = (int32_t)getpid();
    rep.uptime_s = (double)(now - s->started_ms) / 1000.0;
    rep.host = host;
    rep.n_slots = s->n_chain ? (uint32_t)s->n_slots : 0;
    for (int k = 0; k < s->n_slots && s->n_chain; k++) rep.slots_used += s->slot_used[k] != 0;
    rep.n_ctx = s->n_chain ? s->n_ctx : 0;
    h.request_id = m->env->header->request_id;
    env.header = &h;
    env.body_case = G4__V1__ENVELOPE__BODY_STATUS_REPLY;
    env.status_reply = &rep;
    g4_err_t err;
    g4_wire_send(s->router, m->route, m->route_len, &env, NULL, NULL, 0, 1, &err);
}
